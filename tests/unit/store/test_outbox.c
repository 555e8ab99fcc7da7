/* test_outbox.c: the outbox statements of store/outbox.h on an in-memory
 * database with the migration step applied: insert (metadata with a fresh
 * eventId, requestId and occurredAt; in a rolled-back transaction nothing is
 * left), the unsent scan (id order, limit, cursor, a callback that stops),
 * mark sent (idempotent), purge (only sent rows past the time, bounded), ids
 * never reused after a purge, and the bad arguments.
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

#include "store/outbox.h"

#define TEST_ROWS_MAX 16

typedef struct fixture {
  sqlite3 *db;
  store_outbox_t *o;
} fixture_t;

typedef struct seen {
  int n;
  int stop_after;                  /* 0: never stop */
  int64_t id[TEST_ROWS_MAX];
  char pattern[TEST_ROWS_MAX][32];
  char event_id[TEST_ROWS_MAX][PROTO_ID_MAX];
  char data[TEST_ROWS_MAX][128];
  char metadata[TEST_ROWS_MAX][256];
} seen_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (!f || sqlite3_open(":memory:", &f->db) != SQLITE_OK)
    return -1;
  static const store_db_migration_t step = STORE_OUTBOX_MIGRATION;
  if (sqlite3_exec(f->db, step.sql, NULL, NULL, NULL) != SQLITE_OK)
    return -1;
  if (store_outbox_open(f->db, &f->o) != STORE_OK)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  store_outbox_close(f->o);
  assert_int_equal(sqlite3_close(f->db), SQLITE_OK); /* every statement finalized */
  free(f);
  return 0;
}

static int collect(const store_outbox_row_t *row, void *arg) {
  seen_t *s = arg;
  if (s->stop_after && s->n >= s->stop_after)
    return 1;
  assert_true(s->n < TEST_ROWS_MAX);
  s->id[s->n] = row->id;
  snprintf(s->pattern[s->n], sizeof(s->pattern[0]), "%s", row->pattern);
  snprintf(s->event_id[s->n], sizeof(s->event_id[0]), "%s", row->event_id);
  snprintf(s->data[s->n], sizeof(s->data[0]), "%s", row->data);
  snprintf(s->metadata[s->n], sizeof(s->metadata[0]), "%s", row->metadata);
  s->n++;
  return 0;
}

static void insert(fixture_t *f, const char *pattern, const char *rid, char id[PROTO_ID_MAX]) {
  json_t *data = json_pack("{s:s,s:i}", "orderId", "o-1", "amount", 12);
  assert_non_null(data);
  assert_int_equal(store_outbox_insert(f->o, pattern, data, rid, id), STORE_OK);
  json_decref(data);
}

static int64_t unsent(fixture_t *f) {
  int64_t n = -1;
  assert_int_equal(store_outbox_count_unsent(f->o, &n), STORE_OK);
  return n;
}

static void test_insert_metadata(void **state) {
  fixture_t *f = *state;
  char a[PROTO_ID_MAX], b[PROTO_ID_MAX];
  insert(f, "payment_completed", "req-1", a);
  insert(f, "payment_failed", NULL, b);
  assert_int_equal(strncmp(a, "evt_", 4), 0);
  assert_int_equal(strlen(a), 4 + 32);
  assert_string_not_equal(a, b);
  seen_t s = {0};
  int n = -1;
  assert_int_equal(store_outbox_unsent(f->o, 0, 10, collect, &s, &n), STORE_OK);
  assert_int_equal(n, 2);
  assert_string_equal(s.pattern[0], "payment_completed");
  assert_string_equal(s.event_id[0], a);
  assert_string_equal(s.data[0], "{\"orderId\":\"o-1\",\"amount\":12}");
  json_t *m = json_loads(s.metadata[0], 0, NULL);
  assert_non_null(m);
  /* The publisher's key order: requestId, eventId, occurredAt. */
  const char *k = json_object_iter_key(json_object_iter(m));
  assert_string_equal(k, "requestId");
  assert_string_equal(json_string_value(json_object_get(m, "requestId")), "req-1");
  assert_string_equal(json_string_value(json_object_get(m, "eventId")), a);
  const char *at = json_string_value(json_object_get(m, "occurredAt"));
  assert_non_null(at);
  assert_int_equal(strlen(at), 24); /* 2026-01-01T00:00:00.000Z */
  json_decref(m);
  m = json_loads(s.metadata[1], 0, NULL);
  assert_non_null(m);
  assert_null(json_object_get(m, "requestId"));
  assert_string_equal(json_string_value(json_object_get(m, "eventId")), b);
  json_decref(m);
  /* NULL data is JSON null, as the publisher sends it. */
  assert_int_equal(store_outbox_insert(f->o, "x", NULL, NULL, NULL), STORE_OK);
  assert_int_equal(unsent(f), 3);
}

static void test_insert_rolls_back_with_the_transaction(void **state) {
  fixture_t *f = *state;
  char id[PROTO_ID_MAX];
  assert_int_equal(sqlite3_exec(f->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  insert(f, "payment_completed", "r", id);
  assert_int_equal(unsent(f), 1); /* the same connection sees its transaction */
  assert_int_equal(sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(unsent(f), 0);
}

static void test_unsent_order_limit_cursor(void **state) {
  fixture_t *f = *state;
  char id[5][PROTO_ID_MAX];
  for (int i = 0; i < 5; i++)
    insert(f, "e", NULL, id[i]);
  seen_t s = {0};
  int n = -1;
  assert_int_equal(store_outbox_unsent(f->o, 0, 3, collect, &s, &n), STORE_OK);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++)
    assert_string_equal(s.event_id[i], id[i]);
  assert_true(s.id[0] < s.id[1] && s.id[1] < s.id[2]);
  int64_t cursor = s.id[2];
  memset(&s, 0, sizeof(s));
  assert_int_equal(store_outbox_unsent(f->o, cursor, 3, collect, &s, &n), STORE_OK);
  assert_int_equal(n, 2);
  assert_string_equal(s.event_id[0], id[3]);
  assert_string_equal(s.event_id[1], id[4]);
  /* A callback that stops: the row it refused is not counted. */
  memset(&s, 0, sizeof(s));
  s.stop_after = 1;
  assert_int_equal(store_outbox_unsent(f->o, 0, 10, collect, &s, &n), STORE_OK);
  assert_int_equal(n, 1);
  /* The scan left no read transaction open: a write from elsewhere works. */
  assert_int_equal(sqlite3_get_autocommit(f->db), 1);
}

static void test_mark_sent_and_purge(void **state) {
  fixture_t *f = *state;
  char id[3][PROTO_ID_MAX];
  for (int i = 0; i < 3; i++)
    insert(f, "e", NULL, id[i]);
  seen_t s = {0};
  assert_int_equal(store_outbox_unsent(f->o, 0, 10, collect, &s, NULL), STORE_OK);
  assert_int_equal(store_outbox_mark_sent(f->o, s.id[0], "2026-01-01T00:00:00.000Z"), STORE_OK);
  assert_int_equal(store_outbox_mark_sent(f->o, s.id[1], "2026-01-02T00:00:00.000Z"), STORE_OK);
  /* Again, or a row that is gone: not an error. */
  assert_int_equal(store_outbox_mark_sent(f->o, s.id[0], "2026-03-01T00:00:00.000Z"), STORE_OK);
  assert_int_equal(store_outbox_mark_sent(f->o, 9999, "2026-03-01T00:00:00.000Z"), STORE_OK);
  assert_int_equal(unsent(f), 1);
  seen_t u = {0};
  assert_int_equal(store_outbox_unsent(f->o, 0, 10, collect, &u, NULL), STORE_OK);
  assert_int_equal(u.n, 1);
  assert_string_equal(u.event_id[0], id[2]);
  /* Only sent rows before the time, at most limit, oldest first. */
  int64_t del = -1;
  assert_int_equal(store_outbox_purge(f->o, "2026-02-01T00:00:00.000Z", 1, &del), STORE_OK);
  assert_int_equal(del, 1);
  assert_int_equal(store_outbox_purge(f->o, "2026-01-02T00:00:00.000Z", 10, &del), STORE_OK);
  assert_int_equal(del, 0); /* the second was sent at that instant, not before */
  assert_int_equal(store_outbox_purge(f->o, "2026-02-01T00:00:00.000Z", 10, &del), STORE_OK);
  assert_int_equal(del, 1);
  assert_int_equal(unsent(f), 1); /* the unsent row is never purged */
  assert_int_equal(store_outbox_purge(f->o, "9999-01-01T00:00:00.000Z", 10, &del), STORE_OK);
  assert_int_equal(del, 0);
}

static void test_ids_not_reused_after_purge(void **state) {
  fixture_t *f = *state;
  char a[PROTO_ID_MAX], b[PROTO_ID_MAX];
  insert(f, "e", NULL, a);
  seen_t s = {0};
  assert_int_equal(store_outbox_unsent(f->o, 0, 10, collect, &s, NULL), STORE_OK);
  assert_int_equal(store_outbox_mark_sent(f->o, s.id[0], "2026-01-01T00:00:00.000Z"), STORE_OK);
  int64_t del = 0;
  assert_int_equal(store_outbox_purge(f->o, "2027-01-01T00:00:00.000Z", 10, &del), STORE_OK);
  assert_int_equal(del, 1);
  insert(f, "e", NULL, b);
  seen_t t = {0};
  /* A relay whose cursor is the purged row's id still sees the new one. */
  assert_int_equal(store_outbox_unsent(f->o, s.id[0], 10, collect, &t, NULL), STORE_OK);
  assert_int_equal(t.n, 1);
  assert_true(t.id[0] > s.id[0]);
}

static void test_bad_arguments(void **state) {
  fixture_t *f = *state;
  store_outbox_t *o = (store_outbox_t *)f; /* overwritten with NULL */
  assert_int_equal(store_outbox_open(NULL, &o), STORE_EINVAL);
  assert_null(o);
  assert_int_equal(store_outbox_open(f->db, NULL), STORE_EINVAL);
  assert_int_equal(store_outbox_insert(f->o, "", NULL, NULL, NULL), STORE_EINVAL);
  assert_int_equal(store_outbox_insert(f->o, NULL, NULL, NULL, NULL), STORE_EINVAL);
  json_t *num = json_real(0.5); /* good data, a request id that is not UTF-8 */
  assert_non_null(num);
  assert_int_equal(store_outbox_insert(f->o, "e", num, "\xff", NULL), STORE_EINVAL);
  json_decref(num);
  int n = 7;
  seen_t s = {0};
  assert_int_equal(store_outbox_unsent(f->o, 0, 0, collect, &s, &n), STORE_EINVAL);
  assert_int_equal(n, 0);
  assert_int_equal(store_outbox_unsent(f->o, 0, 1, NULL, NULL, NULL), STORE_EINVAL);
  assert_int_equal(store_outbox_mark_sent(f->o, 1, ""), STORE_EINVAL);
  assert_int_equal(store_outbox_purge(f->o, "x", 0, NULL), STORE_EINVAL);
  assert_int_equal(store_outbox_count_unsent(f->o, NULL), STORE_EINVAL);
  assert_int_equal(unsent(f), 0);
  store_outbox_close(NULL);
}

static void test_open_without_table(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  store_outbox_t *o = NULL;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(store_outbox_open(db, &o), STORE_ERROR); /* logged */
  assert_null(o);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_insert_metadata, setup, teardown),
      cmocka_unit_test_setup_teardown(test_insert_rolls_back_with_the_transaction, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_unsent_order_limit_cursor, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mark_sent_and_purge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ids_not_reused_after_purge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test(test_open_without_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
