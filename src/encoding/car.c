/* car.c — CAR v1 streaming reader and writer; see car.h.
 * The reader holds one buffer that grows only to the largest section seen (at most
 * CAR_MAX_SECTION_BYTES + a varint), so memory never depends on the file size. The header is
 * parsed here with a tiny CBOR reader so this module needs only codec + cid. */
#include "pdsmove/car.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdsmove/codec.h"

#define CAR_READ_CHUNK ((size_t)64 << 10)
#define CAR_WRITE_BUF ((size_t)64 << 10)

struct car_reader {
    int fd;
    uint8_t *buf;
    size_t cap;          /* allocated bytes of buf */
    size_t pos, end;     /* unread bytes are buf[pos..end) */
    bool eof;            /* read() returned 0 */
    bool failed;         /* a previous call returned an error */
    uint64_t buf_file_off; /* file offset of buf[0] */
    uint64_t block_off, data_off, blocks;
    size_t peak;
    size_t n_roots;
    cid_t roots[CAR_MAX_ROOTS];
};

/* ---------------------------------------------------------------- buffered input */

static err_code reader_grow(car_reader *r, size_t need, err_t *e) {
    if (need <= r->cap) return ERR_OK;
    size_t cap = r->cap ? r->cap : CAR_READ_CHUNK;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(r->buf, cap);
    if (!p) return err_set(e, ERR_NOMEM, "out of memory growing the CAR read buffer to %zu bytes", cap);
    r->buf = p;
    r->cap = cap;
    if (cap > r->peak) r->peak = cap;
    return ERR_OK;
}

/* Makes at least `want` unread bytes available unless the file ends first; *have gets the
 * number available (which is < want only at end of file). */
static err_code reader_fill(car_reader *r, size_t want, size_t *have, err_t *e) {
    assert(want <= CAR_MAX_SECTION_BYTES + VARINT_MAX_BYTES);
    if (r->end - r->pos < want && !r->eof) {
        if (r->pos > 0) { /* slide unread bytes to the front */
            memmove(r->buf, r->buf + r->pos, r->end - r->pos);
            r->buf_file_off += r->pos;
            r->end -= r->pos;
            r->pos = 0;
        }
        /* read in chunks of at least CAR_READ_CHUNK to keep syscalls few */
        size_t target = want < CAR_READ_CHUNK ? CAR_READ_CHUNK : want;
        err_code rc = reader_grow(r, target, e);
        if (rc) return rc;
        while (r->end < want && !r->eof) {
            ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
            if (n < 0) {
                if (errno == EINTR) continue;
                return err_set(e, ERR_IO, "reading the CAR at offset %llu: %s",
                               (unsigned long long)(r->buf_file_off + r->end), strerror(errno));
            }
            if (n == 0) r->eof = true;
            r->end += (size_t)n;
        }
    }
    *have = r->end - r->pos;
    return ERR_OK;
}

static uint64_t reader_offset(const car_reader *r) { return r->buf_file_off + r->pos; }

/* ---------------------------------------------------------------- header */

/* Minimal CBOR head: major type and argument. Definite, shortest-form only. */
static err_code hdr_head(const uint8_t *p, size_t len, size_t *at, int *major, uint64_t *arg, err_t *e) {
    if (*at >= len) return err_set(e, ERR_INVALID, "CAR header: CBOR ends early");
    uint8_t b = p[(*at)++];
    *major = b >> 5;
    uint8_t info = b & 0x1f;
    if (info < 24) { *arg = info; return ERR_OK; }
    if (info > 27) return err_set(e, ERR_INVALID, "CAR header: unsupported CBOR item 0x%02x", b);
    size_t n = (size_t)1 << (info - 24);
    if (len - *at < n) return err_set(e, ERR_INVALID, "CAR header: CBOR ends early");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[(*at)++];
    static const uint64_t min_for[] = {24, 0x100, 0x10000, 0x100000000ull};
    if (v < min_for[info - 24]) return err_set(e, ERR_INVALID, "CAR header: non-minimal CBOR integer");
    *arg = v;
    return ERR_OK;
}

static err_code hdr_parse_roots(car_reader *r, const uint8_t *p, size_t len, size_t *at, err_t *e) {
    int major;
    uint64_t n;
    err_code rc = hdr_head(p, len, at, &major, &n, e);
    if (rc) return rc;
    if (major != 4) return err_set(e, ERR_INVALID, "CAR header: \"roots\" is not an array");
    if (n > CAR_MAX_ROOTS)
        return err_set(e, ERR_LIMIT, "CAR header lists %llu roots (limit %d)", (unsigned long long)n, CAR_MAX_ROOTS);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t tag, blen;
        if ((rc = hdr_head(p, len, at, &major, &tag, e))) return rc;
        if (major != 6 || tag != 42) return err_set(e, ERR_INVALID, "CAR header: root %llu is not a CID (tag 42)", (unsigned long long)i);
        if ((rc = hdr_head(p, len, at, &major, &blen, e))) return rc;
        if (major != 2 || blen < 2 || blen > len - *at || p[*at] != 0x00)
            return err_set(e, ERR_INVALID, "CAR header: root %llu is not a CID byte string", (unsigned long long)i);
        size_t used = 0;
        err_t ce = {0};
        if (cid_from_bytes(&r->roots[i], p + *at + 1, (size_t)blen - 1, &used, &ce))
            return err_set(e, ERR_INVALID, "CAR header: root %llu: %s", (unsigned long long)i, ce.msg);
        if (used != blen - 1) return err_set(e, ERR_INVALID, "CAR header: root %llu has trailing bytes after its CID", (unsigned long long)i);
        *at += (size_t)blen;
    }
    r->n_roots = (size_t)n;
    return ERR_OK;
}

static err_code hdr_parse(car_reader *r, const uint8_t *p, size_t len, err_t *e) {
    size_t at = 0;
    int major;
    uint64_t n_pairs;
    err_code rc = hdr_head(p, len, &at, &major, &n_pairs, e);
    if (rc) return rc;
    if (major != 5) return err_set(e, ERR_INVALID, "CAR header is not a CBOR map: not a CAR file?");
    bool have_version = false, have_roots = false;
    for (uint64_t i = 0; i < n_pairs; i++) {
        uint64_t klen;
        if ((rc = hdr_head(p, len, &at, &major, &klen, e))) return rc;
        if (major != 3 || klen > len - at) return err_set(e, ERR_INVALID, "CAR header: map key is not text");
        const char *key = (const char *)p + at;
        at += (size_t)klen;
        if (klen == 7 && !memcmp(key, "version", 7)) {
            uint64_t v;
            if (have_version) return err_set(e, ERR_INVALID, "CAR header: duplicate \"version\"");
            if ((rc = hdr_head(p, len, &at, &major, &v, e))) return rc;
            if (major != 0) return err_set(e, ERR_INVALID, "CAR header: \"version\" is not an integer");
            if (v != 1) return err_set(e, ERR_INVALID, "CAR version %llu is not supported (only CAR v1)", (unsigned long long)v);
            have_version = true;
        } else if (klen == 5 && !memcmp(key, "roots", 5)) {
            if (have_roots) return err_set(e, ERR_INVALID, "CAR header: duplicate \"roots\"");
            if ((rc = hdr_parse_roots(r, p, len, &at, e))) return rc;
            have_roots = true;
        } else {
            return err_set(e, ERR_INVALID, "CAR header: unexpected key \"%.*s\"", (int)(klen > 32 ? 32 : klen), key);
        }
    }
    if (at != len) return err_set(e, ERR_INVALID, "CAR header: %zu trailing bytes", len - at);
    if (!have_version) return err_set(e, ERR_INVALID, "CAR header has no \"version\"");
    if (!have_roots) return err_set(e, ERR_INVALID, "CAR header has no \"roots\"");
    return ERR_OK;
}

/* Reads the varint that starts a header or section. *at_eof is set (ERR_OK) when the file
 * ends cleanly before its first byte. what names the item ("the header"), or is NULL for the
 * length of block #block_no (formatted only on error: this runs once per block). */
static err_code read_varint(car_reader *r, const char *what, uint64_t block_no, uint64_t *v, bool *at_eof, err_t *e) {
    char bw[40];
    if (!what) what = bw; /* filled in below, only on error */
    size_t have;
    err_code rc = reader_fill(r, VARINT_MAX_BYTES, &have, e);
    if (rc) return rc;
    *at_eof = have == 0;
    if (have == 0) return ERR_OK;
    size_t used;
    err_t ve = {0};
    rc = varint_decode(r->buf + r->pos, have, v, &used, &ve);
    if (rc && what == bw) snprintf(bw, sizeof bw, "block #%llu", (unsigned long long)block_no);
    if (rc == ERR_TRUNCATED)
        return err_set(e, ERR_TRUNCATED, "CAR file is truncated: it ends inside the length of %s at offset %llu",
                       what, (unsigned long long)reader_offset(r));
    if (rc) return err_set(e, ERR_INVALID, "malformed CAR: bad length varint for %s at offset %llu: %s",
                           what, (unsigned long long)reader_offset(r), ve.msg);
    r->pos += used;
    return ERR_OK;
}

err_code car_reader_open(int fd, car_reader **out, err_t *e) {
    *out = NULL;
    car_reader *r = calloc(1, sizeof *r);
    if (!r) return err_set(e, ERR_NOMEM, "out of memory opening a CAR reader");
    r->fd = fd;
    uint64_t hlen;
    bool at_eof;
    err_code rc = read_varint(r, "the header", 0, &hlen, &at_eof, e);
    if (!rc && at_eof) rc = err_set(e, ERR_TRUNCATED, "CAR file is empty");
    if (!rc && hlen == 0) rc = err_set(e, ERR_INVALID, "malformed CAR: header length is 0");
    if (!rc && hlen > CAR_MAX_HEADER_BYTES)
        rc = err_set(e, ERR_LIMIT, "CAR header is %llu bytes (limit %zu): not a CAR v1 file?",
                     (unsigned long long)hlen, CAR_MAX_HEADER_BYTES);
    size_t have = 0;
    if (!rc) rc = reader_fill(r, (size_t)hlen, &have, e);
    if (!rc && have < hlen)
        rc = err_set(e, ERR_TRUNCATED, "CAR file is truncated: it ends inside the header (%zu of %llu bytes)",
                     have, (unsigned long long)hlen);
    if (!rc) rc = hdr_parse(r, r->buf + r->pos, (size_t)hlen, e);
    if (rc) {
        car_reader_free(r);
        return rc;
    }
    r->pos += (size_t)hlen;
    *out = r;
    return ERR_OK;
}

const cid_t *car_reader_roots(const car_reader *r, size_t *n_roots) {
    *n_roots = r->n_roots;
    return r->roots;
}

err_code car_reader_next(car_reader *r, cid_t *cid, const uint8_t **data, size_t *len, err_t *e) {
    *data = NULL;
    *len = 0;
    if (r->failed) return err_set(e, ERR_USAGE, "car_reader_next called after an error");
    r->failed = true; /* cleared on success */
    uint64_t block_no = r->blocks + 1;
    uint64_t start = reader_offset(r);
    uint64_t slen;
    bool at_eof;
    err_code rc = read_varint(r, NULL, block_no, &slen, &at_eof, e);
    if (rc) return rc;
    if (at_eof) {
        r->failed = false;
        return ERR_OK;
    }
    if (slen == 0) return err_set(e, ERR_INVALID, "malformed CAR: block #%llu at offset %llu has length 0", (unsigned long long)block_no, (unsigned long long)start);
    if (slen > CAR_MAX_SECTION_BYTES)
        return err_set(e, ERR_LIMIT, "block #%llu at offset %llu is %llu bytes (limit %zu)", (unsigned long long)block_no,
                       (unsigned long long)start, (unsigned long long)slen, CAR_MAX_SECTION_BYTES);
    size_t have;
    if ((rc = reader_fill(r, (size_t)slen, &have, e))) return rc;
    if (have < slen)
        return err_set(e, ERR_TRUNCATED, "CAR file is truncated: it ends inside block #%llu at offset %llu (a %llu-byte section, only %zu bytes present)",
                       (unsigned long long)block_no, (unsigned long long)start, (unsigned long long)slen, have);
    const uint8_t *p = r->buf + r->pos;
    size_t used;
    err_t ce = {0};
    rc = cid_from_bytes(cid, p, (size_t)slen, &used, &ce);
    if (rc) return err_set(e, ERR_INVALID, "malformed CAR: block #%llu at offset %llu has an invalid CID: %s", (unsigned long long)block_no, (unsigned long long)start, ce.msg);
    char cs[CID_STR_MAX];
    if (cid->hash_code != CID_HASH_SHA256) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_INVALID, "block %s at offset %llu uses hash function 0x%llx (only sha2-256 is supported)",
                       cs, (unsigned long long)start, (unsigned long long)cid->hash_code);
    }
    size_t dlen = (size_t)slen - used;
    if (dlen > CAR_MAX_BLOCK_BYTES) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_LIMIT, "block %s at offset %llu is %zu bytes (limit %zu)", cs, (unsigned long long)start, dlen, CAR_MAX_BLOCK_BYTES);
    }
    const uint8_t *d = p + used;
    if (!cid_matches(cid, d, dlen)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_MISMATCH, "block %s at offset %llu does not match its CID (hash mismatch): the file is corrupted",
                       cs, (unsigned long long)start);
    }
    r->block_off = start;
    r->data_off = reader_offset(r) + used;
    r->pos += (size_t)slen;
    r->blocks++;
    r->failed = false;
    *data = d;
    *len = dlen;
    return ERR_OK;
}

uint64_t car_reader_block_offset(const car_reader *r) { return r->block_off; }
uint64_t car_reader_data_offset(const car_reader *r) { return r->data_off; }
uint64_t car_reader_block_count(const car_reader *r) { return r->blocks; }
uint64_t car_reader_bytes_read(const car_reader *r) { return reader_offset(r); }
size_t car_reader_peak_buffer_bytes(const car_reader *r) { return r->peak; }

void car_reader_free(car_reader *r) {
    if (!r) return;
    free(r->buf);
    free(r);
}

/* ---------------------------------------------------------------- writer */

struct car_writer {
    int fd;
    uint8_t buf[CAR_WRITE_BUF];
    size_t used;
    uint64_t written; /* bytes accepted (flushed or buffered) */
};

static err_code write_all(int fd, const uint8_t *p, size_t n, err_t *e) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return err_set(e, ERR_IO, "writing the CAR: %s", strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return ERR_OK;
}

static err_code writer_flush(car_writer *w, err_t *e) {
    err_code rc = write_all(w->fd, w->buf, w->used, e);
    w->used = 0;
    return rc;
}

static err_code writer_out(car_writer *w, const uint8_t *p, size_t n, err_t *e) {
    w->written += n;
    if (n > sizeof w->buf - w->used) {
        err_code rc = writer_flush(w, e);
        if (rc) return rc;
        if (n >= sizeof w->buf) return write_all(w->fd, p, n, e);
    }
    memcpy(w->buf + w->used, p, n);
    w->used += n;
    return ERR_OK;
}

/* CBOR head with the shortest argument encoding. */
static size_t cbor_head(uint8_t *out, int major, uint64_t v) {
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) { out[0] = m | (uint8_t)v; return 1; }
    if (v <= 0xff) { out[0] = m | 24; out[1] = (uint8_t)v; return 2; }
    assert(v <= 0xffff); /* CIDs are small */
    out[0] = m | 25; out[1] = (uint8_t)(v >> 8); out[2] = (uint8_t)v;
    return 3;
}

err_code car_writer_new(int fd, const cid_t *root, car_writer **out, err_t *e) {
    *out = NULL;
    car_writer *w = calloc(1, sizeof *w);
    if (!w) return err_set(e, ERR_NOMEM, "out of memory creating a CAR writer");
    w->fd = fd;
    /* {"roots": [42(h'00' ‖ cid)], "version": 1} in canonical order */
    uint8_t hdr[32 + CID_MAX_BYTES];
    size_t n = 0;
    hdr[n++] = 0xa2;
    hdr[n++] = 0x65;
    memcpy(hdr + n, "roots", 5); n += 5;
    hdr[n++] = 0x81;
    hdr[n++] = 0xd8; hdr[n++] = 42;
    n += cbor_head(hdr + n, 2, (uint64_t)root->len + 1);
    hdr[n++] = 0x00;
    memcpy(hdr + n, root->bytes, root->len); n += root->len;
    hdr[n++] = 0x67;
    memcpy(hdr + n, "version", 7); n += 7;
    hdr[n++] = 0x01;
    uint8_t vi[VARINT_MAX_BYTES];
    size_t vn = varint_encode(n, vi);
    err_code rc = writer_out(w, vi, vn, e);
    if (!rc) rc = writer_out(w, hdr, n, e);
    if (rc) { free(w); return rc; }
    *out = w;
    return ERR_OK;
}

err_code car_writer_put(car_writer *w, const cid_t *cid, const uint8_t *data, size_t len, err_t *e) {
    char cs[CID_STR_MAX];
    if (len > CAR_MAX_BLOCK_BYTES) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_LIMIT, "block %s is %zu bytes (limit %zu)", cs, len, CAR_MAX_BLOCK_BYTES);
    }
    if (!cid_matches(cid, data, len)) {
        cid_format(cid, cs, sizeof cs);
        return err_set(e, ERR_MISMATCH, "refusing to write block %s: its data does not hash to the CID", cs);
    }
    uint8_t vi[VARINT_MAX_BYTES];
    size_t vn = varint_encode((uint64_t)cid->len + len, vi);
    err_code rc = writer_out(w, vi, vn, e);
    if (!rc) rc = writer_out(w, cid->bytes, cid->len, e);
    if (!rc) rc = writer_out(w, data, len, e);
    return rc;
}

err_code car_writer_finish(car_writer *w, err_t *e) { return writer_flush(w, e); }

uint64_t car_writer_bytes_written(const car_writer *w) { return w->written; }

void car_writer_free(car_writer *w) { free(w); }
