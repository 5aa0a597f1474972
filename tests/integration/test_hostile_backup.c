/* test_hostile_backup.c — a backup directory is untrusted input (a shared disk, NFS, a bucket):
 * a real backup of a seeded account, then copies of it tampered with the way the issue
 * reproduced — an index row whose snapshot id or base id is a path outside the backup, a blob
 * list line that is one — against `verify`, `restore` and `migrate --from-backup`, and a
 * manifest id that is one against `verify --rebuild-index`. Each must
 * refuse, naming the file and the bad entry, and the canary files those paths point at must
 * survive untouched (before the checks, restore deleted them and verify wrote into them).
 * And a read-only backup (a read-only bind mount) verifies; the untampered backup still
 * migrates, without the stale preferences an earlier assembly left in the work directory. */
#include <sys/mount.h>

#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static char did[300], good[600], canary[600];

/* a directory of files with the names a snapshot has: what the old code removed or overwrote */
static const char *const canary_files[] = {"repo.car", "manifest.json", "blob-list.txt", "victim", "blobs/keep"};

static void make_canary(void) {
    snprintf(canary, sizeof canary, "%s", itest_path("canary"));
    char p[700];
    mkdir(canary, 0700);
    snprintf(p, sizeof p, "%s/blobs", canary);
    mkdir(p, 0700);
    for (size_t i = 0; i < sizeof canary_files / sizeof canary_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", canary, canary_files[i]);
        FILE *f = fopen(p, "w");
        cr_assert_not_null(f, "%s", p);
        fprintf(f, "canary %s\n", canary_files[i]);
        fclose(f);
    }
}

static void assert_canary_intact(const char *after) {
    char p[700], want[200];
    for (size_t i = 0; i < sizeof canary_files / sizeof canary_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", canary, canary_files[i]);
        size_t n = 0;
        char *got = itest_slurp(p, &n);
        cr_assert_not_null(got, "%s deleted %s", after, p);
        snprintf(want, sizeof want, "canary %s\n", canary_files[i]);
        cr_assert_str_eq(got, want, "%s changed %s", after, p);
        free(got);
    }
    char cmd[800];
    snprintf(cmd, sizeof cmd, "find '%s' | wc -l", canary);
    FILE *f = popen(cmd, "r");
    int n = 0;
    cr_assert_eq(fscanf(f, "%d", &n), 1);
    pclose(f);
    cr_assert_eq(n, 7, "%s wrote into %s (%d entries)", after, canary, n);
}

/* a path from anywhere to the canary: enough "../" to reach / from any directory of the test */
static const char *outside(const char *leaf) {
    static char s[400];
    s[0] = 0;
    for (int i = 0; i < 16; i++) strcat(s, "../");
    snprintf(s + strlen(s), sizeof s - strlen(s), "%s%s%s", canary + 1, leaf ? "/" : "", leaf ? leaf : "");
    return s;
}

/* A copy of the good backup with sql run on its index. */
static const char *tampered(const char *name, const char *sql) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s", itest_path(name));
    itest_result r = itest_must("cp", "-a", good, dir, NULL);
    itest_result_free(&r);
    char idx[700];
    snprintf(idx, sizeof idx, "%s/index.sqlite", dir);
    if (sql) {
        r = itest_must("sqlite3", idx, sql, NULL);
        itest_result_free(&r);
    }
    return dir;
}

static json_t *seed;

/* A full backup, then an incremental one, of a fresh account. */
static void make_backup(void) {
    seed = itest_seed("old", "hos");
    snprintf(did, sizeof did, "%s", itest_str(seed, "did"));
    snprintf(good, sizeof good, "%s", itest_path("good"));
    for (int i = 0; i < 2; i++) {
        itest_result r = itest_must(itest_bin(), "backup", did, "--to", good, "--pds", itest_str(itest_pds("old"), "url"), "--plc-url",
                                    itest_plc_url(), NULL);
        itest_result_free(&r);
    }
    make_canary();
}

static itest_result run_verify(const char *dir) { return itest_run(itest_bin(), "verify", dir, NULL); }

static itest_result run_restore(const char *dir) {
    const char *key = itest_write_file("rotation.hex", itest_str(itest_pds("old"), "rotationKeyHex"));
    static char k[600], pw[600], work[600], journal[600];
    snprintf(k, sizeof k, "%s", key);
    snprintf(pw, sizeof pw, "%s", itest_write_file("newpw", "restored password 1"));
    snprintf(work, sizeof work, "%s", itest_path("restore-work"));
    snprintf(journal, sizeof journal, "%s", itest_path("restore-journal.sqlite"));
    unlink(journal);
    static char email[400];
    snprintf(email, sizeof email, "restored-%s@example.com", did + 8); /* one account per email */
    const char *argv[] = {itest_bin(), "restore", dir, "--did", did, "--to", itest_str(itest_pds("new"), "url"), "--rotation-key", k,
                          "--new-email", email, "--new-password-file", pw, "--plc-url", itest_plc_url(), "--journal",
                          journal, "--work-dir", work, "--yes", NULL};
    return itest_runv(argv);
}

static itest_result run_migrate(const char *dir) {
    static char journal[600];
    snprintf(journal, sizeof journal, "%s", itest_path("migrate-journal.sqlite"));
    unlink(journal);
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--from-backup", dir, "--yes", NULL};
    itest_migrate_argv(argv, seed, NULL, itest_str(itest_pds("old"), "url"), itest_str(itest_pds("new"), "url"), itest_plc_url(),
                       journal, extra);
    return itest_runv(argv);
}

/* Each command refuses the backup, naming what, and the canary survives; no PLC operation. */
static void all_refuse(const char *dir, const char *file, const char *entry) {
    size_t ops = itest_plc_ops(itest_plc_url(), did);
    itest_result (*const runs[])(const char *) = {run_restore, run_migrate, run_verify};
    static const char *const names[] = {"restore", "migrate --from-backup", "verify"};
    for (size_t i = 0; i < 3; i++) {
        itest_result r = runs[i](dir);
        assert_canary_intact(names[i]);
        cr_assert_neq(r.status, 0, "%s must refuse the backup:\n%s\n%s", names[i], r.out, r.err);
        cr_assert(strstr(r.err, file) || strstr(r.out, file), "%s must name %s:\n%s\n%s", names[i], file, r.out, r.err);
        cr_assert(strstr(r.err, entry) || strstr(r.out, entry), "%s must name the bad entry %s:\n%s\n%s", names[i], entry, r.out, r.err);
        itest_result_free(&r);
    }
    cr_assert_eq(itest_plc_ops(itest_plc_url(), did), ops, "no PLC operation may be made from a hostile backup");
}

Test(hostile_backup, snapshot_ids_that_are_paths_are_refused, .fini = teardown, .timeout = 300) {
    make_backup();
    char sql[1200];
    /* the only snapshot left (so that it is the newest) is named by the canary's path */
    snprintf(sql, sizeof sql, "DELETE FROM snapshot WHERE incremental=1; UPDATE snapshot SET id='%s';", outside(NULL));
    all_refuse(tampered("bad-id", sql), "index.sqlite", "snapshot row '../../");
    json_decref(seed);
}

Test(hostile_backup, base_ids_that_are_paths_are_refused, .fini = teardown, .timeout = 300) {
    make_backup();
    char sql[1200];
    /* the base row exists under that id, so the chain walk reaches it: only the base id check
     * of the newest snapshot stands in the way */
    snprintf(sql, sizeof sql,
             "UPDATE snapshot SET id='%s' WHERE incremental=0; UPDATE snapshot SET base_id='%s' WHERE incremental=1;",
             outside(NULL), outside(NULL));
    all_refuse(tampered("bad-base", sql), "index.sqlite", "'../../");
    json_decref(seed);
}

/* Rewrites the newest archive of dir: edit (shell, run in its extracted top directory, with
 * $id set) changes its files, then SHA256SUMS is made to match and the archive packed again;
 * after runs in dir (may be ""). */
static void rewrite_newest(const char *dir, const char *edit, const char *after) {
    char script[4000];
    snprintf(script, sizeof script,
             "set -e; cd '%s'; q='FROM snapshot ORDER BY created_at DESC, id DESC LIMIT 1';"
             "a=snapshots/$(sqlite3 index.sqlite \"SELECT archive $q\"); id=$(sqlite3 index.sqlite \"SELECT id $q\");"
             "rm -rf x; mkdir x; tar --zstd -xf \"$a\" -C x; tar --zstd -tf \"$a\" > order;"
             "(cd \"x/$id\" && %s && : > ../sums && for f in $(sed 's/^[0-9a-f]*  //' SHA256SUMS); do sha256sum \"$f\" >> ../sums;"
             " done && mv ../sums SHA256SUMS);"
             "rm \"$a\"; tar --zstd -cf \"$a\" -C x -T order; rm -rf x order; %s",
             dir, edit, after);
    itest_result r = itest_must("sh", "-c", script, NULL);
    itest_result_free(&r);
}

Test(hostile_backup, blob_list_lines_that_are_paths_are_refused, .fini = teardown, .timeout = 300) {
    make_backup();
    const char *dir = tampered("bad-list", NULL);
    /* the newest archive gets a blob list line naming the canary's "victim", and the index a
     * blob row for it: what made the old code open and unlink it */
    const char *line = outside("victim");
    char edit[600], after[1000];
    snprintf(edit, sizeof edit, "printf '%%s\\n' '%s' >> blob-list.txt", line);
    snprintf(after, sizeof after, "sqlite3 index.sqlite \"INSERT INTO blob(did, cid, size, snapshot_id) VALUES ('%s', '%s', 1, '$id')\"",
             did, line);
    rewrite_newest(dir, edit, after);
    all_refuse(dir, "blob-list.txt", "line ");
    json_decref(seed);
}

/* verify --rebuild-index makes the index from the manifests: one naming a path is refused */
Test(hostile_backup, manifest_ids_that_are_paths_are_refused_by_the_rebuild, .fini = teardown, .timeout = 300) {
    make_backup();
    const char *dir = tampered("bad-manifest", NULL);
    char edit[800];
    snprintf(edit, sizeof edit, "sed -i 's|\"id\": \"[^\"]*\"|\"id\": \"%s\"|' manifest.json && grep -q canary manifest.json",
             outside(NULL));
    rewrite_newest(dir, edit, "rm index.sqlite");
    itest_result r = itest_run(itest_bin(), "verify", dir, "--rebuild-index", NULL);
    assert_canary_intact("verify --rebuild-index");
    cr_assert_neq(r.status, 0, "the rebuild must refuse the archive:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.err, "manifest") && strstr(r.err, "'../../"), "the error names the manifest and the id:\n%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}

Test(hostile_backup, a_read_only_backup_verifies, .fini = teardown, .timeout = 300) {
    make_backup();
    char ro[600];
    snprintf(ro, sizeof ro, "%s", itest_path("read-only"));
    mkdir(ro, 0700);
    if (mount(good, ro, NULL, MS_BIND, NULL) != 0 || mount(NULL, ro, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) {
        umount(ro);
        cr_skip_test("cannot make a read-only bind mount here (needs root): the read-only backup is not tested");
        return;
    }
    char probe[700];
    snprintf(probe, sizeof probe, "%s/probe", ro);
    int fd = open(probe, O_WRONLY | O_CREAT, 0600);
    bool writable = fd >= 0;
    if (fd >= 0) close(fd);
    itest_result r = run_verify(ro);
    umount(ro);
    cr_assert_not(writable, "the bind mount must be read-only");
    cr_assert_eq(r.status, 0, "verify of a read-only backup:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "2 snapshot(s)"), "%s", r.out);
    itest_result_free(&r);
    json_decref(seed);
}

/* The checks refuse only what pdsmove does not write: the untampered backup still migrates
 * (migrate --from-backup, the path `restore --password-file` takes), and a file an earlier
 * assembly left in the work directory does not survive into it. */
Test(hostile_backup, the_untampered_backup_still_migrates, .fini = teardown, .timeout = 300) {
    make_backup();
    char key[600], journal[600];
    snprintf(key, sizeof key, "%s", itest_write_file("pds-rotation.hex", itest_str(itest_pds("old"), "rotationKeyHex")));
    chmod(key, 0600);
    snprintf(journal, sizeof journal, "%s", itest_path("good-journal.sqlite"));
    /* an earlier assembly left preferences in the work directory; this snapshot has none (made
     * without a password): they must not survive into it */
    char stale[700];
    snprintf(stale, sizeof stale, "%s", itest_path("work"));
    mkdir(stale, 0700);
    strcat(stale, "/snapshot");
    mkdir(stale, 0700);
    strcat(stale, "/preferences.json");
    FILE *f = fopen(stale, "w");
    cr_assert_not_null(f);
    fputs("{\"preferences\": [{\"$type\": \"app.bsky.actor.defs#stalePref\"}]}\n", f);
    fclose(f);
    const char *argv[ITEST_MAX_ARGS + 1];
    const char *extra[] = {"--from-backup", good, "--rotation-key", key, "--yes", NULL};
    itest_migrate_argv(argv, seed, NULL, itest_str(itest_pds("old"), "url"), itest_str(itest_pds("new"), "url"), itest_plc_url(),
                       journal, extra);
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "migrate --from-backup of an untampered backup:\n%s\n%s", r.out, r.err);
    cr_assert(strstr(r.err, "the snapshot has no preferences") || strstr(r.out, "the snapshot has no preferences"),
              "the stale preferences.json of an earlier assembly survived:\n%s\n%s", r.out, r.err);
    itest_result_free(&r);
    char *pds = itest_plc_pds(itest_plc_url(), did);
    cr_assert_str_eq(pds, itest_str(itest_pds("new"), "url"));
    free(pds);
    json_decref(seed);
}
