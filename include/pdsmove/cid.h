/* cid.h — content identifiers. Parses any binary CIDv1 whose multihash digest fits, formats
 * as multibase base32 ("b…"), and computes CIDv1 sha2-256 for dag-cbor (0x71) and raw (0x55).
 * A cid_t is a plain value (no allocation). */
#ifndef PDSMOVE_CID_H
#define PDSMOVE_CID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define CID_CODEC_DAG_CBOR 0x71
#define CID_CODEC_RAW 0x55
#define CID_HASH_SHA256 0x12
#define CID_MAX_BYTES 80   /* binary form: version + codec + mh code + mh len + digest (<= 64) */
#define CID_STR_MAX 140    /* "b" + base32 of CID_MAX_BYTES + NUL */

typedef struct {
    uint8_t len;                  /* bytes used in bytes[] */
    uint8_t bytes[CID_MAX_BYTES]; /* the binary CID exactly as read/computed */
    uint64_t codec;               /* 0x71, 0x55, ... */
    uint64_t hash_code;           /* 0x12 = sha2-256 */
    uint8_t digest_len;
    uint8_t digest_off;           /* offset of the digest inside bytes[] */
} cid_t;

/* Reads a binary CIDv1 at the start of p (len available); *consumed = its size.
 * CIDv0 (0x12 0x20 …) is rejected with ERR_INVALID; ERR_TRUNCATED if p ends early. */
err_code cid_from_bytes(cid_t *out, const uint8_t *p, size_t len, size_t *consumed, err_t *e);
/* Parses the string form: multibase base32 lower-case "b…" CIDv1 only. */
err_code cid_parse(cid_t *out, const char *s, err_t *e);
/* Writes "b…" into out (CID_STR_MAX is always enough); returns the length. */
size_t cid_format(const cid_t *c, char *out, size_t out_size);
/* CIDv1 with sha2-256 over data. */
void cid_compute(cid_t *out, uint64_t codec, const uint8_t *data, size_t len);
/* True when data hashes to c's digest (only sha2-256 is supported; others return false). */
bool cid_matches(const cid_t *c, const uint8_t *data, size_t len);
bool cid_eq(const cid_t *a, const cid_t *b);
const uint8_t *cid_digest(const cid_t *c);

#endif
