/* test_reply.c: every row of the RPC status -> HTTP status mapping, and the
 * NestJS error body shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/error.h"
#include "reply.h"

#define RID "req_test"

static const char *str(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static json_int_t num(const json_t *o, const char *k) {
  assert_true(json_is_integer(json_object_get(o, k)));
  return json_integer_value(json_object_get(o, k));
}

/* Check the NestJS error shape and return the message. */
static const char *assert_error_body(const json_t *b, unsigned status, const char *error) {
  assert_non_null(b);
  assert_int_equal(num(b, "statusCode"), status);
  assert_string_equal(str(b, "error"), error);
  assert_string_equal(str(b, "requestId"), RID);
  return str(b, "message");
}

static unsigned map(int proto_status, const char *err_json, json_t **body) {
  json_t *err = err_json ? json_loads(err_json, JSON_DECODE_ANY, NULL) : NULL;
  proto_rpc_result_t res = {.status = proto_status, .response = NULL, .err = err};
  unsigned s = gw_reply_from_result(&res, 200, "user", RID, body);
  json_decref(err);
  return s;
}

static void test_reason_phrases(void **state) {
  (void)state;
  assert_string_equal(gw_reason_phrase(200), "OK");
  assert_string_equal(gw_reason_phrase(201), "Created");
  assert_string_equal(gw_reason_phrase(400), "Bad Request");
  assert_string_equal(gw_reason_phrase(404), "Not Found");
  assert_string_equal(gw_reason_phrase(405), "Method Not Allowed");
  assert_string_equal(gw_reason_phrase(409), "Conflict");
  assert_string_equal(gw_reason_phrase(413), "Payload Too Large");
  assert_string_equal(gw_reason_phrase(422), "Unprocessable Entity");
  assert_string_equal(gw_reason_phrase(500), "Internal Server Error");
  assert_string_equal(gw_reason_phrase(502), "Bad Gateway");
  assert_string_equal(gw_reason_phrase(503), "Service Unavailable");
  assert_string_equal(gw_reason_phrase(504), "Gateway Timeout");
  assert_string_equal(gw_reason_phrase(599), "Unknown");
}

static void test_status_from_proto(void **state) {
  (void)state;
  assert_int_equal(gw_status_from_proto(PROTO_OK), 200);
  assert_int_equal(gw_status_from_proto(PROTO_EUNAVAIL), 503);
  assert_int_equal(gw_status_from_proto(PROTO_ECONNLOST), 503);
  assert_int_equal(gw_status_from_proto(PROTO_ECANCELED), 503);
  assert_int_equal(gw_status_from_proto(PROTO_ECLOSED), 503);
  assert_int_equal(gw_status_from_proto(PROTO_EFULL), 503);
  assert_int_equal(gw_status_from_proto(PROTO_ETIMEDOUT), 504);
  assert_int_equal(gw_status_from_proto(PROTO_EREMOTE), 502);
  assert_int_equal(gw_status_from_proto(PROTO_EPROTO), 502);
  assert_int_equal(gw_status_from_proto(PROTO_ETOOBIG), 502);
  assert_int_equal(gw_status_from_proto(PROTO_ENOMEM), 500);
  assert_int_equal(gw_status_from_proto(PROTO_EIO), 500);
  assert_int_equal(gw_status_from_proto(-999), 500);
}

static void test_error_body(void **state) {
  (void)state;
  json_t *b = gw_error_body(404, "User not found", RID);
  assert_string_equal(assert_error_body(b, 404, "Not Found"), "User not found");
  assert_int_equal(json_object_size(b), 4);
  char *text = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(text, "{\"statusCode\":404,\"message\":\"User not found\","
                            "\"error\":\"Not Found\",\"requestId\":\"req_test\"}");
  free(text);
  json_decref(b);
  b = gw_error_body(503, NULL, NULL); /* message defaults to the phrase */
  assert_string_equal(str(b, "message"), "Service Unavailable");
  assert_null(json_object_get(b, "requestId"));
  json_decref(b);
  b = gw_error_body(400, "bad \xff utf8", RID); /* never NULL for a bad message */
  assert_string_equal(str(b, "message"), "Bad Request");
  json_decref(b);
}

static void test_ok(void **state) {
  json_t *body;
  (void)state;
  json_t *resp = json_pack("{s:s}", "id", "u1");
  proto_rpc_result_t res = {.status = PROTO_OK, .response = resp};
  assert_int_equal(gw_reply_from_result(&res, 201, "user", RID, &body), 201);
  assert_ptr_equal(body, resp); /* the response itself, a new reference */
  json_decref(body);
  json_decref(resp);
  res.response = NULL; /* void reply: empty body */
  assert_int_equal(gw_reply_from_result(&res, 200, "user", RID, &body), 200);
  assert_null(body);
}

static void test_service_error_kept(void **state) {
  json_t *b;
  (void)state;
  assert_int_equal(
      map(PROTO_EREMOTE, "{\"statusCode\":404,\"message\":\"User not found\",\"code\":\"USER_NOT_FOUND\"}", &b),
      404);
  assert_string_equal(assert_error_body(b, 404, "Not Found"), "User not found");
  assert_string_equal(str(b, "code"), "USER_NOT_FOUND");
  assert_null(json_object_get(b, "details"));
  json_decref(b);

  assert_int_equal(map(PROTO_EREMOTE,
                       "{\"statusCode\":409,\"message\":\"Email already registered\","
                       "\"code\":\"EMAIL_TAKEN\"}", &b), 409);
  assert_string_equal(assert_error_body(b, 409, "Conflict"), "Email already registered");
  json_decref(b);

  /* validation details pass through untouched */
  assert_int_equal(map(PROTO_EREMOTE,
                       "{\"statusCode\":400,\"message\":\"Validation failed\",\"code\":"
                       "\"VALIDATION_FAILED\",\"details\":[{\"field\":\"email\",\"message\":"
                       "\"must be an email address\"}]}", &b), 400);
  assert_string_equal(assert_error_body(b, 400, "Bad Request"), "Validation failed");
  json_t *d = json_object_get(b, "details");
  assert_true(json_is_array(d));
  assert_string_equal(str(json_array_get(d, 0), "field"), "email");
  assert_string_equal(str(json_array_get(d, 0), "message"), "must be an email address");
  json_decref(b);

  /* a 5xx from a service keeps its status and message too */
  assert_int_equal(map(PROTO_EREMOTE, "{\"statusCode\":503,\"message\":\"db down\",\"code\":\"DB\"}", &b), 503);
  assert_string_equal(assert_error_body(b, 503, "Service Unavailable"), "db down");
  json_decref(b);

  /* NestJS ValidationPipe's array message passes through */
  assert_int_equal(map(PROTO_EREMOTE, "{\"statusCode\":400,\"message\":[\"email must be an email\"]}", &b), 400);
  assert_true(json_is_array(json_object_get(b, "message")));
  json_decref(b);

  /* no usable message: the reason phrase */
  assert_int_equal(map(PROTO_EREMOTE, "{\"statusCode\":422}", &b), 422);
  assert_string_equal(assert_error_body(b, 422, "Unprocessable Entity"), "Unprocessable Entity");
  json_decref(b);
}

/* Keys of o with the JSON type of each value, sorted: "code:string,details:array,...". */
static void shape(const json_t *o, char *buf, size_t size) {
  const char *keys[16];
  size_t n = 0, used = 0;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    assert_true(n < 16);
    keys[n++] = k;
  }
  for (size_t i = 1; i < n; i++) /* insertion sort: a handful of keys */
    for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
      const char *t = keys[j];
      keys[j] = keys[j - 1];
      keys[j - 1] = t;
    }
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    v = json_object_get(o, keys[i]);
    used += (size_t)snprintf(buf + used, size - used, "%s%s:%d", i ? "," : "", keys[i],
                             (int)json_typeof(v));
  }
}

/* One shape for every validation failure: the gateway's own ?page=abc answer
 * and a service's VALIDATION_FAILED (as libvalid builds it) passed on by the
 * gateway have the same keys, types and details entries. */
static void test_validation_shape(void **state) {
  json_t *svc;
  char a[512], b[512];
  (void)state;
  assert_int_equal(map(PROTO_EREMOTE,
                       "{\"statusCode\":400,\"message\":\"page must be an integer from 1 to "
                       "1000000\",\"code\":\"VALIDATION_FAILED\",\"details\":[{\"field\":"
                       "\"page\",\"message\":\"must be an integer from 1 to 1000000\"}]}",
                       &svc), 400);
  gw_field_error_t errs[] = {{"page", "must be an integer"}, {"limit", "must be an integer"}};
  json_t *own = gw_validation_error_body(errs, 1, RID);
  assert_non_null(own);
  shape(svc, a, sizeof(a));
  shape(own, b, sizeof(b));
  assert_string_equal(a, b);
  assert_string_equal(assert_error_body(own, 400, "Bad Request"), "page must be an integer");
  assert_string_equal(str(own, "code"), "VALIDATION_FAILED");
  shape(json_array_get(json_object_get(svc, "details"), 0), a, sizeof(a));
  shape(json_array_get(json_object_get(own, "details"), 0), b, sizeof(b));
  assert_string_equal(a, b);
  json_decref(own);
  json_decref(svc);
  /* several fields: the message names each, as libvalid's does */
  own = gw_validation_error_body(errs, 2, RID);
  assert_string_equal(str(own, "message"), "page must be an integer; limit must be an integer");
  assert_int_equal(json_array_size(json_object_get(own, "details")), 2);
  assert_string_equal(str(json_array_get(json_object_get(own, "details"), 1), "field"), "limit");
  json_decref(own);
}

static void test_nestjs_errors_are_502(void **state) {
  json_t *b;
  (void)state;
  const char *errs[] = {
      "\"There is no matching message handler defined in the remote service.\"",
      "{\"status\":\"error\",\"message\":\"Internal server error\"}",
      "{\"message\":\"no status\"}",
      "{\"statusCode\":200,\"message\":\"not an error status\"}",
      "{\"statusCode\":\"404\",\"message\":\"string status\"}",
      "{\"statusCode\":600,\"message\":\"out of range\"}",
      "{\"statusCode\":399,\"message\":\"out of range\"}",
      "[1,2]",
      "42",
  };
  for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    assert_int_equal(map(PROTO_EREMOTE, errs[i], &b), 502);
    assert_string_equal(assert_error_body(b, 502, "Bad Gateway"), "user service failed");
    assert_null(json_object_get(b, "code"));
    json_decref(b);
  }
  assert_int_equal(map(PROTO_EREMOTE, NULL, &b), 502);
  json_decref(b);
}

static void test_transport_errors(void **state) {
  json_t *b;
  (void)state;
  const int down[] = {PROTO_EUNAVAIL, PROTO_ECONNLOST, PROTO_ECANCELED, PROTO_ECLOSED,
                      PROTO_EFULL};
  for (size_t i = 0; i < sizeof(down) / sizeof(down[0]); i++) {
    assert_int_equal(map(down[i], NULL, &b), 503);
    assert_string_equal(assert_error_body(b, 503, "Service Unavailable"),
                        "user service unavailable");
    json_decref(b);
  }
  assert_int_equal(map(PROTO_ETIMEDOUT, NULL, &b), 504);
  assert_string_equal(assert_error_body(b, 504, "Gateway Timeout"), "user service timed out");
  json_decref(b);
  assert_int_equal(map(PROTO_EPROTO, NULL, &b), 502);
  assert_string_equal(assert_error_body(b, 502, "Bad Gateway"),
                      "user service sent an invalid reply");
  json_decref(b);
  assert_int_equal(map(PROTO_ETOOBIG, NULL, &b), 502);
  json_decref(b);
  assert_int_equal(map(PROTO_ENOMEM, NULL, &b), 500);
  assert_string_equal(assert_error_body(b, 500, "Internal Server Error"),
                      "Internal Server Error");
  json_decref(b);
}

static void test_ready_body(void **state) {
  unsigned status;
  (void)state;
  gw_ready_item_t up[] = {{"user", PROTO_OK}, {"order", PROTO_OK}};
  json_t *b = gw_ready_body(up, 2, &status);
  assert_int_equal(status, 200);
  assert_string_equal(str(b, "status"), "ok");
  assert_string_equal(str(json_object_get(json_object_get(b, "info"), "user"), "status"), "up");
  assert_int_equal(json_object_size(json_object_get(b, "error")), 0);
  assert_int_equal(json_object_size(json_object_get(b, "details")), 2);
  json_decref(b);

  gw_ready_item_t mixed[] = {{"user", PROTO_OK}, {"order", PROTO_EUNAVAIL},
                             {"payment", PROTO_ETIMEDOUT}};
  b = gw_ready_body(mixed, 3, &status);
  assert_int_equal(status, 503);
  assert_string_equal(str(b, "status"), "error");
  json_t *err = json_object_get(b, "error");
  assert_int_equal(json_object_size(err), 2);
  assert_string_equal(str(json_object_get(err, "order"), "status"), "down");
  assert_string_equal(str(json_object_get(err, "order"), "message"),
                      proto_strerror(PROTO_EUNAVAIL));
  assert_non_null(json_object_get(err, "payment"));
  assert_null(json_object_get(err, "user"));
  assert_int_equal(json_object_size(json_object_get(b, "info")), 1);
  json_decref(b);

  b = gw_ready_body(NULL, 0, &status); /* no upstreams: ready */
  assert_int_equal(status, 200);
  json_decref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reason_phrases),     cmocka_unit_test(test_status_from_proto),
      cmocka_unit_test(test_error_body),         cmocka_unit_test(test_ok),
      cmocka_unit_test(test_service_error_kept), cmocka_unit_test(test_nestjs_errors_are_502),
      cmocka_unit_test(test_transport_errors),   cmocka_unit_test(test_ready_body),
      cmocka_unit_test(test_validation_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
