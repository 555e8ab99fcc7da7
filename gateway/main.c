/* main.c: the gateway daemon: configuration from the environment, start-up
 * (upstream clients, HTTP server, the "listening" announcement) and the
 * graceful stop on SIGTERM/SIGINT. Everything else lives in gateway_core. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <uv.h>

#include "http.h"
#include "proto/config.h"
#include "proto/daemon.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/log.h"
#include "proto/rpc_client.h"
#include "upstreams.h"

#define GW_PORT_DEFAULT 3000
#define GW_MAX_BODY_BYTES_LIMIT (1024ull * 1024u * 1024u)
#define GW_RPC_TIMEOUT_MS_LIMIT 3600000ull
#define GW_HEALTH_PROBE_TIMEOUT_MS 3000
#define GW_USAGE_BYTES 4096

typedef struct gateway {
  uv_loop_t loop;
  proto_daemon_t daemon;
  gw_upstreams_t ups;
  gw_http_t *http;        /* NULL once closed */
} gateway_t;

static void usage_text(char *buf, size_t size) {
  size_t n;
  const gw_upstream_spec_t *specs = gw_upstream_specs(&n);
  int off = snprintf(buf, size,
      "Usage: gateway [--help] [--version] [--health]\n"
      "\n"
      "HTTP gateway: serves the public REST API and forwards each request to its\n"
      "service over the NestJS TCP transport.\n"
      "\n"
      "Options:\n"
      "  --help       this text\n"
      "  --version    print the version\n"
      "  --health     probe GET /health on the configured address; exit 0 if healthy\n"
      "\n"
      "Environment:\n"
      "  LISTEN_HOST             bind address (default 127.0.0.1)\n"
      "  GATEWAY_PORT            HTTP port (default %d; 0 = ephemeral, announced)\n"
      "  GATEWAY_MAX_BODY_BYTES  largest request body, else 413 (default %u)\n"
      "  RPC_TIMEOUT_MS          deadline of each upstream call, else 504 (default %u)\n"
      "  RPC_MAX_FRAME_BYTES     largest reply frame accepted (default %u)\n"
      "  LOG_LEVEL               debug|info|warn|error (default info)\n",
      GW_PORT_DEFAULT, GW_MAX_BODY_BYTES_DEFAULT, PROTO_RPC_TIMEOUT_MS_DEFAULT,
      PROTO_MAX_FRAME_BYTES_DEFAULT);
  for (size_t i = 0; i < n && off > 0 && (size_t)off < size; i++)
    off += snprintf(buf + off, size - (size_t)off,
                    "  %-23s %s service host (default 127.0.0.1)\n"
                    "  %-23s %s service port (default %d)\n",
                    specs[i].host_env, specs[i].name, specs[i].port_env, specs[i].name,
                    specs[i].default_port);
}

/* --health: GET /health over a plain blocking socket (a container probe runs
 * once, no loop needed). Exit status 0 when the answer is 200. */
static int health_probe(const char *host, int port) {
  struct addrinfo hints, *ai = NULL;
  char portstr[8], buf[64];
  int fd = -1, ok = 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (strcmp(host, "0.0.0.0") == 0)
    host = "127.0.0.1";
  else if (strcmp(host, "::") == 0)
    host = "::1";
  snprintf(portstr, sizeof(portstr), "%d", port);
  if (getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai)
    goto out;
  fd = socket(ai->ai_family, SOCK_STREAM, 0);
  struct timeval tv = {GW_HEALTH_PROBE_TIMEOUT_MS / 1000, 0};
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
      connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    goto out;
  static const char req[] = "GET /health HTTP/1.0\r\nX-Request-Id: health-probe\r\n\r\n";
  if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
    goto out;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = '\0';
    ok = strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0;
  }
out:
  if (fd >= 0)
    close(fd);
  if (ai)
    freeaddrinfo(ai);
  if (!ok)
    fprintf(stderr, "health: GET http://%s:%d/health failed\n", host, port);
  return ok ? 0 : 1;
}

static void on_http_closed(void *arg) {
  gateway_t *g = arg;
  g->http = NULL;
  proto_log(PROTO_LOG_INFO, NULL, "stopped", NULL);
}

/* SIGTERM/SIGINT: stop accepting, cancel the calls in flight (their requests
 * get 503), flush the responses, stop. The loop then runs out of handles. */
static void on_stop(void *arg) {
  gateway_t *g = arg;
  gw_http_quiesce(g->http);
  gw_upstreams_close(&g->ups);
  gw_http_close(g->http, on_http_closed, g);
  proto_daemon_close(&g->daemon);
}

int main(int argc, char **argv) {
  static gateway_t g;
  char usage[GW_USAGE_BYTES];
  uint64_t max_body, rpc_timeout, max_frame;
  int port, rc, status = 1;

  const proto_daemon_lib_t libs[] = {{"libmicrohttpd", MHD_get_version()}};
  const char *host;
  usage_text(usage, sizeof(usage));
  proto_daemon_set_version("gateway", libs, sizeof(libs) / sizeof(libs[0]));
  rc = proto_daemon_args(argc, argv, usage);
  if (rc < 0)
    return 2;
  if (rc == 1)
    return 0;
  if (proto_log_init("gateway") != 0 ||
      /* MHD binds what getaddrinfo gives: a name works too */
      proto_config_host("LISTEN_HOST", "127.0.0.1", &host) != 0 ||
      proto_config_port("GATEWAY_PORT", GW_PORT_DEFAULT, &port) != 0)
    return 1;
  if (rc == PROTO_DAEMON_HEALTH_PROBE)
    return health_probe(host, port);
  if (proto_config_u64("GATEWAY_MAX_BODY_BYTES", GW_MAX_BODY_BYTES_DEFAULT, 1,
                       GW_MAX_BODY_BYTES_LIMIT, &max_body) != 0 ||
      proto_config_u64("RPC_TIMEOUT_MS", PROTO_RPC_TIMEOUT_MS_DEFAULT, 1,
                       GW_RPC_TIMEOUT_MS_LIMIT, &rpc_timeout) != 0 ||
      proto_config_u64("RPC_MAX_FRAME_BYTES", PROTO_MAX_FRAME_BYTES_DEFAULT, 64,
                       GW_MAX_BODY_BYTES_LIMIT, &max_frame) != 0 ||
      gw_upstreams_config(&g.ups) != 0)
    return 1;

  if (uv_loop_init(&g.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "start_failed", "uv_loop_init failed");
    return 1;
  }
  proto_rpc_client_opts_t copts = {
      .timeout_ms = (unsigned)rpc_timeout,
      .max_frame_bytes = (size_t)max_frame,
  };
  gw_http_opts_t hopts = {
      .host = host,
      .port = port,
      .max_body_bytes = (size_t)max_body,
      .rpc_timeout_ms = (uint32_t)rpc_timeout,
  };
  if (gw_upstreams_open(&g.ups, &g.loop, &copts) != 0)
    goto out;
  if (!(g.http = gw_http_start(&g.loop, &hopts, &g.ups)))
    goto out;
  if (proto_daemon_init(&g.daemon, &g.loop, on_stop, &g) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "start_failed", "cannot watch signals");
    goto out;
  }
  for (size_t i = 0; i < g.ups.count; i++)
    proto_log(PROTO_LOG_INFO, NULL, "upstream", "%s at %s:%d", g.ups.items[i].spec->name,
              g.ups.items[i].host, g.ups.items[i].port);
  proto_daemon_announce("http", host, gw_http_port(g.http));
  uv_run(&g.loop, UV_RUN_DEFAULT);
  status = 0;
out:
  if (status != 0) {
    gw_upstreams_close(&g.ups);
    if (g.http) {
      gw_http_close(g.http, on_http_closed, &g);
    }
  }
  if (proto_daemon_loop_teardown(&g.loop) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "stop_failed", "loop still busy at exit");
    status = status ? status : 1;
  }
  return status;
}
