/* test_config.c: every getter takes its default when the variable is unset or
 * empty, accepts what a daemon can use and refuses the rest with one
 * config_invalid line naming the variable, the value and what is expected:
 * hosts (names, IPv4/IPv6 literals; no lists, spaces, empty labels or
 * over-long names), bind addresses, peer ports, choices and webhook URLs
 * (a password in a URL is never logged). stdout is captured into a file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

#define VAR "NESTC_TEST_SETTING"

typedef struct fx {
  char path[256];
  int saved_stdout;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  assert_non_null(f);
  snprintf(f->path, sizeof(f->path), "%s/config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemp(f->path);
  assert_true(fd >= 0);
  fflush(stdout);
  f->saved_stdout = dup(STDOUT_FILENO);
  assert_true(dup2(fd, STDOUT_FILENO) >= 0);
  close(fd);
  unsetenv("LOG_LEVEL");
  proto_log_init("configtest");
  unsetenv(VAR);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  dup2(f->saved_stdout, STDOUT_FILENO);
  close(f->saved_stdout);
  unlink(f->path);
  free(f);
  unsetenv(VAR);
  return 0;
}

/* The msg of the last config_invalid line logged, into buf ("" if none), and
 * the capture emptied for the next check. */
static const char *last_invalid(fx_t *f, char *buf, size_t size) {
  FILE *in = fopen(f->path, "r");
  char *line = NULL;
  size_t cap = 0;
  assert_non_null(in);
  buf[0] = '\0';
  while (getline(&line, &cap, in) > 0) {
    json_t *o = json_loads(line, 0, NULL);
    if (!o) {
      char copy[256];
      snprintf(copy, sizeof(copy), "%s", line);
      free(line);
      fclose(in);
      fail_msg("not a JSON line: %s", copy);
    }
    const char *ev = json_string_value(json_object_get(o, "event"));
    const char *msg = json_string_value(json_object_get(o, "msg"));
    if (ev && strcmp(ev, "config_invalid") == 0) {
      assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
      snprintf(buf, size, "%s", msg ? msg : "");
    }
    json_decref(o);
  }
  free(line);
  fclose(in);
  /* Empty the capture and rewind stdout, or the next line lands after a hole. */
  assert_int_equal(ftruncate(STDOUT_FILENO, 0), 0);
  assert_int_equal(lseek(STDOUT_FILENO, 0, SEEK_SET), 0);
  return buf;
}

/* A refused value: PROTO_EINVAL, and a line "VAR=<shown>: expected <...>". */
static void assert_refused(fx_t *f, int rc, const char *shown, const char *expected_part) {
  char msg[1024], want[600];
  assert_int_equal(rc, PROTO_EINVAL);
  last_invalid(f, msg, sizeof(msg));
  snprintf(want, sizeof(want), VAR "=%s: expected ", shown);
  if (strncmp(msg, want, strlen(want)) != 0)
    fail_msg("message \"%s\" does not start with \"%s\"", msg, want);
  if (expected_part && !strstr(msg, expected_part))
    fail_msg("message \"%s\" does not say \"%s\"", msg, expected_part);
}

static void assert_nothing_logged(fx_t *f) {
  char msg[1024];
  assert_string_equal(last_invalid(f, msg, sizeof(msg)), "");
}

static void test_host_accepts(void **state) {
  fx_t *f = *state;
  const char *ok[] = {
      "127.0.0.1", "0.0.0.0", "::1", "::", "fe80::1", "2001:db8::8a2e:370:7334",
      "::ffff:10.0.0.1", "localhost", "user", "user-service", "user_service",
      "redis.default.svc.cluster.local", "db.example.", "a", "x1", "1a", "123abc.example",
      "xn--caf-dma.example",
  };
  const char *out = NULL;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(setenv(VAR, ok[i], 1), 0);
    assert_int_equal(proto_config_host(VAR, "127.0.0.1", &out), 0);
    assert_string_equal(out, ok[i]);
  }
  /* unset and empty: the default */
  unsetenv(VAR);
  assert_int_equal(proto_config_host(VAR, "127.0.0.1", &out), 0);
  assert_string_equal(out, "127.0.0.1");
  assert_int_equal(setenv(VAR, "", 1), 0);
  assert_int_equal(proto_config_host(VAR, "dflt", &out), 0);
  assert_string_equal(out, "dflt");
  /* 63-byte labels and a 253-byte name are the limits, not beyond */
  char name[300];
  memset(name, 'a', 63);
  name[63] = '\0';
  assert_true(proto_config_host_valid(name));
  for (size_t i = 0; i < 253; i++)
    name[i] = (i % 64 == 63) ? '.' : 'a';
  name[253] = '\0';
  assert_true(proto_config_host_valid(name));
  assert_nothing_logged(f);
}

static void test_host_refuses(void **state) {
  fx_t *f = *state;
  char name[300];
  const char *bad[] = {
      "127.0.0.1,127.0.0.1", "a,b", "user service", " user", "user ", "a..b", ".a", "..",
      ".", "-a", "a-", "a.-b.c", "caf\xc3\xa9", "a/b", "a:1", "127.0.0.1:3001", "[::1]",
      "10.0.0.256", "1.2.3", "127.1", "999", "a\tb", "a\nb", "http://a", "a@b", "::1::",
      "1::2::3", "a*b",
  };
  const char *out = "untouched";
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv(VAR, bad[i], 1), 0);
    assert_refused(f, proto_config_host(VAR, "127.0.0.1", &out), bad[i], "host name");
    assert_string_equal(out, "untouched");
  }
  memset(name, 'a', 64); /* a 64-byte label */
  name[64] = '\0';
  assert_false(proto_config_host_valid(name));
  for (size_t i = 0; i < 254; i++) /* a 254-byte name of short labels */
    name[i] = (i % 10 == 9) ? '.' : 'a';
  name[254] = '\0';
  assert_false(proto_config_host_valid(name));
  assert_false(proto_config_host_valid(""));
  assert_false(proto_config_host_valid(NULL));
}

static void test_ip(void **state) {
  fx_t *f = *state;
  const char *out = NULL;
  const char *ok[] = {"127.0.0.1", "0.0.0.0", "::", "::1", "10.1.2.3"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(setenv(VAR, ok[i], 1), 0);
    assert_int_equal(proto_config_ip(VAR, "127.0.0.1", &out), 0);
    assert_string_equal(out, ok[i]);
  }
  const char *bad[] = {"localhost", "0.0.0.0,::", "127.0.0.1 ", "256.0.0.1", "[::]",
                       "127.0.0.1:80", "user-service"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv(VAR, bad[i], 1), 0);
    assert_refused(f, proto_config_ip(VAR, "127.0.0.1", &out), bad[i], "IPv4 or IPv6");
  }
}

static void test_ports(void **state) {
  fx_t *f = *state;
  int port = -1;
  assert_int_equal(proto_config_port(VAR, 3001, &port), 0);
  assert_int_equal(port, 3001);
  assert_int_equal(setenv(VAR, "0", 1), 0);
  assert_int_equal(proto_config_port(VAR, 3001, &port), 0); /* listen: ephemeral */
  assert_int_equal(port, 0);
  assert_refused(f, proto_config_peer_port(VAR, 3001, &port), "0", "from 1 to 65535");
  assert_int_equal(setenv(VAR, "65535", 1), 0);
  assert_int_equal(proto_config_peer_port(VAR, 3001, &port), 0);
  assert_int_equal(port, 65535);
  const char *bad[] = {"65536", "-1", "+80", " 80", "80 ", "80,81", "0x50", "http"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv(VAR, bad[i], 1), 0);
    assert_refused(f, proto_config_port(VAR, 3001, &port), bad[i], "integer from 0 to 65535");
    assert_refused(f, proto_config_peer_port(VAR, 3001, &port), bad[i],
                   "integer from 1 to 65535");
  }
  assert_int_equal(setenv(VAR, "18446744073709551616", 1), 0); /* 2^64: ERANGE */
  uint64_t v = 7;
  assert_refused(f, proto_config_u64(VAR, 1, 1, UINT64_MAX, &v), "18446744073709551616",
                 NULL);
  assert_int_equal(v, 7);
}

static void test_choice(void **state) {
  fx_t *f = *state;
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int out = -1;
  assert_int_equal(proto_config_choice(VAR, levels, 1, &out), 0);
  assert_int_equal(out, 1);
  assert_int_equal(setenv(VAR, "warn", 1), 0);
  assert_int_equal(proto_config_choice(VAR, levels, 1, &out), 0);
  assert_int_equal(out, 2);
  assert_int_equal(setenv(VAR, "ERROR", 1), 0);
  assert_int_equal(proto_config_choice(VAR, levels, 1, &out), 0);
  assert_int_equal(out, 3);
  const char *bad[] = {"verbose", "info,warn", "inf", "info "};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv(VAR, bad[i], 1), 0);
    out = -1;
    assert_refused(f, proto_config_choice(VAR, levels, 1, &out), bad[i],
                   "one of debug, info, warn, error");
    assert_int_equal(out, -1);
  }
}

static void test_url(void **state) {
  fx_t *f = *state;
  const char *out = "x";
  assert_int_equal(proto_config_url(VAR, NULL, &out), 0); /* unset: NULL default */
  assert_null(out);
  const char *ok[] = {
      "http://hooks.example/notify", "https://hooks.example", "HTTPS://a.example:8443/x?y=1#z",
      "http://127.0.0.1:8080/hook", "http://[::1]:9000/", "http://[2001:db8::1]",
      "https://user:pa%40ss@hooks.example/path", "http://h?x", "http://h#f", "http://a_b:1",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(setenv(VAR, ok[i], 1), 0);
    assert_int_equal(proto_config_url(VAR, NULL, &out), 0);
    assert_string_equal(out, ok[i]);
  }
  const char *bad[] = {
      "hooks.example/notify", "ftp://hooks.example", "http://", "http:///path",
      "http://a,b/x", "http://a b/", "http://a..b/", "http://h:0/", "http://h:65536/",
      "http://h:/", "http://h:80x/", "http://h:123456/", "http://[::1/", "http://[1.2.3.4]/",
      "http://[::1]x/", "http://::1/", "http://h/a b", "http://h/\x01", "mailto:a@b",
      "http:/h",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(setenv(VAR, bad[i], 1), 0);
    assert_refused(f, proto_config_url(VAR, NULL, &out), bad[i], "http:// or https://");
  }
  /* the credentials never reach the log */
  assert_int_equal(setenv(VAR, "https://bob:s3cret@hooks example/x", 1), 0);
  assert_refused(f, proto_config_url(VAR, NULL, &out), "https://***@hooks example/x", NULL);
  assert_int_equal(setenv(VAR, "http://user@/", 1), 0); /* userinfo, no host */
  assert_refused(f, proto_config_url(VAR, NULL, &out), "http://***@/", NULL);
}

static void test_bool(void **state) {
  fx_t *f = *state;
  int out = -1;
  assert_int_equal(setenv(VAR, "Yes", 1), 0);
  assert_int_equal(proto_config_bool(VAR, 0, &out), 0);
  assert_int_equal(out, 1);
  assert_int_equal(setenv(VAR, "maybe", 1), 0);
  assert_refused(f, proto_config_bool(VAR, 0, &out), "maybe", "true or false");
}

static void test_dir(void **state) {
  fx_t *f = *state;
  char dir[256], file[300], deep[400];
  const char *out = NULL;
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%s/config-dir-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(dir));
  snprintf(file, sizeof(file), "%s/file", dir);
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  /* an existing directory, and paths that can be created under it */
  const char *ok[] = {dir, deep};
  snprintf(deep, sizeof(deep), "%s/a/b/c/", dir);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(setenv(VAR, ok[i], 1), 0);
    assert_int_equal(proto_config_dir(VAR, "./var", &out), 0);
    assert_string_equal(out, ok[i]);
  }
  assert_int_equal(setenv(VAR, "relative/not/yet", 1), 0);
  assert_int_equal(proto_config_dir(VAR, "./var", &out), 0);
  assert_nothing_logged(f);
  /* a file, and a path through a file */
  assert_int_equal(setenv(VAR, file, 1), 0);
  assert_refused(f, proto_config_dir(VAR, "./var", &out), file, "is not a directory");
  snprintf(deep, sizeof(deep), "%s/sub/db", file);
  assert_int_equal(setenv(VAR, deep, 1), 0);
  assert_refused(f, proto_config_dir(VAR, "./var", &out), deep, "a directory this process");
  unlink(file);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_host_accepts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_host_refuses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
      cmocka_unit_test_setup_teardown(test_choice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_url, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
