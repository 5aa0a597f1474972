/* secure.c — process-wide protection of secrets (see secure.h). Must stay tiny: it runs before
 * anything else, and everything that holds a secret relies on it. */
#include "pdsmove/secure.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

void secure_wipe_block(void *p) {
    if (p) explicit_bzero(p, malloc_usable_size(p));
}

/* jansson's free gets no size; malloc_usable_size gives it without a header of our own, so a
 * string jansson returns (json_dumps) may still be released with plain free(). */
static void wiping_free(void *p) {
    secure_wipe_block(p);
    free(p);
}

err_code secure_process_init(err_t *e) {
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return err_set(e, ERR_IO, "cannot switch core dumps off (setrlimit): %s", strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return err_set(e, ERR_IO, "cannot switch core dumps off (prctl): %s", strerror(errno));
    json_set_alloc_funcs(malloc, wiping_free);
    return ERR_OK;
}

/* With a POSIX ACL the group bits of the mode are the ACL's mask, not a group's rights:
 * systemd's LoadCredential= file is 0400 plus "user:<service user>:r--", which stat shows as
 * 0440. Private means: no other, no group, and no named user but us may read or write
 * (Linux's system.posix_acl_access format: a 4-byte version 2, then {u16 tag, u16 perm, u32
 * id} entries). -1: no ACL (the mode says it all), 1 private, 0 not. */
static int acl_private(int fd) {
    unsigned char acl[4 + 8 * 64];
    ssize_t n = fgetxattr(fd, "system.posix_acl_access", acl, sizeof acl);
    if (n < 0) return errno == ERANGE ? 0 : -1; /* too many entries to be a private file */
    if (n < 4 || (n - 4) % 8 != 0 || acl[0] != 2) return 0;
    unsigned mask = 7, rw = 6;
    for (ssize_t i = 4; i < n; i += 8)
        if ((acl[i] | acl[i + 1] << 8) == 0x10) mask = acl[i + 2];
    for (ssize_t i = 4; i < n; i += 8) {
        unsigned tag = acl[i] | acl[i + 1] << 8, perm = acl[i + 2];
        uint32_t id = (uint32_t)acl[i + 4] | (uint32_t)acl[i + 5] << 8 | (uint32_t)acl[i + 6] << 16 | (uint32_t)acl[i + 7] << 24;
        bool other_user = tag == 0x02 && id != (uint32_t)geteuid();
        if ((tag == 0x20 && (perm & rw)) || ((tag == 0x04 || tag == 0x08 || other_user) && (perm & mask & rw))) return 0;
    }
    return 1;
}

err_code secure_check_private_fd(int fd, const char *path, const char *what, err_t *e) {
    struct stat st;
    if (fstat(fd, &st) != 0) return err_set(e, ERR_IO, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) == 0) return ERR_OK;
    if ((st.st_mode & S_IRWXO) == 0 && acl_private(fd) == 1) return ERR_OK;
    return err_set(e, ERR_USAGE, "%s %s can be read or changed by other users (mode %04o); run `chmod 600 %s` and try again",
                   what, path, (unsigned)(st.st_mode & 07777), path);
}
