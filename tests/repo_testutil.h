/* repo_testutil.h — builds a small, real, signed atproto repo for tests (records as
 * DAG-CBOR, the MST from mst_builder, a signed v3 commit) and writes it as a CAR with the
 * blocks in a chosen order, optionally leaving one block out. Header-only test helper. */
#ifndef PDSMOVE_REPO_TESTUTIL_H
#define PDSMOVE_REPO_TESTUTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/blockstore.h"
#include "pdsmove/car.h"
#include "pdsmove/cbor.h"
#include "pdsmove/commit.h"
#include "pdsmove/keys.h"
#include "pdsmove/mst.h"

#define TR_DID "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
#define TR_REV "3l5rtmlqwxs2a"
#define TR_K256_HEX "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c"

static const char *const tr_collections[] = {"app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"};

typedef struct {
    char key[64];
    cid_t cid;
} tr_record;

typedef struct {
    blockstore *bs;        /* every block of the repo, in memory */
    key_priv key;
    char did_key[KEY_DID_MAX];
    cid_t commit, data;    /* commit CID, MST root */
    tr_record *recs;       /* sorted by key */
    size_t n;
    size_t per_collection[3];
} test_repo;

typedef enum { TR_FORWARD, TR_REVERSED, TR_DUPLICATED } tr_order;

static inline int tr_rec_cmp(const void *a, const void *b) {
    return strcmp(((const tr_record *)a)->key, ((const tr_record *)b)->key);
}

/* One record block: {"$type": coll, "text": "...", "createdAt": "..."}. */
static inline void tr_put_record(test_repo *r, size_t i, const char *coll, tr_record *out) {
    cbor_doc *doc = cbor_doc_new();
    cr_assert_not_null(doc);
    err_t e = {0};
    char text[64];
    snprintf(text, sizeof text, "record number %zu", i);
    cbor_item *m = cbor_new_map(doc, 3);
    cr_assert_eq(cbor_map_put(doc, m, "$type", cbor_new_textz(doc, coll), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "text", cbor_new_textz(doc, text), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "createdAt", cbor_new_textz(doc, "2024-05-01T12:00:00.000Z"), &e), ERR_OK);
    buf_t b;
    buf_init(&b, 0);
    cr_assert_eq(cbor_encode(m, &b, &e), ERR_OK, "%s", e.msg);
    cid_compute(&out->cid, CID_CODEC_DAG_CBOR, b.data, b.len);
    cr_assert_eq(blockstore_put(r->bs, &out->cid, b.data, b.len, &e), ERR_OK, "%s", e.msg);
    buf_free(&b);
    cbor_doc_free(doc);
}

static inline void test_repo_init(test_repo *r, size_t n) {
    memset(r, 0, sizeof *r);
    err_t e = {0};
    r->bs = blockstore_new();
    cr_assert_not_null(r->bs);
    cr_assert_eq(key_priv_from_hex(&r->key, KEY_K256, TR_K256_HEX, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(key_pub_to_did_key(&r->key.pub, r->did_key, sizeof r->did_key), 0);
    r->n = n;
    r->recs = calloc(n ? n : 1, sizeof *r->recs);
    for (size_t i = 0; i < n; i++) {
        const char *coll = tr_collections[i % 3];
        r->per_collection[i % 3]++;
        snprintf(r->recs[i].key, sizeof r->recs[i].key, "%s/3l%011zu", coll, i * 7919 % 1000003);
        tr_put_record(r, i, coll, &r->recs[i]);
    }
    if (n) qsort(r->recs, n, sizeof *r->recs, tr_rec_cmp);
    mst_builder *b = mst_builder_new(blockstore_put_cb, r->bs);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(mst_builder_add(b, r->recs[i].key, strlen(r->recs[i].key), &r->recs[i].cid, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(mst_builder_finish(b, &r->data, &e), ERR_OK, "%s", e.msg);
    mst_builder_free(b);
    buf_t cb;
    buf_init(&cb, 0);
    cr_assert_eq(commit_build_signed(TR_DID, &r->data, TR_REV, NULL, &r->key, &cb, &r->commit, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(blockstore_put(r->bs, &r->commit, cb.data, cb.len, &e), ERR_OK, "%s", e.msg);
    buf_free(&cb);
}

static inline void test_repo_free(test_repo *r) {
    blockstore_free(r->bs);
    free(r->recs);
    key_priv_wipe(&r->key);
}

typedef struct {
    cid_t *cids;
    size_t n, cap;
} tr_list;

static inline err_code tr_collect(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    (void)data; (void)len; (void)e;
    tr_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->cids = realloc(l->cids, l->cap * sizeof *l->cids);
        cr_assert_not_null(l->cids);
    }
    l->cids[l->n++] = *cid;
    return ERR_OK;
}

/* Writes the repo as a CAR at path. Blocks were stored records → MST nodes (children
 * first) → commit; TR_FORWARD writes that backwards (commit first, as a PDS does),
 * TR_REVERSED as stored (commit last), TR_DUPLICATED forward and then everything again.
 * skip (may be NULL) names a block to leave out. Returns the number of blocks written. */
static inline size_t test_repo_write(test_repo *r, const char *path, tr_order order, const cid_t *skip) {
    tr_list l = {0};
    err_t e = {0};
    cr_assert_eq(blockstore_each(r->bs, tr_collect, &l, &e), ERR_OK);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "creating %s", path);
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, &r->commit, &w, &e), ERR_OK, "%s", e.msg);
    size_t written = 0;
    for (int pass = 0; pass < (order == TR_DUPLICATED ? 2 : 1); pass++) {
        for (size_t k = 0; k < l.n; k++) {
            size_t i = order == TR_REVERSED ? k : l.n - 1 - k;
            if (skip && cid_eq(skip, &l.cids[i])) continue;
            const uint8_t *d;
            size_t len;
            cr_assert_eq(blockstore_get(r->bs, &l.cids[i], &d, &len, &e), ERR_OK);
            cr_assert_eq(car_writer_put(w, &l.cids[i], d, len, &e), ERR_OK, "%s", e.msg);
            written++;
        }
    }
    cr_assert_eq(car_writer_finish(w, &e), ERR_OK, "%s", e.msg);
    car_writer_free(w);
    cr_assert_eq(close(fd), 0);
    free(l.cids);
    return written;
}

#endif
