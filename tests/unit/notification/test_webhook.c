/* test_webhook.c: webhook delivery (webhook.c) against a tiny HTTP server
 * on 127.0.0.1 port 0 running on the same libuv loop: a 500 then a 200 is
 * one retry then delivered; permanent answers, exhausted attempts, refused
 * connections and timeouts fail; close() interrupts what is in flight or
 * backing off; limits and the health object. Every test arms a watchdog and
 * ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "notification.h"
#include "proto/error.h"
#include "proto/log.h"

#define WATCHDOG_MS 10000
#define SCRIPT_MAX 16
#define HANG 0                /* a script entry: read the request, never answer */
#define REPORTS_MAX 64

/* Case-insensitive strstr (strcasestr is a GNU extension). */
static const char *find_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (strncasecmp(hay, needle, n) == 0)
      return hay;
  return NULL;
}

/* --- a minimal HTTP/1.1 server -------------------------------------------------- */

typedef struct http_srv http_srv_t;

typedef struct conn {
  uv_tcp_t h;
  http_srv_t *srv;
  struct conn *next;
  char buf[65536];
  size_t len;
  int closing;
} conn_t;

struct http_srv {
  uv_tcp_t tcp;
  int port;
  int script[SCRIPT_MAX];     /* statuses to answer, in order; the last repeats */
  size_t nscript;
  size_t requests;            /* complete requests received */
  char first_head[2048];      /* request line and headers of the first request */
  char last_body[4096];
  conn_t *conns;
  int open_handles;
};

typedef struct out_req {
  uv_write_t req;
  char text[256];
} out_req_t;

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h;
  c->srv->open_handles--;
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  http_srv_t *s = c->srv;
  for (conn_t **p = &s->conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  uv_close((uv_handle_t *)&c->h, on_conn_closed);
}

static void answer(conn_t *c, int status) {
  out_req_t *w = malloc(sizeof(*w));
  assert_non_null(w);
  int n = snprintf(w->text, sizeof(w->text),
                   "HTTP/1.1 %d Scripted\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                   "\r\nok",
                   status);
  uv_buf_t b = uv_buf_init(w->text, (unsigned)n);
  assert_int_equal(uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_written), 0);
}

/* Consume every complete request in c->buf. */
static void drain_requests(conn_t *c) {
  http_srv_t *s = c->srv;
  for (;;) {
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end)
      return;
    size_t head_len = (size_t)(end - c->buf) + 4, body_len = 0;
    for (char *p = c->buf; p < end; p++) {
      if (strncasecmp(p, "\r\ncontent-length:", 17) == 0) {
        body_len = strtoul(p + 17, NULL, 10);
        break;
      }
    }
    if (c->len < head_len + body_len)
      return;
    if (s->requests == 0)
      snprintf(s->first_head, sizeof(s->first_head), "%.*s", (int)head_len, c->buf);
    snprintf(s->last_body, sizeof(s->last_body), "%.*s", (int)body_len, c->buf + head_len);
    int status = s->script[s->requests < s->nscript ? s->requests : s->nscript - 1];
    s->requests++;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    if (status != HANG)
      answer(c, status);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = (conn_t *)h;
  (void)suggested;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)st;
  (void)buf;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  drain_requests(c);
}

static void on_connection(uv_stream_t *server, int status) {
  http_srv_t *s = (http_srv_t *)server;
  assert_int_equal(status, 0);
  conn_t *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->srv = s;
  assert_int_equal(uv_tcp_init(server->loop, &c->h), 0);
  s->open_handles++;
  c->next = s->conns;
  s->conns = c;
  assert_int_equal(uv_accept(server, (uv_stream_t *)&c->h), 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read), 0);
}

static void srv_start(http_srv_t *s, uv_loop_t *loop) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
  s->open_handles++;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
  assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 16, on_connection), 0);
  assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len), 0);
  s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void on_srv_closed(uv_handle_t *h) {
  ((http_srv_t *)h)->open_handles--;
}

static void srv_stop(http_srv_t *s) {
  while (s->conns)
    conn_close(s->conns);
  if (!uv_is_closing((uv_handle_t *)&s->tcp))
    uv_close((uv_handle_t *)&s->tcp, on_srv_closed);
}

/* --- fixture -------------------------------------------------------------------- */

typedef struct report_copy {
  ntf_delivery_t status;
  unsigned attempts;
  long http_status;
  char error[NTF_WEBHOOK_ERROR_MAX];
  int has_error;
  unsigned retry_in_ms;
  int final;
  char id[64];
  char request_id[64];
} report_copy_t;

typedef struct fixture {
  uv_loop_t loop;
  uv_timer_t watchdog;
  http_srv_t srv;
  ntf_webhook_t *w;
  report_copy_t reports[REPORTS_MAX];
  size_t nreports;
  size_t finals;
  int closed;                 /* the webhook's done callback ran */
  char url[128];
} fixture_t;

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fail_msg("watchdog: test did not finish in time");
}

static void on_report(const ntf_webhook_report_t *r, void *ctx) {
  fixture_t *f = ctx;
  assert_true(f->nreports < REPORTS_MAX);
  report_copy_t *c = &f->reports[f->nreports++];
  c->status = r->status;
  c->attempts = r->attempts;
  c->http_status = r->http_status;
  c->has_error = r->error != NULL;
  snprintf(c->error, sizeof(c->error), "%s", r->error ? r->error : "");
  c->retry_in_ms = r->retry_in_ms;
  c->final = r->final;
  snprintf(c->id, sizeof(c->id), "%s", r->id);
  snprintf(c->request_id, sizeof(c->request_id), "%s", r->request_id ? r->request_id : "");
  if (r->final)
    f->finals++;
}

static void on_closed(void *arg) {
  fixture_t *f = arg;
  f->closed++;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (!f || uv_loop_init(&f->loop) != 0)
    return -1;
  uv_timer_init(&f->loop, &f->watchdog);
  uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
  uv_unref((uv_handle_t *)&f->watchdog);
  srv_start(&f->srv, &f->loop);
  f->srv.script[0] = 200;
  f->srv.nscript = 1;
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/hook", f->srv.port);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->w && !f->closed) {
    ntf_webhook_close(f->w, 0, on_closed, f);
    while (!f->closed)
      uv_run(&f->loop, UV_RUN_ONCE);
  }
  srv_stop(&f->srv);
  uv_close((uv_handle_t *)&f->watchdog, NULL);
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) {
  }
  assert_int_equal(f->srv.open_handles, 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

static void script(fixture_t *f, size_t n, const int *statuses) {
  memcpy(f->srv.script, statuses, n * sizeof(int));
  f->srv.nscript = n;
}

static ntf_webhook_t *make(fixture_t *f, ntf_webhook_opts_t opts) {
  if (!opts.url)
    opts.url = f->url;
  f->w = ntf_webhook_new(&f->loop, &opts, on_report, f);
  assert_non_null(f->w);
  return f->w;
}

static void submit(fixture_t *f, const char *id, unsigned attempts_done) {
  json_t *body = json_pack("{s:s, s:s, s:s}", "id", id, "userId", "u1", "message",
                           "Your order o1 for 39.98 USD has been received");
  assert_int_equal(ntf_webhook_submit(f->w, id, "req-1", body, attempts_done), 0);
}

static void run_until_finals(fixture_t *f, size_t finals) {
  while (f->finals < finals)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static void close_webhook(fixture_t *f, unsigned deadline_ms) {
  ntf_webhook_close(f->w, deadline_ms, on_closed, f);
  while (!f->closed)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->closed, 1);
}

/* --- tests ------------------------------------------------------------------------ */

static void retry_then_delivered(void **state) {
  fixture_t *f = *state;
  static const int s[] = {500, 200};
  script(f, 2, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 20});
  submit(f, "ntf_0001", 0);
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 2);
  report_copy_t *r = &f->reports[0];
  assert_int_equal(r->status, NTF_DELIVERY_PENDING);
  assert_false(r->final);
  assert_int_equal(r->attempts, 1);
  assert_int_equal(r->http_status, 500);
  assert_string_equal(r->error, "HTTP status 500");
  assert_int_equal(r->retry_in_ms, 20);
  assert_string_equal(r->id, "ntf_0001");
  assert_string_equal(r->request_id, "req-1");
  r = &f->reports[1];
  assert_int_equal(r->status, NTF_DELIVERY_DELIVERED);
  assert_true(r->final);
  assert_int_equal(r->attempts, 2);
  assert_int_equal(r->http_status, 200);
  assert_false(r->has_error);
  assert_int_equal(f->srv.requests, 2);
  /* What went over the wire. */
  assert_non_null(strstr(f->srv.first_head, "POST /hook HTTP/1.1\r\n"));
  assert_non_null(find_ci(f->srv.first_head, "\r\nContent-Type: application/json\r\n"));
  assert_non_null(find_ci(f->srv.first_head, "\r\nIdempotency-Key: ntf_0001\r\n"));
  assert_non_null(find_ci(f->srv.first_head, "\r\nX-Request-Id: req-1\r\n"));
  assert_null(find_ci(f->srv.first_head, "Expect:"));
  json_error_t e;
  json_t *body = json_loads(f->srv.last_body, 0, &e);
  assert_non_null(body);
  assert_string_equal(json_string_value(json_object_get(body, "id")), "ntf_0001");
  json_decref(body);
  ntf_webhook_stats_t st;
  ntf_webhook_stats(f->w, &st);
  assert_int_equal(st.attempts, 2);
  assert_int_equal(st.delivered, 1);
  assert_int_equal(st.retries, 1);
  assert_int_equal(st.failed, 0);
  assert_int_equal(st.active, 0);
  assert_int_equal(st.inflight, 0);
  close_webhook(f, 0);
}

static void permanent_answer_fails_at_once(void **state) {
  fixture_t *f = *state;
  static const int s[] = {404, 200};
  script(f, 2, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 10});
  submit(f, "ntf_0002", 0);
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_FAILED);
  assert_int_equal(f->reports[0].attempts, 1);
  assert_int_equal(f->reports[0].http_status, 404);
  assert_string_equal(f->reports[0].error, "HTTP status 404");
  assert_int_equal(f->srv.requests, 1);
  close_webhook(f, 0);
}

static void attempts_exhausted_with_doubling_backoff(void **state) {
  fixture_t *f = *state;
  static const int s[] = {503, 429, 500, 200};
  script(f, 4, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 10, .max_attempts = 3});
  submit(f, "ntf_0003", 0);
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 3);
  assert_int_equal(f->reports[0].retry_in_ms, 10);
  assert_int_equal(f->reports[1].retry_in_ms, 20);
  assert_int_equal(f->reports[1].http_status, 429);
  assert_int_equal(f->reports[2].status, NTF_DELIVERY_FAILED);
  assert_int_equal(f->reports[2].attempts, 3);
  assert_int_equal(f->reports[2].http_status, 500);
  assert_int_equal(f->srv.requests, 3);
  close_webhook(f, 0);
}

static void backoff_is_capped(void **state) {
  fixture_t *f = *state;
  static const int s[] = {500, 500, 500, 500, 200};
  script(f, 5, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 10, .backoff_max_ms = 25});
  submit(f, "ntf_0004", 0);
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 5);
  assert_int_equal(f->reports[0].retry_in_ms, 10);
  assert_int_equal(f->reports[1].retry_in_ms, 20);
  assert_int_equal(f->reports[2].retry_in_ms, 25);
  assert_int_equal(f->reports[3].retry_in_ms, 25);
  assert_int_equal(f->reports[4].status, NTF_DELIVERY_DELIVERED);
  assert_int_equal(f->reports[4].attempts, 5);
  close_webhook(f, 0);
}

static void refused_connection_is_retried(void **state) {
  fixture_t *f = *state;
  /* A port that was just free: bind a socket, read its port, close it. */
  uv_tcp_t probe;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_init(&f->loop, &probe);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len), 0);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/",
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
  uv_close((uv_handle_t *)&probe, NULL);
  make(f, (ntf_webhook_opts_t){.url = url, .backoff_ms = 10, .max_attempts = 2});
  submit(f, "ntf_0005", 0);
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 2);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_PENDING);
  assert_int_equal(f->reports[0].http_status, 0);
  assert_true(f->reports[0].has_error);
  assert_int_equal(f->reports[1].status, NTF_DELIVERY_FAILED);
  assert_int_equal(f->reports[1].attempts, 2);
  close_webhook(f, 0);
}

static void slow_answer_times_out(void **state) {
  fixture_t *f = *state;
  static const int s[] = {HANG};
  script(f, 1, s);
  make(f, (ntf_webhook_opts_t){.timeout_ms = 150, .max_attempts = 1});
  uint64_t t0 = uv_hrtime();
  submit(f, "ntf_0006", 0);
  run_until_finals(f, 1);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms >= 140);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_FAILED);
  assert_int_equal(f->reports[0].http_status, 0);
  assert_non_null(find_ci(f->reports[0].error, "time"));
  close_webhook(f, 0);
}

static void close_interrupts_inflight(void **state) {
  fixture_t *f = *state;
  static const int s[] = {HANG};
  script(f, 1, s);
  make(f, (ntf_webhook_opts_t){.timeout_ms = 5000});
  submit(f, "ntf_0007", 0);
  while (f->srv.requests < 1)
    uv_run(&f->loop, UV_RUN_ONCE);
  uint64_t t0 = uv_hrtime();
  close_webhook(f, 50);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms < 2000); /* the deadline, not the 5 s attempt timeout */
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_PENDING);
  assert_true(f->reports[0].final);
  assert_int_equal(f->reports[0].attempts, 1);
  assert_string_equal(f->reports[0].error, "interrupted by shutdown");
  f->w = NULL;
}

static void close_lets_inflight_finish(void **state) {
  fixture_t *f = *state;
  make(f, (ntf_webhook_opts_t){0});
  submit(f, "ntf_0008", 0);
  /* Close at once: the POST in flight may still complete within the deadline. */
  close_webhook(f, 5000);
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_DELIVERED);
  f->w = NULL;
}

static void close_ends_backoff(void **state) {
  fixture_t *f = *state;
  static const int s[] = {500};
  script(f, 1, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 10000});
  submit(f, "ntf_0009", 0);
  while (f->nreports < 1)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_false(f->reports[0].final);
  close_webhook(f, 1000);
  assert_int_equal(f->nreports, 2);
  assert_int_equal(f->reports[1].status, NTF_DELIVERY_PENDING);
  assert_true(f->reports[1].final);
  assert_int_equal(f->reports[1].attempts, 1);
  assert_string_equal(f->reports[1].error, "HTTP status 500"); /* the last real failure */
  f->w = NULL;
}

static void earlier_attempts_count(void **state) {
  fixture_t *f = *state;
  static const int s[] = {500};
  script(f, 1, s);
  make(f, (ntf_webhook_opts_t){.backoff_ms = 10, .max_attempts = 5});
  submit(f, "ntf_0010", 4); /* a restart after four attempts: one more */
  run_until_finals(f, 1);
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_FAILED);
  assert_int_equal(f->reports[0].attempts, 5);
  close_webhook(f, 0);
}

static void many_with_bounded_concurrency(void **state) {
  fixture_t *f = *state;
  char id[32];
  make(f, (ntf_webhook_opts_t){.concurrency = 3});
  for (int i = 0; i < 20; i++) {
    snprintf(id, sizeof(id), "ntf_m%02d", i);
    submit(f, id, 0);
    ntf_webhook_stats_t st;
    ntf_webhook_stats(f->w, &st);
    assert_true(st.inflight <= 3);
  }
  run_until_finals(f, 20);
  for (size_t i = 0; i < f->nreports; i++)
    assert_int_equal(f->reports[i].status, NTF_DELIVERY_DELIVERED);
  assert_int_equal(f->srv.requests, 20);
  close_webhook(f, 0);
}

static void submit_limits(void **state) {
  fixture_t *f = *state;
  static const int s[] = {HANG};
  script(f, 1, s);
  make(f, (ntf_webhook_opts_t){.queue_max = 1});
  submit(f, "ntf_0011", 0);
  assert_int_equal(ntf_webhook_submit(f->w, "ntf_0012", NULL, json_object(), 0), PROTO_EFULL);
  assert_int_equal(ntf_webhook_submit(f->w, NULL, NULL, json_object(), 0), PROTO_EINVAL);
  assert_int_equal(ntf_webhook_submit(f->w, "bad\r\nid", NULL, json_object(), 0), PROTO_EINVAL);
  close_webhook(f, 0);
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->reports[0].status, NTF_DELIVERY_PENDING);
  f->w = NULL;
}

static void submit_after_close_is_refused(void **state) {
  fixture_t *f = *state;
  make(f, (ntf_webhook_opts_t){0});
  ntf_webhook_close(f->w, 0, on_closed, f);
  assert_int_equal(ntf_webhook_submit(f->w, "ntf_0013", NULL, json_object(), 0), PROTO_ECLOSED);
  while (!f->closed)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->nreports, 0);
  f->w = NULL;
}

static void bad_urls_and_health(void **state) {
  fixture_t *f = *state;
  static const char *const bad[] = {"", "not a url", "ftp://127.0.0.1/x", "http://",
                                    "file:///etc/passwd"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ntf_webhook_opts_t o = {.url = bad[i]};
    assert_null(ntf_webhook_new(&f->loop, &o, NULL, NULL));
  }
  make(f, (ntf_webhook_opts_t){.url = "http://user:secret@127.0.0.1:9/hook?token=abc"});
  json_t *h = ntf_webhook_health(f->w);
  assert_non_null(h);
  assert_string_equal(json_string_value(json_object_get(h, "url")), "http://127.0.0.1:9/hook");
  assert_int_equal(json_integer_value(json_object_get(h, "active")), 0);
  json_decref(h);
  assert_string_equal(ntf_delivery_name(NTF_DELIVERY_PENDING), "pending");
  assert_string_equal(ntf_delivery_name(NTF_DELIVERY_DELIVERED), "delivered");
  assert_string_equal(ntf_delivery_name(NTF_DELIVERY_FAILED), "failed");
  close_webhook(f, 0);
  f->w = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(retry_then_delivered, setup, teardown),
      cmocka_unit_test_setup_teardown(permanent_answer_fails_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(attempts_exhausted_with_doubling_backoff, setup, teardown),
      cmocka_unit_test_setup_teardown(backoff_is_capped, setup, teardown),
      cmocka_unit_test_setup_teardown(refused_connection_is_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(slow_answer_times_out, setup, teardown),
      cmocka_unit_test_setup_teardown(close_interrupts_inflight, setup, teardown),
      cmocka_unit_test_setup_teardown(close_lets_inflight_finish, setup, teardown),
      cmocka_unit_test_setup_teardown(close_ends_backoff, setup, teardown),
      cmocka_unit_test_setup_teardown(earlier_attempts_count, setup, teardown),
      cmocka_unit_test_setup_teardown(many_with_bounded_concurrency, setup, teardown),
      cmocka_unit_test_setup_teardown(submit_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(submit_after_close_is_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_urls_and_health, setup, teardown),
  };
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return 1;
  proto_log_set_level(PROTO_LOG_ERROR);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
