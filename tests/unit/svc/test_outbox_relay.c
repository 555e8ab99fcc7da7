/* test_outbox_relay.c: the outbox relay of svc/outbox.h on an in-memory
 * database with a recording sender in place of the publisher: rows left from
 * before are handed over at a kick, in id order, with their stored eventId,
 * occurredAt and metadata; a row is marked sent only on its ack (an ack of
 * PROTO_ECLOSED leaves it unsent); at most a batch per loop turn; no row is
 * read while the commit group's transaction is open (it goes after the
 * COMMIT); a refusing sender is retried; a row of broken JSON is skipped.
 * Every test runs under a watchdog and ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>

#include "proto/error.h"
#include "proto/log.h"
#include "store/commit_group.h"
#include "store/outbox.h"
#include "svc/outbox.h"

#define TEST_SENT_MAX 200
#define TEST_WATCHDOG_MS 10000

typedef struct sent {
  char pattern[32];
  char event_id[PROTO_ID_MAX];
  char occurred_at[PROTO_ISO_TIME_LEN];
  char *body;                      /* {"data":...,"metadata":...} as received */
  proto_events_ack_fn ack;
  void *ack_arg;
  int in_txn;                      /* the group's transaction was open at the send */
} sent_t;

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  int watchdog_fired;
  sqlite3 *db;
  store_outbox_t *o;
  store_group_t *g;
  svc_outbox_relay_t *r;
  sent_t sent[TEST_SENT_MAX];
  int n_sent;
  int refuse;                      /* sends to refuse with PROTO_EFULL */
} fixture_t;

static void on_watchdog(uv_timer_t *t) {
  ((fixture_t *)t->data)->watchdog_fired = 1;
}

static int test_send(void *arg, const char *pattern, json_t *data, json_t *metadata,
                     const proto_events_publish_opts_t *opts) {
  fixture_t *f = arg;
  if (f->refuse > 0) {
    f->refuse--;
    json_decref(data);
    json_decref(metadata);
    return PROTO_EFULL;
  }
  assert_true(f->n_sent < TEST_SENT_MAX);
  sent_t *s = &f->sent[f->n_sent++];
  snprintf(s->pattern, sizeof(s->pattern), "%s", pattern);
  snprintf(s->event_id, sizeof(s->event_id), "%s", opts->event_id ? opts->event_id : "");
  snprintf(s->occurred_at, sizeof(s->occurred_at), "%s",
           opts->occurred_at ? opts->occurred_at : "");
  json_t *m = json_pack("{s:o,s:o}", "data", data, "metadata", metadata);
  assert_non_null(m);
  s->body = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(m);
  s->ack = opts->ack;
  s->ack_arg = opts->ack_arg;
  s->in_txn = f->g ? store_group_in_txn(f->g) : 0;
  return 0;
}

static int setup_with(void **state, int group) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  if (!getenv("LOG_LEVEL"))
    setenv("LOG_LEVEL", "error", 1);
  assert_int_equal(proto_log_init("outbox-test"), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
  f->watchdog.data = f;
  assert_int_equal(uv_timer_start(&f->watchdog, on_watchdog, TEST_WATCHDOG_MS, 0), 0);
  uv_unref((uv_handle_t *)&f->watchdog);
  assert_int_equal(sqlite3_open(":memory:", &f->db), SQLITE_OK);
  static const store_db_migration_t step = STORE_OUTBOX_MIGRATION;
  assert_int_equal(sqlite3_exec(f->db, step.sql, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(store_outbox_open(f->db, &f->o), STORE_OK);
  if (group) {
    f->g = store_group_new(&f->loop, f->db);
    assert_non_null(f->g);
  }
  f->r = svc_outbox_relay_new(&f->loop, f->o, f->g, test_send, f);
  assert_non_null(f->r);
  *state = f;
  return 0;
}

static int setup(void **state) {
  return setup_with(state, 0);
}

static int setup_group(void **state) {
  return setup_with(state, 1);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  svc_outbox_relay_close(f->r);
  if (f->g)
    store_group_close(f->g);
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  store_outbox_close(f->o);
  assert_int_equal(sqlite3_close(f->db), SQLITE_OK);
  for (int i = 0; i < f->n_sent; i++)
    free(f->sent[i].body);
  free(f);
  return 0;
}

/* Run loop turns until n rows were handed over (or the watchdog fires). */
static void wait_sent(fixture_t *f, int n) {
  while (f->n_sent < n && !f->watchdog_fired)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_false(f->watchdog_fired);
  assert_int_equal(f->n_sent, n);
}

static void insert(fixture_t *f, const char *pattern, const char *rid, char id[PROTO_ID_MAX]) {
  json_t *data = json_pack("{s:s}", "orderId", "o-1");
  assert_int_equal(store_outbox_insert(f->o, pattern, data, rid, id), STORE_OK);
  json_decref(data);
}

static int64_t unsent(fixture_t *f) {
  int64_t n = -1;
  assert_int_equal(store_outbox_count_unsent(f->o, &n), STORE_OK);
  return n;
}

static void ack(fixture_t *f, int i, int status) {
  f->sent[i].ack(status, f->sent[i].ack_arg);
}

static void test_rows_left_from_before_go_at_a_kick(void **state) {
  fixture_t *f = *state;
  char id[3][PROTO_ID_MAX];
  insert(f, "payment_completed", "req-1", id[0]);
  insert(f, "payment_failed", NULL, id[1]);
  insert(f, "payment_refunded", "req-3", id[2]);
  svc_outbox_relay_kick(f->r);
  assert_int_equal(f->n_sent, 0); /* never inline */
  wait_sent(f, 3);
  assert_string_equal(f->sent[0].pattern, "payment_completed");
  assert_string_equal(f->sent[1].pattern, "payment_failed");
  assert_string_equal(f->sent[2].pattern, "payment_refunded");
  for (int i = 0; i < 3; i++) {
    assert_string_equal(f->sent[i].event_id, id[i]);
    assert_int_equal(strlen(f->sent[i].occurred_at), 24);
    assert_non_null(strstr(f->sent[i].body, f->sent[i].occurred_at));
  }
  assert_non_null(strstr(f->sent[0].body, "\"data\":{\"orderId\":\"o-1\"}"));
  assert_non_null(strstr(f->sent[0].body, "\"requestId\":\"req-1\""));
  assert_null(strstr(f->sent[1].body, "requestId"));
  /* Handed over is not sent: only an ack marks. */
  assert_int_equal(unsent(f), 3);
  ack(f, 0, 0);
  ack(f, 1, 0);
  assert_int_equal(unsent(f), 1);
  ack(f, 2, PROTO_ECLOSED); /* dropped at a stop: kept for the next start */
  assert_int_equal(unsent(f), 1);
  svc_outbox_stats_t st;
  svc_outbox_relay_stats(f->r, &st);
  assert_int_equal(st.handed, 3);
  assert_int_equal(st.acked, 2);
  assert_int_equal(st.marked, 2);
  assert_int_equal(st.unacked, 1);
  assert_int_equal(st.inflight, 0);
  /* A second kick hands nothing twice. */
  char late[PROTO_ID_MAX];
  insert(f, "payment_completed", NULL, late);
  svc_outbox_relay_kick(f->r);
  wait_sent(f, 4);
  assert_string_equal(f->sent[3].event_id, late);
}

static void test_one_batch_per_turn(void **state) {
  fixture_t *f = *state;
  int total = SVC_OUTBOX_BATCH_MAX + 10;
  for (int i = 0; i < total; i++)
    insert(f, "e", NULL, NULL);
  svc_outbox_relay_kick(f->r);
  while (f->n_sent == 0 && !f->watchdog_fired)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->n_sent, SVC_OUTBOX_BATCH_MAX); /* the first turn's batch */
  wait_sent(f, total);
  for (int i = 0; i < total; i++)
    ack(f, i, 0);
  assert_int_equal(unsent(f), 0);
}

/* Rows of an open transaction are not read (the COMMIT could still lose
 * them); they go right after it. */
static void test_waits_for_the_commit(void **state) {
  fixture_t *f = *state;
  char id[PROTO_ID_MAX];
  assert_int_equal(store_group_begin(f->g), 0);
  insert(f, "payment_completed", "r", id);
  svc_outbox_relay_kick(f->r);
  wait_sent(f, 1);
  assert_false(f->sent[0].in_txn);
  assert_string_equal(f->sent[0].event_id, id);
  /* The mark joins the group's transaction and commits with it. */
  ack(f, 0, 0);
  assert_true(store_group_in_txn(f->g));
  while (store_group_in_txn(f->g) && !f->watchdog_fired)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(unsent(f), 0);
}

static void test_refused_then_retried(void **state) {
  fixture_t *f = *state;
  char id[PROTO_ID_MAX];
  insert(f, "e", NULL, id);
  f->refuse = 1; /* a full publisher queue */
  svc_outbox_relay_kick(f->r);
  wait_sent(f, 1); /* after SVC_OUTBOX_RETRY_MS */
  assert_string_equal(f->sent[0].event_id, id);
  assert_int_equal(f->refuse, 0);
}

static void test_broken_row_skipped(void **state) {
  fixture_t *f = *state;
  char id[PROTO_ID_MAX];
  assert_int_equal(sqlite3_exec(f->db,
                                "INSERT INTO outbox (pattern, data, metadata, event_id,"
                                " created_at) VALUES ('e', '{broken', '{}', 'evt_x',"
                                " '2026-01-01T00:00:00.000Z')",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  insert(f, "e", NULL, id);
  svc_outbox_relay_kick(f->r);
  wait_sent(f, 1);
  assert_string_equal(f->sent[0].event_id, id);
  svc_outbox_stats_t st;
  svc_outbox_relay_stats(f->r, &st);
  assert_int_equal(st.invalid, 1);
  ack(f, 0, 0);
  assert_int_equal(unsent(f), 1); /* the broken row stays, for an operator */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rows_left_from_before_go_at_a_kick, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_batch_per_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_waits_for_the_commit, setup_group, teardown),
      cmocka_unit_test_setup_teardown(test_refused_then_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_row_skipped, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
