/* cli_ui.c — the plain progress display shared by backup, verify and restore (migrate has
 * its own, with live progress and JSON events, in cmd_migrate.c). The pipelines put no secret
 * in what they report, but a server's error text may echo one: every line, and cli_error's,
 * passes through the secrets the command registered (cli_secret_register). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/migrate.h"
#include "pdsmove/redact.h"

static redact_set secrets; /* zero-initialised = empty */

void cli_secret_register(const char *secret) {
    err_t e;
    if (redact_set_add(&secrets, secret, &e) != ERR_OK) {
        /* cannot promise to redact it: say so rather than risk printing it */
        fprintf(stderr, "pdsmove: warning: %s; server messages are not shown\n", e.msg);
        secrets.n = REDACT_SECRETS_MAX + 1; /* cli_redact then hides every text */
    }
}

void cli_secrets_wipe(void) { redact_set_clear(&secrets); }

const char *cli_redact(const char *in, char *out, size_t size) {
    if (secrets.n > REDACT_SECRETS_MAX) {
        snprintf(out, size, "%s", "(message withheld: it might contain a secret)");
        return out;
    }
    return redact_text(&secrets, in, out, size);
}

const char *cli_log_prefix(int level) {
    static int journald = -1;
    if (journald < 0) {
        /* JOURNAL_STREAM=<dev>:<inode> names the journal's socket when stderr is connected to it */
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev = 0, ino = 0;
        struct stat st;
        journald = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                   (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    }
    if (!journald) return "";
    return level <= 3 ? "<3>" : level == 4 ? "<4>" : level == 5 ? "<5>" : "<6>";
}

void cli_error(const err_t *e) {
    char clean[ERR_MSG_MAX + 64];
    fprintf(stderr, "%spdsmove: error: %s\n", cli_log_prefix(3),
            e && e->msg[0] ? cli_redact(e->msg, clean, sizeof clean) : "unknown error");
}

void cli_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%spdsmove: error: ", cli_log_prefix(3));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void plain_step(void *ctx, const char *step, journal_step_status st, const char *raw) {
    (void)ctx;
    char clean[4096];
    const char *detail = raw ? cli_redact(raw, clean, sizeof clean) : NULL;
    switch (st) {
    case STEP_RUNNING: fprintf(stderr, "%s==> %s\n", cli_log_prefix(6), step); break;
    case STEP_DONE: fprintf(stderr, "%s    ok %s%s%s\n", cli_log_prefix(5), step, detail ? ": " : "", detail ? detail : ""); break;
    case STEP_FAILED:
        fprintf(stderr, "%s    FAILED %s%s%s\n", cli_log_prefix(3), step, detail ? ": " : "", detail ? detail : "");
        break;
    default: break;
    }
}

static void plain_info(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plain_info(void *ctx, const char *fmt, ...) {
    (void)ctx;
    char raw[4096], clean[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s    %s\n", cli_log_prefix(6), cli_redact(raw, clean, sizeof clean));
}

static void plain_wait(void *ctx, const char *server, const char *why, long ms) {
    (void)ctx;
    char clean[2048];
    if (ms >= 2000 || strstr(why, "429"))
        fprintf(stderr, "%s    %s: %s; waiting %.0f s\n", cli_log_prefix(4), server, cli_redact(why, clean, sizeof clean),
                (double)ms / 1000.0);
}

void cli_limit_countdown(FILE *out, bool live, const char *server, long left_ms, double *last_s) {
    char left[32];
    cli_format_duration((double)left_ms / 1000.0, left, sizeof left);
    if (live) {
        if (left_ms > 0) fprintf(out, "\r\033[K    %s: rate limit, waiting: %s left", server, left);
        else fprintf(out, "\r\033[K    %s: rate limit reset; going on\n", server);
        fflush(out);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (left_ms > 0 && *last_s && now - *last_s < 60.0) return;
    *last_s = now;
    if (left_ms > 0) fprintf(out, "%s    %s: rate limit, waiting: %s left\n", cli_log_prefix(5), server, left);
    else fprintf(out, "%s    %s: rate limit reset; going on\n", cli_log_prefix(5), server);
    fflush(out);
}

static void plain_limit_wait(void *ctx, const char *server, const char *why, long left_ms) {
    (void)ctx, (void)why;
    static double last;
    const char *term = getenv("TERM");
    cli_limit_countdown(stderr, isatty(STDERR_FILENO) && !(term && !strcmp(term, "dumb")), server, left_ms, &last);
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
    *ui = (migrate_ui){.step = plain_step, .info = plain_info, .wait = plain_wait, .limit_wait = plain_limit_wait,
                       .confirm = plain_confirm};
}
