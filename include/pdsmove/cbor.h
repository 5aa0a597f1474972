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
/* Adds key→value (key copied); the encoder sorts, so insertion order does not matter.
 * ERR_INVALID on a duplicate key, ERR_LIMIT beyond capacity. */
err_code cbor_map_put(cbor_doc *doc, cbor_item *map, const char *key, cbor_item *value, err_t *e);

/* Lookup helpers (borrowed results; NULL when absent or of another type). */
const cbor_item *cbor_map_get(const cbor_item *map, const char *key);
const char *cbor_map_get_text(const cbor_item *map, const char *key, size_t *len);
const cid_t *cbor_map_get_cid(const cbor_item *map, const char *key);

/* Canonical DAG-CBOR encoding of item appended to out (map keys sorted length-first). */
err_code cbor_encode(const cbor_item *item, buf_t *out, err_t *e);

/* atproto JSON form. JSON text → item tree in doc ("$link" objects become CIDs, "$bytes"
 * objects become bytes; floats rejected). Item tree → compact JSON text appended to out,
 * with object keys in canonical CBOR order. */
err_code cbor_from_json(cbor_doc *doc, const char *json, size_t len, cbor_item **out, err_t *e);
err_code cbor_to_json(const cbor_item *item, buf_t *out, err_t *e);
/* The same mapping over jansson values (for the transport layer): json_t → items in doc,
 * and items → a new json_t reference (caller json_decref()s it; NULL + e on failure). */
err_code cbor_from_jansson(cbor_doc *doc, const json_t *json, cbor_item **out, err_t *e);
json_t *cbor_to_jansson(const cbor_item *item, err_t *e);

#endif
