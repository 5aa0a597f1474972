/* plc_custody.c — the logic behind `pdsmove plc show|watch|add-rotation-key|recover`: the
 * audit log as a readable history, the watch state file (atomic, 0600, locked), the op that
 * puts the user's key first (signed by the PDS after the emailed token), and the recovery op
 * the user's key signs to undo what followed a good op within 72 hours. Nothing is sent before
 * it has been checked locally with the data layer; private keys are wiped after use. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/pds.h"
#include "pdsmove/plc_custody.h"
#include "pdsmove/plc_submit.h"
#include "pdsmove/plc_token.h"

#define NONE SIZE_MAX
#define PATH_BUF 4096

/* ---------------------------------------------------------------- small helpers */

typedef struct {
    char *p;
    size_t size, len;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->size == 0 || b->len + 1 >= b->size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    b->len += (size_t)n;
    if (b->len >= b->size) b->len = b->size - 1;
}

static void note(const plc_custody_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const plc_custody_ui *ui, const char *fmt, ...) {
    if (!ui->info) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ui->info(ui->ctx, msg);
}

static int64_t now_ms_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void plc_format_time(int64_t ms, char *out, size_t size) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm)) {
        snprintf(out, size, "?");
        return;
    }
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n) snprintf(out + n, size - n, ".%03dZ", (int)(ms % 1000));
}

static bool list_has(char *const *v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return true;
    return false;
}

static size_t list_index(char *const *v, size_t n, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return NONE;
}

static xrpc_options custody_xo(const plc_custody_ui *ui, bool insecure) {
    xrpc_options x = {.allow_insecure_http = insecure, .on_wait = ui->wait, .wait_ctx = ui->ctx};
    return x;
}

/* ---------------------------------------------------------------- history */

void plc_history_init(plc_history *h) {
    memset(h, 0, sizeof *h);
    plc_state_init(&h->state);
}

void plc_history_free(plc_history *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n; i++) plc_op_free(&h->ent[i].op);
    free(h->ent);
    plc_state_free(&h->state);
    plc_history_init(h);
}

typedef struct {
    const char *cid;
    size_t index;
} cid_slot;

static int slot_cmp(const void *a, const void *b) { return strcmp(((const cid_slot *)a)->cid, ((const cid_slot *)b)->cid); }

/* Fills entry i from the (already validated) log entry j. */
static err_code fill_entry(plc_hist_entry *x, const json_t *j, err_t *e) {
    snprintf(x->cid, sizeof x->cid, "%s", json_string_value(json_object_get(j, "cid")));
    snprintf(x->created_at, sizeof x->created_at, "%s", json_string_value(json_object_get(j, "createdAt")));
    x->nullified = json_is_true(json_object_get(j, "nullified"));
    err_code rc = plc_parse_datetime(x->created_at, &x->created_ms, e);
    plc_op raw;
    if (!rc) rc = plc_op_from_json(&raw, json_object_get(j, "operation"), e);
    if (rc) return rc;
    x->tombstone = raw.type == PLC_OP_TOMBSTONE;
    if (x->tombstone) {
        x->op = raw; /* moved */
        return ERR_OK;
    }
    rc = plc_op_normalize(&raw, &x->op, e);
    if (!rc && raw.prev && !x->op.prev) rc = plc_op_set_prev(&x->op, raw.prev, e);
    plc_op_free(&raw);
    return rc;
}

err_code plc_history_from_log(const json_t *log, const char *did, plc_history *h, size_t *bad_index, err_t *e) {
    plc_history_init(h);
    size_t bad;
    err_code rc = plc_log_validate(log, did, &h->state, bad_index ? bad_index : &bad, e);
    if (rc) return rc;
    size_t n = json_array_size(log);
    h->ent = calloc(n, sizeof *h->ent);
    cid_slot *idx = calloc(n, sizeof *idx);
    if (!h->ent || !idx) {
        free(idx);
        plc_history_free(h);
        return err_set(e, ERR_NOMEM, "out of memory for %zu log entries", n);
    }
    for (size_t i = 0; i < n; i++) plc_op_init(&h->ent[i].op, PLC_OP_REGULAR);
    h->n = n;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = fill_entry(&h->ent[i], json_array_get(log, i), e);
        idx[i].cid = h->ent[i].cid;
        idx[i].index = i;
    }
    if (!rc) qsort(idx, n, sizeof *idx, slot_cmp);
    size_t *first_child = rc ? NULL : malloc(n * sizeof *first_child);
    if (!rc && !first_child) rc = err_set(e, ERR_NOMEM, "out of memory for %zu log entries", n);
    for (size_t i = 0; !rc && i < n; i++) first_child[i] = NONE;
    for (size_t i = 0; !rc && i < n; i++) {
        plc_hist_entry *x = &h->ent[i];
        x->prev = x->signer = x->undoes = NONE;
        if (!x->op.prev) continue;
        cid_slot key = {.cid = x->op.prev}, *hit = bsearch(&key, idx, n, sizeof *idx, slot_cmp);
        if (!hit || hit->index >= i) {
            rc = err_set(e, ERR_INVALID, "operation #%zu: prev %.80s is not an earlier operation", i, x->op.prev);
            break;
        }
        x->prev = hit->index;
        if (first_child[x->prev] == NONE) first_child[x->prev] = i;
        else x->undoes = first_child[x->prev];
        const char *keys[PLC_MAX_LIST];
        size_t nk = plc_op_rotation_keys(&h->ent[x->prev].op, keys, PLC_MAX_LIST), k;
        if (plc_op_find_signer(&x->op, keys, nk, &k, e) != ERR_OK) {
            rc = err_wrap(e, "operation #%zu", i);
            break;
        }
        x->signer = k;
    }
    free(idx);
    free(first_child);
    if (rc) plc_history_free(h);
    return rc;
}

err_code plc_history_fetch(const char *plc_url, const char *did, const xrpc_options *xo, plc_history *h, json_t **log_out,
                           err_t *e) {
    json_t *log = NULL;
    plc_history_init(h);
    if (log_out) *log_out = NULL;
    err_code rc = plc_audit_get(plc_url, did, xo, &log, e);
    if (rc) return rc;
    rc = plc_history_from_log(log, did, h, NULL, e);
    if (rc) {
        json_decref(log);
        return err_wrap(e, "the PLC directory's audit log of %s does not validate", did);
    }
    if (log_out) *log_out = log;
    else json_decref(log);
    return ERR_OK;
}

size_t plc_history_find(const plc_history *h, const char *cid) {
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->ent[i].cid, cid)) return i;
    return NONE;
}

size_t plc_history_child(const plc_history *h, size_t i) {
    for (size_t j = i + 1; j < h->n; j++)
        if (h->ent[j].prev == i && !h->ent[j].nullified) return j;
    return NONE;
}

/* ---------------------------------------------------------------- describing changes */

static const char *or_none(const char *s) { return s ? s : "(none)"; }

static void describe_keys(sbuf *b, const plc_op *before, const plc_op *after, bool *any) {
    for (size_t i = 0; i < after->n_rotation_keys; i++)
        if (!list_has(before->rotation_keys, before->n_rotation_keys, after->rotation_keys[i])) {
            sb_add(b, "%srotation key added at #%zu: %s", *any ? "; " : "", i, after->rotation_keys[i]);
            *any = true;
        }
    for (size_t i = 0; i < before->n_rotation_keys; i++)
        if (!list_has(after->rotation_keys, after->n_rotation_keys, before->rotation_keys[i])) {
            sb_add(b, "%srotation key removed (was #%zu): %s", *any ? "; " : "", i, before->rotation_keys[i]);
            *any = true;
        }
    /* keys present in both whose rank among the common keys changed */
    size_t rb = 0;
    bool moved = false;
    for (size_t i = 0; i < before->n_rotation_keys && !moved; i++) {
        if (!list_has(after->rotation_keys, after->n_rotation_keys, before->rotation_keys[i])) continue;
        size_t ra = 0;
        for (size_t j = 0; j < after->n_rotation_keys; j++) {
            if (!list_has(before->rotation_keys, before->n_rotation_keys, after->rotation_keys[j])) continue;
            if (!strcmp(after->rotation_keys[j], before->rotation_keys[i])) break;
            ra++;
        }
        moved = ra != rb;
        rb++;
    }
    if (moved) {
        sb_add(b, "%srotation keys reordered:", *any ? "; " : "");
        for (size_t i = 0; i < after->n_rotation_keys; i++) sb_add(b, " #%zu %s", i, after->rotation_keys[i]);
        *any = true;
    }
}

static void describe_named(sbuf *b, const plc_op *before, const plc_op *after, bool *any) {
    const char *hb = plc_op_handle(before), *ha = plc_op_handle(after);
    if ((hb || ha) && (!hb || !ha || strcmp(hb, ha))) {
        sb_add(b, "%shandle changed %s -> %s", *any ? "; " : "", or_none(hb), or_none(ha));
        *any = true;
    }
    for (size_t i = 0; i < after->n_also_known_as; i++)
        if (strncmp(after->also_known_as[i], "at://", 5) && !list_has(before->also_known_as, before->n_also_known_as, after->also_known_as[i])) {
            sb_add(b, "%salias added: %s", *any ? "; " : "", after->also_known_as[i]);
            *any = true;
        }
    for (size_t i = 0; i < before->n_also_known_as; i++)
        if (strncmp(before->also_known_as[i], "at://", 5) && !list_has(after->also_known_as, after->n_also_known_as, before->also_known_as[i])) {
            sb_add(b, "%salias removed: %s", *any ? "; " : "", before->also_known_as[i]);
            *any = true;
        }
    for (size_t i = 0; i < after->n_services; i++) {
        const plc_service *sa = &after->services[i], *sb = plc_op_service(before, sa->name);
        bool pds = !strcmp(sa->name, "atproto_pds");
        if (!sb && pds) sb_add(b, "%sPDS set: %s", *any ? "; " : "", sa->endpoint);
        else if (!sb) sb_add(b, "%sservice added %s: %s", *any ? "; " : "", sa->name, sa->endpoint);
        else if (strcmp(sb->endpoint, sa->endpoint) || strcmp(sb->type, sa->type)) {
            if (pds) sb_add(b, "%sPDS moved %s -> %s", *any ? "; " : "", sb->endpoint, sa->endpoint);
            else sb_add(b, "%sservice %s changed %s -> %s", *any ? "; " : "", sa->name, sb->endpoint, sa->endpoint);
        } else continue;
        *any = true;
    }
    for (size_t i = 0; i < before->n_services; i++)
        if (!plc_op_service(after, before->services[i].name)) {
            sb_add(b, "%sservice removed: %s (%s)", *any ? "; " : "", before->services[i].name, before->services[i].endpoint);
            *any = true;
        }
    for (size_t i = 0; i < after->n_vmethods; i++) {
        const char *name = after->vmethods[i].name, *kb = plc_op_vmethod(before, name), *ka = after->vmethods[i].key;
        bool atp = !strcmp(name, "atproto");
        if (!kb) sb_add(b, "%s%s%s: %s", *any ? "; " : "", atp ? "signing key set" : "verification method added ", atp ? "" : name, ka);
        else if (strcmp(kb, ka)) {
            if (atp) sb_add(b, "%ssigning key changed %s -> %s", *any ? "; " : "", kb, ka);
            else sb_add(b, "%sverification method %s changed %s -> %s", *any ? "; " : "", name, kb, ka);
        } else continue;
        *any = true;
    }
    for (size_t i = 0; i < before->n_vmethods; i++)
        if (!plc_op_vmethod(after, before->vmethods[i].name)) {
            sb_add(b, "%sverification method removed: %s", *any ? "; " : "", before->vmethods[i].name);
            *any = true;
        }
}

void plc_describe_change(const plc_op *before, const plc_op *after, char *out, size_t size) {
    sbuf b = {out, size, 0};
    if (size) out[0] = 0;
    if (after->type == PLC_OP_TOMBSTONE) {
        sb_add(&b, "tombstone: the DID was deleted");
        return;
    }
    if (!before) {
        const plc_service *s = plc_op_service(after, "atproto_pds");
        sb_add(&b, "created: handle %s, PDS %s, signing key %s, rotation keys", or_none(plc_op_handle(after)),
               s ? s->endpoint : "(none)", or_none(plc_op_vmethod(after, "atproto")));
        for (size_t i = 0; i < after->n_rotation_keys; i++) sb_add(&b, " #%zu %s", i, after->rotation_keys[i]);
        return;
    }
    bool any = false;
    describe_keys(&b, before, after, &any);
    describe_named(&b, before, after, &any);
    if (!any) sb_add(&b, "no change in content");
}

void plc_history_describe(const plc_history *h, size_t i, char *out, size_t size) {
    const plc_hist_entry *x = &h->ent[i];
    size_t undone = x->undoes;
    if (undone == NONE) {
        plc_describe_change(x->prev == NONE ? NULL : &h->ent[x->prev].op, &x->op, out, size);
        return;
    }
    char change[PLC_CHANGE_MAX];
    plc_describe_change(&h->ent[x->prev].op, &x->op, change, sizeof change);
    bool same = !strcmp(change, "no change in content");
    snprintf(out, size, "recovery: forks at #%zu, nullifying what followed it (from #%zu); %s", x->prev, undone,
             same ? "restores its content" : change);
}

err_code plc_custody_resolve(const char *account, const char *plc_url, const char *via_pds, const xrpc_options *xo,
                             identity_doc *out, err_t *e) {
    err_code rc = identity_resolve(account, plc_url, via_pds, xo, out, NULL, e);
    if (rc) return err_wrap(e, "finding the account %s", account);
    if (strncmp(out->did, PLC_DID_PREFIX, strlen(PLC_DID_PREFIX)))
        return err_set(e, ERR_USAGE, "%s is %s: only did:plc identities have a PLC directory and a rotation-key history", account,
                       out->did);
    return ERR_OK;
}

/* ---------------------------------------------------------------- watch: state file */

static err_code lock_open(const char *state_file, int *fd_out, err_t *e) {
    char lock[PATH_BUF];
    if ((size_t)snprintf(lock, sizeof lock, "%s.lock", state_file) >= sizeof lock)
        return err_set(e, ERR_USAGE, "the state file path %.200s... is too long", state_file);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open the lock file %s: %s", lock, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        return err_set(e, ERR_IO, "cannot lock %s: %s", lock, strerror(err));
    }
    *fd_out = fd;
    return ERR_OK;
}

static void lock_close(int fd) {
    if (fd >= 0) close(fd); /* releases the flock */
}

static err_code mkdirs_for(const char *path, err_t *e) {
    char d[PATH_BUF];
    if ((size_t)snprintf(d, sizeof d, "%s", path) >= sizeof d) return err_set(e, ERR_USAGE, "path too long: %.200s...", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return ERR_OK;
    *slash = 0;
    for (char *s = d + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(d, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", d, strerror(errno));
        *s = '/';
    }
    if (mkdir(d, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", d, strerror(errno));
    return ERR_OK;
}

err_code plc_watch_load(const char *path, json_t **out, err_t *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return ERR_OK;
        return err_set(e, ERR_IO, "cannot read the watch state %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > PLC_WATCH_STATE_MAX_BYTES) {
        close(fd);
        return err_set(e, ERR_INVALID, "%s is not a watch state file (not a regular file of at most %zu bytes)", path,
                       PLC_WATCH_STATE_MAX_BYTES);
    }
    json_error_t je;
    json_t *j = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
    close(fd);
    if (!j) return err_set(e, ERR_INVALID, "%s is not valid JSON (line %d: %s); move it away to start watching afresh", path, je.line, je.text);
    const json_t *ops = json_object_get(j, "ops"), *exp = json_object_get(j, "expected"), *did = json_object_get(j, "did");
    bool ok = json_is_object(j) && (!ops || json_is_array(ops)) && (!exp || json_is_array(exp)) && (!did || json_is_string(did));
    size_t i;
    json_t *v;
    if (ok && ops) json_array_foreach(ops, i, v) ok = ok && json_is_string(v);
    if (ok && exp) json_array_foreach(exp, i, v) ok = ok && json_is_string(v);
    if (!ok) {
        json_decref(j);
        return err_set(e, ERR_INVALID, "%s is not a pdsmove watch state file (expected {\"did\", \"ops\": [CID...], \"expected\": [CID...]}); "
                                       "move it away to start watching afresh", path);
    }
    *out = j;
    return ERR_OK;
}

err_code plc_watch_save(const char *path, const json_t *state, err_t *e) {
    err_code rc = mkdirs_for(path, e);
    if (rc) return rc;
    char tmp[PATH_BUF];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp) return err_set(e, ERR_USAGE, "path too long: %.200s...", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return err_set(e, ERR_IO, "cannot create a temporary file next to %s: %s", path, strerror(errno));
    char *text = json_dumps(state, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) rc = err_set(e, ERR_NOMEM, "out of memory writing %s", path);
    size_t len = text ? strlen(text) : 0, off = 0;
    if (!rc && fchmod(fd, 0600) != 0) rc = err_set(e, ERR_IO, "chmod %s: %s", tmp, strerror(errno));
    while (!rc && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = err_set(e, ERR_IO, "writing %s: %s", tmp, strerror(errno));
        else off += (size_t)w;
    }
    if (!rc && write(fd, "\n", 1) != 1) rc = err_set(e, ERR_IO, "writing %s: %s", tmp, strerror(errno));
    if (!rc && fsync(fd) != 0) rc = err_set(e, ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    free(text);
    if (close(fd) != 0 && !rc) rc = err_set(e, ERR_IO, "closing %s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = err_set(e, ERR_IO, "cannot replace %s: %s", path, strerror(errno));
    if (rc) {
        unlink(tmp);
        return rc;
    }
    char dir[PATH_BUF];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself durable; best effort */
        close(dfd);
    }
    return ERR_OK;
}

size_t plc_watch_default_path(const char *did, char *out, size_t size) {
    const char *d = getenv("PDSMOVE_STATE_DIR"), *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");
    char safe[PLC_DID_MAX + 64];
    size_t k = 0;
    for (const char *p = did; *p && k + 1 < sizeof safe; p++) safe[k++] = (*p == '/') ? '_' : *p;
    safe[k] = 0;
    int n;
    if (d && *d) n = snprintf(out, size, "%s/plc-watch/%s.json", d, safe);
    else if (x && *x) n = snprintf(out, size, "%s/pdsmove/plc-watch/%s.json", x, safe);
    else n = snprintf(out, size, "%s/.local/state/pdsmove/plc-watch/%s.json", h && *h ? h : "/tmp", safe);
    return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

static bool json_list_has(const json_t *arr, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

/* ---------------------------------------------------------------- watch: comparing */

void plc_watch_result_free(plc_watch_result *r) {
    if (!r) return;
    plc_history_free(&r->h);
    free(r->ops);
    r->ops = NULL;
    r->n_ops = 0;
}

err_code plc_watch_compare(const json_t *state, plc_history *h, int64_t now_ms, plc_watch_result *r, err_t *e) {
    memset(r, 0, sizeof *r);
    r->h = *h;
    plc_history_init(h);
    r->first_bad = r->fork = NONE;
    snprintf(r->did, sizeof r->did, "%s", r->h.state.did);
    const json_t *sdid = state ? json_object_get(state, "did") : NULL;
    if (json_is_string(sdid) && strcmp(json_string_value(sdid), r->did))
        return err_set(e, ERR_USAGE, "the watch state file records %s, not %s: use one state file per account",
                       json_string_value(sdid), r->did);
    const json_t *ops = state ? json_object_get(state, "ops") : NULL;
    if (!json_is_array(ops)) {
        r->outcome = PLC_WATCH_FIRST_RUN;
        return ERR_OK;
    }
    r->n_recorded = json_array_size(ops);
    for (size_t i = 0; i < r->n_recorded; i++) {
        const char *want = json_string_value(json_array_get(ops, i));
        if (i >= r->h.n || !want || strcmp(r->h.ent[i].cid, want)) {
            r->outcome = PLC_WATCH_INCONSISTENT;
            snprintf(r->detail, sizeof r->detail,
                     "operation #%zu recorded earlier (%.80s) is %s in the directory's log now: the directory's history "
                     "was rewritten, or the state file belongs to another PLC directory",
                     i, want ? want : "?", i >= r->h.n ? "missing" : "different");
            return ERR_OK;
        }
    }
    r->n_ops = r->h.n - r->n_recorded;
    if (r->n_ops == 0) {
        r->outcome = PLC_WATCH_UNCHANGED;
        return ERR_OK;
    }
    r->ops = calloc(r->n_ops, sizeof *r->ops);
    if (!r->ops) return err_set(e, ERR_NOMEM, "out of memory");
    const json_t *exp = json_object_get(state, "expected");
    bool alarm = false;
    for (size_t k = 0; k < r->n_ops; k++) {
        size_t i = r->n_recorded + k;
        r->ops[k].index = i;
        r->ops[k].expected = json_list_has(exp, r->h.ent[i].cid);
        if (r->ops[k].expected || r->h.ent[i].nullified) continue;
        alarm = true;
        if (r->first_bad == NONE) r->first_bad = i; /* non-nullified ops form the chain, in log order */
    }
    r->outcome = alarm ? PLC_WATCH_UNEXPECTED : PLC_WATCH_EXPECTED;
    if (alarm) {
        const plc_hist_entry *x = &r->h.ent[r->first_bad];
        r->fork = x->prev;
        r->deadline_ms = x->created_ms + PLC_RECOVERY_WINDOW_MS;
        r->recoverable = x->prev != NONE && x->signer != NONE && x->signer > 0 && now_ms <= r->deadline_ms;
    }
    return ERR_OK;
}

/* The state to record: every op of h, the expected CIDs not yet seen kept. */
static json_t *new_state(const plc_history *h, const json_t *old, const char *plc_url) {
    json_t *ops = json_array(), *exp = json_array();
    for (size_t i = 0; i < h->n; i++) json_array_append_new(ops, json_string(h->ent[i].cid));
    const json_t *old_exp = old ? json_object_get(old, "expected") : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(old_exp, i, v) if (json_is_string(v) && plc_history_find(h, json_string_value(v)) == NONE)
        json_array_append(exp, v);
    char at[40];
    plc_format_time(now_ms_clock(), at, sizeof at);
    return json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:o}", "version", PLC_WATCH_STATE_VERSION, "did", h->state.did, "plcUrl",
                     plc_url ? plc_url : IDENTITY_DEFAULT_PLC, "recordedAt", at, "head", h->state.last_cid, "ops", ops,
                     "expected", exp);
}

err_code plc_watch_run(const char *state_file, const char *did, const char *plc_url, const xrpc_options *xo, bool accept,
                       plc_watch_result *r, err_t *e) {
    memset(r, 0, sizeof *r);
    plc_history_init(&r->h);
    r->first_bad = r->fork = NONE;
    snprintf(r->did, sizeof r->did, "%s", did);
    int lock = -1;
    err_code rc = mkdirs_for(state_file, e);
    if (!rc) rc = lock_open(state_file, &lock, e);
    if (rc) return rc;
    json_t *state = NULL, *log = NULL;
    rc = plc_watch_load(state_file, &state, e);
    if (!rc) rc = plc_audit_get(plc_url, did, xo, &log, e);
    if (rc) goto out;
    plc_history h;
    err_t ve;
    err_clear(&ve);
    if (plc_history_from_log(log, did, &h, NULL, &ve) != ERR_OK) {
        r->outcome = PLC_WATCH_INCONSISTENT;
        snprintf(r->detail, sizeof r->detail, "the directory's audit log does not validate: %s", ve.msg);
        goto out;
    }
    rc = plc_watch_compare(state, &h, now_ms_clock(), r, e);
    if (rc) goto out;
    bool save = r->outcome == PLC_WATCH_FIRST_RUN || r->outcome == PLC_WATCH_EXPECTED ||
                (accept && r->outcome != PLC_WATCH_UNCHANGED) || (r->outcome == PLC_WATCH_UNCHANGED && !json_object_get(state, "did"));
    if (save) {
        json_t *ns = new_state(&r->h, state, plc_url);
        rc = ns ? plc_watch_save(state_file, ns, e) : err_set(e, ERR_NOMEM, "out of memory");
        json_decref(ns);
        r->saved = rc == ERR_OK;
    }
out:
    json_decref(state);
    json_decref(log);
    lock_close(lock);
    return rc;
}

err_code plc_watch_expect(const char *state_file, const char *cid, bool create, err_t *e) {
    int lock = -1;
    struct stat st;
    if (!create && stat(state_file, &st) != 0) return err_set(e, ERR_NOT_FOUND, "%s does not exist (nothing watches it)", state_file);
    err_code rc = mkdirs_for(state_file, e);
    if (!rc) rc = lock_open(state_file, &lock, e);
    if (rc) return rc;
    json_t *state = NULL;
    rc = plc_watch_load(state_file, &state, e);
    if (!rc && !state) {
        if (!create) rc = err_set(e, ERR_NOT_FOUND, "%s does not exist (nothing watches it)", state_file);
        else if (!(state = json_pack("{s:i, s:[]}", "version", PLC_WATCH_STATE_VERSION, "expected")))
            rc = err_set(e, ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        json_t *ops = json_object_get(state, "ops"), *exp = json_object_get(state, "expected");
        if (!exp) {
            exp = json_array();
            json_object_set_new(state, "expected", exp);
        }
        if (!json_list_has(ops, cid) && !json_list_has(exp, cid)) {
            json_array_append_new(exp, json_string(cid));
            while (json_array_size(exp) > PLC_WATCH_EXPECTED_MAX) json_array_remove(exp, 0);
            rc = plc_watch_save(state_file, state, e);
        }
    }
    json_decref(state);
    lock_close(lock);
    return rc;
}

err_code plc_watch_expect_op(const char *state_file, const char *did, const json_t *signed_op, err_t *e) {
    plc_op op;
    char cid[CID_STR_MAX], path[PATH_BUF];
    err_code rc = plc_op_from_json(&op, signed_op, e);
    if (rc) return rc;
    rc = plc_op_cid_str(&op, cid, e);
    plc_op_free(&op);
    if (rc) return rc;
    if (!state_file) {
        if (!plc_watch_default_path(did, path, sizeof path)) return err_set(e, ERR_USAGE, "the state directory path is too long");
        state_file = path;
    }
    return plc_watch_expect(state_file, cid, false, e);
}

/* ---------------------------------------------------------------- add-rotation-key */

err_code plc_build_add_key_op(const plc_state *st, const char *did_key, plc_op *out, bool *already_first, err_t *e) {
    plc_op_init(out, PLC_OP_REGULAR);
    *already_first = false;
    if (st->tombstoned) return err_set(e, ERR_CONFLICT, "%s is tombstoned (deleted): no operation can follow", st->did);
    key_pub k;
    err_code rc = key_pub_from_did_key(&k, did_key, e);
    if (rc) return err_wrap(e, "the key to add");
    const plc_op *cur = &st->op;
    if (cur->n_rotation_keys && !strcmp(cur->rotation_keys[0], did_key)) {
        *already_first = true;
        return ERR_OK;
    }
    const char *first[1] = {did_key};
    plc_change c = {.first_keys = first, .n_first_keys = 1};
    return plc_submit_build(cur, st->last_cid, &c, st->did, out, e);
}

err_code plc_check_signed_op(const json_t *signed_op, const plc_state *st, const plc_op *target, char *cid_out, err_t *e) {
    return plc_submit_check(signed_op, target, &st->op, NULL, cid_out, e);
}

static void describe_add(const plc_state *st, const plc_op *target, const char *pds, char *out, size_t size) {
    sbuf b = {out, size, 0};
    sb_add(&b, "PLC operation for %s (the PDS %s signs it after the emailed token):\n", st->did, pds);
    sb_add(&b, "  rotation keys now (index 0 has the highest priority):\n");
    for (size_t i = 0; i < st->op.n_rotation_keys; i++) sb_add(&b, "    %zu. %s\n", i, st->op.rotation_keys[i]);
    sb_add(&b, "  rotation keys after:\n");
    for (size_t i = 0; i < target->n_rotation_keys; i++)
        sb_add(&b, "    %zu. %s%s\n", i, target->rotation_keys[i], i == 0 ? "   <- your key" : "");
    const plc_service *s = plc_op_service(target, "atproto_pds");
    sb_add(&b, "  unchanged: handle %s, PDS %s, signing key %s, %zu service(s)\n", or_none(plc_op_handle(target)),
           s ? s->endpoint : "(none)", or_none(plc_op_vmethod(target, "atproto")), target->n_services);
}

static err_code login(const char *url, const char *did, const plc_add_key_opts *o, const xrpc_options *xo, pds_session **s,
                      err_t *e) {
    err_code rc = pds_session_new(url, xo, s, e);
    if (rc) return rc;
    rc = pds_login(*s, did, o->password, o->auth_factor_token, e);
    if (rc && pds_needs_auth_factor(*s) && !o->auth_factor_token && o->ui.ask_secret) {
        char code[128];
        if (o->ui.ask_secret(o->ui.ctx, "The PDS emailed you a sign-in code (email 2FA). Code: ", code, sizeof code)) {
            rc = pds_login(*s, did, o->password, code, e);
            explicit_bzero(code, sizeof code);
        }
    }
    if (rc) return err_wrap(e, "logging in to %s", url);
    if (pds_is_app_password(*s))
        return err_set(e, ERR_USAGE,
                       "the password given is an app password (token scope %s): changing rotation keys needs the "
                       "account's real password, because app passwords cannot sign PLC operations", (*s)->scope);
    return ERR_OK;
}

static void watch_note(const char *state_file, const char *cid, bool *noted, char *msg, size_t size) {
    *noted = false;
    msg[0] = 0;
    if (!state_file) return;
    err_t we;
    err_clear(&we);
    if (plc_watch_expect(state_file, cid, true, &we) == ERR_OK) *noted = true;
    else snprintf(msg, size, "%s", we.msg);
}

/* The email-token round trip on s: request, obtain, sign. *signed_op owned by the caller. */
static err_code sign_on_pds(pds_session *s, const char *did, const plc_op *target, const plc_add_key_opts *o, json_t **signed_op,
                            err_t *e) {
    plc_token_source src = {.did = did, .token_db = o->plc_token_db, .token_file = o->plc_token_file, .requested_at = time(NULL),
                            .ctx = o->ui.ctx, .info = o->ui.info, .ask_secret = o->ui.ask_secret};
    plc_token_note_file(&src);
    err_code rc = pds_procedure(s, "com.atproto.identity.requestPlcOperationSignature", NULL, NULL, e);
    if (rc) return err_wrap(e, "asking the PDS to email the confirmation token");
    note(&o->ui, "the PDS has emailed the account's address a confirmation token (valid 15 minutes)");
    char tok[PLC_TOKEN_MAX] = "";
    if ((rc = plc_token_obtain(&src, tok, sizeof tok, e))) return rc;
    rc = plc_token_sign_op(s, "the PDS", target, tok, signed_op, e);
    explicit_bzero(tok, sizeof tok);
    return rc;
}

err_code plc_add_rotation_key(const plc_add_key_opts *o, plc_add_key_report *r, err_t *e) {
    memset(r, 0, sizeof *r);
    xrpc_options xo = custody_xo(&o->ui, o->allow_insecure_http);
    key_priv k;
    err_code rc = key_priv_load_file(&k, o->key_file, e);
    if (rc) return err_wrap(e, "reading the key file %s", o->key_file);
    size_t dl = key_pub_to_did_key(&k.pub, r->did_key, sizeof r->did_key);
    key_priv_wipe(&k); /* only the public half is needed: the PDS signs */
    if (!dl) return err_set(e, ERR_INVALID, "cannot encode the did:key of %s", o->key_file);

    identity_doc id;
    if ((rc = plc_custody_resolve(o->account, o->plc_url, o->pds_url, &xo, &id, e))) return rc;
    snprintf(r->did, sizeof r->did, "%s", id.did);
    snprintf(r->pds, sizeof r->pds, "%s", o->pds_url ? o->pds_url : id.pds);
    if (!r->pds[0]) return err_set(e, ERR_REMOTE, "%s's DID document names no PDS; give --pds URL", id.did);

    plc_state st;
    plc_op target;
    plc_op_init(&target, PLC_OP_REGULAR);
    pds_session *s = NULL;
    json_t *signed_op = NULL;
    if ((rc = plc_audit_fetch(o->plc_url, id.did, &xo, &st, NULL, e))) return rc;
    if ((rc = plc_build_add_key_op(&st, r->did_key, &target, &r->already_first, e))) goto out;
    if (r->already_first) {
        r->n_rotation_keys = st.op.n_rotation_keys;
        goto out;
    }
    if ((rc = login(r->pds, id.did, o, &xo, &s, e))) goto out;
    char summary[4096];
    describe_add(&st, &target, r->pds, summary, sizeof summary);
    if (!o->yes && o->ui.confirm && !o->ui.confirm(o->ui.ctx, summary)) {
        rc = err_set(e, ERR_CONFLICT, "stopped before the change: not confirmed (nothing was changed)");
        goto out;
    }
    if ((rc = sign_on_pds(s, id.did, &target, o, &signed_op, e))) goto out;
    if ((rc = plc_check_signed_op(signed_op, &st, &target, r->op_cid, e))) goto out;
    /* noted before it exists, so a watch run in between never sees it as foreign */
    watch_note(o->watch_state, r->op_cid, &r->watch_noted, r->watch_note, sizeof r->watch_note);
    plc_submit_to to = {.did = id.did, .xo = &xo, .via = s, .via_name = r->pds};
    if ((rc = plc_submit_post(&to, signed_op, &target, &st.op, e))) goto out;
    plc_state_free(&st);
    if ((rc = plc_audit_fetch(o->plc_url, id.did, &xo, &st, NULL, e))) goto out;
    if (strcmp(st.last_cid, r->op_cid) || !st.op.n_rotation_keys || strcmp(st.op.rotation_keys[0], r->did_key)) {
        rc = err_set(e, ERR_CONFLICT, "the PDS accepted the operation %s, but the PLC directory's head is %s with %s first; "
                                      "check with `pdsmove plc show %s`",
                     r->op_cid, st.last_cid, st.op.n_rotation_keys ? st.op.rotation_keys[0] : "no key", id.did);
        goto out;
    }
    r->n_rotation_keys = st.op.n_rotation_keys;
out:
    plc_state_free(&st);
    plc_op_free(&target);
    json_decref(signed_op);
    pds_session_free(s);
    return rc;
}

/* ---------------------------------------------------------------- recover */

err_code plc_recover_prepare(const plc_history *h, const char *fork_cid, const char *did_key, int64_t now_ms, plc_op *out,
                             plc_recover_plan *plan, err_t *e) {
    plc_op_init(out, PLC_OP_REGULAR);
    memset(plan, 0, sizeof *plan);
    size_t f = plc_history_find(h, fork_cid);
    if (f == NONE)
        return err_set(e, ERR_NOT_FOUND, "%s is not an operation in %s's audit log (`pdsmove plc show %s` lists them)", fork_cid,
                       h->state.did, h->state.did);
    const plc_hist_entry *fork = &h->ent[f];
    if (fork->nullified)
        return err_set(e, ERR_CONFLICT, "operation #%zu (%s) is itself nullified: fork at an operation of the current chain "
                                        "(`pdsmove plc show` marks nullified ones)", f, fork_cid);
    if (fork->tombstone)
        return err_set(e, ERR_CONFLICT, "operation #%zu (%s) is a tombstone: there is no identity to restore from it", f, fork_cid);
    size_t c = plc_history_child(h, f);
    if (c == NONE) {
        if (fork->prev != NONE)
            return err_set(e, ERR_CONFLICT, "operation #%zu (%s) is the latest one: there is nothing after it to undo. Give the CID "
                                            "of the last GOOD operation, the one before the unwanted change (here that "
                                            "would be #%zu, %s)", f, fork_cid, fork->prev, h->ent[fork->prev].cid);
        return err_set(e, ERR_CONFLICT, "operation #%zu (%s) is the latest one: there is nothing after it to undo", f, fork_cid);
    }
    const plc_hist_entry *child = &h->ent[c];
    size_t ki = list_index(fork->op.rotation_keys, fork->op.n_rotation_keys, did_key);
    if (ki == NONE) {
        char list[1200];
        sbuf b = {list, sizeof list, 0};
        for (size_t i = 0; i < fork->op.n_rotation_keys; i++) sb_add(&b, " #%zu %s", i, fork->op.rotation_keys[i]);
        return err_set(e, ERR_USAGE, "your key %s is not a rotation key of operation #%zu (%s), so it cannot sign a recovery "
                                     "from there; its rotation keys are:%s", did_key, f, fork_cid, list);
    }
    plan->fork = f;
    plan->first_undone = c;
    plan->key_index = ki;
    plan->signer_index = child->signer;
    plan->deadline_ms = child->created_ms + PLC_RECOVERY_WINDOW_MS;
    for (size_t x = c; x < h->n; x++) plan->n_undone += !h->ent[x].nullified; /* the chain after c, in log order */
    if (ki >= child->signer) {
        if (ki == child->signer)
            return err_set(e, ERR_CONFLICT, "operation #%zu (%s), the first one a recovery would undo, was signed by your own key "
                                            "(rotation key #%zu of #%zu): only a key with a higher priority (a lower index) can "
                                            "undo it", c, child->cid, ki, f);
        return err_set(e, ERR_CONFLICT, "your key is rotation key #%zu of operation #%zu, but operation #%zu (%s), the first one "
                                        "a recovery would undo, was signed by key #%zu: a recovery must be signed by a key with "
                                        "a higher priority (a lower index) than that, so this key cannot undo it",
                       ki, f, c, child->cid, child->signer);
    }
    if (now_ms > plan->deadline_ms) {
        char made[40], closed[40];
        plc_format_time(child->created_ms, made, sizeof made);
        plc_format_time(plan->deadline_ms, closed, sizeof closed);
        return err_set(e, ERR_CONFLICT, "too late: operation #%zu (%s) was made at %s, and the 72-hour window in which a "
                                        "higher-priority key can undo it closed at %s; the PLC directory would refuse the recovery",
                       c, child->cid, made, closed);
    }
    plc_change same = {0};
    err_code rc = plc_submit_build(&fork->op, fork_cid, &same, h->state.did, out, e);
    if (rc) return err_wrap(e, "building the recovery operation from #%zu", f);
    return ERR_OK;
}

err_code plc_recover_simulate(const json_t *log, const char *did, const plc_op *signed_op, const plc_recover_plan *plan,
                              int64_t now_ms, err_t *e) {
    json_t *copy = json_deep_copy(log);
    size_t n = json_array_size(copy);
    if (!copy || n == 0) {
        json_decref(copy);
        return err_set(e, ERR_NOMEM, "out of memory copying the audit log");
    }
    /* every op still on the chain after the fork becomes nullified (the chain is in log order) */
    for (size_t i = plan->first_undone; i < n; i++) {
        json_t *x = json_array_get(copy, i);
        if (!json_is_true(json_object_get(x, "nullified"))) json_object_set_new(x, "nullified", json_true());
    }
    int64_t head_ms = 0;
    err_t pe;
    plc_parse_datetime(json_string_value(json_object_get(json_array_get(copy, n - 1), "createdAt")), &head_ms, &pe);
    int64_t at_ms = now_ms > head_ms ? now_ms : head_ms + 1;
    char at[40], cid[CID_STR_MAX];
    plc_format_time(at_ms, at, sizeof at);
    err_code rc = plc_op_cid_str(signed_op, cid, e);
    json_t *opj = rc ? NULL : plc_op_to_json(signed_op, e);
    if (!rc && !opj) rc = e->code;
    if (!rc) {
        json_t *ent = json_pack("{s:s, s:o, s:s, s:b, s:s}", "did", did, "operation", opj, "cid", cid, "nullified", 0, "createdAt", at);
        if (!ent || json_array_append_new(copy, ent)) rc = err_set(e, ERR_NOMEM, "out of memory");
    }
    plc_state st;
    size_t bad;
    if (!rc) {
        rc = plc_log_validate(copy, did, &st, &bad, e);
        if (rc) err_wrap(e, "the recovery would not be accepted by the PLC directory's rules");
        else if (strcmp(st.last_cid, cid)) rc = err_set(e, ERR_CONFLICT, "the recovery would not become the head of the log");
        if (!rc) plc_state_free(&st);
    }
    json_decref(copy);
    return rc;
}

static void describe_recover(const plc_history *h, const plc_recover_plan *p, const plc_op *op, const char *did_key, char *out,
                             size_t size) {
    sbuf b = {out, size, 0};
    const plc_hist_entry *f = &h->ent[p->fork];
    char t[40];
    sb_add(&b, "Recovery operation for %s, signed here with your key %s\n(rotation key #%zu of the operation it forks at):\n",
           h->state.did, did_key, p->key_index);
    sb_add(&b, "  forks at   #%zu %s (%s), the last good operation\n", p->fork, f->cid, f->created_at);
    sb_add(&b, "  undoes     %zu operation%s:\n", p->n_undone, p->n_undone == 1 ? "" : "s");
    for (size_t x = p->first_undone, shown = 0; x < h->n && shown < 8; x++) {
        if (h->ent[x].nullified) continue;
        shown++;
        char change[PLC_CHANGE_MAX];
        plc_history_describe(h, x, change, sizeof change);
        sb_add(&b, "    #%zu %s (%s, signed by key #%zu): %s\n", x, h->ent[x].cid, h->ent[x].created_at, h->ent[x].signer, change);
    }
    if (p->n_undone > 8) sb_add(&b, "    ... and %zu more\n", p->n_undone - 8);
    const plc_service *s = plc_op_service(op, "atproto_pds");
    sb_add(&b, "  restores   handle %s, PDS %s, signing key %s, rotation keys", or_none(plc_op_handle(op)), s ? s->endpoint : "(none)",
           or_none(plc_op_vmethod(op, "atproto")));
    for (size_t i = 0; i < op->n_rotation_keys; i++) sb_add(&b, " #%zu %s", i, op->rotation_keys[i]);
    plc_format_time(p->deadline_ms, t, sizeof t);
    sb_add(&b, "\n  possible until %s (72 hours after #%zu)\n", t, p->first_undone);
}

err_code plc_recover(const plc_recover_opts *o, plc_recover_report *r, err_t *e) {
    memset(r, 0, sizeof *r);
    xrpc_options xo = custody_xo(&o->ui, o->allow_insecure_http);
    int64_t now = o->now_ms ? o->now_ms : now_ms_clock();
    key_priv k;
    err_code rc = key_priv_load_file(&k, o->key_file, e);
    if (rc) return err_wrap(e, "reading the key file %s", o->key_file);
    if (!key_pub_to_did_key(&k.pub, r->did_key, sizeof r->did_key)) {
        key_priv_wipe(&k);
        return err_set(e, ERR_INVALID, "cannot encode the did:key of %s", o->key_file);
    }
    snprintf(r->fork_cid, sizeof r->fork_cid, "%s", o->to_before);

    plc_history h;
    plc_history_init(&h);
    plc_op op, signed_op;
    plc_op_init(&op, PLC_OP_REGULAR);
    plc_op_init(&signed_op, PLC_OP_REGULAR);
    json_t *log = NULL, *opj = NULL;
    identity_doc id;
    if ((rc = plc_custody_resolve(o->account, o->plc_url, o->via_pds, &xo, &id, e))) goto out;
    snprintf(r->did, sizeof r->did, "%s", id.did);
    if ((rc = plc_history_fetch(o->plc_url, id.did, &xo, &h, &log, e))) goto out;
    if ((rc = plc_recover_prepare(&h, o->to_before, r->did_key, now, &op, &r->plan, e))) goto out;
    rc = plc_submit_sign(&op, &k, &opj, e);
    key_priv_wipe(&k);
    if (rc) goto out;
    const plc_op *fork_op = &h.ent[r->plan.fork].op;
    size_t signer;
    if ((rc = plc_submit_check(opj, &op, fork_op, &signer, r->op_cid, e))) goto out;
    if (signer != r->plan.key_index) {
        rc = err_set(e, ERR_MISMATCH, "the recovery operation is not signed by your key (#%zu) but by #%zu", r->plan.key_index, signer);
        goto out;
    }
    if ((rc = plc_op_from_json(&signed_op, opj, e))) goto out;
    if ((rc = plc_recover_simulate(log, id.did, &signed_op, &r->plan, now, e))) goto out;
    char summary[8192];
    describe_recover(&h, &r->plan, &op, r->did_key, summary, sizeof summary);
    if (!o->yes && o->ui.confirm && !o->ui.confirm(o->ui.ctx, summary)) {
        rc = err_set(e, ERR_CONFLICT, "stopped before sending the recovery: not confirmed (nothing was changed)");
        goto out;
    }
    watch_note(o->watch_state, r->op_cid, &r->watch_noted, r->watch_note, sizeof r->watch_note);
    plc_submit_to to = {.did = id.did, .plc_url = o->plc_url, .xo = &xo};
    if ((rc = plc_submit_post(&to, opj, &op, fork_op, e))) {
        err_wrap(e, "the PLC directory refused the recovery operation");
        goto out;
    }
    /* confirm with the directory: our op is the head and what followed the fork is nullified */
    size_t first = r->plan.first_undone, n_before = h.n;
    plc_history_free(&h);
    json_decref(log);
    log = NULL;
    if ((rc = plc_history_fetch(o->plc_url, id.did, &xo, &h, NULL, e))) goto out;
    if (strcmp(h.state.last_cid, r->op_cid)) {
        rc = err_set(e, ERR_CONFLICT, "the PLC directory accepted the recovery %s, but its head is %s; check with `pdsmove plc show %s`",
                     r->op_cid, h.state.last_cid, id.did);
        goto out;
    }
    for (size_t i = first; i < n_before && i < h.n; i++) {
        if (!h.ent[i].nullified) {
            rc = err_set(e, ERR_CONFLICT, "after the recovery, operation #%zu (%s) is still not nullified; check with `pdsmove plc show %s`",
                         i, h.ent[i].cid, id.did);
            goto out;
        }
        r->n_nullified++;
    }
out:
    key_priv_wipe(&k);
    plc_history_free(&h);
    plc_op_free(&op);
    plc_op_free(&signed_op);
    json_decref(log);
    json_decref(opj);
    return rc;
}
