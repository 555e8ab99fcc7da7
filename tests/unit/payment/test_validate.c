/* test_validate.c: the payment service's input validation (validate.c) and
 * the test processor (processor.c): required fields, ids, amount range and
 * types, currency default and shape, known payment methods, unknown fields,
 * the keys of get/refund requests and refund_payment's voidIfMissing. Pure
 * functions: no database, no loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "payment.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad test JSON %s: %s", text, e.text);
  return j;
}

/* errs holds an error for field with message (exact, or a prefix when
 * message ends with '*'). */
static void assert_err(const payment_verrs_t *errs, const char *field, const char *message) {
  for (size_t i = 0; i < errs->n; i++)
    if (errs->e[i].field_len == strlen(field) &&
        memcmp(errs->e[i].field, field, errs->e[i].field_len) == 0) {
      size_t ml = strlen(message);
      if (ml && message[ml - 1] == '*')
        assert_memory_equal(errs->e[i].message, message, ml - 1);
      else
        assert_string_equal(errs->e[i].message, message);
      return;
    }
  fail_msg("no error for field '%s' (%zu errors)", field, errs->n);
}

/* process_payment data fails, with field named and message. */
static void process_fails(const char *text, const char *field, const char *message) {
  json_t *d = parse(text);
  payment_process_input_t in;
  payment_verrs_t errs;
  if (payment_validate_process(d, &in, &errs) == 0)
    fail_msg("accepted %s", text);
  assert_true(errs.n >= 1);
  assert_err(&errs, field, message);
  json_decref(d);
}

#define VALID_ORDER "\"orderId\":\"ord_1\",\"userId\":\"user_1\""

static void process_accepts_and_defaults_currency(void **state) {
  (void)state;
  payment_process_input_t in;
  payment_verrs_t errs;
  json_t *d = parse("{" VALID_ORDER ",\"amount\":3998,\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(payment_validate_process(d, &in, &errs), 0);
  assert_int_equal(errs.n, 0);
  assert_int_equal(in.order_id_len, 5);
  assert_memory_equal(in.order_id, "ord_1", 5);
  assert_memory_equal(in.user_id, "user_1", 6);
  assert_int_equal(in.amount, 3998);
  assert_string_equal(in.currency, "USD");
  assert_int_equal(in.method_len, 8);
  assert_memory_equal(in.method, "tok_visa", 8);
  json_decref(d);

  /* Explicit currency, null currency (= default), zero amount, 1999.0. */
  d = parse("{" VALID_ORDER ",\"amount\":0,\"currency\":\"EUR\","
            "\"paymentMethod\":\"tok_chargeDeclined\"}");
  assert_int_equal(payment_validate_process(d, &in, &errs), 0);
  assert_string_equal(in.currency, "EUR");
  assert_int_equal(in.amount, 0);
  json_decref(d);
  d = parse("{" VALID_ORDER ",\"amount\":1999.0,\"currency\":null,"
            "\"paymentMethod\":\"tok_insufficientFunds\"}");
  assert_int_equal(payment_validate_process(d, &in, &errs), 0);
  assert_string_equal(in.currency, "USD");
  assert_int_equal(in.amount, 1999);
  json_decref(d);
}

static void process_amount_range(void **state) {
  (void)state;
  payment_process_input_t in;
  payment_verrs_t errs;
  /* The documented maximum, 10^15, is accepted; one more is not. */
  json_t *d = parse("{" VALID_ORDER ",\"amount\":1000000000000000,"
                    "\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(payment_validate_process(d, &in, &errs), 0);
  assert_int_equal(in.amount, PAYMENT_AMOUNT_MAX);
  json_decref(d);
  process_fails("{" VALID_ORDER ",\"amount\":1000000000000001,\"paymentMethod\":\"tok_visa\"}",
                "amount", "must be an integer number of minor units from 0 to 1000000000000000");
  process_fails("{" VALID_ORDER ",\"amount\":-1,\"paymentMethod\":\"tok_visa\"}", "amount",
                "must be an integer*");
  process_fails("{" VALID_ORDER ",\"amount\":19.99,\"paymentMethod\":\"tok_visa\"}", "amount",
                "must be an integer*");
  process_fails("{" VALID_ORDER ",\"amount\":\"1999\",\"paymentMethod\":\"tok_visa\"}",
                "amount", "must be an integer*");
  process_fails("{" VALID_ORDER ",\"amount\":true,\"paymentMethod\":\"tok_visa\"}", "amount",
                "must be an integer*");
  process_fails("{" VALID_ORDER ",\"amount\":1e300,\"paymentMethod\":\"tok_visa\"}", "amount",
                "must be an integer*");
  process_fails("{" VALID_ORDER ",\"amount\":9223372036854775807,\"paymentMethod\":\"tok_visa\"}",
                "amount", "must be an integer*");
  process_fails("{" VALID_ORDER ",\"paymentMethod\":\"tok_visa\"}", "amount", "is required");
  process_fails("{" VALID_ORDER ",\"amount\":null,\"paymentMethod\":\"tok_visa\"}", "amount",
                "is required");

  int64_t v = -1;
  json_t *j = json_real(-0.0);
  assert_null(payment_validate_amount(j, &v));
  assert_int_equal(v, 0);
  json_decref(j);
}

static void process_currency_shape(void **state) {
  (void)state;
  static const char *const bad[] = {"usd", "US", "USDX", "U5D", "", "\xc3\x89UR"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_non_null(payment_validate_currency(bad[i], strlen(bad[i])));
  assert_null(payment_validate_currency("JPY", 3));
  process_fails("{" VALID_ORDER ",\"amount\":1,\"currency\":\"usd\",\"paymentMethod\":\"tok_visa\"}",
                "currency", "must be a 3-letter uppercase currency code (ISO 4217)");
  process_fails("{" VALID_ORDER ",\"amount\":1,\"currency\":840,\"paymentMethod\":\"tok_visa\"}",
                "currency", "must be a string");
}

static void process_methods(void **state) {
  (void)state;
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":\"tok_mastercard\"}",
                "paymentMethod",
                "must be one of tok_visa, tok_chargeDeclined, tok_insufficientFunds");
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":\"TOK_VISA\"}",
                "paymentMethod", "must be one of*");
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":\"tok_visa\\u0000\"}",
                "paymentMethod", "must be one of*");
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":\"\"}", "paymentMethod",
                "must be one of*");
  process_fails("{" VALID_ORDER ",\"amount\":1}", "paymentMethod", "is required");
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":{}}", "paymentMethod",
                "must be a string");

  /* The processor's documented outcomes. */
  payment_process_input_t in = {.method = "tok_visa", .method_len = 8};
  payment_charge_t c = payment_processor_charge(&in, NULL);
  assert_int_equal(c.status, PAYMENT_SUCCEEDED);
  assert_null(c.reason);
  in.method = "tok_chargeDeclined";
  in.method_len = strlen(in.method);
  c = payment_processor_charge(&in, NULL);
  assert_int_equal(c.status, PAYMENT_DECLINED);
  assert_string_equal(c.reason, "card_declined");
  in.method = "tok_insufficientFunds";
  in.method_len = strlen(in.method);
  c = payment_processor_charge(&in, NULL);
  assert_int_equal(c.status, PAYMENT_DECLINED);
  assert_string_equal(c.reason, "insufficient_funds");
  in.method = "tok_visa_extra";
  in.method_len = 8; /* a prefix of a longer buffer is the token itself */
  assert_int_equal(payment_processor_charge(&in, NULL).status, PAYMENT_SUCCEEDED);
  in.method_len = strlen(in.method);
  assert_int_equal(payment_processor_charge(&in, NULL).status, PAYMENT_DECLINED);
  assert_false(payment_method_known("tok_vis", 7));
  assert_false(payment_method_known(NULL, 0));
  assert_string_equal(payment_status_name(PAYMENT_REFUNDED), "refunded");
}

static void process_ids(void **state) {
  (void)state;
  char text[600], big[200];
  process_fails("{\"userId\":\"u\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}", "orderId",
                "is required");
  process_fails("{\"orderId\":\"\",\"userId\":\"u\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}",
                "orderId", "must not be empty");
  process_fails("{\"orderId\":7,\"userId\":\"u\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}",
                "orderId", "must be a string");
  process_fails("{\"orderId\":\"o\\n1\",\"userId\":\"u\",\"amount\":1,"
                "\"paymentMethod\":\"tok_visa\"}",
                "orderId", "must not contain control characters");
  process_fails("{\"orderId\":\"o\",\"userId\":\"u\\u0000\",\"amount\":1,"
                "\"paymentMethod\":\"tok_visa\"}",
                "userId", "must not contain control characters");
  process_fails("{\"orderId\":\"o\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}", "userId",
                "is required");
  memset(big, 'x', 129);
  big[129] = '\0';
  snprintf(text, sizeof(text),
           "{\"orderId\":\"%s\",\"userId\":\"u\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}",
           big);
  process_fails(text, "orderId", "must be at most 128 bytes");
  big[128] = '\0';
  snprintf(text, sizeof(text),
           "{\"orderId\":\"%s\",\"userId\":\"u\",\"amount\":1,\"paymentMethod\":\"tok_visa\"}",
           big);
  json_t *d = parse(text);
  payment_process_input_t in;
  payment_verrs_t errs;
  assert_int_equal(payment_validate_process(d, &in, &errs), 0);
  json_decref(d);
}

static void process_rejects_unknown_and_non_objects(void **state) {
  (void)state;
  process_fails("{" VALID_ORDER ",\"amount\":1,\"paymentMethod\":\"tok_visa\",\"tip\":5}", "tip",
                "is not allowed");
  static const char *const not_objects[] = {"null", "[]", "\"x\"", "42"};
  for (size_t i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++)
    process_fails(not_objects[i], "data", "must be an object");

  /* Every error is reported, in field order, then unknown fields. */
  json_t *d = parse("{\"amount\":-5,\"currency\":\"x\",\"extra\":1}");
  payment_process_input_t in;
  payment_verrs_t errs;
  assert_int_equal(payment_validate_process(d, &in, &errs), -1);
  assert_int_equal(errs.n, 6);
  assert_memory_equal(errs.e[0].field, "orderId", 7);
  assert_memory_equal(errs.e[1].field, "userId", 6);
  assert_memory_equal(errs.e[2].field, "amount", 6);
  assert_memory_equal(errs.e[3].field, "currency", 8);
  assert_memory_equal(errs.e[4].field, "paymentMethod", 13);
  assert_memory_equal(errs.e[5].field, "extra", 5);
  json_decref(d);

  /* A hostile key is echoed cut to 64 bytes, on a character boundary. */
  char text[400] = "{\"";
  size_t n = 2;
  for (int i = 0; i < 40; i++) {
    memcpy(text + n, "\xc3\xa9", 2); /* é: 80 bytes in all */
    n += 2;
  }
  text[n++] = 'Z';
  strcpy(text + n, "\":1}");
  d = parse(text);
  assert_int_equal(payment_validate_get(d, &(payment_key_input_t){0}, &errs), -1);
  assert_int_equal(errs.e[1].field_len, 64);
  json_decref(d);
}

static void keys(void **state) {
  (void)state;
  payment_key_input_t k;
  payment_verrs_t errs;
  json_t *d = parse("{\"id\":\"pay_1\"}");
  assert_int_equal(payment_validate_get(d, &k, &errs), 0);
  assert_int_equal(k.len, 5);
  assert_memory_equal(k.value, "pay_1", 5);
  json_decref(d);
  d = parse("{\"orderId\":\"ord_9\"}");
  assert_int_equal(payment_validate_order_key(d, &k, &errs), 0);
  assert_memory_equal(k.value, "ord_9", 5);
  assert_int_equal(payment_validate_get(d, &k, &errs), -1);
  assert_err(&errs, "id", "is required");
  assert_err(&errs, "orderId", "is not allowed");
  json_decref(d);
  d = parse("{\"orderId\":\"\"}");
  assert_int_equal(payment_validate_order_key(d, &k, &errs), -1);
  assert_err(&errs, "orderId", "must not be empty");
  json_decref(d);
  d = parse("null");
  assert_int_equal(payment_validate_order_key(d, &k, &errs), -1);
  assert_err(&errs, "data", "must be an object");
  json_decref(d);
}

/* refund_payment {orderId, voidIfMissing?}: a boolean, absent or null is
 * false; anything else names the field; other fields stay unknown. */
static void refund_void_if_missing(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int void_if_missing;
  } ok[] = {
      {"{\"orderId\":\"ord_9\"}", 0},
      {"{\"orderId\":\"ord_9\",\"voidIfMissing\":false}", 0},
      {"{\"orderId\":\"ord_9\",\"voidIfMissing\":null}", 0},
      {"{\"orderId\":\"ord_9\",\"voidIfMissing\":true}", 1},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    payment_refund_input_t in = {.void_if_missing = -1};
    payment_verrs_t errs;
    json_t *d = parse(ok[i].text);
    assert_int_equal(payment_validate_refund(d, &in, &errs), 0);
    assert_int_equal(in.order_id_len, 5);
    assert_memory_equal(in.order_id, "ord_9", 5);
    assert_int_equal(in.void_if_missing, ok[i].void_if_missing);
    json_decref(d);
  }
  static const char *const bad[] = {
      "{\"orderId\":\"ord_9\",\"voidIfMissing\":\"true\"}",
      "{\"orderId\":\"ord_9\",\"voidIfMissing\":1}",
      "{\"orderId\":\"ord_9\",\"voidIfMissing\":0}",
      "{\"orderId\":\"ord_9\",\"voidIfMissing\":[]}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    payment_refund_input_t in;
    payment_verrs_t errs;
    json_t *d = parse(bad[i]);
    assert_int_equal(payment_validate_refund(d, &in, &errs), -1);
    assert_int_equal(errs.n, 1);
    assert_err(&errs, "voidIfMissing", "must be a boolean");
    json_decref(d);
  }
  payment_refund_input_t in;
  payment_verrs_t errs;
  json_t *d = parse("{\"voidIfMissing\":true,\"force\":true}");
  assert_int_equal(payment_validate_refund(d, &in, &errs), -1);
  assert_err(&errs, "orderId", "is required");
  assert_err(&errs, "force", "is not allowed");
  json_decref(d);
  d = parse("[]");
  assert_int_equal(payment_validate_refund(d, &in, &errs), -1);
  assert_err(&errs, "data", "must be an object");
  json_decref(d);
  /* get_payment_by_order takes no voidIfMissing. */
  payment_key_input_t k;
  d = parse("{\"orderId\":\"ord_9\",\"voidIfMissing\":true}");
  assert_int_equal(payment_validate_order_key(d, &k, &errs), -1);
  assert_err(&errs, "voidIfMissing", "is not allowed");
  json_decref(d);
}

static void too_many_errors_are_capped(void **state) {
  (void)state;
  json_t *d = parse("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1}");
  payment_process_input_t in;
  payment_verrs_t errs;
  assert_int_equal(payment_validate_process(d, &in, &errs), -1);
  assert_int_equal(errs.n, PAYMENT_VERR_MAX);
  json_decref(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(process_accepts_and_defaults_currency),
      cmocka_unit_test(process_amount_range),
      cmocka_unit_test(process_currency_shape),
      cmocka_unit_test(process_methods),
      cmocka_unit_test(process_ids),
      cmocka_unit_test(process_rejects_unknown_and_non_objects),
      cmocka_unit_test(keys),
      cmocka_unit_test(refund_void_if_missing),
      cmocka_unit_test(too_many_errors_are_capped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
