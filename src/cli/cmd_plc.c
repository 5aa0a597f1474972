/* cmd_plc.c — placeholder until the plc commands land; it only reports that. */
#include "cli.h"
int cmd_plc(int argc, char **argv) {
    (void)argc; (void)argv;
    cli_errorf("'plc' commands are not built yet");
    return EXIT_FAIL;
}
