/* test_pg.c: the PostgreSQL pool (store/pg.h) against a real server that
 * tests/integration/pg_helper.py starts ("serve" mode: it prints the DSN and
 * obeys stop/start on stdin): queries with positional parameters, prepared
 * statements, a pipeline of many statements leaving in one write, the error
 * codes (unique violation -> STORE_PG_CONFLICT), a server restart (in-flight
 * fails with STORE_PG_CONNLOST, new ones fail at once while down, the pool is
 * back within a second of the server) and a server that is not there at all.
 * Every loop has a watchdog; teardown asserts uv_loop_close() == 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "store/pg.h"

extern char **environ;

#define WATCHDOG_MS 20000u
#define HELPER_LINE_TIMEOUT_MS 60000 /* initdb + start on a loaded machine */
#define RECOVERY_MAX_MS 1000u        /* back within a second of the server */
#define PIPELINE_N 200

/* --- the helper process ------------------------------------------------------ */

typedef struct helper {
  pid_t pid;
  int to_fd, from_fd;     /* its stdin, its stdout */
  char buf[1024];
  size_t len;
  char dsn[512];
  char skip[512];         /* non-empty: postgresql-15 is not installed */
} helper_t;

static helper_t helper = {.pid = -1, .to_fd = -1, .from_fd = -1};

/* A complete line already read, taken out of the buffer into line. */
static int helper_take_line(char *line, size_t cap) {
  char *nl = memchr(helper.buf, '\n', helper.len);
  if (nl == NULL)
    return 0;
  size_t n = (size_t)(nl - helper.buf);
  snprintf(line, cap, "%.*s", (int)n, helper.buf);
  memmove(helper.buf, nl + 1, helper.len - n - 1);
  helper.len -= n + 1;
  return 1;
}

static int helper_read_some(void) {
  ssize_t n = read(helper.from_fd, helper.buf + helper.len, sizeof(helper.buf) - 1 - helper.len);
  if (n > 0)
    helper.len += (size_t)n;
  return (int)n;
}

/* Blocking (no loop running): the next line within the deadline. */
static int helper_line(char *line, size_t cap) {
  while (!helper_take_line(line, cap)) {
    struct pollfd p = {.fd = helper.from_fd, .events = POLLIN};
    if (poll(&p, 1, HELPER_LINE_TIMEOUT_MS) != 1 || helper_read_some() <= 0)
      return -1;
  }
  return 0;
}

static void helper_send(const char *cmd) {
  char line[64];
  int n = snprintf(line, sizeof(line), "%s\n", cmd);
  assert_int_equal(write(helper.to_fd, line, (size_t)n), n);
}

static int group_setup(void **state) {
  (void)state;
  const char *script = getenv("NESTC_PG_HELPER");
  const char *python = getenv("NESTC_PYTHON3");
  int to[2] = {-1, -1}, from[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  char line[sizeof(helper.buf)];
  if (script == NULL) {
    fprintf(stderr, "NESTC_PG_HELPER is not set: run through ctest\n");
    return -1;
  }
  if (python == NULL)
    python = "python3";
  if (pipe(to) != 0 || pipe(from) != 0)
    return -1;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from[1], 1);
  posix_spawn_file_actions_addclose(&fa, to[1]);
  posix_spawn_file_actions_addclose(&fa, from[0]);
  char *argv[] = {(char *)python, (char *)script, "serve", NULL};
  int rc = posix_spawnp(&helper.pid, python, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(to[0]);
  close(from[1]);
  helper.to_fd = to[1];
  helper.from_fd = from[0];
  (void)fcntl(helper.to_fd, F_SETFD, FD_CLOEXEC);
  (void)fcntl(helper.from_fd, F_SETFD, FD_CLOEXEC);
  if (rc != 0) {
    fprintf(stderr, "cannot start %s %s: %s\n", python, script, strerror(rc));
    return -1;
  }
  if (helper_line(line, sizeof(line)) != 0) {
    fprintf(stderr, "pg_helper.py said nothing within %d ms\n", HELPER_LINE_TIMEOUT_MS);
    return -1;
  }
  if (strncmp(line, "dsn ", 4) == 0) {
    snprintf(helper.dsn, sizeof(helper.dsn), "%s", line + 4);
  } else if (strncmp(line, "skip ", 5) == 0) {
    snprintf(helper.skip, sizeof(helper.skip), "%s", line + 5);
    fprintf(stderr, "SKIPPING the PostgreSQL tests: %s\n", helper.skip);
  } else {
    fprintf(stderr, "pg_helper.py: %s\n", line);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  int status = 0;
  if (helper.to_fd >= 0)
    close(helper.to_fd); /* EOF: it stops the server and removes the folder */
  if (helper.pid > 0 && waitpid(helper.pid, &status, 0) != helper.pid)
    return -1;
  if (helper.from_fd >= 0)
    close(helper.from_fd);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

#define NEED_SERVER()                                                                  \
  do {                                                                                 \
    if (helper.skip[0] != '\0') {                                                      \
      print_message("skipped: %s\n", helper.skip);                                    \
      skip();                                                                          \
    }                                                                                  \
  } while (0)

/* --- the loop ------------------------------------------------------------------ */

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  int timed_out;
  store_pg_pool_t *pool;
  int closed;
} fixture_t;

static void on_watchdog(uv_timer_t *t) {
  fixture_t *f = (fixture_t *)((char *)t - offsetof(fixture_t, watchdog));
  f->timed_out = 1;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL || uv_loop_init(&f->loop) != 0 || uv_timer_init(&f->loop, &f->watchdog) != 0 ||
      uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0) != 0)
    return -1;
  *state = f;
  return 0;
}

static void on_closed(void *arg) { *(int *)arg = 1; }

/* Run the loop until *flag (or what cond says) holds; fail at the watchdog. */
static void run_until(fixture_t *f, int (*cond)(void *), void *arg, const char *what) {
  while (!cond(arg)) {
    if (f->timed_out)
      fail_msg("watchdog: still waiting for %s after %u ms", what, WATCHDOG_MS);
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static int flag_set(void *arg) { return *(int *)arg != 0; }

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->pool != NULL) {
    store_pg_close(f->pool, on_closed, &f->closed);
    run_until(f, flag_set, &f->closed, "the pool to close");
  }
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  (void)uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

typedef struct pool_ready_arg {
  fixture_t *f;
  unsigned n;
} pool_ready_arg_t;

static int pool_has_ready(void *arg) {
  pool_ready_arg_t *a = arg;
  return store_pg_ready(a->f->pool) >= a->n;
}

static int pool_has_none(void *arg) {
  pool_ready_arg_t *a = arg;
  return store_pg_ready(a->f->pool) == 0;
}

static void open_pool(fixture_t *f, unsigned size, const char *const *stmts, unsigned n_stmts) {
  store_pg_config_t cfg = {.dsn = helper.dsn, .pool_size = size, .stmts = stmts,
                           .n_stmts = n_stmts};
  assert_int_equal(store_pg_open(&f->loop, &cfg, &f->pool), STORE_OK);
  pool_ready_arg_t a = {f, size};
  run_until(f, pool_has_ready, &a, "every connection to be ready");
}

/* --- one query's outcome ------------------------------------------------------- */

typedef struct answer {
  int done;
  int rc;
  int nrows, ncols;
  char first[128];        /* row 0 col 0 as text ("<null>" for NULL) */
  char second[128];       /* row 0 col 1 */
  int64_t num;            /* row 0 col 0 as an integer, when it is one */
  int64_t affected;
  char sqlstate[6];
  char message[256];
  int order;              /* completion order across answers of one test */
} answer_t;

static int completion_counter;

static void on_answer(int rc, const store_pg_result_t *res, void *arg) {
  answer_t *a = arg;
  const char *v0 = store_pg_text(res, 0, 0), *v1 = store_pg_text(res, 0, 1);
  a->rc = rc;
  a->nrows = store_pg_nrows(res);
  a->ncols = store_pg_ncols(res);
  snprintf(a->first, sizeof(a->first), "%s", v0 ? v0 : "<null>");
  snprintf(a->second, sizeof(a->second), "%s", v1 ? v1 : "<null>");
  if (store_pg_int64(res, 0, 0, &a->num) != STORE_OK)
    a->num = INT64_MIN;
  a->affected = store_pg_affected(res);
  snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", store_pg_sqlstate(res));
  snprintf(a->message, sizeof(a->message), "%s", store_pg_message(res));
  a->order = ++completion_counter;
  a->done = 1;
}

static void query_ok(fixture_t *f, const char *sql, int n, const char *const *params,
                     answer_t *a) {
  memset(a, 0, sizeof(*a));
  assert_int_equal(store_pg_query(f->pool, sql, n, params, on_answer, a), STORE_OK);
  run_until(f, flag_set, &a->done, sql);
}

/* --- tests ---------------------------------------------------------------------- */

static void test_query_with_params(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  answer_t a;
  open_pool(f, 1, NULL, 0);
  const char *p[] = {"2", "40", NULL};
  query_ok(f, "SELECT $1::int + $2::int, $3::text IS NULL", 3, p, &a);
  assert_int_equal(a.rc, STORE_OK);
  assert_int_equal(a.nrows, 1);
  assert_int_equal(a.ncols, 2);
  assert_int_equal(a.num, 42);
  assert_string_equal(a.second, "t");
  assert_string_equal(a.sqlstate, "");

  query_ok(f, "CREATE TABLE t_params (id text PRIMARY KEY, n int)", 0, NULL, &a);
  assert_int_equal(a.rc, STORE_OK);
  /* Parameters are text, never spliced into SQL: a quote is just a byte. */
  const char *ins[] = {"o'brien; DROP TABLE t_params", "7"};
  query_ok(f, "INSERT INTO t_params (id, n) VALUES ($1, $2) RETURNING n", 2, ins, &a);
  assert_int_equal(a.rc, STORE_OK);
  assert_int_equal(a.affected, 1);
  assert_int_equal(a.num, 7);
  const char *sel[] = {"o'brien; DROP TABLE t_params"};
  query_ok(f, "SELECT id, n FROM t_params WHERE id = $1", 1, sel, &a);
  assert_int_equal(a.nrows, 1);
  assert_string_equal(a.first, "o'brien; DROP TABLE t_params");
  assert_string_equal(a.second, "7");
  query_ok(f, "SELECT NULL::int", 0, NULL, &a);
  assert_string_equal(a.first, "<null>");
  assert_int_equal(a.num, INT64_MIN); /* NULL is not an integer */
}

static void test_prepared_statements(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  static const char *const stmts[] = {"SELECT $1::int * 2", "SELECT upper($1::text)"};
  answer_t a = {0}, b = {0};
  open_pool(f, 2, stmts, 2);
  const char *p1[] = {"21"}, *p2[] = {"abc"};
  assert_int_equal(store_pg_exec(f->pool, 0, 1, p1, on_answer, &a), STORE_OK);
  assert_int_equal(store_pg_exec(f->pool, 1, 1, p2, on_answer, &b), STORE_OK);
  run_until(f, flag_set, &b.done, "the second prepared statement");
  run_until(f, flag_set, &a.done, "the first prepared statement");
  assert_int_equal(a.rc, STORE_OK);
  assert_int_equal(a.num, 42);
  assert_int_equal(b.rc, STORE_OK);
  assert_string_equal(b.first, "ABC");
  assert_int_equal(store_pg_exec(f->pool, 2, 0, NULL, on_answer, &a), STORE_EINVAL);
}

static void test_pipeline_one_turn(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  static answer_t answers[PIPELINE_N];
  answer_t a;
  store_pg_stats_t before, after;
  char ids[PIPELINE_N][16];
  open_pool(f, 1, NULL, 0);
  query_ok(f, "CREATE TABLE t_pipe (id int PRIMARY KEY)", 0, NULL, &a);
  store_pg_stats(f->pool, &before);
  completion_counter = 0;
  memset(answers, 0, sizeof(answers));
  /* All queued in this one turn (no loop run in between). */
  for (int i = 0; i < PIPELINE_N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "%d", i);
    const char *p[] = {ids[i]};
    assert_int_equal(store_pg_query(f->pool, "INSERT INTO t_pipe (id) VALUES ($1::int)", 1, p,
                                    on_answer, &answers[i]),
                     STORE_OK);
  }
  run_until(f, flag_set, &answers[PIPELINE_N - 1].done, "the last statement of the pipeline");
  store_pg_stats(f->pool, &after);
  assert_int_equal(after.sent - before.sent, PIPELINE_N);
  assert_int_equal(after.batches - before.batches, 1); /* one write for the whole turn */
  for (int i = 0; i < PIPELINE_N; i++) {
    assert_true(answers[i].done);
    assert_int_equal(answers[i].rc, STORE_OK);
    assert_int_equal(answers[i].order, i + 1); /* answered in the order queued */
  }
  query_ok(f, "SELECT count(*) FROM t_pipe", 0, NULL, &a);
  assert_int_equal(a.num, PIPELINE_N);
}

static void test_errors_map_to_codes(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  answer_t a, dup = {0}, after_dup = {0}, nn = {0};
  open_pool(f, 1, NULL, 0);
  query_ok(f, "CREATE TABLE t_err (email text PRIMARY KEY, name text NOT NULL)", 0, NULL, &a);
  const char *p[] = {"a@x", "A"};
  query_ok(f, "INSERT INTO t_err VALUES ($1, $2)", 2, p, &a);
  assert_int_equal(a.rc, STORE_OK);
  /* One turn: a duplicate, a good insert, a NOT NULL violation. Each has its
   * own sync point, so the failures do not abort the good one. */
  const char *q[] = {"b@x", "B"}, *n[] = {"c@x"};
  assert_int_equal(store_pg_query(f->pool, "INSERT INTO t_err VALUES ($1, $2)", 2, p, on_answer,
                                  &dup), STORE_OK);
  assert_int_equal(store_pg_query(f->pool, "INSERT INTO t_err VALUES ($1, $2)", 2, q, on_answer,
                                  &after_dup), STORE_OK);
  assert_int_equal(store_pg_query(f->pool, "INSERT INTO t_err VALUES ($1, NULL)", 1, n,
                                  on_answer, &nn), STORE_OK);
  run_until(f, flag_set, &nn.done, "the NOT NULL violation");
  assert_int_equal(dup.rc, STORE_PG_CONFLICT);
  assert_string_equal(dup.sqlstate, "23505");
  assert_int_equal(after_dup.rc, STORE_OK);
  assert_int_equal(nn.rc, STORE_PG_CONSTRAINT);
  assert_string_equal(nn.sqlstate, "23502");
  /* The idempotent form callers use instead: no error, nothing inserted. */
  query_ok(f, "INSERT INTO t_err VALUES ($1, $2) ON CONFLICT (email) DO NOTHING", 2, p, &a);
  assert_int_equal(a.rc, STORE_OK);
  assert_int_equal(a.affected, 0);
  query_ok(f, "SELEC 1", 0, NULL, &a);
  assert_int_equal(a.rc, STORE_ERROR);
  assert_string_equal(a.sqlstate, "42601");
  assert_true(strlen(a.message) > 0);
  /* The connection is still good after all that. */
  query_ok(f, "SELECT count(*) FROM t_err", 0, NULL, &a);
  assert_int_equal(a.num, 2);
}

typedef struct close_ctx {
  answer_t a;
  fixture_t *f;
} close_ctx_t;

static void on_answer_then_close(int rc, const store_pg_result_t *res, void *arg) {
  close_ctx_t *ctx = arg;
  on_answer(rc, res, &ctx->a);
  store_pg_close(ctx->f->pool, on_closed, &ctx->f->closed); /* from inside a callback */
  ctx->f->pool = NULL;
}

static void test_close_cancels(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  close_ctx_t first = {.f = f};
  answer_t queued = {0};
  open_pool(f, 1, NULL, 0);
  assert_int_equal(store_pg_query(f->pool, "SELECT 1", 0, NULL, on_answer_then_close, &first),
                   STORE_OK);
  assert_int_equal(store_pg_query(f->pool, "SELECT pg_sleep(5)", 0, NULL, on_answer, &queued),
                   STORE_OK);
  run_until(f, flag_set, &first.a.done, "the first answer");
  assert_int_equal(first.a.rc, STORE_OK);
  assert_true(queued.done); /* in flight behind it: cancelled inside the close */
  assert_int_equal(queued.rc, STORE_PG_CANCELED);
  run_until(f, flag_set, &f->closed, "the pool to close");
}

typedef struct helper_watch {
  uv_poll_t poll;
  int started;
  char line[256];
} helper_watch_t;

/* The helper's stdout, read on the loop while the server starts again. */
static void on_helper_readable(uv_poll_t *h, int status, int events) {
  helper_watch_t *w = (helper_watch_t *)h;
  (void)events;
  if (status < 0 || helper_read_some() <= 0) {
    snprintf(w->line, sizeof(w->line), "<helper output closed>");
    w->started = -1;
    return;
  }
  if (helper_take_line(w->line, sizeof(w->line)))
    w->started = strcmp(w->line, "started") == 0 ? 1 : -1;
}

/* The server goes away with a query in flight and comes back. */
static void test_server_restart(void **state) {
  NEED_SERVER();
  fixture_t *f = *state;
  answer_t sleeping = {0}, a;
  char line[256];
  open_pool(f, 2, NULL, 0);
  assert_int_equal(store_pg_query(f->pool, "SELECT pg_sleep(30)", 0, NULL, on_answer, &sleeping),
                   STORE_OK);
  /* One turn sends it; the server has it once it shows in pg_stat_activity. */
  int seen = 0;
  while (!seen) {
    query_ok(f, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'", 0,
             NULL, &a);
    seen = a.num == 1;
  }
  helper_send("stop");
  assert_int_equal(helper_line(line, sizeof(line)), 0);
  assert_string_equal(line, "stopped");
  run_until(f, flag_set, &sleeping.done, "the in-flight query to fail");
  assert_int_equal(sleeping.rc, STORE_PG_CONNLOST);
  pool_ready_arg_t none = {f, 0};
  run_until(f, pool_has_none, &none, "both connections to notice");
  /* Stay down until the retries have backed off to their longest wait
   * (50+100+200+400 ms, then 500 ms: five failures per connection after the
   * loss), so the recovery below measures the capped backoff. All the while,
   * on every turn (retry attempts included), a new query fails at once. */
  static answer_t down; /* outlives a failing assertion: the pool may still hold it */
  memset(&down, 0, sizeof(down));
  store_pg_stats_t st;
  store_pg_stats(f->pool, &st);
  uint64_t target = st.connect_failures + 2 * 5;
  while (st.connect_failures < target) {
    if (f->timed_out)
      fail_msg("watchdog: only %llu connect failures", (unsigned long long)st.connect_failures);
    assert_int_equal(store_pg_query(f->pool, "SELECT 1", 0, NULL, on_answer, &down),
                     STORE_PG_UNAVAILABLE);
    (void)uv_run(&f->loop, UV_RUN_ONCE);
    store_pg_stats(f->pool, &st);
  }
  assert_false(down.done); /* an error return means no callback */

  /* Back up; the loop keeps running (and retrying) while the server starts. */
  helper_send("start");
  helper_watch_t w = {.started = 0};
  assert_int_equal(uv_poll_init(&f->loop, &w.poll, helper.from_fd), 0);
  assert_int_equal(uv_poll_start(&w.poll, UV_READABLE, on_helper_readable), 0);
  run_until(f, flag_set, &w.started, "pg_helper.py to say started");
  uv_close((uv_handle_t *)&w.poll, NULL);
  if (w.started != 1)
    fail_msg("pg_helper.py: %s", w.line);
  uv_update_time(&f->loop);
  uint64_t back_at = uv_now(&f->loop);
  pool_ready_arg_t one = {f, 1};
  run_until(f, pool_has_ready, &one, "a connection to come back");
  uv_update_time(&f->loop);
  uint64_t took = uv_now(&f->loop) - back_at;
  print_message("reconnected %llu ms after the server was back\n", (unsigned long long)took);
  assert_true(took <= RECOVERY_MAX_MS);
  query_ok(f, "SELECT 1", 0, NULL, &a);
  assert_int_equal(a.rc, STORE_OK);
}

/* Nothing listens on the port: the first query fails fast, the next at once. */
static void test_down_fails_fast(void **state) {
  fixture_t *f = *state;
  char dsn[128];
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd); /* a port that was free a moment ago: nothing listens there */
  snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d dbname=x user=x", ntohs(sa.sin_port));
  store_pg_config_t cfg = {.dsn = dsn, .pool_size = 2};
  assert_int_equal(store_pg_open(&f->loop, &cfg, &f->pool), STORE_OK);
  answer_t a = {0};
  uv_update_time(&f->loop);
  uint64_t t0 = uv_now(&f->loop);
  /* Queued: the first attempts have not failed yet. */
  assert_int_equal(store_pg_query(f->pool, "SELECT 1", 0, NULL, on_answer, &a), STORE_OK);
  run_until(f, flag_set, &a.done, "the query to fail");
  uv_update_time(&f->loop);
  assert_int_equal(a.rc, STORE_PG_UNAVAILABLE);
  assert_true(uv_now(&f->loop) - t0 < RECOVERY_MAX_MS);
  assert_int_equal(store_pg_query(f->pool, "SELECT 1", 0, NULL, on_answer, &a),
                   STORE_PG_UNAVAILABLE);
}

static void test_bad_config(void **state) {
  fixture_t *f = *state;
  store_pg_pool_t *pool = (store_pg_pool_t *)&pool;
  store_pg_config_t cfg = {.dsn = "host=127.0.0.1 nosuchoption=1"};
  assert_int_equal(store_pg_open(&f->loop, &cfg, &pool), STORE_EINVAL);
  assert_null(pool);
  cfg.dsn = "postgresql://u:secret@127.0.0.1:1/x";
  cfg.pool_size = STORE_PG_POOL_SIZE_MAX + 1;
  assert_int_equal(store_pg_open(&f->loop, &cfg, &pool), STORE_EINVAL);
  assert_int_equal(store_pg_open(&f->loop, NULL, &pool), STORE_EINVAL);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_down_fails_fast, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_with_params, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prepared_statements, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipeline_one_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_map_to_codes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_cancels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
