/* cmd_restore.c — `pdsmove restore`: options, secrets and output around restore_run
 * (src/pipeline/restore.c). Progress on stderr, the result on stdout. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "pdsmove/backup_index.h"
#include "pdsmove/restore.h"

static const char usage[] =
    "usage: pdsmove restore DIR --to NEW_PDS_URL (--rotation-key FILE | --password-file FILE) [options]\n"
    "\n"
    "Brings an account back on a new PDS from a snapshot of the backup directory DIR (made by\n"
    "`pdsmove backup`): the repository, every blob and the preferences as the snapshot has them,\n"
    "and the did:plc identity moved to the new PDS. Two ways, by what still works:\n"
    "\n"
    "  the old PDS is gone (--rotation-key FILE, --new-email E):\n"
    "    your rotation key (one listed in the DID's rotation keys: see `pdsmove plc\n"
    "    add-rotation-key`) signs one PLC operation pointing the DID at the new PDS with a\n"
    "    temporary signing key; pdsmove creates the account with a token it signs itself, then a\n"
    "    second operation installs the new PDS's own credentials (your key stays first).\n"
    "\n"
    "  the old PDS still works (--password-file FILE, the account's password there):\n"
    "    the normal migration: the old PDS vouches for the new account and signs the identity\n"
    "    change after its email token (--plc-token-file / --plc-token-from-db, else asked);\n"
    "    afterwards the old account is deactivated (--keep-old-active keeps it). This is\n"
    "    `pdsmove migrate DID --from-backup DIR` with the same options; newer data on the old\n"
    "    PDS than the snapshot is not carried over (use `pdsmove migrate` for that).\n"
    "\n"
    "Either way the account is activated only after the check: the restored record tree must be\n"
    "identical to the snapshot's and the DID document must name the new PDS. Journaled: if it\n"
    "stops, run the same command again.\n"
    "\n"
    "options:\n"
    "  --to URL                     the new PDS (required)\n"
    "  --snapshot ID                which snapshot (default: the newest of --did)\n"
    "  --did DID                    the account, when DIR holds several (default: its only one)\n"
    "  --new-handle H               handle on the new PDS (default <name>.<its domain>)\n"
    "  --new-email E                the account's email on the new PDS (required with\n"
    "                               --rotation-key; else default: the account's current email)\n"
    "  --new-password-file F        password for the new account (else $PDSMOVE_NEW_PASSWORD, else asked)\n"
    "  --invite-code C              invite code for the new PDS\n"
    "  --invite-code-file F         the same, from a file (argv is visible to every user in `ps`)\n"
    "  --new-pds-admin-password-file F  mint the invite code with the new PDS's admin password\n"
    "  --plc-url URL                PLC directory (default https://plc.directory)\n"
    "  --journal PATH               journal (default ~/.local/state/pdsmove/journal.sqlite)\n"
    "  --work-dir DIR               where the snapshot is assembled (default under the state dir)\n"
    "  --jobs N                     blob uploads in flight (default 4)\n"
    "  --new-pds-ratelimit-bypass-key-file F  the new PDS's PDS_RATE_LIMIT_BYPASS_KEY (bare, or its\n"
    "                               env file), sent to it only: its 1000 uploads a day do not pause\n"
    "  --wait-for-limits            wait out a daily rate limit in place instead of stopping\n"
    "  --yes                        do not ask before the identity change\n"
    "  --allow-insecure-http        permit http:// to non-loopback hosts\n"
    "  --watch-state FILE           note the PLC operation(s) for `pdsmove plc watch --state FILE`\n"
    "                               (default: its default state file, if it exists)\n"
    "the old PDS gone:\n"
    "  --rotation-key FILE          your rotation key, hex or multikey\n"
    "the old PDS working (as for `pdsmove migrate`; see its --help):\n"
    "  --password-file F            the account's password on the old PDS\n"
    "  --from URL                   the old PDS (default: from the DID document)\n"
    "  --auth-factor-token-file F   email 2FA sign-in code for the old PDS\n"
    "  --plc-token-file F | --plc-token-from-db PATH   the email token for the identity step\n"
    "  --add-rotation-key DID_KEY   also put this key first in the rotation keys\n"
    "  --keep-old-active            do not deactivate the old account\n"
    "  --force, --json, --dry-run   as for migrate\n"
    "\n"
    "exit status: 0 restored and verified, 1 stopped (re-run to continue), 2 usage error\n";

enum { R_TO = 1000, R_KEY, R_EMAIL, R_SNAP, R_DID, R_HANDLE, R_NEWPW, R_INVITE, R_ADMIN, R_PLC, R_JOURNAL, R_WORK, R_JOBS, R_YES,
       R_INSECURE, R_PW, R_FROM, R_2FA, R_TOKFILE, R_TOKDB, R_ADDKEY, R_KEEPOLD, R_FORCE, R_JSON, R_DRY, R_WATCH, R_BYPASS,
       R_WAITLIMITS, R_INVITEFILE };

/* The options only the migration way takes, passed on to `pdsmove migrate` as given. */
typedef struct {
    const char *argv[64];
    int argc;
    bool any;          /* one of them was given */
    const char *first; /* its name, for the error when --rotation-key is given too */
} passthrough;

static void pass(passthrough *p, const char *opt, const char *val) {
    if (p->argc + 2 >= (int)(sizeof p->argv / sizeof p->argv[0])) return;
    p->argv[p->argc++] = opt;
    if (val) p->argv[p->argc++] = val;
}

static void pass_only_migrate(passthrough *p, const char *opt, const char *val) {
    if (!p->any) p->first = opt;
    p->any = true;
    pass(p, opt, val);
}

/* The account of a snapshot (--snapshot) or --did: the DID `pdsmove migrate` is given. DIR
 * is checked here, before anything is asked: it must be a backup holding that snapshot, or a
 * snapshot of that DID. */
static bool snapshot_did(const char *dir, const char *snapshot_id, const char *did, char *out, size_t size, err_t *e) {
    char index[1100];
    struct stat st;
    snprintf(index, sizeof index, "%s/index.sqlite", dir);
    if (stat(index, &st) != 0) {
        err_set(e, ERR_USAGE, "%s is not a pdsmove backup (it has no index.sqlite): give the directory `pdsmove backup --to` "
                              "wrote", dir);
        return false;
    }
    backup_index *idx = NULL;
    backup_snapshot s;
    char only[256];
    err_code rc = backup_index_open_readonly(dir, &idx, e);
    if (!rc && !snapshot_id && !did && !(rc = restore_only_did(idx, dir, only, sizeof only, e))) did = only;
    if (!rc) rc = snapshot_id ? backup_index_get(idx, snapshot_id, &s, e) : backup_index_latest(idx, did, &s, e);
    backup_index_close(idx);
    if (rc) {
        err_wrap(e, "finding %s in the backup %s", snapshot_id ? snapshot_id : "a snapshot of the account", dir);
        return false;
    }
    snprintf(out, size, "%s", did ? did : s.did);
    return true;
}

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
        {"yes", no_argument, 0, R_YES}, {"allow-insecure-http", no_argument, 0, R_INSECURE},
        {"password-file", required_argument, 0, R_PW}, {"from", required_argument, 0, R_FROM},
        {"auth-factor-token-file", required_argument, 0, R_2FA}, {"plc-token-file", required_argument, 0, R_TOKFILE},
        {"plc-token-from-db", required_argument, 0, R_TOKDB}, {"add-rotation-key", required_argument, 0, R_ADDKEY},
        {"keep-old-active", no_argument, 0, R_KEEPOLD}, {"force", no_argument, 0, R_FORCE}, {"json", no_argument, 0, R_JSON},
        {"dry-run", no_argument, 0, R_DRY}, {"watch-state", required_argument, 0, R_WATCH},
        {"new-pds-ratelimit-bypass-key-file", required_argument, 0, R_BYPASS}, {"wait-for-limits", no_argument, 0, R_WAITLIMITS},
        {"invite-code-file", required_argument, 0, R_INVITEFILE}, {0, 0, 0, 0}};
    restore_opts o = {.jobs = 4};
    const char *newpw_file = NULL, *admin_file = NULL, *invite_file = NULL, *journal_path = NULL, *pw_file = NULL, *jobs_arg = NULL,
               *bypass_file = NULL;
    passthrough mig = {0}, both = {0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case R_TO: o.to_url = optarg; pass(&both, "--to", optarg); break;
        case R_KEY: o.rotation_key_file = optarg; break;
        case R_EMAIL: o.new_email = optarg; pass(&both, "--new-email", optarg); break;
        case R_SNAP: o.snapshot_id = optarg; pass(&both, "--snapshot", optarg); break;
        case R_DID: o.did = optarg; break;
        case R_HANDLE: o.new_handle = optarg; pass(&both, "--new-handle", optarg); break;
        case R_NEWPW: newpw_file = optarg; pass(&both, "--new-password-file", optarg); break;
        case R_INVITE: o.invite_code = optarg; pass(&both, "--invite-code", optarg); break;
        case R_INVITEFILE: invite_file = optarg; pass(&both, "--invite-code-file", optarg); break;
        case R_ADMIN: admin_file = optarg; pass(&both, "--new-pds-admin-password-file", optarg); break;
        case R_PLC: o.plc_url = optarg; pass(&both, "--plc-url", optarg); break;
        case R_JOURNAL: journal_path = optarg; pass(&both, "--journal", optarg); break;
        case R_WORK: o.work_dir = optarg; pass(&both, "--work-dir", optarg); break;
        case R_JOBS: o.jobs = atoi(optarg); jobs_arg = optarg; break;
        case R_YES: o.yes = true; pass(&both, "--yes", NULL); break;
        case R_INSECURE: o.allow_insecure_http = true; pass(&both, "--allow-insecure-http", NULL); break;
        case R_PW: pw_file = optarg; pass_only_migrate(&mig, "--password-file", optarg); break;
        case R_FROM: pass_only_migrate(&mig, "--from", optarg); break;
        case R_2FA: pass_only_migrate(&mig, "--auth-factor-token-file", optarg); break;
        case R_TOKFILE: pass_only_migrate(&mig, "--plc-token-file", optarg); break;
        case R_TOKDB: pass_only_migrate(&mig, "--plc-token-from-db", optarg); break;
        case R_ADDKEY: pass_only_migrate(&mig, "--add-rotation-key", optarg); break;
        case R_KEEPOLD: pass_only_migrate(&mig, "--keep-old-active", NULL); break;
        case R_FORCE: pass_only_migrate(&mig, "--force", NULL); break;
        case R_JSON: pass_only_migrate(&mig, "--json", NULL); break;
        case R_DRY: pass_only_migrate(&mig, "--dry-run", NULL); break;
        case R_WATCH: o.watch_state = optarg; pass(&both, "--watch-state", optarg); break;
        case R_BYPASS: bypass_file = optarg; pass(&both, "--new-pds-ratelimit-bypass-key-file", optarg); break;
        case R_WAITLIMITS: o.wait_for_limits = true; pass(&both, "--wait-for-limits", NULL); break;
        default: cli_errorf("unknown or incomplete option '%s' (see `pdsmove restore --help`)", argv[optind - 1]); return EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !o.to_url) {
        cli_errorf("give the backup DIR and --to URL (see `pdsmove restore --help`)");
        return EXIT_USAGE;
    }
    if (o.jobs < 1 || o.jobs > 16) {
        cli_errorf("--jobs must be 1..16");
        return EXIT_USAGE;
    }
    if (o.rotation_key_file && mig.any) {
        cli_errorf("%s belongs to a restore while the old PDS works; --rotation-key is for when it is gone: give one way "
                   "(see `pdsmove restore --help`)", mig.first);
        return EXIT_USAGE;
    }
    if (!o.rotation_key_file && !pw_file && !getenv("PDSMOVE_PASSWORD")) {
        cli_errorf("say how the identity moves: --rotation-key FILE when the old PDS is gone, or --password-file FILE (the "
                   "account's password on the old PDS) when it still works (see `pdsmove restore --help`)");
        return EXIT_USAGE;
    }
    if (o.rotation_key_file && !o.new_email) {
        cli_errorf("give --new-email E: the snapshot does not hold the account's email, and the old PDS cannot tell it");
        return EXIT_USAGE;
    }
    if (!o.rotation_key_file) {
        /* the old PDS works: the migrate pipeline, fed from the backup */
        err_t e = {0};
        char did[256];
        if (!snapshot_did(argv[optind], o.snapshot_id, o.did, did, sizeof did, &e)) {
            cli_error(&e);
            return e.code == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
        }
        const char *margv[140];
        int n = 0;
        margv[n++] = "migrate";
        margv[n++] = did;
        margv[n++] = "--from-backup";
        margv[n++] = argv[optind];
        for (int i = 0; i < both.argc; i++) margv[n++] = both.argv[i];
        for (int i = 0; i < mig.argc; i++) margv[n++] = mig.argv[i];
        if (jobs_arg) {
            margv[n++] = "--jobs";
            margv[n++] = jobs_arg;
        }
        margv[n] = NULL;
        return cmd_migrate(n, (char **)margv);
    }
    o.dir = argv[optind];
    err_t e = {0};
    char newpw[512] = "", adminpw[512] = "", bypass[256] = "", invite[256] = "", state[900], jpath[1024], work[1024];
    int status = EXIT_FAIL;
    if (!cli_get_secret(newpw_file, "PDSMOVE_NEW_PASSWORD", "Password for the restored account: ", "password for the new account",
                        newpw, sizeof newpw, &e))
        goto fail;
    o.new_password = newpw;
    cli_secret_register(newpw);
    if (admin_file) {
        if (!cli_secret_from_file(admin_file, adminpw, sizeof adminpw, &e)) goto fail;
        o.admin_password = adminpw;
        cli_secret_register(adminpw);
    }
    if (bypass_file) {
        if (!cli_bypass_key_from_file(bypass_file, bypass, sizeof bypass, &e)) goto fail;
        o.new_pds_bypass_key = bypass;
        cli_secret_register(bypass);
    }
    if (invite_file) {
        if (o.invite_code) {
            err_set(&e, ERR_USAGE, "give --invite-code or --invite-code-file, not both");
            goto fail;
        }
        if (!cli_secret_from_file(invite_file, invite, sizeof invite, &e)) goto fail;
        o.invite_code = invite;
        cli_secret_register(invite);
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
    const char *const held[] = {newpw, adminpw, bypass, invite};
    if (journal_set_secrets(o.j, held, sizeof held / sizeof held[0], &e)) {
        journal_close(o.j);
        goto fail;
    }
    cli_plain_ui(&o.ui);
    restore_report r;
    err_code rc = restore_run(&o, &r, &e);
    journal_close(o.j);
    if (rc) {
        cli_error(&e);
        if (rc != ERR_USAGE) fprintf(stderr, "pdsmove: the journal (%s) keeps what is done: run the same command again to continue.\n", journal_path);
        status = rc == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    } else if (r.already_done) {
        printf("%s was already restored as %s from snapshot %s (journal %s): nothing to do\n", r.did, r.handle, r.snapshot_id,
               journal_path);
        status = EXIT_OK_;
    } else {
        printf("restored %s as %s on %s from snapshot %s: %lld records, %lld blobs; identity moved, account active\n", cli_safe(r.did),
               cli_safe(r.handle), cli_safe(o.to_url), cli_safe(r.snapshot_id), r.records, r.blobs);
        status = EXIT_OK_;
    }
    goto wipe;
fail:
    cli_error(&e);
wipe:
    explicit_bzero(newpw, sizeof newpw);
    explicit_bzero(adminpw, sizeof adminpw);
    explicit_bzero(bypass, sizeof bypass);
    explicit_bzero(invite, sizeof invite);
    cli_secrets_wipe();
    return status;
}
