/* test_versions.c — pdsmove against an older reference PDS release: the testbed's PDS "v04"
 * runs @atproto/pds 0.4.x (scripts/testbed/pds-0.4, on Node 20), the others the current line.
 * A move from 0.4 to the current release, one back from the current release to 0.4, and a
 * backup taken from 0.4 restored onto the current release the disaster way (--rotation-key),
 * each checked from the outside: the record sets compared from the CARs (`pdsmove car ls`;
 * 0.4's listRecords misses some collections, the CAR has them all), every blob by CID, the
 * DID document, the old account deactivated. One fresh account per test. */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

/* The PDS "v04" of the testbed, after checking it really runs the 0.4 line (borrowed). */
static json_t *v04(void) {
    json_t *p = itest_pds("v04");
    const char *v = itest_str(p, "pdsVersion");
    cr_assert(!strncmp(v, "0.4.", 4), "the testbed's PDS v04 runs @atproto/pds %s, not 0.4.x", v);
    cr_assert_str_eq(itest_str(p, "version"), "0.4");
    return p;
}

/* The current-line PDS `name`, checked to be no 0.4 one (borrowed). */
static json_t *current(const char *name) {
    json_t *p = itest_pds(name);
    cr_assert_str_eq(itest_str(p, "version"), "current", "PDS %s", name);
    cr_assert(strncmp(itest_str(p, "pdsVersion"), "0.4.", 4), "PDS %s runs 0.4", name);
    return p;
}

/* `pdsmove car ls` of did's repository on pds_url, fetched into `file` (owned string). */
static char *car_listing(const char *pds_url, const char *did, const char *file) {
    char url[1024], path[600];
    snprintf(path, sizeof path, "%s", itest_path(file));
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", pds_url, did);
    itest_fetch(url, path);
    itest_result v = itest_run(itest_bin(), "car", "verify", path, NULL);
    cr_assert_eq(v.status, 0, "car verify of %s's repo on %s: %s", did, pds_url, v.err);
    itest_result_free(&v);
    itest_result r = itest_must(itest_bin(), "car", "ls", path, NULL);
    char *out = r.out;
    r.out = NULL;
    itest_result_free(&r);
    return out;
}

/* The listing holds exactly what the seed made: its total and each collection's count. */
static void assert_listing_is_seed(const char *listing, json_t *inv) {
    size_t lines = 0;
    for (const char *p = listing; (p = strchr(p, '\n')); p++) lines++;
    cr_assert_eq(lines, (size_t)json_integer_value(json_object_get(inv, "total")), "records in the CAR:\n%s", listing);
    const char *coll;
    json_t *n;
    json_object_foreach(json_object_get(inv, "records"), coll, n) {
        char want[300];
        snprintf(want, sizeof want, "%s/", coll);
        size_t got = 0;
        for (const char *p = listing; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (!strncmp(p, want, strlen(want))) got++;
        cr_assert_eq(got, (size_t)json_integer_value(n), "records of %s in the CAR:\n%s", coll, listing);
    }
}

/* Every blob the seed uploaded is on pds_url for did (by CID), and no other. */
static void assert_blobs_are_seed(const char *pds_url, const char *did, json_t *inv) {
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", pds_url, did);
    json_t *j = itest_get_json(url);
    cr_assert_not_null(j, "listBlobs on %s failed", pds_url);
    json_t *cids = json_object_get(j, "cids"), *want = json_object_get(inv, "blobs");
    cr_assert_eq(json_array_size(cids), json_array_size(want), "blobs on %s", pds_url);
    size_t i, k;
    json_t *b, *c;
    json_array_foreach(want, i, b) {
        bool found = false;
        json_array_foreach(cids, k, c) found = found || !strcmp(json_string_value(c), itest_str(b, "cid"));
        cr_assert(found, "blob %s is not on %s", itest_str(b, "cid"), pds_url);
    }
    json_decref(j);
}

/* The DID document names to_url as the PDS and a handle under its domain. */
static void assert_did_points_at(const char *did, json_t *to) {
    char *ep = itest_plc_pds(itest_plc_url(), did);
    cr_assert_str_eq(ep, itest_str(to, "url"));
    free(ep);
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", itest_plc_url(), did);
    json_t *d = itest_get_json(url);
    cr_assert_not_null(d);
    const char *aka = json_string_value(json_array_get(json_object_get(d, "alsoKnownAs"), 0));
    const char *dom = itest_str(to, "handleDomain");
    cr_assert(aka && strlen(aka) > strlen(dom) && !strcmp(aka + strlen(aka) - strlen(dom), dom),
              "the DID document's handle %s is not under %s", aka ? aka : "(none)", dom);
    json_decref(d);
}

/* The end state on `to` after a move or restore of did: the same records (keys and CIDs) as
 * `before` (the source's `car ls`), every seeded blob, the DID document, an active account. */
static void assert_arrived(const char *before, json_t *to, const char *did, json_t *inv) {
    char *after = car_listing(itest_str(to, "url"), did, "arrived.car");
    cr_assert_str_eq(after, before, "the records (keys and CIDs) on %s differ from the source's", itest_str(to, "url"));
    free(after);
    assert_blobs_are_seed(itest_str(to, "url"), did, inv);
    assert_did_points_at(did, to);
    bool active = false;
    cr_assert(itest_pds_has_account(itest_str(to, "url"), did, &active) && active, "the account on %s is not active",
              itest_str(to, "url"));
}

/* Seeds an account on `from`, moves it to `to` with `pdsmove migrate` (the email token from
 * the old PDS's database) and checks the end state from the outside. */
static void migrate_and_check(json_t *from, json_t *to, const char *prefix) {
    json_t *seed = itest_seed_on(itest_testbed_path(), itest_str(from, "name"), prefix, NULL);
    const char *did = itest_str(seed, "did");
    json_t *inv = json_object_get(seed, "inventory");
    char *before = car_listing(itest_str(from, "url"), did, "old.car");
    assert_listing_is_seed(before, inv);

    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--yes", "--plc-token-from-db", itest_str(from, "accountDb"), NULL};
    char journal[600];
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    itest_migrate_argv(argv, seed, NULL, itest_str(from, "url"), itest_str(to, "url"), itest_plc_url(), journal, extra);
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "migrate %s -> %s failed:\n%s\n%s", itest_str(from, "pdsVersion"), itest_str(to, "pdsVersion"),
                 r.out, r.err);
    cr_assert(strstr(r.out, "moved did:plc:"), "report: %s", r.out);
    cr_assert(strstr(r.err, "ok verify"), "progress: %s", r.err);
    itest_result_free(&r);

    assert_arrived(before, to, did, inv);
    bool active = true;
    cr_assert(itest_pds_has_account(itest_str(from, "url"), did, &active), "the old PDS lost the account");
    cr_assert(!active, "the old account is still active");
    free(before);
    json_decref(seed);
}

Test(versions, migrate_from_0_4_to_current, .fini = teardown, .timeout = 300) {
    migrate_and_check(v04(), current("new"), "up");
}

Test(versions, migrate_from_current_to_0_4, .fini = teardown, .timeout = 300) {
    migrate_and_check(current("old"), v04(), "down");
}

/* A self-hoster's 0.4 server is backed up nightly, then lost: the account comes back on a
 * current-release PDS from the backup with the rotation key (here the 0.4 PDS's own, which is
 * among every account's rotation keys on the testbed). */
Test(versions, backup_from_0_4_restores_onto_current, .fini = teardown, .timeout = 300) {
    json_t *old = v04(), *neu = current("new");
    const char *plc = itest_plc_url();
    json_t *seed = itest_seed_on(itest_testbed_path(), "v04", "bk", NULL);
    const char *did = itest_str(seed, "did");
    json_t *inv = json_object_get(seed, "inventory");
    char *before = car_listing(itest_str(old, "url"), did, "old.car");
    assert_listing_is_seed(before, inv);

    char bk[600], pw[600], key[600], newpw[600], journal[600], work[600];
    snprintf(bk, sizeof bk, "%s", itest_path("backups"));
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", itest_str(seed, "password")));
    snprintf(key, sizeof key, "%s", itest_write_file("rotation.hex", itest_str(old, "rotationKeyHex")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw", "restored from 0.4"));
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    itest_result r = itest_run(itest_bin(), "backup", did, "--to", bk, "--pds", itest_str(old, "url"), "--plc-url", plc,
                               "--password-file", pw, NULL);
    cr_assert_eq(r.status, 0, "backup from 0.4 failed:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);
    r = itest_run(itest_bin(), "verify", bk, NULL);
    cr_assert_eq(r.status, 0, "verify of the backup from 0.4:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);

    r = itest_run(itest_bin(), "restore", bk, "--did", did, "--to", itest_str(neu, "url"), "--rotation-key", key, "--new-email",
                  itest_str(seed, "email"), "--new-password-file", newpw, "--plc-url", plc, "--journal", journal, "--work-dir",
                  work, "--yes", NULL);
    cr_assert_eq(r.status, 0, "restore of the 0.4 backup onto %s failed:\n%s\n%s", itest_str(neu, "pdsVersion"), r.out, r.err);
    cr_assert(strstr(r.err, "tree root identical to the snapshot"), "%s", r.err);
    itest_result_free(&r);

    assert_arrived(before, neu, did, inv);
    free(before);
    json_decref(seed);
}

/* The current line publishes its blob limit in describeServer (blobUploadLimit; 0.4 does
 * not): a restore onto a PDS whose limit a snapshot's blob exceeds is refused before anything
 * changes — no PLC operation, no account — instead of failing at the upload, halfway through.
 * On the second testbed (PDSMOVE_TESTBED_STRICT): its PDS "strict" has a 1 MB limit. */
Test(versions, restore_refuses_a_blob_over_the_published_limit_before_any_change, .fini = teardown, .timeout = 300) {
    json_t *tb = itest_testbed_strict();
    json_t *old = itest_pds_of(tb, "old"), *strict = itest_pds_of(tb, "strict");
    const char *plc = itest_str(json_object_get(tb, "plc"), "url");
    json_int_t limit = itest_int(strict, "blobLimit");
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.describeServer", itest_str(strict, "url"));
    json_t *desc = itest_get_json(url);
    cr_assert_not_null(desc);
    cr_assert_eq(itest_int(desc, "blobUploadLimit"), limit, "PDS strict does not publish its blob limit");
    json_decref(desc);

    json_t *seed = itest_seed_on(itest_strict_path(), "old", "rlim", NULL); /* blobs up to 5 MiB */
    const char *did = itest_str(seed, "did");
    size_t over = 0, i;
    json_t *bl;
    json_array_foreach(json_object_get(json_object_get(seed, "inventory"), "blobs"), i, bl) over += itest_int(bl, "size") > limit;
    cr_assert_gt(over, 0, "the seed has no blob over %lld bytes", (long long)limit);
    char bk[600], pw[600], key[600], newpw[600], admin[600], journal[600], work[600];
    snprintf(bk, sizeof bk, "%s", itest_path("backups"));
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", itest_str(seed, "password")));
    snprintf(key, sizeof key, "%s", itest_write_file("rotation.hex", itest_str(old, "rotationKeyHex")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw", "restored over the limit"));
    snprintf(admin, sizeof admin, "%s", itest_write_file("admin", itest_str(strict, "adminPassword")));
    snprintf(journal, sizeof journal, "%s", itest_path("journal.sqlite"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    itest_result r = itest_must(itest_bin(), "backup", did, "--to", bk, "--pds", itest_str(old, "url"), "--plc-url", plc,
                                "--password-file", pw, NULL);
    itest_result_free(&r);
    size_t ops = itest_plc_ops(plc, did);

    r = itest_run(itest_bin(), "restore", bk, "--did", did, "--to", itest_str(strict, "url"), "--rotation-key", key,
                  "--new-email", itest_str(seed, "email"), "--new-password-file", newpw, "--new-pds-admin-password-file", admin,
                  "--plc-url", plc, "--journal", journal, "--work-dir", work, "--yes", NULL);
    cr_assert_eq(r.status, 1, "a blob over the limit must stop the restore with exit 1, got %d:\n%s\n%s", r.status, r.out, r.err);
    char limit_text[32];
    snprintf(limit_text, sizeof limit_text, "%lld", (long long)limit);
    cr_assert(strstr(r.err, limit_text) && strstr(r.err, "PDS_BLOB_UPLOAD_LIMIT"), "the error should name the limit and what to raise:\n%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(itest_plc_ops(plc, did), ops, "the restore changed the DID's PLC log before refusing");
    char *ep = itest_plc_pds(plc, did);
    cr_assert_str_eq(ep, itest_str(old, "url"));
    free(ep);
    cr_assert(!itest_pds_has_account(itest_str(strict, "url"), did, NULL), "the restore created an account before refusing");
    json_decref(seed);
}
