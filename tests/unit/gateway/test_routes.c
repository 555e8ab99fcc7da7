/* test_routes.c: route matching (path parameters, 404 vs 405, Allow), the
 * content-type check, body parsing and building RPC data from the query. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "routes.h"

static const gw_route_t *table(size_t *n) {
  return gw_routes(n);
}

static gw_match_result_t match(const char *method, const char *path, gw_match_t *m) {
  size_t n;
  const gw_route_t *t = table(&n);
  return gw_route_match(t, n, gw_method_parse(method), path, m);
}

static void assert_param(const gw_match_t *m, size_t i, const char *name, const char *value) {
  assert_true(i < m->nparams);
  assert_int_equal(m->params[i].name_len, strlen(name));
  assert_memory_equal(m->params[i].name, name, strlen(name));
  assert_int_equal(m->params[i].value_len, strlen(value));
  assert_memory_equal(m->params[i].value, value, strlen(value));
}

static void test_method_parse(void **state) {
  (void)state;
  assert_int_equal(gw_method_parse("GET"), GW_GET);
  assert_int_equal(gw_method_parse("HEAD"), GW_HEAD);
  assert_int_equal(gw_method_parse("POST"), GW_POST);
  assert_int_equal(gw_method_parse("PUT"), GW_PUT);
  assert_int_equal(gw_method_parse("PATCH"), GW_PATCH);
  assert_int_equal(gw_method_parse("DELETE"), GW_DELETE);
  assert_int_equal(gw_method_parse("OPTIONS"), GW_OPTIONS);
  assert_int_equal(gw_method_parse("get"), GW_METHOD_OTHER);
  assert_int_equal(gw_method_parse("BREW"), GW_METHOD_OTHER);
  assert_int_equal(gw_method_parse(NULL), GW_METHOD_OTHER);
}

static void test_static_routes(void **state) {
  gw_match_t m;
  (void)state;
  assert_int_equal(match("GET", "/health", &m), GW_MATCH_OK);
  assert_int_equal(m.route->action, GW_ACTION_HEALTH);
  assert_int_equal(m.nparams, 0);
  assert_int_equal(match("GET", "/ready", &m), GW_MATCH_OK);
  assert_int_equal(m.route->action, GW_ACTION_READY);
  assert_int_equal(match("POST", "/users", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "create_user");
  assert_string_equal(m.route->upstream, "user");
  assert_int_equal(m.route->status, 201);
  assert_true(m.route->data & GW_DATA_BODY);
  assert_int_equal(match("GET", "/users", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "get_users");
  assert_int_equal(m.route->status, 200);
  assert_true(m.route->data & GW_DATA_QUERY);
}

static void test_path_params(void **state) {
  gw_match_t m;
  (void)state;
  assert_int_equal(match("GET", "/users/abc-123", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "get_user");
  assert_int_equal(m.nparams, 1);
  assert_param(&m, 0, "id", "abc-123");
  /* one trailing slash is ignored, as Express does */
  assert_int_equal(match("GET", "/users/u1/", &m), GW_MATCH_OK);
  assert_param(&m, 0, "id", "u1");
  assert_int_equal(match("GET", "/users/", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "get_users");
  /* HEAD is answered by GET routes */
  assert_int_equal(match("HEAD", "/users/u1", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "get_user");
  /* the value may hold anything but '/' */
  assert_int_equal(match("GET", "/users/a b%c", &m), GW_MATCH_OK);
  assert_param(&m, 0, "id", "a b%c");
  /* literals compare case-insensitively (Express), values keep their case */
  assert_int_equal(match("GET", "/USERS/AbC", &m), GW_MATCH_OK);
  assert_param(&m, 0, "id", "AbC");
}

static void test_not_found(void **state) {
  gw_match_t m;
  (void)state;
  const char *paths[] = {"/", "", "users", "/nope", "/users/abc/def", "//users", "/users//",
                         "/healthz", "/health/x", "/users/a/payments", "/orders/a/b"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    assert_int_equal(match("GET", paths[i], &m), GW_MATCH_NOT_FOUND);
    assert_null(m.route);
    assert_int_equal(m.allow, 0);
  }
  assert_int_equal(match("GET", NULL, &m), GW_MATCH_NOT_FOUND);
  assert_int_equal(match("DELETE", "/nope", &m), GW_MATCH_NOT_FOUND);
}

/* The live table's order, payment and notification rows. */
static void test_suite_routes(void **state) {
  static const struct {
    const char *method, *path, *upstream, *cmd, *param, *value;
    int status;
  } cases[] = {
      {"POST", "/orders", "order", "create_order", NULL, NULL, 201},
      {"GET", "/orders/o1", "order", "get_order", "id", "o1", 200},
      {"PATCH", "/orders/o1", "order", "update_order_status", "id", "o1", 200},
      {"POST", "/orders/o1/refund", "order", "refund_order", "id", "o1", 201},
      {"GET", "/users/u9/orders", "order", "get_orders", "userId", "u9", 200},
      {"GET", "/users/u9/notifications", "notification", "get_notifications", "userId", "u9",
       200},
      {"GET", "/payments/p1", "payment", "get_payment", "id", "p1", 200},
  };
  gw_match_t m;
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(match(cases[i].method, cases[i].path, &m), GW_MATCH_OK);
    assert_string_equal(m.route->upstream, cases[i].upstream);
    assert_string_equal(m.route->cmd, cases[i].cmd);
    assert_int_equal(m.route->status, cases[i].status);
    if (cases[i].param)
      assert_param(&m, 0, cases[i].param, cases[i].value);
  }
  assert_int_equal(match("DELETE", "/orders/o1", &m), GW_MATCH_BAD_METHOD);
  assert_int_equal(match("GET", "/orders/o1/refund", &m), GW_MATCH_BAD_METHOD);
}

static void test_bad_method(void **state) {
  gw_match_t m;
  char allow[64];
  (void)state;
  assert_int_equal(match("DELETE", "/users", &m), GW_MATCH_BAD_METHOD);
  assert_null(m.route);
  assert_int_equal(m.allow, GW_GET | GW_HEAD | GW_POST);
  gw_route_allow_header(m.allow, allow, sizeof(allow));
  assert_string_equal(allow, "GET, HEAD, POST");
  assert_int_equal(match("PUT", "/users/1", &m), GW_MATCH_BAD_METHOD);
  gw_route_allow_header(m.allow, allow, sizeof(allow));
  assert_string_equal(allow, "GET, HEAD");
  assert_int_equal(match("POST", "/health", &m), GW_MATCH_BAD_METHOD);
  assert_int_equal(match("BREW", "/users", &m), GW_MATCH_BAD_METHOD);
  assert_int_equal(match("POST", "/users/1/", &m), GW_MATCH_BAD_METHOD);
}

/* The shapes later issues add (orders, payments, notifications). */
static const gw_route_t future[] = {
    {GW_POST, "/orders", GW_ACTION_RPC, "order", "create_order", 201, GW_DATA_BODY, {{NULL, 0}}},
    {GW_GET, "/orders/stats", GW_ACTION_RPC, "order", "order_stats", 200, 0, {{NULL, 0}}},
    {GW_GET, "/orders/:id", GW_ACTION_RPC, "order", "get_order", 200, GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_PATCH, "/orders/:id", GW_ACTION_RPC, "order", "update_order_status", 200,
     GW_DATA_BODY | GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_POST, "/orders/:id/refund", GW_ACTION_RPC, "order", "refund_order", 201,
     GW_DATA_BODY | GW_DATA_BODY_OPTIONAL | GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_GET, "/users/:userId/orders", GW_ACTION_RPC, "order", "get_orders", 200,
     GW_DATA_PARAMS | GW_DATA_QUERY,
     {{"page", GW_QUERY_INT}, {"limit", GW_QUERY_INT}, {"status", GW_QUERY_STRING}, {NULL, 0}}},
    {GW_GET, "/payments/:id", GW_ACTION_RPC, "payment", "get_payment", 200, GW_DATA_PARAMS,
     {{NULL, 0}}},
    {GW_GET, "/users/:userId/notifications", GW_ACTION_RPC, "notification",
     "get_notifications", 200, GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_GET, "/a/:x/b/:y", GW_ACTION_RPC, "order", "two", 200, GW_DATA_PARAMS, {{NULL, 0}}},
};
#define NFUTURE (sizeof(future) / sizeof(future[0]))

static void test_future_table(void **state) {
  gw_match_t m;
  char allow[64];
  (void)state;
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/orders/o1", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "get_order");
  assert_param(&m, 0, "id", "o1");
  /* a literal row listed first wins over the parameter */
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/orders/stats", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "order_stats");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_PATCH, "/orders/o1", &m), GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "update_order_status");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_POST, "/orders/o1/refund", &m),
                   GW_MATCH_OK);
  assert_string_equal(m.route->cmd, "refund_order");
  assert_param(&m, 0, "id", "o1");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/users/u9/orders", &m),
                   GW_MATCH_OK);
  assert_param(&m, 0, "userId", "u9");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/users/u9/notifications", &m),
                   GW_MATCH_OK);
  assert_string_equal(m.route->upstream, "notification");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/a/1/b/2", &m), GW_MATCH_OK);
  assert_int_equal(m.nparams, 2);
  assert_param(&m, 0, "x", "1");
  assert_param(&m, 1, "y", "2");
  /* 405 collects the methods of every row with the path's shape */
  assert_int_equal(gw_route_match(future, NFUTURE, GW_DELETE, "/orders/o1", &m),
                   GW_MATCH_BAD_METHOD);
  gw_route_allow_header(m.allow, allow, sizeof(allow));
  assert_string_equal(allow, "GET, HEAD, PATCH");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/orders/o1/refund", &m),
                   GW_MATCH_BAD_METHOD);
  assert_int_equal(m.allow, GW_POST);
  assert_int_equal(gw_route_match(future, NFUTURE, GW_POST, "/orders/o1/refund/x", &m),
                   GW_MATCH_NOT_FOUND);
}

static void test_allow_header(void **state) {
  char buf[64];
  (void)state;
  gw_route_allow_header(0, buf, sizeof(buf));
  assert_string_equal(buf, "");
  gw_route_allow_header(GW_GET | GW_HEAD | GW_POST | GW_PUT | GW_PATCH | GW_DELETE | GW_OPTIONS,
                        buf, sizeof(buf));
  assert_string_equal(buf, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  gw_route_allow_header(GW_GET | GW_POST, buf, 6); /* truncation keeps a C string */
  assert_string_equal(buf, "GET");
}

static void test_content_type(void **state) {
  (void)state;
  assert_true(gw_content_type_is_json("application/json"));
  assert_true(gw_content_type_is_json("application/json; charset=utf-8"));
  assert_true(gw_content_type_is_json("Application/JSON;charset=UTF-8"));
  assert_true(gw_content_type_is_json("  application/json ; charset=utf-8"));
  assert_false(gw_content_type_is_json(NULL));
  assert_false(gw_content_type_is_json(""));
  assert_false(gw_content_type_is_json("text/plain"));
  assert_false(gw_content_type_is_json("application/jsonp"));
  assert_false(gw_content_type_is_json("application/json-patch+json"));
  assert_false(gw_content_type_is_json("application/x-www-form-urlencoded"));
  assert_false(gw_content_type_is_json("multipart/form-data; boundary=x"));
}

/* err is a 400 naming exactly one field, with this message (a prefix). */
static void assert_field_error(const gw_route_err_t *err, const char *field, const char *msg) {
  assert_int_equal(err->status, 400);
  assert_int_equal(err->n, 1);
  assert_string_equal(err->errs[0].field, field);
  if (strncmp(err->errs[0].message, msg, strlen(msg)) != 0)
    fail_msg("message \"%s\" does not start with \"%s\"", err->errs[0].message, msg);
}

static void test_parse_body(void **state) {
  gw_route_err_t err;
  json_t *v;
  (void)state;
  assert_int_equal(gw_route_parse_body("", 0, &v, &err), 0);
  assert_true(json_is_object(v) && json_object_size(v) == 0);
  json_decref(v);
  assert_int_equal(gw_route_parse_body(" \r\n", 3, &v, &err), 0);
  assert_true(json_is_object(v));
  json_decref(v);
  const char *ok = "{\"email\":\"a@b.c\",\"name\":\"caf\xc3\xa9\"}";
  assert_int_equal(gw_route_parse_body(ok, strlen(ok), &v, &err), 0);
  assert_string_equal(json_string_value(json_object_get(v, "email")), "a@b.c");
  json_decref(v);
  const char *bad[] = {"{", "{\"a\":}", "nope", "{\"a\":1} x", "{\"a\":\"\xff\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(gw_route_parse_body(bad[i], strlen(bad[i]), &v, &err), -1);
    assert_null(v);
    assert_field_error(&err, "body", "must be valid JSON (");
  }
  const char *notobj[] = {"[1,2]", "\"x\"", "12", "null"};
  for (size_t i = 0; i < sizeof(notobj) / sizeof(notobj[0]); i++) {
    assert_int_equal(gw_route_parse_body(notobj[i], strlen(notobj[i]), &v, &err), -1);
    assert_field_error(&err, "body", "must be a JSON object");
  }
}

static void test_url_unescape(void **state) {
  (void)state;
  struct {
    const char *in, *out;
  } cases[] = {
      {"/users/abc", "/users/abc"},
      {"/users/a%20b", "/users/a b"},
      {"/users/%2F", "/users//"},
      {"caf%C3%A9", "caf\xc3\xa9"},
      {"/users/%00", "/users/%00"},          /* never a NUL */
      {"%", "%"},
      {"%4", "%4"},
      {"%zz", "%zz"},
      {"%4a%4A", "JJ"},
      {"a+b", "a+b"},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char buf[64];
    strcpy(buf, cases[i].in);
    size_t n = gw_url_unescape(buf);
    assert_string_equal(buf, cases[i].out);
    assert_int_equal(n, strlen(cases[i].out));
  }
}

/* Query strings as a NULL-terminated list of name, value pairs. */
static const char *query_get(void *ctx, const char *name) {
  const char **kv = ctx;
  for (; kv && kv[0]; kv += 2)
    if (strcmp(kv[0], name) == 0)
      return kv[1];
  return NULL;
}

static int build(const char *method, const char *path, const char **query, json_t *body,
                 json_t **out, gw_route_err_t *err) {
  gw_match_t m;
  assert_int_equal(match(method, path, &m), GW_MATCH_OK);
  return gw_route_build_data(&m, query_get, (void *)query, body, out, err);
}

static void test_query_ints(void **state) {
  gw_route_err_t err;
  json_t *d;
  (void)state;
  const char *q1[] = {"page", "2", "limit", "10", "other", "x", NULL};
  assert_int_equal(build("GET", "/users", q1, NULL, &d, &err), 0);
  assert_true(json_is_integer(json_object_get(d, "page")));
  assert_int_equal(json_integer_value(json_object_get(d, "page")), 2);
  assert_int_equal(json_integer_value(json_object_get(d, "limit")), 10);
  assert_null(json_object_get(d, "other")); /* only the route's parameters */
  json_decref(d);
  /* absent: absent (the service picks its defaults) */
  assert_int_equal(build("GET", "/users", NULL, NULL, &d, &err), 0);
  assert_int_equal(json_object_size(d), 0);
  json_decref(d);
  const char *q2[] = {"page", "-3", "limit", "007", NULL};
  assert_int_equal(build("GET", "/users", q2, NULL, &d, &err), 0);
  assert_int_equal(json_integer_value(json_object_get(d, "page")), -3);
  assert_int_equal(json_integer_value(json_object_get(d, "limit")), 7);
  json_decref(d);
  const char *q3[] = {"page", "9007199254740991", NULL};
  assert_int_equal(build("GET", "/users", q3, NULL, &d, &err), 0);
  json_decref(d);
}

static void test_query_not_integer(void **state) {
  gw_route_err_t err;
  json_t *d = (json_t *)1;
  (void)state;
  const char *bad[] = {"abc", "", "1.5", " 1", "1 ", "+1", "-", "1e3", "0x10", "--1",
                       "9007199254740992", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *q[] = {"page", "1", "limit", bad[i], NULL};
    assert_int_equal(build("GET", "/users", q, NULL, &d, &err), -1);
    assert_null(d);
    assert_field_error(&err, "limit", "must be an integer");
  }
  /* every bad value is named, in the route's order */
  const char *q[] = {"page", "one", "limit", "x", NULL};
  assert_int_equal(build("GET", "/users", q, NULL, &d, &err), -1);
  assert_int_equal(err.status, 400);
  assert_int_equal(err.n, 2);
  assert_string_equal(err.errs[0].field, "page");
  assert_string_equal(err.errs[0].message, "must be an integer");
  assert_string_equal(err.errs[1].field, "limit");
  /* a bad query value and a bad path parameter together */
  const char *q2[] = {"page", "abc", NULL};
  assert_int_equal(build("GET", "/users/\xff/orders", q2, NULL, &d, &err), -1);
  assert_int_equal(err.n, 2);
  assert_string_equal(err.errs[0].field, "page");
  assert_string_equal(err.errs[1].field, "userId");
  assert_string_equal(err.errs[1].message, "must be valid UTF-8");
}

/* The answer to ?page=abc: the same shape as a service's 400 VALIDATION_FAILED
 * after the gateway has passed it on, not a bare NestJS 400. */
static void test_error_body(void **state) {
  gw_route_err_t err;
  json_t *d = NULL;
  (void)state;
  const char *q[] = {"page", "abc", NULL};
  assert_int_equal(build("GET", "/users", q, NULL, &d, &err), -1);
  json_t *b = gw_route_error_body(&err, "req_1");
  assert_non_null(b);
  assert_int_equal(json_integer_value(json_object_get(b, "statusCode")), 400);
  assert_string_equal(json_string_value(json_object_get(b, "code")), "VALIDATION_FAILED");
  assert_string_equal(json_string_value(json_object_get(b, "message")),
                      "page must be an integer");
  assert_string_equal(json_string_value(json_object_get(b, "error")), "Bad Request");
  assert_string_equal(json_string_value(json_object_get(b, "requestId")), "req_1");
  json_t *details = json_object_get(b, "details");
  assert_int_equal(json_array_size(details), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(details, 0), "field")),
                      "page");
  assert_string_equal(json_string_value(json_object_get(json_array_get(details, 0), "message")),
                      "must be an integer");
  json_decref(b);
  /* a 500 of ours keeps the plain shape: no code, no details */
  gw_route_err_t oom = {.status = 500, .n = 0, .message = "Out of memory"};
  b = gw_route_error_body(&oom, "req_1");
  assert_int_equal(json_integer_value(json_object_get(b, "statusCode")), 500);
  assert_string_equal(json_string_value(json_object_get(b, "message")), "Out of memory");
  assert_null(json_object_get(b, "code"));
  assert_null(json_object_get(b, "details"));
  json_decref(b);
}

static void test_params_and_body(void **state) {
  gw_route_err_t err;
  json_t *d;
  gw_match_t m;
  (void)state;
  assert_int_equal(build("GET", "/users/u42", NULL, NULL, &d, &err), 0);
  assert_int_equal(json_object_size(d), 1);
  assert_string_equal(json_string_value(json_object_get(d, "id")), "u42");
  json_decref(d);
  /* POST /users: the body is the data as sent */
  json_t *body = json_pack("{s:s, s:s}", "email", "a@b.c", "name", "A");
  assert_int_equal(build("POST", "/users", NULL, body, &d, &err), 0);
  assert_ptr_equal(d, body);
  assert_string_equal(json_string_value(json_object_get(d, "name")), "A");
  json_decref(d);
  /* path parameters win over body fields and query strings */
  assert_int_equal(gw_route_match(future, NFUTURE, GW_PATCH, "/orders/o1", &m), GW_MATCH_OK);
  body = json_pack("{s:s, s:s}", "id", "evil", "status", "shipped");
  assert_int_equal(gw_route_build_data(&m, query_get, NULL, body, &d, &err), 0);
  assert_string_equal(json_string_value(json_object_get(d, "id")), "o1");
  assert_string_equal(json_string_value(json_object_get(d, "status")), "shipped");
  json_decref(d);
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/users/u1/orders", &m),
                   GW_MATCH_OK);
  const char *q[] = {"userId", "u2", "status", "paid", "limit", "5", NULL};
  assert_int_equal(gw_route_build_data(&m, query_get, (void *)q, NULL, &d, &err), 0);
  assert_string_equal(json_string_value(json_object_get(d, "userId")), "u1");
  assert_string_equal(json_string_value(json_object_get(d, "status")), "paid");
  assert_int_equal(json_integer_value(json_object_get(d, "limit")), 5);
  json_decref(d);
  /* a body that is not an object is refused (and released) */
  assert_int_equal(gw_route_match(future, NFUTURE, GW_POST, "/orders", &m), GW_MATCH_OK);
  assert_int_equal(gw_route_build_data(&m, NULL, NULL, json_pack("[i]", 1), &d, &err), -1);
  assert_field_error(&err, "body", "must be a JSON object");
  /* invalid UTF-8 in a parameter or query string is a 400, not a crash */
  assert_int_equal(build("GET", "/users/\xff", NULL, NULL, &d, &err), -1);
  assert_field_error(&err, "id", "must be valid UTF-8");
  assert_int_equal(gw_route_match(future, NFUTURE, GW_GET, "/users/u1/orders", &m),
                   GW_MATCH_OK);
  const char *q2[] = {"status", "\xc3", NULL};
  assert_int_equal(gw_route_build_data(&m, query_get, (void *)q2, NULL, &d, &err), -1);
  assert_field_error(&err, "status", "must be valid UTF-8");
}

/* The inventory rows: POST /products (201), the paged list, one product, and
 * restock with the id from the path and {quantity} from the body. */
static void test_product_routes(void **state) {
  static const struct {
    const char *method, *path, *cmd;
    int status;
    unsigned data;
  } cases[] = {
      {"POST", "/products", "create_product", 201, GW_DATA_BODY},
      {"GET", "/products", "get_products", 200, GW_DATA_QUERY},
      {"GET", "/products/p1", "get_product", 200, GW_DATA_PARAMS},
      {"POST", "/products/p1/restock", "restock", 201, GW_DATA_BODY | GW_DATA_PARAMS},
  };
  gw_match_t m;
  gw_route_err_t err;
  json_t *d;
  char allow[64];
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(match(cases[i].method, cases[i].path, &m), GW_MATCH_OK);
    assert_string_equal(m.route->upstream, "inventory");
    assert_string_equal(m.route->cmd, cases[i].cmd);
    assert_int_equal(m.route->status, cases[i].status);
    assert_int_equal(m.route->data, cases[i].data);
  }
  /* the body is the product as sent */
  json_t *body = json_pack("{s:s, s:s, s:i, s:i}", "id", "p1", "name", "Keyboard", "price",
                           1999, "stock", 10);
  assert_int_equal(build("POST", "/products", NULL, body, &d, &err), 0);
  assert_ptr_equal(d, body);
  json_decref(d);
  /* page and limit are integers, anything else is a 400 naming them */
  const char *q[] = {"page", "2", "limit", "5", NULL};
  assert_int_equal(build("GET", "/products", q, NULL, &d, &err), 0);
  assert_int_equal(json_integer_value(json_object_get(d, "page")), 2);
  assert_int_equal(json_integer_value(json_object_get(d, "limit")), 5);
  json_decref(d);
  const char *qbad[] = {"page", "x", "limit", "1.5", NULL};
  assert_int_equal(build("GET", "/products", qbad, NULL, &d, &err), -1);
  assert_int_equal(err.n, 2);
  assert_string_equal(err.errs[0].field, "page");
  assert_string_equal(err.errs[1].field, "limit");
  assert_int_equal(build("GET", "/products/Kb-1", NULL, NULL, &d, &err), 0);
  assert_int_equal(json_object_size(d), 1);
  assert_string_equal(json_string_value(json_object_get(d, "id")), "Kb-1");
  json_decref(d);
  /* restock: the path names the product, whatever the body says */
  body = json_pack("{s:s, s:i}", "id", "p2", "quantity", 5);
  assert_int_equal(build("POST", "/products/p1/restock", NULL, body, &d, &err), 0);
  assert_string_equal(json_string_value(json_object_get(d, "id")), "p1");
  assert_int_equal(json_integer_value(json_object_get(d, "quantity")), 5);
  json_decref(d);
  /* 405 with what the path does answer; 404 past the known shapes */
  assert_int_equal(match("DELETE", "/products/p1", &m), GW_MATCH_BAD_METHOD);
  gw_route_allow_header(m.allow, allow, sizeof(allow));
  assert_string_equal(allow, "GET, HEAD");
  assert_int_equal(match("PUT", "/products", &m), GW_MATCH_BAD_METHOD);
  gw_route_allow_header(m.allow, allow, sizeof(allow));
  assert_string_equal(allow, "GET, HEAD, POST");
  assert_int_equal(match("GET", "/products/p1/restock", &m), GW_MATCH_BAD_METHOD);
  assert_int_equal(m.allow, GW_POST);
  assert_int_equal(match("POST", "/products/p1/restock/x", &m), GW_MATCH_NOT_FOUND);
  assert_int_equal(match("GET", "/products/p1/stock", &m), GW_MATCH_NOT_FOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_method_parse),   cmocka_unit_test(test_static_routes),
      cmocka_unit_test(test_path_params),    cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_bad_method),     cmocka_unit_test(test_future_table),
      cmocka_unit_test(test_allow_header),   cmocka_unit_test(test_content_type),
      cmocka_unit_test(test_parse_body),     cmocka_unit_test(test_query_ints),
      cmocka_unit_test(test_query_not_integer), cmocka_unit_test(test_params_and_body),
      cmocka_unit_test(test_url_unescape),   cmocka_unit_test(test_suite_routes),
      cmocka_unit_test(test_error_body),
      cmocka_unit_test(test_product_routes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
