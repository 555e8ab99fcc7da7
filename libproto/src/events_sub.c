/* events_sub.c: the event subscriber. One SUBSCRIBE connection; after every
 * (re)connect it subscribes to every registered channel again. Messages are
 * decoded as ServerRedis does (a JSON object with "pattern" or "data" is the
 * envelope, any other JSON is the data itself), de-duplicated by eventId over
 * a window of recent ids, and handed to the channel's handler.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "proto/error.h"
#include "proto/events.h"
#include "proto/log.h"
#include "redis_internal.h"

typedef struct sub_handler {
  char *channel;                /* owned: the pattern, matched literally */
  size_t channel_len;
  proto_events_handler_fn fn;
  void *ctx;
  int confirmed;                /* SUBSCRIBE acknowledged on this connection */
} sub_handler_t;

struct proto_events_sub {
  proto__redis_conn_t conn;     /* first: the SUBSCRIBE connection */
  sub_handler_t *handlers;      /* owned array */
  size_t n_handlers;
  size_t cap_handlers;
  size_t n_confirmed;           /* handlers confirmed on this connection */
  proto_events_sub_stats_t stats;
  /* de-duplication: a set of recent ids and the ring that evicts the oldest */
  json_t *seen;                 /* object used as a set; NULL when off */
  char **ring;                  /* window slots, owned strings or NULL */
  size_t window;                /* ring size, 0 = off */
  size_t ring_next;             /* slot the next id goes into */
  int closing;
  void (*done)(void *arg);
  void *done_arg;
};

static proto_events_sub_t *sub_of(proto__redis_conn_t *conn) {
  return proto__container_of(conn, proto_events_sub_t, conn);
}

static sub_handler_t *find_handler(proto_events_sub_t *s, const char *ch, size_t len) {
  for (size_t i = 0; i < s->n_handlers; i++)
    if (s->handlers[i].channel_len == len && memcmp(s->handlers[i].channel, ch, len) == 0)
      return &s->handlers[i];
  return NULL;
}

/* Non-zero when id was seen in the window; otherwise remembers it. */
static int seen_before(proto_events_sub_t *s, const char *id) {
  if (!s->seen)
    return 0;
  if (json_object_get(s->seen, id))
    return 1;
  char *copy = strdup(id);
  if (!copy)
    return 0; /* out of memory: deliver, at worst a duplicate */
  if (json_object_set_new(s->seen, id, json_true()) != 0) {
    free(copy);
    return 0;
  }
  char **slot = &s->ring[s->ring_next];
  if (*slot) {
    json_object_del(s->seen, *slot);
    free(*slot);
  }
  *slot = copy;
  s->ring_next = (s->ring_next + 1) % s->window;
  return 0;
}

static const char *meta_str(const json_t *meta, const char *key) {
  return meta ? json_string_value(json_object_get(meta, key)) : NULL;
}

static void deliver(proto_events_sub_t *s, const redisReply *chan, const redisReply *msg) {
  sub_handler_t *h = find_handler(s, chan->str, chan->len);
  if (!h)
    return; /* unsubscribed meanwhile */
  s->stats.received++;
  json_error_t jerr;
  json_t *root = json_loadb(msg->str, msg->len, JSON_DECODE_ANY, &jerr);
  if (!root) {
    /* NestJS would hand the raw text over as data; we refuse it (issue). */
    s->stats.invalid++;
    proto_log_fields(PROTO_LOG_WARN, NULL, "event_invalid_json",
                     json_pack("{s:s,s:s,s:s,s:I}", "name", s->conn.name, "channel",
                               h->channel, "error", jerr.text, "bytes",
                               (json_int_t)msg->len));
    return;
  }
  proto_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.channel = h->channel;
  if (json_is_object(root) &&
      (json_object_get(root, "pattern") || json_object_get(root, "data"))) {
    const json_t *meta = json_object_get(root, "metadata");
    ev.pattern = json_object_get(root, "pattern");
    ev.data = json_object_get(root, "data");
    ev.metadata = json_is_object(meta) ? meta : NULL;
  } else {
    ev.data = root; /* no envelope: the whole message is the data */
  }
  if (!ev.data)
    ev.data = json_null();
  ev.event_id = meta_str(ev.metadata, "eventId");
  ev.request_id = meta_str(ev.metadata, "requestId");
  if (ev.event_id && seen_before(s, ev.event_id)) {
    s->stats.duplicates++;
    proto_log_fields(PROTO_LOG_DEBUG, ev.request_id, "event_duplicate",
                     json_pack("{s:s,s:s,s:s}", "name", s->conn.name, "channel",
                               h->channel, "eventId", ev.event_id));
    json_decref(root);
    return;
  }
  s->stats.delivered++;
  /* h may move if the handler registers another one: not used after. */
  h->fn(&ev, h->ctx);
  json_decref(root);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  proto_events_sub_t *s = privdata;
  const redisReply *r = reply;
  if (!r || s->closing || !proto__redis_conn_is_current(&s->conn, ac))
    return;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_STRING)
    return;
  const char *kind = r->element[0]->str;
  if (strcasecmp(kind, "message") == 0) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      deliver(s, r->element[1], r->element[2]);
    return;
  }
  if (strcasecmp(kind, "subscribe") == 0) {
    sub_handler_t *h = find_handler(s, r->element[1]->str, r->element[1]->len);
    if (h && !h->confirmed) {
      h->confirmed = 1;
      if (++s->n_confirmed == s->n_handlers)
        proto_log_fields(PROTO_LOG_INFO, NULL, "events_subscribed",
                         json_pack("{s:s,s:I}", "name", s->conn.name, "channels",
                                   (json_int_t)s->n_handlers));
    }
  }
}

/* SUBSCRIBE handlers[from..n_handlers) in one command. */
static void subscribe_from(proto_events_sub_t *s, size_t from) {
  redisAsyncContext *ac = proto__redis_conn_ac(&s->conn);
  size_t n = s->n_handlers - from;
  if (!ac || n == 0)
    return;
  const char **argv = malloc((n + 1) * sizeof(*argv));
  size_t *argvlen = malloc((n + 1) * sizeof(*argvlen));
  int rc = REDIS_ERR;
  if (argv && argvlen) {
    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    for (size_t i = 0; i < n; i++) {
      argv[i + 1] = s->handlers[from + i].channel;
      argvlen[i + 1] = s->handlers[from + i].channel_len;
    }
    rc = redisAsyncCommandArgv(ac, on_sub_reply, s, (int)(n + 1), argv, argvlen);
  }
  free(argv);
  free(argvlen);
  if (rc != REDIS_OK)
    proto__redis_conn_fail(&s->conn, "cannot queue SUBSCRIBE");
}

static void sub_on_ready(proto__redis_conn_t *conn) {
  proto_events_sub_t *s = sub_of(conn);
  s->n_confirmed = 0;
  for (size_t i = 0; i < s->n_handlers; i++)
    s->handlers[i].confirmed = 0;
  subscribe_from(s, 0);
}

static void sub_on_lost(proto__redis_conn_t *conn) {
  proto_events_sub_t *s = sub_of(conn);
  s->n_confirmed = 0;
  for (size_t i = 0; i < s->n_handlers; i++)
    s->handlers[i].confirmed = 0;
}

static void free_dedupe(proto_events_sub_t *s) {
  for (size_t i = 0; i < s->window; i++)
    free(s->ring[i]);
  free(s->ring);
  json_decref(s->seen);
  s->ring = NULL;
  s->seen = NULL;
  s->window = 0;
  s->ring_next = 0;
}

static void sub_on_closed(proto__redis_conn_t *conn) {
  proto_events_sub_t *s = sub_of(conn);
  void (*done)(void *) = s->done;
  void *arg = s->done_arg;
  for (size_t i = 0; i < s->n_handlers; i++)
    free(s->handlers[i].channel);
  free(s->handlers);
  free_dedupe(s);
  proto__redis_conn_release(&s->conn);
  free(s);
  if (done)
    done(arg);
}

static const proto__redis_conn_ops_t sub_ops = {
    .on_ready = sub_on_ready,
    .on_lost = sub_on_lost,
    .on_closed = sub_on_closed,
};

int proto_events_sub_set_dedupe_window(proto_events_sub_t *s, size_t window) {
  if (!s)
    return PROTO_EINVAL;
  free_dedupe(s);
  if (window == 0)
    return 0;
  s->seen = json_object();
  s->ring = calloc(window, sizeof(*s->ring));
  if (!s->seen || !s->ring) {
    free(s->ring);
    json_decref(s->seen);
    s->ring = NULL;
    s->seen = NULL;
    return PROTO_ENOMEM;
  }
  s->window = window;
  return 0;
}

proto_events_sub_t *proto_events_sub_new(uv_loop_t *loop, const proto_redis_opts_t *opts) {
  proto_events_sub_t *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  int rc = proto__redis_conn_init(&s->conn, loop, opts, "events-sub", &sub_ops);
  if (rc == 0)
    rc = proto_events_sub_set_dedupe_window(s, PROTO_EVENTS_DEDUPE_WINDOW_DEFAULT);
  if (rc != 0) {
    s->closing = 1;
    if (s->conn.handles_open == 0) {
      free_dedupe(s);
      proto__redis_conn_release(&s->conn);
      free(s);
    } else {
      proto__redis_conn_close(&s->conn); /* frees s from sub_on_closed */
    }
    return NULL;
  }
  proto__redis_conn_start(&s->conn);
  return s;
}

int proto_events_sub_on(proto_events_sub_t *s, const char *pattern,
                        proto_events_handler_fn fn, void *ctx) {
  if (!s || !pattern || !*pattern || !fn)
    return PROTO_EINVAL;
  if (s->closing)
    return PROTO_ECLOSED;
  size_t len = strlen(pattern);
  if (find_handler(s, pattern, len))
    return PROTO_EINVAL;
  if (s->n_handlers == s->cap_handlers) {
    size_t cap = s->cap_handlers ? 2 * s->cap_handlers : 8;
    sub_handler_t *grown = realloc(s->handlers, cap * sizeof(*grown));
    if (!grown)
      return PROTO_ENOMEM;
    s->handlers = grown;
    s->cap_handlers = cap;
  }
  char *copy = strdup(pattern);
  if (!copy)
    return PROTO_ENOMEM;
  sub_handler_t *h = &s->handlers[s->n_handlers++];
  h->channel = copy;
  h->channel_len = len;
  h->fn = fn;
  h->ctx = ctx;
  h->confirmed = 0;
  subscribe_from(s, s->n_handlers - 1); /* at once when connected */
  return 0;
}

int proto_events_sub_ready(const proto_events_sub_t *s) {
  return s->conn.state == PROTO__REDIS_READY && s->n_confirmed == s->n_handlers;
}

void proto_events_sub_stats(const proto_events_sub_t *s, proto_events_sub_stats_t *out) {
  *out = s->stats;
}

void proto_events_sub_status(const proto_events_sub_t *s, proto_redis_status_t *out) {
  proto__redis_conn_status(&s->conn, out);
}

json_t *proto_events_sub_health(const proto_events_sub_t *s) {
  proto_redis_status_t st;
  proto__redis_conn_status(&s->conn, &st);
  return json_pack("{s:b,s:b,s:s?,s:s?,s:I,s:I,s:I}", "connected", st.connected,
                   "subscribed", proto_events_sub_ready(s), "lastError",
                   st.last_error[0] ? st.last_error : NULL, "lastErrorAt",
                   st.last_error_at[0] ? st.last_error_at : NULL, "received",
                   (json_int_t)s->stats.received, "invalid", (json_int_t)s->stats.invalid,
                   "duplicates", (json_int_t)s->stats.duplicates);
}

void proto_events_sub_close(proto_events_sub_t *s, void (*done)(void *arg), void *arg) {
  if (!s || s->closing)
    return;
  s->closing = 1;
  s->done = done;
  s->done_arg = arg;
  proto__redis_conn_close(&s->conn);
}
