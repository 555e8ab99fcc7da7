/* redis_uv.c: our hiredis <-> libuv adapter: the redisAsyncContext ev hooks on
 * one uv_poll_t. Written instead of hiredis 0.14's adapters/libuv.h, which
 * drops poll errors (a refused connection then hangs with neither the connect
 * nor the disconnect callback ever called) and defines a file-static on_close.
 */
#include "redis_internal.h"

#include <stdlib.h>

#include "internal.h"
#include "proto/error.h"
#include "proto/log.h"

typedef struct redis_uv {
  uv_poll_t poll;                     /* watches ac->c.fd */
  redisAsyncContext *ac;              /* NULL once hiredis has cleaned up */
  int events;                         /* UV_READABLE | UV_WRITABLE being watched */
  int reported;                       /* on_error already called */
  proto__redis_uv_error_cb on_error;
  proto__redis_uv_closed_cb on_closed;
  void *arg;
} redis_uv_t;

static void on_poll(uv_poll_t *handle, int status, int events);

static void report(redis_uv_t *a, int uv_err) {
  if (a->reported || !a->ac)
    return;
  a->reported = 1;
  a->on_error(a->arg, a->ac, uv_err);
}

/* hiredis asks for a new set of events; the hooks must be idempotent. */
static void watch(redis_uv_t *a, int events) {
  if (!a->ac || events == a->events)
    return;
  int rc = events ? uv_poll_start(&a->poll, events, on_poll) : uv_poll_stop(&a->poll);
  if (rc != 0) {
    report(a, rc); /* hiredis cannot hear about it from a void hook */
    return;
  }
  a->events = events;
}

static void add_read(void *privdata) {
  redis_uv_t *a = privdata;
  watch(a, a->events | UV_READABLE);
}

static void del_read(void *privdata) {
  redis_uv_t *a = privdata;
  watch(a, a->events & ~UV_READABLE);
}

static void add_write(void *privdata) {
  redis_uv_t *a = privdata;
  watch(a, a->events | UV_WRITABLE);
}

static void del_write(void *privdata) {
  redis_uv_t *a = privdata;
  watch(a, a->events & ~UV_WRITABLE);
}

static void on_poll_closed(uv_handle_t *handle) {
  redis_uv_t *a = proto__container_of(handle, redis_uv_t, poll);
  proto__redis_uv_closed_cb cb = a->on_closed;
  void *arg = a->arg;
  free(a);
  cb(arg);
}

/* hiredis is freeing ac (it closes the fd right after we return). 0.14 may
 * call this twice, and calls no hook after we clear them. The adapter itself
 * lives until the close callback, so a poll callback still on the stack may
 * look at it safely. */
static void cleanup(void *privdata) {
  redis_uv_t *a = privdata;
  redisAsyncContext *ac = a->ac;
  if (!ac)
    return;
  ac->ev.addRead = NULL;
  ac->ev.delRead = NULL;
  ac->ev.addWrite = NULL;
  ac->ev.delWrite = NULL;
  ac->ev.cleanup = NULL;
  ac->ev.data = NULL;
  a->ac = NULL;
  /* uv_close stops polling synchronously, before hiredis closes the fd. */
  uv_close((uv_handle_t *)&a->poll, on_poll_closed);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  redis_uv_t *a = proto__container_of(handle, redis_uv_t, poll);
  redisAsyncContext *ac = a->ac;
  if (!ac)
    return;
  if (status < 0) {
    /* POLLERR: libuv has stopped the handle and tells us nothing more. Let
     * hiredis look at the socket: before the connection is up, the write
     * handler reads SO_ERROR (a refused connect fails the connect callback);
     * after, read() returns the error or EOF. */
    a->events = 0;
    proto_log(PROTO_LOG_DEBUG, NULL, "redis_poll_error", "fd %d: %s (%s)", ac->c.fd,
              uv_strerror(status),
              (ac->c.flags & REDIS_CONNECTED) ? "connected" : "connecting");
    if (!(ac->c.flags & REDIS_CONNECTED))
      redisAsyncHandleWrite(ac);
    else
      redisAsyncHandleRead(ac);
    /* Still alive: hiredis saw nothing wrong, yet the socket is in error. */
    report(a, status);
    return;
  }
  if (events & UV_READABLE)
    redisAsyncHandleRead(ac);
  if (a->ac && (events & UV_WRITABLE))
    redisAsyncHandleWrite(ac);
}

int proto__redis_uv_attach(uv_loop_t *loop, redisAsyncContext *ac,
                           proto__redis_uv_error_cb on_error,
                           proto__redis_uv_closed_cb on_closed, void *arg) {
  if (!loop || !ac || !on_error || !on_closed || ac->ev.data != NULL || ac->c.fd < 0)
    return PROTO_EINVAL;
  redis_uv_t *a = calloc(1, sizeof(*a));
  if (!a)
    return PROTO_ENOMEM;
  /* On failure uv_poll_init registers nothing, so freeing is enough. */
  if (uv_poll_init(loop, &a->poll, ac->c.fd) != 0) {
    free(a);
    return PROTO_EIO;
  }
  a->ac = ac;
  a->on_error = on_error;
  a->on_closed = on_closed;
  a->arg = arg;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  ac->ev.data = a;
  return 0;
}
