/* cmd_prune.c — `pdsmove prune`: options and output around prune_run (src/pipeline/prune.c).
 * One line per snapshot on stdout (kept and why, or removed), a summary line, and the exit
 * status the nightly wrapper reads: 0 removed, 4 nothing to remove, 3 partly, 1 failed. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/prune.h"

/* Beyond cli.h's 0/1/2 (issue 5: distinct codes for the nightly timer). */
enum { PRUNE_EXIT_PARTLY = 3, PRUNE_EXIT_NOTHING = 4 };

static const char prune_usage[] =
    "usage: pdsmove prune DIR --keep-daily N --keep-weekly N --keep-monthly N [--dry-run]\n"
    "\n"
    "Removes the snapshots of the backup directory DIR that no kept snapshot needs. Per account:\n"
    "  --keep-daily N     keep the newest snapshot of each of the N most recent days that have one\n"
    "  --keep-weekly N    ... of each of the N most recent ISO weeks (Monday to Sunday) that have one\n"
    "  --keep-monthly N   ... of each of the N most recent months that have one\n"
    "Days, weeks and months are UTC (from each snapshot's created_at). The rules are independent\n"
    "(a snapshot may be kept by several); the newest snapshot is always kept. Give at least one\n"
    "rule; a missing one counts as 0.\n"
    "\n"
    "A kept snapshot also keeps what it needs: the snapshots it builds on (an incremental\n"
    "snapshot's chain back to a full one) and the archives that store blobs of its blob set, and\n"
    "in turn what those need, so `pdsmove verify DIR` still passes afterwards. An unfinished\n"
    "backup keeps what it counts on, and an account whose backup is running is skipped.\n"
    "Files in DIR/cache/ of accounts with no snapshot left in the index are removed too.\n"
    "\n"
    "  --dry-run          say what would be removed; change nothing\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 removed something (a dry run: would remove), 4 nothing to remove,\n"
    "3 partly done (an account was busy, or a removal failed after others), 1 failed, 2 usage error\n";

enum { P_DAILY = 1000, P_WEEKLY, P_MONTHLY, P_DRY };

static bool parse_keep(const char *s, const char *name, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > PRUNE_KEEP_MAX) {
        cli_errorf("%s takes a whole number 0..%d, not '%s'", name, PRUNE_KEEP_MAX, s);
        return false;
    }
    *out = (int)v;
    return true;
}

static void why_text(unsigned why, char *out, size_t size) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{PRUNE_WHY_LATEST, "latest"},
                 {PRUNE_WHY_DAILY, "daily"},
                 {PRUNE_WHY_WEEKLY, "weekly"},
                 {PRUNE_WHY_MONTHLY, "monthly"},
                 {PRUNE_WHY_UNDATED, "unreadable date"}};
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (why & names[i].bit) {
            int n = snprintf(out + len, size - len, "%s%s", len ? ", " : "", names[i].name);
            if (n < 0 || (size_t)n >= size - len) break;
            len += (size_t)n;
        }
}

static void print_entry(const prune_entry *x, bool dry_run) {
    char kb[32], why[96];
    cli_format_bytes(x->archive_bytes, kb, sizeof kb);
    switch (x->decision) {
    case PRUNE_KEEP:
        why_text(x->why, why, sizeof why);
        printf("  keep    %s  kept (%s)\n", cli_safe(x->id), why);
        break;
    case PRUNE_NEEDED:
        if (x->need == PRUNE_NEED_CHAIN) printf("  keep    %s  needed by %s (it builds on this one)\n", cli_safe(x->id), cli_safe(x->needed_by));
        else if (x->need == PRUNE_NEED_BLOBS)
            printf("  keep    %s  needed by %s (stores %lld of its blobs)\n", cli_safe(x->id), cli_safe(x->needed_by), (long long)x->blobs_for);
        else printf("  keep    %s  needed by %s (an unfinished backup counts on it)\n", cli_safe(x->id), cli_safe(x->needed_by));
        break;
    case PRUNE_REMOVE:
        if (dry_run) printf("  remove  %s  would remove %s (%s)\n", x->id, x->archive, x->archive_was_missing ? "already missing" : kb);
        else if (x->removed && x->archive_was_missing) printf("  remove  %s  removed from the index (archive %s was already gone)\n", cli_safe(x->id), cli_safe(x->archive));
        else if (x->removed) printf("  remove  %s  removed %s (%s)\n", cli_safe(x->id), cli_safe(x->archive), kb);
        else if (x->failed) printf("  remove  %s  FAILED (see below)\n", cli_safe(x->id));
        else printf("  remove  %s  not removed (stopped after an error)\n", cli_safe(x->id));
        break;
    case PRUNE_BUSY: printf("  skip    %s  its account is busy (a backup is running)\n", cli_safe(x->id)); break;
    }
    if (x->base_missing && x->decision != PRUNE_REMOVE)
        printf("          warning: %s builds on %s, which is not in the index (run `pdsmove verify`)\n", cli_safe(x->id), cli_safe(x->base_id));
}

int cmd_prune(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(prune_usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {{"keep-daily", required_argument, 0, P_DAILY},
                                             {"keep-weekly", required_argument, 0, P_WEEKLY},
                                             {"keep-monthly", required_argument, 0, P_MONTHLY},
                                             {"dry-run", no_argument, 0, P_DRY},
                                             {0, 0, 0, 0}};
    prune_opts o = {0};
    bool any_rule = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case P_DAILY: if (!parse_keep(optarg, "--keep-daily", &o.keep_daily)) return EXIT_USAGE; any_rule = true; break;
        case P_WEEKLY: if (!parse_keep(optarg, "--keep-weekly", &o.keep_weekly)) return EXIT_USAGE; any_rule = true; break;
        case P_MONTHLY: if (!parse_keep(optarg, "--keep-monthly", &o.keep_monthly)) return EXIT_USAGE; any_rule = true; break;
        case P_DRY: o.dry_run = true; break;
        default: cli_errorf("unknown or incomplete option '%s' (see `pdsmove prune --help`)", argv[optind - 1]); return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_errorf("give one backup DIR (see `pdsmove prune --help`)");
        return EXIT_USAGE;
    }
    if (!any_rule) {
        cli_errorf("give at least one of --keep-daily, --keep-weekly, --keep-monthly (with none, everything but the newest "
                   "snapshot would go)");
        return EXIT_USAGE;
    }
    o.dir = argv[optind];
    prune_report r;
    err_t e = {0};
    err_code rc = prune_run(&o, &r, &e);
    if (rc) {
        /* stopped part way (or before starting): say only what is already gone */
        for (size_t i = 0; i < r.n; i++)
            if (r.v[i].removed) print_entry(&r.v[i], false);
        cli_error(&e);
        int st = rc == ERR_USAGE ? EXIT_USAGE : (r.removed ? PRUNE_EXIT_PARTLY : EXIT_FAIL);
        prune_report_free(&r);
        return st;
    }
    const char *did = NULL;
    for (size_t i = 0; i < r.n; i++) {
        if (!did || strcmp(did, r.v[i].did)) {
            did = r.v[i].did;
            size_t n = 0;
            while (i + n < r.n && !strcmp(r.v[i + n].did, did)) n++;
            printf("%s: %zu snapshot(s)\n", cli_safe(did), n);
        }
        print_entry(&r.v[i], o.dry_run);
    }
    for (size_t i = 0; i < r.n_caches; i++) {
        const prune_cache_entry *c = &r.caches[i];
        char kb[32];
        cli_format_bytes(c->bytes, kb, sizeof kb);
        if (i == 0 || strcmp(c->account, r.caches[i - 1].account))
            printf("cache of %s (no snapshot of it in the index):\n", cli_safe(c->account));
        switch (c->decision) {
        case PRUNE_CACHE_REMOVE:
            if (c->failed) printf("  remove  cache/%s  FAILED (see below)\n", cli_safe(c->name));
            else printf("  remove  cache/%s  %s (%s)\n", cli_safe(c->name), o.dry_run ? "would remove" : "removed", c->is_dir ? "directory" : kb);
            break;
        case PRUNE_CACHE_BUSY: printf("  skip    cache/%s  a backup of the account is running\n", cli_safe(c->name)); break;
        case PRUNE_CACHE_UNFINISHED: printf("  keep    cache/%s  an unfinished backup of the account uses it\n", cli_safe(c->name)); break;
        case PRUNE_CACHE_LEFT: printf("  keep    cache/%s  left alone (in use now, or not pdsmove's)\n", cli_safe(c->name)); break;
        }
    }
    char freed[32];
    cli_format_bytes(r.bytes_freed + r.cache_bytes_freed, freed, sizeof freed);
    size_t removed = o.dry_run ? r.to_remove : r.removed;
    char caches[96] = "";
    if (r.caches_removed)
        snprintf(caches, sizeof caches, ", %zu cache file(s) of accounts without snapshots %s", r.caches_removed,
                 o.dry_run ? "would be removed" : "removed");
    printf("prune%s: %zu account(s): %zu kept, %zu needed by kept ones, %zu %s%s (%s %s)%s\n", o.dry_run ? " (dry run)" : "",
           r.accounts, r.kept, r.needed, removed, o.dry_run ? "would be removed" : "removed", caches, freed,
           o.dry_run ? "would be freed" : "freed", r.busy_accounts ? "; some accounts skipped" : "");
    if (r.first_error[0]) fprintf(stderr, "%spdsmove: prune: %s\n", cli_log_prefix(4), cli_safe(r.first_error));
    int status;
    if (r.failed) {
        status = r.removed ? PRUNE_EXIT_PARTLY : EXIT_FAIL;
    } else if (r.busy_accounts) {
        status = PRUNE_EXIT_PARTLY;
    } else {
        status = removed || r.caches_removed ? EXIT_OK_ : PRUNE_EXIT_NOTHING;
    }
    prune_report_free(&r);
    return status;
}
