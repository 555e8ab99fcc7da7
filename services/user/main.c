/* main.c: the user-service daemon, as libsvc's skeleton runs it (svc/daemon.h):
 * the user patterns over NestJS TCP framing, users in SQLite.
 */
#include "user.h"

#include "proto/log.h"
#include "svc/daemon.h"

static int open_store(const char *data_dir, int sync, void **store) {
  return user_store_open(data_dir, sync, (user_store_t **)store);
}

static sqlite3 *store_db(void *store) {
  return user_store_db(store);
}

static void close_store(void *store) {
  user_store_close(store);
}

static int start(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv) {
  (void)cfg;
  user_svc_setup(svc);
  if (user_handlers_register(srv, svc) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot register handlers");
    return -1;
  }
  return 0;
}

static const svc_def_t user_def = {
    .name = "user",
    .about = "The user service: create_user, get_user, get_users and health requests and\n"
             "the user_logged_in event, over the NestJS TCP transport. Users are kept in\n"
             "SQLite at $DATA_DIR/" USER_DB_FILE ". Logs are JSON lines on stdout. SIGTERM or\n"
             "SIGINT stops gracefully (in-flight requests are answered) with exit status 0.\n",
    .port_env = "USER_SERVICE_PORT",
    .port_default = USER_SERVICE_PORT_DEFAULT,
    .db_file = USER_DB_FILE,
    .store_open = open_store,
    .store_db = store_db,
    .store_close = close_store,
    .start = start,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &user_def);
}
