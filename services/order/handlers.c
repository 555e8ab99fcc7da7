/* handlers.c: the order service's RPC patterns. The synchronous operations
 * (get_order, get_order_saga, get_orders, update_order_status, health)
 * validate, call the store and return a transport-free result; create_order
 * starts a saga (saga_run.c), refund_order a flow (flow.c), and so does update_order_status for a cancel of a
 * paid order (the refund flow). The thin callbacks at the bottom hand results to
 * libsvc, which answers (after the commit when it rests on the turn's
 * transaction: update_order_status publishes its event only then) and logs
 * one line per request.
 */
#include "order.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "svc/answer.h"

/* update_order_status re-reads and retries when the status moved between its
 * read and its conditional write (only possible with a second writer). */
#define ORDER_TRANSITION_ATTEMPTS 3
#define ORDER_MESSAGE_MAX_BYTES 256

/* --- operations ----------------------------------------------------------------- */

svc_result_t order_op_get(svc_t *svc, const json_t *data) {
  order_id_input_t in;
  valid_verrs_t errs;
  json_t *order = NULL;
  if (order_validate_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  switch (order_store_get(svc->store, in.id, in.id_len, &order)) {
  case STORE_OK:
    return svc_ok(order);
  case ORDER_STORE_NOT_FOUND:
    return svc_err(404, "ORDER_NOT_FOUND", "Order not found");
  default:
    return svc_storage_error();
  }
}

svc_result_t order_op_list(svc_t *svc, const json_t *data) {
  order_list_input_t in;
  valid_verrs_t errs;
  json_t *orders = NULL;
  int64_t total = 0;
  if (order_validate_list(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (order_store_list_by_user(svc->store, in.user_id, in.user_id_len, in.page, in.limit,
                               &orders, &total) != 0)
    return svc_storage_error();
  /* limit is the effective one (after capping), so clients can page on. */
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "orders", orders, "total", (json_int_t)total,
                        "page", (json_int_t)in.page, "limit", (json_int_t)in.limit);
  return r ? svc_ok(r) : svc_storage_error();
}

/* A pending order whose saga has not ended (waiting to be resumed after a
 * restart, say) is the saga's: only it may cancel or confirm it. */
static int saga_unfinished(svc_t *svc, int status, const char *id, size_t id_len) {
  order_saga_row_t row;
  if (status != ORDER_PENDING && status != ORDER_COMPENSATING)
    return 0;
  int rc = order_store_saga_get(svc->store, id, id_len, &row);
  return rc == ORDER_STORE_NOT_FOUND ? 0 : rc != STORE_OK || !order_saga_finished(row.state);
}

svc_result_t order_op_get_saga(svc_t *svc, const json_t *data) {
  order_id_input_t in;
  valid_verrs_t errs;
  order_saga_row_t row;
  json_t *history = NULL;
  if (order_validate_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  switch (order_store_saga_get(svc->store, in.id, in.id_len, &row)) {
  case STORE_OK:
    break;
  case ORDER_STORE_NOT_FOUND:
    /* An order from before sagas has none: say which. */
    return order_store_get(svc->store, in.id, in.id_len, &history) == STORE_OK
               ? (json_decref(history),
                  svc_err(404, "SAGA_NOT_FOUND", "The order has no saga (made before sagas)"))
               : svc_err(404, "ORDER_NOT_FOUND", "Order not found");
  default:
    return svc_storage_error();
  }
  if (order_store_saga_history(svc->store, in.id, in.id_len, &history) != STORE_OK)
    return svc_storage_error();
  json_t *r = json_pack("{s:s, s:s, s:b, s:b, s:i, s:s?, s:s, s:o}", "orderId", row.order_id,
                        "state", order_saga_state_name(row.state), "finished",
                        order_saga_finished(row.state), "inFlight",
                        order_busy(svc, in.id, in.id_len), "attempts", row.attempts, "reason",
                        row.has_reason ? row.reason : NULL, "updatedAt", row.updated_at,
                        "history", history);
  return r ? svc_ok(r) : svc_storage_error();
}

/* Why a client may not ask for status `to` (see order_status_requestable). */
static const char *not_settable_message(int to) {
  return to == ORDER_CONFIRMED
             ? "Status confirmed cannot be set by request: an order is confirmed only when "
               "its payment succeeds; a request may set shipped, delivered or cancelled"
             : "Status pending cannot be set by request: only a new order is pending; a "
               "request may set shipped, delivered or cancelled";
}

svc_result_t order_op_update_status(svc_t *svc, const json_t *data, int *refund) {
  order_status_input_t in;
  valid_verrs_t errs;
  char msg[ORDER_MESSAGE_MAX_BYTES];
  *refund = 0;
  if (order_validate_status(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  /* A property of the request, not of the order: refused before any read,
   * whatever the order's state (so also for an order that does not exist). */
  if (!order_status_requestable(in.status))
    return svc_err(409, "STATUS_NOT_SETTABLE", not_settable_message(in.status));
  for (int attempt = 0; attempt < ORDER_TRANSITION_ATTEMPTS; attempt++) {
    json_t *order = NULL;
    switch (order_store_get(svc->store, in.id, in.id_len, &order)) {
    case STORE_OK:
      break;
    case ORDER_STORE_NOT_FOUND:
      return svc_err(404, "ORDER_NOT_FOUND", "Order not found");
    default:
      return svc_storage_error();
    }
    const char *cur_name = json_string_value(json_object_get(order, "status"));
    int cur = cur_name ? order_status_parse(cur_name, strlen(cur_name)) : -1;
    if (order_busy(svc, in.id, in.id_len) || saga_unfinished(svc, cur, in.id, in.id_len)) {
      json_decref(order);
      /* A payment or refund for it is in flight; its outcome decides. */
      return svc_err(409, "ORDER_BUSY",
                     "The order is being processed (payment or refund); retry later");
    }
    if (!order_transition_allowed(cur, in.status)) {
      snprintf(msg, sizeof(msg), "Cannot change order status from %s to %s",
               cur_name ? cur_name : "unknown", order_status_name(in.status));
      json_decref(order);
      return svc_err(409, "ILLEGAL_TRANSITION", msg);
    }
    if (in.status == ORDER_CANCELLED && cur == ORDER_CONFIRMED) {
      /* It is paid: a bare move would keep the money. The caller runs the
       * refund flow instead (refund_payment, then the cancel and its event). */
      json_decref(order);
      *refund = 1;
      return (svc_result_t){0};
    }
    if (svc_write_begin(svc) != STORE_OK) {
      json_decref(order);
      return svc_storage_error();
    }
    /* The order just read is updated in place: no second read. */
    int rc = order_store_move(svc->store, order, in.status, NULL,
                              in.status == ORDER_CANCELLED ? ORDER_REASON_REQUESTED : NULL);
    if (rc == STORE_OK) {
      /* previousStatus is the status the conditional UPDATE matched. */
      json_t *event = json_pack("{s:O, s:O, s:s, s:s}", "orderId", json_object_get(order, "id"),
                                "userId", json_object_get(order, "userId"), "previousStatus",
                                order_status_name(cur), "newStatus",
                                order_status_name(in.status));
      return svc_ok_event(order, "order_status_changed", event);
    }
    json_decref(order);
    if (rc == ORDER_STORE_NOT_FOUND)
      return svc_err(404, "ORDER_NOT_FOUND", "Order not found");
    if (rc != ORDER_STORE_CONFLICT)
      return svc_storage_error();
    /* The status moved under us: read it again and re-check the table. */
  }
  return svc_err(409, "ORDER_CHANGED", "The order kept changing; retry later");
}

svc_result_t order_op_health(svc_t *svc) {
  if (order_store_ping(svc->store) != 0)
    return svc_err(503, "SERVICE_UNHEALTHY", "Order database check failed");
  json_t *redis = svc->pub ? proto_events_pub_health(svc->pub) : json_null();
  const order_app_t *app = svc->app;
  json_t *r = json_pack(
      "{s:s, s:s, s:s, s:o, s:{s:b, s:b, s:b}, s:{s:I, s:I, s:I, s:I, s:I}}", "status", "ok",
      "service", "order", "db", "ok", "redis", redis, "upstreams", "user",
      svc_upstream_connected(svc, ORDER_UPSTREAM_USER), "payment",
      svc_upstream_connected(svc, ORDER_UPSTREAM_PAYMENT), "inventory",
      svc_upstream_connected(svc, ORDER_UPSTREAM_INVENTORY), "sagas", "inFlight",
      (json_int_t)app->nflows, "started", (json_int_t)app->sagas_started, "resumed",
      (json_int_t)app->sagas_resumed, "done", (json_int_t)app->sagas_done, "cancelled",
      (json_int_t)app->sagas_cancelled);
  return r ? svc_ok(r) : svc_storage_error();
}

/* --- RPC glue ------------------------------------------------------------------- */

static void on_create_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  order_saga_create(ctx, call, data);
}

static void on_get_order_saga(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_order_saga", order_op_get_saga(ctx, data), t0);
}

static void on_refund_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  order_flow_refund(ctx, call, data);
}

/* Reads may have seen the turn's uncommitted rows (another request's new
 * order, say), and a 404 or 409 rests on such a read: all wait for the
 * COMMIT (svc_answer); a 400 read nothing and goes at once. */
static void on_get_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_order", order_op_get(ctx, data), t0);
}

static void on_get_orders(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_orders", order_op_list(ctx, data), t0);
}

/* A cancel of a paid order goes to the refund flow, which answers the call
 * itself (and logs its request line) once the payment is refunded. */
static void on_update_order_status(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  int refund = 0;
  svc_result_t r = order_op_update_status(ctx, data, &refund);
  if (refund) {
    order_flow_cancel_paid(ctx, call, data);
    return;
  }
  svc_answer(ctx, call, "update_order_status", r, t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  svc_answer_now(ctx, call, "health", order_op_health(ctx), t0); /* reads no order */
}

int order_handlers_register(proto_rpc_server_t *srv, svc_t *svc) {
  static const struct {
    const char *cmd;
    proto_rpc_handler_fn fn;
  } table[] = {
      {"create_order", on_create_order},
      {"get_order", on_get_order},
      {"get_order_saga", on_get_order_saga},
      {"get_orders", on_get_orders},
      {"update_order_status", on_update_order_status},
      {"refund_order", on_refund_order},
      {"health", on_health},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    int rc = proto_rpc_server_handle_cmd(srv, table[i].cmd, table[i].fn, svc);
    if (rc != 0)
      return rc;
  }
  return 0;
}
