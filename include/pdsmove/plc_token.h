/* plc_token.h — the PLC round trips that migrate and `pdsmove plc` share: obtaining the
 * emailed PLC-operation token (a file the user writes it to, a self-hosted PDS's
 * account.sqlite, or a prompt), the token's shape check, and a DID's audit log read from a
 * PLC directory and validated into a plc_state. No printing: messages go through callbacks. */
#ifndef PDSMOVE_PLC_TOKEN_H
#define PDSMOVE_PLC_TOKEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>
#include "pdsmove/err.h"
#include "pdsmove/pds.h"
#include "pdsmove/plc.h"
#include "pdsmove/xrpc.h"

#define PLC_TOKEN_MAX 128                  /* buffer size for a token (they are ~11 characters) */
#define PLC_TOKEN_FILE_WAIT_S (15 * 60)    /* the token's own lifetime */
#define PLC_TOKEN_DB_WAIT_S 30             /* the PDS writes the row before it answers; a margin */

/* Where the token comes from, in this order: token_db, token_file, ask_secret. */
typedef struct {
    const char *did;          /* whose token (the email_token row's did) */
    const char *token_db;     /* the PDS's account.sqlite (read-only; WAL, so while it runs) */
    const char *token_file;   /* a file the user writes the token to; waits for a write made
                               * at or after requested_at */
    time_t requested_at;      /* when requestPlcOperationSignature was sent */
    struct stat file_before;  /* token_file as it was before the request (plc_token_note_file) */
    bool file_before_valid;   /* it existed then: only a rewrite counts, never that old content */
    int db_wait_s;            /* 0: PLC_TOKEN_DB_WAIT_S */
    int file_wait_s;          /* 0: PLC_TOKEN_FILE_WAIT_S */
    const char *pds_label;    /* how messages name the PDS ("the old PDS's"); NULL: "the PDS's" */
    void *ctx;
    void (*info)(void *ctx, const char *msg);                                  /* may be NULL */
    bool (*ask_secret)(void *ctx, const char *prompt, char *out, size_t size); /* may be NULL */
} plc_token_source;

/* Records token_file's state (if it exists) just BEFORE the token is requested, so a token
 * left there by an earlier attempt is never taken for the new one. */
void plc_token_note_file(plc_token_source *src);

/* 5 to 64 characters of [A-Za-z0-9-] (the PDS sends XXXXX-XXXXX). */
bool plc_token_shape_ok(const char *token);
/* The plc_operation token of did in db_path, polling once a second for up to wait_s seconds
 * while the row is not there. ERR_IO when the file is not a PDS account database. */
err_code plc_token_from_db(const char *db_path, const char *did, int wait_s, const char *pds_label, char *tok,
                           size_t size, err_t *e);
/* The first line of path once it has been written at or after requested_at (polling once a
 * second for up to wait_s seconds; info is told once that it waits). */
err_code plc_token_from_file(const plc_token_source *src, char *tok, size_t size, err_t *e);
/* The token from src, trimmed and shape-checked (tok is wiped on failure). */
err_code plc_token_obtain(const plc_token_source *src, char *tok, size_t size, err_t *e);
/* com.atproto.identity.signPlcOperation on s: the PDS signs target (its rotation keys,
 * alsoKnownAs, verification methods and services) after checking the emailed token. A refused
 * token gets "<pds_name> refused the token ..." in e. *signed_op is owned by the caller. */
err_code plc_token_sign_op(pds_session *s, const char *pds_name, const plc_op *target, const char *tok,
                           json_t **signed_op, err_t *e);

/* GET <plc_url>/<did>/log/audit, validated (plc_log_validate) into *st (caller
 * plc_state_free()s it); the raw log too when log_out is non-NULL (caller json_decref()s).
 * A tombstoned DID is returned as such (st->tombstoned), not refused. Errors are wrapped with
 * "reading the PLC audit log of DID" (transport) or "the PLC directory's audit log of DID does
 * not validate" (the log itself; e->code is then the validation's code). */
err_code plc_audit_fetch(const char *plc_url, const char *did, const xrpc_options *xo, plc_state *st,
                         json_t **log_out, err_t *e);
/* Only the transport half: the raw log JSON (caller json_decref()s). */
err_code plc_audit_get(const char *plc_url, const char *did, const xrpc_options *xo, json_t **log_out, err_t *e);

#endif
