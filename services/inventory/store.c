/* store.c: the inventory database, $DATA_DIR/inventory.db in SQLite: the
 * schema (versioned with PRAGMA user_version; libstore opens, configures and
 * migrates the file), the cached statements, and the product queries. The
 * reservations live in reservation.c on the same connection. Writes run on
 * the connection as they are: inside the turn's transaction when the caller
 * opened one (svc_write_begin), else each autocommits.
 */
#include "store_priv.h"

#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "store/conn.h"
#include "store/stmt.h"

/* The schema version this code writes and understands: one step per version
 * in migrations[]. */
#define INVENTORY_SCHEMA_VERSION 1

#define PRODUCT_COLS "id, name, price, currency, stock, reserved, created_at, updated_at"

static const char *const stmt_sql[STMT_COUNT_ALL_] = {
    [STMT_P_INSERT] = "INSERT INTO products (" PRODUCT_COLS ")"
                      " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
    [STMT_P_GET] = "SELECT " PRODUCT_COLS " FROM products WHERE id = ?1",
    /* OFFSET walks the skipped rows of products_created: fine at catalogue
     * sizes; keyset pagination (created_at, id) > (?, ?) if deep pages matter. */
    [STMT_P_LIST] = "SELECT " PRODUCT_COLS " FROM products ORDER BY created_at, id"
                    " LIMIT ?1 OFFSET ?2",
    [STMT_P_COUNT] = "SELECT COUNT(*) FROM products",
    [STMT_P_RESTOCK] = "UPDATE products SET stock = stock + ?2, updated_at = ?3"
                       " WHERE id = ?1 AND stock + ?2 <= ?4 RETURNING " PRODUCT_COLS,
    [STMT_P_EXISTS] = "SELECT 1 FROM products WHERE id = ?1",
    [STMT_P_PING] = "SELECT 1 FROM products LIMIT 1",
    /* The availability test and the hold in one statement: no window between
     * reading `available` and taking from it. */
    [STMT_P_TAKE] = "UPDATE products SET reserved = reserved + ?2, updated_at = ?3"
                    " WHERE id = ?1 AND stock - reserved >= ?2 RETURNING price, currency",
    [STMT_P_AVAILABLE] = "SELECT stock - reserved FROM products WHERE id = ?1",
    [STMT_P_GIVE_BACK] = "UPDATE products SET reserved = reserved - ?2, updated_at = ?3"
                         " WHERE id = ?1",
    [STMT_P_SELL] = "UPDATE products SET stock = stock - ?2, reserved = reserved - ?2,"
                    " updated_at = ?3 WHERE id = ?1",
    [STMT_R_GET] = "SELECT state, expires_at, result FROM reservations WHERE order_id = ?1",
    /* The primary key's order (BINARY: bytewise, then shorter first), the
     * same order as the validated item set. */
    [STMT_R_ITEMS] = "SELECT product_id, quantity FROM reservation_items WHERE order_id = ?1"
                     " ORDER BY product_id",
    [STMT_R_INSERT] = "INSERT INTO reservations (order_id, state, expires_at, created_at,"
                      " updated_at, result) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    [STMT_R_ITEM_INSERT] = "INSERT INTO reservation_items (order_id, product_id, quantity,"
                           " unit_price) VALUES (?1, ?2, ?3, ?4)",
    [STMT_R_SET_STATE] = "UPDATE reservations SET state = ?2, updated_at = ?3"
                         " WHERE order_id = ?1",
    [STMT_R_EXPIRED] = "SELECT order_id FROM reservations WHERE state = 'reserved'"
                       " AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
    [STMT_SP_BEGIN] = "SAVEPOINT inventory_op",
    [STMT_SP_ROLLBACK] = "ROLLBACK TO inventory_op",
    [STMT_SP_RELEASE] = "RELEASE inventory_op",
};

/* --- schema ------------------------------------------------------------------ */

/* migrations[i] brings the schema from version i to i+1, in one transaction.
 * Statuses are checked with ORs, as in the other services' v2 schemas. */
static const store_db_migration_t migrations[INVENTORY_SCHEMA_VERSION] = {
    /* v1. stock is on hand (reserved units included), so reserved <= stock;
     * expires_at is Unix ms for the sweeper's range scan (a partial index:
     * only open reservations ever expire); result is the first reply of a
     * reservation, replayed to a retry. */
    {"CREATE TABLE products ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " name TEXT NOT NULL,"
     " price INTEGER NOT NULL CHECK (price >= 0),"
     " currency TEXT NOT NULL,"
     " stock INTEGER NOT NULL,"
     " reserved INTEGER NOT NULL DEFAULT 0,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " CHECK (stock >= 0 AND reserved >= 0 AND reserved <= stock));"
     "CREATE INDEX products_created ON products (created_at, id);"
     "CREATE TABLE reservations ("
     " order_id TEXT PRIMARY KEY NOT NULL,"
     " state TEXT NOT NULL"
     "  CHECK (state = 'reserved' OR state = 'committed' OR state = 'released'),"
     " expires_at INTEGER NOT NULL,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " result TEXT);"
     "CREATE INDEX reservations_expiry ON reservations (expires_at)"
     " WHERE state = 'reserved';"
     "CREATE TABLE reservation_items ("
     " order_id TEXT NOT NULL REFERENCES reservations (order_id),"
     " product_id TEXT NOT NULL REFERENCES products (id),"
     " quantity INTEGER NOT NULL CHECK (quantity > 0),"
     " unit_price INTEGER NOT NULL CHECK (unit_price >= 0),"
     " PRIMARY KEY (order_id, product_id)) WITHOUT ROWID;"},
};

/* --- helpers (shared with reservation.c) ------------------------------------- */

int inventory__savepoint_begin(inventory_store_t *s) {
  return store_stmt_run(s->c.stmt[STMT_SP_BEGIN], "savepoint");
}

int inventory__savepoint_end(inventory_store_t *s, int ok) {
  int ret = 0;
  if (!ok && store_stmt_run(s->c.stmt[STMT_SP_ROLLBACK], "rollback to savepoint") != 0)
    ret = STORE_ERROR;
  if (store_stmt_run(s->c.stmt[STMT_SP_RELEASE], "release savepoint") != 0)
    ret = STORE_ERROR;
  return ret;
}

/* The product object from a row of PRODUCT_COLS. NULL on ENOMEM. */
static json_t *row_to_product(sqlite3_stmt *st, void *arg) {
  (void)arg;
  json_int_t stock = sqlite3_column_int64(st, 4), reserved = sqlite3_column_int64(st, 5);
  return json_pack("{s:o, s:o, s:I, s:o, s:I, s:I, s:I, s:o, s:o}", "id", store_column_text(st, 0),
                   "name", store_column_text(st, 1), "price",
                   (json_int_t)sqlite3_column_int64(st, 2), "currency", store_column_text(st, 3),
                   "stock", stock, "reserved", reserved, "available", stock - reserved, "createdAt",
                   store_column_text(st, 6), "updatedAt", store_column_text(st, 7));
}

/* --- open / close ------------------------------------------------------------ */

/* Foreign keys on: an item always names a reservation and a product. */
const store_schema_t inventory_store_schema = {
    .file = INVENTORY_DB_FILE,
    .flags = STORE_DB_FOREIGN_KEYS,
    .steps = migrations,
    .version = INVENTORY_SCHEMA_VERSION,
    .sql = stmt_sql,
    .n_stmt = STMT_COUNT_ALL_,
    .size = sizeof(inventory_store_t),
};

int inventory_store_open(const char *data_dir, int sync, inventory_store_t **out) {
  store_conn_t *c = NULL;
  int rc = store_open(data_dir, sync, &inventory_store_schema, &c);
  *out = (inventory_store_t *)c; /* c is the struct's first member */
  return rc;
}

void inventory_store_close(inventory_store_t *s) {
  store_close(s ? &s->c : NULL);
}

sqlite3 *inventory_store_db(inventory_store_t *s) {
  return s->c.db;
}

int inventory_store_ping(inventory_store_t *s) {
  return store_stmt_ping(s->c.stmt[STMT_P_PING]);
}

/* --- products ------------------------------------------------------------------ */

int inventory_store_product_create(inventory_store_t *s, const inventory_product_input_t *in,
                                   int64_t now_ms, json_t **product) {
  sqlite3_stmt *st = s->c.stmt[STMT_P_INSERT];
  char idbuf[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  const char *id = in->id;
  size_t id_len = in->id_len;
  int ret = STORE_ERROR;
  *product = NULL;
  if (!id) {
    if (proto_random_id(INVENTORY_PRODUCT_ID_PREFIX, idbuf, sizeof(idbuf)) != 0) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a product id");
      return STORE_ERROR;
    }
    id = idbuf;
    id_len = strlen(idbuf);
  }
  inventory_time_iso(now_ms, now);
  if (store_bind_text(st, 1, id, id_len) != 0 ||
      store_bind_text(st, 2, in->name, in->name_len) != 0 ||
      store_bind_i64(st, 3, in->price) != 0 ||
      store_bind_text(st, 4, in->currency, strlen(in->currency)) != 0 ||
      store_bind_i64(st, 5, in->stock) != 0 ||
      store_bind_text(st, 6, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
    ret = INVENTORY_STORE_EXISTS;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "insert product", rc);
    goto out;
  }
  /* Built from what we stored rather than read back. */
  *product = json_pack("{s:s%, s:s%, s:I, s:s, s:I, s:I, s:I, s:s, s:s}", "id", id, id_len,
                       "name", in->name, in->name_len, "price", (json_int_t)in->price,
                       "currency", in->currency, "stock", (json_int_t)in->stock, "reserved",
                       (json_int_t)0, "available", (json_int_t)in->stock, "createdAt", now,
                       "updatedAt", now);
  if (!*product) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building a product");
    goto out;
  }
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

int inventory_store_product_get(inventory_store_t *s, const char *id, size_t id_len,
                                json_t **product) {
  return store_stmt_get(s->c.stmt[STMT_P_GET], id, id_len, INVENTORY_STORE_NOT_FOUND,
                        row_to_product, NULL, "get product", "cannot build product from row",
                        product);
}

int inventory_store_product_list(inventory_store_t *s, int64_t page, int64_t limit,
                                 json_t **products, int64_t *total) {
  sqlite3_stmt *st = s->c.stmt[STMT_P_LIST], *cnt = s->c.stmt[STMT_P_COUNT];
  int ret = STORE_ERROR;
  *products = NULL;
  if (page < 1 || limit < 1 || page > INVENTORY_PAGE_MAX || limit > INVENTORY_LIMIT_MAX)
    return STORE_EINVAL;
  /* Two reads: an insert between them can make total off by one for this
   * reply, which is acceptable. */
  if (store_stmt_count(cnt, "count products", total) != 0)
    return STORE_ERROR;
  if (store_bind_i64(st, 1, limit) == 0 && store_bind_i64(st, 2, (page - 1) * limit) == 0)
    ret = store_stmt_rows(st, row_to_product, NULL, "list products",
                          "cannot build product list", products);
  store_stmt_done(st);
  return ret;
}

static int product_exists(inventory_store_t *s, const char *id, size_t id_len) {
  return store_stmt_exists(s->c.stmt[STMT_P_EXISTS], id, id_len, INVENTORY_STORE_NOT_FOUND,
                           "find product");
}

int inventory_store_restock(inventory_store_t *s, const char *id, size_t id_len,
                            int64_t quantity, int64_t now_ms, json_t **product) {
  sqlite3_stmt *st = s->c.stmt[STMT_P_RESTOCK];
  char now[PROTO_ISO_TIME_LEN];
  int ret = STORE_ERROR;
  *product = NULL;
  inventory_time_iso(now_ms, now);
  if (store_bind_text(st, 1, id, id_len) != 0 ||
      store_bind_i64(st, 2, quantity) != 0 ||
      store_bind_text(st, 3, now, strlen(now)) != 0 ||
      store_bind_i64(st, 4, INVENTORY_STOCK_MAX) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    /* No row: no such product, or the stock would pass the limit. */
    store_stmt_done(st);
    rc = product_exists(s, id, id_len);
    return rc == 0 ? INVENTORY_STORE_STOCK_LIMIT : rc;
  }
  if (rc != SQLITE_ROW) {
    store_fail(s->c.db, "restock", rc);
    goto out;
  }
  if (!(*product = row_to_product(st, NULL))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build product from row");
    goto out;
  }
  ret = 0;
out:
  /* The reset runs the RETURNING statement to its end. */
  store_stmt_done(st);
  return ret;
}
