/* test_network.c — the byte caps as a user meets them, against the live testbed: a backup
 * whose repository is over --max-repo-bytes is refused, naming the PDS and the limit, and
 * leaves no partial download or archive behind. (The caps and deadlines themselves are unit-
 * tested against scripted servers in tests/test_xrpc.c and tests/test_blob_transfer.c.) */
#include "itest.h"

static void teardown(void) { itest_cleanup(); }

Test(network, a_repository_over_max_repo_bytes_is_refused_naming_the_pds_and_the_limit, .fini = teardown, .timeout = 300) {
    json_t *seed = itest_seed("old", "cap");
    const char *pds = itest_str(itest_pds("old"), "url");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", itest_path("backups"));
    itest_result r = itest_run(itest_bin(), "backup", itest_str(seed, "handle"), "--to", dir, "--pds", pds, "--plc-url",
                               itest_plc_url(), "--max-repo-bytes", "2K", NULL);
    cr_assert_eq(r.status, 1, "status %d:\n%s", r.status, r.err);
    cr_assert(strstr(r.err, pds), "names the PDS:\n%s", r.err);
    cr_assert(strstr(r.err, "2048 bytes"), "names the limit:\n%s", r.err);
    cr_assert(strstr(r.err, "--max-repo-bytes"), "says what to do:\n%s", r.err);
    itest_result_free(&r);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.part' -o -name '*.tar.zst' | grep -q .", dir);
    cr_assert_neq(system(cmd), 0, "no partial download or archive is left in %s", dir);

    r = itest_run(itest_bin(), "backup", "--max-repo-bytes", "lots", itest_str(seed, "handle"), "--to", dir, NULL);
    cr_assert_eq(r.status, 2, "a bad size is a usage error:\n%s", r.err);
    itest_result_free(&r);
    json_decref(seed);
}
