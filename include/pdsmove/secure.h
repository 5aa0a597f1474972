/* secure.h — keeping secrets (passwords, tokens, private keys) out of places they could leak
 * from: core dumps, other processes (ptrace), freed heap memory, files others can read. */
#ifndef PDSMOVE_SECURE_H
#define PDSMOVE_SECURE_H

#include "pdsmove/err.h"

/* Once, before any secret is read: core dumps off (RLIMIT_CORE 0, PR_SET_DUMPABLE 0, which
 * also keeps other processes of the same user from attaching a debugger), and jansson's
 * memory wiped when freed (JSON bodies carry passwords and session tokens). */
err_code secure_process_init(err_t *e);

/* Zeroes the whole heap block p (from malloc; its usable size, not only the part in use). */
void secure_wipe_block(void *p);

/* Refuses a regular file (open as fd, named path) that group or others may read or write:
 * ERR_USAGE naming the `chmod 600` to run. `what` says what the file holds ("key file",
 * "password file"). Pipes and terminals (--password-file /dev/stdin) are not refused, nor is
 * a file whose POSIX ACL lets only us read it (systemd's LoadCredential= files, 0400 plus
 * "user:<service user>:r--", which stat shows as 0440). */
err_code secure_check_private_fd(int fd, const char *path, const char *what, err_t *e);

#endif
