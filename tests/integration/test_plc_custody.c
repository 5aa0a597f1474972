/* test_plc_custody.c — `pdsmove plc show|watch|add-rotation-key|recover` against the live
 * testbed (a real PLC directory and reference PDSes): the state and log shown and validated, a
 * generated key put first through the email-token flow, the watch quiet about pdsmove's own
 * operations (add-rotation-key, migrate) and alarming (exit 3) about one the PDS made behind
 * its back, and that operation undone with the user's key. One fresh account per test. */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static const char *write_file(const char *name, const char *content) {
    const char *p = itest_path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    chmod(p, 0600);
    return p;
}

/* GET url (JSON) into a fresh file; returns the parsed body (owned). */
static json_t *get_json(const char *url) {
    const char *p = itest_path("get.json");
    itest_result r = itest_run("curl", "-sS", "--fail", "--max-time", "60", "-o", p, url, NULL);
    cr_assert_eq(r.status, 0, "GET %s: %s", url, r.err);
    itest_result_free(&r);
    return itest_load_json(p);
}

static json_t *audit_log(const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/log/audit", itest_plc_url(), did);
    return get_json(url);
}

static json_t *plc_data(const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", itest_plc_url(), did);
    return get_json(url);
}

/* CID of entry i of did's audit log (i < 0: from the end), into out. */
static void log_cid(const char *did, long i, char *out, size_t size) {
    json_t *log = audit_log(did);
    size_t n = json_array_size(log);
    size_t at = i < 0 ? n - (size_t)(-i) : (size_t)i;
    cr_assert_lt(at, n, "the log of %s has %zu entries", did, n);
    snprintf(out, size, "%s", json_string_value(json_object_get(json_array_get(log, at), "cid")));
    json_decref(log);
}

static size_t log_len(const char *did) {
    json_t *log = audit_log(did);
    size_t n = json_array_size(log);
    json_decref(log);
    return n;
}

/* `pdsmove key generate --out <scratch>/name`; the path and its did:key. */
static void gen_key(const char *name, char *path, size_t psize, char *did_key, size_t dsize) {
    snprintf(path, psize, "%s", itest_path(name));
    itest_result g = itest_must(itest_bin(), "key", "generate", "--out", path, NULL);
    const char *dk = strstr(g.out, "did:key:z");
    cr_assert_not_null(dk, "%s", g.out);
    snprintf(did_key, dsize, "%.*s", (int)strcspn(dk, " \n\t)"), dk);
    itest_result_free(&g);
}

/* The did:key of the old PDS's rotation key (a rotation key of every account it created). */
static void pds_key(char *path, size_t psize, char *did_key, size_t dsize) {
    snprintf(path, psize, "%s", write_file("pds-rotation.hex", itest_str(itest_pds("old"), "rotationKeyHex")));
    itest_result r = itest_must(itest_bin(), "key", "show", path, NULL);
    const char *dk = strstr(r.out, "did:key:z");
    cr_assert_not_null(dk, "%s", r.out);
    snprintf(did_key, dsize, "%.*s", (int)strcspn(dk, " \n\t"), dk);
    itest_result_free(&r);
}

/* An operation made behind pdsmove's back: the PDS changes the handle, signing the PLC
 * operation with its own rotation key. */
static void pds_update_handle(json_t *seed, const char *new_handle) {
    const char *pds = itest_str(itest_pds("old"), "url");
    char url[600], body[1200], auth[4096];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", pds);
    snprintf(body, sizeof body, "{\"identifier\":\"%s\",\"password\":\"%s\"}", itest_str(seed, "did"), itest_str(seed, "password"));
    const char *sess = itest_path("session.json");
    itest_result r = itest_must("curl", "-sS", "--fail-with-body", "-o", sess, "-H", "content-type: application/json", "-d", body, url, NULL);
    itest_result_free(&r);
    json_t *s = itest_load_json(sess);
    snprintf(auth, sizeof auth, "authorization: Bearer %s", itest_str(s, "accessJwt"));
    json_decref(s);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.identity.updateHandle", pds);
    snprintf(body, sizeof body, "{\"handle\":\"%s\"}", new_handle);
    r = itest_must("curl", "-sS", "--fail-with-body", "-H", "content-type: application/json", "-H", auth, "-d", body, url, NULL);
    itest_result_free(&r);
}

/* pdsmove plc add-rotation-key for seed with the testbed's flags (+ extra, NULL-terminated). */
static itest_result add_key(json_t *seed, const char *keyfile, const char *const *extra) {
    static char pw[512];
    snprintf(pw, sizeof pw, "%s", write_file("pw", itest_str(seed, "password")));
    const char *argv[ITEST_MAX_ARGS + 1] = {itest_bin(), "plc", "add-rotation-key", itest_str(seed, "handle"), "--key", keyfile,
                                            "--pds", itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(),
                                            "--password-file", pw, "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb")};
    size_t n = 14;
    for (size_t i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    cr_assert_leq(n, (size_t)ITEST_MAX_ARGS);
    argv[n] = NULL;
    return itest_runv(argv);
}

static itest_result watch(const char *did, const char *state, const char *extra) {
    if (extra) return itest_run(itest_bin(), "plc", "watch", did, "--plc-url", itest_plc_url(), "--state", state, extra, NULL);
    return itest_run(itest_bin(), "plc", "watch", did, "--plc-url", itest_plc_url(), "--state", state, NULL);
}

Test(plc_custody, show_prints_the_state_and_the_validated_log, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "cshow");
    const char *did = itest_str(seed, "did"), *handle = itest_str(seed, "handle");
    char keyfile[512], pdskey[128], cid0[140];
    pds_key(keyfile, sizeof keyfile, pdskey, sizeof pdskey);
    log_cid(did, 0, cid0, sizeof cid0);
    itest_result r = itest_run(itest_bin(), "plc", "show", handle, "--pds", itest_str(itest_pds("old"), "url"), "--plc-url",
                               itest_plc_url(), NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, did), "%s", r.out);
    cr_assert(strstr(r.out, handle), "%s", r.out);
    cr_assert(strstr(r.out, itest_str(itest_pds("old"), "url")), "%s", r.out);
    char line[256];
    snprintf(line, sizeof line, "#0 %s", pdskey);
    cr_assert(strstr(r.out, line), "the PDS's rotation key as #0: %s", r.out);
    cr_assert(strstr(r.out, "valid"), "%s", r.out);
    cr_assert(strstr(r.out, cid0), "the genesis op's CID: %s", r.out);
    cr_assert(strstr(r.out, "created: handle"), "%s", r.out);
    itest_result_free(&r);

    r = itest_run(itest_bin(), "plc", "show", did, "--plc-url", itest_plc_url(), "--json", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", r.out);
    cr_assert(json_is_true(json_object_get(j, "valid")));
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "rotationKeys"), 0)), pdskey);
    cr_assert_eq(json_array_size(json_object_get(j, "log")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "log"), 0), "cid")), cid0);
    json_decref(j);
    itest_result_free(&r);

    /* a DID the directory does not know fails, not shows */
    r = itest_run(itest_bin(), "plc", "show", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "--plc-url", itest_plc_url(), NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}

Test(plc_custody, add_rotation_key_puts_a_generated_key_first_through_the_email_token, .fini = teardown, .timeout = 180) {
    json_t *seed = itest_seed("old", "caddk");
    const char *did = itest_str(seed, "did");
    char keyfile[512], userkey[128], pkf[512], pdskey[128];
    gen_key("user.key", keyfile, sizeof keyfile, userkey, sizeof userkey);
    pds_key(pkf, sizeof pkf, pdskey, sizeof pdskey);

    /* without --yes and without a terminal: shown, refused, nothing changed */
    itest_result r = add_key(seed, keyfile, NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "--yes"), "%s", r.err);
    cr_assert(strstr(r.err, userkey), "the operation is shown: %s", r.err);
    cr_assert_eq(log_len(did), 1, "nothing may be submitted without confirmation");
    itest_result_free(&r);

    char state[512];
    snprintf(state, sizeof state, "%s", itest_path("watch.json"));
    const char *yes[] = {"--yes", "--watch-state", state, NULL};
    r = add_key(seed, keyfile, yes);
    cr_assert_eq(r.status, 0, "%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "rotation key #0"), "%s", r.out);
    char secret[200];
    FILE *f = fopen(keyfile, "r");
    cr_assert(fgets(secret, sizeof secret, f));
    fclose(f);
    secret[strcspn(secret, "\n")] = 0;
    cr_assert_null(strstr(r.out, secret), "the private key was printed");
    cr_assert_null(strstr(r.err, secret), "the private key was printed");
    cr_assert_null(strstr(r.err, itest_str(seed, "password")), "the password was printed");
    itest_result_free(&r);

    json_t *data = plc_data(did);
    json_t *keys = json_object_get(data, "rotationKeys");
    cr_assert_eq(json_array_size(keys), 2, "the user's key and the PDS's");
    cr_assert_str_eq(json_string_value(json_array_get(keys, 0)), userkey, "the generated key must be first");
    cr_assert_str_eq(json_string_value(json_array_get(keys, 1)), pdskey, "the PDS's key is kept");
    char aka[300];
    snprintf(aka, sizeof aka, "at://%s", itest_str(seed, "handle"));
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(data, "alsoKnownAs"), 0)), aka, "the handle is kept");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(data, "services"), "atproto_pds"), "endpoint")),
                     itest_str(itest_pds("old"), "url"), "the PDS is kept");
    json_decref(data);
    cr_assert_eq(log_len(did), 2);

    /* again: nothing to do, nothing submitted */
    r = add_key(seed, keyfile, yes);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "nothing to do"), "%s", r.out);
    itest_result_free(&r);
    cr_assert_eq(log_len(did), 2);
    json_decref(seed);
}

Test(plc_custody, watch_is_quiet_about_pdsmove_ops_and_alarms_on_one_made_behind_its_back, .fini = teardown, .timeout = 180) {
    json_t *seed = itest_seed("old", "cwat");
    const char *did = itest_str(seed, "did");
    char state[512];
    snprintf(state, sizeof state, "%s", itest_path("watch.json"));

    itest_result r = watch(did, state, NULL);
    cr_assert_eq(r.status, 0, "first run: %s", r.err);
    cr_assert(strstr(r.out, "recorded 1 operation"), "%s", r.out);
    itest_result_free(&r);
    struct stat sb;
    cr_assert_eq(stat(state, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600, "state file mode %o", sb.st_mode & 0777);

    r = watch(did, state, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "unchanged"), "%s", r.out);
    cr_assert_eq(strchr(r.out, '\n') - r.out + 1, (long)strlen(r.out), "one line when unchanged: %s", r.out);
    itest_result_free(&r);

    /* pdsmove's own operation (noted in the state file) is expected */
    char keyfile[512], userkey[128];
    gen_key("user.key", keyfile, sizeof keyfile, userkey, sizeof userkey);
    const char *yes[] = {"--yes", "--watch-state", state, NULL};
    r = add_key(seed, keyfile, yes);
    cr_assert_eq(r.status, 0, "%s", r.err);
    itest_result_free(&r);
    char good[140];
    log_cid(did, -1, good, sizeof good);
    r = watch(did, state, NULL);
    cr_assert_eq(r.status, 0, "an op pdsmove made must not alarm: %s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "made by pdsmove"), "%s", r.out);
    itest_result_free(&r);

    /* one the PDS made on its own */
    char evil[300];
    snprintf(evil, sizeof evil, "e%s", itest_str(seed, "handle"));
    pds_update_handle(seed, evil);
    char bad[140];
    log_cid(did, -1, bad, sizeof bad);
    r = watch(did, state, NULL);
    cr_assert_eq(r.status, 3, "an unexpected op must exit 3: %s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, bad), "the op is named by its CID: %s", r.out);
    cr_assert(strstr(r.out, evil), "what it changed: %s", r.out);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "pdsmove plc recover %s --key YOUR_KEY_FILE --to-before %s", did, good);
    cr_assert(strstr(r.out, cmd), "the exact recover command: %s", r.out);
    cr_assert(strstr(r.out, "left"), "how long is left of the 72 hours: %s", r.out);
    cr_assert(strstr(r.out, userkey), "which key can undo it: %s", r.out);
    itest_result_free(&r);

    /* it keeps alarming until acted upon */
    r = watch(did, state, "--json");
    cr_assert_eq(r.status, 3, "%s", r.err);
    json_t *j = json_loads(r.out, 0, NULL);
    cr_assert_not_null(j, "%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "unexpected");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "recovery"), "forkCid")), good);
    cr_assert(json_is_true(json_object_get(json_object_get(j, "recovery"), "recoverable")));
    json_decref(j);
    itest_result_free(&r);

    r = watch(did, state, "--accept");
    cr_assert_eq(r.status, 0, "%s", r.err);
    itest_result_free(&r);
    r = watch(did, state, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "unchanged"), "%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

Test(plc_custody, watch_knows_the_operation_of_a_migration_made_by_pdsmove, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "cmig");
    const char *did = itest_str(seed, "did");
    char statedir[512];
    snprintf(statedir, sizeof statedir, "%s", itest_path("state"));
    setenv("PDSMOVE_STATE_DIR", statedir, 1); /* the default watch state file lives there */
    itest_result r = itest_run(itest_bin(), "plc", "watch", did, "--plc-url", itest_plc_url(), NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, statedir), "the default state file is under PDSMOVE_STATE_DIR: %s", r.out);
    itest_result_free(&r);

    char pw[512], newpw[512];
    snprintf(pw, sizeof pw, "%s", write_file("pw", itest_str(seed, "password")));
    snprintf(newpw, sizeof newpw, "%s", write_file("newpw", "a new password for the test"));
    r = itest_run(itest_bin(), "migrate", itest_str(seed, "handle"), "--from", itest_str(itest_pds("old"), "url"), "--to",
                  itest_str(itest_pds("new"), "url"), "--plc-url", itest_plc_url(), "--password-file", pw, "--new-password-file",
                  newpw, "--journal", itest_path("journal.sqlite"), "--work-dir", itest_path("work"), "--no-keep-archive",
                  "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb"), "--yes", NULL);
    cr_assert_eq(r.status, 0, "migrate: %s", r.err);
    cr_assert_null(strstr(r.err, "could not note"), "%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(log_len(did), 2);

    r = itest_run(itest_bin(), "plc", "watch", did, "--plc-url", itest_plc_url(), NULL);
    cr_assert_eq(r.status, 0, "the migration's op must not alarm: %s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "made by pdsmove"), "%s", r.out);
    cr_assert(strstr(r.out, "PDS moved"), "%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

Test(plc_custody, recover_undoes_an_operation_the_pds_signed_with_a_lower_priority_key, .fini = teardown, .timeout = 180) {
    json_t *seed = itest_seed("old", "crec");
    const char *did = itest_str(seed, "did"), *handle = itest_str(seed, "handle");
    char keyfile[512], userkey[128], pkf[512], pdskey[128];
    gen_key("user.key", keyfile, sizeof keyfile, userkey, sizeof userkey);
    pds_key(pkf, sizeof pkf, pdskey, sizeof pdskey);
    char state[512];
    snprintf(state, sizeof state, "%s", itest_path("watch.json"));
    itest_result r = watch(did, state, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    itest_result_free(&r);
    const char *yes[] = {"--yes", "--watch-state", state, NULL};
    r = add_key(seed, keyfile, yes);
    cr_assert_eq(r.status, 0, "%s", r.err);
    itest_result_free(&r);
    char good[140], bad[140], evil[300];
    log_cid(did, -1, good, sizeof good);
    snprintf(evil, sizeof evil, "e%s", handle);
    pds_update_handle(seed, evil);
    log_cid(did, -1, bad, sizeof bad);
    json_t *data = plc_data(did);
    char want[300];
    snprintf(want, sizeof want, "at://%s", evil);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(data, "alsoKnownAs"), 0)), want, "the unwanted op landed");
    json_decref(data);

    /* refusals that change nothing: the bad op's own CID, the PDS's (lower-priority) key,
     * and no confirmation */
    r = itest_run(itest_bin(), "plc", "recover", did, "--key", keyfile, "--to-before", bad, "--plc-url", itest_plc_url(), "--yes", NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "nothing after it") && strstr(r.err, good), "%s", r.err);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "plc", "recover", did, "--key", pkf, "--to-before", good, "--plc-url", itest_plc_url(), "--yes", NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "higher priority"), "%s", r.err);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "plc", "recover", did, "--key", keyfile, "--to-before", good, "--plc-url", itest_plc_url(), NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "--yes"), "%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(log_len(did), 3, "a refusal must not send anything");

    r = itest_run(itest_bin(), "plc", "recover", did, "--key", keyfile, "--to-before", good, "--plc-url", itest_plc_url(),
                  "--watch-state", state, "--yes", NULL);
    cr_assert_eq(r.status, 0, "%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "recovered"), "%s", r.out);
    itest_result_free(&r);

    /* checked from outside: the bad op is nullified, the head restores the good op's data */
    json_t *log = audit_log(did);
    cr_assert_eq(json_array_size(log), 4);
    json_t *b = json_array_get(log, 2);
    cr_assert_str_eq(json_string_value(json_object_get(b, "cid")), bad);
    cr_assert(json_is_true(json_object_get(b, "nullified")), "the unwanted op must be nullified");
    json_t *head = json_array_get(log, 3);
    cr_assert(json_is_false(json_object_get(head, "nullified")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(head, "operation"), "prev")), good);
    json_decref(log);
    data = plc_data(did);
    snprintf(want, sizeof want, "at://%s", handle);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(data, "alsoKnownAs"), 0)), want, "the handle is back");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(data, "rotationKeys"), 0)), userkey);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(data, "rotationKeys"), 1)), pdskey);
    json_decref(data);

    /* and the watch finds nothing left to alarm about: the bad op is undone, the rest is ours */
    itest_result w = watch(did, state, NULL);
    cr_assert_eq(w.status, 0, "%s\n%s", w.out, w.err);
    cr_assert(strstr(w.out, "already undone"), "%s", w.out);
    cr_assert(strstr(w.out, "recovery: forks at #1"), "%s", w.out);
    itest_result_free(&w);
    json_decref(seed);
}
