/* migrate_internal.h — state shared by the migrate pipeline's files (migrate.c,
 * identity_update.c, migrate_verify.c). Not a public header. */
#ifndef PDSMOVE_MIGRATE_INTERNAL_H
#define PDSMOVE_MIGRATE_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "pdsmove/identity.h"
#include "pdsmove/journal.h"
#include "pdsmove/migrate.h"
#include "pdsmove/pds.h"
#include "pdsmove/repo.h"

#define MIG_MAX_TIMERS 24

typedef struct {
    const migrate_opts *o;
    struct { char step[32]; double started; } timers[MIG_MAX_TIMERS];
    size_t n_timers;
    migrate_report *rep;
    journal_run run;
    identity_doc id;          /* the account's DID document as it is now */
    bool resuming;            /* an unfinished run of this account was found in the journal */
    bool already_done;        /* a finished run in the journal moved it to --to: nothing to do */
    char done_did[256];       /* a finished migration of this ACCOUNT argument moved this DID */
    char done_to[512];        /* ... to this PDS */
    key_pub old_signing_pub;  /* the atproto key before the move (verifies the exported commit) */
    char old_domain[256];     /* the old PDS's handle domain */
    json_t *doc;
    char old_url[512];
    pds_session *old;
    pds_session *neu;
    char new_service_did[256];
    char new_domain[256];
    bool invite_required, phone_required;
    uint64_t upload_limit;
    long long limit_reset_s;  /* a long rate limit stopped the run: when it resets (0 unknown) */
    xrpc_ratelimit new_rl;    /* the new PDS's rate-limit headers on describeServer (preflight) */
    char wanted_handle[256];  /* the handle the user ends up with */
    char create_handle[256];  /* the handle createAccount gets (under the new PDS's domain) */
    char email[320];
    char work[1024];
    char snap[1100];          /* the local snapshot (snapshot.h layout) */
    char car_path[1100];
    char blob_dir[1100];
    int64_t blobs_reported;
    int blob_phase;           /* journal_blob_phase of the loop running now (for progress) */
    bool repo_prechecked;     /* the new PDS's repo was checked while the blobs uploaded */
    repo_summary precheck_sum;   /* last count shown, to print progress only when it moves */
    struct pack_job_ *pack;      /* the safety archive being packed in the background (migrate.c) */
    struct prefetch_job_ *prefetch; /* getRepo started during preflight (migrate.c) */
    pthread_t pack_th;
} mctx;

void mig_info(mctx *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
err_code mig_step_done(mctx *m, const char *step, const char *detail, err_t *e);
/* records the failure (e->msg) in the journal and returns e->code */
err_code mig_step_failed(mctx *m, const char *step, err_t *e);
/* true when the journal says step is done; otherwise marks it running */
bool mig_skip_done(mctx *m, const char *step);
xrpc_options mig_xrpc_options(const mctx *m);
/* the same for a client of the new PDS: with the rate-limit bypass key, if given */
xrpc_options mig_xrpc_options_new(const mctx *m);

/* the keys the exported commit may be signed by (at most 2): the old signing key, and the
 * one in a backup snapshot's DID document (migrate.c) */
size_t mig_export_keys(const mctx *m, key_pub *keys);
/* identity_update.c */
err_code mig_check_rotation_key(mctx *m, err_t *e);
err_code mig_update_identity(mctx *m, err_t *e);
/* migrate_verify.c */
err_code mig_verify(mctx *m, err_t *e);
/* getRepo on c, verified (signed by one of keys), its records equal to the export's, its MST
 * root want_root (if given). Thread-safe with respect to the journal: it touches none. */
err_code mig_check_new_repo(const mctx *m, xrpc_client *c, const key_pub *keys, size_t n_keys, const char *want_root,
                            repo_summary *sum, err_t *e);

#endif
