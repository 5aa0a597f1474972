/* backup_assemble.c — turns one snapshot of a backup directory, with the snapshots it builds
 * on, into a complete snapshot directory (snapshot.h layout): repo.car holding the whole repo
 * (the chain's CARs merged under the snapshot's commit), blobs/ with every blob of its blob
 * list (from whichever archive stores it), and its JSON files. What restore imports from.
 * Must never build a path from a name of the backup it has not checked (backup_names.h): the
 * archives are extracted into out_dir/.extract/<position>, directories this run names and
 * creates, and only those are removed afterwards. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup.h"
#include "pdsmove/backup_names.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"

#define CHAIN_MAX 4096

typedef struct {
    const char *dir;
    char xdir[BACKUP_PATH_MAX];       /* extraction area: out_dir/.extract */
    backup_index *idx;
    char (*done)[BACKUP_ID_MAX];      /* ids extracted, in order: done[i] is in xdir/<i> */
    size_t n_dirs, cap_done;          /* directories made (the last one may be a failed extraction) */
    const char *home_id;              /* for listed_size: the archive being extracted */
    const char *did;
} actx;

static int64_t listed_size(void *ctx, const char *cid) {
    actx *a = ctx;
    return backup_index_blob_size(a->idx, a->did, cid, a->home_id);
}

/* Extracts a snapshot's archive once per run into xdir/<position>; out gets where. */
static err_code unpack(actx *a, const backup_snapshot *s, char *out, size_t size, err_t *e) {
    for (size_t i = 0; i < a->n_dirs; i++)
        if (!strcmp(a->done[i], s->id)) {
            snprintf(out, size, "%s/%zu", a->xdir, i);
            return ERR_OK;
        }
    if (a->n_dirs == a->cap_done) {
        size_t cap = a->cap_done ? a->cap_done * 2 : 16;
        char(*p)[BACKUP_ID_MAX] = cap > CHAIN_MAX * 2 ? NULL : realloc(a->done, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory");
        a->done = p;
        a->cap_done = cap;
    }
    snprintf(out, size, "%s/%zu", a->xdir, a->n_dirs);
    snprintf(a->done[a->n_dirs], BACKUP_ID_MAX, "%s", s->id);
    a->n_dirs++; /* removed afterwards even if the extraction fails half-way */
    char archive[BACKUP_PATH_MAX * 2], top[BACKUP_ID_MAX];
    snprintf(archive, sizeof archive, "%s/snapshots/%s", a->dir, s->archive);
    a->home_id = s->id;
    snapshot_unpack_opts o = {.expect_top = s->id, .blob_size = listed_size, .ctx = a};
    err_code rc = snapshot_unpack(archive, out, &o, top, sizeof top, e);
    if (rc) a->done[a->n_dirs - 1][0] = 0; /* never reused */
    return rc;
}

/* link, or copy when the two paths are on different file systems; to is replaced */
static err_code place(const char *from, const char *to, err_t *e) {
    if (unlink(to) != 0 && errno != ENOENT) return err_set(e, ERR_IO, "cannot replace %s: %s", to, strerror(errno));
    if (link(from, to) == 0) return ERR_OK;
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0) return err_set(e, ERR_IO, "cannot read %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        close(in);
        return err_set(e, ERR_IO, "cannot create %s: %s", to, strerror(errno));
    }
    char buf[65536];
    ssize_t n;
    err_code rc = ERR_OK;
    while (!rc && (n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = err_set(e, ERR_IO, "reading %s: %s", from, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < n && !rc;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int saved = w < 0 ? errno : ENOSPC;
                rc = err_set(e, ERR_IO, "writing %s: %s%s", to, strerror(saved), saved == ENOSPC ? " (the disk is full)" : "");
            } else off += w;
        }
    }
    close(in);
    if (close(out) != 0 && !rc) rc = err_set(e, ERR_IO, "writing %s: %s", to, strerror(errno));
    return rc;
}

/* Empties out_dir of an earlier assembly (the files of the snapshot layout, blobs named by
 * CIDs, the numbered extraction directories): files of another snapshot must never survive
 * into this one, and nothing else there is touched. */
static void clear_out_dir(const char *out_dir, const char *xdir) {
    DIR *d = opendir(xdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || strspn(de->d_name, "0123456789") != strlen(de->d_name)) continue;
        char sub[BACKUP_PATH_MAX + 32];
        snprintf(sub, sizeof sub, "%s/%s", xdir, de->d_name);
        snapshot_remove(sub, NULL);
    }
    if (d) closedir(d);
    rmdir(xdir);
    static const char *const files[] = {"manifest.json", "did-doc.json", "plc-audit-log.json", "preferences.json", "blob-list.txt",
                                        "repo.car"};
    char p[BACKUP_PATH_MAX * 2];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", out_dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/blobs", out_dir);
    d = opendir(p);
    while (d && (de = readdir(d))) {
        char b[BACKUP_PATH_MAX * 2 + 8];
        struct stat st;
        snprintf(b, sizeof b, "%s/%s", p, de->d_name);
        if (backup_name_cid(de->d_name, true, NULL) && lstat(b, &st) == 0 && S_ISREG(st.st_mode)) unlink(b);
    }
    if (d) closedir(d);
}

typedef struct {
    actx *a;
    const backup_snapshot *s;
    char blobs[BACKUP_PATH_MAX + 8];
} blob_ctx;

/* One blob of the list, from whichever archive stores it. */
static err_code place_blob(void *ctx, const char *cid, err_t *e) {
    blob_ctx *b = ctx;
    char where[BACKUP_ID_MAX], hd[BACKUP_PATH_MAX], from[BACKUP_PATH_MAX * 2], to[BACKUP_PATH_MAX * 2];
    backup_snapshot home;
    err_code rc = backup_index_blob_where(b->a->idx, b->s->did, cid, where, sizeof where, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_NOT_FOUND, "blob %s of snapshot %s is not stored in any archive of %s", cid, b->s->id, b->a->dir);
    if (rc || (rc = backup_index_get(b->a->idx, where, &home, e)) || (rc = unpack(b->a, &home, hd, sizeof hd, e))) return rc;
    snprintf(from, sizeof from, "%s/blobs/%s", hd, cid);
    snprintf(to, sizeof to, "%s/%s", b->blobs, cid);
    if (access(from, F_OK) != 0) return err_set(e, ERR_NOT_FOUND, "blob %s is missing from archive %s", cid, home.archive);
    return place(from, to, e);
}

err_code backup_assemble(const char *dir, const char *snapshot_id, const char *did, const char *out_dir,
                         backup_snapshot *which, err_t *e) {
    actx a = {.dir = dir};
    err_code rc = backup_index_open_readonly(dir, &a.idx, e);
    if (rc) return rc;
    backup_snapshot s;
    if (snapshot_id) rc = backup_index_get(a.idx, snapshot_id, &s, e);
    else if (did) rc = backup_index_latest(a.idx, did, &s, e);
    else rc = err_set(e, ERR_USAGE, "name the snapshot (--snapshot ID) or the account");
    if (rc) goto out;
    if (which) *which = s;
    a.did = s.did;
    snprintf(a.xdir, sizeof a.xdir, "%s/.extract", out_dir);
    clear_out_dir(out_dir, a.xdir);
    if (mkdir(out_dir, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", out_dir, strerror(errno));
        goto out;
    }
    if (mkdir(a.xdir, 0700) != 0) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", a.xdir, strerror(errno));
        goto out;
    }
    /* the chain, oldest first (every base id was checked to be a snapshot of the same DID) */
    backup_snapshot *chain = calloc(CHAIN_MAX, sizeof *chain);
    int *fds = calloc(CHAIN_MAX, sizeof *fds);
    size_t n = 0, opened = 0;
    if (!chain || !fds) rc = err_set(e, ERR_NOMEM, "out of memory");
    if (!rc) chain[n++] = s;
    while (!rc && chain[n - 1].incremental) {
        if (n == CHAIN_MAX) rc = err_set(e, ERR_LIMIT, "snapshot chain too long");
        else if ((rc = backup_index_get(a.idx, chain[n - 1].base_id, &chain[n], e)))
            err_wrap(e, "snapshot %s builds on %s, which is gone", chain[n - 1].id, chain[n - 1].base_id);
        else if (strcmp(chain[n].did, s.did)) rc = err_set(e, ERR_INVALID, "snapshot %s builds on one of another account", chain[n - 1].id);
        else n++;
    }
    char x[BACKUP_PATH_MAX], p[BACKUP_PATH_MAX * 2];
    for (size_t i = 0; !rc && i < n; i++) {
        if ((rc = unpack(&a, &chain[n - 1 - i], x, sizeof x, e))) break;
        snprintf(p, sizeof p, "%s/repo.car", x);
        if ((fds[opened] = open(p, O_RDONLY | O_CLOEXEC)) < 0) rc = err_set(e, ERR_NOT_FOUND, "%s lacks repo.car", chain[n - 1 - i].archive);
        else opened++;
    }
    if (!rc) {
        char car[BACKUP_PATH_MAX + 16];
        snprintf(car, sizeof car, "%s/repo.car", out_dir);
        int out = open(car, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        cid_t root;
        if (out < 0) rc = err_set(e, ERR_IO, "cannot create %s: %s", car, strerror(errno));
        else if ((rc = cid_parse(&root, s.commit, e)) == ERR_OK) rc = repo_merge_cars(fds, opened, &root, out, e);
        if (out >= 0) {
            if (!rc && fsync(out) != 0) rc = err_set(e, ERR_IO, "fsync %s", car);
            close(out);
        }
    }
    for (size_t i = 0; i < opened; i++) close(fds[i]);
    free(fds);
    free(chain);
    /* the snapshot's own small files */
    static const char *const files[] = {"manifest.json", "did-doc.json", "plc-audit-log.json", "preferences.json", "blob-list.txt"};
    if (!rc) rc = unpack(&a, &s, x, sizeof x, e);
    for (size_t i = 0; !rc && i < sizeof files / sizeof files[0]; i++) {
        char from[BACKUP_PATH_MAX * 2], to[BACKUP_PATH_MAX * 2];
        snprintf(from, sizeof from, "%s/%s", x, files[i]);
        snprintf(to, sizeof to, "%s/%s", out_dir, files[i]);
        if (access(from, R_OK) == 0) rc = place(from, to, e);
    }
    /* every blob of the blob list (each line checked), from whichever archive stores it */
    blob_ctx bc = {.a = &a, .s = &s};
    snprintf(bc.blobs, sizeof bc.blobs, "%s/blobs", out_dir);
    if (!rc && mkdir(bc.blobs, 0700) != 0 && errno != EEXIST) rc = err_set(e, ERR_IO, "cannot create %s", bc.blobs);
    if (!rc) rc = snapshot_blob_list_each(x, place_blob, &bc, e);
    /* drop the extraction area: only the directories this run made */
    for (size_t i = 0; i < a.n_dirs; i++) {
        char d[BACKUP_PATH_MAX + 32];
        snprintf(d, sizeof d, "%s/%zu", a.xdir, i);
        snapshot_remove(d, NULL);
    }
    free(a.done);
    rmdir(a.xdir);
out:
    backup_index_close(a.idx);
    return rc;
}
