/* test_migrate.c — `pdsmove migrate` between two live reference PDSes and a real PLC
 * directory: a full move checked from the outside (records, blobs, DID document, account
 * states), a run stopped before the identity step and resumed without repeating work, and
 * refusals that change nothing (wrong password, dry run). One fresh account per test. */
#include <dirent.h>
#include <signal.h>

#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static const char *write_file(const char *name, const char *content) {
    const char *p = itest_path(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    chmod(p, 0600); /* pdsmove refuses secret files others can read */
    return p;
}

/* GET url (JSON) into a fresh file; returns the parsed body (owned), or NULL on HTTP error. */
static json_t *get_json(const char *url) {
    const char *p = itest_path("get.json");
    itest_result r = itest_run("curl", "-sS", "--fail", "--max-time", "60", "-o", p, url, NULL);
    int st = r.status;
    itest_result_free(&r);
    return st == 0 ? itest_load_json(p) : NULL;
}

static size_t count_blobs(const char *pds_url, const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", pds_url, did);
    json_t *j = get_json(url);
    cr_assert_not_null(j, "listBlobs on %s failed", pds_url);
    size_t n = json_array_size(json_object_get(j, "cids"));
    json_decref(j);
    return n;
}

/* argv for pdsmove migrate <handle> from → to with the standard testbed flags (the email token
 * read from the old PDS's database unless token_from_db is false) plus extra args. */
static void migrate_argv(const char **argv, json_t *seed, const char *from, const char *to, const char *journal,
                         bool token_from_db, const char *const *extra) {
    static char pw[512], newpw[512], work[512];
    snprintf(pw, sizeof pw, "%s", write_file("pw", itest_str(seed, "password")));
    snprintf(newpw, sizeof newpw, "%s", write_file("newpw", "a new password for the test"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    size_t n = 0;
    const char *base[] = {itest_bin(), "migrate", itest_str(seed, "handle"), "--from", from, "--to", to, "--plc-url",
                          itest_plc_url(), "--password-file", pw, "--new-password-file", newpw, "--journal", journal,
                          "--work-dir", work};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[n++] = base[i];
    if (token_from_db) {
        argv[n++] = "--plc-token-from-db";
        argv[n++] = itest_str(itest_pds("old"), "accountDb");
    }
    for (size_t i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    cr_assert_lt(n, ITEST_MAX_ARGS);
    argv[n] = NULL;
}

static itest_result run_migrate(json_t *seed, const char *journal, const char *const *extra) {
    const char *argv[ITEST_MAX_ARGS];
    migrate_argv(argv, seed, itest_str(itest_pds("old"), "url"), itest_str(itest_pds("new"), "url"), journal, true, extra);
    return itest_runv(argv);
}

/* How many *-migrate.tar.zst files dir holds (anything else there, such as a half-written
 * .tmp, fails the test); the last one's path in out. */
static int count_archives(const char *dir, char *out, size_t size) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no archive directory %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        static const char suffix[] = "-migrate.tar.zst";
        size_t l = strlen(de->d_name), sl = sizeof suffix - 1;
        bool is_archive = l > sl && !strcmp(de->d_name + l - sl, suffix);
        cr_assert(is_archive, "a stray file in the archive directory: %s", de->d_name);
        n++;
        snprintf(out, size, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    return n;
}

/* The PLC directory's current data for did (owned). */
static json_t *plc_data(const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", itest_plc_url(), did);
    json_t *data = get_json(url);
    cr_assert_not_null(data, "no PLC data for %s", did);
    return data;
}

static const char *plc_endpoint(json_t *data) {
    return json_string_value(json_object_get(json_object_get(json_object_get(data, "services"), "atproto_pds"), "endpoint"));
}

Test(migrate, moves_an_account_and_everything_checks_out_from_outside, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "mig");
    const char *did = itest_str(seed, "did");
    json_t *inv = json_object_get(seed, "inventory");
    char archives[512];
    snprintf(archives, sizeof archives, "%s", itest_path("archives"));
    const char *extra[] = {"--yes", "--keep-archive", archives, NULL};
    itest_result r = run_migrate(seed, itest_path("journal.sqlite"), extra);
    cr_assert_eq(r.status, 0, "migrate failed:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "moved did:plc:"), "report: %s", r.out);
    cr_assert(strstr(r.err, "during preflight"), "the repo download should start during preflight: %s", r.err);
    cr_assert(strstr(r.err, "ok verify"), "progress: %s", r.err);
    itest_result_free(&r);

    /* the safety archive: one tar.zst holding the repo, the JSON files and every blob */
    char archive[1024];
    cr_assert_eq(count_archives(archives, archive, sizeof archive), 1);
    r = itest_must("tar", "--zstd", "-tf", archive, NULL);
    cr_assert(strstr(r.out, "/repo.car\n") && strstr(r.out, "/manifest.json\n") && strstr(r.out, "/preferences.json\n"), "%s", r.out);
    size_t blob_files = 0;
    for (const char *p = r.out; (p = strstr(p, "/blobs/b")); p++) blob_files++;
    cr_assert_eq(blob_files, json_array_size(json_object_get(inv, "blobs")), "%s", r.out);
    itest_result_free(&r);

    /* the PLC directory names the new PDS */
    char url[1024];
    json_t *data = plc_data(did);
    cr_assert_str_eq(plc_endpoint(data), itest_str(itest_pds("new"), "url"));

    /* the new PDS serves the same number of records, and `car verify` accepts its repo */
    const char *car = itest_path("new.car");
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(itest_pds("new"), "url"), did);
    itest_fetch(url, car);
    itest_result v = itest_run(itest_bin(), "car", "verify", car, NULL);
    cr_assert_eq(v.status, 0, "car verify of the new repo: %s", v.err);
    cr_assert(itest_line_has(v.out, "records:", json_integer_value(json_object_get(inv, "total"))), "%s", v.out);
    itest_result_free(&v);

    /* every blob is on the new PDS; the old account is deactivated */
    cr_assert_eq(count_blobs(itest_str(itest_pds("new"), "url"), did), json_array_size(json_object_get(inv, "blobs")));
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(itest_pds("old"), "url"), did);
    cr_assert_null(get_json(url), "the old PDS still serves the repo of a moved account");
    json_decref(data);
    json_decref(seed);
}

Test(migrate, stopped_before_the_identity_step_resumes_without_repeating, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "res");
    char journal[512]; /* itest_path's buffers rotate: keep our own copy */
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    /* no --yes and no terminal: it stops just before the PLC operation */
    itest_result r = run_migrate(seed, journal, NULL);
    cr_assert_eq(r.status, 1, "expected a stop before the identity step:\n%s", r.err);
    cr_assert(strstr(r.err, "--yes"), "the stop should say how to go on: %s", r.err);
    cr_assert(strstr(r.err, "ok blobs"), "data should be copied before the identity step: %s", r.err);
    itest_result_free(&r);

    const char *extra[] = {"--yes", NULL};
    r = run_migrate(seed, journal, extra);
    cr_assert_eq(r.status, 0, "resume failed:\n%s", r.err);
    cr_assert(strstr(r.err, "resuming"), "%s", r.err);
    cr_assert_null(strstr(r.err, "blobs to copy"), "blobs were listed again on resume:\n%s", r.err);
    cr_assert_null(strstr(r.err, "downloading the repository"), "the repo was exported again:\n%s", r.err);
    cr_assert(strstr(r.err, "ok activate"), "%s", r.err);
    itest_result_free(&r);

    /* a third run finds nothing to do, which is not an error: the run is finished and the
     * account already moved */
    r = run_migrate(seed, journal, extra);
    cr_assert_eq(r.status, 0, "a re-run after the move:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "nothing to do:") && strstr(r.out, "already moved to"), "%s", r.out);
    cr_assert_null(strstr(r.err, "==> export"), "%s", r.err);
    itest_result_free(&r);
    /* but the account on a PDS no run of this journal moved it to is still refused */
    json_t *fresh = itest_seed("new", "res2");
    const char *argv[ITEST_MAX_ARGS];
    migrate_argv(argv, fresh, itest_str(itest_pds("new"), "url"), itest_str(itest_pds("new"), "url"), journal, false, extra);
    r = itest_runv(argv);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "already on"), "%s", r.err);
    itest_result_free(&r);
    json_decref(fresh);
    json_decref(seed);
}

Test(migrate, wrong_password_fails_early_and_creates_nothing, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "pw");
    json_object_set_new(seed, "password", json_string("definitely-not-the-password"));
    const char *extra[] = {"--yes", NULL};
    itest_result r = run_migrate(seed, itest_path("journal.sqlite"), extra);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "wrong handle/DID or password"), "%s", r.err);
    cr_assert_null(strstr(r.err, "create-account"), "nothing may be created: %s", r.err);
    cr_assert_null(strstr(r.err, "definitely-not-the-password"), "the password was printed");
    cr_assert_null(strstr(r.err, "keeps what is done"), "nothing was started that a re-run would continue:\n%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}

static bool work_has(const char *name) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", itest_path("work"), name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* The repo download starts during preflight; a preflight that fails stops it at once (the
 * proxy holds every getRepo for 8 s) and leaves no file behind. */
Test(migrate, a_failed_preflight_stops_the_early_repo_download, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "pfc");
    json_object_set_new(seed, "password", json_string("definitely-not-the-password"));
    itest_proxy po;
    itest_proxy_start(&po, itest_str(itest_pds("old"), "url"),
                      "[{\"match\":\"com.atproto.sync.getRepo\",\"action\":\"delay\",\"ms\":8000,\"count\":10}]");
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--yes", NULL};
    migrate_argv(argv, seed, po.url, itest_str(itest_pds("new"), "url"), itest_path("journal.sqlite"), true, extra);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    itest_result r = itest_runv(argv);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    itest_proxy_stop(&po);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "wrong handle/DID or password"), "%s", r.err);
    cr_assert_lt(took, 6.0, "the failed preflight waited %.1f s for the repo download", took);
    cr_assert(!work_has("repo.car.prefetch"), "the early download's file was left behind");
    itest_result_free(&r);
    json_decref(seed);
}

/* A deactivated account's repo is not served without its authentication: the early
 * (unauthenticated) download fails and the export downloads it with the session. */
Test(migrate, a_deactivated_source_account_is_exported_with_authentication, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "dea");
    const char *did = itest_str(seed, "did");
    char sp[600], out[600];
    snprintf(sp, sizeof sp, "%s", itest_path("seed-copy.json"));
    json_dump_file(seed, sp, 0);
    snprintf(out, sizeof out, "%s", itest_path("mutation.json"));
    itest_result r = itest_must(itest_script("mutate"), "--seed", sp, "--out", out, "--posts", "0", "--blobs", "0", "--edits",
                                "0", "--deletes", "0", "--deactivate", NULL);
    itest_result_free(&r);
    bool active = true;
    cr_assert(itest_pds_has_account(itest_str(itest_pds("old"), "url"), did, &active) && !active);

    /* its handle no longer resolves (the PDS answers HandleNotFound): name it by its DID */
    json_t *by_did = json_deep_copy(seed);
    json_object_set_new(by_did, "handle", json_string(did));
    const char *extra[] = {"--yes", NULL};
    r = run_migrate(by_did, itest_path("journal.sqlite"), extra);
    json_decref(by_did);
    cr_assert_eq(r.status, 0, "migrate failed:\n%s", r.err);
    cr_assert(strstr(r.err, "reading it with authentication"), "%s", r.err);
    cr_assert(strstr(r.err, "downloading the repository from"), "the export should have downloaded again:\n%s", r.err);
    cr_assert(strstr(r.err, "ok verify"), "%s", r.err);
    itest_result_free(&r);
    json_t *inv = json_object_get(seed, "inventory");
    cr_assert_eq(count_blobs(itest_str(itest_pds("new"), "url"), did), json_array_size(json_object_get(inv, "blobs")));
    json_decref(seed);
}

Test(migrate, dry_run_checks_and_changes_nothing, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "dry");
    const char *did = itest_str(seed, "did");
    const char *extra[] = {"--dry-run", NULL};
    itest_result r = run_migrate(seed, itest_path("journal.sqlite"), extra);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "dry run"), "%s", r.out);
    cr_assert(!work_has("repo.car.prefetch") && !work_has("snapshot"), "a dry run left files in the work directory");
    itest_result_free(&r);
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(itest_pds("old"), "url"), did);
    itest_result g = itest_run("curl", "-sS", "--fail", "-o", itest_path("old.car"), url, NULL);
    cr_assert_eq(g.status, 0, "after a dry run the old PDS must still serve the repo: %s", g.err);
    itest_result_free(&g);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.repo.describeRepo?repo=%s", itest_str(itest_pds("new"), "url"), did);
    cr_assert_null(get_json(url), "a dry run created the account on the new PDS");
    json_decref(seed);
}

/* ---- faults: a proxy (scripts/testbed/faultproxy) in front of each real PDS ---- */

Test(migrate, survives_5xx_rate_limits_and_dropped_connections, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "flt");
    itest_proxy po, pn;
    itest_proxy_start(&po, itest_str(itest_pds("old"), "url"),
                "[{\"match\":\"com.atproto.sync.getRepo\",\"action\":\"drop\",\"afterBytes\":300,\"count\":1},"
                "{\"match\":\"com.atproto.sync.getBlob\",\"action\":\"500\",\"count\":3},"
                "{\"match\":\"com.atproto.sync.listBlobs\",\"action\":\"503\",\"count\":1}]");
    itest_proxy_start(&pn, itest_str(itest_pds("new"), "url"),
                "[{\"match\":\"com.atproto.repo.uploadBlob\",\"action\":\"429\",\"count\":2,\"reset\":1},"
                "{\"match\":\"com.atproto.repo.importRepo\",\"action\":\"502\",\"count\":1}]");
    char journal[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--yes", "--jobs", "2", NULL};
    migrate_argv(argv, seed, po.url, pn.url, journal, true, extra);
    itest_result r = itest_runv(argv);
    itest_proxy_stop(&po);
    itest_proxy_stop(&pn);
    cr_assert_eq(r.status, 0, "migrate through faults failed:\n%s", r.err);
    cr_assert(strstr(r.err, "rate limited (HTTP 429); waiting"), "the 429 wait should be shown:\n%s", r.err);
    cr_assert(strstr(r.err, "ok verify"), "%s", r.err);
    itest_result_free(&r);
    json_t *inv = json_object_get(seed, "inventory");
    cr_assert_eq(count_blobs(itest_str(itest_pds("new"), "url"), itest_str(seed, "did")),
                 json_array_size(json_object_get(inv, "blobs")));
    json_decref(seed);
}

/* Slow blob downloads (a proxy delays each getBlob): the import is done long before the last
 * download, so the blobs already on disk are uploaded meanwhile. Each one must then be a
 * permanent blob of the new account (served by getBlob with its bytes), which it would not be
 * if it had been uploaded before the import indexed the records that use it. */
Test(migrate, blobs_on_disk_upload_while_the_rest_still_download, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "erl");
    const char *did = itest_str(seed, "did");
    json_t *blobs = json_object_get(json_object_get(seed, "inventory"), "blobs");
    itest_proxy po;
    itest_proxy_start(&po, itest_str(itest_pds("old"), "url"),
                      "[{\"match\":\"com.atproto.sync.getBlob\",\"action\":\"delay\",\"ms\":500,\"count\":1000}]");
    char journal[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--yes", "--jobs", "1", NULL};
    migrate_argv(argv, seed, po.url, itest_str(itest_pds("new"), "url"), journal, true, extra);
    itest_result r = itest_runv(argv);
    itest_proxy_stop(&po);
    cr_assert_eq(r.status, 0, "migrate failed:\n%s", r.err);
    const char *early = strstr(r.err, "already uploaded (the import was done)");
    cr_assert_not_null(early, "no blob was uploaded while others downloaded:\n%s", r.err);
    const char *n_at = early;
    while (n_at > r.err && n_at[-1] != ';') n_at--;
    long n = strtol(n_at + 1, NULL, 10);
    cr_assert(n >= 3 && (size_t)n < json_array_size(blobs), "early uploads: %ld of %zu\n%s", n, json_array_size(blobs), r.err);
    cr_assert(strstr(r.err, "ok verify"), "%s", r.err);
    itest_result_free(&r);

    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b) {
        char url[1024], path[600];
        snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getBlob?did=%s&cid=%s", itest_str(itest_pds("new"), "url"), did,
                 itest_str(b, "cid"));
        snprintf(path, sizeof path, "%s", itest_path("blob"));
        itest_fetch(url, path);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq((long long)st.st_size, (long long)json_integer_value(json_object_get(b, "size")), "blob %s",
                     itest_str(b, "cid"));
    }
    json_decref(seed);
}

/* Every download answered with one byte changed (same length): each is refused against its
 * CID (so none is uploaded), the journal names the mismatch, and a re-run through a proxy
 * that no longer corrupts finishes. */
Test(migrate, downloads_that_do_not_match_their_cid_are_refused_and_a_rerun_finishes, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "crp");
    const char *did = itest_str(seed, "did");
    itest_proxy po;
    itest_proxy_start(&po, itest_str(itest_pds("old"), "url"),
                      "[{\"match\":\"com.atproto.sync.getBlob\",\"action\":\"corrupt\",\"count\":100000}]");
    char journal[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--yes", NULL};
    migrate_argv(argv, seed, po.url, itest_str(itest_pds("new"), "url"), journal, true, extra);
    itest_result r = itest_runv(argv);
    itest_proxy_stop(&po);
    cr_assert_eq(r.status, 1, "corrupt downloads must stop the run:\n%s", r.err);
    cr_assert(strstr(r.err, "could not be downloaded"), "%s", r.err);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "status", "--journal", journal, NULL);
    cr_assert(strstr(r.out, "do not hash to its CID"), "status should name the mismatch:\n%s", r.out);
    itest_result_free(&r);

    itest_proxy_start_on(&po, itest_str(itest_pds("old"), "url"), "[]", po.port);
    r = itest_runv(argv);
    itest_proxy_stop(&po);
    cr_assert_eq(r.status, 0, "the re-run failed:\n%s", r.err);
    cr_assert(strstr(r.err, "ok verify"), "%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(count_blobs(itest_str(itest_pds("new"), "url"), did),
                 json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs")));
    json_decref(seed);
}

Test(migrate, email_2fa_code_is_asked_for_and_taken_from_a_file, .fini = teardown, .timeout = 120) {
    json_t *seed = itest_seed("old", "tfa");
    itest_proxy po; /* emulates PDS gatekeeper's email 2FA in front of the real old PDS */
    itest_proxy_start(&po, itest_str(itest_pds("old"), "url"),
                "[{\"match\":\"com.atproto.server.createSession\",\"action\":\"2fa\",\"token\":\"ABCDE-23456\",\"count\":1}]");
    char journal[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS];
    const char *dry[] = {"--dry-run", NULL};
    migrate_argv(argv, seed, po.url, itest_str(itest_pds("new"), "url"), journal, true, dry);
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "--auth-factor-token-file"), "the error should say how to give the code: %s", r.err);
    itest_result_free(&r);
    const char *code = write_file("code", "ABCDE-23456\n");
    char code_path[512];
    snprintf(code_path, sizeof code_path, "%s", code);
    const char *dry2[] = {"--dry-run", "--auth-factor-token-file", code_path, NULL};
    migrate_argv(argv, seed, po.url, itest_str(itest_pds("new"), "url"), journal, true, dry2);
    r = itest_runv(argv);
    itest_proxy_stop(&po);
    cr_assert_eq(r.status, 0, "with the code the login must work: %s", r.err);
    cr_assert(strstr(r.out, "dry run"), "%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

Test(migrate, rotation_key_way_signs_locally_and_puts_the_added_key_first, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "rot");
    const char *did = itest_str(seed, "did");
    /* The account's current rotation key is the old PDS's; a self-hoster holds it. */
    char keyfile[512], userkey[512];
    snprintf(keyfile, sizeof keyfile, "%s", write_file("pds-rotation.hex", itest_str(itest_pds("old"), "rotationKeyHex")));
    chmod(keyfile, 0600);
    snprintf(userkey, sizeof userkey, "%s", itest_path("user.key"));
    itest_result g = itest_must(itest_bin(), "key", "generate", "--out", userkey, NULL);
    const char *dk = strstr(g.out, "did:key:z");
    cr_assert_not_null(dk, "%s", g.out);
    char user_did_key[128];
    snprintf(user_did_key, sizeof user_did_key, "%.*s", (int)strcspn(dk, " \n\t)"), dk);
    itest_result_free(&g);

    char journal[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--rotation-key", keyfile, "--add-rotation-key", user_did_key, "--yes", NULL};
    migrate_argv(argv, seed, itest_str(itest_pds("old"), "url"), itest_str(itest_pds("new"), "url"), journal, false, extra);
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_null(strstr(r.err, "emailed"), "no email token in the key way: %s", r.err);
    itest_result_free(&r);
    json_t *data = plc_data(did);
    cr_assert_str_eq(plc_endpoint(data), itest_str(itest_pds("new"), "url"));
    json_t *keys = json_object_get(data, "rotationKeys");
    cr_assert_str_eq(json_string_value(json_array_get(keys, 0)), user_did_key, "the added key must be first");
    cr_assert_eq(json_array_size(keys), 2, "the user's key and the new PDS's key");
    json_decref(data);
    json_decref(seed);
}

/* Killed at each journal commit and run again: tests/integration/test_crashpoints.c. */

/* The safety archive is packed while the import runs, before the uploads; when an upload then
 * finds a local copy damaged (here: between two runs) and fetches it again, the archive is
 * packed again onto the same name, so the one kept holds the good bytes, and there is one. */
Test(migrate, a_damaged_local_blob_is_fetched_again_and_the_archive_packed_again, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "dmg");
    const char *did = itest_str(seed, "did");
    itest_proxy pn;
    itest_proxy_start_on(&pn, itest_str(itest_pds("new"), "url"),
                   "[{\"match\":\"com.atproto.repo.uploadBlob\",\"action\":\"500\",\"count\":100000}]", 0);
    int port = pn.port;
    char journal[512], archives[512], work[512];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    snprintf(archives, sizeof archives, "%s", itest_path("archives"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    const char *argv[ITEST_MAX_ARGS];
    const char *extra[] = {"--yes", "--keep-archive", archives, NULL};
    migrate_argv(argv, seed, itest_str(itest_pds("old"), "url"), pn.url, journal, true, extra);
    itest_result r = itest_runv(argv);
    itest_proxy_stop(&pn);
    cr_assert_eq(r.status, 1, "the uploads were refused, the run must stop:\n%s", r.err);
    cr_assert(strstr(r.err, "FAILED blobs"), "%s", r.err);
    itest_result_free(&r);
    char archive[1024];
    cr_assert_eq(count_archives(archives, archive, sizeof archive), 1, "packed after the downloads");

    /* damage one downloaded blob */
    char blobs[600];
    snprintf(blobs, sizeof blobs, "%s/snapshot/blobs", work);
    DIR *d = opendir(blobs);
    cr_assert_not_null(d, "no %s", blobs);
    struct dirent *de;
    char cid[200] = "";
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(cid, sizeof cid, "%s", de->d_name);
            break;
        }
    closedir(d);
    cr_assert(cid[0]);
    char victim[900];
    snprintf(victim, sizeof victim, "%s/%s", blobs, cid);
    FILE *f = fopen(victim, "r+");
    cr_assert_not_null(f);
    fputs("damaged bytes", f);
    fclose(f);

    /* the same new PDS URL again, without faults now */
    itest_proxy_start_on(&pn, itest_str(itest_pds("new"), "url"), "[]", port);
    r = itest_runv(argv);
    itest_proxy_stop(&pn);
    cr_assert_eq(r.status, 0, "the re-run failed:\n%s", r.err);
    cr_assert(strstr(r.err, "fetched again; the safety archive will be packed again"), "%s", r.err);
    itest_result_free(&r);

    /* one archive, and its copy of that blob is the good one (as the new PDS serves it) */
    cr_assert_eq(count_archives(archives, archive, sizeof archive), 1);
    char xdir[512], member[600], url[1024], good[600], got[900];
    snprintf(xdir, sizeof xdir, "%s", itest_path("x"));
    mkdir(xdir, 0700);
    r = itest_must("tar", "--zstd", "-xf", archive, "-C", xdir, NULL);
    itest_result_free(&r);
    const char *base = strrchr(archive, '/') + 1;
    snprintf(member, sizeof member, "%.*s", (int)(strlen(base) - strlen("-migrate.tar.zst")), base);
    snprintf(got, sizeof got, "%s/%s/blobs/%s", xdir, member, cid);
    snprintf(good, sizeof good, "%s", itest_path("good.blob"));
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getBlob?did=%s&cid=%s", itest_str(itest_pds("new"), "url"), did, cid);
    itest_fetch(url, good);
    r = itest_run("cmp", good, got, NULL);
    cr_assert_eq(r.status, 0, "the archive kept the damaged copy of %s: %s", cid, r.out);
    itest_result_free(&r);
    json_decref(seed);
}
