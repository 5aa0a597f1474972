/* cbor_json.c — the atproto JSON form of the data model ({"$link": cid}, {"$bytes": base64})
 * to and from cbor items, as JSON text and as jansson values (see cbor.h). Pure; no
 * recursion: every walk keeps an explicit stack bounded by CBOR_MAX_DEPTH. */
#include "pdsmove/cbor.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/codec.h"

/* ================================================================ JSON → items */

typedef struct {
    const char *key;
    size_t key_len;
    json_t *value;
} obj_entry;

typedef struct {
    const json_t *src;
    cbor_item *dst;
    obj_entry *entries; /* objects: members in canonical key order (malloc'd) */
    size_t n;
    size_t next;
} from_frame;

static int entry_cmp(const void *pa, const void *pb) {
    const obj_entry *a = pa, *b = pb;
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return a->key_len ? memcmp(a->key, b->key, a->key_len) : 0;
}

/* "$.a[3].b" for the member being converted (messages only). */
static void from_path(const from_frame *stack, size_t depth, char *out, size_t out_size) {
    size_t n = (size_t)snprintf(out, out_size, "$");
    for (size_t i = 0; i < depth && n < out_size; i++) {
        size_t idx = stack[i].next - 1;
        if (json_is_array(stack[i].src)) {
            n += (size_t)snprintf(out + n, out_size - n, "[%zu]", idx);
        } else {
            const obj_entry *m = &stack[i].entries[idx];
            n += (size_t)snprintf(out + n, out_size - n, ".%.*s", (int)(m->key_len > 64 ? 64 : m->key_len), m->key);
        }
    }
}

static err_code json_link(cbor_doc *doc, const json_t *v, cbor_item **out, err_t *e) {
    if (json_object_size(v) != 1)
        return err_set(e, ERR_INVALID, "a \"$link\" object must have exactly one key, this one has %zu",
                       json_object_size(v));
    const json_t *s = json_object_get(v, "$link");
    if (!json_is_string(s)) return err_set(e, ERR_INVALID, "\"$link\" must be a CID string");
    if (strlen(json_string_value(s)) != json_string_length(s))
        return err_set(e, ERR_INVALID, "\"$link\" contains U+0000");
    cid_t cid;
    err_t ce;
    err_code rc = cid_parse(&cid, json_string_value(s), &ce);
    if (rc) return err_set(e, rc, "bad \"$link\": %s", ce.msg);
    *out = cbor_new_cid(doc, &cid);
    return *out ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory converting JSON");
}

static err_code json_bytes(cbor_doc *doc, const json_t *v, cbor_item **out, err_t *e) {
    if (json_object_size(v) != 1)
        return err_set(e, ERR_INVALID, "a \"$bytes\" object must have exactly one key, this one has %zu",
                       json_object_size(v));
    const json_t *s = json_object_get(v, "$bytes");
    if (!json_is_string(s)) return err_set(e, ERR_INVALID, "\"$bytes\" must be a base64 string");
    size_t in_len = json_string_length(s);
    size_t cap = in_len / 4 * 3 + 3;
    uint8_t *tmp = malloc(cap);
    if (!tmp) return err_set(e, ERR_NOMEM, "out of memory converting JSON");
    size_t n = 0;
    err_t ce;
    err_code rc = base64_decode(json_string_value(s), in_len, tmp, cap, &n, &ce);
    if (rc) {
        free(tmp);
        return err_set(e, rc, "bad \"$bytes\": %s", ce.msg);
    }
    *out = cbor_new_bytes(doc, tmp, n);
    free(tmp);
    return *out ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory converting JSON");
}

static err_code json_number(cbor_doc *doc, const json_t *v, cbor_item **out, err_t *e) {
    int64_t i;
    if (json_is_integer(v)) {
        i = (int64_t)json_integer_value(v);
    } else {
        double d = json_real_value(v);
        /* 2^63 is exact as a double; integral values in [-2^63, 2^63) convert exactly */
        if (!(d == trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return err_set(e, ERR_INVALID, "number %.17g is not an integer (floats are not allowed in atproto data)",
                           d);
        i = (int64_t)d;
    }
    *out = cbor_new_int(doc, i);
    return *out ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory converting JSON");
}

/* Builds an object's member list in canonical key order. */
static err_code object_entries(const json_t *v, obj_entry **out, size_t *n_out, err_t *e) {
    size_t n = json_object_size(v);
    *out = NULL;
    *n_out = 0;
    if (n == 0) return ERR_OK;
    obj_entry *list = calloc(n, sizeof *list);
    if (!list) return err_set(e, ERR_NOMEM, "out of memory converting JSON");
    size_t i = 0;
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach((json_t *)v, key, key_len, val) {
        assert(i < n);
        list[i++] = (obj_entry){.key = key, .key_len = key_len, .value = val};
    }
    assert(i == n);
    qsort(list, n, sizeof *list, entry_cmp);
    for (i = 1; i < n; i++)
        if (entry_cmp(&list[i - 1], &list[i]) == 0) {
            free(list);
            return err_set(e, ERR_INVALID, "duplicate key \"%.*s\"", (int)(list[i].key_len > 64 ? 64 : list[i].key_len),
                           list[i].key);
        }
    *out = list;
    *n_out = n;
    return ERR_OK;
}

/* Converts one JSON value; arrays and plain objects come back empty with *frame_out set up
 * for the caller to fill. */
static err_code from_one(cbor_doc *doc, const json_t *v, cbor_item **out, from_frame *frame, err_t *e) {
    *out = NULL;
    memset(frame, 0, sizeof *frame);
    switch (json_typeof(v)) {
    case JSON_NULL: *out = cbor_new_null(doc); break;
    case JSON_TRUE: *out = cbor_new_bool(doc, true); break;
    case JSON_FALSE: *out = cbor_new_bool(doc, false); break;
    case JSON_INTEGER:
    case JSON_REAL: return json_number(doc, v, out, e);
    case JSON_STRING: {
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        if (!cbor_text_valid(s, n)) return err_set(e, ERR_INVALID, "string is not valid UTF-8");
        *out = cbor_new_text(doc, s, n);
        break;
    }
    case JSON_ARRAY:
        *out = cbor_new_array(doc, json_array_size(v));
        frame->src = v;
        frame->n = json_array_size(v);
        break;
    case JSON_OBJECT: {
        if (json_object_get(v, "$link")) return json_link(doc, v, out, e);
        if (json_object_get(v, "$bytes")) return json_bytes(doc, v, out, e);
        err_code rc = object_entries(v, &frame->entries, &frame->n, e);
        if (rc) return rc;
        *out = cbor_new_map(doc, frame->n);
        frame->src = v;
        if (!*out) {
            free(frame->entries);
            frame->entries = NULL;
        }
        break;
    }
    }
    if (!*out) return err_set(e, ERR_NOMEM, "out of memory converting JSON");
    frame->dst = *out;
    return ERR_OK;
}

err_code cbor_from_jansson(cbor_doc *doc, const json_t *json, cbor_item **out, err_t *e) {
    assert(doc != NULL && out != NULL);
    *out = NULL;
    if (!json) return err_set(e, ERR_USAGE, "cbor_from_jansson: NULL value");
    from_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    size_t items = 0;
    cbor_item *root = NULL;
    const json_t *cur = json;
    err_code rc = ERR_OK;
    while (cur) {
        if (++items > CBOR_MAX_ITEMS) {
            rc = err_set(e, ERR_LIMIT, "more than %u values", CBOR_MAX_ITEMS);
            break;
        }
        if ((json_is_array(cur) || json_is_object(cur)) && depth + 1 > CBOR_MAX_DEPTH) {
            /* ($link/$bytes objects are not containers, but nothing is lost refusing them here) */
            rc = err_set(e, ERR_LIMIT, "nesting deeper than the limit of %d", CBOR_MAX_DEPTH);
            break;
        }
        cbor_item *it;
        from_frame f;
        if ((rc = from_one(doc, cur, &it, &f, e))) break;
        if (depth == 0) {
            root = it;
        } else {
            from_frame *top = &stack[depth - 1];
            if (top->dst->type == CBOR_ARRAY) {
                top->dst->v.array.items[top->next - 1] = it;
            } else {
                const obj_entry *m = &top->entries[top->next - 1];
                /* entries are sorted and unique, so this appends */
                if ((rc = cbor_map_putn(doc, top->dst, m->key, m->key_len, it, e))) {
                    free(f.entries);
                    break;
                }
            }
        }
        if (f.n > 0) {
            assert(depth < CBOR_MAX_DEPTH);
            stack[depth++] = f;
        }
        cur = NULL;
        while (depth > 0 && !cur) {
            from_frame *top = &stack[depth - 1];
            if (top->next == top->n) {
                free(top->entries);
                depth--;
                continue;
            }
            size_t i = top->next++;
            cur = json_is_array(top->src) ? json_array_get(top->src, i) : top->entries[i].value;
        }
    }
    if (rc) {
        char path[256];
        from_path(stack, depth, path, sizeof path);
        err_wrap(e, "JSON at %s", path);
    }
    while (depth > 0) free(stack[--depth].entries);
    if (rc) return rc;
    *out = root;
    return ERR_OK;
}

err_code cbor_from_json(cbor_doc *doc, const char *json, size_t len, cbor_item **out, err_t *e) {
    assert(doc != NULL && out != NULL);
    *out = NULL;
    if (!json) return err_set(e, ERR_USAGE, "cbor_from_json: NULL text");
    if (len > CBOR_MAX_JSON_BYTES)
        return err_set(e, ERR_LIMIT, "JSON text of %zu bytes is over the limit of %zu", len, CBOR_MAX_JSON_BYTES);
    json_error_t je;
    json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!v) {
        err_code code;
        switch (json_error_code(&je)) {
        case json_error_out_of_memory: code = ERR_NOMEM; break;
        case json_error_stack_overflow: code = ERR_LIMIT; break;
        case json_error_premature_end_of_input: code = ERR_TRUNCATED; break;
        default: code = ERR_INVALID; break;
        }
        return err_set(e, code, "JSON: %s at line %d, column %d (byte %d)", je.text, je.line, je.column, je.position);
    }
    err_code rc = cbor_from_jansson(doc, v, out, e);
    json_decref(v);
    return rc;
}

/* ================================================================ items → JSON */

typedef struct {
    const cbor_item *item;
    size_t next;
    json_t *dst; /* jansson variant only */
} to_frame;

static size_t child_count(const cbor_item *it) {
    return it->type == CBOR_ARRAY ? it->v.array.len : it->type == CBOR_MAP ? it->v.map.len : 0;
}

static int key_cmp(const cbor_pair *a, const cbor_pair *b) {
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return a->key_len ? memcmp(a->key, b->key, a->key_len) : 0;
}

/* The walk invariants both writers rely on: keys valid, unique, canonical; nothing unset. */
static err_code check_container(const cbor_item *it, err_t *e) {
    if (it->type == CBOR_ARRAY) {
        for (size_t i = 0; i < it->v.array.len; i++)
            if (!it->v.array.items[i]) return err_set(e, ERR_USAGE, "cannot convert to JSON: array element %zu is unset", i);
    } else if (it->type == CBOR_MAP) {
        const cbor_pair *p = it->v.map.pairs;
        for (size_t i = 0; i < it->v.map.len; i++) {
            if (!p[i].key || !p[i].value) return err_set(e, ERR_USAGE, "cannot convert to JSON: map pair %zu is unset", i);
            if (!cbor_text_valid(p[i].key, p[i].key_len))
                return err_set(e, ERR_INVALID, "cannot convert to JSON: map key %zu is not valid UTF-8", i);
            if (i > 0 && key_cmp(&p[i - 1], &p[i]) >= 0)
                return err_set(e, ERR_INVALID, "cannot convert to JSON: map key \"%.*s\" is duplicated or out of canonical order",
                               (int)(p[i].key_len > 64 ? 64 : p[i].key_len), p[i].key);
        }
    }
    return ERR_OK;
}

static err_code put_string(buf_t *out, const char *s, size_t n, err_t *e) {
    if (!cbor_text_valid(s, n)) return err_set(e, ERR_INVALID, "cannot convert to JSON: text is not valid UTF-8");
    err_code rc = buf_append_byte(out, '"', e);
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if ((rc = buf_append(out, s + run, i - run, e))) break;
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': rc = buf_append_str(out, "\\\"", e); break;
        case '\\': rc = buf_append_str(out, "\\\\", e); break;
        case '\n': rc = buf_append_str(out, "\\n", e); break;
        case '\r': rc = buf_append_str(out, "\\r", e); break;
        case '\t': rc = buf_append_str(out, "\\t", e); break;
        case '\b': rc = buf_append_str(out, "\\b", e); break;
        case '\f': rc = buf_append_str(out, "\\f", e); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = buf_append_str(out, esc, e);
            break;
        }
    }
    if (!rc) rc = buf_append(out, s + run, n - run, e);
    if (!rc) rc = buf_append_byte(out, '"', e);
    return rc;
}

static err_code put_scalar(const cbor_item *it, buf_t *out, err_t *e) {
    char tmp[CID_STR_MAX + 16];
    err_code rc;
    switch (it->type) {
    case CBOR_NULL: return buf_append_str(out, "null", e);
    case CBOR_BOOL: return buf_append_str(out, it->v.boolean ? "true" : "false", e);
    case CBOR_INT:
        snprintf(tmp, sizeof tmp, "%" PRId64, it->v.integer);
        return buf_append_str(out, tmp, e);
    case CBOR_TEXT: return put_string(out, it->v.text.ptr, it->v.text.len, e);
    case CBOR_CID:
        if (it->v.cid.len == 0 || cid_format(&it->v.cid, tmp, sizeof tmp) == 0)
            return err_set(e, ERR_USAGE, "cannot convert to JSON: CID item is empty");
        if ((rc = buf_append_str(out, "{\"$link\":\"", e))) return rc;
        if ((rc = buf_append_str(out, tmp, e))) return rc;
        return buf_append_str(out, "\"}", e);
    case CBOR_BYTES: {
        size_t n = base64_encoded_len(it->v.bytes.len);
        if ((rc = buf_append_str(out, "{\"$bytes\":\"", e))) return rc;
        if ((rc = buf_reserve(out, n + 1, e))) return rc;
        if (n) base64_encode(it->v.bytes.ptr, it->v.bytes.len, (char *)out->data + out->len, n + 1);
        out->len += n;
        return buf_append_str(out, "\"}", e);
    }
    case CBOR_ARRAY:
    case CBOR_MAP: break;
    }
    return err_set(e, ERR_USAGE, "cannot convert to JSON: item has unexpected type %d", (int)it->type);
}

err_code cbor_to_json(const cbor_item *item, buf_t *out, err_t *e) {
    assert(out != NULL);
    if (!item) return err_set(e, ERR_USAGE, "cbor_to_json: NULL item");
    size_t start = out->len;
    to_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    const cbor_item *cur = item;
    err_code rc = ERR_OK;
    while (cur && !rc) {
        if (cur->type == CBOR_ARRAY || cur->type == CBOR_MAP) {
            if (depth + 1 > CBOR_MAX_DEPTH) {
                rc = err_set(e, ERR_LIMIT, "cannot convert to JSON: nesting deeper than the limit of %d", CBOR_MAX_DEPTH);
                break;
            }
            if ((rc = check_container(cur, e))) break;
            if ((rc = buf_append_byte(out, cur->type == CBOR_ARRAY ? '[' : '{', e))) break;
            stack[depth++] = (to_frame){.item = cur, .next = 0};
        } else if ((rc = put_scalar(cur, out, e))) {
            break;
        }
        cur = NULL;
        while (depth > 0 && !cur && !rc) {
            to_frame *top = &stack[depth - 1];
            const cbor_item *c = top->item;
            if (top->next == child_count(c)) {
                rc = buf_append_byte(out, c->type == CBOR_ARRAY ? ']' : '}', e);
                depth--;
                continue;
            }
            size_t i = top->next++;
            if (i > 0 && (rc = buf_append_byte(out, ',', e))) break;
            if (c->type == CBOR_ARRAY) {
                cur = c->v.array.items[i];
            } else {
                const cbor_pair *p = &c->v.map.pairs[i];
                if (!(rc = put_string(out, p->key, p->key_len, e))) rc = buf_append_byte(out, ':', e);
                cur = p->value;
            }
        }
    }
    if (rc) out->len = start;
    return rc;
}

/* One item as a new jansson value; arrays and maps come back empty. */
static json_t *to_jansson_one(const cbor_item *it, err_t *e) {
    char tmp[CID_STR_MAX];
    json_t *v = NULL;
    switch (it->type) {
    case CBOR_NULL: v = json_null(); break;
    case CBOR_BOOL: v = json_boolean(it->v.boolean); break;
    case CBOR_INT: v = json_integer((json_int_t)it->v.integer); break;
    case CBOR_TEXT:
        if (!cbor_text_valid(it->v.text.ptr, it->v.text.len)) {
            err_set(e, ERR_INVALID, "cannot convert to JSON: text is not valid UTF-8");
            return NULL;
        }
        v = json_stringn(it->v.text.ptr, it->v.text.len);
        break;
    case CBOR_ARRAY: v = json_array(); break;
    case CBOR_MAP: v = json_object(); break;
    case CBOR_CID:
        if (it->v.cid.len == 0 || cid_format(&it->v.cid, tmp, sizeof tmp) == 0) {
            err_set(e, ERR_USAGE, "cannot convert to JSON: CID item is empty");
            return NULL;
        }
        v = json_pack("{s:s}", "$link", tmp);
        break;
    case CBOR_BYTES: {
        size_t n = base64_encoded_len(it->v.bytes.len);
        char *b64 = malloc(n + 1);
        if (!b64) break;
        b64[0] = 0;
        if (n) base64_encode(it->v.bytes.ptr, it->v.bytes.len, b64, n + 1);
        v = json_pack("{s:s}", "$bytes", b64);
        free(b64);
        break;
    }
    default:
        err_set(e, ERR_USAGE, "cannot convert to JSON: item has unexpected type %d", (int)it->type);
        return NULL;
    }
    if (!v) err_set(e, ERR_NOMEM, "out of memory converting to JSON");
    return v;
}

json_t *cbor_to_jansson(const cbor_item *item, err_t *e) {
    if (!item) {
        err_set(e, ERR_USAGE, "cbor_to_jansson: NULL item");
        return NULL;
    }
    to_frame stack[CBOR_MAX_DEPTH];
    size_t depth = 0;
    json_t *root = NULL;
    const cbor_item *cur = item;
    const cbor_pair *pair = NULL; /* the pair cur is the value of, when the parent is a map */
    err_code rc = ERR_OK;
    while (cur) {
        bool container = cur->type == CBOR_ARRAY || cur->type == CBOR_MAP;
        if (container && depth + 1 > CBOR_MAX_DEPTH) {
            rc = err_set(e, ERR_LIMIT, "cannot convert to JSON: nesting deeper than the limit of %d", CBOR_MAX_DEPTH);
            break;
        }
        if (container && (rc = check_container(cur, e))) break;
        json_t *v = to_jansson_one(cur, e);
        if (!v) {
            rc = ERR_INVALID;
            break;
        }
        if (depth == 0) {
            root = v;
        } else {
            /* the parent takes the reference, so a failure below frees v with root */
            json_t *parent = stack[depth - 1].dst;
            int bad = json_is_array(parent) ? json_array_append_new(parent, v)
                                            : json_object_setn_new(parent, pair->key, pair->key_len, v);
            if (bad) {
                rc = err_set(e, ERR_NOMEM, "out of memory converting to JSON");
                break;
            }
        }
        if (container) stack[depth++] = (to_frame){.item = cur, .next = 0, .dst = v};
        cur = NULL;
        while (depth > 0 && !cur) {
            to_frame *top = &stack[depth - 1];
            if (top->next == child_count(top->item)) {
                depth--;
                continue;
            }
            size_t i = top->next++;
            if (top->item->type == CBOR_ARRAY) {
                cur = top->item->v.array.items[i];
            } else {
                pair = &top->item->v.map.pairs[i];
                cur = pair->value;
            }
        }
    }
    if (rc) {
        json_decref(root);
        return NULL;
    }
    return root;
}
