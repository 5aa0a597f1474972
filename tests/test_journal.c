/* test_journal.c — the journal's promises: private file, one runner at a time, runs resume,
 * steps/kv/blobs persist across reopen, and a process killed mid-transaction leaves nothing
 * half-written. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pdsmove/journal.h"
#include "pdsmove/redact.h"

#include "scratch_testutil.h"

static char dir[64], path[128];

static void setup(void) {
    scratch_make(dir, sizeof dir, "journal");
    snprintf(path, sizeof path, "%s/j.sqlite", dir);
}
static void teardown(void) { scratch_remove(dir); }

TestSuite(journal, .init = setup, .fini = teardown);

Test(journal, file_is_private_and_single_runner) {
    journal *j, *j2;
    err_t e;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK, "%s", e.msg);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 077, 0, "mode %o", st.st_mode & 0777);
    cr_assert_eq(journal_open(path, &j2, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "in use by another pdsmove"), "%s", e.msg);
    journal_close(j);
    cr_assert_eq(journal_open(path, &j2, &e), ERR_OK, "lock released on close: %s", e.msg);
    journal_close(j2);
}

Test(journal, unfinished_run_is_resumed_finished_run_is_not) {
    journal *j;
    err_t e;
    journal_run r1, r2, r3;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r1, &e), ERR_OK);
    cr_assert_not(r1.resumed);
    cr_assert_eq(journal_step_set(j, r1.id, "export", STEP_DONE, "211 records", &e), ERR_OK);
    cr_assert_eq(journal_kv_set(j, r1.id, "commit", "bafyreiabc", &e), ERR_OK);
    journal_close(j);

    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r2, &e), ERR_OK);
    cr_assert(r2.resumed);
    cr_assert_eq(r2.id, r1.id);
    cr_assert(journal_step_done(j, r2.id, "export"));
    cr_assert_not(journal_step_done(j, r2.id, "import"));
    char v[64], detail[64];
    journal_step_status s;
    cr_assert_eq(journal_step_get(j, r2.id, "export", &s, detail, sizeof detail, &e), ERR_OK);
    cr_assert_str_eq(detail, "211 records");
    cr_assert_eq(journal_kv_get(j, r2.id, "commit", v, sizeof v, &e), ERR_OK);
    cr_assert_str_eq(v, "bafyreiabc");
    cr_assert_eq(journal_kv_get(j, r2.id, "nope", v, sizeof v, &e), ERR_NOT_FOUND);
    cr_assert_eq(journal_kv_get(j, r2.id, "commit", v, 4, &e), ERR_LIMIT, "value must not be truncated silently");

    /* Another account is another run. */
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:other", &r3, &e), ERR_OK);
    cr_assert_neq(r3.id, r1.id);
    cr_assert_not(journal_step_done(j, r3.id, "export"));

    cr_assert_eq(journal_run_finish(j, r2.id, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r3, &e), ERR_OK);
    cr_assert_not(r3.resumed);
    cr_assert_neq(r3.id, r1.id);
    journal_close(j);
}

Test(journal, blobs_are_listed_once_and_retried_in_order) {
    journal *j;
    err_t e;
    journal_run r;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r, &e), ERR_OK);
    const char *cids[] = {"bafkreia", "bafkreib", "bafkreic", "bafkreid"};
    for (int i = 0; i < 4; i++) cr_assert_eq(journal_blob_add(j, r.id, cids[i], 100 + i, &e), ERR_OK);
    cr_assert_eq(journal_blob_add(j, r.id, "bafkreia", 100, &e), ERR_OK, "duplicate add is a no-op");
    cr_assert_eq(journal_blob_set(j, r.id, "bafkreia", BLOB_FAILED, -1, "HTTP 500", &e), ERR_OK);
    cr_assert_eq(journal_blob_set(j, r.id, "bafkreib", BLOB_DONE, 101, NULL, &e), ERR_OK);
    cr_assert_eq(journal_blob_set(j, r.id, "bafkreizz", BLOB_DONE, 1, NULL, &e), ERR_NOT_FOUND);

    char got[8][128];
    size_t n;
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_FETCH, 3, got, 8, &n, &e), ERR_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(got[0], "bafkreic", "pending first");
    cr_assert_str_eq(got[1], "bafkreid");
    cr_assert_str_eq(got[2], "bafkreia", "then failed ones");
    journal_blob_counts c;
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK);
    cr_assert_eq(c.total, 4);
    cr_assert_eq(c.done, 1);
    cr_assert_eq(c.failed, 1);
    cr_assert_eq(c.pending, 2);
    cr_assert_eq(c.done_bytes, 101);
    /* after max attempts a failed blob is no longer offered */
    cr_assert_eq(journal_blob_set(j, r.id, "bafkreia", BLOB_FAILED, -1, "HTTP 500", &e), ERR_OK);
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_FETCH, 2, got, 8, &n, &e), ERR_OK);
    cr_assert_eq(n, 2);
    /* a re-run of the command gives it its attempts again; a done blob stays done */
    cr_assert_eq(journal_blob_reset_attempts(j, r.id, &e), ERR_OK);
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_FETCH, 2, got, 8, &n, &e), ERR_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(got[2], "bafkreia");
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK);
    cr_assert_eq(c.done, 1);
    journal_close(j);
}

Test(journal, kill_mid_transaction_leaves_no_partial_change) {
    journal *j;
    err_t e;
    journal_run r;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r, &e), ERR_OK);
    journal_close(j);
    pid_t pid = fork();
    if (pid == 0) {
        journal *cj;
        if (journal_open(path, &cj, NULL)) _exit(3);
        journal_tx_begin(cj, NULL);
        char cid[32];
        for (int i = 0; i < 500; i++) {
            snprintf(cid, sizeof cid, "bafkrei%04d", i);
            journal_blob_add(cj, r.id, cid, i, NULL);
        }
        raise(SIGKILL); /* dies before COMMIT */
        _exit(4);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "child should have been killed");
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK, "reopen after a kill: %s", e.msg);
    journal_blob_counts c;
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK);
    cr_assert_eq(c.total, 0, "the killed transaction left %lld blobs", (long long)c.total);
    journal_close(j);
}

Test(journal, refuses_a_newer_schema) {
    journal *j;
    err_t e;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    journal_close(j);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'", NULL, NULL, NULL);
    sqlite3_close(db);
    cr_assert_eq(journal_open(path, &j, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "newer pdsmove"), "%s", e.msg);
}

Test(journal, unfinished_run_is_found_by_a_fact) {
    journal *j;
    err_t e;
    journal_run r, found;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r, &e), ERR_OK);
    cr_assert_eq(journal_kv_set(j, r.id, "account_arg", "alice.old.test", &e), ERR_OK);
    cr_assert_eq(journal_run_find(j, "migrate", "account_arg", "alice.old.test", true, &found, &e), ERR_OK);
    cr_assert_eq(found.id, r.id);
    cr_assert_str_eq(found.subject, "did:plc:abc");
    cr_assert_eq(journal_run_find(j, "backup", "account_arg", "alice.old.test", true, &found, &e), ERR_NOT_FOUND);
    cr_assert_eq(journal_run_finish(j, r.id, &e), ERR_OK);
    cr_assert_eq(journal_run_find(j, "migrate", "account_arg", "alice.old.test", true, &found, &e), ERR_NOT_FOUND,
                 "finished runs are not resumed");
    cr_assert_eq(journal_run_find(j, "migrate", "account_arg", "alice.old.test", false, &found, &e), ERR_OK);
    cr_assert(found.finished);
    cr_assert_not(found.resumed);
    journal_close(j);
}

Test(journal, blobs_move_from_fetch_to_upload_and_are_checked_off) {
    journal *j;
    err_t e;
    journal_run r;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r, &e), ERR_OK);
    cr_assert_eq(journal_blob_add(j, r.id, "bafkreia", -1, &e), ERR_OK);
    cr_assert_eq(journal_blob_add(j, r.id, "bafkreib", -1, &e), ERR_OK);
    char got[4][128];
    size_t n;
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_UPLOAD, 4, got, 4, &n, &e), ERR_OK);
    cr_assert_eq(n, 0, "nothing is fetched yet");
    cr_assert_eq(journal_blob_set_fetched(j, r.id, "bafkreia", true, 1234, &e), ERR_OK);
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_UPLOAD, 4, got, 4, &n, &e), ERR_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(got[0], "bafkreia");
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_FETCH, 4, got, 4, &n, &e), ERR_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(got[0], "bafkreib");
    journal_blob_counts c;
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK);
    cr_assert_eq(c.fetched, 1);
    cr_assert_eq(c.fetched_bytes, 1234);
    /* a lost local copy goes back to fetching */
    cr_assert_eq(journal_blob_set_fetched(j, r.id, "bafkreia", false, -1, &e), ERR_OK);
    cr_assert_eq(journal_blob_next(j, r.id, BLOB_PHASE_FETCH, 4, got, 4, &n, &e), ERR_OK);
    cr_assert_eq(n, 2);
    /* checking off what the destination lists */
    int64_t unseen;
    char first[128];
    cr_assert_eq(journal_blob_clear_seen(j, r.id, &e), ERR_OK);
    cr_assert_eq(journal_blob_mark_seen(j, r.id, "bafkreib", &e), ERR_OK);
    cr_assert_eq(journal_blob_mark_seen(j, r.id, "bafkreizz", &e), ERR_NOT_FOUND);
    cr_assert_eq(journal_blob_count_unseen(j, r.id, &unseen, first, sizeof first, &e), ERR_OK);
    cr_assert_eq(unseen, 1);
    cr_assert_str_eq(first, "bafkreia");
    journal_close(j);
}

static bool first_blob_error(void *ctx, const char *cid, int64_t size_bytes, const char *error) {
    snprintf(ctx, 256, "%s", error);
    return false;
}

/* The whole file (after close, so the WAL is checkpointed into it) as a string search. */
static bool file_contains(const char *file, const char *needle) {
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "%s", file);
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    return memmem(data, n, needle, strlen(needle)) != NULL;
}

Test(journal, server_texts_are_stored_with_secrets_redacted) {
    journal *j;
    err_t e;
    journal_run r;
    const char *pw = "correct-horse-battery-staple", *token = "ABCDE-FGHIJ";
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    const char *secrets[] = {pw, NULL, token};
    cr_assert_eq(journal_set_secrets(j, secrets, 3, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:abc", &r, &e), ERR_OK);
    /* a server echoing the password whole, a piece of it cut short, and the token */
    cr_assert_eq(journal_step_set(j, r.id, "login", STEP_FAILED,
                                  "HTTP 401: bad password correct-horse-battery-staple; token ABCDE-FGHIJ", &e), ERR_OK);
    cr_assert_eq(journal_blob_add(j, r.id, "bafkreia", 10, &e), ERR_OK);
    cr_assert_eq(journal_blob_set(j, r.id, "bafkreia", BLOB_FAILED, -1, "HTTP 400: got 'horse-battery' in body", &e), ERR_OK);
    cr_assert_eq(journal_kv_set(j, r.id, "commit", "bafyreiabc", &e), ERR_OK);

    char detail[256], error[256];
    journal_step_status s;
    cr_assert_eq(journal_step_get(j, r.id, "login", &s, detail, sizeof detail, &e), ERR_OK);
    cr_assert_str_eq(detail, "HTTP 401: bad password [redacted]; token [redacted]");
    cr_assert_eq(journal_blob_each(j, r.id, BLOB_FAILED, first_blob_error, error, &e), ERR_OK);
    cr_assert_str_eq(error, "HTTP 400: got '[redacted]' in body");
    /* a secret learnt mid-run (a code typed at a prompt) joins them */
    cr_assert_eq(journal_add_secret(j, "QWERT-YUIOP", &e), ERR_OK);
    cr_assert_eq(journal_step_set(j, r.id, "identity", STEP_FAILED, "InvalidToken: QWERT-YUIOP expired", &e), ERR_OK);
    cr_assert_eq(journal_step_get(j, r.id, "identity", &s, detail, sizeof detail, &e), ERR_OK);
    cr_assert_str_eq(detail, "InvalidToken: [redacted] expired");
    /* texts without a secret are stored as given */
    cr_assert_eq(journal_step_set(j, r.id, "export", STEP_DONE, "211 records", &e), ERR_OK);
    cr_assert_eq(journal_step_get(j, r.id, "export", &s, detail, sizeof detail, &e), ERR_OK);
    cr_assert_str_eq(detail, "211 records");
    journal_close(j);

    cr_assert_not(file_contains(path, "horse-battery"), "a piece of the password reached the journal file");
    cr_assert_not(file_contains(path, token), "the token reached the journal file");
    cr_assert_not(file_contains(path, "QWERT-YUIOP"), "the code added mid-run reached the journal file");
    cr_assert(file_contains(path, "211 records"), "the search itself works");
}

Test(journal, a_secret_that_cannot_be_kept_out_is_an_error) {
    journal *j;
    err_t e;
    char big[REDACT_SECRET_SIZE + 8];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const char *secrets[] = {big};
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK);
    cr_assert_eq(journal_set_secrets(j, secrets, 1, &e), ERR_LIMIT);
    cr_assert(strstr(e.msg, path), "%s", e.msg);
    journal_close(j);
}

/* Journals written by older releases (tests/fixtures/journal/README.md), opened by this code:
 * upgraded to the current version, the interrupted run resumes, and the blob queries that need
 * the newer columns work. */
static void open_fixture(const char *name, journal **j) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp '%s/journal/%s' '%s'", PDSMOVE_FIXTURES, name, path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    err_t e;
    cr_assert_eq(journal_open(path, j, &e), ERR_OK, "%s: %s", name, e.msg);
}

static int schema_version_of(const char *p) {
    sqlite3 *db;
    sqlite3_stmt *st;
    int v = -1;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema_version'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = atoi((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void check_upgraded_run(journal *j, bool had_fetched) {
    err_t e;
    journal_run r;
    char v[256];
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:interruptedinterrupted", &r, &e), ERR_OK, "%s", e.msg);
    cr_assert(r.resumed, "the interrupted run is picked up");
    cr_assert(journal_step_done(j, r.id, "import"));
    cr_assert_eq(journal_kv_get(j, r.id, "old_commit", v, sizeof v, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(v, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm");
    journal_blob_counts c;
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(c.total, 3);
    cr_assert_eq(c.done, 1);
    cr_assert_eq(c.failed, 1);
    cr_assert_eq(c.fetched, had_fetched ? 3 : 0, "fetched %lld", (long long)c.fetched);
    char cids[4][128];
    size_t n;
    cr_assert_eq(journal_blob_next(j, r.id, had_fetched ? BLOB_PHASE_UPLOAD : BLOB_PHASE_FETCH, 5, cids, 4, &n, &e), ERR_OK,
                 "%s", e.msg);
    cr_assert_eq(n, 2, "the two blobs not copied yet are next (%zu)", n);
    cr_assert_eq(journal_blob_set_fetched(j, r.id, cids[0], true, 10, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_blob_clear_seen(j, r.id, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_blob_mark_seen(j, r.id, cids[0], &e), ERR_OK, "%s", e.msg);
    int64_t unseen;
    cr_assert_eq(journal_blob_count_unseen(j, r.id, &unseen, NULL, 0, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(unseen, 2);
    cr_assert_eq(journal_run_latest(j, "migrate", "did:plc:finishedfinishedfinish", &r, &e), ERR_OK, "%s", e.msg);
    cr_assert(r.finished);
}

Test(journal, upgrade_first_release_journal_without_blob_columns) {
    journal *j;
    open_fixture("v1-first-release.sqlite", &j);
    check_upgraded_run(j, false);
    journal_close(j);
    cr_assert_eq(schema_version_of(path), JOURNAL_SCHEMA_VERSION);
    cr_assert_eq(journal_open(path, &j, NULL), ERR_OK, "an upgraded journal opens again");
    journal_close(j);
}

Test(journal, upgrade_version_1_journal_with_blob_columns) {
    journal *j;
    open_fixture("v1-fetched-columns.sqlite", &j);
    check_upgraded_run(j, true);
    journal_close(j);
    cr_assert_eq(schema_version_of(path), JOURNAL_SCHEMA_VERSION);
}

Test(journal, refuses_another_sqlite_database_untouched) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "CREATE TABLE photos (id INTEGER)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    journal *j;
    err_t e;
    cr_assert_eq(journal_open(path, &j, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "not a pdsmove journal"), "%s", e.msg);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 1, "nothing was added to it");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The crash-point hook: a child with PDSMOVE_CRASH_AT=migrate:N dies with JOURNAL_CRASH_STATUS
 * right after its N-th commit of a migrate run (commits of other kinds not counted), and the
 * journal then holds exactly the first N changes. */
static int crash_child(const char *at, const char *count_file) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PDSMOVE_CRASH_AT", at, 1);
        if (count_file) setenv("PDSMOVE_CRASH_COUNT", count_file, 1);
        journal *cj;
        journal_run b, m;
        if (journal_open(path, &cj, NULL)) _exit(3);
        if (journal_run_begin(cj, "backup", "did:plc:other", &b, NULL)) _exit(3);      /* not counted */
        if (journal_kv_set(cj, b.id, "archive_top", "x", NULL)) _exit(3);              /* not counted */
        if (journal_run_begin(cj, "migrate", "did:plc:abc", &m, NULL)) _exit(3);       /* 1 */
        char key[16];
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "k%d", i);
            if (journal_kv_set(cj, m.id, key, "v", NULL)) _exit(3);                    /* 2..5 */
            if (journal_kv_set(cj, b.id, key, "v", NULL)) _exit(3);                    /* not counted */
        }
        if (journal_tx_begin(cj, NULL)) _exit(3);
        if (journal_blob_add(cj, m.id, "bafkreia", 1, NULL) || journal_blob_add(cj, m.id, "bafkreib", 1, NULL)) _exit(3);
        if (journal_tx_commit(cj, NULL)) _exit(3);                                     /* 6 */
        if (journal_step_set(cj, m.id, "export", STEP_DONE, NULL, NULL)) _exit(3);     /* 7 */
        journal_close(cj);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int count_kv(void) {
    journal *j;
    journal_run r;
    err_t e;
    char v[8], key[16];
    int n = 0;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK, "%s", e.msg);
    if (journal_run_latest(j, "migrate", "did:plc:abc", &r, NULL) == ERR_OK)
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "k%d", i);
            n += journal_kv_get(j, r.id, key, v, sizeof v, NULL) == ERR_OK;
        }
    journal_close(j);
    return n;
}

Test(journal, crash_hook_counts_commits_of_one_kind_and_exits_at_the_nth) {
    char count_file[160];
    snprintf(count_file, sizeof count_file, "%s/count", dir);
    cr_assert_eq(crash_child("migrate:0", count_file), 0, "n = 0 only counts");
    char *lines = NULL;
    size_t cap = 0;
    FILE *f = fopen(count_file, "r");
    cr_assert_not_null(f);
    int n = 0;
    char last[64] = "";
    while (getline(&lines, &cap, f) > 0) {
        n++;
        snprintf(last, sizeof last, "%s", lines);
    }
    free(lines);
    fclose(f);
    cr_assert_eq(n, 7, "7 migrate commits counted, got %d", n);
    cr_assert_str_eq(last, "7 step export done\n");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
    cr_assert_eq(system(cmd), 0);

    cr_assert_eq(crash_child("migrate:3", NULL), JOURNAL_CRASH_STATUS);
    cr_assert_eq(count_kv(), 2, "run-begin, k0, k1 committed; nothing after");
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(crash_child("backup:0", NULL), 0);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(crash_child("migrate:99", NULL), 0, "fewer commits than asked: runs to the end");
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(crash_child("migrate:3:fail", NULL), 3, "the 3rd commit fails, the process goes on");
    cr_assert_eq(count_kv(), 1, "the failed write (k1) was not made");
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(crash_child("migrate:1:fail=kv k2", NULL), 3, "the first write of k2 of a migrate run fails (not the backup run's)");
    cr_assert_eq(count_kv(), 2, "k0, k1 made; k2 failed; k3 never reached");
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(crash_child("migrate:6:fail", NULL), 3, "the batch's commit fails");
    journal *j;
    journal_run r;
    journal_blob_counts c;
    err_t e;
    cr_assert_eq(journal_open(path, &j, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_run_latest(j, "migrate", "did:plc:abc", &r, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(journal_blob_counts_get(j, r.id, &c, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(c.total, 0, "nothing of the failed batch was kept");
    journal_tx_begin(j, &e);
    cr_assert_eq(journal_tx_commit(j, &e), ERR_OK, "the journal works on after a failed commit: %s", e.msg);
    journal_close(j);
}
