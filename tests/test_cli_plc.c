/* test_cli_plc.c — runs the built `pdsmove plc verify-log` (PDSMOVE_BIN, set by `zig build
 * test`) the way a user would: on every fixture log, on truncated and garbage files, on
 * standard input, with --json and --help, and checks exit codes and messages. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>

#include "cli_testutil.h"

#define PLC_DIR PDSMOVE_FIXTURES "/plc"

typedef cli_result run_result;

/* Runs PDSMOVE_BIN with args (NULL-terminated), stdin from stdin_path (or /dev/null). */
static run_result run(const char *stdin_path, const char *const *args) {
    const cli_run_opts o = {.stdin_path = stdin_path};
    return cli_run_with(&o, args);
}

static void run_free(run_result *r) { cli_result_free(r); }

static void fixture_path(const char *name, char out[512]) { snprintf(out, 512, "%s/%s", PLC_DIR, name); }

/* A temp file holding data; the caller unlinks path. */
static void write_temp(const void *data, size_t len, char path[64]) {
    snprintf(path, 64, "/tmp/pdsmove-plc-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static char **list_logs(size_t *n) {
    DIR *d = opendir(PLC_DIR);
    cr_assert_not_null(d, "cannot open %s", PLC_DIR);
    char **v = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "log_", 4) || l < 9 || strcmp(de->d_name + l - 5, ".json")) continue;
        v = realloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

/* The last non-nullified entry's cid and the log's did, read from the fixture itself. */
static void expected_head(const char *path, char did[64], char cid[128]) {
    json_t *log = json_load_file(path, 0, NULL);
    cr_assert_not_null(log, "%s", path);
    for (size_t i = 0; i < json_array_size(log); i++) {
        json_t *ent = json_array_get(log, i);
        if (!json_is_true(json_object_get(ent, "nullified")))
            snprintf(cid, 128, "%s", json_string_value(json_object_get(ent, "cid")));
    }
    snprintf(did, 64, "%s", json_string_value(json_object_get(json_array_get(log, 0), "did")));
    json_decref(log);
}

static const struct {
    const char *name;
    const char *index_text;
    const char *keyword;
} invalid_cases[] = {
    {"log_invalid_nullification_reused_key.json", "operation #2", "higher priority"},
    {"log_invalid_sig_b64_newline.json", "operation #0", "base64url"},
    {"log_invalid_sig_b64_padding_chars.json", "operation #0", "padding"},
    {"log_invalid_sig_der.json", "operation #0", "signature does not verify"},
    {"log_invalid_sig_k256_high_s.json", "operation #0", "high-S"},
    {"log_invalid_sig_p256_high_s.json", "operation #0", "high-S"},
    {"log_invalid_update_nullified.json", "operation #4", "nullified operation cannot be built upon"},
};

Test(cli_plc, verify_log_accepts_every_valid_fixture_and_rejects_every_invalid_one) {
    size_t n, valid = 0, invalid = 0;
    char **names = list_logs(&n);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        fixture_path(names[i], path);
        const char *args[] = {"plc", "verify-log", path, NULL};
        run_result r = run(NULL, args);
        if (strncmp(names[i], "log_invalid_", 12)) {
            cr_assert_eq(r.status, 0, "%s: exit %d, stderr: %s", names[i], r.status, r.err);
            char did[64], cid[128];
            expected_head(path, did, cid);
            cr_assert_not_null(strstr(r.out, did), "%s: output lacks the DID: %s", names[i], r.out);
            cr_assert_not_null(strstr(r.out, "valid audit log"), "%s: %s", names[i], r.out);
            cr_assert_not_null(strstr(r.out, cid), "%s: output lacks the last CID %s: %s", names[i], cid, r.out);
            valid++;
        } else {
            size_t c = 0;
            while (c < sizeof invalid_cases / sizeof *invalid_cases && strcmp(invalid_cases[c].name, names[i])) c++;
            cr_assert_lt(c, sizeof invalid_cases / sizeof *invalid_cases, "%s: no expectation written", names[i]);
            cr_assert_eq(r.status, 1, "%s: exit %d, stdout: %s", names[i], r.status, r.out);
            cr_assert_not_null(strstr(r.err, invalid_cases[c].index_text), "%s: stderr lacks '%s': %s", names[i],
                               invalid_cases[c].index_text, r.err);
            cr_assert_not_null(strstr(r.err, invalid_cases[c].keyword), "%s: stderr lacks '%s': %s", names[i],
                               invalid_cases[c].keyword, r.err);
            cr_assert_not_null(strstr(r.err, "invalid audit log"), "%s: %s", names[i], r.err);
            invalid++;
        }
        run_free(&r);
        free(names[i]);
    }
    free(names);
    cr_assert_geq(valid, 8, "only %zu valid fixtures ran", valid);
    cr_assert_eq(invalid, sizeof invalid_cases / sizeof *invalid_cases, "%zu invalid fixtures ran", invalid);
}

Test(cli_plc, verify_log_prints_rotation_keys_in_order_with_handle_pds_and_signing_key) {
    char path[512];
    fixture_path("log_bskyapp.json", path);
    const char *args[] = {"plc", "verify-log", path, NULL};
    run_result r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *k0 = strstr(r.out, "[0] did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg");
    const char *k1 = strstr(r.out, "[1] did:key:zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK");
    cr_assert(k0 && k1 && k0 < k1, "rotation keys missing or out of order:\n%s", r.out);
    cr_assert_not_null(strstr(r.out, "handle:          bsky.app"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "https://bsky.social"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "2 operations, 0 nullified"), "%s", r.out);
    run_free(&r);
    /* nullified ops are counted, tombstones reported */
    fixture_path("log_nullification.json", path);
    r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "3 operations, 1 nullified"), "%s", r.out);
    run_free(&r);
    fixture_path("log_tombstone.json", path);
    r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "tombstoned"), "%s", r.out);
    run_free(&r);
}

Test(cli_plc, verify_log_json_output_is_parseable_and_complete) {
    char path[512];
    fixture_path("log_legacy_dholms.json", path);
    const char *args[] = {"plc", "verify-log", "--json", path, NULL};
    run_result r = run(NULL, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_error_t je;
    json_t *j = json_loads(r.out, 0, &je);
    cr_assert_not_null(j, "stdout is not JSON (%s): %s", je.text, r.out);
    cr_assert(json_is_true(json_object_get(j, "valid")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "did")), "did:plc:yk4dd2qkboz2yv6tpubpc6co");
    cr_assert_eq(json_integer_value(json_object_get(j, "operations")), 5);
    cr_assert_str_eq(json_string_value(json_object_get(j, "handle")), "dholms.xyz");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "rotationKeys"), 1)),
                     "did:key:zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK");
    cr_assert_str_eq(json_string_value(json_object_get(j, "lastCid")),
                     "bafyreidfrpuegbqd5r56shka4duythb7phb6d7i3bck2dkeb5fjppwd7gi");
    json_decref(j);
    run_free(&r);
    /* an invalid log with --json: still exit 1, and a JSON verdict naming the index */
    fixture_path("log_invalid_update_nullified.json", path);
    r = run(NULL, args);
    cr_assert_eq(r.status, 1, "%s", r.out);
    j = json_loads(r.out, 0, &je);
    cr_assert_not_null(j, "stdout is not JSON: %s", r.out);
    cr_assert(json_is_false(json_object_get(j, "valid")));
    cr_assert_eq(json_integer_value(json_object_get(j, "index")), 4);
    json_decref(j);
    run_free(&r);
}

Test(cli_plc, verify_log_reads_standard_input_and_checks_the_expected_did) {
    char path[512];
    fixture_path("log_bskyapp.json", path);
    const char *args[] = {"plc", "verify-log", "-", NULL};
    run_result r = run(path, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "did:plc:z72i7hdynmk6r22z27h6tvur"), "%s", r.out);
    run_free(&r);
    const char *ok_did[] = {"plc", "verify-log", "--did", "did:plc:z72i7hdynmk6r22z27h6tvur", path, NULL};
    r = run(NULL, ok_did);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    const char *other_did[] = {"plc", "verify-log", "--did=did:plc:yk4dd2qkboz2yv6tpubpc6co", path, NULL};
    r = run(NULL, other_did);
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.err, "did:plc:yk4dd2qkboz2yv6tpubpc6co"), "%s", r.err);
    run_free(&r);
}

Test(cli_plc, verify_log_fails_cleanly_on_truncated_garbage_empty_and_missing_files) {
    char src[512];
    fixture_path("log_legacy_dholms.json", src);
    FILE *f = fopen(src, "rb");
    cr_assert_not_null(f);
    char data[8192];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    cr_assert_gt(len, 1000);
    static const unsigned char garbage[] = {0x00, 0xff, 0x13, 'P', 'K', 0x03, 0x04, '[', '{', 0x80, 0x00, '\n'};
    const char *notjson = "this is not a did:plc audit log\n";
    const struct { const void *data; size_t len; const char *keyword; } cases[] = {
        {data, len / 2, "not valid JSON"},
        {data, len - 3, "not valid JSON"},
        {garbage, sizeof garbage, "not valid JSON"},
        {notjson, strlen(notjson), "not valid JSON"},
        {"", 0, "not valid JSON"},
        {"{\"did\": 1}", 10, "not a JSON array"},
        {"[]", 2, "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[64];
        write_temp(cases[i].data, cases[i].len, path);
        const char *args[] = {"plc", "verify-log", path, NULL};
        run_result r = run(NULL, args);
        unlink(path);
        cr_assert_eq(r.status, 1, "case %zu: exit %d, stdout %s stderr %s", i, r.status, r.out, r.err);
        cr_assert_not_null(strstr(r.err, cases[i].keyword), "case %zu: stderr lacks '%s': %s", i, cases[i].keyword, r.err);
        cr_assert_not_null(strstr(r.err, "pdsmove: error:"), "case %zu: %s", i, r.err);
        cr_assert_eq(r.out[0], '\0', "case %zu printed to stdout: %s", i, r.out);
        run_free(&r);
    }
    const char *missing[] = {"plc", "verify-log", "/nonexistent/dir/log.json", NULL};
    run_result r = run(NULL, missing);
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.err, "/nonexistent/dir/log.json"), "%s", r.err);
    run_free(&r);
}

Test(cli_plc, help_and_usage_errors) {
    const char *plc_help[] = {"plc", "--help", NULL};
    run_result r = run(NULL, plc_help);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "verify-log"), "%s", r.out);
    run_free(&r);
    const char *verify_help[] = {"plc", "verify-log", "--help", NULL};
    r = run(NULL, verify_help);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "usage: pdsmove plc verify-log"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "72 hours"), "%s", r.out);
    run_free(&r);
    static const char *const bad[][5] = {
        {"plc", NULL},
        {"plc", "frobnicate", NULL},
        {"plc", "verify-log", NULL},
        {"plc", "verify-log", "a.json", "b.json", NULL},
        {"plc", "verify-log", "--bogus", "a.json", NULL},
        {"plc", "verify-log", "--did", NULL},
        {"plc", "verify-log", "--did", "did:web:example.com", "a.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *args[6] = {0};
        for (size_t k = 0; k < 5 && bad[i][k]; k++) args[k] = bad[i][k];
        r = run(NULL, args);
        cr_assert_eq(r.status, 2, "usage case %zu: exit %d (%s)", i, r.status, r.err);
        cr_assert_neq(r.err[0], '\0', "usage case %zu: nothing on stderr", i);
        run_free(&r);
    }
}
