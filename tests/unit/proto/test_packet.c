/* test_packet.c: the envelope of PROTOCOL.md section 2, decoded the way
 * NestJS 12.1.1 reads it and built the way NestJS peers expect it. Reply
 * texts marked "observed" are byte for byte what a NestJS 12.1.1 TCP server
 * sent back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "proto/pattern.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)

static void assert_dump(const json_t *v, const char *want) {
  char *got = json_dumps(v, DUMP_FLAGS | JSON_ENCODE_ANY);
  assert_non_null(got);
  if (strcmp(got, want) != 0) {
    char msg[1024];
    snprintf(msg, sizeof(msg), "got %s, want %s", got, want);
    free(got);
    fail_msg("%s", msg);
  }
  free(got);
}

static int request(const char *json, proto_request_t *req, const char **why) {
  *why = NULL;
  return proto_request_decode(json, strlen(json), req, why);
}

static int reply(const char *json, proto_reply_t *rep) {
  const char *why = NULL;
  return proto_reply_decode(json, strlen(json), rep, &why);
}

/* --- requests and events --------------------------------------------------- */

static void test_request_decode(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":{\"cmd\":\"get_user\"},\"data\":{\"id\":\"x\"},"
                           "\"id\":\"9dcd43e53b4ae127b3574\"}",
                           &req, &why),
                   0);
  assert_string_equal(req.pattern_key, "{\"cmd\":\"get_user\"}");
  assert_dump(req.pattern, "{\"cmd\":\"get_user\"}");
  assert_dump(req.data, "{\"id\":\"x\"}");
  assert_non_null(req.id);
  assert_string_equal(json_string_value(req.id), "9dcd43e53b4ae127b3574");
  assert_null(req.metadata);
  assert_null(proto_request_meta(&req, "requestId"));
  proto_request_free(&req);
  assert_null(req.root);
  proto_request_free(&req); /* twice is harmless */
  proto_request_free(NULL);
}

static void test_event_decode(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":\"user_logged_in\",\"data\":{\"userId\":\"u1\","
                           "\"timestamp\":\"2026-01-01T00:00:00.000Z\"}}",
                           &req, &why),
                   0);
  assert_null(req.id); /* no "id" key: an event */
  assert_string_equal(req.pattern_key, "user_logged_in");
  assert_string_equal(json_string_value(json_object_get(req.data, "userId")), "u1");
  proto_request_free(&req);
}

static void test_null_id_is_a_request(void **state) {
  /* NestJS tests isUndefined(packet.id): null is a request, and its reply
   * echoes "id":null (observed) */
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":{\"cmd\":\"get\"},\"data\":2,\"id\":null}", &req, &why), 0);
  assert_non_null(req.id);
  assert_true(json_is_null(req.id));
  json_t *rep = proto_packet_reply(req.id, json_integer(2));
  assert_dump(rep, "{\"id\":null,\"response\":2,\"isDisposed\":true}");
  json_decref(rep);
  proto_request_free(&req);
}

static void test_other_id_types_echoed(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":\"p\",\"data\":1,\"id\":{\"n\":[1,2]}}", &req, &why), 0);
  json_t *rep = proto_packet_reply(req.id, NULL);
  assert_dump(rep, "{\"id\":{\"n\":[1,2]},\"isDisposed\":true}");
  json_decref(rep);
  proto_request_free(&req);
}

static void test_missing_data_is_null(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":\"p\",\"id\":\"1\"}", &req, &why), 0);
  assert_non_null(req.data);
  assert_true(json_is_null(req.data));
  proto_request_free(&req);
}

static void test_metadata(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":\"p\",\"data\":1,\"metadata\":{\"requestId\":\"r-1\","
                           "\"timeoutMs\":250}}",
                           &req, &why),
                   0);
  assert_non_null(req.metadata);
  assert_string_equal(proto_request_meta(&req, "requestId"), "r-1");
  assert_null(proto_request_meta(&req, "timeoutMs")); /* not a string */
  assert_null(proto_request_meta(&req, "traceparent"));
  proto_request_free(&req);

  assert_int_equal(request("{\"pattern\":\"p\",\"data\":1,\"metadata\":\"x\"}", &req, &why), 0);
  assert_null(req.metadata); /* not an object: ignored */
  proto_request_free(&req);
}

static void test_string_pattern_holding_json(void **state) {
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":\"{\\\"cmd\\\":\\\"get_user\\\"}\",\"data\":1,\"id\":\"7\"}",
                           &req, &why),
                   0);
  assert_true(json_is_string(req.pattern)); /* the pattern itself is untouched */
  assert_string_equal(req.pattern_key, "{\"cmd\":\"get_user\"}");
  proto_request_free(&req);
}

static void test_huge_integer_in_data(void **state) {
  /* JavaScript reads it as a double; jansson refuses 64-bit overflow, so the
   * decoder reads such a packet with numbers as doubles */
  proto_request_t req;
  const char *why;
  assert_int_equal(request("{\"pattern\":{\"cmd\":\"x\"},\"data\":{\"n\":123456789012345678901234},"
                           "\"id\":\"1\"}",
                           &req, &why),
                   0);
  assert_string_equal(req.pattern_key, "{\"cmd\":\"x\"}");
  assert_true(json_is_number(json_object_get(req.data, "n")));
  proto_request_free(&req);
}

static void expect_bad_request(const char *json) {
  proto_request_t req;
  const char *why = NULL;
  memset(&req, 0xab, sizeof(req)); /* decode must not rely on a clean struct */
  int rc = request(json, &req, &why);
  if (rc != PROTO_EPROTO)
    fail_msg("%s: got %s, want EPROTO", json, proto_err_name(rc));
  assert_non_null(why);
  assert_null(req.root);
  assert_null(req.pattern_key);
}

static void test_bad_requests(void **state) {
  expect_bad_request("{abc:1}");
  expect_bad_request("{\"pattern\":\"p\"} trailing");
  expect_bad_request("");
  expect_bad_request("[1,2]");
  expect_bad_request("\"pattern\"");
  expect_bad_request("null");
  expect_bad_request("{\"data\":1,\"id\":\"1\"}");
  expect_bad_request("{\"pattern\":null,\"data\":1,\"id\":\"1\"}");
  expect_bad_request("{\"pattern\":true,\"data\":1}");
  /* why is optional */
  proto_request_t req;
  assert_int_equal(proto_request_decode("{", 1, &req, NULL), PROTO_EPROTO);
}

static void test_decode_uses_len_not_nul(void **state) {
  /* frames are not NUL-terminated: the decoder must stop at len */
  const char text[] = "{\"pattern\":\"p\",\"data\":1}GARBAGE";
  proto_request_t req;
  const char *why;
  assert_int_equal(proto_request_decode(text, strlen(text) - 7, &req, &why), 0);
  proto_request_free(&req);
}

/* --- replies --------------------------------------------------------------- */

static void test_reply_decode(void **state) {
  proto_reply_t rep;
  /* observed */
  assert_int_equal(reply("{\"response\":{\"ok\":true,\"v\":{\"a\":\"\xc3\xa9\"}},"
                         "\"isDisposed\":true,\"id\":\"1\"}",
                         &rep),
                   0);
  assert_true(rep.is_final);
  assert_string_equal(json_string_value(rep.id), "1");
  assert_null(rep.err);
  assert_dump(rep.response, "{\"ok\":true,\"v\":{\"a\":\"\\u00E9\"}}");
  proto_reply_free(&rep);
  assert_null(rep.root);
  proto_reply_free(&rep);
  proto_reply_free(NULL);
}

static void test_void_reply_decode(void **state) {
  proto_reply_t rep;
  assert_int_equal(reply("{\"isDisposed\":true,\"id\":\"2\"}", &rep), 0); /* observed */
  assert_true(rep.is_final);
  assert_null(rep.response);
  assert_null(rep.err);
  proto_reply_free(&rep);
}

static void test_error_reply_decode(void **state) {
  proto_reply_t rep;
  /* ours, and observed from an RpcException with our object */
  assert_int_equal(reply("{\"err\":{\"statusCode\":404,\"message\":\"nf\",\"code\":\"X\"},"
                         "\"isDisposed\":true,\"id\":\"3\"}",
                         &rep),
                   0);
  assert_true(rep.is_final);
  assert_int_equal(json_integer_value(json_object_get(rep.err, "statusCode")), 404);
  proto_reply_free(&rep);

  /* NestJS's own shapes: RpcException("bare") and a thrown Error (observed) */
  assert_int_equal(reply("{\"err\":{\"status\":\"error\",\"message\":\"bare\"},"
                         "\"isDisposed\":true,\"id\":\"4\"}",
                         &rep),
                   0);
  assert_true(rep.is_final);
  assert_string_equal(json_string_value(json_object_get(rep.err, "message")), "bare");
  proto_reply_free(&rep);

  assert_int_equal(reply("{\"id\":\"5\",\"err\":\"bare string\"}", &rep), 0);
  assert_true(rep.is_final); /* err alone is final, isDisposed or not */
  assert_string_equal(json_string_value(rep.err), "bare string");
  proto_reply_free(&rep);
}

static void test_no_handler_reply_decode(void **state) {
  proto_reply_t rep;
  assert_int_equal(reply("{\"id\":\"6\",\"status\":\"error\",\"err\":\"There is no matching "
                         "message handler defined in the remote service.\"}",
                         &rep),
                   0); /* observed */
  assert_true(rep.is_final);
  assert_string_equal(json_string_value(rep.id), "6");
  assert_string_equal(json_string_value(rep.err), PROTO_NO_HANDLER_MESSAGE);
  assert_null(rep.response);
  proto_reply_free(&rep);
}

static void test_whole_object_response(void **state) {
  proto_reply_t rep;
  /* a key outside the envelope: NestJS hands the whole object over */
  assert_int_equal(reply("{\"id\":\"7\",\"response\":1,\"isDisposed\":false,\"name\":\"x\"}", &rep),
                   0);
  assert_true(rep.is_final);
  assert_ptr_equal(rep.response, rep.root);
  assert_string_equal(json_string_value(rep.id), "7");
  assert_null(rep.err);
  proto_reply_free(&rep);

  /* even with an err key, it is data, not a failure */
  assert_int_equal(reply("{\"id\":\"8\",\"err\":\"e\",\"extra\":true}", &rep), 0);
  assert_null(rep.err);
  assert_ptr_equal(rep.response, rep.root);
  proto_reply_free(&rep);

  /* not an object, or an empty one: a whole response with no id */
  static const char *const foreign[] = {"[1,2]", "\"text\"", "42", "null", "{}"};
  for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
    assert_int_equal(reply(foreign[i], &rep), 0);
    assert_true(rep.is_final);
    assert_null(rep.id);
    assert_ptr_equal(rep.response, rep.root);
    proto_reply_free(&rep);
  }
}

static void test_stream_item_not_final(void **state) {
  proto_reply_t rep;
  assert_int_equal(reply("{\"id\":\"9\",\"response\":1}", &rep), 0);
  assert_false(rep.is_final);
  assert_int_equal(json_integer_value(rep.response), 1);
  proto_reply_free(&rep);
  assert_int_equal(reply("{\"id\":\"9\",\"response\":2,\"isDisposed\":false}", &rep), 0);
  assert_false(rep.is_final);
  proto_reply_free(&rep);
}

static void test_falsy_err_is_absent(void **state) {
  /* NestJS tests `if (err)`: JavaScript's falsy values are no error */
  static const char *const falsy[] = {"null", "false", "0", "0.0", "\"\""};
  char text[128];
  proto_reply_t rep;
  for (size_t i = 0; i < sizeof(falsy) / sizeof(falsy[0]); i++) {
    snprintf(text, sizeof(text), "{\"id\":\"1\",\"err\":%s,\"response\":5,\"isDisposed\":true}",
             falsy[i]);
    assert_int_equal(reply(text, &rep), 0);
    assert_null(rep.err);
    assert_true(rep.is_final);
    assert_int_equal(json_integer_value(rep.response), 5);
    proto_reply_free(&rep);
  }
  /* and truthy isDisposed values are final */
  assert_int_equal(reply("{\"id\":\"1\",\"isDisposed\":\"yes\"}", &rep), 0);
  assert_true(rep.is_final);
  proto_reply_free(&rep);
  assert_int_equal(reply("{\"id\":\"1\",\"isDisposed\":0}", &rep), 0);
  assert_false(rep.is_final);
  proto_reply_free(&rep);
}

static void test_bad_reply(void **state) {
  proto_reply_t rep;
  const char *why = NULL;
  assert_int_equal(proto_reply_decode("{\"id\":", 6, &rep, &why), PROTO_EPROTO);
  assert_non_null(why);
  assert_null(rep.root);
}

/* --- builders -------------------------------------------------------------- */

static void test_build_request(void **state) {
  json_t *pattern = proto_pattern_cmd("get_user");
  json_t *p = proto_packet_request(pattern, json_pack("{s:s}", "id", "x"),
                                   json_string("9dcd43e53b4ae127b3574"), NULL);
  /* PROTOCOL.md test vector 1, byte for byte */
  char *frame;
  size_t len;
  assert_int_equal(proto_frame_encode(p, &frame, &len), 0);
  assert_string_equal(frame, "77#{\"pattern\":{\"cmd\":\"get_user\"},\"data\":{\"id\":\"x\"},"
                             "\"id\":\"9dcd43e53b4ae127b3574\"}");
  free(frame);
  json_decref(p);

  p = proto_packet_request(pattern, NULL, json_string("1"), json_pack("{s:s}", "requestId", "r"));
  assert_dump(p, "{\"pattern\":{\"cmd\":\"get_user\"},\"data\":null,\"id\":\"1\","
                 "\"metadata\":{\"requestId\":\"r\"}}");
  json_decref(p);
  assert_int_equal(pattern->refcount, 1); /* borrowed, not stolen */
  json_decref(pattern);
}

static void test_build_event(void **state) {
  json_t *pattern = json_string("user_logged_in");
  json_t *p = proto_packet_request(pattern, json_pack("{s:s,s:s}", "userId", "u1", "timestamp",
                                                      "2026-01-01T00:00:00.000Z"),
                                   NULL, NULL);
  char *frame;
  size_t len;
  assert_int_equal(proto_frame_encode(p, &frame, &len), 0);
  assert_string_equal(frame, "90#{\"pattern\":\"user_logged_in\",\"data\":{\"userId\":\"u1\","
                             "\"timestamp\":\"2026-01-01T00:00:00.000Z\"}}");
  free(frame);
  json_decref(p);
  json_decref(pattern);
}

static void test_build_request_no_pattern_releases(void **state) {
  /* stolen arguments are released on failure too (ASan reports a leak) */
  assert_null(proto_packet_request(NULL, json_integer(1), json_string("1"), json_object()));
  assert_null(proto_packet_reply(NULL, json_integer(1)));
  assert_null(proto_packet_reply_err(NULL, json_object()));
  json_t *id = json_string("1");
  assert_null(proto_packet_reply_err(id, NULL));
  assert_null(proto_packet_reply_no_handler(NULL));
  assert_null(proto_error_object(400, NULL, "m", json_array()));
  assert_null(proto_error_object(400, "C", NULL, NULL));
  json_decref(id);
}

static void test_build_replies(void **state) {
  json_t *id = json_string("9dcd43e53b4ae127b3574");
  json_t *p = proto_packet_reply(id, json_pack("{s:b}", "ok", 1));
  assert_dump(p, "{\"id\":\"9dcd43e53b4ae127b3574\",\"response\":{\"ok\":true},\"isDisposed\":true}");
  json_decref(p);

  p = proto_packet_reply(id, NULL);
  assert_dump(p, "{\"id\":\"9dcd43e53b4ae127b3574\",\"isDisposed\":true}");
  json_decref(p);

  p = proto_packet_reply_err(id, proto_error_object(404, "USER_NOT_FOUND", "User not found", NULL));
  assert_dump(p, "{\"id\":\"9dcd43e53b4ae127b3574\",\"err\":{\"statusCode\":404,"
                 "\"message\":\"User not found\",\"code\":\"USER_NOT_FOUND\"},\"isDisposed\":true}");
  json_decref(p);

  p = proto_packet_reply_no_handler(id);
  assert_dump(p, "{\"id\":\"9dcd43e53b4ae127b3574\",\"status\":\"error\",\"err\":\"There is no "
                 "matching message handler defined in the remote service.\"}");
  json_decref(p);
  assert_int_equal(id->refcount, 1); /* borrowed everywhere */
  json_decref(id);
}

static void test_error_object_details(void **state) {
  json_t *details = json_pack("[{s:s,s:s}]", "field", "email", "message", "must be an email address");
  json_t *e = proto_error_object(400, "VALIDATION_FAILED", "Invalid input", details);
  assert_dump(e, "{\"statusCode\":400,\"message\":\"Invalid input\",\"code\":\"VALIDATION_FAILED\","
                 "\"details\":[{\"field\":\"email\",\"message\":\"must be an email address\"}]}");
  json_decref(e);
}

static void test_reply_round_trip(void **state) {
  /* build, frame, read the frame back, decode as a client would */
  json_t *id = json_string("abc");
  json_t *p = proto_packet_reply(id, json_pack("{s:s}", "name", "caf\xc3\xa9 \xf0\x9f\x98\x80"));
  char *frame;
  size_t len;
  proto_frame_reader_t r;
  const char *json;
  size_t jlen;
  proto_reply_t rep;
  const char *why;
  assert_int_equal(proto_frame_encode(p, &frame, &len), 0);
  proto_frame_reader_init(&r, 0);
  assert_int_equal(proto_frame_reader_feed(&r, frame, len), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &jlen), 1);
  assert_int_equal(proto_reply_decode(json, jlen, &rep, &why), 0);
  assert_true(rep.is_final);
  assert_true(json_equal(rep.id, id));
  assert_string_equal(json_string_value(json_object_get(rep.response, "name")),
                      "caf\xc3\xa9 \xf0\x9f\x98\x80");
  proto_reply_free(&rep);
  proto_frame_reader_free(&r);
  free(frame);
  json_decref(p);
  json_decref(id);
}

static void test_strerror(void **state) {
  assert_string_equal(proto_strerror(PROTO_ETOOBIG), "frame too large");
  assert_string_equal(proto_strerror(PROTO_EFULL), "queue full");
  assert_string_equal(proto_strerror(0), "success");
  assert_string_equal(proto_strerror(-999), "unknown error");
  assert_string_equal(proto_err_name(PROTO_ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(proto_err_name(PROTO_ENOMEM), "ENOMEM");
  assert_string_equal(proto_err_name(12345), "UNKNOWN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_decode),
      cmocka_unit_test(test_event_decode),
      cmocka_unit_test(test_null_id_is_a_request),
      cmocka_unit_test(test_other_id_types_echoed),
      cmocka_unit_test(test_missing_data_is_null),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_string_pattern_holding_json),
      cmocka_unit_test(test_huge_integer_in_data),
      cmocka_unit_test(test_bad_requests),
      cmocka_unit_test(test_decode_uses_len_not_nul),
      cmocka_unit_test(test_reply_decode),
      cmocka_unit_test(test_void_reply_decode),
      cmocka_unit_test(test_error_reply_decode),
      cmocka_unit_test(test_no_handler_reply_decode),
      cmocka_unit_test(test_whole_object_response),
      cmocka_unit_test(test_stream_item_not_final),
      cmocka_unit_test(test_falsy_err_is_absent),
      cmocka_unit_test(test_bad_reply),
      cmocka_unit_test(test_build_request),
      cmocka_unit_test(test_build_event),
      cmocka_unit_test(test_build_request_no_pattern_releases),
      cmocka_unit_test(test_build_replies),
      cmocka_unit_test(test_error_object_details),
      cmocka_unit_test(test_reply_round_trip),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
