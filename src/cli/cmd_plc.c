/* cmd_plc.c — `pdsmove plc`: verify-log (validate a did:plc audit log file and print the
 * identity it resolves to), and identity custody — show, watch, add-rotation-key, recover
 * (the logic lives in src/pipeline/plc_custody.c). Parsing options, prompts and printing live
 * here; the rules live in plc_log.c. Secrets never come from argv and are never printed. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "pdsmove/buf.h"
#include "pdsmove/plc.h"
#include "pdsmove/plc_custody.h"
#include "pdsmove/syntax.h"

/* An audit log of PLC_LOG_MAX_OPS ops at the directory's 4000-byte op limit (as JSON, a
 * little more) stays well under this. */
#define LOG_FILE_MAX_BYTES ((size_t)64 << 20)

static const char plc_usage[] =
    "usage: pdsmove plc <command> [options]\n"
    "\n"
    "did:plc identities (the DID document a PLC directory serves for your account).\n"
    "\n"
    "commands:\n"
    "  show ACCOUNT                          the identity now and every operation in its log\n"
    "  watch ACCOUNT [--state FILE]          alarm (exit 3) on an operation no pdsmove run made\n"
    "  add-rotation-key ACCOUNT --key FILE   put your own key first in the rotation keys\n"
    "  recover ACCOUNT --key FILE --to-before CID\n"
    "                                        undo what followed CID (within 72 hours)\n"
    "  verify-log FILE [--json] [--did DID]  validate an audit log; print the identity\n"
    "\n"
    "Every user should do this once, before anything goes wrong (docs/identity-custody.md):\n"
    "  pdsmove key generate --out ~/pdsmove-rotation.key   (then keep that file offline)\n"
    "  pdsmove plc add-rotation-key alice.example.com --key ~/pdsmove-rotation.key\n"
    "\n"
    "Run `pdsmove plc <command> --help` for details.\n";

static const char verify_usage[] =
    "usage: pdsmove plc verify-log [--json] [--did DID] FILE\n"
    "\n"
    "Checks a did:plc audit log, the JSON array served at\n"
    "  https://plc.directory/<did>/log/audit\n"
    "(FILE, or - for standard input): every operation's CID and signature, the prev chain,\n"
    "that each update is signed by a rotation key of the operation it builds on, that\n"
    "recoveries (forks) happen within 72 hours and are signed by a higher-priority key, that\n"
    "the log's \"nullified\" flags agree with the chain, and that nothing follows a tombstone.\n"
    "\n"
    "When the log is valid, prints the resulting identity (rotation keys with their priority\n"
    "index, handle, PDS endpoint, atproto signing key, counts, last operation) and exits 0.\n"
    "Otherwise prints the index of the first bad operation and the reason, and exits 1.\n"
    "\n"
    "options:\n"
    "  --json       print the result as one JSON object on standard output\n"
    "  --did DID    also require the log to be for DID\n"
    "  -h, --help   show this help\n"
    "\n"
    "exit status: 0 valid, 1 invalid or unreadable, 2 usage error\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf("%s (see `pdsmove plc verify-log --help`)", msg);
    return EXIT_USAGE;
}

/* Reads all of path ("-" = stdin) into b, NUL-terminated. */
static err_code read_input(const char *path, buf_t *b, err_t *e) {
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    err_code rc = ERR_OK;
    for (;;) {
        rc = buf_reserve(b, 65536, e);
        if (rc) {
            err_set(e, ERR_LIMIT, "%s: larger than %zu bytes; not an audit log", path, LOG_FILE_MAX_BYTES);
            break;
        }
        size_t n = fread(b->data + b->len, 1, 65536, f);
        b->len += n;
        if (n < 65536) {
            if (ferror(f)) rc = err_set(e, ERR_IO, "reading %s: %s", is_stdin ? "standard input" : path, strerror(errno));
            break;
        }
    }
    if (!is_stdin) fclose(f);
    if (!rc) rc = buf_terminate(b, e);
    return rc;
}

static void print_text(const plc_state *st) {
    printf("%s: valid audit log (%zu operation%s, %zu nullified)\n", cli_safe(st->did), st->n_ops, st->n_ops == 1 ? "" : "s",
           st->n_nullified);
    if (st->tombstoned) {
        printf("status:          tombstoned (the DID was deleted; nothing can follow)\n");
    } else {
        const plc_op *op = &st->op;
        const char *handle = plc_op_handle(op);
        const plc_service *pds = plc_op_service(op, "atproto_pds");
        const char *key = plc_op_vmethod(op, "atproto");
        printf("status:          active\n");
        printf("handle:          %s\n", cli_safe(handle ? handle : "(none)"));
        for (size_t i = 0; i < op->n_also_known_as; i++) printf("alsoKnownAs:     %s\n", cli_safe(op->also_known_as[i]));
        printf("PDS endpoint:    %s\n", cli_safe(pds ? pds->endpoint : "(none)"));
        printf("atproto key:     %s\n", cli_safe(key ? key : "(none)"));
        printf("rotation keys:   %zu (index 0 has the highest priority)\n", op->n_rotation_keys);
        for (size_t i = 0; i < op->n_rotation_keys; i++) printf("  [%zu] %s\n", i, cli_safe(op->rotation_keys[i]));
        for (size_t i = 0; i < op->n_vmethods; i++)
            if (strcmp(op->vmethods[i].name, "atproto"))
                printf("verification method %s: %s\n", cli_safe(op->vmethods[i].name), cli_safe(op->vmethods[i].key));
        for (size_t i = 0; i < op->n_services; i++)
            if (strcmp(op->services[i].name, "atproto_pds"))
                printf("service %s: %s %s\n", cli_safe(op->services[i].name), cli_safe(op->services[i].type), cli_safe(op->services[i].endpoint));
    }
    printf("last operation:  #%zu %s (%s)\n", st->head_index, st->last_cid, cli_safe(st->last_created_at));
}

static json_t *state_json(const plc_state *st) {
    const plc_op *op = &st->op;
    const char *handle = plc_op_handle(op), *key = plc_op_vmethod(op, "atproto");
    const plc_service *pds = plc_op_service(op, "atproto_pds");
    json_t *rk = json_array(), *aka = json_array(), *vm = json_object(), *sv = json_object();
    for (size_t i = 0; i < op->n_rotation_keys; i++) json_array_append_new(rk, json_string(op->rotation_keys[i]));
    for (size_t i = 0; i < op->n_also_known_as; i++) json_array_append_new(aka, json_string(op->also_known_as[i]));
    for (size_t i = 0; i < op->n_vmethods; i++) json_object_set_new(vm, op->vmethods[i].name, json_string(op->vmethods[i].key));
    for (size_t i = 0; i < op->n_services; i++)
        json_object_set_new(sv, op->services[i].name,
                            json_pack("{s:s, s:s}", "type", op->services[i].type, "endpoint", op->services[i].endpoint));
    return json_pack("{s:b, s:s, s:b, s:o, s:o, s:s?, s:s?, s:s?, s:o, s:o, s:I, s:I, s:I, s:s, s:s}", "valid", 1,
                     "did", st->did, "tombstoned", st->tombstoned, "rotationKeys", rk, "alsoKnownAs", aka, "handle",
                     handle, "pdsEndpoint", pds ? pds->endpoint : NULL, "atprotoKey", key, "verificationMethods", vm,
                     "services", sv, "operations", (json_int_t)st->n_ops, "nullified", (json_int_t)st->n_nullified,
                     "headIndex", (json_int_t)st->head_index, "lastCid", st->last_cid, "lastCreatedAt",
                     st->last_created_at);
}

static void print_json(json_t *j) {
    if (j) {
        json_dumpf(j, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    }
    json_decref(j);
}

/* The reason a log was rejected: on stderr, and as JSON on stdout with --json. */
static int report_invalid(const char *path, const err_t *e, bool has_index, size_t index, bool as_json) {
    cli_errorf("%s: invalid audit log: %s", path, e->msg);
    if (as_json)
        print_json(json_pack("{s:b, s:s, s:o, s:s}", "valid", 0, "file", path,
                             "index", has_index ? json_integer((json_int_t)index) : json_null(), "error", e->msg));
    return EXIT_FAIL;
}

static int verify_log(int argc, char **argv) {
    bool as_json = false, opts_done = false;
    const char *path = NULL, *did = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && !strcmp(a, "--")) {
            opts_done = true;
        } else if (!opts_done && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            fputs(verify_usage, stdout);
            return EXIT_OK_;
        } else if (!opts_done && !strcmp(a, "--json")) {
            as_json = true;
        } else if (!opts_done && !strcmp(a, "--did")) {
            if (++i >= argc) return usage_error("--did needs a value");
            did = argv[i];
        } else if (!opts_done && !strncmp(a, "--did=", 6)) {
            did = a + 6;
        } else if (!opts_done && a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (path) {
            return usage_error("expected one FILE, got '%s' and '%s'", path, a);
        } else {
            path = a;
        }
    }
    if (!path) return usage_error("missing FILE (use - for standard input)");
    if (did && !plc_did_is_valid(did)) return usage_error("'%s' is not a did:plc identifier", did);

    err_t e;
    err_clear(&e);
    buf_t b;
    buf_init(&b, LOG_FILE_MAX_BYTES);
    if (read_input(path, &b, &e)) {
        buf_free(&b);
        cli_error(&e);
        return EXIT_FAIL;
    }
    json_error_t je;
    json_t *log = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, &je);
    buf_free(&b);
    if (!log) {
        err_set(&e, ERR_INVALID, "not valid JSON (line %d, column %d): %s", je.line, je.column, je.text);
        return report_invalid(path, &e, false, 0, as_json);
    }
    plc_state st;
    size_t bad = 0;
    err_code rc = plc_log_validate(log, did, &st, &bad, &e);
    json_decref(log);
    if (rc) return report_invalid(path, &e, bad != SIZE_MAX, bad, as_json);
    if (as_json) print_json(state_json(&st));
    else print_text(&st);
    plc_state_free(&st);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_errorf("cannot write to standard output: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return EXIT_OK_;
}

/* ================================================================ identity custody */

/* 4 means "nothing to do" across pdsmove: the inconsistent-log alarm is 5 */
enum { EXIT_WATCH_UNEXPECTED = 3, EXIT_WATCH_INCONSISTENT = 5 };

static const char show_usage[] =
    "usage: pdsmove plc show ACCOUNT [--plc-url URL] [--pds URL] [--json]\n"
    "\n"
    "Prints a did:plc identity as the PLC directory has it now (rotation keys in priority\n"
    "order, handle, PDS, signing key, other services) and its audit log, one line per\n"
    "operation: index, time, CID, which rotation key signed it, and what it changed compared\n"
    "with the operation it builds on (keys added or removed, PDS moved, handle changed).\n"
    "Nullified operations (undone by a recovery) are marked. The whole log is validated first\n"
    "(signatures, prev chain, the 72-hour recovery rules), and the output says so.\n"
    "\n"
    "  ACCOUNT           a handle (alice.example.com) or a DID (did:plc:...)\n"
    "  --plc-url URL     the PLC directory (default https://plc.directory)\n"
    "  --pds URL         resolve a handle through this PDS when DNS and HTTPS do not\n"
    "  --json            one JSON object on standard output\n"
    "  --allow-insecure-http  permit http:// to hosts other than this machine\n"
    "\n"
    "exit status: 0 shown (log valid), 1 failed (unreachable, or the log does not validate),\n"
    "2 usage error\n";

static const char watch_usage[] =
    "usage: pdsmove plc watch ACCOUNT [--state FILE] [--accept] [--plc-url URL] [--pds URL] [--json]\n"
    "\n"
    "For a timer (systemd, cron): compares the DID's audit log with the one recorded in FILE.\n"
    "The first run records the log (the list of operation CIDs; FILE is JSON, mode 0600,\n"
    "written atomically). Later runs report new operations. An operation is expected when a\n"
    "pdsmove run made it (`pdsmove migrate`, `plc add-rotation-key` and `plc recover` note the\n"
    "operations they submit in FILE's \"expected\" list) or when it is already nullified;\n"
    "anything else is named with its CID, time, signer and what it changed, whether it can\n"
    "still be undone (within 72 hours, by a rotation key with a higher priority than the one\n"
    "that signed it) and the exact `pdsmove plc recover` command that undoes it. FILE is not\n"
    "advanced past an unexpected operation: every run alarms until you act (recover, or\n"
    "--accept if the change was yours).\n"
    "\n"
    "  --state FILE      the record (default: $PDSMOVE_STATE_DIR, $XDG_STATE_HOME/pdsmove or\n"
    "                    ~/.local/state/pdsmove, then plc-watch/<did>.json; pdsmove migrate\n"
    "                    notes its operation in that default file when it exists)\n"
    "  --accept          take the log as it is now as the new record (after checking it)\n"
    "  --plc-url URL     the PLC directory (default https://plc.directory)\n"
    "  --pds URL         resolve a handle through this PDS when DNS and HTTPS do not\n"
    "  --json            one JSON object on standard output\n"
    "  --allow-insecure-http  permit http:// to hosts other than this machine\n"
    "\n"
    "exit status:\n"
    "  0  nothing new, only expected operations, or the first run (recorded)\n"
    "  1  the check could not be made (network, unreadable FILE)\n"
    "  2  usage error, or FILE records another DID\n"
    "  3  an operation no pdsmove run made appeared (see the output; act within 72 hours)\n"
    "  5  the directory's log does not validate, or lost operations FILE recorded\n";

static const char addkey_usage[] =
    "usage: pdsmove plc add-rotation-key ACCOUNT --key FILE [options]\n"
    "\n"
    "Puts your own key first (index 0, the highest priority) in the DID's rotation keys, keeping\n"
    "all the others, through your PDS's email-token flow: pdsmove logs in to the PDS, shows the\n"
    "operation and asks once, asks the PDS to email the confirmation token, has the PDS sign the\n"
    "operation, checks what it signed (a current rotation key, the current head, your key first,\n"
    "nothing else changed), submits it through the PDS and confirms it with the PLC directory.\n"
    "With your key first you can undo any change made with the others (the PDS's key, say) for\n"
    "72 hours after it: `pdsmove plc recover`. FILE is a private key file (`pdsmove key\n"
    "generate`); only its public did:key is used and nothing secret is printed. Keep it offline.\n"
    "\n"
    "  ACCOUNT                      a handle or a DID\n"
    "  --key FILE                   your private key file (required)\n"
    "  --password-file F            the account's password (else $PDSMOVE_PASSWORD, else asked);\n"
    "                               an app password cannot sign PLC operations\n"
    "  --auth-factor-token-file F   the email 2FA sign-in code, if the account has 2FA (else asked)\n"
    "  --pds URL                    the account's PDS (default: from the DID document); also\n"
    "                               resolves a handle\n"
    "  --plc-url URL                the PLC directory (default https://plc.directory)\n"
    "  --plc-token-file F           read the emailed token from F (pdsmove waits for it; a file\n"
    "                               others can read is refused), or\n"
    "  --plc-token-from-db PATH     read it from a self-hosted PDS's account.sqlite;\n"
    "                               default: asked at the terminal\n"
    "  --watch-state FILE           note the operation there for `pdsmove plc watch` (default:\n"
    "                               the watch's default state file)\n"
    "  --yes                        do not ask before submitting (without a terminal it is required)\n"
    "  --allow-insecure-http        permit http:// to hosts other than this machine\n"
    "\n"
    "exit status: 0 added (or already first: nothing to do), 1 failed or stopped (nothing changed\n"
    "unless the message says otherwise), 2 usage error\n";

static const char recover_usage[] =
    "usage: pdsmove plc recover ACCOUNT --key FILE --to-before CID [options]\n"
    "\n"
    "Undoes every operation that followed CID, the last GOOD operation (`pdsmove plc show` and\n"
    "`pdsmove plc watch` print it): your key signs an operation with prev = CID that restores\n"
    "CID's content (rotation keys, handle, PDS, signing key, services), and pdsmove posts it to\n"
    "the PLC directory, which then nullifies what followed CID. Before sending it checks that the\n"
    "directory will accept it: your key must be a rotation key of CID with a higher priority (a\n"
    "lower index) than the key that signed the first operation after CID, and that operation must\n"
    "be at most 72 hours old (exactly 72 hours is still in time). The recovery is also replayed\n"
    "locally against the whole log. Afterwards it re-reads the log and confirms the undone\n"
    "operations are nullified.\n"
    "\n"
    "  ACCOUNT             a handle or a DID\n"
    "  --key FILE          your private rotation key (`pdsmove key generate`); never printed\n"
    "  --to-before CID     the last good operation; everything after it is undone\n"
    "  --plc-url URL       the PLC directory (default https://plc.directory)\n"
    "  --pds URL           resolve a handle through this PDS when DNS and HTTPS do not\n"
    "  --watch-state FILE  note the recovery there for `pdsmove plc watch` (default: the watch's\n"
    "                      default state file)\n"
    "  --yes               do not ask before sending (without a terminal it is required)\n"
    "  --allow-insecure-http  permit http:// to hosts other than this machine\n"
    "\n"
    "exit status: 0 recovered, 1 refused (the message says why: wrong key, too late, not a higher\n"
    "priority) or failed, 2 usage error\n";

typedef struct {
    const char *cmd;
    const char *account, *plc_url, *pds, *state, *key, *to_before, *pw_file, *fa_file, *tok_file, *tok_db, *watch_state;
    bool json, accept, yes, insecure;
} custody_args;

static int custody_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int custody_usage_error(const char *cmd, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf("%s (see `pdsmove plc %s --help`)", msg, cmd);
    return EXIT_USAGE;
}

static bool is_url(const char *s) {
    const char *host = !strncmp(s, "https://", 8) ? s + 8 : !strncmp(s, "http://", 7) ? s + 7 : NULL;
    return host && *host && *host != '/';
}

enum { C_PLC = 1000, C_PDS, C_STATE, C_KEY, C_TO_BEFORE, C_PW, C_2FA, C_TOKFILE, C_TOKDB, C_WATCH, C_JSON, C_ACCEPT, C_YES, C_INSECURE };

/* Options each subcommand accepts ("allowed" lists their codes, 0-terminated). */
static int parse_custody(int argc, char **argv, custody_args *a, const int *allowed) {
    static const struct option opts[] = {
        {"plc-url", required_argument, 0, C_PLC}, {"pds", required_argument, 0, C_PDS}, {"state", required_argument, 0, C_STATE},
        {"key", required_argument, 0, C_KEY}, {"to-before", required_argument, 0, C_TO_BEFORE},
        {"password-file", required_argument, 0, C_PW}, {"auth-factor-token-file", required_argument, 0, C_2FA},
        {"plc-token-file", required_argument, 0, C_TOKFILE}, {"plc-token-from-db", required_argument, 0, C_TOKDB},
        {"watch-state", required_argument, 0, C_WATCH}, {"json", no_argument, 0, C_JSON}, {"accept", no_argument, 0, C_ACCEPT},
        {"yes", no_argument, 0, C_YES}, {"allow-insecure-http", no_argument, 0, C_INSECURE}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, li = -1;
    while ((c = getopt_long(argc, argv, ":", opts, &li)) != -1) {
        if (c == ':') return custody_usage_error(a->cmd, "option '%s' needs a value", argv[optind - 1]);
        bool ok = false;
        for (const int *p = allowed; *p && !ok; p++) ok = *p == c;
        if (!ok && c != '?' && li >= 0) return custody_usage_error(a->cmd, "--%s is not an option of `plc %s`", opts[li].name, a->cmd);
        if (!ok) return custody_usage_error(a->cmd, "unknown option '%s'", argv[optind - 1]);
        li = -1;
        switch (c) {
        case C_PLC: a->plc_url = optarg; break;
        case C_PDS: a->pds = optarg; break;
        case C_STATE: a->state = optarg; break;
        case C_KEY: a->key = optarg; break;
        case C_TO_BEFORE: a->to_before = optarg; break;
        case C_PW: a->pw_file = optarg; break;
        case C_2FA: a->fa_file = optarg; break;
        case C_TOKFILE: a->tok_file = optarg; break;
        case C_TOKDB: a->tok_db = optarg; break;
        case C_WATCH: a->watch_state = optarg; break;
        case C_JSON: a->json = true; break;
        case C_ACCEPT: a->accept = true; break;
        case C_YES: a->yes = true; break;
        case C_INSECURE: a->insecure = true; break;
        default: break;
        }
    }
    if (optind == argc) return custody_usage_error(a->cmd, "give the ACCOUNT (a handle or a DID)");
    if (optind < argc - 1)
        return custody_usage_error(a->cmd, "give one ACCOUNT only, not '%s' and '%s' (options start with --)", argv[optind], argv[optind + 1]);
    a->account = argv[optind];
    if (a->account[0] == '@') a->account++;
    if (!syntax_at_identifier(a->account, NULL))
        return custody_usage_error(a->cmd, "'%s' is neither a handle (alice.example.com) nor a DID (did:plc:...)", argv[optind]);
    if (a->plc_url && !is_url(a->plc_url))
        return custody_usage_error(a->cmd, "--plc-url takes a URL such as https://plc.directory, not '%s'", a->plc_url);
    if (a->pds && !is_url(a->pds)) return custody_usage_error(a->cmd, "--pds takes a URL such as https://pds.example.com, not '%s'", a->pds);
    if (a->tok_file && a->tok_db)
        return custody_usage_error(a->cmd, "--plc-token-file and --plc-token-from-db exclude each other: give one way to the email token");
    return 0;
}

/* ---- what the library asks and tells (plc_custody_ui) ---- */

static void ui_info(void *ctx, const char *msg) {
    (void)ctx;
    char safe[8192];
    fprintf(stderr, "%s\n", cli_untrusted(msg, safe, sizeof safe));
}

static void ui_wait(void *ctx, const char *server, const char *why, long ms) {
    if (ms >= 2000 || strstr(why, "429")) fprintf(stderr, "%s: %s; waiting %.0f s\n", cli_safe(server), cli_safe(why), (double)ms / 1000.0);
}

static bool ui_confirm(void *ctx, const char *summary) {
    const char *question = ctx;
    char safe[8192];
    fprintf(stderr, "\n%s\n", cli_untrusted_lines(summary, safe, sizeof safe));
    if (!cli_have_tty()) {
        fprintf(stderr, "pdsmove: there is no terminal to ask for confirmation: add --yes to proceed unattended\n");
        return false;
    }
    return cli_confirm(question);
}

static bool ui_ask_secret(void *ctx, const char *prompt, char *out, size_t size) { return cli_prompt_secret(prompt, out, size); }

static plc_custody_ui make_ui(const char *question) {
    plc_custody_ui ui = {.ctx = (void *)question, .info = ui_info, .confirm = ui_confirm, .ask_secret = ui_ask_secret, .wait = ui_wait};
    return ui;
}

static int flush_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_errorf("cannot write to standard output: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return EXIT_OK_;
}

/* ---- show ---- */

static void print_identity(const plc_state *st) {
    printf("%s\n", cli_safe(st->did));
    if (st->tombstoned) {
        printf("  status          tombstoned (the DID was deleted; nothing can follow)\n");
        return;
    }
    const plc_op *op = &st->op;
    const plc_service *pds = plc_op_service(op, "atproto_pds");
    const char *handle = plc_op_handle(op), *key = plc_op_vmethod(op, "atproto");
    printf("  handle          %s\n", cli_safe(handle ? handle : "(none)"));
    printf("  PDS             %s\n", cli_safe(pds ? pds->endpoint : "(none)"));
    printf("  signing key     %s\n", cli_safe(key ? key : "(none)"));
    printf("  rotation keys   %zu (#0 has the highest priority: for 72 hours it can undo what a\n"
           "                  lower one signed)\n", op->n_rotation_keys);
    for (size_t i = 0; i < op->n_rotation_keys; i++) printf("    #%zu %s\n", i, cli_safe(op->rotation_keys[i]));
    for (size_t i = 0; i < op->n_also_known_as; i++)
        if (!handle || i > 0) printf("  alsoKnownAs     %s\n", cli_safe(op->also_known_as[i]));
    for (size_t i = 0; i < op->n_services; i++)
        if (strcmp(op->services[i].name, "atproto_pds"))
            printf("  service         %s: %s %s\n", cli_safe(op->services[i].name), cli_safe(op->services[i].type), cli_safe(op->services[i].endpoint));
    for (size_t i = 0; i < op->n_vmethods; i++)
        if (strcmp(op->vmethods[i].name, "atproto")) printf("  verification    %s: %s\n", cli_safe(op->vmethods[i].name), cli_safe(op->vmethods[i].key));
}

static void print_op_line(const plc_history *h, size_t i, const char *indent) {
    const plc_hist_entry *x = &h->ent[i];
    char change[PLC_CHANGE_MAX], by[48] = "";
    plc_history_describe(h, i, change, sizeof change);
    if (x->signer != SIZE_MAX) snprintf(by, sizeof by, "by key #%zu of #%zu: ", x->signer, x->prev);
    printf("%s#%-3zu %s  %s  %s%s%s\n", indent, i, cli_safe(x->created_at), x->cid, x->nullified ? "NULLIFIED  " : "", by, cli_safe(change));
}

static json_t *op_json(const plc_history *h, size_t i) {
    const plc_hist_entry *x = &h->ent[i];
    char change[PLC_CHANGE_MAX];
    plc_history_describe(h, i, change, sizeof change);
    const char *signer_key = NULL;
    if (x->signer != SIZE_MAX && x->prev != SIZE_MAX && x->signer < h->ent[x->prev].op.n_rotation_keys)
        signer_key = h->ent[x->prev].op.rotation_keys[x->signer];
    return json_pack("{s:I, s:s, s:s, s:b, s:o, s:o, s:s?, s:s}", "index", (json_int_t)i, "cid", x->cid, "createdAt", x->created_at,
                     "nullified", x->nullified, "prev", x->prev == SIZE_MAX ? json_null() : json_string(h->ent[x->prev].cid),
                     "signerIndex", x->signer == SIZE_MAX ? json_null() : json_integer((json_int_t)x->signer), "signerKey",
                     signer_key, "change", change);
}

static json_t *history_json(const plc_history *h) {
    json_t *state = state_json(&h->state), *ops = json_array();
    for (size_t i = 0; i < h->n; i++) json_array_append_new(ops, op_json(h, i));
    json_object_set_new(state, "log", ops);
    return state;
}

static int show(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(show_usage, stdout);
        return EXIT_OK_;
    }
    custody_args a = {.cmd = "show"};
    static const int allowed[] = {C_PLC, C_PDS, C_JSON, C_INSECURE, 0};
    int st = parse_custody(argc, argv, &a, allowed);
    if (st) return st;
    xrpc_options xo = {.allow_insecure_http = a.insecure, .on_wait = ui_wait};
    err_t e;
    err_clear(&e);
    identity_doc id;
    plc_history h;
    if (plc_custody_resolve(a.account, a.plc_url, a.pds, &xo, &id, &e) || plc_history_fetch(a.plc_url, id.did, &xo, &h, NULL, &e)) {
        cli_error(&e);
        return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    if (a.json) {
        print_json(history_json(&h));
    } else {
        print_identity(&h.state);
        printf("\naudit log: %zu operation%s, %zu nullified — valid (every signature, the prev chain and the recovery\n"
               "rules checked)\n", h.n, h.n == 1 ? "" : "s", h.state.n_nullified);
        for (size_t i = 0; i < h.n; i++) print_op_line(&h, i, "  ");
    }
    plc_history_free(&h);
    return flush_stdout();
}

/* ---- watch ---- */

static const char *outcome_name(plc_watch_outcome o) {
    switch (o) {
    case PLC_WATCH_FIRST_RUN: return "first-run";
    case PLC_WATCH_UNCHANGED: return "unchanged";
    case PLC_WATCH_EXPECTED: return "expected";
    case PLC_WATCH_UNEXPECTED: return "unexpected";
    case PLC_WATCH_INCONSISTENT: return "inconsistent";
    }
    return "?";
}

/* The exact command that undoes r's first unexpected op (shell-safe: DIDs, CIDs and URLs
 * given to us have no spaces or quotes; the URL is quoted anyway). */
static void recover_command(const plc_watch_result *r, const custody_args *a, char *out, size_t size) {
    int n = snprintf(out, size, "pdsmove plc recover %s --key YOUR_KEY_FILE --to-before %s", r->did, r->h.ent[r->fork].cid);
    if (n > 0 && (size_t)n < size && a->plc_url) snprintf(out + n, size - (size_t)n, " --plc-url '%s'", a->plc_url);
}

static void print_left(int64_t ms_left) {
    long long m = ms_left / 60000;
    printf("%lldh %02lldm left", m / 60, m % 60);
}

static void print_watch_text(const plc_watch_result *r, const custody_args *a, const char *state_file) {
    const plc_history *h = &r->h;
    switch (r->outcome) {
    case PLC_WATCH_FIRST_RUN:
        printf("watch: recorded %zu operation%s of %s (head %s, %s) in %s\n", h->n, h->n == 1 ? "" : "s", cli_safe(r->did), h->state.last_cid,
               h->state.last_created_at, state_file);
        return;
    case PLC_WATCH_UNCHANGED:
        printf("watch: %s unchanged (%zu operation%s, head %s)\n", cli_safe(r->did), h->n, h->n == 1 ? "" : "s", h->state.last_cid);
        return;
    case PLC_WATCH_INCONSISTENT:
        printf("ALERT: %s: %s\n", cli_safe(r->did), cli_safe(r->detail));
        return;
    case PLC_WATCH_EXPECTED:
        printf("watch: %s: %zu new operation%s, none unexpected%s\n", cli_safe(r->did), r->n_ops, r->n_ops == 1 ? "" : "s",
               r->saved ? "; recorded" : "");
        for (size_t k = 0; k < r->n_ops; k++) {
            print_op_line(h, r->ops[k].index, "  ");
            printf("       %s\n", r->ops[k].expected ? "made by pdsmove" : "not made by pdsmove, but already undone (nullified)");
        }
        return;
    case PLC_WATCH_UNEXPECTED: break;
    }
    size_t bad = 0;
    for (size_t k = 0; k < r->n_ops; k++) bad += !r->ops[k].expected && !h->ent[r->ops[k].index].nullified;
    printf("ALERT: %s has %zu new operation%s that no pdsmove run made:\n", cli_safe(r->did), bad, bad == 1 ? "" : "s");
    for (size_t k = 0; k < r->n_ops; k++) {
        const plc_hist_entry *x = &h->ent[r->ops[k].index];
        print_op_line(h, r->ops[k].index, "  ");
        if (r->ops[k].expected) printf("       made by pdsmove\n");
        else if (x->nullified) printf("       not made by pdsmove, already undone (nullified)\n");
        else if (x->prev != SIZE_MAX && x->signer < h->ent[x->prev].op.n_rotation_keys)
            printf("       UNEXPECTED; signed by %s\n", cli_safe(h->ent[x->prev].op.rotation_keys[x->signer]));
    }
    const plc_hist_entry *first = &h->ent[r->first_bad], *fork = &h->ent[r->fork];
    char deadline[40];
    plc_format_time(r->deadline_ms, deadline, sizeof deadline);
    printf("\nthe identity now:\n");
    print_identity(&h->state);
    printf("\n");
    if (r->recoverable) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        printf("It can be undone until %s (", deadline);
        print_left(r->deadline_ms - now);
        printf(") by one of these rotation keys of operation #%zu, which have a higher\npriority than key #%zu that signed #%zu:\n",
               r->fork, first->signer, r->first_bad);
        for (size_t i = 0; i < first->signer && i < fork->op.n_rotation_keys; i++) printf("  #%zu %s\n", i, cli_safe(fork->op.rotation_keys[i]));
        char cmd[1024];
        recover_command(r, a, cmd, sizeof cmd);
        printf("If you hold one of them, undo everything after #%zu (the last good operation):\n  %s\n", r->fork, cmd);
    } else if (first->signer == 0) {
        printf("#%zu was signed by the highest-priority rotation key (#0) of #%zu: no other key can undo it.\n", r->first_bad, r->fork);
    } else {
        printf("The 72-hour window to undo #%zu closed at %s: it can no longer be undone.\n", r->first_bad, deadline);
    }
    printf("If the change was yours (made with another tool), accept it:\n  pdsmove plc watch %s --state %s --accept\n", cli_safe(r->did),
           state_file);
}

static json_t *watch_json(const plc_watch_result *r, const custody_args *a, const char *state_file) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:b}", "did", r->did, "outcome", outcome_name(r->outcome), "state", state_file,
                          "recorded", (json_int_t)r->n_recorded, "saved", r->saved);
    if (r->outcome == PLC_WATCH_INCONSISTENT) {
        json_object_set_new(j, "detail", json_string(r->detail));
        return j;
    }
    json_object_set_new(j, "operations", json_integer((json_int_t)r->h.n));
    json_object_set_new(j, "head", json_string(r->h.state.last_cid));
    json_t *news = json_array();
    for (size_t k = 0; k < r->n_ops; k++) {
        json_t *o = op_json(&r->h, r->ops[k].index);
        json_object_set_new(o, "expected", json_boolean(r->ops[k].expected));
        json_array_append_new(news, o);
    }
    json_object_set_new(j, "new", news);
    if (r->outcome == PLC_WATCH_UNEXPECTED && r->first_bad != SIZE_MAX) {
        char deadline[40], cmd[1024] = "";
        plc_format_time(r->deadline_ms, deadline, sizeof deadline);
        if (r->recoverable) recover_command(r, a, cmd, sizeof cmd);
        json_object_set_new(j, "recovery", json_pack("{s:s, s:s, s:s, s:b, s:s?}", "firstUnexpected", r->h.ent[r->first_bad].cid,
                                                     "forkCid", r->h.ent[r->fork].cid, "deadline", deadline, "recoverable",
                                                     r->recoverable, "command", r->recoverable ? cmd : NULL));
    }
    return j;
}

static int watch(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(watch_usage, stdout);
        return EXIT_OK_;
    }
    custody_args a = {.cmd = "watch"};
    static const int allowed[] = {C_PLC, C_PDS, C_STATE, C_ACCEPT, C_JSON, C_INSECURE, 0};
    int st = parse_custody(argc, argv, &a, allowed);
    if (st) return st;
    xrpc_options xo = {.allow_insecure_http = a.insecure, .on_wait = ui_wait};
    err_t e;
    err_clear(&e);
    identity_doc id;
    if (plc_custody_resolve(a.account, a.plc_url, a.pds, &xo, &id, &e)) {
        cli_error(&e);
        return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    char def[4096];
    const char *state_file = a.state;
    if (!state_file) {
        if (!plc_watch_default_path(id.did, def, sizeof def)) {
            cli_errorf("the default state file path is too long: give --state FILE");
            return EXIT_USAGE;
        }
        state_file = def;
    }
    plc_watch_result r;
    if (plc_watch_run(state_file, id.did, a.plc_url, &xo, a.accept, &r, &e)) {
        cli_error(&e);
        plc_watch_result_free(&r);
        return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    if (a.json) print_json(watch_json(&r, &a, state_file));
    else if (a.accept && r.saved && r.outcome != PLC_WATCH_FIRST_RUN)
        printf("watch: accepted the log of %s as it is now (%zu operations, head %s) in %s\n", r.did, r.h.n, r.h.state.last_cid, state_file);
    else print_watch_text(&r, &a, state_file);
    int status = flush_stdout();
    bool accepted = a.accept && r.saved;
    if (!status && !accepted && r.outcome == PLC_WATCH_UNEXPECTED) {
        cli_errorf("%s: unexpected PLC operation(s); see above (exit %d)", r.did, EXIT_WATCH_UNEXPECTED);
        status = EXIT_WATCH_UNEXPECTED;
    } else if (!status && !accepted && r.outcome == PLC_WATCH_INCONSISTENT) {
        cli_errorf("%s: %s (exit %d)", r.did, r.detail, EXIT_WATCH_INCONSISTENT);
        status = EXIT_WATCH_INCONSISTENT;
    }
    plc_watch_result_free(&r);
    return status;
}

/* ---- add-rotation-key ---- */

static const char *watch_state_for(const custody_args *a, const char *account_did, char *buf, size_t size) {
    if (a->watch_state) return a->watch_state;
    return plc_watch_default_path(account_did, buf, size) ? buf : NULL;
}

static int add_rotation_key(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(addkey_usage, stdout);
        return EXIT_OK_;
    }
    custody_args a = {.cmd = "add-rotation-key"};
    static const int allowed[] = {C_PLC, C_PDS, C_KEY, C_PW, C_2FA, C_TOKFILE, C_TOKDB, C_WATCH, C_YES, C_INSECURE, 0};
    int st = parse_custody(argc, argv, &a, allowed);
    if (st) return st;
    if (!a.key) return custody_usage_error(a.cmd, "--key FILE is required (`pdsmove key generate --out FILE` makes one)");
    err_t e;
    err_clear(&e);
    /* the DID first (no secret needed), so the default watch state can be named */
    xrpc_options xo = {.allow_insecure_http = a.insecure, .on_wait = ui_wait};
    identity_doc id;
    if (plc_custody_resolve(a.account, a.plc_url, a.pds, &xo, &id, &e)) {
        cli_error(&e);
        return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    char pw[512], fa[128], wbuf[4096];
    memset(pw, 0, sizeof pw);
    memset(fa, 0, sizeof fa);
    int status = EXIT_FAIL;
    if (!cli_get_secret(a.pw_file, "PDSMOVE_PASSWORD", "Password of the account: ", "password for the account", pw, sizeof pw, &e) ||
        (a.fa_file && !cli_secret_from_file(a.fa_file, fa, sizeof fa, &e))) {
        cli_error(&e);
        goto wipe;
    }
    cli_secret_register(pw);
    cli_secret_register(fa);
    plc_add_key_opts o = {.account = id.did, .pds_url = a.pds, .plc_url = a.plc_url, .password = pw,
                          .auth_factor_token = fa[0] ? fa : NULL, .key_file = a.key, .plc_token_file = a.tok_file,
                          .plc_token_db = a.tok_db, .watch_state = watch_state_for(&a, id.did, wbuf, sizeof wbuf), .yes = a.yes,
                          .allow_insecure_http = a.insecure,
                          .ui = make_ui("Submit this operation now? It puts your key first in your identity's rotation keys.")};
    plc_add_key_report r;
    if (plc_add_rotation_key(&o, &r, &e)) {
        cli_error(&e);
        goto wipe;
    }
    if (r.already_first) {
        printf("nothing to do: %s is already rotation key #0 of %s (%zu rotation keys)\n", r.did_key, r.did, r.n_rotation_keys);
    } else {
        printf("added: %s is now rotation key #0 of %s (%zu rotation keys)\n", r.did_key, r.did, r.n_rotation_keys);
        printf("  operation %s, submitted through %s and confirmed by the PLC directory\n", r.op_cid, cli_safe(r.pds));
        if (r.watch_noted) printf("  noted as expected for `pdsmove plc watch` in %s\n", o.watch_state);
        else if (r.watch_note[0]) fprintf(stderr, "warning: could not note the operation for `pdsmove plc watch`: %s\n", cli_safe(r.watch_note));
        printf("Keep %s offline: with it you can undo changes to this identity for 72 hours after\n"
               "they are made (`pdsmove plc recover`), even when the PDS is gone or hostile.\n", a.key);
    }
    status = flush_stdout();
wipe:
    explicit_bzero(pw, sizeof pw);
    explicit_bzero(fa, sizeof fa);
    cli_secrets_wipe();
    return status;
}

/* ---- recover ---- */

static int recover(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(recover_usage, stdout);
        return EXIT_OK_;
    }
    custody_args a = {.cmd = "recover"};
    static const int allowed[] = {C_PLC, C_PDS, C_KEY, C_TO_BEFORE, C_WATCH, C_YES, C_INSECURE, 0};
    int st = parse_custody(argc, argv, &a, allowed);
    if (st) return st;
    if (!a.key) return custody_usage_error(a.cmd, "--key FILE is required: your private rotation key");
    if (!a.to_before) return custody_usage_error(a.cmd, "--to-before CID is required: the last good operation (`pdsmove plc show` lists them)");
    if (!syntax_cid(a.to_before, NULL) || a.to_before[0] != 'b')
        return custody_usage_error(a.cmd, "--to-before takes an operation's CID (bafyrei...), not '%s'", a.to_before);
    err_t e;
    err_clear(&e);
    xrpc_options xo = {.allow_insecure_http = a.insecure, .on_wait = ui_wait};
    identity_doc id;
    if (plc_custody_resolve(a.account, a.plc_url, a.pds, &xo, &id, &e)) {
        cli_error(&e);
        return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    char wbuf[4096];
    plc_recover_opts o = {.account = id.did, .via_pds = a.pds, .plc_url = a.plc_url, .key_file = a.key, .to_before = a.to_before,
                          .watch_state = watch_state_for(&a, id.did, wbuf, sizeof wbuf), .yes = a.yes,
                          .allow_insecure_http = a.insecure,
                          .ui = make_ui("Send this recovery to the PLC directory now?")};
    plc_recover_report r;
    if (plc_recover(&o, &r, &e)) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    printf("recovered %s: operation %s (signed by your key, rotation key #%zu) forks at #%zu %s;\n", r.did, r.op_cid, r.plan.key_index,
           r.plan.fork, r.fork_cid);
    printf("  the %zu operation%s after it %s now nullified, as the PLC directory confirms\n", r.n_nullified,
           r.n_nullified == 1 ? "" : "s", r.n_nullified == 1 ? "is" : "are");
    if (r.watch_noted) printf("  noted as expected for `pdsmove plc watch` in %s\n", o.watch_state);
    else if (r.watch_note[0]) fprintf(stderr, "warning: could not note the recovery for `pdsmove plc watch`: %s\n", cli_safe(r.watch_note));
    printf("Check it with `pdsmove plc show %s`. If a PDS made the unwanted change, it may still hold\n"
           "a signing key or handle the identity no longer names: fix that on the PDS (or move away from it).\n", r.did);
    return flush_stdout();
}

int cmd_plc(int argc, char **argv) {
    if (argc < 2) {
        fputs(plc_usage, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        fputs(plc_usage, stdout);
        return EXIT_OK_;
    }
    if (!strcmp(sub, "verify-log")) return verify_log(argc - 1, argv + 1);
    if (!strcmp(sub, "show")) return show(argc - 1, argv + 1);
    if (!strcmp(sub, "watch")) return watch(argc - 1, argv + 1);
    if (!strcmp(sub, "add-rotation-key")) return add_rotation_key(argc - 1, argv + 1);
    if (!strcmp(sub, "recover")) return recover(argc - 1, argv + 1);
    cli_errorf("unknown plc command '%s' (see `pdsmove plc --help`)", sub);
    return EXIT_USAGE;
}
