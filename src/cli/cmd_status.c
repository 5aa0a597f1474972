/* cmd_status.c — `pdsmove status`: where each migration in a journal stands and what the next
 * run will do. Reads the journal file read-only with SQLite directly (docs/journal.md): it
 * never takes the runner lock, so it works — and changes nothing — while a migrate runs. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pdsmove/journal.h"
#include "pdsmove/migrate.h"
#include "pdsmove/plc.h"

#define STATUS_MAX_RUNS 20   /* newest runs shown without ACCOUNT */
#define STATUS_MAX_STEPS 32
#define STATUS_MAX_FAILED 5  /* failed blobs named */

static const char usage[] =
    "usage: pdsmove status [ACCOUNT] [--journal PATH] [--json]\n"
    "\n"
    "Shows where migrations stand, from the journal `pdsmove migrate` keeps: for each run the\n"
    "account, old and new PDS, every step with its state and detail, the blobs copied, failed\n"
    "and pending, the PLC operation if one was signed, whether the run finished, and what the\n"
    "next `pdsmove migrate` of that account will do. Only reads the journal: safe to run while\n"
    "a migration is running.\n"
    "\n"
    "  ACCOUNT          only the latest run of this handle or DID (default: the latest runs)\n"
    "  --journal PATH   the journal (default: the one migrate uses, under the state directory)\n"
    "  --json           one JSON object on stdout: {\"journal\":..., \"runs\":[...]}\n"
    "  -h, --help       this help\n"
    "\n"
    "exit status: 0 shown (also when there is no journal or no run yet), 1 the journal cannot\n"
    "be read, 2 usage error\n";

void cli_default_journal(char *out, size_t size) {
    char state[900];
    cli_state_dir(state, sizeof state);
    snprintf(out, size, "%s/journal.sqlite", state);
}

json_t *cli_json_text(const char *s) {
    if (!s) return json_null();
    json_t *v = json_string(s);
    if (v) return v;
    char clean[JOURNAL_VALUE_MAX];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && k + 1 < sizeof clean; p++) clean[k++] = *p < 0x80 ? (char)*p : '?';
    clean[k] = 0;
    return json_string(clean);
}

/* ---- reading the journal (schema version 1, docs/journal.md) ---- */

/* The migrate steps in the order they run, and what the next run does when one is not done:
 * migrate_steps (migrate.h), the pipeline's own list. */
#define N_MIGRATE_STEPS ((size_t)MIGRATE_STEPS_COUNT)

enum { STEP_NO_ROW = -1, STEP_NOT_NEEDED = -2 }; /* besides journal_step_status */

typedef struct {
    char name[JOURNAL_NAME_MAX];
    int status; /* journal_step_status, or STEP_NO_ROW / STEP_NOT_NEEDED */
    char detail[JOURNAL_VALUE_MAX];
    long long attempts, updated_at;
} step_row;

typedef struct {
    long long id, started_at, finished_at; /* finished_at 0 = not finished */
    char kind[JOURNAL_NAME_MAX];
    char subject[256];
    char account_arg[256], old_pds[512], new_pds[512], wanted_handle[256], create_handle[256];
    char backup_snapshot[200];             /* a restore through migrate: the snapshot it came from */
    bool blobs_listed;
    long long limit_reset_at; /* kv limit_reset_at: a rate limit stopped the last run until then */
    char *plc_op; /* signed op JSON from kv plc_signed_op (owned), or NULL */
    step_row steps[STATUS_MAX_STEPS];
    size_t n_steps;
    long long blobs[3], blob_bytes[3], blob_unknown_size; /* by journal_blob_status */
    bool has_fetched;                       /* the blob table has the `fetched` column */
    long long fetched, fetched_bytes;      /* downloaded into the local snapshot */
    struct {
        char cid[128];
        char error[300];
        long long attempts;
    } failed[STATUS_MAX_FAILED];
    size_t n_failed;
} run_info;

static err_code db_error(sqlite3 *db, const char *path, err_t *e) {
    return err_set(e, ERR_IO, "cannot read the journal %s: %s", path, sqlite3_errmsg(db));
}

static const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

/* The runs to show, newest first; *more = how many older matching runs are left out. */
static err_code list_runs(sqlite3 *db, const char *path, const char *account, long long *ids, size_t max, size_t *n,
                          long long *more, err_t *e) {
    static const char where[] =
        " WHERE ?1 IS NULL OR subject = ?1 OR id IN (SELECT run_id FROM kv WHERE key IN"
        " ('account_arg', 'did', 'wanted_handle', 'create_handle') AND lower(value) = lower(?1))";
    char sql[512];
    sqlite3_stmt *st = NULL;
    *n = 0;
    *more = 0;
    snprintf(sql, sizeof sql, "SELECT id FROM run%s ORDER BY id DESC LIMIT ?2", where);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_error(db, path, e);
    if (account) sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) ids[(*n)++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db_error(db, path, e);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM run%s", where);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_error(db, path, e);
    if (account) sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) *more = sqlite3_column_int64(st, 0) - (long long)*n;
    sqlite3_finalize(st);
    return ERR_OK;
}

static void kv_into(run_info *r, const char *key, const char *value) {
    struct {
        const char *key;
        char *dst;
        size_t size;
    } facts[] = {
        {"account_arg", r->account_arg, sizeof r->account_arg}, {"old_pds", r->old_pds, sizeof r->old_pds},
        {"new_pds", r->new_pds, sizeof r->new_pds},             {"wanted_handle", r->wanted_handle, sizeof r->wanted_handle},
        {"create_handle", r->create_handle, sizeof r->create_handle},
        {"backup_snapshot", r->backup_snapshot, sizeof r->backup_snapshot},
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
        if (!strcmp(key, facts[i].key)) snprintf(facts[i].dst, facts[i].size, "%s", value);
    if (!strcmp(key, "blobs_listed")) r->blobs_listed = true;
    if (!strcmp(key, "limit_reset_at")) r->limit_reset_at = strtoll(value, NULL, 10);
    if (!strcmp(key, "plc_signed_op") && !r->plc_op) r->plc_op = strdup(value);
}

static err_code load_run(sqlite3 *db, const char *path, long long id, run_info *r, err_t *e) {
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id, kind, subject, started_at, coalesce(finished_at, 0) FROM run WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(db, path, e);
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        r->id = sqlite3_column_int64(st, 0);
        snprintf(r->kind, sizeof r->kind, "%s", col_text(st, 1));
        snprintf(r->subject, sizeof r->subject, "%s", col_text(st, 2));
        r->started_at = sqlite3_column_int64(st, 3);
        r->finished_at = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(db, "SELECT key, value FROM kv WHERE run_id = ?1", -1, &st, NULL) != SQLITE_OK)
        return db_error(db, path, e);
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) kv_into(r, col_text(st, 0), col_text(st, 1));
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(db, "SELECT name, status, detail, attempts, updated_at FROM step WHERE run_id = ?1 ORDER BY rowid", -1,
                           &st, NULL) != SQLITE_OK)
        return db_error(db, path, e);
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW && r->n_steps < STATUS_MAX_STEPS) {
        step_row *s = &r->steps[r->n_steps++];
        snprintf(s->name, sizeof s->name, "%s", col_text(st, 0));
        s->status = sqlite3_column_int(st, 1);
        snprintf(s->detail, sizeof s->detail, "%s", col_text(st, 2));
        s->attempts = sqlite3_column_int64(st, 3);
        s->updated_at = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(db,
                           "SELECT status, count(*), sum(CASE WHEN size > 0 THEN size ELSE 0 END), sum(size < 0)"
                           " FROM blob WHERE run_id = ?1 GROUP BY status",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(db, path, e);
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int s = sqlite3_column_int(st, 0);
        if (s < 0 || s > 2) continue;
        r->blobs[s] = sqlite3_column_int64(st, 1);
        r->blob_bytes[s] = sqlite3_column_int64(st, 2);
        if (s != BLOB_DONE) r->blob_unknown_size += sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);

    /* `fetched` came with the snapshot; a journal from before it has no such column */
    r->has_fetched = sqlite3_prepare_v2(db,
                                        "SELECT count(*), coalesce(sum(CASE WHEN size > 0 THEN size ELSE 0 END), 0) FROM blob"
                                        " WHERE run_id = ?1 AND fetched = 1",
                                        -1, &st, NULL) == SQLITE_OK;
    if (r->has_fetched) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            r->fetched = sqlite3_column_int64(st, 0);
            r->fetched_bytes = sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(db, "SELECT cid, error, attempts FROM blob WHERE run_id = ?1 AND status = 2 ORDER BY seq LIMIT ?2", -1,
                           &st, NULL) != SQLITE_OK)
        return db_error(db, path, e);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, STATUS_MAX_FAILED);
    while (sqlite3_step(st) == SQLITE_ROW && r->n_failed < STATUS_MAX_FAILED) {
        snprintf(r->failed[r->n_failed].cid, sizeof r->failed[0].cid, "%s", col_text(st, 0));
        snprintf(r->failed[r->n_failed].error, sizeof r->failed[0].error, "%s", col_text(st, 1));
        r->failed[r->n_failed].attempts = sqlite3_column_int64(st, 2);
        r->n_failed++;
    }
    sqlite3_finalize(st);
    return ERR_OK;
}

/* ---- what it means ---- */

static const step_row *find_step(const run_info *r, const char *name) {
    for (size_t i = 0; i < r->n_steps; i++)
        if (!strcmp(r->steps[i].name, name)) return &r->steps[i];
    return NULL;
}

static bool is_migrate(const run_info *r) { return !strcmp(r->kind, "migrate"); }

/* The steps in display order: the known migrate steps first, then any others the journal has. */
static size_t ordered_steps(const run_info *r, step_row *out, size_t max) {
    size_t n = 0;
    if (is_migrate(r)) {
        for (size_t i = 0; i < N_MIGRATE_STEPS && n < max; i++) {
            const step_row *s = find_step(r, migrate_steps[i].name);
            if (s) out[n] = *s;
            else {
                memset(&out[n], 0, sizeof out[n]);
                snprintf(out[n].name, sizeof out[n].name, "%s", migrate_steps[i].name);
                /* the handle step runs only when the handle must change after activation */
                bool unneeded = !strcmp(out[n].name, "handle") && r->wanted_handle[0] &&
                                !strcmp(r->wanted_handle, r->create_handle);
                out[n].status = unneeded ? STEP_NOT_NEEDED : STEP_NO_ROW;
            }
            n++;
        }
    }
    for (size_t i = 0; i < r->n_steps && n < max; i++) {
        bool known = false;
        for (size_t k = 0; is_migrate(r) && k < N_MIGRATE_STEPS && !known; k++) known = !strcmp(r->steps[i].name, migrate_steps[k].name);
        if (!known) out[n++] = r->steps[i];
    }
    return n;
}

static const char *status_word(const run_info *r, int status, bool in_use) {
    switch (status) {
    case STEP_DONE: return "done";
    case STEP_FAILED: return "failed";
    case STEP_RUNNING: return in_use ? "running" : "interrupted";
    case STEP_NOT_NEEDED: return "not needed";
    case STEP_NO_ROW: return r->finished_at ? "skipped" : "pending";
    default: return "pending";
    }
}

/* What the next `pdsmove migrate` does (into out) and at which step (into step, "" when
 * every step is done); false when the run is finished. */
static bool next_action(const run_info *r, char *out, size_t size, char *step, size_t step_size) {
    out[0] = step[0] = 0;
    if (r->finished_at) return false;
    step_row steps[STATUS_MAX_STEPS + N_MIGRATE_STEPS];
    size_t n = ordered_steps(r, steps, sizeof steps / sizeof steps[0]);
    for (size_t i = 0; i < n; i++) {
        if (steps[i].status == STEP_DONE || steps[i].status == STEP_NOT_NEEDED) continue;
        const char *what = steps[i].name;
        for (size_t k = 0; is_migrate(r) && k < N_MIGRATE_STEPS; k++)
            if (!strcmp(steps[i].name, migrate_steps[k].name)) what = migrate_steps[k].does;
        long long total = r->blobs[0] + r->blobs[1] + r->blobs[2];
        if (is_migrate(r) && !strcmp(steps[i].name, "blobs-fetch") && r->has_fetched && (total || r->blobs_listed)) {
            snprintf(out, size, "download the %lld blob(s) not yet downloaded from the old PDS", total - r->fetched);
        } else if (is_migrate(r) && !strcmp(steps[i].name, "blobs") && (total || r->blobs_listed)) {
            long long left = total - r->blobs[BLOB_DONE];
            if (r->blobs[BLOB_FAILED])
                snprintf(out, size, "copy the %lld blob(s) not yet on the new PDS (%lld of them failed before), then check "
                         "none is missing", left, r->blobs[BLOB_FAILED]);
            else snprintf(out, size, "copy the %lld blob(s) not yet on the new PDS, then check none is missing", left);
        } else if (is_migrate(r) && !strcmp(steps[i].name, "identity") && r->plc_op) {
            snprintf(out, size, "submit the PLC operation the earlier run signed (no new token needed unless the DID's "
                                "log moved on since)");
        } else {
            snprintf(out, size, "%s", what);
        }
        if (steps[i].status == STEP_FAILED) {
            size_t l = strlen(out);
            snprintf(out + l, size - l, "; this step failed last time and is retried");
        }
        snprintf(step, step_size, "%s", steps[i].name);
        return true;
    }
    snprintf(out, size, "close the run (every step is done)");
    return true;
}

typedef struct {
    bool ok;    /* the op parsed */
    char cid[CID_STR_MAX];
    char prev[CID_STR_MAX];
    char pds[512];
    size_t rotation_keys;
} plc_summary;

static void summarize_op(const char *text, plc_summary *s) {
    memset(s, 0, sizeof *s);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    if (!j) return;
    plc_op op;
    plc_op_init(&op, PLC_OP_REGULAR);
    err_t e;
    if (plc_op_from_json(&op, j, &e) == ERR_OK) {
        s->ok = true;
        if (plc_op_cid_str(&op, s->cid, &e) != ERR_OK) s->cid[0] = 0;
        snprintf(s->prev, sizeof s->prev, "%s", op.prev ? op.prev : "");
        const plc_service *svc = plc_op_service(&op, "atproto_pds");
        snprintf(s->pds, sizeof s->pds, "%s", svc && svc->endpoint ? svc->endpoint : "");
        s->rotation_keys = op.n_rotation_keys;
    }
    plc_op_free(&op);
    json_decref(j);
}

static void format_time(long long t, char *out, size_t size) {
    if (!t) {
        snprintf(out, size, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm)) snprintf(out, size, "%lld", t);
}

/* ---- printing ---- */

/* Journal text as JSON; "" → null. */
static json_t *js(const char *s) { return s && *s ? cli_json_text(s) : json_null(); }

/* The journal holds what servers said (step details, blob errors, handles, URLs): every such
 * text is printed through cli_safe. */
static void print_run(const run_info *r, bool in_use) {
    char started[64], finished[64], size[32];
    format_time(r->started_at, started, sizeof started);
    format_time(r->finished_at, finished, sizeof finished);
    const char *name = r->account_arg[0] ? r->account_arg : r->subject;
    if (strcmp(name, r->subject)) printf("%s of %s (%s), run %lld: ", cli_safe(r->kind), cli_safe(name), cli_safe(r->subject), r->id);
    else printf("%s of %s, run %lld: ", cli_safe(r->kind), cli_safe(name), r->id);
    if (r->finished_at) printf("finished %s\n", finished);
    else printf("not finished%s\n", in_use ? " (a pdsmove process is using this journal now)" : "");
    printf("  started    %s\n", started);
    if (r->old_pds[0]) printf("  from       %s\n", cli_safe(r->old_pds));
    if (r->backup_snapshot[0]) printf("  data from  backup snapshot %s\n", cli_safe(r->backup_snapshot));
    if (r->new_pds[0]) {
        printf("  to         %s", cli_safe(r->new_pds));
        if (r->create_handle[0] && r->wanted_handle[0] && strcmp(r->create_handle, r->wanted_handle))
            printf(" as %s, then %s", cli_safe(r->create_handle), cli_safe(r->wanted_handle));
        else if (r->wanted_handle[0]) printf(" as %s", cli_safe(r->wanted_handle));
        printf("\n");
    }
    step_row steps[STATUS_MAX_STEPS + N_MIGRATE_STEPS];
    size_t n = ordered_steps(r, steps, sizeof steps / sizeof steps[0]);
    printf("  steps\n");
    for (size_t i = 0; i < n; i++) {
        const char *word = status_word(r, steps[i].status, in_use);
        if (steps[i].detail[0]) printf("    %-12s %-15s %s", word, steps[i].name, cli_safe(steps[i].detail));
        else printf("    %-12s %s", word, steps[i].name);
        if (steps[i].status == STEP_FAILED && steps[i].attempts > 1) printf(" (%lld attempts)", steps[i].attempts);
        printf("\n");
    }
    long long total = r->blobs[0] + r->blobs[1] + r->blobs[2];
    if (!total && !r->blobs_listed) printf("  blobs      not listed yet\n");
    else if (!total) printf("  blobs      none (the account has no blobs)\n");
    else {
        cli_format_bytes((uint64_t)r->blob_bytes[BLOB_DONE], size, sizeof size);
        printf("  blobs      %lld of %lld copied (%s)", r->blobs[BLOB_DONE], total, size);
        if (r->has_fetched) {
            cli_format_bytes((uint64_t)r->fetched_bytes, size, sizeof size);
            printf(", %lld %s (%s)", r->fetched, r->backup_snapshot[0] ? "taken from the backup" : "downloaded", size);
        }
        if (r->blobs[BLOB_FAILED]) printf(", %lld failed", r->blobs[BLOB_FAILED]);
        if (r->blobs[BLOB_PENDING]) {
            printf(", %lld waiting", r->blobs[BLOB_PENDING]);
            if (r->blob_bytes[BLOB_PENDING]) {
                cli_format_bytes((uint64_t)r->blob_bytes[BLOB_PENDING], size, sizeof size);
                printf(" (%s%s)", r->blob_unknown_size ? "at least " : "", size);
            }
        }
        printf("\n");
        for (size_t i = 0; i < r->n_failed; i++)
            printf("    failed %s after %lld attempt(s): %s\n", cli_safe(r->failed[i].cid), r->failed[i].attempts,
                   r->failed[i].error[0] ? cli_safe(r->failed[i].error) : "no reason recorded");
    }
    if (is_migrate(r)) {
        const step_row *id = find_step(r, "identity");
        bool id_done = id && id->status == STEP_DONE;
        plc_summary op;
        summarize_op(r->plc_op, &op);
        if (r->plc_op && op.ok) {
            printf("  PLC op     signed%s: %s%s, points the DID at %s, %zu rotation key(s), follows %s\n",
                   id_done ? " and confirmed by the directory" : ", not yet confirmed by the directory",
                   op.cid[0] ? "cid " : "", op.cid, op.pds[0] ? cli_safe(op.pds) : "(no PDS)", op.rotation_keys,
                   op.prev[0] ? cli_safe(op.prev) : "(genesis)");
        } else if (r->plc_op) {
            printf("  PLC op     signed (the journal's copy does not parse)\n");
        } else {
            printf("  PLC op     %s\n", id_done ? "none signed by this run (the DID already pointed at the new PDS)"
                                               : "none signed yet");
        }
    }
    if (r->limit_reset_at > 0 && !r->finished_at) {
        time_t t = (time_t)r->limit_reset_at;
        struct tm tm;
        char when[64] = "?";
        if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", &tm);
        long long left = r->limit_reset_at - (long long)time(NULL);
        if (left > 0)
            printf("  can go on  at %s (local time, in %lld h %02lld min): a server's rate limit stopped the last run; "
                   "run the same command again then\n", when, left / 3600, left / 60 % 60);
        else printf("  can go on  now: the rate limit that stopped the last run reset at %s\n", when);
    }
    char next[600], step[JOURNAL_NAME_MAX];
    if (!next_action(r, next, sizeof next, step, sizeof step)) printf("  next run will: nothing; this migration is finished\n");
    else if (step[0]) printf("  next run will: %s (step %s)\n", next, step);
    else printf("  next run will: %s\n", next);
}

static json_t *run_json(const run_info *r, bool in_use) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "kind", js(r->kind));
    json_object_set_new(o, "did", js(r->subject));
    json_object_set_new(o, "account", js(r->account_arg));
    json_object_set_new(o, "old_pds", js(r->old_pds));
    if (r->backup_snapshot[0]) json_object_set_new(o, "backup_snapshot", js(r->backup_snapshot));
    json_object_set_new(o, "new_pds", js(r->new_pds));
    json_object_set_new(o, "handle", js(r->wanted_handle));
    json_object_set_new(o, "started_at", json_integer(r->started_at));
    json_object_set_new(o, "finished_at", r->finished_at ? json_integer(r->finished_at) : json_null());
    json_object_set_new(o, "finished", json_boolean(r->finished_at != 0));
    json_t *steps = json_array();
    step_row rows[STATUS_MAX_STEPS + N_MIGRATE_STEPS];
    size_t n = ordered_steps(r, rows, sizeof rows / sizeof rows[0]);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "name", js(rows[i].name));
        json_object_set_new(s, "status", json_string(status_word(r, rows[i].status, in_use)));
        json_object_set_new(s, "detail", js(rows[i].detail));
        json_object_set_new(s, "attempts", json_integer(rows[i].attempts));
        json_object_set_new(s, "updated_at", rows[i].updated_at ? json_integer(rows[i].updated_at) : json_null());
        json_array_append_new(steps, s);
    }
    json_object_set_new(o, "steps", steps);
    json_t *b = json_object();
    json_object_set_new(b, "listed", json_boolean(r->blobs_listed));
    json_object_set_new(b, "total", json_integer(r->blobs[0] + r->blobs[1] + r->blobs[2]));
    json_object_set_new(b, "done", json_integer(r->blobs[BLOB_DONE]));
    json_object_set_new(b, "failed", json_integer(r->blobs[BLOB_FAILED]));
    json_object_set_new(b, "pending", json_integer(r->blobs[BLOB_PENDING]));
    json_object_set_new(b, "done_bytes", json_integer(r->blob_bytes[BLOB_DONE]));
    json_object_set_new(b, "fetched", r->has_fetched ? json_integer(r->fetched) : json_null());
    json_object_set_new(b, "fetched_bytes", r->has_fetched ? json_integer(r->fetched_bytes) : json_null());
    json_object_set_new(b, "pending_bytes", json_integer(r->blob_bytes[BLOB_PENDING] + r->blob_bytes[BLOB_FAILED]));
    json_object_set_new(o, "blobs", b);
    /* a rate limit stopped the last run: it can go on from this time (epoch seconds) */
    json_object_set_new(o, "limit_reset_at", r->limit_reset_at > 0 && !r->finished_at ? json_integer(r->limit_reset_at) : json_null());
    plc_summary op;
    summarize_op(r->plc_op, &op);
    if (r->plc_op) {
        json_t *p = json_object();
        json_object_set_new(p, "cid", js(op.cid));
        json_object_set_new(p, "prev", js(op.prev));
        json_object_set_new(p, "pds", js(op.pds));
        json_t *raw = json_loads(r->plc_op, 0, NULL);
        json_object_set_new(p, "operation", raw ? raw : json_null());
        json_object_set_new(o, "plc_operation", p);
    } else {
        json_object_set_new(o, "plc_operation", json_null());
    }
    char next[600], step[JOURNAL_NAME_MAX];
    if (!next_action(r, next, sizeof next, step, sizeof step)) json_object_set_new(o, "next", json_null());
    else {
        json_t *nx = json_object();
        json_object_set_new(nx, "step", step[0] ? js(step) : json_null());
        json_object_set_new(nx, "action", js(next));
        json_object_set_new(o, "next", nx);
    }
    return o;
}

/* True when a pdsmove holds the journal's runner lock now. The probe is non-blocking and
 * shared, released at once: it never waits, and never holds off a running migrate. */
static bool journal_in_use(const char *path) {
    char lock_path[1100];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the probe, if it was granted */
    return busy;
}

static void print_json(json_t *doc) {
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) puts(s);
    free(s);
    json_decref(doc);
}

static int show(const char *path, const char *account, bool json) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT) {
            cli_errorf("cannot read the journal %s: %s", path, strerror(errno));
            return EXIT_FAIL;
        }
        if (json) {
            json_t *doc = json_object();
            json_object_set_new(doc, "journal", js(path));
            json_object_set_new(doc, "exists", json_false());
            json_object_set_new(doc, "runs", json_array());
            print_json(doc);
        } else {
            printf("no journal at %s: no migration has been run with it yet\n"
                   "(`pdsmove migrate` creates it; give --journal PATH if you used another one)\n",
                   path);
        }
        return EXIT_OK_;
    }
    sqlite3 *db = NULL;
    err_t e = {0};
    int status = EXIT_FAIL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        cli_errorf("cannot open the journal %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return EXIT_FAIL;
    }
    sqlite3_busy_timeout(db, 3000);
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = atoi(col_text(st, 0));
    sqlite3_finalize(st);
    if (version < 1) {
        cli_errorf("%s is not a pdsmove journal (%s)", path, version < 0 ? sqlite3_errmsg(db) : "no schema version");
        goto out;
    }
    if (version > JOURNAL_SCHEMA_VERSION) {
        cli_errorf("journal %s was written by a newer pdsmove (schema %d > %d); use that pdsmove to read it", path, version,
                   JOURNAL_SCHEMA_VERSION);
        goto out;
    }
    bool in_use = journal_in_use(path);
    long long ids[STATUS_MAX_RUNS];
    size_t n = 0;
    long long more = 0;
    if (list_runs(db, path, account, ids, account ? 1 : STATUS_MAX_RUNS, &n, &more, &e)) {
        cli_error(&e);
        goto out;
    }
    run_info *r = malloc(sizeof *r);
    if (!r) {
        cli_errorf("out of memory");
        goto out;
    }
    json_t *doc = NULL, *runs = NULL;
    if (json) {
        doc = json_object();
        runs = json_array();
        json_object_set_new(doc, "journal", js(path));
        json_object_set_new(doc, "exists", json_true());
        json_object_set_new(doc, "in_use", json_boolean(in_use));
    } else {
        printf("journal %s%s\n", path, in_use ? " (in use by a running pdsmove)" : "");
    }
    status = EXIT_OK_;
    for (size_t i = 0; i < n; i++) {
        if (load_run(db, path, ids[i], r, &e)) {
            cli_error(&e);
            status = EXIT_FAIL;
            free(r->plc_op);
            break;
        }
        if (json) json_array_append_new(runs, run_json(r, in_use && !r->finished_at));
        else {
            printf("\n");
            print_run(r, in_use && !r->finished_at);
        }
        free(r->plc_op);
    }
    free(r);
    if (json) {
        json_object_set_new(doc, "runs", runs);
        json_object_set_new(doc, "older_runs_not_shown", json_integer(more));
        if (status == EXIT_OK_) print_json(doc);
        else json_decref(doc);
    } else if (n == 0) {
        if (account) printf("\nno migration of %s in this journal\n", account);
        else printf("\nno migration in this journal yet\n");
    } else if (more > 0) {
        printf("\n(%lld older run(s)%s not shown%s)\n", more, account ? " of this account" : "",
               account ? "" : "; give an ACCOUNT to see its latest run");
    }
out:
    sqlite3_close(db);
    return status;
}

int cmd_status(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return EXIT_OK_;
    }
    static const struct option longopts[] = {{"journal", required_argument, 0, 'j'}, {"json", no_argument, 0, 'J'}, {0, 0, 0, 0}};
    const char *path = NULL;
    bool json = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': path = optarg; break;
        case 'J': json = true; break;
        case ':':
            cli_errorf("option '%s' needs a value (see `pdsmove status --help`)", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            if (optopt > 0 && optopt < 128) cli_errorf("unknown option '-%c' (see `pdsmove status --help`)", optopt);
            else cli_errorf("unknown option '%s' (see `pdsmove status --help`)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        cli_errorf("give at most one ACCOUNT, not '%s' and '%s' (see `pdsmove status --help`)", argv[optind], argv[optind + 1]);
        return EXIT_USAGE;
    }
    const char *account = optind < argc ? argv[optind] : NULL;
    if (account && account[0] == '@') account++;
    char def[1024];
    if (!path) {
        cli_default_journal(def, sizeof def);
        path = def;
    }
    return show(path, account, json);
}
