/* rpc_client.c: the RPC client: a few connections to one peer, calls
 * multiplexed over them and matched to replies by id, one deadline timer for
 * all calls, reconnection with exponential backoff. Every call completes
 * exactly once: reply, remote error, timeout, connection lost, unavailable or
 * canceled. */
#include "proto/rpc_client.h"
#include "internal.h"
#include "proto/cork.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/log.h"
#include "proto/packet.h"
#include "proto/pattern.h"
#include "proto/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALL_ID_HEX_DIGITS 16

/* After an attempt that calls were waiting for fails, the peer is known to
 * be down for this long: calls fail at once instead of each waiting for an
 * attempt of its own (see call_needs_attempt). A new attempt ends it early. */
#define KNOWN_DOWN_MS 100u

/* How soon an attempt a call asked for is tried again while the previous
 * attempt's socket or lookup is still winding down. */
#define WIND_DOWN_RETRY_MS 10u

typedef enum {
  CC_IDLE,        /* not connected; backoff timer may be running */
  CC_RESOLVING,   /* getaddrinfo in flight */
  CC_CONNECTING,  /* tcp connect in flight */
  CC_READY,       /* connected, calls may be written */
  CC_CLOSED,      /* client closing: handles closing */
} cc_state_t;

typedef struct call call_t;

/* A list of calls through one pair of links (each call is in at most one
 * such list at a time: the waiting list or its connection's in-flight list). */
typedef struct call_list {
  call_t *head, *tail;
} call_list_t;

typedef struct cconn {
  proto_rpc_client_t *cli;
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_getaddrinfo_t gai_req;
  uv_timer_t timer;            /* connect deadline, then backoff */
  proto_frame_reader_t reader;
  cc_state_t state;
  int tcp_open;                /* tcp handle initialised and not yet closed */
  int gai_pending;             /* gai_req in flight (it owns the struct meanwhile) */
  int handles_open;            /* handles whose close callback is pending or not closed */
  int failed_last;             /* the last connection attempt failed */
  int attempt_due;             /* a call moved the next attempt to now (timer due) */
  unsigned backoff_ms;
  call_list_t inflight;        /* calls written on this connection */
  proto__outbuf_t out;         /* requests corked during a burst */
} cconn_t;

struct call {
  uint64_t id;
  proto_rpc_cb cb;
  void *arg;
  uint64_t deadline_ms;
  json_t *packet;              /* kept until written (metadata.timeoutMs set then) */
  cconn_t *conn;               /* NULL while waiting for a connection */
  call_t *dl_prev, *dl_next;   /* deadline order */
  call_t *prev, *next;         /* waiting list or conn->inflight */
  call_t *hnext;               /* id hash chain */
};

struct proto_rpc_client {
  uv_loop_t *loop;
  char *name;
  char *host;
  int port;
  proto_rpc_client_opts_t opts;
  cconn_t *conns;
  unsigned nconns;
  unsigned rr;                 /* round-robin cursor over ready connections */
  uv_timer_t deadline_timer;
  call_t *dl_head, *dl_tail;
  call_list_t waiting;         /* sent while no connection was ready */
  uint64_t down_until_ms;      /* known down (calls fail at once) until then; 0: not */
  call_t **buckets;            /* id -> call */
  size_t nbuckets;
  size_t pending;
  uint64_t next_id;
  int handles_open;
  int closing;
};

static void conn_connect(cconn_t *cc);
static void conn_lost(cconn_t *cc, int status, const char *why);

/* --- call bookkeeping -------------------------------------------------------- */

static void list_push(call_list_t *l, call_t *c) {
  c->next = NULL;
  c->prev = l->tail;
  if (l->tail)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
}

static void list_remove(call_list_t *l, call_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    l->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    l->tail = c->prev;
  c->prev = c->next = NULL;
}

static size_t bucket_of(const proto_rpc_client_t *cli, uint64_t id) {
  return (size_t)(id * 0x9E3779B97F4A7C15ull >> 17) & (cli->nbuckets - 1);
}

static int hash_grow(proto_rpc_client_t *cli) {
  size_t n = cli->nbuckets ? cli->nbuckets * 2 : 64;
  call_t **b = calloc(n, sizeof(*b));
  if (!b)
    return PROTO_ENOMEM;
  call_t **old = cli->buckets;
  size_t oldn = cli->nbuckets;
  cli->buckets = b;
  cli->nbuckets = n;
  for (size_t i = 0; i < oldn; i++) {
    for (call_t *c = old[i], *next; c; c = next) {
      next = c->hnext;
      size_t k = bucket_of(cli, c->id);
      c->hnext = b[k];
      b[k] = c;
    }
  }
  free(old);
  return 0;
}

static call_t *hash_find(const proto_rpc_client_t *cli, uint64_t id) {
  if (!cli->nbuckets)
    return NULL;
  for (call_t *c = cli->buckets[bucket_of(cli, id)]; c; c = c->hnext)
    if (c->id == id)
      return c;
  return NULL;
}

static void hash_remove(proto_rpc_client_t *cli, call_t *call) {
  call_t **pp = &cli->buckets[bucket_of(cli, call->id)];
  while (*pp && *pp != call)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = call->hnext;
}

static void on_deadline(uv_timer_t *t);

static void deadline_rearm(proto_rpc_client_t *cli) {
  if (cli->closing)
    return;
  if (!cli->dl_head) {
    uv_timer_stop(&cli->deadline_timer);
    return;
  }
  uint64_t now = proto_now_ms();
  uint64_t due = cli->dl_head->deadline_ms > now ? cli->dl_head->deadline_ms - now : 0;
  uv_timer_start(&cli->deadline_timer, on_deadline, due, 0);
}

/* Calls mostly share one timeout, so inserting from the tail is O(1). */
static void deadline_insert(proto_rpc_client_t *cli, call_t *c) {
  call_t *after = cli->dl_tail;
  while (after && after->deadline_ms > c->deadline_ms)
    after = after->dl_prev;
  c->dl_prev = after;
  c->dl_next = after ? after->dl_next : cli->dl_head;
  if (c->dl_next)
    c->dl_next->dl_prev = c;
  else
    cli->dl_tail = c;
  if (after)
    after->dl_next = c;
  else
    cli->dl_head = c;
}

static void deadline_remove(proto_rpc_client_t *cli, call_t *c) {
  if (c->dl_prev)
    c->dl_prev->dl_next = c->dl_next;
  else
    cli->dl_head = c->dl_next;
  if (c->dl_next)
    c->dl_next->dl_prev = c->dl_prev;
  else
    cli->dl_tail = c->dl_prev;
}

/* Take the call out of every structure, run its callback, free it. The
 * callback may send new calls or close the client. */
static void call_complete(proto_rpc_client_t *cli, call_t *c, int status,
                          const json_t *response, const json_t *err) {
  if (c->conn)
    list_remove(&c->conn->inflight, c);
  else
    list_remove(&cli->waiting, c);
  hash_remove(cli, c);
  deadline_remove(cli, c);
  cli->pending--;
  json_decref(c->packet);
  proto_rpc_result_t res = {status, response, err};
  proto_rpc_cb cb = c->cb;
  void *arg = c->arg;
  free(c);
  cb(&res, arg);
}

static void on_deadline(uv_timer_t *t) {
  proto_rpc_client_t *cli = t->data;
  uint64_t now = proto_now_ms();
  while (cli->dl_head && cli->dl_head->deadline_ms <= now && !cli->closing) {
    call_t *c = cli->dl_head;
    /* A call still waiting for a connection never reached the peer: it is
     * unavailable, not slow (a caller may safely treat it as not done). */
    call_complete(cli, c, c->conn ? PROTO_ETIMEDOUT : PROTO_EUNAVAIL, NULL, NULL);
  }
  deadline_rearm(cli);
}

/* --- writing -------------------------------------------------------------- */

static int call_write(cconn_t *cc, call_t *c) {
  uint64_t now = proto_now_ms();
  json_t *meta = json_object_get(c->packet, "metadata");
  char budget[24];
  snprintf(budget, sizeof(budget), "%" PRIu64,
           c->deadline_ms > now ? c->deadline_ms - now : 0);
  /* A request without its budget would let the peer work past our
   * deadline: refuse to send it rather than send it short. */
  if (meta && json_object_set_new(meta, "timeoutMs", json_string(budget)) != 0)
    return PROTO_ENOMEM;
  int rc = proto__write_packet(&cc->out, (uv_stream_t *)&cc->tcp, c->packet, NULL);
  if (rc != 0)
    return rc;
  json_decref(c->packet);
  c->packet = NULL;
  c->conn = cc;
  list_push(&cc->inflight, c);
  return 0;
}

static cconn_t *pick_ready(proto_rpc_client_t *cli) {
  for (unsigned i = 0; i < cli->nconns; i++) {
    cconn_t *cc = &cli->conns[(cli->rr + i) % cli->nconns];
    if (cc->state == CC_READY) {
      cli->rr = (cli->rr + i + 1) % cli->nconns;
      return cc;
    }
  }
  return NULL;
}

/* A connection attempt is in progress or due now: a call may wait for it. */
static int any_attempt_pending(const proto_rpc_client_t *cli) {
  for (unsigned i = 0; i < cli->nconns; i++) {
    const cconn_t *cc = &cli->conns[i];
    if (cc->state == CC_RESOLVING || cc->state == CC_CONNECTING || cc->attempt_due)
      return 1;
  }
  return 0;
}

static void flush_waiting(cconn_t *cc) {
  proto_rpc_client_t *cli = cc->cli;
  while (cli->waiting.head && cc->state == CC_READY) {
    call_t *c = cli->waiting.head;
    list_remove(&cli->waiting, c);
    if (call_write(cc, c) != 0) {
      list_push(&cli->waiting, c); /* complete from the waiting list */
      call_complete(cli, c, PROTO_ECONNLOST, NULL, NULL);
    }
  }
}

/* --- connections -------------------------------------------------------------- */

static void on_cc_handle_closed(uv_handle_t *h);
static void client_free_if_done(proto_rpc_client_t *cli);
static void schedule_reconnect(cconn_t *cc);

/* The attempt the waiting calls were waiting for failed and none is left:
 * they fail, and the peer is known down for KNOWN_DOWN_MS (set before their
 * callbacks run, so a call they make fails at once rather than starting yet
 * another attempt). An attempt nobody waited for leaves no such mark: the
 * peer may have come up since. */
static void fail_waiting_if_hopeless(proto_rpc_client_t *cli) {
  if (!cli->waiting.head || pick_ready(cli) || any_attempt_pending(cli))
    return;
  cli->down_until_ms = proto_now_ms() + KNOWN_DOWN_MS;
  while (cli->waiting.head)
    call_complete(cli, cli->waiting.head, PROTO_EUNAVAIL, NULL, NULL);
}

static void on_tcp_closed(uv_handle_t *h) {
  cconn_t *cc = h->data;
  cc->tcp_open = 0;
  on_cc_handle_closed(h);
}

/* Close the socket of a connection (not the timer). */
static void cc_close_tcp(cconn_t *cc) {
  if (cc->tcp_open && !uv_is_closing((uv_handle_t *)&cc->tcp))
    uv_close((uv_handle_t *)&cc->tcp, on_tcp_closed);
}

static void conn_lost(cconn_t *cc, int status, const char *why) {
  proto_rpc_client_t *cli = cc->cli;
  int was_ready = cc->state == CC_READY;
  if (cc->state == CC_CLOSED)
    return;
  if (was_ready)
    proto_log(PROTO_LOG_WARN, NULL, "upstream_lost", "%s %s:%d: %s", cli->name, cli->host,
              cli->port, why);
  else if (!cc->failed_last)
    proto_log(PROTO_LOG_WARN, NULL, "upstream_connect_failed", "%s %s:%d: %s", cli->name,
              cli->host, cli->port, why);
  if (cc->gai_pending)
    uv_cancel((uv_req_t *)&cc->gai_req); /* best effort: its callback still runs */
  cc->state = CC_IDLE;
  cc->failed_last = !was_ready;
  uv_timer_stop(&cc->timer);
  cc_close_tcp(cc);
  proto__outbuf_free(&cc->out); /* its calls fail below */
  if (was_ready)
    proto_frame_reader_free(&cc->reader);
  /* A reconnect is scheduled before callbacks run, so a call they make sees
   * the true state. */
  schedule_reconnect(cc);
  while (cc->inflight.head && !cli->closing)
    call_complete(cli, cc->inflight.head, status, NULL, NULL);
  if (!cli->closing)
    fail_waiting_if_hopeless(cli);
}

static void on_backoff_done(uv_timer_t *t) {
  cconn_t *cc = t->data;
  if (cc->tcp_open || cc->gai_pending) {
    /* The previous attempt is still winding down: try again shortly (soon
     * when calls wait for this attempt). A timer that is not closing starts. */
    unsigned delay = cc->cli->opts.backoff_min_ms;
    if (cc->attempt_due && delay > WIND_DOWN_RETRY_MS)
      delay = WIND_DOWN_RETRY_MS;
    (void)uv_timer_start(&cc->timer, on_backoff_done, delay, 0);
    return;
  }
  conn_connect(cc);
}

static void schedule_reconnect(cconn_t *cc) {
  proto_rpc_client_t *cli = cc->cli;
  if (cli->closing)
    return;
  unsigned delay = cc->failed_last ? cc->backoff_ms : cli->opts.backoff_min_ms;
  if (cc->failed_last) {
    unsigned next = cc->backoff_ms * 2;
    cc->backoff_ms = next > cli->opts.backoff_max_ms ? cli->opts.backoff_max_ms : next;
  }
  uv_timer_start(&cc->timer, on_backoff_done, delay, 0);
}

static void on_connect_timeout(uv_timer_t *t) {
  cconn_t *cc = t->data;
  conn_lost(cc, PROTO_EUNAVAIL, "connect timed out");
}

static void on_reply_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  cconn_t *cc = h->data;
  char *p = NULL;
  size_t avail = 0;
  (void)suggested;
  if (proto_frame_reader_reserve(&cc->reader, PROTO__READ_CHUNK_BYTES, &p, &avail) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(p, (unsigned)(avail > UINT32_MAX ? UINT32_MAX : avail));
}

/* Our ids are 16 lowercase hex digits; anything else is not ours. */
static int parse_call_id(const json_t *id, uint64_t *out) {
  const char *s = json_string_value(id);
  if (!s || strlen(s) != CALL_ID_HEX_DIGITS)
    return 0;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    int d = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : -1;
    if (d < 0)
      return 0;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 1;
}

static void handle_reply(cconn_t *cc, const char *json, size_t len) {
  proto_rpc_client_t *cli = cc->cli;
  proto_reply_t rep;
  const char *why = NULL;
  uint64_t id;
  if (proto_reply_decode(json, len, &rep, &why) != 0) {
    proto_log(PROTO_LOG_WARN, NULL, "bad_reply", "%s: %s", cli->name, why ? why : "?");
    return;
  }
  call_t *c = (rep.is_final && parse_call_id(rep.id, &id)) ? hash_find(cli, id) : NULL;
  /* Replies for ids we no longer know (timed out) are dropped. */
  if (c && c->conn == cc) {
    if (rep.err)
      call_complete(cli, c, PROTO_EREMOTE, NULL, rep.err);
    else
      call_complete(cli, c, PROTO_OK, rep.response, NULL);
  }
  proto_reply_free(&rep);
}

static void on_reply_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  cconn_t *cc = s->data;
  (void)buf;
  if (nread < 0) {
    conn_lost(cc, PROTO_ECONNLOST, nread == UV_EOF ? "peer closed the connection"
                                                   : uv_strerror((int)nread));
    return;
  }
  proto_frame_reader_commit(&cc->reader, (size_t)nread);
  const char *json;
  size_t len;
  int rc;
  /* Requests the callbacks send in reaction leave in one write. */
  proto_cork();
  while (cc->state == CC_READY && (rc = proto_frame_reader_next(&cc->reader, &json, &len)) == 1)
    handle_reply(cc, json, len);
  proto_uncork();
  if (cc->state == CC_READY && rc < 0) {
    const char *why = proto_frame_reader_why(&cc->reader);
    conn_lost(cc, PROTO_ECONNLOST, why ? why : proto_strerror(rc));
  }
}

static void on_connected(uv_connect_t *req, int status) {
  cconn_t *cc = req->data;
  proto_rpc_client_t *cli = cc->cli;
  if (cc->state != CC_CONNECTING)
    return; /* timed out or client closed; the socket is already closing */
  if (status != 0) {
    conn_lost(cc, PROTO_EUNAVAIL, uv_strerror(status));
    return;
  }
  uv_timer_stop(&cc->timer);
  uv_tcp_nodelay(&cc->tcp, 1);
  proto_frame_reader_init(&cc->reader, cli->opts.max_frame_bytes);
  if (uv_read_start((uv_stream_t *)&cc->tcp, on_reply_alloc, on_reply_read) != 0) {
    conn_lost(cc, PROTO_EUNAVAIL, "read start failed");
    return;
  }
  if (cc->failed_last)
    proto_log(PROTO_LOG_INFO, NULL, "upstream_connected", "%s %s:%d", cli->name, cli->host,
              cli->port);
  cc->state = CC_READY;
  cc->failed_last = 0;
  cc->backoff_ms = cli->opts.backoff_min_ms;
  flush_waiting(cc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  cconn_t *cc = req->data;
  cc->handles_open--; /* the request held the connection open */
  cc->gai_pending = 0;
  if (cc->state == CC_CLOSED) {
    uv_freeaddrinfo(res);
    client_free_if_done(cc->cli);
    return;
  }
  if (cc->state != CC_RESOLVING) {
    uv_freeaddrinfo(res); /* timed out meanwhile */
    return;
  }
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    conn_lost(cc, PROTO_EUNAVAIL, status ? uv_strerror(status) : "no address");
    return;
  }
  int rc = uv_tcp_init(cc->cli->loop, &cc->tcp);
  if (rc == 0) {
    cc->tcp.data = cc;
    cc->tcp_open = 1;
    cc->handles_open++;
    cc->connect_req.data = cc;
    cc->state = CC_CONNECTING;
    rc = uv_tcp_connect(&cc->connect_req, &cc->tcp, res->ai_addr, on_connected);
  }
  uv_freeaddrinfo(res);
  if (rc != 0)
    conn_lost(cc, PROTO_EUNAVAIL, uv_strerror(rc));
}

static void conn_connect(cconn_t *cc) {
  proto_rpc_client_t *cli = cc->cli;
  struct addrinfo hints;
  char port[8];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", cli->port);
  cc->state = CC_RESOLVING;
  cc->attempt_due = 0;
  cli->down_until_ms = 0; /* the known-down interval ends when an attempt starts */
  cc->gai_req.data = cc;
  uv_timer_start(&cc->timer, on_connect_timeout, cli->opts.connect_timeout_ms, 0);
  int rc = uv_getaddrinfo(cli->loop, &cc->gai_req, on_resolved, cli->host, port, &hints);
  if (rc != 0) {
    conn_lost(cc, PROTO_EUNAVAIL, uv_strerror(rc));
    return;
  }
  cc->gai_pending = 1;
  cc->handles_open++;
}

/* A call found no ready connection and no attempt in progress. Unless the
 * peer is known down (an attempt calls waited for failed just now), move one
 * idle connection's next attempt to now, however long its backoff still has
 * to run (the peer may have come up meanwhile), so the call can wait for it.
 * The attempt starts from the timer, never inside the caller's send, so no
 * callback runs there. 0, or PROTO_EUNAVAIL: fail the call at once. */
static int call_needs_attempt(proto_rpc_client_t *cli) {
  if (proto_now_ms() < cli->down_until_ms)
    return PROTO_EUNAVAIL;
  for (unsigned i = 0; i < cli->nconns; i++) {
    cconn_t *cc = &cli->conns[i];
    if (cc->state != CC_IDLE)
      continue;
    if (uv_timer_start(&cc->timer, on_backoff_done, 0, 0) != 0) /* replaces the backoff */
      return PROTO_EUNAVAIL;
    cc->attempt_due = 1;
    return 0;
  }
  return PROTO_EUNAVAIL;
}

/* --- public API ---------------------------------------------------------- */

static void client_free_if_done(proto_rpc_client_t *cli) {
  if (!cli->closing || cli->handles_open > 0)
    return;
  for (unsigned i = 0; i < cli->nconns; i++)
    if (cli->conns[i].handles_open > 0)
      return;
  free(cli->conns);
  free(cli->buckets);
  free(cli->name);
  free(cli->host);
  free(cli);
}

static void on_cc_handle_closed(uv_handle_t *h) {
  cconn_t *cc = h->data;
  cc->handles_open--;
  client_free_if_done(cc->cli);
}

static void on_cli_handle_closed(uv_handle_t *h) {
  proto_rpc_client_t *cli = h->data;
  cli->handles_open--;
  client_free_if_done(cli);
}

proto_rpc_client_t *proto_rpc_client_new(uv_loop_t *loop, const char *name,
                                         const char *host, int port,
                                         const proto_rpc_client_opts_t *opts) {
  if (!loop || !name || !host || port <= 0 || port > 65535)
    return NULL;
  proto_rpc_client_t *cli = calloc(1, sizeof(*cli));
  if (!cli)
    return NULL;
  cli->loop = loop;
  cli->port = port;
  if (opts)
    cli->opts = *opts;
#define DEFAULT(field, value) if (!cli->opts.field) cli->opts.field = (value)
  DEFAULT(timeout_ms, PROTO_RPC_TIMEOUT_MS_DEFAULT);
  DEFAULT(connect_timeout_ms, PROTO_RPC_CONNECT_TIMEOUT_MS_DEFAULT);
  DEFAULT(backoff_min_ms, PROTO_RPC_BACKOFF_MIN_MS_DEFAULT);
  DEFAULT(backoff_max_ms, PROTO_RPC_BACKOFF_MAX_MS_DEFAULT);
  DEFAULT(connections, 1);
  DEFAULT(max_frame_bytes, PROTO_MAX_FRAME_BYTES_DEFAULT);
#undef DEFAULT
  cli->name = strdup(name);
  cli->host = strdup(host);
  cli->nconns = cli->opts.connections;
  cli->conns = calloc(cli->nconns, sizeof(*cli->conns));
  if (!cli->name || !cli->host || !cli->conns || hash_grow(cli) != 0 ||
      uv_timer_init(loop, &cli->deadline_timer) != 0) {
    free(cli->conns);
    free(cli->buckets);
    free(cli->name);
    free(cli->host);
    free(cli);
    return NULL;
  }
  cli->deadline_timer.data = cli;
  cli->handles_open = 1;
  for (unsigned i = 0; i < cli->nconns; i++) {
    cconn_t *cc = &cli->conns[i];
    cc->cli = cli;
    cc->backoff_ms = cli->opts.backoff_min_ms;
    if (uv_timer_init(loop, &cc->timer) != 0) {
      cli->nconns = i; /* close what exists, then report failure */
      proto_rpc_client_close(cli);
      return NULL;
    }
    cc->timer.data = cc;
    cc->handles_open = 1;
    conn_connect(cc);
  }
  return cli;
}

int proto_rpc_client_send_pattern(proto_rpc_client_t *cli, const json_t *pattern,
                                  json_t *data, const char *request_id,
                                  uint32_t timeout_ms, proto_rpc_cb cb, void *arg) {
  if (cli->closing) {
    json_decref(data);
    return PROTO_ECLOSED;
  }
  cconn_t *cc = pick_ready(cli);
  if (!cc && !any_attempt_pending(cli) && call_needs_attempt(cli) != 0) {
    json_decref(data);
    return PROTO_EUNAVAIL;
  }
  if (cli->pending + 1 > cli->nbuckets && hash_grow(cli) != 0) {
    json_decref(data);
    return PROTO_ENOMEM;
  }
  call_t *c = calloc(1, sizeof(*c));
  json_t *meta = json_object();
  char idstr[CALL_ID_HEX_DIGITS + 1];
  if (!c || !meta) {
    free(c);
    json_decref(meta);
    json_decref(data);
    return PROTO_ENOMEM;
  }
  c->id = ++cli->next_id;
  snprintf(idstr, sizeof(idstr), "%016" PRIx64, c->id);
  if (request_id && json_object_set_new(meta, "requestId", json_string(request_id)) != 0) {
    free(c);
    json_decref(meta);
    json_decref(data);
    return PROTO_ENOMEM;
  }
  c->packet = proto_packet_request(pattern, data, json_string(idstr), meta);
  if (!c->packet) {
    free(c);
    return PROTO_ENOMEM;
  }
  c->cb = cb;
  c->arg = arg;
  c->deadline_ms = proto_now_ms() + (timeout_ms ? timeout_ms : cli->opts.timeout_ms);
  size_t k = bucket_of(cli, c->id);
  c->hnext = cli->buckets[k];
  cli->buckets[k] = c;
  cli->pending++;
  deadline_insert(cli, c);
  if (cli->dl_head == c)
    deadline_rearm(cli);
  if (cc) {
    int rc = call_write(cc, c);
    if (rc != 0) {
      /* Undo without running the callback: the caller gets the error. */
      hash_remove(cli, c);
      deadline_remove(cli, c);
      cli->pending--;
      json_decref(c->packet);
      free(c);
      deadline_rearm(cli);
      return rc == PROTO_ENOMEM ? rc : PROTO_ECONNLOST;
    }
  } else {
    list_push(&cli->waiting, c);
  }
  return 0;
}

int proto_rpc_client_send(proto_rpc_client_t *cli, const char *cmd, json_t *data,
                          const char *request_id, uint32_t timeout_ms, proto_rpc_cb cb,
                          void *arg) {
  json_t *pattern = proto_pattern_cmd(cmd);
  if (!pattern) {
    json_decref(data);
    return PROTO_ENOMEM;
  }
  int rc = proto_rpc_client_send_pattern(cli, pattern, data, request_id, timeout_ms, cb, arg);
  json_decref(pattern);
  return rc;
}

int proto_rpc_client_emit(proto_rpc_client_t *cli, const char *pattern, json_t *data,
                          const char *request_id) {
  cconn_t *cc = cli->closing ? NULL : pick_ready(cli);
  if (!cc) {
    json_decref(data);
    return cli->closing ? PROTO_ECLOSED : PROTO_EUNAVAIL;
  }
  json_t *p = json_string(pattern);
  json_t *meta = request_id ? json_pack("{s:s}", "requestId", request_id) : NULL;
  json_t *packet = p ? proto_packet_request(p, data, NULL, meta) : NULL;
  if (!p) {
    json_decref(data);
    json_decref(meta);
  }
  json_decref(p);
  if (!packet)
    return PROTO_ENOMEM;
  int rc = proto__write_packet(&cc->out, (uv_stream_t *)&cc->tcp, packet, NULL);
  json_decref(packet);
  return rc;
}

int proto_rpc_client_connected(const proto_rpc_client_t *cli) {
  for (unsigned i = 0; i < cli->nconns; i++)
    if (cli->conns[i].state == CC_READY)
      return 1;
  return 0;
}

size_t proto_rpc_client_pending(const proto_rpc_client_t *cli) {
  return cli->pending;
}

void proto_rpc_client_close(proto_rpc_client_t *cli) {
  if (cli->closing)
    return;
  cli->closing = 1;
  /* Callbacks run here; they may not send (closing) but may touch their own state. */
  while (cli->waiting.head)
    call_complete(cli, cli->waiting.head, PROTO_ECANCELED, NULL, NULL);
  for (unsigned i = 0; i < cli->nconns; i++) {
    cconn_t *cc = &cli->conns[i];
    while (cc->inflight.head)
      call_complete(cli, cc->inflight.head, PROTO_ECANCELED, NULL, NULL);
  }
  for (unsigned i = 0; i < cli->nconns; i++) {
    cconn_t *cc = &cli->conns[i];
    if (cc->state == CC_READY)
      proto_frame_reader_free(&cc->reader);
    if (cc->gai_pending)
      uv_cancel((uv_req_t *)&cc->gai_req);
    proto__outbuf_free(&cc->out);
    cc->state = CC_CLOSED;
    cc_close_tcp(cc);
    if (!uv_is_closing((uv_handle_t *)&cc->timer))
      uv_close((uv_handle_t *)&cc->timer, on_cc_handle_closed);
  }
  uv_close((uv_handle_t *)&cli->deadline_timer, on_cli_handle_closed);
}
