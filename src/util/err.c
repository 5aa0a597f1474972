/* err.c — the error value every layer fills in; see err.h. */
#include "pdsmove/err.h"

#include <stdio.h>
#include <string.h>

err_code err_set(err_t *e, err_code code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

err_code err_wrap(err_t *e, const char *fmt, ...) {
    if (!e) return ERR_INVALID;
    char prefix[ERR_MSG_MAX];
    char old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(e->msg, sizeof e->msg, "%s: %s", prefix, old);
    return e->code;
}

void err_clear(err_t *e) {
    if (e) {
        e->code = ERR_OK;
        e->msg[0] = '\0';
    }
}

const char *err_code_name(err_code code) {
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid";
    case ERR_LIMIT: return "limit";
    case ERR_TRUNCATED: return "truncated";
    case ERR_MISMATCH: return "mismatch";
    case ERR_NOT_FOUND: return "not found";
    case ERR_IO: return "i/o";
    case ERR_NOMEM: return "out of memory";
    case ERR_NETWORK: return "network";
    case ERR_REMOTE: return "remote";
    case ERR_CONFLICT: return "state";
    case ERR_USAGE: return "usage";
    case ERR_RATELIMIT: return "rate limit";
    }
    return "unknown";
}
