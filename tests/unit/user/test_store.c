/* test_store.c: the user store (store.c) on a fresh temporary DATA_DIR per
 * test: schema and settings, create/get, case-insensitive duplicate emails,
 * pagination, login timestamps, and persistence across a reopen.
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

#include "proto/log.h"
#include "user.h"

typedef struct fixture {
  char root[256];      /* mkdtemp directory */
  char dir[300];       /* DATA_DIR: root/data/user, created by the store */
  user_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->root, sizeof(f->root), "%s/user-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/data/user", f->root);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"user.db", "user.db-wal", "user.db-shm"};
  fixture_t *f = *state;
  char p[400];
  user_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  snprintf(p, sizeof(p), "%s/data", f->root);
  rmdir(p);
  rmdir(f->root);
  free(f);
  return 0;
}

static user_store_t *open_store(fixture_t *f, int sync) {
  user_store_close(f->store);
  f->store = NULL;
  assert_int_equal(user_store_open(f->dir, sync, &f->store), 0);
  assert_non_null(f->store);
  return f->store;
}

static json_t *create(user_store_t *s, const char *email, const char *name) {
  json_t *u = NULL;
  assert_int_equal(user_store_create(s, email, strlen(email), name, strlen(name), &u), 0);
  assert_non_null(u);
  return u;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

static void assert_iso(const char *t) {
  char canon[PROTO_ISO_TIME_LEN];
  assert_int_equal(strlen(t), 24);
  assert_int_equal(user_parse_iso_time(t, strlen(t), canon), 0);
  assert_string_equal(canon, t);
}

/* --- tests ---------------------------------------------------------------------- */

static void open_creates_dir_with_durable_settings(void **state) {
  fixture_t *f = *state;
  char mode[16];
  int sync = -1;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  assert_int_equal(access(f->dir, W_OK), 0);
  assert_int_equal(user_store_settings(s, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, 2); /* FULL: the WAL is fsynced at every commit */
  assert_int_equal(user_store_ping(s), 0);

  s = open_store(f, STORE_SYNC_NORMAL);
  assert_int_equal(user_store_settings(s, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, 1);
  s = open_store(f, STORE_SYNC_EXTRA);
  assert_int_equal(user_store_settings(s, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, 3);

  /* The schema version is recorded for later migrations. */
  char path[400];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  snprintf(path, sizeof(path), "%s/user.db", f->dir);
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void refuses_newer_schema_and_bad_dir(void **state) {
  fixture_t *f = *state;
  user_store_t *s = NULL;
  open_store(f, STORE_SYNC_FULL);
  user_store_close(f->store);
  f->store = NULL;

  char path[400];
  sqlite3 *db = NULL;
  snprintf(path, sizeof(path), "%s/user.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(user_store_open(f->dir, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);

  /* DATA_DIR that is a file. */
  assert_int_equal(user_store_open(path, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);
  assert_int_equal(user_store_open(f->dir, 0, &s), STORE_EINVAL);
  assert_null(s);
}

static void create_then_get(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  json_t *u = create(s, "Ada@Example.com", "Ada Lovelace");
  const char *id = str(u, "id");
  assert_int_equal(strlen(id), 5 + 32);
  assert_memory_equal(id, "user_", 5);
  assert_int_equal(strspn(id + 5, "0123456789abcdef"), 32);
  assert_string_equal(str(u, "email"), "Ada@Example.com"); /* original case kept */
  assert_string_equal(str(u, "name"), "Ada Lovelace");
  assert_iso(str(u, "createdAt"));
  assert_string_equal(str(u, "createdAt"), str(u, "updatedAt"));
  assert_true(json_is_null(json_object_get(u, "lastLoginAt")));
  assert_int_equal(json_object_size(u), 6);

  json_t *g = NULL;
  assert_int_equal(user_store_get(s, id, strlen(id), &g), 0);
  assert_true(json_equal(u, g));
  json_decref(g);

  /* Non-ASCII survives the round trip byte for byte. */
  json_t *v = create(s, "zo\xc3\xab@example.org", "Zo\xc3\xab \xf0\x9f\x98\x80");
  assert_int_equal(user_store_get(s, str(v, "id"), strlen(str(v, "id")), &g), 0);
  assert_string_equal(str(g, "name"), "Zo\xc3\xab \xf0\x9f\x98\x80");
  assert_string_not_equal(str(v, "id"), id);
  json_decref(g);
  json_decref(v);
  json_decref(u);
}

static void duplicate_email_is_case_insensitive(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  json_t *u = create(s, "Bob@Example.com", "Bob");
  json_t *dup = NULL;
  static const char *const same[] = {"Bob@Example.com", "bob@example.com", "BOB@EXAMPLE.COM"};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(user_store_create(s, same[i], strlen(same[i]), "X", 1, &dup),
                     USER_STORE_EMAIL_TAKEN);
    assert_null(dup);
  }
  json_t *other = create(s, "bob2@example.com", "Bob");
  json_t *users = NULL;
  int64_t total = 0;
  assert_int_equal(user_store_list(s, 1, 10, &users, &total), 0);
  assert_int_equal(total, 2);
  json_decref(users);
  json_decref(other);
  json_decref(u);
}

static void get_missing(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  json_t *u = (json_t *)1;
  assert_int_equal(user_store_get(s, "user_nope", 9, &u), USER_STORE_NOT_FOUND);
  assert_null(u);
  /* The id is bound with its length: a prefix of a real id does not match. */
  json_t *c = create(s, "c@example.com", "C");
  const char *id = str(c, "id");
  assert_int_equal(user_store_get(s, id, strlen(id) - 1, &u), USER_STORE_NOT_FOUND);
  assert_int_equal(user_store_get(s, id, strlen(id), &u), 0);
  json_decref(u);
  json_decref(c);
}

static void pagination(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_NORMAL); /* speed; durability tested above */
  enum { N = 25 };
  char seen[N][PROTO_ID_MAX];
  json_t *users = NULL;
  int64_t total = -1;

  assert_int_equal(user_store_list(s, 1, 10, &users, &total), 0);
  assert_int_equal(total, 0);
  assert_int_equal(json_array_size(users), 0);
  json_decref(users);

  for (int i = 0; i < N; i++) {
    char email[64];
    snprintf(email, sizeof(email), "u%d@example.com", i);
    json_decref(create(s, email, "U"));
  }
  static const size_t want[] = {10, 10, 5, 0};
  char prev[128] = "";
  size_t n = 0;
  for (int page = 1; page <= 4; page++) {
    assert_int_equal(user_store_list(s, page, 10, &users, &total), 0);
    assert_int_equal(total, N);
    assert_int_equal(json_array_size(users), want[page - 1]);
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u) {
      /* Ordered by (createdAt, id), with no repeats across pages. */
      char key[128];
      snprintf(key, sizeof(key), "%s %s", str(u, "createdAt"), str(u, "id"));
      assert_true(strcmp(prev, key) < 0);
      strcpy(prev, key);
      snprintf(seen[n++], PROTO_ID_MAX, "%s", str(u, "id"));
    }
    json_decref(users);
  }
  assert_int_equal(n, N);
  assert_int_equal(user_store_list(s, 3, 7, &users, &total), 0);
  assert_int_equal(json_array_size(users), 7);
  assert_string_equal(str(json_array_get(users, 0), "id"), seen[14]);
  json_decref(users);
  assert_int_equal(user_store_list(s, 1, 100, &users, &total), 0);
  assert_int_equal(json_array_size(users), N);
  json_decref(users);
  /* The store refuses what validation should have stopped. */
  assert_int_equal(user_store_list(s, 0, 10, &users, &total), STORE_EINVAL);
  assert_int_equal(user_store_list(s, 1, 101, &users, &total), STORE_EINVAL);
}

static void login_updates_last_login(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  json_t *u = create(s, "l@example.com", "L");
  const char *id = str(u, "id");
  json_t *g = NULL;

  assert_int_equal(user_store_record_login(s, id, strlen(id), "2026-01-02T00:00:00.000Z"), 0);
  assert_int_equal(user_store_get(s, id, strlen(id), &g), 0);
  assert_string_equal(str(g, "lastLoginAt"), "2026-01-02T00:00:00.000Z");
  assert_iso(str(g, "updatedAt"));
  assert_string_equal(str(g, "createdAt"), str(u, "createdAt"));
  json_decref(g);

  /* An older event arriving late does not move it back; a newer one does. */
  assert_int_equal(user_store_record_login(s, id, strlen(id), "2026-01-01T00:00:00.000Z"), 0);
  assert_int_equal(user_store_get(s, id, strlen(id), &g), 0);
  assert_string_equal(str(g, "lastLoginAt"), "2026-01-02T00:00:00.000Z");
  json_decref(g);
  assert_int_equal(user_store_record_login(s, id, strlen(id), "2026-01-03T10:00:00.000Z"), 0);
  assert_int_equal(user_store_get(s, id, strlen(id), &g), 0);
  assert_string_equal(str(g, "lastLoginAt"), "2026-01-03T10:00:00.000Z");
  json_decref(g);

  assert_int_equal(user_store_record_login(s, "user_ghost", 10, "2026-01-03T10:00:00.000Z"),
                   USER_STORE_NOT_FOUND);
  json_decref(u);
}

static void reopen_persists(void **state) {
  fixture_t *f = *state;
  user_store_t *s = open_store(f, STORE_SYNC_FULL);
  json_t *u = create(s, "p@example.com", "Persisted");
  const char *id = str(u, "id");
  assert_int_equal(user_store_record_login(s, id, strlen(id), "2026-05-05T05:05:05.005Z"), 0);
  json_t *before = NULL, *after = NULL;
  assert_int_equal(user_store_get(s, id, strlen(id), &before), 0);

  s = open_store(f, STORE_SYNC_FULL); /* closes the first connection */
  assert_int_equal(user_store_get(s, id, strlen(id), &after), 0);
  assert_true(json_equal(before, after));
  /* The unique index survived too. */
  json_t *dup = NULL;
  assert_int_equal(user_store_create(s, "P@EXAMPLE.COM", 13, "Again", 5, &dup),
                   USER_STORE_EMAIL_TAKEN);
  json_decref(before);
  json_decref(after);
  json_decref(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(open_creates_dir_with_durable_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_newer_schema_and_bad_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(create_then_get, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicate_email_is_case_insensitive, setup, teardown),
      cmocka_unit_test_setup_teardown(get_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(pagination, setup, teardown),
      cmocka_unit_test_setup_teardown(login_updates_last_login, setup, teardown),
      cmocka_unit_test_setup_teardown(reopen_persists, setup, teardown),
  };
  proto_log_set_level(PROTO_LOG_WARN); /* keep store_opened lines out of the output */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
