/* store/pg.h: PostgreSQL on the caller's libuv loop, through libpq's
 * non-blocking API. A pool of a few connections per process; each one in
 * pipeline mode, its socket watched by a uv_poll_t. Queries are queued and
 * the ones queued during one loop turn are written together right before the
 * loop polls (one round trip), each followed by its own sync point so one
 * failing statement does not abort the others. Nothing here ever blocks the
 * loop, with one exception named below (a host name in the DSN).
 *
 * Contract, as everywhere in libstore/libproto: if a function that takes a
 * callback returns an error, the callback will not run; otherwise it runs
 * exactly once, on the loop thread, never from inside the call that queued
 * it. The result it gets is borrowed for the duration of the callback.
 *
 * Outages: a connection that goes away fails its queries in flight with
 * STORE_PG_CONNLOST (the statement may or may not have committed) and
 * reconnects by itself with exponential backoff. While no connection is up
 * (and none is still on its first attempt) a new query fails at once with
 * STORE_PG_UNAVAILABLE: a caller answers 503 instead of waiting.
 *
 * Blocking caveat: libpq resolves a host name (host=db) with a blocking
 * getaddrinfo() inside PQconnectStart. Give an IP address (host=127.0.0.1 or
 * hostaddr=) or a unix socket directory to stay fully non-blocking.
 */
#ifndef STORE_PG_H
#define STORE_PG_H

#include <stdint.h>
#include <uv.h>

#include "store/db.h"

/* Return codes besides STORE_OK, STORE_EINVAL and STORE_ERROR (any other SQL
 * error, logged as "storage_error"). Numbered between STORE_ERROR and
 * STORE_RC_SERVICE so a service's own codes never meet them. */
enum {
  STORE_PG_UNAVAILABLE = -3, /* no connection to the server: nothing was sent */
  STORE_PG_CONNLOST = -4,    /* the connection went away with the query in flight:
                              * it may or may not have run */
  STORE_PG_CONFLICT = -5,    /* unique_violation (SQLSTATE 23505): a 409, or a cue for
                              * INSERT ... ON CONFLICT */
  STORE_PG_CONSTRAINT = -6,  /* another integrity constraint (class 23: not null,
                              * foreign key, check, exclusion) */
  STORE_PG_CANCELED = -7,    /* the pool was closed before an answer came */
};

#define STORE_PG_POOL_SIZE_DEFAULT 2u
#define STORE_PG_POOL_SIZE_MAX 64u
#define STORE_PG_BACKOFF_MIN_MS_DEFAULT 50u   /* first retry after a failure */
#define STORE_PG_BACKOFF_MAX_MS_DEFAULT 500u  /* retries never wait longer: back within
                                               * ~0.5 s of the server */
#define STORE_PG_CONNECT_TIMEOUT_MS_DEFAULT 5000u /* one attempt, TCP to ready */
#define STORE_PG_PIPELINE_MAX 256u            /* statements in flight per connection */
#define STORE_PG_PARAMS_MAX 1024              /* positional parameters per statement */

typedef struct store_pg_pool store_pg_pool_t;
typedef struct store_pg_result store_pg_result_t;

typedef struct store_pg_config {
  const char *dsn;                /* libpq connection string or URI (copied) */
  unsigned pool_size;             /* connections; 0: STORE_PG_POOL_SIZE_DEFAULT */
  const char *const *stmts;       /* prepared on every connection before it is used, */
  unsigned n_stmts;               /*   run by index with store_pg_exec() (copied) */
  unsigned backoff_min_ms;        /* 0: defaults above */
  unsigned backoff_max_ms;
  unsigned connect_timeout_ms;
} store_pg_config_t;

/* Called once per query. rc is STORE_OK or one of the codes above. res is
 * never NULL: for an outage it has no rows and store_pg_message() says why. */
typedef void (*store_pg_cb)(int rc, const store_pg_result_t *res, void *arg);

/* Make a pool on loop and start connecting (every connection on its own;
 * prepared statements are sent as each one comes up). STORE_OK with *out
 * set; STORE_EINVAL for a DSN libpq cannot parse or an out-of-range size
 * (logged as config_invalid, the password never shown); STORE_ERROR when
 * out of memory or libuv refuses. */
int store_pg_open(uv_loop_t *loop, const store_pg_config_t *cfg, store_pg_pool_t **out);

/* Queue sql with params[0..nparams-1] bound to $1..$n as text (a NULL entry
 * is SQL NULL). sql and params are copied. STORE_OK (cb will run);
 * STORE_PG_UNAVAILABLE (the server is down now), STORE_PG_CANCELED (the
 * pool is closing), STORE_EINVAL or STORE_ERROR (no memory): cb will not run. */
int store_pg_query(store_pg_pool_t *pool, const char *sql, int nparams,
                   const char *const *params, store_pg_cb cb, void *arg);

/* The same for the prepared statement cfg->stmts[stmt]. */
int store_pg_exec(store_pg_pool_t *pool, unsigned stmt, int nparams,
                  const char *const *params, store_pg_cb cb, void *arg);

/* How many connections are up and prepared now. */
unsigned store_pg_ready(const store_pg_pool_t *pool);

/* Counters since open, for tests and metrics. */
typedef struct store_pg_stats {
  uint64_t sent;    /* statements handed to libpq */
  uint64_t batches; /* flushes of a turn's statements: one per connection per turn */
  uint64_t connect_failures; /* attempts that failed, and connections lost */
} store_pg_stats_t;
void store_pg_stats(const store_pg_pool_t *pool, store_pg_stats_t *out);

/* Close: queued and in-flight queries complete with STORE_PG_CANCELED (their
 * callbacks run inside this call), every handle is closed, and once the last
 * one is, the pool is freed and closed_cb(arg) runs (may be NULL). NULL and a
 * second call are no-ops. Safe from inside a query callback. */
void store_pg_close(store_pg_pool_t *pool, void (*closed_cb)(void *arg), void *arg);

/* Reading a result (valid only inside the callback). Rows and columns from
 * 0; out-of-range indexes read as SQL NULL. */
int store_pg_nrows(const store_pg_result_t *res);
int store_pg_ncols(const store_pg_result_t *res);
int store_pg_isnull(const store_pg_result_t *res, int row, int col);
/* The value as text; NULL for SQL NULL. */
const char *store_pg_text(const store_pg_result_t *res, int row, int col);
/* The value as a base-10 integer. STORE_OK, or STORE_EINVAL for NULL or text
 * that is not one whole int64. */
int store_pg_int64(const store_pg_result_t *res, int row, int col, int64_t *out);
/* Rows an INSERT/UPDATE/DELETE touched (0 when not a command). */
int64_t store_pg_affected(const store_pg_result_t *res);
/* The SQLSTATE of an error ("" when none) and a one-line message ("" on success). */
const char *store_pg_sqlstate(const store_pg_result_t *res);
const char *store_pg_message(const store_pg_result_t *res);

/* A static name for a return code ("STORE_PG_CONFLICT", ...). */
const char *store_pg_rc_name(int rc);

#endif
