/* keys.c — k256 (libsecp256k1) and P-256 (OpenSSL 3) signing keys: parsing (hex, multikey,
 * did:key, legacy multibase), generation, and low-S compact ECDSA over SHA-256.
 * Never prints; the only I/O is reading one key file. Never echoes private key material in an
 * error message; wipes every copy of a secret it makes (explicit_bzero). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <secp256k1.h>

#include "pdsmove/codec.h"
#include "pdsmove/keys.h"
#include "pdsmove/secure.h"

/* multicodec codes (https://github.com/multiformats/multicodec) */
#define MC_SECP256K1_PUB 0xe7u
#define MC_P256_PUB 0x1200u
#define MC_SECP256K1_PRIV 0x1301u
#define MC_P256_PRIV 0x1306u

#define KEY_FILE_MAX_BYTES 1024   /* a key file is one short line */
#define KEY_TEXT_MAX_CHARS 256    /* longest multibase/did:key text we look at */
#define KEY_DECODED_MAX_BYTES 80  /* multicodec varint + a 65-byte uncompressed point, with room */
#define KEY_GENERATE_TRIES 16     /* a random 32-byte string is a valid scalar with p > 1 - 2^-32 */
#define DIGEST_BYTES 32
#define DER_SIG_MAX_BYTES 80      /* DER ECDSA signature for a 256-bit curve: at most 72 bytes */

#define DID_KEY_PREFIX "did:key:"

/* Group orders, big-endian. Comparing against these is how we check scalars for validity. */
static const uint8_t P256_ORDER[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

const char *key_type_name(key_type t) {
    switch (t) {
    case KEY_K256: return "k256";
    case KEY_P256: return "p256";
    }
    return "unknown";
}

bool key_type_parse(const char *s, key_type *out) {
    assert(out != NULL);
    if (s == NULL) return false;
    if (!strcmp(s, "k256") || !strcmp(s, "secp256k1")) { *out = KEY_K256; return true; }
    if (!strcmp(s, "p256") || !strcmp(s, "secp256r1") || !strcmp(s, "P-256")) { *out = KEY_P256; return true; }
    return false;
}

static bool type_valid(key_type t) { return t == KEY_K256 || t == KEY_P256; }

static uint64_t pub_codec(key_type t) { return t == KEY_K256 ? MC_SECP256K1_PUB : MC_P256_PUB; }
static uint64_t priv_codec(key_type t) { return t == KEY_K256 ? MC_SECP256K1_PRIV : MC_P256_PRIV; }

static err_code sha256(const uint8_t *msg, size_t len, uint8_t out[DIGEST_BYTES], err_t *e) {
    unsigned int n = 0;
    if (EVP_Digest(msg, len, out, &n, EVP_sha256(), NULL) != 1 || n != DIGEST_BYTES) {
        ERR_clear_error();
        return err_set(e, ERR_NOMEM, "SHA-256 failed (OpenSSL)");
    }
    return ERR_OK;
}

/* ------------------------------------------------------------------ k256 (libsecp256k1) */

/* A fresh, randomised context per secret-key operation: the context is then never shared
 * between threads, and re-randomising (blinding) per operation is cheap next to the network
 * round trips that surround every signature we make. */
static err_code k256_signing_ctx(secp256k1_context **out, err_t *e) {
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    *out = NULL;
    if (ctx == NULL) return err_set(e, ERR_NOMEM, "secp256k1: cannot create a context");
    uint8_t seed[32];
    int ok = RAND_bytes(seed, sizeof seed) == 1 && secp256k1_context_randomize(ctx, seed) == 1;
    explicit_bzero(seed, sizeof seed);
    if (!ok) {
        ERR_clear_error();
        secp256k1_context_destroy(ctx);
        return err_set(e, ERR_IO, "secp256k1: cannot randomise the context (system random generator failed)");
    }
    *out = ctx;
    return ERR_OK;
}

static const secp256k1_context *k256_public_ctx(void) {
    secp256k1_selftest(); /* cheap; aborts if the library was built for the wrong platform */
    return secp256k1_context_static;
}

static err_code k256_pub_from_priv(const uint8_t priv[KEY_PRIV_BYTES], uint8_t pub[KEY_PUB_BYTES], err_t *e) {
    if (!secp256k1_ec_seckey_verify(k256_public_ctx(), priv))
        return err_set(e, ERR_INVALID, "k256 private key is out of range (zero or not below the group order)");
    secp256k1_context *ctx;
    err_code rc = k256_signing_ctx(&ctx, e);
    if (rc != ERR_OK) return rc;
    secp256k1_pubkey pk;
    size_t n = KEY_PUB_BYTES;
    int ok = secp256k1_ec_pubkey_create(ctx, &pk, priv) &&
             secp256k1_ec_pubkey_serialize(ctx, pub, &n, &pk, SECP256K1_EC_COMPRESSED) && n == KEY_PUB_BYTES;
    secp256k1_context_destroy(ctx);
    if (!ok) return err_set(e, ERR_INVALID, "k256: cannot derive the public key");
    return ERR_OK;
}

static err_code k256_point_compress(const uint8_t *in, size_t len, uint8_t pub[KEY_PUB_BYTES], err_t *e) {
    secp256k1_pubkey pk;
    size_t n = KEY_PUB_BYTES;
    if (!secp256k1_ec_pubkey_parse(k256_public_ctx(), &pk, in, len))
        return err_set(e, ERR_INVALID, "not a point on the secp256k1 curve");
    if (!secp256k1_ec_pubkey_serialize(k256_public_ctx(), pub, &n, &pk, SECP256K1_EC_COMPRESSED) || n != KEY_PUB_BYTES)
        return err_set(e, ERR_INVALID, "secp256k1: cannot serialise the public key");
    return ERR_OK;
}

static err_code k256_sign(const key_priv *k, const uint8_t digest[DIGEST_BYTES], uint8_t sig[KEY_SIG_BYTES], err_t *e) {
    secp256k1_context *ctx;
    err_code rc = k256_signing_ctx(&ctx, e);
    if (rc != ERR_OK) return rc;
    secp256k1_ecdsa_signature s;
    /* RFC 6979 nonces; libsecp256k1 always produces low-S. */
    int ok = secp256k1_ecdsa_sign(ctx, &s, digest, k->priv, NULL, NULL) &&
             secp256k1_ecdsa_signature_serialize_compact(ctx, sig, &s);
    if (ok) ok = !secp256k1_ecdsa_signature_normalize(ctx, NULL, &s); /* must already be low-S */
    secp256k1_context_destroy(ctx);
    explicit_bzero(&s, sizeof s);
    if (!ok) {
        explicit_bzero(sig, KEY_SIG_BYTES);
        return err_set(e, ERR_INVALID, "k256: signing failed");
    }
    return ERR_OK;
}

static err_code k256_verify(const key_pub *k, const uint8_t digest[DIGEST_BYTES], const uint8_t sig[KEY_SIG_BYTES], err_t *e) {
    const secp256k1_context *ctx = k256_public_ctx();
    secp256k1_ecdsa_signature s;
    secp256k1_pubkey pk;
    uint8_t r_or = 0, s_or = 0;
    for (size_t i = 0; i < 32; i++) {
        r_or |= sig[i];
        s_or |= sig[32 + i];
    }
    if (r_or == 0 || s_or == 0 || !secp256k1_ecdsa_signature_parse_compact(ctx, &s, sig))
        return err_set(e, ERR_INVALID, "k256 signature: r or s is zero or not below the group order");
    /* normalize returns 1 exactly when s was high; atproto rejects those (malleability). */
    if (secp256k1_ecdsa_signature_normalize(ctx, NULL, &s))
        return err_set(e, ERR_INVALID, "k256 signature is high-S (s > n/2), which atproto does not accept");
    if (!secp256k1_ec_pubkey_parse(ctx, &pk, k->pub, KEY_PUB_BYTES))
        return err_set(e, ERR_INVALID, "k256 public key is not a point on the curve");
    if (!secp256k1_ecdsa_verify(ctx, &s, digest, &pk))
        return err_set(e, ERR_MISMATCH, "k256 signature does not match the message and key");
    return ERR_OK;
}

/* ------------------------------------------------------------------ P-256 (OpenSSL 3) */

static err_code ossl_fail(err_t *e, err_code code, const char *what) {
    unsigned long ec = ERR_get_error();
    char detail[160] = "";
    if (ec != 0) ERR_error_string_n(ec, detail, sizeof detail);
    ERR_clear_error();
    return err_set(e, code, "P-256: %s%s%s", what, detail[0] ? ": " : "", detail);
}

static bool p256_scalar_valid(const uint8_t d[32]) {
    uint8_t acc = 0;
    for (size_t i = 0; i < 32; i++) acc |= d[i];
    return acc != 0 && memcmp(d, P256_ORDER, 32) < 0;
}

static err_code p256_pub_from_priv(const uint8_t priv[KEY_PRIV_BYTES], uint8_t pub[KEY_PUB_BYTES], err_t *e) {
    if (!p256_scalar_valid(priv))
        return err_set(e, ERR_INVALID, "p256 private key is out of range (zero or not below the group order)");
    err_code rc = ERR_OK;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BN_CTX *bc = BN_CTX_secure_new();
    BIGNUM *d = BN_secure_new();
    EC_POINT *p = g ? EC_POINT_new(g) : NULL;
    if (g == NULL || bc == NULL || d == NULL || p == NULL) {
        rc = ossl_fail(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    BN_set_flags(d, BN_FLG_CONSTTIME);
    if (BN_bin2bn(priv, KEY_PRIV_BYTES, d) == NULL || !EC_POINT_mul(g, p, d, NULL, NULL, bc) ||
        EC_POINT_point2oct(g, p, POINT_CONVERSION_COMPRESSED, pub, KEY_PUB_BYTES, bc) != KEY_PUB_BYTES)
        rc = ossl_fail(e, ERR_INVALID, "cannot derive the public key");
out:
    BN_clear_free(d);
    EC_POINT_free(p);
    BN_CTX_free(bc);
    EC_GROUP_free(g);
    return rc;
}

static err_code p256_point_compress(const uint8_t *in, size_t len, uint8_t pub[KEY_PUB_BYTES], err_t *e) {
    err_code rc = ERR_OK;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *p = g ? EC_POINT_new(g) : NULL;
    if (g == NULL || p == NULL) {
        rc = ossl_fail(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    /* oct2point checks that the point is on the curve. */
    if (!EC_POINT_oct2point(g, p, in, len, NULL) || EC_POINT_is_at_infinity(g, p)) {
        ERR_clear_error();
        rc = err_set(e, ERR_INVALID, "not a point on the P-256 curve");
        goto out;
    }
    if (EC_POINT_point2oct(g, p, POINT_CONVERSION_COMPRESSED, pub, KEY_PUB_BYTES, NULL) != KEY_PUB_BYTES)
        rc = ossl_fail(e, ERR_INVALID, "cannot serialise the public key");
out:
    EC_POINT_free(p);
    EC_GROUP_free(g);
    return rc;
}

/* An EVP_PKEY for the public key, or the key pair when priv is non-NULL. */
static err_code p256_pkey(const uint8_t pub[KEY_PUB_BYTES], const uint8_t *priv, EVP_PKEY **out, err_t *e) {
    uint8_t native[KEY_PRIV_BYTES]; /* OSSL_PARAM BNs are native-endian */
    OSSL_PARAM params[4];
    size_t i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)SN_X9_62_prime256v1, 0);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, KEY_PUB_BYTES);
    if (priv != NULL) {
        for (size_t j = 0; j < KEY_PRIV_BYTES; j++)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            native[j] = priv[KEY_PRIV_BYTES - 1 - j];
#else
            native[j] = priv[j];
#endif
        params[i++] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, native, KEY_PRIV_BYTES);
    }
    params[i] = OSSL_PARAM_construct_end();
    assert(i < sizeof params / sizeof params[0]);

    err_code rc = ERR_OK;
    *out = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (c == NULL || EVP_PKEY_fromdata_init(c) <= 0 ||
        EVP_PKEY_fromdata(c, out, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        rc = ossl_fail(e, ERR_INVALID, "cannot load the key");
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    EVP_PKEY_CTX_free(c);
    explicit_bzero(native, sizeof native);
    return rc;
}

static err_code p256_sign(const key_priv *k, const uint8_t digest[DIGEST_BYTES], uint8_t sig[KEY_SIG_BYTES], err_t *e) {
    EVP_PKEY *pk = NULL;
    err_code rc = p256_pkey(k->pub.pub, k->priv, &pk, e);
    if (rc != ERR_OK) return rc;
    uint8_t der[DER_SIG_MAX_BYTES];
    size_t der_len = sizeof der;
    ECDSA_SIG *es = NULL;
    BIGNUM *n = BN_new(), *half = BN_new(), *s_low = BN_new();
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (c == NULL || n == NULL || half == NULL || s_low == NULL) {
        rc = ossl_fail(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    if (EVP_PKEY_sign_init(c) <= 0 || EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) <= 0 ||
        EVP_PKEY_sign(c, der, &der_len, digest, DIGEST_BYTES) <= 0) {
        rc = ossl_fail(e, ERR_INVALID, "signing failed");
        goto out;
    }
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r = NULL, *s = NULL;
    if (es == NULL) {
        rc = ossl_fail(e, ERR_INVALID, "cannot decode OpenSSL's signature");
        goto out;
    }
    ECDSA_SIG_get0(es, &r, &s);
    /* Low-S: s > n/2 becomes n - s (both verify; atproto accepts only the low one). */
    if (!BN_bin2bn(P256_ORDER, 32, n) || !BN_rshift1(half, n)) {
        rc = ossl_fail(e, ERR_NOMEM, "bignum arithmetic failed");
        goto out;
    }
    if (BN_cmp(s, half) > 0 ? !BN_sub(s_low, n, s) : !BN_copy(s_low, s)) {
        rc = ossl_fail(e, ERR_NOMEM, "bignum arithmetic failed");
        goto out;
    }
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s_low, sig + 32, 32) != 32) {
        rc = ossl_fail(e, ERR_INVALID, "signature component does not fit in 32 bytes");
        goto out;
    }
    assert(BN_cmp(s_low, half) <= 0);
out:
    if (rc != ERR_OK) explicit_bzero(sig, KEY_SIG_BYTES);
    ECDSA_SIG_free(es);
    BN_free(n);
    BN_free(half);
    BN_free(s_low);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pk);
    return rc;
}

static err_code p256_verify(const key_pub *k, const uint8_t digest[DIGEST_BYTES], const uint8_t sig[KEY_SIG_BYTES], err_t *e) {
    err_code rc = ERR_OK;
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *c = NULL;
    ECDSA_SIG *es = NULL;
    unsigned char *der = NULL;
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    BIGNUM *n = BN_bin2bn(P256_ORDER, 32, NULL), *half = BN_new();
    if (r == NULL || s == NULL || n == NULL || half == NULL || !BN_rshift1(half, n)) {
        rc = ossl_fail(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    if (BN_is_zero(r) || BN_is_zero(s) || BN_cmp(r, n) >= 0 || BN_cmp(s, n) >= 0) {
        rc = err_set(e, ERR_INVALID, "p256 signature: r or s is zero or not below the group order");
        goto out;
    }
    if (BN_cmp(s, half) > 0) {
        rc = err_set(e, ERR_INVALID, "p256 signature is high-S (s > n/2), which atproto does not accept");
        goto out;
    }
    es = ECDSA_SIG_new();
    if (es == NULL || !ECDSA_SIG_set0(es, r, s)) {
        rc = ossl_fail(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    r = s = NULL; /* owned by es now */
    int der_len = i2d_ECDSA_SIG(es, &der);
    if (der_len <= 0) {
        rc = ossl_fail(e, ERR_NOMEM, "cannot encode the signature");
        goto out;
    }
    if ((rc = p256_pkey(k->pub, NULL, &pk, e)) != ERR_OK) goto out;
    c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (c == NULL || EVP_PKEY_verify_init(c) <= 0 || EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) <= 0) {
        rc = ossl_fail(e, ERR_NOMEM, "cannot set up verification");
        goto out;
    }
    if (EVP_PKEY_verify(c, der, (size_t)der_len, digest, DIGEST_BYTES) != 1) {
        ERR_clear_error();
        rc = err_set(e, ERR_MISMATCH, "p256 signature does not match the message and key");
    }
out:
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(s);
    BN_free(n);
    BN_free(half);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pk);
    return rc;
}

/* ------------------------------------------------------------------ private keys */

err_code key_priv_from_bytes(key_priv *out, key_type type, const uint8_t priv[KEY_PRIV_BYTES], err_t *e) {
    assert(out != NULL && priv != NULL);
    uint8_t copy[KEY_PRIV_BYTES]; /* priv may point into *out */
    memcpy(copy, priv, sizeof copy);
    memset(out, 0, sizeof *out);
    if (!type_valid(type)) {
        explicit_bzero(copy, sizeof copy);
        return err_set(e, ERR_USAGE, "unknown key type %d", (int)type);
    }
    memcpy(out->priv, copy, KEY_PRIV_BYTES);
    explicit_bzero(copy, sizeof copy);
    out->type = type;
    out->pub.type = type;
    err_code rc = type == KEY_K256 ? k256_pub_from_priv(out->priv, out->pub.pub, e)
                                   : p256_pub_from_priv(out->priv, out->pub.pub, e);
    if (rc != ERR_OK) key_priv_wipe(out);
    return rc;
}

err_code key_priv_from_hex(key_priv *out, key_type type, const char *hex, err_t *e) {
    assert(out != NULL && hex != NULL);
    memset(out, 0, sizeof *out);
    size_t n = strnlen(hex, 2 * KEY_PRIV_BYTES + 1);
    uint8_t raw[KEY_PRIV_BYTES];
    size_t raw_len = 0;
    /* The codec's message would quote a character of the secret; ours does not. */
    if (n != 2 * KEY_PRIV_BYTES || hex_decode(hex, n, raw, sizeof raw, &raw_len, NULL) != ERR_OK ||
        raw_len != KEY_PRIV_BYTES) {
        explicit_bzero(raw, sizeof raw);
        return err_set(e, ERR_INVALID, "private key hex: expected exactly %d hex characters (32 bytes)",
                       2 * KEY_PRIV_BYTES);
    }
    err_code rc = key_priv_from_bytes(out, type, raw, e);
    explicit_bzero(raw, sizeof raw);
    return rc;
}

err_code key_priv_from_multikey(key_priv *out, const char *multikey, err_t *e) {
    assert(out != NULL && multikey != NULL);
    memset(out, 0, sizeof *out);
    size_t n = strnlen(multikey, KEY_TEXT_MAX_CHARS + 1);
    if (n > KEY_TEXT_MAX_CHARS) return err_set(e, ERR_LIMIT, "private multikey: longer than %d characters", KEY_TEXT_MAX_CHARS);
    if (n < 2 || multikey[0] != 'z')
        return err_set(e, ERR_INVALID, "private multikey: must start with 'z' (base58btc)");
    uint8_t raw[KEY_DECODED_MAX_BYTES];
    size_t raw_len = 0, used = 0;
    uint64_t codec = 0;
    err_code rc;
    if (base58btc_decode(multikey + 1, n - 1, raw, sizeof raw, &raw_len, NULL) != ERR_OK) {
        rc = err_set(e, ERR_INVALID, "private multikey: not valid base58btc");
        goto out;
    }
    if (varint_decode(raw, raw_len, &codec, &used, NULL) != ERR_OK) {
        rc = err_set(e, ERR_INVALID, "private multikey: no valid multicodec prefix");
        goto out;
    }
    key_type type;
    if (codec == MC_SECP256K1_PRIV) type = KEY_K256;
    else if (codec == MC_P256_PRIV) type = KEY_P256;
    else if (codec == MC_SECP256K1_PUB || codec == MC_P256_PUB) {
        rc = err_set(e, ERR_INVALID, "private multikey: this is a public key, not a private key");
        goto out;
    } else {
        rc = err_set(e, ERR_INVALID, "private multikey: unsupported multicodec 0x%llx (expected secp256k1-priv 0x1301 or p256-priv 0x1306)",
                     (unsigned long long)codec);
        goto out;
    }
    if (raw_len - used != KEY_PRIV_BYTES) {
        rc = err_set(e, ERR_INVALID, "private multikey: %s key is %zu bytes, expected %d",
                     key_type_name(type), raw_len - used, KEY_PRIV_BYTES);
        goto out;
    }
    rc = key_priv_from_bytes(out, type, raw + used, e);
out:
    explicit_bzero(raw, sizeof raw);
    return rc;
}

size_t key_priv_to_multikey(const key_priv *k, char *out, size_t out_size) {
    assert(k != NULL && type_valid(k->type));
    uint8_t raw[VARINT_MAX_BYTES + KEY_PRIV_BYTES];
    size_t n = varint_encode(priv_codec(k->type), raw);
    memcpy(raw + n, k->priv, KEY_PRIV_BYTES);
    size_t r = multibase_encode('z', raw, n + KEY_PRIV_BYTES, out, out_size);
    explicit_bzero(raw, sizeof raw);
    return r;
}

size_t key_priv_to_hex(const key_priv *k, char *out, size_t out_size) {
    assert(k != NULL);
    return hex_encode(k->priv, KEY_PRIV_BYTES, out, out_size);
}

void key_priv_wipe(key_priv *k) {
    if (k != NULL) explicit_bzero(k, sizeof *k);
}

err_code key_priv_generate(key_priv *out, key_type type, err_t *e) {
    assert(out != NULL);
    memset(out, 0, sizeof *out);
    if (!type_valid(type)) return err_set(e, ERR_USAGE, "unknown key type %d", (int)type);
    uint8_t raw[KEY_PRIV_BYTES];
    for (int i = 0; i < KEY_GENERATE_TRIES; i++) {
        if (RAND_bytes(raw, sizeof raw) != 1) {
            ERR_clear_error();
            explicit_bzero(raw, sizeof raw);
            return err_set(e, ERR_IO, "generating a key: the system random generator failed");
        }
        bool valid = type == KEY_K256 ? secp256k1_ec_seckey_verify(k256_public_ctx(), raw) == 1
                                      : p256_scalar_valid(raw);
        if (!valid) continue;
        err_code rc = key_priv_from_bytes(out, type, raw, e);
        explicit_bzero(raw, sizeof raw);
        return rc;
    }
    explicit_bzero(raw, sizeof raw);
    return err_set(e, ERR_IO, "generating a key: %d random values in a row were out of range; the random generator is broken",
                   KEY_GENERATE_TRIES);
}

/* Trims ASCII whitespace at both ends, in place; returns the new start. */
static char *trim(char *s, size_t *len) {
    size_t a = 0, b = *len;
    while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r' || s[b - 1] == '\n')) b--;
    s[b] = 0;
    *len = b - a;
    return s + a;
}

#define KEY_FILE_FORMATS "one line holding a private multikey (z...), 64 hex characters (k256), or p256:<64 hex characters>"

static err_code parse_key_text(key_priv *out, char *text, size_t len, err_t *e) {
    char *t = trim(text, &len);
    if (len == 0) return err_set(e, ERR_INVALID, "not a key: the file is empty; expected " KEY_FILE_FORMATS);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
            return err_set(e, ERR_INVALID, "not a key: found spaces, line breaks or control characters; expected " KEY_FILE_FORMATS);
    if (!strncmp(t, "k256:", 5)) return key_priv_from_hex(out, KEY_K256, t + 5, e);
    if (!strncmp(t, "p256:", 5)) return key_priv_from_hex(out, KEY_P256, t + 5, e);
    if (t[0] == 'z') return key_priv_from_multikey(out, t, e);
    if (len == 2 * KEY_PRIV_BYTES) return key_priv_from_hex(out, KEY_K256, t, e);
    return err_set(e, ERR_INVALID, "not a key: expected " KEY_FILE_FORMATS);
}

err_code key_priv_load_file(key_priv *out, const char *path, err_t *e) {
    assert(out != NULL && path != NULL);
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK); /* no hang on a FIFO */
    if (fd < 0) return err_set(e, ERR_IO, "key file %s: %s", path, strerror(errno));
    char buf[KEY_FILE_MAX_BYTES + 1];
    size_t len = 0;
    err_code rc = ERR_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = err_set(e, ERR_IO, "key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = err_set(e, ERR_IO, "key file %s: not a regular file", path);
        goto out;
    }
    if ((rc = secure_check_private_fd(fd, path, "key file", e)) != ERR_OK) goto out;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = err_set(e, ERR_IO, "key file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len == sizeof buf - 1) {
            char extra;
            ssize_t more;
            do more = read(fd, &extra, 1); while (more < 0 && errno == EINTR);
            if (more != 0) {
                rc = err_set(e, ERR_LIMIT, "key file %s: larger than %d bytes; not a key file", path, KEY_FILE_MAX_BYTES);
                goto out;
            }
            break;
        }
    }
    buf[len] = 0;
    if (memchr(buf, 0, len) != NULL) {
        rc = err_set(e, ERR_INVALID, "key file %s: contains NUL bytes; not a key file", path);
        goto out;
    }
    if ((rc = parse_key_text(out, buf, len, e)) != ERR_OK) err_wrap(e, "key file %s", path);
out:
    explicit_bzero(buf, sizeof buf);
    close(fd);
    if (rc != ERR_OK) key_priv_wipe(out);
    return rc;
}

/* ------------------------------------------------------------------ public keys */

/* A raw SEC1 point: 33-byte compressed (02/03) or 65-byte uncompressed (04). Hybrid (06/07)
 * and other lengths are refused. The result is always the compressed form. */
static err_code pub_from_point(key_pub *out, key_type type, const uint8_t *p, size_t len, err_t *e) {
    bool shape_ok = (len == KEY_PUB_BYTES && (p[0] == 0x02 || p[0] == 0x03)) || (len == 65 && p[0] == 0x04);
    if (!shape_ok)
        return err_set(e, ERR_INVALID, "%s public key: %zu bytes starting 0x%02x is not a compressed (33 bytes, 02/03) or uncompressed (65 bytes, 04) point",
                       key_type_name(type), len, len ? p[0] : 0);
    out->type = type;
    return type == KEY_K256 ? k256_point_compress(p, len, out->pub, e) : p256_point_compress(p, len, out->pub, e);
}

/* bytes = varint multicodec ‖ point. Sets *type from the codec. */
static err_code pub_from_multicodec(key_pub *out, const uint8_t *raw, size_t raw_len, err_t *e) {
    uint64_t codec = 0;
    size_t used = 0;
    err_code rc = varint_decode(raw, raw_len, &codec, &used, e);
    if (rc != ERR_OK) {
        err_wrap(e, "multicodec prefix");
        return rc;
    }
    key_type type;
    if (codec == MC_SECP256K1_PUB) type = KEY_K256;
    else if (codec == MC_P256_PUB) type = KEY_P256;
    else if (codec == MC_SECP256K1_PRIV || codec == MC_P256_PRIV)
        return err_set(e, ERR_INVALID, "this is a PRIVATE key multicodec, not a public key");
    else
        return err_set(e, ERR_INVALID, "unsupported multicodec 0x%llx (expected secp256k1-pub 0xe7 or p256-pub 0x1200)",
                       (unsigned long long)codec);
    if (raw_len - used != KEY_PUB_BYTES)
        return err_set(e, ERR_INVALID, "%s public key is %zu bytes, expected a %d-byte compressed point",
                       key_type_name(type), raw_len - used, KEY_PUB_BYTES);
    return pub_from_point(out, type, raw + used, raw_len - used, e);
}

err_code key_pub_from_did_key(key_pub *out, const char *did_key, err_t *e) {
    assert(out != NULL && did_key != NULL);
    memset(out, 0, sizeof *out);
    size_t n = strnlen(did_key, KEY_DID_MAX);
    if (n >= KEY_DID_MAX) return err_set(e, ERR_LIMIT, "did:key %.40s...: longer than %d characters", did_key, KEY_DID_MAX - 1);
    size_t plen = strlen(DID_KEY_PREFIX);
    if (strncmp(did_key, DID_KEY_PREFIX "z", plen + 1) != 0)
        return err_set(e, ERR_INVALID, "'%s' is not a did:key (expected \"did:key:z...\")", did_key);
    uint8_t raw[KEY_DECODED_MAX_BYTES];
    size_t raw_len = 0;
    err_code rc = base58btc_decode(did_key + plen + 1, n - plen - 1, raw, sizeof raw, &raw_len, e);
    if (rc == ERR_OK) rc = pub_from_multicodec(out, raw, raw_len, e);
    if (rc != ERR_OK) {
        memset(out, 0, sizeof *out);
        err_wrap(e, "did:key %s", did_key);
        return rc;
    }
    return ERR_OK;
}

err_code key_pub_from_multibase(key_pub *out, key_type type, const char *multibase, err_t *e) {
    assert(out != NULL && multibase != NULL);
    memset(out, 0, sizeof *out);
    size_t n = strnlen(multibase, KEY_TEXT_MAX_CHARS + 1);
    if (n > KEY_TEXT_MAX_CHARS)
        return err_set(e, ERR_LIMIT, "publicKeyMultibase %.40s...: longer than %d characters", multibase, KEY_TEXT_MAX_CHARS);
    if (type != 0 && !type_valid(type)) return err_set(e, ERR_USAGE, "unknown key type %d", (int)type);
    uint8_t raw[KEY_DECODED_MAX_BYTES];
    size_t raw_len = 0;
    err_code rc = multibase_decode(multibase, raw, sizeof raw, &raw_len, e);
    if (rc != ERR_OK) goto fail;
    /* Raw points start 02/03/04; multicodec varints for keys start e7 or 80: never ambiguous. */
    if (raw_len > 0 && (raw[0] == 0x02 || raw[0] == 0x03 || raw[0] == 0x04)) {
        if (type == 0) {
            rc = err_set(e, ERR_INVALID, "a bare point without multicodec needs the key type (from the verification method's type)");
            goto fail;
        }
        rc = pub_from_point(out, type, raw, raw_len, e);
    } else {
        rc = pub_from_multicodec(out, raw, raw_len, e);
        if (rc == ERR_OK && type != 0 && out->type != type)
            rc = err_set(e, ERR_MISMATCH, "is a %s key, but a %s key was expected", key_type_name(out->type), key_type_name(type));
    }
    if (rc == ERR_OK) return ERR_OK;
fail:
    memset(out, 0, sizeof *out);
    err_wrap(e, "publicKeyMultibase %s", multibase);
    return rc;
}

size_t key_pub_to_did_key(const key_pub *k, char *out, size_t out_size) {
    assert(k != NULL && type_valid(k->type));
    size_t plen = strlen(DID_KEY_PREFIX);
    if (out == NULL || out_size <= plen) return 0;
    uint8_t raw[VARINT_MAX_BYTES + KEY_PUB_BYTES];
    size_t n = varint_encode(pub_codec(k->type), raw);
    memcpy(raw + n, k->pub, KEY_PUB_BYTES);
    size_t r = multibase_encode('z', raw, n + KEY_PUB_BYTES, out + plen, out_size - plen);
    if (r == 0) {
        out[0] = 0;
        return 0;
    }
    memcpy(out, DID_KEY_PREFIX, plen);
    return plen + r;
}

bool key_pub_eq(const key_pub *a, const key_pub *b) {
    assert(a != NULL && b != NULL);
    return a->type == b->type && memcmp(a->pub, b->pub, KEY_PUB_BYTES) == 0;
}

/* ------------------------------------------------------------------ sign / verify */

err_code key_sign(const key_priv *k, const uint8_t *msg, size_t len, uint8_t sig[KEY_SIG_BYTES], err_t *e) {
    assert(k != NULL && sig != NULL && (msg != NULL || len == 0));
    if (!type_valid(k->type)) return err_set(e, ERR_USAGE, "key_sign: key is not initialised");
    uint8_t digest[DIGEST_BYTES];
    err_code rc = sha256(msg, len, digest, e);
    if (rc == ERR_OK) rc = k->type == KEY_K256 ? k256_sign(k, digest, sig, e) : p256_sign(k, digest, sig, e);
    explicit_bzero(digest, sizeof digest);
    return rc;
}

err_code key_verify(const key_pub *k, const uint8_t *msg, size_t len, const uint8_t *sig, size_t sig_len, err_t *e) {
    assert(k != NULL && (msg != NULL || len == 0));
    if (!type_valid(k->type)) return err_set(e, ERR_USAGE, "key_verify: key is not initialised");
    if (sig == NULL || sig_len != KEY_SIG_BYTES)
        return err_set(e, ERR_INVALID, "%s signature is %zu bytes; atproto requires exactly %d bytes (compact r||s, not DER)",
                       key_type_name(k->type), sig_len, KEY_SIG_BYTES);
    uint8_t digest[DIGEST_BYTES];
    err_code rc = sha256(msg, len, digest, e);
    if (rc != ERR_OK) return rc;
    return k->type == KEY_K256 ? k256_verify(k, digest, sig, e) : p256_verify(k, digest, sig, e);
}
