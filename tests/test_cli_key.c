/* test_cli_key.c — `pdsmove key generate|show` run as a user would: the built binary
 * (PDSMOVE_BIN, set by `zig build test`) in a scratch directory; exit codes, output, and the
 * key file's mode and contents. Fails (does not skip) when PDSMOVE_BIN is missing. */
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

static char tmpdir[64];

/* Each result stays valid for the rest of the test (cli_run_kept). */
typedef cli_result run_t;

static void setup(void) {
    strcpy(tmpdir, "/tmp/pdsmove-cli-key-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
}

static void teardown(void) {
    cli_kept_free();
    DIR *d = opendir(tmpdir);
    if (d == NULL) return;
    struct dirent *de;
    char p[sizeof tmpdir + 1 + sizeof de->d_name];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(cli_key, .init = setup, .fini = teardown);

static void path_in_tmp(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", tmpdir, name); }

static void slurp(const char *path, char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = 0;
    fclose(f);
}

static void run(run_t *r, const char *const *args) { *r = cli_run_kept(NULL, args); }

#define RUN(r, ...)                                       \
    do {                                                  \
        const char *const args_[] = {__VA_ARGS__, NULL}; \
        run((r), args_);                                  \
    } while (0)

/* The did:key printed on a "did:key: ..." line, copied into out. */
static void did_from_output(const char *text, char *out, size_t size) {
    const char *p = strstr(text, "did:key: did:key:z");
    cr_assert_not_null(p, "no did:key line in output:\n%s", text);
    p += strlen("did:key: ");
    size_t n = strcspn(p, " \t\r\n");
    cr_assert_lt(n, size, "did:key too long");
    memcpy(out, p, n);
    out[n] = 0;
}

Test(cli_key, generate_writes_a_0600_multikey_file_and_show_prints_the_same_did_key) {
    const struct { const char *type; const char *did_prefix; } types[] = {
        {"k256", "did:key:zQ3s"}, {"p256", "did:key:zDna"}};
    for (size_t t = 0; t < 2; t++) {
        char key_path[128];
        path_in_tmp(key_path, sizeof key_path, types[t].type);
        run_t g, s;
        RUN(&g, "key", "generate", "--type", types[t].type, "--out", key_path);
        cr_assert_eq(g.status, 0, "%s generate exit %d; stderr:\n%s", types[t].type, g.status, g.err);
        struct stat st;
        cr_assert_eq(stat(key_path, &st), 0, "%s: key file not created", types[t].type);
        cr_assert(S_ISREG(st.st_mode), "%s: not a regular file", types[t].type);
        cr_assert_eq(st.st_mode & 07777, 0600, "%s: key file mode is %o, expected 600", types[t].type, (unsigned)(st.st_mode & 07777));

        char content[256];
        slurp(key_path, content, sizeof content);
        cr_assert_eq(content[0], 'z', "%s: key file should hold a multikey, has: %s", types[t].type, content);
        size_t line_len = strcspn(content, "\n");
        cr_assert_eq(content[line_len], '\n', "%s: key file is one line ending in a newline", types[t].type);
        cr_assert_eq(content[line_len + 1], 0, "%s: key file has more than one line", types[t].type);
        content[line_len] = 0;
        cr_assert_null(strstr(g.out, content), "%s: generate printed the private key", types[t].type);
        cr_assert_null(strstr(g.err, content), "%s: generate printed the private key to stderr", types[t].type);

        char did_g[128], did_s[128];
        did_from_output(g.out, did_g, sizeof did_g);
        cr_assert(!strncmp(did_g, types[t].did_prefix, strlen(types[t].did_prefix)), "%s: did:key %s has the wrong prefix", types[t].type, did_g);
        cr_assert(strstr(g.out, key_path) != NULL, "%s: generate should say where the key went:\n%s", types[t].type, g.out);
        cr_assert(strstr(g.out, "hint:") != NULL, "%s: generate should print a hint on keeping the file safe:\n%s", types[t].type, g.out);

        RUN(&s, "key", "show", key_path);
        cr_assert_eq(s.status, 0, "%s show exit %d; stderr:\n%s", types[t].type, s.status, s.err);
        did_from_output(s.out, did_s, sizeof did_s);
        cr_assert_str_eq(did_s, did_g, "%s: show and generate disagree", types[t].type);
        char type_line[32];
        snprintf(type_line, sizeof type_line, "type:    %s", types[t].type);
        cr_assert(strstr(s.out, type_line) != NULL, "%s: show should print the type:\n%s", types[t].type, s.out);
        cr_assert_null(strstr(s.out, content), "%s: show printed the private key", types[t].type);
        cr_assert_eq(s.err[0], 0, "%s: show of a 0600 file should be silent on stderr, got:\n%s", types[t].type, s.err);
    }
    /* two keys differ */
    char a[128], b[128];
    run_t r;
    path_in_tmp(a, sizeof a, "k256");
    RUN(&r, "key", "show", a);
    char did_a[128], did_b[128];
    did_from_output(r.out, did_a, sizeof did_a);
    path_in_tmp(b, sizeof b, "k256-2");
    RUN(&r, "key", "generate", "--out", b);
    cr_assert_eq(r.status, 0, "generate with the default type: %s", r.err);
    did_from_output(r.out, did_b, sizeof did_b);
    cr_assert(!strncmp(did_b, "did:key:zQ3s", 12), "default type should be k256: %s", did_b);
    cr_assert_str_neq(did_a, did_b, "two generated keys are the same");
}

Test(cli_key, generate_refuses_to_overwrite_an_existing_file) {
    char key_path[128];
    path_in_tmp(key_path, sizeof key_path, "existing");
    FILE *f = fopen(key_path, "w");
    cr_assert_not_null(f);
    fputs("precious\n", f);
    fclose(f);
    run_t r;
    RUN(&r, "key", "generate", "--out", key_path);
    cr_assert_eq(r.status, 1, "overwrite must fail with exit 1, got %d", r.status);
    cr_assert(strstr(r.err, "pdsmove: error:") != NULL && strstr(r.err, "already exists") != NULL,
              "overwrite refusal should say the file exists:\n%s", r.err);
    char content[64];
    slurp(key_path, content, sizeof content);
    cr_assert_str_eq(content, "precious\n", "the existing file was changed");
    cr_assert_null(strstr(r.out, "did:key:"), "a refused generate must not print a did:key");

    /* a dangling symlink is not followed either */
    char link_path[128];
    path_in_tmp(link_path, sizeof link_path, "link");
    char target[128];
    path_in_tmp(target, sizeof target, "link-target");
    cr_assert_eq(symlink(target, link_path), 0);
    RUN(&r, "key", "generate", "--out", link_path);
    cr_assert_eq(r.status, 1, "generate through a symlink must fail, got %d", r.status);
    cr_assert_neq(access(target, F_OK), 0, "generate followed a symlink");
}

Test(cli_key, generate_rejects_bad_usage_with_exit_2) {
    char key_path[128];
    path_in_tmp(key_path, sizeof key_path, "k");
    const struct { const char *args[6]; const char *needle; } cases[] = {
        {{"key", "generate", "--type", "ed25519", "--out", key_path}, "unknown key type 'ed25519'"},
        {{"key", "generate", "--type", "", "--out", key_path}, "unknown key type"},
        {{"key", "generate", NULL}, "--out"},
        {{"key", "generate", "--out", NULL}, "--out"},
        {{"key", "generate", "--type", NULL}, "--type"},
        {{"key", "generate", "--out", key_path, "--bogus", NULL}, "unknown option '--bogus'"},
        {{"key", "generate", "--out", key_path, "extra", NULL}, "unexpected argument 'extra'"},
        {{"key", "frobnicate", NULL}, "unknown key command 'frobnicate'"},
        {{"key", "show", NULL}, "missing FILE"},
        {{"key", "show", key_path, key_path, NULL}, "unexpected argument"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[8] = {0};
        for (size_t j = 0; j < 6 && cases[i].args[j]; j++) args[j] = cases[i].args[j];
        run_t r;
        run(&r, args);
        cr_assert_eq(r.status, 2, "case %zu (%s): expected exit 2, got %d; stderr:\n%s", i, cases[i].needle, r.status, r.err);
        cr_assert(strstr(r.err, "pdsmove: error:") != NULL, "case %zu: no error line:\n%s", i, r.err);
        cr_assert(strstr(r.err, cases[i].needle) != NULL, "case %zu: stderr should mention \"%s\":\n%s", i, cases[i].needle, r.err);
        cr_assert_neq(access(key_path, F_OK), 0, "case %zu: a key file was created despite the usage error", i);
    }
    run_t r;
    RUN(&r, "key");
    cr_assert_eq(r.status, 2, "bare `pdsmove key` should be a usage error, got %d", r.status);
    cr_assert(strstr(r.err, "usage: pdsmove key") != NULL, "bare `pdsmove key` should print usage on stderr:\n%s", r.err);
}

Test(cli_key, show_fails_clearly_on_garbage_and_missing_files) {
    char path[128];
    path_in_tmp(path, sizeof path, "garbage");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("this is not a key, it is a secret\n", f);
    fclose(f);
    chmod(path, 0600);
    run_t r;
    RUN(&r, "key", "show", path);
    cr_assert_eq(r.status, 1, "garbage: expected exit 1, got %d", r.status);
    cr_assert(strstr(r.err, "pdsmove: error:") != NULL, "garbage: no error line:\n%s", r.err);
    cr_assert(strstr(r.err, path) != NULL, "garbage: message should name the file:\n%s", r.err);
    cr_assert(strstr(r.err, "not a key") != NULL, "garbage: message should say it is not a key:\n%s", r.err);
    cr_assert_null(strstr(r.err, "secret"), "garbage: message echoes the file's content:\n%s", r.err);
    cr_assert_null(strstr(r.out, "did:key"), "garbage: printed a did:key");

    char missing[128];
    path_in_tmp(missing, sizeof missing, "missing");
    RUN(&r, "key", "show", missing);
    cr_assert_eq(r.status, 1, "missing: expected exit 1, got %d", r.status);
    cr_assert(strstr(r.err, missing) != NULL && strstr(r.err, "No such file") != NULL, "missing:\n%s", r.err);
}

Test(cli_key, show_reads_a_pds_hex_key_and_refuses_it_while_others_can_read_it) {
    char path[128];
    path_in_tmp(path, sizeof path, "pds-rotation.hex");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    /* first key of the interop w3c_didkey_K256.json fixture */
    fputs("9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c\n", f);
    fclose(f);
    const mode_t loose[] = {0644, 0640, 0604, 0620};
    char want[200];
    snprintf(want, sizeof want, "chmod 600 %s", path);
    run_t r;
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        cr_assert_eq(chmod(path, loose[i]), 0);
        RUN(&r, "key", "show", path);
        cr_assert_eq(r.status, 1, "mode %o: a key file others can read or change must be refused, got exit %d", (unsigned)loose[i], r.status);
        cr_assert(strstr(r.err, want) != NULL, "mode %o: the refusal should name `%s`:\n%s", (unsigned)loose[i], want, r.err);
        cr_assert_null(strstr(r.out, "did:key"), "mode %o: printed a did:key despite the refusal", (unsigned)loose[i]);
        cr_assert_null(strstr(r.out, "9085d2be"), "show printed the private key");
        cr_assert_null(strstr(r.err, "9085d2be"), "show printed the private key to stderr");
    }

    cr_assert_eq(chmod(path, 0600), 0);
    RUN(&r, "key", "show", "--", path);
    cr_assert_eq(r.status, 0, "exit %d; stderr:\n%s", r.status, r.err);
    cr_assert_eq(r.err[0], 0, "no warning expected for 0600:\n%s", r.err);
    char did[128];
    did_from_output(r.out, did, sizeof did);
    cr_assert_str_eq(did, "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme");
}

Test(cli_key, help_explains_each_command_and_exits_0) {
    const struct { const char *args[4]; const char *needles[3]; } cases[] = {
        {{"key", "--help", NULL}, {"usage: pdsmove key", "generate", "show"}},
        {{"key", "-h", NULL}, {"usage: pdsmove key", "generate", "show"}},
        {{"key", "generate", "--help", NULL}, {"usage: pdsmove key generate", "--type k256|p256", "--out FILE"}},
        {{"key", "show", "--help", NULL}, {"usage: pdsmove key show FILE", "did:key", "hex"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_t r;
        run(&r, cases[i].args);
        cr_assert_eq(r.status, 0, "help case %zu: exit %d", i, r.status);
        for (size_t j = 0; j < 3; j++)
            cr_assert(strstr(r.out, cases[i].needles[j]) != NULL, "help case %zu should mention \"%s\":\n%s", i, cases[i].needles[j], r.out);
    }
}

/* `key generate --type age`: an identity file age-keygen would write, 0600, never replaced;
 * the printed recipient is the one `age-keygen -y` derives; `key show` prints it back. */
Test(cli_key, generate_age_identity_that_age_reads) {
    char key_path[128], cmd[512], content[512];
    path_in_tmp(key_path, sizeof key_path, "age.txt");
    run_t g, s, again;
    RUN(&g, "key", "generate", "--type", "age", "--out", key_path);
    cr_assert_eq(g.status, 0, "exit %d; stderr:\n%s", g.status, g.err);
    struct stat st;
    cr_assert_eq(stat(key_path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", (unsigned)(st.st_mode & 07777));
    slurp(key_path, content, sizeof content);
    const char *sk = strstr(content, "\nAGE-SECRET-KEY-1");
    cr_assert_not_null(sk, "no identity line:\n%s", content);
    cr_assert(!strncmp(content, "# created: ", 11), "%s", content);
    cr_assert_null(strstr(g.out, "AGE-SECRET-KEY"), "generate printed the identity");
    const char *rp = strstr(g.out, "recipient: age1");
    cr_assert_not_null(rp, "no recipient printed:\n%s", g.out);
    char recipient[80];
    snprintf(recipient, sizeof recipient, "%.62s", rp + 11);
    snprintf(cmd, sizeof cmd, "age-keygen -y %s", key_path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char derived[128] = {0};
    cr_assert_not_null(fgets(derived, sizeof derived, p), "age-keygen -y printed nothing (is Debian's age installed?)");
    cr_assert_eq(pclose(p), 0, "`%s` failed", cmd);
    derived[strcspn(derived, "\n")] = 0;
    cr_assert_str_eq(derived, recipient, "age-keygen derives another recipient");
    cr_assert(strstr(content, recipient) != NULL, "the public key comment is missing");
    RUN(&s, "key", "show", key_path);
    cr_assert_eq(s.status, 0, "show: %s", s.err);
    cr_assert(strstr(s.out, recipient) != NULL, "show:\n%s", s.out);
    cr_assert_null(strstr(s.out, "AGE-SECRET-KEY"), "show printed the identity");
    RUN(&again, "key", "generate", "--type", "age", "--out", key_path);
    cr_assert_eq(again.status, 1, "overwrote an age identity file");
}

Test(cli_key, show_refuses_an_age_identity_others_can_read) {
    char key_path[128];
    path_in_tmp(key_path, sizeof key_path, "age-open.txt");
    run_t g, s;
    RUN(&g, "key", "generate", "--type", "age", "--out", key_path);
    cr_assert_eq(g.status, 0, "%s", g.err);
    cr_assert_eq(chmod(key_path, 0644), 0);
    RUN(&s, "key", "show", key_path);
    cr_assert_eq(s.status, 1, "show of a 0644 age identity: exit %d", s.status);
    cr_assert(strstr(s.err, "chmod 600") != NULL, "%s", s.err);
    cr_assert_null(strstr(s.out, "age1"), "printed the recipient anyway:\n%s", s.out);
}
