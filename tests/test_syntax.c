/* test_syntax.c — atproto identifier validators against every line of the interop syntax
 * fixtures (tests/fixtures/interop/syntax/<kind>_syntax_{valid,invalid}.txt), plus edge cases
 * the fixtures do not cover (calendar dates, length limits, error messages). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/syntax.h"

#define SYNTAX_DIR PDSMOVE_FIXTURES "/interop/syntax/"

typedef bool (*validator)(const char *, err_t *);

/* Runs fn on every case line of a fixture file. Blank lines and lines starting with '#' are
 * skipped; every other line is taken literally (leading/trailing spaces are part of the case,
 * as in the upstream test harness), minus its newline. */
static void check_file(const char *file, validator fn, bool want_valid) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", SYNTAX_DIR, file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open fixture %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, cases = 0;
    while ((got = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (got > 0 && line[got - 1] == '\n') line[--got] = 0;
        if (got == 0 || line[0] == '#') continue;
        cases++;
        err_t e;
        err_clear(&e);
        bool ok = fn(line, &e);
        if (want_valid) {
            cr_expect(ok, "%s:%d must be accepted: \"%s\" (%s)", file, lineno, line, e.msg);
        } else {
            cr_expect(!ok, "%s:%d must be rejected: \"%s\"", file, lineno, line);
            if (!ok)
                cr_expect((e.code == ERR_INVALID || e.code == ERR_LIMIT) && e.msg[0] != 0,
                          "%s:%d rejection of \"%s\" must set an error with a message", file, lineno, line);
        }
    }
    free(line);
    fclose(f);
    cr_assert_gt(cases, 0, "%s has no cases", file);
}

#define FIXTURE_TESTS(kind, fn)                                                                    \
    Test(syntax_fixtures, kind##_valid_lines_accepted) { check_file(#kind "_syntax_valid.txt", fn, true); } \
    Test(syntax_fixtures, kind##_invalid_lines_rejected) { check_file(#kind "_syntax_invalid.txt", fn, false); }

FIXTURE_TESTS(did, syntax_did)
FIXTURE_TESTS(handle, syntax_handle)
FIXTURE_TESTS(nsid, syntax_nsid)
FIXTURE_TESTS(tid, syntax_tid)
FIXTURE_TESTS(recordkey, syntax_record_key)
FIXTURE_TESTS(aturi, syntax_at_uri)
FIXTURE_TESTS(datetime, syntax_datetime)
FIXTURE_TESTS(atidentifier, syntax_at_identifier)
FIXTURE_TESTS(cid, syntax_cid)

/* ---------------------------------------------------------------- beyond the fixtures */

static void expect_all(validator fn, const char *name, const char *const *cases, size_t n, bool want) {
    for (size_t i = 0; i < n; i++) {
        err_t e;
        err_clear(&e);
        bool ok = fn(cases[i], &e);
        cr_expect_eq(ok, want, "%s(\"%s\") should be %s (%s)", name, cases[i], want ? "valid" : "invalid", e.msg);
    }
}

Test(syntax_datetime, checks_the_calendar) {
    const char *good[] = {
        "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "1985-04-30T23:59:59.999Z",
        "0000-01-01T00:00:00-01:00", "9999-12-31T23:59:59+01:00", "1985-04-12T23:20:50.123+23:59",
    };
    const char *bad[] = {
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "1985-04-31T00:00:00Z", "1985-00-12T00:00:00Z",
        "1985-13-12T00:00:00Z", "1985-04-00T00:00:00Z", "1985-04-12T24:00:00Z", "1985-04-12T23:60:00Z",
        "1985-04-12T23:20:60Z", "1985-04-12T23:20:50.123+24:00", "1985-04-12T23:20:50.123+00:60",
        "0000-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "1985-04-12T23:20:50ZZ",
        "1985-04-12T23:20:50.123Z\n", "",
    };
    expect_all(syntax_datetime, "syntax_datetime", good, sizeof good / sizeof good[0], true);
    expect_all(syntax_datetime, "syntax_datetime", bad, sizeof bad / sizeof bad[0], false);
}

Test(syntax_limits, enforces_length_limits_exactly) {
    static char buf[SYNTAX_AT_URI_MAX + 16];
    /* DID: 2048 ok, 2049 too long */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "did:plc:", 8);
    buf[SYNTAX_DID_MAX] = 0;
    cr_expect(syntax_did(buf, NULL), "DID of exactly %d chars", SYNTAX_DID_MAX);
    buf[SYNTAX_DID_MAX] = 'a';
    buf[SYNTAX_DID_MAX + 1] = 0;
    err_t e;
    err_clear(&e);
    cr_expect(!syntax_did(buf, &e), "DID of %d chars", SYNTAX_DID_MAX + 1);
    cr_expect_eq(e.code, ERR_LIMIT);
    /* record key: 512 ok, 513 too long */
    memset(buf, 'k', sizeof buf);
    buf[SYNTAX_RKEY_MAX] = 0;
    cr_expect(syntax_record_key(buf, NULL));
    buf[SYNTAX_RKEY_MAX] = 'k';
    buf[SYNTAX_RKEY_MAX + 1] = 0;
    cr_expect(!syntax_record_key(buf, NULL));
    /* handle: 253 ok (labels of 63), 254 too long */
    const char *h253 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
                       "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
                       "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc."
                       "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    cr_assert_eq(strlen(h253), 253);
    cr_expect(syntax_handle(h253, NULL), "253-char handle");
    snprintf(buf, sizeof buf, "x%s", h253);
    cr_expect(!syntax_handle(buf, NULL), "254-char handle");
    /* CID string: 8..256 */
    cr_expect(syntax_cid("bafyabcd", NULL));
    cr_expect(!syntax_cid("bafyabc", NULL));
    memset(buf, 'b', sizeof buf);
    buf[SYNTAX_CID_MAX] = 0;
    cr_expect(syntax_cid(buf, NULL));
    buf[SYNTAX_CID_MAX] = 'b';
    buf[SYNTAX_CID_MAX + 1] = 0;
    cr_expect(!syntax_cid(buf, NULL));
    /* AT URI: 8192 ok, 8193 too long (authority + collection + long-ish rkeys are capped at
     * 512, so use a long DID authority to reach the limit) */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "at://did:plc:", 13);
    buf[SYNTAX_AT_URI_MAX + 1] = 0;
    cr_expect(!syntax_at_uri(buf, NULL), "AT URI over %d chars", SYNTAX_AT_URI_MAX);
}

Test(syntax_messages, name_the_input_and_the_rule) {
    err_t e;
    err_clear(&e);
    cr_assert(!syntax_handle("jo_hn.test", &e));
    cr_expect(strstr(e.msg, "jo_hn.test") != NULL, "message names the input: %s", e.msg);
    cr_expect(strstr(e.msg, "offset 2") != NULL, "message names the position: %s", e.msg);
    err_clear(&e);
    cr_assert(!syntax_at_uri("at://did:plc:asdf123/com.atproto.feed.post/%30", &e));
    cr_expect(strstr(e.msg, "record key") != NULL, "message names the part: %s", e.msg);
    err_clear(&e);
    cr_assert(!syntax_tid("zzzzzzzzzzzzz", &e));
    cr_expect(strstr(e.msg, "high bit") != NULL, "%s", e.msg);
    err_clear(&e);
    cr_assert(!syntax_datetime("1985-04-12T23:20:50.123-00:00", &e));
    cr_expect(strstr(e.msg, "-00:00") != NULL, "%s", e.msg);
}

Test(syntax_messages, work_without_an_error_value) {
    cr_expect(!syntax_did("did:METHOD:val", NULL));
    cr_expect(!syntax_nsid("a.b", NULL));
    cr_expect(syntax_nsid("a.b.c", NULL));
    cr_expect(!syntax_at_uri("at://bsky", NULL));
    cr_expect(syntax_at_identifier("did:plc:7iza6de2dwap2sbkpav7c6c6", NULL));
    cr_expect(!syntax_at_identifier("@handle", NULL));
}

Test(syntax_at_uri, accepts_real_records_and_rejects_extra_parts) {
    const char *good[] = {
        "at://did:plc:44ybard66vv44zksje25o7dz/app.bsky.feed.post/3jwdwj2ctlk26",
        "at://bnewbold.bsky.team/app.bsky.feed.post/3jwdwj2ctlk26",
        "at://did:web:example.com/app.bsky.actor.profile/self",
    };
    const char *bad[] = {
        "at://did:plc:44ybard66vv44zksje25o7dz/app.bsky.feed.post/3jwdwj2ctlk26?x=1",
        "at://did:plc:44ybard66vv44zksje25o7dz?x=1",
        "at://did:plc:44ybard66vv44zksje25o7dz/app.bsky.feed.post/3jwdwj2ctlk26#/text",
        "at://did:plc:44ybard66vv44zksje25o7dz/app.bsky.feed.post/.",
        "at://",
    };
    expect_all(syntax_at_uri, "syntax_at_uri", good, sizeof good / sizeof good[0], true);
    expect_all(syntax_at_uri, "syntax_at_uri", bad, sizeof bad / sizeof bad[0], false);
}
