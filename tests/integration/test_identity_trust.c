/* test_identity_trust.c — migrate's identity step against a hostile old PDS: a fault proxy in
 * front of the real old PDS hands back, instead of the operation the PDS signed, a different
 * one signed validly with the PDS's own rotation key (the user's key dropped, the PDS's key
 * put first, a service added), or calls the user's key its own so that it would be dropped.
 * Each is refused with the difference named, the PLC audit log stays exactly as it was, and a
 * re-run without the proxy finishes with the user's key still first. */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

/* The audit log as scripts/testbed/audit-log prints it (owned JSON). */
static json_t *audit_log(const char *did) {
    char out[600];
    snprintf(out, sizeof out, "%s", itest_path("audit.json"));
    itest_result r = itest_must(itest_script("audit-log"), "--testbed", itest_testbed_path(), "--did", did, "--out", out, NULL);
    itest_result_free(&r);
    return itest_load_json(out);
}

/* pdsmove plc add-rotation-key: the user's own key first (the email token from the PDS's db). */
static void add_user_key(json_t *seed, const char *keyfile) {
    char pw[600];
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw-add", itest_str(seed, "password")));
    itest_result r = itest_run(itest_bin(), "plc", "add-rotation-key", itest_str(seed, "handle"), "--key", keyfile, "--pds",
                               itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), "--password-file", pw,
                               "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb"), "--yes", NULL);
    cr_assert_eq(r.status, 0, "add-rotation-key: %s", r.err);
    itest_result_free(&r);
}

Test(identity_trust, an_old_pds_that_signs_another_operation_is_refused_and_the_identity_is_unchanged, .fini = teardown,
     .timeout = 600) {
    json_t *seed = itest_seed("old", "trust");
    const char *did = itest_str(seed, "did");
    char keyfile[600], user_did_key[128];
    snprintf(keyfile, sizeof keyfile, "%s", itest_path("user.key"));
    itest_result g = itest_must(itest_bin(), "key", "generate", "--out", keyfile, NULL);
    const char *dk = strstr(g.out, "did:key:z");
    cr_assert_not_null(dk, "%s", g.out);
    snprintf(user_did_key, sizeof user_did_key, "%.*s", (int)strcspn(dk, " \n\t)"), dk);
    itest_result_free(&g);
    add_user_key(seed, keyfile);
    json_t *before = audit_log(did);

    char journal[600];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *old_url = itest_str(itest_pds("old"), "url"), *key_hex = itest_str(itest_pds("old"), "rotationKeyHex");
    const char *extra[] = {"--yes", "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb"), NULL};
    const struct {
        const char *change, *says;
        bool names_user_key;
    } cases[] = {
        {"drop-first-key", "(expected at #0) is missing", true},
        {"key-first", "was added at #0", false},
        {"add-service", "services.evil (AtprotoPersonalDataServer https://evil.example) was added", false},
        {NULL, "the only key it proved to hold; nothing was submitted", true}, /* claims the user's key */
    };
    itest_proxy po = {.port = 0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rules[600];
        if (cases[i].change)
            snprintf(rules, sizeof rules,
                     "[{\"match\":\"com.atproto.identity.signPlcOperation\",\"action\":\"plcop\",\"change\":\"%s\",\"keyHex\":\"%s\"}]",
                     cases[i].change, key_hex);
        else
            snprintf(rules, sizeof rules,
                     "[{\"match\":\"com.atproto.identity.getRecommendedDidCredentials\",\"action\":\"recommend-key\",\"key\":\"%s\","
                     "\"count\":100}]", user_did_key);
        const char *what = cases[i].change ? cases[i].change : "recommend-key";
        itest_proxy_start_on(&po, old_url, rules, po.port); /* the same URL every run: one journal */
        const char *argv[ITEST_MAX_ARGS + 1];
        itest_migrate_argv(argv, seed, NULL, po.url, itest_str(itest_pds("new"), "url"), itest_plc_url(), journal, extra);
        itest_result r = itest_runv(argv);
        itest_proxy_stop(&po);
        cr_assert_neq(r.status, 0, "%s: a changed operation must stop the run:\n%s", what, r.err);
        cr_assert(strstr(r.err, "nothing was submitted"), "%s:\n%s", what, r.err);
        cr_assert(strstr(r.err, cases[i].says), "%s: the difference must be shown:\n%s", what, r.err);
        if (cases[i].names_user_key) cr_assert(strstr(r.err, user_did_key), "the dropped key must be named:\n%s", r.err);
        itest_assert_suggested_commands_exist(r.err);
        itest_result_free(&r);
        json_t *after = audit_log(did);
        cr_assert(json_equal(before, after), "%s: the audit log changed (%zu -> %zu operations)", what,
                  json_array_size(before), json_array_size(after));
        json_decref(after);
    }

    /* the old PDS behaves again: the run finishes, the user's key still first */
    itest_proxy_start_on(&po, old_url, "[]", po.port);
    const char *argv[ITEST_MAX_ARGS + 1];
    itest_migrate_argv(argv, seed, NULL, po.url, itest_str(itest_pds("new"), "url"), itest_plc_url(), journal, extra);
    itest_result r = itest_runv(argv);
    itest_proxy_stop(&po);
    cr_assert_eq(r.status, 0, "the re-run failed:\n%s", r.err);
    itest_result_free(&r);
    json_t *log = audit_log(did);
    cr_assert_eq(json_array_size(log), json_array_size(before) + 1, "exactly one operation was added");
    json_t *op = json_object_get(json_array_get(log, json_array_size(log) - 1), "operation");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(op, "rotationKeys"), 0)), user_did_key);
    cr_assert_null(json_object_get(json_object_get(op, "services"), "evil"));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(op, "services"), "atproto_pds"), "endpoint")),
                     itest_str(itest_pds("new"), "url"));
    json_decref(log);
    json_decref(before);
    json_decref(seed);
}
