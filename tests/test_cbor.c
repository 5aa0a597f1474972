/* test_cbor.c — DAG-CBOR: the interop data-model fixtures (JSON → canonical bytes and CID,
 * bytes → JSON, valid and invalid documents), the decoder's strictness (canonical forms,
 * key order, floats, tags, limits, truncation), builders, lookups and the JSON mapping. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/cbor.h"
#include "pdsmove/cid.h"
#include "pdsmove/codec.h"

#define DM_DIR PDSMOVE_FIXTURES "/interop/data-model/"
#define LINK_A "bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a"

static json_t *load_cases(const char *path) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    cr_assert_not_null(root, "loading %s: %s", path, je.text);
    cr_assert(json_is_array(root) && json_array_size(root) > 0, "%s is a non-empty array", path);
    return root;
}

static const char *case_name(const json_t *c, size_t i, char *buf, size_t n) {
    const char *note = json_string_value(json_object_get(c, "note"));
    const char *cid = json_string_value(json_object_get(c, "cid"));
    snprintf(buf, n, "case %zu (%s)", i, note ? note : cid ? cid : "unnamed");
    return buf;
}

/* Hex → bytes in a malloc'd buffer (caller frees). */
static uint8_t *unhex(const char *hex, size_t *len) {
    size_t cap = strlen(hex) / 2 + 1;
    uint8_t *b = malloc(cap);
    cr_assert_not_null(b);
    err_t e;
    err_clear(&e);
    cr_assert_eq(hex_decode(hex, strlen(hex), b, cap, len, &e), ERR_OK, "test vector %s: %s", hex, e.msg);
    return b;
}

static err_code decode_hex(const char *hex, cbor_doc **doc, err_t *e) {
    size_t n;
    uint8_t *b = unhex(hex, &n);
    err_code rc = cbor_decode(b, n, doc, e);
    free(b);
    return rc;
}

static char *to_json_str(const cbor_item *it) {
    buf_t b;
    buf_init(&b, 0);
    err_t e;
    err_clear(&e);
    cr_assert_eq(cbor_to_json(it, &b, &e), ERR_OK, "cbor_to_json: %s", e.msg);
    cr_assert_eq(buf_terminate(&b, &e), ERR_OK);
    return (char *)b.data; /* caller frees */
}

/* ---------------------------------------------------------------- interop fixtures */

Test(cbor, fixture_json_encodes_to_the_fixture_bytes_and_cid) {
    json_t *root = load_cases(DM_DIR "data-model-fixtures.json");
    size_t i;
    json_t *c;
    char name[160];
    json_array_foreach(root, i, c) {
        case_name(c, i, name, sizeof name);
        const char *b64 = json_string_value(json_object_get(c, "cbor_base64"));
        const char *want_cid = json_string_value(json_object_get(c, "cid"));
        cr_assert(b64 && want_cid && json_object_get(c, "json"), "%s has json, cbor_base64 and cid", name);
        size_t want_len = 0;
        uint8_t *want = malloc(strlen(b64));
        err_t e;
        err_clear(&e);
        cr_assert_eq(base64_decode(b64, strlen(b64), want, strlen(b64), &want_len, &e), ERR_OK, "%s: %s", name, e.msg);

        char *text = json_dumps(json_object_get(c, "json"), JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert_not_null(text);
        for (int variant = 0; variant < 2; variant++) {
            cbor_doc *doc = cbor_doc_new();
            cbor_item *it = NULL;
            err_code rc = variant == 0 ? cbor_from_json(doc, text, strlen(text), &it, &e)
                                       : cbor_from_jansson(doc, json_object_get(c, "json"), &it, &e);
            cr_assert_eq(rc, ERR_OK, "%s (%s): from JSON: %s", name, variant ? "jansson" : "text", e.msg);
            cr_assert_eq(cbor_check_record(it, &e), ERR_OK, "%s: record check: %s", name, e.msg);
            buf_t out;
            buf_init(&out, 0);
            cr_assert_eq(cbor_encode(it, &out, &e), ERR_OK, "%s: encode: %s", name, e.msg);
            cr_assert_eq(out.len, want_len, "%s: encoded %zu bytes, fixture has %zu", name, out.len, want_len);
            cr_assert(memcmp(out.data, want, want_len) == 0, "%s: encoding differs from cbor_base64", name);
            cid_t cid;
            cid_compute(&cid, CID_CODEC_DAG_CBOR, out.data, out.len);
            char s[CID_STR_MAX];
            cid_format(&cid, s, sizeof s);
            cr_assert_str_eq(s, want_cid, "%s: CID of the encoding", name);
            buf_free(&out);
            cbor_doc_free(doc);
        }
        free(text);
        free(want);
    }
    json_decref(root);
}

Test(cbor, fixture_bytes_decode_to_the_fixture_json) {
    json_t *root = load_cases(DM_DIR "data-model-fixtures.json");
    size_t i;
    json_t *c;
    char name[160];
    json_array_foreach(root, i, c) {
        case_name(c, i, name, sizeof name);
        const char *b64 = json_string_value(json_object_get(c, "cbor_base64"));
        const json_t *want = json_object_get(c, "json");
        cr_assert(b64 && want, "%s has json and cbor_base64", name);
        size_t n = 0;
        uint8_t *bytes = malloc(strlen(b64));
        err_t e;
        err_clear(&e);
        cr_assert_eq(base64_decode(b64, strlen(b64), bytes, strlen(b64), &n, &e), ERR_OK, "%s: %s", name, e.msg);

        cbor_doc *doc = NULL;
        cr_assert_eq(cbor_decode(bytes, n, &doc, &e), ERR_OK, "%s: decode: %s", name, e.msg);
        const cbor_item *it = cbor_doc_root(doc);
        cr_assert_not_null(it);

        char *text = to_json_str(it);
        json_error_t je;
        json_t *got = json_loads(text, 0, &je);
        cr_assert_not_null(got, "%s: cbor_to_json produced unparsable JSON (%s): %s", name, je.text, text);
        cr_assert(json_equal(got, want), "%s: cbor_to_json gave %s", name, text);
        cr_assert_null(strchr(text, ' '), "%s: output is compact", name);
        json_decref(got);

        json_t *jv = cbor_to_jansson(it, &e);
        cr_assert_not_null(jv, "%s: cbor_to_jansson: %s", name, e.msg);
        cr_assert(json_equal(jv, want), "%s: cbor_to_jansson differs from the fixture", name);
        json_decref(jv);

        /* re-encoding the decoded tree, and the JSON text we wrote, gives the same bytes */
        buf_t out;
        buf_init(&out, 0);
        cr_assert_eq(cbor_encode(it, &out, &e), ERR_OK, "%s: %s", name, e.msg);
        cr_assert(out.len == n && memcmp(out.data, bytes, n) == 0, "%s: decode+encode round trip", name);
        cbor_item *again = NULL;
        cr_assert_eq(cbor_from_json(doc, text, strlen(text), &again, &e), ERR_OK, "%s: %s", name, e.msg);
        buf_reset(&out);
        cr_assert_eq(cbor_encode(again, &out, &e), ERR_OK, "%s: %s", name, e.msg);
        cr_assert(out.len == n && memcmp(out.data, bytes, n) == 0, "%s: to_json+from_json round trip", name);
        buf_free(&out);
        free(text);
        cbor_doc_free(doc);
        free(bytes);
    }
    json_decref(root);
}

Test(cbor, valid_fixtures_are_accepted_and_round_trip) {
    json_t *root = load_cases(DM_DIR "data-model-valid.json");
    size_t i;
    json_t *c;
    char name[160];
    json_array_foreach(root, i, c) {
        case_name(c, i, name, sizeof name);
        char *text = json_dumps(json_object_get(c, "json"), JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert_not_null(text, "%s has json", name);
        cbor_doc *doc = cbor_doc_new();
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        cr_assert_eq(cbor_from_json(doc, text, strlen(text), &it, &e), ERR_OK, "%s: %s", name, e.msg);
        cr_assert_eq(cbor_check_record(it, &e), ERR_OK, "%s: %s", name, e.msg);
        buf_t out;
        buf_init(&out, 0);
        cr_assert_eq(cbor_encode(it, &out, &e), ERR_OK, "%s: %s", name, e.msg);
        cbor_doc *back = NULL;
        cr_assert_eq(cbor_decode(out.data, out.len, &back, &e), ERR_OK, "%s: decoding our own encoding: %s", name, e.msg);
        cr_assert_eq(cbor_check_record(cbor_doc_root(back), &e), ERR_OK, "%s: %s", name, e.msg);
        cbor_doc_free(back);
        buf_free(&out);
        cbor_doc_free(doc);
        free(text);
    }
    json_decref(root);
}

Test(cbor, invalid_fixtures_are_rejected) {
    json_t *root = load_cases(DM_DIR "data-model-invalid.json");
    size_t i;
    json_t *c;
    char name[160];
    json_array_foreach(root, i, c) {
        case_name(c, i, name, sizeof name);
        char *text = json_dumps(json_object_get(c, "json"), JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert_not_null(text, "%s has json", name);
        cbor_doc *doc = cbor_doc_new();
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        err_code rc = cbor_from_json(doc, text, strlen(text), &it, &e);
        if (rc == ERR_OK) {
            /* JSON-form rules passed: a record-level rule must refuse it, in both forms */
            rc = cbor_check_record(it, &e);
            cr_assert_neq(rc, ERR_OK, "%s was accepted: %s", name, text);
            buf_t out;
            buf_init(&out, 0);
            cr_assert_eq(cbor_encode(it, &out, &e), ERR_OK, "%s: %s", name, e.msg);
            cbor_doc *back = NULL;
            cr_assert_eq(cbor_decode(out.data, out.len, &back, &e), ERR_OK, "%s: %s", name, e.msg);
            cr_assert_neq(cbor_check_record(cbor_doc_root(back), &e), ERR_OK, "%s accepted in CBOR form", name);
            cbor_doc_free(back);
            buf_free(&out);
        } else {
            cr_assert_null(it, "%s: no output on failure", name);
        }
        cr_assert_eq(rc, ERR_INVALID, "%s: rejected as invalid (got %s: %s)", name, err_code_name(rc), e.msg);
        cr_assert_neq(e.msg[0], '\0', "%s: has a message", name);
        cbor_doc_free(doc);
        free(text);
    }
    json_decref(root);
}

/* ---------------------------------------------------------------- decoder strictness */

typedef struct {
    const char *hex;
    err_code want;
    const char *why;
} vec;

static void expect_all(const vec *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cbor_doc *doc = NULL;
        err_t e;
        err_clear(&e);
        err_code rc = decode_hex(v[i].hex, &doc, &e);
        cr_assert_eq(rc, v[i].want, "%s (%s): want %s, got %s: %s", v[i].why, v[i].hex, err_code_name(v[i].want),
                     err_code_name(rc), e.msg);
        if (rc == ERR_OK) {
            cr_assert_not_null(doc);
            /* what the decoder accepts, the encoder reproduces exactly */
            size_t n_in;
            uint8_t *in = unhex(v[i].hex, &n_in);
            buf_t out;
            buf_init(&out, 0);
            cr_assert_eq(cbor_encode(cbor_doc_root(doc), &out, &e), ERR_OK, "%s: %s", v[i].why, e.msg);
            cr_assert(out.len == n_in && memcmp(out.data, in, n_in) == 0, "%s: re-encoding is identical", v[i].why);
            buf_free(&out);
            free(in);
            cbor_doc_free(doc);
        } else {
            cr_assert_null(doc, "%s: no document on failure", v[i].why);
            cr_assert_neq(e.msg[0], '\0', "%s: has a message", v[i].why);
        }
    }
}

Test(cbor, rejects_non_canonical_integers_and_lengths) {
    static const vec v[] = {
        {"17", ERR_OK, "23 inline"},
        {"1818", ERR_OK, "24 in one byte"},
        {"18ff", ERR_OK, "255"},
        {"190100", ERR_OK, "256"},
        {"1a00010000", ERR_OK, "65536"},
        {"1b0000000100000000", ERR_OK, "2^32"},
        {"3818", ERR_OK, "-25"},
        {"1805", ERR_INVALID, "5 in a one-byte argument"},
        {"1817", ERR_INVALID, "23 in a one-byte argument"},
        {"1900ff", ERR_INVALID, "255 in two bytes"},
        {"1a0000ffff", ERR_INVALID, "65535 in four bytes"},
        {"1b00000000ffffffff", ERR_INVALID, "2^32-1 in eight bytes"},
        {"3817", ERR_INVALID, "-24 in a one-byte argument"},
        {"78016161", ERR_INVALID, "text length 1 in a one-byte argument"},
        {"5800", ERR_INVALID, "bytes length 0 in a one-byte argument"},
        {"9800", ERR_INVALID, "array length 0 in a one-byte argument"},
        {"b800", ERR_INVALID, "map length 0 in a one-byte argument"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

Test(cbor, integers_must_fit_int64) {
    cbor_doc *doc = NULL;
    err_t e;
    cr_assert_eq(decode_hex("1b7fffffffffffffff", &doc, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(cbor_doc_root(doc)->v.integer, INT64_MAX);
    cbor_doc_free(doc);
    cr_assert_eq(decode_hex("3b7fffffffffffffff", &doc, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(cbor_doc_root(doc)->v.integer, INT64_MIN);
    cbor_doc_free(doc);
    static const vec v[] = {
        {"1b8000000000000000", ERR_INVALID, "2^63"},
        {"1bffffffffffffffff", ERR_INVALID, "2^64-1"},
        {"3b8000000000000000", ERR_INVALID, "-2^63-1"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

Test(cbor, map_keys_must_be_sorted_unique_text) {
    static const vec w[] = {
        {"a2616102616203", ERR_OK, "{a,b} sorted"},
        {"a261620262616101", ERR_OK, "{b,aa}: shorter key first"},
        {"a2616202616101", ERR_INVALID, "{b,a}: bytewise order"},
        {"a262616101616202", ERR_INVALID, "{aa,b}: length order"},
        {"a2616101616102", ERR_INVALID, "duplicate key a"},
        {"a10102", ERR_INVALID, "integer key"},
        {"a1416101", ERR_INVALID, "byte-string key"},
        {"a162c32801", ERR_INVALID, "key with invalid UTF-8"},
    };
    expect_all(w, sizeof w / sizeof w[0]);

    cbor_doc *doc = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(decode_hex("a2616202616101", &doc, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "byte 4"), "message names the offset of the misplaced key: %s", e.msg);
}

Test(cbor, rejects_indefinite_lengths) {
    static const vec v[] = {
        {"9f01ff", ERR_INVALID, "indefinite array"},
        {"bf616101ff", ERR_INVALID, "indefinite map"},
        {"5f4101ff", ERR_INVALID, "indefinite byte string"},
        {"7f6161ff", ERR_INVALID, "indefinite text string"},
        {"ff", ERR_INVALID, "lone break"},
        {"1f", ERR_INVALID, "integer with additional information 31"},
        {"1c", ERR_INVALID, "reserved additional information 28"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

Test(cbor, rejects_floats_and_simple_values) {
    static const vec v[] = {
        {"f4", ERR_OK, "false"},
        {"f5", ERR_OK, "true"},
        {"f6", ERR_OK, "null"},
        {"f93c00", ERR_INVALID, "half float 1.0"},
        {"fa3f800000", ERR_INVALID, "single float 1.0"},
        {"fb3ff0000000000000", ERR_INVALID, "double 1.0 (integral, still a float)"},
        {"fb7ff8000000000000", ERR_INVALID, "NaN"},
        {"f7", ERR_INVALID, "undefined"},
        {"f0", ERR_INVALID, "simple value 16"},
        {"f820", ERR_INVALID, "one-byte simple value"},
        {"a1616ff93c00", ERR_INVALID, "float nested in a map"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

/* Hex of a tag-42 CID wrapping LINK_A's binary form, with prefix byte and extra suffix. */
static char *cid_tag_hex(const char *prefix_hex, const char *suffix_hex) {
    cid_t c;
    err_t e;
    cr_assert_eq(cid_parse(&c, LINK_A, &e), ERR_OK, "%s", e.msg);
    char cid_hex[2 * CID_MAX_BYTES + 1];
    hex_encode(c.bytes, c.len, cid_hex, sizeof cid_hex);
    size_t body = strlen(prefix_hex) / 2 + c.len + strlen(suffix_hex) / 2;
    char *out = malloc(64 + 2 * body + 1);
    sprintf(out, "d82a58%02zx%s%s%s", body, prefix_hex, cid_hex, suffix_hex);
    return out;
}

Test(cbor, tag_42_must_wrap_prefixed_binary_cid) {
    char *good = cid_tag_hex("00", "");
    cbor_doc *doc = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(decode_hex(good, &doc, &e), ERR_OK, "%s", e.msg);
    cid_t want;
    cr_assert_eq(cid_parse(&want, LINK_A, &e), ERR_OK);
    cr_assert_eq(cbor_doc_root(doc)->type, CBOR_CID);
    cr_assert(cid_eq(&cbor_doc_root(doc)->v.cid, &want));
    cbor_doc_free(doc);
    char *no_prefix = cid_tag_hex("", "");
    char *bad_prefix = cid_tag_hex("01", "");
    char *trailing = cid_tag_hex("00", "00");
    const vec v[] = {
        {good, ERR_OK, "CID"},
        {no_prefix, ERR_INVALID, "CID without the 0x00 prefix"},
        {bad_prefix, ERR_INVALID, "CID with prefix 0x01"},
        {trailing, ERR_INVALID, "CID with a stray byte after it"},
        {"d82a40", ERR_INVALID, "tag 42 over empty bytes"},
        {"d82a4100", ERR_INVALID, "tag 42 over just the prefix"},
        {"d82a6161", ERR_INVALID, "tag 42 over text"},
        {"d82a01", ERR_INVALID, "tag 42 over an integer"},
        {"d82a5822001220" "0000000000000000000000000000000000000000000000000000000000000000", ERR_INVALID, "tag 42 over a CIDv0"},
        {"c100", ERR_INVALID, "tag 1"},
        {"d82b4100", ERR_INVALID, "tag 43"},
        {"d9002a4100", ERR_INVALID, "tag 42 in a non-shortest head"},
        {"d82a", ERR_TRUNCATED, "tag 42 with no content"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
    free(good);
    free(no_prefix);
    free(bad_prefix);
    free(trailing);
}

Test(cbor, rejects_invalid_utf8_text) {
    static const vec v[] = {
        {"62c3b6", ERR_OK, "ö"},
        {"64f09f9880", ERR_OK, "emoji"},
        {"6100", ERR_OK, "U+0000 is valid text"},
        {"62c328", ERR_INVALID, "bad continuation"},
        {"62c0af", ERR_INVALID, "overlong /"},
        {"63eda080", ERR_INVALID, "surrogate U+D800"},
        {"64f4900000", ERR_INVALID, "beyond U+10FFFF"},
        {"61ff", ERR_INVALID, "0xff byte"},
        {"62e282", ERR_INVALID, "sequence cut by the string end"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

Test(cbor, deep_nesting_fails_fast_with_limit) {
    size_t n = 100000;
    uint8_t *bomb = malloc(n + 1);
    memset(bomb, 0x81, n);
    bomb[n] = 0x00;
    cbor_doc *doc = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(cbor_decode(bomb, n + 1, &doc, &e), ERR_LIMIT, "100k nested arrays: %s", e.msg);
    cr_assert_null(doc);
    cr_assert_not_null(strstr(e.msg, "byte 64"), "names the offset of the 65th array: %s", e.msg);
    /* maps too: {"a": {"a": ...}} */
    for (size_t i = 0; i + 3 <= n; i += 3) {
        bomb[i] = 0xa1;
        bomb[i + 1] = 0x61;
        bomb[i + 2] = 'a';
    }
    cr_assert_eq(cbor_decode(bomb, n - n % 3, &doc, &e), ERR_LIMIT, "nested maps: %s", e.msg);
    /* exactly the limit is fine, one more is not */
    memset(bomb, 0x81, CBOR_MAX_DEPTH);
    bomb[CBOR_MAX_DEPTH] = 0x00;
    cr_assert_eq(cbor_decode(bomb, CBOR_MAX_DEPTH + 1, &doc, &e), ERR_OK, "%d levels: %s", CBOR_MAX_DEPTH, e.msg);
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(cbor_encode(cbor_doc_root(doc), &out, &e), ERR_OK);
    cbor_doc_free(doc);
    buf_free(&out);
    memset(bomb, 0x81, CBOR_MAX_DEPTH + 1);
    bomb[CBOR_MAX_DEPTH + 1] = 0x80;
    cr_assert_eq(cbor_decode(bomb, CBOR_MAX_DEPTH + 2, &doc, &e), ERR_LIMIT, "an empty array at level %d", CBOR_MAX_DEPTH + 1);
    free(bomb);
}

Test(cbor, rejects_truncated_input) {
    static const vec v[] = {
        {"", ERR_TRUNCATED, "empty input"},
        {"6261", ERR_TRUNCATED, "text cut short"},
        {"4401", ERR_TRUNCATED, "bytes cut short"},
        {"1901", ERR_TRUNCATED, "argument cut short"},
        {"1b00000001", ERR_TRUNCATED, "eight-byte argument cut short"},
        {"8201", ERR_TRUNCATED, "array missing an element"},
        {"a16161", ERR_TRUNCATED, "map missing a value"},
        {"a2616101", ERR_TRUNCATED, "map missing a pair"},
        {"5affffffff", ERR_TRUNCATED, "bytes claiming 4 GiB"},
        {"99ffff", ERR_TRUNCATED, "array claiming 65535 elements"},
        {"b9ffff00", ERR_TRUNCATED, "map claiming 65535 pairs"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
}

Test(cbor, rejects_trailing_bytes) {
    static const vec v[] = {
        {"0102", ERR_INVALID, "two integers"},
        {"a000", ERR_INVALID, "map then a byte"},
        {"8101f6", ERR_INVALID, "array then null"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
    cbor_doc *doc = NULL;
    err_t e;
    cr_assert_eq(decode_hex("8101f6", &doc, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "byte 2"), "names where the item ends: %s", e.msg);
}

Test(cbor, item_and_size_limits) {
    static const vec v[] = {
        {"9a00100000", ERR_LIMIT, "array of 2^20 elements (plus the root) is over the item limit"},
        {"9bffffffffffffffff", ERR_LIMIT, "array claiming 2^64-1 elements"},
        {"bbffffffffffffffff", ERR_LIMIT, "map claiming 2^64-1 pairs"},
    };
    expect_all(v, sizeof v / sizeof v[0]);
    size_t n = CBOR_MAX_DOC_BYTES + 1;
    uint8_t *big = calloc(1, n);
    cbor_doc *doc = NULL;
    err_t e;
    cr_assert_eq(cbor_decode(big, n, &doc, &e), ERR_LIMIT, "document over CBOR_MAX_DOC_BYTES");
    free(big);
}

/* ---------------------------------------------------------------- builders and encoder */

Test(cbor, builders_encode_canonically) {
    cbor_doc *doc = cbor_doc_new();
    err_t e;
    err_clear(&e);
    cbor_item *m = cbor_new_map(doc, 5);
    cr_assert_not_null(m);
    cr_assert_eq(cbor_map_put(doc, m, "bb", cbor_new_int(doc, -1), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "c", cbor_new_bool(doc, true), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "a", cbor_new_null(doc), &e), ERR_OK);
    cbor_item *arr = cbor_new_array(doc, 3);
    arr->v.array.items[0] = cbor_new_textz(doc, "x");
    static const uint8_t raw[] = {1, 2};
    arr->v.array.items[1] = cbor_new_bytes(doc, raw, 2);
    arr->v.array.items[2] = cbor_new_int(doc, 1000);
    cr_assert_eq(cbor_map_put(doc, m, "aaa", arr, &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "a", cbor_new_null(doc), &e), ERR_INVALID, "duplicate key");
    cr_assert_eq(cbor_map_put(doc, m, "dd", cbor_new_int(doc, 24), &e), ERR_OK);
    cr_assert_eq(cbor_map_put(doc, m, "e", cbor_new_null(doc), &e), ERR_LIMIT, "beyond capacity");
    cr_assert_eq(cbor_map_put(doc, m, "f", NULL, &e), ERR_NOMEM, "a builder's NULL (OOM) passed in");
    cbor_doc_set_root(doc, m);
    cr_assert_eq(cbor_doc_root(doc), m);

    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(cbor_encode(m, &out, &e), ERR_OK, "%s", e.msg);
    char hex[256];
    hex_encode(out.data, out.len, hex, sizeof hex);
    /* {"a":null,"c":true,"bb":-1,"dd":24,"aaa":["x",h'0102',1000]} */
    cr_assert_str_eq(hex, "a56161f66163f5626262206264641818636161618361784201021903e8");

    cr_assert_eq(cbor_map_get(m, "dd")->v.integer, 24);
    cr_assert_null(cbor_map_get(m, "zz"));
    cr_assert_null(cbor_map_get(arr, "a"), "lookup on a non-map");
    size_t len = 0;
    cr_assert_null(cbor_map_get_text(m, "a", &len), "null is not text");
    cbor_item *t = cbor_new_map(doc, 1);
    cr_assert_eq(cbor_map_put(doc, t, "k", cbor_new_text(doc, "v\0w", 3), &e), ERR_OK);
    cr_assert(memcmp(cbor_map_get_text(t, "k", &len), "v\0w", 4) == 0 && len == 3, "text with its length and a NUL");
    cr_assert_null(cbor_map_get_cid(m, "a"));
    buf_free(&out);
    cbor_doc_free(doc);
}

Test(cbor, integers_encode_in_the_shortest_form) {
    static const struct {
        int64_t v;
        const char *hex;
    } cases[] = {
        {0, "00"}, {23, "17"}, {24, "1818"}, {255, "18ff"}, {256, "190100"}, {65535, "19ffff"},
        {65536, "1a00010000"}, {4294967295LL, "1affffffff"}, {4294967296LL, "1b0000000100000000"},
        {INT64_MAX, "1b7fffffffffffffff"}, {-1, "20"}, {-24, "37"}, {-25, "3818"}, {-256, "38ff"},
        {-257, "390100"}, {INT64_MIN, "3b7fffffffffffffff"},
    };
    cbor_doc *doc = cbor_doc_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t out;
        buf_init(&out, 0);
        err_t e;
        cr_assert_eq(cbor_encode(cbor_new_int(doc, cases[i].v), &out, &e), ERR_OK);
        char hex[32];
        hex_encode(out.data, out.len, hex, sizeof hex);
        cr_assert_str_eq(hex, cases[i].hex, "integer %lld", (long long)cases[i].v);
        cbor_doc *back = NULL;
        cr_assert_eq(cbor_decode(out.data, out.len, &back, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(cbor_doc_root(back)->v.integer, cases[i].v);
        cbor_doc_free(back);
        buf_free(&out);
    }
    cbor_doc_free(doc);
}

Test(cbor, encoder_refuses_what_the_decoder_would_refuse) {
    cbor_doc *doc = cbor_doc_new();
    err_t e;
    buf_t out;
    buf_init(&out, 0);
    cr_assert_eq(buf_append_byte(&out, 0x42, &e), ERR_OK);

    cbor_item *arr = cbor_new_array(doc, 2);
    arr->v.array.items[0] = cbor_new_int(doc, 1);
    cr_assert_eq(cbor_encode(arr, &out, &e), ERR_USAGE, "unset array element");
    cr_assert_eq(out.len, 1, "output left as it was");

    cr_assert_eq(cbor_encode(cbor_new_text(doc, "\xc3\x28", 2), &out, &e), ERR_INVALID, "invalid UTF-8");
    cr_assert_eq(out.len, 1);

    /* 65 nested arrays */
    cbor_item *inner = cbor_new_array(doc, 0);
    for (int i = 1; i < CBOR_MAX_DEPTH + 1; i++) {
        cbor_item *outer = cbor_new_array(doc, 1);
        outer->v.array.items[0] = inner;
        inner = outer;
    }
    cr_assert_eq(cbor_encode(inner, &out, &e), ERR_LIMIT, "%s", e.msg);
    cr_assert_eq(cbor_to_json(inner, &out, &e), ERR_LIMIT);
    cr_assert_null(cbor_to_jansson(inner, &e));
    cr_assert_eq(e.code, ERR_LIMIT);
    cr_assert_eq(out.len, 1);
    cr_assert_eq(cbor_encode(inner->v.array.items[0], &out, &e), ERR_OK, "64 levels encode");
    buf_free(&out);
    cbor_doc_free(doc);
}

/* ---------------------------------------------------------------- JSON mapping */

Test(cbor, to_json_is_compact_with_canonical_key_order) {
    const char *in = "{\"zz\":\"q\\\"\\\\\\n\\u0001é\",\"b\":[true,false,null,-5],\"aa\":{\"$bytes\":\"AQI\"},"
                     "\"ccc\":{\"$link\":\"" LINK_A "\"},\"e\":{},\"d\":[],\"f\":{\"$bytes\":\"\"}}";
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(cbor_from_json(doc, in, strlen(in), &it, &e), ERR_OK, "%s", e.msg);
    char *got = to_json_str(it);
    cr_assert_str_eq(got, "{\"b\":[true,false,null,-5],\"d\":[],\"e\":{},\"f\":{\"$bytes\":\"\"},\"aa\":{\"$bytes\":\"AQI\"},"
                          "\"zz\":\"q\\\"\\\\\\n\\u0001é\",\"ccc\":{\"$link\":\"" LINK_A "\"}}");
    free(got);
    const cbor_item *aa = cbor_map_get(it, "aa");
    cr_assert(aa && aa->type == CBOR_BYTES && aa->v.bytes.len == 2 && aa->v.bytes.ptr[1] == 2);
    cr_assert_not_null(cbor_map_get_cid(it, "ccc"));
    size_t len = 0;
    cr_assert_str_eq(cbor_map_get_text(it, "zz", &len), "q\"\\\n\x01é");
    cr_assert_eq(len, 7);
    cbor_doc_free(doc);
}

Test(cbor, from_json_numbers_must_be_integers) {
    static const struct {
        const char *json;
        err_code want;
        int64_t value;
    } cases[] = {
        {"123", ERR_OK, 123},
        {"123.0", ERR_OK, 123},
        {"1e3", ERR_OK, 1000},
        {"-0", ERR_OK, 0},
        {"-0.0", ERR_OK, 0},
        {"9223372036854775807", ERR_OK, INT64_MAX},
        {"-9223372036854775808", ERR_OK, INT64_MIN},
        {"123.456", ERR_INVALID, 0},
        {"0.5", ERR_INVALID, 0},
        {"1e300", ERR_INVALID, 0},
        {"9223372036854775808", ERR_INVALID, 0},
        {"9.3e18", ERR_INVALID, 0},
    };
    cbor_doc *doc = cbor_doc_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        err_code rc = cbor_from_json(doc, cases[i].json, strlen(cases[i].json), &it, &e);
        cr_assert_eq(rc, cases[i].want, "%s: got %s: %s", cases[i].json, err_code_name(rc), e.msg);
        if (rc == ERR_OK) {
            cr_assert_eq(it->type, CBOR_INT, "%s", cases[i].json);
            cr_assert_eq(it->v.integer, cases[i].value, "%s", cases[i].json);
        }
    }
    cbor_doc_free(doc);
}

Test(cbor, from_json_rejects_malformed_links_bytes_and_structure) {
    static const struct {
        const char *json;
        err_code want;
        const char *why;
    } cases[] = {
        {"{\"a\":1,\"a\":2}", ERR_INVALID, "duplicate key"},
        {"{\"$link\":\"" LINK_A "\",\"x\":1}", ERR_INVALID, "$link with another key"},
        {"{\"$link\":null}", ERR_INVALID, "$link null"},
        {"{\"$link\":\"Qmfoo\"}", ERR_INVALID, "$link not a CIDv1"},
        {"{\"$bytes\":\"AQI=\"}", ERR_INVALID, "$bytes with padding"},
        {"{\"$bytes\":\"AQJ\"}", ERR_INVALID, "$bytes with non-zero trailing bits"},
        {"{\"$bytes\":\"AQ-_\"}", ERR_INVALID, "$bytes in base64url"},
        {"{\"$bytes\":1}", ERR_INVALID, "$bytes not a string"},
        {"{\"a\":", ERR_TRUNCATED, "truncated text"},
        {"{\"a\":1} x", ERR_INVALID, "trailing garbage"},
        {"\"\\ud800\"", ERR_INVALID, "lone surrogate escape"},
        {"{\"$linkx\":1,\"$type\":\"x\"}", ERR_OK, "other $-keys are plain keys"},
        {"\"a\\u0000b\"", ERR_OK, "U+0000 in a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cbor_doc *doc = cbor_doc_new();
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        err_code rc = cbor_from_json(doc, cases[i].json, strlen(cases[i].json), &it, &e);
        cr_assert_eq(rc, cases[i].want, "%s (%s): got %s: %s", cases[i].why, cases[i].json, err_code_name(rc), e.msg);
        if (rc != ERR_OK) cr_assert_null(it);
        cbor_doc_free(doc);
    }
    /* nesting: the limit, one more, and a bomb jansson itself stops */
    static const struct {
        int levels;
        err_code want;
    } nest[] = {{CBOR_MAX_DEPTH, ERR_OK}, {CBOR_MAX_DEPTH + 1, ERR_LIMIT}, {100000, ERR_LIMIT}};
    for (size_t i = 0; i < sizeof nest / sizeof nest[0]; i++) {
        int n = nest[i].levels;
        char *j = malloc(2 * (size_t)n + 2);
        memset(j, '[', (size_t)n);
        j[n] = '1';
        memset(j + n + 1, ']', (size_t)n);
        j[2 * n + 1] = 0;
        cbor_doc *doc = cbor_doc_new();
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        err_code rc = cbor_from_json(doc, j, strlen(j), &it, &e);
        cr_assert_eq(rc, nest[i].want, "%d nested arrays: got %s: %s", n, err_code_name(rc), e.msg);
        cbor_doc_free(doc);
        free(j);
    }
    /* the message names where the problem is */
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    err_t e;
    const char *j = "{\"rcrd\":{\"list\":[1,{\"$bytes\":7}]}}";
    cr_assert_eq(cbor_from_json(doc, j, strlen(j), &it, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "$.rcrd.list[1]"), "%s", e.msg);
    cbor_doc_free(doc);
}

Test(cbor, text_with_nul_round_trips_through_json) {
    const char *j = "{\"k\":\"a\\u0000b\"}";
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(cbor_from_json(doc, j, strlen(j), &it, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(it->v.map.pairs[0].value->v.text.len, 3);
    char *got = to_json_str(it);
    cr_assert_str_eq(got, j);
    free(got);
    /* jansson cannot parse a NUL in a key, but items can hold one and both writers keep it */
    cr_assert_eq(cbor_map_putn(doc, it, "k\0", 2, cbor_new_int(doc, 1), &e), ERR_LIMIT, "map made with capacity 1");
    cbor_item *m = cbor_new_map(doc, 1);
    cr_assert_eq(cbor_map_putn(doc, m, "k\0", 2, cbor_new_int(doc, 1), &e), ERR_OK, "%s", e.msg);
    got = to_json_str(m);
    cr_assert_str_eq(got, "{\"k\\u0000\":1}");
    free(got);
    json_t *jv = cbor_to_jansson(m, &e);
    cr_assert_not_null(jv, "%s", e.msg);
    cr_assert_eq(json_integer_value(json_object_getn(jv, "k\0", 2)), 1);
    json_decref(jv);
    cbor_doc_free(doc);
}

Test(cbor, record_checks) {
    static const struct {
        const char *json;
        err_code want;
        const char *why;
    } cases[] = {
        {"{\"$type\":\"app.bsky.feed.post\",\"text\":\"hi\"}", ERR_OK, "plain record"},
        {"{\"img\":{\"cid\":\"" LINK_A "\",\"mimeType\":\"image/png\"}}", ERR_OK, "legacy blob (no $type)"},
        {"{\"b\":{\"$type\":\"blob\",\"ref\":{\"$link\":\"" LINK_A "\"},\"mimeType\":\"image/png\",\"size\":0}}", ERR_OK, "blob"},
        {"[1]", ERR_INVALID, "array at the top"},
        {"{\"a\":[{\"$type\":\"\"}]}", ERR_INVALID, "empty nested $type"},
        {"{\"b\":{\"$type\":\"blob\",\"ref\":{\"$link\":\"" LINK_A "\"},\"mimeType\":\"image/png\",\"size\":-1}}", ERR_INVALID,
         "negative blob size"},
        {"{\"b\":{\"$type\":\"blob\",\"ref\":{\"$link\":\"" LINK_A "\"},\"mimeType\":\"image/png\",\"size\":1,\"x\":1}}", ERR_INVALID,
         "blob with an extra key"},
        {"{\"b\":{\"$type\":\"blob\",\"ref\":\"" LINK_A "\",\"mimeType\":\"image/png\",\"size\":1}}", ERR_INVALID,
         "blob ref as a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cbor_doc *doc = cbor_doc_new();
        cbor_item *it = NULL;
        err_t e;
        err_clear(&e);
        cr_assert_eq(cbor_from_json(doc, cases[i].json, strlen(cases[i].json), &it, &e), ERR_OK, "%s: %s", cases[i].why, e.msg);
        err_code rc = cbor_check_record(it, &e);
        cr_assert_eq(rc, cases[i].want, "%s: got %s: %s", cases[i].why, err_code_name(rc), e.msg);
        cbor_doc_free(doc);
    }
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    err_t e;
    const char *j = "{\"a\":[{\"$type\":\"\"}]}";
    cr_assert_eq(cbor_from_json(doc, j, strlen(j), &it, &e), ERR_OK);
    cr_assert_eq(cbor_check_record(it, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "$.a[0]"), "%s", e.msg);
    cbor_doc_free(doc);
}

Test(cbor, jansson_variants_match_the_text_variants) {
    json_t *v = json_pack("{s:i, s:[s, b, n], s:{s:s}, s:{s:s}}", "n", 42, "l", "x", 1, "lnk", "$link", LINK_A, "by", "$bytes",
                          "AAEC");
    cr_assert_not_null(v);
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    err_t e;
    err_clear(&e);
    cr_assert_eq(cbor_from_jansson(doc, v, &it, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(cbor_map_get(it, "by")->type, CBOR_BYTES);
    cr_assert_eq(cbor_map_get(it, "lnk")->type, CBOR_CID);
    json_t *back = cbor_to_jansson(it, &e);
    cr_assert_not_null(back, "%s", e.msg);
    cr_assert(json_equal(back, v));
    /* jansson keeps insertion order, which is canonical */
    char *dumped = json_dumps(back, JSON_COMPACT);
    char *ours = to_json_str(it);
    cr_assert_str_eq(dumped, ours);
    free(dumped);
    free(ours);
    json_decref(back);
    json_decref(v);

    json_t *f = json_pack("{s:f}", "x", 1.5);
    cr_assert_eq(cbor_from_jansson(doc, f, &it, &e), ERR_INVALID);
    cr_assert_null(it);
    json_decref(f);
    cbor_doc_free(doc);
}
