/* cmd_migrate.c — `pdsmove migrate`: options, secrets, the confirmation prompt and the
 * progress display around migrate_run() (src/pipeline/migrate.c). Progress goes to stderr,
 * the final report to stdout (JSON with --json). Secrets never come from argv. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/keys.h"
#include "pdsmove/migrate.h"

static const char usage[] =
    "usage: pdsmove migrate ACCOUNT --to NEW_PDS_URL [options]\n"
    "\n"
    "Moves an account (handle or DID) to another PDS: creates it there, copies the repository,\n"
    "every blob (hash-checked) and the preferences, points the did:plc identity at the new PDS,\n"
    "verifies the result independently, activates the new account and deactivates the old one.\n"
    "Every step is recorded in a journal: if anything stops it, run the same command again and\n"
    "it continues where it stopped, never repeating a step that must happen once.\n"
    "\n"
    "where things are:\n"
    "  --to URL                    the new PDS (required)\n"
    "  --from URL                  the old PDS (default: from the DID document)\n"
    "  --plc-url URL               PLC directory (default https://plc.directory)\n"
    "  --journal PATH              journal file (default ~/.local/state/pdsmove/journal.sqlite)\n"
    "  --work-dir DIR              where the CAR and blob downloads go (default under the state dir)\n"
    "\n"
    "secrets (files, so a systemd unit or NixOS module can point at agenix/sops paths):\n"
    "  --password-file F           old account password (else $PDSMOVE_PASSWORD, else asked)\n"
    "  --auth-factor-token-file F  email 2FA sign-in code, if the account has 2FA (else asked)\n"
    "  --new-password-file F       password for the new account (else $PDSMOVE_NEW_PASSWORD, else asked)\n"
    "  --new-pds-admin-password-file F  new PDS admin password: mints the invite code itself\n"
    "\n"
    "the new account:\n"
    "  --new-handle H              handle to end with (default: keep; a handle outside the new\n"
    "                              PDS's domain is set after activation)\n"
    "  --new-email E               email (default: the account's current email)\n"
    "  --invite-code C             invite code for the new PDS\n"
    "\n"
    "identity (did:plc), one of:\n"
    "  (default)                   the old PDS emails a token, asked for only after all data is copied;\n"
    "  --plc-token-file F            ...read from F (pdsmove waits for it to be written), or\n"
    "  --plc-token-from-db PATH      ...read from a self-hosted old PDS's account.sqlite, or typed in;\n"
    "  --rotation-key F            sign locally with your own rotation key (hex or multikey); works\n"
    "                              when the old PDS cannot sign\n"
    "  --add-rotation-key DID_KEY  also put this did:key first in the rotation keys\n"
    "\n"
    "behaviour:\n"
    "  --jobs N                    blob transfers in flight (default 4, max 16)\n"
    "  --request-crawl URL         ask this relay to crawl the new PDS (repeatable)\n"
    "  --keep-old-active           do not deactivate the old account\n"
    "  --dry-run                   check everything (logins, gates, space, keys), change nothing\n"
    "  --yes                       do not ask before the identity change\n"
    "  --json                      print the final report as JSON\n"
    "  --allow-insecure-http       permit http:// to non-loopback hosts\n"
    "  -h, --help                  this help\n"
    "\n"
    "exit status: 0 moved and verified, 1 stopped (the message says why; re-run to continue),\n"
    "2 usage error\n";

typedef struct {
    bool json;
    time_t started;
    const char *last_step;
} ui_state;

static void ui_step(void *ctx, const char *step, journal_step_status st, const char *detail) {
    ui_state *u = ctx;
    switch (st) {
    case STEP_RUNNING: fprintf(stderr, "==> %s\n", step); break;
    case STEP_DONE: fprintf(stderr, "    ok %s%s%s\n", step, detail ? ": " : "", detail ? detail : ""); break;
    case STEP_FAILED: fprintf(stderr, "    FAILED %s\n", step); break;
    default: break;
    }
    u->last_step = step;
}

static void ui_info(void *ctx, const char *fmt, ...) {
    (void)ctx;
    va_list ap;
    va_start(ap, fmt);
    fputs("    ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void ui_wait(void *ctx, const char *server, const char *why, long ms) {
    (void)ctx;
    if (ms >= 2000 || strstr(why, "429")) fprintf(stderr, "    %s: %s; waiting %.0f s\n", server, why, (double)ms / 1000.0);
}

static bool ui_confirm(void *ctx, const char *summary) {
    (void)ctx;
    if (!cli_have_tty()) {
        fprintf(stderr, "%s\n", summary);
        cli_errorf("no terminal to confirm the identity change: add --yes to proceed unattended");
        return false;
    }
    fprintf(stderr, "\n%s\n", summary);
    return cli_confirm("Sign and submit this operation now? It moves your identity to the new PDS.");
}

static bool ui_ask_secret(void *ctx, const char *prompt, char *out, size_t size) {
    (void)ctx;
    return cli_prompt_secret(prompt, out, size);
}

enum {
    O_TO = 1000, O_FROM, O_PLC, O_JOURNAL, O_WORK, O_PW, O_2FA, O_NEWPW, O_ADMINPW, O_HANDLE, O_EMAIL, O_INVITE,
    O_TOKFILE, O_TOKDB, O_ROTKEY, O_ADDKEY, O_JOBS, O_CRAWL, O_KEEPOLD, O_DRY, O_YES, O_JSON, O_INSECURE
};

static void print_report(const migrate_report *r, const migrate_opts *o, bool json) {
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b, s:b, s:b}", "did", r->did, "old_pds",
                              r->old_pds, "new_pds", r->new_pds, "handle", r->handle, "records", (json_int_t)r->records,
                              "blobs", (json_int_t)r->blobs_done, "blobs_failed", (json_int_t)r->blobs_failed, "blob_bytes",
                              (json_int_t)r->blob_bytes, "identity_updated", r->identity_updated, "activated", r->activated,
                              "old_deactivated", r->old_deactivated, "dry_run", o->dry_run);
        char *s = json_dumps(j, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(j);
        return;
    }
    if (o->dry_run) {
        printf("dry run: %s on %s can move to %s (nothing was changed)\n", r->did, r->old_pds, r->new_pds);
        return;
    }
    printf("\nmoved %s (%s)\n", r->did, r->handle);
    printf("  from        %s%s\n", r->old_pds, r->old_deactivated ? " (deactivated)" : " (still active)");
    printf("  to          %s%s\n", r->new_pds, r->activated ? " (active)" : "");
    printf("  records     %llu, identical on the new PDS\n", r->records);
    printf("  blobs       %llu (%.1f MiB), each hash-checked\n", r->blobs_done, (double)r->blob_bytes / 1048576.0);
    printf("  identity    %s\n", r->identity_updated ? "did:plc now points at the new PDS" : "unchanged");
}

int cmd_migrate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {
        {"to", required_argument, 0, O_TO}, {"from", required_argument, 0, O_FROM}, {"plc-url", required_argument, 0, O_PLC},
        {"journal", required_argument, 0, O_JOURNAL}, {"work-dir", required_argument, 0, O_WORK},
        {"password-file", required_argument, 0, O_PW}, {"auth-factor-token-file", required_argument, 0, O_2FA},
        {"new-password-file", required_argument, 0, O_NEWPW}, {"new-pds-admin-password-file", required_argument, 0, O_ADMINPW},
        {"new-handle", required_argument, 0, O_HANDLE}, {"new-email", required_argument, 0, O_EMAIL},
        {"invite-code", required_argument, 0, O_INVITE}, {"plc-token-file", required_argument, 0, O_TOKFILE},
        {"plc-token-from-db", required_argument, 0, O_TOKDB}, {"rotation-key", required_argument, 0, O_ROTKEY},
        {"add-rotation-key", required_argument, 0, O_ADDKEY}, {"jobs", required_argument, 0, O_JOBS},
        {"request-crawl", required_argument, 0, O_CRAWL}, {"keep-old-active", no_argument, 0, O_KEEPOLD},
        {"dry-run", no_argument, 0, O_DRY}, {"yes", no_argument, 0, O_YES}, {"json", no_argument, 0, O_JSON},
        {"allow-insecure-http", no_argument, 0, O_INSECURE}, {0, 0, 0, 0}};
    migrate_opts o = {.jobs = 4};
    const char *pw_file = NULL, *fa_file = NULL, *newpw_file = NULL, *admin_file = NULL, *journal_path = NULL;
    ui_state u = {.started = time(NULL)};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_TO: o.to_url = optarg; break;
        case O_FROM: o.from_url = optarg; break;
        case O_PLC: o.plc_url = optarg; break;
        case O_JOURNAL: journal_path = optarg; break;
        case O_WORK: o.work_dir = optarg; break;
        case O_PW: pw_file = optarg; break;
        case O_2FA: fa_file = optarg; break;
        case O_NEWPW: newpw_file = optarg; break;
        case O_ADMINPW: admin_file = optarg; break;
        case O_HANDLE: o.new_handle = optarg; break;
        case O_EMAIL: o.new_email = optarg; break;
        case O_INVITE: o.invite_code = optarg; break;
        case O_TOKFILE: o.plc_token_file = optarg; break;
        case O_TOKDB: o.plc_token_db = optarg; break;
        case O_ROTKEY: o.rotation_key_file = optarg; break;
        case O_ADDKEY: o.add_rotation_key = optarg; break;
        case O_JOBS:
            o.jobs = atoi(optarg);
            if (o.jobs < 1 || o.jobs > 16) {
                cli_errorf("--jobs must be 1..16");
                return EXIT_USAGE;
            }
            break;
        case O_CRAWL:
            if (o.n_relays == MIGRATE_MAX_RELAYS) {
                cli_errorf("at most %d --request-crawl relays", MIGRATE_MAX_RELAYS);
                return EXIT_USAGE;
            }
            o.relays[o.n_relays++] = optarg;
            break;
        case O_KEEPOLD: o.keep_old_active = true; break;
        case O_DRY: o.dry_run = true; break;
        case O_YES: o.yes = true; break;
        case O_JSON: u.json = true; break;
        case O_INSECURE: o.allow_insecure_http = true; break;
        default:
            cli_errorf("unknown or incomplete option '%s' (see `pdsmove migrate --help`)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_errorf("give exactly one ACCOUNT (handle or DID) (see `pdsmove migrate --help`)");
        return EXIT_USAGE;
    }
    o.account = argv[optind];
    if (!o.to_url) {
        cli_errorf("--to NEW_PDS_URL is required (see `pdsmove migrate --help`)");
        return EXIT_USAGE;
    }
    if (o.plc_token_file && o.plc_token_db) {
        cli_errorf("--plc-token-file and --plc-token-from-db exclude each other");
        return EXIT_USAGE;
    }
    if (o.add_rotation_key) {
        key_pub k;
        err_t ke;
        if (key_pub_from_did_key(&k, o.add_rotation_key, &ke)) {
            cli_errorf("--add-rotation-key: %s", ke.msg);
            return EXIT_USAGE;
        }
    }
    if (o.rotation_key_file && (o.plc_token_file || o.plc_token_db)) {
        cli_errorf("--rotation-key signs locally: no email token is needed with it");
        return EXIT_USAGE;
    }

    err_t e = {0};
    char pw[512] = "", fa[128] = "", newpw[512] = "", adminpw[512] = "";
    int status = EXIT_FAIL;
    if (!cli_get_secret(pw_file, "PDSMOVE_PASSWORD", "Password of the account (old PDS): ", "password for the old account", pw,
                        sizeof pw, &e))
        goto secrets_failed;
    o.password = pw;
    if (fa_file) {
        if (!cli_secret_from_file(fa_file, fa, sizeof fa, &e)) goto secrets_failed;
        o.auth_factor_token = fa;
    }
    if (!o.dry_run || newpw_file) {
        if (!cli_get_secret(newpw_file, "PDSMOVE_NEW_PASSWORD", "Password for the new account: ", "password for the new account",
                            newpw, sizeof newpw, &e))
            goto secrets_failed;
        o.new_password = newpw;
    }
    if (admin_file) {
        if (!cli_secret_from_file(admin_file, adminpw, sizeof adminpw, &e)) goto secrets_failed;
        o.admin_password = adminpw;
    }

    char state[900], jpath[1024], work[1024];
    cli_state_dir(state, sizeof state);
    if (!journal_path) {
        if (cli_mkdirs(state, &e)) goto secrets_failed;
        snprintf(jpath, sizeof jpath, "%s/journal.sqlite", state);
        journal_path = jpath;
    }
    if (!o.work_dir) {
        char safe[200];
        size_t k = 0;
        for (const char *p = o.account; *p && k + 1 < sizeof safe; p++) safe[k++] = (*p == '/' || *p == ':') ? '_' : *p;
        safe[k] = 0;
        snprintf(work, sizeof work, "%s/work/%s", state, safe);
        o.work_dir = work;
    }
    if (cli_mkdirs(o.work_dir, &e)) goto secrets_failed;
    if ((status = journal_open(journal_path, &o.j, &e)) != ERR_OK) {
        status = EXIT_FAIL;
        goto secrets_failed;
    }
    o.ui = (migrate_ui){.ctx = &u, .step = ui_step, .info = ui_info, .wait = ui_wait, .confirm = ui_confirm,
                        .ask_secret = ui_ask_secret};
    migrate_report rep;
    err_code rc = migrate_run(&o, &rep, &e);
    journal_close(o.j);
    if (rc) {
        cli_error(&e);
        if (!o.dry_run && rc != ERR_USAGE)
            fprintf(stderr, "pdsmove: the journal (%s) keeps what is done: run the same command again to continue.\n",
                    journal_path);
        status = rc == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    } else {
        print_report(&rep, &o, u.json);
        status = EXIT_OK_;
    }
    goto wipe;
secrets_failed:
    cli_error(&e);
wipe:
    explicit_bzero(pw, sizeof pw);
    explicit_bzero(fa, sizeof fa);
    explicit_bzero(newpw, sizeof newpw);
    explicit_bzero(adminpw, sizeof adminpw);
    return status;
}
