/* backup.h — nightly backups of an account into a backup directory:
 *   DIR/snapshots/<id>-full.tar.zst | <id>-incr.tar.zst   (docs/archive-format.md)
 *   DIR/index.sqlite   (backup_index.h; rebuildable from the archives)
 *   DIR/journals/<did>.sqlite (resumable runs, one journal per account; journal.h)
 *   DIR/cache/<did>.repo.car  (the whole repo of the newest snapshot: an incremental run's
 *                              blob list is computed from it plus the diff; rebuildable)
 * A run makes one snapshot: the repo (the whole CAR, or with an earlier snapshot as base only
 * what changed since its rev), every blob not stored before, preferences (with a password),
 * the DID document, the PLC audit log and the complete blob list. An unchanged account costs a
 * few small requests and a tiny snapshot. Verification of whole snapshot chains: backup_verify.
 * No printing here: progress goes through the migrate_ui callbacks. */
#ifndef PDSMOVE_BACKUP_H
#define PDSMOVE_BACKUP_H

#include <stdbool.h>
#include <stdint.h>
#include "pdsmove/backup_index.h"
#include "pdsmove/err.h"
#include "pdsmove/migrate.h"

typedef struct {
    const char *account;         /* handle or DID */
    const char *dir;             /* the backup directory */
    const char *password;        /* optional: adds preferences and reads deactivated accounts (secret);
                                  * an app password is enough (it leaves out only the birth date) */
    const char *pds_url;         /* optional: the PDS (default: from the DID document); also resolves handles */
    const char *plc_url;
    bool full;                   /* a full snapshot even when an earlier one exists */
    bool allow_insecure_http;
    bool wait_for_limits;        /* wait out a rate limit that resets in hours instead of ERR_RATELIMIT */
    int jobs;
    uint64_t max_repo_bytes;     /* a getRepo answer larger than this is refused (0: 4 GiB); also caps each blob */
    migrate_ui ui;
} backup_opts;

typedef struct {
    char did[256];
    char snapshot_id[BACKUP_ID_MAX];
    char archive[BACKUP_PATH_MAX];
    bool incremental;
    bool unchanged;              /* the repo had not changed since the base snapshot */
    int64_t records;             /* in the whole repo at the snapshot; -1 if unknown (an incremental
                                  * whose repo could not be assembled locally) */
    int64_t blobs_total, blobs_new;
    uint64_t archive_bytes;
    char credential[16];         /* what logged in: "password", "app-password" or "none" (manifest.json) */
} backup_report;

err_code backup_run(const backup_opts *o, backup_report *r, err_t *e);

/* Builds a complete snapshot directory (repo.car with the whole repo, blobs/, the JSON files)
 * from snapshot_id, or from the newest snapshot of did, in the backup directory dir. */
err_code backup_assemble(const char *dir, const char *snapshot_id, const char *did, const char *out_dir,
                         backup_snapshot *which, err_t *e);

/* Makes DIR/index.sqlite again from the archives in DIR/snapshots (each unpacked and checked);
 * *n_snapshots = how many were indexed. The old index is replaced only when this succeeds. */
err_code backup_index_rebuild(const char *dir, int *n_snapshots, err_t *e);

/* verify: every snapshot of DIR (or only `snapshot_id`), each assembled from its chain. */
typedef struct {
    const char *dir;
    const char *snapshot_id;     /* NULL: all */
    migrate_ui ui;
} backup_verify_opts;

typedef struct {
    int checked, damaged;
    char first_damage[ERR_MSG_MAX];
} backup_verify_report;

err_code backup_verify_run(const backup_verify_opts *o, backup_verify_report *r, err_t *e);

#endif
