/* snapshot.c — the snapshot directory and its packing into an archive (see snapshot.h).
 * Must never leave a half-written file under its final name: everything is written to a
 * temporary name, fsynced, and renamed. */
#include "pdsmove/snapshot.h"

#include "pdsmove/backup_names.h"
#include "pdsmove/buf.h"
#include "pdsmove/cid.h"
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
#include <sys/statvfs.h>
#include <unistd.h>

#define PACK_BUF_BYTES 65536
#define MAX_ENTRIES_PER_DIR 10000000
#define SNAPSHOT_NAME_MAX 160 /* "blobs/" + a CID */

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
    char name[SNAPSHOT_NAME_MAX];
    uint8_t digest[SHA256_BYTES];
    bool listed; /* seen in SHA256SUMS */
} unpacked_file;

/* Checks the extracted files against the archive's SHA256SUMS text: every line names a file
 * extracted (once), every file extracted is named by exactly one line. */
static err_code check_sums(const char *archive_path, unpacked_file *files, size_t n, const char *text, size_t len, err_t *e) {
    const char *p = text, *end = text + len;
    char q[BACKUP_NAME_QUOTE_MAX], name[SNAPSHOT_NAME_MAX];
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
        snprintf(name, sizeof name, "%.*s", (int)(fl < sizeof name ? fl : sizeof name - 1), fname);
        size_t i = 0;
        while (i < n && (strlen(files[i].name) != fl || strncmp(files[i].name, fname, fl))) i++;
        if (i == n)
            return err_set(e, ERR_INVALID, "archive %s lacks '%s', which its checksums list", archive_path, backup_name_quote(name, q));
        if (files[i].listed)
            return err_set(e, ERR_INVALID, "archive %s: " SNAPSHOT_SUMS " lists '%s' twice", archive_path, files[i].name);
        if (memcmp(files[i].digest, want, SHA256_BYTES))
            return err_set(e, ERR_MISMATCH, "archive %s is damaged: '%s' does not match its checksum", archive_path, files[i].name);
        files[i].listed = true;
        p = nl ? nl + 1 : end;
    }
    for (size_t i = 0; i < n; i++)
        if (!files[i].listed)
            return err_set(e, ERR_INVALID, "archive %s holds '%s', which its checksums do not list", archive_path, files[i].name);
    return ERR_OK;
}

/* The cap of an entry of the layout (its name without the top directory); 0: not a name of
 * the layout. Blobs must be named by canonical raw CIDs (backup_names.h). */
static int64_t entry_cap(const char *rest) {
    static const struct {
        const char *name;
        int64_t cap;
    } names[] = {{"manifest.json", SNAPSHOT_JSON_MAX_BYTES},   {"did-doc.json", SNAPSHOT_JSON_MAX_BYTES},
                 {"plc-audit-log.json", SNAPSHOT_LOG_MAX_BYTES}, {"preferences.json", SNAPSHOT_LOG_MAX_BYTES},
                 {"blob-list.txt", SNAPSHOT_BLOB_LIST_MAX_BYTES}, {"repo.car", SNAPSHOT_REPO_CAR_MAX_BYTES}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(rest, names[i].name)) return names[i].cap;
    if (strncmp(rest, "blobs/", 6) || !backup_name_cid(rest + 6, true, NULL)) return 0;
    return SNAPSHOT_BLOB_MAX_BYTES;
}

/* Writes all of buf (short writes loop); errno is kept for the caller. */
static bool write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            return false;
        }
        buf += w;
        n -= (size_t)w;
    }
    return true;
}

/* Is there room for size more bytes (and the margin) on dest's file system? */
static err_code check_room(int dir_fd, const char *dest, const char *entry, int64_t size, err_t *e) {
    struct statvfs v;
    if (fstatvfs(dir_fd, &v) != 0) return err_set(e, ERR_IO, "cannot read the free space of %s: %s", dest, strerror(errno));
    uint64_t avail = (uint64_t)v.f_bavail * (uint64_t)(v.f_frsize ? v.f_frsize : v.f_bsize);
    if ((uint64_t)size + (uint64_t)SNAPSHOT_FREE_MARGIN_BYTES > avail)
        return err_set(e, ERR_IO,
                       "not enough free space in %s for '%s' (%lld bytes, %llu free): the disk is full; free space there or "
                       "set TMPDIR to a larger disk and run again",
                       dest, entry, (long long)size, (unsigned long long)avail);
    return ERR_OK;
}

/* Extracts one entry's data into dest/rest (a new file), hashing it; at most size bytes. */
static err_code extract_entry(struct archive *a, const char *archive_path, int dir_fd, const char *dest, const char *rest,
                              int64_t size, uint8_t digest[SHA256_BYTES], err_t *e) {
    static char buf[PACK_BUF_BYTES];
    char path[SNAPSHOT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dest, rest);
    err_code rc = check_room(dir_fd, dest, rest, size, e);
    if (rc) return rc;
    int fd = openat(dir_fd, rest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST) return err_set(e, ERR_INVALID, "archive %s holds '%s' twice", archive_path, rest);
    if (fd < 0) return err_set(e, ERR_IO, "cannot create %s: %s", path, strerror(errno));
    hash_sha256_ctx *h = hash_sha256_new();
    if (!h) rc = err_set(e, ERR_NOMEM, "out of memory");
    int64_t got = 0;
    while (!rc) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            rc = err_set(e, ERR_INVALID, "archive %s is damaged in '%s': %s", archive_path, rest, archive_error_string(a));
            break;
        }
        got += n;
        if (got > size) {
            rc = err_set(e, ERR_INVALID, "archive %s: '%s' holds more than the %lld bytes its header declares", archive_path, rest,
                         (long long)size);
            break;
        }
        hash_sha256_update(h, buf, (size_t)n);
        if (!write_all(fd, buf, (size_t)n)) {
            int saved = errno;
            rc = err_set(e, ERR_IO, "writing %s: %s%s", path, strerror(saved),
                         saved == ENOSPC ? " (the disk is full: free space there or set TMPDIR to a larger disk, and run again)" : "");
        }
    }
    if (h && !rc) hash_sha256_final(h, digest);
    else hash_sha256_free(h);
    if (close(fd) != 0 && !rc) rc = err_set(e, ERR_IO, "writing %s: %s", path, strerror(errno));
    return rc;
}

static err_code read_sums(struct archive *a, const char *archive_path, int64_t size, buf_t *text, err_t *e) {
    static char buf[PACK_BUF_BYTES];
    if (size > SNAPSHOT_SUMS_MAX_BYTES)
        return err_set(e, ERR_LIMIT, "archive %s: its " SNAPSHOT_SUMS " is larger than %lld bytes", archive_path,
                       (long long)SNAPSHOT_SUMS_MAX_BYTES);
    err_code rc = buf_reserve(text, (size_t)size, e);
    while (!rc) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) rc = err_set(e, ERR_INVALID, "archive %s is damaged: %s", archive_path, archive_error_string(a));
        else if ((int64_t)(text->len + (size_t)n) > size)
            rc = err_set(e, ERR_INVALID, "archive %s: its " SNAPSHOT_SUMS " holds more than its header declares", archive_path);
        else rc = buf_append(text, buf, (size_t)n, e);
    }
    return rc;
}

/* The checks of one entry's header; *rest gets its name inside the top directory, *cap its cap. */
static err_code check_header(struct archive_entry *en, const char *archive_path, const snapshot_unpack_opts *o, char *top,
                             size_t top_size, const char **rest, int64_t *size, err_t *e) {
    const char *name = archive_entry_pathname(en);
    const char *slash = name ? strchr(name, '/') : NULL;
    char q[BACKUP_NAME_QUOTE_MAX];
    if (!name || !slash || archive_entry_filetype(en) != AE_IFREG || archive_entry_hardlink(en) || archive_entry_symlink(en) ||
        strstr(name, "..") || name[0] == '/')
        return err_set(e, ERR_INVALID, "archive %s holds an unexpected entry '%s'", archive_path, backup_name_quote(name, q));
    size_t tl = (size_t)(slash - name);
    if (!top[0]) {
        /* the first entry: its top directory is the snapshot, before anything is written */
        char t[BACKUP_NAME_ID_MAX + 1];
        snprintf(t, sizeof t, "%.*s", (int)(tl < sizeof t ? tl : sizeof t - 1), name);
        if (o && o->expect_top && (strlen(o->expect_top) != tl || strncmp(o->expect_top, name, tl)))
            return err_set(e, ERR_MISMATCH, "archive %s holds snapshot '%s', not %s", archive_path, backup_name_quote(t, q), o->expect_top);
        err_t ie = {.msg = "too long"};
        if (tl >= top_size || tl > BACKUP_NAME_ID_MAX - 1 || !backup_name_snapshot_id(t, NULL, &ie))
            return err_set(e, ERR_INVALID, "archive %s: its top directory is not a snapshot id (%s)", archive_path, ie.msg);
        snprintf(top, top_size, "%s", t);
    }
    if (strlen(top) != tl || strncmp(top, name, tl))
        return err_set(e, ERR_INVALID, "archive %s holds an entry outside its snapshot '%s'", archive_path, backup_name_quote(name, q));
    *rest = slash + 1;
    if (!archive_entry_size_is_set(en) || archive_entry_size(en) < 0)
        return err_set(e, ERR_INVALID, "archive %s: entry '%s' declares no size", archive_path, backup_name_quote(*rest, q));
    *size = archive_entry_size(en);
    if (!strcmp(*rest, SNAPSHOT_SUMS)) return ERR_OK;
    int64_t cap = entry_cap(*rest);
    if (!cap) return err_set(e, ERR_INVALID, "archive %s holds an unexpected entry '%s'", archive_path, backup_name_quote(name, q));
    if (o && o->blob_size && !strncmp(*rest, "blobs/", 6)) {
        int64_t listed = o->blob_size(o->ctx, *rest + 6);
        if (listed >= 0 && *size > listed)
            return err_set(e, ERR_LIMIT, "archive %s: blob %s is %lld bytes, but the backup's index lists it as %lld", archive_path,
                           *rest + 6, (long long)*size, (long long)listed);
    }
    if (*size > cap)
        return err_set(e, ERR_LIMIT, "archive %s: '%s' is %lld bytes, over the limit of %lld for it (docs/archive-format.md)",
                       archive_path, *rest, (long long)*size, (long long)cap);
    return ERR_OK;
}

static err_code make_dest(const char *dest, int *dir_fd, err_t *e) {
    *dir_fd = -1;
    if (mkdir(dest, 0700) != 0)
        return err_set(e, ERR_IO, "cannot create %s: %s%s", dest, strerror(errno),
                       errno == EEXIST ? " (left by an earlier run? remove it and run again)" : "");
    char blobs[SNAPSHOT_PATH_MAX];
    snprintf(blobs, sizeof blobs, "%s/blobs", dest);
    if (mkdir(blobs, 0700) != 0) return err_set(e, ERR_IO, "cannot create %s: %s", blobs, strerror(errno));
    *dir_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (*dir_fd < 0) return err_set(e, ERR_IO, "cannot open %s: %s", dest, strerror(errno));
    return ERR_OK;
}

err_code snapshot_unpack(const char *archive_path, const char *dest, const snapshot_unpack_opts *o, char *top, size_t top_size,
                         err_t *e) {
    top[0] = 0;
    struct archive *a = archive_read_new();
    if (!a) return err_set(e, ERR_NOMEM, "out of memory");
    archive_read_support_format_tar(a);
    /* Only what pdsmove writes (zstd; gzip from older releases; none). Never "all": a crafted
     * archive could then choose a filter libarchive runs as an external program. ARCHIVE_WARN
     * here means this libarchive would use such a program for zstd or gzip too: refused. */
    if (archive_read_support_filter_zstd(a) != ARCHIVE_OK || archive_read_support_filter_gzip(a) != ARCHIVE_OK) {
        archive_read_free(a);
        return err_set(e, ERR_IO, "this libarchive cannot read zstd and gzip by itself (it would run an external program)");
    }
    err_code rc = ERR_OK;
    if (archive_read_open_filename(a, archive_path, PACK_BUF_BYTES) != ARCHIVE_OK) {
        rc = err_set(e, ERR_IO, "cannot read the archive %s: %s", archive_path, archive_error_string(a));
        archive_read_free(a);
        return rc;
    }
    int dir_fd;
    rc = make_dest(dest, &dir_fd, e);
    struct archive_entry *en;
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
        const char *rest;
        int64_t size;
        if ((rc = check_header(en, archive_path, o, top, top_size, &rest, &size, e))) break;
        if (!strcmp(rest, SNAPSHOT_SUMS)) {
            buf_t text;
            buf_init(&text, (size_t)SNAPSHOT_SUMS_MAX_BYTES);
            rc = read_sums(a, archive_path, size, &text, e);
            if (!rc) rc = check_sums(archive_path, files, n_files, (const char *)text.data, text.len, e);
            buf_free(&text);
            sums_seen = true;
            continue;
        }
        if (n_files == cap) {
            cap = cap ? cap * 2 : 64;
            unpacked_file *nf = cap > MAX_ENTRIES_PER_DIR ? NULL : realloc(files, cap * sizeof *files);
            if (!nf) {
                rc = err_set(e, ERR_NOMEM, "too many entries in %s", archive_path);
                break;
            }
            files = nf;
        }
        unpacked_file *uf = &files[n_files];
        memset(uf, 0, sizeof *uf);
        snprintf(uf->name, sizeof uf->name, "%s", rest);
        if ((rc = extract_entry(a, archive_path, dir_fd, dest, rest, size, uf->digest, e))) break;
        n_files++;
    }
    if (dir_fd >= 0) close(dir_fd);
    archive_read_free(a);
    free(files);
    if (!rc && !top[0]) rc = err_set(e, ERR_INVALID, "archive %s is empty", archive_path);
    if (!rc && !sums_seen) rc = err_set(e, ERR_INVALID, "archive %s ends before its " SNAPSHOT_SUMS " (truncated?)", archive_path);
    return rc;
}

err_code snapshot_blob_list_each(const char *dir, err_code (*fn)(void *ctx, const char *cid, err_t *e), void *ctx, err_t *e) {
    char path[SNAPSHOT_PATH_MAX], line[CID_STR_MAX + 2], q[BACKUP_NAME_QUOTE_MAX];
    snapshot_path(dir, "blob-list.txt", path);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "cannot read the blob list %s: %s", path, strerror(errno));
    err_code rc = ERR_OK;
    int64_t bytes = 0;
    for (long n = 1; !rc && fgets(line, sizeof line, f); n++) {
        size_t l = strlen(line);
        bytes += (int64_t)l;
        bool whole = l && line[l - 1] == '\n';
        if (whole) line[--l] = 0;
        err_t ne = {0};
        if (bytes > SNAPSHOT_BLOB_LIST_MAX_BYTES)
            rc = err_set(e, ERR_LIMIT, "the blob list %s is larger than %lld bytes", path, (long long)SNAPSHOT_BLOB_LIST_MAX_BYTES);
        else if (!whole && !feof(f))
            rc = err_set(e, ERR_INVALID, "the blob list %s, line %ld: '%s' is too long for a CID", path, n, backup_name_quote(line, q));
        else if (!l) continue;
        else if (!backup_name_cid(line, true, &ne))
            rc = err_set(e, ERR_INVALID, "the blob list %s, line %ld: %s; refusing this snapshot", path, n, ne.msg);
        else rc = fn(ctx, line, e);
    }
    if (!rc && ferror(f)) rc = err_set(e, ERR_IO, "reading %s failed", path);
    fclose(f);
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
