/* main.c: the order-service daemon, as libsvc's skeleton runs it
 * (svc/daemon.h): the order patterns over NestJS TCP framing, orders and
 * their sagas in SQLite, the user, payment and inventory services upstream,
 * events to Redis through the outbox.
 */
#include "order.h"

#include "svc/daemon.h"

static order_app_t order_app; /* the service's own state: flows and sagas in flight */

static int configure(void) {
  return order_saga_settings_from_env(&order_app.saga);
}

static int start(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv) {
  (void)cfg;
  (void)srv;
  order_svc_setup(svc, &order_app);
  /* Before the server takes requests: the sagas a crash left go on first. */
  return order_saga_resume_start(svc);
}

static void stopping(svc_t *svc) {
  order_saga_stop(svc);
}

static void finish(svc_t *svc) {
  order_inflight_free(svc);
}

/* In svc->upstream[] order: ORDER_UPSTREAM_USER, _PAYMENT, _INVENTORY. */
static const svc_upstream_def_t order_upstreams[ORDER_UPSTREAMS_] = {
    [ORDER_UPSTREAM_USER] = {"user", "USER", ORDER_USER_SERVICE_PORT_DEFAULT},
    [ORDER_UPSTREAM_PAYMENT] = {"payment", "PAYMENT", ORDER_PAYMENT_SERVICE_PORT_DEFAULT},
    [ORDER_UPSTREAM_INVENTORY] = {"inventory", "INVENTORY", ORDER_INVENTORY_SERVICE_PORT_DEFAULT},
};

static const svc_def_t order_def = {
    .name = "order",
    .about =
        "The order service: create_order, get_order, get_order_saga, get_orders,\n"
        "update_order_status, refund_order and health requests over the NestJS TCP\n"
        "transport. create_order checks the user with the user service and runs a durable\n"
        "saga: reserve the items with the inventory service (which prices them), charge\n"
        "the payment service, commit the stock, confirm; on a failure it refunds,\n"
        "releases and cancels. Each saga state is written before its step is sent, and\n"
        "the sagas a crash interrupted are resumed at start. Orders and sagas are kept\n"
        "in SQLite at $DATA_DIR/" ORDER_DB_FILE "; the order_created, order_completed,\n"
        "order_failed and order_status_changed events go to Redis through an outbox\n"
        "table. Logs are JSON lines on stdout. SIGTERM or SIGINT stops gracefully (a\n"
        "saga finishes the step in flight and resumes at the next start) with exit\n"
        "status 0.\n",
    .port_env = "ORDER_SERVICE_PORT",
    .port_default = ORDER_SERVICE_PORT_DEFAULT,
    .db_file = ORDER_DB_FILE,
    .flags = SVC_OUTBOX,
    .redis_name = "events-pub",
    .upstreams = order_upstreams,
    .n_upstreams = ORDER_UPSTREAMS_,
    .env_usage =
        "  ORDER_SAGA_RETRY_MAX_MS  cap of a saga step's retry backoff (100..3600000,\n"
        "                           default 30000; retries start at 100 ms, doubling)\n"
        "  ORDER_SAGA_RESUME_MAX    sagas resumed at once after a restart (1..100000,\n"
        "                           default 256)\n"
        "  ORDER_SAGA_CRASH_AT      tests only: _exit(86) at a saga boundary (none,\n"
        "                           after_pending, after_reserve, after_payment,\n"
        "                           after_commit, during_compensation; default none)\n",
    .store = &order_store_schema,
    .configure = configure,
    .start = start,
    .handlers_register = order_handlers_register,
    .stopping = stopping,
    .finish = finish,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &order_def);
}
