/* test_cid.c — CIDv1: computing dag-cbor CIDs of the interop data-model fixture blocks,
 * parse/format round trips, binary parsing with varints, and refusal of CIDv0, truncated
 * and malformed input. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "pdsmove/cid.h"
#include "pdsmove/codec.h"
#include "pdsmove/hash.h"

#define DATA_MODEL_FIXTURES PDSMOVE_FIXTURES "/interop/data-model/data-model-fixtures.json"

Test(cid, computes_dag_cbor_cids_of_interop_fixture_blocks) {
    json_error_t je;
    json_t *root = json_load_file(DATA_MODEL_FIXTURES, 0, &je);
    cr_assert_not_null(root, "loading %s: %s", DATA_MODEL_FIXTURES, je.text);
    cr_assert(json_is_array(root));
    cr_assert_gt(json_array_size(root), 0, "fixture file has cases");
    size_t i;
    json_t *c;
    json_array_foreach(root, i, c) {
        const char *b64 = json_string_value(json_object_get(c, "cbor_base64"));
        const char *want = json_string_value(json_object_get(c, "cid"));
        cr_assert(b64 && want, "case %zu has cbor_base64 and cid", i);
        static uint8_t block[8192];
        size_t block_len = 0;
        err_t e; err_clear(&e);
        cr_assert_eq(base64_decode(b64, strlen(b64), block, sizeof block, &block_len, &e), ERR_OK, "case %zu (%s): %s", i, want, e.msg);
        cid_t got;
        cid_compute(&got, CID_CODEC_DAG_CBOR, block, block_len);
        char s[CID_STR_MAX];
        size_t n = cid_format(&got, s, sizeof s);
        cr_assert_gt(n, 0);
        cr_assert_str_eq(s, want, "case %zu: computed CID", i);
        cid_t parsed;
        cr_assert_eq(cid_parse(&parsed, want, &e), ERR_OK, "case %zu parse %s: %s", i, want, e.msg);
        cr_assert(cid_eq(&parsed, &got), "case %zu: parsed equals computed", i);
        cr_assert(cid_matches(&parsed, block, block_len), "case %zu: block matches its CID", i);
        block[0] ^= 1;
        cr_assert(!cid_matches(&parsed, block, block_len), "case %zu: altered block does not match", i);
        cr_assert_eq(parsed.codec, CID_CODEC_DAG_CBOR);
        cr_assert_eq(parsed.hash_code, CID_HASH_SHA256);
        cr_assert_eq(parsed.digest_len, 32);
    }
    json_decref(root);
}

Test(cid, computes_raw_cid_of_empty_blob) {
    cid_t c;
    cid_compute(&c, CID_CODEC_RAW, (const uint8_t *)"", 0);
    char s[CID_STR_MAX];
    cr_assert_eq(cid_format(&c, s, sizeof s), 59);
    cr_assert_str_eq(s, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
    uint8_t d[SHA256_BYTES];
    hash_sha256("", 0, d);
    cr_assert(memcmp(cid_digest(&c), d, SHA256_BYTES) == 0);
    cr_assert_eq(c.len, 36);
    cr_assert_eq(c.codec, CID_CODEC_RAW);
}

Test(cid, computes_multibyte_codec_varint) {
    cid_t c;
    cid_compute(&c, 0x0129 /* dag-json */, (const uint8_t *)"{}", 2);
    cr_assert_eq(c.len, 37, "codec 0x129 takes two varint bytes");
    cr_assert_eq(c.bytes[1], 0xa9);
    cr_assert_eq(c.bytes[2], 0x02);
    char s[CID_STR_MAX];
    cid_format(&c, s, sizeof s);
    cid_t back;
    err_t e; err_clear(&e);
    cr_assert_eq(cid_parse(&back, s, &e), ERR_OK, "%s: %s", s, e.msg);
    cr_assert(cid_eq(&back, &c));
    cr_assert_eq(back.codec, 0x0129);
    cr_assert_eq(back.digest_off, 5);
}

Test(cid, parses_binary_with_trailing_data_and_reports_size) {
    cid_t c;
    cid_compute(&c, CID_CODEC_DAG_CBOR, (const uint8_t *)"x", 1);
    uint8_t buf[64];
    memcpy(buf, c.bytes, c.len);
    memset(buf + c.len, 0xee, sizeof buf - c.len);
    cid_t got;
    size_t used = 0;
    err_t e; err_clear(&e);
    cr_assert_eq(cid_from_bytes(&got, buf, sizeof buf, &used, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(used, 36);
    cr_assert(cid_eq(&got, &c));
    cr_assert_eq(got.digest_off, 4);
}

Test(cid, accepts_other_hash_functions_it_cannot_verify) {
    /* blake2b-256 (0xb220, varint a0 e4 02), 32-byte digest */
    uint8_t buf[64] = {0x01, 0x71, 0xa0, 0xe4, 0x02, 0x20};
    memset(buf + 6, 0x42, 32);
    cid_t got;
    size_t used = 0;
    err_t e; err_clear(&e);
    cr_assert_eq(cid_from_bytes(&got, buf, 38, &used, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(used, 38);
    cr_assert_eq(got.hash_code, 0xb220);
    cr_assert(!cid_matches(&got, (const uint8_t *)"", 0), "non-sha256 CIDs never match");
}

Test(cid, rejects_truncated_binary_at_every_length) {
    cid_t c;
    cid_compute(&c, CID_CODEC_DAG_CBOR, (const uint8_t *)"abc", 3);
    for (size_t n = 0; n < c.len; n++) {
        cid_t got;
        size_t used = 0;
        err_t e; err_clear(&e);
        err_code rc = cid_from_bytes(&got, c.bytes, n, &used, &e);
        cr_assert_eq(rc, ERR_TRUNCATED, "prefix of %zu bytes: got %s (%s)", n, err_code_name(rc), e.msg);
        cr_assert(e.msg[0] != 0);
    }
}

Test(cid, rejects_malformed_binary) {
    struct { uint8_t b[48]; size_t n; err_code want; const char *why; } cases[] = {
        {{0x12, 0x20, 1, 2, 3}, 34, ERR_INVALID, "CIDv0 multihash"},
        {{0x00, 0x71, 0x12, 0x20}, 36, ERR_INVALID, "version 0"},
        {{0x02, 0x71, 0x12, 0x20}, 36, ERR_INVALID, "version 2"},
        {{0x81, 0x00, 0x71, 0x12, 0x20}, 37, ERR_INVALID, "non-minimal version varint"},
        {{0x01, 0xf1, 0x00, 0x12, 0x20}, 37, ERR_INVALID, "non-minimal codec varint"},
        {{0x01, 0x71, 0x12, 0x10}, 20, ERR_INVALID, "sha2-256 with 16-byte digest"},
        {{0x01, 0x71, 0x13, 0x41}, 48, ERR_LIMIT, "65-byte digest"},
        {{0x01, 0x71, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 48, ERR_INVALID, "10-byte length varint"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cid_t got;
        size_t used = 0;
        err_t e; err_clear(&e);
        err_code rc = cid_from_bytes(&got, cases[i].b, cases[i].n, &used, &e);
        cr_assert_eq(rc, cases[i].want, "%s: got %s (%s)", cases[i].why, err_code_name(rc), e.msg);
        cr_assert(e.msg[0] != 0, "%s: message", cases[i].why);
    }
}

Test(cid, rejects_malformed_strings) {
    const char *bad[] = {
        "",
        "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR",                   /* CIDv0 */
        "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7",                /* base58 CIDv1 */
        "BAFYREICLP443LAVOGVHJ3D2OB2CXBFUSCNI2K5JK7BEBJZG7KHL3ESABWQ",      /* upper-case */
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabw",        /* truncated */
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwqaa",     /* trailing byte */
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwr",       /* trailing bits */
        " bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq",
        "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq\n",
        "b",
        "bciqa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cid_t c;
        err_t e; err_clear(&e);
        err_code rc = cid_parse(&c, bad[i], &e);
        cr_assert_neq(rc, ERR_OK, "cid_parse must reject \"%s\"", bad[i]);
        cr_assert(e.msg[0] != 0, "rejecting \"%s\" explains why", bad[i]);
    }
    static char huge[400];
    memset(huge, 'a', sizeof huge - 1);
    huge[0] = 'b';
    cid_t c;
    cr_assert_eq(cid_parse(&c, huge, NULL), ERR_LIMIT, "overlong string");
}

Test(cid, format_respects_output_size) {
    cid_t c;
    cid_compute(&c, CID_CODEC_RAW, (const uint8_t *)"", 0);
    char s[60];
    cr_assert_eq(cid_format(&c, s, 59), 0, "59 bytes cannot hold 59 chars + NUL");
    cr_assert_eq(cid_format(&c, s, 60), 59);
}

Test(cid, eq_distinguishes_codec_and_digest) {
    cid_t a, b, c;
    cid_compute(&a, CID_CODEC_RAW, (const uint8_t *)"x", 1);
    cid_compute(&b, CID_CODEC_DAG_CBOR, (const uint8_t *)"x", 1);
    cid_compute(&c, CID_CODEC_RAW, (const uint8_t *)"y", 1);
    cr_assert(cid_eq(&a, &a));
    cr_assert(!cid_eq(&a, &b), "same digest, different codec");
    cr_assert(!cid_eq(&a, &c), "same codec, different digest");
}
