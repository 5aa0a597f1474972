/* fuzz_cbor.c — libFuzzer harness for the strict DAG-CBOR decoder and the atproto JSON form
 * (src/encoding/cbor.c, cbor_json.c). The input is tried both ways: as DAG-CBOR, anything the
 * decoder accepts must re-encode to exactly the same bytes (it only accepts canonical input);
 * as JSON, whatever cbor_from_json accepts must encode to bytes the decoder accepts. The
 * record/commit/blob-ref views must not crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/cbor.h"
#include "pdsmove/commit.h"
#include "pdsmove/repo.h"

static err_code on_ref(void *ctx, const cid_t *cid, int64_t size_bytes, err_t *e) {
    (void)ctx; (void)cid; (void)size_bytes; (void)e;
    return ERR_OK;
}

/* JSON text → items → DAG-CBOR, which must decode again. */
static void from_json(const uint8_t *data, size_t size) {
    err_t e = {0};
    cbor_doc *doc = cbor_doc_new();
    cbor_item *it = NULL;
    if (doc && cbor_from_json(doc, (const char *)data, size, &it, &e) == ERR_OK) {
        (void)cbor_check_record(it, &e);
        buf_t out;
        buf_init(&out, 2 * CBOR_MAX_DOC_BYTES);
        if (cbor_encode(it, &out, &e) == ERR_OK) {
            cbor_doc *back = NULL;
            if (cbor_decode(out.data, out.len, &back, &e) != ERR_OK) {
                fprintf(stderr, "fuzz_cbor: cbor_encode wrote %zu bytes cbor_decode refuses: %s\n", out.len, e.msg);
                abort();
            }
            cbor_doc_free(back);
        }
        buf_free(&out);
    }
    cbor_doc_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_t e = {0};
    cbor_doc *doc = NULL;
    from_json(data, size);
    if (cbor_decode(data, size, &doc, &e) != ERR_OK) {
        cbor_doc_free(doc);
        return 0;
    }
    const cbor_item *root = cbor_doc_root(doc);
    buf_t out;
    buf_init(&out, 2 * CBOR_MAX_DOC_BYTES);
    if (cbor_encode(root, &out, &e) != ERR_OK) {
        fprintf(stderr, "fuzz_cbor: decoded input does not re-encode: %s\n", e.msg);
        abort();
    }
    if (out.len != size || memcmp(out.data, data, size) != 0) {
        fprintf(stderr, "fuzz_cbor: re-encoding differs (%zu bytes in, %zu out)\n", size, out.len);
        abort();
    }
    buf_free(&out);

    (void)cbor_check_record(root, &e);
    buf_t js;
    buf_init(&js, CBOR_MAX_JSON_BYTES);
    if (cbor_to_json(root, &js, &e) == ERR_OK) {
        cbor_doc *d2 = cbor_doc_new();
        cbor_item *back = NULL;
        if (d2 && cbor_from_json(d2, (const char *)js.data, js.len, &back, &e) == ERR_OK) {
            buf_t again;
            buf_init(&again, 2 * CBOR_MAX_DOC_BYTES);
            (void)cbor_encode(back, &again, &e);
            buf_free(&again);
        }
        cbor_doc_free(d2);
    }
    buf_free(&js);
    json_t *j = cbor_to_jansson(root, &e);
    if (j) {
        cbor_doc *d3 = cbor_doc_new();
        cbor_item *back = NULL;
        if (d3) (void)cbor_from_jansson(d3, j, &back, &e);
        cbor_doc_free(d3);
        json_decref(j);
    }
    cbor_doc_free(doc);

    commit_t c;
    (void)commit_decode(data, size, &c, &e);
    (void)repo_record_blob_refs(data, size, on_ref, NULL, &e);
    return 0;
}
