/* age.h — the age v1 file format (age-encryption.org/v1, https://age-encryption.org/v1):
 * bech32 keys, identity and recipients files, the header with X25519 and scrypt stanzas and
 * its MAC, and the STREAM payload, encrypted and decrypted as a stream in bounded memory.
 * What this writes, Debian's `age` opens, and the reverse. OpenSSL 3 EVP only; every secret
 * is wiped with OPENSSL_cleanse. Pure encoding: no printing; I/O only through the caller's
 * read/write callbacks or the fds it hands over.
 *
 * Rules enforced when reading (all from the age v1 spec, as age itself applies them):
 *  - bech32 (BIP 173, not bech32m): at most AGE_BECH32_MAX_CHARS characters, one case only
 *    (mixed case refused), checksum checked; a recipient is "age1…" in lower case holding
 *    32 bytes, an identity "AGE-SECRET-KEY-1…" in upper case holding 32 bytes.
 *  - identity file: one identity per line; lines that are empty or start with '#' are
 *    skipped; a trailing "\r" is dropped (age reads lines that way); anything else is refused
 *    naming the line (never echoing it: it may be a secret). Recipients file: the same, with
 *    "age1…" recipients (ssh keys and plugins are refused: not supported here).
 *  - header: the line "age-encryption.org/v1"; then stanzas "-> TYPE ARG…" (arguments are
 *    non-empty runs of printable ASCII 0x21–0x7e separated by one space), each followed by
 *    its body in canonical unpadded standard base64, 64 characters per line, ended by a line
 *    of fewer than 64 characters (possibly empty); then "--- " and the 43-character base64
 *    header MAC, then "\n". Lines end in "\n" only ("\r" is refused). At most
 *    AGE_MAX_STANZAS stanzas and AGE_HEADER_MAX_BYTES bytes.
 *  - "-> X25519 SHARE": exactly one argument, a 32-byte base64 share; a 32-byte body (the
 *    wrapped 16-byte file key + 16-byte tag); a share giving an all-zero secret is refused.
 *  - "-> scrypt SALT LOG_N": a 16-byte base64 salt and a decimal work factor without sign or
 *    leading zero, 1..AGE_SCRYPT_MAX_LOG_N; a 32-byte body; it must be the only stanza.
 *  - stanza types are case-sensitive; a stanza of another type is skipped (never an error).
 *  - header MAC: HMAC-SHA256 keyed by HKDF-SHA256(file key, salt "", info "header") over the
 *    header up to and including "---"; checked before any payload is read.
 *  - payload: a 16-byte nonce, then chunks of AGE_CHUNK_BYTES plaintext + 16-byte tag, the
 *    last one shorter or full; ChaCha20-Poly1305 keyed by HKDF-SHA256(file key, salt nonce,
 *    info "payload"), chunk nonce = 11-byte big-endian counter || 0x01 on the last chunk
 *    (0x00 otherwise). An empty last chunk only when the whole payload is empty; no data
 *    after the last chunk; at most 2^32 chunks here (256 TiB). Plaintext is handed out
 *    only after its chunk authenticated.
 */
#ifndef PDSMOVE_AGE_H
#define PDSMOVE_AGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

#define AGE_CHUNK_BYTES 65536u             /* plaintext per payload chunk */
#define AGE_TAG_BYTES 16u                  /* Poly1305 tag */
#define AGE_NONCE_BYTES 16u                /* payload nonce after the header */
#define AGE_FILE_KEY_BYTES 16u
#define AGE_KEY_BYTES 32u                  /* X25519 secret / public key */
#define AGE_BECH32_MAX_CHARS 90u           /* as age's bech32 */
#define AGE_RECIPIENT_CHARS 62u            /* "age1" + 58 */
#define AGE_IDENTITY_CHARS 74u             /* "AGE-SECRET-KEY-1" + 58 */
#define AGE_HEADER_MAX_BYTES ((size_t)64 << 10)
#define AGE_MAX_STANZAS 256u               /* in a header read */
#define AGE_MAX_RECIPIENTS 64u             /* in one encryption, and in a recipients file */
#define AGE_MAX_IDENTITIES 64u             /* in one identity file / one decryption */
#define AGE_KEYFILE_MAX_BYTES ((size_t)64 << 10) /* identity or recipients file size */
#define AGE_PASSPHRASE_MAX_BYTES 1024u
#define AGE_SCRYPT_LOG_N_DEFAULT 18        /* what age writes: 2^18 × 1 KiB = 256 MiB, ~1 s */
#define AGE_SCRYPT_MAX_LOG_N 20            /* read limit: 2^20 × 1 KiB = 1 GiB of memory
                                            * (age itself allows 22 = 4 GiB; we bound memory) */

typedef struct { uint8_t pub[AGE_KEY_BYTES]; } age_recipient;
typedef struct { uint8_t secret[AGE_KEY_BYTES]; uint8_t pub[AGE_KEY_BYTES]; } age_identity;

/* ---- bech32 ----
 * Encodes data under hrp; upper selects upper case. Writes a NUL-terminated string and
 * returns its length, or 0 if out_size is too small or the result would exceed
 * AGE_BECH32_MAX_CHARS. */
size_t age_bech32_encode(const char *hrp, const uint8_t *data, size_t len, bool upper, char *out, size_t out_size);
/* Decodes s[0..len): hrp (as written, NUL-terminated) into hrp_out, data into out.
 * ERR_INVALID (mixed case, bad character, separator, checksum, padding), ERR_LIMIT (too long
 * or a buffer too small). */
err_code age_bech32_decode(const char *s, size_t len, char *hrp_out, size_t hrp_size, uint8_t *out,
                           size_t out_size, size_t *out_len, err_t *e);

/* ---- keys ---- */
err_code age_recipient_parse(const char *s, size_t len, age_recipient *out, err_t *e);
size_t age_recipient_format(const age_recipient *r, char *out, size_t out_size); /* "age1…" */
/* The message never contains s (it is a secret). */
err_code age_identity_parse(const char *s, size_t len, age_identity *out, err_t *e);
/* "AGE-SECRET-KEY-1…"; the caller wipes out (OPENSSL_cleanse) when done. */
size_t age_identity_format(const age_identity *id, char *out, size_t out_size);
err_code age_identity_generate(age_identity *out, err_t *e);
void age_identity_to_recipient(const age_identity *id, age_recipient *out);
void age_identity_wipe(age_identity *id);

/* ---- identity and recipients files (the rules above) ----
 * *_parse read text[0..len) into out[0..cap) and set *n (at least one, else ERR_INVALID).
 * *_load_file read a regular file of at most AGE_KEYFILE_MAX_BYTES; *insecure_mode (if
 * non-NULL) is set when the group or others have any access (the file is not refused). */
err_code age_identities_parse(const char *text, size_t len, age_identity *out, size_t cap, size_t *n, err_t *e);
err_code age_identities_load_file(const char *path, age_identity *out, size_t cap, size_t *n, bool *insecure_mode,
                                  err_t *e);
err_code age_recipients_parse(const char *text, size_t len, age_recipient *out, size_t cap, size_t *n, err_t *e);
err_code age_recipients_load_file(const char *path, age_recipient *out, size_t cap, size_t *n, err_t *e);

/* ---- streaming ---- */
/* Sink: write all of buf[0..len) or fail. Source: read up to cap bytes into buf, *got = 0 at
 * end of input. Both fill e on failure. */
typedef err_code (*age_write_fn)(void *ctx, const uint8_t *buf, size_t len, err_t *e);
typedef err_code (*age_read_fn)(void *ctx, uint8_t *buf, size_t cap, size_t *got, err_t *e);

/* Who a file is encrypted to: recipients, or a passphrase (alone: age's rule). */
typedef struct {
    const age_recipient *recipients; /* borrowed */
    size_t n_recipients;             /* 1..AGE_MAX_RECIPIENTS, or 0 with a passphrase */
    const char *passphrase;          /* borrowed; NULL for none */
    size_t passphrase_len;           /* 1..AGE_PASSPHRASE_MAX_BYTES */
    int scrypt_log_n;                /* 0 = AGE_SCRYPT_LOG_N_DEFAULT; else 1..AGE_SCRYPT_MAX_LOG_N */
} age_enc_opts;

/* Who may open one: identities and/or a passphrase. */
typedef struct {
    const age_identity *identities; /* borrowed */
    size_t n_identities;
    const char *passphrase;         /* borrowed; NULL for none */
    size_t passphrase_len;
} age_dec_opts;

/* Encryptor: age_enc_new writes the header and nonce to sink; age_enc_write buffers at most
 * one chunk (it holds back a full chunk until it knows whether more follows); age_enc_finish
 * writes the last chunk. Memory: one chunk, ~128 KiB. */
typedef struct age_enc age_enc;
err_code age_enc_new(const age_enc_opts *opts, age_write_fn sink, void *sink_ctx, age_enc **out, err_t *e);
err_code age_enc_write(age_enc *enc, const uint8_t *data, size_t len, err_t *e);
err_code age_enc_finish(age_enc *enc, err_t *e);
void age_enc_free(age_enc *enc); /* NULL is fine; wipes keys */

/* Decryptor: age_dec_new reads and checks the header (and the nonce) from source, unwraps
 * the file key and checks the header MAC, before any payload is read. Failures, by code:
 * the header is malformed ERR_INVALID / ERR_LIMIT / ERR_TRUNCATED; no identity or passphrase
 * matches ERR_NOT_FOUND; the header MAC is wrong ERR_MISMATCH; opts give nothing to try
 * ERR_USAGE. age_dec_read hands out authenticated plaintext (*got = 0 at the verified end);
 * a chunk that does not authenticate is ERR_MISMATCH, a payload that ends early
 * ERR_TRUNCATED, data after the last chunk ERR_INVALID (that last chunk, authenticated, has
 * been handed out first, as age does). After a failure, read fails again. Only plaintext of
 * authenticated chunks is ever handed out, but a caller must treat all of it as unusable
 * until read reports the verified end. */
typedef struct age_dec age_dec;
err_code age_dec_new(const age_dec_opts *opts, age_read_fn source, void *source_ctx, age_dec **out, err_t *e);
err_code age_dec_read(age_dec *dec, uint8_t *buf, size_t cap, size_t *got, err_t *e);
void age_dec_free(age_dec *dec);

/* fd → fd conveniences over the above (in_fd read to its end; out_fd written; neither
 * closed). On a decryption failure, plaintext of the chunks that authenticated before it
 * may already be in out_fd: write to a temporary file and keep it only on ERR_OK. */
err_code age_encrypt_fd(const age_enc_opts *opts, int in_fd, int out_fd, err_t *e);
err_code age_decrypt_fd(const age_dec_opts *opts, int in_fd, int out_fd, err_t *e);

#endif
