/* daemon.c: svc_main(), the daemon every service runs: usage text, the
 * shared settings, start-up in dependency order and the stop order. */
#include "svc/daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/error.h"
#include "proto/log.h"
#include "store/db.h"
#include "store/outbox.h"
#include "svc/outbox.h"

#define USAGE_MAX_BYTES 8192
#define ENV_NAME_MAX_BYTES 64
#define DAEMON_NAME_MAX_BYTES 64

typedef struct app {
  const svc_def_t *def;
  svc_config_t cfg;
  uv_loop_t loop;
  proto_daemon_t daemon;
  proto_rpc_server_t *srv;         /* NULL once shut down */
  svc_t svc;
  int started;                     /* def->start() succeeded */
  int stopping;                    /* stop_all() ran */
  int daemon_ready;                /* signal handles initialised */
} app_t;

/* --- usage ------------------------------------------------------------------ */

#define APPEND(...)                                                                 \
  do {                                                                              \
    int n_ = snprintf(buf + used, size > used ? size - used : 0, __VA_ARGS__);      \
    if (n_ > 0)                                                                     \
      used += (size_t)n_;                                                           \
  } while (0)

static void build_usage(const svc_def_t *def, char *buf, size_t size) {
  size_t used = 0;
  APPEND("Usage: %s-service [--help] [--version] [--health]\n\n%s\n", def->name, def->about);
  APPEND("Options:\n"
         "  -h, --help     show this help and exit\n"
         "  --version      show the version and exit\n"
         "  --health       ask the running service on 127.0.0.1:$%s\n"
         "                 for its health; exit 0 when it answers \"ok\" within 2 s,\n"
         "                 1 otherwise (for probes)\n\n",
         def->port_env);
  APPEND("Environment:\n"
         "  LISTEN_HOST                      IP address to bind (default " SVC_LISTEN_HOST_DEFAULT
         ")\n"
         "  %-32s TCP port (default %d; 0 = ephemeral, announced in\n"
         "                                   the \"listening\" log line)\n",
         def->port_env, def->port_default);
  if (def->store)
    APPEND("  DATA_DIR                         directory of %s, created if missing\n"
           "                                   (default " SVC_DATA_DIR_DEFAULT ")\n"
           "  SQLITE_SYNCHRONOUS               NORMAL, FULL or EXTRA (default FULL: every\n"
           "                                   acknowledged write is fsynced; NORMAL may lose\n"
           "                                   the latest commits on power loss)\n",
           def->db_file ? def->db_file : "the database");
  for (unsigned i = 0; i < def->n_upstreams; i++) {
    const svc_upstream_def_t *u = &def->upstreams[i];
    APPEND("  %s_SERVICE_HOST%*s %s service address (default 127.0.0.1)\n"
           "  %s_SERVICE_PORT%*s %s service port (default %d)\n",
           u->env, (int)(32 - 13 - strlen(u->env)), "", u->name, u->env,
           (int)(32 - 13 - strlen(u->env)), "", u->name, u->port_default);
  }
  if (def->n_upstreams)
    APPEND("  RPC_TIMEOUT_MS                   deadline of each call to another service, within\n"
           "                                   the caller's own budget (default 5000)\n");
  if (def->flags & SVC_REDIS)
    APPEND("  REDIS_HOST                       Redis for events (default 127.0.0.1)\n"
           "  REDIS_PORT                       (default 6379)\n"
           "  REDIS_PASSWORD                   AUTH password (default: none)\n");
  if ((def->flags & SVC_PUBLISHER) == SVC_PUBLISHER)
    APPEND("  EVENTS_QUEUE_MAX                 events kept while Redis is away (default 10000)\n");
  if (def->env_usage)
    APPEND("%s", def->env_usage);
  APPEND("  LOG_LEVEL                        debug, info, warn or error (default info)\n"
         "  RPC_MAX_FRAME_BYTES              largest accepted frame (default 1048576)\n"
         "  RPC_INCOMPLETE_FRAME_TIMEOUT_MS  close a connection whose partial frame makes\n"
         "                                   no progress for this long (default 30000)\n");
}

/* --- settings ------------------------------------------------------------------ */

static int read_config(const svc_def_t *def, svc_config_t *c) {
  char name[ENV_NAME_MAX_BYTES];
  uint64_t timeout = PROTO_RPC_TIMEOUT_MS_DEFAULT;
  /* An IP literal: the listener binds without resolving names. */
  if (proto_config_ip("LISTEN_HOST", SVC_LISTEN_HOST_DEFAULT, &c->listen_host) != 0 ||
      proto_config_port(def->port_env, def->port_default, &c->port) != 0 ||
      proto_rpc_server_opts_from_env(&c->server) != 0)
    return -1;
  /* Checked, not created: the store creates it once every setting is good. */
  if (def->store && (proto_config_dir("DATA_DIR", SVC_DATA_DIR_DEFAULT, &c->data_dir) != 0 ||
                          store_sync_from_env(&c->sync) != 0))
    return -1;
  for (unsigned i = 0; i < def->n_upstreams; i++) {
    const svc_upstream_def_t *u = &def->upstreams[i];
    snprintf(name, sizeof(name), "%s_SERVICE_HOST", u->env);
    if (proto_config_host(name, "127.0.0.1", &c->upstream_host[i]) != 0)
      return -1;
    snprintf(name, sizeof(name), "%s_SERVICE_PORT", u->env);
    if (proto_config_peer_port(name, u->port_default, &c->upstream_port[i]) != 0)
      return -1;
  }
  if (def->n_upstreams &&
      proto_config_u64("RPC_TIMEOUT_MS", PROTO_RPC_TIMEOUT_MS_DEFAULT, 1, SVC_RPC_TIMEOUT_MS_MAX,
                       &timeout) != 0)
    return -1;
  c->rpc_timeout_ms = (unsigned)timeout;
  if (def->flags & SVC_REDIS) {
    if (proto_redis_opts_from_env(&c->redis) != 0)
      return -1;
    c->redis.name = def->redis_name;
  }
  return 0;
}

static int health_probe(const svc_def_t *def) {
  int port;
  if (proto_config_port(def->port_env, def->port_default, &port) != 0)
    return EXIT_FAILURE;
  if (port == 0) {
    fprintf(stderr, "health: %s=0 names no port to probe\n", def->port_env);
    return EXIT_FAILURE;
  }
  return proto_daemon_health_probe("127.0.0.1", port, SVC_HEALTH_PROBE_TIMEOUT_MS);
}

/* --- the stop order -------------------------------------------------------------- */

/* After the publisher is done no ack comes any more: the relay may go (rows
 * it did not get acknowledged stay unsent for the next start). */
static void close_relay(svc_t *svc) {
  svc_outbox_relay_close(svc->relay);
  svc->relay = NULL;
}

static void on_pub_done(void *arg) {
  app_t *app = arg; /* the publisher freed itself */
  close_relay(&app->svc);
}

/* The server has drained: nothing uses the upstreams or the publisher any
 * more (every answer waited for its commit), so they close; the publisher
 * sends what is queued first, briefly. */
static void on_server_done(void *arg) {
  app_t *app = arg;
  svc_t *svc = &app->svc;
  app->srv = NULL; /* freed by the server */
  if (app->started && app->def->stopped)
    app->def->stopped(svc);
  for (unsigned i = 0; i < svc->n_upstreams; i++) {
    if (svc->upstream[i])
      proto_rpc_client_close(svc->upstream[i]);
    svc->upstream[i] = NULL;
  }
  if (svc->pub) {
    proto_events_pub_t *pub = svc->pub;
    svc->pub = NULL;
    proto_events_pub_close(pub,
                           app->def->events_flush_ms ? app->def->events_flush_ms
                                                     : SVC_EVENTS_FLUSH_MS_DEFAULT,
                           on_pub_done, app);
  } else {
    close_relay(svc);
  }
}

static void stop_all(app_t *app) {
  if (app->stopping)
    return;
  app->stopping = 1;
  if (app->started && app->def->stopping)
    app->def->stopping(&app->svc);
  if (app->srv)
    proto_rpc_server_shutdown(app->srv, 0, on_server_done, app);
  else
    on_server_done(app);
}

static void on_stop(void *arg) {
  stop_all(arg);
}

/* --- start-up ------------------------------------------------------------------- */

static int fail(const char *what) {
  proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot %s", what);
  return -1;
}

/* The relay's sender: the service's publisher while it is open. */
static int relay_send(void *arg, const char *pattern, json_t *data, json_t *metadata,
                      const proto_events_publish_opts_t *opts) {
  svc_t *svc = arg;
  if (!svc->pub) {
    json_decref(data);
    json_decref(metadata);
    return PROTO_ECLOSED; /* stopping: the row waits for the next start */
  }
  return proto_events_publish_with(svc->pub, pattern, data, metadata, NULL, opts, NULL);
}

/* The outbox on the store's connection and its relay, kicked once for the
 * rows a crash (or a stop with Redis away) left unsent. */
static int start_outbox(app_t *app, store_conn_t *store) {
  svc_t *svc = &app->svc;
  if (!store)
    return fail("use an outbox without a store");
  if (store_outbox_open(store->db, &svc->outbox) != STORE_OK)
    return -1; /* logged by libstore */
  if (!(svc->relay = svc_outbox_relay_new(&app->loop, svc->outbox, svc->group, relay_send, svc)))
    return fail("create the outbox relay");
  svc_outbox_relay_kick(svc->relay);
  return 0;
}

static int start(app_t *app) {
  const svc_def_t *def = app->def;
  const svc_config_t *c = &app->cfg;
  svc_t *svc = &app->svc;
  store_conn_t *store = NULL;
  store_group_t *group = NULL;
  if (def->store) {
    if (store_open(c->data_dir, c->sync, def->store, &store) != 0)
      return -1; /* logged by libstore */
    svc_init(svc, &app->loop, def->name, store, NULL);
    /* Every write of a loop turn goes into one transaction, committed (and
     * fsynced) once at the end of the turn; replies and events wait for it. */
    if (!(group = store_group_new(&app->loop, store->db)))
      return fail("create the commit group");
    svc->group = group;
  } else {
    svc_init(svc, &app->loop, def->name, NULL, NULL);
  }
  svc->rpc_timeout_ms = c->rpc_timeout_ms;
  /* Clients and the publisher connect in the background: the service starts
   * (and answers health) while its upstreams or Redis are still away. */
  proto_rpc_client_opts_t co = {.timeout_ms = c->rpc_timeout_ms};
  for (unsigned i = 0; i < def->n_upstreams; i++) {
    svc->upstream[i] = proto_rpc_client_new(&app->loop, def->upstreams[i].name,
                                            c->upstream_host[i], c->upstream_port[i], &co);
    svc->n_upstreams = i + 1;
    if (!svc->upstream[i])
      return fail("create the upstream clients");
  }
  if ((def->flags & SVC_PUBLISHER) == SVC_PUBLISHER &&
      !(svc->pub = proto_events_pub_new(&app->loop, &c->redis)))
    return fail("create the event publisher");
  if ((def->flags & SVC_OUTBOX) == SVC_OUTBOX && start_outbox(app, store) != 0)
    return -1;
  if (!(app->srv = proto_rpc_server_new(&app->loop, &c->server)))
    return fail("create the RPC server");
  /* The stop hooks run also after a start() that failed half-way: they
   * close what it made. */
  app->started = 1;
  if (def->setup)
    def->setup(svc);
  if (def->start && def->start(svc, c, app->srv) != 0)
    return -1; /* logged by the service */
  if (def->handlers_register(app->srv, svc) != 0)
    return fail("register handlers");
  if (proto_rpc_server_listen(app->srv, c->listen_host, c->port) != 0)
    return -1;
  if (proto_daemon_init(&app->daemon, &app->loop, on_stop, app) != 0)
    return fail("watch signals");
  app->daemon_ready = 1;
  return 0;
}

int svc_main(int argc, char **argv, const svc_def_t *def) {
  static app_t app;
  static char usage[USAGE_MAX_BYTES];
  static char name[DAEMON_NAME_MAX_BYTES];
  int loop_ready = 0, status = EXIT_FAILURE;

  /* --version: the store is SQLite, so a service with one runs on it too;
   * then the service's own libraries. */
  proto_daemon_lib_t libs[1 + SVC_LIBS_MAX];
  size_t n_libs = 0;
  if (def->store)
    libs[n_libs++] = (proto_daemon_lib_t){"sqlite", sqlite3_libversion()};
  for (unsigned i = 0; i < def->n_libs && i < SVC_LIBS_MAX; i++)
    libs[n_libs++] = (proto_daemon_lib_t){def->libs[i].name, def->libs[i].version()};
  snprintf(name, sizeof(name), "%s-service", def->name);
  proto_daemon_set_version(name, n_libs ? libs : NULL, n_libs);
  build_usage(def, usage, sizeof(usage));
  int a = proto_daemon_args(argc, argv, usage);
  if (a == PROTO_DAEMON_HEALTH_PROBE)
    return health_probe(def);
  if (a != 0)
    return a > 0 ? EXIT_SUCCESS : 2;
  if (proto_log_init(def->name) != 0)
    return EXIT_FAILURE; /* a bad LOG_LEVEL, reported */
  app.def = def;
  if (read_config(def, &app.cfg) != 0 || (def->configure && def->configure() != 0))
    goto out;
  if (uv_loop_init(&app.loop) != 0)
    goto out;
  loop_ready = 1;
  if (start(&app) != 0)
    goto out;
  proto_daemon_announce("rpc", app.cfg.listen_host, proto_rpc_server_port(app.srv));
  /* Returns once the server, the clients, the publisher and the service's
   * own handles are closed (an idle commit group keeps no handle active). */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  status = EXIT_SUCCESS;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
out:
  if (loop_ready) {
    /* After a failed start-up, let what exists free itself. */
    stop_all(&app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.svc.group) {
    /* Commits what is open and runs what waits for it (nothing is left
     * after a clean stop), then closes its handles, which needs the loop
     * once more. Before the store: the group borrows its connection. */
    store_group_close(app.svc.group);
    app.svc.group = NULL;
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.daemon_ready)
    proto_daemon_close(&app.daemon);
  if (app.started && def->finish)
    def->finish(&app.svc);
  /* The relay is gone (closed with the publisher, freed by the group's
   * close at the latest); its statements go before the connection. */
  store_outbox_close(app.svc.outbox);
  app.svc.outbox = NULL;
  store_close(app.svc.store); /* NULL (no store, or not opened) is a no-op */
  if (loop_ready && proto_daemon_loop_teardown(&app.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "teardown_failed", "loop still had open handles");
    status = EXIT_FAILURE;
  }
  return status;
}
