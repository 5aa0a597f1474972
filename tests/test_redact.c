/* test_redact.c — secrets (whole, or a long enough piece of one) never survive redact_text,
 * whatever the output size; ordinary text and short pieces do. */
#include <criterion/criterion.h>
#include <string.h>

#include "pdsmove/redact.h"

#define PW "correct-horse-battery-staple"   /* 28 characters */
#define ADMIN "admin-secret-4711"           /* 17 characters */

static redact_set set;

static void add(const char *secret) {
    err_t e;
    cr_assert_eq(redact_set_add(&set, secret, &e), ERR_OK, "%s", e.msg);
}

static void setup(void) { redact_set_init(&set); }
static void teardown(void) { redact_set_clear(&set); }

TestSuite(redact, .init = setup, .fini = teardown);

Test(redact, whole_secret_is_replaced) {
    add(PW);
    char out[256];
    cr_assert_str_eq(redact_text(&set, "login failed for password " PW " (HTTP 401)", out, sizeof out),
                     "login failed for password [redacted] (HTTP 401)");
    cr_assert_str_eq(redact_text(&set, PW, out, sizeof out), "[redacted]");
    cr_assert_str_eq(redact_text(&set, PW PW, out, sizeof out), "[redacted][redacted]");
}

Test(redact, long_piece_of_a_secret_is_replaced) {
    add(PW);
    char out[256];
    /* the middle 12 characters, as a server's echo cut short leaves them */
    cr_assert_str_eq(redact_text(&set, "got 'horse-batter' back", out, sizeof out), "got '[redacted]' back");
    /* the end of the secret, longer than the minimum */
    cr_assert_str_eq(redact_text(&set, "tail: -battery-staple.", out, sizeof out), "tail: [redacted].");
}

Test(redact, short_piece_is_left_alone) {
    add(PW);
    char out[256];
    /* 11 characters of the secret: ordinary text stays readable */
    cr_assert_str_eq(redact_text(&set, "the horse-batte is ok", out, sizeof out), "the horse-batte is ok");
    cr_assert_str_eq(redact_text(&set, "password required", out, sizeof out), "password required");
}

Test(redact, short_secret_is_replaced_only_whole) {
    add("hunter2"); /* shorter than REDACT_MIN_RUN: only the whole of it counts */
    char out[64];
    cr_assert_str_eq(redact_text(&set, "pw hunter2!", out, sizeof out), "pw [redacted]!");
    cr_assert_str_eq(redact_text(&set, "pw hunter", out, sizeof out), "pw hunter");
}

Test(redact, several_secrets) {
    add(PW);
    add(NULL);  /* skipped */
    add("ab");  /* too short to tell apart from ordinary text: skipped */
    add(ADMIN);
    cr_assert_eq(set.n, 2);
    char out[256];
    cr_assert_str_eq(redact_text(&set, "a " ADMIN " b " PW " c ab", out, sizeof out), "a [redacted] b [redacted] c ab");
    cr_assert_str_eq(redact_text(&set, NULL, out, sizeof out), "");
}

Test(redact, no_secrets_copies_the_text) {
    char out[16];
    cr_assert_str_eq(redact_text(&set, "nothing secret here", out, sizeof out), "nothing secret ");
}

/* However small the output, no prefix of a secret ends up in it: the text stops before the
 * mark that does not fit. */
Test(redact, truncation_never_leaks_part_of_a_secret) {
    add(PW);
    const char *in = "x: " PW " y";
    for (size_t size = 1; size <= 40; size++) {
        char out[64];
        memset(out, '#', sizeof out);
        redact_text(&set, in, out, size);
        cr_assert_lt(strlen(out), size, "size %zu: %s", size, out);
        cr_assert_eq(out[size], '#', "size %zu: wrote past the end", size);
        cr_assert_null(strstr(out, "cor"), "size %zu: %s", size, out);
        const char *want = size < 3 + sizeof REDACT_MARK ? "x: " : "x: [redacted] y";
        cr_assert(!strncmp(out, want, strlen(out)), "size %zu: %s", size, out);
        if (size >= 3 + sizeof REDACT_MARK) cr_assert(!strncmp(out, "x: [redacted]", 13), "size %zu: %s", size, out);
    }
    char none[1] = {'#'};
    redact_text(&set, in, none, 0);
    cr_assert_eq(none[0], '#', "size 0 writes nothing");
}

Test(redact, limits_are_errors_not_silent_truncation) {
    err_t e;
    char big[REDACT_SECRET_SIZE + 1];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    cr_assert_eq(redact_set_add(&set, big, &e), ERR_LIMIT);
    big[REDACT_SECRET_SIZE - 1] = 0; /* exactly the largest that fits */
    cr_assert_eq(redact_set_add(&set, big, &e), ERR_OK, "%s", e.msg);
    for (int i = 1; i < REDACT_SECRETS_MAX; i++) add("another-secret");
    cr_assert_eq(redact_set_add(&set, "one-too-many", &e), ERR_LIMIT);
    cr_assert_eq(set.n, REDACT_SECRETS_MAX);
}

Test(redact, clear_wipes_the_copies) {
    add(PW);
    redact_set_clear(&set);
    cr_assert(redact_set_empty(&set));
    cr_assert_null(memmem(&set, sizeof set, "horse", 5));
    char out[64];
    cr_assert_str_eq(redact_text(&set, PW, out, sizeof out), PW);
}
