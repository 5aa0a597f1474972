/* mst.c — Merkle Search Tree walk (checking) and canonical builder; see mst.h.
 * The walk keeps one frame per tree layer on an explicit stack (depth <= MST_MAX_LAYER + 1,
 * since each subtree must be exactly one layer lower). The builder consumes sorted keys and
 * keeps one open node per layer, emitting a node as soon as no later key can change it. */
#include "pdsmove/mst.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/buf.h"
#include "pdsmove/car.h"
#include "pdsmove/cbor.h"
#include "pdsmove/hash.h"

/* ---------------------------------------------------------------- keys */

int mst_key_height(const uint8_t *key, size_t len) {
    uint8_t h[SHA256_BYTES];
    hash_sha256(key, len, h);
    int zeros = 0;
    for (size_t i = 0; i < SHA256_BYTES; i++) {
        if (h[i] == 0) { zeros += 8; continue; }
        uint8_t b = h[i];
        while (!(b & 0x80)) { zeros++; b <<= 1; }
        break;
    }
    return zeros / 2;
}

size_t mst_common_prefix_len(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
    size_t n = a_len < b_len ? a_len : b_len, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static bool key_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '~' || c == '.' || c == ':' || c == '-';
}

bool mst_key_valid(const char *key, size_t len) {
    if (len == 0 || len > MST_MAX_KEY_BYTES) return false;
    size_t slash = len;
    for (size_t i = 0; i < len; i++) {
        if (key[i] == '/') {
            if (slash != len) return false; /* a second '/' */
            slash = i;
        } else if (!key_char_ok(key[i])) {
            return false;
        }
    }
    return slash != len && slash > 0 && slash + 1 < len;
}

/* Printable excerpt of a key for error messages (keys in errors may be hostile bytes). */
static void key_excerpt(const uint8_t *k, size_t len, char out[80]) {
    size_t o = 0;
    for (size_t i = 0; i < len && o < 72; i++) out[o++] = (k[i] >= 0x20 && k[i] < 0x7f) ? (char)k[i] : '?';
    if (len > 72) { out[o++] = '.'; out[o++] = '.'; out[o++] = '.'; }
    out[o] = 0;
}

/* ---------------------------------------------------------------- walk */

typedef struct {
    cid_t cid;
    char cs[CID_STR_MAX];     /* cid as text, for messages */
    cbor_doc *doc;
    const cbor_item *entries; /* the "e" array */
    const cbor_item *left;    /* "l": NULL when null */
    size_t next;              /* 0: left subtree not yet taken; i + 1: entry i is next */
    int layer;
    uint8_t key[MST_MAX_KEY_BYTES + 1]; /* previous key in this node, for prefix expansion */
    size_t key_len;
} frame_t;

typedef struct {
    mst_get_fn get;
    void *get_ctx;
    mst_walk_stats st;
    frame_t *stack;
    int depth;
    uint8_t last_key[MST_MAX_KEY_BYTES + 1]; /* previous key in the whole walk */
    size_t last_len;
    bool have_last;
} walk_t;

/* Checks one entry map's shape; fills the pointers. */
static err_code check_entry(const cbor_item *en, const char *cs, size_t i, const cbor_item **k, int64_t *p,
                            const cid_t **v, const cbor_item **t, err_t *e) {
    if (en->type != CBOR_MAP) return err_set(e, ERR_INVALID, "MST node %s: entry %zu is not a map", cs, i);
    *k = NULL; *t = NULL; *v = NULL;
    bool have_p = false;
    for (size_t j = 0; j < en->v.map.len; j++) {
        const cbor_pair *pr = &en->v.map.pairs[j];
        const cbor_item *val = pr->value;
        if (pr->key_len != 1) goto unknown;
        switch (pr->key[0]) {
        case 'k':
            if (val->type != CBOR_BYTES) return err_set(e, ERR_INVALID, "MST node %s: entry %zu: \"k\" is not bytes", cs, i);
            *k = val;
            break;
        case 'p':
            if (val->type != CBOR_INT || val->v.integer < 0)
                return err_set(e, ERR_INVALID, "MST node %s: entry %zu: \"p\" is not a non-negative integer", cs, i);
            *p = val->v.integer;
            have_p = true;
            break;
        case 'v':
            if (val->type != CBOR_CID) return err_set(e, ERR_INVALID, "MST node %s: entry %zu: \"v\" is not a CID", cs, i);
            *v = &val->v.cid;
            break;
        case 't':
            if (val->type == CBOR_CID) *t = val;
            else if (val->type != CBOR_NULL) return err_set(e, ERR_INVALID, "MST node %s: entry %zu: \"t\" is neither a CID nor null", cs, i);
            break;
        default:
            goto unknown;
        }
        continue;
    unknown:
        return err_set(e, ERR_INVALID, "MST node %s: entry %zu has an unexpected field \"%.*s\"", cs, i,
                       (int)(pr->key_len > 32 ? 32 : pr->key_len), pr->key);
    }
    if (!*k || !have_p || !*v) return err_set(e, ERR_INVALID, "MST node %s: entry %zu lacks one of \"k\", \"p\", \"v\"", cs, i);
    return ERR_OK;
}

/* Loads node cid and pushes its frame. expected_layer is -1 for the root. */
static err_code push_node(walk_t *w, const cid_t *cid, int expected_layer, err_t *e) {
    char cs[CID_STR_MAX], ps[CID_STR_MAX];
    cid_format(cid, cs, sizeof cs);
    const bool is_root = w->depth == 0;
    if (is_root) snprintf(ps, sizeof ps, "the commit");
    else cid_format(&w->stack[w->depth - 1].cid, ps, sizeof ps);
    if (!is_root && expected_layer < 0)
        return err_set(e, ERR_INVALID, "MST node %s is at layer 0 but has a subtree %s", ps, cs);
    if (w->depth >= MST_MAX_LAYER + 2) /* cannot happen: layers strictly decrease */
        return err_set(e, ERR_LIMIT, "MST deeper than %d layers at node %s", MST_MAX_LAYER + 1, cs);
    if (cid->codec != CID_CODEC_DAG_CBOR)
        return err_set(e, ERR_INVALID, "MST node %s (under %s) is not a dag-cbor CID", cs, ps);

    const uint8_t *data;
    size_t len;
    err_t ge = {0};
    err_code rc = w->get(w->get_ctx, cid, &data, &len, &ge);
    if (rc == ERR_NOT_FOUND) return err_set(e, ERR_NOT_FOUND, "MST node %s (referenced by %s) is missing", cs, ps);
    if (rc) return err_set(e, rc, "reading MST node %s: %s", cs, ge.msg);

    frame_t *f = &w->stack[w->depth];
    memset(f, 0, offsetof(frame_t, key));
    f->cid = *cid;
    memcpy(f->cs, cs, sizeof cs);
    f->key_len = 0;
    if ((rc = cbor_decode(data, len, &f->doc, &ge))) return err_set(e, ERR_INVALID, "MST node %s is not valid DAG-CBOR: %s", cs, ge.msg);
    w->depth++; /* from here the frame owns doc; the caller frees the stack on error */
    w->st.nodes++;
    w->st.node_bytes += len;

    const cbor_item *root = cbor_doc_root(f->doc);
    if (root->type != CBOR_MAP) return err_set(e, ERR_INVALID, "MST node %s is not a map", cs);
    for (size_t j = 0; j < root->v.map.len; j++) {
        const cbor_pair *pr = &root->v.map.pairs[j];
        if (pr->key_len == 1 && pr->key[0] == 'e') {
            if (pr->value->type != CBOR_ARRAY) return err_set(e, ERR_INVALID, "MST node %s: \"e\" is not an array", cs);
            f->entries = pr->value;
        } else if (pr->key_len == 1 && pr->key[0] == 'l') {
            if (pr->value->type == CBOR_CID) f->left = pr->value;
            else if (pr->value->type != CBOR_NULL) return err_set(e, ERR_INVALID, "MST node %s: \"l\" is neither a CID nor null", cs);
        } else {
            return err_set(e, ERR_INVALID, "MST node %s has an unexpected field \"%.*s\"", cs,
                           (int)(pr->key_len > 32 ? 32 : pr->key_len), pr->key);
        }
    }
    if (!f->entries) return err_set(e, ERR_INVALID, "MST node %s has no \"e\" array", cs);

    size_t n = f->entries->v.array.len;
    if (n == 0) {
        if (!is_root && !f->left)
            return err_set(e, ERR_INVALID, "MST node %s (under %s) is empty: only an empty repo's root may be", cs, ps);
        if (is_root && f->left)
            return err_set(e, ERR_INVALID, "MST root %s has no entries, only a subtree: not a canonical tree", cs);
        f->layer = is_root ? -1 : expected_layer;
        return ERR_OK;
    }
    /* the layer is the height of the first key (which has no prefix to expand) */
    const cbor_item *k0, *t0;
    const cid_t *v0;
    int64_t p0 = 0;
    if ((rc = check_entry(f->entries->v.array.items[0], cs, 0, &k0, &p0, &v0, &t0, e))) return rc;
    f->layer = mst_key_height(k0->v.bytes.ptr, k0->v.bytes.len);
    if (!is_root && f->layer != expected_layer)
        return err_set(e, ERR_INVALID, "MST node %s is at layer %d but its parent %s expects layer %d", cs, f->layer, ps, expected_layer);
    return ERR_OK;
}

/* Expands, checks and visits entry i of the top frame; may push its right subtree. */
static err_code walk_entry(walk_t *w, frame_t *f, size_t i, mst_visit_fn visit, void *visit_ctx, err_t *e) {
    const char *cs = f->cs;
    char kx[80];
    const cbor_item *k, *t;
    const cid_t *v;
    int64_t p = 0;
    err_code rc = check_entry(f->entries->v.array.items[i], cs, i, &k, &p, &v, &t, e);
    if (rc) return rc;
    if ((uint64_t)p > f->key_len)
        return err_set(e, ERR_INVALID, "MST node %s: entry %zu has prefix length %lld but the previous key is %zu bytes",
                       cs, i, (long long)p, f->key_len);
    if ((size_t)p + k->v.bytes.len > MST_MAX_KEY_BYTES)
        return err_set(e, ERR_LIMIT, "MST node %s: entry %zu key is over %d bytes", cs, i, MST_MAX_KEY_BYTES);
    memcpy(f->key + p, k->v.bytes.ptr, k->v.bytes.len);
    f->key_len = (size_t)p + k->v.bytes.len;
    f->key[f->key_len] = 0;
    if (!mst_key_valid((const char *)f->key, f->key_len)) {
        key_excerpt(f->key, f->key_len, kx);
        return err_set(e, ERR_INVALID, "MST node %s: entry %zu has an invalid key \"%s\"", cs, i, kx);
    }
    int h = mst_key_height(f->key, f->key_len);
    if (h != f->layer) {
        key_excerpt(f->key, f->key_len, kx);
        return err_set(e, ERR_INVALID, "MST node %s: key \"%s\" has height %d but the node is at layer %d", cs, kx, h, f->layer);
    }
    if (w->have_last) {
        size_t n = w->last_len < f->key_len ? w->last_len : f->key_len;
        int c = memcmp(w->last_key, f->key, n);
        if (c > 0 || (c == 0 && w->last_len >= f->key_len)) {
            key_excerpt(f->key, f->key_len, kx);
            return err_set(e, ERR_INVALID, "MST node %s: key \"%s\" is not greater than the key before it: keys out of order", cs, kx);
        }
    }
    memcpy(w->last_key, f->key, f->key_len + 1);
    w->last_len = f->key_len;
    w->have_last = true;
    w->st.records++;
    if (visit && (rc = visit(visit_ctx, (const char *)f->key, f->key_len, v, e))) return rc;
    if (t) return push_node(w, &t->v.cid, f->layer - 1, e);
    return ERR_OK;
}

err_code mst_walk(const cid_t *root, mst_get_fn get, void *get_ctx, mst_visit_fn visit, void *visit_ctx,
                  mst_walk_stats *stats, err_t *e) {
    walk_t *w = calloc(1, sizeof *w);
    if (!w) return err_set(e, ERR_NOMEM, "out of memory starting an MST walk");
    w->stack = calloc(MST_MAX_LAYER + 2, sizeof *w->stack);
    if (!w->stack) { free(w); return err_set(e, ERR_NOMEM, "out of memory starting an MST walk"); }
    w->get = get;
    w->get_ctx = get_ctx;
    w->st.root_layer = -1;
    err_code rc = push_node(w, root, -1, e);
    if (!rc) w->st.root_layer = w->stack[0].layer;
    while (!rc && w->depth > 0) {
        frame_t *f = &w->stack[w->depth - 1];
        size_t n = f->entries->v.array.len;
        if (f->next == 0) {
            f->next = 1;
            if (f->left) rc = push_node(w, &f->left->v.cid, f->layer - 1, e);
        } else if (f->next - 1 < n) {
            size_t i = f->next - 1;
            f->next++;
            rc = walk_entry(w, f, i, visit, visit_ctx, e);
        } else {
            cbor_doc_free(f->doc);
            f->doc = NULL;
            w->depth--;
        }
    }
    for (int i = 0; i < w->depth; i++) cbor_doc_free(w->stack[i].doc);
    if (stats) *stats = w->st;
    free(w->stack);
    free(w);
    return rc;
}

/* ---------------------------------------------------------------- builder */

typedef struct {
    char *key;
    size_t key_len;
    cid_t value;
    bool has_t;
    cid_t t;
} bentry_t;

typedef struct {
    bool has_l;
    cid_t l;
    bentry_t *e;
    size_t n, cap;
} bnode_t;

struct mst_builder {
    mst_put_fn put;
    void *put_ctx;
    bnode_t layers[MST_MAX_LAYER + 1];
    int top;               /* highest layer holding anything, -1 if none */
    char *last_key;
    size_t last_len;
    buf_t enc;
    bool failed;
};

mst_builder *mst_builder_new(mst_put_fn put, void *put_ctx) {
    mst_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->put = put;
    b->put_ctx = put_ctx;
    b->top = -1;
    buf_init(&b->enc, CAR_MAX_BLOCK_BYTES);
    return b;
}

static void bnode_reset(bnode_t *nd) {
    for (size_t i = 0; i < nd->n; i++) free(nd->e[i].key);
    nd->n = 0;
    nd->has_l = false;
}

void mst_builder_free(mst_builder *b) {
    if (!b) return;
    for (int i = 0; i <= MST_MAX_LAYER; i++) {
        bnode_reset(&b->layers[i]);
        free(b->layers[i].e);
    }
    free(b->last_key);
    buf_free(&b->enc);
    free(b);
}

/* CBOR head (major type, argument) in shortest form. */
static err_code put_head(buf_t *o, int major, uint64_t v, err_t *e) {
    uint8_t h[9];
    size_t n;
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) { h[0] = m | (uint8_t)v; n = 1; }
    else if (v <= 0xff) { h[0] = m | 24; h[1] = (uint8_t)v; n = 2; }
    else if (v <= 0xffff) { h[0] = m | 25; h[1] = (uint8_t)(v >> 8); h[2] = (uint8_t)v; n = 3; }
    else if (v <= 0xffffffffu) { h[0] = m | 26; for (int i = 0; i < 4; i++) h[1 + i] = (uint8_t)(v >> (24 - 8 * i)); n = 5; }
    else { h[0] = m | 27; for (int i = 0; i < 8; i++) h[1 + i] = (uint8_t)(v >> (56 - 8 * i)); n = 9; }
    return buf_append(o, h, n, e);
}

static err_code put_key1(buf_t *o, char k, err_t *e) {
    err_code rc = put_head(o, 3, 1, e);
    return rc ? rc : buf_append_byte(o, (uint8_t)k, e);
}

static err_code put_cid_or_null(buf_t *o, const cid_t *c, err_t *e) {
    if (!c) return buf_append_byte(o, 0xf6, e);
    err_code rc = put_head(o, 6, 42, e);
    if (!rc) rc = put_head(o, 2, (uint64_t)c->len + 1, e);
    if (!rc) rc = buf_append_byte(o, 0x00, e);
    if (!rc) rc = buf_append(o, c->bytes, c->len, e);
    return rc;
}

/* Encodes nd canonically ({"e": [...], "l": ...}; entry keys k, p, t, v), hands the block
 * to put and gives its CID. */
static err_code emit_node(mst_builder *b, const bnode_t *nd, cid_t *out, err_t *e) {
    buf_t *o = &b->enc;
    buf_reset(o);
    err_code rc = put_head(o, 5, 2, e);
    if (!rc) rc = put_key1(o, 'e', e);
    if (!rc) rc = put_head(o, 4, nd->n, e);
    const char *prev = "";
    size_t prev_len = 0;
    for (size_t i = 0; !rc && i < nd->n; i++) {
        const bentry_t *en = &nd->e[i];
        size_t p = mst_common_prefix_len((const uint8_t *)prev, prev_len, (const uint8_t *)en->key, en->key_len);
        rc = put_head(o, 5, 4, e);
        if (!rc) rc = put_key1(o, 'k', e);
        if (!rc) rc = put_head(o, 2, en->key_len - p, e);
        if (!rc) rc = buf_append(o, en->key + p, en->key_len - p, e);
        if (!rc) rc = put_key1(o, 'p', e);
        if (!rc) rc = put_head(o, 0, p, e);
        if (!rc) rc = put_key1(o, 't', e);
        if (!rc) rc = put_cid_or_null(o, en->has_t ? &en->t : NULL, e);
        if (!rc) rc = put_key1(o, 'v', e);
        if (!rc) rc = put_cid_or_null(o, &en->value, e);
        prev = en->key;
        prev_len = en->key_len;
    }
    if (!rc) rc = put_key1(o, 'l', e);
    if (!rc) rc = put_cid_or_null(o, nd->has_l ? &nd->l : NULL, e);
    if (rc) return err_wrap(e, "encoding an MST node");
    cid_compute(out, CID_CODEC_DAG_CBOR, o->data, o->len);
    return b->put(b->put_ctx, out, o->data, o->len, e);
}

/* Closes layers 0..upto (inclusive), bottom up: each finished node becomes the trailing
 * subtree of the node one layer up. *child gets what is left for layer upto + 1. */
static err_code close_below(mst_builder *b, int upto, bool *has_child, cid_t *child, err_t *e) {
    *has_child = false;
    for (int L = 0; L <= upto; L++) {
        bnode_t *nd = &b->layers[L];
        if (*has_child) {
            if (nd->n) { nd->e[nd->n - 1].has_t = true; nd->e[nd->n - 1].t = *child; }
            else { nd->has_l = true; nd->l = *child; }
        }
        if (nd->n == 0 && !nd->has_l) { *has_child = false; continue; }
        err_code rc = emit_node(b, nd, child, e);
        if (rc) return rc;
        *has_child = true;
        bnode_reset(nd);
    }
    return ERR_OK;
}

err_code mst_builder_add(mst_builder *b, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    if (b->failed) return err_set(e, ERR_USAGE, "mst_builder_add after an error");
    char kx[80];
    key_excerpt((const uint8_t *)key, key_len, kx);
    if (!mst_key_valid(key, key_len)) return err_set(e, ERR_INVALID, "invalid MST key \"%s\"", kx);
    if (b->last_key) {
        size_t n = b->last_len < key_len ? b->last_len : key_len;
        int c = memcmp(b->last_key, key, n);
        if (c > 0 || (c == 0 && b->last_len >= key_len))
            return err_set(e, ERR_USAGE, "MST keys must be added in increasing order (\"%s\" came after a greater or equal key)", kx);
    }
    b->failed = true;
    int h = mst_key_height((const uint8_t *)key, key_len);
    bool has_child;
    cid_t child;
    err_code rc = close_below(b, h - 1, &has_child, &child, e);
    if (rc) return rc;
    bnode_t *nd = &b->layers[h];
    if (has_child) {
        if (nd->n) { nd->e[nd->n - 1].has_t = true; nd->e[nd->n - 1].t = child; }
        else { nd->has_l = true; nd->l = child; }
    }
    if (nd->n == nd->cap) {
        size_t cap = nd->cap ? nd->cap * 2 : 8;
        bentry_t *p = realloc(nd->e, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory building the MST");
        nd->e = p;
        nd->cap = cap;
    }
    char *k = malloc(key_len + 1);
    char *last = realloc(b->last_key, key_len + 1);
    if (!k || !last) {
        free(k);
        if (last) b->last_key = last;
        return err_set(e, ERR_NOMEM, "out of memory building the MST");
    }
    memcpy(k, key, key_len);
    k[key_len] = 0;
    memcpy(last, key, key_len);
    b->last_key = last;
    b->last_len = key_len;
    nd->e[nd->n++] = (bentry_t){.key = k, .key_len = key_len, .value = *value};
    if (h > b->top) b->top = h;
    b->failed = false;
    return ERR_OK;
}

err_code mst_builder_finish(mst_builder *b, cid_t *root, err_t *e) {
    if (b->failed) return err_set(e, ERR_USAGE, "mst_builder_finish after an error");
    b->failed = true;
    if (b->top < 0) {
        bnode_t empty = {0};
        return emit_node(b, &empty, root, e); /* the builder stays finished */
    }
    bool has_child;
    err_code rc = close_below(b, b->top, &has_child, root, e);
    if (rc) return rc;
    assert(has_child); /* the top layer holds at least one key */
    b->top = -1;
    return ERR_OK; /* b->failed stays set: a finished builder takes no more keys */
}
