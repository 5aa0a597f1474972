/* plc_op.c — one did:plc operation: strict parsing from/to the directory's JSON, DAG-CBOR
 * encoding (with and without sig), CID, genesis DID, signing and signature verification.
 * Must never accept a signature that is not strict base64url, 64 bytes, low-S. Pure: no I/O. */
#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/cbor.h"
#include "pdsmove/codec.h"
#include "pdsmove/hash.h"
#include "pdsmove/plc.h"

/* base64url of 64 bytes is 86 characters; anything much longer is not a signature. */
#define SIG_B64_MAX 128
/* Bytes the "sig" entry adds to the DAG-CBOR of an unsigned op: key "sig" (4 bytes),
 * text header (2 bytes), 86 characters. */
#define SIG_CBOR_OVERHEAD (4 + 2 + 86)

/* Return a failing status as is (err_wrap cannot be trusted for the code when e is NULL). */
#define TRY(expr)                        \
    do {                                 \
        err_code try_rc_ = (expr);       \
        if (try_rc_) return try_rc_;     \
    } while (0)

static const char *type_name(plc_op_type t) {
    switch (t) {
    case PLC_OP_REGULAR: return "plc_operation";
    case PLC_OP_TOMBSTONE: return "plc_tombstone";
    case PLC_OP_LEGACY_CREATE: return "create";
    }
    return "?";
}

/* ---------------------------------------------------------------- lifecycle */

void plc_op_init(plc_op *op, plc_op_type type) {
    memset(op, 0, sizeof *op);
    op->type = type;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void plc_op_free(plc_op *op) {
    if (!op) return;
    free_list(op->rotation_keys, op->n_rotation_keys);
    free_list(op->also_known_as, op->n_also_known_as);
    for (size_t i = 0; i < op->n_vmethods; i++) {
        free(op->vmethods[i].name);
        free(op->vmethods[i].key);
    }
    free(op->vmethods);
    for (size_t i = 0; i < op->n_services; i++) {
        free(op->services[i].name);
        free(op->services[i].type);
        free(op->services[i].endpoint);
    }
    free(op->services);
    free(op->signing_key);
    free(op->recovery_key);
    free(op->handle);
    free(op->service);
    free(op->prev);
    free(op->sig);
    plc_op_init(op, op->type);
}

static err_code dup_str(char **dst, const char *s, err_t *e) {
    assert(s != NULL);
    size_t n = strlen(s);
    if (n > PLC_MAX_STR_BYTES)
        return err_set(e, ERR_LIMIT, "string of %zu bytes is over the %d-byte limit", n, PLC_MAX_STR_BYTES);
    char *c = malloc(n + 1);
    if (!c) return err_set(e, ERR_NOMEM, "out of memory copying a %zu-byte string", n);
    memcpy(c, s, n + 1);
    free(*dst);
    *dst = c;
    return ERR_OK;
}

static err_code list_append(char ***v, size_t *n, const char *s, const char *what, err_t *e) {
    if (*n >= PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "%s: more than %d entries", what, PLC_MAX_LIST);
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv) return err_set(e, ERR_NOMEM, "%s: out of memory", what);
    *v = nv;
    nv[*n] = NULL;
    err_code rc = dup_str(&nv[*n], s, e);
    if (rc) {
        err_wrap(e, "%s", what);
        return rc;
    }
    (*n)++;
    return ERR_OK;
}

err_code plc_op_add_rotation_key(plc_op *op, const char *did_key, err_t *e) {
    return list_append(&op->rotation_keys, &op->n_rotation_keys, did_key, "rotationKeys", e);
}

err_code plc_op_add_also_known_as(plc_op *op, const char *uri, err_t *e) {
    return list_append(&op->also_known_as, &op->n_also_known_as, uri, "alsoKnownAs", e);
}

err_code plc_op_set_vmethod(plc_op *op, const char *name, const char *did_key, err_t *e) {
    for (size_t i = 0; i < op->n_vmethods; i++)
        if (!strcmp(op->vmethods[i].name, name)) return dup_str(&op->vmethods[i].key, did_key, e);
    if (op->n_vmethods >= PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "verificationMethods: more than %d entries", PLC_MAX_LIST);
    plc_vmethod *nv = realloc(op->vmethods, (op->n_vmethods + 1) * sizeof *nv);
    if (!nv) return err_set(e, ERR_NOMEM, "verificationMethods: out of memory");
    op->vmethods = nv;
    plc_vmethod *m = &nv[op->n_vmethods];
    memset(m, 0, sizeof *m);
    err_code rc = dup_str(&m->name, name, e);
    if (!rc) rc = dup_str(&m->key, did_key, e);
    if (rc) {
        free(m->name);
        free(m->key);
        err_wrap(e, "verificationMethods.%.40s", name);
        return rc;
    }
    op->n_vmethods++;
    return ERR_OK;
}

err_code plc_op_set_service(plc_op *op, const char *name, const char *type, const char *endpoint, err_t *e) {
    for (size_t i = 0; i < op->n_services; i++) {
        plc_service *s = &op->services[i];
        if (strcmp(s->name, name)) continue;
        TRY(dup_str(&s->type, type, e));
        return dup_str(&s->endpoint, endpoint, e);
    }
    if (op->n_services >= PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "services: more than %d entries", PLC_MAX_LIST);
    plc_service *nv = realloc(op->services, (op->n_services + 1) * sizeof *nv);
    if (!nv) return err_set(e, ERR_NOMEM, "services: out of memory");
    op->services = nv;
    plc_service *s = &nv[op->n_services];
    memset(s, 0, sizeof *s);
    err_code rc = dup_str(&s->name, name, e);
    if (!rc) rc = dup_str(&s->type, type, e);
    if (!rc) rc = dup_str(&s->endpoint, endpoint, e);
    if (rc) {
        free(s->name);
        free(s->type);
        free(s->endpoint);
        err_wrap(e, "services.%.40s", name);
        return rc;
    }
    op->n_services++;
    return ERR_OK;
}

err_code plc_op_set_prev(plc_op *op, const char *prev_cid, err_t *e) {
    free(op->sig);
    op->sig = NULL;
    if (!prev_cid) {
        if (op->type == PLC_OP_TOMBSTONE) return err_set(e, ERR_USAGE, "a tombstone needs a prev CID");
        free(op->prev);
        op->prev = NULL;
        return ERR_OK;
    }
    if (op->type == PLC_OP_LEGACY_CREATE) return err_set(e, ERR_USAGE, "a legacy create op has no prev");
    cid_t c;
    err_code rc = cid_parse(&c, prev_cid, e);
    if (rc) {
        err_wrap(e, "prev '%.80s' is not a CID", prev_cid);
        return rc;
    }
    return dup_str(&op->prev, prev_cid, e);
}

err_code plc_op_copy(plc_op *dst, const plc_op *src, err_t *e) {
    plc_op_init(dst, src->type);
    err_code rc = ERR_OK;
    for (size_t i = 0; !rc && i < src->n_rotation_keys; i++) rc = plc_op_add_rotation_key(dst, src->rotation_keys[i], e);
    for (size_t i = 0; !rc && i < src->n_also_known_as; i++) rc = plc_op_add_also_known_as(dst, src->also_known_as[i], e);
    for (size_t i = 0; !rc && i < src->n_vmethods; i++)
        rc = plc_op_set_vmethod(dst, src->vmethods[i].name, src->vmethods[i].key, e);
    for (size_t i = 0; !rc && i < src->n_services; i++)
        rc = plc_op_set_service(dst, src->services[i].name, src->services[i].type, src->services[i].endpoint, e);
    if (!rc && src->signing_key) rc = dup_str(&dst->signing_key, src->signing_key, e);
    if (!rc && src->recovery_key) rc = dup_str(&dst->recovery_key, src->recovery_key, e);
    if (!rc && src->handle) rc = dup_str(&dst->handle, src->handle, e);
    if (!rc && src->service) rc = dup_str(&dst->service, src->service, e);
    if (!rc && src->prev) rc = dup_str(&dst->prev, src->prev, e);
    if (!rc && src->sig) rc = dup_str(&dst->sig, src->sig, e);
    if (rc) plc_op_free(dst);
    return rc;
}

/* ---------------------------------------------------------------- JSON in */

/* A JSON string without embedded NULs, within the size limit; borrowed. */
static err_code json_str(const json_t *v, const char *what, const char **out, err_t *e) {
    if (!json_is_string(v)) return err_set(e, ERR_INVALID, "%s is not a string", what);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > PLC_MAX_STR_BYTES)
        return err_set(e, ERR_LIMIT, "%s is %zu bytes, over the %d-byte limit", what, n, PLC_MAX_STR_BYTES);
    if (strlen(s) != n) return err_set(e, ERR_INVALID, "%s contains a NUL character", what);
    *out = s;
    return ERR_OK;
}

static err_code json_str_list(const json_t *v, const char *what, char ***list, size_t *n, err_t *e) {
    if (!json_is_array(v)) return err_set(e, ERR_INVALID, "%s is not an array", what);
    if (json_array_size(v) > PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "%s has %zu entries, over the limit of %d", what, json_array_size(v), PLC_MAX_LIST);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s;
        err_code rc = json_str(json_array_get(v, i), what, &s, e);
        if (rc) {
            err_wrap(e, "entry %zu", i);
            return rc;
        }
        TRY(list_append(list, n, s, what, e));
    }
    return ERR_OK;
}

static err_code json_vmethods(plc_op *op, const json_t *v, err_t *e) {
    if (!json_is_object(v)) return err_set(e, ERR_INVALID, "verificationMethods is not an object");
    if (json_object_size(v) > PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "verificationMethods has %zu entries, over the limit of %d",
                       json_object_size(v), PLC_MAX_LIST);
    const char *name;
    const json_t *val;
    json_object_foreach((json_t *)v, name, val) {
        const char *key;
        err_code rc = json_str(val, "value", &key, e);
        if (rc) {
            err_wrap(e, "verificationMethods.%.40s", name);
            return rc;
        }
        TRY(plc_op_set_vmethod(op, name, key, e));
    }
    return ERR_OK;
}

static err_code json_services(plc_op *op, const json_t *v, err_t *e) {
    if (!json_is_object(v)) return err_set(e, ERR_INVALID, "services is not an object");
    if (json_object_size(v) > PLC_MAX_LIST)
        return err_set(e, ERR_LIMIT, "services has %zu entries, over the limit of %d", json_object_size(v), PLC_MAX_LIST);
    const char *name;
    const json_t *svc;
    json_object_foreach((json_t *)v, name, svc) {
        if (!json_is_object(svc)) return err_set(e, ERR_INVALID, "services.%.40s is not an object", name);
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)svc, k, x) {
            if (strcmp(k, "type") && strcmp(k, "endpoint"))
                return err_set(e, ERR_INVALID, "services.%.40s has an unknown field '%.40s'", name, k);
        }
        const char *type = NULL, *endpoint = NULL;
        err_code rc = json_str(json_object_get(svc, "type"), "type", &type, e);
        if (!rc) rc = json_str(json_object_get(svc, "endpoint"), "endpoint", &endpoint, e);
        if (rc) {
            err_wrap(e, "services.%.40s", name);
            return rc;
        }
        TRY(plc_op_set_service(op, name, type, endpoint, e));
    }
    return ERR_OK;
}

static bool field_allowed(plc_op_type t, const char *k) {
    static const char *const regular[] = {"type", "rotationKeys", "verificationMethods", "alsoKnownAs",
                                          "services", "prev", "sig", NULL};
    static const char *const tomb[] = {"type", "prev", "sig", NULL};
    static const char *const legacy[] = {"type", "signingKey", "recoveryKey", "handle", "service",
                                         "prev", "sig", NULL};
    const char *const *set = t == PLC_OP_REGULAR ? regular : t == PLC_OP_TOMBSTONE ? tomb : legacy;
    for (; *set; set++)
        if (!strcmp(*set, k)) return true;
    return false;
}

static err_code json_required(const json_t *obj, const char *k, const json_t **out, err_t *e) {
    *out = json_object_get(obj, k);
    if (!*out) return err_set(e, ERR_INVALID, "missing field '%s'", k);
    return ERR_OK;
}

static err_code from_json_fields(plc_op *op, const json_t *json, err_t *e) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json, k, v) {
        if (!field_allowed(op->type, k))
            return err_set(e, ERR_INVALID, "unknown field '%.40s' in a %s op", k, type_name(op->type));
    }
    /* prev: a CID string, or null for a genesis op (tombstones always have one). */
    TRY(json_required(json, "prev", &v, e));
    if (json_is_null(v)) {
        if (op->type == PLC_OP_TOMBSTONE) return err_set(e, ERR_INVALID, "a tombstone's prev is null");
    } else {
        const char *s;
        TRY(json_str(v, "prev", &s, e));
        if (op->type == PLC_OP_LEGACY_CREATE) return err_set(e, ERR_INVALID, "a legacy create op's prev is not null");
        cid_t c;
        err_code rc = cid_parse(&c, s, e);
        if (rc) {
            err_wrap(e, "prev '%.80s' is not a CID", s);
            return rc;
        }
        TRY(dup_str(&op->prev, s, e));
    }
    v = json_object_get(json, "sig");
    if (v) {
        const char *s;
        TRY(json_str(v, "sig", &s, e));
        TRY(dup_str(&op->sig, s, e));
    }
    if (op->type == PLC_OP_REGULAR) {
        TRY(json_required(json, "rotationKeys", &v, e));
        TRY(json_str_list(v, "rotationKeys", &op->rotation_keys, &op->n_rotation_keys, e));
        TRY(json_required(json, "verificationMethods", &v, e));
        TRY(json_vmethods(op, v, e));
        TRY(json_required(json, "alsoKnownAs", &v, e));
        TRY(json_str_list(v, "alsoKnownAs", &op->also_known_as, &op->n_also_known_as, e));
        TRY(json_required(json, "services", &v, e));
        TRY(json_services(op, v, e));
    } else if (op->type == PLC_OP_LEGACY_CREATE) {
        static const char *const names[] = {"signingKey", "recoveryKey", "handle", "service"};
        char **dst[] = {&op->signing_key, &op->recovery_key, &op->handle, &op->service};
        for (size_t i = 0; i < 4; i++) {
            const char *s;
            TRY(json_required(json, names[i], &v, e));
            TRY(json_str(v, names[i], &s, e));
            TRY(dup_str(dst[i], s, e));
        }
    }
    return ERR_OK;
}

err_code plc_op_from_json(plc_op *out, const json_t *json, err_t *e) {
    plc_op_init(out, PLC_OP_REGULAR);
    if (!json_is_object(json)) return err_set(e, ERR_INVALID, "operation is not a JSON object");
    const char *t;
    TRY(json_str(json_object_get(json, "type"), "operation type", &t, e));
    if (!strcmp(t, "plc_operation")) out->type = PLC_OP_REGULAR;
    else if (!strcmp(t, "plc_tombstone")) out->type = PLC_OP_TOMBSTONE;
    else if (!strcmp(t, "create")) out->type = PLC_OP_LEGACY_CREATE;
    else return err_set(e, ERR_INVALID, "unknown operation type '%.40s'", t);
    err_code rc = from_json_fields(out, json, e);
    if (rc) plc_op_free(out);
    return rc;
}

/* ---------------------------------------------------------------- JSON out */

static int put_str(json_t *obj, const char *k, const char *s) {
    return json_object_set_new(obj, k, s ? json_string(s) : json_null());
}

json_t *plc_op_to_json(const plc_op *op, err_t *e) {
    json_t *o = json_object();
    if (!o) goto oom;
    int bad = json_object_set_new(o, "type", json_string(type_name(op->type)));
    if (op->type == PLC_OP_REGULAR) {
        json_t *rk = json_array(), *vm = json_object(), *aka = json_array(), *sv = json_object();
        bad |= json_object_set_new(o, "rotationKeys", rk);
        bad |= json_object_set_new(o, "verificationMethods", vm);
        bad |= json_object_set_new(o, "alsoKnownAs", aka);
        bad |= json_object_set_new(o, "services", sv);
        if (bad) goto oom;
        for (size_t i = 0; i < op->n_rotation_keys; i++) bad |= json_array_append_new(rk, json_string(op->rotation_keys[i]));
        for (size_t i = 0; i < op->n_vmethods; i++) bad |= put_str(vm, op->vmethods[i].name, op->vmethods[i].key);
        for (size_t i = 0; i < op->n_also_known_as; i++) bad |= json_array_append_new(aka, json_string(op->also_known_as[i]));
        for (size_t i = 0; i < op->n_services; i++) {
            json_t *s = json_object();
            bad |= json_object_set_new(sv, op->services[i].name, s);
            if (bad) goto oom;
            bad |= put_str(s, "type", op->services[i].type);
            bad |= put_str(s, "endpoint", op->services[i].endpoint);
        }
    } else if (op->type == PLC_OP_LEGACY_CREATE) {
        bad |= put_str(o, "signingKey", op->signing_key);
        bad |= put_str(o, "recoveryKey", op->recovery_key);
        bad |= put_str(o, "handle", op->handle);
        bad |= put_str(o, "service", op->service);
    }
    bad |= put_str(o, "prev", op->prev);
    if (op->sig) bad |= put_str(o, "sig", op->sig);
    if (bad) goto oom;
    return o;
oom:
    json_decref(o);
    err_set(e, ERR_NOMEM, "out of memory building the operation's JSON");
    return NULL;
}

/* ---------------------------------------------------------------- DAG-CBOR */

static err_code put_text(cbor_doc *d, cbor_item *map, const char *k, const char *s, err_t *e) {
    cbor_item *v = s ? cbor_new_textz(d, s) : cbor_new_null(d);
    if (!v) return err_set(e, ERR_NOMEM, "out of memory encoding '%s'", k);
    return cbor_map_put(d, map, k, v, e);
}

static err_code put_list(cbor_doc *d, cbor_item *map, const char *k, char *const *v, size_t n, err_t *e) {
    cbor_item *a = cbor_new_array(d, n);
    if (!a) return err_set(e, ERR_NOMEM, "out of memory encoding '%s'", k);
    for (size_t i = 0; i < n; i++) {
        a->v.array.items[i] = cbor_new_textz(d, v[i]);
        if (!a->v.array.items[i]) return err_set(e, ERR_NOMEM, "out of memory encoding '%s'", k);
    }
    return cbor_map_put(d, map, k, a, e);
}

static err_code build_regular(cbor_doc *d, cbor_item *m, const plc_op *op, err_t *e) {
    TRY(put_list(d, m, "rotationKeys", op->rotation_keys, op->n_rotation_keys, e));
    TRY(put_list(d, m, "alsoKnownAs", op->also_known_as, op->n_also_known_as, e));
    cbor_item *vm = cbor_new_map(d, op->n_vmethods);
    if (!vm) return err_set(e, ERR_NOMEM, "out of memory encoding verificationMethods");
    for (size_t i = 0; i < op->n_vmethods; i++) TRY(put_text(d, vm, op->vmethods[i].name, op->vmethods[i].key, e));
    TRY(cbor_map_put(d, m, "verificationMethods", vm, e));
    cbor_item *sv = cbor_new_map(d, op->n_services);
    if (!sv) return err_set(e, ERR_NOMEM, "out of memory encoding services");
    for (size_t i = 0; i < op->n_services; i++) {
        cbor_item *s = cbor_new_map(d, 2);
        if (!s) return err_set(e, ERR_NOMEM, "out of memory encoding services");
        TRY(put_text(d, s, "type", op->services[i].type, e));
        TRY(put_text(d, s, "endpoint", op->services[i].endpoint, e));
        TRY(cbor_map_put(d, sv, op->services[i].name, s, e));
    }
    return cbor_map_put(d, m, "services", sv, e);
}

/* The op as DAG-CBOR; `prev` is a plain text string (or null), never a tag-42 CID. */
static err_code encode_op(const plc_op *op, bool with_sig, buf_t *out, err_t *e) {
    if (with_sig && !op->sig) return err_set(e, ERR_USAGE, "the operation is not signed");
    if (op->type == PLC_OP_TOMBSTONE && !op->prev) return err_set(e, ERR_INVALID, "a tombstone needs a prev");
    if (op->type == PLC_OP_LEGACY_CREATE && op->prev) return err_set(e, ERR_INVALID, "a legacy create op has a prev");
    cbor_doc *d = cbor_doc_new();
    if (!d) return err_set(e, ERR_NOMEM, "out of memory encoding an operation");
    cbor_item *m = cbor_new_map(d, 8);
    err_code rc = m ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory encoding an operation");
    if (!rc) rc = put_text(d, m, "type", type_name(op->type), e);
    if (!rc) rc = put_text(d, m, "prev", op->prev, e);
    if (!rc && with_sig) rc = put_text(d, m, "sig", op->sig, e);
    if (!rc && op->type == PLC_OP_REGULAR) rc = build_regular(d, m, op, e);
    if (!rc && op->type == PLC_OP_LEGACY_CREATE) {
        if (!op->signing_key || !op->recovery_key || !op->handle || !op->service)
            rc = err_set(e, ERR_INVALID, "a legacy create op needs signingKey, recoveryKey, handle and service");
        if (!rc) rc = put_text(d, m, "signingKey", op->signing_key, e);
        if (!rc) rc = put_text(d, m, "recoveryKey", op->recovery_key, e);
        if (!rc) rc = put_text(d, m, "handle", op->handle, e);
        if (!rc) rc = put_text(d, m, "service", op->service, e);
    }
    if (!rc) rc = cbor_encode(m, out, e);
    cbor_doc_free(d);
    return rc;
}

err_code plc_op_encode_unsigned(const plc_op *op, buf_t *out, err_t *e) { return encode_op(op, false, out, e); }
err_code plc_op_encode_signed(const plc_op *op, buf_t *out, err_t *e) { return encode_op(op, true, out, e); }

err_code plc_op_cid(const plc_op *op, cid_t *out, err_t *e) {
    buf_t b;
    buf_init(&b, 0);
    err_code rc = plc_op_encode_signed(op, &b, e);
    if (!rc) cid_compute(out, CID_CODEC_DAG_CBOR, b.data, b.len);
    buf_free(&b);
    return rc;
}

err_code plc_op_cid_str(const plc_op *op, char out[CID_STR_MAX], err_t *e) {
    cid_t c;
    err_code rc = plc_op_cid(op, &c, e);
    if (rc) return rc;
    if (cid_format(&c, out, CID_STR_MAX) == 0) return err_set(e, ERR_LIMIT, "CID does not fit its buffer");
    return ERR_OK;
}

err_code plc_op_genesis_did(const plc_op *op, char out[PLC_DID_MAX], err_t *e) {
    if (op->type == PLC_OP_TOMBSTONE || op->prev)
        return err_set(e, ERR_USAGE, "not a genesis operation (prev is not null)");
    if (!op->sig || !op->sig[0]) return err_set(e, ERR_USAGE, "the genesis operation is not signed");
    buf_t b;
    buf_init(&b, 0);
    err_code rc = plc_op_encode_signed(op, &b, e);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    uint8_t digest[SHA256_BYTES];
    hash_sha256(b.data, b.len, digest);
    buf_free(&b);
    char b32[64];
    size_t n = base32_encode(digest, sizeof digest, b32, sizeof b32);
    assert(n >= PLC_DID_SUFFIX_LEN);
    memcpy(out, PLC_DID_PREFIX, 8);
    memcpy(out + 8, b32, PLC_DID_SUFFIX_LEN);
    out[8 + PLC_DID_SUFFIX_LEN] = '\0';
    return ERR_OK;
}

bool plc_did_is_valid(const char *did) {
    if (!did || strncmp(did, PLC_DID_PREFIX, 8) || strlen(did) != 8 + PLC_DID_SUFFIX_LEN) return false;
    for (const char *p = did + 8; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7'))) return false;
    return true;
}

/* ---------------------------------------------------------------- signatures */

err_code plc_op_sign(plc_op *op, const key_priv *k, err_t *e) {
    if (op->type != PLC_OP_LEGACY_CREATE) {
        /* the limits are checked on the op as it will be signed (not on an old sig) */
        free(op->sig);
        op->sig = NULL;
        err_code rc = plc_op_check_directory_limits(op, e);
        if (rc) {
            err_wrap(e, "refusing to sign");
            return rc;
        }
    }
    free(op->sig);
    op->sig = NULL;
    buf_t b;
    buf_init(&b, 0);
    err_code rc = plc_op_encode_unsigned(op, &b, e);
    uint8_t sig[KEY_SIG_BYTES];
    if (!rc) rc = key_sign(k, b.data, b.len, sig, e);
    buf_free(&b);
    if (rc) return rc;
    char s[SIG_B64_MAX];
    size_t n = base64url_encode(sig, sizeof sig, s, sizeof s);
    assert(n == 86);
    return dup_str(&op->sig, s, e);
}

/* Strict base64url → exactly 64 bytes. */
static err_code decode_sig(const plc_op *op, uint8_t sig[PLC_SIG_BYTES], err_t *e) {
    if (!op->sig || !op->sig[0]) return err_set(e, ERR_INVALID, "the operation is not signed");
    size_t n = strlen(op->sig);
    if (n > SIG_B64_MAX) return err_set(e, ERR_INVALID, "sig is %zu characters, too long for a 64-byte signature", n);
    uint8_t raw[SIG_B64_MAX];
    size_t len = 0;
    err_t sub;
    err_clear(&sub);
    if (base64url_decode(op->sig, n, raw, sizeof raw, &len, &sub))
        return err_set(e, ERR_INVALID, "sig is not strict base64url: %s", sub.msg);
    if (len != PLC_SIG_BYTES)
        return err_set(e, ERR_INVALID, "sig decodes to %zu bytes, not a 64-byte compact signature", len);
    memcpy(sig, raw, PLC_SIG_BYTES);
    return ERR_OK;
}

/* msg = unsigned CBOR of op, sig already decoded. *bad_key is set when did_key itself is
 * unusable (as opposed to the signature not matching it). */
static err_code verify_one(const uint8_t *msg, size_t len, const uint8_t sig[PLC_SIG_BYTES], const char *did_key,
                           bool *bad_key, err_t *e) {
    key_pub pub;
    err_t sub;
    err_clear(&sub);
    *bad_key = false;
    if (key_pub_from_did_key(&pub, did_key, &sub)) {
        *bad_key = true;
        return err_set(e, ERR_INVALID, "rotation key '%.80s' is not a usable did:key: %s", did_key, sub.msg);
    }
    err_code rc = key_verify(&pub, msg, len, sig, PLC_SIG_BYTES, &sub);
    if (rc == ERR_MISMATCH) return err_set(e, ERR_MISMATCH, "signature does not verify with %.80s", did_key);
    if (rc) return err_set(e, rc, "signature rejected by %.80s: %s", did_key, sub.msg);
    return ERR_OK;
}

err_code plc_op_verify_sig(const plc_op *op, const char *did_key, err_t *e) {
    size_t idx;
    return plc_op_find_signer(op, &did_key, 1, &idx, e);
}

err_code plc_op_find_signer(const plc_op *op, const char *const *keys, size_t n, size_t *index, err_t *e) {
    uint8_t sig[PLC_SIG_BYTES];
    TRY(decode_sig(op, sig, e));
    if (n == 0) return err_set(e, ERR_MISMATCH, "no rotation key is allowed to sign this operation");
    buf_t b;
    buf_init(&b, 0);
    err_code rc = plc_op_encode_unsigned(op, &b, e);
    /* A key that rejects the signature as malformed (high-S, r or s out of range) is
     * remembered: if no key verifies, that is the more useful reason to report. */
    err_t rejected;
    err_clear(&rejected);
    for (size_t i = 0; !rc && i < n; i++) {
        err_t sub;
        err_clear(&sub);
        bool bad_key;
        err_code r = verify_one(b.data, b.len, sig, keys[i], &bad_key, &sub);
        if (r == ERR_OK) {
            *index = i;
            buf_free(&b);
            return ERR_OK;
        }
        if (r == ERR_MISMATCH) continue;
        if (r == ERR_INVALID && !bad_key) {
            if (rejected.code == ERR_OK) rejected = sub;
            continue;
        }
        rc = err_set(e, r, "%s", sub.msg); /* unusable key, out of memory: stop */
    }
    buf_free(&b);
    if (rc) return rc;
    if (rejected.code != ERR_OK) return err_set(e, ERR_INVALID, "%s", rejected.msg);
    return err_set(e, ERR_MISMATCH, "signature does not verify with any of the %zu allowed rotation key(s)", n);
}

/* ---------------------------------------------------------------- views */

size_t plc_op_rotation_keys(const plc_op *op, const char **out, size_t out_max) {
    size_t n = 0;
    if (op->type == PLC_OP_REGULAR) {
        for (size_t i = 0; i < op->n_rotation_keys && n < out_max; i++) out[n++] = op->rotation_keys[i];
    } else if (op->type == PLC_OP_LEGACY_CREATE) {
        if (n < out_max && op->recovery_key) out[n++] = op->recovery_key;
        if (n < out_max && op->signing_key) out[n++] = op->signing_key;
    }
    return n;
}

err_code plc_op_normalize(const plc_op *src, plc_op *dst, err_t *e) {
    if (src->type == PLC_OP_REGULAR) return plc_op_copy(dst, src, e);
    plc_op_init(dst, PLC_OP_REGULAR);
    if (src->type != PLC_OP_LEGACY_CREATE)
        return err_set(e, ERR_INVALID, "a tombstone has no identity data to normalise");
    if (!src->signing_key || !src->recovery_key || !src->handle || !src->service)
        return err_set(e, ERR_INVALID, "a legacy create op needs signingKey, recoveryKey, handle and service");
    size_t hl = strlen(src->handle);
    char *aka = malloc(hl + 6);
    if (!aka) return err_set(e, ERR_NOMEM, "out of memory normalising a legacy op");
    memcpy(aka, "at://", 5);
    memcpy(aka + 5, src->handle, hl + 1);
    err_code rc = plc_op_add_rotation_key(dst, src->recovery_key, e);
    if (!rc) rc = plc_op_add_rotation_key(dst, src->signing_key, e);
    if (!rc) rc = plc_op_set_vmethod(dst, "atproto", src->signing_key, e);
    if (!rc) rc = plc_op_add_also_known_as(dst, aka, e);
    if (!rc) rc = plc_op_set_service(dst, "atproto_pds", "AtprotoPersonalDataServer", src->service, e);
    if (!rc && src->sig) rc = dup_str(&dst->sig, src->sig, e);
    free(aka);
    if (rc) plc_op_free(dst);
    return rc;
}

const char *plc_op_vmethod(const plc_op *op, const char *name) {
    for (size_t i = 0; i < op->n_vmethods; i++)
        if (!strcmp(op->vmethods[i].name, name)) return op->vmethods[i].key;
    return NULL;
}

const plc_service *plc_op_service(const plc_op *op, const char *name) {
    for (size_t i = 0; i < op->n_services; i++)
        if (!strcmp(op->services[i].name, name)) return &op->services[i];
    return NULL;
}

const char *plc_op_handle(const plc_op *op) {
    for (size_t i = 0; i < op->n_also_known_as; i++)
        if (!strncmp(op->also_known_as[i], "at://", 5)) return op->also_known_as[i] + 5;
    return NULL;
}

/* ---------------------------------------------------------------- directory limits */

static err_code check_vmethod_key(const char *name, const char *key, err_t *e) {
    if (strlen(key) > PLC_DIR_MAX_DID_KEY_LEN)
        return err_set(e, ERR_LIMIT, "verificationMethods.%.40s is longer than %d characters", name, PLC_DIR_MAX_DID_KEY_LEN);
    /* Syntax only (any key type): "did:key:" + multibase base58btc. */
    uint8_t raw[PLC_DIR_MAX_DID_KEY_LEN];
    size_t len;
    err_t sub;
    err_clear(&sub);
    if (strncmp(key, "did:key:z", 9) || base58btc_decode(key + 9, strlen(key + 9), raw, sizeof raw, &len, &sub))
        return err_set(e, ERR_INVALID, "verificationMethods.%.40s '%.80s' is not a did:key", name, key);
    return ERR_OK;
}

static err_code check_regular_limits(const plc_op *op, err_t *e) {
    if (op->n_also_known_as > PLC_DIR_MAX_ENTRIES)
        return err_set(e, ERR_LIMIT, "%zu alsoKnownAs entries (the directory allows %d)", op->n_also_known_as, PLC_DIR_MAX_ENTRIES);
    for (size_t i = 0; i < op->n_also_known_as; i++) {
        if (strlen(op->also_known_as[i]) > PLC_DIR_MAX_AKA_LEN)
            return err_set(e, ERR_LIMIT, "alsoKnownAs entry %zu is longer than %d characters", i, PLC_DIR_MAX_AKA_LEN);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(op->also_known_as[i], op->also_known_as[j]))
                return err_set(e, ERR_INVALID, "duplicate alsoKnownAs entry '%.80s'", op->also_known_as[i]);
    }
    if (op->n_rotation_keys > PLC_DIR_MAX_ENTRIES)
        return err_set(e, ERR_LIMIT, "%zu rotation keys (the directory allows %d)", op->n_rotation_keys, PLC_DIR_MAX_ENTRIES);
    for (size_t i = 0; i < op->n_rotation_keys; i++) {
        key_pub pub;
        err_t sub;
        err_clear(&sub);
        if (key_pub_from_did_key(&pub, op->rotation_keys[i], &sub))
            return err_set(e, ERR_INVALID, "rotation key %zu '%.80s' is not a k256/p256 did:key: %s", i,
                           op->rotation_keys[i], sub.msg);
    }
    if (op->n_services > PLC_DIR_MAX_ENTRIES)
        return err_set(e, ERR_LIMIT, "%zu services (the directory allows %d)", op->n_services, PLC_DIR_MAX_ENTRIES);
    for (size_t i = 0; i < op->n_services; i++) {
        const plc_service *s = &op->services[i];
        if (strlen(s->name) > PLC_DIR_MAX_ID_LEN)
            return err_set(e, ERR_LIMIT, "service id '%.40s…' is longer than %d characters", s->name, PLC_DIR_MAX_ID_LEN);
        if (strlen(s->type) > PLC_DIR_MAX_SERVICE_TYPE_LEN)
            return err_set(e, ERR_LIMIT, "service %.40s: type is longer than %d characters", s->name, PLC_DIR_MAX_SERVICE_TYPE_LEN);
        if (strlen(s->endpoint) > PLC_DIR_MAX_ENDPOINT_LEN)
            return err_set(e, ERR_LIMIT, "service %.40s: endpoint is longer than %d characters", s->name, PLC_DIR_MAX_ENDPOINT_LEN);
    }
    if (op->n_vmethods > PLC_DIR_MAX_ENTRIES)
        return err_set(e, ERR_LIMIT, "%zu verification methods (the directory allows %d)", op->n_vmethods, PLC_DIR_MAX_ENTRIES);
    for (size_t i = 0; i < op->n_vmethods; i++) {
        if (strlen(op->vmethods[i].name) > PLC_DIR_MAX_ID_LEN)
            return err_set(e, ERR_LIMIT, "verification method id '%.40s…' is longer than %d characters",
                           op->vmethods[i].name, PLC_DIR_MAX_ID_LEN);
        TRY(check_vmethod_key(op->vmethods[i].name, op->vmethods[i].key, e));
    }
    return ERR_OK;
}

err_code plc_op_check_directory_limits(const plc_op *op, err_t *e) {
    if (op->type == PLC_OP_LEGACY_CREATE)
        return err_set(e, ERR_INVALID, "the directory no longer accepts legacy create ops");
    if (op->type == PLC_OP_REGULAR) TRY(check_regular_limits(op, e));
    buf_t b;
    buf_init(&b, 0);
    bool signed_ = op->sig && op->sig[0];
    err_code rc = signed_ ? plc_op_encode_signed(op, &b, e) : plc_op_encode_unsigned(op, &b, e);
    size_t size = b.len + (signed_ ? 0 : SIG_CBOR_OVERHEAD);
    buf_free(&b);
    if (rc) return rc;
    if (size > PLC_DIR_MAX_OP_BYTES)
        return err_set(e, ERR_LIMIT, "the signed operation is %zu bytes of DAG-CBOR (the directory allows %d)", size,
                       PLC_DIR_MAX_OP_BYTES);
    return ERR_OK;
}

/* ---------------------------------------------------------------- comparison */

typedef struct {
    char *p;
    size_t size, len;
    unsigned what;
} diff_out;

static void diff_add(diff_out *d, unsigned field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void diff_add(diff_out *d, unsigned field, const char *fmt, ...) {
    d->what |= field;
    if (d->size == 0 || d->len + 1 >= d->size) return;
    if (d->len) {
        int n = snprintf(d->p + d->len, d->size - d->len, "; ");
        d->len += n > 0 ? (size_t)n : 0;
        if (d->len >= d->size) d->len = d->size - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(d->p + d->len, d->size - d->len, fmt, ap);
    va_end(ap);
    d->len += n > 0 ? (size_t)n : 0;
    if (d->len >= d->size) d->len = d->size - 1;
}

static size_t str_index(char *const *v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return SIZE_MAX;
}

static const char *or_null(const char *s) { return s ? s : "null"; }

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

/* An ordered list (rotationKeys, alsoKnownAs): what is missing, what was added, and whether the
 * entries both have are in another order. */
static void diff_list(diff_out *d, unsigned field, const char *name, char *const *want, size_t nw, char *const *got, size_t ng) {
    bool any = false;
    for (size_t i = 0; i < nw; i++)
        if (str_index(got, ng, want[i]) == SIZE_MAX) {
            diff_add(d, field, "%s: %s (expected at #%zu) is missing", name, want[i], i);
            any = true;
        }
    for (size_t i = 0; i < ng; i++)
        if (str_index(want, nw, got[i]) == SIZE_MAX) {
            diff_add(d, field, "%s: %s was added at #%zu", name, got[i], i);
            any = true;
        }
    /* the common entries, in each list's order */
    size_t iw = 0, ig = 0;
    bool reordered = false;
    while (!reordered) {
        while (iw < nw && str_index(got, ng, want[iw]) == SIZE_MAX) iw++;
        while (ig < ng && str_index(want, nw, got[ig]) == SIZE_MAX) ig++;
        if (iw >= nw || ig >= ng) break;
        reordered = strcmp(want[iw++], got[ig++]) != 0;
    }
    if (reordered || (!any && nw != ng)) {
        char list[600];
        size_t n = 0;
        list[0] = 0;
        for (size_t i = 0; i < ng && n < sizeof list; i++) n += (size_t)snprintf(list + n, sizeof list - n, " #%zu %s", i, got[i]);
        diff_add(d, field, "%s are in another order:%s", name, list);
    }
}

static void diff_vmethods(diff_out *d, const plc_op *want, const plc_op *got) {
    for (size_t i = 0; i < want->n_vmethods; i++) {
        const plc_vmethod *w = &want->vmethods[i];
        const char *g = plc_op_vmethod(got, w->name);
        if (!g) diff_add(d, PLC_DIFF_VMETHODS, "verificationMethods.%s (%s) is missing", w->name, w->key);
        else if (strcmp(g, w->key)) diff_add(d, PLC_DIFF_VMETHODS, "verificationMethods.%s: expected %s, got %s", w->name, w->key, g);
    }
    for (size_t i = 0; i < got->n_vmethods; i++)
        if (!plc_op_vmethod(want, got->vmethods[i].name))
            diff_add(d, PLC_DIFF_VMETHODS, "verificationMethods.%s (%s) was added", got->vmethods[i].name, got->vmethods[i].key);
}

static void diff_services(diff_out *d, const plc_op *want, const plc_op *got) {
    for (size_t i = 0; i < want->n_services; i++) {
        const plc_service *w = &want->services[i], *g = plc_op_service(got, w->name);
        if (!g) diff_add(d, PLC_DIFF_SERVICES, "services.%s (%s %s) is missing", w->name, w->type, w->endpoint);
        else if (strcmp(g->type, w->type) || strcmp(g->endpoint, w->endpoint))
            diff_add(d, PLC_DIFF_SERVICES, "services.%s: expected %s %s, got %s %s", w->name, w->type, w->endpoint, g->type, g->endpoint);
    }
    for (size_t i = 0; i < got->n_services; i++)
        if (!plc_op_service(want, got->services[i].name))
            diff_add(d, PLC_DIFF_SERVICES, "services.%s (%s %s) was added", got->services[i].name, got->services[i].type,
                     got->services[i].endpoint);
}

unsigned plc_op_diff(const plc_op *want, const plc_op *got, char *out, size_t size) {
    diff_out d = {out, size, 0, 0};
    if (size) out[0] = 0;
    if (want->type != got->type) {
        diff_add(&d, PLC_DIFF_TYPE, "type: expected %s, got %s", type_name(want->type), type_name(got->type));
        return d.what;
    }
    diff_list(&d, PLC_DIFF_ROTATION_KEYS, "rotationKeys", want->rotation_keys, want->n_rotation_keys, got->rotation_keys,
              got->n_rotation_keys);
    diff_vmethods(&d, want, got);
    diff_list(&d, PLC_DIFF_ALSO_KNOWN_AS, "alsoKnownAs", want->also_known_as, want->n_also_known_as, got->also_known_as,
              got->n_also_known_as);
    diff_services(&d, want, got);
    static const struct {
        const char *name;
        size_t off;
    } legacy[] = {{"signingKey", offsetof(plc_op, signing_key)},
                  {"recoveryKey", offsetof(plc_op, recovery_key)},
                  {"handle", offsetof(plc_op, handle)},
                  {"service", offsetof(plc_op, service)}};
    for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++) {
        const char *w = *(char *const *)((const char *)want + legacy[i].off), *g = *(char *const *)((const char *)got + legacy[i].off);
        if (!str_eq(w, g)) diff_add(&d, PLC_DIFF_LEGACY, "%s: expected %s, got %s", legacy[i].name, or_null(w), or_null(g));
    }
    if (!str_eq(want->prev, got->prev))
        diff_add(&d, PLC_DIFF_PREV, "prev: expected %s, got %s", or_null(want->prev), or_null(got->prev));
    return d.what;
}
