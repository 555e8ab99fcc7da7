/* webhook.c: POSTs notifications to one URL without blocking the loop.
 * libcurl's multi interface is driven by libuv: CURLMOPT_SOCKETFUNCTION
 * keeps one uv_poll per socket, CURLMOPT_TIMERFUNCTION one uv_timer, and
 * every wake-up calls curl_multi_socket_action() and then collects finished
 * transfers (CURLMSG_DONE). Each delivery is queued, in flight, or waiting
 * out a backoff on its own timer; retries double the backoff.
 */
#include "notification.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/log.h"

/* The struct that embeds member ptr (libuv handles embedded in ours). */
#define NTF_CONTAINER_OF(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define NTF_WEBHOOK_USER_AGENT "nestc-notification/0.1"
#define NTF_HEADER_VALUE_MAX_BYTES 128   /* X-Request-Id longer than this is left out */

typedef enum {
  D_QUEUED,                        /* waiting for a free slot */
  D_INFLIGHT,                      /* a POST is running (easy != NULL) */
  D_BACKOFF,                       /* timer armed for the next attempt */
} dstate_t;

typedef struct delivery {
  ntf_webhook_t *w;
  struct delivery *prev, *next;    /* every live delivery (w->all) */
  struct delivery *qnext;          /* the ready queue, when D_QUEUED */
  dstate_t state;
  char *id;                        /* owned: the notification id */
  char *request_id;                /* owned, may be NULL */
  char *body;                      /* owned JSON text */
  size_t body_len;
  struct curl_slist *headers;      /* owned */
  CURL *easy;                      /* the attempt in flight, or NULL */
  uv_timer_t timer;                /* backoff; closed when the delivery ends */
  unsigned attempts;               /* made so far, earlier runs included */
  long http_status;                /* of the last attempt */
  char errbuf[CURL_ERROR_SIZE];    /* curl's detail for the running attempt */
  char error[NTF_WEBHOOK_ERROR_MAX]; /* last failure, "" when none */
} delivery_t;

/* One socket curl asked us to watch. */
typedef struct sock {
  uv_poll_t poll;
  ntf_webhook_t *w;
  curl_socket_t fd;
  struct sock *prev, *next;        /* w->socks */
  int closing;
} sock_t;

struct ntf_webhook {
  uv_loop_t *loop;
  CURLM *multi;                    /* NULL once cleaned up */
  uv_timer_t curl_timer;           /* CURLMOPT_TIMERFUNCTION */
  uv_timer_t close_timer;          /* close(): the in-flight deadline */
  char *url;                       /* owned */
  char *url_display;               /* owned: no credentials, no query */
  unsigned max_attempts, timeout_ms, backoff_ms, backoff_max_ms, concurrency;
  size_t queue_max;
  ntf_webhook_report_fn fn;
  void *ctx;
  delivery_t *all;                 /* live deliveries */
  delivery_t *ready_head, *ready_tail;
  sock_t *socks;                   /* watched sockets */
  size_t active, inflight;
  unsigned handles_open;           /* uv handles not yet closed */
  int closing;                     /* close() called: no new work */
  int finishing;                   /* handles closing; freed in the last close cb */
  void (*done)(void *arg);
  void *done_arg;
  ntf_webhook_stats_t stats;
};

const char *ntf_delivery_name(ntf_delivery_t status) {
  switch (status) {
  case NTF_DELIVERY_DELIVERED:
    return "delivered";
  case NTF_DELIVERY_FAILED:
    return "failed";
  default:
    return "pending";
  }
}

/* --- freeing: every handle counted, the struct freed in the last callback -------- */

static void maybe_free(ntf_webhook_t *w) {
  if (!w->finishing || w->handles_open > 0)
    return;
  void (*done)(void *) = w->done;
  void *arg = w->done_arg;
  free(w->url);
  free(w->url_display);
  free(w);
  if (done)
    done(arg);
}

static void on_own_timer_closed(uv_handle_t *h) {
  ntf_webhook_t *w = h->data;
  w->handles_open--;
  maybe_free(w);
}

static void on_sock_closed(uv_handle_t *h) {
  sock_t *s = NTF_CONTAINER_OF(h, sock_t, poll);
  ntf_webhook_t *w = s->w;
  free(s);
  w->handles_open--;
  maybe_free(w);
}

static void sock_close(sock_t *s) {
  ntf_webhook_t *w = s->w;
  if (s->closing)
    return;
  s->closing = 1;
  if (s->prev)
    s->prev->next = s->next;
  else
    w->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_delivery_closed(uv_handle_t *h) {
  delivery_t *d = NTF_CONTAINER_OF(h, delivery_t, timer);
  ntf_webhook_t *w = d->w;
  free(d);
  w->handles_open--;
  maybe_free(w);
}

/* Unlink d and release it; the memory goes when its timer is closed. */
static void delivery_free(delivery_t *d) {
  ntf_webhook_t *w = d->w;
  if (d->prev)
    d->prev->next = d->next;
  else
    w->all = d->next;
  if (d->next)
    d->next->prev = d->prev;
  w->active--;
  free(d->id);
  free(d->request_id);
  free(d->body);
  curl_slist_free_all(d->headers);
  d->id = d->request_id = d->body = NULL;
  d->headers = NULL;
  uv_close((uv_handle_t *)&d->timer, on_delivery_closed);
}

/* Once closing and idle: clean up curl, close our handles. */
static void maybe_finish(ntf_webhook_t *w) {
  if (!w->closing || w->finishing || w->active > 0)
    return;
  w->finishing = 1;
  uv_timer_stop(&w->close_timer);
  /* May close pooled keep-alive connections and tell on_curl_socket so;
   * whatever it leaves watched is closed below. */
  curl_multi_cleanup(w->multi);
  w->multi = NULL;
  while (w->socks)
    sock_close(w->socks);
  uv_close((uv_handle_t *)&w->curl_timer, on_own_timer_closed);
  uv_close((uv_handle_t *)&w->close_timer, on_own_timer_closed);
}

/* --- reports ------------------------------------------------------------------- */

static void report(delivery_t *d, ntf_delivery_t status, unsigned retry_in_ms, int final) {
  ntf_webhook_t *w = d->w;
  if (!w->fn)
    return;
  ntf_webhook_report_t r = {
      .id = d->id,
      .request_id = d->request_id,
      .status = status,
      .attempts = d->attempts,
      .http_status = d->http_status,
      .error = status == NTF_DELIVERY_DELIVERED || !d->error[0] ? NULL : d->error,
      .retry_in_ms = retry_in_ms,
      .final = final,
  };
  w->fn(&r, w->ctx);
}

/* A delivery cut short by close(): it stays pending for the next run. */
static void interrupt(delivery_t *d, const char *why) {
  if (why)
    snprintf(d->error, sizeof(d->error), "%s", why);
  d->w->stats.interrupted++;
  report(d, NTF_DELIVERY_PENDING, 0, 1);
  delivery_free(d);
}

/* --- attempts ------------------------------------------------------------------ */

static void pump(ntf_webhook_t *w);

static unsigned backoff_for(const ntf_webhook_t *w, unsigned attempts) {
  /* backoff_ms before the 2nd attempt, doubling, capped: 200, 400, 800, ... */
  uint64_t delay = w->backoff_ms;
  for (unsigned i = 1; i < attempts && delay < w->backoff_max_ms; i++)
    delay *= 2;
  return delay > w->backoff_max_ms ? w->backoff_max_ms : (unsigned)delay;
}

static int retryable(CURLcode res, long code) {
  if (res == CURLE_OK)
    return code == 408 || code == 429 || code >= 500;
  /* A URL or build problem will not fix itself; a network one may. */
  return res != CURLE_URL_MALFORMAT && res != CURLE_UNSUPPORTED_PROTOCOL &&
         res != CURLE_NOT_BUILT_IN;
}

static void on_retry_timer(uv_timer_t *t) {
  delivery_t *d = NTF_CONTAINER_OF(t, delivery_t, timer);
  ntf_webhook_t *w = d->w;
  d->state = D_QUEUED;
  d->qnext = NULL;
  if (w->ready_tail)
    w->ready_tail->qnext = d;
  else
    w->ready_head = d;
  w->ready_tail = d;
  pump(w);
}

/* The attempt of d ended (res, code). Decide: delivered, retry, failed. */
static void attempt_done(delivery_t *d, CURLcode res, long code) {
  ntf_webhook_t *w = d->w;
  d->http_status = res == CURLE_OK ? code : 0;
  if (res == CURLE_OK && code >= 200 && code < 300) {
    d->error[0] = '\0';
    w->stats.delivered++;
    report(d, NTF_DELIVERY_DELIVERED, 0, 1);
    delivery_free(d);
    return;
  }
  if (res != CURLE_OK)
    snprintf(d->error, sizeof(d->error), "%s", d->errbuf[0] ? d->errbuf : curl_easy_strerror(res));
  else
    snprintf(d->error, sizeof(d->error), "HTTP status %ld", code);
  if (!retryable(res, code) || d->attempts >= w->max_attempts) {
    w->stats.failed++;
    report(d, NTF_DELIVERY_FAILED, 0, 1);
    delivery_free(d);
    return;
  }
  if (w->closing) {
    interrupt(d, NULL); /* keep the attempt's error */
    return;
  }
  unsigned delay = backoff_for(w, d->attempts);
  w->stats.retries++;
  d->state = D_BACKOFF;
  if (uv_timer_start(&d->timer, on_retry_timer, delay, 0) != 0) {
    w->stats.failed++; /* cannot happen: the timer is initialised and not closing */
    report(d, NTF_DELIVERY_FAILED, 0, 1);
    delivery_free(d);
    return;
  }
  report(d, NTF_DELIVERY_PENDING, delay, 0);
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
  (void)ptr;
  (void)userdata;
  return size * nmemb; /* the answer's status is all we need */
}

/* Start the next attempt of d. A setup failure counts as a failed attempt. */
static void start_attempt(delivery_t *d) {
  ntf_webhook_t *w = d->w;
  CURL *e = curl_easy_init();
  CURLcode rc = e ? CURLE_OK : CURLE_OUT_OF_MEMORY;
  d->attempts++;
  d->errbuf[0] = '\0';
  w->stats.attempts++;
#define SET(opt, val)                                                                      \
  do {                                                                                     \
    if (rc == CURLE_OK)                                                                    \
      rc = curl_easy_setopt(e, opt, val);                                                  \
  } while (0)
  SET(CURLOPT_URL, w->url);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_POSTFIELDS, d->body);
  SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
  SET(CURLOPT_HTTPHEADER, d->headers);
  SET(CURLOPT_USERAGENT, NTF_WEBHOOK_USER_AGENT);
  SET(CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS, (long)w->timeout_ms);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, discard_body);
  SET(CURLOPT_ERRORBUFFER, d->errbuf);
  SET(CURLOPT_PRIVATE, (void *)d);
#undef SET
  if (rc == CURLE_OK) {
    CURLMcode mrc = curl_multi_add_handle(w->multi, e);
    if (mrc != CURLM_OK) {
      snprintf(d->errbuf, sizeof(d->errbuf), "curl_multi_add_handle: %s",
               curl_multi_strerror(mrc));
      rc = CURLE_FAILED_INIT;
    }
  }
  if (rc != CURLE_OK) {
    if (e)
      curl_easy_cleanup(e);
    attempt_done(d, rc, 0);
    return;
  }
  d->easy = e;
  d->state = D_INFLIGHT;
  w->inflight++;
}

/* Start queued deliveries while slots are free. Never from a curl callback. */
static void pump(ntf_webhook_t *w) {
  while (!w->closing && w->inflight < w->concurrency && w->ready_head) {
    delivery_t *d = w->ready_head;
    w->ready_head = d->qnext;
    if (!w->ready_head)
      w->ready_tail = NULL;
    d->qnext = NULL;
    start_attempt(d);
  }
}

/* Take the finished transfer of d off the multi handle. */
static void detach(delivery_t *d) {
  ntf_webhook_t *w = d->w;
  curl_multi_remove_handle(w->multi, d->easy);
  curl_easy_cleanup(d->easy);
  d->easy = NULL;
  w->inflight--;
}

/* Collect every finished transfer, then refill the slots. */
static void check_done(ntf_webhook_t *w) {
  CURLMsg *msg;
  int left;
  while (w->multi && (msg = curl_multi_info_read(w->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    /* msg is invalid once the handle is removed: copy what we need. */
    CURL *e = msg->easy_handle;
    CURLcode res = msg->data.result;
    char *priv = NULL;
    long code = 0;
    if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
      continue; /* cannot happen: every handle we add carries its delivery */
    delivery_t *d = (delivery_t *)(void *)priv;
    if (curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
      code = 0;
    detach(d);
    attempt_done(d, res, code);
  }
  pump(w);
  maybe_finish(w);
}

/* --- libcurl <-> libuv ------------------------------------------------------------ */

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *s = NTF_CONTAINER_OF(h, sock_t, poll);
  ntf_webhook_t *w = s->w;
  int flags = 0, running = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else
    flags = ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
            ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
  /* s may be closed in here (CURL_POLL_REMOVE); its memory lives until its
   * close callback, so nothing below touches it. */
  curl_multi_socket_action(w->multi, s->fd, flags, &running);
  check_done(w);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  ntf_webhook_t *w = userp;
  sock_t *s = socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      if (!w->finishing)
        curl_multi_assign(w->multi, fd, NULL);
      sock_close(s);
    }
    return 0;
  }
  if (w->finishing)
    return 0;
  if (!s) {
    if (!(s = calloc(1, sizeof(*s))))
      return -1;
    if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
      free(s);
      return -1; /* curl fails the transfer: an ordinary, retried error */
    }
    s->w = w;
    s->fd = fd;
    s->next = w->socks;
    if (w->socks)
      w->socks->prev = s;
    w->socks = s;
    w->handles_open++;
    curl_multi_assign(w->multi, fd, s);
  }
  int events = ((what & CURL_POLL_IN) ? UV_READABLE : 0) |
               ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
  return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_curl_timeout(uv_timer_t *t) {
  ntf_webhook_t *w = t->data;
  int running = 0;
  curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(w);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  ntf_webhook_t *w = userp;
  (void)multi;
  if (w->finishing)
    return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&w->curl_timer);
  else /* 0 means "now": the next loop iteration, never from inside curl */
    uv_timer_start(&w->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

/* --- public API -------------------------------------------------------------------- */

/* Parse url with curl's own parser (what will be requested is what was
 * checked); *display gets it without credentials or query, for logs. */
static int check_url(const char *url, char **display) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *text = NULL;
  int ret = -1;
  *display = NULL;
  if (!u)
    return -1;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
    goto out;
  if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
    goto out;
  curl_url_set(u, CURLUPART_USER, NULL, 0);
  curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
  curl_url_set(u, CURLUPART_QUERY, NULL, 0);
  if (curl_url_get(u, CURLUPART_URL, &text, 0) != CURLUE_OK)
    goto out;
  if (!(*display = strdup(text)))
    goto out;
  ret = 0;
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(text);
  curl_url_cleanup(u);
  return ret;
}

ntf_webhook_t *ntf_webhook_new(uv_loop_t *loop, const ntf_webhook_opts_t *opts,
                               ntf_webhook_report_fn fn, void *ctx) {
  ntf_webhook_t *w = NULL;
  char *display = NULL;
  if (!opts || !opts->url || check_url(opts->url, &display) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "webhook URL must be an http:// or https:// URL with a host");
    return NULL;
  }
  if (!(w = calloc(1, sizeof(*w))) || !(w->url = strdup(opts->url)) ||
      !(w->multi = curl_multi_init()))
    goto fail;
  w->url_display = display;
  display = NULL;
  w->loop = loop;
  w->fn = fn;
  w->ctx = ctx;
  w->max_attempts = opts->max_attempts ? opts->max_attempts : NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT;
  w->timeout_ms = opts->timeout_ms ? opts->timeout_ms : NTF_WEBHOOK_TIMEOUT_MS_DEFAULT;
  w->backoff_ms = opts->backoff_ms ? opts->backoff_ms : NTF_WEBHOOK_BACKOFF_MS_DEFAULT;
  w->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : NTF_WEBHOOK_BACKOFF_MAX_MS;
  w->concurrency = opts->concurrency ? opts->concurrency : NTF_WEBHOOK_CONCURRENCY_DEFAULT;
  w->queue_max = opts->queue_max ? opts->queue_max : NTF_WEBHOOK_QUEUE_MAX_DEFAULT;
  if (curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
      curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w) != CURLM_OK ||
      curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
      curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w) != CURLM_OK ||
      curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->concurrency) != CURLM_OK)
    goto fail;
  /* uv_timer_init cannot fail; from here on the struct is freed by handles. */
  uv_timer_init(loop, &w->curl_timer);
  uv_timer_init(loop, &w->close_timer);
  w->curl_timer.data = w;
  w->close_timer.data = w;
  w->handles_open = 2;
  json_t *f = json_pack("{s:s, s:i, s:i, s:i}", "url", w->url_display, "maxAttempts",
                        (int)w->max_attempts, "timeoutMs", (int)w->timeout_ms, "backoffMs",
                        (int)w->backoff_ms);
  proto_log_fields(PROTO_LOG_INFO, NULL, "webhook_enabled", f);
  return w;
fail:
  proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot set up webhook delivery");
  free(display);
  if (w) {
    if (w->multi)
      curl_multi_cleanup(w->multi);
    free(w->url);
    free(w->url_display);
    free(w);
  }
  return NULL;
}

/* A header value we can send as is: printable ASCII, short. */
static int header_safe(const char *v) {
  size_t n = 0;
  for (; v[n]; n++)
    if ((unsigned char)v[n] < 0x20 || (unsigned char)v[n] > 0x7E)
      return 0;
  return n > 0 && n <= NTF_HEADER_VALUE_MAX_BYTES;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name,
                                     const char *value, int *ok) {
  char line[NTF_HEADER_VALUE_MAX_BYTES + 64];
  if (!*ok)
    return list;
  snprintf(line, sizeof(line), "%s: %s", name, value);
  struct curl_slist *grown = curl_slist_append(list, line);
  if (!grown) {
    *ok = 0;
    return list;
  }
  return grown;
}

int ntf_webhook_submit(ntf_webhook_t *w, const char *id, const char *request_id, json_t *body,
                       unsigned attempts_done) {
  delivery_t *d = NULL;
  int ok = 1, ret = PROTO_ENOMEM;
  if (w->closing) {
    ret = PROTO_ECLOSED;
    goto out;
  }
  if (!id || !header_safe(id) || !body) {
    ret = PROTO_EINVAL;
    goto out;
  }
  if (w->active >= w->queue_max) {
    ret = PROTO_EFULL;
    goto out;
  }
  if (!(d = calloc(1, sizeof(*d))) || !(d->id = strdup(id)) ||
      (request_id && !(d->request_id = strdup(request_id))) ||
      !(d->body = json_dumps(body, JSON_COMPACT)))
    goto out;
  d->body_len = strlen(d->body);
  d->headers = add_header(d->headers, "Content-Type", "application/json", &ok);
  /* The receiver can drop a repeat: a retry after a lost answer sends the
   * same notification again. */
  d->headers = add_header(d->headers, "Idempotency-Key", id, &ok);
  if (request_id && header_safe(request_id))
    d->headers = add_header(d->headers, "X-Request-Id", request_id, &ok);
  /* No "Expect: 100-continue" round trip before the body. */
  d->headers = add_header(d->headers, "Expect", "", &ok);
  if (!ok)
    goto out;
  d->w = w;
  d->attempts = attempts_done;
  d->state = D_QUEUED;
  uv_timer_init(w->loop, &d->timer);
  w->handles_open++;
  d->next = w->all;
  if (w->all)
    w->all->prev = d;
  w->all = d;
  w->active++;
  if (w->ready_tail)
    w->ready_tail->qnext = d;
  else
    w->ready_head = d;
  w->ready_tail = d;
  d = NULL;
  ret = 0;
  pump(w);
out:
  if (d) {
    free(d->id);
    free(d->request_id);
    free(d->body);
    curl_slist_free_all(d->headers);
    free(d);
  }
  json_decref(body);
  return ret;
}

void ntf_webhook_stats(const ntf_webhook_t *w, ntf_webhook_stats_t *out) {
  *out = w->stats;
  out->active = w->active;
  out->inflight = w->inflight;
}

json_t *ntf_webhook_health(const ntf_webhook_t *w) {
  return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "url", w->url_display, "active",
                   (json_int_t)w->active, "inflight", (json_int_t)w->inflight, "delivered",
                   (json_int_t)w->stats.delivered, "failed", (json_int_t)w->stats.failed,
                   "retries", (json_int_t)w->stats.retries);
}

static void on_close_deadline(uv_timer_t *t) {
  ntf_webhook_t *w = t->data;
  /* Abort what is still in flight; the next run retries it. */
  delivery_t *d = w->all;
  while (d) {
    delivery_t *next = d->next;
    if (d->state == D_INFLIGHT) {
      detach(d);
      interrupt(d, "interrupted by shutdown");
    }
    d = next;
  }
  maybe_finish(w);
}

void ntf_webhook_close(ntf_webhook_t *w, unsigned deadline_ms, void (*done)(void *arg),
                       void *arg) {
  if (!w || w->closing)
    return;
  w->closing = 1;
  w->done = done;
  w->done_arg = arg;
  /* Queued and backing-off deliveries end now, still pending. */
  w->ready_head = w->ready_tail = NULL;
  delivery_t *d = w->all;
  while (d) {
    delivery_t *next = d->next;
    if (d->state != D_INFLIGHT)
      interrupt(d, d->error[0] ? NULL : "interrupted by shutdown");
    d = next;
  }
  if (w->inflight > 0) {
    proto_log(PROTO_LOG_INFO, NULL, "webhook_draining",
              "%zu deliveries in flight; waiting up to %u ms", w->inflight, deadline_ms);
    uv_timer_start(&w->close_timer, on_close_deadline, deadline_ms, 0);
  }
  maybe_finish(w);
}
