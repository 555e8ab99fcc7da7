/* test_rpc.c: the payment handlers behind a real RPC server on a libuv loop,
 * called through the RPC client, with the store writing through a commit group
 * as in the daemon, and an event publisher whose Redis is away (a port nobody
 * listens on): the glue publishes exactly one event per first processing or
 * refund and none for retries, a full event queue (PROTO_EFULL) does not fail
 * the request, and health stays "ok" with redis.connected false. Group commit:
 * requests of one turn share a COMMIT, every reply finds its row committed,
 * duplicates in one turn charge once and publish once, and a failed COMMIT is
 * 500 with no event. Every wait has a deadline; teardown closes every handle
 * and checks uv_loop_close() == 0.
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
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/rpc_client.h"
#include "payment.h"

#define WAIT_TIMEOUT_MS 10000u
#define TICK_MS 20u
#define QUEUE_MAX 2u

typedef struct fixture {
  char dir[256];
  uv_loop_t loop;
  uv_timer_t tick;                 /* wakes the loop while waiting */
  payment_store_t *store;
  store_group_t *group;
  proto_events_pub_t *pub;
  proto_rpc_server_t *srv;
  proto_rpc_client_t *cli;
  payment_app_t app;               /* the counting processor */
  svc_t svc;                       /* what the handlers see, as svc_main makes it */
  int srv_done, pub_done;
  int charges;
} fixture_t;

typedef struct call_result {
  int done;
  int status;                      /* PROTO_OK, PROTO_EREMOTE, ... */
  json_t *response;                /* copies, owned */
  json_t *err;
  const char *db_path;             /* set: count the order's committed rows at reply */
  int committed_rows;              /* from another connection: sees only commits */
} call_result_t;

static payment_charge_t counting_charge(const payment_process_input_t *in, void *arg) {
  ((fixture_t *)arg)->charges++;
  return payment_processor_charge(in, NULL);
}

/* Rows for order_id that another connection sees: committed ones only (WAL). */
static int count_committed(const char *db_path, const char *order_id) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int n = -1;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT count(*) FROM payments WHERE order_id = ?1", -1, &st,
                         NULL) == SQLITE_OK &&
      sqlite3_bind_text(st, 1, order_id, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* A TCP port that was free a moment ago: nothing listens on it. */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  assert_true(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

/* Run the loop until *flag is set; fail (outside any callback) at the deadline. */
static void wait_flag(fixture_t *f, const int *flag) {
  uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_TIMEOUT_MS * 1000000u;
  while (!*flag) {
    if (uv_hrtime() > deadline)
      fail_msg("timed out after %u ms", WAIT_TIMEOUT_MS);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static void on_reply(const proto_rpc_result_t *res, void *arg) {
  call_result_t *c = arg;
  c->status = res->status;
  c->response = res->response ? json_deep_copy(res->response) : NULL;
  c->err = res->err ? json_deep_copy(res->err) : NULL;
  if (c->db_path) {
    const char *order = json_string_value(json_object_get(c->response, "orderId"));
    c->committed_rows = order ? count_committed(c->db_path, order) : -1;
  }
  c->done = 1;
}

/* Send without waiting: calls sent in a row reach the server together and are
 * handled in one loop turn. */
static void send_call(fixture_t *f, call_result_t *c, const char *cmd, const char *data_text,
                 const char *request_id) {
  json_t *data = json_loads(data_text, JSON_DECODE_ANY, NULL);
  assert_non_null(data);
  assert_int_equal(proto_rpc_client_send(f->cli, cmd, data, request_id, 0, on_reply, c), 0);
}

static call_result_t call(fixture_t *f, const char *cmd, const char *data_text,
                          const char *request_id) {
  call_result_t c = {.done = 0};
  json_t *data = json_loads(data_text, JSON_DECODE_ANY, NULL);
  assert_non_null(data);
  assert_int_equal(proto_rpc_client_send(f->cli, cmd, data, request_id, 0, on_reply, &c), 0);
  wait_flag(f, &c.done);
  return c;
}

static void call_free(call_result_t *c) {
  json_decref(c->response);
  json_decref(c->err);
}

static proto_events_pub_stats_t stats(fixture_t *f) {
  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  return s;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/payment-rpc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || payment_store_open(f->dir, STORE_SYNC_FULL, &f->store) != 0 ||
      uv_loop_init(&f->loop) != 0 || uv_timer_init(&f->loop, &f->tick) != 0 ||
      uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS) != 0)
    return -1;
  proto_redis_opts_t ro = {.host = "127.0.0.1", .port = dead_port(), .queue_max = QUEUE_MAX};
  if (!(f->pub = proto_events_pub_new(&f->loop, &ro)))
    return -1;
  /* As svc_main does: the group on the store's connection. */
  if (!(f->group = store_group_new(&f->loop, payment_store_db(f->store))))
    return -1;
  f->app = (payment_app_t){counting_charge, f};
  payment_svc_init(&f->svc, &f->loop, f->store, f->group, &f->app);
  f->svc.pub = f->pub;
  if (!(f->srv = proto_rpc_server_new(&f->loop, NULL)) ||
      payment_handlers_register(f->srv, &f->svc) != 0 ||
      proto_rpc_server_listen(f->srv, "127.0.0.1", 0) != 0)
    return -1;
  if (!(f->cli = proto_rpc_client_new(&f->loop, "payment", "127.0.0.1",
                                      proto_rpc_server_port(f->srv), NULL)))
    return -1;
  *state = f;
  return 0;
}

static void on_srv_done(void *arg) {
  ((fixture_t *)arg)->srv_done = 1;
}

static void on_pub_done(void *arg) {
  ((fixture_t *)arg)->pub_done = 1;
}

static void on_tick_closed(uv_handle_t *h) {
  (void)h;
}

static int teardown(void **state) {
  static const char *const files[] = {"payment.db", "payment.db-wal", "payment.db-shm"};
  fixture_t *f = *state;
  char p[400];
  proto_rpc_client_close(f->cli);
  proto_rpc_server_shutdown(f->srv, 0, on_srv_done, f);
  proto_events_pub_close(f->pub, 0, on_pub_done, f);
  wait_flag(f, &f->srv_done);
  wait_flag(f, &f->pub_done);
  /* Before the store, as svc_main does; the loop below closes its handles. */
  store_group_close(f->group);
  uv_close((uv_handle_t *)&f->tick, on_tick_closed);
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(uv_loop_close(&f->loop), 0);
  payment_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

/* --- tests ---------------------------------------------------------------------- */

static void one_event_per_first_processing(void **state) {
  fixture_t *f = *state;
  const char *visa = "{\"orderId\":\"ord_1\",\"userId\":\"user_1\",\"amount\":3998,"
                     "\"paymentMethod\":\"tok_visa\"}";
  call_result_t a = call(f, "process_payment", visa, "req-1");
  assert_int_equal(a.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(a.response, "status")), "succeeded");
  proto_events_pub_stats_t s = stats(f);
  assert_int_equal(s.accepted, 1);
  assert_int_equal(s.queued, 1); /* Redis is away: it waits */

  /* The retry: the same payment, no second event. */
  call_result_t b = call(f, "process_payment", visa, "req-1-retry");
  assert_int_equal(b.status, PROTO_OK);
  assert_true(json_equal(a.response, b.response));
  assert_int_equal(stats(f).accepted, 1);

  /* A decline is a reply, with payment_failed queued. */
  call_result_t d = call(f, "process_payment",
                         "{\"orderId\":\"ord_2\",\"userId\":\"user_1\",\"amount\":1,"
                         "\"paymentMethod\":\"tok_insufficientFunds\"}",
                         "req-2");
  assert_int_equal(d.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(d.response, "reason")),
                      "insufficient_funds");
  assert_int_equal(stats(f).accepted, 2);

  /* Validation errors publish nothing. */
  call_result_t v = call(f, "process_payment",
                         "{\"orderId\":\"ord_3\",\"userId\":\"user_1\",\"amount\":1,"
                         "\"paymentMethod\":\"tok_unknown\"}",
                         "req-3");
  assert_int_equal(v.status, PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(v.err, "statusCode")), 400);
  assert_int_equal(stats(f).accepted, 2);
  call_free(&a);
  call_free(&b);
  call_free(&d);
  call_free(&v);
}

static void full_queue_does_not_fail_requests(void **state) {
  fixture_t *f = *state;
  char data[200];
  for (int i = 0; i < (int)QUEUE_MAX + 1; i++) {
    snprintf(data, sizeof(data),
             "{\"orderId\":\"ord_q%d\",\"userId\":\"u\",\"amount\":5,"
             "\"paymentMethod\":\"tok_visa\"}",
             i);
    call_result_t c = call(f, "process_payment", data, "req-q");
    assert_int_equal(c.status, PROTO_OK); /* the last one's event is dropped */
    assert_string_equal(json_string_value(json_object_get(c.response, "status")), "succeeded");
    call_free(&c);
  }
  proto_events_pub_stats_t s = stats(f);
  assert_int_equal(s.accepted, QUEUE_MAX);
  assert_int_equal(s.dropped, 1);

  /* Refund with the queue still full: refunded, event dropped, and a second
   * refund neither fails nor tries to publish again. */
  call_result_t r = call(f, "refund_payment", "{\"orderId\":\"ord_q0\"}", "req-r");
  assert_int_equal(r.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(r.response, "status")), "refunded");
  assert_int_equal(stats(f).dropped, 2);
  call_result_t r2 = call(f, "refund_payment", "{\"orderId\":\"ord_q0\"}", "req-r2");
  assert_int_equal(r2.status, PROTO_OK);
  assert_true(json_equal(r.response, r2.response));
  assert_int_equal(stats(f).dropped, 2);
  call_free(&r);
  call_free(&r2);

  /* Health: ok, with Redis shown as down and the queue visible. */
  call_result_t h = call(f, "health", "{}", NULL);
  assert_int_equal(h.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(h.response, "status")), "ok");
  assert_string_equal(json_string_value(json_object_get(h.response, "service")), "payment");
  assert_string_equal(json_string_value(json_object_get(h.response, "db")), "ok");
  json_t *redis = json_object_get(h.response, "redis");
  assert_true(json_is_false(json_object_get(redis, "connected")));
  assert_int_equal(json_integer_value(json_object_get(redis, "queued")), QUEUE_MAX);
  assert_int_equal(json_integer_value(json_object_get(redis, "dropped")), 2);
  call_free(&h);
}

static void errors_over_the_wire(void **state) {
  fixture_t *f = *state;
  call_result_t c = call(f, "get_payment", "{\"id\":\"pay_missing\"}", "req-g");
  assert_int_equal(c.status, PROTO_EREMOTE);
  assert_string_equal(json_string_value(json_object_get(c.err, "code")), "PAYMENT_NOT_FOUND");
  call_free(&c);
  c = call(f, "get_payment_by_order", "{\"orderId\":\"ord_missing\"}", NULL);
  assert_int_equal(c.status, PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(c.err, "statusCode")), 404);
  call_free(&c);
  c = call(f, "refund_payment", "{\"orderId\":\"ord_missing\"}", NULL);
  assert_int_equal(c.status, PROTO_EREMOTE);
  assert_string_equal(json_string_value(json_object_get(c.err, "message")),
                      "Payment not found");
  call_free(&c);
  assert_int_equal(stats(f).accepted, 0);
}

static store_group_stats_t group_stats(fixture_t *f) {
  store_group_stats_t s;
  store_group_stats(f->group, &s);
  return s;
}

static void db_path(fixture_t *f, char *out, size_t size) {
  snprintf(out, size, "%s/payment.db", f->dir);
}

#define BATCH_N 8

/* BATCH_N payments sent at once are handled in one turn (or a few): fewer
 * COMMITs than payments, each reply only after its row is committed, one
 * event each. */
static void one_commit_for_a_turn_of_payments(void **state) {
  fixture_t *f = *state;
  char path[400], data[200];
  call_result_t c[BATCH_N];
  db_path(f, path, sizeof(path));
  /* Connect first, so the batch is not split by the connection's setup. */
  call_result_t warm = call(f, "health", "{}", NULL);
  assert_int_equal(warm.status, PROTO_OK);
  call_free(&warm);
  store_group_stats_t before = group_stats(f);
  for (int i = 0; i < BATCH_N; i++) {
    c[i] = (call_result_t){.db_path = path, .committed_rows = -1};
    snprintf(data, sizeof(data),
             "{\"orderId\":\"ord_b%d\",\"userId\":\"u\",\"amount\":%d,"
             "\"paymentMethod\":\"%s\"}",
             i, 100 + i, i % 3 == 2 ? "tok_chargeDeclined" : "tok_visa");
    send_call(f, &c[i], "process_payment", data, "req-b");
  }
  for (int i = 0; i < BATCH_N; i++)
    wait_flag(f, &c[i].done);
  for (int i = 0; i < BATCH_N; i++) {
    assert_int_equal(c[i].status, PROTO_OK);
    assert_string_equal(json_string_value(json_object_get(c[i].response, "status")),
                        i % 3 == 2 ? "declined" : "succeeded");
    assert_int_equal(c[i].committed_rows, 1); /* durable before the reply */
  }
  store_group_stats_t after = group_stats(f);
  uint64_t commits = after.commits - before.commits;
  assert_true(commits >= 1);
  assert_true(commits < BATCH_N);
  assert_int_equal(after.failures, 0);
  assert_int_equal(after.deferred - before.deferred, BATCH_N);
  assert_int_equal(f->charges, BATCH_N);
  assert_int_equal(stats(f).accepted, QUEUE_MAX); /* one event each, queue full */
  assert_int_equal(stats(f).dropped, BATCH_N - QUEUE_MAX);
  for (int i = 0; i < BATCH_N; i++)
    call_free(&c[i]);
}

/* The same orderId twice in one turn: the second reads the first's
 * uncommitted row on the same connection. One charge, one event, and both
 * answers are the same payment, given after the COMMIT. */
static void duplicates_in_one_turn_charge_and_publish_once(void **state) {
  fixture_t *f = *state;
  char path[400];
  const char *visa = "{\"orderId\":\"ord_dup\",\"userId\":\"u\",\"amount\":42,"
                     "\"paymentMethod\":\"tok_visa\"}";
  db_path(f, path, sizeof(path));
  call_result_t warm = call(f, "health", "{}", NULL);
  call_free(&warm);
  call_result_t a = {.db_path = path, .committed_rows = -1}, b = a, g = a;
  send_call(f, &a, "process_payment", visa, "req-a");
  send_call(f, &b, "process_payment", visa, "req-b");
  send_call(f, &g, "get_payment_by_order", "{\"orderId\":\"ord_dup\"}", "req-g");
  wait_flag(f, &a.done);
  wait_flag(f, &b.done);
  wait_flag(f, &g.done);
  assert_int_equal(a.status, PROTO_OK);
  assert_int_equal(b.status, PROTO_OK);
  assert_true(json_equal(a.response, b.response));
  assert_int_equal(a.committed_rows, 1);
  assert_int_equal(b.committed_rows, 1);
  /* A read in the same turn either saw nothing yet or waited for the commit. */
  if (g.status == PROTO_OK) {
    assert_true(json_equal(g.response, a.response));
    assert_int_equal(g.committed_rows, 1);
  }
  assert_int_equal(f->charges, 1);
  assert_int_equal(stats(f).accepted, 1);
  /* And in a later turn: the committed row, no event. */
  call_result_t c = call(f, "process_payment", visa, "req-c");
  assert_int_equal(c.status, PROTO_OK);
  assert_true(json_equal(a.response, c.response));
  assert_int_equal(f->charges, 1);
  assert_int_equal(stats(f).accepted, 1);
  call_free(&a);
  call_free(&b);
  call_free(&g);
  call_free(&c);
}

static void assert_storage_error(const call_result_t *c) {
  assert_int_equal(c->status, PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(c->err, "statusCode")), 500);
  assert_string_equal(json_string_value(json_object_get(c->err, "code")), "STORAGE_ERROR");
  assert_null(c->response);
}

static void exec_on_store(fixture_t *f, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(payment_store_db(f->store), sql, NULL, NULL, &err);
  if (rc != SQLITE_OK)
    fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

/* A COMMIT that fails (a deferred foreign key, violated by a trigger on every
 * payment insert): every answer of that turn is 500 STORAGE_ERROR, nothing is
 * published, nothing is recorded; once the cause is gone the retry charges
 * and publishes normally. */
static void failed_commit_is_500_without_event(void **state) {
  fixture_t *f = *state;
  exec_on_store(f, "PRAGMA foreign_keys = ON;"
                   "CREATE TABLE fk_parent (id INTEGER PRIMARY KEY);"
                   "CREATE TABLE fk_child (pid INTEGER REFERENCES fk_parent (id)"
                   " DEFERRABLE INITIALLY DEFERRED);"
                   "CREATE TRIGGER fk_break AFTER INSERT ON payments"
                   " BEGIN INSERT INTO fk_child VALUES (1); END;");
  const char *visa = "{\"orderId\":\"ord_fail\",\"userId\":\"u\",\"amount\":7,"
                     "\"paymentMethod\":\"tok_visa\"}";
  call_result_t warm = call(f, "health", "{}", NULL);
  call_free(&warm);
  call_result_t a = {.done = 0}, b = {.done = 0};
  send_call(f, &a, "process_payment", visa, "req-a");
  send_call(f, &b, "process_payment", visa, "req-b"); /* a replay of a, in one turn */
  wait_flag(f, &a.done);
  wait_flag(f, &b.done);
  assert_storage_error(&a);
  assert_storage_error(&b);
  assert_int_equal(stats(f).accepted, 0);
  assert_true(group_stats(f).failures >= 1);
  call_result_t g = call(f, "get_payment_by_order", "{\"orderId\":\"ord_fail\"}", NULL);
  assert_int_equal(g.status, PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(g.err, "statusCode")), 404);

  exec_on_store(f, "DROP TRIGGER fk_break");
  call_result_t r = call(f, "process_payment", visa, "req-r");
  assert_int_equal(r.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(r.response, "status")), "succeeded");
  assert_int_equal(stats(f).accepted, 1);
  call_free(&a);
  call_free(&b);
  call_free(&g);
  call_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(one_commit_for_a_turn_of_payments, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicates_in_one_turn_charge_and_publish_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(failed_commit_is_500_without_event, setup, teardown),
      cmocka_unit_test_setup_teardown(one_event_per_first_processing, setup, teardown),
      cmocka_unit_test_setup_teardown(full_queue_does_not_fail_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(errors_over_the_wire, setup, teardown),
  };
  proto_log_set_level(PROTO_LOG_ERROR); /* Redis connect failures are expected */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
