/* repo.h — whole-repository checks over a CAR file: every block hash-checked (streaming),
 * the commit decoded (and its signature checked when a key is given), the MST walked from
 * the commit's data root listing every record in key order. Memory grows with the block
 * count (an index of offsets), not with the file size. Used by `car verify`, migrate's export
 * and verify steps, and backup verification. */
#ifndef PDSMOVE_REPO_H
#define PDSMOVE_REPO_H

#include <stdbool.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"
#include "pdsmove/keys.h"

#define REPO_MAX_COLLECTIONS 256

typedef struct {
    char nsid[320];
    uint64_t records;
} repo_collection_count;

typedef struct {
    char did[256];
    char rev[64];
    cid_t commit;
    cid_t data;
    int64_t commit_version;
    uint64_t blocks;      /* distinct blocks */
    uint64_t duplicates;  /* repeated blocks (tolerated) */
    uint64_t data_bytes;  /* sum of distinct blocks' data */
    uint64_t mst_nodes;
    int mst_root_layer;   /* -1 for an empty tree */
    uint64_t bytes;       /* file size */
    uint64_t records;
    repo_collection_count collections[REPO_MAX_COLLECTIONS];
    size_t n_collections;
    bool more_collections; /* more than REPO_MAX_COLLECTIONS (counts then partial) */
    bool signature_checked;
    size_t signed_by;      /* index into keys[] of the key that verified the commit */
} repo_summary;

/* Called for every record in key order ("collection/rkey"), with the record's DAG-CBOR block
 * (borrowed for the duration of the call). */
typedef err_code (*repo_record_fn)(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data,
                                   size_t len, err_t *e);

/* A partial CAR (getRepo?since=: the new commit plus new MST nodes and records): every block
 * hash-checked, the root commit decoded and its signature checked by one of keys (n_keys 0:
 * not checked). No tree walk: the tree is complete only together with earlier snapshots. */
err_code repo_verify_diff_car(int fd, const key_pub *keys, size_t n_keys, repo_summary *out, err_t *e);

/* Streams the blocks of several CARs (in order; repeats allowed) into one CAR at out_fd whose
 * root is root: how a snapshot chain (full + incrementals) becomes one verifiable repo. */
err_code repo_merge_cars(const int *fds, size_t n_fds, const cid_t *root, int out_fd, err_t *e);

/* The blob references inside one record ({"$type":"blob", "ref": CID, "size": n, ...}, and the
 * legacy {"cid": "...", "mimeType": "..."} form with size -1), found without recursion. */
typedef err_code (*repo_blob_ref_fn)(void *ctx, const cid_t *cid, int64_t size_bytes, err_t *e);
err_code repo_record_blob_refs(const uint8_t *data, size_t len, repo_blob_ref_fn fn, void *ctx, err_t *e);

/* Verifies the CAR in fd (from offset 0). With n_keys > 0 the commit must be signed by one of
 * keys[0..n_keys) (a repo just imported into a new PDS still carries the old key's commit);
 * with n_keys == 0 the signature is not checked. */
err_code repo_verify_car(int fd, const key_pub *keys, size_t n_keys, repo_record_fn fn, void *ctx, repo_summary *out,
                         err_t *e);

/* The same checks, handing fn each record's key and CID (data NULL, len 0) as the walk reaches
 * it, without reading the record: the records' presence is checked after the walk in one
 * sorted pass, so a missing record block is reported (the same error) after fn has seen the
 * keys before and after it. For listings (`car ls`). */
err_code repo_list_car(int fd, const key_pub *keys, size_t n_keys, repo_record_fn fn, void *ctx, repo_summary *out,
                       err_t *e);

#endif
