/* test_log.c: with buffering on a loop, lines wait for the loop's next turn
 * (then all go out), an error line goes out at once with what came before
 * it, a full buffer goes out whole lines at a time, and switching buffering
 * off writes what waits. Every line is one JSON object. stdout is captured
 * into a temporary file.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/log.h"

typedef struct fx {
  char path[256];
  int saved_stdout;
  uv_loop_t loop;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  snprintf(f->path, sizeof(f->path), "%s/log-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemp(f->path);
  assert_true(fd >= 0);
  fflush(stdout);
  f->saved_stdout = dup(STDOUT_FILENO);
  assert_true(dup2(fd, STDOUT_FILENO) >= 0);
  close(fd);
  proto_log_init("logtest");
  proto_log_set_level(PROTO_LOG_INFO);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  proto_log_buffer_off();
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  dup2(f->saved_stdout, STDOUT_FILENO);
  close(f->saved_stdout);
  unlink(f->path);
  free(f);
  return 0;
}

static size_t written(fx_t *f) {
  struct stat st;
  assert_int_equal(stat(f->path, &st), 0);
  return (size_t)st.st_size;
}

/* Every line of the capture parses as a JSON object; returns the count. */
static int count_lines(fx_t *f, const char *event) {
  FILE *in = fopen(f->path, "r");
  char *line = NULL;
  size_t cap = 0;
  int n = 0;
  assert_non_null(in);
  while (getline(&line, &cap, in) > 0) {
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    assert_non_null(o);
    assert_true(json_is_object(o));
    const char *ev = json_string_value(json_object_get(o, "event"));
    if (!event || (ev && strcmp(ev, event) == 0))
      n++;
    json_decref(o);
  }
  free(line);
  fclose(in);
  return n;
}

static void test_unbuffered_writes_each_line(void **state) {
  fx_t *f = *state;
  proto_log(PROTO_LOG_INFO, NULL, "one", "x");
  assert_int_equal(count_lines(f, "one"), 1);
}

static void on_timer(uv_timer_t *t) {
  (void)t;
}

static void test_lines_wait_for_the_loop_turn(void **state) {
  fx_t *f = *state;
  assert_int_equal(proto_log_buffer_on(&f->loop), 0);
  for (int i = 0; i < 10; i++)
    proto_log(PROTO_LOG_INFO, "req_1", "tick", "line %d", i);
  assert_int_equal(written(f), 0);
  /* A daemon's loop has its servers; here a timer keeps the loop alive. */
  uv_timer_t work;
  assert_int_equal(uv_timer_init(&f->loop, &work), 0);
  assert_int_equal(uv_timer_start(&work, on_timer, 3600 * 1000, 0), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* the prepare phase, before polling, writes them */
  assert_int_equal(count_lines(f, "tick"), 10);
  uv_close((uv_handle_t *)&work, NULL);
  /* The log's handle keeps no loop alive: with the timer gone, the loop ends. */
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

static void test_error_goes_out_at_once_in_order(void **state) {
  fx_t *f = *state;
  assert_int_equal(proto_log_buffer_on(&f->loop), 0);
  proto_log(PROTO_LOG_INFO, NULL, "before", NULL);
  proto_log(PROTO_LOG_ERROR, NULL, "failure", "bad");
  assert_int_equal(count_lines(f, NULL), 2);
  FILE *in = fopen(f->path, "r");
  char first[512];
  assert_non_null(fgets(first, sizeof(first), in));
  fclose(in);
  assert_non_null(strstr(first, "\"before\""));
}

static void test_full_buffer_writes_whole_lines(void **state) {
  fx_t *f = *state;
  char msg[1001];
  memset(msg, 'm', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  assert_int_equal(proto_log_buffer_on(&f->loop), 0);
  /* ~1.1 KB lines, 200 of them: past the 64 KiB buffer three times. */
  for (int i = 0; i < 200; i++)
    proto_log(PROTO_LOG_INFO, NULL, "big", "%s", msg);
  size_t before_off = written(f);
  assert_true(before_off > 0); /* the buffer filled and went out */
  proto_log_buffer_off();
  assert_true(before_off < written(f)); /* the rest waited in the buffer */
  assert_int_equal(count_lines(f, "big"), 200); /* all there, none torn */
}

static void test_off_writes_what_waits(void **state) {
  fx_t *f = *state;
  assert_int_equal(proto_log_buffer_on(&f->loop), 0);
  proto_log(PROTO_LOG_INFO, NULL, "late", NULL);
  assert_int_equal(written(f), 0);
  proto_log_buffer_off();
  assert_int_equal(count_lines(f, "late"), 1);
  proto_log(PROTO_LOG_INFO, NULL, "after", NULL); /* unbuffered again */
  assert_int_equal(count_lines(f, "after"), 1);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void test_loop_teardown_closing_the_handle(void **state) {
  fx_t *f = *state;
  assert_int_equal(proto_log_buffer_on(&f->loop), 0);
  proto_log(PROTO_LOG_INFO, NULL, "pending", NULL);
  /* What proto_daemon_loop_teardown does: close every handle. */
  uv_walk(&f->loop, close_any, NULL);
  proto_log(PROTO_LOG_INFO, NULL, "then", NULL);
  assert_int_equal(count_lines(f, "pending"), 1);
  assert_int_equal(count_lines(f, "then"), 1);
}

/* The first line of the capture, parsed. */
static json_t *first_line(fx_t *f) {
  FILE *in = fopen(f->path, "r");
  char buf[8192];
  assert_non_null(in);
  assert_non_null(fgets(buf, sizeof(buf), in));
  fclose(in);
  json_error_t err;
  json_t *o = json_loads(buf, JSON_DECODE_ANY, &err);
  assert_non_null(o);
  return o;
}

static void test_line_shape_and_key_order(void **state) {
  fx_t *f = *state;
  proto_log_fields(PROTO_LOG_WARN, "req_\"odd\"\\\n", "shape",
                   json_pack("{s:s, s:i, s:[i]}", "msg", "caf\xc3\xa9", "n", 7, "list", 1));
  json_t *o = first_line(f);
  const char *order[] = {"time", "level", "service", "event", "requestId", "msg", "n", "list"};
  size_t i = 0;
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    assert_true(i < 8);
    assert_string_equal(key, order[i++]);
  }
  assert_int_equal(i, 8);
  assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
  assert_string_equal(json_string_value(json_object_get(o, "service")), "logtest");
  assert_string_equal(json_string_value(json_object_get(o, "requestId")), "req_\"odd\"\\\n");
  assert_string_equal(json_string_value(json_object_get(o, "msg")), "caf\xc3\xa9");
  assert_int_equal(json_integer_value(json_object_get(o, "n")), 7);
  assert_int_equal(strlen(json_string_value(json_object_get(o, "time"))), 24);
  json_decref(o);
}

static void test_field_named_like_a_base_key_wins(void **state) {
  fx_t *f = *state;
  /* As before the fast path: the fields are merged over the base keys. */
  proto_log_fields(PROTO_LOG_INFO, NULL, "base", json_pack("{s:s}", "event", "override"));
  json_t *o = first_line(f);
  assert_string_equal(json_string_value(json_object_get(o, "event")), "override");
  assert_int_equal(json_object_size(o), 4);
  json_decref(o);
}

static void test_fields_that_are_not_an_object_are_ignored(void **state) {
  fx_t *f = *state;
  proto_log_fields(PROTO_LOG_INFO, NULL, "odd", json_pack("[i]", 1));
  json_t *o = first_line(f); /* still one JSON object, the array dropped */
  assert_string_equal(json_string_value(json_object_get(o, "event")), "odd");
  assert_int_equal(json_object_size(o), 4);
  json_decref(o);
}

static void test_non_ascii_request_id(void **state) {
  fx_t *f = *state;
  proto_log(PROTO_LOG_INFO, "req_\xc3\xa9", "wide", "m"); /* jansson checks and writes it */
  json_t *o = first_line(f);
  assert_string_equal(json_string_value(json_object_get(o, "requestId")), "req_\xc3\xa9");
  json_decref(o);
}

static void test_line_longer_than_the_stack_buffer(void **state) {
  fx_t *f = *state;
  char big[6000];
  memset(big, 'b', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  proto_log_fields(PROTO_LOG_INFO, NULL, "huge", json_pack("{s:s}", "blob", big));
  json_t *o = first_line(f);
  assert_int_equal(strlen(json_string_value(json_object_get(o, "blob"))), sizeof(big) - 1);
  json_decref(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_unbuffered_writes_each_line, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lines_wait_for_the_loop_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_goes_out_at_once_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_buffer_writes_whole_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(test_off_writes_what_waits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loop_teardown_closing_the_handle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_line_shape_and_key_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_field_named_like_a_base_key_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fields_that_are_not_an_object_are_ignored, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_non_ascii_request_id, setup, teardown),
      cmocka_unit_test_setup_teardown(test_line_longer_than_the_stack_buffer, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
