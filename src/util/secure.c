/* secure.c — process-wide protection of secrets (see secure.h). Must stay tiny: it runs before
 * anything else, and everything that holds a secret relies on it. */
#include "pdsmove/secure.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

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

err_code secure_check_private_fd(int fd, const char *path, const char *what, err_t *e) {
    struct stat st;
    if (fstat(fd, &st) != 0) return err_set(e, ERR_IO, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) == 0) return ERR_OK;
    return err_set(e, ERR_USAGE, "%s %s can be read or changed by other users (mode %04o); run `chmod 600 %s` and try again",
                   what, path, (unsigned)(st.st_mode & 07777), path);
}
