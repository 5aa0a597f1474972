/* test_prune.c — `pdsmove prune` on real backups of a live testbed account: two full chains
 * (one whose archives store blobs the newest snapshots still have, one that stores none), a
 * snapshot whose archive was already unlinked by a killed prune; prune --keep-daily 1 removes
 * exactly the unneeded chain, `pdsmove verify` passes on what is left, and a second prune
 * finds nothing to do (exit 4). The DIR/cache/ files of an account without snapshots go (and
 * only those). The calendar rules are unit-tested (tests/test_prune.c). */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

/* Runs `pdsmove backup` (with --full when asked), checks the kind of snapshot it made (`kind`:
 * "full" or "incremental") and returns the new snapshot's id. */
static void backup(json_t *seed, const char *dir, bool full, const char *kind, char *id, size_t size) {
    const char *argv[ITEST_MAX_ARGS] = {itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds",
                                        itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), NULL, NULL};
    if (full) argv[9] = "--full";
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "backup%s failed (%d):\n%s\n%s", full ? " --full" : "", r.status, r.out, r.err);
    const char *p = strstr(r.out, "snapshot ");
    cr_assert_not_null(p, "no snapshot id in: %s", r.out);
    p += strlen("snapshot ");
    size_t n = strcspn(p, " ");
    cr_assert_lt(n, size);
    memcpy(id, p, n);
    id[n] = 0;
    char want[32];
    snprintf(want, sizeof want, "(%s", kind);
    cr_assert(strstr(r.out, want), "want a %s snapshot: %s", kind, r.out);
    itest_result_free(&r);
}

static void mutate(json_t *seed, const char *tag) {
    char sp[600], out[600], name[64];
    snprintf(sp, sizeof sp, "%s", itest_path("seed-copy.json"));
    json_dump_file(seed, sp, 0);
    snprintf(name, sizeof name, "mutation-%s.json", tag);
    snprintf(out, sizeof out, "%s", itest_path(name));
    itest_result r = itest_must(itest_script("mutate"), "--seed", sp, "--out", out, NULL);
    itest_result_free(&r);
}

/* The archive file of snapshot id in dir/snapshots ("" when there is none). */
static void archive_of(const char *dir, const char *id, char *out, size_t size) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls -1 '%s/snapshots' | grep -F -- '%s-' | grep -v -- '\\.tmp$'", dir, id);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    out[0] = 0;
    /* ids of snapshots made within the same second differ by a "-2" suffix: take the exact one */
    char line[700];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        const char *rest = line + strlen(id);
        if (!strncmp(line, id, strlen(id)) && (!strcmp(rest, "-full.tar.zst") || !strcmp(rest, "-incr.tar.zst") ||
                                               !strcmp(rest, "-full.tar.gz") || !strcmp(rest, "-incr.tar.gz")))
            snprintf(out, size, "%s/snapshots/%s", dir, line);
    }
    pclose(p);
}

static bool has_archive(const char *dir, const char *id) {
    char a[1400];
    archive_of(dir, id, a, sizeof a);
    return a[0] != 0;
}

/* The line prune printed for snapshot id (must exist). */
static const char *prune_line(const char *out, const char *id, char *line, size_t size) {
    for (const char *p = out; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), p);
        char key[400];
        snprintf(key, sizeof key, " %s  ", id);
        if (strstr(buf, key)) {
            snprintf(line, size, "%s", buf);
            return line;
        }
        p = end ? end + 1 : NULL;
    }
    cr_assert_fail("prune printed no line for %s:\n%s", id, out);
    return NULL;
}

Test(prune, keeps_the_newest_chain_and_what_it_needs_removes_the_rest, .fini = teardown, .timeout = 600) {
    json_t *seed = itest_seed("old", "prn");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    char f1[200], i2[200], f3[200], i4[200], f5[200], i6[200];
    backup(seed, dir, false, "full", f1, sizeof f1); /* chain A: stores the seeded blobs */
    mutate(seed, "1");
    backup(seed, dir, false, "incremental", i2, sizeof i2); /* chain A: stores the 2 new blobs */
    backup(seed, dir, true, "full", f3, sizeof f3);  /* chain B: full, stores no blob (all stored in A) */
    backup(seed, dir, false, "incremental", i4, sizeof i4); /* chain B: unchanged */
    backup(seed, dir, true, "full", f5, sizeof f5);  /* chain C: full, stores no blob */
    mutate(seed, "2");
    backup(seed, dir, false, "incremental", i6, sizeof i6); /* chain C: stores 2 more new blobs */
    const char *all[] = {f1, i2, f3, i4, f5, i6};
    for (size_t i = 0; i < 6; i++) cr_assert(has_archive(dir, all[i]), "no archive for %s", all[i]);

    /* a dry run says what would go and changes nothing */
    itest_result r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", "--dry-run", NULL);
    cr_assert_eq(r.status, 0, "dry run (%d):\n%s\n%s", r.status, r.out, r.err);
    char line[2048];
    cr_assert(strstr(prune_line(r.out, f3, line, sizeof line), "would remove"), "%s", r.out);
    cr_assert(strstr(r.out, "2 would be removed"), "%s", r.out);
    itest_result_free(&r);
    for (size_t i = 0; i < 6; i++) cr_assert(has_archive(dir, all[i]), "the dry run removed %s", all[i]);

    /* a killed prune: i4's archive unlinked, its index rows still there. The kept snapshot
     * verifies all the same (it needs nothing of chain B) */
    char a4[1400];
    archive_of(dir, i4, a4, sizeof a4);
    cr_assert_eq(unlink(a4), 0, "unlink %s: %s", a4, strerror(errno));
    r = itest_run(itest_bin(), "verify", dir, "--snapshot", i6, NULL);
    cr_assert_eq(r.status, 0, "verify of the newest snapshot with chain B half pruned:\n%s", r.err);
    itest_result_free(&r);

    r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", NULL);
    cr_assert_eq(r.status, 0, "prune (%d):\n%s\n%s", r.status, r.out, r.err);
    cr_assert(strstr(prune_line(r.out, i6, line, sizeof line), "kept (latest, daily)"), "%s", r.out);
    cr_assert(strstr(prune_line(r.out, f5, line, sizeof line), "needed by"), "%s", r.out);
    cr_assert(strstr(line, i6) && strstr(line, "builds on"), "%s", line);
    cr_assert(strstr(prune_line(r.out, f1, line, sizeof line), "needed by"), "chain A stores seeded blobs:\n%s", r.out);
    cr_assert(strstr(prune_line(r.out, i2, line, sizeof line), "needed by"), "chain A stores mutation blobs:\n%s", r.out);
    cr_assert(strstr(prune_line(r.out, f3, line, sizeof line), "removed"), "%s", r.out);
    cr_assert(strstr(prune_line(r.out, i4, line, sizeof line), "already gone"), "%s", r.out);
    cr_assert(strstr(r.out, "2 removed"), "%s", r.out);
    itest_result_free(&r);
    cr_assert_not(has_archive(dir, f3));
    cr_assert_not(has_archive(dir, i4));
    cr_assert(has_archive(dir, f1) && has_archive(dir, i2) && has_archive(dir, f5) && has_archive(dir, i6));

    /* every snapshot left (the kept one and those it needs) verifies, each assembled whole */
    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "verify after prune:\n%s", r.err);
    cr_assert(strstr(r.out, "4 snapshot(s)"), "%s", r.out);
    itest_result_free(&r);

    /* nothing more to do: exit 4, still nothing lost */
    r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", NULL);
    cr_assert_eq(r.status, 4, "a second prune must find nothing to do (%d):\n%s\n%s", r.status, r.out, r.err);
    itest_result_free(&r);

    /* and a backup after the prune still builds on the kept chain */
    char i7[200];
    backup(seed, dir, false, "incremental", i7, sizeof i7);
    r = itest_run(itest_bin(), "verify", dir, "--snapshot", i7, NULL);
    cr_assert_eq(r.status, 0, "verify of a backup made after prune:\n%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs("x", f);
    fclose(f);
}

static void safe_did(json_t *seed, char *out, size_t size) {
    snprintf(out, size, "%s", itest_str(seed, "did"));
    for (char *q = out; *q; q++)
        if (*q == ':' || *q == '/') *q = '_';
}

/* An account's newest snapshot is always kept, so prune never leaves one without snapshots;
 * an account without any (its archives taken away by hand, a first run that never finished)
 * has its DIR/cache/ files removed, and only those. */
Test(prune, removes_the_cache_of_accounts_without_snapshots_only, .fini = teardown, .timeout = 600) {
    json_t *a = itest_seed("old", "pca"), *b = itest_seed("old", "pcb");
    char dir[512], ia[200], ib[200], sa[256], sb[256];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    backup(a, dir, false, "full", ia, sizeof ia);
    backup(b, dir, false, "full", ib, sizeof ib);
    safe_did(a, sa, sizeof sa);
    safe_did(b, sb, sizeof sb);
    char ca[1400], cb[1400], cb_next[1400], cb_unpack[1400], cb_unpack_file[1500], foreign[1400], cu[1400], work[1400];
    snprintf(ca, sizeof ca, "%s/cache/%s.repo.car", dir, sa);
    snprintf(cb, sizeof cb, "%s/cache/%s.repo.car", dir, sb);
    cr_assert(exists(ca) && exists(cb), "each full backup leaves its account's cache");

    /* b's snapshots taken away by hand, the index rebuilt from what is left */
    char arch[1400], idx[700];
    archive_of(dir, ib, arch, sizeof arch);
    cr_assert_eq(unlink(arch), 0);
    snprintf(idx, sizeof idx, "%s/index.sqlite", dir);
    cr_assert_eq(unlink(idx), 0);
    itest_result r = itest_run(itest_bin(), "verify", dir, "--rebuild-index", NULL);
    cr_assert_eq(r.status, 0, "verify --rebuild-index:\n%s", r.err);
    itest_result_free(&r);
    /* leftovers of b's killed runs, a file that is not pdsmove's, and an account whose first
     * backup is unfinished (its work directory is there: the resumed run uses its cache) */
    snprintf(cb_next, sizeof cb_next, "%s/cache/%s.repo.car.next", dir, sb);
    snprintf(cb_unpack, sizeof cb_unpack, "%s/cache/.unpack-%s-20250101T000000Z-02", dir, sb);
    snprintf(cb_unpack_file, sizeof cb_unpack_file, "%s/repo.car", cb_unpack);
    snprintf(foreign, sizeof foreign, "%s/cache/notes.txt", dir);
    snprintf(cu, sizeof cu, "%s/cache/did_plc_unfinishedaaaaaaaaaaaaaa.repo.car.next", dir);
    snprintf(work, sizeof work, "%s/.work-did_plc_unfinishedaaaaaaaaaaaaaa-20250101T000000Z", dir);
    touch(cb_next);
    cr_assert_eq(mkdir(cb_unpack, 0700), 0);
    touch(cb_unpack_file);
    touch(foreign);
    touch(cu);
    cr_assert_eq(mkdir(work, 0700), 0);

    /* a dry run names b's files and removes nothing */
    r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", "--dry-run", NULL);
    cr_assert_eq(r.status, 0, "a dry run with cache files to remove exits 0 (%d):\n%s\n%s", r.status, r.out, r.err);
    char want[600];
    snprintf(want, sizeof want, "cache/%s.repo.car  would remove", sb);
    cr_assert(strstr(r.out, want), "%s", r.out);
    cr_assert(strstr(r.out, "3 cache file(s) of accounts without snapshots would be removed"), "%s", r.out);
    cr_assert_null(strstr(r.out, "notes.txt"), "%s", r.out);
    itest_result_free(&r);
    cr_assert(exists(cb) && exists(cb_next) && exists(cb_unpack_file), "the dry run removed a cache file");

    r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", NULL);
    cr_assert_eq(r.status, 0, "prune (%d):\n%s\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "3 cache file(s) of accounts without snapshots removed"), "%s", r.out);
    cr_assert(strstr(r.out, "an unfinished backup of the account uses it"), "%s", r.out);
    itest_result_free(&r);
    cr_assert_not(exists(cb), "b has no snapshot: its cache goes");
    cr_assert_not(exists(cb_next));
    cr_assert_not(exists(cb_unpack));
    cr_assert(exists(ca), "a still has a snapshot: its cache must stay");
    cr_assert(exists(foreign), "a file that is not pdsmove's stays");
    cr_assert(exists(cu), "the cache of an unfinished backup stays");
    cr_assert(has_archive(dir, ia));

    /* nothing left to do; a's next backup still starts from its cache */
    r = itest_run(itest_bin(), "prune", dir, "--keep-daily", "1", NULL);
    cr_assert_eq(r.status, 4, "(%d):\n%s\n%s", r.status, r.out, r.err);
    itest_result_free(&r);
    char i2[200];
    backup(a, dir, false, "incremental", i2, sizeof i2);
    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "verify after prune:\n%s", r.err);
    itest_result_free(&r);
    json_decref(a);
    json_decref(b);
}
