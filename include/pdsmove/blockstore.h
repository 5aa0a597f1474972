/* blockstore.h — random access to blocks by CID without holding their data in memory.
 * Blocks loaded from a CAR stay in the file: the store keeps only CID digest → (offset,
 * length) and preads a block when asked (re-checking its hash). That index stays in memory
 * up to a limit (BLOCKSTORE_MEM_LIMIT, about 350,000 blocks); past it, it spills to sorted
 * runs in an unlinked temp file in $TMPDIR (or /tmp), merged at the end of the load into one
 * sorted index file read through a fixed page cache, so memory stays flat whatever the
 * repo's size (docs/architecture.md, "Block store"). Blocks can also be put in memory (for
 * building a repo). Blocks may arrive in any order and repeat; a repeated block is counted
 * once. */
#ifndef PDSMOVE_BLOCKSTORE_H
#define PDSMOVE_BLOCKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"

#define BLOCKSTORE_MAX_BLOCKS ((uint64_t)1 << 25) /* ~33M blocks: ~1.6 GiB of index on disk */
#define BLOCKSTORE_MEM_LIMIT ((size_t)16 << 20)   /* index bytes in memory before spilling */
#define BLOCKSTORE_CACHE_BYTES ((size_t)24 << 20) /* page cache of a spilled index */

typedef struct blockstore blockstore;

typedef struct {
    uint64_t blocks;       /* distinct blocks */
    uint64_t duplicates;   /* repeated blocks seen (not stored twice) */
    uint64_t data_bytes;   /* sum of distinct blocks' data lengths */
    uint64_t file_bytes;   /* bytes of CAR read by blockstore_load_car (header included) */
    uint64_t spill_runs;   /* sorted runs written to disk (0: the index stayed in memory) */
} blockstore_stats;

blockstore *blockstore_new(void); /* NULL on allocation failure */
/* The same with other limits (tests force spilling with a tiny mem_limit): mem_limit bytes
 * of file-backed index in memory before spilling (0: never spill; blockstore_expect's CIDs
 * get half of it, as they are collected while the cache is in use), cache_bytes of pages
 * cached for lookups once spilled (at least one 4 KiB page). */
blockstore *blockstore_new_limited(size_t mem_limit, size_t cache_bytes);
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

/* Deferred presence checks, for a walk that only needs to know that blocks exist (a repo's
 * records): blockstore_expect notes a CID (spilling like the index, so memory stays bounded);
 * blockstore_check_expected then checks all of them in one pass in key order, instead of a
 * random lookup each, and forgets them. *any_missing tells whether one is absent; *missing is
 * then the first absent one in expect order. A CID that is not sha2-256 is always absent. */
err_code blockstore_expect(blockstore *bs, const cid_t *cid, err_t *e);
err_code blockstore_check_expected(blockstore *bs, cid_t *missing, bool *any_missing, err_t *e);

/* Calls fn for every distinct block in insertion order (for writing a store out as a CAR);
 * stops at the first non-OK return, which it passes on. A spilled store gives its CAR's
 * blocks first (read from the file again, in file order), then the blocks put in memory. */
typedef err_code (*blockstore_each_fn)(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);
err_code blockstore_each(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e);

/* The same two calls with a void * store, to plug into mst_walk (mst_get_fn) and
 * mst_builder_new (mst_put_fn). */
err_code blockstore_get_cb(void *bs, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e);
err_code blockstore_put_cb(void *bs, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);

blockstore_stats blockstore_get_stats(const blockstore *bs);

#endif
