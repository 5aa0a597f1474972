/* pds.c — PDS sessions: login, 2FA, scope check, refresh-and-retry; see pds.h.
 * Must never print or log a token or password. */
#include "pdsmove/pds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/codec.h"

static void wipe_free(char *s) {
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

err_code pds_session_new(const char *url, const xrpc_options *opts, pds_session **out, err_t *e) {
    *out = NULL;
    pds_session *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    s->c = xrpc_client_new(url, opts, e);
    if (!s->c) {
        free(s);
        return e ? e->code : ERR_USAGE;
    }
    snprintf(s->url, sizeof s->url, "%s", xrpc_client_base_url(s->c));
    s->active = true;
    *out = s;
    return ERR_OK;
}

void pds_session_free(pds_session *s) {
    if (!s) return;
    xrpc_client_free(s->c);
    wipe_free(s->access_jwt);
    wipe_free(s->refresh_jwt);
    free(s);
}

json_t *pds_jwt_payload(const char *jwt, err_t *e) {
    const char *p = strchr(jwt, '.');
    const char *q = p ? strchr(p + 1, '.') : NULL;
    if (!p || !q || q - p - 1 > 8192) {
        err_set(e, ERR_INVALID, "the server's session token is not a JWT");
        return NULL;
    }
    uint8_t raw[6144];
    size_t n = 0;
    if (base64url_decode(p + 1, (size_t)(q - p - 1), raw, sizeof raw, &n, e)) return NULL;
    json_error_t je;
    json_t *j = json_loadb((const char *)raw, n, 0, &je);
    explicit_bzero(raw, sizeof raw);
    if (!json_is_object(j)) {
        json_decref(j);
        err_set(e, ERR_INVALID, "the session token's payload is not JSON");
        return NULL;
    }
    return j;
}

static void copy_str(char *dst, size_t size, const json_t *obj, const char *key) {
    const char *v = json_string_value(json_object_get(obj, key));
    snprintf(dst, size, "%s", v ? v : "");
}

static err_code take_tokens(pds_session *s, const json_t *out, err_t *e) {
    const char *access = json_string_value(json_object_get(out, "accessJwt"));
    const char *refresh = json_string_value(json_object_get(out, "refreshJwt"));
    const char *did = json_string_value(json_object_get(out, "did"));
    if (!access || !refresh) return err_set(e, ERR_REMOTE, "%s answered without session tokens", s->url);
    return pds_adopt_tokens(s, did ? did : s->did, access, refresh, e);
}

err_code pds_adopt_tokens(pds_session *s, const char *did, const char *access_jwt, const char *refresh_jwt, err_t *e) {
    wipe_free(s->access_jwt);
    wipe_free(s->refresh_jwt);
    s->access_jwt = strdup(access_jwt);
    s->refresh_jwt = strdup(refresh_jwt);
    if (!s->access_jwt || !s->refresh_jwt) return err_set(e, ERR_NOMEM, "out of memory");
    if (did != s->did) snprintf(s->did, sizeof s->did, "%s", did);
    json_t *claims = pds_jwt_payload(access_jwt, NULL);
    copy_str(s->scope, sizeof s->scope, claims, "scope");
    json_decref(claims);
    return xrpc_set_bearer(s->c, s->access_jwt, e);
}

bool pds_needs_auth_factor(const pds_session *s) {
    return !strcmp(xrpc_last_error_name(s->c), "AuthFactorTokenRequired");
}

bool pds_is_app_password(const pds_session *s) {
    /* Full sessions carry com.atproto.access; app passwords com.atproto.appPass or appPassPrivileged. */
    return s->scope[0] && strcmp(s->scope, "com.atproto.access") != 0;
}

err_code pds_login(pds_session *s, const char *identifier, const char *password, const char *auth_factor_token,
                   err_t *e) {
    xrpc_set_bearer(s->c, NULL, NULL);
    json_t *body = json_pack("{s:s, s:s}", "identifier", identifier, "password", password);
    if (!body) return err_set(e, ERR_NOMEM, "out of memory");
    if (auth_factor_token) json_object_set_new(body, "authFactorToken", json_string(auth_factor_token));
    json_t *out = NULL;
    err_code rc = xrpc_procedure(s->c, "com.atproto.server.createSession", body, &out, e);
    /* the body holds a copy of the password: zero it where it is (json_string_set would free
     * the old copy as it is; secure_process_init's wiping free is the second line) */
    json_t *pw = json_object_get(body, "password");
    if (pw) explicit_bzero((char *)json_string_value(pw), json_string_length(pw));
    json_decref(body);
    if (rc) {
        if (pds_needs_auth_factor(s))
            return err_set(e, ERR_REMOTE, "%s asks for the sign-in code it just emailed (email 2FA): give it with "
                                          "--auth-factor-token-file or type it when asked", s->url);
        if (!strcmp(xrpc_last_error_name(s->c), "AuthenticationRequired") || xrpc_last_status(s->c) == 401) {
            char why[ERR_MSG_MAX]; /* e->msg is both source and destination otherwise */
            snprintf(why, sizeof why, "%s", e ? e->msg : "");
            return err_set(e, ERR_REMOTE, "%s refused the login for %s: wrong handle/DID or password (%s)", s->url, identifier, why);
        }
        return rc;
    }
    rc = take_tokens(s, out, e);
    copy_str(s->handle, sizeof s->handle, out, "handle");
    copy_str(s->email, sizeof s->email, out, "email");
    s->email_confirmed = json_is_true(json_object_get(out, "emailConfirmed"));
    s->email_auth_factor = json_is_true(json_object_get(out, "emailAuthFactor"));
    json_t *active = json_object_get(out, "active");
    s->active = !active || json_is_true(active);
    copy_str(s->status, sizeof s->status, out, "status");
    json_decref(out);
    return rc;
}

err_code pds_refresh(pds_session *s, err_t *e) {
    if (!s->refresh_jwt) return err_set(e, ERR_CONFLICT, "no session to refresh with %s", s->url);
    err_code rc = xrpc_set_bearer(s->c, s->refresh_jwt, e);
    if (rc) return rc;
    json_t *out = NULL;
    rc = xrpc_procedure(s->c, "com.atproto.server.refreshSession", NULL, &out, e);
    if (rc == ERR_OK) rc = take_tokens(s, out, e);
    else xrpc_set_bearer(s->c, s->access_jwt, NULL);
    json_decref(out);
    return rc ? err_wrap(e, "refreshing the session with %s", s->url) : ERR_OK;
}

static bool expired(const pds_session *s) {
    const char *n = xrpc_last_error_name(s->c);
    return s->refresh_jwt && (!strcmp(n, "ExpiredToken") || !strcmp(n, "BadJwtSignature")) &&
           (xrpc_last_status(s->c) == 400 || xrpc_last_status(s->c) == 401);
}

err_code pds_query(pds_session *s, const char *nsid, const xrpc_param *params, json_t **out, err_t *e) {
    err_code rc = xrpc_query(s->c, nsid, params, out, e);
    if (rc == ERR_REMOTE && expired(s) && pds_refresh(s, NULL) == ERR_OK) rc = xrpc_query(s->c, nsid, params, out, e);
    return rc;
}

err_code pds_procedure(pds_session *s, const char *nsid, const json_t *body, json_t **out, err_t *e) {
    err_code rc = xrpc_procedure(s->c, nsid, body, out, e);
    if (rc == ERR_REMOTE && expired(s) && pds_refresh(s, NULL) == ERR_OK) rc = xrpc_procedure(s->c, nsid, body, out, e);
    return rc;
}

err_code pds_query_to_fd(pds_session *s, const char *nsid, const xrpc_param *params, int fd, uint64_t *bytes, err_t *e) {
    err_code rc = xrpc_query_to_fd(s->c, nsid, params, fd, bytes, e);
    if (rc == ERR_REMOTE && expired(s) && pds_refresh(s, NULL) == ERR_OK)
        rc = xrpc_query_to_fd(s->c, nsid, params, fd, bytes, e);
    return rc;
}

err_code pds_procedure_from_fd(pds_session *s, const char *nsid, const char *content_type, int fd, uint64_t size,
                               json_t **out, err_t *e) {
    err_code rc = xrpc_procedure_from_fd(s->c, nsid, content_type, fd, size, out, e);
    if (rc == ERR_REMOTE && expired(s) && pds_refresh(s, NULL) == ERR_OK)
        rc = xrpc_procedure_from_fd(s->c, nsid, content_type, fd, size, out, e);
    return rc;
}

err_code pds_activate(pds_session *s, void (*on_wait)(void *ctx), void *ctx, err_t *e) {
    err_code rc = ERR_OK;
    for (int attempt = 0; attempt < 12; attempt++) {
        rc = pds_procedure(s, "com.atproto.server.activateAccount", NULL, NULL, e);
        if (rc == ERR_OK) break;
        /* what the reference PDS says while its DID cache is stale */
        if (!strstr(e->msg, "rotation key") && !strstr(e->msg, "DID data") && !strstr(e->msg, "signing key")) break;
        if (on_wait) on_wait(ctx);
        sleep(attempt < 4 ? 1 : 5);
    }
    return rc;
}

err_code pds_mint_invite(const char *url, const char *admin_password, const xrpc_options *opts, char *code, size_t size,
                         err_t *e) {
    xrpc_client *c = xrpc_client_new(url, opts, e);
    if (!c) return e ? e->code : ERR_USAGE;
    xrpc_set_basic_auth(c, "admin", admin_password, NULL);
    json_t *body = json_pack("{s:i}", "useCount", 1), *out = NULL;
    err_code rc = xrpc_procedure(c, "com.atproto.server.createInviteCode", body, &out, e);
    json_decref(body);
    xrpc_client_free(c);
    if (rc) return err_wrap(e, "minting an invite code with the PDS's admin password");
    const char *s = json_string_value(json_object_get(out, "code"));
    if (s) snprintf(code, size, "%s", s);
    json_decref(out);
    return s ? ERR_OK : err_set(e, ERR_REMOTE, "createInviteCode returned no code");
}
