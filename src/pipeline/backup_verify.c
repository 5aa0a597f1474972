/* backup_verify.c — `pdsmove verify DIR`: every snapshot assembled from its chain (the full
 * snapshot it builds on and the incrementals between) and checked end to end: archives against
 * their SHA256SUMS, every block against its CID, the repo complete from its commit (MST walk),
 * the commit signed by the key in the DID document saved with it, every blob of its blob list
 * stored (and its bytes hashing to its CID), every blob the records reference present, and the
 * saved PLC audit log valid. Reads DIR only (a read-only backup verifies): the index is opened
 * read-only and archives are extracted into a temporary directory under $TMPDIR (default /tmp),
 * one directory per archive named by its position in this run, removed after. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup.h"
#include "pdsmove/blob_transfer.h"
#include "pdsmove/identity.h"
#include "pdsmove/plc.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"

#define CHAIN_MAX 4096

typedef struct {
    const backup_verify_opts *o;
    backup_index *idx;
    char tmp[BACKUP_PATH_MAX];
    char (*unpacked)[BACKUP_ID_MAX]; /* snapshot ids extracted: unpacked[i] is in tmp/<i> */
    size_t n_dirs, cap_unpacked;     /* directories made (a failed extraction included) */
    const char *home_id, *did;       /* the archive being extracted, for listed_size */
} vctx;

static int64_t listed_size(void *ctx, const char *cid) {
    vctx *v = ctx;
    return backup_index_blob_size(v->idx, v->did, cid, v->home_id);
}

/* Extracts a snapshot's archive once per run into tmp/<position>; *dir gets where. */
static err_code unpack_once(vctx *v, const backup_snapshot *s, char *dir, size_t size, err_t *e) {
    for (size_t i = 0; i < v->n_dirs; i++)
        if (!strcmp(v->unpacked[i], s->id)) {
            snprintf(dir, size, "%s/%zu", v->tmp, i);
            return ERR_OK;
        }
    if (v->n_dirs == v->cap_unpacked) {
        size_t cap = v->cap_unpacked ? v->cap_unpacked * 2 : 16;
        char(*p)[BACKUP_ID_MAX] = realloc(v->unpacked, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory");
        v->unpacked = p;
        v->cap_unpacked = cap;
    }
    snprintf(dir, size, "%s/%zu", v->tmp, v->n_dirs);
    snprintf(v->unpacked[v->n_dirs], BACKUP_ID_MAX, "%s", s->id);
    v->n_dirs++;
    char archive[BACKUP_PATH_MAX * 2], top[BACKUP_ID_MAX];
    snprintf(archive, sizeof archive, "%s/snapshots/%s", v->o->dir, s->archive);
    v->home_id = s->id;
    v->did = s->did;
    snapshot_unpack_opts uo = {.expect_top = s->id, .blob_size = listed_size, .ctx = v};
    err_code rc = snapshot_unpack(archive, dir, &uo, top, sizeof top, e);
    if (rc) v->unpacked[v->n_dirs - 1][0] = 0; /* a failed extraction is never reused */
    return rc;
}

/* ---- the stored blob set of a snapshot (sorted CIDs, for lookups while walking records) ---- */

typedef struct {
    char **cids;
    size_t n, cap;
    int64_t missing_refs;
    char first_missing[300];
    char key[320];
} blob_set;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool set_has(const blob_set *s, const char *cid) {
    const char *k = cid;
    return bsearch(&k, s->cids, s->n, sizeof *s->cids, cmp_str) != NULL;
}

static err_code on_ref(void *ctx, const cid_t *cid, int64_t size, err_t *e) {
    (void)size;
    (void)e;
    blob_set *s = ctx;
    char cs[CID_STR_MAX];
    cid_format(cid, cs, sizeof cs);
    if (!set_has(s, cs) && !s->missing_refs++)
        snprintf(s->first_missing, sizeof s->first_missing, "%s (referenced by %s)", cs, s->key);
    return ERR_OK;
}

static err_code on_record(void *ctx, const char *key, size_t key_len, const cid_t *cid, const uint8_t *data, size_t len,
                          err_t *e) {
    (void)cid;
    blob_set *s = ctx;
    snprintf(s->key, sizeof s->key, "%.*s", (int)key_len, key);
    err_t ignore;
    repo_record_blob_refs(data, len, on_ref, s, &ignore);
    (void)e;
    return ERR_OK;
}

static void set_free(blob_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->cids[i]);
    free(s->cids);
}

typedef struct {
    vctx *v;
    const backup_snapshot *s;
    blob_set *set;
} check_ctx;

/* One CID of the blob list (checked by snapshot_blob_list_each): stored somewhere in DIR, its
 * bytes hashing to it. */
static err_code check_blob(void *ctx, const char *cid, err_t *e) {
    check_ctx *k = ctx;
    vctx *v = k->v;
    blob_set *set = k->set;
    char where[BACKUP_ID_MAX];
    err_code rc = backup_index_blob_where(v->idx, k->s->did, cid, where, sizeof where, e);
    if (rc == ERR_NOT_FOUND) return err_set(e, ERR_NOT_FOUND, "blob %s of snapshot %s is not stored in any archive", cid, k->s->id);
    if (rc) return rc;
    backup_snapshot home;
    char home_dir[BACKUP_PATH_MAX], path[BACKUP_PATH_MAX * 2];
    if ((rc = backup_index_get(v->idx, where, &home, e))) return rc;
    if ((rc = unpack_once(v, &home, home_dir, sizeof home_dir, e))) return rc;
    snprintf(path, sizeof path, "%s/blobs/%s", home_dir, cid);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return err_set(e, ERR_NOT_FOUND, "blob %s is missing from archive %s", cid, home.archive);
    cid_t c;
    if ((rc = cid_parse(&c, cid, e)) == ERR_OK) rc = blob_verify_fd(fd, &c, NULL, e);
    close(fd);
    if (rc) return err_wrap(e, "archive %s", home.archive);
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        char **p = realloc(set->cids, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory");
        set->cids = p;
        set->cap = cap;
    }
    if (!(set->cids[set->n] = strdup(cid))) return err_set(e, ERR_NOMEM, "out of memory");
    set->n++;
    return ERR_OK;
}

/* Every CID of the snapshot's blob list is stored somewhere in DIR and its bytes hash to it. */
static err_code check_blobs(vctx *v, const backup_snapshot *s, const char *snap_dir, blob_set *set, err_t *e) {
    check_ctx k = {v, s, set};
    err_code rc = snapshot_blob_list_each(snap_dir, check_blob, &k, e);
    if (!rc && set->n) qsort(set->cids, set->n, sizeof *set->cids, cmp_str);
    return rc;
}

/* ---- one snapshot ---- */

static err_code verify_one(vctx *v, const backup_snapshot *s, char *summary, size_t summary_size, err_t *e) {
    /* the chain, newest first, then reversed */
    backup_snapshot *chain = calloc(CHAIN_MAX, sizeof *chain);
    if (!chain) return err_set(e, ERR_NOMEM, "out of memory");
    size_t n = 0;
    chain[n++] = *s;
    err_code rc = ERR_OK;
    while (!rc && chain[n - 1].incremental) {
        if (n == CHAIN_MAX) rc = err_set(e, ERR_LIMIT, "snapshot %s builds on more than %d others", s->id, CHAIN_MAX);
        else if ((rc = backup_index_get(v->idx, chain[n - 1].base_id, &chain[n], e)))
            err_wrap(e, "snapshot %s builds on %s, which is gone", chain[n - 1].id, chain[n - 1].base_id);
        else if (strcmp(chain[n].did, s->did)) rc = err_set(e, ERR_INVALID, "snapshot %s builds on one of another account", chain[n - 1].id);
        else n++;
    }
    int *fds = calloc(n, sizeof *fds);
    char dir[BACKUP_PATH_MAX], merged[BACKUP_PATH_MAX + 32];
    size_t opened = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const backup_snapshot *c = &chain[n - 1 - i];
        if ((rc = unpack_once(v, c, dir, sizeof dir, e))) break;
        char car[BACKUP_PATH_MAX * 2];
        snprintf(car, sizeof car, "%s/repo.car", dir);
        fds[opened] = open(car, O_RDONLY | O_CLOEXEC);
        if (fds[opened] < 0) rc = err_set(e, ERR_NOT_FOUND, "archive %s has no repo.car", c->archive);
        else opened++;
    }
    char snap_dir[BACKUP_PATH_MAX];
    if (!rc) rc = unpack_once(v, s, snap_dir, sizeof snap_dir, e);
    /* the key: from the DID document saved with this snapshot */
    identity_doc id;
    json_t *doc = NULL;
    if (!rc && (rc = snapshot_read_json(snap_dir, "did-doc.json", &doc, e)) == ERR_OK) {
        rc = identity_doc_parse(doc, s->did, &id, e);
        if (!rc && !id.has_signing_key) rc = err_set(e, ERR_INVALID, "the saved DID document has no signing key");
        json_decref(doc);
    }
    blob_set set = {0};
    if (!rc) rc = check_blobs(v, s, snap_dir, &set, e);
    repo_summary sum;
    if (!rc) {
        snprintf(merged, sizeof merged, "%s/merged.car", v->tmp);
        int mfd = open(merged, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        cid_t root;
        if (mfd < 0) rc = err_set(e, ERR_IO, "cannot create %s: %s", merged, strerror(errno));
        else if ((rc = cid_parse(&root, s->commit, e)) == ERR_OK && (rc = repo_merge_cars(fds, opened, &root, mfd, e)) == ERR_OK)
            rc = repo_verify_car(mfd, &id.signing_pub, 1, on_record, &set, &sum, e);
        if (mfd >= 0) close(mfd);
        unlink(merged);
        if (rc) err_wrap(e, "the repository of snapshot %s", s->id);
        char root_s[CID_STR_MAX];
        if (!rc) {
            cid_format(&sum.data, root_s, sizeof root_s);
            if (strcmp(root_s, s->data_root) || strcmp(sum.rev, s->rev))
                rc = err_set(e, ERR_MISMATCH, "snapshot %s: the assembled repo (rev %s) does not match its manifest (rev %s)", s->id,
                             sum.rev, s->rev);
        }
    }
    if (!rc && set.missing_refs)
        rc = err_set(e, ERR_NOT_FOUND, "snapshot %s: %lld blob(s) referenced by records are not stored, e.g. %s", s->id,
                     (long long)set.missing_refs, set.first_missing);
    /* the saved audit log */
    if (!rc && !strncmp(s->did, "did:plc:", 8)) {
        json_t *log = NULL;
        if ((rc = snapshot_read_json(snap_dir, "plc-audit-log.json", &log, e)) == ERR_OK) {
            plc_state st;
            size_t bad;
            plc_state_init(&st);
            rc = plc_log_validate(log, s->did, &st, &bad, e);
            if (rc) err_wrap(e, "snapshot %s: the saved PLC audit log", s->id);
            plc_state_free(&st);
            json_decref(log);
        }
    }
    if (!rc)
        snprintf(summary, summary_size, "%s: %llu records, %zu blobs, chain of %zu archive(s), signature valid", s->id,
                 (unsigned long long)sum.records, set.n, n);
    set_free(&set);
    for (size_t i = 0; i < opened; i++) close(fds[i]);
    free(fds);
    free(chain);
    return rc;
}

typedef struct {
    backup_snapshot *list;
    size_t n, cap;
} snap_list;

static bool collect(void *ctx, const backup_snapshot *s) {
    snap_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        backup_snapshot *p = realloc(l->list, cap * sizeof *p);
        if (!p) return false;
        l->list = p;
        l->cap = cap;
    }
    l->list[l->n++] = *s;
    return true;
}

err_code backup_verify_run(const backup_verify_opts *o, backup_verify_report *r, err_t *e) {
    memset(r, 0, sizeof *r);
    vctx v = {.o = o};
    char idx_path[BACKUP_PATH_MAX + 16];
    snprintf(idx_path, sizeof idx_path, "%s/index.sqlite", o->dir);
    if (access(idx_path, R_OK) != 0)
        return err_set(e, ERR_NOT_FOUND, "%s is not a pdsmove backup directory (no index.sqlite): give the --to DIR of `pdsmove backup`",
                       o->dir);
    err_code rc = backup_index_open_readonly(o->dir, &v.idx, e);
    if (rc) return rc;
    snap_list l = {0};
    if (o->snapshot_id) {
        backup_snapshot s;
        if ((rc = backup_index_get(v.idx, o->snapshot_id, &s, e)) == ERR_OK) collect(&l, &s);
    } else {
        rc = backup_index_each(v.idx, NULL, collect, &l, e);
    }
    if (!rc && l.n == 0) rc = err_set(e, ERR_NOT_FOUND, "%s holds no snapshots", o->dir);
    const char *tmpdir = getenv("TMPDIR");
    snprintf(v.tmp, sizeof v.tmp, "%s/pdsmove-verify-XXXXXX", tmpdir && tmpdir[0] ? tmpdir : "/tmp");
    if (!rc && !mkdtemp(v.tmp))
        rc = err_set(e, ERR_IO, "cannot create a temporary directory %s: %s (set TMPDIR to a writable directory)", v.tmp,
                     strerror(errno));
    for (size_t i = 0; !rc && i < l.n; i++) {
        char summary[600];
        err_t se;
        if (o->ui.step) o->ui.step(o->ui.ctx, l.list[i].id, STEP_RUNNING, NULL);
        err_code src = verify_one(&v, &l.list[i], summary, sizeof summary, &se);
        r->checked++;
        if (src) {
            r->damaged++;
            if (!r->first_damage[0]) snprintf(r->first_damage, sizeof r->first_damage, "%s", se.msg);
            if (o->ui.step) o->ui.step(o->ui.ctx, l.list[i].id, STEP_FAILED, se.msg);
        } else if (o->ui.step) {
            o->ui.step(o->ui.ctx, l.list[i].id, STEP_DONE, summary);
        }
    }
    /* remove the extraction (also what a failed unpack left): only the directories made here */
    bool made = !strstr(v.tmp, "XXXXXX");
    for (size_t i = 0; made && i < v.n_dirs; i++) {
        char sub[BACKUP_PATH_MAX + 32];
        snprintf(sub, sizeof sub, "%s/%zu", v.tmp, i);
        snapshot_remove(sub, NULL);
    }
    free(v.unpacked);
    if (made) rmdir(v.tmp);
    free(l.list);
    backup_index_close(v.idx);
    if (!rc && r->damaged)
        rc = err_set(e, ERR_MISMATCH, "%d of %d snapshot(s) are damaged; first: %s", r->damaged, r->checked, r->first_damage);
    return rc;
}
