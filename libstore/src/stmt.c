/* stmt.c: binding, column and stepping helpers shared by the services'
 * stores (store/stmt.h). Errors are logged with the statement's connection
 * (sqlite3_db_handle), which is the store's.
 */
#include "store/stmt.h"

#include <limits.h>
#include <string.h>

#include "proto/log.h"
#include "store/db.h"

int store_fail(sqlite3 *db, const char *op, int rc) {
  store_db_fail(db, op, rc);
  return STORE_ERROR;
}

int store_bind_text(sqlite3_stmt *st, int idx, const char *v, size_t len) {
  sqlite3 *db = sqlite3_db_handle(st);
  if (len > INT_MAX)
    return store_fail(db, "bind", SQLITE_TOOBIG);
  int rc = v ? sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC)
             : sqlite3_bind_null(st, idx);
  return rc == SQLITE_OK ? 0 : store_fail(db, "bind", rc);
}

int store_bind_str(sqlite3_stmt *st, int idx, const char *v) {
  return store_bind_text(st, idx, v, v ? strlen(v) : 0);
}

int store_bind_i64(sqlite3_stmt *st, int idx, int64_t v) {
  int rc = sqlite3_bind_int64(st, idx, (sqlite3_int64)v);
  return rc == SQLITE_OK ? 0 : store_fail(sqlite3_db_handle(st), "bind", rc);
}

json_t *store_column_text(sqlite3_stmt *st, int col) {
  const char *t = (const char *)sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col); /* after _text: the length of that text */
  return t ? json_stringn(t, (size_t)n) : NULL;
}

json_t *store_column_json(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return json_null();
  return store_column_text(st, col);
}

int store_stmt_run(sqlite3_stmt *st, const char *op) {
  int rc = sqlite3_step(st);
  store_stmt_done(st);
  return rc == SQLITE_DONE ? 0 : store_fail(sqlite3_db_handle(st), op, rc);
}

int store_stmt_exists(sqlite3_stmt *st, const char *key, size_t len, int not_found,
                      const char *op) {
  int ret = STORE_ERROR;
  if (store_bind_text(st, 1, key, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    ret = STORE_OK;
  else if (rc == SQLITE_DONE)
    ret = not_found;
  else
    store_fail(sqlite3_db_handle(st), op, rc);
out:
  store_stmt_done(st);
  return ret;
}

int store_stmt_count(sqlite3_stmt *st, const char *op, int64_t *out) {
  int ret = STORE_ERROR;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    /* No row from a COUNT is a broken query, not "zero". */
    store_fail(sqlite3_db_handle(st), op, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  *out = sqlite3_column_int64(st, 0);
  ret = STORE_OK;
out:
  store_stmt_done(st);
  return ret;
}

int store_stmt_ping(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? STORE_OK
                                                    : store_fail(sqlite3_db_handle(st), "ping", rc);
  store_stmt_done(st);
  return ret;
}

int store_stmt_rows(sqlite3_stmt *st, store_row_fn row, void *arg, const char *op,
                    const char *build_error, json_t **out) {
  json_t *arr = json_array();
  int rc, ret = STORE_ERROR;
  *out = NULL;
  if (!arr)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *v = row(st, arg);
    if (!v || json_array_append_new(arr, v) != 0) { /* _new consumes v even on failure */
      if (build_error)
        proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s", build_error);
      goto out;
    }
  }
  if (rc != SQLITE_DONE) {
    store_fail(sqlite3_db_handle(st), op, rc);
    goto out;
  }
  *out = arr;
  arr = NULL;
  ret = STORE_OK;
out:
  json_decref(arr);
  return ret;
}

int store_stmt_get(sqlite3_stmt *st, const char *key, size_t len, int not_found,
                   store_row_fn row, void *arg, const char *op, const char *build_error,
                   json_t **out) {
  int ret = STORE_ERROR;
  *out = NULL;
  if (store_bind_text(st, 1, key, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = not_found;
  } else if (rc != SQLITE_ROW) {
    store_fail(sqlite3_db_handle(st), op, rc);
  } else if (!(*out = row(st, arg))) {
    if (build_error)
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s", build_error);
  } else {
    ret = STORE_OK;
  }
out:
  store_stmt_done(st);
  return ret;
}
