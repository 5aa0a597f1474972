/* age.c — the age v1 format (see include/pdsmove/age.h for every rule and limit): bech32
 * keys, identity/recipients files, header with X25519 and scrypt stanzas, STREAM payload.
 * OpenSSL 3 EVP only. Never hands out plaintext of a chunk that did not authenticate, and
 * never puts a secret (identity, passphrase, file key) into an error message. */
#include "pdsmove/age.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "pdsmove/codec.h"

#define VERSION_LINE "age-encryption.org/v1"
#define ENC_CHUNK_BYTES (AGE_CHUNK_BYTES + AGE_TAG_BYTES)
#define B64_COLUMNS 64u
#define MAX_CHUNKS ((uint64_t)1 << 32)
#define STANZA_ARGS_KEPT 3 /* known types need at most 2; more are counted, not kept */
#define WRAPPED_KEY_BYTES (AGE_FILE_KEY_BYTES + AGE_TAG_BYTES)
#define SCRYPT_SALT_BYTES 16u
#define SCRYPT_LABEL "age-encryption.org/v1/scrypt"
#define X25519_LABEL "age-encryption.org/v1/X25519"

/* ================================================================ bech32 (BIP 173) */

static const char BECH32_CHARSET[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t bech32_polymod_step(uint32_t chk, uint8_t v) {
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint8_t top = (uint8_t)(chk >> 25);
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; i++)
        if ((top >> i) & 1) chk ^= gen[i];
    return chk;
}

static char lower_c(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }
static char upper_c(char c) { return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c; }

/* Checksum state after the (lower-cased) human-readable part. */
static uint32_t bech32_hrp_chk(const char *hrp, size_t n) {
    uint32_t chk = 1;
    for (size_t i = 0; i < n; i++) chk = bech32_polymod_step(chk, (uint8_t)lower_c(hrp[i]) >> 5);
    chk = bech32_polymod_step(chk, 0);
    for (size_t i = 0; i < n; i++) chk = bech32_polymod_step(chk, (uint8_t)lower_c(hrp[i]) & 31);
    return chk;
}

size_t age_bech32_encode(const char *hrp, const uint8_t *data, size_t len, bool upper, char *out, size_t out_size) {
    size_t hn = strlen(hrp);
    size_t total = hn + 1 + (len * 8 + 4) / 5 + 6;
    if (hn == 0 || total > AGE_BECH32_MAX_CHARS || out_size <= total) return 0;
    size_t o = 0;
    for (size_t i = 0; i < hn; i++) {
        if (hrp[i] < 33 || hrp[i] > 126) return 0;
        out[o++] = upper ? upper_c(hrp[i]) : lower_c(hrp[i]);
    }
    out[o++] = '1';
    uint32_t chk = bech32_hrp_chk(hrp, hn);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            uint8_t v = (acc >> bits) & 31;
            chk = bech32_polymod_step(chk, v);
            out[o++] = BECH32_CHARSET[v];
        }
    }
    if (bits > 0) {
        uint8_t v = (acc << (5 - bits)) & 31;
        chk = bech32_polymod_step(chk, v);
        out[o++] = BECH32_CHARSET[v];
    }
    for (int i = 0; i < 6; i++) chk = bech32_polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < 6; i++) out[o++] = BECH32_CHARSET[(chk >> (5 * (5 - i))) & 31];
    for (size_t i = 0; upper && i < o; i++) out[i] = upper_c(out[i]);
    out[o] = 0;
    assert(o == total);
    return o;
}

err_code age_bech32_decode(const char *s, size_t len, char *hrp_out, size_t hrp_size, uint8_t *out,
                           size_t out_size, size_t *out_len, err_t *e) {
    *out_len = 0;
    if (len > AGE_BECH32_MAX_CHARS)
        return err_set(e, ERR_LIMIT, "bech32 string of %zu characters; at most %u allowed", len, AGE_BECH32_MAX_CHARS);
    bool has_lower = false, has_upper = false;
    size_t sep = len;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c < 33 || c > 126) return err_set(e, ERR_INVALID, "bech32 string has a character outside printable ASCII");
        if (c >= 'a' && c <= 'z') has_lower = true;
        if (c >= 'A' && c <= 'Z') has_upper = true;
        if (c == '1') sep = i;
    }
    if (has_lower && has_upper) return err_set(e, ERR_INVALID, "bech32 string mixes upper and lower case");
    if (sep == len || sep < 1 || sep + 7 > len)
        return err_set(e, ERR_INVALID, "bech32 string has no valid '1' separator");
    if (sep + 1 > hrp_size) return err_set(e, ERR_LIMIT, "bech32 prefix too long");
    memcpy(hrp_out, s, sep);
    hrp_out[sep] = 0;
    uint32_t chk = bech32_hrp_chk(s, sep);
    size_t ndata = len - sep - 1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < ndata; i++) {
        const char *p = strchr(BECH32_CHARSET, lower_c(s[sep + 1 + i]));
        if (p == NULL || *p == 0) return err_set(e, ERR_INVALID, "bech32 string has a character outside its alphabet");
        uint8_t v = (uint8_t)(p - BECH32_CHARSET);
        chk = bech32_polymod_step(chk, v);
        if (i + 6 >= ndata) continue; /* the checksum's six characters */
        acc = (acc << 5) | v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_size) return err_set(e, ERR_LIMIT, "bech32 data longer than %zu bytes", out_size);
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (chk != 1) return err_set(e, ERR_INVALID, "bech32 checksum does not match (a typo, or a truncated key)");
    if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
        return err_set(e, ERR_INVALID, "bech32 data has non-zero padding");
    *out_len = o;
    return ERR_OK;
}

/* ================================================================ OpenSSL helpers */

static err_code ossl_fail(err_t *e, const char *what) {
    return err_set(e, ERR_INVALID, "%s failed in OpenSSL (is OpenSSL 3 installed with its default provider?)", what);
}

static err_code hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                            const char *info, uint8_t *out, size_t out_len, err_t *e) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[5];
    int i = 0;
    p[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    p[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    /* An empty salt is HKDF's default (zeros), which is what age means by "". */
    if (salt_len > 0) p[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    p[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    p[i] = OSSL_PARAM_construct_end();
    int ok = c != NULL && EVP_KDF_derive(c, out, out_len, p) == 1;
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
    return ok ? ERR_OK : ossl_fail(e, "HKDF-SHA256");
}

static err_code scrypt_key(const char *pass, size_t pass_len, const uint8_t salt[SCRYPT_SALT_BYTES], int log_n,
                           uint8_t out[32], err_t *e) {
    uint8_t full_salt[sizeof SCRYPT_LABEL - 1 + SCRYPT_SALT_BYTES];
    memcpy(full_salt, SCRYPT_LABEL, sizeof SCRYPT_LABEL - 1);
    memcpy(full_salt + sizeof SCRYPT_LABEL - 1, salt, SCRYPT_SALT_BYTES);
    uint64_t n = (uint64_t)1 << log_n;
    uint32_t r = 8, par = 1;
    uint64_t maxmem = ((uint64_t)128 * r << log_n) + ((uint64_t)16 << 20);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pass, pass_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, full_salt, sizeof full_salt),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &par),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    int ok = c != NULL && EVP_KDF_derive(c, out, 32, p) == 1;
    EVP_KDF_CTX_free(c);
    EVP_KDF_free(kdf);
    return ok ? ERR_OK : err_set(e, ERR_NOMEM, "scrypt (work factor %d, %llu MiB) failed in OpenSSL: out of memory?",
                                 log_n, (unsigned long long)(((uint64_t)128 * r << log_n) >> 20));
}

/* X25519(secret, peer) into out; ERR_INVALID for a low-order peer (an all-zero secret). */
static err_code x25519(const uint8_t secret[32], const uint8_t peer[32], uint8_t out[32], err_t *e) {
    EVP_PKEY *sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *c = sk ? EVP_PKEY_CTX_new(sk, NULL) : NULL;
    size_t len = 32;
    int ok = c != NULL && pk != NULL && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, pk) == 1 &&
             EVP_PKEY_derive(c, out, &len) == 1 && len == 32;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(sk);
    uint8_t zero[32] = {0};
    /* OpenSSL refuses an all-zero result itself; check anyway (age's rule). */
    if (!ok || CRYPTO_memcmp(out, zero, 32) == 0) {
        OPENSSL_cleanse(out, 32);
        return err_set(e, ERR_INVALID, "X25519 share is a low-order point (the file or recipient is malformed)");
    }
    return ERR_OK;
}

static err_code x25519_public(const uint8_t secret[32], uint8_t pub[32], err_t *e) {
    EVP_PKEY *sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    size_t len = 32;
    int ok = sk != NULL && EVP_PKEY_get_raw_public_key(sk, pub, &len) == 1 && len == 32;
    EVP_PKEY_free(sk);
    return ok ? ERR_OK : ossl_fail(e, "X25519 public key");
}

static EVP_CIPHER_CTX *aead_new(const uint8_t key[32], bool enc) {
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    EVP_CIPHER_CTX *c = ciph ? EVP_CIPHER_CTX_new() : NULL;
    if (c != NULL && EVP_CipherInit_ex2(c, ciph, key, NULL, enc ? 1 : 0, NULL) != 1) {
        EVP_CIPHER_CTX_free(c);
        c = NULL;
    }
    EVP_CIPHER_free(ciph);
    return c;
}

/* Seals in[0..len) into out[0..len) + out[len..len+16) (tag), or opens in[0..len+16) into
 * out[0..len) (false when it does not authenticate; out is then wiped). */
static bool aead_run(EVP_CIPHER_CTX *c, bool enc, const uint8_t nonce[12], const uint8_t *in, size_t len, uint8_t *out) {
    int n = 0, fin = 0;
    if (EVP_CipherInit_ex2(c, NULL, NULL, nonce, enc ? 1 : 0, NULL) != 1) return false;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, AGE_TAG_BYTES, (void *)(in + len)) != 1) return false;
    bool ok = (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) && EVP_CipherFinal_ex(c, out + n, &fin) == 1 &&
              (size_t)(n + fin) == len;
    if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, AGE_TAG_BYTES, out + len) == 1;
    if (!ok && len > 0) OPENSSL_cleanse(out, len);
    return ok;
}

/* One-shot AEAD with an all-zero nonce (stanza bodies). */
static bool aead_once(const uint8_t key[32], bool enc, const uint8_t *in, size_t len, uint8_t *out) {
    static const uint8_t zero_nonce[12] = {0};
    EVP_CIPHER_CTX *c = aead_new(key, enc);
    bool ok = c != NULL && aead_run(c, enc, zero_nonce, in, len, out);
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* ================================================================ keys */

err_code age_recipient_parse(const char *s, size_t len, age_recipient *out, err_t *e) {
    char hrp[AGE_BECH32_MAX_CHARS + 1];
    size_t n;
    memset(out, 0, sizeof *out);
    if (len >= 4 && !memcmp(s, "ssh-", 4))
        return err_set(e, ERR_INVALID, "ssh recipients are not supported; use an X25519 recipient (age1…, from `age-keygen`)");
    if (age_bech32_decode(s, len, hrp, sizeof hrp, out->pub, sizeof out->pub, &n, e) != ERR_OK)
        return err_wrap(e, "age recipient");
    if (strcmp(hrp, "age") != 0)
        return err_set(e, ERR_INVALID, "not an age X25519 recipient: expected \"age1…\" in lower case%s",
                       !strncmp(hrp, "age1", 4) ? " (plugin recipients are not supported)" : "");
    if (n != AGE_KEY_BYTES) return err_set(e, ERR_INVALID, "age recipient holds %zu bytes, not 32", n);
    return ERR_OK;
}

size_t age_recipient_format(const age_recipient *r, char *out, size_t out_size) {
    return age_bech32_encode("age", r->pub, AGE_KEY_BYTES, false, out, out_size);
}

err_code age_identity_parse(const char *s, size_t len, age_identity *out, err_t *e) {
    char hrp[AGE_BECH32_MAX_CHARS + 1];
    size_t n;
    memset(out, 0, sizeof *out);
    if (len >= 11 && !memcmp(s, "AGE-PLUGIN-", 11))
        return err_set(e, ERR_INVALID, "age plugin identities are not supported; use an X25519 identity (`age-keygen`)");
    err_code rc = age_bech32_decode(s, len, hrp, sizeof hrp, out->secret, sizeof out->secret, &n, e);
    if (rc == ERR_OK && strcmp(hrp, "AGE-SECRET-KEY-") != 0)
        rc = err_set(e, ERR_INVALID, "expected \"AGE-SECRET-KEY-1…\" in upper case");
    if (rc == ERR_OK && n != AGE_KEY_BYTES) rc = err_set(e, ERR_INVALID, "holds %zu bytes, not 32", n);
    if (rc == ERR_OK) rc = x25519_public(out->secret, out->pub, e);
    if (rc != ERR_OK) {
        age_identity_wipe(out);
        return err_wrap(e, "age identity");
    }
    return ERR_OK;
}

size_t age_identity_format(const age_identity *id, char *out, size_t out_size) {
    return age_bech32_encode("AGE-SECRET-KEY-", id->secret, AGE_KEY_BYTES, true, out, out_size);
}

err_code age_identity_generate(age_identity *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (RAND_bytes(out->secret, AGE_KEY_BYTES) != 1) return err_set(e, ERR_IO, "the system random generator failed");
    err_code rc = x25519_public(out->secret, out->pub, e);
    if (rc != ERR_OK) age_identity_wipe(out);
    return rc;
}

void age_identity_to_recipient(const age_identity *id, age_recipient *out) { memcpy(out->pub, id->pub, AGE_KEY_BYTES); }

void age_identity_wipe(age_identity *id) { OPENSSL_cleanse(id, sizeof *id); }

/* ================================================================ key files */

typedef err_code (*line_fn)(const char *line, size_t len, void *out, size_t idx, err_t *e);

static err_code parse_key_lines(const char *text, size_t len, const char *what, line_fn fn, void *out, size_t cap,
                                size_t *n, err_t *e) {
    *n = 0;
    if (memchr(text, 0, len) != NULL) return err_set(e, ERR_INVALID, "%s file contains NUL bytes", what);
    size_t pos = 0, lineno = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *line = text + pos;
        size_t ll = end - pos;
        pos = nl ? end + 1 : len;
        lineno++;
        if (ll > 0 && line[ll - 1] == '\r') ll--;
        if (ll == 0 || line[0] == '#') continue;
        if (*n >= cap) return err_set(e, ERR_LIMIT, "%s file has more than %zu keys", what, cap);
        if (fn(line, ll, out, *n, e) != ERR_OK) return err_wrap(e, "line %zu", lineno);
        ++*n;
    }
    if (*n == 0) return err_set(e, ERR_INVALID, "%s file has no keys (only blank lines or # comments)", what);
    return ERR_OK;
}

static err_code identity_line(const char *line, size_t len, void *out, size_t idx, err_t *e) {
    return age_identity_parse(line, len, (age_identity *)out + idx, e);
}

static err_code recipient_line(const char *line, size_t len, void *out, size_t idx, err_t *e) {
    return age_recipient_parse(line, len, (age_recipient *)out + idx, e);
}

err_code age_identities_parse(const char *text, size_t len, age_identity *out, size_t cap, size_t *n, err_t *e) {
    err_code rc = parse_key_lines(text, len, "identity", identity_line, out, cap, n, e);
    if (rc != ERR_OK) {
        OPENSSL_cleanse(out, cap * sizeof *out);
        *n = 0;
    }
    return rc;
}

err_code age_recipients_parse(const char *text, size_t len, age_recipient *out, size_t cap, size_t *n, err_t *e) {
    return parse_key_lines(text, len, "recipients", recipient_line, out, cap, n, e);
}

/* Reads a regular file of at most AGE_KEYFILE_MAX_BYTES into buf (NUL-terminated). */
static err_code read_small_file(const char *path, char *buf, size_t *len, bool *insecure, err_t *e) {
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    err_code rc = ERR_OK;
    if (fstat(fd, &st) != 0) rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = err_set(e, ERR_IO, "%s: not a regular file", path);
    if (rc == ERR_OK && insecure) *insecure = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    while (rc == ERR_OK) {
        ssize_t r = read(fd, buf + *len, AGE_KEYFILE_MAX_BYTES + 1 - *len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        else if (r == 0) break;
        else if ((*len += (size_t)r) > AGE_KEYFILE_MAX_BYTES)
            rc = err_set(e, ERR_LIMIT, "%s: larger than %zu bytes; not an age key file", path, AGE_KEYFILE_MAX_BYTES);
    }
    close(fd);
    buf[*len < AGE_KEYFILE_MAX_BYTES ? *len : AGE_KEYFILE_MAX_BYTES] = 0;
    return rc;
}

err_code age_identities_load_file(const char *path, age_identity *out, size_t cap, size_t *n, bool *insecure_mode,
                                  err_t *e) {
    *n = 0;
    if (insecure_mode) *insecure_mode = false;
    char *buf = malloc(AGE_KEYFILE_MAX_BYTES + 1);
    if (buf == NULL) return err_set(e, ERR_NOMEM, "out of memory reading %s", path);
    size_t len;
    err_code rc = read_small_file(path, buf, &len, insecure_mode, e);
    if (rc == ERR_OK && (rc = age_identities_parse(buf, len, out, cap, n, e)) != ERR_OK) err_wrap(e, "%s", path);
    OPENSSL_cleanse(buf, AGE_KEYFILE_MAX_BYTES + 1);
    free(buf);
    return rc;
}

err_code age_recipients_load_file(const char *path, age_recipient *out, size_t cap, size_t *n, err_t *e) {
    *n = 0;
    char *buf = malloc(AGE_KEYFILE_MAX_BYTES + 1);
    if (buf == NULL) return err_set(e, ERR_NOMEM, "out of memory reading %s", path);
    size_t len;
    err_code rc = read_small_file(path, buf, &len, NULL, e);
    if (rc == ERR_OK && (rc = age_recipients_parse(buf, len, out, cap, n, e)) != ERR_OK) err_wrap(e, "%s", path);
    free(buf);
    return rc;
}

/* ================================================================ header */

/* Appends a stanza "-> args…\n" + body (wrapped at 64 columns) to hdr. */
static err_code put_stanza(char *hdr, size_t cap, size_t *len, const char *args, const uint8_t *body, size_t body_len,
                           err_t *e) {
    char b64[80];
    size_t need = 3 + strlen(args) + 1 + base64_encoded_len(body_len) + body_len / 48 + 2;
    if (*len + need >= cap) return err_set(e, ERR_LIMIT, "age header larger than %zu bytes", cap);
    *len += (size_t)snprintf(hdr + *len, cap - *len, "-> %s\n", args);
    size_t off = 0;
    for (;;) {
        size_t take = body_len - off < 48 ? body_len - off : 48; /* 48 bytes = 64 columns */
        size_t n = base64_encode(body + off, take, b64, sizeof b64);
        memcpy(hdr + *len, b64, n);
        *len += n;
        hdr[(*len)++] = '\n';
        off += take;
        if (take < 48) break; /* a full line means another (possibly empty) follows */
    }
    return ERR_OK;
}

static err_code header_mac(const uint8_t file_key[AGE_FILE_KEY_BYTES], const char *hdr, size_t len, uint8_t mac[32],
                           err_t *e) {
    uint8_t k[32];
    err_code rc = hkdf_sha256(file_key, AGE_FILE_KEY_BYTES, NULL, 0, "header", k, sizeof k, e);
    size_t mlen = 0;
    if (rc == ERR_OK && (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k, sizeof k, (const uint8_t *)hdr, len, mac, 32,
                                   &mlen) == NULL ||
                         mlen != 32))
        rc = ossl_fail(e, "HMAC-SHA256");
    OPENSSL_cleanse(k, sizeof k);
    return rc;
}

typedef struct {
    const char *type;
    size_t type_len;
    const char *arg[STANZA_ARGS_KEPT];
    size_t arg_len[STANZA_ARGS_KEPT];
    size_t nargs;
    uint8_t body[WRAPPED_KEY_BYTES + 48]; /* kept up to here; body_len counts all of it */
    size_t body_len;
} stanza;

static bool is_type(const stanza *s, const char *t) { return s->type_len == strlen(t) && !memcmp(s->type, t, s->type_len); }

/* Decodes a canonical unpadded base64 argument of exactly n bytes. */
static bool b64_exact(const char *s, size_t len, uint8_t *out, size_t n) {
    size_t got;
    return len == base64_encoded_len(n) && base64_decode(s, len, out, n, &got, NULL) == ERR_OK && got == n;
}

/* Work factor: decimal, no sign, no leading zero. 0 when malformed. */
static int parse_log_n(const char *s, size_t len) {
    if (len == 0 || len > 2 || s[0] == '0') return 0;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static err_code check_known_stanza(const stanza *s, size_t idx, size_t total, err_t *e) {
    uint8_t tmp[32];
    if (is_type(s, "X25519")) {
        if (s->nargs != 1 || !b64_exact(s->arg[0], s->arg_len[0], tmp, 32))
            return err_set(e, ERR_INVALID, "age header: X25519 stanza %zu needs one 32-byte base64 share", idx + 1);
        if (s->body_len != WRAPPED_KEY_BYTES)
            return err_set(e, ERR_INVALID, "age header: X25519 stanza %zu has a %zu-byte body, not 32", idx + 1, s->body_len);
    } else if (is_type(s, "scrypt")) {
        if (total != 1)
            return err_set(e, ERR_INVALID, "age header: an scrypt (passphrase) stanza must be the only one; this file has %zu",
                           total);
        if (s->nargs != 2 || !b64_exact(s->arg[0], s->arg_len[0], tmp, SCRYPT_SALT_BYTES))
            return err_set(e, ERR_INVALID, "age header: scrypt stanza needs a 16-byte base64 salt and a work factor");
        int log_n = parse_log_n(s->arg[1], s->arg_len[1]);
        if (log_n == 0)
            return err_set(e, ERR_INVALID, "age header: scrypt work factor is not a decimal number from 1 to %d",
                           AGE_SCRYPT_MAX_LOG_N);
        if (log_n > AGE_SCRYPT_MAX_LOG_N)
            return err_set(e, ERR_LIMIT, "age header: scrypt work factor %d is above the limit of %d (2^%d KiB of memory)",
                           log_n, AGE_SCRYPT_MAX_LOG_N, AGE_SCRYPT_MAX_LOG_N);
        if (s->body_len != WRAPPED_KEY_BYTES)
            return err_set(e, ERR_INVALID, "age header: scrypt stanza has a %zu-byte body, not 32", s->body_len);
    }
    return ERR_OK;
}

/* ================================================================ encryption */

struct age_enc {
    age_write_fn sink;
    void *sink_ctx;
    EVP_CIPHER_CTX *aead;
    uint64_t counter;
    size_t pt_len;
    bool finished, failed;
    uint8_t pt[AGE_CHUNK_BYTES];
    uint8_t ct[ENC_CHUNK_BYTES];
};

static void chunk_nonce(uint64_t counter, bool last, uint8_t nonce[12]) {
    memset(nonce, 0, 12);
    for (int i = 0; i < 8; i++) nonce[10 - i] = (uint8_t)(counter >> (8 * i));
    nonce[11] = last ? 1 : 0;
}

static err_code build_header(const age_enc_opts *o, const uint8_t file_key[AGE_FILE_KEY_BYTES], char *hdr, size_t cap,
                             size_t *len, err_t *e) {
    *len = (size_t)snprintf(hdr, cap, "%s\n", VERSION_LINE);
    uint8_t body[WRAPPED_KEY_BYTES], wrap[32], secret[32], share[32], salt[64];
    char args[128], b64[64];
    err_code rc = ERR_OK;
    for (size_t i = 0; rc == ERR_OK && i < o->n_recipients; i++) {
        if (RAND_bytes(secret, sizeof secret) != 1) rc = err_set(e, ERR_IO, "the system random generator failed");
        if (rc == ERR_OK) rc = x25519_public(secret, share, e);
        if (rc == ERR_OK && (rc = x25519(secret, o->recipients[i].pub, wrap, e)) != ERR_OK)
            err_wrap(e, "recipient %zu", i + 1);
        memcpy(salt, share, 32);
        memcpy(salt + 32, o->recipients[i].pub, 32);
        if (rc == ERR_OK) rc = hkdf_sha256(wrap, 32, salt, 64, X25519_LABEL, wrap, 32, e);
        if (rc == ERR_OK && !aead_once(wrap, true, file_key, AGE_FILE_KEY_BYTES, body)) rc = ossl_fail(e, "ChaCha20-Poly1305");
        if (rc == ERR_OK) {
            base64_encode(share, 32, b64, sizeof b64);
            snprintf(args, sizeof args, "X25519 %s", b64);
            rc = put_stanza(hdr, cap, len, args, body, sizeof body, e);
        }
    }
    if (rc == ERR_OK && o->passphrase != NULL) {
        int log_n = o->scrypt_log_n ? o->scrypt_log_n : AGE_SCRYPT_LOG_N_DEFAULT;
        if (RAND_bytes(salt, SCRYPT_SALT_BYTES) != 1) rc = err_set(e, ERR_IO, "the system random generator failed");
        if (rc == ERR_OK) rc = scrypt_key(o->passphrase, o->passphrase_len, salt, log_n, wrap, e);
        if (rc == ERR_OK && !aead_once(wrap, true, file_key, AGE_FILE_KEY_BYTES, body)) rc = ossl_fail(e, "ChaCha20-Poly1305");
        if (rc == ERR_OK) {
            base64_encode(salt, SCRYPT_SALT_BYTES, b64, sizeof b64);
            snprintf(args, sizeof args, "scrypt %s %d", b64, log_n);
            rc = put_stanza(hdr, cap, len, args, body, sizeof body, e);
        }
    }
    OPENSSL_cleanse(wrap, sizeof wrap);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc != ERR_OK) return rc;
    if (*len + 4 + 44 > cap) return err_set(e, ERR_LIMIT, "age header larger than %zu bytes", cap);
    memcpy(hdr + *len, "---", 3);
    *len += 3;
    uint8_t mac[32];
    if ((rc = header_mac(file_key, hdr, *len, mac, e)) != ERR_OK) return rc;
    hdr[(*len)++] = ' ';
    *len += base64_encode(mac, 32, hdr + *len, cap - *len);
    hdr[(*len)++] = '\n';
    return ERR_OK;
}

static err_code check_enc_opts(const age_enc_opts *o, err_t *e) {
    if (o->passphrase != NULL && o->n_recipients > 0)
        return err_set(e, ERR_USAGE, "a passphrase cannot be combined with recipients (age's rule: scrypt must be alone)");
    if (o->passphrase == NULL && o->n_recipients == 0) return err_set(e, ERR_USAGE, "no recipient and no passphrase to encrypt to");
    if (o->n_recipients > AGE_MAX_RECIPIENTS)
        return err_set(e, ERR_LIMIT, "%zu recipients; at most %u allowed", o->n_recipients, AGE_MAX_RECIPIENTS);
    if (o->passphrase != NULL && (o->passphrase_len == 0 || o->passphrase_len > AGE_PASSPHRASE_MAX_BYTES))
        return err_set(e, ERR_USAGE, "the passphrase must be 1 to %u bytes", AGE_PASSPHRASE_MAX_BYTES);
    if (o->scrypt_log_n < 0 || o->scrypt_log_n > AGE_SCRYPT_MAX_LOG_N)
        return err_set(e, ERR_USAGE, "scrypt work factor %d outside 1..%d", o->scrypt_log_n, AGE_SCRYPT_MAX_LOG_N);
    return ERR_OK;
}

err_code age_enc_new(const age_enc_opts *opts, age_write_fn sink, void *sink_ctx, age_enc **out, err_t *e) {
    *out = NULL;
    err_code rc = check_enc_opts(opts, e);
    if (rc != ERR_OK) return rc;
    age_enc *enc = calloc(1, sizeof *enc);
    char *hdr = malloc(AGE_HEADER_MAX_BYTES);
    if (enc == NULL || hdr == NULL) {
        free(enc);
        free(hdr);
        return err_set(e, ERR_NOMEM, "out of memory starting age encryption");
    }
    enc->sink = sink;
    enc->sink_ctx = sink_ctx;
    uint8_t file_key[AGE_FILE_KEY_BYTES], nonce[AGE_NONCE_BYTES], pkey[32];
    size_t hlen = 0;
    if (RAND_bytes(file_key, sizeof file_key) != 1 || RAND_bytes(nonce, sizeof nonce) != 1)
        rc = err_set(e, ERR_IO, "the system random generator failed");
    if (rc == ERR_OK) rc = build_header(opts, file_key, hdr, AGE_HEADER_MAX_BYTES, &hlen, e);
    if (rc == ERR_OK) rc = hkdf_sha256(file_key, sizeof file_key, nonce, sizeof nonce, "payload", pkey, sizeof pkey, e);
    if (rc == ERR_OK && (enc->aead = aead_new(pkey, true)) == NULL) rc = ossl_fail(e, "ChaCha20-Poly1305");
    OPENSSL_cleanse(file_key, sizeof file_key);
    OPENSSL_cleanse(pkey, sizeof pkey);
    if (rc == ERR_OK) rc = sink(sink_ctx, (const uint8_t *)hdr, hlen, e);
    if (rc == ERR_OK) rc = sink(sink_ctx, nonce, sizeof nonce, e);
    free(hdr);
    if (rc != ERR_OK) {
        age_enc_free(enc);
        return rc;
    }
    *out = enc;
    return ERR_OK;
}

static err_code enc_flush(age_enc *enc, bool last, err_t *e) {
    if (enc->counter >= MAX_CHUNKS) return err_set(e, ERR_LIMIT, "age payload longer than 2^32 chunks (256 TiB)");
    uint8_t nonce[12];
    chunk_nonce(enc->counter, last, nonce);
    if (!aead_run(enc->aead, true, nonce, enc->pt, enc->pt_len, enc->ct)) return ossl_fail(e, "ChaCha20-Poly1305");
    err_code rc = enc->sink(enc->sink_ctx, enc->ct, enc->pt_len + AGE_TAG_BYTES, e);
    OPENSSL_cleanse(enc->pt, enc->pt_len);
    enc->pt_len = 0;
    enc->counter++;
    return rc;
}

err_code age_enc_write(age_enc *enc, const uint8_t *data, size_t len, err_t *e) {
    if (enc->failed || enc->finished) return err_set(e, ERR_USAGE, "age encryptor used after it failed or finished");
    while (len > 0) {
        /* A full chunk goes out only once more data shows it is not the last one. */
        if (enc->pt_len == AGE_CHUNK_BYTES && enc_flush(enc, false, e) != ERR_OK) {
            enc->failed = true;
            return e ? e->code : ERR_IO;
        }
        size_t take = AGE_CHUNK_BYTES - enc->pt_len;
        if (take > len) take = len;
        memcpy(enc->pt + enc->pt_len, data, take);
        enc->pt_len += take;
        data += take;
        len -= take;
    }
    return ERR_OK;
}

err_code age_enc_finish(age_enc *enc, err_t *e) {
    if (enc->failed || enc->finished) return err_set(e, ERR_USAGE, "age encryptor used after it failed or finished");
    enc->finished = true;
    return enc_flush(enc, true, e);
}

void age_enc_free(age_enc *enc) {
    if (enc == NULL) return;
    EVP_CIPHER_CTX_free(enc->aead);
    OPENSSL_cleanse(enc, sizeof *enc);
    free(enc);
}

/* ================================================================ decryption */

#define IN_CAP (AGE_HEADER_MAX_BYTES + AGE_NONCE_BYTES + ENC_CHUNK_BYTES + 1)

struct age_dec {
    age_read_fn src;
    void *src_ctx;
    EVP_CIPHER_CTX *aead;
    uint64_t counter;
    size_t in_pos, in_len, pt_pos, pt_len;
    bool eof, done, trailing_next;
    err_t fail; /* code != ERR_OK once failed */
    uint8_t in[IN_CAP];
    uint8_t pt[AGE_CHUNK_BYTES];
};

/* One read from the source into in[in_len..limit). */
static err_code dec_more(age_dec *d, size_t limit, err_t *e) {
    size_t got = 0;
    if (d->eof || d->in_len >= limit) return ERR_OK;
    err_code rc = d->src(d->src_ctx, d->in + d->in_len, limit - d->in_len, &got, e);
    if (rc != ERR_OK) return rc;
    if (got == 0) d->eof = true;
    d->in_len += got;
    return ERR_OK;
}

/* Makes at least want bytes available at in_pos (fewer only at the end of input). */
static err_code dec_fill(age_dec *d, size_t want, err_t *e) {
    if (d->in_len - d->in_pos >= want) return ERR_OK;
    memmove(d->in, d->in + d->in_pos, d->in_len - d->in_pos);
    d->in_len -= d->in_pos;
    d->in_pos = 0;
    while (!d->eof && d->in_len < want) {
        err_code rc = dec_more(d, IN_CAP, e);
        if (rc != ERR_OK) return rc;
    }
    return ERR_OK;
}

/* Next header line (without "\n") starting at *pos; the header stays in in[0..). */
static err_code header_line(age_dec *d, size_t *pos, const char **line, size_t *len, err_t *e) {
    for (;;) {
        const uint8_t *nl = memchr(d->in + *pos, '\n', d->in_len - *pos);
        if (nl != NULL) {
            *line = (const char *)d->in + *pos;
            *len = (size_t)(nl - (d->in + *pos));
            *pos += *len + 1;
            return ERR_OK;
        }
        if (d->in_len >= AGE_HEADER_MAX_BYTES)
            return err_set(e, ERR_LIMIT, "age header longer than %zu bytes", AGE_HEADER_MAX_BYTES);
        if (d->eof) return err_set(e, ERR_TRUNCATED, "age header ends early (truncated file, or not an age file)");
        err_code rc = dec_more(d, AGE_HEADER_MAX_BYTES, e);
        if (rc != ERR_OK) return rc;
    }
}

/* Splits "-> a b c" into s (pointers into line). */
static err_code split_stanza_line(const char *line, size_t len, stanza *s, err_t *e) {
    memset(s, 0, sizeof *s);
    size_t i = 3, n = 0;
    if (len < 3 || memcmp(line, "-> ", 3) != 0) return err_set(e, ERR_INVALID, "age header: malformed stanza line");
    while (i <= len) {
        size_t start = i;
        while (i < len && line[i] != ' ') {
            if (line[i] < 0x21 || line[i] > 0x7e)
                return err_set(e, ERR_INVALID, "age header: stanza argument has a character outside printable ASCII");
            i++;
        }
        if (i == start) return err_set(e, ERR_INVALID, "age header: empty stanza argument");
        if (n == 0) {
            s->type = line + start;
            s->type_len = i - start;
        } else {
            if (n - 1 < STANZA_ARGS_KEPT) {
                s->arg[n - 1] = line + start;
                s->arg_len[n - 1] = i - start;
            }
            s->nargs++;
        }
        n++;
        i++; /* past the space (or the end) */
    }
    return ERR_OK;
}

static err_code read_stanza_body(age_dec *d, size_t *pos, stanza *s, err_t *e) {
    uint8_t tmp[48];
    for (;;) {
        const char *line;
        size_t len, got;
        err_code rc = header_line(d, pos, &line, &len, e);
        if (rc != ERR_OK) return rc;
        if (len > B64_COLUMNS) return err_set(e, ERR_INVALID, "age header: stanza body line longer than 64 columns");
        if (base64_decode(line, len, tmp, sizeof tmp, &got, NULL) != ERR_OK || base64_encoded_len(got) != len)
            return err_set(e, ERR_INVALID, "age header: stanza body is not canonical unpadded base64");
        if (s->body_len + got <= sizeof s->body) memcpy(s->body + s->body_len, tmp, got);
        s->body_len += got;
        if (len < B64_COLUMNS) return ERR_OK;
    }
}

/* Parses the header into st[0..*n) and leaves *hdr_len at the end of the MAC line. */
static err_code parse_header(age_dec *d, stanza *st, size_t *n, uint8_t mac[32], size_t *mac_end, size_t *hdr_len,
                             err_t *e) {
    size_t pos = 0, len;
    const char *line;
    *n = 0;
    err_code rc = header_line(d, &pos, &line, &len, e);
    if (rc != ERR_OK) return rc;
    if (len != strlen(VERSION_LINE) || memcmp(line, VERSION_LINE, len) != 0) {
        if (len >= 5 && !memcmp(line, "-----", 5))
            return err_set(e, ERR_INVALID, "ASCII-armored age files are not supported; store the binary form");
        return err_set(e, ERR_INVALID, "not an age v1 file (the first line is not \"%s\")", VERSION_LINE);
    }
    for (;;) {
        size_t line_start = pos;
        if ((rc = header_line(d, &pos, &line, &len, e)) != ERR_OK) return rc;
        if (len >= 3 && !memcmp(line, "---", 3)) {
            if (len != 4 + 43 || line[3] != ' ' || !b64_exact(line + 4, 43, mac, 32))
                return err_set(e, ERR_INVALID, "age header: malformed MAC line (\"--- \" and 43 base64 characters)");
            *mac_end = line_start + 3;
            *hdr_len = pos;
            break;
        }
        if (*n >= AGE_MAX_STANZAS) return err_set(e, ERR_LIMIT, "age header has more than %u stanzas", AGE_MAX_STANZAS);
        if ((rc = split_stanza_line(line, len, &st[*n], e)) != ERR_OK) return rc;
        if ((rc = read_stanza_body(d, &pos, &st[*n], e)) != ERR_OK) return rc;
        ++*n;
    }
    if (*n == 0) return err_set(e, ERR_INVALID, "age header has no recipient stanza");
    for (size_t i = 0; i < *n; i++)
        if ((rc = check_known_stanza(&st[i], i, *n, e)) != ERR_OK) return rc;
    return ERR_OK;
}

/* Tries every identity (or the passphrase) on the stanzas: ERR_OK with file_key, ERR_NOT_FOUND
 * when none unwraps, another code for a malformed stanza. */
static err_code unwrap(const age_dec_opts *o, const stanza *st, size_t n, uint8_t file_key[AGE_FILE_KEY_BYTES], err_t *e) {
    uint8_t share[32], wrap[32], salt[64];
    size_t n_x = 0;
    bool have_scrypt = false;
    err_code rc = ERR_NOT_FOUND;
    for (size_t i = 0; i < n && rc == ERR_NOT_FOUND; i++) {
        if (is_type(&st[i], "X25519")) {
            n_x++;
            b64_exact(st[i].arg[0], st[i].arg_len[0], share, 32);
            for (size_t k = 0; k < o->n_identities && rc == ERR_NOT_FOUND; k++) {
                err_code r = x25519(o->identities[k].secret, share, wrap, e);
                if (r != ERR_OK) {
                    rc = err_wrap(e, "age header, stanza %zu", i + 1);
                    break;
                }
                memcpy(salt, share, 32);
                memcpy(salt + 32, o->identities[k].pub, 32);
                if ((r = hkdf_sha256(wrap, 32, salt, 64, X25519_LABEL, wrap, 32, e)) != ERR_OK) rc = r;
                else if (aead_once(wrap, false, st[i].body, AGE_FILE_KEY_BYTES, file_key)) rc = ERR_OK;
            }
        } else if (is_type(&st[i], "scrypt")) {
            have_scrypt = true;
            if (o->passphrase == NULL) continue;
            b64_exact(st[i].arg[0], st[i].arg_len[0], salt, SCRYPT_SALT_BYTES);
            int log_n = parse_log_n(st[i].arg[1], st[i].arg_len[1]);
            err_code r = scrypt_key(o->passphrase, o->passphrase_len, salt, log_n, wrap, e);
            if (r != ERR_OK) rc = r;
            else if (aead_once(wrap, false, st[i].body, AGE_FILE_KEY_BYTES, file_key)) rc = ERR_OK;
        }
    }
    OPENSSL_cleanse(wrap, sizeof wrap);
    if (rc != ERR_NOT_FOUND) return rc;
    if (have_scrypt)
        return err_set(e, ERR_NOT_FOUND, o->passphrase ? "wrong passphrase for this age file"
                                                       : "this age file is encrypted with a passphrase; give the passphrase");
    if (n_x > 0)
        return err_set(e, ERR_NOT_FOUND,
                       "none of the %zu identities given opens this age file (it is encrypted to %zu other X25519 "
                       "recipient(s)); give the identity file it was encrypted to",
                       o->n_identities, n_x);
    return err_set(e, ERR_NOT_FOUND, "this age file has no X25519 or scrypt stanza (made with an age plugin?); "
                                     "pdsmove cannot open it");
}

err_code age_dec_new(const age_dec_opts *opts, age_read_fn source, void *source_ctx, age_dec **out, err_t *e) {
    *out = NULL;
    age_dec *d = calloc(1, sizeof *d);
    stanza *st = calloc(AGE_MAX_STANZAS, sizeof *st);
    if (d == NULL || st == NULL) {
        free(d);
        free(st);
        return err_set(e, ERR_NOMEM, "out of memory starting age decryption");
    }
    d->src = source;
    d->src_ctx = source_ctx;
    uint8_t mac[32], want[32], file_key[AGE_FILE_KEY_BYTES], pkey[32];
    size_t n = 0, mac_end = 0, hdr_len = 0;
    err_code rc = parse_header(d, st, &n, mac, &mac_end, &hdr_len, e);
    if (rc == ERR_OK && opts->n_identities == 0 && opts->passphrase == NULL)
        rc = err_set(e, ERR_USAGE, "no identity and no passphrase to decrypt the age file with");
    if (rc == ERR_OK) rc = unwrap(opts, st, n, file_key, e);
    if (rc == ERR_OK && (rc = header_mac(file_key, (const char *)d->in, mac_end, want, e)) == ERR_OK &&
        CRYPTO_memcmp(mac, want, 32) != 0)
        rc = err_set(e, ERR_MISMATCH, "age header MAC does not match: the header was changed or damaged");
    if (rc == ERR_OK) {
        d->in_pos = hdr_len;
        if ((rc = dec_fill(d, AGE_NONCE_BYTES, e)) == ERR_OK && d->in_len - d->in_pos < AGE_NONCE_BYTES)
            rc = err_set(e, ERR_TRUNCATED, "age file ends inside its payload nonce (truncated)");
    }
    if (rc == ERR_OK)
        rc = hkdf_sha256(file_key, sizeof file_key, d->in + d->in_pos, AGE_NONCE_BYTES, "payload", pkey, sizeof pkey, e);
    if (rc == ERR_OK && (d->aead = aead_new(pkey, false)) == NULL) rc = ossl_fail(e, "ChaCha20-Poly1305");
    d->in_pos += AGE_NONCE_BYTES;
    OPENSSL_cleanse(file_key, sizeof file_key);
    OPENSSL_cleanse(pkey, sizeof pkey);
    free(st);
    if (rc != ERR_OK) {
        age_dec_free(d);
        return rc;
    }
    *out = d;
    return ERR_OK;
}

static bool open_chunk(age_dec *d, size_t ct_len, bool last) {
    uint8_t nonce[12];
    chunk_nonce(d->counter, last, nonce);
    return aead_run(d->aead, false, nonce, d->in + d->in_pos, ct_len - AGE_TAG_BYTES, d->pt);
}

/* Authenticates the next chunk into pt; sets done after the last one. */
static err_code next_chunk(age_dec *d, err_t *e) {
    if (d->trailing_next)
        return err_set(e, ERR_INVALID, "age file has data after its last chunk (%llu): damaged or appended to",
                       (unsigned long long)d->counter);
    if (d->counter >= MAX_CHUNKS) return err_set(e, ERR_LIMIT, "age payload longer than 2^32 chunks");
    err_code rc = dec_fill(d, ENC_CHUNK_BYTES + 1, e);
    if (rc != ERR_OK) return rc;
    size_t have = d->in_len - d->in_pos;
    unsigned long long idx = (unsigned long long)d->counter + 1;
    if (have == 0 && d->counter == 0) return err_set(e, ERR_TRUNCATED, "age file is truncated: it has no payload chunk");
    if (have == 0)
        return err_set(e, ERR_TRUNCATED, "age file is truncated: it ends after chunk %llu without its last chunk", idx - 1);
    if (have < AGE_TAG_BYTES) return err_set(e, ERR_TRUNCATED, "age file is truncated inside chunk %llu", idx);
    size_t ct = have > ENC_CHUNK_BYTES ? ENC_CHUNK_BYTES : have;
    bool last;
    if (have > ENC_CHUNK_BYTES) { /* more follows: this must not be the last chunk */
        if (!open_chunk(d, ct, false)) {
            if (!open_chunk(d, ct, true))
                return err_set(e, ERR_MISMATCH, "age payload chunk %llu does not authenticate: the file is damaged", idx);
            /* An authenticated last chunk with data after it: hand it out (as age does), then
             * fail on the next read. */
            d->trailing_next = true;
        }
        last = false;
    } else if (open_chunk(d, ct, true)) {
        last = true;
    } else if (have == ENC_CHUNK_BYTES && open_chunk(d, ct, false)) {
        last = false; /* a whole chunk, but the file stops after it: the next read says so */
    } else {
        return err_set(e, ERR_MISMATCH, "age payload chunk %llu does not authenticate: the file is damaged or truncated", idx);
    }
    size_t pt_len = ct - AGE_TAG_BYTES;
    if (last && pt_len == 0 && d->counter > 0)
        return err_set(e, ERR_INVALID, "age payload ends with an empty chunk %llu (only an empty file may)", idx);
    d->in_pos += ct;
    d->pt_pos = 0;
    d->pt_len = pt_len;
    d->counter++;
    d->done = last;
    return ERR_OK;
}

err_code age_dec_read(age_dec *d, uint8_t *buf, size_t cap, size_t *got, err_t *e) {
    *got = 0;
    if (d->fail.code != ERR_OK) return err_set(e, d->fail.code, "%s", d->fail.msg);
    while (d->pt_pos == d->pt_len) {
        if (d->done) return ERR_OK;
        OPENSSL_cleanse(d->pt, d->pt_len);
        err_code rc = next_chunk(d, &d->fail);
        if (rc != ERR_OK) {
            d->fail.code = rc;
            return err_set(e, rc, "%s", d->fail.msg);
        }
    }
    size_t n = d->pt_len - d->pt_pos < cap ? d->pt_len - d->pt_pos : cap;
    memcpy(buf, d->pt + d->pt_pos, n);
    d->pt_pos += n;
    *got = n;
    return ERR_OK;
}

void age_dec_free(age_dec *d) {
    if (d == NULL) return;
    EVP_CIPHER_CTX_free(d->aead);
    OPENSSL_cleanse(d->pt, sizeof d->pt);
    free(d);
}

/* ================================================================ fd helpers */

static err_code fd_write(void *ctx, const uint8_t *buf, size_t len, err_t *e) {
    int fd = *(int *)ctx;
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return err_set(e, ERR_IO, "writing: %s", w < 0 ? strerror(errno) : "short write");
        buf += w;
        len -= (size_t)w;
    }
    return ERR_OK;
}

static err_code fd_read(void *ctx, uint8_t *buf, size_t cap, size_t *got, err_t *e) {
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return err_set(e, ERR_IO, "reading: %s", strerror(errno));
        *got = (size_t)r;
        return ERR_OK;
    }
}

/* Copies rd to wr through one chunk-sized buffer until rd's end. */
static err_code pump(age_read_fn rd, void *rctx, age_write_fn wr, void *wctx, err_t *e) {
    uint8_t *buf = malloc(AGE_CHUNK_BYTES);
    if (buf == NULL) return err_set(e, ERR_NOMEM, "out of memory");
    err_code rc;
    size_t got;
    while ((rc = rd(rctx, buf, AGE_CHUNK_BYTES, &got, e)) == ERR_OK && got > 0)
        if ((rc = wr(wctx, buf, got, e)) != ERR_OK) break;
    OPENSSL_cleanse(buf, AGE_CHUNK_BYTES);
    free(buf);
    return rc;
}

static err_code enc_sink(void *ctx, const uint8_t *buf, size_t len, err_t *e) { return age_enc_write(ctx, buf, len, e); }

static err_code dec_source(void *ctx, uint8_t *buf, size_t cap, size_t *got, err_t *e) {
    return age_dec_read(ctx, buf, cap, got, e);
}

err_code age_encrypt_fd(const age_enc_opts *opts, int in_fd, int out_fd, err_t *e) {
    age_enc *enc;
    err_code rc = age_enc_new(opts, fd_write, &out_fd, &enc, e);
    if (rc != ERR_OK) return rc;
    if ((rc = pump(fd_read, &in_fd, enc_sink, enc, e)) == ERR_OK) rc = age_enc_finish(enc, e);
    age_enc_free(enc);
    return rc;
}

err_code age_decrypt_fd(const age_dec_opts *opts, int in_fd, int out_fd, err_t *e) {
    age_dec *d;
    err_code rc = age_dec_new(opts, fd_read, &in_fd, &d, e);
    if (rc != ERR_OK) return rc;
    rc = pump(dec_source, d, fd_write, &out_fd, e);
    age_dec_free(d);
    return rc;
}
