/* test_cli_car.c — `pdsmove car verify|ls` run as a user would: the built binary
 * (PDSMOVE_BIN, set by `zig build test`) on signed repo CARs written into a scratch
 * directory — good ones in any block order, and truncated, corrupted and incomplete ones —
 * checking exit codes and messages. Fails (does not skip) when PDSMOVE_BIN is missing. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_testutil.h"
#include "repo_testutil.h"

static char tmpdir[64];

/* Each result stays valid for the rest of the test (cli_run_kept). */
typedef cli_result run_t;

static void setup(void) {
    strcpy(tmpdir, "/tmp/pdsmove-cli-car-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
}

static void teardown(void) {
    cli_kept_free();
    DIR *d = opendir(tmpdir);
    if (d == NULL) return;
    struct dirent *de;
    char p[256];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(cli_car, .init = setup, .fini = teardown, .timeout = 120);

static void tmp_path(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", tmpdir, name); }

static run_t *run(const char *const *args) {
    static run_t r;
    r = cli_run_kept(NULL, args);
    return &r;
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

/* File offset of the data of block cid inside the CAR at path. */
static off_t data_offset_of(const char *path, const cid_t *cid) {
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    car_reader *r = NULL;
    err_t e = {0};
    cr_assert_eq(car_reader_open(fd, &r, &e), ERR_OK, "%s", e.msg);
    off_t found = -1;
    for (;;) {
        cid_t c;
        const uint8_t *d;
        size_t len;
        cr_assert_eq(car_reader_next(r, &c, &d, &len, &e), ERR_OK, "%s", e.msg);
        if (!d) break;
        if (cid_eq(&c, cid)) { found = (off_t)car_reader_data_offset(r); break; }
    }
    car_reader_free(r);
    close(fd);
    cr_assert_geq(found, 0, "block present in %s", path);
    return found;
}

static off_t size_of(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t at) {
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void cid_str(const cid_t *c, char *s) { cid_format(c, s, CID_STR_MAX); }

Test(cli_car, help_for_each_command) {
    run_t *r = RUN("car", "--help");
    cr_assert_eq(r->status, 0);
    cr_assert(strstr(r->out, "verify FILE") && strstr(r->out, "ls FILE"), "%s", r->out);
    r = RUN("car", "verify", "--help");
    cr_assert_eq(r->status, 0);
    cr_assert(strstr(r->out, "usage: pdsmove car verify") && strstr(r->out, "--did-key"), "%s", r->out);
    r = RUN("car", "ls", "-h");
    cr_assert_eq(r->status, 0);
    cr_assert(strstr(r->out, "usage: pdsmove car ls"), "%s", r->out);
    r = RUN("car");
    cr_assert_eq(r->status, 2, "no subcommand is a usage error");
}

Test(cli_car, verify_accepts_a_good_repo_and_reports_it) {
    test_repo repo;
    test_repo_init(&repo, 200);
    char path[256];
    tmp_path(path, sizeof path, "repo.car");
    test_repo_write(&repo, path, TR_FORWARD, NULL);
    run_t *r = RUN("car", "verify", path, "--did-key", repo.did_key);
    cr_assert_eq(r->status, 0, "exit %d, stderr: %s", r->status, r->err);
    char cs[CID_STR_MAX], line[256];
    cid_str(&repo.commit, cs);
    cr_assert(strstr(r->out, TR_DID), "DID: %s", r->out);
    cr_assert(strstr(r->out, TR_REV), "rev: %s", r->out);
    cr_assert(strstr(r->out, cs), "commit CID: %s", r->out);
    cr_assert(strstr(r->out, "valid, by ") && strstr(r->out, repo.did_key), "signature: %s", r->out);
    cr_assert(strstr(r->out, "records:    200 in 3 collections"), "%s", r->out);
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "  %-40s %zu\n", tr_collections[i], repo.per_collection[i]);
        cr_assert(strstr(r->out, line), "count for %s: %s", tr_collections[i], r->out);
    }
    blockstore_stats st = blockstore_get_stats(repo.bs);
    snprintf(line, sizeof line, "blocks:     %llu (%llu bytes of data), 0 repeated", (unsigned long long)st.blocks,
             (unsigned long long)st.data_bytes);
    cr_assert(strstr(r->out, line), "want \"%s\" in: %s", line, r->out);
    cr_assert_eq(r->err[0], 0, "nothing on stderr: %s", r->err);

    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 0, "%s", r->err);
    cr_assert(strstr(r->out, "not checked"), "without --did-key: %s", r->out);
    test_repo_free(&repo);
}

Test(cli_car, verify_accepts_reversed_and_repeated_blocks) {
    test_repo repo;
    test_repo_init(&repo, 120);
    char path[256];
    tmp_path(path, sizeof path, "rev.car");
    test_repo_write(&repo, path, TR_REVERSED, NULL);
    run_t *r = RUN("car", "verify", "--did-key", repo.did_key, path);
    cr_assert_eq(r->status, 0, "reversed: %s", r->err);
    tmp_path(path, sizeof path, "dup.car");
    test_repo_write(&repo, path, TR_DUPLICATED, NULL);
    r = RUN("car", "verify", "--did-key", repo.did_key, path);
    cr_assert_eq(r->status, 0, "duplicated: %s", r->err);
    char line[128];
    snprintf(line, sizeof line, "%llu repeated", (unsigned long long)blockstore_get_stats(repo.bs).blocks);
    cr_assert(strstr(r->out, line), "every block repeated once: %s", r->out);
    test_repo_free(&repo);
}

Test(cli_car, verify_accepts_an_empty_repo) {
    test_repo repo;
    test_repo_init(&repo, 0);
    char path[256];
    tmp_path(path, sizeof path, "empty.car");
    test_repo_write(&repo, path, TR_FORWARD, NULL);
    run_t *r = RUN("car", "verify", path, "--did-key", repo.did_key);
    cr_assert_eq(r->status, 0, "%s", r->err);
    cr_assert(strstr(r->out, "records:    0 in 0 collections"), "%s", r->out);
    test_repo_free(&repo);
}

/* Truncated, corrupted and incomplete files: each fails with its own message. */
Test(cli_car, damaged_files_fail_with_distinct_messages) {
    test_repo repo;
    test_repo_init(&repo, 150);
    char path[256], cs[CID_STR_MAX], want[512];

    tmp_path(path, sizeof path, "truncated.car");
    test_repo_write(&repo, path, TR_FORWARD, NULL);
    cr_assert_eq(truncate(path, size_of(path) - 10), 0);
    run_t *r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1, "truncated: exit %d", r->status);
    cr_assert(strstr(r->err, path) && strstr(r->err, "truncated"), "truncated: %s", r->err);
    cr_assert(!strstr(r->err, "mismatch") && !strstr(r->err, "missing"), "only truncation: %s", r->err);

    /* a flipped byte inside a record's data */
    const cid_t *victim = &repo.recs[42].cid;
    cid_str(victim, cs);
    tmp_path(path, sizeof path, "flipped.car");
    test_repo_write(&repo, path, TR_FORWARD, NULL);
    off_t at = data_offset_of(path, victim) + 5;
    flip_byte(path, at);
    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1, "flipped: exit %d", r->status);
    cr_assert(strstr(r->err, "hash mismatch") && strstr(r->err, cs), "flipped: names block %s: %s", cs, r->err);
    cr_assert(!strstr(r->err, "truncated") && !strstr(r->err, "missing"), "only the mismatch: %s", r->err);

    /* a record block left out */
    tmp_path(path, sizeof path, "no-record.car");
    test_repo_write(&repo, path, TR_FORWARD, victim);
    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1, "missing record: exit %d", r->status);
    snprintf(want, sizeof want, "record block %s (%s) is missing", cs, repo.recs[42].key);
    cr_assert(strstr(r->err, want), "want \"%s\" in: %s", want, r->err);
    /* `ls` checks record blocks after listing the tree: the same error, exit 1 */
    r = RUN("car", "ls", path);
    cr_assert_eq(r->status, 1, "ls, missing record: exit %d", r->status);
    cr_assert(strstr(r->err, want), "ls: want \"%s\" in: %s", want, r->err);

    /* the MST root node left out */
    cid_str(&repo.data, cs);
    tmp_path(path, sizeof path, "no-node.car");
    test_repo_write(&repo, path, TR_FORWARD, &repo.data);
    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1, "missing node: exit %d", r->status);
    snprintf(want, sizeof want, "MST node %s (referenced by the commit) is missing", cs);
    cr_assert(strstr(r->err, want), "want \"%s\" in: %s", want, r->err);

    /* the commit left out */
    cid_str(&repo.commit, cs);
    tmp_path(path, sizeof path, "no-commit.car");
    test_repo_write(&repo, path, TR_FORWARD, &repo.commit);
    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1);
    snprintf(want, sizeof want, "the commit block %s (the CAR's root) is missing", cs);
    cr_assert(strstr(r->err, want), "want \"%s\" in: %s", want, r->err);
    test_repo_free(&repo);
}

Test(cli_car, wrong_key_fails_the_signature_check) {
    test_repo repo;
    test_repo_init(&repo, 10);
    char path[256];
    tmp_path(path, sizeof path, "repo.car");
    test_repo_write(&repo, path, TR_FORWARD, NULL);
    key_priv other;
    err_t e = {0};
    cr_assert_eq(key_priv_generate(&other, KEY_P256, &e), ERR_OK);
    char dk[KEY_DID_MAX];
    key_pub_to_did_key(&other.pub, dk, sizeof dk);
    run_t *r = RUN("car", "verify", path, "--did-key", dk);
    cr_assert_eq(r->status, 1, "exit %d", r->status);
    cr_assert(strstr(r->err, "does not verify") && strstr(r->err, dk), "%s", r->err);
    key_priv_wipe(&other);
    test_repo_free(&repo);
}

Test(cli_car, ls_lists_every_record_in_key_order) {
    test_repo repo;
    test_repo_init(&repo, 250);
    char path[256];
    tmp_path(path, sizeof path, "repo.car");
    test_repo_write(&repo, path, TR_REVERSED, NULL);
    run_t *r = RUN("car", "ls", path);
    cr_assert_eq(r->status, 0, "%s", r->err);
    char *p = r->out;
    for (size_t i = 0; i < repo.n; i++) {
        char cs[CID_STR_MAX], line[256];
        cid_str(&repo.recs[i].cid, cs);
        int n = snprintf(line, sizeof line, "%s\t%s\n", repo.recs[i].key, cs);
        cr_assert(strncmp(p, line, (size_t)n) == 0, "line %zu: want %s", i, line);
        p += n;
    }
    cr_assert_eq(*p, 0, "nothing after the records: %s", p);
    test_repo_free(&repo);
}

Test(cli_car, usage_errors_and_unreadable_files) {
    run_t *r = RUN("car", "verify");
    cr_assert_eq(r->status, 2);
    cr_assert(strstr(r->err, "missing FILE"), "%s", r->err);
    r = RUN("car", "verify", "x.car", "--bogus");
    cr_assert_eq(r->status, 2);
    cr_assert(strstr(r->err, "--bogus"), "%s", r->err);
    r = RUN("car", "verify", "x.car", "--did-key", "did:key:nonsense");
    cr_assert_eq(r->status, 2, "bad did:key is a usage error: %s", r->err);
    r = RUN("car", "verify", "x.car", "--did-key");
    cr_assert_eq(r->status, 2);
    r = RUN("car", "ls", "a.car", "b.car");
    cr_assert_eq(r->status, 2);
    r = RUN("car", "frobnicate");
    cr_assert_eq(r->status, 2);
    char path[256];
    tmp_path(path, sizeof path, "does-not-exist.car");
    r = RUN("car", "verify", path);
    cr_assert_eq(r->status, 1);
    cr_assert(strstr(r->err, "cannot open") && strstr(r->err, path), "%s", r->err);
    tmp_path(path, sizeof path, "not-a-car.txt");
    FILE *f = fopen(path, "w");
    fputs("hello, this is not a CAR file\n", f);
    fclose(f);
    r = RUN("car", "ls", path);
    cr_assert_eq(r->status, 1);
    cr_assert(strstr(r->err, path), "%s", r->err);
}

Test(cli_car, verifies_the_checked_in_fixture_repo) {
    const char *path = PDSMOVE_FIXTURES "/car/repo-30.car";
    run_t *r = RUN("car", "verify", "--did-key", "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", path);
    cr_assert_eq(r->status, 0, "%s", r->err);
    cr_assert(strstr(r->out, "commit:     bafyreig4x6js4uxjx5sht62n2rsx4gvxgi7fw7b3vimm2zczrf6726ehfm (version 3)"), "%s", r->out);
    cr_assert(strstr(r->out, "mst root:   bafyreiehs5ixbpgfhuzd3abcka6aes2wkvbxzqrhokmgk2ichwlkb74t5y (14 nodes"), "%s", r->out);
    cr_assert(strstr(r->out, "records:    30 in 3 collections"), "%s", r->out);
    cr_assert(strstr(r->out, "blocks:     45 (5505 bytes of data), 0 repeated"), "%s", r->out);
    r = RUN("car", "ls", path);
    cr_assert_eq(r->status, 0, "%s", r->err);
    size_t lines = 0;
    for (const char *p = r->out; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 30);
}

/* No byte below 0x20 (newline and tab excepted, when lines_ok: the output's own), no DEL, no C1
 * CSI (0x9b) in s. */
static void assert_no_controls(const char *s, bool lines_ok, const char *what) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p == '\n' || *p == '\t') && lines_ok) continue;
        cr_assert(*p >= 0x20 && *p != 0x7f && !(p[0] == 0xc2 && p[1] == 0x9b), "%s: control byte 0x%02x at offset %td in:\n%s", what,
                  *p, (const char *)p - s, s);
    }
}

/* A CAR whose commit names a "DID" and a rev made of terminal escapes (the commit decoder asks
 * only for "did:" in front), and a file name that carries them too: nothing of them may reach
 * the terminal raw — neither in the report, nor in an error that quotes the name. */
Test(cli_car, escape_sequences_from_a_crafted_car_never_reach_the_terminal) {
    const char *evil_did = "did:\x1b[2J\x1b[H\x1b[31mPWNED\x1b[0m\n<0>journal-line";
    const char *evil_rev = "\x1b]0;owned\x07\xc2\x9b" "31m\r\xe2\x80\xaegnp";
    test_repo repo;
    test_repo_init(&repo, 3);
    cid_t honest = repo.commit;
    buf_t cb;
    buf_init(&cb, 0);
    err_t e = {0};
    cr_assert_eq(commit_build_signed(evil_did, &repo.data, evil_rev, NULL, &repo.key, &cb, &repo.commit, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(blockstore_put(repo.bs, &repo.commit, cb.data, cb.len, &e), ERR_OK, "%s", e.msg);
    buf_free(&cb);
    char path[256];
    tmp_path(path, sizeof path, "evil.car");
    test_repo_write(&repo, path, TR_FORWARD, &honest);

    run_t *r = RUN("car", "verify", path, "--did-key", repo.did_key);
    cr_assert_eq(r->status, 0, "the crafted commit is still a valid repo: exit %d, %s", r->status, r->err);
    assert_no_controls(r->out, true, "car verify's report");
    cr_assert(strstr(r->out, "did:        did:\\x1b[2J\\x1b[H\\x1b[31mPWNED\\x1b[0m\\x0a<0>journal-line\n"), "the DID, escaped, on one line:\n%s", r->out);
    cr_assert(strstr(r->out, "rev:        \\x1b]0;owned\\x07\\xc2\\x9b31m\\x0d\\xe2\\x80\\xaegnp\n"), "the rev, escaped:\n%s", r->out);
    r = RUN("car", "ls", path);
    cr_assert_eq(r->status, 0, "%s", r->err);
    assert_no_controls(r->out, true, "car ls");

    /* an archive name with escapes, in an error that quotes it: one line, escaped */
    char evil_path[256];
    tmp_path(evil_path, sizeof evil_path, "x\x1b[2J\n<0>PWNED.car");
    cli_write_text(evil_path, "not a CAR\n");
    r = RUN("car", "verify", evil_path);
    cr_assert_eq(r->status, 1, "%s", r->err);
    assert_no_controls(r->err, true, "the error");
    cr_assert(strchr(r->err, '\n') == r->err + strlen(r->err) - 1, "the error should be one line:\n%s", r->err);
    cr_assert(strstr(r->err, "x\\x1b[2J\\x0a<0>PWNED.car"), "the name, escaped:\n%s", r->err);
    test_repo_free(&repo);
}
