/* redact.c — secrets out of printed and stored text; see redact.h.
 * Must never: write any part of a secret that the rules redact, even when the output buffer is
 * too small, or keep a secret after redact_set_clear. */
#include "pdsmove/redact.h"

#include <string.h>

void redact_set_init(redact_set *s) { memset(s, 0, sizeof *s); }

err_code redact_set_add(redact_set *s, const char *secret, err_t *e) {
    if (!secret) return ERR_OK;
    size_t len = strnlen(secret, REDACT_SECRET_SIZE);
    if (len < REDACT_MIN_SECRET) return ERR_OK;
    if (len >= REDACT_SECRET_SIZE)
        return err_set(e, ERR_LIMIT, "a secret longer than %d characters cannot be kept out of the output",
                       REDACT_SECRET_SIZE - 1);
    if (s->n >= REDACT_SECRETS_MAX)
        return err_set(e, ERR_LIMIT, "more than %d secrets to keep out of the output", REDACT_SECRETS_MAX);
    memcpy(s->secret[s->n], secret, len + 1);
    s->len[s->n] = len;
    s->n++;
    return ERR_OK;
}

void redact_set_clear(redact_set *s) { explicit_bzero(s, sizeof *s); }

bool redact_set_empty(const redact_set *s) { return s->n == 0; }

/* Length of the longest run at text that also occurs in secret. */
static size_t secret_run(const char *text, const char *secret, size_t secret_len) {
    size_t best = 0;
    for (size_t j = 0; j < secret_len && secret_len - j > best; j++) {
        size_t k = 0;
        while (text[k] && j + k < secret_len && text[k] == secret[j + k]) k++;
        if (k > best) best = k;
    }
    return best;
}

const char *redact_text(const redact_set *s, const char *in, char *out, size_t size) {
    static const char mark[] = REDACT_MARK;
    const size_t ml = sizeof mark - 1;
    if (!size) return out;
    size_t o = 0;
    for (const char *p = in ? in : ""; *p && o + 1 < size;) {
        size_t run = 0;
        for (size_t i = 0; i < s->n; i++) {
            size_t sl = s->len[i];
            size_t k = secret_run(p, s->secret[i], sl);
            if (k >= (sl < REDACT_MIN_RUN ? sl : REDACT_MIN_RUN) && k > run) run = k;
        }
        if (!run) {
            out[o++] = *p++;
            continue;
        }
        if (o + ml + 1 > size) break; /* no room for the mark: the text ends here */
        memcpy(out + o, mark, ml);
        o += ml;
        p += run;
    }
    out[o] = 0;
    return out;
}
