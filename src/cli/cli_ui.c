/* cli_ui.c — the plain progress display shared by backup, verify and restore (migrate has
 * its own, with live progress and JSON events, in cmd_migrate.c). Secrets never reach it:
 * the pipelines put none in step details. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/migrate.h"

static void plain_step(void *ctx, const char *step, journal_step_status st, const char *detail) {
    (void)ctx;
    switch (st) {
    case STEP_RUNNING: fprintf(stderr, "==> %s\n", step); break;
    case STEP_DONE: fprintf(stderr, "    ok %s%s%s\n", step, detail ? ": " : "", detail ? detail : ""); break;
    case STEP_FAILED: fprintf(stderr, "    FAILED %s%s%s\n", step, detail ? ": " : "", detail ? detail : ""); break;
    default: break;
    }
}

static void plain_info(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plain_info(void *ctx, const char *fmt, ...) {
    (void)ctx;
    va_list ap;
    va_start(ap, fmt);
    fputs("    ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void plain_wait(void *ctx, const char *server, const char *why, long ms) {
    (void)ctx;
    if (ms >= 2000 || strstr(why, "429")) fprintf(stderr, "    %s: %s; waiting %.0f s\n", server, why, (double)ms / 1000.0);
}

static bool plain_confirm(void *ctx, const char *text) {
    (void)ctx;
    if (!cli_have_tty()) {
        cli_errorf("no terminal to confirm the identity change: add --yes to proceed unattended");
        return false;
    }
    return cli_confirm(text);
}

void cli_plain_ui(migrate_ui *ui) {
    *ui = (migrate_ui){.step = plain_step, .info = plain_info, .wait = plain_wait, .confirm = plain_confirm};
}
