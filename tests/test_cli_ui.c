/* test_cli_ui.c — the plain progress display (src/cli/cli_ui.c, compiled in here: the CLI
 * files are not in the library): a registered secret never reaches the screen, whether a
 * step detail, an info line or an error carries it. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdio.h>
#include <string.h>

#include "../src/cli/cli_ui.c"

/* what cli_ui.c uses from cli_input.c */
bool cli_have_tty(void) { return false; }
bool cli_confirm(const char *question) {
    (void)question;
    return false;
}

static const char secret[] = "correct horse battery staple";

static void read_stderr(char *out, size_t size) {
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(out, 1, size - 1, f);
    out[n] = 0;
}

Test(cli_ui, redact_hides_a_registered_secret_and_long_pieces_of_it, .fini = cli_secrets_wipe) {
    cli_secret_register(secret);
    char out[256];
    cli_redact("server said: bad password 'correct horse battery staple'", out, sizeof out);
    cr_assert_null(strstr(out, "horse"), "%s", out);
    cr_assert(strstr(out, "[redacted]"), "%s", out);
    cli_redact("echo cut short: correct horse batt", out, sizeof out);
    cr_assert_null(strstr(out, "correct horse"), "a 12+ character piece stays hidden: %s", out);
    cli_redact("an ordinary password message", out, sizeof out);
    cr_assert_str_eq(out, "an ordinary password message");
}

Test(cli_ui, plain_lines_never_show_the_secret, .init = cr_redirect_stderr, .fini = cli_secrets_wipe) {
    cli_secret_register(secret);
    migrate_ui ui;
    cli_plain_ui(&ui);
    ui.step(NULL, "create-account", STEP_FAILED, "HTTP 400: password correct horse battery staple is too weak");
    ui.info(NULL, "server: %s", secret);
    ui.wait(NULL, "http://pds", "429 for correct horse battery staple", 3000);
    err_t e;
    err_set(&e, ERR_REMOTE, "the server echoed %s", secret);
    cli_error(&e);
    char text[4096];
    read_stderr(text, sizeof text);
    cr_assert_null(strstr(text, "horse battery"), "%s", text);
    cr_assert(strstr(text, "FAILED create-account"), "%s", text);
}

Test(cli_ui, a_secret_too_long_to_hold_withholds_every_message, .init = cr_redirect_stderr, .fini = cli_secrets_wipe) {
    static char huge[REDACT_SECRET_SIZE + 10];
    memset(huge, 'x', sizeof huge - 1);
    cli_secret_register(huge);
    char out[256];
    cli_redact("anything at all", out, sizeof out);
    cr_assert_null(strstr(out, "anything"), "%s", out);
    char text[1024];
    read_stderr(text, sizeof text);
    cr_assert(strstr(text, "server messages are not shown"), "the user is told why: %s", text);
}

/* ---- cli_untrusted: text from outside, made safe for a terminal and the journal ---- */

Test(cli_ui, untrusted_text_has_controls_and_bad_bytes_escaped_and_the_rest_kept) {
    const struct { const char *in, *want; } cases[] = {
        {"plain ascii, punctuation ~!@#$%^&*()", "plain ascii, punctuation ~!@#$%^&*()"},
        {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"}, /* UTF-8 kept */
        {"\x1b[2J\x1b[31mPWNED\x1b[0m", "\\x1b[2J\\x1b[31mPWNED\\x1b[0m"},           /* ESC sequences */
        {"line\n<0>emerg", "line\\x0a<0>emerg"},                                 /* no new journal line */
        {"a\rb\tc\x07\x08\x7f", "a\\x0db\\x09c\\x07\\x08\\x7f"},                 /* CR, TAB, BEL, BS, DEL */
        {"\xc2\x9b" "31m", "\\xc2\\x9b31m"},                                      /* C1 CSI as UTF-8 */
        {"\x9b" "31m", "\\x9b31m"},                                              /* a lone C1 byte */
        {"\xe2\x80\xae" "txt.exe", "\\xe2\\x80\\xaetxt.exe"},                     /* right-to-left override */
        {"\xe2\x81\xa6x\xe2\x80\xa8", "\\xe2\\x81\\xa6x\\xe2\\x80\\xa8"},        /* isolate, line separator */
        {"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe6\x97", "\\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80 \\xe6\\x97"}, /* overlong, surrogate, > U+10FFFF, cut */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        cr_assert_eq(cli_untrusted(cases[i].in, out, sizeof out), out);
        cr_assert_str_eq(out, cases[i].want, "case %zu", i);
    }
    char out[16];
    cr_assert_str_eq(cli_untrusted(NULL, out, sizeof out), "", "NULL is empty text");
    /* embedded NUL: the _n form escapes it instead of stopping */
    cr_assert_str_eq(cli_untrusted_n("a\0b", 3, out, sizeof out), "a\\x00b");
}

Test(cli_ui, untrusted_text_is_cut_between_characters_never_inside_an_escape) {
    char out[8];
    cli_untrusted("abcdefghij", out, sizeof out);
    cr_assert_str_eq(out, "abcdefg");
    cli_untrusted("ab\x1b[2J", out, sizeof out); /* "ab" + "\x1b" needs 6 + NUL: fits; then "[2J" partly */
    cr_assert_str_eq(out, "ab\\x1b[");
    cli_untrusted("abcd\x1b", out, sizeof out); /* the escape does not fit: left out whole */
    cr_assert_str_eq(out, "abcd");
    cli_untrusted("abcde\xe6\x97\xa5", out, sizeof out); /* nor does a 3-byte character after 5 */
    cr_assert_str_eq(out, "abcde");
    char one[1] = {'x'};
    cli_untrusted("abc", one, sizeof one);
    cr_assert_eq(one[0], 0);
}

Test(cli_ui, errors_and_plain_lines_are_escaped_after_redaction, .init = cr_redirect_stderr, .fini = cli_secrets_wipe) {
    cli_secret_register(secret);
    migrate_ui ui;
    cli_plain_ui(&ui);
    ui.step(NULL, "repo", STEP_DONE, "server says \x1b[2Jhello\n<0>forged");
    ui.info(NULL, "handle %s", "evil\x1b]0;title\x07.example");
    ui.wait(NULL, "https://pds\x1b[31m", "429 \x1b[H", 3000);
    err_t e;
    err_set(&e, ERR_REMOTE, "HTTP 400: \x1b[31mcorrect horse battery staple\x1b[0m\n<2>crit");
    cli_error(&e);
    cli_errorf("cannot open %s", "x\x1b[2J.car");
    char text[4096];
    read_stderr(text, sizeof text);
    cr_assert_null(strchr(text, 0x1b), "an ESC reached stderr:\n%s", text);
    cr_assert_null(strstr(text, "\n<"), "a line starts with a forged priority:\n%s", text);
    cr_assert_null(strstr(text, "horse battery"), "%s", text);
    cr_assert(strstr(text, "server says \\x1b[2Jhello\\x0a<0>forged"), "%s", text);
    cr_assert(strstr(text, "\\x1b[31m[redacted]\\x1b[0m\\x0a<2>crit"), "redacted, then escaped:\n%s", text);
    cr_assert(strstr(text, "cannot open x\\x1b[2J.car"), "%s", text);
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 5, "one line per message:\n%s", text);
}
