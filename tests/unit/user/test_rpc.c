/* test_rpc.c: the user handlers behind a real RPC server on a libuv loop,
 * called through the RPC client, with the store writing through a commit
 * group as in the daemon. Creates sent together share a COMMIT and each
 * reply finds its row committed; the same email twice in one turn is one 201
 * and one 409; a user_logged_in event commits; a failed COMMIT answers 500
 * and leaves no user. Every wait has a deadline; teardown closes every handle
 * and checks uv_loop_close() == 0.
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
#include <sqlite3.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/rpc_client.h"
#include "user.h"

#define WAIT_TIMEOUT_MS 10000u
#define TICK_MS 20u
#define BATCH_N 8

typedef struct fixture {
  char dir[256];
  char db_path[300];
  uv_loop_t loop;
  uv_timer_t tick;                 /* wakes the loop while waiting */
  user_store_t *store;
  store_group_t *group;
  svc_t svc;                       /* what the handlers see, as svc_main makes it */
  proto_rpc_server_t *srv;
  proto_rpc_client_t *cli;
  int srv_done;
} fixture_t;

typedef struct call_result {
  int done;
  int status;                      /* PROTO_OK, PROTO_EREMOTE, ... */
  json_t *response;                /* copies, owned */
  json_t *err;
  const char *db_path;             /* set: count the user's committed rows at reply */
  int committed_rows;
} call_result_t;

/* Rows for email that another connection sees: committed ones only (WAL). */
static int count_committed(const char *db_path, const char *email) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int n = -1;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT count(*) FROM users WHERE email = ?1", -1, &st, NULL) ==
          SQLITE_OK &&
      sqlite3_bind_text(st, 1, email, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  proto_log_set_level(PROTO_LOG_ERROR);
  snprintf(f->dir, sizeof(f->dir), "%s/user-rpc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || user_store_open(f->dir, STORE_SYNC_FULL, &f->store) != 0 ||
      uv_loop_init(&f->loop) != 0 || uv_timer_init(&f->loop, &f->tick) != 0 ||
      uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS) != 0)
    return -1;
  snprintf(f->db_path, sizeof(f->db_path), "%s/user.db", f->dir);
  /* As main.c does: the group on the store's connection. */
  if (!(f->group = store_group_new(&f->loop, user_store_db(f->store))))
    return -1;
  user_svc_init(&f->svc, &f->loop, f->store, f->group);
  if (!(f->srv = proto_rpc_server_new(&f->loop, NULL)) ||
      user_handlers_register(f->srv, &f->svc) != 0 ||
      proto_rpc_server_listen(f->srv, "127.0.0.1", 0) != 0)
    return -1;
  if (!(f->cli = proto_rpc_client_new(&f->loop, "user", "127.0.0.1",
                                      proto_rpc_server_port(f->srv), NULL)))
    return -1;
  *state = f;
  return 0;
}

/* Run the loop until *flag is set; fail (outside any callback) at the deadline. */
static void wait_flag(fixture_t *f, const int *flag) {
  uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_TIMEOUT_MS * 1000000u;
  while (!*flag) {
    if (uv_hrtime() > deadline)
      fail_msg("timed out after %u ms", WAIT_TIMEOUT_MS);
    uv_run(&f->loop, UV_RUN_ONCE);
  }
}

static void on_srv_done(void *arg) {
  ((fixture_t *)arg)->srv_done = 1;
}

static int teardown(void **state) {
  static const char *const files[] = {"user.db", "user.db-wal", "user.db-shm"};
  fixture_t *f = *state;
  char p[400];
  proto_rpc_client_close(f->cli);
  proto_rpc_server_shutdown(f->srv, 0, on_srv_done, f);
  wait_flag(f, &f->srv_done);
  /* Before the store, as main.c does; the loop below closes its handles. */
  store_group_close(f->group);
  uv_close((uv_handle_t *)&f->tick, NULL);
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(uv_loop_close(&f->loop), 0);
  user_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static void on_reply(const proto_rpc_result_t *res, void *arg) {
  call_result_t *c = arg;
  c->status = res->status;
  c->response = res->response ? json_deep_copy(res->response) : NULL;
  c->err = res->err ? json_deep_copy(res->err) : NULL;
  if (c->db_path) {
    const char *email = json_string_value(json_object_get(c->response, "email"));
    c->committed_rows = email ? count_committed(c->db_path, email) : -1;
  }
  c->done = 1;
}

/* Send without waiting: calls sent in a row reach the server together and are
 * handled in one loop turn. */
static void send_call(fixture_t *f, call_result_t *c, const char *cmd, const char *data_text) {
  json_t *data = json_loads(data_text, JSON_DECODE_ANY, NULL);
  assert_non_null(data);
  assert_int_equal(proto_rpc_client_send(f->cli, cmd, data, "req-u", 0, on_reply, c), 0);
}

static call_result_t call(fixture_t *f, const char *cmd, const char *data_text) {
  call_result_t c = {.done = 0};
  send_call(f, &c, cmd, data_text);
  wait_flag(f, &c.done);
  return c;
}

static void call_free(call_result_t *c) {
  json_decref(c->response);
  json_decref(c->err);
}

static store_group_stats_t group_stats(fixture_t *f) {
  store_group_stats_t s;
  store_group_stats(f->group, &s);
  return s;
}

static int remote_status(const call_result_t *c) {
  return (int)json_integer_value(json_object_get(c->err, "statusCode"));
}

static void warm_up(fixture_t *f) {
  /* Connect first, so a batch is not split by the connection's setup. */
  call_result_t warm = call(f, "health", "{}");
  assert_int_equal(warm.status, PROTO_OK);
  call_free(&warm);
}

static void creates_of_one_turn_share_a_commit(void **state) {
  fixture_t *f = *state;
  char data[128];
  call_result_t c[BATCH_N];
  warm_up(f);
  store_group_stats_t before = group_stats(f);
  for (int i = 0; i < BATCH_N; i++) {
    c[i] = (call_result_t){.db_path = f->db_path, .committed_rows = -1};
    snprintf(data, sizeof(data), "{\"email\":\"u%d@example.com\",\"name\":\"U %d\"}", i, i);
    send_call(f, &c[i], "create_user", data);
  }
  for (int i = 0; i < BATCH_N; i++)
    wait_flag(f, &c[i].done);
  for (int i = 0; i < BATCH_N; i++) {
    assert_int_equal(c[i].status, PROTO_OK);
    assert_int_equal(c[i].committed_rows, 1); /* durable before the reply */
    call_free(&c[i]);
  }
  store_group_stats_t after = group_stats(f);
  uint64_t commits = after.commits - before.commits;
  assert_true(commits >= 1);
  assert_true(commits < BATCH_N);
  assert_int_equal(after.failures, 0);
}

static void same_email_twice_in_one_turn(void **state) {
  fixture_t *f = *state;
  call_result_t a = {.done = 0}, b = {.done = 0};
  warm_up(f);
  send_call(f, &a, "create_user", "{\"email\":\"dup@example.com\",\"name\":\"A\"}");
  send_call(f, &b, "create_user", "{\"email\":\"DUP@example.com\",\"name\":\"B\"}");
  wait_flag(f, &a.done);
  wait_flag(f, &b.done);
  assert_int_equal(a.status, PROTO_OK);
  assert_int_equal(b.status, PROTO_EREMOTE);
  assert_int_equal(remote_status(&b), 409);
  assert_int_equal(count_committed(f->db_path, "dup@example.com"), 1);
  call_free(&a);
  call_free(&b);
}

static void login_event_commits(void **state) {
  fixture_t *f = *state;
  call_result_t c = call(f, "create_user", "{\"email\":\"ev@example.com\",\"name\":\"E\"}");
  assert_int_equal(c.status, PROTO_OK);
  char data[256];
  snprintf(data, sizeof(data), "{\"userId\":\"%s\",\"timestamp\":\"2026-01-02T03:04:05.000Z\"}",
           json_string_value(json_object_get(c.response, "id")));
  call_free(&c);
  json_t *ev = json_loads(data, 0, NULL);
  assert_non_null(ev);
  assert_int_equal(proto_rpc_client_emit(f->cli, "user_logged_in", ev, "req-e"), 0);
  /* Events get no reply: wait for the group to have committed it. */
  uint64_t before = group_stats(f).commits;
  uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_TIMEOUT_MS * 1000000u;
  while (group_stats(f).commits == before) {
    if (uv_hrtime() > deadline)
      fail_msg("the login was never committed");
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  call_result_t g = call(f, "get_users", "{}");
  assert_int_equal(g.status, PROTO_OK);
  json_t *u = json_array_get(json_object_get(g.response, "users"), 0);
  assert_string_equal(json_string_value(json_object_get(u, "lastLoginAt")),
                      "2026-01-02T03:04:05.000Z");
  call_free(&g);
}

static void failed_commit_is_500_and_no_user(void **state) {
  fixture_t *f = *state;
  warm_up(f);
  /* The insert itself leaves a deferred foreign-key violation behind (a
   * trigger), so the COMMIT of its own turn fails. */
  sqlite3 *db = user_store_db(f->store);
  assert_int_equal(sqlite3_exec(db,
                                "PRAGMA foreign_keys=ON;"
                                "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                                "CREATE TABLE c(pid INTEGER REFERENCES p(id) "
                                "DEFERRABLE INITIALLY DEFERRED);"
                                "CREATE TRIGGER dangling AFTER INSERT ON users "
                                "BEGIN INSERT INTO c VALUES(5); END",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  call_result_t c = call(f, "create_user", "{\"email\":\"lost@example.com\",\"name\":\"L\"}");
  assert_int_equal(c.status, PROTO_EREMOTE);
  assert_int_equal(remote_status(&c), 500);
  assert_int_equal(count_committed(f->db_path, "lost@example.com"), 0);
  call_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(creates_of_one_turn_share_a_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(same_email_twice_in_one_turn, setup, teardown),
      cmocka_unit_test_setup_teardown(login_event_commits, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_commit_is_500_and_no_user, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
