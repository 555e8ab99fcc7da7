/* proto/rpc_server.h: the RPC server of a daemon, on its libuv loop.
 *
 * Accepts many connections, reads frames, and dispatches requests and events
 * to handlers registered by pattern. A request handler receives a call handle
 * and must answer it exactly once, now or later (e.g. after calling another
 * service): proto_rpc_call_reply*() consumes the handle. If the connection
 * closed meanwhile the reply is dropped silently; the handle stays valid until
 * answered. Events (no id) go to event handlers and are never answered.
 *
 * Unknown request patterns get NestJS's "no matching message handler" reply;
 * unknown events are logged. A malformed frame closes the connection with a
 * logged reason, after answering the requests that were complete before it.
 * metadata.timeoutMs is honoured: a request whose budget is already spent is
 * answered 504 without running its handler.
 */
#ifndef PROTO_RPC_SERVER_H
#define PROTO_RPC_SERVER_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#define PROTO_INCOMPLETE_FRAME_TIMEOUT_MS_DEFAULT 30000u
#define PROTO_RPC_DRAIN_TIMEOUT_MS_DEFAULT 10000u

typedef struct proto_rpc_server proto_rpc_server_t;
typedef struct proto_rpc_call proto_rpc_call_t;

typedef struct proto_rpc_server_opts {
  size_t max_frame_bytes;                /* 0: RPC_MAX_FRAME_BYTES default */
  unsigned incomplete_frame_timeout_ms;  /* 0: default */
} proto_rpc_server_opts_t;

/* Fill opts from RPC_MAX_FRAME_BYTES and RPC_INCOMPLETE_FRAME_TIMEOUT_MS.
 * 0 or PROTO_EINVAL (logged). */
int proto_rpc_server_opts_from_env(proto_rpc_server_opts_t *opts);

/* data and metadata are borrowed for the duration of the call; take a
 * reference (json_incref) to keep them. */
typedef void (*proto_rpc_handler_fn)(proto_rpc_call_t *call, const json_t *data,
                                     void *ctx);
typedef void (*proto_event_handler_fn)(const json_t *data, const json_t *metadata,
                                       void *ctx);

/* NULL on ENOMEM. opts may be NULL (defaults). */
proto_rpc_server_t *proto_rpc_server_new(uv_loop_t *loop,
                                         const proto_rpc_server_opts_t *opts);

/* Register a request handler for {"cmd":cmd}. 0, PROTO_EINVAL (duplicate) or
 * PROTO_ENOMEM. */
int proto_rpc_server_handle_cmd(proto_rpc_server_t *srv, const char *cmd,
                                proto_rpc_handler_fn fn, void *ctx);
/* Register a request handler for any pattern (normalised here). */
int proto_rpc_server_handle(proto_rpc_server_t *srv, const json_t *pattern,
                            proto_rpc_handler_fn fn, void *ctx);
/* Register an event handler for a string pattern. */
int proto_rpc_server_on_event(proto_rpc_server_t *srv, const char *pattern,
                              proto_event_handler_fn fn, void *ctx);

/* Bind and listen. port 0 picks an ephemeral port; see proto_rpc_server_port.
 * 0 or PROTO_EIO (logged with the libuv reason). */
int proto_rpc_server_listen(proto_rpc_server_t *srv, const char *host, int port);
int proto_rpc_server_port(const proto_rpc_server_t *srv);

/* Number of requests whose handler has not answered yet. */
size_t proto_rpc_server_inflight(const proto_rpc_server_t *srv);

/* Graceful shutdown: stop accepting, let in-flight calls answer (up to
 * drain_timeout_ms, 0 = default), close every connection, then call done_cb
 * (may be NULL) and free the server. Safe to call once. */
void proto_rpc_server_shutdown(proto_rpc_server_t *srv, unsigned drain_timeout_ms,
                               void (*done_cb)(void *arg), void *arg);

/* --- the call handle ---------------------------------------------------- */

/* The requestId from metadata (or NULL). Valid until the call is answered. */
const char *proto_rpc_call_request_id(const proto_rpc_call_t *call);
/* The request's metadata object (or NULL), borrowed like data. */
const json_t *proto_rpc_call_metadata(const proto_rpc_call_t *call);
/* Milliseconds left of the caller's budget (metadata.timeoutMs counted from
 * arrival), or UINT32_MAX when the caller gave none. 0 when spent. */
uint32_t proto_rpc_call_remaining_ms(const proto_rpc_call_t *call);
/* The loop the server runs on (for handlers that start async work). */
uv_loop_t *proto_rpc_call_loop(const proto_rpc_call_t *call);

/* Answer with response (stolen; NULL = void reply). Consumes the call. */
void proto_rpc_call_reply(proto_rpc_call_t *call, json_t *response);
/* Answer with an error object (stolen), e.g. from proto_error_object().
 * Consumes the call. */
void proto_rpc_call_reply_err(proto_rpc_call_t *call, json_t *err);
/* Shorthand: proto_rpc_call_reply_err(call, proto_error_object(...)). */
void proto_rpc_call_fail(proto_rpc_call_t *call, int status, const char *code,
                         const char *message);

#endif
