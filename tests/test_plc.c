/* test_plc.c — did:plc operations and audit-log validation: every fixture log (valid ones
 * accepted with the state they imply, invalid ones rejected at the right op for the right
 * reason), the known-bad CID/DID lists, and logs built here with fresh keys (signing,
 * tampering, recovery inside/outside 72 h, tombstones, nullification bookkeeping). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdsmove/cbor.h"
#include "pdsmove/plc.h"

#define PLC_DIR PDSMOVE_FIXTURES "/plc"

/* ------------------------------------------------------------------ helpers */

static json_t *load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "%s: %s (line %d)", path, je.text, je.line);
    return j;
}

static json_t *load_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", PLC_DIR, name);
    return load_json(path);
}

/* Sorted names of fixture files "log_*.json"; *n set. Caller frees each and the array. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static char **list_logs(size_t *n) {
    DIR *d = opendir(PLC_DIR);
    cr_assert_not_null(d, "cannot open %s", PLC_DIR);
    char **v = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "log_", 4) || l < 9 || strcmp(de->d_name + l - 5, ".json")) continue;
        v = realloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static bool is_invalid_name(const char *name) { return !strncmp(name, "log_invalid_", 12); }

/* Compares the state with what the log itself says about its last non-nullified op. */
static void assert_state_matches_log(const char *name, const json_t *log, const plc_state *st) {
    size_t n = json_array_size(log), nullified = 0, head = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (json_is_true(json_object_get(json_array_get(log, i), "nullified"))) nullified++;
        else head = i;
    }
    cr_assert_neq(head, SIZE_MAX, "%s: no non-nullified entry", name);
    const json_t *h = json_array_get(log, head), *op = json_object_get(h, "operation");
    cr_assert_eq(st->n_ops, n, "%s: n_ops %zu, log has %zu", name, st->n_ops, n);
    cr_assert_eq(st->n_nullified, nullified, "%s: n_nullified %zu, log says %zu", name, st->n_nullified, nullified);
    cr_assert_eq(st->head_index, head, "%s: head %zu, expected %zu", name, st->head_index, head);
    cr_assert_str_eq(st->did, json_string_value(json_object_get(h, "did")), "%s: did", name);
    cr_assert_str_eq(st->last_cid, json_string_value(json_object_get(h, "cid")), "%s: last cid", name);
    cr_assert_str_eq(st->last_created_at, json_string_value(json_object_get(h, "createdAt")), "%s: createdAt", name);
    const char *type = json_string_value(json_object_get(op, "type"));
    if (!strcmp(type, "plc_tombstone")) {
        cr_assert(st->tombstoned, "%s: head is a tombstone but state is not tombstoned", name);
        cr_assert_eq(st->op.n_rotation_keys, 0, "%s", name);
        return;
    }
    cr_assert_not(st->tombstoned, "%s: tombstoned", name);
    if (!strcmp(type, "create")) return; /* covered by legacy_create_is_normalised */
    const json_t *rk = json_object_get(op, "rotationKeys"), *aka = json_object_get(op, "alsoKnownAs");
    cr_assert_eq(st->op.n_rotation_keys, json_array_size(rk), "%s: rotation key count", name);
    for (size_t i = 0; i < json_array_size(rk); i++)
        cr_assert_str_eq(st->op.rotation_keys[i], json_string_value(json_array_get(rk, i)), "%s: rotation key %zu", name, i);
    cr_assert_eq(st->op.n_also_known_as, json_array_size(aka), "%s: alsoKnownAs count", name);
    for (size_t i = 0; i < json_array_size(aka); i++)
        cr_assert_str_eq(st->op.also_known_as[i], json_string_value(json_array_get(aka, i)), "%s: aka %zu", name, i);
    const json_t *pds = json_object_get(json_object_get(op, "services"), "atproto_pds");
    const plc_service *svc = plc_op_service(&st->op, "atproto_pds");
    if (pds) {
        cr_assert_not_null(svc, "%s: no atproto_pds", name);
        cr_assert_str_eq(svc->endpoint, json_string_value(json_object_get(pds, "endpoint")), "%s: endpoint", name);
    } else {
        cr_assert_null(svc, "%s: unexpected atproto_pds", name);
    }
    const json_t *vm = json_object_get(json_object_get(op, "verificationMethods"), "atproto");
    const char *key = plc_op_vmethod(&st->op, "atproto");
    if (vm) cr_assert_str_eq(key, json_string_value(vm), "%s: atproto key", name);
    else cr_assert_null(key, "%s: unexpected atproto key", name);
}

/* Validates a fixture; returns the state (caller frees) and asserts success. */
static void validate_ok(const char *name, plc_state *st) {
    json_t *log = load_fixture(name);
    err_t e;
    err_clear(&e);
    size_t bad = 0;
    err_code rc = plc_log_validate(log, NULL, st, &bad, &e);
    cr_assert_eq(rc, ERR_OK, "%s: rejected at #%zu: %s", name, bad, e.msg);
    json_decref(log);
}

/* ------------------------------------------------------------------ fixture logs */

Test(plc_log, every_valid_fixture_log_is_accepted_with_the_state_it_implies) {
    size_t n, checked = 0;
    char **names = list_logs(&n);
    for (size_t i = 0; i < n; i++) {
        if (is_invalid_name(names[i])) continue;
        json_t *log = load_fixture(names[i]);
        plc_state st;
        err_t e;
        err_clear(&e);
        size_t bad = 0;
        err_code rc = plc_log_validate(log, NULL, &st, &bad, &e);
        cr_assert_eq(rc, ERR_OK, "%s: rejected at #%zu: %s", names[i], bad, e.msg);
        assert_state_matches_log(names[i], log, &st);
        /* the caller's expected DID is enforced */
        plc_state st2;
        rc = plc_log_validate(log, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", &st2, &bad, &e);
        cr_assert_eq(rc, ERR_MISMATCH, "%s: wrong expected DID accepted", names[i]);
        cr_assert_eq(bad, 0, "%s", names[i]);
        plc_state_free(&st);
        json_decref(log);
        checked++;
    }
    cr_assert_geq(checked, 8, "only %zu valid fixture logs found", checked);
    free_list(names, n);
}

static const struct {
    const char *name;
    size_t index;
    const char *keyword;
} invalid_cases[] = {
    {"log_invalid_nullification_reused_key.json", 2, "higher priority"},
    {"log_invalid_sig_b64_newline.json", 0, "base64url"},
    {"log_invalid_sig_b64_padding_chars.json", 0, "padding"},
    {"log_invalid_sig_der.json", 0, "signature does not verify"},
    {"log_invalid_sig_k256_high_s.json", 0, "high-S"},
    {"log_invalid_sig_p256_high_s.json", 0, "high-S"},
    {"log_invalid_update_nullified.json", 4, "nullified operation cannot be built upon"},
};

Test(plc_log, every_invalid_fixture_log_is_rejected_at_the_bad_op_for_the_expected_reason) {
    size_t n, checked = 0;
    char **names = list_logs(&n);
    for (size_t i = 0; i < n; i++) {
        if (!is_invalid_name(names[i])) continue;
        size_t c = 0;
        while (c < sizeof invalid_cases / sizeof *invalid_cases && strcmp(invalid_cases[c].name, names[i])) c++;
        cr_assert_lt(c, sizeof invalid_cases / sizeof *invalid_cases, "%s: no expectation written for this fixture", names[i]);
        json_t *log = load_fixture(names[i]);
        plc_state st;
        err_t e;
        err_clear(&e);
        size_t bad = 0;
        err_code rc = plc_log_validate(log, NULL, &st, &bad, &e);
        cr_assert_neq(rc, ERR_OK, "%s: accepted", names[i]);
        cr_assert_eq(bad, invalid_cases[c].index, "%s: bad index %zu, expected %zu (%s)", names[i], bad,
                     invalid_cases[c].index, e.msg);
        cr_assert_not_null(strstr(e.msg, invalid_cases[c].keyword), "%s: message lacks '%s': %s", names[i],
                           invalid_cases[c].keyword, e.msg);
        char idx[32];
        snprintf(idx, sizeof idx, "operation #%zu", bad);
        cr_assert_not_null(strstr(e.msg, idx), "%s: message does not name the op: %s", names[i], e.msg);
        json_decref(log);
        checked++;
    }
    cr_assert_eq(checked, sizeof invalid_cases / sizeof *invalid_cases, "found %zu invalid fixtures, expected %zu", checked,
                 sizeof invalid_cases / sizeof *invalid_cases);
    free_list(names, n);
}

Test(plc_log, bskyapp_state_has_its_keys_handle_pds_and_last_cid) {
    plc_state st;
    validate_ok("log_bskyapp.json", &st);
    cr_assert_str_eq(st.did, "did:plc:z72i7hdynmk6r22z27h6tvur");
    cr_assert_eq(st.op.n_rotation_keys, 2);
    cr_assert_str_eq(st.op.rotation_keys[0], "did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg");
    cr_assert_str_eq(st.op.rotation_keys[1], "did:key:zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK");
    cr_assert_str_eq(plc_op_handle(&st.op), "bsky.app");
    cr_assert_str_eq(plc_op_service(&st.op, "atproto_pds")->endpoint, "https://bsky.social");
    cr_assert_str_eq(plc_op_vmethod(&st.op, "atproto"), "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF");
    cr_assert_str_eq(st.last_cid, "bafyreihmuvr3frdvd6vmdhucih277prdcfcezf67lasg5oekxoimnunjoq");
    cr_assert_eq(st.n_ops, 2);
    cr_assert_eq(st.n_nullified, 0);
    plc_state_free(&st);
}

Test(plc_log, legacy_create_is_normalised_to_recovery_then_signing_key) {
    json_t *log = load_fixture("log_legacy_dholms.json");
    /* only the legacy genesis: the state comes from the normalised create op */
    json_t *first = json_array();
    json_array_append(first, json_array_get(log, 0));
    plc_state st;
    err_t e;
    err_clear(&e);
    size_t bad;
    cr_assert_eq(plc_log_validate(first, NULL, &st, &bad, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.op.n_rotation_keys, 2);
    cr_assert_str_eq(st.op.rotation_keys[0], "did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg", "recoveryKey first");
    cr_assert_str_eq(st.op.rotation_keys[1], "did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ", "then signingKey");
    cr_assert_str_eq(plc_op_vmethod(&st.op, "atproto"), "did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ");
    cr_assert_eq(st.op.n_also_known_as, 1);
    cr_assert_str_eq(st.op.also_known_as[0], "at://dan.bsky.social");
    const plc_service *s = plc_op_service(&st.op, "atproto_pds");
    cr_assert_not_null(s);
    cr_assert_str_eq(s->type, "AtprotoPersonalDataServer");
    cr_assert_str_eq(s->endpoint, "https://bsky.social");
    cr_assert_str_eq(st.last_cid, "bafyreigcxay6ucqlwowfpu35alyxqtv3c4vsj7gmdtmnidsnqs6nblyarq");
    plc_state_free(&st);
    /* the whole log: four updates after the create, the last rotating keys */
    cr_assert_eq(plc_log_validate(log, "did:plc:yk4dd2qkboz2yv6tpubpc6co", &st, &bad, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(st.n_ops, 5);
    cr_assert_str_eq(plc_op_handle(&st.op), "dholms.xyz");
    cr_assert_str_eq(st.op.rotation_keys[1], "did:key:zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK");
    cr_assert_str_eq(st.last_cid, "bafyreidfrpuegbqd5r56shka4duythb7phb6d7i3bck2dkeb5fjppwd7gi");
    plc_state_free(&st);
    json_decref(first);
    json_decref(log);
}

Test(plc_log, tombstone_ends_the_log_and_a_nullified_tombstone_does_not) {
    plc_state st;
    validate_ok("log_tombstone.json", &st);
    cr_assert(st.tombstoned);
    cr_assert_str_eq(st.last_cid, "bafyreifafe44xylxagcom47xb3lrya5pysu3b7zfjmmmitiuimhmgmerze");
    plc_state_free(&st);
    validate_ok("log_nullified_tombstone.json", &st);
    cr_assert_not(st.tombstoned);
    cr_assert_eq(st.n_nullified, 1);
    cr_assert_str_eq(plc_op_handle(&st.op), "op3");
    plc_state_free(&st);
}

Test(plc_log, recovery_at_exactly_72_hours_and_odd_rotation_key_lists_are_accepted) {
    plc_state st;
    validate_ok("log_nullification_at_exactly_72h.json", &st);
    cr_assert_eq(st.n_nullified, 1);
    cr_assert_str_eq(plc_op_handle(&st.op), "op3");
    plc_state_free(&st);
    validate_ok("log_empty_rotation_keys.json", &st);
    cr_assert_eq(st.op.n_rotation_keys, 0);
    plc_state_free(&st);
    validate_ok("log_duplicate_rotation_keys.json", &st);
    cr_assert_eq(st.op.n_rotation_keys, 2);
    cr_assert_str_eq(st.op.rotation_keys[0], st.op.rotation_keys[1]);
    plc_state_free(&st);
}

/* ------------------------------------------------------------------ known-bad lists */

static json_t *load_string_set(const char *name, size_t min) {
    json_t *arr = load_fixture(name);
    cr_assert(json_is_array(arr), "%s is not an array", name);
    cr_assert_geq(json_array_size(arr), min, "%s: only %zu entries", name, json_array_size(arr));
    json_t *set = json_object();
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        cr_assert_not_null(s, "%s[%zu] is not a string", name, i);
        json_object_set_new(set, s, json_true());
    }
    cr_assert_eq(json_object_size(set), json_array_size(arr), "%s has duplicates", name);
    json_decref(arr);
    return set;
}

Test(plc_known_bad, every_listed_cid_and_did_is_well_formed) {
    json_t *cids = load_string_set("known_bad_cids.json", 1000), *dids = load_string_set("known_bad_dids.json", 1000);
    const char *k;
    json_t *v;
    json_object_foreach(cids, k, v) {
        cid_t c;
        err_t e;
        err_clear(&e);
        cr_assert_eq(cid_parse(&c, k, &e), ERR_OK, "known-bad CID %s: %s", k, e.msg);
        cr_assert_eq(c.codec, CID_CODEC_DAG_CBOR, "%s", k);
        cr_assert_eq(c.hash_code, CID_HASH_SHA256, "%s", k);
        char back[CID_STR_MAX];
        cid_format(&c, back, sizeof back);
        cr_assert_str_eq(back, k, "CID does not round-trip");
    }
    json_object_foreach(dids, k, v) cr_assert(plc_did_is_valid(k), "known-bad DID %s is not a did:plc", k);
    json_decref(cids);
    json_decref(dids);
}

/* The lists name ops/DIDs that plc.directory stored although they are invalid: an entry
 * whose CID is listed must fail the per-entry check, a log whose DID is listed must fail
 * validation, and no fixture that is meant to be valid may appear in either list. */
Test(plc_known_bad, listed_ops_and_dids_in_the_fixtures_are_rejected_and_valid_fixtures_are_not_listed) {
    json_t *cids = load_string_set("known_bad_cids.json", 1000), *dids = load_string_set("known_bad_dids.json", 1000);
    size_t n, bad_ops = 0, bad_logs = 0;
    char **names = list_logs(&n);
    for (size_t f = 0; f < n; f++) {
        json_t *log = load_fixture(names[f]);
        for (size_t i = 0; i < json_array_size(log); i++) {
            json_t *ent = json_array_get(log, i);
            const char *cid = json_string_value(json_object_get(ent, "cid"));
            err_t e;
            err_clear(&e);
            err_code rc = plc_log_entry_check(ent, &e);
            if (json_object_get(cids, cid)) {
                cr_assert(is_invalid_name(names[f]), "%s: valid fixture holds known-bad op %s", names[f], cid);
                cr_assert_neq(rc, ERR_OK, "%s #%zu: known-bad op %s passes the entry check", names[f], i, cid);
                bad_ops++;
            } else if (!is_invalid_name(names[f])) {
                cr_assert_eq(rc, ERR_OK, "%s #%zu: entry check failed: %s", names[f], i, e.msg);
            }
        }
        const char *did = json_string_value(json_object_get(json_array_get(log, 0), "did"));
        if (json_object_get(dids, did)) {
            cr_assert(is_invalid_name(names[f]), "%s: valid fixture's DID %s is known-bad", names[f], did);
            plc_state st;
            size_t bad;
            cr_assert_neq(plc_log_validate(log, NULL, &st, &bad, NULL), ERR_OK, "%s: known-bad DID accepted", names[f]);
            bad_logs++;
        }
        json_decref(log);
    }
    cr_assert_geq(bad_ops, 1, "no fixture op is in known_bad_cids.json; the test checks nothing");
    cr_assert_geq(bad_logs, 1, "no fixture DID is in known_bad_dids.json; the test checks nothing");
    free_list(names, n);
    json_decref(cids);
    json_decref(dids);
}

/* ------------------------------------------------------------------ building ops */

typedef struct {
    key_priv k;
    char did[KEY_DID_MAX];
} tkey;

static void tkey_new(tkey *t, key_type type) {
    err_t e;
    err_clear(&e);
    cr_assert_eq(key_priv_generate(&t->k, type, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(key_pub_to_did_key(&t->k.pub, t->did, sizeof t->did), 0);
}

/* A regular op with the given rotation keys and handle, signed by `signer`. */
static void mk_op(plc_op *op, const char *prev, const tkey *const *rot, size_t n, const char *handle, const tkey *signer) {
    err_t e;
    err_clear(&e);
    plc_op_init(op, PLC_OP_REGULAR);
    for (size_t i = 0; i < n; i++) cr_assert_eq(plc_op_add_rotation_key(op, rot[i]->did, &e), ERR_OK, "%s", e.msg);
    char aka[128];
    snprintf(aka, sizeof aka, "at://%s", handle);
    cr_assert_eq(plc_op_add_also_known_as(op, aka, &e), ERR_OK);
    cr_assert_eq(plc_op_set_vmethod(op, "atproto", rot[0]->did, &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(op, "atproto_pds", "AtprotoPersonalDataServer", "https://pds.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_set_prev(op, prev, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_sign(op, &signer->k, &e), ERR_OK, "%s", e.msg);
}

static void fmt_ms(int64_t ms, char out[40]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)(ms % 1000));
}

/* A synthetic audit log under construction. */
typedef struct {
    json_t *log;
    char did[PLC_DID_MAX];
    char cid[32][CID_STR_MAX];
    size_t n;
} tlog;

#define T0 ((int64_t)1750000000000) /* 2025-06-15 */
#define HOUR_MS ((int64_t)3600 * 1000)

/* Appends op (consumed) created at T0 + at_ms, with the given nullified flag. */
static void tlog_add(tlog *l, plc_op *op, int64_t at_ms, bool nullified) {
    err_t e;
    err_clear(&e);
    cr_assert_lt(l->n, 32);
    if (l->n == 0) {
        l->log = json_array();
        cr_assert_eq(plc_op_genesis_did(op, l->did, &e), ERR_OK, "%s", e.msg);
    }
    cr_assert_eq(plc_op_cid_str(op, l->cid[l->n], &e), ERR_OK, "%s", e.msg);
    char ts[40];
    fmt_ms(T0 + at_ms, ts);
    json_t *ent = json_pack("{s:s, s:o, s:s, s:b, s:s}", "did", l->did, "operation", plc_op_to_json(op, &e), "cid",
                            l->cid[l->n], "nullified", nullified, "createdAt", ts);
    cr_assert_not_null(ent);
    json_array_append_new(l->log, ent);
    l->n++;
    plc_op_free(op);
}

static err_code tlog_validate(const tlog *l, plc_state *st, size_t *bad, err_t *e) {
    err_clear(e);
    return plc_log_validate(l->log, l->did, st, bad, e);
}

Test(plc_op, built_genesis_op_signs_verifies_and_yields_a_did_that_validates) {
    key_type types[] = {KEY_K256, KEY_P256};
    for (size_t t = 0; t < 2; t++) {
        tkey k;
        tkey_new(&k, types[t]);
        const tkey *rot[] = {&k};
        plc_op op;
        mk_op(&op, NULL, rot, 1, "alice.example.com", &k);
        err_t e;
        err_clear(&e);
        cr_assert_eq(strlen(op.sig), 86, "%s: sig length", key_type_name(types[t]));
        cr_assert_eq(plc_op_verify_sig(&op, k.did, &e), ERR_OK, "%s: %s", key_type_name(types[t]), e.msg);
        char did[PLC_DID_MAX];
        cr_assert_eq(plc_op_genesis_did(&op, did, &e), ERR_OK, "%s", e.msg);
        cr_assert(plc_did_is_valid(did), "%s", did);
        /* JSON round trip keeps the exact signed bytes */
        json_t *j = plc_op_to_json(&op, &e);
        plc_op back;
        cr_assert_eq(plc_op_from_json(&back, j, &e), ERR_OK, "%s", e.msg);
        buf_t a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        cr_assert_eq(plc_op_encode_signed(&op, &a, &e), ERR_OK);
        cr_assert_eq(plc_op_encode_signed(&back, &b, &e), ERR_OK);
        cr_assert(a.len == b.len && !memcmp(a.data, b.data, a.len), "round trip changed the op");
        buf_free(&a);
        buf_free(&b);
        plc_op_free(&back);
        json_decref(j);
        tlog l = {0};
        tlog_add(&l, &op, 0, false);
        plc_state st;
        size_t bad;
        cr_assert_eq(tlog_validate(&l, &st, &bad, &e), ERR_OK, "%s", e.msg);
        cr_assert_str_eq(st.did, l.did);
        cr_assert_str_eq(st.op.rotation_keys[0], k.did);
        cr_assert_str_eq(plc_op_handle(&st.op), "alice.example.com");
        plc_state_free(&st);
        json_decref(l.log);
        key_priv_wipe(&k.k);
    }
}

Test(plc_op, prev_is_encoded_as_plain_text_and_sig_is_left_out_of_the_signed_bytes) {
    tkey k;
    tkey_new(&k, KEY_K256);
    const tkey *rot[] = {&k};
    plc_op op;
    mk_op(&op, "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm", rot, 1, "a.test", &k);
    err_t e;
    err_clear(&e);
    buf_t b;
    buf_init(&b, 0);
    cr_assert_eq(plc_op_encode_unsigned(&op, &b, &e), ERR_OK, "%s", e.msg);
    cbor_doc *doc;
    cr_assert_eq(cbor_decode(b.data, b.len, &doc, &e), ERR_OK, "our encoding is not canonical DAG-CBOR: %s", e.msg);
    const cbor_item *root = cbor_doc_root(doc);
    const cbor_item *prev = cbor_map_get(root, "prev");
    cr_assert_not_null(prev);
    cr_assert_eq(prev->type, CBOR_TEXT, "prev must be a text string, not a tag-42 CID");
    cr_assert_null(cbor_map_get(root, "sig"));
    cr_assert_eq(root->v.map.len, 6);
    cbor_doc_free(doc);
    buf_free(&b);
    plc_op_free(&op);
    key_priv_wipe(&k.k);
}

Test(plc_op, tampered_op_and_op_signed_by_a_non_rotation_key_fail) {
    tkey a, b;
    tkey_new(&a, KEY_K256);
    tkey_new(&b, KEY_P256);
    const tkey *rot[] = {&a};
    err_t e;
    err_clear(&e);
    /* tampered after signing */
    plc_op op;
    mk_op(&op, NULL, rot, 1, "alice.test", &a);
    free(op.also_known_as[0]);
    op.also_known_as[0] = strdup("at://mallory.test");
    cr_assert_eq(plc_op_verify_sig(&op, a.did, &e), ERR_MISMATCH, "tampered op verified: %s", e.msg);
    tlog l = {0};
    tlog_add(&l, &op, 0, false);
    plc_state st;
    size_t bad = 99;
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 0);
    cr_assert_not_null(strstr(e.msg, "signature"), "%s", e.msg);
    json_decref(l.log);
    /* signed by b, which is not among its rotation keys */
    mk_op(&op, NULL, rot, 1, "alice.test", &b);
    cr_assert_eq(plc_op_verify_sig(&op, a.did, &e), ERR_MISMATCH);
    cr_assert_eq(plc_op_verify_sig(&op, b.did, &e), ERR_OK, "%s", e.msg);
    memset(&l, 0, sizeof l);
    tlog_add(&l, &op, 0, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 0);
    cr_assert_not_null(strstr(e.msg, "signature does not verify"), "%s", e.msg);
    json_decref(l.log);
    /* an update signed by a key that is not in the previous op's rotation keys */
    mk_op(&op, NULL, rot, 1, "alice.test", &a);
    memset(&l, 0, sizeof l);
    tlog_add(&l, &op, 0, false);
    const tkey *rot_b[] = {&b};
    mk_op(&op, l.cid[0], rot_b, 1, "alice.test", &b);
    tlog_add(&l, &op, 1000, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1, "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "signature"), "%s", e.msg);
    json_decref(l.log);
    key_priv_wipe(&a.k);
    key_priv_wipe(&b.k);
}

Test(plc_log, tampered_fixture_entry_is_caught_by_cid_then_by_signature) {
    json_t *log = load_fixture("log_bskyapp.json");
    json_t *op = json_object_get(json_array_get(log, 1), "operation");
    json_array_set_new(json_object_get(op, "alsoKnownAs"), 0, json_string("at://evil.example"));
    plc_state st;
    err_t e;
    err_clear(&e);
    size_t bad = 99;
    cr_assert_neq(plc_log_validate(log, NULL, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1);
    cr_assert_not_null(strstr(e.msg, "CID mismatch"), "%s", e.msg);
    /* a forger who also fixes the cid field is stopped by the signature */
    plc_op parsed;
    cr_assert_eq(plc_op_from_json(&parsed, op, &e), ERR_OK, "%s", e.msg);
    char cid[CID_STR_MAX];
    cr_assert_eq(plc_op_cid_str(&parsed, cid, &e), ERR_OK);
    plc_op_free(&parsed);
    json_object_set_new(json_array_get(log, 1), "cid", json_string(cid));
    cr_assert_neq(plc_log_validate(log, NULL, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1);
    cr_assert_not_null(strstr(e.msg, "signature does not verify"), "%s", e.msg);
    json_decref(log);
}

Test(plc_op, signature_must_be_strict_base64url_of_64_bytes) {
    tkey k;
    tkey_new(&k, KEY_K256);
    const tkey *rot[] = {&k};
    plc_op op;
    mk_op(&op, NULL, rot, 1, "a.test", &k);
    err_t e;
    char good[100];
    snprintf(good, sizeof good, "%s", op.sig);
    static const char *const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    /* the last of 86 characters carries 2 data bits and 4 zero bits: set one of those */
    char *last = &op.sig[85];
    size_t v = (size_t)(strchr(b64, *last) - b64);
    cr_assert_eq(v & 0xf, 0, "the encoder left trailing bits set");
    *last = b64[v | 1];
    err_clear(&e);
    cr_assert_eq(plc_op_verify_sig(&op, k.did, &e), ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "trailing bits"), "%s", e.msg);
    static const struct { const char *before, *after; } variants[] = {{"", "=="}, {"", "\n"}, {" ", ""}, {"", "AA"}};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s%s%s", variants[i].before, good, variants[i].after);
        free(op.sig);
        op.sig = strdup(buf);
        err_clear(&e);
        cr_assert_eq(plc_op_verify_sig(&op, k.did, &e), ERR_INVALID, "variant %zu accepted", i);
        cr_assert_not_null(strstr(e.msg, "sig"), "variant %zu: %s", i, e.msg);
    }
    /* the good one still verifies; a standard-alphabet sig does not */
    free(op.sig);
    op.sig = strdup(good);
    cr_assert_eq(plc_op_verify_sig(&op, k.did, &e), ERR_OK, "%s", e.msg);
    for (char *p = op.sig; *p; p++) *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    if (strcmp(op.sig, good)) cr_assert_eq(plc_op_verify_sig(&op, k.did, &e), ERR_INVALID);
    plc_op_free(&op);
    key_priv_wipe(&k.k);
}

/* ------------------------------------------------------------------ recovery rules */

/* The README's scenario: op5 forks at op3 (nullifies op4); op7 forks at op1 (nullifies
 * op2..op6). Rotation keys [k0, k1, k2]; ordinary ops signed by k2. */
Test(plc_log, nontrivial_nullification_marks_exactly_the_superseded_ops) {
    tkey k[3];
    for (int i = 0; i < 3; i++) tkey_new(&k[i], i == 1 ? KEY_P256 : KEY_K256);
    const tkey *rot[] = {&k[0], &k[1], &k[2]};
    static const struct { int prev; int signer; bool nullified; } plan[] = {
        {-1, 2, false}, {0, 2, false}, {1, 2, true}, {2, 2, true}, {3, 2, true}, {3, 1, true}, {5, 2, true}, {1, 0, false},
    };
    tlog l = {0};
    for (size_t i = 0; i < 8; i++) {
        plc_op op;
        char handle[16];
        snprintf(handle, sizeof handle, "op%zu", i);
        mk_op(&op, plan[i].prev < 0 ? NULL : l.cid[plan[i].prev], rot, 3, handle, &k[plan[i].signer]);
        tlog_add(&l, &op, (int64_t)i * HOUR_MS, plan[i].nullified);
    }
    plc_state st;
    err_t e;
    size_t bad;
    cr_assert_eq(tlog_validate(&l, &st, &bad, &e), ERR_OK, "rejected at #%zu: %s", bad, e.msg);
    cr_assert_eq(st.n_nullified, 5);
    cr_assert_eq(st.head_index, 7);
    cr_assert_str_eq(plc_op_handle(&st.op), "op7");
    plc_state_free(&st);
    /* after op6 only op4 is nullified */
    json_t *prefix = json_array();
    for (size_t i = 0; i < 7; i++) {
        json_t *ent = json_deep_copy(json_array_get(l.log, i));
        json_object_set_new(ent, "nullified", json_boolean(i == 4));
        json_array_append_new(prefix, ent);
    }
    cr_assert_eq(plc_log_validate(prefix, NULL, &st, &bad, &e), ERR_OK, "prefix rejected at #%zu: %s", bad, e.msg);
    cr_assert_eq(st.n_nullified, 1);
    cr_assert_str_eq(plc_op_handle(&st.op), "op6");
    plc_state_free(&st);
    /* the log's flags must agree with the chain */
    json_object_set_new(json_array_get(l.log, 3), "nullified", json_false());
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 3, "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "nullified=false"), "%s", e.msg);
    json_decref(prefix);
    json_decref(l.log);
    for (int i = 0; i < 3; i++) key_priv_wipe(&k[i].k);
}

/* genesis [k0, k1] signed by k1; op1 by k1 at +1 h; op2 forks at op0 signed by `signer`,
 * `after_ms` after op1. */
static err_code recovery_case(int signer, int64_t after_ms, size_t *bad, err_t *e) {
    tkey k[2];
    tkey_new(&k[0], KEY_K256);
    tkey_new(&k[1], KEY_K256);
    const tkey *rot[] = {&k[0], &k[1]};
    tlog l = {0};
    plc_op op;
    mk_op(&op, NULL, rot, 2, "op0", &k[1]);
    tlog_add(&l, &op, 0, false);
    mk_op(&op, l.cid[0], rot, 2, "op1", &k[1]);
    tlog_add(&l, &op, HOUR_MS, true);
    mk_op(&op, l.cid[0], rot, 2, "op2", &k[signer]);
    tlog_add(&l, &op, HOUR_MS + after_ms, false);
    plc_state st;
    err_code rc = tlog_validate(&l, &st, bad, e);
    if (!rc) plc_state_free(&st);
    json_decref(l.log);
    key_priv_wipe(&k[0].k);
    key_priv_wipe(&k[1].k);
    return rc;
}

Test(plc_log, recovery_needs_a_higher_priority_key_within_72_hours) {
    err_t e;
    size_t bad;
    cr_assert_eq(recovery_case(0, 72 * HOUR_MS, &bad, &e), ERR_OK, "exactly 72 h: #%zu %s", bad, e.msg);
    cr_assert_eq(recovery_case(0, 1, &bad, &e), ERR_OK, "1 ms later: #%zu %s", bad, e.msg);
    cr_assert_neq(recovery_case(0, 72 * HOUR_MS + 1, &bad, &e), ERR_OK, "72 h + 1 ms accepted");
    cr_assert_eq(bad, 2);
    cr_assert_not_null(strstr(e.msg, "72-hour"), "%s", e.msg);
    cr_assert_neq(recovery_case(1, HOUR_MS, &bad, &e), ERR_OK, "same-priority key accepted");
    cr_assert_eq(bad, 2);
    cr_assert_not_null(strstr(e.msg, "higher priority"), "%s", e.msg);
    cr_assert_neq(recovery_case(0, 0, &bad, &e), ERR_OK, "recovery at the same instant accepted");
    cr_assert_not_null(strstr(e.msg, "createdAt"), "%s", e.msg);
}

Test(plc_log, nothing_follows_a_tombstone_and_the_chain_must_start_with_one_genesis) {
    tkey k;
    tkey_new(&k, KEY_K256);
    const tkey *rot[] = {&k};
    err_t e;
    err_clear(&e);
    plc_state st;
    size_t bad;
    /* genesis, tombstone, then an update on the tombstone */
    tlog l = {0};
    plc_op op;
    mk_op(&op, NULL, rot, 1, "op0", &k);
    tlog_add(&l, &op, 0, false);
    plc_op_init(&op, PLC_OP_TOMBSTONE);
    cr_assert_eq(plc_op_set_prev(&op, l.cid[0], &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &k.k, &e), ERR_OK, "%s", e.msg);
    tlog_add(&l, &op, 1000, false);
    cr_assert_eq(tlog_validate(&l, &st, &bad, &e), ERR_OK, "%s", e.msg);
    cr_assert(st.tombstoned);
    plc_state_free(&st);
    mk_op(&op, l.cid[1], rot, 1, "op2", &k);
    tlog_add(&l, &op, 2000, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 2);
    cr_assert_not_null(strstr(e.msg, "tombstone"), "%s", e.msg);
    json_decref(l.log);
    /* a second genesis */
    memset(&l, 0, sizeof l);
    mk_op(&op, NULL, rot, 1, "op0", &k);
    tlog_add(&l, &op, 0, false);
    mk_op(&op, NULL, rot, 1, "op1", &k);
    tlog_add(&l, &op, 1000, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1);
    cr_assert_not_null(strstr(e.msg, "genesis"), "%s", e.msg);
    json_decref(l.log);
    /* the log starting with a non-genesis op (drop entry 0) */
    json_t *fork = load_fixture("log_bskyapp.json");
    json_array_remove(fork, 0);
    cr_assert_neq(plc_log_validate(fork, NULL, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 0);
    cr_assert_not_null(strstr(e.msg, "not a genesis"), "%s", e.msg);
    json_decref(fork);
    /* prev that is not in the log, and an op older than its prev */
    memset(&l, 0, sizeof l);
    mk_op(&op, NULL, rot, 1, "op0", &k);
    tlog_add(&l, &op, 1000, false);
    mk_op(&op, "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm", rot, 1, "op1", &k);
    tlog_add(&l, &op, 2000, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1);
    cr_assert_not_null(strstr(e.msg, "not an earlier operation"), "%s", e.msg);
    json_array_remove(l.log, 1);
    l.n = 1;
    mk_op(&op, l.cid[0], rot, 1, "op1", &k);
    tlog_add(&l, &op, 0, false);
    cr_assert_neq(tlog_validate(&l, &st, &bad, &e), ERR_OK);
    cr_assert_eq(bad, 1);
    cr_assert_not_null(strstr(e.msg, "createdAt"), "%s", e.msg);
    json_decref(l.log);
    key_priv_wipe(&k.k);
}

Test(plc_log, malformed_logs_and_entries_are_rejected_with_a_reason) {
    static const struct { const char *json; size_t index; const char *keyword; } cases[] = {
        {"{}", SIZE_MAX, "not a JSON array"},
        {"[]", SIZE_MAX, "empty"},
        {"[1]", 0, "not a JSON object"},
        {"[{\"did\":\"did:plc:x\",\"cid\":\"b\",\"nullified\":false}]", 0, "createdAt"},
        {"[{\"did\":\"did:plc:x\",\"cid\":\"b\",\"nullified\":false,\"createdAt\":\"yesterday\"}]", 0, "RFC 3339"},
        {"[{\"did\":\"did:plc:x\",\"cid\":\"b\",\"nullified\":false,\"createdAt\":\"2024-01-01T00:00:00Z\","
         "\"operation\":{\"type\":\"plc_magic\"}}]", 0, "unknown operation type"},
        {"[{\"did\":\"did:plc:x\",\"cid\":\"b\",\"nullified\":false,\"createdAt\":\"2024-01-01T00:00:00Z\","
         "\"operation\":{\"type\":\"plc_tombstone\",\"prev\":\"bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm\"}}]",
         0, "not signed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t je;
        json_t *j = json_loads(cases[i].json, 0, &je);
        cr_assert_not_null(j, "case %zu: %s", i, je.text);
        plc_state st;
        err_t e;
        err_clear(&e);
        size_t bad = 7;
        cr_assert_neq(plc_log_validate(j, NULL, &st, &bad, &e), ERR_OK, "case %zu accepted", i);
        cr_assert_eq(bad, cases[i].index, "case %zu: index %zu: %s", i, bad, e.msg);
        cr_assert_not_null(strstr(e.msg, cases[i].keyword), "case %zu: %s", i, e.msg);
        json_decref(j);
    }
}

/* ------------------------------------------------------------------ parsing, limits */

Test(plc_op, json_parsing_is_strict_about_fields_and_types) {
    json_t *log = load_fixture("log_bskyapp.json");
    const json_t *good = json_object_get(json_array_get(log, 0), "operation");
    static const struct { const char *field; const char *value_json; const char *keyword; } cases[] = {
        {"extra", "1", "unknown field"},
        {"rotationKeys", "\"did:key:x\"", "not an array"},
        {"rotationKeys", "[1]", "not a string"},
        {"alsoKnownAs", "{}", "not an array"},
        {"verificationMethods", "[]", "not an object"},
        {"services", "{\"atproto_pds\":{\"type\":\"x\"}}", "endpoint"},
        {"services", "{\"atproto_pds\":{\"type\":\"x\",\"endpoint\":\"y\",\"z\":1}}", "unknown field"},
        {"prev", "\"not-a-cid\"", "not a CID"},
        {"prev", "42", "not a string"},
        {"sig", "null", "not a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *op = json_deep_copy(good);
        json_object_set_new(op, cases[i].field, json_loads(cases[i].value_json, JSON_DECODE_ANY, NULL));
        plc_op p;
        err_t e;
        err_clear(&e);
        cr_assert_neq(plc_op_from_json(&p, op, &e), ERR_OK, "case %zu accepted", i);
        cr_assert_not_null(strstr(e.msg, cases[i].keyword), "case %zu: %s", i, e.msg);
        json_decref(op);
    }
    static const char *const required[] = {"type", "rotationKeys", "verificationMethods", "alsoKnownAs", "services", "prev"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        json_t *op = json_deep_copy(good);
        json_object_del(op, required[i]);
        plc_op p;
        err_t e;
        err_clear(&e);
        cr_assert_neq(plc_op_from_json(&p, op, &e), ERR_OK, "missing %s accepted", required[i]);
        json_decref(op);
    }
    /* more rotation keys than the hard limit */
    json_t *op = json_deep_copy(good);
    json_t *rk = json_object_get(op, "rotationKeys");
    while (json_array_size(rk) <= PLC_MAX_LIST) json_array_append_new(rk, json_string("did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg"));
    plc_op p;
    err_t e;
    cr_assert_eq(plc_op_from_json(&p, op, &e), ERR_LIMIT);
    json_decref(op);
    json_decref(log);
}

Test(plc_op, signing_applies_the_directory_limits) {
    tkey k;
    tkey_new(&k, KEY_K256);
    err_t e;
    err_clear(&e);
    plc_op op;
    plc_op_init(&op, PLC_OP_REGULAR);
    for (int i = 0; i <= PLC_DIR_MAX_ENTRIES; i++) cr_assert_eq(plc_op_add_rotation_key(&op, k.did, &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &k.k, &e), ERR_LIMIT, "11 rotation keys signed");
    cr_assert_null(op.sig);
    plc_op_free(&op);
    plc_op_init(&op, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_add_rotation_key(&op, "did:key:zNotAKey", &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &k.k, &e), ERR_INVALID, "unparseable rotation key signed");
    plc_op_free(&op);
    plc_op_init(&op, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_add_rotation_key(&op, k.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_also_known_as(&op, "at://a.test", &e), ERR_OK);
    cr_assert_eq(plc_op_add_also_known_as(&op, "at://a.test", &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &k.k, &e), ERR_INVALID, "duplicate alsoKnownAs signed");
    cr_assert_not_null(strstr(e.msg, "duplicate"), "%s", e.msg);
    plc_op_free(&op);
    /* an op over 4000 bytes of DAG-CBOR */
    plc_op_init(&op, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_add_rotation_key(&op, k.did, &e), ERR_OK);
    char endpoint[PLC_DIR_MAX_ENDPOINT_LEN + 1];
    memset(endpoint, 'x', PLC_DIR_MAX_ENDPOINT_LEN);
    endpoint[PLC_DIR_MAX_ENDPOINT_LEN] = '\0';
    for (int i = 0; i < PLC_DIR_MAX_ENTRIES; i++) {
        char name[16];
        snprintf(name, sizeof name, "svc%d", i);
        cr_assert_eq(plc_op_set_service(&op, name, "T", endpoint, &e), ERR_OK);
    }
    cr_assert_eq(plc_op_sign(&op, &k.k, &e), ERR_LIMIT, "oversized op signed");
    cr_assert_not_null(strstr(e.msg, "4000"), "%s", e.msg);
    plc_op_free(&op);
    key_priv_wipe(&k.k);
}

Test(plc_op, datetimes_parse_strictly_to_milliseconds) {
    static const struct { const char *s; int64_t ms; } ok[] = {
        {"1970-01-01T00:00:00.000Z", 0},
        {"1970-01-01T00:00:01Z", 1000},
        {"2023-04-12T04:53:57.057Z", 1681275237057},
        {"2024-02-29T12:00:00.5Z", 1709208000500},
        {"2024-02-29T14:00:00.500123+02:00", 1709208000500},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t ms = -1;
        err_t e;
        cr_assert_eq(plc_parse_datetime(ok[i].s, &ms, &e), ERR_OK, "%s: %s", ok[i].s, e.msg);
        cr_assert_eq(ms, ok[i].ms, "%s: %lld", ok[i].s, (long long)ms);
    }
    static const char *const bad[] = {"", "2023-04-12", "2023-04-12 04:53:57Z", "2023-02-29T00:00:00Z",
                                      "2023-13-01T00:00:00Z", "2023-04-12T24:00:00Z", "2023-04-12T04:53:57",
                                      "2023-04-12T04:53:57.Z", "2023-04-12T04:53:57Zjunk", "2023-04-12T04:53:57-00:00"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms;
        cr_assert_eq(plc_parse_datetime(bad[i], &ms, NULL), ERR_INVALID, "'%s' accepted", bad[i]);
    }
}

/* ------------------------------------------------------------------ comparison */

/* A copy of src with its rotation keys replaced by keys[0..n) (unsigned). */
static void with_keys(plc_op *dst, const plc_op *src, const char *const *keys, size_t n) {
    err_t e;
    plc_op_init(dst, PLC_OP_REGULAR);
    for (size_t i = 0; i < n; i++) cr_assert_eq(plc_op_add_rotation_key(dst, keys[i], &e), ERR_OK);
    for (size_t i = 0; i < src->n_also_known_as; i++) cr_assert_eq(plc_op_add_also_known_as(dst, src->also_known_as[i], &e), ERR_OK);
    for (size_t i = 0; i < src->n_vmethods; i++) cr_assert_eq(plc_op_set_vmethod(dst, src->vmethods[i].name, src->vmethods[i].key, &e), ERR_OK);
    for (size_t i = 0; i < src->n_services; i++)
        cr_assert_eq(plc_op_set_service(dst, src->services[i].name, src->services[i].type, src->services[i].endpoint, &e), ERR_OK);
    cr_assert_eq(plc_op_set_prev(dst, src->prev, &e), ERR_OK);
}

Test(plc_op, diff_is_empty_for_the_same_content_whatever_the_signature_and_map_order) {
    tkey a, b;
    tkey_new(&a, KEY_K256);
    tkey_new(&b, KEY_P256);
    const tkey *rot[] = {&a, &b};
    plc_op x, y;
    mk_op(&x, NULL, rot, 2, "alice.example.com", &a);
    err_t e;
    /* same content built the other way round (services and methods inserted in another order), signed by b */
    plc_op_init(&y, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_set_service(&y, "other", "Other", "https://other.example", &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(&x, "other", "Other", "https://other.example", &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(&y, "atproto_pds", "AtprotoPersonalDataServer", "https://pds.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_set_vmethod(&y, "atproto", a.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_rotation_key(&y, a.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_rotation_key(&y, b.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_also_known_as(&y, "at://alice.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&y, &b.k, &e), ERR_OK, "%s", e.msg);
    char out[1024] = "x";
    cr_assert_eq(plc_op_diff(&x, &y, out, sizeof out), 0u, "%s", out);
    cr_assert_str_eq(out, "");
    plc_op_free(&x);
    plc_op_free(&y);
    key_priv_wipe(&a.k);
    key_priv_wipe(&b.k);
}

Test(plc_op, diff_names_every_changed_field) {
    tkey u, p, n;
    tkey_new(&u, KEY_K256);
    tkey_new(&p, KEY_K256);
    tkey_new(&n, KEY_K256);
    const tkey *rot[] = {&u, &n};
    plc_op want, got, head;
    const tkey *hk[] = {&p};
    mk_op(&head, NULL, hk, 1, "alice.example.com", &p);
    char head_cid[CID_STR_MAX];
    err_t e;
    cr_assert_eq(plc_op_cid_str(&head, head_cid, &e), ERR_OK);
    mk_op(&want, head_cid, rot, 2, "alice.example.com", &p);
    char out[1024];

    /* the user's key dropped */
    const char *drop[] = {n.did};
    with_keys(&got, &want, drop, 1);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_ROTATION_KEYS, "%s", out);
    cr_assert(strstr(out, u.did) && strstr(out, "expected at #0) is missing"), "%s", out);
    plc_op_free(&got);
    /* another key put first: reported as an addition, the others keep their relative order */
    const char *first[] = {p.did, u.did, n.did};
    with_keys(&got, &want, first, 3);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_ROTATION_KEYS, "%s", out);
    cr_assert(strstr(out, p.did) && strstr(out, "was added at #0"), "%s", out);
    cr_assert_null(strstr(out, "another order"), "%s", out);
    plc_op_free(&got);
    /* the same keys in another order */
    const char *swap[] = {n.did, u.did};
    with_keys(&got, &want, swap, 2);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_ROTATION_KEYS, "%s", out);
    cr_assert(strstr(out, "rotationKeys are in another order: #0 ") && strstr(out, n.did), "%s", out);
    plc_op_free(&got);
    /* a service added, the PDS endpoint changed, the signing key changed, the handle changed */
    const char *same[] = {u.did, n.did};
    with_keys(&got, &want, same, 2);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), 0u, "%s", out);
    cr_assert_eq(plc_op_set_service(&got, "evil", "AtprotoPersonalDataServer", "https://evil.example", &e), ERR_OK);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_SERVICES, "%s", out);
    cr_assert(strstr(out, "services.evil (AtprotoPersonalDataServer https://evil.example) was added"), "%s", out);
    cr_assert_eq(plc_op_set_service(&got, "atproto_pds", "AtprotoPersonalDataServer", "https://elsewhere.example", &e), ERR_OK);
    cr_assert_eq(plc_op_set_vmethod(&got, "atproto", p.did, &e), ERR_OK);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_SERVICES | PLC_DIFF_VMETHODS, "%s", out);
    cr_assert(strstr(out, "https://elsewhere.example"), "%s", out);
    cr_assert(strstr(out, "verificationMethods.atproto: expected"), "%s", out);
    plc_op_free(&got);
    with_keys(&got, &want, same, 2);
    cr_assert_eq(plc_op_add_also_known_as(&got, "at://mallory.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_ALSO_KNOWN_AS, "%s", out);
    cr_assert(strstr(out, "at://mallory.example.com was added at #1"), "%s", out);
    plc_op_free(&got);
    /* another prev (following another op), and a genesis op instead of an update */
    with_keys(&got, &want, same, 2);
    cr_assert_eq(plc_op_set_prev(&got, NULL, &e), ERR_OK);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_PREV, "%s", out);
    cr_assert(strstr(out, "prev: expected ") && strstr(out, head_cid) && strstr(out, "got null"), "%s", out);
    plc_op_free(&got);
    /* a tombstone instead */
    plc_op_init(&got, PLC_OP_TOMBSTONE);
    cr_assert_eq(plc_op_set_prev(&got, head_cid, &e), ERR_OK);
    cr_assert_eq(plc_op_diff(&want, &got, out, sizeof out), PLC_DIFF_TYPE, "%s", out);
    cr_assert(strstr(out, "expected plc_operation, got plc_tombstone"), "%s", out);
    plc_op_free(&got);
    /* a small buffer truncates, it does not overflow, and the bits are still all there */
    with_keys(&got, &want, drop, 1);
    cr_assert_eq(plc_op_set_service(&got, "evil", "X", "https://evil.example", &e), ERR_OK);
    char tiny[16];
    cr_assert_eq(plc_op_diff(&want, &got, tiny, sizeof tiny), PLC_DIFF_ROTATION_KEYS | PLC_DIFF_SERVICES);
    cr_assert_eq(strlen(tiny), sizeof tiny - 1);
    plc_op_free(&got);
    plc_op_free(&want);
    plc_op_free(&head);
    key_priv_wipe(&u.k);
    key_priv_wipe(&p.k);
    key_priv_wipe(&n.k);
}
