/* main.c: the notification-service daemon, a hybrid on one libuv loop: a
 * Redis subscriber turns order and payment events into stored notifications
 * (optionally POSTed to a webhook), and an RPC server answers
 * get_notifications and health. SIGTERM/SIGINT stops everything in order and
 * exits 0. The store's writes go through a commit group: one durable COMMIT
 * per loop turn for every notification of a burst.
 */
#include "notification.h"

#include <curl/curl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/error.h"
#include "proto/log.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define NTF_HEALTH_PROBE_TIMEOUT_MS 2000u
/* How often start-up checks whether every channel is subscribed yet. */
#define NTF_SUBSCRIBED_POLL_MS 10u

static const char usage[] =
    "Usage: notification-service [--help] [--version] [--health]\n"
    "\n"
    "The notification service. Subscribes over Redis to order_created,\n"
    "order_status_changed, order_completed, order_failed, payment_completed,\n"
    "payment_failed and payment_refunded, stores one notification per event\n"
    "(de-duplicated by metadata.eventId, or by a digest of the content when a\n"
    "publisher sends none) in SQLite\n"
    "at $DATA_DIR/" NTF_DB_FILE ", optionally POSTs each one to a webhook, and serves\n"
    "get_notifications and health over the NestJS TCP transport. Logs are JSON lines\n"
    "on stdout. SIGTERM or SIGINT stops gracefully with exit status 0.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help and exit\n"
    "  --version      show the version and exit\n"
    "  --health       ask the running service on 127.0.0.1:$NOTIFICATION_SERVICE_PORT\n"
    "                 for health; exit 0 when it answers ok, 1 otherwise\n"
    "\n"
    "Environment:\n"
    "  LISTEN_HOST                      IP address to bind (default 127.0.0.1)\n"
    "  NOTIFICATION_SERVICE_PORT        TCP port (default " STR(NTF_SERVICE_PORT_DEFAULT)
    "; 0 = ephemeral,\n"
    "                                   announced in the \"listening\" log line)\n"
    "  DATA_DIR                         directory of the database, created if missing\n"
    "                                   (default " NTF_DATA_DIR_DEFAULT ")\n"
    "  SQLITE_SYNCHRONOUS               NORMAL, FULL or EXTRA (default FULL)\n"
    "  REDIS_HOST                       Redis host (default 127.0.0.1)\n"
    "  REDIS_PORT                       Redis port (default 6379)\n"
    "  REDIS_PASSWORD                   sent with AUTH when set\n"
    "  EVENTS_QUEUE_MAX                 publisher queue bound; validated, unused here\n"
    "  NOTIFY_WEBHOOK_URL               http(s) URL to POST each new notification to\n"
    "                                   as JSON (unset: no delivery)\n"
    "  NOTIFY_WEBHOOK_MAX_ATTEMPTS      attempts per notification, 1-"
    STR(NTF_WEBHOOK_MAX_ATTEMPTS_LIMIT) " (default " STR(NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT) ")\n"
    "  NOTIFY_WEBHOOK_TIMEOUT_MS        per attempt (default "
    STR(NTF_WEBHOOK_TIMEOUT_MS_DEFAULT) ")\n"
    "  NOTIFY_COMMIT_DELAY_MS           batch stored notifications into one commit\n"
    "                                   over this many ms (default 10; 0 = every\n"
    "                                   loop turn)\n"
    "  NOTIFY_WEBHOOK_BACKOFF_MS        wait before the 2nd attempt, doubling after\n"
    "                                   (default " STR(NTF_WEBHOOK_BACKOFF_MS_DEFAULT)
    ", at most " STR(NTF_WEBHOOK_BACKOFF_MAX_MS) ")\n"
    "  LOG_LEVEL                        debug, info, warn or error (default info)\n"
    "  RPC_MAX_FRAME_BYTES              largest accepted frame (default 1048576)\n"
    "  RPC_INCOMPLETE_FRAME_TIMEOUT_MS  close a connection whose partial frame makes\n"
    "                                   no progress for this long (default 30000)\n";

typedef struct config {
  const char *host;
  int port;
  const char *data_dir;
  int sync;
  proto_redis_opts_t redis;
  proto_rpc_server_opts_t rpc;
  ntf_webhook_opts_t webhook;      /* url NULL: no delivery */
  unsigned commit_delay_ms;        /* NOTIFY_COMMIT_DELAY_MS */
} config_t;

#define NTF_COMMIT_DELAY_MS_DEFAULT 10

typedef struct app {
  uv_loop_t loop;
  proto_daemon_t daemon;
  proto_rpc_server_t *srv;         /* NULL once shut down */
  proto_events_sub_t *sub;         /* NULL once closed */
  ntf_webhook_t *webhook;          /* NULL once closed, or when not configured */
  ntf_store_t *store;
  store_group_t *group;            /* on the store's db; closed before the store */
  ntf_service_t svc;
  uv_timer_t ready_timer;          /* until the first "subscribed" line */
  int ready_timer_open;
  int daemon_ready;                /* signal handles initialised */
} app_t;

static void on_ready_timer_closed(uv_handle_t *h) {
  app_t *app = h->data;
  app->ready_timer_open = 0;
}

static void close_ready_timer(app_t *app) {
  if (app->ready_timer_open && !uv_is_closing((uv_handle_t *)&app->ready_timer))
    uv_close((uv_handle_t *)&app->ready_timer, on_ready_timer_closed);
}

/* Log {"event":"subscribed"} once, when every channel is first confirmed:
 * from then on published events reach this daemon (supervisors and tests
 * may wait for the line; health shows redis.subscribed at any time). */
static void on_ready_poll(uv_timer_t *t) {
  app_t *app = t->data;
  if (!app->sub || !proto_events_sub_ready(app->sub))
    return;
  proto_log_fields(PROTO_LOG_INFO, NULL, "subscribed",
                   json_pack("{s:i}", "channels", (int)NTF_EV_COUNT_));
  close_ready_timer(app);
}

static void on_server_done(void *arg) {
  app_t *app = arg;
  app->srv = NULL; /* freed by the server */
}

static void on_sub_done(void *arg) {
  app_t *app = arg;
  app->sub = NULL;
}

static void on_webhook_done(void *arg) {
  app_t *app = arg;
  app->webhook = NULL;
}

/* Stop order: no new events, then let deliveries in flight finish briefly
 * (whatever is cut short stays pending for the next start), while the
 * server answers what it has. The commit group stays open meanwhile: the
 * webhook's final reports still write through it. The group and then the
 * store are closed after the loop ends. */
static void stop_all(app_t *app) {
  close_ready_timer(app);
  app->svc.sub = NULL;
  if (app->sub)
    proto_events_sub_close(app->sub, on_sub_done, app);
  if (app->webhook)
    ntf_webhook_close(app->webhook, NTF_WEBHOOK_SHUTDOWN_MS, on_webhook_done, app);
  app->svc.webhook = NULL;
  if (app->srv)
    proto_rpc_server_shutdown(app->srv, 0, on_server_done, app);
}

static void on_stop(void *arg) {
  stop_all(arg);
}

static int u64_env(const char *name, uint64_t def, uint64_t min, uint64_t max, unsigned *out) {
  uint64_t v;
  if (proto_config_u64(name, def, min, max, &v) != 0)
    return -1;
  *out = (unsigned)v;
  return 0;
}

static int read_config(config_t *c) {
  const char *sync_env = proto_config_str("SQLITE_SYNCHRONOUS", "FULL");
  if (proto_config_ip("LISTEN_HOST", "127.0.0.1", &c->host) != 0 ||
      proto_config_dir("DATA_DIR", NTF_DATA_DIR_DEFAULT, &c->data_dir) != 0 ||
      proto_config_port("NOTIFICATION_SERVICE_PORT", NTF_SERVICE_PORT_DEFAULT, &c->port) != 0)
    return -1;
  if ((c->sync = ntf_sync_parse(sync_env)) < 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "SQLITE_SYNCHRONOUS=%s: expected NORMAL, FULL or EXTRA", sync_env);
    return -1;
  }
  if (proto_redis_opts_from_env(&c->redis) != 0 || proto_rpc_server_opts_from_env(&c->rpc) != 0)
    return -1;
  c->redis.name = "notification-events";
  if (proto_config_url("NOTIFY_WEBHOOK_URL", NULL, &c->webhook.url) != 0 ||
      u64_env("NOTIFY_WEBHOOK_MAX_ATTEMPTS", NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT, 1,
              NTF_WEBHOOK_MAX_ATTEMPTS_LIMIT, &c->webhook.max_attempts) != 0 ||
      u64_env("NOTIFY_WEBHOOK_TIMEOUT_MS", NTF_WEBHOOK_TIMEOUT_MS_DEFAULT, 1, 600000,
              &c->webhook.timeout_ms) != 0 ||
      u64_env("NOTIFY_WEBHOOK_BACKOFF_MS", NTF_WEBHOOK_BACKOFF_MS_DEFAULT, 1,
              NTF_WEBHOOK_BACKOFF_MAX_MS, &c->webhook.backoff_ms) != 0 ||
      u64_env("NOTIFY_COMMIT_DELAY_MS", NTF_COMMIT_DELAY_MS_DEFAULT, 0, 1000,
              &c->commit_delay_ms) != 0)
    return -1;
  return 0;
}

static int health_probe(void) {
  int port;
  if (proto_config_port("NOTIFICATION_SERVICE_PORT", NTF_SERVICE_PORT_DEFAULT, &port) != 0)
    return EXIT_FAILURE;
  if (port == 0) {
    fprintf(stderr, "health: NOTIFICATION_SERVICE_PORT=0 names no port to probe\n");
    return EXIT_FAILURE;
  }
  return proto_daemon_health_probe("127.0.0.1", port, NTF_HEALTH_PROBE_TIMEOUT_MS);
}

int main(int argc, char **argv) {
  static app_t app;
  config_t cfg = {0};
  int loop_ready = 0, curl_ready = 0, status = EXIT_FAILURE;

  const proto_daemon_lib_t libs[] = {{"sqlite", sqlite3_libversion()},
                                      {"libcurl", curl_version_info(CURLVERSION_NOW)->version}};

  proto_daemon_set_version("notification-service", libs, sizeof(libs) / sizeof(libs[0]));
  int a = proto_daemon_args(argc, argv, usage);
  if (a == PROTO_DAEMON_HEALTH_PROBE)
    return health_probe();
  if (a != 0)
    return a > 0 ? EXIT_SUCCESS : 2;
  if (proto_log_init("notification") != 0 || read_config(&cfg) != 0)
    goto out;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "curl_global_init failed");
    goto out;
  }
  curl_ready = 1;
  if (uv_loop_init(&app.loop) != 0)
    goto out;
  loop_ready = 1;
  if (ntf_store_open(cfg.data_dir, (ntf_sync_t)cfg.sync, &app.store) != 0)
    goto out;
  app.svc.store = app.store;
  if (!(app.group = store_group_new(&app.loop, ntf_store_db(app.store)))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the commit group");
    goto out;
  }
  /* Nobody waits on a stored notification, so commits are batched over a
   * few milliseconds: far fewer fsyncs under load, same durability on a
   * clean stop (close commits what is open). */
  store_group_set_delay(app.group, cfg.commit_delay_ms);
  app.svc.group = app.group;
  if (cfg.webhook.url) {
    if (!(app.webhook = ntf_webhook_new(&app.loop, &cfg.webhook, ntf_on_delivery_report,
                                        &app.svc)))
      goto out;
    app.svc.webhook = app.webhook;
  }
  if (!(app.srv = proto_rpc_server_new(&app.loop, &cfg.rpc))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the RPC server");
    goto out;
  }
  if (ntf_handlers_register(app.srv, &app.svc) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot register handlers");
    goto out;
  }
  if (proto_rpc_server_listen(app.srv, cfg.host, cfg.port) != 0)
    goto out;
  /* The subscriber connects in the background and keeps retrying: the
   * service serves what it stored even while Redis is away. */
  if (!(app.sub = proto_events_sub_new(&app.loop, &cfg.redis))) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot create the Redis subscriber");
    goto out;
  }
  app.svc.sub = app.sub;
  if (ntf_events_register(app.sub, &app.svc) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot subscribe to events");
    goto out;
  }
  if (ntf_resume_pending(&app.svc) < 0)
    goto out;
  if (uv_timer_init(&app.loop, &app.ready_timer) != 0)
    goto out;
  app.ready_timer_open = 1;
  app.ready_timer.data = &app;
  if (uv_timer_start(&app.ready_timer, on_ready_poll, NTF_SUBSCRIBED_POLL_MS,
                     NTF_SUBSCRIBED_POLL_MS) != 0)
    goto out;
  if (proto_daemon_init(&app.daemon, &app.loop, on_stop, &app) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot watch signals");
    goto out;
  }
  app.daemon_ready = 1;
  proto_daemon_announce("rpc", cfg.host, proto_rpc_server_port(app.srv));
  /* Returns once the server, the subscriber and the webhook have closed. */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = EXIT_SUCCESS;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
out:
  if (app.srv || app.sub || app.webhook || app.ready_timer_open) {
    /* Start-up failed after some parts existed: let them free themselves. */
    stop_all(&app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.group) {
    /* Commits what is open and runs what waits for it (nothing is left after
     * a clean stop: the loop only ends once the group is idle), then closes
     * its handles, which needs the loop once more. Before the store: the
     * group borrows its connection. */
    app.svc.group = NULL;
    store_group_close(app.group);
    app.group = NULL;
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.daemon_ready)
    proto_daemon_close(&app.daemon);
  ntf_store_close(app.store);
  if (loop_ready && proto_daemon_loop_teardown(&app.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "teardown_failed", "loop still had open handles");
    status = EXIT_FAILURE;
  }
  if (curl_ready)
    curl_global_cleanup();
  return status;
}
