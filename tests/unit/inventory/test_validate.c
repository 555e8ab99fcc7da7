/* test_validate.c: the inventory validators (validate.c): product fields and
 * defaults, ids, page/limit, restock, and the reserve item set (canonical
 * order, summed repeats, per-item field names, NestJS's item price allowed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "inventory.h"

static json_t *parse(const char *text) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  assert_non_null(j);
  return j;
}

/* errs holds exactly the "field message" pairs in want, in order. */
static void assert_errs(const inventory_verrs_t *errs, const char *const *want, size_t n) {
  assert_int_equal(errs->n, n);
  for (size_t i = 0; i < n; i++) {
    char got[256];
    snprintf(got, sizeof(got), "%.*s %s", (int)errs->e[i].field_len, errs->e[i].field,
             errs->e[i].message);
    assert_string_equal(got, want[i]);
  }
}

static void product_defaults_and_trim(void **state) {
  (void)state;
  inventory_product_input_t in;
  inventory_verrs_t errs;
  json_t *d = parse("{\"name\":\"  Keyboard \",\"price\":1999}");
  assert_int_equal(inventory_validate_product(d, &in, &errs), 0);
  assert_null(in.id);
  assert_int_equal(in.name_len, 8);
  assert_memory_equal(in.name, "Keyboard", 8);
  assert_int_equal(in.price, 1999);
  assert_string_equal(in.currency, "USD");
  assert_int_equal(in.stock, 0);
  json_decref(d);

  d = parse("{\"id\":\"p1\",\"name\":\"K\",\"price\":2.0,\"currency\":\"EUR\",\"stock\":10}");
  assert_int_equal(inventory_validate_product(d, &in, &errs), 0);
  assert_int_equal(in.id_len, 2);
  assert_string_equal(in.currency, "EUR");
  assert_int_equal(in.price, 2);
  assert_int_equal(in.stock, 10);
  json_decref(d);
}

static void product_errors(void **state) {
  (void)state;
  inventory_product_input_t in;
  inventory_verrs_t errs;
  json_t *d = parse("{\"id\":\"\",\"name\":\"   \",\"price\":\"5\",\"currency\":\"usd\","
                    "\"stock\":-1,\"colour\":\"red\"}");
  assert_int_equal(inventory_validate_product(d, &in, &errs), -1);
  static const char *const want[] = {
      "id must not be empty",
      "name must not be empty",
      "price must be an integer number of minor units from 0 to 1000000000",
      "currency must be a three-letter uppercase currency code (ISO 4217)",
      "stock must be an integer from 0 to 1000000000",
      "colour is not allowed",
  };
  assert_errs(&errs, want, 6);
  json_decref(d);

  d = parse("{\"price\":1000000001,\"name\":\"a\\u0085b\"}");
  assert_int_equal(inventory_validate_product(d, &in, &errs), -1);
  static const char *const want2[] = {
      "name must not contain control characters",
      "price must be an integer number of minor units from 0 to 1000000000",
  };
  assert_errs(&errs, want2, 2);
  json_decref(d);

  d = parse("[]");
  assert_int_equal(inventory_validate_product(d, &in, &errs), -1);
  static const char *const want3[] = {"data must be an object"};
  assert_errs(&errs, want3, 1);
  json_decref(d);
}

static void ids_list_restock(void **state) {
  (void)state;
  inventory_id_input_t id;
  inventory_list_input_t list;
  inventory_restock_input_t rs;
  inventory_verrs_t errs;
  json_t *d = parse("{\"orderId\":\"o1\"}");
  assert_int_equal(inventory_validate_order_id(d, &id, &errs), 0);
  assert_int_equal(id.id_len, 2);
  assert_int_equal(inventory_validate_id(d, &id, &errs), -1);
  static const char *const want[] = {"id is required", "orderId is not allowed"};
  assert_errs(&errs, want, 2);
  json_decref(d);

  d = parse("null");
  assert_int_equal(inventory_validate_list(d, &list, &errs), 0);
  assert_int_equal(list.page, 1);
  assert_int_equal(list.limit, 10);
  json_decref(d);
  d = parse("{\"page\":\"2\",\"limit\":500}");
  assert_int_equal(inventory_validate_list(d, &list, &errs), 0);
  assert_int_equal(list.page, 2);
  assert_int_equal(list.limit, 100); /* capped */
  json_decref(d);

  d = parse("{\"id\":\"p1\",\"quantity\":0}");
  assert_int_equal(inventory_validate_restock(d, &rs, &errs), -1);
  static const char *const want2[] = {"quantity must be an integer from 1 to 1000000000"};
  assert_errs(&errs, want2, 1);
  json_decref(d);
}

static void reserve_canonical_set(void **state) {
  (void)state;
  inventory_reserve_input_t in;
  inventory_verrs_t errs;
  json_t *d = parse("{\"orderId\":\"o1\",\"items\":["
                    "{\"productId\":\"pb\",\"quantity\":2,\"price\":1999},"
                    "{\"productId\":\"pa\",\"quantity\":1},"
                    "{\"productId\":\"p\",\"quantity\":4},"
                    "{\"productId\":\"pb\",\"quantity\":3}]}");
  assert_int_equal(inventory_validate_reserve(d, &in, &errs), 0);
  assert_int_equal(in.n_items, 3);
  assert_int_equal(in.items[0].product_id_len, 1); /* "p" < "pa" < "pb" */
  assert_memory_equal(in.items[1].product_id, "pa", 2);
  assert_int_equal(in.items[1].quantity, 1);
  assert_memory_equal(in.items[2].product_id, "pb", 2);
  assert_int_equal(in.items[2].quantity, 5); /* 2 + 3 */
  json_decref(d);

  d = parse("{\"orderId\":\"o1\",\"items\":[{\"productId\":\"p\",\"quantity\":10000},"
            "{\"productId\":\"p\",\"quantity\":1}]}");
  assert_int_equal(inventory_validate_reserve(d, &in, &errs), -1);
  static const char *const want[] = {
      "items add up to more than 10000 units of one product"};
  assert_errs(&errs, want, 1);
  json_decref(d);
}

static void reserve_item_errors(void **state) {
  (void)state;
  inventory_reserve_input_t in;
  inventory_verrs_t errs;
  json_t *d = parse("{\"items\":[{\"productId\":\"p\",\"quantity\":1},"
                    "{\"quantity\":1.5,\"size\":\"XL\"}, 7],\"extra\":1}");
  assert_int_equal(inventory_validate_reserve(d, &in, &errs), -1);
  static const char *const want[] = {
      "orderId is required",
      "items[1].productId is required",
      "items[1].quantity must be an integer from 1 to 10000",
      "items[1].size is not allowed",
      "items[2] must be an object",
      "extra is not allowed",
  };
  assert_errs(&errs, want, 6);
  json_decref(d);

  d = parse("{\"orderId\":\"o\",\"items\":[]}");
  assert_int_equal(inventory_validate_reserve(d, &in, &errs), -1);
  static const char *const want2[] = {"items must be an array of 1 to 100 items"};
  assert_errs(&errs, want2, 1);
  json_decref(d);
}

static void prefixed_names_are_cut_on_a_character(void **state) {
  (void)state;
  inventory_verrs_t errs = {0};
  char field[200];
  /* 2-byte characters: a cut in the middle of one must back off. */
  for (size_t i = 0; i < sizeof(field); i += 2) {
    field[i] = (char)0xC3;
    field[i + 1] = (char)0xA9;
  }
  valid_verr_add_prefixed(&errs, "items[0].", field, sizeof(field), "is not allowed");
  assert_int_equal(errs.n, 1);
  assert_true(errs.e[0].field_len <= VALID_VERR_NAME_MAX_BYTES - 1);
  assert_int_equal((errs.e[0].field_len - 9) % 2, 0);
  assert_memory_equal(errs.e[0].field, "items[0].", 9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(product_defaults_and_trim),
      cmocka_unit_test(product_errors),
      cmocka_unit_test(ids_list_restock),
      cmocka_unit_test(reserve_canonical_set),
      cmocka_unit_test(reserve_item_errors),
      cmocka_unit_test(prefixed_names_are_cut_on_a_character),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
