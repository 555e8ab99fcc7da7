/* test_commit_checkpoint.c: on a WAL file the commit group checkpoints in
 * the thread pool, on its own connection, once the WAL passes 1000 pages --
 * not inside the COMMIT that crossed the line; closing while a checkpoint
 * runs waits for it; a ":memory:" database keeps SQLite's behaviour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/error.h"
#include "proto/log.h"
#include "store/commit_group.h"
#include "store/db.h"

typedef struct fx {
  char dir[256];
  uv_loop_t loop;
  sqlite3 *db;
  char *path;
  store_group_t *g;
  int ran, status;
} fx_t;

static const store_db_migration_t schema[] = {
    {"CREATE TABLE t(x INTEGER PRIMARY KEY, pad BLOB);"},
};

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  proto_log_set_level(PROTO_LOG_ERROR);
  snprintf(f->dir, sizeof(f->dir), "%s/store-ckpt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(store_db_open(f->dir, "c.db", STORE_SYNC_FULL, 0, schema, 1, &f->db, &f->path),
                   0);
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
  store_db_close(f->db, f->path);
  static const char *const files[] = {"c.db", "c.db-wal", "c.db-shm"};
  char p[400];
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static void record(int status, void *arg) {
  fx_t *f = arg;
  f->ran++;
  f->status = status;
}

/* One write turn of n pages of WAL: rows padded to a page each. */
static void write_pages(fx_t *f, int first, int n) {
  char sql[256];
  snprintf(sql, sizeof(sql),
           "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i < %d) "
           "INSERT INTO t(x, pad) SELECT i, zeroblob(4000) FROM n",
           first, first + n - 1);
  assert_int_equal(store_group_begin(f->g), 0);
  assert_int_equal(sqlite3_exec(f->db, sql, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(store_group_defer(f->g, record, f), 0);
}

static uint64_t checkpoints(fx_t *f) {
  store_group_stats_t st;
  store_group_stats(f->g, &st);
  return st.checkpoints;
}

/* Frames in the WAL not yet copied into the database (a PASSIVE checkpoint
 * from the test's connection reports them without waiting). */
static int wal_frames(fx_t *f, int *backfilled) {
  int frames = -1;
  assert_int_equal(
      sqlite3_wal_checkpoint_v2(f->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, backfilled),
      SQLITE_OK);
  return frames;
}

static void test_small_turns_do_not_checkpoint(void **state) {
  fx_t *f = *state;
  write_pages(f, 1, 10);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* the commit, then nothing is left to run */
  assert_int_equal(f->ran, 1);
  assert_int_equal(f->status, 0);
  assert_int_equal(checkpoints(f), 0);
}

static void test_checkpoint_runs_in_the_pool(void **state) {
  fx_t *f = *state;
  write_pages(f, 1, 1200); /* past the 1000-page line */
  /* The loop ends only when the pool's checkpoint has reported back. */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->ran, 1);
  assert_int_equal(f->status, 0);
  assert_int_equal(checkpoints(f), 1);
  int done = -1;
  int frames = wal_frames(f, &done);
  assert_true(frames > 1000);
  assert_int_equal(done, frames); /* everything was copied back */
}

static void test_wal_is_reused_after_a_checkpoint(void **state) {
  fx_t *f = *state;
  /* Two rounds: the second starts writing the WAL from its beginning again,
   * so it never grows past one round's worth. */
  for (int round = 0; round < 2; round++) {
    write_pages(f, 1 + round * 1200, 1200);
    uv_run(&f->loop, UV_RUN_DEFAULT);
  }
  assert_int_equal(checkpoints(f), 2);
  int done = -1;
  int frames = wal_frames(f, &done);
  assert_true(frames < 1300);
  assert_int_equal(done, frames);
}

static void test_close_waits_for_a_running_checkpoint(void **state) {
  fx_t *f = *state;
  write_pages(f, 1, 1200);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* commits; the checkpoint is queued */
  assert_int_equal(f->ran, 1);
  store_group_close(f->g);         /* while it may still run */
  f->g = NULL;
  uv_run(&f->loop, UV_RUN_DEFAULT); /* teardown closes the loop: nothing may be left */
}

static void test_memory_database_keeps_sqlite_checkpoints(void **state) {
  (void)state;
  uv_loop_t loop;
  sqlite3 *db = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  store_group_t *g = store_group_new(&loop, db);
  assert_non_null(g);
  store_group_stats_t st;
  store_group_stats(g, &st);
  assert_int_equal(st.checkpoints, 0);
  store_group_close(g);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_small_turns_do_not_checkpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_runs_in_the_pool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wal_is_reused_after_a_checkpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_waits_for_a_running_checkpoint, setup, teardown),
      cmocka_unit_test(test_memory_database_keeps_sqlite_checkpoints),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
