/* plc_token.c — the emailed PLC-operation token (from the PDS's account.sqlite, a file the
 * user writes, or a prompt) and a DID's validated audit log: the pieces migrate's identity
 * step and `pdsmove plc add-rotation-key` share. The token is a secret: never logged, wiped
 * from every buffer here that held it. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/identity.h"
#include "pdsmove/plc_token.h"
#include "pdsmove/secure.h"

bool plc_token_shape_ok(const char *t) {
    size_t n = strlen(t);
    if (n < 5 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '-')) return false;
    return true;
}

err_code plc_token_from_db(const char *db_path, const char *did, int wait_s, const char *pds_label, char *tok, size_t size,
                           err_t *e) {
    const char *label = pds_label ? pds_label : "the PDS's";
    char uri[1200];
    if ((size_t)snprintf(uri, sizeof uri, "file:%s?mode=ro", db_path) >= sizeof uri)
        return err_set(e, ERR_USAGE, "the path %.200s... is too long", db_path);
    for (int waited = 0; waited <= wait_s; waited++) {
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
            err_set(e, ERR_IO, "cannot open %s account database %s: %s", label, db_path, db ? sqlite3_errmsg(db) : "out of memory");
            sqlite3_close(db);
            return ERR_IO;
        }
        sqlite3_busy_timeout(db, 2000);
        sqlite3_stmt *st = NULL;
        bool found = false;
        if (sqlite3_prepare_v2(db, "SELECT token FROM email_token WHERE purpose='plc_operation' AND did=?1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, did, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
                snprintf(tok, size, "%s", (const char *)sqlite3_column_text(st, 0));
                found = true;
            }
        } else {
            err_set(e, ERR_IO, "%s has no email_token table: is it the PDS's account.sqlite? (%s)", db_path, sqlite3_errmsg(db));
            sqlite3_close(db);
            return ERR_IO;
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (found) return ERR_OK;
        if (waited < wait_s) sleep(1);
    }
    return err_set(e, ERR_NOT_FOUND, "no PLC token for %s appeared in %s within %d s", did, db_path, wait_s);
}

void plc_token_note_file(plc_token_source *src) {
    src->file_before_valid = src->token_file && stat(src->token_file, &src->file_before) == 0;
}

/* Written since the request: changed from what was there before, or new and recent. */
static bool rewritten(const plc_token_source *src, const struct stat *st) {
    if (!src->file_before_valid) return st->st_mtime >= src->requested_at - 1;
    const struct stat *b = &src->file_before;
    return st->st_ino != b->st_ino || st->st_size != b->st_size || st->st_mtim.tv_sec != b->st_mtim.tv_sec ||
           st->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

err_code plc_token_from_file(const plc_token_source *src, char *tok, size_t size, err_t *e) {
    int wait_s = src->file_wait_s > 0 ? src->file_wait_s : PLC_TOKEN_FILE_WAIT_S;
    bool told = false;
    for (int waited = 0; waited <= wait_s; waited++) {
        struct stat st;
        if (stat(src->token_file, &st) == 0 && rewritten(src, &st)) {
            FILE *f = fopen(src->token_file, "r");
            if (!f) return err_set(e, ERR_IO, "cannot read %s: %s", src->token_file, strerror(errno));
            err_code rc = secure_check_private_fd(fileno(f), src->token_file, "token file", e);
            if (rc) {
                fclose(f);
                return rc;
            }
            char line[128] = "";
            if (!fgets(line, sizeof line, f)) line[0] = 0;
            fclose(f);
            line[strcspn(line, "\r\n \t")] = 0;
            snprintf(tok, size, "%s", line);
            explicit_bzero(line, sizeof line);
            if (tok[0]) return ERR_OK;
        }
        if (!told && src->info) {
            char msg[1200];
            snprintf(msg, sizeof msg, "waiting for the emailed token to be written to %s (up to %d minutes; readable only by "
                                      "you, e.g. `(umask 077; echo TOKEN > %s)`)", src->token_file, (wait_s + 59) / 60, src->token_file);
            src->info(src->ctx, msg);
        }
        told = true;
        if (waited < wait_s) sleep(1);
    }
    return err_set(e, ERR_NOT_FOUND, "no new token was written to %s within %d minutes", src->token_file, (wait_s + 59) / 60);
}

err_code plc_token_obtain(const plc_token_source *src, char *tok, size_t size, err_t *e) {
    err_code rc;
    tok[0] = 0;
    if (src->token_db)
        rc = plc_token_from_db(src->token_db, src->did, src->db_wait_s > 0 ? src->db_wait_s : PLC_TOKEN_DB_WAIT_S,
                               src->pds_label, tok, size, e);
    else if (src->token_file) rc = plc_token_from_file(src, tok, size, e);
    else if (src->ask_secret && src->ask_secret(src->ctx, "Token from the email (XXXXX-XXXXX): ", tok, size)) rc = ERR_OK;
    else rc = err_set(e, ERR_USAGE, "no way to read the emailed token: give --plc-token-file FILE, --plc-token-from-db PATH, or run in a terminal");
    if (rc) {
        explicit_bzero(tok, size);
        return rc;
    }
    tok[strcspn(tok, "\r\n \t")] = 0;
    if (!plc_token_shape_ok(tok)) {
        explicit_bzero(tok, size);
        return err_set(e, ERR_USAGE, "that does not look like the emailed token (expected XXXXX-XXXXX); run the same command again");
    }
    return ERR_OK;
}

err_code plc_audit_get(const char *plc_url, const char *did, const xrpc_options *xo, json_t **log_out, err_t *e) {
    *log_out = NULL;
    xrpc_client *c = xrpc_client_new(plc_url ? plc_url : IDENTITY_DEFAULT_PLC, xo, e);
    if (!c) return e->code;
    char path[300];
    snprintf(path, sizeof path, "/%s/log/audit", did);
    err_code rc = xrpc_get_json(c, path, log_out, e);
    xrpc_client_free(c);
    if (rc) return err_wrap(e, "reading the PLC audit log of %s", did);
    return ERR_OK;
}

err_code plc_audit_fetch(const char *plc_url, const char *did, const xrpc_options *xo, plc_state *st, json_t **log_out,
                         err_t *e) {
    json_t *log = NULL;
    plc_state_init(st);
    if (log_out) *log_out = NULL;
    err_code rc = plc_audit_get(plc_url, did, xo, &log, e);
    if (rc) return rc;
    size_t bad;
    rc = plc_log_validate(log, did, st, &bad, e);
    if (rc) {
        json_decref(log);
        return err_wrap(e, "the PLC directory's audit log of %s does not validate", did);
    }
    if (log_out) *log_out = log;
    else json_decref(log);
    return ERR_OK;
}

err_code plc_token_sign_op(pds_session *s, const char *pds_name, const plc_op *target, const char *tok, json_t **signed_op,
                           err_t *e) {
    json_t *full = plc_op_to_json(target, e);
    if (!full) return e->code;
    json_t *body = json_pack("{s:s, s:O, s:O, s:O, s:O}", "token", tok, "rotationKeys", json_object_get(full, "rotationKeys"),
                             "alsoKnownAs", json_object_get(full, "alsoKnownAs"), "verificationMethods",
                             json_object_get(full, "verificationMethods"), "services", json_object_get(full, "services"));
    json_decref(full);
    if (!body) return err_set(e, ERR_NOMEM, "out of memory building the request");
    json_t *out = NULL;
    err_code rc = pds_procedure(s, "com.atproto.identity.signPlcOperation", body, &out, e);
    json_decref(body); /* jansson copied the token into body: it is gone with it */
    if (rc) {
        if (strstr(e->msg, "InvalidToken") || strstr(e->msg, "ExpiredToken"))
            err_wrap(e, "%s refused the token (wrong or expired); run the same command again for a new one", pds_name);
        return rc;
    }
    json_t *op = json_object_get(out, "operation");
    if (!json_is_object(op)) {
        json_decref(out);
        return err_set(e, ERR_REMOTE, "signPlcOperation returned no operation");
    }
    *signed_op = json_incref(op);
    json_decref(out);
    return ERR_OK;
}
