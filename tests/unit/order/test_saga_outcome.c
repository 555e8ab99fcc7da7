/* test_saga_outcome.c: the pure verdicts of saga_outcome.c, table-driven:
 * every saga action against every shape of answer (a reply, a transport
 * failure on the first and on a later try, a 4xx, a 5xx, NestJS's
 * {error, statusCode} as a response, {status:"error", message} and a bare
 * string as err, the no-handler message), then the catalogue prices of
 * order_saga_price (applied, PRICE_CHANGED, unpriced item, currency).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "order.h"
#include "proto/error.h"
#include "proto/packet.h"

enum { OK = ORDER_SAGA_OK, NO = ORDER_SAGA_FAILED, UNK = ORDER_SAGA_UNKNOWN };
enum {
  RSV = ORDER_SAGA_ACT_RESERVE,
  CHG = ORDER_SAGA_ACT_CHARGE,
  COM = ORDER_SAGA_ACT_COMMIT,
  RFD = ORDER_SAGA_ACT_REFUND,
  RLS = ORDER_SAGA_ACT_RELEASE,
  CNF = ORDER_SAGA_ACT_CONFIRM,
  CAN = ORDER_SAGA_ACT_CANCEL,
};

typedef struct verdict_case {
  const char *what;
  int action;
  int attempts;
  int up_status;
  const char *response;            /* JSON text, or NULL */
  const char *err;                 /* JSON text (may be a bare string), or NULL */
  int outcome;
  int status;                      /* FAILED: the caller's status (0: the order) */
  const char *code;                /* FAILED with status: err's code */
  const char *reason;              /* FAILED: the cancel reason */
} verdict_case_t;

#define NOHANDLER "\"" PROTO_NO_HANDLER_MESSAGE "\""

static const verdict_case_t cases[] = {
    /* reserve_inventory */
    {"reserved", RSV, 0, PROTO_OK, "{\"orderId\":\"o\",\"items\":[]}", NULL, OK, 0, NULL, NULL},
    {"void reply", RSV, 0, PROTO_OK, NULL, NULL, UNK, 0, NULL, NULL},
    {"down first try", RSV, 0, PROTO_EUNAVAIL, NULL, NULL, NO, 503,
     "INVENTORY_SERVICE_UNAVAILABLE", ORDER_REASON_INVENTORY_UNAVAILABLE},
    {"down on a retry", RSV, 1, PROTO_EUNAVAIL, NULL, NULL, UNK, 0, NULL, NULL},
    {"timeout", RSV, 0, PROTO_ETIMEDOUT, NULL, NULL, UNK, 0, NULL, NULL},
    {"connection lost", RSV, 0, PROTO_ECONNLOST, NULL, NULL, UNK, 0, NULL, NULL},
    {"out of stock", RSV, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":409,\"code\":\"OUT_OF_STOCK\",\"message\":\"Not enough stock\","
     "\"details\":[{\"productId\":\"p\"}]}",
     NO, 409, "OUT_OF_STOCK", "out_of_stock"},
    {"unknown product", RSV, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":404,\"code\":\"PRODUCT_NOT_FOUND\",\"message\":\"Product not found\"}", NO,
     404, "PRODUCT_NOT_FOUND", "product_not_found"},
    {"5xx", RSV, 0, PROTO_EREMOTE, NULL, "{\"statusCode\":500,\"message\":\"boom\"}", UNK, 0,
     NULL, NULL},
    {"nest {error,statusCode} 404 as a response", RSV, 0, PROTO_OK,
     "{\"error\":\"Product not found\",\"statusCode\":404}", NULL, NO, 404,
     "RESERVATION_REFUSED", "Product not found"},
    {"nest {error,statusCode} 500 as a response", RSV, 0, PROTO_OK,
     "{\"error\":\"boom\",\"statusCode\":500}", NULL, UNK, 0, NULL, NULL},
    {"nest {status:error, message}", RSV, 0, PROTO_EREMOTE, NULL,
     "{\"status\":\"error\",\"message\":\"Internal server error\"}", UNK, 0, NULL, NULL},
    {"bare string", RSV, 0, PROTO_EREMOTE, NULL, "\"Internal server error\"", UNK, 0, NULL,
     NULL},
    {"no handler", RSV, 0, PROTO_EREMOTE, NULL, NOHANDLER, UNK, 0, NULL, NULL},

    /* process_payment */
    {"succeeded", CHG, 0, PROTO_OK, "{\"id\":\"pay_1\",\"status\":\"succeeded\"}", NULL, OK, 0,
     NULL, NULL},
    {"succeeded without id", CHG, 0, PROTO_OK, "{\"status\":\"succeeded\"}", NULL, UNK, 0, NULL,
     NULL},
    {"declined", CHG, 0, PROTO_OK,
     "{\"id\":\"pay_1\",\"status\":\"declined\",\"reason\":\"card_declined\"}", NULL, NO, 0,
     NULL, "card_declined"},
    {"declined without reason", CHG, 0, PROTO_OK, "{\"id\":\"pay_1\",\"status\":\"declined\"}",
     NULL, NO, 0, NULL, "declined"},
    {"refunded already", CHG, 0, PROTO_OK, "{\"id\":\"pay_1\",\"status\":\"refunded\"}", NULL,
     NO, 0, NULL, "payment_refunded"},
    {"unreadable status", CHG, 0, PROTO_OK, "{\"status\":\"mystery\"}", NULL, UNK, 0, NULL,
     NULL},
    {"down first try", CHG, 0, PROTO_EUNAVAIL, NULL, NULL, NO, 503,
     "PAYMENT_SERVICE_UNAVAILABLE", ORDER_REASON_PAYMENT_UNAVAILABLE},
    {"down on a retry", CHG, 2, PROTO_EUNAVAIL, NULL, NULL, UNK, 0, NULL, NULL},
    {"timeout", CHG, 0, PROTO_ETIMEDOUT, NULL, NULL, UNK, 0, NULL, NULL},
    {"4xx", CHG, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":400,\"code\":\"INVALID_PAYMENT_METHOD\",\"message\":\"Unknown\"}", NO,
     400, "INVALID_PAYMENT_METHOD", "invalid_payment_method"},
    {"4xx without code", CHG, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":400,\"message\":\"Bad card\"}", NO, 400, "PAYMENT_REJECTED", "Bad card"},
    {"5xx", CHG, 0, PROTO_EREMOTE, NULL, "{\"statusCode\":502,\"message\":\"x\"}", UNK, 0, NULL,
     NULL},
    {"nest {error,statusCode} 402 as a response", CHG, 0, PROTO_OK,
     "{\"error\":\"Payment required\",\"statusCode\":402}", NULL, NO, 402, "PAYMENT_REJECTED",
     "Payment required"},
    {"bare string", CHG, 0, PROTO_EREMOTE, NULL, "\"oops\"", UNK, 0, NULL, NULL},

    /* commit_inventory */
    {"committed", COM, 0, PROTO_OK, "{\"status\":\"committed\"}", NULL, OK, 0, NULL, NULL},
    {"void reply", COM, 0, PROTO_OK, NULL, NULL, OK, 0, NULL, NULL},
    {"no handler (a NestJS inventory)", COM, 0, PROTO_EREMOTE, NULL, NOHANDLER, OK, 0, NULL,
     NULL},
    {"no handler as {status:error, message}", COM, 0, PROTO_EREMOTE, NULL,
     "{\"status\":\"error\",\"message\":" NOHANDLER "}", OK, 0, NULL, NULL},
    {"reservation released", COM, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":409,\"code\":\"RESERVATION_RELEASED\",\"message\":\"gone\"}", NO, 409,
     "RESERVATION_EXPIRED", "reservation_expired"},
    {"reservation not found", COM, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":404,\"code\":\"RESERVATION_NOT_FOUND\",\"message\":\"gone\"}", NO, 409,
     "RESERVATION_EXPIRED", "reservation_expired"},
    {"other 409", COM, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":409,\"code\":\"SOMETHING_ELSE\",\"message\":\"?\"}", UNK, 0, NULL, NULL},
    {"down (past the pivot: never definite)", COM, 0, PROTO_EUNAVAIL, NULL, NULL, UNK, 0, NULL,
     NULL},
    {"timeout", COM, 0, PROTO_ETIMEDOUT, NULL, NULL, UNK, 0, NULL, NULL},
    {"5xx", COM, 0, PROTO_EREMOTE, NULL, "{\"statusCode\":500,\"message\":\"x\"}", UNK, 0, NULL,
     NULL},

    /* refund_payment */
    {"refunded", RFD, 0, PROTO_OK, "{\"status\":\"refunded\"}", NULL, OK, 0, NULL, NULL},
    {"voided", RFD, 0, PROTO_OK, "{\"status\":\"voided\"}", NULL, OK, 0, NULL, NULL},
    {"nothing to refund (409)", RFD, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":409,\"code\":\"NOT_REFUNDABLE\",\"message\":\"declined\"}", OK, 0, NULL,
     NULL},
    {"no payment (404)", RFD, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":404,\"code\":\"PAYMENT_NOT_FOUND\",\"message\":\"none\"}", OK, 0, NULL,
     NULL},
    {"nest {error,statusCode} 404 as a response", RFD, 0, PROTO_OK,
     "{\"error\":\"Payment not found\",\"statusCode\":404}", NULL, OK, 0, NULL, NULL},
    {"400 (e.g. voidIfMissing refused)", RFD, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\",\"message\":\"x\"}", UNK, 0, NULL,
     NULL},
    {"down", RFD, 0, PROTO_EUNAVAIL, NULL, NULL, UNK, 0, NULL, NULL},
    {"timeout", RFD, 0, PROTO_ETIMEDOUT, NULL, NULL, UNK, 0, NULL, NULL},
    {"bare string", RFD, 0, PROTO_EREMOTE, NULL, "\"oops\"", UNK, 0, NULL, NULL},

    /* release_inventory */
    {"released", RLS, 0, PROTO_OK, "{\"status\":\"released\"}", NULL, OK, 0, NULL, NULL},
    {"nothing held (404)", RLS, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":404,\"code\":\"RESERVATION_NOT_FOUND\",\"message\":\"none\"}", OK, 0,
     NULL, NULL},
    {"committed (409)", RLS, 0, PROTO_EREMOTE, NULL,
     "{\"statusCode\":409,\"code\":\"RESERVATION_COMMITTED\",\"message\":\"sold\"}", OK, 0,
     NULL, NULL},
    {"5xx", RLS, 0, PROTO_EREMOTE, NULL, "{\"statusCode\":500,\"message\":\"x\"}", UNK, 0, NULL,
     NULL},
    {"down", RLS, 0, PROTO_EUNAVAIL, NULL, NULL, UNK, 0, NULL, NULL},
    {"no handler", RLS, 0, PROTO_EREMOTE, NULL, NOHANDLER, UNK, 0, NULL, NULL},

    /* local actions have no answer to judge */
    {"confirm", CNF, 0, PROTO_OK, "{}", NULL, UNK, 0, NULL, NULL},
    {"cancel", CAN, 0, PROTO_OK, "{}", NULL, UNK, 0, NULL, NULL},
    {"bad action", 99, 0, PROTO_OK, "{}", NULL, UNK, 0, NULL, NULL},
};

static json_t *parse(const char *text) {
  if (!text)
    return NULL;
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad test JSON %s: %s", text, e.text);
  return j;
}

static void test_verdicts(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const verdict_case_t *c = &cases[i];
    json_t *response = parse(c->response), *err = parse(c->err);
    order_saga_verdict_t v;
    order_saga_judge(c->action, c->attempts, c->up_status, response, err, &v);
    const char *act = order_saga_action_name(c->action);
    if (v.outcome != c->outcome)
      fail_msg("%s / %s: outcome %d, want %d", act ? act : "?", c->what, v.outcome, c->outcome);
    if (c->outcome == NO) {
      if (strcmp(v.reason, c->reason) != 0)
        fail_msg("%s / %s: reason '%s', want '%s'", act, c->what, v.reason, c->reason);
      if (v.status != c->status)
        fail_msg("%s / %s: status %d, want %d", act, c->what, v.status, c->status);
      if (c->status) {
        assert_non_null(v.err);
        assert_int_equal(json_integer_value(json_object_get(v.err, "statusCode")), c->status);
        const char *code = json_string_value(json_object_get(v.err, "code"));
        if (!code || strcmp(code, c->code) != 0)
          fail_msg("%s / %s: code %s, want %s", act, c->what, code ? code : "(none)", c->code);
      } else {
        assert_null(v.err);
      }
    } else {
      assert_null(v.err);
    }
    if (c->action == CHG && c->outcome == OK)
      assert_string_equal(v.payment_id, "pay_1");
    json_decref(v.err);
    json_decref(response);
    json_decref(err);
  }
}

/* A peer's refusal keeps its details; a long message is cut to the reason's
 * size on a UTF-8 boundary. */
static void test_refusal_details_and_long_reason(void **state) {
  (void)state;
  order_saga_verdict_t v;
  json_t *err = parse("{\"statusCode\":409,\"code\":\"OUT_OF_STOCK\",\"message\":\"m\","
                      "\"details\":[{\"productId\":\"p2\",\"available\":1}]}");
  order_saga_judge(RSV, 0, PROTO_EREMOTE, NULL, err, &v);
  assert_int_equal(v.outcome, NO);
  json_t *d = json_array_get(json_object_get(v.err, "details"), 0);
  assert_string_equal(json_string_value(json_object_get(d, "productId")), "p2");
  json_decref(v.err);
  json_decref(err);

  char msg[ORDER_REASON_MAX_BYTES * 2 + 1];
  /* "é" is two bytes: a cut in the middle of one must step back. */
  for (size_t i = 0; i + 1 < sizeof(msg); i += 2) {
    msg[i] = (char)0xC3;
    msg[i + 1] = (char)0xA9;
  }
  msg[sizeof(msg) - 1] = '\0';
  err = json_pack("{s:i, s:s}", "statusCode", 400, "message", msg);
  assert_non_null(err);
  order_saga_judge(CHG, 0, PROTO_EREMOTE, NULL, err, &v);
  assert_int_equal(v.outcome, NO);
  size_t n = strlen(v.reason);
  assert_true(n < ORDER_REASON_MAX_BYTES && n > 0);
  assert_int_equal(n % 2, 0); /* whole characters only */
  json_decref(v.err);
  json_decref(err);
}

/* --- prices ------------------------------------------------------------------ */

static json_t *order_of(const char *items_json) {
  char buf[512];
  snprintf(buf, sizeof(buf), "{\"id\":\"o\",\"currency\":\"USD\",\"items\":%s}", items_json);
  return parse(buf);
}

static void test_price_applied(void **state) {
  (void)state;
  int64_t prices[2];
  char cur[4];
  json_t *problem = (json_t *)1;
  const char *reason = "x";
  json_t *o = order_of("[{\"productId\":\"a\",\"quantity\":1,\"price\":null},"
                       "{\"productId\":\"b\",\"quantity\":2,\"price\":300}]");
  /* The reservation lists items in its own order. */
  json_t *r = parse("{\"items\":[{\"productId\":\"b\",\"price\":300,\"currency\":\"USD\"},"
                    "{\"productId\":\"a\",\"price\":150}]}");
  assert_int_equal(order_saga_price(o, r, prices, cur, &problem, &reason), 0);
  assert_int_equal(prices[0], 150);
  assert_int_equal(prices[1], 300);
  assert_string_equal(cur, "USD");
  assert_null(problem);
  assert_null(reason);
  json_decref(o);
  json_decref(r);
}

static void expect_problem(const char *items, const char *reservation, int status,
                           const char *code, const char *want_reason) {
  int64_t prices[4];
  char cur[4];
  json_t *problem = NULL;
  const char *reason = NULL;
  json_t *o = order_of(items), *r = parse(reservation);
  assert_int_equal(order_saga_price(o, r, prices, cur, &problem, &reason), -1);
  assert_non_null(problem);
  assert_int_equal(json_integer_value(json_object_get(problem, "statusCode")), status);
  assert_string_equal(json_string_value(json_object_get(problem, "code")), code);
  assert_string_equal(reason, want_reason);
  if (strcmp(code, "PRICE_CHANGED") == 0) {
    json_t *d = json_array_get(json_object_get(problem, "details"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "productId")), "a");
    assert_int_equal(json_integer_value(json_object_get(d, "requested")), 100);
    assert_int_equal(json_integer_value(json_object_get(d, "price")), 150);
    assert_int_equal(json_array_size(json_object_get(problem, "details")), 1);
  }
  json_decref(problem);
  json_decref(o);
  json_decref(r);
}

static void test_price_problems(void **state) {
  (void)state;
  expect_problem("[{\"productId\":\"a\",\"quantity\":1,\"price\":100},"
                 "{\"productId\":\"b\",\"quantity\":1,\"price\":5}]",
                 "{\"items\":[{\"productId\":\"a\",\"price\":150},{\"productId\":\"b\","
                 "\"price\":5}]}",
                 409, "PRICE_CHANGED", ORDER_REASON_PRICE_CHANGED);
  expect_problem("[{\"productId\":\"a\",\"quantity\":1}]",
                 "{\"items\":[{\"productId\":\"zzz\",\"price\":150}]}", 502,
                 "INVENTORY_SERVICE_ERROR", "inventory_reply_invalid");
  expect_problem("[{\"productId\":\"a\",\"quantity\":1}]",
                 "{\"items\":[{\"productId\":\"a\",\"price\":-1}]}", 502,
                 "INVENTORY_SERVICE_ERROR", "inventory_reply_invalid");
  expect_problem("[{\"productId\":\"a\",\"quantity\":1}]", "{\"orderId\":\"o\"}", 502,
                 "INVENTORY_SERVICE_ERROR", "inventory_reply_invalid");
  expect_problem("[{\"productId\":\"a\",\"quantity\":1}]",
                 "{\"items\":[{\"productId\":\"a\",\"price\":150,\"currency\":\"EUR\"}]}", 409,
                 "CURRENCY_MISMATCH", "currency_mismatch");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verdicts),
      cmocka_unit_test(test_refusal_details_and_long_reason),
      cmocka_unit_test(test_price_applied),
      cmocka_unit_test(test_price_problems),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
