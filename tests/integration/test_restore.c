/* test_restore.c — the disaster case against real servers: an account is backed up (full,
 * then incremental after a day of changes), its PDS is stopped for good, and `pdsmove restore`
 * brings it back on a fresh PDS with the user's rotation key — stopped at several journal commits
 * (the crash hook) and re-run on the way. Afterwards: the records and blobs equal the last snapshot, the DID document
 * points at the new PDS, the PLC log gained exactly two operations, and the account accepts new
 * posts. On the way, `backup --all-repos` saves the three accounts of that PDS in one run.
 * This test starts its own testbed (it kills one of its PDSes) and stops it at the end. */
#include <signal.h>

#include "itest.h"

static char tbdir[512];
static void teardown(void) {
    if (tbdir[0]) {
        itest_result r = itest_run(itest_script("stop"), "--dir", tbdir, "--quiet", NULL);
        itest_result_free(&r);
    }
    itest_cleanup();
}

/* Runs argv with PDSMOVE_CRASH_AT=<kind>:<n>: true when it was stopped there, false when it
 * finished first (fewer commits left); any other end fails the test. */
static bool run_crashed(const char *const *argv, const char *kind, int n) {
    char at[64];
    snprintf(at, sizeof at, "%s:%d", kind, n);
    setenv("PDSMOVE_CRASH_AT", at, 1);
    itest_result r = itest_runv(argv);
    unsetenv("PDSMOVE_CRASH_AT");
    cr_assert(r.status == 137 || r.status == 0, "a run to be stopped at %s ended with %d:\n%s", at, r.status, r.err);
    itest_result_free(&r);
    return r.status == 137;
}

Test(restore, old_pds_gone_account_comes_back_with_the_rotation_key, .fini = teardown, .timeout = 600) {
    snprintf(tbdir, sizeof tbdir, "%s", itest_path("testbed"));
    itest_result r = itest_must(itest_script("start"), "--dir", tbdir, NULL);
    itest_result_free(&r);
    char tbjson[600];
    snprintf(tbjson, sizeof tbjson, "%s/testbed.json", tbdir);
    json_t *tb = itest_load_json(tbjson);
    json_t *old = itest_pds_of(tb, "old"), *neu = itest_pds_of(tb, "new");
    const char *plc = json_string_value(json_object_get(json_object_get(tb, "plc"), "url"));

    char seed_path[512], mut_path[512], bk[512];
    snprintf(seed_path, sizeof seed_path, "%s", itest_path("seed.json"));
    snprintf(mut_path, sizeof mut_path, "%s", itest_path("mut.json"));
    snprintf(bk, sizeof bk, "%s", itest_path("backups"));
    r = itest_must(itest_script("seed"), "--testbed", tbjson, "--pds", "old", "--handle", "gina.old.test", "--out", seed_path, NULL);
    itest_result_free(&r);
    json_t *seed = itest_load_json(seed_path);
    const char *did = itest_str(seed, "did");
    char pw[512];
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", itest_str(seed, "password")));
    r = itest_must(itest_bin(), "backup", did, "--to", bk, "--pds", itest_str(old, "url"), "--plc-url", plc, "--password-file", pw,
                   NULL);
    itest_result_free(&r);
    r = itest_must(itest_script("mutate"), "--seed", seed_path, "--out", mut_path, NULL);
    itest_result_free(&r);
    json_t *mut = itest_load_json(mut_path);
    r = itest_must(itest_bin(), "backup", did, "--to", bk, "--pds", itest_str(old, "url"), "--plc-url", plc, "--password-file", pw,
                   NULL);
    cr_assert(strstr(r.out, "(incremental)"), "%s", r.out);
    itest_result_free(&r);

    /* the operator's view first: every repository of that PDS (three accounts) in one run */
    char seed2[512], seed3[512], allbk[512];
    snprintf(seed2, sizeof seed2, "%s", itest_path("seed2.json"));
    snprintf(seed3, sizeof seed3, "%s", itest_path("seed3.json"));
    snprintf(allbk, sizeof allbk, "%s", itest_path("all-backups"));
    r = itest_must(itest_script("seed"), "--testbed", tbjson, "--pds", "old", "--handle", "hank.old.test", "--out", seed2, NULL);
    itest_result_free(&r);
    r = itest_must(itest_script("seed"), "--testbed", tbjson, "--pds", "old", "--handle", "ivy.old.test", "--out", seed3, NULL);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "backup", "--all-repos", itest_str(old, "url"), "--to", allbk, "--plc-url", plc, NULL);
    cr_assert_eq(r.status, 0, "--all-repos failed:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "3 of 3 repositories backed up, 0 failed"), "%s", r.out);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "verify", allbk, NULL);
    cr_assert_eq(r.status, 0, "verify of the --all-repos backups:\n%s", r.err);
    cr_assert(strstr(r.out, "3 snapshot(s)"), "%s", r.out);
    itest_result_free(&r);

    /* the old PDS dies for good */
    pid_t old_pid = (pid_t)json_integer_value(json_object_get(old, "pid"));
    cr_assert_eq(kill(old_pid, SIGKILL), 0);
    for (int i = 0; i < 50 && kill(old_pid, 0) == 0; i++) usleep(100000);

    /* the user's rotation key: on this testbed the old PDS's own key is in every account's
     * rotation keys, and a self-hoster whose server died still has it in their secrets */
    char key[512], newpw[512], journal[512], work[512];
    snprintf(key, sizeof key, "%s", itest_write_file("rotation.hex", itest_str(old, "rotationKeyHex")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw", "restored password 1"));
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    /* the nightly watch of this DID knows its log up to now */
    char watch[512];
    snprintf(watch, sizeof watch, "%s", itest_path("watch.json"));
    r = itest_run(itest_bin(), "plc", "watch", did, "--state", watch, "--plc-url", plc, NULL);
    cr_assert_eq(r.status, 0, "first watch run:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);
    const char *argv[] = {itest_bin(), "restore", bk, "--did", did, "--to", itest_str(neu, "url"), "--rotation-key", key,
                          "--new-email", "gina@example.com", "--new-password-file", newpw, "--plc-url", plc, "--journal", journal,
                          "--work-dir", work, "--watch-state", watch, "--yes", NULL};
    /* a temporary key file pdsmove did not write (a symlink planted in the work directory) is
     * refused, neither followed nor replaced: the key is never written through it */
    char planted[700], decoy[512];
    snprintf(decoy, sizeof decoy, "%s", itest_write_file("decoy", "someone else's file\n"));
    cr_assert_eq(mkdir(work, 0700), 0);
    snprintf(planted, sizeof planted, "%s/temporary-signing.key", work);
    cr_assert_eq(symlink(decoy, planted), 0);
    r = itest_runv(argv);
    cr_assert_neq(r.status, 0, "a planted temporary key must stop the restore:\n%s", r.err);
    cr_assert(strstr(r.err, "temporary key") && strstr(r.err, planted), "the error names the file:\n%s", r.err);
    itest_result_free(&r);
    size_t dlen = 0;
    char *dtext = itest_slurp(decoy, &dlen);
    cr_assert_str_eq(dtext, "someone else's file\n", "the key was written through the symlink");
    free(dtext);
    cr_assert_eq(unlink(planted), 0);
    /* killed (the journal's crash hook, docs/journal.md) right after the first PLC operation is
     * saved, then in the resumed run after its 10th and 4th commits: around the operations */
    const int crash_at[] = {7, 10, 4};
    int kills = 0;
    for (size_t i = 0; i < sizeof crash_at / sizeof crash_at[0]; i++)
        if (run_crashed(argv, "restore", crash_at[i])) kills++;
        else break;
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "restore after %d kills failed:\n%s", kills, r.err);
    cr_assert(strstr(r.err, "tree root identical to the snapshot"), "%s", r.err);
    itest_result_free(&r);

    /* the DID document points at the new PDS; exactly two operations were added */
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", plc, did);
    json_t *data = itest_get_json(url);
    cr_assert_not_null(data);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(data, "services"), "atproto_pds"), "endpoint")),
                     itest_str(neu, "url"));
    json_decref(data);
    snprintf(url, sizeof url, "%s/%s/log/audit", plc, did);
    json_t *log = itest_get_json(url);
    cr_assert_eq(json_array_size(log), 3, "genesis + 2 restore operations, got %zu", json_array_size(log));
    json_decref(log);
    /* the watch knows both operations as pdsmove's own: no alarm */
    r = itest_run(itest_bin(), "plc", "watch", did, "--state", watch, "--plc-url", plc, NULL);
    cr_assert_eq(r.status, 0, "the watch alarmed about the restore's own operations:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);

    /* records and blobs equal the last snapshot */
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(neu, "url"), did);
    itest_fetch(url, itest_path("restored.car"));
    itest_result v = itest_run(itest_bin(), "car", "verify", itest_path("restored.car"), NULL);
    cr_assert_eq(v.status, 0, "%s", v.err);
    cr_assert(itest_line_has(v.out, "records:", json_integer_value(json_object_get(mut, "total"))), "%s", v.out);
    itest_result_free(&v);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", itest_str(neu, "url"), did);
    json_t *blobs = itest_get_json(url);
    size_t want = json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs")) +
                  json_array_size(json_object_get(mut, "newBlobs"));
    cr_assert_eq(json_array_size(json_object_get(blobs, "cids")), want);
    json_decref(blobs);

    /* and it accepts new posts */
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", itest_str(neu, "url"));
    char body[512];
    snprintf(body, sizeof body, "{\"identifier\":\"%s\",\"password\":\"restored password 1\"}", did);
    r = itest_must("curl", "-sS", "--fail", "-H", "content-type: application/json", "-d", body, url, NULL);
    json_t *sess = json_loads(r.out, 0, NULL);
    itest_result_free(&r);
    cr_assert_not_null(sess);
    char auth[4096], post[1024];
    snprintf(auth, sizeof auth, "authorization: Bearer %s", json_string_value(json_object_get(sess, "accessJwt")));
    snprintf(post, sizeof post,
             "{\"repo\":\"%s\",\"collection\":\"app.bsky.feed.post\",\"record\":{\"$type\":\"app.bsky.feed.post\","
             "\"text\":\"back online\",\"createdAt\":\"2026-11-25T22:00:00.000Z\"}}",
             did);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.repo.createRecord", itest_str(neu, "url"));
    r = itest_run("curl", "-sS", "--fail-with-body", "-H", "content-type: application/json", "-H", auth, "-d", post, url, NULL);
    cr_assert_eq(r.status, 0, "the restored account refused a new post: %s %s", r.out, r.err);
    itest_result_free(&r);
    json_decref(sess);
    json_decref(mut);
    json_decref(seed);
    json_decref(tb);
}

/* The other way: the old PDS still works, so the identity moves through its email token, as
 * in a migration, but the data comes from the backup. The account has changed on the old PDS
 * since the snapshot: the new PDS must get the snapshot's state, not the live one. Stopped
 * twice on the way (the crash hook); the PLC log gains exactly one operation. */
Test(restore, old_pds_working_moves_the_snapshot_by_the_migration_way, .fini = teardown, .timeout = 600) {
    json_t *old = itest_pds("old"), *neu = itest_pds("new");
    const char *plc = itest_plc_url();
    json_t *seed = itest_seed("old", "rsm");
    const char *did = itest_str(seed, "did");
    char seed_path[600], mut_path[512], bk[512], pw[512], newpw[512], journal[512], work[512], name[200];
    snprintf(name, sizeof name, "seed-%s.json", itest_str(seed, "handle"));
    snprintf(seed_path, sizeof seed_path, "%s", itest_path(name));
    snprintf(mut_path, sizeof mut_path, "%s", itest_path("mut.json"));
    snprintf(bk, sizeof bk, "%s", itest_path("backups"));
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", itest_str(seed, "password")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw", "restored password 2"));
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    itest_result r = itest_must(itest_bin(), "backup", did, "--to", bk, "--pds", itest_str(old, "url"), "--plc-url", plc,
                                "--password-file", pw, NULL);
    itest_result_free(&r);
    /* a day of changes after the backup, which the restore must not carry over */
    r = itest_must(itest_script("mutate"), "--seed", seed_path, "--out", mut_path, NULL);
    itest_result_free(&r);

    /* neither way named: a usage error that says which options */
    r = itest_run(itest_bin(), "restore", bk, "--did", did, "--to", itest_str(neu, "url"), NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--rotation-key") && strstr(r.err, "--password-file"), "%s", r.err);
    itest_result_free(&r);

    char watch[512];
    snprintf(watch, sizeof watch, "%s", itest_path("watch.json"));
    r = itest_run(itest_bin(), "plc", "watch", did, "--state", watch, "--plc-url", plc, NULL);
    cr_assert_eq(r.status, 0, "first watch run:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);
    const char *argv[] = {itest_bin(), "restore", bk, "--did", did, "--to", itest_str(neu, "url"), "--password-file", pw,
                          "--new-password-file", newpw, "--plc-token-from-db", itest_str(old, "accountDb"), "--plc-url", plc,
                          "--journal", journal, "--work-dir", work, "--watch-state", watch, "--yes", NULL};
    const int crash_at[] = {6, 12}; /* commits of this (migrate-kind) run, then of the resumed one */
    int kills = 0;
    for (size_t i = 0; i < sizeof crash_at / sizeof crash_at[0]; i++)
        if (run_crashed(argv, "migrate", crash_at[i])) kills++;
        else break;
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "restore (the migration way) after %d kills failed:\n%s\n%s", kills, r.out, r.err);
    /* (the second spawned run may have finished the restore before its kill: then this run
     * finds nothing left to do, and the checks below tell what the finished one did) */
    bool finished_before = strstr(r.out, "nothing to do:") != NULL;
    cr_assert(finished_before || strstr(r.err, "of the backup"), "the export must come from the backup:\n%s", r.err);
    cr_assert(finished_before || strstr(r.err, "ok verify"), "%s", r.err);
    itest_result_free(&r);
    /* `status` tells where the data came from */
    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "data from  backup snapshot did_plc_"), "%s", r.out);
    cr_assert(strstr(r.out, "taken from the backup"), "%s", r.out);
    itest_result_free(&r);

    /* the DID points at the new PDS with exactly one more operation, signed by the old PDS */
    char *ep = itest_plc_pds(plc, did);
    cr_assert_str_eq(ep, itest_str(neu, "url"));
    free(ep);
    cr_assert_eq(itest_plc_ops(plc, did), 2, "genesis + the one migration operation");
    r = itest_run(itest_bin(), "plc", "watch", did, "--state", watch, "--plc-url", plc, NULL);
    cr_assert_eq(r.status, 0, "the watch alarmed about the restore's own operation:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);

    /* the new PDS holds the snapshot: the seeded records and blobs, not the later changes */
    json_t *inv = json_object_get(seed, "inventory");
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(neu, "url"), did);
    itest_fetch(url, itest_path("restored.car"));
    itest_result v = itest_run(itest_bin(), "car", "verify", itest_path("restored.car"), NULL);
    cr_assert_eq(v.status, 0, "%s", v.err);
    cr_assert(itest_line_has(v.out, "records:", json_integer_value(json_object_get(inv, "total"))), "%s", v.out);
    itest_result_free(&v);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", itest_str(neu, "url"), did);
    json_t *blobs = itest_get_json(url);
    cr_assert_not_null(blobs);
    cr_assert_eq(json_array_size(json_object_get(blobs, "cids")), json_array_size(json_object_get(inv, "blobs")));
    json_decref(blobs);
    /* and the old account is deactivated, as after a migration */
    bool active = true;
    cr_assert(itest_pds_has_account(itest_str(old, "url"), did, &active));
    cr_assert(!active, "the old account is still active");
    json_decref(seed);
}
