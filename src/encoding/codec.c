/* codec.c — byte/text codecs: multiformats varints, base32/base58btc/base64(url), multibase, hex.
 * Pure functions that never allocate: every decoder is strict (one valid spelling per byte
 * string), so a signature or CID that round-trips here is byte-for-byte what the peer meant. */
#include "pdsmove/codec.h"

#include <assert.h>
#include <string.h>

/* base58 is quadratic in the input length; nothing in atproto needs more than a few hundred
 * characters (did:key multikeys are ~50). */
#define BASE58_MAX_CHARS 1024

/* ---------------------------------------------------------------- varint */

err_code varint_decode(const uint8_t *p, size_t len, uint64_t *out, size_t *consumed, err_t *e) {
    assert(out != NULL && consumed != NULL);
    uint64_t v = 0;
    for (size_t i = 0; i < 9; i++) {
        if (i >= len) return err_set(e, ERR_TRUNCATED, "varint: input ends after %zu byte(s) in the middle of a varint", i);
        uint8_t b = p[i];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return err_set(e, ERR_INVALID, "varint: non-minimal encoding (%zu bytes ending in 0x00)", i + 1);
            *out = v;
            *consumed = i + 1;
            return ERR_OK;
        }
    }
    return err_set(e, ERR_INVALID, "varint: longer than 9 bytes (value exceeds 63 bits)");
}

size_t varint_encode(uint64_t v, uint8_t out[VARINT_MAX_BYTES]) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    assert(n <= VARINT_MAX_BYTES);
    return n;
}

/* ---------------------------------------------------------------- helpers */

static const char B32_ALPHA[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char B58_ALPHA[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
static const char B64URL_ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char B64STD_ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Describes a byte for an error message without putting control characters in it. */
static const char *char_desc(unsigned char c, char buf[8]) {
    if (c >= 0x21 && c < 0x7f) {
        buf[0] = '\'';
        buf[1] = (char)c;
        buf[2] = '\'';
        buf[3] = 0;
    } else {
        static const char hx[] = "0123456789abcdef";
        buf[0] = '0';
        buf[1] = 'x';
        buf[2] = hx[c >> 4];
        buf[3] = hx[c & 15];
        buf[4] = 0;
    }
    return buf;
}

static int alpha_index(const char *alpha, size_t alpha_len, char c) {
    if (c == 0) return -1;
    const char *f = memchr(alpha, c, alpha_len);
    return f ? (int)(f - alpha) : -1;
}

static err_code bad_char(err_t *e, const char *what, unsigned char c, size_t pos) {
    char d[8];
    if (c == '=') return err_set(e, ERR_INVALID, "%s: padding character '=' at offset %zu (padding is not allowed)", what, pos);
    return err_set(e, ERR_INVALID, "%s: invalid character %s at offset %zu", what, char_desc(c, d), pos);
}

/* Generic decoder for power-of-two alphabets (base32: 5 bits, base64: 6 bits). */
static err_code pow2_decode(const char *what, const char *alpha, unsigned bits, const char *in, size_t in_len,
                            uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    assert(out_len != NULL);
    assert(bits == 5 || bits == 6);
    size_t alpha_len = (size_t)1 << bits;
    /* Remainders (characters mod the group size) that cannot end a byte string. */
    size_t group = bits == 5 ? 8 : 4;
    size_t rem = in_len % group;
    bool bad_len = bits == 5 ? (rem == 1 || rem == 3 || rem == 6) : (rem == 1);
    size_t need = in_len * bits / 8;
    /* Check characters first so that a stray '=' or newline is reported as such. */
    for (size_t i = 0; i < in_len; i++)
        if (alpha_index(alpha, alpha_len, in[i]) < 0) return bad_char(e, what, (unsigned char)in[i], i);
    if (bad_len) return err_set(e, ERR_INVALID, "%s: invalid length %zu (no byte string encodes to it)", what, in_len);
    if (need > out_size) return err_set(e, ERR_LIMIT, "%s: decodes to %zu bytes, more than the %zu available", what, need, out_size);
    uint32_t acc = 0;
    unsigned nbits = 0;
    size_t n = 0;
    for (size_t i = 0; i < in_len; i++) {
        acc = (acc << bits) | (uint32_t)alpha_index(alpha, alpha_len, in[i]);
        nbits += bits;
        if (nbits >= 8) {
            nbits -= 8;
            out[n++] = (uint8_t)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    assert(n == need);
    if (acc != 0) return err_set(e, ERR_INVALID, "%s: non-zero trailing bits in the last character", what);
    *out_len = n;
    return ERR_OK;
}

static size_t pow2_encode(const char *alpha, unsigned bits, const uint8_t *in, size_t n, char *out, size_t out_size) {
    size_t want = (n * 8 + bits - 1) / bits;
    if (out_size < want + 1 || out == NULL) return 0;
    uint32_t acc = 0;
    unsigned nbits = 0;
    size_t o = 0;
    uint32_t mask = (1u << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        nbits += 8;
        while (nbits >= bits) {
            nbits -= bits;
            out[o++] = alpha[(acc >> nbits) & mask];
        }
        acc &= (1u << nbits) - 1;
    }
    if (nbits > 0) out[o++] = alpha[(acc << (bits - nbits)) & mask];
    assert(o == want);
    out[o] = 0;
    return o;
}

/* ---------------------------------------------------------------- base32 */

size_t base32_encoded_len(size_t n_bytes) { return (n_bytes * 8 + 4) / 5; }

size_t base32_encode(const uint8_t *in, size_t n, char *out, size_t out_size) {
    return pow2_encode(B32_ALPHA, 5, in, n, out, out_size);
}

err_code base32_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    return pow2_decode("base32", B32_ALPHA, 5, in, in_len, out, out_size, out_len, e);
}

/* ---------------------------------------------------------------- base64 / base64url */

size_t base64url_encoded_len(size_t n_bytes) { return (n_bytes * 8 + 5) / 6; }
size_t base64_encoded_len(size_t n_bytes) { return (n_bytes * 8 + 5) / 6; }

size_t base64url_encode(const uint8_t *in, size_t n, char *out, size_t out_size) {
    return pow2_encode(B64URL_ALPHA, 6, in, n, out, out_size);
}

err_code base64url_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    return pow2_decode("base64url", B64URL_ALPHA, 6, in, in_len, out, out_size, out_len, e);
}

size_t base64_encode(const uint8_t *in, size_t n, char *out, size_t out_size) {
    return pow2_encode(B64STD_ALPHA, 6, in, n, out, out_size);
}

err_code base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    return pow2_decode("base64", B64STD_ALPHA, 6, in, in_len, out, out_size, out_len, e);
}

/* ---------------------------------------------------------------- base58btc */

size_t base58btc_encode(const uint8_t *in, size_t n, char *out, size_t out_size) {
    if (out == NULL || out_size == 0) return 0;
    size_t zeros = 0;
    while (zeros < n && in[zeros] == 0) zeros++;
    /* Digits of the non-zero part, little-endian, built in out[zeros..]. */
    size_t cap = out_size - 1; /* room for NUL */
    if (zeros > cap) return 0;
    uint8_t *dig = (uint8_t *)out + zeros;
    size_t dcap = cap - zeros;
    size_t nd = 0;
    for (size_t i = zeros; i < n; i++) {
        uint32_t carry = in[i];
        for (size_t j = 0; j < nd; j++) {
            carry += (uint32_t)dig[j] << 8;
            dig[j] = (uint8_t)(carry % 58);
            carry /= 58;
        }
        while (carry > 0) {
            if (nd >= dcap) return 0;
            dig[nd++] = (uint8_t)(carry % 58);
            carry /= 58;
        }
    }
    for (size_t j = 0; j < nd / 2; j++) {
        uint8_t t = dig[j];
        dig[j] = dig[nd - 1 - j];
        dig[nd - 1 - j] = t;
    }
    for (size_t j = 0; j < nd; j++) dig[j] = (uint8_t)B58_ALPHA[dig[j]];
    memset(out, '1', zeros);
    out[zeros + nd] = 0;
    return zeros + nd;
}

err_code base58btc_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    assert(out_len != NULL);
    if (in_len > BASE58_MAX_CHARS)
        return err_set(e, ERR_LIMIT, "base58btc: %zu characters is over the limit of %d", in_len, BASE58_MAX_CHARS);
    for (size_t i = 0; i < in_len; i++)
        if (alpha_index(B58_ALPHA, 58, in[i]) < 0) return bad_char(e, "base58btc", (unsigned char)in[i], i);
    size_t zeros = 0;
    while (zeros < in_len && in[zeros] == '1') zeros++;
    if (zeros > out_size) return err_set(e, ERR_LIMIT, "base58btc: decodes to more than the %zu bytes available", out_size);
    uint8_t *b = out + zeros; /* little-endian big number */
    size_t bcap = out_size - zeros;
    size_t nb = 0;
    for (size_t i = zeros; i < in_len; i++) {
        uint32_t carry = (uint32_t)alpha_index(B58_ALPHA, 58, in[i]);
        for (size_t j = 0; j < nb; j++) {
            carry += (uint32_t)b[j] * 58;
            b[j] = (uint8_t)carry;
            carry >>= 8;
        }
        while (carry > 0) {
            if (nb >= bcap) return err_set(e, ERR_LIMIT, "base58btc: decodes to more than the %zu bytes available", out_size);
            b[nb++] = (uint8_t)carry;
            carry >>= 8;
        }
    }
    for (size_t j = 0; j < nb / 2; j++) {
        uint8_t t = b[j];
        b[j] = b[nb - 1 - j];
        b[nb - 1 - j] = t;
    }
    memset(out, 0, zeros);
    *out_len = zeros + nb;
    return ERR_OK;
}

/* ---------------------------------------------------------------- multibase */

err_code multibase_decode(const char *s, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    assert(s != NULL);
    if (s[0] == 0) return err_set(e, ERR_INVALID, "multibase: empty string");
    size_t n = strlen(s + 1);
    switch (s[0]) {
    case 'b': return base32_decode(s + 1, n, out, out_size, out_len, e);
    case 'z': return base58btc_decode(s + 1, n, out, out_size, out_len, e);
    case 'u': return base64url_decode(s + 1, n, out, out_size, out_len, e);
    default: {
        char d[8];
        return err_set(e, ERR_INVALID, "multibase: unsupported prefix %s (expected 'b', 'z' or 'u')",
                       char_desc((unsigned char)s[0], d));
    }
    }
}

size_t multibase_encode(char prefix, const uint8_t *in, size_t n, char *out, size_t out_size) {
    if (out == NULL || out_size < 2) return 0;
    size_t r;
    switch (prefix) {
    case 'b': r = base32_encode(in, n, out + 1, out_size - 1); break;
    case 'z': r = base58btc_encode(in, n, out + 1, out_size - 1); break;
    case 'u': r = base64url_encode(in, n, out + 1, out_size - 1); break;
    default: return 0;
    }
    if (r == 0 && n > 0) return 0;
    out[0] = prefix;
    return r + 1;
}

/* ---------------------------------------------------------------- hex */

size_t hex_encode(const uint8_t *in, size_t n, char *out, size_t out_size) {
    static const char hx[] = "0123456789abcdef";
    if (out == NULL || out_size < 2 * n + 1) return 0;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = 0;
    return 2 * n;
}

static int hex_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

err_code hex_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size, size_t *out_len, err_t *e) {
    assert(out_len != NULL);
    for (size_t i = 0; i < in_len; i++)
        if (hex_val(in[i]) < 0) return bad_char(e, "hex", (unsigned char)in[i], i);
    if (in_len % 2) return err_set(e, ERR_INVALID, "hex: odd length %zu", in_len);
    if (in_len / 2 > out_size) return err_set(e, ERR_LIMIT, "hex: decodes to %zu bytes, more than the %zu available", in_len / 2, out_size);
    for (size_t i = 0; i < in_len / 2; i++) out[i] = (uint8_t)(hex_val(in[2 * i]) << 4 | hex_val(in[2 * i + 1]));
    *out_len = in_len / 2;
    return ERR_OK;
}
