/* backup_rebuild.c — makes a backup directory's index again from its archives alone (the
 * archives are the truth; index.sqlite is a cache): each archive is unpacked (its SHA256SUMS
 * checked), its manifest gives the snapshot, its blob list the snapshot's blob set, and its
 * blobs/ the blobs it stores. The old index is replaced only once the new one is complete.
 * Every name a manifest gives is checked (backup_names.h) and its id must be the archive's top
 * directory; each archive is extracted into <tmp>/<position>, a directory named here. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup.h"
#include "pdsmove/backup_names.h"
#include "pdsmove/snapshot.h"

static const char *jstr(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

typedef struct {
    backup_index *x;
    const char *id;
} list_ctx;

static err_code add_listed(void *ctx, const char *cid, err_t *e) {
    list_ctx *l = ctx;
    return backup_index_add_snapshot_blob(l->x, l->id, cid, e);
}

/* The manifest's names: its id is the archive's top directory and a snapshot id of its DID,
 * its base one of the same DID, its CIDs canonical. */
static err_code check_manifest(const backup_snapshot *s, const char *top, err_t *e) {
    err_t ne = {0};
    char q[BACKUP_NAME_QUOTE_MAX];
    if (strcmp(s->id, top))
        return err_set(e, ERR_MISMATCH, "its manifest names the snapshot '%s', but the archive holds %s", backup_name_quote(s->id, q), top);
    bool ok = backup_name_snapshot_id(s->id, s->did, &ne) && (!s->incremental || backup_name_snapshot_id(s->base_id, s->did, &ne)) &&
              backup_name_cid(s->commit, false, &ne) && (!s->data_root[0] || backup_name_cid(s->data_root, false, &ne));
    return ok ? ERR_OK : err_set(e, ERR_INVALID, "its manifest.json is not valid: %s", ne.msg);
}

static err_code add_archive(backup_index *x, const char *dir, const char *name, const char *out, err_t *e) {
    char archive[BACKUP_PATH_MAX * 2], top[BACKUP_ID_MAX];
    snprintf(archive, sizeof archive, "%s/snapshots/%s", dir, name);
    err_code rc = backup_name_archive(name, e) ? ERR_OK : ERR_INVALID;
    if (!rc) rc = snapshot_unpack(archive, out, NULL, top, sizeof top, e);
    json_t *man = NULL;
    if (!rc) rc = snapshot_read_json(out, "manifest.json", &man, e);
    if (!rc && strcmp(jstr(man, "format"), SNAPSHOT_FORMAT))
        rc = err_set(e, ERR_INVALID, "%s is not a pdsmove snapshot archive", name);
    backup_snapshot s = {0};
    if (!rc) {
        const json_t *repo = json_object_get(man, "repo"), *blobs = json_object_get(man, "blobs");
        snprintf(s.id, sizeof s.id, "%s", jstr(man, "id")[0] ? jstr(man, "id") : top);
        snprintf(s.did, sizeof s.did, "%s", jstr(man, "did"));
        snprintf(s.created_at, sizeof s.created_at, "%s", jstr(man, "created_at"));
        s.incremental = !strcmp(jstr(man, "kind"), "incremental");
        snprintf(s.base_id, sizeof s.base_id, "%s", s.incremental ? jstr(man, "base") : "");
        snprintf(s.rev, sizeof s.rev, "%s", jstr(repo, "rev"));
        snprintf(s.commit, sizeof s.commit, "%s", jstr(repo, "commit"));
        snprintf(s.data_root, sizeof s.data_root, "%s", jstr(repo, "data_root"));
        snprintf(s.archive, sizeof s.archive, "%s", name);
        s.records = json_integer_value(json_object_get(repo, "records"));
        s.blobs_total = json_integer_value(json_object_get(blobs, "listed"));
        s.blobs_new = json_integer_value(json_object_get(blobs, "stored_here"));
        rc = check_manifest(&s, top, e);
        if (!rc) rc = backup_index_add_snapshot(x, &s, e);
    }
    /* blobs stored here (their names checked by snapshot_unpack), and the snapshot's blob set */
    char bdir[BACKUP_PATH_MAX * 2 + 8];
    snprintf(bdir, sizeof bdir, "%s/blobs", out);
    DIR *d = rc ? NULL : opendir(bdir);
    struct dirent *de;
    while (d && !rc && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[BACKUP_PATH_MAX * 3];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", bdir, de->d_name);
        rc = backup_index_add_blob(x, s.did, de->d_name, lstat(p, &st) == 0 ? (int64_t)st.st_size : -1, s.id, e);
    }
    if (d) closedir(d);
    list_ctx lc = {x, s.id};
    if (!rc && (rc = snapshot_blob_list_each(out, add_listed, &lc, e)) == ERR_NOT_FOUND) rc = ERR_OK; /* none: an empty set */
    json_decref(man);
    snapshot_remove(out, NULL);
    return rc ? err_wrap(e, "archive %s", name) : ERR_OK;
}

err_code backup_index_rebuild(const char *dir, int *n_snapshots, err_t *e) {
    *n_snapshots = 0;
    char snaps[BACKUP_PATH_MAX + 16], tmp[BACKUP_PATH_MAX + 32], newdir[BACKUP_PATH_MAX + 32];
    snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
    snprintf(tmp, sizeof tmp, "%s/.rebuild-XXXXXX", dir);
    if (!mkdtemp(tmp)) return err_set(e, ERR_IO, "cannot create a temporary directory in %s: %s", dir, strerror(errno));
    /* the new index is built beside the old one, in the temporary directory */
    snprintf(newdir, sizeof newdir, "%s", tmp);
    backup_index *x = NULL;
    err_code rc = backup_index_open(newdir, &x, e);
    DIR *d = rc ? NULL : opendir(snaps);
    if (!rc && !d) rc = err_set(e, ERR_NOT_FOUND, "%s has no snapshots/ directory", dir);
    struct dirent *de;
    int n_seen = 0;
    while (d && !rc && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        bool arch = (l > 8 && !strcmp(de->d_name + l - 8, ".tar.zst")) || (l > 7 && !strcmp(de->d_name + l - 7, ".tar.gz"));
        if (!arch) continue;
        char out[BACKUP_PATH_MAX + 64];
        snprintf(out, sizeof out, "%s/%d", tmp, n_seen++);
        if ((rc = add_archive(x, dir, de->d_name, out, e)) == ERR_OK) (*n_snapshots)++;
    }
    if (d) closedir(d);
    backup_index_close(x);
    char from[BACKUP_PATH_MAX + 64], to[BACKUP_PATH_MAX + 32];
    snprintf(from, sizeof from, "%s/index.sqlite", tmp);
    snprintf(to, sizeof to, "%s/index.sqlite", dir);
    if (!rc) {
        /* drop the old index's WAL files before the new index takes its name */
        char wal[BACKUP_PATH_MAX + 48];
        snprintf(wal, sizeof wal, "%s-wal", to);
        unlink(wal);
        snprintf(wal, sizeof wal, "%s-shm", to);
        unlink(wal);
        if (rename(from, to) != 0) rc = err_set(e, ERR_IO, "rename %s: %s", from, strerror(errno));
    }
    char left[BACKUP_PATH_MAX + 64];
    const char *names[] = {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(left, sizeof left, "%s/%s", tmp, names[i]);
        unlink(left);
    }
    rmdir(tmp);
    return rc;
}
