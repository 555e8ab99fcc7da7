/* pg_internal.h: what pg_pool.c, pg_conn.c and pg_result.c share: the query,
 * connection and pool structs and the functions one file offers the others
 * (store__pg_ prefix). Not installed.
 */
#ifndef STORE_PG_INTERNAL_H
#define STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <uv.h>

#include "store/pg.h"

/* One statement on its way: queued in the pool, then in flight on one
 * connection. One allocation: the struct, then the SQL and the parameters. */
typedef struct store__pg_query {
  struct store__pg_query *next;
  int stmt;              /* prepared statement index, -1 for sql */
  int prepare;           /* an internal PQsendPrepare of statement stmt, no cb */
  const char *sql;       /* sql text (or the statement's, for a prepare) */
  int nparams;
  const char **params;   /* into the same block; entries may be NULL */
  store_pg_cb cb;
  void *arg;
  PGresult *res;         /* the result kept for the callback (first error wins) */
  int saw_end;           /* libpq said "no more results" for this statement */
} store__pg_query_t;

typedef struct store__pg_queue {
  store__pg_query_t *head, *tail;
  unsigned n;
} store__pg_queue_t;

typedef enum {
  STORE__PG_WAITING = 0, /* between attempts (backoff timer armed) */
  STORE__PG_CONNECTING,  /* PQconnectPoll until PGRES_POLLING_OK */
  STORE__PG_PREPARING,   /* connected, the pool's statements being prepared */
  STORE__PG_READY,       /* takes queries */
  STORE__PG_CLOSED,      /* the pool is closing: never again */
} store__pg_state_t;

struct store__pg_conn;

/* The uv_poll_t of one socket. Allocated per socket (libpq may swap sockets
 * during a connect), freed in its close callback, so the connection can watch
 * a new socket before the old handle has finished closing. */
typedef struct store__pg_watch {
  uv_poll_t poll;
  struct store__pg_conn *conn;
} store__pg_watch_t;

typedef struct store__pg_conn {
  store_pg_pool_t *pool;
  unsigned index;            /* for log lines */
  store__pg_state_t state;
  PGconn *pg;                /* NULL when not connected */
  store__pg_watch_t *watch;  /* NULL when no socket is watched */
  int dirty;                 /* sent to this turn, not yet flushed */
  int want_write;            /* libpq has output left to send (PQflush said 1) */
  int failed;                /* the last attempt failed or the connection was lost:
                              * the pool does not wait for this one */
  unsigned backoff_ms;       /* the next wait between attempts */
  uv_timer_t timer;          /* backoff, then the connect deadline */
  store__pg_queue_t inflight; /* sent, each followed by its own sync point */
} store__pg_conn_t;

struct store_pg_pool {
  uv_loop_t *loop;
  char *dsn;
  char **stmts;              /* n_stmts copies */
  unsigned n_stmts;
  unsigned backoff_min_ms, backoff_max_ms, connect_timeout_ms;
  store__pg_conn_t *conns;
  unsigned n_conns;
  store__pg_queue_t pending; /* queued this turn, sent by the prepare handle */
  uv_prepare_t flush;        /* runs right before the loop polls: one write per turn */
  int flush_active;
  store_pg_stats_t stats;
  int closing;
  unsigned open_handles;     /* the pool is freed when this drops to 0 while closing */
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

/* The result handed to a callback: a PGresult (or none) and why. */
struct store_pg_result {
  const PGresult *res;
  const char *message;       /* for an outage; NULL: the PGresult's own */
};

/* pg_queue: FIFO helpers (pg_pool.c). */
void store__pg_queue_push(store__pg_queue_t *q, store__pg_query_t *item);
store__pg_query_t *store__pg_queue_pop(store__pg_queue_t *q);

/* Complete q: map its result to a return code, run its callback (unless it
 * is an internal prepare), free it. Returns that code (pg_result.c). */
int store__pg_query_finish(store__pg_query_t *q, int rc_override, const char *why);

/* pg_conn.c */
int store__pg_conn_init(store_pg_pool_t *pool, store__pg_conn_t *c, unsigned index);
void store__pg_conn_start(store__pg_conn_t *c);
/* Send q on a READY connection (appended to its in-flight queue). 0, or -1
 * when libpq refused it (q untouched: the caller fails it). */
int store__pg_conn_send(store__pg_conn_t *c, store__pg_query_t *q);
/* Push what was sent out (PQflush) and watch for the answer. */
void store__pg_conn_flush(store__pg_conn_t *c);
/* Stop for good (pool closing): in-flight fail with STORE_PG_CANCELED. */
void store__pg_conn_close(store__pg_conn_t *c);

/* pg_pool.c: a handle of the pool closed (close callbacks of every handle). */
void store__pg_handle_closed(store_pg_pool_t *pool);
/* A connection came up or went down: send what waits, or fail it when the
 * whole pool is down. */
void store__pg_pool_changed(store_pg_pool_t *pool);

#endif
