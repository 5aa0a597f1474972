/* cmd_car.c — placeholder until the car commands land; it only reports that. */
#include "cli.h"
int cmd_car(int argc, char **argv) {
    (void)argc; (void)argv;
    cli_errorf("'car' commands are not built yet");
    return EXIT_FAIL;
}
