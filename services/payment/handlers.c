/* handlers.c: the payment service's RPC patterns. Each payment_op_* validates,
 * calls the store and returns a transport-free result, including the event to
 * publish; the thin callbacks at the bottom wait for the commit group's COMMIT
 * when the result may rest on the turn's open transaction, then publish that
 * event (the data is durable), log one line per request and answer the call.
 */
#include "payment.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"

/* --- results ----------------------------------------------------------------- */

static payment_result_t result_ok(json_t *response) {
  return (payment_result_t){200, "OK", response, NULL, NULL, NULL, 0};
}

static payment_result_t result_err(int status, const char *code, const char *message) {
  return (payment_result_t){status, code, NULL,
                            proto_error_object(status, code, message, NULL), NULL, NULL, 0};
}

static payment_result_t storage_error(void) {
  /* The cause is logged by the store; the client gets no internals. */
  return result_err(500, "STORAGE_ERROR", "Storage error");
}

static payment_result_t not_found(void) {
  return result_err(404, "PAYMENT_NOT_FOUND", "Payment not found");
}

void payment_result_free(payment_result_t *r) {
  json_decref(r->response);
  json_decref(r->err);
  json_decref(r->event_data);
  r->response = r->err = r->event_data = NULL;
  r->event = NULL;
}

json_t *payment_validation_error(const payment_verrs_t *errs) {
  return valid_error_object(errs);
}

static payment_result_t result_invalid(const payment_verrs_t *errs) {
  return (payment_result_t){400, "VALIDATION_FAILED", NULL, payment_validation_error(errs),
                            NULL, NULL, 0};
}

/* 409 naming the fields of the retry that differ from the recorded payment. */
static payment_result_t result_mismatch(unsigned mask) {
  static const struct {
    unsigned bit;
    const char *field;
  } fields[] = {{PAYMENT_MISMATCH_USER, "userId"},
                {PAYMENT_MISMATCH_AMOUNT, "amount"},
                {PAYMENT_MISMATCH_CURRENCY, "currency"}};
  char msg[160] = "A payment for this order already exists with a different";
  size_t used = strlen(msg);
  json_t *details = json_array();
  int n = 0;
  for (size_t i = 0; details && i < sizeof(fields) / sizeof(fields[0]); i++) {
    if (!(mask & fields[i].bit))
      continue;
    used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s %s", n++ ? " and" : "",
                             fields[i].field);
    json_t *d = json_pack("{s:s, s:s}", "field", fields[i].field, "message",
                          "differs from the recorded payment");
    if (!d || json_array_append_new(details, d) != 0) {
      json_decref(details);
      details = NULL;
    }
  }
  return (payment_result_t){409, "PAYMENT_MISMATCH", NULL,
                            proto_error_object(409, "PAYMENT_MISMATCH", msg, details), NULL,
                            NULL, 0};
}

/* --- events ---------------------------------------------------------------------- */

/* The event data, from the committed payment object p. */
static json_t *event_data(const char *pattern, const json_t *p) {
  json_t *d = json_pack("{s:O, s:O, s:O, s:O, s:O}", "paymentId", json_object_get(p, "id"),
                        "orderId", json_object_get(p, "orderId"), "userId",
                        json_object_get(p, "userId"), "amount", json_object_get(p, "amount"),
                        "currency", json_object_get(p, "currency"));
  if (d && strcmp(pattern, "payment_failed") == 0 &&
      json_object_set(d, "reason", json_object_get(p, "reason")) != 0) {
    json_decref(d);
    d = NULL;
  }
  return d;
}

/* result_ok(p) carrying the event pattern. A failure to build the event data
 * (ENOMEM) must not turn a committed payment into an error reply: it is
 * logged and the event is lost, as a publish failure would be. */
static payment_result_t result_with_event(json_t *p, const char *pattern) {
  payment_result_t r = result_ok(p);
  r.event = pattern;
  if (!(r.event_data = event_data(pattern, p))) {
    proto_log(PROTO_LOG_ERROR, NULL, "event_lost", "out of memory building %s", pattern);
    r.event = NULL;
  }
  return r;
}

/* --- operations ----------------------------------------------------------------- */

payment_result_t payment_op_process(payment_ctx_t *ctx, const json_t *data) {
  payment_process_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  int created = 0;
  unsigned mismatch = 0;
  if (payment_validate_process(data, &in, &errs) != 0)
    return result_invalid(&errs);
  payment_charge_fn charge = ctx->charge ? ctx->charge : payment_processor_charge;
  switch (payment_store_process(ctx->store, &in, charge, ctx->charge_arg, &p, &created,
                                &mismatch)) {
  case PAYMENT_STORE_OK:
    break;
  case PAYMENT_STORE_MISMATCH:
    return result_mismatch(mismatch);
  default:
    return storage_error();
  }
  if (!created) {
    /* A retry: the first processing already published its event. */
    payment_result_t r = result_ok(p);
    r.replayed = 1;
    return r;
  }
  /* A decline is an answer, not an error: the caller reads status/reason. */
  const char *status = json_string_value(json_object_get(p, "status"));
  int ok = status && strcmp(status, "succeeded") == 0;
  return result_with_event(p, ok ? "payment_completed" : "payment_failed");
}

payment_result_t payment_op_refund(payment_ctx_t *ctx, const json_t *data) {
  payment_key_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  int changed = 0;
  if (payment_validate_order_key(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (payment_store_refund(ctx->store, in.value, in.len, &p, &changed)) {
  case PAYMENT_STORE_OK:
    break;
  case PAYMENT_STORE_NOT_FOUND:
    return not_found();
  case PAYMENT_STORE_NOT_REFUNDABLE:
    return result_err(409, "PAYMENT_NOT_REFUNDABLE",
                      "Payment was declined: there is nothing to refund");
  default:
    return storage_error();
  }
  if (!changed) {
    payment_result_t r = result_ok(p); /* already refunded: same object, no event */
    r.replayed = 1;
    return r;
  }
  return result_with_event(p, "payment_refunded");
}

payment_result_t payment_op_get(payment_ctx_t *ctx, const json_t *data) {
  payment_key_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  if (payment_validate_get(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (payment_store_get(ctx->store, in.value, in.len, &p)) {
  case PAYMENT_STORE_OK:
    return result_ok(p);
  case PAYMENT_STORE_NOT_FOUND:
    return not_found();
  default:
    return storage_error();
  }
}

payment_result_t payment_op_get_by_order(payment_ctx_t *ctx, const json_t *data) {
  payment_key_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  if (payment_validate_order_key(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (payment_store_get_by_order(ctx->store, in.value, in.len, &p)) {
  case PAYMENT_STORE_OK:
    return result_ok(p);
  case PAYMENT_STORE_NOT_FOUND:
    return not_found();
  default:
    return storage_error();
  }
}

payment_result_t payment_op_health(payment_ctx_t *ctx) {
  if (payment_store_ping(ctx->store) != 0)
    return result_err(503, "SERVICE_UNHEALTHY", "Payment database check failed");
  /* Redis being away does not make us unhealthy: events wait in the
   * publisher's queue. The redis object shows it (connected:false). */
  json_t *redis = ctx->pub ? proto_events_pub_health(ctx->pub) : json_null();
  json_t *r = json_pack("{s:s, s:s, s:s, s:o*}", "status", "ok", "service", "payment", "db",
                        "ok", "redis", redis);
  return r ? result_ok(r) : storage_error();
}

/* --- logging ---------------------------------------------------------------------- */

typedef struct published {
  const char *pattern;             /* NULL: no event */
  int rc;                          /* proto_events_publish result */
  char event_id[PROTO_ID_MAX];
} published_t;

static void log_outcome(proto_log_level_t level, const char *request_id, const char *pattern,
                        const payment_result_t *r, const published_t *ev,
                        uint64_t start_ns) {
  if (!proto_log_enabled(level))
    return;
  json_t *f = json_pack("{s:s, s:i, s:s, s:I}", "pattern", pattern, "status", r->status,
                        "outcome", r->code, "durationUs",
                        (json_int_t)((uv_hrtime() - start_ns) / 1000u));
  if (!f)
    return;
  if (json_is_object(r->response)) {
    static const char *const keys[][2] = {
        {"id", "paymentId"}, {"orderId", "orderId"}, {"status", "paymentStatus"},
        {"reason", "reason"}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
      json_t *v = json_object_get(r->response, keys[i][0]);
      if (json_is_string(v))
        json_object_set(f, keys[i][1], v);
    }
    if (r->replayed)
      json_object_set_new(f, "replayed", json_true());
  }
  if (r->err) {
    /* The client-safe message says which field failed; worth keeping. */
    json_t *m = json_object_get(r->err, "message");
    if (m)
      json_object_set(f, "msg", m);
  }
  if (ev->pattern) {
    json_object_set_new(f, "published", json_string(ev->pattern));
    if (ev->rc == 0)
      json_object_set_new(f, "eventId", json_string(ev->event_id));
    else
      json_object_set_new(f, "eventError", json_string(proto_err_name(ev->rc)));
  }
  proto_log_fields(level, request_id, "request", f);
}

/* --- RPC glue ------------------------------------------------------------------- */

/* Publish r's event, log the line and answer: r is durable (or needs no
 * durability). */
static void answer_now(proto_rpc_call_t *call, payment_ctx_t *ctx, const char *pattern,
                       payment_result_t r, uint64_t start_ns) {
  const char *rid = proto_rpc_call_request_id(call); /* valid until the reply */
  published_t ev = {r.event, 0, ""};
  if (r.event) {
    /* The payment is committed: the event can only announce what is on disk.
     * publish never blocks; a full queue (PROTO_EFULL, logged and counted by
     * the publisher) loses the event but must not fail the request. */
    if (ctx->pub) {
      ev.rc = proto_events_publish_ex(ctx->pub, r.event, r.event_data, NULL, rid,
                                      ev.event_id);
    } else {
      json_decref(r.event_data); /* no publisher configured */
      ev.rc = PROTO_ECLOSED;
    }
    r.event_data = NULL; /* stolen, also on error */
    if (ev.rc != 0 && ev.rc != PROTO_EFULL)
      proto_log(PROTO_LOG_ERROR, rid, "event_publish_failed", "%s: %s", r.event,
                proto_strerror(ev.rc));
  }
  /* Log before replying: the request id belongs to the call. */
  log_outcome(r.status >= 500 ? PROTO_LOG_ERROR : PROTO_LOG_INFO, rid, pattern, &r, &ev,
              start_ns);
  if (r.status == 200)
    proto_rpc_call_reply(call, r.response);
  else if (r.err)
    proto_rpc_call_reply_err(call, r.err);
  else
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory"); /* ENOMEM */
}

/* A result waiting for the COMMIT of the turn's transaction. */
typedef struct pending {
  proto_rpc_call_t *call;
  payment_ctx_t *ctx;
  const char *pattern;             /* static */
  payment_result_t r;
  uint64_t start_ns;
} pending_t;

static void on_committed(int status, void *arg) {
  pending_t *p = arg;
  if (status != 0) {
    /* Rolled back (the group logged why): the payment or refund r announces
     * is gone, and a replay in r may have read it from the same transaction.
     * 500 and no event; the caller's retry processes it again. */
    payment_result_free(&p->r);
    p->r = storage_error();
  }
  answer_now(p->call, p->ctx, p->pattern, p->r, p->start_ns);
  free(p);
}

/* Answer r once it is durable. While the group's transaction is open, any
 * store result of this turn may rest on it: a new payment or refund, and also
 * a replay, a 409 or a read that saw another request's uncommitted row. Those
 * wait for the COMMIT (run by the group at the end of the turn, in order).
 * Validation errors (400) touch no data and go at once; so does everything
 * when no transaction is open (reads of committed rows). */
static void answer(proto_rpc_call_t *call, payment_ctx_t *ctx, const char *pattern,
                   payment_result_t r, uint64_t start_ns) {
  store_group_t *g = payment_store_group(ctx->store);
  if (g && r.status != 400 && store_group_in_txn(g)) {
    pending_t *p = malloc(sizeof(*p));
    if (p) {
      *p = (pending_t){call, ctx, pattern, r, start_ns};
      if (store_group_defer(g, on_committed, p) == 0)
        return;
      free(p);
    }
    /* ENOMEM: we cannot wait for the commit, so we must not announce what it
     * may still lose. The write commits anyway, so its event is lost (a retry
     * replays without one): say so. */
    const char *rid = proto_rpc_call_request_id(call);
    if (r.event)
      proto_log(PROTO_LOG_ERROR, rid, "event_lost", "%s: cannot defer until commit",
                r.event);
    else
      proto_log(PROTO_LOG_ERROR, rid, "defer_failed", "cannot defer until commit");
    payment_result_free(&r);
    r = storage_error();
  }
  answer_now(call, ctx, pattern, r, start_ns);
}

static void on_process_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(call, ctx, "process_payment", payment_op_process(ctx, data), t0);
}

static void on_refund_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(call, ctx, "refund_payment", payment_op_refund(ctx, data), t0);
}

static void on_get_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(call, ctx, "get_payment", payment_op_get(ctx, data), t0);
}

static void on_get_payment_by_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(call, ctx, "get_payment_by_order", payment_op_get_by_order(ctx, data), t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  answer_now(call, ctx, "health", payment_op_health(ctx), t0); /* reads no payment */
}

int payment_handlers_register(proto_rpc_server_t *srv, payment_ctx_t *ctx) {
  int rc;
  if ((rc = proto_rpc_server_handle_cmd(srv, "process_payment", on_process_payment, ctx)) !=
          0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "refund_payment", on_refund_payment, ctx)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_payment", on_get_payment, ctx)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_payment_by_order", on_get_payment_by_order,
                                        ctx)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "health", on_health, ctx)) != 0)
    return rc;
  return 0;
}
