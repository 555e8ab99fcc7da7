/* test_deadline.c: X-Request-Timeout parsing: units, caps, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "deadline.h"

static uint32_t parsed(const char *h, uint32_t cap) {
  uint32_t out = 12345;
  assert_int_equal(gw_deadline_parse(h, cap, &out), 0);
  return out;
}

static void test_units(void **state) {
  (void)state;
  assert_int_equal(parsed("250ms", 5000), 250);
  assert_int_equal(parsed("250", 5000), 250);
  assert_int_equal(parsed("2s", 5000), 2000);
  assert_int_equal(parsed(" 1ms ", 5000), 1);
  assert_int_equal(parsed("\t30ms", 5000), 30);
}

static void test_capped_not_refused(void **state) {
  (void)state;
  assert_int_equal(parsed("60s", 5000), 5000);
  assert_int_equal(parsed("5001ms", 5000), 5000);
  assert_int_equal(parsed("99999999999999999999999999s", 5000), 5000); /* no overflow */
}

static void test_refusals(void **state) {
  (void)state;
  static const char *const bad[] = {"", " ", "0", "0ms", "-5", "1.5s", "10m", "abc",
                                    "5 ms", "ms", "5msx", "5sms", "+5"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint32_t out = 7;
    if (gw_deadline_parse(bad[i], 5000, &out) != -1)
      fail_msg("'%s' was accepted as %u", bad[i], out);
    assert_int_equal(out, 7); /* untouched */
  }
  uint32_t out;
  assert_int_equal(gw_deadline_parse(NULL, 5000, &out), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_units),
      cmocka_unit_test(test_capped_not_refused),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
