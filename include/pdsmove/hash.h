/* hash.h — SHA-256 (OpenSSL libcrypto), one-shot and streaming. */
#ifndef PDSMOVE_HASH_H
#define PDSMOVE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct hash_sha256_ctx hash_sha256_ctx; /* opaque */

void hash_sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);
hash_sha256_ctx *hash_sha256_new(void); /* NULL on allocation failure */
void hash_sha256_update(hash_sha256_ctx *c, const void *data, size_t len);
void hash_sha256_final(hash_sha256_ctx *c, uint8_t out[SHA256_BYTES]); /* frees c */
void hash_sha256_free(hash_sha256_ctx *c); /* for abandoning a context */

#endif
