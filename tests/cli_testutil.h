/* cli_testutil.h — runs the built pdsmove (PDSMOVE_BIN, set by `zig build test`) the way a
 * user would and captures its exit status, stdout and stderr; shared by tests/test_cli_*.c.
 * A missing binary fails the test (never a skip). Header-only test helper. */
#ifndef PDSMOVE_CLI_TESTUTIL_H
#define PDSMOVE_CLI_TESTUTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scratch_testutil.h"

#define CLI_MAX_ARGS 64
#define CLI_OUT_MAX ((size_t)64 << 20) /* more output than this fails the test */
#define CLI_KEPT_MAX 512

typedef struct {
    int status; /* exit code, or -1 when it did not exit normally (a signal) */
    char *out;  /* all of stdout, NUL-terminated (owned: cli_result_free) */
    char *err;  /* all of stderr */
} cli_result;

typedef struct {
    const char *stdin_path; /* NULL: /dev/null */
    const char *const *env; /* NULL-terminated list: "NAME=value" sets, "NAME" unsets; may be NULL */
} cli_run_opts;

static inline const char *cli_bin(void) {
    const char *b = getenv("PDSMOVE_BIN");
    cr_assert(b != NULL && b[0] != 0,
              "PDSMOVE_BIN is not set: the CLI tests need the built binary; run them with `zig build test`");
    cr_assert_eq(access(b, X_OK), 0, "PDSMOVE_BIN=%s is not an executable file", b);
    return b;
}

static inline int cli_temp_fd_(void) {
    char path[] = "/tmp/pdsmove-cli-out-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    unlink(path);
    return fd;
}

/* Reads all of fd (from its start) into a new string, and closes fd. */
static inline char *cli_slurp_fd_(int fd) {
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_leq((size_t)st.st_size, CLI_OUT_MAX, "the command wrote %lld bytes, more than the tests allow",
                  (long long)st.st_size);
    char *s = malloc((size_t)st.st_size + 1);
    cr_assert_not_null(s);
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t n = pread(fd, s + len, (size_t)st.st_size - len, (off_t)len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    s[len] = 0;
    close(fd);
    return s;
}

/* The child: its own session (no controlling terminal, so a prompt fails at once instead of
 * waiting on the tester's terminal), stdin/stdout/stderr redirected, environment adjusted. */
static inline void cli_child_(const cli_run_opts *o, int out, int err, char **argv) {
    if (setsid() < 0) _exit(126);
    int in = open(o && o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    for (size_t i = 0; o && o->env && o->env[i]; i++) {
        const char *eq = strchr(o->env[i], '=');
        if (!eq) {
            unsetenv(o->env[i]);
            continue;
        }
        char name[256];
        size_t n = (size_t)(eq - o->env[i]);
        if (n >= sizeof name) _exit(126);
        memcpy(name, o->env[i], n);
        name[n] = 0;
        if (setenv(name, eq + 1, 1) != 0) _exit(126);
    }
    execv(argv[0], argv);
    dprintf(2, "cli_testutil: cannot execute %s\n", argv[0]);
    _exit(127);
}

/* Runs PDSMOVE_BIN with args (NULL-terminated) and waits for it. */
static inline cli_result cli_run_with(const cli_run_opts *o, const char *const *args) {
    const char *b = cli_bin();
    char *argv[CLI_MAX_ARGS + 2];
    size_t n = 0;
    argv[n++] = (char *)b;
    for (; args[n - 1] != NULL; n++) {
        cr_assert_lt(n, (size_t)CLI_MAX_ARGS, "too many arguments");
        argv[n] = (char *)args[n - 1];
    }
    argv[n] = NULL;
    int out = cli_temp_fd_(), err = cli_temp_fd_();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) cli_child_(o, out, err, argv);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid, "waitpid failed");
    cli_result r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, cli_slurp_fd_(out), cli_slurp_fd_(err)};
    cr_assert_neq(r.status, 127, "could not execute %s: %s", b, r.err);
    cr_assert_neq(r.status, 126, "could not set up the child for %s", b);
    return r;
}

static inline cli_result cli_run(const char *const *args) { return cli_run_with(NULL, args); }

static inline void cli_result_free(cli_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* For tests that hold many results: their buffers stay reachable here (each test runs in its
 * own process) until cli_kept_free(), so no test has to free each one. */
static char *cli_kept_[CLI_KEPT_MAX];
static size_t cli_n_kept_;

static inline cli_result cli_run_kept(const cli_run_opts *o, const char *const *args) {
    cli_result r = cli_run_with(o, args);
    cr_assert_leq(cli_n_kept_ + 2, (size_t)CLI_KEPT_MAX, "too many kept results: free some with cli_kept_free()");
    cli_kept_[cli_n_kept_++] = r.out;
    cli_kept_[cli_n_kept_++] = r.err;
    return r;
}

static inline void cli_kept_free(void) {
    for (size_t i = 0; i < cli_n_kept_; i++) free(cli_kept_[i]);
    cli_n_kept_ = 0;
}

#define CLI_RUN(...) cli_run((const char *const[]){__VA_ARGS__, NULL})

/* Writes text to a new or truncated file at path (the test fails if it cannot). */
static inline void cli_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_geq(fputs(text, f), 0);
    cr_assert_eq(fclose(f), 0);
}

#endif
