/* cmd_restore.c — `pdsmove restore`: options, secrets and output around restore_run
 * (src/pipeline/restore.c). Progress on stderr, the result on stdout. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/restore.h"

static const char usage[] =
    "usage: pdsmove restore DIR --to NEW_PDS_URL --rotation-key FILE --new-email E [options]\n"
    "\n"
    "Brings an account back on a new PDS from the backup directory DIR when its old PDS is gone.\n"
    "Your rotation key (a key listed in the DID's rotation keys: see `pdsmove plc add-rotation-key`)\n"
    "signs one PLC operation pointing the DID at the new PDS with a temporary signing key; pdsmove\n"
    "creates the account with a token it signs itself, then a second operation installs the new\n"
    "PDS's own credentials (your key stays first); then the repository, every blob and the\n"
    "preferences are restored from the snapshot, the account is activated and checked: the\n"
    "restored record tree must be identical to the snapshot's. Journaled: if it stops, run the\n"
    "same command again.\n"
    "\n"
    "options:\n"
    "  --to URL                     the new PDS (required)\n"
    "  --rotation-key FILE          your rotation key, hex or multikey (required)\n"
    "  --new-email E                the account's email on the new PDS (required)\n"
    "  --snapshot ID                which snapshot (default: the newest of --did)\n"
    "  --did DID                    the account, when DIR holds several\n"
    "  --new-handle H               handle on the new PDS (default <name>.<its domain>)\n"
    "  --new-password-file F        password for the new account (else $PDSMOVE_NEW_PASSWORD, else asked)\n"
    "  --invite-code C              invite code for the new PDS\n"
    "  --new-pds-admin-password-file F  mint the invite code with the new PDS's admin password\n"
    "  --plc-url URL                PLC directory (default https://plc.directory)\n"
    "  --journal PATH               journal (default ~/.local/state/pdsmove/journal.sqlite)\n"
    "  --work-dir DIR               where the snapshot is assembled (default under the state dir)\n"
    "  --jobs N                     blob uploads in flight (default 4)\n"
    "  --yes                        do not ask before the identity change\n"
    "  --allow-insecure-http        permit http:// to non-loopback hosts\n"
    "\n"
    "exit status: 0 restored and verified, 1 stopped (re-run to continue), 2 usage error\n";

enum { R_TO = 1000, R_KEY, R_EMAIL, R_SNAP, R_DID, R_HANDLE, R_NEWPW, R_INVITE, R_ADMIN, R_PLC, R_JOURNAL, R_WORK, R_JOBS, R_YES,
       R_INSECURE };

int cmd_restore(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {
        {"to", required_argument, 0, R_TO}, {"rotation-key", required_argument, 0, R_KEY}, {"new-email", required_argument, 0, R_EMAIL},
        {"snapshot", required_argument, 0, R_SNAP}, {"did", required_argument, 0, R_DID}, {"new-handle", required_argument, 0, R_HANDLE},
        {"new-password-file", required_argument, 0, R_NEWPW}, {"invite-code", required_argument, 0, R_INVITE},
        {"new-pds-admin-password-file", required_argument, 0, R_ADMIN}, {"plc-url", required_argument, 0, R_PLC},
        {"journal", required_argument, 0, R_JOURNAL}, {"work-dir", required_argument, 0, R_WORK}, {"jobs", required_argument, 0, R_JOBS},
        {"yes", no_argument, 0, R_YES}, {"allow-insecure-http", no_argument, 0, R_INSECURE}, {0, 0, 0, 0}};
    restore_opts o = {.jobs = 4};
    const char *newpw_file = NULL, *admin_file = NULL, *journal_path = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case R_TO: o.to_url = optarg; break;
        case R_KEY: o.rotation_key_file = optarg; break;
        case R_EMAIL: o.new_email = optarg; break;
        case R_SNAP: o.snapshot_id = optarg; break;
        case R_DID: o.did = optarg; break;
        case R_HANDLE: o.new_handle = optarg; break;
        case R_NEWPW: newpw_file = optarg; break;
        case R_INVITE: o.invite_code = optarg; break;
        case R_ADMIN: admin_file = optarg; break;
        case R_PLC: o.plc_url = optarg; break;
        case R_JOURNAL: journal_path = optarg; break;
        case R_WORK: o.work_dir = optarg; break;
        case R_JOBS: o.jobs = atoi(optarg); break;
        case R_YES: o.yes = true; break;
        case R_INSECURE: o.allow_insecure_http = true; break;
        default: cli_errorf("unknown or incomplete option '%s' (see `pdsmove restore --help`)", argv[optind - 1]); return EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !o.to_url || !o.rotation_key_file || !o.new_email) {
        cli_errorf("give the backup DIR, --to URL, --rotation-key FILE and --new-email E (see `pdsmove restore --help`)");
        return EXIT_USAGE;
    }
    if (o.jobs < 1 || o.jobs > 16) {
        cli_errorf("--jobs must be 1..16");
        return EXIT_USAGE;
    }
    o.dir = argv[optind];
    err_t e = {0};
    char newpw[512] = "", adminpw[512] = "", state[900], jpath[1024], work[1024];
    int status = EXIT_FAIL;
    if (!cli_get_secret(newpw_file, "PDSMOVE_NEW_PASSWORD", "Password for the restored account: ", "password for the new account",
                        newpw, sizeof newpw, &e))
        goto fail;
    o.new_password = newpw;
    if (admin_file) {
        if (!cli_secret_from_file(admin_file, adminpw, sizeof adminpw, &e)) goto fail;
        o.admin_password = adminpw;
    }
    cli_state_dir(state, sizeof state);
    if (!journal_path) {
        if (cli_mkdirs(state, &e)) goto fail;
        snprintf(jpath, sizeof jpath, "%s/journal.sqlite", state);
        journal_path = jpath;
    }
    if (!o.work_dir) {
        snprintf(work, sizeof work, "%s/restore-work", state);
        if (cli_mkdirs(state, &e)) goto fail;
        o.work_dir = work;
    }
    if (journal_open(journal_path, &o.j, &e)) goto fail;
    cli_plain_ui(&o.ui);
    restore_report r;
    err_code rc = restore_run(&o, &r, &e);
    journal_close(o.j);
    if (rc) {
        cli_error(&e);
        if (rc != ERR_USAGE) fprintf(stderr, "pdsmove: the journal (%s) keeps what is done: run the same command again to continue.\n", journal_path);
        status = rc == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    } else {
        printf("restored %s as %s on %s from snapshot %s: %lld records, %lld blobs; identity moved, account active\n", r.did,
               r.handle, o.to_url, r.snapshot_id, r.records, r.blobs);
        status = EXIT_OK_;
    }
    goto wipe;
fail:
    cli_error(&e);
wipe:
    explicit_bzero(newpw, sizeof newpw);
    explicit_bzero(adminpw, sizeof adminpw);
    return status;
}
