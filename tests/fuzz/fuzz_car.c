/* fuzz_car.c — libFuzzer harness for the CAR reader (src/encoding/car.c), the whole-repo check
 * (repo.c: blockstore, block hash checks, commit, MST walk, blob refs) and the MST walk alone.
 * The input is a CAR file, put in a memfd. Mutated blocks fail their hash check, so the MST walk
 * is also run over a block table read leniently from the same bytes (a block is found by the
 * CID written in front of it, whether or not it hashes to it): that lets mutations reach the
 * node checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pdsmove/car.h"
#include "pdsmove/codec.h"
#include "pdsmove/commit.h"
#include "pdsmove/mst.h"
#include "pdsmove/repo.h"

#define MAX_BLOCKS 4096

typedef struct {
    cid_t cid;
    const uint8_t *data;
    size_t len;
} block;

typedef struct {
    block *b;
    size_t n;
} table;

static int memfd_with(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-car", MFD_CLOEXEC);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static err_code on_ref(void *ctx, const cid_t *cid, int64_t size_bytes, err_t *e) {
    (void)ctx; (void)cid; (void)size_bytes; (void)e;
    return ERR_OK;
}

static err_code on_record(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data,
                          size_t len, err_t *e) {
    (void)ctx; (void)key; (void)key_len; (void)cid;
    err_t ignore;
    (void)repo_record_blob_refs(data, len, on_ref, NULL, &ignore);
    (void)e;
    return ERR_OK;
}

/* Sections after the header, without hash checks: varint(len) ‖ CID ‖ data. */
static void read_table(const uint8_t *p, size_t size, table *t) {
    uint64_t hlen;
    size_t used;
    err_t e;
    if (varint_decode(p, size, &hlen, &used, &e) || hlen > size - used) return;
    size_t off = used + (size_t)hlen;
    while (off < size && t->n < MAX_BLOCKS) {
        uint64_t len;
        if (varint_decode(p + off, size - off, &len, &used, &e) || len == 0 || len > size - off - used) return;
        off += used;
        block *b = &t->b[t->n];
        size_t cid_len;
        if (cid_from_bytes(&b->cid, p + off, (size_t)len, &cid_len, &e)) return;
        b->data = p + off + cid_len;
        b->len = (size_t)len - cid_len;
        t->n++;
        off += (size_t)len;
    }
}

static err_code lenient_get(void *ctx, const cid_t *cid, const uint8_t **data, size_t *len, err_t *e) {
    table *t = ctx;
    for (size_t i = 0; i < t->n; i++) {
        if (cid_eq(&t->b[i].cid, cid)) {
            *data = t->b[i].data;
            *len = t->b[i].len;
            return ERR_OK;
        }
    }
    return err_set(e, ERR_NOT_FOUND, "no such block");
}

static err_code on_key(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    (void)ctx; (void)value; (void)e;
    if (strlen(key) != key_len) abort(); /* keys come NUL-terminated at their length */
    return ERR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static block blocks[MAX_BLOCKS];
    err_t e = {0};
    int fd = memfd_with(data, size);

    /* 1. the streaming reader on its own */
    car_reader *r = NULL;
    cid_t roots[CAR_MAX_ROOTS];
    size_t n_roots = 0;
    if (car_reader_open(fd, &r, &e) == ERR_OK) {
        const cid_t *rs = car_reader_roots(r, &n_roots);
        if (n_roots > CAR_MAX_ROOTS) abort();
        memcpy(roots, rs, n_roots * sizeof *rs);
        for (;;) {
            cid_t cid;
            const uint8_t *bd;
            size_t bl;
            if (car_reader_next(r, &cid, &bd, &bl, &e) != ERR_OK || !bd) break;
            if (!cid_matches(&cid, bd, bl)) abort(); /* the reader promised a hash check */
        }
    }
    car_reader_free(r);

    /* 2. the whole-repository check and the diff check (no signature key) */
    repo_summary sum;
    (void)repo_verify_car(fd, NULL, 0, on_record, NULL, &sum, &e);
    (void)repo_verify_diff_car(fd, NULL, 0, &sum, &e);
    close(fd);

    /* 3. the MST walk over blocks that need not hash to their CIDs */
    if (n_roots > 0) {
        table t = {blocks, 0};
        read_table(data, size, &t);
        const uint8_t *cd;
        size_t cl;
        commit_t c;
        cid_t root = roots[0];
        if (lenient_get(&t, &roots[0], &cd, &cl, &e) == ERR_OK && commit_decode(cd, cl, &c, &e) == ERR_OK) root = c.data;
        mst_walk_stats st;
        (void)mst_walk(&root, lenient_get, &t, on_key, NULL, &st, &e);
    }
    return 0;
}
