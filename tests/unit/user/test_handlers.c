/* test_handlers.c: the user operations behind the RPC handlers (handlers.c)
 * on a temporary store: the reply objects and error objects the gateway sees
 * (status, code, message, details), and the mapping of storage failures.
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
  char dir[256];
  user_store_t *store;
  svc_t svc;                       /* no loop, no group: writes autocommit */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/user-handlers-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || user_store_open(f->dir, STORE_SYNC_FULL, &f->store) != 0)
    return -1;
  user_svc_init(&f->svc, NULL, f->store, NULL);
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
  free(f);
  return 0;
}

static json_t *parse(const char *text) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  assert_non_null(j);
  return j;
}

static void result_free(svc_result_t *r) {
  json_decref(r->response);
  json_decref(r->err);
}

/* r is an error whose object equals want (JSON text) exactly. */
static void assert_error(svc_result_t *r, int status, const char *want) {
  assert_int_equal(r->status, status);
  assert_null(r->response);
  assert_non_null(r->err);
  json_t *w = parse(want);
  if (!json_equal(r->err, w)) {
    char *got = json_dumps(r->err, JSON_COMPACT);
    fail_msg("error object %s, want %s", got, want);
  }
  json_decref(w);
  result_free(r);
}

static json_t *create_ok(svc_t *s, const char *data_text) {
  json_t *d = parse(data_text);
  svc_result_t r = user_op_create(s, d);
  json_decref(d);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.code, "OK");
  assert_null(r.err);
  assert_non_null(r.response);
  return r.response;
}

static void create_replies(void **state) {
  fixture_t *f = *state;
  json_t *u = create_ok(&f->svc, "{\"email\":\"Eve@Example.com\",\"name\":\" Eve \"}");
  assert_string_equal(json_string_value(json_object_get(u, "email")), "Eve@Example.com");
  assert_string_equal(json_string_value(json_object_get(u, "name")), "Eve");

  json_t *d = parse("{\"email\":\"EVE@example.com\",\"name\":\"Other\"}");
  svc_result_t r = user_op_create(&f->svc, d);
  assert_error(&r, 409, "{\"statusCode\":409,\"code\":\"EMAIL_TAKEN\","
                        "\"message\":\"A user with this email already exists\"}");
  json_decref(d);

  d = parse("{\"email\":\"x\",\"nickname\":\"n\"}");
  r = user_op_create(&f->svc, d);
  assert_error(&r, 400,
               "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\","
               "\"message\":\"email must be an email address; name is required; "
               "nickname is not allowed\","
               "\"details\":[{\"field\":\"email\",\"message\":\"must be an email address\"},"
               "{\"field\":\"name\",\"message\":\"is required\"},"
               "{\"field\":\"nickname\",\"message\":\"is not allowed\"}]}");
  json_decref(d);

  d = parse("null");
  r = user_op_create(&f->svc, d);
  assert_error(&r, 400,
               "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\","
               "\"message\":\"data must be an object\","
               "\"details\":[{\"field\":\"data\",\"message\":\"must be an object\"}]}");
  json_decref(d);
  json_decref(u);
}

static void get_replies(void **state) {
  fixture_t *f = *state;
  json_t *u = create_ok(&f->svc, "{\"email\":\"g@example.com\",\"name\":\"G\"}");
  json_t *d = json_pack("{s:O}", "id", json_object_get(u, "id"));
  svc_result_t r = user_op_get(&f->svc, d);
  assert_int_equal(r.status, 200);
  assert_true(json_equal(r.response, u));
  result_free(&r);
  json_decref(d);

  d = parse("{\"id\":\"user_00000000000000000000000000000000\"}");
  r = user_op_get(&f->svc, d);
  assert_error(&r, 404,
               "{\"statusCode\":404,\"code\":\"USER_NOT_FOUND\",\"message\":\"User not found\"}");
  json_decref(d);

  d = parse("{\"id\":12}");
  r = user_op_get(&f->svc, d);
  assert_int_equal(r.status, 400);
  assert_string_equal(r.code, "VALIDATION_FAILED");
  result_free(&r);
  json_decref(d);
  json_decref(u);
}

static void list_replies(void **state) {
  fixture_t *f = *state;
  for (int i = 0; i < 3; i++) {
    char text[80];
    snprintf(text, sizeof(text), "{\"email\":\"l%d@example.com\",\"name\":\"L\"}", i);
    json_decref(create_ok(&f->svc, text));
  }
  /* Query strings, limit above the cap: the reply says the limit applied. */
  json_t *d = parse("{\"page\":\"1\",\"limit\":\"1000\"}");
  svc_result_t r = user_op_list(&f->svc, d);
  json_decref(d);
  assert_int_equal(r.status, 200);
  assert_int_equal(json_object_size(r.response), 4);
  assert_int_equal(json_array_size(json_object_get(r.response, "users")), 3);
  assert_int_equal(json_integer_value(json_object_get(r.response, "total")), 3);
  assert_int_equal(json_integer_value(json_object_get(r.response, "page")), 1);
  assert_int_equal(json_integer_value(json_object_get(r.response, "limit")), 100);
  result_free(&r);

  d = parse("null");
  r = user_op_list(&f->svc, d);
  json_decref(d);
  assert_int_equal(json_integer_value(json_object_get(r.response, "limit")), 10);
  result_free(&r);

  d = parse("{\"page\":2,\"limit\":2}");
  r = user_op_list(&f->svc, d);
  json_decref(d);
  assert_int_equal(json_array_size(json_object_get(r.response, "users")), 1);
  assert_int_equal(json_integer_value(json_object_get(r.response, "total")), 3);
  result_free(&r);

  d = parse("{\"limit\":0}");
  r = user_op_list(&f->svc, d);
  json_decref(d);
  assert_int_equal(r.status, 400);
  result_free(&r);
}

static void health_and_login(void **state) {
  fixture_t *f = *state;
  svc_result_t r = user_op_health(&f->svc);
  json_t *want = parse("{\"status\":\"ok\",\"service\":\"user\",\"db\":\"ok\"}");
  assert_int_equal(r.status, 200);
  assert_true(json_equal(r.response, want));
  json_decref(want);
  result_free(&r);

  json_t *u = create_ok(&f->svc, "{\"email\":\"h@example.com\",\"name\":\"H\"}");
  json_t *d = json_pack("{s:O, s:s}", "userId", json_object_get(u, "id"), "timestamp",
                        "2026-02-03T04:05:06Z");
  r = user_op_login(&f->svc, d);
  assert_int_equal(r.status, 200);
  assert_null(r.response); /* events have no reply */
  json_decref(d);

  d = json_pack("{s:O}", "id", json_object_get(u, "id"));
  r = user_op_get(&f->svc, d);
  assert_string_equal(json_string_value(json_object_get(r.response, "lastLoginAt")),
                      "2026-02-03T04:05:06.000Z"); /* stored in canonical form */
  result_free(&r);
  json_decref(d);

  d = parse("{\"userId\":\"user_ghost\",\"timestamp\":\"2026-02-03T04:05:06.000Z\"}");
  r = user_op_login(&f->svc, d);
  assert_int_equal(r.status, 404);
  result_free(&r);
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"timestamp\":\"soon\"}");
  r = user_op_login(&f->svc, d);
  assert_int_equal(r.status, 400);
  result_free(&r);
  json_decref(d);
  json_decref(u);
}

/* Another process holding the write lock past our busy timeout: the write
 * fails as 500 STORAGE_ERROR (no internals in the message), reads still work
 * (WAL readers do not wait for writers). */
static void storage_failure_is_500(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *other = NULL;
  snprintf(path, sizeof(path), "%s/user.db", f->dir);
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

  json_t *d = parse("{\"email\":\"busy@example.com\",\"name\":\"B\"}");
  svc_result_t r = user_op_create(&f->svc, d);
  assert_error(&r, 500,
               "{\"statusCode\":500,\"code\":\"STORAGE_ERROR\",\"message\":\"Storage error\"}");
  r = user_op_health(&f->svc);
  assert_int_equal(r.status, 200);
  result_free(&r);

  assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  /* The cached statement recovers once the lock is gone. */
  r = user_op_create(&f->svc, d);
  assert_int_equal(r.status, 200);
  result_free(&r);
  json_decref(d);
}

/* A database that no longer has our table (restored from a wrong backup,
 * tampered with): health answers 503 rather than "ok". */
static void health_fails_when_db_is_broken(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *other = NULL;
  snprintf(path, sizeof(path), "%s/user.db", f->dir);
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "DROP TABLE users", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  svc_result_t r = user_op_health(&f->svc);
  assert_error(&r, 503, "{\"statusCode\":503,\"code\":\"SERVICE_UNHEALTHY\","
                        "\"message\":\"User database check failed\"}");
}

static void validation_error_cuts_nothing_it_needs(void **state) {
  (void)state;
  user_verrs_t errs = {.n = 1};
  errs.e[0] = (user_verr_t){"caf\xc3\xa9", 5, "is not allowed"};
  json_t *e = valid_error_object(&errs);
  assert_non_null(e);
  assert_string_equal(json_string_value(json_object_get(e, "message")),
                      "caf\xc3\xa9 is not allowed");
  json_t *d0 = json_array_get(json_object_get(e, "details"), 0);
  assert_string_equal(json_string_value(json_object_get(d0, "field")), "caf\xc3\xa9");
  json_decref(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(create_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(get_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(list_replies, setup, teardown),
      cmocka_unit_test_setup_teardown(health_and_login, setup, teardown),
      cmocka_unit_test_setup_teardown(storage_failure_is_500, setup, teardown),
      cmocka_unit_test_setup_teardown(health_fails_when_db_is_broken, setup, teardown),
      cmocka_unit_test(validation_error_cuts_nothing_it_needs),
  };
  proto_log_set_level(PROTO_LOG_ERROR); /* the storage test logs one error on purpose */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
