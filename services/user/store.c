/* store.c: the user database, $DATA_DIR/user.db in SQLite. Owns the schema
 * (versioned with PRAGMA user_version; libstore's store/db.h opens, configures
 * and migrates the file) and one prepared statement per query, cached for the
 * process lifetime. Every SQLite error is logged (here or in libstore).
 * Writes run on the connection as they are: inside the turn's transaction
 * when the caller opened one (svc_write_begin), else each autocommits.
 */
#include "user.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "store/db.h"

/* The schema version this code writes and understands: one step per version
 * in migrations[] (libstore runs the missing ones at open). */
#define USER_SCHEMA_VERSION 1

enum {
  STMT_INSERT,
  STMT_GET,
  STMT_LIST,
  STMT_COUNT,
  STMT_LOGIN,
  STMT_EXISTS,
  STMT_PING,
  STMT_COUNT_ALL_,
};

static const char *const stmt_sql[STMT_COUNT_ALL_] = {
    [STMT_INSERT] = "INSERT INTO users (id, email, name, created_at, updated_at, last_login_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?4, NULL)",
    [STMT_GET] = "SELECT id, email, name, created_at, updated_at, last_login_at"
                 " FROM users WHERE id = ?1",
    /* OFFSET pagination walks the skipped rows of users_created: fine at our
     * sizes; switch to keyset pagination (created_at, id) > (?, ?) if deep
     * pages ever matter. */
    [STMT_LIST] = "SELECT id, email, name, created_at, updated_at, last_login_at"
                  " FROM users ORDER BY created_at, id LIMIT ?1 OFFSET ?2",
    /* COUNT(*) scans an index: O(rows) but cheap for now; keep a counter row
     * if the table grows to millions. */
    [STMT_COUNT] = "SELECT COUNT(*) FROM users",
    /* Only move forward: ISO timestamps in one format sort as text. */
    [STMT_LOGIN] = "UPDATE users SET last_login_at = ?2, updated_at = ?3"
                   " WHERE id = ?1 AND (last_login_at IS NULL OR last_login_at < ?2)",
    [STMT_EXISTS] = "SELECT 1 FROM users WHERE id = ?1",
    [STMT_PING] = "SELECT 1 FROM users LIMIT 1",
};

struct user_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT_ALL_];
  char *path;                      /* for log lines */
};

/* --- helpers ------------------------------------------------------------------ */

static int db_fail(user_store_t *s, const char *op, int rc) {
  store_db_fail(s->db, op, rc);
  return STORE_ERROR;
}

static int bind_text(user_store_t *s, sqlite3_stmt *st, int idx, const char *v, size_t len) {
  if (len > INT_MAX)
    return db_fail(s, "bind", SQLITE_TOOBIG);
  int rc = sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC);
  return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
}

static json_t *column_json(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return json_null();
  const char *t = (const char *)sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  return t ? json_stringn(t, (size_t)n) : NULL;
}

/* The user object from a row of (id, email, name, created_at, updated_at,
 * last_login_at). NULL on ENOMEM or text that is not UTF-8. */
static json_t *row_to_user(sqlite3_stmt *st) {
  static const char *const keys[] = {"id", "email", "name", "createdAt", "updatedAt",
                                     "lastLoginAt"};
  json_t *u = json_object();
  if (!u)
    return NULL;
  for (int i = 0; i < 6; i++) {
    if (json_object_set_new(u, keys[i], column_json(st, i)) != 0) {
      json_decref(u);
      return NULL;
    }
  }
  return u;
}

/* --- schema ------------------------------------------------------------------ */

/* migrations[i] brings the schema from version i to i+1, in one transaction. */
static const store_db_migration_t migrations[USER_SCHEMA_VERSION] = {
    /* v1. email keeps the case the user typed; uniqueness ignores ASCII case
     * (NOCASE folds A-Z only, which covers domains and ordinary addresses). */
    {"CREATE TABLE users ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " email TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " last_login_at TEXT);"
     "CREATE UNIQUE INDEX users_email_nocase ON users (email COLLATE NOCASE);"
     "CREATE INDEX users_created ON users (created_at, id);"},
};

/* --- open / close ------------------------------------------------------------ */

int user_store_open(const char *data_dir, int sync, user_store_t **out) {
  user_store_t *s = NULL;
  int ret = STORE_ERROR;
  *out = NULL;
  if (sync != STORE_SYNC_NORMAL && sync != STORE_SYNC_FULL && sync != STORE_SYNC_EXTRA)
    return STORE_EINVAL;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  /* WAL, synchronous = sync (FULL: an autocommit INSERT that returned
   * SQLITE_DONE survives power loss), busy timeout, schema checked/migrated. */
  if (store_db_open(data_dir, USER_DB_FILE, (int)sync, 0, migrations, USER_SCHEMA_VERSION,
                    &s->db, &s->path) != 0 ||
      store_db_prepare(s->db, stmt_sql, STMT_COUNT_ALL_, s->stmt) != 0 ||
      store_db_log_opened(s->db, s->path, USER_SCHEMA_VERSION) != 0)
    goto out;
  *out = s;
  s = NULL;
  ret = 0;
out:
  user_store_close(s);
  return ret;
}

void user_store_close(user_store_t *s) {
  if (!s)
    return;
  store_db_finalize(s->stmt, STMT_COUNT_ALL_);
  store_db_close(s->db, s->path);
  free(s);
}

sqlite3 *user_store_db(user_store_t *s) {
  return s->db;
}

int user_store_settings(user_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_db_settings(s->db, journal_mode, size, sync) == 0 ? 0 : STORE_ERROR;
}

/* --- queries ------------------------------------------------------------------ */

int user_store_create(user_store_t *s, const char *email, size_t email_len,
                      const char *name, size_t name_len, json_t **user) {
  sqlite3_stmt *st = s->stmt[STMT_INSERT];
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  int ret = STORE_ERROR;
  *user = NULL;
  if (proto_random_id(USER_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a user id");
    return STORE_ERROR;
  }
  proto_time_iso(now);
  if (bind_text(s, st, 1, id, strlen(id)) != 0 || bind_text(s, st, 2, email, email_len) != 0 ||
      bind_text(s, st, 3, name, name_len) != 0 || bind_text(s, st, 4, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    /* Only the email index is UNIQUE; an id clash would be _PRIMARYKEY. */
    ret = USER_STORE_EMAIL_TAKEN;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "insert user", rc);
    goto out;
  }
  /* Autocommit: SQLITE_DONE means committed; in a transaction the caller waits
   * for the turn's COMMIT. Build the reply from what we stored rather than
   * reading it back. */
  *user = json_pack("{s:s, s:s%, s:s%, s:s, s:s, s:n}", "id", id, "email", email,
                    email_len, "name", name, name_len, "createdAt", now, "updatedAt", now,
                    "lastLoginAt");
  if (!*user) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building user %s", id);
    goto out;
  }
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

int user_store_get(user_store_t *s, const char *id, size_t id_len, json_t **user) {
  sqlite3_stmt *st = s->stmt[STMT_GET];
  int ret = STORE_ERROR;
  *user = NULL;
  if (bind_text(s, st, 1, id, id_len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = USER_STORE_NOT_FOUND;
    goto out;
  }
  if (rc != SQLITE_ROW) {
    db_fail(s, "get user", rc);
    goto out;
  }
  if (!(*user = row_to_user(st))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build user from row");
    goto out;
  }
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

static int count_users(user_store_t *s, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_COUNT];
  int ret = STORE_ERROR;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    db_fail(s, "count users", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  *total = sqlite3_column_int64(st, 0);
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

int user_store_list(user_store_t *s, int64_t page, int64_t limit, json_t **users,
                    int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_LIST];
  json_t *arr = NULL;
  int rc, ret = STORE_ERROR;
  *users = NULL;
  if (page < 1 || limit < 1 || page > USER_PAGE_MAX || limit > USER_LIMIT_MAX)
    return STORE_EINVAL;
  /* COUNT and SELECT are two autocommit reads; a concurrent insert between
   * them can make total off by one for this reply, which is acceptable. */
  if (count_users(s, total) != 0)
    return STORE_ERROR;
  if (!(arr = json_array()))
    goto out;
  if ((rc = sqlite3_bind_int64(st, 1, limit)) != SQLITE_OK ||
      (rc = sqlite3_bind_int64(st, 2, (page - 1) * limit)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *u = row_to_user(st);
    if (!u || json_array_append_new(arr, u) != 0) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build user list");
      goto out;
    }
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "list users", rc);
    goto out;
  }
  *users = arr;
  arr = NULL;
  ret = 0;
out:
  json_decref(arr);
  store_stmt_done(st);
  return ret;
}

static int user_exists(user_store_t *s, const char *id, size_t id_len) {
  sqlite3_stmt *st = s->stmt[STMT_EXISTS];
  int ret = STORE_ERROR;
  if (bind_text(s, st, 1, id, id_len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    ret = 0;
  else if (rc == SQLITE_DONE)
    ret = USER_STORE_NOT_FOUND;
  else
    db_fail(s, "find user", rc);
out:
  store_stmt_done(st);
  return ret;
}

int user_store_record_login(user_store_t *s, const char *id, size_t id_len,
                            const char *at) {
  sqlite3_stmt *st = s->stmt[STMT_LOGIN];
  char now[PROTO_ISO_TIME_LEN];
  int ret = STORE_ERROR;
  proto_time_iso(now);
  if (bind_text(s, st, 1, id, id_len) != 0 || bind_text(s, st, 2, at, strlen(at)) != 0 ||
      bind_text(s, st, 3, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    db_fail(s, "record login", rc);
    goto out;
  }
  ret = 0;
  /* No row changed: either no such user, or it already has a later login. */
  if (sqlite3_changes(s->db) == 0) {
    store_stmt_done(st);
    return user_exists(s, id, id_len);
  }
out:
  store_stmt_done(st);
  return ret;
}

int user_store_ping(user_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  store_stmt_done(st);
  return ret;
}
