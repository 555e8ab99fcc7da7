/* main.c: the payment-service daemon, as libsvc's skeleton runs it
 * (svc/daemon.h): the payment patterns over NestJS TCP framing, payments in
 * SQLite, their events on Redis (queued events get a brief flush at a stop).
 */
#include "payment.h"

#include "svc/daemon.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const svc_def_t payment_def = {
    .name = "payment",
    .about =
        "The payment service: process_payment, refund_payment, get_payment,\n"
        "get_payment_by_order and health requests over the NestJS TCP transport.\n"
        "Payments are kept in SQLite at $DATA_DIR/" PAYMENT_DB_FILE ", one per orderId\n"
        "(process_payment and refund_payment are idempotent; with\n"
        "SQLITE_SYNCHRONOUS=NORMAL a payment lost on power loss would be charged\n"
        "again on retry). refund_payment {orderId, voidIfMissing:true} of an order\n"
        "with no payment voids it: its late process_payment is declined\n"
        "(order_voided), nothing charged. The events payment_completed,\n"
        "payment_failed and payment_refunded are written to an outbox table in the\n"
        "payment's own transaction and published on Redis from there (at least\n"
        "once, also across a crash or a Redis outage: subscribers de-duplicate by\n"
        "metadata.eventId).\n"
        "Amounts are integer minor units\n"
        "(0.." STR(PAYMENT_AMOUNT_MAX) ") with a 3-letter currency (default "
        PAYMENT_CURRENCY_DEFAULT ").\n"
        "Payment methods (test tokens): tok_visa succeeds; tok_chargeDeclined is\n"
        "declined (card_declined); tok_insufficientFunds is declined\n"
        "(insufficient_funds). Logs are JSON lines on stdout. SIGTERM or SIGINT stops\n"
        "gracefully (in-flight requests are answered) with exit status 0.\n",
    .port_env = "PAYMENT_SERVICE_PORT",
    .port_default = PAYMENT_SERVICE_PORT_DEFAULT,
    .db_file = PAYMENT_DB_FILE,
    .flags = SVC_OUTBOX, /* SVC_PUBLISHER, events through the outbox */
    .redis_name = "payment-events",
    .events_flush_ms = PAYMENT_EVENTS_FLUSH_TIMEOUT_MS,
    .store = &payment_store_schema,
    .setup = payment_svc_setup, /* svc->app stays NULL: the test processor */
    .handlers_register = payment_handlers_register,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &payment_def);
}
