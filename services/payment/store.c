/* store.c: the payment database, $DATA_DIR/payment.db in SQLite. Owns the
 * schema (versioned with PRAGMA user_version), the connection settings that
 * make a success reply mean "committed and on disk", one cached prepared
 * statement per query, and the idempotency rule: one payment per orderId,
 * enforced by a UNIQUE index. Writes go through the daemon's commit group
 * (one durable COMMIT per loop turn) when one is attached. Every SQLite error
 * is logged here.
 */
#include "payment.h"

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
#define PAYMENT_SCHEMA_VERSION 1
/* How long a statement waits for another connection's lock (a backup tool, a
 * second process by mistake) before failing. We run on the event loop thread,
 * so keep it short: with WAL, readers never wait at all. */
#define PAYMENT_STORE_BUSY_TIMEOUT_MS 1000
#define PAYMENT_DATA_DIR_MODE 0750
/* An internal outcome of insert_payment(): the orderId is already recorded. */
#define STORE_DUPLICATE_ORDER_ (-100)

#define PAYMENT_COLUMNS                                                            \
  "id, order_id, user_id, amount, currency, payment_method, status, reason,"      \
  " created_at, updated_at, refunded_at"

enum {
  STMT_INSERT,
  STMT_GET,
  STMT_GET_BY_ORDER,
  STMT_REFUND,
  STMT_PING,
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
};

struct payment_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT_ALL_];
  char *path;                      /* for log lines */
  store_group_t *group;            /* borrowed; NULL: autocommit writes */
};

/* --- helpers ------------------------------------------------------------------ */

static int db_fail(payment_store_t *s, const char *op, int rc) {
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s (%d): %s", op,
            sqlite3_errstr(rc), rc, s->db ? sqlite3_errmsg(s->db) : "no connection");
  return PAYMENT_STORE_ERROR;
}

/* Run SQL that returns no rows we need (pragmas, DDL). */
static int exec_sql(payment_store_t *s, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", sql,
              msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return PAYMENT_STORE_ERROR;
  }
  return 0;
}

/* One-row, one-column query (a pragma) into an int or a text buffer. */
static int query_one(payment_store_t *s, const char *sql, int *ival, char *tval,
                     size_t tsize) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  int ret = PAYMENT_STORE_ERROR;
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

static int bind_text(payment_store_t *s, sqlite3_stmt *st, int idx, const char *v,
                     size_t len) {
  if (len > INT_MAX)
    return db_fail(s, "bind", SQLITE_TOOBIG);
  int rc = sqlite3_bind_text(st, idx, v, (int)len, SQLITE_STATIC);
  return rc == SQLITE_OK ? 0 : db_fail(s, "bind", rc);
}

static json_t *column_json(sqlite3_stmt *st, int col) {
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_NULL:
    return json_null();
  case SQLITE_INTEGER:
    return json_integer((json_int_t)sqlite3_column_int64(st, col));
  default: {
    const char *t = (const char *)sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    return t ? json_stringn(t, (size_t)n) : NULL;
  }
  }
}

/* The payment object from a row of PAYMENT_COLUMNS, in that order. NULL on
 * ENOMEM or text that is not UTF-8. */
static json_t *row_to_payment(sqlite3_stmt *st) {
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

/* mkdir -p, so DATA_DIR=/var/lib/nestc/payment works on a fresh machine. */
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
    if (mkdir(p, PAYMENT_DATA_DIR_MODE) != 0 && errno != EEXIST) {
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

static int migrate(payment_store_t *s) {
  int version = 0;
  if (query_one(s, "PRAGMA user_version", &version, NULL, 0) != 0)
    return PAYMENT_STORE_ERROR;
  if (version > PAYMENT_SCHEMA_VERSION) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s has schema version %d; this build knows up to %d: refusing to open",
              s->path, version, PAYMENT_SCHEMA_VERSION);
    return PAYMENT_STORE_ERROR;
  }
  if (version == PAYMENT_SCHEMA_VERSION)
    return 0;
  /* One transaction per step: a crash leaves the previous version intact. */
  if (version < 1) {
    /* The UNIQUE index on order_id is the idempotency guarantee: whatever the
     * code above it does, an order can be charged into this table once. The
     * CHECKs keep a bug from recording money or states we cannot read back. */
    static const char v1[] =
        "BEGIN IMMEDIATE;"
        "CREATE TABLE payments ("
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
        "CREATE UNIQUE INDEX payments_order ON payments (order_id);"
        "PRAGMA user_version = 1;"
        "COMMIT;";
    if (exec_sql(s, v1) != 0) {
      exec_sql(s, "ROLLBACK");
      return PAYMENT_STORE_ERROR;
    }
  }
  proto_log(PROTO_LOG_INFO, NULL, "schema_migrated", "%s: schema version %d -> %d", s->path,
            version, PAYMENT_SCHEMA_VERSION);
  return 0;
}

/* --- open / close ------------------------------------------------------------ */

int payment_sync_parse(const char *v) {
  if (!v)
    return -1;
  if (strcasecmp(v, "NORMAL") == 0)
    return PAYMENT_SYNC_NORMAL;
  if (strcasecmp(v, "FULL") == 0)
    return PAYMENT_SYNC_FULL;
  if (strcasecmp(v, "EXTRA") == 0)
    return PAYMENT_SYNC_EXTRA;
  return -1;
}

static int configure(payment_store_t *s, payment_sync_t sync) {
  static const char *const sync_sql[] = {
      [PAYMENT_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
      [PAYMENT_SYNC_FULL] = "PRAGMA synchronous = FULL",
      [PAYMENT_SYNC_EXTRA] = "PRAGMA synchronous = EXTRA",
  };
  char mode[16];
  int rc;
  if ((rc = sqlite3_extended_result_codes(s->db, 1)) != SQLITE_OK ||
      (rc = sqlite3_busy_timeout(s->db, PAYMENT_STORE_BUSY_TIMEOUT_MS)) != SQLITE_OK)
    return db_fail(s, "configure", rc);
  /* journal_mode answers with the mode in effect: check it took. */
  if (query_one(s, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode)) != 0)
    return PAYMENT_STORE_ERROR;
  if (strcasecmp(mode, "wal") != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: journal_mode is %s, not wal",
              s->path, mode);
    return PAYMENT_STORE_ERROR;
  }
  /* In WAL mode, FULL fsyncs the WAL at every commit, so an autocommit
   * statement that returned SQLITE_DONE survives power loss; NORMAL only syncs
   * at checkpoints (a committed payment can be lost, and a retry would then
   * charge again: keep FULL for money). */
  return exec_sql(s, sync_sql[sync]);
}

int payment_store_open(const char *data_dir, payment_sync_t sync, payment_store_t **out) {
  payment_store_t *s = NULL;
  int rc, ret = PAYMENT_STORE_ERROR;
  *out = NULL;
  if (sync != PAYMENT_SYNC_NORMAL && sync != PAYMENT_SYNC_FULL && sync != PAYMENT_SYNC_EXTRA)
    return PAYMENT_STORE_EINVAL;
  if (make_dirs(data_dir) != 0)
    return PAYMENT_STORE_ERROR;
  if (!(s = calloc(1, sizeof(*s))))
    goto out;
  size_t plen = strlen(data_dir) + sizeof("/" PAYMENT_DB_FILE);
  if (!(s->path = malloc(plen)))
    goto out;
  snprintf(s->path, plen, "%s/%s", data_dir, PAYMENT_DB_FILE);
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
  if (payment_store_settings(s, mode, sizeof(mode), &level) != 0)
    goto out;
  json_t *f = json_pack("{s:s, s:s, s:i, s:i}", "path", s->path, "journalMode", mode,
                        "synchronous", level, "schemaVersion", PAYMENT_SCHEMA_VERSION);
  proto_log_fields(PROTO_LOG_INFO, NULL, "store_opened", f);
  *out = s;
  s = NULL;
  ret = 0;
out:
  payment_store_close(s);
  return ret;
}

void payment_store_close(payment_store_t *s) {
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

sqlite3 *payment_store_db(payment_store_t *s) {
  return s->db;
}

void payment_store_set_group(payment_store_t *s, store_group_t *g) {
  s->group = g;
}

store_group_t *payment_store_group(const payment_store_t *s) {
  return s->group;
}

/* Before the first write of an operation: join the turn's transaction. */
static int begin_write(payment_store_t *s) {
  if (!s->group)
    return 0; /* autocommit: each statement is its own durable transaction */
  if (store_group_begin(s->group) != 0)
    return PAYMENT_STORE_ERROR; /* logged by the group */
  /* An I/O, disk-full or out-of-memory error in an earlier statement of this
   * turn can make SQLite roll the whole transaction back on its own while the
   * group still counts it open. Writing now would autocommit behind the
   * group's back, and the COMMIT failing later would answer 500 for a row that
   * is in fact durable (its retry would then replay without an event). The
   * turn's earlier writes are lost anyway (their COMMIT fails -> 500): refuse
   * this one too. */
  if (sqlite3_get_autocommit(s->db)) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s: the turn's transaction was rolled back by SQLite; refusing to write",
              s->path);
    return PAYMENT_STORE_ERROR;
  }
  return 0;
}

int payment_store_settings(payment_store_t *s, char *journal_mode, size_t size, int *sync) {
  if (query_one(s, "PRAGMA journal_mode", NULL, journal_mode, size) != 0 ||
      query_one(s, "PRAGMA synchronous", sync, NULL, 0) != 0)
    return PAYMENT_STORE_ERROR;
  return 0;
}

/* --- queries ------------------------------------------------------------------ */

/* One payment by the key bound to ?1 of a SELECT PAYMENT_COLUMNS statement. */
static int get_one(payment_store_t *s, int which, const char *key, size_t len,
                   json_t **payment) {
  sqlite3_stmt *st = s->stmt[which];
  int ret = PAYMENT_STORE_ERROR;
  *payment = NULL;
  if (bind_text(s, st, 1, key, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = PAYMENT_STORE_NOT_FOUND;
    goto out;
  }
  if (rc != SQLITE_ROW) {
    db_fail(s, which == STMT_GET ? "get payment" : "get payment by order", rc);
    goto out;
  }
  if (!(*payment = row_to_payment(st))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build payment from row");
    goto out;
  }
  ret = 0;
out:
  stmt_done(st);
  return ret;
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
  sqlite3_stmt *st = s->stmt[STMT_INSERT];
  const char *status = payment_status_name(c->status);
  int rc, ret = PAYMENT_STORE_ERROR;
  if (bind_text(s, st, 1, id, strlen(id)) != 0 ||
      bind_text(s, st, 2, in->order_id, in->order_id_len) != 0 ||
      bind_text(s, st, 3, in->user_id, in->user_id_len) != 0 ||
      bind_text(s, st, 5, in->currency, strlen(in->currency)) != 0 ||
      bind_text(s, st, 6, in->method, in->method_len) != 0 ||
      bind_text(s, st, 7, status, strlen(status)) != 0 ||
      bind_text(s, st, 9, now, strlen(now)) != 0)
    goto out;
  if ((rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)in->amount)) != SQLITE_OK ||
      (rc = c->reason ? sqlite3_bind_text(st, 8, c->reason, -1, SQLITE_STATIC)
                      : sqlite3_bind_null(st, 8)) != SQLITE_OK) {
    db_fail(s, "bind", rc);
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    /* Only order_id is UNIQUE; an id clash would be _PRIMARYKEY. */
    ret = STORE_DUPLICATE_ORDER_;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    db_fail(s, "insert payment", rc);
    goto out;
  }
  /* Autocommit: SQLITE_DONE means committed (and, with synchronous=FULL, the
   * WAL is fsynced). In a group's transaction: written, durable after the
   * turn's COMMIT. */
  ret = 0;
out:
  stmt_done(st);
  return ret;
}

int payment_store_process(payment_store_t *s, const payment_process_input_t *in,
                          payment_charge_fn charge, void *arg, json_t **payment,
                          int *created, unsigned *mismatch) {
  json_t *p = NULL;
  int rc;
  *payment = NULL;
  *created = 0;
  *mismatch = 0;
  /* A retry finds the first result and never reaches the processor; so does a
   * duplicate in the same loop turn, which reads the first one's row from the
   * group's open transaction on this same connection. The loop thread is the
   * only writer of this connection, so nothing can insert this order between
   * the read and the insert below, short of another process on the same file,
   * which the UNIQUE index still stops. */
  rc = payment_store_get_by_order(s, in->order_id, in->order_id_len, &p);
  if (rc == 0)
    return settle_existing(p, in, payment, mismatch);
  if (rc != PAYMENT_STORE_NOT_FOUND)
    return rc;
  /* Join the write transaction before charging: if it cannot be opened
   * (locked by another process), nothing is charged. */
  if ((rc = begin_write(s)) != 0)
    return rc;
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  if (proto_random_id(PAYMENT_ID_PREFIX, id, sizeof(id)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "no randomness for a payment id");
    return PAYMENT_STORE_ERROR;
  }
  proto_time_iso(now);
  /* The test processor answers synchronously, so the outcome goes in with
   * one INSERT. A real (asynchronous) acquirer would need a 'pending' row
   * first and the orderId as its idempotency key. */
  payment_charge_t c = charge(in, arg);
  /* The reply object is built before the INSERT (no ENOMEM can strike between
   * a recorded payment and its reply) and from the inserted values instead of
   * reading the row back: see new_payment(). */
  if (!(p = new_payment(id, in, &c, now))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building a payment");
    return PAYMENT_STORE_ERROR;
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
    if ((rc = payment_store_get_by_order(s, in->order_id, in->order_id_len, &p)) != 0)
      return rc == PAYMENT_STORE_NOT_FOUND ? PAYMENT_STORE_ERROR : rc;
    return settle_existing(p, in, payment, mismatch);
  }
  if (rc != 0)
    return rc;
  *payment = p;
  *created = 1;
  return 0;
}

int payment_store_refund(payment_store_t *s, const char *order_id, size_t len,
                         json_t **payment, int *changed) {
  sqlite3_stmt *st = s->stmt[STMT_REFUND];
  char now[PROTO_ISO_TIME_LEN];
  json_t *p = NULL;
  int rc, n = 0;
  *payment = NULL;
  *changed = 0;
  if ((rc = begin_write(s)) != 0)
    return rc;
  proto_time_iso(now);
  if (bind_text(s, st, 1, order_id, len) != 0 || bind_text(s, st, 2, now, strlen(now)) != 0) {
    stmt_done(st);
    return PAYMENT_STORE_ERROR;
  }
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE)
    n = sqlite3_changes(s->db);
  stmt_done(st);
  if (rc != SQLITE_DONE)
    return db_fail(s, "refund payment", rc);
  /* Written (or nothing to change): read the state to answer from, on this
   * connection, so inside the group's transaction when there is one. */
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

int payment_store_ping(payment_store_t *s) {
  sqlite3_stmt *st = s->stmt[STMT_PING];
  int rc = sqlite3_step(st);
  int ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : db_fail(s, "ping", rc);
  stmt_done(st);
  return ret;
}
