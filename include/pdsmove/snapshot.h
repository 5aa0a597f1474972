/* snapshot.h — the local snapshot of one account, laid out exactly as a backup archive holds
 * it (docs/archive-format.md):
 *   manifest.json  repo.car  blobs/<cid>  blob-list.txt  preferences.json  did-doc.json
 *   plc-audit-log.json
 * migrate's export stage writes one, its import stage reads only from one; backup packs them
 * into archives and restore unpacks them. Packing is a libarchive tar (zstd-compressed when
 * available, gzip otherwise) written under a temporary name, fsynced, then renamed into place. */
#ifndef PDSMOVE_SNAPSHOT_H
#define PDSMOVE_SNAPSHOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define SNAPSHOT_FORMAT "pdsmove-snapshot"
#define SNAPSHOT_FORMAT_VERSION 1
#define SNAPSHOT_PATH_MAX 1200
#define SNAPSHOT_SUMS "SHA256SUMS" /* last entry of every archive: "sha256  relative-name" lines */

/* Paths inside a snapshot directory. */
void snapshot_path(const char *dir, const char *name, char out[SNAPSHOT_PATH_MAX]);

/* Writes a JSON document as a file of the snapshot (temporary name, fsync, rename). */
err_code snapshot_write_json(const char *dir, const char *name, const json_t *doc, err_t *e);
/* Reads one back (caller json_decref()s). */
err_code snapshot_read_json(const char *dir, const char *name, json_t **out, err_t *e);

/* Packs every file of dir into the archive out_path (".tar.zst" or ".tar.gz" is appended to
 * out_base according to the compression used; the final path is written to out_path).
 * Files go under "<top>/" inside the archive. Streams files: memory does not grow with size. */
err_code snapshot_pack(const char *dir, const char *top, const char *out_base, char out_path[SNAPSHOT_PATH_MAX], err_t *e);

/* Caps on what one archive entry may hold (docs/archive-format.md, "Limits"): checked against
 * the size the tar header declares before anything is written, and counted while reading. */
#define SNAPSHOT_JSON_MAX_BYTES ((int64_t)1 << 20)          /* manifest.json, did-doc.json */
#define SNAPSHOT_LOG_MAX_BYTES ((int64_t)64 << 20)          /* plc-audit-log.json, preferences.json */
#define SNAPSHOT_BLOB_LIST_MAX_BYTES ((int64_t)256 << 20)   /* blob-list.txt (~4 million CIDs) */
#define SNAPSHOT_SUMS_MAX_BYTES ((int64_t)256 << 20)        /* SHA256SUMS */
#define SNAPSHOT_REPO_CAR_MAX_BYTES ((int64_t)16 << 30)     /* repo.car */
#define SNAPSHOT_BLOB_MAX_BYTES ((int64_t)1 << 30)          /* each blobs/<cid> */
#define SNAPSHOT_FREE_MARGIN_BYTES ((int64_t)1 << 20)       /* left free on the disk after each entry */

typedef struct {
    /* The archive's top directory must be exactly this (checked on the first entry, before
     * anything is written); NULL: any name of the snapshot-id grammar (backup_names.h). */
    const char *expect_top;
    /* Optional: the size the backup's index lists for a blob of this archive (< 0: not
     * listed, only SNAPSHOT_BLOB_MAX_BYTES applies). A blob entry declaring more is refused. */
    int64_t (*blob_size)(void *ctx, const char *cid);
    void *ctx;
} snapshot_unpack_opts;

/* Extracts an archive made by snapshot_pack into dest, which must not exist yet (created 0700;
 * files written 0600 with O_EXCL, so nothing stale survives and a name twice in the archive is
 * refused). Only the snapshot's own names are accepted (no absolute paths, no "..", no links,
 * blobs named by canonical raw CIDs): anything else is ERR_INVALID naming the entry. Each entry
 * is held to its cap (ERR_LIMIT) and to the free space of dest's file system (ERR_IO) before
 * it is written. Every file is hashed and checked against the archive's SHA256SUMS
 * (ERR_MISMATCH naming the damaged file; a missing list means a truncated archive). *top gets
 * the archive's top directory name. o may be NULL (defaults). Streams. On failure, dest holds
 * only files this call wrote (snapshot_remove removes them). */
err_code snapshot_unpack(const char *archive_path, const char *dest, const snapshot_unpack_opts *o, char *top, size_t top_size,
                         err_t *e);

/* Reads dir/blob-list.txt: every non-empty line must be a canonical raw-codec CID
 * (backup_names.h), the file at most SNAPSHOT_BLOB_LIST_MAX_BYTES; fn gets each CID in order
 * (its error stops the walk). ERR_NOT_FOUND when there is no list; ERR_INVALID naming the file,
 * the line number and the bad line, before fn sees anything of a bad line. */
err_code snapshot_blob_list_each(const char *dir, err_code (*fn)(void *ctx, const char *cid, err_t *e), void *ctx, err_t *e);

/* Removes a snapshot directory (only the files a snapshot has, then the directories). */
err_code snapshot_remove(const char *dir, err_t *e);

#endif
