/* snapshot.c — the snapshot directory and its packing into an archive (see snapshot.h).
 * Must never leave a half-written file under its final name: everything is written to a
 * temporary name, fsynced, and renamed. */
#include "pdsmove/snapshot.h"

#include "pdsmove/buf.h"
#include "pdsmove/codec.h"
#include "pdsmove/hash.h"

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

/* Adds one file, hashing it on the way; its "sha256  name" line is appended to sums. */
static err_code add_file(struct archive *a, const char *path, const char *name, buf_t *sums, err_t *e) {
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
    hash_sha256_ctx *h = hash_sha256_new();
    if (!h && !rc) rc = err_set(e, ERR_NOMEM, "out of memory");
    while (!rc) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = err_set(e, ERR_IO, "reading %s: %s", path, strerror(errno));
        if (n <= 0) break;
        hash_sha256_update(h, buf, (size_t)n);
        if (archive_write_data(a, buf, (size_t)n) != n) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    }
    if (h && !rc && sums) {
        uint8_t d[SHA256_BYTES];
        char hex[2 * SHA256_BYTES + 1];
        hash_sha256_final(h, d);
        h = NULL;
        hex_encode(d, sizeof d, hex, sizeof hex);
        const char *rel = strchr(name, '/');
        rc = buf_append_str(sums, hex, e);
        if (!rc) rc = buf_append_str(sums, "  ", e);
        if (!rc) rc = buf_append_str(sums, rel ? rel + 1 : name, e);
        if (!rc) rc = buf_append_byte(sums, '\n', e);
    }
    hash_sha256_free(h);
    archive_entry_free(en);
    close(fd);
    return rc;
}

/* The checksum list, last in the archive: `sha256sum -c SHA256SUMS` works on an extract. */
static err_code add_sums(struct archive *a, const char *top, const buf_t *sums, err_t *e) {
    struct archive_entry *en = archive_entry_new();
    char name[SNAPSHOT_PATH_MAX];
    snprintf(name, sizeof name, "%s/" SNAPSHOT_SUMS, top);
    archive_entry_set_pathname(en, name);
    archive_entry_set_size(en, (la_int64_t)sums->len);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0600);
    err_code rc = ERR_OK;
    if (archive_write_header(a, en) != ARCHIVE_OK ||
        (sums->len && archive_write_data(a, sums->data, sums->len) != (la_ssize_t)sums->len))
        rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    archive_entry_free(en);
    return rc;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds every regular file of dir/sub (non-recursive), sorted, skipping temporary files. */
static err_code add_dir(struct archive *a, const char *dir, const char *sub, const char *top, buf_t *sums, err_t *e) {
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
        rc = add_file(a, fpath, name, sums, e);
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
    buf_t sums;
    buf_init(&sums, (size_t)256 << 20);
    if (archive_write_open_fd(a, fd) != ARCHIVE_OK) rc = err_set(e, ERR_IO, "archive: %s", archive_error_string(a));
    /* manifest first, so a reader learns what it holds before the bulk */
    static const char *const first[] = {"manifest.json", "did-doc.json", "plc-audit-log.json", "preferences.json",
                                        "blob-list.txt", "repo.car"};
    for (size_t i = 0; i < sizeof first / sizeof first[0] && !rc; i++) {
        char p[SNAPSHOT_PATH_MAX], name[SNAPSHOT_PATH_MAX];
        snapshot_path(dir, first[i], p);
        if (access(p, R_OK) != 0) continue;
        snprintf(name, sizeof name, "%s/%s", top, first[i]);
        rc = add_file(a, p, name, &sums, e);
    }
    if (!rc) rc = add_dir(a, dir, "blobs", top, &sums, e);
    if (!rc) rc = add_sums(a, top, &sums, e);
    buf_free(&sums);
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

typedef struct {
    char name[140];
    uint8_t digest[SHA256_BYTES];
} unpacked_file;

/* Checks the extracted files against the archive's SHA256SUMS text. */
static err_code check_sums(const char *archive_path, const unpacked_file *files, size_t n, const char *text, size_t len,
                           err_t *e) {
    size_t matched = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll < 2 * SHA256_BYTES + 3 || p[2 * SHA256_BYTES] != ' ' || p[2 * SHA256_BYTES + 1] != ' ')
            return err_set(e, ERR_INVALID, "archive %s: malformed " SNAPSHOT_SUMS " line", archive_path);
        uint8_t want[SHA256_BYTES];
        size_t got;
        if (hex_decode(p, 2 * SHA256_BYTES, want, sizeof want, &got, e)) return err_wrap(e, "archive %s", archive_path);
        const char *fname = p + 2 * SHA256_BYTES + 2;
        size_t fl = ll - 2 * SHA256_BYTES - 2;
        size_t i = 0;
        while (i < n && (strlen(files[i].name) != fl || strncmp(files[i].name, fname, fl))) i++;
        if (i == n) return err_set(e, ERR_INVALID, "archive %s lacks '%.*s', which its checksums list", archive_path, (int)fl, fname);
        if (memcmp(files[i].digest, want, SHA256_BYTES))
            return err_set(e, ERR_MISMATCH, "archive %s is damaged: '%s' does not match its checksum", archive_path, files[i].name);
        matched++;
        p = nl ? nl + 1 : end;
    }
    if (matched != n) return err_set(e, ERR_INVALID, "archive %s holds files its checksums do not list", archive_path);
    return ERR_OK;
}

static bool known_name(const char *rest) {
    static const char *const names[] = {"manifest.json", "did-doc.json", "plc-audit-log.json", "preferences.json",
                                        "blob-list.txt", "repo.car"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(rest, names[i])) return true;
    if (strncmp(rest, "blobs/", 6)) return false;
    const char *c = rest + 6;
    size_t n = strlen(c);
    if (n < 8 || n > 120 || c[0] != 'b') return false;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '2' && c[i] <= '7'))) return false;
    return true;
}

err_code snapshot_unpack(const char *archive_path, const char *dest, char *top, size_t top_size, err_t *e) {
    struct archive *a = archive_read_new();
    if (!a) return err_set(e, ERR_NOMEM, "out of memory");
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    err_code rc = ERR_OK;
    if (archive_read_open_filename(a, archive_path, PACK_BUF_BYTES) != ARCHIVE_OK) {
        rc = err_set(e, ERR_IO, "cannot read the archive %s: %s", archive_path, archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    if (mkdir(dest, 0700) != 0 && errno != EEXIST) rc = err_set(e, ERR_IO, "cannot create %s: %s", dest, strerror(errno));
    char blobs[SNAPSHOT_PATH_MAX];
    snprintf(blobs, sizeof blobs, "%s/blobs", dest);
    if (!rc && mkdir(blobs, 0700) != 0 && errno != EEXIST) rc = err_set(e, ERR_IO, "cannot create %s: %s", blobs, strerror(errno));
    top[0] = 0;
    struct archive_entry *en;
    static char buf[PACK_BUF_BYTES];
    unpacked_file *files = NULL;
    size_t n_files = 0, cap = 0;
    bool sums_seen = false;
    while (!rc) {
        int r = archive_read_next_header(a, &en);
        if (r == ARCHIVE_EOF) break;
        if (sums_seen) {
            rc = err_set(e, ERR_INVALID, "archive %s has entries after its " SNAPSHOT_SUMS, archive_path);
            break;
        }
        if (r != ARCHIVE_OK) {
            rc = err_set(e, ERR_INVALID, "archive %s is damaged: %s", archive_path, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(en);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!name || !slash || archive_entry_filetype(en) != AE_IFREG || strstr(name, "..") || name[0] == '/') {
            rc = err_set(e, ERR_INVALID, "archive %s holds an unexpected entry '%s'", archive_path, name ? name : "?");
            break;
        }
        size_t tl = (size_t)(slash - name);
        if (!top[0]) snprintf(top, top_size, "%.*s", (int)tl, name);
        if (strlen(top) == tl && !strncmp(top, name, tl) && !strcmp(slash + 1, SNAPSHOT_SUMS)) {
            la_int64_t size = archive_entry_size(en);
            buf_t text;
            buf_init(&text, (size_t)256 << 20);
            if (size < 0 || buf_reserve(&text, (size_t)size, e)) rc = rc ? rc : err_set(e, ERR_LIMIT, "checksum list too large");
            while (!rc) {
                la_ssize_t n = archive_read_data(a, buf, sizeof buf);
                if (n == 0) break;
                if (n < 0) rc = err_set(e, ERR_INVALID, "archive %s is damaged: %s", archive_path, archive_error_string(a));
                else rc = buf_append(&text, buf, (size_t)n, e);
            }
            if (!rc) rc = check_sums(archive_path, files, n_files, (const char *)text.data, text.len, e);
            buf_free(&text);
            sums_seen = true;
            continue;
        }
        if (strlen(top) != tl || strncmp(top, name, tl) || !known_name(slash + 1)) {
            rc = err_set(e, ERR_INVALID, "archive %s holds an unexpected entry '%s'", archive_path, name);
            break;
        }
        char path[SNAPSHOT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dest, slash + 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = err_set(e, ERR_IO, "cannot create %s: %s", path, strerror(errno));
            break;
        }
        if (n_files == cap) {
            cap = cap ? cap * 2 : 64;
            unpacked_file *nf = cap > MAX_ENTRIES_PER_DIR ? NULL : realloc(files, cap * sizeof *files);
            if (!nf) {
                close(fd);
                rc = err_set(e, ERR_NOMEM, "too many entries in %s", archive_path);
                break;
            }
            files = nf;
        }
        unpacked_file *uf = &files[n_files++];
        snprintf(uf->name, sizeof uf->name, "%s", slash + 1);
        hash_sha256_ctx *h = hash_sha256_new();
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, sizeof buf);
            if (n == 0) break;
            if (n < 0) {
                rc = err_set(e, ERR_INVALID, "archive %s is damaged in '%s': %s", archive_path, name, archive_error_string(a));
                break;
            }
            if (h) hash_sha256_update(h, buf, (size_t)n);
            if (write(fd, buf, (size_t)n) != n) {
                rc = err_set(e, ERR_IO, "writing %s: %s%s", path, strerror(errno), errno == ENOSPC ? " (the disk is full)" : "");
                break;
            }
        }
        if (h) hash_sha256_final(h, uf->digest);
        close(fd);
    }
    archive_read_free(a);
    free(files);
    if (!rc && !top[0]) rc = err_set(e, ERR_INVALID, "archive %s is empty", archive_path);
    if (!rc && !sums_seen) rc = err_set(e, ERR_INVALID, "archive %s ends before its " SNAPSHOT_SUMS " (truncated?)", archive_path);
    return rc;
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
