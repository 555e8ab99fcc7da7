/* payment.h: the payment service's internal API, shared by validate.c,
 * processor.c, store.c, handlers.c, main.c and the unit tests. Nothing here is
 * installed.
 *
 * Layers: validate.c turns request data into typed inputs (pure, no I/O);
 * processor.c is the card processor (deterministic test methods); store.c owns
 * the SQLite database and the idempotency rule (one payment per orderId);
 * handlers.c glues them to the RPC server and the Redis event publisher.
 */
#ifndef PAYMENT_H
#define PAYMENT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "proto/events.h"
#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define PAYMENT_SERVICE_PORT_DEFAULT 3003
#define PAYMENT_DATA_DIR_DEFAULT "./var"
#define PAYMENT_DB_FILE "payment.db"
#define PAYMENT_HEALTH_PROBE_TIMEOUT_MS 2000u
#define PAYMENT_EVENTS_FLUSH_TIMEOUT_MS 2000u  /* queued events sent at SIGTERM */

/* Largest amount in minor units: an order of 100 lines x 10000 units x 10^9
 * cents per unit. Far below 2^53 (exact in a JavaScript number and a double)
 * and INT64_MAX. No suffix: the help text and messages print it. */
#define PAYMENT_AMOUNT_MAX 1000000000000000
#define PAYMENT_ID_MAX_BYTES 128          /* orderId, userId, id: ours are ~40 */
#define PAYMENT_CURRENCY_LEN 3            /* ISO 4217 alphabetic code */
#define PAYMENT_CURRENCY_DEFAULT "USD"
#define PAYMENT_ID_PREFIX "pay_"

/* --- validation (validate.c) ------------------------------------------------ */

/* Field errors: the shared list of libvalid (at most VALID_VERR_MAX; an
 * unknown field's name is cut to VALID_VERR_FIELD_MAX_BYTES). */
#define PAYMENT_VERR_MAX VALID_VERR_MAX
#define PAYMENT_VERR_FIELD_MAX_BYTES VALID_VERR_FIELD_MAX_BYTES
typedef valid_verr_t payment_verr_t;
typedef valid_verrs_t payment_verrs_t;

/* process_payment. Strings borrow from the validated json_t: keep it alive. */
typedef struct payment_process_input {
  const char *order_id;
  size_t order_id_len;
  const char *user_id;
  size_t user_id_len;
  int64_t amount;                        /* minor units, 0..PAYMENT_AMOUNT_MAX */
  char currency[PAYMENT_CURRENCY_LEN + 1];
  const char *method;                    /* a known test method (processor.c) */
  size_t method_len;
} payment_process_input_t;

/* get_payment {id}, get_payment_by_order / refund_payment {orderId}. */
typedef struct payment_key_input {
  const char *value;
  size_t len;
} payment_key_input_t;

/* Each validator returns 0 with *out filled, or -1 with the reasons in *errs
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"). */
int payment_validate_process(const json_t *data, payment_process_input_t *out,
                             payment_verrs_t *errs);
int payment_validate_get(const json_t *data, payment_key_input_t *out, payment_verrs_t *errs);
/* get_payment_by_order and refund_payment. */
int payment_validate_order_key(const json_t *data, payment_key_input_t *out,
                               payment_verrs_t *errs);

/* Building blocks, exposed for tests: NULL when valid, else the static reason. */
const char *payment_validate_currency(const char *s, size_t len);
const char *payment_validate_amount(const json_t *v, int64_t *out);

/* --- the card processor (processor.c) ------------------------------------------ */

typedef enum {
  PAYMENT_SUCCEEDED = 0,
  PAYMENT_DECLINED = 1,
  PAYMENT_REFUNDED = 2,
} payment_status_t;

/* "succeeded", "declined", "refunded". */
const char *payment_status_name(payment_status_t st);

/* What the processor says about one charge; reason is static, NULL on success. */
typedef struct payment_charge {
  payment_status_t status;               /* PAYMENT_SUCCEEDED or PAYMENT_DECLINED */
  const char *reason;
} payment_charge_t;

/* Charge in->amount in->currency to in->method. The store calls it at most
 * once per orderId (tests pass a counting one). */
typedef payment_charge_t (*payment_charge_fn)(const payment_process_input_t *in, void *arg);

/* Non-zero when method is one of the test methods below. */
int payment_method_known(const char *method, size_t len);
/* The list of known methods, ", "-separated, for messages and --help. */
#define PAYMENT_METHODS_TEXT "tok_visa, tok_chargeDeclined, tok_insufficientFunds"
/* The processor: tok_visa succeeds; tok_chargeDeclined is declined with
 * "card_declined"; tok_insufficientFunds with "insufficient_funds". An unknown
 * method (validation lets none through) is declined "unsupported_method".
 * arg is unused. */
payment_charge_t payment_processor_charge(const payment_process_input_t *in, void *arg);

/* --- storage (store.c) ------------------------------------------------------ */

typedef struct payment_store payment_store_t;

typedef enum {
  PAYMENT_STORE_OK = 0,
  PAYMENT_STORE_NOT_FOUND = -1,          /* no such payment */
  PAYMENT_STORE_MISMATCH = -2,           /* orderId paid with other user/amount/currency */
  PAYMENT_STORE_NOT_REFUNDABLE = -3,     /* refund of a declined payment */
  PAYMENT_STORE_EINVAL = -4,             /* bad argument (e.g. unknown sync mode) */
  PAYMENT_STORE_ERROR = -5,              /* SQLite or filesystem failure, logged */
} payment_store_rc_t;

/* Which fields of a retry differ from the recorded payment (bit mask). */
#define PAYMENT_MISMATCH_USER 1u
#define PAYMENT_MISMATCH_AMOUNT 2u
#define PAYMENT_MISMATCH_CURRENCY 4u

/* PRAGMA synchronous values we allow (SQLite's numbering). */
typedef enum {
  PAYMENT_SYNC_NORMAL = 1,
  PAYMENT_SYNC_FULL = 2,                 /* default: WAL fsync on every commit */
  PAYMENT_SYNC_EXTRA = 3,
} payment_sync_t;

/* "NORMAL", "FULL", "EXTRA" (any case) -> the mode; -1 when unknown. */
int payment_sync_parse(const char *s);

/* Create data_dir if missing, open data_dir/payment.db (WAL, the given
 * synchronous mode, busy timeout), create or check the schema and prepare the
 * statements. 0 with *out set, PAYMENT_STORE_EINVAL or PAYMENT_STORE_ERROR
 * (logged). */
int payment_store_open(const char *data_dir, payment_sync_t sync, payment_store_t **out);
/* Finalize statements and close the database. NULL is a no-op. Close the
 * commit group (if any) first. */
void payment_store_close(payment_store_t *s);

/* The connection, for store_group_new() where the store is opened. */
sqlite3 *payment_store_db(payment_store_t *s);

/* Write through group g (borrowed; NULL: every write is its own autocommit
 * transaction, as in tools and the synchronous unit tests). With a group,
 * process and refund start with store_group_begin() and their writes are
 * durable only after the group's COMMIT at the end of the loop turn: the
 * caller must defer whatever announces them (reply, event) with
 * store_group_defer(). Reads on the connection see the open transaction. */
void payment_store_set_group(payment_store_t *s, store_group_t *g);
store_group_t *payment_store_group(const payment_store_t *s);

/* Process a payment idempotently per orderId. If a payment for in->order_id
 * exists (committed, or written earlier in the group's open transaction): when
 * user, amount and currency match it is returned unchanged (*created = 0,
 * charge is not called); otherwise PAYMENT_STORE_MISMATCH with the differing
 * fields in *mismatch. If none exists: the write transaction is opened (with a
 * group), charge(in, arg) is called once and its outcome inserted
 * (*created = 1); without a group the INSERT has committed on return, with one
 * it commits at the end of the turn. *payment is the payment object (caller
 * owns) on PAYMENT_STORE_OK, NULL otherwise; it equals what a later read of the
 * row returns. in must be validated already. */
int payment_store_process(payment_store_t *s, const payment_process_input_t *in,
                          payment_charge_fn charge, void *arg, json_t **payment,
                          int *created, unsigned *mismatch);

/* Refund the payment of an order: succeeded -> refunded (*changed = 1,
 * written as process is), refunded -> unchanged (*changed = 0). PAYMENT_STORE_NOT_FOUND,
 * PAYMENT_STORE_NOT_REFUNDABLE (declined) or PAYMENT_STORE_ERROR; *payment as
 * in payment_store_process. */
int payment_store_refund(payment_store_t *s, const char *order_id, size_t len,
                         json_t **payment, int *changed);

/* *payment = the payment object (caller owns). _NOT_FOUND or _ERROR. */
int payment_store_get(payment_store_t *s, const char *id, size_t len, json_t **payment);
int payment_store_get_by_order(payment_store_t *s, const char *order_id, size_t len,
                               json_t **payment);
/* A cheap read of the payments table, for health checks. 0 or _ERROR. */
int payment_store_ping(payment_store_t *s);
/* The connection's journal_mode (e.g. "wal", into buf) and synchronous level,
 * read back from SQLite: what is in effect, not what was asked. */
int payment_store_settings(payment_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- operations and RPC handlers (handlers.c) ----------------------------------- */

/* What the handlers share. Borrowed: both must outlive the server. pub may be
 * NULL (no events: unit tests); charge NULL means payment_processor_charge.
 * When the store has a commit group (payment_store_set_group), the RPC
 * handlers answer and publish only after the COMMIT of the turn's
 * transaction: 500 STORAGE_ERROR and no event when it fails. */
typedef struct payment_ctx {
  payment_store_t *store;
  proto_events_pub_t *pub;
  payment_charge_fn charge;
  void *charge_arg;
} payment_ctx_t;

/* Register process_payment, refund_payment, get_payment, get_payment_by_order
 * and health on srv. 0 or a PROTO_E* code. */
int payment_handlers_register(proto_rpc_server_t *srv, payment_ctx_t *ctx);

/* The outcome of one request, independent of the transport: either response
 * (status 200) or err (an error object, status = its statusCode), plus the
 * event the request caused, to publish after the reply's data is committed. */
typedef struct payment_result {
  int status;
  const char *code;                      /* static: "OK" or the error code */
  json_t *response;                      /* owned, or NULL */
  json_t *err;                           /* owned, or NULL */
  const char *event;                     /* static event pattern, or NULL */
  json_t *event_data;                    /* owned, NULL when event is NULL */
  int replayed;                          /* answered from an earlier outcome (retry) */
} payment_result_t;

/* The operations behind the handlers, callable without a server (tests).
 * With a group on the store, a result of process/refund/get* may rest on the
 * open transaction: it must not leave the process before the commit (the RPC
 * glue defers it). */
payment_result_t payment_op_process(payment_ctx_t *ctx, const json_t *data);
payment_result_t payment_op_refund(payment_ctx_t *ctx, const json_t *data);
payment_result_t payment_op_get(payment_ctx_t *ctx, const json_t *data);
payment_result_t payment_op_get_by_order(payment_ctx_t *ctx, const json_t *data);
payment_result_t payment_op_health(payment_ctx_t *ctx);
/* Release what a result owns. */
void payment_result_free(payment_result_t *r);

/* {"statusCode":400,"code":"VALIDATION_FAILED","message":...,"details":[...]}
 * from errs. NULL on ENOMEM. */
json_t *payment_validation_error(const payment_verrs_t *errs);

#endif
