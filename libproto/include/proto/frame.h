/* proto/frame.h: the `<length>#<json>` framing of NestJS's TCP transport.
 *
 * The reader is pure (no sockets, no clocks): bytes go in with feed() (or the
 * zero-copy reserve()/commit() pair), complete frames come out of next().
 * The length counts UTF-16 code units of the JSON text, as JavaScript's
 * string.length does; the reader counts units while scanning the UTF-8 body,
 * and invalid UTF-8 is a protocol error. The length is checked against the
 * maximum as soon as it is known, before any of the body is buffered. Errors
 * are sticky: once next() or feed() has returned an error, every later call
 * returns the same error.
 */
#ifndef PROTO_FRAME_H
#define PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define PROTO_MAX_FRAME_BYTES_DEFAULT (1024u * 1024u)
#define PROTO_FRAME_MAX_LENGTH_DIGITS 10

typedef struct proto_frame_reader {
  char *buf;              /* input buffer, owned */
  size_t cap;             /* allocated size of buf */
  size_t start;           /* first unconsumed byte */
  size_t end;             /* one past the last byte received */
  size_t max_frame;       /* limit on a frame's length, in units and in bytes */
  /* parser state for the frame being read */
  int in_body;            /* 0: reading the length, 1: reading the body */
  size_t want_units;      /* length announced by the current frame */
  size_t body_start;      /* offset in buf where the body begins */
  size_t scan;            /* offset in buf up to which the body is scanned */
  size_t units;           /* UTF-16 units counted in [body_start, scan) */
  size_t consumed_frame;  /* bytes of the frame returned by the last next() */
  int err;                /* sticky error, 0 when none */
  const char *why;        /* static reason for err, for the log */
} proto_frame_reader_t;

/* max_frame_bytes 0 means PROTO_MAX_FRAME_BYTES_DEFAULT. Cannot fail. */
void proto_frame_reader_init(proto_frame_reader_t *r, size_t max_frame_bytes);
void proto_frame_reader_free(proto_frame_reader_t *r);

/* Copy len bytes in. 0, or the sticky error, or PROTO_ENOMEM. */
int proto_frame_reader_feed(proto_frame_reader_t *r, const char *data, size_t len);

/* Zero-copy input: get at least `hint` writable bytes at *p (*avail says how
 * many), read into them, then commit the count actually written. */
int proto_frame_reader_reserve(proto_frame_reader_t *r, size_t hint, char **p,
                               size_t *avail);
void proto_frame_reader_commit(proto_frame_reader_t *r, size_t n);

/* Next complete frame. Returns 1 and sets *json and *len to the JSON text (not
 * NUL-terminated; valid until the next call on the reader), 0 when more bytes
 * are needed, or a negative sticky error (PROTO_EPROTO, PROTO_ETOOBIG). */
int proto_frame_reader_next(proto_frame_reader_t *r, const char **json, size_t *len);

/* Non-zero when bytes of an unfinished frame are buffered (for the
 * incomplete-frame timeout). */
int proto_frame_reader_partial(const proto_frame_reader_t *r);

/* Static text saying why the reader failed, or NULL. */
const char *proto_frame_reader_why(const proto_frame_reader_t *r);

/* Encode a packet as one frame: "<len>#<json>", JSON compact with every
 * non-ASCII character escaped so bytes == UTF-16 units == len. *out is
 * malloc'd, owned by the caller. 0, PROTO_ENOMEM or PROTO_EINVAL. */
int proto_frame_encode(const json_t *packet, char **out, size_t *out_len);

/* UTF-16 length of a UTF-8 text into *units. 0, or PROTO_EPROTO on invalid
 * UTF-8. */
int proto_utf16_length(const char *s, size_t len, size_t *units);

#endif
