/* outbox_relay.c: the outbox relay (svc/outbox.h): reads unsent outbox rows
 * in id order after the commit that wrote them, hands them to the publisher
 * with their stored eventId, marks them sent on Redis's acknowledgement, and
 * purges old sent rows. Loop thread only.
 */
#include "svc/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/error.h"
#include "proto/log.h"

struct svc_outbox_relay {
  uv_loop_t *loop;
  store_outbox_t *outbox;          /* borrowed */
  store_group_t *group;            /* borrowed, or NULL */
  svc_outbox_send_fn send;
  void *send_arg;
  uv_idle_t run_idle;              /* a run on the next loop turn (one per turn: an idle
                                      handle restarted in its callback waits a turn) */
  uv_timer_t retry_timer;          /* a run after SVC_OUTBOX_RETRY_MS, after a stall */
  uv_timer_t purge_timer;
  int handles_open;                /* timers initialised and not yet closed */
  int defer_pending;               /* an after-commit run is queued on the group */
  int closing;
  int more;                        /* the last run stopped early: rows may be waiting */
  int stalled;                     /* the sender refused a row this run */
  int64_t cursor;                  /* the last id handed over (rows above wait) */
  int64_t ring[SVC_OUTBOX_INFLIGHT_MAX]; /* ids with the sender, acks come in this order */
  unsigned ring_head, ring_n;
  svc_outbox_stats_t stats;
};

static void maybe_free(svc_outbox_relay_t *r) {
  if (r->closing && r->handles_open == 0 && !r->defer_pending)
    free(r);
}

static void on_run_idle(uv_idle_t *h);
static void on_retry_timer(uv_timer_t *t);

/* Run on the next loop turn (ms 0), or after ms. A timer restarted at 0 ms
 * inside its own callback would run again in the same turn, so turns are
 * counted by an idle handle. */
static void arm(svc_outbox_relay_t *r, uint64_t ms) {
  if (r->closing)
    return;
  int rc = ms == 0 ? uv_idle_start(&r->run_idle, on_run_idle)
                   : uv_timer_start(&r->retry_timer, on_retry_timer, ms, 0);
  if (rc != 0) /* only for a closing handle; the next kick or start-up sends the rows */
    proto_log(PROTO_LOG_ERROR, NULL, "outbox_relay_failed", "cannot arm the relay: %s",
              uv_strerror(rc));
}

/* --- acknowledgements ------------------------------------------------------------ */

static void on_ack(int status, void *arg) {
  svc_outbox_relay_t *r = arg;
  if (r->ring_n == 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "outbox_ack_unexpected", "an ack with nothing in flight");
    return;
  }
  int64_t id = r->ring[r->ring_head];
  r->ring_head = (r->ring_head + 1) % SVC_OUTBOX_INFLIGHT_MAX;
  r->ring_n--;
  if (status != 0) {
    /* Dropped at a stop: the row stays unsent and goes at the next start. */
    r->stats.unacked++;
    return;
  }
  r->stats.acked++;
  char now[PROTO_ISO_TIME_LEN];
  proto_time_iso(now);
  /* The mark joins the turn's transaction: one fsync for many acks. If it is
   * lost (a failed commit, a crash), the row is sent again at the next start
   * with the same eventId. */
  if ((!r->group || store_group_begin_write(r->group) == 0) && /* else logged by the group */
      store_outbox_mark_sent(r->outbox, id, now) == STORE_OK)
    r->stats.marked++;
  if (r->more && !r->closing)
    arm(r, 0);
}

/* --- handing rows over ----------------------------------------------------------- */

static int hand_row(const store_outbox_row_t *row, void *arg) {
  svc_outbox_relay_t *r = arg;
  char at[PROTO_ISO_TIME_LEN] = "";
  json_error_t jerr;
  json_t *data = json_loads(row->data, JSON_DECODE_ANY, &jerr);
  json_t *meta = json_loads(row->metadata, 0, &jerr);
  int rc = PROTO_EINVAL;
  if (data && json_is_object(meta)) {
    /* Copied: the metadata object is stolen by the send. */
    const char *occurred = json_string_value(json_object_get(meta, "occurredAt"));
    if (occurred && strlen(occurred) < sizeof(at))
      memcpy(at, occurred, strlen(occurred) + 1);
    proto_events_publish_opts_t opts = {.event_id = row->event_id,
                                        .occurred_at = at[0] ? at : NULL,
                                        .ack = on_ack,
                                        .ack_arg = r};
    rc = r->send(r->send_arg, row->pattern, data, meta, &opts);
    data = meta = NULL; /* stolen */
  }
  json_decref(data);
  json_decref(meta);
  if (rc == PROTO_EINVAL) {
    /* A row this code cannot send (hand-edited, or text the publisher
     * refuses): skip it; it stays in the table, unsent, for an operator. */
    r->stats.invalid++;
    r->cursor = row->id;
    proto_log_fields(PROTO_LOG_ERROR, NULL, "outbox_row_invalid",
                     json_pack("{s:I,s:s,s:s}", "id", (json_int_t)row->id, "eventId",
                               row->event_id, "pattern", row->pattern));
    return 0;
  }
  if (rc != 0) {
    r->stalled = 1; /* PROTO_EFULL, PROTO_ENOMEM, PROTO_ECLOSED: try again later */
    return 1;
  }
  r->ring[(r->ring_head + r->ring_n) % SVC_OUTBOX_INFLIGHT_MAX] = row->id;
  r->ring_n++;
  r->cursor = row->id;
  r->stats.handed++;
  return 0;
}

static void run(svc_outbox_relay_t *r);

static void after_commit(int status, void *arg) {
  svc_outbox_relay_t *r = arg;
  (void)status; /* rolled back or not, the committed rows are what we read */
  r->defer_pending = 0;
  if (r->closing) {
    maybe_free(r);
    return;
  }
  arm(r, 0); /* not inline: deferred calls run inside the group's commit */
}

static void run(svc_outbox_relay_t *r) {
  if (r->closing)
    return;
  if (r->group && store_group_in_txn(r->group)) {
    /* The connection would read rows the transaction may still lose. */
    if (!r->defer_pending) {
      if (store_group_defer(r->group, after_commit, r) == 0)
        r->defer_pending = 1;
      else
        arm(r, SVC_OUTBOX_RETRY_MS);
    }
    return;
  }
  unsigned room = SVC_OUTBOX_INFLIGHT_MAX - r->ring_n;
  if (room == 0) {
    r->more = 1; /* the next ack re-arms */
    return;
  }
  int limit = room < (unsigned)SVC_OUTBOX_BATCH_MAX ? (int)room : SVC_OUTBOX_BATCH_MAX;
  int n = 0;
  r->stalled = 0;
  int rc = store_outbox_unsent(r->outbox, r->cursor, limit, hand_row, r, &n);
  if (rc != STORE_OK || r->stalled) {
    r->more = 1;
    arm(r, SVC_OUTBOX_RETRY_MS); /* logged by the store or the publisher */
    return;
  }
  r->more = n == limit;
  if (r->more && r->ring_n < SVC_OUTBOX_INFLIGHT_MAX)
    arm(r, 0); /* the next batch on a later turn: bounded work per turn */
}

static void on_run_idle(uv_idle_t *h) {
  svc_outbox_relay_t *r = h->data;
  if (uv_idle_stop(h) == 0)
    run(r);
}

static void on_retry_timer(uv_timer_t *t) {
  arm(t->data, 0);
}

/* --- purge ------------------------------------------------------------------------ */

/* now - SVC_OUTBOX_RETENTION_MS in proto_time_iso()'s format. */
static int retention_cutoff(char out[PROTO_ISO_TIME_LEN]) {
  struct timespec ts;
  struct tm tm;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return -1;
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  ms = ms > SVC_OUTBOX_RETENTION_MS ? ms - SVC_OUTBOX_RETENTION_MS : 0;
  time_t sec = (time_t)(ms / 1000u);
  if (!gmtime_r(&sec, &tm))
    return -1;
  /* "YYYY-MM-DDTHH:MM:SS" is 19 characters, ".mmmZ" 5 more, then the NUL. */
  if (strftime(out, PROTO_ISO_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
    return -1;
  snprintf(out + 19, PROTO_ISO_TIME_LEN - 19, ".%03uZ", (unsigned)(ms % 1000u));
  return 0;
}

static void on_purge_timer(uv_timer_t *t) {
  svc_outbox_relay_t *r = t->data;
  char cutoff[PROTO_ISO_TIME_LEN];
  int64_t deleted = 0;
  if (r->closing || retention_cutoff(cutoff) != 0)
    return;
  if (r->group && store_group_begin_write(r->group) != 0)
    return; /* logged; the next interval tries again */
  if (store_outbox_purge(r->outbox, cutoff, SVC_OUTBOX_PURGE_BATCH_MAX, &deleted) == STORE_OK)
    r->stats.purged += (uint64_t)deleted;
}

/* --- life cycle ----------------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
  svc_outbox_relay_t *r = h->data;
  r->handles_open--;
  maybe_free(r);
}

svc_outbox_relay_t *svc_outbox_relay_new(uv_loop_t *loop, store_outbox_t *o, store_group_t *g,
                                         svc_outbox_send_fn send, void *send_arg) {
  if (!loop || !o || !send)
    return NULL;
  svc_outbox_relay_t *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  *r = (svc_outbox_relay_t){.loop = loop, .outbox = o, .group = g, .send = send,
                            .send_arg = send_arg};
  uv_handle_t *handles[] = {(uv_handle_t *)&r->run_idle, (uv_handle_t *)&r->retry_timer,
                            (uv_handle_t *)&r->purge_timer};
  if (uv_idle_init(loop, &r->run_idle) != 0)
    goto fail;
  r->handles_open = 1;
  if (uv_timer_init(loop, &r->retry_timer) != 0)
    goto fail;
  r->handles_open = 2;
  if (uv_timer_init(loop, &r->purge_timer) != 0)
    goto fail;
  r->handles_open = 3;
  for (int i = 0; i < 3; i++)
    handles[i]->data = r;
  if (uv_timer_start(&r->purge_timer, on_purge_timer, SVC_OUTBOX_PURGE_INTERVAL_MS,
                     SVC_OUTBOX_PURGE_INTERVAL_MS) != 0)
    goto fail;
  /* The purge alone must not keep a stopping daemon's loop alive. */
  uv_unref((uv_handle_t *)&r->purge_timer);
  return r;
fail:
  proto_log(PROTO_LOG_ERROR, NULL, "outbox_relay_failed", "cannot create the relay's handles");
  r->closing = 1;
  if (r->handles_open == 0) {
    free(r);
    return NULL;
  }
  int n = r->handles_open;
  for (int i = 0; i < n; i++) {
    handles[i]->data = r;
    uv_close(handles[i], on_closed); /* the last frees r */
  }
  return NULL;
}

void svc_outbox_relay_kick(svc_outbox_relay_t *r) {
  if (r)
    arm(r, 0);
}

void svc_outbox_relay_stats(const svc_outbox_relay_t *r, svc_outbox_stats_t *out) {
  *out = r->stats;
  out->inflight = r->ring_n;
}

void svc_outbox_relay_close(svc_outbox_relay_t *r) {
  if (!r || r->closing)
    return;
  r->closing = 1;
  uv_close((uv_handle_t *)&r->run_idle, on_closed);
  uv_close((uv_handle_t *)&r->retry_timer, on_closed);
  uv_close((uv_handle_t *)&r->purge_timer, on_closed);
}
