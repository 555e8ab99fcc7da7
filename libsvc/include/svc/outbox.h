/* svc/outbox.h: the outbox relay, which ties a service's outbox table
 * (store/outbox.h) to its event publisher. An event is written to the outbox
 * in the same transaction as the data it announces (svc_answer() does it for
 * a service with SVC_OUTBOX); after each commit that wrote rows, and once at
 * start-up for what a crash left, the relay hands the unsent rows in id order
 * to the publisher with their stored eventId and metadata
 * (proto_events_publish_with) and marks each row sent when Redis has
 * acknowledged its PUBLISH.
 *
 * Delivery: at least once, across crashes. A kill -9 after the COMMIT loses
 * nothing: the row is in the file and goes out at the next start. What a
 * crash can duplicate: an event Redis acknowledged whose "sent" mark had not
 * committed yet (the mark joins the next turn's transaction), and an event a
 * publisher had sent when its connection dropped (the publisher re-sends).
 * Duplicates carry the same eventId; subscribers de-duplicate by it (the
 * notification daemon stores one notification per eventId). Events dropped by
 * the publisher at a stop stay unsent in the table and go at the next start.
 *
 * Bounded: at most SVC_OUTBOX_BATCH_MAX rows are read per loop turn and at
 * most SVC_OUTBOX_INFLIGHT_MAX are with the publisher unacknowledged; a full
 * publisher queue (or ENOMEM) is retried after SVC_OUTBOX_RETRY_MS. Rows are
 * read only when no transaction of the commit group is open (the connection
 * would see uncommitted rows): otherwise after its COMMIT. Sent rows older
 * than SVC_OUTBOX_RETENTION_MS are deleted every SVC_OUTBOX_PURGE_INTERVAL_MS,
 * at most SVC_OUTBOX_PURGE_BATCH_MAX at a time. Loop thread only; never
 * blocks (SQLite reads of a few rows on the loop, as every store does).
 */
#ifndef SVC_OUTBOX_H
#define SVC_OUTBOX_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "proto/events.h"
#include "store/commit_group.h"
#include "store/outbox.h"

#define SVC_OUTBOX_BATCH_MAX 64                  /* rows read per loop turn */
#define SVC_OUTBOX_INFLIGHT_MAX 256u             /* handed over, not yet acknowledged */
#define SVC_OUTBOX_RETRY_MS 1000u                /* after a full queue or a failed read */
#define SVC_OUTBOX_RETENTION_MS (24u * 3600u * 1000u) /* sent rows kept for a day */
#define SVC_OUTBOX_PURGE_INTERVAL_MS 60000u
#define SVC_OUTBOX_PURGE_BATCH_MAX 1000

/* How the relay hands a row over: proto_events_publish_with() semantics
 * (data and metadata stolen; 0 means opts->ack will run exactly once). */
typedef int (*svc_outbox_send_fn)(void *arg, const char *pattern, json_t *data,
                                  json_t *metadata, const proto_events_publish_opts_t *opts);

typedef struct svc_outbox_relay svc_outbox_relay_t;

typedef struct svc_outbox_stats {
  uint64_t handed;                 /* rows handed to the publisher */
  uint64_t acked;                  /* acknowledged by Redis */
  uint64_t marked;                 /* marks "sent" written */
  uint64_t unacked;                /* given back unacknowledged (a stop): left for later */
  uint64_t invalid;                /* rows whose JSON could not be read: logged, skipped */
  uint64_t purged;                 /* sent rows deleted */
  unsigned inflight;
} svc_outbox_stats_t;

/* A relay for outbox o (borrowed), marking rows sent inside group g's
 * transaction (borrowed; NULL: autocommit), handing rows over with send.
 * Does not run until kicked. NULL on ENOMEM or a libuv failure (logged). */
svc_outbox_relay_t *svc_outbox_relay_new(uv_loop_t *loop, store_outbox_t *o, store_group_t *g,
                                         svc_outbox_send_fn send, void *send_arg);

/* Look for unsent rows soon (a later loop turn, and after the COMMIT of an
 * open transaction): after a commit that wrote outbox rows, and at start-up. */
void svc_outbox_relay_kick(svc_outbox_relay_t *r);

void svc_outbox_relay_stats(const svc_outbox_relay_t *r, svc_outbox_stats_t *out);

/* Stop and free the relay once its handles are closed and a pending
 * after-commit call has run. Call after the sender stopped calling acks (the
 * publisher is closed and done). NULL is a no-op. */
void svc_outbox_relay_close(svc_outbox_relay_t *r);

#endif
