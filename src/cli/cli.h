/* cli.h — the command entry points (one file each under src/cli/, like git's builtin/) and
 * the few helpers they share. Only src/cli/ prints to the terminal or reads argv. */
#ifndef PDSMOVE_CLI_H
#define PDSMOVE_CLI_H

#include <stdbool.h>
#include "pdsmove/err.h"

/* Exit codes used by every command. */
enum { EXIT_OK_ = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Each gets argv starting at its own name (argv[0] = "car", "plc", "key", ...). */
int cmd_car(int argc, char **argv);
int cmd_plc(int argc, char **argv);
int cmd_key(int argc, char **argv);

/* "pdsmove: error: <msg>" on stderr. */
void cli_error(const err_t *e);
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True when argv contains -h or --help (before a "--"). */
bool cli_wants_help(int argc, char **argv);

#endif
