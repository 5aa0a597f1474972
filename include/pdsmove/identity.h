/* identity.h — who an account is and where it lives: handle → DID (DNS TXT `_atproto`,
 * HTTPS `/.well-known/atproto-did`, or a PDS's resolveHandle), DID → DID document (did:plc
 * through a PLC directory, did:web), and the document's PDS endpoint, handle and atproto
 * signing key. Parsing a document is pure (identity_doc_parse); resolving does network I/O. */
#ifndef PDSMOVE_IDENTITY_H
#define PDSMOVE_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include "pdsmove/err.h"
#include "pdsmove/keys.h"
#include "pdsmove/xrpc.h"

#define IDENTITY_DID_MAX 256
#define IDENTITY_HANDLE_MAX 256
#define IDENTITY_URL_MAX 512
#define IDENTITY_DEFAULT_PLC "https://plc.directory"
#define IDENTITY_WELL_KNOWN_MAX_BYTES 512       /* an /.well-known/atproto-did answer */
#define IDENTITY_WELL_KNOWN_DEADLINE_MS 10000L  /* ...within this, retry included */

typedef struct {
    char did[IDENTITY_DID_MAX];
    char handle[IDENTITY_HANDLE_MAX];    /* first at:// alsoKnownAs, "" if none */
    char pds[IDENTITY_URL_MAX];          /* #atproto_pds service endpoint, "" if none */
    char signing_key[KEY_DID_MAX];       /* #atproto key as did:key, "" if none */
    bool has_signing_key;
    key_pub signing_pub;
} identity_doc;

/* Extracts the fields above from a DID document (JSON). The DID must match doc.id. */
err_code identity_doc_parse(const json_t *doc, const char *did, identity_doc *out, err_t *e);

/* handle → DID. If via_pds is given, asks that PDS (com.atproto.identity.resolveHandle) when
 * DNS and HTTPS give no answer. */
err_code identity_resolve_handle(const char *handle, const char *via_pds, const xrpc_options *opts, char *did_out,
                                 size_t did_size, err_t *e);

/* DID → document (*doc_out, caller json_decref()s; may be NULL) and parsed fields. */
err_code identity_resolve_did(const char *did, const char *plc_url, const xrpc_options *opts, identity_doc *out,
                              json_t **doc_out, err_t *e);

/* Handle or DID → DID document, in one call (ACCOUNT arguments on the command line). */
err_code identity_resolve(const char *account, const char *plc_url, const char *via_pds, const xrpc_options *opts,
                          identity_doc *out, json_t **doc_out, err_t *e);

#endif
