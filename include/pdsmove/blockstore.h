/* blockstore.h — random access to blocks by CID without holding their data in memory.
 * Blocks loaded from a CAR stay in the file: the store keeps only CID digest → (offset,
 * length), about 70 bytes per block, and preads a block when asked (re-checking its hash).
 * Blocks can also be put in memory (for building a repo). Blocks may arrive in any order and
 * repeat; a repeated block is counted once. */
#ifndef PDSMOVE_BLOCKSTORE_H
#define PDSMOVE_BLOCKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"

#define BLOCKSTORE_MAX_BLOCKS ((uint64_t)1 << 25) /* ~33M blocks: ~2.3 GiB of index */

typedef struct blockstore blockstore;

typedef struct {
    uint64_t blocks;       /* distinct blocks */
    uint64_t duplicates;   /* repeated blocks seen (not stored twice) */
    uint64_t data_bytes;   /* sum of distinct blocks' data lengths */
    uint64_t file_bytes;   /* bytes of CAR read by blockstore_load_car (header included) */
} blockstore_stats;

blockstore *blockstore_new(void); /* NULL on allocation failure */
void blockstore_free(blockstore *bs); /* NULL is fine; does not close a loaded CAR's fd */

/* Streams a CAR v1 from fd's current position to its end, verifying every block's hash
 * (car.h errors, unchanged), and indexes the blocks. fd must be seekable (a regular file)
 * and stay open, unchanged, while the store is used; one CAR file per store. The header's
 * roots go to roots[0..roots_cap) and their count to *n_roots. */
err_code blockstore_load_car(blockstore *bs, int fd, cid_t *roots, size_t roots_cap, size_t *n_roots, err_t *e);

/* Copies a block into memory (its data must hash to cid: ERR_MISMATCH otherwise). */
err_code blockstore_put(blockstore *bs, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);

bool blockstore_has(const blockstore *bs, const cid_t *cid);

/* The block's data, borrowed until the next blockstore_get or blockstore_free.
 * ERR_NOT_FOUND (message names the CID) when absent; ERR_MISMATCH if a file-backed block no
 * longer hashes to its CID (the file changed); ERR_IO on a read error. */
err_code blockstore_get(blockstore *bs, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e);

/* Calls fn for every distinct block in insertion order (for writing a store out as a CAR);
 * stops at the first non-OK return, which it passes on. */
typedef err_code (*blockstore_each_fn)(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);
err_code blockstore_each(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e);

/* The same two calls with a void * store, to plug into mst_walk (mst_get_fn) and
 * mst_builder_new (mst_put_fn). */
err_code blockstore_get_cb(void *bs, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e);
err_code blockstore_put_cb(void *bs, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);

blockstore_stats blockstore_get_stats(const blockstore *bs);

#endif
