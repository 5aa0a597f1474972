/* cmd_backup.c — `pdsmove backup` and `pdsmove verify`: options and output around
 * backup_run / backup_verify_run (src/pipeline/backup.c, backup_verify.c). Progress on stderr,
 * the result on stdout. Secrets only from files or the environment. */
#include <getopt.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/backup.h"
#include "pdsmove/xrpc.h"

static const char backup_usage[] =
    "usage: pdsmove backup ACCOUNT --to DIR [options]\n"
    "       pdsmove backup --all-repos PDS_URL --to DIR [--parallel N] [options]\n"
    "\n"
    "Saves one snapshot of an account (handle or DID) into the backup directory DIR: the\n"
    "repository, every blob, the DID document, the PLC audit log, and with a password the\n"
    "preferences. The first snapshot is full; later ones hold only what changed since the last\n"
    "(getRepo since its rev; blobs are stored once per CID across all snapshots) and are still\n"
    "complete for verify and restore, which assemble them from the snapshots they build on.\n"
    "Archives are tar + zstd with a SHA256SUMS list, written under a temporary name and renamed\n"
    "when complete (docs/archive-format.md). A killed run continues when run again.\n"
    "\n"
    "options:\n"
    "  --to DIR              the backup directory (created if needed)\n"
    "  --password-file F     a password of the account: adds the preferences (else\n"
    "                        $PDSMOVE_PASSWORD; without either only public data is saved). Use an\n"
    "                        app password: it reads everything but the birth date, and cannot\n"
    "                        change the password, the email or the identity. The account's own\n"
    "                        password also reads a deactivated account. The manifest records which.\n"
    "  --pds URL             the PDS to read from (default: from the DID document; also resolves\n"
    "                        handles that have no DNS/HTTPS record)\n"
    "  --plc-url URL         PLC directory (default https://plc.directory)\n"
    "  --full                a full snapshot even if earlier ones exist\n"
    "  --jobs N              blob downloads in flight (default 4)\n"
    "  --max-repo-bytes N    refuse a repository (getRepo) or a blob larger than N bytes (default\n"
    "                        4G; K, M, G, T are binary units), so one bad PDS cannot fill the disk\n"
    "  --all-repos PDS_URL   every repository the PDS hosts (com.atproto.sync.listRepos), public\n"
    "                        data only; one failing account does not stop the others\n"
    "  --parallel N          with --all-repos: accounts backed up at once (default 2, max 8)\n"
    "  --wait-for-limits     when the PDS's rate limit resets only in hours, wait in place instead\n"
    "                        of stopping (with --all-repos: no more accounts are started, and the\n"
    "                        message says when to run again)\n"
    "  --allow-insecure-http permit http:// to non-loopback hosts\n"
    "  -h, --help            this help\n"
    "\n"
    "exit status: 0 snapshot written (every account with --all-repos), 1 failed (re-run to\n"
    "continue), 2 usage error, 3 some accounts failed (--all-repos), 4 nothing to back up\n";

static const char verify_usage[] =
    "usage: pdsmove verify DIR [--snapshot ID] [--rebuild-index]\n"
    "\n"
    "Checks every snapshot in the backup directory DIR (or only ID), each assembled from the\n"
    "snapshots it builds on: every archive against its SHA256SUMS, every block against its CID,\n"
    "the repository complete from its commit, the commit signed by the key in the DID document\n"
    "saved with it, every blob stored and hashing to its CID, every blob the records reference\n"
    "present, and the saved PLC audit log valid. Reports per snapshot.\n"
    "\n"
    "  --rebuild-index   first make DIR/index.sqlite again from the archives alone (when it is\n"
    "                    lost or damaged: the archives are the truth, the index a cache)\n"
    "\n"
    "exit status: 0 all intact, 1 damage found (named), 2 usage error\n";

enum { B_TO = 1000, B_PW, B_PDS, B_PLC, B_FULL, B_JOBS, B_INSECURE, B_SNAP, B_ALL, B_PARALLEL, B_REBUILD, B_WAITLIMITS,
       B_MAXREPO };
enum { EXIT_PARTIAL = 3, EXIT_NOTHING = 4 };
/* an --all-repos child stopped by a rate limit that resets in hours: start no more of them */
enum { EXIT_CHILD_LIMITED = 5 };
#define ALL_REPOS_MAX 1000000

/* listRepos of pds → the DIDs of its active repositories (owned array of owned strings). */
static err_code list_repos(const char *pds, bool insecure, char ***dids_out, size_t *n_out, err_t *e) {
    xrpc_options xo = {.allow_insecure_http = insecure};
    xrpc_client *c = xrpc_client_new(pds, &xo, e);
    if (!c) return e->code;
    char **dids = NULL, cursor[256] = "";
    size_t n = 0, cap = 0;
    err_code rc = ERR_OK;
    for (int page = 0; page < 10000 && !rc; page++) {
        xrpc_param p[] = {{"limit", "1000"}, {"cursor", cursor[0] ? cursor : NULL}, {NULL, NULL}};
        json_t *out = NULL;
        if ((rc = xrpc_query(c, "com.atproto.sync.listRepos", p, &out, e))) break;
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(out, "repos"), i, r) {
            const char *did = json_string_value(json_object_get(r, "did"));
            json_t *active = json_object_get(r, "active");
            if (!did || (active && !json_is_true(active))) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                char **nd = cap > ALL_REPOS_MAX ? NULL : realloc(dids, cap * sizeof *nd);
                if (!nd) {
                    rc = err_set(e, ERR_LIMIT, "too many repositories");
                    break;
                }
                dids = nd;
            }
            if (!(dids[n] = strdup(did))) rc = err_set(e, ERR_NOMEM, "out of memory");
            else n++;
        }
        const char *next = json_string_value(json_object_get(out, "cursor"));
        bool more = next && *next && json_array_size(json_object_get(out, "repos")) > 0 && strcmp(next, cursor);
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(out);
        if (!more) break;
    }
    xrpc_client_free(c);
    *dids_out = dids;
    *n_out = n;
    return rc;
}

/* One child process per account, at most `parallel` at once; each prints one line. */
static int backup_all(backup_opts *o, const char *pds, int parallel) {
    char **dids = NULL;
    size_t n = 0;
    err_t e = {0};
    if (list_repos(pds, o->allow_insecure_http, &dids, &n, &e)) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    if (n == 0) {
        printf("%s hosts no active repositories: nothing to back up\n", cli_safe(pds));
        return EXIT_NOTHING;
    }
    fprintf(stderr, "backing up %zu repositories from %s, %d at a time\n", n, cli_safe(pds), parallel);
    size_t next = 0, ok = 0, failed = 0;
    int running = 0;
    bool limited = false;
    fflush(stdout);
    while ((next < n && !limited) || running > 0) {
        while (running < parallel && next < n && !limited) {
            pid_t pid = fork();
            if (pid == 0) {
                backup_opts co = *o;
                co.account = dids[next];
                co.pds_url = pds;
                migrate_ui plain;
                cli_plain_ui(&plain);
                /* one line per account, not interleaved progress; a long rate-limit wait
                 * (--wait-for-limits) still says how long it has left */
                co.ui = (migrate_ui){.limit_wait = plain.limit_wait};
                backup_report r;
                err_t ce = {0};
                if (backup_run(&co, &r, &ce)) {
                    printf("FAILED %s: %s\n", cli_safe(dids[next]), cli_safe(ce.msg));
                    fflush(stdout);
                    _exit(ce.code == ERR_RATELIMIT ? EXIT_CHILD_LIMITED : EXIT_FAIL);
                }
                printf("ok     %s: %s snapshot, %lld blobs (%lld new), %.1f KiB\n", cli_safe(dids[next]),
                       r.incremental ? (r.unchanged ? "unchanged" : "incremental") : "full", (long long)r.blobs_total,
                       (long long)r.blobs_new, (double)r.archive_bytes / 1024.0);
                fflush(stdout);
                _exit(EXIT_OK_);
            }
            if (pid < 0) {
                cli_errorf("cannot start a backup process: %s", strerror(errno));
                break;
            }
            running++;
            next++;
        }
        int st;
        pid_t done = wait(&st);
        if (done < 0) break;
        running--;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
        else failed++;
        limited = limited || (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_CHILD_LIMITED);
    }
    if (limited) {
        printf("%zu of %zu repositories backed up, %zu failed, %zu not started: a rate limit of %s is used up (the FAILED line "
               "says until when); run the same command again after that (done snapshots are kept), or add --wait-for-limits\n",
               ok, n, failed, n - next, cli_safe(pds));
        for (size_t i = 0; i < n; i++) free(dids[i]);
        free(dids);
        return EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) free(dids[i]);
    free(dids);
    printf("%zu of %zu repositories backed up, %zu failed\n", ok, ok + failed, failed);
    return failed == 0 ? EXIT_OK_ : ok == 0 ? EXIT_FAIL : EXIT_PARTIAL;
}

int cmd_backup(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(backup_usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {{"to", required_argument, 0, B_TO},       {"password-file", required_argument, 0, B_PW},
                                             {"pds", required_argument, 0, B_PDS},     {"plc-url", required_argument, 0, B_PLC},
                                             {"full", no_argument, 0, B_FULL},         {"jobs", required_argument, 0, B_JOBS},
                                             {"allow-insecure-http", no_argument, 0, B_INSECURE},
                                             {"all-repos", required_argument, 0, B_ALL}, {"parallel", required_argument, 0, B_PARALLEL},
                                             {"wait-for-limits", no_argument, 0, B_WAITLIMITS},
                                             {"max-repo-bytes", required_argument, 0, B_MAXREPO},
                                             {0, 0, 0, 0}};
    backup_opts o = {.jobs = 4};
    const char *all = NULL;
    int parallel = 2;
    const char *pw_file = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case B_TO: o.dir = optarg; break;
        case B_PW: pw_file = optarg; break;
        case B_PDS: o.pds_url = optarg; break;
        case B_PLC: o.plc_url = optarg; break;
        case B_FULL: o.full = true; break;
        case B_JOBS:
            o.jobs = atoi(optarg);
            if (o.jobs < 1 || o.jobs > 16) {
                cli_errorf("--jobs must be 1..16");
                return EXIT_USAGE;
            }
            break;
        case B_INSECURE: o.allow_insecure_http = true; break;
        case B_WAITLIMITS: o.wait_for_limits = true; break;
        case B_ALL: all = optarg; break;
        case B_MAXREPO:
            if (!cli_parse_bytes(optarg, &o.max_repo_bytes)) {
                cli_errorf("--max-repo-bytes takes a size such as 4294967296 or 4G, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case B_PARALLEL:
            parallel = atoi(optarg);
            if (parallel < 1 || parallel > 8) {
                cli_errorf("--parallel must be 1..8");
                return EXIT_USAGE;
            }
            break;
        default: cli_errorf("unknown or incomplete option '%s' (see `pdsmove backup --help`)", argv[optind - 1]); return EXIT_USAGE;
        }
    }
    if (all) {
        if (optind != argc || !o.dir) {
            cli_errorf("--all-repos takes no ACCOUNT; give --to DIR (see `pdsmove backup --help`)");
            return EXIT_USAGE;
        }
        if (pw_file) {
            cli_errorf("--all-repos backs up public data only: --password-file does not apply");
            return EXIT_USAGE;
        }
        return backup_all(&o, all, parallel);
    }
    if (optind != argc - 1 || !o.dir) {
        cli_errorf("give one ACCOUNT and --to DIR (see `pdsmove backup --help`)");
        return EXIT_USAGE;
    }
    o.account = argv[optind];
    char pw[512] = "";
    err_t e = {0};
    if (pw_file || getenv("PDSMOVE_PASSWORD")) {
        if (!cli_get_secret(pw_file, "PDSMOVE_PASSWORD", NULL, "password", pw, sizeof pw, &e)) {
            cli_error(&e);
            return EXIT_FAIL;
        }
        o.password = pw;
        cli_secret_register(pw);
    }
    cli_plain_ui(&o.ui);
    backup_report r;
    err_code rc = backup_run(&o, &r, &e);
    explicit_bzero(pw, sizeof pw);
    if (rc) {
        cli_error(&e);
        cli_secrets_wipe();
        return rc == ERR_USAGE ? EXIT_USAGE : EXIT_FAIL;
    }
    cli_secrets_wipe();
    printf("snapshot %s of %s (%s%s): %lld blobs, %lld new; %s (%.1f KiB)\n", cli_safe(r.snapshot_id), cli_safe(r.did),
           r.incremental ? "incremental" : "full", r.unchanged ? ", repo unchanged" : "", (long long)r.blobs_total,
           (long long)r.blobs_new, cli_safe(r.archive), (double)r.archive_bytes / 1024.0);
    if (!strcmp(r.credential, "app-password"))
        printf("read with an app password: the preferences lack the birth date (personalDetailsPref), which the PDS\n"
               "gives only to the account's password; everything else is saved\n");
    else if (!strcmp(r.credential, "password"))
        fprintf(stderr, "%shint: an app password is enough for backups (all but the birth date is saved) and cannot change "
                        "the account's password, email or identity: keep the main password off backup machines "
                        "(docs/nightly-backups.md)\n", cli_log_prefix(5));
    return EXIT_OK_;
}

int cmd_backup_verify(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(verify_usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {{"snapshot", required_argument, 0, B_SNAP},
                                             {"rebuild-index", no_argument, 0, B_REBUILD}, {0, 0, 0, 0}};
    backup_verify_opts o = {0};
    bool rebuild = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == B_SNAP) o.snapshot_id = optarg;
        else if (c == B_REBUILD) rebuild = true;
        else {
            cli_errorf("unknown or incomplete option '%s' (see `pdsmove verify --help`)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_errorf("give one backup DIR (see `pdsmove verify --help`)");
        return EXIT_USAGE;
    }
    o.dir = argv[optind];
    cli_plain_ui(&o.ui);
    o.ui.wait = NULL;
    o.ui.confirm = NULL;
    backup_verify_report r;
    err_t e = {0};
    if (rebuild) {
        int n = 0;
        if (backup_index_rebuild(o.dir, &n, &e)) {
            cli_error(&e);
            return EXIT_FAIL;
        }
        fprintf(stderr, "    index rebuilt from %d archive(s)\n", n);
    }
    err_code rc = backup_verify_run(&o, &r, &e);
    if (rc) {
        cli_error(&e);
        return EXIT_FAIL;
    }
    printf("%d snapshot(s) in %s verified: intact\n", r.checked, o.dir);
    return EXIT_OK_;
}
