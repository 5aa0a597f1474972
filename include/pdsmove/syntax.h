/* syntax.h — string-level validators for atproto identifiers (atproto.com/specs: did, handle,
 * nsid, record-key, tid, at-uri restricted form, lexicon datetime and cid string formats).
 * Each returns true when s is valid; otherwise false and, if e is non-NULL, ERR_INVALID (or
 * ERR_LIMIT for over-long input) with a message naming the input and the rule it breaks.
 * Syntax only: nothing here resolves, normalises or looks anything up. */
#ifndef PDSMOVE_SYNTAX_H
#define PDSMOVE_SYNTAX_H

#include <stdbool.h>
#include "pdsmove/err.h"

#define SYNTAX_DID_MAX 2048
#define SYNTAX_HANDLE_MAX 253
#define SYNTAX_NSID_MAX 317
#define SYNTAX_RKEY_MAX 512
#define SYNTAX_TID_LEN 13
#define SYNTAX_AT_URI_MAX 8192
#define SYNTAX_DATETIME_MAX 64
#define SYNTAX_CID_MIN 8
#define SYNTAX_CID_MAX 256

bool syntax_did(const char *s, err_t *e);
/* Case-insensitive, as handles are; callers compare handles after lower-casing them. */
bool syntax_handle(const char *s, err_t *e);
bool syntax_nsid(const char *s, err_t *e);
bool syntax_tid(const char *s, err_t *e);
bool syntax_record_key(const char *s, err_t *e);
/* "at://" AUTHORITY [ "/" COLLECTION [ "/" RKEY ] ], no query or fragment (the Lexicon form). */
bool syntax_at_uri(const char *s, err_t *e);
/* RFC 3339 ∩ ISO 8601: YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM), a real calendar date. */
bool syntax_datetime(const char *s, err_t *e);
/* A DID or a handle. */
bool syntax_at_identifier(const char *s, err_t *e);
/* The loose string form of the lexicon "cid" format ([A-Za-z0-9+=]{8,256}, no CIDv0);
 * use cid_parse to actually decode one. */
bool syntax_cid(const char *s, err_t *e);

#endif
