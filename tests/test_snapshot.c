/* test_snapshot.c — snapshot directories packed into archives and back: identical files, a
 * damaged archive refused, foreign entries (paths outside the layout) refused, no half file
 * under the final name. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "pdsmove/codec.h"
#include "pdsmove/hash.h"
#include "pdsmove/snapshot.h"

#include "scratch_testutil.h"

static char root[64];
static void setup(void) { scratch_make(root, sizeof root, "snap"); }
static void teardown(void) { scratch_remove(root); }
TestSuite(snapshot, .init = setup, .fini = teardown);

#define BLOB "bafkreicwo6nmblvtjkv2s62fu5jx3anyff3laodzcxkgxq3d3xtcoht5d4"

static void put(const char *dir, const char *name, const char *content, size_t n) {
    char p[SNAPSHOT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    cr_assert_eq(fwrite(content, 1, n, f), n);
    fclose(f);
}

static char *slurp(const char *dir, const char *name, size_t *n) {
    char p[SNAPSHOT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "%s", p);
    char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static void make_snapshot(char *dir) {
    snprintf(dir, SNAPSHOT_PATH_MAX, "%s/snap", root);
    mkdir(dir, 0700);
    char blobs[SNAPSHOT_PATH_MAX];
    snprintf(blobs, sizeof blobs, "%s/blobs", dir);
    mkdir(blobs, 0700);
    json_t *m = json_pack("{s:s, s:i}", "format", SNAPSHOT_FORMAT, "version", 1);
    err_t e;
    cr_assert_eq(snapshot_write_json(dir, "manifest.json", m, &e), ERR_OK, "%s", e.msg);
    json_decref(m);
    static char big[300000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7919 % 251);
    put(dir, "repo.car", big, sizeof big);
    put(dir, "blobs/" BLOB, "blob bytes", 10);
    put(dir, "blobs/" BLOB ".part", "half", 4); /* in progress: never packed */
}

Test(snapshot, pack_then_unpack_gives_the_same_files) {
    char dir[SNAPSHOT_PATH_MAX], base[SNAPSHOT_PATH_MAX], out[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    make_snapshot(dir);
    snprintf(base, sizeof base, "%s/did_plc_x-20261125T000000Z-full", root);
    err_t e;
    cr_assert_eq(snapshot_pack(dir, "did_plc_x-20261125T000000Z", base, out, &e), ERR_OK, "%s", e.msg);
    cr_assert(strstr(out, ".tar.zst") || strstr(out, ".tar.gz"), "%s", out);
    char tmp[SNAPSHOT_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cr_assert_neq(access(tmp, F_OK), 0, "no temporary file may remain");
    snprintf(dest, sizeof dest, "%s/back", root);
    cr_assert_eq(snapshot_unpack(out, dest, NULL, top, sizeof top, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(top, "did_plc_x-20261125T000000Z");
    size_t a, b;
    char *x = slurp(dir, "repo.car", &a), *y = slurp(dest, "repo.car", &b);
    cr_assert_eq(a, b);
    cr_assert_eq(memcmp(x, y, a), 0);
    free(x);
    free(y);
    x = slurp(dest, "blobs/" BLOB, &a);
    cr_assert_eq(a, 10);
    free(x);
    char part[SNAPSHOT_PATH_MAX];
    snprintf(part, sizeof part, "%s/blobs/" BLOB ".part", dest);
    cr_assert_neq(access(part, F_OK), 0, "a .part file was packed");
    json_t *m;
    cr_assert_eq(snapshot_read_json(dest, "manifest.json", &m, &e), ERR_OK);
    cr_assert_str_eq(json_string_value(json_object_get(m, "format")), SNAPSHOT_FORMAT);
    json_decref(m);
}

Test(snapshot, a_damaged_archive_is_refused) {
    char dir[SNAPSHOT_PATH_MAX], base[SNAPSHOT_PATH_MAX], out[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    make_snapshot(dir);
    snprintf(base, sizeof base, "%s/a", root);
    err_t e;
    cr_assert_eq(snapshot_pack(dir, "did_plc_x-20261125T000000Z", base, out, &e), ERR_OK);
    struct stat st;
    stat(out, &st);
    int fd = open(out, O_RDWR);
    unsigned char c;
    off_t at = st.st_size / 2;
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x55;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
    snprintf(dest, sizeof dest, "%s/back", root);
    cr_assert_neq(snapshot_unpack(out, dest, NULL, top, sizeof top, &e), ERR_OK, "a flipped byte must not unpack cleanly");
    cr_assert(strstr(e.msg, "damaged") || strstr(e.msg, "unexpected"), "%s", e.msg);
}

Test(snapshot, entries_outside_the_layout_are_refused) {
    char path[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    snprintf(path, sizeof path, "%s/evil.tar", root);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path);
    struct archive_entry *en = archive_entry_new();
    archive_entry_set_pathname(en, "did_plc_x-20261125T000000Z/../../etc/passwd");
    archive_entry_set_size(en, 3);
    archive_entry_set_filetype(en, AE_IFREG);
    archive_entry_set_perm(en, 0600);
    archive_write_header(a, en);
    archive_write_data(a, "abc", 3);
    archive_entry_free(en);
    archive_write_close(a);
    archive_write_free(a);
    snprintf(dest, sizeof dest, "%s/back", root);
    err_t e;
    cr_assert_eq(snapshot_unpack(path, dest, NULL, top, sizeof top, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "unexpected entry"), "%s", e.msg);
}

/* ---- hostile archives: built entry by entry ---- */

#define TOP "did_plc_x-20261125T000000Z"

typedef struct {
    const char *name;
    const char *data;    /* NULL: `zeros` bytes of zeros */
    int64_t zeros;
    int64_t declared;    /* > 0: the size the header declares (no data written) */
} entry;

enum { PLAIN_TAR, ZSTD_TAR, XZ_TAR };

/* Writes a tar (compressed by filter) of the entries, then SHA256SUMS of sums_text (NULL: none). */
static void make_tar(const char *path, int filter, const entry *es, size_t n, const char *sums_text) {
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (filter == ZSTD_TAR) cr_assert_eq(archive_write_add_filter_zstd(a), ARCHIVE_OK, "no zstd in this libarchive");
    if (filter == XZ_TAR) cr_assert_eq(archive_write_add_filter_xz(a), ARCHIVE_OK, "no xz in this libarchive");
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
    static char zero[65536];
    for (size_t i = 0; i <= n; i++) {
        if (i == n && !sums_text) break;
        entry s = i < n ? es[i] : (entry){TOP "/SHA256SUMS", sums_text, 0, 0};
        size_t len = s.data ? strlen(s.data) : (size_t)s.zeros;
        struct archive_entry *en = archive_entry_new();
        archive_entry_set_pathname(en, s.name);
        archive_entry_set_size(en, s.declared > 0 ? s.declared : (la_int64_t)len);
        archive_entry_set_filetype(en, AE_IFREG);
        archive_entry_set_perm(en, 0600);
        cr_assert_eq(archive_write_header(a, en), ARCHIVE_OK, "%s", archive_error_string(a));
        if (s.declared <= 0 && s.data) archive_write_data(a, s.data, len);
        for (int64_t left = s.declared <= 0 && !s.data ? s.zeros : 0; left > 0; left -= (int64_t)sizeof zero)
            archive_write_data(a, zero, left < (int64_t)sizeof zero ? (size_t)left : sizeof zero);
        archive_entry_free(en);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static void sha_hex(const char *data, size_t n, char hex[65]) {
    uint8_t d[SHA256_BYTES];
    hash_sha256((const uint8_t *)data, n, d);
    hex_encode(d, sizeof d, hex, 65);
}

static char *sums_line(char *out, size_t size, const char *content, const char *name) {
    char hex[65];
    sha_hex(content, strlen(content), hex);
    size_t l = strlen(out);
    snprintf(out + l, size - l, "%s  %s\n", hex, name);
    return out;
}

static bool exists_in(const char *dir, const char *name) {
    char p[SNAPSHOT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Builds a tar of the entries (and SHA256SUMS of sums, NULL: none) and unpacks it into a new
 * directory; *dest_out (if given) gets that directory. */
static err_code unpack_entries(const entry *es, size_t n, const char *sums, const snapshot_unpack_opts *o, err_t *e,
                               char *dest_out) {
    static int k;
    char path[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    snprintf(path, sizeof path, "%s/t%d.tar", root, k);
    snprintf(dest, sizeof dest, "%s/back%d", root, k++);
    make_tar(path, PLAIN_TAR, es, n, sums);
    if (dest_out) snprintf(dest_out, SNAPSHOT_PATH_MAX, "%s", dest);
    return snapshot_unpack(path, dest, o, top, sizeof top, e);
}

Test(snapshot, a_name_twice_in_the_archive_or_its_checksums_is_refused) {
    /* before: the second repo.car replaced the first, and two SHA256SUMS lines for the one
     * name both checked the first copy (so a file they did not list went unchecked) */
    entry twice[] = {{TOP "/repo.car", "good", 0, 0}, {TOP "/repo.car", "evil", 0, 0}};
    entry unlisted[] = {{TOP "/repo.car", "good", 0, 0}, {TOP "/blob-list.txt", "x", 0, 0}};
    const entry *cases[] = {twice, unlisted};
    const char *says[] = {"holds 'repo.car' twice", "lists 'repo.car' twice"};
    for (size_t i = 0; i < 2; i++) {
        char sums[1024] = "";
        sums_line(sums, sizeof sums, "good", "repo.car");
        sums_line(sums, sizeof sums, "good", "repo.car");
        err_t e;
        cr_assert_eq(unpack_entries(cases[i], 2, sums, NULL, &e, NULL), ERR_INVALID, "case %zu", i);
        cr_assert(strstr(e.msg, says[i]), "%s", e.msg);
    }
}

Test(snapshot, only_the_compressions_pdsmove_writes_are_read) {
    /* before: archive_read_support_filter_all, so a crafted archive could pick any filter
     * libarchive knows, some of them run as external programs (lrzip, grzip, lzop) */
    char sums[1024] = "", path[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    sums_line(sums, sizeof sums, "car", "repo.car");
    entry es[] = {{TOP "/repo.car", "car", 0, 0}};
    snprintf(path, sizeof path, "%s/xz.tar.xz", root);
    snprintf(dest, sizeof dest, "%s/xz-out", root);
    make_tar(path, XZ_TAR, es, 1, sums);
    err_t e;
    cr_assert_neq(snapshot_unpack(path, dest, NULL, top, sizeof top, &e), ERR_OK, "an xz archive must be refused");
    cr_assert_not(exists_in(dest, "repo.car"));
    /* the same entries as zstd are read */
    snprintf(path, sizeof path, "%s/ok.tar.zst", root);
    snprintf(dest, sizeof dest, "%s/zst-out", root);
    make_tar(path, ZSTD_TAR, es, 1, sums);
    cr_assert_eq(snapshot_unpack(path, dest, NULL, top, sizeof top, &e), ERR_OK, "%s", e.msg);
    cr_assert(exists_in(dest, "repo.car"));
}

Test(snapshot, the_top_directory_is_compared_before_anything_is_written) {
    char sums[1024] = "", dest[SNAPSHOT_PATH_MAX];
    sums_line(sums, sizeof sums, "car", "repo.car");
    entry es[] = {{TOP "/repo.car", "car", 0, 0}};
    snapshot_unpack_opts o = {.expect_top = "did_plc_x-20261126T000000Z"};
    err_t e;
    cr_assert_eq(unpack_entries(es, 1, sums, &o, &e, dest), ERR_MISMATCH);
    cr_assert(strstr(e.msg, "holds snapshot '" TOP "', not did_plc_x-20261126T000000Z"), "%s", e.msg);
    cr_assert_not(exists_in(dest, "repo.car"), "nothing may be written from an archive of another snapshot");
    /* and a top directory that is no snapshot id at all */
    entry bad[] = {{"x/repo.car", "car", 0, 0}};
    cr_assert_eq(unpack_entries(bad, 1, sums, NULL, &e, NULL), ERR_INVALID);
    cr_assert(strstr(e.msg, "top directory is not a snapshot id"), "%s", e.msg);
}

Test(snapshot, blobs_must_be_named_by_canonical_raw_cids) {
    static const char *const names[] = {TOP "/blobs/" "BAFKREICWO6NMBLVTJKV2S62FU5JX3ANYFF3LAODZCXKGXQ3D3XTCOHT5D4",
                                        TOP "/blobs/bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                                        TOP "/blobs/bafkreiaaaaaaa", TOP "/blobs/" BLOB "/x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        entry es[] = {{names[i], "b", 0, 0}};
        err_t e;
        cr_assert_eq(unpack_entries(es, 1, "", NULL, &e, NULL), ERR_INVALID, "%s must be refused", names[i]);
        cr_assert(strstr(e.msg, "unexpected entry"), "%s", e.msg);
    }
}

Test(snapshot, the_destination_must_be_new) {
    char dir[SNAPSHOT_PATH_MAX], base[SNAPSHOT_PATH_MAX], out[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    make_snapshot(dir);
    snprintf(base, sizeof base, "%s/n", root);
    err_t e;
    cr_assert_eq(snapshot_pack(dir, TOP, base, out, &e), ERR_OK, "%s", e.msg);
    snprintf(dest, sizeof dest, "%s/stale", root);
    mkdir(dest, 0700);
    put(dest, "preferences.json", "{\"stale\":true}", 14);
    cr_assert_eq(snapshot_unpack(out, dest, NULL, top, sizeof top, &e), ERR_IO);
    cr_assert(strstr(e.msg, "left by an earlier run"), "%s", e.msg);
}

Test(snapshot, entries_over_their_cap_are_refused_from_the_header) {
    char dest[SNAPSHOT_PATH_MAX];
    /* a manifest of 2 MiB (cap 1 MiB): real bytes */
    entry es[] = {{TOP "/manifest.json", NULL, 2 << 20, 0}};
    err_t e;
    cr_assert_eq(unpack_entries(es, 1, "", NULL, &e, dest), ERR_LIMIT);
    cr_assert(strstr(e.msg, "'manifest.json' is 2097152 bytes, over the limit"), "%s", e.msg);
    cr_assert_not(exists_in(dest, "manifest.json"));
    /* a repo.car whose header declares more than SNAPSHOT_REPO_CAR_MAX_BYTES: refused before reading */
    entry car[] = {{TOP "/repo.car", NULL, 0, SNAPSHOT_REPO_CAR_MAX_BYTES + 1}};
    cr_assert_eq(unpack_entries(car, 1, NULL, NULL, &e, dest), ERR_LIMIT);
    cr_assert(strstr(e.msg, "'repo.car' is"), "%s", e.msg);
    cr_assert_not(exists_in(dest, "repo.car"));
}

static int64_t listed_ten(void *ctx, const char *cid) {
    (void)ctx;
    return strcmp(cid, BLOB) ? -1 : 10;
}

Test(snapshot, a_blob_larger_than_the_index_lists_is_refused) {
    entry es[] = {{TOP "/blobs/" BLOB, "eleven byte", 0, 0}};
    snapshot_unpack_opts o = {.blob_size = listed_ten};
    err_t e;
    cr_assert_eq(unpack_entries(es, 1, "", &o, &e, NULL), ERR_LIMIT);
    cr_assert(strstr(e.msg, "11 bytes, but the backup's index lists it as 10"), "%s", e.msg);
}

/* The reproduction: a small .tar.zst holding 1 GiB of zeros as repo.car, extracted
 * onto a 64 MiB tmpfs. Needs root to mount one; says so and skips otherwise. */
Test(snapshot, a_decompression_bomb_is_refused_before_it_fills_the_disk, .timeout = 120) {
    char mnt[SNAPSHOT_PATH_MAX], path[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    snprintf(mnt, sizeof mnt, "%s/small", root);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64m") != 0) {
        cr_skip_test("cannot mount a 64 MiB tmpfs here (needs root): the decompression bomb is not tested on a small disk; "
                     "entries_over_their_cap_are_refused_from_the_header still checks the caps");
        return;
    }
    snprintf(path, sizeof path, "%s/bomb.tar.zst", root);
    entry es[] = {{TOP "/repo.car", NULL, (int64_t)1 << 30, 0}};
    make_tar(path, ZSTD_TAR, es, 1, "");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_lt(st.st_size, 1 << 20, "the bomb is small: %lld bytes", (long long)st.st_size);
    snprintf(dest, sizeof dest, "%s/x", mnt);
    err_t e;
    err_code rc = snapshot_unpack(path, dest, NULL, top, sizeof top, &e);
    struct statvfs v;
    statvfs(mnt, &v);
    uint64_t used = (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
    cr_assert_eq(umount(mnt), 0, "%s", strerror(errno));
    cr_assert_eq(rc, ERR_IO, "%s", e.msg);
    cr_assert(strstr(e.msg, "not enough free space") && strstr(e.msg, "'repo.car'") && strstr(e.msg, "the disk is full"), "%s", e.msg);
    cr_assert_lt(used, 1 << 20, "nothing of the bomb was written (%llu bytes used)", (unsigned long long)used);
}

/* ---- blob lists ---- */

typedef struct {
    int n;
    char last[160];
} seen_list;

static err_code see(void *ctx, const char *cid, err_t *e) {
    (void)e;
    seen_list *s = ctx;
    s->n++;
    snprintf(s->last, sizeof s->last, "%s", cid);
    return ERR_OK;
}

Test(snapshot, blob_list_lines_must_be_canonical_raw_cids) {
    char dir[SNAPSHOT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/list", root);
    mkdir(dir, 0700);
    put(dir, "blob-list.txt", BLOB "\n\n" BLOB "\n", strlen(BLOB) * 2 + 3);
    seen_list s = {0};
    err_t e;
    cr_assert_eq(snapshot_blob_list_each(dir, see, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(s.n, 2);
    static const char *const bad[] = {BLOB "\n../../../../home/alice/.ssh/id_ed25519\n",
                                      BLOB "\nBAFKREICWO6NMBLVTJKV2S62FU5JX3ANYFF3LAODZCXKGXQ3D3XTCOHT5D4\n",
                                      BLOB "\nbafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm\n", BLOB "\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(dir, "blob-list.txt", bad[i], strlen(bad[i]));
        s = (seen_list){0};
        cr_assert_eq(snapshot_blob_list_each(dir, see, &s, &e), ERR_INVALID, "case %zu", i);
        cr_assert(strstr(e.msg, "blob-list.txt, line"), "%s", e.msg);
        cr_assert_lt(s.n, 2, "nothing of a bad line reaches the caller");
    }
    /* a line longer than any CID, ending in one: never read as two lines */
    char longline[400];
    memset(longline, 'a', 200);
    snprintf(longline + 200, sizeof longline - 200, "%s\n", BLOB);
    put(dir, "blob-list.txt", longline, strlen(longline));
    s = (seen_list){0};
    cr_assert_eq(snapshot_blob_list_each(dir, see, &s, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "too long"), "%s", e.msg);
    cr_assert_eq(s.n, 0);
}
