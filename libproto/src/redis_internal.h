/* redis_internal.h: the hiredis <-> libuv adapter and the reconnecting Redis
 * connection shared by events_pub.c and events_sub.c. Never installed.
 *
 * hiredis 0.14 rules we rely on (async.c):
 * - Reply callbacks run with REDIS_IN_CALLBACK set: redisAsyncFree() called
 *   from one only marks the context, which hiredis frees after the callback
 *   returns. The connect and disconnect callbacks run WITHOUT that flag, so no
 *   context is ever freed from those: failures are deferred to a 0 ms timer.
 * - When a context goes away, every pending reply callback (and every
 *   subscription callback) runs once with a NULL reply, then the disconnect
 *   callback (only if it had connected), then the context is freed.
 * - Connection progress is noticed on the first write event, which
 *   redisAsyncSetConnectCallback() asks for (so attach the adapter first).
 */
#ifndef PROTO_REDIS_INTERNAL_H
#define PROTO_REDIS_INTERNAL_H

#include <stdint.h>
#include <hiredis/async.h>
#include <uv.h>

#include "proto/events.h"
#include "proto/util.h"

/* --- redis_uv.c: one uv_poll_t per redisAsyncContext ----------------------- */

/* hiredis did not notice a poll error on ac (or a poll could not be started):
 * the owner must fail the connection. Called from inside hiredis hooks too,
 * so the owner must not free ac synchronously. */
typedef void (*proto__redis_uv_error_cb)(void *arg, redisAsyncContext *ac, int uv_err);
/* The adapter's poll handle is closed and the adapter freed (after hiredis
 * cleaned ac up). Runs from a libuv close callback. */
typedef void (*proto__redis_uv_closed_cb)(void *arg);

/* Install the adapter on ac (ev hooks and ev.data). 0, PROTO_ENOMEM or
 * PROTO_EIO; on error nothing is installed and no callback will run. */
int proto__redis_uv_attach(uv_loop_t *loop, redisAsyncContext *ac,
                           proto__redis_uv_error_cb on_error,
                           proto__redis_uv_closed_cb on_closed, void *arg);

/* --- redis_conn.c: a connection that stays up ------------------------------ */

typedef struct proto__redis_conn proto__redis_conn_t;

typedef struct proto__redis_conn_ops {
  /* Connected and authenticated: send commands on proto__redis_conn_ac().
   * Runs inside a hiredis reply callback. */
  void (*on_ready)(proto__redis_conn_t *conn);
  /* The ready connection is gone (replies still pending will never come;
   * their callbacks may yet run with NULL or be ignored). Reconnection is
   * already scheduled. Must not close the connection. */
  void (*on_lost)(proto__redis_conn_t *conn);
  /* After proto__redis_conn_close(): every handle is closed; the owner may
   * now free the memory holding the connection. From a libuv callback. */
  void (*on_closed)(proto__redis_conn_t *conn);
} proto__redis_conn_ops_t;

typedef enum {
  PROTO__REDIS_IDLE = 0,    /* waiting for the backoff timer */
  PROTO__REDIS_RESOLVING,   /* uv_getaddrinfo in progress */
  PROTO__REDIS_CONNECTING,  /* TCP connect in progress */
  PROTO__REDIS_HANDSHAKE,   /* AUTH (or PING) sent, reply awaited */
  PROTO__REDIS_READY,       /* usable */
  PROTO__REDIS_CLOSING,     /* proto__redis_conn_close() called */
} proto__redis_state_t;

/* Embedded in its owner (the publisher or the subscriber). */
struct proto__redis_conn {
  uv_loop_t *loop;
  const proto__redis_conn_ops_t *ops;
  char *host;                     /* owned copy */
  char *password;                 /* owned copy, NULL: no AUTH */
  char *name;                     /* owned copy, for logs */
  int port;
  unsigned connect_timeout_ms;
  unsigned backoff_min_ms;
  unsigned backoff_max_ms;
  unsigned backoff_ms;            /* delay before the next attempt; back to the
                                     minimum when a READY connection that lasted
                                     at least backoff_max_ms is lost */
  uint64_t ready_at_ms;           /* when the connection last became READY */
  proto__redis_state_t state;
  redisAsyncContext *ac;          /* the current context (connecting..ready), or NULL */
  redisAsyncContext *doomed;      /* failed context to free on the next loop turn;
                                     non-NULL only while ac is NULL */
  uv_timer_t retry_timer;         /* backoff before the next attempt */
  uv_timer_t deadline_timer;      /* connect + handshake deadline */
  uv_timer_t kill_timer;          /* 0 ms: frees `doomed` outside hiredis */
  uv_getaddrinfo_t gai;           /* name resolution (skipped for numeric hosts) */
  int gai_pending;                /* gai is in flight (it keeps us alive) */
  unsigned handles_open;          /* timers + adapters + gai not yet closed/completed */
  int closing;                    /* proto__redis_conn_close() called */
  int closed_notified;            /* on_closed has run */
  unsigned attempts;              /* failed attempts since the last success */
  uint64_t connects;              /* connections that reached READY */
  uint64_t failures;              /* failed attempts */
  char last_error[PROTO_REDIS_ERROR_MAX];
  char last_error_at[PROTO_ISO_TIME_LEN];
};

/* Copy the options (defaults for zeroes) and initialise the timers. Starts
 * nothing. 0, PROTO_EINVAL or PROTO_ENOMEM. On error: if conn->handles_open
 * is 0 nothing is registered on the loop (free the owner at once); otherwise
 * call proto__redis_conn_close() and free the owner from on_closed. */
int proto__redis_conn_init(proto__redis_conn_t *conn, uv_loop_t *loop,
                           const proto_redis_opts_t *opts, const char *default_name,
                           const proto__redis_conn_ops_t *ops);
/* First connection attempt, now. */
void proto__redis_conn_start(proto__redis_conn_t *conn);
/* The context to send commands on when READY, else NULL. */
redisAsyncContext *proto__redis_conn_ac(const proto__redis_conn_t *conn);
/* Non-zero when ac is the current READY context (a reply from any other
 * context is stale and must be ignored). */
int proto__redis_conn_is_current(const proto__redis_conn_t *conn,
                                 const redisAsyncContext *ac);
/* The current context misbehaved (error reply, failed send): record why,
 * leave READY (on_lost runs now), free the context on the next loop turn and
 * reconnect with backoff. Safe from inside hiredis callbacks and hooks. */
void proto__redis_conn_fail(proto__redis_conn_t *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Close: free the context (deferred by hiredis when inside one of its
 * callbacks), stop the timers; on_closed runs once every handle is closed.
 * Safe from a reply callback, not from on_lost. Idempotent. */
void proto__redis_conn_close(proto__redis_conn_t *conn);
/* Free the owned strings (from on_closed, or after a failed init). */
void proto__redis_conn_release(proto__redis_conn_t *conn);
void proto__redis_conn_status(const proto__redis_conn_t *conn, proto_redis_status_t *out);

#endif
