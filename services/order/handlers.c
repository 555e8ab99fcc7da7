/* handlers.c: the order service's RPC patterns. The synchronous operations
 * (get_order, get_orders, update_order_status, health) validate, call the
 * store and return a transport-free result; create_order and refund_order
 * start a flow (flow.c). The thin callbacks at the bottom answer the call and
 * log one line per request, with its request id; update_order_status answers
 * (and publishes) only after the commit group made its write durable.
 */
#include "order.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"

/* update_order_status re-reads and retries when the status moved between its
 * read and its conditional write (only possible with a second writer). */
#define ORDER_TRANSITION_ATTEMPTS 3
#define ORDER_MESSAGE_MAX_BYTES 256

/* --- the service context --------------------------------------------------------- */

static int publish_to_redis(void *arg, const char *pattern, json_t *data,
                            const char *request_id) {
  order_svc_t *svc = arg;
  if (!svc->pub) {
    json_decref(data);
    return 0; /* running without events (tests, tools) */
  }
  return proto_events_publish(svc->pub, pattern, data, request_id);
}

void order_svc_init(order_svc_t *svc, order_store_t *store, store_group_t *group,
                    proto_rpc_client_t *user, proto_rpc_client_t *payment,
                    proto_events_pub_t *pub, unsigned rpc_timeout_ms) {
  memset(svc, 0, sizeof(*svc));
  svc->store = store;
  svc->group = group;
  svc->user = user;
  svc->payment = payment;
  svc->pub = pub;
  svc->rpc_timeout_ms = rpc_timeout_ms ? rpc_timeout_ms : PROTO_RPC_TIMEOUT_MS_DEFAULT;
  svc->publish = publish_to_redis;
  svc->publish_arg = svc;
}

int order_write_begin(order_svc_t *svc) {
  return store_group_begin_write(svc->group) == 0 ? 0 : -1; /* logged */
}

void order_publish(order_svc_t *svc, const char *pattern, json_t *data,
                   const char *request_id) {
  if (!data) {
    proto_log(PROTO_LOG_ERROR, request_id, "event_not_published", "%s: out of memory",
              pattern);
    return;
  }
  int rc = svc->publish(svc->publish_arg, pattern, data, request_id);
  /* PROTO_EFULL is already logged and counted by the publisher. The order
   * itself is committed: an event problem never fails the request. */
  if (rc != 0 && rc != PROTO_EFULL)
    proto_log(PROTO_LOG_ERROR, request_id, "event_not_published", "%s: %s", pattern,
              proto_strerror(rc));
}

/* --- results ----------------------------------------------------------------- */

order_result_t order_result_ok(json_t *response) {
  return (order_result_t){200, "OK", response, NULL};
}

order_result_t order_result_err(int status, const char *code, const char *message) {
  return (order_result_t){status, code, NULL, proto_error_object(status, code, message, NULL)};
}

static order_result_t storage_error(void) {
  /* The cause is logged by the store; the client gets no internals. */
  return order_result_err(500, "STORAGE_ERROR", "Storage error");
}

json_t *order_validation_error(const order_verrs_t *errs) {
  json_t *details = json_array();
  char *msg = NULL;
  size_t cap = 1;
  for (size_t i = 0; i < errs->n; i++)
    cap += strlen(errs->e[i].field) + strlen(errs->e[i].message) + 3;
  if (!details || !(msg = malloc(cap)))
    goto fail;
  /* "items[0].price must be ...; currency must be ...": names every field. */
  size_t used = 0;
  msg[0] = '\0';
  for (size_t i = 0; i < errs->n; i++) {
    const order_verr_t *e = &errs->e[i];
    json_t *d = json_pack("{s:s, s:s}", "field", e->field, "message", e->message);
    if (!d || json_array_append_new(details, d) != 0)
      goto fail;
    used += (size_t)snprintf(msg + used, cap - used, "%s%s %s", i ? "; " : "", e->field,
                             e->message);
  }
  json_t *err = proto_error_object(400, "VALIDATION_FAILED", msg, details);
  free(msg);
  return err;
fail:
  json_decref(details);
  free(msg);
  return NULL;
}

order_result_t order_result_invalid(const order_verrs_t *errs) {
  return (order_result_t){400, "VALIDATION_FAILED", NULL, order_validation_error(errs)};
}

/* --- operations ----------------------------------------------------------------- */

order_result_t order_op_get(order_svc_t *svc, const json_t *data) {
  order_id_input_t in;
  order_verrs_t errs;
  json_t *order = NULL;
  if (order_validate_id(data, &in, &errs) != 0)
    return order_result_invalid(&errs);
  switch (order_store_get(svc->store, in.id, in.id_len, &order)) {
  case ORDER_STORE_OK:
    return order_result_ok(order);
  case ORDER_STORE_NOT_FOUND:
    return order_result_err(404, "ORDER_NOT_FOUND", "Order not found");
  default:
    return storage_error();
  }
}

order_result_t order_op_list(order_svc_t *svc, const json_t *data) {
  order_list_input_t in;
  order_verrs_t errs;
  json_t *orders = NULL;
  int64_t total = 0;
  if (order_validate_list(data, &in, &errs) != 0)
    return order_result_invalid(&errs);
  if (order_store_list_by_user(svc->store, in.user_id, in.user_id_len, in.page, in.limit,
                               &orders, &total) != 0)
    return storage_error();
  /* limit is the effective one (after capping), so clients can page on. */
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "orders", orders, "total", (json_int_t)total,
                        "page", (json_int_t)in.page, "limit", (json_int_t)in.limit);
  return r ? order_result_ok(r) : storage_error();
}

order_result_t order_op_update_status(order_svc_t *svc, const json_t *data, json_t **event) {
  order_status_input_t in;
  order_verrs_t errs;
  char msg[ORDER_MESSAGE_MAX_BYTES];
  *event = NULL;
  if (order_validate_status(data, &in, &errs) != 0)
    return order_result_invalid(&errs);
  for (int attempt = 0; attempt < ORDER_TRANSITION_ATTEMPTS; attempt++) {
    json_t *order = NULL;
    switch (order_store_get(svc->store, in.id, in.id_len, &order)) {
    case ORDER_STORE_OK:
      break;
    case ORDER_STORE_NOT_FOUND:
      return order_result_err(404, "ORDER_NOT_FOUND", "Order not found");
    default:
      return storage_error();
    }
    const char *cur_name = json_string_value(json_object_get(order, "status"));
    int cur = cur_name ? order_status_parse(cur_name, strlen(cur_name)) : -1;
    if (order_busy(svc, in.id, in.id_len)) {
      json_decref(order);
      /* A payment or refund for it is in flight; its outcome decides. */
      return order_result_err(409, "ORDER_BUSY",
                              "The order is being processed (payment or refund); retry later");
    }
    if (!order_transition_allowed(cur, in.status)) {
      snprintf(msg, sizeof(msg), "Cannot change order status from %s to %s",
               cur_name ? cur_name : "unknown", order_status_name(in.status));
      json_decref(order);
      return order_result_err(409, "ILLEGAL_TRANSITION", msg);
    }
    if (order_write_begin(svc) != 0) {
      json_decref(order);
      return storage_error();
    }
    /* The order just read is updated in place: no second read. */
    int rc = order_store_move(svc->store, order, in.status, NULL,
                              in.status == ORDER_CANCELLED ? ORDER_REASON_REQUESTED : NULL);
    if (rc == ORDER_STORE_OK) {
      /* previousStatus is the status the conditional UPDATE matched. */
      *event = json_pack("{s:O, s:O, s:s, s:s}", "orderId", json_object_get(order, "id"),
                         "userId", json_object_get(order, "userId"), "previousStatus",
                         order_status_name(cur), "newStatus", order_status_name(in.status));
      return order_result_ok(order);
    }
    json_decref(order);
    if (rc == ORDER_STORE_NOT_FOUND)
      return order_result_err(404, "ORDER_NOT_FOUND", "Order not found");
    if (rc != ORDER_STORE_CONFLICT)
      return storage_error();
    /* The status moved under us: read it again and re-check the table. */
  }
  return order_result_err(409, "ORDER_CHANGED", "The order kept changing; retry later");
}

order_result_t order_op_health(order_svc_t *svc) {
  if (order_store_ping(svc->store) != 0)
    return order_result_err(503, "SERVICE_UNHEALTHY", "Order database check failed");
  json_t *redis = svc->pub ? proto_events_pub_health(svc->pub) : json_null();
  json_t *r = json_pack("{s:s, s:s, s:s, s:o, s:{s:b, s:b}}", "status", "ok", "service",
                        "order", "db", "ok", "redis", redis, "upstreams", "user",
                        svc->user && proto_rpc_client_connected(svc->user), "payment",
                        svc->payment && proto_rpc_client_connected(svc->payment));
  return r ? order_result_ok(r) : storage_error();
}

/* --- logging and answering ---------------------------------------------------------- */

void order_log_request(const char *request_id, const char *pattern, const order_result_t *r,
                       const char *order_id, uint64_t start_ns) {
  proto_log_level_t level = r->status >= 500 ? PROTO_LOG_ERROR : PROTO_LOG_INFO;
  if (!proto_log_enabled(level))
    return;
  json_t *f = json_pack("{s:s, s:i, s:s, s:I}", "pattern", pattern, "status", r->status,
                        "outcome", r->code, "durationUs",
                        (json_int_t)((uv_hrtime() - start_ns) / 1000u));
  const json_t *id = json_is_object(r->response) ? json_object_get(r->response, "id") : NULL;
  if (f && order_id)
    json_object_set_new(f, "orderId", json_string(order_id));
  else if (f && json_is_string(id))
    json_object_set(f, "orderId", (json_t *)id);
  if (f && json_is_object(r->response) && json_is_string(json_object_get(r->response, "status")))
    json_object_set(f, "orderStatus", json_object_get(r->response, "status"));
  if (f && r->err) {
    /* The client-safe message says which field or upstream failed. */
    json_t *m = json_object_get(r->err, "message");
    if (m)
      json_object_set(f, "msg", m);
  }
  proto_log_fields(level, request_id, "request", f);
}

void order_answer(proto_rpc_call_t *call, const char *pattern, order_result_t r,
                  uint64_t start_ns) {
  /* Log first: the request id belongs to the call, which the reply consumes. */
  order_log_request(proto_rpc_call_request_id(call), pattern, &r, NULL, start_ns);
  if (r.status == 200)
    proto_rpc_call_reply(call, r.response);
  else if (r.err)
    proto_rpc_call_reply_err(call, r.err);
  else
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory"); /* ENOMEM */
}

/* --- RPC glue ------------------------------------------------------------------- */

static void on_create_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  order_flow_create(ctx, call, data);
}

static void on_refund_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  order_flow_refund(ctx, call, data);
}

/* A reply and its event, held until the loop turn's COMMIT. */
typedef struct held_answer {
  order_svc_t *svc;
  proto_rpc_call_t *call;
  const char *pattern;
  order_result_t r;
  const char *event_pattern;
  json_t *event;
  uint64_t start_ns;
} held_answer_t;

static void answer_committed(int status, void *arg) {
  held_answer_t *a = arg;
  if (status != 0) {
    /* Rolled back: the change never happened, so no event and no success. */
    json_decref(a->event);
    json_decref(a->r.response);
    json_decref(a->r.err);
    a->r = storage_error();
  } else if (a->event_pattern) {
    order_publish(a->svc, a->event_pattern, a->event, proto_rpc_call_request_id(a->call));
  }
  order_answer(a->call, a->pattern, a->r, a->start_ns);
  free(a);
}

/* Answer r and publish event (stolen; none when event_pattern is NULL) once
 * the write behind them is durable. */
static void answer_after_commit(order_svc_t *svc, proto_rpc_call_t *call, const char *pattern,
                                order_result_t r, const char *event_pattern, json_t *event,
                                uint64_t start_ns) {
  held_answer_t *a = malloc(sizeof(*a));
  if (a) {
    *a = (held_answer_t){svc, call, pattern, r, event_pattern, event, start_ns};
    if (store_group_defer(svc->group, answer_committed, a) == 0)
      return;
    free(a);
  }
  /* We cannot wait for the commit, so we cannot say it happened. */
  json_decref(event);
  json_decref(r.response);
  json_decref(r.err);
  order_answer(call, pattern, order_result_err(500, "INTERNAL_ERROR", "Out of memory"),
               start_ns);
}

/* Answer r, built from reads, once what those reads may have seen is
 * durable: while the turn's transaction is open, a read on the group's
 * connection sees its uncommitted rows (another request's new order, say),
 * so the answer waits for the COMMIT. A 400 read nothing and goes at once. */
static void answer_durable(order_svc_t *svc, proto_rpc_call_t *call, const char *pattern,
                           order_result_t r, uint64_t start_ns) {
  if (r.status == 400 || !store_group_in_txn(svc->group))
    order_answer(call, pattern, r, start_ns);
  else
    answer_after_commit(svc, call, pattern, r, NULL, NULL, start_ns);
}

static void on_get_order(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer_durable(ctx, call, "get_order", order_op_get(ctx, data), t0);
}

static void on_get_orders(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer_durable(ctx, call, "get_orders", order_op_list(ctx, data), t0);
}

static void on_update_order_status(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  json_t *event = NULL;
  order_result_t r = order_op_update_status(ctx, data, &event);
  if (r.status != 200) /* nothing was written; a 404 or 409 rests on a read */
    answer_durable(ctx, call, "update_order_status", r, t0);
  else
    answer_after_commit(ctx, call, "update_order_status", r, "order_status_changed", event, t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  order_answer(call, "health", order_op_health(ctx), t0);
}

int order_handlers_register(proto_rpc_server_t *srv, order_svc_t *svc) {
  static const struct {
    const char *cmd;
    proto_rpc_handler_fn fn;
  } table[] = {
      {"create_order", on_create_order},
      {"get_order", on_get_order},
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
