/* plc_log.c — validates a did:plc audit log (/<did>/log/audit) the way the directory's
 * reference implementations do (did-method-plc assureValidNextOp, go-didplc VerifyOpLog) and
 * computes the resulting identity state. Reports the index of the first bad entry; never
 * trusts the log's own "nullified" flags, it recomputes them and requires them to agree. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/plc.h"

#define NONE SIZE_MAX

typedef struct {
    plc_op op;
    cid_t cid;
    char cid_str[CID_STR_MAX];
    const char *created_at; /* borrowed from the JSON */
    int64_t created_ms;
    bool claims_nullified;  /* what the log says */
    bool nullified;         /* what the chain says */
    size_t prev;            /* index of the op this one builds on; NONE for the genesis */
    size_t last_child;      /* most recent op built on this one; NONE if none */
    size_t allowed_n;       /* how many of this op's rotation keys may still sign a child */
} entry_t;

/* CID → entry index, open addressing over the digest (ops are unique by CID). */
typedef struct {
    size_t *slot; /* index + 1; 0 = empty */
    size_t mask;
} cid_index;

typedef struct {
    const json_t *log;
    entry_t *ent;
    size_t n;
    size_t head;
    cid_index idx;
    const char *did; /* borrowed from entry 0 */
} log_ctx;

/* ---------------------------------------------------------------- date-time */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *s, size_t n, int *out) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

err_code plc_parse_datetime(const char *s, int64_t *ms, err_t *e) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int Y, M, D, h, mi, sec, frac = 0;
    size_t len = strnlen(s, 64);
    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        !digits(s, 4, &Y) || !digits(s + 5, 2, &M) || !digits(s + 8, 2, &D) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        goto bad;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        size_t nd = 0;
        for (; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd < 3) frac = frac * 10 + (*p - '0');
        if (nd == 0 || nd > 9) goto bad;
        for (; nd < 3; nd++) frac *= 10;
    }
    int offset_min = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59) goto bad;
        if (*p == '-' && oh == 0 && om == 0) goto bad; /* "-00:00" means unknown offset */
        offset_min = (*p == '+' ? 1 : -1) * (oh * 60 + om);
        p += 6;
    } else {
        goto bad;
    }
    if (*p != '\0') goto bad;
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap) || h > 23 || mi > 59 || sec > 59) goto bad;
    int64_t days = days_from_civil(Y, M, D);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)offset_min * 60) * 1000 + frac;
    return ERR_OK;
bad:
    return err_set(e, ERR_INVALID, "'%.40s' is not an RFC 3339 date-time", s);
}

/* ---------------------------------------------------------------- CID index */

static size_t cid_hash(const cid_t *c) {
    const uint8_t *d = cid_digest(c);
    size_t h = 0;
    for (size_t i = 0; i < sizeof h && i < c->digest_len; i++) h = (h << 8) | d[i];
    return h;
}

static err_code index_init(cid_index *x, size_t n, err_t *e) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    x->slot = calloc(cap, sizeof *x->slot);
    x->mask = cap - 1;
    return x->slot ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory indexing %zu operations", n);
}

static size_t index_find(const log_ctx *c, const cid_t *cid) {
    for (size_t h = cid_hash(cid) & c->idx.mask;; h = (h + 1) & c->idx.mask) {
        size_t s = c->idx.slot[h];
        if (s == 0) return NONE;
        if (cid_eq(&c->ent[s - 1].cid, cid)) return s - 1;
    }
}

static void index_add(log_ctx *c, size_t i) {
    size_t h = cid_hash(&c->ent[i].cid) & c->idx.mask;
    while (c->idx.slot[h]) h = (h + 1) & c->idx.mask;
    c->idx.slot[h] = i + 1;
}

/* ---------------------------------------------------------------- one entry */

/* The entry's fields and its op, CID checked. Does not look at other entries. */
static err_code parse_entry(const json_t *j, entry_t *ent, const char **did, err_t *e) {
    if (!json_is_object(j)) return err_set(e, ERR_INVALID, "log entry is not a JSON object");
    const json_t *d = json_object_get(j, "did"), *c = json_object_get(j, "cid"),
                 *nul = json_object_get(j, "nullified"), *ca = json_object_get(j, "createdAt");
    if (!json_is_string(d)) return err_set(e, ERR_INVALID, "log entry has no \"did\" string");
    if (!json_is_string(c)) return err_set(e, ERR_INVALID, "log entry has no \"cid\" string");
    if (!json_is_boolean(nul)) return err_set(e, ERR_INVALID, "log entry has no \"nullified\" boolean");
    if (!json_is_string(ca)) return err_set(e, ERR_INVALID, "log entry has no \"createdAt\" string");
    *did = json_string_value(d);
    ent->claims_nullified = json_is_true(nul);
    ent->created_at = json_string_value(ca);
    err_code rc = plc_parse_datetime(ent->created_at, &ent->created_ms, e);
    if (rc) {
        err_wrap(e, "createdAt");
        return rc;
    }
    rc = plc_op_from_json(&ent->op, json_object_get(j, "operation"), e);
    if (rc) {
        err_wrap(e, "operation");
        return rc;
    }
    if (!ent->op.sig || !ent->op.sig[0]) return err_set(e, ERR_INVALID, "the operation is not signed");
    rc = plc_op_cid(&ent->op, &ent->cid, e);
    if (rc) return rc;
    cid_format(&ent->cid, ent->cid_str, sizeof ent->cid_str);
    if (strcmp(ent->cid_str, json_string_value(c)))
        return err_set(e, ERR_MISMATCH, "CID mismatch: the log says %.80s but the operation hashes to %s",
                       json_string_value(c), ent->cid_str);
    return ERR_OK;
}

static err_code check_genesis(const entry_t *ent, const char *did, err_t *e) {
    char computed[PLC_DID_MAX];
    err_code rc = plc_op_genesis_did(&ent->op, computed, e);
    if (rc) return rc;
    if (strcmp(computed, did))
        return err_set(e, ERR_MISMATCH, "genesis DID mismatch: the operation hashes to %s, not %.80s", computed, did);
    const char *keys[PLC_MAX_LIST];
    size_t n = plc_op_rotation_keys(&ent->op, keys, PLC_MAX_LIST), k;
    rc = plc_op_find_signer(&ent->op, keys, n, &k, e);
    if (rc) {
        err_wrap(e, "genesis signature (by its own rotation keys)");
        return rc;
    }
    return ERR_OK;
}

err_code plc_log_entry_check(const json_t *entry, err_t *e) {
    entry_t ent;
    memset(&ent, 0, sizeof ent);
    const char *did = NULL;
    err_code rc = parse_entry(entry, &ent, &did, e);
    if (!rc && !ent.op.prev) rc = check_genesis(&ent, did, e);
    plc_op_free(&ent.op);
    return rc;
}

/* ---------------------------------------------------------------- chain rules */

/* The signature of entry i (which builds on j) failed with `first`: explain why in terms of
 * the chain (a recovery by a key without priority, an op that nothing may follow). */
static err_code explain_sig_failure(log_ctx *c, size_t i, size_t j, err_code rc, err_t *e) {
    entry_t *ent = &c->ent[i], *prev = &c->ent[j];
    const char *keys[PLC_MAX_LIST];
    size_t all = plc_op_rotation_keys(&prev->op, keys, PLC_MAX_LIST);
    if (all == 0)
        return err_set(e, ERR_INVALID, "operation #%zu has no rotation keys, so no operation can follow it", j);
    if (rc != ERR_MISMATCH || prev->last_child == NONE || prev->allowed_n >= all) {
        err_wrap(e, "invalid signature");
        return rc;
    }
    size_t k;
    err_t sub;
    err_clear(&sub);
    if (plc_op_find_signer(&ent->op, keys + prev->allowed_n, all - prev->allowed_n, &k, &sub) == ERR_OK)
        return err_set(e, ERR_INVALID,
                       "recovery signed by rotation key #%zu of operation #%zu, which does not have a higher "
                       "priority (lower index) than key #%zu that signed the operation it would nullify (#%zu)",
                       prev->allowed_n + k, j, prev->allowed_n, prev->last_child);
    err_wrap(e, "invalid signature");
    return rc;
}

/* Nullifies the chain that starts at the fork point j's current child. */
static void nullify_from(log_ctx *c, size_t first) {
    for (size_t x = first, steps = 0; x != NONE; x = c->ent[x].last_child, steps++) {
        assert(steps < c->n);
        assert(!c->ent[x].nullified);
        c->ent[x].nullified = true;
    }
}

static err_code apply_update(log_ctx *c, size_t i, err_t *e) {
    entry_t *ent = &c->ent[i];
    cid_t prev_cid;
    err_code rc = cid_parse(&prev_cid, ent->op.prev, e);
    if (rc) return rc; /* plc_op_from_json already checked it */
    size_t j = index_find(c, &prev_cid);
    if (j == NONE || j >= i)
        return err_set(e, ERR_INVALID, "prev %.80s is not an earlier operation in this log", ent->op.prev);
    entry_t *prev = &c->ent[j];
    if (prev->nullified)
        return err_set(e, ERR_INVALID, "prev is operation #%zu, which is nullified: a nullified operation cannot be built upon", j);
    if (prev->op.type == PLC_OP_TOMBSTONE)
        return err_set(e, ERR_INVALID, "prev is operation #%zu, a tombstone: nothing can follow a tombstone", j);
    const char *keys[PLC_MAX_LIST];
    size_t all = plc_op_rotation_keys(&prev->op, keys, PLC_MAX_LIST), k;
    assert(prev->allowed_n <= all);
    rc = plc_op_find_signer(&ent->op, keys, prev->allowed_n, &k, e);
    if (rc) return explain_sig_failure(c, i, j, rc, e);
    const entry_t *head = &c->ent[c->head];
    if (prev->last_child == NONE) {
        /* a plain update: only the head has no child among non-nullified ops */
        assert(j == c->head);
        if (ent->created_ms <= prev->created_ms)
            return err_set(e, ERR_INVALID, "createdAt %.40s is not after its prev's (%.40s)", ent->created_at, prev->created_at);
    } else {
        /* a fork: every op after j on the current chain is nullified, if allowed */
        const entry_t *first = &c->ent[prev->last_child];
        if (ent->created_ms <= head->created_ms)
            return err_set(e, ERR_INVALID, "createdAt %.40s is not after the latest operation's (%.40s)", ent->created_at,
                           head->created_at);
        int64_t late_ms = ent->created_ms - first->created_ms;
        if (late_ms > PLC_RECOVERY_WINDOW_MS)
            return err_set(e, ERR_INVALID,
                           "recovery too late: %.40s is %lld.%03lld s after operation #%zu (%.40s) that it would nullify, "
                           "beyond the 72-hour recovery window",
                           ent->created_at, (long long)(late_ms / 1000), (long long)(late_ms % 1000), prev->last_child,
                           first->created_at);
        nullify_from(c, prev->last_child);
    }
    prev->allowed_n = k; /* later forks from j need a key of higher priority still */
    prev->last_child = i;
    ent->prev = j;
    return ERR_OK;
}

static err_code apply_entry(log_ctx *c, size_t i, err_t *e) {
    entry_t *ent = &c->ent[i];
    const char *did = NULL;
    err_code rc = parse_entry(json_array_get(c->log, i), ent, &did, e);
    if (rc) return rc;
    if (i == 0) c->did = did;
    else if (strcmp(did, c->did))
        return err_set(e, ERR_INVALID, "entry is for %.80s but the log is for %.80s", did, c->did);
    size_t dup = index_find(c, &ent->cid);
    if (dup != NONE) return err_set(e, ERR_INVALID, "the same operation as #%zu appears twice", dup);
    if (!ent->op.prev) {
        if (i > 0) return err_set(e, ERR_INVALID, "a second genesis operation (prev is null)");
        rc = check_genesis(ent, did, e);
        if (rc) return rc;
    } else {
        if (i == 0) return err_set(e, ERR_INVALID, "the first operation is not a genesis operation (its prev is not null)");
        rc = apply_update(c, i, e);
        if (rc) return rc;
    }
    const char *keys[PLC_MAX_LIST];
    ent->allowed_n = plc_op_rotation_keys(&ent->op, keys, PLC_MAX_LIST);
    index_add(c, i);
    c->head = i;
    return ERR_OK;
}

/* ---------------------------------------------------------------- whole log */

void plc_state_init(plc_state *s) {
    memset(s, 0, sizeof *s);
    plc_op_init(&s->op, PLC_OP_REGULAR);
}

void plc_state_free(plc_state *s) {
    if (!s) return;
    plc_op_free(&s->op);
    plc_state_init(s);
}

static err_code check_flags(const log_ctx *c, size_t *bad, err_t *e) {
    for (size_t i = 0; i < c->n; i++) {
        const entry_t *x = &c->ent[i];
        if (x->claims_nullified == x->nullified) continue;
        *bad = i;
        if (i == 0) return err_set(e, ERR_INVALID, "operation #0 (%s): the genesis operation cannot be nullified", x->cid_str);
        return err_set(e, ERR_INVALID, "operation #%zu (%s): the log marks it nullified=%s but the chain says it is %s",
                       i, x->cid_str, x->claims_nullified ? "true" : "false",
                       x->nullified ? "nullified" : "not nullified");
    }
    return ERR_OK;
}

static err_code fill_state(const log_ctx *c, plc_state *out, err_t *e) {
    const entry_t *head = &c->ent[c->head];
    assert(strlen(c->did) < sizeof out->did); /* equal to a computed genesis DID */
    snprintf(out->did, sizeof out->did, "%s", c->did);
    snprintf(out->last_cid, sizeof out->last_cid, "%s", head->cid_str);
    snprintf(out->last_created_at, sizeof out->last_created_at, "%s", head->created_at);
    out->head_index = c->head;
    out->n_ops = c->n;
    for (size_t i = 0; i < c->n; i++) out->n_nullified += c->ent[i].nullified;
    if (head->op.type == PLC_OP_TOMBSTONE) {
        out->tombstoned = true;
        return ERR_OK;
    }
    plc_op_free(&out->op);
    return plc_op_normalize(&head->op, &out->op, e);
}

err_code plc_log_validate(const json_t *log, const char *expected_did, plc_state *out, size_t *bad_index, err_t *e) {
    *bad_index = NONE;
    plc_state_init(out);
    if (!json_is_array(log)) return err_set(e, ERR_INVALID, "the audit log is not a JSON array");
    size_t n = json_array_size(log);
    if (n == 0) return err_set(e, ERR_INVALID, "the audit log is empty");
    if (n > PLC_LOG_MAX_OPS)
        return err_set(e, ERR_LIMIT, "the audit log has %zu entries, over the limit of %d", n, PLC_LOG_MAX_OPS);
    log_ctx c = {.log = log, .n = n, .head = NONE};
    c.ent = calloc(n, sizeof *c.ent);
    if (!c.ent) return err_set(e, ERR_NOMEM, "out of memory for %zu log entries", n);
    err_code rc = index_init(&c.idx, n, e);
    for (size_t i = 0; i < n; i++) {
        c.ent[i].prev = c.ent[i].last_child = NONE;
        plc_op_init(&c.ent[i].op, PLC_OP_REGULAR);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        rc = apply_entry(&c, i, e);
        if (!rc && i == 0 && expected_did && strcmp(c.did, expected_did))
            rc = err_set(e, ERR_MISMATCH, "the log is for %.80s, not %.80s", c.did, expected_did);
        if (rc) {
            *bad_index = i;
            const json_t *cid = json_object_get(json_array_get(log, i), "cid");
            err_wrap(e, "operation #%zu (%.80s)", i, json_is_string(cid) ? json_string_value(cid) : "no cid");
        }
    }
    if (!rc) rc = check_flags(&c, bad_index, e);
    if (!rc) rc = fill_state(&c, out, e);
    if (rc) plc_state_free(out);
    for (size_t i = 0; i < n; i++) plc_op_free(&c.ent[i].op);
    free(c.ent);
    free(c.idx.slot);
    return rc;
}
