/* migrate.h — the account move as one journaled pipeline of named, idempotent steps:
 *   preflight → export → create-account → import (+ blobs-fetch) → blobs → preferences → identity →
 *   verify → activate → deactivate-old → request-crawl → report
 * Each step records its outcome in the journal; a re-run skips what is done and re-checks
 * remote state before anything that must happen once (account creation, the PLC operation).
 * No printing here: everything the user sees goes through the migrate_ui callbacks. */
#ifndef PDSMOVE_MIGRATE_H
#define PDSMOVE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"
#include "pdsmove/journal.h"
#include "pdsmove/xrpc.h"

/* The journaled steps in the order they run, each with what a run does while it is not done
 * (`pdsmove status` shows it). The single list of step names: migrate.c, identity_update.c
 * and migrate_verify.c journal exactly these (defined in src/pipeline/migrate_steps.c;
 * "preflight" is not journaled, so it is not here). */
typedef struct {
    const char *name; /* the journal's step name */
    const char *does; /* "download the repository from the old PDS and verify it" */
} migrate_step_info;

#define MIGRATE_STEPS_COUNT 12
extern const migrate_step_info migrate_steps[MIGRATE_STEPS_COUNT];

#define MIGRATE_MAX_RELAYS 8

typedef struct {
    void *ctx;
    /* a step starts ("running"), is skipped ("done", from the journal) or ends */
    void (*step)(void *ctx, const char *step, journal_step_status status, const char *detail);
    /* free-form progress line within a step (counts, bytes) */
    void (*info)(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    /* a pause for retry/rate limit */
    xrpc_wait_fn wait;
    /* about once a second while a long rate limit is waited out (wait_for_limits): time left */
    xrpc_wait_fn limit_wait;
    /* asked once just before the PLC operation; return false to stop (resumable) */
    bool (*confirm)(void *ctx, const char *summary);
    /* asks for a secret (PLC token, 2FA code); false = none available */
    bool (*ask_secret)(void *ctx, const char *prompt, char *out, size_t out_size);
    /* transfer progress within a step ("blobs-download", "blobs-upload", "export", "import"):
     * counts and bytes so far and in all (total 0 = unknown); called at most a few times a second */
    void (*progress)(void *ctx, const char *step, uint64_t done, uint64_t total, uint64_t bytes_done,
                     uint64_t bytes_total);
} migrate_ui;

typedef struct {
    const char *account;              /* handle or DID */
    const char *from_url;             /* old PDS override (NULL: from the DID document) */
    const char *to_url;               /* new PDS */
    const char *plc_url;              /* default https://plc.directory */
    const char *password;             /* old account password (secret) */
    const char *auth_factor_token;    /* email 2FA code, if known upfront */
    const char *new_password;         /* (secret) */
    const char *new_handle;           /* default: keep, or <name>.<new PDS domain> */
    const char *new_email;            /* default: the account's current email */
    const char *invite_code;
    const char *admin_password;       /* new PDS admin password: mint an invite code (secret) */
    const char *plc_token_file;       /* read the email token from here (waits for it) */
    const char *plc_token_db;         /* old PDS account.sqlite: read the token there */
    const char *rotation_key_file;    /* sign the PLC op locally with this key */
    const char *add_rotation_key;     /* did:key to put first in rotationKeys */
    const char *work_dir;             /* CAR and blob downloads */
    const char *relays[MIGRATE_MAX_RELAYS]; /* requestCrawl targets */
    size_t n_relays;
    int jobs;
    /* the new PDS's PDS_RATE_LIMIT_BYPASS_KEY (secret): sent to the new PDS only */
    const char *new_pds_bypass_key;
    bool wait_for_limits;             /* wait out a daily limit in place instead of stopping */
    uint64_t max_repo_bytes;          /* a getRepo answer larger than this is refused (0: 4 GiB,
                                       * XRPC_MAX_DOWNLOAD_BYTES_DEFAULT); also caps each blob */
    bool dry_run;
    bool yes;                         /* no confirmation before the PLC op */
    bool keep_old_active;             /* skip deactivate-old */
    bool allow_insecure_http;
    bool force;                       /* accept a re-run whose settings differ from the journal's */
    const char *archive_dir;          /* where the safety archive goes (NULL: no archive) */
    /* Restore with the old PDS still working: the export step assembles a snapshot of this
     * backup directory (backup.h) instead of downloading the repo and blobs; everything after
     * it (create-account through deactivate-old) is the same. NULL: a normal migration. */
    const char *from_backup;
    const char *from_snapshot;        /* which snapshot of from_backup (NULL: the account's newest) */
    const char *watch_state;          /* `plc watch` state file to note the PLC operation in (NULL:
                                       * the account's default one, if it exists) */
    journal *j;
    migrate_ui ui;
} migrate_opts;

typedef struct {
    char did[256];
    char old_pds[512];
    char new_pds[512];
    char handle[256];
    unsigned long long records;
    unsigned long long blobs_total, blobs_done, blobs_failed;
    unsigned long long blob_bytes;
    bool identity_updated, activated, old_deactivated;
    char archive[1200];               /* the safety archive written, "" if none */
    char missing_blobs[2048];         /* names of blobs still missing with their records */
    bool run_started;                 /* the journal holds a run of this move (past preflight):
                                       * after a failure, running again continues it */
    bool already_done;                /* an earlier run in the journal finished this very move:
                                       * nothing was done (only did and new_pds are set) */
    long long limit_reset_s;          /* with ERR_RATELIMIT: when the limit resets (epoch s, 0
                                       * unknown); also in the journal as limit_reset_at */
} migrate_report;

err_code migrate_run(const migrate_opts *o, migrate_report *report, err_t *e);

#endif
