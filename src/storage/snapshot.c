/* snapshot.c — the snapshot directory and its packing into an archive (see snapshot.h).
 * Must never leave a half-written file under its final name: everything is written to a
 * temporary name, fsynced, and renamed. */
#include "pdsmove/snapshot.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PACK_BUF_BYTES 65536
#define MAX_ENTRIES_PER_DIR 10000000

void snapshot_path(const char *dir, const char *name, char out[SNAPSHOT_PATH_MAX]) {
    snprintf(out, SNAPSHOT_PATH_MAX, "%s/%s", dir, name);
}

static err_code fsync_dir(const char *dir, err_t *e) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? ERR_OK : err_set(e, ERR_IO, "fsync %s: %s", dir, strerror(errno));
}

err_code snapshot_write_json(const char *dir, const char *name, const json_t *doc, err_t *e) {
    char path[SNAPSHOT_PATH_MAX], tmp[SNAPSHOT_PATH_MAX + 8];
    snapshot_path(dir, name, path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return err_set(e, ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    int rc = json_dumpfd(doc, fd, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (rc == 0 && write(fd, "\n", 1) != 1) rc = -1;
    if (rc == 0 && fsync(fd) != 0) rc = -1;
    int saved = errno;
    close(fd);
    if (rc != 0) {
        unlink(tmp);
        return err_set(e, ERR_IO, "writing %s failed: %s%s", path, strerror(saved),
                       saved == ENOSPC ? " (the disk is full: free space and run again)" : "");
    }
    if (rename(tmp, path) != 0) return err_set(e, ERR_IO, "rename %s: %s", tmp, strerror(errno));
    return ERR_OK;
}

err_code snapshot_read_json(const char *dir, const char *name, json_t **out, err_t *e) {
    char path[SNAPSHOT_PATH_MAX];
    snapshot_path(dir, name, path);
    json_error_t je;
    *out = json_load_file(path, 0, &je);
    if (!*out) return err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_INVALID, "cannot read %s: %s", path, je.text);
    return ERR_OK;
}

/* ---- packing ---- */

static err_code add_file(struct archive *a, const char *path, const char *name, err_t *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return err_set(e, ERR_IO, "stat %s: %s", path, strerror(errno));
    }
    struct archive_entry *en = archive_entry_new();
    archive_entry_set_pathname(en, name);
    archive_entry_set_size(en, st.st_size);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0600);
    archive_entry_set_mtime(en, st.st_mtime, 0);
    err_code rc = ERR_OK;
    if (archive_write_header(a, en) != ARCHIVE_OK) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    static char buf[PACK_BUF_BYTES];
    while (!rc) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = err_set(e, ERR_IO, "reading %s: %s", path, strerror(errno));
        if (n <= 0) break;
        if (archive_write_data(a, buf, (size_t)n) != n) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    }
    archive_entry_free(en);
    close(fd);
    return rc;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds every regular file of dir/sub (non-recursive), sorted, skipping temporary files. */
static err_code add_dir(struct archive *a, const char *dir, const char *sub, const char *top, err_t *e) {
    char path[SNAPSHOT_PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", dir, sub[0] ? "/" : "", sub);
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT && sub[0] ? ERR_OK : err_set(e, ERR_IO, "cannot list %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    err_code rc = ERR_OK;
    while ((de = readdir(d)) && !rc) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || (l > 4 && !strcmp(de->d_name + l - 4, ".tmp")) ||
            (l > 5 && !strcmp(de->d_name + l - 5, ".part")))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = cap > MAX_ENTRIES_PER_DIR ? NULL : realloc(names, cap * sizeof *names);
            if (!p) {
                rc = err_set(e, ERR_NOMEM, "too many files in %s", path);
                break;
            }
            names = p;
        }
        names[n] = strdup(de->d_name);
        if (!names[n]) rc = err_set(e, ERR_NOMEM, "out of memory");
        else n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && !rc; i++) {
        char fpath[SNAPSHOT_PATH_MAX], name[SNAPSHOT_PATH_MAX];
        snprintf(fpath, sizeof fpath, "%s/%s", path, names[i]);
        struct stat st;
        if (stat(fpath, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        snprintf(name, sizeof name, "%s/%s%s%s", top, sub, sub[0] ? "/" : "", names[i]);
        rc = add_file(a, fpath, name, e);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

err_code snapshot_pack(const char *dir, const char *top, const char *out_base, char out_path[SNAPSHOT_PATH_MAX], err_t *e) {
    struct archive *a = archive_write_new();
    if (!a) return err_set(e, ERR_NOMEM, "out of memory");
    archive_write_set_format_pax_restricted(a);
    const char *ext = ".tar.zst";
    if (archive_write_add_filter_zstd(a) != ARCHIVE_OK) {
        ext = ".tar.gz";
        archive_write_add_filter_gzip(a);
    }
    snprintf(out_path, SNAPSHOT_PATH_MAX, "%s%s", out_base, ext);
    char tmp[SNAPSHOT_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        archive_write_free(a);
        return err_set(e, ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    err_code rc = ERR_OK;
    if (archive_write_open_fd(a, fd) != ARCHIVE_OK) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    /* manifest first, so a reader learns what it holds before the bulk */
    static const char *const first[] = {"manifest.json", "did-doc.json", "plc-audit-log.json", "preferences.json", "repo.car"};
    for (size_t i = 0; i < sizeof first / sizeof first[0] && !rc; i++) {
        char p[SNAPSHOT_PATH_MAX], name[SNAPSHOT_PATH_MAX];
        snapshot_path(dir, first[i], p);
        if (access(p, R_OK) != 0) continue;
        snprintf(name, sizeof name, "%s/%s", top, first[i]);
        rc = add_file(a, p, name, e);
    }
    if (!rc) rc = add_dir(a, dir, "blobs", top, e);
    if (!rc && archive_write_close(a) != ARCHIVE_OK) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    archive_write_free(a);
    if (!rc && fsync(fd) != 0) rc = err_set(e, ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, out_path) != 0) rc = err_set(e, ERR_IO, "rename %s: %s", tmp, strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    char parent[SNAPSHOT_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out_path);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = 0;
        return fsync_dir(parent[0] ? parent : "/", e);
    }
    return ERR_OK;
}

err_code snapshot_remove(const char *dir, err_t *e) {
    char sub[SNAPSHOT_PATH_MAX];
    const char *dirs[] = {"blobs", ""};
    for (size_t k = 0; k < 2; k++) {
        snprintf(sub, sizeof sub, "%s%s%s", dir, dirs[k][0] ? "/" : "", dirs[k]);
        DIR *d = opendir(sub);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[SNAPSHOT_PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", sub, de->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) unlink(p);
        }
        closedir(d);
        if (rmdir(sub) != 0 && errno != ENOENT && errno != ENOTEMPTY)
            return err_set(e, ERR_IO, "cannot remove %s: %s", sub, strerror(errno));
    }
    return ERR_OK;
}
