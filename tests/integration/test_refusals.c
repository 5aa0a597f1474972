/* test_refusals.c — what `pdsmove migrate` must refuse, against the live reference servers: an
 * app password, a wrong email token, a rotation key the DID does not list, a blob or a repo over
 * the new PDS's limits, a missing invite code. Each refusal says what happened and what to do,
 * prints no secret and changes nothing it should not. And the PDS's real rate limits: a 429 from
 * the server makes it wait, then finish. One fresh account per test. */
#include "itest.h"

static itest_proc bg; /* a pdsmove running in the background, if any: the teardown ends it */

static void teardown(void) {
    itest_proc_kill(&bg);
    itest_cleanup();
}

/* ---- the two testbeds ---- */

static const char *url_of(json_t *pds) { return itest_str(pds, "url"); }

/* The second testbed's PDS "strict", checked to be configured as the tests need. */
static json_t *strict_pds(void) {
    json_t *p = itest_pds_of(itest_testbed_strict(), "strict");
    cr_assert(json_is_true(json_object_get(p, "inviteRequired")), "PDS strict must require invite codes (see run-integration)");
    cr_assert(json_is_true(json_object_get(p, "rateLimits")), "PDS strict must have rate limits on (see run-integration)");
    cr_assert_lt(itest_int(p, "blobLimit"), 2097152, "PDS strict needs a blob limit below the seed's 2 MiB blobs");
    cr_assert_lt(itest_int(p, "importLimit"), 80000, "PDS strict needs an import limit below 80 kB");
    return p;
}

static json_t *strict_old(void) { return itest_pds_of(itest_testbed_strict(), "old"); }

static const char *strict_plc(void) { return itest_str(json_object_get(itest_testbed_strict(), "plc"), "url"); }

/* ---- the state around a refusal ---- */

/* What a refusal must leave alone: the DID's PLC log (same number of operations, still naming
 * the old PDS) and the old account (still active). */
typedef struct {
    const char *plc, *did, *old_url;
    size_t ops;
} before_state;

static before_state note_state(const char *plc, const char *did, const char *old_url) {
    before_state b = {plc, did, old_url, itest_plc_ops(plc, did)};
    char *ep = itest_plc_pds(plc, did);
    cr_assert_str_eq(ep, old_url, "the seeded account should start on %s", old_url);
    free(ep);
    return b;
}

static void assert_identity_unchanged(const before_state *b) {
    cr_assert_eq(itest_plc_ops(b->plc, b->did), b->ops, "the PLC audit log of %s gained an operation", b->did);
    char *ep = itest_plc_pds(b->plc, b->did);
    cr_assert_str_eq(ep, b->old_url, "the DID document no longer names the old PDS");
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(b->old_url, b->did, &active), "the account vanished from the old PDS");
    cr_assert(active, "the old account was deactivated");
}

/* Nothing at all on the new PDS (a preflight refusal). */
static void assert_no_account(const char *pds_url, const char *did) {
    cr_assert(!itest_pds_has_account(pds_url, did, NULL), "an account for %s was created on %s", did, pds_url);
}

/* If the account exists on the new PDS (created before the refusal), it is not active. */
static void assert_not_active_on(const char *pds_url, const char *did) {
    bool active = false;
    if (itest_pds_has_account(pds_url, did, &active)) cr_assert(!active, "the account is active on %s", pds_url);
}

static void copy_path(char *dst, size_t size, const char *name) { snprintf(dst, size, "%s", itest_path(name)); }

/* ---- app passwords (itest_create_app_password) ---- */

Test(refusals, app_password_is_refused_in_preflight_before_anything_is_created, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "apw");
    const char *did = itest_str(seed, "did"), *old_url = url_of(itest_pds("old")), *new_url = url_of(itest_pds("new"));
    before_state b = note_state(itest_plc_url(), did, old_url);
    char *app_pw = itest_create_app_password(old_url, did, itest_str(seed, "password"));
    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--yes", "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb"), NULL};
    itest_migrate_argv(argv, seed, app_pw, old_url, new_url, itest_plc_url(), journal, extra);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 2, "an app password is a usage error (exit 2), got %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "app password"), "the error should say the password is an app password:\n%s", r.err);
    cr_assert(strstr(r.err, "real password") || strstr(r.err, "account's password") || strstr(r.err, "main password"),
              "the error should say which password to give instead:\n%s", r.err);
    cr_assert_null(strstr(r.err, "create-account"), "it got past preflight:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, app_pw, "the app password");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_assert_file_lacks(journal, app_pw, "the app password");
    itest_result_free(&r);

    assert_no_account(new_url, did);
    assert_identity_unchanged(&b);
    free(app_pw);
    json_decref(seed);
}

/* ---- the email token ---- */

/* Waits until the old PDS has stored a PLC-operation token for did that differs from `not`
 * (the token pdsmove just asked for; read with scripts/testbed/plc-token), while p runs.
 * Returns it (owned). */
static char *wait_for_new_token(const char *pds, const char *did, const char *not, itest_proc *p) {
    for (int i = 0; i < 240; i++) {
        itest_result r = itest_run(itest_script("plc-token"), "--testbed", itest_testbed_path(), "--pds", pds, "--did", did, NULL);
        r.out[strcspn(r.out, "\r\n")] = 0;
        if (r.status == 0 && r.out[0] && (!not || strcmp(r.out, not))) {
            char *tok = strdup(r.out);
            itest_result_free(&r);
            return tok;
        }
        itest_result_free(&r);
        if (!itest_proc_running(p)) {
            itest_result out = itest_proc_wait(p, 1);
            cr_assert_fail("pdsmove ended (status %d) before asking for the email token:\n%s", out.status, out.err);
        }
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("pdsmove did not ask the old PDS for an email token within 2 minutes");
    return NULL;
}

Test(refusals, wrong_email_token_changes_no_identity_and_a_rerun_with_the_right_one_completes, .fini = teardown,
     .timeout = 420) {
    json_t *seed = itest_seed("old", "tok");
    const char *did = itest_str(seed, "did"), *old_url = url_of(itest_pds("old")), *new_url = url_of(itest_pds("new"));
    before_state b = note_state(itest_plc_url(), did, old_url);
    char journal[600], token_file[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    copy_path(token_file, sizeof token_file, "token");
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--yes", "--plc-token-file", token_file, NULL};
    itest_migrate_argv(argv, seed, NULL, old_url, new_url, itest_plc_url(), journal, extra);

    /* first run: once pdsmove has asked for the token, the user writes a wrong one */
    itest_spawn(&bg, argv, "run1");
    char *tok1 = wait_for_new_token("old", did, NULL, &bg);
    const char *wrong = "ZZZZZ-77777";
    cr_assert_str_neq(tok1, wrong);
    itest_write_file("token", "ZZZZZ-77777\n");
    itest_result r = itest_proc_wait(&bg, 120);
    cr_assert_eq(r.status, 1, "a wrong token must stop the run with exit 1 (re-run to continue), got %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "refused the token"), "the error should say the PDS refused the token:\n%s", r.err);
    cr_assert(strstr(r.err, "again"), "the error should say to run the command again:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, tok1, "the emailed token");
    itest_assert_not_shown(&r, wrong, "the token given");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);
    assert_identity_unchanged(&b);
    assert_not_active_on(new_url, did);

    /* the re-run asks for a new token and takes the right one. The wrong one's file goes
     * first: pdsmove accepts a file written up to a second before its request. */
    cr_assert_eq(unlink(token_file), 0);
    itest_spawn(&bg, argv, "run2");
    char *tok2 = wait_for_new_token("old", did, tok1, &bg);
    char line[128];
    snprintf(line, sizeof line, "%s\n", tok2);
    itest_write_file("token", line);
    r = itest_proc_wait(&bg, 240);
    cr_assert_eq(r.status, 0, "the re-run with the right token failed (%d):\n%s", r.status, r.err);
    itest_assert_not_shown(&r, tok2, "the emailed token");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_assert_file_lacks(journal, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);

    cr_assert_eq(itest_plc_ops(b.plc, did), b.ops + 1, "exactly one PLC operation should have been added");
    char *ep = itest_plc_pds(b.plc, did);
    cr_assert_str_eq(ep, new_url);
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(new_url, did, &active) && active, "the account is not active on the new PDS");
    free(tok1);
    free(tok2);
    json_decref(seed);
}

/* ---- a rotation key the DID does not list ---- */

Test(refusals, rotation_key_not_in_rotation_keys_is_refused_in_preflight, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "rkey");
    const char *did = itest_str(seed, "did"), *old_url = url_of(itest_pds("old")), *new_url = url_of(itest_pds("new"));
    before_state b = note_state(itest_plc_url(), did, old_url);
    char keyfile[600];
    copy_path(keyfile, sizeof keyfile, "stranger.key");
    itest_result g = itest_must(itest_bin(), "key", "generate", "--out", keyfile, NULL);
    const char *dk = strstr(g.out, "did:key:z");
    cr_assert_not_null(dk, "%s", g.out);
    char did_key[128];
    snprintf(did_key, sizeof did_key, "%.*s", (int)strcspn(dk, " \n\t)"), dk);
    itest_result_free(&g);
    char *key_text = itest_slurp(keyfile, NULL);
    cr_assert_not_null(key_text);
    key_text[strcspn(key_text, "\r\n")] = 0;

    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--yes", "--rotation-key", keyfile, NULL};
    itest_migrate_argv(argv, seed, NULL, old_url, new_url, itest_plc_url(), journal, extra);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 2, "a key that cannot sign is a usage error (exit 2), got %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, did_key), "the error should name the key (%s):\n%s", did_key, r.err);
    cr_assert(strstr(r.err, "rotation key"), "the error should say it is not a rotation key of the DID:\n%s", r.err);
    cr_assert(strstr(r.err, "email"), "the error should point to the email-token way:\n%s", r.err);
    cr_assert_null(strstr(r.err, "create-account"), "it got past preflight:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, key_text, "the private key");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_assert_file_lacks(journal, key_text, "the private key");
    itest_result_free(&r);

    assert_no_account(new_url, did);
    assert_identity_unchanged(&b);
    free(key_text);
    json_decref(seed);
}

/* ---- the new PDS's gates and limits (second testbed: "old" → "strict") ---- */

/* argv for old → strict in the second testbed, with the email token read from old's database;
 * with_admin adds --new-pds-admin-password-file (strict's admin password in a file). */
static void strict_argv(const char **argv, json_t *seed, const char *journal, bool with_admin) {
    static char admin_file[600];
    snprintf(admin_file, sizeof admin_file, "%s", itest_write_file("admin-pw", itest_str(strict_pds(), "adminPassword")));
    const char *with[] = {"--yes", "--plc-token-from-db", itest_str(strict_old(), "accountDb"),
                          "--new-pds-admin-password-file", admin_file, NULL};
    const char *without[] = {"--yes", "--plc-token-from-db", itest_str(strict_old(), "accountDb"), NULL};
    itest_migrate_argv(argv, seed, NULL, url_of(strict_old()), url_of(strict_pds()), strict_plc(), journal,
                       with_admin ? with : without);
}

Test(refusals, invite_code_required_and_not_given_is_refused_in_preflight, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "inv", NULL);
    const char *did = itest_str(seed, "did");
    before_state b = note_state(strict_plc(), did, url_of(strict_old()));
    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    strict_argv(argv, seed, journal, false);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 2, "a missing invite code is a usage error (exit 2), got %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "invite code"), "the error should say an invite code is required:\n%s", r.err);
    cr_assert(strstr(r.err, "--invite-code"), "the error should name --invite-code:\n%s", r.err);
    cr_assert(strstr(r.err, "--new-pds-admin-password-file"), "the error should name --new-pds-admin-password-file:\n%s", r.err);
    cr_assert_null(strstr(r.err, "create-account"), "it got past preflight:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);

    assert_no_account(url_of(strict_pds()), did);
    assert_identity_unchanged(&b);
    json_decref(seed);
}

Test(refusals, invite_code_minted_with_the_admin_password_file_moves_the_account, .fini = teardown, .timeout = 300) {
    char max_blob[32];
    snprintf(max_blob, sizeof max_blob, "%lld", (long long)itest_int(strict_pds(), "blobLimit"));
    const char *fits[] = {"--max-blob", max_blob, NULL}; /* every blob within strict's limit */
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "invok", fits);
    const char *did = itest_str(seed, "did");
    before_state b = note_state(strict_plc(), did, url_of(strict_old()));
    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    strict_argv(argv, seed, journal, true);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 0, "with the admin password the move must succeed (%d):\n%s", r.status, r.err);
    itest_assert_not_shown(&r, itest_str(strict_pds(), "adminPassword"), "the new PDS's admin password");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_assert_file_lacks(journal, itest_str(strict_pds(), "adminPassword"), "the new PDS's admin password");
    itest_result_free(&r);

    cr_assert_eq(itest_plc_ops(b.plc, did), b.ops + 1, "exactly one PLC operation should have been added");
    char *ep = itest_plc_pds(b.plc, did);
    cr_assert_str_eq(ep, url_of(strict_pds()));
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(url_of(strict_pds()), did, &active) && active, "the account is not active on strict");
    json_decref(seed);
}

/* The code from a file (argv is visible to every user in `ps`): the move goes through, and the
 * code is neither printed nor journaled. */
Test(refusals, invite_code_from_a_file_moves_the_account, .fini = teardown, .timeout = 300) {
    char max_blob[32];
    snprintf(max_blob, sizeof max_blob, "%lld", (long long)itest_int(strict_pds(), "blobLimit"));
    const char *fits[] = {"--max-blob", max_blob, NULL};
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "invf", fits);
    const char *did = itest_str(seed, "did");
    itest_result r = itest_must(itest_script("invite"), "--testbed", itest_strict_path(), "--pds", "strict", NULL);
    char code[128];
    snprintf(code, sizeof code, "%.*s", (int)strcspn(r.out, "\r\n"), r.out);
    itest_result_free(&r);
    cr_assert_gt(strlen(code), 5, "no invite code minted");
    char code_file[600], journal[600];
    snprintf(code_file, sizeof code_file, "%s", itest_write_file("invite-code", code));
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *extra[] = {"--yes", "--plc-token-from-db", itest_str(strict_old(), "accountDb"), "--invite-code-file", code_file, NULL};
    const char *argv[ITEST_MAX_ARGS + 1];
    itest_migrate_argv(argv, seed, NULL, url_of(strict_old()), url_of(strict_pds()), strict_plc(), journal, extra);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "with the code from a file the move must succeed (%d):\n%s", r.status, r.err);
    itest_assert_not_shown(&r, code, "the invite code");
    itest_assert_file_lacks(journal, code, "the invite code");
    itest_result_free(&r);
    bool active = false;
    cr_assert(itest_pds_has_account(url_of(strict_pds()), did, &active) && active, "the account is not active on strict");
    json_decref(seed);
}

Test(refusals, blob_over_the_new_pds_upload_limit_stops_before_the_identity_changes, .fini = teardown, .timeout = 300) {
    json_int_t limit = itest_int(strict_pds(), "blobLimit");
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "blob", NULL); /* blobs up to 5 MiB */
    const char *did = itest_str(seed, "did");
    json_t *blobs = json_object_get(json_object_get(seed, "inventory"), "blobs");
    size_t over = 0, i;
    json_t *bl;
    json_array_foreach(blobs, i, bl) over += itest_int(bl, "size") > limit;
    cr_assert_gt(over, 0, "the seed has no blob over %lld bytes", (long long)limit);
    before_state b = note_state(strict_plc(), did, url_of(strict_old()));
    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    strict_argv(argv, seed, journal, true);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 1, "a blob over the limit must stop the run with exit 1, got %d:\n%s", r.status, r.err);
    char limit_text[32];
    snprintf(limit_text, sizeof limit_text, "%lld", (long long)limit);
    cr_assert(strstr(r.err, limit_text), "the error should name the new PDS's limit (%s bytes):\n%s", limit_text, r.err);
    cr_assert(strstr(r.err, "PDS_BLOB_UPLOAD_LIMIT"), "the error should say what the operator must raise:\n%s", r.err);
    bool names_one = false;
    json_array_foreach(blobs, i, bl) {
        if (itest_int(bl, "size") > limit && strstr(r.err, itest_str(bl, "cid"))) names_one = true;
    }
    cr_assert(names_one, "the error should name a blob that is too large:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, itest_str(strict_pds(), "adminPassword"), "the new PDS's admin password");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);

    assert_identity_unchanged(&b);
    /* found from the records right after export: nothing may exist on the new PDS yet */
    assert_no_account(url_of(strict_pds()), did);
    json_decref(seed);
}

Test(refusals, repo_over_the_new_pds_import_limit_stops_before_the_identity_changes, .fini = teardown, .timeout = 300) {
    json_int_t limit = itest_int(strict_pds(), "importLimit");
    const char *big[] = {"--posts", "300", "--blobs", "1", "--max-blob", "5000", NULL}; /* a ~90 kB repo, small blobs */
    json_t *seed = itest_seed_on(itest_strict_path(), "old", "imp", big);
    const char *did = itest_str(seed, "did");
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", url_of(strict_old()), did);
    itest_fetch(url, itest_path("repo.car"));
    struct stat st;
    cr_assert_eq(stat(itest_path("repo.car"), &st), 0);
    cr_assert_gt((long long)st.st_size, (long long)limit, "the seeded repo (%lld bytes) must exceed the import limit %lld",
                 (long long)st.st_size, (long long)limit);
    before_state b = note_state(strict_plc(), did, url_of(strict_old()));
    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    strict_argv(argv, seed, journal, true);
    itest_result r = itest_runv(argv);

    cr_assert_eq(r.status, 1, "a repo over the import limit must stop the run with exit 1, got %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "PDS_MAX_REPO_IMPORT_SIZE"), "the error should name PDS_MAX_REPO_IMPORT_SIZE:\n%s", r.err);
    cr_assert(strstr(r.err, "413") || strstr(r.err, "too large"), "the error should say the repo is too large:\n%s", r.err);
    cr_assert(strstr(r.err, "keeps what is done: run the same command again"), "a failure after preflight is resumable:\n%s", r.err);
    itest_assert_suggested_commands_exist(r.err);
    itest_assert_not_shown(&r, itest_str(strict_pds(), "adminPassword"), "the new PDS's admin password");
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);

    assert_identity_unchanged(&b);
    assert_not_active_on(url_of(strict_pds()), did);
    json_decref(seed);
}

/* ---- real rate limits ----
 * The reference PDS's shortest windows are 5 minutes (createSession: 30 per 5 min per
 * identifier and client address; global: 3000 per 5 min per address), so a real 429 costs
 * this test up to 5 minutes of waiting. Criterion runs suites in name order, two tests at a
 * time here: the suite "limits" starts early and the others run beside it. */

/* Spends the createSession budget of identifier did from this host on the rate-limited PDS
 * until it answers 429; returns the window's end (RateLimit-Reset, Unix seconds). */
static long exhaust_create_session(const char *pds_url, const char *did) {
    char url[1024], body_arg[700], headers[600];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", pds_url);
    json_t *body = json_pack("{s:s, s:s}", "identifier", did, "password", "not-the-password-just-spending-the-budget");
    char *text = json_dumps(body, JSON_COMPACT);
    snprintf(body_arg, sizeof body_arg, "@%s", itest_write_file("login.json", text));
    free(text);
    json_decref(body);
    copy_path(headers, sizeof headers, "headers.txt");
    for (int i = 0; i < 100; i++) {
        itest_result r = itest_run("curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-D", headers, "-w", "%{http_code}",
                                   "-H", "content-type: application/json", "--data-binary", body_arg, url, NULL);
        cr_assert_eq(r.status, 0, "createSession on %s: %s", pds_url, r.err);
        int code = atoi(r.out);
        itest_result_free(&r);
        if (code == 429) {
            char *h = itest_slurp(headers, NULL);
            cr_assert_not_null(h);
            const char *reset = strcasestr(h, "\nratelimit-reset:");
            cr_assert_not_null(reset, "the PDS's 429 has no RateLimit-Reset header:\n%s", h);
            long at = strtol(reset + strlen("\nratelimit-reset:"), NULL, 10);
            free(h);
            cr_assert_gt(at, (long)time(NULL) - 5, "RateLimit-Reset is not a time in the future");
            return at;
        }
        cr_assert(code == 401 || code == 400, "createSession answered %d before any 429", code);
    }
    cr_assert_fail("100 logins and no 429 from %s: are its rate limits on?", pds_url);
    return 0;
}

Test(limits, real_429_from_the_pds_makes_it_wait_and_then_finish, .fini = teardown, .timeout = 600) {
    json_t *strict = strict_pds(), *target = strict_old();
    json_t *seed = itest_seed_on(itest_strict_path(), "strict", "rl", NULL);
    const char *did = itest_str(seed, "did");
    before_state b = note_state(strict_plc(), did, url_of(strict));
    long reset_at = exhaust_create_session(url_of(strict), did);
    time_t t0 = time(NULL);

    char journal[600];
    copy_path(journal, sizeof journal, "journal.sqlite");
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--yes", "--plc-token-from-db", itest_str(strict, "accountDb"), NULL};
    itest_migrate_argv(argv, seed, NULL, url_of(strict), url_of(target), strict_plc(), journal, extra);
    itest_result r = itest_runv(argv);
    time_t took = time(NULL) - t0;

    cr_assert_eq(r.status, 0, "the migration should wait out the rate limit and finish (%d):\n%s", r.status, r.err);
    cr_assert(itest_line_has_both(r.err, "rate limited (HTTP 429); waiting", url_of(strict)),
              "the wait for %s should be shown:\n%s", url_of(strict), r.err);
    cr_assert_geq((long)took, reset_at - (long)t0 - 2, "it finished in %ld s, before the rate-limit window ended (%ld s)",
                  (long)took, reset_at - (long)t0);
    itest_assert_not_shown(&r, itest_str(seed, "password"), "the account password");
    itest_result_free(&r);

    cr_assert_eq(itest_plc_ops(b.plc, did), b.ops + 1, "exactly one PLC operation should have been added");
    char *ep = itest_plc_pds(b.plc, did);
    cr_assert_str_eq(ep, url_of(target));
    free(ep);
    bool active = false;
    cr_assert(itest_pds_has_account(url_of(target), did, &active) && active, "the account is not active on the new PDS");
    json_decref(seed);
}
