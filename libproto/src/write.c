/* write.c: queue one packet as one frame on a libuv stream, with a single
 * request allocation holding the length prefix. */
#include "internal.h"
#include "proto/error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct write_req {
  uv_write_t req;
  void (*on_done)(uv_stream_t *stream);
  char *body;      /* json_dumps output, owned */
  char hdr[24];    /* "<len>#" */
} write_req_t;

static void on_written(uv_write_t *req, int status) {
  (void)status; /* a failed write shows up as a read error on the same socket */
  write_req_t *w = proto__container_of(req, write_req_t, req);
  if (w->on_done)
    w->on_done(req->handle);
  free(w->body);
  free(w);
}

int proto__write_packet(uv_stream_t *stream, const json_t *packet,
                        void (*on_done)(uv_stream_t *stream)) {
  write_req_t *w = malloc(sizeof(*w));
  if (!w)
    return PROTO_ENOMEM;
  w->on_done = on_done;
  /* ENSURE_ASCII: every non-ASCII character is escaped, so the byte count is
   * also the UTF-16 unit count NestJS expects in the prefix. */
  w->body = json_dumps(packet, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
  if (!w->body) {
    free(w);
    return PROTO_ENOMEM;
  }
  size_t len = strlen(w->body);
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
