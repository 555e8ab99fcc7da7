/* test_request_id.c: X-Request-Id sanitising and generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "request_id.h"

static void test_valid(void **state) {
  char max[GW_REQUEST_ID_MAX_CHARS + 1];
  (void)state;
  memset(max, 'a', GW_REQUEST_ID_MAX_CHARS);
  max[GW_REQUEST_ID_MAX_CHARS] = '\0';
  assert_true(gw_request_id_valid("a"));
  assert_true(gw_request_id_valid("req_0123abcdef"));
  assert_true(gw_request_id_valid("ABCxyz-._:09"));
  assert_true(gw_request_id_valid("550e8400-e29b-41d4-a716-446655440000"));
  assert_true(gw_request_id_valid(max));
}

static void test_invalid(void **state) {
  char over[GW_REQUEST_ID_MAX_CHARS + 2];
  (void)state;
  memset(over, 'a', GW_REQUEST_ID_MAX_CHARS + 1);
  over[GW_REQUEST_ID_MAX_CHARS + 1] = '\0';
  assert_false(gw_request_id_valid(NULL));
  assert_false(gw_request_id_valid(""));
  assert_false(gw_request_id_valid(over));
  const char *bad[] = {"a b", "a/b", "a\"b", "a\\b", "a\nb", "a\rb", "a\tb", "caf\xc3\xa9",
                       "a;b", "a,b", "a=b", "<script>", "a%20b", "{\"x\":1}", " a", "a "};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_false(gw_request_id_valid(bad[i]));
}

static void test_pick_keeps_sane_header(void **state) {
  gw_request_id_gen_t gen;
  char out[GW_REQUEST_ID_SIZE];
  char max[GW_REQUEST_ID_MAX_CHARS + 1];
  (void)state;
  assert_int_equal(gw_request_id_gen_init(&gen), 0);
  assert_int_equal(gw_request_id_pick(&gen, "client-42", out), 1);
  assert_string_equal(out, "client-42");
  memset(max, 'Z', GW_REQUEST_ID_MAX_CHARS);
  max[GW_REQUEST_ID_MAX_CHARS] = '\0';
  assert_int_equal(gw_request_id_pick(&gen, max, out), 1);
  assert_string_equal(out, max);
}

static void assert_generated(const char *id) {
  assert_int_equal(strlen(id), 4 + 32);
  assert_memory_equal(id, "req_", 4);
  for (size_t i = 4; i < 36; i++)
    assert_non_null(strchr("0123456789abcdef", id[i]));
  assert_true(gw_request_id_valid(id));
}

static void test_pick_replaces_bad_header(void **state) {
  gw_request_id_gen_t gen;
  char out[GW_REQUEST_ID_SIZE];
  char over[GW_REQUEST_ID_MAX_CHARS + 2];
  (void)state;
  assert_int_equal(gw_request_id_gen_init(&gen), 0);
  memset(over, 'a', GW_REQUEST_ID_MAX_CHARS + 1);
  over[GW_REQUEST_ID_MAX_CHARS + 1] = '\0';
  const char *bad[] = {NULL, "", "has space", "new\nline", over};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(gw_request_id_pick(&gen, bad[i], out), 0);
    assert_generated(out);
  }
}

static int cmp_id(const void *a, const void *b) {
  return strcmp(a, b);
}

#define N_IDS 20000

static void test_generated_unique(void **state) {
  gw_request_id_gen_t gen, gen2;
  (void)state;
  char (*ids)[GW_REQUEST_ID_SIZE] = calloc(N_IDS + 1, sizeof(*ids));
  assert_non_null(ids);
  assert_int_equal(gw_request_id_gen_init(&gen), 0);
  for (size_t i = 0; i < N_IDS; i++) {
    gw_request_id_next(&gen, ids[i]);
    assert_generated(ids[i]);
  }
  /* another process (another key) does not repeat the first one's ids */
  assert_int_equal(gw_request_id_gen_init(&gen2), 0);
  gw_request_id_next(&gen2, ids[N_IDS]);
  qsort(ids, N_IDS + 1, sizeof(*ids), cmp_id);
  for (size_t i = 1; i < N_IDS + 1; i++)
    assert_string_not_equal(ids[i - 1], ids[i]);
  free(ids);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_pick_keeps_sane_header),
      cmocka_unit_test(test_pick_replaces_bad_header),
      cmocka_unit_test(test_generated_unique),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
