/* migrate_verify.c — migrate's verify step: checks the new PDS independently of what it says
 * about itself (checkAccountStatus is not trusted): its repository is fetched and verified
 * (hashes, MST, commit signature by the new signing key) and its record set compared with
 * the export, entry by entry; no blob is missing; the DID document names the new PDS. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migrate_internal.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"

typedef struct {
    FILE *old;          /* records-old.tsv, read in step with the walk */
    uint64_t n;
    char first_diff[600];
} compare_ctx;

static err_code compare_record(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data,
                               size_t len, err_t *e) {
    compare_ctx *c = ctx;
    (void)data;
    (void)len;
    char line[700], want[700], cs[CID_STR_MAX];
    cid_format(cid, cs, sizeof cs);
    snprintf(want, sizeof want, "%.*s\t%s\n", (int)key_len, key, cs);
    c->n++;
    if (!fgets(line, sizeof line, c->old)) {
        snprintf(c->first_diff, sizeof c->first_diff, "the new PDS has a record the export lacks: %.*s", (int)key_len, key);
        return err_set(e, ERR_MISMATCH, "%s", c->first_diff);
    }
    if (strcmp(line, want)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(c->first_diff, sizeof c->first_diff, "record %zu differs: exported '%s', new PDS has '%.*s %s'", (size_t)c->n,
                 line, (int)key_len, key, cs);
        return err_set(e, ERR_MISMATCH, "%s", c->first_diff);
    }
    return ERR_OK;
}

static err_code check_blob_set(mctx *m, err_t *e) {
    err_code rc = journal_blob_clear_seen(m->o->j, m->run.id, e);
    char cursor[256] = "";
    int64_t extra = 0;
    for (int page = 0; !rc && page < 100000; page++) {
        xrpc_param p[] = {{"did", m->id.did}, {"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *out = NULL;
        rc = pds_query(m->neu, "com.atproto.sync.listBlobs", p, &out, e);
        if (rc) return err_wrap(e, "listing the blobs on the new PDS");
        json_t *cids = json_object_get(out, "cids");
        size_t i;
        json_t *v;
        journal_tx_begin(m->o->j, NULL);
        json_array_foreach(cids, i, v) {
            const char *s = json_string_value(v);
            if (s && journal_blob_mark_seen(m->o->j, m->run.id, s, NULL) == ERR_NOT_FOUND) extra++;
        }
        rc = journal_tx_commit(m->o->j, e); /* the marks count_unseen reads */
        const char *next = json_string_value(json_object_get(out, "cursor"));
        bool more = next && *next && json_array_size(cids) > 0 && strcmp(next, cursor);
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(out);
        if (!more) break;
    }
    int64_t unseen = 0;
    char first[128] = "";
    if (!rc) rc = journal_blob_count_unseen(m->o->j, m->run.id, &unseen, first, sizeof first, e);
    if (!rc && unseen) rc = err_set(e, ERR_MISMATCH, "%lld blob(s) of the old PDS are not listed by the new one (first: %s)",
                                    (long long)unseen, first);
    if (!rc && extra) mig_info(m, "the new PDS lists %lld blob(s) the old one did not (not a problem)", (long long)extra);
    return rc;
}

static err_code check_preferences(mctx *m, err_t *e) {
    json_t *want = NULL, *got = NULL;
    err_code rc = snapshot_read_json(m->snap, "preferences.json", &want, e);
    if (rc) return err_wrap(e, "reading the exported preferences");
    rc = pds_query(m->neu, "app.bsky.actor.getPreferences", NULL, &got, e);
    if (!rc && !json_equal(json_object_get(want, "preferences"), json_object_get(got, "preferences")))
        rc = err_set(e, ERR_MISMATCH, "the new PDS's preferences differ from the exported ones");
    json_decref(want);
    json_decref(got);
    return rc;
}

static void show_account_status(mctx *m) {
    json_t *st = NULL;
    if (pds_query(m->neu, "com.atproto.server.checkAccountStatus", NULL, &st, NULL) != ERR_OK) return;
    mig_info(m, "new PDS says (checkAccountStatus, informational): %lld records, %lld/%lld blobs imported, repo rev %s",
             (long long)json_integer_value(json_object_get(st, "indexedRecords")),
             (long long)json_integer_value(json_object_get(st, "importedBlobs")),
             (long long)json_integer_value(json_object_get(st, "expectedBlobs")),
             json_string_value(json_object_get(st, "repoRev")) ? json_string_value(json_object_get(st, "repoRev")) : "?");
    json_decref(st);
}

err_code mig_check_new_repo(const mctx *m, xrpc_client *c, const key_pub *keys, size_t n_keys, const char *want_root,
                            repo_summary *sum, err_t *e) {
    char path[1200], list_path[1200];
    snprintf(path, sizeof path, "%s/repo-new.car", m->work);
    snprintf(list_path, sizeof list_path, "%s/records-old.tsv", m->work);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return err_set(e, ERR_IO, "cannot create %s: %s", path, strerror(errno));
    xrpc_param p[] = {{"did", m->id.did}, {NULL, NULL}};
    uint64_t bytes = 0;
    err_code rc = xrpc_query_to_fd(c, "com.atproto.sync.getRepo", p, fd, &bytes, e);
    compare_ctx cc = {.old = fopen(list_path, "r")};
    if (!rc && !cc.old) rc = err_set(e, ERR_IO, "cannot read %s (the export's record list): %s", list_path, strerror(errno));
    if (!rc) rc = repo_verify_car(fd, keys, n_keys, compare_record, &cc, sum, e);
    if (!rc) {
        char extra[700];
        if (fgets(extra, sizeof extra, cc.old)) {
            extra[strcspn(extra, "\t")] = 0;
            rc = err_set(e, ERR_MISMATCH, "the new PDS lacks the record %s (and maybe more)", extra);
        }
    }
    if (cc.old) fclose(cc.old);
    close(fd);
    unlink(path);
    char root[CID_STR_MAX];
    if (!rc && want_root && want_root[0]) {
        cid_format(&sum->data, root, sizeof root);
        if (strcmp(root, want_root)) rc = err_set(e, ERR_MISMATCH, "the record tree root differs: exported %s, new PDS %s", want_root, root);
    }
    return rc ? err_wrap(e, "verifying the repository on the new PDS") : ERR_OK;
}

err_code mig_verify(mctx *m, err_t *e) {
    const char *step = "verify";
    if (mig_skip_done(m, step)) return ERR_OK;
    /* 1. the DID document, as the PLC directory serves it now */
    identity_doc now;
    xrpc_options xo = mig_xrpc_options(m);
    err_code rc = identity_resolve_did(m->id.did, m->o->plc_url, &xo, &now, NULL, e);
    if (rc) return mig_step_failed(m, step, e);
    json_t *rec = NULL;
    rc = pds_query(m->neu, "com.atproto.identity.getRecommendedDidCredentials", NULL, &rec, e);
    if (rc) return mig_step_failed(m, step, e);
    const char *want_key = json_string_value(json_object_get(json_object_get(rec, "verificationMethods"), "atproto"));
    const char *want_ep = json_string_value(json_object_get(json_object_get(json_object_get(rec, "services"), "atproto_pds"), "endpoint"));
    char want_pds[512];
    snprintf(want_pds, sizeof want_pds, "%s", want_ep ? want_ep : "");
    size_t wl = strlen(want_pds);
    while (wl && want_pds[wl - 1] == '/') want_pds[--wl] = 0;
    bool key_ok = want_key && !strcmp(want_key, now.signing_key);
    json_decref(rec);
    if (strcmp(now.pds, want_pds) || !key_ok) {
        err_set(e, ERR_MISMATCH, "the DID document names PDS %s and key %s, not the new PDS's %s", now.pds, now.signing_key,
                want_pds);
        return mig_step_failed(m, step, e);
    }
    /* 2. the repository on the new PDS against the export (already done while the blobs
     *    uploaded, when this run did that step: the repo cannot change in between) */
    repo_summary sum;
    if (m->repo_prechecked) {
        sum = m->precheck_sum;
    } else {
        char want_root[CID_STR_MAX] = "";
        journal_kv_get(m->o->j, m->run.id, "old_data_root", want_root, sizeof want_root, NULL);
        /* the imported commit is still the old key's until the new PDS writes its own */
        key_pub keys[3] = {now.signing_pub};
        size_t n_keys = 1 + mig_export_keys(m, keys + 1);
        if ((rc = mig_check_new_repo(m, m->neu->c, keys, n_keys, want_root, &sum, e))) return mig_step_failed(m, step, e);
    }
    /* 3. blobs: every blob listed by the old PDS is listed by the new one */
    if ((rc = check_blob_set(m, e))) return mig_step_failed(m, step, e);
    /* 4. preferences equal to the exported ones */
    if ((rc = check_preferences(m, e))) return mig_step_failed(m, step, e);
    /* 5. what the new PDS says about itself: shown, not trusted alone */
    show_account_status(m);
    char detail[400];
    snprintf(detail, sizeof detail, "%llu records and the tree root identical to the export, commit signed by the %s key, "
                                    "every blob present, preferences equal, DID document points at the new PDS",
             (unsigned long long)sum.records, sum.signed_by == 0 ? "new" : "account's previous (as imported)");
    return mig_step_done(m, step, detail, e);
}
