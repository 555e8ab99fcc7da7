/* test_commit_group.c: writes of one loop turn share one commit; deferred
 * functions run after it, in order, never inline; a failed commit rolls back
 * and reports PROTO_EIO; close drains. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/error.h"
#include "proto/log.h"
#include "store/commit_group.h"

typedef struct fx {
  uv_loop_t loop;
  sqlite3 *db;
  store_group_t *g;
  int order[16];
  int status[16];
  int n;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  proto_log_set_level(PROTO_LOG_ERROR);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(sqlite3_open(":memory:", &f->db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(f->db, "CREATE TABLE t(x INTEGER UNIQUE)", NULL, NULL, NULL),
                   SQLITE_OK);
  f->g = store_group_new(&f->loop, f->db);
  assert_non_null(f->g);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  if (f->g)
    store_group_close(f->g);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  sqlite3_close(f->db);
  free(f);
  return 0;
}

typedef struct tag {
  fx_t *f;
  int id;
} tag_t;

static void record(int status, void *arg) {
  tag_t *t = arg;
  t->f->order[t->f->n] = t->id;
  t->f->status[t->f->n] = status;
  t->f->n++;
}

static int count_rows(fx_t *f) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return n;
}

static void insert(fx_t *f, int x) {
  char sql[64];
  snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d)", x);
  assert_int_equal(store_group_begin(f->g), 0);
  sqlite3_exec(f->db, sql, NULL, NULL, NULL);
}

static void test_one_commit_per_turn(void **state) {
  fx_t *f = *state;
  tag_t tags[3] = {{f, 1}, {f, 2}, {f, 3}};
  for (int i = 0; i < 3; i++) {
    insert(f, i);
    assert_int_equal(store_group_defer(f->g, record, &tags[i]), 0);
  }
  assert_int_equal(f->n, 0); /* never inline */
  assert_true(store_group_in_txn(f->g));
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->n, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(f->order[i], i + 1);
    assert_int_equal(f->status[i], 0);
  }
  store_group_stats_t st;
  store_group_stats(f->g, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(st.deferred, 3);
  assert_false(store_group_in_txn(f->g));
  assert_int_equal(count_rows(f), 3);
  /* the handles stop once idle, so the loop ends */
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

static void test_defer_without_write_still_runs(void **state) {
  fx_t *f = *state;
  tag_t t = {f, 7};
  assert_int_equal(store_group_defer(f->g, record, &t), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 1);
  assert_int_equal(f->status[0], 0);
}

static void fail_commit_trigger(fx_t *f) {
  /* A deferred foreign-key violation makes COMMIT itself fail. */
  assert_int_equal(sqlite3_exec(f->db,
                                "PRAGMA foreign_keys=ON;"
                                "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                                "CREATE TABLE c(pid INTEGER REFERENCES p(id) "
                                "DEFERRABLE INITIALLY DEFERRED)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
}

static void test_failed_commit_rolls_back(void **state) {
  fx_t *f = *state;
  tag_t t = {f, 9};
  fail_commit_trigger(f);
  insert(f, 42);
  assert_int_equal(sqlite3_exec(f->db, "INSERT INTO c VALUES(5)", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(store_group_defer(f->g, record, &t), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 1);
  assert_int_equal(f->status[0], PROTO_EIO);
  assert_int_equal(count_rows(f), 0);
  assert_true(sqlite3_get_autocommit(f->db));
}

static void chain(int status, void *arg) {
  tag_t *t = arg;
  record(status, arg);
  if (t->id < 3) {
    t->id++;
    insert(t->f, 100 + t->id);
    assert_int_equal(store_group_defer(t->f->g, chain, t), 0);
  }
}

static void test_chained_steps_each_commit(void **state) {
  fx_t *f = *state;
  tag_t t = {f, 1};
  insert(f, 1);
  assert_int_equal(store_group_defer(f->g, chain, &t), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 3);
  assert_int_equal(count_rows(f), 3);
  store_group_stats_t st;
  store_group_stats(f->g, &st);
  assert_int_equal(st.commits, 3);
}

static void test_close_drains(void **state) {
  fx_t *f = *state;
  tag_t t = {f, 5};
  insert(f, 5);
  assert_int_equal(store_group_defer(f->g, record, &t), 0);
  store_group_close(f->g);
  f->g = NULL;
  assert_int_equal(f->n, 1);
  assert_int_equal(count_rows(f), 1);
}

static void test_delay_batches_across_turns(void **state) {
  fx_t *f = *state;
  tag_t tags[2] = {{f, 1}, {f, 2}};
  store_group_set_delay(f->g, 30);
  insert(f, 1);
  assert_int_equal(store_group_defer(f->g, record, &tags[0]), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* a turn passes: the delay holds the commit */
  assert_int_equal(f->n, 0);
  insert(f, 2);
  assert_int_equal(store_group_defer(f->g, record, &tags[1]), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->n, 2);
  store_group_stats_t st;
  store_group_stats(f->g, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(count_rows(f), 2);
}

/* A chain that defers again from every deferred function: close drains it
 * for its rounds, then refuses (PROTO_ECLOSED) instead of looping for ever. */
typedef struct chain {
  store_group_t *g;
  int runs;
  int refused;
} chain_t;

static void chain_step(int status, void *arg) {
  chain_t *c = arg;
  (void)status;
  c->runs++;
  int rc = store_group_defer(c->g, chain_step, c);
  if (rc == PROTO_ECLOSED)
    c->refused = 1;
  else
    assert_int_equal(rc, 0);
}

static void test_close_cuts_an_endless_chain(void **state) {
  fx_t *f = *state;
  chain_t c = {f->g, 0, 0};
  insert(f, 1);
  assert_int_equal(store_group_defer(f->g, chain_step, &c), 0);
  store_group_close(f->g);
  f->g = NULL;
  assert_true(c.refused);
  assert_true(c.runs >= 64);
  assert_true(c.runs <= 66);
  assert_int_equal(count_rows(f), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_one_commit_per_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_defer_without_write_still_runs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_commit_rolls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chained_steps_each_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_cuts_an_endless_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delay_batches_across_turns, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
