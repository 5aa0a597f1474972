/* cmd_car.c — `pdsmove car verify|ls FILE`: check a repo CAR (every block's hash, the MST,
 * the commit signature) or list its records. Option parsing and printing live here; the
 * checks live in repo.c (over car.c, blockstore.c, commit.c and mst.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/keys.h"
#include "pdsmove/repo.h"

static const char car_usage[] =
    "usage: pdsmove car <command> [options] FILE\n"
    "\n"
    "Repository archives (CAR v1 files, as served by com.atproto.sync.getRepo).\n"
    "\n"
    "commands:\n"
    "  verify FILE [--did-key did:key:...]   check hashes, the record tree and the signature\n"
    "  ls FILE                               list records: collection/rkey<TAB>cid\n"
    "\n"
    "Run `pdsmove car <command> --help` for details.\n";

static const char verify_usage[] =
    "usage: pdsmove car verify [--did-key did:key:...] FILE\n"
    "\n"
    "Checks a repository CAR file the way a new PDS would before trusting it:\n"
    "  - every block's data hashes to its CID (a flipped byte is found and named);\n"
    "  - the file is complete (a truncated download is reported as such);\n"
    "  - the root is a signed repo commit (version 3, or 2);\n"
    "  - the record tree (MST) under the commit is well formed: keys valid and in order,\n"
    "    every node at its layer, no node or record block missing;\n"
    "  - with --did-key, the commit is signed by that key (the account's atproto signing\n"
    "    key, from its DID document).\n"
    "The file is read once, then blocks are re-read by offset. Memory stays bounded whatever\n"
    "the repo's size: past about 350,000 blocks the block index spills to an unlinked temp\n"
    "file in $TMPDIR (or /tmp; up to about 150 bytes per block of disk space).\n"
    "\n"
    "Prints the DID, rev, commit CID, records per collection and block counts.\n"
    "\n"
    "options:\n"
    "  --did-key did:key:z...   check the commit signature with this public key\n"
    "  -h, --help               show this help\n"
    "\n"
    "exit status: 0 the repo is complete and consistent, 1 it is not (the first bad block\n"
    "or node is named), 2 usage error\n";

static const char ls_usage[] =
    "usage: pdsmove car ls FILE\n"
    "\n"
    "Lists every record of a repository CAR file in key order, one per line:\n"
    "  collection/rkey<TAB>record CID\n"
    "The same checks as `car verify` (without the signature) run along the way; on the\n"
    "first problem the listing stops with an error (a missing record block is found after\n"
    "the tree has been listed, and then named).\n"
    "\n"
    "exit status: 0 listed completely, 1 damaged or unreadable file, 2 usage error\n";

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_errorf("%s (see `pdsmove car %s --help`)", msg, cmd);
    return EXIT_USAGE;
}

/* ---------------------------------------------------------------- the shared check
 * Everything printed from the file (DID, rev, keys, collection names) is the file's to choose:
 * it goes through cli_untrusted, so a crafted CAR cannot clear the screen or recolour it. */

/* `ls` prints each record as the walk (repo_verify_car) reaches it. */
static err_code print_record(void *ctx, const char *key, size_t key_len, const cid_t *value, const uint8_t *data,
                             size_t len, err_t *e) {
    (void)ctx;
    (void)data;
    (void)len;
    char cs[CID_STR_MAX], k[4 * 1024 + 1]; /* the walk admits keys of up to 1024 bytes */
    cid_format(value, cs, sizeof cs);
    if (printf("%s\t%s\n", cli_untrusted_n(key, key_len, k, sizeof k), cs) < 0) return err_set(e, ERR_IO, "writing the listing: %s", strerror(errno));
    return ERR_OK;
}

static err_code check_car(const char *path, const key_pub *key, bool list, repo_summary *sum, err_t *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    err_code rc = list ? repo_list_car(fd, key, key ? 1 : 0, print_record, NULL, sum, e)
                       : repo_verify_car(fd, key, key ? 1 : 0, NULL, NULL, sum, e);
    close(fd);
    if (rc) err_wrap(e, "%s", path);
    return rc;
}

static void print_report(const char *path, const repo_summary *r, const char *did_key) {
    char cs[CID_STR_MAX], ds[CID_STR_MAX];
    cid_format(&r->commit, cs, sizeof cs);
    cid_format(&r->data, ds, sizeof ds);
    printf("file:       %s (%llu bytes)\n", cli_safe(path), (unsigned long long)r->bytes);
    printf("did:        %s\n", cli_safe(r->did));
    printf("rev:        %s\n", r->rev[0] ? cli_safe(r->rev) : "(none)");
    printf("commit:     %s (version %lld)\n", cs, (long long)r->commit_version);
    printf("signature:  %s%s\n", r->signature_checked ? "valid, by " : "not checked (give --did-key to check it)",
           r->signature_checked ? cli_safe(did_key) : "");
    printf("mst root:   %s (%llu nodes, root layer %d)\n", ds, (unsigned long long)r->mst_nodes, r->mst_root_layer);
    printf("records:    %llu in %zu%s collection%s\n", (unsigned long long)r->records, r->n_collections,
           r->more_collections ? "+" : "", r->n_collections == 1 ? "" : "s");
    for (size_t i = 0; i < r->n_collections; i++)
        printf("  %-40s %llu\n", cli_safe(r->collections[i].nsid), (unsigned long long)r->collections[i].records);
    if (r->more_collections) printf("  (more collections; counts above are partial)\n");
    printf("blocks:     %llu (%llu bytes of data), %llu repeated\n", (unsigned long long)r->blocks,
           (unsigned long long)r->data_bytes, (unsigned long long)r->duplicates);
    printf("ok:         every block matches its CID; the record tree is complete and well formed\n");
}

/* ---------------------------------------------------------------- commands */

static int cmd_verify(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(verify_usage, stdout); return EXIT_OK_; }
    const char *path = NULL, *did_key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--did-key")) {
            if (i + 1 >= argc) return usage_error("verify", "--did-key needs a value");
            did_key = argv[++i];
        } else if (!strncmp(argv[i], "--did-key=", 10)) {
            did_key = argv[i] + 10;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("verify", "unknown option '%s'", argv[i]);
        } else if (path) {
            return usage_error("verify", "only one FILE, got '%s' and '%s'", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return usage_error("verify", "missing FILE");
    key_pub key;
    err_t e = {0};
    if (did_key && key_pub_from_did_key(&key, did_key, &e)) {
        cli_errorf("--did-key: %s", e.msg);
        return EXIT_USAGE;
    }
    repo_summary rep;
    err_code rc = check_car(path, did_key ? &key : NULL, false, &rep, &e);
    if (rc) cli_error(&e);
    else print_report(path, &rep, did_key);
    if (fflush(stdout) != 0 && !rc) {
        cli_errorf("writing the report: %s", strerror(errno));
        return EXIT_FAIL;
    }
    return rc ? EXIT_FAIL : EXIT_OK_;
}

static int cmd_ls(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(ls_usage, stdout); return EXIT_OK_; }
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) return usage_error("ls", "unknown option '%s'", argv[i]);
        if (path) return usage_error("ls", "only one FILE, got '%s' and '%s'", path, argv[i]);
        path = argv[i];
    }
    if (!path) return usage_error("ls", "missing FILE");
    repo_summary rep;
    err_t e = {0};
    err_code rc = check_car(path, NULL, true, &rep, &e);
    if (fflush(stdout) != 0 && !rc) rc = err_set(&e, ERR_IO, "writing the listing: %s", strerror(errno));
    if (rc) cli_error(&e);
    return rc ? EXIT_FAIL : EXIT_OK_;
}

int cmd_car(int argc, char **argv) {
    if (argc < 2) {
        fputs(car_usage, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        fputs(car_usage, stdout);
        return EXIT_OK_;
    }
    if (!strcmp(sub, "verify")) return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(sub, "ls")) return cmd_ls(argc - 1, argv + 1);
    cli_errorf("unknown car command '%s' (see `pdsmove car --help`)", sub);
    return EXIT_USAGE;
}
