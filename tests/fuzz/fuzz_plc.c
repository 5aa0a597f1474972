/* fuzz_plc.c — libFuzzer harness for did:plc operations and audit logs (src/encoding/plc_op.c,
 * plc_log.c). Usually the input is JSON: an array is validated as an audit log (and each
 * element checked as a log entry), an object as a log entry and as an operation. An operation
 * that parses must survive JSON → op → JSON → op with the same DAG-CBOR encoding.
 * An input starting with byte 0x01 instead describes a log to build: a mutated JSON op no longer
 * matches its signature, so this is how the chain rules (forks, nullification, the recovery
 * window, key priority, tombstones) see inputs — every op is really signed, by one of four
 * fixed test keys the input picks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdsmove/plc.h"
#include "pdsmove/keys.h"

static void one_op(const json_t *j) {
    err_t e = {0};
    plc_op op;
    if (plc_op_from_json(&op, j, &e) != ERR_OK) return;
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    err_code ra = plc_op_encode_signed(&op, &a, &e);
    json_t *again = plc_op_to_json(&op, &e);
    if (again) {
        plc_op op2;
        if (plc_op_from_json(&op2, again, &e) != ERR_OK) {
            fprintf(stderr, "fuzz_plc: plc_op_to_json wrote an op plc_op_from_json refuses: %s\n", e.msg);
            abort();
        }
        if (plc_op_encode_signed(&op2, &b, &e) != ra || (ra == ERR_OK && (a.len != b.len || memcmp(a.data, b.data, a.len)))) {
            fprintf(stderr, "fuzz_plc: the op encodes differently after a JSON round trip\n");
            abort();
        }
        plc_op_free(&op2);
        json_decref(again);
    }
    buf_free(&a);
    buf_free(&b);
    buf_t u;
    buf_init(&u, 0);
    (void)plc_op_encode_unsigned(&op, &u, &e);
    buf_free(&u);
    char cs[CID_STR_MAX], did[PLC_DID_MAX];
    (void)plc_op_cid_str(&op, cs, &e);
    if (plc_op_genesis_did(&op, did, &e) == ERR_OK && !plc_did_is_valid(did)) abort();
    (void)plc_op_check_directory_limits(&op, &e);
    const char *keys[PLC_MAX_LIST + 2];
    size_t n = plc_op_rotation_keys(&op, keys, PLC_MAX_LIST + 2), idx;
    if (op.sig) (void)plc_op_find_signer(&op, keys, n, &idx, &e);
    plc_op norm;
    if (plc_op_normalize(&op, &norm, &e) == ERR_OK) plc_op_free(&norm);
    (void)plc_op_vmethod(&op, "atproto");
    (void)plc_op_service(&op, "atproto_pds");
    (void)plc_op_handle(&op);
    plc_op_free(&op);
}

#define LOG_KEYS 4
#define LOG_MAX_OPS 12

static key_priv log_keys[LOG_KEYS];
static char log_did_keys[LOG_KEYS][KEY_DID_MAX];

/* 4 bytes per op: b0 = type (bit 0-1: 3 = tombstone), nullified claim (bit 2), rotation key
 * set (bits 4-7, a mask over the four keys); b1 = which earlier op is prev; b2 = signing key;
 * b3 = minutes after the previous entry's createdAt, in steps of 30 (0 = the same instant). */
static void built_log(const uint8_t *p, size_t size) {
    err_t e = {0};
    if (!log_did_keys[0][0]) {
        for (int k = 0; k < LOG_KEYS; k++) {
            uint8_t priv[KEY_PRIV_BYTES] = {0};
            priv[KEY_PRIV_BYTES - 1] = (uint8_t)(k + 1);
            if (key_priv_from_bytes(&log_keys[k], KEY_K256, priv, &e) ||
                !key_pub_to_did_key(&log_keys[k].pub, log_did_keys[k], sizeof log_did_keys[k]))
                abort();
        }
    }
    size_t n = size / 4 > LOG_MAX_OPS ? LOG_MAX_OPS : size / 4;
    if (n == 0) return;
    char cids[LOG_MAX_OPS][CID_STR_MAX], did[PLC_DID_MAX] = "";
    json_t *log = json_array();
    int64_t t_ms = 1700000000000;
    for (size_t i = 0; i < n; i++, p += 4) {
        plc_op op;
        bool tomb = i > 0 && (p[0] & 3) == 3;
        plc_op_init(&op, tomb ? PLC_OP_TOMBSTONE : PLC_OP_REGULAR);
        unsigned mask = (p[0] >> 4) & 0xF;
        for (int k = 0; !tomb && k < LOG_KEYS; k++)
            if (mask & (1u << k) && plc_op_add_rotation_key(&op, log_did_keys[k], &e)) abort();
        if (!tomb && (plc_op_set_vmethod(&op, "atproto", log_did_keys[0], &e) ||
                      plc_op_add_also_known_as(&op, "at://alice.test", &e) ||
                      plc_op_set_service(&op, "atproto_pds", "AtprotoPersonalDataServer", "https://pds.test", &e)))
            abort();
        if (plc_op_set_prev(&op, i ? cids[p[1] % i] : NULL, &e) || plc_op_sign(&op, &log_keys[p[2] % LOG_KEYS], &e) ||
            plc_op_cid_str(&op, cids[i], &e))
            abort();
        if (i == 0 && plc_op_genesis_did(&op, did, &e)) abort();
        t_ms += (int64_t)p[3] * 30 * 60 * 1000;
        time_t secs = (time_t)(t_ms / 1000);
        struct tm tm;
        char when[40];
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        json_t *ent = json_pack("{s:s, s:o, s:s, s:b, s:s}", "did", did, "operation", plc_op_to_json(&op, &e), "cid",
                                cids[i], "nullified", (p[0] & 4) != 0, "createdAt", when);
        if (!ent || json_array_append_new(log, ent)) abort();
        plc_op_free(&op);
    }
    plc_state st;
    size_t bad;
    if (plc_log_validate(log, did, &st, &bad, &e) == ERR_OK) {
        if (st.n_ops != n || st.head_index >= n || st.n_nullified >= n || strcmp(st.did, did)) {
            fprintf(stderr, "fuzz_plc: a valid log's state is inconsistent (%zu ops, head %zu, %zu nullified)\n", st.n_ops,
                    st.head_index, st.n_nullified);
            abort();
        }
        plc_state_free(&st);
    } else if (bad != SIZE_MAX && bad >= n) {
        abort();
    }
    json_decref(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_t e = {0};
    if (size > 0 && data[0] == 0x01) {
        built_log(data + 1, size - 1);
        return 0;
    }
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!j) return 0;
    if (json_is_array(j)) {
        plc_state st;
        size_t bad;
        plc_state_init(&st);
        const char *did = json_string_value(json_object_get(json_array_get(j, 0), "did"));
        if (plc_log_validate(j, did, &st, &bad, &e) == ERR_OK) plc_state_free(&st);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            (void)plc_log_entry_check(v, &e);
            one_op(json_object_get(v, "operation"));
        }
    } else if (json_is_object(j)) {
        (void)plc_log_entry_check(j, &e);
        one_op(j);
        one_op(json_object_get(j, "operation"));
    } else if (json_is_string(j)) {
        int64_t ms;
        (void)plc_parse_datetime(json_string_value(j), &ms, &e);
        (void)plc_did_is_valid(json_string_value(j));
    }
    json_decref(j);
    return 0;
}
