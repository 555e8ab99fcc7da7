/* main.c: the user-service daemon, as libsvc's skeleton runs it (svc/daemon.h):
 * the user patterns over NestJS TCP framing, users in SQLite.
 */
#include "user.h"

#include "svc/daemon.h"

static const svc_def_t user_def = {
    .name = "user",
    .about = "The user service: create_user, get_user, get_users and health requests and\n"
             "the user_logged_in event, over the NestJS TCP transport. Users are kept in\n"
             "SQLite at $DATA_DIR/" USER_DB_FILE ". Logs are JSON lines on stdout. SIGTERM or\n"
             "SIGINT stops gracefully (in-flight requests are answered) with exit status 0.\n",
    .port_env = "USER_SERVICE_PORT",
    .port_default = USER_SERVICE_PORT_DEFAULT,
    .db_file = USER_DB_FILE,
    .store = &user_store_schema,
    .setup = user_svc_setup,
    .handlers_register = user_handlers_register,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &user_def);
}
