/* plc_submit.c — the one builder, checker and poster of every PLC operation pdsmove makes
 * (see plc_submit.h). The invariant it keeps: nothing reaches the PLC directory that is not,
 * field by field, the operation pdsmove built and showed, signed by a rotation key of the
 * state it follows. A PDS that signs something else (drops the user's key, puts its own key
 * first, adds a service) gets a refusal naming the difference, and nothing is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/identity.h"
#include "pdsmove/plc_submit.h"

static bool listed(const char *const *v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return true;
    return false;
}

static bool has_key(const plc_op *op, const char *k) {
    return listed((const char *const *)op->rotation_keys, op->n_rotation_keys, k);
}

static err_code add_key_once(plc_op *op, const char *k, err_t *e) {
    return has_key(op, k) ? ERR_OK : plc_op_add_rotation_key(op, k, e);
}

static err_code build_keys(const plc_op *base, const plc_change *c, const char *did, plc_op *out, err_t *e) {
    err_code rc = ERR_OK;
    for (size_t i = 0; !rc && i < c->n_first_keys; i++) rc = add_key_once(out, c->first_keys[i], e);
    for (size_t i = 0; !rc && i < base->n_rotation_keys; i++) {
        const char *k = base->rotation_keys[i];
        if (listed(c->drop_keys, c->n_drop_keys, k) || listed(c->last_keys, c->n_last_keys, k)) continue;
        rc = add_key_once(out, k, e);
    }
    for (size_t i = 0; !rc && i < c->n_last_keys; i++) rc = add_key_once(out, c->last_keys[i], e);
    bool touched = c->n_first_keys || c->n_drop_keys || c->n_last_keys;
    if (!rc && touched && out->n_rotation_keys > PLC_SPEC_MAX_ROTATION_KEYS)
        rc = err_set(e, ERR_LIMIT, "%s would have %zu rotation keys; the PLC spec allows %d. Remove one of the others first "
                                   "(`pdsmove plc show %s` lists them)",
                     did, out->n_rotation_keys, PLC_SPEC_MAX_ROTATION_KEYS, did);
    return rc;
}

size_t plc_recommended_keys(const json_t *rec, const char **keys) {
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "rotationKeys"), i, v) {
        if (json_is_string(v) && n < PLC_MAX_LIST) keys[n++] = json_string_value(v);
    }
    return n;
}

err_code plc_change_recommended(const json_t *rec, const char **keys, plc_change *c, err_t *e) {
    memset(c, 0, sizeof *c);
    c->signing_key = json_string_value(json_object_get(json_object_get(rec, "verificationMethods"), "atproto"));
    c->pds_endpoint = json_string_value(json_object_get(json_object_get(json_object_get(rec, "services"), "atproto_pds"), "endpoint"));
    if (!c->signing_key) return err_set(e, ERR_REMOTE, "the new PDS recommends no atproto signing key");
    if (!c->pds_endpoint) return err_set(e, ERR_REMOTE, "the new PDS recommends no atproto_pds endpoint");
    c->last_keys = keys;
    c->n_last_keys = plc_recommended_keys(rec, keys);
    return ERR_OK;
}

err_code plc_submit_build(const plc_op *base, const char *prev_cid, const plc_change *c, const char *did, plc_op *out,
                          err_t *e) {
    plc_op_init(out, PLC_OP_REGULAR);
    if (base->type != PLC_OP_REGULAR) return err_set(e, ERR_USAGE, "the base of a new PLC operation must be a regular one");
    err_code rc = build_keys(base, c, did, out, e);
    if (!rc && c->handle) {
        char aka[PLC_DIR_MAX_AKA_LEN + 8];
        if ((size_t)snprintf(aka, sizeof aka, "at://%s", c->handle) >= sizeof aka)
            rc = err_set(e, ERR_LIMIT, "the handle %.80s... is too long for the PLC directory", c->handle);
        if (!rc) rc = plc_op_add_also_known_as(out, aka, e);
    }
    for (size_t i = 0; !rc && i < base->n_also_known_as; i++)
        if (!c->handle || strncmp(base->also_known_as[i], "at://", 5)) rc = plc_op_add_also_known_as(out, base->also_known_as[i], e);
    for (size_t i = 0; !rc && i < base->n_vmethods; i++)
        rc = plc_op_set_vmethod(out, base->vmethods[i].name, base->vmethods[i].key, e);
    if (!rc && c->signing_key) rc = plc_op_set_vmethod(out, "atproto", c->signing_key, e);
    for (size_t i = 0; !rc && i < base->n_services; i++)
        rc = plc_op_set_service(out, base->services[i].name, base->services[i].type, base->services[i].endpoint, e);
    if (!rc && c->pds_endpoint) rc = plc_op_set_service(out, "atproto_pds", "AtprotoPersonalDataServer", c->pds_endpoint, e);
    if (!rc) rc = plc_op_set_prev(out, prev_cid, e);
    if (!rc) rc = plc_op_check_directory_limits(out, e);
    if (rc) plc_op_free(out);
    return rc;
}

err_code plc_submit_check(const json_t *signed_op, const plc_op *target, const plc_op *authority, size_t *signer,
                          char *cid_out, err_t *e) {
    plc_op op;
    err_code rc = plc_op_from_json(&op, signed_op, e);
    if (rc) {
        err_wrap(e, "the signed PLC operation is malformed (nothing was submitted)");
        return rc;
    }
    char diff[1024];
    unsigned d = op.type == PLC_OP_REGULAR ? plc_op_diff(target, &op, diff, sizeof diff) : PLC_DIFF_TYPE;
    size_t idx = 0;
    if (op.type != PLC_OP_REGULAR)
        rc = err_set(e, ERR_MISMATCH, "the signed operation is not a plc_operation (nothing was submitted)");
    else if (d == PLC_DIFF_PREV)
        rc = err_set(e, ERR_CONFLICT, "the signed operation does not follow the DID's current head %s (prev %s): the identity "
                                      "changed meanwhile; nothing was submitted: run the command again",
                     target->prev ? target->prev : "null", op.prev ? op.prev : "null");
    else if (d)
        rc = err_set(e, ERR_MISMATCH, "the signed operation differs from the one pdsmove built and showed, so nothing was "
                                      "submitted: %s", diff);
    if (!rc) {
        const char *keys[PLC_MAX_LIST];
        size_t n = plc_op_rotation_keys(authority, keys, PLC_MAX_LIST);
        if ((rc = plc_op_find_signer(&op, keys, n, &idx, e)))
            err_wrap(e, "the signed operation is not signed by a current rotation key (nothing was submitted)");
    }
    if (!rc) rc = plc_op_check_directory_limits(&op, e);
    if (!rc && cid_out) rc = plc_op_cid_str(&op, cid_out, e);
    if (!rc && signer) *signer = idx;
    plc_op_free(&op);
    return rc;
}

err_code plc_submit_sign(const plc_op *target, const key_priv *k, json_t **signed_op, err_t *e) {
    *signed_op = NULL;
    plc_op op;
    plc_op_init(&op, PLC_OP_REGULAR);
    err_code rc = plc_op_copy(&op, target, e);
    if (!rc) rc = plc_op_sign(&op, k, e);
    if (!rc && !(*signed_op = plc_op_to_json(&op, e))) rc = e->code;
    plc_op_free(&op);
    return rc;
}

err_code plc_submit_save(journal *j, int64_t run_id, const char *key, const json_t *signed_op, err_t *e) {
    char *text = json_dumps(signed_op, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) return err_set(e, ERR_NOMEM, "out of memory saving the signed PLC operation");
    err_code rc = journal_kv_set(j, run_id, key, text, e);
    free(text);
    return rc;
}

json_t *plc_submit_saved(journal *j, int64_t run_id, const char *key, const plc_op *target, const plc_op *authority,
                         err_t *why) {
    char saved[JOURNAL_VALUE_MAX];
    err_t sub, local;
    if (!why) why = &local;
    if (journal_kv_get(j, run_id, key, saved, sizeof saved, &sub) != ERR_OK) {
        err_set(why, ERR_NOT_FOUND, "no operation was saved");
        return NULL;
    }
    json_error_t je;
    json_t *op = json_loads(saved, 0, &je);
    if (!op) {
        err_set(why, ERR_INVALID, "the saved operation is not JSON: %s", je.text);
        return NULL;
    }
    if (plc_submit_check(op, target, authority, NULL, NULL, why) != ERR_OK) {
        json_decref(op);
        return NULL;
    }
    return op;
}

err_code plc_submit_post(const plc_submit_to *to, const json_t *signed_op, const plc_op *target, const plc_op *authority,
                         err_t *e) {
    err_code rc = plc_submit_check(signed_op, target, authority, NULL, NULL, e);
    if (rc) return rc;
    if (to->via) {
        json_t *body = json_pack("{s:O}", "operation", signed_op);
        if (!body) return err_set(e, ERR_NOMEM, "out of memory");
        rc = pds_procedure(to->via, "com.atproto.identity.submitPlcOperation", body, NULL, e);
        json_decref(body);
        return rc ? err_wrap(e, "submitting the operation through %s", to->via_name ? to->via_name : "the PDS") : ERR_OK;
    }
    const char *url = to->plc_url ? to->plc_url : IDENTITY_DEFAULT_PLC;
    xrpc_client *c = xrpc_client_new(url, to->xo, e);
    if (!c) return e->code;
    char path[PLC_DID_MAX + 8];
    if ((size_t)snprintf(path, sizeof path, "/%s", to->did) >= sizeof path) {
        xrpc_client_free(c);
        return err_set(e, ERR_USAGE, "'%.80s' is not a did:plc", to->did);
    }
    rc = xrpc_post_json(c, path, signed_op, NULL, e);
    xrpc_client_free(c);
    return rc ? err_wrap(e, "posting the operation to the PLC directory %s", url) : ERR_OK;
}
