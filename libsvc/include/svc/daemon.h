/* svc/daemon.h: the daemon every service is. A service's main.c is a table
 * (svc_def_t) and one call:
 *
 *   static const svc_upstream_def_t ups[] = {{"user", "USER", 3001}};
 *   static const svc_def_t def = {
 *     .name = "order", .about = "The order service: ...\n",
 *     .port_env = "ORDER_SERVICE_PORT", .port_default = 3002,
 *     .db_file = "order.db", .store = &order_store_schema,
 *     .flags = SVC_PUBLISHER, .upstreams = ups, .n_upstreams = 1,
 *     .start = order_start, .handlers_register = order_handlers_register,
 *   };
 *   int main(int argc, char **argv) { return svc_main(argc, argv, &def); }
 *
 * svc_main() prints --help (the service's text plus every shared setting),
 * --version ("<name>-service", libproto's libraries, and sqlite when the
 * service has a store), runs --health, reads the shared settings once
 * (LOG_LEVEL, LISTEN_HOST -- an IP literal --, the port, DATA_DIR,
 * SQLITE_SYNCHRONOUS, RPC_*, REDIS_*, the upstreams' *_SERVICE_HOST/PORT),
 * refusing a bad value with a message that names it, calls configure() for
 * the service's own settings (before anything is created or bound),
 * then opens the store and its commit group, the publisher and the upstream
 * clients, calls setup(), start() and handlers_register(), listens and
 * announces. On SIGTERM/SIGINT the stop
 * order is: stopping(), the server drains what is in flight, stopped(), the
 * upstream clients close, the publisher flushes for events_flush_ms; when
 * the loop has nothing left, the commit group commits and closes, finish(),
 * the store closes. Exit status 0 after a clean stop, 1 when start-up failed,
 * 2 for a bad argument.
 */
#ifndef SVC_DAEMON_H
#define SVC_DAEMON_H

#include <sqlite3.h>

#include "proto/events.h"
#include "proto/rpc_server.h"
#include "store/conn.h"
#include "svc/service.h"

#define SVC_LISTEN_HOST_DEFAULT "127.0.0.1"
#define SVC_DATA_DIR_DEFAULT "./var"
#define SVC_HEALTH_PROBE_TIMEOUT_MS 2000u
#define SVC_RPC_TIMEOUT_MS_MAX 600000u       /* largest RPC_TIMEOUT_MS accepted */
#define SVC_EVENTS_FLUSH_MS_DEFAULT 1000u    /* publisher flush at a stop */

/* def->flags */
#define SVC_REDIS 0x1u      /* reads REDIS_* (a subscriber of its own, say) */
#define SVC_PUBLISHER 0x3u  /* SVC_REDIS, and svc->pub publishes the events */
#define SVC_OUTBOX 0x7u     /* SVC_PUBLISHER, and the events go through the store's outbox
                             * table (svc/outbox.h): its schema must include
                             * STORE_OUTBOX_MIGRATION (store/outbox.h) */

/* A library the service links beyond libproto's and SQLite, for --version:
 * version() is called then (the library loaded at run time). */
typedef struct svc_lib {
  const char *name;                /* "libcurl" */
  const char *(*version)(void);
} svc_lib_t;
#define SVC_LIBS_MAX 4

/* An upstream service: the client reads <env>_SERVICE_HOST and
 * <env>_SERVICE_PORT. */
typedef struct svc_upstream_def {
  const char *name;                /* "user": in logs */
  const char *env;                 /* "USER" */
  int port_default;
} svc_upstream_def_t;

/* The shared settings, read once by svc_main(). */
typedef struct svc_config {
  const char *listen_host;
  int port;
  const char *data_dir;
  int sync;                        /* STORE_SYNC_* */
  unsigned rpc_timeout_ms;
  proto_rpc_server_opts_t server;
  proto_redis_opts_t redis;        /* with SVC_REDIS */
  const char *upstream_host[SVC_UPSTREAMS_MAX];
  int upstream_port[SVC_UPSTREAMS_MAX];
} svc_config_t;

typedef struct svc_def {
  const char *name;                /* "user": logs; the binary is "<name>-service" */
  const char *about;               /* what the service does: the usage's paragraph */
  const char *port_env;            /* "USER_SERVICE_PORT" */
  int port_default;
  const char *db_file;             /* under DATA_DIR, for the usage text */
  unsigned flags;                  /* SVC_REDIS, SVC_PUBLISHER */
  const char *redis_name;          /* the publisher's connection name in logs */
  unsigned events_flush_ms;        /* 0: SVC_EVENTS_FLUSH_MS_DEFAULT */
  const svc_upstream_def_t *upstreams;
  unsigned n_upstreams;            /* at most SVC_UPSTREAMS_MAX */
  const char *env_usage;           /* usage lines of the service's own settings, or NULL */
  const svc_lib_t *libs;           /* more --version lines, or NULL */
  unsigned n_libs;                 /* at most SVC_LIBS_MAX */

  /* The store, as its store.c describes it (store/conn.h): svc_main() opens
   * it under DATA_DIR with SQLITE_SYNCHRONOUS (svc->store is then the
   * service's store struct), runs the commit group on its connection and
   * closes it last. NULL: the service has no store. */
  const store_schema_t *store;

  /* Read and check the service's own settings (keep them in the service),
   * right after the shared ones: a bad value stops the daemon before the
   * store's directory is created or a port bound. 0, or -1 (logged, exit 1).
   * NULL: none. */
  int (*configure)(void);
  /* Set the service's log keys (svc->log_id_key, svc->log_fields): the
   * service's foo_svc_setup(). First of the three below. NULL: none. */
  void (*setup)(svc_t *svc);
  /* Use the service's own settings, set svc->app and start the service's own
   * parts. 0, or -1 (logged). NULL: nothing of its own. */
  int (*start)(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv);
  /* Register the handlers on srv with svc as their context, after start():
   * foo_handlers_register(). A failure is logged by svc_main() ("startup_failed",
   * "cannot register handlers"). Required. */
  int (*handlers_register)(proto_rpc_server_t *srv, svc_t *svc);
  /* The hooks below run after start() was called, also when it failed
   * half-way: they close what exists and skip what does not. */
  /* The first signal, before the server drains (stop taking new work). */
  void (*stopping)(svc_t *svc);
  /* The server has drained: close the service's own handles. */
  void (*stopped)(svc_t *svc);
  /* After the loop ended and the commit group closed, before the store. */
  void (*finish)(svc_t *svc);
} svc_def_t;

/* The daemon: returns the process's exit status. */
int svc_main(int argc, char **argv, const svc_def_t *def);

#endif
