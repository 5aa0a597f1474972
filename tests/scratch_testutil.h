/* scratch_testutil.h — a test's scratch directory: /tmp/pdsmove-<name>-XXXXXX, made fresh and
 * removed with everything in it (never anything outside /tmp/pdsmove-*). Header-only. */
#ifndef PDSMOVE_SCRATCH_TESTUTIL_H
#define PDSMOVE_SCRATCH_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dir must hold at least strlen(name) + 24 bytes. */
static inline void scratch_make(char *dir, size_t size, const char *name) {
    cr_assert_lt(strlen(name) + 24, size, "scratch directory name too long");
    snprintf(dir, size, "/tmp/pdsmove-%s-XXXXXX", name);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s failed", dir);
}

static inline void scratch_remove(const char *dir) {
    char cmd[300];
    if (!dir[0]) return;
    cr_assert_lt(strlen(dir) + 16, sizeof cmd);
    cr_assert(!strncmp(dir, "/tmp/pdsmove-", 13) && !strchr(dir, '\''), "refusing to remove %s", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0, "removing %s failed", dir);
}

#endif
