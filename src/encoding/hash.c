/* hash.c — SHA-256 from OpenSSL (libcrypto); see hash.h. */
#define OPENSSL_API_COMPAT 0x10100000L /* SHA256_Init/Update/Final, see hash_sha256 */
#include "pdsmove/hash.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

struct hash_sha256_ctx { EVP_MD_CTX *md; };

/* One-shot hashing runs once per CAR block (hundreds of thousands per repo), so it uses
 * OpenSSL's SHA-256 directly on a context on the stack (the same assembly, SHA-NI where the
 * CPU has it) rather than EVP_Digest, whose per-call algorithm fetch under a lock, context
 * allocation and cleanup cost more than hashing a small block. These calls are marked
 * deprecated in OpenSSL 3 (in favour of EVP) but remain in the 3.x series; OPENSSL_API_COMPAT
 * above declares them without the warning. */
void hash_sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]) {
    SHA256_CTX c;
    int ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, data, len) == 1 && SHA256_Final(out, &c) == 1;
    assert(ok);
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
