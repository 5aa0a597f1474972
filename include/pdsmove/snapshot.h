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

/* Extracts an archive made by snapshot_pack into dest (created; files written 0600). Only the
 * snapshot's own names are accepted (no absolute paths, no "..", no links): anything else is
 * ERR_INVALID naming the entry. Every file is hashed and checked against the archive's
 * SHA256SUMS (ERR_MISMATCH naming the damaged file; a missing list means a truncated archive).
 * *top gets the archive's top directory name. Streams. */
err_code snapshot_unpack(const char *archive_path, const char *dest, char *top, size_t top_size, err_t *e);

/* Removes a snapshot directory (only the files a snapshot has, then the directories). */
err_code snapshot_remove(const char *dir, err_t *e);

#endif
