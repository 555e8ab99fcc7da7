/* test_db.c: store_db_open() on a fresh temporary DATA_DIR per test: creates
 * the directory, applies WAL + synchronous (+ foreign keys on request), runs
 * each missing migration step once in its own transaction, refuses a newer
 * schema; plus sync parsing and the statement array helpers. Log lines are
 * captured from stdout to check the events the services emitted before.
 */
#include <fcntl.h>
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

#include "proto/error.h"
#include "proto/log.h"
#include "store/db.h"

#define TEST_DB_FILE "t.db"
#define TEST_LOG_BYTES 8192

typedef struct fixture {
  char root[256];  /* mkdtemp directory */
  char dir[300];   /* DATA_DIR: root/a/b, created by store_db_open */
  char log[300];   /* captured stdout */
  sqlite3 *db;
  char *path;
  int saved_stdout;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->root, sizeof(f->root), "%s/store-db-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/a/b", f->root);
  snprintf(f->log, sizeof(f->log), "%s/log", f->root);
  f->saved_stdout = -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {TEST_DB_FILE, TEST_DB_FILE "-wal", TEST_DB_FILE "-shm"};
  fixture_t *f = *state;
  char p[400];
  store_db_close(f->db, f->path);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  snprintf(p, sizeof(p), "%s/a", f->root);
  rmdir(p);
  unlink(f->log);
  rmdir(f->root);
  free(f);
  return 0;
}

/* stdout -> f->log (truncated) until capture_end(). */
static void capture_begin(fixture_t *f) {
  fflush(stdout);
  int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  f->saved_stdout = dup(STDOUT_FILENO);
  assert_true(f->saved_stdout >= 0);
  assert_true(dup2(fd, STDOUT_FILENO) >= 0);
  close(fd);
}

/* Restore stdout; the captured text into buf. */
static void capture_end(fixture_t *f, char *buf, size_t size) {
  fflush(stdout);
  assert_true(dup2(f->saved_stdout, STDOUT_FILENO) >= 0);
  close(f->saved_stdout);
  f->saved_stdout = -1;
  FILE *in = fopen(f->log, "r");
  assert_non_null(in);
  size_t n = fread(buf, 1, size - 1, in);
  buf[n] = '\0';
  fclose(in);
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

static int query_int(sqlite3 *db, const char *sql) {
  int v = -1;
  assert_int_equal(store_db_query_one(db, sql, &v, NULL, 0), 0);
  return v;
}

/* Step 1 creates t and records itself; step 2 records itself. A step that ran
 * twice would show up as a duplicate row. */
static const store_db_migration_t steps[] = {
    {"CREATE TABLE t (step INTEGER PRIMARY KEY);"
     "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
     "CREATE TABLE child (p INTEGER REFERENCES parent (id));"
     "INSERT INTO t VALUES (1);"},
    {"INSERT INTO t VALUES (2);"},
};

static void open_db(fixture_t *f, int sync, unsigned flags, const store_db_migration_t *s,
                    int n) {
  store_db_close(f->db, f->path);
  f->db = NULL;
  f->path = NULL;
  assert_int_equal(store_db_open(f->dir, TEST_DB_FILE, sync, flags, s, n, &f->db, &f->path), 0);
  assert_non_null(f->db);
  assert_non_null(f->path);
}

/* --- tests ---------------------------------------------------------------------- */

static void sync_parse(void **state) {
  (void)state;
  assert_int_equal(store_sync_parse("NORMAL"), STORE_SYNC_NORMAL);
  assert_int_equal(store_sync_parse("full"), STORE_SYNC_FULL);
  assert_int_equal(store_sync_parse("Extra"), STORE_SYNC_EXTRA);
  assert_int_equal(store_sync_parse("OFF"), -1);
  assert_int_equal(store_sync_parse(""), -1);
  assert_int_equal(store_sync_parse(NULL), -1);
}

static void open_creates_dir_with_wal_and_sync(void **state) {
  fixture_t *f = *state;
  char mode[16], want[400];
  int sync = -1;
  open_db(f, STORE_SYNC_FULL, 0, steps, 1);
  assert_int_equal(access(f->dir, W_OK), 0);
  snprintf(want, sizeof(want), "%s/%s", f->dir, TEST_DB_FILE);
  assert_string_equal(f->path, want);
  assert_int_equal(store_db_settings(f->db, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, STORE_SYNC_FULL);
  assert_int_equal(query_int(f->db, "PRAGMA foreign_keys"), 0);

  open_db(f, STORE_SYNC_NORMAL, STORE_DB_FOREIGN_KEYS, steps, 1);
  assert_int_equal(store_db_settings(f->db, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, STORE_SYNC_NORMAL);
  assert_int_equal(query_int(f->db, "PRAGMA foreign_keys"), 1);
  assert_int_equal(store_db_exec(f->db, "INSERT INTO child VALUES (42)"), PROTO_EIO);

  open_db(f, STORE_SYNC_EXTRA, 0, steps, 1);
  assert_int_equal(store_db_settings(f->db, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, STORE_SYNC_EXTRA);
}

static void bad_sync_is_einval(void **state) {
  fixture_t *f = *state;
  assert_int_equal(store_db_open(f->dir, TEST_DB_FILE, 0, 0, steps, 1, &f->db, &f->path),
                   PROTO_EINVAL);
  assert_null(f->db);
  assert_null(f->path);
  assert_int_equal(store_db_open(f->dir, TEST_DB_FILE, 4, 0, steps, 1, &f->db, &f->path),
                   PROTO_EINVAL);
}

static void migrations_run_once(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  proto_log_set_level(PROTO_LOG_INFO);
  capture_begin(f);
  open_db(f, STORE_SYNC_NORMAL, 0, steps, 1); /* 0 -> 1 */
  open_db(f, STORE_SYNC_NORMAL, 0, steps, 1); /* nothing */
  open_db(f, STORE_SYNC_NORMAL, 0, steps, 2); /* 1 -> 2 */
  open_db(f, STORE_SYNC_NORMAL, 0, steps, 2); /* nothing */
  capture_end(f, log, sizeof(log));
  proto_log_set_level(PROTO_LOG_WARN);
  assert_int_equal(query_int(f->db, "PRAGMA user_version"), 2);
  assert_int_equal(query_int(f->db, "SELECT COUNT(*) FROM t"), 2);
  assert_int_equal(query_int(f->db, "SELECT SUM(step) FROM t"), 3);
  assert_int_equal(count(log, "\"schema_migrated\""), 2);
  assert_int_equal(count(log, "schema version 0 -> 1"), 1);
  assert_int_equal(count(log, "schema version 1 -> 2"), 1);
}

static void failed_step_rolls_back(void **state) {
  fixture_t *f = *state;
  static const store_db_migration_t bad[] = {
      {"CREATE TABLE t (step INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);"},
      {"INSERT INTO t VALUES (2); INSERT INTO nowhere VALUES (1);"},
  };
  open_db(f, STORE_SYNC_NORMAL, 0, bad, 1);
  store_db_close(f->db, f->path);
  f->db = NULL;
  f->path = NULL;
  assert_int_equal(store_db_open(f->dir, TEST_DB_FILE, STORE_SYNC_NORMAL, 0, bad, 2, &f->db,
                                 &f->path),
                   PROTO_EIO);
  assert_null(f->db);
  open_db(f, STORE_SYNC_NORMAL, 0, bad, 1); /* step 1 intact, step 2 undone */
  assert_int_equal(query_int(f->db, "PRAGMA user_version"), 1);
  assert_int_equal(query_int(f->db, "SELECT COUNT(*) FROM t"), 1);
}

static void newer_schema_refused(void **state) {
  fixture_t *f = *state;
  char log[TEST_LOG_BYTES];
  open_db(f, STORE_SYNC_FULL, 0, steps, 2);
  assert_int_equal(store_db_exec(f->db, "PRAGMA user_version = 99"), 0);
  store_db_close(f->db, f->path);
  f->db = NULL;
  f->path = NULL;
  capture_begin(f);
  int rc = store_db_open(f->dir, TEST_DB_FILE, STORE_SYNC_FULL, 0, steps, 2, &f->db, &f->path);
  capture_end(f, log, sizeof(log));
  assert_int_equal(rc, PROTO_EIO);
  assert_null(f->db);
  assert_null(f->path);
  assert_non_null(strstr(log, "\"storage_error\""));
  assert_non_null(strstr(log, "has schema version 99; this build knows up to 2: refusing"));
}

static void data_dir_is_a_file(void **state) {
  fixture_t *f = *state;
  char file[400];
  snprintf(file, sizeof(file), "%s/a", f->root);
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  assert_int_equal(store_db_open(f->dir, TEST_DB_FILE, STORE_SYNC_FULL, 0, steps, 1, &f->db,
                                 &f->path),
                   PROTO_EIO);
  assert_null(f->db);
  unlink(file);
}

static void prepare_and_finalize(void **state) {
  fixture_t *f = *state;
  static const char *const good[] = {"SELECT step FROM t ORDER BY step", "SELECT COUNT(*) FROM t"};
  static const char *const bad[] = {"SELECT 1", "SELECT * FROM nowhere"};
  sqlite3_stmt *st[2];
  open_db(f, STORE_SYNC_NORMAL, 0, steps, 2);
  assert_int_equal(store_db_prepare(f->db, good, 2, st), 0);
  assert_int_equal(sqlite3_step(st[1]), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st[1], 0), 2);
  store_stmt_done(st[1]);
  assert_int_equal(sqlite3_step(st[1]), SQLITE_ROW); /* reset: runs again */
  store_stmt_done(st[1]);
  store_db_finalize(st, 2);
  assert_null(st[0]);
  assert_null(st[1]);
  assert_int_equal(store_db_prepare(f->db, bad, 2, st), PROTO_EIO);
  assert_null(st[0]);
  assert_null(st[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sync_parse),
      cmocka_unit_test_setup_teardown(open_creates_dir_with_wal_and_sync, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_sync_is_einval, setup, teardown),
      cmocka_unit_test_setup_teardown(migrations_run_once, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_step_rolls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(newer_schema_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(data_dir_is_a_file, setup, teardown),
      cmocka_unit_test_setup_teardown(prepare_and_finalize, setup, teardown),
  };
  proto_log_set_level(PROTO_LOG_WARN); /* keep store_opened-style lines out of the output */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
