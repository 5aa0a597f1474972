/* commit.c — decode, verify and build signed repo commits; see commit.h.
 * The signed bytes are rebuilt from the decoded map minus "sig" and re-encoded canonically:
 * since decoding is strict (canonical input only), this reproduces what the signer hashed. */
#include "pdsmove/commit.h"

#include <string.h>

#include "pdsmove/cbor.h"

static err_code copy_text(const cbor_item *v, const char *field, char *out, size_t max, err_t *e) {
    if (v->type != CBOR_TEXT) return err_set(e, ERR_INVALID, "commit: \"%s\" is not text", field);
    if (v->v.text.len > max) return err_set(e, ERR_LIMIT, "commit: \"%s\" is %zu bytes (limit %zu)", field, v->v.text.len, max);
    if (memchr(v->v.text.ptr, 0, v->v.text.len)) return err_set(e, ERR_INVALID, "commit: \"%s\" contains a NUL", field);
    memcpy(out, v->v.text.ptr, v->v.text.len);
    out[v->v.text.len] = 0;
    return ERR_OK;
}

static err_code decode_fields(const cbor_item *m, commit_t *c, err_t *e) {
    if (m->type != CBOR_MAP) return err_set(e, ERR_INVALID, "commit is not a CBOR map");
    bool have_did = false, have_version = false, have_data = false, have_sig = false, have_rev = false, have_prev = false;
    err_code rc;
    for (size_t i = 0; i < m->v.map.len; i++) {
        const char *k = m->v.map.pairs[i].key;
        const cbor_item *v = m->v.map.pairs[i].value;
        if (!strcmp(k, "did")) {
            if ((rc = copy_text(v, "did", c->did, COMMIT_DID_MAX, e))) return rc;
            if (strncmp(c->did, "did:", 4) != 0) return err_set(e, ERR_INVALID, "commit: \"did\" is not a DID");
            have_did = true;
        } else if (!strcmp(k, "version")) {
            if (v->type != CBOR_INT) return err_set(e, ERR_INVALID, "commit: \"version\" is not an integer");
            c->version = v->v.integer;
            have_version = true;
        } else if (!strcmp(k, "data")) {
            if (v->type != CBOR_CID) return err_set(e, ERR_INVALID, "commit: \"data\" is not a CID");
            c->data = v->v.cid;
            have_data = true;
        } else if (!strcmp(k, "rev")) {
            if ((rc = copy_text(v, "rev", c->rev, COMMIT_REV_MAX, e))) return rc;
            have_rev = true;
        } else if (!strcmp(k, "prev")) {
            if (v->type == CBOR_CID) { c->has_prev = true; c->prev = v->v.cid; }
            else if (v->type != CBOR_NULL) return err_set(e, ERR_INVALID, "commit: \"prev\" is neither a CID nor null");
            have_prev = true;
        } else if (!strcmp(k, "sig")) {
            if (v->type != CBOR_BYTES) return err_set(e, ERR_INVALID, "commit: \"sig\" is not bytes");
            if (v->v.bytes.len > COMMIT_SIG_MAX) return err_set(e, ERR_INVALID, "commit: \"sig\" is %zu bytes: not a signature", v->v.bytes.len);
            memcpy(c->sig, v->v.bytes.ptr, v->v.bytes.len);
            c->sig_len = v->v.bytes.len;
            have_sig = true;
        }
    }
    if (!have_version) return err_set(e, ERR_INVALID, "commit has no \"version\"");
    if (c->version != 3 && c->version != 2)
        return err_set(e, ERR_INVALID, "commit version %lld is not supported (only 2 and 3)", (long long)c->version);
    if (!have_did) return err_set(e, ERR_INVALID, "commit has no \"did\"");
    if (!have_data) return err_set(e, ERR_INVALID, "commit has no \"data\" (MST root)");
    if (!have_sig) return err_set(e, ERR_INVALID, "commit has no \"sig\" (unsigned commit)");
    if (c->version == 3 && !have_rev) return err_set(e, ERR_INVALID, "version 3 commit has no \"rev\"");
    if (c->version == 3 && !have_prev) return err_set(e, ERR_INVALID, "version 3 commit has no \"prev\" (it must be present, even if null)");
    return ERR_OK;
}

/* Decodes block into *doc (owned by the caller on success) and fills c. */
static err_code decode_doc(const uint8_t *block, size_t len, cbor_doc **doc, commit_t *c, err_t *e) {
    memset(c, 0, sizeof *c);
    *doc = NULL;
    err_t ce = {0};
    if (cbor_decode(block, len, doc, &ce)) return err_set(e, ERR_INVALID, "commit is not valid DAG-CBOR: %s", ce.msg);
    err_code rc = decode_fields(cbor_doc_root(*doc), c, e);
    if (rc) {
        cbor_doc_free(*doc);
        *doc = NULL;
    }
    return rc;
}

err_code commit_decode(const uint8_t *block, size_t len, commit_t *out, err_t *e) {
    cbor_doc *doc;
    err_code rc = decode_doc(block, len, &doc, out, e);
    cbor_doc_free(doc);
    return rc;
}

/* Encodes doc's root map without "sig" into out. */
static err_code encode_unsigned(cbor_doc *doc, buf_t *out, err_t *e) {
    const cbor_item *m = cbor_doc_root(doc);
    cbor_item *u = cbor_new_map(doc, m->v.map.len);
    if (!u) return err_set(e, ERR_NOMEM, "out of memory re-encoding a commit");
    for (size_t i = 0; i < m->v.map.len; i++) {
        const cbor_pair *p = &m->v.map.pairs[i];
        if (!strcmp(p->key, "sig")) continue;
        err_code rc = cbor_map_put(doc, u, p->key, p->value, e);
        if (rc) return rc;
    }
    return cbor_encode(u, out, e);
}

err_code commit_unsigned_bytes(const uint8_t *block, size_t len, buf_t *out, err_t *e) {
    cbor_doc *doc;
    commit_t c;
    err_code rc = decode_doc(block, len, &doc, &c, e);
    if (rc) return rc;
    rc = encode_unsigned(doc, out, e);
    cbor_doc_free(doc);
    return rc;
}

err_code commit_verify(const uint8_t *block, size_t len, const key_pub *key, err_t *e) {
    cbor_doc *doc;
    commit_t c;
    err_code rc = decode_doc(block, len, &doc, &c, e);
    if (rc) return rc;
    buf_t u;
    buf_init(&u, len + 16);
    rc = encode_unsigned(doc, &u, e);
    if (!rc) {
        err_t ke = {0};
        rc = key_verify(key, u.data, u.len, c.sig, c.sig_len, &ke);
        char did_key[KEY_DID_MAX] = "";
        key_pub_to_did_key(key, did_key, sizeof did_key);
        if (rc == ERR_MISMATCH)
            err_set(e, ERR_MISMATCH, "commit signature (rev %s) does not verify with %s: wrong key or altered commit", c.rev, did_key);
        else if (rc)
            err_set(e, rc, "commit signature (rev %s) is malformed: %s", c.rev, ke.msg);
    }
    buf_free(&u);
    cbor_doc_free(doc);
    return rc;
}

static err_code build_map(cbor_doc *doc, const char *did, const cid_t *data, const char *rev, const cid_t *prev,
                          cbor_item **out, err_t *e) {
    cbor_item *m = cbor_new_map(doc, 6);
    cbor_item *vdid = cbor_new_textz(doc, did), *vver = cbor_new_int(doc, 3), *vdata = cbor_new_cid(doc, data);
    cbor_item *vrev = cbor_new_textz(doc, rev), *vprev = prev ? cbor_new_cid(doc, prev) : cbor_new_null(doc);
    if (!m || !vdid || !vver || !vdata || !vrev || !vprev) return err_set(e, ERR_NOMEM, "out of memory building a commit");
    err_code rc = cbor_map_put(doc, m, "did", vdid, e);
    if (!rc) rc = cbor_map_put(doc, m, "version", vver, e);
    if (!rc) rc = cbor_map_put(doc, m, "data", vdata, e);
    if (!rc) rc = cbor_map_put(doc, m, "rev", vrev, e);
    if (!rc) rc = cbor_map_put(doc, m, "prev", vprev, e);
    *out = m;
    return rc;
}

err_code commit_build_signed(const char *did, const cid_t *data, const char *rev, const cid_t *prev,
                             const key_priv *key, buf_t *out, cid_t *cid, err_t *e) {
    if (strlen(did) > COMMIT_DID_MAX || strncmp(did, "did:", 4) != 0)
        return err_set(e, ERR_INVALID, "commit: \"%.64s\" is not a DID", did);
    if (strlen(rev) == 0 || strlen(rev) > COMMIT_REV_MAX) return err_set(e, ERR_INVALID, "commit: bad rev \"%.64s\"", rev);
    cbor_doc *doc = cbor_doc_new();
    if (!doc) return err_set(e, ERR_NOMEM, "out of memory building a commit");
    buf_t u;
    buf_init(&u, 0);
    cbor_item *m = NULL;
    uint8_t sig[KEY_SIG_BYTES];
    err_code rc = build_map(doc, did, data, rev, prev, &m, e);
    if (!rc) rc = cbor_encode(m, &u, e);
    if (!rc) rc = key_sign(key, u.data, u.len, sig, e);
    if (!rc) {
        cbor_item *vsig = cbor_new_bytes(doc, sig, sizeof sig);
        rc = vsig ? cbor_map_put(doc, m, "sig", vsig, e) : err_set(e, ERR_NOMEM, "out of memory building a commit");
    }
    size_t start = out->len;
    if (!rc) rc = cbor_encode(m, out, e);
    if (!rc) cid_compute(cid, CID_CODEC_DAG_CBOR, out->data + start, out->len - start);
    buf_free(&u);
    cbor_doc_free(doc);
    return rc;
}
