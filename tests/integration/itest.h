/* itest.h — helpers for the integration tests (the C files in tests/integration): find the live testbed
 * (PDSMOVE_TESTBED = its testbed.json) and the pdsmove binary (PDSMOVE_BIN), run commands
 * without a shell and capture their output, seed fresh accounts. Header-only: each test file
 * includes it once. A missing testbed or binary is a test FAILURE, never a skip. */
#ifndef PDSMOVE_ITEST_H
#define PDSMOVE_ITEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdarg.h>
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

/* The PDS named `name` ("old", "new") in testbed.json (borrowed). */
static inline json_t *itest_pds(const char *name) {
    json_t *arr = json_object_get(itest_testbed(), "pds");
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        if (!strcmp(json_string_value(json_object_get(p, "name")), name)) return p;
    }
    cr_assert_fail("testbed has no PDS named %s", name);
    return NULL;
}

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

/* Seeds a fresh account "<prefix>-<unique>.<pds>.test" on that PDS with the seed script's
 * default (small) profile; returns the seed's JSON (owned: json_decref). */
static inline json_t *itest_seed(const char *pds, const char *prefix) {
    static unsigned counter;
    char handle[128], out[128];
    json_t *p = itest_pds(pds);
    snprintf(handle, sizeof handle, "%s-%x%x%u%s", prefix, (unsigned)getpid(), (unsigned)(time(NULL) & 0xfffff),
             counter++, itest_str(p, "handleDomain"));
    snprintf(out, sizeof out, "seed-%s.json", handle);
    const char *out_path = itest_path(out);
    itest_result r = itest_must(itest_script("seed"), "--testbed", itest_testbed_path(), "--pds", pds,
                                "--handle", handle, "--out", out_path, NULL);
    itest_result_free(&r);
    return itest_load_json(out_path);
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

#endif
