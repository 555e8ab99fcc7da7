/* payment.h: the payment service's internal API, shared by validate.c,
 * processor.c, store.c, handlers.c, main.c and the unit tests. Nothing here is
 * installed.
 *
 * Layers: validate.c turns request data into typed inputs (pure, no I/O);
 * processor.c is the card processor (deterministic test methods); store.c owns
 * the SQLite database and the idempotency rule (one payment per orderId);
 * handlers.c glues them to libsvc (svc/ headers): the service context, answering
 * after the commit and publishing the events.
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
#include "store/conn.h"
#include "store/db.h"
#include "svc/result.h"
#include "svc/service.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define PAYMENT_SERVICE_PORT_DEFAULT 3003
#define PAYMENT_DB_FILE "payment.db"
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

/* refund_payment {orderId, voidIfMissing?}. order_id borrows from the json_t. */
typedef struct payment_refund_input {
  const char *order_id;
  size_t order_id_len;
  int void_if_missing;                   /* 1: no payment yet -> record a void */
} payment_refund_input_t;

/* Each validator returns 0 with *out filled, or -1 with the reasons in *errs
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"). */
int payment_validate_process(const json_t *data, payment_process_input_t *out,
                             payment_verrs_t *errs);
int payment_validate_get(const json_t *data, payment_key_input_t *out, payment_verrs_t *errs);
/* get_payment_by_order. */
int payment_validate_order_key(const json_t *data, payment_key_input_t *out,
                               payment_verrs_t *errs);
/* refund_payment: orderId as above; voidIfMissing a boolean, absent or null
 * meaning false. */
int payment_validate_refund(const json_t *data, payment_refund_input_t *out,
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

/* The reason of the declined payment recorded for a charge of a voided
 * order (payment_store_void): the processor is not called. */
#define PAYMENT_REASON_ORDER_VOIDED "order_voided"

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

/* The store described once (store/conn.h); svc_def_t.store opens it. */
extern const store_schema_t payment_store_schema;

/* Return codes: STORE_OK, STORE_EINVAL, STORE_ERROR (store/db.h), and: */
enum {
  PAYMENT_STORE_NOT_FOUND = STORE_RC_SERVICE,          /* no such payment */
  PAYMENT_STORE_MISMATCH = STORE_RC_SERVICE - 1,       /* orderId paid with other
                                                        * user/amount/currency */
  PAYMENT_STORE_NOT_REFUNDABLE = STORE_RC_SERVICE - 2, /* refund of a declined payment */
};

/* Which fields of a retry differ from the recorded payment (bit mask). */
#define PAYMENT_MISMATCH_USER 1u
#define PAYMENT_MISMATCH_AMOUNT 2u
#define PAYMENT_MISMATCH_CURRENCY 4u

/* Create data_dir if missing, open data_dir/payment.db (WAL, synchronous =
 * sync, a STORE_SYNC_* level; busy timeout), create or check the schema and
 * prepare the statements. 0 with *out set, STORE_EINVAL or STORE_ERROR
 * (logged). */
int payment_store_open(const char *data_dir, int sync, payment_store_t **out);
/* Finalize statements and close the database. NULL is a no-op. Close the
 * commit group (if any) first. */
void payment_store_close(payment_store_t *s);

/* The connection, for store_group_new() where the store is opened. */
sqlite3 *payment_store_db(payment_store_t *s);

/* Writes (insert, process, refund) join the transaction open on the
 * connection (the service's commit group: svc_write_begin() first; they are
 * then durable only after the group's COMMIT at the end of the loop turn, and
 * whatever announces them waits for it), or autocommit, each durable on its
 * own, when none is open (tools, the synchronous unit tests). Reads on the
 * connection see the open transaction. */

/* The recorded payment of in->order_id (committed, or written earlier in the
 * open transaction). STORE_OK with *payment (caller owns) when user, amount
 * and currency match it; PAYMENT_STORE_MISMATCH with the differing fields in
 * *mismatch; PAYMENT_STORE_NOT_FOUND when the order has none; STORE_ERROR. A
 * read: it opens no transaction. */
int payment_store_find(payment_store_t *s, const payment_process_input_t *in,
                       json_t **payment, unsigned *mismatch);

/* The order has no payment yet (payment_store_find() said so, in this loop
 * turn, and the write transaction is open when there is one): charge(in, arg)
 * once and insert its outcome (*created = 1); when the order was voided
 * (payment_store_void) charge is not called and the outcome is declined with
 * reason PAYMENT_REASON_ORDER_VOIDED. When another process recorded
 * the order in between (the UNIQUE index refuses ours), its payment answers
 * as payment_store_find() would (*created = 0). *payment is the payment
 * object (caller owns) on STORE_OK, NULL otherwise; it equals what a later
 * read of the row returns. in must be validated already. */
int payment_store_insert(payment_store_t *s, const payment_process_input_t *in,
                         payment_charge_fn charge, void *arg, json_t **payment,
                         int *created, unsigned *mismatch);

/* Process a payment idempotently per orderId: payment_store_find(), and
 * when the order has none, payment_store_insert(). For callers with no
 * transaction to open in between (tools, tests); the service opens it
 * between the two, so that a retry opens none and nothing is charged when it
 * cannot be opened. */
int payment_store_process(payment_store_t *s, const payment_process_input_t *in,
                          payment_charge_fn charge, void *arg, json_t **payment,
                          int *created, unsigned *mismatch);

/* Refund the payment of an order: succeeded -> refunded (*changed = 1),
 * refunded -> unchanged (*changed = 0). PAYMENT_STORE_NOT_FOUND,
 * PAYMENT_STORE_NOT_REFUNDABLE (declined) or STORE_ERROR; *payment as in
 * payment_store_insert. */
int payment_store_refund(payment_store_t *s, const char *order_id, size_t len,
                         json_t **payment, int *changed);

/* Void an order that has no payment (payment_store_refund() said
 * PAYMENT_STORE_NOT_FOUND in this loop turn, in the write transaction when
 * there is one): a later payment_store_insert() of it charges nothing.
 * Idempotent: STORE_OK with *voided = {orderId, status "voided", voidedAt}
 * (caller owns; the same object every time, voidedAt the first void's) and
 * *created = 1 when this call recorded it, 0 when it was already void.
 * STORE_EINVAL (no order id) or STORE_ERROR. A void stays when the payment
 * arrives; the declined payment answers from then on. */
int payment_store_void(payment_store_t *s, const char *order_id, size_t len, json_t **voided,
                       int *created);

/* *payment = the payment object (caller owns). PAYMENT_STORE_NOT_FOUND or
 * STORE_ERROR. */
int payment_store_get(payment_store_t *s, const char *id, size_t len, json_t **payment);
int payment_store_get_by_order(payment_store_t *s, const char *order_id, size_t len,
                               json_t **payment);
/* A cheap read of the payments table, for health checks. 0 or STORE_ERROR. */
int payment_store_ping(payment_store_t *s);
/* The connection's journal_mode (e.g. "wal", into buf) and synchronous level,
 * read back from SQLite: what is in effect, not what was asked. */
int payment_store_settings(payment_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- operations and RPC handlers (handlers.c) ----------------------------------- */

/* The payment service's own state (svc->app): the card processor. A context
 * with no app (svc->app NULL), or charge NULL, uses payment_processor_charge. */
typedef struct payment_app {
  payment_charge_fn charge;
  void *charge_arg;
} payment_app_t;

/* Register process_payment, refund_payment, get_payment, get_payment_by_order
 * and health on srv, with svc as their context (svc->store a payment_store_t,
 * borrowed, outliving the server; svc->pub publishes the events, NULL: none).
 * A reply that rests on the turn's open transaction (a new payment or refund,
 * a replay, a 409 or a read that saw an uncommitted row) and its event wait
 * for its COMMIT; a failed COMMIT answers 500 STORAGE_ERROR with no event.
 * 0 or a PROTO_E* code. */
int payment_handlers_register(proto_rpc_server_t *srv, svc_t *svc);

/* What the payment service sets on a context svc_main() made: its log keys
 * (paymentId, orderId, paymentStatus, reason). */
void payment_svc_setup(svc_t *svc);
/* A context around store and group (group may be NULL: autocommit) with app
 * as svc->app (may be NULL), for tests and tools: svc_init() plus
 * payment_svc_setup(). */
void payment_svc_init(svc_t *svc, uv_loop_t *loop, payment_store_t *store,
                      store_group_t *group, payment_app_t *app);

/* The operations behind the handlers, callable without a server (tests).
 * With a group, a result of process/refund/get* may rest on the open
 * transaction: it must not leave the process before the commit (svc_answer()
 * defers it). */
svc_result_t payment_op_process(svc_t *svc, const json_t *data);
svc_result_t payment_op_refund(svc_t *svc, const json_t *data);
svc_result_t payment_op_get(svc_t *svc, const json_t *data);
svc_result_t payment_op_get_by_order(svc_t *svc, const json_t *data);
svc_result_t payment_op_health(svc_t *svc);

#endif
