/* test_cli_status.c — `pdsmove status` on journals written here with the journal API: a run
 * stopped in the blob step, a finished one with a signed PLC operation, one stopped at the
 * identity step; filtering by account, --json, no journal, a journal held by a running
 * migrate (status must neither wait nor change the file), and files that are not journals. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_testutil.h"
#include "pdsmove/journal.h"
#include "pdsmove/keys.h"
#include "pdsmove/migrate.h"
#include "pdsmove/plc.h"

#define ALICE "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
#define BOB "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
#define CAROL "did:plc:carolcccccccccccccccccccc"
#define DAVE "did:plc:davedddddddddddddddddddd"
#define K256_HEX "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c"
#define PREV_CID "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"

static char dir[64], jpath[128];

static void setup(void) {
    scratch_make(dir, sizeof dir, "cli-status");
    snprintf(jpath, sizeof jpath, "%s/journal.sqlite", dir);
}

static void teardown(void) {
    cli_kept_free();
    scratch_remove(dir);
}

TestSuite(cli_status, .init = setup, .fini = teardown, .timeout = 120);

static cli_result status_run(const char *const *args) {
    char state_env[160];
    snprintf(state_env, sizeof state_env, "PDSMOVE_STATE_DIR=%s/state", dir);
    const char *const env[] = {state_env, NULL};
    const cli_run_opts o = {.env = env};
    return cli_run_kept(&o, args);
}
#define STATUS(...) status_run((const char *const[]){"status", __VA_ARGS__, NULL})

#define OK(call)                                                   \
    do {                                                           \
        err_t e_ = {0};                                            \
        cr_assert_eq((call), ERR_OK, "%s: %s", #call, e_.msg);     \
    } while (0)
/* OK() needs the call to use e_: */
#define E (&e_)

static void kv(journal *j, int64_t run, const char *k, const char *v) { OK(journal_kv_set(j, run, k, v, E)); }

static void facts(journal *j, int64_t run, const char *arg, const char *did, const char *handle) {
    kv(j, run, "account_arg", arg);
    kv(j, run, "did", did);
    kv(j, run, "old_pds", "https://old.example.com");
    kv(j, run, "new_pds", "https://new.example.net");
    kv(j, run, "wanted_handle", handle);
    kv(j, run, "create_handle", handle);
}

/* A signed PLC operation (JSON text, owned) and its CID. */
static char *signed_op(char cid[CID_STR_MAX]) {
    key_priv k;
    err_t e = {0};
    cr_assert_eq(key_priv_from_hex(&k, KEY_K256, K256_HEX, &e), ERR_OK, "%s", e.msg);
    char did_key[KEY_DID_MAX];
    cr_assert_gt(key_pub_to_did_key(&k.pub, did_key, sizeof did_key), 0);
    plc_op op;
    plc_op_init(&op, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_add_rotation_key(&op, did_key, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_set_vmethod(&op, "atproto", did_key, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_add_also_known_as(&op, "at://bob.new.example.net", &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_set_service(&op, "atproto_pds", "AtprotoPersonalDataServer", "https://new.example.net", &e), ERR_OK);
    cr_assert_eq(plc_op_set_prev(&op, PREV_CID, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_sign(&op, &k, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_cid_str(&op, cid, &e), ERR_OK, "%s", e.msg);
    json_t *j = plc_op_to_json(&op, &e);
    cr_assert_not_null(j, "%s", e.msg);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    plc_op_free(&op);
    key_priv_wipe(&k);
    return text;
}

/* bob (oldest): finished, with a signed op; alice: stopped while uploading blobs; carol:
 * stopped at the identity step with a signed op not yet confirmed; dave (newest): stopped
 * while downloading blobs. Fills in bob's op CID. */
static const char *const all_steps[] = {"export", "create-account", "import", "blobs-fetch", "blobs", "preferences",
                                        "identity", "verify", "activate", "handle", "deactivate-old", "archive"};
#define N_STEPS (sizeof all_steps / sizeof all_steps[0])

static void build_journal(char bob_cid[CID_STR_MAX]) {
    journal *j;
    journal_run r;
    OK(journal_open(jpath, &j, E));

    OK(journal_run_begin(j, "migrate", BOB, &r, E));
    facts(j, r.id, "bob.old.example.com", BOB, "bob.new.example.net");
    for (size_t i = 0; i < N_STEPS; i++) OK(journal_step_set(j, r.id, all_steps[i], STEP_DONE, "bob step finished", E));
    kv(j, r.id, "blobs_listed", "1");
    char *op = signed_op(bob_cid);
    kv(j, r.id, "plc_signed_op", op);
    free(op);
    OK(journal_run_finish(j, r.id, E));

    OK(journal_run_begin(j, "migrate", ALICE, &r, E));
    facts(j, r.id, "alice.old.example.com", ALICE, "alice.new.example.net");
    OK(journal_step_set(j, r.id, "create-account", STEP_DONE, "account created on https://new.example.net", E));
    OK(journal_step_set(j, r.id, "export", STEP_DONE, "12 records, 40 blocks, 0.1 MiB, rev 3l5rtmlqwxs2a, signature valid", E));
    OK(journal_step_set(j, r.id, "import", STEP_DONE, "repository imported", E));
    OK(journal_step_set(j, r.id, "blobs-fetch", STEP_DONE, "5 blobs, 0.0 MiB downloaded, each hash-checked", E));
    OK(journal_step_set(j, r.id, "blobs", STEP_RUNNING, NULL, E));
    kv(j, r.id, "blobs_listed", "1");
    const char *cids[] = {"bafkreiaaaa1", "bafkreiaaaa2", "bafkreiaaaa3", "bafkreiaaaa4", "bafkreiaaaa5"};
    for (size_t i = 0; i < 5; i++) {
        OK(journal_blob_add(j, r.id, cids[i], -1, E));
        OK(journal_blob_set_fetched(j, r.id, cids[i], true, (int64_t)(i + 1) * 1024, E));
    }
    for (size_t i = 0; i < 3; i++) OK(journal_blob_set(j, r.id, cids[i], BLOB_DONE, (int64_t)(i + 1) * 1024, NULL, E));
    OK(journal_blob_set(j, r.id, cids[3], BLOB_FAILED, 4096, "HTTP 502 from the new PDS", E));

    OK(journal_run_begin(j, "migrate", CAROL, &r, E));
    facts(j, r.id, "carol.example.org", CAROL, "carol.example.org");
    for (size_t i = 0; i < 6; i++) OK(journal_step_set(j, r.id, all_steps[i], STEP_DONE, "carol step finished", E));
    kv(j, r.id, "blobs_listed", "1");
    char carol_cid[CID_STR_MAX];
    op = signed_op(carol_cid);
    kv(j, r.id, "plc_signed_op", op);
    free(op);
    OK(journal_step_set(j, r.id, "identity", STEP_FAILED, "submitting the PLC operation: network error", E));

    OK(journal_run_begin(j, "migrate", DAVE, &r, E));
    facts(j, r.id, "dave.old.example.com", DAVE, "dave.new.example.net");
    for (size_t i = 0; i < 3; i++) OK(journal_step_set(j, r.id, all_steps[i], STEP_DONE, "dave step finished", E));
    OK(journal_step_set(j, r.id, "blobs-fetch", STEP_RUNNING, NULL, E));
    kv(j, r.id, "blobs_listed", "1");
    OK(journal_blob_add(j, r.id, "bafkreidddd1", 2048, E));
    OK(journal_blob_add(j, r.id, "bafkreidddd2", -1, E));
    OK(journal_blob_set_fetched(j, r.id, "bafkreidddd1", true, 2048, E));
    journal_close(j);
}

static const char *after(const char *hay, const char *needle) {
    const char *p = hay ? strstr(hay, needle) : NULL;
    cr_assert_not_null(p, "want \"%s\" in:\n%s", needle, hay ? hay : "(nothing)");
    return p + strlen(needle);
}

/* The text of the run whose header names did, up to the next run. */
static char *section(const char *out, const char *did) {
    const char *p = strstr(out, did);
    cr_assert_not_null(p, "no run of %s in:\n%s", did, out);
    while (p > out && p[-1] != '\n') p--;
    const char *end = strstr(p + 1, "\nmigrate of ");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char *s = strndup(p, n);
    cr_assert_not_null(s);
    return s;
}

Test(cli_status, shows_each_run_its_steps_blobs_plc_op_and_next_step) {
    char bob_cid[CID_STR_MAX];
    build_journal(bob_cid);
    cli_result r = STATUS("--journal", jpath);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(r.err[0], 0, "%s", r.err);
    after(r.out, jpath);
    /* newest first */
    const char *d = strstr(r.out, DAVE), *c = strstr(r.out, CAROL), *a = strstr(r.out, ALICE), *b = strstr(r.out, BOB);
    cr_assert(d && c && a && b && d < c && c < a && a < b, "runs newest first:\n%s", r.out);

    char *s = section(r.out, ALICE);
    after(s, "migrate of alice.old.example.com (" ALICE "), run 2: not finished");
    after(s, "started    20");
    after(s, "from       https://old.example.com");
    after(s, "to         https://new.example.net as alice.new.example.net");
    after(s, "done         create-account  account created on https://new.example.net");
    after(s, "done         export          12 records, 40 blocks");
    after(s, "done         blobs-fetch     5 blobs");
    after(s, "interrupted  blobs\n");
    after(s, "pending      preferences\n");
    after(s, "not needed   handle\n");
    after(s, "pending      deactivate-old\n");
    after(s, "blobs      3 of 5 copied (6.00 KiB), 5 downloaded (15.0 KiB), 1 failed, 1 waiting (5.00 KiB)\n");
    after(s, "failed bafkreiaaaa4 after 1 attempt(s): HTTP 502 from the new PDS");
    after(s, "PLC op     none signed yet");
    after(s, "next run will: copy the 2 blob(s) not yet on the new PDS (1 of them failed before), then check none is "
             "missing (step blobs)");
    cr_assert_null(strstr(s, "running"), "nothing runs now:\n%s", s);
    /* the steps in the order they run */
    const char *prev = s;
    for (size_t i = 0; i < N_STEPS; i++) {
        char word[64];
        snprintf(word, sizeof word, " %s", all_steps[i]);
        const char *at = strstr(prev, word);
        cr_assert_not_null(at, "step %s missing or out of order:\n%s", all_steps[i], s);
        prev = at + strlen(word);
    }
    free(s);

    s = section(r.out, BOB);
    after(s, "migrate of bob.old.example.com (" BOB "), run 1: finished 20");
    after(s, "done         archive         bob step finished");
    after(s, "blobs      none (the account has no blobs)");
    after(s, "PLC op     signed and confirmed by the directory: cid ");
    after(s, bob_cid);
    after(s, "points the DID at https://new.example.net, 1 rotation key(s), follows " PREV_CID);
    after(s, "next run will: nothing; this migration is finished");
    cr_assert_null(strstr(s, "pending"), "%s", s);
    free(s);

    s = section(r.out, CAROL);
    after(s, "failed       identity        submitting the PLC operation: network error");
    after(s, "PLC op     signed, not yet confirmed by the directory");
    after(s, "next run will: submit the PLC operation the earlier run signed");
    after(s, "this step failed last time and is retried (step identity)");
    free(s);

    s = section(r.out, DAVE);
    after(s, "interrupted  blobs-fetch\n");
    after(s, "blobs      0 of 2 copied (0 B), 1 downloaded (2.00 KiB), 2 waiting (at least 2.00 KiB)");
    after(s, "next run will: download the 1 blob(s) not yet downloaded from the old PDS (step blobs-fetch)");
    free(s);
}

Test(cli_status, account_selects_the_latest_run_of_that_handle_or_did) {
    char bob_cid[CID_STR_MAX];
    build_journal(bob_cid);
    const char *keys[] = {"alice.old.example.com", ALICE, "alice.new.example.net", "@alice.old.example.com",
                          "ALICE.old.example.com"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cli_result r = STATUS(keys[i], "--journal", jpath);
        cr_assert_eq(r.status, 0, "%s: %s", keys[i], r.err);
        cr_assert(strstr(r.out, ALICE), "%s:\n%s", keys[i], r.out);
        cr_assert_null(strstr(r.out, BOB), "%s: only alice's run:\n%s", keys[i], r.out);
        cr_assert_null(strstr(r.out, CAROL), "%s: only alice's run:\n%s", keys[i], r.out);
        cr_assert_null(strstr(r.out, DAVE), "%s: only alice's run:\n%s", keys[i], r.out);
    }
    cli_result r = STATUS("nobody.example.com", "--journal", jpath);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(r.out, "no migration of nobody.example.com in this journal");
}

Test(cli_status, json_describes_the_runs) {
    char bob_cid[CID_STR_MAX];
    build_journal(bob_cid);
    cli_result r = STATUS("--journal", jpath, "--json");
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *doc = json_loads(r.out, 0, &je);
    cr_assert_not_null(doc, "not JSON (%s):\n%s", je.text, r.out);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "journal")), jpath);
    cr_assert(json_is_true(json_object_get(doc, "exists")));
    cr_assert(json_is_false(json_object_get(doc, "in_use")));
    json_t *runs = json_object_get(doc, "runs");
    cr_assert_eq(json_array_size(runs), 4, "%s", r.out);

    json_t *alice = json_array_get(runs, 2);
    cr_assert_str_eq(json_string_value(json_object_get(alice, "did")), ALICE);
    cr_assert_str_eq(json_string_value(json_object_get(alice, "account")), "alice.old.example.com");
    cr_assert_str_eq(json_string_value(json_object_get(alice, "old_pds")), "https://old.example.com");
    cr_assert_str_eq(json_string_value(json_object_get(alice, "new_pds")), "https://new.example.net");
    cr_assert(json_is_false(json_object_get(alice, "finished")));
    json_t *blobs = json_object_get(alice, "blobs");
    cr_assert_eq(json_integer_value(json_object_get(blobs, "total")), 5);
    cr_assert_eq(json_integer_value(json_object_get(blobs, "done")), 3);
    cr_assert_eq(json_integer_value(json_object_get(blobs, "failed")), 1);
    cr_assert_eq(json_integer_value(json_object_get(blobs, "pending")), 1);
    cr_assert_eq(json_integer_value(json_object_get(blobs, "done_bytes")), 6144);
    cr_assert_eq(json_integer_value(json_object_get(blobs, "fetched")), 5);
    json_t *steps = json_object_get(alice, "steps");
    cr_assert_eq(json_array_size(steps), N_STEPS, "every migrate step, done or not");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 0), "name")), "export");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 4), "name")), "blobs");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 4), "status")), "interrupted");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 5), "status")), "pending");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(alice, "next"), "step")), "blobs");
    cr_assert(json_is_null(json_object_get(alice, "plc_operation")));

    json_t *bob = json_array_get(runs, 3);
    cr_assert(json_is_true(json_object_get(bob, "finished")));
    cr_assert(json_is_null(json_object_get(bob, "next")));
    json_t *op = json_object_get(bob, "plc_operation");
    cr_assert_str_eq(json_string_value(json_object_get(op, "cid")), bob_cid);
    cr_assert_str_eq(json_string_value(json_object_get(op, "pds")), "https://new.example.net");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(op, "operation"), "type")), "plc_operation");
    json_decref(doc);
}

Test(cli_status, no_journal_or_no_run_is_said_plainly_and_nothing_is_created) {
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.sqlite", dir);
    cli_result r = STATUS("--journal", missing);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(r.out, "no journal at ");
    after(r.out, missing);
    cr_assert_neq(access(missing, F_OK), 0, "status created the journal");
    r = STATUS("--journal", missing, "--json");
    cr_assert_eq(r.status, 0);
    json_t *doc = json_loads(r.out, 0, NULL);
    cr_assert_not_null(doc, "%s", r.out);
    cr_assert(json_is_false(json_object_get(doc, "exists")));
    cr_assert_eq(json_array_size(json_object_get(doc, "runs")), 0);
    json_decref(doc);

    /* the default journal, under the state directory */
    r = STATUS(NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(after(r.out, dir), "/state/journal.sqlite");

    journal *j;
    OK(journal_open(jpath, &j, E));
    journal_close(j);
    r = STATUS("--journal", jpath);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(r.out, "no migration in this journal yet");
}

Test(cli_status, reads_a_journal_a_running_migrate_holds_without_waiting_or_writing) {
    char bob_cid[CID_STR_MAX];
    build_journal(bob_cid);
    journal *j;
    OK(journal_open(jpath, &j, E)); /* as a running migrate would: holds the runner lock */
    journal_run run;
    OK(journal_run_begin(j, "migrate", ALICE, &run, E));
    OK(journal_blob_set(j, run.id, "bafkreiaaaa5", BLOB_DONE, 5120, NULL, E));

    struct stat before;
    cr_assert_eq(stat(jpath, &before), 0);
    cli_result r = STATUS(ALICE, "--journal", jpath);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(r.out, "in use by a running pdsmove");
    after(r.out, "running      blobs\n");
    after(r.out, "4 of 5 copied");

    /* the runner goes on undisturbed */
    OK(journal_step_set(j, run.id, "blobs", STEP_DONE, "5 blobs", E));
    journal_close(j);
    struct stat now;
    cr_assert_eq(stat(jpath, &now), 0);
    cr_assert_eq(now.st_mode & 0777, 0600, "status changed the mode");

    /* and a status run leaves the file as it was, byte for byte */
    FILE *f = fopen(jpath, "rb");
    cr_assert_not_null(f);
    static char a[1 << 20], b[1 << 20];
    size_t na = fread(a, 1, sizeof a, f);
    fclose(f);
    r = STATUS("--journal", jpath);
    cr_assert_eq(r.status, 0, "%s", r.err);
    after(r.out, "done         blobs           5 blobs");
    f = fopen(jpath, "rb");
    size_t nb = fread(b, 1, sizeof b, f);
    fclose(f);
    cr_assert(na == nb && !memcmp(a, b, na), "status modified the journal");
}

Test(cli_status, refuses_files_that_are_not_journals_it_can_read) {
    char garbage[160];
    snprintf(garbage, sizeof garbage, "%s/garbage.sqlite", dir);
    FILE *f = fopen(garbage, "w");
    cr_assert_not_null(f);
    fputs("this is not a database, it is a text file long enough to have a header......................\n", f);
    fclose(f);
    cli_result r = STATUS("--journal", garbage);
    cr_assert_eq(r.status, 1, "%s", r.out);
    after(r.err, "pdsmove: error: ");
    after(r.err, garbage);

    /* a journal from a newer pdsmove */
    journal *j;
    OK(journal_open(jpath, &j, E));
    journal_close(j);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(jpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    r = STATUS("--journal", jpath);
    cr_assert_eq(r.status, 1, "%s", r.out);
    after(r.err, "newer pdsmove");
}

Test(cli_status, usage_errors_and_help) {
    cli_result r = STATUS("--help");
    cr_assert_eq(r.status, 0);
    after(r.out, "usage: pdsmove status [ACCOUNT] [--journal PATH] [--json]");
    after(r.out, "next");
    r = STATUS("a.example.com", "b.example.com");
    cr_assert_eq(r.status, 2);
    after(r.err, "at most one ACCOUNT");
    r = STATUS("--bogus");
    cr_assert_eq(r.status, 2);
    after(r.err, "unknown option '--bogus'");
    r = STATUS("--journal");
    cr_assert_eq(r.status, 2);
    after(r.err, "needs a value");
}

Test(cli_status, an_unneeded_handle_step_is_not_what_comes_next) {
    journal *j;
    journal_run r;
    OK(journal_open(jpath, &j, E));
    /* the handle stays the same: the pipeline has no handle step to run */
    OK(journal_run_begin(j, "migrate", ALICE, &r, E));
    facts(j, r.id, "alice.example.org", ALICE, "alice.example.org");
    for (size_t i = 0; i < 9; i++) OK(journal_step_set(j, r.id, all_steps[i], STEP_DONE, "finished", E));
    /* a custom handle to set after activation, and a finished run that never recorded it */
    OK(journal_run_begin(j, "migrate", BOB, &r, E));
    facts(j, r.id, "bob.example.org", BOB, "bob.example.org");
    kv(j, r.id, "create_handle", "bob.new.example.net");
    for (size_t i = 0; i < N_STEPS; i++)
        if (strcmp(all_steps[i], "handle")) OK(journal_step_set(j, r.id, all_steps[i], STEP_DONE, "finished", E));
    OK(journal_run_finish(j, r.id, E));
    journal_close(j);

    cli_result out = STATUS("--journal", jpath);
    cr_assert_eq(out.status, 0, "%s", out.err);
    char *s = section(out.out, ALICE);
    after(s, "not needed   handle\n");
    after(s, "next run will: deactivate the old account (step deactivate-old)");
    free(s);
    s = section(out.out, BOB);
    after(s, "to         https://new.example.net as bob.new.example.net, then bob.example.org");
    after(s, "skipped      handle\n");
    free(s);
}

/* ---- migrate's step list (migrate.h), the one status shows ---- */

Test(cli_status, every_migrate_step_has_a_unique_name_and_a_description) {
    for (size_t i = 0; i < MIGRATE_STEPS_COUNT; i++) {
        const migrate_step_info *st = &migrate_steps[i];
        cr_assert(st->name && *st->name && strlen(st->name) < JOURNAL_NAME_MAX, "step %zu has no usable name", i);
        cr_assert(st->does && *st->does, "step %s has no description", st->name);
        for (size_t k = 0; k < i; k++) cr_assert_str_neq(st->name, migrate_steps[k].name, "step listed twice");
    }
}

#define MAX_FOUND 64

/* Adds the string literal at q (if it is one) to names. */
static void add_literal(const char *q, char names[][JOURNAL_NAME_MAX], size_t *n) {
    while (*q == ' ' || *q == '\n' || *q == '\t') q++;
    if (*q != '"') return; /* a variable: named where it is set (`const char *step = "..."`) */
    const char *end = strchr(q + 1, '"');
    cr_assert_not_null(end);
    cr_assert_lt((size_t)(end - q - 1), (size_t)JOURNAL_NAME_MAX);
    char name[JOURNAL_NAME_MAX];
    snprintf(name, sizeof name, "%.*s", (int)(end - q - 1), q + 1);
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(names[i], name)) return;
    cr_assert_lt(*n, (size_t)MAX_FOUND);
    snprintf(names[(*n)++], JOURNAL_NAME_MAX, "%s", name);
}

/* The step names a pipeline source file journals: `const char *step = "..."`, and a literal
 * step argument of mig_skip_done/mig_step_done/mig_step_failed (the 2nd) or
 * journal_step_set/_get/_done (the 3rd). */
static void journaled_steps(const char *file, char names[][JOURNAL_NAME_MAX], size_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/src/pipeline/%s", PDSMOVE_ROOT, file);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    cr_assert(feof(f), "%s is larger than the test reads", path);
    fclose(f);
    text[len] = 0;
    static const struct {
        const char *pattern;
        int arg; /* which argument (0-based) is the step */
    } uses[] = {{"const char *step = ", 0}, {"mig_skip_done(", 1},    {"mig_step_done(", 1},    {"mig_step_failed(", 1},
                {"journal_step_set(", 2},   {"journal_step_get(", 2}, {"journal_step_done(", 2}};
    for (size_t u = 0; u < sizeof uses / sizeof uses[0]; u++) {
        for (const char *p = strstr(text, uses[u].pattern); p; p = strstr(p, uses[u].pattern)) {
            p += strlen(uses[u].pattern);
            const char *q = p;
            int depth = 0, arg = 0;
            for (; *q && *q != ';' && arg < uses[u].arg; q++) {
                if (*q == '(') depth++;
                else if (*q == ')' && depth-- == 0) break;
                else if (*q == ',' && depth == 0) arg++;
            }
            if (arg == uses[u].arg) add_literal(q, names, n);
        }
    }
}

/* A step the pipeline journals but the list lacks would never show in `pdsmove status` (nor
 * its next action); a listed step the pipeline no longer journals would always show pending. */
Test(cli_status, the_step_list_matches_the_steps_the_pipeline_journals) {
    static const char *const files[] = {"migrate.c", "identity_update.c", "migrate_verify.c"};
    char names[MAX_FOUND][JOURNAL_NAME_MAX];
    size_t n = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) journaled_steps(files[i], names, &n);
    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (size_t k = 0; k < MIGRATE_STEPS_COUNT && !listed; k++) listed = !strcmp(names[i], migrate_steps[k].name);
        cr_assert(listed, "the pipeline journals step \"%s\", missing from migrate_steps (src/pipeline/migrate_steps.c)",
                  names[i]);
    }
    for (size_t k = 0; k < MIGRATE_STEPS_COUNT; k++) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) found = !strcmp(names[i], migrate_steps[k].name);
        cr_assert(found, "migrate_steps lists \"%s\", which the pipeline's sources never journal", migrate_steps[k].name);
    }
}

/* The journal keeps what servers said (step details, handles, URLs): `status` prints them
 * escaped, so a server's ESC sequences or a forged "\n<0>" journal priority stay text. */
Test(cli_status, server_text_kept_in_the_journal_is_printed_escaped) {
    journal *j;
    journal_run r;
    OK(journal_open(jpath, &j, E));
    OK(journal_run_begin(j, "migrate", ALICE, &r, E));
    facts(j, r.id, "alice.old.example.com", ALICE, "alice\x1b[2J.new.example.net");
    kv(j, r.id, "old_pds", "https://old.example.com\x1b]0;owned\x07");
    OK(journal_step_set(j, r.id, "create-account", STEP_FAILED, "HTTP 400: \x1b[31mPWNED\x1b[0m\n<0>forged", E));
    journal_close(j);
    cli_result res = STATUS("--journal", jpath);
    cr_assert_eq(res.status, 0, "%s", res.err);
    cr_assert_null(strchr(res.out, 0x1b), "an ESC reached the terminal:\n%s", res.out);
    cr_assert_null(strchr(res.out, 0x07), "a BEL reached the terminal:\n%s", res.out);
    cr_assert_null(strstr(res.out, "\n<0>"), "a line starts with a forged priority:\n%s", res.out);
    cr_assert(strstr(res.out, "HTTP 400: \\x1b[31mPWNED\\x1b[0m\\x0a<0>forged"), "%s", res.out);
    cr_assert(strstr(res.out, "alice\\x1b[2J.new.example.net"), "%s", res.out);
}
