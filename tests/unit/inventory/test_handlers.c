/* test_handlers.c: the inventory operations behind the RPC handlers
 * (handlers.c) and the sweeper (sweeper.c) on a temporary store with a clock
 * the test moves: reply and error objects as a caller sees them, the replay
 * flag, the settings, and the sweep timer releasing an expired reservation
 * through a real commit group on a real loop.
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

#include "inventory.h"

#define T0 1767225600000LL

typedef struct fixture {
  char dir[256];
  inventory_store_t *store;
  int64_t now;                     /* the clock the service reads */
  inventory_app_t app;
  svc_t svc;                       /* no group: writes autocommit */
} fixture_t;

static int64_t test_clock(void *arg) {
  return ((fixture_t *)arg)->now;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/inventory-handlers-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || inventory_store_open(f->dir, STORE_SYNC_NORMAL, &f->store) != 0)
    return -1;
  f->now = T0;
  f->app = (inventory_app_t){.now_ms = test_clock, .now_arg = f, .ttl_ms = 1000,
                             .sweep_interval_ms = 10};
  inventory_svc_init(&f->svc, NULL, f->store, NULL, &f->app);
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

typedef svc_result_t (*op_fn)(svc_t *, const json_t *);

static svc_result_t run(fixture_t *f, op_fn op, const char *data_text) {
  json_t *d = json_loads(data_text, JSON_DECODE_ANY, NULL);
  assert_non_null(d);
  svc_result_t r = op(&f->svc, d);
  json_decref(d);
  return r;
}

static json_t *run_ok(fixture_t *f, op_fn op, const char *data_text) {
  svc_result_t r = run(f, op, data_text);
  if (r.status != 200) {
    char *e = json_dumps(r.err, JSON_COMPACT);
    fail_msg("status %d: %s", r.status, e ? e : "?");
  }
  return r.response;
}

/* r is an error with this status and code; returns its message. */
static void assert_err(svc_result_t *r, int status, const char *code, const char *message) {
  assert_int_equal(r->status, status);
  assert_non_null(r->err);
  assert_string_equal(json_string_value(json_object_get(r->err, "code")), code);
  if (message)
    assert_string_equal(json_string_value(json_object_get(r->err, "message")), message);
  svc_result_free(r);
}

static int64_t reserved_of(fixture_t *f, const char *id) {
  char q[200];
  snprintf(q, sizeof(q), "{\"id\":\"%s\"}", id);
  json_t *p = run_ok(f, inventory_op_get_product, q);
  int64_t v = (int64_t)json_integer_value(json_object_get(p, "reserved"));
  json_decref(p);
  return v;
}

static void product_replies(void **state) {
  fixture_t *f = *state;
  json_t *p = run_ok(f, inventory_op_create_product,
                     "{\"id\":\"p1\",\"name\":\"Keyboard\",\"price\":1999,\"stock\":10}");
  json_t *want = json_loads("{\"id\":\"p1\",\"name\":\"Keyboard\",\"price\":1999,"
                            "\"currency\":\"USD\",\"stock\":10,\"reserved\":0,"
                            "\"available\":10,\"createdAt\":\"2026-01-01T00:00:00.000Z\","
                            "\"updatedAt\":\"2026-01-01T00:00:00.000Z\"}", 0, NULL);
  assert_true(json_equal(p, want));
  json_decref(want);
  json_decref(p);
  svc_result_t r = run(f, inventory_op_create_product, "{\"id\":\"p1\",\"name\":\"K\",\"price\":1}");
  assert_err(&r, 409, "PRODUCT_EXISTS", NULL);
  r = run(f, inventory_op_get_product, "{\"id\":\"zz\"}");
  assert_err(&r, 404, "PRODUCT_NOT_FOUND", "Product not found");
  r = run(f, inventory_op_restock, "{\"id\":\"p1\",\"quantity\":1000000000}");
  assert_err(&r, 409, "STOCK_LIMIT", NULL);
  r = run(f, inventory_op_get_products, "{\"limit\":0}");
  assert_err(&r, 400, "VALIDATION_FAILED", NULL);
  p = run_ok(f, inventory_op_get_products, "null");
  assert_int_equal(json_integer_value(json_object_get(p, "total")), 1);
  json_decref(p);
  svc_result_t h = inventory_op_health(&f->svc);
  assert_int_equal(h.status, 200);
  svc_result_free(&h);
}

static void reservation_replies(void **state) {
  fixture_t *f = *state;
  json_decref(run_ok(f, inventory_op_create_product,
                     "{\"id\":\"p1\",\"name\":\"A\",\"price\":100,\"stock\":10}"));
  json_decref(run_ok(f, inventory_op_create_product,
                     "{\"id\":\"p2\",\"name\":\"B\",\"price\":5,\"currency\":\"EUR\",\"stock\":1}"));
  svc_result_t r = run(f, inventory_op_reserve,
                       "{\"orderId\":\"o1\",\"items\":[{\"productId\":\"p2\",\"quantity\":2},"
                       "{\"productId\":\"p1\",\"quantity\":99}]}");
  assert_int_equal(json_array_size(json_object_get(r.err, "details")), 2);
  assert_err(&r, 409, "OUT_OF_STOCK", "Out of stock: p1, p2");
  r = run(f, inventory_op_reserve,
          "{\"orderId\":\"o1\",\"items\":[{\"productId\":\"nope\",\"quantity\":1}]}");
  assert_err(&r, 404, "PRODUCT_NOT_FOUND", "Product not found: nope");

  const char *req = "{\"orderId\":\"o1\",\"items\":[{\"productId\":\"p2\",\"quantity\":1},"
                    "{\"productId\":\"p1\",\"quantity\":2,\"price\":1}]}";
  r = run(f, inventory_op_reserve, req);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.replayed, 0);
  json_t *want = json_loads("{\"orderId\":\"o1\",\"state\":\"reserved\",\"items\":["
                            "{\"productId\":\"p1\",\"quantity\":2,\"price\":100,\"currency\":\"USD\"},"
                            "{\"productId\":\"p2\",\"quantity\":1,\"price\":5,\"currency\":\"EUR\"}],"
                            "\"expiresAt\":\"2026-01-01T00:00:01.000Z\","
                            "\"createdAt\":\"2026-01-01T00:00:00.000Z\"}", 0, NULL);
  assert_true(json_equal(r.response, want));
  svc_result_free(&r);
  f->now += 10;
  r = run(f, inventory_op_reserve, req);
  assert_int_equal(r.replayed, 1);
  assert_true(json_equal(r.response, want));
  svc_result_free(&r);
  json_decref(want);
  r = run(f, inventory_op_reserve,
          "{\"orderId\":\"o1\",\"items\":[{\"productId\":\"p1\",\"quantity\":2}]}");
  assert_err(&r, 409, "RESERVATION_MISMATCH", NULL);

  json_t *c = run_ok(f, inventory_op_commit, "{\"orderId\":\"o1\"}");
  assert_string_equal(json_string_value(json_object_get(c, "state")), "committed");
  json_decref(c);
  r = run(f, inventory_op_release, "{\"orderId\":\"o1\"}");
  assert_err(&r, 409, "RESERVATION_COMMITTED", NULL);
  r = run(f, inventory_op_commit, "{\"orderId\":\"o9\"}");
  assert_err(&r, 404, "RESERVATION_NOT_FOUND", NULL);
  json_decref(run_ok(f, inventory_op_release, "{\"orderId\":\"o9\"}"));
  r = run(f, inventory_op_commit, "{\"orderId\":\"o9\"}");
  assert_err(&r, 409, "RESERVATION_RELEASED", NULL);
  r = run(f, inventory_op_release, "{\"order\":\"o9\"}");
  assert_err(&r, 400, "VALIDATION_FAILED", "orderId is required; order is not allowed");
}

/* get_reservation reads a reservation's state without changing anything: 404
 * before any, reserved with its items, committed after the commit, released
 * (items []) for a release that came first; the stock is untouched. */
static void reservation_reads(void **state) {
  fixture_t *f = *state;
  json_decref(run_ok(f, inventory_op_create_product,
                     "{\"id\":\"p1\",\"name\":\"A\",\"price\":100,\"stock\":10}"));
  svc_result_t r = run(f, inventory_op_get_reservation, "{\"orderId\":\"o1\"}");
  assert_err(&r, 404, "RESERVATION_NOT_FOUND", "No reservation for this order");
  /* A read of nothing leaves no tombstone: a reserve still works. */
  json_decref(run_ok(f, inventory_op_reserve,
                     "{\"orderId\":\"o1\",\"items\":[{\"productId\":\"p1\",\"quantity\":3}]}"));
  json_t *want = json_loads("{\"orderId\":\"o1\",\"state\":\"reserved\",\"items\":["
                            "{\"productId\":\"p1\",\"quantity\":3,\"price\":100,\"currency\":\"USD\"}],"
                            "\"expiresAt\":\"2026-01-01T00:00:01.000Z\","
                            "\"createdAt\":\"2026-01-01T00:00:00.000Z\"}", 0, NULL);
  json_t *got = run_ok(f, inventory_op_get_reservation, "{\"orderId\":\"o1\"}");
  assert_true(json_equal(got, want));
  json_decref(got);
  assert_int_equal(reserved_of(f, "p1"), 3);
  json_decref(run_ok(f, inventory_op_commit, "{\"orderId\":\"o1\"}"));
  got = run_ok(f, inventory_op_get_reservation, "{\"orderId\":\"o1\"}");
  assert_string_equal(json_string_value(json_object_get(got, "state")), "committed");
  assert_true(json_equal(json_object_get(got, "items"), json_object_get(want, "items")));
  json_decref(got);
  json_decref(want);
  assert_int_equal(reserved_of(f, "p1"), 0);

  json_decref(run_ok(f, inventory_op_release, "{\"orderId\":\"o2\"}"));
  got = run_ok(f, inventory_op_get_reservation, "{\"orderId\":\"o2\"}");
  want = json_loads("{\"orderId\":\"o2\",\"state\":\"released\",\"items\":[]}", 0, NULL);
  assert_true(json_equal(got, want));
  json_decref(got);
  json_decref(want);

  r = run(f, inventory_op_get_reservation, "{\"id\":\"o1\"}");
  assert_err(&r, 400, "VALIDATION_FAILED", "orderId is required; id is not allowed");
  r = run(f, inventory_op_get_reservation, "null");
  assert_err(&r, 400, "VALIDATION_FAILED", NULL);
}

static void settings(void **state) {
  (void)state;
  inventory_app_t app = {0};
  assert_int_equal(unsetenv("INVENTORY_RESERVATION_TTL_S"), 0);
  assert_int_equal(unsetenv("INVENTORY_SWEEP_INTERVAL_MS"), 0);
  assert_int_equal(inventory_settings_from_env(&app), 0);
  assert_int_equal(app.ttl_ms, 900000);
  assert_int_equal(app.sweep_interval_ms, 5000);
  assert_int_equal(setenv("INVENTORY_RESERVATION_TTL_S", "2592000", 1), 0);
  assert_int_equal(inventory_settings_from_env(&app), 0);
  assert_int_equal(app.ttl_ms, 2592000000LL);
  static const char *const bad[] = {"0", "2592001", "-5", "15m"};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(setenv("INVENTORY_RESERVATION_TTL_S", bad[i], 1), 0);
    assert_int_equal(inventory_settings_from_env(&app), -1);
  }
  assert_int_equal(unsetenv("INVENTORY_RESERVATION_TTL_S"), 0);
  assert_int_equal(setenv("INVENTORY_SWEEP_INTERVAL_MS", "9", 1), 0);
  assert_int_equal(inventory_settings_from_env(&app), -1);
  assert_int_equal(unsetenv("INVENTORY_SWEEP_INTERVAL_MS"), 0);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fail_msg("the sweeper did not release the reservation in time");
}

static void sweeper_on_a_loop(void **state) {
  fixture_t *f = *state;
  uv_loop_t loop;
  uv_timer_t watchdog;
  assert_int_equal(uv_loop_init(&loop), 0);
  store_group_t *g = store_group_new(&loop, inventory_store_db(f->store));
  assert_non_null(g);
  inventory_svc_init(&f->svc, &loop, f->store, g, &f->app);

  json_decref(run_ok(f, inventory_op_create_product,
                     "{\"id\":\"p1\",\"name\":\"A\",\"price\":1,\"stock\":3}"));
  json_decref(run_ok(f, inventory_op_reserve,
                     "{\"orderId\":\"lost\",\"items\":[{\"productId\":\"p1\",\"quantity\":3}]}"));
  assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0); /* the turn's COMMIT */
  assert_int_equal(reserved_of(f, "p1"), 3);

  assert_int_equal(uv_timer_init(&loop, &watchdog), 0);
  assert_int_equal(uv_timer_start(&watchdog, on_watchdog, 10000, 0), 0);
  assert_int_equal(inventory_sweeper_start(&f->svc), 0);
  /* Not expired yet: sweeps change nothing. */
  for (int i = 0; i < 3; i++)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(reserved_of(f, "p1"), 3);
  f->now += 1000; /* the TTL */
  while (reserved_of(f, "p1") != 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(f->app.swept, 1);

  inventory_sweeper_stop(&f->svc);
  inventory_sweeper_stop(&f->svc); /* twice is harmless */
  uv_close((uv_handle_t *)&watchdog, NULL);
  store_group_close(g);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* Committed by the group: visible after a reopen. */
  inventory_store_close(f->store);
  assert_int_equal(inventory_store_open(f->dir, STORE_SYNC_NORMAL, &f->store), 0);
  inventory_svc_init(&f->svc, NULL, f->store, NULL, &f->app);
  assert_int_equal(reserved_of(f, "p1"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(product_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(reservation_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(reservation_reads, setup, teardown),
      cmocka_unit_test(settings),
      cmocka_unit_test_setup_teardown(sweeper_on_a_loop, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
