/* backup_names.h — the grammar of every name pdsmove reads from a backup directory (index
 * rows, manifests, blob lists, SHA256SUMS, tar entries) before any of them is joined into a
 * path, looked up or journaled (docs/archive-format.md, "Names"; docs/threat-model.md).
 * A backup directory is untrusted input: names must be exactly what pdsmove itself writes.
 * Each check returns true when s is valid; otherwise false and, if e is non-NULL, ERR_INVALID
 * with a message naming the (quoted) entry and the rule it breaks. Pure: no I/O. */
#ifndef PDSMOVE_BACKUP_NAMES_H
#define PDSMOVE_BACKUP_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include "pdsmove/err.h"

#define BACKUP_NAME_ID_MAX 160      /* with the NUL, = BACKUP_ID_MAX */
#define BACKUP_NAME_ARCHIVE_MAX 255 /* one path component */
#define BACKUP_NAME_QUOTE_MAX 96

/* A snapshot id: "<did with ':' replaced by '_'>-YYYYMMDDTHHMMSSZ" with an optional "-NN"
 * (02…99; also 2…100, as pdsmove before 0.1 wrote it), e.g. did_plc_abc…-20261125T214500Z-02. With did non-NULL the id must be of that
 * DID; with NULL only its shape is checked ("did_<method>_<id chars>"). Never a path: no '/',
 * never "." or "..". */
bool backup_name_snapshot_id(const char *id, const char *did, err_t *e);
/* The id prefix of did ("did:plc:x" -> "did_plc_x") into out; false if it does not fit. */
bool backup_name_did_prefix(const char *did, char *out, size_t size);
/* An archive file name inside DIR/snapshots/: a plain name ([A-Za-z0-9._%-], not starting
 * with '.', at most 255 bytes) ending in ".tar.zst" or ".tar.gz". */
bool backup_name_archive(const char *name, err_t *e);
/* A CID string that parses and formats back to exactly the same string (CIDv1, base32
 * lower case "b…"); blob = true also requires the raw codec (what blobs are). */
bool backup_name_cid(const char *s, bool blob, err_t *e);
/* s for an error message: printable ASCII only (others become '?'), cut at
 * BACKUP_NAME_QUOTE_MAX - 4 bytes with "..." appended. Returns out. */
const char *backup_name_quote(const char *s, char out[BACKUP_NAME_QUOTE_MAX]);

#endif
