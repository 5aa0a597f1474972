/* backup_index.h — the SQLite index of a backup directory (DIR/index.sqlite): which snapshots
 * exist (account, time, full or incremental, the snapshot it builds on, rev, commit, archive
 * file) and which archive holds each blob (blobs are stored once per CID across snapshots).
 * The archives are the truth; the index is a cache that backup_index_rebuild makes again from
 * their manifests. Schema: docs/archive-format.md. */
#ifndef PDSMOVE_BACKUP_INDEX_H
#define PDSMOVE_BACKUP_INDEX_H

#include <stdbool.h>
#include <stdint.h>
#include "pdsmove/err.h"

typedef struct backup_index backup_index;

#define BACKUP_ID_MAX 160
#define BACKUP_PATH_MAX 1200

typedef struct {
    char id[BACKUP_ID_MAX];          /* "<did_>-<UTC time>", also the archive's top directory */
    char did[256];
    char created_at[32];             /* RFC 3339 UTC */
    bool incremental;
    char base_id[BACKUP_ID_MAX];     /* the snapshot this one builds on ("" for a full one) */
    char rev[64];
    char commit[128];
    char data_root[128];
    char archive[BACKUP_PATH_MAX];   /* file name inside DIR/snapshots/ */
    int64_t records;
    int64_t blobs_total;             /* blobs the account had (listed) at that time */
    int64_t blobs_new;               /* blobs stored in this snapshot's archive */
} backup_snapshot;

err_code backup_index_open(const char *dir, backup_index **out, err_t *e);
/* Opens an existing index only to read a backup from it (verify, restore, migrate
 * --from-backup; also a read-only disk or mount); ERR_NOT_FOUND when DIR has none. Writing
 * through it fails. Every row it hands out is checked first (backup_snapshot_check; blob_where's
 * snapshot id and snapshot_blobs' CIDs likewise): a row that fails is ERR_INVALID naming it,
 * never skipped silently. (backup_index_open, the writer's handle, does not check.) */
err_code backup_index_open_readonly(const char *dir, backup_index **out, err_t *e);
void backup_index_close(backup_index *x);

err_code backup_index_add_snapshot(backup_index *x, const backup_snapshot *s, err_t *e);
/* The newest snapshot of did; ERR_NOT_FOUND if none. */
err_code backup_index_latest(backup_index *x, const char *did, backup_snapshot *out, err_t *e);
err_code backup_index_get(backup_index *x, const char *id, backup_snapshot *out, err_t *e);
/* A row's names are what pdsmove writes (backup_names.h): a valid DID, its id and base id
 * snapshot ids of that DID (none for a full one, never itself), a plain archive name, canonical
 * CIDs. ERR_INVALID naming the row, prefixed by where. */
err_code backup_snapshot_check(const backup_snapshot *s, const char *where, err_t *e);
/* All snapshots (optionally of one DID), oldest first; fn returns false to stop. */
err_code backup_index_each(backup_index *x, const char *did, bool (*fn)(void *ctx, const backup_snapshot *s), void *ctx,
                           err_t *e);
err_code backup_index_remove_snapshot(backup_index *x, const char *id, err_t *e);

/* Blobs: which snapshot stores a CID (of that DID); ERR_NOT_FOUND if none. */
err_code backup_index_blob_where(backup_index *x, const char *did, const char *cid, char *snapshot_id, size_t size,
                                 err_t *e);
/* The size the index lists for cid stored in snapshot_id (-1: not listed or unknown). */
int64_t backup_index_blob_size(backup_index *x, const char *did, const char *cid, const char *snapshot_id);
err_code backup_index_add_blob(backup_index *x, const char *did, const char *cid, int64_t size, const char *snapshot_id,
                               err_t *e);
/* The blob set of a snapshot (every blob the account had then): recorded at backup time. */
err_code backup_index_add_snapshot_blob(backup_index *x, const char *snapshot_id, const char *cid, err_t *e);
err_code backup_index_snapshot_blobs(backup_index *x, const char *snapshot_id,
                                     bool (*fn)(void *ctx, const char *cid, const char *stored_in), void *ctx, err_t *e);

err_code backup_index_tx_begin(backup_index *x, err_t *e);
err_code backup_index_tx_commit(backup_index *x, err_t *e);
void backup_index_tx_rollback(backup_index *x);

#endif
