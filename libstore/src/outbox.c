/* outbox.c: the outbox table's statements (store/outbox.h): insert an event
 * in the caller's transaction, scan the unsent rows in id order, mark one
 * sent, purge old sent rows. The statements are cached on the store's
 * connection; every SQLite return is checked and logged with the op string.
 */
#include "store/outbox.h"

#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "store/stmt.h"

#define OUTBOX_EVENT_ID_PREFIX "evt_" /* as the publisher's own ids */

enum {
  OSTMT_INSERT,
  OSTMT_UNSENT,
  OSTMT_MARK_SENT,
  OSTMT_PURGE,
  OSTMT_COUNT_UNSENT,
  OSTMT_COUNT_,
};

static const char *const outbox_sql[OSTMT_COUNT_] = {
    [OSTMT_INSERT] = "INSERT INTO outbox (pattern, data, metadata, event_id, created_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [OSTMT_UNSENT] = "SELECT id, pattern, data, metadata, event_id FROM outbox"
                     " WHERE sent_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
    /* sent_at IS NULL: the first mark wins, a re-send keeps the first time. */
    [OSTMT_MARK_SENT] = "UPDATE outbox SET sent_at = ?2 WHERE id = ?1 AND sent_at IS NULL",
    [OSTMT_PURGE] = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                    " WHERE sent_at IS NOT NULL AND sent_at < ?1 ORDER BY sent_at LIMIT ?2)",
    [OSTMT_COUNT_UNSENT] = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL",
};

struct store_outbox {
  sqlite3 *db;                     /* borrowed: the store's connection */
  sqlite3_stmt *stmt[OSTMT_COUNT_];
};

int store_outbox_open(sqlite3 *db, store_outbox_t **out) {
  if (!out)
    return STORE_EINVAL;
  *out = NULL;
  if (!db)
    return STORE_EINVAL;
  store_outbox_t *o = calloc(1, sizeof(*o));
  if (!o) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "outbox_prepare: out of memory");
    return STORE_ERROR;
  }
  o->db = db;
  if (store_db_prepare(db, outbox_sql, OSTMT_COUNT_, o->stmt) != 0) {
    free(o); /* logged; nothing left prepared */
    return STORE_ERROR;
  }
  *out = o;
  return STORE_OK;
}

void store_outbox_close(store_outbox_t *o) {
  if (!o)
    return;
  store_db_finalize(o->stmt, OSTMT_COUNT_);
  free(o);
}

/* {"requestId"?, "eventId", "occurredAt"} as compact text (malloc'd). */
static char *metadata_text(const char *request_id, const char *event_id, const char *at) {
  char *text = NULL;
  json_t *m = json_object();
  if (!m)
    return NULL;
  if ((request_id && json_object_set_new(m, "requestId", json_string(request_id)) != 0) ||
      json_object_set_new(m, "eventId", json_string(event_id)) != 0 ||
      json_object_set_new(m, "occurredAt", json_string(at)) != 0)
    goto out; /* ENOMEM, or a request id that is not UTF-8 */
  text = json_dumps(m, JSON_COMPACT);
out:
  json_decref(m);
  return text;
}

int store_outbox_insert(store_outbox_t *o, const char *pattern, const json_t *data,
                        const char *request_id, char event_id_out[PROTO_ID_MAX]) {
  int ret = STORE_EINVAL;
  char event_id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  char *data_text = NULL, *meta_text = NULL;
  json_t *null_data = NULL;
  if (!o || !pattern || !*pattern)
    goto out;
  if (!data)
    data = null_data = json_null();
  if (proto_random_id(OUTBOX_EVENT_ID_PREFIX, event_id, sizeof(event_id)) != 0) {
    proto_log(PROTO_LOG_ERROR, request_id, "storage_error", "outbox_insert: no random id");
    ret = STORE_ERROR;
    goto out;
  }
  proto_time_iso(now);
  /* JSON_ENCODE_ANY: data may be any value, as the publisher's data is. */
  data_text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
  meta_text = metadata_text(request_id, event_id, now);
  if (!data_text || !meta_text)
    goto out; /* a NaN, text that is not UTF-8, or ENOMEM: nothing to store */
  sqlite3_stmt *st = o->stmt[OSTMT_INSERT];
  if (store_bind_str(st, 1, pattern) != 0 || store_bind_str(st, 2, data_text) != 0 ||
      store_bind_str(st, 3, meta_text) != 0 || store_bind_str(st, 4, event_id) != 0 ||
      store_bind_str(st, 5, now) != 0) {
    store_stmt_done(st);
    ret = STORE_ERROR;
    goto out;
  }
  ret = store_stmt_run(st, "outbox_insert") == 0 ? STORE_OK : STORE_ERROR;
  if (ret == STORE_OK && event_id_out)
    memcpy(event_id_out, event_id, strlen(event_id) + 1);
out:
  free(data_text);
  free(meta_text);
  json_decref(null_data);
  return ret;
}

int store_outbox_unsent(store_outbox_t *o, int64_t after_id, int limit, store_outbox_row_fn fn,
                        void *arg, int *n_out) {
  int ret = STORE_EINVAL, n = 0;
  if (n_out)
    *n_out = 0;
  if (!o || !fn || limit <= 0)
    return STORE_EINVAL;
  sqlite3_stmt *st = o->stmt[OSTMT_UNSENT];
  ret = STORE_ERROR;
  if (store_bind_i64(st, 1, after_id) != 0 || store_bind_i64(st, 2, limit) != 0)
    goto out;
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
      break;
    if (rc != SQLITE_ROW) {
      store_fail(o->db, "outbox_unsent", rc);
      goto out;
    }
    store_outbox_row_t row = {
        .id = sqlite3_column_int64(st, 0),
        .pattern = (const char *)sqlite3_column_text(st, 1),
        .data = (const char *)sqlite3_column_text(st, 2),
        .metadata = (const char *)sqlite3_column_text(st, 3),
        .event_id = (const char *)sqlite3_column_text(st, 4),
    };
    /* NOT NULL columns: NULL text here is ENOMEM inside SQLite. */
    if (!row.pattern || !row.data || !row.metadata || !row.event_id) {
      store_fail(o->db, "outbox_unsent", SQLITE_NOMEM);
      goto out;
    }
    if (fn(&row, arg) != 0)
      break;
    n++;
  }
  ret = STORE_OK;
out:
  store_stmt_done(st);
  if (n_out)
    *n_out = n;
  return ret;
}

int store_outbox_mark_sent(store_outbox_t *o, int64_t id, const char *sent_at) {
  if (!o || !sent_at || !*sent_at)
    return STORE_EINVAL;
  sqlite3_stmt *st = o->stmt[OSTMT_MARK_SENT];
  if (store_bind_i64(st, 1, id) != 0 || store_bind_str(st, 2, sent_at) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return store_stmt_run(st, "outbox_mark_sent") == 0 ? STORE_OK : STORE_ERROR;
}

int store_outbox_purge(store_outbox_t *o, const char *before, int limit, int64_t *deleted) {
  if (deleted)
    *deleted = 0;
  if (!o || !before || !*before || limit <= 0)
    return STORE_EINVAL;
  sqlite3_stmt *st = o->stmt[OSTMT_PURGE];
  if (store_bind_str(st, 1, before) != 0 || store_bind_i64(st, 2, limit) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  if (store_stmt_run(st, "outbox_purge") != 0)
    return STORE_ERROR;
  if (deleted)
    *deleted = sqlite3_changes(o->db);
  return STORE_OK;
}

int store_outbox_count_unsent(store_outbox_t *o, int64_t *out) {
  if (!o || !out)
    return STORE_EINVAL;
  return store_stmt_count(o->stmt[OSTMT_COUNT_UNSENT], "outbox_count", out);
}
