/* car.h — CAR v1 (content-addressed archive) streaming reader and writer over a file
 * descriptor. The reader keeps one bounded buffer (never the whole file), checks every
 * block's hash against its CID, and tells a truncated file from a corrupted block from a
 * malformed one. The writer streams blocks out through a small buffer. */
#ifndef PDSMOVE_CAR_H
#define PDSMOVE_CAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pdsmove/cid.h"
#include "pdsmove/err.h"

#define CAR_MAX_HEADER_BYTES ((size_t)64 << 10) /* a header is {version, roots}: tiny */
#define CAR_MAX_BLOCK_BYTES ((size_t)2 << 20)   /* block data, without its CID */
#define CAR_MAX_ROOTS 16
/* A section is varint(len) ‖ CID ‖ data; len covers CID + data. */
#define CAR_MAX_SECTION_BYTES (CAR_MAX_BLOCK_BYTES + CID_MAX_BYTES)

/* ---- reader ---- */
typedef struct car_reader car_reader;

/* Reads and checks the header from fd's current position (fd stays the caller's; it is
 * not closed). Errors: ERR_TRUNCATED (file ends in the header), ERR_INVALID (not a CAR v1
 * header), ERR_LIMIT (header too large or too many roots), ERR_IO, ERR_NOMEM. */
err_code car_reader_open(int fd, car_reader **out, err_t *e);
/* The header's roots (borrowed, valid until car_reader_free). */
const cid_t *car_reader_roots(const car_reader *r, size_t *n_roots);
/* Next block. On success *data points into the reader's buffer and stays valid only until
 * the next call (borrowed). At a clean end of file: ERR_OK with *data == NULL, *len == 0.
 * Every block's data is hashed and compared with its CID: a mismatch is ERR_MISMATCH naming
 * the CID and file offset. ERR_TRUNCATED when the file ends inside a block, ERR_INVALID for a
 * malformed section (bad varint, bad CID, zero length), ERR_LIMIT for a block over
 * CAR_MAX_BLOCK_BYTES. After an error the reader must not be used again except to free. */
err_code car_reader_next(car_reader *r, cid_t *cid, const uint8_t **data, size_t *len, err_t *e);
/* File offsets (from where the fd was when opened) of the last block returned: where its
 * section starts (the varint) and where its data starts. */
uint64_t car_reader_block_offset(const car_reader *r);
uint64_t car_reader_data_offset(const car_reader *r);
/* Blocks returned so far, and bytes consumed from the fd so far. */
uint64_t car_reader_block_count(const car_reader *r);
uint64_t car_reader_bytes_read(const car_reader *r);
/* The largest the read buffer has been: bounded by the largest section, not the file. */
size_t car_reader_peak_buffer_bytes(const car_reader *r);
void car_reader_free(car_reader *r); /* NULL is fine; does not close the fd */

/* ---- writer ---- */
typedef struct car_writer car_writer;

/* Writes the header {version:1, roots:[root]} to fd (not closed by the writer). */
err_code car_writer_new(int fd, const cid_t *root, car_writer **out, err_t *e);
/* Appends one block. The data must hash to cid (ERR_MISMATCH otherwise: a writer never
 * produces a corrupt archive) and fit CAR_MAX_BLOCK_BYTES (ERR_LIMIT). */
err_code car_writer_put(car_writer *w, const cid_t *cid, const uint8_t *data, size_t len, err_t *e);
/* Flushes everything buffered to fd. The writer still needs car_writer_free. */
err_code car_writer_finish(car_writer *w, err_t *e);
uint64_t car_writer_bytes_written(const car_writer *w);
void car_writer_free(car_writer *w); /* NULL is fine; drops unflushed data */

#endif
