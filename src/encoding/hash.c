/* hash.c — SHA-256 through OpenSSL's EVP interface; see hash.h. */
#include "pdsmove/hash.h"

#include <assert.h>
#include <openssl/evp.h>

struct hash_sha256_ctx { EVP_MD_CTX *md; };

void hash_sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]) {
    unsigned int n = 0;
    int ok = EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
    assert(ok == 1 && n == SHA256_BYTES);
    (void)ok;
}

hash_sha256_ctx *hash_sha256_new(void) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return NULL;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) { EVP_MD_CTX_free(md); return NULL; }
    hash_sha256_ctx *c = (hash_sha256_ctx *)OPENSSL_malloc(sizeof *c);
    if (!c) { EVP_MD_CTX_free(md); return NULL; }
    c->md = md;
    return c;
}

void hash_sha256_update(hash_sha256_ctx *c, const void *data, size_t len) {
    if (len) EVP_DigestUpdate(c->md, data, len);
}

void hash_sha256_final(hash_sha256_ctx *c, uint8_t out[SHA256_BYTES]) {
    unsigned int n = 0;
    EVP_DigestFinal_ex(c->md, out, &n);
    assert(n == SHA256_BYTES);
    hash_sha256_free(c);
}

void hash_sha256_free(hash_sha256_ctx *c) {
    if (!c) return;
    EVP_MD_CTX_free(c->md);
    OPENSSL_free(c);
}
