/* restore.c — disaster restore (see restore.h): assemble → two PLC operations around
 * createAccount → import → blobs → preferences → activate → verify. Must happen once: each PLC
 * operation is saved in the journal before it is posted, and a re-run first reads the DID's
 * audit log to see which of them already took effect. The temporary signing key lives in the
 * work directory (mode 0600), never in the journal. */
#include "pdsmove/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/blob_transfer.h"
#include "pdsmove/codec.h"
#include "pdsmove/identity.h"
#include "pdsmove/pds.h"
#include "pdsmove/plc.h"
#include "pdsmove/plc_custody.h"
#include "pdsmove/plc_submit.h"
#include "pdsmove/plc_token.h"
#include "pdsmove/repo.h"
#include "pdsmove/secure.h"
#include "pdsmove/snapshot.h"
#include "pdsmove/syntax.h"

typedef struct {
    const restore_opts *o;
    restore_report *rep;
    journal_run run;
    backup_snapshot snap;
    char work[1024], snapdir[1100], car[1200], blob_dir[1200], temp_key_path[1200];
    char did[256];
    char service_did[256], domain[256], handle[256];
    key_priv user_key;
    char user_did_key[KEY_DID_MAX];
    key_priv temp_key;
    char temp_did_key[KEY_DID_MAX];
    pds_session *neu;
    uint64_t upload_limit; /* the new PDS's blobUploadLimit (describeServer), 0 if it publishes none */
} rctx;

static void rinfo(rctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rinfo(rctx *r, const char *fmt, ...) {
    if (!r->o->ui.info) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->o->ui.info(r->o->ui.ctx, "%s", line);
}

static bool begin(rctx *r, const char *step) {
    char detail[512];
    journal_step_status st;
    if (journal_step_get(r->o->j, r->run.id, step, &st, detail, sizeof detail, NULL) == ERR_OK && st == STEP_DONE) {
        if (r->o->ui.step) r->o->ui.step(r->o->ui.ctx, step, STEP_DONE, detail[0] ? detail : "already done");
        return false;
    }
    journal_step_set(r->o->j, r->run.id, step, STEP_RUNNING, NULL, NULL);
    if (r->o->ui.step) r->o->ui.step(r->o->ui.ctx, step, STEP_RUNNING, NULL);
    return true;
}

static err_code end(rctx *r, const char *step, err_code rc, const char *detail, err_t *e) {
    if (rc) {
        journal_step_set(r->o->j, r->run.id, step, STEP_FAILED, e ? e->msg : "", NULL);
        if (r->o->ui.step) r->o->ui.step(r->o->ui.ctx, step, STEP_FAILED, e ? e->msg : "");
        return rc;
    }
    rc = journal_step_set(r->o->j, r->run.id, step, STEP_DONE, detail, e);
    if (!rc && r->o->ui.step) r->o->ui.step(r->o->ui.ctx, step, STEP_DONE, detail);
    return rc;
}

static xrpc_options xo(const rctx *r) {
    return (xrpc_options){.allow_insecure_http = r->o->allow_insecure_http, .on_wait = r->o->ui.wait, .wait_ctx = r->o->ui.ctx,
                          .wait_for_limits = r->o->wait_for_limits, .on_limit_wait = r->o->ui.limit_wait};
}

/* for a client of the new PDS: with its rate-limit bypass key, if given */
static xrpc_options xo_new(const rctx *r) {
    xrpc_options x = xo(r);
    x.ratelimit_bypass_key = r->o->new_pds_bypass_key;
    return x;
}

static const char *plc(const rctx *r) { return r->o->plc_url ? r->o->plc_url : IDENTITY_DEFAULT_PLC; }

/* ---- JWT ---- */

err_code restore_service_auth_jwt(const key_priv *k, const char *iss, const char *aud, const char *lxm, long ttl_s, char *out,
                                  size_t out_size, err_t *e) {
    uint8_t nonce[16];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) return err_set(e, ERR_IO, "no randomness for the token");
    char jti[40];
    hex_encode(nonce, sizeof nonce, jti, sizeof jti);
    long now = (long)time(NULL);
    json_t *hdr = json_pack("{s:s, s:s}", "typ", "JWT", "alg", k->type == KEY_K256 ? "ES256K" : "ES256");
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", iss, "aud", aud, "lxm", lxm, "iat", (json_int_t)now,
                               "exp", (json_int_t)(now + ttl_s), "jti", jti);
    char *h = json_dumps(hdr, JSON_COMPACT), *c = json_dumps(claims, JSON_COMPACT);
    json_decref(hdr);
    json_decref(claims);
    err_code rc = ERR_OK;
    if (!h || !c) rc = err_set(e, ERR_NOMEM, "out of memory");
    size_t n = 0;
    if (!rc) {
        size_t hl = base64url_encode((const uint8_t *)h, strlen(h), out, out_size);
        if (!hl || hl + 2 >= out_size) rc = err_set(e, ERR_LIMIT, "token too long");
        else {
            out[hl] = '.';
            size_t cl = base64url_encode((const uint8_t *)c, strlen(c), out + hl + 1, out_size - hl - 1);
            if (!cl) rc = err_set(e, ERR_LIMIT, "token too long");
            n = hl + 1 + cl;
        }
    }
    uint8_t sig[KEY_SIG_BYTES];
    if (!rc) rc = key_sign(k, (const uint8_t *)out, n, sig, e);
    if (!rc) {
        if (n + 2 >= out_size) return err_set(e, ERR_LIMIT, "token too long");
        out[n] = '.';
        if (!base64url_encode(sig, sizeof sig, out + n + 1, out_size - n - 1)) rc = err_set(e, ERR_LIMIT, "token too long");
    }
    free(h);
    free(c);
    return rc;
}

/* ---- the DID's state ---- */

static err_code live_state(rctx *r, plc_state *st, err_t *e) {
    xrpc_options x = xo(r);
    err_code rc = plc_audit_fetch(plc(r), r->did, &x, st, NULL, e);
    if (rc) return rc;
    if (st->tombstoned) {
        plc_state_free(st);
        return err_set(e, ERR_CONFLICT, "%s is tombstoned in the PLC directory: it cannot be restored", r->did);
    }
    return ERR_OK;
}

static bool has_rotation_key(const plc_op *op, const char *k) {
    for (size_t i = 0; i < op->n_rotation_keys; i++)
        if (!strcmp(op->rotation_keys[i], k)) return true;
    return false;
}

/* Signs target (built on st) with the user's key, checks it, journals it under key, posts it. */
static err_code post_op(rctx *r, const plc_op *target, const plc_state *st, const char *key, err_t *e) {
    json_t *j = NULL;
    err_code rc = plc_submit_sign(target, &r->user_key, &j, e);
    if (!rc) rc = plc_submit_check(j, target, &st->op, NULL, NULL, e);
    if (!rc) rc = plc_submit_save(r->o->j, r->run.id, key, j, e);
    err_t we; /* noted before it exists, so a `pdsmove plc watch` never sees it as foreign */
    if (!rc && plc_watch_expect_op(r->o->watch_state, r->did, j, &we) != ERR_OK && we.code != ERR_NOT_FOUND)
        rinfo(r, "warning: could not note the operation for `pdsmove plc watch`: %s", we.msg);
    xrpc_options x = xo(r);
    plc_submit_to to = {.did = r->did, .plc_url = plc(r), .xo = &x};
    if (!rc) rc = plc_submit_post(&to, j, target, &st->op, e);
    json_decref(j);
    return rc;
}

/* ---- steps ---- */

static err_code step_assemble(rctx *r, err_t *e) {
    const char *step = "assemble";
    struct stat st;
    char v[BACKUP_ID_MAX];
    if (!begin(r, step) && stat(r->car, &st) == 0) {
        if (journal_kv_get(r->o->j, r->run.id, "snapshot_id", v, sizeof v, NULL) == ERR_OK)
            snprintf(r->snap.id, sizeof r->snap.id, "%s", v);
        return ERR_OK;
    }
    err_code rc = backup_assemble(r->o->dir, r->o->snapshot_id, r->did, r->snapdir, &r->snap, e);
    if (!rc) rc = journal_kv_set(r->o->j, r->run.id, "snapshot_id", r->snap.id, e);
    char detail[400];
    snprintf(detail, sizeof detail, "snapshot %s (rev %s) assembled from the backup", r->snap.id, r->snap.rev);
    return end(r, step, rc, detail, e);
}

/* Refuses a snapshot with a blob over the new PDS's published upload limit, before anything
 * is changed (each file of the assembled blob dir is one blob, named by its CID). */
static err_code check_blob_limit(const rctx *r, err_t *e) {
    if (!r->upload_limit) return ERR_OK;
    DIR *d = opendir(r->blob_dir);
    if (!d) return errno == ENOENT ? ERR_OK : err_set(e, ERR_IO, "cannot read %s: %s", r->blob_dir, strerror(errno));
    unsigned long long n = 0;
    char first[400] = "";
    struct dirent *de;
    struct stat st;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size > r->upload_limit && !n++)
            snprintf(first, sizeof first, "%.200s (%lld bytes)", de->d_name, (long long)st.st_size);
    closedir(d);
    if (!n) return ERR_OK;
    return err_set(e, ERR_LIMIT, "%llu blob(s) of the snapshot are larger than the new PDS accepts (%llu bytes, its "
                                 "blobUploadLimit), e.g. %s: its operator must raise PDS_BLOB_UPLOAD_LIMIT, or restore onto "
                                 "another PDS; nothing was changed yet", n, (unsigned long long)r->upload_limit, first);
}

/* The key of an earlier run, if there is one; never through a symlink, never one others can
 * read. write_temp_key makes the file appear whole or not at all, so one without a key was
 * put there by someone else: refused, not replaced. */
static err_code read_temp_key(rctx *r, char *line, size_t size, bool *found, err_t *e) {
    *found = false;
    int fd = open(r->temp_key_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) return ERR_OK;
    if (fd < 0) return err_set(e, ERR_IO, "cannot read the temporary key %s: %s", r->temp_key_path, strerror(errno));
    err_code rc = secure_check_private_fd(fd, r->temp_key_path, "temporary key", e);
    FILE *f = rc ? NULL : fdopen(fd, "r");
    if (!rc && !f) rc = err_set(e, ERR_IO, "cannot read the temporary key %s: %s", r->temp_key_path, strerror(errno));
    if (!f) {
        close(fd);
        return rc;
    }
    setvbuf(f, NULL, _IONBF, 0);
    bool ok = fgets(line, (int)size, f) != NULL;
    fclose(f);
    line[strcspn(line, "\n")] = 0;
    if (!ok || key_priv_from_multikey(&r->temp_key, line, e) != ERR_OK)
        return err_set(e, ERR_INVALID, "%s holds no temporary key; if no restore of this account is under way, remove it and run again",
                       r->temp_key_path);
    *found = true;
    return ERR_OK;
}

/* A new file, created exclusively (no symlink followed, no file replaced) with mode 0600 from
 * the start, then renamed into place. */
static err_code write_temp_key(rctx *r, const char *line, err_t *e) {
    char tmp[sizeof r->temp_key_path + 8];
    snprintf(tmp, sizeof tmp, "%s.new", r->temp_key_path);
    if (unlink(tmp) != 0 && errno != ENOENT) return err_set(e, ERR_IO, "cannot remove %s: %s", tmp, strerror(errno));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    size_t len = strlen(line);
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, line, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) ok = false, saved = errno;
    if (ok && rename(tmp, r->temp_key_path) != 0) ok = false, saved = errno;
    if (!ok) {
        if (fd >= 0) unlink(tmp);
        return err_set(e, ERR_IO, "cannot write the temporary key %s: %s", r->temp_key_path, strerror(saved));
    }
    return ERR_OK;
}

static err_code load_temp_key(rctx *r, err_t *e) {
    char line[256] = "";
    bool found = false;
    err_code rc = read_temp_key(r, line, sizeof line, &found, e);
    if (!rc && !found) {
        rc = key_priv_generate(&r->temp_key, KEY_K256, e);
        if (!rc) key_priv_to_multikey(&r->temp_key, line, sizeof line);
        if (!rc) rc = write_temp_key(r, line, e);
    }
    explicit_bzero(line, sizeof line);
    if (rc) {
        key_priv_wipe(&r->temp_key);
        return rc;
    }
    key_pub_to_did_key(&r->temp_key.pub, r->temp_did_key, sizeof r->temp_did_key);
    return ERR_OK;
}

static err_code step_identity_temporary(rctx *r, err_t *e) {
    const char *step = "identity-1";
    if (!begin(r, step)) return ERR_OK;
    plc_state st;
    err_code rc = live_state(r, &st, e);
    if (rc) return end(r, step, rc, NULL, e);
    const plc_service *s = plc_op_service(&st.op, "atproto_pds");
    const char *cur = plc_op_vmethod(&st.op, "atproto");
    if (s && cur && !strcmp(s->endpoint, r->o->to_url) && !strcmp(cur, r->temp_did_key)) {
        plc_state_free(&st);
        return end(r, step, ERR_OK, "the DID already points at the new PDS with the temporary key", e);
    }
    if (!has_rotation_key(&st.op, r->user_did_key)) {
        plc_state_free(&st);
        rc = err_set(e, ERR_USAGE, "the key in %s (%s) is not one of %s's rotation keys: it cannot move the identity",
                     r->o->rotation_key_file, r->user_did_key, r->did);
        return end(r, step, rc, NULL, e);
    }
    plc_op op;
    plc_change c = {.signing_key = r->temp_did_key, .pds_endpoint = r->o->to_url};
    rc = plc_submit_build(&st.op, st.last_cid, &c, r->did, &op, e);
    if (!rc) rc = post_op(r, &op, &st, "plc_op1", e);
    plc_op_free(&op);
    plc_state_free(&st);
    return end(r, step, rc, "the DID points at the new PDS (temporary signing key)", e);
}

static err_code step_create_account(rctx *r, bool invite_required, err_t *e) {
    const char *step = "create-account";
    xrpc_options x = xo_new(r);
    err_code rc = pds_session_new(r->o->to_url, &x, &r->neu, e);
    if (rc) return rc;
    err_t probe;
    if (!begin(r, step)) return pds_login(r->neu, r->did, r->o->new_password, NULL, e);
    if (pds_login(r->neu, r->did, r->o->new_password, NULL, &probe) == ERR_OK)
        return end(r, step, ERR_OK, "the account already existed (earlier run)", e);
    char invite[128] = "", token[2048];
    if (r->o->invite_code) snprintf(invite, sizeof invite, "%s", r->o->invite_code);
    else if (invite_required && (rc = pds_mint_invite(r->o->to_url, r->o->admin_password, &x, invite, sizeof invite, e)))
        return end(r, step, rc, NULL, e);
    rc = restore_service_auth_jwt(&r->temp_key, r->did, r->service_did, "com.atproto.server.createAccount", 300, token,
                                  sizeof token, e);
    if (rc) return end(r, step, rc, NULL, e);
    xrpc_client *c = xrpc_client_new(r->o->to_url, &x, e);
    if (!c) return end(r, step, e->code, NULL, e);
    xrpc_set_bearer(c, token, NULL);
    explicit_bzero(token, sizeof token);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "did", r->did, "handle", r->handle, "email", r->o->new_email, "password",
                             r->o->new_password);
    if (invite[0]) json_object_set_new(body, "inviteCode", json_string(invite));
    json_t *out = NULL;
    rc = xrpc_procedure(c, "com.atproto.server.createAccount", body, &out, e);
    bool exists = rc && !strcmp(xrpc_last_error_name(c), "AlreadyExists");
    json_decref(body);
    xrpc_client_free(c);
    if (exists) {
        /* an earlier, killed run got this far; the server may still be finishing it */
        json_decref(out);
        for (int i = 0; i < 10; i++) {
            if ((rc = pds_login(r->neu, r->did, r->o->new_password, NULL, e)) == ERR_OK)
                return end(r, step, ERR_OK, "the account already existed (earlier run)", e);
            sleep(1);
        }
        err_wrap(e, "the account exists on the new PDS but the given password does not open it");
        return end(r, step, rc, NULL, e);
    }
    if (rc) {
        json_decref(out);
        err_wrap(e, "creating the account on the new PDS");
        return end(r, step, rc, NULL, e);
    }
    rc = pds_adopt_tokens(r->neu, r->did, json_string_value(json_object_get(out, "accessJwt")),
                          json_string_value(json_object_get(out, "refreshJwt")), e);
    json_decref(out);
    char detail[300];
    snprintf(detail, sizeof detail, "created %s on %s", r->handle, r->o->to_url);
    return end(r, step, rc, detail, e);
}

static err_code step_identity_final(rctx *r, err_t *e) {
    const char *step = "identity-2";
    if (!begin(r, step)) return ERR_OK;
    json_t *rec = NULL;
    err_code rc = pds_query(r->neu, "com.atproto.identity.getRecommendedDidCredentials", NULL, &rec, e);
    if (rc) return end(r, step, rc, NULL, e);
    /* rotation keys: the user's first, then the other current ones, then the new PDS's */
    const char *first[1] = {r->user_did_key}, *last[PLC_MAX_LIST];
    plc_change c;
    plc_state st;
    rc = plc_change_recommended(rec, last, &c, e);
    if (!rc) rc = live_state(r, &st, e);
    if (rc) {
        json_decref(rec);
        return end(r, step, rc, NULL, e);
    }
    const char *cur = plc_op_vmethod(&st.op, "atproto");
    if (cur && !strcmp(cur, c.signing_key)) {
        plc_state_free(&st);
        json_decref(rec);
        return end(r, step, ERR_OK, "the new PDS's credentials are already installed", e);
    }
    c.first_keys = first;
    c.n_first_keys = 1;
    c.handle = r->handle;
    plc_op op;
    rc = plc_submit_build(&st.op, st.last_cid, &c, r->did, &op, e);
    if (!rc) rc = post_op(r, &op, &st, "plc_op2", e);
    plc_op_free(&op);
    plc_state_free(&st);
    json_decref(rec);
    return end(r, step, rc, "the new PDS's credentials are installed; your key stays first", e);
}

static err_code step_import(rctx *r, err_t *e) {
    const char *step = "import";
    if (!begin(r, step)) return ERR_OK;
    int fd = open(r->car, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return end(r, step, err_set(e, ERR_IO, "cannot open %s: %s", r->car, strerror(errno)), NULL, e);
    struct stat st;
    fstat(fd, &st);
    err_code rc = pds_procedure_from_fd(r->neu, "com.atproto.repo.importRepo", "application/vnd.ipld.car", fd, (uint64_t)st.st_size,
                                        NULL, e);
    close(fd);
    if (rc && xrpc_last_status(r->neu->c) == 413)
        err_set(e, ERR_LIMIT, "the new PDS refused the %.1f MiB repository (HTTP 413): raise its PDS_MAX_REPO_IMPORT_SIZE and run again",
                (double)st.st_size / 1048576.0);
    char detail[100];
    snprintf(detail, sizeof detail, "repository imported (%.1f MiB)", (double)st.st_size / 1048576.0);
    return end(r, step, rc, detail, e);
}

static err_code step_blobs(rctx *r, err_t *e) {
    const char *step = "blobs";
    if (!begin(r, step)) return ERR_OK;
    err_code lrc = blob_list_from_snapshot(r->o->j, r->run.id, r->snapdir, NULL, e);
    if (lrc) return end(r, step, lrc, NULL, e);
    blob_transfer t = {.phase = BLOB_PHASE_UPLOAD, .dst = r->neu, .did = r->did, .dir = r->blob_dir, .jobs = r->o->jobs,
                       .max_blob_bytes = r->upload_limit, .xo = xo(r), .j = r->o->j, .run_id = r->run.id};
    err_code rc = journal_blob_reset_attempts(r->o->j, r->run.id, e); /* a re-run retries what failed before */
    if (!rc) rc = blob_transfer_run(&t, e);
    if (rc == ERR_RATELIMIT) {
        /* a daily limit: `pdsmove status` says when it can go on (docs/journal.md); a note for
         * status, not a resume fact: a run that cannot write it still stops the same way */
        char v[32], msg[ERR_MSG_MAX];
        snprintf(v, sizeof v, "%lld", t.limit_reset_s);
        journal_kv_set(r->o->j, r->run.id, "limit_reset_at", v, NULL);
        snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
        err_set(e, ERR_RATELIMIT, "%s. Run the same command again after that and it continues where it stopped; or add "
                                  "--wait-for-limits to wait in place%s", msg, r->o->new_pds_bypass_key ? "" :
                                  "; or, if you run the new PDS, set PDS_RATE_LIMIT_BYPASS_KEY there and give it with "
                                  "--new-pds-ratelimit-bypass-key-file");
        return end(r, step, rc, NULL, e);
    }
    journal_blob_counts c;
    journal_blob_counts_get(r->o->j, r->run.id, &c, NULL);
    if (!rc && c.done < c.total)
        rc = err_set(e, ERR_REMOTE, "%lld of %lld blobs could not be uploaded (see `pdsmove status`); run again to retry",
                     (long long)(c.total - c.done), (long long)c.total);
    if (!rc) {
        json_t *out = NULL;
        xrpc_param p[] = {{"limit", "10"}, {NULL, NULL}};
        rc = pds_query(r->neu, "com.atproto.repo.listMissingBlobs", p, &out, e);
        if (!rc && json_array_size(json_object_get(out, "blobs")))
            rc = err_set(e, ERR_REMOTE, "the new PDS still misses blobs the records reference (first: %s)",
                         json_string_value(json_object_get(json_array_get(json_object_get(out, "blobs"), 0), "cid")));
        json_decref(out);
    }
    r->rep->blobs = c.done;
    char detail[120];
    snprintf(detail, sizeof detail, "%lld blobs uploaded, each hash-checked; none missing", (long long)c.done);
    return end(r, step, rc, detail, e);
}

static err_code step_preferences(rctx *r, err_t *e) {
    const char *step = "preferences";
    if (!begin(r, step)) return ERR_OK;
    json_t *prefs = NULL;
    if (snapshot_read_json(r->snapdir, "preferences.json", &prefs, NULL) != ERR_OK)
        return end(r, step, ERR_OK, "the snapshot has no preferences (backed up without a password)", e);
    json_t *body = json_pack("{s:O}", "preferences", json_object_get(prefs, "preferences"));
    err_code rc = pds_procedure(r->neu, "app.bsky.actor.putPreferences", body, NULL, e);
    json_decref(body);
    json_decref(prefs);
    return end(r, step, rc, "preferences restored", e);
}

static void activate_wait(void *ctx) { rinfo(ctx, "the new PDS does not see the updated DID document yet; waiting"); }

static err_code step_activate(rctx *r, err_t *e) {
    const char *step = "activate";
    if (!begin(r, step)) return ERR_OK;
    err_code rc = pds_activate(r->neu, activate_wait, r, e);
    return end(r, step, rc, "the account is active on the new PDS", e);
}

static err_code step_verify(rctx *r, err_t *e) {
    const char *step = "verify";
    if (!begin(r, step)) return ERR_OK;
    char path[1200];
    snprintf(path, sizeof path, "%s/repo-new.car", r->work);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return end(r, step, err_set(e, ERR_IO, "cannot create %s", path), NULL, e);
    xrpc_param p[] = {{"did", r->did}, {NULL, NULL}};
    uint64_t bytes;
    err_code rc = pds_query_to_fd(r->neu, "com.atproto.sync.getRepo", p, fd, &bytes, e);
    repo_summary sum;
    if (!rc) rc = repo_verify_car(fd, NULL, 0, NULL, NULL, &sum, e);
    close(fd);
    unlink(path);
    char root[CID_STR_MAX];
    if (!rc) {
        cid_format(&sum.data, root, sizeof root);
        if (strcmp(root, r->snap.data_root))
            rc = err_set(e, ERR_MISMATCH, "the restored record tree (%s) differs from the snapshot's (%s)", root, r->snap.data_root);
    }
    identity_doc now;
    xrpc_options x = xo(r);
    if (!rc) rc = identity_resolve_did(r->did, r->o->plc_url, &x, &now, NULL, e);
    if (!rc && strcmp(now.pds, r->o->to_url) && strncmp(now.pds, r->o->to_url, strlen(now.pds)))
        rc = err_set(e, ERR_MISMATCH, "the DID document names %s, not %s", now.pds, r->o->to_url);
    r->rep->records = rc ? 0 : (long long)sum.records;
    char detail[300];
    snprintf(detail, sizeof detail, "%llu records, tree root identical to the snapshot; DID document points at the new PDS",
             rc ? 0ULL : (unsigned long long)sum.records);
    return end(r, step, rc, detail, e);
}

typedef struct {
    char did[256];
    bool several;
} only_did;

static bool note_did(void *ctx, const backup_snapshot *s) {
    only_did *o = ctx;
    if (!o->did[0]) snprintf(o->did, sizeof o->did, "%s", s->did);
    else if (strcmp(o->did, s->did)) o->several = true;
    return !o->several;
}

err_code restore_only_did(backup_index *idx, const char *dir, char *out, size_t size, err_t *e) {
    only_did o = {0};
    err_code rc = backup_index_each(idx, NULL, note_did, &o, e);
    if (rc) return rc;
    if (o.several)
        return err_set(e, ERR_USAGE, "the backup %s holds several accounts: give --did DID or --snapshot ID (`pdsmove verify %s` "
                                     "lists the snapshots)", dir, dir);
    if (!o.did[0]) return err_set(e, ERR_NOT_FOUND, "the backup %s holds no snapshot yet", dir);
    snprintf(out, size, "%s", o.did);
    return ERR_OK;
}

err_code restore_run(const restore_opts *o, restore_report *rep, err_t *e) {
    memset(rep, 0, sizeof *rep);
    rctx r = {.o = o, .rep = rep};
    err_code rc = ERR_OK;
    if (!o->rotation_key_file)
        return err_set(e, ERR_USAGE, "a disaster restore needs --rotation-key FILE (a key in the DID's rotation keys)");
    if (!o->new_email) return err_set(e, ERR_USAGE, "give --new-email: the snapshot does not hold the account's email");
    if ((rc = key_priv_load_file(&r.user_key, o->rotation_key_file, e))) return err_wrap(e, "reading %s", o->rotation_key_file);
    key_pub_to_did_key(&r.user_key.pub, r.user_did_key, sizeof r.user_did_key);
    /* which DID: from the snapshot */
    backup_index *idx = NULL;
    backup_snapshot s;
    if ((rc = backup_index_open_readonly(o->dir, &idx, e))) goto out;
    char only[256];
    rc = o->snapshot_id ? backup_index_get(idx, o->snapshot_id, &s, e)
         : o->did       ? backup_index_latest(idx, o->did, &s, e)
         : (rc = restore_only_did(idx, o->dir, only, sizeof only, e)) ? rc
                        : backup_index_latest(idx, only, &s, e);
    backup_index_close(idx);
    if (rc) goto out;
    snprintf(r.did, sizeof r.did, "%s", s.did);
    snprintf(rep->did, sizeof rep->did, "%s", s.did);
    snprintf(r.work, sizeof r.work, "%s", o->work_dir);
    snprintf(r.snapdir, sizeof r.snapdir, "%s/snapshot", r.work);
    snprintf(r.car, sizeof r.car, "%s/repo.car", r.snapdir);
    snprintf(r.blob_dir, sizeof r.blob_dir, "%s/blobs", r.snapdir);
    snprintf(r.temp_key_path, sizeof r.temp_key_path, "%s/temporary-signing.key", r.work);
    if (mkdir(r.work, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", r.work, strerror(errno));
        goto out;
    }
    /* the new PDS */
    xrpc_options x = xo_new(&r);
    xrpc_client *c = xrpc_client_new(o->to_url, &x, e);
    json_t *d = NULL;
    if (!c) {
        rc = e->code;
        goto out;
    }
    rc = xrpc_query(c, "com.atproto.server.describeServer", NULL, &d, e);
    bool limited = xrpc_last_ratelimit(c)->seen;
    xrpc_client_free(c);
    if (rc) goto out;
    if (limited && o->new_pds_bypass_key) {
        json_decref(d);
        rc = blob_bypass_refused(o->to_url, e);
        goto out;
    }
    if (limited) {
        char say[400];
        blob_upload_forecast(s.blobs_total, o->wait_for_limits, say, sizeof say);
        rinfo(&r, "%s", say);
    }
    const char *sdid = json_string_value(json_object_get(d, "did"));
    const char *dom = json_string_value(json_array_get(json_object_get(d, "availableUserDomains"), 0));
    snprintf(r.service_did, sizeof r.service_did, "%s", sdid ? sdid : "");
    snprintf(r.domain, sizeof r.domain, "%s", dom ? dom : "");
    bool invite_required = json_is_true(json_object_get(d, "inviteCodeRequired"));
    json_t *lim = json_object_get(d, "blobUploadLimit");
    if (json_is_integer(lim) && json_integer_value(lim) > 0) r.upload_limit = (uint64_t)json_integer_value(lim);
    json_decref(d);
    if (invite_required && !o->invite_code && !o->admin_password) {
        rc = err_set(e, ERR_USAGE, "the new PDS requires an invite code: give --invite-code or --new-pds-admin-password-file");
        goto out;
    }
    /* A finished restore of this snapshot (the same command again, or a run killed after it
     * finished but before its cleanup) is not done twice: that would post two more operations. */
    journal_run last;
    char last_snap[BACKUP_ID_MAX];
    if (journal_run_latest(o->j, "restore", r.did, &last, NULL) == ERR_OK && last.finished &&
        journal_kv_get(o->j, last.id, "snapshot_id", last_snap, sizeof last_snap, NULL) == ERR_OK && !strcmp(last_snap, s.id)) {
        rep->already_done = true;
        snprintf(rep->snapshot_id, sizeof rep->snapshot_id, "%s", s.id);
        journal_kv_get(o->j, last.id, "handle", rep->handle, sizeof rep->handle, NULL);
        snapshot_remove(r.snapdir, NULL);
        unlink(r.temp_key_path);
        rmdir(r.work);
        goto out;
    }
    if ((rc = journal_run_begin(o->j, "restore", r.did, &r.run, e))) goto out;
    if (r.run.resumed) rinfo(&r, "resuming the unfinished restore of %s", r.did);
    if ((rc = step_assemble(&r, e))) goto out;
    if (!journal_step_done(o->j, r.run.id, "identity-1") && (rc = check_blob_limit(&r, e))) goto out;
    char v[300];
    if (journal_kv_get(o->j, r.run.id, "handle", v, sizeof v, NULL) == ERR_OK) snprintf(r.handle, sizeof r.handle, "%s", v);
    else if (o->new_handle) snprintf(r.handle, sizeof r.handle, "%s", o->new_handle);
    else {
        /* <first label of the handle in the snapshot's DID document>.<new PDS domain> */
        char label[64] = "restored";
        json_t *doc = NULL;
        identity_doc id;
        if (snapshot_read_json(r.snapdir, "did-doc.json", &doc, NULL) == ERR_OK && identity_doc_parse(doc, r.did, &id, NULL) == ERR_OK &&
            id.handle[0])
            snprintf(label, sizeof label, "%.*s", (int)strcspn(id.handle, "."), id.handle);
        json_decref(doc);
        snprintf(r.handle, sizeof r.handle, "%s%s", label, r.domain);
    }
    if (!syntax_handle(r.handle, NULL)) {
        rc = err_set(e, ERR_USAGE, "'%s' is not a valid handle on the new PDS; give --new-handle", r.handle);
        goto out;
    }
    if ((rc = journal_kv_set(o->j, r.run.id, "handle", r.handle, e))) goto out;
    snprintf(rep->handle, sizeof rep->handle, "%s", r.handle);
    if ((rc = load_temp_key(&r, e))) goto out;
    snprintf(rep->snapshot_id, sizeof rep->snapshot_id, "%s", r.snap.id);
    if (!r.snap.data_root[0]) {
        backup_index *i2 = NULL;
        if (backup_index_open_readonly(o->dir, &i2, NULL) == ERR_OK) {
            backup_index_get(i2, r.snap.id, &r.snap, NULL);
            backup_index_close(i2);
        }
    }
    if (!o->yes && o->ui.confirm) {
        char text[600];
        snprintf(text, sizeof text, "Restore %s from snapshot %s onto %s as %s, moving its identity there with your rotation key %s?",
                 r.did, r.snap.id, o->to_url, r.handle, r.user_did_key);
        if (!journal_step_done(o->j, r.run.id, "identity-1") && !o->ui.confirm(o->ui.ctx, text)) {
            rc = err_set(e, ERR_CONFLICT, "stopped before the identity change, as asked; run the same command again to continue");
            goto out;
        }
    }
    if ((rc = step_identity_temporary(&r, e))) goto out;
    if ((rc = step_create_account(&r, invite_required, e))) goto out;
    if ((rc = step_identity_final(&r, e))) goto out;
    if ((rc = step_import(&r, e))) goto out;
    if ((rc = step_blobs(&r, e))) goto out;
    if ((rc = step_preferences(&r, e))) goto out;
    if ((rc = step_activate(&r, e))) goto out;
    if ((rc = step_verify(&r, e))) goto out;
    /* a rate limit stopped an earlier run: status no longer says to wait (written only then, as
     * in migrate: a run that never met a limit makes no such write) */
    char was[32] = "";
    if (journal_kv_get(o->j, r.run.id, "limit_reset_at", was, sizeof was, NULL) == ERR_OK && was[0])
        journal_kv_set(o->j, r.run.id, "limit_reset_at", "", NULL);
    rc = journal_run_finish(o->j, r.run.id, e);
    if (!rc) {
        snapshot_remove(r.snapdir, NULL);
        unlink(r.temp_key_path); /* no longer in the DID document: worthless now */
        rmdir(r.work);
    }
out:
    key_priv_wipe(&r.user_key);
    key_priv_wipe(&r.temp_key);
    pds_session_free(r.neu);
    return rc;
}
