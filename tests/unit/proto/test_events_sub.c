/* test_events_sub.c: the event subscriber against a real redis-server: the
 * NestJS envelope, bare JSON delivered whole, invalid JSON dropped, eventId
 * de-duplication, re-subscription after Redis restarts, AUTH, a refused
 * connection that retries, close from inside a handler, and a round trip from
 * our publisher. Every test runs under a watchdog and ends with
 * uv_loop_close() == 0.
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

#define MAX_SEEN 32

typedef struct seen_event {
  char channel[64];
  char pattern[64];      /* "" when the message had no envelope */
  char *data;            /* JSON text of data, owned */
  char *metadata;        /* JSON text of metadata or NULL, owned */
  char event_id[64];
  char request_id[64];
} seen_event_t;

typedef struct fixture {
  test_loop_t tl;
  redis_proc_t redis;
  int port;
  proto_events_sub_t *sub;
  int sub_done;
  proto_events_pub_t *pub;
  int pub_done;
  seen_event_t seen[MAX_SEEN];
  size_t n_seen;
  int close_in_handler;  /* the handler closes the subscriber */
  int next_seq;          /* seq_handler: the seq expected next */
  int out_of_order;      /* seq_handler: events not in publish order */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  harness_log_level();
  signal(SIGPIPE, SIG_IGN);
  tl_init(&f->tl);
  f->port = harness_free_port();
  *state = f;
  return 0;
}

static void on_done(void *arg) {
  *(int *)arg = 1;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->sub) {
    proto_events_sub_close(f->sub, on_done, &f->sub_done);
    f->sub = NULL;
  }
  if (f->pub) {
    proto_events_pub_close(f->pub, 0, on_done, &f->pub_done);
    f->pub = NULL;
  } else {
    f->pub_done = 1;
  }
  tl_wait(&f->tl, flag_is_set, &f->sub_done, 5000, "subscriber closed");
  tl_wait(&f->tl, flag_is_set, &f->pub_done, 5000, "publisher closed");
  tl_close(&f->tl);
  redis_stop(&f->redis);
  for (size_t i = 0; i < f->n_seen; i++) {
    free(f->seen[i].data);
    free(f->seen[i].metadata);
  }
  free(f);
  return 0;
}

static void handler(const proto_event_t *ev, void *ctx) {
  fixture_t *f = ctx;
  assert_non_null(ev->data);
  assert_true(f->n_seen < MAX_SEEN);
  seen_event_t *s = &f->seen[f->n_seen++];
  snprintf(s->channel, sizeof(s->channel), "%s", ev->channel);
  snprintf(s->pattern, sizeof(s->pattern), "%s",
           ev->pattern ? json_string_value(ev->pattern) : "");
  s->data = json_dumps(ev->data, JSON_COMPACT | JSON_ENCODE_ANY);
  s->metadata = ev->metadata ? json_dumps(ev->metadata, JSON_COMPACT) : NULL;
  snprintf(s->event_id, sizeof(s->event_id), "%s", ev->event_id ? ev->event_id : "");
  snprintf(s->request_id, sizeof(s->request_id), "%s", ev->request_id ? ev->request_id : "");
  if (f->close_in_handler) {
    proto_events_sub_close(f->sub, on_done, &f->sub_done);
    f->sub = NULL;
  }
}

static proto_events_sub_t *new_sub(fixture_t *f, const char *password) {
  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  o.port = f->port;
  o.password = password;
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 200;
  proto_events_sub_t *s = proto_events_sub_new(&f->tl.loop, &o);
  assert_non_null(s);
  return s;
}

static int sub_ready(void *arg) {
  return proto_events_sub_ready(((fixture_t *)arg)->sub);
}

static int sub_down(void *arg) {
  proto_redis_status_t st;
  proto_events_sub_status(((fixture_t *)arg)->sub, &st);
  return !st.connected;
}

static int sub_failed_twice(void *arg) {
  proto_redis_status_t st;
  proto_events_sub_status(((fixture_t *)arg)->sub, &st);
  return st.connect_failures >= 2;
}

typedef struct want {
  fixture_t *f;
  size_t n;
} want_t;

static int seen_n(void *arg) {
  want_t *w = arg;
  return w->f->n_seen >= w->n;
}

static void publish_raw(fixture_t *f, const char *channel, const char *msg) {
  assert_int_equal(redis_cmd(&f->redis, "PUBLISH %s %s", channel, msg), 1);
}

/* --- tests --------------------------------------------------------------------- */

static void test_envelope_bare_invalid_duplicate(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  f->sub = new_sub(f, NULL);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", handler, f), 0);
  assert_int_equal(proto_events_sub_on(f->sub, "payment_completed", handler, f), 0);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", handler, f), PROTO_EINVAL);
  assert_int_equal(proto_events_sub_on(f->sub, "", handler, f), PROTO_EINVAL);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed");

  /* 1: NestJS envelope with our metadata */
  publish_raw(f, "order_created",
              "{\"pattern\":\"order_created\",\"data\":{\"orderId\":\"o1\",\"note\":\"caf\xc3\xa9\"},"
              "\"metadata\":{\"requestId\":\"r1\",\"eventId\":\"e1\",\"occurredAt\":\"x\"}}");
  /* 2: bare JSON object: delivered whole as data */
  publish_raw(f, "order_created", "{\"orderId\":\"o2\",\"id\":7}");
  /* invalid JSON: logged and dropped */
  publish_raw(f, "order_created", "not json{");
  /* 3: bare scalar */
  publish_raw(f, "order_created", "42");
  /* duplicate eventId: dropped */
  publish_raw(f, "order_created",
              "{\"pattern\":\"order_created\",\"data\":1,\"metadata\":{\"eventId\":\"e1\"}}");
  /* 4: envelope with only data, on the other channel (NestJS emit, no metadata) */
  publish_raw(f, "payment_completed", "{\"data\":{\"paymentId\":\"p1\"}}");
  /* 5: envelope with only a pattern: data is null */
  publish_raw(f, "payment_completed", "{\"pattern\":\"payment_completed\"}");

  want_t w = {f, 5};
  tl_wait(&f->tl, seen_n, &w, 5000, "five deliveries");

  assert_string_equal(f->seen[0].channel, "order_created");
  assert_string_equal(f->seen[0].pattern, "order_created");
  assert_string_equal(f->seen[0].data, "{\"orderId\":\"o1\",\"note\":\"caf\xc3\xa9\"}");
  assert_string_equal(f->seen[0].metadata,
                      "{\"requestId\":\"r1\",\"eventId\":\"e1\",\"occurredAt\":\"x\"}");
  assert_string_equal(f->seen[0].event_id, "e1");
  assert_string_equal(f->seen[0].request_id, "r1");

  assert_string_equal(f->seen[1].pattern, "");
  assert_string_equal(f->seen[1].data, "{\"orderId\":\"o2\",\"id\":7}");
  assert_null(f->seen[1].metadata);
  assert_string_equal(f->seen[1].event_id, "");

  assert_string_equal(f->seen[2].data, "42");
  assert_string_equal(f->seen[3].channel, "payment_completed");
  assert_string_equal(f->seen[3].data, "{\"paymentId\":\"p1\"}");
  assert_string_equal(f->seen[4].pattern, "payment_completed");
  assert_string_equal(f->seen[4].data, "null");

  proto_events_sub_stats_t s;
  proto_events_sub_stats(f->sub, &s);
  assert_int_equal(s.received, 7);
  assert_int_equal(s.delivered, 5);
  assert_int_equal(s.invalid, 1);
  assert_int_equal(s.duplicates, 1);

  json_t *h = proto_events_sub_health(f->sub);
  assert_non_null(h);
  assert_true(json_is_true(json_object_get(h, "connected")));
  assert_true(json_is_true(json_object_get(h, "subscribed")));
  assert_int_equal(json_integer_value(json_object_get(h, "invalid")), 1);
  json_decref(h);

  /* A handler added while connected is subscribed at once. */
  assert_int_equal(proto_events_sub_on(f->sub, "order_failed", handler, f), 0);
  tl_wait(&f->tl, sub_ready, f, 5000, "the new channel subscribed");
  publish_raw(f, "order_failed", "{\"pattern\":\"order_failed\",\"data\":{}}");
  w.n = 6;
  tl_wait(&f->tl, seen_n, &w, 5000, "the event on the new channel");
  assert_string_equal(f->seen[5].channel, "order_failed");
}

/* Redis restarts: the subscriber notices, reconnects and subscribes again. */
static void test_resubscribes_after_restart(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  f->sub = new_sub(f, NULL);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", handler, f), 0);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed");
  publish_raw(f, "order_created", "{\"data\":1}");
  want_t w = {f, 1};
  tl_wait(&f->tl, seen_n, &w, 5000, "the first event");

  redis_stop(&f->redis);
  tl_wait(&f->tl, sub_down, f, 5000, "the subscriber notices");
  assert_false(proto_events_sub_ready(f->sub));
  redis_start(&f->redis, f->port, NULL);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed again");
  proto_redis_status_t st;
  proto_events_sub_status(f->sub, &st);
  assert_int_equal(st.connects, 2);
  assert_true(st.last_error[0] != '\0');

  publish_raw(f, "order_created", "{\"data\":2}");
  w.n = 2;
  tl_wait(&f->tl, seen_n, &w, 5000, "the event after the restart");
  assert_string_equal(f->seen[1].data, "2");

  /* And once more, killed this time. */
  redis_kill(&f->redis, SIGKILL);
  tl_wait(&f->tl, sub_down, f, 5000, "the subscriber notices the crash");
  redis_start(&f->redis, f->port, NULL);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed after the crash");
  publish_raw(f, "order_created", "{\"data\":3}");
  w.n = 3;
  tl_wait(&f->tl, seen_n, &w, 5000, "the event after the crash");
}

/* Nothing on the port: errors reported, attempts repeated; then Redis comes. */
static void test_refused_then_connects(void **state) {
  fixture_t *f = *state;
  f->sub = new_sub(f, NULL);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", handler, f), 0);
  tl_wait(&f->tl, sub_failed_twice, f, 5000, "two refused attempts");
  proto_redis_status_t st;
  proto_events_sub_status(f->sub, &st);
  assert_false(st.connected);
  assert_non_null(strstr(st.last_error, "refused"));
  redis_start(&f->redis, f->port, NULL);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed once Redis is up");
}

/* AUTH, and a round trip from our publisher: what the handler sees is what
 * was published (data unchanged, our metadata). */
static void test_auth_and_round_trip(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, "pw");
  f->sub = new_sub(f, "pw");
  assert_int_equal(proto_events_sub_on(f->sub, "payment_completed", handler, f), 0);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed with AUTH");

  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  o.port = f->port;
  o.password = "pw";
  f->pub = proto_events_pub_new(&f->tl.loop, &o);
  assert_non_null(f->pub);
  char evt[PROTO_ID_MAX];
  json_t *data = json_pack("{s:s,s:i,s:s}", "paymentId", "p1", "amount", 1999, "currency",
                           "EUR");
  assert_int_equal(
      proto_events_publish_ex(f->pub, "payment_completed", data, NULL, "req_77", evt), 0);
  want_t w = {f, 1};
  tl_wait(&f->tl, seen_n, &w, 5000, "the round trip");
  assert_string_equal(f->seen[0].pattern, "payment_completed");
  assert_string_equal(f->seen[0].data,
                      "{\"paymentId\":\"p1\",\"amount\":1999,\"currency\":\"EUR\"}");
  assert_string_equal(f->seen[0].event_id, evt);
  assert_string_equal(f->seen[0].request_id, "req_77");
}

static void seq_handler(const proto_event_t *ev, void *ctx) {
  fixture_t *f = ctx;
  int seq = (int)json_integer_value(json_object_get(ev->data, "seq"));
  if (seq != f->next_seq)
    f->out_of_order++;
  f->next_seq = seq + 1;
}

static int seq_done(void *arg) {
  fixture_t *f = arg;
  return f->next_seq >= 3000;
}

static int pub_empty(void *arg) {
  proto_events_pub_stats_t s;
  proto_events_pub_stats(((fixture_t *)arg)->pub, &s);
  return s.queued == 0;
}

/* 3000 events queued before the publisher is connected (more than the
 * pipelining window), through a host name that must be resolved: all arrive,
 * in order, exactly once. */
static void test_many_in_order_via_hostname(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  f->sub = new_sub(f, NULL);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", seq_handler, f), 0);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed");

  proto_redis_opts_t o;
  memset(&o, 0, sizeof(o));
  o.host = "localhost"; /* may resolve to ::1 first: the next attempt tries 127.0.0.1 */
  o.port = f->port;
  o.backoff_min_ms = 20;
  f->pub = proto_events_pub_new(&f->tl.loop, &o);
  assert_non_null(f->pub);
  for (int i = 0; i < 3000; i++)
    assert_int_equal(proto_events_publish(f->pub, "order_created",
                                          json_pack("{s:i,s:s}", "seq", i, "pad",
                                                    "0123456789abcdef0123456789abcdef"),
                                          NULL),
                     0);
  tl_wait(&f->tl, seq_done, f, 10000, "3000 events");
  tl_wait(&f->tl, pub_empty, f, 5000, "publisher queue empty");
  assert_int_equal(f->out_of_order, 0);
  proto_events_sub_stats_t s;
  proto_events_sub_stats(f->sub, &s);
  assert_int_equal(s.delivered, 3000);
  assert_int_equal(s.duplicates, 0);
  proto_events_pub_stats_t ps;
  proto_events_pub_stats(f->pub, &ps);
  assert_int_equal(ps.published, 3000);
  assert_int_equal(ps.unheard, 0);
}

/* A handler may close the subscriber; no handler runs after that. */
static void test_close_from_handler(void **state) {
  fixture_t *f = *state;
  redis_start(&f->redis, f->port, NULL);
  f->sub = new_sub(f, NULL);
  assert_int_equal(proto_events_sub_on(f->sub, "order_created", handler, f), 0);
  tl_wait(&f->tl, sub_ready, f, 5000, "subscribed");
  /* Three messages in one pipeline, likely read in one go. */
  redisContext *c = redis_sync(&f->redis);
  for (int i = 0; i < 3; i++)
    assert_int_equal(redisAppendCommand(c, "PUBLISH order_created {\"data\":%d}", i),
                     REDIS_OK);
  for (int i = 0; i < 3; i++) {
    void *rep = NULL;
    assert_int_equal(redisGetReply(c, &rep), REDIS_OK);
    freeReplyObject(rep);
  }
  redisFree(c);
  f->close_in_handler = 1;
  tl_wait(&f->tl, flag_is_set, &f->sub_done, 5000, "closed from the handler");
  assert_int_equal(f->n_seen, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_envelope_bare_invalid_duplicate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resubscribes_after_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refused_then_connects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth_and_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_from_handler, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_in_order_via_hostname, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
