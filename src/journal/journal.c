/* journal.c — SQLite-backed run journal; see journal.h and docs/journal.md.
 * Must never: store secrets (passwords, tokens, keys; texts that can come from a server pass
 * through redact_text first), or leave a multi-row change half done (every public mutation is
 * a single statement or runs inside one transaction). */
#include "pdsmove/journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>

#include "pdsmove/redact.h"

struct journal {
    sqlite3 *db;
    int lock_fd;
    bool in_tx;
    char path[1024];
    redact_set secrets; /* copies, wiped by journal_close */
    int64_t kind_run_id;                 /* the crash hook: run whose kind is cur_kind */
    char cur_kind[JOURNAL_NAME_MAX];
};

/* The crash-point test hook (docs/journal.md): PDSMOVE_CRASH_AT=<kind>:<n> makes the process
 * _exit(JOURNAL_CRASH_STATUS) right after the n-th committed change belonging to a run of that kind
 * (n = 0: only count); PDSMOVE_CRASH_COUNT=FILE appends one line per counted commit ("<n> <what>").
 * Read once per process, at the first journal_open; process-wide so that every handle counts. */
static struct {
    bool loaded, active, fail; /* fail: report an error at the n-th commit instead of exiting */
    char kind[JOURNAL_NAME_MAX];
    long at, count;
    char count_path[1024];
    pid_t pid; /* the process that read it */
    char fail_label[128]; /* ":fail=<label>": at counts only the commits so labelled */
    long label_count;
} crash;

static void crash_load(void) {
    if (crash.loaded && crash.pid == getpid()) return; /* a forked child reads its own environment */
    memset(&crash, 0, sizeof crash);
    crash.loaded = true;
    crash.pid = getpid();
    const char *at = getenv("PDSMOVE_CRASH_AT");
    const char *colon = at ? strchr(at, ':') : NULL;
    if (!colon || colon == at || (size_t)(colon - at) >= sizeof crash.kind) return;
    char *end;
    long n = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || n < 0) return;
    if (!strncmp(end, ":fail", 5) && (!end[5] || end[5] == '=') &&
        strlen(end) < sizeof crash.fail_label + 6) {
        crash.fail = true;
        if (end[5] == '=') snprintf(crash.fail_label, sizeof crash.fail_label, "%s", end + 6);
    } else if (*end) {
        return;
    }
    memcpy(crash.kind, at, (size_t)(colon - at));
    crash.at = n;
    const char *cp = getenv("PDSMOVE_CRASH_COUNT");
    if (cp && strlen(cp) < sizeof crash.count_path) snprintf(crash.count_path, sizeof crash.count_path, "%s", cp);
    crash.active = true;
}

static const char *schema_sql =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS run ("
    "  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL,"
    "  started_at INTEGER NOT NULL, finished_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS run_subject ON run(kind, subject);"
    "CREATE TABLE IF NOT EXISTS step ("
    "  run_id INTEGER NOT NULL REFERENCES run(id), name TEXT NOT NULL,"
    "  status INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL, PRIMARY KEY (run_id, name));"
    "CREATE TABLE IF NOT EXISTS kv ("
    "  run_id INTEGER NOT NULL REFERENCES run(id), key TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (run_id, key));"
    "CREATE TABLE IF NOT EXISTS blob ("
    "  run_id INTEGER NOT NULL REFERENCES run(id), cid TEXT NOT NULL, size INTEGER NOT NULL DEFAULT -1,"
    "  status INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',"
    "  seq INTEGER NOT NULL, fetched INTEGER NOT NULL DEFAULT 0, seen INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (run_id, cid));"
    "CREATE INDEX IF NOT EXISTS blob_status ON blob(run_id, status, seq);";

/* The columns each upgrade adds: a journal of version 1 may lack them (the first release) or
 * have them (later version-1 builds added them without a version bump). */
static const struct {
    const char *table, *column, *sql;
} upgrade_columns[] = {
    {"blob", "fetched", "ALTER TABLE blob ADD COLUMN fetched INTEGER NOT NULL DEFAULT 0"},
    {"blob", "seen", "ALTER TABLE blob ADD COLUMN seen INTEGER NOT NULL DEFAULT 0"},
};

/* The crash hook's kind for run_id (looked up once per run). */
static void crash_note_run(journal *j, int64_t run_id) {
    if (run_id <= 0 || run_id == j->kind_run_id) return;
    sqlite3_stmt *st;
    j->cur_kind[0] = '\0';
    j->kind_run_id = run_id;
    if (sqlite3_prepare_v2(j->db, "SELECT kind FROM run WHERE id=?1", -1, &st, NULL) != SQLITE_OK) return;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW) snprintf(j->cur_kind, sizeof j->cur_kind, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Whether the change about to be made counts (a change outside a transaction, or a commit). */
static bool crash_counts(journal *j, int64_t run_id) {
    if (!crash.active) return false;
    crash_note_run(j, run_id);
    return !j->in_tx && strcmp(j->cur_kind, crash.kind) == 0;
}

/* "<what>[ <name>][ <status>]" */
static void crash_label(char *out, size_t size, const char *what, const char *name, const char *status) {
    snprintf(out, size, "%s%s%s%s%s", what, name ? " " : "", name ? name : "", status ? " " : "", status ? status : "");
}

static void crash_log(const char *what, const char *name, const char *status, bool failed) {
    if (!crash.count_path[0]) return;
    FILE *f = fopen(crash.count_path, "a");
    if (!f) return;
    char label[256];
    crash_label(label, sizeof label, what, name, status);
    fprintf(f, "%ld %s%s\n", crash.count, label, failed ? " (failed on purpose)" : "");
    fclose(f);
}

/* Called after every change that has just been made durable (outside a transaction: the
 * statement itself; journal_tx_commit: the whole batch): counts it, and exits where asked. */
static void commit_point(journal *j, int64_t run_id, const char *what, const char *name, const char *status) {
    if (!crash_counts(j, run_id)) return;
    crash.count++;
    crash_log(what, name, status, false);
    if (!crash.fail && crash.at > 0 && crash.count == crash.at) _exit(JOURNAL_CRASH_STATUS);
}

/* Called before each such change: in ":fail" mode, the chosen one is not made and fails, as
 * on a full disk (it still counts, so that the numbering stays that of the counting run). */
static err_code crash_refuse(journal *j, int64_t run_id, const char *what, const char *name, const char *status, err_t *e) {
    if (!crash.fail || !crash_counts(j, run_id)) return ERR_OK;
    if (crash.fail_label[0]) {
        char label[256];
        crash_label(label, sizeof label, what, name, status);
        if (strcmp(label, crash.fail_label) != 0 || ++crash.label_count != crash.at) return ERR_OK;
    } else if (crash.count + 1 != crash.at) {
        return ERR_OK;
    }
    crash.count++;
    crash_log(what, name, status, true);
    return err_set(e, ERR_IO, "journal %s: write %ld failed (injected by PDSMOVE_CRASH_AT, a test hook)", j->path, crash.count);
}

static err_code db_err(journal *j, err_t *e, const char *what) {
    int code = sqlite3_errcode(j->db);
    return err_set(e, code == SQLITE_FULL ? ERR_IO : ERR_CONFLICT, "journal %s: %s: %s%s", j->path, what,
                   sqlite3_errmsg(j->db), code == SQLITE_FULL ? " (the disk is full: free space and re-run)" : "");
}

static err_code exec(journal *j, const char *sql, err_t *e) {
    char *msg = NULL;
    if (sqlite3_exec(j->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, ERR_CONFLICT, "journal %s: %s", j->path, msg ? msg : "error");
        sqlite3_free(msg);
        return ERR_CONFLICT;
    }
    return ERR_OK;
}

static err_code prepare(journal *j, const char *sql, sqlite3_stmt **st, err_t *e) {
    if (sqlite3_prepare_v2(j->db, sql, -1, st, NULL) != SQLITE_OK) return db_err(j, e, "preparing a statement");
    return ERR_OK;
}

static bool name_ok(const char *s) { return s && *s && strlen(s) < JOURNAL_NAME_MAX; }

static err_code schema_has_column(journal *j, const char *table, const char *column, bool *has, err_t *e) {
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    sqlite3_stmt *st;
    err_code rc = prepare(j, sql, &st, e);
    if (rc) return rc;
    *has = false;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        if (strcmp((const char *)sqlite3_column_text(st, 1), column) == 0) *has = true;
    if (s != SQLITE_DONE) rc = db_err(j, e, "reading the schema");
    sqlite3_finalize(st);
    return rc;
}

/* The version recorded in meta: 0 for an empty file (no tables at all), -1 for a database that
 * is not a pdsmove journal. */
static err_code schema_version_get(journal *j, int *version, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT (SELECT COUNT(*) FROM sqlite_master), "
                             "(SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='meta')", &st, e);
    if (rc) return rc;
    int objects = 0, has_meta = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        objects = sqlite3_column_int(st, 0);
        has_meta = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    *version = objects == 0 ? 0 : -1;
    if (!has_meta) return ERR_OK;
    if ((rc = prepare(j, "SELECT value FROM meta WHERE key='schema_version'", &st, e))) return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        char *end;
        long n = strtol(v ? v : "", &end, 10);
        if (v && *v && !*end && n > 0 && n < 1000000) *version = (int)n;
    }
    sqlite3_finalize(st);
    return ERR_OK;
}

/* Inside open's transaction: creates a new journal at the current version, or brings an older one
 * up to it (docs/journal.md, "Versions"), or refuses one it does not understand. */
static err_code schema_upgrade(journal *j, err_t *e) {
    int version;
    err_code rc = schema_version_get(j, &version, e);
    if (rc) return rc;
    if (version < 0)
        return err_set(e, ERR_CONFLICT, "%s is an SQLite database but not a pdsmove journal; name another file with --journal",
                       j->path);
    if (version > JOURNAL_SCHEMA_VERSION)
        return err_set(e, ERR_CONFLICT, "journal %s was written by a newer pdsmove (schema %d > %d); upgrade pdsmove",
                       j->path, version, JOURNAL_SCHEMA_VERSION);
    if ((rc = exec(j, schema_sql, e))) return rc; /* a new journal; no-op on existing tables */
    if (version == 1) { /* 1 -> 2: the blob columns, which some version-1 journals already have */
        for (size_t i = 0; i < sizeof upgrade_columns / sizeof upgrade_columns[0]; i++) {
            bool has;
            if ((rc = schema_has_column(j, upgrade_columns[i].table, upgrade_columns[i].column, &has, e))) return rc;
            if (!has && (rc = exec(j, upgrade_columns[i].sql, e))) return rc;
        }
    }
    if (version == JOURNAL_SCHEMA_VERSION) return ERR_OK;
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO meta(key, value) VALUES ('schema_version', '%d') "
                              "ON CONFLICT(key) DO UPDATE SET value=excluded.value", JOURNAL_SCHEMA_VERSION);
    return exec(j, sql, e);
}

err_code journal_open(const char *path, journal **out, err_t *e) {
    *out = NULL;
    if (strlen(path) >= sizeof((journal *)0)->path) return err_set(e, ERR_USAGE, "journal path too long");
    journal *j = calloc(1, sizeof *j);
    if (!j) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(j->path, sizeof j->path, "%s", path);
    j->lock_fd = -1;

    /* The lock file, not the database, carries the single-runner lock (SQLite's own locks are
     * per transaction). */
    char lock_path[1100];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    j->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->lock_fd < 0) {
        err_set(e, ERR_IO, "cannot open the journal lock %s: %s", lock_path, strerror(errno));
        journal_close(j);
        return ERR_IO;
    }
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err_set(e, ERR_CONFLICT, "journal %s is in use by another pdsmove process; wait for it to finish (or stop it) and run again",
                path);
        journal_close(j);
        return ERR_CONFLICT;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600); /* create with a private mode */
    if (fd < 0) {
        err_set(e, ERR_IO, "cannot create the journal %s: %s", path, strerror(errno));
        journal_close(j);
        return ERR_IO;
    }
    close(fd);
    if (sqlite3_open_v2(path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "cannot open the journal %s: %s", path, j->db ? sqlite3_errmsg(j->db) : "out of memory");
        journal_close(j);
        return ERR_IO;
    }
    sqlite3_busy_timeout(j->db, 5000);
    err_code rc = exec(j, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", e);
    if (!rc) rc = exec(j, "BEGIN IMMEDIATE", e);
    if (!rc) rc = schema_upgrade(j, e);
    if (!rc) rc = exec(j, "COMMIT", e);
    if (rc) {
        exec(j, "ROLLBACK", NULL);
        journal_close(j);
        return rc;
    }
    crash_load();
    *out = j;
    return ERR_OK;
}

void journal_close(journal *j) {
    if (!j) return;
    if (j->db) sqlite3_close(j->db);
    if (j->lock_fd >= 0) close(j->lock_fd); /* releases the flock */
    redact_set_clear(&j->secrets);
    free(j);
}

err_code journal_set_secrets(journal *j, const char *const *secrets, size_t n, err_t *e) {
    redact_set_clear(&j->secrets);
    for (size_t i = 0; i < n; i++) {
        err_code rc = redact_set_add(&j->secrets, secrets[i], e);
        if (rc) return err_wrap(e, "journal %s", j->path);
    }
    return ERR_OK;
}

err_code journal_add_secret(journal *j, const char *secret, err_t *e) {
    err_code rc = redact_set_add(&j->secrets, secret, e);
    return rc ? err_wrap(e, "journal %s", j->path) : ERR_OK;
}

/* text as it may be stored: redacted into out (JOURNAL_VALUE_MAX bytes) when secrets are set. */
static const char *storable(const journal *j, const char *text, char *out) {
    if (!text || !*text) return "";
    if (redact_set_empty(&j->secrets)) return text;
    return redact_text(&j->secrets, text, out, JOURNAL_VALUE_MAX);
}

static void fill_run(sqlite3_stmt *st, journal_run *r) {
    r->id = sqlite3_column_int64(st, 0);
    snprintf(r->kind, sizeof r->kind, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(r->subject, sizeof r->subject, "%s", (const char *)sqlite3_column_text(st, 2));
    r->finished = sqlite3_column_type(st, 3) != SQLITE_NULL;
    r->resumed = false;
}

err_code journal_run_latest(journal *j, const char *kind, const char *subject, journal_run *out, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT id, kind, subject, finished_at FROM run WHERE kind=?1 AND subject=?2 ORDER BY id DESC LIMIT 1", &st, e);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        fill_run(st, out);
        rc = ERR_OK;
    } else if (s == SQLITE_DONE) {
        rc = err_set(e, ERR_NOT_FOUND, "no %s run for %s in the journal", kind, subject);
    } else {
        rc = db_err(j, e, "reading runs");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_run_find(journal *j, const char *kind, const char *key, const char *value, bool unfinished_only,
                          journal_run *out, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT r.id, r.kind, r.subject, r.finished_at FROM run r JOIN kv ON kv.run_id = r.id "
                             "WHERE r.kind=?1 AND (?4 = 0 OR r.finished_at IS NULL) AND kv.key=?2 AND kv.value=?3 "
                             "ORDER BY r.id DESC LIMIT 1",
                          &st, e);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, unfinished_only ? 1 : 0);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        fill_run(st, out);
        out->resumed = !out->finished;
    } else if (s == SQLITE_DONE) {
        rc = err_set(e, ERR_NOT_FOUND, "no %s run with %s=%s", kind, key, value);
    } else {
        rc = db_err(j, e, "reading runs");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_run_begin(journal *j, const char *kind, const char *subject, journal_run *out, err_t *e) {
    if (!name_ok(kind) || !subject || !*subject || strlen(subject) >= sizeof out->subject)
        return err_set(e, ERR_USAGE, "journal_run_begin: bad kind or subject");
    err_t tmp;
    err_code rc = journal_run_latest(j, kind, subject, out, &tmp);
    if (rc == ERR_OK && !out->finished) {
        out->resumed = true;
        return ERR_OK;
    }
    if (rc != ERR_OK && rc != ERR_NOT_FOUND) {
        if (e) *e = tmp;
        return rc;
    }
    sqlite3_stmt *st;
    rc = prepare(j, "INSERT INTO run(kind, subject, started_at) VALUES (?1, ?2, ?3)", &st, e);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "starting a run");
    sqlite3_finalize(st);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = sqlite3_last_insert_rowid(j->db);
    snprintf(out->kind, sizeof out->kind, "%s", kind);
    snprintf(out->subject, sizeof out->subject, "%s", subject);
    commit_point(j, out->id, "run-begin", kind, NULL);
    return ERR_OK;
}

err_code journal_run_finish(journal *j, int64_t run_id, err_t *e) {
    if (crash_refuse(j, run_id, "run-finish", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE run SET finished_at=?2 WHERE id=?1", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "finishing a run");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "run-finish", NULL, NULL);
    return rc;
}

const char *journal_step_status_name(journal_step_status s) {
    switch (s) {
    case STEP_PENDING: return "pending";
    case STEP_RUNNING: return "running";
    case STEP_DONE: return "done";
    case STEP_FAILED: return "failed";
    }
    return "?";
}

err_code journal_step_get(journal *j, int64_t run_id, const char *step, journal_step_status *status, char *detail,
                          size_t detail_size, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT status, detail FROM step WHERE run_id=?1 AND name=?2", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, step, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *status = STEP_PENDING;
    if (detail && detail_size) detail[0] = 0;
    if (s == SQLITE_ROW) {
        *status = (journal_step_status)sqlite3_column_int(st, 0);
        if (detail && detail_size) snprintf(detail, detail_size, "%s", (const char *)sqlite3_column_text(st, 1));
    } else if (s != SQLITE_DONE) {
        rc = db_err(j, e, "reading a step");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_step_set(journal *j, int64_t run_id, const char *step, journal_step_status status, const char *detail,
                          err_t *e) {
    if (!name_ok(step)) return err_set(e, ERR_USAGE, "bad step name");
    if (detail && strlen(detail) >= JOURNAL_VALUE_MAX) return err_set(e, ERR_LIMIT, "step detail too long");
    char clean[JOURNAL_VALUE_MAX];
    if (crash_refuse(j, run_id, "step", step, journal_step_status_name(status), e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j,
                          "INSERT INTO step(run_id, name, status, detail, attempts, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                          "ON CONFLICT(run_id, name) DO UPDATE SET status=excluded.status, detail=excluded.detail, "
                          "attempts=attempts + excluded.attempts, updated_at=excluded.updated_at",
                          &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, step, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)status);
    sqlite3_bind_text(st, 4, storable(j, detail, clean), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, status == STEP_RUNNING ? 1 : 0);
    sqlite3_bind_int64(st, 6, (int64_t)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "recording a step");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "step", step, journal_step_status_name(status));
    return rc;
}

bool journal_step_done(journal *j, int64_t run_id, const char *step) {
    journal_step_status s;
    return journal_step_get(j, run_id, step, &s, NULL, 0, NULL) == ERR_OK && s == STEP_DONE;
}

err_code journal_kv_set(journal *j, int64_t run_id, const char *key, const char *value, err_t *e) {
    if (!name_ok(key)) return err_set(e, ERR_USAGE, "bad journal key");
    if (strlen(value) >= JOURNAL_VALUE_MAX) return err_set(e, ERR_LIMIT, "journal value for %s too long", key);
    if (crash_refuse(j, run_id, "kv", key, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "INSERT INTO kv(run_id, key, value) VALUES (?1, ?2, ?3) "
                             "ON CONFLICT(run_id, key) DO UPDATE SET value=excluded.value", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "recording a value");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "kv", key, NULL);
    return rc;
}

err_code journal_kv_get(journal *j, int64_t run_id, const char *key, char *value, size_t value_size, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT value FROM kv WHERE run_id=?1 AND key=?2", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (strlen(v) >= value_size) rc = err_set(e, ERR_LIMIT, "journal value for %s does not fit", key);
        else snprintf(value, value_size, "%s", v);
    } else if (s == SQLITE_DONE) {
        rc = err_set(e, ERR_NOT_FOUND, "no value for %s in the journal", key);
    } else {
        rc = db_err(j, e, "reading a value");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_blob_add(journal *j, int64_t run_id, const char *cid, int64_t size_bytes, err_t *e) {
    if (!cid || !*cid || strlen(cid) >= 128) return err_set(e, ERR_USAGE, "bad blob CID");
    if (crash_refuse(j, run_id, "blob-add", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "INSERT INTO blob(run_id, cid, size, seq) VALUES (?1, ?2, ?3, "
                             "(SELECT COALESCE(MAX(seq), 0) + 1 FROM blob WHERE run_id=?1)) "
                             "ON CONFLICT(run_id, cid) DO NOTHING", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size_bytes);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "recording a blob");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob-add", NULL, NULL);
    return rc;
}

err_code journal_blob_reset_attempts(journal *j, int64_t run_id, err_t *e) {
    if (crash_refuse(j, run_id, "blob-reset", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE blob SET attempts=0 WHERE run_id=?1 AND status != 1 AND attempts > 0", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "resetting blob attempts");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob-reset", NULL, NULL);
    return rc;
}

err_code journal_blob_set(journal *j, int64_t run_id, const char *cid, journal_blob_status status, int64_t size_bytes,
                          const char *error, err_t *e) {
    char clean[JOURNAL_VALUE_MAX];
    if (crash_refuse(j, run_id, "blob", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE blob SET status=?3, size=CASE WHEN ?4 >= 0 THEN ?4 ELSE size END, "
                             "error=?5, attempts=attempts + (?3 = 2) WHERE run_id=?1 AND cid=?2", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)status);
    sqlite3_bind_int64(st, 4, size_bytes);
    sqlite3_bind_text(st, 5, storable(j, error, clean), -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "updating a blob");
    else if (sqlite3_changes(j->db) != 1) rc = err_set(e, ERR_NOT_FOUND, "blob %s is not in this run's list", cid);
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob", NULL, NULL);
    return rc;
}

err_code journal_blob_set_fetched(journal *j, int64_t run_id, const char *cid, bool fetched, int64_t size_bytes,
                                  err_t *e) {
    if (crash_refuse(j, run_id, "blob-fetched", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE blob SET fetched=?3, size=CASE WHEN ?4 >= 0 THEN ?4 ELSE size END "
                             "WHERE run_id=?1 AND cid=?2", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, fetched ? 1 : 0);
    sqlite3_bind_int64(st, 4, size_bytes);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "updating a blob");
    else if (sqlite3_changes(j->db) != 1) rc = err_set(e, ERR_NOT_FOUND, "blob %s is not in this run's list", cid);
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob-fetched", NULL, NULL);
    return rc;
}

err_code journal_blob_next(journal *j, int64_t run_id, journal_blob_phase phase, int max_attempts, char (*cids)[128],
                           size_t max, size_t *n, err_t *e) {
    *n = 0;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT cid FROM blob WHERE run_id=?1 AND status != 1 AND attempts < ?2 AND fetched = ?4 "
                             "ORDER BY status, seq LIMIT ?3", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, max_attempts);
    sqlite3_bind_int64(st, 3, (int64_t)max);
    sqlite3_bind_int(st, 4, phase == BLOB_PHASE_UPLOAD ? 1 : 0);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        assert(*n < max);
        snprintf(cids[*n], 128, "%s", (const char *)sqlite3_column_text(st, 0));
        (*n)++;
    }
    if (s != SQLITE_DONE) rc = db_err(j, e, "listing blobs");
    sqlite3_finalize(st);
    return rc;
}

err_code journal_blob_counts_get(journal *j, int64_t run_id, journal_blob_counts *out, err_t *e) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT COUNT(*), SUM(status=1), SUM(status=2), SUM(status=0), "
                             "COALESCE(SUM(CASE WHEN status=1 AND size > 0 THEN size ELSE 0 END), 0), "
                             "SUM(fetched=1), COALESCE(SUM(CASE WHEN fetched=1 AND size > 0 THEN size ELSE 0 END), 0) "
                             "FROM blob WHERE run_id=?1", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->total = sqlite3_column_int64(st, 0);
        out->done = sqlite3_column_int64(st, 1);
        out->failed = sqlite3_column_int64(st, 2);
        out->pending = sqlite3_column_int64(st, 3);
        out->done_bytes = sqlite3_column_int64(st, 4);
        out->fetched = sqlite3_column_int64(st, 5);
        out->fetched_bytes = sqlite3_column_int64(st, 6);
    } else {
        rc = db_err(j, e, "counting blobs");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_blob_each(journal *j, int64_t run_id, journal_blob_status status,
                           bool (*fn)(void *ctx, const char *cid, int64_t size_bytes, const char *error), void *ctx,
                           err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT cid, size, error FROM blob WHERE run_id=?1 AND status=?2 ORDER BY seq", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, (int)status);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
                (const char *)sqlite3_column_text(st, 2)))
            break;
    }
    if (s != SQLITE_DONE && s != SQLITE_ROW) rc = db_err(j, e, "listing blobs");
    sqlite3_finalize(st);
    return rc;
}

err_code journal_blob_clear_seen(journal *j, int64_t run_id, err_t *e) {
    if (crash_refuse(j, run_id, "blob-clear-seen", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE blob SET seen=0 WHERE run_id=?1", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "clearing blob marks");
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob-clear-seen", NULL, NULL);
    return rc;
}

err_code journal_blob_mark_seen(journal *j, int64_t run_id, const char *cid, err_t *e) {
    if (crash_refuse(j, run_id, "blob-seen", NULL, NULL, e)) return ERR_IO;
    sqlite3_stmt *st;
    err_code rc = prepare(j, "UPDATE blob SET seen=1 WHERE run_id=?1 AND cid=?2", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, e, "marking a blob");
    else if (sqlite3_changes(j->db) != 1) rc = err_set(e, ERR_NOT_FOUND, "blob %s is not in this run's list", cid);
    sqlite3_finalize(st);
    if (!rc) commit_point(j, run_id, "blob-seen", NULL, NULL);
    return rc;
}

err_code journal_blob_count_unseen(journal *j, int64_t run_id, int64_t *n, char *first_cid, size_t first_size, err_t *e) {
    sqlite3_stmt *st;
    err_code rc = prepare(j, "SELECT COUNT(*), MIN(cid) FROM blob WHERE run_id=?1 AND seen=0", &st, e);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
        if (first_cid && first_size)
            snprintf(first_cid, first_size, "%s", sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "");
    } else {
        rc = db_err(j, e, "counting blobs");
    }
    sqlite3_finalize(st);
    return rc;
}

err_code journal_tx_begin(journal *j, err_t *e) {
    if (j->in_tx) return err_set(e, ERR_USAGE, "journal transaction already open");
    err_code rc = exec(j, "BEGIN IMMEDIATE", e);
    if (!rc) j->in_tx = true;
    return rc;
}

err_code journal_tx_commit(journal *j, err_t *e) {
    if (!j->in_tx) return err_set(e, ERR_USAGE, "no journal transaction open");
    j->in_tx = false;
    if (crash_refuse(j, 0, "tx", NULL, NULL, e)) {
        exec(j, "ROLLBACK", NULL);
        return ERR_IO;
    }
    err_code rc = exec(j, "COMMIT", e);
    if (!rc) commit_point(j, 0, "tx", NULL, NULL);
    return rc;
}

void journal_tx_rollback(journal *j) {
    if (!j->in_tx) return;
    j->in_tx = false;
    exec(j, "ROLLBACK", NULL);
}
