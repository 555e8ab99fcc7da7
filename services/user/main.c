/* main.c: the user-service daemon: reads its configuration, opens the store,
 * serves the user patterns over NestJS TCP framing, and on SIGTERM/SIGINT
 * drains in-flight requests, closes the database and exits 0.
 */
#include "user.h"

#include <stdio.h>
#include <stdlib.h>

#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/log.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define USER_HEALTH_PROBE_TIMEOUT_MS 2000u

static const char usage[] =
    "Usage: user-service [--help] [--version] [--health]\n"
    "\n"
    "The user service: create_user, get_user, get_users and health requests and\n"
    "the user_logged_in event, over the NestJS TCP transport. Users are kept in\n"
    "SQLite at $DATA_DIR/" USER_DB_FILE ". Logs are JSON lines on stdout. SIGTERM or\n"
    "SIGINT stops gracefully (in-flight requests are answered) with exit status 0.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show the version and exit\n"
    "  --health       ask the running service on 127.0.0.1:$USER_SERVICE_PORT for\n"
    "                 its health; exit 0 when healthy, 1 otherwise (for probes)\n"
    "\n"
    "Environment:\n"
    "  LISTEN_HOST                      IP address to bind (default 127.0.0.1)\n"
    "  USER_SERVICE_PORT                TCP port (default " STR(USER_SERVICE_PORT_DEFAULT)
    "; 0 = ephemeral,\n"
    "                                   announced in the \"listening\" log line)\n"
    "  DATA_DIR                         directory of the database, created if missing\n"
    "                                   (default " USER_DATA_DIR_DEFAULT ")\n"
    "  SQLITE_SYNCHRONOUS               NORMAL, FULL or EXTRA (default FULL: every\n"
    "                                   acknowledged write is fsynced; NORMAL may lose\n"
    "                                   the latest commits on power loss)\n"
    "  LOG_LEVEL                        debug, info, warn or error (default info)\n"
    "  RPC_MAX_FRAME_BYTES              largest accepted frame (default 1048576)\n"
    "  RPC_INCOMPLETE_FRAME_TIMEOUT_MS  close a connection whose partial frame makes\n"
    "                                   no progress for this long (default 30000)\n";

typedef struct app {
  uv_loop_t loop;
  proto_daemon_t daemon;
  proto_rpc_server_t *srv;         /* NULL once shut down */
  user_store_t *store;
  store_group_t *group;            /* one durable COMMIT per loop turn; NULL once closed */
  int daemon_ready;                /* signal handles initialised */
} app_t;

static void on_server_done(void *arg) {
  app_t *app = arg;
  app->srv = NULL; /* freed by the server */
}

static void on_stop(void *arg) {
  app_t *app = arg;
  /* The store stays open until the server has answered what it can: it is
   * closed after the loop ends. */
  proto_rpc_server_shutdown(app->srv, 0, on_server_done, app);
}

static int read_config(const char **host, int *port, const char **data_dir, int *sync) {
  const char *sync_env = proto_config_str("SQLITE_SYNCHRONOUS", "FULL");
  *host = proto_config_str("LISTEN_HOST", "127.0.0.1");
  *data_dir = proto_config_str("DATA_DIR", USER_DATA_DIR_DEFAULT);
  if (proto_config_port("USER_SERVICE_PORT", USER_SERVICE_PORT_DEFAULT, port) != 0)
    return -1;
  if ((*sync = user_sync_parse(sync_env)) < 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "SQLITE_SYNCHRONOUS=%s: expected NORMAL, FULL or EXTRA", sync_env);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  static app_t app;
  proto_rpc_server_opts_t opts;
  const char *host, *data_dir;
  int port, sync, loop_ready = 0, status = EXIT_FAILURE;

  int a = proto_daemon_args(argc, argv, usage);
  if (a < 0)
    return 2;
  if (a == 1)
    return EXIT_SUCCESS;
  proto_log_init("user");
  if (a == PROTO_DAEMON_HEALTH_PROBE) {
    if (proto_config_port("USER_SERVICE_PORT", USER_SERVICE_PORT_DEFAULT, &port) != 0)
      return EXIT_FAILURE;
    return proto_daemon_health_probe("127.0.0.1", port, USER_HEALTH_PROBE_TIMEOUT_MS);
  }
  if (read_config(&host, &port, &data_dir, &sync) != 0 ||
      proto_rpc_server_opts_from_env(&opts) != 0)
    goto out;
  if (uv_loop_init(&app.loop) != 0)
    goto out;
  loop_ready = 1;
  if (user_store_open(data_dir, (user_sync_t)sync, &app.store) != 0)
    goto out;
  if (!(app.group = store_group_new(&app.loop, user_store_db(app.store)))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the commit group");
    goto out;
  }
  user_store_set_group(app.store, app.group);
  if (!(app.srv = proto_rpc_server_new(&app.loop, &opts))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the RPC server");
    goto out;
  }
  if (user_handlers_register(app.srv, app.store) != 0) {
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
  /* Returns once the server has shut down and the signal handles are closed. */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = EXIT_SUCCESS;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
out:
  if (app.srv) {
    /* Start-up failed after the server existed: let it free itself. */
    proto_rpc_server_shutdown(app.srv, 0, on_server_done, &app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.daemon_ready)
    proto_daemon_close(&app.daemon);
  if (app.group) {
    /* Before the store: the group borrows its connection. No request is left
     * (the server has shut down), so this commits nothing new; the loop
     * below closes its handles. */
    user_store_set_group(app.store, NULL);
    store_group_close(app.group);
    app.group = NULL;
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  user_store_close(app.store);
  if (loop_ready && proto_daemon_loop_teardown(&app.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "teardown_failed", "loop still had open handles");
    status = EXIT_FAILURE;
  }
  return status;
}
