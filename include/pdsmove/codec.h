/* codec.h — byte/text codecs: unsigned varint (multiformats), base32 (RFC 4648 lower-case,
 * no padding), base58btc, base64url (strict, no padding), base64 (standard alphabet, for the
 * JSON "$bytes" form) and multibase. Pure functions, no allocation. */
#ifndef PDSMOVE_CODEC_H
#define PDSMOVE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

/* ---- unsigned varint: at most 9 bytes (63 bits), minimal encoding required ---- */
#define VARINT_MAX_BYTES 10
/* ERR_TRUNCATED when p ends mid-varint; ERR_INVALID for non-minimal or > 63-bit values. */
err_code varint_decode(const uint8_t *p, size_t len, uint64_t *out, size_t *consumed, err_t *e);
size_t varint_encode(uint64_t v, uint8_t out[VARINT_MAX_BYTES]); /* returns bytes written */

/* ---- text encodings ----
 * *_encode write a NUL-terminated string into out and return its length (without NUL), or
 * return 0 with nothing useful written if out_size is too small (an empty input gives "").
 * *_decode take (in, in_len) text, write bytes into out, set *out_len; strict: any character
 * outside the alphabet, padding, whitespace, or non-zero trailing bits is ERR_INVALID;
 * ERR_LIMIT if out_size is too small. */
size_t base32_encoded_len(size_t n_bytes); /* without NUL */
size_t base32_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
err_code base32_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);

size_t base58btc_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
err_code base58btc_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);

size_t base64url_encoded_len(size_t n_bytes);
size_t base64url_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
err_code base64url_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);

/* Standard alphabet (+/), no padding emitted; decode accepts unpadded input only and rejects
 * non-zero trailing bits (the atproto data model's "$bytes"). */
size_t base64_encoded_len(size_t n_bytes);
size_t base64_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
err_code base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);

/* ---- multibase: 'b' base32 lower, 'z' base58btc, 'u' base64url ---- */
err_code multibase_decode(const char *s, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);
size_t multibase_encode(char prefix, const uint8_t *in, size_t n, char *out, size_t out_size);

/* hex (lower-case out, either case in; even length required) */
size_t hex_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
err_code hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e);

#endif
