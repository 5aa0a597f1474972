/* test_age.c — the age v1 module: bech32 vectors, key and key-file rules, round trips over
 * chunk boundaries, every failure (wrong/no identity, truncation, flipped bytes in header,
 * chunk and last chunk, trailing data), limits, the C2SP CCTV vectors, and interop both ways
 * with Debian's `age` binary (X25519 and passphrase). */
#include <criterion/criterion.h>

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/rand.h>

#include "pdsmove/age.h"
#include "pdsmove/codec.h"
#include "pdsmove/hash.h"

#define CCTV_DIR PDSMOVE_FIXTURES "/age/cctv"
#define CCTV_IDENTITY "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
#define CCTV_RECIPIENT "age1xmwwc06ly3ee5rytxm9mflaz2u56jjj36s0mypdrwsvlul66mv4q47ryef" /* age-keygen -y */
#define AGE_BIN "/usr/bin/age"

/* ---------------------------------------------------------------- memory sink/source */

typedef struct {
    uint8_t *p;
    size_t len, cap, pos;
    size_t max_read; /* 0: any */
} mem;

static err_code mem_write(void *ctx, const uint8_t *buf, size_t len, err_t *e) {
    mem *m = ctx;
    if (len == 0) return ERR_OK;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 1024;
        m->p = realloc(m->p, m->cap);
        cr_assert_not_null(m->p);
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return ERR_OK;
}

static err_code mem_read(void *ctx, uint8_t *buf, size_t cap, size_t *got, err_t *e) {
    mem *m = ctx;
    size_t n = m->len - m->pos;
    if (n > cap) n = cap;
    if (m->max_read && n > m->max_read) n = m->max_read;
    if (n > 0) memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    *got = n;
    return ERR_OK;
}

static uint8_t *random_bytes(size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    if (n) cr_assert_eq(RAND_bytes(p, (int)n), 1);
    return p;
}

static mem encrypt_mem(const age_enc_opts *o, const uint8_t *pt, size_t len, size_t step) {
    mem out = {0};
    err_t e = {0};
    age_enc *enc;
    cr_assert_eq(age_enc_new(o, mem_write, &out, &enc, &e), ERR_OK, "%s", e.msg);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < step ? len - off : step;
        cr_assert_eq(age_enc_write(enc, pt + off, n, &e), ERR_OK, "%s", e.msg);
        off += n;
    }
    cr_assert_eq(age_enc_finish(enc, &e), ERR_OK, "%s", e.msg);
    age_enc_free(enc);
    return out;
}

/* Decrypts all of in; returns the first failure's code (ERR_OK at a verified end) and puts
 * what was released into *pt. *stage: 0 = age_dec_new failed, 1 = age_dec_read. */
static err_code decrypt_mem(const age_dec_opts *o, mem *in, mem *pt, int *stage, err_t *e) {
    age_dec *d;
    in->pos = 0;
    *stage = 0;
    err_code rc = age_dec_new(o, mem_read, in, &d, e);
    if (rc != ERR_OK) return rc;
    *stage = 1;
    uint8_t buf[7000];
    for (;;) {
        size_t got;
        rc = age_dec_read(d, buf, sizeof buf, &got, e);
        if (rc != ERR_OK || got == 0) break;
        mem_write(pt, buf, got, NULL);
    }
    age_dec_free(d);
    return rc;
}

static age_identity make_identity(void) {
    age_identity id;
    err_t e = {0};
    cr_assert_eq(age_identity_generate(&id, &e), ERR_OK, "%s", e.msg);
    return id;
}

/* ---------------------------------------------------------------- bech32 and keys */

Test(age, bech32_bip173_vectors) {
    const char *valid[] = {"A12UEL5L", "a12uel5l",
                           "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
                           "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
                           "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w"};
    const char *invalid[] = {"A1G7SGD8" /* checksum computed with upper-case hrp */, "10a06t8" /* empty hrp */,
                             "1qzzfhee", "a12UEL5L" /* mixed case */, "pzry9x0s0muk" /* no separator */,
                             "x1b4n0q5v" /* bad data char */, "li1dgmt3" /* checksum too short */,
                             "A12uEL5L", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx" /* flipped */};
    char hrp[100];
    uint8_t data[100];
    size_t n;
    err_t e = {0};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        /* Some valid BIP 173 strings carry 5-bit data that is not whole bytes; those fail the
         * padding rule, which is right for age keys. The checksum must still be accepted. */
        err_code rc = age_bech32_decode(valid[i], strlen(valid[i]), hrp, sizeof hrp, data, sizeof data, &n, &e);
        cr_assert(rc == ERR_OK || strstr(e.msg, "padding") != NULL, "%s: %s", valid[i], e.msg);
    }
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        cr_assert_neq(age_bech32_decode(invalid[i], strlen(invalid[i]), hrp, sizeof hrp, data, sizeof data, &n, &e),
                      ERR_OK, "%s accepted", invalid[i]);
    /* encode ∘ decode is the identity on byte data */
    const uint8_t bytes[5] = {0, 1, 2, 0xfe, 0xff};
    char s[100];
    size_t len = age_bech32_encode("test", bytes, sizeof bytes, false, s, sizeof s);
    cr_assert_gt(len, 0);
    cr_assert_eq(age_bech32_decode(s, len, hrp, sizeof hrp, data, sizeof data, &n, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(hrp, "test");
    cr_assert_eq(n, sizeof bytes);
    cr_assert_arr_eq(data, bytes, sizeof bytes);
    /* over 90 characters */
    uint8_t big[60] = {0};
    cr_assert_eq(age_bech32_encode("age", big, sizeof big, false, s, sizeof s), 0);
}

Test(age, identity_to_recipient_matches_age_keygen) {
    age_identity id;
    age_recipient r;
    err_t e = {0};
    cr_assert_eq(age_identity_parse(CCTV_IDENTITY, strlen(CCTV_IDENTITY), &id, &e), ERR_OK, "%s", e.msg);
    age_identity_to_recipient(&id, &r);
    char s[100];
    cr_assert_eq(age_recipient_format(&r, s, sizeof s), AGE_RECIPIENT_CHARS);
    cr_assert_str_eq(s, CCTV_RECIPIENT);
    cr_assert_eq(age_identity_format(&id, s, sizeof s), AGE_IDENTITY_CHARS);
    cr_assert_str_eq(s, CCTV_IDENTITY);
    age_recipient r2;
    cr_assert_eq(age_recipient_parse(CCTV_RECIPIENT, strlen(CCTV_RECIPIENT), &r2, &e), ERR_OK, "%s", e.msg);
    cr_assert_arr_eq(r2.pub, r.pub, 32);
}

Test(age, key_case_rules_and_types) {
    age_identity id;
    age_recipient r;
    err_t e = {0};
    char lower[100], upper[100];
    strcpy(lower, CCTV_IDENTITY);
    for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    cr_assert_eq(age_identity_parse(lower, strlen(lower), &id, &e), ERR_INVALID, "lower-case identity accepted");
    cr_assert_null(strstr(e.msg, lower), "the message echoes the secret");
    strcpy(upper, CCTV_RECIPIENT);
    for (char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
    cr_assert_eq(age_recipient_parse(upper, strlen(upper), &r, &e), ERR_INVALID, "upper-case recipient accepted");
    /* an identity is not a recipient, and the reverse */
    cr_assert_neq(age_recipient_parse(CCTV_IDENTITY, strlen(CCTV_IDENTITY), &r, &e), ERR_OK);
    cr_assert_neq(age_identity_parse(CCTV_RECIPIENT, strlen(CCTV_RECIPIENT), &id, &e), ERR_OK);
    const char *ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo";
    cr_assert_eq(age_recipient_parse(ssh, strlen(ssh), &r, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "ssh") != NULL, "%s", e.msg);
    /* a flipped character fails the checksum */
    strcpy(upper, CCTV_RECIPIENT);
    upper[20] = upper[20] == 'q' ? 'p' : 'q';
    cr_assert_eq(age_recipient_parse(upper, strlen(upper), &r, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "checksum") != NULL, "%s", e.msg);
}

Test(age, identity_file_as_age_reads_it) {
    const char text[] = "# created: 2026-01-01T00:00:00Z\n# public key: " CCTV_RECIPIENT "\n\n" CCTV_IDENTITY
                        "\r\n\n# second\n" CCTV_IDENTITY;
    age_identity ids[4];
    size_t n;
    err_t e = {0};
    cr_assert_eq(age_identities_parse(text, strlen(text), ids, 4, &n, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(n, 2);
    const char bad[] = "# ok\n" CCTV_IDENTITY "\n AGE-SECRET-KEY-1X\n";
    cr_assert_eq(age_identities_parse(bad, strlen(bad), ids, 4, &n, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "line 3") != NULL, "%s", e.msg);
    cr_assert_null(strstr(e.msg, "AGE-SECRET-KEY-1X"), "the message echoes the line: %s", e.msg);
    cr_assert_eq(age_identities_parse("# only\n\n", 8, ids, 4, &n, &e), ERR_INVALID);
    cr_assert_eq(age_identities_parse(text, strlen(text), ids, 1, &n, &e), ERR_LIMIT);
    const char nul[] = CCTV_IDENTITY "\0\n";
    cr_assert_eq(age_identities_parse(nul, sizeof nul - 1, ids, 4, &n, &e), ERR_INVALID);

    const char rtext[] = "# backups\n" CCTV_RECIPIENT "\n\nage1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n";
    age_recipient rs[4];
    cr_assert_eq(age_recipients_parse(rtext, strlen(rtext), rs, 4, &n, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(n, 2);
    const char rbad[] = CCTV_RECIPIENT "\n" CCTV_IDENTITY "\n";
    cr_assert_eq(age_recipients_parse(rbad, strlen(rbad), rs, 4, &n, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "line 2") != NULL, "%s", e.msg);
}

Test(age, identity_file_load_and_mode) {
    char path[] = "/tmp/pdsmove-age-id-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = CCTV_IDENTITY "\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    age_identity ids[2];
    size_t n;
    bool insecure;
    err_t e = {0};
    chmod(path, 0600);
    cr_assert_eq(age_identities_load_file(path, ids, 2, &n, &insecure, &e), ERR_OK, "%s", e.msg);
    cr_assert(!insecure);
    chmod(path, 0644);
    cr_assert_eq(age_identities_load_file(path, ids, 2, &n, &insecure, &e), ERR_OK, "%s", e.msg);
    cr_assert(insecure);
    /* a file over AGE_KEYFILE_MAX_BYTES is refused before it is parsed */
    fd = open(path, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    char comment[1024];
    memset(comment, '#', sizeof comment);
    for (size_t i = 0; i <= AGE_KEYFILE_MAX_BYTES / sizeof comment; i++)
        cr_assert_eq(write(fd, comment, sizeof comment), (ssize_t)sizeof comment);
    close(fd);
    cr_assert_eq(age_identities_load_file(path, ids, 2, &n, NULL, &e), ERR_LIMIT, "%s", e.msg);
    unlink(path);
    cr_assert_eq(age_identities_load_file(path, ids, 2, &n, NULL, &e), ERR_IO);
    cr_assert(strstr(e.msg, path) != NULL);
}

/* ---------------------------------------------------------------- round trips */

static void round_trip(const age_enc_opts *eo, const age_dec_opts *dopts, size_t len, size_t step, size_t max_read) {
    uint8_t *pt = random_bytes(len);
    mem ct = encrypt_mem(eo, pt, len, step);
    size_t chunks = len == 0 ? 1 : (len + AGE_CHUNK_BYTES - 1) / AGE_CHUNK_BYTES;
    /* header + nonce + chunks: the ciphertext is exactly the plaintext plus a tag per chunk */
    cr_assert_gt(ct.len, len + chunks * AGE_TAG_BYTES + AGE_NONCE_BYTES);
    cr_assert_lt(ct.len, len + chunks * AGE_TAG_BYTES + AGE_NONCE_BYTES + 400);
    mem out = {0};
    int stage;
    err_t e = {0};
    ct.max_read = max_read;
    cr_assert_eq(decrypt_mem(dopts, &ct, &out, &stage, &e), ERR_OK, "len %zu: %s", len, e.msg);
    cr_assert_eq(out.len, len);
    if (len) cr_assert_arr_eq(out.p, pt, len);
    free(pt);
    free(ct.p);
    free(out.p);
}

Test(age, round_trip_x25519_over_chunk_boundaries) {
    age_identity id = make_identity(), other = make_identity();
    age_recipient r[2];
    age_identity_to_recipient(&other, &r[0]);
    age_identity_to_recipient(&id, &r[1]);
    age_enc_opts eo = {.recipients = r, .n_recipients = 2};
    age_dec_opts dopts = {.identities = &id, .n_identities = 1};
    const size_t sizes[] = {0, 1, 100, AGE_CHUNK_BYTES - 1, AGE_CHUNK_BYTES, AGE_CHUNK_BYTES + 1, 2 * AGE_CHUNK_BYTES,
                            3 * AGE_CHUNK_BYTES + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        round_trip(&eo, &dopts, sizes[i], 4096, 0);
        round_trip(&eo, &dopts, sizes[i], 1 << 20, 1); /* a source that gives one byte at a time */
    }
}

Test(age, round_trip_passphrase) {
    age_enc_opts eo = {.passphrase = "correct horse", .passphrase_len = 13, .scrypt_log_n = 10};
    age_dec_opts dopts = {.passphrase = "correct horse", .passphrase_len = 13};
    round_trip(&eo, &dopts, 0, 1, 0);
    round_trip(&eo, &dopts, AGE_CHUNK_BYTES + 7, 999, 0);
}

Test(age, header_is_what_age_writes) {
    age_identity id = make_identity();
    age_recipient r;
    age_identity_to_recipient(&id, &r);
    age_enc_opts eo = {.recipients = &r, .n_recipients = 1};
    mem ct = encrypt_mem(&eo, (const uint8_t *)"x", 1, 1);
    const char *h = (const char *)ct.p;
    cr_assert(!strncmp(h, "age-encryption.org/v1\n-> X25519 ", 32));
    const char *body = strchr(h + 22, '\n') + 1;
    cr_assert_eq(strchr(body, '\n') - body, 43, "one 43-column body line");
    cr_assert(!strncmp(strchr(body, '\n') + 1, "--- ", 4));
    free(ct.p);
}

/* ---------------------------------------------------------------- failures */

typedef struct {
    age_identity id;
    age_recipient r;
    uint8_t *pt;
    size_t len;
    mem ct;
    size_t hdr_len; /* through the MAC line's "\n" */
} fixture;

static fixture make_fixture(size_t len) {
    fixture f;
    f.id = make_identity();
    age_identity_to_recipient(&f.id, &f.r);
    f.pt = random_bytes(len);
    f.len = len;
    age_enc_opts eo = {.recipients = &f.r, .n_recipients = 1};
    f.ct = encrypt_mem(&eo, f.pt, len, 65000);
    const uint8_t *mac = memmem(f.ct.p, f.ct.len, "\n--- ", 5);
    cr_assert_not_null(mac);
    f.hdr_len = (size_t)(mac - f.ct.p) + 5 + 43 + 1;
    return f;
}

static void free_fixture(fixture *f) {
    free(f->pt);
    free(f->ct.p);
}

/* Decrypts f's ciphertext after edit; checks code and stage, and that what was released is
 * exactly the first `released` bytes of the plaintext. */
static void expect_failure(fixture *f, mem *ct, const age_dec_opts *o, err_code code, int stage, size_t released,
                           const char *needle) {
    mem out = {0};
    int st;
    err_t e = {0};
    err_code rc = decrypt_mem(o, ct, &out, &st, &e);
    cr_assert_eq(rc, code, "got %s (%s), expected %s", err_code_name(rc), e.msg, err_code_name(code));
    cr_assert_eq(st, stage, "failed at stage %d: %s", st, e.msg);
    cr_assert_eq(out.len, released, "released %zu bytes, expected %zu (%s)", out.len, released, e.msg);
    if (released) cr_assert_arr_eq(out.p, f->pt, released);
    if (needle) cr_assert(strstr(e.msg, needle) != NULL, "message lacks \"%s\": %s", needle, e.msg);
    free(out.p);
}

static mem copy_of(const mem *m, size_t len) {
    mem c = {0};
    mem_write(&c, m->p, len, NULL);
    return c;
}

Test(age, wrong_and_no_identity) {
    fixture f = make_fixture(1000);
    age_identity other = make_identity();
    age_dec_opts wrong = {.identities = &other, .n_identities = 1};
    expect_failure(&f, &f.ct, &wrong, ERR_NOT_FOUND, 0, 0, "identit");
    age_dec_opts none = {0};
    expect_failure(&f, &f.ct, &none, ERR_USAGE, 0, 0, NULL);
    age_dec_opts pass = {.passphrase = "x", .passphrase_len = 1};
    expect_failure(&f, &f.ct, &pass, ERR_NOT_FOUND, 0, 0, NULL);
    /* and a passphrase file opened with an identity, or the wrong passphrase */
    age_enc_opts eo = {.passphrase = "right", .passphrase_len = 5, .scrypt_log_n = 8};
    mem pct = encrypt_mem(&eo, f.pt, f.len, 1000);
    age_dec_opts ids = {.identities = &f.id, .n_identities = 1};
    expect_failure(&f, &pct, &ids, ERR_NOT_FOUND, 0, 0, "passphrase");
    age_dec_opts badpass = {.passphrase = "wrong", .passphrase_len = 5};
    expect_failure(&f, &pct, &badpass, ERR_NOT_FOUND, 0, 0, "wrong passphrase");
    free(pct.p);
    free_fixture(&f);
}

Test(age, truncated_anywhere) {
    fixture f = make_fixture(2 * AGE_CHUNK_BYTES + 500);
    age_dec_opts o = {.identities = &f.id, .n_identities = 1};
    size_t c1 = f.hdr_len + AGE_NONCE_BYTES; /* first chunk starts here */
    size_t full = AGE_CHUNK_BYTES + AGE_TAG_BYTES;
    struct { size_t len; err_code code; int stage; size_t released; } cut[] = {
        {0, ERR_TRUNCATED, 0, 0},
        {10, ERR_TRUNCATED, 0, 0},
        {f.hdr_len - 1, ERR_TRUNCATED, 0, 0}, /* MAC line without its newline */
        {f.hdr_len + 5, ERR_TRUNCATED, 0, 0}, /* in the nonce */
        {c1, ERR_TRUNCATED, 1, 0},            /* no chunk at all */
        {c1 + 10, ERR_TRUNCATED, 1, 0},       /* shorter than a tag */
        {c1 + 1000, ERR_MISMATCH, 1, 0},      /* inside chunk 1 */
        {c1 + full, ERR_TRUNCATED, 1, AGE_CHUNK_BYTES},              /* after a whole chunk */
        {c1 + 2 * full, ERR_TRUNCATED, 1, 2 * AGE_CHUNK_BYTES},      /* the last chunk missing */
        {c1 + 2 * full + 100, ERR_MISMATCH, 1, 2 * AGE_CHUNK_BYTES}, /* the last chunk cut short */
        {f.ct.len - 1, ERR_MISMATCH, 1, 2 * AGE_CHUNK_BYTES},
    };
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
        mem c = copy_of(&f.ct, cut[i].len);
        expect_failure(&f, &c, &o, cut[i].code, cut[i].stage, cut[i].released, NULL);
        free(c.p);
    }
    free_fixture(&f);
}

Test(age, flipped_bytes) {
    fixture f = make_fixture(AGE_CHUNK_BYTES + 300);
    age_dec_opts o = {.identities = &f.id, .n_identities = 1};
    size_t c1 = f.hdr_len + AGE_NONCE_BYTES;
    size_t full = AGE_CHUNK_BYTES + AGE_TAG_BYTES;
    /* Text bytes of the header are replaced by another character of the same class (so the
     * outcome does not depend on the random bytes); binary bytes are flipped with mask. */
    struct { size_t at; uint8_t mask; err_code code; int stage; size_t released; } flip[] = {
        {0, 0x01, ERR_INVALID, 0, 0},                      /* the version line */
        {25, 0x01, ERR_NOT_FOUND, 0, 0},                   /* "X25519" → "Y25519": no stanza we know */
        {40, 0, ERR_NOT_FOUND, 0, 0},                      /* the share: another key, no match */
        {f.hdr_len - 10, 0, ERR_MISMATCH, 0, 0},           /* the MAC */
        {f.hdr_len - 47, '\r', ERR_INVALID, 0, 0},         /* "---" → "-\r-": malformed */
        {f.hdr_len + 3, 0x01, ERR_MISMATCH, 1, 0},         /* the nonce: every chunk fails */
        {c1 + 5, 0x80, ERR_MISMATCH, 1, 0},                /* chunk 1 */
        {c1 + full - 1, 0x01, ERR_MISMATCH, 1, 0},         /* chunk 1's tag */
        {c1 + full + 7, 0x04, ERR_MISMATCH, 1, AGE_CHUNK_BYTES}, /* the last chunk */
        {f.ct.len - 1, 0x01, ERR_MISMATCH, 1, AGE_CHUNK_BYTES},  /* the last chunk's tag */
    };
    for (size_t i = 0; i < sizeof flip / sizeof *flip; i++) {
        mem c = copy_of(&f.ct, f.ct.len);
        uint8_t *b = &c.p[flip[i].at];
        if (flip[i].mask == 0) *b = *b == 'A' ? 'B' : 'A';
        else if (flip[i].mask == '\r') *b = '\r';
        else *b ^= flip[i].mask;
        expect_failure(&f, &c, &o, flip[i].code, flip[i].stage, flip[i].released, NULL);
        free(c.p);
    }
    /* a flipped byte in the body of the header's stanza: the file key does not unwrap */
    mem c = copy_of(&f.ct, f.ct.len);
    const uint8_t *body = memchr(c.p + 22, '\n', c.len) + 1;
    c.p[body - c.p + 3] = c.p[body - c.p + 3] == 'A' ? 'B' : 'A';
    expect_failure(&f, &c, &o, ERR_NOT_FOUND, 0, 0, NULL);
    free(c.p);
    free_fixture(&f);
}

Test(age, trailing_data_and_appended_chunk) {
    fixture f = make_fixture(5000);
    age_dec_opts o = {.identities = &f.id, .n_identities = 1};
    mem c = copy_of(&f.ct, f.ct.len);
    mem_write(&c, (const uint8_t *)"x", 1, NULL);
    /* one short chunk plus a byte reads as one damaged chunk: nothing released */
    expect_failure(&f, &c, &o, ERR_MISMATCH, 1, 0, NULL);
    free(c.p);
    fixture g = make_fixture(AGE_CHUNK_BYTES);
    age_dec_opts og = {.identities = &g.id, .n_identities = 1};
    c = copy_of(&g.ct, g.ct.len);
    mem_write(&c, (const uint8_t *)"trailing", 8, NULL);
    /* the authenticated last chunk is handed out (as age does), then the read fails */
    expect_failure(&g, &c, &og, ERR_INVALID, 1, AGE_CHUNK_BYTES, "after its last chunk");
    free(c.p);
    free_fixture(&f);
    free_fixture(&g);
}

Test(age, empty_last_chunk_only_for_empty_payload) {
    /* An empty last chunk after a full one needs the file key to forge (age_enc never writes
     * one); the CCTV vector stream_last_chunk_empty checks that it is refused. Here: the
     * empty payload is exactly one empty last chunk, and it is accepted. */
    fixture f = make_fixture(0);
    age_dec_opts o = {.identities = &f.id, .n_identities = 1};
    cr_assert_eq(f.ct.len, f.hdr_len + AGE_NONCE_BYTES + AGE_TAG_BYTES);
    mem out = {0};
    int st;
    err_t e = {0};
    cr_assert_eq(decrypt_mem(&o, &f.ct, &out, &st, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(out.len, 0);
    free_fixture(&f);
}

/* ---------------------------------------------------------------- limits and usage */

Test(age, limits_and_usage) {
    age_identity id = make_identity();
    age_recipient r[AGE_MAX_RECIPIENTS + 1];
    for (size_t i = 0; i < AGE_MAX_RECIPIENTS + 1; i++) age_identity_to_recipient(&id, &r[i]);
    mem out = {0};
    age_enc *enc;
    err_t e = {0};
    age_enc_opts many = {.recipients = r, .n_recipients = AGE_MAX_RECIPIENTS + 1};
    cr_assert_eq(age_enc_new(&many, mem_write, &out, &enc, &e), ERR_LIMIT);
    age_enc_opts both = {.recipients = r, .n_recipients = 1, .passphrase = "p", .passphrase_len = 1};
    cr_assert_eq(age_enc_new(&both, mem_write, &out, &enc, &e), ERR_USAGE);
    age_enc_opts none = {0};
    cr_assert_eq(age_enc_new(&none, mem_write, &out, &enc, &e), ERR_USAGE);
    age_enc_opts hard = {.passphrase = "p", .passphrase_len = 1, .scrypt_log_n = AGE_SCRYPT_MAX_LOG_N + 1};
    cr_assert_eq(age_enc_new(&hard, mem_write, &out, &enc, &e), ERR_USAGE);
    age_enc_opts empty = {.passphrase = "", .passphrase_len = 0};
    cr_assert_eq(age_enc_new(&empty, mem_write, &out, &enc, &e), ERR_USAGE);
    /* a low-order recipient is refused, not silently used */
    age_recipient zero = {{0}};
    age_enc_opts low = {.recipients = &zero, .n_recipients = 1};
    cr_assert_eq(age_enc_new(&low, mem_write, &out, &enc, &e), ERR_INVALID);
    free(out.p);

    /* a header beyond AGE_HEADER_MAX_BYTES (many unknown stanzas) */
    mem big = {0};
    const char v[] = "age-encryption.org/v1\n";
    mem_write(&big, (const uint8_t *)v, sizeof v - 1, NULL);
    const char st[] = "-> grease a b c\n\n";
    for (size_t i = 0; i < AGE_HEADER_MAX_BYTES / (sizeof st - 1) + 1; i++)
        mem_write(&big, (const uint8_t *)st, sizeof st - 1, NULL);
    age_dec_opts o = {.identities = &id, .n_identities = 1};
    mem pt = {0};
    int stage;
    cr_assert_eq(decrypt_mem(&o, &big, &pt, &stage, &e), ERR_LIMIT, "%s", e.msg);
    /* more stanzas than AGE_MAX_STANZAS within the byte limit */
    big.len = sizeof v - 1;
    const char st2[] = "-> g\n\n";
    for (size_t i = 0; i < AGE_MAX_STANZAS + 1; i++) mem_write(&big, (const uint8_t *)st2, sizeof st2 - 1, NULL);
    cr_assert_eq(decrypt_mem(&o, &big, &pt, &stage, &e), ERR_LIMIT, "%s", e.msg);
    cr_assert(strstr(e.msg, "stanzas") != NULL, "%s", e.msg);
    free(big.p);
}

/* ---------------------------------------------------------------- CCTV vectors */

typedef struct {
    char expect[32];
    char payload[65];
    char identity[4][100];
    size_t n_identity;
    char passphrase[100];
    bool have_pass, zlib;
    uint8_t *file;
    size_t file_len;
} vector;

static bool load_vector(const char *path, vector *v) {
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static uint8_t raw[1 << 20];
    size_t n = fread(raw, 1, sizeof raw, f);
    fclose(f);
    cr_assert_lt(n, sizeof raw);
    size_t pos = 0;
    for (;;) {
        uint8_t *nl = memchr(raw + pos, '\n', n - pos);
        cr_assert_not_null(nl, "%s: no blank line after the header", path);
        size_t ll = (size_t)(nl - (raw + pos));
        char line[256];
        cr_assert_lt(ll, sizeof line);
        memcpy(line, raw + pos, ll);
        line[ll] = 0;
        pos += ll + 1;
        if (ll == 0) break;
        char *colon = strstr(line, ": ");
        cr_assert_not_null(colon, "%s: %s", path, line);
        *colon = 0;
        const char *val = colon + 2;
        if (!strcmp(line, "expect")) snprintf(v->expect, sizeof v->expect, "%s", val);
        else if (!strcmp(line, "payload")) snprintf(v->payload, sizeof v->payload, "%s", val);
        else if (!strcmp(line, "identity")) snprintf(v->identity[v->n_identity++], 100, "%s", val);
        else if (!strcmp(line, "passphrase")) v->have_pass = true, snprintf(v->passphrase, sizeof v->passphrase, "%s", val);
        else if (!strcmp(line, "compressed")) v->zlib = !strcmp(val, "zlib");
        else if (!strcmp(line, "armored")) return false;
    }
    if (!v->zlib) {
        v->file = malloc(n - pos + 1);
        memcpy(v->file, raw + pos, n - pos);
        v->file_len = n - pos;
        return true;
    }
    uLongf cap = 32u << 20;
    v->file = malloc(cap);
    cr_assert_eq(uncompress(v->file, &cap, raw + pos, n - pos), Z_OK, "%s: zlib", path);
    v->file_len = cap;
    return true;
}

Test(age, cctv_vectors, .timeout = 120) {
    DIR *dir = opendir(CCTV_DIR);
    cr_assert_not_null(dir, "%s", CCTV_DIR);
    struct dirent *de;
    size_t ran = 0;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CCTV_DIR, de->d_name);
        vector v;
        if (!load_vector(path, &v)) continue;
        age_identity ids[4];
        err_t e = {0};
        for (size_t i = 0; i < v.n_identity; i++)
            cr_assert_eq(age_identity_parse(v.identity[i], strlen(v.identity[i]), &ids[i], &e), ERR_OK, "%s: %s",
                         de->d_name, e.msg);
        age_dec_opts o = {.identities = ids, .n_identities = v.n_identity};
        if (v.have_pass) o.passphrase = v.passphrase, o.passphrase_len = strlen(v.passphrase);
        mem in = {.p = v.file, .len = v.file_len, .cap = v.file_len};
        mem out = {0};
        int stage;
        err_code rc = decrypt_mem(&o, &in, &out, &stage, &e);
        const char *got;
        if (rc == ERR_OK) got = "success";
        else if (stage == 1) got = "payload failure";
        else if (rc == ERR_NOT_FOUND) got = "no match";
        else if (rc == ERR_MISMATCH) got = "HMAC failure";
        else if (rc == ERR_INVALID || rc == ERR_LIMIT || rc == ERR_TRUNCATED) got = "header failure";
        else got = err_code_name(rc);
        cr_expect_str_eq(got, v.expect, "%s: expected %s, got %s (%s)", de->d_name, v.expect, got, e.msg);
        if (v.payload[0]) {
            uint8_t h[32];
            char hex[65];
            hash_sha256(out.p ? out.p : (const uint8_t *)"", out.len, h);
            hex_encode(h, 32, hex, sizeof hex);
            cr_expect_str_eq(hex, v.payload, "%s: the released plaintext (%zu bytes) does not match", de->d_name, out.len);
        }
        free(out.p);
        free(v.file);
        ran++;
    }
    closedir(dir);
    cr_assert_geq(ran, 90, "only %zu vectors ran", ran);
}

/* ---------------------------------------------------------------- interop with age */

static void need_age(void) {
    cr_assert_eq(access(AGE_BIN, X_OK), 0, "Debian's age is not installed: `apt-get install -y age` (scripts/bootstrap does)");
}

static void write_file(const char *path, const void *p, size_t len, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0, "%s", path);
    cr_assert_eq(write(fd, p, len), (ssize_t)len);
    close(fd);
}

static mem read_whole(const char *path) {
    mem m = {0};
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) mem_write(&m, buf, n, NULL);
    fclose(f);
    return m;
}

static char tmpdir_[64];
static const char *tmp_path(const char *name) {
    static char p[8][128];
    static int k;
    if (!tmpdir_[0]) {
        strcpy(tmpdir_, "/tmp/pdsmove-age-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir_));
    }
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir_, name);
    return p[k];
}

/* Each test runs in its own process: its scratch directory goes when it ends. */
static void remove_tmpdir(void) {
    if (!tmpdir_[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir_);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(age, .fini = remove_tmpdir);

static void run(const char *cmd) {
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "`%s` failed (status %d)", cmd, rc);
}

static void file_encrypt(const age_enc_opts *o, const char *in, const char *out) {
    int i = open(in, O_RDONLY), w = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    err_t e = {0};
    cr_assert_eq(age_encrypt_fd(o, i, w, &e), ERR_OK, "%s", e.msg);
    close(i);
    close(w);
}

static err_code file_decrypt(const age_dec_opts *o, const char *in, const char *out, err_t *e) {
    int i = open(in, O_RDONLY), w = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    err_code rc = age_decrypt_fd(o, i, w, e);
    close(i);
    close(w);
    return rc;
}

static void same_files(const char *a, const char *b) {
    mem x = read_whole(a), y = read_whole(b);
    cr_assert_eq(x.len, y.len, "%s and %s differ in size", a, b);
    if (x.len) cr_assert_arr_eq(x.p, y.p, x.len);
    free(x.p);
    free(y.p);
}

static void write_plain(const char *path, size_t len) {
    uint8_t *p = random_bytes(len);
    write_file(path, p, len, 0600);
    free(p);
}

Test(age, interop_x25519_both_ways, .timeout = 60) {
    need_age();
    age_identity id = make_identity();
    char line[128];
    size_t n = age_identity_format(&id, line, sizeof line);
    line[n++] = '\n';
    write_file(tmp_path("key.txt"), line, n, 0600);
    age_recipient r;
    age_identity_to_recipient(&id, &r);
    char rs[100];
    age_recipient_format(&r, rs, sizeof rs);
    const size_t sizes[] = {0, 1, AGE_CHUNK_BYTES, AGE_CHUNK_BYTES + 1, 5 * AGE_CHUNK_BYTES + 77};
    char cmd[1024];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        write_plain(tmp_path("plain"), sizes[i]);
        /* pdsmove → age */
        age_enc_opts eo = {.recipients = &r, .n_recipients = 1};
        file_encrypt(&eo, tmp_path("plain"), tmp_path("p.age"));
        snprintf(cmd, sizeof cmd, AGE_BIN " -d -i %s %s > %s", tmp_path("key.txt"), tmp_path("p.age"), tmp_path("out1"));
        run(cmd);
        same_files(tmp_path("plain"), tmp_path("out1"));
        /* age → pdsmove (age reads the recipient as pdsmove formatted it) */
        snprintf(cmd, sizeof cmd, AGE_BIN " -r %s -o %s %s", rs, tmp_path("a.age"), tmp_path("plain"));
        run(cmd);
        age_dec_opts dopts = {.identities = &id, .n_identities = 1};
        err_t e = {0};
        cr_assert_eq(file_decrypt(&dopts, tmp_path("a.age"), tmp_path("out2"), &e), ERR_OK, "%s", e.msg);
        same_files(tmp_path("plain"), tmp_path("out2"));
    }
    /* an identity from age-keygen, with its comments, read by pdsmove */
    snprintf(cmd, sizeof cmd, "age-keygen -o %s 2>/dev/null && age-keygen -y %s > %s", tmp_path("kg.txt"),
             tmp_path("kg.txt"), tmp_path("kg.pub"));
    run(cmd);
    age_identity ids[2];
    size_t nid;
    err_t e = {0};
    cr_assert_eq(age_identities_load_file(tmp_path("kg.txt"), ids, 2, &nid, NULL, &e), ERR_OK, "%s", e.msg);
    age_recipient rr[2];
    size_t nr;
    cr_assert_eq(age_recipients_load_file(tmp_path("kg.pub"), rr, 2, &nr, &e), ERR_OK, "%s", e.msg);
    cr_assert_arr_eq(rr[0].pub, ids[0].pub, 32);
    /* several recipients, one of them age-keygen's: age opens it with that key */
    age_recipient two[2] = {r, rr[0]};
    age_enc_opts eo2 = {.recipients = two, .n_recipients = 2};
    file_encrypt(&eo2, tmp_path("plain"), tmp_path("two.age"));
    snprintf(cmd, sizeof cmd, AGE_BIN " -d -i %s -o %s %s", tmp_path("kg.txt"), tmp_path("out3"), tmp_path("two.age"));
    run(cmd);
    same_files(tmp_path("plain"), tmp_path("out3"));
    /* age refuses what pdsmove refuses: a flipped byte in the last chunk */
    mem c = read_whole(tmp_path("p.age"));
    c.p[c.len - 3] ^= 1;
    write_file(tmp_path("bad.age"), c.p, c.len, 0600);
    free(c.p);
    snprintf(cmd, sizeof cmd, AGE_BIN " -d -i %s -o %s %s 2>/dev/null", tmp_path("key.txt"), tmp_path("out4"),
             tmp_path("bad.age"));
    cr_assert_neq(system(cmd), 0, "age accepted a damaged file");
    cr_assert_eq(file_decrypt(&(age_dec_opts){.identities = &id, .n_identities = 1}, tmp_path("bad.age"), tmp_path("out5"), &e),
                 ERR_MISMATCH);
}

/* Slow under valgrind (scrypt at age's 2^18: 256 MiB, each way), hence the long timeout. */
Test(age, interop_passphrase_both_ways, .timeout = 900) {
    need_age();
    const char pass[] = "pdsmove interop passphrase";
    char line[64];
    snprintf(line, sizeof line, "%s\n", pass);
    write_file(tmp_path("pass.txt"), line, strlen(line), 0600);
    write_plain(tmp_path("plain"), AGE_CHUNK_BYTES * 2 + 3);
    char cmd[1024];
    /* pdsmove → age -d (age asks for the passphrase on a terminal: tests/age_pty.py) */
    age_enc_opts eo = {.passphrase = pass, .passphrase_len = strlen(pass)}; /* age's default work factor */
    file_encrypt(&eo, tmp_path("plain"), tmp_path("p.age"));
    snprintf(cmd, sizeof cmd, "python3 %s/tests/age_pty.py %s " AGE_BIN " -d -o %s %s 2>/dev/null", PDSMOVE_ROOT,
             tmp_path("pass.txt"), tmp_path("out1"), tmp_path("p.age"));
    run(cmd);
    same_files(tmp_path("plain"), tmp_path("out1"));
    /* age -p → pdsmove */
    snprintf(cmd, sizeof cmd, "python3 %s/tests/age_pty.py %s " AGE_BIN " -p -o %s %s 2>/dev/null", PDSMOVE_ROOT,
             tmp_path("pass.txt"), tmp_path("a.age"), tmp_path("plain"));
    run(cmd);
    age_dec_opts dopts = {.passphrase = pass, .passphrase_len = strlen(pass)};
    err_t e = {0};
    cr_assert_eq(file_decrypt(&dopts, tmp_path("a.age"), tmp_path("out2"), &e), ERR_OK, "%s", e.msg);
    same_files(tmp_path("plain"), tmp_path("out2"));
    age_dec_opts wrong = {.passphrase = "nope", .passphrase_len = 4};
    cr_assert_eq(file_decrypt(&wrong, tmp_path("a.age"), tmp_path("out3"), &e), ERR_NOT_FOUND);
}
