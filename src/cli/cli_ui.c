/* cli_ui.c — the plain progress display shared by backup, verify and restore (migrate has
 * its own, with live progress and JSON events, in cmd_migrate.c), and the escaping of text
 * from outside. The pipelines put no secret in what they report, but a server's error text
 * may echo one: every line, and cli_error's, passes through the secrets the command
 * registered (cli_secret_register), then through cli_untrusted (no escape sequence or journal
 * priority a server, an archive or a CAR file chose reaches the terminal or the journal). */
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

/* Length of the UTF-8 character at s (at most n bytes), 0 when the bytes are not one (overlong,
 * surrogate, above U+10FFFF, cut short); its code point in *cp. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t c = len == 1 ? s[0] : len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *cp = c;
    return len;
}

/* What a terminal or the journal would act on instead of showing: C0 controls (newline, tab,
 * ESC, CR, BEL, ...), DEL, the C1 controls (CSI is U+009B), the line/paragraph separators and
 * the bidirectional overrides that make text read differently from what it is. */
static bool is_control(uint32_t c) {
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x200e || c == 0x200f || c == 0x2028 || c == 0x2029 ||
           (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* lines: newlines stay, and a '<' that starts a line is escaped instead (no journal priority) */
static const char *escape_text(const char *in, size_t len, bool lines, char *out, size_t size) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (size == 0) return out;
    const unsigned char *s = (const unsigned char *)(in ? in : "");
    if (!in) len = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t n = utf8_char(s + i, len - i, &cp);
        bool line_start = i == 0 || s[i - 1] == '\n';
        bool escape = n == 0 || (is_control(cp) && !(lines && cp == '\n')) || (lines && line_start && cp == '<');
        if (n == 0) n = 1; /* one byte that is not UTF-8 */
        size_t need = escape ? 4 * n : n;
        if (o + need >= size) break; /* cut between characters, never inside one or an escape */
        for (size_t k = 0; k < n; k++) {
            if (!escape) {
                out[o++] = (char)s[i + k];
                continue;
            }
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[s[i + k] >> 4];
            out[o++] = hex[s[i + k] & 15];
        }
        i += n;
    }
    out[o] = 0;
    return out;
}

const char *cli_untrusted_n(const char *in, size_t len, char *out, size_t size) { return escape_text(in, len, false, out, size); }

const char *cli_untrusted(const char *in, char *out, size_t size) { return escape_text(in, in ? strlen(in) : 0, false, out, size); }

const char *cli_untrusted_lines(const char *in, char *out, size_t size) {
    return escape_text(in, in ? strlen(in) : 0, true, out, size);
}

const char *cli_safe(const char *in) {
    static char ring[CLI_SAFE_SLOTS][CLI_SAFE_MAX];
    static size_t next;
    char *out = ring[next++ % CLI_SAFE_SLOTS];
    return cli_untrusted(in, out, CLI_SAFE_MAX);
}

/* redacted, then escaped: what every line of the plain UI and every error goes through */
static const char *clean(const char *in, char *out, size_t size) {
    char red[8192];
    return cli_untrusted(cli_redact(in, red, sizeof red < size ? sizeof red : size), out, size);
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
    char safe[4 * ERR_MSG_MAX + 64];
    fprintf(stderr, "%spdsmove: error: %s\n", cli_log_prefix(3), e && e->msg[0] ? clean(e->msg, safe, sizeof safe) : "unknown error");
}

void cli_errorf(const char *fmt, ...) {
    char raw[2048], safe[4 * sizeof raw];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap); /* its arguments name files and options as given */
    va_end(ap);
    fprintf(stderr, "%spdsmove: error: %s\n", cli_log_prefix(3), clean(raw, safe, sizeof safe));
}

static void plain_step(void *ctx, const char *step, journal_step_status st, const char *raw) {
    (void)ctx;
    char safe[8192];
    const char *detail = raw ? clean(raw, safe, sizeof safe) : NULL;
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
    char raw[4096], safe[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s    %s\n", cli_log_prefix(6), clean(raw, safe, sizeof safe));
}

static void plain_wait(void *ctx, const char *server, const char *why, long ms) {
    (void)ctx;
    char safe[4096];
    if (ms >= 2000 || strstr(why, "429"))
        fprintf(stderr, "%s    %s: %s; waiting %.0f s\n", cli_log_prefix(4), cli_safe(server), clean(why, safe, sizeof safe),
                (double)ms / 1000.0);
}

void cli_limit_countdown(FILE *out, bool live, const char *server, long left_ms, double *last_s) {
    char left[32];
    cli_format_duration((double)left_ms / 1000.0, left, sizeof left);
    if (live) {
        if (left_ms > 0) fprintf(out, "\r\033[K    %s: rate limit, waiting: %s left", cli_safe(server), left);
        else fprintf(out, "\r\033[K    %s: rate limit reset; going on\n", cli_safe(server));
        fflush(out);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (left_ms > 0 && *last_s && now - *last_s < 60.0) return;
    *last_s = now;
    if (left_ms > 0) fprintf(out, "%s    %s: rate limit, waiting: %s left\n", cli_log_prefix(5), cli_safe(server), left);
    else fprintf(out, "%s    %s: rate limit reset; going on\n", cli_log_prefix(5), cli_safe(server));
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
