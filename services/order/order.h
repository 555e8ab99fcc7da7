/* order.h: the order service's internal API, shared by validate.c, status.c,
 * store.c, flow.c, handlers.c, main.c and the unit tests. Nothing here is
 * installed.
 *
 * Layers: validate.c turns request data into typed inputs (pure); status.c is
 * the order status machine (pure); store.c owns the SQLite database; flow.c
 * runs the multi-step operations that call other services (create_order,
 * refund_order) as explicit step tables; handlers.c glues it all to the RPC
 * server.
 *
 * Durability: every write joins the loop turn's transaction of a commit group
 * (store/commit_group.h, one fsync for all the turn's writes); what must not
 * happen before the write is durable -- the reply, an event, the next step of
 * a flow -- is deferred to after that COMMIT.
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

/* --- limits ---------------------------------------------------------------- */

#define ORDER_SERVICE_PORT_DEFAULT 3002
#define ORDER_USER_SERVICE_PORT_DEFAULT 3001
#define ORDER_PAYMENT_SERVICE_PORT_DEFAULT 3003
#define ORDER_DATA_DIR_DEFAULT "./var"
#define ORDER_DB_FILE "order.db"
#define ORDER_RPC_TIMEOUT_MS_MAX 600000u      /* largest RPC_TIMEOUT_MS accepted */
#define ORDER_EVENTS_FLUSH_MS 1000u           /* publisher flush at shutdown */
#define ORDER_HEALTH_PROBE_TIMEOUT_MS 2000u   /* --health */

#define ORDER_ITEMS_MIN 1
#define ORDER_ITEMS_MAX 100
#define ORDER_ID_MAX_BYTES 128                /* userId, order id, productId */
#define ORDER_QUANTITY_MIN 1
#define ORDER_QUANTITY_MAX 10000
#define ORDER_PRICE_MAX 1000000000            /* minor units per item (10^9) */
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

/* --- statuses (status.c) ----------------------------------------------------- */

typedef enum {
  ORDER_PENDING = 0,
  ORDER_CONFIRMED,
  ORDER_SHIPPED,
  ORDER_DELIVERED,
  ORDER_CANCELLED,
  ORDER_STATUS_COUNT_,
} order_status_t;

/* "pending", ... ; NULL for a value out of range. */
const char *order_status_name(int status);
/* The status named by s (len bytes, exact lowercase), or -1. */
int order_status_parse(const char *s, size_t len);
/* Non-zero when from -> to is a legal transition (the table in status.c). */
int order_transition_allowed(int from, int to);

/* --- validation (validate.c) ------------------------------------------------ */

#define ORDER_VERR_MAX 8                   /* field errors reported per request */
#define ORDER_VERR_KEY_MAX_BYTES 64        /* an unknown key's name is cut to this */
#define ORDER_VERR_FIELD_MAX_BYTES 96      /* "items[99]." + a cut key + NUL fits */

/* One field error. field is a path such as "items[2].price"; message is
 * static, e.g. "must be an integer from 1 to 10000". */
typedef struct order_verr {
  char field[ORDER_VERR_FIELD_MAX_BYTES];
  const char *message;
} order_verr_t;

typedef struct order_verrs {
  size_t n;                                /* errors recorded (at most ORDER_VERR_MAX) */
  order_verr_t e[ORDER_VERR_MAX];
} order_verrs_t;

/* Inputs borrow their strings from the validated json_t: keep it alive. */
typedef struct order_item_input {
  const char *product_id;
  size_t product_id_len;
  int64_t quantity;                        /* ORDER_QUANTITY_MIN..MAX */
  int64_t price;                           /* 0..ORDER_PRICE_MAX minor units */
} order_item_input_t;

typedef struct order_create_input {
  const char *user_id;
  size_t user_id_len;
  const char *payment_method;
  size_t payment_method_len;
  char currency[4];                        /* three uppercase letters + NUL */
  int64_t total;                           /* sum of quantity * price, exact */
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
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"). */
int order_validate_create(const json_t *data, order_create_input_t *out, order_verrs_t *errs);
/* get_order and refund_order: {id}. */
int order_validate_id(const json_t *data, order_id_input_t *out, order_verrs_t *errs);
int order_validate_list(const json_t *data, order_list_input_t *out, order_verrs_t *errs);
int order_validate_status(const json_t *data, order_status_input_t *out, order_verrs_t *errs);

/* *acc += quantity * price, refusing negative operands and any result above
 * ORDER_TOTAL_MAX. 0, or -1 with *acc unchanged. Exposed for tests. */
int order_total_add(int64_t *acc, int64_t quantity, int64_t price);

/* --- storage (store.c) ------------------------------------------------------ */

typedef struct order_store order_store_t;

typedef enum {
  ORDER_STORE_OK = 0,
  ORDER_STORE_NOT_FOUND = -1,      /* no such order */
  ORDER_STORE_CONFLICT = -2,       /* transition: the status was not the expected one */
  ORDER_STORE_EINVAL = -3,         /* bad argument */
  ORDER_STORE_ERROR = -4,          /* SQLite or filesystem failure, logged */
} order_store_rc_t;

/* PRAGMA synchronous values we allow (SQLite's numbering). */
typedef enum {
  ORDER_SYNC_NORMAL = 1,
  ORDER_SYNC_FULL = 2,             /* default: WAL fsync on every commit */
  ORDER_SYNC_EXTRA = 3,
} order_sync_t;

/* "NORMAL", "FULL", "EXTRA" (any case) -> the mode; -1 when unknown. */
int order_sync_parse(const char *s);

/* Create data_dir if missing, open data_dir/order.db (WAL, the given
 * synchronous mode, busy timeout), create or check the schema and prepare the
 * statements. 0 with *out set, ORDER_STORE_EINVAL or ORDER_STORE_ERROR. */
int order_store_open(const char *data_dir, order_sync_t sync, order_store_t **out);
/* Finalize statements and close the database (close its commit group
 * first). NULL is a no-op. */
void order_store_close(order_store_t *s);
/* The connection, for the commit group (borrowed). */
sqlite3 *order_store_db(order_store_t *s);

/* Writes below are atomic each. They commit with the transaction open on the
 * connection (the commit group's: order_write_begin()), or at once when none
 * is open (tools, store tests). */

/* Insert a pending order and its items (a savepoint: all or nothing, and a
 * failure undoes only this order). *order is the new order object (caller
 * owns). */
int order_store_create(order_store_t *s, const order_create_input_t *in, json_t **order);
/* *order = the order object (caller owns). ORDER_STORE_NOT_FOUND or _ERROR. */
int order_store_get(order_store_t *s, const char *id, size_t id_len, json_t **order);
/* One page of a user's orders, newest first; *orders a new array, *total
 * every order of the user. */
int order_store_list_by_user(order_store_t *s, const char *user_id, size_t user_id_len,
                             int64_t page, int64_t limit, json_t **orders, int64_t *total);
/* Atomically move the order from `from` to `to` (UPDATE ... WHERE id AND
 * status = from), setting paymentId / cancelReason when not NULL and
 * updatedAt. ORDER_STORE_CONFLICT when its status was not `from`,
 * ORDER_STORE_NOT_FOUND, ORDER_STORE_ERROR. On success *order (when order is
 * not NULL) is the updated order (caller owns). */
int order_store_transition(order_store_t *s, const char *id, size_t id_len, int from,
                           int to, const char *payment_id, const char *cancel_reason,
                           json_t **order);
/* order_store_transition() for an order object of this store in hand: from
 * is its "status"; on success the object itself is updated (status,
 * paymentId, cancelReason, updatedAt) instead of read back. Same codes. */
int order_store_move(order_store_t *s, json_t *order, int to, const char *payment_id,
                     const char *cancel_reason);
/* A cheap read of the orders table, for health checks. 0 or ORDER_STORE_ERROR. */
int order_store_ping(order_store_t *s);
/* The connection's journal_mode (into buf) and synchronous level, as in effect. */
int order_store_settings(order_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- the service context ------------------------------------------------------ */

typedef struct order_flow order_flow_t;

/* How events leave the service: proto_events_publish() on svc->pub by
 * default; tests substitute a recorder. data is stolen. Returns a PROTO_E*
 * code; PROTO_EFULL and other failures never fail a request. */
typedef int (*order_publish_fn)(void *arg, const char *pattern, json_t *data,
                                const char *request_id);

/* Everything the handlers need, passed explicitly (two services can live in
 * one process, as the tests do). Fields are borrowed: they must outlive the
 * RPC server the handlers are registered on. */
typedef struct order_svc {
  order_store_t *store;
  store_group_t *group;            /* group commit on the store's connection */
  proto_rpc_client_t *user;        /* the user service */
  proto_rpc_client_t *payment;     /* the payment service */
  proto_events_pub_t *pub;         /* may be NULL: events are not sent */
  unsigned rpc_timeout_ms;         /* per upstream call, within the caller's budget */
  order_publish_fn publish;        /* see order_publish_fn */
  void *publish_arg;
  order_flow_t *flows;             /* operations in flight; their orders are busy */
  size_t nflows;
} order_svc_t;

/* Fill svc; publish goes to pub (when not NULL). group is on store's db. */
void order_svc_init(order_svc_t *svc, order_store_t *store, store_group_t *group,
                    proto_rpc_client_t *user, proto_rpc_client_t *payment,
                    proto_events_pub_t *pub, unsigned rpc_timeout_ms);

/* Call before a write: joins (or opens) the loop turn's transaction. 0, or
 * -1 (logged): do not write, answer 500 STORAGE_ERROR. */
int order_write_begin(order_svc_t *svc);

/* Publish through svc->publish, logging a failure (never fatal). */
void order_publish(order_svc_t *svc, const char *pattern, json_t *data,
                   const char *request_id);

/* --- results -------------------------------------------------------------------- */

/* The outcome of one request, independent of the transport: either response
 * (status 200) or err (an error object, status = its statusCode). */
typedef struct order_result {
  int status;
  const char *code;                /* "OK" or the error code: static, or owned by err */
  json_t *response;                /* owned, or NULL */
  json_t *err;                     /* owned, or NULL */
} order_result_t;

order_result_t order_result_ok(json_t *response);
order_result_t order_result_err(int status, const char *code, const char *message);
order_result_t order_result_invalid(const order_verrs_t *errs);
/* {"statusCode":400,"code":"VALIDATION_FAILED","message":...,"details":[...]}. */
json_t *order_validation_error(const order_verrs_t *errs);

/* --- multi-step operations (flow.c) ------------------------------------------- */

/* Non-zero when an operation in flight (create_order charging it, a refund)
 * owns the order: status changes wait until it ends. */
int order_busy(const order_svc_t *svc, const char *id, size_t id_len);

/* Start create_order / refund_order for call; the call is answered when the
 * flow ends (possibly before these return). data is borrowed. */
void order_flow_create(order_svc_t *svc, proto_rpc_call_t *call, const json_t *data);
void order_flow_refund(order_svc_t *svc, proto_rpc_call_t *call, const json_t *data);

/* --- RPC handlers (handlers.c) ---------------------------------------------- */

/* The synchronous operations, callable without a server (tests). */
order_result_t order_op_get(order_svc_t *svc, const json_t *data);
order_result_t order_op_list(order_svc_t *svc, const json_t *data);
/* On success (status 200) the move is written but not yet committed: the
 * caller answers, and publishes *event (order_status_changed data, owned,
 * NULL when out of memory), only after the commit, as on_update_order_status
 * does. */
order_result_t order_op_update_status(order_svc_t *svc, const json_t *data, json_t **event);
order_result_t order_op_health(order_svc_t *svc);

/* Answer call with r (consumed) and log one line for the request. */
void order_answer(proto_rpc_call_t *call, const char *pattern, order_result_t r,
                  uint64_t start_ns);
/* Log one line for a request (before answering: the id belongs to the call). */
void order_log_request(const char *request_id, const char *pattern, const order_result_t *r,
                       const char *order_id, uint64_t start_ns);

/* Register create_order, get_order, get_orders, update_order_status,
 * refund_order and health on srv. 0 or a PROTO_E* code. */
int order_handlers_register(proto_rpc_server_t *srv, order_svc_t *svc);

#endif
