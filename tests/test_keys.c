/* test_keys.c — the keys module against the atproto interop crypto fixtures (signature
 * validity incl. high-S and DER, did:key derivation) plus round trips, low-S on every
 * signature, key files, and rejection of wrong-curve and garbage input. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <secp256k1.h>

#include "pdsmove/codec.h"
#include "pdsmove/keys.h"

#define CRYPTO_DIR PDSMOVE_FIXTURES "/interop/crypto"

static const uint8_t K256_N[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
};
static const uint8_t P256_N[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

static const uint8_t *order_of(key_type t) { return t == KEY_K256 ? K256_N : P256_N; }

/* out = a - b over 32-byte big-endian numbers (a >= b). */
static void sub32(const uint8_t a[32], const uint8_t b[32], uint8_t out[32]) {
    int borrow = 0;
    for (int i = 31; i >= 0; i--) {
        int d = a[i] - b[i] - borrow;
        borrow = d < 0;
        out[i] = (uint8_t)(d + (borrow ? 256 : 0));
    }
}

/* s <= floor(n/2)? */
static bool is_low_s(key_type t, const uint8_t sig[64]) {
    const uint8_t *n = order_of(t);
    uint8_t half[32];
    int carry = 0;
    for (int i = 0; i < 32; i++) {
        half[i] = (uint8_t)((n[i] >> 1) | (carry << 7));
        carry = n[i] & 1;
    }
    return memcmp(sig + 32, half, 32) <= 0;
}

/* Replaces s by n - s: the other, equally valid-looking signature for the same r. */
static void flip_s(key_type t, uint8_t sig[64]) {
    uint8_t s2[32];
    sub32(order_of(t), sig + 32, s2);
    memcpy(sig + 32, s2, 32);
}

static json_t *load_json(const char *path) {
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    cr_assert_not_null(j, "cannot load %s: %s (line %d)", path, jerr.text, jerr.line);
    cr_assert(json_is_array(j), "%s: expected a JSON array", path);
    cr_assert_gt(json_array_size(j), 0, "%s: no cases", path);
    return j;
}

static const char *jstr(json_t *obj, const char *key, size_t i) {
    const char *s = json_string_value(json_object_get(obj, key));
    cr_assert_not_null(s, "case %zu: missing string field %s", i, key);
    return s;
}

static bool has_tag(json_t *c, const char *tag) {
    json_t *tags = json_object_get(c, "tags");
    size_t k;
    json_t *v;
    json_array_foreach(tags, k, v) if (json_is_string(v) && !strcmp(json_string_value(v), tag)) return true;
    return false;
}

/* ------------------------------------------------------------------ signature fixtures */

Test(keys, signature_fixtures_give_the_expected_validity) {
    json_t *cases = load_json(CRYPTO_DIR "/signature-fixtures.json");
    size_t i;
    json_t *c;
    int n_valid = 0, n_high_s = 0, n_der = 0;
    json_array_foreach(cases, i, c) {
        const char *comment = jstr(c, "comment", i);
        const char *alg = jstr(c, "algorithm", i);
        const char *suite = jstr(c, "didDocSuite", i);
        const char *did = jstr(c, "publicKeyDid", i);
        const char *mb = jstr(c, "publicKeyMultibase", i);
        const char *msg64 = jstr(c, "messageBase64", i);
        const char *sig64 = jstr(c, "signatureBase64", i);
        json_t *valid_j = json_object_get(c, "validSignature");
        cr_assert(json_is_boolean(valid_j), "case %zu (%s): validSignature missing", i, comment);
        bool want_valid = json_is_true(valid_j);

        key_type want_type = !strcmp(alg, "ES256K") ? KEY_K256 : !strcmp(alg, "ES256") ? KEY_P256 : 0;
        cr_assert_neq(want_type, 0, "case %zu (%s): unknown algorithm %s", i, comment, alg);
        key_type suite_type = strstr(suite, "Secp256k1") ? KEY_K256 : strstr(suite, "Secp256r1") ? KEY_P256 : 0;
        cr_assert_eq(suite_type, want_type, "case %zu (%s): suite %s vs algorithm %s", i, comment, suite, alg);

        err_t e = {0};
        key_pub from_did, from_mb;
        cr_assert_eq(key_pub_from_did_key(&from_did, did, &e), ERR_OK, "case %zu (%s): did:key %s: %s", i, comment, did, e.msg);
        cr_assert_eq(from_did.type, want_type, "case %zu (%s): did:key curve", i, comment);
        cr_assert_eq(key_pub_from_multibase(&from_mb, suite_type, mb, &e), ERR_OK, "case %zu (%s): multibase %s: %s", i, comment, mb, e.msg);
        cr_assert(key_pub_eq(&from_did, &from_mb), "case %zu (%s): publicKeyMultibase and publicKeyDid differ", i, comment);
        char back[KEY_DID_MAX];
        cr_assert_gt(key_pub_to_did_key(&from_did, back, sizeof back), 0, "case %zu: to did:key", i);
        cr_assert_str_eq(back, did, "case %zu (%s): did:key round trip", i, comment);

        uint8_t msg[256], sig[128];
        size_t msg_len = 0, sig_len = 0;
        cr_assert_eq(base64_decode(msg64, strlen(msg64), msg, sizeof msg, &msg_len, &e), ERR_OK, "case %zu: message: %s", i, e.msg);
        cr_assert_eq(base64_decode(sig64, strlen(sig64), sig, sizeof sig, &sig_len, &e), ERR_OK, "case %zu: signature: %s", i, e.msg);

        err_code rc = key_verify(&from_did, msg, msg_len, sig, sig_len, &e);
        if (want_valid) {
            cr_assert_eq(rc, ERR_OK, "case %zu (%s): expected valid, got %s: %s", i, comment, err_code_name(rc), e.msg);
            n_valid++;
            /* The high-S twin of a valid signature must be refused, and for the right reason. */
            cr_assert_eq(sig_len, 64, "case %zu", i);
            flip_s(want_type, sig);
            rc = key_verify(&from_did, msg, msg_len, sig, sig_len, &e);
            cr_assert_eq(rc, ERR_INVALID, "case %zu (%s): high-S twin must be ERR_INVALID, got %s", i, comment, err_code_name(rc));
            cr_assert(strstr(e.msg, "high-S") != NULL, "case %zu: message should say high-S: %s", i, e.msg);
        } else {
            cr_assert_neq(rc, ERR_OK, "case %zu (%s): expected invalid, but it verified", i, comment);
            cr_assert(e.msg[0] != 0, "case %zu: rejection must explain itself", i);
        }
        if (has_tag(c, "high-s")) {
            n_high_s++;
            cr_assert_eq(rc, ERR_INVALID, "case %zu (%s): high-S must be ERR_INVALID, got %s", i, comment, err_code_name(rc));
            /* ...and it is refused only for being high-S: its low-S twin verifies. */
            flip_s(want_type, sig);
            rc = key_verify(&from_did, msg, msg_len, sig, sig_len, &e);
            cr_assert_eq(rc, ERR_OK, "case %zu (%s): low-S twin should verify: %s", i, comment, e.msg);
        }
        if (has_tag(c, "der-encoded")) {
            n_der++;
            cr_assert_neq(sig_len, 64, "case %zu: DER fixture is 64 bytes?", i);
            cr_assert_eq(rc, ERR_INVALID, "case %zu (%s): DER must be ERR_INVALID, got %s", i, comment, err_code_name(rc));
        }
    }
    cr_assert_gt(n_valid, 0, "no valid cases were seen");
    cr_assert_gt(n_high_s, 0, "no high-S cases were seen");
    cr_assert_gt(n_der, 0, "no DER cases were seen");
    json_decref(cases);
}

/* ------------------------------------------------------------------ did:key fixtures */

Test(keys, w3c_k256_private_hex_gives_the_fixture_did_key) {
    json_t *cases = load_json(CRYPTO_DIR "/w3c_didkey_K256.json");
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *hex = jstr(c, "privateKeyBytesHex", i);
        const char *want = jstr(c, "publicDidKey", i);
        err_t e = {0};
        key_priv k;
        cr_assert_eq(key_priv_from_hex(&k, KEY_K256, hex, &e), ERR_OK, "case %zu: %s", i, e.msg);
        char did[KEY_DID_MAX];
        cr_assert_eq(key_pub_to_did_key(&k.pub, did, sizeof did), strlen(want), "case %zu: did length", i);
        cr_assert_str_eq(did, want, "case %zu: did:key of %s", i, hex);
        key_pub p;
        cr_assert_eq(key_pub_from_did_key(&p, want, &e), ERR_OK, "case %zu: %s", i, e.msg);
        cr_assert(key_pub_eq(&p, &k.pub), "case %zu: parsed did:key differs from derived key", i);
        char hex_back[65];
        cr_assert_eq(key_priv_to_hex(&k, hex_back, sizeof hex_back), 64, "case %zu", i);
        cr_assert_str_eq(hex_back, hex, "case %zu: hex round trip", i);
        key_priv_wipe(&k);
    }
    json_decref(cases);
}

Test(keys, w3c_p256_private_key_gives_the_fixture_did_key) {
    json_t *cases = load_json(CRYPTO_DIR "/w3c_didkey_P256.json");
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *b58 = jstr(c, "privateKeyBytesBase58", i);
        const char *want = jstr(c, "publicDidKey", i);
        err_t e = {0};
        uint8_t raw[64];
        size_t raw_len = 0;
        cr_assert_eq(base58btc_decode(b58, strlen(b58), raw, sizeof raw, &raw_len, &e), ERR_OK, "case %zu: %s", i, e.msg);
        cr_assert_eq(raw_len, KEY_PRIV_BYTES, "case %zu: private key length", i);
        key_priv k;
        cr_assert_eq(key_priv_from_bytes(&k, KEY_P256, raw, &e), ERR_OK, "case %zu: %s", i, e.msg);
        char did[KEY_DID_MAX];
        cr_assert_gt(key_pub_to_did_key(&k.pub, did, sizeof did), 0, "case %zu", i);
        cr_assert_str_eq(did, want, "case %zu: did:key of %s", i, b58);
        /* the same key through hex with the p256 type */
        char hex[65];
        cr_assert_eq(hex_encode(raw, 32, hex, sizeof hex), 64, "case %zu", i);
        key_priv k2;
        cr_assert_eq(key_priv_from_hex(&k2, KEY_P256, hex, &e), ERR_OK, "case %zu: %s", i, e.msg);
        cr_assert(key_pub_eq(&k.pub, &k2.pub), "case %zu: hex and bytes differ", i);
        key_pub p;
        cr_assert_eq(key_pub_from_did_key(&p, want, &e), ERR_OK, "case %zu: %s", i, e.msg);
        cr_assert(key_pub_eq(&p, &k.pub), "case %zu: parsed did:key differs", i);
        key_priv_wipe(&k);
        key_priv_wipe(&k2);
    }
    json_decref(cases);
}

/* ------------------------------------------------------------------ sign / verify */

static const key_type both[] = {KEY_K256, KEY_P256};

Test(keys, sign_then_verify_round_trips_and_tampering_is_detected) {
    for (size_t t = 0; t < 2; t++) {
        key_type ty = both[t];
        const char *name = key_type_name(ty);
        err_t e = {0};
        key_priv k, other;
        cr_assert_eq(key_priv_generate(&k, ty, &e), ERR_OK, "%s generate: %s", name, e.msg);
        cr_assert_eq(key_priv_generate(&other, ty, &e), ERR_OK, "%s generate: %s", name, e.msg);
        cr_assert_eq(k.type, ty, "%s: type", name);
        cr_assert_eq(k.pub.type, ty, "%s: pub type", name);
        cr_assert(!key_pub_eq(&k.pub, &other.pub), "%s: two generated keys are equal", name);

        const uint8_t msg[] = "a plc_operation, more or less";
        uint8_t sig[KEY_SIG_BYTES];
        cr_assert_eq(key_sign(&k, msg, sizeof msg, sig, &e), ERR_OK, "%s sign: %s", name, e.msg);
        cr_assert_eq(key_verify(&k.pub, msg, sizeof msg, sig, sizeof sig, &e), ERR_OK, "%s verify: %s", name, e.msg);
        cr_assert_eq(key_verify(&other.pub, msg, sizeof msg, sig, sizeof sig, &e), ERR_MISMATCH, "%s: other key must not verify", name);

        uint8_t msg2[sizeof msg];
        memcpy(msg2, msg, sizeof msg);
        msg2[3] ^= 1;
        cr_assert_eq(key_verify(&k.pub, msg2, sizeof msg2, sig, sizeof sig, &e), ERR_MISMATCH, "%s: changed message must not verify", name);
        cr_assert_eq(key_verify(&k.pub, msg, sizeof msg - 1, sig, sizeof sig, &e), ERR_MISMATCH, "%s: truncated message must not verify", name);

        uint8_t bad[KEY_SIG_BYTES];
        memcpy(bad, sig, sizeof bad);
        bad[10] ^= 0x40; /* r */
        cr_assert_neq(key_verify(&k.pub, msg, sizeof msg, bad, sizeof bad, &e), ERR_OK, "%s: changed r must not verify", name);
        memcpy(bad, sig, sizeof bad);
        bad[63] ^= 0x01; /* s, stays low */
        cr_assert_neq(key_verify(&k.pub, msg, sizeof msg, bad, sizeof bad, &e), ERR_OK, "%s: changed s must not verify", name);
        memset(bad, 0, sizeof bad);
        cr_assert_eq(key_verify(&k.pub, msg, sizeof msg, bad, sizeof bad, &e), ERR_INVALID, "%s: all-zero signature", name);
        memset(bad, 0xff, sizeof bad);
        cr_assert_eq(key_verify(&k.pub, msg, sizeof msg, bad, sizeof bad, &e), ERR_INVALID, "%s: r,s >= n", name);

        /* lengths other than 64 (DER, truncated, padded) */
        const size_t lens[] = {0, 63, 65, 70, 72};
        uint8_t longsig[80] = {0};
        memcpy(longsig, sig, sizeof sig);
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
            cr_assert_eq(key_verify(&k.pub, msg, sizeof msg, longsig, lens[l], &e), ERR_INVALID,
                         "%s: a %zu-byte signature must be ERR_INVALID", name, lens[l]);

        /* empty message signs too */
        cr_assert_eq(key_sign(&k, NULL, 0, sig, &e), ERR_OK, "%s sign empty: %s", name, e.msg);
        cr_assert_eq(key_verify(&k.pub, NULL, 0, sig, sizeof sig, &e), ERR_OK, "%s verify empty: %s", name, e.msg);
        key_priv_wipe(&k);
        key_priv_wipe(&other);
        for (size_t b = 0; b < sizeof k; b++) cr_assert_eq(((uint8_t *)&k)[b], 0, "wipe left byte %zu", b);
    }
}

Test(keys, signatures_are_always_low_s_and_their_high_s_twins_are_refused) {
    /* P-256 nonces are random, so about half the raw signatures are high-S before we
     * normalise: 200 signatures exercise that path with certainty (2^-200). */
    const int rounds[] = {64, 200};
    for (size_t t = 0; t < 2; t++) {
        key_type ty = both[t];
        err_t e = {0};
        key_priv k;
        cr_assert_eq(key_priv_generate(&k, ty, &e), ERR_OK, "%s: %s", key_type_name(ty), e.msg);
        for (int i = 0; i < rounds[t]; i++) {
            char msg[32];
            int n = snprintf(msg, sizeof msg, "message %d", i);
            uint8_t sig[KEY_SIG_BYTES];
            cr_assert_eq(key_sign(&k, (const uint8_t *)msg, (size_t)n, sig, &e), ERR_OK, "%s #%d: %s", key_type_name(ty), i, e.msg);
            cr_assert(is_low_s(ty, sig), "%s signature #%d is high-S", key_type_name(ty), i);
            cr_assert_eq(key_verify(&k.pub, (const uint8_t *)msg, (size_t)n, sig, sizeof sig, &e), ERR_OK,
                         "%s #%d: %s", key_type_name(ty), i, e.msg);
            if (i < 8) {
                flip_s(ty, sig);
                cr_assert_eq(key_verify(&k.pub, (const uint8_t *)msg, (size_t)n, sig, sizeof sig, &e), ERR_INVALID,
                             "%s #%d: high-S twin must be ERR_INVALID", key_type_name(ty), i);
            }
        }
        key_priv_wipe(&k);
    }
}

Test(keys, a_signature_by_one_curve_does_not_verify_under_the_other) {
    err_t e = {0};
    key_priv k;
    cr_assert_eq(key_priv_from_hex(&k, KEY_K256, "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c", &e), ERR_OK, "%s", e.msg);
    key_priv p;
    cr_assert_eq(key_priv_from_hex(&p, KEY_P256, "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c", &e), ERR_OK, "%s", e.msg);
    cr_assert(!key_pub_eq(&k.pub, &p.pub), "same scalar on two curves gives equal keys?");
    uint8_t sig[KEY_SIG_BYTES];
    const uint8_t msg[] = "x";
    cr_assert_eq(key_sign(&k, msg, 1, sig, &e), ERR_OK, "%s", e.msg);
    cr_assert_neq(key_verify(&p.pub, msg, 1, sig, sizeof sig, &e), ERR_OK, "k256 signature verified as p256");
    cr_assert_eq(key_sign(&p, msg, 1, sig, &e), ERR_OK, "%s", e.msg);
    cr_assert_neq(key_verify(&k.pub, msg, 1, sig, sizeof sig, &e), ERR_OK, "p256 signature verified as k256");
    key_priv_wipe(&k);
    key_priv_wipe(&p);
}

/* ------------------------------------------------------------------ private key formats */

Test(keys, private_multikey_round_trips_with_the_right_multicodec) {
    const uint8_t prefix[2][2] = {{0x81, 0x26}, {0x86, 0x26}}; /* 0x1301, 0x1306 */
    for (size_t t = 0; t < 2; t++) {
        key_type ty = both[t];
        err_t e = {0};
        key_priv k, back;
        cr_assert_eq(key_priv_generate(&k, ty, &e), ERR_OK, "%s", e.msg);
        char mk[128];
        size_t n = key_priv_to_multikey(&k, mk, sizeof mk);
        cr_assert_gt(n, 0, "%s: to multikey", key_type_name(ty));
        cr_assert_eq(strlen(mk), n, "%s: length", key_type_name(ty));
        cr_assert_eq(mk[0], 'z', "%s: multikey starts with z", key_type_name(ty));
        uint8_t raw[64];
        size_t rl = 0;
        cr_assert_eq(base58btc_decode(mk + 1, n - 1, raw, sizeof raw, &rl, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(rl, 34, "%s: 2-byte codec + 32-byte key", key_type_name(ty));
        cr_assert(raw[0] == prefix[t][0] && raw[1] == prefix[t][1], "%s: multicodec %02x %02x", key_type_name(ty), raw[0], raw[1]);
        cr_assert(memcmp(raw + 2, k.priv, 32) == 0, "%s: key bytes", key_type_name(ty));
        cr_assert_eq(key_priv_from_multikey(&back, mk, &e), ERR_OK, "%s: %s", key_type_name(ty), e.msg);
        cr_assert_eq(back.type, ty, "%s: type after round trip", key_type_name(ty));
        cr_assert(memcmp(back.priv, k.priv, 32) == 0, "%s: private key after round trip", key_type_name(ty));
        cr_assert(key_pub_eq(&back.pub, &k.pub), "%s: public key after round trip", key_type_name(ty));
        cr_assert_eq(key_priv_to_multikey(&k, mk, 10), 0, "%s: too-small buffer must return 0", key_type_name(ty));
        key_priv_wipe(&k);
        key_priv_wipe(&back);
    }
}

Test(keys, private_hex_accepts_exactly_32_bytes_in_range) {
    err_t e = {0};
    key_priv k;
    const char *good = "9085D2BEF69286A6CBB51623C8FA258629945CD55CA705CC4E66700396894E0C";
    cr_assert_eq(key_priv_from_hex(&k, KEY_K256, good, &e), ERR_OK, "upper-case hex: %s", e.msg);
    char did[KEY_DID_MAX];
    key_pub_to_did_key(&k.pub, did, sizeof did);
    cr_assert_str_eq(did, "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme");

    char hex[65];
    const struct { key_type t; const uint8_t *n; } curves[] = {{KEY_K256, K256_N}, {KEY_P256, P256_N}};
    for (size_t c = 0; c < 2; c++) {
        const char *name = key_type_name(curves[c].t);
        hex_encode(curves[c].n, 32, hex, sizeof hex);
        cr_assert_eq(key_priv_from_hex(&k, curves[c].t, hex, &e), ERR_INVALID, "%s: the order n is not a key", name);
        uint8_t nm1[32], one[32] = {0};
        one[31] = 1;
        sub32(curves[c].n, one, nm1);
        hex_encode(nm1, 32, hex, sizeof hex);
        cr_assert_eq(key_priv_from_hex(&k, curves[c].t, hex, &e), ERR_OK, "%s: n-1 is a key: %s", name, e.msg);
        hex_encode(one, 32, hex, sizeof hex);
        cr_assert_eq(key_priv_from_hex(&k, curves[c].t, hex, &e), ERR_OK, "%s: 1 is a key: %s", name, e.msg);
        memset(hex, '0', 64);
        cr_assert_eq(key_priv_from_hex(&k, curves[c].t, hex, &e), ERR_INVALID, "%s: zero is not a key", name);
        memset(hex, 'f', 64);
        cr_assert_eq(key_priv_from_hex(&k, curves[c].t, hex, &e), ERR_INVALID, "%s: 2^256-1 is not a key", name);
    }

    const char *bad[] = {
        "", "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0",   /* 63 */
        "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c0",      /* 65 */
        "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c00",     /* 66 */
        "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e6670039689qe0c",       /* non-hex */
        "0x85d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c",       /* 0x prefix */
        " 085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&k, 0xaa, sizeof k);
        cr_assert_eq(key_priv_from_hex(&k, KEY_K256, bad[i], &e), ERR_INVALID, "must reject hex \"%s\"", bad[i]);
        cr_assert(e.msg[0] != 0, "rejecting \"%s\" must explain why", bad[i]);
        cr_assert(strstr(e.msg, "qe0c") == NULL && strstr(e.msg, "9085") == NULL, "error echoes the secret: %s", e.msg);
        for (size_t b = 0; b < sizeof k.priv; b++) cr_assert_eq(k.priv[b], 0, "rejected key left bytes behind (\"%s\")", bad[i]);
    }
    cr_assert_eq(key_priv_from_hex(&k, (key_type)7, good, &e), ERR_USAGE, "unknown type");
    key_priv_wipe(&k);
}

Test(keys, private_multikey_rejects_garbage_and_public_keys) {
    const char *bad[] = {
        "", "z", "zzzz", "z0OIl", "Q3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",     /* a public secp256k1 multikey */
        "zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb",     /* a public p256 multikey */
        "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",      /* ed25519 public */
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t e = {0};
        key_priv k;
        cr_assert_neq(key_priv_from_multikey(&k, bad[i], &e), ERR_OK, "must reject multikey \"%s\"", bad[i]);
        cr_assert(e.msg[0] != 0, "rejecting \"%s\" must explain why", bad[i]);
    }
    /* right codec, wrong length: secp256k1-priv + 31 bytes, and + 33 bytes */
    for (size_t len = 31; len <= 33; len += 2) {
        uint8_t raw[40] = {0x81, 0x26};
        memset(raw + 2, 0x11, len);
        char mk[80];
        cr_assert_gt(multibase_encode('z', raw, 2 + len, mk, sizeof mk), 0);
        err_t e = {0};
        key_priv k;
        cr_assert_eq(key_priv_from_multikey(&k, mk, &e), ERR_INVALID, "%zu-byte key must be rejected", len);
    }
}

/* ------------------------------------------------------------------ key files */

typedef struct {
    char dir[64];
    char path[128];
} tmp_t;

static void tmp_init(tmp_t *t) {
    strcpy(t->dir, "/tmp/pdsmove-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir), "mkdtemp");
    snprintf(t->path, sizeof t->path, "%s/key", t->dir);
}

static void write_file(const char *path, const char *content, size_t len, mode_t mode) {
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(write(fd, content, len), (ssize_t)len, "write %s", path);
    cr_assert_eq(fchmod(fd, mode), 0, "chmod %s", path);
    close(fd);
}

static void tmp_done(tmp_t *t) {
    unlink(t->path);
    rmdir(t->dir);
}

Test(keys, key_files_load_hex_and_multikey_and_refuse_loose_modes_naming_the_chmod) {
    tmp_t t;
    tmp_init(&t);
    const char *hex = "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c";
    const char *did_k = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";
    struct { const char *content; mode_t mode; key_type type; bool insecure; } ok[] = {
        {"9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 0600, KEY_K256, false},
        {"9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c", 0400, KEY_K256, false},
        {"  9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\r\n", 0644, KEY_K256, true},
        {"k256:9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 0640, KEY_K256, true},
        {"p256:9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 0600, KEY_P256, false},
        {"9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 0620, KEY_K256, true},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        write_file(t.path, ok[i].content, strlen(ok[i].content), ok[i].mode);
        err_t e = {0};
        key_priv k;
        if (ok[i].insecure) {
            /* group or others may read (or change) it: refused, the chmod named, the key not kept */
            cr_assert_eq(key_priv_load_file(&k, t.path, &e), ERR_USAGE, "file %zu: mode %o should be refused", i, (unsigned)ok[i].mode);
            char want[200];
            snprintf(want, sizeof want, "chmod 600 %s", t.path);
            cr_assert(strstr(e.msg, want) != NULL, "file %zu: the refusal should name `%s`: %s", i, want, e.msg);
            cr_assert(strstr(e.msg, "5d2bef69") == NULL, "file %zu: message echoes the key: %s", i, e.msg);
            cr_assert_eq(k.type, 0, "file %zu: the key is wiped on refusal", i);
            chmod(t.path, 0600);
        }
        cr_assert_eq(key_priv_load_file(&k, t.path, &e), ERR_OK, "file %zu: %s", i, e.msg);
        cr_assert_eq(k.type, ok[i].type, "file %zu: type", i);
        char got_hex[65];
        key_priv_to_hex(&k, got_hex, sizeof got_hex);
        cr_assert_str_eq(got_hex, hex, "file %zu: key bytes", i);
        if (ok[i].type == KEY_K256) {
            char did[KEY_DID_MAX];
            key_pub_to_did_key(&k.pub, did, sizeof did);
            cr_assert_str_eq(did, did_k, "file %zu: did:key", i);
        }
        key_priv_wipe(&k);
    }

    /* a multikey file, as `pdsmove key generate` writes it */
    for (size_t c = 0; c < 2; c++) {
        err_t e = {0};
        key_priv k, back;
        cr_assert_eq(key_priv_generate(&k, both[c], &e), ERR_OK, "%s", e.msg);
        char line[130];
        size_t n = key_priv_to_multikey(&k, line, sizeof line - 1);
        line[n++] = '\n';
        write_file(t.path, line, n, 0600);
        cr_assert_eq(key_priv_load_file(&back, t.path, &e), ERR_OK, "%s multikey file: %s", key_type_name(both[c]), e.msg);
        cr_assert_eq(back.type, both[c], "multikey file type");
        cr_assert(key_pub_eq(&back.pub, &k.pub), "multikey file key");
        key_priv_wipe(&k);
        key_priv_wipe(&back);
    }
    tmp_done(&t);
}

Test(keys, key_files_with_garbage_are_refused_without_echoing_them) {
    tmp_t t;
    tmp_init(&t);
    char big[2000];
    memset(big, 'a', sizeof big);
    struct { const char *content; size_t len; err_code want; } bad[] = {
        {"", 0, ERR_INVALID},
        {"\n\n", 2, ERR_INVALID},
        {"hunter2-secret\n", 15, ERR_INVALID},
        {"9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 130, ERR_INVALID},
        {"9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0\n", 64, ERR_INVALID},
        {"x256:9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", 70, ERR_INVALID},
        {"zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme\n", 50, ERR_INVALID}, /* public key */
        {"90\0005d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c", 64, ERR_INVALID},
        {big, sizeof big, ERR_LIMIT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(t.path, bad[i].content, bad[i].len, 0600);
        err_t e = {0};
        key_priv k;
        err_code rc = key_priv_load_file(&k, t.path, &e);
        cr_assert_eq(rc, bad[i].want, "garbage file %zu: expected %s, got %s (%s)", i, err_code_name(bad[i].want), err_code_name(rc), e.msg);
        cr_assert(strstr(e.msg, t.path) != NULL, "garbage file %zu: message should name the file: %s", i, e.msg);
        cr_assert(strstr(e.msg, "hunter2") == NULL && strstr(e.msg, "5d2bef69") == NULL, "file %zu: message echoes content: %s", i, e.msg);
    }
    err_t e = {0};
    key_priv k;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/does-not-exist", t.dir);
    cr_assert_eq(key_priv_load_file(&k, missing, &e), ERR_IO, "missing file");
    cr_assert(strstr(e.msg, missing) != NULL, "message names the missing file: %s", e.msg);
    cr_assert_eq(key_priv_load_file(&k, t.dir, &e), ERR_IO, "a directory is not a key file");
    tmp_done(&t);
}

/* ------------------------------------------------------------------ public key formats */

/* The uncompressed (04 x y) form of a compressed point, computed with the curve libraries
 * directly so the module is checked against an independent implementation. */
static void uncompress(key_type t, const uint8_t in[33], uint8_t out[65]) {
    if (t == KEY_K256) {
        secp256k1_pubkey pk;
        size_t n = 65;
        cr_assert(secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, in, 33));
        cr_assert(secp256k1_ec_pubkey_serialize(secp256k1_context_static, out, &n, &pk, SECP256K1_EC_UNCOMPRESSED));
        cr_assert_eq(n, 65);
    } else {
        EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
        EC_POINT *p = EC_POINT_new(g);
        cr_assert(EC_POINT_oct2point(g, p, in, 33, NULL));
        cr_assert_eq(EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, out, 65, NULL), 65);
        EC_POINT_free(p);
        EC_GROUP_free(g);
    }
}

Test(keys, legacy_multibase_accepts_compressed_and_uncompressed_points) {
    const char *dids[] = {"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
                          "did:key:zDnaeTiq1PdzvZXUaMdezchcMJQpBdH2VN4pgrrEhMCCbmwSb"};
    for (size_t c = 0; c < 2; c++) {
        err_t e = {0};
        key_pub p, q;
        cr_assert_eq(key_pub_from_did_key(&p, dids[c], &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(p.type, both[c]);
        uint8_t un[65];
        uncompress(both[c], p.pub, un);
        char mb[128];
        cr_assert_gt(multibase_encode('z', un, 65, mb, sizeof mb), 0);
        cr_assert_eq(key_pub_from_multibase(&q, both[c], mb, &e), ERR_OK, "%s uncompressed: %s", dids[c], e.msg);
        cr_assert(key_pub_eq(&p, &q), "%s: uncompressed form compresses to the same key", dids[c]);
        /* the multikey form (did:key without the prefix) works with the right type or 0 */
        const char *multikey = dids[c] + strlen("did:key:");
        cr_assert_eq(key_pub_from_multibase(&q, both[c], multikey, &e), ERR_OK, "%s", e.msg);
        cr_assert(key_pub_eq(&p, &q));
        cr_assert_eq(key_pub_from_multibase(&q, 0, multikey, &e), ERR_OK, "%s", e.msg);
        cr_assert(key_pub_eq(&p, &q));
        /* ...but a multikey of the other curve is a mismatch */
        key_type other = both[1 - c];
        cr_assert_eq(key_pub_from_multibase(&q, other, multikey, &e), ERR_MISMATCH, "%s as %s", dids[c], key_type_name(other));
        /* a bare point needs its type */
        cr_assert_eq(key_pub_from_multibase(&q, 0, mb, &e), ERR_INVALID, "bare point without a type");
        /* a hybrid (06/07) encoding is refused; so is a point off the curve */
        uint8_t h[65];
        memcpy(h, un, 65);
        h[0] = (uint8_t)(0x06 | (un[64] & 1));
        multibase_encode('z', h, 65, mb, sizeof mb);
        cr_assert_eq(key_pub_from_multibase(&q, both[c], mb, &e), ERR_INVALID, "%s: hybrid point", dids[c]);
        memcpy(h, un, 65);
        h[64] ^= 1;
        multibase_encode('z', h, 65, mb, sizeof mb);
        cr_assert_eq(key_pub_from_multibase(&q, both[c], mb, &e), ERR_INVALID, "%s: point off the curve", dids[c]);
        /* wrong lengths */
        multibase_encode('z', un, 64, mb, sizeof mb);
        cr_assert_eq(key_pub_from_multibase(&q, both[c], mb, &e), ERR_INVALID, "%s: 64-byte point", dids[c]);
        multibase_encode('z', p.pub, 32, mb, sizeof mb);
        cr_assert_eq(key_pub_from_multibase(&q, both[c], mb, &e), ERR_INVALID, "%s: 32-byte point", dids[c]);
    }
}

Test(keys, did_keys_with_wrong_curves_or_garbage_are_rejected) {
    /* x = 2^256-1 is above both fields' p: not a point on either curve. */
    uint8_t raw[2 + 33];
    char bad_point[2][KEY_DID_MAX];
    const uint8_t codecs[2][2] = {{0xe7, 0x01}, {0x80, 0x24}};
    for (size_t c = 0; c < 2; c++) {
        memcpy(raw, codecs[c], 2);
        raw[2] = 0x02;
        memset(raw + 3, 0xff, 32);
        strcpy(bad_point[c], "did:key:");
        cr_assert_gt(multibase_encode('z', raw, sizeof raw, bad_point[c] + 8, sizeof bad_point[c] - 8), 0);
    }
    const char *bad[] = {
        "", "did:key:", "did:key:z", "did:web:example.com", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "did:key:Q3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",      /* no 'z' */
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBm",      /* truncated */
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBmee",    /* extended */
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYB0e",     /* '0' is not base58 */
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",      /* ed25519 */
        "DID:KEY:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        " did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        bad_point[0], bad_point[1],
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t e = {0};
        key_pub p;
        cr_assert_neq(key_pub_from_did_key(&p, bad[i], &e), ERR_OK, "must reject did:key \"%s\"", bad[i]);
        cr_assert(e.msg[0] != 0, "rejecting \"%s\" must explain why", bad[i]);
    }
    /* a private multikey wrapped as did:key */
    uint8_t priv[34] = {0x81, 0x26};
    memset(priv + 2, 0x22, 32);
    char did[KEY_DID_MAX] = "did:key:";
    multibase_encode('z', priv, sizeof priv, did + 8, sizeof did - 8);
    err_t e = {0};
    key_pub p;
    cr_assert_eq(key_pub_from_did_key(&p, did, &e), ERR_INVALID, "private multicodec in a did:key");
    /* an over-long string */
    char lng[400];
    memset(lng, 'z', sizeof lng - 1);
    lng[sizeof lng - 1] = 0;
    memcpy(lng, "did:key:z", 9);
    cr_assert_eq(key_pub_from_did_key(&p, lng, &e), ERR_LIMIT, "over-long did:key");
    cr_assert_eq(key_pub_from_multibase(&p, KEY_K256, lng + 8, &e), ERR_LIMIT, "over-long multibase");
    /* too-small output buffer */
    cr_assert_eq(key_pub_from_did_key(&p, "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", &e), ERR_OK, "%s", e.msg);
    char small[20];
    cr_assert_eq(key_pub_to_did_key(&p, small, sizeof small), 0, "too-small buffer must return 0");
}

Test(keys, type_names_parse_and_print) {
    key_type t;
    cr_assert(key_type_parse("k256", &t) && t == KEY_K256);
    cr_assert(key_type_parse("p256", &t) && t == KEY_P256);
    cr_assert(key_type_parse("secp256k1", &t) && t == KEY_K256);
    cr_assert(!key_type_parse("ed25519", &t));
    cr_assert(!key_type_parse("", &t));
    cr_assert(!key_type_parse(NULL, &t));
    cr_assert_str_eq(key_type_name(KEY_K256), "k256");
    cr_assert_str_eq(key_type_name(KEY_P256), "p256");
}
