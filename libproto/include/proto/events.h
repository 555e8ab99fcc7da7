/* proto/events.h: domain events over Redis pub/sub, as NestJS's Redis transport
 * carries them (PROTOCOL.md sections 4 and 5), on the daemon's own libuv loop.
 *
 * Wire format. An event is `PUBLISH <channel> <message>` where the channel is
 * the event pattern (a plain string, so its normalised form is itself) and the
 * message is the compact JSON text, UTF-8, no length prefix:
 *   {"pattern":"order_created","data":{...},"metadata":{"requestId":"...",
 *    "eventId":"evt_<32 hex>","occurredAt":"2026-01-01T00:00:00.000Z"}}
 * exactly the bytes NestJS's ClientRedis.emit() publishes (with its dispatch
 * hook setting metadata), so a NestJS @EventPattern handler receives `data`
 * unchanged. Non-ASCII text is sent as raw UTF-8, as JSON.stringify does.
 *
 * Delivery is at least once while the publisher is alive: events wait in a
 * bounded in-memory queue while Redis is away, and events sent but not yet
 * acknowledged when a connection drops are sent again on the next one.
 * Subscribers therefore de-duplicate by metadata.eventId (the subscriber here
 * does so over a window of recent ids). Redis pub/sub stores nothing: an event
 * published while no subscriber is connected is lost (it counts as `unheard`).
 *
 * Connections. Each publisher and subscriber owns one Redis connection on the
 * caller's loop (hiredis async API with our own libuv adapter). It connects
 * with a deadline, sends AUTH when a password is set (on every reconnect),
 * and after any failure reconnects with exponential backoff (50 ms doubling to
 * 2 s by default). A subscriber re-subscribes after every reconnect.
 *
 * Threads: none. Every function must be called on the loop's thread. Callbacks
 * run on the loop. If a function that takes a callback returns an error, the
 * callback will not run. The process must ignore SIGPIPE (proto_daemon_init()
 * does): hiredis writes with write(2), and Redis going away mid-write would
 * otherwise kill the daemon.
 */
#ifndef PROTO_EVENTS_H
#define PROTO_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "proto/util.h"

#define PROTO_REDIS_HOST_DEFAULT "127.0.0.1"
#define PROTO_REDIS_PORT_DEFAULT 6379
#define PROTO_REDIS_CONNECT_TIMEOUT_MS_DEFAULT 2000u /* TCP connect + AUTH/PING */
#define PROTO_REDIS_BACKOFF_MIN_MS_DEFAULT 50u
#define PROTO_REDIS_BACKOFF_MAX_MS_DEFAULT 2000u
#define PROTO_REDIS_ERROR_MAX 256                    /* bytes of last_error, NUL included */

#define PROTO_EVENTS_QUEUE_MAX_DEFAULT 10000u        /* EVENTS_QUEUE_MAX */
#define PROTO_EVENTS_QUEUE_MAX_LIMIT 10000000u       /* largest EVENTS_QUEUE_MAX accepted */
#define PROTO_EVENTS_INFLIGHT_MAX 1024u              /* PUBLISHes pipelined before waiting */
#define PROTO_EVENTS_DROP_LOG_INTERVAL_MS 1000u      /* at most one "event_dropped" line per */
#define PROTO_EVENTS_DEDUPE_WINDOW_DEFAULT 4096u     /* recent eventIds a subscriber remembers */

/* --- connection options and state ------------------------------------------ */

typedef struct proto_redis_opts {
  const char *host;             /* NULL: PROTO_REDIS_HOST_DEFAULT; name or address */
  int port;                     /* 0: PROTO_REDIS_PORT_DEFAULT */
  const char *password;         /* NULL or "": no AUTH */
  const char *name;             /* for logs; NULL: "events-pub" / "events-sub" */
  unsigned connect_timeout_ms;  /* 0: default */
  unsigned backoff_min_ms;      /* 0: default */
  unsigned backoff_max_ms;      /* 0: default */
  size_t queue_max;             /* publisher only; 0: PROTO_EVENTS_QUEUE_MAX_DEFAULT */
} proto_redis_opts_t;

/* Set host, port, password and queue_max from REDIS_HOST (127.0.0.1),
 * REDIS_PORT (6379), REDIS_PASSWORD (unset: no AUTH) and EVENTS_QUEUE_MAX
 * (10000); other fields are left as they are (zero-initialise opts first).
 * The strings point into the environment; *_new() copies them. 0, or
 * PROTO_EINVAL for a malformed value (logged). */
int proto_redis_opts_from_env(proto_redis_opts_t *opts);

/* What a health reply shows about a connection. */
typedef struct proto_redis_status {
  int connected;                            /* connected, authenticated, usable */
  char last_error[PROTO_REDIS_ERROR_MAX];   /* "" when there never was one */
  char last_error_at[PROTO_ISO_TIME_LEN];   /* ISO 8601, "" when none */
  uint64_t connects;                        /* connections established */
  uint64_t connect_failures;                /* failed attempts (refused, timeout, AUTH) */
} proto_redis_status_t;

/* --- publisher -------------------------------------------------------------- */

typedef struct proto_events_pub proto_events_pub_t;

typedef struct proto_events_pub_stats {
  uint64_t accepted;   /* events queued by a publish call */
  uint64_t published;  /* PUBLISH acknowledged by Redis */
  uint64_t dropped;    /* refused because the queue was full, or discarded at close */
  uint64_t resent;     /* sends repeated after a connection was lost mid-flight */
  uint64_t unheard;    /* acknowledged with no subscriber listening (lost) */
  size_t queued;       /* waiting or in flight now */
  size_t inflight;     /* sent, reply not yet received */
} proto_events_pub_stats_t;

/* A publisher on loop. The first connection attempt starts at once. opts may
 * be NULL (defaults, not the environment). NULL on ENOMEM or a bad option. */
proto_events_pub_t *proto_events_pub_new(uv_loop_t *loop, const proto_redis_opts_t *opts);

/* Queue the event {"pattern":pattern,"data":data,"metadata":{...}} for
 * `PUBLISH pattern <json>` and return at once: never blocks, never waits for
 * Redis. data is stolen (also on error; NULL means JSON null). metadata
 * (stolen, may be NULL) is an object of extra string values, e.g.
 * traceparent; requestId (when request_id is not NULL), eventId (new, unique)
 * and occurredAt (now) are set over it. event_id_out, when not NULL, receives
 * the eventId.
 *
 * Events go out in the order of the calls. While Redis is away they wait in a
 * queue of at most queue_max events (waiting plus in flight). When it is full
 * the NEW event is dropped (drop-newest): what is already queued keeps its
 * order with no hole in the middle, and the drop is logged ("event_dropped",
 * rate-limited, with the dropping request's requestId) and counted.
 *
 * 0: queued. PROTO_EFULL: dropped (already logged and counted; the caller's
 * request should not fail because of it). PROTO_EINVAL (empty pattern,
 * metadata not an object, text not UTF-8), PROTO_ENOMEM, PROTO_EIO (no random
 * id), PROTO_ECLOSED (the publisher is closing). */
int proto_events_publish(proto_events_pub_t *pub, const char *pattern, json_t *data,
                         const char *request_id);
int proto_events_publish_ex(proto_events_pub_t *pub, const char *pattern, json_t *data,
                            json_t *metadata, const char *request_id,
                            char event_id_out[PROTO_ID_MAX]);

/* Told what became of one event of proto_events_publish_with(): status 0 when
 * Redis acknowledged its PUBLISH (also with no subscriber listening),
 * PROTO_ECLOSED when the publisher dropped it at close without an
 * acknowledgement (it may still have reached Redis). Runs on the loop, never
 * inside the publish call, exactly once per event that call queued (0
 * returned), in the order of the calls. It may publish again (at close that
 * returns PROTO_ECLOSED); it must not close the publisher. */
typedef void (*proto_events_ack_fn)(int status, void *arg);

typedef struct proto_events_publish_opts {
  const char *event_id;            /* NULL: a new one; else sent as it is (a re-send) */
  const char *occurred_at;         /* NULL: now; else sent as it is (ISO 8601) */
  proto_events_ack_fn ack;         /* NULL: none */
  void *ack_arg;
} proto_events_publish_opts_t;

/* proto_events_publish_ex() with opts (may be NULL: the same as _ex): an
 * event stored earlier (an outbox) goes out with its own eventId and
 * occurredAt, and ack says when Redis has it. The same return codes;
 * PROTO_EINVAL also for an empty or too long event_id / occurred_at. If it
 * returns an error, ack will not run. */
int proto_events_publish_with(proto_events_pub_t *pub, const char *pattern, json_t *data,
                              json_t *metadata, const char *request_id,
                              const proto_events_publish_opts_t *opts,
                              char event_id_out[PROTO_ID_MAX]);

void proto_events_pub_stats(const proto_events_pub_t *pub, proto_events_pub_stats_t *out);
void proto_events_pub_status(const proto_events_pub_t *pub, proto_redis_status_t *out);
/* {"connected":bool,"lastError":str|null,"lastErrorAt":str|null,"published":n,
 *  "queued":n,"inflight":n,"dropped":n} for a health reply; NULL on ENOMEM. */
json_t *proto_events_pub_health(const proto_events_pub_t *pub);

/* Stop accepting events. If events are queued and flush_timeout_ms > 0, keep
 * sending (and reconnecting) until the queue is empty or the deadline passes;
 * what is left then is dropped, logged and counted. Then close the connection
 * and free the publisher once its handles are closed, after calling done (may
 * be NULL) exactly once from the loop. Call once; the publisher must not be
 * used after this call (publish() in between would return PROTO_ECLOSED, but
 * the pointer may be freed at any loop turn). */
void proto_events_pub_close(proto_events_pub_t *pub, unsigned flush_timeout_ms,
                            void (*done)(void *arg), void *arg);

/* --- subscriber ------------------------------------------------------------- */

typedef struct proto_events_sub proto_events_sub_t;

/* One received event. Everything is borrowed for the duration of the handler
 * call only; json_incref() what you keep. */
typedef struct proto_event {
  const char *channel;       /* the channel it came on: the registered pattern */
  const json_t *pattern;     /* the envelope's "pattern", NULL for a bare message */
  const json_t *data;        /* the envelope's "data" (a JSON null when absent), or the
                                whole message when it has no envelope; never NULL */
  const json_t *metadata;    /* the envelope's "metadata" when an object, else NULL */
  const char *event_id;      /* metadata.eventId when a string, else NULL */
  const char *request_id;    /* metadata.requestId when a string, else NULL */
} proto_event_t;

typedef void (*proto_events_handler_fn)(const proto_event_t *ev, void *ctx);

typedef struct proto_events_sub_stats {
  uint64_t received;    /* messages on a subscribed channel */
  uint64_t delivered;   /* handler calls */
  uint64_t invalid;     /* not JSON: logged and dropped */
  uint64_t duplicates;  /* eventId seen within the de-duplication window: dropped */
} proto_events_sub_stats_t;

/* A subscriber on loop. The first connection attempt starts at once; register
 * handlers right after (or at any time: a handler added while connected is
 * subscribed at once). opts may be NULL; queue_max is ignored. */
proto_events_sub_t *proto_events_sub_new(uv_loop_t *loop, const proto_redis_opts_t *opts);

/* Call fn for every event published on the channel `pattern` (the normalised
 * event pattern, matched literally, as NestJS's ServerRedis does). A message
 * that is a JSON object with "pattern" or "data" is the NestJS envelope;
 * anything else that parses as JSON is delivered whole as data; text that is
 * not JSON is logged ("event_invalid_json") and dropped. The handler may call
 * proto_events_sub_close(); no handler runs after that. 0, PROTO_EINVAL (empty
 * pattern, duplicate), PROTO_ENOMEM, PROTO_ECLOSED. */
int proto_events_sub_on(proto_events_sub_t *sub, const char *pattern,
                        proto_events_handler_fn fn, void *ctx);

/* Remember the last `window` eventIds and drop repeats (0 turns
 * de-duplication off). Default PROTO_EVENTS_DEDUPE_WINDOW_DEFAULT. Resets
 * what was remembered. 0 or PROTO_ENOMEM. */
int proto_events_sub_set_dedupe_window(proto_events_sub_t *sub, size_t window);

/* Non-zero when connected and every registered channel's SUBSCRIBE has been
 * confirmed by Redis on the current connection. */
int proto_events_sub_ready(const proto_events_sub_t *sub);

void proto_events_sub_stats(const proto_events_sub_t *sub, proto_events_sub_stats_t *out);
void proto_events_sub_status(const proto_events_sub_t *sub, proto_redis_status_t *out);
/* {"connected":bool,"subscribed":bool,"lastError":...,"lastErrorAt":...,
 *  "received":n,"invalid":n,"duplicates":n}; NULL on ENOMEM. */
json_t *proto_events_sub_health(const proto_events_sub_t *sub);

/* Close the connection and free the subscriber once its handles are closed,
 * then call done (may be NULL) exactly once from the loop. May be called from
 * a handler. Call once. */
void proto_events_sub_close(proto_events_sub_t *sub, void (*done)(void *arg), void *arg);

#endif
