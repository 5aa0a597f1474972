/* main.c — pdsmove entry point: global --help/--version, then dispatch to cmd_<name>(). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pdsmove/secure.h"

static const char usage[] =
    "pdsmove " PDSMOVE_VERSION " — move, back up and restore AT Protocol (Bluesky) accounts\n"
    "\n"
    "usage: pdsmove <command> [options]\n"
    "\n"
    "commands:\n"
    "  migrate ACCOUNT --to URL [options]        move an account to another PDS (resumable)\n"
    "  status [ACCOUNT] [--journal PATH]         where a migration stands, what the next run does\n"
    "  backup ACCOUNT --to DIR                   one snapshot (full, then incremental)\n"
    "  backup --all-repos PDS_URL --to DIR       every account a PDS hosts\n"
    "  verify DIR [--snapshot ID]                check the snapshots of a backup directory\n"
    "  prune DIR --keep-daily N ...              remove snapshots no kept one needs\n"
    "  restore DIR --to URL --rotation-key F     bring an account back when its PDS is gone\n"
    "  restore DIR --to URL --password-file F    ...or from a backup while the old PDS works\n"
    "  car verify FILE [--did-key did:key:...]   check a repo CAR: hashes, MST, signature\n"
    "  car ls FILE                               list records (collection/rkey<TAB>cid)\n"
    "  plc show ACCOUNT                          the DID's state and history, readable\n"
    "  plc watch ACCOUNT [--state FILE]          alert (exit 3) on an operation no pdsmove run made\n"
    "  plc add-rotation-key ACCOUNT --key FILE   put your own key first in the rotation keys\n"
    "  plc recover ACCOUNT --key F --to-before C undo an unwanted operation within 72 hours\n"
    "  plc verify-log FILE                       validate a did:plc audit log\n"
    "  key generate [--type k256|p256] --out F   make a rotation/signing key\n"
    "  key show FILE                             print a key file's did:key\n"
    "\n"
    "Run `pdsmove <command> --help` for details.\n";

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    }
    return false;
}

int main(int argc, char **argv) {
    err_t e = {0};
    if (secure_process_init(&e) != ERR_OK) { /* before any command can read a secret */
        cli_error(&e);
        return EXIT_FAIL;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        puts("pdsmove " PDSMOVE_VERSION);
        return EXIT_OK_;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "car")) return cmd_car(argc - 1, argv + 1);
    if (!strcmp(cmd, "plc")) return cmd_plc(argc - 1, argv + 1);
    if (!strcmp(cmd, "key")) return cmd_key(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate")) return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "backup")) return cmd_backup(argc - 1, argv + 1);
    if (!strcmp(cmd, "restore")) return cmd_restore(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify")) return cmd_backup_verify(argc - 1, argv + 1);
    if (!strcmp(cmd, "prune")) return cmd_prune(argc - 1, argv + 1);
    cli_errorf("unknown command '%s' (see `pdsmove --help`)", cmd);
    return EXIT_USAGE;
}
