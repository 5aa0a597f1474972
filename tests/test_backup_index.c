/* test_backup_index.c — the index of a backup directory as a reader sees it: rows whose names
 * are not what pdsmove writes (a snapshot id, base id or archive that is a path, a blob stored
 * "in" a path) are refused naming the row, never skipped; the read-only handle neither creates
 * nor writes anything. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup_index.h"

#include "scratch_testutil.h"

static char dir[64];
static void setup(void) { scratch_make(dir, sizeof dir, "bidx"); }
static void teardown(void) { scratch_remove(dir); }
TestSuite(backup_index, .init = setup, .fini = teardown);

#define DID "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
#define ID1 "did_plc_ewvi7nxzyoun6zhxrhs64oiz-20261125T214500Z"
#define ID2 "did_plc_ewvi7nxzyoun6zhxrhs64oiz-20261126T214500Z"
#define COMMIT "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
#define BLOB "bafkreicwo6nmblvtjkv2s62fu5jx3anyff3laodzcxkgxq3d3xtcoht5d4"

static backup_snapshot row(const char *id, const char *base, const char *archive) {
    backup_snapshot s = {0};
    snprintf(s.id, sizeof s.id, "%s", id);
    snprintf(s.did, sizeof s.did, "%s", DID);
    snprintf(s.created_at, sizeof s.created_at, "2026-11-25T21:45:00Z");
    s.incremental = base != NULL;
    snprintf(s.base_id, sizeof s.base_id, "%s", base ? base : "");
    snprintf(s.commit, sizeof s.commit, "%s", COMMIT);
    snprintf(s.archive, sizeof s.archive, "%s", archive);
    return s;
}

/* Writes the rows with the writer's handle (which does not check), then reads with a reader's. */
static backup_index *with_rows(const backup_snapshot *rows, size_t n) {
    backup_index *w = NULL;
    err_t e = {0};
    cr_assert_eq(backup_index_open(dir, &w, &e), ERR_OK, "%s", e.msg);
    for (size_t i = 0; i < n; i++) cr_assert_eq(backup_index_add_snapshot(w, &rows[i], &e), ERR_OK, "%s", e.msg);
    backup_index_close(w);
    backup_index *r = NULL;
    cr_assert_eq(backup_index_open_readonly(dir, &r, &e), ERR_OK, "%s", e.msg);
    return r;
}

static bool count(void *ctx, const backup_snapshot *s) {
    (void)s;
    (*(int *)ctx)++;
    return true;
}

Test(backup_index, good_rows_are_read) {
    backup_snapshot rows[] = {row(ID1, NULL, ID1 "-full.tar.zst"), row(ID2, ID1, ID2 "-incr.tar.zst")};
    backup_index *x = with_rows(rows, 2);
    backup_snapshot s;
    err_t e = {0};
    cr_assert_eq(backup_index_latest(x, DID, &s, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(s.id, ID2);
    int n = 0;
    cr_assert_eq(backup_index_each(x, NULL, count, &n, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(n, 2);
    backup_index_close(x);
}

Test(backup_index, rows_naming_paths_are_refused_naming_the_row) {
    static const struct {
        const char *id, *base, *archive, *says;
    } cases[] = {
        {"../../../../tmp/x", NULL, ID1 "-full.tar.zst", "'../../../../tmp/x'"},
        {ID2, "../../../../tmp/x", ID2 "-incr.tar.zst", "'../../../../tmp/x'"},
        {ID2, ID2, ID2 "-incr.tar.zst", "builds on itself"},
        {ID1, NULL, "../index.sqlite", "archive name"},
        {"did_plc_aaaaaaaaaaaaaaaaaaaaaaaa-20261125T214500Z", NULL, ID1 "-full.tar.zst", "does not belong"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        teardown();
        setup();
        backup_snapshot r = row(cases[i].id, cases[i].base, cases[i].archive);
        backup_index *x = with_rows(&r, 1);
        backup_snapshot s;
        err_t e = {0};
        cr_assert_eq(backup_index_get(x, cases[i].id, &s, &e), ERR_INVALID, "case %zu must be refused", i);
        cr_assert(strstr(e.msg, "index.sqlite") && strstr(e.msg, cases[i].says), "case %zu: %s", i, e.msg);
        cr_assert_eq(backup_index_latest(x, DID, &s, &e), ERR_INVALID, "case %zu", i);
        int n = 0;
        cr_assert_eq(backup_index_each(x, NULL, count, &n, &e), ERR_INVALID, "case %zu: never skipped silently", i);
        cr_assert_eq(n, 0);
        backup_index_close(x);
    }
}

Test(backup_index, a_blob_stored_in_a_path_is_refused) {
    backup_snapshot r = row(ID1, NULL, ID1 "-full.tar.zst");
    backup_index *w = NULL;
    err_t e = {0};
    cr_assert_eq(backup_index_open(dir, &w, &e), ERR_OK);
    cr_assert_eq(backup_index_add_snapshot(w, &r, &e), ERR_OK);
    cr_assert_eq(backup_index_add_blob(w, DID, BLOB, 10, "../../../../tmp/x", &e), ERR_OK);
    cr_assert_eq(backup_index_add_blob(w, DID, "bafkreiaaaa", 10, ID1, &e), ERR_OK);
    cr_assert_eq(backup_index_add_snapshot_blob(w, ID1, "../../../../home/alice/.ssh/id_ed25519", &e), ERR_OK);
    backup_index_close(w);
    backup_index *x = NULL;
    cr_assert_eq(backup_index_open_readonly(dir, &x, &e), ERR_OK);
    char where[BACKUP_ID_MAX];
    cr_assert_eq(backup_index_blob_where(x, DID, BLOB, where, sizeof where, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "../../../../tmp/x"), "%s", e.msg);
    cr_assert_eq(backup_index_snapshot_blobs(x, ID1, NULL, NULL, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "blob CID"), "%s", e.msg);
    cr_assert_eq(backup_index_blob_size(x, DID, "bafkreiaaaa", ID1), 10);
    cr_assert_eq(backup_index_blob_size(x, DID, BLOB, ID1), -1);
    backup_index_close(x);
}

Test(backup_index, the_reader_creates_nothing) {
    backup_index *x = NULL;
    err_t e = {0};
    cr_assert_eq(backup_index_open_readonly(dir, &x, &e), ERR_NOT_FOUND);
    char p[128];
    snprintf(p, sizeof p, "%s/index.sqlite", dir);
    cr_assert_neq(access(p, F_OK), 0, "no index may be created by a reader");
    backup_snapshot r = row(ID1, NULL, ID1 "-full.tar.zst");
    x = with_rows(&r, 1);
    cr_assert_neq(backup_index_add_snapshot(x, &r, &e), ERR_OK, "the reader's handle cannot write");
    backup_index_close(x);
}
