/* saga_run.c: the create-order saga's driver: the I/O around the pure state
 * machine (saga.c) and the verdicts (saga_outcome.c). One saga_t per order
 * in flight, owning nothing but its own order's state; no saga waits for
 * another.
 *
 * The durable rule: every state is written (the sagas row, its history, the
 * order's change and the events it implies, in the outbox) in one savepoint
 * of the loop turn's transaction, and the step that state names is sent only
 * once that COMMIT is done. So after a crash at any point the row names the
 * step to re-send, and every step is idempotent per orderId. A failed
 * COMMIT (the write is gone) makes the saga re-read its row and order later
 * and go on from what is durable.
 *
 *   create_order -> get_user -> [order pending + saga reserving] -> reserve
 *   -> [prices, order_created; charging] -> process_payment -> [committing,
 *   paymentId] -> commit_inventory -> [confirmed, done, order_completed]
 *   failure: [compensating ...] -> refund / release -> [cancelled,
 *   order_failed]
 *
 * The caller is answered when the saga ends, or with 504 when its deadline
 * passes first (the saga then goes on alone, to compensation if a forward
 * step cannot finish). At start-up the service resumes every unfinished
 * saga from its row (order_saga_resume_start), at most resume_max at once.
 * On a stop, a saga nobody waits for finishes the step in flight and parks
 * (its row stays for the next start); one whose caller waits goes on until
 * it ends, a backoff would hold it, or its deadline passes.
 */
#include "order.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"
#include "svc/answer.h"
#include "svc/outbox.h"

#define SAGA_MESSAGE_MAX_BYTES 512
#define SAGA_CRASH_EXIT_CODE 86
#define SAGA_ANSWER_MARGIN_MS 50u    /* the caller's 504 comes this much early */

typedef enum {
  WAIT_NONE = 0,
  WAIT_USER,                       /* get_user in flight */
  WAIT_STEP,                       /* the state's remote step in flight */
  WAIT_COMMIT,                     /* a write waits for the turn's COMMIT */
  WAIT_TIMER,                      /* a retry's backoff */
} saga_wait_t;

typedef struct saga {
  order_inflight_t inflight;       /* in the registry; owns the order id once stored */
  svc_t *svc;
  proto_rpc_call_t *call;          /* the caller until answered; NULL when resumed */
  char request_id[PROTO_ID_MAX];   /* carried by every step; "" if none */
  uint64_t start_ns;
  json_t *data;                    /* create: the request data (in borrows from it) */
  order_create_input_t *in;        /* create: until the order is stored */
  json_t *order;                   /* the order as last written (or read) */
  int state;                       /* the durable state (written and committed) */
  int next;                        /* the state a write in WAIT_COMMIT makes durable */
  int attempts;                    /* tries of the current state's step */
  int64_t deadline_ms;             /* wall-clock ms; 0: none */
  int resumed;                     /* one try of a forward step past the deadline */
  int sent_before;                 /* read from disk: the step may have gone out before */
  char reason[ORDER_REASON_MAX_BYTES]; /* why it compensates ("" until then) */
  int reply_status;                /* the caller's answer once cancelled: 0 = the order */
  json_t *reply_err;               /* its error object (owned) */
  saga_wait_t wait;
  int action;                      /* the step in flight (WAIT_STEP) */
  uv_timer_t retry;                /* the backoff */
  uv_timer_t expiry;               /* the caller's deadline */
  int timers;                      /* handles initialised and not yet closed */
  int from_resumer;
} saga_t;

/* The queue of sagas found unfinished at start-up. */
typedef struct order_saga_resumer {
  char (*ids)[ORDER_ID_MAX_BYTES + 1];
  size_t n, next;
  unsigned running;
  uv_timer_t pump;
  int pump_ready;
} resumer_t;

static void saga_send(saga_t *s);
static void saga_feed(saga_t *s, int outcome, order_saga_verdict_t *v);
static void saga_write(saga_t *s, int to, order_saga_verdict_t *v);
static void resumer_kick(svc_t *svc);

static order_app_t *app_of(const saga_t *s) {
  return s->svc->app;
}

static const char *oid(const saga_t *s) {
  return s->inflight.order_id[0] ? s->inflight.order_id : NULL;
}

static const char *rid(const saga_t *s) {
  return s->request_id[0] ? s->request_id : NULL;
}

static uint32_t rnd32(void) {
  uint32_t r = 0;
  if (proto_random_bytes(&r, sizeof(r)) != 0)
    r = (uint32_t)uv_hrtime();
  return r;
}

/* --- settings and fault injection ------------------------------------------ */

static const char *const crash_names[] = {"none",        "after_pending",
                                          "after_reserve", "after_payment",
                                          "after_commit",  "during_compensation",
                                          NULL};

int order_saga_settings_from_env(order_saga_settings_t *out) {
  uint64_t retry_max, resume_max;
  int crash;
  if (proto_config_u64("ORDER_SAGA_RETRY_MAX_MS", ORDER_SAGA_BACKOFF_CAP_MS,
                       ORDER_SAGA_BACKOFF_BASE_MS, 3600000, &retry_max) != 0 ||
      proto_config_u64("ORDER_SAGA_RESUME_MAX", ORDER_SAGA_RESUME_MAX_DEFAULT, 1, 100000,
                       &resume_max) != 0 ||
      proto_config_choice("ORDER_SAGA_CRASH_AT", crash_names, ORDER_SAGA_CRASH_NONE, &crash) !=
          0)
    return -1;
  out->retry_max_ms = (int64_t)retry_max;
  out->resume_max = (unsigned)resume_max;
  out->crash_at = crash;
  return 0;
}

/* Test-only: die here, as kill -9 would, the first time the point is reached. */
static void crash_point(saga_t *s, int point) {
  order_app_t *app = app_of(s);
  if (app->saga.crash_at != point || point == ORDER_SAGA_CRASH_NONE)
    return;
  proto_log(PROTO_LOG_WARN, rid(s), "saga_crash_injected", "%s at order %s",
            crash_names[point], oid(s) ? oid(s) : "-");
  proto_log_flush();
  _exit(SAGA_CRASH_EXIT_CODE);
}

/* --- lifetime ------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h) {
  saga_t *s = h->data;
  if (--s->timers == 0)
    free(s);
}

static void saga_free(saga_t *s) {
  order_app_t *app = app_of(s);
  if (s->from_resumer && app->resumer) {
    app->resumer->running--;
    resumer_kick(s->svc);
  }
  order_inflight_remove(s->svc, &s->inflight);
  json_decref(s->order);
  json_decref(s->data);
  json_decref(s->reply_err);
  free(s->in);
  s->order = s->data = s->reply_err = NULL;
  s->in = NULL;
  if (s->timers == 0) {
    free(s);
    return;
  }
  int n = s->timers;
  uv_close((uv_handle_t *)&s->retry, on_timer_closed);
  if (n > 1)
    uv_close((uv_handle_t *)&s->expiry, on_timer_closed);
}

static saga_t *saga_new(svc_t *svc, proto_rpc_call_t *call, const char *request_id) {
  saga_t *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->svc = svc;
  s->call = call;
  s->start_ns = uv_hrtime();
  s->state = s->next = ORDER_SAGA_PENDING;
  if (request_id && strlen(request_id) < sizeof(s->request_id))
    memcpy(s->request_id, request_id, strlen(request_id) + 1);
  if (uv_timer_init(svc->loop, &s->retry) != 0) {
    free(s);
    return NULL;
  }
  s->retry.data = s;
  s->timers = 1;
  if (uv_timer_init(svc->loop, &s->expiry) == 0) {
    s->expiry.data = s;
    s->timers = 2;
  }
  order_inflight_add(svc, &s->inflight);
  s->inflight.kind = ORDER_INFLIGHT_SAGA;
  return s;
}

/* --- the caller's answer -------------------------------------------------------- */

static void answer(saga_t *s, svc_result_t r) {
  proto_rpc_call_t *call = s->call;
  s->call = NULL;
  if (s->timers > 1)
    uv_timer_stop(&s->expiry); /* cannot fail */
  if (!call) {
    svc_result_free(&r);
    return;
  }
  /* The log line names the order (subject) even for an error reply. */
  svc_log_request(s->svc, -1, rid(s), "request", "create_order", &r, oid(s), NULL, s->start_ns);
  svc_reply(call, r);
}

static void answer_err(saga_t *s, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer_err(saga_t *s, int status, const char *code, const char *fmt, ...) {
  char msg[SAGA_MESSAGE_MAX_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  answer(s, svc_err(status, code, msg));
}

/* The final answer of a finished saga: the order, or the error that
 * cancelled it (the order id in its message). */
static void answer_final(saga_t *s) {
  if (!s->call)
    return;
  if (s->state == ORDER_SAGA_DONE || s->reply_status == 0) {
    answer(s, svc_ok(json_incref(s->order)));
    return;
  }
  json_t *err = s->reply_err;
  s->reply_err = NULL;
  if (!err) {
    answer_err(s, 500, "INTERNAL_ERROR", "Order %s cancelled", oid(s));
    return;
  }
  const char *m = json_string_value(json_object_get(err, "message"));
  char msg[SAGA_MESSAGE_MAX_BYTES];
  snprintf(msg, sizeof(msg), "%s; order %s cancelled", m ? m : "Failed", oid(s));
  json_object_set_new(err, "message", json_string(msg)); /* best effort */
  const char *code = json_string_value(json_object_get(err, "code"));
  answer(s, (svc_result_t){.status = s->reply_status, .code = code ? code : "ERROR", .err = err});
}

/* The caller's deadline passed before the saga ended: answer now; the saga
 * goes on alone (a forward step past the deadline leads to compensation). */
static void on_expiry(uv_timer_t *t) {
  saga_t *s = t->data;
  if (!s->call)
    return;
  const char *state = order_saga_state_name(s->state);
  if (!oid(s)) {
    answer_err(s, 504, "DEADLINE_EXCEEDED", "The deadline passed before the order was stored");
    return;
  }
  answer_err(s, 504, "DEADLINE_EXCEEDED",
             "The deadline passed; order %s is %s and will end confirmed or cancelled (GET "
             "/orders/%s/saga)",
             oid(s), state ? state : "in progress", oid(s));
}

/* Park: a stopping service sends no new step. The row is durable; the next
 * start resumes it. */
static void saga_park(saga_t *s) {
  if (s->call)
    answer_err(s, 503, "SERVICE_STOPPING",
               "The order service is stopping; order %s resumes when it restarts",
               oid(s) ? oid(s) : "(not stored)");
  proto_log(PROTO_LOG_INFO, rid(s), "saga_parked", "order %s at %s", oid(s) ? oid(s) : "-",
            order_saga_state_name(s->state));
  saga_free(s);
}

static void saga_finished(saga_t *s) {
  order_app_t *app = app_of(s);
  if (s->state == ORDER_SAGA_DONE)
    app->sagas_done++;
  else
    app->sagas_cancelled++;
  answer_final(s);
  saga_free(s);
}

/* --- writes ---------------------------------------------------------------------- */

/* After a failed write or COMMIT: re-read what is durable and go on from
 * there after a backoff (the disk may be full for a while). */
static void saga_reload(saga_t *s);

static void on_retry_timer(uv_timer_t *t) {
  saga_t *s = t->data;
  s->wait = WAIT_NONE;
  if (app_of(s)->stopping) {
    saga_park(s);
    return;
  }
  if (s->next != s->state) {
    saga_reload(s);
    return;
  }
  saga_send(s);
}

static void arm_retry(saga_t *s, int64_t delay_ms) {
  s->wait = WAIT_TIMER;
  int rc = uv_timer_start(&s->retry, on_retry_timer, (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0);
  if (rc != 0) {
    /* Cannot wait: the row is durable, so park (resumed at the next start). */
    proto_log(PROTO_LOG_ERROR, rid(s), "saga_timer_failed", "%s", uv_strerror(rc));
    saga_park(s);
  }
}

static int64_t backoff(const saga_t *s) {
  int64_t d = order_saga_backoff_ms(s->attempts, rnd32());
  int64_t cap = app_of(s)->saga.retry_max_ms;
  return d > cap ? cap : d;
}

static void on_written(int status, void *arg) {
  saga_t *s = arg;
  s->wait = WAIT_NONE;
  if (status != 0) {
    /* Rolled back: the state before is what is durable. */
    proto_log(PROTO_LOG_ERROR, rid(s), "saga_write_lost", "order %s: %s not stored",
              oid(s) ? oid(s) : "-", order_saga_state_name(s->next));
    if (!oid(s) || s->state == ORDER_SAGA_PENDING) {
      /* The order itself was not stored: nothing to resume. */
      answer_err(s, 500, "STORAGE_ERROR", "Storage error; the order was not stored");
      saga_free(s);
      return;
    }
    arm_retry(s, backoff(s)); /* next != state: the timer reloads */
    return;
  }
  int from = s->state;
  s->state = s->next;
  if (from == ORDER_SAGA_PENDING)
    crash_point(s, ORDER_SAGA_CRASH_AFTER_PENDING);
  if (order_saga_finished(s->state)) {
    saga_finished(s);
    return;
  }
  if (order_saga_compensating(s->state))
    crash_point(s, ORDER_SAGA_CRASH_DURING_COMPENSATION);
  saga_send(s);
}

/* The write of one transition is in the turn's transaction: go on once it is
 * durable. */
static void wait_commit(saga_t *s) {
  s->wait = WAIT_COMMIT;
  if (svc_after_commit(s->svc, on_written, s) != 0) {
    /* Cannot wait for the COMMIT: treat the write as lost (it may commit;
     * the reload reads whichever it was). */
    on_written(PROTO_EIO, s);
  }
}

/* Stage an event in the turn's transaction (the outbox), or publish it after
 * the commit when the service has no outbox (tests). data stolen. */
static int stage_event(saga_t *s, const char *pattern, json_t *data) {
  int rc = svc_event_stage(s->svc, pattern, data, rid(s));
  if (rc != 0)
    proto_log(PROTO_LOG_ERROR, rid(s), "saga_event_failed", "%s for order %s", pattern, oid(s));
  return rc;
}

static json_t *event_created(const json_t *o) {
  return json_pack("{s:O, s:O, s:O, s:O, s:O}", "orderId", json_object_get(o, "id"), "userId",
                   json_object_get(o, "userId"), "totalAmount", json_object_get(o, "totalAmount"),
                   "currency", json_object_get(o, "currency"), "items",
                   json_object_get(o, "items"));
}

/* The order's part of a transition to `to`, in the open savepoint. */
static int write_order(saga_t *s, int to, const order_saga_verdict_t *v, const int64_t *prices,
                       const char *currency) {
  order_store_t *st = s->svc->store;
  const char *status = json_string_value(json_object_get(s->order, "status"));
  int cur = status ? order_status_parse(status, strlen(status)) : -1;
  switch (to) {
  case ORDER_SAGA_CHARGING:
    if (!prices)
      return STORE_OK; /* a retry's rewrite */
    if (order_store_price(st, s->order, prices, json_array_size(json_object_get(s->order, "items")),
                          currency) != STORE_OK)
      return STORE_ERROR;
    return stage_event(s, "order_created", event_created(s->order)) == 0 ? STORE_OK : STORE_ERROR;
  case ORDER_SAGA_COMMITTING:
    /* The payment's id goes on the order now: a restart confirms with it. */
    if (v && v->payment_id[0])
      return order_store_move(st, s->order, cur, v->payment_id, NULL);
    return STORE_OK;
  case ORDER_SAGA_COMPENSATING_REFUND:
  case ORDER_SAGA_COMPENSATING_RELEASE:
    return cur == ORDER_PENDING ? order_store_move(st, s->order, ORDER_COMPENSATING, NULL, NULL)
                                : STORE_OK;
  case ORDER_SAGA_DONE:
    if (order_store_move(st, s->order, ORDER_CONFIRMED, NULL, NULL) != STORE_OK)
      return STORE_ERROR;
    return stage_event(s, "order_completed",
                       json_pack("{s:O, s:O, s:O, s:O}", "orderId", json_object_get(s->order, "id"),
                                 "userId", json_object_get(s->order, "userId"), "totalAmount",
                                 json_object_get(s->order, "totalAmount"), "currency",
                                 json_object_get(s->order, "currency"))) == 0
               ? STORE_OK
               : STORE_ERROR;
  case ORDER_SAGA_CANCELLED: {
    const char *reason = s->reason[0] ? s->reason : ORDER_REASON_INTERNAL;
    if (order_store_move(st, s->order, ORDER_CANCELLED, NULL, reason) != STORE_OK)
      return STORE_ERROR;
    return stage_event(s, "order_failed",
                       json_pack("{s:O, s:O, s:s}", "orderId", json_object_get(s->order, "id"),
                                 "userId", json_object_get(s->order, "userId"), "reason",
                                 reason)) == 0
               ? STORE_OK
               : STORE_ERROR;
  }
  default:
    return STORE_OK;
  }
}

/* Write the transition to `to` (its order change, the saga row and history,
 * its events) as one savepoint; the step follows the COMMIT. A local step
 * (confirm, cancel) is done in the same write: CONFIRMING is written as
 * DONE, CANCELLING as CANCELLED. */
static void saga_write_ex(saga_t *s, int to, const order_saga_verdict_t *v, const int64_t *prices,
                          const char *currency, int64_t next_at_ms) {
  order_store_t *st = s->svc->store;
  if (to == ORDER_SAGA_CONFIRMING)
    to = ORDER_SAGA_DONE;
  else if (to == ORDER_SAGA_CANCELLING)
    to = ORDER_SAGA_CANCELLED;
  s->next = to;
  int ok = svc_write_begin(s->svc) == STORE_OK && order_store_atomic_begin(st) == STORE_OK;
  if (ok) {
    ok = write_order(s, to, v, prices, currency) == STORE_OK &&
         order_store_saga_put(st, oid(s), strlen(oid(s)), to, s->attempts, next_at_ms,
                              s->reason[0] ? s->reason : NULL) == STORE_OK;
    order_store_atomic_end(st, ok);
  }
  if (!ok) {
    /* Undone: the in-memory order may be ahead of the table; the reload
     * reads it back. */
    proto_log(PROTO_LOG_ERROR, rid(s), "saga_write_failed", "order %s to %s", oid(s),
              order_saga_state_name(to));
    arm_retry(s, backoff(s));
    return;
  }
  if (proto_log_enabled(PROTO_LOG_DEBUG))
    proto_log_fields(PROTO_LOG_DEBUG, rid(s), "saga_state",
                     json_pack("{s:s, s:s, s:i}", "orderId", oid(s), "state",
                               order_saga_state_name(to), "attempt", s->attempts));
  wait_commit(s);
}

static void saga_write(saga_t *s, int to, order_saga_verdict_t *v) {
  saga_write_ex(s, to, v, NULL, NULL, order_wall_ms());
}

/* --- steps ----------------------------------------------------------------------- */

static void on_step(const proto_rpc_result_t *res, void *arg) {
  saga_t *s = arg;
  order_saga_verdict_t v;
  s->wait = WAIT_NONE;
  /* A step read from disk may have gone out before the restart: its first
   * try here is not a first try. */
  order_saga_judge(s->action, s->attempts + s->sent_before, res->status, res->response, res->err,
                   &v);
  if (v.outcome != ORDER_SAGA_UNKNOWN) {
    if (s->action == ORDER_SAGA_ACT_RESERVE && v.outcome == ORDER_SAGA_OK)
      crash_point(s, ORDER_SAGA_CRASH_AFTER_RESERVE);
    else if (s->action == ORDER_SAGA_ACT_CHARGE)
      crash_point(s, ORDER_SAGA_CRASH_AFTER_PAYMENT);
    else if (s->action == ORDER_SAGA_ACT_COMMIT && v.outcome == ORDER_SAGA_OK)
      crash_point(s, ORDER_SAGA_CRASH_AFTER_COMMIT);
  } else {
    json_t *f = json_pack("{s:s, s:s, s:s, s:i}", "orderId", oid(s), "step",
                          order_saga_action_name(s->action), "error", proto_err_name(res->status),
                          "attempt", s->attempts);
    if (f && res->err)
      json_object_set(f, "err", (json_t *)res->err);
    proto_log_fields(PROTO_LOG_WARN, rid(s), "saga_step_unknown", f);
  }
  if (s->action == ORDER_SAGA_ACT_RESERVE && v.outcome == ORDER_SAGA_OK) {
    /* The catalogue prices the order; a client price that differs fails it
     * here, with the units held: compensation releases them. */
    int64_t prices[ORDER_ITEMS_MAX];
    char currency[4];
    json_t *problem = NULL;
    const char *reason = NULL;
    s->resumed = 0;
    if (order_saga_price(s->order, res->response, prices, currency, &problem, &reason) != 0) {
      order_saga_verdict_t f = {.outcome = ORDER_SAGA_FAILED};
      snprintf(f.reason, sizeof(f.reason), "%s", reason ? reason : "pricing_failed");
      f.status = problem ? (int)json_integer_value(json_object_get(problem, "statusCode")) : 500;
      f.err = problem;
      s->state = ORDER_SAGA_CHARGING; /* in memory only: what the failure compensates */
      saga_feed(s, ORDER_SAGA_FAILED, &f);
      return;
    }
    s->attempts = 0;
    s->sent_before = 0;
    saga_write_ex(s, ORDER_SAGA_CHARGING, &v, prices, currency, order_wall_ms());
    return;
  }
  saga_feed(s, v.outcome, &v);
}

/* The step's request: its pattern, client and data. */
static json_t *step_data(const saga_t *s, int action, const char **cmd, unsigned *up) {
  const json_t *o = s->order;
  json_t *items, *it;
  size_t i;
  switch (action) {
  case ORDER_SAGA_ACT_RESERVE:
    *cmd = "reserve_inventory";
    *up = ORDER_UPSTREAM_INVENTORY;
    if (!(items = json_array()))
      return NULL;
    json_array_foreach(json_object_get(o, "items"), i, it) {
      if (json_array_append_new(items, json_pack("{s:O, s:O}", "productId",
                                                 json_object_get(it, "productId"), "quantity",
                                                 json_object_get(it, "quantity"))) != 0) {
        json_decref(items);
        return NULL;
      }
    }
    return json_pack("{s:s, s:o}", "orderId", oid(s), "items", items);
  case ORDER_SAGA_ACT_CHARGE:
    *cmd = "process_payment";
    *up = ORDER_UPSTREAM_PAYMENT;
    return json_pack("{s:s, s:O, s:O, s:O, s:O}", "orderId", oid(s), "userId",
                     json_object_get(o, "userId"), "amount", json_object_get(o, "totalAmount"),
                     "currency", json_object_get(o, "currency"), "paymentMethod",
                     json_object_get(o, "paymentMethod"));
  case ORDER_SAGA_ACT_COMMIT:
    *cmd = "commit_inventory";
    *up = ORDER_UPSTREAM_INVENTORY;
    return json_pack("{s:s}", "orderId", oid(s));
  case ORDER_SAGA_ACT_REFUND:
    *cmd = "refund_payment";
    *up = ORDER_UPSTREAM_PAYMENT;
    /* voidIfMissing: a charge still on its way is refused when it lands. */
    return json_pack("{s:s, s:b}", "orderId", oid(s), "voidIfMissing", 1);
  case ORDER_SAGA_ACT_RELEASE:
    *cmd = "release_inventory";
    *up = ORDER_UPSTREAM_INVENTORY;
    return json_pack("{s:s}", "orderId", oid(s));
  default:
    return NULL;
  }
}

static int is_forward(int action) {
  return action == ORDER_SAGA_ACT_RESERVE || action == ORDER_SAGA_ACT_CHARGE;
}

/* Send the step of s->state (durable): within the deadline for a forward
 * step before the pivot, else one RPC timeout each. */
static void saga_send(saga_t *s) {
  svc_t *svc = s->svc;
  int action = order_saga_action_of(s->state);
  const char *cmd = NULL;
  unsigned up = 0;
  uint32_t timeout = svc->rpc_timeout_ms;
  if (action == ORDER_SAGA_ACT_CONFIRM || action == ORDER_SAGA_ACT_CANCEL) {
    saga_write(s, s->state, NULL); /* resumed in a local state: do it now */
    return;
  }
  if (action == ORDER_SAGA_ACT_NONE) {
    saga_finished(s);
    return;
  }
  /* Stopping: a saga whose caller still waits goes on (the server drains
   * it, bounded by its deadline); one nobody waits for parks. */
  if (app_of(s)->stopping && !s->call) {
    saga_park(s);
    return;
  }
  if (is_forward(action) && s->deadline_ms) {
    int64_t left = s->deadline_ms - order_wall_ms();
    if (left <= 0 && !s->resumed) {
      saga_feed(s, ORDER_SAGA_DEADLINE, NULL);
      return;
    }
    if (left > 0 && (uint64_t)left < timeout)
      timeout = (uint32_t)left;
  }
  json_t *data = step_data(s, action, &cmd, &up);
  proto_rpc_client_t *cli = up < svc->n_upstreams ? svc->upstream[up] : NULL;
  s->action = action;
  int rc = PROTO_ENOMEM;
  if (data && cli) {
    s->wait = WAIT_STEP;
    rc = proto_rpc_client_send(cli, cmd, data, rid(s), timeout, on_step, s);
  } else {
    json_decref(data);
    rc = data ? PROTO_EUNAVAIL : PROTO_ENOMEM;
  }
  if (rc != 0) {
    /* Never sent: judged as a call that failed at once (the callback will
     * not run). */
    proto_rpc_result_t res = {rc, NULL, NULL};
    on_step(&res, s);
  }
}

/* Feed an outcome of the current state's step to the machine and act. */
static void saga_feed(saga_t *s, int outcome, order_saga_verdict_t *v) {
  int action = order_saga_action_of(s->state);
  int64_t now = order_wall_ms();
  s->resumed = 0;
  /* An unknown forward outcome past the deadline: the machine decides
   * (compensate before the pivot, keep committing after it). */
  if (outcome == ORDER_SAGA_UNKNOWN && s->deadline_ms && now >= s->deadline_ms &&
      (is_forward(action) || action == ORDER_SAGA_ACT_COMMIT))
    outcome = ORDER_SAGA_DEADLINE;
  order_saga_step_t step = order_saga_next(s->state, outcome);
  if (step.state < 0) {
    proto_log(PROTO_LOG_ERROR, rid(s), "saga_bad_state", "order %s state %d outcome %d", oid(s),
              s->state, outcome);
    if (v)
      json_decref(v->err);
    saga_park(s);
    return;
  }
  if (step.failing) {
    if (!s->reason[0])
      snprintf(s->reason, sizeof(s->reason), "%s",
               outcome == ORDER_SAGA_DEADLINE ? ORDER_REASON_DEADLINE
               : v && v->reason[0]            ? v->reason
                                              : "failed");
    if (!s->reply_status && v && v->status) {
      s->reply_status = v->status;
      s->reply_err = v->err;
      v->err = NULL;
    } else if (!s->reply_status && outcome == ORDER_SAGA_DEADLINE) {
      s->reply_status = 504;
      s->reply_err = proto_error_object(504, "DEADLINE_EXCEEDED",
                                        "The deadline passed before the order could complete",
                                        NULL);
    }
    proto_log(PROTO_LOG_INFO, rid(s), "saga_compensating", "order %s from %s: %s", oid(s),
              order_saga_state_name(s->state), s->reason);
  }
  if (v) {
    json_decref(v->err);
    v->err = NULL;
  }
  if (step.retry) {
    int64_t d = backoff(s);
    s->attempts++;
    if (is_forward(action) && s->deadline_ms && now + d >= s->deadline_ms &&
        outcome != ORDER_SAGA_DEADLINE) {
      /* The retry would come after the deadline: it is spent now. */
      saga_feed(s, ORDER_SAGA_DEADLINE, NULL);
      return;
    }
    if (s->attempts == 1 || s->attempts % 10 == 0)
      proto_log(PROTO_LOG_WARN, rid(s), "saga_retry", "order %s %s again in %lld ms (try %d)",
                oid(s), order_saga_action_name(action), (long long)d, s->attempts + 1);
    /* The attempt count and due time are durable too: a restart keeps the
     * backoff going instead of hammering a peer that is down. */
    order_store_t *st = s->svc->store;
    int ok = svc_write_begin(s->svc) == STORE_OK && order_store_atomic_begin(st) == STORE_OK;
    if (ok) {
      ok = order_store_saga_put(st, oid(s), strlen(oid(s)), s->state, s->attempts, now + d,
                                s->reason[0] ? s->reason : NULL) == STORE_OK;
      order_store_atomic_end(st, ok);
    }
    if (!ok)
      proto_log(PROTO_LOG_ERROR, rid(s), "saga_write_failed", "retry of order %s", oid(s));
    arm_retry(s, d);
    return;
  }
  if (step.state != s->state) {
    s->attempts = 0;
    s->sent_before = 0;
  }
  saga_write(s, step.state, v);
}

/* --- create_order ---------------------------------------------------------------- */

static uint32_t call_budget(const saga_t *s) {
  uint32_t left = s->call ? proto_rpc_call_remaining_ms(s->call) : UINT32_MAX;
  return left;
}

static void store_pending(saga_t *s) {
  order_store_t *st = s->svc->store;
  json_t *order = NULL;
  int ok = svc_write_begin(s->svc) == STORE_OK && order_store_atomic_begin(st) == STORE_OK;
  if (ok) {
    ok = order_store_create(st, s->in, &order) == STORE_OK;
    const char *id = ok ? json_string_value(json_object_get(order, "id")) : NULL;
    ok = ok && order_store_saga_begin(st, id, strlen(id), ORDER_SAGA_RESERVING, s->deadline_ms,
                                      rid(s)) == STORE_OK;
    order_store_atomic_end(st, ok);
  }
  if (!ok) {
    json_decref(order);
    answer(s, svc_storage_error());
    saga_free(s);
    return;
  }
  s->order = order;
  order_inflight_own(s->svc, &s->inflight, json_string_value(json_object_get(order, "id")));
  free(s->in);
  s->in = NULL;
  json_decref(s->data);
  s->data = NULL;
  app_of(s)->sagas_started++;
  s->state = ORDER_SAGA_PENDING;
  s->next = ORDER_SAGA_RESERVING;
  s->wait = WAIT_COMMIT;
  if (svc_after_commit(s->svc, on_written, s) != 0)
    on_written(PROTO_EIO, s);
}

/* on_written() for the first write, with its crash point. */
static void on_user(const proto_rpc_result_t *res, void *arg) {
  saga_t *s = arg;
  s->wait = WAIT_NONE;
  switch (res->status) {
  case PROTO_OK:
    if (!json_is_object(res->response) ||
        json_is_string(json_object_get(res->response, "error"))) {
      /* The tutorial's user service answers a miss as {error, statusCode}. */
      if (json_integer_value(json_object_get(res->response, "statusCode")) == 404) {
        answer_err(s, 404, "USER_NOT_FOUND", "User not found");
        break;
      }
      answer_err(s, 502, "USER_SERVICE_ERROR", "Unexpected reply from the user service");
      break;
    }
    if (app_of(s)->stopping) {
      saga_park(s);
      return;
    }
    store_pending(s);
    return;
  case PROTO_EREMOTE:
    if (json_integer_value(json_object_get(res->err, "statusCode")) == 404)
      answer_err(s, 404, "USER_NOT_FOUND", "User not found");
    else
      answer_err(s, 502, "USER_SERVICE_ERROR", "The user service failed");
    break;
  case PROTO_ETIMEDOUT:
    answer_err(s, 504, "USER_SERVICE_TIMEOUT", "The user service did not answer in time");
    break;
  default: /* a read: safe to call it down */
    answer_err(s, 503, "USER_SERVICE_UNAVAILABLE", "User service unavailable");
    break;
  }
  saga_free(s);
}

void order_saga_create(svc_t *svc, proto_rpc_call_t *call, const json_t *data) {
  valid_verrs_t errs;
  saga_t *s = saga_new(svc, call, call ? proto_rpc_call_request_id(call) : NULL);
  if (!s || !(s->in = malloc(sizeof(*s->in)))) {
    if (s)
      saga_free(s);
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory");
    return;
  }
  s->data = json_incref((json_t *)data);
  if (order_validate_create(s->data, s->in, &errs) != 0) {
    answer(s, svc_invalid(&errs));
    saga_free(s);
    return;
  }
  if (app_of(s)->stopping) {
    saga_park(s);
    return;
  }
  /* The saga's deadline is the caller's (one RPC timeout when it gave none). */
  uint32_t budget = call_budget(s);
  if (budget == 0) {
    answer_err(s, 504, "DEADLINE_EXCEEDED", "The deadline passed before the order was stored");
    saga_free(s);
    return;
  }
  if (budget == UINT32_MAX)
    budget = svc->rpc_timeout_ms;
  s->deadline_ms = order_wall_ms() + budget;
  if (s->timers > 1 && s->call) {
    /* A little before the caller's own timer (it started when it sent): so
     * it gets our 504, which names the order, rather than its timeout. */
    uint32_t margin = budget / 10 < SAGA_ANSWER_MARGIN_MS ? budget / 10 : SAGA_ANSWER_MARGIN_MS;
    uv_timer_start(&s->expiry, on_expiry, budget - margin, 0); /* cannot fail: init'd */
  }
  uint32_t t = budget < svc->rpc_timeout_ms ? budget : svc->rpc_timeout_ms;
  proto_rpc_client_t *cli =
      ORDER_UPSTREAM_USER < svc->n_upstreams ? svc->upstream[ORDER_UPSTREAM_USER] : NULL;
  json_t *req = json_pack("{s:s%}", "id", s->in->user_id, s->in->user_id_len);
  int rc = PROTO_EUNAVAIL;
  if (req && cli) {
    s->wait = WAIT_USER;
    rc = proto_rpc_client_send(cli, "get_user", req, rid(s), t, on_user, s);
  } else {
    json_decref(req);
    rc = req ? PROTO_EUNAVAIL : PROTO_ENOMEM;
  }
  if (rc != 0) {
    proto_rpc_result_t res = {rc, NULL, NULL};
    on_user(&res, s);
  }
}

/* --- resume ------------------------------------------------------------------------- */

/* Load the order and its saga row into s; 0 or -1 (logged). */
static int saga_load(saga_t *s, const char *id) {
  order_saga_row_t row;
  json_t *order = NULL;
  if (order_store_saga_get(s->svc->store, id, strlen(id), &row) != STORE_OK ||
      order_store_get(s->svc->store, id, strlen(id), &order) != STORE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "saga_resume_failed", "order %s: cannot read", id);
    return -1;
  }
  json_decref(s->order);
  s->order = order;
  s->state = s->next = row.state;
  s->attempts = row.attempts;
  s->deadline_ms = row.deadline_ms;
  s->sent_before = 1;
  snprintf(s->reason, sizeof(s->reason), "%s", row.reason);
  if (row.request_id[0] && !s->request_id[0])
    snprintf(s->request_id, sizeof(s->request_id), "%s", row.request_id);
  return 0;
}

/* Go on from a state read from disk. */
static void saga_go_on(saga_t *s) {
  order_saga_step_t step = order_saga_resume(s->state);
  if (step.state < 0 || order_saga_finished(s->state)) {
    saga_finished(s);
    return;
  }
  if (step.state != s->state) {
    saga_write(s, step.state, NULL); /* pending -> reserving */
    return;
  }
  s->resumed = 1;
  saga_send(s);
}

static void saga_reload(saga_t *s) {
  char id[ORDER_ID_MAX_BYTES + 1];
  snprintf(id, sizeof(id), "%s", s->inflight.order_id);
  if (saga_load(s, id) != 0) {
    arm_retry(s, backoff(s)); /* next != state still: reload again */
    s->attempts++;
    return;
  }
  saga_go_on(s);
}

static void resume_one(svc_t *svc, const char *id) {
  saga_t *s = saga_new(svc, NULL, NULL);
  if (!s) {
    proto_log(PROTO_LOG_ERROR, NULL, "saga_resume_failed", "order %s: out of memory", id);
    return;
  }
  order_inflight_own(svc, &s->inflight, id);
  if (saga_load(s, id) != 0) {
    saga_free(s);
    return;
  }
  order_app_t *app = svc->app;
  s->from_resumer = 1;
  app->resumer->running++;
  app->sagas_resumed++;
  proto_log(PROTO_LOG_INFO, rid(s), "saga_resumed", "order %s at %s (try %d)", id,
            order_saga_state_name(s->state), s->attempts + 1);
  int64_t wait = 0;
  order_saga_row_t row;
  if (order_store_saga_get(svc->store, id, strlen(id), &row) == STORE_OK)
    wait = row.next_attempt_at_ms - order_wall_ms();
  if (wait > 0 && !order_saga_finished(s->state) &&
      order_saga_resume(s->state).state == s->state) {
    /* A backoff that was running when the process stopped. */
    s->resumed = 1;
    arm_retry(s, wait > app->saga.retry_max_ms ? app->saga.retry_max_ms : wait);
    return;
  }
  saga_go_on(s);
}

static void on_pump(uv_timer_t *t) {
  svc_t *svc = t->data;
  order_app_t *app = svc->app;
  resumer_t *r = app->resumer;
  while (!app->stopping && r->next < r->n && r->running < app->saga.resume_max) {
    const char *id = r->ids[r->next++];
    if (!order_busy(svc, id, strlen(id)))
      resume_one(svc, id);
  }
  if (r->next >= r->n && r->n > 0 && r->running == 0) {
    proto_log(PROTO_LOG_INFO, NULL, "sagas_resumed", "%zu unfinished sagas taken up", r->n);
    free(r->ids);
    r->ids = NULL;
    r->n = r->next = 0;
  }
}

static void resumer_kick(svc_t *svc) {
  order_app_t *app = svc->app;
  resumer_t *r = app->resumer;
  if (r && r->pump_ready && r->next < r->n)
    uv_timer_start(&r->pump, on_pump, 0, 0); /* cannot fail on an init'd timer */
}

int order_saga_resume_start(svc_t *svc) {
  order_app_t *app = svc->app;
  resumer_t *r = calloc(1, sizeof(*r));
  order_saga_row_t *page = malloc(ORDER_SAGA_PAGE_MAX * sizeof(*page));
  size_t cap = 0, n = 0;
  int ret = -1;
  if (!r || !page)
    goto out;
  /* Every unfinished saga's id, read once: the resumed ones then rewrite
   * their rows, which would move them in a keyset walk. */
  for (;;) {
    size_t got = 0;
    if (order_store_saga_unfinished(svc->store, INT64_MAX, n ? &page[ORDER_SAGA_PAGE_MAX - 1] : NULL,
                                    page, ORDER_SAGA_PAGE_MAX, &got) != STORE_OK)
      goto out;
    if (r->n + got > cap) {
      size_t ncap = cap ? cap * 2 : ORDER_SAGA_PAGE_MAX;
      while (ncap < r->n + got)
        ncap *= 2;
      void *p = realloc(r->ids, ncap * sizeof(*r->ids));
      if (!p)
        goto out;
      r->ids = p;
      cap = ncap;
    }
    for (size_t i = 0; i < got; i++)
      snprintf(r->ids[r->n + i], sizeof(r->ids[0]), "%s", page[i].order_id);
    r->n += got;
    n++;
    if (got < ORDER_SAGA_PAGE_MAX)
      break;
  }
  if (uv_timer_init(svc->loop, &r->pump) != 0)
    goto out;
  r->pump.data = svc;
  r->pump_ready = 1;
  app->resumer = r;
  if (r->n > 0)
    proto_log(PROTO_LOG_INFO, NULL, "sagas_unfinished", "%zu to resume, %u at a time", r->n,
              app->saga.resume_max);
  resumer_kick(svc);
  r = NULL;
  ret = 0;
out:
  if (ret != 0)
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot read the unfinished sagas");
  if (r) {
    free(r->ids);
    free(r);
  }
  free(page);
  return ret;
}

static void on_pump_closed(uv_handle_t *h) {
  free(h->data);
}

void order_saga_stop(svc_t *svc) {
  order_app_t *app = svc->app;
  if (!app)
    return;
  app->stopping = 1;
  /* Sagas waiting out a backoff park now; the others park at their next
   * step (the one in flight finishes and is written). */
  order_inflight_t *e = app->flows, *next;
  for (; e; e = next) {
    next = e->next;
    if (e->kind != ORDER_INFLIGHT_SAGA)
      continue;
    saga_t *s = (saga_t *)e;
    if (s->wait == WAIT_TIMER) {
      uv_timer_stop(&s->retry);
      saga_park(s);
    }
  }
  resumer_t *r = app->resumer;
  if (r) {
    app->resumer = NULL;
    free(r->ids);
    r->ids = NULL;
    if (r->pump_ready) {
      r->pump.data = r;
      uv_close((uv_handle_t *)&r->pump, on_pump_closed);
    } else {
      free(r);
    }
  }
}
