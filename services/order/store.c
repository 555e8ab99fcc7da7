/* store.c: the order database, $DATA_DIR/order.db in SQLite. Owns the schema
 * (orders + order_items, the outbox and the sagas rows, versioned with PRAGMA
 * user_version; libstore's
 * store/db.h opens, configures and migrates the file), one cached prepared
 * statement per query, and the atomic status transition. Transactions are not
 * opened here: writes join the one open on the connection (the commit
 * group's: the caller's svc_write_begin()), else each autocommits. Every
 * SQLite error is logged (here or in libstore).
 */
#include "order.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/log.h"
#include "store/conn.h"
#include "store/outbox.h"
#include "store/stmt.h"

/* The schema version this code writes and understands: one step per version
 * in migrations[] (libstore runs the missing ones at open). */
#define ORDER_SCHEMA_VERSION 5

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
  STMT_SAGA_PUT,
  STMT_SAGA_GET,
  STMT_SAGA_UNFINISHED,
  STMT_SAGA_BEGIN,
  STMT_SAGA_STEP,
  STMT_SAGA_HISTORY,
  STMT_PRICE_ITEM,
  STMT_PRICE_ORDER,
  STMT_WRITE_BEGIN,
  STMT_WRITE_RELEASE,
  STMT_WRITE_ROLLBACK,
  STMT_COUNT_ALL_,
};

#define ORDER_COLUMNS                                                                   \
  "id, user_id, total_amount, currency, status, payment_method, payment_id,"            \
  " cancel_reason, created_at, updated_at"

#define ORDER_SAGA_COLUMNS                                                              \
  "order_id, state, attempts, next_attempt_at, reason, updated_at, deadline_at, request_id"
/* Finished sagas are never resumed: kept for reading, out of the index. */
#define ORDER_SAGA_UNFINISHED_SQL "state <> 'done' AND state <> 'cancelled'"

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
    /* One row per saga, rewritten before each step is sent. The reason,
     * once set by the failure that started compensation, is kept by later
     * writes that pass NULL. */
    [STMT_SAGA_PUT] = "INSERT INTO sagas (order_id, state, attempts, next_attempt_at, reason,"
                      " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                      " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state,"
                      " attempts = excluded.attempts,"
                      " next_attempt_at = excluded.next_attempt_at,"
                      " reason = COALESCE(excluded.reason, reason),"
                      " updated_at = excluded.updated_at",
    [STMT_SAGA_GET] = "SELECT " ORDER_SAGA_COLUMNS " FROM sagas WHERE order_id = ?1",
    /* Keyset pages over the partial index sagas_unfinished: its WHERE is
     * repeated word for word so the planner may use it, and the ORDER BY is
     * the index's order, so there is no sort. */
    [STMT_SAGA_UNFINISHED] = "SELECT " ORDER_SAGA_COLUMNS " FROM sagas"
                             " WHERE " ORDER_SAGA_UNFINISHED_SQL
                             " AND next_attempt_at <= ?1"
                             " AND (next_attempt_at, order_id) > (?2, ?3)"
                             " ORDER BY next_attempt_at, order_id LIMIT ?4",
    /* A saga's first row: what only the start knows (the caller's deadline
     * and request id, carried into every step after a restart too). */
    [STMT_SAGA_BEGIN] = "INSERT INTO sagas (order_id, state, attempts, next_attempt_at, reason,"
                        " updated_at, deadline_at, request_id)"
                        " VALUES (?1, ?2, 0, ?3, NULL, ?4, ?5, ?6)",
    /* Every state written is also appended to the saga's history. */
    [STMT_SAGA_STEP] = "INSERT INTO saga_steps (order_id, state, attempt, reason, at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5)",
    [STMT_SAGA_HISTORY] = "SELECT state, attempt, reason, at FROM saga_steps"
                          " WHERE order_id = ?1 ORDER BY id LIMIT ?2",
    [STMT_PRICE_ITEM] = "UPDATE order_items SET price = ?3 WHERE order_id = ?1 AND line = ?2",
    [STMT_PRICE_ORDER] = "UPDATE orders SET total_amount = ?2, currency = ?3, updated_at = ?4"
                         " WHERE id = ?1 AND status = 'pending'",
    /* One saga transition (order change, saga row, history, outbox event)
     * applies whole or not at all inside the turn's transaction. */
    [STMT_WRITE_BEGIN] = "SAVEPOINT saga_write",
    [STMT_WRITE_RELEASE] = "RELEASE saga_write",
    [STMT_WRITE_ROLLBACK] = "ROLLBACK TO saga_write",
};

struct order_store {
  store_conn_t c;                  /* first: libstore opens and closes it (store/conn.h) */
};

/* --- helpers ------------------------------------------------------------------ */

/* Run a statement that returns no rows. */
static int step_done(order_store_t *s, int which, const char *op) {
  return store_stmt_run(s->c.stmt[which], op);
}

/* One item of an order from a row of (product_id, quantity, price). */
static json_t *row_to_item(sqlite3_stmt *st, void *arg) {
  (void)arg;
  /* price is NULL until the catalogue priced an item the client sent none for. */
  return json_pack("{s:o, s:I, s:o}", "productId", store_column_json(st, 0), "quantity",
                   (json_int_t)sqlite3_column_int64(st, 1), "price",
                   sqlite3_column_type(st, 2) == SQLITE_NULL
                       ? json_null()
                       : json_integer(sqlite3_column_int64(st, 2)));
}

/* The items of an order, in line order. NULL on failure (logged). */
static json_t *load_items(order_store_t *s, const char *id, size_t id_len) {
  sqlite3_stmt *st = s->c.stmt[STMT_GET_ITEMS];
  json_t *arr = NULL;
  if (store_bind_text(st, 1, id, id_len) == 0)
    store_stmt_rows(st, row_to_item, NULL, "load items", "cannot build order items", &arr);
  store_stmt_done(st);
  return arr;
}

/* The order object from a row of ORDER_COLUMNS, with its items. NULL on
 * failure (logged). */
static json_t *row_to_order(sqlite3_stmt *st, void *arg) {
  order_store_t *s = arg;
  const char *id = (const char *)sqlite3_column_text(st, 0);
  size_t id_len = (size_t)sqlite3_column_bytes(st, 0);
  json_t *items = id ? load_items(s, id, id_len) : NULL;
  if (!items)
    return NULL;
  json_t *o = json_pack(
      "{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", store_column_json(st, 0),
      "userId", store_column_json(st, 1), "items", items, "totalAmount",
      (json_int_t)sqlite3_column_int64(st, 2), "currency", store_column_json(st, 3), "status",
      store_column_json(st, 4), "paymentMethod", store_column_json(st, 5), "paymentId",
      store_column_json(st, 6), "cancelReason", store_column_json(st, 7), "createdAt",
      store_column_json(st, 8), "updatedAt", store_column_json(st, 9));
  if (!o)
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build order from row");
  return o;
}

/* --- schema ------------------------------------------------------------------ */

/* migrations[i] brings the schema from version i to i+1, in one transaction. */
static const store_db_migration_t migrations[ORDER_SCHEMA_VERSION] = {
    /* v1. Money is INTEGER minor units, never REAL. Statuses are the names the
     * API uses, so a dump reads like the replies. Items are immutable and
     * clustered by order (WITHOUT ROWID on the primary key). */
    {"CREATE TABLE orders ("
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
     " PRIMARY KEY (order_id, line)) WITHOUT ROWID;"},
    /* v2. orders with status checked by ORs: SQLite builds an ephemeral
     * table for "x IN (...)" in a CHECK on every INSERT and UPDATE (every
     * create and every transition). A CHECK cannot be altered, so the table
     * is rebuilt by SQLite's recipe (foreign keys are off while migrating;
     * order_items' reference to "orders" names the new table once renamed,
     * and libstore checks the keys before the step commits). */
    {"CREATE TABLE orders_v2 ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " user_id TEXT NOT NULL,"
     " total_amount INTEGER NOT NULL CHECK (total_amount >= 0),"
     " currency TEXT NOT NULL,"
     " status TEXT NOT NULL CHECK (status = 'pending' OR status = 'confirmed'"
     "  OR status = 'shipped' OR status = 'delivered' OR status = 'cancelled'),"
     " payment_method TEXT NOT NULL,"
     " payment_id TEXT,"
     " cancel_reason TEXT,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL);"
     "INSERT INTO orders_v2 (id, user_id, total_amount, currency, status, payment_method,"
     " payment_id, cancel_reason, created_at, updated_at)"
     " SELECT id, user_id, total_amount, currency, status, payment_method, payment_id,"
     " cancel_reason, created_at, updated_at FROM orders;"
     "DROP TABLE orders;"
     "ALTER TABLE orders_v2 RENAME TO orders;"
     "CREATE INDEX orders_user_created ON orders (user_id, created_at);"},
    /* v3. The outbox (store/outbox.h): update_order_status's event is written
     * in the update's own transaction and sent from there. */
    STORE_OUTBOX_MIGRATION,
    /* v4. The create-order saga's durable state (saga.c), one row per order,
     * written in the same transaction as the order's change before each step
     * is sent. The state CHECK uses ORs (see v2); next_attempt_at is epoch
     * milliseconds (when a retry is due; compared, never shown). The partial
     * index holds only the sagas a restart resumes, due first. */
    {"CREATE TABLE sagas ("
     " order_id TEXT PRIMARY KEY NOT NULL REFERENCES orders (id),"
     " state TEXT NOT NULL CHECK (state = 'pending' OR state = 'reserving'"
     "  OR state = 'charging' OR state = 'committing' OR state = 'confirming'"
     "  OR state = 'done' OR state = 'compensating_refund'"
     "  OR state = 'compensating_release' OR state = 'cancelling' OR state = 'cancelled'),"
     " attempts INTEGER NOT NULL CHECK (attempts >= 0),"
     " next_attempt_at INTEGER NOT NULL,"
     " reason TEXT,"
     " updated_at TEXT NOT NULL);"
     "CREATE INDEX sagas_unfinished ON sagas (next_attempt_at, order_id)"
     " WHERE " ORDER_SAGA_UNFINISHED_SQL ";"},
    /* v5. The saga drives create_order. orders gains the status
     * 'compensating' (visible while a failed saga undoes its steps; a CHECK
     * cannot be altered: rebuilt as in v2, and the references of order_items
     * and sagas name the new table once renamed). An item's price may be
     * NULL: the client sent none and the catalogue has not priced it yet
     * (order_items rebuilt the same way). sagas keeps the caller's
     * deadline (epoch ms, 0: none) and request id for the steps a restart
     * re-sends, and saga_steps is each saga's history, in write order. */
    {"CREATE TABLE orders_v5 ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " user_id TEXT NOT NULL,"
     " total_amount INTEGER NOT NULL CHECK (total_amount >= 0),"
     " currency TEXT NOT NULL,"
     " status TEXT NOT NULL CHECK (status = 'pending' OR status = 'confirmed'"
     "  OR status = 'shipped' OR status = 'delivered' OR status = 'cancelled'"
     "  OR status = 'compensating'),"
     " payment_method TEXT NOT NULL,"
     " payment_id TEXT,"
     " cancel_reason TEXT,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL);"
     "INSERT INTO orders_v5 (id, user_id, total_amount, currency, status, payment_method,"
     " payment_id, cancel_reason, created_at, updated_at)"
     " SELECT id, user_id, total_amount, currency, status, payment_method, payment_id,"
     " cancel_reason, created_at, updated_at FROM orders;"
     "DROP TABLE orders;"
     "ALTER TABLE orders_v5 RENAME TO orders;"
     "CREATE INDEX orders_user_created ON orders (user_id, created_at);"
     "CREATE TABLE order_items_v5 ("
     " order_id TEXT NOT NULL REFERENCES orders (id),"
     " line INTEGER NOT NULL,"
     " product_id TEXT NOT NULL,"
     " quantity INTEGER NOT NULL CHECK (quantity > 0),"
     " price INTEGER CHECK (price >= 0),"
     " PRIMARY KEY (order_id, line)) WITHOUT ROWID;"
     "INSERT INTO order_items_v5 (order_id, line, product_id, quantity, price)"
     " SELECT order_id, line, product_id, quantity, price FROM order_items;"
     "DROP TABLE order_items;"
     "ALTER TABLE order_items_v5 RENAME TO order_items;"
     "ALTER TABLE sagas ADD COLUMN deadline_at INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE sagas ADD COLUMN request_id TEXT;"
     "CREATE TABLE saga_steps ("
     " id INTEGER PRIMARY KEY,"
     " order_id TEXT NOT NULL REFERENCES orders (id),"
     " state TEXT NOT NULL,"
     " attempt INTEGER NOT NULL,"
     " reason TEXT,"
     " at TEXT NOT NULL);"
     "CREATE INDEX saga_steps_order ON saga_steps (order_id, id);"},
};

/* --- open / close ------------------------------------------------------------ */

/* Foreign keys on: an item always names its order. */
const store_schema_t order_store_schema = {
    .file = ORDER_DB_FILE,
    .flags = STORE_DB_FOREIGN_KEYS,
    .steps = migrations,
    .version = ORDER_SCHEMA_VERSION,
    .sql = stmt_sql,
    .n_stmt = STMT_COUNT_ALL_,
    .size = sizeof(order_store_t),
};

int order_store_open(const char *data_dir, int sync, order_store_t **out) {
  store_conn_t *c = NULL;
  int rc = store_open(data_dir, sync, &order_store_schema, &c);
  *out = (order_store_t *)c; /* c is the struct's first member */
  return rc;
}

sqlite3 *order_store_db(order_store_t *s) {
  return s->c.db;
}

void order_store_close(order_store_t *s) {
  store_close(s ? &s->c : NULL);
}

int order_store_settings(order_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_conn_settings(&s->c, journal_mode, size, sync);
}

/* --- writes ------------------------------------------------------------------ */

/* An item's price until the catalogue prices it: the client's, else null. */
static json_t *item_price_json(const order_item_input_t *it) {
  return it->price == ORDER_PRICE_UNSET ? json_null() : json_integer(it->price);
}

static int bind_price(sqlite3_stmt *st, int col, const order_item_input_t *it) {
  if (it->price != ORDER_PRICE_UNSET)
    return store_bind_i64(st, col, it->price);
  int rc = sqlite3_bind_null(st, col);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "bind null: %s", sqlite3_errstr(rc));
    return -1;
  }
  return 0;
}

/* The reply for a new order, built from what was stored. */
static json_t *new_order_json(const char *id, const order_create_input_t *in, const char *now) {
  json_t *items = json_array();
  if (!items)
    return NULL;
  for (size_t i = 0; i < in->n_items; i++) {
    const order_item_input_t *it = &in->items[i];
    if (json_array_append_new(items, json_pack("{s:s%, s:I, s:o}", "productId",
                                               it->product_id, it->product_id_len,
                                               "quantity", (json_int_t)it->quantity, "price",
                                               item_price_json(it))) != 0) {
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
  int in_sp = 0, ret = STORE_ERROR;
  json_t *o = NULL;
  *order = NULL;
  if (in->n_items < ORDER_ITEMS_MIN || in->n_items > ORDER_ITEMS_MAX || in->total < 0)
    return STORE_EINVAL;
  if (proto_random_id(ORDER_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for an order id");
    return STORE_ERROR;
  }
  proto_time_iso(now);
  /* Built first: once the rows are written, nothing may fail without
   * undoing them. */
  if (!(o = new_order_json(id, in, now))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building order %s", id);
    return STORE_ERROR;
  }
  if (step_done(s, STMT_SAVEPOINT, "savepoint") != 0)
    goto out;
  in_sp = 1;
  sqlite3_stmt *st = s->c.stmt[STMT_INSERT_ORDER];
  if (store_bind_str(st, 1, id) != 0 || store_bind_text(st, 2, in->user_id, in->user_id_len) != 0 ||
      store_bind_i64(st, 3, in->total) != 0 || store_bind_str(st, 4, in->currency) != 0 ||
      store_bind_text(st, 5, in->payment_method, in->payment_method_len) != 0 ||
      store_bind_str(st, 6, now) != 0) {
    store_stmt_done(st);
    goto out;
  }
  if (step_done(s, STMT_INSERT_ORDER, "insert order") != 0)
    goto out;
  st = s->c.stmt[STMT_INSERT_ITEM];
  for (size_t i = 0; i < in->n_items; i++) {
    const order_item_input_t *it = &in->items[i];
    if (store_bind_str(st, 1, id) != 0 || store_bind_i64(st, 2, (int64_t)i) != 0 ||
        store_bind_text(st, 3, it->product_id, it->product_id_len) != 0 ||
        store_bind_i64(st, 4, it->quantity) != 0 || bind_price(st, 5, it) != 0) {
      store_stmt_done(st);
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
  if (in_sp && sqlite3_get_autocommit(s->c.db) == 0 &&
      step_done(s, STMT_ROLLBACK_TO, "rollback to") == 0)
    step_done(s, STMT_RELEASE, "release");
  json_decref(o);
  return ret;
}

static int order_exists(order_store_t *s, const char *id, size_t id_len) {
  return store_stmt_exists(s->c.stmt[STMT_EXISTS], id, id_len, ORDER_STORE_NOT_FOUND,
                           "order exists");
}

/* The conditional UPDATE behind both transition functions; now is the
 * updatedAt to write. */
static int transition(order_store_t *s, const char *id, size_t id_len, const char *from_name,
                      const char *to_name, const char *payment_id, const char *cancel_reason,
                      const char *now) {
  sqlite3_stmt *st = s->c.stmt[STMT_TRANSITION];
  if (store_bind_text(st, 1, id, id_len) != 0 || store_bind_str(st, 2, from_name) != 0 ||
      store_bind_str(st, 3, to_name) != 0 || store_bind_str(st, 4, payment_id) != 0 ||
      store_bind_str(st, 5, cancel_reason) != 0 || store_bind_str(st, 6, now) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  if (step_done(s, STMT_TRANSITION, "transition") != 0)
    return STORE_ERROR;
  if (sqlite3_changes(s->c.db) == 0) {
    /* Nothing moved: the order is gone or no longer in `from`. */
    int rc = order_exists(s, id, id_len);
    return rc == STORE_OK ? ORDER_STORE_CONFLICT : rc;
  }
  return STORE_OK;
}

int order_store_transition(order_store_t *s, const char *id, size_t id_len, int from, int to,
                           const char *payment_id, const char *cancel_reason,
                           json_t **order) {
  char now[PROTO_ISO_TIME_LEN];
  const char *from_name = order_status_name(from), *to_name = order_status_name(to);
  if (order)
    *order = NULL;
  if (!from_name || !to_name)
    return STORE_EINVAL;
  proto_time_iso(now);
  int rc = transition(s, id, id_len, from_name, to_name, payment_id, cancel_reason, now);
  if (rc != STORE_OK || !order)
    return rc;
  /* The reply reads it back (items and all). */
  rc = order_store_get(s, id, id_len, order);
  return rc == ORDER_STORE_NOT_FOUND ? STORE_ERROR : rc;
}

int order_store_move(order_store_t *s, json_t *order, int to, const char *payment_id,
                     const char *cancel_reason) {
  char now[PROTO_ISO_TIME_LEN];
  const char *id = json_string_value(json_object_get(order, "id"));
  const char *from_name = json_string_value(json_object_get(order, "status"));
  const char *to_name = order_status_name(to);
  int from = from_name ? order_status_parse(from_name, strlen(from_name)) : -1;
  json_t *status = NULL, *pid = NULL, *reason = NULL, *updated = NULL;
  int ret = STORE_ERROR;
  if (!id || from < 0 || !to_name)
    return STORE_EINVAL;
  /* Allocate before writing: once the row has moved, patching the object
   * must not fail (replacing a value of an existing key does not allocate). */
  proto_time_iso(now);
  if (!(status = json_string(to_name)) || !(updated = json_string(now)) ||
      (payment_id && !(pid = json_string(payment_id))) ||
      (cancel_reason && !(reason = json_string(cancel_reason))))
    goto out;
  from_name = order_status_name(from); /* static: the object's value is replaced below */
  ret = transition(s, id, strlen(id), from_name, to_name, payment_id, cancel_reason, now);
  if (ret != STORE_OK)
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
  /* row_to_order logs its own failures. */
  return store_stmt_get(s->c.stmt[STMT_GET_ORDER], id, id_len, ORDER_STORE_NOT_FOUND,
                        row_to_order, s, "get order", NULL, order);
}

static int count_user_orders(order_store_t *s, const char *user_id, size_t len,
                             int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_COUNT_USER];
  if (store_bind_text(st, 1, user_id, len) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return store_stmt_count(st, "count orders", total);
}

int order_store_list_by_user(order_store_t *s, const char *user_id, size_t user_id_len,
                             int64_t page, int64_t limit, json_t **orders, int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_LIST_USER];
  int ret = STORE_ERROR;
  *orders = NULL;
  if (page < 1 || limit < 1 || page > ORDER_PAGE_MAX || limit > ORDER_LIMIT_MAX)
    return STORE_EINVAL;
  /* COUNT and SELECT are two autocommit reads; an order created between them
   * can make total off by one for this reply, which is acceptable. */
  if (count_user_orders(s, user_id, user_id_len, total) != 0)
    return STORE_ERROR;
  /* row_to_order logs what it cannot build. */
  if (store_bind_text(st, 1, user_id, user_id_len) == 0 && store_bind_i64(st, 2, limit) == 0 &&
      store_bind_i64(st, 3, (page - 1) * limit) == 0)
    ret = store_stmt_rows(st, row_to_order, s, "list orders", NULL, orders);
  store_stmt_done(st);
  return ret;
}

int order_store_ping(order_store_t *s) {
  return store_stmt_ping(s->c.stmt[STMT_PING]);
}

/* --- sagas ------------------------------------------------------------------ */

/* Append a state to the saga's history (saga_steps). */
static int saga_step(order_store_t *s, const char *order_id, size_t id_len, const char *state,
                     int attempt, const char *reason, const char *now) {
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_STEP];
  if (store_bind_text(st, 1, order_id, id_len) != 0 || store_bind_str(st, 2, state) != 0 ||
      store_bind_i64(st, 3, attempt) != 0 || store_bind_str(st, 4, reason) != 0 ||
      store_bind_str(st, 5, now) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return step_done(s, STMT_SAGA_STEP, "saga step");
}

int order_store_saga_put(order_store_t *s, const char *order_id, size_t id_len, int state,
                         int attempts, int64_t next_attempt_at_ms, const char *reason) {
  char now[PROTO_ISO_TIME_LEN];
  const char *name = order_saga_state_name(state);
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_PUT];
  if (!name || attempts < 0 || id_len == 0 || id_len > ORDER_ID_MAX_BYTES ||
      (reason && strlen(reason) >= ORDER_REASON_MAX_BYTES))
    return STORE_EINVAL;
  proto_time_iso(now);
  if (store_bind_text(st, 1, order_id, id_len) != 0 || store_bind_str(st, 2, name) != 0 ||
      store_bind_i64(st, 3, attempts) != 0 || store_bind_i64(st, 4, next_attempt_at_ms) != 0 ||
      store_bind_str(st, 5, reason) != 0 || store_bind_str(st, 6, now) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  if (step_done(s, STMT_SAGA_PUT, "put saga") != 0)
    return STORE_ERROR;
  return saga_step(s, order_id, id_len, name, attempts, reason, now);
}

int order_store_saga_begin(order_store_t *s, const char *order_id, size_t id_len, int state,
                           int64_t deadline_ms, const char *request_id) {
  char now[PROTO_ISO_TIME_LEN];
  const char *name = order_saga_state_name(state);
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_BEGIN];
  if (!name || id_len == 0 || id_len > ORDER_ID_MAX_BYTES || deadline_ms < 0 ||
      (request_id && strlen(request_id) >= PROTO_ID_MAX))
    return STORE_EINVAL;
  proto_time_iso(now);
  if (store_bind_text(st, 1, order_id, id_len) != 0 || store_bind_str(st, 2, name) != 0 ||
      store_bind_i64(st, 3, order_wall_ms()) != 0 || store_bind_str(st, 4, now) != 0 ||
      store_bind_i64(st, 5, deadline_ms) != 0 || store_bind_str(st, 6, request_id) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  if (step_done(s, STMT_SAGA_BEGIN, "begin saga") != 0)
    return STORE_ERROR;
  return saga_step(s, order_id, id_len, name, 0, NULL, now);
}

/* A row of ORDER_SAGA_COLUMNS into *out. STORE_ERROR when a column is not
 * what this schema writes (logged). */
static int row_to_saga(sqlite3_stmt *st, order_saga_row_t *out) {
  const char *id = (const char *)sqlite3_column_text(st, 0);
  const char *state = (const char *)sqlite3_column_text(st, 1);
  const char *reason = (const char *)sqlite3_column_text(st, 4);
  const char *updated = (const char *)sqlite3_column_text(st, 5);
  int64_t attempts = sqlite3_column_int64(st, 2);
  memset(out, 0, sizeof(*out));
  out->state = state ? order_saga_state_parse(state, (size_t)sqlite3_column_bytes(st, 1)) : -1;
  if (!id || (size_t)sqlite3_column_bytes(st, 0) > ORDER_ID_MAX_BYTES || out->state < 0 ||
      attempts < 0 || attempts > INT32_MAX || !updated) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "unreadable saga row");
    return STORE_ERROR;
  }
  snprintf(out->order_id, sizeof(out->order_id), "%s", id);
  out->attempts = (int)attempts;
  out->next_attempt_at_ms = sqlite3_column_int64(st, 3);
  out->has_reason = reason != NULL;
  snprintf(out->reason, sizeof(out->reason), "%s", reason ? reason : "");
  snprintf(out->updated_at, sizeof(out->updated_at), "%s", updated);
  out->deadline_ms = sqlite3_column_int64(st, 6);
  const char *rid = (const char *)sqlite3_column_text(st, 7);
  snprintf(out->request_id, sizeof(out->request_id), "%s", rid ? rid : "");
  return STORE_OK;
}

int order_store_saga_get(order_store_t *s, const char *order_id, size_t id_len,
                         order_saga_row_t *out) {
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_GET];
  int ret = STORE_ERROR;
  if (store_bind_text(st, 1, order_id, id_len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    ret = ORDER_STORE_NOT_FOUND;
  else if (rc != SQLITE_ROW)
    store_fail(s->c.db, "get saga", rc);
  else
    ret = row_to_saga(st, out);
out:
  store_stmt_done(st);
  return ret;
}

int order_store_saga_unfinished(order_store_t *s, int64_t due_by_ms,
                                const order_saga_row_t *after, order_saga_row_t *rows,
                                size_t max, size_t *n) {
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_UNFINISHED];
  int ret = STORE_ERROR, rc;
  *n = 0;
  if (max == 0 || max > ORDER_SAGA_PAGE_MAX)
    return STORE_EINVAL;
  /* The first page starts below every key: (INT64_MIN, ""). */
  if (store_bind_i64(st, 1, due_by_ms) != 0 ||
      store_bind_i64(st, 2, after ? after->next_attempt_at_ms : INT64_MIN) != 0 ||
      store_bind_str(st, 3, after ? after->order_id : "") != 0 ||
      store_bind_i64(st, 4, (int64_t)max) != 0)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (row_to_saga(st, &rows[*n]) != STORE_OK)
      goto out;
    (*n)++;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "list unfinished sagas", rc);
    goto out;
  }
  ret = STORE_OK;
out:
  if (ret != STORE_OK)
    *n = 0;
  store_stmt_done(st);
  return ret;
}

/* One history entry from a row of (state, attempt, reason, at). */
static json_t *row_to_step(sqlite3_stmt *st, void *arg) {
  (void)arg;
  json_t *e = json_pack("{s:o, s:I, s:o}", "state", store_column_json(st, 0), "attempt",
                        (json_int_t)sqlite3_column_int64(st, 1), "at",
                        store_column_json(st, 3));
  if (e && sqlite3_column_type(st, 2) != SQLITE_NULL &&
      json_object_set_new(e, "reason", store_column_json(st, 2)) != 0) {
    json_decref(e);
    e = NULL;
  }
  return e;
}

int order_store_saga_history(order_store_t *s, const char *order_id, size_t id_len,
                             json_t **history) {
  sqlite3_stmt *st = s->c.stmt[STMT_SAGA_HISTORY];
  int ret = STORE_ERROR;
  *history = NULL;
  if (store_bind_text(st, 1, order_id, id_len) == 0 &&
      store_bind_i64(st, 2, ORDER_SAGA_HISTORY_MAX) == 0)
    ret = store_stmt_rows(st, row_to_step, NULL, "saga history", "cannot build saga history",
                          history);
  store_stmt_done(st);
  return ret;
}

/* --- atomic groups of writes ------------------------------------------------ */

int order_store_atomic_begin(order_store_t *s) {
  return step_done(s, STMT_WRITE_BEGIN, "savepoint");
}

int order_store_atomic_end(order_store_t *s, int keep) {
  if (keep)
    return step_done(s, STMT_WRITE_RELEASE, "release");
  /* SQLite may already have rolled the whole transaction back (then there
   * is no savepoint left to roll back to). */
  if (sqlite3_get_autocommit(s->c.db) == 0 && step_done(s, STMT_WRITE_ROLLBACK, "rollback to") == 0)
    step_done(s, STMT_WRITE_RELEASE, "release");
  return STORE_OK;
}

/* --- prices ------------------------------------------------------------------ */

int order_store_price(order_store_t *s, json_t *order, const int64_t *prices, size_t n,
                      const char *currency) {
  char now[PROTO_ISO_TIME_LEN];
  const char *id = json_string_value(json_object_get(order, "id"));
  json_t *items = json_object_get(order, "items");
  int64_t total = 0;
  if (!id || !json_is_array(items) || json_array_size(items) != n || !currency ||
      strlen(currency) != 3)
    return STORE_EINVAL;
  for (size_t i = 0; i < n; i++) {
    json_int_t q = json_integer_value(json_object_get(json_array_get(items, i), "quantity"));
    if (order_total_add(&total, q, prices[i]) != 0)
      return STORE_EINVAL;
  }
  /* Every value the object gets is made first: once rows changed, patching
   * it must not fail (replacing a key's value does not allocate). */
  json_t *vals[ORDER_ITEMS_MAX];
  json_t *jtotal = json_integer(total), *jcur = json_string(currency), *jnow = NULL;
  size_t made = 0;
  int ret = STORE_ERROR;
  proto_time_iso(now);
  jnow = json_string(now);
  for (; made < n && made < ORDER_ITEMS_MAX; made++)
    if (!(vals[made] = json_integer(prices[made])))
      break;
  if (!jtotal || !jcur || !jnow || made != n)
    goto out;
  sqlite3_stmt *st = s->c.stmt[STMT_PRICE_ORDER];
  if (store_bind_str(st, 1, id) != 0 || store_bind_i64(st, 2, total) != 0 ||
      store_bind_str(st, 3, currency) != 0 || store_bind_str(st, 4, now) != 0) {
    store_stmt_done(st);
    goto out;
  }
  if (step_done(s, STMT_PRICE_ORDER, "price order") != 0)
    goto out;
  if (sqlite3_changes(s->c.db) == 0) {
    ret = ORDER_STORE_CONFLICT; /* no longer pending */
    goto out;
  }
  st = s->c.stmt[STMT_PRICE_ITEM];
  for (size_t i = 0; i < n; i++) {
    if (store_bind_str(st, 1, id) != 0 || store_bind_i64(st, 2, (int64_t)i) != 0 ||
        store_bind_i64(st, 3, prices[i]) != 0) {
      store_stmt_done(st);
      goto out;
    }
    if (step_done(s, STMT_PRICE_ITEM, "price item") != 0)
      goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_object_set_new(json_array_get(items, i), "price", vals[i]);
    vals[i] = NULL;
  }
  json_object_set_new(order, "totalAmount", jtotal);
  json_object_set_new(order, "currency", jcur);
  json_object_set_new(order, "updatedAt", jnow);
  jtotal = jcur = jnow = NULL;
  ret = STORE_OK;
out:
  for (size_t i = 0; i < made; i++)
    json_decref(vals[i]);
  json_decref(jtotal);
  json_decref(jcur);
  json_decref(jnow);
  return ret;
}
