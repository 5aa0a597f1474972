/* cmd_plc.c — `pdsmove plc verify-log FILE`: validate a did:plc audit log (as served by
 * GET /<did>/log/audit) and print the identity it resolves to, or the first bad operation
 * and why. Parsing options and printing live here; the rules live in plc_log.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/buf.h"
#include "pdsmove/plc.h"

/* An audit log of PLC_LOG_MAX_OPS ops at the directory's 4000-byte op limit (as JSON, a
 * little more) stays well under this. */
#define LOG_FILE_MAX_BYTES ((size_t)64 << 20)

static const char plc_usage[] =
    "usage: pdsmove plc <command> [options]\n"
    "\n"
    "did:plc identities (the DID document a PLC directory serves for your account).\n"
    "\n"
    "commands:\n"
    "  verify-log FILE [--json] [--did DID]   validate an audit log; print the identity\n"
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
    printf("%s: valid audit log (%zu operation%s, %zu nullified)\n", st->did, st->n_ops, st->n_ops == 1 ? "" : "s",
           st->n_nullified);
    if (st->tombstoned) {
        printf("status:          tombstoned (the DID was deleted; nothing can follow)\n");
    } else {
        const plc_op *op = &st->op;
        const char *handle = plc_op_handle(op);
        const plc_service *pds = plc_op_service(op, "atproto_pds");
        const char *key = plc_op_vmethod(op, "atproto");
        printf("status:          active\n");
        printf("handle:          %s\n", handle ? handle : "(none)");
        for (size_t i = 0; i < op->n_also_known_as; i++) printf("alsoKnownAs:     %s\n", op->also_known_as[i]);
        printf("PDS endpoint:    %s\n", pds ? pds->endpoint : "(none)");
        printf("atproto key:     %s\n", key ? key : "(none)");
        printf("rotation keys:   %zu (index 0 has the highest priority)\n", op->n_rotation_keys);
        for (size_t i = 0; i < op->n_rotation_keys; i++) printf("  [%zu] %s\n", i, op->rotation_keys[i]);
        for (size_t i = 0; i < op->n_vmethods; i++)
            if (strcmp(op->vmethods[i].name, "atproto"))
                printf("verification method %s: %s\n", op->vmethods[i].name, op->vmethods[i].key);
        for (size_t i = 0; i < op->n_services; i++)
            if (strcmp(op->services[i].name, "atproto_pds"))
                printf("service %s: %s %s\n", op->services[i].name, op->services[i].type, op->services[i].endpoint);
    }
    printf("last operation:  #%zu %s (%s)\n", st->head_index, st->last_cid, st->last_created_at);
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
    cli_errorf("unknown plc command '%s' (see `pdsmove plc --help`)", sub);
    return EXIT_USAGE;
}
