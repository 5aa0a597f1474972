/* keys.h — signing keys: k256 (secp256k1, libsecp256k1) and P-256 (OpenSSL).
 * Private keys from 32-byte hex (the PDS's config format) or a multikey ("z…" with the
 * secp256k1-priv 0x1301 / p256-priv 0x1306 multicodec); public keys from did:key (compressed,
 * with the secp256k1-pub 0xe7 / p256-pub 0x1200 multicodec) and from the legacy multibase form
 * (a bare compressed or uncompressed point, no multicodec) seen in older DID documents.
 * Signatures are 64-byte compact r||s over SHA-256(message), always low-S; verify rejects
 * high-S and anything that is not exactly 64 bytes (DER). key_priv_wipe erases a private key;
 * the module wipes every copy it makes itself. */
#ifndef PDSMOVE_KEYS_H
#define PDSMOVE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

typedef enum { KEY_K256 = 1, KEY_P256 = 2 } key_type;

#define KEY_PUB_BYTES 33   /* compressed point */
#define KEY_PRIV_BYTES 32
#define KEY_SIG_BYTES 64
#define KEY_DID_MAX 128    /* "did:key:z…" + NUL */

typedef struct {
    key_type type;
    uint8_t pub[KEY_PUB_BYTES];
} key_pub;

typedef struct {
    key_type type;
    uint8_t priv[KEY_PRIV_BYTES];
    key_pub pub;
} key_priv;

const char *key_type_name(key_type t); /* "k256" / "p256" */
/* "k256"/"secp256k1" or "p256"/"secp256r1"/"P-256" → *out; false for anything else. */
bool key_type_parse(const char *s, key_type *out);

/* The private scalar must be in [1, n-1] for its curve (ERR_INVALID otherwise); the public
 * key is derived. On any error *out is wiped. Error messages never quote the secret. */
err_code key_priv_from_bytes(key_priv *out, key_type type, const uint8_t priv[KEY_PRIV_BYTES], err_t *e);
err_code key_priv_from_hex(key_priv *out, key_type type, const char *hex, err_t *e);
err_code key_priv_from_multikey(key_priv *out, const char *multikey, err_t *e);
/* A key file holds one line: a private multikey ("z…", curve from its multicodec) or 64 hex
 * characters (k256; "p256:" or "k256:" before the hex names the curve). Surrounding
 * whitespace is ignored. A file group or others may read or write is refused (ERR_USAGE,
 * naming the `chmod 600` to run): a warning is not enough for a key that controls an identity. */
err_code key_priv_load_file(key_priv *out, const char *path, err_t *e);
err_code key_priv_generate(key_priv *out, key_type type, err_t *e);
/* Both return the length written (NUL-terminated), or 0 if out_size is too small. The hex
 * form is 64 lower-case characters with no curve prefix. */
size_t key_priv_to_multikey(const key_priv *k, char *out, size_t out_size);
size_t key_priv_to_hex(const key_priv *k, char *out, size_t out_size);
void key_priv_wipe(key_priv *k);

/* "did:key:z…" → public key. */
err_code key_pub_from_did_key(key_pub *out, const char *did_key, err_t *e);
/* A DID document's publicKeyMultibase: multikey form (with multicodec) or the legacy form
 * (a bare SEC1 point, 33-byte compressed or 65-byte uncompressed, no multicodec); `type`
 * selects the curve for the legacy form. type 0 = unknown: only the multikey form is then
 * accepted; with a non-zero type a multikey of the other curve is ERR_MISMATCH. */
err_code key_pub_from_multibase(key_pub *out, key_type type, const char *multibase, err_t *e);
size_t key_pub_to_did_key(const key_pub *k, char *out, size_t out_size); /* 0: out too small */
bool key_pub_eq(const key_pub *a, const key_pub *b);

/* Signs SHA-256(msg). */
err_code key_sign(const key_priv *k, const uint8_t *msg, size_t len, uint8_t sig[KEY_SIG_BYTES], err_t *e);
/* ERR_OK when sig is a valid low-S compact signature of SHA-256(msg) by k; ERR_MISMATCH for
 * a wrong signature, ERR_INVALID for high-S or a malformed/DER signature. */
err_code key_verify(const key_pub *k, const uint8_t *msg, size_t len, const uint8_t *sig, size_t sig_len, err_t *e);

#endif
