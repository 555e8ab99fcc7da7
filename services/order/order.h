/* order.h: the order service's internal API, shared by validate.c, status.c,
 * saga.c, store.c, context.c, flow.c, handlers.c, main.c and the unit tests. Nothing
 * here is installed.
 *
 * Layers, each calling only those above it: validate.c turns request data
 * into typed inputs (pure, on libvalid); status.c is the order status machine
 * (pure); saga.c is the create-order saga's state machine (pure); store.c
 * owns the SQLite database; context.c is the order service's
 * part of the service context (libsvc's svc_t): its log fields and the
 * registry of orders busy in a flow; flow.c runs the multi-step operations
 * that call other services (create_order, refund_order) as explicit step
 * tables; handlers.c glues it all to the RPC server.
 *
 * Durability: every write joins the loop turn's transaction of the commit
 * group on svc->group (svc_write_begin(), one fsync for all the turn's
 * writes); what must not happen before the write is durable -- the reply, an
 * event, the next step of a flow -- is deferred to after that COMMIT.
 */
#ifndef ORDER_H
#define ORDER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "proto/events.h"
#include "proto/rpc_client.h"
#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "store/conn.h"
#include "store/db.h"
#include "svc/service.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define ORDER_SERVICE_PORT_DEFAULT 3002
#define ORDER_USER_SERVICE_PORT_DEFAULT 3001
#define ORDER_PAYMENT_SERVICE_PORT_DEFAULT 3003
#define ORDER_INVENTORY_SERVICE_PORT_DEFAULT 3005
#define ORDER_DB_FILE "order.db"

#define ORDER_ITEMS_MIN 1
#define ORDER_ITEMS_MAX 100
#define ORDER_ID_MAX_BYTES 128                /* userId, order id, productId */
#define ORDER_QUANTITY_MIN 1
#define ORDER_QUANTITY_MAX 10000
#define ORDER_PRICE_MAX 1000000000            /* minor units per item (10^9) */
#define ORDER_PRICE_UNSET (-1)                /* an item the client sent no price for */
/* Largest total, in minor units: JavaScript's Number.MAX_SAFE_INTEGER, so
 * every JSON peer reads the amount exactly. The item limits keep real totals
 * far below (100 * 10^4 * 10^9 = 10^15); the check is the contract. */
#define ORDER_TOTAL_MAX 9007199254740991LL
#define ORDER_PAYMENT_METHOD_MAX_BYTES 128
#define ORDER_CURRENCY_DEFAULT "USD"
#define ORDER_REASON_MAX_BYTES 256            /* cancelReason taken from a peer is cut */
#define ORDER_PAGE_DEFAULT 1
#define ORDER_PAGE_MAX 1000000000             /* keeps (page - 1) * limit far from overflow */
#define ORDER_LIMIT_DEFAULT 10
#define ORDER_LIMIT_MAX 100                   /* larger limits are capped, not rejected */
#define ORDER_ID_PREFIX "order_"

/* cancelReason values this service writes itself. */
#define ORDER_REASON_PAYMENT_UNAVAILABLE "payment_unavailable"
#define ORDER_REASON_DEADLINE "deadline_exceeded"
#define ORDER_REASON_REFUNDED "refunded"
#define ORDER_REASON_REQUESTED "cancelled_by_request"
#define ORDER_REASON_INTERNAL "internal_error"
#define ORDER_REASON_PRICE_CHANGED "price_changed"
#define ORDER_REASON_INVENTORY_UNAVAILABLE "inventory_unavailable"
#define ORDER_REASON_STOPPED "service_stopped"

/* --- statuses (status.c) ----------------------------------------------------- */

typedef enum {
  ORDER_PENDING = 0,
  ORDER_CONFIRMED,
  ORDER_SHIPPED,
  ORDER_DELIVERED,
  ORDER_CANCELLED,
  ORDER_COMPENSATING,                      /* a failed saga undoing its steps */
  ORDER_STATUS_COUNT_,
} order_status_t;

/* "pending", ... ; NULL for a value out of range. */
const char *order_status_name(int status);
/* The status named by s (len bytes, exact lowercase), or -1. */
int order_status_parse(const char *s, size_t len);
/* Non-zero when from -> to is a move the service may make (the table in
 * status.c): create_order's confirm and cancel, refund_order's cancel, and
 * the moves update_order_status makes on a client's request. */
int order_transition_allowed(int from, int to);
/* Non-zero when a client may ask update_order_status for status to: shipped,
 * delivered, cancelled. Never confirmed (only the payment, through
 * create_order, confirms) nor pending. The move must also be in the table
 * above; a cancel of a paid (confirmed) order runs the refund flow. */
int order_status_requestable(int to);

/* --- the create-order saga (saga.c) ------------------------------------------ */

/* The create-order saga as a pure state machine: no I/O, no clock, no
 * randomness of its own. The handlers drive it: they perform the action a
 * transition names, write the new state durably (the sagas row, in the same
 * transaction as the order's change) BEFORE sending the step, and feed the
 * step's outcome back in. The state is the step in progress, so a restart
 * re-sends exactly the step the row names (order_saga_resume()); every step
 * is idempotent per orderId. The decisions are documented in saga.c. */
typedef enum {
  ORDER_SAGA_PENDING = 0,          /* order row written pending; nothing sent yet */
  ORDER_SAGA_RESERVING,            /* reserve_inventory sent (or about to be) */
  ORDER_SAGA_CHARGING,             /* process_payment */
  ORDER_SAGA_COMMITTING,           /* commit_inventory (the charge succeeded) */
  ORDER_SAGA_CONFIRMING,           /* local: order -> confirmed */
  ORDER_SAGA_DONE,                 /* final: confirmed */
  ORDER_SAGA_COMPENSATING_REFUND,  /* refund_payment */
  ORDER_SAGA_COMPENSATING_RELEASE, /* release_inventory */
  ORDER_SAGA_CANCELLING,           /* local: order -> cancelled with the reason */
  ORDER_SAGA_CANCELLED,            /* final: cancelled */
  ORDER_SAGA_STATE_COUNT_,
} order_saga_state_t;

/* What became of the step just tried. */
typedef enum {
  ORDER_SAGA_OK = 0,               /* it happened (an idempotent retry's "already done" too) */
  ORDER_SAGA_FAILED,               /* a definite no (declined, out of stock, 4xx): the
                                      caller keeps the reason */
  ORDER_SAGA_UNKNOWN,              /* may or may not have happened (timeout, connection
                                      lost after sending, 5xx) */
  ORDER_SAGA_DEADLINE,             /* the saga's deadline ran out (before or while sending) */
  ORDER_SAGA_OUTCOME_COUNT_,
} order_saga_outcome_t;

/* What the driver does next. */
typedef enum {
  ORDER_SAGA_ACT_NONE = 0,         /* finished: nothing to send */
  ORDER_SAGA_ACT_RESERVE,          /* reserve_inventory {orderId, items} */
  ORDER_SAGA_ACT_CHARGE,           /* process_payment {orderId, ...} */
  ORDER_SAGA_ACT_COMMIT,           /* commit_inventory {orderId} */
  ORDER_SAGA_ACT_CONFIRM,          /* local write: pending -> confirmed */
  ORDER_SAGA_ACT_REFUND,           /* refund_payment {orderId} */
  ORDER_SAGA_ACT_RELEASE,          /* release_inventory {orderId} */
  ORDER_SAGA_ACT_CANCEL,           /* local write: pending -> cancelled, cancelReason */
  ORDER_SAGA_ACTION_COUNT_,
} order_saga_action_t;

typedef struct order_saga_step {
  int state;      /* the order_saga_state_t to write before acting; -1 on bad input */
  int action;     /* an order_saga_action_t: always the one that belongs to state */
  int retry;      /* 1: same state again; attempt + 1, wait order_saga_backoff_ms() */
  int failing;    /* 1: this transition starts compensation; the failed step's reason
                     (or ORDER_REASON_DEADLINE) becomes the cancel reason */
} order_saga_step_t;

#define ORDER_SAGA_BACKOFF_BASE_MS 100   /* first retry waits 50..100 ms */
#define ORDER_SAGA_BACKOFF_CAP_MS 30000  /* no retry waits more than 30 s */

/* The transition from state on outcome. Bad input: {-1, NONE, 0, 0}. */
order_saga_step_t order_saga_next(int state, int outcome);
/* Where a saga found in state after a restart goes on: the step its row
 * names, re-sent (state unchanged, except PENDING, which moves to RESERVING
 * like order_saga_next(PENDING, OK)). Final states: action NONE. */
order_saga_step_t order_saga_resume(int state);
/* The action that belongs to state: NONE for PENDING (nothing is sent
 * before RESERVING is written), the final states and bad input. */
int order_saga_action_of(int state);
/* Wait before retry number attempt (0 = the first retry): exponential from
 * ORDER_SAGA_BACKOFF_BASE_MS, capped at ORDER_SAGA_BACKOFF_CAP_MS, with
 * "equal jitter" from the caller's random value rnd: in [d/2, d] for the
 * capped exponential d, so never 0 (no hot loop) and never above the cap.
 * A negative attempt counts as 0. */
int64_t order_saga_backoff_ms(int attempt, uint32_t rnd);
/* Non-zero for DONE and CANCELLED: nothing left to resume. */
int order_saga_finished(int state);
/* Non-zero for the states that undo (refund, release, cancel). */
int order_saga_compensating(int state);
/* "pending", "reserving", ..., "compensating_refund", ... (the sagas row
 * stores these); NULL out of range. */
const char *order_saga_state_name(int state);
/* The state named by s (len bytes, exact), or -1. */
int order_saga_state_parse(const char *s, size_t len);
/* "reserve", "charge", ... for log lines; NULL out of range. */
const char *order_saga_action_name(int action);

/* What an upstream's answer to a saga step means (saga_outcome.c, pure): the
 * driver feeds the outcome to order_saga_next(); a deadline is the driver's
 * own decision, never a verdict. */
typedef struct order_saga_verdict {
  int outcome;                     /* ORDER_SAGA_OK, _FAILED or _UNKNOWN */
  char reason[ORDER_REASON_MAX_BYTES]; /* FAILED: the cancelReason */
  int status;                      /* FAILED: the caller's error status; 0: the caller
                                      gets the cancelled order (a declined card) */
  json_t *err;                     /* FAILED with status: the error object to answer
                                      (owned: json_decref), or NULL */
  char payment_id[PROTO_ID_MAX];   /* CHARGE, OK: the payment's id */
} order_saga_verdict_t;

/* Judge the answer to action (an order_saga_action_t) after attempts earlier
 * tries of it: up_status is the client's PROTO_OK / PROTO_E* code, response
 * and err the reply's (borrowed; NULL when absent). A NestJS peer's errors
 * count as errors in every shape it sends them: {error, statusCode} as a
 * response, {status:"error", message}, a bare string. */
void order_saga_judge(int action, int attempts, int up_status, const json_t *response,
                      const json_t *err, order_saga_verdict_t *out);

/* The catalogue's prices for the order's items from the reservation
 * reserve_inventory answered: prices[i] for items[i] (matched by productId)
 * and the currency. 0; or -1 with *problem (owned) the caller's error object:
 * 409 PRICE_CHANGED when a client price differs (details name each item),
 * 409 CURRENCY_MISMATCH, 502 INVENTORY_SERVICE_ERROR when the reply does not
 * price an item; *reason is the cancelReason. */
int order_saga_price(const json_t *order, const json_t *reservation, int64_t *prices,
                     char currency[4], json_t **problem, const char **reason);

/* --- validation (validate.c) ------------------------------------------------ */

/* Field errors are libvalid's (valid/valid.h): a field inside an item is
 * named by its path, "items[2].price"; messages are static, e.g. "must be an
 * integer from 1 to 10000". svc_invalid() makes the 400 of them. */

/* Inputs borrow their strings from the validated json_t: keep it alive. */
typedef struct order_item_input {
  const char *product_id;
  size_t product_id_len;
  int64_t quantity;                        /* ORDER_QUANTITY_MIN..MAX */
  int64_t price;                           /* 0..ORDER_PRICE_MAX minor units, or
                                              ORDER_PRICE_UNSET */
} order_item_input_t;

typedef struct order_create_input {
  const char *user_id;
  size_t user_id_len;
  const char *payment_method;
  size_t payment_method_len;
  char currency[4];                        /* three uppercase letters + NUL */
  int64_t total;                           /* sum of quantity * price over the items
                                              with a price, exact */
  size_t n_items;
  order_item_input_t items[ORDER_ITEMS_MAX];
} order_create_input_t;

typedef struct order_id_input {
  const char *id;
  size_t id_len;
} order_id_input_t;

typedef struct order_list_input {
  const char *user_id;
  size_t user_id_len;
  int64_t page;                            /* 1..ORDER_PAGE_MAX */
  int64_t limit;                           /* 1..ORDER_LIMIT_MAX (capped) */
} order_list_input_t;

typedef struct order_status_input {
  const char *id;
  size_t id_len;
  int status;                              /* an order_status_t */
} order_status_input_t;

/* Each validator returns 0 with *out filled, or -1 with the reasons in *errs
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"). errs may
 * borrow from data: keep it alive until the 400 is built. */
int order_validate_create(const json_t *data, order_create_input_t *out, valid_verrs_t *errs);
/* get_order and refund_order: {id}. */
int order_validate_id(const json_t *data, order_id_input_t *out, valid_verrs_t *errs);
int order_validate_list(const json_t *data, order_list_input_t *out, valid_verrs_t *errs);
int order_validate_status(const json_t *data, order_status_input_t *out, valid_verrs_t *errs);

/* *acc += quantity * price, refusing negative operands and any result above
 * ORDER_TOTAL_MAX. 0, or -1 with *acc unchanged. Exposed for tests. */
int order_total_add(int64_t *acc, int64_t quantity, int64_t price);

/* --- storage (store.c) ------------------------------------------------------ */

typedef struct order_store order_store_t;

/* The store described once (store/conn.h); svc_def_t.store opens it. */
extern const store_schema_t order_store_schema;

/* Return codes: STORE_OK, STORE_EINVAL, STORE_ERROR (store/db.h), and: */
enum {
  ORDER_STORE_NOT_FOUND = STORE_RC_SERVICE,      /* no such order */
  ORDER_STORE_CONFLICT = STORE_RC_SERVICE - 1,   /* transition: the status was not the
                                                    expected one */
};

/* Create data_dir if missing, open data_dir/order.db (WAL, synchronous =
 * sync, a STORE_SYNC_* level; busy timeout), create or check the schema and
 * prepare the statements. 0 with *out set, STORE_EINVAL or STORE_ERROR. */
int order_store_open(const char *data_dir, int sync, order_store_t **out);
/* Finalize statements and close the database (close its commit group
 * first). NULL is a no-op. */
void order_store_close(order_store_t *s);
/* The connection, for the commit group (borrowed). */
sqlite3 *order_store_db(order_store_t *s);

/* Writes below are atomic each. They commit with the transaction open on the
 * connection (the commit group's: svc_write_begin() first), or at once when
 * none is open (tools, store tests). */

/* Insert a pending order and its items (a savepoint: all or nothing, and a
 * failure undoes only this order). *order is the new order object (caller
 * owns). */
int order_store_create(order_store_t *s, const order_create_input_t *in, json_t **order);
/* *order = the order object (caller owns). ORDER_STORE_NOT_FOUND or STORE_ERROR. */
int order_store_get(order_store_t *s, const char *id, size_t id_len, json_t **order);
/* One page of a user's orders, newest first; *orders a new array, *total
 * every order of the user. */
int order_store_list_by_user(order_store_t *s, const char *user_id, size_t user_id_len,
                             int64_t page, int64_t limit, json_t **orders, int64_t *total);
/* Atomically move the order from `from` to `to` (UPDATE ... WHERE id AND
 * status = from), setting paymentId / cancelReason when not NULL and
 * updatedAt. ORDER_STORE_CONFLICT when its status was not `from`,
 * ORDER_STORE_NOT_FOUND, STORE_ERROR. On success *order (when order is
 * not NULL) is the updated order (caller owns). */
int order_store_transition(order_store_t *s, const char *id, size_t id_len, int from,
                           int to, const char *payment_id, const char *cancel_reason,
                           json_t **order);
/* order_store_transition() for an order object of this store in hand: from
 * is its "status"; on success the object itself is updated (status,
 * paymentId, cancelReason, updatedAt) instead of read back. Same codes. */
int order_store_move(order_store_t *s, json_t *order, int to, const char *payment_id,
                     const char *cancel_reason);
/* The saga's durable row (table sagas, schema v4), for the driver of saga.c. */
typedef struct order_saga_row {
  char order_id[ORDER_ID_MAX_BYTES + 1];
  int state;                           /* an order_saga_state_t */
  int attempts;                        /* tries of the current step so far */
  int64_t next_attempt_at_ms;          /* epoch ms when the step is due (the backoff) */
  int has_reason;                      /* 0: reason is "" because none was set */
  char reason[ORDER_REASON_MAX_BYTES]; /* what started compensation */
  char updated_at[PROTO_ISO_TIME_LEN];
  int64_t deadline_ms;                 /* the caller's deadline, epoch ms; 0: none */
  char request_id[PROTO_ID_MAX];       /* the caller's request id, "" if none */
} order_saga_row_t;

#define ORDER_SAGA_PAGE_MAX 1000       /* rows per order_store_saga_unfinished() call */
#define ORDER_SAGA_HISTORY_MAX 200     /* history entries a read returns */

/* Begin the saga of a new order (same transaction as its insert): state,
 * attempts 0, due now, the caller's deadline (epoch ms, 0: none) and
 * request id (may be NULL). STORE_EINVAL, STORE_ERROR (also when the row
 * exists). Appends the state to the history, as order_store_saga_put(). */
int order_store_saga_begin(order_store_t *s, const char *order_id, size_t id_len, int state,
                           int64_t deadline_ms, const char *request_id);

/* Write the saga row of an existing order (insert or replace): state,
 * attempts, next_attempt_at_ms and updatedAt; reason when not NULL (NULL
 * keeps the stored one). In the caller's transaction, so it commits with the
 * order's own change. STORE_EINVAL (bad state, attempts < 0, id empty or
 * longer than ORDER_ID_MAX_BYTES, reason of ORDER_REASON_MAX_BYTES or more),
 * STORE_ERROR (also: no such order, the foreign key). */
int order_store_saga_put(order_store_t *s, const char *order_id, size_t id_len, int state,
                         int attempts, int64_t next_attempt_at_ms, const char *reason);
/* *history = [{state, attempt, at, reason?}], oldest first, at most
 * ORDER_SAGA_HISTORY_MAX (caller owns). STORE_ERROR. */
int order_store_saga_history(order_store_t *s, const char *order_id, size_t id_len,
                             json_t **history);
/* Give a pending order its catalogue prices: prices[i] for item line i (n
 * must be the order's item count), totalAmount recomputed exactly, currency.
 * The object is updated in place. STORE_EINVAL (a total past
 * ORDER_TOTAL_MAX, a bad currency), ORDER_STORE_CONFLICT (not pending),
 * STORE_ERROR. Not atomic by itself: inside order_store_atomic_*(). */
int order_store_price(order_store_t *s, json_t *order, const int64_t *prices, size_t n,
                      const char *currency);
/* A group of writes that applies whole or not at all inside the open
 * transaction (a savepoint): begin, the writes, end(keep = 1 when every write
 * succeeded, 0 to undo them). 0 or STORE_ERROR. */
int order_store_atomic_begin(order_store_t *s);
int order_store_atomic_end(order_store_t *s, int keep);
/* *out = the saga row of the order. ORDER_STORE_NOT_FOUND or STORE_ERROR. */
int order_store_saga_get(order_store_t *s, const char *order_id, size_t id_len,
                         order_saga_row_t *out);
/* One page (at most max rows, 1..ORDER_SAGA_PAGE_MAX, into rows[max]) of the
 * sagas not finished (neither done nor cancelled) whose next_attempt_at is
 * at most due_by_ms (INT64_MAX: all, as at start-up), earliest due first,
 * then by order id; after is the last row of the previous page (NULL for
 * the first). On the partial index sagas_unfinished. 0 with *n rows (fewer
 * than max: the last page), STORE_EINVAL, STORE_ERROR (*n = 0). */
int order_store_saga_unfinished(order_store_t *s, int64_t due_by_ms,
                                const order_saga_row_t *after, order_saga_row_t *rows,
                                size_t max, size_t *n);
/* A cheap read of the orders table, for health checks. 0 or STORE_ERROR. */
int order_store_ping(order_store_t *s);
/* The connection's journal_mode (into buf) and synchronous level, as in effect. */
int order_store_settings(order_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- the service context (context.c) ----------------------------------------- */

/* The order service runs on libsvc's context (svc/service.h): its store is
 * svc->store (an order_store_t), the commit group svc->group, the publisher
 * svc->pub, and the upstream clients, in the def's order: */
enum {
  ORDER_UPSTREAM_USER = 0,         /* the user service: get_user */
  ORDER_UPSTREAM_PAYMENT = 1,      /* the payment service: process_payment, refund_payment */
  ORDER_UPSTREAM_INVENTORY = 2,    /* the inventory service: reserve, commit, release */
  ORDER_UPSTREAMS_,
};

/* An operation in flight (a flow): while it owns an order (order_id not
 * empty), status changes of that order wait for it. Embedded in the flow. */
typedef struct order_inflight {
  char order_id[ORDER_ID_MAX_BYTES + 1]; /* the order owned, "" = none yet */
  size_t id_len;
  struct order_inflight *prev, *next;    /* every operation in flight */
  struct order_inflight *hnext;          /* the owned ones, by order id */
  uint32_t hash;
  int owned;
  int kind;                              /* ORDER_INFLIGHT_FLOW or _SAGA */
} order_inflight_t;

enum { ORDER_INFLIGHT_FLOW = 0, ORDER_INFLIGHT_SAGA = 1 };

/* The saga driver's settings (saga_run.c reads them in configure()). */
typedef struct order_saga_settings {
  int64_t retry_max_ms;            /* cap of a retry's backoff (ORDER_SAGA_RETRY_MAX_MS) */
  int crash_at;                    /* an order_saga_crash_t: test-only fault injection */
  unsigned resume_max;             /* sagas resumed at once after a restart */
} order_saga_settings_t;

struct order_saga_resumer;         /* saga_run.c */

/* The order service's own state, svc->app. */
typedef struct order_app {
  order_inflight_t *flows;         /* operations in flight (flows and sagas) */
  size_t nflows;
  order_inflight_t **buckets;      /* the owned ones by order id: nbuckets, a power of 2 */
  size_t nbuckets, nowned;
  order_saga_settings_t saga;
  int stopping;                    /* no new saga step is sent; sagas park */
  struct order_saga_resumer *resumer;
  uint64_t sagas_started, sagas_resumed, sagas_done, sagas_cancelled;
} order_app_t;

/* What the order service sets on a context svc_main() made: app (zeroed
 * here, borrowed, outliving the context) as svc->app, and its log fields
 * ("orderId", "orderStatus"). */
void order_svc_setup(svc_t *svc, order_app_t *app);
/* A context around store and group (group may be NULL: autocommit), for
 * tests and tools: svc_init() plus order_svc_setup(). Its upstreams are set
 * by the caller (svc->upstream[ORDER_UPSTREAM_*], svc->n_upstreams). */
void order_svc_init(svc_t *svc, uv_loop_t *loop, order_store_t *store, store_group_t *group,
                    order_app_t *app);

/* Register e (its order_id "") as in flight / no longer. */
void order_inflight_add(svc_t *svc, order_inflight_t *e);
void order_inflight_remove(svc_t *svc, order_inflight_t *e);
/* From now on e owns the order id (at most ORDER_ID_MAX_BYTES, cut beyond):
 * indexed, so the lookups below are O(1). 0, or -1 on ENOMEM (the index
 * could not grow: e still owns it, found by a scan). */
int order_inflight_own(svc_t *svc, order_inflight_t *e, const char *id);
/* The operation in flight that owns the order, or NULL. */
order_inflight_t *order_inflight_find(const svc_t *svc, const char *id, size_t id_len);
/* Non-zero when an operation in flight (a create_order saga, a refund)
 * owns the order: status changes wait until it ends. */
int order_busy(const svc_t *svc, const char *id, size_t id_len);
/* Free the index (the service's teardown; the operations are gone). */
void order_inflight_free(svc_t *svc);

/* --- multi-step operations (flow.c) ------------------------------------------- */

/* Start refund_order for call; the call is answered when the flow ends
 * (possibly before this returns). data is borrowed. */
void order_flow_refund(svc_t *svc, proto_rpc_call_t *call, const json_t *data);
/* update_order_status {id, status: "cancelled"} of a paid (confirmed) order:
 * refund_order's steps on that id (refund_payment, confirmed -> cancelled
 * with cancelReason "refunded", order_status_changed), logged as
 * update_order_status. Started by the handler once order_op_update_status()
 * asked for it. */
void order_flow_cancel_paid(svc_t *svc, proto_rpc_call_t *call, const json_t *data);

/* --- the create-order saga's driver (saga_run.c) ------------------------------ */

#define ORDER_SAGA_RESUME_MAX_DEFAULT 256

/* Test-only fault injection (ORDER_SAGA_CRASH_AT): _exit(86) the first time
 * the saga reaches the boundary, as a kill -9 would. */
typedef enum {
  ORDER_SAGA_CRASH_NONE = 0,
  ORDER_SAGA_CRASH_AFTER_PENDING,       /* order + saga committed, reserve not sent */
  ORDER_SAGA_CRASH_AFTER_RESERVE,       /* reserve answered OK, nothing written */
  ORDER_SAGA_CRASH_AFTER_PAYMENT,       /* the charge answered, nothing written */
  ORDER_SAGA_CRASH_AFTER_COMMIT,        /* commit_inventory answered OK, nothing written */
  ORDER_SAGA_CRASH_DURING_COMPENSATION, /* a compensation state committed, its step not sent */
} order_saga_crash_t;

/* ORDER_SAGA_RETRY_MAX_MS, ORDER_SAGA_RESUME_MAX, ORDER_SAGA_CRASH_AT. 0 or
 * -1 (logged as config_invalid). */
int order_saga_settings_from_env(order_saga_settings_t *out);
/* create_order: validate, check the user, then run the saga; the call is
 * answered when it ends or when its deadline passes. data is borrowed. */
void order_saga_create(svc_t *svc, proto_rpc_call_t *call, const json_t *data);
/* Resume every unfinished saga in the store (at start-up), at most
 * settings.resume_max at once. 0 or -1 (logged). */
int order_saga_resume_start(svc_t *svc);
/* The service is stopping: no new step is sent; sagas park (their rows stay
 * for the next start) and the resumer stops. */
void order_saga_stop(svc_t *svc);
/* Wall-clock milliseconds since the epoch (the sagas' due times and deadlines
 * survive a restart). */
int64_t order_wall_ms(void);

/* --- RPC handlers (handlers.c) ---------------------------------------------- */

/* The synchronous operations, callable without a server (tests). */
svc_result_t order_op_get(svc_t *svc, const json_t *data);
svc_result_t order_op_list(svc_t *svc, const json_t *data);
/* The moves a client may ask for that need no other service: shipped,
 * delivered, and the cancel of an unpaid (pending) order (cancelReason
 * cancelled_by_request). confirmed and pending are refused with 409
 * STATUS_NOT_SETTABLE before any read. On success (status 200) the move is
 * written but not yet committed, and the result carries its
 * order_status_changed event: answer it with svc_answer(), which publishes
 * and replies only after the commit. A cancel of a paid (confirmed) order is
 * not made here: *refund is set to 1, the result is empty (nothing read is
 * kept, nothing written), and the caller starts order_flow_cancel_paid() on
 * the same data; otherwise *refund is 0. refund must not be NULL. */
svc_result_t order_op_update_status(svc_t *svc, const json_t *data, int *refund);
svc_result_t order_op_health(svc_t *svc);
/* get_order_saga {id}: {orderId, state, finished, inFlight, attempts,
 * reason?, updatedAt, history}; 404 ORDER_NOT_FOUND / SAGA_NOT_FOUND. */
svc_result_t order_op_get_saga(svc_t *svc, const json_t *data);

/* Register create_order, get_order, get_orders, update_order_status,
 * refund_order and health on srv, with svc as their context (set up with
 * order_svc_setup/init; borrowed, outliving the server). A reply that rests
 * on the turn's open transaction waits for its COMMIT, and a failed COMMIT
 * answers 500. 0 or a PROTO_E* code. */
int order_handlers_register(proto_rpc_server_t *srv, svc_t *svc);

#endif
