/* store.c: the notification database, $DATA_DIR/notification.db in SQLite.
 * Owns the schema (versioned with PRAGMA user_version; libstore's store/db.h
 * opens, configures and migrates the file), de-duplication by eventId (a UNIQUE
 * column and INSERT OR IGNORE) and one cached prepared statement per query.
 * Every SQLite error is logged here.
 */
#include "notification.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/log.h"
#include "store/db.h"

/* The schema version this code writes and understands: one step per version
 * in migrations[] (libstore runs the missing ones at open). */
#define NTF_SCHEMA_VERSION 2
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
  store_db_fail(s->db, op, rc);
  return STORE_ERROR;
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
  int rc, ret = STORE_ERROR;
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

/* --- schema ------------------------------------------------------------------ */

/* migrations[i] brings the schema from version i to i+1, in one transaction. */
static const store_db_migration_t migrations[NTF_SCHEMA_VERSION] = {
    /* v1. seq is the rowid: insertion order, the tie-breaker for equal
     * created_at. data is the event's data as compact JSON text. */
    {"CREATE TABLE notifications ("
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
     " WHERE delivery_status = 'pending';"},
    /* v2. The same table with delivery_status checked by ORs: SQLite builds
     * an ephemeral table for "x IN (...)" in a CHECK on every INSERT and
     * UPDATE (about 9% of this daemon's CPU under load). A CHECK cannot be
     * altered, so the table is rebuilt by SQLite's recipe: new table, copy,
     * drop, rename, indexes. */
    {"CREATE TABLE notifications_v2 ("
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
     "  CHECK (delivery_status = 'none' OR delivery_status = 'pending'"
     "   OR delivery_status = 'delivered' OR delivery_status = 'failed'),"
     " delivery_attempts INTEGER NOT NULL DEFAULT 0,"
     " delivery_error TEXT);"
     "INSERT INTO notifications_v2 (seq, " COLUMNS ") SELECT seq, " COLUMNS
     " FROM notifications;"
     "DROP TABLE notifications;"
     "ALTER TABLE notifications_v2 RENAME TO notifications;"
     "CREATE INDEX notifications_user_created ON notifications (user_id, created_at);"
     "CREATE INDEX notifications_pending ON notifications (seq)"
     " WHERE delivery_status = 'pending';"},
};

/* --- open / close ------------------------------------------------------------ */

int ntf_store_open(const char *data_dir, int sync, ntf_store_t **out) {
  ntf_store_t *s = NULL;
  int ret = STORE_ERROR;
  *out = NULL;
  if (sync != STORE_SYNC_NORMAL && sync != STORE_SYNC_FULL && sync != STORE_SYNC_EXTRA)
    return STORE_EINVAL;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  /* WAL, synchronous = sync (FULL: a commit is fsynced before we answer), busy
   * timeout, schema checked and migrated. */
  if (store_db_open(data_dir, NTF_DB_FILE, (int)sync, 0, migrations,
                    NTF_SCHEMA_VERSION, &s->db, &s->path) != 0 ||
      store_db_prepare(s->db, stmt_sql, STMT_COUNT_ALL_, s->stmt) != 0 ||
      store_db_log_opened(s->db, s->path, NTF_SCHEMA_VERSION) != 0)
    goto out;
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
  store_db_finalize(s->stmt, STMT_COUNT_ALL_);
  store_db_close(s->db, s->path);
  free(s);
}

sqlite3 *ntf_store_db(ntf_store_t *s) {
  return s->db;
}

int ntf_store_settings(ntf_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_db_settings(s->db, journal_mode, size, sync) == 0 ? 0 : STORE_ERROR;
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
  int ret = STORE_ERROR;
  for (int i = 0; i < 8; i++)
    if (!(v[i] = str_field(ntf, required[i])))
      return STORE_EINVAL;
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
    return STORE_ERROR;
  }
  if (len > NTF_DATA_MAX_BYTES)
    return STORE_EINVAL;
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
  ret = sqlite3_changes(s->db) == 0 ? NTF_STORE_DUPLICATE : STORE_OK;
out:
  store_stmt_done(st); /* before free: the statement binds data SQLITE_STATIC */
  free(heap);
  return ret;
}

int ntf_store_get(ntf_store_t *s, const char *id, json_t **ntf) {
  sqlite3_stmt *st = s->stmt[STMT_GET];
  int ret = STORE_ERROR;
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
  store_stmt_done(st);
  return ret;
}

static int count_for_user(ntf_store_t *s, const char *user_id, size_t len, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_COUNT];
  int ret = STORE_ERROR;
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
  store_stmt_done(st);
  return ret;
}

int ntf_store_list(ntf_store_t *s, const char *user_id, size_t user_id_len, int64_t page,
                   int64_t limit, json_t **items, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_LIST];
  int rc, ret = STORE_ERROR;
  *items = NULL;
  if (page < 1 || limit < 1 || page > NTF_PAGE_MAX || limit > NTF_LIMIT_MAX)
    return STORE_EINVAL;
  /* Two autocommit reads: an insert between them can make total off by one
   * for this reply, which is acceptable. */
  if (count_for_user(s, user_id, user_id_len, total) != 0)
    return STORE_ERROR;
  if (bind_text(s, st, 1, user_id, user_id_len) != 0)
    goto out;
  if ((rc = sqlite3_bind_int64(st, 2, limit)) != SQLITE_OK ||
      (rc = sqlite3_bind_int64(st, 3, (page - 1) * limit)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  ret = collect_rows(s, st, "list notifications", items);
out:
  store_stmt_done(st);
  return ret;
}

int ntf_store_set_delivery(ntf_store_t *s, const char *id, const char *status,
                           unsigned attempts, const char *error) {
  sqlite3_stmt *st = s->stmt[STMT_SET_DELIVERY];
  int rc, ret = STORE_ERROR;
  if (!id || !status)
    return STORE_EINVAL;
  if (bind_str(s, st, 1, id) != 0 || bind_str(s, st, 2, status) != 0 ||
      bind_str(s, st, 4, error) != 0)
    goto out;
  if ((rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)attempts)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_CHECK) {
    ret = STORE_EINVAL; /* not one of the four statuses */
    goto out;
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "record delivery", rc);
    goto out;
  }
  ret = sqlite3_changes(s->db) == 0 ? NTF_STORE_NOT_FOUND : STORE_OK;
out:
  store_stmt_done(st);
  return ret;
}

int ntf_store_pending(ntf_store_t *s, size_t max, json_t **items) {
  sqlite3_stmt *st = s->stmt[STMT_PENDING];
  int rc, ret = STORE_ERROR;
  *items = NULL;
  sqlite3_int64 n = max > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max;
  if ((rc = sqlite3_bind_int64(st, 1, n)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  ret = collect_rows(s, st, "pending notifications", items);
out:
  store_stmt_done(st);
  return ret;
}

int ntf_store_ping(ntf_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  store_stmt_done(st);
  return ret;
}
