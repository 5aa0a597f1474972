/* test_backup_names.c — the grammar of names read from a backup directory: what pdsmove writes
 * is accepted, anything that could become a path outside the backup (or is not canonical) is
 * refused with a message naming the entry. */
#include <criterion/criterion.h>
#include <string.h>

#include "pdsmove/backup_names.h"

#define DID "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
#define ID "did_plc_ewvi7nxzyoun6zhxrhs64oiz-20261125T214500Z"
#define BLOB "bafkreicwo6nmblvtjkv2s62fu5jx3anyff3laodzcxkgxq3d3xtcoht5d4"
#define COMMIT "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"

Test(backup_names, ids_pdsmove_writes_are_accepted) {
    cr_assert(backup_name_snapshot_id(ID, DID, NULL));
    cr_assert(backup_name_snapshot_id(ID, NULL, NULL));
    cr_assert(backup_name_snapshot_id(ID "-02", DID, NULL));
    cr_assert(backup_name_snapshot_id(ID "-99", NULL, NULL));
    cr_assert(backup_name_snapshot_id(ID "-2", DID, NULL), "as pdsmove wrote it before the run numbers had two digits");
    cr_assert(backup_name_snapshot_id(ID "-100", DID, NULL));
    cr_assert(backup_name_snapshot_id("did_web_localhost%3A2583-20261125T214500Z", "did:web:localhost%3A2583", NULL));
    cr_assert(backup_name_snapshot_id("did_web_example.com-20261125T214500Z", NULL, NULL));
}

Test(backup_names, hostile_ids_are_refused_naming_the_entry) {
    static const char *const bad[] = {
        "../../../../tmp/x", "", ".", "..", "/tmp/x", ID "/..", "did_plc_x/../../y-20261125T214500Z",
        "did_plc_x-20261125T214500Z-01", "did_plc_x-20261325T214500Z", "did_plc_x-20261125T214500", "x-20261125T214500Z",
        "did__x-20261125T214500Z", "did_plc_-20261125T214500Z", "did_PLC_x-20261125T214500Z", "did_plc_a b-20261125T214500Z",
        "did_plc_x\n-20261125T214500Z", ID "-101", ID "-1", ID "-01", ID "-099", ID "-0002", ID "-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t e = {0};
        cr_assert_not(backup_name_snapshot_id(bad[i], NULL, &e), "'%s' must be refused", bad[i]);
        cr_assert_eq(e.code, ERR_INVALID);
        cr_assert(strstr(e.msg, "snapshot id"), "%s", e.msg);
    }
    err_t e = {0};
    cr_assert_not(backup_name_snapshot_id("../../../../tmp/x", DID, &e));
    cr_assert(strstr(e.msg, "'../../../../tmp/x'"), "the message names the entry: %s", e.msg);
    /* of another account */
    cr_assert_not(backup_name_snapshot_id("did_plc_aaaaaaaaaaaaaaaaaaaaaaaa-20261125T214500Z", DID, &e));
    cr_assert(strstr(e.msg, "does not belong"), "%s", e.msg);
    /* a long id */
    char longid[400];
    memset(longid, 'a', sizeof longid);
    memcpy(longid, "did_plc_", 8);
    strcpy(longid + 300, "-20261125T214500Z");
    cr_assert_not(backup_name_snapshot_id(longid, NULL, &e));
    cr_assert(strstr(e.msg, "too long"), "%s", e.msg);
}

Test(backup_names, archive_names_are_plain) {
    cr_assert(backup_name_archive(ID "-full.tar.zst", NULL));
    cr_assert(backup_name_archive(ID "-02-incr.tar.gz", NULL));
    static const char *const bad[] = {"", ".hidden.tar.zst", "../x.tar.zst", "a/b.tar.zst", "x.tar", "x.tar.zst/", "x y.tar.zst",
                                      ".tar.zst", "x\x1b[2J.tar.zst"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t e = {0};
        cr_assert_not(backup_name_archive(bad[i], &e), "'%s' must be refused", bad[i]);
        cr_assert(strstr(e.msg, "archive name"), "%s", e.msg);
        cr_assert_null(strchr(e.msg, '\x1b'), "no terminal escapes in the message");
    }
}

Test(backup_names, cids_must_round_trip) {
    cr_assert(backup_name_cid(BLOB, true, NULL));
    cr_assert(backup_name_cid(COMMIT, false, NULL));
    err_t e = {0};
    cr_assert_not(backup_name_cid(COMMIT, true, &e), "a dag-cbor CID is not a blob");
    cr_assert(strstr(e.msg, "raw"), "%s", e.msg);
    static const char *const bad[] = {"", "../../../../home/alice/.ssh/id_ed25519", "BAFKREICWO6NMBLVTJKV2S62FU5JX3ANYFF3LAODZCXKGXQ3D3XTCOHT5D4",
                                      BLOB "a", BLOB "/", "bafkrei", "zQmWvQxTqbG2Z9HPJgG57jjwR154cKhbtJenbyYTWkjgF3e"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(backup_name_cid(bad[i], true, &e), "'%s' must be refused", bad[i]);
        cr_assert(strstr(e.msg, "blob CID"), "%s", e.msg);
    }
}

Test(backup_names, quote_keeps_messages_printable_and_short) {
    char q[BACKUP_NAME_QUOTE_MAX], big[300];
    cr_assert_str_eq(backup_name_quote("a\x1b[31mb\n", q), "a?[31mb?");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    backup_name_quote(big, q);
    cr_assert_eq(strlen(q), BACKUP_NAME_QUOTE_MAX - 1);
    cr_assert(strstr(q, "...") == q + BACKUP_NAME_QUOTE_MAX - 4);
}
