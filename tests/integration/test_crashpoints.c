/* test_crashpoints.c — migrate, backup and restore killed at chosen journal commits instead of
 * after a sleep: each pipeline runs once with PDSMOVE_CRASH_AT=<kind>:0 to list its commit
 * points (PDSMOVE_CRASH_COUNT, docs/journal.md), then, for each chosen point, a fresh run dies
 * right after that commit (exit 137, as a SIGKILL), a re-run must finish, and the end state is
 * checked from outside: the records and blobs on the new PDS, the DID document, the old
 * account deactivated, the PLC audit log grown by exactly the pipeline's operations (migrate
 * one, restore two), one archive; for backup, every snapshot listed verifies, before and after
 * the re-run. Chosen points: every step boundary (a step done or failed), every point from one
 * before the first PLC-related commit to one after the last, and every k-th of the rest
 * (PDSMOVE_CRASH_EVERY=k; defaults: backup 1, migrate and restore 4). Each pipeline prints its
 * counts ("migrate: N commit points, M exercised"). Replaces the kill-after-a-sleep loops. */
#include <dirent.h>

#include "itest.h"

static void teardown(void) { itest_cleanup(); }

/* JOURNAL_CRASH_STATUS (journal.h): the exit status of a run stopped by the hook */
enum { POINTS_MAX = 512, CRASH_STATUS = 137 };

typedef struct {
    int n;
    char what[POINTS_MAX][128]; /* "step export done", "kv plc_signed_op", "tx", ... */
} points;

static void read_points(const char *path, points *p) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "the counting run wrote no %s: is the crash hook built in?", path);
    char line[256];
    p->n = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert_lt(p->n, POINTS_MAX, "more than %d commit points", POINTS_MAX);
        char *sp = strchr(line, ' ');
        cr_assert_not_null(sp, "bad line in %s: %s", path, line);
        cr_assert_eq(atoi(line), p->n + 1, "commit points out of order in %s", path);
        line[strcspn(line, "\n")] = '\0';
        snprintf(p->what[p->n++], sizeof p->what[0], "%s", sp + 1);
    }
    fclose(f);
    cr_assert_gt(p->n, 0, "no commit points counted in %s", path);
}

static bool plc_related(const char *what) {
    return strstr(what, "plc_") || !strncmp(what, "step identity ", 14) || !strncmp(what, "step identity-", 14);
}

static bool step_boundary(const char *what) {
    size_t l = strlen(what);
    return !strncmp(what, "step ", 5) &&
           ((l > 5 && !strcmp(what + l - 5, " done")) || (l > 7 && !strcmp(what + l - 7, " failed")));
}

/* Whether point i (1-based) is exercised; every: the default k (each migrate or restore point
 * costs a fresh account and two runs, ~5 s: the suite's budget for all of them is ~5 minutes). */
static bool chosen(const points *p, int i, bool has_plc, int every) {
    const char *ev = getenv("PDSMOVE_CRASH_EVERY");
    if (ev && atoi(ev) > 0) every = atoi(ev);
    if (every == 1 || i == 1 || i == p->n || step_boundary(p->what[i - 1])) return true;
    if (has_plc) {
        int first = 0, last = 0;
        for (int k = 1; k <= p->n; k++)
            if (plc_related(p->what[k - 1])) {
                if (!first) first = k;
                last = k;
            }
        if (first && i >= first - 1 && i <= last + 1) return true;
    }
    return i % every == 0;
}

/* Runs argv with PDSMOVE_CRASH_AT=<kind>:<n> (and PDSMOVE_CRASH_COUNT=count_file if given). */
static itest_result run_crashing(const char *const *argv, const char *kind, int n, const char *count_file) {
    char at[96];
    snprintf(at, sizeof at, "%s:%d", kind, n);
    setenv("PDSMOVE_CRASH_AT", at, 1);
    if (count_file) setenv("PDSMOVE_CRASH_COUNT", count_file, 1);
    itest_result r = itest_runv(argv);
    unsetenv("PDSMOVE_CRASH_AT");
    unsetenv("PDSMOVE_CRASH_COUNT");
    return r;
}

/* Runs argv to crash at its i-th commit of kind; the point it really crashed at into tag. Returns
 * 0 when it crashed there, or, when this run made fewer commits than i (the blob batches differ
 * from run to run by a commit or two) and so finished, how many it made: the caller then tries
 * that point on a fresh start. */
static int crash_at(const char *const *argv, const char *kind, int i, const points *ref, char *tag, size_t tag_size) {
    char count_file[600], name[64];
    snprintf(name, sizeof name, "%s-%d.points", kind, i);
    snprintf(count_file, sizeof count_file, "%s", itest_path(name));
    unlink(count_file);
    itest_result r = run_crashing(argv, kind, i, count_file);
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    read_points(count_file, p);
    snprintf(tag, tag_size, "%s crashed at %d/%d (%s)", kind, p->n, ref->n, p->what[p->n - 1]);
    int finished = 0;
    if (r.status == 0 && p->n < i) finished = p->n;
    else cr_assert_eq(r.status, CRASH_STATUS, "%s: exit %d, not the crash:\n%s", tag, r.status, r.err);
    free(p);
    itest_result_free(&r);
    return finished;
}

static void report(const char *kind, const points *p, int exercised) {
    fprintf(stderr, "%s: %d commit points, %d exercised\n", kind, p->n, exercised);
}

/* A small account: few records and blobs, so that each of the many runs is quick. */
static json_t *seed_small(const char *prefix) {
    itest_env("PDSMOVE_TESTBED", "path of the running testbed's testbed.json");
    const char *extra[] = {"--posts", "3", "--likes", "1", "--follows", "1", "--blobs", "2", "--custom", "1", NULL};
    return itest_seed_on(itest_testbed_path(), "old", prefix, extra);
}

static size_t inventory_blobs(json_t *seed) {
    return json_array_size(json_object_get(json_object_get(seed, "inventory"), "blobs"));
}

static json_int_t inventory_records(json_t *seed) {
    return json_integer_value(json_object_get(json_object_get(seed, "inventory"), "total"));
}

/* The account did on the PDS at url has the seed's records (its getRepo verified and listed by
 * pdsmove) and blobs. */
static void check_repo_on(const char *url, const char *did, json_t *seed, const char *tag) {
    char u[1024], car[600];
    snprintf(u, sizeof u, "%s/xrpc/com.atproto.sync.getRepo?did=%s", url, did);
    snprintf(car, sizeof car, "%s", itest_path("check.car"));
    itest_fetch(u, car);
    itest_result v = itest_run(itest_bin(), "car", "verify", car, NULL);
    cr_assert_eq(v.status, 0, "%s: the new PDS's repo does not verify: %s", tag, v.err);
    cr_assert(itest_line_has(v.out, "records:", inventory_records(seed)), "%s: %s", tag, v.out);
    itest_result_free(&v);
    v = itest_run(itest_bin(), "car", "ls", car, NULL);
    cr_assert_eq(v.status, 0, "%s: car ls: %s", tag, v.err);
    long long lines = 0;
    for (const char *q = v.out; *q; q++) lines += *q == '\n';
    cr_assert_geq(lines, inventory_records(seed), "%s: car ls lists %lld lines for %lld records", tag, lines,
                  (long long)inventory_records(seed));
    itest_result_free(&v);
    snprintf(u, sizeof u, "%s/xrpc/com.atproto.sync.listBlobs?did=%s&limit=1000", url, did);
    json_t *b = itest_get_json(u);
    cr_assert_not_null(b, "%s: listBlobs on the new PDS failed", tag);
    cr_assert_eq(json_array_size(json_object_get(b, "cids")), inventory_blobs(seed), "%s: blobs on the new PDS", tag);
    json_decref(b);
}

static void check_moved(const char *did, const char *tag) {
    char *ep = itest_plc_pds(itest_plc_url(), did);
    cr_assert_str_eq(ep, itest_str(itest_pds("new"), "url"), "%s: the DID document names %s", tag, ep);
    free(ep);
}

/* How many entries of dir end in suffix; any other entry (a half-written .tmp) fails. */
static int count_only(const char *dir, const char *suffix, const char *tag) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        cr_assert(l > sl && !strcmp(de->d_name + l - sl, suffix), "%s: a stray file in %s: %s", tag, dir, de->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* ---- migrate ---- */

typedef struct {
    json_t *seed;
    const char *argv[ITEST_MAX_ARGS];
    char journal[600], work[600], archives[600], pw[600], newpw[600];
} mig;

static void mig_prepare(mig *m, const char *tag) {
    char name[128];
    m->seed = seed_small("cpm");
    snprintf(name, sizeof name, "%s-journal.sqlite", tag);
    snprintf(m->journal, sizeof m->journal, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s-work", tag);
    snprintf(m->work, sizeof m->work, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s-archives", tag);
    snprintf(m->archives, sizeof m->archives, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s-pw", tag);
    snprintf(m->pw, sizeof m->pw, "%s", itest_write_file(name, itest_str(m->seed, "password")));
    snprintf(m->newpw, sizeof m->newpw, "%s", itest_write_file("newpw", "a new password for the test"));
    const char *argv[] = {itest_bin(), "migrate", itest_str(m->seed, "handle"), "--from", itest_str(itest_pds("old"), "url"),
                          "--to", itest_str(itest_pds("new"), "url"), "--plc-url", itest_plc_url(), "--password-file", m->pw,
                          "--new-password-file", m->newpw, "--journal", m->journal, "--work-dir", m->work, "--yes",
                          "--plc-token-from-db", itest_str(itest_pds("old"), "accountDb"), "--keep-archive", m->archives,
                          NULL};
    memcpy(m->argv, argv, sizeof argv);
}

static void mig_check(mig *m, const char *tag) {
    const char *did = itest_str(m->seed, "did");
    check_moved(did, tag);
    cr_assert_eq(itest_plc_ops(itest_plc_url(), did), 2, "%s: the audit log must have the genesis and one migrate operation", tag);
    check_repo_on(itest_str(itest_pds("new"), "url"), did, m->seed, tag);
    bool active = true;
    cr_assert(itest_pds_has_account(itest_str(itest_pds("old"), "url"), did, &active), "%s: the old account is gone", tag);
    cr_assert_not(active, "%s: the old account is still active", tag);
    cr_assert(itest_pds_has_account(itest_str(itest_pds("new"), "url"), did, &active) && active,
              "%s: the new account is not active", tag);
    cr_assert_eq(count_only(m->archives, "-migrate.tar.zst", tag), 1, "%s: exactly one safety archive", tag);
}

Test(crashpoints, migrate_killed_at_each_commit_point_a_rerun_finishes, .fini = teardown, .timeout = 1200) {
    mig m;
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    mig_prepare(&m, "count");
    char count_file[600];
    snprintf(count_file, sizeof count_file, "%s", itest_path("migrate.points"));
    itest_result r = run_crashing(m.argv, "migrate", 0, count_file);
    cr_assert_eq(r.status, 0, "the counting run failed:\n%s", r.err);
    itest_result_free(&r);
    mig_check(&m, "counting run");
    json_decref(m.seed);
    read_points(count_file, p);
    int exercised = 0;
    for (int i = 1; i <= p->n; i++) {
        if (!chosen(p, i, true, 4)) continue;
        char tag[256], name[32];
        for (int at = i, tries = 0;; tries++) {
            snprintf(name, sizeof name, "m%d-%d", i, tries);
            mig_prepare(&m, name);
            if (!(at = crash_at(m.argv, "migrate", at, p, tag, sizeof tag))) break;
            cr_assert_lt(tries, 3, "migrate: point %d not reached in %d runs", i, tries + 1);
            json_decref(m.seed);
        }
        cr_assert_leq(itest_plc_ops(itest_plc_url(), itest_str(m.seed, "did")), 2, "%s: a second PLC operation", tag);
        r = itest_runv(m.argv);
        cr_assert_eq(r.status, 0, "%s: the re-run failed:\n%s", tag, r.err);
        itest_result_free(&r);
        mig_check(&m, tag);
        json_decref(m.seed);
        exercised++;
    }
    report("migrate", p, exercised);
    free(p);
}

/* ---- backup ---- */

static void backup_argv(const char **argv, json_t *seed, const char *dir, const char *pw) {
    const char *a[] = {itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds", itest_str(itest_pds("old"), "url"),
                       "--plc-url", itest_plc_url(), "--password-file", pw, NULL};
    memcpy(argv, a, sizeof a);
}

/* Every snapshot the backup directory lists verifies (none listed is fine: nothing was finished),
 * and no temporary archive sits under a final name. Returns the number of snapshots listed. */
static int backup_listed_verify(const char *dir, const char *tag) {
    char snaps[700];
    snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
    DIR *d = opendir(snaps);
    int archives = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        archives += l > 8 && !strcmp(de->d_name + l - 8, ".tar.zst");
    }
    if (d) closedir(d);
    if (!archives) return 0;
    itest_result r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "%s: a listed snapshot does not verify:\n%s\n%s", tag, r.out, r.err);
    itest_result_free(&r);
    return archives;
}

Test(crashpoints, backup_killed_at_each_commit_point_a_rerun_lands_a_verified_snapshot, .fini = teardown, .timeout = 900) {
    json_t *seed = seed_small("cpb");
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    char pw[600];
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", itest_str(seed, "password")));
    const char *argv[ITEST_MAX_ARGS];
    char dir[600], count_file[600];
    snprintf(dir, sizeof dir, "%s", itest_path("b-count"));
    snprintf(count_file, sizeof count_file, "%s", itest_path("backup.points"));
    backup_argv(argv, seed, dir, pw);
    itest_result r = run_crashing(argv, "backup", 0, count_file);
    cr_assert_eq(r.status, 0, "the counting run failed:\n%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(backup_listed_verify(dir, "counting run"), 1);
    read_points(count_file, p);
    int exercised = 0;
    for (int i = 1; i <= p->n; i++) {
        if (!chosen(p, i, false, 1)) continue;
        char tag[256], name[32];
        for (int at = i, tries = 0;; tries++) {
            snprintf(name, sizeof name, "b%d-%d", i, tries);
            snprintf(dir, sizeof dir, "%s", itest_path(name));
            backup_argv(argv, seed, dir, pw);
            if (!(at = crash_at(argv, "backup", at, p, tag, sizeof tag))) break;
            cr_assert_lt(tries, 3, "backup: point %d not reached in %d runs", i, tries + 1);
        }
        cr_assert_leq(backup_listed_verify(dir, tag), 1, "%s", tag);
        r = itest_runv(argv);
        cr_assert_eq(r.status, 0, "%s: the re-run failed:\n%s", tag, r.err);
        itest_result_free(&r);
        /* a backup killed after it finished is done: the re-run is the next (incremental) one */
        int want = strstr(tag, "(run-finish)") ? 2 : 1;
        cr_assert_eq(backup_listed_verify(dir, tag), want, "%s: %d snapshot(s) after the re-run", tag, want);
        r = itest_run(itest_bin(), "verify", dir, NULL);
        cr_assert(itest_line_has(r.err, "records", inventory_records(seed)) || itest_line_has(r.out, "records", inventory_records(seed)),
                  "%s: the snapshot must hold the %lld records:\n%s%s", tag, (long long)inventory_records(seed), r.out, r.err);
        itest_result_free(&r);
        exercised++;
    }
    report("backup", p, exercised);
    free(p);
    json_decref(seed);
}

/* ---- restore ---- */

typedef struct {
    json_t *seed;
    const char *argv[ITEST_MAX_ARGS];
    char bk[600], journal[600], work[600], key[600], newpw[600], email[300];
    size_t ops_before;
} rst;

/* A fresh account backed up, and the restore of that backup onto the new PDS with the old
 * PDS's rotation key (on this testbed in every account's rotation keys). */
static void rst_prepare(rst *s, const char *tag) {
    char name[128];
    s->seed = seed_small("cpr");
    snprintf(name, sizeof name, "%s-backups", tag);
    snprintf(s->bk, sizeof s->bk, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s-pw", tag);
    const char *pw = itest_write_file(name, itest_str(s->seed, "password"));
    itest_result r = itest_must(itest_bin(), "backup", itest_str(s->seed, "did"), "--to", s->bk, "--pds",
                                itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), "--password-file", pw, NULL);
    itest_result_free(&r);
    snprintf(name, sizeof name, "%s-journal.sqlite", tag);
    snprintf(s->journal, sizeof s->journal, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s-work", tag);
    snprintf(s->work, sizeof s->work, "%s", itest_path(name));
    snprintf(s->key, sizeof s->key, "%s", itest_write_file("rotation.hex", itest_str(itest_pds("old"), "rotationKeyHex")));
    snprintf(s->newpw, sizeof s->newpw, "%s", itest_write_file("restore-newpw", "restored password 1"));
    const char *h = itest_str(s->seed, "handle");
    snprintf(s->email, sizeof s->email, "%.*s@example.com", (int)strcspn(h, "."), h); /* one account per email */
    s->ops_before = itest_plc_ops(itest_plc_url(), itest_str(s->seed, "did"));
    const char *argv[] = {itest_bin(), "restore", s->bk, "--did", itest_str(s->seed, "did"), "--to", itest_str(itest_pds("new"), "url"),
                          "--rotation-key", s->key, "--new-email", s->email, "--new-password-file", s->newpw,
                          "--plc-url", itest_plc_url(), "--journal", s->journal, "--work-dir", s->work, "--yes", NULL};
    memcpy(s->argv, argv, sizeof argv);
}

static void rst_check(rst *s, const char *tag) {
    const char *did = itest_str(s->seed, "did");
    check_moved(did, tag);
    size_t ops = itest_plc_ops(itest_plc_url(), did);
    cr_assert_eq(ops, s->ops_before + 2, "%s: the audit log has %zu operations, %zu before the restore: it must gain exactly two",
                 tag, ops, s->ops_before);
    check_repo_on(itest_str(itest_pds("new"), "url"), did, s->seed, tag);
    bool active = false;
    cr_assert(itest_pds_has_account(itest_str(itest_pds("new"), "url"), did, &active) && active,
              "%s: the restored account is not active", tag);
}

Test(crashpoints, restore_killed_at_each_commit_point_a_rerun_finishes, .fini = teardown, .timeout = 1200) {
    rst s;
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    rst_prepare(&s, "count");
    char count_file[600];
    snprintf(count_file, sizeof count_file, "%s", itest_path("restore.points"));
    itest_result r = run_crashing(s.argv, "restore", 0, count_file);
    cr_assert_eq(r.status, 0, "the counting run failed:\n%s", r.err);
    itest_result_free(&r);
    rst_check(&s, "counting run");
    r = itest_runv(s.argv); /* the same command again: nothing to do, no more operations */
    cr_assert_eq(r.status, 0, "a second run after the restore finished failed:\n%s", r.err);
    cr_assert(strstr(r.out, "already restored"), "%s", r.out);
    itest_result_free(&r);
    rst_check(&s, "the same restore run again");
    json_decref(s.seed);
    read_points(count_file, p);
    int exercised = 0;
    for (int i = 1; i <= p->n; i++) {
        if (!chosen(p, i, true, 4)) continue;
        char tag[256], name[32];
        for (int at = i, tries = 0;; tries++) {
            snprintf(name, sizeof name, "r%d-%d", i, tries);
            rst_prepare(&s, name);
            if (!(at = crash_at(s.argv, "restore", at, p, tag, sizeof tag))) break;
            cr_assert_lt(tries, 3, "restore: point %d not reached in %d runs", i, tries + 1);
            json_decref(s.seed);
        }
        cr_assert_leq(itest_plc_ops(itest_plc_url(), itest_str(s.seed, "did")), s.ops_before + 2, "%s: a third PLC operation", tag);
        r = itest_runv(s.argv);
        cr_assert_eq(r.status, 0, "%s: the re-run failed:\n%s", tag, r.err);
        itest_result_free(&r);
        rst_check(&s, tag);
        json_decref(s.seed);
        exercised++;
    }
    report("restore", p, exercised);
    free(p);
}
