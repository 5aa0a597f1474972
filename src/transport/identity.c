/* identity.c — handle and DID resolution; see identity.h. Never trusts a handle alone: the
 * caller compares the document's alsoKnownAs when that matters (bidirectional check). */
#include "pdsmove/identity.h"

#include <netinet/in.h>
#include <ctype.h>
#include <resolv.h>
#include <stdio.h>
#include <string.h>

#include "pdsmove/syntax.h"

static bool id_matches(const char *id, const char *did, const char *frag) {
    /* "#atproto" or "did:…#atproto" */
    if (id[0] == '#') return !strcmp(id + 1, frag);
    size_t dl = strlen(did);
    return !strncmp(id, did, dl) && id[dl] == '#' && !strcmp(id + dl + 1, frag);
}

err_code identity_doc_parse(const json_t *doc, const char *did, identity_doc *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(doc)) return err_set(e, ERR_INVALID, "the DID document for %s is not a JSON object", did);
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (!id || strcmp(id, did))
        return err_set(e, ERR_MISMATCH, "the DID document is for '%s', not %s", id ? id : "(no id)", did);
    snprintf(out->did, sizeof out->did, "%s", did);

    const json_t *aka = json_object_get(doc, "alsoKnownAs");
    size_t i;
    const json_t *v;
    json_array_foreach(aka, i, v) {
        const char *s = json_string_value(v);
        if (s && !strncmp(s, "at://", 5) && strlen(s + 5) < sizeof out->handle) {
            snprintf(out->handle, sizeof out->handle, "%s", s + 5);
            break;
        }
    }
    json_array_foreach(json_object_get(doc, "service"), i, v) {
        const char *sid = json_string_value(json_object_get(v, "id"));
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *ep = json_string_value(json_object_get(v, "serviceEndpoint"));
        if (sid && ep && id_matches(sid, did, "atproto_pds") && (!type || !strcmp(type, "AtprotoPersonalDataServer"))) {
            if (strlen(ep) >= sizeof out->pds) return err_set(e, ERR_LIMIT, "PDS endpoint in %s's document is too long", did);
            snprintf(out->pds, sizeof out->pds, "%s", ep);
            size_t l = strlen(out->pds);
            while (l && out->pds[l - 1] == '/') out->pds[--l] = 0;
            break;
        }
    }
    json_array_foreach(json_object_get(doc, "verificationMethod"), i, v) {
        const char *vid = json_string_value(json_object_get(v, "id"));
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *mb = json_string_value(json_object_get(v, "publicKeyMultibase"));
        if (!vid || !mb || !id_matches(vid, did, "atproto")) continue;
        key_type kt = KEY_K256;
        if (type && !strcmp(type, "EcdsaSecp256r1VerificationKey2019")) kt = KEY_P256;
        err_t ke;
        if (key_pub_from_multibase(&out->signing_pub, kt, mb, &ke))
            return err_set(e, ERR_INVALID, "the atproto signing key in %s's DID document is unusable: %s", did, ke.msg);
        key_pub_to_did_key(&out->signing_pub, out->signing_key, sizeof out->signing_key);
        out->has_signing_key = true;
        break;
    }
    return ERR_OK;
}

/* Skips a (possibly compressed) DNS name at p[off]; returns the offset after it or -1. */
static int dns_skip_name(const unsigned char *p, int len, int off) {
    for (int labels = 0; off < len && labels < 128; labels++) {
        unsigned char l = p[off];
        if (l == 0) return off + 1;
        if ((l & 0xC0) == 0xC0) return off + 2 <= len ? off + 2 : -1;
        off += 1 + l;
    }
    return -1;
}

/* DNS TXT _atproto.<handle> → "did=<did>". A tiny bounded parser of the answer section
 * (glibc's ns_* parsers live in libresolv, which Zig's glibc stubs do not provide). */
static bool resolve_dns(const char *handle, char *did, size_t did_size) {
    char name[300];
    snprintf(name, sizeof name, "_atproto.%s", handle);
    unsigned char a[4096];
    int len = res_query(name, 1 /* IN */, 16 /* TXT */, a, sizeof a);
    if (len < 12) return false;
    int qd = (a[4] << 8) | a[5], an = (a[6] << 8) | a[7];
    int off = 12;
    for (int i = 0; i < qd && off >= 0; i++) {
        off = dns_skip_name(a, len, off);
        if (off >= 0) off += 4;
    }
    for (int i = 0; i < an && i < 32 && off >= 0 && off < len; i++) {
        off = dns_skip_name(a, len, off);
        if (off < 0 || off + 10 > len) return false;
        int type = (a[off] << 8) | a[off + 1];
        int rdlen = (a[off + 8] << 8) | a[off + 9];
        off += 10;
        if (off + rdlen > len) return false;
        if (type == 16 && rdlen >= 1 && a[off] + 1 <= rdlen) {
            char txt[300];
            int sl = a[off];
            if (sl < (int)sizeof txt) {
                memcpy(txt, a + off + 1, (size_t)sl);
                txt[sl] = 0;
                if (!strncmp(txt, "did=", 4) && syntax_did(txt + 4, NULL) && strlen(txt + 4) < did_size) {
                    snprintf(did, did_size, "%s", txt + 4);
                    return true;
                }
            }
        }
        off += rdlen;
    }
    return false;
}

static bool resolve_https(const char *handle, const xrpc_options *opts, char *did, size_t did_size) {
    char base[300];
    snprintf(base, sizeof base, "https://%s", handle);
    xrpc_options o = opts ? *opts : (xrpc_options){0};
    o.max_retries = 1;
    o.json_timeout_ms = 10000;
    /* The answer is one DID: a few hundred bytes, within seconds, whatever the host does. */
    o.max_download_bytes = IDENTITY_WELL_KNOWN_MAX_BYTES;
    o.deadline_ms = o.stream_deadline_ms = IDENTITY_WELL_KNOWN_DEADLINE_MS;
    xrpc_client *c = xrpc_client_new(base, &o, NULL);
    if (!c) return false;
    /* The well-known answer is plain text, not JSON: fetch it into a temporary file. */
    FILE *f = tmpfile();
    bool ok = false;
    if (f) {
        uint64_t n = 0;
        err_t e;
        if (xrpc_get_to_fd(c, "/.well-known/atproto-did", fileno(f), &n, &e) == ERR_OK && n > 0 && n < IDENTITY_WELL_KNOWN_MAX_BYTES) {
            char buf[IDENTITY_WELL_KNOWN_MAX_BYTES + 1] = {0};
            rewind(f);
            size_t got = fread(buf, 1, sizeof buf - 1, f);
            while (got && isspace((unsigned char)buf[got - 1])) buf[--got] = 0;
            if (syntax_did(buf, NULL) && got < did_size) {
                snprintf(did, did_size, "%s", buf);
                ok = true;
            }
        }
        fclose(f);
    }
    xrpc_client_free(c);
    return ok;
}

err_code identity_resolve_handle(const char *handle, const char *via_pds, const xrpc_options *opts, char *did_out,
                                 size_t did_size, err_t *e) {
    char lower[IDENTITY_HANDLE_MAX];
    size_t n = strlen(handle);
    if (n && handle[0] == '@') { handle++; n--; }
    if (n >= sizeof lower) return err_set(e, ERR_INVALID, "handle '%s' is too long", handle);
    for (size_t i = 0; i <= n; i++) lower[i] = (char)tolower((unsigned char)handle[i]);
    if (!syntax_handle(lower, NULL)) return err_set(e, ERR_INVALID, "'%s' is neither a valid handle nor a DID", handle);
    if (resolve_dns(lower, did_out, did_size)) return ERR_OK;
    if (resolve_https(lower, opts, did_out, did_size)) return ERR_OK;
    if (via_pds) {
        xrpc_client *c = xrpc_client_new(via_pds, opts, e);
        if (!c) return e ? e->code : ERR_USAGE;
        json_t *out = NULL;
        xrpc_param p[] = {{"handle", lower}, {NULL, NULL}};
        err_code rc = xrpc_query(c, "com.atproto.identity.resolveHandle", p, &out, e);
        xrpc_client_free(c);
        if (rc == ERR_OK) {
            const char *did = json_string_value(json_object_get(out, "did"));
            if (did && syntax_did(did, NULL) && strlen(did) < did_size) {
                snprintf(did_out, did_size, "%s", did);
                json_decref(out);
                return ERR_OK;
            }
            rc = err_set(e, ERR_REMOTE, "%s answered resolveHandle for %s without a valid DID", via_pds, lower);
        }
        json_decref(out);
        return err_wrap(e, "resolving the handle %s", lower);
    }
    return err_set(e, ERR_NOT_FOUND,
                   "cannot resolve the handle %s (no _atproto DNS record and no https://%s/.well-known/atproto-did); "
                   "give the account's DID instead, or --from with its PDS URL", lower, lower);
}

err_code identity_resolve_did(const char *did, const char *plc_url, const xrpc_options *opts, identity_doc *out,
                              json_t **doc_out, err_t *e) {
    if (doc_out) *doc_out = NULL;
    if (!syntax_did(did, NULL)) return err_set(e, ERR_INVALID, "'%s' is not a valid DID", did);
    xrpc_client *c = NULL;
    char path[IDENTITY_DID_MAX + 32];
    if (!strncmp(did, "did:plc:", 8)) {
        c = xrpc_client_new(plc_url ? plc_url : IDENTITY_DEFAULT_PLC, opts, e);
        snprintf(path, sizeof path, "/%s", did);
    } else if (!strncmp(did, "did:web:", 8)) {
        /* did:web:host%3Aport → https://host:port/.well-known/did.json (http for localhost) */
        char host[IDENTITY_DID_MAX];
        const char *h = did + 8;
        if (strchr(h, ':')) return err_set(e, ERR_INVALID, "did:web with a path (%s) is not supported by atproto", did);
        size_t k = 0;
        for (size_t i = 0; h[i] && k + 1 < sizeof host; i++) {
            if (!strncmp(h + i, "%3A", 3) || !strncmp(h + i, "%3a", 3)) { host[k++] = ':'; i += 2; }
            else host[k++] = h[i];
        }
        host[k] = 0;
        char base[IDENTITY_DID_MAX + 16];
        bool local = !strncmp(host, "localhost", 9) && (host[9] == 0 || host[9] == ':');
        snprintf(base, sizeof base, "%s://%s", local ? "http" : "https", host);
        c = xrpc_client_new(base, opts, e);
        snprintf(path, sizeof path, "/.well-known/did.json");
    } else {
        return err_set(e, ERR_INVALID, "unsupported DID method in %s (atproto uses did:plc and did:web)", did);
    }
    if (!c) return e ? e->code : ERR_USAGE;
    json_t *doc = NULL;
    err_code rc = xrpc_get_json(c, path, &doc, e);
    xrpc_client_free(c);
    if (rc) {
        if (rc == ERR_REMOTE && strstr(e ? e->msg : "", "HTTP 404"))
            return err_set(e, ERR_NOT_FOUND, "%s is not known to the directory (%s)", did, plc_url ? plc_url : IDENTITY_DEFAULT_PLC);
        return err_wrap(e, "fetching the DID document of %s", did);
    }
    rc = identity_doc_parse(doc, did, out, e);
    if (rc == ERR_OK && doc_out) *doc_out = doc;
    else json_decref(doc);
    return rc;
}

err_code identity_resolve(const char *account, const char *plc_url, const char *via_pds, const xrpc_options *opts,
                          identity_doc *out, json_t **doc_out, err_t *e) {
    char did[IDENTITY_DID_MAX];
    if (!strncmp(account, "did:", 4)) {
        snprintf(did, sizeof did, "%s", account);
    } else {
        err_code rc = identity_resolve_handle(account, via_pds, opts, did, sizeof did, e);
        if (rc) return rc;
    }
    return identity_resolve_did(did, plc_url, opts, out, doc_out, e);
}
