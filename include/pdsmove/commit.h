/* commit.h — the signed repo commit: {did, version: 3, data: <MST root CID>, rev: <TID>,
 * prev: CID|null, sig: bytes}, signed over the DAG-CBOR of the same map without "sig".
 * Version 2 commits (rev optional) are accepted when decoding. */
#ifndef PDSMOVE_COMMIT_H
#define PDSMOVE_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/buf.h"
#include "pdsmove/cid.h"
#include "pdsmove/err.h"
#include "pdsmove/keys.h"

#define COMMIT_DID_MAX 2048  /* the DID syntax's length limit */
#define COMMIT_REV_MAX 64    /* a TID is 13 characters; leave room */
#define COMMIT_SIG_MAX 128   /* a valid signature is KEY_SIG_BYTES; more is kept to report it */

typedef struct {
    char did[COMMIT_DID_MAX + 1];
    int64_t version;          /* 3 (or 2) */
    cid_t data;               /* MST root */
    char rev[COMMIT_REV_MAX + 1]; /* "" when absent (version 2 only) */
    bool has_prev;
    cid_t prev;
    uint8_t sig[COMMIT_SIG_MAX];
    size_t sig_len;
} commit_t;

/* Decodes and checks the shape of a commit block (strict DAG-CBOR). ERR_INVALID naming
 * the field at fault; unknown extra fields are kept (they are signed) but not returned. */
err_code commit_decode(const uint8_t *block, size_t len, commit_t *out, err_t *e);

/* The DAG-CBOR bytes the signature covers (the commit map without "sig"), appended to out. */
err_code commit_unsigned_bytes(const uint8_t *block, size_t len, buf_t *out, err_t *e);

/* ERR_OK when the commit's signature is valid for key; ERR_MISMATCH when it is not (wrong key
 * or altered commit), ERR_INVALID for a malformed commit or signature. */
err_code commit_verify(const uint8_t *block, size_t len, const key_pub *key, err_t *e);

/* Builds and signs a version-3 commit; the block goes to out (appended), its CID to *cid.
 * prev may be NULL (null in the commit). */
err_code commit_build_signed(const char *did, const cid_t *data, const char *rev, const cid_t *prev,
                             const key_priv *key, buf_t *out, cid_t *cid, err_t *e);

#endif
