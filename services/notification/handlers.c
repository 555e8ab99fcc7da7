/* handlers.c: the notification service's glue. Events from the Redis
 * subscriber become stored notifications (and webhook deliveries); RPC
 * requests read them back. Each ntf_op_* returns a transport-free result
 * (svc_result_t); the thin callbacks hand it to libsvc, which logs one line
 * per request and answers. With a commit group, every write of a loop turn
 * shares one COMMIT, and what must follow durability waits for it.
 */
#include "notification.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/error.h"
#include "proto/log.h"
#include "svc/answer.h"
#include "valid/valid.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_ID_LEN "must be at most " STR(NTF_ID_MAX_BYTES) " bytes"
#define MSG_PAGE "must be an integer from 1 to " STR(NTF_PAGE_MAX)
#define MSG_LIMIT "must be a positive integer (values above " STR(NTF_LIMIT_MAX) \
                  " are capped)"

/* --- request validation --------------------------------------------------------- */

typedef valid_verrs_t verrs_t;

typedef struct list_input {
  const char *user_id;
  size_t user_id_len;
  int64_t page, limit;
} list_input_t;

static int validate_list(const json_t *data, list_input_t *in, verrs_t *errs) {
  static const char *const allowed[] = {"userId", "page", "limit", NULL};
  in->page = NTF_PAGE_DEFAULT;
  in->limit = NTF_LIMIT_DEFAULT;
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, "userId", NTF_ID_MAX_BYTES, MSG_ID_LEN, &in->user_id, &in->user_id_len,
                 errs);
  valid_page_limit(data, NTF_PAGE_MAX, MSG_PAGE, NTF_LIMIT_MAX, MSG_LIMIT, &in->page,
                   &in->limit, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

/* --- operations ------------------------------------------------------------------ */

svc_result_t ntf_op_list(svc_t *svc, const json_t *data) {
  list_input_t in;
  verrs_t errs;
  json_t *items = NULL;
  int64_t total = 0;
  if (validate_list(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  /* Answered at once, not after the COMMIT: a read makes no promise that must
   * wait for durability. It runs on the group's connection, so it may show
   * rows of the turn's still-open transaction; if that COMMIT then fails,
   * those events are logged as lost (event_lost) just as if they had failed
   * before the read. Nobody acts on a listed notification as a receipt --
   * Redis pub/sub already gives events no delivery guarantee -- and
   * deferring every read in a busy turn would only add latency. */
  if (ntf_store_list(svc->store, in.user_id, in.user_id_len, in.page, in.limit, &items,
                     &total) != 0)
    return svc_storage_error();
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "notifications", items, "total",
                        (json_int_t)total, "page", (json_int_t)in.page, "limit",
                        (json_int_t)in.limit);
  return r ? svc_ok(r) : svc_storage_error();
}

svc_result_t ntf_op_health(svc_t *svc) {
  const ntf_app_t *app = svc->app;
  if (ntf_store_ping(svc->store) != 0)
    return svc_err(503, "SERVICE_UNHEALTHY", "Notification database check failed");
  /* Redis being away does not make the service unhealthy: it still serves
   * what it stored, and the subscriber reconnects on its own. */
  json_t *redis = app->sub ? proto_events_sub_health(app->sub) : json_null();
  json_t *hook = app->webhook ? ntf_webhook_health(app->webhook) : json_null();
  json_t *r = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:I, s:I, s:I}}", "status", "ok",
                        "service", "notification", "db", "ok", "redis", redis, "webhook",
                        hook, "events", "stored", (json_int_t)app->stored, "duplicates",
                        (json_int_t)app->duplicates, "invalid", (json_int_t)app->invalid,
                        "errors", (json_int_t)app->errors);
  return r ? svc_ok(r) : svc_storage_error();
}

/* --- events ----------------------------------------------------------------------- */

/* An id-like metadata string we are willing to store and log. */
static bool id_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] < 0x20 || s[n] == 0x7F || n >= NTF_ID_MAX_BYTES)
      return false;
  return n > 0;
}

static void log_event(proto_log_level_t level, const char *request_id, const char *event,
                      const char *pattern, const char *event_id, json_t *extra) {
  if (!proto_log_enabled(level)) {
    json_decref(extra);
    return;
  }
  json_t *f = extra ? extra : json_object();
  if (f) {
    json_object_set_new(f, "pattern", json_string(pattern));
    if (event_id)
      json_object_set_new(f, "eventId", json_string(event_id));
  }
  proto_log_fields(level, request_id, event, f);
}

/* Hand a stored notification to the webhook: the object without its
 * delivery state, which means nothing to the receiver. */
static void submit_delivery(ntf_app_t *app, const json_t *ntf, unsigned attempts) {
  const char *id = json_string_value(json_object_get(ntf, "id"));
  const char *rid = json_string_value(json_object_get(ntf, "requestId"));
  json_t *body = json_copy((json_t *)ntf); /* shallow: data is shared, not copied */
  if (body)
    json_object_del(body, "delivery");
  int rc = body ? ntf_webhook_submit(app->webhook, id, rid, body, attempts) : PROTO_ENOMEM;
  if (rc != 0)
    /* It stays "pending" in the store: the next start retries it. */
    proto_log_fields(PROTO_LOG_WARN, rid, "notification_delivery_deferred",
                     json_pack("{s:s?, s:s}", "notificationId", id, "reason",
                               proto_strerror(rc)));
}

/* A notification whose insert must become durable before it is reported
 * (the "stored" counter, the notification_stored line) or delivered. */
typedef struct stored {
  ntf_app_t *app;
  json_t *ntf;                     /* owned reference */
  const char *type;                /* static */
  uint64_t t0;                     /* when the event was handed to us */
  int inserted;                    /* 0: duplicate or failed insert, nothing to confirm */
} stored_t;

/* The insert of st is durable (status 0), or its transaction was rolled
 * back (PROTO_EIO): then the event is lost, exactly as if the insert had
 * failed. Everything it needs comes from the notification: the event's
 * strings were borrowed for the handler call only. */
static void stored_done(stored_t *st, int status) {
  ntf_app_t *app = st->app;
  const json_t *ntf = st->ntf;
  const char *rid = json_string_value(json_object_get(ntf, "requestId"));
  const char *pattern = json_string_value(json_object_get(ntf, "eventPattern"));
  const char *event_id = json_string_value(json_object_get(ntf, "eventId"));
  if (status != 0) {
    app->errors++;
    log_event(PROTO_LOG_ERROR, rid, "event_lost", pattern, event_id,
              json_pack("{s:s}", "reason", "storage error (commit failed)"));
    return;
  }
  app->stored++;
  /* The line that lets one request be followed gateway -> order -> redis ->
   * notification: it carries the event's requestId. Built only when it will
   * be written (the benchmark and production run at warn). */
  if (proto_log_enabled(PROTO_LOG_INFO))
    log_event(PROTO_LOG_INFO, rid, "notification_stored", pattern, event_id,
              json_pack("{s:O, s:s, s:O, s:O?, s:I}", "notificationId",
                        json_object_get(ntf, "id"), "type", st->type, "userId",
                        json_object_get(ntf, "userId"), "orderId",
                        json_object_get(ntf, "orderId"), "durationUs",
                        (json_int_t)((uv_hrtime() - st->t0) / 1000u)));
  /* app->webhook is read now, not when the event came: a stop in between
   * closed it, and the notification stays pending for the next start. */
  if (app->webhook)
    submit_delivery(app, ntf, 0);
}

static void on_stored_committed(int status, void *arg) {
  stored_t *st = arg;
  if (st->inserted)
    stored_done(st, status);
  json_decref(st->ntf);
  free(st);
}

ntf_event_outcome_t ntf_handle_event(svc_t *svc, const proto_event_t *ev, json_t **ntf_out) {
  ntf_app_t *app = svc->app;
  uint64_t t0 = uv_hrtime();
  const char *pattern = ev->channel;
  const char *rid = ev->request_id && id_ok(ev->request_id) ? ev->request_id : NULL;
  const char *event_id = ev->event_id;
  char derived[NTF_EVENT_ID_DERIVED_SIZE];
  ntf_draft_t draft;
  ntf_invalid_t why;
  json_t *ntf = NULL;
  stored_t *later = NULL;
  ntf_event_outcome_t outcome = NTF_EVENT_ERROR;
  if (ntf_out)
    *ntf_out = NULL;
  int kind = ntf_event_kind(pattern);
  if (kind < 0) {
    log_event(PROTO_LOG_WARN, rid, "event_unknown", pattern ? pattern : "", event_id, NULL);
    return NTF_EVENT_UNKNOWN;
  }
  int bad = ntf_build((ntf_event_kind_t)kind, ev->data, &draft, &why);
  if (bad == 0 && event_id && !id_ok(event_id)) {
    why = (ntf_invalid_t){"metadata.eventId",
                          "must be 1 to " STR(NTF_ID_MAX_BYTES) " bytes, no control characters"};
    event_id = NULL; /* not fit for a log line either */
    bad = -1;
  }
  if (bad != 0) {
    char msg[256];
    app->invalid++;
    snprintf(msg, sizeof(msg), "%s %s", why.field, why.message);
    /* Events get no reply: this line is the only trace of a dropped one. */
    log_event(PROTO_LOG_WARN, rid, "event_invalid", pattern, event_id,
              json_pack("{s:s, s:s, s:s}", "field", why.field, "reason", why.message, "msg",
                        msg));
    return NTF_EVENT_INVALID;
  }
  if (!event_id) {
    /* A plain NestJS ClientProxy.emit() sends no metadata. An id derived
     * from the content still de-duplicates a redelivery; the price is that
     * two distinct events with identical data store once. */
    if (ntf_event_id_derive(pattern, ev->data, derived) != 0) {
      app->errors++;
      log_event(PROTO_LOG_ERROR, rid, "event_lost", pattern, NULL,
                json_pack("{s:s}", "reason", "cannot derive an event id (out of memory)"));
      return NTF_EVENT_ERROR;
    }
    event_id = derived;
    if (proto_log_enabled(PROTO_LOG_DEBUG))
      log_event(PROTO_LOG_DEBUG, rid, "event_id_derived", pattern, event_id, NULL);
  }
  ntf = ntf_notification_new(&draft, event_id, pattern, ev->data, rid,
                             app->webhook ? "pending" : "none");
  if (!ntf) {
    app->errors++;
    log_event(PROTO_LOG_ERROR, rid, "event_lost", pattern, event_id,
              json_pack("{s:s}", "reason", "cannot build the notification"));
    return NTF_EVENT_ERROR;
  }
  if (svc->group) {
    /* Defer before writing: if deferring fails, nothing of this event is in
     * the transaction, so "lost" is the whole truth. */
    const char *reason = NULL;
    if (!(later = malloc(sizeof(*later))))
      reason = "out of memory";
    else if (svc_write_begin(svc) != 0)
      reason = "storage error"; /* logged by the group */
    if (later && !reason) {
      /* The transaction is open now, so this waits for its COMMIT. */
      *later = (stored_t){app, json_incref(ntf), draft.type, t0, 0};
      if (svc_after_commit(svc, on_stored_committed, later) != 0) {
        json_decref(later->ntf);
        reason = "cannot defer until the commit";
      }
    }
    if (reason) {
      free(later);
      app->errors++;
      log_event(PROTO_LOG_ERROR, rid, "event_lost", pattern, event_id,
                json_pack("{s:s}", "reason", reason));
      goto out;
    }
  }
  int rc = ntf_store_insert(svc->store, ntf);
  if (rc == STORE_EINVAL) {
    /* Only an oversized data object gets here: keep the notification, drop
     * the copy of the event. */
    log_event(PROTO_LOG_WARN, rid, "event_data_too_large", pattern, event_id,
              json_pack("{s:I}", "maxBytes", (json_int_t)NTF_DATA_MAX_BYTES));
    json_object_set_new(ntf, "data", json_null());
    rc = ntf_store_insert(svc->store, ntf);
  }
  switch (rc) {
  case STORE_OK:
    outcome = NTF_EVENT_STORED;
    break;
  case NTF_STORE_DUPLICATE:
    app->duplicates++;
    if (proto_log_enabled(PROTO_LOG_INFO))
      log_event(PROTO_LOG_INFO, rid, "event_duplicate", pattern, event_id, NULL);
    outcome = NTF_EVENT_DUPLICATE;
    goto out;
  default:
    app->errors++;
    log_event(PROTO_LOG_ERROR, rid, "event_lost", pattern, event_id,
              json_pack("{s:s}", "reason", "storage error"));
    goto out;
  }
  if (later) {
    later->inserted = 1; /* stored_done() runs after the group's COMMIT */
  } else {
    stored_t now = {app, ntf, draft.type, t0, 1};
    stored_done(&now, 0); /* autocommit: the insert is already durable */
  }
  if (ntf_out) {
    *ntf_out = ntf;
    ntf = NULL;
  }
out:
  json_decref(ntf);
  return outcome;
}

void ntf_on_event(const proto_event_t *ev, void *ctx) {
  ntf_handle_event(ctx, ev, NULL);
}

int ntf_events_register(proto_events_sub_t *sub, svc_t *svc) {
  for (int k = 0; k < NTF_EV_COUNT_; k++) {
    int rc = proto_events_sub_on(sub, ntf_event_pattern((ntf_event_kind_t)k), ntf_on_event, svc);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* --- delivery ---------------------------------------------------------------------- */

/* A delivery outcome written in a group's transaction did not commit: the
 * store keeps the previous state (pending: the next start delivers again,
 * and the Idempotency-Key lets the receiver drop the repeat). */
static void on_delivery_committed(int status, void *arg) {
  ntf_app_t *app = arg;
  if (status == 0)
    return;
  app->errors++;
  proto_log(PROTO_LOG_ERROR, NULL, "notification_delivery_unrecorded",
            "a delivery outcome was not stored (commit failed)");
}

void ntf_on_delivery_report(const ntf_webhook_report_t *r, void *ctx) {
  svc_t *svc = ctx;
  ntf_app_t *app = svc->app;
  const char *status = ntf_delivery_name(r->status);
  int rc = STORE_ERROR;
  /* Through the group, the outcomes of one turn share its COMMIT. Nothing
   * waits for it but the error count: the log line below reports what the
   * receiver answered, which is true whether or not it is stored. */
  if (svc_write_begin(svc) == 0)
    rc = ntf_store_set_delivery(svc->store, r->id, status, r->attempts, r->error);
  if (rc != 0 && rc != NTF_STORE_NOT_FOUND)
    app->errors++; /* logged by the store or the group */
  else if (rc == 0 && svc_after_commit(svc, on_delivery_committed, app) != 0)
    proto_log(PROTO_LOG_WARN, NULL, "notification_delivery_unchecked",
              "cannot watch the commit of a delivery outcome");
  const char *event;
  proto_log_level_t level = PROTO_LOG_INFO;
  if (r->status == NTF_DELIVERY_DELIVERED) {
    event = "notification_delivered";
  } else if (r->status == NTF_DELIVERY_FAILED) {
    event = "notification_delivery_failed";
    level = PROTO_LOG_ERROR;
  } else if (!r->final) {
    event = "notification_delivery_retry";
    level = PROTO_LOG_WARN;
  } else {
    event = "notification_delivery_interrupted";
  }
  if (!proto_log_enabled(level))
    return;
  json_t *f = json_pack("{s:s, s:s, s:i, s:I}", "notificationId", r->id, "status", status,
                        "attempts", (int)r->attempts, "httpStatus", (json_int_t)r->http_status);
  if (f && r->error)
    json_object_set_new(f, "error", json_string(r->error));
  if (f && !r->final)
    json_object_set_new(f, "retryInMs", json_integer(r->retry_in_ms));
  proto_log_fields(level, r->request_id, event, f);
}

int ntf_resume_pending(svc_t *svc) {
  ntf_app_t *app = svc->app;
  json_t *items = NULL;
  size_t i;
  json_t *n;
  int submitted = 0;
  if (ntf_store_pending(svc->store, app->webhook ? NTF_WEBHOOK_QUEUE_MAX_DEFAULT : 1, &items) !=
      0)
    return -1;
  if (!app->webhook) {
    if (json_array_size(items) > 0)
      proto_log(PROTO_LOG_WARN, NULL, "webhook_pending_kept",
                "notifications await delivery but NOTIFY_WEBHOOK_URL is not set");
    json_decref(items);
    return 0;
  }
  json_array_foreach(items, i, n) {
    json_int_t attempts =
        json_integer_value(json_object_get(json_object_get(n, "delivery"), "attempts"));
    submit_delivery(app, n, attempts > 0 && attempts < (json_int_t)UINT32_MAX ? (unsigned)attempts
                                                                              : 0u);
    submitted++;
  }
  if (submitted > 0)
    proto_log_fields(PROTO_LOG_INFO, NULL, "webhook_resumed",
                     json_pack("{s:i}", "deliveries", submitted));
  json_decref(items);
  return submitted;
}

/* --- RPC glue ---------------------------------------------------------------------- */

/* Both patterns answer at once: neither rests on a write of its own (see
 * ntf_op_list for reads of the open transaction). */
static void on_get_notifications(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer_now(ctx, call, "get_notifications", ntf_op_list(ctx, data), t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  svc_answer_now(ctx, call, "health", ntf_op_health(ctx), t0);
}

int ntf_handlers_register(proto_rpc_server_t *srv, svc_t *svc) {
  int rc;
  if ((rc = proto_rpc_server_handle_cmd(srv, "get_notifications", on_get_notifications, svc)) !=
          0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "health", on_health, svc)) != 0)
    return rc;
  return 0;
}

/* --- the context ------------------------------------------------------------------- */

void ntf_svc_setup(svc_t *svc, ntf_app_t *app) {
  /* The request lines keep their keys (pattern, status, outcome,
   * durationUs, msg): no subject id or fields of our own. */
  svc->app = app;
  svc->log_id_key = NULL;
  svc->log_fields = NULL;
}

void ntf_svc_init(svc_t *svc, uv_loop_t *loop, ntf_store_t *store, store_group_t *group,
                  ntf_app_t *app) {
  svc_init(svc, loop, "notification", store, group);
  ntf_svc_setup(svc, app);
}
