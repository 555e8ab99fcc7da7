/* test_upstreams.c: the upstream registry: every service the routes name has
 * a row, with its host/port variables and default port, and configuration
 * reads them from the environment (and refuses an unusable host). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "routes.h"
#include "upstreams.h"

static const gw_upstream_spec_t *spec_named(const char *name) {
  size_t n;
  const gw_upstream_spec_t *s = gw_upstream_specs(&n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].name, name) == 0)
      return &s[i];
  return NULL;
}

static void test_inventory_row(void **state) {
  (void)state;
  const gw_upstream_spec_t *s = spec_named("inventory");
  assert_non_null(s);
  assert_string_equal(s->host_env, "INVENTORY_SERVICE_HOST");
  assert_string_equal(s->port_env, "INVENTORY_SERVICE_PORT");
  assert_int_equal(s->default_port, 3005);
}

/* A route naming an upstream with no row would answer 503 for ever. */
static void test_every_route_has_its_upstream(void **state) {
  size_t n;
  (void)state;
  const gw_route_t *r = gw_routes(&n);
  for (size_t i = 0; i < n; i++) {
    if (r[i].action != GW_ACTION_RPC)
      continue;
    if (!spec_named(r[i].upstream))
      fail_msg("route %s names upstream \"%s\", which has no row", r[i].path, r[i].upstream);
  }
}

static void test_config_reads_inventory_env(void **state) {
  gw_upstreams_t u;
  (void)state;
  assert_int_equal(setenv("INVENTORY_SERVICE_HOST", "inv.example", 1), 0);
  assert_int_equal(setenv("INVENTORY_SERVICE_PORT", "4005", 1), 0);
  assert_int_equal(gw_upstreams_config(&u), 0);
  const gw_upstream_t *inv = NULL;
  for (size_t i = 0; i < u.count; i++)
    if (strcmp(u.items[i].spec->name, "inventory") == 0)
      inv = &u.items[i];
  assert_non_null(inv);
  assert_string_equal(inv->host, "inv.example");
  assert_int_equal(inv->port, 4005);
  assert_null(inv->cli);
  /* unset: the defaults */
  assert_int_equal(unsetenv("INVENTORY_SERVICE_HOST"), 0);
  assert_int_equal(unsetenv("INVENTORY_SERVICE_PORT"), 0);
  assert_int_equal(gw_upstreams_config(&u), 0);
  for (size_t i = 0; i < u.count; i++)
    if (strcmp(u.items[i].spec->name, "inventory") == 0) {
      assert_string_equal(u.items[i].host, "127.0.0.1");
      assert_int_equal(u.items[i].port, 3005);
    }
  /* checked at start, as the others are */
  assert_int_equal(setenv("INVENTORY_SERVICE_HOST", "a,b", 1), 0);
  assert_int_not_equal(gw_upstreams_config(&u), 0);
  assert_int_equal(unsetenv("INVENTORY_SERVICE_HOST"), 0);
  assert_int_equal(setenv("INVENTORY_SERVICE_PORT", "70000", 1), 0);
  assert_int_not_equal(gw_upstreams_config(&u), 0);
  assert_int_equal(unsetenv("INVENTORY_SERVICE_PORT"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inventory_row),
      cmocka_unit_test(test_every_route_has_its_upstream),
      cmocka_unit_test(test_config_reads_inventory_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
