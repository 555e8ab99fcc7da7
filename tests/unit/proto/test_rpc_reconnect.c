/* test_rpc_reconnect.c: the RPC client while its peer is down or coming up:
 * the first call after a peer starts (late, or again after a restart) goes
 * out on the new connection instead of failing; a refused peer fails its
 * calls fast, then at once while it is known down; a call that waits for a
 * connection that never comes fails as unavailable at its deadline. Every
 * test arms a watchdog and ends with uv_loop_close() == 0. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/rpc_client.h"
#include "proto/rpc_server.h"
#include "proto/util.h"

#define WATCHDOG_MS 15000
/* Backoff long enough that only a call can make the client try again
 * within a test. */
#define LONG_BACKOFF_MS 10000u
/* "Fast": far below the call's deadline and the backoff. */
#define FAST_MS 1000u

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  uv_timer_t tick;                 /* wakes the loop while a test polls */
  proto_rpc_server_t *srv;
  proto_rpc_client_t *cli;
  int port;
} fixture_t;

typedef struct result {
  int done;
  int status;
  uint64_t at_ms;                  /* when the callback ran */
  proto_rpc_client_t *resend_on;   /* send again from the callback, on this client */
  int resend_rc;
} result_t;

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fail_msg("watchdog: test did not finish in time");
}

static void on_tick(uv_timer_t *t) {
  (void)t; /* only wakes the loop */
}

static void h_echo(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  (void)ctx;
  proto_rpc_call_reply(call, json_deep_copy(data));
}

static void start_server(fixture_t *f, int port) {
  f->srv = proto_rpc_server_new(&f->loop, NULL);
  assert_non_null(f->srv);
  assert_int_equal(proto_rpc_server_handle_cmd(f->srv, "echo", h_echo, f), 0);
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
  assert_int_equal(uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
  assert_int_equal(uv_timer_start(&f->tick, on_tick, 5, 5), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->cli)
    proto_rpc_client_close(f->cli);
  if (f->srv)
    stop_server(f);
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  uv_close((uv_handle_t *)&f->tick, NULL);
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
  r->at_ms = proto_now_ms();
  if (r->resend_on)
    r->resend_rc = proto_rpc_client_send(r->resend_on, "echo", json_true(), NULL, 0,
                                         on_result, r); /* r is done: must not run */
}

static void wait_result(fixture_t *f, result_t *r) {
  while (!r->done)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static proto_rpc_client_t *new_client(fixture_t *f, unsigned timeout_ms) {
  proto_rpc_client_opts_t o = {.timeout_ms = timeout_ms, .backoff_min_ms = LONG_BACKOFF_MS,
                               .backoff_max_ms = LONG_BACKOFF_MS};
  f->cli = proto_rpc_client_new(&f->loop, "reconnect", "127.0.0.1", f->port, &o);
  assert_non_null(f->cli);
  return f->cli;
}

/* A connected client whose server has gone: its retry is LONG_BACKOFF_MS away. */
static proto_rpc_client_t *client_with_peer_gone(fixture_t *f) {
  start_server(f, 0);
  proto_rpc_client_t *c = new_client(f, 5000);
  while (!proto_rpc_client_connected(c))
    uv_run(&f->loop, UV_RUN_ONCE);
  stop_server(f);
  while (proto_rpc_client_connected(c))
    uv_run(&f->loop, UV_RUN_ONCE);
  return c;
}

static void expect_echo(fixture_t *f, proto_rpc_client_t *c) {
  result_t r = {0};
  uint64_t t0 = proto_now_ms();
  assert_int_equal(proto_rpc_client_send(c, "echo", json_true(), NULL, 0, on_result, &r), 0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_OK);
  assert_true(r.at_ms - t0 < FAST_MS); /* well before the backoff would have retried */
}

/* The restart: the first call after the peer listens again succeeds. */
static void test_first_call_after_restart_succeeds(void **state) {
  fixture_t *f = *state;
  proto_rpc_client_t *c = client_with_peer_gone(f);
  start_server(f, f->port);
  expect_echo(f, c);
}

/* Capture stdout (where log lines go) into a non-blocking pipe. */
static int capture_begin(int *saved) {
  int p[2];
  fflush(stdout);
  assert_int_equal(pipe(p), 0);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  *saved = dup(STDOUT_FILENO);
  assert_true(*saved >= 0);
  assert_true(dup2(p[1], STDOUT_FILENO) >= 0);
  close(p[1]);
  return p[0];
}

static void capture_end(int rd, int saved) {
  assert_true(dup2(saved, STDOUT_FILENO) >= 0);
  close(saved);
  close(rd);
}

/* Run the loop until the log line `event` has been written (bounded by the
 * watchdog). */
static void wait_log(fixture_t *f, int rd, const char *event) {
  char buf[8192] = {0};
  size_t len = 0;
  while (!strstr(buf, event)) {
    uv_run(&f->loop, UV_RUN_ONCE);
    ssize_t n = read(rd, buf + len, sizeof(buf) - 1 - len);
    if (n > 0)
      len += (size_t)n;
    if (len == sizeof(buf) - 1) { /* keep the tail: the event may straddle */
      memmove(buf, buf + len / 2, len - len / 2);
      len -= len / 2;
    }
    buf[len] = '\0';
  }
}

/* The start-up order: the client's first attempt failed before the
 * peer existed, with no call waiting; the first call after the peer listens
 * succeeds (instead of failing because the backoff had not run out). */
static void test_first_call_after_late_start_succeeds(void **state) {
  fixture_t *f = *state;
  start_server(f, 0); /* only to find a free port */
  stop_server(f);
  int saved;
  int rd = capture_begin(&saved);
  proto_log_set_level(PROTO_LOG_WARN);
  proto_rpc_client_t *c = new_client(f, 5000);
  wait_log(f, rd, "\"upstream_connect_failed\"");
  proto_log_set_level(PROTO_LOG_ERROR);
  capture_end(rd, saved);
  start_server(f, f->port);
  expect_echo(f, c);
}

/* A refused peer: the call that finds the link down waits for the attempt
 * it starts and fails with it, fast; calls right after (also from its
 * callback) fail at once while the peer is known down; once that has passed
 * a call tries again, and reaches the peer that has come back meanwhile. */
static void test_refused_peer_fails_fast_then_known_down(void **state) {
  fixture_t *f = *state;
  proto_rpc_client_t *c = client_with_peer_gone(f);
  result_t first = {.resend_on = c}, r = {0};
  uint64_t t0 = proto_now_ms();
  assert_int_equal(proto_rpc_client_send(c, "echo", json_true(), NULL, 0, on_result, &first), 0);
  wait_result(f, &first);
  assert_int_equal(first.status, PROTO_EUNAVAIL);
  assert_true(first.at_ms - t0 < FAST_MS);
  assert_int_equal(first.resend_rc, PROTO_EUNAVAIL);
  assert_int_equal(proto_rpc_client_send(c, "echo", json_true(), NULL, 0, on_result, &r),
                   PROTO_EUNAVAIL);
  start_server(f, f->port);
  int rc;
  while ((rc = proto_rpc_client_send(c, "echo", json_true(), NULL, 0, on_result, &r)) != 0) {
    assert_int_equal(rc, PROTO_EUNAVAIL);
    assert_true(proto_now_ms() - first.at_ms < FAST_MS); /* known down only briefly */
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_OK);
  assert_int_equal(proto_rpc_client_pending(c), 0);
}

/* A listening socket that is never accepted from, its queue filled, so the
 * kernel drops further SYNs: a connect to it hangs. Returns the listener;
 * fillers[] get the queued connections. */
static int hanging_listener(int *port, int fillers[], int nfillers) {
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(l >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(l, 0), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
  *port = ntohs(a.sin_port);
  for (int i = 0; i < nfillers; i++) {
    fillers[i] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fillers[i] >= 0);
    assert_int_equal(fcntl(fillers[i], F_SETFL, O_NONBLOCK), 0);
    (void)connect(fillers[i], (struct sockaddr *)&a, sizeof(a)); /* EINPROGRESS */
  }
  return l;
}

/* A call waiting for a connection that does not come up within its deadline
 * never reached the peer: PROTO_EUNAVAIL at the deadline, not a timeout
 * (which would tell a caller the peer may have acted on it). */
static void test_waiting_call_deadline_is_unavailable(void **state) {
  fixture_t *f = *state;
  enum { FILLERS = 4 };
  int fillers[FILLERS];
  int l = hanging_listener(&f->port, fillers, FILLERS);
  proto_rpc_client_opts_t o = {.timeout_ms = 5000, .connect_timeout_ms = 10000,
                               .backoff_min_ms = LONG_BACKOFF_MS,
                               .backoff_max_ms = LONG_BACKOFF_MS};
  f->cli = proto_rpc_client_new(&f->loop, "hang", "127.0.0.1", f->port, &o);
  assert_non_null(f->cli);
  result_t r = {0};
  assert_int_equal(proto_rpc_client_send(f->cli, "echo", json_true(), NULL, 100, on_result, &r),
                   0);
  wait_result(f, &r);
  assert_int_equal(r.status, PROTO_EUNAVAIL);
  for (int i = 0; i < FILLERS; i++)
    close(fillers[i]);
  close(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_call_after_restart_succeeds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_first_call_after_late_start_succeeds, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_peer_fails_fast_then_known_down, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_waiting_call_deadline_is_unavailable, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
