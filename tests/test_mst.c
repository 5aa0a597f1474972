/* test_mst.c — Merkle Search Tree: key heights and prefixes (interop fixtures), the builder
 * reproducing the interop commit-proof root CIDs, builder → walk round trips, and the walk
 * rejecting each kind of broken tree with a message that names the node. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/blockstore.h"
#include "pdsmove/cbor.h"
#include "pdsmove/mst.h"

#define MST_FIX PDSMOVE_FIXTURES "/interop/mst"
#define PROOF_FIX PDSMOVE_FIXTURES "/interop/firehose/commit-proof-fixtures.json"

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    cr_assert_not_null(j, "loading %s: %s", path, je.text);
    cr_assert(json_is_array(j) && json_array_size(j) > 0, "%s is a non-empty array", path);
    return j;
}

Test(mst, key_heights_match_interop_fixture) {
    json_t *j = load_json(MST_FIX "/key_heights.json");
    size_t i;
    json_t *c;
    json_array_foreach(j, i, c) {
        const char *key = json_string_value(json_object_get(c, "key"));
        cr_assert_not_null(key, "case %zu has a key", i);
        int want = (int)json_integer_value(json_object_get(c, "height"));
        int got = mst_key_height((const uint8_t *)key, strlen(key));
        cr_assert_eq(got, want, "case %zu \"%s\": height %d, want %d", i, key, got, want);
    }
    json_decref(j);
}

Test(mst, common_prefix_lengths_match_interop_fixture) {
    json_t *j = load_json(MST_FIX "/common_prefix.json");
    size_t i;
    json_t *c;
    json_array_foreach(j, i, c) {
        json_t *l = json_object_get(c, "left"), *r = json_object_get(c, "right");
        cr_assert(json_is_string(l) && json_is_string(r), "case %zu has left and right", i);
        size_t want = (size_t)json_integer_value(json_object_get(c, "len"));
        size_t got = mst_common_prefix_len((const uint8_t *)json_string_value(l), json_string_length(l),
                                           (const uint8_t *)json_string_value(r), json_string_length(r));
        cr_assert_eq(got, want, "case %zu (\"%s\", \"%s\"): %zu, want %zu", i, json_string_value(l), json_string_value(r), got, want);
    }
    json_decref(j);
}

/* example_keys.txt names each key "<letter><height>/<digits>". */
Test(mst, example_keys_are_valid_and_have_the_height_in_their_name) {
    FILE *f = fopen(MST_FIX "/example_keys.txt", "r");
    cr_assert_not_null(f);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        if (!len) continue;
        n++;
        cr_assert(mst_key_valid(line, len), "\"%s\" is a valid MST key", line);
        int want = line[1] - '0';
        cr_assert_eq(mst_key_height((const uint8_t *)line, len), want, "height of \"%s\"", line);
    }
    fclose(f);
    cr_assert_eq(n, 156, "read every example key");
}

Test(mst, key_validity_rules) {
    const char *good[] = {"app.bsky.feed.post/3jui7kd54zh2y", "a/b", "com.example.x/self", "c/a:b~c_d-e.f"};
    const char *bad[] = {"", "nocollection", "/rkey", "coll/", "a/b/c", "a b/c", "a/b\xc3\xa9", "a/b?"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) cr_assert(mst_key_valid(good[i], strlen(good[i])), "valid: \"%s\"", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) cr_assert(!mst_key_valid(bad[i], strlen(bad[i])), "invalid: \"%s\"", bad[i]);
    char longkey[MST_MAX_KEY_BYTES + 2];
    memset(longkey, 'a', sizeof longkey);
    longkey[1] = '/';
    cr_assert(mst_key_valid(longkey, MST_MAX_KEY_BYTES), "exactly the limit");
    cr_assert(!mst_key_valid(longkey, MST_MAX_KEY_BYTES + 1), "over the limit");
}

/* ---- builder helpers ---- */

typedef struct {
    char key[MST_MAX_KEY_BYTES + 1];
    cid_t value;
} kv_t;

static int kv_cmp(const void *a, const void *b) { return strcmp(((const kv_t *)a)->key, ((const kv_t *)b)->key); }

typedef struct {
    blockstore *bs;
    cid_t nodes[4096];
    size_t n_nodes;
} collect_t;

static err_code collect_put(void *ctx, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    collect_t *c = ctx;
    if (c->n_nodes < sizeof c->nodes / sizeof c->nodes[0]) c->nodes[c->n_nodes++] = *cid;
    return blockstore_put(c->bs, cid, data, len, e);
}

static cid_t build(collect_t *c, kv_t *kv, size_t n) {
    if (n) qsort(kv, n, sizeof *kv, kv_cmp);
    mst_builder *b = mst_builder_new(collect_put, c);
    cr_assert_not_null(b);
    err_t e = {0};
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(mst_builder_add(b, kv[i].key, strlen(kv[i].key), &kv[i].value, &e), ERR_OK, "add %s: %s", kv[i].key, e.msg);
    cid_t root;
    cr_assert_eq(mst_builder_finish(b, &root, &e), ERR_OK, "finish: %s", e.msg);
    mst_builder_free(b);
    return root;
}

typedef struct {
    const kv_t *want;
    size_t n, seen;
} check_t;

static err_code check_visit(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    check_t *c = ctx;
    (void)e;
    cr_assert_lt(c->seen, c->n, "more records than added (at \"%s\")", key);
    cr_assert_eq(strlen(key), key_len);
    cr_assert_str_eq(key, c->want[c->seen].key, "record %zu in order", c->seen);
    cr_assert(cid_eq(value, &c->want[c->seen].value), "record %zu (%s) value", c->seen, key);
    c->seen++;
    return ERR_OK;
}

static void walk_expect(blockstore *bs, const cid_t *root, const kv_t *kv, size_t n, const char *what) {
    check_t c = {kv, n, 0};
    err_t e = {0};
    mst_walk_stats st;
    cr_assert_eq(mst_walk(root, blockstore_get_cb, bs, check_visit, &c, &st, &e), ERR_OK, "%s: walk: %s", what, e.msg);
    cr_assert_eq(c.seen, n, "%s: every record listed", what);
    cr_assert_eq(st.records, n, "%s: stats count", what);
}

static void add_unique(kv_t *kv, size_t *n, const char *key, const cid_t *v) {
    for (size_t i = 0; i < *n; i++) if (!strcmp(kv[i].key, key)) return;
    snprintf(kv[*n].key, sizeof kv[*n].key, "%s", key);
    kv[*n].value = *v;
    (*n)++;
}

static void remove_key(kv_t *kv, size_t *n, const char *key) {
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(kv[i].key, key)) continue;
        kv[i] = kv[--*n];
        return;
    }
}

static bool has_cid(const collect_t *c, const cid_t *cid) {
    for (size_t i = 0; i < c->n_nodes; i++) if (cid_eq(&c->nodes[i], cid)) return true;
    return false;
}

/* The commit-proof fixture gives key sets (all mapped to leafValue) with the reference
 * implementation's MST root before and after a commit, and the CIDs of the nodes in the
 * commit's proof. Building both trees must give exactly those roots, the after-tree must
 * contain every proof node, and walking each tree must list exactly its keys. */
Test(mst, builder_reproduces_interop_commit_proof_roots) {
    json_t *j = load_json(PROOF_FIX);
    size_t i;
    json_t *c;
    json_array_foreach(j, i, c) {
        const char *comment = json_string_value(json_object_get(c, "comment"));
        cid_t leaf, want_before, want_after;
        err_t e = {0};
        cr_assert_eq(cid_parse(&leaf, json_string_value(json_object_get(c, "leafValue")), &e), ERR_OK, "%s", comment);
        cr_assert_eq(cid_parse(&want_before, json_string_value(json_object_get(c, "rootBeforeCommit")), &e), ERR_OK);
        cr_assert_eq(cid_parse(&want_after, json_string_value(json_object_get(c, "rootAfterCommit")), &e), ERR_OK);
        static kv_t kv[64];
        size_t n = 0, k;
        json_t *s;
        json_array_foreach(json_object_get(c, "keys"), k, s) add_unique(kv, &n, json_string_value(s), &leaf);
        cr_assert_gt(n, 0, "case %zu (%s) has keys", i, comment);

        collect_t *before = calloc(1, sizeof *before);
        before->bs = blockstore_new();
        cid_t root = build(before, kv, n);
        char got_s[CID_STR_MAX], want_s[CID_STR_MAX];
        cid_format(&root, got_s, sizeof got_s);
        cid_format(&want_before, want_s, sizeof want_s);
        cr_assert(cid_eq(&root, &want_before), "case %zu (%s): root before: %s, want %s", i, comment, got_s, want_s);
        walk_expect(before->bs, &root, kv, n, comment);

        json_array_foreach(json_object_get(c, "adds"), k, s) add_unique(kv, &n, json_string_value(s), &leaf);
        json_array_foreach(json_object_get(c, "dels"), k, s) remove_key(kv, &n, json_string_value(s));
        collect_t *after = calloc(1, sizeof *after);
        after->bs = blockstore_new();
        root = build(after, kv, n);
        cid_format(&root, got_s, sizeof got_s);
        cid_format(&want_after, want_s, sizeof want_s);
        cr_assert(cid_eq(&root, &want_after), "case %zu (%s): root after: %s, want %s", i, comment, got_s, want_s);
        walk_expect(after->bs, &root, kv, n, comment);

        json_array_foreach(json_object_get(c, "blocksInProof"), k, s) {
            cid_t pc;
            cr_assert_eq(cid_parse(&pc, json_string_value(s), &e), ERR_OK);
            cr_assert(has_cid(after, &pc), "case %zu (%s): proof block %s is a node of the after-tree", i, comment, json_string_value(s));
        }
        blockstore_free(before->bs);
        blockstore_free(after->bs);
        free(before);
        free(after);
    }
    json_decref(j);
}

Test(mst, empty_tree_is_the_canonical_empty_node) {
    collect_t *c = calloc(1, sizeof *c);
    c->bs = blockstore_new();
    cid_t root = build(c, NULL, 0);
    char s[CID_STR_MAX];
    cid_format(&root, s, sizeof s);
    /* {"e": [], "l": null} */
    cr_assert_str_eq(s, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm");
    mst_walk_stats st;
    err_t e = {0};
    cr_assert_eq(mst_walk(&root, blockstore_get_cb, c->bs, NULL, NULL, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.records, 0);
    cr_assert_eq(st.root_layer, -1);
    blockstore_free(c->bs);
    free(c);
}

Test(mst, builder_and_walk_round_trip_many_keys, .timeout = 120) {
    enum { N = 3000 };
    static kv_t kv[N];
    const char *colls[] = {"app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.graph.follow", "app.bsky.feed.post.x"};
    for (int i = 0; i < N; i++) {
        snprintf(kv[i].key, sizeof kv[i].key, "%s/3k%011d", colls[i % 4], i * 7919 % 1000003);
        char rec[32];
        int n = snprintf(rec, sizeof rec, "record %d", i);
        cid_compute(&kv[i].value, CID_CODEC_DAG_CBOR, (const uint8_t *)rec, (size_t)n);
    }
    collect_t *c = calloc(1, sizeof *c);
    c->bs = blockstore_new();
    cid_t root = build(c, kv, N);
    walk_expect(c->bs, &root, kv, N, "3000 keys");
    mst_walk_stats st;
    err_t e = {0};
    cr_assert_eq(mst_walk(&root, blockstore_get_cb, c->bs, NULL, NULL, &st, &e), ERR_OK);
    int max_h = 0;
    for (int i = 0; i < N; i++) {
        int h = mst_key_height((const uint8_t *)kv[i].key, strlen(kv[i].key));
        if (h > max_h) max_h = h;
    }
    cr_assert_eq(st.root_layer, max_h, "root layer is the highest key height");
    cr_assert_eq(st.nodes, blockstore_get_stats(c->bs).blocks, "the walk visits every node built, once");
    blockstore_free(c->bs);
    free(c);
}

Test(mst, builder_refuses_unsorted_and_invalid_keys) {
    blockstore *bs = blockstore_new();
    mst_builder *b = mst_builder_new(blockstore_put_cb, bs);
    cid_t v;
    cid_compute(&v, CID_CODEC_DAG_CBOR, (const uint8_t *)"x", 1);
    err_t e = {0};
    cr_assert_eq(mst_builder_add(b, "b/1", 3, &v, &e), ERR_OK);
    cr_assert_eq(mst_builder_add(b, "a/1", 3, &v, &e), ERR_USAGE, "smaller key");
    cr_assert_eq(mst_builder_add(b, "b/1", 3, &v, &e), ERR_USAGE, "same key");
    cr_assert_eq(mst_builder_add(b, "c 1", 3, &v, &e), ERR_INVALID, "invalid key");
    mst_builder_free(b);
    blockstore_free(bs);
}

/* ---- hand-made broken trees ---- */

typedef struct {
    int64_t p;
    const char *k;      /* key suffix */
    const cid_t *t;     /* right subtree or NULL */
} hent_t;

static cid_t value_cid(void) {
    cid_t v;
    cid_compute(&v, CID_CODEC_DAG_CBOR, (const uint8_t *)"a record", 8);
    return v;
}

/* Encodes a node (optionally with an extra field) into bs and returns its CID. */
static cid_t put_node(blockstore *bs, const cid_t *l, const hent_t *ents, size_t n, const char *extra_field) {
    cbor_doc *doc = cbor_doc_new();
    err_t e = {0};
    cbor_item *m = cbor_new_map(doc, 3);
    cbor_item *arr = cbor_new_array(doc, n);
    cid_t v = value_cid();
    for (size_t i = 0; i < n; i++) {
        cbor_item *en = cbor_new_map(doc, 4);
        cr_assert_eq(cbor_map_put(doc, en, "p", cbor_new_int(doc, ents[i].p), &e), ERR_OK);
        cr_assert_eq(cbor_map_put(doc, en, "k", cbor_new_bytes(doc, (const uint8_t *)ents[i].k, strlen(ents[i].k)), &e), ERR_OK);
        cr_assert_eq(cbor_map_put(doc, en, "v", cbor_new_cid(doc, &v), &e), ERR_OK);
        cr_assert_eq(cbor_map_put(doc, en, "t", ents[i].t ? cbor_new_cid(doc, ents[i].t) : cbor_new_null(doc), &e), ERR_OK);
        arr->v.array.items[i] = en;
    }
    cr_assert_eq(cbor_map_put(doc, m, "e", arr, &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "l", l ? cbor_new_cid(doc, l) : cbor_new_null(doc), &e), ERR_OK);
    if (extra_field) cr_assert_eq(cbor_map_put(doc, m, extra_field, cbor_new_int(doc, 1), &e), ERR_OK);
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(cbor_encode(m, &out, &e), ERR_OK, "%s", e.msg);
    cid_t cid;
    cid_compute(&cid, CID_CODEC_DAG_CBOR, out.data, out.len);
    cr_assert_eq(blockstore_put(bs, &cid, out.data, out.len, &e), ERR_OK);
    buf_free(&out);
    cbor_doc_free(doc);
    return cid;
}

/* Walks root; expects rc and a message containing each of the given fragments. */
static void expect_walk_error(blockstore *bs, const cid_t *root, err_code want, const char *case_name,
                              const char *frag1, const cid_t *named) {
    err_t e = {0};
    err_code rc = mst_walk(root, blockstore_get_cb, bs, NULL, NULL, NULL, &e);
    cr_assert_eq(rc, want, "%s: got %s: %s", case_name, err_code_name(rc), e.msg);
    cr_assert(strstr(e.msg, frag1), "%s: message has \"%s\": %s", case_name, frag1, e.msg);
    if (named) {
        char cs[CID_STR_MAX];
        cid_format(named, cs, sizeof cs);
        cr_assert(strstr(e.msg, cs), "%s: message names node %s: %s", case_name, cs, e.msg);
    }
}

/* Keys from example_keys.txt with known heights. */
#define K0a "A0/374913"
#define K0b "B0/601692"
#define K0c "C0/451630"
#define K1 "B1/986427"
#define K2 "D2/269196"

Test(mst, hand_built_valid_trees_walk) {
    blockstore *bs = blockstore_new();
    /* layer-2 root whose left subtree skips layer 1 through an l-only node */
    hent_t leaf[] = {{0, K0a, NULL}};
    cid_t n0 = put_node(bs, NULL, leaf, 1, NULL);
    cid_t n1 = put_node(bs, &n0, NULL, 0, NULL);
    hent_t top[] = {{0, K2, NULL}};
    cid_t root = put_node(bs, &n1, top, 1, NULL);
    mst_walk_stats st;
    err_t e = {0};
    cr_assert_eq(mst_walk(&root, blockstore_get_cb, bs, NULL, NULL, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.records, 2);
    cr_assert_eq(st.nodes, 3);
    cr_assert_eq(st.root_layer, 2);
    /* the builder makes exactly this tree */
    kv_t kv[2] = {{K0a, value_cid()}, {K2, value_cid()}};
    collect_t *c = calloc(1, sizeof *c);
    c->bs = blockstore_new();
    cid_t built = build(c, kv, 2);
    cr_assert(cid_eq(&built, &root), "builder output equals the hand-built tree");
    blockstore_free(c->bs);
    free(c);
    blockstore_free(bs);
}

Test(mst, walk_rejects_broken_trees_naming_the_node) {
    blockstore *bs = blockstore_new();
    cid_t absent;
    cid_compute(&absent, CID_CODEC_DAG_CBOR, (const uint8_t *)"nothing", 7);

    hent_t out_of_order[] = {{0, K0c, NULL}, {0, K0a, NULL}};
    cid_t r = put_node(bs, NULL, out_of_order, 2, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "keys out of order", "out of order", &r);

    hent_t dup[] = {{0, K0a, NULL}, {9, "", NULL}};
    r = put_node(bs, NULL, dup, 2, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "repeated key", "out of order", &r);

    hent_t wrong_height[] = {{0, K0a, NULL}, {0, K1, NULL}};
    r = put_node(bs, NULL, wrong_height, 2, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "entry of another height in a node", "has height 1", &r);

    hent_t long_prefix[] = {{0, K0a, NULL}, {10, "x", NULL}};
    r = put_node(bs, NULL, long_prefix, 2, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "prefix longer than the previous key", "prefix length 10", &r);

    hent_t first_prefix[] = {{2, K0a, NULL}};
    r = put_node(bs, NULL, first_prefix, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "first entry with a prefix", "prefix length 2", &r);

    hent_t bad_key[] = {{0, "no-slash-key", NULL}};
    r = put_node(bs, NULL, bad_key, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "invalid key", "invalid key", &r);

    hent_t top_missing[] = {{0, K1, NULL}};
    r = put_node(bs, &absent, top_missing, 1, NULL);
    expect_walk_error(bs, &r, ERR_NOT_FOUND, "missing child node", "is missing", &absent);

    cid_t empty = put_node(bs, NULL, NULL, 0, NULL);
    r = put_node(bs, &empty, top_missing, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "empty non-root node", "is empty", &empty);

    hent_t l2[] = {{0, K2, NULL}};
    cid_t n2 = put_node(bs, NULL, l2, 1, NULL);
    r = put_node(bs, &n2, top_missing, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "subtree on a higher layer", "expects layer 0", &n2);

    hent_t l0[] = {{0, K0b, NULL}};
    cid_t n0 = put_node(bs, NULL, l0, 1, NULL);
    hent_t leaf_with_subtree[] = {{0, K0a, &n0}};
    r = put_node(bs, NULL, leaf_with_subtree, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "layer-0 node with a subtree", "layer 0 but has a subtree", &r);

    hent_t l0low[] = {{0, K0a, NULL}};
    cid_t left = put_node(bs, NULL, l0low, 1, NULL);
    hent_t sub_out_of_range[] = {{0, K0c, NULL}};
    cid_t right = put_node(bs, NULL, sub_out_of_range, 1, NULL);
    hent_t mid[] = {{0, K1, &left}};  /* K0a after B1: the subtree is on the wrong side */
    r = put_node(bs, NULL, mid, 1, NULL);
    expect_walk_error(bs, &r, ERR_INVALID, "subtree keys on the wrong side", "out of order", &left);
    (void)right;

    cid_t only_l = put_node(bs, &n0, NULL, 0, NULL);
    expect_walk_error(bs, &only_l, ERR_INVALID, "root that is only a subtree pointer", "not a canonical tree", &only_l);

    r = put_node(bs, NULL, l0, 1, "x");
    expect_walk_error(bs, &r, ERR_INVALID, "unknown node field", "unexpected field", &r);

    /* not CBOR at all */
    err_t e = {0};
    const uint8_t junk[] = {0xff, 0x00};
    cid_t jc;
    cid_compute(&jc, CID_CODEC_DAG_CBOR, junk, sizeof junk);
    cr_assert_eq(blockstore_put(bs, &jc, junk, sizeof junk, &e), ERR_OK);
    expect_walk_error(bs, &jc, ERR_INVALID, "node that is not DAG-CBOR", "not valid DAG-CBOR", &jc);

    expect_walk_error(bs, &absent, ERR_NOT_FOUND, "missing root", "is missing", &absent);
    blockstore_free(bs);
}

static err_code stop_visit(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    (void)key; (void)key_len; (void)value;
    int *n = ctx;
    if (++*n == 2) return err_set(e, ERR_CONFLICT, "stop here");
    return ERR_OK;
}

Test(mst, visitor_error_stops_the_walk_without_leaks) {
    blockstore *bs = blockstore_new();
    hent_t leaf[] = {{0, K0a, NULL}};
    cid_t n0 = put_node(bs, NULL, leaf, 1, NULL);
    hent_t leaf2[] = {{0, K0c, NULL}};
    cid_t n0b = put_node(bs, NULL, leaf2, 1, NULL);
    hent_t top[] = {{0, K1, &n0b}};
    cid_t root = put_node(bs, &n0, top, 1, NULL);
    int n = 0;
    err_t e = {0};
    cr_assert_eq(mst_walk(&root, blockstore_get_cb, bs, stop_visit, &n, NULL, &e), ERR_CONFLICT);
    cr_assert_str_eq(e.msg, "stop here");
    cr_assert_eq(n, 2);
    blockstore_free(bs);
}
