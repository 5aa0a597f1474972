/* test_identity.c — DID document parsing: PDS endpoint, handle, and the atproto signing key in
 * both the Multikey form and the legacy uncompressed forms (from the interop crypto fixtures);
 * a did:web host that answers without end or not at all is bounded, and named. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_testutil.h"

#include "pdsmove/identity.h"

static json_t *doc_with_key(const char *did, const char *vm_type, const char *multibase) {
    return json_pack("{s:s, s:[s, s], s:[{s:s, s:s, s:s, s:s}], s:[{s:s, s:s, s:s}]}",
                     "id", did, "alsoKnownAs", "at://alice.example.com", "at://other.example",
                     "verificationMethod", "id", "did:plc:abcdefghijklmnopqrstuvwx#atproto", "type", vm_type,
                     "controller", did, "publicKeyMultibase", multibase,
                     "service", "id", "#atproto_pds", "type", "AtprotoPersonalDataServer", "serviceEndpoint",
                     "https://pds.example.com/");
}

Test(identity, parses_endpoint_handle_and_multikey) {
    const char *did = "did:plc:abcdefghijklmnopqrstuvwx";
    key_priv k;
    err_t e;
    cr_assert_eq(key_priv_generate(&k, KEY_K256, &e), ERR_OK);
    char dk[KEY_DID_MAX];
    key_pub_to_did_key(&k.pub, dk, sizeof dk);
    json_t *doc = doc_with_key(did, "Multikey", dk + strlen("did:key:"));
    identity_doc id;
    cr_assert_eq(identity_doc_parse(doc, did, &id, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(id.pds, "https://pds.example.com", "trailing slash trimmed");
    cr_assert_str_eq(id.handle, "alice.example.com", "first at:// alias");
    cr_assert(id.has_signing_key);
    cr_assert_str_eq(id.signing_key, dk);
    json_decref(doc);
    key_priv_wipe(&k);
}

Test(identity, legacy_uncompressed_keys_from_the_fixtures) {
    json_error_t je;
    json_t *fx = json_load_file(PDSMOVE_FIXTURES "/interop/crypto/signature-fixtures.json", 0, &je);
    cr_assert_not_null(fx, "%s", je.text);
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(fx, i, c) {
        const char *suite = json_string_value(json_object_get(c, "didDocSuite"));
        const char *mb = json_string_value(json_object_get(c, "publicKeyMultibase"));
        const char *want = json_string_value(json_object_get(c, "publicKeyDid"));
        const char *did = "did:plc:abcdefghijklmnopqrstuvwx";
        json_t *doc = doc_with_key(did, suite, mb);
        identity_doc id;
        err_t e;
        cr_assert_eq(identity_doc_parse(doc, did, &id, &e), ERR_OK, "case %zu: %s", i, e.msg);
        cr_assert_str_eq(id.signing_key, want, "case %zu (%s)", i, suite);
        json_decref(doc);
        checked++;
    }
    cr_assert_eq(checked, 6);
    json_decref(fx);
}

Test(identity, wrong_id_and_bad_key_are_rejected) {
    err_t e;
    identity_doc id;
    json_t *doc = doc_with_key("did:plc:abcdefghijklmnopqrstuvwx", "Multikey", "zQ3shbogus");
    cr_assert_eq(identity_doc_parse(doc, "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz", &id, &e), ERR_MISMATCH);
    cr_assert_neq(identity_doc_parse(doc, "did:plc:abcdefghijklmnopqrstuvwx", &id, &e), ERR_OK);
    cr_assert(strstr(e.msg, "signing key"), "%s", e.msg);
    json_decref(doc);
    json_t *nokey = json_pack("{s:s}", "id", "did:web:example.com");
    cr_assert_eq(identity_doc_parse(nokey, "did:web:example.com", &id, &e), ERR_OK);
    cr_assert_not(id.has_signing_key);
    cr_assert_str_eq(id.pds, "");
    json_decref(nokey);
}

Test(identity, rejects_unsupported_dids_before_any_network) {
    identity_doc id;
    err_t e;
    cr_assert_eq(identity_resolve_did("did:example:123", NULL, NULL, &id, NULL, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "unsupported DID method"), "%s", e.msg);
    cr_assert_eq(identity_resolve_did("not a did", NULL, NULL, &id, NULL, &e), ERR_INVALID);
    cr_assert_eq(identity_resolve_handle("no spaces allowed", NULL, NULL, id.did, sizeof id.did, &e), ERR_INVALID);
}

Test(identity, a_did_web_host_that_never_stops_or_never_answers_is_bounded_and_named) {
    int port;
    endless s = {.listen_fd = listen_loopback(&port),
                 .head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"id\": \""};
    pthread_t t;
    pthread_create(&t, NULL, serve_endless, &s);
    char did[64], host[64];
    snprintf(did, sizeof did, "did:web:localhost%%3A%d", port);
    snprintf(host, sizeof host, "http://localhost:%d", port);
    identity_doc id;
    err_t e;
    cr_assert_eq(identity_resolve_did(did, NULL, NULL, &id, NULL, &e), ERR_LIMIT, "%s", e.msg);
    cr_assert(strstr(e.msg, host) && strstr(e.msg, "16777216 bytes"), "%s", e.msg);
    pthread_join(t, NULL);
    cr_assert_lt(s.sent, (uint64_t)64 << 20);
    /* the same port, now listening but never accepting: a host that never answers */
    xrpc_options o = {.deadline_ms = 1000, .base_backoff_ms = 5};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(identity_resolve_did(did, NULL, &o, &id, NULL, &e), ERR_NETWORK, "%s", e.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 4, "bounded by the deadline");
    cr_assert(strstr(e.msg, host) && strstr(e.msg, "did not answer"), "%s", e.msg);
    close(s.listen_fd);
}
