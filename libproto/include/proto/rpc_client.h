/* proto/rpc_client.h: the RPC client, on the caller's libuv loop.
 *
 * Connects to host:port over one or more connections, multiplexes concurrent
 * calls and matches replies by id. Every call completes exactly once, with a
 * status: PROTO_OK (reply), PROTO_EREMOTE (error reply: `err` set),
 * PROTO_ETIMEDOUT (its deadline passed after it was written), PROTO_ECONNLOST
 * (connection lost while in flight), PROTO_EUNAVAIL (no connection to the
 * peer came up: the call was never written, also when its deadline passed
 * while it waited for one) or PROTO_ECANCELED (client closed). The result and
 * the JSON it points to are borrowed for the duration of the callback only.
 *
 * The first connection attempt starts in proto_rpc_client_new(); after a
 * failure or a lost connection the client retries with exponential backoff.
 * A call that finds no connection up does not fail for that alone: it waits,
 * within its own deadline, for the attempt in progress, or, when the backoff
 * is all that holds the next attempt, starts one now (from the loop, never
 * inside send) and waits for it. So the first call after the peer comes up,
 * in whatever order the two were started, goes out on the new connection.
 * Only while the peer is known down, from the failure of an attempt that
 * calls were waiting for until 100 ms later or the next attempt starts,
 * whichever comes first, do calls fail at once with PROTO_EUNAVAIL (a gateway answers 503 rather than queueing a
 * burst behind attempts that will fail). A refused connection fails its
 * waiting calls within a loop turn or two; a peer that drops SYNs holds them
 * up to the connect timeout (2 s by default) or their deadline.
 *
 * If proto_rpc_client_send() returns an error, the callback will not run.
 */
#ifndef PROTO_RPC_CLIENT_H
#define PROTO_RPC_CLIENT_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#define PROTO_RPC_TIMEOUT_MS_DEFAULT 5000u
#define PROTO_RPC_CONNECT_TIMEOUT_MS_DEFAULT 2000u
#define PROTO_RPC_BACKOFF_MIN_MS_DEFAULT 50u
#define PROTO_RPC_BACKOFF_MAX_MS_DEFAULT 2000u

typedef struct proto_rpc_client proto_rpc_client_t;

typedef struct proto_rpc_client_opts {
  unsigned timeout_ms;          /* default per-call deadline; 0: 5000 */
  unsigned connect_timeout_ms;  /* 0: default */
  unsigned backoff_min_ms;      /* 0: default */
  unsigned backoff_max_ms;      /* 0: default */
  unsigned connections;         /* connections to keep open; 0: 1 */
  size_t max_frame_bytes;       /* 0: default */
} proto_rpc_client_opts_t;

typedef struct proto_rpc_result {
  int status;              /* PROTO_OK or a negative PROTO_E* code */
  const json_t *response;  /* PROTO_OK: the response, NULL for a void reply */
  const json_t *err;       /* PROTO_EREMOTE: the err value as sent */
} proto_rpc_result_t;

typedef void (*proto_rpc_cb)(const proto_rpc_result_t *res, void *arg);

/* name is for logs (e.g. "user"). NULL on ENOMEM or a bad argument. The first
 * connection attempt starts at once. */
proto_rpc_client_t *proto_rpc_client_new(uv_loop_t *loop, const char *name,
                                         const char *host, int port,
                                         const proto_rpc_client_opts_t *opts);

/* Send {"pattern":{"cmd":cmd},"data":data,"id":...,"metadata":{...}}.
 * data is stolen (also on error). request_id (may be NULL) goes into
 * metadata.requestId; timeout_ms 0 means the client's default; the remaining
 * budget goes into metadata.timeoutMs. 0, or PROTO_ENOMEM, PROTO_ECLOSED (the
 * client is closing), PROTO_EUNAVAIL (the peer is known down, see above: fail
 * fast, the caller answers 503) or PROTO_ECONNLOST (the write failed at
 * once). The callback never runs inside this function. */
int proto_rpc_client_send(proto_rpc_client_t *cli, const char *cmd, json_t *data,
                          const char *request_id, uint32_t timeout_ms,
                          proto_rpc_cb cb, void *arg);
/* The same for an arbitrary pattern (borrowed). */
int proto_rpc_client_send_pattern(proto_rpc_client_t *cli, const json_t *pattern,
                                  json_t *data, const char *request_id,
                                  uint32_t timeout_ms, proto_rpc_cb cb, void *arg);

/* Fire-and-forget event {"pattern":pattern,"data":data,"metadata":...}; data
 * stolen. Written on a ready connection, else PROTO_EUNAVAIL. */
int proto_rpc_client_emit(proto_rpc_client_t *cli, const char *pattern,
                          json_t *data, const char *request_id);

/* Non-zero when at least one connection is up. */
int proto_rpc_client_connected(const proto_rpc_client_t *cli);
/* Calls sent and not yet completed. */
size_t proto_rpc_client_pending(const proto_rpc_client_t *cli);

/* Complete every pending call with PROTO_ECANCELED (callbacks run inside this
 * function), close the connections and free the client once its handles are
 * closed. The client must not be used afterwards. */
void proto_rpc_client_close(proto_rpc_client_t *cli);

#endif
