/* test_crashpoints.c — migrate, backup and restore killed at chosen journal commits instead of
 * after a sleep: each pipeline runs once with PDSMOVE_CRASH_AT=<kind>:0 to list its commit
 * points (PDSMOVE_CRASH_COUNT, docs/journal.md), then, for each chosen point, a fresh run dies
 * right after that commit (exit 137, as a SIGKILL), a re-run must finish, and the end state is
 * checked from outside: the records and blobs on the new PDS, the DID document, the old
 * account deactivated, the PLC audit log grown by exactly the pipeline's operations (migrate
 * one, restore two), one archive; for backup, every snapshot listed verifies, before and after
 * the re-run. Chosen points: every step boundary (a step done or failed), every point from one
 * before the first PLC-related commit to one after the last, and every k-th of the rest
 * (PDSMOVE_CRASH_EVERY=k; defaults: backup 1, migrate and restore 4). Then each write of a fact
 * re-runs depend on (a `kv` write) fails once (":fail", as on a full disk): the run must stop
 * with that error (or write the fact again), and a re-run must finish with the same end state. Each pipeline prints its
 * counts ("migrate: N commit points, M exercised"). Replaces the kill-after-a-sleep loops. */
#include <dirent.h>
#include <sqlite3.h>

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

/* Runs argv with PDSMOVE_CRASH_AT=<kind>:<n>[<suffix>] (and PDSMOVE_CRASH_COUNT=count_file if given). */
static itest_result run_hooked(const char *const *argv, const char *kind, int n, const char *suffix, const char *count_file) {
    char at[96];
    snprintf(at, sizeof at, "%s:%d%s", kind, n, suffix);
    setenv("PDSMOVE_CRASH_AT", at, 1);
    if (count_file) setenv("PDSMOVE_CRASH_COUNT", count_file, 1);
    itest_result r = itest_runv(argv);
    unsetenv("PDSMOVE_CRASH_AT");
    unsetenv("PDSMOVE_CRASH_COUNT");
    return r;
}

static itest_result run_crashing(const char *const *argv, const char *kind, int n, const char *count_file) {
    return run_hooked(argv, kind, n, "", count_file);
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

/* Whether the journal at path holds the fact key (in any run). */
static bool journal_has_fact(const char *path, const char *key) {
    sqlite3 *db;
    sqlite3_stmt *st;
    bool has = false;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM kv WHERE key=?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        has = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return has;
}

/* Runs argv with the occ-th write labelled want failing (":fail=<label>": not made, an error
 * returned, as on a full disk): a write of a fact re-runs depend on. The run must either stop
 * with that error, or (having written the fact again) finish with the fact in its journal —
 * never go on without it. Returns false when this run did not make that write (the caller tries
 * a fresh start). */
static bool fail_at(const char *const *argv, const char *kind, int occ, const char *want, const char *journal, char *tag,
                    size_t tag_size) {
    char count_file[600], name[64], suffix[160];
    snprintf(name, sizeof name, "%s-%d-fail.points", kind, occ);
    snprintf(count_file, sizeof count_file, "%s", itest_path(name));
    unlink(count_file);
    snprintf(suffix, sizeof suffix, ":fail=%s", want);
    itest_result r = run_hooked(argv, kind, occ, suffix, count_file);
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    read_points(count_file, p);
    int at = 0;
    for (int k = 0; k < p->n && !at; k++)
        if (strstr(p->what[k], " (failed on purpose)")) at = k + 1;
    snprintf(tag, tag_size, "%s: write %d (%s, #%d) failed", kind, at, want, occ);
    free(p);
    if (at && r.status == 0)
        cr_assert(journal_has_fact(journal, want + 3), "%s: the run finished without the fact it failed to write:\n%s", tag, r.err);
    else if (at)
        cr_assert(r.status != CRASH_STATUS && strstr(r.err, "injected by PDSMOVE_CRASH_AT"),
                  "%s: the run must stop with the journal's error (exit %d):\n%s", tag, r.status, r.err);
    itest_result_free(&r);
    return at != 0;
}

/* The points that are writes of a fact re-runs depend on (docs/journal.md, "The resume contract"). */
static bool contract_write(const char *what) { return !strncmp(what, "kv ", 3); }


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

/* ---- the driver: one pipeline, its points, both kinds of stop ---- */

/* A pipeline under test: how to set up a fresh start, its command line, what must hold right
 * after a stop (a crash, or a failed write when failed), and the end state after the re-run. */
typedef struct {
    const char *kind;
    bool has_plc;
    int every;
    void *ctx;
    void (*prepare)(void *ctx, const char *name);
    const char *const *(*argv)(void *ctx);
    const char *(*journal)(void *ctx);
    void (*after_stop)(void *ctx, const char *tag, bool failed);
    void (*check)(void *ctx, const char *tag);
    void (*after_count)(void *ctx); /* optional: more checks on the counting run's end state */
    void (*release)(void *ctx);
} pipeline;

/* Stops a fresh start at point i (crash, or failed write), retrying on a fresh start when the
 * numbering shifted; then re-runs it to the end and checks. */
static void stop_and_rerun(const pipeline *pl, const points *p, int i, bool fail) {
    char tag[256], name[64];
    int occ = 0; /* which write of that label point i is */
    for (int k = 1; k <= i; k++) occ += !strcmp(p->what[k - 1], p->what[i - 1]);
    for (int at = i, tries = 0;; tries++) {
        snprintf(name, sizeof name, "%s%s%d-%d", pl->kind, fail ? "-fail" : "-", i, tries);
        pl->prepare(pl->ctx, name);
        if (fail ? fail_at(pl->argv(pl->ctx), pl->kind, occ, p->what[i - 1], pl->journal(pl->ctx), tag, sizeof tag)
                 : !(at = crash_at(pl->argv(pl->ctx), pl->kind, at, p, tag, sizeof tag)))
            break;
        cr_assert_lt(tries, 3, "%s: point %d (%s) not reached in %d runs", pl->kind, i, p->what[i - 1], tries + 1);
        pl->release(pl->ctx);
    }
    pl->after_stop(pl->ctx, tag, fail);
    itest_result r = itest_runv(pl->argv(pl->ctx));
    cr_assert_eq(r.status, 0, "%s: the re-run failed:\n%s", tag, r.err);
    itest_result_free(&r);
    pl->check(pl->ctx, tag);
    pl->release(pl->ctx);
}

static void exercise(const pipeline *pl) {
    points *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    char count_file[600], name[64];
    snprintf(name, sizeof name, "%s.points", pl->kind);
    snprintf(count_file, sizeof count_file, "%s", itest_path(name));
    pl->prepare(pl->ctx, "count");
    itest_result r = run_crashing(pl->argv(pl->ctx), pl->kind, 0, count_file);
    cr_assert_eq(r.status, 0, "%s: the counting run failed:\n%s", pl->kind, r.err);
    itest_result_free(&r);
    pl->check(pl->ctx, "counting run");
    if (pl->after_count) pl->after_count(pl->ctx);
    pl->release(pl->ctx);
    read_points(count_file, p);
    int exercised = 0, failed = 0;
    for (int i = 1; i <= p->n; i++)
        if (chosen(p, i, pl->has_plc, pl->every)) {
            stop_and_rerun(pl, p, i, false);
            exercised++;
        }
    for (int i = 1; i <= p->n; i++)
        if (contract_write(p->what[i - 1])) {
            stop_and_rerun(pl, p, i, true);
            failed++;
        }
    fprintf(stderr, "%s: %d commit points, %d exercised; %d writes of resume facts failed on purpose\n", pl->kind, p->n,
            exercised, failed);
    free(p);
}

/* ---- migrate ---- */

/* out = the scratch path "<tag>-<suffix>" */
static void scratch(char *out, size_t size, const char *tag, const char *suffix) {
    char name[192];
    snprintf(name, sizeof name, "%s-%s", tag, suffix);
    snprintf(out, size, "%s", itest_path(name));
}

typedef struct {
    json_t *seed;
    const char *argv[ITEST_MAX_ARGS];
    char journal[600], work[600], archives[600], pw[600], newpw[600];
} mig;

static void mig_prepare(void *ctx, const char *tag) {
    mig *m = ctx;
    char name[128];
    m->seed = seed_small("cpm");
    scratch(m->journal, sizeof m->journal, tag, "journal.sqlite");
    scratch(m->work, sizeof m->work, tag, "work");
    scratch(m->archives, sizeof m->archives, tag, "archives");
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

static const char *const *mig_argv(void *ctx) { return ((mig *)ctx)->argv; }
static const char *mig_journal(void *ctx) { return ((mig *)ctx)->journal; }
static void mig_release(void *ctx) { json_decref(((mig *)ctx)->seed); }

static void mig_after_stop(void *ctx, const char *tag, bool failed) {
    mig *m = ctx;
    cr_assert_leq(itest_plc_ops(itest_plc_url(), itest_str(m->seed, "did")), 2, "%s: a second PLC operation", tag);
}

static void mig_check(void *ctx, const char *tag) {
    mig *m = ctx;
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
    pipeline pl = {.kind = "migrate", .has_plc = true, .every = 4, .ctx = &m, .prepare = mig_prepare, .argv = mig_argv, .journal = mig_journal,
                   .after_stop = mig_after_stop, .check = mig_check, .release = mig_release};
    exercise(&pl);
}

/* ---- backup ---- */

typedef struct {
    json_t *seed;
    const char *argv[ITEST_MAX_ARGS];
    char dir[600], pw[600], journal[800];
} bak;

static void bak_prepare(void *ctx, const char *name) {
    bak *b = ctx;
    snprintf(b->dir, sizeof b->dir, "%s", itest_path(name)); /* a fresh backup directory: a full snapshot */
    const char *a[] = {itest_bin(), "backup", itest_str(b->seed, "handle"), "--to", b->dir, "--pds", itest_str(itest_pds("old"), "url"),
                       "--plc-url", itest_plc_url(), "--password-file", b->pw, NULL};
    memcpy(b->argv, a, sizeof a);
    char safe[256];
    snprintf(safe, sizeof safe, "%s", itest_str(b->seed, "did"));
    for (char *q = safe; *q; q++)
        if (*q == ':') *q = '_';
    snprintf(b->journal, sizeof b->journal, "%s/journals/%s.sqlite", b->dir, safe); /* backup.c: one per account */
}

static const char *const *bak_argv(void *ctx) { return ((bak *)ctx)->argv; }
static const char *bak_journal(void *ctx) { return ((bak *)ctx)->journal; }
static void bak_release(void *ctx) {}

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

static void bak_after_stop(void *ctx, const char *tag, bool failed) {
    bak *b = ctx;
    cr_assert_leq(backup_listed_verify(b->dir, tag), failed ? 0 : 1, "%s", tag);
}

static void bak_check(void *ctx, const char *tag) {
    bak *b = ctx;
    /* a backup killed after it finished is done: the re-run is the next (incremental) one */
    int want = strstr(tag, "(run-finish)") ? 2 : 1;
    cr_assert_eq(backup_listed_verify(b->dir, tag), want, "%s: %d snapshot(s) after the re-run", tag, want);
    itest_result r = itest_run(itest_bin(), "verify", b->dir, NULL);
    json_int_t n = inventory_records(b->seed);
    cr_assert(itest_line_has(r.err, "records", n) || itest_line_has(r.out, "records", n),
              "%s: the snapshot must hold the %lld records:\n%s%s", tag, (long long)n, r.out, r.err);
    itest_result_free(&r);
}

Test(crashpoints, backup_killed_at_each_commit_point_a_rerun_lands_a_verified_snapshot, .fini = teardown, .timeout = 900) {
    bak b = {.seed = seed_small("cpb")};
    snprintf(b.pw, sizeof b.pw, "%s", itest_write_file("pw", itest_str(b.seed, "password")));
    pipeline pl = {.kind = "backup", .every = 1, .ctx = &b, .prepare = bak_prepare, .argv = bak_argv, .journal = bak_journal,
                   .after_stop = bak_after_stop, .check = bak_check, .release = bak_release};
    exercise(&pl);
    json_decref(b.seed);
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
static void rst_prepare(void *ctx, const char *tag) {
    rst *s = ctx;
    char name[128];
    s->seed = seed_small("cpr");
    scratch(s->bk, sizeof s->bk, tag, "backups");
    snprintf(name, sizeof name, "%s-pw", tag);
    const char *pw = itest_write_file(name, itest_str(s->seed, "password"));
    itest_result r = itest_must(itest_bin(), "backup", itest_str(s->seed, "did"), "--to", s->bk, "--pds",
                                itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), "--password-file", pw, NULL);
    itest_result_free(&r);
    scratch(s->journal, sizeof s->journal, tag, "journal.sqlite");
    scratch(s->work, sizeof s->work, tag, "work");
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

static void rst_check(void *ctx, const char *tag) {
    rst *s = ctx;
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

static const char *const *rst_argv(void *ctx) { return ((rst *)ctx)->argv; }
static const char *rst_journal(void *ctx) { return ((rst *)ctx)->journal; }
static void rst_release(void *ctx) { json_decref(((rst *)ctx)->seed); }

static void rst_after_stop(void *ctx, const char *tag, bool failed) {
    rst *s = ctx;
    cr_assert_leq(itest_plc_ops(itest_plc_url(), itest_str(s->seed, "did")), s->ops_before + 2, "%s: a third PLC operation", tag);
}

/* The same command again after the restore finished: nothing to do, no more operations. */
static void rst_again(void *ctx) {
    rst *s = ctx;
    itest_result r = itest_runv(s->argv);
    cr_assert_eq(r.status, 0, "a second run after the restore finished failed:\n%s", r.err);
    cr_assert(strstr(r.out, "already restored"), "%s", r.out);
    itest_result_free(&r);
    rst_check(s, "the same restore run again");
}

Test(crashpoints, restore_killed_at_each_commit_point_a_rerun_finishes, .fini = teardown, .timeout = 1200) {
    rst s;
    pipeline pl = {.kind = "restore", .has_plc = true, .every = 4, .ctx = &s, .prepare = rst_prepare, .argv = rst_argv, .journal = rst_journal,
                   .after_stop = rst_after_stop, .check = rst_check, .after_count = rst_again, .release = rst_release};
    exercise(&pl);
}
