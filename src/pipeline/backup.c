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

#include "pdsmove/backup_names.h"
#include "pdsmove/blob_transfer.h"
#include "pdsmove/car.h"
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
    const char *credential;    /* what logged in: "password", "app-password" or "none" */
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
    return (xrpc_options){.allow_insecure_http = b->o->allow_insecure_http, .on_wait = b->o->ui.wait, .wait_ctx = b->o->ui.ctx,
                          .wait_for_limits = b->o->wait_for_limits, .on_limit_wait = b->o->ui.limit_wait,
                          .max_download_bytes = b->o->max_repo_bytes};
}

/* ---- the snapshot's identity: resumed from the journal or new ---- */

static err_code plan(bctx *b, err_t *e) {
    const backup_opts *o = b->o;
    char v[JOURNAL_VALUE_MAX];
    if (journal_kv_get(b->j, b->run.id, "snapshot_id", v, sizeof v, NULL) == ERR_OK) {
        /* a killed run: same snapshot, same base (the journal lives in DIR too: its id is checked) */
        if (!backup_name_snapshot_id(v, b->id.did, e)) return err_wrap(e, "the journal of %s in %s/journals", b->id.did, o->dir);
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
        /* runs within one second: "-02" … "-99", two digits so that ids sort in run order (the
         * index orders by created_at, then id; "-10" would sort before "-2") */
        backup_snapshot clash;
        int n = 2;
        for (; n <= 100 && backup_index_get(b->idx, b->snap.id, &clash, NULL) == ERR_OK; n++)
            snprintf(b->snap.id, sizeof b->snap.id, "%s-%s-%02d", safe, stamp, n);
        if (n > 100) return err_set(e, ERR_CONFLICT, "99 snapshots of %s within one second already: run the backup again", b->id.did);
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
    /* the base comes from the index, a file of DIR: its names are checked before the chain
     * walk joins them into paths */
    char where[BACKUP_PATH_MAX + 32];
    snprintf(where, sizeof where, "backup index %s/index.sqlite", o->dir);
    if (b->has_base && backup_snapshot_check(&b->base, where, e)) return e->code;
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
    if (rc == ERR_LIMIT) err_wrap(e, "downloading the repository (if it really is that large, give a larger --max-repo-bytes)");
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
    /* a diff: the whole repo's count is known once the blobs step has walked it (or -1) */
    b->snap.records = b->has_base ? -1 : (int64_t)sum.records;
    char rec[32];
    snprintf(rec, sizeof rec, "%lld", (long long)b->snap.records);
    if ((rc = journal_kv_set(b->j, b->run.id, "rev", b->snap.rev, e)) ||
        (rc = journal_kv_set(b->j, b->run.id, "commit", b->snap.commit, e)) ||
        (rc = journal_kv_set(b->j, b->run.id, "data_root", b->snap.data_root, e)) ||
        (rc = journal_kv_set(b->j, b->run.id, "records", rec, e)))
        return end_step(b, step, rc, NULL, e);
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

/* ---- blobs: the complete list (blob-list.txt) and the ones not stored yet ----
 * A full run lists every blob (listBlobs). An incremental run asks only for the blobs of the
 * records changed since the base's rev (listBlobs?since=) and computes the complete list
 * itself from the snapshot's whole repo: `since` cannot tell which blobs stopped being
 * referenced (deleted records), and listing every blob each night is what incremental runs
 * avoid. The whole repo is the base's (kept in DIR/cache/<did>.repo.car, or merged from the
 * chain's archives when that copy is missing or stale) plus this run's diff. An unchanged
 * repo references the base's blobs: nothing is listed at all. */

#define CIDSET_MAX ((size_t)1 << 24)

/* A set of CID strings: appended, then sorted and de-duplicated once (cidset_seal). Memory
 * grows with the number of blob references (~90 bytes each), the same order as the block
 * index the repo walk already holds (every reference sits in a record block). */
typedef struct {
    char **v;
    size_t n, cap;
} cidset;

static err_code cidset_add(cidset *s, const char *cid, err_t *e) {
    if (s->n == s->cap) {
        if (s->cap >= CIDSET_MAX) return err_set(e, ERR_LIMIT, "more than %zu blob references", CIDSET_MAX);
        size_t cap = s->cap ? s->cap * 2 : 256;
        char **p = realloc(s->v, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory");
        s->v = p;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(cid))) return err_set(e, ERR_NOMEM, "out of memory");
    s->n++;
    return ERR_OK;
}

static int cmp_cid_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* strcmp order: the order the reference PDS lists blobs in (ORDER BY blobCid) */
static void cidset_seal(cidset *s) {
    if (s->n) qsort(s->v, s->n, sizeof *s->v, cmp_cid_str);
    size_t out = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (out && !strcmp(s->v[out - 1], s->v[i])) free(s->v[i]);
        else s->v[out++] = s->v[i];
    }
    s->n = out;
}

static bool cidset_has(const cidset *s, const char *cid) {
    return s->n && bsearch(&cid, s->v, s->n, sizeof *s->v, cmp_cid_str) != NULL;
}

static void cidset_free(cidset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (cidset){0};
}

/* Queues cid for download unless an archive of DIR stores it already; *queued says which. */
static err_code queue_unless_stored(bctx *b, const char *cid, bool *queued, err_t *e) {
    char where[BACKUP_ID_MAX];
    *queued = false;
    if (backup_index_blob_where(b->idx, b->id.did, cid, where, sizeof where, NULL) == ERR_OK) return ERR_OK;
    *queued = true;
    return journal_blob_add(b->j, b->run.id, cid, -1, e);
}

/* Pages through listBlobs (since == NULL: every blob of the account). Each CID goes to out
 * and seen when given, and into the download queue unless stored already. */
static err_code list_blobs(bctx *b, const char *since, FILE *out, cidset *seen, int64_t *listed, int64_t *queued,
                           err_t *e) {
    char cursor[256] = "";
    err_code rc = ERR_OK;
    for (int page = 0; page < 100000 && !rc; page++) {
        xrpc_param p[] = {{"did", b->id.did}, {"since", since}, {"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *res = NULL;
        if ((rc = pds_query(b->s, "com.atproto.sync.listBlobs", p, &res, e))) break;
        json_t *cids = json_object_get(res, "cids");
        size_t i;
        json_t *v;
        if ((rc = journal_tx_begin(b->j, e))) {
            json_decref(res);
            break;
        }
        json_array_foreach(cids, i, v) {
            const char *c = json_string_value(v);
            bool q;
            /* It becomes a file name (blobs/<cid>): only the canonical form of a raw CID. */
            if (!c || !backup_name_cid(c, true, NULL)) {
                rc = err_set(e, ERR_REMOTE, "listBlobs returned an invalid blob CID");
                break;
            }
            if (out && fprintf(out, "%s\n", c) < 0) rc = err_set(e, ERR_IO, "writing the blob list failed");
            if (!rc && seen) rc = cidset_add(seen, c, e);
            if (!rc) rc = queue_unless_stored(b, c, &q, e);
            if (rc) break;
            (*listed)++;
            *queued += q;
        }
        if (rc) journal_tx_rollback(b->j);
        else rc = journal_tx_commit(b->j, e);
        const char *next = json_string_value(json_object_get(res, "cursor"));
        bool more = next && *next && json_array_size(cids) > 0 && strcmp(next, cursor);
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(res);
        if (!more) break;
    }
    if (!rc && seen) cidset_seal(seen);
    return rc;
}

/* An unchanged repo references exactly the blobs of the base: its list, from the index. */
typedef struct {
    bctx *b;
    FILE *out;
    int64_t listed, queued;
    err_t *e;
    err_code rc;
} base_list_ctx;

static bool copy_base_blob(void *ctx, const char *cid, const char *stored_in) {
    base_list_ctx *c = ctx;
    if (!backup_name_cid(cid, true, c->e) || (stored_in[0] && !backup_name_snapshot_id(stored_in, c->b->id.did, c->e))) {
        c->rc = err_wrap(c->e, "the backup index's blobs of %s", c->b->base.id);
        return false;
    }
    if (fprintf(c->out, "%s\n", cid) < 0) c->rc = err_set(c->e, ERR_IO, "writing the blob list failed");
    c->listed++;
    if (!c->rc && !stored_in[0]) { /* stored nowhere (should not happen): fetch it */
        bool q;
        c->rc = queue_unless_stored(c->b, cid, &q, c->e);
        c->queued += q;
    }
    return c->rc == ERR_OK;
}

/* ---- the snapshot's whole repo, for its blob references ---- */

static void cache_paths(const bctx *b, char *cache, char *next, size_t size) {
    char safe[256];
    snprintf(safe, sizeof safe, "%s", b->id.did);
    for (char *q = safe; *q; q++)
        if (*q == ':' || *q == '/') *q = '_';
    snprintf(cache, size, "%s/cache/%s.repo.car", b->o->dir, safe);
    snprintf(next, size, "%s/cache/%s.repo.car.next", b->o->dir, safe);
}

/* Streams every block of the CAR at path into w (hash-checked by the reader). */
static err_code append_car(car_writer *w, const char *path, err_t *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot read %s: %s", path, strerror(errno));
    car_reader *r = NULL;
    err_code rc = car_reader_open(fd, &r, e);
    while (!rc) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        if ((rc = car_reader_next(r, &cid, &data, &len, e)) || !data) break;
        rc = car_writer_put(w, &cid, data, len, e);
    }
    car_reader_free(r);
    close(fd);
    return rc ? err_wrap(e, "%s", path) : ERR_OK;
}

/* Is the CAR at path the whole repo at commit (its root)? Only a valid copy is used; anything
 * else is rebuilt from the archives. */
static bool car_root_is(const char *path, const char *commit) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    car_reader *r = NULL;
    bool same = false;
    if (car_reader_open(fd, &r, NULL) == ERR_OK) {
        size_t n = 0;
        const cid_t *roots = car_reader_roots(r, &n);
        char cs[CID_STR_MAX];
        same = n == 1 && cid_format(&roots[0], cs, sizeof cs) > 0 && !strcmp(cs, commit);
    }
    car_reader_free(r);
    close(fd);
    return same;
}

#define CHAIN_MAX 4096

/* The repo of every archive of the base's chain, one archive unpacked at a time (each is
 * checked against its SHA256SUMS; its blobs are unpacked too, then removed). */
static err_code append_chain(bctx *b, car_writer *w, err_t *e) {
    char tmp[BACKUP_PATH_MAX + 300], archive[BACKUP_PATH_MAX * 2 + 16], car[BACKUP_PATH_MAX + 320], top[BACKUP_ID_MAX];
    snprintf(tmp, sizeof tmp, "%s/cache/.unpack-%s", b->o->dir, b->snap.id);
    backup_snapshot s = b->base;
    err_code rc = ERR_OK;
    for (int n = 0; !rc; n++) {
        if (n == CHAIN_MAX) return err_set(e, ERR_LIMIT, "the chain of %s is longer than %d snapshots", b->base.id, CHAIN_MAX);
        snprintf(archive, sizeof archive, "%s/snapshots/%s", b->o->dir, s.archive);
        snapshot_remove(tmp, NULL); /* left by a killed run */
        snapshot_unpack_opts uo = {.expect_top = s.id}; /* s and its base: rows the index checked */
        rc = snapshot_unpack(archive, tmp, &uo, top, sizeof top, e);
        snprintf(car, sizeof car, "%s/repo.car", tmp);
        if (!rc) rc = append_car(w, car, e);
        snapshot_remove(tmp, NULL);
        if (rc || !s.incremental) break;
        char base_id[BACKUP_ID_MAX];
        snprintf(base_id, sizeof base_id, "%s", s.base_id);
        if ((rc = backup_index_get(b->idx, base_id, &s, e)))
            err_wrap(e, "snapshot %s builds on %s, which is gone", s.id, base_id);
        else if ((rc = backup_snapshot_check(&s, "the backup index", e)) == ERR_OK && strcmp(s.did, b->id.did))
            rc = err_set(e, ERR_INVALID, "the backup index: snapshot %s builds on one of another account", base_id);
    }
    return rc;
}

static err_code collect_ref(void *ctx, const cid_t *cid, int64_t size_bytes, err_t *e) {
    (void)size_bytes;
    if (cid->codec != CID_CODEC_RAW) return ERR_OK; /* not a blob a PDS stores (listBlobs has only raw CIDs) */
    char cs[CID_STR_MAX];
    cid_format(cid, cs, sizeof cs);
    return cidset_add(ctx, cs, e);
}

static err_code collect_record_refs(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data,
                                    size_t len, err_t *e) {
    (void)cid;
    err_code rc = repo_record_blob_refs(data, len, collect_ref, ctx, e);
    return rc ? err_wrap(e, "record %.*s", (int)key_len, key) : ERR_OK;
}

/* Writes the whole repo at this snapshot's commit to the cache's ".next" file (the base's
 * whole repo + the diff), checks it like a full download (every block, the signature, the
 * MST complete) and collects the blob references of every record into refs (sealed). The
 * local cost: reading and writing the whole repo once, the block index (bounded: it spills to $TMPDIR past 16 MiB, docs/architecture.md). */
static err_code whole_repo_refs(bctx *b, bool from_cache, cidset *refs, err_t *e) {
    char cache[BACKUP_PATH_MAX + 300], next[BACKUP_PATH_MAX + 300], cdir[BACKUP_PATH_MAX + 16];
    cache_paths(b, cache, next, sizeof cache);
    snprintf(cdir, sizeof cdir, "%s/cache", b->o->dir);
    if (mkdir(cdir, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", cdir, strerror(errno));
    cid_t root;
    err_code rc = cid_parse(&root, b->snap.commit, e);
    if (rc) return rc;
    int fd = open(next, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return err_set(e, ERR_IO, "cannot create %s: %s", next, strerror(errno));
    car_writer *w = NULL;
    rc = car_writer_new(fd, &root, &w, e);
    if (!rc) rc = from_cache ? append_car(w, cache, e) : append_chain(b, w, e);
    if (!rc) rc = append_car(w, b->car, e);
    if (!rc) rc = car_writer_finish(w, e);
    car_writer_free(w);
    repo_summary *sum = rc ? NULL : malloc(sizeof *sum);
    if (!rc && !sum) rc = err_set(e, ERR_NOMEM, "out of memory");
    if (!rc && (rc = repo_verify_car(fd, &b->id.signing_pub, 1, collect_record_refs, refs, sum, e)))
        err_wrap(e, "the repository at %s (%s + this run's changes)", b->snap.commit, from_cache ? "the local copy" : "the archives");
    if (!rc) b->snap.records = (int64_t)sum->records; /* the whole repo's, for the manifest and the index */
    free(sum);
    if (!rc && fsync(fd) != 0) rc = err_set(e, ERR_IO, "fsync %s: %s", next, strerror(errno));
    close(fd);
    if (rc) {
        unlink(next);
        for (size_t i = 0; i < refs->n; i++) free(refs->v[i]);
        refs->n = 0;
        return rc;
    }
    cidset_seal(refs);
    return ERR_OK;
}

/* The whole repo's references; the local copy of the base's repo first, the archives when it
 * is missing, stale or damaged. */
static err_code local_blob_list(bctx *b, cidset *refs, const char **source, err_t *e) {
    char cache[BACKUP_PATH_MAX + 300], next[BACKUP_PATH_MAX + 300];
    cache_paths(b, cache, next, sizeof cache);
    if (car_root_is(cache, b->base.commit)) {
        err_t ce = {0};
        if (whole_repo_refs(b, true, refs, &ce) == ERR_OK) {
            *source = "the local copy of the base's repo";
            return ERR_OK;
        }
        info(b, "the local copy of the repo at %s is unusable (%s): rebuilding it from the archives", b->base.id, ce.msg);
        unlink(cache);
    } else {
        info(b, "no local copy of the repo at %s: rebuilding it from the chain's archives (each unpacked once)", b->base.id);
    }
    *source = "the chain's archives";
    return whole_repo_refs(b, false, refs, e);
}

/* Incremental: fetch what listBlobs?since= names; the list is the whole repo's references,
 * and any of them stored nowhere and not named by `since` is fetched too (a safety net). */
static err_code incremental_blob_list(bctx *b, FILE *out, int64_t *total, int64_t *queued, char *how, size_t how_size,
                                      err_t *e) {
    cidset since = {0}, refs = {0};
    int64_t n_since = 0, n_full = 0;
    bool since_ok = false;
    err_t le = {0};
    if (!b->base.rev[0])
        info(b, "the base snapshot %s has no rev: listing every blob", b->base.id);
    else if (list_blobs(b, b->base.rev, NULL, &since, &n_since, queued, &le) == ERR_OK)
        since_ok = true;
    else
        info(b, "listBlobs since rev %s failed (%s): listing every blob instead", b->base.rev, le.msg);
    const char *source = "";
    bool local_ok = local_blob_list(b, &refs, &source, &le) == ERR_OK;
    if (!local_ok) info(b, "cannot compute the blob list from the repo (%s): taking it from a full listing", le.msg);
    err_code rc = ERR_OK;
    if (!since_ok || !local_ok) rc = list_blobs(b, NULL, local_ok ? NULL : out, NULL, &n_full, queued, e);
    int64_t missed = 0; /* stored nowhere, yet not named by listBlobs?since= */
    if (!rc && local_ok) {
        if ((rc = journal_tx_begin(b->j, e))) goto out;
        for (size_t i = 0; i < refs.n && !rc; i++) {
            bool q;
            if (fprintf(out, "%s\n", refs.v[i]) < 0) rc = err_set(e, ERR_IO, "writing the blob list failed");
            if (!rc) rc = queue_unless_stored(b, refs.v[i], &q, e);
            if (!rc && q && since_ok && !cidset_has(&since, refs.v[i])) {
                missed++;
                (*queued)++;
            }
        }
        if (rc) journal_tx_rollback(b->j);
        else rc = journal_tx_commit(b->j, e);
        if (!rc && missed)
            info(b, "%lld blob(s) the records reference were not listed since rev %s and are stored nowhere: fetching them too",
                 (long long)missed, b->base.rev);
    }
    if (rc) goto out;
    *total = local_ok ? (int64_t)refs.n : n_full;
    if (local_ok && since_ok)
        snprintf(how, how_size, "%lld listed since rev %s; the list computed from the repo: %s + changes", (long long)n_since,
                 b->base.rev, source);
    else if (local_ok)
        snprintf(how, how_size, "listed in full by listBlobs; the list computed from the repo: %s + changes", source);
    else
        snprintf(how, how_size, "listed in full by listBlobs%s", since_ok ? " after a listing since the base's rev" : "");
out:
    cidset_free(&since);
    cidset_free(&refs);
    return rc;
}

static err_code step_blobs(bctx *b, err_t *e) {
    const char *step = "blobs";
    if (!begin_step(b, step)) return ERR_OK;
    char list_path[BACKUP_PATH_MAX + 16], tmp[BACKUP_PATH_MAX + 24];
    snprintf(list_path, sizeof list_path, "%s/blob-list.txt", b->work);
    snprintf(tmp, sizeof tmp, "%s.tmp", list_path);
    FILE *f = fopen(tmp, "w");
    if (!f) return end_step(b, step, err_set(e, ERR_IO, "cannot create %s: %s", tmp, strerror(errno)), NULL, e);
    err_code rc = ERR_OK;
    int64_t total = 0, queued = 0;
    char how[400] = "";
    if (!b->has_base) {
        rc = list_blobs(b, NULL, f, NULL, &total, &queued, e);
        snprintf(how, sizeof how, "listed in full by listBlobs");
        /* the whole repo is this run's CAR: the next incremental run's starting point */
        char cache[BACKUP_PATH_MAX + 300], next[BACKUP_PATH_MAX + 300], cdir[BACKUP_PATH_MAX + 16];
        cache_paths(b, cache, next, sizeof cache);
        snprintf(cdir, sizeof cdir, "%s/cache", b->o->dir);
        unlink(next);
        if (!rc && (mkdir(cdir, 0700) == 0 || errno == EEXIST)) (void)link(b->car, next); /* optional: rebuilt when absent */
    } else if (!strcmp(b->base.rev, b->snap.rev)) {
        base_list_ctx c = {.b = b, .out = f, .e = e};
        rc = journal_tx_begin(b->j, e);
        if (!rc) rc = backup_index_snapshot_blobs(b->idx, b->base.id, copy_base_blob, &c, e);
        if (!rc) rc = c.rc;
        if (rc) journal_tx_rollback(b->j);
        else rc = journal_tx_commit(b->j, e);
        total = c.listed;
        queued = c.queued;
        b->snap.records = b->base.records; /* the same repo (-1 if the base's count is unknown) */
        snprintf(how, sizeof how, "as in %s; repo unchanged: nothing listed", b->base.id);
    } else {
        rc = incremental_blob_list(b, f, &total, &queued, how, sizeof how, e);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = rc ? rc : err_set(e, ERR_IO, "writing %s failed", tmp);
    fclose(f);
    if (!rc && rename(tmp, list_path) != 0) rc = err_set(e, ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc) return end_step(b, step, rc, NULL, e);
    b->snap.blobs_total = total;
    if (queued) info(b, "%lld of %lld blobs are new", (long long)queued, (long long)total);
    blob_transfer t = {.phase = BLOB_PHASE_FETCH, .src = b->s, .did = b->id.did, .dir = b->blob_dir, .jobs = b->o->jobs,
                       .xo = xo(b), .j = b->j, .run_id = b->run.id};
    rc = journal_blob_reset_attempts(b->j, b->run.id, e); /* a re-run retries what failed before */
    if (!rc) rc = blob_transfer_run(&t, e);
    journal_blob_counts c;
    journal_blob_counts_get(b->j, b->run.id, &c, NULL);
    if (!rc && c.fetched < c.total)
        rc = err_set(e, ERR_REMOTE, "%lld blob(s) could not be downloaded; run the backup again to retry",
                     (long long)(c.total - c.fetched));
    b->snap.blobs_new = c.fetched;
    char detail[600];
    snprintf(detail, sizeof detail, "%lld blobs (%s), %lld new (%.1f MiB), each hash-checked", (long long)total, how,
             (long long)c.fetched, (double)c.fetched_bytes / 1048576.0);
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)total);
    if (!rc) rc = journal_kv_set(b->j, b->run.id, "blobs_total", n, e);
    if (b->has_base) { /* known now if the whole repo was walked: a resumed run reads it back (step_repo) */
        snprintf(n, sizeof n, "%lld", (long long)b->snap.records);
        if (!rc) rc = journal_kv_set(b->j, b->run.id, "records", n, e);
    }
    return end_step(b, step, rc, detail, e);
}

/* After the index has the snapshot: its whole repo becomes the local copy the next
 * incremental run starts from. */
static void promote_cache(bctx *b) {
    char cache[BACKUP_PATH_MAX + 300], next[BACKUP_PATH_MAX + 300];
    cache_paths(b, cache, next, sizeof cache);
    if (car_root_is(next, b->snap.commit)) rename(next, cache);
    else unlink(next);
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
    /* the manifest says which kind of credential read this snapshot, also after a resume */
    if (!rc) rc = journal_kv_set(b->j, b->run.id, "credential", b->credential, e);
    const char *what = !prefs ? "DID document, PLC audit log (no password: no preferences)"
                       : strcmp(b->credential, "app-password")
                           ? "DID document, PLC audit log, preferences"
                           : "DID document, PLC audit log, preferences (app password: the PDS leaves out the birth date)";
    return end_step(b, step, rc, what, e);
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
    char cred[32];
    if (journal_kv_get(b->j, b->run.id, "credential", cred, sizeof cred, NULL) != ERR_OK) snprintf(cred, sizeof cred, "%s", b->credential);
    json_object_set_new(man, "credential", json_string(cred));
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
    if (o->password && (rc = journal_set_secrets(b.j, &o->password, 1, e))) goto out;
    if ((rc = backup_index_open(o->dir, &b.idx, e))) goto out;
    if ((rc = pds_session_new(b.pds, &x, &b.s, e))) goto out;
    if (o->password && (rc = pds_login(b.s, b.id.did, o->password, NULL, e))) {
        err_wrap(e, "logging in to %s", b.pds);
        goto out;
    }
    b.credential = !o->password ? "none" : pds_is_app_password(b.s) ? "app-password" : "password";
    snprintf(rep->credential, sizeof rep->credential, "%s", b.credential);
    if ((rc = journal_run_begin(b.j, "backup", b.id.did, &b.run, e))) goto out;
    if ((rc = plan(&b, e))) goto out;
    info(&b, "%s snapshot %s of %s (%s) from %s", b.has_base ? "incremental" : "full", b.snap.id, b.id.did,
         b.id.handle[0] ? b.id.handle : "no handle", b.pds);
    if ((rc = step_repo(&b, e))) goto out;
    if ((rc = step_blobs(&b, e))) goto out;
    if ((rc = step_extras(&b, e))) goto out;
    if ((rc = step_pack(&b, e))) goto out;
    promote_cache(&b);
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
