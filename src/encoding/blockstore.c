/* blockstore.c — CID → block index over a CAR file (or memory); see blockstore.h.
 * Only sha2-256 CIDs are stored (the CAR reader rejects others), so an entry is keyed by
 * codec + 32-byte digest; entries live in one array, found through an open-addressing table
 * of indices. Block data is never kept for file-backed entries: memory grows with the block
 * count only. */
#include "pdsmove/blockstore.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "pdsmove/car.h"
#include "pdsmove/codec.h"

#define DIGEST_BYTES 32
#define NO_ENTRY UINT32_MAX

typedef struct {
    uint8_t digest[DIGEST_BYTES];
    uint64_t codec;
    uint64_t offset;   /* file-backed: absolute offset of the data in fd */
    uint32_t len;
    uint32_t pad_;
    uint8_t *mem;      /* memory-backed: owned copy (NULL for file-backed) */
} entry_t;

struct blockstore {
    entry_t *entries;
    uint32_t n, cap;
    uint32_t *table;   /* indices into entries, NO_ENTRY = empty slot */
    uint32_t table_size; /* power of two, > 2 * n */
    int fd;            /* -1 until a CAR is loaded */
    uint8_t *scratch;  /* pread buffer for blockstore_get */
    size_t scratch_cap;
    blockstore_stats st;
};

blockstore *blockstore_new(void) {
    blockstore *bs = calloc(1, sizeof *bs);
    if (bs) bs->fd = -1;
    return bs;
}

void blockstore_free(blockstore *bs) {
    if (!bs) return;
    for (uint32_t i = 0; i < bs->n; i++) free(bs->entries[i].mem);
    free(bs->entries);
    free(bs->table);
    free(bs->scratch);
    free(bs);
}

static bool cid_storable(const cid_t *c) {
    return c->hash_code == CID_HASH_SHA256 && c->digest_len == DIGEST_BYTES;
}

static uint32_t slot_for(const uint8_t *digest, uint64_t codec, uint32_t mask) {
    uint64_t h;
    memcpy(&h, digest, sizeof h); /* the digest is already uniformly distributed */
    h ^= codec * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h ^ (h >> 32)) & mask;
}

/* Index of the entry for cid, or NO_ENTRY; *slot gets the table slot (found or free). */
static uint32_t lookup(const blockstore *bs, const cid_t *cid, uint32_t *slot) {
    if (!bs->table_size || !cid_storable(cid)) return NO_ENTRY;
    const uint8_t *d = cid_digest(cid);
    uint32_t mask = bs->table_size - 1;
    uint32_t s = slot_for(d, cid->codec, mask);
    for (;;) {
        uint32_t idx = bs->table[s];
        if (idx == NO_ENTRY) { *slot = s; return NO_ENTRY; }
        const entry_t *en = &bs->entries[idx];
        if (en->codec == cid->codec && !memcmp(en->digest, d, DIGEST_BYTES)) { *slot = s; return idx; }
        s = (s + 1) & mask;
    }
}

static err_code grow_table(blockstore *bs, err_t *e) {
    uint32_t size = bs->table_size ? bs->table_size * 2 : 1024;
    uint32_t *t = malloc((size_t)size * sizeof *t);
    if (!t) return err_set(e, ERR_NOMEM, "out of memory growing the block index to %u slots", size);
    memset(t, 0xff, (size_t)size * sizeof *t);
    for (uint32_t i = 0; i < bs->n; i++) {
        uint32_t s = slot_for(bs->entries[i].digest, bs->entries[i].codec, size - 1);
        while (t[s] != NO_ENTRY) s = (s + 1) & (size - 1);
        t[s] = i;
    }
    free(bs->table);
    bs->table = t;
    bs->table_size = size;
    return ERR_OK;
}

/* Adds an entry unless present. *dup tells which happened. */
static err_code add_entry(blockstore *bs, const cid_t *cid, uint64_t offset, size_t len, const uint8_t *copy_from, bool *dup, err_t *e) {
    char cs[CID_STR_MAX];
    if (!cid_storable(cid)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_INVALID, "block %s: only sha2-256 CIDs are supported", cs);
    }
    uint32_t slot = 0;
    *dup = lookup(bs, cid, &slot) != NO_ENTRY;
    if (*dup) {
        bs->st.duplicates++;
        return ERR_OK;
    }
    if (bs->n >= BLOCKSTORE_MAX_BLOCKS)
        return err_set(e, ERR_LIMIT, "more than %llu blocks (limit)", (unsigned long long)BLOCKSTORE_MAX_BLOCKS);
    err_code rc;
    if ((uint64_t)(bs->n + 1) * 2 > bs->table_size) {
        if ((rc = grow_table(bs, e))) return rc;
        lookup(bs, cid, &slot);
    }
    if (bs->n == bs->cap) {
        uint32_t cap = bs->cap ? bs->cap * 2 : 256;
        entry_t *p = realloc(bs->entries, (size_t)cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory indexing %u blocks", cap);
        bs->entries = p;
        bs->cap = cap;
    }
    entry_t *en = &bs->entries[bs->n];
    memset(en, 0, sizeof *en);
    memcpy(en->digest, cid_digest(cid), DIGEST_BYTES);
    en->codec = cid->codec;
    en->offset = offset;
    en->len = (uint32_t)len;
    if (copy_from) {
        en->mem = malloc(len ? len : 1);
        if (!en->mem) return err_set(e, ERR_NOMEM, "out of memory storing a %zu-byte block", len);
        memcpy(en->mem, copy_from, len);
    }
    bs->table[slot] = bs->n++;
    bs->st.blocks++;
    bs->st.data_bytes += len;
    return ERR_OK;
}

err_code blockstore_load_car(blockstore *bs, int fd, cid_t *roots, size_t roots_cap, size_t *n_roots, err_t *e) {
    *n_roots = 0;
    if (bs->fd >= 0) return err_set(e, ERR_USAGE, "this block store already holds a CAR file");
    off_t base = lseek(fd, 0, SEEK_CUR);
    if (base < 0)
        return err_set(e, ERR_USAGE, "the CAR must be a regular file (random access is needed to walk the repo): %s", strerror(errno));
    car_reader *r = NULL;
    err_code rc = car_reader_open(fd, &r, e);
    if (rc) return rc;
    size_t nr;
    const cid_t *rr = car_reader_roots(r, &nr);
    for (size_t i = 0; i < nr && i < roots_cap; i++) roots[i] = rr[i];
    *n_roots = nr;
    bs->fd = fd;
    for (;;) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        if ((rc = car_reader_next(r, &cid, &data, &len, e))) break;
        if (!data) break;
        bool dup;
        if ((rc = add_entry(bs, &cid, (uint64_t)base + car_reader_data_offset(r), len, NULL, &dup, e))) break;
    }
    bs->st.file_bytes += car_reader_bytes_read(r);
    car_reader_free(r);
    return rc;
}

err_code blockstore_put(blockstore *bs, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    char cs[CID_STR_MAX];
    if (len > CAR_MAX_BLOCK_BYTES) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_LIMIT, "block %s is %zu bytes (limit %zu)", cs, len, CAR_MAX_BLOCK_BYTES);
    }
    if (!cid_matches(cid, data, len)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_MISMATCH, "block %s: data does not hash to its CID", cs);
    }
    bool dup;
    return add_entry(bs, cid, 0, len, data, &dup, e);
}

bool blockstore_has(const blockstore *bs, const cid_t *cid) {
    uint32_t slot;
    return lookup(bs, cid, &slot) != NO_ENTRY;
}

static err_code read_entry(blockstore *bs, const entry_t *en, const cid_t *cid, const uint8_t **data, err_t *e) {
    if (en->mem) { *data = en->mem; return ERR_OK; }
    if (en->len > bs->scratch_cap) {
        size_t cap = bs->scratch_cap ? bs->scratch_cap : 4096;
        while (cap < en->len) cap *= 2;
        uint8_t *p = realloc(bs->scratch, cap);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory reading a %u-byte block", en->len);
        bs->scratch = p;
        bs->scratch_cap = cap;
    }
    char cs[CID_STR_MAX];
    size_t got = 0;
    while (got < en->len) {
        ssize_t k = pread(bs->fd, bs->scratch + got, en->len - got, (off_t)(en->offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            cid_format(cid, cs, sizeof cs);
            return err_set(e, ERR_IO, "re-reading block %s at offset %llu: %s", cs,
                           (unsigned long long)en->offset, k < 0 ? strerror(errno) : "the file got shorter");
        }
        got += (size_t)k;
    }
    if (!cid_matches(cid, bs->scratch, en->len)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_MISMATCH, "block %s at offset %llu no longer matches its CID: the file changed while in use",
                       cs, (unsigned long long)en->offset);
    }
    *data = bs->scratch;
    return ERR_OK;
}

err_code blockstore_get(blockstore *bs, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e) {
    *data = NULL;
    *len = 0;
    uint32_t slot;
    uint32_t idx = lookup(bs, cid, &slot);
    if (idx == NO_ENTRY) {
        char cs[CID_STR_MAX];
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_NOT_FOUND, "block %s is missing", cs);
    }
    const entry_t *en = &bs->entries[idx];
    err_code rc = read_entry(bs, en, cid, data, e);
    if (rc) return rc;
    *len = en->len;
    return ERR_OK;
}

static err_code entry_cid(const entry_t *en, cid_t *out, err_t *e) {
    uint8_t b[CID_MAX_BYTES];
    size_t n = 0;
    b[n++] = 0x01;
    n += varint_encode(en->codec, b + n);
    b[n++] = CID_HASH_SHA256;
    b[n++] = DIGEST_BYTES;
    memcpy(b + n, en->digest, DIGEST_BYTES);
    n += DIGEST_BYTES;
    size_t used;
    return cid_from_bytes(out, b, n, &used, e);
}

err_code blockstore_each(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e) {
    for (uint32_t i = 0; i < bs->n; i++) {
        cid_t cid;
        const uint8_t *data;
        err_code rc = entry_cid(&bs->entries[i], &cid, e);
        if (!rc) rc = read_entry(bs, &bs->entries[i], &cid, &data, e);
        if (!rc) rc = fn(ctx, &cid, data, bs->entries[i].len, e);
        if (rc) return rc;
    }
    return ERR_OK;
}

err_code blockstore_get_cb(void *bs, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e) {
    return blockstore_get(bs, cid, data, len, e);
}

err_code blockstore_put_cb(void *bs, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    return blockstore_put(bs, cid, data, len, e);
}

blockstore_stats blockstore_get_stats(const blockstore *bs) { return bs->st; }
