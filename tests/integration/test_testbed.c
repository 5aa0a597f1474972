/* test_testbed.c — pdsmove against the live reference servers (scripts/testbed): a freshly
 * seeded account's repo, fetched from the real PDS, passes `pdsmove car verify` with the
 * signing key the real PLC directory publishes, and its live audit log passes
 * `pdsmove plc verify-log`; damaged copies of both are refused. One fresh account per test. */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

/* Seeds an account on "old" and downloads its repo CAR; returns the seed JSON (owned). */
static json_t *seed_and_fetch_car(const char *prefix, const char *car_path) {
    json_t *seed = itest_seed("old", prefix);
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(seed, "pdsUrl"),
             itest_str(seed, "did"));
    itest_fetch(url, car_path);
    return seed;
}

/* The PLC directory's current state for did (/<did>/data; owned). */
static json_t *plc_data(const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", itest_plc_url(), did);
    const char *path = itest_path("plc-data.json");
    itest_fetch(url, path);
    return itest_load_json(path);
}

static const char *atproto_key(json_t *data) {
    const char *k = json_string_value(json_object_get(json_object_get(data, "verificationMethods"), "atproto"));
    cr_assert_not_null(k, "PLC data has no verificationMethods.atproto");
    cr_assert(!strncmp(k, "did:key:z", 9), "atproto key is not a did:key: %s", k);
    return k;
}

/* run-integration's usual testbed: "old" and "new" of the current line, "v04" of the 0.4 one. */
Test(testbed, testbed_json_lists_plc_and_three_loopback_pdses, .fini = teardown) {
    json_t *tb = itest_testbed();
    cr_assert(!strncmp(itest_plc_url(), "http://localhost:", 17), "plc url %s", itest_plc_url());
    const char *names[] = {"old", "new", "v04"}, *lines[] = {"current", "current", "0.4"};
    for (size_t i = 0; i < 3; i++) {
        json_t *p = itest_pds(names[i]);
        cr_assert_str_eq(itest_str(p, "version"), lines[i], "pds %s", names[i]);
        cr_assert(access(itest_str(p, "node"), X_OK) == 0, "pds %s: its node %s does not run", names[i], itest_str(p, "node"));
        char domain[32];
        snprintf(domain, sizeof domain, ".%s.test", names[i]);
        cr_assert_str_eq(itest_str(p, "handleDomain"), domain, "pds %s", names[i]);
        cr_assert(!strncmp(itest_str(p, "url"), "http://localhost:", 17), "pds %s url", names[i]);
        cr_assert(!strncmp(itest_str(p, "did"), "did:web:localhost%3A", 20), "pds %s did", names[i]);
        json_int_t pid = json_integer_value(json_object_get(p, "pid"));
        cr_assert_gt(pid, 1, "pds %s pid", names[i]);
        cr_assert_eq(kill((pid_t)pid, 0), 0, "pds %s (pid %lld) is not running", names[i], (long long)pid);
        char health[256];
        snprintf(health, sizeof health, "%s/xrpc/_health", itest_str(p, "url"));
        itest_fetch(health, itest_path("health.json"));
    }
    cr_assert_eq(json_array_size(json_object_get(tb, "pds")), 3);
}

Test(testbed, seeded_repo_passes_car_verify_with_the_plc_signing_key, .fini = teardown, .timeout = 300) {
    const char *car = itest_path("repo.car");
    json_t *seed = seed_and_fetch_car("carv", car);
    const char *did = itest_str(seed, "did");
    json_t *data = plc_data(did);
    const char *key = atproto_key(data);

    itest_result r = itest_run(itest_bin(), "car", "verify", car, "--did-key", key, NULL);
    cr_assert_eq(r.status, 0, "car verify of %s's repo exited %d\nstdout:\n%s\nstderr:\n%s", did, r.status, r.out, r.err);
    cr_assert(strstr(r.out, did), "car verify does not print the DID %s:\n%s", did, r.out);
    json_t *inv = json_object_get(seed, "inventory");
    json_t *records = json_object_get(inv, "records");
    const char *coll;
    json_t *n;
    json_object_foreach(records, coll, n) {
        cr_assert(itest_line_has(r.out, coll, json_integer_value(n)),
                  "car verify output has no line with %s and its count %lld:\n%s", coll,
                  (long long)json_integer_value(n), r.out);
    }
    itest_result_free(&r);
    json_decref(data);
    json_decref(seed);
}

Test(testbed, car_ls_lists_exactly_the_seeded_records, .fini = teardown, .timeout = 300) {
    const char *car = itest_path("repo.car");
    json_t *seed = seed_and_fetch_car("carls", car);
    itest_result r = itest_must(itest_bin(), "car", "ls", car, NULL);

    /* Count lines per collection: "collection/rkey<TAB>cid". */
    json_t *counted = json_object();
    long long total = 0;
    for (char *line = r.out; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char *slash = strchr(line, '/');
        char *tab = strchr(line, '\t');
        cr_assert(slash && tab && slash < tab && !strncmp(tab + 1, "bafy", 4), "malformed car ls line: %s", line);
        *slash = '\0';
        json_t *c = json_object_get(counted, line);
        json_object_set_new(counted, line, json_integer(c ? json_integer_value(c) + 1 : 1));
        total++;
        line = end ? end + 1 : NULL;
    }
    json_t *inv = json_object_get(seed, "inventory");
    cr_assert_eq(total, json_integer_value(json_object_get(inv, "total")), "car ls listed %lld records, seeded %lld",
                 total, (long long)json_integer_value(json_object_get(inv, "total")));
    cr_assert(json_equal(counted, json_object_get(inv, "records")), "records per collection differ: car ls %s, seeded %s",
              json_dumps(counted, JSON_SORT_KEYS | JSON_COMPACT),
              json_dumps(json_object_get(inv, "records"), JSON_SORT_KEYS | JSON_COMPACT));
    json_decref(counted);
    itest_result_free(&r);
    json_decref(seed);
}

Test(testbed, car_verify_refuses_a_key_that_did_not_sign_the_commit, .fini = teardown, .timeout = 300) {
    const char *car = itest_path("repo.car");
    json_t *seed = seed_and_fetch_car("carkey", car);
    json_t *data = plc_data(itest_str(seed, "did"));
    /* The PDS's rotation key is a real k256 did:key of this DID, but not its signing key. */
    const char *rotation = json_string_value(json_array_get(json_object_get(data, "rotationKeys"), 0));
    cr_assert_not_null(rotation);
    cr_assert_str_neq(rotation, atproto_key(data));
    /* The same file with the right key passes, so the refusal below is about the key. */
    itest_result ok = itest_must(itest_bin(), "car", "verify", car, "--did-key", atproto_key(data), NULL);
    itest_result_free(&ok);
    itest_result r = itest_run(itest_bin(), "car", "verify", car, "--did-key", rotation, NULL);
    cr_assert_neq(r.status, 0, "car verify accepted a commit checked against the wrong key:\n%s", r.out);
    cr_assert(r.status > 0 && r.status < 128, "car verify did not exit with an error status (%d):\n%s", r.status, r.err);
    itest_result_free(&r);
    json_decref(data);
    json_decref(seed);
}

Test(testbed, live_audit_log_passes_plc_verify_log_and_names_the_pds, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "plcv");
    const char *did = itest_str(seed, "did");
    const char *log = itest_path("audit.json");
    itest_result a = itest_must(itest_script("audit-log"), "--testbed", itest_testbed_path(), "--did", did, "--out", log, NULL);
    itest_result_free(&a);
    json_t *data = plc_data(did);

    itest_result r = itest_run(itest_bin(), "plc", "verify-log", log, NULL);
    cr_assert_eq(r.status, 0, "plc verify-log of %s exited %d\nstdout:\n%s\nstderr:\n%s", did, r.status, r.out, r.err);
    const char *pds_url = itest_str(seed, "pdsUrl");
    cr_assert(strstr(r.out, pds_url), "plc verify-log does not name the PDS endpoint %s:\n%s", pds_url, r.out);
    cr_assert(strstr(r.out, itest_str(seed, "handle")), "plc verify-log does not name the handle %s:\n%s",
              itest_str(seed, "handle"), r.out);
    cr_assert(strstr(r.out, atproto_key(data)), "plc verify-log does not name the signing key %s:\n%s",
              atproto_key(data), r.out);
    itest_result_free(&r);
    json_decref(data);
    json_decref(seed);
}

Test(testbed, audit_log_with_a_changed_endpoint_is_refused, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "plcbad");
    const char *did = itest_str(seed, "did");
    const char *log = itest_path("audit.json");
    itest_result a = itest_must(itest_script("audit-log"), "--testbed", itest_testbed_path(), "--did", did, "--out", log, NULL);
    itest_result_free(&a);
    /* The log as served passes, so the refusal below is about the change. */
    itest_result ok = itest_must(itest_bin(), "plc", "verify-log", log, NULL);
    itest_result_free(&ok);

    /* Point the signed genesis operation at another server: its signature no longer holds. */
    json_t *entries = itest_load_json(log);
    cr_assert_eq(json_array_size(entries), 1, "a fresh account's audit log has one operation");
    json_t *pds = json_object_get(json_object_get(json_object_get(json_array_get(entries, 0), "operation"), "services"),
                                  "atproto_pds");
    cr_assert_not_null(pds, "genesis operation has no services.atproto_pds");
    json_object_set_new(pds, "endpoint", json_string("https://evil.example.com"));
    const char *bad = itest_path("audit-bad.json");
    cr_assert_eq(json_dump_file(entries, bad, JSON_COMPACT), 0);

    itest_result r = itest_run(itest_bin(), "plc", "verify-log", bad, NULL);
    cr_assert_neq(r.status, 0, "plc verify-log accepted an operation whose content no longer matches its signature:\n%s", r.out);
    cr_assert(r.status > 0 && r.status < 128, "plc verify-log did not exit with an error status (%d):\n%s", r.status, r.err);
    cr_assert(r.err[0] != '\0', "plc verify-log refused the log without saying why");
    itest_result_free(&r);
    json_decref(entries);
    json_decref(seed);
}
