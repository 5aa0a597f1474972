/* blockstore.c — CID → block index over a CAR file (or memory); see blockstore.h.
 * Only sha2-256 CIDs are stored (the CAR reader rejects others), so an entry is keyed by
 * codec + 32-byte digest.
 *
 * Blocks loaded from the CAR (file-backed) get a 48-byte entry (digest, codec, offset, length)
 * appended to a buffer. When the buffer reaches the store's memory limit, it is sorted and
 * written out as a run to an unlinked temp file. At the end of the load, either nothing was
 * spilled and the buffer is sorted in place, or the last buffer joins the runs and they are
 * merged (a heap over a small buffer per run) into one sorted index file. Either way the
 * result is a sorted array of 4 KiB pages, repeats dropped (the first occurrence kept) and
 * counted there, with each page's first key kept in memory. A lookup guesses the page from
 * the digest's first 8 bytes (digests are uniform), steps to the right one, then does the
 * same inside the page; a spilled page is read by pread through a fixed-size direct-mapped
 * cache. Memory is then the limit (while loading) or the cache (while walking), plus 48 bytes
 * per 85 blocks, whatever the repo. Sorting is a counting sort on the top digest bits, then
 * insertion sort within each bucket.
 *
 * Blocks put in memory (blockstore_put) live in an array of owned copies found through an
 * open-addressing table of indices. */
#include "pdsmove/blockstore.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "pdsmove/car.h"
#include "pdsmove/codec.h"

#define DIGEST_BYTES 32
#define NO_ENTRY UINT32_MAX

/* a block put in memory */
typedef struct {
    uint8_t digest[DIGEST_BYTES];
    uint64_t codec;
    uint32_t len;
    uint8_t *mem; /* owned copy */
} entry_t;

/* a block in the CAR file: load buffer, runs and the sorted index */
typedef struct {
    uint8_t digest[DIGEST_BYTES];
    uint64_t offset; /* absolute offset of the data in fd */
    uint32_t len;
    uint32_t codec;
} disk_ent;

#define PAGE_BYTES 4096
#define PAGE_ENTS (PAGE_BYTES / sizeof(disk_ent)) /* 85 */
#define HUGE_ALIGN ((size_t)2 << 20)
#define MERGE_BUF_ENTS 128                        /* per run while merging: 6 KiB */

typedef struct {
    uint64_t start, n; /* first entry index in the run file, count */
} run_t;

/* Entries collected in a buffer of at most `limit` bytes, spilled as sorted runs to an
 * unlinked temp file when full. */
typedef struct {
    disk_ent *buf;
    size_t n, cap, limit;
    int fd;            /* -1 until the first run */
    run_t *runs;
    size_t n_runs, runs_cap;
    uint64_t ents;     /* entries written to fd */
} sorter;

struct blockstore {
    entry_t *entries;  /* memory-backed blocks */
    uint32_t n, cap;
    uint32_t *table;   /* indices into entries, NO_ENTRY = empty slot */
    uint32_t table_size; /* power of two, > 2 * n */
    int fd;            /* -1 until a CAR is loaded */
    uint64_t base;     /* fd offset where the CAR starts */
    uint8_t *scratch;  /* pread buffer for blockstore_get */
    size_t scratch_cap;
    blockstore_stats st;
    size_t mem_limit;  /* bytes of load buffer before spilling (0: no limit) */
    size_t cache_bytes;
    sorter load;       /* the CAR's blocks while loading */
    sorter exp;        /* blockstore_expect's CIDs (offset = order of the call) */
    uint64_t n_expected;
    /* the sorted index, once loaded: in memory (idx_mem) or in idx_fd */
    disk_ent *idx_mem;
    int idx_fd;
    uint64_t idx_n;
    disk_ent *fences;  /* first entry of each page */
    uint64_t n_pages, fences_cap;
    uint8_t *cache;    /* cache_slots pages of idx_fd */
    uint64_t *cache_tag; /* page number + 1 held by each slot, 0 = empty */
    size_t cache_slots;
};

static void sorter_free(sorter *s);

blockstore *blockstore_new_limited(size_t mem_limit, size_t cache_bytes) {
    blockstore *bs = calloc(1, sizeof *bs);
    if (!bs) return NULL;
    bs->fd = bs->idx_fd = -1;
    bs->load.fd = bs->exp.fd = -1;
    bs->load.limit = mem_limit;
    bs->exp.limit = mem_limit / 2 ? mem_limit / 2 : mem_limit;
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
    sorter_free(&bs->load);
    sorter_free(&bs->exp);
    free(bs->idx_mem);
    if (bs->idx_fd >= 0) close(bs->idx_fd);
    free(bs->fences);
    free(bs->cache);
    free(bs->cache_tag);
    free(bs);
}

static bool cid_storable(const cid_t *c) {
    return c->hash_code == CID_HASH_SHA256 && c->digest_len == DIGEST_BYTES && c->codec <= UINT32_MAX;
}

static err_code check_storable(const cid_t *cid, err_t *e) {
    if (cid_storable(cid)) return ERR_OK;
    char cs[CID_STR_MAX];
    cid_format(cid, cs, sizeof cs);
    if (cid->codec > UINT32_MAX)
        return err_set(e, ERR_INVALID, "block %s: codec 0x%llx is not supported", cs, (unsigned long long)cid->codec);
    return err_set(e, ERR_INVALID, "block %s: only sha2-256 CIDs are supported", cs);
}

/* ---------------------------------------------------------------- memory-backed blocks */

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

/* ---------------------------------------------------------------- sorting and runs */

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

/* key order, then file order (so the first occurrence of a repeated block comes first) */
static inline bool ent_before(const disk_ent *a, const disk_ent *b) {
    int c = ent_cmp(a, b);
    return c < 0 || (c == 0 && a->offset < b->offset);
}

/* Sorts a[0..n) (tmp has room for n): counting sort on the top bits, then insertion sort in
 * each bucket (a few entries each, digests being uniform; an adversary making them collide
 * only slows the sort down). The result is in a. */
static err_code sort_ents(disk_ent *a, size_t n, err_t *e) {
    if (n < 2) return ERR_OK;
    int bits = 1;
    while (bits < 16 && ((size_t)1 << bits) < n) bits++;
    size_t nb = (size_t)1 << bits;
    size_t *pos = calloc(nb + 1, sizeof *pos);
    disk_ent *tmp = malloc(n * sizeof *tmp);
    if (!pos || !tmp) {
        free(pos);
        free(tmp);
        return err_set(e, ERR_NOMEM, "out of memory sorting %zu index entries", n);
    }
    for (size_t i = 0; i < n; i++) pos[(be64_at(a[i].digest) >> (64 - bits)) + 1]++;
    for (size_t b = 0; b < nb; b++) pos[b + 1] += pos[b];
    for (size_t i = 0; i < n; i++) tmp[pos[be64_at(a[i].digest) >> (64 - bits)]++] = a[i];
    memcpy(a, tmp, n * sizeof *a);
    free(tmp);
    free(pos);
    for (size_t i = 1; i < n; i++) { /* buckets are in order already: this only sorts within them */
        disk_ent x = a[i];
        size_t j = i;
        while (j > 0 && ent_before(&x, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
    return ERR_OK;
}

/* An unlinked temp file in $TMPDIR (or /tmp). */
static err_code temp_file(int *out, err_t *e) {
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
        return err_set(e, ERR_IO, "cannot create a temp file for the block index in %s: %s (set TMPDIR to a writable directory with free space)",
                       dir, strerror(errno));
    *out = fd;
    return ERR_OK;
}

static err_code pwrite_all(int fd, const void *p, size_t n, uint64_t off, err_t *e) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = pwrite(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return err_set(e, ERR_IO, "writing the block index to its temp file: %s (is TMPDIR full?)", strerror(errno));
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return ERR_OK;
}

static err_code pread_all(int fd, void *p, size_t n, uint64_t off, err_t *e) {
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = pread(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return err_set(e, ERR_IO, "reading back the block index from its temp file: %s", k < 0 ? strerror(errno) : "it got shorter");
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return ERR_OK;
}

static void sorter_free(sorter *s) {
    free(s->buf);
    s->buf = NULL;
    s->n = s->cap = 0;
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    free(s->runs);
    s->runs = NULL;
    s->n_runs = s->runs_cap = 0;
    s->ents = 0;
}

/* Sorts the buffer and writes it out as one run. */
static err_code sorter_spill(sorter *s, err_t *e) {
    if (s->n == 0) return ERR_OK;
    err_code rc;
    if (s->fd < 0 && (rc = temp_file(&s->fd, e))) return rc;
    if (s->n_runs == s->runs_cap) {
        size_t cap = s->runs_cap ? s->runs_cap * 2 : 16;
        run_t *p = realloc(s->runs, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory spilling the block index");
        s->runs = p;
        s->runs_cap = cap;
    }
    if ((rc = sort_ents(s->buf, s->n, e))) return rc;
    if ((rc = pwrite_all(s->fd, s->buf, s->n * sizeof *s->buf, s->ents * sizeof *s->buf, e))) return rc;
    s->runs[s->n_runs++] = (run_t){s->ents, s->n};
    s->ents += s->n;
    s->n = 0;
    return ERR_OK;
}

static err_code sorter_add(sorter *s, const disk_ent *en, err_t *e) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        size_t max = s->limit / sizeof(disk_ent);
        if (s->limit && cap > max) cap = max > s->n ? max : s->n + 1;
        disk_ent *p = realloc(s->buf, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory indexing %zu blocks", cap);
        s->buf = p;
        s->cap = cap;
    }
    s->buf[s->n++] = *en;
    if (s->limit && s->n * sizeof(disk_ent) >= s->limit) return sorter_spill(s, e);
    return ERR_OK;
}

/* ---------------------------------------------------------------- the sorted index */

static err_code add_fence(blockstore *bs, const disk_ent *first, err_t *e) {
    if (bs->n_pages == bs->fences_cap) {
        uint64_t cap = bs->fences_cap ? bs->fences_cap * 2 : 64;
        disk_ent *p = realloc(bs->fences, (size_t)cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory indexing the block index");
        bs->fences = p;
        bs->fences_cap = cap;
    }
    bs->fences[bs->n_pages++] = *first;
    return ERR_OK;
}

static void count_repeat(blockstore *bs, const disk_ent *en) {
    bs->st.blocks--;
    bs->st.duplicates++;
    bs->st.data_bytes -= en->len;
}

/* Nothing spilled: the load buffer, sorted and without repeats, is the index. */
static err_code index_in_memory(blockstore *bs, err_t *e) {
    sorter *s = &bs->load;
    err_code rc = sort_ents(s->buf, s->n, e);
    if (rc) return rc;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (k && ent_cmp(&s->buf[i], &s->buf[k - 1]) == 0) {
            count_repeat(bs, &s->buf[i]);
            continue;
        }
        s->buf[k++] = s->buf[i];
    }
    for (size_t i = 0; i < k; i += PAGE_ENTS)
        if ((rc = add_fence(bs, &s->buf[i], e))) return rc;
    if (k) {
        disk_ent *p = realloc(s->buf, k * sizeof *p);
        bs->idx_mem = p ? p : s->buf; /* a failed shrink keeps the larger block */
    } else {
        free(s->buf);
    }
    s->buf = NULL;
    s->n = s->cap = 0;
    bs->idx_n = k;
    return ERR_OK;
}

typedef struct {
    disk_ent buf[MERGE_BUF_ENTS];
    uint64_t next, end; /* entry indices in the run file still to read */
    size_t pos, have;
} run_cursor;

/* Yields a sorter's entries in order (key, then offset): from its buffer, sorted in place,
 * when nothing was spilled; otherwise the buffer joins the runs and they are merged. */
typedef struct {
    sorter *s;
    size_t pos;        /* in-memory mode: next in s->buf */
    run_cursor *cur;
    size_t *heap, hn;
} merger;

static err_code cursor_fill(const sorter *s, run_cursor *c, err_t *e) {
    c->pos = 0;
    c->have = c->end - c->next < MERGE_BUF_ENTS ? (size_t)(c->end - c->next) : MERGE_BUF_ENTS;
    err_code rc = pread_all(s->fd, c->buf, c->have * sizeof(disk_ent), c->next * sizeof(disk_ent), e);
    c->next += c->have;
    return rc;
}

/* heap order: smallest key first, then the earlier run (its entries came first) */
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

static err_code merger_open(merger *m, sorter *s, err_t *e) {
    memset(m, 0, sizeof *m);
    m->s = s;
    if (!s->n_runs) return sort_ents(s->buf, s->n, e);
    err_code rc = sorter_spill(s, e);
    if (rc) return rc;
    free(s->buf); /* before the merge (and then the cache) take memory */
    s->buf = NULL;
    s->n = s->cap = 0;
    size_t k = s->n_runs;
    m->cur = malloc(k * sizeof *m->cur);
    m->heap = malloc(k * sizeof *m->heap);
    if (!m->cur || !m->heap) return err_set(e, ERR_NOMEM, "out of memory merging the block index");
    for (size_t i = 0; i < k; i++) {
        m->cur[i].next = s->runs[i].start;
        m->cur[i].end = s->runs[i].start + s->runs[i].n;
        if ((rc = cursor_fill(s, &m->cur[i], e))) return rc;
        if (m->cur[i].have) m->heap[m->hn++] = i;
    }
    for (size_t i = m->hn / 2; i-- > 0;) heap_down(m->cur, m->heap, m->hn, i);
    return ERR_OK;
}

/* The next entry in *en, or *have = false at the end. */
static err_code merger_next(merger *m, disk_ent *en, bool *have, err_t *e) {
    if (!m->cur) {
        *have = m->pos < m->s->n;
        if (*have) *en = m->s->buf[m->pos++];
        return ERR_OK;
    }
    *have = m->hn > 0;
    if (!*have) return ERR_OK;
    run_cursor *c = &m->cur[m->heap[0]];
    *en = c->buf[c->pos++];
    if (c->pos == c->have) {
        if (c->next < c->end) {
            err_code rc = cursor_fill(m->s, c, e);
            if (rc) return rc;
        } else {
            m->heap[0] = m->heap[--m->hn];
        }
    }
    if (m->hn) heap_down(m->cur, m->heap, m->hn, 0);
    return ERR_OK;
}

/* Frees the merger and empties its sorter. */
static void merger_close(merger *m) {
    free(m->cur);
    free(m->heap);
    sorter_free(m->s);
}

static err_code write_page(blockstore *bs, disk_ent *page, size_t n, err_t *e) {
    err_code rc = add_fence(bs, &page[0], e);
    if (rc) return rc;
    memset((uint8_t *)page + n * sizeof *page, 0, PAGE_BYTES - n * sizeof *page); /* the unused tail */
    return pwrite_all(bs->idx_fd, page, PAGE_BYTES, (bs->n_pages - 1) * PAGE_BYTES, e);
}

/* Spilled: the runs are merged into the paged index file. */
static err_code index_on_disk(blockstore *bs, err_t *e) {
    merger m;
    disk_ent *page = NULL;
    err_code rc = merger_open(&m, &bs->load, e);
    if (!rc) rc = temp_file(&bs->idx_fd, e);
    if (!rc && !(page = malloc(PAGE_BYTES))) rc = err_set(e, ERR_NOMEM, "out of memory merging the block index");
    size_t in_page = 0;
    disk_ent en, last;
    bool have = !rc, have_last = false;
    while (!rc && (rc = merger_next(&m, &en, &have, e)) == ERR_OK && have) {
        if (have_last && ent_cmp(&en, &last) == 0) { /* a repeat; its first occurrence came first */
            count_repeat(bs, &en);
            continue;
        }
        last = en;
        have_last = true;
        page[in_page++] = en;
        bs->idx_n++;
        if (in_page == PAGE_ENTS) {
            rc = write_page(bs, page, in_page, e);
            in_page = 0;
        }
    }
    if (!rc && in_page) rc = write_page(bs, page, in_page, e);
    free(page);
    merger_close(&m);
    if (rc) return rc;
    size_t slots = bs->cache_bytes / PAGE_BYTES;
    if (slots > bs->n_pages) slots = bs->n_pages ? (size_t)bs->n_pages : 1;
    /* huge pages where the system allows them: lookups land on random pages, and 4 KiB
     * mappings would cost a TLB miss on most of them */
    if (posix_memalign((void **)&bs->cache, HUGE_ALIGN, slots * PAGE_BYTES)) bs->cache = NULL;
#ifdef MADV_HUGEPAGE
    if (bs->cache) madvise(bs->cache, slots * PAGE_BYTES, MADV_HUGEPAGE);
#endif
    bs->cache_tag = calloc(slots, sizeof *bs->cache_tag);
    if (!bs->cache || !bs->cache_tag) return err_set(e, ERR_NOMEM, "out of memory for the block index cache");
    bs->cache_slots = slots;
    return ERR_OK;
}

static err_code get_page(blockstore *bs, uint64_t pg, const disk_ent **out, err_t *e) {
    if (bs->idx_mem) {
        *out = bs->idx_mem + pg * PAGE_ENTS;
        return ERR_OK;
    }
    size_t slot = (size_t)(pg % bs->cache_slots);
    uint8_t *p = bs->cache + slot * PAGE_BYTES;
    if (bs->cache_tag[slot] != pg + 1) {
        bs->cache_tag[slot] = 0;
        err_code rc = pread_all(bs->idx_fd, p, PAGE_BYTES, pg * PAGE_BYTES, e);
        if (rc) return rc;
        bs->cache_tag[slot] = pg + 1;
    }
    *out = (const disk_ent *)p;
    return ERR_OK;
}

/* Finds cid among the CAR's blocks. ERR_NOT_FOUND when absent (e untouched). */
static err_code file_lookup(blockstore *bs, const cid_t *cid, disk_ent *out, err_t *e) {
    if (!bs->n_pages || !cid_storable(cid)) return ERR_NOT_FOUND;
    disk_ent key;
    memcpy(key.digest, cid_digest(cid), DIGEST_BYTES);
    key.codec = (uint32_t)cid->codec;
    /* the last page whose first key is <= key: digests are uniform, so start where the key's
     * first 8 bytes put it and step (about one step on average) */
    uint64_t kp = be64_at(key.digest);
    if (ent_cmp(&bs->fences[0], &key) > 0) return ERR_NOT_FOUND;
    uint64_t pg = (uint64_t)(((unsigned __int128)kp * bs->n_pages) >> 64);
    while (pg > 0 && ent_cmp(&bs->fences[pg], &key) > 0) pg--;
    while (pg + 1 < bs->n_pages && ent_cmp(&bs->fences[pg + 1], &key) <= 0) pg++;
    const disk_ent *p;
    err_code rc = get_page(bs, pg, &p, e);
    if (rc) return rc;
    uint64_t left = bs->idx_n - pg * PAGE_ENTS;
    size_t n = left < PAGE_ENTS ? (size_t)left : PAGE_ENTS;
    /* the same within the page, between its first key and the next page's */
    uint64_t p0 = be64_at(bs->fences[pg].digest);
    uint64_t p1 = pg + 1 < bs->n_pages ? be64_at(bs->fences[pg + 1].digest) : UINT64_MAX;
    size_t i = p1 > p0 ? (size_t)((double)(kp - p0) / (double)(p1 - p0) * (double)n) : 0;
    if (i >= n) i = n - 1;
    int c;
    while (i > 0 && ent_cmp(&p[i], &key) > 0) i--;
    while ((c = ent_cmp(&p[i], &key)) < 0 && i + 1 < n) i++;
    if (c != 0) return ERR_NOT_FOUND;
    *out = p[i];
    return ERR_OK;
}

/* ---------------------------------------------------------------- the API */

static err_code add_file_block(blockstore *bs, const cid_t *cid, uint64_t offset, size_t len, err_t *e) {
    err_code rc = check_storable(cid, e);
    if (rc) return rc;
    uint32_t slot;
    if (lookup(bs, cid, &slot) != NO_ENTRY) { /* already put in memory */
        bs->st.duplicates++;
        return ERR_OK;
    }
    if (bs->st.blocks >= BLOCKSTORE_MAX_BLOCKS)
        return err_set(e, ERR_LIMIT, "more than %llu blocks (limit)", (unsigned long long)BLOCKSTORE_MAX_BLOCKS);
    disk_ent en;
    memcpy(en.digest, cid_digest(cid), DIGEST_BYTES);
    en.codec = (uint32_t)cid->codec;
    en.offset = offset;
    en.len = (uint32_t)len;
    if ((rc = sorter_add(&bs->load, &en, e))) return rc;
    bs->st.spill_runs = bs->load.n_runs;
    bs->st.blocks++; /* a repeat is taken back when the index is sorted */
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
        if ((rc = add_file_block(bs, &cid, (uint64_t)base + car_reader_data_offset(r), len, e))) break;
    }
    bs->st.file_bytes += car_reader_bytes_read(r);
    car_reader_free(r);
    if (!rc && bs->load.n_runs) {
        rc = sorter_spill(&bs->load, e); /* the last buffer joins the runs */
        bs->st.spill_runs = bs->load.n_runs;
        if (!rc) rc = index_on_disk(bs, e);
    } else if (!rc) {
        rc = index_in_memory(bs, e);
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
    err_code rc = check_storable(cid, e);
    if (rc) return rc;
    uint32_t slot = 0;
    disk_ent de;
    bool dup = lookup(bs, cid, &slot) != NO_ENTRY;
    if (!dup) {
        rc = file_lookup(bs, cid, &de, e);
        if (rc && rc != ERR_NOT_FOUND) return rc;
        dup = rc == ERR_OK;
    }
    if (dup) {
        bs->st.duplicates++;
        return ERR_OK;
    }
    if (bs->st.blocks >= BLOCKSTORE_MAX_BLOCKS)
        return err_set(e, ERR_LIMIT, "more than %llu blocks (limit)", (unsigned long long)BLOCKSTORE_MAX_BLOCKS);
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
    memcpy(en->digest, cid_digest(cid), DIGEST_BYTES);
    en->codec = cid->codec;
    en->len = (uint32_t)len;
    en->mem = malloc(len ? len : 1);
    if (!en->mem) return err_set(e, ERR_NOMEM, "out of memory storing a %zu-byte block", len);
    memcpy(en->mem, data, len);
    bs->table[slot] = bs->n++;
    bs->st.blocks++;
    bs->st.data_bytes += len;
    return ERR_OK;
}

bool blockstore_has(const blockstore *bs, const cid_t *cid) {
    uint32_t slot;
    if (lookup(bs, cid, &slot) != NO_ENTRY) return true;
    disk_ent de;
    err_t ignored = {0};
    /* a store is never defined const: only the page cache changes */
    return file_lookup((blockstore *)bs, cid, &de, &ignored) == ERR_OK;
}

/* Reads a file-backed block into scratch and re-checks its hash. */
static err_code read_file_block(blockstore *bs, const disk_ent *en, const cid_t *cid, const uint8_t **data, err_t *e) {
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
    if (idx != NO_ENTRY) {
        *data = bs->entries[idx].mem;
        *len = bs->entries[idx].len;
        return ERR_OK;
    }
    disk_ent de;
    err_code rc = file_lookup(bs, cid, &de, e);
    if (rc == ERR_NOT_FOUND) {
        char cs[CID_STR_MAX];
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_NOT_FOUND, "block %s is missing", cs);
    }
    if (!rc) rc = read_file_block(bs, &de, cid, data, e);
    if (rc) return rc;
    *len = de.len;
    return ERR_OK;
}

static err_code digest_cid(const uint8_t *digest, uint64_t codec, cid_t *out, err_t *e) {
    uint8_t b[CID_MAX_BYTES];
    size_t n = 0;
    b[n++] = 0x01;
    n += varint_encode(codec, b + n);
    b[n++] = CID_HASH_SHA256;
    b[n++] = DIGEST_BYTES;
    memcpy(b + n, digest, DIGEST_BYTES);
    n += DIGEST_BYTES;
    size_t used;
    return cid_from_bytes(out, b, n, &used, e);
}

err_code blockstore_expect(blockstore *bs, const cid_t *cid, err_t *e) {
    if (!cid_storable(cid)) return ERR_OK; /* never present: found missing by the check */
    disk_ent en;
    memcpy(en.digest, cid_digest(cid), DIGEST_BYTES);
    en.codec = (uint32_t)cid->codec;
    en.offset = bs->n_expected++;
    en.len = 0;
    return sorter_add(&bs->exp, &en, e);
}

err_code blockstore_check_expected(blockstore *bs, cid_t *missing, bool *any_missing, err_t *e) {
    *any_missing = false;
    merger m;
    err_code rc = merger_open(&m, &bs->exp, e);
    uint64_t pg = 0, first_missing = UINT64_MAX;
    size_t at = 0, in_page = 0; /* position in the index, page by page */
    const disk_ent *page = NULL;
    disk_ent x;
    bool have = !rc;
    while (!rc && (rc = merger_next(&m, &x, &have, e)) == ERR_OK && have) {
        /* move through the index (in order, so each page is read once) to the first entry >= x */
        int c = -1;
        while (pg < bs->n_pages) {
            if (!page) {
                if ((rc = get_page(bs, pg, &page, e))) break;
                uint64_t left = bs->idx_n - pg * PAGE_ENTS;
                in_page = left < PAGE_ENTS ? (size_t)left : PAGE_ENTS;
                at = 0;
            }
            while (at < in_page && (c = ent_cmp(&page[at], &x)) < 0) at++;
            if (at < in_page) break;
            page = NULL;
            pg++;
        }
        if (rc) break;
        if (pg < bs->n_pages && c == 0) continue;
        /* not among the CAR's blocks: perhaps put in memory */
        cid_t cid;
        uint32_t slot;
        if ((rc = digest_cid(x.digest, x.codec, &cid, e))) break;
        if (lookup(bs, &cid, &slot) != NO_ENTRY) continue;
        if (x.offset < first_missing) {
            first_missing = x.offset;
            *missing = cid;
            *any_missing = true;
        }
    }
    merger_close(&m);
    bs->n_expected = 0;
    return rc;
}


/* The CAR's blocks in file order: the file is read again (hashes re-checked) and each block
 * passed on where its index entry points (its first occurrence). */
static err_code each_file_block(blockstore *bs, blockstore_each_fn fn, void *ctx, err_t *e) {
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
        if ((rc = file_lookup(bs, &cid, &de, e))) {
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
    if (bs->n_pages) {
        err_code rc = each_file_block(bs, fn, ctx, e);
        if (rc) return rc;
    }
    for (uint32_t i = 0; i < bs->n; i++) {
        cid_t cid;
        err_code rc = digest_cid(bs->entries[i].digest, bs->entries[i].codec, &cid, e);
        if (!rc) rc = fn(ctx, &cid, bs->entries[i].mem, bs->entries[i].len, e);
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
