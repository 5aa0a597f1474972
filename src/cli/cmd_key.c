/* cmd_key.c — placeholder until the key commands land; it only reports that. */
#include "cli.h"
int cmd_key(int argc, char **argv) {
    (void)argc; (void)argv;
    cli_errorf("'key' commands are not built yet");
    return EXIT_FAIL;
}
