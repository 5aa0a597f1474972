/* fuzz_plc.c — libFuzzer harness for did:plc operations and audit logs (src/encoding/plc_op.c,
 * plc_log.c). The input is JSON: an array is validated as an audit log (and each element
 * checked as a log entry), an object as a log entry and as an operation. An operation that
 * parses must survive JSON → op → JSON → op with the same DAG-CBOR encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/plc.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_t e = {0};
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
