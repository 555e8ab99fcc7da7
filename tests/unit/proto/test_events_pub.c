/* test_events_pub.c: the event publisher against a real redis-server: the exact
 * bytes a plain subscriber receives, queueing in order while Redis is down and
 * the flush when it is back, drop-newest when the queue is full, resending what
 * was in flight when the connection died, refused connections (reported, retried,
 * no hang), the connect/handshake deadline, AUTH, and close with a flush.
 * Every test runs under a watchdog and ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "events_harness.h"
#include "proto/error.h"
#include "proto/events.h"
#include "proto/log.h"

typedef struct fixture {
  test_loop_t tl;
  redis_proc_t redis;
  int port;
  proto_events_pub_t *pub;
  int pub_done;
  raw_sub_t raw;
  int raw_started;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  harness_log_level();
  signal(SIGPIPE, SIG_IGN);             /* as proto_daemon_init() does */
  tl_init(&f->tl);
  f->port = harness_free_port();
  *state = f;
  return 0;
}

static void on_pub_done(void *arg) {
  *(int *)arg = 1;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->pub) {
    proto_events_pub_close(f->pub, 0, on_pub_done, &f->pub_done);
    f->pub = NULL;
    tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");
  }
  if (f->raw_started) {
    raw_sub_close(&f->raw);
    tl_wait(&f->tl, raw_is_closed, &f->raw, 5000, "raw subscriber closed");
    raw_sub_free(&f->raw);
  }
  tl_close(&f->tl);
  redis_stop(&f->redis);
  free(f);
  return 0;
}

static proto_events_pub_t *new_pub(fixture_t *f, const char *password, size_t queue_max,
                                   unsigned connect_timeout_ms) {
  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  o.host = "127.0.0.1";
  o.port = f->port;
  o.password = password;
  o.queue_max = queue_max;
  o.connect_timeout_ms = connect_timeout_ms;
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 200;
  proto_events_pub_t *p = proto_events_pub_new(&f->tl.loop, &o);
  assert_non_null(p);
  return p;
}

static void start_raw(fixture_t *f, const char *channel) {
  raw_sub_start(&f->raw, &f->tl.loop, &f->redis, channel);
  f->raw_started = 1;
  tl_wait(&f->tl, raw_is_subscribed, &f->raw, 5000, "raw subscriber subscribed");
}

/* --- conditions ---------------------------------------------------------------- */

static int pub_connected(void *arg) {
  proto_redis_status_t st;
  proto_events_pub_status(((fixture_t *)arg)->pub, &st);
  return st.connected;
}

static int pub_disconnected(void *arg) {
  return !pub_connected(arg);
}

static int pub_failed_thrice(void *arg) {
  proto_redis_status_t st;
  proto_events_pub_status(((fixture_t *)arg)->pub, &st);
  return st.connect_failures >= 3;
}

static int pub_idle(void *arg) {
  proto_events_pub_stats_t s;
  proto_events_pub_stats(((fixture_t *)arg)->pub, &s);
  return s.queued == 0;
}

typedef struct want_msgs {
  fixture_t *f;
  size_t n;
} want_msgs_t;

static int raw_has(void *arg) {
  want_msgs_t *w = arg;
  return w->f->raw.n >= w->n;
}

static int last_error_has(fixture_t *f, const char *needle) {
  proto_redis_status_t st;
  proto_events_pub_status(f->pub, &st);
  return strstr(st.last_error, needle) != NULL;
}

typedef struct want_error {
  fixture_t *f;
  const char *needle;
} want_error_t;

static int error_seen(void *arg) {
  want_error_t *w = arg;
  return last_error_has(w->f, w->needle);
}

/* {"seq":i} events, checked in order from the raw subscriber. */
static void publish_seq(fixture_t *f, int from, int to, int expect_rc) {
  for (int i = from; i < to; i++)
    assert_int_equal(proto_events_publish(f->pub, "order_created",
                                          json_pack("{s:i}", "seq", i), "req_seq"),
                     expect_rc);
}

static void assert_raw_seq(fixture_t *f, size_t first_msg, int from, int to) {
  for (int i = from; i < to; i++) {
    size_t k = first_msg + (size_t)(i - from);
    assert_true(k < f->raw.n);
    json_t *m = json_loads(f->raw.msg[k], 0, NULL);
    assert_non_null(m);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "data"), "seq")),
                     i);
    json_decref(m);
  }
}

/* --- tests --------------------------------------------------------------------- */

/* The message is exactly what NestJS's ClientRedis.emit() publishes: compact,
 * keys pattern, data, metadata; raw UTF-8; channel = the pattern. */
static void test_wire_format(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  start_raw(f, "order_created");
  f->pub = new_pub(f, NULL, 0, 0);
  char evt[PROTO_ID_MAX];
  json_t *data = json_loads("{\"orderId\":\"o1\",\"userId\":\"u1\",\"totalAmount\":3998,"
                            "\"items\":[{\"sku\":\"a\",\"qty\":2}],\"note\":\"caf\xc3\xa9 "
                            "\xf0\x9f\x98\x80\"}",
                            0, NULL);
  assert_non_null(data);
  assert_int_equal(proto_events_publish_ex(f->pub, "order_created", data, NULL, "req_1", evt),
                   0);
  want_msgs_t w = {f, 1};
  tl_wait(&f->tl, raw_has, &w, 5000, "the event at the raw subscriber");
  tl_wait(&f->tl, pub_idle, f, 5000, "the PUBLISH acknowledged");

  assert_string_equal(f->raw.chan[0], "order_created");
  const char *expect_head =
      "{\"pattern\":\"order_created\",\"data\":{\"orderId\":\"o1\",\"userId\":\"u1\","
      "\"totalAmount\":3998,\"items\":[{\"sku\":\"a\",\"qty\":2}],\"note\":\"caf\xc3\xa9 "
      "\xf0\x9f\x98\x80\"},\"metadata\":{\"requestId\":\"req_1\",\"eventId\":\"";
  const char *m = f->raw.msg[0];
  assert_memory_equal(m, expect_head, strlen(expect_head));
  const char *p = m + strlen(expect_head);
  /* evt_ + 32 lowercase hex, the one publish_ex returned */
  assert_int_equal(strlen(evt), 36);
  assert_memory_equal(p, evt, 36);
  p += 36;
  const char *mid = "\",\"occurredAt\":\"";
  assert_memory_equal(p, mid, strlen(mid));
  p += strlen(mid);
  /* 2026-01-01T00:00:00.000Z */
  assert_int_equal(strlen(p), 24 + 3);
  assert_true(p[4] == '-' && p[7] == '-' && p[10] == 'T' && p[19] == '.' && p[23] == 'Z');
  assert_string_equal(p + 24, "\"}}");

  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.accepted, 1);
  assert_int_equal(s.published, 1);
  assert_int_equal(s.unheard, 0);
  assert_int_equal(s.dropped, 0);

  /* Caller metadata (traceparent) comes first; ours is set over it. Without a
   * request id there is no requestId. */
  json_t *meta = json_pack("{s:s,s:s}", "traceparent", "00-abc-def-01", "eventId", "mine");
  assert_int_equal(proto_events_publish_ex(f->pub, "order_created", json_string("x"), meta,
                                           NULL, evt),
                   0);
  w.n = 2;
  tl_wait(&f->tl, raw_has, &w, 5000, "the second event");
  json_t *got = json_loads(f->raw.msg[1], 0, NULL);
  assert_non_null(got);
  json_t *gm = json_object_get(got, "metadata");
  assert_string_equal(json_string_value(json_object_get(gm, "traceparent")), "00-abc-def-01");
  assert_string_equal(json_string_value(json_object_get(gm, "eventId")), evt);
  assert_null(json_object_get(gm, "requestId"));
  assert_string_equal(json_string_value(json_object_get(got, "data")), "x");
  json_decref(got);

  /* Bad arguments are refused, data stolen all the same (ASan checks). */
  assert_int_equal(proto_events_publish(f->pub, "", json_string("x"), NULL), PROTO_EINVAL);
  assert_int_equal(proto_events_publish_ex(f->pub, "p", json_string("x"), json_string("m"),
                                           NULL, NULL),
                   PROTO_EINVAL);
  assert_int_equal(proto_events_publish(f->pub, "p", json_string("x"), "bad\xff"),
                   PROTO_EINVAL);
}

/* Redis down: events queue (drop-newest beyond queue_max), the publisher
 * reports the error and keeps retrying; when Redis lets it in, the queue goes
 * out in order. Redis starts with a password the publisher lacks so that the
 * subscriber is in place before the publisher can flush (NOAUTH until the
 * password is removed). */
static void test_queue_while_down_then_flush_in_order(void **state) {
  fixture_t *f = *state;
  f->pub = new_pub(f, NULL, 5, 0);
  publish_seq(f, 0, 5, 0);
  publish_seq(f, 5, 7, PROTO_EFULL);
  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.accepted, 5);
  assert_int_equal(s.queued, 5);
  assert_int_equal(s.dropped, 2);
  assert_int_equal(s.inflight, 0);

  tl_wait(&f->tl, pub_failed_thrice, f, 5000, "three refused attempts");
  assert_false(pub_connected(f));
  assert_true(last_error_has(f, "refused"));
  json_t *h = proto_events_pub_health(f->pub);
  assert_non_null(h);
  assert_true(json_is_false(json_object_get(h, "connected")));
  assert_non_null(json_string_value(json_object_get(h, "lastError")));
  assert_int_equal(json_integer_value(json_object_get(h, "queued")), 5);
  assert_int_equal(json_integer_value(json_object_get(h, "dropped")), 2);
  json_decref(h);

  redis_start(&f->redis, f->port, "gate");
  start_raw(f, "order_created");
  want_error_t we = {f, "NOAUTH"};
  tl_wait(&f->tl, error_seen, &we, 5000, "PING refused with NOAUTH");
  assert_int_equal(f->raw.n, 0);

  redis_cmd(&f->redis, "CONFIG SET requirepass %s", "");
  want_msgs_t w = {f, 5};
  tl_wait(&f->tl, raw_has, &w, 5000, "the five queued events");
  assert_raw_seq(f, 0, 0, 5);
  tl_wait(&f->tl, pub_idle, f, 5000, "queue empty");
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.published, 5);
  assert_int_equal(s.dropped, 2);
  assert_true(pub_connected(f));

  /* Room again: new events go straight out, after the old ones. */
  publish_seq(f, 5, 7, 0);
  w.n = 7;
  tl_wait(&f->tl, raw_has, &w, 5000, "two more");
  assert_raw_seq(f, 5, 5, 7);
}

/* Events sent but not acknowledged when Redis dies are sent again, in order,
 * on the next connection (at-least-once). Redis is stopped (SIGSTOP) so the
 * replies never come, then killed. */
static void test_inflight_resent_after_loss(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  f->pub = new_pub(f, NULL, 0, 0);
  tl_wait(&f->tl, pub_connected, f, 5000, "publisher connected");
  redis_kill(&f->redis, SIGSTOP);
  publish_seq(f, 0, 3, 0);
  /* Give the writes time to go out, and show that no reply comes back. */
  tl_run_for(&f->tl, 50);
  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.inflight, 3);
  assert_int_equal(s.published, 0);

  redis_kill(&f->redis, SIGKILL);
  tl_wait(&f->tl, pub_disconnected, f, 5000, "publisher notices the loss");
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.inflight, 0);
  assert_int_equal(s.queued, 3);

  redis_start(&f->redis, f->port, "gate");
  start_raw(f, "order_created");
  redis_cmd(&f->redis, "CONFIG SET requirepass %s", "");
  want_msgs_t w = {f, 3};
  tl_wait(&f->tl, raw_has, &w, 5000, "the three resent events");
  assert_raw_seq(f, 0, 0, 3);
  tl_wait(&f->tl, pub_idle, f, 5000, "queue empty");
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.published, 3);
  assert_int_equal(s.resent, 3);
}

/* Nothing listens on the port: the error is reported and attempts repeat with
 * backoff (no hang); once Redis starts the publisher connects by itself. */
static void test_refused_reports_and_retries(void **state) {
  fixture_t *f = *state;
  f->pub = new_pub(f, NULL, 0, 0);
  tl_wait(&f->tl, pub_failed_thrice, f, 5000, "three refused attempts");
  assert_true(last_error_has(f, "refused"));
  proto_redis_status_t st;
  proto_events_pub_status(f->pub, &st);
  assert_int_equal(st.connected, 0);
  assert_int_equal(st.connects, 0);
  assert_int_equal(strlen(st.last_error_at), 24);

  redis_start(&f->redis, f->port, NULL);
  tl_wait(&f->tl, pub_connected, f, 5000, "publisher connected after Redis started");
  proto_events_pub_status(f->pub, &st);
  assert_int_equal(st.connects, 1);
  assert_int_equal(proto_events_publish(f->pub, "order_created", json_object(), NULL), 0);
  tl_wait(&f->tl, pub_idle, f, 5000, "the event acknowledged");
  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.published, 1);
  assert_int_equal(s.unheard, 1); /* nobody subscribed: counted as lost */
}

/* A server that accepts the TCP connection but never answers: the handshake
 * (PING) deadline fails the attempt, which is retried. */
typedef struct mute_server {
  uv_tcp_t listener;
  uv_tcp_t *peers[16];
  size_t n;
  int closing_left;
} mute_server_t;

static void mute_on_conn(uv_stream_t *server, int status) {
  mute_server_t *m = server->data;
  assert_int_equal(status, 0);
  uv_tcp_t *peer = malloc(sizeof(*peer));
  assert_non_null(peer);
  assert_int_equal(uv_tcp_init(server->loop, peer), 0);
  peer->data = m;
  assert_int_equal(uv_accept(server, (uv_stream_t *)peer), 0);
  if (m->n < 16)
    m->peers[m->n++] = peer;
  else
    fail_msg("too many connections to the mute server");
}

static void mute_on_close(uv_handle_t *h) {
  mute_server_t *m = h->data;
  if (h != (uv_handle_t *)&m->listener)
    free(h);
  m->closing_left--;
}

static int mute_closed(void *arg) {
  return ((mute_server_t *)arg)->closing_left == 0;
}

static void test_handshake_deadline(void **state) {
  fixture_t *f = *state;
  mute_server_t m;
  memset(&m, 0, sizeof(m));
  struct sockaddr_in sa;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
  assert_int_equal(uv_tcp_init(&f->tl.loop, &m.listener), 0);
  m.listener.data = &m;
  assert_int_equal(uv_tcp_bind(&m.listener, (struct sockaddr *)&sa, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&m.listener, 16, mute_on_conn), 0);
  int len = sizeof(sa);
  assert_int_equal(uv_tcp_getsockname(&m.listener, (struct sockaddr *)&sa, &len), 0);
  f->port = ntohs(sa.sin_port);

  f->pub = new_pub(f, NULL, 0, 150);
  uint64_t t0 = harness_now_ms();
  want_error_t we = {f, "PING timed out after 150 ms"};
  tl_wait(&f->tl, error_seen, &we, 3000, "the handshake deadline");
  assert_true(harness_now_ms() - t0 >= 140);
  tl_wait(&f->tl, pub_failed_thrice, f, 5000, "retries after the deadline");
  assert_false(pub_connected(f));

  proto_events_pub_close(f->pub, 0, on_pub_done, &f->pub_done);
  f->pub = NULL;
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");
  m.closing_left = (int)m.n + 1;
  for (size_t i = 0; i < m.n; i++)
    uv_close((uv_handle_t *)m.peers[i], mute_on_close);
  uv_close((uv_handle_t *)&m.listener, mute_on_close);
  tl_wait(&f->tl, mute_closed, &m, 5000, "mute server closed");
}

/* AUTH with the right password works; a wrong one is reported and retried. */
static void test_auth(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, "s3cret pass");
  start_raw(f, "payment_completed");
  f->pub = new_pub(f, "wrong", 0, 0);
  want_error_t we = {f, "AUTH failed"};
  tl_wait(&f->tl, error_seen, &we, 5000, "AUTH refused");
  tl_wait(&f->tl, pub_failed_thrice, f, 5000, "AUTH retried");
  assert_false(pub_connected(f));
  assert_int_equal(proto_events_publish(f->pub, "payment_completed", json_integer(1), NULL),
                   0);
  proto_events_pub_close(f->pub, 0, on_pub_done, &f->pub_done);
  f->pub = NULL;
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");

  f->pub_done = 0;
  f->pub = new_pub(f, "s3cret pass", 0, 0);
  assert_int_equal(proto_events_publish(f->pub, "payment_completed", json_integer(2), NULL),
                   0);
  want_msgs_t w = {f, 1};
  tl_wait(&f->tl, raw_has, &w, 5000, "the event through an authenticated connection");
  assert_string_equal(f->raw.chan[0], "payment_completed");
  assert_non_null(strstr(f->raw.msg[0], "\"data\":2,"));
}

/* close() with a flush deadline sends what is queued before freeing. */
static void test_close_flushes_queue(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  start_raw(f, "order_created");
  f->pub = new_pub(f, NULL, 0, 0);
  publish_seq(f, 0, 20, 0); /* queued: not connected yet */
  proto_events_pub_close(f->pub, 3000, on_pub_done, &f->pub_done);
  assert_int_equal(proto_events_publish(f->pub, "order_created", json_null(), NULL),
                   PROTO_ECLOSED);
  f->pub = NULL;
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher flushed and closed");
  want_msgs_t w = {f, 20};
  tl_wait(&f->tl, raw_has, &w, 5000, "the twenty events");
  assert_raw_seq(f, 0, 0, 20);
}

/* close() with Redis away gives up at the deadline (the events are dropped,
 * logged and counted), and still frees everything. */
static void test_close_deadline_when_down(void **state) {
  fixture_t *f = *state;
  f->pub = new_pub(f, NULL, 0, 0);
  publish_seq(f, 0, 3, 0);
  uint64_t t0 = harness_now_ms();
  proto_events_pub_close(f->pub, 100, on_pub_done, &f->pub_done);
  f->pub = NULL;
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 3000, "publisher closed after the deadline");
  assert_true(harness_now_ms() - t0 >= 90);
}

/* An error reply to PUBLISH (here NOPERM: the ACL took the command away)
 * fails the connection, keeps the event and everything after it, and
 * reconnects; once PUBLISH is allowed again the events go out in order. */
static void test_publish_error_keeps_events(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  start_raw(f, "order_created");
  f->pub = new_pub(f, NULL, 0, 0);
  tl_wait(&f->tl, pub_connected, f, 5000, "publisher connected");
  redis_cmd(&f->redis, "ACL SETUSER default -publish");
  publish_seq(f, 0, 3, 0);
  want_error_t we = {f, "NOPERM"};
  tl_wait(&f->tl, error_seen, &we, 5000, "PUBLISH refused");
  assert_int_equal(f->raw.n, 0);
  /* A connection that dies at once is not retried at the minimum delay:
   * backoff 20, 40, 80, 160, 200, 200... ms gives about 5 connections in
   * 600 ms, not 30. */
  tl_run_for(&f->tl, 600);
  proto_redis_status_t st;
  proto_events_pub_status(f->pub, &st);
  assert_true(st.connects >= 3);
  assert_true(st.connects <= 9);
  proto_events_pub_stats_t s;
  proto_events_pub_stats(f->pub, &s);
  assert_int_equal(s.queued, 3);
  assert_int_equal(s.published, 0);

  redis_cmd(&f->redis, "ACL SETUSER default +publish");
  want_msgs_t w = {f, 3};
  tl_wait(&f->tl, raw_has, &w, 5000, "the events once PUBLISH is allowed");
  assert_raw_seq(f, 0, 0, 3);
  tl_wait(&f->tl, pub_idle, f, 5000, "queue empty");
}

/* Closing while the host name is being resolved waits for the resolver. */
static void test_close_while_resolving(void **state) {
  fixture_t *f = *state;
  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  o.host = "localhost";
  o.port = f->port;
  proto_events_pub_t *p = proto_events_pub_new(&f->tl.loop, &o);
  assert_non_null(p);
  assert_int_equal(proto_events_publish(p, "order_created", json_true(), NULL), 0);
  proto_events_pub_close(p, 0, on_pub_done, &f->pub_done);
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");
}

/* Options from the environment. */
static void test_opts_from_env(void **state) {
  (void)state;
  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  unsetenv("REDIS_HOST");
  unsetenv("REDIS_PORT");
  unsetenv("REDIS_PASSWORD");
  unsetenv("EVENTS_QUEUE_MAX");
  assert_int_equal(proto_redis_opts_from_env(&o), 0);
  assert_string_equal(o.host, "127.0.0.1");
  assert_int_equal(o.port, 6379);
  assert_null(o.password);
  assert_int_equal(o.queue_max, 10000);
  setenv("REDIS_HOST", "redis", 1);
  setenv("REDIS_PORT", "6380", 1);
  setenv("REDIS_PASSWORD", "pw", 1);
  setenv("EVENTS_QUEUE_MAX", "42", 1);
  assert_int_equal(proto_redis_opts_from_env(&o), 0);
  assert_string_equal(o.host, "redis");
  assert_int_equal(o.port, 6380);
  assert_string_equal(o.password, "pw");
  assert_int_equal(o.queue_max, 42);
  setenv("REDIS_PORT", "0", 1);
  assert_int_equal(proto_redis_opts_from_env(&o), PROTO_EINVAL);
  setenv("REDIS_PORT", "6380", 1);
  setenv("EVENTS_QUEUE_MAX", "0", 1);
  assert_int_equal(proto_redis_opts_from_env(&o), PROTO_EINVAL);
  unsetenv("REDIS_HOST");
  unsetenv("REDIS_PORT");
  unsetenv("REDIS_PASSWORD");
  unsetenv("EVENTS_QUEUE_MAX");

  /* A bad option: nothing is created, nothing is left on the loop. */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.port = 70000;
  assert_null(proto_events_pub_new(&loop, &o));
  assert_null(proto_events_sub_new(&loop, &o));
  assert_null(proto_events_pub_new(NULL, NULL));
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* publish_with(): a stored event goes out with its own eventId and
 * occurredAt (the caller's metadata kept), and each ack says, in order, that
 * Redis has it. Queued while Redis is away, the acks wait for it; at close
 * what was never acknowledged is acked PROTO_ECLOSED. */
typedef struct acks {
  int n;
  int status[8];
  int order[8];
} acks_t;

typedef struct ack_ref {
  acks_t *a;
  int i;
} ack_ref_t;

static void on_ack(int status, void *arg) {
  ack_ref_t *r = arg;
  assert_true(r->a->n < 8);
  r->a->status[r->a->n] = status;
  r->a->order[r->a->n] = r->i;
  r->a->n++;
}

static int acks_are(void *arg) {
  return ((acks_t *)arg)->n >= 2;
}

static void test_publish_with_given_id_and_ack(void **state) {
  fixture_t *f = *state;
  acks_t a = {0};
  ack_ref_t refs[3] = {{&a, 0}, {&a, 1}, {&a, 2}};
  char out[PROTO_ID_MAX] = "";
  f->pub = new_pub(f, NULL, 0, 0);
  /* Redis is not up yet: both wait, no ack. */
  json_t *meta = json_pack("{s:s,s:s,s:s}", "requestId", "req-9", "eventId", "evt_stored",
                           "occurredAt", "2026-01-01T00:00:00.000Z");
  proto_events_publish_opts_t o = {.event_id = "evt_stored",
                                   .occurred_at = "2026-01-01T00:00:00.000Z",
                                   .ack = on_ack, .ack_arg = &refs[0]};
  assert_int_equal(proto_events_publish_with(f->pub, "payment_completed",
                                             json_pack("{s:i}", "n", 1), meta, NULL, &o, out),
                   0);
  assert_string_equal(out, "evt_stored");
  o.event_id = NULL;
  o.occurred_at = NULL;
  o.ack_arg = &refs[1];
  assert_int_equal(proto_events_publish_with(f->pub, "payment_completed", json_integer(2),
                                             NULL, "req-10", &o, out),
                   0);
  assert_int_equal(strncmp(out, "evt_", 4), 0);
  assert_string_not_equal(out, "evt_stored");
  /* Bad given ids: refused, the ack will not run. */
  o.event_id = "";
  assert_int_equal(proto_events_publish_with(f->pub, "p", NULL, NULL, NULL, &o, NULL),
                   PROTO_EINVAL);
  o.event_id = NULL;
  o.occurred_at = "2026-01-01T00:00:00.000Z-and-far-too-long";
  assert_int_equal(proto_events_publish_with(f->pub, "p", NULL, NULL, NULL, &o, NULL),
                   PROTO_EINVAL);
  assert_int_equal(a.n, 0); /* never inline, and nothing acknowledged yet */

  redis_start(&f->redis, f->port, NULL);
  start_raw(f, "payment_completed");
  tl_wait(&f->tl, acks_are, &a, 5000, "both acks");
  assert_int_equal(a.status[0], 0);
  assert_int_equal(a.status[1], 0);
  assert_int_equal(a.order[0], 0);
  assert_int_equal(a.order[1], 1);
  want_msgs_t w = {f, 2};
  tl_wait(&f->tl, raw_has, &w, 5000, "the two events");
  assert_string_equal(f->raw.msg[0],
                      "{\"pattern\":\"payment_completed\",\"data\":{\"n\":1},\"metadata\":"
                      "{\"requestId\":\"req-9\",\"eventId\":\"evt_stored\","
                      "\"occurredAt\":\"2026-01-01T00:00:00.000Z\"}}");

  /* At close with Redis gone: acked PROTO_ECLOSED, once. */
  redis_stop(&f->redis);
  tl_wait(&f->tl, pub_disconnected, f, 5000, "publisher lost Redis");
  o.occurred_at = NULL;
  o.ack_arg = &refs[2];
  assert_int_equal(proto_events_publish_with(f->pub, "payment_completed", NULL, NULL, NULL, &o,
                                             NULL),
                   0);
  proto_events_pub_close(f->pub, 0, on_pub_done, &f->pub_done);
  f->pub = NULL;
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");
  assert_int_equal(a.n, 3);
  assert_int_equal(a.status[2], PROTO_ECLOSED);
  assert_int_equal(a.order[2], 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_wire_format, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_while_down_then_flush_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_inflight_resent_after_loss, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_reports_and_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_handshake_deadline, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_flushes_queue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_deadline_when_down, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_error_keeps_events, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_while_resolving, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_with_given_id_and_ack, setup, teardown),
      cmocka_unit_test(test_opts_from_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
