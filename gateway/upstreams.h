/* upstreams.h: the registry of services the gateway calls, name -> client.
 *
 * Each upstream is one row in upstreams.c: {name, host variable, port
 * variable, default port}. Routes name their upstream; /ready asks them all.
 * After gw_upstreams_close() every lookup returns NULL (callers answer 503).
 */
#ifndef GW_UPSTREAMS_H
#define GW_UPSTREAMS_H

#include <stddef.h>
#include <uv.h>

#include "proto/rpc_client.h"

#define GW_MAX_UPSTREAMS 8
#define GW_UPSTREAM_HOST_MAX 256

typedef struct gw_upstream_spec {
  const char *name;      /* "user": routes refer to it */
  const char *host_env;  /* "USER_SERVICE_HOST" (default 127.0.0.1) */
  const char *port_env;  /* "USER_SERVICE_PORT" */
  int default_port;
} gw_upstream_spec_t;

typedef struct gw_upstream {
  const gw_upstream_spec_t *spec;
  char host[GW_UPSTREAM_HOST_MAX];
  int port;
  proto_rpc_client_t *cli;  /* NULL before open and after close */
} gw_upstream_t;

typedef struct gw_upstreams {
  size_t count;
  gw_upstream_t items[GW_MAX_UPSTREAMS];
} gw_upstreams_t;

/* The specs, for --help. */
const gw_upstream_spec_t *gw_upstream_specs(size_t *count);

/* Read every upstream's host and port from the environment. 0 or PROTO_EINVAL
 * (logged). */
int gw_upstreams_config(gw_upstreams_t *u);

/* Create a client for each (connections start at once). 0 or PROTO_ENOMEM;
 * on error the ones created are closed. */
int gw_upstreams_open(gw_upstreams_t *u, uv_loop_t *loop,
                      const proto_rpc_client_opts_t *opts);

/* The client for name, or NULL (unknown name, or closed). */
proto_rpc_client_t *gw_upstreams_get(const gw_upstreams_t *u, const char *name);

/* Close every client: their pending calls complete with PROTO_ECANCELED
 * inside this call. Idempotent. */
void gw_upstreams_close(gw_upstreams_t *u);

#endif
