/* notification.h: the notification service's internal API, shared by
 * message.c, store.c, webhook.c, handlers.c, main.c and the unit tests.
 * Nothing here is installed.
 *
 * Layers: message.c turns an event's data into a notification draft (pure:
 * validation, money formatting, texts, the eventId derived from content,
 * with sha256.c); store.c owns the SQLite database;
 * webhook.c POSTs notifications to NOTIFY_WEBHOOK_URL with libcurl's multi
 * interface on the libuv loop; handlers.c glues them to the Redis subscriber
 * and the RPC server, on libsvc's service context (svc/service.h), which
 * main.c's table hands to svc_main() (svc/daemon.h).
 */
#ifndef NOTIFICATION_H
#define NOTIFICATION_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "proto/events.h"
#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "store/conn.h"
#include "store/db.h"
#include "svc/result.h"
#include "svc/service.h"

/* --- limits and defaults ----------------------------------------------------- */

#define NTF_SERVICE_PORT_DEFAULT 3004
#define NTF_DB_FILE "notification.db"

#define NTF_ID_PREFIX "ntf_"             /* notification ids: ntf_ + 32 hex */
/* eventIds we derive from an event's content when none was sent: this
 * prefix + NTF_EVENT_ID_DERIVED_HEX hex digits of SHA-256. Not "evt_" (a
 * publisher's unique, time-ordered id): these are neither. */
#define NTF_EVENT_ID_DERIVED_PREFIX "dig_"
#define NTF_EVENT_ID_DERIVED_HEX 32      /* 128 bits of the digest */
#define NTF_EVENT_ID_DERIVED_SIZE (sizeof(NTF_EVENT_ID_DERIVED_PREFIX) + NTF_EVENT_ID_DERIVED_HEX)
#define NTF_CURRENCY_DEFAULT "USD"       /* as the HTTP API defaults it */
#define NTF_ID_MAX_BYTES 128             /* userId, orderId, paymentId, eventId */
#define NTF_STATUS_MAX_BYTES 64          /* order statuses */
#define NTF_REASON_MAX_BYTES 256         /* payment failure reasons are cut to this */
#define NTF_MESSAGE_MAX_BYTES 1024       /* fits every text built from the above */
#define NTF_TITLE_MAX_BYTES 64
#define NTF_AMOUNT_MAX 9007199254740991LL /* 2^53 - 1: exact in a JavaScript number */
#define NTF_DATA_MAX_BYTES 65536         /* event data kept with a notification */

#define NTF_PAGE_DEFAULT 1
#define NTF_PAGE_MAX 1000000000          /* keeps (page - 1) * limit far from overflow */
#define NTF_LIMIT_DEFAULT 10
#define NTF_LIMIT_MAX 100                /* larger limits are capped, not rejected */

#define NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT 5
#define NTF_WEBHOOK_MAX_ATTEMPTS_LIMIT 100
#define NTF_WEBHOOK_TIMEOUT_MS_DEFAULT 5000      /* per attempt, connect included */
#define NTF_WEBHOOK_BACKOFF_MS_DEFAULT 200       /* before the 2nd attempt; doubles */
#define NTF_WEBHOOK_BACKOFF_MAX_MS 30000         /* the doubling stops here */
#define NTF_WEBHOOK_CONCURRENCY_DEFAULT 8        /* attempts in flight at once */
#define NTF_WEBHOOK_QUEUE_MAX_DEFAULT 10000      /* deliveries held in memory */
#define NTF_WEBHOOK_SHUTDOWN_MS 2000             /* in-flight attempts may finish */
#define NTF_WEBHOOK_ERROR_MAX 256                 /* bytes of a delivery error text */

/* --- events -> drafts (message.c) --------------------------------------------- */

/* The events we subscribe to, in registration order. */
typedef enum {
  NTF_EV_ORDER_CREATED,
  NTF_EV_ORDER_STATUS_CHANGED,
  NTF_EV_PAYMENT_COMPLETED,
  NTF_EV_PAYMENT_FAILED,
  NTF_EV_PAYMENT_REFUNDED,
  NTF_EV_ORDER_COMPLETED,
  NTF_EV_ORDER_FAILED,
  NTF_EV_COUNT_,
} ntf_event_kind_t;

/* The event pattern (channel) of a kind, e.g. "order_created". */
const char *ntf_event_pattern(ntf_event_kind_t kind);
/* The kind for a pattern, or -1 when we do not handle it. */
int ntf_event_kind(const char *pattern);

/* What an event becomes. Strings borrow from the event data (keep it alive)
 * except the texts, which are built here. */
typedef struct ntf_draft {
  const char *type;                /* static: "order_confirmation", ... */
  const char *user_id;             /* NUL-terminated (a JSON string) */
  const char *order_id;            /* NULL when the event has none */
  char title[NTF_TITLE_MAX_BYTES];
  char message[NTF_MESSAGE_MAX_BYTES];
} ntf_draft_t;

/* Why an event was rejected: field is static ("userId", "data"), message
 * is static ("is required"). */
typedef struct ntf_invalid {
  const char *field;
  const char *message;
} ntf_invalid_t;

/* Validate data for kind and build the draft. Accepts our shapes and the
 * NestJS tutorial's (PROTOCOL.md section 7): a missing currency is
 * NTF_CURRENCY_DEFAULT, an amount may be a fractional JavaScript number
 * (formatted by ntf_format_amount()). Extra fields are ignored (tolerant
 * reader: producers add fields over time). 0, or -1 with *why. */
int ntf_build(ntf_event_kind_t kind, const json_t *data, ntf_draft_t *out, ntf_invalid_t *why);

/* Format amount minor units of currency as a decimal with the currency's
 * ISO 4217 exponent (2 unless listed as 0 or 3), integer arithmetic only:
 * (3998, "USD") -> "39.98", (500, "JPY") -> "500", (-5, "EUR") -> "-0.05".
 * Returns the length written, or -1 when size is too small (out holds ""). */
int ntf_format_money(int64_t amount, const char *currency, char *out, size_t size);
/* Digits after the decimal point for an ISO 4217 code (any case): 0, 2, 3 or 4. */
int ntf_currency_exponent(const char *currency);
/* Format a fractional amount of minor units (a JavaScript number from a
 * NestJS peer, e.g. 10.5) as a decimal in major units: the shortest digits
 * that read back as the same double (what JavaScript prints), with the
 * decimal point moved by the currency's exponent in the text, so nothing is
 * rounded: (10.5, "USD") -> "0.105", (1999.5, "JPY") -> "1999.5". Below
 * 10^-NTF_AMOUNT_ZEROS_MAX the text would be mostly zeros: then scientific,
 * "5e-326". value must be finite and >= 0. Length, or -1 as above. */
int ntf_format_amount(double value, const char *currency, char *out, size_t size);
#define NTF_AMOUNT_ZEROS_MAX 20

/* The eventId of an event whose publisher sent none: "dig_" + the first
 * 128 bits of SHA-256 over pattern, a NUL, and data as canonical JSON
 * (compact, keys sorted, ASCII-only escapes, numbers as jansson prints them:
 * the same double gives the same text). Identical content gives the same id,
 * so a redelivery stores nothing new. 0, or -1 on ENOMEM. */
int ntf_event_id_derive(const char *pattern, const json_t *data,
                        char out[NTF_EVENT_ID_DERIVED_SIZE]);

/* SHA-256 (sha256.c), incremental. */
#define NTF_SHA256_BYTES 32
typedef struct ntf_sha256 {
  uint32_t h[8];
  uint64_t len;                    /* bytes hashed so far */
  unsigned char buf[64];           /* a partial block */
  size_t used;                     /* bytes in buf */
} ntf_sha256_t;
void ntf_sha256_init(ntf_sha256_t *s);
void ntf_sha256_update(ntf_sha256_t *s, const void *data, size_t n);
void ntf_sha256_final(ntf_sha256_t *s, unsigned char out[NTF_SHA256_BYTES]);

/* The notification object for a draft: {"id","userId","type","title",
 * "message","eventId","eventPattern","orderId","data","requestId",
 * "createdAt","delivery":{"status","attempts":0}}. data is borrowed (copied
 * by reference: json_incref); request_id may be NULL. id and created_at are
 * new (ntf_ + 32 hex, now). NULL on ENOMEM or no randomness. */
json_t *ntf_notification_new(const ntf_draft_t *d, const char *event_id,
                             const char *event_pattern, const json_t *data,
                             const char *request_id, const char *delivery_status);

/* --- storage (store.c) ------------------------------------------------------- */

typedef struct ntf_store ntf_store_t;

/* The store described once (store/conn.h); svc_def_t.store opens it. */
extern const store_schema_t ntf_store_schema;

/* Return codes: STORE_OK, STORE_EINVAL (bad argument), STORE_ERROR (SQLite
 * or filesystem failure, logged) from store/db.h, and: */
enum {
  NTF_STORE_NOT_FOUND = STORE_RC_SERVICE,
  NTF_STORE_DUPLICATE = STORE_RC_SERVICE - 1, /* a notification for this eventId exists */
};

/* Create data_dir if missing, open data_dir/notification.db (WAL,
 * synchronous = sync, a STORE_SYNC_* level), create or check the schema,
 * prepare the statements. 0 with *out set, STORE_EINVAL or STORE_ERROR
 * (logged). */
int ntf_store_open(const char *data_dir, int sync, ntf_store_t **out);
/* Finalize statements and close the database. NULL is a no-op. Close a
 * commit group made on ntf_store_db() first. */
void ntf_store_close(ntf_store_t *s);
/* The connection (borrowed, valid until ntf_store_close()), for
 * store_group_new(): writes of one loop turn then share one transaction. */
sqlite3 *ntf_store_db(ntf_store_t *s);

/* Writes (insert, set_delivery) join the transaction open on the connection
 * (the service's commit group: svc_write_begin() first), or autocommit, each
 * durable on its own, when none is open. */

/* Insert a notification object as built by ntf_notification_new() (borrowed).
 * The row is keyed by eventId: a second notification for the same eventId
 * stores nothing and returns NTF_STORE_DUPLICATE, also when the first one is
 * still in the open transaction of a commit group (same connection).
 * STORE_EINVAL when a required field is missing or data is too large;
 * STORE_ERROR. Outside a transaction the row is committed on return;
 * inside one, when the transaction commits. */
int ntf_store_insert(ntf_store_t *s, const json_t *ntf);
/* *ntf = the notification (caller owns). NTF_STORE_NOT_FOUND or STORE_ERROR. */
int ntf_store_get(ntf_store_t *s, const char *id, json_t **ntf);
/* One page of a user's notifications, newest first (createdAt, then
 * insertion order); *items a new array, *total all of the user's. */
int ntf_store_list(ntf_store_t *s, const char *user_id, size_t user_id_len, int64_t page,
                   int64_t limit, json_t **items, int64_t *total);
/* Record a delivery outcome: status "pending", "delivered" or "failed",
 * attempts made so far, the last error (NULL clears it). NTF_STORE_NOT_FOUND
 * when no such notification. */
int ntf_store_set_delivery(ntf_store_t *s, const char *id, const char *status,
                           unsigned attempts, const char *error);
/* Up to max notifications whose delivery is "pending", oldest first, as a new
 * array of notification objects. */
int ntf_store_pending(ntf_store_t *s, size_t max, json_t **items);
/* A cheap read, for health checks. 0 or STORE_ERROR. */
int ntf_store_ping(ntf_store_t *s);
/* The connection's journal_mode (into buf) and synchronous level, read back. */
int ntf_store_settings(ntf_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- webhook delivery (webhook.c) -------------------------------------------- */

/* Deliveries POST a JSON body to one URL with libcurl's multi interface,
 * driven by the loop (a uv_poll per socket, one uv_timer for curl's
 * timeouts): nothing blocks. An attempt succeeds on a 2xx answer. Transport
 * errors (refused, reset, timeout), 408, 429 and 5xx are retried after a
 * backoff that starts at backoff_ms and doubles (capped); other answers are
 * permanent failures. curl_global_init() must have been called. Threads:
 * none (libcurl's resolver may use its own); call everything on the loop. */

typedef struct ntf_webhook ntf_webhook_t;

typedef enum {
  NTF_DELIVERY_PENDING,            /* will be retried (or was interrupted by close) */
  NTF_DELIVERY_DELIVERED,
  NTF_DELIVERY_FAILED,             /* permanent answer, or attempts exhausted */
} ntf_delivery_t;

/* "pending", "delivered", "failed". */
const char *ntf_delivery_name(ntf_delivery_t status);

/* After every attempt, and once more when close() interrupts a delivery.
 * Strings are borrowed for the duration of the call. */
typedef struct ntf_webhook_report {
  const char *id;                  /* the delivery's id (the notification id) */
  const char *request_id;          /* for logs; NULL when none */
  ntf_delivery_t status;
  unsigned attempts;               /* attempts made so far, for this id */
  long http_status;                /* last answer's status, 0 when none */
  const char *error;               /* last failure, NULL when delivered */
  unsigned retry_in_ms;            /* status PENDING and !final: the backoff */
  int final;                       /* no further report for this delivery */
} ntf_webhook_report_t;

typedef void (*ntf_webhook_report_fn)(const ntf_webhook_report_t *r, void *ctx);

typedef struct ntf_webhook_opts {
  const char *url;                 /* http:// or https://; copied */
  unsigned max_attempts;           /* 0: default */
  unsigned timeout_ms;             /* per attempt; 0: default */
  unsigned backoff_ms;             /* 0: default */
  unsigned backoff_max_ms;         /* 0: NTF_WEBHOOK_BACKOFF_MAX_MS */
  unsigned concurrency;            /* 0: default */
  size_t queue_max;                /* 0: default */
} ntf_webhook_opts_t;

/* NULL on ENOMEM, a bad URL (logged) or a libcurl failure. fn (may be NULL)
 * receives the reports. */
ntf_webhook_t *ntf_webhook_new(uv_loop_t *loop, const ntf_webhook_opts_t *opts,
                               ntf_webhook_report_fn fn, void *ctx);

/* Queue a delivery of body (stolen, also on error; serialised now) for id;
 * attempts_done counts attempts of an earlier run (restart), so the total
 * stays bounded by max_attempts. The first attempt of this run is always
 * made. 0, PROTO_EFULL (queue_max deliveries held), PROTO_ECLOSED,
 * PROTO_EINVAL, PROTO_ENOMEM; on error no report will come. */
int ntf_webhook_submit(ntf_webhook_t *w, const char *id, const char *request_id, json_t *body,
                       unsigned attempts_done);

typedef struct ntf_webhook_stats {
  uint64_t attempts;               /* POSTs started */
  uint64_t delivered;
  uint64_t failed;
  uint64_t retries;                /* attempts that will be retried */
  uint64_t interrupted;            /* deliveries cut short by close() */
  size_t active;                   /* deliveries held now (queued, in flight, backoff) */
  size_t inflight;                 /* POSTs in flight now */
} ntf_webhook_stats_t;

void ntf_webhook_stats(const ntf_webhook_t *w, ntf_webhook_stats_t *out);
/* {"url":..,"active":n,"inflight":n,"delivered":n,"failed":n,"retries":n}; the
 * URL without user:password or query. NULL on ENOMEM. */
json_t *ntf_webhook_health(const ntf_webhook_t *w);

/* Stop: refuse new deliveries; those waiting (queued or in backoff) end at
 * once; POSTs in flight may finish within deadline_ms (no further retry),
 * after which they are aborted. Every delivery not delivered or failed gets a
 * final PENDING report. Then the handles are closed, the webhook freed, and
 * done (may be NULL) called once from the loop. Call once, not from a report
 * callback. */
void ntf_webhook_close(ntf_webhook_t *w, unsigned deadline_ms, void (*done)(void *arg),
                       void *arg);

/* --- the service (handlers.c) ------------------------------------------------ */

/* The notification service's own state (svc->app). The store is svc->store
 * (an ntf_store_t), the commit group svc->group (NULL: every write commits
 * on its own, at once); there is no publisher and no upstream. */
typedef struct ntf_app {
  ntf_webhook_t *webhook;          /* borrowed; NULL: no delivery */
  proto_events_sub_t *sub;         /* borrowed, for health; may be NULL */
  uint64_t stored;                 /* notifications stored (committed) */
  uint64_t duplicates;             /* events whose eventId was already stored */
  uint64_t invalid;                /* events dropped as invalid */
  uint64_t errors;                 /* events lost to a storage error (insert or
                                      commit), delivery outcomes not recorded */
} ntf_app_t;

/* What the notification service sets on a context svc_main() made: app as
 * svc->app (borrowed, outlives the context). */
void ntf_svc_setup(svc_t *svc, ntf_app_t *app);
/* A context around store, group (may be NULL: autocommit) and app, for tests
 * and tools: svc_init() plus ntf_svc_setup(). loop may be NULL without a
 * group. */
void ntf_svc_init(svc_t *svc, uv_loop_t *loop, ntf_store_t *store, store_group_t *group,
                  ntf_app_t *app);

/* Outcome of one event. */
typedef enum {
  NTF_EVENT_STORED = 0,
  NTF_EVENT_DUPLICATE = 1,
  NTF_EVENT_INVALID = 2,
  NTF_EVENT_ERROR = 3,
  NTF_EVENT_UNKNOWN = 4,           /* a channel we have no kind for */
} ntf_event_outcome_t;

/* Handle one event: build, store (deduplicated by eventId), log and, with a
 * webhook, submit for delivery. Logs its outcome. When ntf_out is not NULL
 * and the outcome is STORED, *ntf_out is the stored notification (owned).
 * With svc->group, STORED means inserted into the turn's open transaction:
 * what must follow durability ("stored" counter, the notification_stored
 * line, the webhook submission) runs after the group's COMMIT; if that
 * fails the event is counted and logged as lost (event_lost, errors). */
ntf_event_outcome_t ntf_handle_event(svc_t *svc, const proto_event_t *ev, json_t **ntf_out);

/* The proto_events_handler_fn for every subscribed channel (ctx: svc_t). */
void ntf_on_event(const proto_event_t *ev, void *ctx);

/* Subscribe sub to every event pattern with ntf_on_event. 0 or PROTO_E*. */
int ntf_events_register(proto_events_sub_t *sub, svc_t *svc);
/* Register get_notifications and health on srv. Both answer at once (see
 * ntf_op_list). 0 or PROTO_E*. */
int ntf_handlers_register(proto_rpc_server_t *srv, svc_t *svc);

/* Submit every notification still pending in the store (a previous run was
 * stopped before delivering it), up to the webhook's queue. Returns how many
 * were submitted, or -1 on a storage error. */
int ntf_resume_pending(svc_t *svc);

/* The webhook report callback: records the outcome in the store (through
 * svc->group when set) and logs it (ctx: svc_t). */
void ntf_on_delivery_report(const ntf_webhook_report_t *r, void *ctx);

/* The operations behind the RPC patterns, callable without a server. */
svc_result_t ntf_op_list(svc_t *svc, const json_t *data);
svc_result_t ntf_op_health(svc_t *svc);

#endif
