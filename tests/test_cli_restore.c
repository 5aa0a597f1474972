/* test_cli_restore.c — `pdsmove restore`'s interface without servers: the two ways (rotation
 * key when the old PDS is gone, password when it works) and the usage errors that say which
 * options to give. The restores themselves run against the testbed
 * (tests/integration/test_restore.c). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_testutil.h"
#include "pdsmove/backup_index.h"
#include "pdsmove/backup_names.h"

static char dir[64], state_env[160];

static void setup(void) {
    scratch_make(dir, sizeof dir, "cli-restore");
    snprintf(state_env, sizeof state_env, "PDSMOVE_STATE_DIR=%s/state", dir);
}

static void teardown(void) {
    cli_kept_free();
    scratch_remove(dir);
}

TestSuite(cli_restore, .init = setup, .fini = teardown, .timeout = 60);

static cli_result run(const char *const *args) {
    const char *env[] = {state_env, "PDSMOVE_PASSWORD", "PDSMOVE_NEW_PASSWORD", NULL};
    const cli_run_opts o = {.env = env};
    return cli_run_kept(&o, args);
}
#define RESTORE(...) run((const char *const[]){"restore", __VA_ARGS__, NULL})

static void write_password(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("secret\n", f);
    fclose(f);
    chmod(path, 0600);
}

Test(cli_restore, help_explains_both_ways) {
    cli_result r = RESTORE("--help");
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "the old PDS is gone") && strstr(r.out, "the old PDS still works"), "%s", r.out);
    cr_assert(strstr(r.out, "--from-backup"), "the help names the migrate command it becomes: %s", r.out);
}

Test(cli_restore, neither_way_named_is_a_usage_error_naming_both_options) {
    cli_result r = RESTORE("/nonexistent", "--to", "http://localhost:1", "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--rotation-key FILE") && strstr(r.err, "--password-file FILE"), "%s", r.err);
}

Test(cli_restore, both_ways_at_once_are_refused) {
    cli_result r = RESTORE("/nonexistent", "--to", "http://localhost:1", "--rotation-key", "k", "--new-email", "a@b.c",
                           "--plc-token-file", "t");
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--plc-token-file belongs to a restore while the old PDS works"), "%s", r.err);
}

Test(cli_restore, rotation_key_way_needs_the_email) {
    cli_result r = RESTORE("/nonexistent", "--to", "http://localhost:1", "--rotation-key", "k");
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--new-email"), "%s", r.err);
}

/* A backup directory whose index lists snapshots of these DIDs (no archives: the CLI looks only
 * at the index before it goes on). */
static void make_backup(const char *bk, const char *const *dids) {
    mkdir(bk, 0700);
    backup_index *idx = NULL;
    err_t e;
    cr_assert_eq(backup_index_open(bk, &idx, &e), ERR_OK, "%s", e.msg);
    for (int i = 0; dids[i]; i++) {
        backup_snapshot s = {.records = 1};
        char prefix[128];
        cr_assert(backup_name_did_prefix(dids[i], prefix, sizeof prefix));
        /* ids and archive names as backup writes them (backup_names.c checks them on open) */
        snprintf(s.id, sizeof s.id, "%s-2026010%dT000000Z", prefix, i + 1);
        snprintf(s.did, sizeof s.did, "%s", dids[i]);
        snprintf(s.created_at, sizeof s.created_at, "2026-01-0%dT00:00:00Z", i + 1);
        snprintf(s.archive, sizeof s.archive, "%s.tar.zst", s.id);
        snprintf(s.commit, sizeof s.commit, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm");
        cr_assert_eq(backup_index_add_snapshot(idx, &s, &e), ERR_OK, "%s", e.msg);
    }
    backup_index_close(idx);
}

Test(cli_restore, password_way_takes_the_only_account_and_asks_which_of_several) {
    char pw[128], one[128], two[128];
    snprintf(pw, sizeof pw, "%s/pw", dir);
    write_password(pw);
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    make_backup(one, (const char *const[]){"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", NULL});
    make_backup(two, (const char *const[]){"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", NULL});
    /* one account: taken, so the run goes on to the next thing it needs (the new password) */
    cli_result r = RESTORE(one, "--to", "http://localhost:1", "--password-file", pw);
    cr_assert_null(strstr(r.err, "--did"), "it should not ask for --did: %s", r.err);
    cr_assert(strstr(r.err, "password for the new account"), "%s", r.err);
    /* several: say so, and how to choose */
    r = RESTORE(two, "--to", "http://localhost:1", "--password-file", pw);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "holds several accounts") && strstr(r.err, "--did DID or --snapshot ID"), "%s", r.err);
}

Test(cli_restore, password_way_with_an_unknown_snapshot_says_so) {
    char pw[128], bk[128];
    snprintf(pw, sizeof pw, "%s/pw", dir);
    snprintf(bk, sizeof bk, "%s/bk", dir);
    mkdir(bk, 0700);
    write_password(pw);
    char idx[200];
    snprintf(idx, sizeof idx, "%s/index.sqlite", bk); /* an empty backup */
    FILE *fi = fopen(idx, "w");
    cr_assert_not_null(fi);
    fclose(fi);
    cli_result r = RESTORE(bk, "--to", "http://localhost:1", "--password-file", pw, "--snapshot", "nope");
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "nope"), "%s", r.err);
}

/* DIR is checked before the new password is asked for (no --new-password-file, no
 * $PDSMOVE_NEW_PASSWORD, no terminal: asking would fail with a password error instead) */
Test(cli_restore, password_way_checks_the_backup_dir_before_asking_anything) {
    char pw[128], bk[128];
    snprintf(pw, sizeof pw, "%s/pw", dir);
    snprintf(bk, sizeof bk, "%s/not-a-backup", dir);
    mkdir(bk, 0700);
    write_password(pw);
    cli_result r = RESTORE(bk, "--to", "http://localhost:1", "--password-file", pw, "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "not-a-backup is not a pdsmove backup"), "%s", r.err);
    cr_assert_null(strstr(r.err, "password for the new account"), "asked for a password first: %s", r.err);
}

/* The rotation key that controls the identity: refused while others can read it, the chmod
 * named, before the backup or any server is looked at. (Password files go through the reader
 * test_cli_migrate.c checks.) */
Test(cli_restore, a_rotation_key_others_can_read_is_refused_naming_the_chmod) {
    char pw[128], key[128], want[200];
    snprintf(pw, sizeof pw, "%s/pw", dir);
    snprintf(key, sizeof key, "%s/rotation.hex", dir);
    write_password(pw);
    FILE *f = fopen(key, "w");
    cr_assert_not_null(f);
    fputs("9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", f);
    fclose(f);
    cr_assert_eq(chmod(key, 0644), 0);
    cli_result r = RESTORE(dir, "--to", "http://localhost:1", "--rotation-key", key, "--new-email", "a@example.com",
                           "--new-password-file", pw, "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
    snprintf(want, sizeof want, "chmod 600 %s", key);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, want), "the refusal should name `%s`:\n%s", want, r.err);
    cr_assert_null(strstr(r.err, "9085d2be"), "the refusal echoes the key:\n%s", r.err);

    cr_assert_eq(chmod(key, 0600), 0);
    r = RESTORE(dir, "--to", "http://localhost:1", "--rotation-key", key, "--new-email", "a@example.com",
                "--new-password-file", pw, "--did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa");
    cr_assert_null(strstr(r.err, "chmod"), "a 0600 key is accepted (the run fails later, on the missing backup):\n%s", r.err);
}
