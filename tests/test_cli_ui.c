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
