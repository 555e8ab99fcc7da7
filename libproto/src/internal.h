/* internal.h: declarations shared by libproto's source files, never installed. */
#ifndef PROTO_INTERNAL_H
#define PROTO_INTERNAL_H

#include <jansson.h>
#include <uv.h>

/* Bytes queued for writing on one connection above which we stop reading
 * from it until the peer drains its replies. */
#define PROTO__WRITE_QUEUE_HIGH_BYTES (8u * 1024u * 1024u)

/* Bytes asked of the frame reader for each read. */
#define PROTO__READ_CHUNK_BYTES (64u * 1024u)

/* A connection's corked output (see proto/cork.h): frames appended while
 * corked, written as one buffer at uncork. Embedded in each connection. */
typedef struct proto__outbuf {
  char *buf;
  size_t len, cap;
  uv_stream_t *stream;
  void (*on_done)(uv_stream_t *stream);
  int dirty;                     /* on the flush list */
  struct proto__outbuf *next;
} proto__outbuf_t;

/* Encode packet as one frame and queue it on stream (through ob while
 * corked); everything is released when the write completes, after on_done
 * (may be NULL) has been called with the stream. 0, PROTO_ENOMEM or
 * PROTO_EIO. */
int proto__write_packet(proto__outbuf_t *ob, uv_stream_t *stream, const json_t *packet,
                        void (*on_done)(uv_stream_t *stream));
/* Write what ob holds now (before its connection closes). */
void proto__outbuf_flush(proto__outbuf_t *ob);
/* Drop what ob holds and take it off the flush list; call when its
 * connection closes. */
void proto__outbuf_free(proto__outbuf_t *ob);

/* Describe the peer of a TCP handle ("127.0.0.1:5000") into buf. */
void proto__peer_name(const uv_tcp_t *tcp, char *buf, size_t size);

/* A metadata value that may be a number or a numeric string (timeoutMs).
 * Returns 1 with *out set when present and valid, else 0. */
int proto__meta_u64(const json_t *metadata, const char *key, uint64_t *out);

#define proto__container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#endif
