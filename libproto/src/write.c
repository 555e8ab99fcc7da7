/* write.c: queue packets as frames on a libuv stream. Outside a cork each
 * packet is one uv_write (one request allocation holding the prefix). Inside a
 * cork (proto_cork/proto_uncork around a burst: one read's frames, one commit
 * group's replies) the frames of each stream are appended to one buffer and go
 * out as a single write at uncork: a reply burst costs one syscall, not one
 * per reply. */
#include "internal.h"
#include "proto/cork.h"
#include "proto/error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct write_req {
  uv_write_t req;
  void (*on_done)(uv_stream_t *stream);
  char *body;      /* owned: json_dumps output, or a whole corked batch */
  char hdr[24];    /* "<len>#" (single-packet writes) */
} write_req_t;

static int cork_depth;
static proto__outbuf_t *dirty;   /* buffers holding frames, flushed at uncork */

static void on_written(uv_write_t *req, int status) {
  (void)status; /* a failed write shows up as a read error on the same socket */
  write_req_t *w = proto__container_of(req, write_req_t, req);
  if (w->on_done)
    w->on_done(req->handle);
  free(w->body);
  free(w);
}

static char *dump(const json_t *packet, size_t *len) {
  /* ENSURE_ASCII: every non-ASCII character is escaped, so the byte count is
   * also the UTF-16 unit count NestJS expects in the prefix. */
  char *body = json_dumps(packet, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
  if (body)
    *len = strlen(body);
  return body;
}

static int append(proto__outbuf_t *ob, const char *p, size_t n) {
  if (ob->len + n > ob->cap) {
    size_t cap = ob->cap ? ob->cap : 4096;
    while (cap < ob->len + n)
      cap *= 2;
    char *b = realloc(ob->buf, cap);
    if (!b)
      return PROTO_ENOMEM;
    ob->buf = b;
    ob->cap = cap;
  }
  memcpy(ob->buf + ob->len, p, n);
  ob->len += n;
  return 0;
}

int proto__write_packet(proto__outbuf_t *ob, uv_stream_t *stream, const json_t *packet,
                        void (*on_done)(uv_stream_t *stream)) {
  size_t len;
  if (cork_depth > 0) {
    char *body = dump(packet, &len);
    char hdr[24];
    if (!body)
      return PROTO_ENOMEM;
    int hlen = snprintf(hdr, sizeof(hdr), "%zu#", len);
    int rc = append(ob, hdr, (size_t)hlen);
    if (rc == 0)
      rc = append(ob, body, len);
    free(body);
    if (rc != 0)
      return rc;
    ob->stream = stream;
    ob->on_done = on_done;
    if (!ob->dirty) {
      ob->dirty = 1;
      ob->next = dirty;
      dirty = ob;
    }
    return 0;
  }
  write_req_t *w = malloc(sizeof(*w));
  if (!w)
    return PROTO_ENOMEM;
  w->on_done = on_done;
  if (!(w->body = dump(packet, &len))) {
    free(w);
    return PROTO_ENOMEM;
  }
  int hlen = snprintf(w->hdr, sizeof(w->hdr), "%zu#", len);
  uv_buf_t bufs[2] = {uv_buf_init(w->hdr, (unsigned)hlen),
                      uv_buf_init(w->body, (unsigned)len)};
  if (uv_write(&w->req, stream, bufs, 2, on_written) != 0) {
    free(w->body);
    free(w);
    return PROTO_EIO;
  }
  return 0;
}

/* Hand the buffered frames to libuv in one write; the request owns them. */
static void flush_one(proto__outbuf_t *ob) {
  if (ob->len == 0 || !ob->stream || uv_is_closing((uv_handle_t *)ob->stream)) {
    ob->len = 0; /* the connection is going away: so are its frames */
    return;
  }
  write_req_t *w = malloc(sizeof(*w));
  if (!w) {
    ob->len = 0;
    return; /* the peer's calls time out: the same as a lost connection */
  }
  w->on_done = ob->on_done;
  w->body = ob->buf;
  uv_buf_t buf = uv_buf_init(ob->buf, (unsigned)ob->len);
  ob->buf = NULL;
  ob->cap = 0;
  ob->len = 0;
  if (uv_write(&w->req, ob->stream, &buf, 1, on_written) != 0) {
    free(w->body);
    free(w);
  }
}

void proto_cork(void) {
  cork_depth++;
}

void proto_uncork(void) {
  if (cork_depth == 0 || --cork_depth > 0)
    return;
  while (dirty) {
    proto__outbuf_t *ob = dirty;
    dirty = ob->next;
    ob->dirty = 0;
    ob->next = NULL;
    flush_one(ob);
  }
}

static void unlink_dirty(proto__outbuf_t *ob) {
  if (!ob->dirty)
    return;
  for (proto__outbuf_t **pp = &dirty; *pp; pp = &(*pp)->next) {
    if (*pp == ob) {
      *pp = ob->next;
      break;
    }
  }
  ob->dirty = 0;
  ob->next = NULL;
}

void proto__outbuf_flush(proto__outbuf_t *ob) {
  unlink_dirty(ob);
  flush_one(ob);
}

void proto__outbuf_free(proto__outbuf_t *ob) {
  /* Unlink first: a corked buffer of a connection that closes mid-burst must
   * not be flushed after its owner is gone. */
  unlink_dirty(ob);
  free(ob->buf);
  memset(ob, 0, sizeof(*ob));
}

void proto__peer_name(const uv_tcp_t *tcp, char *buf, size_t size) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[64] = "?";
  int port = 0;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      uv_ip4_name(a, ip, sizeof(ip));
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, ip, sizeof(ip));
      port = ntohs(a->sin6_port);
    }
  }
  snprintf(buf, size, "%s:%d", ip, port);
}

int proto__meta_u64(const json_t *metadata, const char *key, uint64_t *out) {
  const json_t *v = metadata ? json_object_get(metadata, key) : NULL;
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0)
      return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    if (*s < '0' || *s > '9')
      return 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (*end != '\0')
      return 0;
    *out = n;
    return 1;
  }
  return 0;
}
