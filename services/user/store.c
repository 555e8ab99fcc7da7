/* store.c: the user database, $DATA_DIR/user.db in SQLite. Owns the schema
 * (versioned with PRAGMA user_version), the connection settings that make a
 * success reply mean "committed and on disk", and one prepared statement per
 * query, cached for the process lifetime. Every SQLite error is logged here.
 */
#include "user.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "proto/log.h"

/* The schema version this code writes and understands. Migrations go in
 * migrate(), one step per version. */
#define USER_SCHEMA_VERSION 1
/* How long a statement waits for another connection's lock (a backup tool,
 * a second process by mistake) before failing. We run on the event loop
 * thread, so keep it short: with WAL, readers never wait at all. */
#define USER_STORE_BUSY_TIMEOUT_MS 1000
#define USER_DATA_DIR_MODE 0750

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
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s (%d): %s", op,
            sqlite3_errstr(rc), rc, s->db ? sqlite3_errmsg(s->db) : "no connection");
  return USER_STORE_ERROR;
}

/* Run SQL that returns no rows we need (pragmas, DDL). */
static int exec_sql(user_store_t *s, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", sql,
              msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return USER_STORE_ERROR;
  }
  return 0;
}

/* One-row, one-column query (a pragma) into an int or a text buffer. */
static int query_one(user_store_t *s, const char *sql, int *ival, char *tval, size_t tsize) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  int ret = USER_STORE_ERROR;
  if (rc != SQLITE_OK) {
    db_fail(s, sql, rc);
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    db_fail(s, sql, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  if (ival)
    *ival = sqlite3_column_int(st, 0);
  if (tval) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(tval, tsize, "%s", t ? (const char *)t : "");
  }
  ret = 0;
out:
  sqlite3_finalize(st);
  return ret;
}

/* Every use of a cached statement ends here, also on error, so the next use
 * starts clean and no read transaction stays open. */
static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st); /* its return repeats the step error already handled */
  sqlite3_clear_bindings(st);
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

/* mkdir -p, so DATA_DIR=/var/lib/nestc/user works on a fresh machine. */
static int make_dirs(const char *dir) {
  char *p = strdup(dir);
  int ret = -1;
  if (!p)
    return -1;
  for (char *c = p + 1; ; c++) {
    if (*c != '/' && *c != '\0')
      continue;
    char saved = *c;
    *c = '\0';
    if (mkdir(p, USER_DATA_DIR_MODE) != 0 && errno != EEXIST) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "mkdir %s: %s", p, strerror(errno));
      goto out;
    }
    *c = saved;
    if (saved == '\0')
      break;
  }
  struct stat stt;
  if (stat(dir, &stt) != 0 || !S_ISDIR(stt.st_mode)) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s is not a directory", dir);
    goto out;
  }
  ret = 0;
out:
  free(p);
  return ret;
}

/* --- schema ------------------------------------------------------------------ */

static int migrate(user_store_t *s) {
  int version = 0;
  if (query_one(s, "PRAGMA user_version", &version, NULL, 0) != 0)
    return USER_STORE_ERROR;
  if (version > USER_SCHEMA_VERSION) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s has schema version %d; this build knows up to %d: refusing to open",
              s->path, version, USER_SCHEMA_VERSION);
    return USER_STORE_ERROR;
  }
  if (version == USER_SCHEMA_VERSION)
    return 0;
  /* One transaction per step: a crash leaves the previous version intact. */
  if (version < 1) {
    /* email keeps the case the user typed; uniqueness ignores ASCII case
     * (NOCASE folds A-Z only, which covers domains and ordinary addresses). */
    static const char v1[] =
        "BEGIN IMMEDIATE;"
        "CREATE TABLE users ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " email TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL,"
        " last_login_at TEXT);"
        "CREATE UNIQUE INDEX users_email_nocase ON users (email COLLATE NOCASE);"
        "CREATE INDEX users_created ON users (created_at, id);"
        "PRAGMA user_version = 1;"
        "COMMIT;";
    if (exec_sql(s, v1) != 0) {
      exec_sql(s, "ROLLBACK");
      return USER_STORE_ERROR;
    }
  }
  proto_log(PROTO_LOG_INFO, NULL, "schema_migrated", "%s: schema version %d -> %d", s->path,
            version, USER_SCHEMA_VERSION);
  return 0;
}

/* --- open / close ------------------------------------------------------------ */

int user_sync_parse(const char *v) {
  if (!v)
    return -1;
  if (strcasecmp(v, "NORMAL") == 0)
    return USER_SYNC_NORMAL;
  if (strcasecmp(v, "FULL") == 0)
    return USER_SYNC_FULL;
  if (strcasecmp(v, "EXTRA") == 0)
    return USER_SYNC_EXTRA;
  return -1;
}

static int configure(user_store_t *s, user_sync_t sync) {
  static const char *const sync_sql[] = {
      [USER_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
      [USER_SYNC_FULL] = "PRAGMA synchronous = FULL",
      [USER_SYNC_EXTRA] = "PRAGMA synchronous = EXTRA",
  };
  char mode[16];
  int rc;
  if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
      (rc = sqlite3_busy_timeout(s->db, USER_STORE_BUSY_TIMEOUT_MS)) != SQLITE_OK)
    return db_fail(s, "configure", rc);
  /* journal_mode answers with the mode in effect: check it took. */
  if (query_one(s, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode)) != 0)
    return USER_STORE_ERROR;
  if (strcasecmp(mode, "wal") != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: journal_mode is %s, not wal",
              s->path, mode);
    return USER_STORE_ERROR;
  }
  /* In WAL mode, FULL fsyncs the WAL at every commit, so an autocommit
   * INSERT that returned SQLITE_DONE survives power loss; NORMAL only syncs
   * at checkpoints (a committed row can be lost, the file stays consistent). */
  if (exec_sql(s, sync_sql[sync]) != 0)
    return USER_STORE_ERROR;
  return 0;
}

int user_store_open(const char *data_dir, user_sync_t sync, user_store_t **out) {
  user_store_t *s = NULL;
  int rc, ret = USER_STORE_ERROR;
  *out = NULL;
  if (sync != USER_SYNC_NORMAL && sync != USER_SYNC_FULL && sync != USER_SYNC_EXTRA)
    return USER_STORE_EINVAL;
  if (make_dirs(data_dir) != 0)
    return USER_STORE_ERROR;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  size_t plen = strlen(data_dir) + sizeof("/" USER_DB_FILE);
  if (!(s->path = malloc(plen)))
    goto out;
  snprintf(s->path, plen, "%s/%s", data_dir, USER_DB_FILE);
  /* NOMUTEX: one connection, used only from the loop thread. */
  rc = sqlite3_open_v2(s->path, &s->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    db_fail(s, s->path, rc);
    goto out;
  }
  if (configure(s, sync) != 0 || migrate(s) != 0)
    goto out;
  for (int i = 0; i < STMT_COUNT_ALL_; i++) {
    rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                            NULL);
    if (rc != SQLITE_OK) {
      db_fail(s, stmt_sql[i], rc);
      goto out;
    }
  }
  char mode[16];
  int level = -1;
  if (user_store_settings(s, mode, sizeof(mode), &level) != 0)
    goto out;
  json_t *f = json_pack("{s:s, s:s, s:i, s:i}", "path", s->path, "journalMode", mode,
                        "synchronous", level, "schemaVersion", USER_SCHEMA_VERSION);
  proto_log_fields(PROTO_LOG_INFO, NULL, "store_opened", f);
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
  for (int i = 0; i < STMT_COUNT_ALL_; i++)
    sqlite3_finalize(s->stmt[i]); /* NULL is a no-op */
  if (s->db) {
    int rc = sqlite3_close(s->db);
    if (rc != SQLITE_OK)
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "close %s: %s", s->path,
                sqlite3_errstr(rc));
  }
  free(s->path);
  free(s);
}

int user_store_settings(user_store_t *s, char *journal_mode, size_t size, int *sync) {
  if (query_one(s, "PRAGMA journal_mode", NULL, journal_mode, size) != 0 ||
      query_one(s, "PRAGMA synchronous", sync, NULL, 0) != 0)
    return USER_STORE_ERROR;
  return 0;
}

/* --- queries ------------------------------------------------------------------ */

int user_store_create(user_store_t *s, const char *email, size_t email_len,
                      const char *name, size_t name_len, json_t **user) {
  sqlite3_stmt *st = s->stmt[STMT_INSERT];
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  int ret = USER_STORE_ERROR;
  *user = NULL;
  if (proto_random_id(USER_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a user id");
    return USER_STORE_ERROR;
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
  /* Autocommit: SQLITE_DONE means committed. Build the reply from what we
   * stored rather than reading it back. */
  *user = json_pack("{s:s, s:s%, s:s%, s:s, s:s, s:n}", "id", id, "email", email,
                    email_len, "name", name, name_len, "createdAt", now, "updatedAt", now,
                    "lastLoginAt");
  if (!*user) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building user %s", id);
    goto out;
  }
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

int user_store_get(user_store_t *s, const char *id, size_t id_len, json_t **user) {
  sqlite3_stmt *st = s->stmt[STMT_GET];
  int ret = USER_STORE_ERROR;
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
  stmt_done(st);
  return ret;
}

static int count_users(user_store_t *s, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_COUNT];
  int ret = USER_STORE_ERROR;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    db_fail(s, "count users", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  *total = sqlite3_column_int64(st, 0);
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

int user_store_list(user_store_t *s, int64_t page, int64_t limit, json_t **users,
                    int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_LIST];
  json_t *arr = NULL;
  int rc, ret = USER_STORE_ERROR;
  *users = NULL;
  if (page < 1 || limit < 1 || page > USER_PAGE_MAX || limit > USER_LIMIT_MAX)
    return USER_STORE_EINVAL;
  /* COUNT and SELECT are two autocommit reads; a concurrent insert between
   * them can make total off by one for this reply, which is acceptable. */
  if (count_users(s, total) != 0)
    return USER_STORE_ERROR;
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
  stmt_done(st);
  return ret;
}

static int user_exists(user_store_t *s, const char *id, size_t id_len) {
  sqlite3_stmt *st = s->stmt[STMT_EXISTS];
  int ret = USER_STORE_ERROR;
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
  stmt_done(st);
  return ret;
}

int user_store_record_login(user_store_t *s, const char *id, size_t id_len,
                            const char *at) {
  sqlite3_stmt *st = s->stmt[STMT_LOGIN];
  char now[PROTO_ISO_TIME_LEN];
  int ret = USER_STORE_ERROR;
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
    stmt_done(st);
    return user_exists(s, id, id_len);
  }
out:
  stmt_done(st);
  return ret;
}

int user_store_ping(user_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  stmt_done(st);
  return ret;
}
