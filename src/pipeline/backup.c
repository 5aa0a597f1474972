/* backup.c — one backup run (see backup.h): resolve → repo (full or since the base snapshot)
 * → blobs not stored yet → the small files → pack → index. Journaled in DIR/journals/<did>.sqlite so
 * a killed run continues with the same snapshot; the archive appears only complete (snapshot.c
 * writes it under a temporary name), and the index learns about it only after that. */
#include "pdsmove/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/blob_transfer.h"
#include "pdsmove/identity.h"
#include "pdsmove/journal.h"
#include "pdsmove/pds.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"

typedef struct {
    const backup_opts *o;
    backup_report *rep;
    journal *j;
    journal_run run;
    backup_index *idx;
    identity_doc id;
    json_t *doc;
    pds_session *s;
    char pds[512];
    backup_snapshot base;      /* valid when has_base */
    bool has_base;
    backup_snapshot snap;      /* the one being made */
    char work[BACKUP_PATH_MAX];
    char car[BACKUP_PATH_MAX];
    char blob_dir[BACKUP_PATH_MAX];
} bctx;

static void info(bctx *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void info(bctx *b, const char *fmt, ...) {
    if (!b->o->ui.info) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    b->o->ui.info(b->o->ui.ctx, "%s", line);
}

static bool begin_step(bctx *b, const char *step) {
    char detail[512];
    journal_step_status st;
    if (journal_step_get(b->j, b->run.id, step, &st, detail, sizeof detail, NULL) == ERR_OK && st == STEP_DONE) {
        if (b->o->ui.step) b->o->ui.step(b->o->ui.ctx, step, STEP_DONE, detail[0] ? detail : "already done");
        return false;
    }
    journal_step_set(b->j, b->run.id, step, STEP_RUNNING, NULL, NULL);
    if (b->o->ui.step) b->o->ui.step(b->o->ui.ctx, step, STEP_RUNNING, NULL);
    return true;
}

static err_code end_step(bctx *b, const char *step, err_code rc, const char *detail, err_t *e) {
    if (rc) {
        journal_step_set(b->j, b->run.id, step, STEP_FAILED, e ? e->msg : "", NULL);
        if (b->o->ui.step) b->o->ui.step(b->o->ui.ctx, step, STEP_FAILED, e ? e->msg : "");
        return rc;
    }
    rc = journal_step_set(b->j, b->run.id, step, STEP_DONE, detail, e);
    if (!rc && b->o->ui.step) b->o->ui.step(b->o->ui.ctx, step, STEP_DONE, detail);
    return rc;
}

static xrpc_options xo(const bctx *b) {
    return (xrpc_options){.allow_insecure_http = b->o->allow_insecure_http, .on_wait = b->o->ui.wait, .wait_ctx = b->o->ui.ctx};
}

/* ---- the snapshot's identity: resumed from the journal or new ---- */

static err_code plan(bctx *b, err_t *e) {
    const backup_opts *o = b->o;
    char v[JOURNAL_VALUE_MAX];
    if (journal_kv_get(b->j, b->run.id, "snapshot_id", v, sizeof v, NULL) == ERR_OK) {
        /* a killed run: same snapshot, same base */
        snprintf(b->snap.id, sizeof b->snap.id, "%s", v);
        journal_kv_get(b->j, b->run.id, "created_at", b->snap.created_at, sizeof b->snap.created_at, NULL);
        if (journal_kv_get(b->j, b->run.id, "base_id", v, sizeof v, NULL) == ERR_OK && v[0])
            b->has_base = backup_index_get(b->idx, v, &b->base, NULL) == ERR_OK;
        info(b, "resuming the unfinished backup %s", b->snap.id);
    } else {
        b->has_base = !o->full && backup_index_latest(b->idx, b->id.did, &b->base, NULL) == ERR_OK;
        time_t now = time(NULL);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime(&now));
        strftime(b->snap.created_at, sizeof b->snap.created_at, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        char safe[256];
        snprintf(safe, sizeof safe, "%s", b->id.did);
        for (char *p = safe; *p; p++)
            if (*p == ':') *p = '_';
        snprintf(b->snap.id, sizeof b->snap.id, "%s-%s", safe, stamp);
        backup_snapshot clash;
        for (int n = 2; n < 100 && backup_index_get(b->idx, b->snap.id, &clash, NULL) == ERR_OK; n++)
            snprintf(b->snap.id, sizeof b->snap.id, "%s-%s-%d", safe, stamp, n); /* two runs within a second */
        err_code rc = journal_tx_begin(b->j, e);
        if (!rc) rc = journal_kv_set(b->j, b->run.id, "snapshot_id", b->snap.id, e);
        if (!rc) rc = journal_kv_set(b->j, b->run.id, "created_at", b->snap.created_at, e);
        if (!rc) rc = journal_kv_set(b->j, b->run.id, "base_id", b->has_base ? b->base.id : "", e);
        if (rc) {
            journal_tx_rollback(b->j);
            return rc;
        }
        if ((rc = journal_tx_commit(b->j, e))) return rc;
    }
    snprintf(b->snap.did, sizeof b->snap.did, "%s", b->id.did);
    b->snap.incremental = b->has_base;
    snprintf(b->snap.base_id, sizeof b->snap.base_id, "%s", b->has_base ? b->base.id : "");
    snprintf(b->work, sizeof b->work, "%s/.work-%s", o->dir, b->snap.id);
    snprintf(b->car, sizeof b->car, "%s/repo.car", b->work);
    snprintf(b->blob_dir, sizeof b->blob_dir, "%s/blobs", b->work);
    if (mkdir(b->work, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", b->work, strerror(errno));
    return ERR_OK;
}

/* ---- repo ---- */

static err_code step_repo(bctx *b, err_t *e) {
    const char *step = "repo";
    struct stat st;
    char v[128];
    if (!begin_step(b, step)) {
        if (stat(b->car, &st) == 0) {
            /* facts of the done step come back from the journal */
            journal_kv_get(b->j, b->run.id, "rev", b->snap.rev, sizeof b->snap.rev, NULL);
            journal_kv_get(b->j, b->run.id, "commit", b->snap.commit, sizeof b->snap.commit, NULL);
            journal_kv_get(b->j, b->run.id, "data_root", b->snap.data_root, sizeof b->snap.data_root, NULL);
            if (journal_kv_get(b->j, b->run.id, "records", v, sizeof v, NULL) == ERR_OK) b->snap.records = atoll(v);
            return ERR_OK;
        }
        journal_step_set(b->j, b->run.id, step, STEP_RUNNING, NULL, NULL);
    }
    char part[BACKUP_PATH_MAX + 8];
    snprintf(part, sizeof part, "%s.part", b->car);
    int fd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return end_step(b, step, err_set(e, ERR_IO, "cannot create %s: %s", part, strerror(errno)), NULL, e);
    xrpc_param p[] = {{"did", b->id.did}, {"since", b->has_base ? b->base.rev : NULL}, {NULL, NULL}};
    uint64_t bytes = 0;
    err_code rc = pds_query_to_fd(b->s, "com.atproto.sync.getRepo", p, fd, &bytes, e);
    if (rc && xrpc_last_status(b->s->c) == 400 && strstr(e->msg, "RepoDeactivated"))
        err_wrap(e, "the account is deactivated on %s: give --password-file to read it with authentication", b->pds);
    repo_summary sum;
    key_pub keys[1];
    if (!rc && !b->id.has_signing_key) rc = err_set(e, ERR_REMOTE, "%s's DID document has no atproto signing key", b->id.did);
    if (!rc) {
        keys[0] = b->id.signing_pub;
        rc = b->has_base ? repo_verify_diff_car(fd, keys, 1, &sum, e) : repo_verify_car(fd, keys, 1, NULL, NULL, &sum, e);
        char root[CID_STR_MAX];
        cid_format(&sum.commit, root, sizeof root);
        if (rc == ERR_NOT_FOUND && b->has_base && !strcmp(root, b->base.commit)) {
            /* unchanged since the base: the diff holds no blocks, its root is the base's commit */
            rc = ERR_OK;
            snprintf(sum.did, sizeof sum.did, "%s", b->id.did);
            snprintf(sum.rev, sizeof sum.rev, "%s", b->base.rev);
            cid_parse(&sum.data, b->base.data_root, NULL);
        }
        if (rc) err_wrap(e, "the repository served by %s does not verify", b->pds);
    }
    if (!rc && fsync(fd) != 0) rc = err_set(e, ERR_IO, "fsync %s: %s", part, strerror(errno));
    close(fd);
    if (!rc && strcmp(sum.did, b->id.did)) rc = err_set(e, ERR_MISMATCH, "the PDS returned the repository of %s", sum.did);
    if (!rc && rename(part, b->car) != 0) rc = err_set(e, ERR_IO, "rename %s: %s", part, strerror(errno));
    if (rc) {
        unlink(part);
        return end_step(b, step, rc, NULL, e);
    }
    cid_format(&sum.commit, b->snap.commit, sizeof b->snap.commit);
    cid_format(&sum.data, b->snap.data_root, sizeof b->snap.data_root);
    snprintf(b->snap.rev, sizeof b->snap.rev, "%s", sum.rev);
    b->snap.records = b->has_base ? -1 : (int64_t)sum.records; /* a diff: the count is known after assembly (verify) */
    char rec[32];
    snprintf(rec, sizeof rec, "%lld", (long long)b->snap.records);
    journal_kv_set(b->j, b->run.id, "rev", b->snap.rev, NULL);
    journal_kv_set(b->j, b->run.id, "commit", b->snap.commit, NULL);
    journal_kv_set(b->j, b->run.id, "data_root", b->snap.data_root, NULL);
    journal_kv_set(b->j, b->run.id, "records", rec, NULL);
    char detail[300];
    if (b->has_base)
        snprintf(detail, sizeof detail, "%s since rev %s: %llu blocks, %.1f KiB, commit signature valid",
                 strcmp(b->base.rev, sum.rev) ? "changes" : "no changes", b->base.rev, (unsigned long long)sum.blocks,
                 (double)bytes / 1024.0);
    else
        snprintf(detail, sizeof detail, "%llu records, %llu blocks, %.1f MiB, rev %s, signature valid",
                 (unsigned long long)sum.records, (unsigned long long)sum.blocks, (double)bytes / 1048576.0, sum.rev);
    return end_step(b, step, ERR_OK, detail, e);
}

/* ---- blobs: the complete list (blob-list.txt) and the ones not stored yet ---- */

static err_code step_blobs(bctx *b, err_t *e) {
    const char *step = "blobs";
    if (!begin_step(b, step)) return ERR_OK;
    char list_path[BACKUP_PATH_MAX + 16], tmp[BACKUP_PATH_MAX + 24];
    snprintf(list_path, sizeof list_path, "%s/blob-list.txt", b->work);
    snprintf(tmp, sizeof tmp, "%s.tmp", list_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return end_step(b, step, err_set(e, ERR_IO, "cannot create %s: %s", tmp, strerror(errno)), NULL, e);
    char cursor[256] = "";
    err_code rc = ERR_OK;
    int64_t total = 0, queued = 0;
    for (int page = 0; page < 100000 && !rc; page++) {
        xrpc_param p[] = {{"did", b->id.did}, {"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *out = NULL;
        rc = pds_query(b->s, "com.atproto.sync.listBlobs", p, &out, e);
        if (rc) break;
        json_t *cids = json_object_get(out, "cids");
        size_t i;
        json_t *v;
        journal_tx_begin(b->j, NULL);
        json_array_foreach(cids, i, v) {
            const char *c = json_string_value(v);
            cid_t cv;
            if (!c || cid_parse(&cv, c, NULL) || cv.codec != CID_CODEC_RAW) {
                rc = err_set(e, ERR_REMOTE, "listBlobs returned an invalid blob CID");
                break;
            }
            fprintf(f, "%s\n", c);
            total++;
            char where[BACKUP_ID_MAX];
            if (backup_index_blob_where(b->idx, b->id.did, c, where, sizeof where, NULL) == ERR_OK) continue;
            journal_blob_add(b->j, b->run.id, c, -1, NULL);
            queued++;
        }
        journal_tx_commit(b->j, NULL);
        const char *next = json_string_value(json_object_get(out, "cursor"));
        bool more = next && *next && json_array_size(cids) > 0 && strcmp(next, cursor);
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(out);
        if (!more) break;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = rc ? rc : err_set(e, ERR_IO, "writing %s failed", tmp);
    fclose(f);
    if (!rc && rename(tmp, list_path) != 0) rc = err_set(e, ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc) return end_step(b, step, rc, NULL, e);
    b->snap.blobs_total = total;
    if (queued) info(b, "%lld of %lld blobs are new", (long long)queued, (long long)total);
    blob_transfer t = {.phase = BLOB_PHASE_FETCH, .src = b->s, .did = b->id.did, .dir = b->blob_dir, .jobs = b->o->jobs,
                       .xo = xo(b), .j = b->j, .run_id = b->run.id};
    rc = blob_transfer_run(&t, e);
    journal_blob_counts c;
    journal_blob_counts_get(b->j, b->run.id, &c, NULL);
    if (!rc && c.fetched < c.total)
        rc = err_set(e, ERR_REMOTE, "%lld blob(s) could not be downloaded; run the backup again to retry",
                     (long long)(c.total - c.fetched));
    b->snap.blobs_new = c.fetched;
    char detail[200];
    snprintf(detail, sizeof detail, "%lld blobs, %lld new (%.1f MiB), each hash-checked", (long long)total, (long long)c.fetched,
             (double)c.fetched_bytes / 1048576.0);
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)total);
    journal_kv_set(b->j, b->run.id, "blobs_total", n, NULL);
    return end_step(b, step, rc, detail, e);
}

/* ---- the small files and the manifest ---- */

static err_code step_extras(bctx *b, err_t *e) {
    const char *step = "identity-and-preferences";
    if (!begin_step(b, step)) return ERR_OK;
    err_code rc = b->doc ? snapshot_write_json(b->work, "did-doc.json", b->doc, e) : ERR_OK;
    if (!rc && !strncmp(b->id.did, "did:plc:", 8)) {
        xrpc_options x = xo(b);
        xrpc_client *c = xrpc_client_new(b->o->plc_url ? b->o->plc_url : IDENTITY_DEFAULT_PLC, &x, e);
        if (!c) return end_step(b, step, e->code, NULL, e);
        char path[300];
        snprintf(path, sizeof path, "/%s/log/audit", b->id.did);
        json_t *log = NULL;
        rc = xrpc_get_json(c, path, &log, e);
        xrpc_client_free(c);
        if (!rc) rc = snapshot_write_json(b->work, "plc-audit-log.json", log, e);
        json_decref(log);
    }
    bool prefs = false;
    if (!rc && b->o->password) {
        json_t *out = NULL;
        rc = pds_query(b->s, "app.bsky.actor.getPreferences", NULL, &out, e);
        if (!rc) rc = snapshot_write_json(b->work, "preferences.json", out, e);
        json_decref(out);
        prefs = !rc;
    }
    return end_step(b, step, rc, prefs ? "DID document, PLC audit log, preferences" : "DID document, PLC audit log (no password: no preferences)", e);
}

static err_code write_manifest(bctx *b, err_t *e) {
    char v[64];
    if (journal_kv_get(b->j, b->run.id, "blobs_total", v, sizeof v, NULL) == ERR_OK) b->snap.blobs_total = atoll(v);
    journal_blob_counts c;
    journal_blob_counts_get(b->j, b->run.id, &c, NULL);
    b->snap.blobs_new = c.fetched;
    json_t *man = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:I, s:b}, s:{s:I, s:I, s:s}}",
                            "format", SNAPSHOT_FORMAT, "version", SNAPSHOT_FORMAT_VERSION, "kind",
                            b->snap.incremental ? "incremental" : "full", "id", b->snap.id, "did", b->id.did, "handle",
                            b->id.handle, "source_pds", b->pds, "created_at", b->snap.created_at, "repo", "file", "repo.car",
                            "commit", b->snap.commit, "rev", b->snap.rev, "data_root", b->snap.data_root, "records",
                            (json_int_t)b->snap.records, "diff", b->snap.incremental, "blobs", "listed",
                            (json_int_t)b->snap.blobs_total, "stored_here", (json_int_t)b->snap.blobs_new, "list",
                            "blob-list.txt");
    if (b->snap.incremental) {
        json_object_set_new(man, "base", json_string(b->snap.base_id));
        json_object_set_new(man, "since_rev", json_string(b->base.rev));
    }
    json_object_set_new(man, "tool", json_string("pdsmove " PDSMOVE_VERSION));
    err_code rc = snapshot_write_json(b->work, "manifest.json", man, e);
    json_decref(man);
    return rc;
}

/* ---- pack and index ---- */

typedef struct {
    backup_index *idx;
    const char *did, *snap;
    err_t *e;
    err_code rc;
} blob_rec;

static bool index_stored_blob(void *ctx, const char *cid, int64_t size, const char *error) {
    (void)error;
    blob_rec *r = ctx;
    r->rc = backup_index_add_blob(r->idx, r->did, cid, size, r->snap, r->e);
    return r->rc == ERR_OK;
}

static err_code step_pack(bctx *b, err_t *e) {
    const char *step = "pack";
    if (!begin_step(b, step)) return ERR_OK;
    err_code rc = write_manifest(b, e);
    char snaps[BACKUP_PATH_MAX], base[BACKUP_PATH_MAX], out[SNAPSHOT_PATH_MAX];
    snprintf(snaps, sizeof snaps, "%s/snapshots", b->o->dir);
    if (!rc && mkdir(snaps, 0700) != 0 && errno != EEXIST) rc = err_set(e, ERR_IO, "cannot create %s: %s", snaps, strerror(errno));
    snprintf(base, sizeof base, "%s/%s-%s", snaps, b->snap.id, b->snap.incremental ? "incr" : "full");
    if (!rc) rc = snapshot_pack(b->work, b->snap.id, base, out, e);
    if (rc) return end_step(b, step, rc, NULL, e);
    const char *slash = strrchr(out, '/');
    snprintf(b->snap.archive, sizeof b->snap.archive, "%s", slash ? slash + 1 : out);
    /* the index learns about the archive only now that it is complete */
    rc = backup_index_tx_begin(b->idx, e);
    if (!rc) rc = backup_index_add_snapshot(b->idx, &b->snap, e);
    if (!rc) {
        blob_rec r = {b->idx, b->id.did, b->snap.id, e, ERR_OK};
        rc = journal_blob_each(b->j, b->run.id, BLOB_PENDING, index_stored_blob, &r, e);
        if (!rc) rc = r.rc;
        if (!rc) rc = journal_blob_each(b->j, b->run.id, BLOB_FAILED, index_stored_blob, &r, e);
        if (!rc) rc = r.rc;
    }
    if (!rc) {
        char list_path[BACKUP_PATH_MAX + 16], line[256];
        snprintf(list_path, sizeof list_path, "%s/blob-list.txt", b->work);
        FILE *f = fopen(list_path, "r");
        while (f && !rc && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            if (line[0]) rc = backup_index_add_snapshot_blob(b->idx, b->snap.id, line, e);
        }
        if (f) fclose(f);
    }
    if (rc) {
        backup_index_tx_rollback(b->idx);
        return end_step(b, step, rc, NULL, e);
    }
    if ((rc = backup_index_tx_commit(b->idx, e))) return end_step(b, step, rc, NULL, e);
    struct stat st;
    if (stat(out, &st) == 0) b->rep->archive_bytes = (uint64_t)st.st_size;
    snprintf(b->rep->archive, sizeof b->rep->archive, "%s", out);
    char detail[SNAPSHOT_PATH_MAX + 64];
    snprintf(detail, sizeof detail, "%s (%.1f KiB)", out, (double)b->rep->archive_bytes / 1024.0);
    return end_step(b, step, ERR_OK, detail, e);
}

err_code backup_run(const backup_opts *o, backup_report *rep, err_t *e) {
    memset(rep, 0, sizeof *rep);
    bctx b = {.o = o, .rep = rep};
    if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", o->dir, strerror(errno));
    xrpc_options x = xo(&b);
    err_code rc = identity_resolve(o->account, o->plc_url, o->pds_url, &x, &b.id, &b.doc, e);
    if (rc) return err_wrap(e, "finding the account %s", o->account);
    snprintf(b.pds, sizeof b.pds, "%s", o->pds_url ? o->pds_url : b.id.pds);
    snprintf(rep->did, sizeof rep->did, "%s", b.id.did);
    if (!b.pds[0]) {
        rc = err_set(e, ERR_REMOTE, "%s's DID document names no PDS; give --pds URL", b.id.did);
        goto out;
    }
    /* one journal per account, so backups of several accounts into one directory can run at once */
    char jdir[BACKUP_PATH_MAX], jpath[BACKUP_PATH_MAX + 300], safe[256];
    snprintf(jdir, sizeof jdir, "%s/journals", o->dir);
    if (mkdir(jdir, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", jdir, strerror(errno));
        goto out;
    }
    snprintf(safe, sizeof safe, "%s", b.id.did);
    for (char *q = safe; *q; q++)
        if (*q == ':' || *q == '/') *q = '_';
    snprintf(jpath, sizeof jpath, "%s/%s.sqlite", jdir, safe);
    if ((rc = journal_open(jpath, &b.j, e))) goto out;
    if ((rc = backup_index_open(o->dir, &b.idx, e))) goto out;
    if ((rc = pds_session_new(b.pds, &x, &b.s, e))) goto out;
    if (o->password && (rc = pds_login(b.s, b.id.did, o->password, NULL, e))) {
        err_wrap(e, "logging in to %s", b.pds);
        goto out;
    }
    if ((rc = journal_run_begin(b.j, "backup", b.id.did, &b.run, e))) goto out;
    if ((rc = plan(&b, e))) goto out;
    info(&b, "%s snapshot %s of %s (%s) from %s", b.has_base ? "incremental" : "full", b.snap.id, b.id.did,
         b.id.handle[0] ? b.id.handle : "no handle", b.pds);
    if ((rc = step_repo(&b, e))) goto out;
    if ((rc = step_blobs(&b, e))) goto out;
    if ((rc = step_extras(&b, e))) goto out;
    if ((rc = step_pack(&b, e))) goto out;
    snapshot_remove(b.work, NULL);
    rc = journal_run_finish(b.j, b.run.id, e);
    snprintf(rep->snapshot_id, sizeof rep->snapshot_id, "%s", b.snap.id);
    rep->incremental = b.snap.incremental;
    rep->unchanged = b.has_base && !strcmp(b.base.rev, b.snap.rev);
    rep->records = b.snap.records;
    rep->blobs_total = b.snap.blobs_total;
    rep->blobs_new = b.snap.blobs_new;
out:
    json_decref(b.doc);
    pds_session_free(b.s);
    backup_index_close(b.idx);
    journal_close(b.j);
    return rc;
}
