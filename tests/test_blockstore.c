/* test_blockstore.c — the CID → (offset, length) index over a CAR file: lookups, blocks in
 * any order and repeated, memory-backed puts, missing blocks, pipes refused, and a file
 * altered after indexing caught on read. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/blockstore.h"
#include "pdsmove/car.h"

static int temp_fd(void) {
    char path[] = "/tmp/pdsmove-test-bs-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp");
    unlink(path);
    return fd;
}

typedef struct { cid_t cid; uint8_t data[64]; size_t len; } tblock;

static void make_block(tblock *b, int i) {
    b->len = (size_t)snprintf((char *)b->data, sizeof b->data, "blockstore block %d", i);
    cid_compute(&b->cid, CID_CODEC_DAG_CBOR, b->data, b->len);
}

/* CAR with blocks written in the order given by idx[0..n). */
static int write_car(const tblock *b, const int *idx, size_t n) {
    int fd = temp_fd();
    err_t e = {0};
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, &b[0].cid, &w, &e), ERR_OK);
    for (size_t i = 0; i < n; i++) cr_assert_eq(car_writer_put(w, &b[idx[i]].cid, b[idx[i]].data, b[idx[i]].len, &e), ERR_OK);
    cr_assert_eq(car_writer_finish(w, &e), ERR_OK);
    car_writer_free(w);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

Test(blockstore, finds_every_block_whatever_the_order_and_repeats) {
    enum { N = 50 };
    tblock b[N];
    for (int i = 0; i < N; i++) make_block(&b[i], i);
    int order[3 * N], n = 0;
    for (int i = N - 1; i >= 0; i--) order[n++] = i;          /* reversed */
    for (int i = 0; i < N; i += 2) order[n++] = i;            /* and half repeated */
    int fd = write_car(b, order, (size_t)n);
    blockstore *bs = blockstore_new();
    cid_t roots[2];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, fd, roots, 2, &nr, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(nr, 1);
    cr_assert(cid_eq(&roots[0], &b[0].cid));
    blockstore_stats st = blockstore_get_stats(bs);
    cr_assert_eq(st.blocks, N);
    cr_assert_eq(st.duplicates, N / 2);
    for (int i = 0; i < N; i++) {
        const uint8_t *d;
        size_t len;
        cr_assert(blockstore_has(bs, &b[i].cid), "block %d indexed", i);
        cr_assert_eq(blockstore_get(bs, &b[i].cid, &d, &len, &e), ERR_OK, "block %d: %s", i, e.msg);
        cr_assert_eq(len, b[i].len, "block %d length", i);
        cr_assert(memcmp(d, b[i].data, len) == 0, "block %d data", i);
    }
    tblock other;
    make_block(&other, 1000);
    const uint8_t *d;
    size_t len;
    cr_assert(!blockstore_has(bs, &other.cid));
    cr_assert_eq(blockstore_get(bs, &other.cid, &d, &len, &e), ERR_NOT_FOUND);
    char cs[CID_STR_MAX];
    cid_format(&other.cid, cs, sizeof cs);
    cr_assert(strstr(e.msg, cs), "missing-block message names the CID: %s", e.msg);
    blockstore_free(bs);
    close(fd);
}

Test(blockstore, detects_a_file_changed_after_indexing) {
    tblock b[2];
    make_block(&b[0], 0);
    make_block(&b[1], 1);
    int order[] = {0, 1};
    int fd = write_car(b, order, 2);
    blockstore *bs = blockstore_new();
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, fd, roots, 1, &nr, &e), ERR_OK, "%s", e.msg);
    off_t end = lseek(fd, 0, SEEK_END);
    cr_assert_eq(pwrite(fd, "Z", 1, end - 2), 1); /* inside block 1's data */
    const uint8_t *d;
    size_t len;
    cr_assert_eq(blockstore_get(bs, &b[0].cid, &d, &len, &e), ERR_OK, "untouched block: %s", e.msg);
    cr_assert_eq(blockstore_get(bs, &b[1].cid, &d, &len, &e), ERR_MISMATCH);
    cr_assert(strstr(e.msg, "changed"), "%s", e.msg);
    blockstore_free(bs);
    close(fd);
}

Test(blockstore, refuses_a_pipe) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    blockstore *bs = blockstore_new();
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, p[0], roots, 1, &nr, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "regular file"), "%s", e.msg);
    blockstore_free(bs);
    close(p[0]);
    close(p[1]);
}

Test(blockstore, passes_car_errors_through) {
    tblock b[2];
    make_block(&b[0], 0);
    make_block(&b[1], 1);
    int order[] = {0, 1};
    int fd = write_car(b, order, 2);
    off_t end = lseek(fd, 0, SEEK_END);
    cr_assert_eq(ftruncate(fd, end - 3), 0);
    lseek(fd, 0, SEEK_SET);
    blockstore *bs = blockstore_new();
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, fd, roots, 1, &nr, &e), ERR_TRUNCATED, "%s", e.msg);
    blockstore_free(bs);
    close(fd);
}

static err_code collect(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    int *seen = ctx;
    (void)e;
    char s[64];
    memcpy(s, data, len);
    s[len] = 0;
    int i = atoi(strrchr(s, ' ') + 1);
    tblock b;
    make_block(&b, i);
    cr_assert(cid_eq(cid, &b.cid), "CID rebuilt for block %d", i);
    seen[i]++;
    return ERR_OK;
}

Test(blockstore, memory_puts_grow_the_table_and_iterate_in_order) {
    enum { N = 5000 };
    blockstore *bs = blockstore_new();
    err_t e = {0};
    static tblock b[N];
    for (int i = 0; i < N; i++) {
        make_block(&b[i], i);
        cr_assert_eq(blockstore_put(bs, &b[i].cid, b[i].data, b[i].len, &e), ERR_OK, "put %d: %s", i, e.msg);
    }
    cr_assert_eq(blockstore_put(bs, &b[7].cid, b[7].data, b[7].len, &e), ERR_OK, "a repeat is fine");
    b[8].data[0] ^= 1;
    cr_assert_eq(blockstore_put(bs, &b[8].cid, b[8].data, b[8].len, &e), ERR_MISMATCH, "data must match its CID");
    b[8].data[0] ^= 1;
    cr_assert_eq(blockstore_get_stats(bs).blocks, N);
    cr_assert_eq(blockstore_get_stats(bs).duplicates, 1);
    for (int i = 0; i < N; i++) {
        const uint8_t *d;
        size_t len;
        cr_assert_eq(blockstore_get(bs, &b[i].cid, &d, &len, &e), ERR_OK, "get %d", i);
        cr_assert(len == b[i].len && memcmp(d, b[i].data, len) == 0, "block %d", i);
    }
    static int seen[N];
    cr_assert_eq(blockstore_each(bs, collect, seen, &e), ERR_OK, "%s", e.msg);
    for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "block %d visited once", i);
    blockstore_free(bs);
}

/* ---------------------------------------------------------------- spilling to disk */

typedef struct { int order[4096]; size_t n; } each_log;

static err_code log_order(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    each_log *l = ctx;
    (void)cid;
    (void)e;
    char s[64];
    memcpy(s, data, len);
    s[len] = 0;
    cr_assert_lt(l->n, sizeof l->order / sizeof l->order[0]);
    l->order[l->n++] = atoi(strrchr(s, ' ') + 1);
    return ERR_OK;
}

/* Loads fd into a store with these limits and checks it against b[0..n) (every block found
 * with its data, one absent CID not); *st gets the stats, *log the each() order. */
static void load_and_check(int fd, size_t mem_limit, size_t cache, const tblock *b, int n, blockstore_stats *st, each_log *log) {
    lseek(fd, 0, SEEK_SET);
    blockstore *bs = blockstore_new_limited(mem_limit, cache);
    cr_assert(bs);
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, fd, roots, 1, &nr, &e), ERR_OK, "%s", e.msg);
    for (int round = 0; round < 2; round++) /* the second round finds the pages cached (or not) */
        for (int i = n - 1; i >= 0; i--) {
            const uint8_t *d;
            size_t len;
            cr_assert(blockstore_has(bs, &b[i].cid), "block %d indexed (limit %zu)", i, mem_limit);
            cr_assert_eq(blockstore_get(bs, &b[i].cid, &d, &len, &e), ERR_OK, "block %d: %s", i, e.msg);
            cr_assert(len == b[i].len && memcmp(d, b[i].data, len) == 0, "block %d data (limit %zu)", i, mem_limit);
        }
    tblock other;
    make_block(&other, 100000);
    const uint8_t *d;
    size_t len;
    cr_assert(!blockstore_has(bs, &other.cid));
    cr_assert_eq(blockstore_get(bs, &other.cid, &d, &len, &e), ERR_NOT_FOUND);
    *st = blockstore_get_stats(bs);
    log->n = 0;
    cr_assert_eq(blockstore_each(bs, log_order, log, &e), ERR_OK, "%s", e.msg);
    blockstore_free(bs);
}

Test(blockstore, a_spilled_index_gives_the_same_results) {
    enum { N = 1000 };
    static tblock b[N];
    for (int i = 0; i < N; i++) make_block(&b[i], i);
    /* every block, in a scrambled order, then a third of them again: repeats land in other
     * runs than their first occurrence, and some inside the same run */
    static int order[2 * N];
    size_t n = 0;
    for (int i = 0; i < N; i++) order[n++] = (i * 7919) % N;
    for (int i = 0; i < N; i += 3) order[n++] = i;
    int fd = write_car(b, order, n);
    blockstore_stats mem, disk, one;
    static each_log lm, ld, l1;
    load_and_check(fd, 0, BLOCKSTORE_CACHE_BYTES, b, N, &mem, &lm);
    load_and_check(fd, 7 * 48, 4096, b, N, &disk, &ld); /* a run every 7 blocks, a one-page cache */
    load_and_check(fd, 1, 4096, b, N, &one, &l1);       /* a run per block */
    cr_assert_eq(mem.spill_runs, 0, "no limit: nothing spilled");
    cr_assert_gt(disk.spill_runs, 100, "spilled: %llu runs", (unsigned long long)disk.spill_runs);
    cr_assert_eq(one.spill_runs, n);
    const blockstore_stats *s[] = {&mem, &disk, &one};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(s[k]->blocks, N, "store %d: distinct blocks", k);
        cr_assert_eq(s[k]->duplicates, N / 3 + 1, "store %d: repeats", k);
        cr_assert_eq(s[k]->data_bytes, mem.data_bytes, "store %d: data bytes", k);
        cr_assert_eq(s[k]->file_bytes, mem.file_bytes, "store %d: file bytes", k);
    }
    uint64_t bytes = 0;
    for (int i = 0; i < N; i++) bytes += b[i].len;
    cr_assert_eq(mem.data_bytes, bytes, "repeats are not counted in data_bytes");
    /* each(): first occurrences in file order, the same for all three */
    cr_assert_eq(lm.n, N);
    cr_assert_eq(ld.n, N);
    cr_assert_eq(l1.n, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(lm.order[i], order[i], "each #%d in file order", i);
        cr_assert_eq(ld.order[i], lm.order[i], "spilled each #%d", i);
        cr_assert_eq(l1.order[i], lm.order[i], "one-per-run each #%d", i);
    }
    close(fd);
}

Test(blockstore, a_spilled_store_still_catches_a_changed_file_and_counts_puts) {
    enum { N = 40 };
    tblock b[N + 1];
    for (int i = 0; i <= N; i++) make_block(&b[i], i);
    int order[N];
    for (int i = 0; i < N; i++) order[i] = i;
    int fd = write_car(b, order, N);
    blockstore *bs = blockstore_new_limited(3 * 48, 4096);
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, fd, roots, 1, &nr, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(blockstore_get_stats(bs).spill_runs, 1);
    /* a put of a block the CAR has is a repeat; a new one is stored and found */
    cr_assert_eq(blockstore_put(bs, &b[5].cid, b[5].data, b[5].len, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(blockstore_get_stats(bs).duplicates, 1);
    cr_assert_eq(blockstore_put(bs, &b[N].cid, b[N].data, b[N].len, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(blockstore_get_stats(bs).blocks, N + 1);
    const uint8_t *d;
    size_t len;
    cr_assert_eq(blockstore_get(bs, &b[N].cid, &d, &len, &e), ERR_OK, "%s", e.msg);
    cr_assert(len == b[N].len && memcmp(d, b[N].data, len) == 0);
    off_t end = lseek(fd, 0, SEEK_END);
    cr_assert_eq(pwrite(fd, "Z", 1, end - 2), 1); /* inside the last block's data */
    cr_assert_eq(blockstore_get(bs, &b[N - 1].cid, &d, &len, &e), ERR_MISMATCH);
    cr_assert(strstr(e.msg, "changed"), "%s", e.msg);
    blockstore_free(bs);
    close(fd);
}

Test(blockstore, an_unusable_temp_dir_is_named) {
    enum { N = 10 };
    tblock b[N];
    for (int i = 0; i < N; i++) make_block(&b[i], i);
    int order[N];
    for (int i = 0; i < N; i++) order[i] = i;
    int fd = write_car(b, order, N);
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TMPDIR", "/nonexistent/pdsmove-test", 1);
    blockstore *bs = blockstore_new_limited(2 * 48, 4096);
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    err_code rc = blockstore_load_car(bs, fd, roots, 1, &nr, &e);
    if (saved) setenv("TMPDIR", saved, 1);
    else unsetenv("TMPDIR");
    free(saved);
    cr_assert_eq(rc, ERR_IO, "%s", e.msg);
    cr_assert(strstr(e.msg, "/nonexistent/pdsmove-test") && strstr(e.msg, "TMPDIR"), "%s", e.msg);
    blockstore_free(bs);
    close(fd);
}

Test(blockstore, expected_blocks_are_checked_in_one_pass_spilled_or_not) {
    enum { N = 300 };
    static tblock b[N + 3];
    for (int i = 0; i < N + 3; i++) make_block(&b[i], i);
    int order[N];
    for (int i = 0; i < N; i++) order[i] = (i * 37) % N;
    int fd = write_car(b, order, N);
    const size_t limits[] = {0, 5 * 48, 1};
    for (size_t li = 0; li < 3; li++) {
        lseek(fd, 0, SEEK_SET);
        blockstore *bs = blockstore_new_limited(limits[li], 4096);
        cid_t roots[1], missing;
        size_t nr;
        bool any;
        err_t e = {0};
        cr_assert_eq(blockstore_load_car(bs, fd, roots, 1, &nr, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(blockstore_put(bs, &b[N].cid, b[N].data, b[N].len, &e), ERR_OK, "%s", e.msg);
        /* all present (CAR blocks, repeated, and one put in memory) */
        for (int i = N - 1; i >= 0; i--) cr_assert_eq(blockstore_expect(bs, &b[i].cid, &e), ERR_OK, "%s", e.msg);
        for (int i = 0; i < N; i += 10) cr_assert_eq(blockstore_expect(bs, &b[i].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_expect(bs, &b[N].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_check_expected(bs, &missing, &any, &e), ERR_OK, "%s", e.msg);
        cr_assert(!any, "limit %zu: nothing missing", limits[li]);
        /* two absent ones among present ones: the first expected is named */
        for (int i = 0; i < N; i += 2) cr_assert_eq(blockstore_expect(bs, &b[i].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_expect(bs, &b[N + 2].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_expect(bs, &b[N + 1].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_expect(bs, &b[1].cid, &e), ERR_OK);
        cr_assert_eq(blockstore_check_expected(bs, &missing, &any, &e), ERR_OK, "%s", e.msg);
        cr_assert(any, "limit %zu: a missing block found", limits[li]);
        cr_assert(cid_eq(&missing, &b[N + 2].cid), "limit %zu: the first missing one in expect order", limits[li]);
        blockstore_free(bs);
    }
    close(fd);
}
