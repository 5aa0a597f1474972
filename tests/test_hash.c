/* test_hash.c — SHA-256 one-shot and streaming against the FIPS 180-2 vectors, and the two
 * agreeing on a large buffer in uneven pieces. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/hash.h"

static void hex(const uint8_t d[SHA256_BYTES], char out[2 * SHA256_BYTES + 1]) {
    for (int i = 0; i < SHA256_BYTES; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

Test(hash, one_shot_matches_the_standard_vectors) {
    static const struct { const char *in, *want; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t d[SHA256_BYTES];
        char h[2 * SHA256_BYTES + 1];
        hash_sha256(v[i].in, strlen(v[i].in), d);
        hex(d, h);
        cr_assert_str_eq(h, v[i].want, "vector %zu", i);
    }
}

Test(hash, streaming_agrees_with_one_shot_on_a_large_buffer) {
    enum { N = 3 << 20 };
    uint8_t *buf = malloc(N);
    cr_assert(buf);
    for (size_t i = 0; i < N; i++) buf[i] = (uint8_t)(i * 131 + (i >> 9));
    uint8_t a[SHA256_BYTES], b[SHA256_BYTES];
    hash_sha256(buf, N, a);
    hash_sha256_ctx *c = hash_sha256_new();
    cr_assert(c);
    size_t at = 0, step = 1;
    while (at < N) {
        size_t k = step < N - at ? step : N - at;
        hash_sha256_update(c, buf + at, k);
        at += k;
        step = step * 3 + 1;
    }
    hash_sha256_final(c, b);
    cr_assert(memcmp(a, b, SHA256_BYTES) == 0);
    free(buf);
}
