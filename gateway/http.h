/* http.h: the gateway's HTTP server: libmicrohttpd driven from a libuv loop.
 *
 * MHD runs in external epoll mode: its epoll fd is watched with a uv_poll,
 * and after every MHD_run() a uv_timer is re-armed from MHD_get_timeout().
 * A request waiting for an upstream is suspended (MHD_suspend_connection) and
 * resumed from the RPC callback, so nothing ever blocks the loop.
 *
 * Shutdown, in this order (MHD_stop_daemon() aborts while a connection is
 * suspended): gw_http_quiesce() stops accepting; gw_upstreams_close()
 * completes every pending call (-> 503, requests resumed); gw_http_close()
 * sends what is queued, stops MHD, closes the handles, then calls done.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "upstreams.h"

#define GW_MAX_BODY_BYTES_DEFAULT (1024u * 1024u)
/* Idle keep-alive connections are closed after this long. */
#define GW_HTTP_IDLE_TIMEOUT_S 30u
#define GW_HTTP_MAX_CONNECTIONS 4096u
/* How long gw_http_close() waits for in-progress requests. */
#define GW_HTTP_DRAIN_TIMEOUT_MS 5000u
/* Deadline of each upstream's `health` call for /ready. */
#define GW_READY_TIMEOUT_MS 2000u

typedef struct gw_http gw_http_t;

typedef struct gw_http_opts {
  const char *host;           /* bind address (numeric or a name), e.g. 127.0.0.1 */
  int port;                   /* 0: ephemeral, see gw_http_port() */
  size_t max_body_bytes;      /* 413 above this; 0: default */
  uint32_t rpc_timeout_ms;    /* per call; 0: the client's default */
} gw_http_opts_t;

/* Bind, listen and start serving on loop. upstreams is borrowed and must
 * outlive the server. Returns NULL on failure (logged). */
gw_http_t *gw_http_start(uv_loop_t *loop, const gw_http_opts_t *opts,
                         gw_upstreams_t *upstreams);

/* The bound port. */
int gw_http_port(const gw_http_t *h);

/* Stop accepting connections; requests already accepted go on. */
void gw_http_quiesce(gw_http_t *h);

/* Finish the requests in progress (every response from now on says
 * "Connection: close"), stop MHD, close the handles and free the server, then
 * call done (may be NULL). Call after the upstreams are closed. */
void gw_http_close(gw_http_t *h, void (*done)(void *arg), void *arg);

#endif
