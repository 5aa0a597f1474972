/* mst.h — the atproto Merkle Search Tree: key heights, a checking walk that lists every
 * (key, record CID) in order, and a streaming builder that produces the canonical tree (the
 * same node blocks and root CID as the reference implementation) from sorted keys.
 * Keys are "<collection>/<rkey>"; a key's layer is the number of leading zero bits of
 * sha256(key) divided by 2. Nodes are {l: CID|null, e: [{p, k, v, t}]} in DAG-CBOR. */
#ifndef PDSMOVE_MST_H
#define PDSMOVE_MST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"

#define MST_MAX_KEY_BYTES 1024
#define MST_MAX_LAYER 128 /* a 256-bit hash has at most 256 leading zeros */

/* Leading zero bits of sha256(key[0..len)) / 2. Any bytes (even empty) are accepted. */
int mst_key_height(const uint8_t *key, size_t len);
/* Bytes shared at the start of a and b. */
size_t mst_common_prefix_len(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);
/* "collection/rkey": exactly one '/', both sides non-empty, only [A-Za-z0-9_~.:-],
 * at most MST_MAX_KEY_BYTES. */
bool mst_key_valid(const char *key, size_t len);

/* Where the walk gets blocks: data is borrowed until the next call. Return ERR_NOT_FOUND
 * when the block is absent. */
typedef err_code (*mst_get_fn)(void *ctx, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e);
/* Called once per record in key order; key is NUL-terminated and borrowed for the call.
 * A non-OK return stops the walk and is passed on. */
typedef err_code (*mst_visit_fn)(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e);

typedef struct {
    uint64_t nodes;
    uint64_t node_bytes;
    uint64_t records;
    int root_layer;      /* -1 for an empty tree */
} mst_walk_stats;

/* Walks the tree under root with an explicit stack (no recursion), checking: every node is
 * strict DAG-CBOR of the node schema; keys are valid and strictly increasing across the whole
 * tree; prefix lengths fit the previous key of their node; every entry's height equals its
 * node's layer and each subtree sits exactly one layer lower; no empty node except an empty
 * tree's root; no root that is only a subtree pointer. Errors name the node's CID (a missing
 * node is ERR_NOT_FOUND naming the CID and its parent). visit may be NULL; stats may be NULL. */
err_code mst_walk(const cid_t *root, mst_get_fn get, void *get_ctx, mst_visit_fn visit, void *visit_ctx,
                  mst_walk_stats *stats, err_t *e);

/* ---- builder ---- */
/* Receives each node block once it is final (children before parents; the root last). */
typedef err_code (*mst_put_fn)(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);

typedef struct mst_builder mst_builder;
mst_builder *mst_builder_new(mst_put_fn put, void *put_ctx); /* NULL on allocation failure */
/* Keys must be added in strictly increasing byte order and be mst_key_valid. Memory holds
 * only the nodes still open (one per layer), not the whole tree. */
err_code mst_builder_add(mst_builder *b, const char *key, size_t key_len, const cid_t *value, err_t *e);
/* Emits the remaining nodes and gives the root CID (the empty node for no keys). */
err_code mst_builder_finish(mst_builder *b, cid_t *root, err_t *e);
void mst_builder_free(mst_builder *b); /* NULL is fine */

#endif
