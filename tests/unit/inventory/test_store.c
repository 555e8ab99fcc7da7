/* test_store.c: the inventory store (store.c, reservation.c) on a fresh
 * temporary DATA_DIR per test: schema and its CHECKs, products, reservations
 * all-or-nothing, idempotent retries, the release/commit state machine, and
 * expiry driven by the tests' own clock (now_ms is a parameter).
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

#include "inventory.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00.000Z */
#define TTL 60000LL

typedef struct fixture {
  char dir[256];
  inventory_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/inventory-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || inventory_store_open(f->dir, STORE_SYNC_FULL, &f->store) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"inventory.db", "inventory.db-wal", "inventory.db-shm"};
  fixture_t *f = *state;
  char p[400];
  inventory_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static void reopen(fixture_t *f) {
  inventory_store_close(f->store);
  f->store = NULL;
  assert_int_equal(inventory_store_open(f->dir, STORE_SYNC_FULL, &f->store), 0);
}

static void add_product(inventory_store_t *s, const char *id, int64_t price, int64_t stock) {
  inventory_product_input_t in = {id, strlen(id), "Thing", 5, price, "USD", stock};
  json_t *p = NULL;
  assert_int_equal(inventory_store_product_create(s, &in, T0, &p), 0);
  json_decref(p);
}

static int64_t field(inventory_store_t *s, const char *id, const char *key) {
  json_t *p = NULL;
  assert_int_equal(inventory_store_product_get(s, id, strlen(id), &p), 0);
  int64_t v = (int64_t)json_integer_value(json_object_get(p, key));
  assert_true(json_is_integer(json_object_get(p, key)));
  json_decref(p);
  return v;
}

/* A reserve input of n (product, quantity) pairs, already canonical. */
static inventory_reserve_input_t order(const char *oid, size_t n, const char *const *pids,
                                       const int64_t *qty) {
  inventory_reserve_input_t in = {.order_id = oid, .order_id_len = strlen(oid), .n_items = n};
  for (size_t i = 0; i < n; i++)
    in.items[i] = (inventory_item_t){pids[i], strlen(pids[i]), qty[i]};
  return in;
}

static const char *state_of(const json_t *r) {
  return json_string_value(json_object_get(r, "state"));
}

/* --- tests ---------------------------------------------------------------------- */

static void schema_and_checks(void **state) {
  fixture_t *f = *state;
  char mode[16];
  int sync = 0, version = 0;
  sqlite3 *db = inventory_store_db(f->store);
  assert_int_equal(store_db_settings(db, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, STORE_SYNC_FULL);
  assert_int_equal(store_db_query_one(db, "PRAGMA user_version", &version, NULL, 0), 0);
  assert_int_equal(version, 1);
  assert_int_equal(inventory_store_ping(f->store), 0);
  add_product(f->store, "p1", 100, 2);
  /* The database itself refuses reserved > stock and negative stock. */
  /* (extended result codes are on: SQLITE_CONSTRAINT_CHECK) */
  assert_int_equal(sqlite3_exec(db, "UPDATE products SET reserved = 3", NULL, NULL, NULL),
                   SQLITE_CONSTRAINT_CHECK);
  assert_int_equal(sqlite3_exec(db, "UPDATE products SET stock = -1", NULL, NULL, NULL),
                   SQLITE_CONSTRAINT_CHECK);
  assert_int_equal(sqlite3_exec(db, "UPDATE products SET reserved = 2", NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "INSERT INTO reservations VALUES"
                                    " ('o','lost',0,'t','t',NULL)", NULL, NULL, NULL),
                   SQLITE_CONSTRAINT_CHECK);
}

static void products(void **state) {
  fixture_t *f = *state;
  inventory_store_t *s = f->store;
  json_t *p = NULL, *list = NULL;
  int64_t total = 0;
  inventory_product_input_t gen = {NULL, 0, "Mouse", 5, 500, "EUR", 3};
  add_product(s, "p1", 1999, 10);
  assert_int_equal(inventory_store_product_create(s, &gen, T0 + 1, &p), 0);
  assert_memory_equal(json_string_value(json_object_get(p, "id")), "prod_", 5);
  assert_string_equal(json_string_value(json_object_get(p, "createdAt")),
                      "2026-01-01T00:00:00.001Z");
  json_decref(p);
  inventory_product_input_t dup = {"p1", 2, "Again", 5, 1, "USD", 0};
  assert_int_equal(inventory_store_product_create(s, &dup, T0, &p), INVENTORY_STORE_EXISTS);
  assert_null(p);

  assert_int_equal(field(s, "p1", "stock"), 10);
  assert_int_equal(field(s, "p1", "available"), 10);
  assert_int_equal(inventory_store_product_get(s, "px", 2, &p), INVENTORY_STORE_NOT_FOUND);

  assert_int_equal(inventory_store_product_list(s, 1, 1, &list, &total), 0);
  assert_int_equal(total, 2);
  assert_int_equal(json_array_size(list), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")), "p1");
  json_decref(list);
  assert_int_equal(inventory_store_product_list(s, 3, 1, &list, &total), 0);
  assert_int_equal(json_array_size(list), 0);
  json_decref(list);

  assert_int_equal(inventory_store_restock(s, "p1", 2, 5, T0, &p), 0);
  assert_int_equal(json_integer_value(json_object_get(p, "stock")), 15);
  json_decref(p);
  assert_int_equal(inventory_store_restock(s, "p1", 2, INVENTORY_STOCK_MAX, T0, &p),
                   INVENTORY_STORE_STOCK_LIMIT);
  assert_int_equal(inventory_store_restock(s, "px", 2, 1, T0, &p), INVENTORY_STORE_NOT_FOUND);
  assert_int_equal(field(s, "p1", "stock"), 15);
}

static void reserve_all_or_nothing(void **state) {
  fixture_t *f = *state;
  inventory_store_t *s = f->store;
  json_t *out = NULL;
  add_product(s, "p1", 1999, 10);
  add_product(s, "p2", 500, 3);
  static const char *const pids[] = {"p1", "p2"};
  static const int64_t too_many[] = {2, 99};
  inventory_reserve_input_t in = order("o1", 2, pids, too_many);
  assert_int_equal(inventory_store_reserve(s, &in, T0, TTL, &out),
                   INVENTORY_STORE_OUT_OF_STOCK);
  assert_int_equal(json_array_size(out), 1);
  json_t *d = json_array_get(out, 0);
  assert_string_equal(json_string_value(json_object_get(d, "productId")), "p2");
  assert_int_equal(json_integer_value(json_object_get(d, "requested")), 99);
  assert_int_equal(json_integer_value(json_object_get(d, "available")), 3);
  json_decref(out);
  assert_int_equal(field(s, "p1", "reserved"), 0); /* p1's hold was undone */

  static const char *const ghost[] = {"ghost", "p2"};
  static const int64_t ones[] = {1, 99};
  in = order("o1", 2, ghost, ones);
  assert_int_equal(inventory_store_reserve(s, &in, T0, TTL, &out), INVENTORY_STORE_NO_PRODUCT);
  assert_int_equal(json_array_size(out), 1);
  json_decref(out);

  /* Nothing was recorded for o1: a retry that fits goes through. */
  static const int64_t fits[] = {2, 3};
  in = order("o1", 2, pids, fits);
  assert_int_equal(inventory_store_reserve(s, &in, T0, TTL, &out), 0);
  assert_string_equal(state_of(out), "reserved");
  assert_string_equal(json_string_value(json_object_get(out, "expiresAt")),
                      "2026-01-01T00:01:00.000Z");
  json_t *items = json_object_get(out, "items");
  assert_int_equal(json_array_size(items), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "price")),
                   1999);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 1), "price")), 500);
  json_decref(out);
  assert_int_equal(field(s, "p1", "reserved"), 2);
  assert_int_equal(field(s, "p1", "stock"), 10);
  assert_int_equal(field(s, "p2", "available"), 0);
}

static void reserve_is_idempotent(void **state) {
  fixture_t *f = *state;
  inventory_store_t *s = f->store;
  json_t *first = NULL, *again = NULL;
  add_product(s, "p1", 1999, 10);
  static const char *const pids[] = {"p1"};
  static const int64_t two[] = {2}, three[] = {3};
  inventory_reserve_input_t in = order("o1", 1, pids, two);
  assert_int_equal(inventory_store_reserve(s, &in, T0, TTL, &first), 0);
  /* A price change after the reservation does not change its first result. */
  assert_int_equal(sqlite3_exec(inventory_store_db(s), "UPDATE products SET price = 1",
                                NULL, NULL, NULL), SQLITE_OK);
  reopen(f);
  s = f->store;
  assert_int_equal(inventory_store_reserve(s, &in, T0 + 10, TTL, &again),
                   INVENTORY_STORE_REPLAYED);
  assert_true(json_equal(first, again));
  json_decref(again);
  assert_int_equal(field(s, "p1", "reserved"), 2);

  inventory_reserve_input_t other = order("o1", 1, pids, three);
  assert_int_equal(inventory_store_reserve(s, &other, T0, TTL, &again),
                   INVENTORY_STORE_MISMATCH);
  assert_null(again);

  assert_int_equal(inventory_store_commit(s, "o1", 2, T0 + 20, &again), 0);
  json_decref(again);
  assert_int_equal(inventory_store_reserve(s, &in, T0 + 30, TTL, &again),
                   INVENTORY_STORE_REPLAYED);
  assert_string_equal(state_of(again), "committed");
  json_decref(again);
  json_decref(first);
}

static void release_and_commit_state_machine(void **state) {
  fixture_t *f = *state;
  inventory_store_t *s = f->store;
  json_t *out = NULL;
  add_product(s, "p1", 1999, 10);
  static const char *const pids[] = {"p1"};
  static const int64_t two[] = {2};
  inventory_reserve_input_t a = order("a", 1, pids, two), b = order("b", 1, pids, two);
  assert_int_equal(inventory_store_reserve(s, &a, T0, TTL, &out), 0);
  json_decref(out);
  assert_int_equal(inventory_store_reserve(s, &b, T0, TTL, &out), 0);
  json_decref(out);
  assert_int_equal(field(s, "p1", "reserved"), 4);

  /* a: released, twice; then neither commit nor reserve brings it back. */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(inventory_store_release(s, "a", 1, T0, &out), 0);
    assert_string_equal(state_of(out), "released");
    json_decref(out);
  }
  assert_int_equal(field(s, "p1", "reserved"), 2);
  assert_int_equal(field(s, "p1", "stock"), 10);
  assert_int_equal(inventory_store_commit(s, "a", 1, T0, &out), INVENTORY_STORE_RELEASED);
  assert_int_equal(inventory_store_reserve(s, &a, T0, TTL, &out), INVENTORY_STORE_RELEASED);

  /* b: committed (sold), twice; a release is refused. */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(inventory_store_commit(s, "b", 1, T0, &out), 0);
    assert_string_equal(state_of(out), "committed");
    json_decref(out);
  }
  assert_int_equal(field(s, "p1", "stock"), 8);
  assert_int_equal(field(s, "p1", "reserved"), 0);
  assert_int_equal(inventory_store_release(s, "b", 1, T0, &out), INVENTORY_STORE_COMMITTED);

  /* Unknown orders: a commit is 404; a release succeeds and blocks a late reserve. */
  assert_int_equal(inventory_store_commit(s, "c", 1, T0, &out), INVENTORY_STORE_NOT_FOUND);
  assert_int_equal(inventory_store_release(s, "c", 1, T0, &out), 0);
  assert_int_equal(json_array_size(json_object_get(out, "items")), 0);
  json_decref(out);
  inventory_reserve_input_t c = order("c", 1, pids, two);
  assert_int_equal(inventory_store_reserve(s, &c, T0, TTL, &out), INVENTORY_STORE_RELEASED);
  assert_int_equal(field(s, "p1", "reserved"), 0);
}

static void expiry_by_the_clock(void **state) {
  fixture_t *f = *state;
  inventory_store_t *s = f->store;
  json_t *out = NULL;
  int n = -1;
  add_product(s, "p1", 1, 10);
  static const char *const pids[] = {"p1"};
  static const int64_t one[] = {1};
  const char *oids[] = {"e1", "e2", "e3"};
  for (int i = 0; i < 3; i++) {
    inventory_reserve_input_t in = order(oids[i], 1, pids, one);
    assert_int_equal(inventory_store_reserve(s, &in, T0 + i, TTL, &out), 0);
    json_decref(out);
  }
  assert_int_equal(inventory_store_sweep(s, T0 + TTL - 1, 10, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(field(s, "p1", "reserved"), 3);
  /* The batch limit holds: the oldest first. */
  assert_int_equal(inventory_store_sweep(s, T0 + TTL + 1, 1, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(inventory_store_release(s, "e1", 2, T0, &out), 0);
  assert_string_equal(state_of(out), "released");
  json_decref(out);
  assert_int_equal(field(s, "p1", "reserved"), 2);

  /* Expired but not swept yet: a commit releases it and says so. */
  assert_int_equal(inventory_store_commit(s, "e2", 2, T0 + TTL + 1, &out),
                   INVENTORY_STORE_RELEASED);
  assert_int_equal(field(s, "p1", "reserved"), 1);
  assert_int_equal(field(s, "p1", "stock"), 10);
  /* ... and so does a retried reserve. */
  inventory_reserve_input_t e3 = order("e3", 1, pids, one);
  assert_int_equal(inventory_store_reserve(s, &e3, T0 + TTL + 2, TTL, &out),
                   INVENTORY_STORE_RELEASED);
  assert_int_equal(field(s, "p1", "reserved"), 0);
  assert_int_equal(inventory_store_sweep(s, T0 + 10 * TTL, 10, &n), 0);
  assert_int_equal(n, 0);
}

static void survives_reopen(void **state) {
  fixture_t *f = *state;
  json_t *out = NULL;
  add_product(f->store, "p1", 1, 10);
  static const char *const pids[] = {"p1"};
  static const int64_t four[] = {4};
  inventory_reserve_input_t in = order("o1", 1, pids, four);
  assert_int_equal(inventory_store_reserve(f->store, &in, T0, TTL, &out), 0);
  json_decref(out);
  reopen(f);
  assert_int_equal(field(f->store, "p1", "reserved"), 4);
  assert_int_equal(inventory_store_release(f->store, "o1", 2, T0, &out), 0);
  json_decref(out);
  assert_int_equal(field(f->store, "p1", "reserved"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(schema_and_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(products, setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_is_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(release_and_commit_state_machine, setup, teardown),
      cmocka_unit_test_setup_teardown(expiry_by_the_clock, setup, teardown),
      cmocka_unit_test_setup_teardown(survives_reopen, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
