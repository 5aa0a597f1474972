/* test_cli_migrate.c — `pdsmove migrate`'s interface without servers: --help, usage errors,
 * missing secret files, no secret ever printed, --json lines even on failure; and the progress
 * display (src/cli/cli_progress.c, compiled in here: the CLI files are not in the library). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli_testutil.h"
/* libc only, so it can be built into the unit tests as is */
#include "../src/cli/cli_progress.c"

static char dir[64], state_dir[128], state_env[160];

static void setup(void) {
    scratch_make(dir, sizeof dir, "cli-migrate");
    snprintf(state_dir, sizeof state_dir, "%s/state", dir);
    snprintf(state_env, sizeof state_env, "PDSMOVE_STATE_DIR=%s", state_dir);
}

static void teardown(void) {
    cli_kept_free();
    scratch_remove(dir);
}

TestSuite(cli_migrate, .init = setup, .fini = teardown, .timeout = 120);

/* Runs pdsmove with its state directory in the scratch dir and no passwords in the
 * environment (a test must not depend on, or print, the tester's). */
static cli_result run_env(const char *const *extra_env, const char *const *args) {
    const char *env[8] = {state_env, "PDSMOVE_PASSWORD", "PDSMOVE_NEW_PASSWORD", "NO_COLOR", NULL};
    size_t n = 4;
    for (size_t i = 0; extra_env && extra_env[i] && n + 1 < sizeof env / sizeof env[0]; i++) env[n++] = extra_env[i];
    env[n] = NULL;
    const cli_run_opts o = {.env = env};
    return cli_run_kept(&o, args);
}
#define MIGRATE(...) run_env(NULL, (const char *const[]){"migrate", __VA_ARGS__, NULL})
#define FAKE_DID_ "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

static void write_file(const char *name, const char *text, char *path, size_t size) {
    snprintf(path, size, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

#define FAKE_DID_ARG "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

/* ---- help ---- */

Test(cli_migrate, help_alone_is_enough_to_run_a_migration) {
    cli_result r = MIGRATE("--help");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(r.err[0], 0, "help writes nothing on stderr: %s", r.err);
    const char *needles[] = {
        "usage: pdsmove migrate ACCOUNT --to NEW_PDS_URL",
        /* the worked example of a self-hoster */
        "pdsmove migrate alice.bsky.social --to https://pds.example.com", "--password-file", "--new-password-file",
        "--new-pds-admin-password-file", "PDS_ADMIN_PASSWORD", "pdsadmin create-invite-code", "--invite-code",
        "--plc-token-from-db /var/lib/pds/account.sqlite", "app password", "--dry-run", "--yes",
        /* interruption, and where the journal is (this run's state directory) */
        "run the same command", "again", "Ctrl-C", "pdsmove status", "--journal PATH", state_dir, "journal.sqlite",
        /* the options */
        "--from", "--plc-url", "--work-dir", "--auth-factor-token-file", "--new-handle", "--new-email", "--plc-token-file",
        "--rotation-key", "--add-rotation-key", "--jobs N", "--request-crawl", "--keep-old-active", "--allow-insecure-http",
        "--force", "--keep-archive DIR", "--no-keep-archive", "/archives", "$PDSMOVE_PASSWORD",
        /* output and exit status */
        "--json", "\"event\":\"step\"", "\"event\":\"progress\"", "\"event\":\"report\"", "\"event\":\"error\"",
        "exit status", "2 usage error"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        cr_assert(strstr(r.out, needles[i]), "--help should mention \"%s\":\n%s", needles[i], r.out);
    /* a terminal is 80 columns: the help must not wrap on one */
    size_t col = 0, longest = 0;
    for (const char *p = r.out; *p; p++) {
        if (*p == '\n') col = 0;
        else if ((*p & 0xC0) != 0x80 && ++col > longest) longest = col;
    }
    cr_assert_leq(longest, 100, "a help line is %zu columns long", longest);
    cli_result h = MIGRATE("-h");
    cr_assert_eq(h.status, 0);
    cr_assert_str_eq(h.out, r.out, "-h and --help print the same");
    cr_assert_not(exists(state_dir), "--help must not create the state directory");
}

Test(cli_migrate, top_level_help_lists_migrate_and_status) {
    cli_result r = run_env(NULL, (const char *const[]){"--help", NULL});
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "migrate ACCOUNT --to URL"), "%s", r.out);
    cr_assert(strstr(r.out, "status [ACCOUNT]"), "%s", r.out);
}

/* ---- usage errors ---- */

Test(cli_migrate, usage_errors_exit_2_with_a_clear_message_and_touch_nothing) {
    char key[256];
    write_file("key", "not used\n", key, sizeof key);
    const struct {
        const char *args[12];
        const char *needle;
    } cases[] = {
        {{"migrate", "alice.test", NULL}, "--to NEW_PDS_URL is required"},
        {{"migrate", "--to", "https://new.example", NULL}, "give the ACCOUNT"},
        {{"migrate", "alice.test", "bob.test", "--to", "https://new.example", NULL}, "one ACCOUNT only, not 'alice.test' and 'bob.test'"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--jobs", "abc", NULL}, "--jobs takes a number from 1 to 16, not 'abc'"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--jobs", "0", NULL}, "--jobs takes a number from 1 to 16"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--jobs", "17", NULL}, "--jobs takes a number from 1 to 16"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--jobs", "4x", NULL}, "not '4x'"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--add-rotation-key", "did:key:nonsense", NULL},
         "--add-rotation-key takes a did:key"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--add-rotation-key", key, NULL}, "--add-rotation-key"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--plc-token-file", "t", "--plc-token-from-db", "db", NULL},
         "--plc-token-file and --plc-token-from-db exclude each other"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--rotation-key", key, "--plc-token-from-db", "db", NULL},
         "--rotation-key signs locally"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--keep-archive", "a", "--no-keep-archive", NULL},
         "--keep-archive and --no-keep-archive exclude each other"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--bogus", NULL}, "unknown option '--bogus'"},
        {{"migrate", "alice.test", "--to", "https://new.example", "-x", NULL}, "unknown option '-x'"},
        {{"migrate", "alice.test", "--to", NULL}, "option '--to' needs a value"},
        {{"migrate", "alice.test", "--to", "ftp://new.example", NULL}, "--to takes a URL"},
        {{"migrate", "alice.test", "--to", "https://new.example", "--from", "old.example", NULL}, "--from takes a URL"},
        {{"migrate", "not a handle!", "--to", "https://new.example", NULL}, "neither a handle"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_result r = run_env(NULL, cases[i].args);
        cr_assert_eq(r.status, 2, "case %zu (%s): exit %d, stderr:\n%s", i, cases[i].needle, r.status, r.err);
        cr_assert(strstr(r.err, "pdsmove: error: "), "case %zu: no error line:\n%s", i, r.err);
        cr_assert(strstr(r.err, cases[i].needle), "case %zu: stderr should say \"%s\":\n%s", i, cases[i].needle, r.err);
        cr_assert(strstr(r.err, "pdsmove migrate --help"), "case %zu: should point at --help:\n%s", i, r.err);
        cr_assert_eq(r.out[0], 0, "case %zu printed on stdout: %s", i, r.out);
        cr_assert_not(exists(state_dir), "case %zu: a usage error created the state directory", i);
    }
}

Test(cli_migrate, a_leading_at_sign_is_accepted) {
    /* "@alice.bsky.social", as the apps show it: only the (missing) --to is wrong here */
    cli_result r = MIGRATE("@alice.test");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--to NEW_PDS_URL is required"), "%s", r.err);
}

/* ---- secrets ---- */

Test(cli_migrate, a_missing_password_file_stops_with_its_name) {
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-password-file", dir);
    cli_result r = MIGRATE("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "--to", "https://new.example", "--password-file", missing);
    cr_assert_eq(r.status, 1, "exit %d, stderr:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "pdsmove: error: "), "%s", r.err);
    cr_assert(strstr(r.err, missing), "the message should name the file:\n%s", r.err);
    cr_assert(strstr(r.err, "No such file"), "and say what is wrong with it:\n%s", r.err);
    char journal[256];
    snprintf(journal, sizeof journal, "%s/journal.sqlite", state_dir);
    cr_assert_not(exists(journal), "no journal is created before the secrets are read");

    /* an empty file is refused too, by name */
    char empty[256];
    write_file("empty-pw", "", empty, sizeof empty);
    r = MIGRATE("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "--to", "https://new.example", "--password-file", empty);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, empty) && strstr(r.err, "empty"), "%s", r.err);
}

/* Every secret file (account and new password, 2FA code, admin password, invite code) goes
 * through the same reader: a file group or others can read or change is refused before it is
 * used, with the chmod to run, and before anything is written. */
Test(cli_migrate, secret_files_others_can_read_are_refused_naming_the_chmod) {
    char pw[256], ok_pw[256], want[300];
    write_file("loose-pw", "hunter2-loose\n", pw, sizeof pw);
    write_file("tight-pw", "hunter2-tight\n", ok_pw, sizeof ok_pw);
    const struct { const char *opt; mode_t mode; } cases[] = {
        {"--password-file", 0644}, {"--password-file", 0640}, {"--password-file", 0604}, {"--password-file", 0660},
        {"--new-password-file", 0644}, {"--auth-factor-token-file", 0644}, {"--new-pds-admin-password-file", 0644},
        {"--invite-code-file", 0644},
    };
    snprintf(want, sizeof want, "chmod 600 %s", pw);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(chmod(pw, cases[i].mode), 0);
        /* the other secrets from good files, so that the loose one is the only thing wrong */
        const char *args[16] = {"migrate", FAKE_DID_, "--to", "https://new.example", cases[i].opt, pw};
        size_t n = 6;
        if (strcmp(cases[i].opt, "--password-file")) args[n++] = "--password-file", args[n++] = ok_pw;
        if (strcmp(cases[i].opt, "--new-password-file")) args[n++] = "--new-password-file", args[n++] = ok_pw;
        args[n] = NULL;
        cli_result r = run_env(NULL, args);
        cr_assert_eq(r.status, 1, "%s mode %o: should be refused, got exit %d:\n%s", cases[i].opt, (unsigned)cases[i].mode, r.status, r.err);
        cr_assert(strstr(r.err, want), "%s mode %o: the refusal should name `%s`:\n%s", cases[i].opt, (unsigned)cases[i].mode, want, r.err);
        cr_assert_null(strstr(r.err, "hunter2"), "the refusal echoes the secret:\n%s", r.err);
        char journal[256];
        snprintf(journal, sizeof journal, "%s/journal.sqlite", state_dir);
        cr_assert_not(exists(journal), "%s: no journal is created before the secrets are read", cases[i].opt);
    }
}

/* An invite code is a credential too: from a file, so that it is not in argv for `ps` to show;
 * it and --invite-code are one choice. */
Test(cli_migrate, invite_code_file_is_read_like_the_other_secrets_and_excludes_invite_code) {
    char pw[256], code[256];
    write_file("pw", "hunter2\n", pw, sizeof pw);
    write_file("code", "pds-example-abcde-12345\n", code, sizeof code);
    cli_result r = MIGRATE(FAKE_DID_, "--to", "https://new.example", "--password-file", pw, "--new-password-file", pw, "--invite-code",
                           "x", "--invite-code-file", code);
    cr_assert_eq(r.status, 1, "%s", r.err); /* like every other problem with the secrets */
    cr_assert(strstr(r.err, "--invite-code or --invite-code-file, not both"), "%s", r.err);
    cr_assert_null(strstr(r.err, "abcde-12345"), "the code is shown:\n%s", r.err);
    r = run_env(NULL, (const char *const[]){"migrate", "--help", NULL});
    cr_assert(strstr(r.out, "--invite-code-file F"), "--help names the option:\n%s", r.out);
}

/* "Max core file size" of a running process from /proc; -1 when unreadable. */
static long long core_limit_of(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    long long soft = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Max core file size", 18)) {
            char v[32] = "";
            if (sscanf(line + 18, "%31s", v) == 1) soft = !strcmp(v, "unlimited") ? LLONG_MAX : atoll(v);
        }
    if (f) fclose(f);
    return soft;
}

/* Core dumps are off before any secret is read: while pdsmove waits to open its password
 * file (a FIFO nobody writes yet), its core size limit is already 0, though it started with
 * one (the test raises its own soft limit first, so that 0 is pdsmove's doing). */
Test(cli_migrate, core_dumps_are_off_before_the_password_is_read) {
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_CORE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_CORE, &rl), 0);
    cr_assert_neq(rl.rlim_cur, 0, "the hard core limit is 0 here: nothing to observe");
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/pw-fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const char *argv[] = {cli_bin(), "migrate", FAKE_DID_, "--to", "https://new.example", "--password-file", fifo, NULL};
    const char *env[] = {state_env, "PDSMOVE_PASSWORD", "PDSMOVE_NEW_PASSWORD", NULL};
    const cli_run_opts o = {.env = env};
    int out = cli_temp_fd_(), err = cli_temp_fd_();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) cli_child_(&o, out, err, (char **)argv);
    long long lim = -1;
    for (int i = 0; i < 500 && lim != 0; i++) { /* up to 5 s */
        usleep(10000);
        lim = core_limit_of(pid);
    }
    kill(pid, SIGKILL); /* still blocked opening the FIFO: no secret was read */
    waitpid(pid, NULL, 0);
    close(out);
    close(err);
    cr_assert_eq(lim, 0, "pdsmove waiting for its password has a core size limit of %lld, not 0", lim);
}

Test(cli_migrate, without_a_password_or_terminal_it_says_how_to_give_one) {
    cli_result r = MIGRATE("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "--to", "https://new.example");
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, "PDSMOVE_PASSWORD") && strstr(r.err, "file"), "%s", r.err);
}

/* migrate with the password files and the bypass key file written from key_text (mode given):
 * must stop with exit 1 before any network access, saying `want`, never showing "s3cr3t" */
static void refused_key(const char *name, const char *key_text, mode_t mode, const char *want) {
    char pw[256], npw[256], key[256];
    write_file("pw", "old-password\n", pw, sizeof pw);
    write_file("npw", "new-password\n", npw, sizeof npw);
    write_file(name, key_text, key, sizeof key);
    chmod(key, mode);
    cli_result r = MIGRATE(FAKE_DID_ARG, "--to", "https://new.example", "--password-file", pw, "--new-password-file", npw,
                           "--new-pds-ratelimit-bypass-key-file", key);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cr_assert(strstr(r.err, key), "the message names the file:\n%s", r.err);
    cr_assert(strstr(r.err, want), "the message should say \"%s\":\n%s", want, r.err);
    cr_assert_null(strstr(r.err, "s3cr3t"), "the key is never printed:\n%s", r.err);
}

Test(cli_migrate, a_bypass_key_file_is_checked_like_a_secret) {
    /* others may read it: refused, by name, before anything else happens */
    refused_key("bypass", "s3cr3t-bypass-key-0123\n", 0644, "read or changed by other users (mode 0644); run `chmod 600");
    refused_key("bypass-w", "s3cr3t-bypass-key-0123\n", 0620, "read or changed by other users (mode 0620)");
    /* the PDS's env file without the line */
    refused_key("pds.env", "PDS_HOSTNAME=pds.example.com\nPDS_JWT_SECRET=s3cr3t-jwt\n", 0600,
                "has no PDS_RATE_LIMIT_BYPASS_KEY= line");
    /* two bare lines: which one? */
    refused_key("two", "one-key\nanother-key\n", 0600, "holds no bypass key");
    /* a key with a space could not be sent as one header value */
    refused_key("spaced", "PDS_RATE_LIMIT_BYPASS_KEY=\"s3cr3t key\"\n", 0600, "printable characters without spaces");
}

/* ---- a fake old PDS and PLC directory on loopback ----
 * Serves the DID document (the first request gets a 503, to see a retry), and answers
 * createSession with 401 — echoing the password it was sent, as a careless server might. */

#define FAKE_DID "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
#define FAKE_KEY "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"

typedef struct {
    int fd, port;
    pthread_t th;
    int doc_requests, login_requests;
    char password_seen[256];
} fake_server;

static void fake_reply(int c, int status, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, status == 200 ? "OK" : "Error", strlen(body));
    if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0) return;
}

static void fake_handle(fake_server *f, int c) {
    static char req[1 << 16];
    size_t len = 0;
    char *body = NULL;
    size_t want = 0;
    for (;;) {
        ssize_t n = read(c, req + len, sizeof req - 1 - len);
        if (n <= 0) return;
        len += (size_t)n;
        req[len] = 0;
        char *end = strstr(req, "\r\n\r\n");
        if (!end) continue;
        body = end + 4;
        const char *cl = strcasestr(req, "content-length:");
        want = cl && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
        if ((size_t)(req + len - body) >= want || len + 1 >= sizeof req) break;
    }
    char doc[1024];
    if (!strncmp(req, "GET /" FAKE_DID " ", strlen("GET /" FAKE_DID " "))) {
        if (f->doc_requests++ == 0) return fake_reply(c, 503, "{\"error\":\"Unavailable\"}");
        snprintf(doc, sizeof doc,
                 "{\"id\":\"" FAKE_DID "\",\"alsoKnownAs\":[\"at://alice.test\"],\"verificationMethod\":[{\"id\":\"#atproto\","
                 "\"type\":\"Multikey\",\"controller\":\"" FAKE_DID "\",\"publicKeyMultibase\":\"" FAKE_KEY "\"}],"
                 "\"service\":[{\"id\":\"#atproto_pds\",\"type\":\"AtprotoPersonalDataServer\","
                 "\"serviceEndpoint\":\"http://127.0.0.1:%d\"}]}",
                 f->port);
        return fake_reply(c, 200, doc);
    }
    if (!strncmp(req, "POST /xrpc/com.atproto.server.createSession ", 44)) {
        f->login_requests++;
        json_t *j = json_loadb(body, want, 0, NULL);
        const char *pw = json_string_value(json_object_get(j, "password"));
        snprintf(f->password_seen, sizeof f->password_seen, "%s", pw ? pw : "");
        json_t *reply = json_pack("{s:s, s:s+}", "error", "AuthenticationRequired", "message",
                                  "Invalid identifier or password: ", pw ? pw : "");
        char *text = json_dumps(reply, JSON_COMPACT);
        fake_reply(c, 401, text);
        free(text);
        json_decref(reply);
        json_decref(j);
        return;
    }
    fake_reply(c, 404, "{\"error\":\"NotFound\"}");
}

static void *fake_serve(void *arg) {
    fake_server *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0) return NULL; /* shut down */
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        fake_handle(f, c);
        close(c);
    }
}

static void fake_start(fake_server *f) {
    memset(f, 0, sizeof *f);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(f->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(f->fd, 16), 0);
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(f->fd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_serve, f), 0);
}

static void fake_stop(fake_server *f) {
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->th, NULL);
    close(f->fd);
}

/* A run that reads every secret, opens the journal, starts the pipeline, sends the password
 * to the (fake) old PDS and stops when it is refused. */
static const char *const secret_texts[] = {"old-pw-Zq81xKSECRET", "new-pw-Wp27vHSECRET", "admin-pw-Tn55cRSECRET",
                                           "twofa-Lm90sJSECRET"};

static cli_result run_failing_later(bool json, bool pw_from_env) {
    fake_server f;
    fake_start(&f);
    char pw[256], newpw[256], admin[256], twofa[256], journal[256], work[256], plc[64];
    write_file("old-pw", secret_texts[0], pw, sizeof pw);
    write_file("new-pw", secret_texts[1], newpw, sizeof newpw);
    write_file("admin-pw", secret_texts[2], admin, sizeof admin);
    write_file("twofa", secret_texts[3], twofa, sizeof twofa);
    snprintf(journal, sizeof journal, "%s/journal.sqlite", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(plc, sizeof plc, "http://127.0.0.1:%d", f.port);
    char env_pw[128];
    snprintf(env_pw, sizeof env_pw, "PDSMOVE_PASSWORD=%s", secret_texts[0]);
    const char *const env[] = {env_pw, NULL};
    /* --to: a closed port, never reached: the login to the old PDS fails first */
    const char *args[32] = {"migrate", FAKE_DID, "--to", "http://127.0.0.1:9", "--plc-url", plc, "--new-password-file", newpw,
                            "--new-pds-admin-password-file", admin, "--auth-factor-token-file", twofa, "--journal", journal,
                            "--work-dir", work, "--yes"};
    size_t n = 17;
    if (!pw_from_env) {
        args[n++] = "--password-file";
        args[n++] = pw;
    }
    if (json) args[n++] = "--json";
    args[n] = NULL;
    /* after the environment reset in run_env, so PDSMOVE_PASSWORD is set only when asked */
    cli_result r = run_env(pw_from_env ? env : NULL, args);
    fake_stop(&f);
    cr_assert_eq(r.status, 1, "expected the login to be refused (exit 1), got %d:\n%s", r.status, r.err);
    cr_assert(exists(journal), "the run should have got as far as opening the journal:\n%s", r.err);
    cr_assert_eq(f.login_requests, 1, "one login attempt:\n%s", r.err);
    cr_assert_str_eq(f.password_seen, secret_texts[0], "the password from the file reached the server");
    cr_assert(strstr(r.err, "refused the login"), "%s", r.err);
    return r;
}

static void assert_no_secret(const cli_result *r, const char *what) {
    for (size_t i = 0; i < sizeof secret_texts / sizeof secret_texts[0]; i++) {
        cr_assert_null(strstr(r->out, secret_texts[i]), "%s: a secret is on stdout:\n%s", what, r->out);
        cr_assert_null(strstr(r->err, secret_texts[i]), "%s: a secret is on stderr:\n%s", what, r->err);
        /* nor any piece of one six characters long (a message cut short can end in one) */
        for (size_t k = 0; k + 6 <= strlen(secret_texts[i]); k++) {
            char part[8];
            snprintf(part, sizeof part, "%.6s", secret_texts[i] + k);
            cr_assert_null(strstr(r->out, part), "%s: '%s', part of a secret, is on stdout:\n%s", what, part, r->out);
            cr_assert_null(strstr(r->err, part), "%s: '%s', part of a secret, is on stderr:\n%s", what, part, r->err);
        }
    }
}

Test(cli_migrate, no_secret_is_ever_printed) {
    cli_result r = run_failing_later(false, false);
    cr_assert(strstr(r.err, "==> preflight"), "the pipeline should have started:\n%s", r.err);
    cr_assert(strstr(r.err, "[redacted]"), "the echoed password is replaced:\n%s", r.err);
    cr_assert(strstr(r.err, "pdsmove: error: "), "%s", r.err);
    assert_no_secret(&r, "plain");
    r = run_failing_later(true, false);
    assert_no_secret(&r, "--json");
    r = run_failing_later(false, true);
    assert_no_secret(&r, "password from $PDSMOVE_PASSWORD");
}

/* ---- --json ---- */

/* Every stdout line is one JSON object with an "event"; returns the lines (owned). */
static json_t *json_lines(const char *out) {
    json_t *events = json_array();
    const char *p = out;
    size_t lineno = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        cr_assert_not_null(nl, "the last JSON line is not terminated: %s", p);
        lineno++;
        json_error_t je;
        json_t *ev = json_loadb(p, (size_t)(nl - p), 0, &je);
        cr_assert_not_null(ev, "line %zu is not JSON (%s): %.*s", lineno, je.text, (int)(nl - p), p);
        cr_assert(json_is_object(ev), "line %zu is not an object", lineno);
        cr_assert(json_is_string(json_object_get(ev, "event")), "line %zu has no \"event\"", lineno);
        cr_assert(json_is_number(json_object_get(ev, "elapsed_s")), "line %zu has no \"elapsed_s\"", lineno);
        json_array_append_new(events, ev);
        p = nl + 1;
    }
    return events;
}

static const char *ev_str(json_t *ev, const char *key) { return json_string_value(json_object_get(ev, key)); }

Test(cli_migrate, json_gives_one_event_per_line_even_on_failure) {
    cli_result r = run_failing_later(true, false);
    json_t *events = json_lines(r.out);
    size_t n = json_array_size(events);
    cr_assert_geq(n, 2, "expected a step event and the error:\n%s", r.out);
    json_t *first = json_array_get(events, 0);
    cr_assert_str_eq(ev_str(first, "event"), "step", "%s", r.out);
    cr_assert_str_eq(ev_str(first, "step"), "preflight");
    cr_assert_str_eq(ev_str(first, "status"), "running");
    cr_assert(json_object_get(first, "detail") != NULL, "step events always carry detail (null here)");
    json_t *last = json_array_get(events, n - 1);
    cr_assert_str_eq(ev_str(last, "event"), "error", "the last event is the error:\n%s", r.out);
    const char *msg = ev_str(last, "message");
    cr_assert(msg && strstr(msg, "refused the login"), "the error says what failed: %s", r.out);
    cr_assert(strstr(msg, "[redacted]"), "the password the server echoed is redacted: %s", msg);
    /* the login is part of preflight: nothing was started that a re-run would continue */
    cr_assert(json_is_false(json_object_get(last, "resumable")), "%s", r.out);
    cr_assert_null(strstr(r.err, "keeps what is done"), "%s", r.err);
    bool waited = false;
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_array_get(events, i);
        if (strcmp(ev_str(ev, "event"), "wait")) continue;
        waited = true;
        cr_assert(strstr(ev_str(ev, "server"), "127.0.0.1"), "%s", r.out);
        cr_assert(strstr(ev_str(ev, "reason"), "503"), "%s", r.out);
        cr_assert(json_integer_value(json_object_get(ev, "wait_ms")) > 0, "%s", r.out);
    }
    cr_assert(waited, "the 503 retry is reported as a wait event:\n%s", r.out);
    cr_assert(json_is_boolean(json_object_get(last, "resumable")), "%s", r.out);
    cr_assert(strstr(r.err, "pdsmove: error: "), "stderr keeps the human message:\n%s", r.err);
    for (size_t i = 0; i < n; i++) {
        const char *ev = ev_str(json_array_get(events, i), "event");
        cr_assert(!strcmp(ev, "step") || !strcmp(ev, "info") || !strcmp(ev, "wait") || !strcmp(ev, "progress") ||
                      !strcmp(ev, "error"),
                  "unexpected event '%s'", ev);
    }
    json_decref(events);
}

Test(cli_migrate, json_usage_and_secret_errors_are_events_too) {
    cli_result r = MIGRATE("alice.test", "--json", "--jobs", "99", "--to", "https://new.example");
    cr_assert_eq(r.status, 2, "%s", r.err);
    json_t *events = json_lines(r.out);
    cr_assert_eq(json_array_size(events), 1, "%s", r.out);
    json_t *ev = json_array_get(events, 0);
    cr_assert_str_eq(ev_str(ev, "event"), "error");
    cr_assert(strstr(ev_str(ev, "message"), "--jobs"), "%s", r.out);
    cr_assert(json_is_true(json_object_get(ev, "usage")), "%s", r.out);
    json_decref(events);

    char missing[256];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    r = MIGRATE("alice.test", "--json", "--to", "https://new.example", "--password-file", missing);
    cr_assert_eq(r.status, 1, "%s", r.err);
    events = json_lines(r.out);
    cr_assert_eq(json_array_size(events), 1, "%s", r.out);
    ev = json_array_get(events, 0);
    cr_assert_str_eq(ev_str(ev, "event"), "error");
    cr_assert(strstr(ev_str(ev, "message"), missing), "%s", r.out);
    json_decref(events);
}

Test(cli_migrate, the_default_archive_directory_is_created_under_the_state_dir) {
    char pw[256], newpw[256];
    write_file("old-pw", "x", pw, sizeof pw);
    write_file("new-pw", "y", newpw, sizeof newpw);
    /* the PLC URL is plain http to another machine: refused, but only once the pipeline runs */
    cli_result r = MIGRATE("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "--to", "http://127.0.0.1:9", "--plc-url",
                           "http://plc.pdsmove-test.invalid", "--password-file", pw, "--new-password-file", newpw);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(strstr(r.err, "refusing plain http://"), "%s", r.err);
    char p[256];
    snprintf(p, sizeof p, "%s/archives", state_dir);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0, "%s was not created:\n%s", p, r.err);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 077, 0, "the archive directory is private (mode %o)", st.st_mode & 0777);
    snprintf(p, sizeof p, "%s/journal.sqlite", state_dir);
    cr_assert(exists(p), "the default journal is in the state dir");

    /* --keep-archive DIR is created; --no-keep-archive creates none */
    char mine[256];
    snprintf(mine, sizeof mine, "%s/my-archives/deep", dir);
    r = MIGRATE("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "--to", "http://127.0.0.1:9", "--plc-url",
                "http://plc.pdsmove-test.invalid", "--password-file", pw, "--new-password-file", newpw, "--keep-archive", mine);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert(exists(mine), "--keep-archive %s was not created", mine);
}

/* ---- the progress display (cli_progress.c) ---- */

Test(cli_migrate, progress_formats_bytes_and_durations) {
    const struct {
        uint64_t n;
        const char *s;
    } bytes[] = {{0, "0 B"},
                 {1023, "1023 B"},
                 {1024, "1.00 KiB"},
                 {1536, "1.50 KiB"},
                 {10ULL << 20, "10.0 MiB"},
                 {270ULL << 20, "270 MiB"},
                 {5ULL << 30, "5.00 GiB"},
                 {3ULL << 40, "3.00 TiB"}};
    char s[32];
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        cli_format_bytes(bytes[i].n, s, sizeof s);
        cr_assert_str_eq(s, bytes[i].s, "%llu bytes", (unsigned long long)bytes[i].n);
    }
    const struct {
        double t;
        const char *s;
    } times[] = {{0, "0:00"}, {7.4, "0:07"}, {754, "12:34"}, {3723, "1:02:03"}, {-5, "0:00"}};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        cli_format_duration(times[i].t, s, sizeof s);
        cr_assert_str_eq(s, times[i].s, "%g s", times[i].t);
    }
}

Test(cli_migrate, progress_measures_rate_and_time_left) {
    cli_progress p;
    cli_progress_init(&p, NULL, false, 80);
    cli_rate r;
    cli_progress_update(&p, 100.0, "blobs-download", 0, 50, 0, 100ULL << 20);
    cr_assert_not(cli_progress_rate(&p, "blobs-download", 100.0, &r), "no rate from one reading");
    cr_assert_eq(r.eta_s, -1);
    cli_progress_update(&p, 101.0, "blobs-download", 5, 50, 10ULL << 20, 100ULL << 20);
    cli_progress_update(&p, 102.0, "blobs-download", 10, 50, 20ULL << 20, 100ULL << 20);
    cr_assert(cli_progress_rate(&p, "blobs-download", 102.0, &r));
    cr_assert_float_eq(r.bytes_per_s, 10.0 * 1048576, 1.0, "%f", r.bytes_per_s);
    cr_assert_float_eq(r.items_per_s, 5.0, 0.01);
    cr_assert_float_eq(r.eta_s, 8.0, 0.01, "80 MiB left at 10 MiB/s: %f", r.eta_s);
    /* only counts known: the time left comes from them */
    cli_progress_update(&p, 100.0, "blobs-upload", 0, 40, 0, 0);
    cli_progress_update(&p, 102.0, "blobs-upload", 10, 40, 0, 0);
    cr_assert(cli_progress_rate(&p, "blobs-upload", 102.0, &r));
    cr_assert_float_eq(r.eta_s, 6.0, 0.01, "%f", r.eta_s);
    /* a stall slows the rate down instead of freezing it */
    cr_assert(cli_progress_rate(&p, "blobs-upload", 106.0, &r));
    cr_assert_lt(r.items_per_s, 5.0, "%f", r.items_per_s);
    /* counters going back (a restarted transfer) start the measurement over */
    cli_progress_update(&p, 103.0, "blobs-download", 0, 50, 0, 100ULL << 20);
    cr_assert_not(cli_progress_rate(&p, "blobs-download", 103.0, &r));
    cr_assert_not(cli_progress_rate(&p, "import", 103.0, &r), "an unknown step has no rate");
}

Test(cli_migrate, progress_on_a_terminal_is_one_line_redrawn_in_place) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cli_progress p;
    cli_progress_init(&p, f, true, 100);
    cli_progress_update(&p, 10.0, "blobs-download", 0, 50, 0, 100ULL << 20);
    cli_progress_update(&p, 11.0, "blobs-download", 10, 50, 20ULL << 20, 100ULL << 20);
    cli_progress_update(&p, 12.0, "blobs-download", 20, 50, 40ULL << 20, 100ULL << 20);
    fflush(f);
    cr_assert(strstr(buf, "\r"), "redrawn with a carriage return");
    cr_assert(strstr(buf, "\033[K"), "and the rest of the line erased");
    cr_assert_null(strchr(buf, '\n'), "no newline while it is live: %s", buf);
    char line[CLI_PROGRESS_LINE_MAX];
    size_t n = cli_progress_line(&p, 12.0, line, sizeof line);
    cr_assert_eq(n, strlen(line));
    cr_assert_lt(n, 100, "the line fits the terminal: %s", line);
    const char *parts[] = {"blobs-download", "[########............]", "40%", "20/50", "40.0 MiB/100 MiB", "20.0 MiB/s", "0:03 left"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) cr_assert(strstr(line, parts[i]), "want \"%s\" in: %s", parts[i], line);

    /* two transfers at once share the line; a narrow terminal still gets no wrap */
    cli_progress_update(&p, 12.5, "blobs-upload", 5, 50, 10ULL << 20, 100ULL << 20);
    n = cli_progress_line(&p, 12.5, line, sizeof line);
    cr_assert(strstr(line, "blobs-download") && strstr(line, "blobs-upload") && strstr(line, " | "), "%s", line);
    p.columns = 40;
    n = cli_progress_line(&p, 12.5, line, sizeof line);
    cr_assert_leq(n, 39, "%zu columns: %s", n, line);

    /* clearing erases the line; nothing to clear twice */
    size_t before = len;
    cli_progress_clear(&p);
    fflush(f);
    cr_assert(len > before && strstr(buf + before, "\r\033[K"));
    before = len;
    cli_progress_clear(&p);
    fflush(f);
    cr_assert_eq(len, before);
    fclose(f);
    free(buf);
}

Test(cli_migrate, progress_elsewhere_is_plain_lines_now_and_then) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cli_progress p;
    cli_progress_init(&p, f, false, 80);
    for (int t = 0; t <= 25; t++) /* one reading a second for 25 s: 2 MiB/s */
        cli_progress_update(&p, 1000.0 + t, "export", 0, 0, (uint64_t)t << 21, 0);
    fflush(f);
    cr_assert_null(strchr(buf, '\033'), "no escape codes when not on a terminal: %s", buf);
    cr_assert_null(strchr(buf, '\r'), "no carriage returns: %s", buf);
    size_t lines = 0;
    for (const char *c = buf; *c; c++) lines += *c == '\n';
    cr_assert_eq(lines, 2, "one line every 10 s, not one per reading:\n%s", buf);
    cr_assert(strstr(buf, "    export: 20.0 MiB, 2.00 MiB/s\n"), "%s", buf);

    /* a transfer of known size: its completion is reported once, at once */
    size_t before = len;
    cli_progress_update(&p, 2000.0, "import", 0, 0, 0, 8ULL << 20);
    cli_progress_update(&p, 2001.0, "import", 0, 0, 8ULL << 20, 8ULL << 20);
    cli_progress_update(&p, 2002.0, "import", 0, 0, 8ULL << 20, 8ULL << 20);
    fflush(f);
    cr_assert_str_eq(buf + before, "    import: 8.00 MiB of 8.00 MiB (100%), 8.00 MiB/s\n");
    fclose(f);
    free(buf);
}
