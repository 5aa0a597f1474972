/* backup_assemble.c — turns one snapshot of a backup directory, with the snapshots it builds
 * on, into a complete snapshot directory (snapshot.h layout): repo.car holding the whole repo
 * (the chain's CARs merged under the snapshot's commit), blobs/ with every blob of its blob
 * list (from whichever archive stores it), and its JSON files. What restore imports from. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup.h"
#include "pdsmove/repo.h"
#include "pdsmove/snapshot.h"

#define CHAIN_MAX 4096

typedef struct {
    const char *dir;
    char xdir[BACKUP_PATH_MAX];       /* extraction area */
    backup_index *idx;
    char **done;
    size_t n_done, cap_done;
} actx;

static err_code unpack(actx *a, const backup_snapshot *s, char *out, size_t size, err_t *e) {
    snprintf(out, size, "%s/%s", a->xdir, s->id);
    for (size_t i = 0; i < a->n_done; i++)
        if (!strcmp(a->done[i], s->id)) return ERR_OK;
    char archive[BACKUP_PATH_MAX * 2], top[BACKUP_ID_MAX];
    snprintf(archive, sizeof archive, "%s/snapshots/%s", a->dir, s->archive);
    err_code rc = snapshot_unpack(archive, out, top, sizeof top, e);
    if (rc) return rc;
    if (a->n_done == a->cap_done) {
        size_t cap = a->cap_done ? a->cap_done * 2 : 16;
        char **p = realloc(a->done, cap * sizeof *p);
        if (!p) return err_set(e, ERR_NOMEM, "out of memory");
        a->done = p;
        a->cap_done = cap;
    }
    if (!(a->done[a->n_done] = strdup(s->id))) return err_set(e, ERR_NOMEM, "out of memory");
    a->n_done++;
    return ERR_OK;
}

/* link, or copy when the two paths are on different file systems */
static err_code place(const char *from, const char *to, err_t *e) {
    if (link(from, to) == 0 || errno == EEXIST) return ERR_OK;
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return err_set(e, ERR_IO, "cannot read %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return err_set(e, ERR_IO, "cannot create %s: %s", to, strerror(errno));
    }
    char buf[65536];
    ssize_t n;
    err_code rc = ERR_OK;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            rc = err_set(e, ERR_IO, "writing %s: %s", to, strerror(errno));
            break;
        }
    if (n < 0) rc = err_set(e, ERR_IO, "reading %s: %s", from, strerror(errno));
    close(in);
    close(out);
    return rc;
}

err_code backup_assemble(const char *dir, const char *snapshot_id, const char *did, const char *out_dir,
                         backup_snapshot *which, err_t *e) {
    actx a = {.dir = dir};
    err_code rc = backup_index_open(dir, &a.idx, e);
    if (rc) return rc;
    backup_snapshot s;
    if (snapshot_id) rc = backup_index_get(a.idx, snapshot_id, &s, e);
    else if (did) rc = backup_index_latest(a.idx, did, &s, e);
    else rc = err_set(e, ERR_USAGE, "name the snapshot (--snapshot ID) or the account");
    if (rc) goto out;
    if (which) *which = s;
    if (mkdir(out_dir, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", out_dir, strerror(errno));
        goto out;
    }
    snprintf(a.xdir, sizeof a.xdir, "%s/.extract", out_dir);
    if (mkdir(a.xdir, 0700) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "cannot create %s: %s", a.xdir, strerror(errno));
        goto out;
    }
    /* the chain, oldest first */
    backup_snapshot *chain = calloc(CHAIN_MAX, sizeof *chain);
    int *fds = calloc(CHAIN_MAX, sizeof *fds);
    size_t n = 0, opened = 0;
    if (!chain || !fds) rc = err_set(e, ERR_NOMEM, "out of memory");
    if (!rc) chain[n++] = s;
    while (!rc && chain[n - 1].incremental) {
        if (n == CHAIN_MAX) rc = err_set(e, ERR_LIMIT, "snapshot chain too long");
        else if ((rc = backup_index_get(a.idx, chain[n - 1].base_id, &chain[n], e)))
            err_wrap(e, "snapshot %s builds on %s, which is gone", chain[n - 1].id, chain[n - 1].base_id);
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
        int out = open(car, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
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
    /* every blob of the blob list, from whichever archive stores it */
    char blobs[BACKUP_PATH_MAX + 8];
    snprintf(blobs, sizeof blobs, "%s/blobs", out_dir);
    if (!rc && mkdir(blobs, 0700) != 0 && errno != EEXIST) rc = err_set(e, ERR_IO, "cannot create %s", blobs);
    char list[BACKUP_PATH_MAX * 2], line[256];
    snprintf(list, sizeof list, "%s/blob-list.txt", x);
    FILE *f = rc ? NULL : fopen(list, "r");
    if (!rc && !f) rc = err_set(e, ERR_NOT_FOUND, "snapshot %s has no blob list", s.id);
    while (!rc && f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        char where[BACKUP_ID_MAX], hd[BACKUP_PATH_MAX], from[BACKUP_PATH_MAX * 2], to[BACKUP_PATH_MAX * 2];
        backup_snapshot home;
        if (backup_index_blob_where(a.idx, s.did, line, where, sizeof where, NULL) != ERR_OK) {
            rc = err_set(e, ERR_NOT_FOUND, "blob %s of snapshot %s is not stored in any archive of %s", line, s.id, dir);
            break;
        }
        if ((rc = backup_index_get(a.idx, where, &home, e)) || (rc = unpack(&a, &home, hd, sizeof hd, e))) break;
        snprintf(from, sizeof from, "%s/blobs/%s", hd, line);
        snprintf(to, sizeof to, "%s/%s", blobs, line);
        rc = place(from, to, e);
    }
    if (f) fclose(f);
    /* drop the extraction area */
    for (size_t i = 0; i < a.n_done; i++) {
        char d[BACKUP_PATH_MAX * 2];
        snprintf(d, sizeof d, "%s/%s", a.xdir, a.done[i]);
        snapshot_remove(d, NULL);
        free(a.done[i]);
    }
    free(a.done);
    rmdir(a.xdir);
out:
    backup_index_close(a.idx);
    return rc;
}
