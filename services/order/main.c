/* main.c: the order-service daemon: reads its configuration, opens the store,
 * connects to the user and payment services and to Redis, serves the order
 * patterns over NestJS TCP framing, and on SIGTERM/SIGINT drains in-flight
 * orders, closes the clients, flushes events briefly, closes the database and
 * exits 0.
 */
#include "order.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/log.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage[] =
    "Usage: order-service [--help] [--version] [--health]\n"
    "\n"
    "The order service: create_order, get_order, get_orders, update_order_status,\n"
    "refund_order and health requests over the NestJS TCP transport. create_order\n"
    "checks the user with the user service, stores the order, and charges it with the\n"
    "payment service. Orders are kept in SQLite at $DATA_DIR/" ORDER_DB_FILE "; the\n"
    "order_created and order_status_changed events go to Redis. Logs are JSON lines\n"
    "on stdout. SIGTERM or SIGINT stops gracefully (orders in flight are finished)\n"
    "with exit status 0.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show the version and exit\n"
    "  --health       ask the running service (127.0.0.1:$ORDER_SERVICE_PORT) for its\n"
    "                 health; exit 0 when it answers \"ok\" within 2 s, else 1\n"
    "\n"
    "Environment:\n"
    "  LISTEN_HOST                      IP address to bind (default 127.0.0.1)\n"
    "  ORDER_SERVICE_PORT               TCP port (default " STR(ORDER_SERVICE_PORT_DEFAULT)
    "; 0 = ephemeral,\n"
    "                                   announced in the \"listening\" log line)\n"
    "  DATA_DIR                         directory of the database, created if missing\n"
    "                                   (default " ORDER_DATA_DIR_DEFAULT ")\n"
    "  SQLITE_SYNCHRONOUS               NORMAL, FULL or EXTRA (default FULL: every\n"
    "                                   acknowledged write is fsynced)\n"
    "  USER_SERVICE_HOST                user service address (default 127.0.0.1)\n"
    "  USER_SERVICE_PORT                user service port (default "
    STR(ORDER_USER_SERVICE_PORT_DEFAULT) ")\n"
    "  PAYMENT_SERVICE_HOST             payment service address (default 127.0.0.1)\n"
    "  PAYMENT_SERVICE_PORT             payment service port (default "
    STR(ORDER_PAYMENT_SERVICE_PORT_DEFAULT) ")\n"
    "  RPC_TIMEOUT_MS                   deadline of each call to another service, within\n"
    "                                   the caller's own budget (default 5000)\n"
    "  REDIS_HOST                       Redis for events (default 127.0.0.1)\n"
    "  REDIS_PORT                       (default 6379)\n"
    "  REDIS_PASSWORD                   AUTH password (default: none)\n"
    "  EVENTS_QUEUE_MAX                 events kept while Redis is away (default 10000)\n"
    "  LOG_LEVEL                        debug, info, warn or error (default info)\n"
    "  RPC_MAX_FRAME_BYTES              largest accepted frame (default 1048576)\n"
    "  RPC_INCOMPLETE_FRAME_TIMEOUT_MS  close a connection whose partial frame makes\n"
    "                                   no progress for this long (default 30000)\n";

typedef struct config {
  const char *host;
  int port;
  const char *data_dir;
  int sync;
  const char *user_host;
  int user_port;
  const char *payment_host;
  int payment_port;
  uint64_t rpc_timeout_ms;
  proto_redis_opts_t redis;
  proto_rpc_server_opts_t server;
} config_t;

typedef struct app {
  uv_loop_t loop;
  proto_daemon_t daemon;
  proto_rpc_server_t *srv;         /* NULL once shut down */
  proto_rpc_client_t *user;        /* NULL once closed */
  proto_rpc_client_t *payment;
  proto_events_pub_t *pub;         /* NULL once its close has been started */
  order_store_t *store;
  store_group_t *group;            /* NULL once closed */
  order_svc_t svc;
  int daemon_ready;                /* signal handles initialised */
} app_t;

/* After the server: no flow is left, so nothing uses the clients, the
 * publisher or the commit group any more (every answer waited for its
 * commit). The group goes before the store; the loop runs after this, so its
 * handles close. */
static void close_upstreams(app_t *app) {
  if (app->group)
    store_group_close(app->group);
  app->group = NULL;
  if (app->user)
    proto_rpc_client_close(app->user);
  if (app->payment)
    proto_rpc_client_close(app->payment);
  app->user = app->payment = NULL;
  if (app->pub)
    proto_events_pub_close(app->pub, ORDER_EVENTS_FLUSH_MS, NULL, NULL);
  app->pub = NULL;
}

static void on_server_done(void *arg) {
  app_t *app = arg;
  app->srv = NULL; /* freed by the server */
  close_upstreams(app);
}

static void on_stop(void *arg) {
  app_t *app = arg;
  /* The server answers what is in flight (create_order waits for its
   * payment, within its deadline) before on_server_done closes the rest. The
   * store is closed after the loop ends. */
  proto_rpc_server_shutdown(app->srv, 0, on_server_done, app);
}

static int read_config(config_t *c) {
  const char *sync_env = proto_config_str("SQLITE_SYNCHRONOUS", "FULL");
  if (proto_config_ip("LISTEN_HOST", "127.0.0.1", &c->host) != 0 ||
      proto_config_dir("DATA_DIR", ORDER_DATA_DIR_DEFAULT, &c->data_dir) != 0 ||
      proto_config_host("USER_SERVICE_HOST", "127.0.0.1", &c->user_host) != 0 ||
      proto_config_host("PAYMENT_SERVICE_HOST", "127.0.0.1", &c->payment_host) != 0 ||
      proto_config_port("ORDER_SERVICE_PORT", ORDER_SERVICE_PORT_DEFAULT, &c->port) != 0 ||
      proto_config_peer_port("USER_SERVICE_PORT", ORDER_USER_SERVICE_PORT_DEFAULT,
                             &c->user_port) != 0 ||
      proto_config_peer_port("PAYMENT_SERVICE_PORT", ORDER_PAYMENT_SERVICE_PORT_DEFAULT,
                             &c->payment_port) != 0 ||
      proto_config_u64("RPC_TIMEOUT_MS", PROTO_RPC_TIMEOUT_MS_DEFAULT, 1,
                       ORDER_RPC_TIMEOUT_MS_MAX, &c->rpc_timeout_ms) != 0 ||
      proto_redis_opts_from_env(&c->redis) != 0 ||
      proto_rpc_server_opts_from_env(&c->server) != 0)
    return -1;
  if ((c->sync = order_sync_parse(sync_env)) < 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "SQLITE_SYNCHRONOUS=%s: expected NORMAL, FULL or EXTRA", sync_env);
    return -1;
  }
  c->redis.name = "events-pub";
  return 0;
}

static int health_probe(void) {
  int port;
  if (proto_config_port("ORDER_SERVICE_PORT", ORDER_SERVICE_PORT_DEFAULT, &port) != 0)
    return EXIT_FAILURE;
  return proto_daemon_health_probe("127.0.0.1", port, ORDER_HEALTH_PROBE_TIMEOUT_MS);
}

static int start(app_t *app, const config_t *c) {
  proto_rpc_client_opts_t co = {.timeout_ms = (unsigned)c->rpc_timeout_ms};
  if (order_store_open(c->data_dir, (order_sync_t)c->sync, &app->store) != 0)
    return -1;
  /* One durable COMMIT per loop turn for all its writes (see order.h). */
  if (!(app->group = store_group_new(&app->loop, order_store_db(app->store)))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the commit group");
    return -1;
  }
  if (!(app->user = proto_rpc_client_new(&app->loop, "user", c->user_host, c->user_port, &co)) ||
      !(app->payment = proto_rpc_client_new(&app->loop, "payment", c->payment_host,
                                            c->payment_port, &co)) ||
      !(app->pub = proto_events_pub_new(&app->loop, &c->redis))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the upstream clients");
    return -1;
  }
  order_svc_init(&app->svc, app->store, app->group, app->user, app->payment, app->pub,
                 (unsigned)c->rpc_timeout_ms);
  if (!(app->srv = proto_rpc_server_new(&app->loop, &c->server))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the RPC server");
    return -1;
  }
  if (order_handlers_register(app->srv, &app->svc) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot register handlers");
    return -1;
  }
  if (proto_rpc_server_listen(app->srv, c->host, c->port) != 0)
    return -1;
  if (proto_daemon_init(&app->daemon, &app->loop, on_stop, app) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot watch signals");
    return -1;
  }
  app->daemon_ready = 1;
  return 0;
}

int main(int argc, char **argv) {
  static app_t app;
  config_t cfg = {0};
  int loop_ready = 0, status = EXIT_FAILURE;
  const proto_daemon_lib_t libs[] = {{"sqlite", sqlite3_libversion()}};

  proto_daemon_set_version("order-service", libs, sizeof(libs) / sizeof(libs[0]));
  int a = proto_daemon_args(argc, argv, usage);
  if (a == PROTO_DAEMON_HEALTH_PROBE)
    return health_probe();
  if (a != 0)
    return a > 0 ? EXIT_SUCCESS : 2;
  if (proto_log_init("order") != 0 || read_config(&cfg) != 0)
    goto out;
  if (uv_loop_init(&app.loop) != 0)
    goto out;
  loop_ready = 1;
  if (start(&app, &cfg) != 0)
    goto out;
  proto_daemon_announce("rpc", cfg.host, proto_rpc_server_port(app.srv));
  /* Returns once the server, the clients and the publisher are closed. */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = EXIT_SUCCESS;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
out:
  if (app.srv) {
    /* Start-up failed after the server existed: let it free itself (its
     * done callback closes the upstreams). */
    proto_rpc_server_shutdown(app.srv, 0, on_server_done, &app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  close_upstreams(&app);
  if (loop_ready)
    uv_run(&app.loop, UV_RUN_DEFAULT); /* let the clients and publisher finish closing */
  if (app.daemon_ready)
    proto_daemon_close(&app.daemon);
  order_store_close(app.store);
  if (loop_ready && proto_daemon_loop_teardown(&app.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "teardown_failed", "loop still had open handles");
    status = EXIT_FAILURE;
  }
  return status;
}
