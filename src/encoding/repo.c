/* repo.c — whole-repository verification over a CAR file (see repo.h): blockstore (hash
 * checks, offset index) → commit (decode, signature) → MST walk (every record present). */
#include "pdsmove/repo.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/blockstore.h"
#include "pdsmove/car.h"
#include "pdsmove/cbor.h"
#include "pdsmove/commit.h"
#include "pdsmove/mst.h"

typedef struct {
    blockstore *bs;
    repo_summary *sum;
    repo_record_fn fn;
    void *ctx;
    bool read_records; /* fn wants each record's data */
} walk_ctx;

static void count_collection(repo_summary *s, const char *key, size_t key_len) {
    const char *slash = memchr(key, '/', key_len);
    size_t clen = slash ? (size_t)(slash - key) : key_len;
    /* keys arrive sorted, so one collection's records are contiguous */
    if (s->n_collections) {
        repo_collection_count *last = &s->collections[s->n_collections - 1];
        if (strlen(last->nsid) == clen && !memcmp(last->nsid, key, clen)) {
            last->records++;
            return;
        }
    }
    if (s->n_collections == REPO_MAX_COLLECTIONS || clen >= sizeof s->collections[0].nsid) {
        s->more_collections = true;
        return;
    }
    repo_collection_count *c = &s->collections[s->n_collections++];
    memcpy(c->nsid, key, clen);
    c->nsid[clen] = 0;
    c->records = 1;
}

static err_code missing_record(const cid_t *value, const char *key, size_t key_len, err_t *e) {
    char cs[CID_STR_MAX];
    cid_format(value, cs, sizeof cs);
    return err_set(e, ERR_NOT_FOUND, "record block %s (%.*s) is missing", cs, (int)key_len, key);
}

/* Without a record callback, records only need to exist: they are checked after the walk in
 * one sorted pass (blockstore_expect). With one, each record is read as it is reached. */
static err_code visit(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    walk_ctx *w = ctx;
    w->sum->records++;
    count_collection(w->sum, key, key_len);
    if (!w->read_records) {
        err_code rc = blockstore_expect(w->bs, value, e);
        return rc || !w->fn ? rc : w->fn(w->ctx, key, key_len, value, NULL, 0, e);
    }
    const uint8_t *data;
    size_t len;
    err_code rc = blockstore_get(w->bs, value, &data, &len, e);
    if (rc == ERR_NOT_FOUND) return missing_record(value, key, key_len, e);
    return rc ? rc : w->fn(w->ctx, key, key_len, value, data, len, e);
}

/* After a failed check: a second walk to name the record whose block is missing. */
typedef struct { const cid_t *missing; } find_ctx;

static err_code find_missing(void *ctx, const char *key, size_t key_len, const cid_t *value, err_t *e) {
    find_ctx *f = ctx;
    return cid_eq(value, f->missing) ? missing_record(value, key, key_len, e) : ERR_OK;
}

#define BLOB_SCAN_MAX_DEPTH (CBOR_MAX_DEPTH + 2)

err_code repo_record_blob_refs(const uint8_t *data, size_t len, repo_blob_ref_fn fn, void *ctx, err_t *e) {
    cbor_doc *doc = NULL;
    err_code rc = cbor_decode(data, len, &doc, e);
    if (rc) return rc;
    /* explicit stack of (item, next child index) */
    typedef struct { const cbor_item *it; size_t next; } frame;
    frame stack[BLOB_SCAN_MAX_DEPTH];
    size_t depth = 0;
    stack[depth++] = (frame){cbor_doc_root(doc), 0};
    while (depth && !rc) {
        const cbor_item *it = stack[depth - 1].it;
        if (it->type == CBOR_MAP && stack[depth - 1].next == 0) {
            size_t tl;
            const char *type = cbor_map_get_text(it, "$type", &tl);
            const cid_t *ref = cbor_map_get_cid(it, "ref");
            const cbor_item *size = cbor_map_get(it, "size");
            if (type && !strcmp(type, "blob") && ref) {
                rc = fn(ctx, ref, size && size->type == CBOR_INT ? size->v.integer : -1, e);
            } else if (!type) {
                size_t cl;
                const char *legacy = cbor_map_get_text(it, "cid", &cl);
                cid_t c;
                if (legacy && cbor_map_get(it, "mimeType") && cid_parse(&c, legacy, NULL) == ERR_OK && c.codec == CID_CODEC_RAW)
                    rc = fn(ctx, &c, -1, e);
            }
        }
        size_t n = it->type == CBOR_MAP ? it->v.map.len : it->type == CBOR_ARRAY ? it->v.array.len : 0;
        if (rc || stack[depth - 1].next >= n) {
            depth--;
            continue;
        }
        const cbor_item *child = it->type == CBOR_MAP ? it->v.map.pairs[stack[depth - 1].next].value
                                                      : it->v.array.items[stack[depth - 1].next];
        stack[depth - 1].next++;
        if (child->type == CBOR_MAP || child->type == CBOR_ARRAY) {
            assert(depth < BLOB_SCAN_MAX_DEPTH); /* the decoder already bounds nesting */
            stack[depth++] = (frame){child, 0};
        }
    }
    cbor_doc_free(doc);
    return rc;
}

static err_code verify_car(int fd, const key_pub *keys, size_t n_keys, repo_record_fn fn, void *ctx, bool read_records,
                           repo_summary *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (lseek(fd, 0, SEEK_SET) != 0) return err_set(e, ERR_IO, "the repository file is not seekable");
    struct stat st;
    if (fstat(fd, &st) == 0) out->bytes = (uint64_t)st.st_size;
    blockstore *bs = blockstore_new();
    if (!bs) return err_set(e, ERR_NOMEM, "out of memory");
    cid_t roots[CAR_MAX_ROOTS];
    size_t n_roots = 0;
    err_code rc = blockstore_load_car(bs, fd, roots, CAR_MAX_ROOTS, &n_roots, e);
    if (rc) goto out;
    blockstore_stats bst = blockstore_get_stats(bs);
    out->blocks = bst.blocks;
    out->duplicates = bst.duplicates;
    out->data_bytes = bst.data_bytes;
    if (n_roots != 1) {
        rc = err_set(e, ERR_INVALID, "the CAR has %zu roots; a repo CAR has exactly one (its commit)", n_roots);
        goto out;
    }
    out->commit = roots[0];
    char cs[CID_STR_MAX];
    cid_format(&roots[0], cs, sizeof cs);
    const uint8_t *data;
    size_t len;
    if ((rc = blockstore_get(bs, &roots[0], &data, &len, e))) {
        if (rc == ERR_NOT_FOUND) err_set(e, ERR_NOT_FOUND, "the commit block %s (the CAR's root) is missing", cs);
        goto out;
    }
    commit_t c;
    if ((rc = commit_decode(data, len, &c, e))) {
        err_wrap(e, "commit %s", cs);
        goto out;
    }
    snprintf(out->did, sizeof out->did, "%s", c.did);
    out->commit_version = c.version;
    snprintf(out->rev, sizeof out->rev, "%s", c.rev);
    out->data = c.data;
    for (size_t i = 0; i < n_keys; i++) {
        rc = commit_verify(data, len, &keys[i], e);
        if (rc == ERR_OK) {
            out->signature_checked = true;
            out->signed_by = i;
            break;
        }
        if (rc != ERR_MISMATCH || i + 1 == n_keys) {
            err_wrap(e, "commit %s", cs);
            goto out;
        }
    }
    walk_ctx w = {.bs = bs, .sum = out, .fn = fn, .ctx = ctx, .read_records = read_records && fn};
    mst_walk_stats ms = {0};
    rc = mst_walk(&c.data, blockstore_get_cb, bs, visit, &w, &ms, e);
    out->mst_nodes = ms.nodes;
    out->mst_root_layer = ms.root_layer;
    cid_t missing;
    bool any_missing = false;
    if (!rc && !w.read_records) rc = blockstore_check_expected(bs, &missing, &any_missing, e);
    if (!rc && any_missing) {
        find_ctx f = {&missing};
        mst_walk_stats ms2 = {0};
        rc = mst_walk(&c.data, blockstore_get_cb, bs, find_missing, &f, &ms2, e);
        if (!rc) { /* cannot happen: the first walk expected it */
            char cs2[CID_STR_MAX];
            cid_format(&missing, cs2, sizeof cs2);
            rc = err_set(e, ERR_NOT_FOUND, "record block %s is missing", cs2);
        }
    }
out:
    blockstore_free(bs);
    return rc;
}

err_code repo_verify_car(int fd, const key_pub *keys, size_t n_keys, repo_record_fn fn, void *ctx, repo_summary *out,
                         err_t *e) {
    return verify_car(fd, keys, n_keys, fn, ctx, true, out, e);
}

err_code repo_list_car(int fd, const key_pub *keys, size_t n_keys, repo_record_fn fn, void *ctx, repo_summary *out,
                       err_t *e) {
    return verify_car(fd, keys, n_keys, fn, ctx, false, out, e);
}

err_code repo_verify_diff_car(int fd, const key_pub *keys, size_t n_keys, repo_summary *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (lseek(fd, 0, SEEK_SET) != 0) return err_set(e, ERR_IO, "the repository file is not seekable");
    struct stat st;
    if (fstat(fd, &st) == 0) out->bytes = (uint64_t)st.st_size;
    car_reader *r = NULL;
    err_code rc = car_reader_open(fd, &r, e);
    if (rc) return rc;
    size_t n_roots = 0;
    const cid_t *roots = car_reader_roots(r, &n_roots);
    if (n_roots != 1) {
        car_reader_free(r);
        return err_set(e, ERR_INVALID, "the CAR has %zu roots; a repo CAR has exactly one (its commit)", n_roots);
    }
    out->commit = roots[0];
    bool found = false;
    for (;;) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        if ((rc = car_reader_next(r, &cid, &data, &len, e))) break;
        if (!data) break;
        out->blocks++;
        out->data_bytes += len;
        if (found || !cid_eq(&cid, &out->commit)) continue;
        found = true;
        commit_t c;
        char cs[CID_STR_MAX];
        cid_format(&cid, cs, sizeof cs);
        if ((rc = commit_decode(data, len, &c, e))) {
            err_wrap(e, "commit %s", cs);
            break;
        }
        snprintf(out->did, sizeof out->did, "%s", c.did);
        snprintf(out->rev, sizeof out->rev, "%s", c.rev);
        out->data = c.data;
        out->commit_version = c.version;
        for (size_t i = 0; i < n_keys; i++) {
            rc = commit_verify(data, len, &keys[i], e);
            if (rc == ERR_OK) {
                out->signature_checked = true;
                out->signed_by = i;
                break;
            }
            if (rc != ERR_MISMATCH || i + 1 == n_keys) {
                err_wrap(e, "commit %s", cs);
                break;
            }
        }
        if (rc) break;
    }
    car_reader_free(r);
    if (!rc && !found) rc = err_set(e, ERR_NOT_FOUND, "the commit block (the CAR's root) is missing");
    return rc;
}

err_code repo_merge_cars(const int *fds, size_t n_fds, const cid_t *root, int out_fd, err_t *e) {
    car_writer *w = NULL;
    err_code rc = car_writer_new(out_fd, root, &w, e);
    for (size_t i = 0; i < n_fds && !rc; i++) {
        if (lseek(fds[i], 0, SEEK_SET) != 0) {
            rc = err_set(e, ERR_IO, "a repository file is not seekable");
            break;
        }
        car_reader *r = NULL;
        if ((rc = car_reader_open(fds[i], &r, e))) break;
        for (;;) {
            cid_t cid;
            const uint8_t *data;
            size_t len;
            if ((rc = car_reader_next(r, &cid, &data, &len, e)) || !data) break;
            if ((rc = car_writer_put(w, &cid, data, len, e))) break;
        }
        car_reader_free(r);
    }
    if (!rc) rc = car_writer_finish(w, e);
    car_writer_free(w);
    return rc;
}
