/* test_prune.c — retention (src/pipeline/prune.c) on backup directories built from synthetic
 * index rows and empty archive files: the calendar rules (days, ISO weeks, months, newest always
 * kept), chains, blobs shared across chains, unfinished and running backups, a missing archive,
 * --dry-run; and the `pdsmove prune` exit codes (needs PDSMOVE_BIN, as `zig build test` sets). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_testutil.h"
#include "pdsmove/backup_index.h"
#include "pdsmove/journal.h"
#include "pdsmove/prune.h"

#include "scratch_testutil.h"

static char dir[64];
static backup_index *idx;

static void setup(void) {
    scratch_make(dir, sizeof dir, "prune");
    char p[128];
    snprintf(p, sizeof p, "%s/snapshots", dir);
    cr_assert_eq(mkdir(p, 0700), 0);
    err_t e = {0};
    cr_assert_eq(backup_index_open(dir, &idx, &e), ERR_OK, "%s", e.msg);
}

static void teardown(void) {
    backup_index_close(idx);
    idx = NULL;
    scratch_remove(dir);
}

TestSuite(prune, .init = setup, .fini = teardown);

static const char *archive_of(const char *id, char *out, size_t size) {
    snprintf(out, size, "%s-x.tar.zst", id);
    return out;
}

static bool archive_exists(const char *id) {
    char a[256], p[400];
    snprintf(p, sizeof p, "%s/snapshots/%s", dir, archive_of(id, a, sizeof a));
    return access(p, F_OK) == 0;
}

/* One snapshot row of did, an empty archive file, the blobs its archive stores and its blob
 * set (space-separated fake CIDs; the index does not check them). */
static void add(const char *did, const char *id, const char *at, const char *base, const char *stores, const char *set) {
    backup_snapshot s = {0};
    snprintf(s.id, sizeof s.id, "%s", id);
    snprintf(s.did, sizeof s.did, "%s", did);
    snprintf(s.created_at, sizeof s.created_at, "%s", at);
    s.incremental = base != NULL;
    snprintf(s.base_id, sizeof s.base_id, "%s", base ? base : "");
    archive_of(id, s.archive, sizeof s.archive);
    err_t e = {0};
    cr_assert_eq(backup_index_add_snapshot(idx, &s, &e), ERR_OK, "%s", e.msg);
    char buf[512];
    for (int pass = 0; pass < 2; pass++) {
        const char *list = pass ? set : stores;
        snprintf(buf, sizeof buf, "%s", list ? list : "");
        for (char *save, *c = strtok_r(buf, " ", &save); c; c = strtok_r(NULL, " ", &save)) {
            if (pass) cr_assert_eq(backup_index_add_snapshot_blob(idx, id, c, &e), ERR_OK, "%s", e.msg);
            else cr_assert_eq(backup_index_add_blob(idx, did, c, 10, id, &e), ERR_OK, "%s", e.msg);
        }
    }
    char p[400];
    snprintf(p, sizeof p, "%s/snapshots/%s", dir, s.archive);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "x", 1), 1);
    close(fd);
}

/* A full snapshot with no blobs. */
static void add_full(const char *id, const char *at) { add("did:plc:a", id, at, NULL, NULL, NULL); }

static prune_report run(int daily, int weekly, int monthly, bool dry_run) {
    prune_opts o = {.dir = dir, .keep_daily = daily, .keep_weekly = weekly, .keep_monthly = monthly, .dry_run = dry_run};
    prune_report r;
    err_t e = {0};
    cr_assert_eq(prune_run(&o, &r, &e), ERR_OK, "%s", e.msg);
    return r;
}

static const prune_entry *entry(const prune_report *r, const char *id) {
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->v[i].id, id)) return &r->v[i];
    cr_assert_fail("no snapshot %s in the report", id);
    return NULL;
}

static bool in_index(const char *id) {
    backup_snapshot s;
    return backup_index_get(idx, id, &s, NULL) == ERR_OK;
}

static bool blob_home(const char *cid, const char *expect) {
    char where[BACKUP_ID_MAX];
    if (backup_index_blob_where(idx, "did:plc:a", cid, where, sizeof where, NULL) != ERR_OK) return expect == NULL;
    return expect && !strcmp(where, expect);
}

/* ---- the calendar ---- */

Test(prune, calendar_keys_follow_iso_weeks_across_year_ends) {
    static const struct {
        const char *t;
        int64_t week;
    } cases[] = {{"2021-01-03T12:00:00Z", 202053}, {"2021-01-04T00:00:00Z", 202101}, {"2020-12-31T23:59:59Z", 202053},
                 {"2024-12-30T00:00:00Z", 202501}, {"2008-12-29T00:00:00Z", 200901}, {"2026-01-01T00:00:00Z", 202601},
                 {"2027-01-01T00:00:00Z", 202653}, {"2025-06-15T08:00:00.25Z", 202524}, {"2024-02-29T00:00:00Z", 202409}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t d, w, m;
        cr_assert(prune_calendar_keys(cases[i].t, &d, &w, &m), "%s", cases[i].t);
        cr_assert_eq(w, cases[i].week, "%s: week %lld, want %lld", cases[i].t, (long long)w, (long long)cases[i].week);
    }
    int64_t d, w, m;
    cr_assert(prune_calendar_keys("1970-01-01T00:00:00Z", &d, &w, &m));
    cr_assert_eq(d, 0);
    cr_assert_eq(w, 197001);
    cr_assert_eq(m, 197001);
    cr_assert(prune_calendar_keys("2000-03-01T00:00:00Z", &d, &w, &m));
    cr_assert_eq(d, 11017);
    cr_assert_eq(m, 200003);
    static const char *bad[] = {"2025-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2025-01-01T00:00:00+01:00",
                                "2025-01-01", "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z", "", "2025-01-01T00:00:00.Z",
                                "20250101T000000Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(prune_calendar_keys(bad[i], &d, &w, &m), "'%s' must not parse", bad[i]);
}

/* ---- the policy alone ---- */

static void select_on(const char *const *times, size_t n, int dd, int ww, int mm, prune_entry *v) {
    memset(v, 0, n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i].created_at = (char *)times[i];
    prune_select(v, n, dd, ww, mm);
}

Test(prune, daily_keeps_the_newest_of_each_of_the_last_days_that_have_one) {
    /* two a day on Jan 1..4, nothing on the 5th, one on the 6th */
    const char *t[] = {"2025-01-01T01:00:00Z", "2025-01-01T20:00:00Z", "2025-01-02T01:00:00Z", "2025-01-02T20:00:00Z",
                       "2025-01-03T01:00:00Z", "2025-01-03T20:00:00Z", "2025-01-04T01:00:00Z", "2025-01-04T20:00:00Z",
                       "2025-01-06T05:00:00Z"};
    prune_entry v[9];
    select_on(t, 9, 3, 0, 0, v);
    /* the days that have one: the 6th, the 4th, the 3rd (the empty 5th does not count) */
    const prune_decision want[] = {PRUNE_REMOVE, PRUNE_REMOVE, PRUNE_REMOVE, PRUNE_REMOVE, PRUNE_REMOVE,
                                   PRUNE_KEEP,   PRUNE_REMOVE, PRUNE_KEEP,   PRUNE_KEEP};
    for (size_t i = 0; i < 9; i++) cr_assert_eq(v[i].decision, want[i], "%s", t[i]);
    cr_assert_eq(v[8].why, PRUNE_WHY_LATEST | PRUNE_WHY_DAILY);
    cr_assert_eq(v[7].why, PRUNE_WHY_DAILY);
}

Test(prune, weekly_uses_iso_weeks_and_monthly_calendar_months) {
    /* Mon 2020-12-28 and Sun 2021-01-03 are both ISO week 2020-W53; Mon 2021-01-04 is 2021-W01 */
    const char *t[] = {"2020-11-30T00:00:00Z", "2020-12-28T00:00:00Z", "2021-01-03T00:00:00Z", "2021-01-04T00:00:00Z"};
    prune_entry v[4];
    select_on(t, 4, 0, 2, 0, v);
    cr_assert_eq(v[0].decision, PRUNE_REMOVE);
    cr_assert_eq(v[1].decision, PRUNE_REMOVE, "an older snapshot of week 2020-W53");
    cr_assert_eq(v[2].decision, PRUNE_KEEP, "the newest of week 2020-W53 (in January)");
    cr_assert_eq(v[2].why, PRUNE_WHY_WEEKLY);
    cr_assert_eq(v[3].why, PRUNE_WHY_LATEST | PRUNE_WHY_WEEKLY);

    select_on(t, 4, 0, 0, 3, v);
    cr_assert_eq(v[0].why, PRUNE_WHY_MONTHLY, "November");
    cr_assert_eq(v[1].why, PRUNE_WHY_MONTHLY, "the newest of December");
    cr_assert_eq(v[2].decision, PRUNE_REMOVE, "not the newest of January");
    cr_assert_eq(v[3].why, PRUNE_WHY_LATEST | PRUNE_WHY_MONTHLY);
}

Test(prune, rules_are_independent_and_the_newest_is_always_kept) {
    const char *t[] = {"2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-02-02T00:00:00Z", "not a time"};
    prune_entry v[4];
    select_on(t, 3, 0, 0, 0, v);
    cr_assert_eq(v[0].decision, PRUNE_REMOVE);
    cr_assert_eq(v[1].decision, PRUNE_REMOVE);
    cr_assert_eq(v[2].decision, PRUNE_KEEP);
    cr_assert_eq(v[2].why, PRUNE_WHY_LATEST);
    select_on(t, 3, 1, 1, 2, v);
    cr_assert_eq(v[0].why, PRUNE_WHY_MONTHLY);
    cr_assert_eq(v[1].decision, PRUNE_REMOVE, "same week and month as a newer one");
    cr_assert_eq(v[2].why, PRUNE_WHY_LATEST | PRUNE_WHY_DAILY | PRUNE_WHY_WEEKLY | PRUNE_WHY_MONTHLY);
    /* a snapshot whose time cannot be read is kept rather than guessed about */
    const char *u[] = {"not a time", "2025-02-02T00:00:00Z"};
    select_on(u, 2, 0, 0, 0, v);
    cr_assert_eq(v[0].decision, PRUNE_KEEP);
    cr_assert_eq(v[0].why, PRUNE_WHY_UNDATED);
}

/* ---- on a backup directory ---- */

Test(prune, removes_old_full_snapshots_and_their_rows) {
    add_full("s1", "2025-01-01T03:00:00Z");
    add_full("s2", "2025-01-02T03:00:00Z");
    add_full("s3", "2025-01-03T03:00:00Z");
    prune_report r = run(2, 0, 0, false);
    cr_assert_eq(entry(&r, "s1")->decision, PRUNE_REMOVE);
    cr_assert(entry(&r, "s1")->removed);
    cr_assert_eq(entry(&r, "s2")->decision, PRUNE_KEEP);
    cr_assert_eq(entry(&r, "s3")->why, PRUNE_WHY_LATEST | PRUNE_WHY_DAILY);
    cr_assert_eq(r.removed, 1);
    cr_assert_eq(r.kept, 2);
    cr_assert_eq(r.accounts, 1);
    cr_assert_not(archive_exists("s1"));
    cr_assert_not(in_index("s1"));
    cr_assert(archive_exists("s2") && in_index("s2") && archive_exists("s3"));
    prune_report_free(&r);
    /* again: nothing left to do */
    r = run(2, 0, 0, false);
    cr_assert_eq(r.removed, 0);
    cr_assert_eq(r.to_remove, 0);
    prune_report_free(&r);
}

Test(prune, a_kept_incremental_keeps_its_whole_chain) {
    add("did:plc:a", "f1", "2025-01-01T03:00:00Z", NULL, NULL, NULL);
    add("did:plc:a", "i2", "2025-01-02T03:00:00Z", "f1", NULL, NULL);
    add("did:plc:a", "i3", "2025-01-03T03:00:00Z", "i2", NULL, NULL);
    add("did:plc:a", "f4", "2025-01-04T03:00:00Z", NULL, NULL, NULL);
    add("did:plc:a", "i5", "2025-01-05T03:00:00Z", "f4", NULL, NULL);
    prune_report r = run(3, 0, 0, true);
    cr_assert_eq(entry(&r, "i5")->decision, PRUNE_KEEP);
    cr_assert_eq(entry(&r, "f4")->decision, PRUNE_KEEP);
    cr_assert_eq(entry(&r, "i3")->decision, PRUNE_KEEP);
    const prune_entry *x = entry(&r, "i2");
    cr_assert_eq(x->decision, PRUNE_NEEDED);
    cr_assert_eq(x->need, PRUNE_NEED_CHAIN);
    cr_assert_str_eq(x->needed_by, "i3");
    x = entry(&r, "f1");
    cr_assert_eq(x->decision, PRUNE_NEEDED);
    cr_assert_str_eq(x->needed_by, "i2");
    cr_assert_eq(r.to_remove, 0);
    prune_report_free(&r);

    r = run(1, 0, 0, false);
    cr_assert_eq(entry(&r, "i5")->decision, PRUNE_KEEP);
    cr_assert_eq(entry(&r, "f4")->decision, PRUNE_NEEDED);
    cr_assert_str_eq(entry(&r, "f4")->needed_by, "i5");
    cr_assert_eq(r.removed, 3);
    cr_assert(archive_exists("i5") && archive_exists("f4"));
    cr_assert_not(archive_exists("f1") || archive_exists("i2") || archive_exists("i3"));
    cr_assert_not(in_index("f1") || in_index("i2") || in_index("i3"));
    prune_report_free(&r);
}

Test(prune, an_archive_storing_blobs_a_kept_snapshot_needs_stays) {
    /* f1 stores a; i2 stores b; f3 (a --full run) has a and c and stores only c, the new one
     * (a backup stores each blob once per account, in the first snapshot that saw it) */
    add("did:plc:a", "f1", "2025-01-01T03:00:00Z", NULL, "a", "a");
    add("did:plc:a", "i2", "2025-01-02T03:00:00Z", "f1", "b", "a b");
    add("did:plc:a", "f3", "2025-01-03T03:00:00Z", NULL, "c", "a c");
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(entry(&r, "f3")->decision, PRUNE_KEEP);
    const prune_entry *x = entry(&r, "f1");
    cr_assert_eq(x->decision, PRUNE_NEEDED, "f1 stores blob a of f3's blob set");
    cr_assert_eq(x->need, PRUNE_NEED_BLOBS);
    cr_assert_str_eq(x->needed_by, "f3");
    cr_assert_eq(x->blobs_for, 1);
    cr_assert_eq(entry(&r, "i2")->decision, PRUNE_REMOVE, "i2 stores only b, which nothing kept has");
    cr_assert(entry(&r, "i2")->removed);
    cr_assert(archive_exists("f1"));
    cr_assert_not(archive_exists("i2"));
    cr_assert(blob_home("a", "f1"));
    cr_assert(blob_home("b", NULL), "the rows of blobs stored only in i2 go with it");
    cr_assert(blob_home("c", "f3"));
    prune_report_free(&r);
}

Test(prune, what_a_needed_snapshot_needs_is_needed_too) {
    /* f3 needs blob b, stored by i2; i2 is checked by verify like any snapshot, so its base f1
     * (and the blobs of i2's set) must stay as well, while i4 (unneeded) goes */
    add("did:plc:a", "f1", "2025-01-01T03:00:00Z", NULL, "a", "a");
    add("did:plc:a", "i2", "2025-01-02T03:00:00Z", "f1", "b", "a b");
    add("did:plc:a", "i4", "2025-01-02T04:00:00Z", "i2", "d", "a b d");
    add("did:plc:a", "f3", "2025-01-03T03:00:00Z", NULL, NULL, "b");
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(entry(&r, "i2")->need, PRUNE_NEED_BLOBS);
    cr_assert_str_eq(entry(&r, "i2")->needed_by, "f3");
    cr_assert_eq(entry(&r, "f1")->decision, PRUNE_NEEDED);
    cr_assert_str_eq(entry(&r, "f1")->needed_by, "i2");
    cr_assert_eq(entry(&r, "i4")->decision, PRUNE_REMOVE);
    cr_assert(archive_exists("f1") && archive_exists("i2") && archive_exists("f3"));
    cr_assert_not(archive_exists("i4"));
    prune_report_free(&r);
}

Test(prune, dry_run_changes_nothing) {
    add_full("s1", "2025-01-01T03:00:00Z");
    add("did:plc:a", "s2", "2025-01-02T03:00:00Z", NULL, "z", "z");
    add_full("s3", "2025-01-03T03:00:00Z");
    prune_report r = run(1, 0, 0, true);
    cr_assert_eq(r.to_remove, 2);
    cr_assert_eq(r.removed, 0);
    cr_assert_eq(r.bytes_freed, 2, "two one-byte archives would go");
    cr_assert_not(entry(&r, "s1")->removed);
    prune_report_free(&r);
    cr_assert(archive_exists("s1") && archive_exists("s2") && in_index("s1") && in_index("s2"));
    cr_assert(blob_home("z", "s2"));
    char j[128];
    snprintf(j, sizeof j, "%s/journals", dir);
    cr_assert_neq(access(j, F_OK), 0, "a dry run creates no journal directory");
}

Test(prune, a_missing_archive_is_tolerated) {
    /* an earlier prune was killed after unlinking s1's archive, before its rows went */
    add_full("s1", "2025-01-01T03:00:00Z");
    add_full("s2", "2025-01-02T03:00:00Z");
    char a[256], p[400];
    snprintf(p, sizeof p, "%s/snapshots/%s", dir, archive_of("s1", a, sizeof a));
    cr_assert_eq(unlink(p), 0);
    prune_report r = run(1, 0, 0, false);
    const prune_entry *x = entry(&r, "s1");
    cr_assert(x->removed);
    cr_assert(x->archive_was_missing);
    cr_assert_eq(r.failed, 0);
    cr_assert_not(in_index("s1"));
    prune_report_free(&r);
}

Test(prune, accounts_are_pruned_separately) {
    add("did:plc:a", "a1", "2025-01-01T03:00:00Z", NULL, "x", "x");
    add("did:plc:a", "a2", "2025-01-02T03:00:00Z", NULL, NULL, NULL);
    add("did:plc:b", "b1", "2025-01-03T03:00:00Z", NULL, "x", "x"); /* same CID, other account */
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(r.accounts, 2);
    cr_assert_eq(entry(&r, "b1")->decision, PRUNE_KEEP, "the newest of did:plc:b, though older than a2");
    cr_assert_eq(entry(&r, "a1")->decision, PRUNE_REMOVE);
    cr_assert_not(archive_exists("a1"));
    char where[BACKUP_ID_MAX];
    cr_assert_eq(backup_index_blob_where(idx, "did:plc:b", "x", where, sizeof where, NULL), ERR_OK);
    cr_assert_str_eq(where, "b1");
    prune_report_free(&r);
}

static void journal_path(char *out, size_t size) {
    char jd[128];
    snprintf(jd, sizeof jd, "%s/journals", dir);
    mkdir(jd, 0700);
    snprintf(out, size, "%s/did_plc_a.sqlite", jd);
}

Test(prune, an_account_whose_backup_runs_is_skipped) {
    add_full("s1", "2025-01-01T03:00:00Z");
    add_full("s2", "2025-01-02T03:00:00Z");
    char jp[200];
    journal_path(jp, sizeof jp);
    journal *j;
    err_t e = {0};
    cr_assert_eq(journal_open(jp, &j, &e), ERR_OK, "%s", e.msg); /* what a running backup holds */
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(r.busy_accounts, 1);
    cr_assert_eq(entry(&r, "s1")->decision, PRUNE_BUSY);
    cr_assert(strstr(r.first_error, "did:plc:a"), "%s", r.first_error);
    cr_assert(archive_exists("s1"));
    prune_report_free(&r);
    journal_close(j);
    r = run(1, 0, 0, false);
    cr_assert_eq(r.removed, 1);
    prune_report_free(&r);
}

Test(prune, an_unfinished_backup_keeps_its_base_and_the_blobs_it_counts_on) {
    /* a backup s4 was killed after listing its blobs: it builds on s3 (the newest when it
     * started) and will not download blob q, which s1 stores */
    add("did:plc:a", "s1", "2025-01-01T03:00:00Z", NULL, "q", "q");
    add_full("s2", "2025-01-02T03:00:00Z");
    add_full("s3", "2025-01-03T03:00:00Z");
    char jp[200];
    journal_path(jp, sizeof jp);
    journal *j;
    journal_run run_;
    err_t e = {0};
    cr_assert_eq(journal_open(jp, &j, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_run_begin(j, "backup", "did:plc:a", &run_, &e), ERR_OK);
    cr_assert_eq(journal_kv_set(j, run_.id, "snapshot_id", "s4", &e), ERR_OK);
    cr_assert_eq(journal_kv_set(j, run_.id, "base_id", "s3", &e), ERR_OK);
    journal_close(j);
    char wd[160], bl[200];
    snprintf(wd, sizeof wd, "%s/.work-s4", dir);
    cr_assert_eq(mkdir(wd, 0700), 0);
    snprintf(bl, sizeof bl, "%s/blob-list.txt", wd);
    FILE *f = fopen(bl, "w");
    cr_assert_not_null(f);
    fputs("q\n", f);
    fclose(f);
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(r.unfinished, 1);
    cr_assert_eq(entry(&r, "s3")->decision, PRUNE_KEEP);
    const prune_entry *x = entry(&r, "s1");
    cr_assert_eq(x->decision, PRUNE_NEEDED);
    cr_assert_eq(x->need, PRUNE_NEED_UNFINISHED);
    cr_assert_str_eq(x->needed_by, "s4");
    cr_assert(archive_exists("s1"));
    cr_assert_eq(entry(&r, "s2")->decision, PRUNE_REMOVE);
    cr_assert_eq(r.removed, 1);
    prune_report_free(&r);

    /* once that backup finished, s1 is no longer needed */
    cr_assert_eq(journal_open(jp, &j, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_run_finish(j, run_.id, &e), ERR_OK);
    journal_close(j);
    r = run(1, 0, 0, false);
    cr_assert_eq(r.unfinished, 0);
    cr_assert_eq(entry(&r, "s1")->decision, PRUNE_REMOVE);
    cr_assert_not(archive_exists("s1"));
    prune_report_free(&r);
}

Test(prune, an_index_naming_a_path_outside_is_refused) {
    add_full("s2", "2025-01-02T03:00:00Z");
    backup_snapshot s = {0};
    snprintf(s.id, sizeof s.id, "evil");
    snprintf(s.did, sizeof s.did, "did:plc:a");
    snprintf(s.created_at, sizeof s.created_at, "2025-01-01T00:00:00Z");
    snprintf(s.archive, sizeof s.archive, "../index.sqlite");
    err_t e = {0};
    cr_assert_eq(backup_index_add_snapshot(idx, &s, &e), ERR_OK);
    prune_report r = run(1, 0, 0, false);
    cr_assert_eq(r.failed, 1);
    cr_assert(strstr(r.first_error, "not a file name"), "%s", r.first_error);
    char p[128];
    snprintf(p, sizeof p, "%s/index.sqlite", dir);
    cr_assert_eq(access(p, F_OK), 0);
    prune_report_free(&r);
}

Test(prune, not_a_backup_directory_is_an_error_and_is_left_untouched) {
    char other[128];
    snprintf(other, sizeof other, "%s/empty", dir);
    cr_assert_eq(mkdir(other, 0700), 0);
    prune_opts o = {.dir = other, .keep_daily = 1};
    prune_report r;
    err_t e = {0};
    cr_assert_eq(prune_run(&o, &r, &e), ERR_NOT_FOUND);
    cr_assert(strstr(e.msg, "not a backup directory"), "%s", e.msg);
    prune_report_free(&r);
    char p[200];
    snprintf(p, sizeof p, "%s/index.sqlite", other);
    cr_assert_neq(access(p, F_OK), 0);
}

/* ---- the command (suite cli_prune: needs the built binary) ---- */

TestSuite(cli_prune, .init = setup, .fini = teardown);

Test(cli_prune, exit_codes_removed_nothing_to_do_usage) {
    add_full("s1", "2025-01-01T03:00:00Z");
    add_full("s2", "2025-01-02T03:00:00Z");
    cli_result c = cli_run((const char *[]){"prune", dir, NULL});
    cr_assert_eq(c.status, 2, "no rule given: %s", c.err);
    cli_result_free(&c);
    c = cli_run((const char *[]){"prune", dir, "--keep-daily", "-1", NULL});
    cr_assert_eq(c.status, 2);
    cli_result_free(&c);
    c = cli_run((const char *[]){"prune", dir, "--keep-daily", "1", "--dry-run", NULL});
    cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
    cr_assert(strstr(c.out, "would remove s1-x.tar.zst"), "%s", c.out);
    cr_assert(strstr(c.out, "kept (latest, daily)"), "%s", c.out);
    cli_result_free(&c);
    cr_assert(archive_exists("s1"));
    c = cli_run((const char *[]){"prune", dir, "--keep-daily", "1", NULL});
    cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
    cr_assert(strstr(c.out, "removed s1-x.tar.zst"), "%s", c.out);
    cr_assert(strstr(c.out, "1 removed"), "%s", c.out);
    cli_result_free(&c);
    cr_assert_not(archive_exists("s1"));
    c = cli_run((const char *[]){"prune", dir, "--keep-daily", "1", NULL});
    cr_assert_eq(c.status, 4, "nothing to do: %s%s", c.out, c.err);
    cli_result_free(&c);
    c = cli_run((const char *[]){"prune", "/nonexistent-pdsmove-dir", "--keep-daily", "1", NULL});
    cr_assert_eq(c.status, 1);
    cr_assert(strstr(c.err, "not a backup directory"), "%s", c.err);
    cli_result_free(&c);
}

Test(cli_prune, busy_account_is_partly_done) {
    add_full("s1", "2025-01-01T03:00:00Z");
    add_full("s2", "2025-01-02T03:00:00Z");
    char jp[200];
    journal_path(jp, sizeof jp);
    journal *j;
    err_t e = {0};
    cr_assert_eq(journal_open(jp, &j, &e), ERR_OK, "%s", e.msg);
    cli_result c = cli_run((const char *[]){"prune", dir, "--keep-daily", "1", NULL});
    cr_assert_eq(c.status, 3, "%s%s", c.out, c.err);
    cr_assert(strstr(c.err, "backup of it is running"), "%s", c.err);
    cli_result_free(&c);
    journal_close(j);
}
