/* events_pub.c: the event publisher. publish() encodes the NestJS envelope and
 * appends it to a bounded FIFO, then returns; the FIFO drains into PUBLISH
 * commands whenever the connection is ready. The first `inflight` items have
 * been sent on the current connection and await their reply (Redis answers in
 * order, so a reply always belongs to the head); if the connection is lost they
 * are simply sent again on the next one (at-least-once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "proto/error.h"
#include "proto/events.h"
#include "proto/log.h"
#include "redis_internal.h"

typedef struct pub_item {
  struct pub_item *next;
  char *channel;        /* points into this allocation, NUL-terminated */
  size_t channel_len;
  char *body;           /* the JSON message, idem */
  size_t body_len;
  int sent;             /* sent at least once (a later send is a resend) */
  proto_events_ack_fn ack; /* publish_with()'s callback, or NULL */
  void *ack_arg;
} pub_item_t;

struct proto_events_pub {
  proto__redis_conn_t conn;       /* first: the connection we publish on */
  size_t queue_max;               /* limit on count */
  pub_item_t *head;               /* oldest event; the first `inflight` are sent */
  pub_item_t *tail;               /* newest event */
  pub_item_t *next_send;          /* first event not sent on this connection */
  size_t count;                   /* events in the FIFO (waiting + in flight) */
  size_t inflight;                /* sent on this connection, reply awaited */
  proto_events_pub_stats_t stats; /* counters (queued/inflight filled on read) */
  uint64_t dropped_unlogged;      /* drops since the last "event_dropped" line */
  uint64_t last_drop_log_ms;      /* when that line was written */
  int drop_logged;                /* a drop line was ever written */
  int closing;                    /* proto_events_pub_close() called */
  int finished;                   /* the flush is over, the connection closing */
  uv_timer_t flush_timer;         /* close's flush deadline */
  int flush_timer_open;           /* flush_timer initialised and not closed */
  void (*done)(void *arg);        /* close's callback */
  void *done_arg;
};

static proto_events_pub_t *pub_of(proto__redis_conn_t *conn) {
  return proto__container_of(conn, proto_events_pub_t, conn);
}

static void finish_close(proto_events_pub_t *p);

static void pop_head(proto_events_pub_t *p) {
  pub_item_t *it = p->head;
  p->head = it->next;
  if (!p->head)
    p->tail = NULL;
  if (p->next_send == it)
    p->next_send = it->next;
  p->count--;
  free(it);
}

/* Pop the head and complete its ack with status (after the pop: the ack may
 * publish again). */
static void pop_head_ack(proto_events_pub_t *p, int status) {
  proto_events_ack_fn ack = p->head->ack;
  void *arg = p->head->ack_arg;
  pop_head(p);
  if (ack)
    ack(status, arg);
}

static void pump(proto_events_pub_t *p);

static void on_publish_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  proto_events_pub_t *p = privdata;
  const redisReply *r = reply;
  /* NULL: the context is going away; on_lost has put the event back (or
   * will). A reply from an older context: likewise already re-queued. */
  if (!r || !proto__redis_conn_is_current(&p->conn, ac))
    return;
  if (r->type == REDIS_REPLY_ERROR) {
    /* NOAUTH, BUSY, LOADING, an ACL change: nothing the event did. Keep it
     * and everything after it, and start over on a fresh connection. */
    proto__redis_conn_fail(&p->conn, "PUBLISH failed: %s", r->str ? r->str : "error");
    return;
  }
  if (p->inflight == 0 || !p->head) {
    proto__redis_conn_fail(&p->conn, "PUBLISH reply with nothing in flight");
    return;
  }
  p->inflight--;
  p->stats.published++;
  if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
    p->stats.unheard++;
  pop_head_ack(p, 0);
  if (p->closing && p->count == 0)
    finish_close(p); /* a reply callback: the context free is deferred */
  else
    pump(p);
}

/* Send what is waiting, up to PROTO_EVENTS_INFLIGHT_MAX in flight. */
static void pump(proto_events_pub_t *p) {
  redisAsyncContext *ac = proto__redis_conn_ac(&p->conn);
  if (!ac || p->finished)
    return;
  /* Re-checked each turn: a failing poll start inside hiredis may fail the
   * connection in the middle of this loop. */
  while (p->next_send && p->inflight < PROTO_EVENTS_INFLIGHT_MAX &&
         proto__redis_conn_is_current(&p->conn, ac)) {
    pub_item_t *it = p->next_send;
    if (redisAsyncCommand(ac, on_publish_reply, p, "PUBLISH %b %b", it->channel,
                          it->channel_len, it->body, it->body_len) != REDIS_OK) {
      proto__redis_conn_fail(&p->conn, "cannot queue PUBLISH: %s",
                             ac->errstr ? ac->errstr : "hiredis error");
      return;
    }
    if (it->sent)
      p->stats.resent++;
    it->sent = 1;
    p->next_send = it->next;
    p->inflight++;
  }
}

static void pub_on_ready(proto__redis_conn_t *conn) {
  proto_events_pub_t *p = pub_of(conn);
  p->inflight = 0;
  p->next_send = p->head;
  if (p->count > 0)
    proto_log_fields(PROTO_LOG_INFO, NULL, "events_flushing",
                     json_pack("{s:s,s:I}", "name", conn->name, "queued",
                               (json_int_t)p->count));
  pump(p);
}

static void pub_on_lost(proto__redis_conn_t *conn) {
  proto_events_pub_t *p = pub_of(conn);
  /* Replies for what was in flight will never come: send it all again. */
  p->inflight = 0;
  p->next_send = p->head;
}

static void on_flush_timer_closed(uv_handle_t *h) {
  proto_events_pub_t *p = h->data;
  void (*done)(void *) = p->done;
  void *arg = p->done_arg;
  proto__redis_conn_release(&p->conn);
  free(p);
  if (done)
    done(arg);
}

static void pub_on_closed(proto__redis_conn_t *conn) {
  proto_events_pub_t *p = pub_of(conn);
  if (p->flush_timer_open) {
    p->flush_timer_open = 0;
    uv_close((uv_handle_t *)&p->flush_timer, on_flush_timer_closed);
    return;
  }
  /* Only after a failed init, before the flush timer existed. */
  proto__redis_conn_release(&p->conn);
  free(p);
}

static const proto__redis_conn_ops_t pub_ops = {
    .on_ready = pub_on_ready,
    .on_lost = pub_on_lost,
    .on_closed = pub_on_closed,
};

proto_events_pub_t *proto_events_pub_new(uv_loop_t *loop, const proto_redis_opts_t *opts) {
  proto_events_pub_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  int rc = proto__redis_conn_init(&p->conn, loop, opts, "events-pub", &pub_ops);
  if (rc != 0) {
    if (p->conn.handles_open == 0) {
      free(p);
    } else {
      p->closing = p->finished = 1;
      proto__redis_conn_close(&p->conn); /* frees p from pub_on_closed */
    }
    return NULL;
  }
  p->queue_max = opts && opts->queue_max ? opts->queue_max : PROTO_EVENTS_QUEUE_MAX_DEFAULT;
  if (uv_timer_init(loop, &p->flush_timer) != 0) {
    p->closing = p->finished = 1;
    proto__redis_conn_close(&p->conn);
    return NULL;
  }
  p->flush_timer.data = p;
  p->flush_timer_open = 1;
  proto__redis_conn_start(&p->conn);
  return p;
}

static void note_drop(proto_events_pub_t *p, const char *pattern, const char *event_id,
                      const char *request_id) {
  p->stats.dropped++;
  p->dropped_unlogged++;
  uint64_t now = proto_now_ms();
  proto_log_fields(PROTO_LOG_DEBUG, request_id, "event_dropped",
                   json_pack("{s:s,s:s,s:s}", "name", p->conn.name, "pattern", pattern,
                             "eventId", event_id));
  if (p->drop_logged && now - p->last_drop_log_ms < PROTO_EVENTS_DROP_LOG_INTERVAL_MS)
    return;
  proto_log_fields(PROTO_LOG_WARN, request_id, "event_dropped",
                   json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "name", p->conn.name,
                             "reason", "queue full, newest event dropped", "pattern",
                             pattern, "eventId", event_id, "queueMax",
                             (json_int_t)p->queue_max, "droppedSinceLastLog",
                             (json_int_t)p->dropped_unlogged, "droppedTotal",
                             (json_int_t)p->stats.dropped));
  p->drop_logged = 1;
  p->last_drop_log_ms = now;
  p->dropped_unlogged = 0;
}

/* The message text: {"pattern","data","metadata"} in NestJS's key order,
 * compact, raw UTF-8 (no length prefix on Redis, so nothing needs escaping to
 * count characters), exactly as JSON.stringify writes it. metadata keeps the
 * caller's keys first, then ours, set over any the caller gave. data and
 * metadata are stolen. *body is malloc'd. 0, PROTO_EINVAL or PROTO_ENOMEM. */
static int encode_event(const char *pattern, json_t *data, json_t *metadata,
                        const char *request_id, const char *event_id,
                        const char *occurred_at, char **body) {
  int rc = 0;
  char now[PROTO_ISO_TIME_LEN];
  json_t *msg = json_object();
  json_t *jpattern = json_string(pattern);
  *body = NULL;
  if (!metadata)
    metadata = json_object();
  if (!msg || !metadata) {
    rc = PROTO_ENOMEM;
    goto out;
  }
  if (occurred_at)
    snprintf(now, sizeof(now), "%s", occurred_at); /* length checked by the caller */
  else
    proto_time_iso(now);
  /* json_string() returns NULL for text that is not UTF-8, and
   * json_object_set_new() then fails. */
  if (!jpattern ||
      (request_id && json_object_set_new(metadata, "requestId", json_string(request_id))) ||
      json_object_set_new(metadata, "eventId", json_string(event_id)) ||
      json_object_set_new(metadata, "occurredAt", json_string(now))) {
    rc = PROTO_EINVAL;
    goto out;
  }
  /* json_object_set_new() steals its value, also when it fails. */
  rc = json_object_set_new(msg, "pattern", jpattern);
  jpattern = NULL;
  rc = json_object_set_new(msg, "data", data) || rc;
  data = NULL;
  rc = json_object_set_new(msg, "metadata", metadata) || rc;
  metadata = NULL;
  if (rc) {
    rc = PROTO_ENOMEM;
    goto out;
  }
  *body = json_dumps(msg, JSON_COMPACT);
  if (!*body)
    rc = PROTO_EINVAL; /* e.g. a NaN inside data */
out:
  json_decref(jpattern);
  json_decref(data);
  json_decref(metadata);
  json_decref(msg);
  return rc;
}

/* Append one encoded event (copied into a single allocation). */
static int enqueue(proto_events_pub_t *p, const char *pattern, const char *body,
                   proto_events_ack_fn ack, void *ack_arg) {
  size_t plen = strlen(pattern), blen = strlen(body);
  pub_item_t *it = malloc(sizeof(*it) + plen + 1 + blen + 1);
  if (!it)
    return PROTO_ENOMEM;
  it->next = NULL;
  it->channel = (char *)(it + 1);
  it->channel_len = plen;
  memcpy(it->channel, pattern, plen + 1);
  it->body = it->channel + plen + 1;
  it->body_len = blen;
  memcpy(it->body, body, blen + 1);
  it->sent = 0;
  it->ack = ack;
  it->ack_arg = ack_arg;
  if (p->tail)
    p->tail->next = it;
  else
    p->head = it;
  p->tail = it;
  if (!p->next_send)
    p->next_send = it;
  p->count++;
  p->stats.accepted++;
  return 0;
}

int proto_events_publish_with(proto_events_pub_t *p, const char *pattern, json_t *data,
                              json_t *metadata, const char *request_id,
                              const proto_events_publish_opts_t *opts,
                              char event_id_out[PROTO_ID_MAX]) {
  int rc = 0;
  char *body = NULL;
  char event_id[PROTO_ID_MAX];
  const proto_events_publish_opts_t none = {0};
  if (!opts)
    opts = &none;

  if (!data)
    data = json_null();
  if (!p || !pattern || !*pattern || (metadata && !json_is_object(metadata)) ||
      (opts->event_id && (!*opts->event_id || strlen(opts->event_id) >= PROTO_ID_MAX)) ||
      (opts->occurred_at &&
       (!*opts->occurred_at || strlen(opts->occurred_at) >= PROTO_ISO_TIME_LEN))) {
    rc = PROTO_EINVAL;
    goto out;
  }
  if (p->closing) {
    rc = PROTO_ECLOSED;
    goto out;
  }
  if (opts->event_id)
    memcpy(event_id, opts->event_id, strlen(opts->event_id) + 1);
  else if ((rc = proto_random_id("evt_", event_id, sizeof(event_id))) != 0)
    goto out;
  if (p->count >= p->queue_max) {
    note_drop(p, pattern, event_id, request_id);
    rc = PROTO_EFULL;
    goto out;
  }
  rc = encode_event(pattern, data, metadata, request_id, event_id, opts->occurred_at, &body);
  data = metadata = NULL; /* stolen */
  if (rc == 0)
    rc = enqueue(p, pattern, body, opts->ack, opts->ack_arg);
  if (rc != 0)
    goto out;
  if (event_id_out)
    memcpy(event_id_out, event_id, strlen(event_id) + 1);
  pump(p);
out:
  free(body);
  json_decref(data);
  json_decref(metadata);
  return rc;
}

int proto_events_publish_ex(proto_events_pub_t *p, const char *pattern, json_t *data,
                            json_t *metadata, const char *request_id,
                            char event_id_out[PROTO_ID_MAX]) {
  return proto_events_publish_with(p, pattern, data, metadata, request_id, NULL, event_id_out);
}

int proto_events_publish(proto_events_pub_t *p, const char *pattern, json_t *data,
                         const char *request_id) {
  return proto_events_publish_ex(p, pattern, data, NULL, request_id, NULL);
}

void proto_events_pub_stats(const proto_events_pub_t *p, proto_events_pub_stats_t *out) {
  *out = p->stats;
  out->queued = p->count;
  out->inflight = p->inflight;
}

void proto_events_pub_status(const proto_events_pub_t *p, proto_redis_status_t *out) {
  proto__redis_conn_status(&p->conn, out);
}

json_t *proto_events_pub_health(const proto_events_pub_t *p) {
  proto_redis_status_t st;
  proto__redis_conn_status(&p->conn, &st);
  return json_pack("{s:b,s:s?,s:s?,s:I,s:I,s:I,s:I}", "connected", st.connected,
                   "lastError", st.last_error[0] ? st.last_error : NULL, "lastErrorAt",
                   st.last_error_at[0] ? st.last_error_at : NULL, "published",
                   (json_int_t)p->stats.published, "queued", (json_int_t)p->count,
                   "inflight", (json_int_t)p->inflight, "dropped",
                   (json_int_t)p->stats.dropped);
}

/* The flush is over: drop what is left and close the connection. */
static void finish_close(proto_events_pub_t *p) {
  if (p->finished)
    return;
  p->finished = 1;
  (void)uv_timer_stop(&p->flush_timer);
  if (p->count > 0) {
    proto_log_fields(PROTO_LOG_WARN, NULL, "events_dropped_at_close",
                     json_pack("{s:s,s:I,s:I}", "name", p->conn.name, "dropped",
                               (json_int_t)p->count, "inflight", (json_int_t)p->inflight));
    p->stats.dropped += p->count;
  }
  /* Each dropped event's ack learns it was not sent (its owner keeps it for
   * later); p->closing makes a publish from the ack fail. */
  while (p->head)
    pop_head_ack(p, PROTO_ECLOSED);
  p->inflight = 0;
  p->next_send = NULL;
  proto__redis_conn_close(&p->conn);
}

static void on_flush_deadline(uv_timer_t *t) {
  finish_close((proto_events_pub_t *)t->data);
}

void proto_events_pub_close(proto_events_pub_t *p, unsigned flush_timeout_ms,
                            void (*done)(void *arg), void *arg) {
  if (!p || p->closing)
    return;
  p->closing = 1;
  p->done = done;
  p->done_arg = arg;
  if (p->count == 0 || flush_timeout_ms == 0) {
    finish_close(p);
    return;
  }
  proto_log_fields(PROTO_LOG_INFO, NULL, "events_flushing_at_close",
                   json_pack("{s:s,s:I,s:i}", "name", p->conn.name, "queued",
                             (json_int_t)p->count, "timeoutMs", (int)flush_timeout_ms));
  if (uv_timer_start(&p->flush_timer, on_flush_deadline, flush_timeout_ms, 0) != 0)
    finish_close(p);
}
