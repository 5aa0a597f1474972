/* cid.c — CIDv1 parsing, formatting and computing (see cid.h).
 * A cid_t keeps the exact bytes it was read from, so equality is byte equality and
 * re-encoding a parsed CID never changes it. CIDv0 is refused: atproto never uses it. */
#include "pdsmove/cid.h"

#include <assert.h>
#include <string.h>

#include "pdsmove/codec.h"
#include "pdsmove/hash.h"

#define CID_MAX_DIGEST 64

static err_code read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v, const char *field, err_t *e) {
    size_t used = 0;
    err_code rc = varint_decode(p + *pos, len - *pos, v, &used, e);
    if (rc != ERR_OK) {
        err_wrap(e, "CID %s", field); /* err_wrap loses rc when e is NULL */
        return rc;
    }
    *pos += used;
    return ERR_OK;
}

err_code cid_from_bytes(cid_t *out, const uint8_t *p, size_t len, size_t *consumed, err_t *e) {
    assert(out != NULL && consumed != NULL);
    if (len == 0) return err_set(e, ERR_TRUNCATED, "CID: no bytes");
    if (len >= 2 && p[0] == 0x12 && p[1] == 0x20)
        return err_set(e, ERR_INVALID, "CID: CIDv0 (bare sha2-256 multihash) is not supported, only CIDv1");
    size_t pos = 0;
    uint64_t version, codec, hcode, dlen;
    err_code rc;
    if ((rc = read_varint(p, len, &pos, &version, "version", e)) != ERR_OK) return rc;
    if (version != 1) return err_set(e, ERR_INVALID, "CID: version %llu is not supported (only CIDv1)", (unsigned long long)version);
    if ((rc = read_varint(p, len, &pos, &codec, "codec", e)) != ERR_OK) return rc;
    if ((rc = read_varint(p, len, &pos, &hcode, "multihash code", e)) != ERR_OK) return rc;
    if ((rc = read_varint(p, len, &pos, &dlen, "multihash length", e)) != ERR_OK) return rc;
    if (dlen > CID_MAX_DIGEST)
        return err_set(e, ERR_LIMIT, "CID: digest of %llu bytes is longer than the supported %d", (unsigned long long)dlen, CID_MAX_DIGEST);
    if (hcode == CID_HASH_SHA256 && dlen != SHA256_BYTES)
        return err_set(e, ERR_INVALID, "CID: sha2-256 digest length is %llu, expected %d", (unsigned long long)dlen, SHA256_BYTES);
    if (len - pos < dlen)
        return err_set(e, ERR_TRUNCATED, "CID: digest needs %llu bytes, only %zu left", (unsigned long long)dlen, len - pos);
    size_t total = pos + (size_t)dlen;
    if (total > CID_MAX_BYTES) return err_set(e, ERR_LIMIT, "CID: %zu bytes is over the limit of %d", total, CID_MAX_BYTES);
    memset(out, 0, sizeof *out);
    memcpy(out->bytes, p, total);
    out->len = (uint8_t)total;
    out->codec = codec;
    out->hash_code = hcode;
    out->digest_len = (uint8_t)dlen;
    out->digest_off = (uint8_t)pos;
    *consumed = total;
    return ERR_OK;
}

err_code cid_parse(cid_t *out, const char *s, err_t *e) {
    assert(out != NULL && s != NULL);
    size_t n = strnlen(s, CID_STR_MAX);
    if (n >= CID_STR_MAX) return err_set(e, ERR_LIMIT, "CID string is longer than %d characters", CID_STR_MAX - 1);
    if (n == 0) return err_set(e, ERR_INVALID, "CID string is empty");
    if (n == 46 && s[0] == 'Q' && s[1] == 'm')
        return err_set(e, ERR_INVALID, "CID \"%s\": CIDv0 is not supported, only CIDv1", s);
    if (s[0] != 'b')
        return err_set(e, ERR_INVALID, "CID \"%.*s\": expected multibase base32 prefix 'b'", (int)n, s);
    uint8_t bin[CID_MAX_BYTES];
    size_t bin_len = 0, used = 0;
    err_code rc = base32_decode(s + 1, n - 1, bin, sizeof bin, &bin_len, e);
    if (rc == ERR_OK) rc = cid_from_bytes(out, bin, bin_len, &used, e);
    if (rc != ERR_OK) {
        err_wrap(e, "CID \"%.*s\"", (int)n, s);
        return rc;
    }
    if (used != bin_len)
        return err_set(e, ERR_INVALID, "CID \"%.*s\": %zu trailing byte(s) after the CID", (int)n, s, bin_len - used);
    return ERR_OK;
}

size_t cid_format(const cid_t *c, char *out, size_t out_size) {
    assert(c != NULL && c->len <= CID_MAX_BYTES);
    return multibase_encode('b', c->bytes, c->len, out, out_size);
}

void cid_compute(cid_t *out, uint64_t codec, const uint8_t *data, size_t len) {
    assert(out != NULL);
    memset(out, 0, sizeof *out);
    size_t pos = 0;
    out->bytes[pos++] = 0x01;
    pos += varint_encode(codec, out->bytes + pos);
    out->bytes[pos++] = CID_HASH_SHA256;
    out->bytes[pos++] = SHA256_BYTES;
    out->digest_off = (uint8_t)pos;
    hash_sha256(data, len, out->bytes + pos);
    pos += SHA256_BYTES;
    assert(pos <= CID_MAX_BYTES);
    out->len = (uint8_t)pos;
    out->codec = codec;
    out->hash_code = CID_HASH_SHA256;
    out->digest_len = SHA256_BYTES;
}

bool cid_matches(const cid_t *c, const uint8_t *data, size_t len) {
    assert(c != NULL);
    if (c->hash_code != CID_HASH_SHA256 || c->digest_len != SHA256_BYTES) return false;
    uint8_t d[SHA256_BYTES];
    hash_sha256(data, len, d);
    return memcmp(d, c->bytes + c->digest_off, SHA256_BYTES) == 0;
}

bool cid_eq(const cid_t *a, const cid_t *b) {
    assert(a != NULL && b != NULL);
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

const uint8_t *cid_digest(const cid_t *c) {
    assert(c != NULL);
    return c->bytes + c->digest_off;
}
