/* test_status.c: the order status machine (status.c): every cell of the
 * table of moves the service may make, the statuses a client may ask for,
 * status names and parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "order.h"

static void test_names_round_trip(void **state) {
  (void)state;
  static const char *const expect[] = {"pending",   "confirmed", "shipped",
                                       "delivered", "cancelled", "compensating"};
  for (int i = 0; i < ORDER_STATUS_COUNT_; i++) {
    assert_string_equal(order_status_name(i), expect[i]);
    assert_int_equal(order_status_parse(expect[i], strlen(expect[i])), i);
  }
  assert_null(order_status_name(-1));
  assert_null(order_status_name(ORDER_STATUS_COUNT_));
}

static void test_parse_is_exact(void **state) {
  (void)state;
  assert_int_equal(order_status_parse("Pending", 7), -1);
  assert_int_equal(order_status_parse("pending ", 8), -1);
  assert_int_equal(order_status_parse("pend", 4), -1);
  assert_int_equal(order_status_parse("", 0), -1);
  assert_int_equal(order_status_parse("refunded", 8), -1);
  /* an embedded NUL must not match a prefix */
  assert_int_equal(order_status_parse("shipped\0x", 9), -1);
}

static void test_transition_table(void **state) {
  (void)state;
  /* The whole table, row by row: from -> {pending, confirmed, shipped,
   * delivered, cancelled, compensating}. A failed saga goes pending ->
   * compensating -> cancelled. */
  static const int expect[ORDER_STATUS_COUNT_][ORDER_STATUS_COUNT_] = {
      [ORDER_PENDING] = {0, 1, 0, 0, 1, 1},
      [ORDER_CONFIRMED] = {0, 0, 1, 0, 1, 0},
      [ORDER_SHIPPED] = {0, 0, 0, 1, 0, 0},
      [ORDER_DELIVERED] = {0, 0, 0, 0, 0, 0},
      [ORDER_CANCELLED] = {0, 0, 0, 0, 0, 0},
      [ORDER_COMPENSATING] = {0, 0, 0, 0, 1, 0},
  };
  for (int from = 0; from < ORDER_STATUS_COUNT_; from++)
    for (int to = 0; to < ORDER_STATUS_COUNT_; to++) {
      if (!!order_transition_allowed(from, to) != expect[from][to])
        fail_msg("%s -> %s: expected %s", order_status_name(from), order_status_name(to),
                 expect[from][to] ? "allowed" : "refused");
    }
}

static void test_requestable_statuses(void **state) {
  (void)state;
  /* A client may ask for shipped, delivered or cancelled; confirmed only
   * the payment sets (through create_order), pending only creation. The
   * table above keeps pending -> confirmed: create_order makes that move. */
  static const int expect[ORDER_STATUS_COUNT_] = {
      [ORDER_PENDING] = 0,  [ORDER_CONFIRMED] = 0, [ORDER_SHIPPED] = 1,
      [ORDER_DELIVERED] = 1, [ORDER_CANCELLED] = 1, [ORDER_COMPENSATING] = 0,
  };
  for (int to = 0; to < ORDER_STATUS_COUNT_; to++)
    if (!!order_status_requestable(to) != expect[to])
      fail_msg("%s: expected %s", order_status_name(to),
               expect[to] ? "requestable" : "not requestable");
  assert_true(order_transition_allowed(ORDER_PENDING, ORDER_CONFIRMED));
  assert_false(order_status_requestable(-1));
  assert_false(order_status_requestable(ORDER_STATUS_COUNT_));
}

static void test_out_of_range_refused(void **state) {
  (void)state;
  assert_false(order_transition_allowed(-1, ORDER_CONFIRMED));
  assert_false(order_transition_allowed(ORDER_PENDING, -1));
  assert_false(order_transition_allowed(ORDER_PENDING, ORDER_STATUS_COUNT_));
  assert_false(order_transition_allowed(ORDER_STATUS_COUNT_, ORDER_PENDING));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_round_trip),
      cmocka_unit_test(test_parse_is_exact),
      cmocka_unit_test(test_transition_table),
      cmocka_unit_test(test_requestable_statuses),
      cmocka_unit_test(test_out_of_range_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
