/* test_message.c: message.c: money formatting from minor units (exact,
 * per-currency exponent, edge values), the draft built for each event, the
 * reasons an event is rejected, and the shape of a notification object.
 * The tutorial's shapes, fractional amounts and derived eventIds per
 * pattern are in test_conformance.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notification.h"
#include "proto/log.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (!j)
    fail_msg("bad test JSON %s: %s", text, e.text);
  return j;
}

static void money(int64_t amount, const char *cur, const char *want) {
  char buf[64];
  int n = ntf_format_money(amount, cur, buf, sizeof(buf));
  assert_int_equal(n, (int)strlen(want));
  assert_string_equal(buf, want);
}

static void format_money_exactly(void **state) {
  (void)state;
  money(3998, "USD", "39.98");
  money(0, "USD", "0.00");
  money(5, "EUR", "0.05");
  money(100, "EUR", "1.00");
  money(-5, "EUR", "-0.05");
  money(-12345, "usd", "-123.45");
  /* Values where binary floating point would go wrong. */
  money(1999, "USD", "19.99");
  money(1000000001, "USD", "10000000.01");
  money(9007199254740991LL, "USD", "90071992547409.91");
  money(INT64_MAX, "USD", "92233720368547758.07");
  money(INT64_MIN, "USD", "-92233720368547758.08");
  /* ISO 4217 exponents other than 2. */
  money(500, "JPY", "500");
  money(500, "jpy", "500");
  money(1234, "KRW", "1234");
  money(1234, "KWD", "1.234");
  money(5, "BHD", "0.005");
  money(12345, "CLF", "1.2345");
  money(3998, "XYZ", "39.98"); /* unknown codes: 2 decimals */
  money(3998, NULL, "39.98");
  assert_int_equal(ntf_currency_exponent("JPY"), 0);
  assert_int_equal(ntf_currency_exponent("TND"), 3);
  assert_int_equal(ntf_currency_exponent("GBP"), 2);
}

static void format_money_small_buffer(void **state) {
  char buf[5];
  (void)state;
  assert_int_equal(ntf_format_money(3998, "USD", buf, sizeof(buf)), -1);
  assert_string_equal(buf, "");
  assert_int_equal(ntf_format_money(998, "USD", buf, sizeof(buf)), 4);
  assert_string_equal(buf, "9.98");
  assert_int_equal(ntf_format_money(1, "USD", buf, 0), -1);
}

static void patterns_and_kinds(void **state) {
  (void)state;
  for (int k = 0; k < NTF_EV_COUNT_; k++)
    assert_int_equal(ntf_event_kind(ntf_event_pattern((ntf_event_kind_t)k)), k);
  assert_string_equal(ntf_event_pattern(NTF_EV_ORDER_CREATED), "order_created");
  assert_string_equal(ntf_event_pattern(NTF_EV_PAYMENT_REFUNDED), "payment_refunded");
  assert_string_equal(ntf_event_pattern(NTF_EV_ORDER_COMPLETED), "order_completed");
  assert_string_equal(ntf_event_pattern(NTF_EV_ORDER_FAILED), "order_failed");
  assert_int_equal(ntf_event_kind("order_failed"), NTF_EV_ORDER_FAILED);
  assert_int_equal(ntf_event_kind("inventory_reserved"), -1);
  assert_int_equal(ntf_event_kind(NULL), -1);
  assert_null(ntf_event_pattern(NTF_EV_COUNT_));
}

/* Build kind from data text; expect success and return the draft. */
static void build_ok(ntf_event_kind_t kind, const char *text, const char *type,
                     const char *title, const char *message) {
  json_t *data = parse(text);
  ntf_draft_t d;
  ntf_invalid_t why = {NULL, NULL};
  if (ntf_build(kind, data, &d, &why) != 0)
    fail_msg("%s rejected: %s %s", text, why.field, why.message);
  assert_string_equal(d.type, type);
  assert_string_equal(d.title, title);
  assert_string_equal(d.message, message);
  assert_string_equal(d.user_id, json_string_value(json_object_get(data, "userId")));
  assert_string_equal(d.order_id, json_string_value(json_object_get(data, "orderId")));
  json_decref(data);
}

static void build_rejects(ntf_event_kind_t kind, const char *text, const char *field,
                          const char *message) {
  json_t *data = parse(text);
  ntf_draft_t d;
  ntf_invalid_t why = {NULL, NULL};
  assert_int_equal(ntf_build(kind, data, &d, &why), -1);
  assert_non_null(why.field);
  assert_string_equal(why.field, field);
  if (message)
    assert_string_equal(why.message, message);
  json_decref(data);
}

static void drafts_for_each_event(void **state) {
  (void)state;
  build_ok(NTF_EV_ORDER_CREATED,
           "{\"orderId\":\"ord_1\",\"userId\":\"u1\",\"totalAmount\":3998,\"currency\":\"USD\","
           "\"items\":[{\"productId\":\"p\",\"quantity\":2,\"unitPrice\":1999}]}",
           "order_confirmation", "Order received",
           "Your order ord_1 for 39.98 USD has been received");
  build_ok(NTF_EV_ORDER_STATUS_CHANGED,
           "{\"orderId\":\"ord_1\",\"userId\":\"u1\",\"previousStatus\":\"paid\","
           "\"newStatus\":\"shipped\"}",
           "order_status", "Order update", "Your order ord_1 is now shipped");
  build_ok(NTF_EV_PAYMENT_COMPLETED,
           "{\"paymentId\":\"pay_1\",\"orderId\":\"ord_1\",\"userId\":\"u1\",\"amount\":3998,"
           "\"currency\":\"eur\"}",
           "payment_receipt", "Payment received",
           "We received your payment of 39.98 EUR for order ord_1");
  build_ok(NTF_EV_PAYMENT_FAILED,
           "{\"orderId\":\"ord_1\",\"userId\":\"u1\",\"reason\":\"card declined\"}",
           "payment_failed", "Payment failed",
           "Your payment for order ord_1 failed: card declined");
  build_ok(NTF_EV_PAYMENT_FAILED,
           "{\"orderId\":\"ord_1\",\"userId\":\"u1\",\"reason\":\"card declined\","
           "\"amount\":500,\"currency\":\"JPY\"}",
           "payment_failed", "Payment failed",
           "Your payment of 500 JPY for order ord_1 failed: card declined");
  /* A failure notice is worth sending without a reason, or with a bad amount. */
  build_ok(NTF_EV_PAYMENT_FAILED,
           "{\"orderId\":\"ord_1\",\"userId\":\"u1\",\"amount\":\"x\"}", "payment_failed",
           "Payment failed", "Your payment for order ord_1 failed: no reason was given");
  build_ok(NTF_EV_PAYMENT_REFUNDED,
           "{\"paymentId\":\"pay_1\",\"orderId\":\"ord_1\",\"userId\":\"u1\",\"amount\":1,"
           "\"currency\":\"USD\"}",
           "refund_receipt", "Refund issued",
           "A refund of 0.01 USD for your order ord_1 has been issued");
  /* JavaScript numbers: 3998.0 is the integer 3998. Extra fields are fine. */
  build_ok(NTF_EV_ORDER_CREATED,
           "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":3998.0,\"currency\":\"USD\","
           "\"somethingNew\":true}",
           "order_confirmation", "Order received", "Your order o for 39.98 USD has been received");
  /* A NestJS peer: no currency is USD (the HTTP API's default); a fraction
   * of minor units is shown exactly, not rounded or refused. */
  build_ok(NTF_EV_ORDER_CREATED, "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":3998}",
           "order_confirmation", "Order received", "Your order o for 39.98 USD has been received");
  build_ok(NTF_EV_ORDER_CREATED,
           "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":39.98,\"currency\":null}",
           "order_confirmation", "Order received", "Your order o for 0.3998 USD has been received");
  build_ok(NTF_EV_ORDER_COMPLETED,
           "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"gbp\"}",
           "order_completed", "Order completed", "Your order o for 0.01 GBP is complete");
  build_ok(NTF_EV_ORDER_FAILED, "{\"orderId\":\"o\",\"userId\":\"u\",\"reason\":\"no stock\"}",
           "order_failed", "Order failed", "Your order o could not be completed: no stock");
  build_ok(NTF_EV_ORDER_FAILED, "{\"orderId\":\"o\",\"userId\":\"u\"}", "order_failed",
           "Order failed", "Your order o could not be completed: no reason was given");
}

static void reason_is_cut_and_cleaned(void **state) {
  char text[2048];
  char reason[700];
  (void)state;
  /* 2-byte characters, so a cut at 256 bytes must not split one. */
  size_t n = 0;
  reason[n++] = 'x';
  while (n + 2 < sizeof(reason) - 1) {
    reason[n++] = (char)0xC3;
    reason[n++] = (char)0xA9;
  }
  reason[n] = '\0';
  snprintf(text, sizeof(text), "{\"orderId\":\"o\",\"userId\":\"u\",\"reason\":\"%s\"}", reason);
  json_t *data = parse(text);
  ntf_draft_t d;
  ntf_invalid_t why;
  assert_int_equal(ntf_build(NTF_EV_PAYMENT_FAILED, data, &d, &why), 0);
  const char *r = strstr(d.message, "failed: ") + 8;
  size_t len = strlen(r);
  assert_true(len <= NTF_REASON_MAX_BYTES + 3);
  assert_string_equal(r + len - 3, "...");
  /* What precedes "..." is whole characters: valid UTF-8 for jansson. */
  json_t *s = json_stringn(r, len);
  assert_non_null(s);
  json_decref(s);
  json_decref(data);

  data = parse("{\"orderId\":\"o\",\"userId\":\"u\",\"reason\":\"line1\\nline2\\ttab\"}");
  assert_int_equal(ntf_build(NTF_EV_PAYMENT_FAILED, data, &d, &why), 0);
  assert_string_equal(d.message, "Your payment for order o failed: line1 line2 tab");
  json_decref(data);
}

static void invalid_events(void **state) {
  (void)state;
  build_rejects(NTF_EV_ORDER_CREATED, "null", "data", "must be an object");
  build_rejects(NTF_EV_ORDER_CREATED, "[1,2]", "data", "must be an object");
  build_rejects(NTF_EV_ORDER_CREATED, "{\"orderId\":\"o\",\"totalAmount\":1,\"currency\":\"USD\"}",
                "userId", "is required");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":null,\"totalAmount\":1,\"currency\":\"USD\"}",
                "userId", "is required");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":42,\"totalAmount\":1,\"currency\":\"USD\"}",
                "userId", "must be a string");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"\",\"totalAmount\":1,\"currency\":\"USD\"}",
                "userId", "must not be empty");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"a\\nb\",\"totalAmount\":1,\"currency\":\"USD\"}",
                "userId", "must not contain control characters");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"a\\u0000b\",\"totalAmount\":1,"
                "\"currency\":\"USD\"}",
                "userId", "must not contain control characters");
  build_rejects(NTF_EV_ORDER_CREATED, "{\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"USD\"}",
                "orderId", "is required");
  build_rejects(NTF_EV_ORDER_CREATED, "{\"orderId\":\"o\",\"userId\":\"u\",\"currency\":\"USD\"}",
                "totalAmount", "is required");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":-1,\"currency\":\"USD\"}",
                "totalAmount", NULL);
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":\"3998\","
                "\"currency\":\"USD\"}",
                "totalAmount", NULL);
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":9007199254740992,"
                "\"currency\":\"USD\"}",
                "totalAmount", NULL);
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":-0.5,\"currency\":\"USD\"}",
                "totalAmount", "must be a non-negative number of minor units below 2^53");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":1e300,\"currency\":\"USD\"}",
                "totalAmount", NULL);
  build_rejects(NTF_EV_ORDER_COMPLETED, "{\"orderId\":\"o\",\"userId\":\"u\"}", "totalAmount",
                "is required");
  build_rejects(NTF_EV_ORDER_FAILED, "{\"userId\":\"u\",\"reason\":\"x\"}", "orderId",
                "is required");
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"US\"}",
                "currency", NULL);
  build_rejects(NTF_EV_ORDER_CREATED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"U$D\"}",
                "currency", NULL);
  build_rejects(NTF_EV_ORDER_STATUS_CHANGED, "{\"orderId\":\"o\",\"userId\":\"u\"}", "newStatus",
                "is required");
  build_rejects(NTF_EV_PAYMENT_COMPLETED,
                "{\"orderId\":\"o\",\"userId\":\"u\",\"currency\":\"USD\"}", "amount",
                "is required");
  build_rejects(NTF_EV_PAYMENT_REFUNDED, "{\"orderId\":\"o\",\"amount\":1,\"currency\":\"USD\"}",
                "userId", "is required");
  build_rejects(NTF_EV_PAYMENT_FAILED, "{\"orderId\":\"o\",\"reason\":\"x\"}", "userId",
                "is required");
  /* Ids are bounded. */
  char text[512], id[NTF_ID_MAX_BYTES + 2];
  memset(id, 'a', sizeof(id) - 1);
  id[sizeof(id) - 1] = '\0';
  snprintf(text, sizeof(text),
           "{\"orderId\":\"%s\",\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"USD\"}", id);
  build_rejects(NTF_EV_ORDER_CREATED, text, "orderId", NULL);
  id[sizeof(id) - 2] = '\0'; /* exactly the maximum is fine */
  snprintf(text, sizeof(text),
           "{\"orderId\":\"%s\",\"userId\":\"u\",\"totalAmount\":1,\"currency\":\"USD\"}", id);
  json_t *data = parse(text);
  ntf_draft_t d;
  ntf_invalid_t why;
  assert_int_equal(ntf_build(NTF_EV_ORDER_CREATED, data, &d, &why), 0);
  json_decref(data);
}

static void notification_object(void **state) {
  (void)state;
  json_t *data = parse("{\"orderId\":\"ord_9\",\"userId\":\"u9\",\"previousStatus\":\"paid\","
                       "\"newStatus\":\"shipped\"}");
  ntf_draft_t d;
  ntf_invalid_t why;
  assert_int_equal(ntf_build(NTF_EV_ORDER_STATUS_CHANGED, data, &d, &why), 0);
  json_t *n = ntf_notification_new(&d, "evt_1", "order_status_changed", data, "req-1", "none");
  assert_non_null(n);
  const char *id = json_string_value(json_object_get(n, "id"));
  assert_non_null(id);
  assert_int_equal(strlen(id), strlen(NTF_ID_PREFIX) + 32);
  assert_memory_equal(id, NTF_ID_PREFIX, strlen(NTF_ID_PREFIX));
  assert_string_equal(json_string_value(json_object_get(n, "userId")), "u9");
  assert_string_equal(json_string_value(json_object_get(n, "type")), "order_status");
  assert_string_equal(json_string_value(json_object_get(n, "title")), "Order update");
  assert_string_equal(json_string_value(json_object_get(n, "message")),
                      "Your order ord_9 is now shipped");
  assert_string_equal(json_string_value(json_object_get(n, "eventId")), "evt_1");
  assert_string_equal(json_string_value(json_object_get(n, "eventPattern")),
                      "order_status_changed");
  assert_string_equal(json_string_value(json_object_get(n, "orderId")), "ord_9");
  assert_string_equal(json_string_value(json_object_get(n, "requestId")), "req-1");
  assert_true(json_equal(json_object_get(n, "data"), data));
  assert_int_equal(strlen(json_string_value(json_object_get(n, "createdAt"))), 24);
  json_t *del = json_object_get(n, "delivery");
  assert_string_equal(json_string_value(json_object_get(del, "status")), "none");
  assert_int_equal(json_integer_value(json_object_get(del, "attempts")), 0);
  assert_int_equal(json_object_size(n), 12);
  json_t *n2 = ntf_notification_new(&d, "evt_2", "order_status_changed", data, NULL, "pending");
  assert_true(json_is_null(json_object_get(n2, "requestId")));
  assert_string_not_equal(json_string_value(json_object_get(n2, "id")), id);
  json_decref(n2);
  json_decref(n);
  json_decref(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(format_money_exactly),  cmocka_unit_test(format_money_small_buffer),
      cmocka_unit_test(patterns_and_kinds),    cmocka_unit_test(drafts_for_each_event),
      cmocka_unit_test(reason_is_cut_and_cleaned), cmocka_unit_test(invalid_events),
      cmocka_unit_test(notification_object),
  };
  proto_log_set_level(PROTO_LOG_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
