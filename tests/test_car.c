/* test_car.c — CAR v1 reader/writer: round trips, the header, truncation at every byte,
 * flipped bytes, malformed sections, size limits, pipes, and a 100k-block stream read with a
 * bounded buffer. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/car.h"
#include "pdsmove/codec.h"

/* A temp file, already unlinked: closing the fd removes it. */
static int temp_fd(void) {
    char path[] = "/tmp/pdsmove-test-car-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp");
    unlink(path);
    return fd;
}

typedef struct {
    cid_t cid;
    uint8_t data[64];
    size_t len;
} tblock;

static void make_block(tblock *b, int i, uint64_t codec) {
    b->len = (size_t)snprintf((char *)b->data, sizeof b->data, "block number %d of the test", i);
    cid_compute(&b->cid, codec, b->data, b->len);
}

/* Writes root + blocks to a new temp file; returns its fd positioned at 0. */
static int write_car(const cid_t *root, const tblock *blocks, size_t n) {
    int fd = temp_fd();
    err_t e = {0};
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, root, &w, &e), ERR_OK, "%s", e.msg);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(car_writer_put(w, &blocks[i].cid, blocks[i].data, blocks[i].len, &e), ERR_OK, "block %zu: %s", i, e.msg);
    cr_assert_eq(car_writer_finish(w, &e), ERR_OK, "%s", e.msg);
    car_writer_free(w);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static size_t file_size(int fd) {
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    return (size_t)st.st_size;
}

static uint8_t *read_all(int fd, size_t *n) {
    *n = file_size(fd);
    uint8_t *p = malloc(*n + 1);
    cr_assert_eq(pread(fd, p, *n, 0), (ssize_t)*n);
    return p;
}

static int fd_from_bytes(const uint8_t *p, size_t n) {
    int fd = temp_fd();
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

/* Reads every block; returns the final status, *count the blocks read before it. */
static err_code read_everything(int fd, size_t *count, err_t *e) {
    car_reader *r = NULL;
    *count = 0;
    err_code rc = car_reader_open(fd, &r, e);
    if (rc) return rc;
    for (;;) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        rc = car_reader_next(r, &cid, &data, &len, e);
        if (rc || !data) break;
        (*count)++;
    }
    car_reader_free(r);
    return rc;
}

Test(car, round_trips_blocks_roots_and_offsets) {
    tblock b[5];
    for (int i = 0; i < 5; i++) make_block(&b[i], i, i % 2 ? CID_CODEC_RAW : CID_CODEC_DAG_CBOR);
    int fd = write_car(&b[0].cid, b, 5);
    size_t size = file_size(fd);
    err_t e = {0};
    car_reader *r = NULL;
    cr_assert_eq(car_reader_open(fd, &r, &e), ERR_OK, "%s", e.msg);
    size_t nr;
    const cid_t *roots = car_reader_roots(r, &nr);
    cr_assert_eq(nr, 1);
    cr_assert(cid_eq(&roots[0], &b[0].cid), "the root is the one written");
    for (int i = 0; i < 5; i++) {
        cid_t cid;
        const uint8_t *data;
        size_t len;
        cr_assert_eq(car_reader_next(r, &cid, &data, &len, &e), ERR_OK, "block %d: %s", i, e.msg);
        cr_assert_not_null(data, "block %d present", i);
        cr_assert(cid_eq(&cid, &b[i].cid), "block %d CID", i);
        cr_assert_eq(len, b[i].len, "block %d length", i);
        cr_assert(memcmp(data, b[i].data, len) == 0, "block %d data", i);
        /* the offsets point at the bytes in the file */
        uint8_t back[64];
        cr_assert_eq(pread(fd, back, len, (off_t)car_reader_data_offset(r)), (ssize_t)len);
        cr_assert(memcmp(back, b[i].data, len) == 0, "block %d data offset", i);
        cr_assert_eq(car_reader_data_offset(r) - car_reader_block_offset(r), 1 + cid.len, "block %d: varint + CID before data", i);
    }
    cid_t cid;
    const uint8_t *data = (const uint8_t *)"x";
    size_t len = 99;
    cr_assert_eq(car_reader_next(r, &cid, &data, &len, &e), ERR_OK, "clean end: %s", e.msg);
    cr_assert_null(data, "end of file is data == NULL");
    cr_assert_eq(len, 0);
    cr_assert_eq(car_reader_block_count(r), 5);
    cr_assert_eq(car_reader_bytes_read(r), size, "every byte consumed");
    car_reader_free(r);
    close(fd);
}

Test(car, header_is_canonical_dag_cbor_with_version_1) {
    tblock b;
    make_block(&b, 0, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b.cid, NULL, 0);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    /* varint(len) a2 65 "roots" 81 d8 2a 58 25 00 <cid> 67 "version" 01 */
    static const uint8_t start[] = {0x3a, 0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00};
    cr_assert_eq(n, 1 + 0x3a, "header only, length %zu", n);
    cr_assert(memcmp(p, start, sizeof start) == 0, "header prefix");
    cr_assert(memcmp(p + sizeof start, b.cid.bytes, 36) == 0, "root CID bytes");
    static const uint8_t end[] = {0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01};
    cr_assert(memcmp(p + n - sizeof end, end, sizeof end) == 0, "version 1 at the end");
    size_t count;
    err_t e = {0};
    cr_assert_eq(read_everything(fd, &count, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(count, 0, "a header-only CAR has no blocks");
    free(p);
    close(fd);
}

/* Cutting the file anywhere must give ERR_TRUNCATED, except exactly between blocks, where
 * the shorter file is itself a valid CAR. Never a hash mismatch or "malformed". */
Test(car, truncation_at_every_byte_is_reported_as_truncated) {
    tblock b[3];
    for (int i = 0; i < 3; i++) make_block(&b[i], i, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b[0].cid, b, 3);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    close(fd);
    /* block boundaries: header end, then after each block */
    size_t hdr = 1 + p[0];
    size_t bounds[4] = {hdr};
    for (int i = 0; i < 3; i++) bounds[i + 1] = bounds[i] + 1 + b[i].cid.len + b[i].len;
    cr_assert_eq(bounds[3], n);
    for (size_t cut = 0; cut < n; cut++) {
        int tfd = fd_from_bytes(p, cut);
        size_t count;
        err_t e = {0};
        err_code rc = read_everything(tfd, &count, &e);
        int boundary = -1;
        for (int i = 0; i < 4; i++) if (bounds[i] == cut) boundary = i;
        if (boundary >= 0) {
            cr_assert_eq(rc, ERR_OK, "cut at %zu (a block boundary): %s", cut, e.msg);
            cr_assert_eq(count, (size_t)boundary, "cut at %zu: blocks before it", cut);
        } else {
            cr_assert_eq(rc, ERR_TRUNCATED, "cut at %zu: got %s: %s", cut, err_code_name(rc), e.msg);
            cr_assert(strstr(e.msg, "truncated") || strstr(e.msg, "empty"), "cut at %zu: message says so: %s", cut, e.msg);
        }
        close(tfd);
    }
    free(p);
}

Test(car, flipped_byte_in_block_data_names_cid_and_offset) {
    tblock b[3];
    for (int i = 0; i < 3; i++) make_block(&b[i], i, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b[0].cid, b, 3);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    close(fd);
    size_t hdr = 1 + p[0];
    size_t second = hdr + 1 + b[0].cid.len + b[0].len; /* section start of block #2 */
    for (size_t k = 0; k < b[1].len; k++) {           /* every byte of block #2's data */
        uint8_t *q = malloc(n);
        memcpy(q, p, n);
        q[second + 1 + b[1].cid.len + k] ^= 0x20;
        int tfd = fd_from_bytes(q, n);
        size_t count;
        err_t e = {0};
        cr_assert_eq(read_everything(tfd, &count, &e), ERR_MISMATCH, "flip at data byte %zu: %s", k, e.msg);
        cr_assert_eq(count, 1, "the first block was fine");
        char cs[CID_STR_MAX], off[32];
        cid_format(&b[1].cid, cs, sizeof cs);
        snprintf(off, sizeof off, "offset %zu", second);
        cr_assert(strstr(e.msg, cs), "message names the CID: %s", e.msg);
        cr_assert(strstr(e.msg, off), "message names the %s: %s", off, e.msg);
        cr_assert(strstr(e.msg, "hash mismatch"), "message says hash mismatch: %s", e.msg);
        close(tfd);
        free(q);
    }
    free(p);
}

Test(car, malformed_sections_are_invalid_not_truncated) {
    tblock b;
    make_block(&b, 0, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b.cid, &b, 1);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    close(fd);
    size_t hdr = 1 + p[0];
    struct { const char *name; size_t at; uint8_t byte; err_code want; } cases[] = {
        {"zero section length", hdr, 0x00, ERR_INVALID},
        {"CIDv0 instead of v1", hdr + 1, 0x12, ERR_INVALID},
        {"unknown CID version", hdr + 1, 0x02, ERR_INVALID},
        {"non-minimal varint length", hdr, 0x80, ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *q = malloc(n + 1);
        memcpy(q, p, n);
        size_t qn = n;
        if (cases[i].byte == 0x80) { /* 0x80 0x00 is a non-minimal encoding of 0 */
            q[cases[i].at] = 0x80;
            q[cases[i].at + 1] = 0x00;
        } else {
            q[cases[i].at] = cases[i].byte;
        }
        int tfd = fd_from_bytes(q, qn);
        size_t count;
        err_t e = {0};
        err_code rc = read_everything(tfd, &count, &e);
        cr_assert_eq(rc, cases[i].want, "%s: got %s: %s", cases[i].name, err_code_name(rc), e.msg);
        cr_assert(strstr(e.msg, "malformed") || strstr(e.msg, "invalid"), "%s: message: %s", cases[i].name, e.msg);
        close(tfd);
        free(q);
    }
    free(p);
}

Test(car, rejects_bad_headers) {
    struct { const char *name; uint8_t bytes[16]; size_t len; err_code want; } cases[] = {
        {"header not a map", {0x02, 0x81, 0x01}, 3, ERR_INVALID},
        {"version 2 (CAR v2 pragma)", {0x0a, 0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x02}, 11, ERR_INVALID},
        {"no roots", {0x0a, 0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01}, 11, ERR_INVALID},
        {"zero header length", {0x00}, 1, ERR_INVALID},
        {"header length over the limit", {0xff, 0xff, 0x3f}, 3, ERR_LIMIT},
        {"empty file", {0}, 0, ERR_TRUNCATED},
        {"header cut short", {0x30, 0xa2, 0x65}, 3, ERR_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = fd_from_bytes(cases[i].bytes, cases[i].len);
        car_reader *r = NULL;
        err_t e = {0};
        err_code rc = car_reader_open(fd, &r, &e);
        cr_assert_eq(rc, cases[i].want, "%s: got %s: %s", cases[i].name, err_code_name(rc), e.msg);
        cr_assert_null(r, "%s: no reader on error", cases[i].name);
        cr_assert_neq(e.msg[0], 0, "%s: has a message", cases[i].name);
        close(fd);
    }
}

Test(car, version_2_message_says_not_supported) {
    uint8_t v2[] = {0x0a, 0xa1, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x02};
    int fd = fd_from_bytes(v2, sizeof v2);
    car_reader *r = NULL;
    err_t e = {0};
    cr_assert_eq(car_reader_open(fd, &r, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "CAR version 2"), "%s", e.msg);
    close(fd);
}

Test(car, block_size_limit_is_enforced_on_read_and_write) {
    /* exactly the limit round-trips */
    size_t big = CAR_MAX_BLOCK_BYTES;
    uint8_t *data = malloc(big + 1);
    for (size_t i = 0; i < big + 1; i++) data[i] = (uint8_t)(i * 7);
    cid_t cid;
    cid_compute(&cid, CID_CODEC_RAW, data, big);
    int fd = temp_fd();
    err_t e = {0};
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, &cid, &w, &e), ERR_OK);
    cr_assert_eq(car_writer_put(w, &cid, data, big, &e), ERR_OK, "%s", e.msg);
    cid_t over;
    cid_compute(&over, CID_CODEC_RAW, data, big + 1);
    cr_assert_eq(car_writer_put(w, &over, data, big + 1, &e), ERR_LIMIT, "writer refuses a block over the limit");
    cr_assert_eq(car_writer_finish(w, &e), ERR_OK);
    car_writer_free(w);
    lseek(fd, 0, SEEK_SET);
    size_t count;
    cr_assert_eq(read_everything(fd, &count, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(count, 1);
    close(fd);

    /* a section that claims more than the limit is refused before reading it */
    tblock hb;
    make_block(&hb, 0, CID_CODEC_RAW);
    fd = write_car(&hb.cid, NULL, 0);
    lseek(fd, 0, SEEK_END);
    uint8_t vi[VARINT_MAX_BYTES];
    size_t vn = varint_encode(CAR_MAX_SECTION_BYTES + 1, vi);
    cr_assert_eq(write(fd, vi, vn), (ssize_t)vn);
    cr_assert_eq(write(fd, over.bytes, over.len), (ssize_t)over.len);
    lseek(fd, 0, SEEK_SET);
    cr_assert_eq(read_everything(fd, &count, &e), ERR_LIMIT, "%s", e.msg);
    cr_assert(strstr(e.msg, "limit"), "%s", e.msg);
    close(fd);
    free(data);
}

Test(car, writer_refuses_data_that_does_not_match_its_cid) {
    tblock b;
    make_block(&b, 1, CID_CODEC_DAG_CBOR);
    int fd = temp_fd();
    err_t e = {0};
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, &b.cid, &w, &e), ERR_OK);
    b.data[0] ^= 1;
    cr_assert_eq(car_writer_put(w, &b.cid, b.data, b.len, &e), ERR_MISMATCH);
    car_writer_free(w);
    close(fd);
}

Test(car, rejects_blocks_with_an_unsupported_hash) {
    tblock b;
    make_block(&b, 1, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b.cid, &b, 1);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    close(fd);
    size_t hdr = 1 + p[0];
    p[hdr + 1 + 2] = 0x13; /* sha2-512 code with a 32-byte digest */
    int tfd = fd_from_bytes(p, n);
    size_t count;
    err_t e = {0};
    err_code rc = read_everything(tfd, &count, &e);
    cr_assert_eq(rc, ERR_INVALID, "got %s: %s", err_code_name(rc), e.msg);
    cr_assert(strstr(e.msg, "sha2-256"), "%s", e.msg);
    close(tfd);
    free(p);
}

Test(car, streams_from_a_pipe) {
    tblock b[4];
    for (int i = 0; i < 4; i++) make_block(&b[i], i, CID_CODEC_DAG_CBOR);
    int fd = write_car(&b[0].cid, b, 4);
    size_t n;
    uint8_t *p = read_all(fd, &n);
    close(fd);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    cr_assert_eq(write(pfd[1], p, n), (ssize_t)n); /* small: fits the pipe buffer */
    close(pfd[1]);
    size_t count;
    err_t e = {0};
    cr_assert_eq(read_everything(pfd[0], &count, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(count, 4);
    close(pfd[0]);
    free(p);
}

/* 100k blocks (~12 MB): the reader's buffer stays at its initial chunk size, far below the
 * file size, and every block is still checked. */
Test(car, streams_100k_blocks_with_a_bounded_buffer, .timeout = 300) {
    enum { N = 100000 };
    int fd = temp_fd();
    err_t e = {0};
    tblock root;
    make_block(&root, -1, CID_CODEC_DAG_CBOR);
    car_writer *w = NULL;
    cr_assert_eq(car_writer_new(fd, &root.cid, &w, &e), ERR_OK);
    uint8_t data[80];
    memset(data, 'x', sizeof data);
    for (int i = 0; i < N; i++) {
        memcpy(data, &i, sizeof i);
        cid_t cid;
        cid_compute(&cid, CID_CODEC_RAW, data, sizeof data);
        cr_assert_eq(car_writer_put(w, &cid, data, sizeof data, &e), ERR_OK);
    }
    cr_assert_eq(car_writer_finish(w, &e), ERR_OK);
    uint64_t written = car_writer_bytes_written(w);
    car_writer_free(w);
    cr_assert_eq(file_size(fd), written);
    lseek(fd, 0, SEEK_SET);
    car_reader *r = NULL;
    cr_assert_eq(car_reader_open(fd, &r, &e), ERR_OK);
    size_t count = 0;
    for (;;) {
        cid_t cid;
        const uint8_t *d;
        size_t len;
        cr_assert_eq(car_reader_next(r, &cid, &d, &len, &e), ERR_OK, "block %zu: %s", count, e.msg);
        if (!d) break;
        int got;
        memcpy(&got, d, sizeof got);
        cr_assert_eq(got, (int)count, "blocks come in file order");
        count++;
    }
    cr_assert_eq(count, N);
    size_t peak = car_reader_peak_buffer_bytes(r);
    cr_assert_leq(peak, (size_t)128 << 10, "peak buffer %zu bytes for a %zu-byte file", peak, file_size(fd));
    cr_assert_lt(peak * 50, file_size(fd), "buffer is a small fraction of the file");
    car_reader_free(r);
    close(fd);
}
