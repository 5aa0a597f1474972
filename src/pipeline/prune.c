/* prune.c — `pdsmove prune`: the retention policy, then the closure of what kept snapshots need
 * (bases, archives storing their blobs, transitively), then removal of the rest, archive before
 * index rows. Must never delete an archive a kept snapshot depends on, and never run while a
 * backup of the same account does (it holds that account's backup journal lock meanwhile). */
#include "pdsmove/prune.h"
#include "pdsmove/backup_names.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdsmove/backup_index.h"
#include "pdsmove/journal.h"
#include "pdsmove/snapshot.h"

/* ---- calendar ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t year_of_days(int64_t z) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    return yoe + era * 400 + (m <= 2);
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

bool prune_calendar_keys(const char *t, int64_t *day, int64_t *week, int64_t *month) {
    int y, m, d, hh, mm, ss;
    size_t len = t ? strlen(t) : 0;
    if (len < 20 || t[len - 1] != 'Z' || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':')
        return false;
    if (!digits(t, 4, &y) || !digits(t + 5, 2, &m) || !digits(t + 8, 2, &d) || !digits(t + 11, 2, &hh) ||
        !digits(t + 14, 2, &mm) || !digits(t + 17, 2, &ss))
        return false;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1] || (m == 2 && d == 29 && !leap) || hh > 23 || mm > 59 || ss > 60)
        return false;
    if (len > 20 && (t[19] != '.' || len == 21)) return false; /* only fractional seconds may follow */
    for (size_t i = 20; i + 1 < len; i++)
        if (t[i] < '0' || t[i] > '9') return false;
    int64_t days = days_from_civil(y, m, d);
    int64_t wd = ((days + 3) % 7 + 7) % 7;       /* Monday 0: 1970-01-01 was a Thursday */
    int64_t thursday = days - wd + 3;            /* the ISO week belongs to its Thursday's year */
    int64_t iso_year = year_of_days(thursday);
    int64_t iso_week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
    *day = days;
    *week = iso_year * 100 + iso_week;
    *month = (int64_t)y * 100 + m;
    return true;
}

/* ---- the policy ---- */

void prune_select(prune_entry *v, size_t n, int keep_daily, int keep_weekly, int keep_monthly) {
    const int limit[3] = {keep_daily, keep_weekly, keep_monthly};
    const unsigned bit[3] = {PRUNE_WHY_DAILY, PRUNE_WHY_WEEKLY, PRUNE_WHY_MONTHLY};
    int used[3] = {0, 0, 0};
    int64_t last[3] = {0, 0, 0};
    bool have_last[3] = {false, false, false};
    for (size_t i = 0; i < n; i++) {
        v[i].decision = PRUNE_REMOVE;
        v[i].why = 0;
    }
    /* newest first: the first snapshot seen in a period is that period's newest */
    for (size_t k = n; k-- > 0;) {
        prune_entry *s = &v[k];
        if (k == n - 1) s->why |= PRUNE_WHY_LATEST;
        int64_t key[3];
        if (!prune_calendar_keys(s->created_at, &key[0], &key[1], &key[2])) {
            s->why |= PRUNE_WHY_UNDATED;
        } else {
            for (int r = 0; r < 3; r++) {
                if (have_last[r] && last[r] == key[r]) continue; /* an older one of a period seen */
                have_last[r] = true;
                last[r] = key[r];
                if (used[r] < limit[r]) {
                    used[r]++;
                    s->why |= bit[r];
                }
            }
        }
        if (s->why) s->decision = PRUNE_KEEP;
    }
}

/* ---- loading the index ---- */

typedef struct {
    prune_report *r;
    size_t cap;
    err_t *e;
    err_code rc;
} load_ctx;

static char *dup_or_fail(load_ctx *l, const char *s) {
    char *d = strdup(s);
    if (!d && !l->rc) l->rc = err_set(l->e, ERR_NOMEM, "out of memory");
    return d;
}

static bool load_one(void *ctx, const backup_snapshot *s) {
    load_ctx *l = ctx;
    prune_report *r = l->r;
    if (r->n == PRUNE_SNAPSHOTS_MAX) {
        l->rc = err_set(l->e, ERR_LIMIT, "the backup directory has more than %d snapshots; prune them in smaller directories",
                        PRUNE_SNAPSHOTS_MAX);
        return false;
    }
    if (r->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        prune_entry *p = realloc(r->v, cap * sizeof *p);
        if (!p) {
            l->rc = err_set(l->e, ERR_NOMEM, "out of memory");
            return false;
        }
        r->v = p;
        l->cap = cap;
    }
    prune_entry *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    x->id = dup_or_fail(l, s->id);
    x->did = dup_or_fail(l, s->did);
    x->created_at = dup_or_fail(l, s->created_at);
    x->base_id = dup_or_fail(l, s->base_id);
    x->archive = dup_or_fail(l, s->archive);
    x->incremental = s->incremental;
    return l->rc == ERR_OK;
}

/* the index's own order: by account, then created_at, then id (as backup_index_latest) */
static int cmp_entry(const void *a, const void *b) {
    const prune_entry *x = a, *y = b;
    int c = strcmp(x->did, y->did);
    if (!c) c = strcmp(x->created_at, y->created_at);
    if (!c) c = strcmp(x->id, y->id);
    return c;
}

/* ---- one account ---- */

typedef struct {
    const prune_opts *o;
    prune_report *r;
    backup_index *idx;
    prune_entry *v;               /* this account's entries */
    size_t n;
    size_t *by_id;                /* indexes into v sorted by id, for lookups */
    size_t *work;                 /* the closure's worklist */
    size_t n_work;
    err_t *e;
    const char *current_id;       /* whose blob set is being walked */
    prune_need current_need;
} account_ctx;

static const prune_entry *sort_base;
static int cmp_by_id(const void *a, const void *b) {
    return strcmp(sort_base[*(const size_t *)a].id, sort_base[*(const size_t *)b].id);
}

static prune_entry *find(account_ctx *a, const char *id) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(a->v[a->by_id[mid]].id, id);
        if (!c) return &a->v[a->by_id[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static bool in_set(const prune_entry *x) { return x->decision == PRUNE_KEEP || x->decision == PRUNE_NEEDED; }

/* Marks x needed (if it is not already kept or needed) and queues it. */
static void need(account_ctx *a, prune_entry *x, prune_need why, const char *by) {
    if (in_set(x)) {
        if (why == PRUNE_NEED_BLOBS && x->decision == PRUNE_NEEDED && x->need == PRUNE_NEED_BLOBS && x->needed_by == by)
            x->blobs_for++;
        return;
    }
    x->decision = PRUNE_NEEDED;
    x->need = why;
    x->needed_by = by;
    x->blobs_for = why == PRUNE_NEED_BLOBS ? 1 : 0;
    assert(a->n_work < a->n); /* each entry enters the list once, when it joins the set */
    a->work[a->n_work++] = (size_t)(x - a->v);
}

static bool on_blob(void *ctx, const char *cid, const char *stored_in) {
    (void)cid;
    account_ctx *a = ctx;
    if (!stored_in[0] || !strcmp(stored_in, a->current_id)) return true;
    prune_entry *home = find(a, stored_in);
    if (home) need(a, home, a->current_need, a->current_id);
    return true;
}

/* A string the report owns (entries' needed_by may point at it). */
static const char *report_string(account_ctx *a, const char *s) {
    prune_report *r = a->r;
    if (r->n_strings == r->cap_strings) {
        size_t cap = r->cap_strings ? r->cap_strings * 2 : 8;
        char **p = realloc(r->strings, cap * sizeof *p);
        if (!p) return NULL;
        r->strings = p;
        r->cap_strings = cap;
    }
    char *d = strdup(s);
    if (d) r->strings[r->n_strings++] = d;
    return d;
}

/* A name from DIR that becomes one path component: never empty, ".", ".." or with a '/'. */
static bool plain_name(const char *s) {
    return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

/* What an unfinished backup of this account counts on: its base (the newest snapshot when it
 * started) and, once it has listed the blobs (DIR/.work-<id>/blob-list.txt), the archives that
 * store the blobs it therefore will not download. */
static err_code protect_unfinished(account_ctx *a, journal *j, const char *did) {
    journal_run run;
    if (journal_run_latest(j, "backup", did, &run, NULL) != ERR_OK || run.finished) return ERR_OK;
    char snap[BACKUP_ID_MAX], base[BACKUP_ID_MAX];
    if (journal_kv_get(j, run.id, "snapshot_id", snap, sizeof snap, NULL) != ERR_OK) return ERR_OK; /* not planned yet */
    if (find(a, snap)) return ERR_OK; /* indexed already: it is the newest, so kept */
    if (!plain_name(snap)) /* the journal is in DIR too: untrusted, and the id becomes a path below */
        return err_set(a->e, ERR_INVALID, "the backup journal of %s names its unfinished snapshot \"%s\", not a plain name; "
                                          "nothing pruned for this account", did, snap);
    const char *by = report_string(a, snap);
    if (!by) return err_set(a->e, ERR_NOMEM, "out of memory");
    a->r->unfinished++;
    if (journal_kv_get(j, run.id, "base_id", base, sizeof base, NULL) == ERR_OK && base[0]) {
        prune_entry *b = find(a, base);
        if (b) need(a, b, PRUNE_NEED_UNFINISHED, by);
    }
    char list[BACKUP_PATH_MAX * 2], line[256], where[BACKUP_ID_MAX];
    snprintf(list, sizeof list, "%s/.work-%s/blob-list.txt", a->o->dir, snap);
    FILE *f = fopen(list, "r");
    if (!f) return ERR_OK; /* not listed yet: the resumed run lists (and looks up) them again */
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0] || backup_index_blob_where(a->idx, did, line, where, sizeof where, NULL) != ERR_OK) continue;
        prune_entry *home = find(a, where);
        if (home) need(a, home, PRUNE_NEED_UNFINISHED, by);
    }
    fclose(f);
    return ERR_OK;
}

/* Everything the kept (and queued) snapshots need, transitively: a needed snapshot is checked
 * by verify like any other, so its own base and blobs must stay too. */
static err_code close_over_needs(account_ctx *a) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].decision == PRUNE_KEEP) {
            assert(a->n_work < a->n);
            a->work[a->n_work++] = i;
        }
    for (size_t next = 0; next < a->n_work; next++) {
        prune_entry *x = &a->v[a->work[next]];
        if (x->incremental) {
            prune_entry *b = find(a, x->base_id);
            if (b) need(a, b, PRUNE_NEED_CHAIN, x->id);
            else x->base_missing = true;
        }
        a->current_id = x->id;
        a->current_need = PRUNE_NEED_BLOBS;
        err_code rc = backup_index_snapshot_blobs(a->idx, x->id, on_blob, a, a->e);
        if (rc) return err_wrap(a->e, "reading the blob set of snapshot %s", x->id);
    }
    return ERR_OK;
}

static err_code fsync_dir(const char *path, err_t *e) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
    err_code rc = fsync(fd) == 0 ? ERR_OK : err_set(e, ERR_IO, "fsync %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* The archive (unlink, fsync the directory), then its rows: a crash between the two leaves a
 * row for a missing file, which the next prune removes like any other unneeded snapshot. */
static err_code remove_one(account_ctx *a, prune_entry *x, err_t *e) {
    char snaps[BACKUP_PATH_MAX + 16], path[BACKUP_PATH_MAX * 2 + 32];
    snprintf(snaps, sizeof snaps, "%s/snapshots", a->o->dir);
    if (x->archive[0]) {
        if (!backup_name_archive(x->archive, NULL))
            return err_set(e, ERR_INVALID, "the index names the archive of %s as \"%s\", not a file name; left alone", x->id,
                           x->archive);
        snprintf(path, sizeof path, "%s/%s", snaps, x->archive);
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (!S_ISREG(st.st_mode)) return err_set(e, ERR_INVALID, "%s is not a regular file; left alone", path);
            x->archive_bytes = (uint64_t)st.st_size;
            if (unlink(path) != 0 && errno != ENOENT) return err_set(e, ERR_IO, "cannot remove %s: %s", path, strerror(errno));
            err_code rc = fsync_dir(snaps, e);
            if (rc) return rc;
        } else if (errno == ENOENT) {
            x->archive_was_missing = true;
        } else {
            return err_set(e, ERR_IO, "cannot read %s: %s", path, strerror(errno));
        }
    } else {
        x->archive_was_missing = true;
    }
    err_code rc = backup_index_tx_begin(a->idx, e);
    if (!rc) rc = backup_index_remove_snapshot(a->idx, x->id, e);
    if (!rc) rc = backup_index_tx_commit(a->idx, e);
    else backup_index_tx_rollback(a->idx);
    if (rc) return err_wrap(e, "the archive of %s is removed but its index rows are not (run prune again)", x->id);
    x->removed = true;
    return ERR_OK;
}

static void note_problem(prune_report *r, const char *msg) {
    if (!r->first_error[0]) snprintf(r->first_error, sizeof r->first_error, "%s", msg);
}

/* The account part of the names backup.c gives an account's files (journal, cache, snapshot ids). */
static void safe_name(const char *did, char *out, size_t size) {
    snprintf(out, size, "%s", did);
    for (char *q = out; *q; q++)
        if (*q == ':' || *q == '/') *q = '_'; /* as backup.c names it */
}

static void journal_path(const char *dir, const char *did, char *out, size_t size) {
    char safe[256];
    safe_name(did, safe, sizeof safe);
    snprintf(out, size, "%s/journals/%s.sqlite", dir, safe);
}

/* Takes the account's backup journal (its lock keeps a backup of this account from starting
 * meanwhile). *j NULL with ERR_OK: a dry run and no journal exists, nothing to lock or read. */
static err_code lock_account(const prune_opts *o, const char *did, journal **j, err_t *e) {
    *j = NULL;
    char path[BACKUP_PATH_MAX + 300], jdir[BACKUP_PATH_MAX + 16];
    journal_path(o->dir, did, path, sizeof path);
    if (access(path, F_OK) != 0) {
        if (o->dry_run) return ERR_OK;
        snprintf(jdir, sizeof jdir, "%s/journals", o->dir);
        if (mkdir(jdir, 0700) != 0 && errno != EEXIST) return err_set(e, ERR_IO, "cannot create %s: %s", jdir, strerror(errno));
    }
    return journal_open(path, j, e);
}

static err_code prune_account(const prune_opts *o, prune_report *r, backup_index *idx, prune_entry *v, size_t n,
                              err_t *e) {
    account_ctx a = {.o = o, .r = r, .idx = idx, .v = v, .n = n, .e = e};
    journal *j = NULL;
    err_t le = {0};
    err_code lrc = lock_account(o, v[0].did, &j, &le);
    if (lrc == ERR_CONFLICT) {
        for (size_t i = 0; i < n; i++) v[i].decision = PRUNE_BUSY;
        r->busy_accounts++;
        char msg[ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s skipped: a backup of it is running (%s); prune again after it", v[0].did, le.msg);
        note_problem(r, msg);
        return ERR_OK;
    }
    if (lrc) {
        *e = le;
        return lrc;
    }
    a.by_id = malloc(n * sizeof *a.by_id);
    a.work = malloc(n * sizeof *a.work);
    err_code rc = a.by_id && a.work ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory");
    if (!rc) {
        for (size_t i = 0; i < n; i++) a.by_id[i] = i;
        sort_base = v;
        qsort(a.by_id, n, sizeof *a.by_id, cmp_by_id);
        prune_select(v, n, o->keep_daily, o->keep_weekly, o->keep_monthly);
        if (j) rc = protect_unfinished(&a, j, v[0].did);
    }
    if (!rc) rc = close_over_needs(&a);
    /* newest first: a snapshot goes before the base it builds on, so an interrupted prune never
     * leaves an incremental whose base is already gone */
    for (size_t k = n; !rc && k-- > 0;) {
        prune_entry *x = &v[k];
        if (x->decision != PRUNE_REMOVE) continue;
        if (o->dry_run) {
            char path[BACKUP_PATH_MAX * 2 + 32];
            struct stat st;
            snprintf(path, sizeof path, "%s/snapshots/%s", o->dir, x->archive);
            if (x->archive[0] && plain_name(x->archive) && stat(path, &st) == 0) x->archive_bytes = (uint64_t)st.st_size;
            else x->archive_was_missing = true;
            r->bytes_freed += x->archive_bytes;
            continue;
        }
        err_t re = {0};
        if (remove_one(&a, x, &re)) {
            x->failed = true;
            r->failed++;
            note_problem(r, re.msg);
            break; /* the disk or index is in trouble: leave this account's rest alone */
        }
        r->removed++;
        r->bytes_freed += x->archive_bytes;
    }
    free(a.by_id);
    free(a.work);
    journal_close(j);
    return rc;
}

/* ---- cache files of accounts without snapshots ---- */

/* "YYYYMMDDTHHMMSSZ", the stamp in a snapshot id */
static bool is_stamp(const char *s) {
    int v;
    return digits(s, 8, &v) && s[8] == 'T' && digits(s + 9, 6, &v) && s[15] == 'Z';
}

/* The account part of a snapshot id "<account>-<stamp>" or "<account>-<stamp>-NN" (backup.c). */
static bool snapshot_account(const char *id, char *out, size_t size) {
    size_t len = strlen(id), at;
    int nn;
    if (len > 17 && id[len - 17] == '-' && is_stamp(id + len - 16)) at = len - 17;
    else if (len > 20 && id[len - 3] == '-' && digits(id + len - 2, 2, &nn) && id[len - 20] == '-' && is_stamp(id + len - 19))
        at = len - 20;
    else return false;
    if (at >= size) return false;
    memcpy(out, id, at);
    out[at] = 0;
    return true;
}

static bool ends_with(const char *s, const char *suffix, size_t *prefix_len) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n <= m || strcmp(s + n - m, suffix)) return false;
    *prefix_len = n - m;
    return true;
}

/* The account a DIR/cache/ entry belongs to: <account>.repo.car (the newest snapshot's whole
 * repo), <account>.repo.car.next (the one being made) or .unpack-<snapshot id> (a chain archive
 * being read). Anything else is not pdsmove's and is left alone. */
static bool cache_entry_account(const char *name, char *out, size_t size, bool *is_dir) {
    size_t n;
    *is_dir = !strncmp(name, ".unpack-", 8);
    if (*is_dir) return snapshot_account(name + 8, out, size);
    if (!ends_with(name, ".repo.car", &n) && !ends_with(name, ".repo.car.next", &n)) return false;
    if (n >= size) return false;
    memcpy(out, name, n);
    out[n] = 0;
    return true;
}

typedef struct {
    const char *account;
    bool found;
} has_ctx;

static bool has_one(void *ctx, const backup_snapshot *s) {
    has_ctx *h = ctx;
    char safe[256];
    safe_name(s->did, safe, sizeof safe);
    h->found = !strcmp(safe, h->account);
    return !h->found;
}

/* Does the index (now, not as loaded) have a snapshot of the account? */
static err_code index_has_account(backup_index *idx, const char *account, bool *found, err_t *e) {
    has_ctx h = {account, false};
    err_code rc = backup_index_each(idx, NULL, has_one, &h, e);
    *found = h.found;
    return rc;
}

/* An unfinished backup of the account left its DIR/.work-<snapshot id>: a resumed run uses the cache. */
static bool has_unfinished_work(const char *dir, const char *account) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    char acc[256];
    for (struct dirent *de; !found && (de = readdir(d));)
        found = !strncmp(de->d_name, ".work-", 6) && snapshot_account(de->d_name + 6, acc, sizeof acc) && !strcmp(acc, account);
    closedir(d);
    return found;
}

static int cmp_cache(const void *a, const void *b) {
    const prune_cache_entry *x = a, *y = b;
    int c = strcmp(x->account, y->account);
    return c ? c : strcmp(x->name, y->name);
}

/* Lists the cache entries of accounts that have no snapshot among the loaded ones. */
static err_code list_orphan_caches(const prune_opts *o, prune_report *r, err_t *e) {
    char cdir[BACKUP_PATH_MAX + 16];
    snprintf(cdir, sizeof cdir, "%s/cache", o->dir);
    DIR *d = opendir(cdir);
    if (!d) return errno == ENOENT ? ERR_OK : err_set(e, ERR_IO, "cannot read %s: %s", cdir, strerror(errno));
    size_t cap = 0;
    err_code rc = ERR_OK;
    for (struct dirent *de; !rc && (de = readdir(d));) {
        char acc[256];
        bool is_dir, known = false;
        if (!cache_entry_account(de->d_name, acc, sizeof acc, &is_dir)) continue;
        for (size_t i = 0; i < r->n && !known; i++) {
            char safe[256];
            safe_name(r->v[i].did, safe, sizeof safe);
            known = !strcmp(safe, acc);
        }
        if (known) continue;
        if (r->n_caches == PRUNE_SNAPSHOTS_MAX) {
            rc = err_set(e, ERR_LIMIT, "%s holds more than %d files of accounts without snapshots", cdir, PRUNE_SNAPSHOTS_MAX);
            break;
        }
        if (r->n_caches == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            prune_cache_entry *p = realloc(r->caches, ncap * sizeof *p);
            if (!p) {
                rc = err_set(e, ERR_NOMEM, "out of memory");
                break;
            }
            r->caches = p;
            cap = ncap;
        }
        prune_cache_entry *c = &r->caches[r->n_caches];
        memset(c, 0, sizeof *c);
        c->name = strdup(de->d_name);
        c->account = strdup(acc);
        c->is_dir = is_dir;
        r->n_caches++;
        if (!c->name || !c->account) rc = err_set(e, ERR_NOMEM, "out of memory");
    }
    closedir(d);
    if (!rc && r->n_caches) qsort(r->caches, r->n_caches, sizeof *r->caches, cmp_cache);
    return rc;
}

/* One cache entry: its size (files), and unless a dry run, gone. */
static void remove_cache_entry(const prune_opts *o, prune_report *r, prune_cache_entry *c) {
    char path[BACKUP_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/cache/%s", o->dir, c->name);
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) { /* gone meanwhile (a backup promoted or dropped it) */
            c->decision = PRUNE_CACHE_LEFT;
            return;
        }
        c->failed = true;
    } else if (c->is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        c->decision = PRUNE_CACHE_LEFT; /* not what pdsmove makes under that name */
        return;
    }
    if (!c->failed) {
        c->bytes = c->is_dir ? 0 : (uint64_t)st.st_size;
        r->caches_removed++;
        r->cache_bytes_freed += c->bytes;
        if (o->dry_run) return;
        err_t re = {0};
        if (c->is_dir) c->failed = snapshot_remove(path, &re) != ERR_OK;
        else if (unlink(path) != 0 && errno != ENOENT) c->failed = err_set(&re, ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        if (!c->failed) {
            c->removed = true;
            return;
        }
        r->caches_removed--;
        r->cache_bytes_freed -= c->bytes;
        note_problem(r, re.msg);
    } else {
        char msg[ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "cannot read %s: %s", path, strerror(errno));
        note_problem(r, msg);
    }
    r->failed++;
}

/* The cache of an account without snapshots serves no incremental run (there is no base to
 * build on): it goes. Removing a cache file is never unsafe (backup.c rebuilds a missing one
 * from the archives), so the checks below only avoid wasted work: the account's journal lock
 * (held by a running backup), an unfinished backup's work directory, and the index read again
 * under that lock (a backup that finished since prune loaded it). */
static err_code prune_orphan_caches(const prune_opts *o, prune_report *r, backup_index *idx, err_t *e) {
    err_code rc = list_orphan_caches(o, r, e);
    for (size_t start = 0; !rc && start < r->n_caches;) {
        const char *acc = r->caches[start].account;
        size_t end = start + 1;
        while (end < r->n_caches && !strcmp(r->caches[end].account, acc)) end++;
        char jpath[BACKUP_PATH_MAX + 300];
        snprintf(jpath, sizeof jpath, "%s/journals/%s.sqlite", o->dir, acc);
        journal *j = NULL;
        err_t le = {0};
        err_code lrc = access(jpath, F_OK) == 0 ? journal_open(jpath, &j, &le) : ERR_OK;
        prune_cache_decision dec = PRUNE_CACHE_REMOVE;
        bool found = false;
        if (lrc) {
            dec = PRUNE_CACHE_BUSY;
            r->busy_accounts++;
            char msg[ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "the cache of %s was left: %s", acc, le.msg);
            note_problem(r, msg);
        } else if (has_unfinished_work(o->dir, acc)) {
            dec = PRUNE_CACHE_UNFINISHED;
            r->unfinished++;
        } else if ((rc = index_has_account(idx, acc, &found, e)) == ERR_OK && found) {
            dec = PRUNE_CACHE_LEFT; /* it has a snapshot now: its cache is in use */
        }
        for (size_t i = start; !rc && i < end; i++) {
            r->caches[i].decision = dec;
            if (dec == PRUNE_CACHE_REMOVE) remove_cache_entry(o, r, &r->caches[i]);
        }
        journal_close(j);
        start = end;
    }
    return rc;
}

err_code prune_run(const prune_opts *o, prune_report *r, err_t *e) {
    memset(r, 0, sizeof *r);
    if (!o->dir || !o->dir[0]) return err_set(e, ERR_USAGE, "give the backup directory");
    const int keep[3] = {o->keep_daily, o->keep_weekly, o->keep_monthly};
    for (int i = 0; i < 3; i++)
        if (keep[i] < 0 || keep[i] > PRUNE_KEEP_MAX)
            return err_set(e, ERR_USAGE, "--keep-daily/--keep-weekly/--keep-monthly take 0..%d", PRUNE_KEEP_MAX);
    char ipath[BACKUP_PATH_MAX + 16];
    snprintf(ipath, sizeof ipath, "%s/index.sqlite", o->dir);
    if (access(ipath, F_OK) != 0)
        return err_set(e, ERR_NOT_FOUND, "%s is not a backup directory (it has no index.sqlite); give the directory "
                                         "`pdsmove backup --to` writes to", o->dir);
    backup_index *idx = NULL;
    err_code rc = backup_index_open(o->dir, &idx, e);
    if (rc) return rc;
    load_ctx l = {.r = r, .e = e};
    rc = backup_index_each(idx, NULL, load_one, &l, e);
    if (!rc) rc = l.rc;
    if (!rc && r->n) qsort(r->v, r->n, sizeof *r->v, cmp_entry);
    for (size_t start = 0; !rc && start < r->n;) {
        size_t end = start + 1;
        while (end < r->n && !strcmp(r->v[end].did, r->v[start].did)) end++;
        r->accounts++;
        rc = prune_account(o, r, idx, &r->v[start], end - start, e);
        start = end;
    }
    if (!rc) rc = prune_orphan_caches(o, r, idx, e);
    for (size_t i = 0; i < r->n; i++) {
        switch (r->v[i].decision) {
        case PRUNE_KEEP: r->kept++; break;
        case PRUNE_NEEDED: r->needed++; break;
        case PRUNE_REMOVE: r->to_remove++; break;
        case PRUNE_BUSY: break;
        }
    }
    backup_index_close(idx);
    return rc;
}

void prune_report_free(prune_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].id);
        free(r->v[i].did);
        free(r->v[i].created_at);
        free(r->v[i].base_id);
        free(r->v[i].archive);
    }
    free(r->v);
    for (size_t i = 0; i < r->n_strings; i++) free(r->strings[i]);
    free(r->strings);
    for (size_t i = 0; i < r->n_caches; i++) {
        free(r->caches[i].name);
        free(r->caches[i].account);
    }
    free(r->caches);
    memset(r, 0, sizeof *r);
}
