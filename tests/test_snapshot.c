/* test_snapshot.c — snapshot directories packed into archives and back: identical files, a
 * damaged archive refused, foreign entries (paths outside the layout) refused, no half file
 * under the final name. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/snapshot.h"

static char root[64];
static void setup(void) {
    snprintf(root, sizeof root, "/tmp/pdsmove-snap-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}
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
    cr_assert_eq(snapshot_unpack(out, dest, top, sizeof top, &e), ERR_OK, "%s", e.msg);
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
    cr_assert_eq(snapshot_pack(dir, "t", base, out, &e), ERR_OK);
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
    cr_assert_neq(snapshot_unpack(out, dest, top, sizeof top, &e), ERR_OK, "a flipped byte must not unpack cleanly");
    cr_assert(strstr(e.msg, "damaged") || strstr(e.msg, "unexpected"), "%s", e.msg);
}

Test(snapshot, entries_outside_the_layout_are_refused) {
    char path[SNAPSHOT_PATH_MAX], dest[SNAPSHOT_PATH_MAX], top[128];
    snprintf(path, sizeof path, "%s/evil.tar", root);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_filename(a, path);
    struct archive_entry *en = archive_entry_new();
    archive_entry_set_pathname(en, "t/../../etc/passwd");
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
    cr_assert_eq(snapshot_unpack(path, dest, top, sizeof top, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "unexpected entry"), "%s", e.msg);
}
