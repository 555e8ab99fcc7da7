/* test_nest.c: libvalid's nested field errors (valid_verrs_nest): the errors
 * of an array element, found with the same readers as the top level, named
 * by their path ("items[1].price"), cut on a UTF-8 boundary to fit, bounded
 * by VALID_VERR_MAX, and rendered by valid_error_object() like any other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "valid/valid.h"

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j)
    fail_msg("bad test JSON: %s: %s", text, e.text);
  return j;
}

/* Entry i of errs is field (exact) with message. */
static void assert_verr(const valid_verrs_t *errs, size_t i, const char *field,
                        const char *message) {
  assert_true(i < errs->n);
  const valid_verr_t *e = &errs->e[i];
  assert_int_equal(e->field_len, strlen(field));
  assert_memory_equal(e->field, field, e->field_len);
  assert_string_equal(e->message, message);
}

static void nest_prefixes_each_field_in_order(void **state) {
  (void)state;
  static const char *const allowed[] = {"productId", NULL};
  json_t *item = parse("{\"productId\":\"\",\"color\":\"red\"}");
  valid_verrs_t errs, inner;
  const char *id = NULL;
  size_t len = 0;
  assert_true(valid_begin(item, &errs)); /* a top-level error first */
  valid_verr_add_static(&errs, "userId", VALID_MSG_REQUIRED);
  inner.n = 0;
  assert_false(valid_check_id(item, "productId", 8, "too long", &id, &len, &inner));
  valid_reject_unknown(item, allowed, &inner);
  valid_verrs_nest(&errs, "items[1].", &inner);
  assert_int_equal(errs.n, 3);
  assert_verr(&errs, 0, "userId", VALID_MSG_REQUIRED);
  assert_verr(&errs, 1, "items[1].productId", VALID_MSG_EMPTY);
  assert_verr(&errs, 2, "items[1].color", VALID_MSG_NOT_ALLOWED);

  json_t *err = valid_error_object(&errs);
  assert_non_null(err);
  assert_string_equal(json_string_value(json_object_get(err, "message")),
                      "userId is required; items[1].productId must not be empty; "
                      "items[1].color is not allowed");
  json_t *d = json_array_get(json_object_get(err, "details"), 2);
  assert_string_equal(json_string_value(json_object_get(d, "field")), "items[1].color");
  json_decref(err);
  json_decref(item);
}

static void nest_an_element_itself(void **state) {
  (void)state;
  valid_verrs_t errs = {0}, inner = {0};
  /* "items[2] must be an object": the element, not a field of it. */
  valid_verr_add(&inner, "", 0, VALID_MSG_OBJECT);
  valid_verrs_nest(&errs, "items[2]", &inner);
  assert_int_equal(errs.n, 1);
  assert_verr(&errs, 0, "items[2]", VALID_MSG_OBJECT);
}

static void nest_is_bounded_and_cut_on_a_character(void **state) {
  (void)state;
  valid_verrs_t errs = {0}, inner = {0};
  char prefix[VALID_VERR_NAME_MAX_BYTES + 8];
  /* A prefix that leaves room for "ab" and half of an "é". */
  memset(prefix, 'p', VALID_VERR_NAME_MAX_BYTES - 4);
  prefix[VALID_VERR_NAME_MAX_BYTES - 4] = '\0';
  valid_verr_add(&inner, "ab\xc3\xa9z", 5, VALID_MSG_REQUIRED);
  valid_verrs_nest(&errs, prefix, &inner);
  assert_int_equal(errs.n, 1);
  assert_int_equal(errs.e[0].field_len, VALID_VERR_NAME_MAX_BYTES - 2); /* no half é */
  assert_memory_equal(errs.e[0].field + VALID_VERR_NAME_MAX_BYTES - 4, "ab", 2);

  /* Beyond VALID_VERR_MAX the rest is dropped, as valid_verr_add does. */
  for (size_t i = 0; i < VALID_VERR_MAX; i++)
    valid_verr_add_static(&inner, "x", VALID_MSG_REQUIRED);
  valid_verrs_nest(&errs, "items[0].", &inner);
  assert_int_equal(errs.n, VALID_VERR_MAX);
  assert_verr(&errs, 1, "items[0].ab\xc3\xa9z", VALID_MSG_REQUIRED);
  assert_verr(&errs, VALID_VERR_MAX - 1, "items[0].x", VALID_MSG_REQUIRED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(nest_prefixes_each_field_in_order),
      cmocka_unit_test(nest_an_element_itself),
      cmocka_unit_test(nest_is_bounded_and_cut_on_a_character),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
