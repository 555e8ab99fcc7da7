/* test_validate.c: order request validation (validate.c): create_order's
 * limits (item count, productId, quantity, price, currency, paymentMethod),
 * exact totals and overflow, unknown fields named with their path, and the
 * get_order / get_orders / update_order_status inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "order.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (!j)
    fail_msg("bad test JSON: %s: %s", text, e.text);
  return j;
}

/* A valid create_order body with n items of (quantity, price). */
static json_t *body(size_t n, json_int_t quantity, json_int_t price) {
  json_t *items = json_array();
  for (size_t i = 0; i < n; i++) {
    char pid[32];
    snprintf(pid, sizeof(pid), "prod-%zu", i);
    json_array_append_new(items, json_pack("{s:s, s:I, s:I}", "productId", pid, "quantity",
                                           quantity, "price", price));
  }
  return json_pack("{s:s, s:o, s:s}", "userId", "user_1", "items", items, "paymentMethod",
                   "tok_visa");
}

static int has_error(const valid_verrs_t *errs, const char *field, const char *msg_part) {
  for (size_t i = 0; i < errs->n && i < VALID_VERR_MAX; i++)
    if (errs->e[i].field_len == strlen(field) &&
        memcmp(errs->e[i].field, field, errs->e[i].field_len) == 0 &&
        (!msg_part || strstr(errs->e[i].message, msg_part)))
      return 1;
  return 0;
}

static void expect_error(const json_t *data, const char *field, const char *msg_part) {
  order_create_input_t in;
  valid_verrs_t errs;
  assert_int_equal(order_validate_create(data, &in, &errs), -1);
  if (!has_error(&errs, field, msg_part)) {
    for (size_t i = 0; i < errs.n; i++)
      print_message("  got: %.*s %s\n", (int)errs.e[i].field_len, errs.e[i].field,
                    errs.e[i].message);
    fail_msg("no error for field '%s' (%s)", field, msg_part ? msg_part : "any");
  }
}

static order_create_input_t *valid(const json_t *data) {
  static order_create_input_t in;
  valid_verrs_t errs;
  if (order_validate_create(data, &in, &errs) != 0)
    fail_msg("rejected: %.*s %s", (int)errs.e[0].field_len, errs.e[0].field, errs.e[0].message);
  return &in;
}

/* --- create_order ------------------------------------------------------------ */

static void test_create_valid_and_defaults(void **state) {
  (void)state;
  json_t *d = parse("{\"userId\":\"user_1\",\"paymentMethod\":\"tok_visa\",\"items\":["
                    "{\"productId\":\"p1\",\"quantity\":2,\"price\":1999},"
                    "{\"productId\":\"p2\",\"quantity\":1,\"price\":0}]}");
  order_create_input_t *in = valid(d);
  assert_int_equal(in->n_items, 2);
  assert_int_equal(in->total, 3998);
  assert_string_equal(in->currency, "USD");
  assert_int_equal(in->user_id_len, 6);
  assert_memory_equal(in->user_id, "user_1", 6);
  assert_memory_equal(in->items[1].product_id, "p2", 2);
  assert_int_equal(in->items[0].quantity, 2);
  assert_int_equal(in->items[0].price, 1999);
  json_decref(d);

  d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\",\"currency\":\"EUR\","
            "\"items\":[{\"productId\":\"p\",\"quantity\":3.0,\"price\":1e3}]}");
  in = valid(d);
  assert_string_equal(in->currency, "EUR");
  assert_int_equal(in->total, 3000); /* integral numbers are integers (JavaScript) */
  json_decref(d);

  d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\",\"currency\":null,"
            "\"items\":[{\"productId\":\"p\",\"quantity\":1,\"price\":5}]}");
  assert_string_equal(valid(d)->currency, "USD");
  json_decref(d);
}

static void test_create_item_count_limits(void **state) {
  (void)state;
  json_t *d = body(ORDER_ITEMS_MAX, 1, 1);
  assert_int_equal(valid(d)->n_items, ORDER_ITEMS_MAX);
  json_decref(d);
  d = body(ORDER_ITEMS_MAX + 1, 1, 1);
  expect_error(d, "items", "1 to 100 items");
  json_decref(d);
  d = body(0, 1, 1);
  expect_error(d, "items", "1 to 100 items");
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\",\"items\":{}}");
  expect_error(d, "items", "array");
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\"}");
  expect_error(d, "items", "is required");
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\",\"items\":[3]}");
  expect_error(d, "items[0]", "object");
  json_decref(d);
}

static void test_create_quantity_and_price_limits(void **state) {
  (void)state;
  static const struct {
    const char *item;
    const char *field;
  } bad[] = {
      {"{\"productId\":\"p\",\"quantity\":0,\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":10001,\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":-1,\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":1.5,\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":\"2\",\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":true,\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"price\":1}", "items[0].quantity"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":-1}", "items[0].price"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":1000000001}", "items[0].price"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":19.99}", "items[0].price"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":1e300}", "items[0].price"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":\"100\"}", "items[0].price"},
      {"{\"productId\":\"p\",\"quantity\":1,\"price\":9223372036854775807}", "items[0].price"},
      {"{\"productId\":\"\",\"quantity\":1,\"price\":1}", "items[0].productId"},
      {"{\"productId\":7,\"quantity\":1,\"price\":1}", "items[0].productId"},
      {"{\"productId\":\"a\\u0000b\",\"quantity\":1,\"price\":1}", "items[0].productId"},
      {"{\"productId\":\"a\\nb\",\"quantity\":1,\"price\":1}", "items[0].productId"},
      {"{\"quantity\":1,\"price\":1}", "items[0].productId"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[512];
    snprintf(text, sizeof(text), "{\"userId\":\"u\",\"paymentMethod\":\"m\",\"items\":[%s]}",
             bad[i].item);
    json_t *d = parse(text);
    expect_error(d, bad[i].field, NULL);
    json_decref(d);
  }
  /* price is optional (the catalogue prices the order): absent or null is
   * ORDER_PRICE_UNSET and counts nothing towards the client's total */
  json_t *d = parse("{\"userId\":\"u\",\"paymentMethod\":\"m\",\"items\":["
                    "{\"productId\":\"p\",\"quantity\":2},"
                    "{\"productId\":\"q\",\"quantity\":1,\"price\":null},"
                    "{\"productId\":\"r\",\"quantity\":1,\"price\":7}]}");
  const order_create_input_t *in = valid(d);
  assert_int_equal(in->items[0].price, ORDER_PRICE_UNSET);
  assert_int_equal(in->items[1].price, ORDER_PRICE_UNSET);
  assert_int_equal(in->items[2].price, 7);
  assert_int_equal(in->total, 7);
  json_decref(d);
  /* boundaries accepted */
  d = body(1, ORDER_QUANTITY_MAX, ORDER_PRICE_MAX);
  assert_int_equal(valid(d)->total, (int64_t)ORDER_QUANTITY_MAX * ORDER_PRICE_MAX);
  json_decref(d);
  d = body(1, ORDER_QUANTITY_MIN, 0);
  assert_int_equal(valid(d)->total, 0);
  json_decref(d);
}

static void test_create_product_id_length(void **state) {
  (void)state;
  char pid[ORDER_ID_MAX_BYTES + 2];
  memset(pid, 'p', sizeof(pid) - 1);
  pid[sizeof(pid) - 1] = '\0'; /* 129 bytes */
  json_t *d = body(1, 1, 1);
  json_t *item = json_array_get(json_object_get(d, "items"), 0);
  json_object_set_new(item, "productId", json_string(pid));
  expect_error(d, "items[0].productId", "at most 128 bytes");
  pid[ORDER_ID_MAX_BYTES] = '\0'; /* 128 bytes: fine */
  json_object_set_new(item, "productId", json_string(pid));
  assert_int_equal(valid(d)->items[0].product_id_len, ORDER_ID_MAX_BYTES);
  json_decref(d);
}

static void test_create_total_is_exact_at_the_largest_order(void **state) {
  (void)state;
  /* 100 items of 10000 x 10^9 = 10^15 minor units: exact in int64 and in a
   * JavaScript number. */
  json_t *d = body(ORDER_ITEMS_MAX, ORDER_QUANTITY_MAX, ORDER_PRICE_MAX);
  assert_int_equal(valid(d)->total, 1000000000000000LL);
  json_decref(d);
}

static void test_total_add_overflow(void **state) {
  (void)state;
  int64_t acc = 0;
  assert_int_equal(order_total_add(&acc, 2, 1999), 0);
  assert_int_equal(acc, 3998);
  acc = ORDER_TOTAL_MAX - 10;
  assert_int_equal(order_total_add(&acc, 2, 5), 0);
  assert_int_equal(acc, ORDER_TOTAL_MAX);
  assert_int_equal(order_total_add(&acc, 1, 1), -1);
  assert_int_equal(acc, ORDER_TOTAL_MAX); /* unchanged on failure */
  assert_int_equal(order_total_add(&acc, 0, INT64_MAX), 0);
  assert_int_equal(order_total_add(&acc, INT64_MAX, 0), 0);
  acc = 0;
  assert_int_equal(order_total_add(&acc, INT64_MAX, 2), -1);  /* the product overflows */
  assert_int_equal(order_total_add(&acc, 3037000500LL, 3037000500LL), -1);
  assert_int_equal(order_total_add(&acc, -1, 5), -1);
  assert_int_equal(order_total_add(&acc, 5, -1), -1);
  assert_int_equal(acc, 0);
  acc = -1;
  assert_int_equal(order_total_add(&acc, 1, 1), -1);
}

static void test_create_currency_and_payment_method(void **state) {
  (void)state;
  static const char *const bad_currency[] = {"\"usd\"", "\"US\"", "\"USDX\"", "\"U1D\"", "5",
                                             "\"\"", "\"ÉUR\""};
  for (size_t i = 0; i < sizeof(bad_currency) / sizeof(bad_currency[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text),
             "{\"userId\":\"u\",\"paymentMethod\":\"m\",\"currency\":%s,"
             "\"items\":[{\"productId\":\"p\",\"quantity\":1,\"price\":1}]}",
             bad_currency[i]);
    json_t *d = parse(text);
    expect_error(d, "currency", "three-letter");
    json_decref(d);
  }
  json_t *d = body(1, 1, 1);
  json_object_set_new(d, "paymentMethod", json_string(""));
  expect_error(d, "paymentMethod", "must not be empty");
  json_object_set_new(d, "paymentMethod", json_integer(4));
  expect_error(d, "paymentMethod", "must be a string");
  json_object_del(d, "paymentMethod");
  expect_error(d, "paymentMethod", "is required");
  char long_method[ORDER_PAYMENT_METHOD_MAX_BYTES + 2];
  memset(long_method, 'm', sizeof(long_method) - 1);
  long_method[sizeof(long_method) - 1] = '\0';
  json_object_set_new(d, "paymentMethod", json_string(long_method));
  expect_error(d, "paymentMethod", "at most");
  json_decref(d);
}

static void test_create_user_id(void **state) {
  (void)state;
  json_t *d = body(1, 1, 1);
  json_object_del(d, "userId");
  expect_error(d, "userId", "is required");
  json_object_set_new(d, "userId", json_string(""));
  expect_error(d, "userId", "must not be empty");
  json_object_set_new(d, "userId", json_true());
  expect_error(d, "userId", "must be a string");
  json_decref(d);
  d = parse("[]");
  expect_error(d, "data", "object");
  json_decref(d);
}

static void test_create_unknown_fields_named(void **state) {
  (void)state;
  json_t *d = body(2, 1, 1);
  json_object_set_new(d, "discount", json_integer(5));
  json_object_set_new(json_array_get(json_object_get(d, "items"), 1), "color",
                      json_string("red"));
  expect_error(d, "discount", "is not allowed");
  expect_error(d, "items[1].color", "is not allowed");
  json_decref(d);
  /* A hostile key is cut to 64 bytes on a character boundary. */
  char key[200];
  memset(key, 'k', 63);
  strcpy(key + 63, "é and more text that goes on and on and on and on and on");
  d = body(1, 1, 1);
  json_object_set_new(d, key, json_null());
  order_create_input_t in;
  valid_verrs_t errs;
  assert_int_equal(order_validate_create(d, &in, &errs), -1);
  assert_int_equal(errs.n, 1);
  assert_int_equal(errs.e[0].field_len, 63); /* é would straddle byte 64 */
  json_decref(d);
}

static void test_create_error_count_bounded(void **state) {
  (void)state;
  json_t *d = body(50, 0, -1); /* 100 bad fields */
  order_create_input_t in;
  valid_verrs_t errs;
  assert_int_equal(order_validate_create(d, &in, &errs), -1);
  assert_int_equal(errs.n, VALID_VERR_MAX);
  json_t *err = valid_error_object(&errs);
  assert_non_null(err);
  assert_int_equal(json_integer_value(json_object_get(err, "statusCode")), 400);
  assert_string_equal(json_string_value(json_object_get(err, "code")), "VALIDATION_FAILED");
  assert_non_null(strstr(json_string_value(json_object_get(err, "message")),
                         "items[0].quantity must be an integer from 1 to 10000"));
  assert_int_equal(json_array_size(json_object_get(err, "details")), VALID_VERR_MAX);
  json_decref(err);
  json_decref(d);
}

/* --- the other requests --------------------------------------------------------- */

static void test_status_input(void **state) {
  (void)state;
  order_status_input_t in;
  valid_verrs_t errs;
  json_t *d = parse("{\"id\":\"order_1\",\"status\":\"shipped\"}");
  assert_int_equal(order_validate_status(d, &in, &errs), 0);
  assert_int_equal(in.status, ORDER_SHIPPED);
  json_decref(d);
  d = parse("{\"id\":\"order_1\",\"status\":\"lost\"}");
  assert_int_equal(order_validate_status(d, &in, &errs), -1);
  assert_string_equal(errs.e[0].field, "status");
  json_decref(d);
  d = parse("{\"id\":\"order_1\",\"status\":\"SHIPPED\",\"note\":1}");
  assert_int_equal(order_validate_status(d, &in, &errs), -1);
  assert_int_equal(errs.n, 2);
  assert_string_equal(errs.e[1].field, "note");
  json_decref(d);
  d = parse("{\"status\":\"shipped\"}");
  assert_int_equal(order_validate_status(d, &in, &errs), -1);
  assert_string_equal(errs.e[0].field, "id");
  json_decref(d);
}

static void test_id_input(void **state) {
  (void)state;
  order_id_input_t in;
  valid_verrs_t errs;
  json_t *d = parse("{\"id\":\"order_1\"}");
  assert_int_equal(order_validate_id(d, &in, &errs), 0);
  assert_int_equal(in.id_len, 7);
  json_decref(d);
  d = parse("{\"id\":\"\"}");
  assert_int_equal(order_validate_id(d, &in, &errs), -1);
  json_decref(d);
  d = parse("null");
  assert_int_equal(order_validate_id(d, &in, &errs), -1);
  assert_string_equal(errs.e[0].field, "data");
  json_decref(d);
}

static void test_list_input(void **state) {
  (void)state;
  order_list_input_t in;
  valid_verrs_t errs;
  json_t *d = parse("{\"userId\":\"u\"}");
  assert_int_equal(order_validate_list(d, &in, &errs), 0);
  assert_int_equal(in.page, ORDER_PAGE_DEFAULT);
  assert_int_equal(in.limit, ORDER_LIMIT_DEFAULT);
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"page\":\"3\",\"limit\":1000}");
  assert_int_equal(order_validate_list(d, &in, &errs), 0);
  assert_int_equal(in.page, 3);
  assert_int_equal(in.limit, ORDER_LIMIT_MAX); /* capped */
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"page\":0,\"limit\":-1}");
  assert_int_equal(order_validate_list(d, &in, &errs), -1);
  assert_int_equal(errs.n, 2);
  json_decref(d);
  d = parse("{\"page\":1}");
  assert_int_equal(order_validate_list(d, &in, &errs), -1);
  assert_string_equal(errs.e[0].field, "userId");
  json_decref(d);
  d = parse("{\"userId\":\"u\",\"page\":1e30}");
  assert_int_equal(order_validate_list(d, &in, &errs), -1);
  json_decref(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_valid_and_defaults),
      cmocka_unit_test(test_create_item_count_limits),
      cmocka_unit_test(test_create_quantity_and_price_limits),
      cmocka_unit_test(test_create_product_id_length),
      cmocka_unit_test(test_create_total_is_exact_at_the_largest_order),
      cmocka_unit_test(test_total_add_overflow),
      cmocka_unit_test(test_create_currency_and_payment_method),
      cmocka_unit_test(test_create_user_id),
      cmocka_unit_test(test_create_unknown_fields_named),
      cmocka_unit_test(test_create_error_count_bounded),
      cmocka_unit_test(test_status_input),
      cmocka_unit_test(test_id_input),
      cmocka_unit_test(test_list_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
