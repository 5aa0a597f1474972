/* pds.h — an authenticated session with a PDS: login (with the email 2FA code when the
 * account has one), the token's scope (an app password cannot do identity operations, so we
 * detect it at login), refresh when the access token expires mid-run, and calls that retry
 * once after such a refresh. Tokens are secrets: kept in memory only, wiped on free. */
#ifndef PDSMOVE_PDS_H
#define PDSMOVE_PDS_H

#include <jansson.h>
#include <stdbool.h>
#include "pdsmove/err.h"
#include "pdsmove/xrpc.h"

typedef struct {
    xrpc_client *c;          /* owned; bearer set to the access token once logged in */
    char url[512];
    char did[256];
    char handle[256];
    char email[320];
    bool email_confirmed;
    bool email_auth_factor;
    bool active;
    char status[32];         /* "deactivated", "takendown", ... when !active */
    char scope[64];          /* from the access token: com.atproto.access, com.atproto.appPass... */
    char *access_jwt;        /* secret */
    char *refresh_jwt;       /* secret */
} pds_session;

err_code pds_session_new(const char *url, const xrpc_options *opts, pds_session **out, err_t *e);
void pds_session_free(pds_session *s);

/* createSession. On an account with email 2FA and no token given, returns ERR_REMOTE with
 * xrpc_last_error_name(s->c) == "AuthFactorTokenRequired" (pds_needs_auth_factor). */
err_code pds_login(pds_session *s, const char *identifier, const char *password, const char *auth_factor_token, err_t *e);
bool pds_needs_auth_factor(const pds_session *s);
/* Adopts existing tokens (e.g. from createAccount's reply). */
err_code pds_adopt_tokens(pds_session *s, const char *did, const char *access_jwt, const char *refresh_jwt, err_t *e);
bool pds_is_app_password(const pds_session *s);
err_code pds_refresh(pds_session *s, err_t *e);

/* XRPC calls with the session; an ExpiredToken answer triggers one refresh and one retry. */
err_code pds_query(pds_session *s, const char *nsid, const xrpc_param *params, json_t **out, err_t *e);
err_code pds_procedure(pds_session *s, const char *nsid, const json_t *body, json_t **out, err_t *e);
err_code pds_query_to_fd(pds_session *s, const char *nsid, const xrpc_param *params, int fd, uint64_t *bytes, err_t *e);
err_code pds_procedure_from_fd(pds_session *s, const char *nsid, const char *content_type, int fd, uint64_t size,
                               json_t **out, err_t *e);

/* activateAccount, retried for up to about a minute while the PDS still answers from a cached
 * DID document that does not name it yet (right after the PLC operation). on_wait (may be
 * NULL) is called before each wait. */
err_code pds_activate(pds_session *s, void (*on_wait)(void *ctx), void *ctx, err_t *e);

/* A single-use invite code minted through the PDS's admin API (Basic admin:<password>), as
 * `pdsadmin create-invite-code` does. */
err_code pds_mint_invite(const char *url, const char *admin_password, const xrpc_options *opts, char *code, size_t size,
                         err_t *e);

/* The JSON payload of a JWT (no signature check: for reading our own tokens' claims). */
json_t *pds_jwt_payload(const char *jwt, err_t *e);

#endif
