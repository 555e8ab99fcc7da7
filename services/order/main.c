/* main.c: the order-service daemon, as libsvc's skeleton runs it
 * (svc/daemon.h): the order patterns over NestJS TCP framing, orders in
 * SQLite, the user and payment services upstream, events to Redis.
 */
#include "order.h"

#include "svc/daemon.h"

static order_app_t order_app; /* the service's own state: the flows in flight */

static int start(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv) {
  (void)cfg;
  (void)srv;
  order_svc_setup(svc, &order_app);
  return 0;
}

/* In svc->upstream[] order: ORDER_UPSTREAM_USER, ORDER_UPSTREAM_PAYMENT. */
static const svc_upstream_def_t order_upstreams[ORDER_UPSTREAMS_] = {
    [ORDER_UPSTREAM_USER] = {"user", "USER", ORDER_USER_SERVICE_PORT_DEFAULT},
    [ORDER_UPSTREAM_PAYMENT] = {"payment", "PAYMENT", ORDER_PAYMENT_SERVICE_PORT_DEFAULT},
};

static const svc_def_t order_def = {
    .name = "order",
    .about = "The order service: create_order, get_order, get_orders, update_order_status,\n"
             "refund_order and health requests over the NestJS TCP transport. create_order\n"
             "checks the user with the user service, stores the order, and charges it with the\n"
             "payment service. Orders are kept in SQLite at $DATA_DIR/" ORDER_DB_FILE "; the\n"
             "order_created and order_status_changed events go to Redis. Logs are JSON lines\n"
             "on stdout. SIGTERM or SIGINT stops gracefully (orders in flight are finished)\n"
             "with exit status 0.\n",
    .port_env = "ORDER_SERVICE_PORT",
    .port_default = ORDER_SERVICE_PORT_DEFAULT,
    .db_file = ORDER_DB_FILE,
    /* update_order_status's event through the outbox (svc_answer); the
     * create/refund flows (flow.c) still publish after their commit. */
    .flags = SVC_OUTBOX,
    .redis_name = "events-pub",
    .upstreams = order_upstreams,
    .n_upstreams = ORDER_UPSTREAMS_,
    .store = &order_store_schema,
    .start = start,
    .handlers_register = order_handlers_register,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &order_def);
}
