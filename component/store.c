/*
 * store.c: runtime state in SQLite (see store.h).
 *
 * on open:   sqlite3_open_v2 read-write + create, a busy timeout (another
 *            fedgate on the same file waits a little instead of failing),
 *            CREATE TABLE IF NOT EXISTS for both tables; a statement that
 *            fails names the file
 * on change: BEGIN IMMEDIATE; the row; the audit row; COMMIT, or ROLLBACK
 *            on any error so that a block is never stored unaudited
 * Statements are prepared per call: an admin action is rare, and no
 * prepared statement outlives the call that made it.
 */
#include "config.h"

#include "store.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_BUSY_MS 2000

struct store {
    sqlite3 *db;
    char *path;
};

static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS blocks("
    "domain TEXT PRIMARY KEY, by TEXT, at INTEGER);"
    "CREATE TABLE IF NOT EXISTS audit(at INTEGER, who TEXT, what TEXT);"
    "CREATE TABLE IF NOT EXISTS peers("
    "domain TEXT PRIMARY KEY, action TEXT NOT NULL, spec TEXT, at INTEGER);";

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
    int rc = ERR_SYS;
    struct store *st = NULL;
    char *msg = NULL;
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "state_db: no path");
        return ERR_INVAL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL || (st->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "state_db %s: out of memory", path);
        rc = ERR_NOMEM;
        goto out;
    }
    int src = sqlite3_open_v2(path, &st->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                  SQLITE_OPEN_FULLMUTEX,
                              NULL);
    if (src != SQLITE_OK) {
        snprintf(err, errlen,
                 "state_db %s: cannot open: %s (does the directory exist "
                 "and is it writable?)",
                 path,
                 st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(src));
        goto out;
    }
    if (sqlite3_busy_timeout(st->db, STORE_BUSY_MS) != SQLITE_OK ||
        sqlite3_exec(st->db, store_schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen,
                 "state_db %s: cannot create the tables: %s (is the file "
                 "and its directory writable?)",
                 path, msg != NULL ? msg : sqlite3_errmsg(st->db));
        goto out;
    }
    /* runtime peers carry their XEP-0114 secrets: owner only */
    if (chmod(path, 0600) != 0) {
        log_warn("state_db %s: cannot make it private (chmod 600): %s", path,
                 strerror(errno));
    }
    *out = st;
    st = NULL; /* transferred */
    rc = 0;
out:
    sqlite3_free(msg);
    store_free(st);
    return rc;
}

void store_free(struct store *st)
{
    if (st == NULL) {
        return;
    }
    if (st->db != NULL && sqlite3_close(st->db) != SQLITE_OK) {
        log_error("state_db %s: close failed: %s", st->path,
                  sqlite3_errmsg(st->db));
    }
    free(st->path);
    free(st);
}

/* Runs sql without results; 0 or ERR_SYS, logged with while. */
static int store_exec(struct store *st, const char *sql, const char *while_)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("state_db %s: %s failed: %s", st->path, while_,
                  msg != NULL ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return ERR_SYS;
    }
    return 0;
}

/*
 * Prepares sql, binds the integer and text parameters in order ?1 = i,
 * then ?2.. = t[0..nt) (a NULL text binds nothing: SQL NULL), steps
 * once. 0, or ERR_SYS (logged with while_). *changes gets
 * sqlite3_changes when not NULL.
 */
static int store_run_texts(struct store *st,
                           const char *sql,
                           long long i,
                           const char *const *t,
                           int nt,
                           const char *while_,
                           int *changes)
{
    sqlite3_stmt *stmt = NULL;
    int rc = ERR_SYS;
    bool bound =
        sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_bind_int64(stmt, 1, i) == SQLITE_OK;
    for (int k = 0; bound && k < nt; k++) {
        bound = t[k] == NULL ||
                sqlite3_bind_text(stmt, 2 + k, t[k], -1, SQLITE_TRANSIENT) ==
                    SQLITE_OK;
    }
    if (!bound || sqlite3_step(stmt) != SQLITE_DONE) {
        log_error("state_db %s: %s failed: %s", st->path, while_,
                  sqlite3_errmsg(st->db));
        goto out;
    }
    if (changes != NULL) {
        *changes = sqlite3_changes(st->db);
    }
    rc = 0;
out:
    sqlite3_finalize(stmt);
    return rc;
}

/* store_run_texts with up to two texts. */
static int store_run(struct store *st,
                     const char *sql,
                     long long i,
                     const char *t1,
                     const char *t2,
                     const char *while_,
                     int *changes)
{
    const char *t[2] = {t1, t2};
    return store_run_texts(st, sql, i, t, 2, while_, changes);
}

int store_audit(struct store *st,
                const char *who,
                const char *what,
                long long at)
{
    return store_run(st, "INSERT INTO audit(at, who, what) VALUES(?1, ?2, ?3)",
                     at, who, what, "writing the audit log", NULL);
}

/* Ends a transaction: COMMIT when rc is 0, else ROLLBACK. */
static int store_end(struct store *st, int rc)
{
    if (rc == 0) {
        rc = store_exec(st, "COMMIT", "committing");
        if (rc == 0) {
            return 0;
        }
    }
    (void)store_exec(st, "ROLLBACK", "rolling back");
    return rc;
}

int store_block(struct store *st,
                const char *domain,
                const char *who,
                long long at)
{
    char what[400];
    snprintf(what, sizeof(what), "block %s", domain);
    int rc = store_exec(st, "BEGIN IMMEDIATE", "starting a transaction");
    if (rc != 0) {
        return rc;
    }
    rc = store_run(st,
                   "INSERT OR REPLACE INTO blocks(at, domain, by) "
                   "VALUES(?1, ?2, ?3)",
                   at, domain, who, "storing a block", NULL);
    if (rc == 0) {
        rc = store_audit(st, who, what, at);
    }
    return store_end(st, rc);
}

int store_unblock(struct store *st,
                  const char *domain,
                  const char *who,
                  long long at)
{
    char what[400];
    int changes = 0;
    snprintf(what, sizeof(what), "unblock %s", domain);
    int rc = store_exec(st, "BEGIN IMMEDIATE", "starting a transaction");
    if (rc != 0) {
        return rc;
    }
    /* ?1 is bound but unused: parameter numbers go up to the highest
     * one named, so binding it is allowed */
    rc = store_run(st, "DELETE FROM blocks WHERE domain = ?2", at, domain, NULL,
                   "removing a block", &changes);
    if (rc == 0 && changes == 0) {
        rc = ERR_NOT_FOUND;
    }
    if (rc == 0) {
        rc = store_audit(st, who, what, at);
    }
    return store_end(st, rc);
}

/* One row of a walk: 0 to go on, else the walk stops with that. */
typedef int store_row_fn(void *ud, sqlite3_stmt *row);

/* A column's text, "" for NULL. */
static const char *store_text(sqlite3_stmt *row, int col)
{
    const char *t = (const char *)sqlite3_column_text(row, col);
    return t != NULL ? t : "";
}

/* Walks the rows of sql, binding limit as ?1 when it is not negative.
 * 0, what fn returned, or ERR_SYS (logged). */
static int store_walk(struct store *st,
                      const char *sql,
                      long long limit,
                      store_row_fn *fn,
                      void *ud)
{
    sqlite3_stmt *stmt = NULL;
    int rc = ERR_SYS;
    int step;
    /* limit >= 0 binds ?1, which only such statements name */
    if (sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK ||
        (limit >= 0 && sqlite3_bind_int64(stmt, 1, limit) != SQLITE_OK)) {
        log_error("state_db %s: reading failed: %s", st->path,
                  sqlite3_errmsg(st->db));
        goto out;
    }
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        int frc = fn(ud, stmt);
        if (frc != 0) {
            rc = frc;
            goto out;
        }
    }
    if (step != SQLITE_DONE) {
        log_error("state_db %s: reading failed: %s", st->path,
                  sqlite3_errmsg(st->db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(stmt);
    return rc;
}

/* The caller's callback and its ud, for the row adapters below. */
struct store_cb {
    union {
        store_block_fn *block;
        store_audit_fn *audit;
        store_peer_fn *peer;
    } fn;
    void *ud;
};

/* at, domain, by */
static int store_block_row(void *ud, sqlite3_stmt *row)
{
    const struct store_cb *cb = ud;
    return cb->fn.block(cb->ud, store_text(row, 1), store_text(row, 2),
                        sqlite3_column_int64(row, 0));
}

/* at, who, what */
static int store_audit_row(void *ud, sqlite3_stmt *row)
{
    const struct store_cb *cb = ud;
    return cb->fn.audit(cb->ud, sqlite3_column_int64(row, 0),
                        store_text(row, 1), store_text(row, 2));
}

/* domain, action, spec, at */
static int store_peer_row(void *ud, sqlite3_stmt *row)
{
    const struct store_cb *cb = ud;
    bool put = strcmp(store_text(row, 1), "put") == 0;
    return cb->fn.peer(cb->ud, store_text(row, 0),
                       put ? store_text(row, 2) : NULL,
                       sqlite3_column_int64(row, 3));
}

int store_blocks(struct store *st, store_block_fn *fn, void *ud)
{
    struct store_cb cb = {.fn.block = fn, .ud = ud};
    return store_walk(st, "SELECT at, domain, by FROM blocks ORDER BY domain",
                      -1, store_block_row, &cb);
}

int store_audit_rows(struct store *st, store_audit_fn *fn, void *ud)
{
    struct store_cb cb = {.fn.audit = fn, .ud = ud};
    return store_walk(st, "SELECT at, who, what FROM audit ORDER BY rowid", -1,
                      store_audit_row, &cb);
}

int store_audit_last(struct store *st, size_t n, store_audit_fn *fn, void *ud)
{
    if (n == 0) {
        return 0;
    }
    long long limit =
        n > STORE_AUDIT_LAST_MAX ? STORE_AUDIT_LAST_MAX : (long long)n;
    struct store_cb cb = {.fn.audit = fn, .ud = ud};
    return store_walk(st,
                      "SELECT at, who, what FROM audit "
                      "ORDER BY rowid DESC LIMIT ?1",
                      limit, store_audit_row, &cb);
}

int store_peer_set(struct store *st,
                   const char *domain,
                   const char *spec,
                   const char *who,
                   const char *what,
                   long long at)
{
    const char *t[3] = {domain, spec != NULL ? "put" : "remove", spec};
    int rc = store_exec(st, "BEGIN IMMEDIATE", "starting a transaction");
    if (rc != 0) {
        return rc;
    }
    rc = store_run_texts(st,
                         "INSERT OR REPLACE INTO peers(at, domain, action, "
                         "spec) VALUES(?1, ?2, ?3, ?4)",
                         at, t, 3, "storing a peer change", NULL);
    if (rc == 0) {
        rc = store_audit(st, who, what, at);
    }
    return store_end(st, rc);
}

int store_peer_forget(struct store *st,
                      const char *domain,
                      const char *who,
                      const char *what,
                      long long at)
{
    int rc = store_exec(st, "BEGIN IMMEDIATE", "starting a transaction");
    if (rc != 0) {
        return rc;
    }
    rc = store_run(st, "DELETE FROM peers WHERE domain = ?2", at, domain, NULL,
                   "removing a stored peer", NULL);
    if (rc == 0) {
        rc = store_audit(st, who, what, at);
    }
    return store_end(st, rc);
}

int store_peers(struct store *st, store_peer_fn *fn, void *ud)
{
    struct store_cb cb = {.fn.peer = fn, .ud = ud};
    return store_walk(st,
                      "SELECT domain, action, spec, at FROM peers "
                      "ORDER BY domain",
                      -1, store_peer_row, &cb);
}
