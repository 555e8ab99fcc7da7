/* test_conn.c: store_open()/store_close() from a schema (store/conn.h): a
 * bad sync level or schema is STORE_EINVAL before anything is created; a
 * good one gives a zeroed block of the service's size with the connection,
 * path and prepared statements; a statement that does not prepare or a
 * DATA_DIR that is a file is STORE_ERROR with nothing left open (ASan).
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
#include <sqlite3.h>

#include "store/conn.h"

#define TEST_DB_FILE "c.db"

/* A service's store: the connection first, then its own (unowned) state. */
typedef struct test_store {
  store_conn_t c;
  int extra;
} test_store_t;

static const store_db_migration_t steps[] = {
    {"CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL);"},
};

static const char *const good_sql[] = {"INSERT INTO t (id) VALUES (?1)", "SELECT 1 FROM t"};
static const char *const bad_sql[] = {"SELECT 1 FROM t", "SELECT 1 FROM no_such_table"};

static const store_schema_t schema = {
    .file = TEST_DB_FILE,
    .steps = steps,
    .version = 1,
    .sql = good_sql,
    .n_stmt = 2,
    .size = sizeof(test_store_t),
};

typedef struct fixture {
  char dir[256];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/store-conn-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir))
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {TEST_DB_FILE, TEST_DB_FILE "-wal", TEST_DB_FILE "-shm",
                                      "file"};
  fixture_t *f = *state;
  char p[400];
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static void opens_prepares_and_closes(void **state) {
  fixture_t *f = *state;
  store_conn_t *c = NULL;
  char mode[16];
  int sync = -1;
  assert_int_equal(store_open(f->dir, STORE_SYNC_FULL, &schema, &c), STORE_OK);
  assert_non_null(c);
  test_store_t *s = (test_store_t *)c;
  assert_int_equal(s->extra, 0); /* the block is zeroed */
  assert_non_null(c->db);
  assert_non_null(strstr(c->path, TEST_DB_FILE));
  assert_int_equal(c->n_stmt, 2);
  assert_non_null(c->stmt[0]);
  assert_non_null(c->stmt[1]);
  assert_int_equal(store_conn_settings(c, mode, sizeof(mode), &sync), STORE_OK);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, STORE_SYNC_FULL);
  /* The statements are the schema's, in its order. */
  assert_string_equal(sqlite3_sql(c->stmt[1]), good_sql[1]);
  store_close(c);
  /* Open again: the schema is there, nothing to migrate. */
  assert_int_equal(store_open(f->dir, STORE_SYNC_NORMAL, &schema, &c), STORE_OK);
  assert_int_equal(store_conn_settings(c, mode, sizeof(mode), &sync), STORE_OK);
  assert_int_equal(sync, STORE_SYNC_NORMAL);
  store_close(c);
  store_close(NULL);
}

static void bad_arguments_are_einval(void **state) {
  fixture_t *f = *state;
  store_conn_t *c = (store_conn_t *)&c; /* overwritten with NULL */
  store_schema_t small = schema;
  small.size = sizeof(store_conn_t) - 1;
  assert_int_equal(store_open(f->dir, 0, &schema, &c), STORE_EINVAL);
  assert_null(c);
  assert_int_equal(store_open(f->dir, STORE_SYNC_EXTRA + 1, &schema, &c), STORE_EINVAL);
  assert_int_equal(store_open(f->dir, STORE_SYNC_FULL, &small, &c), STORE_EINVAL);
  assert_null(c);
  char p[400];
  snprintf(p, sizeof(p), "%s/%s", f->dir, TEST_DB_FILE);
  assert_int_not_equal(access(p, F_OK), 0); /* refused before anything was created */
}

static void failures_leave_nothing_open(void **state) {
  fixture_t *f = *state;
  store_conn_t *c = NULL;
  store_schema_t bad = schema;
  bad.sql = bad_sql;
  assert_int_equal(store_open(f->dir, STORE_SYNC_FULL, &bad, &c), STORE_ERROR);
  assert_null(c);
  char file[400];
  snprintf(file, sizeof(file), "%s/file", f->dir);
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  assert_int_equal(store_open(file, STORE_SYNC_FULL, &schema, &c), STORE_ERROR);
  assert_null(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(opens_prepares_and_closes, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_arguments_are_einval, setup, teardown),
      cmocka_unit_test_setup_teardown(failures_leave_nothing_open, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
