/* test_store.c: the order store (store.c) on a fresh temporary DATA_DIR per
 * test: schema and settings, create/get with items, pagination (newest first,
 * per user, capped pages), the atomic status transition (conflict when the
 * status moved, not found), the in-place move, a failed create inside an open
 * transaction undoing only itself, persistence across a reopen, refusal
 * of a newer schema, and the saga rows (v4): put/get in the caller's
 * transaction, the kept reason, refusals, and the indexed, paged list of
 * unfinished sagas for resume.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "order.h"
#include "../schema_testutil.h"
#include "proto/log.h"

typedef struct fixture {
  char root[256];      /* mkdtemp directory */
  char dir[300];       /* DATA_DIR: root/data/order, created by the store */
  order_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  proto_log_set_level(PROTO_LOG_ERROR);
  snprintf(f->root, sizeof(f->root), "%s/order-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/data/order", f->root);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"order.db", "order.db-wal", "order.db-shm"};
  fixture_t *f = *state;
  char p[400];
  order_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  snprintf(p, sizeof(p), "%s/data", f->root);
  rmdir(p);
  rmdir(f->root);
  free(f);
  return 0;
}

static order_store_t *open_store(fixture_t *f) {
  order_store_close(f->store);
  f->store = NULL;
  assert_int_equal(order_store_open(f->dir, STORE_SYNC_FULL, &f->store), 0);
  assert_non_null(f->store);
  return f->store;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

static json_int_t num(const json_t *obj, const char *key) {
  const json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v))
    fail_msg("no integer '%s'", key);
  return json_integer_value(v);
}

/* A pending order for user with n items (quantity i+1, price 100 * (i+1)). */
static json_t *create(order_store_t *s, const char *user, size_t n) {
  static order_create_input_t in;
  static char pids[ORDER_ITEMS_MAX][32];
  memset(&in, 0, sizeof(in));
  in.user_id = user;
  in.user_id_len = strlen(user);
  in.payment_method = "tok_visa";
  in.payment_method_len = 8;
  memcpy(in.currency, "EUR", 4);
  in.n_items = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(pids[i], sizeof(pids[i]), "prod-%zu", i);
    in.items[i] = (order_item_input_t){pids[i], strlen(pids[i]), (int64_t)i + 1,
                                       100 * ((int64_t)i + 1)};
    assert_int_equal(order_total_add(&in.total, in.items[i].quantity, in.items[i].price), 0);
  }
  json_t *o = NULL;
  assert_int_equal(order_store_create(s, &in, &o), 0);
  assert_non_null(o);
  return o;
}

static void test_open_settings_and_schema(void **state) {
  fixture_t *f = *state;
  char mode[16];
  int sync = -1;
  open_store(f);
  assert_int_equal(order_store_settings(f->store, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, STORE_SYNC_FULL);
  assert_int_equal(order_store_ping(f->store), 0);
  assert_int_equal(store_sync_parse("normal"), STORE_SYNC_NORMAL);
  assert_int_equal(store_sync_parse("EXTRA"), STORE_SYNC_EXTRA);
  assert_int_equal(store_sync_parse("off"), -1);
  order_store_t *bad = NULL;
  assert_int_equal(order_store_open(f->dir, 0, &bad), STORE_EINVAL);
  assert_null(bad);
}

static void test_create_then_get(void **state) {
  fixture_t *f = *state;
  open_store(f);
  json_t *o = create(f->store, "user_a", 3);
  const char *id = str(o, "id");
  assert_int_equal(strlen(id), strlen(ORDER_ID_PREFIX) + 32);
  assert_memory_equal(id, ORDER_ID_PREFIX, strlen(ORDER_ID_PREFIX));
  assert_string_equal(str(o, "status"), "pending");
  assert_string_equal(str(o, "currency"), "EUR");
  assert_int_equal(num(o, "totalAmount"), 100 * 1 + 200 * 2 + 300 * 3);
  assert_true(json_is_null(json_object_get(o, "paymentId")));
  assert_true(json_is_null(json_object_get(o, "cancelReason")));
  assert_string_equal(str(o, "createdAt"), str(o, "updatedAt"));

  json_t *got = NULL;
  assert_int_equal(order_store_get(f->store, id, strlen(id), &got), 0);
  /* What was answered at creation is exactly what is stored. */
  assert_true(json_equal(o, got));
  json_t *items = json_object_get(got, "items");
  assert_int_equal(json_array_size(items), 3);
  assert_string_equal(str(json_array_get(items, 2), "productId"), "prod-2");
  assert_int_equal(num(json_array_get(items, 2), "quantity"), 3);
  assert_int_equal(num(json_array_get(items, 2), "price"), 300);
  json_decref(got);

  assert_int_equal(order_store_get(f->store, "order_nope", 10, &got), ORDER_STORE_NOT_FOUND);
  assert_null(got);
  json_decref(o);
}

static void test_list_newest_first_per_user(void **state) {
  fixture_t *f = *state;
  enum { N = 7 };
  char ids[N][PROTO_ID_MAX];
  open_store(f);
  for (int i = 0; i < N; i++) {
    json_t *o = create(f->store, "user_a", 1);
    snprintf(ids[i], sizeof(ids[i]), "%s", str(o, "id"));
    json_decref(o);
    json_decref(create(f->store, "user_b", 2)); /* interleaved: must not show up */
  }
  json_t *page = NULL;
  int64_t total = -1;
  /* page 1 of 3: the three newest, newest first */
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 1, 3, &page, &total), 0);
  assert_int_equal(total, N);
  assert_int_equal(json_array_size(page), 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(str(json_array_get(page, (size_t)i), "id"), ids[N - 1 - i]);
    assert_string_equal(str(json_array_get(page, (size_t)i), "userId"), "user_a");
    assert_int_equal(json_array_size(json_object_get(json_array_get(page, (size_t)i), "items")),
                     1);
  }
  json_decref(page);
  /* last page: the oldest one */
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 3, 3, &page, &total), 0);
  assert_int_equal(json_array_size(page), 1);
  assert_string_equal(str(json_array_get(page, 0), "id"), ids[0]);
  json_decref(page);
  /* past the end: empty, total still right */
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 4, 3, &page, &total), 0);
  assert_int_equal(json_array_size(page), 0);
  assert_int_equal(total, N);
  json_decref(page);
  /* unknown user: empty */
  assert_int_equal(order_store_list_by_user(f->store, "user_z", 6, 1, 10, &page, &total), 0);
  assert_int_equal(json_array_size(page), 0);
  assert_int_equal(total, 0);
  json_decref(page);
  /* out-of-range arguments are refused, not clamped, at this layer */
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 0, 3, &page, &total),
                   STORE_EINVAL);
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 1, ORDER_LIMIT_MAX + 1,
                                            &page, &total),
                   STORE_EINVAL);
}

static void test_transition_is_atomic(void **state) {
  fixture_t *f = *state;
  open_store(f);
  json_t *o = create(f->store, "user_a", 1);
  const char *id = str(o, "id");
  size_t len = strlen(id);
  json_t *up = NULL;

  /* the expected status is wrong: nothing changes */
  assert_int_equal(order_store_transition(f->store, id, len, ORDER_CONFIRMED, ORDER_SHIPPED,
                                          NULL, NULL, &up),
                   ORDER_STORE_CONFLICT);
  assert_null(up);

  assert_int_equal(order_store_transition(f->store, id, len, ORDER_PENDING, ORDER_CONFIRMED,
                                          "pay_1", NULL, &up),
                   0);
  assert_string_equal(str(up, "status"), "confirmed");
  assert_string_equal(str(up, "paymentId"), "pay_1");
  assert_true(json_is_null(json_object_get(up, "cancelReason")));
  assert_true(strcmp(str(up, "updatedAt"), str(o, "createdAt")) >= 0);
  assert_string_equal(str(up, "createdAt"), str(o, "createdAt"));
  json_decref(up);

  /* A second writer that read "pending" loses: the status moved. */
  assert_int_equal(order_store_transition(f->store, id, len, ORDER_PENDING, ORDER_CANCELLED,
                                          NULL, "late", NULL),
                   ORDER_STORE_CONFLICT);
  /* paymentId survives a later transition that does not set it */
  assert_int_equal(order_store_transition(f->store, id, len, ORDER_CONFIRMED, ORDER_CANCELLED,
                                          NULL, ORDER_REASON_REFUNDED, &up),
                   0);
  assert_string_equal(str(up, "status"), "cancelled");
  assert_string_equal(str(up, "paymentId"), "pay_1");
  assert_string_equal(str(up, "cancelReason"), "refunded");
  json_decref(up);

  assert_int_equal(order_store_transition(f->store, "order_x", 7, ORDER_PENDING,
                                          ORDER_CONFIRMED, NULL, NULL, NULL),
                   ORDER_STORE_NOT_FOUND);
  assert_int_equal(order_store_transition(f->store, id, len, ORDER_PENDING, 42, NULL, NULL,
                                          NULL),
                   STORE_EINVAL);
  json_decref(o);
}

static void test_persists_across_reopen(void **state) {
  fixture_t *f = *state;
  open_store(f);
  json_t *o = create(f->store, "user_a", ORDER_ITEMS_MAX);
  char id[PROTO_ID_MAX];
  snprintf(id, sizeof(id), "%s", str(o, "id"));
  assert_int_equal(order_store_transition(f->store, id, strlen(id), ORDER_PENDING,
                                          ORDER_CONFIRMED, "pay_9", NULL, NULL),
                   0);
  open_store(f);
  json_t *got = NULL;
  assert_int_equal(order_store_get(f->store, id, strlen(id), &got), 0);
  assert_string_equal(str(got, "status"), "confirmed");
  assert_int_equal(json_array_size(json_object_get(got, "items")), ORDER_ITEMS_MAX);
  assert_int_equal(num(got, "totalAmount"), num(o, "totalAmount"));
  json_decref(got);
  json_decref(o);
}

static void test_newer_schema_refused(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *db = NULL;
  open_store(f);
  order_store_close(f->store);
  f->store = NULL;
  snprintf(path, sizeof(path), "%s/order.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  order_store_t *s = NULL;
  assert_int_equal(order_store_open(f->dir, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);
}

/* order_store_move updates the object in hand to exactly what a re-read
 * returns; a stale object conflicts and stays as it was. */
static void test_move_updates_object_in_place(void **state) {
  fixture_t *f = *state;
  open_store(f);
  json_t *o = create(f->store, "user_a", 2);
  json_t *stale = json_deep_copy(o);
  json_t *got = NULL;
  const char *id = str(o, "id");
  assert_int_equal(order_store_move(f->store, o, ORDER_CONFIRMED, "pay_1", NULL), 0);
  assert_string_equal(str(o, "status"), "confirmed");
  assert_string_equal(str(o, "paymentId"), "pay_1");
  assert_int_equal(order_store_get(f->store, id, strlen(id), &got), 0);
  assert_true(json_equal(got, o));
  json_decref(got);

  assert_int_equal(order_store_move(f->store, stale, ORDER_CANCELLED, NULL, "late"),
                   ORDER_STORE_CONFLICT);
  assert_string_equal(str(stale, "status"), "pending");
  assert_true(json_is_null(json_object_get(stale, "cancelReason")));
  assert_int_equal(order_store_move(f->store, o, 42, NULL, NULL), STORE_EINVAL);
  json_decref(stale);
  json_decref(o);
}

/* Inside an open transaction (the commit group's), a create that fails
 * undoes only itself: the other writes of the transaction commit. */
static void test_failed_create_undoes_only_itself(void **state) {
  fixture_t *f = *state;
  sqlite3 *db = order_store_db(open_store(f));
  json_t *orders = NULL, *bad = NULL;
  int64_t total = -1;
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  json_t *o = create(f->store, "user_a", 1);
  order_create_input_t in = {.user_id = "user_a", .user_id_len = 6,
                             .payment_method = "tok_visa", .payment_method_len = 8,
                             .currency = "EUR", .n_items = 2};
  in.items[0] = (order_item_input_t){"p", 1, 1, 100};
  in.items[1] = (order_item_input_t){"q", 1, 0, 100}; /* quantity 0: CHECK fails */
  assert_int_equal(order_store_create(f->store, &in, &bad), STORE_ERROR);
  assert_null(bad);
  assert_false(sqlite3_get_autocommit(db)); /* the outer transaction goes on */
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(order_store_list_by_user(f->store, "user_a", 6, 1, 10, &orders, &total), 0);
  assert_int_equal(total, 1);
  assert_string_equal(str(json_array_get(orders, 0), "id"), str(o, "id"));
  json_decref(orders);
  json_decref(o);
}

/* The schema as release 1 wrote it (frozen: it must not follow the code). */
#define ORDER_V1_SCHEMA                                                                    \
  "CREATE TABLE orders (id TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL,"              \
  " total_amount INTEGER NOT NULL CHECK (total_amount >= 0), currency TEXT NOT NULL,"      \
  " status TEXT NOT NULL CHECK (status IN"                                                 \
  "  ('pending', 'confirmed', 'shipped', 'delivered', 'cancelled')),"                      \
  " payment_method TEXT NOT NULL, payment_id TEXT, cancel_reason TEXT,"                    \
  " created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"                                  \
  "CREATE INDEX orders_user_created ON orders (user_id, created_at);"                      \
  "CREATE TABLE order_items (order_id TEXT NOT NULL REFERENCES orders (id),"               \
  " line INTEGER NOT NULL, product_id TEXT NOT NULL,"                                      \
  " quantity INTEGER NOT NULL CHECK (quantity > 0),"                                       \
  " price INTEGER NOT NULL CHECK (price >= 0),"                                            \
  " PRIMARY KEY (order_id, line)) WITHOUT ROWID;"                                          \
  "PRAGMA user_version = 1;"

static void test_upgrades_a_v1_database(void **state) {
  fixture_t *f = *state;
  testutil_make_db(f->dir, ORDER_DB_FILE,
                   "PRAGMA journal_mode = WAL;" ORDER_V1_SCHEMA
                   "INSERT INTO orders VALUES ('order_old', 'user_a', 3998, 'USD', 'shipped',"
                   " 'tok_visa', 'pay_1', NULL, '2026-01-01T00:00:00.000Z',"
                   " '2026-01-02T00:00:00.000Z');"
                   "INSERT INTO order_items VALUES ('order_old', 0, 'p1', 2, 1999);");
  open_store(f);
  sqlite3 *db = order_store_db(f->store);
  /* through v3, the outbox, v4, sagas, v5, compensating and saga history */
  assert_int_equal(testutil_user_version(db), 5);
  json_t *o = NULL;
  assert_int_equal(order_store_get(f->store, "order_old", 9, &o), STORE_OK);
  assert_string_equal(str(o, "status"), "shipped");
  assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
  json_decref(o);
  /* Foreign keys are on again and point at the rebuilt table. */
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO order_items VALUES ('nope', 0, 'p', 1, 1)"),
                   SQLITE_CONSTRAINT_FOREIGNKEY);
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO order_items VALUES ('order_old', 1, 'p',"
                                        " 1, 1)"),
                   SQLITE_OK);
  /* Same constraint, no ephemeral table per write. */
  assert_int_equal(testutil_exec_rc(db, "UPDATE orders SET status = 'bogus'"),
                   SQLITE_CONSTRAINT_CHECK);
  assert_false(testutil_uses_ephemeral(db, "UPDATE orders SET status = 'delivered'"
                                           " WHERE id = 'order_old' AND status = 'shipped'"));
  /* v4: the old order has no saga row, and may get one. */
  order_saga_row_t row;
  assert_int_equal(order_store_saga_get(f->store, "order_old", 9, &row), ORDER_STORE_NOT_FOUND);
  assert_int_equal(order_store_saga_put(f->store, "order_old", 9, ORDER_SAGA_DONE, 0, 0, NULL),
                   STORE_OK);
}

/* --- sagas ------------------------------------------------------------------ */

static const char *oid(const json_t *o) {
  return str(o, "id");
}

static void put(order_store_t *s, const json_t *o, int state, int attempts, int64_t at,
                const char *reason) {
  assert_int_equal(order_store_saga_put(s, oid(o), strlen(oid(o)), state, attempts, at, reason),
                   STORE_OK);
}

static order_saga_row_t get_saga(order_store_t *s, const json_t *o) {
  order_saga_row_t row;
  assert_int_equal(order_store_saga_get(s, oid(o), strlen(oid(o)), &row), STORE_OK);
  return row;
}

static void test_saga_put_get_keeps_reason(void **state) {
  fixture_t *f = *state;
  order_store_t *s = open_store(f);
  json_t *o = create(s, "user_a", 1);
  order_saga_row_t row;
  assert_int_equal(order_store_saga_get(s, oid(o), strlen(oid(o)), &row), ORDER_STORE_NOT_FOUND);
  put(s, o, ORDER_SAGA_RESERVING, 0, 1000, NULL);
  row = get_saga(s, o);
  assert_string_equal(row.order_id, oid(o));
  assert_int_equal(row.state, ORDER_SAGA_RESERVING);
  assert_int_equal(row.attempts, 0);
  assert_int_equal(row.next_attempt_at_ms, 1000);
  assert_false(row.has_reason);
  assert_string_equal(row.reason, "");
  assert_int_equal(strlen(row.updated_at), PROTO_ISO_TIME_LEN - 1);
  /* The failure that starts compensation sets the reason ... */
  put(s, o, ORDER_SAGA_COMPENSATING_RELEASE, 0, 2000, "card_declined");
  /* ... retries keep it when they pass none ... */
  put(s, o, ORDER_SAGA_COMPENSATING_RELEASE, 3, 5000, NULL);
  row = get_saga(s, o);
  assert_int_equal(row.state, ORDER_SAGA_COMPENSATING_RELEASE);
  assert_int_equal(row.attempts, 3);
  assert_int_equal(row.next_attempt_at_ms, 5000);
  assert_true(row.has_reason);
  assert_string_equal(row.reason, "card_declined");
  /* ... and it survives a reopen with the rest. */
  open_store(f);
  row = get_saga(f->store, o);
  assert_int_equal(row.state, ORDER_SAGA_COMPENSATING_RELEASE);
  assert_string_equal(row.reason, "card_declined");
  json_decref(o);
}

static void test_saga_put_refusals(void **state) {
  fixture_t *f = *state;
  order_store_t *s = open_store(f);
  json_t *o = create(s, "user_a", 1);
  const char *id = oid(o);
  char longer[ORDER_REASON_MAX_BYTES + 1];
  memset(longer, 'r', sizeof(longer) - 1);
  longer[sizeof(longer) - 1] = '\0';
  assert_int_equal(order_store_saga_put(s, id, strlen(id), -1, 0, 0, NULL), STORE_EINVAL);
  assert_int_equal(order_store_saga_put(s, id, strlen(id), ORDER_SAGA_STATE_COUNT_, 0, 0, NULL),
                   STORE_EINVAL);
  assert_int_equal(order_store_saga_put(s, id, strlen(id), ORDER_SAGA_DONE, -1, 0, NULL),
                   STORE_EINVAL);
  assert_int_equal(order_store_saga_put(s, id, 0, ORDER_SAGA_DONE, 0, 0, NULL), STORE_EINVAL);
  assert_int_equal(order_store_saga_put(s, id, strlen(id), ORDER_SAGA_CANCELLING, 0, 0, longer),
                   STORE_EINVAL);
  longer[ORDER_REASON_MAX_BYTES - 1] = '\0'; /* 255 bytes: the longest cut reason fits */
  put(s, o, ORDER_SAGA_CANCELLING, 0, 0, longer);
  assert_string_equal(get_saga(s, o).reason, longer);
  /* A saga always belongs to an order (the foreign key). */
  assert_int_equal(order_store_saga_put(s, "order_none", 10, ORDER_SAGA_RESERVING, 0, 0, NULL),
                   STORE_ERROR);
  /* The schema refuses what the code would not write. */
  sqlite3 *db = order_store_db(s);
  assert_int_equal(testutil_exec_rc(db, "UPDATE sagas SET state = 'bogus'"),
                   SQLITE_CONSTRAINT_CHECK);
  assert_int_equal(testutil_exec_rc(db, "UPDATE sagas SET attempts = -1"),
                   SQLITE_CONSTRAINT_CHECK);
  assert_false(testutil_uses_ephemeral(db, "UPDATE sagas SET state = 'cancelled'"));
  json_decref(o);
}

/* The saga row commits or rolls back with the caller's transaction. */
static void test_saga_joins_callers_transaction(void **state) {
  fixture_t *f = *state;
  order_store_t *s = open_store(f);
  sqlite3 *db = order_store_db(s);
  assert_int_equal(testutil_exec_rc(db, "BEGIN"), SQLITE_OK);
  json_t *gone = create(s, "user_a", 1);
  put(s, gone, ORDER_SAGA_RESERVING, 0, 0, NULL);
  assert_int_equal(testutil_exec_rc(db, "ROLLBACK"), SQLITE_OK);
  order_saga_row_t row;
  assert_int_equal(order_store_saga_get(s, oid(gone), strlen(oid(gone)), &row),
                   ORDER_STORE_NOT_FOUND);
  assert_int_equal(testutil_exec_rc(db, "BEGIN"), SQLITE_OK);
  json_t *kept = create(s, "user_a", 1);
  put(s, kept, ORDER_SAGA_RESERVING, 0, 0, NULL);
  assert_int_equal(testutil_exec_rc(db, "COMMIT"), SQLITE_OK);
  assert_int_equal(get_saga(s, kept).state, ORDER_SAGA_RESERVING);
  json_decref(gone);
  json_decref(kept);
}

static void test_saga_unfinished_paged_due_first(void **state) {
  fixture_t *f = *state;
  order_store_t *s = open_store(f);
  /* Every state once, due at 100 * (10 - state): the finished ones never listed. */
  json_t *o[ORDER_SAGA_STATE_COUNT_];
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++) {
    o[i] = create(s, "user_a", 1);
    put(s, o[i], i, i, 100 * (10 - i), NULL);
  }
  order_saga_row_t rows[ORDER_SAGA_STATE_COUNT_];
  size_t n = 99;
  assert_int_equal(order_store_saga_unfinished(s, INT64_MAX, NULL, rows, 20, &n), STORE_OK);
  assert_int_equal(n, ORDER_SAGA_STATE_COUNT_ - 2);
  for (size_t k = 0; k < n; k++) {
    assert_false(order_saga_finished(rows[k].state));
    if (k > 0)
      assert_true(rows[k - 1].next_attempt_at_ms <= rows[k].next_attempt_at_ms);
  }
  /* Earliest due first: cancelling (state 8) is due at 200. */
  assert_int_equal(rows[0].state, ORDER_SAGA_CANCELLING);
  assert_string_equal(rows[0].order_id, oid(o[ORDER_SAGA_CANCELLING]));
  assert_int_equal(rows[0].attempts, ORDER_SAGA_CANCELLING);
  /* Only those due by a time: 200..500 are states 8, 7, 6 and (5, done) not. */
  assert_int_equal(order_store_saga_unfinished(s, 500, NULL, rows, 20, &n), STORE_OK);
  assert_int_equal(n, 3);
  assert_int_equal(rows[2].state, ORDER_SAGA_COMPENSATING_REFUND);
  /* Pages of 3 walk them all once, also with ties on next_attempt_at. */
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++)
    put(s, o[i], i, 0, 7, NULL);
  size_t total = 0;
  order_saga_row_t last, page[3];
  const order_saga_row_t *after = NULL;
  int seen[ORDER_SAGA_STATE_COUNT_] = {0};
  do {
    assert_int_equal(order_store_saga_unfinished(s, INT64_MAX, after, page, 3, &n), STORE_OK);
    for (size_t k = 0; k < n; k++) {
      if (after)
        assert_true(strcmp(after->order_id, page[k].order_id) < 0);
      seen[page[k].state]++;
    }
    total += n;
    if (n > 0) {
      last = page[n - 1];
      after = &last;
    }
  } while (n == 3);
  assert_int_equal(total, ORDER_SAGA_STATE_COUNT_ - 2);
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++)
    assert_int_equal(seen[i], order_saga_finished(i) ? 0 : 1);
  assert_int_equal(order_store_saga_unfinished(s, INT64_MAX, NULL, page, 0, &n), STORE_EINVAL);
  assert_int_equal(order_store_saga_unfinished(s, INT64_MAX, NULL, page,
                                               ORDER_SAGA_PAGE_MAX + 1, &n),
                   STORE_EINVAL);
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++)
    json_decref(o[i]);
}

/* The resume scan is the store's own cached statement, planned on the
 * partial index, with no sort and no table scan. */
static void test_saga_unfinished_uses_index(void **state) {
  fixture_t *f = *state;
  sqlite3 *db = order_store_db(open_store(f));
  const char *sql = NULL;
  for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
    if (strstr(sqlite3_sql(st), "FROM sagas WHERE state <>"))
      sql = sqlite3_sql(st);
  assert_non_null(sql);
  char explain[1024];
  snprintf(explain, sizeof(explain), "EXPLAIN QUERY PLAN %s", sql);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
  int on_index = 0, bad = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *d = (const char *)sqlite3_column_text(st, 3);
    if (strstr(d, "INDEX sagas_unfinished"))
      on_index = 1;
    if (strstr(d, "TEMP B-TREE") || strcmp(d, "SCAN sagas") == 0)
      bad = 1;
  }
  assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
  assert_true(on_index);
  assert_false(bad);
}

static void test_migration_refuses_dangling_items(void **state) {
  fixture_t *f = *state;
  /* An item whose order is gone (written with foreign keys off): migrating
   * must not carry that into a schema that claims to enforce them. */
  testutil_make_db(f->dir, ORDER_DB_FILE,
                   "PRAGMA journal_mode = WAL;" ORDER_V1_SCHEMA
                   "INSERT INTO order_items VALUES ('order_gone', 0, 'p1', 2, 1999);");
  order_store_t *s = NULL;
  assert_int_equal(order_store_open(f->dir, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_upgrades_a_v1_database, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migration_refuses_dangling_items, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_settings_and_schema, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_then_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_newest_first_per_user, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transition_is_atomic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_persists_across_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_move_updates_object_in_place, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_create_undoes_only_itself, setup, teardown),
      cmocka_unit_test_setup_teardown(test_saga_put_get_keeps_reason, setup, teardown),
      cmocka_unit_test_setup_teardown(test_saga_put_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_saga_joins_callers_transaction, setup, teardown),
      cmocka_unit_test_setup_teardown(test_saga_unfinished_paged_due_first, setup, teardown),
      cmocka_unit_test_setup_teardown(test_saga_unfinished_uses_index, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
