/* redis_conn.c: one Redis connection that stays up. Resolves the host without
 * blocking the loop, connects under a deadline, authenticates (AUTH, or PING to
 * learn that the server answers and needs no password), and after any failure
 * reconnects with exponential backoff. Keeps what a health reply shows. hiredis
 * 0.14 has no connect timeout and no reconnect; this file is both.
 */
#include "redis_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

static void attempt(proto__redis_conn_t *c);

/* --- options ------------------------------------------------------------ */

int proto_redis_opts_from_env(proto_redis_opts_t *opts) {
  int port;
  uint64_t queue_max;
  if (!opts)
    return PROTO_EINVAL;
  if (proto_config_host("REDIS_HOST", PROTO_REDIS_HOST_DEFAULT, &opts->host) != 0 ||
      proto_config_peer_port("REDIS_PORT", PROTO_REDIS_PORT_DEFAULT, &port) != 0 ||
      proto_config_u64("EVENTS_QUEUE_MAX", PROTO_EVENTS_QUEUE_MAX_DEFAULT, 1,
                       PROTO_EVENTS_QUEUE_MAX_LIMIT, &queue_max) != 0)
    return PROTO_EINVAL;
  opts->port = port;
  opts->password = proto_config_str("REDIS_PASSWORD", NULL);
  opts->queue_max = (size_t)queue_max;
  return 0;
}

/* --- logs and state ----------------------------------------------------- */

static void set_error(proto__redis_conn_t *c, const char *why) {
  snprintf(c->last_error, sizeof(c->last_error), "%s", why);
  proto_time_iso(c->last_error_at);
}

static void log_conn(const proto__redis_conn_t *c, proto_log_level_t level,
                     const char *event, const char *why) {
  if (!proto_log_enabled(level))
    return;
  json_t *f = json_pack("{s:s,s:s,s:i}", "name", c->name, "host", c->host, "port",
                        c->port);
  if (f && why)
    json_object_set_new(f, "reason", json_string(why));
  if (f && c->attempts > 0)
    json_object_set_new(f, "attempts", json_integer((json_int_t)c->attempts));
  proto_log_fields(level, NULL, event, f);
}

static void arm(uv_timer_t *t, uv_timer_cb cb, uint64_t ms, proto__redis_conn_t *c) {
  int rc = uv_timer_start(t, cb, ms, 0);
  /* Only fails on a closing handle, which means we are closing anyway. */
  if (rc != 0)
    proto_log(PROTO_LOG_ERROR, NULL, "redis_timer_failed", "%s: uv_timer_start: %s",
              c->name, uv_strerror(rc));
}

static void disarm(uv_timer_t *t) {
  (void)uv_timer_stop(t); /* cannot fail */
}

static void on_retry(uv_timer_t *t) {
  attempt(proto__container_of(t, proto__redis_conn_t, retry_timer));
}

static void schedule_retry(proto__redis_conn_t *c) {
  arm(&c->retry_timer, on_retry, c->backoff_ms, c);
  c->backoff_ms = c->backoff_ms >= c->backoff_max_ms / 2 ? c->backoff_max_ms
                                                           : c->backoff_ms * 2;
}

/* An attempt failed before the connection became READY. */
static void attempt_failed(proto__redis_conn_t *c, const char *why) {
  disarm(&c->deadline_timer);
  c->state = PROTO__REDIS_IDLE;
  c->failures++;
  c->attempts++;
  set_error(c, why);
  /* One warning per outage, then debug lines: a Redis that stays down for an
   * hour must not fill the log at 2 s intervals. */
  log_conn(c, c->attempts == 1 ? PROTO_LOG_WARN : PROTO_LOG_DEBUG,
           "redis_connect_failed", why);
  schedule_retry(c);
}

/* The READY connection went away. */
static void lost(proto__redis_conn_t *c, const char *why) {
  disarm(&c->deadline_timer);
  c->state = PROTO__REDIS_IDLE;
  /* Back to the shortest delay only after a connection that lasted: one that
   * dies at once (a permanent NOPERM on PUBLISH, a server that accepts and
   * drops) must not be retried 20 times a second. */
  if (proto_now_ms() - c->ready_at_ms >= c->backoff_max_ms)
    c->backoff_ms = c->backoff_min_ms;
  set_error(c, why);
  log_conn(c, PROTO_LOG_WARN, "redis_connection_lost", why);
  schedule_retry(c);
  c->ops->on_lost(c);
}

static void went_down(proto__redis_conn_t *c, proto__redis_state_t was, const char *why) {
  if (was == PROTO__REDIS_READY)
    lost(c, why);
  else
    attempt_failed(c, why);
}

static void ready(proto__redis_conn_t *c) {
  disarm(&c->deadline_timer);
  c->state = PROTO__REDIS_READY;
  c->connects++;
  log_conn(c, PROTO_LOG_INFO, "redis_connected", NULL);
  c->attempts = 0;
  c->ready_at_ms = proto_now_ms();
  c->ops->on_ready(c);
}

static void maybe_closed(proto__redis_conn_t *c) {
  if (c->closing && c->handles_open == 0 && !c->closed_notified) {
    c->closed_notified = 1;
    c->ops->on_closed(c);
  }
}

static void free_doomed(proto__redis_conn_t *c) {
  redisAsyncContext *ac = c->doomed;
  if (!ac)
    return;
  c->doomed = NULL; /* its callbacks now see a stranger and ignore it */
  redisAsyncFree(ac);
}

/* --- hiredis callbacks -------------------------------------------------- */

static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata) {
  proto__redis_conn_t *c = privdata;
  const redisReply *r = reply;
  if (!r || ac != c->ac || c->state != PROTO__REDIS_HANDSHAKE)
    return; /* the context is going away; the disconnect path reports it */
  if (r->type == REDIS_REPLY_ERROR) {
    proto__redis_conn_fail(c, "%s: %s", c->password ? "AUTH failed" : "PING failed",
                           r->str ? r->str : "error");
    return;
  }
  ready(c);
}

/* Runs without REDIS_IN_CALLBACK: nothing here may free ac. */
static void on_connect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  proto__redis_conn_t *c = ac->data;
  if (ac == c->doomed) {
    if (status != REDIS_OK)
      c->doomed = NULL; /* hiredis frees it when we return */
    return;
  }
  if (ac != c->ac)
    return;
  if (status != REDIS_OK) {
    char why[PROTO_REDIS_ERROR_MAX];
    snprintf(why, sizeof(why), "connect: %s", ac->errstr ? ac->errstr : "failed");
    c->ac = NULL; /* hiredis frees it when we return */
    attempt_failed(c, why);
    return;
  }
  c->state = PROTO__REDIS_HANDSHAKE;
  int rc = c->password
               ? redisAsyncCommand(ac, on_handshake, c, "AUTH %b", c->password,
                                   strlen(c->password))
               : redisAsyncCommand(ac, on_handshake, c, "PING");
  if (rc != REDIS_OK)
    proto__redis_conn_fail(c, "cannot send %s", c->password ? "AUTH" : "PING");
}

/* Only for contexts that had connected; runs while hiredis frees ac. */
static void on_disconnect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  proto__redis_conn_t *c = ac->data;
  (void)status;
  if (ac == c->doomed) {
    c->doomed = NULL;
    return;
  }
  if (ac != c->ac)
    return;
  char why[PROTO_REDIS_ERROR_MAX];
  snprintf(why, sizeof(why), "%s",
           ac->err && ac->errstr ? ac->errstr : "connection closed");
  c->ac = NULL;
  went_down(c, c->state, why);
}

/* --- adapter callbacks -------------------------------------------------- */

static void on_uv_error(void *arg, redisAsyncContext *ac, int uv_err) {
  proto__redis_conn_t *c = arg;
  if (ac == c->ac)
    proto__redis_conn_fail(c, "socket error: %s", uv_strerror(uv_err));
}

static void on_uv_closed(void *arg) {
  proto__redis_conn_t *c = arg;
  c->handles_open--;
  maybe_closed(c);
}

/* --- connecting --------------------------------------------------------- */

static void connect_addr(proto__redis_conn_t *c, const char *ip) {
  char why[PROTO_REDIS_ERROR_MAX];
  redisAsyncContext *ac = redisAsyncConnect(ip, c->port);
  if (!ac) {
    attempt_failed(c, "connect: out of memory");
    return;
  }
  if (ac->err) {
    snprintf(why, sizeof(why), "connect: %s", ac->errstr ? ac->errstr : "failed");
    redisAsyncFree(ac); /* never connected: no callback runs */
    attempt_failed(c, why);
    return;
  }
  ac->data = c;
  int rc = proto__redis_uv_attach(c->loop, ac, on_uv_error, on_uv_closed, c);
  if (rc != 0) {
    redisAsyncFree(ac);
    attempt_failed(c, rc == PROTO_ENOMEM ? "attach: out of memory" : "attach: cannot poll");
    return;
  }
  c->handles_open++;
  c->ac = ac;
  c->state = PROTO__REDIS_CONNECTING;
  /* The connect callback asks for the first write event: adapter first. */
  if (redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
      redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK)
    proto__redis_conn_fail(c, "cannot set hiredis callbacks");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  proto__redis_conn_t *c = proto__container_of(req, proto__redis_conn_t, gai);
  char ip[64] = "";
  c->gai_pending = 0;
  c->handles_open--;
  if (c->closing || c->state != PROTO__REDIS_RESOLVING) {
    /* Closing, or the deadline gave up on this attempt. */
    uv_freeaddrinfo(res);
    maybe_closed(c);
    return;
  }
  if (status == 0) {
    /* Rotate through the addresses across attempts, so that "localhost"
     * reaches a server bound to 127.0.0.1 even when ::1 comes first. */
    unsigned n = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
      if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
        n++;
    unsigned pick = n ? c->attempts % n : 0;
    for (const struct addrinfo *ai = res; ai && !ip[0]; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
        continue;
      if (pick-- > 0)
        continue;
      status = ai->ai_family == AF_INET
                   ? uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip))
                   : uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
    }
    if (status == 0 && !ip[0])
      status = UV_EAI_NONAME;
  }
  uv_freeaddrinfo(res);
  if (status != 0) {
    char why[PROTO_REDIS_ERROR_MAX];
    snprintf(why, sizeof(why), "resolve %s: %s", c->host, uv_strerror(status));
    attempt_failed(c, why);
    return;
  }
  connect_addr(c, ip);
}

static int is_numeric_host(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0;
}

static void on_deadline(uv_timer_t *t) {
  proto__redis_conn_t *c = proto__container_of(t, proto__redis_conn_t, deadline_timer);
  char why[PROTO_REDIS_ERROR_MAX];
  snprintf(why, sizeof(why), "%s timed out after %u ms",
           c->state == PROTO__REDIS_RESOLVING   ? "resolving the host"
           : c->state == PROTO__REDIS_HANDSHAKE ? (c->password ? "AUTH" : "PING")
                                                : "connect",
           c->connect_timeout_ms);
  switch (c->state) {
  case PROTO__REDIS_RESOLVING:
    /* The resolver cannot be stopped; its callback sees the new state. */
    attempt_failed(c, why);
    break;
  case PROTO__REDIS_CONNECTING:
  case PROTO__REDIS_HANDSHAKE:
    proto__redis_conn_fail(c, "%s", why);
    free_doomed(c); /* a timer callback: outside hiredis, free it now */
    break;
  default:
    break;
  }
}

static void on_kill(uv_timer_t *t) {
  free_doomed(proto__container_of(t, proto__redis_conn_t, kill_timer));
}

static void attempt(proto__redis_conn_t *c) {
  free_doomed(c);
  if (c->closing || c->state != PROTO__REDIS_IDLE)
    return;
  if (c->gai_pending) {
    /* A timed-out resolution still holds the request: try again later. */
    char why[PROTO_REDIS_ERROR_MAX];
    snprintf(why, sizeof(why), "resolving %s: still waiting for the resolver", c->host);
    attempt_failed(c, why);
    return;
  }
  arm(&c->deadline_timer, on_deadline, c->connect_timeout_ms, c);
  if (is_numeric_host(c->host)) {
    connect_addr(c, c->host);
    return;
  }
  /* redisAsyncConnect would call getaddrinfo() on the loop: resolve first. */
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->state = PROTO__REDIS_RESOLVING;
  int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, NULL, &hints);
  if (rc != 0) {
    char why[PROTO_REDIS_ERROR_MAX];
    snprintf(why, sizeof(why), "resolve %s: %s", c->host, uv_strerror(rc));
    attempt_failed(c, why);
    return;
  }
  c->gai_pending = 1;
  c->handles_open++;
}

/* --- public (to libproto) ----------------------------------------------- */

static void on_timer_closed(uv_handle_t *h) {
  proto__redis_conn_t *c = h->data;
  c->handles_open--;
  maybe_closed(c);
}

int proto__redis_conn_init(proto__redis_conn_t *c, uv_loop_t *loop,
                           const proto_redis_opts_t *opts, const char *default_name,
                           const proto__redis_conn_ops_t *ops) {
  static const proto_redis_opts_t defaults;
  if (!opts)
    opts = &defaults;
  memset(c, 0, sizeof(*c));
  if (!loop || !ops || !ops->on_ready || !ops->on_lost || !ops->on_closed ||
      opts->port < 0 || opts->port > 65535)
    return PROTO_EINVAL;
  c->loop = loop;
  c->ops = ops;
  c->port = opts->port ? opts->port : PROTO_REDIS_PORT_DEFAULT;
  c->connect_timeout_ms =
      opts->connect_timeout_ms ? opts->connect_timeout_ms
                               : PROTO_REDIS_CONNECT_TIMEOUT_MS_DEFAULT;
  c->backoff_min_ms = opts->backoff_min_ms ? opts->backoff_min_ms
                                           : PROTO_REDIS_BACKOFF_MIN_MS_DEFAULT;
  c->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms
                                           : PROTO_REDIS_BACKOFF_MAX_MS_DEFAULT;
  if (c->backoff_max_ms < c->backoff_min_ms)
    c->backoff_max_ms = c->backoff_min_ms;
  c->backoff_ms = c->backoff_min_ms;
  c->host = strdup(opts->host && *opts->host ? opts->host : PROTO_REDIS_HOST_DEFAULT);
  c->name = strdup(opts->name && *opts->name ? opts->name : default_name);
  if (opts->password && *opts->password)
    c->password = strdup(opts->password);
  if (!c->host || !c->name || (opts->password && *opts->password && !c->password)) {
    proto__redis_conn_release(c);
    return PROTO_ENOMEM;
  }
  uv_timer_t *timers[] = {&c->retry_timer, &c->deadline_timer, &c->kill_timer};
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
    if (uv_timer_init(loop, timers[i]) != 0) {
      /* Cannot happen with libuv 1.x; the caller closes what was set up. */
      for (size_t j = i; j < sizeof(timers) / sizeof(timers[0]); j++)
        timers[j]->data = NULL;
      return PROTO_EIO;
    }
    timers[i]->data = c;
    c->handles_open++;
  }
  return 0;
}

void proto__redis_conn_start(proto__redis_conn_t *c) {
  attempt(c);
}

redisAsyncContext *proto__redis_conn_ac(const proto__redis_conn_t *c) {
  return c->state == PROTO__REDIS_READY ? c->ac : NULL;
}

int proto__redis_conn_is_current(const proto__redis_conn_t *c, const redisAsyncContext *ac) {
  return ac && c->state == PROTO__REDIS_READY && ac == c->ac;
}

void proto__redis_conn_fail(proto__redis_conn_t *c, const char *fmt, ...) {
  char why[PROTO_REDIS_ERROR_MAX];
  va_list ap;
  if (c->closing || !c->ac)
    return;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  /* We may be inside hiredis (a reply callback, the connect callback, an ev
   * hook): park the context and free it on the next loop turn. From now on
   * every callback of it is a stranger's and is ignored. */
  c->doomed = c->ac;
  c->ac = NULL;
  arm(&c->kill_timer, on_kill, 0, c);
  went_down(c, c->state, why);
}

void proto__redis_conn_close(proto__redis_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  c->state = PROTO__REDIS_CLOSING;
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  if (ac)
    redisAsyncFree(ac); /* deferred by hiredis when called from a reply callback */
  free_doomed(c);
  if (c->gai_pending)
    (void)uv_cancel((uv_req_t *)&c->gai); /* EBUSY when already running: we wait */
  uv_timer_t *timers[] = {&c->retry_timer, &c->deadline_timer, &c->kill_timer};
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
    if (timers[i]->data == c) /* initialised */
      uv_close((uv_handle_t *)timers[i], on_timer_closed);
  maybe_closed(c); /* only when nothing was ever initialised */
}

void proto__redis_conn_release(proto__redis_conn_t *c) {
  free(c->host);
  free(c->name);
  if (c->password) {
    memset(c->password, 0, strlen(c->password));
    free(c->password);
  }
  c->host = c->name = c->password = NULL;
}

void proto__redis_conn_status(const proto__redis_conn_t *c, proto_redis_status_t *out) {
  memset(out, 0, sizeof(*out));
  out->connected = c->state == PROTO__REDIS_READY;
  snprintf(out->last_error, sizeof(out->last_error), "%s", c->last_error);
  snprintf(out->last_error_at, sizeof(out->last_error_at), "%s", c->last_error_at);
  out->connects = c->connects;
  out->connect_failures = c->failures;
}
