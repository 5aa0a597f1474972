/* plc.h — did:plc operations (build, DAG-CBOR encode, sign, verify, CID, genesis DID) and
 * validation of a whole audit log (/<did>/log/audit) into the resulting identity state,
 * following the reference rules (did-method-plc, go-didplc): prev chain, signature authority,
 * 72-hour recovery by a higher-priority rotation key, nullified ops, tombstones.
 * Pure encoding layer: no I/O, no printing. Every plc_op owns its strings (plc_op_free). */
#ifndef PDSMOVE_PLC_H
#define PDSMOVE_PLC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "pdsmove/buf.h"
#include "pdsmove/cid.h"
#include "pdsmove/err.h"
#include "pdsmove/keys.h"

#define PLC_DID_PREFIX "did:plc:"
#define PLC_DID_SUFFIX_LEN 24
#define PLC_DID_MAX 33                 /* "did:plc:" + 24 + NUL */
#define PLC_SIG_BYTES 64               /* compact r||s */
#define PLC_RECOVERY_WINDOW_MS ((int64_t)72 * 3600 * 1000)

/* Hard limits when READING ops (historical ops were accepted by the directory before its
 * current limits existed, so these are generous; they only bound memory). */
#define PLC_MAX_LIST 64                /* rotationKeys, alsoKnownAs, services, methods */
#define PLC_MAX_STR_BYTES 8192         /* any one string in an op */
#define PLC_LOG_MAX_OPS 100000         /* entries in one audit log */

/* The directory's limits on NEW ops (did-method-plc server constraints); plc_op_sign and
 * plc_op_check_directory_limits apply them. */
#define PLC_DIR_MAX_OP_BYTES 4000      /* DAG-CBOR of the signed op */
#define PLC_DIR_MAX_ENTRIES 10         /* per list/map */
#define PLC_DIR_MAX_AKA_LEN 258
#define PLC_DIR_MAX_SERVICE_TYPE_LEN 256
#define PLC_DIR_MAX_ENDPOINT_LEN 512
#define PLC_DIR_MAX_ID_LEN 32          /* service / verification method names */
#define PLC_DIR_MAX_DID_KEY_LEN 256
/* The PLC spec's limit on rotation keys (the directory itself allows PLC_DIR_MAX_ENTRIES):
 * no operation pdsmove builds adds keys beyond it. */
#define PLC_SPEC_MAX_ROTATION_KEYS 5

typedef enum {
    PLC_OP_REGULAR = 1,      /* "plc_operation" */
    PLC_OP_TOMBSTONE = 2,    /* "plc_tombstone" */
    PLC_OP_LEGACY_CREATE = 3 /* "create" (2022 genesis format) */
} plc_op_type;

typedef struct {
    char *name; /* "atproto" */
    char *key;  /* "did:key:z…" */
} plc_vmethod;

typedef struct {
    char *name;     /* "atproto_pds" */
    char *type;     /* "AtprotoPersonalDataServer" */
    char *endpoint; /* "https://…" */
} plc_service;

typedef struct {
    plc_op_type type;
    /* PLC_OP_REGULAR (lists keep the op's order; rotation key 0 has the highest priority) */
    char **rotation_keys;
    size_t n_rotation_keys;
    plc_vmethod *vmethods;
    size_t n_vmethods;
    char **also_known_as;
    size_t n_also_known_as;
    plc_service *services;
    size_t n_services;
    /* PLC_OP_LEGACY_CREATE */
    char *signing_key;
    char *recovery_key;
    char *handle;
    char *service;
    /* all types */
    char *prev; /* CID string of the previous op; NULL = genesis (never NULL for a tombstone) */
    char *sig;  /* base64url, no padding; NULL = unsigned */
} plc_op;

/* ---- lifecycle and building ---- */
void plc_op_init(plc_op *op, plc_op_type type); /* empty op of that type */
void plc_op_free(plc_op *op);                   /* frees all strings; op is re-initialised */
err_code plc_op_copy(plc_op *dst, const plc_op *src, err_t *e); /* dst must be free/initialised */
/* Appends; ERR_LIMIT beyond PLC_MAX_LIST. Strings are copied. */
err_code plc_op_add_rotation_key(plc_op *op, const char *did_key, err_t *e);
err_code plc_op_add_also_known_as(plc_op *op, const char *uri, err_t *e);
/* Insert or replace by name. */
err_code plc_op_set_vmethod(plc_op *op, const char *name, const char *did_key, err_t *e);
err_code plc_op_set_service(plc_op *op, const char *name, const char *type, const char *endpoint, err_t *e);
/* prev_cid NULL makes a genesis op; otherwise it must parse as a CID. Clears sig. */
err_code plc_op_set_prev(plc_op *op, const char *prev_cid, err_t *e);

/* ---- JSON (the op object as the directory serves it) ---- */
/* Strict: known fields only, right JSON types, within the PLC_MAX_* limits. out must not hold
 * an op (it is initialised here); on error it is left empty. */
err_code plc_op_from_json(plc_op *out, const json_t *json, err_t *e);
/* New reference (caller json_decref()s); sig omitted when unsigned. NULL + e on failure. */
json_t *plc_op_to_json(const plc_op *op, err_t *e);

/* ---- DAG-CBOR, CID, DID ---- */
/* The op without "sig" (what is signed) / with it (what is hashed), appended to out. */
err_code plc_op_encode_unsigned(const plc_op *op, buf_t *out, err_t *e);
err_code plc_op_encode_signed(const plc_op *op, buf_t *out, err_t *e);
/* CIDv1 dag-cbor sha2-256 of the signed op. ERR_USAGE when unsigned. */
err_code plc_op_cid(const plc_op *op, cid_t *out, err_t *e);
err_code plc_op_cid_str(const plc_op *op, char out[CID_STR_MAX], err_t *e);
/* "did:plc:" + first 24 chars of base32(sha256(signed genesis op)). ERR_USAGE when the op is
 * not a signed genesis op. */
err_code plc_op_genesis_did(const plc_op *op, char out[PLC_DID_MAX], err_t *e);
/* True for "did:plc:" followed by exactly 24 base32 lower-case characters. */
bool plc_did_is_valid(const char *did);

/* ---- signatures ---- */
/* Signs the DAG-CBOR of the op without sig (low-S, base64url without padding); a regular or
 * tombstone op must first pass plc_op_check_directory_limits. */
err_code plc_op_sign(plc_op *op, const key_priv *k, err_t *e);
/* ERR_OK when sig is a strict base64url, 64-byte, low-S signature by did_key over the unsigned
 * op; ERR_MISMATCH for a wrong key/signature; ERR_INVALID for a malformed sig or key. */
err_code plc_op_verify_sig(const plc_op *op, const char *did_key, err_t *e);
/* Tries keys[0..n) in order; *index = the first that verifies. ERR_MISMATCH when none does
 * (or n == 0); ERR_INVALID for a malformed sig or an unparseable key met before a match. */
err_code plc_op_find_signer(const plc_op *op, const char *const *keys, size_t n, size_t *index, err_t *e);

/* ---- views ---- */
/* The keys that may sign the NEXT op: rotationKeys, [recoveryKey, signingKey] for a legacy
 * create, none for a tombstone. Borrowed pointers into op; returns the count (<= out_max). */
size_t plc_op_rotation_keys(const plc_op *op, const char **out, size_t out_max);
/* A regular op equal in meaning to src (legacy create: rotationKeys [recoveryKey,
 * signingKey], verificationMethods {atproto: signingKey}, alsoKnownAs [at://handle],
 * services {atproto_pds: {AtprotoPersonalDataServer, service}}); sig and prev are kept.
 * ERR_INVALID for a tombstone. */
err_code plc_op_normalize(const plc_op *src, plc_op *dst, err_t *e);
const char *plc_op_vmethod(const plc_op *op, const char *name);          /* did:key or NULL */
const plc_service *plc_op_service(const plc_op *op, const char *name);   /* NULL if absent */
const char *plc_op_handle(const plc_op *op); /* first alsoKnownAs "at://x" → "x", or NULL */
/* The directory's limits for new ops (sizes, counts, lengths, duplicate alsoKnownAs). */
err_code plc_op_check_directory_limits(const plc_op *op, err_t *e);

/* ---- comparison ---- */
#define PLC_DIFF_TYPE 0x01u
#define PLC_DIFF_ROTATION_KEYS 0x02u  /* a key missing, added, or the order changed */
#define PLC_DIFF_VMETHODS 0x04u
#define PLC_DIFF_ALSO_KNOWN_AS 0x08u
#define PLC_DIFF_SERVICES 0x10u
#define PLC_DIFF_LEGACY 0x20u         /* signingKey, recoveryKey, handle, service of a legacy create */
#define PLC_DIFF_PREV 0x40u
/* Field by field, everything but sig: type, rotationKeys (in order), verificationMethods,
 * alsoKnownAs (in order), services, the legacy fields, prev. Returns 0 when want and got say
 * the same, else the PLC_DIFF_* bits that differ, with every difference described in out
 * ("rotationKeys: did:key:… (expected at #0) is missing; services.x (T E) was added"),
 * truncated to size. */
unsigned plc_op_diff(const plc_op *want, const plc_op *got, char *out, size_t size);

/* ---- audit log ---- */
typedef struct {
    char did[PLC_DID_MAX];
    bool tombstoned;       /* the chain ends in a (non-nullified) tombstone */
    plc_op op;             /* head op normalised to a regular op; empty when tombstoned */
    char last_cid[CID_STR_MAX];   /* CID of the head op (the tombstone when tombstoned) */
    char last_created_at[40];
    size_t head_index;     /* index in the log of the head op */
    size_t n_ops;          /* entries in the log */
    size_t n_nullified;
} plc_state;

void plc_state_init(plc_state *s);
void plc_state_free(plc_state *s);

/* Validates an audit log: a JSON array of {did, operation, cid, nullified, createdAt} in the
 * directory's order. On success fills out (caller plc_state_free()s it). On failure returns
 * the error, sets *bad_index to the index of the first bad entry (SIZE_MAX when the log as a
 * whole is malformed, e.g. not an array or empty) and e names that index and the reason.
 * expected_did (may be NULL) must equal every entry's did. */
err_code plc_log_validate(const json_t *log, const char *expected_did, plc_state *out,
                          size_t *bad_index, err_t *e);
/* Checks one log entry in isolation (like go-didplc's LogEntry.Validate): operation parses,
 * its CID equals "cid", it is signed, and a genesis op yields "did" and is signed by one of
 * its own rotation keys. */
err_code plc_log_entry_check(const json_t *entry, err_t *e);
/* RFC 3339 date-time ("2023-04-12T04:53:57.057Z", offsets allowed) → ms since the epoch
 * (sub-millisecond digits are truncated). */
err_code plc_parse_datetime(const char *s, int64_t *ms, err_t *e);

#endif
