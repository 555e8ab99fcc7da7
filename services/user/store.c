/* store.c: the user database, $DATA_DIR/user.db in SQLite. Owns the schema
 * (versioned with PRAGMA user_version; libstore's store/db.h opens, configures
 * and migrates the file) and one prepared statement per query, cached for the
 * process lifetime. Every SQLite error is logged (here or in libstore).
 * Writes run on the connection as they are: inside the turn's transaction
 * when the caller opened one (svc_write_begin), else each autocommits.
 */
#include "user.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "store/conn.h"
#include "store/stmt.h"

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
  store_conn_t c;                  /* first: libstore opens and closes it (store/conn.h) */
};

/* The user object from a row of (id, email, name, created_at, updated_at,
 * last_login_at). NULL on ENOMEM or text that is not UTF-8. */
static json_t *row_to_user(sqlite3_stmt *st, void *arg) {
  (void)arg;
  static const char *const keys[] = {"id", "email", "name", "createdAt", "updatedAt",
                                     "lastLoginAt"};
  json_t *u = json_object();
  if (!u)
    return NULL;
  for (int i = 0; i < 6; i++) {
    if (json_object_set_new(u, keys[i], store_column_json(st, i)) != 0) {
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

const store_schema_t user_store_schema = {
    .file = USER_DB_FILE,
    .steps = migrations,
    .version = USER_SCHEMA_VERSION,
    .sql = stmt_sql,
    .n_stmt = STMT_COUNT_ALL_,
    .size = sizeof(user_store_t),
};

int user_store_open(const char *data_dir, int sync, user_store_t **out) {
  store_conn_t *c = NULL;
  int rc = store_open(data_dir, sync, &user_store_schema, &c);
  *out = (user_store_t *)c; /* c is the struct's first member */
  return rc;
}

void user_store_close(user_store_t *s) {
  store_close(s ? &s->c : NULL);
}

sqlite3 *user_store_db(user_store_t *s) {
  return s->c.db;
}

int user_store_settings(user_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_conn_settings(&s->c, journal_mode, size, sync);
}

/* --- queries ------------------------------------------------------------------ */

int user_store_create(user_store_t *s, const char *email, size_t email_len,
                      const char *name, size_t name_len, json_t **user) {
  sqlite3_stmt *st = s->c.stmt[STMT_INSERT];
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  int ret = STORE_ERROR;
  *user = NULL;
  if (proto_random_id(USER_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a user id");
    return STORE_ERROR;
  }
  proto_time_iso(now);
  if (store_bind_text(st, 1, id, strlen(id)) != 0 ||
      store_bind_text(st, 2, email, email_len) != 0 ||
      store_bind_text(st, 3, name, name_len) != 0 || store_bind_text(st, 4, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    /* Only the email index is UNIQUE; an id clash would be _PRIMARYKEY. */
    ret = USER_STORE_EMAIL_TAKEN;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "insert user", rc);
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
  return store_stmt_get(s->c.stmt[STMT_GET], id, id_len, USER_STORE_NOT_FOUND, row_to_user, NULL,
                        "get user", "cannot build user from row", user);
}

static int count_users(user_store_t *s, int64_t *total) {
  return store_stmt_count(s->c.stmt[STMT_COUNT], "count users", total);
}

int user_store_list(user_store_t *s, int64_t page, int64_t limit, json_t **users,
                    int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_LIST];
  int ret = STORE_ERROR;
  *users = NULL;
  if (page < 1 || limit < 1 || page > USER_PAGE_MAX || limit > USER_LIMIT_MAX)
    return STORE_EINVAL;
  /* COUNT and SELECT are two autocommit reads; a concurrent insert between
   * them can make total off by one for this reply, which is acceptable. */
  if (count_users(s, total) != 0)
    return STORE_ERROR;
  if (store_bind_i64(st, 1, limit) == 0 && store_bind_i64(st, 2, (page - 1) * limit) == 0)
    ret = store_stmt_rows(st, row_to_user, NULL, "list users", "cannot build user list", users);
  store_stmt_done(st);
  return ret;
}

static int user_exists(user_store_t *s, const char *id, size_t id_len) {
  return store_stmt_exists(s->c.stmt[STMT_EXISTS], id, id_len, USER_STORE_NOT_FOUND,
                           "find user");
}

int user_store_record_login(user_store_t *s, const char *id, size_t id_len,
                            const char *at) {
  sqlite3_stmt *st = s->c.stmt[STMT_LOGIN];
  char now[PROTO_ISO_TIME_LEN];
  int ret = STORE_ERROR;
  proto_time_iso(now);
  if (store_bind_text(st, 1, id, id_len) != 0 || store_bind_text(st, 2, at, strlen(at)) != 0 ||
      store_bind_text(st, 3, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "record login", rc);
    goto out;
  }
  ret = 0;
  /* No row changed: either no such user, or it already has a later login. */
  if (sqlite3_changes(s->c.db) == 0) {
    store_stmt_done(st);
    return user_exists(s, id, id_len);
  }
out:
  store_stmt_done(st);
  return ret;
}

int user_store_ping(user_store_t *s) {
  return store_stmt_ping(s->c.stmt[STMT_PING]);
}
