/* store.c: the notification database, $DATA_DIR/notification.db in SQLite.
 * Owns the schema (versioned with PRAGMA user_version; libstore's store/db.h
 * opens, configures and migrates the file), de-duplication by eventId (a UNIQUE
 * column and INSERT OR IGNORE) and one cached prepared statement per query.
 * Every SQLite error is logged here.
 */
#include "notification.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/log.h"
#include "store/conn.h"
#include "store/stmt.h"

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
  store_conn_t c;                  /* first: libstore opens and closes it (store/conn.h) */
};

/* The notification object from a row of COLUMNS. NULL on ENOMEM or a row
 * that does not decode (logged). */
static json_t *row_to_ntf(sqlite3_stmt *st, void *arg) {
  (void)arg;
  static const char *const keys[] = {"id", "userId", "type", "title", "message",
                                     "eventId", "eventPattern", "orderId"};
  json_t *n = json_object(), *data = NULL, *delivery = NULL;
  if (!n)
    return NULL;
  for (int i = 0; i < 8; i++)
    if (json_object_set_new(n, keys[i], store_column_json(st, i)) != 0)
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
      json_object_set_new(n, "requestId", store_column_json(st, 9)) != 0 ||
      json_object_set_new(n, "createdAt", store_column_json(st, 10)) != 0)
    goto fail;
  delivery = json_pack("{s:o, s:I}", "status", store_column_json(st, 11), "attempts",
                       (json_int_t)sqlite3_column_int64(st, 12));
  if (!delivery)
    goto fail;
  /* The last error is internal detail worth showing only while it matters. */
  if (sqlite3_column_type(st, 13) != SQLITE_NULL &&
      json_object_set_new(delivery, "lastError", store_column_json(st, 13)) != 0)
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

const store_schema_t ntf_store_schema = {
    .file = NTF_DB_FILE,
    .steps = migrations,
    .version = NTF_SCHEMA_VERSION,
    .sql = stmt_sql,
    .n_stmt = STMT_COUNT_ALL_,
    .size = sizeof(ntf_store_t),
};

int ntf_store_open(const char *data_dir, int sync, ntf_store_t **out) {
  store_conn_t *c = NULL;
  int rc = store_open(data_dir, sync, &ntf_store_schema, &c);
  *out = (ntf_store_t *)c; /* c is the struct's first member */
  return rc;
}

void ntf_store_close(ntf_store_t *s) {
  store_close(s ? &s->c : NULL);
}

sqlite3 *ntf_store_db(ntf_store_t *s) {
  return s->c.db;
}

int ntf_store_settings(ntf_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_conn_settings(&s->c, journal_mode, size, sync);
}

/* --- queries ------------------------------------------------------------------ */

static const char *str_field(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

int ntf_store_insert(ntf_store_t *s, const json_t *ntf) {
  sqlite3_stmt *st = s->c.stmt[STMT_INSERT];
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
  if (store_bind_str(st, 1, v[0]) != 0 || store_bind_str(st, 2, v[1]) != 0 ||
      store_bind_str(st, 3, v[2]) != 0 || store_bind_str(st, 4, v[3]) != 0 ||
      store_bind_str(st, 5, v[4]) != 0 || store_bind_str(st, 6, v[5]) != 0 ||
      store_bind_str(st, 7, v[6]) != 0 || store_bind_str(st, 8, str_field(ntf, "orderId")) != 0 ||
      store_bind_text(st, 9, data, len) != 0 ||
      store_bind_str(st, 10, str_field(ntf, "requestId")) != 0 ||
      store_bind_str(st, 11, v[7]) != 0 || store_bind_str(st, 12, status) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "insert notification", rc);
    goto out;
  }
  /* SQLITE_DONE: committed (autocommit) or part of a commit group's open
   * transaction; or ignored as a duplicate, which the UNIQUE index sees
   * among the open transaction's rows too (same connection). */
  ret = sqlite3_changes(s->c.db) == 0 ? NTF_STORE_DUPLICATE : STORE_OK;
out:
  store_stmt_done(st); /* before free: the statement binds data SQLITE_STATIC */
  free(heap);
  return ret;
}

int ntf_store_get(ntf_store_t *s, const char *id, json_t **ntf) {
  return store_stmt_get(s->c.stmt[STMT_GET], id, strlen(id), NTF_STORE_NOT_FOUND, row_to_ntf,
                        NULL, "get notification", NULL, ntf);
}

static int count_for_user(ntf_store_t *s, const char *user_id, size_t len, int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_COUNT];
  if (store_bind_text(st, 1, user_id, len) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return store_stmt_count(st, "count notifications", total);
}

int ntf_store_list(ntf_store_t *s, const char *user_id, size_t user_id_len, int64_t page,
                   int64_t limit, json_t **items, int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_LIST];
  int ret = STORE_ERROR;
  *items = NULL;
  if (page < 1 || limit < 1 || page > NTF_PAGE_MAX || limit > NTF_LIMIT_MAX)
    return STORE_EINVAL;
  /* Two autocommit reads: an insert between them can make total off by one
   * for this reply, which is acceptable. */
  if (count_for_user(s, user_id, user_id_len, total) != 0)
    return STORE_ERROR;
  if (store_bind_text(st, 1, user_id, user_id_len) == 0 && store_bind_i64(st, 2, limit) == 0 &&
      store_bind_i64(st, 3, (page - 1) * limit) == 0)
    ret = store_stmt_rows(st, row_to_ntf, NULL, "list notifications",
                          "list notifications: cannot build the list", items);
  store_stmt_done(st);
  return ret;
}

int ntf_store_set_delivery(ntf_store_t *s, const char *id, const char *status,
                           unsigned attempts, const char *error) {
  sqlite3_stmt *st = s->c.stmt[STMT_SET_DELIVERY];
  int rc, ret = STORE_ERROR;
  if (!id || !status)
    return STORE_EINVAL;
  if (store_bind_str(st, 1, id) != 0 || store_bind_str(st, 2, status) != 0 ||
      store_bind_str(st, 4, error) != 0 || store_bind_i64(st, 3, attempts) != 0)
    goto out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_CHECK) {
    ret = STORE_EINVAL; /* not one of the four statuses */
    goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "record delivery", rc);
    goto out;
  }
  ret = sqlite3_changes(s->c.db) == 0 ? NTF_STORE_NOT_FOUND : STORE_OK;
out:
  store_stmt_done(st);
  return ret;
}

int ntf_store_pending(ntf_store_t *s, size_t max, json_t **items) {
  sqlite3_stmt *st = s->c.stmt[STMT_PENDING];
  int ret = STORE_ERROR;
  *items = NULL;
  sqlite3_int64 n = max > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max;
  if (store_bind_i64(st, 1, n) == 0)
    ret = store_stmt_rows(st, row_to_ntf, NULL, "pending notifications",
                          "pending notifications: cannot build the list", items);
  store_stmt_done(st);
  return ret;
}

int ntf_store_ping(ntf_store_t *s) {
  return store_stmt_ping(s->c.stmt[STMT_PING]);
}
