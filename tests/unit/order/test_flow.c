/* test_flow.c: create_order (the saga), refund_order and update_order_status
 * end to end on one loop: the order handlers on a real RPC server, fake user,
 * payment and inventory services on another, a test client calling the order
 * server. The saga's main paths: confirmed with the catalogue's prices,
 * declined, out of stock, a changed price, inventory or payment down at the
 * first try, a charge that times out once, the caller's deadline passing
 * while the charge hangs, a reservation gone at commit, a release that fails
 * before it succeeds, resume of a saga in each state, the busy guard, the
 * saga's history and the events. Then the status machine over RPC and the
 * refund flow. Group commit: every event and charge is checked, as it
 * happens, against a second connection that sees only committed rows; a
 * failed commit answers 500 and leaves nothing. No sleeps: the loop runs
 * until a condition holds, under a watchdog; every test ends with
 * uv_loop_close() == 0.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "order.h"
#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"

#define WATCHDOG_MS 20000
#define HELD_MAX 8
#define RETRY_MAX_MS 20          /* the saga's backoff cap: retries come quickly */

/* The catalogue of the fake inventory, in minor units. */
#define PRICE_1 1999
#define PRICE_2 250
#define TOTAL (2 * PRICE_1 + 3 * PRICE_2)

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  char dir[256];
  order_store_t *store;
  store_group_t *group;            /* group commit on the store */
  sqlite3 *peek;                   /* a second connection: sees only committed rows */
  proto_rpc_server_t *fake;        /* the fake user, payment and inventory services */
  proto_rpc_server_t *srv;         /* the order service */
  proto_rpc_client_t *user;        /* order -> fake */
  proto_rpc_client_t *payment;     /* order -> fake */
  proto_rpc_client_t *inventory;   /* order -> fake */
  proto_rpc_client_t *dead;        /* a client to a port nobody listens on */
  proto_rpc_client_t *cli;         /* test -> order */
  svc_t svc;
  order_app_t app;                 /* svc.app: the flows and sagas in flight */
  json_t *events;                  /* [{pattern, data, requestId}] published */
  json_t *payments;                /* process_payment data received by the fake */
  json_t *refunds;                 /* refund_payment data received by the fake */
  json_t *reserves, *commits, *releases; /* inventory calls received */
  char last_payment_rid[64];       /* requestId metadata of the last process_payment */
  proto_rpc_call_t *held[HELD_MAX];/* fake calls left unanswered ("hold") */
  size_t nheld;
  int refund_mode;                 /* 0 ok, 1 reject (409), 2 hold */
  int pay_hold;                    /* process_payment calls to hold before answering */
  int reserve_mode;                /* 0 ok, 1 409 OUT_OF_STOCK */
  int commit_mode;                 /* 0 ok, 1 409 RESERVATION_RELEASED */
  int release_fail;                /* release_inventory calls to fail (500) first */
} fixture_t;

typedef struct result {
  int done;
  int status;
  json_t *response;
  json_t *err;
} result_t;

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fail_msg("watchdog: test did not finish in time");
}

/* Run the loop until cond holds; the watchdog is the deadline (it keeps the
 * loop alive, so UV_RUN_ONCE always returns). */
#define WAIT_FOR(f, cond)                                                                    \
  do {                                                                                       \
    while (!(cond))                                                                          \
      uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
  } while (0)

/* --- what is durable ------------------------------------------------------------ */

/* The order's status as committed (read on f->peek, which cannot see the
 * commit group's open transaction), into buf; "" when no such row. */
static const char *durable_status(fixture_t *f, const char *id, char *buf, size_t size) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->peek, "SELECT status FROM orders WHERE id = ?1", -1,
                                      &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT), SQLITE_OK);
  int rc = sqlite3_step(st);
  assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
  snprintf(buf, size, "%s", rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "");
  sqlite3_finalize(st);
  return buf;
}

/* The saga's state as committed, "" when no row. */
static const char *durable_saga(fixture_t *f, const char *id, char *buf, size_t size) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->peek, "SELECT state FROM sagas WHERE order_id = ?1",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT), SQLITE_OK);
  int rc = sqlite3_step(st);
  assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
  snprintf(buf, size, "%s", rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "");
  sqlite3_finalize(st);
  return buf;
}

/* --- the fakes ------------------------------------------------------------------ */

static void hold(fixture_t *f, proto_rpc_call_t *call) {
  assert_true(f->nheld < HELD_MAX);
  f->held[f->nheld++] = call;
}

static void fake_get_user(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  const char *id = json_string_value(json_object_get(data, "id"));
  if (id && strcmp(id, "user_missing") == 0)
    proto_rpc_call_fail(call, 404, "USER_NOT_FOUND", "User not found");
  else if (id && strcmp(id, "user_hold") == 0)
    hold(f, call);
  else if (id && strcmp(id, "user_broken") == 0)
    proto_rpc_call_fail(call, 500, "STORAGE_ERROR", "Storage error");
  else
    proto_rpc_call_reply(call, json_pack("{s:s, s:s, s:s}", "id", id ? id : "", "email",
                                         "a@example.com", "name", "Ada"));
}

static json_t *payment_object(const json_t *data, const char *status, const char *reason) {
  char pid[PROTO_ID_MAX + 8];
  snprintf(pid, sizeof(pid), "pay_%s", json_string_value(json_object_get(data, "orderId")));
  return json_pack("{s:s, s:O, s:O, s:s, s:s?}", "id", pid, "orderId",
                   json_object_get(data, "orderId"), "amount", json_object_get(data, "amount"),
                   "status", status, "reason", reason);
}

static void fake_process_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  const char *m = json_string_value(json_object_get(data, "paymentMethod"));
  const char *rid = proto_rpc_call_request_id(call);
  char st[32];
  /* Charged only once the pending order (priced) is on disk. */
  assert_string_equal(
      durable_status(f, json_string_value(json_object_get(data, "orderId")), st, sizeof(st)),
      "pending");
  json_array_append(f->payments, (json_t *)data);
  snprintf(f->last_payment_rid, sizeof(f->last_payment_rid), "%s", rid ? rid : "");
  if (!m)
    m = "";
  if (f->pay_hold > 0) {
    f->pay_hold--;
    hold(f, call);
  } else if (strcmp(m, "tok_visa") == 0) {
    proto_rpc_call_reply(call, payment_object(data, "succeeded", NULL));
  } else if (strcmp(m, "tok_chargeDeclined") == 0) {
    proto_rpc_call_reply(call, payment_object(data, "declined", "card_declined"));
  } else {
    proto_rpc_call_reply_err(
        call, proto_error_object(400, "INVALID_PAYMENT_METHOD", "Unknown payment method",
                                 json_pack("[{s:s, s:s}]", "field", "paymentMethod",
                                           "message", "is not a known payment method")));
  }
}

static void fake_refund_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  json_array_append(f->refunds, (json_t *)data);
  if (f->refund_mode == 1)
    proto_rpc_call_fail(call, 409, "NOT_REFUNDABLE", "Payment cannot be refunded");
  else if (f->refund_mode == 2)
    hold(f, call);
  else
    proto_rpc_call_reply(call, json_pack("{s:O, s:s}", "orderId",
                                         json_object_get(data, "orderId"), "status",
                                         "refunded"));
}

static void fake_reserve(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  json_array_append(f->reserves, (json_t *)data);
  if (f->reserve_mode == 1) {
    proto_rpc_call_reply_err(
        call, proto_error_object(409, "OUT_OF_STOCK", "Not enough stock",
                                 json_pack("[{s:s, s:i, s:i}]", "productId", "prod-2",
                                           "requested", 3, "available", 1)));
    return;
  }
  json_t *items = json_array();
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(data, "items"), i, it) {
    const char *pid = json_string_value(json_object_get(it, "productId"));
    json_array_append_new(items, json_pack("{s:s, s:O, s:i}", "productId", pid, "quantity",
                                           json_object_get(it, "quantity"), "price",
                                           strcmp(pid, "prod-1") == 0 ? PRICE_1 : PRICE_2));
  }
  proto_rpc_call_reply(call, json_pack("{s:O, s:s, s:o}", "orderId",
                                       json_object_get(data, "orderId"), "status", "reserved",
                                       "items", items));
}

static void fake_commit(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  json_array_append(f->commits, (json_t *)data);
  if (f->commit_mode == 1)
    proto_rpc_call_fail(call, 409, "RESERVATION_RELEASED", "The reservation was released");
  else
    proto_rpc_call_reply(call, json_pack("{s:O, s:s}", "orderId",
                                         json_object_get(data, "orderId"), "status",
                                         "committed"));
}

static void fake_release(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  fixture_t *f = ctx;
  json_array_append(f->releases, (json_t *)data);
  if (f->release_fail > 0) {
    f->release_fail--;
    proto_rpc_call_fail(call, 500, "STORAGE_ERROR", "Storage error");
    return;
  }
  proto_rpc_call_reply(call, json_pack("{s:O, s:s}", "orderId",
                                       json_object_get(data, "orderId"), "status", "released"));
}

static void answer_held(fixture_t *f, json_t *response) {
  for (size_t i = 0; i < f->nheld; i++)
    proto_rpc_call_reply(f->held[i], i == 0 && response ? response : json_null());
  f->nheld = 0;
}

/* --- event recorder -------------------------------------------------------------- */

static int record_event(void *arg, const char *pattern, json_t *data, const char *request_id,
                        char event_id_out[PROTO_ID_MAX]) {
  fixture_t *f = arg;
  char st[32];
  /* Published from the commit's continuation: what the event says must
   * already be committed. */
  const char *id = json_string_value(json_object_get(data, "orderId"));
  const char *want = strcmp(pattern, "order_created") == 0     ? "pending"
                     : strcmp(pattern, "order_completed") == 0 ? "confirmed"
                     : strcmp(pattern, "order_failed") == 0    ? "cancelled"
                               : json_string_value(json_object_get(data, "newStatus"));
  assert_non_null(id);
  assert_non_null(want);
  assert_string_equal(durable_status(f, id, st, sizeof(st)), want);
  json_array_append_new(f->events, json_pack("{s:s, s:o, s:s?}", "pattern", pattern, "data",
                                             data, "requestId", request_id));
  if (event_id_out)
    event_id_out[0] = '\0';
  return 0;
}

/* The patterns of the events about order id, in order, joined by ",". */
static const char *events_of(fixture_t *f, const char *id, char *buf, size_t size) {
  size_t i, n = 0;
  json_t *ev;
  buf[0] = '\0';
  json_array_foreach(f->events, i, ev) {
    const char *o = json_string_value(json_object_get(json_object_get(ev, "data"), "orderId"));
    if (o && strcmp(o, id) == 0)
      n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "," : "",
                            json_string_value(json_object_get(ev, "pattern")));
    assert_true(n < size);
  }
  return buf;
}

static json_t *event_data(fixture_t *f, const char *id, const char *pattern) {
  size_t i;
  json_t *ev;
  json_array_foreach(f->events, i, ev) {
    json_t *d = json_object_get(ev, "data");
    const char *o = json_string_value(json_object_get(d, "orderId"));
    if (o && strcmp(o, id) == 0 &&
        strcmp(json_string_value(json_object_get(ev, "pattern")), pattern) == 0)
      return d;
  }
  fail_msg("no %s event for %s", pattern, id);
  return NULL;
}

/* --- fixture --------------------------------------------------------------------- */

static void on_server_done(void *arg) {
  *(proto_rpc_server_t **)arg = NULL;
}

static void stop_server(fixture_t *f, proto_rpc_server_t **srv) {
  proto_rpc_server_shutdown(*srv, 1000, on_server_done, srv);
  while (*srv)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  proto_log_set_level(PROTO_LOG_ERROR);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
  assert_int_equal(uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
  snprintf(f->dir, sizeof(f->dir), "%s/order-flow-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(order_store_open(f->dir, STORE_SYNC_NORMAL, &f->store), 0);
  char db[300];
  snprintf(db, sizeof(db), "%s/order.db", f->dir);
  assert_int_equal(sqlite3_open_v2(db, &f->peek, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  f->events = json_array();
  f->payments = json_array();
  f->refunds = json_array();
  f->reserves = json_array();
  f->commits = json_array();
  f->releases = json_array();

  /* A port nobody listens on: a server's, once it is gone. */
  proto_rpc_server_t *gone = proto_rpc_server_new(&f->loop, NULL);
  assert_int_equal(proto_rpc_server_listen(gone, "127.0.0.1", 0), 0);
  int dead_port = proto_rpc_server_port(gone);
  stop_server(f, &gone);

  f->fake = proto_rpc_server_new(&f->loop, NULL);
  assert_non_null(f->fake);
  assert_int_equal(proto_rpc_server_handle_cmd(f->fake, "get_user", fake_get_user, f), 0);
  assert_int_equal(
      proto_rpc_server_handle_cmd(f->fake, "process_payment", fake_process_payment, f), 0);
  assert_int_equal(
      proto_rpc_server_handle_cmd(f->fake, "refund_payment", fake_refund_payment, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->fake, "reserve_inventory", fake_reserve, f),
                   0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->fake, "commit_inventory", fake_commit, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->fake, "release_inventory", fake_release, f),
                   0);
  assert_int_equal(proto_rpc_server_listen(f->fake, "127.0.0.1", 0), 0);
  int fake_port = proto_rpc_server_port(f->fake);

  proto_rpc_client_opts_t o = {.timeout_ms = 3000, .backoff_min_ms = 10, .backoff_max_ms = 40};
  f->user = proto_rpc_client_new(&f->loop, "user", "127.0.0.1", fake_port, &o);
  f->payment = proto_rpc_client_new(&f->loop, "payment", "127.0.0.1", fake_port, &o);
  f->inventory = proto_rpc_client_new(&f->loop, "inventory", "127.0.0.1", fake_port, &o);
  f->dead = proto_rpc_client_new(&f->loop, "dead", "127.0.0.1", dead_port, &o);
  assert_non_null(f->user);
  assert_non_null(f->payment);
  assert_non_null(f->inventory);
  assert_non_null(f->dead);
  f->group = store_group_new(&f->loop, order_store_db(f->store));
  assert_non_null(f->group);
  order_svc_init(&f->svc, &f->loop, f->store, f->group, &f->app);
  f->app.saga.retry_max_ms = RETRY_MAX_MS;
  f->app.saga.resume_max = ORDER_SAGA_RESUME_MAX_DEFAULT;
  f->svc.upstream[ORDER_UPSTREAM_USER] = f->user;
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->payment;
  f->svc.upstream[ORDER_UPSTREAM_INVENTORY] = f->inventory;
  f->svc.n_upstreams = ORDER_UPSTREAMS_;
  f->svc.rpc_timeout_ms = 3000;
  f->svc.publish = record_event;
  f->svc.publish_arg = f;

  f->srv = proto_rpc_server_new(&f->loop, NULL);
  assert_non_null(f->srv);
  assert_int_equal(order_handlers_register(f->srv, &f->svc), 0);
  assert_int_equal(proto_rpc_server_listen(f->srv, "127.0.0.1", 0), 0);
  proto_rpc_client_opts_t co = {.timeout_ms = 8000};
  f->cli = proto_rpc_client_new(&f->loop, "test", "127.0.0.1", proto_rpc_server_port(f->srv),
                                &co);
  assert_non_null(f->cli);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"order.db", "order.db-wal", "order.db-shm"};
  fixture_t *f = *state;
  char p[400];
  proto_rpc_client_close(f->cli);
  answer_held(f, NULL);
  stop_server(f, &f->srv);   /* waits for calls still in flight */
  /* Every test lets its sagas end; one left running would be a defect. */
  assert_int_equal(f->app.nflows, 0);
  order_saga_stop(&f->svc);  /* frees the resumer, if a test started one */
  proto_rpc_client_close(f->user);
  proto_rpc_client_close(f->payment);
  proto_rpc_client_close(f->inventory);
  proto_rpc_client_close(f->dead);
  answer_held(f, NULL);
  stop_server(f, &f->fake);
  store_group_close(f->group);   /* before the store; the loop closes its handles */
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  sqlite3_close(f->peek);
  order_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  order_inflight_free(&f->svc);
  json_decref(f->events);
  json_decref(f->payments);
  json_decref(f->refunds);
  json_decref(f->reserves);
  json_decref(f->commits);
  json_decref(f->releases);
  free(f);
  return 0;
}

/* --- calling the order service ------------------------------------------------------ */

static void on_result(const proto_rpc_result_t *res, void *arg) {
  result_t *r = arg;
  assert_int_equal(r->done, 0); /* exactly once */
  r->done = 1;
  r->status = res->status;
  r->response = res->response ? json_deep_copy(res->response) : NULL;
  r->err = res->err ? json_deep_copy(res->err) : NULL;
}

static void send_cmd(fixture_t *f, const char *cmd, json_t *data, const char *rid,
                     result_t *r) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(proto_rpc_client_send(f->cli, cmd, data, rid, 0, on_result, r), 0);
}

static void wait_result(fixture_t *f, result_t *r) {
  WAIT_FOR(f, r->done);
}

static result_t call(fixture_t *f, const char *cmd, json_t *data, const char *rid) {
  result_t r;
  send_cmd(f, cmd, data, rid, &r);
  wait_result(f, &r);
  return r;
}

static void result_clear(result_t *r) {
  json_decref(r->response);
  json_decref(r->err);
  memset(r, 0, sizeof(*r));
}

/* An order without prices: the catalogue's apply. */
static json_t *order_body(const char *user, const char *method) {
  return json_pack("{s:s, s:[{s:s, s:i}, {s:s, s:i}], s:s}", "userId", user, "items",
                   "productId", "prod-1", "quantity", 2, "productId", "prod-2", "quantity", 3,
                   "paymentMethod", method);
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s' in %s", key, json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY));
  return v;
}

static void assert_ok(const result_t *r) {
  if (r->status != PROTO_OK) {
    char *e = r->err ? json_dumps(r->err, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fail_msg("expected success, got %s %s", proto_err_name(r->status), e ? e : "");
  }
}

static void assert_err(const result_t *r, int status, const char *code) {
  if (r->status != PROTO_EREMOTE)
    fail_msg("expected an error reply %d, got %s", status, proto_err_name(r->status));
  if (json_integer_value(json_object_get(r->err, "statusCode")) != status ||
      strcmp(str(r->err, "code"), code) != 0)
    fail_msg("expected %d %s, got %s", status, code,
             json_dumps(r->err, JSON_COMPACT | JSON_ENCODE_ANY));
}

static json_t *get_order(fixture_t *f, const char *id) {
  result_t r = call(f, "get_order", json_pack("{s:s}", "id", id), NULL);
  assert_ok(&r);
  json_t *o = r.response;
  r.response = NULL;
  result_clear(&r);
  return o;
}

/* The order id named in a message such as "...; order order_x cancelled". */
static void id_in_message(const json_t *err, char out[PROTO_ID_MAX]) {
  const char *m = str(err, "message");
  const char *p = strstr(m, ORDER_ID_PREFIX);
  assert_non_null(p);
  size_t n = strlen(ORDER_ID_PREFIX) + 32;
  assert_true(strlen(p) >= n);
  memcpy(out, p, n);
  out[n] = '\0';
}

/* The order id the fake inventory saw first. */
static const char *reserved_id(fixture_t *f, size_t i) {
  return str(json_array_get(f->reserves, i), "orderId");
}

static void assert_cancelled(fixture_t *f, const char *id, const char *reason) {
  char st[32];
  json_t *o = get_order(f, id);
  assert_string_equal(str(o, "status"), "cancelled");
  assert_string_equal(str(o, "cancelReason"), reason);
  json_decref(o);
  assert_string_equal(durable_status(f, id, st, sizeof(st)), "cancelled");
  assert_string_equal(durable_saga(f, id, st, sizeof(st)), "cancelled");
  json_t *d = event_data(f, id, "order_failed");
  assert_string_equal(str(d, "reason"), reason);
  assert_string_equal(str(d, "userId"), "user_1");
  assert_int_equal(json_object_size(d), 3);
}

/* How many calls in arr name order id. */
static size_t calls_for(const json_t *arr, const char *id) {
  size_t i, n = 0;
  json_t *c;
  json_array_foreach(arr, i, c) {
    const char *o = json_string_value(json_object_get(c, "orderId"));
    n += o && strcmp(o, id) == 0;
  }
  return n;
}

/* --- create_order: the saga ---------------------------------------------------------- */

static void test_create_confirmed(void **state) {
  fixture_t *f = *state;
  char st[32], buf[256];
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), "req-create");
  assert_ok(&r);
  json_t *o = r.response;
  const char *id = str(o, "id");
  assert_string_equal(str(o, "status"), "confirmed");
  /* The client sent no prices: the catalogue's, and the total from them. */
  assert_int_equal(json_integer_value(json_object_get(o, "totalAmount")), TOTAL);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(o, "items"), 0), "price")),
                   PRICE_1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(o, "items"), 1), "price")),
                   PRICE_2);
  assert_string_equal(str(o, "currency"), "USD");
  assert_string_equal(str(o, "userId"), "user_1");
  assert_true(json_is_null(json_object_get(o, "cancelReason")));
  char pid[PROTO_ID_MAX + 8];
  snprintf(pid, sizeof(pid), "pay_%s", id);
  assert_string_equal(str(o, "paymentId"), pid);

  /* reserve {orderId, items without prices}, the charge of the exact
   * amount with the request id, commit {orderId}; nothing undone. */
  json_t *rs = json_array_get(f->reserves, 0);
  assert_int_equal(json_array_size(f->reserves), 1);
  assert_string_equal(str(rs, "orderId"), id);
  assert_int_equal(json_object_size(json_array_get(json_object_get(rs, "items"), 0)), 2);
  assert_int_equal(json_array_size(f->payments), 1);
  json_t *p = json_array_get(f->payments, 0);
  assert_string_equal(str(p, "orderId"), id);
  assert_int_equal(json_integer_value(json_object_get(p, "amount")), TOTAL);
  assert_string_equal(str(p, "currency"), "USD");
  assert_string_equal(str(p, "paymentMethod"), "tok_visa");
  assert_string_equal(f->last_payment_rid, "req-create");
  assert_int_equal(json_array_size(f->commits), 1);
  assert_string_equal(str(json_array_get(f->commits, 0), "orderId"), id);
  assert_int_equal(json_object_size(json_array_get(f->commits, 0)), 1);
  assert_int_equal(json_array_size(f->refunds), 0);
  assert_int_equal(json_array_size(f->releases), 0);

  /* Events: order_created (priced, before the charge), order_completed. */
  assert_string_equal(events_of(f, id, buf, sizeof(buf)), "order_created,order_completed");
  json_t *d = event_data(f, id, "order_created");
  assert_int_equal(json_integer_value(json_object_get(d, "totalAmount")), TOTAL);
  assert_true(json_equal(json_object_get(d, "items"), json_object_get(o, "items")));
  assert_string_equal(str(json_array_get(f->events, 0), "requestId"), "req-create");
  d = event_data(f, id, "order_completed");
  assert_int_equal(json_integer_value(json_object_get(d, "totalAmount")), TOTAL);
  assert_int_equal(json_object_size(d), 4);

  json_t *got = get_order(f, id);
  assert_true(json_equal(got, o));
  json_decref(got);
  assert_string_equal(durable_saga(f, id, st, sizeof(st)), "done");

  /* get_order_saga: the states in the order they were written. */
  result_t g = call(f, "get_order_saga", json_pack("{s:s}", "id", id), NULL);
  assert_ok(&g);
  assert_string_equal(str(g.response, "orderId"), id);
  assert_string_equal(str(g.response, "state"), "done");
  json_t *h = json_object_get(g.response, "history");
  size_t i, n = 0;
  json_t *e;
  buf[0] = '\0';
  json_array_foreach(h, i, e)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? "," : "", str(e, "state"));
  assert_string_equal(buf, "reserving,charging,committing,done");
  result_clear(&g);
  g = call(f, "get_order_saga", json_pack("{s:s}", "id", "order_nope"), NULL);
  assert_true(g.status == PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(g.err, "statusCode")), 404);
  result_clear(&g);
  assert_int_equal(f->app.nflows, 0);
  result_clear(&r);
}

/* A declined card: 200 with the order cancelled, the stock released, no
 * refund (nothing was charged). */
static void test_create_declined_releases(void **state) {
  fixture_t *f = *state;
  char buf[256];
  json_t *body = order_body("user_1", "tok_chargeDeclined");
  result_t r = call(f, "create_order", body, NULL);
  assert_ok(&r);
  const char *id = str(r.response, "id");
  assert_string_equal(str(r.response, "status"), "cancelled");
  assert_string_equal(str(r.response, "cancelReason"), "card_declined");
  assert_true(json_is_null(json_object_get(r.response, "paymentId")));
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_int_equal(json_array_size(f->refunds), 0);
  assert_int_equal(json_array_size(f->commits), 0);
  assert_cancelled(f, id, "card_declined");
  assert_string_equal(events_of(f, id, buf, sizeof(buf)), "order_created,order_failed");
  result_clear(&r);
}

static void test_create_out_of_stock(void **state) {
  fixture_t *f = *state;
  char buf[256];
  f->reserve_mode = 1;
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_err(&r, 409, "OUT_OF_STOCK");
  /* The inventory's details, as they came. */
  assert_string_equal(str(json_array_get(json_object_get(r.err, "details"), 0), "productId"),
                      "prod-2");
  const char *id = reserved_id(f, 0);
  assert_non_null(strstr(str(r.err, "message"), id));
  assert_int_equal(json_array_size(f->payments), 0);
  assert_cancelled(f, id, "out_of_stock");
  assert_string_equal(events_of(f, id, buf, sizeof(buf)), "order_failed");
  result_clear(&r);
}

/* A client price that differs from the catalogue's: 409 PRICE_CHANGED
 * naming the item, the units released, nothing charged. */
static void test_create_price_changed(void **state) {
  fixture_t *f = *state;
  json_t *body = order_body("user_1", "tok_visa");
  json_object_set_new(json_array_get(json_object_get(body, "items"), 0), "price",
                      json_integer(PRICE_1 - 1));
  result_t r = call(f, "create_order", body, NULL);
  assert_err(&r, 409, "PRICE_CHANGED");
  json_t *det = json_array_get(json_object_get(r.err, "details"), 0);
  assert_string_equal(str(det, "productId"), "prod-1");
  assert_int_equal(json_integer_value(json_object_get(det, "price")), PRICE_1);
  const char *id = reserved_id(f, 0);
  assert_int_equal(json_array_size(f->payments), 0);
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_cancelled(f, id, ORDER_REASON_PRICE_CHANGED);
  result_clear(&r);
}

static void test_create_inventory_down(void **state) {
  fixture_t *f = *state;
  char id[PROTO_ID_MAX];
  f->svc.upstream[ORDER_UPSTREAM_INVENTORY] = f->dead;
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_err(&r, 503, "INVENTORY_SERVICE_UNAVAILABLE");
  id_in_message(r.err, id);
  assert_int_equal(json_array_size(f->payments), 0);
  assert_cancelled(f, id, ORDER_REASON_INVENTORY_UNAVAILABLE);
  result_clear(&r);
}

static void test_create_payment_down_releases(void **state) {
  fixture_t *f = *state;
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->dead;
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_err(&r, 503, "PAYMENT_SERVICE_UNAVAILABLE");
  const char *id = reserved_id(f, 0);
  assert_non_null(strstr(str(r.err, "message"), id));
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_cancelled(f, id, ORDER_REASON_PAYMENT_UNAVAILABLE);
  result_clear(&r);
}

/* The payment service's 400: its answer, details and all; released. */
static void test_create_payment_rejected_4xx(void **state) {
  fixture_t *f = *state;
  result_t r = call(f, "create_order", order_body("user_1", "tok_unknown"), NULL);
  assert_err(&r, 400, "INVALID_PAYMENT_METHOD");
  assert_string_equal(str(json_array_get(json_object_get(r.err, "details"), 0), "field"),
                      "paymentMethod");
  const char *id = reserved_id(f, 0);
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_cancelled(f, id, "invalid_payment_method");
  result_clear(&r);
}

/* The charge times out once (UNKNOWN): asked again with the same orderId,
 * it answers succeeded and the order is confirmed -- the old "stays
 * pending for ever" defect is gone. */
static void test_create_payment_timeout_once_then_confirmed(void **state) {
  fixture_t *f = *state;
  f->svc.rpc_timeout_ms = 150;
  f->pay_hold = 1;
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "confirmed");
  const char *id = str(r.response, "id");
  assert_int_equal(calls_for(f->payments, id), 2);
  assert_int_equal(json_array_size(f->refunds), 0);
  assert_int_equal(json_array_size(f->releases), 0);
  result_clear(&r);
}

/* commit_inventory answers 409 RESERVATION_RELEASED: the charge goes back
 * (refund with voidIfMissing), the units are released, the order cancelled. */
static void test_create_commit_reservation_released(void **state) {
  fixture_t *f = *state;
  f->commit_mode = 1;
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_true(r.status == PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(r.err, "statusCode")), 409);
  const char *id = reserved_id(f, 0);
  assert_non_null(strstr(str(r.err, "message"), id));
  assert_int_equal(calls_for(f->refunds, id), 1);
  json_t *rf = json_array_get(f->refunds, 0);
  assert_true(json_is_true(json_object_get(rf, "voidIfMissing")));
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_cancelled(f, id, "reservation_expired");
  result_clear(&r);
}

/* The release fails twice (500): the order is 'compensating' meanwhile,
 * and cancelled once the third try succeeds. */
static void test_create_release_retried_until_done(void **state) {
  fixture_t *f = *state;
  char st[32];
  result_t r;
  f->release_fail = 2;
  send_cmd(f, "create_order", order_body("user_1", "tok_chargeDeclined"), NULL, &r);
  WAIT_FOR(f, json_array_size(f->releases) >= 1);
  const char *id = reserved_id(f, 0);
  assert_string_equal(durable_status(f, id, st, sizeof(st)), "compensating");
  assert_string_equal(durable_saga(f, id, st, sizeof(st)), "compensating_release");
  assert_false(r.done);
  wait_result(f, &r);
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "cancelled");
  assert_int_equal(calls_for(f->releases, id), 3);
  assert_cancelled(f, id, "card_declined");
  result_clear(&r);
}

/* While the charge is in flight the order is busy: status changes and
 * refunds answer 409 ORDER_BUSY; get_order_saga shows it in flight. */
static void test_order_busy_while_saga_in_flight(void **state) {
  fixture_t *f = *state;
  result_t create, upd;
  f->pay_hold = 1;
  send_cmd(f, "create_order", order_body("user_1", "tok_visa"), "req-slow", &create);
  WAIT_FOR(f, f->nheld == 1);
  assert_int_equal(f->app.nflows, 1);
  const char *id = str(json_array_get(f->payments, 0), "orderId");
  upd = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "cancelled"),
             NULL);
  assert_err(&upd, 409, "ORDER_BUSY");
  result_clear(&upd);
  upd = call(f, "refund_order", json_pack("{s:s}", "id", id), NULL);
  assert_err(&upd, 409, "ORDER_BUSY");
  result_clear(&upd);
  upd = call(f, "get_order_saga", json_pack("{s:s}", "id", id), NULL);
  assert_ok(&upd);
  assert_string_equal(str(upd.response, "state"), "charging");
  assert_true(json_is_true(json_object_get(upd.response, "inFlight")));
  result_clear(&upd);
  /* The payment answers late but within the deadline: confirmed. */
  answer_held(f, payment_object(json_array_get(f->payments, 0), "succeeded", NULL));
  wait_result(f, &create);
  assert_ok(&create);
  assert_string_equal(str(create.response, "status"), "confirmed");
  result_clear(&create);
}

/* --- resume ------------------------------------------------------------------------ */

/* A pending order and its saga row in state, written with the store API
 * as a crashed service would have left them; id into out. */
static void seed_saga(fixture_t *f, int state, const char *reason, char out[PROTO_ID_MAX]) {
  order_create_input_t in;
  valid_verrs_t errs;
  json_t *body = order_body("user_1", "tok_visa");
  json_t *order = NULL;
  assert_int_equal(order_validate_create(body, &in, &errs), 0);
  assert_int_equal(order_store_create(f->store, &in, &order), STORE_OK);
  snprintf(out, PROTO_ID_MAX, "%s", str(order, "id"));
  assert_int_equal(order_store_saga_begin(f->store, out, strlen(out), ORDER_SAGA_RESERVING, 0,
                                          NULL),
                   STORE_OK);
  if (state != ORDER_SAGA_RESERVING || reason)
    assert_int_equal(order_store_saga_put(f->store, out, strlen(out), state, 0, 0, reason),
                     STORE_OK);
  json_decref(order);
  json_decref(body);
}

/* A saga left in each unfinished state is taken up at start: forward while
 * it can (to confirmed), compensating ones to cancelled. */
static void test_resume_each_state(void **state) {
  fixture_t *f = *state;
  static const struct {
    int state;
    const char *reason;
    const char *want;
  } cases[] = {
      {ORDER_SAGA_PENDING, NULL, "confirmed"},
      {ORDER_SAGA_RESERVING, NULL, "confirmed"},
      {ORDER_SAGA_CHARGING, NULL, "confirmed"},
      {ORDER_SAGA_COMMITTING, NULL, "confirmed"},
      {ORDER_SAGA_COMPENSATING_REFUND, "card_declined", "cancelled"},
      {ORDER_SAGA_COMPENSATING_RELEASE, "out_of_stock", "cancelled"},
  };
  enum { N = sizeof(cases) / sizeof(cases[0]) };
  char ids[N][PROTO_ID_MAX], st[32];
  for (size_t i = 0; i < N; i++)
    seed_saga(f, cases[i].state, cases[i].reason, ids[i]);
  assert_int_equal(order_saga_resume_start(&f->svc), 0);
  WAIT_FOR(f, f->app.sagas_done + f->app.sagas_cancelled == N && f->app.nflows == 0);
  for (size_t i = 0; i < N; i++) {
    if (strcmp(durable_status(f, ids[i], st, sizeof(st)), cases[i].want) != 0)
      fail_msg("resumed from %s: %s, want %s", order_saga_state_name(cases[i].state), st,
               cases[i].want);
    if (cases[i].reason)
      assert_cancelled(f, ids[i], cases[i].reason);
    else
      assert_string_equal(durable_saga(f, ids[i], st, sizeof(st)), "done");
  }
  assert_int_equal(f->app.sagas_resumed, N);
  /* From committing on, nothing is charged again; a refund state refunds. */
  assert_int_equal(calls_for(f->payments, ids[3]), 0);
  assert_int_equal(calls_for(f->refunds, ids[4]), 1);
  assert_int_equal(calls_for(f->releases, ids[4]), 1);
  assert_int_equal(calls_for(f->refunds, ids[5]), 0);
  assert_int_equal(calls_for(f->releases, ids[5]), 1);
}

/* --- the caller's deadline ------------------------------------------------------------ */

/* A raw NestJS client on a thread: one request with the given
 * metadata.timeoutMs, read to the reply. The test's RPC client would time
 * out at the same moment as the server's deadline; this one waits longer. */
typedef struct raw_call {
  int port;
  char req[2048];
  char reply[8192];
  volatile int done;
} raw_call_t;

static void *raw_thread(void *arg) {
  raw_call_t *rc = arg;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rc->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  size_t got = 0;
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
    char frame[2100];
    int n = snprintf(frame, sizeof(frame), "%zu#%s", strlen(rc->req), rc->req);
    if (write(fd, frame, (size_t)n) == n) {
      /* Until a whole frame is in: "<len>#<body>". */
      for (;;) {
        ssize_t k = read(fd, rc->reply + got, sizeof(rc->reply) - 1 - got);
        if (k <= 0)
          break;
        got += (size_t)k;
        rc->reply[got] = '\0';
        char *hash = strchr(rc->reply, '#');
        if (hash && strlen(hash + 1) >= (size_t)atol(rc->reply))
          break;
      }
    }
  }
  if (fd >= 0)
    close(fd);
  rc->reply[got] = '\0';
  rc->done = 1;
  return NULL;
}

/* The charge hangs past the caller's deadline: 504 DEADLINE_EXCEEDED
 * naming the order; the saga goes on alone: refund {orderId,
 * voidIfMissing: true}, release, cancelled deadline_exceeded. */
static void test_create_deadline_while_charge_hangs(void **state) {
  fixture_t *f = *state;
  raw_call_t rc = {.port = proto_rpc_server_port(f->srv)};
  pthread_t th;
  f->svc.rpc_timeout_ms = 1000;
  f->pay_hold = 1;
  snprintf(rc.req, sizeof(rc.req),
           "{\"pattern\":{\"cmd\":\"create_order\"},\"data\":{\"userId\":\"user_1\","
           "\"items\":[{\"productId\":\"prod-1\",\"quantity\":2}],\"paymentMethod\":"
           "\"tok_visa\"},\"id\":\"raw-1\",\"metadata\":{\"timeoutMs\":\"400\"}}");
  assert_int_equal(pthread_create(&th, NULL, raw_thread, &rc), 0);
  WAIT_FOR(f, rc.done);
  assert_int_equal(pthread_join(th, NULL), 0);
  json_t *pkt = json_loads(strchr(rc.reply, '#') ? strchr(rc.reply, '#') + 1 : "", 0, NULL);
  assert_non_null(pkt);
  json_t *err = json_object_get(pkt, "err");
  assert_int_equal(json_integer_value(json_object_get(err, "statusCode")), 504);
  assert_string_equal(str(err, "code"), "DEADLINE_EXCEEDED");
  const char *id = reserved_id(f, 0);
  assert_non_null(strstr(str(err, "message"), id));
  json_decref(pkt);
  /* The saga carries on without the caller. */
  WAIT_FOR(f, f->app.nflows == 0);
  assert_int_equal(calls_for(f->refunds, id), 1);
  assert_true(json_is_true(json_object_get(json_array_get(f->refunds, 0), "voidIfMissing")));
  assert_int_equal(calls_for(f->releases, id), 1);
  assert_int_equal(json_array_size(f->commits), 0);
  assert_cancelled(f, id, ORDER_REASON_DEADLINE);
}

static void test_create_validation_names_fields(void **state) {
  fixture_t *f = *state;
  json_t *body = order_body("user_1", "tok_visa");
  json_object_set_new(body, "coupon", json_string("FREE"));
  json_object_set_new(json_array_get(json_object_get(body, "items"), 0), "price",
                      json_real(19.99));
  result_t r = call(f, "create_order", body, NULL);
  assert_err(&r, 400, "VALIDATION_FAILED");
  const char *m = str(r.err, "message");
  assert_non_null(strstr(m, "items[0].price"));
  assert_non_null(strstr(m, "coupon is not allowed"));
  assert_int_equal(json_array_size(f->events), 0);
  assert_int_equal(json_array_size(f->reserves), 0);
  result_clear(&r);
}

static void test_create_unknown_user(void **state) {
  fixture_t *f = *state;
  result_t r = call(f, "create_order", order_body("user_missing", "tok_visa"), NULL);
  assert_err(&r, 404, "USER_NOT_FOUND");
  assert_int_equal(json_array_size(f->reserves), 0);
  assert_int_equal(json_array_size(f->events), 0);
  result_clear(&r);
  f->svc.upstream[ORDER_UPSTREAM_USER] = f->dead;
  r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_err(&r, 503, "USER_SERVICE_UNAVAILABLE");
  result_clear(&r);
  f->svc.upstream[ORDER_UPSTREAM_USER] = f->user;
  r = call(f, "create_order", order_body("user_broken", "tok_visa"), NULL);
  assert_err(&r, 502, "USER_SERVICE_ERROR");
  result_clear(&r);
  assert_int_equal(json_array_size(f->reserves), 0);
}
/* --- status changes and refunds --------------------------------------------------------- */

static char *create_confirmed(fixture_t *f) {
  static char id[PROTO_ID_MAX];
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "confirmed");
  snprintf(id, sizeof(id), "%s", str(r.response, "id"));
  result_clear(&r);
  return id;
}

static void assert_status_event(fixture_t *f, size_t index, const char *id, const char *prev,
                                const char *next, const char *rid) {
  json_t *ev = json_array_get(f->events, index);
  assert_non_null(ev);
  assert_string_equal(str(ev, "pattern"), "order_status_changed");
  json_t *d = json_object_get(ev, "data");
  assert_string_equal(str(d, "orderId"), id);
  assert_string_equal(str(d, "userId"), "user_1");
  assert_string_equal(str(d, "previousStatus"), prev);
  assert_string_equal(str(d, "newStatus"), next);
  assert_int_equal(json_object_size(d), 4);
  if (rid)
    assert_string_equal(str(ev, "requestId"), rid);
}

static void test_status_changes(void **state) {
  fixture_t *f = *state;
  char *id = create_confirmed(f);
  size_t base = json_array_size(f->events);
  result_t r = call(f, "update_order_status",
                    json_pack("{s:s, s:s}", "id", id, "status", "shipped"), "req-ship");
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "shipped");
  result_clear(&r);
  assert_status_event(f, base, id, "confirmed", "shipped", "req-ship");

  /* shipped -> cancelled is illegal: 409 naming both, nothing published */
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "cancelled"),
           NULL);
  assert_err(&r, 409, "ILLEGAL_TRANSITION");
  assert_string_equal(str(r.err, "message"), "Cannot change order status from shipped to cancelled");
  result_clear(&r);
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "shipped"),
           NULL);
  assert_err(&r, 409, "ILLEGAL_TRANSITION");
  result_clear(&r);
  assert_int_equal(json_array_size(f->events), base + 1);

  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "delivered"),
           NULL);
  assert_ok(&r);
  result_clear(&r);
  assert_status_event(f, base + 1, id, "shipped", "delivered", NULL);

  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "lost"), NULL);
  assert_err(&r, 400, "VALIDATION_FAILED");
  result_clear(&r);
  r = call(f, "update_order_status",
           json_pack("{s:s, s:s}", "id", "order_nope", "status", "shipped"), NULL);
  assert_err(&r, 404, "ORDER_NOT_FOUND");
  result_clear(&r);
}

/* The defect of issue 9: update_order_status confirmed an unpaid order by
 * hand. confirmed and pending are refused (409, nothing written, nothing
 * published), on a pending order and on a confirmed one; a pending order,
 * which has no payment, is still cancelled plainly. */
static void test_status_confirmed_and_pending_are_not_settable(void **state) {
  fixture_t *f = *state;
  char st[32], id[PROTO_ID_MAX];
  /* A pending order without a saga (as a store tool would leave it). */
  order_create_input_t in;
  valid_verrs_t errs;
  json_t *body = order_body("user_1", "tok_visa"), *made = NULL;
  assert_int_equal(order_validate_create(body, &in, &errs), 0);
  assert_int_equal(order_store_create(f->store, &in, &made), STORE_OK);
  snprintf(id, sizeof(id), "%s", str(made, "id"));
  json_decref(made);
  json_decref(body);
  result_t r;
  json_t *before = get_order(f, id);
  assert_string_equal(str(before, "status"), "pending");
  assert_true(json_is_null(json_object_get(before, "paymentId")));
  char *paid = create_confirmed(f);
  size_t base = json_array_size(f->events);
  static const char *const refused[] = {"confirmed", "pending"};
  for (size_t i = 0; i < 2; i++) {
    r = call(f, "update_order_status",
             json_pack("{s:s, s:s}", "id", id, "status", refused[i]), NULL);
    assert_err(&r, 409, "STATUS_NOT_SETTABLE");
    assert_non_null(strstr(str(r.err, "message"), refused[i]));
    assert_int_equal(json_object_size(r.err), 3); /* statusCode, message, code */
    result_clear(&r);
    r = call(f, "update_order_status",
             json_pack("{s:s, s:s}", "id", paid, "status", refused[i]), NULL);
    assert_err(&r, 409, "STATUS_NOT_SETTABLE");
    result_clear(&r);
  }
  json_t *after = get_order(f, id);
  assert_true(json_equal(after, before)); /* updatedAt too: nothing written */
  assert_string_equal(durable_status(f, id, st, sizeof(st)), "pending");
  assert_string_equal(durable_status(f, paid, st, sizeof(st)), "confirmed");
  assert_int_equal(json_array_size(f->events), base);
  json_decref(after);
  json_decref(before);

  /* The unpaid order is cancelled plainly: no refund call. */
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", id, "status", "cancelled"),
           "req-cancel-pending");
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "cancelled");
  assert_string_equal(str(r.response, "cancelReason"), ORDER_REASON_REQUESTED);
  result_clear(&r);
  assert_int_equal(json_array_size(f->refunds), 0);
  assert_status_event(f, base, id, "pending", "cancelled", "req-cancel-pending");
}

/* A cancel of a paid order runs the refund flow: refund_payment, then
 * confirmed -> cancelled ("refunded", paymentId kept) and
 * order_status_changed; when the refund fails the order is unchanged. */
static void test_status_cancel_of_confirmed_refunds(void **state) {
  fixture_t *f = *state;
  char st[32], keep[PROTO_ID_MAX];
  snprintf(keep, sizeof(keep), "%s", create_confirmed(f));
  size_t base = json_array_size(f->events);

  /* payment down: 503, nothing moved, nothing published */
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->dead;
  result_t r = call(f, "update_order_status",
                    json_pack("{s:s, s:s}", "id", keep, "status", "cancelled"), NULL);
  assert_err(&r, 503, "PAYMENT_SERVICE_UNAVAILABLE");
  result_clear(&r);
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->payment;
  /* payment refuses: its 4xx, nothing moved */
  f->refund_mode = 1;
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", keep, "status", "cancelled"),
           NULL);
  assert_err(&r, 409, "NOT_REFUNDABLE");
  result_clear(&r);
  f->refund_mode = 0;
  assert_string_equal(durable_status(f, keep, st, sizeof(st)), "confirmed");
  assert_int_equal(json_array_size(f->events), base);

  size_t refunds = json_array_size(f->refunds);
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", keep, "status", "cancelled"),
           "req-cancel-paid");
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "cancelled");
  assert_string_equal(str(r.response, "cancelReason"), ORDER_REASON_REFUNDED);
  char pid[PROTO_ID_MAX + 8];
  snprintf(pid, sizeof(pid), "pay_%s", keep);
  assert_string_equal(str(r.response, "paymentId"), pid);
  result_clear(&r);
  assert_int_equal(json_array_size(f->refunds), refunds + 1);
  assert_string_equal(str(json_array_get(f->refunds, refunds), "orderId"), keep);
  assert_string_equal(durable_status(f, keep, st, sizeof(st)), "cancelled");
  assert_status_event(f, base, keep, "confirmed", "cancelled", "req-cancel-paid");
  assert_int_equal(json_array_size(f->events), base + 1);
  assert_int_equal(f->app.nflows, 0);

  /* Cancelled is final: a second cancel is an illegal move, no refund. */
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", keep, "status", "cancelled"),
           NULL);
  assert_err(&r, 409, "ILLEGAL_TRANSITION");
  result_clear(&r);
  assert_int_equal(json_array_size(f->refunds), refunds + 1);
}

static void test_refund_confirmed(void **state) {
  fixture_t *f = *state;
  char *id = create_confirmed(f);
  size_t base = json_array_size(f->events);
  result_t r = call(f, "refund_order", json_pack("{s:s}", "id", id), "req-refund");
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "cancelled");
  assert_string_equal(str(r.response, "cancelReason"), "refunded");
  assert_non_null(json_string_value(json_object_get(r.response, "paymentId")));
  assert_string_equal(str(json_array_get(f->refunds, 0), "orderId"), id);
  assert_int_equal(json_object_size(json_array_get(f->refunds, 0)), 1);
  assert_status_event(f, base, id, "confirmed", "cancelled", "req-refund");
  result_clear(&r);
  /* twice: no longer confirmed */
  r = call(f, "refund_order", json_pack("{s:s}", "id", id), NULL);
  assert_err(&r, 409, "NOT_REFUNDABLE");
  result_clear(&r);
  assert_int_equal(json_array_size(f->refunds), 1);
}

static void test_refund_refused_cases(void **state) {
  fixture_t *f = *state;
  char *id = create_confirmed(f);
  char keep[PROTO_ID_MAX];
  snprintf(keep, sizeof(keep), "%s", id);

  /* payment down: 503, order unchanged */
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->dead;
  result_t r = call(f, "refund_order", json_pack("{s:s}", "id", keep), NULL);
  assert_err(&r, 503, "PAYMENT_SERVICE_UNAVAILABLE");
  result_clear(&r);
  json_t *o = get_order(f, keep);
  assert_string_equal(str(o, "status"), "confirmed");
  json_decref(o);
  f->svc.upstream[ORDER_UPSTREAM_PAYMENT] = f->payment;

  /* payment refuses: its 4xx, order unchanged */
  f->refund_mode = 1;
  r = call(f, "refund_order", json_pack("{s:s}", "id", keep), NULL);
  assert_err(&r, 409, "NOT_REFUNDABLE");
  assert_string_equal(str(r.err, "message"), "Payment cannot be refunded");
  result_clear(&r);

  /* payment silent: 504, order unchanged */
  f->refund_mode = 2;
  f->svc.rpc_timeout_ms = 150;
  r = call(f, "refund_order", json_pack("{s:s}", "id", keep), NULL);
  assert_err(&r, 504, "PAYMENT_TIMEOUT");
  result_clear(&r);
  o = get_order(f, keep);
  assert_string_equal(str(o, "status"), "confirmed");
  json_decref(o);
  f->refund_mode = 0;

  /* shipped: 409 without calling the payment service */
  size_t refunds = json_array_size(f->refunds);
  r = call(f, "update_order_status", json_pack("{s:s, s:s}", "id", keep, "status", "shipped"),
           NULL);
  assert_ok(&r);
  result_clear(&r);
  r = call(f, "refund_order", json_pack("{s:s}", "id", keep), NULL);
  assert_err(&r, 409, "NOT_REFUNDABLE");
  assert_non_null(strstr(str(r.err, "message"), "shipped"));
  result_clear(&r);
  assert_int_equal(json_array_size(f->refunds), refunds);

  r = call(f, "refund_order", json_pack("{s:s}", "id", "order_nope"), NULL);
  assert_err(&r, 404, "ORDER_NOT_FOUND");
  result_clear(&r);
  r = call(f, "refund_order", json_pack("{s:s, s:b}", "id", keep, "force", 1), NULL);
  assert_err(&r, 400, "VALIDATION_FAILED");
  result_clear(&r);
}

/* --- reads and health ----------------------------------------------------------------- */

static void test_get_orders_and_health(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < 3; i++)
    create_confirmed(f);
  result_t r = call(f, "get_orders",
                    json_pack("{s:s, s:i, s:i}", "userId", "user_1", "page", 2, "limit", 2), NULL);
  assert_ok(&r);
  assert_int_equal(json_integer_value(json_object_get(r.response, "total")), 3);
  assert_int_equal(json_integer_value(json_object_get(r.response, "page")), 2);
  assert_int_equal(json_integer_value(json_object_get(r.response, "limit")), 2);
  assert_int_equal(json_array_size(json_object_get(r.response, "orders")), 1);
  result_clear(&r);
  r = call(f, "get_order", json_pack("{s:s}", "id", "order_nope"), NULL);
  assert_err(&r, 404, "ORDER_NOT_FOUND");
  assert_string_equal(str(r.err, "message"), "Order not found");
  result_clear(&r);

  r = call(f, "health", NULL, NULL);
  assert_ok(&r);
  assert_string_equal(str(r.response, "status"), "ok");
  assert_string_equal(str(r.response, "service"), "order");
  assert_string_equal(str(r.response, "db"), "ok");
  assert_true(json_is_null(json_object_get(r.response, "redis")));
  json_t *up = json_object_get(r.response, "upstreams");
  assert_true(json_is_true(json_object_get(up, "user")));
  assert_true(json_is_true(json_object_get(up, "payment")));
  result_clear(&r);
}

/* --- group commit ------------------------------------------------------------------ */

/* Orders that reach the store in the same loop turn share one COMMIT: the
 * fake answers the user checks together, so their inserts (and, the same
 * way, their settlements) land in one turn. */
static void test_concurrent_orders_share_commits(void **state) {
  enum { N = 16 };
  fixture_t *f = *state;
  result_t r[N];
  store_group_stats_t st;
  for (int i = 0; i < N; i++)
    send_cmd(f, "create_order", order_body("user_1", "tok_visa"), NULL, &r[i]);
  for (int i = 0; i < N; i++) {
    wait_result(f, &r[i]);
    assert_ok(&r[i]);
    assert_string_equal(str(r[i].response, "status"), "confirmed");
    result_clear(&r[i]);
  }
  store_group_stats(f->group, &st);
  /* Committed one by one, N orders would take 4 * N commits (pending,
   * charging, committing, done); each continuation waited for one: the four
   * saga steps and, without an outbox, the two events published after
   * their COMMIT. */
  assert_true(st.commits >= 4);
  assert_true(st.commits < 4 * N);
  assert_int_equal(st.failures, 0);
  assert_int_equal(st.deferred, 6 * N);
  assert_int_equal(json_array_size(f->events), 2 * N); /* created, completed */
  assert_int_equal(json_array_size(f->payments), N);
}

static void exec_ok(fixture_t *f, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(order_store_db(f->store), sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", sql, err ? err : "?");
}

/* A trigger that breaks a deferred foreign key on each write of `what` (an
 * INSERT or UPDATE on orders): the statement succeeds, the COMMIT fails. */
static void break_commits_on(fixture_t *f, const char *what) {
  char sql[512];
  exec_ok(f, "CREATE TABLE IF NOT EXISTS gc_parent (id INTEGER PRIMARY KEY);"
             "CREATE TABLE IF NOT EXISTS gc_child (pid INTEGER REFERENCES gc_parent (id)"
             " DEFERRABLE INITIALLY DEFERRED)");
  snprintf(sql, sizeof(sql),
           "CREATE TRIGGER gc_break AFTER %s ON orders BEGIN"
           " INSERT INTO gc_child VALUES (-1); END",
           what);
  exec_ok(f, sql);
}

static void test_failed_commit_answers_500_and_publishes_nothing(void **state) {
  fixture_t *f = *state;
  char st[32];
  store_group_stats_t gs;

  /* The first write's commit fails: 500, nothing reserved, charged or
   * published, no order and no saga left. */
  break_commits_on(f, "INSERT");
  result_t r = call(f, "create_order", order_body("user_1", "tok_visa"), NULL);
  assert_err(&r, 500, "STORAGE_ERROR");
  result_clear(&r);
  assert_int_equal(json_array_size(f->events), 0);
  assert_int_equal(json_array_size(f->reserves), 0);
  assert_int_equal(json_array_size(f->payments), 0);
  r = call(f, "get_orders", json_pack("{s:s}", "userId", "user_1"), NULL);
  assert_ok(&r);
  assert_int_equal(json_integer_value(json_object_get(r.response, "total")), 0);
  result_clear(&r);
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->peek, "SELECT count(*) FROM sagas", -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 0);
  sqlite3_finalize(q);
  store_group_stats(f->group, &gs);
  assert_int_equal(gs.failures, 1);
  assert_int_equal(f->app.nflows, 0);
  exec_ok(f, "DROP TRIGGER gc_break");

  /* update_order_status: 500, no order_status_changed, status unchanged. */
  char *confirmed = create_confirmed(f);
  size_t events = json_array_size(f->events);
  break_commits_on(f, "UPDATE");
  r = call(f, "update_order_status",
           json_pack("{s:s, s:s}", "id", confirmed, "status", "shipped"), NULL);
  assert_err(&r, 500, "STORAGE_ERROR");
  result_clear(&r);
  assert_int_equal(json_array_size(f->events), events);
  assert_string_equal(durable_status(f, confirmed, st, sizeof(st)), "confirmed");
  exec_ok(f, "DROP TRIGGER gc_break");

  /* The group recovers: the next write commits. */
  r = call(f, "update_order_status",
           json_pack("{s:s, s:s}", "id", confirmed, "status", "shipped"), NULL);
  assert_ok(&r);
  result_clear(&r);
  assert_string_equal(durable_status(f, confirmed, st, sizeof(st)), "shipped");
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_create_confirmed),
      T(test_create_declined_releases),
      T(test_create_out_of_stock),
      T(test_create_price_changed),
      T(test_create_inventory_down),
      T(test_create_payment_down_releases),
      T(test_create_payment_rejected_4xx),
      T(test_create_payment_timeout_once_then_confirmed),
      T(test_create_commit_reservation_released),
      T(test_create_release_retried_until_done),
      T(test_order_busy_while_saga_in_flight),
      T(test_resume_each_state),
      T(test_create_deadline_while_charge_hangs),
      T(test_create_validation_names_fields),
      T(test_create_unknown_user),
      T(test_status_changes),
      T(test_status_confirmed_and_pending_are_not_settable),
      T(test_status_cancel_of_confirmed_refunds),
      T(test_refund_confirmed),
      T(test_refund_refused_cases),
      T(test_get_orders_and_health),
      T(test_concurrent_orders_share_commits),
      T(test_failed_commit_answers_500_and_publishes_nothing),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
