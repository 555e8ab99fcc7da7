/* store.c: the order database, $DATA_DIR/order.db in SQLite. Owns the schema
 * (orders + order_items, versioned with PRAGMA user_version), the connection
 * settings that make a commit durable, one cached prepared statement per
 * query, and the atomic status transition. Transactions are not opened here:
 * writes join the commit group's (order.h). Every SQLite error is logged here.
 */
#include "order.h"

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
#define ORDER_SCHEMA_VERSION 1
/* How long a statement waits for another connection's lock. We run on the
 * loop thread, so keep it short: with WAL, readers never wait at all. */
#define ORDER_STORE_BUSY_TIMEOUT_MS 1000
#define ORDER_DATA_DIR_MODE 0750

enum {
  STMT_SAVEPOINT,
  STMT_RELEASE,
  STMT_ROLLBACK_TO,
  STMT_INSERT_ORDER,
  STMT_INSERT_ITEM,
  STMT_GET_ORDER,
  STMT_GET_ITEMS,
  STMT_LIST_USER,
  STMT_COUNT_USER,
  STMT_TRANSITION,
  STMT_EXISTS,
  STMT_PING,
  STMT_COUNT_ALL_,
};

#define ORDER_COLUMNS                                                                   \
  "id, user_id, total_amount, currency, status, payment_method, payment_id,"            \
  " cancel_reason, created_at, updated_at"

static const char *const stmt_sql[STMT_COUNT_ALL_] = {
    /* The order and its items go in together or not at all. A savepoint, not
     * BEGIN: it nests in the commit group's open transaction (a failed order
     * undoes only itself), and outside one it is a transaction of its own. */
    [STMT_SAVEPOINT] = "SAVEPOINT order_create",
    [STMT_RELEASE] = "RELEASE order_create",
    [STMT_ROLLBACK_TO] = "ROLLBACK TO order_create",
    [STMT_INSERT_ORDER] = "INSERT INTO orders (" ORDER_COLUMNS ")"
                          " VALUES (?1, ?2, ?3, ?4, 'pending', ?5, NULL, NULL, ?6, ?6)",
    [STMT_INSERT_ITEM] = "INSERT INTO order_items (order_id, line, product_id, quantity, price)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)",
    [STMT_GET_ORDER] = "SELECT " ORDER_COLUMNS " FROM orders WHERE id = ?1",
    [STMT_GET_ITEMS] = "SELECT product_id, quantity, price FROM order_items"
                       " WHERE order_id = ?1 ORDER BY line",
    /* Newest first, on the (user_id, created_at) index; rowid breaks ties
     * within a millisecond in insertion order. OFFSET walks the skipped index
     * entries: fine for a user's orders; use keyset pagination if deep pages
     * ever matter. */
    [STMT_LIST_USER] = "SELECT " ORDER_COLUMNS " FROM orders WHERE user_id = ?1"
                       " ORDER BY created_at DESC, rowid DESC LIMIT ?2 OFFSET ?3",
    [STMT_COUNT_USER] = "SELECT COUNT(*) FROM orders WHERE user_id = ?1",
    /* The WHERE on the status makes the move atomic: it happens only if the
     * order is still in the status the caller checked. */
    [STMT_TRANSITION] = "UPDATE orders SET status = ?3, payment_id = COALESCE(?4, payment_id),"
                        " cancel_reason = COALESCE(?5, cancel_reason), updated_at = ?6"
                        " WHERE id = ?1 AND status = ?2",
    [STMT_EXISTS] = "SELECT 1 FROM orders WHERE id = ?1",
    [STMT_PING] = "SELECT 1 FROM orders LIMIT 1",
};

struct order_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT_ALL_];
  char *path;                      /* for log lines */
};

/* --- helpers ------------------------------------------------------------------ */

static int db_fail(order_store_t *s, const char *op, int rc) {
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s (%d): %s", op,
            sqlite3_errstr(rc), rc, s->db ? sqlite3_errmsg(s->db) : "no connection");
  return ORDER_STORE_ERROR;
}

static int exec_sql(order_store_t *s, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", sql,
              msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return ORDER_STORE_ERROR;
  }
  return 0;
}

/* One-row, one-column query (a pragma) into an int or a text buffer. */
static int query_one(order_store_t *s, const char *sql, int *ival, char *tval, size_t tsize) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  int ret = ORDER_STORE_ERROR;
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

static int bind_text(order_store_t *s, sqlite3_stmt *st, int idx, const char *v, size_t len) {
  if (len > INT_MAX)
    return db_fail(s, "bind", SQLITE_TOOBIG);
  int rc = v ? sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC)
             : sqlite3_bind_null(st, idx);
  return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
}

static int bind_str(order_store_t *s, sqlite3_stmt *st, int idx, const char *v) {
  return bind_text(s, st, idx, v, v ? strlen(v) : 0);
}

static int bind_int(order_store_t *s, sqlite3_stmt *st, int idx, int64_t v) {
  int rc = sqlite3_bind_int64(st, idx, v);
  return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
}

/* Run a statement that returns no rows. */
static int step_done(order_store_t *s, int which, const char *op) {
  sqlite3_stmt *st = s->stmt[which];
  int rc = sqlite3_step(st);
  stmt_done(st);
  return rc == SQLITE_DONE ? 0 : db_fail(s, op, rc);
}

static json_t *column_json(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    return json_null();
  const char *t = (const char *)sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  return t ? json_stringn(t, (size_t)n) : NULL;
}

/* The items of an order, in line order. NULL on failure (logged). */
static json_t *load_items(order_store_t *s, const char *id, size_t id_len) {
  sqlite3_stmt *st = s->stmt[STMT_GET_ITEMS];
  json_t *arr = json_array();
  int rc;
  if (!arr || bind_text(s, st, 1, id, id_len) != 0)
    goto fail;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *it = json_pack("{s:o, s:I, s:I}", "productId", column_json(st, 0), "quantity",
                           (json_int_t)sqlite3_column_int64(st, 1), "price",
                           (json_int_t)sqlite3_column_int64(st, 2));
    if (!it || json_array_append_new(arr, it) != 0) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build order items");
      goto fail;
    }
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "load items", rc);
    goto fail;
  }
  stmt_done(st);
  return arr;
fail:
  stmt_done(st);
  json_decref(arr);
  return NULL;
}

/* The order object from a row of ORDER_COLUMNS, with its items. NULL on
 * failure (logged). */
static json_t *row_to_order(order_store_t *s, sqlite3_stmt *st) {
  const char *id = (const char *)sqlite3_column_text(st, 0);
  size_t id_len = (size_t)sqlite3_column_bytes(st, 0);
  json_t *items = id ? load_items(s, id, id_len) : NULL;
  if (!items)
    return NULL;
  json_t *o = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                        "id", column_json(st, 0), "userId", column_json(st, 1), "items", items,
                        "totalAmount", (json_int_t)sqlite3_column_int64(st, 2), "currency",
                        column_json(st, 3), "status", column_json(st, 4), "paymentMethod",
                        column_json(st, 5), "paymentId", column_json(st, 6), "cancelReason",
                        column_json(st, 7), "createdAt", column_json(st, 8), "updatedAt",
                        column_json(st, 9));
  if (!o)
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build order from row");
  return o;
}

/* mkdir -p, so DATA_DIR=/var/lib/nestc/order works on a fresh machine. */
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
    if (mkdir(p, ORDER_DATA_DIR_MODE) != 0 && errno != EEXIST) {
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

static int migrate(order_store_t *s) {
  int version = 0;
  if (query_one(s, "PRAGMA user_version", &version, NULL, 0) != 0)
    return ORDER_STORE_ERROR;
  if (version > ORDER_SCHEMA_VERSION) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s has schema version %d; this build knows up to %d: refusing to open",
              s->path, version, ORDER_SCHEMA_VERSION);
    return ORDER_STORE_ERROR;
  }
  if (version == ORDER_SCHEMA_VERSION)
    return 0;
  /* One transaction per step: a crash leaves the previous version intact. */
  if (version < 1) {
    /* Money is INTEGER minor units, never REAL. Statuses are the names the
     * API uses, so a dump reads like the replies. Items are immutable and
     * clustered by order (WITHOUT ROWID on the primary key). */
    static const char v1[] =
        "BEGIN IMMEDIATE;"
        "CREATE TABLE orders ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " user_id TEXT NOT NULL,"
        " total_amount INTEGER NOT NULL CHECK (total_amount >= 0),"
        " currency TEXT NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN"
        "  ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled')),"
        " payment_method TEXT NOT NULL,"
        " payment_id TEXT,"
        " cancel_reason TEXT,"
        " created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL);"
        "CREATE INDEX orders_user_created ON orders (user_id, created_at);"
        "CREATE TABLE order_items ("
        " order_id TEXT NOT NULL REFERENCES orders (id),"
        " line INTEGER NOT NULL,"
        " product_id TEXT NOT NULL,"
        " quantity INTEGER NOT NULL CHECK (quantity > 0),"
        " price INTEGER NOT NULL CHECK (price >= 0),"
        " PRIMARY KEY (order_id, line)) WITHOUT ROWID;"
        "PRAGMA user_version = 1;"
        "COMMIT;";
    if (exec_sql(s, v1) != 0) {
      exec_sql(s, "ROLLBACK");
      return ORDER_STORE_ERROR;
    }
  }
  proto_log(PROTO_LOG_INFO, NULL, "schema_migrated", "%s: schema version %d -> %d", s->path,
            version, ORDER_SCHEMA_VERSION);
  return 0;
}

/* --- open / close ------------------------------------------------------------ */

int order_sync_parse(const char *v) {
  if (!v)
    return -1;
  if (strcasecmp(v, "NORMAL") == 0)
    return ORDER_SYNC_NORMAL;
  if (strcasecmp(v, "FULL") == 0)
    return ORDER_SYNC_FULL;
  if (strcasecmp(v, "EXTRA") == 0)
    return ORDER_SYNC_EXTRA;
  return -1;
}

static int configure(order_store_t *s, order_sync_t sync) {
  static const char *const sync_sql[] = {
      [ORDER_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
      [ORDER_SYNC_FULL] = "PRAGMA synchronous = FULL",
      [ORDER_SYNC_EXTRA] = "PRAGMA synchronous = EXTRA",
  };
  char mode[16];
  int rc;
  if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
      (rc = sqlite3_busy_timeout(s->db, ORDER_STORE_BUSY_TIMEOUT_MS)) != SQLITE_OK)
    return db_fail(s, "configure", rc);
  if (query_one(s, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode)) != 0)
    return ORDER_STORE_ERROR;
  if (strcasecmp(mode, "wal") != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: journal_mode is %s, not wal",
              s->path, mode);
    return ORDER_STORE_ERROR;
  }
  /* In WAL mode FULL fsyncs the WAL at every commit: a committed order
   * survives power loss before we answer or call the payment service. */
  if (exec_sql(s, sync_sql[sync]) != 0 || exec_sql(s, "PRAGMA foreign_keys = ON") != 0)
    return ORDER_STORE_ERROR;
  return 0;
}

int order_store_open(const char *data_dir, order_sync_t sync, order_store_t **out) {
  order_store_t *s = NULL;
  int rc, ret = ORDER_STORE_ERROR;
  *out = NULL;
  if (sync != ORDER_SYNC_NORMAL && sync != ORDER_SYNC_FULL && sync != ORDER_SYNC_EXTRA)
    return ORDER_STORE_EINVAL;
  if (make_dirs(data_dir) != 0)
    return ORDER_STORE_ERROR;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  size_t plen = strlen(data_dir) + sizeof("/" ORDER_DB_FILE);
  if (!(s->path = malloc(plen)))
    goto out;
  snprintf(s->path, plen, "%s/%s", data_dir, ORDER_DB_FILE);
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
  if (order_store_settings(s, mode, sizeof(mode), &level) != 0)
    goto out;
  proto_log_fields(PROTO_LOG_INFO, NULL, "store_opened",
                   json_pack("{s:s, s:s, s:i, s:i}", "path", s->path, "journalMode", mode,
                             "synchronous", level, "schemaVersion", ORDER_SCHEMA_VERSION));
  *out = s;
  s = NULL;
  ret = 0;
out:
  order_store_close(s);
  return ret;
}

sqlite3 *order_store_db(order_store_t *s) {
  return s->db;
}

void order_store_close(order_store_t *s) {
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

int order_store_settings(order_store_t *s, char *journal_mode, size_t size, int *sync) {
  if (query_one(s, "PRAGMA journal_mode", NULL, journal_mode, size) != 0 ||
      query_one(s, "PRAGMA synchronous", sync, NULL, 0) != 0)
    return ORDER_STORE_ERROR;
  return 0;
}

/* --- writes ------------------------------------------------------------------ */

/* The reply for a new order, built from what was stored. */
static json_t *new_order_json(const char *id, const order_create_input_t *in, const char *now) {
  json_t *items = json_array();
  if (!items)
    return NULL;
  for (size_t i = 0; i < in->n_items; i++) {
    const order_item_input_t *it = &in->items[i];
    if (json_array_append_new(items, json_pack("{s:s%, s:I, s:I}", "productId",
                                               it->product_id, it->product_id_len,
                                               "quantity", (json_int_t)it->quantity, "price",
                                               (json_int_t)it->price)) != 0) {
      json_decref(items);
      return NULL;
    }
  }
  return json_pack("{s:s, s:s%, s:o, s:I, s:s, s:s, s:s%, s:n, s:n, s:s, s:s}", "id", id,
                   "userId", in->user_id, in->user_id_len, "items", items, "totalAmount",
                   (json_int_t)in->total, "currency", in->currency, "status",
                   order_status_name(ORDER_PENDING), "paymentMethod", in->payment_method,
                   in->payment_method_len, "paymentId", "cancelReason", "createdAt", now,
                   "updatedAt", now);
}

int order_store_create(order_store_t *s, const order_create_input_t *in, json_t **order) {
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  int in_sp = 0, ret = ORDER_STORE_ERROR;
  json_t *o = NULL;
  *order = NULL;
  if (in->n_items < ORDER_ITEMS_MIN || in->n_items > ORDER_ITEMS_MAX || in->total < 0)
    return ORDER_STORE_EINVAL;
  if (proto_random_id(ORDER_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for an order id");
    return ORDER_STORE_ERROR;
  }
  proto_time_iso(now);
  /* Built first: once the rows are written, nothing may fail without
   * undoing them. */
  if (!(o = new_order_json(id, in, now))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building order %s", id);
    return ORDER_STORE_ERROR;
  }
  if (step_done(s, STMT_SAVEPOINT, "savepoint") != 0)
    goto out;
  in_sp = 1;
  sqlite3_stmt *st = s->stmt[STMT_INSERT_ORDER];
  if (bind_str(s, st, 1, id) != 0 || bind_text(s, st, 2, in->user_id, in->user_id_len) != 0 ||
      bind_int(s, st, 3, in->total) != 0 || bind_str(s, st, 4, in->currency) != 0 ||
      bind_text(s, st, 5, in->payment_method, in->payment_method_len) != 0 ||
      bind_str(s, st, 6, now) != 0) {
    stmt_done(st);
    goto out;
  }
  if (step_done(s, STMT_INSERT_ORDER, "insert order") != 0)
    goto out;
  st = s->stmt[STMT_INSERT_ITEM];
  for (size_t i = 0; i < in->n_items; i++) {
    const order_item_input_t *it = &in->items[i];
    if (bind_str(s, st, 1, id) != 0 || bind_int(s, st, 2, (int64_t)i) != 0 ||
        bind_text(s, st, 3, it->product_id, it->product_id_len) != 0 ||
        bind_int(s, st, 4, it->quantity) != 0 || bind_int(s, st, 5, it->price) != 0) {
      stmt_done(st);
      goto out;
    }
    if (step_done(s, STMT_INSERT_ITEM, "insert item") != 0)
      goto out;
  }
  if (step_done(s, STMT_RELEASE, "release") != 0)
    goto out;
  in_sp = 0;
  *order = o;
  o = NULL;
  ret = 0;
out:
  /* Undo this order only; SQLite may already have rolled the whole
   * transaction back (then there is no savepoint left). */
  if (in_sp && sqlite3_get_autocommit(s->db) == 0 &&
      step_done(s, STMT_ROLLBACK_TO, "rollback to") == 0)
    step_done(s, STMT_RELEASE, "release");
  json_decref(o);
  return ret;
}

static int order_exists(order_store_t *s, const char *id, size_t id_len) {
  sqlite3_stmt *st = s->stmt[STMT_EXISTS];
  int ret = ORDER_STORE_ERROR;
  if (bind_text(s, st, 1, id, id_len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    ret = ORDER_STORE_OK;
  else if (rc == SQLITE_DONE)
    ret = ORDER_STORE_NOT_FOUND;
  else
    db_fail(s, "order exists", rc);
out:
  stmt_done(st);
  return ret;
}

/* The conditional UPDATE behind both transition functions; now is the
 * updatedAt to write. */
static int transition(order_store_t *s, const char *id, size_t id_len, const char *from_name,
                      const char *to_name, const char *payment_id, const char *cancel_reason,
                      const char *now) {
  sqlite3_stmt *st = s->stmt[STMT_TRANSITION];
  if (bind_text(s, st, 1, id, id_len) != 0 || bind_str(s, st, 2, from_name) != 0 ||
      bind_str(s, st, 3, to_name) != 0 || bind_str(s, st, 4, payment_id) != 0 ||
      bind_str(s, st, 5, cancel_reason) != 0 || bind_str(s, st, 6, now) != 0) {
    stmt_done(st);
    return ORDER_STORE_ERROR;
  }
  if (step_done(s, STMT_TRANSITION, "transition") != 0)
    return ORDER_STORE_ERROR;
  if (sqlite3_changes(s->db) == 0) {
    /* Nothing moved: the order is gone or no longer in `from`. */
    int rc = order_exists(s, id, id_len);
    return rc == ORDER_STORE_OK ? ORDER_STORE_CONFLICT : rc;
  }
  return ORDER_STORE_OK;
}

int order_store_transition(order_store_t *s, const char *id, size_t id_len, int from, int to,
                           const char *payment_id, const char *cancel_reason,
                           json_t **order) {
  char now[PROTO_ISO_TIME_LEN];
  const char *from_name = order_status_name(from), *to_name = order_status_name(to);
  if (order)
    *order = NULL;
  if (!from_name || !to_name)
    return ORDER_STORE_EINVAL;
  proto_time_iso(now);
  int rc = transition(s, id, id_len, from_name, to_name, payment_id, cancel_reason, now);
  if (rc != ORDER_STORE_OK || !order)
    return rc;
  /* The reply reads it back (items and all). */
  rc = order_store_get(s, id, id_len, order);
  return rc == ORDER_STORE_NOT_FOUND ? ORDER_STORE_ERROR : rc;
}

int order_store_move(order_store_t *s, json_t *order, int to, const char *payment_id,
                     const char *cancel_reason) {
  char now[PROTO_ISO_TIME_LEN];
  const char *id = json_string_value(json_object_get(order, "id"));
  const char *from_name = json_string_value(json_object_get(order, "status"));
  const char *to_name = order_status_name(to);
  int from = from_name ? order_status_parse(from_name, strlen(from_name)) : -1;
  json_t *status = NULL, *pid = NULL, *reason = NULL, *updated = NULL;
  int ret = ORDER_STORE_ERROR;
  if (!id || from < 0 || !to_name)
    return ORDER_STORE_EINVAL;
  /* Allocate before writing: once the row has moved, patching the object
   * must not fail (replacing a value of an existing key does not allocate). */
  proto_time_iso(now);
  if (!(status = json_string(to_name)) || !(updated = json_string(now)) ||
      (payment_id && !(pid = json_string(payment_id))) ||
      (cancel_reason && !(reason = json_string(cancel_reason))))
    goto out;
  from_name = order_status_name(from); /* static: the object's value is replaced below */
  ret = transition(s, id, strlen(id), from_name, to_name, payment_id, cancel_reason, now);
  if (ret != ORDER_STORE_OK)
    goto out;
  json_object_set_new(order, "status", status);
  json_object_set_new(order, "updatedAt", updated);
  status = updated = NULL;
  if (pid)
    json_object_set_new(order, "paymentId", pid);
  if (reason)
    json_object_set_new(order, "cancelReason", reason);
  pid = reason = NULL;
out:
  json_decref(status);
  json_decref(updated);
  json_decref(pid);
  json_decref(reason);
  return ret;
}

/* --- reads ------------------------------------------------------------------ */

int order_store_get(order_store_t *s, const char *id, size_t id_len, json_t **order) {
  sqlite3_stmt *st = s->stmt[STMT_GET_ORDER];
  int ret = ORDER_STORE_ERROR;
  *order = NULL;
  if (bind_text(s, st, 1, id, id_len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = ORDER_STORE_NOT_FOUND;
    goto out;
  }
  if (rc != SQLITE_ROW) {
    db_fail(s, "get order", rc);
    goto out;
  }
  if ((*order = row_to_order(s, st)) != NULL)
    ret = 0;
out:
  stmt_done(st);
  return ret;
}

static int count_user_orders(order_store_t *s, const char *user_id, size_t len,
                             int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_COUNT_USER];
  int ret = ORDER_STORE_ERROR;
  if (bind_text(s, st, 1, user_id, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    db_fail(s, "count orders", rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  *total = sqlite3_column_int64(st, 0);
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

int order_store_list_by_user(order_store_t *s, const char *user_id, size_t user_id_len,
                             int64_t page, int64_t limit, json_t **orders, int64_t *total) {
  sqlite3_stmt *st = s->stmt[STMT_LIST_USER];
  json_t *arr = NULL;
  int rc, ret = ORDER_STORE_ERROR;
  *orders = NULL;
  if (page < 1 || limit < 1 || page > ORDER_PAGE_MAX || limit > ORDER_LIMIT_MAX)
    return ORDER_STORE_EINVAL;
  /* COUNT and SELECT are two autocommit reads; an order created between them
   * can make total off by one for this reply, which is acceptable. */
  if (count_user_orders(s, user_id, user_id_len, total) != 0)
    return ORDER_STORE_ERROR;
  if (!(arr = json_array()))
    goto out;
  if (bind_text(s, st, 1, user_id, user_id_len) != 0 || bind_int(s, st, 2, limit) != 0 ||
      bind_int(s, st, 3, (page - 1) * limit) != 0)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    json_t *o = row_to_order(s, st);
    if (!o || json_array_append_new(arr, o) != 0)
      goto out;
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "list orders", rc);
    goto out;
  }
  *orders = arr;
  arr = NULL;
  ret = 0;
out:
  stmt_done(st);
  json_decref(arr);
  return ret;
}

int order_store_ping(order_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  stmt_done(st);
  return ret;
}
