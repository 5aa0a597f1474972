/* cli.h — the command entry points (one file each under src/cli/, like git's builtin/) and
 * the few helpers they share. Only src/cli/ prints to the terminal or reads argv. */
#ifndef PDSMOVE_CLI_H
#define PDSMOVE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "pdsmove/err.h"
#include "pdsmove/migrate.h"

/* Exit codes used by every command. */
enum { EXIT_OK_ = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Each gets argv starting at its own name (argv[0] = "car", "plc", "key", ...). */
int cmd_car(int argc, char **argv);
int cmd_plc(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_backup_verify(int argc, char **argv);
int cmd_prune(int argc, char **argv);

/* Plain progress lines on stderr ("==> step", "    ok step: detail", "    FAILED step: why",
 * info lines, waits over 2 s or for a rate limit) for the pipelines without a live display
 * (backup, verify, restore): cli_ui.c. confirm asks on the terminal (false without one). */
void cli_plain_ui(migrate_ui *ui);
/* While a long rate limit is waited out (--wait-for-limits; xrpc_options.on_limit_wait): on a
 * terminal (live) one line redrawn with the time left, else a line a minute (systemd, tmux
 * logs). left_ms 0 ends it. *last_s keeps the time of the last plain line (start at 0). */
void cli_limit_countdown(FILE *out, bool live, const char *server, long left_ms, double *last_s);
/* "<N>" (sd-daemon priority) when stderr is the systemd journal, else "": 3 error, 4 warning,
 * 5 notice, 6 info. */
const char *cli_log_prefix(int level);

/* Secrets the command holds (passwords, tokens): never printed by cli_error or the plain UI,
 * even when a server echoes one (pdsmove/redact.h). cli_secrets_wipe before exiting. */
void cli_secret_register(const char *secret);
void cli_secrets_wipe(void);
/* in, with every registered secret replaced by "[redacted]", into out; returns out */
const char *cli_redact(const char *in, char *out, size_t size);

/* Text from outside pdsmove (server answers, DID documents, archives, CAR contents, file
 * contents, names in any of them) made safe to print: control characters (newline, tab, ESC,
 * CR, ...), DEL, C1 controls, bidi overrides and bytes that are not UTF-8 become "\xNN", so
 * nothing it holds can move the cursor, recolour or clear the terminal, or start a journal line
 * with its own "<N>" priority. Cut (at a character) to fit out; returns out. */
const char *cli_untrusted(const char *in, char *out, size_t size);
const char *cli_untrusted_n(const char *in, size_t len, char *out, size_t size);
/* For a text of several lines pdsmove wrote around outside values (a confirmation summary):
 * newlines stay, and a '<' starting a line becomes "\x3c". */
const char *cli_untrusted_lines(const char *in, char *out, size_t size);
/* cli_untrusted into one of CLI_SAFE_SLOTS static buffers, for printf arguments: valid until
 * CLI_SAFE_SLOTS more calls (single-threaded CLI only). */
#define CLI_SAFE_SLOTS 8
#define CLI_SAFE_MAX 2048
const char *cli_safe(const char *in);

/* "pdsmove: error: <msg>" on stderr (redacted, then escaped with cli_untrusted). */
void cli_error(const err_t *e);
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True when argv contains -h or --help (before a "--"). */
bool cli_wants_help(int argc, char **argv);
/* A size in bytes: digits with an optional binary unit (K, M, G, T, also KiB...; case does
 * not matter). False for 0, overflow or anything else (cli_bytes.c). */
bool cli_parse_bytes(const char *s, uint64_t *out);

/* ---- secrets (cli_input.c): from a file, an environment variable, or a no-echo prompt ----
 * Never from argv. Each returns true with the secret in out (trailing newline removed). */
bool cli_secret_from_file(const char *path, char *out, size_t size, err_t *e);
/* Reads /dev/tty without echo; false when there is no terminal. */
bool cli_prompt_secret(const char *prompt, char *out, size_t size);
/* file, else env var (if env_name), else prompt; false + e when none gives a value. */
bool cli_get_secret(const char *file, const char *env_name, const char *prompt, const char *what, char *out, size_t size,
                    err_t *e);
bool cli_have_tty(void);
/* A PDS's rate-limit bypass key from path: the bare key (one line), or the PDS's env file
 * itself (a `PDS_RATE_LIMIT_BYPASS_KEY=` line, as in the secrets file a NixOS module points
 * at). Refused when others may read the file or anyone but its owner may write it, when it
 * is not a regular file, or when the key is not 1-255 printable characters. */
bool cli_bypass_key_from_file(const char *path, char *out, size_t size, err_t *e);
/* "yes"/"no" question on /dev/tty; false when there is no terminal. */
bool cli_confirm(const char *question);
/* mkdir -p with mode 0700 for new directories */
err_code cli_mkdirs(const char *path, err_t *e);
/* ~/.local/state/pdsmove (or $PDSMOVE_STATE_DIR, or $XDG_STATE_HOME/pdsmove) */
void cli_state_dir(char *out, size_t size);
/* <state dir>/journal.sqlite, the journal migrate and status use without --journal
 * (cmd_status.c) */
void cli_default_journal(char *out, size_t size);
/* A JSON string for text that may not be UTF-8 (a server's error body): if it is not, its
 * non-ASCII bytes become '?'. NULL gives null. (cmd_status.c) */
struct json_t;
struct json_t *cli_json_text(const char *s);

/* ---- transfer progress (cli_progress.c; libc only, unit-tested) ----
 * Tracks a few concurrent transfers by step name ("export", "blobs-download", ...), measures
 * their rate over the last seconds, and shows them on `out`: live = one line redrawn in place
 * (a terminal), otherwise a plain line every plain_every_s seconds per step and one when a
 * step's transfer completes. out NULL: measure only (the JSON events use the rates). */
#define CLI_PROGRESS_TRACKS 4
#define CLI_PROGRESS_SAMPLES 16
#define CLI_PROGRESS_LINE_MAX 512
#define CLI_PROGRESS_PLAIN_EVERY_S 10.0

typedef struct {
    bool used;
    char step[32];
    uint64_t done, total, bytes_done, bytes_total; /* total 0 = unknown */
    double updated;                                /* time of the last update */
    double s_time[CLI_PROGRESS_SAMPLES];           /* ring of samples for the rate */
    uint64_t s_done[CLI_PROGRESS_SAMPLES], s_bytes[CLI_PROGRESS_SAMPLES];
    size_t n_samples, next;
    bool plain_started, plain_complete;
    double last_plain;
} cli_progress_track;

typedef struct {
    FILE *out;   /* borrowed; NULL = no display */
    bool live;
    int columns; /* the live line stays shorter than this */
    double plain_every_s;
    bool drawn;  /* the live line is on the screen */
    double last_draw;
    cli_progress_track t[CLI_PROGRESS_TRACKS];
} cli_progress;

typedef struct {
    double bytes_per_s, items_per_s;
    double eta_s; /* seconds left; -1 when unknown */
} cli_rate;

void cli_progress_init(cli_progress *p, FILE *out, bool live, int columns);
/* A new reading of step's counters at time now_s (seconds, any monotonic origin). */
void cli_progress_update(cli_progress *p, double now_s, const char *step, uint64_t done, uint64_t total,
                         uint64_t bytes_done, uint64_t bytes_total);
/* Erases the live line before other output; the next update draws it again. */
void cli_progress_clear(cli_progress *p);
/* Erases the line and forgets every transfer (a step ended). */
void cli_progress_reset(cli_progress *p);
/* false (rates 0, eta -1) until step has two readings half a second apart. */
bool cli_progress_rate(const cli_progress *p, const char *step, double now_s, cli_rate *out);
/* The live line as it would be drawn now (no escape codes); returns its length. */
size_t cli_progress_line(const cli_progress *p, double now_s, char *out, size_t size);
/* "850 B", "4.00 KiB", "12.3 MiB", "270 MiB" */
void cli_format_bytes(uint64_t n, char *out, size_t size);
/* "0:07", "12:34", "1:02:03" */
void cli_format_duration(double s, char *out, size_t size);

#endif
