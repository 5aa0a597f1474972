/* itest.h — helpers for the integration tests (the C files in tests/integration): find the live testbed
 * (PDSMOVE_TESTBED = its testbed.json; PDSMOVE_TESTBED_STRICT = the second one, whose PDS "strict"
 * has invite codes, small limits and real rate limits) and the pdsmove binary (PDSMOVE_BIN), run
 * commands without a shell and capture their output, seed fresh accounts, run `pdsmove migrate`.
 * Header-only: each test file includes it once. A missing testbed or binary is a test FAILURE,
 * never a skip. */
#ifndef PDSMOVE_ITEST_H
#define PDSMOVE_ITEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PDSMOVE_ROOT
#error "PDSMOVE_ROOT must be defined by the build (the repository root)"
#endif

extern char **environ;

enum { ITEST_MAX_ARGS = 32, ITEST_MAX_OUTPUT = 64 * 1024 * 1024 };

/* What a finished command left: exit status (128+signal when killed, -1 when it could not
 * run) and its whole stdout and stderr, NUL-terminated (owned; itest_result_free). */
typedef struct {
    int status;
    char *out;
    char *err;
} itest_result;

static inline void itest_result_free(itest_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* One per test process (Criterion forks each test): a private scratch directory. */
static char itest_dir[256];

static inline const char *itest_env(const char *name, const char *what) {
    const char *v = getenv(name);
    if (!v || !v[0])
        cr_assert_fail("%s is not set (%s): run the integration tests through "
                 "scripts/testbed/run-integration (or scripts/test), which start the testbed",
                 name, what);
    return v;
}

static inline const char *itest_bin(void) { return itest_env("PDSMOVE_BIN", "the pdsmove binary"); }

static inline char *itest_slurp(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (;;) {
        if (len == cap) {
            cr_assert_lt(cap, (size_t)ITEST_MAX_OUTPUT, "%s is larger than %d bytes", path, ITEST_MAX_OUTPUT);
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

/* The scratch directory of this test, made on first use and removed by itest_cleanup(). */
static inline const char *itest_tmpdir(void) {
    if (!itest_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(itest_dir, sizeof itest_dir, "%s/pdsmove-itest.XXXXXX", t && t[0] ? t : "/tmp");
        cr_assert_not_null(mkdtemp(itest_dir), "mkdtemp %s: %s", itest_dir, strerror(errno));
    }
    return itest_dir;
}

/* A path inside this test's scratch directory (static buffer rotation: 8 live at once). */
static inline const char *itest_path(const char *name) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", itest_tmpdir(), name);
    return b;
}

/* Runs argv (NULL-terminated; argv[0] looked up on PATH) with no shell, stdin from
 * /dev/null, stdout and stderr captured. Never fails the test itself: check r.status. */
static inline itest_result itest_runv(const char *const *argv) {
    itest_result r = {.status = -1};
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/.stdout", itest_tmpdir());
    snprintf(err_path, sizeof err_path, "%s/.stderr", itest_tmpdir());
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        r.out = strdup("");
        r.err = strdup(strerror(rc));
        return r;
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    r.out = itest_slurp(out_path, NULL);
    r.err = itest_slurp(err_path, NULL);
    if (!r.out) r.out = strdup("");
    if (!r.err) r.err = strdup("");
    return r;
}

static inline itest_result itest_runva(const char *arg0, va_list ap) {
    const char *argv[ITEST_MAX_ARGS + 1];
    int n = 0;
    argv[n++] = arg0;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        cr_assert_lt(n, ITEST_MAX_ARGS, "too many arguments for %s", arg0);
        argv[n++] = a;
    }
    argv[n] = NULL;
    return itest_runv(argv);
}

/* itest_run("curl", "-sf", url, NULL): itest_runv with the arguments inline. */
static inline __attribute__((sentinel)) itest_result itest_run(const char *arg0, ...) {
    va_list ap;
    va_start(ap, arg0);
    itest_result r = itest_runva(arg0, ap);
    va_end(ap);
    return r;
}

/* Like itest_run, but a non-zero exit fails the test, showing the command's output. */
static inline __attribute__((sentinel)) itest_result itest_must(const char *arg0, ...) {
    va_list ap;
    va_start(ap, arg0);
    itest_result r = itest_runva(arg0, ap);
    va_end(ap);
    cr_assert_eq(r.status, 0, "`%s ...` exited %d\nstdout:\n%s\nstderr:\n%s", arg0, r.status, r.out, r.err);
    return r;
}

static inline json_t *itest_load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "cannot parse %s: line %d: %s", path, je.line, je.text);
    return j;
}

/* The testbed description (testbed.json; borrowed, loaded once per test process). */
static inline json_t *itest_testbed(void) {
    static json_t *tb;
    if (!tb) tb = itest_load_json(itest_env("PDSMOVE_TESTBED", "path of the running testbed's testbed.json"));
    return tb;
}

static inline const char *itest_testbed_path(void) { return getenv("PDSMOVE_TESTBED"); }

static inline const char *itest_str(json_t *obj, const char *key) {
    const char *s = json_string_value(json_object_get(obj, key));
    cr_assert_not_null(s, "JSON has no string \"%s\"", key);
    return s;
}

/* The PDS named `name` in the testbed description tb (borrowed). */
static inline json_t *itest_pds_of(json_t *tb, const char *name) {
    json_t *arr = json_object_get(tb, "pds");
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        if (!strcmp(json_string_value(json_object_get(p, "name")), name)) return p;
    }
    cr_assert_fail("testbed %s has no PDS named %s", json_string_value(json_object_get(tb, "dir")), name);
    return NULL;
}

/* The PDS named `name` ("old", "new") in testbed.json (borrowed). */
static inline json_t *itest_pds(const char *name) { return itest_pds_of(itest_testbed(), name); }

static inline const char *itest_plc_url(void) {
    return itest_str(json_object_get(itest_testbed(), "plc"), "url");
}

static inline const char *itest_script(const char *name) {
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/scripts/testbed/%s", PDSMOVE_ROOT, name);
    return b;
}

/* Seeds a fresh account "<prefix>-<unique>.<pds>.test" on PDS `pds` of the testbed whose
 * testbed.json is tb_path, passing extra seed options (NULL-terminated list, or NULL for the
 * default small profile); returns the seed's JSON (owned: json_decref). */
static inline json_t *itest_seed_on(const char *tb_path, const char *pds, const char *prefix, const char *const *extra) {
    static unsigned counter;
    char handle[128], out[160];
    json_t *tb = itest_load_json(tb_path);
    snprintf(handle, sizeof handle, "%s-%x%x%u%s", prefix, (unsigned)getpid(), (unsigned)(time(NULL) & 0xfffff),
             counter++, itest_str(itest_pds_of(tb, pds), "handleDomain"));
    json_decref(tb);
    snprintf(out, sizeof out, "seed-%s.json", handle);
    char out_path[600];
    snprintf(out_path, sizeof out_path, "%s", itest_path(out));
    const char *argv[ITEST_MAX_ARGS + 1] = {itest_script("seed"), "--testbed", tb_path, "--pds", pds,
                                            "--handle", handle, "--out", out_path};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i]; i++) {
        cr_assert_lt(n, (size_t)ITEST_MAX_ARGS, "too many seed options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    itest_result r = itest_runv(argv);
    cr_assert_eq(r.status, 0, "seeding %s on %s failed (%d)\nstdout:\n%s\nstderr:\n%s", handle, pds, r.status, r.out, r.err);
    itest_result_free(&r);
    return itest_load_json(out_path);
}

/* Seeds a fresh account "<prefix>-<unique>.<pds>.test" on that PDS with the seed script's
 * default (small) profile; returns the seed's JSON (owned: json_decref). */
static inline json_t *itest_seed(const char *pds, const char *prefix) {
    itest_env("PDSMOVE_TESTBED", "path of the running testbed's testbed.json");
    return itest_seed_on(itest_testbed_path(), pds, prefix, NULL);
}

/* GETs url into path with curl; fails the test on any HTTP or transport error. */
static inline void itest_fetch(const char *url, const char *path) {
    itest_result r = itest_must("curl", "-sS", "--fail-with-body", "--max-time", "300", "-o", path, url, NULL);
    itest_result_free(&r);
}

/* Removes this test's scratch directory (call from the test's .fini). */
static inline void itest_cleanup(void) {
    if (!itest_dir[0] || getenv("ITEST_KEEP")) return;
    itest_result r = itest_run("rm", "-rf", itest_dir, NULL);
    itest_result_free(&r);
    itest_dir[0] = '\0';
}

/* Whether some line of text contains `word` and the decimal `n` as whole tokens. */
static inline int itest_line_has(const char *text, const char *word, long long n) {
    char num[32];
    snprintf(num, sizeof num, "%lld", n);
    size_t nl = strlen(num);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (strstr(buf, word)) {
            for (const char *q = strstr(buf, num); q; q = strstr(q + 1, num)) {
                int before_ok = q == buf || !(q[-1] >= '0' && q[-1] <= '9');
                int after_ok = !(q[nl] >= '0' && q[nl] <= '9');
                if (before_ok && after_ok) return 1;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* ---- the second testbed, files, HTTP, the PLC directory, processes, secrets, migrate ---- */

/* The second testbed (PDSMOVE_TESTBED_STRICT, started by scripts/testbed/run-integration): PDS
 * "old" as in the first, PDS "strict" with invite codes required, small blob and import
 * limits and the PDS's real rate limits on (its testbed.json says which). */
static inline const char *itest_strict_path(void) {
    return itest_env("PDSMOVE_TESTBED_STRICT", "path of the second testbed's testbed.json, the one with the PDS \"strict\"");
}

static inline json_t *itest_testbed_strict(void) {
    static json_t *tb;
    if (!tb) tb = itest_load_json(itest_strict_path());
    return tb;
}

static inline json_int_t itest_int(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_integer(v), "JSON has no integer \"%s\"", key);
    return json_integer_value(v);
}

/* Writes content to `name` in the scratch directory, mode 0600; returns its path (the same
 * rotating buffers as itest_path: copy it to keep it). */
static inline const char *itest_write_file(const char *name, const char *content) {
    const char *p = itest_path(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "cannot write %s: %s", p, strerror(errno));
    size_t len = strlen(content);
    cr_assert_eq(write(fd, content, len), (ssize_t)len, "short write to %s", p);
    close(fd);
    return p;
}

/* GETs url; returns the JSON body (owned), or NULL when the server answered with an HTTP
 * error. A server that does not answer at all fails the test (so "not there" is never a
 * dead server). */
static inline json_t *itest_get_json(const char *url) {
    char p[600];
    snprintf(p, sizeof p, "%s", itest_path("get.json"));
    itest_result r = itest_run("curl", "-sS", "--fail", "--max-time", "60", "-o", p, url, NULL);
    int st = r.status;
    cr_assert(st == 0 || st == 22, "GET %s: curl exited %d: %s", url, st, r.err);
    itest_result_free(&r);
    return st == 0 ? itest_load_json(p) : NULL;
}

/* POSTs the JSON in body (kept in a file: it may hold a password) to url, with a bearer token
 * when given; returns the parsed answer (owned; NULL for an empty one); fails the test on an
 * HTTP error. */
static inline json_t *itest_xrpc_post(const char *url, const char *bearer, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT);
    char body_arg[700], out_path[600], auth[4096] = "x-pdsmove-test: 1";
    snprintf(body_arg, sizeof body_arg, "@%s", itest_write_file("post-body.json", text));
    free(text);
    snprintf(out_path, sizeof out_path, "%s", itest_path("post-out.json"));
    if (bearer) snprintf(auth, sizeof auth, "authorization: Bearer %s", bearer);
    itest_result r = itest_run("curl", "-sS", "--fail-with-body", "--max-time", "60", "-H", "content-type: application/json",
                               "-H", auth, "--data-binary", body_arg, "-o", out_path, url, NULL);
    cr_assert_eq(r.status, 0, "POST %s failed: %s", url, r.err);
    itest_result_free(&r);
    unlink(body_arg + 1);
    struct stat st;
    if (stat(out_path, &st) == 0 && st.st_size == 0) return NULL;
    return itest_load_json(out_path);
}

/* A fresh app password of the account (owned), through the PDS's XRPC with the account's
 * own session. */
static inline char *itest_create_app_password(const char *pds_url, const char *did, const char *password) {
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createSession", pds_url);
    json_t *body = json_pack("{s:s, s:s}", "identifier", did, "password", password);
    json_t *sess = itest_xrpc_post(url, NULL, body);
    json_decref(body);
    const char *jwt = itest_str(sess, "accessJwt");
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.server.createAppPassword", pds_url);
    body = json_pack("{s:s}", "name", "pdsmove-test");
    json_t *app = itest_xrpc_post(url, jwt, body);
    json_decref(body);
    char *pw = strdup(itest_str(app, "password"));
    json_decref(app);
    json_decref(sess);
    return pw;
}

/* Whether the PDS at pds_url has an account for did, active or not (getRepoStatus answers
 * for every account it hosts, RepoNotFound otherwise). *active (may be NULL) gets its state. */
static inline bool itest_pds_has_account(const char *pds_url, const char *did, bool *active) {
    char url[1024];
    snprintf(url, sizeof url, "%s/xrpc/com.atproto.sync.getRepoStatus?did=%s", pds_url, did);
    json_t *j = itest_get_json(url);
    if (active) *active = j && json_is_true(json_object_get(j, "active"));
    json_decref(j);
    return j != NULL;
}

/* The DID's audit log at the PLC directory (owned JSON array). */
static inline json_t *itest_plc_log(const char *plc_url, const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/log/audit", plc_url, did);
    json_t *log = itest_get_json(url);
    cr_assert(json_is_array(log), "no PLC audit log for %s at %s", did, plc_url);
    return log;
}

static inline size_t itest_plc_ops(const char *plc_url, const char *did) {
    json_t *log = itest_plc_log(plc_url, did);
    size_t n = json_array_size(log);
    json_decref(log);
    return n;
}

/* The PDS endpoint the PLC directory names for did now (owned string). */
static inline char *itest_plc_pds(const char *plc_url, const char *did) {
    char url[1024];
    snprintf(url, sizeof url, "%s/%s/data", plc_url, did);
    json_t *d = itest_get_json(url);
    cr_assert_not_null(d, "no PLC data for %s", did);
    const char *ep = json_string_value(
        json_object_get(json_object_get(json_object_get(d, "services"), "atproto_pds"), "endpoint"));
    cr_assert_not_null(ep, "the PLC data of %s names no PDS", did);
    char *out = strdup(ep);
    json_decref(d);
    return out;
}

/* A command started in the background, stdout and stderr going to files in the scratch
 * directory, for tests that act while it runs (write a token file, watch its output). */
typedef struct {
    pid_t pid; /* 0 once reaped */
    int status;
    char out_path[600], err_path[600];
} itest_proc;

static inline void itest_spawn(itest_proc *p, const char *const *argv, const char *tag) {
    memset(p, 0, sizeof *p);
    char name[128];
    snprintf(name, sizeof name, "%s.stdout", tag);
    snprintf(p->out_path, sizeof p->out_path, "%s", itest_path(name));
    snprintf(name, sizeof name, "%s.stderr", tag);
    snprintf(p->err_path, sizeof p->err_path, "%s", itest_path(name));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = posix_spawnp(&p->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s: %s", argv[0], strerror(rc));
}

/* Whether it still runs (reaps it, keeping the status, when it ended). */
static inline bool itest_proc_running(itest_proc *p) {
    if (!p->pid) return false;
    int ws;
    pid_t got = waitpid(p->pid, &ws, WNOHANG);
    if (got == 0) return true;
    p->status = got == p->pid ? (WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws)) : -1;
    p->pid = 0;
    return false;
}

/* Ends it with SIGKILL if it still runs (for teardowns and timeouts). */
static inline void itest_proc_kill(itest_proc *p) {
    if (!p->pid) return;
    kill(p->pid, SIGKILL);
    int ws;
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {}
    p->status = 128 + SIGKILL;
    p->pid = 0;
}

/* Waits up to timeout_s for it to end (killing it after that: status 128+9); returns its
 * status and whole output (owned: itest_result_free). */
static inline itest_result itest_proc_wait(itest_proc *p, int timeout_s) {
    for (int i = 0; i < timeout_s * 10 && itest_proc_running(p); i++) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    itest_proc_kill(p);
    itest_result r = {.status = p->status, .out = itest_slurp(p->out_path, NULL), .err = itest_slurp(p->err_path, NULL)};
    if (!r.out) r.out = strdup("");
    if (!r.err) r.err = strdup("");
    return r;
}

/* Fails the test if secret shows up in the command's output (without printing it). */
static inline void itest_assert_not_shown(const itest_result *r, const char *secret, const char *what) {
    cr_assert(secret && strlen(secret) >= 4, "no secret to look for (%s)", what);
    cr_assert_null(strstr(r->out, secret), "%s was printed on stdout", what);
    cr_assert_null(strstr(r->err, secret), "%s was printed on stderr", what);
}

/* Fails the test if the file (a journal, say) contains secret anywhere (binary-safe). */
static inline void itest_assert_file_lacks(const char *path, const char *secret, const char *what) {
    size_t len = 0;
    char *data = itest_slurp(path, &len);
    if (!data) return; /* no file, no leak */
    bool found = memmem(data, len, secret, strlen(secret)) != NULL;
    free(data);
    cr_assert(!found, "%s is stored in %s", what, path);
}

/* Whether some line of text contains both a and b. */
static inline bool itest_line_has_both(const char *text, const char *a, const char *b) {
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *pa = memmem(line, len, a, strlen(a)), *pb = memmem(line, len, b, strlen(b));
        if (pa && pb) return true;
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* Every `pdsmove CMD [SUBCMD] ...` that text tells the user to run exists: `pdsmove CMD
 * [SUBCMD] --help` exits 0. Advice naming a command that is not there is no advice. */
static inline void itest_assert_suggested_commands_exist(const char *text) {
    for (const char *q = strstr(text, "`pdsmove "); q; q = strstr(q + 1, "`pdsmove ")) {
        char cmd[64] = "", sub[64] = "";
        const char *w = q + strlen("`pdsmove ");
        size_t n = strcspn(w, " `\n");
        if (n == 0 || n >= sizeof cmd) continue;
        memcpy(cmd, w, n);
        if (w[n] == ' ') {
            const char *w2 = w + n + 1;
            size_t m = strspn(w2, "abcdefghijklmnopqrstuvwxyz-");
            if (m > 0 && m < sizeof sub && w2[0] != '-' && (w2[m] == ' ' || w2[m] == '`')) memcpy(sub, w2, m);
        }
        itest_result r = sub[0] ? itest_run(itest_bin(), cmd, sub, "--help", NULL) : itest_run(itest_bin(), cmd, "--help", NULL);
        cr_assert_eq(r.status, 0, "the message tells the user to run `pdsmove %s%s%s ...`, which does not exist "
                     "(`pdsmove %s%s%s --help` exited %d: %s)\nthe message:\n%s",
                     cmd, sub[0] ? " " : "", sub, cmd, sub[0] ? " " : "", sub, r.status, r.err, text);
        itest_result_free(&r);
    }
}

/* argv (ITEST_MAX_ARGS + 1 slots) for `pdsmove migrate` of the seeded account from from_url
 * to to_url through the PLC directory plc_url: the password (the seed's unless password is
 * given) and a new password in files, journal, the work dir in the scratch directory, then
 * extra (NULL-terminated, may be NULL). No identity option: add --yes, a token source or a
 * rotation key in extra. */
static inline void itest_migrate_argv(const char **argv, json_t *seed, const char *password, const char *from_url,
                                      const char *to_url, const char *plc_url, const char *journal,
                                      const char *const *extra) {
    static char pw[600], newpw[600], work[600];
    snprintf(pw, sizeof pw, "%s", itest_write_file("pw", password ? password : itest_str(seed, "password")));
    snprintf(newpw, sizeof newpw, "%s", itest_write_file("newpw", "a new password for the test"));
    snprintf(work, sizeof work, "%s", itest_path("work"));
    const char *base[] = {itest_bin(), "migrate", itest_str(seed, "handle"), "--from", from_url, "--to", to_url,
                          "--plc-url", plc_url, "--password-file", pw, "--new-password-file", newpw,
                          "--journal", journal, "--work-dir", work};
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[n++] = base[i];
    for (size_t i = 0; extra && extra[i]; i++) {
        cr_assert_lt(n, (size_t)ITEST_MAX_ARGS, "too many migrate options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
}

/* ---- faults: scripts/testbed/faultproxy in front of a real server ---- */

typedef struct {
    pid_t pid;
    int port;
    char url[64];
    FILE *log;
} itest_proxy;

/* Starts faultproxy for target with rules (its JSON list) on port want_port (0: any free
 * one); the URL to use instead of target in p->url. Stop with itest_proxy_stop. */
static inline void itest_proxy_start_on(itest_proxy *p, const char *target, const char *rules, int want_port) {
    int out[2];
    cr_assert_eq(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", want_port);
    char *argv[] = {(char *)itest_script("faultproxy"), "--target", (char *)target, "--rules", (char *)rules, "--port", port_arg, NULL};
    cr_assert_eq(posix_spawn(&p->pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    p->log = fdopen(out[0], "r");
    char line[128] = "";
    cr_assert_not_null(fgets(line, sizeof line, p->log), "faultproxy did not start");
    int port = 0;
    cr_assert_eq(sscanf(line, "listening %d", &port), 1, "faultproxy said: %s", line);
    cr_assert(want_port == 0 || port == want_port, "faultproxy took port %d, not %d", port, want_port);
    p->port = port;
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", port);
}

static inline void itest_proxy_start(itest_proxy *p, const char *target, const char *rules) {
    itest_proxy_start_on(p, target, rules, 0);
}

static inline void itest_proxy_stop(itest_proxy *p) {
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    fclose(p->log);
}

#endif
