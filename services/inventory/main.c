/* main.c: the inventory-service daemon, as libsvc's skeleton runs it
 * (svc/daemon.h): products, stock and reservations over NestJS TCP framing,
 * in SQLite, with a sweeper that releases reservations past their TTL.
 */
#include "inventory.h"

#include "svc/daemon.h"

/* The service's state lives as long as the process: the sweep timer is
 * closed by the stop hook and the loop runs it to the end before main
 * returns. */
static inventory_app_t inventory_app;

static int start(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv) {
  (void)cfg;
  inventory_app.now_ms = inventory_clock_wall_ms;
  inventory_app.now_arg = NULL;
  svc->app = &inventory_app;
  (void)srv; /* svc_main() registers the handlers once start() returns */
  if (inventory_settings_from_env(&inventory_app) != 0)
    return -1;
  return inventory_sweeper_start(svc);
}

/* Stop taking new work: no sweep may begin a transaction after this. */
static void stopping(svc_t *svc) {
  inventory_sweeper_stop(svc);
}

static const svc_def_t inventory_def = {
    .name = "inventory",
    .about = "The inventory service: create_product, get_product, get_products, restock,\n"
             "reserve_inventory, release_inventory, commit_inventory and health requests\n"
             "over the NestJS TCP transport. Products and reservations are kept in SQLite at\n"
             "$DATA_DIR/" INVENTORY_DB_FILE "; a reservation neither committed nor released\n"
             "within its TTL is released by the service. Logs are JSON lines on stdout.\n"
             "SIGTERM or SIGINT stops gracefully (in-flight requests are answered) with exit\n"
             "status 0.\n",
    .port_env = "INVENTORY_SERVICE_PORT",
    .port_default = INVENTORY_SERVICE_PORT_DEFAULT,
    .db_file = INVENTORY_DB_FILE,
    .env_usage =
        "  INVENTORY_RESERVATION_TTL_S      a reservation not committed or released within\n"
        "                                   this many seconds is released (1..2592000,\n"
        "                                   default 900)\n"
        "  INVENTORY_SWEEP_INTERVAL_MS      how often expired reservations are looked for\n"
        "                                   (10..3600000, default 5000)\n",
    .store = &inventory_store_schema,
    .setup = inventory_svc_setup,
    .start = start,
    .handlers_register = inventory_handlers_register,
    .stopping = stopping,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &inventory_def);
}
