/* svc/service.h: the service context, one shape for every service. It owns
 * nothing by itself: svc_main() (svc/daemon.h) fills it and closes what it
 * holds in the right order; a unit test fills it with svc_init() and its own
 * parts. Handlers receive it as their ctx and reach the service's own store
 * and state through `store` and `app`.
 *
 * Durability: a service's writes join the loop turn's transaction of the
 * commit group (svc_write_begin), and what must not happen before they are
 * durable -- the reply, the event -- waits for that COMMIT (svc/answer.h).
 */
#ifndef SVC_SERVICE_H
#define SVC_SERVICE_H

#include <jansson.h>
#include <uv.h>

#include "proto/events.h"
#include "proto/rpc_client.h"
#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "store/outbox.h"
#include "svc/result.h"

#define SVC_UPSTREAMS_MAX 4

/* How events leave the service: proto_events_publish_ex() on pub by
 * default; tests substitute a recorder. data is stolen; event_id_out (may be
 * NULL) receives the eventId. A PROTO_E* code; never fatal to a request. */
typedef int (*svc_publish_fn)(void *arg, const char *pattern, json_t *data,
                              const char *request_id, char event_id_out[PROTO_ID_MAX]);

/* Adds a service's own fields (e.g. "orderStatus") to a request's log line. */
typedef void (*svc_log_fields_fn)(json_t *fields, const svc_result_t *r);

struct svc_outbox_relay; /* svc/outbox.h */

typedef struct svc {
  uv_loop_t *loop;
  const char *name;                /* "user": the log's service name */
  void *store;                     /* the service's store (borrowed here) */
  store_group_t *group;            /* NULL: writes autocommit (tools, store tests) */
  proto_events_pub_t *pub;         /* NULL: events are not sent */
  svc_publish_fn publish;          /* see svc_publish_fn */
  void *publish_arg;
  store_outbox_t *outbox;          /* SVC_OUTBOX: svc_answer() writes events here, in the
                                      turn's transaction; NULL: published after the commit */
  struct svc_outbox_relay *relay;  /* sends the outbox's rows; NULL: none (they wait) */
  const char *log_id_key;          /* log key of the subject's id ("userId"), or NULL */
  svc_log_fields_fn log_fields;    /* NULL: none */
  proto_rpc_client_t *upstream[SVC_UPSTREAMS_MAX]; /* in the def's order; NULL once closed */
  unsigned n_upstreams;
  unsigned rpc_timeout_ms;         /* per upstream call, within the caller's budget */
  void *app;                       /* the service's own state, or NULL */
} svc_t;

/* Zero svc and set the parts every context has; publish goes to svc->pub. */
void svc_init(svc_t *svc, uv_loop_t *loop, const char *name, void *store,
              store_group_t *group);

/* Before a write: join (or open) the loop turn's transaction when there is a
 * group. 0, or STORE_ERROR (logged): do not write, answer 500. */
int svc_write_begin(svc_t *svc);

/* Publish through svc->publish; a failure is logged here, never fatal (the
 * data is committed). data stolen; NULL (ENOMEM building it) is logged.
 * Returns the PROTO_E* code. */
int svc_publish(svc_t *svc, const char *pattern, json_t *data, const char *request_id,
                char event_id_out[PROTO_ID_MAX]);

/* Non-zero when upstream i exists and has a connection up (health). */
int svc_upstream_connected(const svc_t *svc, unsigned i);

#endif
