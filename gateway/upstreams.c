/* upstreams.c: the services behind the gateway. Adding one (order, payment,
 * notification, inventory) is one row in specs[]; routes then name it. */
#include "upstreams.h"

#include <stdio.h>
#include <string.h>

#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

static const gw_upstream_spec_t specs[] = {
    {"user", "USER_SERVICE_HOST", "USER_SERVICE_PORT", 3001},
    {"order", "ORDER_SERVICE_HOST", "ORDER_SERVICE_PORT", 3002},
    {"payment", "PAYMENT_SERVICE_HOST", "PAYMENT_SERVICE_PORT", 3003},
    {"notification", "NOTIFICATION_SERVICE_HOST", "NOTIFICATION_SERVICE_PORT", 3004},
    {"inventory", "INVENTORY_SERVICE_HOST", "INVENTORY_SERVICE_PORT", 3005},
};

_Static_assert(sizeof(specs) / sizeof(specs[0]) <= GW_MAX_UPSTREAMS,
               "raise GW_MAX_UPSTREAMS");
/* A checked host (253 bytes, a trailing dot and the NUL) always fits. */
_Static_assert(GW_UPSTREAM_HOST_MAX >= PROTO_CONFIG_HOST_MAX_BYTES + 2,
               "raise GW_UPSTREAM_HOST_MAX");

const gw_upstream_spec_t *gw_upstream_specs(size_t *count) {
  *count = sizeof(specs) / sizeof(specs[0]);
  return specs;
}

int gw_upstreams_config(gw_upstreams_t *u) {
  memset(u, 0, sizeof(*u));
  u->count = sizeof(specs) / sizeof(specs[0]);
  for (size_t i = 0; i < u->count; i++) {
    gw_upstream_t *up = &u->items[i];
    up->spec = &specs[i];
    const char *host;
    /* Checked here, at start: an unusable host ("a,b") would otherwise
     * start a gateway that answers 503 to every request. */
    if (proto_config_host(specs[i].host_env, "127.0.0.1", &host) != 0 ||
        proto_config_peer_port(specs[i].port_env, specs[i].default_port, &up->port) != 0)
      return PROTO_EINVAL;
    snprintf(up->host, sizeof(up->host), "%s", host);
  }
  return 0;
}

int gw_upstreams_open(gw_upstreams_t *u, uv_loop_t *loop,
                      const proto_rpc_client_opts_t *opts) {
  for (size_t i = 0; i < u->count; i++) {
    gw_upstream_t *up = &u->items[i];
    up->cli = proto_rpc_client_new(loop, up->spec->name, up->host, up->port, opts);
    if (!up->cli) {
      proto_log(PROTO_LOG_ERROR, NULL, "upstream_failed", "cannot create the %s client",
                up->spec->name);
      gw_upstreams_close(u);
      return PROTO_ENOMEM;
    }
  }
  return 0;
}

proto_rpc_client_t *gw_upstreams_get(const gw_upstreams_t *u, const char *name) {
  if (!name)
    return NULL;
  for (size_t i = 0; i < u->count; i++)
    if (strcmp(u->items[i].spec->name, name) == 0)
      return u->items[i].cli;
  return NULL;
}

void gw_upstreams_close(gw_upstreams_t *u) {
  for (size_t i = 0; i < u->count; i++) {
    proto_rpc_client_t *cli = u->items[i].cli;
    /* NULL first: a callback run by the close must not find the client. */
    u->items[i].cli = NULL;
    if (cli)
      proto_rpc_client_close(cli);
  }
}
