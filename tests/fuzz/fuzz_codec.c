/* fuzz_codec.c — libFuzzer harness for the byte/text codecs (src/encoding/codec.c: varint,
 * base32, base58btc, base64url, base64, multibase, hex), CIDs, did:key / multibase public keys
 * (keys.c) and the syntax validators. The first input byte picks the function; the rest is its
 * input, copied to a buffer of exactly its size (so ASan sees any over-read). The decoders are
 * strict, so what one accepts must re-encode to the same text, and encoded bytes must decode
 * back. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/cid.h"
#include "pdsmove/codec.h"
#include "pdsmove/keys.h"
#include "pdsmove/syntax.h"

#define OUT_MAX 8192

static void fail(const char *what, const char *s, size_t n) {
    fprintf(stderr, "fuzz_codec: %s on %zu bytes: '%.*s'\n", what, n, (int)(n > 200 ? 200 : n), s);
    abort();
}

typedef err_code (*decode_fn)(const char *, size_t, uint8_t *, size_t, size_t *, err_t *);
typedef size_t (*encode_fn)(const uint8_t *, size_t, char *, size_t);

/* text → bytes → text must give the same text */
static void text_round_trip(const char *name, decode_fn dec, encode_fn enc, const char *s, size_t n) {
    static uint8_t bytes[OUT_MAX];
    static char text[2 * OUT_MAX + 8];
    size_t got;
    err_t e;
    if (dec(s, n, bytes, sizeof bytes, &got, &e) != ERR_OK) return;
    size_t tl = enc(bytes, got, text, sizeof text);
    if (tl != n || memcmp(text, s, n)) fail(name, s, n);
}

/* bytes → text → bytes must give the same bytes */
static void bytes_round_trip(const char *name, decode_fn dec, encode_fn enc, const uint8_t *p, size_t n) {
    static uint8_t bytes[OUT_MAX];
    static char text[2 * OUT_MAX + 8];
    if (n > OUT_MAX / 2) return;
    size_t tl = enc(p, n, text, sizeof text), got;
    err_t e;
    if (n && !tl) fail(name, "(encode gave nothing)", 0);
    err_code rc = dec(text, tl, bytes, sizeof bytes, &got, &e);
    if (rc == ERR_LIMIT) return; /* a decoder's documented bound (base58btc: 1024 characters) */
    if (rc != ERR_OK || got != n || memcmp(bytes, p, n)) fail(name, text, tl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    size_t n = size - 1;
    char *s = malloc(n + 1); /* exactly the input, NUL-terminated for the string APIs */
    if (!s) return 0;
    memcpy(s, data + 1, n);
    s[n] = 0;
    const uint8_t *p = (const uint8_t *)s;
    err_t e = {0};
    static uint8_t out[OUT_MAX];
    static char text[2 * OUT_MAX + 8];
    size_t got;
    switch (sel % 12) {
    case 0: {
        uint64_t v;
        size_t used;
        uint8_t enc[VARINT_MAX_BYTES];
        if (varint_decode(p, n, &v, &used, &e) == ERR_OK &&
            (used > n || varint_encode(v, enc) != used || memcmp(enc, p, used)))
            fail("varint round trip", s, n);
        break;
    }
    case 1: text_round_trip("base32", base32_decode, base32_encode, s, n); break;
    case 2: text_round_trip("base58btc", base58btc_decode, base58btc_encode, s, n); break;
    case 3: text_round_trip("base64url", base64url_decode, base64url_encode, s, n); break;
    case 4: text_round_trip("base64", base64_decode, base64_encode, s, n); break;
    case 5:
        if (hex_decode(s, n, out, sizeof out, &got, &e) == ERR_OK) {
            size_t tl = hex_encode(out, got, text, sizeof text);
            for (size_t i = 0; i < n; i++) s[i] = (char)tolower((unsigned char)s[i]);
            if (tl != n || memcmp(text, s, n)) fail("hex round trip", s, n);
        }
        break;
    case 6:
        if (strlen(s) == n && multibase_decode(s, out, sizeof out, &got, &e) == ERR_OK) {
            size_t tl = multibase_encode(s[0], out, got, text, sizeof text);
            if (tl != n || memcmp(text, s, n)) fail("multibase round trip", s, n);
        }
        break;
    case 7:
        bytes_round_trip("base32 bytes", base32_decode, base32_encode, p, n);
        bytes_round_trip("base58btc bytes", base58btc_decode, base58btc_encode, p, n);
        bytes_round_trip("base64url bytes", base64url_decode, base64url_encode, p, n);
        bytes_round_trip("base64 bytes", base64_decode, base64_encode, p, n);
        bytes_round_trip("hex bytes", hex_decode, hex_encode, p, n);
        break;
    case 8: {
        key_pub k, k2;
        char did[KEY_DID_MAX];
        if (key_pub_from_did_key(&k, s, &e) == ERR_OK) {
            if (!key_pub_to_did_key(&k, did, sizeof did) || key_pub_from_did_key(&k2, did, &e) != ERR_OK ||
                !key_pub_eq(&k, &k2))
                fail("did:key round trip", s, n);
        }
        for (int t = 0; t <= 2; t++)
            if (key_pub_from_multibase(&k, (key_type)t, s, &e) == ERR_OK &&
                (!key_pub_to_did_key(&k, did, sizeof did) || key_pub_from_did_key(&k2, did, &e) != ERR_OK ||
                 !key_pub_eq(&k, &k2)))
                fail("multibase key round trip", s, n);
        key_priv kp;
        if (key_priv_from_multikey(&kp, s, &e) == ERR_OK) key_priv_wipe(&kp);
        break;
    }
    case 9: {
        cid_t c, c2;
        char cs[CID_STR_MAX];
        if (cid_parse(&c, s, &e) == ERR_OK) {
            if (!cid_format(&c, cs, sizeof cs) || cid_parse(&c2, cs, &e) != ERR_OK || !cid_eq(&c, &c2))
                fail("cid string round trip", s, n);
        }
        size_t used;
        if (cid_from_bytes(&c, p, n, &used, &e) == ERR_OK) {
            if (used > n || c.len != used || memcmp(c.bytes, p, used)) fail("cid bytes", s, n);
            if (!cid_format(&c, cs, sizeof cs) || cid_parse(&c2, cs, &e) != ERR_OK || !cid_eq(&c, &c2))
                fail("cid bytes → string round trip", s, n);
            (void)cid_matches(&c, p + used, n - used);
        }
        break;
    }
    case 10:
        (void)syntax_did(s, &e);
        (void)syntax_handle(s, &e);
        (void)syntax_nsid(s, &e);
        (void)syntax_tid(s, &e);
        (void)syntax_record_key(s, &e);
        (void)syntax_at_uri(s, &e);
        (void)syntax_datetime(s, &e);
        (void)syntax_at_identifier(s, &e);
        (void)syntax_cid(s, &e);
        break;
    case 11: {
        key_priv kp;
        key_type t = (n && (p[0] & 1)) ? KEY_P256 : KEY_K256;
        if (key_priv_from_hex(&kp, t, s, &e) == ERR_OK) key_priv_wipe(&kp);
        break;
    }
    }
    free(s);
    return 0;
}
