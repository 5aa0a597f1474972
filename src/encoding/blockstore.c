/* blockstore.c — CID → block index over a CAR file (or memory); see blockstore.h.
 * Only sha2-256 CIDs are stored (the CAR reader rejects others), so an entry is keyed by
 * codec + 32-byte digest; entries live in one array, found through an open-addressing table
 * of indices. Block data is never kept for file-backed entries.
 *
 * Spilling: while a CAR loads, file-backed entries stay in that table until they take more
 * than the store's memory limit; then they are sorted and written out as a run to an
 * unlinked temp file, and the table is emptied of them. At the end of the load the runs are
 * merged (a heap over one small buffer per run) into one sorted index file of 4 KiB pages,
 * repeats across runs counted there; lookups binary-search an in-memory list of each page's
 * first key, then the page, read by pread through a fixed-size direct-mapped page cache.
 * Memory is then the limit plus the cache plus 48 bytes per 85 blocks, whatever the repo. */
#include "pdsmove/blockstore.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

/* An index entry on disk (runs and the merged index). */
typedef struct {
    uint8_t digest[DIGEST_BYTES];
    uint64_t offset;
    uint32_t len;
    uint32_t codec;
} disk_ent;

#define PAGE_BYTES 4096
#define PAGE_ENTS (PAGE_BYTES / sizeof(disk_ent)) /* 85 */
#define MERGE_BUF_ENTS 128                        /* per run while merging: 6 KiB */
#define MEM_ENTRY_COST (sizeof(entry_t) + 2 * sizeof(uint32_t))

typedef struct {
    uint64_t start, n; /* entry index in the run file, count */
} run_t;

struct blockstore {
    entry_t *entries;
    uint32_t n, cap;
    uint32_t *table;   /* indices into entries, NO_ENTRY = empty slot */
    uint32_t table_size; /* power of two, > 2 * n */
    int fd;            /* -1 until a CAR is loaded */
    uint8_t *scratch;  /* pread buffer for blockstore_get */
    size_t scratch_cap;
    blockstore_stats st;
    uint64_t base;          /* fd offset where the CAR starts */
    size_t mem_limit;       /* bytes of file-backed entries kept in the table (0: no limit) */
    size_t cache_bytes;
    uint32_t n_file_mem;    /* file-backed entries in the table */
    int run_fd;             /* sorted runs, while loading; -1 when none */
    run_t *runs;
    size_t n_runs, runs_cap;
    uint64_t run_ents;      /* entries written to run_fd */
    int idx_fd;             /* merged index (pages of PAGE_ENTS disk_ent); -1 when none */
    uint64_t idx_n;         /* entries in it */
    disk_ent *fences;       /* first entry of each page */
    uint64_t n_pages, fences_cap;
    uint8_t *cache;         /* cache_slots pages */
    uint64_t *cache_tag;    /* page number + 1 held by each slot, 0 = empty */
    size_t cache_slots;
};

blockstore *blockstore_new_limited(size_t mem_limit, size_t cache_bytes) {
    blockstore *bs = calloc(1, sizeof *bs);
    if (!bs) return NULL;
    bs->fd = bs->run_fd = bs->idx_fd = -1;
    bs->mem_limit = mem_limit;
    bs->cache_bytes = cache_bytes < PAGE_BYTES ? PAGE_BYTES : cache_bytes;
    return bs;
}

blockstore *blockstore_new(void) { return blockstore_new_limited(BLOCKSTORE_MEM_LIMIT, BLOCKSTORE_CACHE_BYTES); }

void blockstore_free(blockstore *bs) {
    if (!bs) return;
    for (uint32_t i = 0; i < bs->n; i++) free(bs->entries[i].mem);
    free(bs->entries);
    free(bs->table);
    free(bs->scratch);
    if (bs->run_fd >= 0) close(bs->run_fd);
    if (bs->idx_fd >= 0) close(bs->idx_fd);
    free(bs->runs);
    free(bs->fences);
    free(bs->cache);
    free(bs->cache_tag);
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

static err_code rebuild_table(blockstore *bs, uint32_t size, err_t *e) {
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

static err_code grow_table(blockstore *bs, err_t *e) {
    return rebuild_table(bs, bs->table_size ? bs->table_size * 2 : 1024, e);
}

/* ---------------------------------------------------------------- spilling to disk */

static inline uint64_t be64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Key order: digest bytes, then codec. The first 8 bytes almost always decide. */
static inline int ent_cmp(const disk_ent *a, const disk_ent *b) {
    uint64_t x = be64_at(a->digest), y = be64_at(b->digest);
    if (x != y) return x < y ? -1 : 1;
    int c = memcmp(a->digest + 8, b->digest + 8, DIGEST_BYTES - 8);
    if (c) return c;
    return a->codec < b->codec ? -1 : a->codec > b->codec;
}

static int ent_cmp_q(const void *a, const void *b) { return ent_cmp(a, b); }

/* An unlinked temp file in $TMPDIR (or /tmp). */
static err_code temp_file(const char *what, int *out, err_t *e) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
#endif
    if (fd < 0) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/pdsmove-blocks-XXXXXX", dir) >= (int)sizeof path)
            return err_set(e, ERR_USAGE, "the temp directory path (TMPDIR) is too long");
        fd = mkstemp(path);
        if (fd >= 0) unlink(path);
    }
    if (fd < 0)
        return err_set(e, ERR_IO, "cannot create a temp file for the %s in %s: %s (set TMPDIR to a writable directory with free space)",
                       what, dir, strerror(errno));
    *out = fd;
    return ERR_OK;
}

static err_code pwrite_all(int fd, const void *p, size_t n, uint64_t off, const char *what, err_t *e) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = pwrite(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return err_set(e, ERR_IO, "writing the %s to its temp file: %s (is TMPDIR full?)", what, strerror(errno));
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return ERR_OK;
}

static err_code pread_all(int fd, void *p, size_t n, uint64_t off, const char *what, err_t *e) {
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = pread(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return err_set(e, ERR_IO, "reading back the %s from its temp file: %s", what, k < 0 ? strerror(errno) : "it got shorter");
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return ERR_OK;
}

/* Writes the table's file-backed entries out as one sorted run and keeps only the
 * memory-backed ones in the table. */
static err_code spill_run(blockstore *bs, err_t *e) {
    if (bs->n_file_mem == 0) return ERR_OK;
    err_code rc;
    if (bs->run_fd < 0 && (rc = temp_file("block index", &bs->run_fd, e))) return rc;
    if (bs->n_runs == bs->runs_cap) {
        size_t cap = bs->runs_cap ? bs->runs_cap * 2 : 16;
        run_t *p = realloc(bs->runs, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory spilling the block index");
        bs->runs = p;
        bs->runs_cap = cap;
    }
    disk_ent *buf = malloc((size_t)bs->n_file_mem * sizeof *buf);
    if (!buf) return err_set(e, ERR_NOMEM, "out of memory spilling %u index entries", bs->n_file_mem);
    uint32_t k = 0, keep = 0;
    for (uint32_t i = 0; i < bs->n; i++) {
        entry_t *en = &bs->entries[i];
        if (en->mem) {
            bs->entries[keep++] = *en;
            continue;
        }
        memcpy(buf[k].digest, en->digest, DIGEST_BYTES);
        buf[k].offset = en->offset;
        buf[k].len = en->len;
        buf[k].codec = (uint32_t)en->codec;
        k++;
    }
    assert(k == bs->n_file_mem);
    qsort(buf, k, sizeof *buf, ent_cmp_q);
    rc = pwrite_all(bs->run_fd, buf, (size_t)k * sizeof *buf, bs->run_ents * sizeof *buf, "block index", e);
    free(buf);
    if (rc) return rc;
    bs->runs[bs->n_runs++] = (run_t){bs->run_ents, k};
    bs->run_ents += k;
    bs->st.spill_runs++;
    bs->n = keep;
    bs->n_file_mem = 0;
    uint32_t size = 1024;
    while ((uint64_t)(keep + 1) * 2 > size) size *= 2;
    if (keep == 0) { /* give the memory back for the next run and the page cache */
        free(bs->entries);
        bs->entries = NULL;
        bs->cap = 0;
    }
    return rebuild_table(bs, size, e);
}

typedef struct {
    disk_ent buf[MERGE_BUF_ENTS];
    uint64_t next, end; /* entry indices in the run file still to read */
    size_t pos, have;
} run_cursor;

static err_code cursor_fill(blockstore *bs, run_cursor *c, err_t *e) {
    c->pos = 0;
    c->have = c->end - c->next < MERGE_BUF_ENTS ? (size_t)(c->end - c->next) : MERGE_BUF_ENTS;
    err_code rc = pread_all(bs->run_fd, c->buf, c->have * sizeof(disk_ent), c->next * sizeof(disk_ent), "block index", e);
    c->next += c->have;
    return rc;
}

/* heap order: smallest key first, then the earlier run (its blocks came first in the file) */
static bool heap_less(run_cursor *cur, size_t a, size_t b) {
    int c = ent_cmp(&cur[a].buf[cur[a].pos], &cur[b].buf[cur[b].pos]);
    return c < 0 || (c == 0 && a < b);
}

static void heap_down(run_cursor *cur, size_t *heap, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(cur, heap[l], heap[m])) m = l;
        if (r < n && heap_less(cur, heap[r], heap[m])) m = r;
        if (m == i) return;
        size_t t = heap[i]; heap[i] = heap[m]; heap[m] = t;
        i = m;
    }
}

static err_code add_page(blockstore *bs, disk_ent *page, size_t n, err_t *e) {
    if (bs->n_pages == bs->fences_cap) {
        uint64_t cap = bs->fences_cap ? bs->fences_cap * 2 : 64;
        disk_ent *p = realloc(bs->fences, (size_t)cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory indexing the block index");
        bs->fences = p;
        bs->fences_cap = cap;
    }
    bs->fences[bs->n_pages] = page[0];
    if (n < PAGE_ENTS) memset(page + n, 0, (PAGE_ENTS - n) * sizeof *page);
    err_code rc = pwrite_all(bs->idx_fd, page, PAGE_BYTES, bs->n_pages * PAGE_BYTES, "block index", e);
    bs->n_pages++;
    return rc;
}

/* Merges the runs into the paged index, counting blocks repeated across runs. */
static err_code merge_runs(blockstore *bs, err_t *e) {
    err_code rc = temp_file("block index", &bs->idx_fd, e);
    if (rc) return rc;
    size_t k = bs->n_runs;
    run_cursor *cur = malloc(k * sizeof *cur);
    size_t *heap = malloc(k * sizeof *heap);
    disk_ent *page = malloc(PAGE_BYTES);
    if (!cur || !heap || !page) {
        rc = err_set(e, ERR_NOMEM, "out of memory merging the block index");
        goto out;
    }
    size_t hn = 0;
    for (size_t i = 0; i < k; i++) {
        cur[i].next = bs->runs[i].start;
        cur[i].end = bs->runs[i].start + bs->runs[i].n;
        if ((rc = cursor_fill(bs, &cur[i], e))) goto out;
        if (cur[i].have) heap[hn++] = i;
    }
    for (size_t i = hn / 2; i-- > 0;) heap_down(cur, heap, hn, i);
    size_t in_page = 0;
    disk_ent last;
    bool have_last = false;
    while (hn) {
        run_cursor *c = &cur[heap[0]];
        disk_ent en = c->buf[c->pos++];
        if (c->pos == c->have) {
            if (c->next < c->end) {
                if ((rc = cursor_fill(bs, c, e))) goto out;
            } else {
                heap[0] = heap[--hn];
            }
        }
        if (hn) heap_down(cur, heap, hn, 0);
        if (have_last && ent_cmp(&en, &last) == 0) { /* a repeat, seen first in an earlier run */
            bs->st.blocks--;
            bs->st.duplicates++;
            bs->st.data_bytes -= en.len;
            continue;
        }
        last = en;
        have_last = true;
        page[in_page++] = en;
        bs->idx_n++;
        if (in_page == PAGE_ENTS) {
            if ((rc = add_page(bs, page, in_page, e))) goto out;
            in_page = 0;
        }
    }
    if (in_page && (rc = add_page(bs, page, in_page, e))) goto out;
    size_t slots = bs->cache_bytes / PAGE_BYTES;
    if (slots > bs->n_pages) slots = bs->n_pages ? (size_t)bs->n_pages : 1;
    bs->cache = malloc(slots * PAGE_BYTES);
    bs->cache_tag = calloc(slots, sizeof *bs->cache_tag);
    if (!bs->cache || !bs->cache_tag) {
        rc = err_set(e, ERR_NOMEM, "out of memory for the block index cache");
        goto out;
    }
    bs->cache_slots = slots;
out:
    free(cur);
    free(heap);
    free(page);
    close(bs->run_fd);
    bs->run_fd = -1;
    free(bs->runs);
    bs->runs = NULL;
    bs->n_runs = bs->runs_cap = 0;
    return rc;
}

/* Finds cid in the merged index. ERR_NOT_FOUND when absent (e untouched). */
static err_code disk_lookup(blockstore *bs, const cid_t *cid, disk_ent *out, err_t *e) {
    if (bs->idx_fd < 0 || !bs->n_pages || !cid_storable(cid) || cid->codec > UINT32_MAX) return ERR_NOT_FOUND;
    disk_ent key;
    memcpy(key.digest, cid_digest(cid), DIGEST_BYTES);
    key.codec = (uint32_t)cid->codec;
    /* the last page whose first key is <= key: digests are uniform, so start where the
     * key's first 8 bytes put it and step (about one step on average) */
    uint64_t kp = be64_at(key.digest);
    if (ent_cmp(&bs->fences[0], &key) > 0) return ERR_NOT_FOUND;
    uint64_t pg = (uint64_t)(((unsigned __int128)kp * bs->n_pages) >> 64);
    while (pg > 0 && ent_cmp(&bs->fences[pg], &key) > 0) pg--;
    while (pg + 1 < bs->n_pages && ent_cmp(&bs->fences[pg + 1], &key) <= 0) pg++;
    size_t slot = (size_t)(pg % bs->cache_slots);
    const disk_ent *p = (const disk_ent *)(bs->cache + slot * PAGE_BYTES);
    if (bs->cache_tag[slot] != pg + 1) {
        bs->cache_tag[slot] = 0;
        err_code rc = pread_all(bs->idx_fd, (void *)p, PAGE_BYTES, pg * PAGE_BYTES, "block index", e);
        if (rc) return rc;
        bs->cache_tag[slot] = pg + 1;
    }
    uint64_t left = bs->idx_n - pg * PAGE_ENTS;
    size_t n = left < PAGE_ENTS ? (size_t)left : PAGE_ENTS;
    /* the same within the page, between its first key and the next page's */
    uint64_t p0 = be64_at(bs->fences[pg].digest), p1 = pg + 1 < bs->n_pages ? be64_at(bs->fences[pg + 1].digest) : UINT64_MAX;
    size_t i = p1 > p0 ? (size_t)(((unsigned __int128)(kp - p0) * n) / (p1 - p0)) : 0;
    if (i >= n) i = n - 1;
    int c;
    while (i > 0 && (c = ent_cmp(&p[i], &key)) > 0) i--;
    while ((c = ent_cmp(&p[i], &key)) < 0 && i + 1 < n) i++;
    if (c == 0) { *out = p[i]; return ERR_OK; }
    return ERR_NOT_FOUND;
}

/* Adds an entry unless present. *dup tells which happened. */
static err_code add_entry(blockstore *bs, const cid_t *cid, uint64_t offset, size_t len, const uint8_t *copy_from, bool *dup, err_t *e) {
    char cs[CID_STR_MAX];
    if (!cid_storable(cid)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_INVALID, "block %s: only sha2-256 CIDs are supported", cs);
    }
    if (cid->codec > UINT32_MAX) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_INVALID, "block %s: codec 0x%llx is not supported", cs, (unsigned long long)cid->codec);
    }
    uint32_t slot = 0;
    *dup = lookup(bs, cid, &slot) != NO_ENTRY;
    if (!*dup && bs->idx_fd >= 0) {
        disk_ent de;
        err_code lrc = disk_lookup(bs, cid, &de, e);
        if (lrc && lrc != ERR_NOT_FOUND) return lrc;
        *dup = lrc == ERR_OK;
    }
    if (*dup) {
        bs->st.duplicates++;
        return ERR_OK;
    }
    if (bs->st.blocks >= BLOCKSTORE_MAX_BLOCKS)
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
    if (!copy_from) bs->n_file_mem++;
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
    bs->base = (uint64_t)base;
    for (;;) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        if ((rc = car_reader_next(r, &cid, &data, &len, e))) break;
        if (!data) break;
        bool dup;
        if ((rc = add_entry(bs, &cid, (uint64_t)base + car_reader_data_offset(r), len, NULL, &dup, e))) break;
        if (bs->mem_limit && (size_t)bs->n_file_mem * MEM_ENTRY_COST > bs->mem_limit && (rc = spill_run(bs, e))) break;
    }
    bs->st.file_bytes += car_reader_bytes_read(r);
    car_reader_free(r);
    if (!rc && bs->n_runs) { /* the rest joins the runs, so every file-backed entry is in one place */
        rc = spill_run(bs, e);
        if (!rc) rc = merge_runs(bs, e);
    }
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
    if (lookup(bs, cid, &slot) != NO_ENTRY) return true;
    disk_ent de;
    err_t ignored = {0};
    /* the store is never const itself: only the page cache changes */
    return disk_lookup((blockstore *)bs, cid, &de, &ignored) == ERR_OK;
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
    entry_t tmp;
    const entry_t *en;
    if (idx != NO_ENTRY) {
        en = &bs->entries[idx];
    } else {
        disk_ent de;
        err_code lrc = disk_lookup(bs, cid, &de, e);
        if (lrc == ERR_NOT_FOUND) {
            char cs[CID_STR_MAX];
            cid_format(cid, cs, sizeof cs);
            return err_set(e, ERR_NOT_FOUND, "block %s is missing", cs);
        }
        if (lrc) return lrc;
        memset(&tmp, 0, sizeof tmp);
        tmp.offset = de.offset;
        tmp.len = de.len;
        en = &tmp;
    }
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

/* A spilled store's file-backed blocks, in file order: the CAR is read again and each block
 * passed on where its index entry points (its first occurrence). */
static err_code each_spilled(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e) {
    if (lseek(bs->fd, (off_t)bs->base, SEEK_SET) < 0) return err_set(e, ERR_IO, "re-reading the CAR: %s", strerror(errno));
    car_reader *r = NULL;
    err_code rc = car_reader_open(bs->fd, &r, e);
    if (rc) return rc;
    for (;;) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        if ((rc = car_reader_next(r, &cid, &data, &len, e)) || !data) break;
        disk_ent de;
        if ((rc = disk_lookup(bs, &cid, &de, e))) {
            if (rc == ERR_NOT_FOUND) {
                char cs[CID_STR_MAX];
                cid_format(&cid, cs, sizeof cs);
                rc = err_set(e, ERR_MISMATCH, "block %s is not in the index: the CAR changed while in use", cs);
            }
            break;
        }
        if (de.offset != bs->base + car_reader_data_offset(r)) continue; /* a repeat */
        if ((rc = fn(ctx, &cid, data, len, e))) break;
    }
    car_reader_free(r);
    return rc;
}

err_code blockstore_each(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e) {
    if (bs->idx_fd >= 0) {
        err_code rc = each_spilled(bs, fn, ctx, e);
        if (rc) return rc;
    }
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
