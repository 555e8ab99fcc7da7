/* test_handlers.c: the service glue (handlers.c) over a real store in a
 * temporary DATA_DIR: each event kind becomes one notification, duplicates
 * and invalid events store nothing, events without an eventId get one,
 * get_notifications validates and pages, health, and delivery reports
 * (through a webhook whose target refuses connections) land in the store.
 * With a commit group: a burst of one loop turn shares one COMMIT, duplicates
 * within it store once, nothing is reported or delivered before the COMMIT,
 * and a failed COMMIT counts the batch as lost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "notification.h"
#include "proto/log.h"
#include "store/commit_group.h"

#define WATCHDOG_MS 10000

typedef struct fixture {
  char root[256];
  char dir[300];
  ntf_store_t *store;
  svc_t svc;                       /* what the handlers see; no loop, no group */
  ntf_app_t app;                   /* svc.app */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->root, sizeof(f->root), "%s/ntf-handlers-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/data", f->root);
  if (ntf_store_open(f->dir, STORE_SYNC_NORMAL, &f->store) != 0)
    return -1;
  ntf_svc_init(&f->svc, NULL, f->store, NULL, &f->app);
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
  rmdir(f->root);
  free(f);
  return 0;
}

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad test JSON %s: %s", text, e.text);
  return j;
}

/* Deliver one event as the subscriber would hand it over. */
static ntf_event_outcome_t event(fixture_t *f, const char *channel, const char *data_text,
                                 const char *event_id, const char *request_id, json_t **out) {
  json_t *data = parse(data_text);
  proto_event_t ev = {.channel = channel, .data = data, .event_id = event_id,
                      .request_id = request_id};
  ntf_event_outcome_t o = ntf_handle_event(&f->svc, &ev, out);
  json_decref(data);
  return o;
}

/* get_notifications for user; the response (owned) after checking success. */
static json_t *list(fixture_t *f, const char *data_text) {
  json_t *data = parse(data_text);
  svc_result_t r = ntf_op_list(&f->svc, data);
  json_decref(data);
  if (r.status != 200) {
    char *e = json_dumps(r.err, 0);
    fail_msg("get_notifications failed: %s", e ? e : "?");
  }
  assert_null(r.err);
  return r.response;
}

static json_t *list_error(fixture_t *f, const char *data_text, int status) {
  json_t *data = parse(data_text);
  svc_result_t r = ntf_op_list(&f->svc, data);
  json_decref(data);
  assert_int_equal(r.status, status);
  assert_null(r.response);
  assert_non_null(r.err);
  assert_int_equal(json_integer_value(json_object_get(r.err, "statusCode")), status);
  return r.err;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

static void each_event_kind_is_stored(void **state) {
  fixture_t *f = *state;
  json_t *n = NULL;
  assert_int_equal(event(f, "order_created",
                         "{\"orderId\":\"o1\",\"userId\":\"u1\",\"totalAmount\":3998,"
                         "\"currency\":\"USD\",\"items\":[]}",
                         "evt_1", "req-1", &n),
                   NTF_EVENT_STORED);
  assert_non_null(n);
  assert_string_equal(str(n, "message"), "Your order o1 for 39.98 USD has been received");
  assert_string_equal(str(json_object_get(n, "delivery"), "status"), "none");
  json_decref(n);
  assert_int_equal(event(f, "payment_completed",
                         "{\"paymentId\":\"p1\",\"orderId\":\"o1\",\"userId\":\"u1\","
                         "\"amount\":3998,\"currency\":\"USD\"}",
                         "evt_2", "req-1", NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(event(f, "order_status_changed",
                         "{\"orderId\":\"o1\",\"userId\":\"u1\",\"previousStatus\":\"paid\","
                         "\"newStatus\":\"shipped\"}",
                         "evt_3", "req-2", NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(event(f, "payment_refunded",
                         "{\"paymentId\":\"p1\",\"orderId\":\"o1\",\"userId\":\"u1\","
                         "\"amount\":3998,\"currency\":\"USD\"}",
                         "evt_4", "req-3", NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(event(f, "payment_failed",
                         "{\"orderId\":\"o2\",\"userId\":\"u1\",\"reason\":\"card declined\"}",
                         "evt_5", NULL, NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(f->app.stored, 5);

  json_t *page = list(f, "{\"userId\":\"u1\"}");
  json_t *items = json_object_get(page, "notifications");
  assert_int_equal(json_integer_value(json_object_get(page, "total")), 5);
  assert_int_equal(json_integer_value(json_object_get(page, "page")), 1);
  assert_int_equal(json_integer_value(json_object_get(page, "limit")), NTF_LIMIT_DEFAULT);
  assert_int_equal(json_array_size(items), 5);
  static const char *const types[] = {"payment_failed", "refund_receipt", "order_status",
                                      "payment_receipt", "order_confirmation"};
  static const char *const events[] = {"evt_5", "evt_4", "evt_3", "evt_2", "evt_1"};
  for (size_t i = 0; i < 5; i++) {
    json_t *it = json_array_get(items, i);
    assert_string_equal(str(it, "type"), types[i]); /* newest first */
    assert_string_equal(str(it, "eventId"), events[i]);
    assert_string_equal(str(it, "userId"), "u1");
  }
  json_t *last = json_array_get(items, 0);
  assert_true(json_is_null(json_object_get(last, "requestId")));
  assert_string_equal(str(last, "orderId"), "o2");
  assert_string_equal(str(last, "eventPattern"), "payment_failed");
  assert_string_equal(str(json_object_get(last, "data"), "reason"), "card declined");
  assert_string_equal(str(json_array_get(items, 2), "message"), "Your order o1 is now shipped");
  assert_string_equal(str(json_array_get(items, 2), "requestId"), "req-2");
  json_decref(page);
}

static void duplicates_store_nothing(void **state) {
  fixture_t *f = *state;
  static const char data[] =
      "{\"orderId\":\"o1\",\"userId\":\"u1\",\"totalAmount\":100,\"currency\":\"EUR\"}";
  assert_int_equal(event(f, "order_created", data, "evt_dup", "r", NULL), NTF_EVENT_STORED);
  assert_int_equal(event(f, "order_created", data, "evt_dup", "r", NULL), NTF_EVENT_DUPLICATE);
  /* Same eventId on another channel: still the same event. */
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o1\",\"userId\":\"u1\"}", "evt_dup",
                         NULL, NULL),
                   NTF_EVENT_DUPLICATE);
  assert_int_equal(f->app.stored, 1);
  assert_int_equal(f->app.duplicates, 2);
  json_t *page = list(f, "{\"userId\":\"u1\"}");
  assert_int_equal(json_integer_value(json_object_get(page, "total")), 1);
  json_decref(page);
}

static void invalid_and_unknown_events_are_dropped(void **state) {
  fixture_t *f = *state;
  assert_int_equal(event(f, "order_created",
                         "{\"orderId\":\"o1\",\"totalAmount\":100,\"currency\":\"EUR\"}", "evt_a",
                         NULL, NULL),
                   NTF_EVENT_INVALID);
  assert_int_equal(event(f, "order_created", "\"just a string\"", "evt_b", NULL, NULL),
                   NTF_EVENT_INVALID);
  assert_int_equal(event(f, "order_status_changed", "{\"orderId\":\"o1\",\"userId\":\"u1\"}",
                         "evt_c", NULL, NULL),
                   NTF_EVENT_INVALID);
  /* An eventId we would not store or log as is. */
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o1\",\"userId\":\"u1\"}",
                         "evt\nforged", NULL, NULL),
                   NTF_EVENT_INVALID);
  assert_int_equal(event(f, "inventory_reserved", "{\"orderId\":\"o1\",\"userId\":\"u1\"}", "evt_d",
                         NULL, NULL),
                   NTF_EVENT_UNKNOWN);
  assert_int_equal(f->app.invalid, 4);
  assert_int_equal(f->app.stored, 0);
  json_t *page = list(f, "{\"userId\":\"u1\"}");
  assert_int_equal(json_integer_value(json_object_get(page, "total")), 0);
  json_decref(page);
}

static void missing_event_id_is_generated(void **state) {
  fixture_t *f = *state;
  static const char data[] = "{\"orderId\":\"o1\",\"userId\":\"u7\",\"newStatus\":\"paid\"}";
  static const char other[] = "{\"orderId\":\"o1\",\"userId\":\"u7\",\"newStatus\":\"shipped\"}";
  json_t *a = NULL, *b = NULL;
  /* A plain NestJS emit: no metadata. The id derived from the content makes
   * a redelivery a duplicate; other content is another event. */
  assert_int_equal(event(f, "order_status_changed", data, NULL, NULL, &a), NTF_EVENT_STORED);
  assert_int_equal(event(f, "order_status_changed", data, NULL, NULL, NULL), NTF_EVENT_DUPLICATE);
  assert_int_equal(event(f, "order_status_changed", other, NULL, NULL, &b), NTF_EVENT_STORED);
  const char *ida = str(a, "eventId"), *idb = str(b, "eventId");
  assert_memory_equal(ida, NTF_EVENT_ID_DERIVED_PREFIX, strlen(NTF_EVENT_ID_DERIVED_PREFIX));
  assert_int_equal(strlen(ida), strlen(NTF_EVENT_ID_DERIVED_PREFIX) + NTF_EVENT_ID_DERIVED_HEX);
  assert_string_not_equal(ida, idb);
  json_decref(a);
  json_decref(b);
  json_t *page = list(f, "{\"userId\":\"u7\"}");
  assert_int_equal(json_integer_value(json_object_get(page, "total")), 2);
  json_decref(page);
}

static void oversized_data_keeps_the_notification(void **state) {
  fixture_t *f = *state;
  size_t n = NTF_DATA_MAX_BYTES + 100;
  char *text = malloc(n + 200);
  json_t *out = NULL;
  assert_non_null(text);
  int len = snprintf(text, n + 200,
                     "{\"orderId\":\"o1\",\"userId\":\"u1\",\"totalAmount\":1,\"currency\":\"USD\","
                     "\"blob\":\"");
  memset(text + len, 'x', n);
  strcpy(text + len + n, "\"}");
  assert_int_equal(event(f, "order_created", text, "evt_big", NULL, &out), NTF_EVENT_STORED);
  free(text);
  assert_true(json_is_null(json_object_get(out, "data")));
  json_decref(out);
}

static void list_validation(void **state) {
  fixture_t *f = *state;
  json_t *e = list_error(f, "{}", 400);
  assert_string_equal(str(e, "code"), "VALIDATION_FAILED");
  assert_string_equal(str(e, "message"), "userId is required");
  json_t *d = json_array_get(json_object_get(e, "details"), 0);
  assert_string_equal(str(d, "field"), "userId");
  json_decref(e);
  json_decref(list_error(f, "null", 400));
  json_decref(list_error(f, "{\"userId\":5}", 400));
  json_decref(list_error(f, "{\"userId\":\"\"}", 400));
  json_decref(list_error(f, "{\"userId\":\"u1\",\"page\":0}", 400));
  json_decref(list_error(f, "{\"userId\":\"u1\",\"page\":\"x\"}", 400));
  json_decref(list_error(f, "{\"userId\":\"u1\",\"limit\":-1}", 400));
  e = list_error(f, "{\"userId\":\"u1\",\"extra\":1}", 400);
  assert_string_equal(str(e, "message"), "extra is not allowed");
  json_decref(e);
  /* Large limits are capped; numeric strings and integral numbers accepted. */
  json_t *page = list(f, "{\"userId\":\"u1\",\"limit\":1000,\"page\":\"2\"}");
  assert_int_equal(json_integer_value(json_object_get(page, "limit")), NTF_LIMIT_MAX);
  assert_int_equal(json_integer_value(json_object_get(page, "page")), 2);
  json_decref(page);
  page = list(f, "{\"userId\":\"u1\",\"limit\":2.0}");
  assert_int_equal(json_integer_value(json_object_get(page, "limit")), 2);
  json_decref(page);
}

static void paging(void **state) {
  fixture_t *f = *state;
  char ev[32], data[128];
  for (int i = 0; i < 7; i++) {
    snprintf(ev, sizeof(ev), "evt_%d", i);
    snprintf(data, sizeof(data), "{\"orderId\":\"o%d\",\"userId\":\"u1\",\"newStatus\":\"s\"}", i);
    assert_int_equal(event(f, "order_status_changed", data, ev, NULL, NULL), NTF_EVENT_STORED);
  }
  json_t *page = list(f, "{\"userId\":\"u1\",\"page\":3,\"limit\":3}");
  json_t *items = json_object_get(page, "notifications");
  assert_int_equal(json_integer_value(json_object_get(page, "total")), 7);
  assert_int_equal(json_array_size(items), 1);
  assert_string_equal(str(json_array_get(items, 0), "orderId"), "o0"); /* the oldest */
  json_decref(page);
}

static void health(void **state) {
  fixture_t *f = *state;
  svc_result_t r = ntf_op_health(&f->svc);
  assert_int_equal(r.status, 200);
  assert_string_equal(str(r.response, "status"), "ok");
  assert_string_equal(str(r.response, "service"), "notification");
  assert_string_equal(str(r.response, "db"), "ok");
  assert_true(json_is_null(json_object_get(r.response, "redis")));
  assert_true(json_is_null(json_object_get(r.response, "webhook")));
  assert_true(json_is_object(json_object_get(r.response, "events")));
  json_decref(r.response);
}

/* --- delivery reports ------------------------------------------------------------- */

typedef struct hook_ctx {
  svc_t *svc;
  int finals;
} hook_ctx_t;

static void on_report(const ntf_webhook_report_t *r, void *ctx) {
  hook_ctx_t *h = ctx;
  ntf_on_delivery_report(r, h->svc);
  if (r->final)
    h->finals++;
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fail_msg("watchdog: test did not finish in time");
}

static void on_closed(void *arg) {
  *(int *)arg = 1;
}

static void delivery_outcome_is_recorded(void **state) {
  fixture_t *f = *state;
  uv_loop_t loop;
  uv_timer_t watchdog;
  uv_tcp_t probe;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound), closed = 0;
  hook_ctx_t h = {&f->svc, 0};
  char url[64];
  json_t *n = NULL, *got = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &watchdog);
  uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0);
  uv_unref((uv_handle_t *)&watchdog);
  /* A port that was just free: connections to it are refused. */
  uv_tcp_init(&loop, &probe);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len), 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/",
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
  uv_close((uv_handle_t *)&probe, NULL);

  ntf_webhook_opts_t o = {.url = url, .max_attempts = 2, .backoff_ms = 10};
  f->app.webhook = ntf_webhook_new(&loop, &o, on_report, &h);
  assert_non_null(f->app.webhook);
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o1\",\"userId\":\"u1\"}", "evt_w",
                         "req-w", &n),
                   NTF_EVENT_STORED);
  assert_string_equal(str(json_object_get(n, "delivery"), "status"), "pending");
  while (h.finals < 1)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(ntf_store_get(f->store, str(n, "id"), &got), 0);
  json_t *del = json_object_get(got, "delivery");
  assert_string_equal(str(del, "status"), "failed");
  assert_int_equal(json_integer_value(json_object_get(del, "attempts")), 2);
  assert_non_null(json_string_value(json_object_get(del, "lastError")));
  json_decref(got);

  /* A pending one from an "earlier run" is picked up by resume. */
  assert_int_equal(ntf_store_set_delivery(f->store, str(n, "id"), "pending", 1, "x"), 0);
  assert_int_equal(ntf_resume_pending(&f->svc), 1);
  while (h.finals < 2)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(ntf_store_get(f->store, str(n, "id"), &got), 0);
  assert_string_equal(str(json_object_get(got, "delivery"), "status"), "failed");
  json_t *attempts = json_object_get(json_object_get(got, "delivery"), "attempts");
  assert_int_equal(json_integer_value(attempts), 2);
  json_decref(got);
  json_decref(n);

  ntf_webhook_close(f->app.webhook, 0, on_closed, &closed);
  f->app.webhook = NULL;
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&watchdog, NULL);
  while (uv_run(&loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- group commit ------------------------------------------------------------------- */

typedef struct group_fx {
  uv_loop_t loop;
  uv_timer_t watchdog;
} group_fx_t;

static void group_start(fixture_t *f, group_fx_t *g) {
  assert_int_equal(uv_loop_init(&g->loop), 0);
  assert_int_equal(uv_timer_init(&g->loop, &g->watchdog), 0);
  assert_int_equal(uv_timer_start(&g->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
  uv_unref((uv_handle_t *)&g->watchdog);
  f->svc.group = store_group_new(&g->loop, ntf_store_db(f->store));
  assert_non_null(f->svc.group);
}

/* As svc_main() does: close the group (before the store), let its handles close. */
static void group_stop(fixture_t *f, group_fx_t *g) {
  store_group_close(f->svc.group);
  f->svc.group = NULL;
  uv_close((uv_handle_t *)&g->watchdog, NULL);
  while (uv_run(&g->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(uv_loop_close(&g->loop), 0);
}

static int64_t total_for(fixture_t *f, const char *user) {
  char q[64];
  snprintf(q, sizeof(q), "{\"userId\":\"%s\"}", user);
  json_t *page = list(f, q);
  int64_t n = json_integer_value(json_object_get(page, "total"));
  json_decref(page);
  return n;
}

#define BURST_EVENTS 8

static void burst_shares_one_commit(void **state) {
  fixture_t *f = *state;
  group_fx_t g;
  uv_tcp_t probe;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound), closed = 0;
  hook_ctx_t h = {&f->svc, 0};
  char url[64], ev[32], data[128];
  ntf_webhook_stats_t ws;
  store_group_stats_t st;
  group_start(f, &g);
  /* A webhook whose target refuses: shows when a delivery is submitted. */
  uv_tcp_init(&g.loop, &probe);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len), 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/",
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
  uv_close((uv_handle_t *)&probe, NULL);
  ntf_webhook_opts_t o = {.url = url, .max_attempts = 1};
  f->app.webhook = ntf_webhook_new(&g.loop, &o, on_report, &h);
  assert_non_null(f->app.webhook);

  /* One turn's burst, as one Redis read hands it over: every third event
   * repeats the previous eventId. */
  int unique = 0, dups = 0;
  for (int i = 0; i < BURST_EVENTS; i++) {
    int dup = i % 3 == 2;
    snprintf(ev, sizeof(ev), "evt_b%d", dup ? i - 1 : i);
    snprintf(data, sizeof(data), "{\"orderId\":\"o%d\",\"userId\":\"ub\",\"newStatus\":\"paid\"}",
             i);
    assert_int_equal(event(f, "order_status_changed", data, ev, "req-b", NULL),
                     dup ? NTF_EVENT_DUPLICATE : NTF_EVENT_STORED);
    dup ? dups++ : unique++;
  }
  /* Inserted into the open transaction: visible on this connection, but not
   * yet reported as stored nor handed to the webhook. */
  assert_true(store_group_in_txn(f->svc.group));
  assert_int_equal(f->app.stored, 0);
  assert_int_equal(f->app.duplicates, dups);
  ntf_webhook_stats(f->app.webhook, &ws);
  assert_int_equal(ws.active, 0);
  assert_int_equal(total_for(f, "ub"), unique);

  uv_run(&g.loop, UV_RUN_NOWAIT); /* the turn ends: COMMIT, then the deferred */
  store_group_stats(f->svc.group, &st);
  assert_int_equal(st.commits, 1);
  assert_true(st.commits < (uint64_t)unique);
  assert_int_equal(st.failures, 0);
  assert_int_equal(f->app.stored, unique);
  assert_int_equal(f->app.errors, 0);
  ntf_webhook_stats(f->app.webhook, &ws);
  assert_int_equal(ws.active, unique);

  /* The refused deliveries fail; their outcomes commit through the group. */
  while (h.finals < unique)
    uv_run(&g.loop, UV_RUN_ONCE);
  ntf_webhook_close(f->app.webhook, 0, on_closed, &closed);
  f->app.webhook = NULL;
  while (!closed)
    uv_run(&g.loop, UV_RUN_ONCE);
  group_stop(f, &g);
  json_t *page = list(f, "{\"userId\":\"ub\",\"limit\":100}");
  json_t *items = json_object_get(page, "notifications"), *it;
  size_t i;
  assert_int_equal(json_array_size(items), unique);
  json_array_foreach(items, i, it) {
    assert_string_equal(str(json_object_get(it, "delivery"), "status"), "failed");
  }
  json_decref(page);
  assert_int_equal(f->app.errors, 0);
}

static void failed_commit_loses_the_batch(void **state) {
  fixture_t *f = *state;
  group_fx_t g;
  store_group_stats_t st;
  sqlite3 *db = ntf_store_db(f->store);
  /* A deferred foreign-key violation makes the COMMIT itself fail. */
  assert_int_equal(sqlite3_exec(db,
                                "PRAGMA foreign_keys=ON;"
                                "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                                "CREATE TABLE c(pid INTEGER REFERENCES p(id) "
                                "DEFERRABLE INITIALLY DEFERRED)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  group_start(f, &g);
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o1\",\"userId\":\"uf\"}", "evt_f1",
                         NULL, NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o2\",\"userId\":\"uf\"}", "evt_f2",
                         NULL, NULL),
                   NTF_EVENT_STORED);
  assert_int_equal(sqlite3_exec(db, "INSERT INTO c VALUES(5)", NULL, NULL, NULL), SQLITE_OK);
  uv_run(&g.loop, UV_RUN_NOWAIT);
  store_group_stats(f->svc.group, &st);
  assert_int_equal(st.failures, 1);
  assert_int_equal(f->app.stored, 0);
  assert_int_equal(f->app.errors, 2);
  assert_int_equal(total_for(f, "uf"), 0);
  /* The next turn starts clean: the same event is stored, not a duplicate. */
  assert_int_equal(sqlite3_exec(db, "PRAGMA foreign_keys=OFF", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(event(f, "payment_failed", "{\"orderId\":\"o1\",\"userId\":\"uf\"}", "evt_f1",
                         NULL, NULL),
                   NTF_EVENT_STORED);
  group_stop(f, &g); /* close commits what is open */
  assert_int_equal(f->app.stored, 1);
  assert_int_equal(total_for(f, "uf"), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(each_event_kind_is_stored, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicates_store_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(invalid_and_unknown_events_are_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_event_id_is_generated, setup, teardown),
      cmocka_unit_test_setup_teardown(oversized_data_keeps_the_notification, setup, teardown),
      cmocka_unit_test_setup_teardown(list_validation, setup, teardown),
      cmocka_unit_test_setup_teardown(paging, setup, teardown),
      cmocka_unit_test_setup_teardown(health, setup, teardown),
      cmocka_unit_test_setup_teardown(delivery_outcome_is_recorded, setup, teardown),
      cmocka_unit_test_setup_teardown(burst_shares_one_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_commit_loses_the_batch, setup, teardown),
  };
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return 1;
  proto_log_set_level(PROTO_LOG_ERROR);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
