/* rpc_server.c: the RPC server: accepts connections, reads frames, dispatches
 * requests and events to handlers by normalised pattern, and writes replies.
 * Connections and calls are reference-linked: a connection is freed only when
 * its handles are closed and no call taken from it is still unanswered. */
#include "proto/rpc_server.h"
#include "internal.h"
#include "proto/config.h"
#include "proto/cork.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/log.h"
#include "proto/packet.h"
#include "proto/pattern.h"
#include "proto/util.h"

#include <stdlib.h>
#include <string.h>

typedef struct handler {
  char *key;                    /* normalised pattern, owned */
  int is_event;
  proto_rpc_handler_fn fn;      /* requests */
  proto_event_handler_fn efn;   /* events */
  void *ctx;
} handler_t;

typedef enum { CONN_OPEN, CONN_CLOSING } conn_state_t;

typedef struct conn {
  uv_tcp_t tcp;                 /* first: the handle we get in callbacks */
  uv_timer_t frame_timer;       /* incomplete-frame deadline */
  proto_rpc_server_t *srv;
  proto_frame_reader_t reader;
  conn_state_t state;
  int handles_open;             /* tcp + frame_timer until both close callbacks ran */
  size_t calls;                 /* calls taken from this connection, unanswered */
  int paused;                   /* reading stopped for write backpressure */
  proto__outbuf_t out;          /* replies corked during a burst */
  struct conn *prev, *next;     /* server's connection list */
  char peer[72];
} conn_t;

struct proto_rpc_call {
  proto_rpc_server_t *srv;
  conn_t *conn;
  proto_request_t req;          /* owns the JSON the handler borrows */
  const char *request_id;       /* borrowed from req.metadata */
  uint64_t deadline_ms;         /* 0: the caller gave no budget */
};

struct proto_rpc_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t drain_timer;
  size_t max_frame;
  unsigned incomplete_ms;
  handler_t *handlers;          /* a handful per service: a linear scan is the index */
  size_t nhandlers;
  conn_t *conns;
  size_t inflight;
  int port;
  int listening;
  int handles_open;             /* listener + drain_timer */
  int shutting_down;
  int drained;                  /* shutdown: every call answered, conns closing */
  void (*done_cb)(void *arg);
  void *done_arg;
};

static void conn_close(conn_t *c, const char *why);
static void server_maybe_done(proto_rpc_server_t *srv);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

int proto_rpc_server_opts_from_env(proto_rpc_server_opts_t *opts) {
  uint64_t max_frame, incomplete;
  memset(opts, 0, sizeof(*opts));
  if (proto_config_u64("RPC_MAX_FRAME_BYTES", PROTO_MAX_FRAME_BYTES_DEFAULT, 16,
                       1024u * 1024u * 1024u, &max_frame) != 0 ||
      proto_config_u64("RPC_INCOMPLETE_FRAME_TIMEOUT_MS",
                       PROTO_INCOMPLETE_FRAME_TIMEOUT_MS_DEFAULT, 1, 86400000u,
                       &incomplete) != 0)
    return PROTO_EINVAL;
  opts->max_frame_bytes = (size_t)max_frame;
  opts->incomplete_frame_timeout_ms = (unsigned)incomplete;
  return 0;
}

static void free_server_on_close(uv_handle_t *h) {
  free(h->data);
}

proto_rpc_server_t *proto_rpc_server_new(uv_loop_t *loop,
                                         const proto_rpc_server_opts_t *opts) {
  proto_rpc_server_t *srv = calloc(1, sizeof(*srv));
  if (!srv)
    return NULL;
  srv->loop = loop;
  srv->max_frame = (opts && opts->max_frame_bytes) ? opts->max_frame_bytes
                                                   : PROTO_MAX_FRAME_BYTES_DEFAULT;
  srv->incomplete_ms = (opts && opts->incomplete_frame_timeout_ms)
                           ? opts->incomplete_frame_timeout_ms
                           : PROTO_INCOMPLETE_FRAME_TIMEOUT_MS_DEFAULT;
  if (uv_tcp_init(loop, &srv->listener) != 0) {
    free(srv);
    return NULL;
  }
  if (uv_timer_init(loop, &srv->drain_timer) != 0) {
    srv->listener.data = srv;
    uv_close((uv_handle_t *)&srv->listener, free_server_on_close);
    return NULL;
  }
  srv->listener.data = srv;
  srv->drain_timer.data = srv;
  srv->handles_open = 2;
  return srv;
}

static handler_t *find_handler(proto_rpc_server_t *srv, const char *key, int is_event) {
  for (size_t i = 0; i < srv->nhandlers; i++)
    if (srv->handlers[i].is_event == is_event && strcmp(srv->handlers[i].key, key) == 0)
      return &srv->handlers[i];
  return NULL;
}

static int add_handler(proto_rpc_server_t *srv, char *key, int is_event,
                       proto_rpc_handler_fn fn, proto_event_handler_fn efn, void *ctx) {
  if (!key)
    return PROTO_ENOMEM;
  if (find_handler(srv, key, is_event)) {
    free(key);
    return PROTO_EINVAL;
  }
  handler_t *h = realloc(srv->handlers, (srv->nhandlers + 1) * sizeof(*h));
  if (!h) {
    free(key);
    return PROTO_ENOMEM;
  }
  srv->handlers = h;
  h[srv->nhandlers++] = (handler_t){key, is_event, fn, efn, ctx};
  return 0;
}

int proto_rpc_server_handle(proto_rpc_server_t *srv, const json_t *pattern,
                            proto_rpc_handler_fn fn, void *ctx) {
  return add_handler(srv, proto_pattern_key(pattern), 0, fn, NULL, ctx);
}

int proto_rpc_server_handle_cmd(proto_rpc_server_t *srv, const char *cmd,
                                proto_rpc_handler_fn fn, void *ctx) {
  json_t *p = proto_pattern_cmd(cmd);
  if (!p)
    return PROTO_ENOMEM;
  int rc = proto_rpc_server_handle(srv, p, fn, ctx);
  json_decref(p);
  return rc;
}

int proto_rpc_server_on_event(proto_rpc_server_t *srv, const char *pattern,
                              proto_event_handler_fn fn, void *ctx) {
  json_t *p = json_string(pattern);
  if (!p)
    return PROTO_ENOMEM;
  int rc = add_handler(srv, proto_pattern_key(p), 1, NULL, fn, ctx);
  json_decref(p);
  return rc;
}

/* --- connections ---------------------------------------------------------- */

static void conn_free_if_done(conn_t *c) {
  if (c->handles_open > 0 || c->calls > 0)
    return;
  proto_rpc_server_t *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  proto_frame_reader_free(&c->reader);
  proto__outbuf_free(&c->out);
  free(c);
  server_maybe_done(srv);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->handles_open--;
  conn_free_if_done(c);
}

static void conn_close(conn_t *c, const char *why) {
  if (c->state == CONN_CLOSING)
    return;
  c->state = CONN_CLOSING;
  /* Replies to the frames before a bad one still go out, ahead of the close. */
  proto__outbuf_flush(&c->out);
  if (why)
    proto_log(PROTO_LOG_WARN, NULL, "connection_closed", "peer %s: %s", c->peer, why);
  else
    proto_log(PROTO_LOG_DEBUG, NULL, "connection_closed", "peer %s", c->peer);
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->frame_timer, on_conn_handle_closed);
}

static void on_conn_written(uv_stream_t *s) {
  conn_t *c = s->data;
  if (c->paused && c->state == CONN_OPEN && !c->srv->shutting_down &&
      uv_stream_get_write_queue_size(s) < PROTO__WRITE_QUEUE_HIGH_BYTES / 2) {
    c->paused = 0;
    if (uv_read_start(s, on_alloc, on_read) != 0)
      conn_close(c, "read restart failed");
  }
}

static void conn_write(conn_t *c, const json_t *packet) {
  if (c->state != CONN_OPEN)
    return; /* the caller went away; the answer has nowhere to go */
  if (proto__write_packet(&c->out, (uv_stream_t *)&c->tcp, packet, on_conn_written) != 0) {
    conn_close(c, "write failed");
    return;
  }
  if (!c->paused &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > PROTO__WRITE_QUEUE_HIGH_BYTES) {
    /* The peer sends faster than it reads its replies: stop reading until it
     * catches up rather than buffering without bound. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->paused = 1;
  }
}

/* --- calls ------------------------------------------------------------------ */

static void call_finish(proto_rpc_call_t *call, json_t *packet) {
  conn_t *c = call->conn;
  proto_rpc_server_t *srv = call->srv;
  if (packet) {
    conn_write(c, packet);
    json_decref(packet);
  }
  proto_request_free(&call->req);
  free(call);
  c->calls--;
  srv->inflight--;
  if (c->handles_open == 0 && c->calls == 0)
    conn_free_if_done(c); /* also checks whether the server is done */
  else
    server_maybe_done(srv);
}

const char *proto_rpc_call_request_id(const proto_rpc_call_t *call) {
  return call->request_id;
}

const json_t *proto_rpc_call_metadata(const proto_rpc_call_t *call) {
  return call->req.metadata;
}

uint32_t proto_rpc_call_remaining_ms(const proto_rpc_call_t *call) {
  if (call->deadline_ms == 0)
    return UINT32_MAX;
  uint64_t now = proto_now_ms();
  if (now >= call->deadline_ms)
    return 0;
  uint64_t left = call->deadline_ms - now;
  return left >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)left;
}

uv_loop_t *proto_rpc_call_loop(const proto_rpc_call_t *call) {
  return call->srv->loop;
}

void proto_rpc_call_reply(proto_rpc_call_t *call, json_t *response) {
  call_finish(call, proto_packet_reply(call->req.id, response));
}

void proto_rpc_call_reply_err(proto_rpc_call_t *call, json_t *err) {
  call_finish(call, proto_packet_reply_err(call->req.id, err));
}

void proto_rpc_call_fail(proto_rpc_call_t *call, int status, const char *code,
                         const char *message) {
  proto_rpc_call_reply_err(call, proto_error_object(status, code, message, NULL));
}

/* --- dispatch -------------------------------------------------------------- */

static void dispatch_event(conn_t *c, proto_request_t *req) {
  handler_t *h = find_handler(c->srv, req->pattern_key, 1);
  if (!h) {
    proto_log(PROTO_LOG_WARN, proto_request_meta(req, "requestId"), "unknown_event",
              "no handler for event %s from %s", req->pattern_key, c->peer);
  } else {
    h->efn(req->data, req->metadata, h->ctx);
  }
  proto_request_free(req);
}

static void dispatch_request(conn_t *c, proto_request_t *req) {
  proto_rpc_server_t *srv = c->srv;
  handler_t *h = find_handler(srv, req->pattern_key, 0);
  if (!h) {
    proto_log(PROTO_LOG_WARN, proto_request_meta(req, "requestId"), "unknown_pattern",
              "no handler for %s from %s", req->pattern_key, c->peer);
    json_t *reply = proto_packet_reply_no_handler(req->id);
    if (reply)
      conn_write(c, reply);
    json_decref(reply);
    proto_request_free(req);
    return;
  }
  proto_rpc_call_t *call = calloc(1, sizeof(*call));
  if (!call) {
    proto_request_free(req);
    conn_close(c, "out of memory");
    return;
  }
  call->srv = srv;
  call->conn = c;
  call->req = *req; /* the call owns the request from here on */
  call->request_id = proto_request_meta(&call->req, "requestId");
  c->calls++;
  srv->inflight++;
  uint64_t budget;
  if (proto__meta_u64(call->req.metadata, "timeoutMs", &budget)) {
    if (budget == 0) {
      /* Work that cannot finish in the caller's budget is not started. */
      proto_rpc_call_fail(call, 504, "DEADLINE_EXCEEDED",
                          "The caller's deadline had passed before the request started");
      return;
    }
    call->deadline_ms = proto_now_ms() + budget;
  }
  h->fn(call, call->req.data, h->ctx);
}

static int dispatch_frame(conn_t *c, const char *json, size_t len) {
  proto_request_t req;
  const char *why = NULL;
  if (proto_request_decode(json, len, &req, &why) != 0) {
    conn_close(c, why ? why : "malformed packet");
    return -1;
  }
  if (proto_json_has_nul(req.root)) {
    const char *rid = proto_request_meta(&req, "requestId");
    proto_log(PROTO_LOG_WARN, rid, "nul_in_string", "%s %s from %s refused: a string holds U+0000",
              req.id ? "request" : "event", req.pattern_key, c->peer);
    if (req.id) {
      json_t *reply = proto_packet_reply_err(
          req.id, proto_error_object(400, "VALIDATION_FAILED",
                                     "strings must not contain the character U+0000", NULL));
      if (reply)
        conn_write(c, reply);
      json_decref(reply);
    }
    proto_request_free(&req);
    return 0;
  }
  if (req.id)
    dispatch_request(c, &req);
  else
    dispatch_event(c, &req);
  return 0;
}

static void on_frame_timeout(uv_timer_t *t) {
  conn_close(t->data, "incomplete frame timed out");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  char *p = NULL;
  size_t avail = 0;
  (void)suggested;
  if (proto_frame_reader_reserve(&c->reader, PROTO__READ_CHUNK_BYTES, &p, &avail) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
    return;
  }
  *buf = uv_buf_init(p, (unsigned)(avail > UINT32_MAX ? UINT32_MAX : avail));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  (void)buf;
  if (nread < 0) {
    conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
    return;
  }
  if (nread == 0)
    return;
  proto_frame_reader_commit(&c->reader, (size_t)nread);
  const char *json;
  size_t len;
  int rc;
  /* One read's answers leave in one write. Frames that completed before a
   * malformed one are answered first. */
  proto_cork();
  while (c->state == CONN_OPEN && (rc = proto_frame_reader_next(&c->reader, &json, &len)) == 1)
    if (dispatch_frame(c, json, len) != 0)
      break;
  if (c->state == CONN_OPEN) {
    if (rc < 0) {
      const char *why = proto_frame_reader_why(&c->reader);
      conn_close(c, why ? why : proto_strerror(rc));
    } else if (proto_frame_reader_partial(&c->reader)) {
      uv_timer_start(&c->frame_timer, on_frame_timeout, c->srv->incomplete_ms, 0);
    } else {
      uv_timer_stop(&c->frame_timer);
    }
  }
  proto_uncork();
}

static void on_connection(uv_stream_t *listener, int status) {
  proto_rpc_server_t *srv = listener->data;
  if (status != 0) {
    proto_log(PROTO_LOG_WARN, NULL, "accept_failed", "%s", uv_strerror(status));
    return;
  }
  conn_t *c = calloc(1, sizeof(*c));
  if (!c)
    return; /* the pending connection stays in the backlog; retried on the next callback */
  c->srv = srv;
  proto_frame_reader_init(&c->reader, srv->max_frame);
  if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
    proto_frame_reader_free(&c->reader);
    free(c);
    return;
  }
  c->tcp.data = c;
  c->frame_timer.data = c;
  c->handles_open = 1;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  if (uv_timer_init(srv->loop, &c->frame_timer) != 0) {
    c->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    return;
  }
  c->handles_open = 2;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c, "accept failed");
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  proto__peer_name(&c->tcp, c->peer, sizeof(c->peer));
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c, "read start failed");
}

int proto_rpc_server_listen(proto_rpc_server_t *srv, const char *host, int port) {
  struct sockaddr_storage ss;
  int rc;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "listen_failed", "%s is not an IP address", host);
    return PROTO_EINVAL;
  }
  if ((rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "listen_failed", "%s:%d: %s", host, port,
              uv_strerror(rc));
    return PROTO_EIO;
  }
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) == 0)
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
  srv->listening = 1;
  return 0;
}

int proto_rpc_server_port(const proto_rpc_server_t *srv) {
  return srv->port;
}

size_t proto_rpc_server_inflight(const proto_rpc_server_t *srv) {
  return srv->inflight;
}

/* --- shutdown -------------------------------------------------------------- */

static void server_free(proto_rpc_server_t *srv) {
  void (*done)(void *) = srv->done_cb;
  void *arg = srv->done_arg;
  for (size_t i = 0; i < srv->nhandlers; i++)
    free(srv->handlers[i].key);
  free(srv->handlers);
  free(srv);
  if (done)
    done(arg);
}

static void on_server_handle_closed(uv_handle_t *h) {
  proto_rpc_server_t *srv = h->data;
  srv->handles_open--;
  server_maybe_done(srv);
}

static void close_all_conns(proto_rpc_server_t *srv) {
  for (conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next; /* conn_close never frees synchronously */
    conn_close(c, NULL);
  }
}

/* May free srv: callers must not touch it afterwards. */
static void server_maybe_done(proto_rpc_server_t *srv) {
  if (!srv->shutting_down)
    return;
  if (srv->inflight == 0 && !srv->drained) {
    srv->drained = 1; /* nothing left to answer: close what remains */
    close_all_conns(srv);
    uv_close((uv_handle_t *)&srv->drain_timer, on_server_handle_closed);
  }
  if (srv->drained && srv->handles_open == 0 && srv->conns == NULL)
    server_free(srv);
}

static void on_drain_timeout(uv_timer_t *t) {
  proto_rpc_server_t *srv = t->data;
  proto_log(PROTO_LOG_WARN, NULL, "drain_timeout",
            "%zu calls still unanswered: closing their connections", srv->inflight);
  close_all_conns(srv);
}

void proto_rpc_server_shutdown(proto_rpc_server_t *srv, unsigned drain_timeout_ms,
                               void (*done_cb)(void *arg), void *arg) {
  if (srv->shutting_down)
    return;
  srv->shutting_down = 1;
  srv->done_cb = done_cb;
  srv->done_arg = arg;
  uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
  /* No new requests: stop reading everywhere, let in-flight calls answer. */
  for (conn_t *c = srv->conns; c; c = c->next)
    if (c->state == CONN_OPEN)
      uv_read_stop((uv_stream_t *)&c->tcp);
  if (srv->inflight > 0)
    uv_timer_start(&srv->drain_timer, on_drain_timeout,
                   drain_timeout_ms ? drain_timeout_ms : PROTO_RPC_DRAIN_TIMEOUT_MS_DEFAULT, 0);
  server_maybe_done(srv);
}
