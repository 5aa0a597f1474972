/* plc_submit.h — the one path every PLC operation pdsmove makes goes through (migrate's
 * identity step, restore's two operations, `plc add-rotation-key`, `plc recover`): one builder
 * (the next operation from a base operation and a described change), one checker (a signed
 * operation is acceptable only if it equals, field by field, the unsigned one pdsmove built,
 * and its signature verifies against a key of the state it follows), local signing, the
 * journal copy of a signed operation, and one poster (the PLC directory or a PDS's
 * submitPlcOperation) that checks again right before it sends. No printing. */
#ifndef PDSMOVE_PLC_SUBMIT_H
#define PDSMOVE_PLC_SUBMIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"
#include "pdsmove/journal.h"
#include "pdsmove/keys.h"
#include "pdsmove/pds.h"
#include "pdsmove/plc.h"
#include "pdsmove/xrpc.h"

/* What the next operation changes relative to its base; NULL / 0 = kept as it is. */
typedef struct {
    const char *const *first_keys; /* rotation keys put first, in this order (the user's) */
    size_t n_first_keys;
    const char *const *drop_keys;  /* rotation keys removed (the old PDS's) */
    size_t n_drop_keys;
    const char *const *last_keys;  /* rotation keys put last (the new PDS's) */
    size_t n_last_keys;
    const char *handle;            /* at://handle first in alsoKnownAs; other at:// entries dropped, the rest kept */
    const char *signing_key;       /* verificationMethods.atproto */
    const char *pds_endpoint;      /* services.atproto_pds (type AtprotoPersonalDataServer) */
} plc_change;

/* A PDS's getRecommendedDidCredentials answer as a change (the rest of c is cleared): its
 * rotation keys last (keys has PLC_MAX_LIST slots; strings borrowed from rec), its atproto
 * signing key and atproto_pds endpoint. ERR_REMOTE when it names no signing key or endpoint. */
err_code plc_change_recommended(const json_t *rec, const char **keys, plc_change *c, err_t *e);
/* Only the rotation keys of such an answer (none when rec is NULL); returns the count. */
size_t plc_recommended_keys(const json_t *rec, const char **keys);

/* The next operation: base's content with change applied, prev = prev_cid, unsigned, within
 * the directory's limits. Rotation keys: first_keys, then base's keys that are in none of the
 * three lists (their order kept), then last_keys; a change that touches the rotation keys
 * must leave at most PLC_SPEC_MAX_ROTATION_KEYS (ERR_LIMIT naming did otherwise). out is
 * initialised here and left empty on error. */
err_code plc_submit_build(const plc_op *base, const char *prev_cid, const plc_change *change, const char *did, plc_op *out,
                          err_t *e);

/* signed_op (JSON: from a PDS, the journal, or signed here) is acceptable only if it is a
 * well-formed regular operation that equals target in every field but sig (plc_op_diff:
 * rotation keys in order, verification methods, services, alsoKnownAs, prev), whose strict,
 * low-S signature verifies with a rotation key of authority (the operation it follows), and
 * that is within the directory's limits. ERR_MISMATCH with the differences in e (ERR_CONFLICT
 * when only prev differs: the identity changed meanwhile). *signer (may be NULL) = the
 * signer's index in authority's rotation keys; cid_out (may be NULL) = its CID. */
err_code plc_submit_check(const json_t *signed_op, const plc_op *target, const plc_op *authority, size_t *signer,
                          char *cid_out, err_t *e);

/* Signs a copy of target with k; *signed_op (owned by the caller) is its JSON. */
err_code plc_submit_sign(const plc_op *target, const key_priv *k, json_t **signed_op, err_t *e);

/* Saves signed_op in the journal (run, key) before it is submitted, so a re-run can find it. */
err_code plc_submit_save(journal *j, int64_t run_id, const char *key, const json_t *signed_op, err_t *e);
/* The operation saved under (run, key), if there is one and it still passes plc_submit_check
 * against what this run built; NULL otherwise, with why (may be NULL) saying what is
 * different (why->code ERR_NOT_FOUND when nothing was saved). */
json_t *plc_submit_saved(journal *j, int64_t run_id, const char *key, const plc_op *target, const plc_op *authority,
                         err_t *why);

/* Where an operation is posted. */
typedef struct {
    const char *did;
    const char *plc_url;     /* POST <plc_url>/<did> (NULL: https://plc.directory) ... */
    const xrpc_options *xo;
    pds_session *via;        /* ... or, when set, com.atproto.identity.submitPlcOperation on this PDS */
    const char *via_name;    /* how messages name it ("the new PDS") */
} plc_submit_to;

/* Checks signed_op once more (plc_submit_check: nothing unchecked is ever sent) and posts it. */
err_code plc_submit_post(const plc_submit_to *to, const json_t *signed_op, const plc_op *target, const plc_op *authority,
                         err_t *e);

#endif
