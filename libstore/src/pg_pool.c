/* pg_pool.c: the PostgreSQL pool of a process: its configuration, the
 * queue of statements waiting for this loop turn, the prepare handle that
 * hands them to the least busy ready connection right before the loop polls
 * (so a turn's statements leave in one write), the "down" rule (fail at once
 * while no connection is up) and the close that frees everything in the last
 * handle's close callback.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pg_internal.h"
#include "proto/log.h"

#define PG_UNAVAILABLE_MSG "no connection to the database"

void store__pg_queue_push(store__pg_queue_t *q, store__pg_query_t *item) {
  item->next = NULL;
  if (q->tail != NULL)
    q->tail->next = item;
  else
    q->head = item;
  q->tail = item;
  q->n++;
}

store__pg_query_t *store__pg_queue_pop(store__pg_queue_t *q) {
  store__pg_query_t *item = q->head;
  if (item == NULL)
    return NULL;
  q->head = item->next;
  if (q->head == NULL)
    q->tail = NULL;
  q->n--;
  item->next = NULL;
  return item;
}

/* Worth queueing for: a connection is up, or one is still on an attempt
 * that has not failed yet (the first one at start-up). While every
 * connection is failing, waiting would only turn a 503 into a hang. */
static int pool_hopeful(const store_pg_pool_t *pool) {
  for (unsigned i = 0; i < pool->n_conns; i++) {
    const store__pg_conn_t *c = &pool->conns[i];
    if (c->state == STORE__PG_READY)
      return 1;
    if ((c->state == STORE__PG_CONNECTING || c->state == STORE__PG_PREPARING) && !c->failed)
      return 1;
  }
  return 0;
}

static void fail_pending(store_pg_pool_t *pool, int rc, const char *why) {
  store__pg_query_t *q;
  while ((q = store__pg_queue_pop(&pool->pending)) != NULL)
    store__pg_query_finish(q, rc, why);
}

/* The ready connection with the fewest statements in flight (room left). */
static store__pg_conn_t *pick(store_pg_pool_t *pool) {
  store__pg_conn_t *best = NULL;
  for (unsigned i = 0; i < pool->n_conns; i++) {
    store__pg_conn_t *c = &pool->conns[i];
    if (c->state != STORE__PG_READY || c->inflight.n >= STORE_PG_PIPELINE_MAX)
      continue;
    if (best == NULL || c->inflight.n < best->inflight.n)
      best = c;
  }
  return best;
}

static void flush_stop(store_pg_pool_t *pool) {
  if (pool->flush_active) {
    (void)uv_prepare_stop(&pool->flush);
    pool->flush_active = 0;
  }
}

/* Send everything queued, then flush each connection once. */
static void on_flush(uv_prepare_t *h) {
  store_pg_pool_t *pool = (store_pg_pool_t *)((char *)h - offsetof(store_pg_pool_t, flush));
  store__pg_conn_t *c;
  while (!pool->closing && pool->pending.head != NULL && (c = pick(pool)) != NULL) {
    store__pg_query_t *q = store__pg_queue_pop(&pool->pending);
    if (store__pg_conn_send(c, q) != 0) {
      char why[256];
      snprintf(why, sizeof(why), "%s", PQerrorMessage(c->pg));
      why[strcspn(why, "\n")] = '\0';
      proto_log_fields(PROTO_LOG_ERROR, NULL, "storage_error",
                       json_pack("{s:s, s:s, s:s}", "engine", "postgresql", "op", "send",
                                 "error", why));
      store__pg_query_finish(q, STORE_ERROR, why);
      continue;
    }
    pool->stats.sent++;
    c->dirty = 1;
  }
  for (unsigned i = 0; i < pool->n_conns && !pool->closing; i++) {
    c = &pool->conns[i];
    if (c->dirty) {
      c->dirty = 0;
      if (c->state == STORE__PG_READY) {
        pool->stats.batches++;
        store__pg_conn_flush(c);
      }
    }
  }
  if (pool->closing)
    return;
  if (pool->pending.head == NULL)
    flush_stop(pool);
  else if (!pool_hopeful(pool))
    fail_pending(pool, STORE_PG_UNAVAILABLE, PG_UNAVAILABLE_MSG);
  /* else: every ready connection is full, or the first attempt is still
   * going: try again next turn. */
}

static void flush_start(store_pg_pool_t *pool) {
  if (!pool->flush_active && !pool->closing) {
    int rc = uv_prepare_start(&pool->flush, on_flush);
    if (rc != 0) { /* cannot happen for an initialised handle; say so if it does */
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "pg: uv_prepare_start: %s",
                uv_strerror(rc));
      return;
    }
    pool->flush_active = 1;
  }
}

void store__pg_pool_changed(store_pg_pool_t *pool) {
  if (pool->closing || pool->pending.head == NULL)
    return;
  if (pool_hopeful(pool))
    flush_start(pool);
  else
    fail_pending(pool, STORE_PG_UNAVAILABLE, PG_UNAVAILABLE_MSG);
}

static void pool_free(store_pg_pool_t *pool) {
  if (pool->stmts != NULL)
    for (unsigned i = 0; i < pool->n_stmts; i++)
      free(pool->stmts[i]);
  free(pool->stmts);
  free(pool->dsn);
  free(pool->conns);
  free(pool);
}

void store__pg_handle_closed(store_pg_pool_t *pool) {
  if (--pool->open_handles > 0 || !pool->closing)
    return;
  void (*cb)(void *) = pool->closed_cb;
  void *arg = pool->closed_arg;
  pool_free(pool);
  if (cb != NULL)
    cb(arg);
}

static void on_flush_closed(uv_handle_t *h) {
  store_pg_pool_t *pool = (store_pg_pool_t *)((char *)h - offsetof(store_pg_pool_t, flush));
  store__pg_handle_closed(pool);
}

/* Check the DSN the way libpq will read it, without ever logging it (it may
 * hold a password, and libpq's parse errors quote the text). */
static int dsn_valid(const char *dsn) {
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(dsn, &err);
  if (opts == NULL) {
    proto_log_fields(PROTO_LOG_ERROR, NULL, "config_invalid",
                     json_pack("{s:s, s:s}", "engine", "postgresql", "msg",
                               err != NULL ? "the database URL is not a libpq connection "
                                             "string or postgres:// URI"
                                           : "out of memory reading the database URL"));
    PQfreemem(err);
    return 0;
  }
  PQconninfoFree(opts);
  return 1;
}

int store_pg_open(uv_loop_t *loop, const store_pg_config_t *cfg, store_pg_pool_t **out) {
  store_pg_pool_t *pool = NULL;
  unsigned n;
  if (out != NULL)
    *out = NULL;
  if (loop == NULL || cfg == NULL || cfg->dsn == NULL || out == NULL ||
      (cfg->n_stmts > 0 && cfg->stmts == NULL))
    return STORE_EINVAL;
  n = cfg->pool_size != 0 ? cfg->pool_size : STORE_PG_POOL_SIZE_DEFAULT;
  if (n > STORE_PG_POOL_SIZE_MAX) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "pg pool size %u: at most %u connections", n, STORE_PG_POOL_SIZE_MAX);
    return STORE_EINVAL;
  }
  if (!dsn_valid(cfg->dsn))
    return STORE_EINVAL;
  pool = calloc(1, sizeof(*pool));
  if (pool == NULL)
    return STORE_ERROR;
  pool->loop = loop;
  pool->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms
                                             : STORE_PG_BACKOFF_MIN_MS_DEFAULT;
  pool->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms
                                             : STORE_PG_BACKOFF_MAX_MS_DEFAULT;
  if (pool->backoff_max_ms < pool->backoff_min_ms)
    pool->backoff_max_ms = pool->backoff_min_ms;
  pool->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms
                                                     : STORE_PG_CONNECT_TIMEOUT_MS_DEFAULT;
  pool->dsn = strdup(cfg->dsn);
  pool->conns = calloc(n, sizeof(*pool->conns));
  pool->stmts = cfg->n_stmts ? calloc(cfg->n_stmts, sizeof(*pool->stmts)) : NULL;
  if (pool->dsn == NULL || pool->conns == NULL || (cfg->n_stmts && pool->stmts == NULL))
    goto nomem;
  pool->n_stmts = cfg->n_stmts;
  for (unsigned i = 0; i < cfg->n_stmts; i++)
    if (cfg->stmts[i] == NULL || (pool->stmts[i] = strdup(cfg->stmts[i])) == NULL)
      goto nomem;
  /* From here on handles exist: a failure closes them and the pool frees
   * itself in the last close callback (the loop must run). */
  if (uv_prepare_init(loop, &pool->flush) != 0)
    goto nomem;
  pool->open_handles = 1;
  for (unsigned i = 0; i < n; i++) {
    if (store__pg_conn_init(pool, &pool->conns[i], i) != 0) {
      store_pg_close(pool, NULL, NULL);
      return STORE_ERROR;
    }
    pool->n_conns++;
  }
  for (unsigned i = 0; i < n; i++)
    store__pg_conn_start(&pool->conns[i]);
  *out = pool;
  return STORE_OK;
nomem:
  pool_free(pool);
  return STORE_ERROR;
}

static int enqueue(store_pg_pool_t *pool, int stmt, const char *sql, int nparams,
                   const char *const *params, store_pg_cb cb, void *arg) {
  size_t size, sql_len = sql != NULL ? strlen(sql) + 1 : 0;
  store__pg_query_t *q;
  char *p;
  if (pool == NULL || cb == NULL || nparams < 0 || nparams > STORE_PG_PARAMS_MAX ||
      (nparams > 0 && params == NULL))
    return STORE_EINVAL;
  if (pool->closing)
    return STORE_PG_CANCELED;
  if (!pool_hopeful(pool))
    return STORE_PG_UNAVAILABLE;
  /* One block: the struct, the parameter pointers, then the strings. */
  size = sizeof(*q) + (size_t)nparams * sizeof(char *) + sql_len;
  for (int i = 0; i < nparams; i++)
    size += params[i] != NULL ? strlen(params[i]) + 1 : 0;
  q = calloc(1, size);
  if (q == NULL)
    return STORE_ERROR;
  q->stmt = stmt;
  q->nparams = nparams;
  q->params = (const char **)(q + 1);
  p = (char *)(q->params + nparams);
  for (int i = 0; i < nparams; i++) {
    if (params[i] == NULL)
      continue;
    size_t len = strlen(params[i]) + 1;
    memcpy(p, params[i], len);
    q->params[i] = p;
    p += len;
  }
  if (sql != NULL) {
    memcpy(p, sql, sql_len);
    q->sql = p;
  }
  q->cb = cb;
  q->arg = arg;
  store__pg_queue_push(&pool->pending, q);
  flush_start(pool);
  return STORE_OK;
}

int store_pg_query(store_pg_pool_t *pool, const char *sql, int nparams,
                   const char *const *params, store_pg_cb cb, void *arg) {
  if (sql == NULL)
    return STORE_EINVAL;
  return enqueue(pool, -1, sql, nparams, params, cb, arg);
}

int store_pg_exec(store_pg_pool_t *pool, unsigned stmt, int nparams,
                  const char *const *params, store_pg_cb cb, void *arg) {
  if (pool == NULL || stmt >= pool->n_stmts)
    return STORE_EINVAL;
  return enqueue(pool, (int)stmt, NULL, nparams, params, cb, arg);
}

unsigned store_pg_ready(const store_pg_pool_t *pool) {
  unsigned n = 0;
  if (pool == NULL)
    return 0;
  for (unsigned i = 0; i < pool->n_conns; i++)
    n += pool->conns[i].state == STORE__PG_READY;
  return n;
}

void store_pg_stats(const store_pg_pool_t *pool, store_pg_stats_t *out) {
  if (out == NULL)
    return;
  memset(out, 0, sizeof(*out));
  if (pool != NULL)
    *out = pool->stats;
}

void store_pg_close(store_pg_pool_t *pool, void (*closed_cb)(void *arg), void *arg) {
  if (pool == NULL || pool->closing)
    return;
  pool->closing = 1;
  pool->closed_cb = closed_cb;
  pool->closed_arg = arg;
  flush_stop(pool);
  fail_pending(pool, STORE_PG_CANCELED, "the pool is closing");
  for (unsigned i = 0; i < pool->n_conns; i++)
    store__pg_conn_close(&pool->conns[i]);
  uv_close((uv_handle_t *)&pool->flush, on_flush_closed);
}
