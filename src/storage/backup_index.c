/* backup_index.c — SQLite index of a backup directory; see backup_index.h.
 * Must never be the only copy of anything: every fact here is also in an archive's manifest
 * or blob list, so losing this file loses nothing. Must never hand out a name it has not
 * checked (backup_names.h): the file is untrusted input like the rest of the directory. */
#include "pdsmove/backup_index.h"

#include "pdsmove/backup_names.h"
#include "pdsmove/syntax.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct backup_index {
    sqlite3 *db;
    char path[BACKUP_PATH_MAX];
    bool check; /* opened to read a backup: every row is checked before it is handed out */
};

static const char *schema_sql =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS snapshot ("
    "  id TEXT PRIMARY KEY, did TEXT NOT NULL, created_at TEXT NOT NULL, incremental INTEGER NOT NULL,"
    "  base_id TEXT NOT NULL, rev TEXT NOT NULL, commit_cid TEXT NOT NULL, data_root TEXT NOT NULL,"
    "  archive TEXT NOT NULL, records INTEGER NOT NULL, blobs_total INTEGER NOT NULL, blobs_new INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS snapshot_did ON snapshot(did, created_at);"
    "CREATE TABLE IF NOT EXISTS blob ("
    "  did TEXT NOT NULL, cid TEXT NOT NULL, size INTEGER NOT NULL, snapshot_id TEXT NOT NULL,"
    "  PRIMARY KEY (did, cid));"
    "CREATE TABLE IF NOT EXISTS snapshot_blob ("
    "  snapshot_id TEXT NOT NULL, cid TEXT NOT NULL, PRIMARY KEY (snapshot_id, cid));"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1');";

static err_code db_err(backup_index *x, err_t *e, const char *what) {
    return err_set(e, sqlite3_errcode(x->db) == SQLITE_FULL ? ERR_IO : ERR_CONFLICT, "backup index %s: %s: %s", x->path, what,
                   sqlite3_errmsg(x->db));
}

static err_code exec(backup_index *x, const char *sql, err_t *e) {
    char *msg = NULL;
    if (sqlite3_exec(x->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(e, ERR_CONFLICT, "backup index %s: %s", x->path, msg ? msg : "error");
        sqlite3_free(msg);
        return ERR_CONFLICT;
    }
    return ERR_OK;
}

err_code backup_index_open(const char *dir, backup_index **out, err_t *e) {
    *out = NULL;
    backup_index *x = calloc(1, sizeof *x);
    if (!x) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(x->path, sizeof x->path, "%s/index.sqlite", dir);
    int fd = open(x->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(e, ERR_IO, "cannot create %s", x->path);
        free(x);
        return ERR_IO;
    }
    close(fd);
    if (sqlite3_open_v2(x->path, &x->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "cannot open %s", x->path);
        backup_index_close(x);
        return ERR_IO;
    }
    sqlite3_busy_timeout(x->db, 10000);
    err_code rc = exec(x, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", e);
    if (!rc) rc = exec(x, schema_sql, e);
    if (rc) {
        backup_index_close(x);
        return rc;
    }
    *out = x;
    return ERR_OK;
}

err_code backup_index_open_readonly(const char *dir, backup_index **out, err_t *e) {
    *out = NULL;
    backup_index *x = calloc(1, sizeof *x);
    if (!x) return err_set(e, ERR_NOMEM, "out of memory");
    snprintf(x->path, sizeof x->path, "%s/index.sqlite", dir);
    if (access(x->path, R_OK) != 0) {
        err_set(e, ERR_NOT_FOUND, "%s is not a pdsmove backup directory (no readable index.sqlite)", dir);
        free(x);
        return ERR_NOT_FOUND;
    }
    /* a WAL database on a read-only disk opens only as immutable (nobody may write it then) */
    int rc = sqlite3_open_v2(x->path, &x->db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(x->db, "SELECT count(*) FROM snapshot", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(x->db);
        x->db = NULL;
        char *uri = sqlite3_mprintf("file:%s?immutable=1", x->path);
        rc = uri ? sqlite3_open_v2(uri, &x->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) : SQLITE_NOMEM;
        sqlite3_free(uri);
        if (rc == SQLITE_OK) rc = sqlite3_exec(x->db, "SELECT count(*) FROM snapshot", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        err_set(e, ERR_IO, "cannot read the backup index %s: %s", x->path, x->db ? sqlite3_errmsg(x->db) : "out of memory");
        backup_index_close(x);
        return ERR_IO;
    }
    sqlite3_busy_timeout(x->db, 10000);
    x->check = true;
    *out = x;
    return ERR_OK;
}

void backup_index_close(backup_index *x) {
    if (!x) return;
    sqlite3_close(x->db);
    free(x);
}

static const char *col(sqlite3_stmt *st, int i) {
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

#define SNAP_COLS "id, did, created_at, incremental, base_id, rev, commit_cid, data_root, archive, records, blobs_total, blobs_new"

static void fill(sqlite3_stmt *st, backup_snapshot *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", col(st, 0));
    snprintf(s->did, sizeof s->did, "%s", col(st, 1));
    snprintf(s->created_at, sizeof s->created_at, "%s", col(st, 2));
    s->incremental = sqlite3_column_int(st, 3) != 0;
    snprintf(s->base_id, sizeof s->base_id, "%s", col(st, 4));
    snprintf(s->rev, sizeof s->rev, "%s", col(st, 5));
    snprintf(s->commit, sizeof s->commit, "%s", col(st, 6));
    snprintf(s->data_root, sizeof s->data_root, "%s", col(st, 7));
    snprintf(s->archive, sizeof s->archive, "%s", col(st, 8));
    s->records = sqlite3_column_int64(st, 9);
    s->blobs_total = sqlite3_column_int64(st, 10);
    s->blobs_new = sqlite3_column_int64(st, 11);
}

/* A row is used only if every name in it is one pdsmove writes: ids of its DID, a plain
 * archive name, canonical CIDs. */
static err_code check_row(backup_index *x, const backup_snapshot *s, err_t *e) {
    if (!x->check) return ERR_OK;
    char what[BACKUP_PATH_MAX + 32];
    snprintf(what, sizeof what, "backup index %s", x->path);
    return backup_snapshot_check(s, what, e);
}

err_code backup_snapshot_check(const backup_snapshot *s, const char *where, err_t *e) {
    err_t ne = {0};
    bool ok = syntax_did(s->did, &ne) && backup_name_snapshot_id(s->id, s->did, &ne) &&
              (s->incremental ? backup_name_snapshot_id(s->base_id, s->did, &ne) : true) &&
              backup_name_archive(s->archive, &ne) && backup_name_cid(s->commit, false, &ne) &&
              (!s->data_root[0] || backup_name_cid(s->data_root, false, &ne));
    if (ok && !s->incremental && s->base_id[0]) ok = !err_set(&ne, ERR_INVALID, "a full snapshot with a base");
    if (ok && s->incremental && !strcmp(s->base_id, s->id)) ok = !err_set(&ne, ERR_INVALID, "it builds on itself");
    if (ok) return ERR_OK;
    char q[BACKUP_NAME_QUOTE_MAX];
    return err_set(e, ERR_INVALID,
                   "%s: the snapshot row '%s' is not valid (%s): refusing to use this backup; if it is yours, "
                   "`pdsmove verify DIR --rebuild-index` makes the index again from the archives",
                   where, backup_name_quote(s->id, q), ne.msg);
}

err_code backup_index_add_snapshot(backup_index *x, const backup_snapshot *s, err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "INSERT OR REPLACE INTO snapshot(" SNAP_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->created_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, s->incremental ? 1 : 0);
    sqlite3_bind_text(st, 5, s->base_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, s->rev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, s->commit, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, s->data_root, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, s->archive, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, s->records);
    sqlite3_bind_int64(st, 11, s->blobs_total);
    sqlite3_bind_int64(st, 12, s->blobs_new);
    err_code rc = sqlite3_step(st) == SQLITE_DONE ? ERR_OK : db_err(x, e, "adding a snapshot");
    sqlite3_finalize(st);
    return rc;
}

static err_code one(backup_index *x, const char *sql, const char *arg, backup_snapshot *out, const char *what, err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, sql, -1, &st, NULL) != SQLITE_OK) return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    err_code rc = ERR_OK;
    char q[BACKUP_NAME_QUOTE_MAX];
    if (s == SQLITE_ROW) {
        fill(st, out);
        rc = check_row(x, out, e);
    } else if (s == SQLITE_DONE) rc = err_set(e, ERR_NOT_FOUND, "no snapshot %s %s in %s", what, backup_name_quote(arg, q), x->path);
    else rc = db_err(x, e, "reading snapshots");
    sqlite3_finalize(st);
    return rc;
}

err_code backup_index_latest(backup_index *x, const char *did, backup_snapshot *out, err_t *e) {
    return one(x, "SELECT " SNAP_COLS " FROM snapshot WHERE did=?1 ORDER BY created_at DESC, id DESC LIMIT 1", did, out, "of",
               e);
}

err_code backup_index_get(backup_index *x, const char *id, backup_snapshot *out, err_t *e) {
    return one(x, "SELECT " SNAP_COLS " FROM snapshot WHERE id=?1", id, out, "named", e);
}

err_code backup_index_each(backup_index *x, const char *did, bool (*fn)(void *ctx, const backup_snapshot *s), void *ctx,
                           err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "SELECT " SNAP_COLS " FROM snapshot WHERE ?1 IS NULL OR did=?1 ORDER BY created_at, id", -1,
                           &st, NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    if (did) sqlite3_bind_text(st, 1, did, -1, SQLITE_STATIC);
    int s;
    backup_snapshot snap;
    err_code rc = ERR_OK;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        fill(st, &snap);
        if ((rc = check_row(x, &snap, e)) || !fn(ctx, &snap)) break;
    }
    if (!rc) rc = (s == SQLITE_DONE || s == SQLITE_ROW) ? ERR_OK : db_err(x, e, "listing snapshots");
    sqlite3_finalize(st);
    return rc;
}

err_code backup_index_remove_snapshot(backup_index *x, const char *id, err_t *e) {
    const char *sqls[] = {"DELETE FROM snapshot_blob WHERE snapshot_id=?1", "DELETE FROM blob WHERE snapshot_id=?1",
                          "DELETE FROM snapshot WHERE id=?1"};
    for (size_t i = 0; i < 3; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(x->db, sqls[i], -1, &st, NULL) != SQLITE_OK) return db_err(x, e, "preparing");
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        sqlite3_finalize(st);
        if (s != SQLITE_DONE) return db_err(x, e, "removing a snapshot");
    }
    return ERR_OK;
}

err_code backup_index_blob_where(backup_index *x, const char *did, const char *cid, char *snapshot_id, size_t size,
                                 err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "SELECT snapshot_id FROM blob WHERE did=?1 AND cid=?2", -1, &st, NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    err_code rc = ERR_OK;
    err_t ne = {0};
    char q[BACKUP_NAME_QUOTE_MAX];
    if (s == SQLITE_ROW && (!x->check || backup_name_snapshot_id(col(st, 0), did, &ne))) snprintf(snapshot_id, size, "%s", col(st, 0));
    else if (s == SQLITE_ROW)
        rc = err_set(e, ERR_INVALID, "backup index %s: blob %s is stored in '%s', which is not a snapshot of %s (%s)", x->path,
                     backup_name_quote(cid, q), col(st, 0), did, ne.msg);
    else if (s == SQLITE_DONE) rc = ERR_NOT_FOUND;
    else rc = db_err(x, e, "reading blobs");
    sqlite3_finalize(st);
    return rc;
}

int64_t backup_index_blob_size(backup_index *x, const char *did, const char *cid, const char *snapshot_id) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "SELECT size FROM blob WHERE did=?1 AND cid=?2 AND snapshot_id=?3", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, snapshot_id, -1, SQLITE_STATIC);
    int64_t size = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return size;
}

err_code backup_index_add_blob(backup_index *x, const char *did, const char *cid, int64_t size, const char *snapshot_id,
                               err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "INSERT OR IGNORE INTO blob(did, cid, size, snapshot_id) VALUES (?1, ?2, ?3, ?4)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, did, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_text(st, 4, snapshot_id, -1, SQLITE_STATIC);
    err_code rc = sqlite3_step(st) == SQLITE_DONE ? ERR_OK : db_err(x, e, "adding a blob");
    sqlite3_finalize(st);
    return rc;
}

err_code backup_index_add_snapshot_blob(backup_index *x, const char *snapshot_id, const char *cid, err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db, "INSERT OR IGNORE INTO snapshot_blob(snapshot_id, cid) VALUES (?1, ?2)", -1, &st, NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, snapshot_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    err_code rc = sqlite3_step(st) == SQLITE_DONE ? ERR_OK : db_err(x, e, "adding a blob to a snapshot");
    sqlite3_finalize(st);
    return rc;
}

err_code backup_index_snapshot_blobs(backup_index *x, const char *snapshot_id,
                                     bool (*fn)(void *ctx, const char *cid, const char *stored_in), void *ctx, err_t *e) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(x->db,
                           "SELECT sb.cid, COALESCE(b.snapshot_id, '') FROM snapshot_blob sb JOIN snapshot s ON s.id = sb.snapshot_id "
                           "LEFT JOIN blob b ON b.did = s.did AND b.cid = sb.cid WHERE sb.snapshot_id=?1 ORDER BY sb.cid",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(x, e, "preparing");
    sqlite3_bind_text(st, 1, snapshot_id, -1, SQLITE_STATIC);
    int s;
    err_code rc = ERR_OK;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        err_t ne = {0};
        if (x->check &&
            (!backup_name_cid(col(st, 0), true, &ne) || (col(st, 1)[0] && !backup_name_snapshot_id(col(st, 1), NULL, &ne)))) {
            rc = err_set(e, ERR_INVALID, "backup index %s: a blob of snapshot %s is not valid (%s)", x->path, snapshot_id, ne.msg);
            break;
        }
        if (!fn(ctx, col(st, 0), col(st, 1))) break;
    }
    if (!rc) rc = (s == SQLITE_DONE || s == SQLITE_ROW) ? ERR_OK : db_err(x, e, "listing blobs");
    sqlite3_finalize(st);
    return rc;
}

err_code backup_index_tx_begin(backup_index *x, err_t *e) { return exec(x, "BEGIN IMMEDIATE", e); }
err_code backup_index_tx_commit(backup_index *x, err_t *e) { return exec(x, "COMMIT", e); }
void backup_index_tx_rollback(backup_index *x) { exec(x, "ROLLBACK", NULL); }
