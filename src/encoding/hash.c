/* hash.c — SHA-256 through OpenSSL's EVP interface; see hash.h. */
#include "pdsmove/hash.h"

#include <assert.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>

struct hash_sha256_ctx { EVP_MD_CTX *md; };

/* One-shot hashing runs once per CAR block (hundreds of thousands per repo), so it avoids
 * EVP_Digest's per-call cost (an implicit algorithm fetch under a lock, a context allocated
 * and freed): the SHA-256 implementation is fetched once per process and each thread keeps
 * one context, freed when the thread ends. If either cannot be had, EVP_Digest is used. */
static EVP_MD *g_sha256;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_ctx_key;
static bool g_key_ok;

static void free_thread_ctx(void *p) { EVP_MD_CTX_free(p); }

static void init_once(void) {
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_key_ok = pthread_key_create(&g_ctx_key, free_thread_ctx) == 0;
}

void hash_sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]) {
    unsigned int n = 0;
    pthread_once(&g_once, init_once);
    EVP_MD_CTX *c = g_key_ok && g_sha256 ? pthread_getspecific(g_ctx_key) : NULL;
    if (!c && g_key_ok && g_sha256 && (c = EVP_MD_CTX_new()) && pthread_setspecific(g_ctx_key, c) != 0) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    if (c && EVP_DigestInit_ex2(c, g_sha256, NULL) == 1 && EVP_DigestUpdate(c, data, len) == 1 &&
        EVP_DigestFinal_ex(c, out, &n) == 1) {
        assert(n == SHA256_BYTES);
        return;
    }
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
