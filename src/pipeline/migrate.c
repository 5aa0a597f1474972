/* migrate.c — the migrate pipeline (see migrate.h): the step list and the steps that talk to
 * the two PDSes. The blob loop lives in blob_transfer.c, the PLC step in identity_update.c.
 * Invariant: a step is marked done in the journal only after its effect is confirmed, and
 * anything that must happen once is preceded by a check of the remote state. */
#include "pdsmove/migrate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "migrate_internal.h"
#include "pdsmove/identity.h"
#include "pdsmove/backup.h"
#include "pdsmove/blob_transfer.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"
#include "pdsmove/syntax.h"

#define MIN_FREE_BYTES ((unsigned long long)64 << 20)

/* ---- small helpers shared by the migrate files ---- */

void mig_info(mctx *m, const char *fmt, ...) {
    if (!m->o->ui.info) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    m->o->ui.info(m->o->ui.ctx, "%s", line);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Step timers, for the durations in the step lines and the report. */
static double *timer_slot(mctx *m, const char *step) {
    for (size_t i = 0; i < m->n_timers; i++)
        if (!strcmp(m->timers[i].step, step)) return &m->timers[i].started;
    if (m->n_timers == MIG_MAX_TIMERS) return NULL;
    snprintf(m->timers[m->n_timers].step, sizeof m->timers[0].step, "%s", step);
    return &m->timers[m->n_timers++].started;
}

static void ui_step(mctx *m, const char *step, journal_step_status st, const char *detail) {
    double *t = timer_slot(m, step);
    char with_time[700];
    if (t && st == STEP_RUNNING) *t = now_s();
    if (t && *t > 0 && (st == STEP_DONE || st == STEP_FAILED) && detail) {
        snprintf(with_time, sizeof with_time, "%s [%.1f s]", detail, now_s() - *t);
        detail = with_time;
    }
    if (m->o->ui.step) m->o->ui.step(m->o->ui.ctx, step, st, detail);
}

err_code mig_step_done(mctx *m, const char *step, const char *detail, err_t *e) {
    err_code rc = journal_step_set(m->o->j, m->run.id, step, STEP_DONE, detail, e);
    if (!rc) ui_step(m, step, STEP_DONE, detail);
    return rc;
}

err_code mig_step_failed(mctx *m, const char *step, err_t *e) {
    journal_step_set(m->o->j, m->run.id, step, STEP_FAILED, e->msg, NULL);
    ui_step(m, step, STEP_FAILED, e->msg);
    return e->code;
}

/* True (and tells the UI) when the journal says step is already done. */
bool mig_skip_done(mctx *m, const char *step) {
    char detail[512];
    journal_step_status st;
    if (journal_step_get(m->o->j, m->run.id, step, &st, detail, sizeof detail, NULL) == ERR_OK && st == STEP_DONE) {
        ui_step(m, step, STEP_DONE, detail[0] ? detail : "already done");
        return true;
    }
    journal_step_set(m->o->j, m->run.id, step, STEP_RUNNING, NULL, NULL);
    ui_step(m, step, STEP_RUNNING, NULL);
    return false;
}

xrpc_options mig_xrpc_options(const mctx *m) {
    xrpc_options x = {.allow_insecure_http = m->o->allow_insecure_http, .on_wait = m->o->ui.wait, .wait_ctx = m->o->ui.ctx,
                      .wait_for_limits = m->o->wait_for_limits, .on_limit_wait = m->o->ui.limit_wait,
                      .max_download_bytes = m->o->max_repo_bytes};
    return x;
}

xrpc_options mig_xrpc_options_new(const mctx *m) {
    xrpc_options x = mig_xrpc_options(m);
    x.ratelimit_bypass_key = m->o->new_pds_bypass_key;
    return x;
}

/* ---- preflight ---- */

static err_code login_old(mctx *m, err_t *e) {
    const migrate_opts *o = m->o;
    xrpc_options xo = mig_xrpc_options(m);
    err_code rc = pds_session_new(m->old_url, &xo, &m->old, e);
    if (rc) return rc;
    rc = pds_login(m->old, m->id.did, o->password, o->auth_factor_token, e);
    if (rc && pds_needs_auth_factor(m->old) && !o->auth_factor_token && o->ui.ask_secret) {
        char code[128];
        if (o->ui.ask_secret(o->ui.ctx, "The old PDS emailed you a sign-in code (email 2FA). Code: ", code, sizeof code)) {
            journal_add_secret(o->j, code, NULL);
            rc = pds_login(m->old, m->id.did, o->password, code, e);
            explicit_bzero(code, sizeof code);
        }
    }
    if (rc) return err_wrap(e, "logging in to the old PDS %s", m->old_url);
    if (pds_is_app_password(m->old))
        return err_set(e, ERR_USAGE,
                       "the password given is an app password (token scope %s): moving an account needs the account's "
                       "real password, because app passwords cannot sign identity (PLC) operations", m->old->scope);
    return ERR_OK;
}

/* The old PDS's handle domain: a handle under it cannot move with the account. */
static void describe_old(mctx *m) {
    xrpc_options xo = mig_xrpc_options(m);
    xrpc_client *c = xrpc_client_new(m->old_url, &xo, NULL);
    json_t *d = NULL;
    if (c && xrpc_query(c, "com.atproto.server.describeServer", NULL, &d, NULL) == ERR_OK) {
        const char *dom = json_string_value(json_array_get(json_object_get(d, "availableUserDomains"), 0));
        snprintf(m->old_domain, sizeof m->old_domain, "%s", dom ? dom : "");
    }
    json_decref(d);
    xrpc_client_free(c);
}

static bool under_domain(const char *handle, const char *domain) {
    size_t hl = strlen(handle), dl = strlen(domain);
    return dl && hl > dl && !strcmp(handle + hl - dl, domain);
}

static err_code describe_new(mctx *m, err_t *e) {
    xrpc_options xo = mig_xrpc_options_new(m);
    xrpc_client *c = xrpc_client_new(m->o->to_url, &xo, e);
    if (!c) return e->code;
    json_t *d = NULL;
    err_code rc = xrpc_query(c, "com.atproto.server.describeServer", NULL, &d, e);
    m->new_rl = *xrpc_last_ratelimit(c);
    xrpc_client_free(c);
    if (rc) return err_wrap(e, "asking the new PDS %s to describe itself", m->o->to_url);
    const char *did = json_string_value(json_object_get(d, "did"));
    if (!did || !syntax_did(did, NULL)) {
        json_decref(d);
        return err_set(e, ERR_REMOTE, "the new PDS's describeServer has no valid service DID");
    }
    snprintf(m->new_service_did, sizeof m->new_service_did, "%s", did);
    m->invite_required = json_is_true(json_object_get(d, "inviteCodeRequired"));
    m->phone_required = json_is_true(json_object_get(d, "phoneVerificationRequired"));
    json_t *lim = json_object_get(d, "blobUploadLimit");
    if (json_is_integer(lim) && json_integer_value(lim) > 0) m->upload_limit = (uint64_t)json_integer_value(lim);
    const char *dom = json_string_value(json_array_get(json_object_get(d, "availableUserDomains"), 0));
    snprintf(m->new_domain, sizeof m->new_domain, "%s", dom ? dom : "");
    json_decref(d);
    return ERR_OK;
}

/* What the new PDS's rate limits mean for this move, said before anything is copied: the
 * reference PDS sends RateLimit-* headers on every call its global limiter counts
 * (describeServer among them) unless the request carries its bypass key. */
static err_code check_new_limits(mctx *m, err_t *e) {
    const migrate_opts *o = m->o;
    if (!m->new_rl.seen) return ERR_OK;
    if (o->new_pds_bypass_key) return blob_bypass_refused(o->to_url, e);
    json_t *st = NULL;
    long long blobs = -1;
    if (m->old && pds_query(m->old, "com.atproto.server.checkAccountStatus", NULL, &st, NULL) == ERR_OK &&
        json_is_integer(json_object_get(st, "expectedBlobs")))
        blobs = (long long)json_integer_value(json_object_get(st, "expectedBlobs"));
    json_decref(st);
    journal_blob_counts c;
    if (m->resuming && journal_blob_counts_get(o->j, m->run.id, &c, NULL) == ERR_OK && c.total > 0)
        blobs = c.total - c.done; /* a re-run: only what is left to upload */
    char say[400];
    blob_upload_forecast(blobs, o->wait_for_limits, say, sizeof say);
    mig_info(m, "%s", say);
    return ERR_OK;
}

/* The handle the account is created with: the wanted one when it is under the new PDS's
 * domain, else <first label>.<domain> (updateHandle to the wanted one comes after activation).
 * Without --new-handle, a custom-domain handle is kept; one under the old PDS's domain cannot
 * be, so the account gets <first label> under the new PDS's domain. */
static void choose_handles(mctx *m) {
    const char *cur = m->id.handle;
    char label[64];
    size_t k = 0;
    for (const char *p = m->o->new_handle ? m->o->new_handle : cur; *p && *p != '.' && k + 1 < sizeof label; p++) label[k++] = *p;
    label[k] = 0;
    char derived[256];
    snprintf(derived, sizeof derived, "%s%s", label, m->new_domain[0] == '.' ? m->new_domain : "");
    if (m->o->new_handle) snprintf(m->wanted_handle, sizeof m->wanted_handle, "%s", m->o->new_handle);
    else if (under_domain(cur, m->old_domain) || !cur[0]) snprintf(m->wanted_handle, sizeof m->wanted_handle, "%s", derived);
    else snprintf(m->wanted_handle, sizeof m->wanted_handle, "%s", cur);
    if (under_domain(m->wanted_handle, m->new_domain)) snprintf(m->create_handle, sizeof m->create_handle, "%s", m->wanted_handle);
    else snprintf(m->create_handle, sizeof m->create_handle, "%s", derived);
}

/* An unfinished run of this account: what it learned before the move wins over what the DID
 * document says now (after the identity step it names the new PDS and key). */
static err_code load_prior(mctx *m, err_t *e) {
    journal *j = m->o->j;
    if (journal_run_find(j, "migrate", "account_arg", m->o->account, false, &m->run, NULL) != ERR_OK &&
        (strncmp(m->o->account, "did:", 4) || journal_run_find(j, "migrate", "did", m->o->account, false, &m->run, NULL) != ERR_OK))
        return ERR_OK;
    if (m->run.finished) {
        /* a finished move: the handle may no longer resolve, so go by the DID it moved */
        snprintf(m->done_did, sizeof m->done_did, "%s", m->run.subject);
        journal_kv_get(j, m->run.id, "new_pds", m->done_to, sizeof m->done_to, NULL);
        memset(&m->run, 0, sizeof m->run);
        return ERR_OK;
    }
    char v[JOURNAL_VALUE_MAX];
    struct { const char *key; char *dst; size_t size; } facts[] = {
        {"old_pds", m->old_url, sizeof m->old_url},
        {"wanted_handle", m->wanted_handle, sizeof m->wanted_handle},
        {"create_handle", m->create_handle, sizeof m->create_handle},
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        if (journal_kv_get(j, m->run.id, facts[i].key, v, sizeof v, NULL) != ERR_OK) return ERR_OK; /* too early to matter */
        snprintf(facts[i].dst, facts[i].size, "%s", v);
    }
    if (journal_kv_get(j, m->run.id, "old_signing_key", v, sizeof v, NULL) != ERR_OK ||
        key_pub_from_did_key(&m->old_signing_pub, v, e) != ERR_OK)
        return err_set(e, ERR_CONFLICT, "the journal's record of this migration lacks the old signing key; move the journal aside to start over");
    m->resuming = true;
    return ERR_OK;
}

/* getRepo of a fresh run starts as soon as the old PDS is known, in a thread of its own, so
 * the download overlaps the rest of preflight (the old PDS's login hashes the password: a
 * third of a second). Unauthenticated and without retries: if it fails for any reason (a
 * deactivated account, a 429, a dropped connection), the export step downloads as before.
 * A preflight that fails, or a dry run, cancels it. */
typedef struct prefetch_job_ {
    pthread_t th;
    atomic_bool cancel;
    char url[512];
    char did[256];
    char path[1100];
    xrpc_options xo;
    err_code rc;
    err_t err;
    uint64_t bytes;
} prefetch_job;

static void *prefetch_thread(void *arg) {
    prefetch_job *p = arg;
    xrpc_client *c = xrpc_client_new(p->url, &p->xo, &p->err);
    if (!c) {
        p->rc = p->err.code;
        return NULL;
    }
    int fd = open(p->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        p->rc = err_set(&p->err, ERR_IO, "cannot create %s: %s", p->path, strerror(errno));
    } else {
        xrpc_param prm[] = {{"did", p->did}, {NULL, NULL}};
        p->rc = xrpc_query_to_fd(c, "com.atproto.sync.getRepo", prm, fd, &p->bytes, &p->err);
        if (p->rc == ERR_OK && fsync(fd) != 0) p->rc = err_set(&p->err, ERR_IO, "fsync %s: %s", p->path, strerror(errno));
        close(fd);
    }
    xrpc_client_free(c);
    return NULL;
}

static void prefetch_start(mctx *m) {
    prefetch_job *p = calloc(1, sizeof *p);
    if (!p) return;
    atomic_init(&p->cancel, false);
    snprintf(p->url, sizeof p->url, "%s", m->old_url);
    snprintf(p->did, sizeof p->did, "%s", m->id.did);
    snprintf(p->path, sizeof p->path, "%s/repo.car.prefetch", m->work);
    p->xo = mig_xrpc_options(m);
    p->xo.on_wait = NULL;  /* quiet, and no waiting: the export step retries properly */
    p->xo.max_retries = -1;
    p->xo.cancel = &p->cancel;
    if (pthread_create(&p->th, NULL, prefetch_thread, p) != 0) {
        free(p);
        return;
    }
    m->prefetch = p;
}

/* Ends the early download: waits for it and moves its file to `dest`, true when it
 * succeeded; with dest NULL, cancels it and removes its file. */
static bool prefetch_take(mctx *m, const char *dest, uint64_t *bytes) {
    prefetch_job *p = m->prefetch;
    if (!p) return false;
    m->prefetch = NULL;
    if (!dest) atomic_store(&p->cancel, true);
    pthread_join(p->th, NULL);
    bool ok = dest && p->rc == ERR_OK && rename(p->path, dest) == 0;
    if (ok) *bytes = p->bytes;
    else unlink(p->path);
    free(p);
    return ok;
}

static err_code preflight(mctx *m, err_t *e) {
    const migrate_opts *o = m->o;
    ui_step(m, "preflight", STEP_RUNNING, NULL);
    xrpc_options xo = mig_xrpc_options(m);
    err_code rc = load_prior(m, e);
    if (rc) return rc;
    if (m->resuming) rc = identity_resolve_did(m->run.subject, o->plc_url, &xo, &m->id, &m->doc, e);
    else if (m->done_did[0]) rc = identity_resolve_did(m->done_did, o->plc_url, &xo, &m->id, &m->doc, e);
    else rc = identity_resolve(o->account, o->plc_url, o->from_url, &xo, &m->id, &m->doc, e);
    if (rc) return err_wrap(e, "finding the account %s", o->account);
    if (!m->resuming) {
        snprintf(m->old_url, sizeof m->old_url, "%s", o->from_url ? o->from_url : m->id.pds);
        if (!m->old_url[0]) return err_set(e, ERR_REMOTE, "%s's DID document names no PDS; give --from URL", m->id.did);
        if (!m->id.has_signing_key) return err_set(e, ERR_REMOTE, "%s's DID document has no atproto signing key", m->id.did);
        m->old_signing_pub = m->id.signing_pub;
        size_t tl = strlen(o->to_url);
        while (tl && o->to_url[tl - 1] == '/') tl--;
        if ((!strncmp(m->old_url, o->to_url, tl) && m->old_url[tl] == 0) || (!strncmp(m->id.pds, o->to_url, tl) && m->id.pds[tl] == 0)) {
            size_t dl = strlen(m->done_to);
            while (dl && m->done_to[dl - 1] == '/') dl--;
            if (m->done_did[0] && !strcmp(m->done_did, m->id.did) && dl == tl && !strncmp(m->done_to, o->to_url, tl)) {
                /* the same command again after it finished: not an error */
                m->already_done = true;
                ui_step(m, "preflight", STEP_DONE, "an earlier run in the journal finished this move; nothing left to do");
                return ERR_OK;
            }
            return err_set(e, ERR_USAGE, "the account is already on %s (its DID document says so); nothing to do", o->to_url);
        }
    }
    mig_info(m, "account %s (%s) on %s%s", m->id.did, m->id.handle[0] ? m->id.handle : "no handle", m->old_url,
             m->resuming ? " (resuming the unfinished migration in the journal)" : "");

    /* disk space for the export */
    if (mkdir(m->work, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", m->work, strerror(errno));
    struct statvfs vfs;
    if (statvfs(m->work, &vfs) == 0) {
        unsigned long long free_bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        if (free_bytes < MIN_FREE_BYTES)
            return err_set(e, ERR_IO, "only %llu MiB free in %s: free some space (the repo CAR and blobs pass through it)",
                           free_bytes >> 20, m->work);
    }
    if (!m->resuming && !o->dry_run && !o->from_backup) prefetch_start(m);

    if ((rc = login_old(m, e))) return rc;
    if (!m->old->active) mig_info(m, "the old account is %s; reading it with authentication", m->old->status[0] ? m->old->status : "inactive");
    if ((rc = describe_new(m, e))) return rc;
    if ((rc = check_new_limits(m, e))) return rc;
    if (m->phone_required)
        return err_set(e, ERR_USAGE, "the new PDS requires phone verification, which pdsmove cannot answer; ask its operator for an invite that skips it");
    if (m->invite_required && !o->invite_code && !o->admin_password)
        return err_set(e, ERR_USAGE, "the new PDS requires an invite code: give --invite-code CODE (the operator runs "
                                     "`pdsadmin create-invite-code`) or --new-pds-admin-password-file FILE to mint one");
    if (!m->resuming) {
        describe_old(m);
        choose_handles(m);
    }
    if (!syntax_handle(m->create_handle, NULL))
        return err_set(e, ERR_USAGE, "cannot derive a handle on the new PDS from '%s' (server domain '%s'); give --new-handle",
                       m->wanted_handle, m->new_domain);
    snprintf(m->email, sizeof m->email, "%s", o->new_email ? o->new_email : m->old->email);
    if (!m->email[0]) return err_set(e, ERR_USAGE, "the old PDS did not tell the account's email; give --new-email");

    if (o->rotation_key_file) {
        rc = mig_check_rotation_key(m, e);
        if (rc) return rc;
    }
    if (o->from_backup) {
        /* the snapshot exists and is this account's (assembled only in the export step) */
        backup_index *idx = NULL;
        backup_snapshot bs;
        rc = backup_index_open_readonly(o->from_backup, &idx, e);
        if (!rc) rc = o->from_snapshot ? backup_index_get(idx, o->from_snapshot, &bs, e) : backup_index_latest(idx, m->id.did, &bs, e);
        backup_index_close(idx);
        if (rc) return err_wrap(e, "finding %s in the backup %s", o->from_snapshot ? o->from_snapshot : "a snapshot of the account",
                                o->from_backup);
        if (strcmp(bs.did, m->id.did))
            return err_set(e, ERR_USAGE, "snapshot %s is a backup of %s, not of %s", bs.id, bs.did, m->id.did);
    }
    char detail[1200];
    snprintf(detail, sizeof detail, "%s → %s as %s%s%s; identity via %s%s%s", m->old_url, o->to_url, m->create_handle,
             strcmp(m->create_handle, m->wanted_handle) ? ", then " : "",
             strcmp(m->create_handle, m->wanted_handle) ? m->wanted_handle : "",
             o->rotation_key_file ? "your rotation key" : "the old PDS's email token",
             o->from_backup ? "; data from the backup in " : "", o->from_backup ? o->from_backup : "");
    ui_step(m, "preflight", STEP_DONE, detail);
    return ERR_OK;
}

/* ---- create account ---- */

static err_code login_new(mctx *m, err_t *e) {
    xrpc_options xo = mig_xrpc_options_new(m);
    if (!m->neu) {
        err_code rc = pds_session_new(m->o->to_url, &xo, &m->neu, e);
        if (rc) return rc;
    }
    return pds_login(m->neu, m->id.did, m->o->new_password, NULL, e);
}

static err_code create_account(mctx *m, err_t *e) {
    const char *step = "create-account";
    journal_step_status before = STEP_PENDING;
    journal_step_get(m->o->j, m->run.id, step, &before, NULL, 0, NULL);
    if (mig_skip_done(m, step)) {
        err_code rc = login_new(m, e);
        return rc ? err_wrap(e, "logging in to the new account on %s", m->o->to_url) : ERR_OK;
    }
    /* An earlier run that reached this step may have created the account and died before
     * journaling it: then log in first (its invite code may be used up by now). A first
     * attempt goes straight to createAccount: a login costs the new PDS a password hash
     * (a third of a second), and an existing account is still found by AlreadyExists. */
    err_t probe;
    if (before != STEP_PENDING && login_new(m, &probe) == ERR_OK)
        return mig_step_done(m, step, "the account already existed (earlier run)", e);

    char invite[128] = "";
    if (m->o->invite_code) snprintf(invite, sizeof invite, "%s", m->o->invite_code);
    else if (m->invite_required) {
        xrpc_options xo = mig_xrpc_options_new(m);
        err_code rc = pds_mint_invite(m->o->to_url, m->o->admin_password, &xo, invite, sizeof invite, e);
        if (rc) return mig_step_failed(m, step, e);
    }
    char exp[32];
    snprintf(exp, sizeof exp, "%lld", (long long)time(NULL) + 600);
    xrpc_param p[] = {{"aud", m->new_service_did}, {"lxm", "com.atproto.server.createAccount"}, {"exp", exp}, {NULL, NULL}};
    json_t *sa = NULL;
    err_code rc = pds_query(m->old, "com.atproto.server.getServiceAuth", p, &sa, e);
    if (rc) {
        err_wrap(e, "getting a service-auth token from the old PDS");
        return mig_step_failed(m, step, e);
    }
    const char *token = json_string_value(json_object_get(sa, "token"));
    xrpc_options xo = mig_xrpc_options_new(m);
    xrpc_client *c = xrpc_client_new(m->o->to_url, &xo, e);
    if (!c || !token) {
        json_decref(sa);
        xrpc_client_free(c);
        if (!token) err_set(e, ERR_REMOTE, "getServiceAuth returned no token");
        return mig_step_failed(m, step, e);
    }
    xrpc_set_bearer(c, token, NULL);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "did", m->id.did, "handle", m->create_handle, "email", m->email,
                             "password", m->o->new_password);
    if (invite[0]) json_object_set_new(body, "inviteCode", json_string(invite));
    json_t *out = NULL;
    rc = xrpc_procedure(c, "com.atproto.server.createAccount", body, &out, e);
    const char *ename = xrpc_last_error_name(c);
    bool exists = rc && (!strcmp(ename, "AlreadyExists") || strstr(e->msg, "already exists"));
    json_decref(body);
    json_decref(sa);
    xrpc_client_free(c);
    if (rc && exists) {
        json_decref(out);
        /* an earlier, killed run created it; the server may still be finishing that request */
        for (int i = 0; i < 10 && (rc = login_new(m, e)) != ERR_OK; i++) sleep(1);
        if (rc) {
            err_wrap(e, "the account already exists on the new PDS but the new password does not open it");
            return mig_step_failed(m, step, e);
        }
        return mig_step_done(m, step, "the account already existed", e);
    }
    if (rc) {
        if (strstr(e->msg, "Handle already taken") || !strcmp(ename, "HandleNotAvailable"))
            err_wrap(e, "the handle %s is taken on the new PDS: choose another with --new-handle", m->create_handle);
        return mig_step_failed(m, step, e);
    }
    xrpc_options xo2 = mig_xrpc_options_new(m);
    if (!m->neu && (rc = pds_session_new(m->o->to_url, &xo2, &m->neu, e))) {
        json_decref(out);
        return rc;
    }
    rc = pds_adopt_tokens(m->neu, m->id.did, json_string_value(json_object_get(out, "accessJwt")),
                          json_string_value(json_object_get(out, "refreshJwt")), e);
    json_decref(out);
    if (rc) return mig_step_failed(m, step, e);
    char detail[400];
    snprintf(detail, sizeof detail, "created %s on %s (deactivated until the move completes)", m->create_handle, m->o->to_url);
    return mig_step_done(m, step, detail, e);
}

/* ---- export and import ---- */

typedef struct {
    FILE *f;
    uint64_t limit_bytes;     /* the new PDS's blob limit, 0 if unknown */
    uint64_t blob_refs, blob_ref_bytes, too_large;
    char first_too_large[400];
    char key[320];
} record_list;

static err_code check_blob_ref(void *ctx, const cid_t *cid, int64_t size, err_t *e) {
    (void)e;
    record_list *rl = ctx;
    rl->blob_refs++;
    if (size > 0) rl->blob_ref_bytes += (uint64_t)size;
    if (rl->limit_bytes && size > 0 && (uint64_t)size > rl->limit_bytes) {
        if (!rl->too_large++) {
            char cs[CID_STR_MAX];
            cid_format(cid, cs, sizeof cs);
            snprintf(rl->first_too_large, sizeof rl->first_too_large, "%s (%lld bytes, in %s)", cs, (long long)size, rl->key);
        }
    }
    return ERR_OK;
}

static err_code write_record(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data, size_t len,
                             err_t *e) {
    record_list *rl = ctx;
    char s[CID_STR_MAX];
    cid_format(cid, s, sizeof s);
    if (fprintf(rl->f, "%.*s\t%s\n", (int)key_len, key, s) < 0) return err_set(e, ERR_IO, "writing the record list: %s", strerror(errno));
    snprintf(rl->key, sizeof rl->key, "%.*s", (int)key_len, key);
    /* blob sizes as the records declare them: an oversized blob is found before anything moves */
    err_t ignore;
    repo_record_blob_refs(data, len, check_blob_ref, rl, &ignore);
    return ERR_OK;
}

static void blob_progress(void *ctx, const journal_blob_counts *c, const char *last);

/* The rest of the snapshot next to repo.car: DID document, PLC audit log, preferences, the
 * blob list (into the journal) and the manifest. */
static err_code snapshot_rest(mctx *m, const repo_summary *sum, int64_t *n_blobs, err_t *e) {
    err_code rc = m->doc ? snapshot_write_json(m->snap, "did-doc.json", m->doc, e) : ERR_OK;
    if (!rc && !strncmp(m->id.did, "did:plc:", 8)) {
        xrpc_options xo = mig_xrpc_options(m);
        xrpc_client *c = xrpc_client_new(m->o->plc_url ? m->o->plc_url : IDENTITY_DEFAULT_PLC, &xo, e);
        if (!c) return e->code;
        char path[300];
        snprintf(path, sizeof path, "/%s/log/audit", m->id.did);
        json_t *log = NULL;
        rc = xrpc_get_json(c, path, &log, e);
        xrpc_client_free(c);
        if (!rc) rc = snapshot_write_json(m->snap, "plc-audit-log.json", log, e);
        json_decref(log);
        if (rc) return err_wrap(e, "saving the PLC audit log");
    }
    if (!rc) {
        json_t *prefs = NULL;
        rc = pds_query(m->old, "app.bsky.actor.getPreferences", NULL, &prefs, e);
        if (!rc && !json_is_array(json_object_get(prefs, "preferences")))
            rc = err_set(e, ERR_REMOTE, "the old PDS's getPreferences has no preferences list");
        if (!rc) rc = snapshot_write_json(m->snap, "preferences.json", prefs, e);
        json_decref(prefs);
        if (rc) return err_wrap(e, "saving the preferences");
    }
    if (!rc) {
        blob_transfer t = {.phase = BLOB_PHASE_FETCH, .src = m->old, .did = m->id.did, .dir = m->blob_dir,
                           .j = m->o->j, .run_id = m->run.id};
        rc = journal_kv_set(m->o->j, m->run.id, "blobs_listed", "0", e);
        if (!rc) rc = blob_list_into_journal(&t, n_blobs, e);
        if (!rc) rc = journal_kv_set(m->o->j, m->run.id, "blobs_listed", "1", e);
    }
    if (!rc) {
        char commit[CID_STR_MAX], root[CID_STR_MAX];
        cid_format(&sum->commit, commit, sizeof commit);
        cid_format(&sum->data, root, sizeof root);
        time_t now = time(NULL);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        json_t *man = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:I, s:I}, s:{s:I}}",
                                "format", SNAPSHOT_FORMAT, "version", SNAPSHOT_FORMAT_VERSION, "kind", "full",
                                "did", m->id.did, "handle", m->id.handle, "source_pds", m->old_url, "created_at", when,
                                "repo", "file", "repo.car", "commit", commit, "rev", sum->rev, "data_root", root,
                                "records", (json_int_t)sum->records, "bytes", (json_int_t)sum->bytes,
                                "blobs", "listed", (json_int_t)*n_blobs);
        json_object_set_new(man, "tool", json_string("pdsmove " PDSMOVE_VERSION));
        rc = snapshot_write_json(m->snap, "manifest.json", man, e);
        json_decref(man);
    }
    return rc;
}

/* Checks the exported CAR (open on fd): every block hashed, the MST complete, the commit signed
 * by one of keys; writes the record list (records-old.tsv, what verify compares with); refuses
 * blobs over the new PDS's limit and, unless the blobs are already on disk, too little space
 * for them. Then journals what verify and a re-run need. */
static err_code check_export(mctx *m, int fd, const key_pub *keys, size_t n_keys, bool blobs_on_disk, repo_summary *sum,
                             err_t *e) {
    char list_path[1200];
    snprintf(list_path, sizeof list_path, "%s/records-old.tsv", m->work);
    int lfd = open(list_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    record_list rl = {.f = lfd >= 0 ? fdopen(lfd, "w") : NULL, .limit_bytes = m->upload_limit};
    if (lfd >= 0 && !rl.f) close(lfd);
    if (!rl.f) return err_set(e, ERR_IO, "cannot write %s: %s", list_path, strerror(errno));
    err_code rc = repo_verify_car(fd, keys, n_keys, write_record, &rl, sum, e);
    if (fclose(rl.f) != 0 && !rc) rc = err_set(e, ERR_IO, "writing %s failed", list_path);
    if (rc) return err_wrap(e, m->o->from_backup ? "the repository in the backup does not verify"
                                                 : "the repository exported by the old PDS does not verify");
    if (rl.too_large)
        return err_set(e, ERR_LIMIT, "%llu blob(s) are larger than the new PDS accepts (%llu bytes), e.g. %s: its operator must "
                                     "raise PDS_BLOB_UPLOAD_LIMIT before the move; nothing was copied yet",
                       (unsigned long long)rl.too_large, (unsigned long long)m->upload_limit, rl.first_too_large);
    struct statvfs vfs;
    if (!blobs_on_disk && rl.blob_ref_bytes && statvfs(m->snap, &vfs) == 0 &&
        (unsigned long long)vfs.f_bavail * vfs.f_frsize < rl.blob_ref_bytes + MIN_FREE_BYTES)
        return err_set(e, ERR_IO, "the blobs take %.1f MiB but only %.1f MiB are free in %s: free some space (or use "
                                  "--work-dir elsewhere) and run again", (double)rl.blob_ref_bytes / 1048576.0,
                       (double)vfs.f_bavail * vfs.f_frsize / 1048576.0, m->snap);
    if (strcmp(sum->did, m->id.did))
        return err_set(e, ERR_MISMATCH, "the repository is the one of %s, not %s", sum->did, m->id.did);
    return ERR_OK;
}

static err_code journal_export_facts(mctx *m, const repo_summary *sum, err_t *e) {
    char cs[CID_STR_MAX], root[CID_STR_MAX], n[32];
    cid_format(&sum->commit, cs, sizeof cs);
    cid_format(&sum->data, root, sizeof root);
    snprintf(n, sizeof n, "%llu", (unsigned long long)sum->records);
    err_code rc = journal_kv_set(m->o->j, m->run.id, "old_commit", cs, e);
    if (!rc) rc = journal_kv_set(m->o->j, m->run.id, "old_rev", sum->rev, e);
    if (!rc) rc = journal_kv_set(m->o->j, m->run.id, "records", n, e);
    if (!rc) rc = journal_kv_set(m->o->j, m->run.id, "old_data_root", root, e);
    return rc;
}

/* The keys the exported commit may be signed by: the account's signing key before the move
 * and, when the export came from a backup, the key in the snapshot's saved DID document. */
size_t mig_export_keys(const mctx *m, key_pub *keys) {
    size_t n = 0;
    keys[n++] = m->old_signing_pub;
    char v[KEY_DID_MAX];
    key_pub k;
    if (journal_kv_get(m->o->j, m->run.id, "snapshot_signing_key", v, sizeof v, NULL) == ERR_OK &&
        key_pub_from_did_key(&k, v, NULL) == ERR_OK)
        keys[n++] = k;
    return n;
}

static err_code export_repo(mctx *m, err_t *e) {
    const char *step = "export";
    struct stat st;
    if (mig_skip_done(m, step)) {
        if (journal_step_done(m->o->j, m->run.id, "import") || stat(m->car_path, &st) == 0) return ERR_OK;
        mig_info(m, "the exported CAR is gone from %s; exporting again", m->car_path);
        journal_step_set(m->o->j, m->run.id, step, STEP_RUNNING, NULL, NULL);
    }
    char part[1200];
    snprintf(part, sizeof part, "%s.part", m->car_path);
    uint64_t bytes = 0;
    bool early = prefetch_take(m, part, &bytes);
    int fd = open(part, early ? O_RDWR | O_CLOEXEC : O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(e, ERR_IO, "cannot create %s: %s", part, strerror(errno));
        return mig_step_failed(m, step, e);
    }
    err_code rc = ERR_OK;
    if (early) {
        mig_info(m, "downloaded the repository from %s during preflight", m->old_url);
    } else {
        xrpc_param p[] = {{"did", m->id.did}, {NULL, NULL}};
        mig_info(m, "downloading the repository from %s", m->old_url);
        rc = pds_query_to_fd(m->old, "com.atproto.sync.getRepo", p, fd, &bytes, e);
        if (rc == ERR_LIMIT) err_wrap(e, "downloading the repository (if it really is that large, give a larger --max-repo-bytes)");
        if (rc == ERR_OK && fsync(fd) != 0) rc = err_set(e, ERR_IO, "fsync %s: %s", part, strerror(errno));
    }
    repo_summary sum;
    if (rc == ERR_OK) rc = check_export(m, fd, &m->old_signing_pub, 1, false, &sum, e);
    close(fd);
    if (rc) {
        unlink(part);
        return mig_step_failed(m, step, e);
    }
    if (rename(part, m->car_path) != 0) {
        err_set(e, ERR_IO, "rename %s: %s", part, strerror(errno));
        return mig_step_failed(m, step, e);
    }
    if ((rc = journal_export_facts(m, &sum, e))) return mig_step_failed(m, step, e);
    int64_t n_blobs = 0;
    if ((rc = snapshot_rest(m, &sum, &n_blobs, e))) return mig_step_failed(m, step, e);
    char detail[512];
    snprintf(detail, sizeof detail, "%llu records, %llu blocks, %.1f MiB, rev %s, signature valid; %lld blobs listed",
             (unsigned long long)sum.records, (unsigned long long)sum.blocks, (double)bytes / 1048576.0, sum.rev,
             (long long)n_blobs);
    return mig_step_done(m, step, detail, e);
}

/* The export of a restore while the old PDS still works (o->from_backup): a snapshot of the
 * backup directory, assembled into the work directory, stands for getRepo and the blob
 * downloads. The snapshot chosen is journaled, so a re-run uses the same one even when a newer
 * backup appeared meanwhile. */
static err_code export_from_backup(mctx *m, err_t *e) {
    const char *step = "export";
    const migrate_opts *o = m->o;
    struct stat st;
    if (mig_skip_done(m, step)) {
        if (journal_step_done(o->j, m->run.id, "import") || stat(m->car_path, &st) == 0) return ERR_OK;
        mig_info(m, "the assembled snapshot is gone from %s; assembling it again", m->snap);
        journal_step_set(o->j, m->run.id, step, STEP_RUNNING, NULL, NULL);
    }
    char sid[BACKUP_ID_MAX] = "";
    if (journal_kv_get(o->j, m->run.id, "backup_snapshot", sid, sizeof sid, NULL) != ERR_OK && o->from_snapshot)
        snprintf(sid, sizeof sid, "%s", o->from_snapshot);
    mig_info(m, "assembling %s from the backup in %s", sid[0] ? sid : "the newest snapshot", o->from_backup);
    backup_snapshot bs;
    err_code rc = backup_assemble(o->from_backup, sid[0] ? sid : NULL, m->id.did, m->snap, &bs, e);
    if (rc) {
        err_wrap(e, "assembling the snapshot from %s", o->from_backup);
        return mig_step_failed(m, step, e);
    }
    if (strcmp(bs.did, m->id.did)) {
        err_set(e, ERR_USAGE, "snapshot %s is a backup of %s, not of %s", bs.id, bs.did, m->id.did);
        return mig_step_failed(m, step, e);
    }
    if ((rc = journal_kv_set(o->j, m->run.id, "backup_snapshot", bs.id, e))) return mig_step_failed(m, step, e);
    /* the snapshot's commit was signed with the key its saved DID document names */
    json_t *doc = NULL;
    identity_doc sd;
    if (snapshot_read_json(m->snap, "did-doc.json", &doc, NULL) == ERR_OK && identity_doc_parse(doc, m->id.did, &sd, NULL) == ERR_OK &&
        sd.has_signing_key) {
        char k[KEY_DID_MAX];
        key_pub_to_did_key(&sd.signing_pub, k, sizeof k);
        if ((rc = journal_kv_set(o->j, m->run.id, "snapshot_signing_key", k, e))) {
            json_decref(doc);
            return mig_step_failed(m, step, e);
        }
    }
    json_decref(doc);
    key_pub keys[2];
    size_t n_keys = mig_export_keys(m, keys);
    int fd = open(m->car_path, O_RDONLY | O_CLOEXEC);
    repo_summary sum;
    if (fd < 0) rc = err_set(e, ERR_IO, "cannot open %s: %s", m->car_path, strerror(errno));
    else {
        rc = check_export(m, fd, keys, n_keys, true, &sum, e);
        close(fd);
    }
    if (rc) return mig_step_failed(m, step, e);
    if ((rc = journal_export_facts(m, &sum, e))) return mig_step_failed(m, step, e);
    /* preferences: the snapshot's, else (backed up without a password) the old PDS's now */
    json_t *prefs = NULL;
    if (snapshot_read_json(m->snap, "preferences.json", &prefs, NULL) != ERR_OK) {
        mig_info(m, "the snapshot has no preferences (backed up without a password): taking the old PDS's current ones");
        rc = pds_query(m->old, "app.bsky.actor.getPreferences", NULL, &prefs, e);
        if (!rc && !json_is_array(json_object_get(prefs, "preferences")))
            rc = err_set(e, ERR_REMOTE, "the old PDS's getPreferences has no preferences list");
        if (!rc) rc = snapshot_write_json(m->snap, "preferences.json", prefs, e);
        if (rc) err_wrap(e, "saving the preferences");
    }
    json_decref(prefs);
    if (rc) return mig_step_failed(m, step, e);
    /* the blobs are in the snapshot already: listed as fetched (the upload re-hashes each) */
    int64_t n_blobs = 0;
    rc = blob_list_from_snapshot(o->j, m->run.id, m->snap, &n_blobs, e);
    if (!rc) rc = journal_kv_set(o->j, m->run.id, "blobs_listed", "1", e);
    if (rc) return mig_step_failed(m, step, e);
    char detail[700];
    snprintf(detail, sizeof detail, "snapshot %s of the backup (rev %s, taken %s): %llu records, signature valid; %lld blobs",
             bs.id, sum.rev, bs.created_at, (unsigned long long)sum.records, (long long)n_blobs);
    return mig_step_done(m, step, detail, e);
}

/* importRepo runs in its own thread (with its own HTTP client) while this thread fetches the
 * blobs: the new PDS's import and the old PDS's blob downloads overlap. Once the import is
 * done (`imported`), blobs already on disk are uploaded while the rest still download. */
typedef struct {
    char url[512];
    char *bearer;      /* a copy: the blob loop may refresh the session meanwhile */
    atomic_bool imported;
    char car[1200];
    xrpc_options xo;
    err_code rc;
    err_t err;
    long status;
    uint64_t size;
} import_job;

static void *import_thread(void *arg) {
    import_job *job = arg;
    xrpc_client *c = xrpc_client_new(job->url, &job->xo, &job->err);
    if (!c) {
        job->rc = job->err.code;
        return NULL;
    }
    xrpc_set_bearer(c, job->bearer, NULL);
    int fd = open(job->car, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        job->rc = err_set(&job->err, ERR_IO, "cannot open %s: %s", job->car, strerror(errno));
    } else {
        struct stat st;
        fstat(fd, &st);
        job->size = (uint64_t)st.st_size;
        job->rc = xrpc_procedure_from_fd(c, "com.atproto.repo.importRepo", "application/vnd.ipld.car", fd, job->size, NULL,
                                         &job->err);
        job->status = xrpc_last_status(c);
        close(fd);
        if (job->rc == ERR_OK) atomic_store(&job->imported, true);
    }
    xrpc_client_free(c);
    return NULL;
}

/* imported: becomes true when the new PDS has the repo; from then on fetched blobs are also
 * uploaded (see blob_transfer.uploads_open). */
static err_code fetch_blobs(mctx *m, const atomic_bool *imported, err_t *e) {
    const char *step = "blobs-fetch";
    if (mig_skip_done(m, step)) return ERR_OK;
    blob_transfer t = {.phase = BLOB_PHASE_FETCH, .src = m->old, .did = m->id.did, .dir = m->blob_dir, .jobs = m->o->jobs,
                       .max_blob_bytes = m->upload_limit, .xo = mig_xrpc_options(m), .j = m->o->j, .run_id = m->run.id,
                       .progress = blob_progress, .ctx = m, .dst = m->neu, .uploads_open = imported};
    m->blob_phase = BLOB_PHASE_FETCH;
    m->blobs_reported = -1;
    err_code rc = journal_blob_reset_attempts(m->o->j, m->run.id, e); /* a re-run retries what failed before */
    if (!rc) rc = blob_transfer_run(&t, e);
    if (rc == ERR_RATELIMIT) m->limit_reset_s = t.limit_reset_s;
    if (rc) return mig_step_failed(m, step, e);
    journal_blob_counts c;
    journal_blob_counts_get(m->o->j, m->run.id, &c, NULL);
    if (c.fetched < c.total) {
        err_set(e, ERR_REMOTE, "%lld of %lld blobs could not be downloaded from the old PDS (errors are in the journal; "
                               "`pdsmove status` shows them); run the same command again to retry",
                (long long)(c.total - c.fetched), (long long)c.total);
        return mig_step_failed(m, step, e);
    }
    char detail[200], early[80] = "";
    if (t.uploaded)
        snprintf(early, sizeof early, "; %lld of them already uploaded (the import was done)", (long long)t.uploaded);
    if (m->o->from_backup) snprintf(detail, sizeof detail, "%lld blobs in the backup's snapshot", (long long)c.fetched);
    else snprintf(detail, sizeof detail, "%lld blobs, %.1f MiB downloaded, each hash-checked%s", (long long)c.fetched,
                  (double)c.fetched_bytes / 1048576.0, early);
    return mig_step_done(m, step, detail, e);
}

static void pack_start(mctx *m);
static bool pack_finish(mctx *m, char *out, size_t size, err_t *e);

static err_code import_and_fetch(mctx *m, err_t *e) {
    bool import_done = journal_step_done(m->o->j, m->run.id, "import");
    import_job job = {.xo = mig_xrpc_options_new(m)};
    atomic_init(&job.imported, import_done);
    pthread_t th;
    bool started = false;
    if (!import_done) {
        journal_step_set(m->o->j, m->run.id, "import", STEP_RUNNING, NULL, NULL);
        ui_step(m, "import", STEP_RUNNING, NULL);
        snprintf(job.url, sizeof job.url, "%s", m->neu->url);
        snprintf(job.car, sizeof job.car, "%s", m->car_path);
        job.bearer = strdup(m->neu->access_jwt);
        if (!job.bearer) return err_set(e, ERR_NOMEM, "out of memory");
        struct stat st;
        if (stat(m->car_path, &st) == 0)
            mig_info(m, "uploading the repository (%.1f MiB) to %s%s", (double)st.st_size / 1048576.0, m->o->to_url,
                     m->o->from_backup ? "" : " while blobs download");
        started = pthread_create(&th, NULL, import_thread, &job) == 0;
        if (!started) import_thread(&job);
    } else {
        ui_step(m, "import", STEP_DONE, "already done");
    }
    err_t fe;
    err_code frc = fetch_blobs(m, &job.imported, &fe);
    if (started) pthread_join(th, NULL);
    if (job.bearer) {
        explicit_bzero(job.bearer, strlen(job.bearer));
        free(job.bearer);
        job.bearer = NULL;
    }
    /* every blob is on disk: the snapshot is final (unless an upload finds a damaged copy and
     * fetches it again, which repacks), so the safety archive is packed while the blobs upload.
     * Not during the import: where both PDSes share the client's machine (the benchmark's
     * testbed), its CPU slowed the import more than it saved. */
    if (frc == ERR_OK && (import_done || job.rc == ERR_OK)) pack_start(m);
    if (!import_done) {
        if (job.rc) {
            if (job.status == 413)
                err_set(&job.err, ERR_LIMIT, "the new PDS refused the %.1f MiB repository as too large (HTTP 413): its "
                                             "operator must raise PDS_MAX_REPO_IMPORT_SIZE (or PDS_BLOB_UPLOAD_LIMIT, which it "
                                             "defaults to), then run this command again", (double)job.size / 1048576.0);
            else err_wrap(&job.err, "importing the repository into the new PDS");
            if (e) *e = job.err;
            return mig_step_failed(m, "import", e);
        }
        char detail[128];
        snprintf(detail, sizeof detail, "repository imported (%.1f MiB)", (double)job.size / 1048576.0);
        mig_step_done(m, "import", detail, NULL);
    }
    if (frc && e) *e = fe;
    return frc;
}

/* ---- blobs ---- */

static void blob_progress(void *ctx, const journal_blob_counts *c, const char *last) {
    mctx *m = ctx;
    (void)last;
    bool up = m->blob_phase == BLOB_PHASE_UPLOAD;
    int64_t done = up ? c->done : c->fetched, bytes = up ? c->done_bytes : c->fetched_bytes;
    if (m->o->ui.progress) {
        m->o->ui.progress(m->o->ui.ctx, up ? "blobs" : "blobs-fetch", (uint64_t)done, (uint64_t)c->total, (uint64_t)bytes, 0);
        return;
    }
    if (done == m->blobs_reported) return;
    m->blobs_reported = done;
    mig_info(m, "blobs %s: %lld/%lld (%.1f MiB)", up ? "uploaded" : "downloaded", (long long)done, (long long)c->total,
             (double)bytes / 1048576.0);
}

/* listMissingBlobs on the new PDS: marks missing ones pending again; returns how many. */
static err_code check_missing(mctx *m, int64_t *missing, bool describe, err_t *e) {
    *missing = 0;
    char cursor[256] = "";
    size_t used = strlen(m->rep->missing_blobs);
    for (int page = 0; page < 10000; page++) {
        xrpc_param p[] = {{"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *out = NULL;
        err_code rc = pds_query(m->neu, "com.atproto.repo.listMissingBlobs", p, &out, e);
        if (rc) return err_wrap(e, "asking the new PDS which blobs it misses");
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(out, "blobs"), i, b) {
            const char *cid = json_string_value(json_object_get(b, "cid"));
            const char *uri = json_string_value(json_object_get(b, "recordUri"));
            if (!cid) continue;
            (*missing)++;
            if ((rc = journal_blob_add(m->o->j, m->run.id, cid, -1, e)) ||
                (rc = journal_blob_set(m->o->j, m->run.id, cid, BLOB_PENDING, -1, "missing on the new PDS", e))) {
                json_decref(out);
                return rc;
            }
            if (describe && used + 200 < sizeof m->rep->missing_blobs) {
                int n = snprintf(m->rep->missing_blobs + used, sizeof m->rep->missing_blobs - used, "%s%s (in %s)",
                                 used ? "; " : "", cid, uri ? uri : "?");
                if (n > 0) used += (size_t)n;
            }
        }
        const char *next = json_string_value(json_object_get(out, "cursor"));
        bool more = next && *next && strcmp(next, cursor) && json_array_size(json_object_get(out, "blobs"));
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(out);
        if (!more) return ERR_OK;
    }
    return ERR_OK;
}

/* The repo part of verify runs in its own thread (own HTTP client, no journal) while the blobs
 * upload: after the import the new PDS's repo no longer changes before verify. */
typedef struct {
    mctx *m;
    xrpc_client *c;
    key_pub keys[3];
    size_t n_keys;
    char want_root[CID_STR_MAX];
    err_code rc;
    err_t err;
    repo_summary sum;
} precheck_job;

static void *precheck_thread(void *arg) {
    precheck_job *j = arg;
    j->rc = mig_check_new_repo(j->m, j->c, j->keys, j->n_keys, j->want_root, &j->sum, &j->err);
    return NULL;
}

static bool precheck_start(mctx *m, precheck_job *j, pthread_t *th) {
    memset(j, 0, sizeof *j);
    j->m = m;
    json_t *rec = NULL;
    if (pds_query(m->neu, "com.atproto.identity.getRecommendedDidCredentials", NULL, &rec, NULL) != ERR_OK) return false;
    const char *k = json_string_value(json_object_get(json_object_get(rec, "verificationMethods"), "atproto"));
    bool ok = k && key_pub_from_did_key(&j->keys[0], k, NULL) == ERR_OK;
    json_decref(rec);
    if (!ok) return false;
    j->n_keys = 1 + mig_export_keys(m, j->keys + 1);
    journal_kv_get(m->o->j, m->run.id, "old_data_root", j->want_root, sizeof j->want_root, NULL);
    xrpc_options xo = mig_xrpc_options_new(m);
    xo.on_wait = NULL; /* quiet: its result is reported by verify */
    j->c = xrpc_client_new(m->neu->url, &xo, NULL);
    if (!j->c) return false;
    xrpc_set_bearer(j->c, m->neu->access_jwt, NULL);
    if (pthread_create(th, NULL, precheck_thread, j) != 0) {
        xrpc_client_free(j->c);
        return false;
    }
    return true;
}

static void precheck_finish(mctx *m, precheck_job *j, pthread_t th) {
    pthread_join(th, NULL);
    xrpc_client_free(j->c);
    if (j->rc == ERR_OK) {
        m->repo_prechecked = true;
        m->precheck_sum = j->sum;
    } /* on failure verify simply checks again, and reports */
}

static err_code upload_blobs_loop(mctx *m, err_t *e);

static err_code upload_blobs(mctx *m, err_t *e) {
    if (journal_step_done(m->o->j, m->run.id, "blobs") || journal_step_done(m->o->j, m->run.id, "verify"))
        return upload_blobs_loop(m, e);
    precheck_job j;
    pthread_t th;
    bool started = precheck_start(m, &j, &th);
    err_code rc = upload_blobs_loop(m, e);
    if (started) precheck_finish(m, &j, th);
    return rc;
}

static err_code upload_blobs_loop(mctx *m, err_t *e) {
    const char *step = "blobs";
    if (mig_skip_done(m, step)) return ERR_OK;
    blob_transfer t = {.phase = BLOB_PHASE_UPLOAD, .dst = m->neu, .did = m->id.did, .dir = m->blob_dir, .jobs = m->o->jobs,
                       .max_blob_bytes = m->upload_limit, .xo = mig_xrpc_options(m), .j = m->o->j, .run_id = m->run.id,
                       .progress = blob_progress, .ctx = m};
    blob_transfer fetch = t;
    fetch.phase = BLOB_PHASE_FETCH;
    fetch.src = m->old;
    fetch.dst = NULL;
    m->blobs_reported = -1;
    for (int round = 0; round < 2; round++) {
        /* each round (and each run of the command) gives a failed blob its attempts again */
        err_code rc = journal_blob_reset_attempts(m->o->j, m->run.id, e);
        /* a local copy found missing or damaged goes back to FETCH: fetch, then upload */
        m->blob_phase = BLOB_PHASE_UPLOAD;
        if (!rc) rc = blob_transfer_run(&t, e);
        int64_t refetched = fetch.transferred;
        if (!rc) rc = blob_transfer_run(&fetch, e);
        if (!rc && fetch.transferred > refetched) {
            /* the snapshot changed under an archive packed (or being packed) from it: again */
            char ignore[SNAPSHOT_PATH_MAX];
            pack_finish(m, ignore, sizeof ignore, NULL);
            if (!rc) rc = journal_kv_set(m->o->j, m->run.id, "archive_packed", "", e);
            mig_info(m, "%lld damaged or missing local blob(s) fetched again; the safety archive will be packed again",
                     (long long)(fetch.transferred - refetched));
        }
        if (!rc) rc = blob_transfer_run(&t, e);
        if (rc == ERR_RATELIMIT) m->limit_reset_s = t.limit_reset_s ? t.limit_reset_s : fetch.limit_reset_s;
        if (rc) return mig_step_failed(m, step, e);
        int64_t missing = 0;
        rc = check_missing(m, &missing, round == 1, e);
        if (rc) return mig_step_failed(m, step, e);
        if (missing == 0) break;
        if (round == 1) {
            err_set(e, ERR_REMOTE, "%lld blob(s) are still missing on the new PDS after retries: %s. Run the same command "
                                   "again to retry them", (long long)missing, m->rep->missing_blobs);
            return mig_step_failed(m, step, e);
        }
        mig_info(m, "the new PDS still misses %lld blob(s); retrying them", (long long)missing);
    }
    journal_blob_counts c;
    journal_blob_counts_get(m->o->j, m->run.id, &c, NULL);
    if (c.done < c.total) {
        err_set(e, ERR_REMOTE, "%lld blob(s) could not be uploaded (errors in the journal; `pdsmove status` shows them); run the "
                               "same command again to retry", (long long)(c.total - c.done));
        return mig_step_failed(m, step, e);
    }
    char detail[200];
    snprintf(detail, sizeof detail, "%lld blobs, %.1f MiB uploaded, each hash-checked; none missing on the new PDS",
             (long long)c.done, (double)c.done_bytes / 1048576.0);
    return mig_step_done(m, step, detail, e);
}

/* ---- preferences ---- */

static err_code copy_preferences(mctx *m, err_t *e) {
    const char *step = "preferences";
    if (mig_skip_done(m, step)) return ERR_OK;
    json_t *out = NULL;
    err_code rc = snapshot_read_json(m->snap, "preferences.json", &out, e);
    if (rc) {
        err_wrap(e, "reading the exported preferences");
        return mig_step_failed(m, step, e);
    }
    json_t *prefs = json_object_get(out, "preferences");
    if (!json_is_array(prefs)) {
        json_decref(out);
        err_set(e, ERR_INVALID, "the snapshot's preferences.json has no preferences list");
        return mig_step_failed(m, step, e);
    }
    size_t n = json_array_size(prefs);
    /* Passed through untouched: re-encoding through typed structs has lost data before. */
    json_t *body = json_pack("{s:O}", "preferences", prefs);
    rc = pds_procedure(m->neu, "app.bsky.actor.putPreferences", body, NULL, e);
    json_decref(body);
    json_decref(out);
    if (rc) {
        err_wrap(e, "writing preferences to the new PDS");
        return mig_step_failed(m, step, e);
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%zu preference entries copied", n);
    return mig_step_done(m, step, detail, e);
}

/* ---- activate, handle, deactivate, crawl ---- */

static void activate_wait(void *ctx) { mig_info(ctx, "the new PDS does not see the updated DID document yet; waiting"); }

static err_code activate_new(mctx *m, err_t *e) {
    const char *step = "activate";
    if (mig_skip_done(m, step)) return ERR_OK;
    err_code rc = pds_activate(m->neu, activate_wait, m, e);
    if (rc) {
        err_wrap(e, "activating the account on the new PDS");
        return mig_step_failed(m, step, e);
    }
    m->rep->activated = true;
    return mig_step_done(m, step, "the account is active on the new PDS", e);
}

static err_code set_handle(mctx *m, err_t *e) {
    const char *step = "handle";
    if (!strcmp(m->create_handle, m->wanted_handle)) return ERR_OK;
    if (mig_skip_done(m, step)) return ERR_OK;
    json_t *body = json_pack("{s:s}", "handle", m->wanted_handle);
    err_code rc = pds_procedure(m->neu, "com.atproto.identity.updateHandle", body, NULL, e);
    json_decref(body);
    if (rc) {
        /* Not fatal: the account works under the temporary handle. */
        err_wrap(e, "setting the handle %s (the account keeps %s; set it later once %s resolves to %s)", m->wanted_handle,
                 m->create_handle, m->wanted_handle, m->id.did);
        mig_step_failed(m, step, e);
        return ERR_OK;
    }
    snprintf(m->rep->handle, sizeof m->rep->handle, "%s", m->wanted_handle);
    return mig_step_done(m, step, m->wanted_handle, e);
}

static err_code deactivate_old(mctx *m, err_t *e) {
    const char *step = "deactivate-old";
    if (m->o->keep_old_active) return ERR_OK;
    if (mig_skip_done(m, step)) {
        m->rep->old_deactivated = true;
        return ERR_OK;
    }
    /* The old PDS's session may no longer validate once the DID moved: refresh first. */
    err_t ignore;
    pds_refresh(m->old, &ignore);
    err_code rc = pds_procedure(m->old, "com.atproto.server.deactivateAccount", NULL, NULL, e);
    if (rc) {
        err_t e2;
        if (pds_login(m->old, m->id.did, m->o->password, NULL, &e2) == ERR_OK)
            rc = pds_procedure(m->old, "com.atproto.server.deactivateAccount", NULL, NULL, e);
    }
    if (rc) {
        err_wrap(e, "deactivating the old account (the move itself is complete; deactivate it by hand or re-run)");
        mig_step_failed(m, step, e);
        return ERR_OK;
    }
    m->rep->old_deactivated = true;
    return mig_step_done(m, step, "the old account is deactivated", e);
}

static void request_crawl(mctx *m) {
    if (!m->o->n_relays) return;
    const char *host = strstr(m->o->to_url, "://");
    host = host ? host + 3 : m->o->to_url;
    for (size_t i = 0; i < m->o->n_relays; i++) {
        err_t e;
        xrpc_options xo = mig_xrpc_options(m);
        xo.max_retries = 2;
        xrpc_client *c = xrpc_client_new(m->o->relays[i], &xo, &e);
        if (!c) {
            mig_info(m, "relay %s: %s", m->o->relays[i], e.msg);
            continue;
        }
        json_t *body = json_pack("{s:s}", "hostname", host);
        if (xrpc_procedure(c, "com.atproto.sync.requestCrawl", body, NULL, &e)) mig_info(m, "relay %s: %s", m->o->relays[i], e.msg);
        else mig_info(m, "asked %s to crawl %s", m->o->relays[i], host);
        json_decref(body);
        xrpc_client_free(c);
    }
}

/* ---- settings and the safety archive ---- */

/* The run's settings (no secrets) are recorded once; a re-run with different ones is refused
 * unless --force, so one journal run never mixes two different intentions. */
static err_code check_settings(mctx *m, err_t *e) {
    const migrate_opts *o = m->o;
    json_t *cur = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "to", o->to_url, "from", m->old_url, "plc",
                            o->plc_url ? o->plc_url : IDENTITY_DEFAULT_PLC, "handle", m->wanted_handle, "identity",
                            o->rotation_key_file ? "rotation-key" : "email-token", "add_rotation_key",
                            o->add_rotation_key ? o->add_rotation_key : "", "keep_old_active", o->keep_old_active);
    if (cur && o->from_backup) /* only then: older journals keep matching */
        json_object_set_new(cur, "from_backup", json_pack("{s:s, s:s}", "dir", o->from_backup, "snapshot",
                                                          o->from_snapshot ? o->from_snapshot : "newest"));
    char *text = json_dumps(cur, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cur);
    if (!text) return err_set(e, ERR_NOMEM, "out of memory");
    char saved[JOURNAL_VALUE_MAX];
    err_code rc = ERR_OK;
    if (journal_kv_get(o->j, m->run.id, "settings", saved, sizeof saved, NULL) == ERR_OK && strcmp(saved, text)) {
        if (!o->force)
            rc = err_set(e, ERR_USAGE, "this migration was started with other settings (%s; now %s): run it with the same "
                                       "options, or add --force to continue with the new ones", saved, text);
        else mig_info(m, "continuing with changed settings (--force)");
    }
    if (!rc) rc = journal_kv_set(o->j, m->run.id, "settings", text, e);
    free(text);
    return rc;
}

/* The safety archive is packed in its own thread once every blob is downloaded and the import
 * is done: while the blobs upload (an upload that finds a damaged local copy fetches it again
 * and the archive is packed again), then preferences, identity (often a wait for the user's
 * email token) and verify; the archive step only collects it. The thread touches neither the
 * journal nor the UI. A packed archive is journaled, so a re-run after a later failure keeps
 * it instead of packing a second one. */
typedef struct pack_job_ {
    char snap[1100], top[128], base[SNAPSHOT_PATH_MAX], out[SNAPSHOT_PATH_MAX];
    err_code rc;
    err_t err;
} pack_job;

static void *pack_thread(void *arg) {
    pack_job *j = arg;
    j->rc = snapshot_pack(j->snap, j->top, j->base, j->out, &j->err);
    return NULL;
}

static bool archive_already_packed(mctx *m, char *out, size_t size) {
    struct stat st;
    return journal_kv_get(m->o->j, m->run.id, "archive_packed", out, size, NULL) == ERR_OK && out[0] && stat(out, &st) == 0;
}

/* A packing job for the archive directory, named <did>-<UTC time>-migrate; NULL when the
 * directory cannot be made (e says why) or out of memory. */
static pack_job *pack_prepare(mctx *m, err_t *e) {
    if (mkdir(m->o->archive_dir, 0700) != 0 && errno != EEXIST) {
        err_set(e, ERR_IO, "cannot create %s: %s", m->o->archive_dir, strerror(errno));
        return NULL;
    }
    pack_job *j = calloc(1, sizeof *j);
    if (!j) {
        err_set(e, ERR_NOMEM, "out of memory");
        return NULL;
    }
    /* The name is chosen once per migration and journaled: a run killed after packing but
     * before journaling the archive packs again onto the same name, never a second archive. */
    if (journal_kv_get(m->o->j, m->run.id, "archive_top", j->top, sizeof j->top, NULL) != ERR_OK || !j->top[0]) {
        time_t now = time(NULL);
        char when[32], safe_did[256];
        strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", gmtime(&now));
        snprintf(safe_did, sizeof safe_did, "%s", m->id.did);
        for (char *p = safe_did; *p; p++)
            if (*p == ':') *p = '_';
        snprintf(j->top, sizeof j->top, "%s-%s", safe_did, when);
        if (journal_kv_set(m->o->j, m->run.id, "archive_top", j->top, e)) { /* unjournaled: a re-run would pick another name */
            free(j);
            return NULL;
        }
    }
    snprintf(j->snap, sizeof j->snap, "%s", m->snap);
    snprintf(j->base, sizeof j->base, "%s/%s-migrate", m->o->archive_dir, j->top);
    return j;
}

static void pack_start(mctx *m) {
    char have[SNAPSHOT_PATH_MAX];
    if (m->pack || !m->o->archive_dir || m->o->from_backup || journal_step_done(m->o->j, m->run.id, "archive") ||
        archive_already_packed(m, have, sizeof have))
        return;
    pack_job *j = pack_prepare(m, NULL); /* a failure is reported by the archive step */
    if (!j) return;
    if (pthread_create(&m->pack_th, NULL, pack_thread, j) != 0) {
        free(j);
        return;
    }
    m->pack = j;
}

/* Waits for the packing thread (if any); journals its archive when it made one. Returns
 * whether an archive is ready, its path in out. */
static bool pack_finish(mctx *m, char *out, size_t size, err_t *e) {
    if (!m->pack) return false;
    pthread_join(m->pack_th, NULL);
    pack_job *j = m->pack;
    m->pack = NULL;
    bool ok = j->rc == ERR_OK;
    if (ok) {
        snprintf(out, size, "%s", j->out);
        if (journal_kv_set(m->o->j, m->run.id, "archive_packed", j->out, e)) ok = false;
    } else if (e) {
        *e = j->err;
    }
    free(j);
    return ok;
}

/* Collects the archive (packed in the background, or packs it now), then removes the
 * snapshot. Without an archive directory the snapshot is just removed. */
static err_code keep_archive(mctx *m, err_t *e) {
    const char *step = "archive";
    if (mig_skip_done(m, step)) return ERR_OK;
    char detail[SNAPSHOT_PATH_MAX + 64] = "no archive kept (--no-keep-archive)";
    if (m->o->from_backup) snprintf(detail, sizeof detail, "no new archive: the backup in %s holds this snapshot", m->o->from_backup);
    else if (m->o->archive_dir) {
        char out[SNAPSHOT_PATH_MAX];
        err_t pe = {0};
        bool ready = pack_finish(m, out, sizeof out, &pe) || archive_already_packed(m, out, sizeof out);
        if (!ready) {
            if (pe.code) mig_info(m, "packing the archive in the background failed (%s); trying again", pe.msg);
            pack_job *j = pack_prepare(m, e);
            if (j) {
                pack_thread(j);
                if ((ready = j->rc == ERR_OK)) {
                    snprintf(out, sizeof out, "%s", j->out);
                    if (journal_kv_set(m->o->j, m->run.id, "archive_packed", j->out, e)) ready = false;
                } else if (e) {
                    *e = j->err;
                }
                free(j);
            }
        }
        if (!ready) {
            err_wrap(e, "packing the safety archive (the move itself is complete)");
            return mig_step_failed(m, step, e);
        }
        snprintf(detail, sizeof detail, "the account as it left the old PDS: %s", out);
        snprintf(m->rep->archive, sizeof m->rep->archive, "%s", out);
    }
    snapshot_remove(m->snap, NULL);
    char list_path[1200];
    snprintf(list_path, sizeof list_path, "%s/records-old.tsv", m->work);
    unlink(list_path);
    rmdir(m->work); /* only if nothing else is left in it */
    return mig_step_done(m, step, detail, e);
}

/* ---- the pipeline ---- */

/* A long rate limit stopped the run (ERR_RATELIMIT): when it resets goes into the report and
 * the journal (`pdsmove status` shows it), and the message says what the user can do. */
static void note_rate_limit(mctx *m, err_t *e) {
    long long now = (long long)time(NULL), at = m->limit_reset_s;
    if (!at && m->neu && xrpc_last_status(m->neu->c) == 429) at = xrpc_ratelimit_reset_at(xrpc_last_ratelimit(m->neu->c), now);
    if (!at && m->old && xrpc_last_status(m->old->c) == 429) at = xrpc_ratelimit_reset_at(xrpc_last_ratelimit(m->old->c), now);
    m->rep->limit_reset_s = at;
    bool identity_started = false;
    if (m->rep->run_started) {
        char v[32];
        snprintf(v, sizeof v, "%lld", at);
        journal_kv_set(m->o->j, m->run.id, "limit_reset_at", v, NULL);
        journal_step_status st = STEP_PENDING;
        journal_step_get(m->o->j, m->run.id, "identity", &st, NULL, 0, NULL);
        identity_started = st != STEP_PENDING;
    }
    char msg[ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", e->msg);
    err_set(e, ERR_RATELIMIT, "%s. %sRun the same command again after that and it continues where it stopped; or add "
                              "--wait-for-limits to wait in place%s", msg,
            identity_started ? "" : "The identity (PLC) step has not started. ",
            m->o->new_pds_bypass_key ? "" : "; or, if you run the new PDS, set PDS_RATE_LIMIT_BYPASS_KEY there and give it "
                                            "with --new-pds-ratelimit-bypass-key-file");
}

err_code migrate_run(const migrate_opts *o, migrate_report *rep, err_t *e) {
    memset(rep, 0, sizeof *rep);
    mctx m = {.o = o, .rep = rep};
    snprintf(m.work, sizeof m.work, "%s", o->work_dir);
    err_code rc = preflight(&m, e);
    if (rc) goto out;
    snprintf(rep->did, sizeof rep->did, "%s", m.id.did);
    if (m.already_done) {
        rep->already_done = true;
        snprintf(rep->new_pds, sizeof rep->new_pds, "%s", o->to_url);
        goto out;
    }
    snprintf(rep->old_pds, sizeof rep->old_pds, "%s", m.old_url);
    snprintf(rep->new_pds, sizeof rep->new_pds, "%s", o->to_url);
    snprintf(rep->handle, sizeof rep->handle, "%s", m.create_handle);
    snprintf(m.snap, sizeof m.snap, "%s/snapshot", m.work);
    snprintf(m.car_path, sizeof m.car_path, "%s/repo.car", m.snap);
    snprintf(m.blob_dir, sizeof m.blob_dir, "%s/blobs", m.snap);
    if (o->dry_run) goto out;

    rc = journal_run_begin(o->j, "migrate", m.id.did, &m.run, e);
    if (rc) goto out;
    rep->run_started = true;
    if (!m.resuming) {
        /* what a re-run needs once the DID document has moved on */
        char old_key[KEY_DID_MAX];
        key_pub_to_did_key(&m.old_signing_pub, old_key, sizeof old_key);
        const char *facts[][2] = {{"account_arg", o->account}, {"did", m.id.did}, {"old_pds", m.old_url},
                                  {"new_pds", o->to_url}, {"old_signing_key", old_key}, {"wanted_handle", m.wanted_handle},
                                  {"create_handle", m.create_handle}};
        rc = journal_tx_begin(o->j, e);
        for (size_t i = 0; i < sizeof facts / sizeof facts[0] && !rc; i++) rc = journal_kv_set(o->j, m.run.id, facts[i][0], facts[i][1], e);
        if (rc) {
            journal_tx_rollback(o->j);
            goto out;
        }
        if ((rc = journal_tx_commit(o->j, e))) goto out;
    }

    if ((rc = check_settings(&m, e))) goto out;
    if (mkdir(m.snap, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", m.snap, strerror(errno));
        goto out;
    }
    /* export first: an oversized blob or too little disk is found before anything exists on
     * the new PDS */
    if ((rc = o->from_backup ? export_from_backup(&m, e) : export_repo(&m, e))) goto out;
    if ((rc = create_account(&m, e))) goto out;
    if ((rc = import_and_fetch(&m, e))) goto out;
    if ((rc = upload_blobs(&m, e))) goto out;
    pack_start(&m); /* if not started after the downloads (a resumed run), or to pack again */
    if ((rc = copy_preferences(&m, e))) goto out;
    if ((rc = mig_update_identity(&m, e))) goto out;
    rep->identity_updated = true;
    if ((rc = mig_verify(&m, e))) goto out;
    if ((rc = activate_new(&m, e))) goto out;
    if ((rc = set_handle(&m, e))) goto out;
    if ((rc = deactivate_old(&m, e))) goto out;
    request_crawl(&m);
    if ((rc = keep_archive(&m, e))) goto out;

    journal_blob_counts c;
    if (journal_blob_counts_get(o->j, m.run.id, &c, NULL) == ERR_OK) {
        rep->blobs_total = (unsigned long long)c.total;
        rep->blobs_done = (unsigned long long)c.done;
        rep->blobs_failed = (unsigned long long)c.failed;
        rep->blob_bytes = (unsigned long long)c.done_bytes;
    }
    char n[32];
    if (journal_kv_get(o->j, m.run.id, "records", n, sizeof n, NULL) == ERR_OK) rep->records = strtoull(n, NULL, 10);
    rc = journal_run_finish(o->j, m.run.id, e);
out:
    if (rc == ERR_RATELIMIT && e) {
        note_rate_limit(&m, e);
    } else if (rep->run_started) { /* an earlier stop's note no longer holds */
        char was[32] = "";
        if (journal_kv_get(o->j, m.run.id, "limit_reset_at", was, sizeof was, NULL) == ERR_OK && was[0])
            journal_kv_set(o->j, m.run.id, "limit_reset_at", "", NULL);
    }
    prefetch_take(&m, NULL, NULL); /* preflight failed, a dry run, or the export was never reached */
    if (m.pack) { /* a step after the uploads failed: keep what was packed for the re-run */
        char ignore[SNAPSHOT_PATH_MAX];
        pack_finish(&m, ignore, sizeof ignore, NULL);
    }
    json_decref(m.doc);
    pds_session_free(m.old);
    pds_session_free(m.neu);
    return rc;
}
