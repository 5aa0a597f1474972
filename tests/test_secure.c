/* test_secure.c — the process-wide protections (src/util/secure.c): no core dumps, jansson's
 * memory wiped when freed, secret files others can read refused. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "pdsmove/secure.h"

/* A new empty file <dir>/<name> (dir from mkdtemp, holds 32+ bytes) with mode; returns its fd. */
static int scratch_file(char *dir, char *path, size_t size, const char *name, mode_t mode) {
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, size, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, mode);
    cr_assert_geq(fd, 0);
    return fd;
}

Test(secure, process_init_switches_core_dumps_off_and_installs_a_wiping_free) {
    json_malloc_t m0;
    json_free_t f0;
    json_get_alloc_funcs(&m0, &f0);
    cr_assert_eq((void *)f0, (void *)free, "before: jansson frees with free()");
    err_t e = {0};
    cr_assert_eq(secure_process_init(&e), ERR_OK, "%s", e.msg);
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_CORE, &rl), 0);
    cr_assert_eq(rl.rlim_cur, 0, "core size soft limit");
    cr_assert_eq(rl.rlim_max, 0, "core size hard limit (so nothing below can raise it again)");
    cr_assert_eq(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0, "the process is not dumpable");
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    cr_assert_neq((void *)f, (void *)free, "jansson frees through the wiping free");
    /* still a working allocator, and json_dumps' result may still go to plain free() */
    json_t *j = json_pack("{s:s}", "password", "hunter2");
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"password\":\"hunter2\"}");
    free(text);
    json_decref(j);
}

Test(secure, wipe_block_zeroes_the_whole_block) {
    size_t n = 100;
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    memset(p, 'A', n);
    secure_wipe_block(p);
    for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], 0, "byte %zu not wiped", i);
    free(p);
    secure_wipe_block(NULL); /* allowed, like free(NULL) */
}

Test(secure, private_file_check_refuses_group_or_other_bits_and_names_the_chmod) {
    char dir[] = "/tmp/pdsmove-secure-XXXXXX", path[64];
    int fd = scratch_file(dir, path, sizeof path, "secret", 0600);
    const mode_t ok[] = {0600, 0400, 0700, 0200};
    const mode_t bad[] = {0644, 0640, 0604, 0620, 0602, 0610, 0601, 0666};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cr_assert_eq(fchmod(fd, ok[i]), 0);
        err_t e = {0};
        cr_assert_eq(secure_check_private_fd(fd, path, "key file", &e), ERR_OK, "mode %o: %s", (unsigned)ok[i], e.msg);
    }
    char want[128];
    snprintf(want, sizeof want, "run `chmod 600 %s`", path);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(fchmod(fd, bad[i]), 0);
        err_t e = {0};
        cr_assert_eq(secure_check_private_fd(fd, path, "key file", &e), ERR_USAGE, "mode %o must be refused", (unsigned)bad[i]);
        cr_assert(strstr(e.msg, want) && strstr(e.msg, "key file"), "mode %o: %s", (unsigned)bad[i], e.msg);
    }
    close(fd);
    /* a pipe (--password-file /dev/stdin, <(pass show x)) is not a file others can open */
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    err_t e = {0};
    cr_assert_eq(secure_check_private_fd(pipefd[0], "/dev/stdin", "password file", &e), ERR_OK, "%s", e.msg);
    close(pipefd[0]);
    close(pipefd[1]);
    unlink(path);
    rmdir(dir);
}

/* An ACL entry in Linux's xattr format: {u16 tag, u16 perm, u32 id}, little-endian. */
static size_t acl_entry(unsigned char *p, unsigned tag, unsigned perm, uint32_t id) {
    p[0] = (unsigned char)tag, p[1] = 0, p[2] = (unsigned char)perm, p[3] = 0;
    for (int i = 0; i < 4; i++) p[4 + i] = (unsigned char)(id >> (8 * i));
    return 8;
}

/* systemd's LoadCredential= file for a service user: root's 0400 plus "user:<uid>:r--", shown
 * by stat as 0440. Accepted when the named user is us; refused when it is someone else or
 * when the owning group may read. */
Test(secure, a_file_only_an_acl_entry_for_us_can_read_is_private) {
    char dir[] = "/tmp/pdsmove-secure-acl-XXXXXX", path[64];
    int fd = scratch_file(dir, path, sizeof path, "credential", 0400);
    const struct { uint32_t user; unsigned group; bool ok; } cases[] = {
        {(uint32_t)geteuid(), 0, true},        /* like systemd's credential: only us */
        {(uint32_t)geteuid() + 1, 0, false},   /* another user can read it */
        {(uint32_t)geteuid(), 4, false},       /* the owning group can read it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char acl[4 + 5 * 8] = {2, 0, 0, 0};
        size_t n = 4;
        n += acl_entry(acl + n, 0x01, 4, 0xffffffffu);       /* owner r-- */
        n += acl_entry(acl + n, 0x02, 4, cases[i].user);     /* user:<uid>:r-- */
        n += acl_entry(acl + n, 0x04, cases[i].group, 0xffffffffu);
        n += acl_entry(acl + n, 0x10, 4, 0xffffffffu);       /* mask r-- */
        n += acl_entry(acl + n, 0x20, 0, 0xffffffffu);       /* other --- */
        if (fsetxattr(fd, "system.posix_acl_access", acl, n, 0) != 0) {
            cr_log_warn("cannot set an ACL in /tmp (%s): the ACL case is not checked here", strerror(errno));
            break;
        }
        struct stat st;
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert_eq(st.st_mode & 0777, 0440, "case %zu: stat shows the mask as the group bits (mode %o)", i, (unsigned)(st.st_mode & 0777));
        err_t e = {0};
        err_code rc = secure_check_private_fd(fd, path, "password file", &e);
        cr_assert_eq(rc, cases[i].ok ? ERR_OK : ERR_USAGE, "case %zu: %s", i, e.msg);
    }
    close(fd);
    unlink(path);
    rmdir(dir);
}
