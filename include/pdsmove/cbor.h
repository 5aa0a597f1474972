/* cbor.h — DAG-CBOR (atproto profile): a strict decoder into an arena-allocated item tree,
 * a canonical encoder, and the mapping to/from the atproto JSON form ("$link", "$bytes").
 * Decoding enforces: definite lengths only, shortest integer/length encodings, map keys are
 * text, unique and sorted (length first, then bytewise), no floats, no tags except 42 (CID,
 * bytes with a leading 0x00), no undefined/simple values other than false/true/null,
 * integers within int64, valid UTF-8 text, and the nesting-depth and size limits below.
 * The decoder is iterative (no recursion whose depth the input controls). */
#ifndef PDSMOVE_CBOR_H
#define PDSMOVE_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "pdsmove/buf.h"
#include "pdsmove/cid.h"
#include "pdsmove/err.h"

#define CBOR_MAX_DEPTH 64
#define CBOR_MAX_ITEMS (1u << 20)        /* total items in one document */
#define CBOR_MAX_DOC_BYTES ((size_t)8 << 20)
#define CBOR_MAX_JSON_BYTES ((size_t)32 << 20) /* JSON text accepted by cbor_from_json */

typedef enum {
    CBOR_NULL, CBOR_BOOL, CBOR_INT, CBOR_BYTES, CBOR_TEXT, CBOR_ARRAY, CBOR_MAP, CBOR_CID
} cbor_type;

typedef struct cbor_item cbor_item;
typedef struct cbor_pair cbor_pair;

struct cbor_item {
    cbor_type type;
    union {
        bool boolean;
        int64_t integer;
        struct { const uint8_t *ptr; size_t len; } bytes; /* CBOR_BYTES */
        struct { const char *ptr; size_t len; } text;     /* CBOR_TEXT: NUL-terminated too */
        struct { cbor_item **items; size_t len; } array;
        struct { cbor_pair *pairs; size_t len; } map;     /* pairs in canonical order */
        cid_t cid;
    } v;
};

struct cbor_pair {
    const char *key; /* NUL-terminated */
    size_t key_len;
    cbor_item *value;
};

/* A document owns every item, string and byte run reachable from root. */
typedef struct cbor_doc cbor_doc;
cbor_doc *cbor_doc_new(void);           /* empty document for building; NULL on OOM */
void cbor_doc_free(cbor_doc *doc);      /* NULL is fine */
cbor_item *cbor_doc_root(const cbor_doc *doc);
void cbor_doc_set_root(cbor_doc *doc, cbor_item *root);

/* Strict decode of exactly one item spanning all of data[0..len). */
err_code cbor_decode(const uint8_t *data, size_t len, cbor_doc **out, err_t *e);

/* Builders (items live in doc; strings/bytes are copied). NULL on OOM. */
cbor_item *cbor_new_null(cbor_doc *doc);
cbor_item *cbor_new_bool(cbor_doc *doc, bool v);
cbor_item *cbor_new_int(cbor_doc *doc, int64_t v);
cbor_item *cbor_new_text(cbor_doc *doc, const char *s, size_t len);
cbor_item *cbor_new_textz(cbor_doc *doc, const char *s);
cbor_item *cbor_new_bytes(cbor_doc *doc, const uint8_t *p, size_t len);
cbor_item *cbor_new_cid(cbor_doc *doc, const cid_t *cid);
cbor_item *cbor_new_array(cbor_doc *doc, size_t len);           /* items[] zeroed, fill in */
cbor_item *cbor_new_map(cbor_doc *doc, size_t capacity);        /* empty map */
/* Adds key→value (key copied). Pairs are kept in canonical order as they are added, so
 * insertion order does not matter. Only for maps made by cbor_new_map or cbor_decode.
 * ERR_INVALID on a duplicate key, ERR_LIMIT beyond capacity, ERR_NOMEM when map or value is
 * NULL (so a builder's OOM can be passed straight in: cbor_map_put(d, m, "k", cbor_new_int(d, 1), e)). */
err_code cbor_map_put(cbor_doc *doc, cbor_item *map, const char *key, cbor_item *value, err_t *e);
/* The same with an explicit key length (the key may contain U+0000). */
err_code cbor_map_putn(cbor_doc *doc, cbor_item *map, const char *key, size_t key_len,
                       cbor_item *value, err_t *e);

/* Lookup helpers (borrowed results; NULL when absent or of another type). */
const cbor_item *cbor_map_get(const cbor_item *map, const char *key);
const char *cbor_map_get_text(const cbor_item *map, const char *key, size_t *len);
const cid_t *cbor_map_get_cid(const cbor_item *map, const char *key);

/* "null", "bool", "integer", "bytes", "text", "array", "map", "cid". */
const char *cbor_type_name(cbor_type t);
/* True when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
bool cbor_text_valid(const char *s, size_t len);

/* atproto data-model rules that hold for a record in either form (the data-model-invalid
 * fixtures): the root is a map; in every map a "$type", when present, is a non-empty text;
 * a map whose "$type" is "blob" is exactly {$type, ref: CID, mimeType: text, size: int >= 0}.
 * The decoder and cbor_from_json do not apply these (MST nodes, commits and CAR headers are
 * not records); callers that hold a record do. ERR_INVALID naming the path on failure. */
err_code cbor_check_record(const cbor_item *root, err_t *e);

/* Canonical DAG-CBOR encoding of item appended to out (map keys sorted length-first).
 * Refuses (and leaves out unchanged) what the decoder would refuse: unset array elements,
 * invalid UTF-8, maps whose pairs are not in canonical order, nesting beyond CBOR_MAX_DEPTH. */
err_code cbor_encode(const cbor_item *item, buf_t *out, err_t *e);

/* atproto JSON form. JSON text → item tree in doc ("$link" objects become CIDs, "$bytes"
 * objects become bytes; floats rejected). Item tree → compact JSON text appended to out,
 * with object keys in canonical CBOR order.
 * An object with a "$link" key must be exactly {"$link": "<CIDv1 string>"}, one with "$bytes"
 * exactly {"$bytes": "<base64, standard alphabet, unpadded>"}; numbers must be integers in
 * int64 (an integral float such as 123.0 is read as the integer); duplicate keys, nesting
 * beyond CBOR_MAX_DEPTH and more than CBOR_MAX_ITEMS values are refused. Any JSON value may
 * be the root (use cbor_check_record for records). On failure *out is NULL; items already
 * made stay in doc until it is freed. */
err_code cbor_from_json(cbor_doc *doc, const char *json, size_t len, cbor_item **out, err_t *e);
err_code cbor_to_json(const cbor_item *item, buf_t *out, err_t *e);
/* The same mapping over jansson values (for the transport layer): json_t → items in doc,
 * and items → a new json_t reference (caller json_decref()s it; NULL + e on failure). */
err_code cbor_from_jansson(cbor_doc *doc, const json_t *json, cbor_item **out, err_t *e);
json_t *cbor_to_jansson(const cbor_item *item, err_t *e);

#endif
