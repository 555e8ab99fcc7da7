/* flow.c: refund_order (also run for update_order_status's cancel of a paid
 * order), the operation that calls the payment service outside the
 * create-order saga (saga_run.c), as a small explicit state machine: a table of named steps
 * run by one engine over one per-order context (order_flow_t). A step does
 * one thing (a store write, or sending one upstream call) and returns the
 * next step; the engine stops while an upstream call is in flight, or until
 * the loop turn's COMMIT once a step wrote, and resumes after. Below handlers.c: it answers through libsvc
 * (svc/answer.h) and asks context.c whether an order is busy.
 */
#include "order.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"
#include "svc/answer.h"

#define FLOW_END (-1)                  /* the step index that ends a flow */
#define FLOW_MESSAGE_MAX_BYTES 512     /* error messages we format */

typedef struct order_flow order_flow_t;
typedef int (*step_fn)(order_flow_t *f);

/* One row of a flow's table: the step's name (for logs) and what it does.
 * fn returns the next step index, or FLOW_END once f->result is set. */
typedef struct step {
  const char *name;
  step_fn fn;
} step_t;

struct order_flow {
  order_inflight_t inflight;       /* in the busy registry (context.c); its order_id
                                      is the order this flow owns ("" = none yet) */
  svc_t *svc;
  proto_rpc_call_t *call;          /* answered exactly once, by flow_finish(); NULL
                                      for a flow nobody waits on (crash recovery) */
  const char *pattern;             /* "create_order" / "refund_order", for logs */
  const step_t *steps;             /* this flow's table */
  int step;                        /* next step to run, or FLOW_END */
  int running;                     /* inside flow_run(): completions only record */
  int waiting;                     /* an upstream call is in flight, or a commit */
  const char *lost;                /* flow_commit(): the 500 message if it fails */
  char *request_id;                /* copy of the call's requestId, or NULL */
  uint64_t start_ns;
  json_t *data;                    /* a reference to the request data: inputs borrow */
  order_id_input_t id_in;          /* refund_order's input */
  json_t *order;                   /* the order as last read or written, or NULL */
  int up_status;                   /* the last upstream call: PROTO_OK or PROTO_E* */
  json_t *up_response;             /* its response (a reference), or NULL */
  json_t *up_err;                  /* its err (a reference), or NULL */
  svc_result_t result;             /* the answer, set by the last step */
};

/* The order this flow owns, "" before it owns one. */
static const char *flow_id(const order_flow_t *f) {
  return f->inflight.order_id;
}

/* --- results ------------------------------------------------------------------ */

/* Set the answer, dropping an earlier one (a commit can still fail it). */
static int flow_result(order_flow_t *f, svc_result_t r) {
  svc_result_free(&f->result);
  f->result = r;
  return FLOW_END;
}

static int flow_fail(order_flow_t *f, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int flow_fail(order_flow_t *f, int status, const char *code, const char *fmt, ...) {
  char msg[FLOW_MESSAGE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return flow_result(f, svc_err(status, code, msg));
}

/* statusCode of an error object from a peer, 0 when it has none (a NestJS
 * peer's bare string or {"status":"error"}). */
static int remote_status(const json_t *err) {
  const json_t *sc = json_object_get(err, "statusCode");
  return json_is_integer(sc) ? (int)json_integer_value(sc) : 0;
}

static void log_upstream_failure(order_flow_t *f, const char *service) {
  json_t *fields = json_pack("{s:s, s:s, s:s, s:s?}", "upstream", service, "step",
                             f->steps[f->step].name, "error", proto_err_name(f->up_status),
                             "orderId", flow_id(f)[0] ? flow_id(f) : NULL);
  if (fields && f->up_err)
    json_object_set(fields, "err", f->up_err);
  proto_log_fields(PROTO_LOG_WARN, f->request_id, "upstream_failed", fields);
}

/* --- the engine --------------------------------------------------------------- */

static void flow_clear_upstream(order_flow_t *f) {
  json_decref(f->up_response);
  json_decref(f->up_err);
  f->up_response = f->up_err = NULL;
  f->up_status = PROTO_OK;
}

static void flow_free(order_flow_t *f) {
  order_inflight_remove(f->svc, &f->inflight);
  flow_clear_upstream(f);
  json_decref(f->order);
  json_decref(f->data);
  free(f->request_id);
  free(f);
}

/* Publish the result's event (what it announces is committed: a step that
 * wrote ended on flow_commit), log the request line and answer. */
static void flow_finish(order_flow_t *f) {
  svc_result_t r = f->result;
  proto_rpc_call_t *call = f->call;
  svc_t *svc = f->svc;
  svc_published_t ev;
  f->result = (svc_result_t){0};
  svc_publish_result(svc, &r, f->request_id, &ev);
  /* Log first: the request id belongs to the call, which the reply consumes. */
  svc_log_request(svc, -1, f->request_id, "request", f->pattern, &r,
                  flow_id(f)[0] ? flow_id(f) : NULL, &ev, f->start_ns);
  flow_free(f);
  if (call)
    svc_reply(call, r);
  else
    svc_result_free(&r);
}

/* Run steps until one waits for an upstream reply or the flow ends. A
 * completion that fires while a step runs (the client can fail a call inside
 * send) only records its result: the loop here carries on. */
static void flow_run(order_flow_t *f) {
  if (f->running)
    return;
  f->running = 1;
  while (!f->waiting && f->step != FLOW_END) {
    if (proto_log_enabled(PROTO_LOG_DEBUG))
      proto_log_fields(PROTO_LOG_DEBUG, f->request_id, "flow_step",
                       json_pack("{s:s, s:s, s:s?}", "pattern", f->pattern, "step",
                                 f->steps[f->step].name, "orderId",
                                 flow_id(f)[0] ? flow_id(f) : NULL));
    f->step = f->steps[f->step].fn(f);
  }
  f->running = 0;
  if (f->step == FLOW_END && !f->waiting)
    flow_finish(f);
}

static void on_upstream(const proto_rpc_result_t *res, void *arg) {
  order_flow_t *f = arg;
  /* Borrowed for this callback only: keep references. */
  f->up_status = res->status;
  f->up_response = res->response ? json_incref((json_t *)res->response) : NULL;
  f->up_err = res->err ? json_incref((json_t *)res->err) : NULL;
  f->waiting = 0;
  flow_run(f);
}

/* The turn's COMMIT is done: the step's write is durable (status 0), or it
 * was rolled back (PROTO_EIO) and the flow answers 500 instead of going on:
 * no event, no charge, no success reply for a write that is gone. */
static void on_committed(int status, void *arg) {
  order_flow_t *f = arg;
  f->waiting = 0;
  if (status != 0)
    f->step = flow_fail(f, 500, "STORAGE_ERROR", f->lost, flow_id(f));
  flow_run(f);
}

/* For a step that wrote (after svc_write_begin()): the flow goes on at next,
 * or ends with f->result, only once the loop turn's COMMIT made the write
 * durable. lost is the message if the COMMIT fails: a literal whose one %s is
 * the order id. */
static int flow_commit(order_flow_t *f, int next, const char *lost) {
  f->lost = lost;
  /* Set first: with no transaction open (no group, autocommit) on_committed
   * runs at once, inside this step, and only clears it. */
  f->waiting = 1;
  if (svc_after_commit(f->svc, on_committed, f) != 0) {
    f->waiting = 0;
    /* We cannot wait for the commit, so we cannot go on as if it happened. */
    return flow_fail(f, 500, "INTERNAL_ERROR", "Out of memory");
  }
  return next;
}

/* Send cmd with data (stolen) to cli; the next step reads f->up_*. A send
 * that fails at once (no connection: PROTO_EUNAVAIL) is recorded the same way
 * as a call that failed later. */
static void flow_send(order_flow_t *f, proto_rpc_client_t *cli, const char *cmd, json_t *data,
                      uint32_t timeout_ms) {
  flow_clear_upstream(f);
  if (!data) {
    f->up_status = PROTO_ENOMEM;
    return;
  }
  if (!cli) {
    json_decref(data);
    f->up_status = PROTO_EUNAVAIL;
    return;
  }
  f->waiting = 1;
  int rc = proto_rpc_client_send(cli, cmd, data, f->request_id, timeout_ms, on_upstream, f);
  if (rc != 0) {
    f->waiting = 0; /* the callback will not run */
    f->up_status = rc;
  }
}

/* The time an upstream call may take: the client's budget left, at most
 * RPC_TIMEOUT_MS. 0 when the budget is spent (do not start). */
static uint32_t flow_budget(const order_flow_t *f) {
  uint32_t left = f->call ? proto_rpc_call_remaining_ms(f->call) : UINT32_MAX;
  return left < f->svc->rpc_timeout_ms ? left : f->svc->rpc_timeout_ms;
}

/* From here on the flow owns the order: status changes wait for it. */
static void flow_own(order_flow_t *f, const char *id) {
  order_inflight_own(f->svc, &f->inflight, id);
}

static order_flow_t *flow_new(svc_t *svc, proto_rpc_call_t *call, const json_t *data,
                              const char *pattern, const step_t *steps) {
  order_flow_t *f = calloc(1, sizeof(*f));
  const char *rid = call ? proto_rpc_call_request_id(call) : NULL;
  if (!f || (rid && !(f->request_id = strdup(rid)))) {
    free(f);
    return NULL;
  }
  f->svc = svc;
  f->call = call;
  f->pattern = pattern;
  f->steps = steps;
  f->start_ns = uv_hrtime();
  f->data = json_incref((json_t *)data);
  order_inflight_add(svc, &f->inflight);
  return f;
}

static const char *order_str(const order_flow_t *f, const char *key) {
  return json_string_value(json_object_get(f->order, key));
}

/* --- refund_order ------------------------------------------------------------- */

enum {
  REFUND_LOAD,     /* read the order: it must be confirmed and not busy */
  REFUND_SEND,     /* refund_payment on the payment service */
  REFUND_SENT,     /* confirmed -> cancelled ("refunded"); go on once committed */
  REFUND_DONE,     /* order_status_changed, reply */
};

static int refund_load(order_flow_t *f) {
  json_t *order = NULL;
  switch (order_store_get(f->svc->store, f->id_in.id, f->id_in.id_len, &order)) {
  case STORE_OK:
    break;
  case ORDER_STORE_NOT_FOUND:
    return flow_fail(f, 404, "ORDER_NOT_FOUND", "Order not found");
  default:
    return flow_fail(f, 500, "STORAGE_ERROR", "Storage error");
  }
  f->order = order;
  const char *id = order_str(f, "id"), *status = order_str(f, "status");
  if (order_busy(f->svc, id, strlen(id)))
    return flow_fail(f, 409, "ORDER_BUSY", "Order %s is being processed; retry later", id);
  if (!status || order_status_parse(status, strlen(status)) != ORDER_CONFIRMED)
    return flow_fail(f, 409, "NOT_REFUNDABLE",
                     "Only a confirmed order can be refunded; order %s is %s", id,
                     status ? status : "unknown");
  flow_own(f, id);
  return REFUND_SEND;
}

static int refund_send(order_flow_t *f) {
  uint32_t t = flow_budget(f);
  if (t == 0)
    return flow_fail(f, 504, "DEADLINE_EXCEEDED",
                     "The deadline passed before the refund; order %s unchanged", flow_id(f));
  flow_send(f, f->svc->upstream[ORDER_UPSTREAM_PAYMENT], "refund_payment",
            json_pack("{s:s}", "orderId", flow_id(f)), t);
  return REFUND_SENT;
}

static int refund_sent(order_flow_t *f) {
  int rc, st;
  switch (f->up_status) {
  case PROTO_OK:
    break;
  case PROTO_EREMOTE:
    log_upstream_failure(f, "payment");
    st = remote_status(f->up_err);
    if (st >= 400 && st < 500) {
      const char *m = json_string_value(json_object_get(f->up_err, "message"));
      const char *code = json_string_value(json_object_get(f->up_err, "code"));
      return flow_fail(f, st, code ? code : "REFUND_REJECTED", "%s",
                       m && *m ? m : "Refund rejected");
    }
    return flow_fail(f, 502, "PAYMENT_SERVICE_ERROR",
                     "The payment service failed; order %s unchanged", flow_id(f));
  case PROTO_EUNAVAIL:
  case PROTO_ECLOSED:
  case PROTO_ENOMEM:
    log_upstream_failure(f, "payment");
    return flow_fail(f, 503, "PAYMENT_SERVICE_UNAVAILABLE",
                     "Payment service unavailable; order %s unchanged", flow_id(f));
  default:
    log_upstream_failure(f, "payment");
    return flow_fail(f, 504, "PAYMENT_TIMEOUT",
                     "Refund outcome unknown; order %s stays confirmed: retry the refund",
                     flow_id(f));
  }
  rc = svc_write_begin(f->svc) != STORE_OK
           ? STORE_ERROR
           : order_store_move(f->svc->store, f->order, ORDER_CANCELLED, NULL,
                              ORDER_REASON_REFUNDED);
  if (rc != STORE_OK) {
    /* The money went back but the order does not say so: loud, and a retry
     * of refund_order will find the payment already refunded. */
    proto_log_fields(PROTO_LOG_ERROR, f->request_id, "order_not_settled",
                     json_pack("{s:s, s:s, s:i}", "orderId", flow_id(f), "to", "cancelled",
                               "rc", rc));
    if (rc == ORDER_STORE_CONFLICT)
      return flow_fail(f, 409, "ORDER_CHANGED", "Order %s changed during the refund",
                       flow_id(f));
    return flow_fail(f, 500, "STORAGE_ERROR", "Refunded, but order %s could not be updated",
                     flow_id(f));
  }
  /* The event joins the move's transaction (the outbox): it commits with it
   * or not at all. */
  json_t *event = json_pack("{s:s, s:O, s:s, s:s}", "orderId", flow_id(f), "userId",
                            json_object_get(f->order, "userId"), "previousStatus",
                            order_status_name(ORDER_CONFIRMED), "newStatus",
                            order_status_name(ORDER_CANCELLED));
  if (svc_event_stage(f->svc, "order_status_changed", event, f->request_id) != 0)
    proto_log(PROTO_LOG_ERROR, f->request_id, "event_lost",
              "order_status_changed of refunded order %s", flow_id(f));
  return flow_commit(f, REFUND_DONE, "Refunded, but order %s could not be updated");
}

/* The move is committed: the reply. */
static int refund_done(order_flow_t *f) {
  return flow_result(f, svc_ok(json_incref(f->order)));
}

static const step_t refund_steps[] = {
    [REFUND_LOAD] = {"load", refund_load},
    [REFUND_SEND] = {"refund", refund_send},
    [REFUND_SENT] = {"refunded", refund_sent},
    [REFUND_DONE] = {"done", refund_done},
};

void order_flow_refund(svc_t *svc, proto_rpc_call_t *call, const json_t *data) {
  valid_verrs_t errs;
  order_flow_t *f = flow_new(svc, call, data, "refund_order", refund_steps);
  if (!f) {
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory");
    return;
  }
  if (order_validate_id(f->data, &f->id_in, &errs) != 0) {
    f->result = svc_invalid(&errs);
    f->step = FLOW_END;
  } else {
    f->step = REFUND_LOAD;
  }
  flow_run(f);
}

void order_flow_cancel_paid(svc_t *svc, proto_rpc_call_t *call, const json_t *data) {
  valid_verrs_t errs;
  order_status_input_t in;
  order_flow_t *f = flow_new(svc, call, data, "update_order_status", refund_steps);
  if (!f) {
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory");
    return;
  }
  if (order_validate_status(f->data, &in, &errs) != 0) {
    f->result = svc_invalid(&errs);
    f->step = FLOW_END;
  } else if (in.status != ORDER_CANCELLED) {
    /* Only the handler starts this, and only for a cancel. */
    f->step = flow_fail(f, 500, "INTERNAL_ERROR", "Not a cancel");
  } else {
    /* in borrows from f->data, which the flow keeps. */
    f->id_in.id = in.id;
    f->id_in.id_len = in.id_len;
    f->step = REFUND_LOAD;
  }
  flow_run(f);
}
