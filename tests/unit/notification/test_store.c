/* test_store.c: the notification store (store.c) on a fresh temporary
 * DATA_DIR per test: settings and schema, insert and get, de-duplication by
 * eventId (also across a reopen), pagination newest first per user,
 * delivery bookkeeping and the pending list.
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

#include "notification.h"
#include "../schema_testutil.h"
#include "proto/log.h"

typedef struct fixture {
  char root[256];      /* mkdtemp directory */
  char dir[300];       /* DATA_DIR: root/data/ntf, created by the store */
  ntf_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->root, sizeof(f->root), "%s/ntf-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/data/ntf", f->root);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {NTF_DB_FILE, NTF_DB_FILE "-wal", NTF_DB_FILE "-shm"};
  fixture_t *f = *state;
  char p[400];
  ntf_store_close(f->store);
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

static ntf_store_t *open_store(fixture_t *f) {
  ntf_store_close(f->store);
  f->store = NULL;
  assert_int_equal(ntf_store_open(f->dir, STORE_SYNC_FULL, &f->store), 0);
  assert_non_null(f->store);
  return f->store;
}

/* A notification for user with eventId event_id, as the handlers build it. */
static json_t *make_ntf(const char *user, const char *event_id, const char *order,
                        const char *status) {
  json_t *data = json_pack("{s:s, s:s, s:i, s:s, s:[{s:s}]}", "userId", user, "orderId", order,
                           "totalAmount", 3998, "currency", "USD", "items", "name", "caf\xc3\xa9");
  ntf_draft_t d;
  ntf_invalid_t why;
  assert_non_null(data);
  assert_int_equal(ntf_build(NTF_EV_ORDER_CREATED, data, &d, &why), 0);
  json_t *n = ntf_notification_new(&d, event_id, "order_created", data, "req-1", status);
  assert_non_null(n);
  json_decref(data);
  return n;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

static void open_sets_durable_settings(void **state) {
  fixture_t *f = *state;
  char mode[16];
  int sync = -1;
  open_store(f);
  assert_int_equal(ntf_store_settings(f->store, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, STORE_SYNC_FULL);
  assert_int_equal(ntf_store_ping(f->store), 0);
  ntf_store_close(f->store);
  f->store = NULL;
  assert_int_equal(ntf_store_open(f->dir, STORE_SYNC_NORMAL, &f->store), 0);
  assert_int_equal(ntf_store_settings(f->store, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, STORE_SYNC_NORMAL);
  ntf_store_t *bad = NULL;
  assert_int_equal(ntf_store_open(f->dir, 7, &bad), STORE_EINVAL);
  assert_null(bad);
}

static void sync_parse(void **state) {
  (void)state;
  assert_int_equal(store_sync_parse("full"), STORE_SYNC_FULL);
  assert_int_equal(store_sync_parse("NORMAL"), STORE_SYNC_NORMAL);
  assert_int_equal(store_sync_parse("Extra"), STORE_SYNC_EXTRA);
  assert_int_equal(store_sync_parse("OFF"), -1);
  assert_int_equal(store_sync_parse(NULL), -1);
}

static void refuses_newer_schema(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *db = NULL;
  open_store(f);
  ntf_store_close(f->store);
  f->store = NULL;
  snprintf(path, sizeof(path), "%s/%s", f->dir, NTF_DB_FILE);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(ntf_store_open(f->dir, STORE_SYNC_FULL, &f->store), STORE_ERROR);
  assert_null(f->store);
}

static void insert_then_get(void **state) {
  fixture_t *f = *state;
  json_t *n = make_ntf("u1", "evt_1", "ord_1", "none"), *got = NULL;
  open_store(f);
  assert_int_equal(ntf_store_insert(f->store, n), STORE_OK);
  assert_int_equal(ntf_store_get(f->store, str(n, "id"), &got), 0);
  /* What comes back is exactly what was stored, data included. */
  assert_true(json_equal(got, n));
  json_decref(got);
  assert_int_equal(ntf_store_get(f->store, "ntf_missing", &got), NTF_STORE_NOT_FOUND);
  assert_null(got);
  /* A notification without an order. */
  json_t *n2 = make_ntf("u1", "evt_2", "ord_2", "none");
  json_object_set_new(n2, "orderId", json_null());
  json_object_set_new(n2, "requestId", json_null());
  assert_int_equal(ntf_store_insert(f->store, n2), STORE_OK);
  assert_int_equal(ntf_store_get(f->store, str(n2, "id"), &got), 0);
  assert_true(json_equal(got, n2));
  json_decref(got);
  /* A required field missing. */
  json_object_del(n2, "userId");
  assert_int_equal(ntf_store_insert(f->store, n2), STORE_EINVAL);
  json_decref(n2);
  json_decref(n);
}

static void dedupe_by_event_id(void **state) {
  fixture_t *f = *state;
  json_t *a = make_ntf("u1", "evt_same", "ord_1", "none");
  json_t *b = make_ntf("u1", "evt_same", "ord_1", "none"); /* another id, same event */
  json_t *items = NULL;
  int64_t total = -1;
  open_store(f);
  assert_int_equal(ntf_store_insert(f->store, a), STORE_OK);
  assert_int_equal(ntf_store_insert(f->store, b), NTF_STORE_DUPLICATE);
  assert_int_equal(ntf_store_insert(f->store, a), NTF_STORE_DUPLICATE);
  /* Still a duplicate after a restart: the database remembers, not memory. */
  open_store(f);
  assert_int_equal(ntf_store_insert(f->store, b), NTF_STORE_DUPLICATE);
  assert_int_equal(ntf_store_list(f->store, "u1", 2, 1, 10, &items, &total), 0);
  assert_int_equal(total, 1);
  assert_int_equal(json_array_size(items), 1);
  assert_string_equal(str(json_array_get(items, 0), "id"), str(a, "id"));
  json_decref(items);
  json_decref(a);
  json_decref(b);
}

static void pagination_newest_first(void **state) {
  fixture_t *f = *state;
  char ev[32];
  json_t *ids = json_array(), *items = NULL;
  int64_t total = -1;
  open_store(f);
  /* 25 for u1 interleaved with 5 for u2; many share a millisecond, so the
   * order relies on the insertion tie-breaker. */
  for (int i = 0; i < 30; i++) {
    snprintf(ev, sizeof(ev), "evt_%d", i);
    json_t *n = make_ntf(i % 6 == 5 ? "u2" : "u1", ev, "ord", "none");
    assert_int_equal(ntf_store_insert(f->store, n), 0);
    if (i % 6 != 5)
      json_array_insert(ids, 0, json_object_get(n, "id")); /* newest first */
    json_decref(n);
  }
  assert_int_equal(json_array_size(ids), 25);
  size_t seen = 0;
  for (int64_t page = 1; page <= 3; page++) {
    assert_int_equal(ntf_store_list(f->store, "u1", 2, page, 10, &items, &total), 0);
    assert_int_equal(total, 25);
    assert_int_equal(json_array_size(items), page < 3 ? 10 : 5);
    for (size_t i = 0; i < json_array_size(items); i++, seen++) {
      json_t *n = json_array_get(items, i);
      assert_string_equal(str(n, "userId"), "u1");
      assert_string_equal(str(n, "id"), json_string_value(json_array_get(ids, seen)));
      if (i > 0) /* createdAt never increases down the page */
        assert_true(strcmp(str(json_array_get(items, i - 1), "createdAt"),
                           str(n, "createdAt")) >= 0);
    }
    json_decref(items);
  }
  assert_int_equal(seen, 25);
  assert_int_equal(ntf_store_list(f->store, "u1", 2, 4, 10, &items, &total), 0);
  assert_int_equal(json_array_size(items), 0);
  assert_int_equal(total, 25);
  json_decref(items);
  assert_int_equal(ntf_store_list(f->store, "u2", 2, 1, 100, &items, &total), 0);
  assert_int_equal(total, 5);
  assert_int_equal(json_array_size(items), 5);
  json_decref(items);
  /* user_id_len is honoured: "u1x" truncated to 2 bytes is "u1". */
  assert_int_equal(ntf_store_list(f->store, "u1x", 2, 1, 1, &items, &total), 0);
  assert_int_equal(total, 25);
  json_decref(items);
  assert_int_equal(ntf_store_list(f->store, "nobody", 6, 1, 10, &items, &total), 0);
  assert_int_equal(total, 0);
  assert_int_equal(json_array_size(items), 0);
  json_decref(items);
  assert_int_equal(ntf_store_list(f->store, "u1", 2, 1, NTF_LIMIT_MAX + 1, &items, &total),
                   STORE_EINVAL);
  assert_int_equal(ntf_store_list(f->store, "u1", 2, 0, 10, &items, &total), STORE_EINVAL);
  json_decref(ids);
}

static void delivery_bookkeeping(void **state) {
  fixture_t *f = *state;
  json_t *a = make_ntf("u1", "evt_a", "o", "pending");
  json_t *b = make_ntf("u1", "evt_b", "o", "pending");
  json_t *c = make_ntf("u1", "evt_c", "o", "none");
  json_t *items = NULL, *got = NULL;
  open_store(f);
  assert_int_equal(ntf_store_insert(f->store, a), 0);
  assert_int_equal(ntf_store_insert(f->store, b), 0);
  assert_int_equal(ntf_store_insert(f->store, c), 0);
  assert_int_equal(ntf_store_pending(f->store, 10, &items), 0);
  assert_int_equal(json_array_size(items), 2);
  assert_string_equal(str(json_array_get(items, 0), "id"), str(a, "id")); /* oldest first */
  json_decref(items);
  assert_int_equal(ntf_store_pending(f->store, 1, &items), 0);
  assert_int_equal(json_array_size(items), 1);
  json_decref(items);

  assert_int_equal(ntf_store_set_delivery(f->store, str(a, "id"), "pending", 1, "HTTP status 500"),
                   0);
  assert_int_equal(ntf_store_get(f->store, str(a, "id"), &got), 0);
  json_t *del = json_object_get(got, "delivery");
  assert_string_equal(str(del, "status"), "pending");
  assert_int_equal(json_integer_value(json_object_get(del, "attempts")), 1);
  assert_string_equal(str(del, "lastError"), "HTTP status 500");
  json_decref(got);

  assert_int_equal(ntf_store_set_delivery(f->store, str(a, "id"), "delivered", 2, NULL), 0);
  assert_int_equal(ntf_store_get(f->store, str(a, "id"), &got), 0);
  del = json_object_get(got, "delivery");
  assert_string_equal(str(del, "status"), "delivered");
  assert_int_equal(json_integer_value(json_object_get(del, "attempts")), 2);
  assert_null(json_object_get(del, "lastError"));
  json_decref(got);

  assert_int_equal(ntf_store_set_delivery(f->store, str(b, "id"), "failed", 5, "HTTP status 404"),
                   0);
  assert_int_equal(ntf_store_pending(f->store, 10, &items), 0);
  assert_int_equal(json_array_size(items), 0);
  json_decref(items);
  assert_int_equal(ntf_store_set_delivery(f->store, "ntf_nope", "failed", 1, NULL),
                   NTF_STORE_NOT_FOUND);
  assert_int_equal(ntf_store_set_delivery(f->store, str(c, "id"), "lost", 1, NULL),
                   STORE_EINVAL);
  json_decref(a);
  json_decref(b);
  json_decref(c);
}

static void oversized_data_is_refused(void **state) {
  fixture_t *f = *state;
  json_t *n = make_ntf("u1", "evt_big", "o", "none");
  char *big = malloc(NTF_DATA_MAX_BYTES + 1);
  assert_non_null(big);
  memset(big, 'x', NTF_DATA_MAX_BYTES);
  big[NTF_DATA_MAX_BYTES] = '\0';
  json_object_set_new(json_object_get(n, "data"), "blob", json_string(big));
  free(big);
  open_store(f);
  assert_int_equal(ntf_store_insert(f->store, n), STORE_EINVAL);
  json_object_set_new(n, "data", json_null());
  assert_int_equal(ntf_store_insert(f->store, n), STORE_OK);
  json_decref(n);
}

/* The schema as release 1 wrote it (frozen: it must not follow the code). */
#define NTF_V1_SCHEMA                                                                      \
  "CREATE TABLE notifications (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"          \
  " user_id TEXT NOT NULL, type TEXT NOT NULL, title TEXT NOT NULL, message TEXT NOT NULL," \
  " event_id TEXT NOT NULL UNIQUE, event_pattern TEXT NOT NULL, order_id TEXT,"            \
  " data TEXT NOT NULL, request_id TEXT, created_at TEXT NOT NULL,"                        \
  " delivery_status TEXT NOT NULL"                                                         \
  "  CHECK (delivery_status IN ('none','pending','delivered','failed')),"                   \
  " delivery_attempts INTEGER NOT NULL DEFAULT 0, delivery_error TEXT);"                   \
  "CREATE INDEX notifications_user_created ON notifications (user_id, created_at);"        \
  "CREATE INDEX notifications_pending ON notifications (seq)"                              \
  " WHERE delivery_status = 'pending';"                                                    \
  "PRAGMA user_version = 1;"

static void upgrades_a_v1_database(void **state) {
  fixture_t *f = *state;
  testutil_make_db(f->dir, NTF_DB_FILE,
                   "PRAGMA journal_mode = WAL;" NTF_V1_SCHEMA
                   "INSERT INTO notifications VALUES (7, 'ntf_old', 'user_a', 'order_confirmation',"
                   " 'T', 'M', 'evt_old', 'order_created', 'order_1', '{\"a\":1}', 'req_1',"
                   " '2026-01-01T00:00:00.000Z', 'pending', 2, 'timeout');");
  open_store(f);
  sqlite3 *db = ntf_store_db(f->store);
  assert_int_equal(testutil_user_version(db), 2);
  json_t *n = NULL;
  assert_int_equal(ntf_store_get(f->store, "ntf_old", &n), STORE_OK);
  assert_string_equal(str(n, "eventId"), "evt_old");
  assert_string_equal(str(json_object_get(n, "delivery"), "status"), "pending");
  assert_string_equal(str(json_object_get(n, "delivery"), "lastError"), "timeout");
  json_decref(n);
  /* The row kept its seq, and the partial index still finds it. */
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO notifications (seq, id, user_id, type,"
                                        " title, message, event_id, event_pattern, data,"
                                        " created_at, delivery_status) VALUES (7, 'x', 'u',"
                                        " 't', 't', 'm', 'e', 'p', '{}', 'c', 'none')"),
                   SQLITE_CONSTRAINT_PRIMARYKEY);
  json_t *pending = NULL;
  assert_int_equal(ntf_store_pending(f->store, 10, &pending), 0);
  assert_int_equal(json_array_size(pending), 1);
  json_decref(pending);
  /* Same constraint, no ephemeral table per write. */
  assert_int_equal(testutil_exec_rc(db, "UPDATE notifications SET delivery_status = 'bogus'"),
                   SQLITE_CONSTRAINT_CHECK);
  assert_false(testutil_uses_ephemeral(db, "UPDATE notifications SET delivery_status = 'none'"));
  assert_false(testutil_uses_ephemeral(
      db, "INSERT INTO notifications (id, user_id, type, title, message, event_id,"
          " event_pattern, data, created_at, delivery_status) VALUES ('a', 'b', 'c', 'd',"
          " 'e', 'f', 'g', '{}', 'h', 'none')"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(open_sets_durable_settings, setup, teardown),
      cmocka_unit_test(sync_parse),
      cmocka_unit_test_setup_teardown(refuses_newer_schema, setup, teardown),
      cmocka_unit_test_setup_teardown(insert_then_get, setup, teardown),
      cmocka_unit_test_setup_teardown(dedupe_by_event_id, setup, teardown),
      cmocka_unit_test_setup_teardown(pagination_newest_first, setup, teardown),
      cmocka_unit_test_setup_teardown(delivery_bookkeeping, setup, teardown),
      cmocka_unit_test_setup_teardown(oversized_data_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(upgrades_a_v1_database, setup, teardown),
  };
  proto_log_set_level(PROTO_LOG_WARN); /* keep store_opened lines out of the output */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
