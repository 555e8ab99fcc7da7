/* http.c: libmicrohttpd driven from the libuv loop (external epoll mode),
 * the per-request context and its life: headers -> body -> RPC (connection
 * suspended) -> resume -> response -> access log. Routing is routes.c,
 * status mapping reply.c. */
#include "http.h"

#include <errno.h>
#include <stddef.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "proto/cork.h"
#include "proto/error.h"
#include "proto/log.h"
#include "reply.h"
#include "deadline.h"
#include "request_id.h"
#include "routes.h"

/* Request contexts kept for reuse instead of freed: the request path then
 * allocates nothing of ours but the body buffer. */
#define GW_HTTP_REQ_CACHE_MAX 1024u
/* Body bytes still read and dropped after a 413 before the connection is cut:
 * MHD cannot answer in the middle of an upload, only at its end. */
#define GW_HTTP_DISCARD_MAX_BYTES (1024u * 1024u)
#define GW_HTTP_HOST_MAX 256

static const char health_body[] = "{\"status\":\"ok\"}";
static const char json_content_type[] = "application/json; charset=utf-8";

typedef enum req_state {
  REQ_HEADERS = 0, /* headers seen; no body to keep (GET, or ignored) */
  REQ_BODY,        /* receiving a body we keep */
  REQ_DISCARD,     /* answer decided; the rest of the body is dropped */
  REQ_WAITING,     /* RPCs in flight, connection suspended */
  REQ_ANSWER,      /* status and body ready: queue at the next call */
  REQ_SENT,        /* response queued */
} req_state_t;

typedef struct gw_req gw_req_t;

/* One upstream's `health` call of a /ready request (the RPC callback's arg). */
typedef struct ready_call {
  gw_req_t *req;
  int status;
} ready_call_t;

struct gw_req {
  gw_http_t *http;
  struct MHD_Connection *conn;
  gw_req_t *next_free;        /* link in the cache of free contexts */
  req_state_t state;
  gw_method_t method;
  const char *method_str;     /* MHD's, valid until the request completes */
  const char *url;            /* MHD's (decoded path), likewise */
  uint64_t start_ns;          /* uv_hrtime() at the first call */
  unsigned status;            /* the answer's status */
  json_t *reply;              /* the answer's body, owned; NULL: static_body or empty */
  const char *static_body;    /* a body needing no copy */
  char *body;                 /* request body (REQ_BODY), malloc'd */
  size_t body_len, body_cap;
  uint64_t received;          /* body bytes seen, kept or dropped */
  unsigned pending;           /* RPCs in flight */
  int dispatching;            /* inside the send loop: callbacks must not resume */
  int suspended;              /* MHD_suspend_connection() in force */
  /* Not zeroed by req_new(): written before they are read. */
  gw_match_t match;           /* route and path parameters (point into url) */
  ready_call_t ready[GW_MAX_UPSTREAMS];
  char request_id[GW_REQUEST_ID_SIZE];
  uint32_t timeout_ms;        /* the upstream call's deadline: X-Request-Timeout, capped */
};

struct gw_http {
  uv_loop_t *loop;
  struct MHD_Daemon *mhd;
  uv_poll_t poll;             /* readable when MHD's epoll fd has events */
  uv_timer_t timer;           /* re-armed from MHD_get_timeout() after each run */
  uv_check_t resume_check;    /* one MHD_run() after this loop turn's resumes... */
  uv_idle_t resume_idle;      /* ...and a loop turn that does not block before it */
  uv_timer_t drain_timer;     /* bounds gw_http_close() */
  int handles_open;           /* freed when the last one is closed */
  gw_upstreams_t *ups;        /* borrowed */
  const gw_route_t *routes;
  size_t nroutes;
  gw_request_id_gen_t ids;
  size_t max_body;
  uint32_t rpc_timeout_ms;
  int port;
  int in_run;                 /* inside MHD_run() */
  int quiesced;               /* not accepting any more */
  int closing;                /* gw_http_close() called */
  int stopped;                /* MHD stopped, handles closing */
  size_t active;              /* request contexts alive */
  size_t suspended;           /* of which suspended */
  gw_req_t *free_reqs;        /* cache of contexts */
  size_t nfree;
  void (*done)(void *arg);
  void *done_arg;
};

static void http_run(gw_http_t *h);

/* --- request contexts ------------------------------------------------- */

static gw_req_t *req_new(gw_http_t *h, struct MHD_Connection *conn) {
  gw_req_t *r = h->free_reqs;
  if (r) {
    h->free_reqs = r->next_free;
    h->nfree--;
  } else if (!(r = malloc(sizeof(*r)))) {
    return NULL;
  }
  memset(r, 0, offsetof(gw_req_t, match));
  r->http = h;
  r->conn = conn;
  r->start_ns = uv_hrtime();
  h->active++;
  return r;
}

static void req_free(gw_req_t *r) {
  gw_http_t *h = r->http;
  json_decref(r->reply);
  free(r->body);
  h->active--;
  if (h->nfree < GW_HTTP_REQ_CACHE_MAX) {
    r->next_free = h->free_reqs;
    h->free_reqs = r;
    h->nfree++;
  } else {
    free(r);
  }
}

/* Decide the answer: the response is queued at the next access-handler call
 * (never on the first one: MHD would then close the connection). */
static void req_answer(gw_req_t *r, unsigned status, json_t *body) {
  json_decref(r->reply);
  r->reply = body;
  r->static_body = NULL;
  r->status = status;
  r->state = REQ_ANSWER;
}

static void req_fail(gw_req_t *r, unsigned status, const char *message) {
  req_answer(r, status, gw_error_body(status, message, r->request_id));
}

/* As req_answer, for an error known before the body is read: the body is
 * still received (and dropped) so the connection stays usable. */
static void req_answer_early(gw_req_t *r, unsigned status, json_t *body) {
  req_answer(r, status, body);
  r->state = REQ_DISCARD;
  free(r->body);
  r->body = NULL;
  r->body_len = r->body_cap = 0;
}

static void req_fail_early(gw_req_t *r, unsigned status, const char *message) {
  req_answer_early(r, status, gw_error_body(status, message, r->request_id));
}

static void access_log(const gw_req_t *r) {
  if (!proto_log_enabled(PROTO_LOG_INFO))
    return;
  uint64_t us = (uv_hrtime() - r->start_ns) / 1000u;
  json_t *f = json_object();
  if (!f)
    return;
  json_t *path = json_string(r->url ? r->url : "");
  json_object_set_new(f, "method", json_string(r->method_str ? r->method_str : ""));
  json_object_set_new(f, "path", path ? path : json_string("(invalid UTF-8)"));
  json_object_set_new(f, "status", json_integer(r->status));
  /* milliseconds with three decimals, without binary-fraction noise */
  json_object_set_new(f, "durationMs", json_real((double)us / 1000.0));
  proto_log_fields(PROTO_LOG_INFO, r->request_id, "http_request", f);
}

static enum MHD_Result req_send(gw_req_t *r) {
  gw_http_t *h = r->http;
  struct MHD_Response *resp;
  char *text = NULL;
  if (r->reply) {
    text = json_dumps(r->reply, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
      json_decref(r->reply);
      r->reply = NULL;
      r->status = 500;
    }
  }
  if (text)
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  else if (r->static_body)
    resp = MHD_create_response_from_buffer(strlen(r->static_body), (void *)r->static_body,
                                           MHD_RESPMEM_PERSISTENT);
  else
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp) {
    free(text);
    return MHD_NO;
  }
  if ((text || r->static_body) &&
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, json_content_type) != MHD_YES)
    goto fail;
  if (MHD_add_response_header(resp, "X-Request-Id", r->request_id) != MHD_YES)
    goto fail;
  if (r->status == 405) {
    char allow[64];
    gw_route_allow_header(r->match.allow, allow, sizeof(allow));
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
      goto fail;
  }
  if (h->closing &&
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)
    goto fail;
  enum MHD_Result rc = MHD_queue_response(r->conn, r->status, resp);
  MHD_destroy_response(resp);
  r->state = REQ_SENT;
  access_log(r);
  return rc;
fail:
  MHD_destroy_response(resp);
  return MHD_NO;
}

/* --- suspend / resume ---------------------------------------------------- */

static void run_resumed(gw_http_t *h) {
  uv_check_stop(&h->resume_check);
  uv_idle_stop(&h->resume_idle);
  http_run(h);
}

static void on_resume_check(uv_check_t *c) {
  run_resumed(c->data);
}

static void on_resume_idle(uv_idle_t *i) {
  run_resumed(i->data);
}

static void req_suspend(gw_req_t *r) {
  r->state = REQ_WAITING;
  r->suspended = 1;
  r->http->suspended++;
  MHD_suspend_connection(r->conn);
}

/* Resume after the last RPC completed. In external mode MHD does not wake
 * its own epoll fd on resume: we must run it. Once per loop turn, so a batch
 * of replies costs one MHD_run(): the check handle runs it right after the
 * I/O phase (replies arrive there); the idle handle covers resumes from
 * timers (deadlines), which come before the I/O phase, and keeps the loop
 * from blocking in the meantime. Whichever fires first stops both. */
static void req_resume(gw_req_t *r) {
  gw_http_t *h = r->http;
  if (!r->suspended)
    return;
  r->suspended = 0;
  h->suspended--;
  MHD_resume_connection(r->conn);
  if (!h->stopped && !uv_is_active((uv_handle_t *)&h->resume_check)) {
    uv_check_start(&h->resume_check, on_resume_check);
    uv_idle_start(&h->resume_idle, on_resume_idle);
  }
}

/* --- RPC routes ---------------------------------------------------------- */

static const char *query_get(void *ctx, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND,
                                     name);
}

static void log_upstream_failure(const gw_req_t *r, const char *upstream, const char *cmd,
                                 const proto_rpc_result_t *res) {
  char *err = res->err ? json_dumps(res->err, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  /* ECANCELED is our own shutdown: expected, not worth a warning each. */
  proto_log(res->status == PROTO_ECANCELED ? PROTO_LOG_DEBUG : PROTO_LOG_WARN, r->request_id, "upstream_failed", "%s %s: %s%s%s", upstream,
            cmd, proto_err_name(res->status), err ? ": " : "", err ? err : "");
  free(err);
}

static void on_rpc_reply(const proto_rpc_result_t *res, void *arg) {
  gw_req_t *r = arg;
  const gw_route_t *rt = r->match.route;
  json_t *body = NULL;
  unsigned status = gw_reply_from_result(res, rt->status, rt->upstream, r->request_id, &body);
  if (res->status != PROTO_OK &&
      !(res->status == PROTO_EREMOTE && gw_reply_is_service_error(res->err)))
    log_upstream_failure(r, rt->upstream, rt->cmd, res);
  req_answer(r, status, body);
  if (--r->pending == 0 && !r->dispatching)
    req_resume(r);
}

static void rpc_start(gw_req_t *r) {
  gw_http_t *h = r->http;
  const gw_route_t *rt = r->match.route;
  gw_route_err_t err;
  json_t *body = NULL, *data = NULL;
  if (rt->data & GW_DATA_BODY) {
    int rc = gw_route_parse_body(r->body ? r->body : "", r->body_len, &body, &err);
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    if (rc != 0) {
      req_answer(r, err.status, gw_route_error_body(&err, r->request_id));
      return;
    }
  }
  if (gw_route_build_data(&r->match, query_get, r->conn, body, &data, &err) != 0) {
    req_answer(r, err.status, gw_route_error_body(&err, r->request_id));
    return;
  }
  proto_rpc_client_t *cli = gw_upstreams_get(h->ups, rt->upstream);
  if (!cli) {
    json_decref(data);
    proto_rpc_result_t res = {.status = PROTO_ECLOSED};
    unsigned status = gw_reply_from_result(&res, rt->status, rt->upstream, r->request_id, &body);
    req_answer(r, status, body);
    return;
  }
  r->pending = 1;
  r->dispatching = 1;
  int rc = proto_rpc_client_send(cli, rt->cmd, data, r->request_id, r->timeout_ms,
                                 on_rpc_reply, r);
  r->dispatching = 0;
  if (rc != 0) { /* the callback will not run */
    proto_rpc_result_t res = {.status = rc};
    unsigned status = gw_reply_from_result(&res, rt->status, rt->upstream, r->request_id, &body);
    r->pending = 0;
    req_answer(r, status, body);
    if (rc != PROTO_EUNAVAIL)
      log_upstream_failure(r, rt->upstream, rt->cmd, &res);
  } else if (r->pending > 0) {
    req_suspend(r);
  } /* else: completed inside send, the answer is set */
}

/* --- /ready -------------------------------------------------------------- */

static void ready_finish(gw_req_t *r) {
  const gw_upstreams_t *u = r->http->ups;
  gw_ready_item_t items[GW_MAX_UPSTREAMS];
  unsigned status;
  for (size_t i = 0; i < u->count; i++) {
    items[i].name = u->items[i].spec->name;
    items[i].status = r->ready[i].status;
  }
  json_t *body = gw_ready_body(items, u->count, &status);
  if (!body)
    req_fail(r, 500, NULL);
  else
    req_answer(r, status, body);
}

static void on_ready_reply(const proto_rpc_result_t *res, void *arg) {
  ready_call_t *rc = arg;
  gw_req_t *r = rc->req;
  rc->status = res->status;
  if (--r->pending == 0 && !r->dispatching) {
    ready_finish(r);
    req_resume(r);
  }
}

static void ready_start(gw_req_t *r) {
  gw_http_t *h = r->http;
  uint32_t timeout = GW_READY_TIMEOUT_MS;
  if (h->rpc_timeout_ms && h->rpc_timeout_ms < timeout)
    timeout = h->rpc_timeout_ms;
  r->pending = 1; /* held until every call is sent */
  r->dispatching = 1;
  for (size_t i = 0; i < h->ups->count; i++) {
    proto_rpc_client_t *cli = h->ups->items[i].cli;
    r->ready[i].req = r;
    r->ready[i].status = PROTO_ECLOSED;
    if (!cli)
      continue;
    r->pending++;
    int rc = proto_rpc_client_send(cli, "health", NULL, r->request_id, timeout,
                                   on_ready_reply, &r->ready[i]);
    if (rc != 0) {
      r->ready[i].status = rc;
      r->pending--;
    }
  }
  r->dispatching = 0;
  if (--r->pending == 0)
    ready_finish(r);
  else
    req_suspend(r);
}

/* --- the access handler -------------------------------------------------- */

/* Content-Length as a number; 0 when absent or unparsable (MHD rejects a
 * malformed one itself). */
static uint64_t content_length(struct MHD_Connection *conn, int *present) {
  const char *s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_CONTENT_LENGTH);
  char *end = NULL;
  *present = 0;
  if (!s || *s < '0' || *s > '9')
    return 0;
  errno = 0;
  unsigned long long n = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return 0;
  *present = 1;
  return n;
}

/* First call: headers are complete. Route, check the body's size and type,
 * and decide whether to keep it. Never queues a response except for a 413
 * known from Content-Length (that one should close the connection). */
static enum MHD_Result req_begin(gw_req_t *r, const char *url, const char *method) {
  gw_http_t *h = r->http;
  struct MHD_Connection *conn = r->conn;
  char msg[GW_ROUTE_ERR_SIZE];
  int has_len;
  gw_request_id_pick(&h->ids,
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"),
                     r->request_id);
  r->timeout_ms = h->rpc_timeout_ms;
  const char *xt = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, GW_DEADLINE_HEADER);
  if (xt && gw_deadline_parse(xt, h->rpc_timeout_ms ? h->rpc_timeout_ms : UINT32_MAX,
                              &r->timeout_ms) != 0) {
    static const gw_field_error_t bad = {GW_DEADLINE_HEADER,
                                         "must be a duration such as 250ms or 2s"};
    req_answer_early(r, 400, gw_validation_error_body(&bad, 1, r->request_id));
    return MHD_YES;
  }
  r->url = url;
  r->method_str = method;
  r->method = gw_method_parse(method);
  gw_match_result_t mr = gw_route_match(h->routes, h->nroutes, r->method, url, &r->match);
  uint64_t clen = content_length(conn, &has_len);
  int chunked = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                            MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
  if (has_len && clen > h->max_body) {
    snprintf(msg, sizeof(msg), "Request body larger than %zu bytes", h->max_body);
    req_fail(r, 413, msg);
    return req_send(r);
  }
  if (mr == GW_MATCH_NOT_FOUND) {
    snprintf(msg, sizeof(msg), "Cannot %s %s", method, url);
    req_fail_early(r, 404, msg);
    return MHD_YES;
  }
  if (mr == GW_MATCH_BAD_METHOD) {
    snprintf(msg, sizeof(msg), "Method %s not allowed on %s", method, url);
    req_fail_early(r, 405, msg);
    return MHD_YES;
  }
  const gw_route_t *rt = r->match.route;
  int has_body = (has_len && clen > 0) || chunked;
  r->state = REQ_HEADERS;
  if (!(rt->data & GW_DATA_BODY) || (!has_body && (rt->data & GW_DATA_BODY_OPTIONAL)))
    return MHD_YES;
  if (!gw_content_type_is_json(
          MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE))) {
    /* Express would parse no body and the service refuse every field: a
     * validation error, then, with the header named as the field. */
    static const gw_field_error_t ct = {"Content-Type", "must be application/json"};
    req_answer_early(r, 400, gw_validation_error_body(&ct, 1, r->request_id));
    return MHD_YES;
  }
  r->state = REQ_BODY;
  if (has_len && clen > 0) {
    /* Content-Length is known and within the limit: one exact allocation. */
    if (!(r->body = malloc((size_t)clen))) {
      req_fail_early(r, 500, NULL);
      return MHD_YES;
    }
    r->body_cap = (size_t)clen;
  }
  return MHD_YES;
}

static enum MHD_Result req_upload(gw_req_t *r, const char *data, size_t n) {
  gw_http_t *h = r->http;
  r->received += n;
  if (r->received > h->max_body) {
    if (!(r->state == REQ_DISCARD && r->status == 413)) {
      char msg[GW_ROUTE_ERR_SIZE];
      snprintf(msg, sizeof(msg), "Request body larger than %zu bytes", h->max_body);
      req_fail_early(r, 413, msg);
    }
    /* Keep reading (to answer 413 at the end) only up to a point. */
    return r->received - h->max_body > GW_HTTP_DISCARD_MAX_BYTES ? MHD_NO : MHD_YES;
  }
  if (r->state != REQ_BODY)
    return MHD_YES;
  if (r->body_len + n > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 4096;
    while (cap < r->body_len + n)
      cap *= 2;
    if (cap > h->max_body)
      cap = h->max_body;
    char *p = realloc(r->body, cap);
    if (!p) {
      req_fail_early(r, 500, NULL);
      return MHD_YES;
    }
    r->body = p;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  return MHD_YES;
}

static void req_dispatch(gw_req_t *r) {
  const gw_route_t *rt = r->match.route;
  switch (rt->action) {
  case GW_ACTION_HEALTH:
    req_answer(r, 200, NULL);
    r->static_body = health_body;
    break;
  case GW_ACTION_READY:
    ready_start(r);
    break;
  case GW_ACTION_RPC:
    rpc_start(r);
    break;
  }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  gw_http_t *h = cls;
  gw_req_t *r = *con_cls;
  (void)version;
  if (!r) {
    if (!(r = req_new(h, conn)))
      return MHD_NO;
    *con_cls = r;
    return req_begin(r, url, method);
  }
  if (*upload_data_size > 0) {
    enum MHD_Result rc = req_upload(r, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return rc;
  }
  /* The request is complete (or we were resumed). */
  switch (r->state) {
  case REQ_HEADERS:
  case REQ_BODY:
    req_dispatch(r);
    break;
  case REQ_DISCARD:
    r->state = REQ_ANSWER;
    break;
  default:
    break;
  }
  if (r->state == REQ_ANSWER)
    return req_send(r);
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  gw_req_t *r = *con_cls;
  (void)cls;
  (void)conn;
  if (!r)
    return;
  *con_cls = NULL;
  if (r->state != REQ_SENT)
    proto_log(PROTO_LOG_INFO, r->request_id, "http_aborted",
              "%s %s: connection ended before the response (reason %d)",
              r->method_str ? r->method_str : "?", r->url ? r->url : "?", (int)toe);
  req_free(r);
}

static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s) {
  (void)cls;
  (void)conn;
  return gw_url_unescape(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  (void)cls;
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  proto_log(PROTO_LOG_WARN, NULL, "http_server", "%s", msg);
}

/* --- driving MHD from libuv ---------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle) {
  gw_http_t *h = handle->data;
  if (--h->handles_open > 0)
    return;
  while (h->free_reqs) {
    gw_req_t *r = h->free_reqs;
    h->free_reqs = r->next_free;
    free(r);
  }
  void (*done)(void *) = h->done;
  void *arg = h->done_arg;
  free(h);
  if (done)
    done(arg);
}

/* Stop MHD and close our handles; h is freed in the last close callback.
 * Never with a suspended connection: MHD_stop_daemon() aborts then. Also the
 * way out of a failed gw_http_start(): handles_open says how many of them,
 * in initialisation order, exist. */
static void http_finish(gw_http_t *h) {
  uv_handle_t *handles[] = {(uv_handle_t *)&h->timer, (uv_handle_t *)&h->drain_timer,
                            (uv_handle_t *)&h->resume_check, (uv_handle_t *)&h->resume_idle,
                            (uv_handle_t *)&h->poll};
  int n = h->handles_open;
  h->stopped = 1;
  /* The poll handle goes before MHD closes the epoll fd it watches. */
  for (int i = 0; i < n; i++)
    if (!uv_is_closing(handles[i]))
      uv_close(handles[i], on_handle_closed);
  if (h->mhd)
    MHD_stop_daemon(h->mhd); /* completes (and frees) the requests left */
  h->mhd = NULL;
}

static void on_timer(uv_timer_t *t) {
  http_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)events;
  if (status < 0)
    proto_log(PROTO_LOG_ERROR, NULL, "http_poll", "poll: %s", uv_strerror(status));
  http_run(p->data);
}

static void http_run(gw_http_t *h) {
  MHD_UNSIGNED_LONG_LONG ms;
  if (h->stopped || h->in_run)
    return;
  h->in_run = 1;
  proto_cork(); /* the RPCs this run starts leave one write per upstream */
  MHD_run(h->mhd);
  proto_uncork();
  h->in_run = 0;
  if (h->closing && h->active == 0) {
    http_finish(h);
    return;
  }
  /* Without this, MHD work that needs no new event (timeouts, data left in
   * its buffers, large bodies) would wait for the next unrelated wake-up. */
  if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
    uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
  else
    uv_timer_stop(&h->timer);
}

static void on_drain_timeout(uv_timer_t *t) {
  gw_http_t *h = t->data;
  if (h->suspended > 0) {
    /* Cannot stop MHD with suspended connections; the upstreams are closed,
     * so their calls have completed and this should not happen. */
    proto_log(PROTO_LOG_ERROR, NULL, "http_drain", "%zu requests still suspended",
              h->suspended);
    uv_timer_start(t, on_drain_timeout, GW_HTTP_DRAIN_TIMEOUT_MS, 0);
    return;
  }
  proto_log(PROTO_LOG_WARN, NULL, "http_drain",
            "drain deadline passed: dropping %zu unfinished requests", h->active);
  http_finish(h);
}

static int routes_check(const gw_route_t *routes, size_t n) {
  size_t nspecs;
  const gw_upstream_spec_t *specs = gw_upstream_specs(&nspecs);
  for (size_t i = 0; i < n; i++) {
    if (routes[i].action != GW_ACTION_RPC)
      continue;
    size_t k = 0;
    while (k < nspecs && strcmp(specs[k].name, routes[i].upstream) != 0)
      k++;
    if (k == nspecs) {
      proto_log(PROTO_LOG_ERROR, NULL, "route_invalid", "%s: unknown upstream '%s'",
                routes[i].path, routes[i].upstream);
      return -1;
    }
  }
  return 0;
}

static struct MHD_Daemon *start_mhd(gw_http_t *h, const char *host, int port) {
  struct addrinfo hints, *ai = NULL;
  char portstr[8];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%d", port);
  int rc = getaddrinfo(host, portstr, &hints, &ai);
  if (rc != 0 || !ai) {
    proto_log(PROTO_LOG_ERROR, NULL, "http_listen_failed", "%s: %s", host, gai_strerror(rc));
    return NULL;
  }
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, on_access, h,
      MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, or MHD logs to stderr */
      MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)GW_HTTP_IDLE_TIMEOUT_S,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)GW_HTTP_MAX_CONNECTIONS,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
      MHD_OPTION_END);
  int err = errno;
  freeaddrinfo(ai);
  if (!d)
    proto_log(PROTO_LOG_ERROR, NULL, "http_listen_failed", "cannot listen on %s:%d: %s",
              host, port, strerror(err));
  return d;
}

gw_http_t *gw_http_start(uv_loop_t *loop, const gw_http_opts_t *opts,
                         gw_upstreams_t *upstreams) {
  gw_http_t *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  h->loop = loop;
  h->ups = upstreams;
  h->routes = gw_routes(&h->nroutes);
  h->max_body = opts->max_body_bytes ? opts->max_body_bytes : GW_MAX_BODY_BYTES_DEFAULT;
  h->rpc_timeout_ms = opts->rpc_timeout_ms;
  if (routes_check(h->routes, h->nroutes) != 0 || gw_request_id_gen_init(&h->ids) != 0) {
    free(h);
    return NULL;
  }
  /* Handles first; on failure the ones open are closed and h is freed in
   * the last close callback. */
  h->timer.data = h->drain_timer.data = h->resume_check.data = h->resume_idle.data = h;
  h->poll.data = h;
  if (uv_timer_init(loop, &h->timer) != 0)
    goto fail;
  h->handles_open++;
  if (uv_timer_init(loop, &h->drain_timer) != 0)
    goto fail;
  h->handles_open++;
  if (uv_check_init(loop, &h->resume_check) != 0)
    goto fail;
  h->handles_open++;
  if (uv_idle_init(loop, &h->resume_idle) != 0)
    goto fail;
  h->handles_open++;
  h->mhd = start_mhd(h, opts->host, opts->port);
  if (!h->mhd)
    goto fail;
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  if (!info || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "http_listen_failed", "cannot watch MHD's epoll fd");
    goto fail;
  }
  h->handles_open++;
  if (uv_poll_start(&h->poll, UV_READABLE, on_poll) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "http_listen_failed", "cannot poll MHD's epoll fd");
    goto fail;
  }
  info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? (int)info->port : opts->port;
  http_run(h);
  return h;
fail:
  h->stopped = 1;
  if (h->handles_open == 0) {
    free(h);
    return NULL;
  }
  http_finish(h);
  return NULL;
}

int gw_http_port(const gw_http_t *h) {
  return h->port;
}

void gw_http_quiesce(gw_http_t *h) {
  if (h->quiesced || !h->mhd)
    return;
  h->quiesced = 1;
  MHD_socket fd = MHD_quiesce_daemon(h->mhd);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}

void gw_http_close(gw_http_t *h, void (*done)(void *arg), void *arg) {
  if (h->closing)
    return;
  gw_http_quiesce(h);
  h->closing = 1;
  h->done = done;
  h->done_arg = arg;
  uv_timer_start(&h->drain_timer, on_drain_timeout, GW_HTTP_DRAIN_TIMEOUT_MS, 0);
  http_run(h);
}
