/* handlers.c: the payment service's RPC patterns. Each payment_op_* validates,
 * calls the store and returns a transport-free result, including the event to
 * publish; the thin callbacks at the bottom hand it to libsvc, which waits for
 * the commit group's COMMIT when the result may rest on the turn's open
 * transaction, then publishes that event (the data is durable), logs one line
 * per request and answers the call.
 */
#include "payment.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "proto/log.h"
#include "svc/answer.h"

/* --- results ----------------------------------------------------------------- */

static svc_result_t not_found(void) {
  return svc_err(404, "PAYMENT_NOT_FOUND", "Payment not found");
}

/* 409 naming the fields of the retry that differ from the recorded payment. */
static svc_result_t result_mismatch(unsigned mask) {
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
  return svc_err_details(409, "PAYMENT_MISMATCH", msg, details);
}

/* The answer of a read by one key. */
static svc_result_t result_found(int rc, json_t *p) {
  switch (rc) {
  case STORE_OK:
    return svc_ok(p);
  case PAYMENT_STORE_NOT_FOUND:
    return not_found();
  default:
    return svc_storage_error();
  }
}

/* A replay: the recorded payment, and no event (the first one published it). */
static svc_result_t result_replayed(json_t *p) {
  svc_result_t r = svc_ok(p);
  r.replayed = 1;
  return r;
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

/* svc_ok(p) carrying the event pattern. A failure to build the event data
 * (ENOMEM) must not turn a committed payment into an error reply (a retry
 * would replay it without an event anyway): it is logged and the event is
 * lost, as a publish failure would be. */
static svc_result_t result_with_event(json_t *p, const char *pattern) {
  json_t *d = event_data(pattern, p);
  if (!d) {
    proto_log(PROTO_LOG_ERROR, NULL, "event_lost", "out of memory building %s", pattern);
    return svc_ok(p);
  }
  return svc_ok_event(p, pattern, d);
}

/* --- operations ----------------------------------------------------------------- */

svc_result_t payment_op_process(svc_t *svc, const json_t *data) {
  const payment_app_t *app = svc->app;
  payment_process_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  int created = 0;
  unsigned mismatch = 0;
  if (payment_validate_process(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  int rc = payment_store_find(svc->store, &in, &p, &mismatch);
  if (rc == PAYMENT_STORE_NOT_FOUND) {
    /* Join the write transaction before charging: if it cannot be opened
     * (locked by another process), nothing is charged. A retry found its
     * payment above and opens none. */
    if (svc_write_begin(svc) != 0)
      return svc_storage_error();
    rc = payment_store_insert(svc->store, &in,
                              app && app->charge ? app->charge : payment_processor_charge,
                              app ? app->charge_arg : NULL, &p, &created, &mismatch);
  }
  switch (rc) {
  case STORE_OK:
    break;
  case PAYMENT_STORE_MISMATCH:
    return result_mismatch(mismatch);
  default:
    return svc_storage_error();
  }
  if (!created)
    return result_replayed(p); /* a retry */
  /* A decline is an answer, not an error: the caller reads status/reason. */
  const char *status = json_string_value(json_object_get(p, "status"));
  int ok = status && strcmp(status, "succeeded") == 0;
  return result_with_event(p, ok ? "payment_completed" : "payment_failed");
}

/* refund_payment {voidIfMissing:true} of an order with no payment: void it
 * (in the turn's transaction) so that the charge still on its way is
 * declined when it lands. No event: nothing was charged or refunded. */
static svc_result_t result_void(svc_t *svc, const payment_refund_input_t *in) {
  json_t *v = NULL;
  int created = 0;
  if (payment_store_void(svc->store, in->order_id, in->order_id_len, &v, &created) != 0)
    return svc_storage_error();
  if (!created)
    return result_replayed(v); /* already void: the same object */
  return svc_ok(v);
}

svc_result_t payment_op_refund(svc_t *svc, const json_t *data) {
  payment_refund_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  int changed = 0;
  if (payment_validate_refund(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (payment_store_refund(svc->store, in.order_id, in.order_id_len, &p, &changed)) {
  case STORE_OK:
    break;
  case PAYMENT_STORE_NOT_FOUND:
    return in.void_if_missing ? result_void(svc, &in) : not_found();
  case PAYMENT_STORE_NOT_REFUNDABLE:
    return svc_err(409, "PAYMENT_NOT_REFUNDABLE",
                   "Payment was declined: there is nothing to refund");
  default:
    return svc_storage_error();
  }
  if (!changed)
    return result_replayed(p); /* already refunded: same object, no event */
  return result_with_event(p, "payment_refunded");
}

svc_result_t payment_op_get(svc_t *svc, const json_t *data) {
  payment_key_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  if (payment_validate_get(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  int rc = payment_store_get(svc->store, in.value, in.len, &p);
  return result_found(rc, p);
}

svc_result_t payment_op_get_by_order(svc_t *svc, const json_t *data) {
  payment_key_input_t in;
  payment_verrs_t errs;
  json_t *p = NULL;
  if (payment_validate_order_key(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  int rc = payment_store_get_by_order(svc->store, in.value, in.len, &p);
  return result_found(rc, p);
}

svc_result_t payment_op_health(svc_t *svc) {
  if (payment_store_ping(svc->store) != 0)
    return svc_err(503, "SERVICE_UNHEALTHY", "Payment database check failed");
  /* Redis being away does not make us unhealthy: events wait in the
   * publisher's queue. The redis object shows it (connected:false). */
  json_t *redis = svc->pub ? proto_events_pub_health(svc->pub) : json_null();
  json_t *r = json_pack("{s:s, s:s, s:s, s:o*}", "status", "ok", "service", "payment", "db",
                        "ok", "redis", redis);
  return r ? svc_ok(r) : svc_storage_error();
}

/* --- logging ---------------------------------------------------------------------- */

/* The request line's own fields (paymentId comes as svc->log_id_key). */
static void log_fields(json_t *f, const svc_result_t *r) {
  static const char *const keys[][2] = {
      {"orderId", "orderId"}, {"status", "paymentStatus"}, {"reason", "reason"}};
  if (!json_is_object(r->response))
    return;
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(r->response, keys[i][0]);
    if (json_is_string(v))
      json_object_set(f, keys[i][1], v);
  }
}

/* --- RPC glue ------------------------------------------------------------------- */

static void on_process_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "process_payment", payment_op_process(ctx, data), t0);
}

static void on_refund_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "refund_payment", payment_op_refund(ctx, data), t0);
}

static void on_get_payment(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_payment", payment_op_get(ctx, data), t0);
}

static void on_get_payment_by_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_payment_by_order", payment_op_get_by_order(ctx, data), t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  svc_answer_now(ctx, call, "health", payment_op_health(ctx), t0); /* reads no payment */
}

void payment_svc_setup(svc_t *svc) {
  svc->log_id_key = "paymentId";
  svc->log_fields = log_fields;
}

void payment_svc_init(svc_t *svc, uv_loop_t *loop, payment_store_t *store,
                      store_group_t *group, payment_app_t *app) {
  svc_init(svc, loop, "payment", store, group);
  svc->app = app;
  payment_svc_setup(svc);
}

int payment_handlers_register(proto_rpc_server_t *srv, svc_t *svc) {
  int rc;
  if ((rc = proto_rpc_server_handle_cmd(srv, "process_payment", on_process_payment, svc)) !=
          0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "refund_payment", on_refund_payment, svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_payment", on_get_payment, svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_payment_by_order", on_get_payment_by_order,
                                        svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "health", on_health, svc)) != 0)
    return rc;
  return 0;
}
