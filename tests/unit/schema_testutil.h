/* schema_testutil.h: for the stores' migration tests. A database written the
 * way an older release left it (its schema frozen in the test), and what
 * SQLite's planner does with a statement. Static inline: each test file uses
 * what it needs.
 */
#ifndef TESTS_SCHEMA_TESTUTIL_H
#define TESTS_SCHEMA_TESTUTIL_H

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/db.h"

/* mkdir -p dir, then run sql on a new database dir/file. */
static inline void testutil_make_db(const char *dir, const char *file, const char *sql) {
  char p[512], *c;
  snprintf(p, sizeof(p), "%s", dir);
  for (c = p + 1; *c; c++) {
    if (*c != '/')
      continue;
    *c = '\0';
    assert_true(mkdir(p, 0750) == 0 || errno == EEXIST);
    *c = '/';
  }
  assert_true(mkdir(p, 0750) == 0 || errno == EEXIST);
  snprintf(p, sizeof(p), "%s/%s", dir, file);
  sqlite3 *db = NULL;
  char *err = NULL;
  assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("making the old database: %s", err ? err : "?");
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Non-zero when running sql makes SQLite build an ephemeral table. */
static inline int testutil_uses_ephemeral(sqlite3 *db, const char *sql) {
  char explain[1024];
  sqlite3_stmt *st = NULL;
  int found = 0;
  snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
  assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW)
    if (strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0)
      found = 1;
  sqlite3_finalize(st);
  return found;
}

static inline int testutil_user_version(sqlite3 *db) {
  int v = -1;
  assert_int_equal(store_db_query_one(db, "PRAGMA user_version", &v, NULL, 0), 0);
  return v;
}

/* The extended result code of running sql (SQLITE_OK when it worked). */
static inline int testutil_exec_rc(sqlite3 *db, const char *sql) {
  sqlite3_exec(db, sql, NULL, NULL, NULL);
  return sqlite3_extended_errcode(db);
}

#endif
