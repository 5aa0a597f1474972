/* test_codec.c — varint, base32, base58btc, base64(url), multibase and hex: published vectors
 * (RFC 4648, the base58 draft), round trips over many lengths, and every rejection rule. */
#include <criterion/criterion.h>
#include <string.h>

#include "pdsmove/codec.h"

typedef err_code (*decode_fn)(const char *, size_t, uint8_t *, size_t, size_t *, err_t *);
typedef size_t (*encode_fn)(const uint8_t *, size_t, char *, size_t);

struct vec { const char *raw; const char *enc; };

static void check_vectors(const char *name, const struct vec *v, size_t n, encode_fn enc, decode_fn dec) {
    for (size_t i = 0; i < n; i++) {
        char out[256];
        size_t rl = strlen(v[i].raw);
        size_t got = enc((const uint8_t *)v[i].raw, rl, out, sizeof out);
        cr_assert_eq(got, strlen(v[i].enc), "%s encode \"%s\": length %zu", name, v[i].raw, got);
        cr_assert_str_eq(out, v[i].enc, "%s encode \"%s\"", name, v[i].raw);
        uint8_t back[256];
        size_t bl = 99;
        err_t e; err_clear(&e);
        cr_assert_eq(dec(v[i].enc, strlen(v[i].enc), back, sizeof back, &bl, &e), ERR_OK,
                     "%s decode \"%s\": %s", name, v[i].enc, e.msg);
        cr_assert_eq(bl, rl, "%s decode \"%s\" length", name, v[i].enc);
        cr_assert(memcmp(back, v[i].raw, rl) == 0, "%s decode \"%s\" bytes", name, v[i].enc);
    }
}

static void check_rejects(const char *name, const char *const *bad, size_t n, decode_fn dec, err_code want) {
    for (size_t i = 0; i < n; i++) {
        uint8_t out[256];
        size_t ol = 0;
        err_t e; err_clear(&e);
        err_code rc = dec(bad[i], strlen(bad[i]), out, sizeof out, &ol, &e);
        cr_assert_eq(rc, want, "%s must reject \"%s\" with %s, got %s", name, bad[i], err_code_name(want), err_code_name(rc));
        cr_assert(e.msg[0] != 0, "%s rejecting \"%s\" must explain why", name, bad[i]);
    }
}

/* Deterministic pseudo-random bytes for round trips. */
static void fill(uint8_t *p, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    /* Some cases start with zero bytes, which base58 treats specially. */
    if (seed % 3 == 0 && n > 0) p[0] = 0;
    if (seed % 6 == 0 && n > 1) p[1] = 0;
}

static void round_trip(const char *name, encode_fn enc, decode_fn dec) {
    for (uint32_t len = 0; len <= 80; len++) {
        for (uint32_t seed = 0; seed < 6; seed++) {
            uint8_t in[80], back[80];
            char txt[256];
            fill(in, len, len * 7 + seed);
            size_t tl = enc(in, len, txt, sizeof txt);
            cr_assert(tl > 0 || len == 0, "%s encode of %u bytes (seed %u) failed", name, len, seed);
            cr_assert_eq(strlen(txt), tl, "%s encode length of %u bytes", name, len);
            size_t bl = 0;
            err_t e; err_clear(&e);
            cr_assert_eq(dec(txt, tl, back, sizeof back, &bl, &e), ERR_OK, "%s decode of \"%s\": %s", name, txt, e.msg);
            cr_assert_eq(bl, len, "%s round trip length for \"%s\"", name, txt);
            cr_assert(memcmp(in, back, len) == 0, "%s round trip bytes for \"%s\"", name, txt);
        }
    }
}

/* ---------------------------------------------------------------- varint */

Test(codec_varint, encodes_and_decodes_known_values) {
    struct { uint64_t v; uint8_t b[10]; size_t n; } cases[] = {
        {0, {0x00}, 1},
        {1, {0x01}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {255, {0xff, 0x01}, 2},
        {300, {0xac, 0x02}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {0x71, {0x71}, 1},
        {0xe7, {0xe7, 0x01}, 2},
        {0x1200, {0x80, 0x24}, 2},
        {UINT64_C(0x7fffffffffffffff), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[VARINT_MAX_BYTES];
        size_t n = varint_encode(cases[i].v, buf);
        cr_assert_eq(n, cases[i].n, "varint_encode(%llu) length", (unsigned long long)cases[i].v);
        cr_assert(memcmp(buf, cases[i].b, n) == 0, "varint_encode(%llu) bytes", (unsigned long long)cases[i].v);
        uint64_t v = 0;
        size_t used = 0;
        err_t e; err_clear(&e);
        /* trailing byte after the varint must be left alone */
        uint8_t with_tail[VARINT_MAX_BYTES + 1];
        memcpy(with_tail, cases[i].b, n);
        with_tail[n] = 0xaa;
        cr_assert_eq(varint_decode(with_tail, n + 1, &v, &used, &e), ERR_OK, "decode %llu: %s", (unsigned long long)cases[i].v, e.msg);
        cr_assert_eq(v, cases[i].v);
        cr_assert_eq(used, n);
    }
}

Test(codec_varint, rejects_truncated_nonminimal_and_oversized) {
    struct { uint8_t b[12]; size_t n; err_code want; const char *why; } cases[] = {
        {{0}, 0, ERR_TRUNCATED, "empty input"},
        {{0x80}, 1, ERR_TRUNCATED, "continuation bit on the last byte"},
        {{0xff, 0xff}, 2, ERR_TRUNCATED, "two continuation bytes"},
        {{0x80, 0x00}, 2, ERR_INVALID, "non-minimal zero"},
        {{0x81, 0x00}, 2, ERR_INVALID, "non-minimal 1"},
        {{0xff, 0x80, 0x00}, 3, ERR_INVALID, "non-minimal 3 bytes"},
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10, ERR_INVALID, "10 bytes (2^63)"},
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 11, ERR_INVALID, "11 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = 0;
        size_t used = 0;
        err_t e; err_clear(&e);
        err_code rc = varint_decode(cases[i].b, cases[i].n, &v, &used, &e);
        cr_assert_eq(rc, cases[i].want, "varint %s: got %s", cases[i].why, err_code_name(rc));
        cr_assert(e.msg[0] != 0, "varint %s: no message", cases[i].why);
    }
}

Test(codec_varint, round_trips_powers_of_two) {
    for (int bit = 0; bit < 63; bit++) {
        uint64_t vals[3] = {UINT64_C(1) << bit, (UINT64_C(1) << bit) - 1, (UINT64_C(1) << bit) + 1};
        for (int k = 0; k < 3; k++) {
            uint8_t buf[VARINT_MAX_BYTES];
            size_t n = varint_encode(vals[k], buf);
            cr_assert(n <= 9, "63-bit value encodes in at most 9 bytes");
            uint64_t v = 0;
            size_t used = 0;
            cr_assert_eq(varint_decode(buf, n, &v, &used, NULL), ERR_OK, "decode 2^%d variant %d", bit, k);
            cr_assert_eq(v, vals[k]);
            cr_assert_eq(used, n);
        }
    }
}

/* ---------------------------------------------------------------- base32 */

static const struct vec B32[] = {
    {"", ""}, {"f", "my"}, {"fo", "mzxq"}, {"foo", "mzxw6"}, {"foob", "mzxw6yq"},
    {"fooba", "mzxw6ytb"}, {"foobar", "mzxw6ytboi"},
};

Test(codec_base32, matches_rfc4648_vectors_lowercase_unpadded) {
    check_vectors("base32", B32, sizeof B32 / sizeof B32[0], base32_encode, base32_decode);
    for (size_t i = 0; i < sizeof B32 / sizeof B32[0]; i++)
        cr_assert_eq(base32_encoded_len(strlen(B32[i].raw)), strlen(B32[i].enc), "base32_encoded_len for \"%s\"", B32[i].raw);
}

Test(codec_base32, rejects_padding_case_alphabet_length_and_trailing_bits) {
    const char *bad[] = {
        "my======", "my=", "MY", "Mzxq", "mz", "mzxr", "m", "mzx", "mzxw6y", "mzxw6ytboj",
        "my\n", " my", "my ", "m y", "m0", "m1", "m8", "m9", "mz-q", "my\t",
    };
    check_rejects("base32", bad, sizeof bad / sizeof bad[0], base32_decode, ERR_INVALID);
}

Test(codec_base32, round_trips_all_lengths) { round_trip("base32", base32_encode, base32_decode); }

/* ---------------------------------------------------------------- base64 / base64url */

static const struct vec B64[] = {
    {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
    {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
};

Test(codec_base64, matches_rfc4648_vectors_unpadded) {
    check_vectors("base64", B64, sizeof B64 / sizeof B64[0], base64_encode, base64_decode);
    check_vectors("base64url", B64, sizeof B64 / sizeof B64[0], base64url_encode, base64url_decode);
    for (size_t i = 0; i < sizeof B64 / sizeof B64[0]; i++) {
        cr_assert_eq(base64_encoded_len(strlen(B64[i].raw)), strlen(B64[i].enc));
        cr_assert_eq(base64url_encoded_len(strlen(B64[i].raw)), strlen(B64[i].enc));
    }
}

Test(codec_base64, uses_the_right_alphabet_for_each_variant) {
    const uint8_t in[] = {0xfb, 0xff, 0xbf};
    char out[16];
    cr_assert_eq(base64_encode(in, 3, out, sizeof out), 4);
    cr_assert_str_eq(out, "+/+/");
    cr_assert_eq(base64url_encode(in, 3, out, sizeof out), 4);
    cr_assert_str_eq(out, "-_-_");
}

Test(codec_base64, rejects_padding_whitespace_bad_length_and_trailing_bits) {
    const char *common_bad[] = {
        "Zg==", "Zg=", "Zm8=", "Zm9v====", "=", "Z", "Zm9vY", "Zh", "Zm9", "Zm9vYmF",
        "Zm9v\n", "Zm9v\r\n", " Zm9v", "Zm9v ", "Zm 9v", "Zm9v\t", "Zm9v!",
    };
    check_rejects("base64", common_bad, sizeof common_bad / sizeof common_bad[0], base64_decode, ERR_INVALID);
    check_rejects("base64url", common_bad, sizeof common_bad / sizeof common_bad[0], base64url_decode, ERR_INVALID);
    const char *url_only_bad[] = {"+/+/", "ab+c", "ab/c"};
    check_rejects("base64url", url_only_bad, 3, base64url_decode, ERR_INVALID);
    const char *std_only_bad[] = {"-_-_", "ab-c", "ab_c"};
    check_rejects("base64", std_only_bad, 3, base64_decode, ERR_INVALID);
}

Test(codec_base64, round_trips_all_lengths) {
    round_trip("base64", base64_encode, base64_decode);
    round_trip("base64url", base64url_encode, base64url_decode);
}

/* ---------------------------------------------------------------- base58btc */

Test(codec_base58, matches_known_vectors) {
    struct { const char *hex; const char *enc; } v[] = {
        {"", ""},
        {"00", "1"},
        {"0000", "11"},
        {"0000287fb4cd", "11233QC4"},
        {"48656c6c6f20576f726c6421", "2NEpo7TZRRrLZSi2U"}, /* "Hello World!" */
        {"54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f672e",
         "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"},
        {"e70102" "1111111111111111111111111111111111111111111111111111111111111111",
         "Q3shNZQnGqtqxokGkoVtFWnG9v6TJT43E3rfPxzc1eHqx3qJ"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t raw[64];
        size_t rl = 0;
        cr_assert_eq(hex_decode(v[i].hex, strlen(v[i].hex), raw, sizeof raw, &rl, NULL), ERR_OK);
        char out[128];
        size_t n = base58btc_encode(raw, rl, out, sizeof out);
        cr_assert_eq(n, strlen(v[i].enc), "base58 encode %s length", v[i].hex);
        cr_assert_str_eq(out, v[i].enc, "base58 encode %s", v[i].hex);
        uint8_t back[64];
        size_t bl = 99;
        err_t e; err_clear(&e);
        cr_assert_eq(base58btc_decode(v[i].enc, strlen(v[i].enc), back, sizeof back, &bl, &e), ERR_OK, "decode %s: %s", v[i].enc, e.msg);
        cr_assert_eq(bl, rl, "base58 decode %s length", v[i].enc);
        cr_assert(memcmp(back, raw, rl) == 0, "base58 decode %s bytes", v[i].enc);
    }
}

Test(codec_base58, rejects_characters_outside_the_alphabet) {
    const char *bad[] = {"0", "O", "I", "l", "2NEpo7TZRRrLZSi2U=", " 2NEp", "2NEp\n", "2N+p", "2N-p"};
    check_rejects("base58btc", bad, sizeof bad / sizeof bad[0], base58btc_decode, ERR_INVALID);
}

Test(codec_base58, round_trips_all_lengths) { round_trip("base58btc", base58btc_encode, base58btc_decode); }

/* ---------------------------------------------------------------- limits */

Test(codec_limits, decoders_refuse_small_output_buffers) {
    uint8_t out[4];
    size_t ol = 0;
    cr_assert_eq(base32_decode("mzxw6ytboi", 10, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(base64_decode("Zm9vYmFy", 8, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(base64url_decode("Zm9vYmFy", 8, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(base58btc_decode("2NEpo7TZRRrLZSi2U", 17, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(base58btc_decode("11111", 5, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(hex_decode("0011223344", 10, out, 4, &ol, NULL), ERR_LIMIT);
    cr_assert_eq(base32_decode("mzxw6yq", 7, out, 4, &ol, NULL), ERR_OK, "exactly fits");
    cr_assert_eq(ol, 4);
}

Test(codec_limits, encoders_return_zero_when_output_is_too_small) {
    const uint8_t in[] = "foobar";
    char out[16];
    cr_assert_eq(base32_encode(in, 6, out, 10), 0, "needs 11 with NUL");
    cr_assert_eq(base32_encode(in, 6, out, 11), 10);
    cr_assert_eq(base64_encode(in, 6, out, 8), 0);
    cr_assert_eq(base64url_encode(in, 6, out, 9), 8);
    cr_assert_eq(base58btc_encode(in, 6, out, 3), 0);
    cr_assert_eq(hex_encode(in, 6, out, 12), 0);
    cr_assert_eq(hex_encode(in, 6, out, 13), 12);
    cr_assert_eq(multibase_encode('b', in, 6, out, 11), 0);
    cr_assert_eq(multibase_encode('b', in, 6, out, 12), 11);
    cr_assert_eq(base32_encode(in, 0, out, 1), 0);
    cr_assert_str_eq(out, "", "empty input gives empty string");
}

Test(codec_limits, base58_refuses_overlong_input) {
    static char big[2000];
    memset(big, '2', sizeof big - 1);
    uint8_t out[2000];
    size_t ol = 0;
    err_t e; err_clear(&e);
    cr_assert_eq(base58btc_decode(big, sizeof big - 1, out, sizeof out, &ol, &e), ERR_LIMIT);
}

/* ---------------------------------------------------------------- multibase */

Test(codec_multibase, decodes_each_supported_prefix) {
    struct { const char *s; const char *raw; } v[] = {
        {"bmzxw6ytboi", "foobar"}, {"z2NEpo7TZRRrLZSi2U", "Hello World!"}, {"uZm9vYmFy", "foobar"}, {"b", ""},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t out[64];
        size_t ol = 0;
        err_t e; err_clear(&e);
        cr_assert_eq(multibase_decode(v[i].s, out, sizeof out, &ol, &e), ERR_OK, "multibase %s: %s", v[i].s, e.msg);
        cr_assert_eq(ol, strlen(v[i].raw), "multibase %s length", v[i].s);
        cr_assert(memcmp(out, v[i].raw, ol) == 0, "multibase %s bytes", v[i].s);
    }
}

Test(codec_multibase, encodes_with_prefix) {
    const uint8_t in[] = "foobar";
    char out[64];
    cr_assert_eq(multibase_encode('b', in, 6, out, sizeof out), 11);
    cr_assert_str_eq(out, "bmzxw6ytboi");
    cr_assert_eq(multibase_encode('u', in, 6, out, sizeof out), 9);
    cr_assert_str_eq(out, "uZm9vYmFy");
    cr_assert_eq(multibase_encode('z', (const uint8_t *)"Hello World!", 12, out, sizeof out), 18);
    cr_assert_str_eq(out, "z2NEpo7TZRRrLZSi2U");
    cr_assert_eq(multibase_encode('f', in, 6, out, sizeof out), 0, "unsupported prefix");
}

Test(codec_multibase, rejects_unknown_prefix_and_bad_payload) {
    const char *bad[] = {"", "fmzxw6ytboi", "Bmzxw6ytboi", "mZm9v", "Zm9v", "bmy======", "uZg==", "z0", "bMY"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t out[64];
        size_t ol = 0;
        err_t e; err_clear(&e);
        cr_assert_eq(multibase_decode(bad[i], out, sizeof out, &ol, &e), ERR_INVALID, "multibase must reject \"%s\"", bad[i]);
        cr_assert(e.msg[0] != 0);
    }
}

/* ---------------------------------------------------------------- hex */

Test(codec_hex, encodes_lowercase_and_decodes_either_case) {
    const uint8_t in[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
    char out[16];
    cr_assert_eq(hex_encode(in, 6, out, sizeof out), 12);
    cr_assert_str_eq(out, "0001abcdefff");
    uint8_t back[8];
    size_t bl = 0;
    cr_assert_eq(hex_decode("0001ABcdEFff", 12, back, sizeof back, &bl, NULL), ERR_OK);
    cr_assert_eq(bl, 6);
    cr_assert(memcmp(back, in, 6) == 0);
}

Test(codec_hex, rejects_odd_length_and_non_hex) {
    const char *bad[] = {"0", "abc", "0g", "zz", "00 ", " 00", "0x00", "00\n"};
    check_rejects("hex", bad, sizeof bad / sizeof bad[0], hex_decode, ERR_INVALID);
}
