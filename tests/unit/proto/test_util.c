/* test_util.c: ids are prefix + 32 lowercase hex digits, the first 12 the
 * Unix milliseconds of their making (so ids sort by creation time across
 * milliseconds), the rest random and never repeated; a too-small buffer is
 * refused; ISO times have JavaScript's shape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "proto/error.h"
#include "proto/util.h"

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t id_ms(const char *hex12) {
  char buf[13];
  memcpy(buf, hex12, 12);
  buf[12] = '\0';
  return strtoull(buf, NULL, 16);
}

static void test_id_shape_and_time(void **state) {
  (void)state;
  char id[PROTO_ID_MAX];
  uint64_t before = wall_ms();
  assert_int_equal(proto_random_id("order_", id, sizeof(id)), 0);
  uint64_t after = wall_ms();
  assert_int_equal(strlen(id), strlen("order_") + 32);
  assert_memory_equal(id, "order_", 6);
  for (const char *c = id + 6; *c; c++)
    assert_non_null(strchr("0123456789abcdef", *c));
  uint64_t ms = id_ms(id + 6);
  assert_true(ms >= before && ms <= after);
}

static void test_ids_sort_by_time_and_differ(void **state) {
  (void)state;
  char a[PROTO_ID_MAX], b[PROTO_ID_MAX], c[PROTO_ID_MAX];
  assert_int_equal(proto_random_id("x_", a, sizeof(a)), 0);
  assert_int_equal(proto_random_id("x_", b, sizeof(b)), 0);
  assert_string_not_equal(a, b); /* same millisecond or not: 80 random bits */
  /* Wait for the clock to pass a's millisecond (a condition, not a delay). */
  uint64_t deadline = wall_ms() + 2000;
  while (wall_ms() <= id_ms(a + 2))
    assert_true(wall_ms() < deadline);
  assert_int_equal(proto_random_id("x_", c, sizeof(c)), 0);
  assert_true(strcmp(a, c) < 0);
  assert_true(strcmp(b, c) < 0);
}

static void test_random_parts_never_repeat(void **state) {
  (void)state;
  /* Across several refills of the per-thread random pool (25 ids each). */
  enum { N = 120 };
  static char ids[N][PROTO_ID_MAX];
  for (int i = 0; i < N; i++)
    assert_int_equal(proto_random_id("", ids[i], sizeof(ids[i])), 0);
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++)
      assert_string_not_equal(ids[i] + 12, ids[j] + 12); /* the 20 random digits */
}

static void test_id_buffer_too_small(void **state) {
  (void)state;
  char small[8 + 32]; /* "payment_" + 32 needs one more for the NUL */
  assert_int_equal(proto_random_id("payment_", small, sizeof(small)), PROTO_EINVAL);
  char fits[8 + 32 + 1];
  assert_int_equal(proto_random_id("payment_", fits, sizeof(fits)), 0);
}

static void test_iso_time_shape(void **state) {
  (void)state;
  char t[PROTO_ISO_TIME_LEN];
  proto_time_iso(t);
  assert_int_equal(strlen(t), 24);
  assert_int_equal(t[4], '-');
  assert_int_equal(t[10], 'T');
  assert_int_equal(t[19], '.');
  assert_int_equal(t[23], 'Z');
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_shape_and_time),
      cmocka_unit_test(test_ids_sort_by_time_and_differ),
      cmocka_unit_test(test_random_parts_never_repeat),
      cmocka_unit_test(test_id_buffer_too_small),
      cmocka_unit_test(test_iso_time_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
