/* pg_conn.c: one pooled PostgreSQL connection on the loop: PQconnectStart/
 * PQconnectPoll driven by a uv_poll_t with a connect deadline, pipeline mode,
 * the pool's statements prepared before it takes queries, results read as
 * they arrive (PQconsumeInput/PQisBusy/PQgetResult) and matched to the
 * in-flight FIFO by sync point, and on any failure: in-flight queries failed,
 * the socket dropped, a retry after an exponential backoff.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pg_internal.h"
#include "proto/log.h"

#define PG_STMT_NAME_BYTES 16

static void on_watch_closed(uv_handle_t *h) {
  store__pg_watch_t *w = (store__pg_watch_t *)h;
  store_pg_pool_t *pool = w->conn->pool;
  free(w);
  store__pg_handle_closed(pool);
}

/* Stop watching the current socket. uv_close unregisters the fd at once, so
 * libpq may close it (and reuse its number) right after. */
static void unwatch(store__pg_conn_t *c) {
  if (c->watch == NULL)
    return;
  uv_close((uv_handle_t *)&c->watch->poll, on_watch_closed);
  c->watch = NULL;
}

static void on_event(uv_poll_t *h, int status, int events);

/* Watch libpq's current socket for events, on a fresh handle unless the one
 * we have is already on it. 0 or -1 (logged). */
static int watch(store__pg_conn_t *c, int events, int fresh) {
  int fd = PQsocket(c->pg), rc;
  if (fd < 0)
    return -1;
  if (fresh)
    unwatch(c);
  if (c->watch == NULL) {
    store__pg_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
      return -1;
    w->conn = c;
    rc = uv_poll_init(c->pool->loop, &w->poll, fd);
    if (rc != 0) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "pg conn %u: uv_poll_init: %s",
                c->index, uv_strerror(rc));
      free(w);
      return -1;
    }
    c->pool->open_handles++;
    c->watch = w;
  }
  rc = uv_poll_start(&c->watch->poll, events, on_event);
  if (rc != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "pg conn %u: uv_poll_start: %s",
              c->index, uv_strerror(rc));
    return -1;
  }
  return 0;
}

/* Fail every query in flight with rc (callbacks may queue new queries or
 * close the pool: one at a time, the queue re-read each time). */
static void fail_inflight(store__pg_conn_t *c, int rc, const char *why) {
  store__pg_query_t *q;
  while ((q = store__pg_queue_pop(&c->inflight)) != NULL)
    store__pg_query_finish(q, rc, why);
}

static void on_timer(uv_timer_t *t);

static void arm_timer(store__pg_conn_t *c, unsigned ms) {
  int rc = uv_timer_start(&c->timer, on_timer, ms, 0);
  if (rc != 0) /* cannot happen for an initialised timer; say so if it does */
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "pg conn %u: uv_timer_start: %s",
              c->index, uv_strerror(rc));
}

/* The connection failed (or was lost): drop it, fail what was in flight and
 * try again after the backoff. */
static void drop(store__pg_conn_t *c, const char *event, const char *why) {
  char msg[256];
  int was_ready = c->state == STORE__PG_READY;
  /* While the server stays down every retry fails: one line for the first,
   * the rest at debug level. */
  proto_log_level_t level = was_ready ? PROTO_LOG_WARN : c->failed ? PROTO_LOG_DEBUG : PROTO_LOG_INFO;
  snprintf(msg, sizeof(msg), "%s", why != NULL && why[0] != '\0' ? why : "connection failed");
  msg[strcspn(msg, "\n")] = '\0'; /* libpq messages end in a newline */
  unwatch(c);
  if (c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  c->want_write = 0;
  c->failed = 1;
  c->pool->stats.connect_failures++;
  c->state = STORE__PG_WAITING;
  (void)uv_timer_stop(&c->timer);
  proto_log_fields(level, NULL, event,
                   json_pack("{s:s, s:I, s:s, s:I}", "engine", "postgresql", "conn",
                             (json_int_t)c->index, "error", msg, "retryMs",
                             (json_int_t)c->backoff_ms));
  arm_timer(c, c->backoff_ms);
  c->backoff_ms = c->backoff_ms * 2 > c->pool->backoff_max_ms ? c->pool->backoff_max_ms
                                                              : c->backoff_ms * 2;
  /* The state is set first: a callback that queues now sees the outage. */
  fail_inflight(c, STORE_PG_CONNLOST, msg);
  if (c->state == STORE__PG_WAITING) /* not closed by a callback */
    store__pg_pool_changed(c->pool);
}

static void lost(store__pg_conn_t *c) {
  drop(c, "pg_connection_lost", c->pg != NULL ? PQerrorMessage(c->pg) : NULL);
}

static void became_ready(store__pg_conn_t *c) {
  c->state = STORE__PG_READY;
  c->failed = 0;
  c->backoff_ms = c->pool->backoff_min_ms;
  (void)uv_timer_stop(&c->timer);
  proto_log_fields(PROTO_LOG_INFO, NULL, "pg_connected",
                   json_pack("{s:s, s:I, s:i}", "engine", "postgresql", "conn",
                             (json_int_t)c->index, "serverVersion", PQserverVersion(c->pg)));
  store__pg_pool_changed(c->pool);
}

/* Connected: non-blocking writes, pipeline mode, then the pool's statements
 * prepared (each with its own sync point, like any query). */
static void connected(store__pg_conn_t *c) {
  store_pg_pool_t *pool = c->pool;
  if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
    drop(c, "pg_connect_failed", PQerrorMessage(c->pg));
    return;
  }
  if (watch(c, UV_READABLE, 0) != 0) {
    drop(c, "pg_connect_failed", "cannot watch the socket");
    return;
  }
  if (pool->n_stmts == 0) {
    became_ready(c);
    return;
  }
  c->state = STORE__PG_PREPARING;
  for (unsigned i = 0; i < pool->n_stmts; i++) {
    store__pg_query_t *q = calloc(1, sizeof(*q));
    char name[PG_STMT_NAME_BYTES];
    if (q == NULL) {
      drop(c, "pg_connect_failed", "out of memory");
      return;
    }
    q->stmt = (int)i;
    q->prepare = 1;
    q->sql = pool->stmts[i];
    snprintf(name, sizeof(name), "s%u", i);
    if (PQsendPrepare(c->pg, name, q->sql, 0, NULL) != 1 || PQpipelineSync(c->pg) != 1) {
      free(q);
      drop(c, "pg_connect_failed", PQerrorMessage(c->pg));
      return;
    }
    store__pg_queue_push(&c->inflight, q);
  }
  store__pg_conn_flush(c);
}

/* A prepare came back: the last one makes the connection ready. A failing
 * one is a wrong statement in the service's set: logged, and the connection
 * retried (so the operator sees it every backoff, and nothing runs on a
 * connection without its statements). */
static int prepared(store__pg_conn_t *c, store__pg_query_t *q) {
  unsigned stmt = (unsigned)q->stmt;
  int rc = store__pg_query_finish(q, STORE_OK, NULL);
  if (rc != STORE_OK) {
    char why[64];
    snprintf(why, sizeof(why), "statement %u does not prepare", stmt);
    drop(c, "pg_connect_failed", why);
    return -1;
  }
  if (c->inflight.n == 0 && c->state == STORE__PG_PREPARING)
    became_ready(c);
  return 0;
}

/* Read every complete result. In pipeline mode libpq gives, per statement,
 * its result(s), then NULL, then PGRES_PIPELINE_SYNC for its sync point: the
 * sync completes the head of the in-flight FIFO. A callback may close the
 * pool or drop this connection: c->pg is re-checked every time. */
static void read_results(store__pg_conn_t *c) {
  while (c->pg != NULL && c->inflight.head != NULL) {
    store__pg_query_t *q = c->inflight.head;
    if (PQisBusy(c->pg))
      break;
    PGresult *r = PQgetResult(c->pg);
    if (r == NULL) {
      if (q->saw_end)
        break; /* nothing more buffered: wait for the socket */
      q->saw_end = 1;
      continue;
    }
    if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      (void)store__pg_queue_pop(&c->inflight);
      if (q->prepare) {
        if (prepared(c, q) != 0)
          return;
      } else {
        (void)store__pg_query_finish(q, STORE_OK, NULL);
      }
      continue;
    }
    q->saw_end = 0;
    /* Keep the first result, or a later error over a success. */
    if (q->res == NULL) {
      q->res = r;
    } else if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
               PQresultStatus(q->res) != PGRES_FATAL_ERROR) {
      PQclear(q->res);
      q->res = r;
    } else {
      PQclear(r);
    }
  }
  if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD)
    lost(c);
}

static void on_connect_event(store__pg_conn_t *c) {
  switch (PQconnectPoll(c->pg)) {
  case PGRES_POLLING_READING:
    if (watch(c, UV_READABLE, 1) != 0)
      drop(c, "pg_connect_failed", "cannot watch the socket");
    return;
  case PGRES_POLLING_WRITING:
    if (watch(c, UV_WRITABLE, 1) != 0)
      drop(c, "pg_connect_failed", "cannot watch the socket");
    return;
  case PGRES_POLLING_OK:
    connected(c);
    return;
  default:
    drop(c, "pg_connect_failed", PQerrorMessage(c->pg));
    return;
  }
}

static void on_event(uv_poll_t *h, int status, int events) {
  store__pg_watch_t *w = (store__pg_watch_t *)h;
  store__pg_conn_t *c = w->conn;
  if (c->watch != w || c->pg == NULL)
    return; /* an event for a socket we already let go */
  if (c->state == STORE__PG_CONNECTING) {
    /* libpq may open a new socket while it tries the next address (or
     * gives up on SSL), possibly under the same number: so every step of the
     * connect watches afresh (watch(..., 1)). */
    on_connect_event(c);
    return;
  }
  if (status < 0) {
    drop(c, "pg_connection_lost", uv_strerror(status));
    return;
  }
  if ((events & UV_READABLE) && PQconsumeInput(c->pg) != 1) {
    lost(c);
    return;
  }
  if (c->want_write) {
    store__pg_conn_flush(c); /* may drop c */
    if (c->pg == NULL)
      return;
  }
  read_results(c);
}

/* The backoff ended (start an attempt) or an attempt took too long. */
static void on_timer(uv_timer_t *t) {
  store__pg_conn_t *c = (store__pg_conn_t *)((char *)t - offsetof(store__pg_conn_t, timer));
  if (c->state == STORE__PG_WAITING) {
    store__pg_conn_start(c);
  } else if (c->state == STORE__PG_CONNECTING || c->state == STORE__PG_PREPARING) {
    char why[64];
    snprintf(why, sizeof(why), "no connection within %u ms", c->pool->connect_timeout_ms);
    drop(c, "pg_connect_failed", why);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  store__pg_conn_t *c = (store__pg_conn_t *)((char *)h - offsetof(store__pg_conn_t, timer));
  store__pg_handle_closed(c->pool);
}

int store__pg_conn_init(store_pg_pool_t *pool, store__pg_conn_t *c, unsigned index) {
  memset(c, 0, sizeof(*c));
  c->pool = pool;
  c->index = index;
  c->backoff_ms = pool->backoff_min_ms;
  c->state = STORE__PG_WAITING;
  if (uv_timer_init(pool->loop, &c->timer) != 0)
    return -1;
  pool->open_handles++;
  return 0;
}

void store__pg_conn_start(store__pg_conn_t *c) {
  /* See store/pg.h: a host name is resolved by libpq, blocking. */
  c->pg = PQconnectStart(c->pool->dsn);
  if (c->pg == NULL) {
    drop(c, "pg_connect_failed", "out of memory");
    return;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    drop(c, "pg_connect_failed", PQerrorMessage(c->pg));
    return;
  }
  c->state = STORE__PG_CONNECTING;
  arm_timer(c, c->pool->connect_timeout_ms);
  /* libpq: start as if PQconnectPoll had said PGRES_POLLING_WRITING. */
  if (watch(c, UV_WRITABLE, 1) != 0)
    drop(c, "pg_connect_failed", "cannot watch the socket");
}

int store__pg_conn_send(store__pg_conn_t *c, store__pg_query_t *q) {
  int ok;
  if (q->stmt >= 0) {
    char name[PG_STMT_NAME_BYTES];
    snprintf(name, sizeof(name), "s%d", q->stmt);
    ok = PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0);
  } else {
    ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
  }
  if (ok != 1) {
    if (PQstatus(c->pg) != CONNECTION_BAD)
      return -1; /* this statement's fault (libpq said why) */
    store__pg_queue_push(&c->inflight, q);
    lost(c);
    return 0;
  }
  /* A sync point per statement: each runs (and commits) on its own, and a
   * failing one does not abort the others sent with it. */
  if (PQpipelineSync(c->pg) != 1) {
    /* The query is in libpq's queue without its sync: the connection is
     * unusable. Keep q in flight so it fails with the rest. */
    store__pg_queue_push(&c->inflight, q);
    lost(c);
    return 0;
  }
  store__pg_queue_push(&c->inflight, q);
  return 0;
}

void store__pg_conn_flush(store__pg_conn_t *c) {
  int rc;
  if (c->pg == NULL)
    return;
  rc = PQflush(c->pg);
  if (rc < 0) {
    lost(c);
    return;
  }
  c->want_write = rc == 1;
  if (watch(c, c->want_write ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0) != 0)
    drop(c, "pg_connection_lost", "cannot watch the socket");
}

void store__pg_conn_close(store__pg_conn_t *c) {
  if (c->state == STORE__PG_CLOSED)
    return;
  c->state = STORE__PG_CLOSED;
  unwatch(c);
  if (c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  (void)uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  fail_inflight(c, STORE_PG_CANCELED, "the pool is closing");
}
