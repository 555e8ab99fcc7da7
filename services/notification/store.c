/* store.c: the notification database, $DATA_DIR/notification.db in SQLite.
 * Owns the schema (versioned with PRAGMA user_version), the settings that
 * make a stored notification durable, de-duplication by eventId (a UNIQUE
 * column and INSERT OR IGNORE) and one cached prepared statement per query.
 * Every SQLite error is logged here.
 */
#include "notification.h"

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
#define NTF_SCHEMA_VERSION 1
/* How long a statement waits for another connection's lock before failing.
 * We run on the event loop thread, so keep it short. */
#define NTF_STORE_BUSY_TIMEOUT_MS 1000
#define NTF_DATA_DIR_MODE 0750
/* Event data up to this size is serialised on the stack for the insert: no
 * malloc per event for the usual few hundred bytes. */
#define NTF_DATA_INLINE_BYTES 4096

enum {
  STMT_INSERT,
  STMT_GET,
  STMT_LIST,
  STMT_COUNT,
  STMT_SET_DELIVERY,
  STMT_PENDING,
  STMT_PING,
  STMT_COUNT_ALL_,
};

#define COLUMNS                                                                            \
  "id, user_id, type, title, message, event_id, event_pattern, order_id, data,"           \
  " request_id, created_at, delivery_status, delivery_attempts, delivery_error"

static const char *const stmt_sql[STMT_COUNT_ALL_] = {
    /* OR IGNORE: a second delivery of the same event (UNIQUE event_id)
     * stores nothing; sqlite3_changes() tells the two cases apart. */
    [STMT_INSERT] = "INSERT OR IGNORE INTO notifications (" COLUMNS ")"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, NULL)",
    [STMT_GET] = "SELECT " COLUMNS " FROM notifications WHERE id = ?1",
    /* Served by notifications_user_created (user_id, created_at, rowid),
     * walked backwards: newest first, insertion order breaking ties within
     * a millisecond. OFFSET walks the skipped rows: fine at our sizes. */
    [STMT_LIST] = "SELECT " COLUMNS " FROM notifications WHERE user_id = ?1"
                  " ORDER BY created_at DESC, seq DESC LIMIT ?2 OFFSET ?3",
    [STMT_COUNT] = "SELECT COUNT(*) FROM notifications WHERE user_id = ?1",
    [STMT_SET_DELIVERY] = "UPDATE notifications SET delivery_status = ?2,"
                          " delivery_attempts = ?3, delivery_error = ?4 WHERE id = ?1",
    [STMT_PENDING] = "SELECT " COLUMNS " FROM notifications"
                     " WHERE delivery_status = 'pending' ORDER BY seq LIMIT ?1",
    [STMT_PING] = "SELECT 1 FROM notifications LIMIT 1",
};

struct ntf_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT_ALL_];
  char *path;                      /* for log lines */
};

/* --- helpers ------------------------------------------------------------------ */

static int db_fail(ntf_store_t *s, const char *op, int rc) {
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s (%d): %s", op,
            sqlite3_errstr(rc), rc, s->db ? sqlite3_errmsg(s->db) : "no connection");
  return NTF_STORE_ERROR;
}

/* Run SQL that returns no rows we need (pragmas, DDL). */
static int exec_sql(ntf_store_t *s, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", sql,
              msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return NTF_STORE_ERROR;
  }
  return 0;
}

/* One-row, one-column query (a pragma) into an int or a text buffer. */
static int query_one(ntf_store_t *s, const char *sql, int *ival, char *tval, size_t tsize) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  int ret = NTF_STORE_ERROR;
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

static int bind_text(ntf_store_t *s, sqlite3_stmt *st, int idx, const char *v, size_t len) {
  if (len > INT_MAX)
    return db_fail(s, "bind", SQLITE_TOOBIG);
  int rc = sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC);
  return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
}

static int bind_str(ntf_store_t *s, sqlite3_stmt *st, int idx, const char *v) {
  if (!v) {
    int rc = sqlite3_bind_null(st, idx);
    return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
  }
  return bind_text(s, st, idx, v, strlen(v));
}

static json_t *column_json(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return json_null();
  const char *t = (const char *)sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  return t ? json_stringn(t, (size_t)n) : NULL;
}

/* The notification object from a row of COLUMNS. NULL on ENOMEM or a row
 * that does not decode (logged). */
static json_t *row_to_ntf(sqlite3_stmt *st) {
  static const char *const keys[] = {"id", "userId", "type", "title", "message",
                                     "eventId", "eventPattern", "orderId"};
  json_t *n = json_object(), *data = NULL, *delivery = NULL;
  if (!n)
    return NULL;
  for (int i = 0; i < 8; i++)
    if (json_object_set_new(n, keys[i], column_json(st, i)) != 0)
      goto fail;
  const char *text = (const char *)sqlite3_column_text(st, 8);
  if (text) {
    json_error_t jerr;
    data = json_loadb(text, (size_t)sqlite3_column_bytes(st, 8), JSON_DECODE_ANY, &jerr);
    if (!data) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "notification data is not JSON: %s",
                jerr.text);
      goto fail;
    }
  }
  if (json_object_set_new(n, "data", data ? data : json_null()) != 0 ||
      json_object_set_new(n, "requestId", column_json(st, 9)) != 0 ||
      json_object_set_new(n, "createdAt", column_json(st, 10)) != 0)
    goto fail;
  delivery = json_pack("{s:o, s:I}", "status", column_json(st, 11), "attempts",
                       (json_int_t)sqlite3_column_int64(st, 12));
  if (!delivery)
    goto fail;
  /* The last error is internal detail worth showing only while it matters. */
  if (sqlite3_column_type(st, 13) != SQLITE_NULL &&
      json_object_set_new(delivery, "lastError", column_json(st, 13)) != 0)
    goto fail;
  if (json_object_set_new(n, "delivery", delivery) != 0) {
    delivery = NULL; /* stolen even on failure */
    goto fail;
  }
  return n;
fail:
  json_decref(delivery);
  json_decref(n);
  return NULL;
}

/* Run a SELECT of COLUMNS to completion, appending each row to a new array. */
static int collect_rows(ntf_store_t *s, sqlite3_stmt *st, const char *op, json_t **items) {
  json_t *arr = json_array();
  int rc, ret = NTF_STORE_ERROR;
  if (!arr)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *n = row_to_ntf(st);
    if (!n || json_array_append_new(arr, n) != 0) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: cannot build the list", op);
      goto out;
    }
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, op, rc);
    goto out;
  }
  *items = arr;
  arr = NULL;
  ret = 0;
out:
  json_decref(arr);
  return ret;
}

/* mkdir -p, so DATA_DIR=/var/lib/nestc/notification works on a fresh machine. */
static int make_dirs(const char *dir) {
  char *p = strdup(dir);
  int ret = -1;
  if (!p)
    return -1;
  for (char *c = p + 1;; c++) {
    if (*c != '/' && *c != '\0')
      continue;
    char saved = *c;
    *c = '\0';
    if (mkdir(p, NTF_DATA_DIR_MODE) != 0 && errno != EEXIST) {
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

static int migrate(ntf_store_t *s) {
  int version = 0;
  if (query_one(s, "PRAGMA user_version", &version, NULL, 0) != 0)
    return NTF_STORE_ERROR;
  if (version > NTF_SCHEMA_VERSION) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s has schema version %d; this build knows up to %d: refusing to open",
              s->path, version, NTF_SCHEMA_VERSION);
    return NTF_STORE_ERROR;
  }
  if (version == NTF_SCHEMA_VERSION)
    return 0;
  /* One transaction per step: a crash leaves the previous version intact. */
  if (version < 1) {
    /* seq is the rowid: insertion order, the tie-breaker for equal
     * created_at. data is the event's data as compact JSON text. */
    static const char v1[] =
        "BEGIN IMMEDIATE;"
        "CREATE TABLE notifications ("
        " seq INTEGER PRIMARY KEY,"
        " id TEXT NOT NULL UNIQUE,"
        " user_id TEXT NOT NULL,"
        " type TEXT NOT NULL,"
        " title TEXT NOT NULL,"
        " message TEXT NOT NULL,"
        " event_id TEXT NOT NULL UNIQUE,"
        " event_pattern TEXT NOT NULL,"
        " order_id TEXT,"
        " data TEXT NOT NULL,"
        " request_id TEXT,"
        " created_at TEXT NOT NULL,"
        " delivery_status TEXT NOT NULL"
        "  CHECK (delivery_status IN ('none','pending','delivered','failed')),"
        " delivery_attempts INTEGER NOT NULL DEFAULT 0,"
        " delivery_error TEXT);"
        "CREATE INDEX notifications_user_created ON notifications (user_id, created_at);"
        "CREATE INDEX notifications_pending ON notifications (seq)"
        " WHERE delivery_status = 'pending';"
        "PRAGMA user_version = 1;"
        "COMMIT;";
    if (exec_sql(s, v1) != 0) {
      exec_sql(s, "ROLLBACK");
      return NTF_STORE_ERROR;
    }
  }
  proto_log(PROTO_LOG_INFO, NULL, "schema_migrated", "%s: schema version %d -> %d", s->path,
            version, NTF_SCHEMA_VERSION);
  return 0;
}

/* --- open / close ------------------------------------------------------------ */

int ntf_sync_parse(const char *v) {
  if (!v)
    return -1;
  if (strcasecmp(v, "NORMAL") == 0)
    return NTF_SYNC_NORMAL;
  if (strcasecmp(v, "FULL") == 0)
    return NTF_SYNC_FULL;
  if (strcasecmp(v, "EXTRA") == 0)
    return NTF_SYNC_EXTRA;
  return -1;
}

static int configure(ntf_store_t *s, ntf_sync_t sync) {
  static const char *const sync_sql[] = {
      [NTF_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
      [NTF_SYNC_FULL] = "PRAGMA synchronous = FULL",
      [NTF_SYNC_EXTRA] = "PRAGMA synchronous = EXTRA",
  };
  char mode[16];
  int rc;
  if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
      (rc = sqlite3_busy_timeout(s->db, NTF_STORE_BUSY_TIMEOUT_MS)) != SQLITE_OK)
    return db_fail(s, "configure", rc);
  /* journal_mode answers with the mode in effect: check it took. */
  if (query_one(s, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode)) != 0)
    return NTF_STORE_ERROR;
  if (strcasecmp(mode, "wal") != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: journal_mode is %s, not wal",
              s->path, mode);
    return NTF_STORE_ERROR;
  }
  /* In WAL mode FULL fsyncs the WAL at every commit: a notification logged
   * as stored survives power loss. */
  if (exec_sql(s, sync_sql[sync]) != 0)
    return NTF_STORE_ERROR;
  return 0;
}

int ntf_store_open(const char *data_dir, ntf_sync_t sync, ntf_store_t **out) {
  ntf_store_t *s = NULL;
  int rc, ret = NTF_STORE_ERROR;
  *out = NULL;
  if (sync != NTF_SYNC_NORMAL && sync != NTF_SYNC_FULL && sync != NTF_SYNC_EXTRA)
    return NTF_STORE_EINVAL;
  if (make_dirs(data_dir) != 0)
    return NTF_STORE_ERROR;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  size_t plen = strlen(data_dir) + sizeof("/" NTF_DB_FILE);
  if (!(s->path = malloc(plen)))
    goto out;
  snprintf(s->path, plen, "%s/%s", data_dir, NTF_DB_FILE);
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
  if (ntf_store_settings(s, mode, sizeof(mode), &level) != 0)
    goto out;
  json_t *f = json_pack("{s:s, s:s, s:i, s:i}", "path", s->path, "journalMode", mode,
                        "synchronous", level, "schemaVersion", NTF_SCHEMA_VERSION);
  proto_log_fields(PROTO_LOG_INFO, NULL, "store_opened", f);
  *out = s;
  s = NULL;
  ret = 0;
out:
  ntf_store_close(s);
  return ret;
}

void ntf_store_close(ntf_store_t *s) {
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

sqlite3 *ntf_store_db(ntf_store_t *s) {
  return s->db;
}

int ntf_store_settings(ntf_store_t *s, char *journal_mode, size_t size, int *sync) {
  if (query_one(s, "PRAGMA journal_mode", NULL, journal_mode, size) != 0 ||
      query_one(s, "PRAGMA synchronous", sync, NULL, 0) != 0)
    return NTF_STORE_ERROR;
  return 0;
}

/* --- queries ------------------------------------------------------------------ */

static const char *str_field(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

int ntf_store_insert(ntf_store_t *s, const json_t *ntf) {
  sqlite3_stmt *st = s->stmt[STMT_INSERT];
  static const char *const required[] = {"id", "userId", "type", "title", "message",
                                         "eventId", "eventPattern", "createdAt"};
  const char *v[8];
  char inline_buf[NTF_DATA_INLINE_BYTES];
  char *heap = NULL, *data = inline_buf;
  int ret = NTF_STORE_ERROR;
  for (int i = 0; i < 8; i++)
    if (!(v[i] = str_field(ntf, required[i])))
      return NTF_STORE_EINVAL;
  const char *status = str_field(json_object_get(ntf, "delivery"), "status");
  const json_t *d = json_object_get(ntf, "data");
  if (!status)
    status = "none";
  if (!d)
    d = json_null();
  /* json_dumpb reports the size it needs: an oversized object is refused
   * without serialising it into memory, a small one never touches the heap. */
  size_t len = json_dumpb(d, inline_buf, sizeof(inline_buf), JSON_COMPACT | JSON_ENCODE_ANY);
  if (len == 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot encode notification data");
    return NTF_STORE_ERROR;
  }
  if (len > NTF_DATA_MAX_BYTES)
    return NTF_STORE_EINVAL;
  if (len > sizeof(inline_buf)) {
    if (!(heap = malloc(len)) ||
        json_dumpb(d, heap, len, JSON_COMPACT | JSON_ENCODE_ANY) != len) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot encode notification data");
      goto out;
    }
    data = heap;
  }
  if (bind_str(s, st, 1, v[0]) != 0 || bind_str(s, st, 2, v[1]) != 0 ||
      bind_str(s, st, 3, v[2]) != 0 || bind_str(s, st, 4, v[3]) != 0 ||
      bind_str(s, st, 5, v[4]) != 0 || bind_str(s, st, 6, v[5]) != 0 ||
      bind_str(s, st, 7, v[6]) != 0 || bind_str(s, st, 8, str_field(ntf, "orderId")) != 0 ||
      bind_text(s, st, 9, data, len) != 0 ||
      bind_str(s, st, 10, str_field(ntf, "requestId")) != 0 ||
      bind_str(s, st, 11, v[7]) != 0 || bind_str(s, st, 12, status) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    db_fail(s, "insert notification", rc);
    goto out;
  }
  /* SQLITE_DONE: committed (autocommit) or part of a commit group's open
   * transaction; or ignored as a duplicate, which the UNIQUE index sees
   * among the open transaction's rows too (same connection). */
  ret = sqlite3_changes(s->db) == 0 ? NTF_STORE_DUPLICATE : NTF_STORE_OK;
out:
  stmt_done(st); /* before free: the statement binds data SQLITE_STATIC */
  free(heap);
  return ret;
}

int ntf_store_get(ntf_store_t *s, const char *id, json_t **ntf) {
  sqlite3_stmt *st = s->stmt[STMT_GET];
  int ret = NTF_STORE_ERROR;
  *ntf = NULL;
  if (bind_str(s, st, 1, id) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = NTF_STORE_NOT_FOUND;
    goto out;
  }
  if (rc != SQLITE_ROW) {
    db_fail(s, "get notification", rc);
    goto out;
  }
  if (!(*ntf = row_to_ntf(st)))
    goto out;
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

static int count_for_user(ntf_store_t *s, const char *user_id, size_t len, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_COUNT];
  int ret = NTF_STORE_ERROR;
  if (bind_text(s, st, 1, user_id, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    db_fail(s, "count notifications", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  *total = sqlite3_column_int64(st, 0);
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

int ntf_store_list(ntf_store_t *s, const char *user_id, size_t user_id_len, int64_t page,
                   int64_t limit, json_t **items, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_LIST];
  int rc, ret = NTF_STORE_ERROR;
  *items = NULL;
  if (page < 1 || limit < 1 || page > NTF_PAGE_MAX || limit > NTF_LIMIT_MAX)
    return NTF_STORE_EINVAL;
  /* Two autocommit reads: an insert between them can make total off by one
   * for this reply, which is acceptable. */
  if (count_for_user(s, user_id, user_id_len, total) != 0)
    return NTF_STORE_ERROR;
  if (bind_text(s, st, 1, user_id, user_id_len) != 0)
    goto out;
  if ((rc = sqlite3_bind_int64(st, 2, limit)) != SQLITE_OK ||
      (rc = sqlite3_bind_int64(st, 3, (page - 1) * limit)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  ret = collect_rows(s, st, "list notifications", items);
out:
  stmt_done(st);
  return ret;
}

int ntf_store_set_delivery(ntf_store_t *s, const char *id, const char *status,
                           unsigned attempts, const char *error) {
  sqlite3_stmt *st = s->stmt[STMT_SET_DELIVERY];
  int rc, ret = NTF_STORE_ERROR;
  if (!id || !status)
    return NTF_STORE_EINVAL;
  if (bind_str(s, st, 1, id) != 0 || bind_str(s, st, 2, status) != 0 ||
      bind_str(s, st, 4, error) != 0)
    goto out;
  if ((rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)attempts)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_CHECK) {
    ret = NTF_STORE_EINVAL; /* not one of the four statuses */
    goto out;
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "record delivery", rc);
    goto out;
  }
  ret = sqlite3_changes(s->db) == 0 ? NTF_STORE_NOT_FOUND : NTF_STORE_OK;
out:
  stmt_done(st);
  return ret;
}

int ntf_store_pending(ntf_store_t *s, size_t max, json_t **items) {
  sqlite3_stmt *st = s->stmt[STMT_PENDING];
  int rc, ret = NTF_STORE_ERROR;
  *items = NULL;
  sqlite3_int64 n = max > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max;
  if ((rc = sqlite3_bind_int64(st, 1, n)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  ret = collect_rows(s, st, "pending notifications", items);
out:
  stmt_done(st);
  return ret;
}

int ntf_store_ping(ntf_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  stmt_done(st);
  return ret;
}
