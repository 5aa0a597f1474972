/* test_repo.c — whole-repo verification over a CAR (repo.c) and the blob-reference scan that
 * lets migrate find an oversized blob from the records before anything moves. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/cbor.h"
#include "pdsmove/repo.h"

#define CAR30 PDSMOVE_FIXTURES "/car/repo-30.car"

typedef struct {
    int records;
    size_t bytes;
    char last_key[128];
} counter;

static err_code count(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data, size_t len,
                      err_t *e) {
    counter *c = ctx;
    cr_assert_not_null(data);
    cr_assert(cid_matches(cid, data, len), "the record block handed over must be the record's");
    if (c->last_key[0]) cr_assert_gt(strncmp(key, c->last_key, key_len), -1);
    snprintf(c->last_key, sizeof c->last_key, "%.*s", (int)key_len, key);
    c->records++;
    c->bytes += len;
    return ERR_OK;
}

Test(repo, verifies_the_fixture_and_hands_over_every_record) {
    int fd = open(CAR30, O_RDONLY);
    cr_assert_geq(fd, 0);
    key_pub k;
    err_t e;
    cr_assert_eq(key_pub_from_did_key(&k, "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", &e), ERR_OK);
    counter c = {0};
    repo_summary s;
    cr_assert_eq(repo_verify_car(fd, &k, 1, count, &c, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(c.records, 30);
    cr_assert_eq(s.records, 30);
    cr_assert_eq(s.blocks, 45);
    cr_assert(s.signature_checked);
    cr_assert_eq(s.signed_by, 0);
    cr_assert_str_eq(s.did, "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    char cs[CID_STR_MAX];
    cid_format(&s.commit, cs, sizeof cs);
    cr_assert_str_eq(cs, "bafyreig4x6js4uxjx5sht62n2rsx4gvxgi7fw7b3vimm2zczrf6726ehfm");
    cid_format(&s.data, cs, sizeof cs);
    cr_assert_str_eq(cs, "bafyreiehs5ixbpgfhuzd3abcka6aes2wkvbxzqrhokmgk2ichwlkb74t5y");
    size_t sum = 0;
    for (size_t i = 0; i < s.n_collections; i++) sum += s.collections[i].records;
    cr_assert_eq(sum, 30);
    close(fd);
}

Test(repo, a_second_key_is_accepted_and_named_but_a_wrong_one_alone_is_not) {
    int fd = open(CAR30, O_RDONLY);
    key_pub keys[2];
    err_t e;
    key_priv other;
    cr_assert_eq(key_priv_generate(&other, KEY_K256, &e), ERR_OK);
    keys[0] = other.pub;
    cr_assert_eq(key_pub_from_did_key(&keys[1], "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", &e), ERR_OK);
    repo_summary s;
    cr_assert_eq(repo_verify_car(fd, keys, 2, NULL, NULL, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(s.signed_by, 1);
    cr_assert_eq(repo_verify_car(fd, keys, 1, NULL, NULL, &s, &e), ERR_MISMATCH);
    key_priv_wipe(&other);
    close(fd);
}

typedef struct {
    int n;
    int64_t sizes[8];
    char cids[8][CID_STR_MAX];
} refs;

static err_code collect(void *ctx, const cid_t *cid, int64_t size, err_t *e) {
    (void)e;
    refs *r = ctx;
    cr_assert_lt(r->n, 8);
    r->sizes[r->n] = size;
    cid_format(cid, r->cids[r->n], sizeof r->cids[0]);
    r->n++;
    return ERR_OK;
}

static void scan(const char *json, refs *r) {
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it;
    err_t e;
    cr_assert_eq(cbor_from_json(doc, json, strlen(json), &it, &e), ERR_OK, "%s", e.msg);
    buf_t b;
    buf_init(&b, 0);
    cr_assert_eq(cbor_encode(it, &b, &e), ERR_OK);
    memset(r, 0, sizeof *r);
    cr_assert_eq(repo_record_blob_refs(b.data, b.len, collect, r, &e), ERR_OK, "%s", e.msg);
    buf_free(&b);
    cbor_doc_free(doc);
}

#define BLOB1 "bafkreidlzcyyx3bx7dxnyv6kdw37mvziscthgnv2spt5r3aceqnncgxqhy"
#define BLOB2 "bafkreicwo6nmblvtjkv2s62fu5jx3anyff3laodzcxkgxq3d3xtcoht5d4"

Test(repo, finds_nested_blob_refs_with_their_declared_sizes) {
    refs r;
    scan("{\"$type\":\"app.bsky.feed.post\",\"text\":\"hi\",\"embed\":{\"$type\":\"app.bsky.embed.images\",\"images\":["
         "{\"alt\":\"a\",\"image\":{\"$type\":\"blob\",\"ref\":{\"$link\":\"" BLOB1 "\"},\"mimeType\":\"image/png\",\"size\":5242880}},"
         "{\"alt\":\"b\",\"image\":{\"$type\":\"blob\",\"ref\":{\"$link\":\"" BLOB2 "\"},\"mimeType\":\"image/png\",\"size\":137}}]}}",
         &r);
    cr_assert_eq(r.n, 2);
    cr_assert_str_eq(r.cids[0], BLOB1);
    cr_assert_eq(r.sizes[0], 5242880);
    cr_assert_str_eq(r.cids[1], BLOB2);
    cr_assert_eq(r.sizes[1], 137);
}

Test(repo, finds_legacy_blob_refs_without_a_size_and_ignores_plain_records) {
    refs r;
    scan("{\"$type\":\"app.bsky.actor.profile\",\"avatar\":{\"cid\":\"" BLOB1 "\",\"mimeType\":\"image/jpeg\"}}", &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.sizes[0], -1);
    scan("{\"$type\":\"app.bsky.feed.like\",\"subject\":{\"uri\":\"at://did:plc:x/app.bsky.feed.post/1\",\"cid\":\"bafyreiehs5ixbpgfhuzd3abcka6aes2wkvbxzqrhokmgk2ichwlkb74t5y\"}}",
         &r);
    cr_assert_eq(r.n, 0, "a strong ref's record CID is not a blob");
}
