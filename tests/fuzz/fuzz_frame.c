/* fuzz_frame.c: libFuzzer target for everything that parses network input
 * on the TCP path: the frame reader (fed in input-chosen splits, through
 * both feed() and reserve()/commit()) and the request and reply decoders
 * applied to every frame. Oracles beyond the sanitizers: splitting the input
 * never changes the frames or the final result, every frame is valid UTF-8
 * within the limit, and a decoded packet survives encode + re-read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "proto/pattern.h"

/* Small limits so the fuzzer reaches ETOOBIG; one byte of input picks one. */
static const size_t max_frames[] = {16, 100, 4096, 0 /* default, 1 MiB */};
#define FUZZ_MAX_SPLIT_BYTES 64

typedef struct result {
  uint64_t hash; /* FNV-1a over every frame, with its length */
  size_t frames;
  int rc; /* last next() */
} result_t;

static void hash_bytes(result_t *res, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    res->hash = (res->hash ^ b[i]) * 1099511628211ull;
}

/* Re-encode a decoded packet and read it back: the reader must accept what
 * the encoder writes, and the JSON must come back equal. */
static void check_round_trip(const json_t *root) {
  char *frame = NULL;
  size_t len = 0;
  if (proto_frame_encode(root, &frame, &len) != 0)
    abort();
  proto_frame_reader_t r;
  const char *json;
  size_t jlen;
  proto_frame_reader_init(&r, 0);
  if (proto_frame_reader_feed(&r, frame, len) != 0 ||
      proto_frame_reader_next(&r, &json, &jlen) != 1)
    abort();
  json_t *back = json_loadb(json, jlen, JSON_DECODE_ANY, NULL);
  if (!back) /* the decoder's fallback for integers beyond 64 bits */
    back = json_loadb(json, jlen, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
  if (!back || !json_equal(back, root))
    abort();
  json_decref(back);
  proto_frame_reader_free(&r);
  free(frame);
}

static void check_frame(const char *json, size_t len, size_t max) {
  size_t units = 0;
  if (proto_utf16_length(json, len, &units) != 0 || units == 0 || len > max)
    abort();

  proto_request_t req;
  const char *why = NULL;
  int rc = proto_request_decode(json, len, &req, &why);
  if (rc == 0) {
    if (!req.pattern_key || !req.data || !req.root)
      abort();
    (void)proto_request_meta(&req, "requestId");
    check_round_trip(req.root);
    json_t *reply = req.id ? proto_packet_reply(req.id, json_incref(req.root)) : NULL;
    json_decref(reply);
    proto_request_free(&req);
  } else if (rc != PROTO_EPROTO || !why || req.root || req.pattern_key) {
    abort();
  }

  proto_reply_t rep;
  rc = proto_reply_decode(json, len, &rep, &why);
  if (rc == 0) {
    if (rep.is_final && !rep.err && rep.response == NULL && rep.id == NULL &&
        rep.root != NULL && json_object_size(rep.root) == 0)
      abort(); /* an empty object is a whole response, never an empty envelope */
    proto_reply_free(&rep);
  }
}

static void drain(proto_frame_reader_t *r, result_t *res, size_t max) {
  const char *json;
  size_t len;
  while ((res->rc = proto_frame_reader_next(r, &json, &len)) == 1) {
    check_frame(json, len, max);
    hash_bytes(res, &len, sizeof(len));
    hash_bytes(res, json, len);
    res->frames++;
  }
}

/* Feed data in chunks whose sizes come from `splits` (cycled). */
static result_t run(const uint8_t *data, size_t size, const uint8_t *splits, size_t nsplits,
                    size_t max) {
  result_t res = {14695981039346656037ull, 0, 0};
  proto_frame_reader_t r;
  proto_frame_reader_init(&r, max);
  size_t eff_max = max ? max : PROTO_MAX_FRAME_BYTES_DEFAULT;
  for (size_t off = 0, i = 0; off < size && res.rc >= 0; i++) {
    size_t n = nsplits ? (size_t)(splits[i % nsplits] % FUZZ_MAX_SPLIT_BYTES) + 1 : size;
    if (n > size - off)
      n = size - off;
    if (nsplits && (splits[i % nsplits] & 0x80)) { /* zero-copy path */
      char *p;
      size_t avail;
      if (proto_frame_reader_reserve(&r, n, &p, &avail) != 0 || avail < n)
        abort();
      memcpy(p, data + off, n);
      proto_frame_reader_commit(&r, n);
    } else if (proto_frame_reader_feed(&r, (const char *)data + off, n) != 0) {
      abort();
    }
    off += n;
    drain(&r, &res, eff_max);
  }
  if (res.rc < 0 && !proto_frame_reader_why(&r))
    abort();
  proto_frame_reader_free(&r);
  return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t max = max_frames[data[0] % (sizeof(max_frames) / sizeof(max_frames[0]))];
  size_t nsplits = data[1] % 8;
  data += 2;
  size -= 2;
  if (nsplits > size)
    nsplits = size;
  /* the first bytes double as split sizes: the fuzzer controls both */
  result_t whole = run(data, size, NULL, 0, max);
  result_t split = run(data, size, data, nsplits, max);
  if (whole.frames != split.frames || whole.hash != split.hash || whole.rc != split.rc)
    abort();
  return 0;
}
