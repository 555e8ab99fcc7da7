/* test_stmt.c: the statement helpers of store/stmt.h on an in-memory
 * database: binding (NULL, the size limit), text columns as JSON, run /
 * exists / count / ping with their return codes and the logged op, and the
 * row loop (order, a failing row function, a failing step). Every helper
 * that steps leaves the statement reset: each test runs it twice.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/stmt.h"

#define TEST_NOT_FOUND (STORE_RC_SERVICE - 3)
#define TEST_LOG_BYTES 4096

typedef struct fixture {
  sqlite3 *db;
  char log[64];                    /* captured stdout file */
  int saved_stdout;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (!f || sqlite3_open(":memory:", &f->db) != SQLITE_OK)
    return -1;
  snprintf(f->log, sizeof(f->log), "/tmp/store-stmt-%ld.log", (long)getpid());
  f->saved_stdout = -1;
  if (sqlite3_exec(f->db,
                   "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER, v TEXT);"
                   "INSERT INTO t VALUES ('a', 1, 'x'), ('b', 2, NULL);",
                   NULL, NULL, NULL) != SQLITE_OK)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  assert_int_equal(sqlite3_close(f->db), SQLITE_OK); /* every statement finalized */
  unlink(f->log);
  free(f);
  return 0;
}

static sqlite3_stmt *prepare(fixture_t *f, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(f->db, sql, -1, &st, NULL), SQLITE_OK);
  return st;
}

static void capture_begin(fixture_t *f) {
  fflush(stdout);
  FILE *out = fopen(f->log, "w");
  assert_non_null(out);
  f->saved_stdout = dup(STDOUT_FILENO);
  assert_true(f->saved_stdout >= 0);
  assert_true(dup2(fileno(out), STDOUT_FILENO) >= 0);
  fclose(out);
}

static void capture_end(fixture_t *f, char *buf, size_t size) {
  fflush(stdout);
  assert_true(dup2(f->saved_stdout, STDOUT_FILENO) >= 0);
  close(f->saved_stdout);
  FILE *in = fopen(f->log, "r");
  assert_non_null(in);
  size_t n = fread(buf, 1, size - 1, in);
  buf[n] = '\0';
  fclose(in);
}

/* --- binding and columns -------------------------------------------------------- */

static void bind_null_and_text(void **state) {
  fixture_t *f = *state;
  sqlite3_stmt *st = prepare(f, "SELECT ?1 IS NULL, ?2, ?3, ?4");
  assert_int_equal(store_bind_text(st, 1, NULL, 5), STORE_OK);
  assert_int_equal(store_bind_text(st, 2, "hello", 3), STORE_OK); /* len, not strlen */
  assert_int_equal(store_bind_str(st, 3, "whole"), STORE_OK);
  assert_int_equal(store_bind_i64(st, 4, INT64_MIN), STORE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  assert_string_equal((const char *)sqlite3_column_text(st, 1), "hel");
  assert_string_equal((const char *)sqlite3_column_text(st, 2), "whole");
  assert_true(sqlite3_column_int64(st, 3) == INT64_MIN);
  sqlite3_finalize(st);
}

static void bind_too_big_is_refused_and_logged(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  sqlite3_stmt *st = prepare(f, "SELECT ?1");
  capture_begin(f);
  /* The length is checked before SQLite reads a byte of v. */
  int rc = store_bind_text(st, 1, "x", (size_t)INT_MAX + 1);
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, STORE_ERROR);
  assert_non_null(strstr(log, "\"storage_error\""));
  assert_non_null(strstr(log, "bind: string or blob too big"));
  assert_int_equal(store_bind_i64(st, 2, 1), STORE_ERROR); /* no ?2: SQLITE_RANGE */
  sqlite3_finalize(st);
}

static void columns_as_json(void **state) {
  fixture_t *f = *state;
  sqlite3_stmt *st = prepare(f, "SELECT v, v FROM t ORDER BY id");
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  json_t *a = store_column_text(st, 0), *b = store_column_json(st, 1);
  assert_string_equal(json_string_value(a), "x");
  assert_string_equal(json_string_value(b), "x");
  json_decref(a);
  json_decref(b);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW); /* 'b': v is NULL */
  assert_null(store_column_text(st, 0));
  b = store_column_json(st, 1);
  assert_true(json_is_null(b));
  json_decref(b);
  sqlite3_finalize(st);
}

/* --- stepping ------------------------------------------------------------------- */

static void run_expects_done(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  sqlite3_stmt *st = prepare(f, "INSERT INTO t (id) VALUES (?1)");
  assert_int_equal(store_bind_str(st, 1, "c"), STORE_OK);
  assert_int_equal(store_stmt_run(st, "insert t"), STORE_OK);
  assert_int_equal(store_bind_str(st, 1, "c"), STORE_OK); /* reset and cleared */
  capture_begin(f);
  int rc = store_stmt_run(st, "insert t");
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, STORE_ERROR);
  assert_non_null(strstr(log, "insert t: constraint failed"));
  sqlite3_finalize(st);
}

static void exists_found_missing(void **state) {
  fixture_t *f = *state;
  sqlite3_stmt *st = prepare(f, "SELECT 1 FROM t WHERE id = ?1");
  assert_int_equal(store_stmt_exists(st, "a", 1, TEST_NOT_FOUND, "find t"), STORE_OK);
  assert_int_equal(store_stmt_exists(st, "abc", 1, TEST_NOT_FOUND, "find t"), STORE_OK);
  assert_int_equal(store_stmt_exists(st, "z", 1, TEST_NOT_FOUND, "find t"), TEST_NOT_FOUND);
  assert_int_equal(store_stmt_exists(st, "a", (size_t)INT_MAX + 1, TEST_NOT_FOUND, "find t"),
                   STORE_ERROR);
  sqlite3_finalize(st);
}

static void count_reads_one_row(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  int64_t n = -1;
  sqlite3_stmt *st = prepare(f, "SELECT COUNT(*) FROM t WHERE n >= ?1");
  assert_int_equal(store_bind_i64(st, 1, 0), STORE_OK);
  assert_int_equal(store_stmt_count(st, "count t", &n), STORE_OK);
  assert_int_equal(n, 2);
  assert_int_equal(store_bind_i64(st, 1, 2), STORE_OK);
  assert_int_equal(store_stmt_count(st, "count t", &n), STORE_OK);
  assert_int_equal(n, 1);
  sqlite3_finalize(st);
  /* No row at all is a broken count, reported as SQLITE_ERROR. */
  st = prepare(f, "SELECT COUNT(*) FROM t GROUP BY id HAVING 0");
  n = -1;
  capture_begin(f);
  int rc = store_stmt_count(st, "count none", &n);
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, STORE_ERROR);
  assert_int_equal(n, -1);
  assert_non_null(strstr(log, "count none: SQL logic error (1)"));
  sqlite3_finalize(st);
}

static void ping_answers(void **state) {
  fixture_t *f = *state;
  sqlite3_stmt *st = prepare(f, "SELECT 1 FROM t LIMIT 1");
  assert_int_equal(store_stmt_ping(st), STORE_OK);
  assert_int_equal(sqlite3_exec(f->db, "DELETE FROM t", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(store_stmt_ping(st), STORE_OK); /* no row is an answer too */
  sqlite3_finalize(st);
}

/* --- rows ----------------------------------------------------------------------- */

static json_t *row_id(sqlite3_stmt *st, void *arg) {
  int *calls = arg;
  if (calls && ++*calls == 2)
    return NULL; /* the second row "cannot be built" */
  return json_pack("{s:o, s:I}", "id", store_column_json(st, 0), "n",
                   (json_int_t)sqlite3_column_int64(st, 1));
}

static void rows_in_order(void **state) {
  fixture_t *f = *state;
  json_t *out = NULL;
  sqlite3_stmt *st = prepare(f, "SELECT id, n FROM t ORDER BY id DESC LIMIT ?1");
  for (int pass = 0; pass < 2; pass++) {
    assert_int_equal(store_bind_i64(st, 1, 10), STORE_OK);
    assert_int_equal(store_stmt_rows(st, row_id, NULL, "list t", "cannot build t", &out),
                     STORE_OK);
    store_stmt_done(st);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "id")), "b");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 1), "n")), 1);
    json_decref(out);
  }
  /* Nothing matches: an empty array. */
  assert_int_equal(store_bind_i64(st, 1, 0), STORE_OK);
  assert_int_equal(store_stmt_rows(st, row_id, NULL, "list t", NULL, &out), STORE_OK);
  store_stmt_done(st);
  assert_int_equal(json_array_size(out), 0);
  json_decref(out);
  sqlite3_finalize(st);
}

static void rows_failing_row_is_logged(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  int calls = 0;
  json_t *out = json_true(); /* overwritten with NULL */
  sqlite3_stmt *st = prepare(f, "SELECT id, n FROM t ORDER BY id");
  capture_begin(f);
  int rc = store_stmt_rows(st, row_id, &calls, "list t", "cannot build the t list", &out);
  capture_end(f, log, sizeof(log));
  store_stmt_done(st);
  assert_int_equal(rc, STORE_ERROR);
  assert_null(out);
  assert_int_equal(calls, 2);
  assert_non_null(strstr(log, "\"storage_error\""));
  assert_non_null(strstr(log, "cannot build the t list"));
  /* NULL message: the row function logs, the loop adds nothing. */
  calls = 0;
  capture_begin(f);
  rc = store_stmt_rows(st, row_id, &calls, "list t", NULL, &out);
  capture_end(f, log, sizeof(log));
  store_stmt_done(st);
  assert_int_equal(rc, STORE_ERROR);
  assert_null(strstr(log, "storage_error"));
  sqlite3_finalize(st);
}

static void rows_step_error_is_logged_as_op(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  json_t *out = NULL;
  /* abs(INT64_MIN) fails at step time with "integer overflow". */
  sqlite3_stmt *st = prepare(f, "SELECT id, abs(?1) FROM t");
  assert_int_equal(store_bind_i64(st, 1, INT64_MIN), STORE_OK);
  capture_begin(f);
  int rc = store_stmt_rows(st, row_id, NULL, "list t", "cannot build t", &out);
  capture_end(f, log, sizeof(log));
  store_stmt_done(st);
  assert_int_equal(rc, STORE_ERROR);
  assert_null(out);
  assert_non_null(strstr(log, "list t: SQL logic error (1): integer overflow"));
  sqlite3_finalize(st);
}

static void get_found_missing_and_failing(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  json_t *out = NULL;
  int calls = 1; /* row_id's next call is its second: it fails */
  sqlite3_stmt *st = prepare(f, "SELECT id, n FROM t WHERE id = ?1");
  for (int pass = 0; pass < 2; pass++) {
    assert_int_equal(store_stmt_get(st, "b", 1, TEST_NOT_FOUND, row_id, NULL, "get t",
                                    "cannot build t", &out),
                     STORE_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "n")), 2);
    json_decref(out);
  }
  out = json_true(); /* overwritten with NULL */
  assert_int_equal(store_stmt_get(st, "z", 1, TEST_NOT_FOUND, row_id, NULL, "get t",
                                  "cannot build t", &out),
                   TEST_NOT_FOUND);
  assert_null(out);
  capture_begin(f);
  int rc = store_stmt_get(st, "a", 1, TEST_NOT_FOUND, row_id, &calls, "get t",
                          "cannot build the t", &out);
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, STORE_ERROR);
  assert_null(out);
  assert_non_null(strstr(log, "cannot build the t"));
  sqlite3_finalize(st);
  /* A step error is logged as op. */
  st = prepare(f, "SELECT id, abs(-9223372036854775807 - 1) FROM t WHERE id = ?1");
  capture_begin(f);
  rc = store_stmt_get(st, "a", 1, TEST_NOT_FOUND, row_id, NULL, "get t", NULL, &out);
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, STORE_ERROR);
  assert_non_null(strstr(log, "get t: SQL logic error (1): integer overflow"));
  sqlite3_finalize(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(bind_null_and_text, setup, teardown),
      cmocka_unit_test_setup_teardown(bind_too_big_is_refused_and_logged, setup, teardown),
      cmocka_unit_test_setup_teardown(columns_as_json, setup, teardown),
      cmocka_unit_test_setup_teardown(run_expects_done, setup, teardown),
      cmocka_unit_test_setup_teardown(exists_found_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(count_reads_one_row, setup, teardown),
      cmocka_unit_test_setup_teardown(ping_answers, setup, teardown),
      cmocka_unit_test_setup_teardown(rows_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(rows_failing_row_is_logged, setup, teardown),
      cmocka_unit_test_setup_teardown(rows_step_error_is_logged_as_op, setup, teardown),
      cmocka_unit_test_setup_teardown(get_found_missing_and_failing, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
