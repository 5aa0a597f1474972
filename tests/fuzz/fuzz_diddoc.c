/* fuzz_diddoc.c — libFuzzer harness for DID document parsing (identity_doc_parse in
 * src/transport/identity.c, the pure part of identity resolution). The input is the document's
 * JSON; it is parsed for the DID its own "id" names (so the id check can pass) and for a fixed
 * DID. A parsed signing key must print as a did:key that parses back to the same key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/identity.h"

static void check(const json_t *doc, const char *did) {
    identity_doc d;
    err_t e = {0};
    if (identity_doc_parse(doc, did, &d, &e) != ERR_OK) return;
    if (strcmp(d.did, did)) abort();
    if (d.has_signing_key) {
        key_pub k;
        if (key_pub_from_did_key(&k, d.signing_key, &e) != ERR_OK || !key_pub_eq(&k, &d.signing_pub)) {
            fprintf(stderr, "fuzz_diddoc: signing key %s does not parse back: %s\n", d.signing_key, e.msg);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!doc) return 0;
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (id && strlen(id) < IDENTITY_DID_MAX) check(doc, id);
    check(doc, "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    json_decref(doc);
    return 0;
}
