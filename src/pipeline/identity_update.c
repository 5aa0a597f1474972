/* identity_update.c — migrate's identity step: point the DID at the new PDS with one PLC
 * operation, either signed by the old PDS after the email-token round trip, or signed here
 * with the user's own rotation key and posted to the PLC directory.
 * Must happen once: before acting it reads the DID's audit log; a signed operation is saved
 * in the journal before it is submitted, so a re-run resubmits that same operation instead
 * of asking for a new token — if it still equals what the re-run builds. Whatever is signed is
 * submitted only if it equals the built operation field by field (plc_submit.c). The user's
 * own rotation keys and unrelated services are kept.
 * The emailed token and the audit-log reading are shared with `pdsmove plc` (plc_token.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate_internal.h"
#include "pdsmove/keys.h"
#include "pdsmove/plc.h"
#include "pdsmove/plc_custody.h"
#include "pdsmove/plc_submit.h"
#include "pdsmove/plc_token.h"

static const char *plc_url(const mctx *m) { return m->o->plc_url ? m->o->plc_url : IDENTITY_DEFAULT_PLC; }

/* The DID's current state from its audit log (validated end to end). */
static err_code current_state(mctx *m, plc_state *st, err_t *e) {
    xrpc_options xo = mig_xrpc_options(m);
    err_code rc = plc_audit_fetch(plc_url(m), m->id.did, &xo, st, NULL, e);
    if (rc) return rc;
    if (st->tombstoned) {
        plc_state_free(st);
        return err_set(e, ERR_CONFLICT, "%s is tombstoned (deleted) in the PLC directory", m->id.did);
    }
    return ERR_OK;
}

static bool op_has_key(const plc_op *op, const char *k) {
    for (size_t i = 0; i < op->n_rotation_keys; i++)
        if (!strcmp(op->rotation_keys[i], k)) return true;
    return false;
}

err_code mig_check_rotation_key(mctx *m, err_t *e) {
    key_priv k;
    err_code rc = key_priv_load_file(&k, m->o->rotation_key_file, e);
    if (rc) return err_wrap(e, "reading the rotation key %s", m->o->rotation_key_file);
    char dk[KEY_DID_MAX];
    key_pub_to_did_key(&k.pub, dk, sizeof dk);
    key_priv_wipe(&k);
    plc_state st;
    rc = current_state(m, &st, e);
    if (rc) return rc;
    bool ok = op_has_key(&st.op, dk);
    plc_state_free(&st);
    if (!ok)
        return err_set(e, ERR_USAGE, "the key in %s (%s) is not one of %s's rotation keys, so it cannot sign for it; use the "
                                     "email-token way (drop --rotation-key) or add the key first with `pdsmove plc add-rotation-key`",
                       m->o->rotation_key_file, dk, m->id.did);
    return ERR_OK;
}

/* getRecommendedDidCredentials from a PDS; NULL on failure (e set). */
static json_t *recommended(pds_session *s, err_t *e) {
    json_t *out = NULL;
    if (pds_query(s, "com.atproto.identity.getRecommendedDidCredentials", NULL, &out, e)) return NULL;
    return out;
}

/* The target operation: current state with the new PDS's credentials swapped in; the user's
 * own keys (anything that is neither PDS's key) keep their priority, first. */
static err_code build_target(mctx *m, const plc_state *st, const json_t *rec_new, const json_t *rec_old, plc_op *op, err_t *e) {
    const char *first[1] = {m->o->add_rotation_key}, *old_keys[PLC_MAX_LIST], *new_keys[PLC_MAX_LIST];
    plc_change c;
    err_code rc = plc_change_recommended(rec_new, new_keys, &c, e);
    if (rc) return rc;
    c.first_keys = first;
    c.n_first_keys = m->o->add_rotation_key ? 1 : 0;
    c.drop_keys = old_keys;
    c.n_drop_keys = plc_recommended_keys(rec_old, old_keys);
    c.handle = m->create_handle;
    return plc_submit_build(&st->op, st->last_cid, &c, m->id.did, op, e);
}

/* The old PDS's own rotation keys (it names them in getRecommendedDidCredentials) are dropped
 * from the new operation, but a PDS proves it holds only the key it signs with: a current key
 * the target drops that is not that one (the user's own, if the PDS lied about it) is refused. */
static err_code check_dropped_keys(const mctx *m, const plc_state *st, const plc_op *target, const json_t *signed_op, err_t *e) {
    if (m->o->rotation_key_file) return ERR_OK; /* the user signs: the PDS signs nothing */
    size_t signer;
    err_code rc = plc_submit_check(signed_op, target, &st->op, &signer, NULL, e);
    if (rc) return rc;
    const char *proved = st->op.rotation_keys[signer];
    for (size_t i = 0; i < st->op.n_rotation_keys; i++) {
        const char *k = st->op.rotation_keys[i];
        if (strcmp(k, proved) && !op_has_key(target, k))
            return err_set(e, ERR_MISMATCH, "the old PDS calls %s its own rotation key, but it signed with %s, the only key it "
                                            "proved to hold; nothing was submitted. If the first is yours, keep it: run again "
                                            "adding --add-rotation-key %s --force", k, proved, k);
    }
    return ERR_OK;
}

static bool already_moved(const plc_state *st, const json_t *rec_new) {
    const char *atp = json_string_value(json_object_get(json_object_get(rec_new, "verificationMethods"), "atproto"));
    const char *ep = json_string_value(json_object_get(json_object_get(json_object_get(rec_new, "services"), "atproto_pds"), "endpoint"));
    const plc_service *s = plc_op_service(&st->op, "atproto_pds");
    const char *cur = plc_op_vmethod(&st->op, "atproto");
    return atp && ep && s && cur && !strcmp(cur, atp) && !strcmp(s->endpoint, ep);
}

static void describe(const plc_op *op, char *out, size_t size) {
    size_t n = 0;
    n += (size_t)snprintf(out + n, size - n, "PLC operation to sign:\n  rotation keys (highest priority first):\n");
    for (size_t i = 0; i < op->n_rotation_keys && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "    %zu. %s\n", i, op->rotation_keys[i]);
    const plc_service *s = plc_op_service(op, "atproto_pds");
    if (n < size) n += (size_t)snprintf(out + n, size - n, "  handle: %s\n  PDS: %s\n  signing key: %s\n",
                                        plc_op_handle(op) ? plc_op_handle(op) : "-", s ? s->endpoint : "-",
                                        plc_op_vmethod(op, "atproto") ? plc_op_vmethod(op, "atproto") : "-");
}

static void token_info(void *ctx, const char *msg) { mig_info(ctx, "%s", msg); }

static bool token_ask(void *ctx, const char *prompt, char *out, size_t size) {
    const mctx *m = ctx;
    return m->o->ui.ask_secret(m->o->ui.ctx, prompt, out, size);
}

/* The email-token way: request (only now, after all data is copied), obtain, sign. */
static err_code sign_with_token(mctx *m, const plc_op *target, json_t **signed_op, err_t *e) {
    plc_token_source src = {.did = m->id.did, .token_db = m->o->plc_token_db, .token_file = m->o->plc_token_file,
                            .requested_at = time(NULL), .pds_label = "the old PDS's", .ctx = m, .info = token_info,
                            .ask_secret = m->o->ui.ask_secret ? token_ask : NULL};
    plc_token_note_file(&src);
    err_code rc = pds_procedure(m->old, "com.atproto.identity.requestPlcOperationSignature", NULL, NULL, e);
    if (rc) return err_wrap(e, "asking the old PDS to email the confirmation token");
    mig_info(m, "the old PDS has emailed the account's address a confirmation token (valid 15 minutes)");
    char tok[PLC_TOKEN_MAX] = "";
    if ((rc = plc_token_obtain(&src, tok, sizeof tok, e))) return rc;
    journal_add_secret(m->o->j, tok, NULL); /* a server's error echoing it stays out of the journal */
    rc = plc_token_sign_op(m->old, "the old PDS", target, tok, signed_op, e);
    explicit_bzero(tok, sizeof tok);
    return rc;
}

static err_code sign_with_key(mctx *m, const plc_op *target, json_t **signed_op, err_t *e) {
    key_priv k;
    err_code rc = key_priv_load_file(&k, m->o->rotation_key_file, e);
    if (rc) return rc;
    rc = plc_submit_sign(target, &k, signed_op, e);
    key_priv_wipe(&k);
    return rc;
}

/* The key way posts to the PLC directory itself; the token way through the new PDS. */
static plc_submit_to submit_to(mctx *m, const xrpc_options *xo) {
    plc_submit_to to = {.did = m->id.did, .plc_url = plc_url(m), .xo = xo};
    if (!m->o->rotation_key_file) {
        to.via = m->neu;
        to.via_name = "the new PDS";
    }
    return to;
}

err_code mig_update_identity(mctx *m, err_t *e) {
    const char *step = "identity";
    if (mig_skip_done(m, step)) return ERR_OK;
    err_t e_old;
    json_t *rec_new = recommended(m->neu, e);
    if (!rec_new) return mig_step_failed(m, step, e);
    json_t *rec_old = recommended(m->old, &e_old); /* tells which rotation key is the old PDS's */
    if (!rec_old) mig_info(m, "the old PDS did not say which rotation key is its own (%s); keeping all current keys", e_old.msg);
    plc_state st;
    plc_op target;
    plc_op_init(&target, PLC_OP_REGULAR);
    json_t *signed_op = NULL;
    err_code rc = current_state(m, &st, e);
    if (rc) goto fail_nostate;
    if (already_moved(&st, rec_new)) {
        rc = mig_step_done(m, step, "the DID already points at the new PDS", e);
        goto out;
    }
    if ((rc = build_target(m, &st, rec_new, rec_old, &target, e))) goto fail;

    /* a re-run after a crash between signing and submitting: reuse the saved operation, but
     * only if it is still exactly what this run built */
    err_t why;
    signed_op = plc_submit_saved(m->o->j, m->run.id, "plc_signed_op", &target, &st.op, &why);
    if (signed_op && check_dropped_keys(m, &st, &target, signed_op, &why) != ERR_OK) {
        json_decref(signed_op);
        signed_op = NULL;
    }
    if (signed_op) mig_info(m, "resubmitting the operation signed in the earlier run");
    else if (why.code != ERR_NOT_FOUND) mig_info(m, "not resubmitting the operation saved by the earlier run: %s", why.msg);
    if (!signed_op) {
        char text[2048];
        describe(&target, text, sizeof text);
        if (!m->o->yes && m->o->ui.confirm && !m->o->ui.confirm(m->o->ui.ctx, text)) {
            rc = err_set(e, ERR_CONFLICT, "stopped before the identity change, as asked; run the same command again to continue");
            goto fail;
        }
        rc = m->o->rotation_key_file ? sign_with_key(m, &target, &signed_op, e) : sign_with_token(m, &target, &signed_op, e);
        if (rc) goto fail;
        if ((rc = plc_submit_check(signed_op, &target, &st.op, NULL, NULL, e))) {
            if (rc == ERR_MISMATCH && !m->o->rotation_key_file)
                err_wrap(e, "the old PDS signed an operation other than the one asked for (if a re-run gets the same, "
                            "sign with your own rotation key instead: --rotation-key FILE)");
            goto fail;
        }
        if ((rc = check_dropped_keys(m, &st, &target, signed_op, e))) goto fail;
        if ((rc = plc_submit_save(m->o->j, m->run.id, "plc_signed_op", signed_op, e))) goto fail;
    }
    err_t we; /* noted before it exists, so a `pdsmove plc watch` never sees it as foreign */
    if (plc_watch_expect_op(m->o->watch_state, m->id.did, signed_op, &we) != ERR_OK && we.code != ERR_NOT_FOUND)
        mig_info(m, "warning: could not note the operation for `pdsmove plc watch`: %s", we.msg);
    xrpc_options xo = mig_xrpc_options(m);
    plc_submit_to to = submit_to(m, &xo);
    if ((rc = plc_submit_post(&to, signed_op, &target, &st.op, e))) goto fail;
    if ((rc = journal_kv_set(m->o->j, m->run.id, "plc_submitted", "1", e))) goto fail; /* before and after: see the file comment */
    /* confirm with the directory itself */
    plc_state_free(&st);
    if ((rc = current_state(m, &st, e))) goto fail_nostate;
    if (!already_moved(&st, rec_new)) {
        rc = err_set(e, ERR_CONFLICT, "the PLC directory accepted the operation but does not show the new PDS yet; run again to re-check");
        goto fail;
    }
    char detail[400];
    snprintf(detail, sizeof detail, "DID document now points at %s (%zu rotation keys; op %s)", m->o->to_url,
             st.op.n_rotation_keys, st.last_cid);
    rc = mig_step_done(m, step, detail, e);
    goto out;
fail:
    plc_state_free(&st);
fail_nostate:
    json_decref(signed_op);
    json_decref(rec_new);
    json_decref(rec_old);
    plc_op_free(&target);
    return mig_step_failed(m, step, e);
out:
    plc_state_free(&st);
    json_decref(signed_op);
    json_decref(rec_new);
    json_decref(rec_old);
    plc_op_free(&target);
    return rc;
}
