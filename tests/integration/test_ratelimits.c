/* test_ratelimits.c — a move onto a PDS with the reference PDS's real rate limits on (the second
 * testbed's PDS "limited": PDS_RATE_LIMITS_ENABLED and a PDS_RATE_LIMIT_BYPASS_KEY), with an
 * account of more blobs (1052, tiny) than its 1000 uploadBlob calls a day from one address:
 * --dry-run predicts the pause; with the bypass key the move finishes in one run; without it,
 * it stops cleanly before the identity step, says which limit and when, and after the reset
 * (the limiter lives in memory: scripts/testbed/restart stands in for the day passing) the
 * same command finishes. The end state is checked from outside (PLC directory, the PDSes). And
 * `backup --all-repos` reads from it. Last, the disaster case onto it: `restore --rotation-key`
 * of such an account's backup stops the same way, after its two PLC operations, and the same
 * command finishes after the reset with no third one. */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static json_t *limited_pds(void) {
    json_t *p = itest_pds_of(itest_testbed_strict(), "limited");
    cr_assert(json_is_true(json_object_get(p, "rateLimits")), "PDS limited must have rate limits on (see run-integration)");
    cr_assert(json_is_string(json_object_get(p, "rateLimitBypassKey")), "PDS limited needs a bypass key (see run-integration)");
    return p;
}

static json_t *old_pds(void) { return itest_pds_of(itest_testbed_strict(), "old"); }
static const char *url_of(json_t *pds) { return itest_str(pds, "url"); }
static const char *plc(void) { return itest_str(json_object_get(itest_testbed_strict(), "plc"), "url"); }

/* Blobs the PDS at url holds for did (sync.listBlobs, paged). */
static long long blobs_on(const char *url, const char *did) {
    char cursor[256] = "", req[1400];
    long long n = 0;
    for (int page = 0; page < 100; page++) {
        snprintf(req, sizeof req, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000%s%s", url, did, cursor[0] ? "&cursor=" : "",
                 cursor);
        json_t *j = itest_get_json(req);
        cr_assert_not_null(j, "listBlobs on %s failed", url);
        size_t k = json_array_size(json_object_get(j, "cids"));
        n += (long long)k;
        const char *next = json_string_value(json_object_get(j, "cursor"));
        bool more = k > 0 && next && *next;
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(j);
        if (!more) break;
    }
    return n;
}

/* The move's end state, from outside: the DID names the new PDS (one more operation), the
 * account is active there with every blob, and deactivated on the old PDS. */
static void assert_moved(const char *did, size_t ops_before, long long blobs) {
    cr_assert_eq(itest_plc_ops(plc(), did), ops_before + 1, "exactly one PLC operation should have been added");
    char *ep = itest_plc_pds(plc(), did);
    cr_assert_str_eq(ep, url_of(limited_pds()));
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(url_of(limited_pds()), did, &active) && active, "the account is not active on limited");
    cr_assert(itest_pds_has_account(url_of(old_pds()), did, &active) && !active, "the old account is still active");
    cr_assert_eq(blobs_on(url_of(limited_pds()), did), blobs, "every blob is on the new PDS");
}

static const char *many_blobs[] = {"--profile", "many-blobs", NULL};

static void migrate_argv(const char **argv, json_t *seed, const char *journal, const char *const *extra) {
    static const char *with[ITEST_MAX_ARGS];
    size_t n = 0;
    with[n++] = "--yes";
    with[n++] = "--no-keep-archive";
    with[n++] = "--plc-token-from-db";
    with[n++] = itest_str(old_pds(), "accountDb");
    for (size_t i = 0; extra && extra[i]; i++) with[n++] = extra[i];
    with[n] = NULL;
    itest_migrate_argv(argv, seed, NULL, url_of(old_pds()), url_of(limited_pds()), plc(), journal, with);
}

/* (a) with the bypass key the move does not pause; a wrong key is refused in preflight */
static void with_the_bypass_key(void) {
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "rlkey", many_blobs);
    const char *did = itest_str(seed, "did");
    long long blobs = (long long)json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs"));
    cr_assert_gt(blobs, 1000, "the seed must exceed the daily upload limit");
    size_t ops = itest_plc_ops(plc(), did);
    const char *key = itest_str(limited_pds(), "rateLimitBypassKey");
    /* the PDS's env file as the NixOS module's secrets file has it, not only the bare key */
    char env_text[400], key_file[600], journal[600];
    snprintf(env_text, sizeof env_text, "PDS_HOSTNAME=pds.example.com\nPDS_RATE_LIMIT_BYPASS_KEY=%s\nPDS_RATE_LIMITS_ENABLED=true\n", key);
    snprintf(key_file, sizeof key_file, "%s", itest_write_file("pds.env", env_text));
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *extra[] = {"--new-pds-ratelimit-bypass-key-file", key_file, NULL};
    const char *argv[ITEST_MAX_ARGS + 1];

    migrate_argv(argv, seed, journal, extra);
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "with the bypass key the move finishes in one run (%d):\n%s", r.status, r.err);
    cr_assert_null(strstr(r.err, "rate limited"), "no rate limit was met:\n%s", r.err);
    cr_assert_null(strstr(r.err, "pauses"), "no pause predicted with the key:\n%s", r.err);
    itest_assert_not_shown(&r, key, "the bypass key");
    itest_result_free(&r);
    itest_assert_file_lacks(journal, key, "the bypass key");
    assert_moved(did, ops, blobs);

    /* a wrong key is refused in preflight (the PDS still applies its limits) */
    json_t *seed2 = itest_seed_on(itest_strict_path(), "old", "rlbad", NULL);
    snprintf(key_file, sizeof key_file, "%s", itest_write_file("wrong.key", "not-the-key-0000\n"));
    const char *wrong[] = {"--new-pds-ratelimit-bypass-key-file", key_file, NULL};
    snprintf(journal, sizeof journal, "%s", itest_path("journal2.sqlite"));
    migrate_argv(argv, seed2, journal, wrong);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 2, "a wrong key is a usage error (%d):\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "not its PDS_RATE_LIMIT_BYPASS_KEY"), "%s", r.err);
    cr_assert_null(strstr(r.err, "create-account"), "it got past preflight:\n%s", r.err);
    itest_result_free(&r);
    cr_assert(!itest_pds_has_account(url_of(limited_pds()), itest_str(seed2, "did"), NULL), "nothing on the new PDS");
    json_decref(seed2);
    json_decref(seed);
}

/* (b) without it: a clean stop for the day, and the same command finishes after the reset */
static void without_the_key(void) {
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "rlday", many_blobs);
    const char *did = itest_str(seed, "did");
    long long blobs = (long long)json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs"));
    size_t ops = itest_plc_ops(plc(), did);
    char journal[600];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS + 1];
    /* this test uses up limited's uploads for "today": start from a fresh day */
    const char *tb_dir = itest_str(itest_testbed_strict(), "dir");
    itest_result r = itest_run(itest_script("restart"), "--dir", tb_dir, "limited", NULL);
    cr_assert_eq(r.status, 0, "restarting limited: %s", r.err);
    itest_result_free(&r);

    /* --dry-run predicts the pause before anything is copied */
    const char *dry[] = {"--dry-run", NULL};
    migrate_argv(argv, seed, journal, dry);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[300];
    snprintf(want, sizeof want, "the new PDS enforces rate limits: 1,%03lld blobs at 1000 uploads a day from this address means "
                                "the move pauses once, for up to 24 hours, unless you give --new-pds-ratelimit-bypass-key-file",
             blobs - 1000);
    cr_assert(strstr(r.err, want), "the dry run should say \"%s\":\n%s", want, r.err);
    itest_result_free(&r);

    /* the move: 1000 uploads, then a clean stop before the identity step */
    migrate_argv(argv, seed, journal, NULL);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 1, "a daily limit stops the run with exit 1 (%d):\n%s", r.status, r.err);
    cr_assert(strstr(r.err, url_of(limited_pds())) && strstr(r.err, "1000 requests a day") && strstr(r.err, "none are left"),
              "the message names the server and the limit:\n%s", r.err);
    cr_assert(strstr(r.err, "resets at") && strstr(r.err, "local time"), "and when it resets:\n%s", r.err);
    cr_assert(strstr(r.err, "The identity (PLC) step has not started") && strstr(r.err, "--wait-for-limits"),
              "and what the user can do:\n%s", r.err);
    cr_assert_null(strstr(r.err, "==> identity"), "the identity step must not start with blobs missing:\n%s", r.err);
    cr_assert_null(strstr(r.err, "waiting 900"), "no 15-minute wait loop:\n%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(itest_plc_ops(plc(), did), ops, "the PLC log is untouched");
    char *ep = itest_plc_pds(plc(), did);
    cr_assert_str_eq(ep, url_of(old_pds()), "the DID still names the old PDS");
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(url_of(old_pds()), did, &active) && active, "the old account stays active");
    cr_assert(itest_pds_has_account(url_of(limited_pds()), did, &active) && !active, "the new account is not active");

    /* status says when it can go on */
    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "can go on  at") && strstr(r.out, "rate limit"), "status:\n%s", r.out);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "status", "--journal", journal, "--json", NULL);
    cr_assert(strstr(r.out, "\"limit_reset_at\": 1"), "status --json:\n%s", r.out);
    cr_assert(strstr(r.out, "\"done\": 1000,"), "exactly the day's 1000 uploads went through:\n%s", r.out);
    itest_result_free(&r);

    /* a day later (the limiter is in memory: a restart resets it), the same command finishes */
    r = itest_run(itest_script("restart"), "--dir", tb_dir, "limited", NULL);
    cr_assert_eq(r.status, 0, "restarting limited: %s", r.err);
    itest_result_free(&r);
    migrate_argv(argv, seed, journal, NULL);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "after the reset the same command finishes (%d):\n%s", r.status, r.err);
    snprintf(want, sizeof want, "the new PDS enforces rate limits; the %lld blobs fit in its 1000 uploads a day", blobs - 1000);
    cr_assert(strstr(r.err, want), "the re-run's forecast counts only what is left (\"%s\"):\n%s", want, r.err);
    itest_result_free(&r);
    assert_moved(did, ops, blobs);
    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert_null(strstr(r.out, "can go on"), "the note is gone once finished:\n%s", r.out);
    itest_result_free(&r);

    json_decref(seed);
}

/* (c) backup --all-repos from a PDS with limits on (the reference PDS's limits on reads are all
 * short: listRepos, getRepo, getBlob) backs up every account there. Run first: an account moved
 * there has a commit signed by its previous key until its next write, which backup refuses. */
static void backup_all_repos(void) {
    json_t *seed = itest_seed_on(itest_strict_path(), "limited", "rlbk", NULL);
    const char *did = itest_str(seed, "did");
    char bk[600], ok_line[400];
    snprintf(bk, sizeof bk, "%s", itest_path("backup"));
    itest_result r = itest_run(itest_bin(), "backup", "--all-repos", url_of(limited_pds()), "--to", bk, "--plc-url", plc(), NULL);
    cr_assert_eq(r.status, 0, "backup --all-repos (%d):\n%s\n%s", r.status, r.out, r.err);
    snprintf(ok_line, sizeof ok_line, "ok     %s: full snapshot", did);
    cr_assert(strstr(r.out, ok_line) && strstr(r.out, ", 0 failed"), "%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

/* (d) the disaster case onto limited: `restore --rotation-key` of a snapshot of more blobs than
 * a day's uploads. Its two PLC operations come first (the account cannot be created before the
 * DID points there), then 1000 uploads and a clean stop; after the reset the same command
 * finishes without a third operation. */
static void restore_onto_limited(void) {
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "rlrs", many_blobs);
    const char *did = itest_str(seed, "did");
    long long blobs = (long long)json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs"));
    cr_assert_gt(blobs, 1000, "the seed must exceed the daily upload limit");
    char pw[600], key[600], newpw[600], bk[600], journal[600], work[600];
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw-rs", itest_str(seed, "password")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw-rs", "restored password rl"));
    snprintf(key, sizeof key, "%s", itest_path("user-rs.key"));
    snprintf(bk, sizeof bk, "%s", itest_path("backups-rs"));
    snprintf(journal, sizeof journal, "%s", itest_path("journal-rs.sqlite"));
    snprintf(work, sizeof work, "%s", itest_path("work-rs"));
    /* the user's own rotation key, set up before anything went wrong */
    itest_result r = itest_must(itest_bin(), "key", "generate", "--out", key, NULL);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "plc", "add-rotation-key", itest_str(seed, "handle"), "--key", key, "--pds", url_of(old_pds()),
                  "--plc-url", plc(), "--password-file", pw, "--plc-token-from-db", itest_str(old_pds(), "accountDb"), "--yes", NULL);
    cr_assert_eq(r.status, 0, "add-rotation-key: %s", r.err);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "backup", did, "--to", bk, "--pds", url_of(old_pds()), "--plc-url", plc(), "--password-file", pw, NULL);
    cr_assert_eq(r.status, 0, "backup (%d):\n%s\n%s", r.status, r.out, r.err);
    itest_result_free(&r);
    size_t ops = itest_plc_ops(plc(), did);
    /* uploads are counted per day: start from a fresh one */
    const char *tb_dir = itest_str(itest_testbed_strict(), "dir");
    r = itest_run(itest_script("restart"), "--dir", tb_dir, "limited", NULL);
    cr_assert_eq(r.status, 0, "restarting limited: %s", r.err);
    itest_result_free(&r);

    const char *argv[] = {itest_bin(), "restore", bk, "--did", did, "--to", url_of(limited_pds()), "--rotation-key", key,
                          "--new-email", "rlrs@example.com", "--new-password-file", newpw, "--plc-url", plc(), "--journal", journal,
                          "--work-dir", work, "--yes", NULL};
    r = itest_runv(argv);
    cr_assert_eq(r.status, 1, "a daily limit stops the restore with exit 1 (%d):\n%s", r.status, r.err);
    cr_assert(strstr(r.err, url_of(limited_pds())) && strstr(r.err, "1000 requests a day") && strstr(r.err, "none are left"),
              "the message names the server and the limit:\n%s", r.err);
    cr_assert(strstr(r.err, "resets at") && strstr(r.err, "local time"), "and when it resets:\n%s", r.err);
    cr_assert(strstr(r.err, "Run the same command again") && strstr(r.err, "--wait-for-limits"), "and what to do:\n%s", r.err);
    cr_assert_null(strstr(r.err, "has not started"), "the identity step is done by now:\n%s", r.err);
    cr_assert_null(strstr(r.err, "waiting 900"), "no 15-minute wait loop:\n%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(itest_plc_ops(plc(), did), ops + 2, "both restore operations are posted before the uploads");
    bool active = true;
    cr_assert(itest_pds_has_account(url_of(limited_pds()), did, &active) && !active, "not active until every blob is there");

    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "can go on  at") && strstr(r.out, "rate limit"), "status:\n%s", r.out);
    itest_result_free(&r);

    /* a day later, the same command finishes, and posts no third operation */
    r = itest_run(itest_script("restart"), "--dir", tb_dir, "limited", NULL);
    cr_assert_eq(r.status, 0, "restarting limited: %s", r.err);
    itest_result_free(&r);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "after the reset the same restore finishes (%d):\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "tree root identical to the snapshot"), "%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(itest_plc_ops(plc(), did), ops + 2, "exactly two PLC operations were added");
    char *ep = itest_plc_pds(plc(), did);
    cr_assert_str_eq(ep, url_of(limited_pds()));
    free(ep);
    cr_assert(itest_pds_has_account(url_of(limited_pds()), did, &active) && active, "the account is not active on limited");
    cr_assert_eq(blobs_on(url_of(limited_pds()), did), blobs, "every blob is on limited");
    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert_null(strstr(r.out, "can go on"), "the note is gone once finished:\n%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

/* One test, not two: (b) and (d) restart limited, which (a) must not see mid-move (Criterion runs
 * tests in parallel). */
Test(ratelimits, a_move_onto_a_pds_with_daily_upload_limits, .fini = teardown, .timeout = 900) {
    backup_all_repos();
    with_the_bypass_key();
    without_the_key();
    restore_onto_limited();
}
