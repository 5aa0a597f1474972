/* test_backup.c — `pdsmove backup` and `pdsmove verify` against the live testbed: a full
 * snapshot, a day of changes, an incremental snapshot that verifies as a complete repo with
 * the new record count; one damaged byte found and named; a backup killed at several points
 * and re-run leaves no half archive and verifies. */
#include <signal.h>

#include "itest.h"

static void teardown(void) { itest_cleanup(); }

static itest_result run_backup(json_t *seed, const char *dir, bool with_password) {
    static char pw[512];
    snprintf(pw, sizeof pw, "%s", itest_path("pw"));
    FILE *f = fopen(pw, "w");
    fputs(itest_str(seed, "password"), f);
    fclose(f);
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

Test(backup, killed_at_several_points_leaves_no_half_archive, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "bkk");
    char dir[512], snaps[600];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    snprintf(snaps, sizeof snaps, "%s/snapshots", dir);
    const long delays_ms[] = {60, 150, 300, 500};
    for (size_t i = 0; i < sizeof delays_ms / sizeof delays_ms[0]; i++) {
        const char *argv[] = {itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds",
                              itest_str(itest_pds("old"), "url"), "--plc-url", itest_plc_url(), NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        pid_t pid;
        cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        struct timespec ts = {0, delays_ms[i] * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* a killed pack may leave "<name>.tar.zst.tmp", never a final name over a half file:
         * every final archive present must be complete (checked by verify below) */
    }
    itest_result r = run_backup(seed, dir, false);
    cr_assert_eq(r.status, 0, "the re-run failed:\n%s", r.err);
    itest_result_free(&r);
    cr_assert_eq(count_files(snaps, ".tmp"), 0, "the re-run must finish (and so replace) the temporary archive");
    r = itest_run(itest_bin(), "verify", dir, NULL);
    cr_assert_eq(r.status, 0, "verify after kills:\n%s", r.err);
    cr_assert(itest_line_has(r.err, "records", json_integer_value(json_object_get(json_object_get(seed, "inventory"), "total"))),
              "%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}
