/* test_commit.c — repo commits: build + sign (k256 and P-256), decode, verify; wrong key,
 * altered fields and malformed commits refused with messages naming the problem; version 2
 * commits accepted. Suite "repo": a whole signed repo (records, MST, commit) through a CAR
 * file in any block order and back, and the checked-in fixture CAR rebuilt byte for byte. */
#include <criterion/criterion.h>
#include <string.h>

#include "pdsmove/cbor.h"
#include "pdsmove/commit.h"
#include "repo_testutil.h"

#define K256_HEX "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c"
#define P256_HEX "c1d2e3f4a5b6978812233445566778899aabbccddeeff00112233445566778f9"

static cid_t data_cid(const char *s) {
    cid_t c;
    cid_compute(&c, CID_CODEC_DAG_CBOR, (const uint8_t *)s, strlen(s));
    return c;
}

static void load_key(key_priv *k, key_type t) {
    err_t e = {0};
    cr_assert_eq(key_priv_from_hex(k, t, t == KEY_K256 ? K256_HEX : P256_HEX, &e), ERR_OK, "%s", e.msg);
}

static void build(buf_t *out, cid_t *cid, const key_priv *k, const cid_t *prev) {
    cid_t data = data_cid("mst root");
    err_t e = {0};
    buf_init(out, 0);
    cr_assert_eq(commit_build_signed("did:plc:abcdefghijklmnopqrstuvwx", &data, "3l5rtmlqwxs2a", prev, k, out, cid, &e), ERR_OK, "%s", e.msg);
}

Test(commit, builds_signs_decodes_and_verifies_with_both_curves) {
    key_type types[] = {KEY_K256, KEY_P256};
    for (size_t i = 0; i < 2; i++) {
        key_priv k;
        load_key(&k, types[i]);
        cid_t prev = data_cid("previous commit");
        for (int with_prev = 0; with_prev < 2; with_prev++) {
            buf_t b;
            cid_t cid;
            build(&b, &cid, &k, with_prev ? &prev : NULL);
            cr_assert(cid_matches(&cid, b.data, b.len), "%s: the CID is of the block", key_type_name(types[i]));
            cr_assert_eq(cid.codec, CID_CODEC_DAG_CBOR);
            commit_t c;
            err_t e = {0};
            cr_assert_eq(commit_decode(b.data, b.len, &c, &e), ERR_OK, "%s: %s", key_type_name(types[i]), e.msg);
            cr_assert_str_eq(c.did, "did:plc:abcdefghijklmnopqrstuvwx");
            cr_assert_str_eq(c.rev, "3l5rtmlqwxs2a");
            cr_assert_eq(c.version, 3);
            cid_t want_data = data_cid("mst root");
            cr_assert(cid_eq(&c.data, &want_data));
            cr_assert_eq(c.has_prev, with_prev == 1);
            if (with_prev) cr_assert(cid_eq(&c.prev, &prev));
            cr_assert_eq(c.sig_len, KEY_SIG_BYTES);
            cr_assert_eq(commit_verify(b.data, b.len, &k.pub, &e), ERR_OK, "%s prev=%d: %s", key_type_name(types[i]), with_prev, e.msg);
            buf_free(&b);
        }
        key_priv_wipe(&k);
    }
}

Test(commit, signature_covers_the_commit_without_sig) {
    key_priv k;
    load_key(&k, KEY_K256);
    buf_t b, u;
    cid_t cid;
    build(&b, &cid, &k, NULL);
    buf_init(&u, 0);
    err_t e = {0};
    cr_assert_eq(commit_unsigned_bytes(b.data, b.len, &u, &e), ERR_OK, "%s", e.msg);
    cbor_doc *doc = NULL;
    cr_assert_eq(cbor_decode(u.data, u.len, &doc, &e), ERR_OK, "unsigned bytes are canonical DAG-CBOR: %s", e.msg);
    const cbor_item *m = cbor_doc_root(doc);
    cr_assert_eq(m->v.map.len, 5, "did, version, data, rev, prev");
    cr_assert_null(cbor_map_get(m, "sig"));
    commit_t c;
    cr_assert_eq(commit_decode(b.data, b.len, &c, &e), ERR_OK);
    cr_assert_eq(key_verify(&k.pub, u.data, u.len, c.sig, c.sig_len, &e), ERR_OK, "the signature is over exactly these bytes: %s", e.msg);
    cbor_doc_free(doc);
    buf_free(&u);
    buf_free(&b);
    key_priv_wipe(&k);
}

Test(commit, wrong_key_is_a_mismatch_naming_the_key) {
    key_priv k, other;
    load_key(&k, KEY_K256);
    err_t e = {0};
    cr_assert_eq(key_priv_generate(&other, KEY_K256, &e), ERR_OK);
    buf_t b;
    cid_t cid;
    build(&b, &cid, &k, NULL);
    cr_assert_eq(commit_verify(b.data, b.len, &other.pub, &e), ERR_MISMATCH);
    char dk[KEY_DID_MAX];
    key_pub_to_did_key(&other.pub, dk, sizeof dk);
    cr_assert(strstr(e.msg, dk), "message names the key: %s", e.msg);
    cr_assert(strstr(e.msg, "does not verify"), "%s", e.msg);
    buf_free(&b);
    key_priv_wipe(&k);
    key_priv_wipe(&other);
}

/* Re-encodes the commit after replacing one field's value; the old signature stays. */
static void alter(const buf_t *b, const char *field, cbor_item *(*make)(cbor_doc *), buf_t *out) {
    cbor_doc *doc = NULL;
    err_t e = {0};
    cr_assert_eq(cbor_decode(b->data, b->len, &doc, &e), ERR_OK);
    cbor_item *m = cbor_doc_root(doc);
    bool found = false;
    for (size_t i = 0; i < m->v.map.len; i++)
        if (!strcmp(m->v.map.pairs[i].key, field)) { m->v.map.pairs[i].value = make(doc); found = true; }
    cr_assert(found, "field %s present", field);
    buf_init(out, 0);
    cr_assert_eq(cbor_encode(m, out, &e), ERR_OK, "%s", e.msg);
    cbor_doc_free(doc);
}

static cbor_item *new_rev(cbor_doc *d) { return cbor_new_textz(d, "3l5rtmlqwxs2b"); }
static cbor_item *new_did(cbor_doc *d) { return cbor_new_textz(d, "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"); }
static cbor_item *new_data(cbor_doc *d) { cid_t c = data_cid("other root"); return cbor_new_cid(d, &c); }
static cbor_item *flip_sig(cbor_doc *d) {
    uint8_t s[KEY_SIG_BYTES];
    memset(s, 0x11, sizeof s);
    return cbor_new_bytes(d, s, sizeof s);
}
static cbor_item *short_sig(cbor_doc *d) { return cbor_new_bytes(d, (const uint8_t *)"abc", 3); }

Test(commit, altered_fields_break_the_signature) {
    key_priv k;
    load_key(&k, KEY_P256);
    buf_t b;
    cid_t cid;
    build(&b, &cid, &k, NULL);
    struct { const char *field; cbor_item *(*make)(cbor_doc *); err_code want; } cases[] = {
        {"rev", new_rev, ERR_MISMATCH},
        {"did", new_did, ERR_MISMATCH},
        {"data", new_data, ERR_MISMATCH},
        {"sig", flip_sig, ERR_MISMATCH},
        {"sig", short_sig, ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t a;
        alter(&b, cases[i].field, cases[i].make, &a);
        err_t e = {0};
        err_code rc = commit_verify(a.data, a.len, &k.pub, &e);
        cr_assert_eq(rc, cases[i].want, "case %zu (%s): got %s: %s", i, cases[i].field, err_code_name(rc), e.msg);
        buf_free(&a);
    }
    buf_free(&b);
    key_priv_wipe(&k);
}

/* A commit map from text pairs, for the malformed cases. */
static void encode_map(buf_t *out, const char *omit, const char *bad_field, int64_t version) {
    cbor_doc *doc = cbor_doc_new();
    err_t e = {0};
    cbor_item *m = cbor_new_map(doc, 8);
    cid_t d = data_cid("mst root");
    uint8_t sig[KEY_SIG_BYTES] = {1};
    struct { const char *k; cbor_item *v; } f[] = {
        {"did", cbor_new_textz(doc, "did:plc:abcdefghijklmnopqrstuvwx")},
        {"version", cbor_new_int(doc, version)},
        {"data", cbor_new_cid(doc, &d)},
        {"rev", cbor_new_textz(doc, "3l5rtmlqwxs2a")},
        {"prev", cbor_new_null(doc)},
        {"sig", cbor_new_bytes(doc, sig, sizeof sig)},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (omit && !strcmp(omit, f[i].k)) continue;
        cbor_item *v = bad_field && !strcmp(bad_field, f[i].k) ? cbor_new_int(doc, 7) : f[i].v;
        if (bad_field && !strcmp(bad_field, "did") && !strcmp(f[i].k, "did")) v = cbor_new_textz(doc, "plc:nodid");
        cr_assert_eq(cbor_map_put(doc, m, f[i].k, v, &e), ERR_OK);
    }
    buf_init(out, 0);
    cr_assert_eq(cbor_encode(m, out, &e), ERR_OK);
    cbor_doc_free(doc);
}

Test(commit, malformed_commits_name_the_field) {
    struct { const char *omit, *bad; int64_t version; const char *frag; } cases[] = {
        {"did", NULL, 3, "\"did\""},
        {"data", NULL, 3, "\"data\""},
        {"sig", NULL, 3, "\"sig\""},
        {"rev", NULL, 3, "\"rev\""},
        {"prev", NULL, 3, "\"prev\""},
        {"version", NULL, 3, "\"version\""},
        {NULL, NULL, 4, "version 4"},
        {NULL, "data", 3, "\"data\" is not a CID"},
        {NULL, "rev", 3, "\"rev\" is not text"},
        {NULL, "sig", 3, "\"sig\" is not bytes"},
        {NULL, "prev", 3, "\"prev\""},
        {NULL, "did", 3, "not a DID"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b;
        encode_map(&b, cases[i].omit, cases[i].bad, cases[i].version);
        commit_t c;
        err_t e = {0};
        err_code rc = commit_decode(b.data, b.len, &c, &e);
        cr_assert_eq(rc, ERR_INVALID, "case %zu: got %s: %s", i, err_code_name(rc), e.msg);
        cr_assert(strstr(e.msg, cases[i].frag), "case %zu: message has %s: %s", i, cases[i].frag, e.msg);
        buf_free(&b);
    }
    const uint8_t not_map[] = {0x83, 1, 2, 3}, junk[] = {0xa1, 0x61};
    commit_t c;
    err_t e = {0};
    cr_assert_eq(commit_decode(not_map, sizeof not_map, &c, &e), ERR_INVALID);
    cr_assert_eq(commit_decode(junk, sizeof junk, &c, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "DAG-CBOR"), "%s", e.msg);
}

Test(commit, version_2_without_rev_is_accepted_and_verifies) {
    key_priv k;
    load_key(&k, KEY_K256);
    cbor_doc *doc = cbor_doc_new();
    err_t e = {0};
    cbor_item *m = cbor_new_map(doc, 8);
    cid_t d = data_cid("old root");
    cr_assert_eq(cbor_map_put(doc, m, "did", cbor_new_textz(doc, "did:plc:abcdefghijklmnopqrstuvwx"), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "version", cbor_new_int(doc, 2), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "data", cbor_new_cid(doc, &d), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "prev", cbor_new_null(doc), &e), ERR_OK);
    buf_t u, b;
    buf_init(&u, 0);
    buf_init(&b, 0);
    cr_assert_eq(cbor_encode(m, &u, &e), ERR_OK);
    uint8_t sig[KEY_SIG_BYTES];
    cr_assert_eq(key_sign(&k, u.data, u.len, sig, &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "sig", cbor_new_bytes(doc, sig, sizeof sig), &e), ERR_OK);
    cr_assert_eq(cbor_encode(m, &b, &e), ERR_OK);
    commit_t c;
    cr_assert_eq(commit_decode(b.data, b.len, &c, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(c.version, 2);
    cr_assert_str_eq(c.rev, "");
    cr_assert_eq(commit_verify(b.data, b.len, &k.pub, &e), ERR_OK, "%s", e.msg);
    buf_free(&u);
    buf_free(&b);
    cbor_doc_free(doc);
    key_priv_wipe(&k);
}

/* ---- a whole repo: records + MST + signed commit, through a CAR file and back ---- */

typedef struct {
    const test_repo *r;
    size_t seen;
} repo_check_t;

static err_code repo_visit(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    (void)key_len; (void)e;
    repo_check_t *c = ctx;
    cr_assert_lt(c->seen, c->r->n);
    cr_assert_str_eq(key, c->r->recs[c->seen].key, "record %zu", c->seen);
    cr_assert(cid_eq(value, &c->r->recs[c->seen].cid), "record %zu (%s) CID", c->seen, key);
    c->seen++;
    return ERR_OK;
}

/* Loads path, verifies the commit and walks the tree; returns the walk's status. */
static err_code load_and_walk(const test_repo *r, const char *path, err_t *e) {
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    blockstore *bs = blockstore_new();
    cid_t roots[2];
    size_t nr;
    err_code rc = blockstore_load_car(bs, fd, roots, 2, &nr, e);
    cr_assert_eq(rc, ERR_OK, "%s: %s", path, e->msg);
    cr_assert_eq(nr, 1);
    cr_assert(cid_eq(&roots[0], &r->commit));
    const uint8_t *d;
    size_t len;
    cr_assert_eq(blockstore_get(bs, &roots[0], &d, &len, e), ERR_OK);
    commit_t c;
    cr_assert_eq(commit_decode(d, len, &c, e), ERR_OK, "%s", e->msg);
    cr_assert_eq(commit_verify(d, len, &r->key.pub, e), ERR_OK, "%s", e->msg);
    cr_assert_str_eq(c.did, TR_DID);
    cr_assert(cid_eq(&c.data, &r->data));
    repo_check_t chk = {r, 0};
    rc = mst_walk(&c.data, blockstore_get_cb, bs, repo_visit, &chk, NULL, e);
    if (!rc) cr_assert_eq(chk.seen, r->n, "%s: every record", path);
    blockstore_free(bs);
    close(fd);
    return rc;
}

Test(repo, signed_repo_survives_a_car_in_any_block_order) {
    test_repo r;
    test_repo_init(&r, 300);
    char path[] = "/tmp/pdsmove-test-repo-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    const tr_order orders[] = {TR_FORWARD, TR_REVERSED, TR_DUPLICATED};
    for (size_t i = 0; i < 3; i++) {
        test_repo_write(&r, path, orders[i], NULL);
        err_t e = {0};
        cr_assert_eq(load_and_walk(&r, path, &e), ERR_OK, "order %zu: %s", i, e.msg);
    }
    /* leave out an MST node below the root: the walk names it */
    int rfd = open(path, O_RDONLY);
    blockstore *bs = blockstore_new();
    cid_t roots[1];
    size_t nr;
    err_t e = {0};
    cr_assert_eq(blockstore_load_car(bs, rfd, roots, 1, &nr, &e), ERR_OK);
    const uint8_t *d;
    size_t len;
    cr_assert_eq(blockstore_get(bs, &r.data, &d, &len, &e), ERR_OK);
    cbor_doc *doc = NULL;
    cr_assert_eq(cbor_decode(d, len, &doc, &e), ERR_OK);
    const cid_t *child = cbor_map_get_cid(cbor_doc_root(doc), "l");
    cr_assert_not_null(child, "a 300-record root has a left subtree");
    cid_t missing = *child;
    cbor_doc_free(doc);
    blockstore_free(bs);
    close(rfd);
    test_repo_write(&r, path, TR_FORWARD, &missing);
    cr_assert_eq(load_and_walk(&r, path, &e), ERR_NOT_FOUND);
    char ms[CID_STR_MAX];
    cid_format(&missing, ms, sizeof ms);
    cr_assert(strstr(e.msg, ms), "names the missing node %s: %s", ms, e.msg);
    unlink(path);
    test_repo_free(&r);
}

/* The checked-in fixture was written by this same code: rebuilding it must give the same
 * bytes (builder, encoders, signature and CAR writer are all deterministic). */
Test(repo, rebuilding_the_fixture_repo_gives_identical_bytes) {
    test_repo r;
    test_repo_init(&r, 30);
    char cs[CID_STR_MAX];
    cid_format(&r.commit, cs, sizeof cs);
    cr_assert_str_eq(cs, "bafyreig4x6js4uxjx5sht62n2rsx4gvxgi7fw7b3vimm2zczrf6726ehfm");
    cid_format(&r.data, cs, sizeof cs);
    cr_assert_str_eq(cs, "bafyreiehs5ixbpgfhuzd3abcka6aes2wkvbxzqrhokmgk2ichwlkb74t5y");
    char path[] = "/tmp/pdsmove-test-repo30-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    test_repo_write(&r, path, TR_FORWARD, NULL);
    FILE *a = fopen(path, "rb"), *b = fopen(PDSMOVE_FIXTURES "/car/repo-30.car", "rb");
    cr_assert(a && b, "open both files");
    size_t off = 0;
    for (;;) {
        int ca = fgetc(a), cb = fgetc(b);
        cr_assert_eq(ca, cb, "byte %zu differs from tests/fixtures/car/repo-30.car", off);
        if (ca == EOF) break;
        off++;
    }
    cr_assert_eq(off, 7242);
    fclose(a);
    fclose(b);
    unlink(path);
    test_repo_free(&r);
}
