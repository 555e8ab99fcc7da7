/* main.c: the payment-service daemon: reads its configuration, opens the
 * store and the Redis event publisher, serves the payment patterns over NestJS
 * TCP framing, and on SIGTERM/SIGINT drains in-flight requests, flushes queued
 * events (briefly), closes the database and exits 0.
 */
#include "payment.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/log.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage[] =
    "Usage: payment-service [--help] [--version] [--health]\n"
    "\n"
    "The payment service: process_payment, refund_payment, get_payment,\n"
    "get_payment_by_order and health requests over the NestJS TCP transport.\n"
    "Payments are kept in SQLite at $DATA_DIR/" PAYMENT_DB_FILE ", one per orderId\n"
    "(process_payment and refund_payment are idempotent). The events\n"
    "payment_completed, payment_failed and payment_refunded are published on Redis\n"
    "once each, after the payment is committed. Amounts are integer minor units\n"
    "(0.." STR(PAYMENT_AMOUNT_MAX) ") with a 3-letter currency (default "
    PAYMENT_CURRENCY_DEFAULT ").\n"
    "Payment methods (test tokens): tok_visa succeeds; tok_chargeDeclined is\n"
    "declined (card_declined); tok_insufficientFunds is declined\n"
    "(insufficient_funds). Logs are JSON lines on stdout. SIGTERM or SIGINT stops\n"
    "gracefully (in-flight requests are answered) with exit status 0.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show the version and exit\n"
    "  --health       ask the running service on 127.0.0.1:$PAYMENT_SERVICE_PORT for\n"
    "                 its health; exit 0 when healthy, 1 otherwise (for probes)\n"
    "\n"
    "Environment:\n"
    "  LISTEN_HOST                      IP address to bind (default 127.0.0.1)\n"
    "  PAYMENT_SERVICE_PORT             TCP port (default " STR(PAYMENT_SERVICE_PORT_DEFAULT)
    "; 0 = ephemeral,\n"
    "                                   announced in the \"listening\" log line)\n"
    "  DATA_DIR                         directory of the database, created if missing\n"
    "                                   (default " PAYMENT_DATA_DIR_DEFAULT ")\n"
    "  SQLITE_SYNCHRONOUS               NORMAL, FULL or EXTRA (default FULL: every\n"
    "                                   acknowledged payment is fsynced; NORMAL may lose\n"
    "                                   the latest commits on power loss, and a retry\n"
    "                                   would then charge again)\n"
    "  REDIS_HOST                       Redis host for events (default 127.0.0.1)\n"
    "  REDIS_PORT                       Redis port (default 6379)\n"
    "  REDIS_PASSWORD                   sent with AUTH when set (default: no AUTH)\n"
    "  EVENTS_QUEUE_MAX                 events kept while Redis is away (default\n"
    "                                   10000); beyond it new events are dropped and\n"
    "                                   logged, requests still succeed\n"
    "  LOG_LEVEL                        debug, info, warn or error (default info)\n"
    "  RPC_MAX_FRAME_BYTES              largest accepted frame (default 1048576)\n"
    "  RPC_INCOMPLETE_FRAME_TIMEOUT_MS  close a connection whose partial frame makes\n"
    "                                   no progress for this long (default 30000)\n";

typedef struct app {
  uv_loop_t loop;
  proto_daemon_t daemon;
  proto_rpc_server_t *srv;         /* NULL once shut down */
  proto_events_pub_t *pub;         /* NULL once closed */
  payment_store_t *store;
  store_group_t *group;            /* one durable COMMIT per loop turn; NULL once closed */
  payment_ctx_t ctx;               /* what the handlers see */
  int pub_closing;                 /* proto_events_pub_close called */
  int daemon_ready;                /* signal handles initialised */
} app_t;

static void on_pub_done(void *arg) {
  app_t *app = arg;
  app->pub = NULL; /* freed by the publisher */
}

static void close_pub(app_t *app, unsigned flush_ms) {
  if (!app->pub || app->pub_closing)
    return;
  app->pub_closing = 1;
  app->ctx.pub = NULL;
  proto_events_pub_close(app->pub, flush_ms, on_pub_done, app);
}

static void on_server_done(void *arg) {
  app_t *app = arg;
  app->srv = NULL; /* freed by the server */
  /* No request can publish any more: send what is queued, briefly. */
  close_pub(app, PAYMENT_EVENTS_FLUSH_TIMEOUT_MS);
}

static void on_stop(void *arg) {
  app_t *app = arg;
  /* The store stays open until the server has answered what it can: it is
   * closed after the loop ends. */
  proto_rpc_server_shutdown(app->srv, 0, on_server_done, app);
}

static int read_config(const char **host, int *port, const char **data_dir, int *sync) {
  const char *sync_env = proto_config_str("SQLITE_SYNCHRONOUS", "FULL");
  *data_dir = proto_config_str("DATA_DIR", PAYMENT_DATA_DIR_DEFAULT);
  if (proto_config_ip("LISTEN_HOST", "127.0.0.1", host) != 0 ||
      proto_config_port("PAYMENT_SERVICE_PORT", PAYMENT_SERVICE_PORT_DEFAULT, port) != 0)
    return -1;
  if ((*sync = payment_sync_parse(sync_env)) < 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "SQLITE_SYNCHRONOUS=%s: expected NORMAL, FULL or EXTRA", sync_env);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  static app_t app;
  proto_rpc_server_opts_t opts;
  proto_redis_opts_t ropts = {0};
  const char *host, *data_dir;
  int port, sync, loop_ready = 0, status = EXIT_FAILURE;

  const proto_daemon_lib_t libs[] = {{"sqlite", sqlite3_libversion()}};

  proto_daemon_set_version("payment-service", libs, sizeof(libs) / sizeof(libs[0]));
  int a = proto_daemon_args(argc, argv, usage);
  if (a < 0)
    return 2;
  if (a == 1)
    return EXIT_SUCCESS;
  if (proto_log_init("payment") != 0)
    return EXIT_FAILURE;
  if (a == PROTO_DAEMON_HEALTH_PROBE) {
    if (proto_config_port("PAYMENT_SERVICE_PORT", PAYMENT_SERVICE_PORT_DEFAULT, &port) != 0)
      return EXIT_FAILURE;
    return proto_daemon_health_probe("127.0.0.1", port, PAYMENT_HEALTH_PROBE_TIMEOUT_MS);
  }
  if (read_config(&host, &port, &data_dir, &sync) != 0 ||
      proto_rpc_server_opts_from_env(&opts) != 0 || proto_redis_opts_from_env(&ropts) != 0)
    goto out;
  ropts.name = "payment-events";
  if (uv_loop_init(&app.loop) != 0)
    goto out;
  loop_ready = 1;
  if (payment_store_open(data_dir, (payment_sync_t)sync, &app.store) != 0)
    goto out;
  /* Every write of a loop turn goes into one transaction, committed (and
   * fsynced) once at the end of the turn; replies and events wait for it. */
  if (!(app.group = store_group_new(&app.loop, payment_store_db(app.store)))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the commit group");
    goto out;
  }
  payment_store_set_group(app.store, app.group);
  /* Connects in the background: the service starts (and answers health)
   * while Redis is still away; events queue until it comes. */
  if (!(app.pub = proto_events_pub_new(&app.loop, &ropts))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the event publisher");
    goto out;
  }
  app.ctx = (payment_ctx_t){app.store, app.pub, payment_processor_charge, NULL};
  if (!(app.srv = proto_rpc_server_new(&app.loop, &opts))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the RPC server");
    goto out;
  }
  if (payment_handlers_register(app.srv, &app.ctx) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot register handlers");
    goto out;
  }
  if (proto_rpc_server_listen(app.srv, host, port) != 0)
    goto out;
  if (proto_daemon_init(&app.daemon, &app.loop, on_stop, &app) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot watch signals");
    goto out;
  }
  app.daemon_ready = 1;
  proto_daemon_announce("rpc", host, proto_rpc_server_port(app.srv));
  /* Returns once the server has shut down and the publisher has flushed and
   * closed (the signal handles do not keep the loop alive, nor does the idle commit
   * group: its handles stop when no transaction is open). */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = EXIT_SUCCESS;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
out:
  if (app.srv) {
    /* Start-up failed after the server existed: let it free itself (its done
     * callback closes the publisher too). */
    proto_rpc_server_shutdown(app.srv, 0, on_server_done, &app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.pub) {
    close_pub(&app, 0);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.group) {
    /* Before the store: the group borrows its connection. No request is left
     * (the server has drained: every deferred answer ran at the end of its
     * turn), so this only closes the handles; the loop runs to finish that. */
    payment_store_set_group(app.store, NULL);
    store_group_close(app.group);
    app.group = NULL;
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.daemon_ready)
    proto_daemon_close(&app.daemon);
  payment_store_close(app.store);
  if (loop_ready && proto_daemon_loop_teardown(&app.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "teardown_failed", "loop still had open handles");
    status = EXIT_FAILURE;
  }
  return status;
}
