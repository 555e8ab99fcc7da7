/* test_currency.c: valid_opt_currency(): absent or null keeps the caller's
 * default, a 3-letter A-Z string is copied with its NUL, anything else (a
 * number, lower case, the wrong length, an embedded NUL) records the
 * caller's message for the field and leaves the default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "valid/valid.h"

#define MSG "must be a currency"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_ALLOW_NUL, &e);
  if (!j)
    fail_msg("bad test JSON: %s: %s", text, e.text);
  return j;
}

static void absent_or_null_keeps_default(void **state) {
  (void)state;
  static const char *const cases[] = {"{}", "{\"currency\":null}"};
  for (size_t i = 0; i < 2; i++) {
    json_t *d = parse(cases[i]);
    valid_verrs_t errs = {0};
    char cur[4] = "USD";
    assert_true(valid_opt_currency(d, "currency", MSG, cur, &errs));
    assert_int_equal(errs.n, 0);
    assert_string_equal(cur, "USD");
    json_decref(d);
  }
}

static void valid_code_is_copied(void **state) {
  (void)state;
  json_t *d = parse("{\"currency\":\"EUR\"}");
  valid_verrs_t errs = {0};
  char cur[4] = "USD";
  assert_true(valid_opt_currency(d, "currency", MSG, cur, &errs));
  assert_int_equal(errs.n, 0);
  assert_string_equal(cur, "EUR");
  json_decref(d);
}

static void anything_else_is_an_error(void **state) {
  (void)state;
  static const char *const cases[] = {"{\"c\":840}", "{\"c\":\"eur\"}", "{\"c\":\"EURO\"}",
                                      "{\"c\":\"EU\"}", "{\"c\":\"E\\u0000R\"}", "{\"c\":[]}"};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *d = parse(cases[i]);
    valid_verrs_t errs = {0};
    char cur[4] = "USD";
    assert_false(valid_opt_currency(d, "c", MSG, cur, &errs));
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.e[0].field_len, 1);
    assert_memory_equal(errs.e[0].field, "c", 1);
    assert_string_equal(errs.e[0].message, MSG);
    assert_string_equal(cur, "USD");
    json_decref(d);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(absent_or_null_keeps_default),
      cmocka_unit_test(valid_code_is_copied),
      cmocka_unit_test(anything_else_is_an_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
