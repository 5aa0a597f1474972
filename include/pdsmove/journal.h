/* journal.h — the local SQLite journal that makes pipelines resumable. A run (one migrate,
 * backup or restore of one account) has named steps, a small key/value store for facts
 * learned on the way (new account DID, service DIDs, the CAR's commit CID — never secrets),
 * and a blob table. Every change is one SQLite transaction, so a kill at any point leaves
 * the journal as it was before or after that change, never between. One process at a time:
 * journal_open takes an exclusive lock on the file and refuses a second runner.
 * The schema is documented in docs/journal.md. */
#ifndef PDSMOVE_JOURNAL_H
#define PDSMOVE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define JOURNAL_SCHEMA_VERSION 2 /* docs/journal.md: bump with every schema change, add its upgrade */
/* The exit status of the crash-point test hook (PDSMOVE_CRASH_AT, docs/journal.md): as if killed
 * by SIGKILL. */
#define JOURNAL_CRASH_STATUS 137
#define JOURNAL_NAME_MAX 64     /* step and key names */
#define JOURNAL_VALUE_MAX 8192  /* kv values and step details */

typedef struct journal journal;

typedef enum { STEP_PENDING = 0, STEP_RUNNING = 1, STEP_DONE = 2, STEP_FAILED = 3 } journal_step_status;
typedef enum { BLOB_PENDING = 0, BLOB_DONE = 1, BLOB_FAILED = 2 } journal_blob_status;

typedef struct {
    int64_t id;
    char kind[JOURNAL_NAME_MAX];     /* "migrate", "backup", "restore" */
    char subject[256];               /* the account DID */
    bool resumed;                    /* an unfinished run was picked up */
    bool finished;
} journal_run;

typedef struct {
    int64_t total, done, failed, pending;
    int64_t done_bytes;
    int64_t fetched, fetched_bytes; /* downloaded and verified into the snapshot */
} journal_blob_counts;

/* A blob is first fetched (downloaded into the local snapshot and hash-checked), then copied
 * (uploaded to the destination: status done). */
typedef enum { BLOB_PHASE_FETCH = 0, BLOB_PHASE_UPLOAD = 1 } journal_blob_phase;

/* Opens (creating if needed) the journal at path, file mode 0600. A journal of an older schema
 * version is upgraded in place (one transaction). ERR_CONFLICT if another pdsmove holds it, its
 * schema is newer than this program understands, or the file is another SQLite database.
 * The first open in a process reads the crash-point test hook (PDSMOVE_CRASH_AT,
 * PDSMOVE_CRASH_COUNT; docs/journal.md): with it set, the process _exits with
 * JOURNAL_CRASH_STATUS right after the chosen commit. */
err_code journal_open(const char *path, journal **out, err_t *e);
/* Closes j and wipes the secrets it was given. */
void journal_close(journal *j);

/* The secrets of this run (passwords, tokens: copied, up to REDACT_SECRETS_MAX; NULL entries
 * skipped), replacing earlier ones. From then on every text the journal stores that can come
 * from a server (step details, blob errors) has each secret, and each run of at least
 * REDACT_MIN_RUN characters of one, replaced by "[redacted]" (redact.h). Call it right after
 * journal_open, before any step runs. ERR_LIMIT if a secret does not fit (the ones before it
 * are kept). */
err_code journal_set_secrets(journal *j, const char *const *secrets, size_t n, err_t *e);

/* Finds the unfinished run of this kind for subject, or starts a new one. */
err_code journal_run_begin(journal *j, const char *kind, const char *subject, journal_run *out, err_t *e);
err_code journal_run_finish(journal *j, int64_t run_id, err_t *e);
/* The latest run (finished or not) of kind for subject; ERR_NOT_FOUND if none. */
err_code journal_run_latest(journal *j, const char *kind, const char *subject, journal_run *out, err_t *e);

/* The newest run of kind having the fact key=value (only unfinished ones if asked);
 * ERR_NOT_FOUND if none. */
err_code journal_run_find(journal *j, const char *kind, const char *key, const char *value, bool unfinished_only,
                          journal_run *out, err_t *e);

/* Steps: status plus a short human detail ("412 records", the error text, ...). */
err_code journal_step_get(journal *j, int64_t run_id, const char *step, journal_step_status *status,
                          char *detail, size_t detail_size, err_t *e);
err_code journal_step_set(journal *j, int64_t run_id, const char *step, journal_step_status status,
                          const char *detail, err_t *e);
bool journal_step_done(journal *j, int64_t run_id, const char *step);
const char *journal_step_status_name(journal_step_status s);

/* Facts of a run. get: ERR_NOT_FOUND when absent. */
err_code journal_kv_set(journal *j, int64_t run_id, const char *key, const char *value, err_t *e);
err_code journal_kv_get(journal *j, int64_t run_id, const char *key, char *value, size_t value_size, err_t *e);

/* Blobs: adding an existing CID is a no-op (keeps its status). */
err_code journal_blob_add(journal *j, int64_t run_id, const char *cid, int64_t size_bytes, err_t *e);
err_code journal_blob_set(journal *j, int64_t run_id, const char *cid, journal_blob_status status,
                          int64_t size_bytes, const char *error, err_t *e);
/* Marks a blob fetched (size known) or not fetched (its local copy is gone). */
err_code journal_blob_set_fetched(journal *j, int64_t run_id, const char *cid, bool fetched, int64_t size_bytes,
                                  err_t *e);
/* Up to max CIDs (each < 128 chars) waiting for phase (FETCH: not fetched; UPLOAD: fetched, not
 * done), with fewer than max_attempts failures, oldest first; failed ones after pending ones. */
err_code journal_blob_next(journal *j, int64_t run_id, journal_blob_phase phase, int max_attempts, char (*cids)[128],
                           size_t max, size_t *n, err_t *e);
/* One more secret for that redaction, learnt mid-run (an emailed token, a 2FA code). */
err_code journal_add_secret(journal *j, const char *secret, err_t *e);
/* A new attempt at the blobs (a re-run of the command): every blob not done gets its full
 * number of attempts again; errors stay recorded until the next outcome. */
err_code journal_blob_reset_attempts(journal *j, int64_t run_id, err_t *e);
/* Verification: clear all marks, mark one CID as seen at the destination (ERR_NOT_FOUND if it is
 * not in this run's list), count the blobs not seen. */
err_code journal_blob_clear_seen(journal *j, int64_t run_id, err_t *e);
err_code journal_blob_mark_seen(journal *j, int64_t run_id, const char *cid, err_t *e);
err_code journal_blob_count_unseen(journal *j, int64_t run_id, int64_t *n, char *first_cid, size_t first_size, err_t *e);
err_code journal_blob_counts_get(journal *j, int64_t run_id, journal_blob_counts *out, err_t *e);
/* Calls fn for each blob in status (stops early when fn returns false). */
err_code journal_blob_each(journal *j, int64_t run_id, journal_blob_status status,
                           bool (*fn)(void *ctx, const char *cid, int64_t size_bytes, const char *error),
                           void *ctx, err_t *e);

/* Batches many changes into one transaction (blob listing pages). Nested begin is an error. */
err_code journal_tx_begin(journal *j, err_t *e);
err_code journal_tx_commit(journal *j, err_t *e);
void journal_tx_rollback(journal *j);

#endif
