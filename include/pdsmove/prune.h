/* prune.h — retention for a backup directory (`pdsmove prune`): per account, which snapshots a
 * --keep-daily/--keep-weekly/--keep-monthly policy keeps, then removal of every archive that no
 * kept snapshot needs (its chain of bases, the archives storing blobs of its blob set, and so on
 * transitively). Archive first, index rows after, so a crash leaves at worst an index row for a
 * file that is gone, which the next prune removes. Last, the files in DIR/cache/ of accounts
 * with no snapshot in the index (a first backup that never finished, an account whose snapshots
 * were taken away by hand) go too: an account's newest snapshot is always kept, so prune itself
 * never leaves an account without one. No printing: the report says what happened. */
#ifndef PDSMOVE_PRUNE_H
#define PDSMOVE_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define PRUNE_KEEP_MAX 100000        /* largest --keep-* value */
#define PRUNE_SNAPSHOTS_MAX 200000   /* snapshots in one backup directory */

typedef struct {
    const char *dir;                 /* the backup directory (must hold index.sqlite) */
    int keep_daily, keep_weekly, keep_monthly; /* 0..PRUNE_KEEP_MAX */
    bool dry_run;                    /* decide and report, change nothing */
} prune_opts;

typedef enum {
    PRUNE_KEEP = 0,                  /* chosen by the policy (why: PRUNE_WHY_*) */
    PRUNE_NEEDED,                    /* not chosen, but a kept or needed snapshot depends on it */
    PRUNE_REMOVE,                    /* nothing needs it: its archive and rows go */
    PRUNE_BUSY                       /* its account was skipped (a backup of it is running) */
} prune_decision;

/* Why a snapshot is kept (bits). */
enum {
    PRUNE_WHY_LATEST = 1u << 0,      /* the newest snapshot of the account: always kept */
    PRUNE_WHY_DAILY = 1u << 1,
    PRUNE_WHY_WEEKLY = 1u << 2,
    PRUNE_WHY_MONTHLY = 1u << 3,
    PRUNE_WHY_UNDATED = 1u << 4      /* created_at unreadable: kept rather than guessed */
};

/* Why a snapshot is needed by another one (needed_by). */
typedef enum {
    PRUNE_NEED_NONE = 0,
    PRUNE_NEED_CHAIN,                /* needed_by builds on it (base_id) */
    PRUNE_NEED_BLOBS,                /* its archive stores blobs of needed_by's blob set */
    PRUNE_NEED_UNFINISHED            /* an unfinished backup (needed_by = its snapshot id) builds
                                      * on it or counts on blobs it stores */
} prune_need;

typedef struct {
    char *id, *did, *created_at, *base_id, *archive; /* owned copies of the index row */
    bool incremental;
    prune_decision decision;
    unsigned why;                    /* PRUNE_WHY_* when PRUNE_KEEP */
    prune_need need;                 /* when PRUNE_NEEDED */
    const char *needed_by;           /* borrowed: another entry's id, or the unfinished snapshot's */
    int64_t blobs_for;               /* PRUNE_NEED_BLOBS: how many of needed_by's blobs it stores */
    bool base_missing;               /* incremental whose base is not in the index (damage) */
    /* outcome of a removal (not in a dry run) */
    bool removed;                    /* archive unlinked (or already gone) and rows deleted */
    bool archive_was_missing;        /* the file was already gone (an earlier, interrupted prune) */
    bool failed;                     /* removal failed: see the report's first_error */
    uint64_t archive_bytes;          /* size of the archive (0 when missing) */
} prune_entry;

/* A file or directory in DIR/cache/ of an account without snapshots (PRUNE_CACHE_*). */
typedef enum {
    PRUNE_CACHE_REMOVE = 0,          /* removed (in a dry run: would be) */
    PRUNE_CACHE_BUSY,                /* left: a backup of the account is running */
    PRUNE_CACHE_UNFINISHED,          /* left: an unfinished backup of it (DIR/.work-<id>) will use it */
    PRUNE_CACHE_LEFT                 /* left: the account has a snapshot by now, the entry went
                                      * meanwhile, or it is not the kind of file pdsmove makes */
} prune_cache_decision;

typedef struct {
    char *name;                      /* owned: the entry's name inside DIR/cache/ */
    char *account;                   /* owned: the account part of the name (the DID, ':' -> '_') */
    bool is_dir;                     /* a temporary unpack directory (.unpack-<snapshot id>) */
    prune_cache_decision decision;
    bool removed, failed;            /* outcome when PRUNE_CACHE_REMOVE (not in a dry run) */
    uint64_t bytes;                  /* a file's size (0 for a directory) */
} prune_cache_entry;

typedef struct {
    prune_entry *v;                  /* every snapshot: grouped by account, oldest first */
    size_t n;
    size_t accounts, kept, needed, to_remove, removed, busy_accounts;
    size_t failed;                   /* removals that failed (snapshots and cache entries) */
    uint64_t bytes_freed;            /* or, in a dry run, that would be freed */
    size_t unfinished;               /* accounts with an unfinished backup that prune protected */
    prune_cache_entry *caches;       /* cache files of accounts without snapshots, sorted by name */
    size_t n_caches, caches_removed; /* caches_removed: removed, or in a dry run would be */
    uint64_t cache_bytes_freed;      /* not in bytes_freed */
    char first_error[ERR_MSG_MAX];   /* the first removal or busy problem, for the user */
    char **strings;                  /* private: ids that entries' needed_by borrow (unfinished */
    size_t n_strings, cap_strings;   /* backups' snapshot ids); freed by prune_report_free */
} prune_report;

/* Decides and (unless dry_run) removes. ERR_OK also when some removals failed or an account
 * was busy: the report counts those (failed, busy_accounts) and names the first in first_error.
 * An error return means nothing was decided (no index, bad options, ...). The report is filled
 * even on error; free it with prune_report_free. */
err_code prune_run(const prune_opts *o, prune_report *r, err_t *e);
void prune_report_free(prune_report *r);

/* The calendar keys the policy groups by, from an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.f]Z":
 * day = days since 1970-01-01, week = ISO 8601 year * 100 + week (2021-01-03 -> 202053),
 * month = year * 100 + month. false when the text is not such a time. */
bool prune_calendar_keys(const char *created_at, int64_t *day, int64_t *week, int64_t *month);

/* The policy alone, for one account's snapshots v[0..n) sorted oldest first: sets decision
 * PRUNE_KEEP (with why) on the chosen ones and PRUNE_REMOVE on the others. A rule keeps the
 * newest snapshot of each of the N most recent days (ISO weeks, months) that have a snapshot,
 * like restic's --keep-daily; the rules are independent, and the newest snapshot is always kept. */
void prune_select(prune_entry *v, size_t n, int keep_daily, int keep_weekly, int keep_monthly);

#endif
