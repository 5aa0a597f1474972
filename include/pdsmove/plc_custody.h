/* plc_custody.h — keeping control of a did:plc identity: its history in a form a person can
 * check (show), noticing operations no pdsmove run made (watch), putting the user's own key
 * first in rotationKeys through the PDS's email-token flow (add-rotation-key), and undoing an
 * unwanted operation within 72 hours with that key (recover). No printing: results are values,
 * questions and notes go through plc_custody_ui. Private keys are read, used and wiped here;
 * only their did:key ever leaves. */
#ifndef PDSMOVE_PLC_CUSTODY_H
#define PDSMOVE_PLC_CUSTODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"
#include "pdsmove/identity.h"
#include "pdsmove/keys.h"
#include "pdsmove/plc.h"
#include "pdsmove/xrpc.h"

#define PLC_CHANGE_MAX 2048                  /* one op's change description */
#define PLC_WATCH_EXPECTED_MAX 64            /* CIDs kept in a watch state file's "expected" */
#define PLC_WATCH_STATE_MAX_BYTES ((size_t)16 << 20)
#define PLC_WATCH_STATE_VERSION 1

typedef struct {
    void *ctx;
    void (*info)(void *ctx, const char *msg);                                   /* may be NULL */
    bool (*confirm)(void *ctx, const char *summary);                            /* NULL = yes */
    bool (*ask_secret)(void *ctx, const char *prompt, char *out, size_t size);  /* may be NULL */
    xrpc_wait_fn wait;                                                          /* may be NULL */
} plc_custody_ui;

/* ---- history: the audit log, validated, with what each op changed ---- */

typedef struct {
    char cid[CID_STR_MAX];
    char created_at[40];
    int64_t created_ms;
    bool nullified;
    bool tombstone;
    size_t prev;    /* index of the op it builds on; SIZE_MAX for the genesis */
    size_t signer;  /* index of its signer among prev's rotation keys; SIZE_MAX for the genesis */
    size_t undoes;  /* a recovery (fork): the first op that also built on prev; SIZE_MAX otherwise */
    plc_op op;      /* normalised to a regular op (a tombstone stays a tombstone) */
} plc_hist_entry;

typedef struct {
    plc_state state;      /* what plc_log_validate made of the log */
    plc_hist_entry *ent;  /* in log order */
    size_t n;
} plc_history;

void plc_history_init(plc_history *h);
void plc_history_free(plc_history *h);
/* Validates log (plc_log_validate; *bad_index as there, may be NULL) and fills h. */
err_code plc_history_from_log(const json_t *log, const char *did, plc_history *h, size_t *bad_index, err_t *e);
/* Reads <plc_url>/<did>/log/audit and fills h; the raw log too when log_out is non-NULL. */
err_code plc_history_fetch(const char *plc_url, const char *did, const xrpc_options *xo, plc_history *h, json_t **log_out,
                           err_t *e);
size_t plc_history_find(const plc_history *h, const char *cid);  /* index or SIZE_MAX */
/* The non-nullified op built on op i (the chain goes on through it); SIZE_MAX if none. */
size_t plc_history_child(const plc_history *h, size_t i);
/* What `after` changed relative to `before` (NULL: after is a genesis op), one line:
 * "rotation key added at #0 did:key:…; PDS moved A -> B; handle changed a -> b". */
void plc_describe_change(const plc_op *before, const plc_op *after, char *out, size_t size);
/* The same for entry i of h. */
void plc_history_describe(const plc_history *h, size_t i, char *out, size_t size);
/* "2025-06-15T12:00:00.000Z" for ms since the epoch (UTC). */
void plc_format_time(int64_t ms, char *out, size_t size);

/* handle or DID → DID document; refuses anything but a did:plc (only those have a PLC log). */
err_code plc_custody_resolve(const char *account, const char *plc_url, const char *via_pds, const xrpc_options *xo,
                             identity_doc *out, err_t *e);

/* ---- watch ---- */

typedef enum {
    PLC_WATCH_FIRST_RUN = 1,   /* nothing was recorded: the log's ops are now */
    PLC_WATCH_UNCHANGED,       /* no new ops */
    PLC_WATCH_EXPECTED,        /* new ops, each expected (made by pdsmove) or already nullified */
    PLC_WATCH_UNEXPECTED,      /* at least one new, not nullified op nobody expected */
    PLC_WATCH_INCONSISTENT     /* the log does not validate, or lost ops the state file recorded */
} plc_watch_outcome;

typedef struct {
    size_t index;   /* in the history */
    bool expected;  /* its CID was in the state file's "expected" list */
} plc_watch_op;

typedef struct {
    plc_watch_outcome outcome;
    char did[PLC_DID_MAX];
    plc_history h;            /* the log as it is now (empty for PLC_WATCH_INCONSISTENT) */
    size_t n_recorded;        /* ops the state file knew */
    plc_watch_op *ops;        /* the ops it did not know, in log order */
    size_t n_ops;
    /* PLC_WATCH_UNEXPECTED: the first unexpected op on the current chain, and how to undo it */
    size_t first_bad;         /* history index; SIZE_MAX when every unexpected op is nullified */
    size_t fork;              /* the op it builds on: `plc recover --to-before <its CID>` */
    int64_t deadline_ms;      /* first_bad's createdAt + 72 h: last moment a recovery is accepted */
    bool recoverable;         /* now <= deadline and a key of higher priority than its signer exists */
    char detail[ERR_MSG_MAX]; /* PLC_WATCH_INCONSISTENT: what is wrong */
    bool saved;               /* the state file was (re)written */
} plc_watch_result;

void plc_watch_result_free(plc_watch_result *r);

/* The watch logic without I/O. state: the state file's JSON (NULL = none yet). Fills r (h is
 * copied out of *h: h is left empty). now_ms decides `recoverable`. */
err_code plc_watch_compare(const json_t *state, plc_history *h, int64_t now_ms, plc_watch_result *r, err_t *e);

/* Reads the state file (JSON object) into *out; *out = NULL when the file does not exist. */
err_code plc_watch_load(const char *path, json_t **out, err_t *e);
/* Writes state to path atomically (a temporary file in the same directory, fsync, rename),
 * mode 0600. */
err_code plc_watch_save(const char *path, const json_t *state, err_t *e);

/* One watch run: fetch the log of did, compare with the state file, and record the new head
 * in it unless an unexpected op (or an inconsistency) is found — or always, with accept.
 * ERR_* only when the check could not be made (network, unreadable state file, a state file
 * for another DID); every finding is in r->outcome. */
err_code plc_watch_run(const char *state_file, const char *did, const char *plc_url, const xrpc_options *xo, bool accept,
                       plc_watch_result *r, err_t *e);

/* Notes that op `cid` was made by pdsmove, so the next watch run with state_file accepts it.
 * Call it once the op is signed and before it is submitted (a watch run in between must not
 * see it as foreign); a CID that never appears is harmless (the list keeps the newest 64).
 * Creates the file (with an empty record) if it does not exist and create is true; otherwise a
 * missing file is not an error (nothing watches). Serialised with watch runs by a lock file
 * next to it (<state_file>.lock). */
err_code plc_watch_expect(const char *state_file, const char *cid, bool create, err_t *e);
/* For migrate: notes signed_op (an op's JSON) as expected in state_file, or, when state_file is
 * NULL, in did's default state file (plc_watch_default_path) if that file exists. ERR_NOT_FOUND
 * when there is no such file (nothing watches did there). */
err_code plc_watch_expect_op(const char *state_file, const char *did, const json_t *signed_op, err_t *e);
/* <state dir>/plc-watch/<did>.json, with the state directory found as the CLI finds it:
 * $PDSMOVE_STATE_DIR, else $XDG_STATE_HOME/pdsmove, else ~/.local/state/pdsmove. 0 if too long. */
size_t plc_watch_default_path(const char *did, char *out, size_t size);

/* ---- add-rotation-key ---- */

/* The next op: the current state with did_key first in rotationKeys (moved there if listed
 * further down), everything else kept, prev = the head. *already_first (out left empty) when
 * it is first already; ERR_LIMIT beyond PLC_SPEC_MAX_ROTATION_KEYS keys (plc_submit_build). */
err_code plc_build_add_key_op(const plc_state *st, const char *did_key, plc_op *out, bool *already_first, err_t *e);
/* plc_submit_check against st's head: a signed op (JSON, from a PDS) must be well formed,
 * signed by one of st's rotation keys, and equal target field by field (prev included).
 * *cid_out (if non-NULL) = its CID. */
err_code plc_check_signed_op(const json_t *signed_op, const plc_state *st, const plc_op *target, char *cid_out, err_t *e);

typedef struct {
    const char *account;            /* handle or DID */
    const char *pds_url;            /* the PDS to log in to (NULL: the DID document's); also resolves handles */
    const char *plc_url;            /* NULL: https://plc.directory */
    const char *password;           /* the account's real password (secret) */
    const char *auth_factor_token;  /* email 2FA code, if known upfront */
    const char *key_file;           /* private key file: only its did:key is used */
    const char *plc_token_file;
    const char *plc_token_db;
    const char *watch_state;        /* note the op as expected here (NULL: nowhere) */
    bool yes;                       /* no confirmation */
    bool allow_insecure_http;
    plc_custody_ui ui;
} plc_add_key_opts;

typedef struct {
    char did[PLC_DID_MAX];
    char did_key[KEY_DID_MAX];
    char pds[IDENTITY_URL_MAX];
    bool already_first;             /* nothing was done */
    char op_cid[CID_STR_MAX];       /* the op submitted */
    size_t n_rotation_keys;         /* after */
    bool watch_noted;
    char watch_note[ERR_MSG_MAX];   /* why noting it as expected failed, "" if it did not */
} plc_add_key_report;

err_code plc_add_rotation_key(const plc_add_key_opts *o, plc_add_key_report *r, err_t *e);

/* ---- recover ---- */

typedef struct {
    size_t fork;          /* history index of the op to fork at (--to-before) */
    size_t first_undone;  /* its current child: the first op the recovery nullifies */
    size_t n_undone;      /* ops the recovery nullifies */
    size_t key_index;     /* the user's key among the fork's rotation keys */
    size_t signer_index;  /* first_undone's signer among them (the recovery needs key_index < this) */
    int64_t deadline_ms;  /* first_undone's createdAt + 72 h */
} plc_recover_plan;

/* Checks that did_key can undo everything after fork_cid at now_ms, and builds the unsigned
 * recovery op (the fork's content, prev = fork_cid) into *out. Each refusal says why. */
err_code plc_recover_prepare(const plc_history *h, const char *fork_cid, const char *did_key, int64_t now_ms,
                             plc_op *out, plc_recover_plan *plan, err_t *e);
/* Appends the signed op to a copy of log (created at max(now_ms, head + 1 ms), the undone
 * ops flagged nullified) and validates the result: ERR_OK when the directory's rules would
 * accept it and make it the head. */
err_code plc_recover_simulate(const json_t *log, const char *did, const plc_op *signed_op, const plc_recover_plan *plan,
                              int64_t now_ms, err_t *e);

typedef struct {
    const char *account;
    const char *via_pds;       /* resolves a handle (NULL: DNS/HTTPS only) */
    const char *plc_url;
    const char *key_file;      /* the user's private rotation key */
    const char *to_before;     /* CID of the last good op */
    const char *watch_state;   /* note the recovery op as expected here (NULL: nowhere) */
    bool yes;
    bool allow_insecure_http;
    int64_t now_ms;            /* 0: the clock (tests pass a time) */
    plc_custody_ui ui;
} plc_recover_opts;

typedef struct {
    char did[PLC_DID_MAX];
    char did_key[KEY_DID_MAX];
    plc_recover_plan plan;
    char fork_cid[CID_STR_MAX];
    char op_cid[CID_STR_MAX];     /* the recovery op */
    size_t n_nullified;           /* ops the directory now shows nullified after the fork */
    bool watch_noted;
    char watch_note[ERR_MSG_MAX];
} plc_recover_report;

err_code plc_recover(const plc_recover_opts *o, plc_recover_report *r, err_t *e);

#endif
