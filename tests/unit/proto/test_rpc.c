/* test_rpc.c: the RPC server and client together on one loop: replies,
 * errors, unknown patterns, events, deadlines, lost connections, fast failure
 * while the peer is down, recovery after it restarts, cancellation on close
 * (a peer that is down or coming up: test_rpc_reconnect.c). Every test arms a
 * watchdog and ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/cork.h"
#include "proto/error.h"
#include "proto/log.h"
#include "proto/rpc_client.h"
#include "proto/rpc_server.h"
#include "proto/util.h"

#define WATCHDOG_MS 10000

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  proto_rpc_server_t *srv;
  proto_rpc_client_t *cli;
  int port;
  int events_seen;
  char last_event_request_id[64];
  proto_rpc_call_t *held;          /* a call the "hold" handler keeps unanswered */
  uv_timer_t later;                /* answers a held call */
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

static void h_echo(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)ctx;
  json_t *r = json_pack("{s:O, s:s?}", "echo", data, "requestId",
                        proto_rpc_call_request_id(call));
  proto_rpc_call_reply(call, r);
}

static void h_fail(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)data;
  (void)ctx;
  proto_rpc_call_fail(call, 404, "THING_NOT_FOUND", "Thing not found");
}

static void h_void(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)data;
  (void)ctx;
  proto_rpc_call_reply(call, NULL);
}

static void h_hold(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)data;
  fixture_t *f = ctx;
  assert_null(f->held);
  f->held = call;
}

static void h_budget(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)data;
  (void)ctx;
  proto_rpc_call_reply(call, json_integer(proto_rpc_call_remaining_ms(call)));
}

static void ev_ping(const json_t *data, const json_t *metadata, void *ctx) {
  fixture_t *f = ctx;
  (void)data;
  const char *rid = json_string_value(json_object_get(metadata, "requestId"));
  f->events_seen++;
  snprintf(f->last_event_request_id, sizeof(f->last_event_request_id), "%s", rid ? rid : "");
}

static void answer_held(uv_timer_t *t) {
  fixture_t *f = t->data;
  if (f->held) {
    proto_rpc_call_reply(f->held, json_string("late"));
    f->held = NULL;
  }
}

static void start_server(fixture_t *f, int port) {
  f->srv = proto_rpc_server_new(&f->loop, NULL);
  assert_non_null(f->srv);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "echo", h_echo, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "echo", h_echo, f), PROTO_EINVAL);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "fail", h_fail, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "void", h_void, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "hold", h_hold, f), 0);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "budget", h_budget, f), 0);
  assert_int_equal(proto_rpc_server_on_event(f->srv, "ping", ev_ping, f), 0);
  assert_int_equal(proto_rpc_server_listen(f->srv, "127.0.0.1", port), 0);
  f->port = proto_rpc_server_port(f->srv);
  assert_true(f->port > 0);
}

static void on_server_done(void *arg) {
  fixture_t *f = arg;
  f->srv = NULL;
}

static void stop_server(fixture_t *f) {
  proto_rpc_server_shutdown(f->srv, 1000, on_server_done, f);
  while (f->srv)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  proto_log_set_level(PROTO_LOG_ERROR);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
  uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->later), 0);
  f->later.data = f;
  start_server(f, 0);
  proto_rpc_client_opts_t o = {.timeout_ms = 2000, .backoff_min_ms = 10, .backoff_max_ms = 40};
  f->cli = proto_rpc_client_new(&f->loop, "test", "127.0.0.1", f->port, &o);
  assert_non_null(f->cli);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->cli)
    proto_rpc_client_close(f->cli);
  answer_held(&f->later);
  if (f->srv)
    stop_server(f);
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  uv_close((uv_handle_t *)&f->later, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void on_result(const proto_rpc_result_t *res, void *arg) {
  result_t *r = arg;
  assert_int_equal(r->done, 0); /* exactly once */
  r->done = 1;
  r->status = res->status;
  r->response = res->response ? json_deep_copy(res->response) : NULL;
  r->err = res->err ? json_deep_copy(res->err) : NULL;
}

static void wait_result(fixture_t *f, result_t *r) {
  while (!r->done)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static void result_clear(result_t *r) {
  json_decref(r->response);
  json_decref(r->err);
  memset(r, 0, sizeof(*r));
}

static void test_echo_carries_request_id(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_pack("{s:s}", "name", "café 😀"),
                                         "req-1", 0, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_OK);
  assert_string_equal(json_string_value(json_object_get(json_object_get(r.response, "echo"), "name")),
                      "café 😀");
  assert_string_equal(json_string_value(json_object_get(r.response, "requestId")), "req-1");
  result_clear(&r);
}

static void test_remote_error_and_void(void **state) {
  fixture_t *f = *state;
  result_t r = {0}, v = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "fail", json_object(), NULL, 0, on_result, &r), 0);
  assert_int_equal(proto_rpc_client_send(f->cli, "void", NULL, NULL, 0, on_result, &v), 0);
  wait_result(f, &r);
  wait_result(f, &v);
  assert_int_equal(r.status, PROTO_EREMOTE);
  assert_int_equal(json_integer_value(json_object_get(r.err, "statusCode")), 404);
  assert_string_equal(json_string_value(json_object_get(r.err, "code")), "THING_NOT_FOUND");
  assert_int_equal(v.status, PROTO_OK);
  assert_null(v.response);
  result_clear(&r);
  result_clear(&v);
}

static void test_unknown_pattern(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "nope", json_object(), NULL, 0, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_EREMOTE);
  assert_string_equal(json_string_value(r.err),
                      "There is no matching message handler defined in the remote service.");
  result_clear(&r);
}

static void test_many_concurrent_calls(void **state) {
  fixture_t *f = *state;
  enum { N = 2000 };
  result_t *r = calloc(N, sizeof(*r));
  for (int i = 0; i < N; i++)
    assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_integer(i), NULL, 0, on_result,
                                           &r[i]), 0);
  for (int i = 0; i < N; i++) {
    wait_result(f, &r[i]);
    assert_int_equal(r[i].status, PROTO_OK);
    assert_int_equal(json_integer_value(json_object_get(r[i].response, "echo")), i);
    result_clear(&r[i]);
  }
  assert_int_equal(proto_rpc_client_pending(f->cli), 0);
  free(r);
}

/* Requests sent while corked leave in one write at uncork, nothing before. */
static void test_corked_calls_go_out_at_uncork(void **state) {
  fixture_t *f = *state;
  enum { N = 50 };
  result_t first = {0}, r[N];
  memset(r, 0, sizeof(r));
  /* connect first, so the calls are written rather than queued */
  assert_int_equal(proto_rpc_client_send(f->cli, "void", NULL, NULL, 0, on_result, &first), 0);
  wait_result(f, &first);
  proto_cork();
  for (int i = 0; i < N; i++)
    assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_integer(i), NULL, 0, on_result,
                                           &r[i]), 0);
  for (int i = 0; i < 5; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT); /* still corked: the server has nothing to answer */
  for (int i = 0; i < N; i++)
    assert_int_equal(r[i].done, 0);
  proto_uncork();
  for (int i = 0; i < N; i++) {
    wait_result(f, &r[i]);
    assert_int_equal(r[i].status, PROTO_OK);
    assert_int_equal(json_integer_value(json_object_get(r[i].response, "echo")), i);
    result_clear(&r[i]);
  }
  result_clear(&first);
}

static void test_deadline_then_late_reply_ignored(void **state) {
  fixture_t *f = *state;
  result_t r = {0}, after = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "hold", NULL, NULL, 50, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_ETIMEDOUT);
  assert_non_null(f->held);
  answer_held(&f->later); /* the late reply must be dropped, not delivered twice */
  assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_true(), NULL, 0, on_result, &after), 0);
  wait_result(f, &after);
  assert_int_equal(after.status, PROTO_OK);
  result_clear(&r);
  result_clear(&after);
}

static void test_budget_passed_on(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "budget", NULL, NULL, 1500, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_OK);
  assert_true(json_integer_value(r.response) > 0);
  assert_true(json_integer_value(r.response) <= 1500);
  result_clear(&r);
}

static void test_event_reaches_handler(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  /* wait for the connection with a round trip, then emit */
  assert_int_equal(proto_rpc_client_send(f->cli, "void", NULL, NULL, 0, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(proto_rpc_client_emit(f->cli, "ping", json_object(), "req-ev"), 0);
  while (f->events_seen == 0)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_string_equal(f->last_event_request_id, "req-ev");
  result_clear(&r);
}

static void test_connection_lost_then_unavailable_then_recovers(void **state) {
  fixture_t *f = *state;
  result_t held = {0}, down = {0}, back = {0};
  int port = f->port;
  assert_int_equal(proto_rpc_client_send(f->cli, "hold", NULL, NULL, 0, on_result, &held), 0);
  while (!f->held)
    uv_run(&f->loop, UV_RUN_ONCE);
  /* The server drains 50 ms, then closes the connection: the held call is lost. */
  proto_rpc_server_shutdown(f->srv, 50, on_server_done, f);
  wait_result(f, &held);
  assert_int_equal(held.status, PROTO_ECONNLOST);
  answer_held(&f->later); /* the server finishes once its call is answered */
  while (f->srv)
    uv_run(&f->loop, UV_RUN_ONCE);
  /* Wait until a reconnect attempt has failed: sends then fail at once. */
  int rc;
  while ((rc = proto_rpc_client_send(f->cli, "echo", NULL, NULL, 0, on_result, &down)) == 0) {
    wait_result(f, &down);
    assert_int_not_equal(down.status, PROTO_OK);
    result_clear(&down);
  }
  assert_int_equal(rc, PROTO_EUNAVAIL);
  start_server(f, port);
  while (!proto_rpc_client_connected(f->cli))
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_true(), NULL, 0, on_result, &back), 0);
  wait_result(f, &back);
  assert_int_equal(back.status, PROTO_OK);
  result_clear(&held);
  result_clear(&back);
}

static void test_close_cancels_pending(void **state) {
  fixture_t *f = *state;
  result_t r = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "hold", NULL, NULL, 0, on_result, &r), 0);
  while (!f->held)
    uv_run(&f->loop, UV_RUN_ONCE);
  proto_rpc_client_close(f->cli);
  f->cli = NULL;
  assert_int_equal(r.done, 1);
  assert_int_equal(r.status, PROTO_ECANCELED);
  result_clear(&r);
}

static void test_refused_port_fails_fast(void **state) {
  fixture_t *f = *state;
  /* the server's port once it is gone: nothing listens there */
  int port = f->port;
  stop_server(f);
  proto_rpc_client_opts_t o = {.timeout_ms = 5000, .backoff_min_ms = 10};
  proto_rpc_client_t *c = proto_rpc_client_new(&f->loop, "refused", "127.0.0.1", port, &o);
  result_t r = {0};
  /* the first attempt is in progress: the call waits for it and fails with it */
  assert_int_equal(proto_rpc_client_send(c, "echo", NULL, NULL, 0, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_EUNAVAIL);
  assert_int_equal(proto_rpc_client_send(c, "echo", NULL, NULL, 0, on_result, &r), PROTO_EUNAVAIL);
  proto_rpc_client_close(c);
  result_clear(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_echo_carries_request_id, setup, teardown),
      cmocka_unit_test_setup_teardown(test_remote_error_and_void, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_pattern, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_concurrent_calls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corked_calls_go_out_at_uncork, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deadline_then_late_reply_ignored, setup, teardown),
      cmocka_unit_test_setup_teardown(test_budget_passed_on, setup, teardown),
      cmocka_unit_test_setup_teardown(test_event_reaches_handler, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_lost_then_unavailable_then_recovers,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_cancels_pending, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_port_fails_fast, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
