/* frame.c: the `<length>#<json>` framing of NestJS's TCP transport: a pure
 * incremental reader (bytes in, frames out, sticky errors) and the encoder.
 * The length counts UTF-16 code units, so the reader validates UTF-8 and
 * counts units as the body arrives, looking at each body byte once however
 * the input is split (PROTOCOL.md section 1). */
#include "proto/frame.h"
#include "proto/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest buffer we allocate; it then doubles as needed. */
#define FRAME_MIN_BUFFER_BYTES 4096u
/* "<up to 20 digits>#" plus NUL: room for any size_t length prefix. */
#define FRAME_PREFIX_MAX_BYTES 24

/* --- UTF-8 ----------------------------------------------------------------- */

/* Look at the UTF-8 sequence starting at p, of which avail > 0 bytes are
 * there. Returns its length in bytes and sets *units (2 for a 4-byte
 * sequence, which UTF-16 writes as a surrogate pair, else 1); 0 when the
 * bytes so far are a valid but unfinished sequence; -1 when invalid:
 * a stray continuation byte, an overlong form (C0, C1, E0 80-9F, F0 80-8F),
 * a surrogate (ED A0-BF), a code point above U+10FFFF (F4 90+, F5-FF). */
static int utf8_step(const unsigned char *p, size_t avail, size_t *units) {
  unsigned char c = p[0];
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  size_t need;
  if (c < 0x80) {
    *units = 1;
    return 1;
  }
  if (c < 0xC2)
    return -1;
  if (c < 0xE0) {
    need = 2;
  } else if (c < 0xF0) {
    need = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c < 0xF5) {
    need = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return -1;
  }
  for (size_t i = 1; i < need; i++) {
    if (i >= avail)
      return 0;
    if (p[i] < lo || p[i] > hi)
      return -1;
    lo = 0x80;
    hi = 0xBF;
  }
  *units = need == 4 ? 2 : 1;
  return (int)need;
}

int proto_utf16_length(const char *s, size_t len, size_t *units) {
  const unsigned char *p = (const unsigned char *)s;
  size_t total = 0, u = 0;
  for (size_t i = 0; i < len;) {
    int n = utf8_step(p + i, len - i, &u);
    if (n <= 0) /* invalid, or cut short by the end of the text */
      return PROTO_EPROTO;
    i += (size_t)n;
    total += u;
  }
  *units = total;
  return 0;
}

/* --- reader ---------------------------------------------------------------- */

void proto_frame_reader_init(proto_frame_reader_t *r, size_t max_frame_bytes) {
  memset(r, 0, sizeof(*r));
  r->max_frame = max_frame_bytes ? max_frame_bytes : PROTO_MAX_FRAME_BYTES_DEFAULT;
}

void proto_frame_reader_free(proto_frame_reader_t *r) {
  if (!r)
    return;
  free(r->buf);
  r->buf = NULL;
  r->cap = r->start = r->end = 0;
}

/* Every entry point returns a set error before doing anything, so the
 * first error is the one kept. */
static int fail(proto_frame_reader_t *r, int err, const char *why) {
  r->err = err;
  r->why = why;
  return err;
}

/* The frame handed out by the last next() stays in the buffer until the
 * reader is called again; drop it now. */
static void release_frame(proto_frame_reader_t *r) {
  r->start += r->consumed_frame;
  r->consumed_frame = 0;
  if (r->start == r->end && !r->in_body) /* empty: restart at 0, for free */
    r->start = r->end = 0;
}

/* Move the unconsumed bytes to the front of the buffer. Offsets of the frame
 * being read move with them. */
static void compact(proto_frame_reader_t *r) {
  size_t shift = r->start;
  memmove(r->buf, r->buf + shift, r->end - shift);
  r->end -= shift;
  r->start = 0;
  if (r->in_body) {
    r->body_start -= shift;
    r->scan -= shift;
  }
}

/* Make room for `need` more bytes after end. Compacting only when the dead
 * prefix is at least half the buffer, or when that avoids growing, keeps the
 * bytes moved no more than the bytes consumed; growth doubles. */
static int ensure_room(proto_frame_reader_t *r, size_t need) {
  release_frame(r);
  if (r->start > 0 && (r->start >= r->cap / 2 || r->cap - r->end < need))
    compact(r);
  if (r->cap - r->end >= need)
    return 0;
  size_t live = r->end - r->start;
  size_t cap = r->cap > FRAME_MIN_BUFFER_BYTES ? r->cap : FRAME_MIN_BUFFER_BYTES;
  while (cap - live < need) {
    if (cap > SIZE_MAX / 2)
      return PROTO_ENOMEM;
    cap *= 2;
  }
  char *buf = realloc(r->buf, cap);
  if (!buf)
    return PROTO_ENOMEM;
  r->buf = buf;
  r->cap = cap;
  return 0;
}

int proto_frame_reader_feed(proto_frame_reader_t *r, const char *data, size_t len) {
  if (r->err)
    return r->err;
  if (len == 0)
    return 0;
  int rc = ensure_room(r, len);
  if (rc != 0)
    return rc;
  memcpy(r->buf + r->end, data, len);
  r->end += len;
  return 0;
}

int proto_frame_reader_reserve(proto_frame_reader_t *r, size_t hint, char **p,
                               size_t *avail) {
  if (r->err)
    return r->err;
  int rc = ensure_room(r, hint ? hint : 1);
  if (rc != 0)
    return rc;
  *p = r->buf + r->end;
  *avail = r->cap - r->end;
  return 0;
}

void proto_frame_reader_commit(proto_frame_reader_t *r, size_t n) {
  if (r->err)
    return;
  if (n > r->cap - r->end) /* more than reserve() offered: a caller bug */
    n = r->cap - r->end;
  r->end += n;
}

static int is_skipped(char c) {
  return c == '\r' || c == '\n' || c == ' ';
}

/* Read "<digits>#" at start. 1 when the body comes next, 0 when more bytes
 * are needed, or the error. Whitespace before the digits is consumed at once
 * (a peer cannot make us hold it); the digits are re-read on each call until
 * the '#' arrives, at most PROTO_FRAME_MAX_LENGTH_DIGITS of them. */
static int read_length(proto_frame_reader_t *r) {
  uint64_t length = 0;
  size_t digits = 0, p;
  while (r->start < r->end && is_skipped(r->buf[r->start]))
    r->start++;
  for (p = r->start; p < r->end && r->buf[p] != '#'; p++) {
    char c = r->buf[p];
    if (c < '0' || c > '9')
      return fail(r, PROTO_EPROTO, digits ? "invalid character in the frame length"
                                          : "frame does not start with a length");
    if (++digits > PROTO_FRAME_MAX_LENGTH_DIGITS)
      return fail(r, PROTO_EPROTO, "frame length has more than 10 digits");
    length = length * 10 + (uint64_t)(c - '0');
  }
  if (p == r->end)
    return 0;
  if (digits == 0)
    return fail(r, PROTO_EPROTO, "frame length has no digits");
  if (length == 0)
    return fail(r, PROTO_EPROTO, "frame length is 0");
  if (length > r->max_frame)
    return fail(r, PROTO_ETOOBIG, "frame length exceeds the maximum frame size");
  r->in_body = 1;
  r->want_units = (size_t)length;
  r->start = r->body_start = r->scan = p + 1;
  r->units = 0;
  return 1;
}

/* Count units from scan on until the announced length is reached. 1 when
 * the body is complete, 0 when more bytes are needed, or the error. The body
 * is also held to max_frame bytes: a length in units allows up to 3 bytes
 * per unit, and the limit is meant to bound our memory. */
static int scan_body(proto_frame_reader_t *r) {
  const unsigned char *b = (const unsigned char *)r->buf;
  while (r->units < r->want_units && r->scan < r->end) {
    size_t u = 0;
    int n = utf8_step(b + r->scan, r->end - r->scan, &u);
    if (n < 0)
      return fail(r, PROTO_EPROTO, "invalid UTF-8 in the frame body");
    if (n == 0)
      return 0; /* the rest of this character has not arrived yet */
    if (r->units + u > r->want_units)
      return fail(r, PROTO_EPROTO, "a character crosses the end of the frame");
    if (r->scan + (size_t)n - r->body_start > r->max_frame)
      return fail(r, PROTO_ETOOBIG, "frame body exceeds the maximum frame size");
    r->scan += (size_t)n;
    r->units += u;
  }
  return r->units == r->want_units;
}

int proto_frame_reader_next(proto_frame_reader_t *r, const char **json, size_t *len) {
  int rc;
  if (r->err)
    return r->err;
  release_frame(r);
  if (!r->in_body && (rc = read_length(r)) <= 0)
    return rc;
  if ((rc = scan_body(r)) <= 0)
    return rc;
  *json = r->buf + r->body_start;
  *len = r->scan - r->body_start;
  r->consumed_frame = *len;
  r->in_body = 0;
  return 1;
}

int proto_frame_reader_partial(const proto_frame_reader_t *r) {
  return r->in_body || r->end - r->start > r->consumed_frame;
}

const char *proto_frame_reader_why(const proto_frame_reader_t *r) {
  return r->err ? r->why : NULL;
}

/* --- encoder --------------------------------------------------------------- */

int proto_frame_encode(const json_t *packet, char **out, size_t *out_len) {
  char *body = NULL, *frame = NULL;
  char prefix[FRAME_PREFIX_MAX_BYTES];
  int rc = PROTO_EINVAL;
  if (out)
    *out = NULL;
  if (out_len)
    *out_len = 0;
  if (!out || !out_len || !(json_is_object(packet) || json_is_array(packet)))
    goto out;
  /* ENSURE_ASCII: every non-ASCII character becomes \uXXXX (a surrogate pair
   * outside the BMP), so bytes == UTF-16 units == the announced length. */
  rc = PROTO_ENOMEM;
  body = json_dumps(packet, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
  if (!body)
    goto out;
  size_t body_len = strlen(body);
  size_t prefix_len = (size_t)snprintf(prefix, sizeof(prefix), "%zu#", body_len);
  frame = malloc(prefix_len + body_len + 1);
  if (!frame)
    goto out;
  memcpy(frame, prefix, prefix_len);
  memcpy(frame + prefix_len, body, body_len + 1);
  *out = frame;
  *out_len = prefix_len + body_len;
  frame = NULL;
  rc = 0;
out:
  free(body);
  free(frame);
  return rc;
}
