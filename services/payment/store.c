/* store.c: the payment database, $DATA_DIR/payment.db in SQLite. Owns the
 * schema (versioned with PRAGMA user_version; libstore's store/db.h opens,
 * configures and migrates the file), one cached prepared
 * statement per query, and the idempotency rule: one payment per orderId,
 * enforced by a UNIQUE index, and the voids (an order the saga gave up on
 * before its charge landed: the charge is then declined, never made). Writes
 * run on the connection as they are:
 * inside the turn's transaction when the caller opened one (svc_write_begin),
 * else each autocommits. Every SQLite error is logged here.
 */
#include "payment.h"

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
#define PAYMENT_SCHEMA_VERSION 4
/* An internal outcome of insert_payment(): the orderId is already recorded.
 * Below every code payment.h names. */
#define STORE_DUPLICATE_ORDER_ (STORE_RC_SERVICE - 16)

#define PAYMENT_COLUMNS                                                            \
  "id, order_id, user_id, amount, currency, payment_method, status, reason,"      \
  " created_at, updated_at, refunded_at"

enum {
  STMT_INSERT,
  STMT_GET,
  STMT_GET_BY_ORDER,
  STMT_REFUND,
  STMT_PING,
  STMT_VOID_INSERT,
  STMT_VOID_GET,
  STMT_VOID_EXISTS,
  STMT_COUNT_ALL_,
};

static const char *const stmt_sql[STMT_COUNT_ALL_] = {
    [STMT_INSERT] = "INSERT INTO payments (" PAYMENT_COLUMNS ")"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, NULL)",
    [STMT_GET] = "SELECT " PAYMENT_COLUMNS " FROM payments WHERE id = ?1",
    [STMT_GET_BY_ORDER] = "SELECT " PAYMENT_COLUMNS " FROM payments WHERE order_id = ?1",
    /* The WHERE makes the transition atomic and one-way: only a succeeded
     * payment becomes refunded, and only once (sqlite3_changes tells). */
    [STMT_REFUND] = "UPDATE payments SET status = 'refunded', refunded_at = ?2,"
                    " updated_at = ?2 WHERE order_id = ?1 AND status = 'succeeded'",
    [STMT_PING] = "SELECT 1 FROM payments LIMIT 1",
    /* DO NOTHING: a repeated void keeps the first one's time (idempotent). */
    [STMT_VOID_INSERT] = "INSERT INTO voids (order_id, voided_at) VALUES (?1, ?2)"
                         " ON CONFLICT (order_id) DO NOTHING",
    [STMT_VOID_GET] = "SELECT order_id, voided_at FROM voids WHERE order_id = ?1",
    /* A key lookup, made only for an order with no payment yet. */
    [STMT_VOID_EXISTS] = "SELECT 1 FROM voids WHERE order_id = ?1",
};

struct payment_store {
  store_conn_t c;                  /* first: libstore opens and closes it (store/conn.h) */
};

/* --- helpers ------------------------------------------------------------------ */

/* amount is the one INTEGER column a payment reads back as a number. */
static json_t *column_json(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_INTEGER)
    return json_integer((json_int_t)sqlite3_column_int64(st, col));
  return store_column_json(st, col);
}

/* The payment object from a row of PAYMENT_COLUMNS, in that order. NULL on
 * ENOMEM or text that is not UTF-8. */
static json_t *row_to_payment(sqlite3_stmt *st, void *arg) {
  (void)arg;
  static const char *const keys[] = {"id",        "orderId",   "userId",     "amount",
                                     "currency",  "paymentMethod", "status", "reason",
                                     "createdAt", "updatedAt", "refundedAt"};
  json_t *p = json_object();
  if (!p)
    return NULL;
  for (int i = 0; i < (int)(sizeof(keys) / sizeof(keys[0])); i++) {
    if (json_object_set_new(p, keys[i], column_json(st, i)) != 0) {
      json_decref(p);
      return NULL;
    }
  }
  return p;
}

/* --- schema ------------------------------------------------------------------ */

/* migrations[i] brings the schema from version i to i+1, in one transaction. */
static const store_db_migration_t migrations[PAYMENT_SCHEMA_VERSION] = {
    /* v1. The UNIQUE index on order_id is the idempotency guarantee: whatever the
     * code above it does, an order can be charged into this table once. The
     * CHECKs keep a bug from recording money or states we cannot read back. */
    {"CREATE TABLE payments ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " order_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount >= 0),"
     " currency TEXT NOT NULL CHECK (length(currency) = 3),"
     " payment_method TEXT NOT NULL,"
     " status TEXT NOT NULL CHECK (status IN ('succeeded', 'declined', 'refunded')),"
     " reason TEXT,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " refunded_at TEXT);"
     "CREATE UNIQUE INDEX payments_order ON payments (order_id);"},
    /* v2. The same table with status checked by ORs: SQLite builds an
     * ephemeral table for "x IN (...)" in a CHECK on every INSERT and UPDATE.
     * A CHECK cannot be altered, so the table is rebuilt by SQLite's recipe:
     * new table, copy, drop, rename, index. */
    {"CREATE TABLE payments_v2 ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " order_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount >= 0),"
     " currency TEXT NOT NULL CHECK (length(currency) = 3),"
     " payment_method TEXT NOT NULL,"
     " status TEXT NOT NULL"
     "  CHECK (status = 'succeeded' OR status = 'declined' OR status = 'refunded'),"
     " reason TEXT,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " refunded_at TEXT);"
     "INSERT INTO payments_v2 (id, order_id, user_id, amount, currency, payment_method,"
     " status, reason, created_at, updated_at, refunded_at)"
     " SELECT id, order_id, user_id, amount, currency, payment_method, status, reason,"
     " created_at, updated_at, refunded_at FROM payments;"
     "DROP TABLE payments;"
     "ALTER TABLE payments_v2 RENAME TO payments;"
     "CREATE UNIQUE INDEX payments_order ON payments (order_id);"},
    /* v3. The outbox (store/outbox.h): a payment's event is written in the
     * payment's own transaction and sent from there, so a crash between the
     * COMMIT and the PUBLISH loses no event. */
    STORE_OUTBOX_MIGRATION,
    /* v4. Voids: refund_payment {voidIfMissing:true} of an order with no
     * payment. Apart from payments, whose every column is a charge's (NOT
     * NULL, CHECKed): a void has no user, amount or method. Keyed by order
     * (WITHOUT ROWID: the key is the row), so the check a new payment makes
     * is one key lookup. */
    {"CREATE TABLE voids ("
     " order_id TEXT PRIMARY KEY NOT NULL,"
     " voided_at TEXT NOT NULL"
     ") WITHOUT ROWID;"},
};

/* --- open / close ------------------------------------------------------------ */

/* synchronous: FULL fsyncs the WAL at every commit; NORMAL only at
 * checkpoints (a committed payment can be lost, and a retry would then charge
 * again: keep FULL for money). */
const store_schema_t payment_store_schema = {
    .file = PAYMENT_DB_FILE,
    .steps = migrations,
    .version = PAYMENT_SCHEMA_VERSION,
    .sql = stmt_sql,
    .n_stmt = STMT_COUNT_ALL_,
    .size = sizeof(payment_store_t),
};

int payment_store_open(const char *data_dir, int sync, payment_store_t **out) {
  store_conn_t *c = NULL;
  int rc = store_open(data_dir, sync, &payment_store_schema, &c);
  *out = (payment_store_t *)c; /* c is the struct's first member */
  return rc;
}

void payment_store_close(payment_store_t *s) {
  store_close(s ? &s->c : NULL);
}

sqlite3 *payment_store_db(payment_store_t *s) {
  return s->c.db;
}

int payment_store_settings(payment_store_t *s, char *journal_mode, size_t size, int *sync) {
  return store_conn_settings(&s->c, journal_mode, size, sync);
}

/* --- queries ------------------------------------------------------------------ */

/* One payment by the key bound to ?1 of a SELECT PAYMENT_COLUMNS statement. */
static int get_one(payment_store_t *s, int which, const char *key, size_t len,
                   json_t **payment) {
  return store_stmt_get(s->c.stmt[which], key, len, PAYMENT_STORE_NOT_FOUND, row_to_payment, NULL,
                        which == STMT_GET ? "get payment" : "get payment by order",
                        "cannot build payment from row", payment);
}

int payment_store_get(payment_store_t *s, const char *id, size_t len, json_t **payment) {
  return get_one(s, STMT_GET, id, len, payment);
}

int payment_store_get_by_order(payment_store_t *s, const char *order_id, size_t len,
                               json_t **payment) {
  return get_one(s, STMT_GET_BY_ORDER, order_id, len, payment);
}

static int str_equal(const json_t *v, const char *s, size_t len) {
  return json_is_string(v) && json_string_length(v) == len &&
         memcmp(json_string_value(v), s, len) == 0;
}

/* Which of the fields that define a charge differ between the recorded
 * payment and a retry. The method is not one of them: a retry of a declined
 * order with another card still gets the first answer (the order service has
 * already cancelled that order); a new attempt is a new order. */
static unsigned compare(const json_t *p, const payment_process_input_t *in) {
  unsigned m = 0;
  if (!str_equal(json_object_get(p, "userId"), in->user_id, in->user_id_len))
    m |= PAYMENT_MISMATCH_USER;
  const json_t *amount = json_object_get(p, "amount");
  if (!json_is_integer(amount) || json_integer_value(amount) != (json_int_t)in->amount)
    m |= PAYMENT_MISMATCH_AMOUNT;
  if (!str_equal(json_object_get(p, "currency"), in->currency, strlen(in->currency)))
    m |= PAYMENT_MISMATCH_CURRENCY;
  return m;
}

/* The recorded payment answers a retry, unless the retry asks for another charge. */
static int settle_existing(json_t *p, const payment_process_input_t *in, json_t **payment,
                           unsigned *mismatch) {
  *mismatch = compare(p, in);
  if (*mismatch) {
    json_decref(p);
    return PAYMENT_STORE_MISMATCH;
  }
  *payment = p;
  return 0;
}

/* The payment object of a row about to be inserted, built from the very
 * values bound to the INSERT, key for key and type for type what
 * row_to_payment() reads back (TEXT columns hold the bound text unchanged,
 * amount the bound integer), so the first reply equals every retry's reply
 * without a SELECT after the write. NULL on ENOMEM. */
static json_t *new_payment(const char *id, const payment_process_input_t *in,
                           const payment_charge_t *c, const char *now) {
  return json_pack("{s:s, s:s%, s:s%, s:I, s:s, s:s%, s:s, s:s?, s:s, s:s, s:n}", "id", id,
                   "orderId", in->order_id, in->order_id_len, "userId", in->user_id,
                   in->user_id_len, "amount", (json_int_t)in->amount, "currency", in->currency,
                   "paymentMethod", in->method, in->method_len, "status",
                   payment_status_name(c->status), "reason", c->reason, "createdAt", now,
                   "updatedAt", now, "refundedAt");
}

static int insert_payment(payment_store_t *s, const payment_process_input_t *in,
                          const payment_charge_t *c, const char *id, const char *now) {
  sqlite3_stmt *st = s->c.stmt[STMT_INSERT];
  const char *status = payment_status_name(c->status);
  int rc, ret = STORE_ERROR;
  if (store_bind_text(st, 1, id, strlen(id)) != 0 ||
      store_bind_text(st, 2, in->order_id, in->order_id_len) != 0 ||
      store_bind_text(st, 3, in->user_id, in->user_id_len) != 0 ||
      store_bind_text(st, 5, in->currency, strlen(in->currency)) != 0 ||
      store_bind_text(st, 6, in->method, in->method_len) != 0 ||
      store_bind_text(st, 7, status, strlen(status)) != 0 ||
      store_bind_text(st, 9, now, strlen(now)) != 0)
    goto out;
  if (store_bind_i64(st, 4, in->amount) != 0 || store_bind_str(st, 8, c->reason) != 0)
    goto out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    /* Only order_id is UNIQUE; an id clash would be _PRIMARYKEY. */
    ret = STORE_DUPLICATE_ORDER_;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "insert payment", rc);
    goto out;
  }
  /* Autocommit: SQLITE_DONE means committed (and, with synchronous=FULL, the
   * WAL is fsynced). In the turn's transaction: written, durable after the
   * turn's COMMIT. */
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

int payment_store_find(payment_store_t *s, const payment_process_input_t *in,
                       json_t **payment, unsigned *mismatch) {
  json_t *p = NULL;
  *payment = NULL;
  *mismatch = 0;
  /* A retry finds the first result and never reaches the processor; so does a
   * duplicate in the same loop turn, which reads the first one's row from the
   * turn's open transaction on this same connection. */
  int rc = payment_store_get_by_order(s, in->order_id, in->order_id_len, &p);
  if (rc != 0)
    return rc;
  return settle_existing(p, in, payment, mismatch);
}

int payment_store_insert(payment_store_t *s, const payment_process_input_t *in,
                         payment_charge_fn charge, void *arg, json_t **payment,
                         int *created, unsigned *mismatch) {
  json_t *p = NULL;
  int rc;
  *payment = NULL;
  *created = 0;
  *mismatch = 0;
  /* The loop thread is the only writer of this connection, so nothing can
   * insert this order between the caller's payment_store_find() and the
   * insert below, short of another process on the same file, which the
   * UNIQUE index still stops. */
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  if (proto_random_id(PAYMENT_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a payment id");
    return STORE_ERROR;
  }
  proto_time_iso(now);
  /* A voided order is not charged: the saga has cancelled it (or is about
   * to), so this charge arrived too late. Recorded as a decline so that its
   * retries replay the same answer. */
  rc = store_stmt_exists(s->c.stmt[STMT_VOID_EXISTS], in->order_id, in->order_id_len,
                         PAYMENT_STORE_NOT_FOUND, "find void");
  if (rc != 0 && rc != PAYMENT_STORE_NOT_FOUND)
    return rc;
  /* The test processor answers synchronously, so the outcome goes in with
   * one INSERT. A real (asynchronous) acquirer would need a 'pending' row
   * first and the orderId as its idempotency key. */
  payment_charge_t c = rc == 0 ? (payment_charge_t){PAYMENT_DECLINED, PAYMENT_REASON_ORDER_VOIDED}
                               : charge(in, arg);
  /* The reply object is built before the INSERT (no ENOMEM can strike between
   * a recorded payment and its reply) and from the inserted values instead of
   * reading the row back: see new_payment(). */
  if (!(p = new_payment(id, in, &c, now))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building a payment");
    return STORE_ERROR;
  }
  rc = insert_payment(s, in, &c, id, now);
  if (rc != 0) {
    json_decref(p);
    p = NULL;
  }
  if (rc == STORE_DUPLICATE_ORDER_) {
    proto_log(PROTO_LOG_WARN, NULL, "payment_race",
              "order %.*s was recorded by another writer; answering with its payment",
              (int)in->order_id_len, in->order_id);
    rc = payment_store_find(s, in, payment, mismatch);
    return rc == PAYMENT_STORE_NOT_FOUND ? STORE_ERROR : rc;
  }
  if (rc != 0)
    return rc;
  *payment = p;
  *created = 1;
  return 0;
}

int payment_store_process(payment_store_t *s, const payment_process_input_t *in,
                          payment_charge_fn charge, void *arg, json_t **payment,
                          int *created, unsigned *mismatch) {
  *created = 0;
  int rc = payment_store_find(s, in, payment, mismatch);
  if (rc != PAYMENT_STORE_NOT_FOUND)
    return rc;
  return payment_store_insert(s, in, charge, arg, payment, created, mismatch);
}

int payment_store_refund(payment_store_t *s, const char *order_id, size_t len,
                         json_t **payment, int *changed) {
  sqlite3_stmt *st = s->c.stmt[STMT_REFUND];
  char now[PROTO_ISO_TIME_LEN];
  json_t *p = NULL;
  int rc, n = 0;
  *payment = NULL;
  *changed = 0;
  proto_time_iso(now);
  if (store_bind_text(st, 1, order_id, len) != 0 || store_bind_text(st, 2, now, strlen(now)) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    n = sqlite3_changes(s->c.db);
  store_stmt_done(st);
  if (rc != SQLITE_DONE)
    return store_fail(s->c.db, "refund payment", rc);
  /* Written (or nothing to change): read the state to answer from, on this
   * connection, so inside the turn's transaction when there is one. */
  if ((rc = payment_store_get_by_order(s, order_id, len, &p)) != 0)
    return rc;
  if (n == 0) {
    const char *status = json_string_value(json_object_get(p, "status"));
    if (!status || strcmp(status, "refunded") != 0) {
      json_decref(p);
      return PAYMENT_STORE_NOT_REFUNDABLE; /* declined: nothing was charged */
    }
  }
  *changed = n > 0;
  *payment = p;
  return 0;
}

/* The void object from a row of (order_id, voided_at). */
static json_t *row_to_void(sqlite3_stmt *st, void *arg) {
  (void)arg;
  return json_pack("{s:o, s:s, s:o}", "orderId", store_column_text(st, 0), "status", "voided",
                   "voidedAt", store_column_text(st, 1));
}

int payment_store_void(payment_store_t *s, const char *order_id, size_t len, json_t **voided,
                       int *created) {
  sqlite3_stmt *st = s->c.stmt[STMT_VOID_INSERT];
  char now[PROTO_ISO_TIME_LEN];
  int rc, n = 0;
  *voided = NULL;
  *created = 0;
  if (!order_id || len == 0)
    return STORE_EINVAL;
  proto_time_iso(now);
  if (store_bind_text(st, 1, order_id, len) != 0 || store_bind_text(st, 2, now, strlen(now)) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    n = sqlite3_changes(s->c.db);
  store_stmt_done(st);
  if (rc != SQLITE_DONE)
    return store_fail(s->c.db, "void order", rc);
  /* Read back on this connection (inside the turn's transaction when there
   * is one): a repeated void answers with the first one's voidedAt. */
  rc = store_stmt_get(s->c.stmt[STMT_VOID_GET], order_id, len, PAYMENT_STORE_NOT_FOUND,
                      row_to_void, NULL, "get void", "cannot build void from row", voided);
  if (rc == PAYMENT_STORE_NOT_FOUND) /* written or there a moment ago */
    rc = store_fail(s->c.db, "get void", SQLITE_NOTFOUND);
  if (rc != 0)
    return rc;
  *created = n > 0;
  return 0;
}

int payment_store_ping(payment_store_t *s) {
  return store_stmt_ping(s->c.stmt[STMT_PING]);
}
