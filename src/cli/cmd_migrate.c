/* cmd_migrate.c — `pdsmove migrate`: options, secrets, the confirmation prompt and what the
 * user sees around migrate_run() (src/pipeline/migrate.c): step lines and progress on stderr
 * (a live line on a terminal), the report on stdout, or JSON events on stdout with --json.
 * Secrets never come from argv and are never printed. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/keys.h"
#include "pdsmove/migrate.h"
#include "pdsmove/redact.h"
#include "pdsmove/syntax.h"

#define JOBS_DEFAULT 4
#define JOBS_MAX 16
#define JSON_PROGRESS_EVERY_S 1.0

static void print_usage(FILE *f) {
    char state[900], jpath[1024];
    cli_state_dir(state, sizeof state);
    cli_default_journal(jpath, sizeof jpath);
    fputs("usage: pdsmove migrate ACCOUNT --to NEW_PDS_URL [options]\n"
          "\n"
          "Moves an account (handle or DID) to another PDS: creates it there, copies the repository,\n"
          "every blob (each hash-checked) and the preferences, points the did:plc identity at the new\n"
          "PDS, checks the result independently, then activates the new account and deactivates the\n"
          "old one.\n"
          "\n"
          "Example: alice.bsky.social moves onto your own PDS\n"
          "\n"
          "  pdsmove migrate alice.bsky.social --to https://pds.example.com \\\n"
          "      --password-file ~/secrets/bsky-pw --new-password-file ~/secrets/new-pw \\\n"
          "      --new-pds-admin-password-file /run/agenix/pds-admin\n"
          "\n"
          "  bsky-pw    alice's real password on bsky.social (an app password cannot move an account)\n"
          "  new-pw     the password she will log in with on the new PDS\n"
          "  pds-admin  your PDS's PDS_ADMIN_PASSWORD, if it requires invite codes: pdsmove mints one\n"
          "             with it (or give --invite-code CODE, made with `pdsadmin create-invite-code`)\n"
          "  Each file holds its secret on the first line; keep them mode 600. The email address,\n"
          "  a custom-domain handle, other rotation keys and services all stay as they are.\n"
          "\n"
          "  pdsmove copies everything first (minutes; hours for very large accounts). Only then does\n"
          "  the old PDS email alice a confirmation token: type it when asked, answer the one question\n"
          "  before the identity change (--yes answers it), and the move completes. Afterwards alice\n"
          "  logs in on the new PDS with new-pw; the old account is deactivated, not deleted.\n"
          "  Moving between two PDSes you run yourself? The old PDS keeps that token in its database,\n"
          "  so no mail is needed: add --plc-token-from-db /var/lib/pds/account.sqlite (on the old\n"
          "  PDS's machine; it is read while the PDS runs).\n"
          "  Try it first with --dry-run: it logs in and checks both servers, changing nothing.\n"
          "\n",
          f);
    fprintf(f,
            "If it stops (network, rate limit, Ctrl-C, crash, a mistyped token), run the same command\n"
            "again: it goes on from its journal, skipping what is done and never repeating what must\n"
            "happen once (creating the account, the identity operation). The journal is\n"
            "  %s\n"
            "(--journal PATH to choose another; keep it until the move is done). `pdsmove status`\n"
            "shows where a migration stands and what the next run will do. A re-run with settings\n"
            "that differ from the journal's is refused unless --force.\n"
            "\n",
            jpath);
    fputs("where things are:\n"
          "  ACCOUNT                     your handle (alice.bsky.social) or DID (did:plc:...)\n"
          "  --to URL                    the new PDS, e.g. https://pds.example.com (required)\n"
          "  --from URL                  the old PDS (default: from the DID document)\n"
          "  --plc-url URL               PLC directory (default https://plc.directory)\n"
          "  --journal PATH              the journal (default above)\n",
          f);
    fprintf(f,
            "  --work-dir DIR              where the repo CAR and blob downloads pass through\n"
            "                              (default %s/work/ACCOUNT)\n"
            "  --keep-archive DIR          after the move, keep the exported copy of the account (repo,\n"
            "                              blobs, preferences, DID document, PLC log) in DIR\n"
            "                              (default %s/archives)\n"
            "  --no-keep-archive           do not keep that copy\n"
            "  --from-backup DIR           take the repository, blobs and preferences from a snapshot of\n"
            "                              the backup directory DIR (`pdsmove backup`) instead of the old\n"
            "                              PDS, which must still work for the login and the identity\n"
            "                              step; the account comes back as that snapshot has it (this is\n"
            "                              `pdsmove restore` without --rotation-key)\n"
            "  --snapshot ID               which snapshot of --from-backup (default: the newest)\n"
            "\n",
            state, state);
    fputs("secrets (files, so a systemd unit or NixOS module can point at agenix/sops paths):\n"
          "  --password-file F           old account password (else $PDSMOVE_PASSWORD, else asked)\n"
          "  --auth-factor-token-file F  email 2FA sign-in code, if the account has 2FA (else asked)\n"
          "  --new-password-file F       password for the new account (else $PDSMOVE_NEW_PASSWORD,\n"
          "                              else asked)\n"
          "  --new-pds-admin-password-file F  the new PDS's admin password: mints the invite code\n"
          "  --new-pds-ratelimit-bypass-key-file F  the new PDS's PDS_RATE_LIMIT_BYPASS_KEY (the bare\n"
          "                              key, or the PDS's env file holding that line): sent to the\n"
          "                              new PDS only, so its rate limits (1000 blob uploads a day\n"
          "                              from one address) do not pause the move\n"
          "\n"
          "the new account:\n"
          "  --new-handle H              handle to end with (default: keep a custom-domain handle;\n"
          "                              alice.bsky.social becomes alice.<new PDS domain>)\n"
          "  --new-email E               email (default: the account's current email)\n"
          "  --invite-code C             invite code for the new PDS, if it requires one\n"
          "  --invite-code-file F        the same, from a file (argv is visible to every user in `ps`)\n"
          "\n"
          "identity (did:plc), one of:\n"
          "  (default)                   the old PDS emails a token, asked for only after all data\n"
          "                              is copied, and typed in at the prompt; or\n"
          "  --plc-token-file F          ...read from F instead (pdsmove waits for it to appear; only\n"
          "                              you may read it: `(umask 077; echo TOKEN > F)`); or\n"
          "  --plc-token-from-db PATH    ...read from a self-hosted old PDS's account.sqlite; or\n"
          "  --rotation-key F            sign locally with your own rotation key (hex or multikey);\n"
          "                              needs no email and works when the old PDS cannot sign\n"
          "  --add-rotation-key DID_KEY  also put this did:key first in the rotation keys, so you can\n"
          "                              undo a bad change within 72 h (`pdsmove key generate` makes\n"
          "                              one; keep its file offline)\n"
          "  --watch-state FILE          note the operation in this `pdsmove plc watch --state FILE`\n"
          "                              (default: the watch's default state file, if it exists), so\n"
          "                              the nightly watch does not alarm about this move\n"
          "\n"
          "behaviour:\n"
          "  --dry-run                   check everything (logins, gates, space, keys), change nothing\n"
          "  --yes                       do not ask before the identity change (unattended runs)\n"
          "  --force                     go on with a journaled migration even though this command's\n"
          "                              settings differ from the ones it was started with\n"
          "  --jobs N                    blob transfers in flight in each direction (default 4, 1 to 16)\n"
          "  --wait-for-limits           when a server's rate limit resets only in hours (a daily one),\n"
          "                              wait in place (a countdown, or a line a minute) instead of\n"
          "                              stopping with exit status 1 and the time to run again\n"
          "  --max-repo-bytes N          refuse a repository (getRepo) or a blob larger than N bytes\n"
          "                              (default 4G; K, M, G, T are binary units)\n"
          "  --request-crawl URL         ask this relay to crawl the new PDS (repeatable)\n"
          "  --keep-old-active           do not deactivate the old account\n"
          "  --allow-insecure-http       permit http:// to hosts other than this machine\n"
          "  --json                      JSON events on stdout (below)\n"
          "  -h, --help                  this help\n"
          "\n"
          "output:\n"
          "  stderr: \"==> step\", then \"    ok step: detail\" or \"    FAILED step\", with notes in\n"
          "  between; on a terminal a live line shows transfers (bytes, counts, rate, time left),\n"
          "  otherwise a progress line every 10 s. stdout: the final report.\n"
          "  With --json, stdout carries one JSON object per line instead, each with \"event\" and\n"
          "  \"elapsed_s\" (stderr keeps the plain lines; 2>/dev/null drops them):\n"
          "    {\"event\":\"step\",\"step\":S,\"status\":\"running|done|failed\",\"detail\":D}\n"
          "    {\"event\":\"progress\",\"step\":S,\"done\":N,\"total\":N,\"bytes_done\":N,\"bytes_total\":N,\n"
          "     \"bytes_per_s\":R,\"eta_s\":T}      (total 0 / eta_s null: not known)\n"
          "    {\"event\":\"info\",\"message\":M}\n"
          "    {\"event\":\"wait\",\"server\":U,\"reason\":M,\"wait_ms\":N}   (retry or rate limit)\n"
          "    {\"event\":\"confirm\",\"summary\":M,\"confirmed\":B}   (before the identity change)\n"
          "  and last either {\"event\":\"report\",\"did\":...,\"records\":N,\"blobs_done\":N,...} or\n"
          "  {\"event\":\"error\",\"message\":M,\"resumable\":B} (resumable: run the same command again).\n"
          "\n"
          "exit status: 0 moved and verified (with --dry-run: nothing stands in the way; or moved\n"
          "already by an earlier run of the same command: \"nothing to do\", report \"already_done\"),\n"
          "1 stopped (the message says why; run the same command again to continue), 2 usage error\n",
          f);
}

/* ---- output ---- */

typedef struct {
    char step[32];
    double last;
    bool complete_sent;
} json_throttle;

/* The callbacks can come from more than one thread (the repository import runs beside the
 * blob downloads and reports its retries): `lock` keeps their lines and events whole. */
typedef struct {
    pthread_mutex_t lock;
    bool json;         /* JSON events on stdout */
    bool live;         /* stderr is a terminal: live progress line, colour */
    bool color;
    double started;    /* monotonic seconds */
    redact_set secrets; /* never printed, even when a server echoes one back; wiped at the end */
    cli_progress prog; /* on stderr */
    json_throttle jt[CLI_PROGRESS_TRACKS];
    double last_limit_line; /* cli_limit_countdown's */
} ui_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_t *jstr(const char *s) { return cli_json_text(s); }

/* Writes ev (consumed) as one line on stdout, with elapsed_s. */
static void emit(const ui_state *u, json_t *ev) {
    if (!ev) return;
    json_object_set_new(ev, "elapsed_s", json_real((double)(long long)((now_s() - u->started) * 1000.0) / 1000.0));
    char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    json_decref(ev);
}

static json_t *event(const char *name) {
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string(name));
    return ev;
}

static void emit_error(const ui_state *u, const char *msg, bool resumable, bool usage) {
    json_t *ev = event("error");
    json_object_set_new(ev, "message", jstr(msg));
    json_object_set_new(ev, "resumable", json_boolean(resumable));
    if (usage) json_object_set_new(ev, "usage", json_true());
    emit(u, ev);
}

/* What is printed follows the journal's rules (redact.h): no secret, no long piece of one. */
static const char *redact(const ui_state *u, const char *in, char *out, size_t size) {
    return redact_text(&u->secrets, in, out, size);
}

static const char *paint(const ui_state *u, const char *code) { return u->color ? code : ""; }

static void step_locked(ui_state *u, const char *step, journal_step_status st, const char *raw_detail) {
    char clean[JOURNAL_VALUE_MAX], safe[4 * JOURNAL_VALUE_MAX];
    const char *detail = raw_detail ? redact(u, raw_detail, clean, sizeof clean) : NULL;
    cli_progress_reset(&u->prog);
    switch (st) {
    case STEP_RUNNING:
        fprintf(stderr, "%s==>%s %s\n", paint(u, "\033[1m"), paint(u, "\033[0m"), step);
        break;
    case STEP_DONE:
        fprintf(stderr, "    %sok%s %s%s%s\n", paint(u, "\033[32m"), paint(u, "\033[0m"), step, detail ? ": " : "",
                detail ? cli_untrusted(detail, safe, sizeof safe) : "");
        break;
    case STEP_FAILED: fprintf(stderr, "    %sFAILED%s %s\n", paint(u, "\033[1;31m"), paint(u, "\033[0m"), step); break;
    default: break;
    }
    if (!u->json) return;
    static const char *const names[] = {"pending", "running", "done", "failed"};
    json_t *ev = event("step");
    json_object_set_new(ev, "step", jstr(step));
    json_object_set_new(ev, "status", json_string((unsigned)st < 4 ? names[st] : "unknown"));
    json_object_set_new(ev, "detail", jstr(detail));
    emit(u, ev);
}

static void ui_step(void *ctx, const char *step, journal_step_status st, const char *detail) {
    ui_state *u = ctx;
    pthread_mutex_lock(&u->lock);
    step_locked(u, step, st, detail);
    pthread_mutex_unlock(&u->lock);
}

static void info_locked(ui_state *u, const char *raw) {
    char msg[2048], safe[4 * sizeof msg];
    redact(u, raw, msg, sizeof msg);
    cli_progress_clear(&u->prog);
    fprintf(stderr, "    %s\n", cli_untrusted(msg, safe, sizeof safe));
    if (!u->json) return;
    json_t *ev = event("info");
    json_object_set_new(ev, "message", jstr(msg));
    emit(u, ev);
}

static void ui_info(void *ctx, const char *fmt, ...) {
    ui_state *u = ctx;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&u->lock);
    info_locked(u, msg);
    pthread_mutex_unlock(&u->lock);
}

static void wait_locked(ui_state *u, const char *server, const char *raw_why, long ms) {
    char why[1024];
    redact(u, raw_why, why, sizeof why);
    if (ms >= 2000 || strstr(why, "429")) {
        cli_progress_clear(&u->prog);
        fprintf(stderr, "    %s: %s; waiting %.0f s\n", cli_safe(server), cli_safe(why), (double)ms / 1000.0);
    }
    if (!u->json) return;
    json_t *ev = event("wait");
    json_object_set_new(ev, "server", jstr(server));
    json_object_set_new(ev, "reason", jstr(why));
    json_object_set_new(ev, "wait_ms", json_integer(ms));
    emit(u, ev);
}

static void ui_wait(void *ctx, const char *server, const char *why, long ms) {
    ui_state *u = ctx;
    pthread_mutex_lock(&u->lock);
    wait_locked(u, server, why, ms);
    pthread_mutex_unlock(&u->lock);
}

static void ui_limit_wait(void *ctx, const char *server, const char *why, long left_ms) {
    ui_state *u = ctx;
    (void)why;
    pthread_mutex_lock(&u->lock);
    cli_progress_clear(&u->prog);
    cli_limit_countdown(stderr, u->live, server, left_ms, &u->last_limit_line);
    pthread_mutex_unlock(&u->lock);
}

/* The prompts wait for the user without holding the lock. */
static bool ui_confirm(void *ctx, const char *summary) {
    ui_state *u = ctx;
    bool tty = cli_have_tty();
    pthread_mutex_lock(&u->lock);
    cli_progress_clear(&u->prog);
    char safe[8192];
    fprintf(stderr, "%s%s\n", tty ? "\n" : "", cli_untrusted_lines(summary, safe, sizeof safe));
    if (!tty) cli_errorf("no terminal to confirm the identity change: add --yes to proceed unattended");
    pthread_mutex_unlock(&u->lock);
    bool yes = tty && cli_confirm("Sign and submit this operation now? It moves your identity to the new PDS.");
    if (u->json) {
        json_t *ev = event("confirm");
        json_object_set_new(ev, "summary", jstr(summary));
        json_object_set_new(ev, "confirmed", json_boolean(yes));
        pthread_mutex_lock(&u->lock);
        emit(u, ev);
        pthread_mutex_unlock(&u->lock);
    }
    return yes;
}

static bool ui_ask_secret(void *ctx, const char *prompt, char *out, size_t size) {
    ui_state *u = ctx;
    pthread_mutex_lock(&u->lock);
    cli_progress_clear(&u->prog);
    if (u->json) {
        char msg[600];
        snprintf(msg, sizeof msg, "asking on the terminal: %s", prompt);
        info_locked(u, msg);
    }
    pthread_mutex_unlock(&u->lock);
    if (!cli_prompt_secret(prompt, out, size)) return false;
    pthread_mutex_lock(&u->lock);
    redact_set_add(&u->secrets, out, NULL); /* a typed token or code is never printed back either */
    pthread_mutex_unlock(&u->lock);
    return true;
}

static int terminal_columns(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

static void progress_locked(ui_state *u, const char *step, uint64_t done, uint64_t total, uint64_t bytes_done,
                            uint64_t bytes_total) {
    double now = now_s();
    if (u->live) {
        int cols = terminal_columns(); /* the window may have been resized */
        u->prog.columns = cols < 20 ? 20 : cols > CLI_PROGRESS_LINE_MAX ? CLI_PROGRESS_LINE_MAX : cols;
    }
    cli_progress_update(&u->prog, now, step, done, total, bytes_done, bytes_total);
    if (!u->json) return;
    json_throttle *t = NULL;
    for (size_t i = 0; i < CLI_PROGRESS_TRACKS && !t; i++)
        if (!strcmp(u->jt[i].step, step)) t = &u->jt[i];
    for (size_t i = 0; i < CLI_PROGRESS_TRACKS && !t; i++)
        if (!u->jt[i].step[0]) t = &u->jt[i];
    if (!t) t = &u->jt[0];
    if (strcmp(t->step, step)) {
        memset(t, 0, sizeof *t);
        snprintf(t->step, sizeof t->step, "%s", step);
        t->last = -1e9;
    }
    bool complete = bytes_total ? bytes_done >= bytes_total : total && done >= total;
    if (complete ? t->complete_sent : now - t->last < JSON_PROGRESS_EVERY_S) return;
    t->last = now;
    t->complete_sent = complete;
    cli_rate r;
    bool have_rate = cli_progress_rate(&u->prog, step, now, &r);
    json_t *ev = event("progress");
    json_object_set_new(ev, "step", jstr(step));
    json_object_set_new(ev, "done", json_integer((json_int_t)done));
    json_object_set_new(ev, "total", json_integer((json_int_t)total));
    json_object_set_new(ev, "bytes_done", json_integer((json_int_t)bytes_done));
    json_object_set_new(ev, "bytes_total", json_integer((json_int_t)bytes_total));
    json_object_set_new(ev, "bytes_per_s", have_rate ? json_integer((json_int_t)r.bytes_per_s) : json_null());
    json_object_set_new(ev, "eta_s", have_rate && r.eta_s >= 0 ? json_integer((json_int_t)(r.eta_s + 0.5)) : json_null());
    emit(u, ev);
}

static void ui_progress(void *ctx, const char *step, uint64_t done, uint64_t total, uint64_t bytes_done,
                        uint64_t bytes_total) {
    ui_state *u = ctx;
    pthread_mutex_lock(&u->lock);
    progress_locked(u, step, done, total, bytes_done, bytes_total);
    pthread_mutex_unlock(&u->lock);
}

static void print_report(const ui_state *u, const migrate_report *r, const migrate_opts *o, const char *journal_path) {
    if (u->json) {
        json_t *ev = event("report");
        json_object_set_new(ev, "did", jstr(r->did));
        json_object_set_new(ev, "handle", jstr(r->handle));
        json_object_set_new(ev, "old_pds", jstr(r->old_pds));
        json_object_set_new(ev, "new_pds", jstr(r->new_pds));
        json_object_set_new(ev, "dry_run", json_boolean(o->dry_run));
        json_object_set_new(ev, "records", json_integer((json_int_t)r->records));
        json_object_set_new(ev, "blobs_total", json_integer((json_int_t)r->blobs_total));
        json_object_set_new(ev, "blobs_done", json_integer((json_int_t)r->blobs_done));
        json_object_set_new(ev, "blobs_failed", json_integer((json_int_t)r->blobs_failed));
        json_object_set_new(ev, "blob_bytes", json_integer((json_int_t)r->blob_bytes));
        json_object_set_new(ev, "missing_blobs", jstr(r->missing_blobs));
        json_object_set_new(ev, "identity_updated", json_boolean(r->identity_updated));
        json_object_set_new(ev, "activated", json_boolean(r->activated));
        json_object_set_new(ev, "old_deactivated", json_boolean(r->old_deactivated));
        json_object_set_new(ev, "already_done", json_boolean(r->already_done));
        json_object_set_new(ev, "journal", jstr(journal_path));
        emit(u, ev);
        return;
    }
    if (r->already_done) {
        printf("nothing to do: %s was already moved to %s by an earlier run of this command\n"
               "  (`pdsmove status --journal %s` shows that run)\n", cli_safe(r->did), cli_safe(r->new_pds), journal_path);
        return;
    }
    if (o->dry_run) {
        printf("dry run: %s on %s can move to %s (nothing was changed)\n", cli_safe(r->did), cli_safe(r->old_pds), cli_safe(r->new_pds));
        return;
    }
    char size[32], took[32];
    cli_format_bytes(r->blob_bytes, size, sizeof size);
    cli_format_duration(now_s() - u->started, took, sizeof took);
    printf("\nmoved %s (%s) in %s\n", cli_safe(r->did), cli_safe(r->handle), took);
    printf("  from        %s%s\n", cli_safe(r->old_pds), r->old_deactivated ? " (deactivated)" : " (still active)");
    printf("  to          %s%s\n", cli_safe(r->new_pds), r->activated ? " (active)" : "");
    printf("  records     %llu, identical on the new PDS\n", r->records);
    printf("  blobs       %llu (%s), each hash-checked\n", r->blobs_done, size);
    if (r->missing_blobs[0]) printf("  not moved   %s\n", cli_safe(r->missing_blobs));
    printf("  identity    %s\n", r->identity_updated ? "did:plc now points at the new PDS" : "unchanged");
}

/* "pdsmove: error: ..." (and the error event) for e, secrets redacted. */
static void report_error(const ui_state *u, const err_t *e, bool resumable, bool usage) {
    err_t clean = *e;
    redact(u, e->msg, clean.msg, sizeof clean.msg);
    cli_error(&clean);
    if (u->json) emit_error(u, clean.msg, resumable, usage);
}

/* ---- options ---- */

enum {
    O_TO = 1000, O_FROM, O_PLC, O_JOURNAL, O_WORK, O_PW, O_2FA, O_NEWPW, O_ADMINPW, O_HANDLE, O_EMAIL, O_INVITE,
    O_TOKFILE, O_TOKDB, O_ROTKEY, O_ADDKEY, O_JOBS, O_CRAWL, O_KEEPOLD, O_DRY, O_YES, O_JSON, O_INSECURE, O_FORCE,
    O_ARCHIVE, O_NOARCHIVE, O_FROMBACKUP, O_SNAPSHOT, O_WATCH, O_BYPASS, O_WAITLIMITS, O_MAXREPO, O_INVITEFILE
};

static const struct option longopts[] = {
    {"to", required_argument, 0, O_TO}, {"from", required_argument, 0, O_FROM}, {"plc-url", required_argument, 0, O_PLC},
    {"journal", required_argument, 0, O_JOURNAL}, {"work-dir", required_argument, 0, O_WORK},
    {"password-file", required_argument, 0, O_PW}, {"auth-factor-token-file", required_argument, 0, O_2FA},
    {"new-password-file", required_argument, 0, O_NEWPW}, {"new-pds-admin-password-file", required_argument, 0, O_ADMINPW},
    {"new-handle", required_argument, 0, O_HANDLE}, {"new-email", required_argument, 0, O_EMAIL},
    {"invite-code", required_argument, 0, O_INVITE}, {"plc-token-file", required_argument, 0, O_TOKFILE},
    {"plc-token-from-db", required_argument, 0, O_TOKDB}, {"rotation-key", required_argument, 0, O_ROTKEY},
    {"add-rotation-key", required_argument, 0, O_ADDKEY}, {"jobs", required_argument, 0, O_JOBS},
    {"request-crawl", required_argument, 0, O_CRAWL}, {"keep-old-active", no_argument, 0, O_KEEPOLD},
    {"dry-run", no_argument, 0, O_DRY}, {"yes", no_argument, 0, O_YES}, {"json", no_argument, 0, O_JSON},
    {"allow-insecure-http", no_argument, 0, O_INSECURE}, {"force", no_argument, 0, O_FORCE},
    {"keep-archive", required_argument, 0, O_ARCHIVE}, {"no-keep-archive", no_argument, 0, O_NOARCHIVE},
    {"from-backup", required_argument, 0, O_FROMBACKUP}, {"snapshot", required_argument, 0, O_SNAPSHOT},
    {"watch-state", required_argument, 0, O_WATCH},
    {"new-pds-ratelimit-bypass-key-file", required_argument, 0, O_BYPASS}, {"wait-for-limits", no_argument, 0, O_WAITLIMITS},
    {"max-repo-bytes", required_argument, 0, O_MAXREPO}, {"invite-code-file", required_argument, 0, O_INVITEFILE},
    {0, 0, 0, 0}};

typedef struct {
    const char *pw_file, *fa_file, *newpw_file, *admin_file, *bypass_file, *invite_file, *journal_path, *archive_dir;
    bool no_archive;
} file_args;

/* "pdsmove: error: ..." and, with --json, an error event; returns EXIT_USAGE. */
static int usage_error(const ui_state *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const ui_state *u, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf("%s (see `pdsmove migrate --help`)", msg);
    if (u->json) emit_error(u, msg, false, true);
    return EXIT_USAGE;
}

static bool is_url(const char *s) {
    const char *host = !strncmp(s, "https://", 8) ? s + 8 : !strncmp(s, "http://", 7) ? s + 7 : NULL;
    return host && *host && *host != '/';
}

static bool has_json_flag(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--json")) return true;
    }
    return false;
}

/* Parses argv into o and f; 0 when fine, else the exit status (the message is printed). */
static int parse_args(int argc, char **argv, migrate_opts *o, file_args *f, ui_state *u) {
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case O_TO: o->to_url = optarg; break;
        case O_FROM: o->from_url = optarg; break;
        case O_PLC: o->plc_url = optarg; break;
        case O_JOURNAL: f->journal_path = optarg; break;
        case O_WORK: o->work_dir = optarg; break;
        case O_PW: f->pw_file = optarg; break;
        case O_2FA: f->fa_file = optarg; break;
        case O_NEWPW: f->newpw_file = optarg; break;
        case O_ADMINPW: f->admin_file = optarg; break;
        case O_HANDLE: o->new_handle = optarg; break;
        case O_EMAIL: o->new_email = optarg; break;
        case O_INVITE: o->invite_code = optarg; break;
        case O_INVITEFILE: f->invite_file = optarg; break;
        case O_TOKFILE: o->plc_token_file = optarg; break;
        case O_TOKDB: o->plc_token_db = optarg; break;
        case O_ROTKEY: o->rotation_key_file = optarg; break;
        case O_ADDKEY: o->add_rotation_key = optarg; break;
        case O_JOBS: {
            char *end = NULL;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 1 || n > JOBS_MAX)
                return usage_error(u, "--jobs takes a number from 1 to %d, not '%s'", JOBS_MAX, optarg);
            o->jobs = (int)n;
            break;
        }
        case O_CRAWL:
            if (o->n_relays == MIGRATE_MAX_RELAYS) return usage_error(u, "at most %d --request-crawl relays", MIGRATE_MAX_RELAYS);
            o->relays[o->n_relays++] = optarg;
            break;
        case O_KEEPOLD: o->keep_old_active = true; break;
        case O_DRY: o->dry_run = true; break;
        case O_YES: o->yes = true; break;
        case O_JSON: u->json = true; break;
        case O_INSECURE: o->allow_insecure_http = true; break;
        case O_FORCE: o->force = true; break;
        case O_ARCHIVE: f->archive_dir = optarg; break;
        case O_NOARCHIVE: f->no_archive = true; break;
        case O_FROMBACKUP: o->from_backup = optarg; break;
        case O_SNAPSHOT: o->from_snapshot = optarg; break;
        case O_WATCH: o->watch_state = optarg; break;
        case O_BYPASS: f->bypass_file = optarg; break;
        case O_WAITLIMITS: o->wait_for_limits = true; break;
        case O_MAXREPO:
            if (!cli_parse_bytes(optarg, &o->max_repo_bytes))
                return usage_error(u, "--max-repo-bytes takes a size such as 4294967296 or 4G, not '%s'", optarg);
            break;
        case ':': return usage_error(u, "option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt > 0 && optopt < 128) return usage_error(u, "unknown option '-%c'", optopt);
            return usage_error(u, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc) return usage_error(u, "give the ACCOUNT to move (a handle or a DID)");
    if (optind < argc - 1)
        return usage_error(u, "give one ACCOUNT only, not '%s' and '%s' (options start with --)", argv[optind],
                           argv[optind + 1]);
    o->account = argv[optind];
    if (o->account[0] == '@') o->account++; /* "@alice.bsky.social", as the apps show it */
    if (!syntax_at_identifier(o->account, NULL))
        return usage_error(u, "'%s' is neither a handle (alice.bsky.social) nor a DID (did:plc:...)", argv[optind]);
    if (!o->to_url) return usage_error(u, "--to NEW_PDS_URL is required");
    const struct { const char *opt, *val; } urls[] = {{"--to", o->to_url}, {"--from", o->from_url}, {"--plc-url", o->plc_url}};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++)
        if (urls[i].val && !is_url(urls[i].val))
            return usage_error(u, "%s takes a URL such as https://pds.example.com, not '%s'", urls[i].opt, urls[i].val);
    for (size_t i = 0; i < o->n_relays; i++)
        if (!is_url(o->relays[i]))
            return usage_error(u, "--request-crawl takes a relay URL such as https://bsky.network, not '%s'", o->relays[i]);
    if (o->plc_token_file && o->plc_token_db)
        return usage_error(u, "--plc-token-file and --plc-token-from-db exclude each other: give one way to the email token");
    if (o->rotation_key_file && (o->plc_token_file || o->plc_token_db))
        return usage_error(u, "--rotation-key signs locally, so no email token is needed: drop --plc-token-file/--plc-token-from-db");
    if (f->archive_dir && f->no_archive) return usage_error(u, "--keep-archive and --no-keep-archive exclude each other");
    if (o->from_snapshot && !o->from_backup) return usage_error(u, "--snapshot ID names a snapshot of --from-backup DIR: give that too");
    if (o->from_backup && f->archive_dir)
        return usage_error(u, "--keep-archive makes no new archive with --from-backup: the backup already holds the snapshot");
    if (o->add_rotation_key) {
        key_pub k;
        err_t ke = {0};
        if (key_pub_from_did_key(&k, o->add_rotation_key, &ke))
            return usage_error(u, "--add-rotation-key takes a did:key (`pdsmove key show FILE` prints it): %s", ke.msg);
    }
    return 0;
}

/* ---- the command ---- */

typedef struct {
    char pw[512], fa[128], newpw[512], adminpw[512], bypass[256], invite[256];
} secrets;

static bool read_secrets(const file_args *f, migrate_opts *o, secrets *s, err_t *e) {
    if (!cli_get_secret(f->pw_file, "PDSMOVE_PASSWORD", "Password of the account (old PDS): ", "password for the old account",
                        s->pw, sizeof s->pw, e))
        return false;
    o->password = s->pw;
    if (f->fa_file) {
        if (!cli_secret_from_file(f->fa_file, s->fa, sizeof s->fa, e)) return false;
        o->auth_factor_token = s->fa;
    }
    if (!o->dry_run || f->newpw_file) {
        if (!cli_get_secret(f->newpw_file, "PDSMOVE_NEW_PASSWORD", "Password for the new account: ", "password for the new account",
                            s->newpw, sizeof s->newpw, e))
            return false;
        o->new_password = s->newpw;
    }
    if (f->admin_file) {
        if (!cli_secret_from_file(f->admin_file, s->adminpw, sizeof s->adminpw, e)) return false;
        o->admin_password = s->adminpw;
    }
    if (f->bypass_file) {
        if (!cli_bypass_key_from_file(f->bypass_file, s->bypass, sizeof s->bypass, e)) return false;
        o->new_pds_bypass_key = s->bypass;
    }
    if (f->invite_file) {
        if (o->invite_code) {
            err_set(e, ERR_USAGE, "give --invite-code or --invite-code-file, not both");
            return false;
        }
        if (!cli_secret_from_file(f->invite_file, s->invite, sizeof s->invite, e)) return false;
        o->invite_code = s->invite;
    }
    return true;
}

/* Journal, work and archive paths (defaults under the state directory), created as needed. */
static bool prepare_paths(migrate_opts *o, file_args *f, char *jpath, size_t jsize, char *work, size_t wsize, char *archive,
                          size_t asize, err_t *e) {
    char state[900];
    cli_state_dir(state, sizeof state);
    if (!f->journal_path) {
        if (cli_mkdirs(state, e)) return false;
        cli_default_journal(jpath, jsize);
        f->journal_path = jpath;
    }
    if (!o->work_dir) {
        char safe[200];
        size_t k = 0;
        for (const char *p = o->account; *p && k + 1 < sizeof safe; p++) safe[k++] = (*p == '/' || *p == ':') ? '_' : *p;
        safe[k] = 0;
        snprintf(work, wsize, "%s/work/%s", state, safe);
        o->work_dir = work;
    }
    if (cli_mkdirs(o->work_dir, e)) return false;
    if (!f->no_archive && !o->from_backup) {
        if (f->archive_dir) snprintf(archive, asize, "%s", f->archive_dir);
        else snprintf(archive, asize, "%s/archives", state);
        if (cli_mkdirs(archive, e)) return false;
        o->archive_dir = archive;
    }
    return true;
}

int cmd_migrate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        print_usage(stdout);
        return EXIT_OK_;
    }
    migrate_opts o = {.jobs = JOBS_DEFAULT};
    file_args f = {0};
    ui_state u = {.lock = PTHREAD_MUTEX_INITIALIZER, .started = now_s(), .json = has_json_flag(argc, argv)};
    int status = parse_args(argc, argv, &o, &f, &u);
    if (status) return status;
    const char *term = getenv("TERM");
    u.live = isatty(STDERR_FILENO) && !u.json && !(term && !strcmp(term, "dumb"));
    u.color = u.live && !getenv("NO_COLOR");
    cli_progress_init(&u.prog, stderr, u.live, u.live ? terminal_columns() : 80);

    err_t e = {0};
    secrets s;
    memset(&s, 0, sizeof s);
    char jpath[1024], work[1024], archive[1024];
    status = EXIT_FAIL;
    bool got_secrets = read_secrets(&f, &o, &s, &e);
    const char *const held[] = {s.pw, s.fa, s.newpw, s.adminpw, s.bypass, s.invite};
    for (size_t i = 0; i < sizeof held / sizeof held[0]; i++) {
        err_t se;
        if (redact_set_add(&u.secrets, held[i], &se)) { /* it could not be kept out of the output */
            report_error(&u, &se, false, false);
            goto wipe;
        }
    }
    if (!got_secrets || !prepare_paths(&o, &f, jpath, sizeof jpath, work, sizeof work, archive, sizeof archive, &e)) {
        report_error(&u, &e, false, e.code == ERR_USAGE);
        goto wipe;
    }
    if (journal_open(f.journal_path, &o.j, &e) != ERR_OK) {
        report_error(&u, &e, e.code == ERR_CONFLICT, false);
        goto wipe;
    }
    if (journal_set_secrets(o.j, held, sizeof held / sizeof held[0], &e) != ERR_OK) {
        journal_close(o.j);
        report_error(&u, &e, false, false);
        goto wipe;
    }
    o.ui = (migrate_ui){.ctx = &u, .step = ui_step, .info = ui_info, .wait = ui_wait, .limit_wait = ui_limit_wait, .confirm = ui_confirm,
                        .ask_secret = ui_ask_secret, .progress = ui_progress};
    migrate_report rep;
    err_code rc = migrate_run(&o, &rep, &e);
    journal_close(o.j);
    cli_progress_reset(&u.prog);
    if (rc) {
        /* a failure in preflight left nothing to continue: its message says what to fix */
        bool resumable = !o.dry_run && rc != ERR_USAGE && rep.run_started;
        err_t clean = e;
        redact(&u, e.msg, clean.msg, sizeof clean.msg);
        cli_error(&clean);
        if (resumable)
            fprintf(stderr,
                    "pdsmove: the journal (%s) keeps what is done: run the same command again to continue\n"
                    "         (`pdsmove status --journal %s` shows where it stands).\n",
                    f.journal_path, f.journal_path);
        if (u.json) emit_error(&u, clean.msg, resumable, rc == ERR_USAGE);
        status = rc == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    } else {
        print_report(&u, &rep, &o, f.journal_path);
        status = EXIT_OK_;
    }
wipe:
    explicit_bzero(&s, sizeof s);
    redact_set_clear(&u.secrets);
    return status;
}
