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
int cmd_migrate(int argc, char **argv);

/* "pdsmove: error: <msg>" on stderr. */
void cli_error(const err_t *e);
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True when argv contains -h or --help (before a "--"). */
bool cli_wants_help(int argc, char **argv);

/* ---- secrets (cli_input.c): from a file, an environment variable, or a no-echo prompt ----
 * Never from argv. Each returns true with the secret in out (trailing newline removed). */
bool cli_secret_from_file(const char *path, char *out, size_t size, err_t *e);
/* Reads /dev/tty without echo; false when there is no terminal. */
bool cli_prompt_secret(const char *prompt, char *out, size_t size);
/* file, else env var (if env_name), else prompt; false + e when none gives a value. */
bool cli_get_secret(const char *file, const char *env_name, const char *prompt, const char *what, char *out, size_t size,
                    err_t *e);
bool cli_have_tty(void);
/* "yes"/"no" question on /dev/tty; false when there is no terminal. */
bool cli_confirm(const char *question);
/* mkdir -p with mode 0700 for new directories */
err_code cli_mkdirs(const char *path, err_t *e);
/* ~/.local/state/pdsmove (or $PDSMOVE_STATE_DIR, or $XDG_STATE_HOME/pdsmove) */
void cli_state_dir(char *out, size_t size);

#endif
