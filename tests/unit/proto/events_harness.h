/* events_harness.h: what the events tests share: a real redis-server child on
 * a free port (readiness read from its stdout, with a deadline), a blocking
 * hiredis client for test-side commands, a raw RESP subscriber on the loop that
 * records the exact bytes published, and loop helpers (watchdog, wait for a
 * condition with a deadline by running the loop). Header-only (static inline)
 * so each test executable stays one file. Include after cmocka.h.
 */
#ifndef EVENTS_HARNESS_H
#define EVENTS_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "proto/log.h"

#define HARNESS_REDIS_READY_TIMEOUT_MS 10000
#define HARNESS_WATCHDOG_MS 30000
#define HARNESS_RAW_MAX_MSGS 64

/* --- ports and the redis-server child --------------------------------------- */

/* A TCP port that was free a moment ago (bind to 0, read it, close). */
static inline int harness_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

typedef struct redis_proc {
  pid_t pid;           /* 0 when not running */
  int port;
  int out_fd;          /* read end of the child's stdout+stderr, non-blocking */
  char password[64];   /* "" for none */
} redis_proc_t;

static inline uint64_t harness_now_ms(void) {
  return uv_hrtime() / 1000000u;
}

/* Start redis-server on port (password "" or NULL: none) and wait, with a
 * deadline, for its "Ready to accept connections" line. Fails the test if the
 * child exits first. */
static inline void redis_start(redis_proc_t *r, int port, const char *password) {
  int pfd[2];
  char portbuf[16];
  memset(r, 0, sizeof(*r));
  r->port = port;
  r->out_fd = -1;
  if (password)
    snprintf(r->password, sizeof(r->password), "%s", password);
  snprintf(portbuf, sizeof(portbuf), "%d", port);
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    const char *argv[24];
    int i = 0;
    argv[i++] = "redis-server";
    argv[i++] = "--port";
    argv[i++] = portbuf;
    argv[i++] = "--bind";
    argv[i++] = "127.0.0.1";
    argv[i++] = "--save";
    argv[i++] = "";
    argv[i++] = "--appendonly";
    argv[i++] = "no";
    argv[i++] = "--daemonize";
    argv[i++] = "no";
    argv[i++] = "--loglevel";
    argv[i++] = "notice";
    if (password && *password) {
      argv[i++] = "--requirepass";
      argv[i++] = password;
    }
    argv[i] = NULL;
    /* If the test process dies (a crash, an abort), so does its redis. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(pfd[1], STDOUT_FILENO);
    dup2(pfd[1], STDERR_FILENO);
    close(pfd[0]);
    close(pfd[1]);
    execvp("redis-server", (char *const *)argv);
    _exit(127);
  }
  close(pfd[1]);
  r->pid = pid;
  r->out_fd = pfd[0];

  char out[16384];
  size_t used = 0;
  uint64_t deadline = harness_now_ms() + HARNESS_REDIS_READY_TIMEOUT_MS;
  for (;;) {
    uint64_t now = harness_now_ms();
    if (now >= deadline)
      fail_msg("redis-server on port %d not ready in %d ms; output:\n%.*s", port,
               HARNESS_REDIS_READY_TIMEOUT_MS, (int)used, out);
    struct pollfd p = {.fd = r->out_fd, .events = POLLIN};
    int n = poll(&p, 1, (int)(deadline - now));
    if (n < 0 && errno == EINTR)
      continue;
    assert_true(n >= 0);
    if (n == 0)
      continue;
    ssize_t got = read(r->out_fd, out + used, sizeof(out) - 1 - used);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      int status = 0;
      waitpid(pid, &status, 0);
      r->pid = 0;
      fail_msg("redis-server on port %d exited early (status %d); output:\n%.*s", port,
               status, (int)used, out);
    }
    used += (size_t)got;
    out[used] = '\0';
    if (strstr(out, "Ready to accept connections"))
      break;
    if (used >= sizeof(out) - 1)
      used = 0; /* keep scanning the most recent output */
  }
  /* Keep the pipe so redis never writes into a closed one; drain it at stop. */
  int fl = fcntl(r->out_fd, F_GETFL);
  assert_true(fl >= 0);
  assert_int_equal(fcntl(r->out_fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static inline void redis_drain_output(redis_proc_t *r) {
  char buf[4096];
  while (r->out_fd >= 0 && read(r->out_fd, buf, sizeof(buf)) > 0) {
  }
}

/* Stop with SIGTERM and expect a clean exit (0): a crash fails the test. */
static inline void redis_stop(redis_proc_t *r) {
  if (r->pid <= 0)
    return;
  int status = 0;
  assert_int_equal(kill(r->pid, SIGTERM), 0);
  (void)kill(r->pid, SIGCONT); /* in case a failed test left it stopped */
  redis_drain_output(r);
  assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
  r->pid = 0;
  redis_drain_output(r);
  close(r->out_fd);
  r->out_fd = -1;
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Kill with sig (a crash, e.g. SIGKILL) and reap. Only our own child, by pid. */
static inline void redis_kill(redis_proc_t *r, int sig) {
  if (r->pid <= 0)
    return;
  assert_int_equal(kill(r->pid, sig), 0);
  if (sig == SIGSTOP || sig == SIGCONT)
    return;
  int status = 0;
  assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
  r->pid = 0;
  close(r->out_fd);
  r->out_fd = -1;
}

/* A blocking client with a 5 s timeout, authenticated when r has a password. */
static inline redisContext *redis_sync(const redis_proc_t *r) {
  struct timeval tv = {5, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
  assert_non_null(c);
  if (c->err)
    fail_msg("connect to redis on %d: %s", r->port, c->errstr);
  assert_int_equal(redisSetTimeout(c, tv), REDIS_OK);
  if (r->password[0]) {
    redisReply *rep = redisCommand(c, "AUTH %s", r->password);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
  }
  return c;
}

/* Run one command on a fresh blocking connection; returns the integer reply
 * (or 0 for a status reply). Fails the test on an error reply. */
static inline long long redis_cmd(const redis_proc_t *r, const char *fmt, ...) {
  redisContext *c = redis_sync(r);
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  if (!rep)
    fail_msg("redis command failed: %s", c->errstr);
  if (rep->type == REDIS_REPLY_ERROR)
    fail_msg("redis error reply: %s", rep->str);
  long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
  freeReplyObject(rep);
  redisFree(c);
  return v;
}

/* Log level for the tests: error (quiet), or TEST_LOG_LEVEL=debug|info|warn. */
static inline void harness_log_level(void) {
  const char *lv = getenv("TEST_LOG_LEVEL");
  int l = lv ? proto_log_level_parse(lv) : -1;
  proto_log_set_level(l >= 0 ? (proto_log_level_t)l : PROTO_LOG_ERROR);
}

/* --- loop helpers ------------------------------------------------------------ */

typedef struct test_loop {
  uv_loop_t loop;
  uv_timer_t watchdog;     /* fails the test when the whole test runs too long */
  uv_timer_t wait_timer;   /* deadline of the current tl_wait */
  int watchdog_fired;
  int wait_expired;
} test_loop_t;

static inline void tl_on_watchdog(uv_timer_t *t) {
  test_loop_t *tl = t->data;
  tl->watchdog_fired = 1;
  uv_stop(&tl->loop);
}

static inline void tl_on_wait_timer(uv_timer_t *t) {
  test_loop_t *tl = t->data;
  tl->wait_expired = 1;
}

static inline void tl_init(test_loop_t *tl) {
  memset(tl, 0, sizeof(*tl));
  assert_int_equal(uv_loop_init(&tl->loop), 0);
  assert_int_equal(uv_timer_init(&tl->loop, &tl->watchdog), 0);
  assert_int_equal(uv_timer_init(&tl->loop, &tl->wait_timer), 0);
  tl->watchdog.data = tl;
  tl->wait_timer.data = tl;
  assert_int_equal(uv_timer_start(&tl->watchdog, tl_on_watchdog, HARNESS_WATCHDOG_MS, 0), 0);
  uv_unref((uv_handle_t *)&tl->watchdog); /* never keeps the loop alive by itself */
}

typedef int (*tl_cond_fn)(void *arg);

/* Run the loop until cond(arg) holds; fail the test (with what) after
 * timeout_ms or when the watchdog fires. */
static inline void tl_wait(test_loop_t *tl, tl_cond_fn cond, void *arg, unsigned timeout_ms,
                           const char *what) {
  tl->wait_expired = 0;
  assert_int_equal(uv_timer_start(&tl->wait_timer, tl_on_wait_timer, timeout_ms, 0), 0);
  while (!cond(arg) && !tl->wait_expired && !tl->watchdog_fired)
    uv_run(&tl->loop, UV_RUN_ONCE);
  assert_int_equal(uv_timer_stop(&tl->wait_timer), 0);
  if (tl->watchdog_fired)
    fail_msg("watchdog fired while waiting for: %s", what);
  if (!cond(arg))
    fail_msg("timed out after %u ms waiting for: %s", timeout_ms, what);
}

/* Run the loop for ms milliseconds (to show that something does NOT happen). */
static inline void tl_run_for(test_loop_t *tl, unsigned ms) {
  tl->wait_expired = 0;
  assert_int_equal(uv_timer_start(&tl->wait_timer, tl_on_wait_timer, ms, 0), 0);
  while (!tl->wait_expired && !tl->watchdog_fired)
    uv_run(&tl->loop, UV_RUN_ONCE);
  assert_false(tl->watchdog_fired);
}

static inline void tl_walk_report(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "handle still open: type %s, active %d, closing %d\n",
          uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h), uv_is_closing(h));
}

/* Close the harness's timers, let everything finish, and insist that nothing
 * is left on the loop. */
static inline void tl_close(test_loop_t *tl) {
  assert_false(tl->watchdog_fired);
  uv_close((uv_handle_t *)&tl->watchdog, NULL);
  uv_close((uv_handle_t *)&tl->wait_timer, NULL);
  uv_run(&tl->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&tl->loop);
  if (rc != 0)
    uv_walk(&tl->loop, tl_walk_report, NULL);
  assert_int_equal(rc, 0);
}

/* --- a raw RESP subscriber: the exact bytes, no libproto involved ------------- */

typedef struct raw_sub {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  redisReader *reader;
  char cmd[512];
  int subscribed;                         /* SUBSCRIBE confirmed */
  int closed;
  size_t n;                               /* messages received */
  char *chan[HARNESS_RAW_MAX_MSGS];       /* owned copies */
  char *msg[HARNESS_RAW_MAX_MSGS];        /* owned copies, NUL-terminated */
  size_t len[HARNESS_RAW_MAX_MSGS];
} raw_sub_t;

static inline void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  static char slab[65536];
  *buf = uv_buf_init(slab, sizeof(slab));
}

static inline void raw_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  raw_sub_t *rs = (raw_sub_t *)s;
  if (nread < 0) {
    uv_read_stop(s);
    return;
  }
  assert_int_equal(redisReaderFeed(rs->reader, buf->base, (size_t)nread), REDIS_OK);
  void *reply = NULL;
  while (redisReaderGetReply(rs->reader, &reply) == REDIS_OK && reply) {
    redisReply *r = reply;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
      if (strcmp(r->element[0]->str, "subscribe") == 0) {
        rs->subscribed = 1;
      } else if (strcmp(r->element[0]->str, "message") == 0 &&
                 rs->n < HARNESS_RAW_MAX_MSGS) {
        rs->chan[rs->n] = strndup(r->element[1]->str, r->element[1]->len);
        rs->msg[rs->n] = strndup(r->element[2]->str, r->element[2]->len);
        rs->len[rs->n] = r->element[2]->len;
        rs->n++;
      }
    } else if (r->type == REDIS_REPLY_ERROR) {
      fail_msg("raw subscriber got an error: %s", r->str);
    }
    freeReplyObject(r);
    reply = NULL;
  }
}

static inline void raw_on_connect(uv_connect_t *req, int status) {
  raw_sub_t *rs = req->data;
  if (status != 0)
    fail_msg("raw subscriber connect: %s", uv_strerror(status));
  uv_buf_t b = uv_buf_init(rs->cmd, (unsigned)strlen(rs->cmd));
  assert_int_equal(uv_write(&rs->wreq, (uv_stream_t *)&rs->tcp, &b, 1, NULL), 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&rs->tcp, raw_alloc, raw_on_read), 0);
}

/* Connect to redis on the loop, AUTH if it has a password, SUBSCRIBE channel. */
static inline void raw_sub_start(raw_sub_t *rs, uv_loop_t *loop, const redis_proc_t *r,
                                 const char *channel) {
  memset(rs, 0, sizeof(*rs));
  rs->reader = redisReaderCreate();
  assert_non_null(rs->reader);
  size_t off = 0;
  if (r->password[0])
    off = (size_t)snprintf(rs->cmd, sizeof(rs->cmd), "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n",
                           strlen(r->password), r->password);
  snprintf(rs->cmd + off, sizeof(rs->cmd) - off, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n",
           strlen(channel), channel);
  struct sockaddr_in sa;
  assert_int_equal(uv_ip4_addr("127.0.0.1", r->port, &sa), 0);
  assert_int_equal(uv_tcp_init(loop, &rs->tcp), 0);
  rs->creq.data = rs;
  assert_int_equal(uv_tcp_connect(&rs->creq, &rs->tcp, (struct sockaddr *)&sa, raw_on_connect),
                   0);
}

static inline void raw_on_close(uv_handle_t *h) {
  raw_sub_t *rs = (raw_sub_t *)h;
  rs->closed = 1;
}

static inline void raw_sub_close(raw_sub_t *rs) {
  uv_close((uv_handle_t *)&rs->tcp, raw_on_close);
}

static inline void raw_sub_free(raw_sub_t *rs) {
  for (size_t i = 0; i < rs->n; i++) {
    free(rs->chan[i]);
    free(rs->msg[i]);
  }
  redisReaderFree(rs->reader);
  rs->reader = NULL;
  rs->n = 0;
}

static inline int raw_is_subscribed(void *arg) {
  return ((raw_sub_t *)arg)->subscribed;
}

static inline int raw_is_closed(void *arg) {
  return ((raw_sub_t *)arg)->closed;
}

static inline int flag_is_set(void *arg) {
  return *(int *)arg != 0;
}

#endif
