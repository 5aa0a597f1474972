/* buf.c — growable byte buffer with a limit; see buf.h. */
#include "pdsmove/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *b, size_t limit_bytes) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit_bytes = limit_bytes ? limit_bytes : BUF_DEFAULT_LIMIT;
}

err_code buf_reserve(buf_t *b, size_t extra, err_t *e) {
    size_t limit = b->limit_bytes ? b->limit_bytes : BUF_DEFAULT_LIMIT;
    if (extra > limit || b->len > limit - extra)
        return err_set(e, ERR_LIMIT, "buffer would exceed its limit of %zu bytes", limit);
    size_t need = b->len + extra + 1; /* room for a terminator */
    if (need <= b->cap) return ERR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return err_set(e, ERR_NOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return ERR_OK;
}

err_code buf_append(buf_t *b, const void *p, size_t n, err_t *e) {
    if (n == 0) return ERR_OK;
    err_code rc = buf_reserve(b, n, e);
    if (rc) return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return ERR_OK;
}

err_code buf_append_byte(buf_t *b, uint8_t c, err_t *e) { return buf_append(b, &c, 1, e); }

err_code buf_append_str(buf_t *b, const char *s, err_t *e) { return buf_append(b, s, strlen(s), e); }

err_code buf_terminate(buf_t *b, err_t *e) {
    err_code rc = buf_reserve(b, 0, e);
    if (rc) return rc;
    b->data[b->len] = 0;
    return ERR_OK;
}

void buf_reset(buf_t *b) { b->len = 0; }

void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
