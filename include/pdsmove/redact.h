/* redact.h — keeps secrets out of text that is printed or stored. Every secret in a set, and
 * every run of at least REDACT_MIN_RUN characters taken from one (what a server's echo cut short
 * by a message limit leaves), becomes "[redacted]". A set holds copies of its secrets (no heap):
 * redact_set_clear wipes them with explicit_bzero. */
#ifndef PDSMOVE_REDACT_H
#define PDSMOVE_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include "pdsmove/err.h"

#define REDACT_SECRETS_MAX 8      /* secrets in one set */
#define REDACT_SECRET_SIZE 1024   /* bytes per secret, NUL included */
#define REDACT_MIN_RUN 12         /* shorter pieces are too often ordinary words ("password") */
#define REDACT_MIN_SECRET 3       /* shorter secrets cannot be told apart from ordinary text */
#define REDACT_MARK "[redacted]"

typedef struct {
    size_t n;
    size_t len[REDACT_SECRETS_MAX];
    char secret[REDACT_SECRETS_MAX][REDACT_SECRET_SIZE];
} redact_set;

void redact_set_init(redact_set *s);
/* Copies secret into s. NULL and secrets shorter than REDACT_MIN_SECRET are skipped (ERR_OK).
 * ERR_LIMIT (s unchanged) if s is full or secret does not fit REDACT_SECRET_SIZE: a secret
 * cut short would leave its tail unredacted. */
err_code redact_set_add(redact_set *s, const char *secret, err_t *e);
/* Wipes every secret; s is empty afterwards. */
void redact_set_clear(redact_set *s);
bool redact_set_empty(const redact_set *s);

/* Writes in (NULL reads as "") to out, redacted and NUL-terminated (size 0: nothing); returns out.
 * If out is too small the text ends early, never inside a secret: a mark that does not fit is
 * not written, and neither is anything after it. */
const char *redact_text(const redact_set *s, const char *in, char *out, size_t size);

#endif
