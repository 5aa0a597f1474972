/* restore.h — bringing an account back on a new PDS from a backup directory when its old PDS
 * is gone: the user's own rotation key signs one PLC operation pointing the DID at the new PDS
 * with a temporary signing key; pdsmove mints the createAccount service-auth token with that
 * key, creates the account, then a second operation installs the new PDS's recommended
 * credentials (the user's key kept first); then import, blobs, preferences, activate, verify —
 * from the assembled snapshot (backup_assemble), journaled and resumable like migrate. */
#ifndef PDSMOVE_RESTORE_H
#define PDSMOVE_RESTORE_H

#include <stdbool.h>
#include "pdsmove/backup.h"
#include "pdsmove/backup_index.h"
#include "pdsmove/err.h"
#include "pdsmove/keys.h"
#include "pdsmove/journal.h"
#include "pdsmove/migrate.h"

typedef struct {
    const char *dir;                /* backup directory */
    const char *snapshot_id;        /* NULL: the newest snapshot of `did` */
    const char *did;                /* needed when snapshot_id is NULL */
    const char *to_url;
    const char *rotation_key_file;  /* required: a key in the DID's rotation keys */
    const char *new_handle;         /* default: <first label>.<new PDS domain> */
    const char *new_password;       /* secret */
    const char *new_email;          /* required (the snapshot holds no email) */
    const char *invite_code;
    const char *admin_password;     /* new PDS admin password: mint the invite code (secret) */
    const char *plc_url;
    const char *work_dir;
    const char *watch_state;        /* `plc watch` state file to note both PLC operations in (NULL:
                                     * the account's default one, if it exists) */
    int jobs;
    bool yes;
    bool allow_insecure_http;
    const char *new_pds_bypass_key; /* the new PDS's PDS_RATE_LIMIT_BYPASS_KEY (secret), sent to it only */
    bool wait_for_limits;           /* wait out a daily rate limit instead of stopping (ERR_RATELIMIT) */
    journal *j;
    migrate_ui ui;
} restore_opts;

typedef struct {
    char did[256];
    char handle[256];
    char snapshot_id[BACKUP_ID_MAX];
    long long records, blobs;
    bool already_done; /* the journal has this snapshot's restore finished: nothing was done */
} restore_report;

err_code restore_run(const restore_opts *o, restore_report *r, err_t *e);

/* The one account the backup (its index idx, directory dir) holds snapshots of, into out:
 * ERR_USAGE when it holds several (then --did or --snapshot must say which). */
err_code restore_only_did(backup_index *idx, const char *dir, char *out, size_t size, err_t *e);

/* A service-auth JWT (ES256K/ES256) signed with k: iss, aud, lxm, iat, exp = now + ttl_s, jti.
 * Written NUL-terminated into out. */
err_code restore_service_auth_jwt(const key_priv *k, const char *iss, const char *aud, const char *lxm, long ttl_s, char *out,
                                  size_t out_size, err_t *e);

#endif
