/* cbor.c — DAG-CBOR (atproto profile): an arena that owns every item of a document, the
 * strict iterative decoder, builders and lookups, the canonical encoder and the record
 * checks (see cbor.h). Pure: no I/O, no printing. No recursion: walks use explicit stacks. */
#include "pdsmove/cbor.h"

#include <assert.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ arena */

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_FIRST_BLOCK_BYTES ((size_t)4096)
#define ARENA_MAX_BLOCK_BYTES ((size_t)1 << 20)
/* Decoding is bounded by CBOR_MAX_ITEMS and CBOR_MAX_DOC_BYTES (about 130 MiB of items at
 * worst); this caps what builders can allocate too. */
#define ARENA_LIMIT_BYTES ((size_t)512 << 20)

typedef struct arena_block {
    struct arena_block *next;
    size_t cap_bytes;
    size_t used_bytes;
    max_align_t data[];
} arena_block;

struct cbor_doc {
    arena_block *head;    /* the block being bump-allocated from is always head */
    size_t total_bytes;   /* over all blocks, against ARENA_LIMIT_BYTES */
    size_t next_block_bytes;
    cbor_item *root;
};

/* Zeroed memory (blocks come from calloc and are never reused), NULL on OOM or limit. */
static void *arena_alloc(cbor_doc *d, size_t n) {
    assert(d != NULL);
    if (n > ARENA_LIMIT_BYTES) return NULL;
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (n == 0) n = ARENA_ALIGN;
    arena_block *h = d->head;
    if (h && h->cap_bytes - h->used_bytes >= n) {
        void *p = (unsigned char *)h->data + h->used_bytes;
        h->used_bytes += n;
        return p;
    }
    bool dedicated = n > d->next_block_bytes / 4;
    size_t cap = dedicated ? n : d->next_block_bytes;
    if (cap > ARENA_LIMIT_BYTES - d->total_bytes) return NULL;
    arena_block *b = calloc(1, sizeof *b + cap);
    if (!b) return NULL;
    b->cap_bytes = cap;
    b->used_bytes = n;
    d->total_bytes += cap;
    if (dedicated && h) { /* keep bumping from the current block */
        b->next = h->next;
        h->next = b;
    } else {
        b->next = h;
        d->head = b;
        if (!dedicated && d->next_block_bytes < ARENA_MAX_BLOCK_BYTES) d->next_block_bytes *= 2;
    }
    return b->data;
}

cbor_doc *cbor_doc_new(void) {
    cbor_doc *d = calloc(1, sizeof *d);
    if (d) d->next_block_bytes = ARENA_FIRST_BLOCK_BYTES;
    return d;
}

void cbor_doc_free(cbor_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

cbor_item *cbor_doc_root(const cbor_doc *doc) { return doc ? doc->root : NULL; }

void cbor_doc_set_root(cbor_doc *doc, cbor_item *root) {
    assert(doc != NULL);
    doc->root = root;
}

/* ================================================================ helpers */

const char *cbor_type_name(cbor_type t) {
    switch (t) {
    case CBOR_NULL: return "null";
    case CBOR_BOOL: return "bool";
    case CBOR_INT: return "integer";
    case CBOR_BYTES: return "bytes";
    case CBOR_TEXT: return "text";
    case CBOR_ARRAY: return "array";
    case CBOR_MAP: return "map";
    case CBOR_CID: return "cid";
    }
    return "unknown";
}

/* Offset of the first byte that is not part of well-formed UTF-8, or len. */
static size_t utf8_bad_offset(const unsigned char *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len - i - 1 < n) return i;
        for (size_t k = 1; k <= n; k++) {
            unsigned cc = p[i + k];
            if ((cc & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

bool cbor_text_valid(const char *s, size_t len) {
    return len == 0 || utf8_bad_offset((const unsigned char *)s, len) == len;
}

/* Canonical DAG-CBOR key order: shorter first, then bytewise. */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) return alen < blen ? -1 : 1;
    if (alen == 0) return 0;
    return memcmp(a, b, alen);
}

/* A map's pairs array is preceded by a header holding its capacity. */
#define MAP_HDR_BYTES ARENA_ALIGN

static size_t map_capacity(const cbor_item *m) {
    assert(m->type == CBOR_MAP && m->v.map.pairs != NULL);
    const size_t *cap = (const size_t *)(const void *)((const unsigned char *)m->v.map.pairs - MAP_HDR_BYTES);
    return *cap;
}

static cbor_item *new_item(cbor_doc *doc, cbor_type t) {
    cbor_item *it = arena_alloc(doc, sizeof *it);
    if (it) it->type = t;
    return it;
}

/* Copy of p[0..len) followed by a NUL. */
static char *arena_copy(cbor_doc *doc, const void *p, size_t len) {
    if (len == SIZE_MAX) return NULL;
    char *c = arena_alloc(doc, len + 1);
    if (c && len) memcpy(c, p, len);
    return c;
}

/* Index of the pair with this key, or -(insertion point) - 1. Pairs are in canonical order. */
static ptrdiff_t map_find(const cbor_item *m, const char *key, size_t key_len) {
    size_t lo = 0, hi = m->v.map.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const cbor_pair *p = &m->v.map.pairs[mid];
        int c = key_cmp(p->key, p->key_len, key, key_len);
        if (c == 0) return (ptrdiff_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -(ptrdiff_t)lo - 1;
}

/* ================================================================ builders */

cbor_item *cbor_new_null(cbor_doc *doc) { return new_item(doc, CBOR_NULL); }

cbor_item *cbor_new_bool(cbor_doc *doc, bool v) {
    cbor_item *it = new_item(doc, CBOR_BOOL);
    if (it) it->v.boolean = v;
    return it;
}

cbor_item *cbor_new_int(cbor_doc *doc, int64_t v) {
    cbor_item *it = new_item(doc, CBOR_INT);
    if (it) it->v.integer = v;
    return it;
}

cbor_item *cbor_new_text(cbor_doc *doc, const char *s, size_t len) {
    assert(s != NULL || len == 0);
    cbor_item *it = new_item(doc, CBOR_TEXT);
    if (!it) return NULL;
    char *c = arena_copy(doc, s, len);
    if (!c) return NULL;
    it->v.text.ptr = c;
    it->v.text.len = len;
    return it;
}

cbor_item *cbor_new_textz(cbor_doc *doc, const char *s) {
    assert(s != NULL);
    return cbor_new_text(doc, s, strlen(s));
}

cbor_item *cbor_new_bytes(cbor_doc *doc, const uint8_t *p, size_t len) {
    assert(p != NULL || len == 0);
    cbor_item *it = new_item(doc, CBOR_BYTES);
    if (!it) return NULL;
    char *c = arena_copy(doc, p, len);
    if (!c) return NULL;
    it->v.bytes.ptr = (const uint8_t *)c;
    it->v.bytes.len = len;
    return it;
}

cbor_item *cbor_new_cid(cbor_doc *doc, const cid_t *cid) {
    assert(cid != NULL);
    cbor_item *it = new_item(doc, CBOR_CID);
    if (it) it->v.cid = *cid;
    return it;
}

cbor_item *cbor_new_array(cbor_doc *doc, size_t len) {
    if (len > ARENA_LIMIT_BYTES / sizeof(cbor_item *)) return NULL;
    cbor_item *it = new_item(doc, CBOR_ARRAY);
    if (!it) return NULL;
    cbor_item **items = arena_alloc(doc, len * sizeof *items);
    if (!items) return NULL;
    it->v.array.items = items;
    it->v.array.len = len;
    return it;
}

cbor_item *cbor_new_map(cbor_doc *doc, size_t capacity) {
    if (capacity > (ARENA_LIMIT_BYTES - MAP_HDR_BYTES) / sizeof(cbor_pair)) return NULL;
    cbor_item *it = new_item(doc, CBOR_MAP);
    if (!it) return NULL;
    unsigned char *mem = arena_alloc(doc, MAP_HDR_BYTES + capacity * sizeof(cbor_pair));
    if (!mem) return NULL;
    *(size_t *)(void *)mem = capacity;
    it->v.map.pairs = (cbor_pair *)(void *)(mem + MAP_HDR_BYTES);
    it->v.map.len = 0;
    return it;
}

err_code cbor_map_putn(cbor_doc *doc, cbor_item *map, const char *key, size_t key_len, cbor_item *value,
                       err_t *e) {
    assert(doc != NULL);
    /* builders return NULL only on OOM, so callers may pass their results straight in */
    if (!map || !value) return err_set(e, ERR_NOMEM, "out of memory building a map (NULL map or value)");
    if (map->type != CBOR_MAP) return err_set(e, ERR_USAGE, "cbor_map_put: target is a %s, not a map", cbor_type_name(map->type));
    if (!key) return err_set(e, ERR_USAGE, "cbor_map_put: NULL key");
    ptrdiff_t at = map_find(map, key, key_len);
    if (at >= 0) return err_set(e, ERR_INVALID, "duplicate map key \"%.*s\"", (int)(key_len > 200 ? 200 : key_len), key);
    size_t pos = (size_t)(-(at + 1));
    size_t len = map->v.map.len;
    if (len >= map_capacity(map))
        return err_set(e, ERR_LIMIT, "map is full (capacity %zu) adding key \"%.*s\"", map_capacity(map),
                       (int)(key_len > 200 ? 200 : key_len), key);
    char *k = arena_copy(doc, key, key_len);
    if (!k) return err_set(e, ERR_NOMEM, "out of memory adding a map key");
    cbor_pair *pairs = map->v.map.pairs;
    memmove(&pairs[pos + 1], &pairs[pos], (len - pos) * sizeof *pairs);
    pairs[pos] = (cbor_pair){.key = k, .key_len = key_len, .value = value};
    map->v.map.len = len + 1;
    return ERR_OK;
}

err_code cbor_map_put(cbor_doc *doc, cbor_item *map, const char *key, cbor_item *value, err_t *e) {
    if (!key) return err_set(e, ERR_USAGE, "cbor_map_put: NULL key");
    return cbor_map_putn(doc, map, key, strlen(key), value, e);
}

/* ================================================================ lookups */

const cbor_item *cbor_map_get(const cbor_item *map, const char *key) {
    if (!map || map->type != CBOR_MAP || !key) return NULL;
    ptrdiff_t at = map_find(map, key, strlen(key));
    return at >= 0 ? map->v.map.pairs[at].value : NULL;
}

const char *cbor_map_get_text(const cbor_item *map, const char *key, size_t *len) {
    const cbor_item *it = cbor_map_get(map, key);
    if (!it || it->type != CBOR_TEXT) return NULL;
    if (len) *len = it->v.text.len;
    return it->v.text.ptr;
}

const cid_t *cbor_map_get_cid(const cbor_item *map, const char *key) {
    const cbor_item *it = cbor_map_get(map, key);
    return it && it->type == CBOR_CID ? &it->v.cid : NULL;
}

/* ================================================================ decoder */

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
    cbor_doc *doc;
    err_t *e;
    size_t items; /* values in the document so far: the root plus every declared length */
} reader;

typedef struct {
    cbor_item *item;
    size_t want; /* declared number of elements or pairs */
    size_t have;
} dec_frame;

static err_code oom(reader *r) {
    return err_set(r->e, ERR_NOMEM, "DAG-CBOR: out of memory at byte %zu", r->pos);
}

static const char *major_name(int major) {
    static const char *const names[8] = {"unsigned integer", "negative integer", "byte string", "text string",
                                          "array", "map", "tag", "simple value"};
    return names[major & 7];
}

/* Reads one head: major type and argument, enforcing the shortest form. Major 7 only yields
 * false/true/null (arg 20..22); everything else there is refused here. */
static err_code read_head(reader *r, int *major, uint64_t *arg) {
    size_t at = r->pos;
    if (at >= r->len)
        return err_set(r->e, ERR_TRUNCATED, "DAG-CBOR: input ends at byte %zu where a data item was expected", at);
    uint8_t b = r->p[at];
    int mj = b >> 5;
    unsigned ai = b & 0x1f;
    if (mj == 7) {
        switch (ai) {
        case 20: case 21: case 22:
            *major = 7;
            *arg = ai;
            r->pos = at + 1;
            return ERR_OK;
        case 23:
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: 'undefined' (0xf7) at byte %zu is not allowed", at);
        case 25: case 26: case 27:
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: %s float (0x%02x) at byte %zu: floats are not allowed in atproto data",
                           ai == 25 ? "half-precision" : ai == 26 ? "single-precision" : "double-precision", b, at);
        case 31:
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: 'break' (0xff) at byte %zu: indefinite lengths are not allowed", at);
        default:
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: simple value 0x%02x at byte %zu: only false, true and null are allowed", b, at);
        }
    }
    if (ai == 31) {
        if (mj >= 2 && mj <= 5)
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: indefinite-length %s at byte %zu is not allowed", major_name(mj), at);
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: malformed %s head 0x%02x at byte %zu", major_name(mj), b, at);
    }
    if (ai >= 28)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: reserved additional information %u in head 0x%02x at byte %zu", ai, b, at);
    if (ai < 24) {
        *major = mj;
        *arg = ai;
        r->pos = at + 1;
        return ERR_OK;
    }
    size_t n = (size_t)1 << (ai - 24);
    if (r->len - at - 1 < n)
        return err_set(r->e, ERR_TRUNCATED, "DAG-CBOR: input ends inside the %zu-byte argument of the %s at byte %zu", n,
                       major_name(mj), at);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | r->p[at + 1 + i];
    static const uint64_t min_for[4] = {24, 0x100, 0x10000, 0x100000000ull};
    if (v < min_for[ai - 24])
        return err_set(r->e, ERR_INVALID,
                       "DAG-CBOR: non-canonical %s at byte %zu: argument %llu is encoded in %zu bytes, a shorter form exists",
                       major_name(mj), at, (unsigned long long)v, n);
    *major = mj;
    *arg = v;
    r->pos = at + 1 + n;
    return ERR_OK;
}

/* Checks that a string of arg bytes fits in what is left of the input. */
static err_code string_fits(reader *r, int major, uint64_t arg, size_t at) {
    if (arg > r->len - r->pos)
        return err_set(r->e, ERR_TRUNCATED, "DAG-CBOR: %s at byte %zu claims %llu bytes but only %zu remain", major_name(major), at,
                       (unsigned long long)arg, r->len - r->pos);
    return ERR_OK;
}

/* Reads a map key (a text string) and checks it sorts after the previous key. */
static err_code read_key(reader *r, const cbor_item *map, const char **key, size_t *key_len) {
    size_t at = r->pos;
    int mj;
    uint64_t arg;
    err_code rc = read_head(r, &mj, &arg);
    if (rc) return rc;
    if (mj != 3)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: map key at byte %zu is a %s; keys must be text strings", at, major_name(mj));
    if ((rc = string_fits(r, mj, arg, at))) return rc;
    size_t n = (size_t)arg;
    const char *s = (const char *)r->p + r->pos;
    size_t bad = utf8_bad_offset((const unsigned char *)s, n);
    if (bad != n)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: map key at byte %zu has invalid UTF-8 at byte %zu", at, r->pos + bad);
    size_t have = map->v.map.len;
    if (have > 0) {
        const cbor_pair *prev = &map->v.map.pairs[have - 1];
        int c = key_cmp(prev->key, prev->key_len, s, n);
        if (c == 0)
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: duplicate map key \"%.*s\" at byte %zu", (int)(n > 200 ? 200 : n), s, at);
        if (c > 0)
            return err_set(r->e, ERR_INVALID,
                           "DAG-CBOR: map key \"%.*s\" at byte %zu sorts before the previous key \"%.*s\" (keys must be sorted by length, then bytewise)",
                           (int)(n > 100 ? 100 : n), s, at, (int)(prev->key_len > 100 ? 100 : prev->key_len), prev->key);
    }
    char *k = arena_copy(r->doc, s, n);
    if (!k) return oom(r);
    r->pos += n;
    *key = k;
    *key_len = n;
    return ERR_OK;
}

static err_code read_cid(reader *r, size_t tag_at, cbor_item **out) {
    size_t at = r->pos;
    int mj;
    uint64_t arg;
    err_code rc = read_head(r, &mj, &arg);
    if (rc) return rc;
    if (mj != 2)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: tag 42 (CID) at byte %zu wraps a %s; it must wrap a byte string", tag_at,
                       major_name(mj));
    if ((rc = string_fits(r, mj, arg, at))) return rc;
    size_t n = (size_t)arg;
    const uint8_t *b = r->p + r->pos;
    if (n == 0 || b[0] != 0x00)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: CID at byte %zu does not start with the 0x00 multibase prefix", tag_at);
    cbor_item *it = new_item(r->doc, CBOR_CID);
    if (!it) return oom(r);
    err_t ce;
    size_t used = 0;
    rc = cid_from_bytes(&it->v.cid, b + 1, n - 1, &used, &ce);
    if (rc) /* the byte string itself is complete, so a short CID is invalid, not truncated input */
        return err_set(r->e, rc == ERR_TRUNCATED ? ERR_INVALID : rc, "DAG-CBOR: CID at byte %zu: %s", tag_at, ce.msg);
    if (used != n - 1)
        return err_set(r->e, ERR_INVALID, "DAG-CBOR: CID at byte %zu is followed by %zu stray byte(s) inside its byte string",
                       tag_at, n - 1 - used);
    r->pos += n;
    *out = it;
    return ERR_OK;
}

/* Reads one item. Strings, integers and CIDs are complete; an array or map comes back with its
 * storage allocated and *want set to the declared length, for the caller to fill. */
static err_code read_item(reader *r, size_t depth, cbor_item **out, size_t *want) {
    size_t at = r->pos;
    int mj;
    uint64_t arg;
    err_code rc = read_head(r, &mj, &arg);
    if (rc) return rc;
    *want = 0;
    cbor_item *it = NULL;
    switch (mj) {
    case 0:
    case 1:
        if (arg > (uint64_t)INT64_MAX)
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: %s at byte %zu is outside the int64 range", major_name(mj), at);
        it = new_item(r->doc, CBOR_INT);
        if (!it) return oom(r);
        it->v.integer = mj == 0 ? (int64_t)arg : -1 - (int64_t)arg;
        break;
    case 2:
    case 3: {
        if ((rc = string_fits(r, mj, arg, at))) return rc;
        size_t n = (size_t)arg;
        const uint8_t *s = r->p + r->pos;
        if (mj == 3) {
            size_t bad = utf8_bad_offset(s, n);
            if (bad != n)
                return err_set(r->e, ERR_INVALID, "DAG-CBOR: text string at byte %zu has invalid UTF-8 at byte %zu", at, r->pos + bad);
        }
        it = new_item(r->doc, mj == 2 ? CBOR_BYTES : CBOR_TEXT);
        char *c = it ? arena_copy(r->doc, s, n) : NULL;
        if (!c) return oom(r);
        if (mj == 2) {
            it->v.bytes.ptr = (const uint8_t *)c;
            it->v.bytes.len = n;
        } else {
            it->v.text.ptr = c;
            it->v.text.len = n;
        }
        r->pos += n;
        break;
    }
    case 4:
    case 5: {
        if (depth + 1 > CBOR_MAX_DEPTH)
            return err_set(r->e, ERR_LIMIT, "DAG-CBOR: %s at byte %zu nests deeper than the limit of %d", major_name(mj), at,
                           CBOR_MAX_DEPTH);
        if (arg > CBOR_MAX_ITEMS - r->items)
            return err_set(r->e, ERR_LIMIT, "DAG-CBOR: %s at byte %zu with %llu entries takes the document over %u items",
                           major_name(mj), at, (unsigned long long)arg, CBOR_MAX_ITEMS);
        /* every element takes at least one byte, every pair two */
        size_t left = r->len - r->pos;
        if ((mj == 4 && arg > left) || (mj == 5 && arg > left / 2))
            return err_set(r->e, ERR_TRUNCATED, "DAG-CBOR: %s at byte %zu claims %llu entries but only %zu bytes remain",
                           major_name(mj), at, (unsigned long long)arg, left);
        r->items += (size_t)arg;
        it = mj == 4 ? cbor_new_array(r->doc, (size_t)arg) : cbor_new_map(r->doc, (size_t)arg);
        if (!it) return oom(r);
        *want = (size_t)arg;
        break;
    }
    case 6:
        if (arg != 42)
            return err_set(r->e, ERR_INVALID, "DAG-CBOR: tag %llu at byte %zu is not allowed (only tag 42, a CID)",
                           (unsigned long long)arg, at);
        if ((rc = read_cid(r, at, &it))) return rc;
        break;
    default:
        assert(mj == 7);
        if (arg == 22) {
            it = new_item(r->doc, CBOR_NULL);
        } else {
            it = new_item(r->doc, CBOR_BOOL);
            if (it) it->v.boolean = arg == 21;
        }
        if (!it) return oom(r);
        break;
    }
    *out = it;
    return ERR_OK;
}

err_code cbor_decode(const uint8_t *data, size_t len, cbor_doc **out, err_t *e) {
    assert(out != NULL);
    *out = NULL;
    if (!data && len) return err_set(e, ERR_USAGE, "cbor_decode: NULL data");
    if (len > CBOR_MAX_DOC_BYTES)
        return err_set(e, ERR_LIMIT, "DAG-CBOR: document of %zu bytes is over the limit of %zu", len, CBOR_MAX_DOC_BYTES);
    cbor_doc *doc = cbor_doc_new();
    if (!doc) return err_set(e, ERR_NOMEM, "DAG-CBOR: out of memory");
    reader r = {.p = data, .len = len, .pos = 0, .doc = doc, .e = e, .items = 1};
    dec_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    cbor_item *root = NULL;
    err_code rc = ERR_OK;
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        dec_frame *top = depth ? &stack[depth - 1] : NULL;
        if (top && top->item->type == CBOR_MAP && (rc = read_key(&r, top->item, &key, &key_len))) break;
        cbor_item *it = NULL;
        size_t want = 0;
        if ((rc = read_item(&r, depth, &it, &want))) break;
        if (!top) {
            root = it;
        } else if (top->item->type == CBOR_ARRAY) {
            top->item->v.array.items[top->have++] = it;
        } else {
            top->item->v.map.pairs[top->have++] = (cbor_pair){.key = key, .key_len = key_len, .value = it};
            top->item->v.map.len = top->have;
        }
        if (want > 0) {
            assert(depth < CBOR_MAX_DEPTH); /* read_item refused deeper containers */
            stack[depth++] = (dec_frame){.item = it, .want = want, .have = 0};
        }
        while (depth > 0 && stack[depth - 1].have == stack[depth - 1].want) depth--;
        if (depth == 0) break;
    }
    if (rc == ERR_OK && r.pos != len)
        rc = err_set(e, ERR_INVALID, "DAG-CBOR: %zu trailing byte(s) after the item that ends at byte %zu", len - r.pos, r.pos);
    if (rc != ERR_OK) {
        cbor_doc_free(doc);
        return rc;
    }
    doc->root = root;
    *out = doc;
    return ERR_OK;
}

/* ================================================================ encoder */

static err_code put_head(buf_t *out, unsigned major, uint64_t arg, err_t *e) {
    uint8_t h[9];
    size_t n;
    uint8_t m = (uint8_t)(major << 5);
    if (arg < 24) {
        h[0] = (uint8_t)(m | arg);
        n = 1;
    } else if (arg <= 0xff) {
        h[0] = m | 24;
        n = 2;
    } else if (arg <= 0xffff) {
        h[0] = m | 25;
        n = 3;
    } else if (arg <= 0xffffffffull) {
        h[0] = m | 26;
        n = 5;
    } else {
        h[0] = m | 27;
        n = 9;
    }
    for (size_t i = 1; i < n; i++) h[i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
    return buf_append(out, h, n, e);
}

/* Checks what the decoder would refuse about a map's keys: order, uniqueness, UTF-8. */
static err_code check_map_keys(const cbor_item *m, err_t *e) {
    const cbor_pair *p = m->v.map.pairs;
    for (size_t i = 0; i < m->v.map.len; i++) {
        if (!p[i].key || !p[i].value) return err_set(e, ERR_USAGE, "map pair %zu has no key or no value", i);
        if (!cbor_text_valid(p[i].key, p[i].key_len)) return err_set(e, ERR_INVALID, "map key %zu is not valid UTF-8", i);
        if (i > 0 && key_cmp(p[i - 1].key, p[i - 1].key_len, p[i].key, p[i].key_len) >= 0)
            return err_set(e, ERR_INVALID, "map key \"%.*s\" is duplicated or out of canonical order",
                           (int)(p[i].key_len > 200 ? 200 : p[i].key_len), p[i].key);
    }
    return ERR_OK;
}

/* Emits one item; for an array or map only its head (the caller walks the children). */
static err_code encode_one(const cbor_item *it, buf_t *out, err_t *e) {
    err_code rc;
    switch (it->type) {
    case CBOR_NULL: return buf_append_byte(out, 0xf6, e);
    case CBOR_BOOL: return buf_append_byte(out, it->v.boolean ? 0xf5 : 0xf4, e);
    case CBOR_INT:
        if (it->v.integer >= 0) return put_head(out, 0, (uint64_t)it->v.integer, e);
        return put_head(out, 1, (uint64_t)(-(it->v.integer + 1)), e);
    case CBOR_BYTES:
        if ((rc = put_head(out, 2, it->v.bytes.len, e))) return rc;
        return buf_append(out, it->v.bytes.ptr, it->v.bytes.len, e);
    case CBOR_TEXT:
        if (!cbor_text_valid(it->v.text.ptr, it->v.text.len)) return err_set(e, ERR_INVALID, "text item is not valid UTF-8");
        if ((rc = put_head(out, 3, it->v.text.len, e))) return rc;
        return buf_append(out, it->v.text.ptr, it->v.text.len, e);
    case CBOR_ARRAY: return put_head(out, 4, it->v.array.len, e);
    case CBOR_MAP:
        if ((rc = check_map_keys(it, e))) return rc;
        return put_head(out, 5, it->v.map.len, e);
    case CBOR_CID:
        if (it->v.cid.len == 0 || it->v.cid.len > CID_MAX_BYTES) return err_set(e, ERR_USAGE, "CID item is empty");
        if ((rc = put_head(out, 6, 42, e))) return rc;
        if ((rc = put_head(out, 2, (uint64_t)it->v.cid.len + 1, e))) return rc;
        if ((rc = buf_append_byte(out, 0x00, e))) return rc;
        return buf_append(out, it->v.cid.bytes, it->v.cid.len, e);
    }
    return err_set(e, ERR_USAGE, "item has unknown type %d", (int)it->type);
}

typedef struct {
    const cbor_item *item;
    size_t next;
} walk_frame;

static size_t child_count(const cbor_item *it) {
    return it->type == CBOR_ARRAY ? it->v.array.len : it->type == CBOR_MAP ? it->v.map.len : 0;
}

err_code cbor_encode(const cbor_item *item, buf_t *out, err_t *e) {
    assert(out != NULL);
    if (!item) return err_set(e, ERR_USAGE, "cbor_encode: NULL item");
    size_t start = out->len;
    walk_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    const cbor_item *cur = item;
    err_code rc = ERR_OK;
    for (;;) {
        if (cur->type == CBOR_ARRAY || cur->type == CBOR_MAP) {
            if (depth + 1 > CBOR_MAX_DEPTH) {
                rc = err_set(e, ERR_LIMIT, "cannot encode: nesting deeper than the limit of %d", CBOR_MAX_DEPTH);
                break;
            }
        }
        if ((rc = encode_one(cur, out, e))) break;
        if (child_count(cur) > 0) stack[depth++] = (walk_frame){.item = cur, .next = 0};
        cur = NULL;
        while (depth > 0 && !cur) {
            walk_frame *top = &stack[depth - 1];
            if (top->next == child_count(top->item)) {
                depth--;
                continue;
            }
            size_t i = top->next++;
            if (top->item->type == CBOR_ARRAY) {
                cur = top->item->v.array.items[i];
                if (!cur) rc = err_set(e, ERR_USAGE, "cannot encode: array element %zu is unset", i);
            } else {
                const cbor_pair *p = &top->item->v.map.pairs[i];
                if (!(rc = put_head(out, 3, p->key_len, e))) rc = buf_append(out, p->key, p->key_len, e);
                cur = p->value;
            }
            if (rc) break;
        }
        if (rc || !cur) break;
    }
    if (rc) out->len = start;
    return rc;
}

/* ================================================================ record checks */

static err_code check_blob(const cbor_item *m, const char *path, err_t *e) {
    const cbor_item *ref = cbor_map_get(m, "ref");
    const cbor_item *mime = cbor_map_get(m, "mimeType");
    const cbor_item *size = cbor_map_get(m, "size");
    if (!ref || ref->type != CBOR_CID)
        return err_set(e, ERR_INVALID, "blob at %s: \"ref\" is %s, must be a CID link", path, ref ? cbor_type_name(ref->type) : "missing");
    if (!mime || mime->type != CBOR_TEXT)
        return err_set(e, ERR_INVALID, "blob at %s: \"mimeType\" is %s, must be a string", path,
                       mime ? cbor_type_name(mime->type) : "missing");
    if (!size || size->type != CBOR_INT || size->v.integer < 0)
        return err_set(e, ERR_INVALID, "blob at %s: \"size\" is %s, must be a non-negative integer", path,
                       size ? cbor_type_name(size->type) : "missing");
    if (m->v.map.len != 4)
        return err_set(e, ERR_INVALID, "blob at %s has %zu keys; only $type, ref, mimeType and size are allowed", path, m->v.map.len);
    return ERR_OK;
}

/* "$.a[3].b" for the current walk position (for messages only; truncated if long). */
static void walk_path(const walk_frame *stack, size_t depth, char *out, size_t out_size) {
    size_t n = (size_t)snprintf(out, out_size, "$");
    for (size_t i = 0; i < depth && n < out_size; i++) {
        const cbor_item *c = stack[i].item;
        size_t idx = stack[i].next - 1;
        if (c->type == CBOR_ARRAY) n += (size_t)snprintf(out + n, out_size - n, "[%zu]", idx);
        else n += (size_t)snprintf(out + n, out_size - n, ".%.*s", (int)(c->v.map.pairs[idx].key_len > 64 ? 64 : c->v.map.pairs[idx].key_len),
                                   c->v.map.pairs[idx].key);
    }
}

err_code cbor_check_record(const cbor_item *root, err_t *e) {
    if (!root) return err_set(e, ERR_USAGE, "cbor_check_record: NULL record");
    if (root->type != CBOR_MAP) return err_set(e, ERR_INVALID, "record is a %s; a record must be a map (JSON object)", cbor_type_name(root->type));
    walk_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    const cbor_item *cur = root;
    char path[256];
    while (cur) {
        if (cur->type == CBOR_MAP) {
            const cbor_item *t = cbor_map_get(cur, "$type");
            if (t && (t->type != CBOR_TEXT || t->v.text.len == 0)) {
                walk_path(stack, depth, path, sizeof path);
                return err_set(e, ERR_INVALID, "\"$type\" at %s is %s; it must be a non-empty string", path,
                               t->type == CBOR_TEXT ? "empty" : cbor_type_name(t->type));
            }
            if (t && t->v.text.len == 4 && memcmp(t->v.text.ptr, "blob", 4) == 0) {
                walk_path(stack, depth, path, sizeof path);
                err_code rc = check_blob(cur, path, e);
                if (rc) return rc;
            }
        }
        if (child_count(cur) > 0) {
            if (depth == CBOR_MAX_DEPTH) return err_set(e, ERR_LIMIT, "record nests deeper than the limit of %d", CBOR_MAX_DEPTH);
            stack[depth++] = (walk_frame){.item = cur, .next = 0};
        }
        cur = NULL;
        while (depth > 0 && !cur) {
            walk_frame *top = &stack[depth - 1];
            if (top->next == child_count(top->item)) {
                depth--;
                continue;
            }
            size_t i = top->next++;
            cur = top->item->type == CBOR_ARRAY ? top->item->v.array.items[i] : top->item->v.map.pairs[i].value;
            if (!cur) return err_set(e, ERR_USAGE, "record has an unset element");
        }
    }
    return ERR_OK;
}
