/* err.h — errors as values: a status code plus a human message the CLI can print.
 * Nothing below src/cli/ prints; functions fill an err_t and return its code. */
#ifndef PDSMOVE_ERR_H
#define PDSMOVE_ERR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    ERR_OK = 0,
    ERR_INVALID,     /* input is malformed (bad encoding, bad syntax, bad signature) */
    ERR_LIMIT,       /* input exceeds a size/depth/count limit */
    ERR_TRUNCATED,   /* input ended early */
    ERR_MISMATCH,    /* hash/CID/signature/key does not match */
    ERR_NOT_FOUND,   /* a referenced item is missing */
    ERR_IO,          /* file or OS error */
    ERR_NOMEM,       /* allocation failed */
    ERR_NETWORK,     /* transport failure (retryable) */
    ERR_REMOTE,      /* server answered with an error */
    ERR_CONFLICT,    /* the state does not allow it: journal in use, stopped run, tombstoned DID
                      * (not ERR_STATE: OpenSSL has a typedef of that name) */
    ERR_USAGE,       /* caller used the API or CLI wrongly */
    ERR_RATELIMIT    /* a server's rate limit is used up and resets only later (hours): stop
                      * cleanly, resumable; the message says when */
} err_code;

#define ERR_MSG_MAX 512

typedef struct {
    err_code code;
    char msg[ERR_MSG_MAX];
} err_t;

/* Sets e (if non-NULL) and returns code, so callers can `return err_set(e, ...)`. */
err_code err_set(err_t *e, err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with context: "reading x: <old msg>". Returns e->code. */
err_code err_wrap(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_clear(err_t *e);
const char *err_code_name(err_code code);

#endif
