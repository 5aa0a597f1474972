/* buf.h — a growable byte buffer with a hard size limit (so no input can make it grow
 * without bound). Owned: buf_free releases it. */
#ifndef PDSMOVE_BUF_H
#define PDSMOVE_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "pdsmove/err.h"

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t limit_bytes; /* 0 = BUF_DEFAULT_LIMIT */
} buf_t;

#define BUF_DEFAULT_LIMIT ((size_t)64 << 20)

void buf_init(buf_t *b, size_t limit_bytes);
err_code buf_reserve(buf_t *b, size_t extra, err_t *e);
err_code buf_append(buf_t *b, const void *p, size_t n, err_t *e);
err_code buf_append_byte(buf_t *b, uint8_t c, err_t *e);
err_code buf_append_str(buf_t *b, const char *s, err_t *e);
/* Appends a NUL without counting it in len, so data can be used as a C string. */
err_code buf_terminate(buf_t *b, err_t *e);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);

#endif
