/* test_backup.c — `pdsmove backup` and `pdsmove verify` against the live testbed: a full
 * snapshot, a day of changes, an incremental snapshot that verifies as a complete repo with
 * the new record count; one damaged byte found and named (killed runs: test_crashpoints.c);
 * incremental runs list only the blobs since
 * the base (listBlobs?since=) yet keep blob-list.txt equal to the PDS's full listing, with and
 * without the local copy of the repo, unchanged, and when the PDS refuses `since`. */
#include <signal.h>

#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static itest_result run_backup(json_t *seed, const char *dir, bool with_password) {
    static char pw[512];
    snprintf(pw, sizeof pw, "%s", itest_path("pw"));
    FILE *f = fopen(pw, "w");
    fputs(itest_str(seed, "password"), f);
    fclose(f);
    chmod(pw, 0600); /* pdsmove refuses secret files others can read */
    const char *argv[ITEST_MAX_ARGS] = {itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds",
                                        itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), NULL, NULL, NULL};
    if (with_password) {
        argv[9] = "--password-file";
        argv[10] = pw;
    }
    return itest_runv(argv);
}

static size_t count_files(const char *dir, const char *suffix) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -1 '%s' 2>/dev/null | grep -c -- '%s$'", dir, suffix);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    if (p && fscanf(p, "%zu", &n) != 1) n = 0;
    if (p) pclose(p);
    return n;
}

Test(backup, full_then_incremental_verify_as_complete_repos, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "bak");
    char dir[512], snaps[600], mut[512];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
    itest_result r = run_backup(seed, dir, true);
    cr_assert_eq(r.status, 0, "full backup failed:\n%s", r.err);
    cr_assert(strstr(r.out, "(full)"), "%s", r.out);
    itest_result_free(&r);

    /* a day of changes: new posts with new images, edits, deletions */
    snprintf(mut, sizeof mut, "%s", itest_path("mutation.json"));
    char seed_path[512];
    snprintf(seed_path, sizeof seed_path, "%s", itest_path("seed-copy.json"));
    json_dump_file(seed, seed_path, 0);
    r = itest_must(itest_script("mutate"), "--seed", seed_path, "--out", mut, NULL);
    itest_result_free(&r);
    json_t *m = itest_load_json(mut);
    json_int_t total = json_integer_value(json_object_get(m, "total"));

    r = run_backup(seed, dir, false);
    cr_assert_eq(r.status, 0, "incremental backup failed:\n%s", r.err);
    cr_assert(strstr(r.out, "(incremental)"), "%s", r.out);
    cr_assert(strstr(r.out, "2 new"), "the two new blobs, and only them, are stored: %s", r.out);
    itest_result_free(&r);
    cr_assert_eq(count_files(snaps, "-full.tar.zst"), 1);
    cr_assert_eq(count_files(snaps, "-incr.tar.zst"), 1);

    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "verify failed:\n%s", r.err);
    cr_assert(itest_line_has(r.err, "chain of 2", total), "the incremental snapshot must assemble to %lld records:\n%s",
              (long long)total, r.err);
    itest_result_free(&r);

    /* the index is a cache: lost, it is made again from the archives alone */
    char idx[700];
    snprintf(idx, sizeof idx, "%s/index.sqlite", dir);
    cr_assert_eq(unlink(idx), 0);
    r = itest_run(itest_bin(), "verify", dir, "--rebuild-index", NULL);
    cr_assert_eq(r.status, 0, "verify --rebuild-index failed:\n%s", r.err);
    cr_assert(strstr(r.err, "index rebuilt from 2 archive(s)"), "%s", r.err);
    cr_assert(itest_line_has(r.err, "chain of 2", total), "after the rebuild:\n%s", r.err);
    itest_result_free(&r);

    /* one damaged byte in the incremental archive: found and named */
    char find[700];
    snprintf(find, sizeof find, "ls -1 '%s'/*-incr.tar.zst", snaps);
    FILE *p = popen(find, "r");
    char archive[700] = "";
    cr_assert_not_null(fgets(archive, sizeof archive, p));
    pclose(p);
    archive[strcspn(archive, "\n")] = 0;
    int fd = open(archive, O_RDWR);
    struct stat st;
    fstat(fd, &st);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, st.st_size / 2), 1);
    c ^= 0x01;
    cr_assert_eq(pwrite(fd, &c, 1, st.st_size / 2), 1);
    close(fd);
    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 1, "verify must fail on a damaged archive:\n%s", r.err);
    const char *base = strrchr(archive, '/') + 1;
    cr_assert(strstr(r.err, base), "the error must name the damaged archive %s:\n%s", base, r.err);
    cr_assert(strstr(r.err, "1 of 2 snapshot(s) are damaged"), "%s", r.err);
    itest_result_free(&r);
    json_decref(m);
    json_decref(seed);
}

/* Killed at each journal commit, re-run, no half archive listed: tests/integration/test_crashpoints.c. */

/* ---- incremental blob listing: listBlobs?since= for what to fetch, the list from the repo ---- */

/* The PDS's full listBlobs of the seeded account: one CID per line, in its order. */
static char *full_listing(json_t *seed) {
    char url[1024], path[600];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", itest_str(itest_pds("old"), "url"),
             itest_str(seed, "did"));
    snprintf(path, sizeof path, "%s", itest_path("listBlobs.json"));
    itest_fetch(url, path);
    json_t *j = itest_load_json(path);
    json_t *cids = json_object_get(j, "cids");
    cr_assert(json_is_array(cids) && json_array_size(cids) < 1000, "one page of listBlobs expected");
    size_t cap = 64 * (json_array_size(cids) + 1), len = 0, i;
    char *out = calloc(1, cap);
    json_t *v;
    json_array_foreach(cids, i, v) len += (size_t)snprintf(out + len, cap - len, "%s\n", json_string_value(v));
    json_decref(j);
    return out;
}

/* A backup run that must succeed; *archive gets the archive path from its result line. */
static itest_result backup_ok(json_t *seed, const char *dir, char *archive, size_t size) {
    itest_result r = run_backup(seed, dir, false);
    cr_assert_eq(r.status, 0, "backup failed:\n%s\n%s", r.out, r.err);
    const char *p = strstr(r.out, "; ");
    cr_assert_not_null(p, "%s", r.out);
    p += 2;
    size_t n = strcspn(p, " ");
    cr_assert_lt(n, size);
    memcpy(archive, p, n);
    archive[n] = 0;
    return r;
}

/* One file of an archive (its top directory is the snapshot id). */
static char *archive_file(const char *archive, const char *name) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "*/%s", name);
    itest_result r = itest_must("tar", "--zstd", "-xOf", archive, "--wildcards", pattern, NULL);
    free(r.err);
    return r.out;
}

/* The blobs an archive stores: their CIDs, sorted, one per line. */
static char *archive_blobs(const char *archive) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "tar --zstd -tf '%s' | grep '/blobs/.' | sed 's|.*/blobs/||' | LC_ALL=C sort", archive);
    itest_result r = itest_must("sh", "-c", cmd, NULL);
    free(r.err);
    return r.out;
}

static char *sorted_lines(json_t *blobs) {
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s", itest_path("want-blobs.txt"));
    FILE *f = fopen(path, "w");
    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b) fprintf(f, "%s\n", itest_str(b, "cid"));
    fclose(f);
    snprintf(cmd, sizeof cmd, "LC_ALL=C sort '%s'", path);
    itest_result r = itest_must("sh", "-c", cmd, NULL);
    free(r.err);
    return r.out;
}

/* Deletes the oldest post that has an image (as the account): its blob stops being referenced. */
static void delete_post_with_image(json_t *seed) {
    const char *pds = itest_str(itest_pds("old"), "url");
    char url[1024], body[1024], auth[4096], path[600];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", pds);
    snprintf(body, sizeof body, "{\"identifier\":\"%s\",\"password\":\"%s\"}", itest_str(seed, "did"), itest_str(seed, "password"));
    itest_result r = itest_must("curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json", "-d", body, url, NULL);
    json_t *s = json_loads(r.out, 0, NULL);
    cr_assert_not_null(s, "%s", r.out);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", itest_str(s, "accessJwt"));
    itest_result_free(&r);
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.repo.listRecords?repo=%s&collection=app.bsky.feed.post&limit=100&reverse=true", pds,
             itest_str(seed, "did"));
    snprintf(path, sizeof path, "%s", itest_path("posts.json"));
    itest_fetch(url, path);
    json_t *posts = itest_load_json(path);
    const char *rkey = NULL;
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(posts, "records"), i, rec) {
        json_t *embed = json_object_get(json_object_get(rec, "value"), "embed");
        if (json_array_size(json_object_get(embed, "images")) > 0) {
            rkey = strrchr(itest_str(rec, "uri"), '/') + 1;
            break;
        }
    }
    cr_assert_not_null(rkey, "the seed has no post with an image");
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.repo.deleteRecord", pds);
    snprintf(body, sizeof body, "{\"repo\":\"%s\",\"collection\":\"app.bsky.feed.post\",\"rkey\":\"%s\"}", itest_str(seed, "did"),
             rkey);
    r = itest_must("curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json", "-H", auth, "-d", body, url, NULL);
    itest_result_free(&r);
    json_decref(posts);
    json_decref(s);
}

/* The records of the account now, counted by `pdsmove car verify` on the PDS's getRepo. */
static long long pds_records(json_t *seed) {
    char url[1024], path[600];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepo?did=%s", itest_str(itest_pds("old"), "url"), itest_str(seed, "did"));
    snprintf(path, sizeof path, "%s", itest_path("getRepo.car"));
    itest_fetch(url, path);
    itest_result r = itest_must(itest_bin(), "car", "verify", path, NULL);
    const char *p = strstr(r.out, "records:");
    cr_assert_not_null(p, "no record count from car verify:\n%s", r.out);
    long long n = strtoll(p + strlen("records:"), NULL, 10);
    itest_result_free(&r);
    return n;
}

/* repo.records of the archive's manifest.json */
static long long manifest_records(const char *archive) {
    char *text = archive_file(archive, "manifest.json");
    json_t *man = json_loads(text, 0, NULL);
    cr_assert_not_null(man, "manifest.json of %s: %s", archive, text);
    json_t *rec = json_object_get(json_object_get(man, "repo"), "records");
    cr_assert(json_is_integer(rec), "no repo.records in %s", text);
    long long n = (long long)json_integer_value(rec);
    json_decref(man);
    free(text);
    return n;
}

static json_t *mutate_seed(json_t *seed, const char *tag) {
    char sp[600], out[600], name[64];
    snprintf(sp, sizeof sp, "%s", itest_path("seed-copy.json"));
    json_dump_file(seed, sp, 0);
    snprintf(name, sizeof name, "mutation-%s.json", tag);
    snprintf(out, sizeof out, "%s", itest_path(name));
    itest_result r = itest_must(itest_script("mutate"), "--seed", sp, "--out", out, NULL);
    itest_result_free(&r);
    return itest_load_json(out);
}

Test(backup, incremental_lists_blobs_since_the_base_and_keeps_the_complete_list, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "bls");
    char dir[512], archive[1400], cache[700];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    itest_result r = backup_ok(seed, dir, archive, sizeof archive);
    cr_assert(strstr(r.err, "listed in full by listBlobs"), "a full run lists every blob:\n%s", r.err);
    itest_result_free(&r);
    char *want = full_listing(seed), *got = archive_file(archive, "blob-list.txt");
    cr_assert_str_eq(got, want, "the full snapshot's blob list");
    char *first_list = got;
    free(want);

    /* a day of changes, and a post with an image deleted: its blob leaves the list */
    json_t *m = mutate_seed(seed, "1");
    delete_post_with_image(seed);
    r = backup_ok(seed, dir, archive, sizeof archive);
    cr_assert(strstr(r.out, "(incremental)"), "%s", r.out);
    cr_assert(strstr(r.err, "listed since rev"), "the run must list only the blobs since the base's rev:\n%s", r.err);
    cr_assert(strstr(r.err, "computed from the repo: the local copy of the base's repo"), "%s", r.err);
    cr_assert_null(strstr(r.err, "listed in full"), "no full listing in an incremental run:\n%s", r.err);
    itest_result_free(&r);
    want = full_listing(seed);
    got = archive_file(archive, "blob-list.txt");
    cr_assert_str_eq(got, want, "the incremental snapshot's blob list must be the PDS's full listing");
    /* the whole repo was walked for that list: the manifest has its real record count */
    long long want_records = pds_records(seed);
    cr_assert_gt(want_records, 0);
    cr_assert_eq(manifest_records(archive), want_records, "manifest repo.records of the incremental snapshot");
    /* the deleted post's image is gone from the list: a line of the first list is not in it */
    bool dropped = false;
    for (char *line = strtok(first_list, "\n"); line && !dropped; line = strtok(NULL, "\n")) dropped = !strstr(got, line);
    cr_assert(dropped, "the blob of the deleted post must leave the list:\n%s", got);
    free(first_list);
    free(want);
    free(got);
    want = sorted_lines(json_object_get(m, "newBlobs"));
    got = archive_blobs(archive);
    cr_assert_str_eq(got, want, "the incremental archive stores exactly the new blobs:\n%s\nwant:\n%s", got, want);
    cr_assert_eq(strlen(want), 2 * 60, "two new blobs: %s", want);
    free(want);
    free(got);
    json_decref(m);

    /* without the local copy of the repo: rebuilt from the chain's archives, same result */
    char *rest = NULL;
    m = mutate_seed(seed, "2");
    snprintf(cache, sizeof cache, "%s/cache", dir);
    r = itest_must("sh", "-c", "rm -f \"$0\"/*.repo.car", cache, NULL);
    itest_result_free(&r);
    r = backup_ok(seed, dir, archive, sizeof archive);
    cr_assert(strstr(r.err, "rebuilding it from the chain's archives"), "%s", r.err);
    cr_assert(strstr(r.err, "listed since rev"), "%s", r.err);
    cr_assert_null(strstr(r.err, "listed in full"), "%s", r.err);
    itest_result_free(&r);
    want = full_listing(seed);
    got = archive_file(archive, "blob-list.txt");
    cr_assert_str_eq(got, want, "after the rebuild from the archives");
    want_records = pds_records(seed);
    cr_assert_eq(manifest_records(archive), want_records, "repo.records with the repo assembled from the archives");
    free(want);
    free(got);
    want = sorted_lines(json_object_get(m, "newBlobs"));
    got = archive_blobs(archive);
    cr_assert_str_eq(got, want, "the second incremental archive stores exactly its new blobs:\n%s\nwant:\n%s", got, want);
    free(want);
    free(got);
    json_decref(m);

    /* unchanged: no listing at all, the base's list again, nothing downloaded */
    r = backup_ok(seed, dir, archive, sizeof archive);
    cr_assert(strstr(r.out, "repo unchanged"), "%s", r.out);
    cr_assert(strstr(r.out, " 0 new"), "%s", r.out);
    cr_assert(strstr(r.err, "repo unchanged: nothing listed"), "%s", r.err);
    cr_assert_null(strstr(r.err, "listed in full"), "%s", r.err);
    cr_assert_null(strstr(r.err, "listed since"), "%s", r.err);
    itest_result_free(&r);
    want = full_listing(seed);
    got = archive_file(archive, "blob-list.txt");
    cr_assert_str_eq(got, want, "the unchanged snapshot's blob list");
    cr_assert_eq(manifest_records(archive), want_records, "an unchanged snapshot has its base's record count");
    rest = archive_blobs(archive);
    cr_assert_str_eq(rest, "", "an unchanged snapshot stores no blob");
    free(rest);
    free(want);
    free(got);

    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "verify failed:\n%s", r.err);
    /* verify's own count of the assembled newest snapshot agrees, and the index has it too */
    cr_assert(itest_line_has(r.err, "chain of 4", want_records), "verify counts %lld records:\n%s", want_records, r.err);
    itest_result_free(&r);
    char q[1400];
    snprintf(q, sizeof q, "sqlite3 '%s/index.sqlite' \"SELECT records FROM snapshot WHERE incremental = 1 ORDER BY created_at, id\"", dir);
    r = itest_must("sh", "-c", q, NULL);
    long long a = -2, b = -2, c = -2;
    cr_assert_eq(sscanf(r.out, "%lld %lld %lld", &a, &b, &c), 3, "%s", r.out);
    cr_assert(a > 0 && b == want_records && c == want_records, "index records of the incremental snapshots: %s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

/* A PDS that refuses listBlobs?since= (here: 503 until the retries are spent, through
 * scripts/testbed/faultproxy): the run says so, lists every blob instead, and the snapshot is
 * the same as with `since`. Slow (~30 s): the client's retry back-off runs out first. */
Test(backup, refused_since_falls_back_to_a_full_listing, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "blf");
    char dir[512], archive[1400], rev[64], rules[256];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    itest_result r = backup_ok(seed, dir, archive, sizeof archive);
    const char *p = strstr(r.err, ", rev "); /* "…, rev <rev>, signature valid" */
    cr_assert_not_null(p, "%s", r.err);
    p += strlen(", rev ");
    size_t n = strcspn(p, ",");
    cr_assert(n > 0 && n < sizeof rev, "%s", r.err);
    memcpy(rev, p, n);
    rev[n] = 0;
    itest_result_free(&r);
    json_decref(mutate_seed(seed, "1"));

    /* only the listing since the rev carries "<rev>&limit=" (getRepo?since= has no limit) */
    snprintf(rules, sizeof rules, "[{\"match\":\"since=%s&limit=\",\"action\":\"503\",\"count\":1000}]", rev);
    itest_proxy proxy;
    itest_proxy_start(&proxy, itest_str(itest_pds("old"), "url"), rules);
    const char *argv[] = {itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds", proxy.url,
                          "--plc-url", itest_plc_url(), NULL};
    r = itest_runv(argv);
    itest_proxy_stop(&proxy);
    cr_assert_eq(r.status, 0, "backup through the proxy failed:\n%s\n%s", r.out, r.err);
    char said[128];
    snprintf(said, sizeof said, "listBlobs since rev %s failed", rev);
    cr_assert(strstr(r.err, said), "the run must say that `since` failed:\n%s", r.err);
    cr_assert(strstr(r.err, "listed in full by listBlobs; the list computed from the repo"), "%s", r.err);
    cr_assert(strstr(r.out, "(incremental)") && strstr(r.out, ", 2 new"), "%s", r.out);
    p = strstr(r.out, "; ");
    cr_assert_not_null(p);
    n = strcspn(p + 2, " ");
    memcpy(archive, p + 2, n);
    archive[n] = 0;
    itest_result_free(&r);
    char *want = full_listing(seed), *got = archive_file(archive, "blob-list.txt");
    cr_assert_str_eq(got, want, "the blob list after the fallback");
    free(want);
    free(got);
    json_decref(seed);
}

/* One file of the newest archive in dir/snapshots (parsed as JSON, owned), NULL if absent. */
static json_t *newest_archive_json(const char *dir, const char *name) {
    char cmd[1600], out[600];
    snprintf(out, sizeof out, "%s", itest_path("extracted.json"));
    unlink(out);
    snprintf(cmd, sizeof cmd, "a=$(ls -1t '%s'/snapshots/*.tar.zst | head -n 1) && tar --zstd -xOf \"$a\" --wildcards '*/%s' > '%s' 2>/dev/null",
             dir, name, out);
    if (system(cmd) != 0) return NULL;
    return itest_load_json(out);
}

/* Whether preferences.json (a getPreferences answer) holds a preference of type t. */
static bool has_pref(json_t *prefs, const char *t) {
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(prefs, "preferences"), i, p)
        if (!strcmp(json_string_value(json_object_get(p, "$type")) ? json_string_value(json_object_get(p, "$type")) : "", t)) return true;
    return false;
}

/* Nightly backups need no main password: an app password reads the preferences too, all but
 * the birth date (the reference PDS keeps personalDetailsPref from app passwords); the output
 * says so and the manifest records which kind of credential read each snapshot. */
Test(backup, an_app_password_saves_the_preferences_but_the_birth_date_and_the_manifest_says_so, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "bap");
    const char *pds = itest_str(itest_pds("old"), "url"), *did = itest_str(seed, "did"), *password = itest_str(seed, "password");
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", pds);
    json_t *body = json_pack("{s:s, s:s}", "identifier", did, "password", password);
    json_t *sess = itest_xrpc_post(url, NULL, body);
    json_decref(body);
    snprintf(url, sizeof url, "%s/xrpc/app.bsky.actor.putPreferences", pds);
    body = json_pack("{s:[{s:s, s:s}, {s:s, s:b}]}", "preferences", "$type", "app.bsky.actor.defs#personalDetailsPref", "birthDate",
                     "1990-01-01T00:00:00.000Z", "$type", "app.bsky.actor.defs#adultContentPref", "enabled", 0);
    json_decref(itest_xrpc_post(url, itest_str(sess, "accessJwt"), body));
    json_decref(body);
    json_decref(sess);
    char *app_pw = itest_create_app_password(pds, did, password);

    char dir[512], pwfile[600];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    snprintf(pwfile, sizeof pwfile, "%s", itest_write_file("app-pw", app_pw));
    itest_result r = itest_run(itest_bin(), "backup", did, "--to", dir, "--pds", pds, "--plc-url", itest_plc_url(), "--password-file",
                               pwfile, NULL);
    cr_assert_eq(r.status, 0, "backup with an app password failed:\n%s", r.err);
    cr_assert(strstr(r.out, "read with an app password") && strstr(r.out, "birth date"), "the output says what it leaves out:\n%s", r.out);
    cr_assert(strstr(r.err, "preferences (app password: the PDS leaves out the birth date)"), "%s", r.err);
    cr_assert_null(strstr(r.out, app_pw), "the app password is printed");
    cr_assert_null(strstr(r.err, app_pw), "the app password is printed");
    itest_result_free(&r);
    json_t *man = newest_archive_json(dir, "manifest.json"), *prefs = newest_archive_json(dir, "preferences.json");
    cr_assert_not_null(man);
    cr_assert_str_eq(itest_str(man, "credential"), "app-password");
    cr_assert_not_null(prefs, "an app password saves the preferences");
    cr_assert(has_pref(prefs, "app.bsky.actor.defs#adultContentPref"), "the other preferences are there");
    cr_assert_not(has_pref(prefs, "app.bsky.actor.defs#personalDetailsPref"), "the PDS gave the birth date to an app password?");
    json_decref(man);
    json_decref(prefs);

    /* the account's password: the birth date too */
    snprintf(pwfile, sizeof pwfile, "%s", itest_write_file("pw", password));
    r = itest_run(itest_bin(), "backup", did, "--to", dir, "--full", "--pds", pds, "--plc-url", itest_plc_url(), "--password-file", pwfile,
                  NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_null(strstr(r.out, "app password"), "%s", r.out);
    cr_assert(strstr(r.err, "hint: an app password is enough for backups"), "the main password draws the hint:\n%s", r.err);
    itest_result_free(&r);
    man = newest_archive_json(dir, "manifest.json");
    prefs = newest_archive_json(dir, "preferences.json");
    cr_assert_str_eq(itest_str(man, "credential"), "password");
    cr_assert(has_pref(prefs, "app.bsky.actor.defs#personalDetailsPref"), "the password reads the birth date");
    json_decref(man);
    json_decref(prefs);

    /* none: public data only */
    r = itest_run(itest_bin(), "backup", did, "--to", dir, "--full", "--pds", pds, "--plc-url", itest_plc_url(), NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    itest_result_free(&r);
    man = newest_archive_json(dir, "manifest.json");
    cr_assert_str_eq(itest_str(man, "credential"), "none");
    cr_assert_null(newest_archive_json(dir, "preferences.json"), "no preferences without a password");
    json_decref(man);
    free(app_pw);
    json_decref(seed);
}
