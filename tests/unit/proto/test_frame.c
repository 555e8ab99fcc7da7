/* test_frame.c: the `<length>#<json>` reader and encoder, fed the way a
 * socket feeds them: whole, one byte at a time, split at every offset,
 * coalesced, malformed; plus the UTF-16 length rules of PROTOCOL.md 1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"
#include "proto/packet.h"

/* PROTOCOL.md test vectors; the third is byte for byte what a NestJS
 * 12.1.1 ClientTCP wrote: 96 UTF-16 units, 102 bytes of body. */
#define V1_JSON "{\"pattern\":{\"cmd\":\"get_user\"},\"data\":{\"id\":\"x\"},\"id\":\"9dcd43e53b4ae127b3574\"}"
#define V2_JSON "{\"pattern\":\"user_logged_in\",\"data\":{\"userId\":\"u1\",\"timestamp\":\"2026-01-01T00:00:00.000Z\"}}"
#define V3_JSON                                                                             \
  "{\"pattern\":{\"cmd\":\"get_user\"},\"data\":{\"id\":\"\xc3\xa9\xf0\x9f\x98\x80\","      \
  "\"name\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"},\"id\":\"7ced85569c8255fa6f8a6\"}"
#define VECTORS "77#" V1_JSON "90#" V2_JSON "96#" V3_JSON

static const char *const vector_json[] = {V1_JSON, V2_JSON, V3_JSON};
#define NVECTORS 3
#define MAX_FRAMES 64

typedef struct frames {
  char *json[MAX_FRAMES];
  size_t len[MAX_FRAMES];
  size_t n;
  int rc; /* what the last next() returned */
} frames_t;

/* Take every complete frame out of the reader. */
static void drain(proto_frame_reader_t *r, frames_t *f) {
  const char *json;
  size_t len;
  while ((f->rc = proto_frame_reader_next(r, &json, &len)) == 1) {
    assert_true(f->n < MAX_FRAMES);
    f->json[f->n] = malloc(len + 1);
    assert_non_null(f->json[f->n]);
    memcpy(f->json[f->n], json, len);
    f->json[f->n][len] = '\0';
    f->len[f->n++] = len;
  }
}

static void frames_free(frames_t *f) {
  for (size_t i = 0; i < f->n; i++)
    free(f->json[i]);
  memset(f, 0, sizeof(*f));
}

static void assert_vectors(const frames_t *f) {
  assert_int_equal(f->n, NVECTORS);
  for (size_t i = 0; i < NVECTORS; i++) {
    assert_int_equal(f->len[i], strlen(vector_json[i]));
    assert_memory_equal(f->json[i], vector_json[i], f->len[i]);
  }
  assert_int_equal(f->rc, 0);
}

/* Feed `input` to a fresh reader as chunks of `step` bytes, draining after
 * each, and return what came out. */
static void feed_in_steps(const char *input, size_t len, size_t step, size_t max,
                          frames_t *f) {
  proto_frame_reader_t r;
  proto_frame_reader_init(&r, max);
  for (size_t off = 0; off < len && f->rc >= 0; off += step) {
    size_t n = len - off < step ? len - off : step;
    assert_int_equal(proto_frame_reader_feed(&r, input + off, n), 0);
    drain(&r, f);
  }
  proto_frame_reader_free(&r);
}

/* Feed `input` whole and return the first error or 0. */
static int reader_result(const char *input, size_t max, frames_t *f) {
  feed_in_steps(input, strlen(input), strlen(input) ? strlen(input) : 1, max, f);
  return f->rc;
}

/* --- well-formed input ----------------------------------------------------- */

static void test_vectors_whole(void **state) {
  frames_t f = {0};
  feed_in_steps(VECTORS, strlen(VECTORS), strlen(VECTORS), 0, &f);
  assert_vectors(&f);
  frames_free(&f);
}

static void test_vector_utf16_length_differs_from_bytes(void **state) {
  size_t units = 0;
  assert_int_equal(strlen(V3_JSON), 102);
  assert_int_equal(proto_utf16_length(V3_JSON, strlen(V3_JSON), &units), 0);
  assert_int_equal(units, 96);
  /* a writer using the byte count would announce 102: the reader then waits
   * for 6 more units and takes them from the next frame */
  frames_t f = {0};
  const char wrong[] = "102#" V3_JSON "2#{}";
  feed_in_steps(wrong, strlen(wrong), strlen(wrong), 0, &f);
  assert_int_equal(f.n, 0);
  assert_int_equal(f.rc, 0);
  frames_free(&f);
}

static void test_one_byte_at_a_time(void **state) {
  frames_t f = {0};
  feed_in_steps(VECTORS, strlen(VECTORS), 1, 0, &f);
  assert_vectors(&f);
  frames_free(&f);
}

static void test_every_split_point(void **state) {
  const size_t len = strlen(VECTORS);
  for (size_t cut = 1; cut < len; cut++) {
    proto_frame_reader_t r;
    frames_t f = {0};
    proto_frame_reader_init(&r, 0);
    assert_int_equal(proto_frame_reader_feed(&r, VECTORS, cut), 0);
    drain(&r, &f);
    assert_int_equal(f.rc, 0);
    assert_int_equal(proto_frame_reader_feed(&r, VECTORS + cut, len - cut), 0);
    drain(&r, &f);
    assert_vectors(&f);
    frames_free(&f);
    proto_frame_reader_free(&r);
  }
}

static void test_split_around_hash(void **state) {
  proto_frame_reader_t r;
  frames_t f = {0};
  proto_frame_reader_init(&r, 0);
  assert_int_equal(proto_frame_reader_feed(&r, "1", 1), 0);
  drain(&r, &f);
  assert_int_equal(f.rc, 0);
  assert_true(proto_frame_reader_partial(&r));
  assert_int_equal(proto_frame_reader_feed(&r, "3", 1), 0);
  drain(&r, &f);
  assert_int_equal(proto_frame_reader_feed(&r, "#", 1), 0);
  drain(&r, &f);
  assert_int_equal(f.n, 0);
  assert_int_equal(proto_frame_reader_feed(&r, "{\"a\":\"b\"}", 9), 0);
  drain(&r, &f);
  assert_int_equal(f.n, 0); /* 13 units announced, 9 seen */
  assert_int_equal(proto_frame_reader_feed(&r, "    ", 4), 0);
  drain(&r, &f);
  assert_int_equal(f.n, 1);
  assert_string_equal(f.json[0], "{\"a\":\"b\"}    ");
  assert_false(proto_frame_reader_partial(&r));
  frames_free(&f);
  proto_frame_reader_free(&r);
}

static void test_coalesced_frames(void **state) {
  char input[4096] = "";
  for (int i = 0; i < 40; i++)
    strcat(input, i % 2 ? "2#[]" : "7#{\"a\":1}");
  frames_t f = {0};
  assert_int_equal(reader_result(input, 0, &f), 0);
  assert_int_equal(f.n, 40);
  assert_string_equal(f.json[0], "{\"a\":1}");
  assert_string_equal(f.json[39], "[]");
  frames_free(&f);
}

static void test_leading_whitespace_skipped(void **state) {
  frames_t f = {0};
  assert_int_equal(reader_result("\r\n 2#{}\n\n\r 2#[]  \r\n", 0, &f), 0);
  assert_int_equal(f.n, 2);
  assert_string_equal(f.json[0], "{}");
  assert_string_equal(f.json[1], "[]");
  frames_free(&f);
}

static void test_ten_digits_with_leading_zeros(void **state) {
  frames_t f = {0};
  assert_int_equal(reader_result("0000000002#{}", 0, &f), 0);
  assert_int_equal(f.n, 1);
  assert_string_equal(f.json[0], "{}");
  frames_free(&f);
}

static void test_emoji_counts_two_units(void **state) {
  frames_t f = {0};
  assert_int_equal(reader_result("2#\xf0\x9f\x98\x80" "1#\xc3\xa9" "1#\xe2\x82\xac", 0, &f), 0);
  assert_int_equal(f.n, 3);
  assert_int_equal(f.len[0], 4);
  assert_int_equal(f.len[1], 2);
  assert_int_equal(f.len[2], 3);
  frames_free(&f);
}

/* --- malformed length ------------------------------------------------------ */

static void expect_error(const char *input, size_t max, int err, size_t frames_first) {
  frames_t f = {0};
  int rc = reader_result(input, max, &f);
  if (rc != err)
    fail_msg("input \"%s\": got %s, want %s", input, proto_err_name(rc), proto_err_name(err));
  assert_int_equal(f.n, frames_first);
  frames_free(&f);
}

static void test_non_digit_length(void **state) {
  expect_error("abc#{}", 0, PROTO_EPROTO, 0);
  expect_error("1a#{}", 0, PROTO_EPROTO, 0);
  expect_error("{\"pattern\":1}", 0, PROTO_EPROTO, 0);
  expect_error("\t2#{}", 0, PROTO_EPROTO, 0); /* only CR, LF and space are skipped */
  expect_error("2 #{}", 0, PROTO_EPROTO, 0);  /* whitespace only before the digits */
}

static void test_no_digits(void **state) {
  expect_error("#{}", 0, PROTO_EPROTO, 0);
  expect_error("  \r\n#{}", 0, PROTO_EPROTO, 0);
}

static void test_signed_length(void **state) {
  expect_error("+2#{}", 0, PROTO_EPROTO, 0);
  expect_error("-2#{}", 0, PROTO_EPROTO, 0);
}

static void test_eleven_digits(void **state) {
  /* rejected at the 11th digit, without waiting for a '#' */
  expect_error("00000000002", 0, PROTO_EPROTO, 0);
  expect_error("12345678901#", 0, PROTO_EPROTO, 0);
}

static void test_length_zero(void **state) {
  expect_error("0#", 0, PROTO_EPROTO, 0);
  expect_error("2#{}0#", 0, PROTO_EPROTO, 1);
}

static void test_oversize_rejected_before_body(void **state) {
  proto_frame_reader_t r;
  const char *json;
  size_t len;
  proto_frame_reader_init(&r, 100);
  assert_int_equal(proto_frame_reader_feed(&r, "100#", 4), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), 0); /* 100 is allowed */
  proto_frame_reader_free(&r);

  proto_frame_reader_init(&r, 100);
  assert_int_equal(proto_frame_reader_feed(&r, "101", 3), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), 0); /* not known yet */
  assert_int_equal(proto_frame_reader_feed(&r, "#", 1), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), PROTO_ETOOBIG);
  assert_non_null(proto_frame_reader_why(&r));
  proto_frame_reader_free(&r);

  /* the default limit is 1 MiB; no byte of a 9 GB body is needed */
  expect_error("9999999999#", 0, PROTO_ETOOBIG, 0);
  expect_error("1048577#", 0, PROTO_ETOOBIG, 0);
}

static void test_body_bytes_limited_too(void **state) {
  /* 4 units of 3-byte characters are 12 bytes: over a limit of 10 */
  expect_error("4#\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 10, PROTO_ETOOBIG, 0);
  frames_t f = {0};
  assert_int_equal(reader_result("3#\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 10, &f), 0);
  assert_int_equal(f.n, 1);
  frames_free(&f);
}

/* --- malformed body -------------------------------------------------------- */

static void test_emoji_overshoots_length(void **state) {
  /* one unit left, a surrogate pair needed: the frame would split it */
  expect_error("1#\xf0\x9f\x98\x80", 0, PROTO_EPROTO, 0);
  expect_error("3#{}\xf0\x9f\x98\x80", 0, PROTO_EPROTO, 0);
}

static void test_invalid_utf8(void **state) {
  static const char *const bad[] = {
      "1#\x80",                 /* stray continuation byte */
      "1#\xc0\x80",             /* overlong NUL */
      "1#\xc1\xbf",             /* overlong */
      "1#\xe0\x80\x80",         /* overlong 3-byte */
      "1#\xed\xa0\x80",         /* surrogate D800 */
      "1#\xed\xbf\xbf",         /* surrogate DFFF */
      "2#\xf0\x80\x80\x80",     /* overlong 4-byte */
      "2#\xf4\x90\x80\x80",     /* above U+10FFFF */
      "1#\xf5",                 /* never valid */
      "1#\xff",                 /* never valid */
      "2#\xe2\x82" "A",         /* sequence cut short by ASCII */
      "2#\xc3" "A",             /* sequence cut short by ASCII */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_error(bad[i], 0, PROTO_EPROTO, 0);
  /* the edges of the valid ranges pass */
  frames_t f = {0};
  assert_int_equal(reader_result("1#\xc2\x80" "1#\xed\x9f\xbf" "1#\xee\x80\x80"
                                 "2#\xf0\x90\x80\x80" "2#\xf4\x8f\xbf\xbf",
                                 0, &f),
                   0);
  assert_int_equal(f.n, 5);
  frames_free(&f);
}

static void test_invalid_prefix_detected_early(void **state) {
  /* E0 followed by 80 can never become valid: no need to wait for byte 3 */
  proto_frame_reader_t r;
  const char *json;
  size_t len;
  proto_frame_reader_init(&r, 0);
  assert_int_equal(proto_frame_reader_feed(&r, "5#\xe0", 3), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), 0);
  assert_int_equal(proto_frame_reader_feed(&r, "\x80", 1), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), PROTO_EPROTO);
  proto_frame_reader_free(&r);
}

static void test_utf16_length(void **state) {
  size_t units = 99;
  assert_int_equal(proto_utf16_length("", 0, &units), 0);
  assert_int_equal(units, 0);
  assert_int_equal(proto_utf16_length("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, &units), 0);
  assert_int_equal(units, 7);
  assert_int_equal(proto_utf16_length("\xe2\x82", 2, &units), PROTO_EPROTO); /* truncated */
  assert_int_equal(proto_utf16_length("\xed\xa0\x80", 3, &units), PROTO_EPROTO);
  assert_int_equal(proto_utf16_length("\xf0\x9f\x98", 3, &units), PROTO_EPROTO);
}

static void test_broken_json_in_valid_frame(void **state) {
  frames_t f = {0};
  assert_int_equal(reader_result("7#{abc:1}" "2#{}", 0, &f), 0);
  assert_int_equal(f.n, 2); /* framing is fine: the packet layer rejects it */
  proto_request_t req;
  const char *why = NULL;
  assert_int_equal(proto_request_decode(f.json[0], f.len[0], &req, &why), PROTO_EPROTO);
  assert_non_null(why);
  assert_null(req.root);
  assert_null(req.pattern_key);
  frames_free(&f);
}

/* --- reader state ---------------------------------------------------------- */

static void test_sticky_error(void **state) {
  proto_frame_reader_t r;
  const char *json = NULL;
  size_t len = 0;
  char *p;
  size_t avail;
  proto_frame_reader_init(&r, 0);
  /* the frame complete before the garbage still comes out first */
  assert_int_equal(proto_frame_reader_feed(&r, "2#{}x#2#[]", 10), 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), 1);
  assert_memory_equal(json, "{}", 2);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), PROTO_EPROTO);
  const char *why = proto_frame_reader_why(&r);
  assert_non_null(why);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), PROTO_EPROTO);
  assert_int_equal(proto_frame_reader_feed(&r, "2#{}", 4), PROTO_EPROTO);
  assert_int_equal(proto_frame_reader_reserve(&r, 16, &p, &avail), PROTO_EPROTO);
  proto_frame_reader_commit(&r, 0);
  assert_int_equal(proto_frame_reader_next(&r, &json, &len), PROTO_EPROTO);
  assert_ptr_equal(proto_frame_reader_why(&r), why);
  proto_frame_reader_free(&r);
}

static void test_no_error_no_why(void **state) {
  proto_frame_reader_t r;
  proto_frame_reader_init(&r, 0);
  assert_null(proto_frame_reader_why(&r));
  assert_int_equal(r.max_frame, PROTO_MAX_FRAME_BYTES_DEFAULT);
  proto_frame_reader_free(&r);
  proto_frame_reader_free(NULL);
}

static void test_reserve_commit(void **state) {
  proto_frame_reader_t r;
  frames_t f = {0};
  const char *input = VECTORS;
  size_t len = strlen(input), off = 0;
  proto_frame_reader_init(&r, 0);
  while (off < len) {
    char *p = NULL;
    size_t avail = 0;
    assert_int_equal(proto_frame_reader_reserve(&r, 7, &p, &avail), 0);
    assert_true(avail >= 7);
    size_t n = len - off < 5 ? len - off : 5; /* a short read */
    memcpy(p, input + off, n);
    proto_frame_reader_commit(&r, n);
    off += n;
    drain(&r, &f);
  }
  assert_vectors(&f);
  frames_free(&f);
  proto_frame_reader_free(&r);
}

static void test_buffer_compacts(void **state) {
  /* 10000 frames of 12 bytes (the last a separating LF) after a 2-byte
   * preamble, arriving as 8-byte reads: a read never ends where a frame does,
   * so the buffer never empties. Consumed bytes must be reclaimed by moving
   * the partial frame down, with the scan state moving along with it, and
   * the buffer never grows past its first allocation. */
  enum { NFRAMES = 10000, FRAME_BYTES = 12, PREAMBLE_BYTES = 2, READ_BYTES = 8 };
  static char stream[PREAMBLE_BYTES + NFRAMES * FRAME_BYTES];
  proto_frame_reader_t r;
  frames_t f = {0};
  size_t first_cap = 0, frames = 0;
  memcpy(stream, "\r\n", PREAMBLE_BYTES);
  for (int i = 0; i < NFRAMES; i++)
    memcpy(stream + PREAMBLE_BYTES + i * FRAME_BYTES, "9#{\"n\":123}\n", FRAME_BYTES);
  proto_frame_reader_init(&r, 0);
  for (size_t off = 0; off < sizeof(stream); off += READ_BYTES) {
    char *p;
    size_t avail, n = sizeof(stream) - off < READ_BYTES ? sizeof(stream) - off : READ_BYTES;
    assert_int_equal(proto_frame_reader_reserve(&r, 64, &p, &avail), 0);
    memcpy(p, stream + off, n);
    proto_frame_reader_commit(&r, n);
    if (first_cap == 0)
      first_cap = r.cap;
    drain(&r, &f);
    assert_int_equal(f.rc, 0);
    for (size_t i = 0; i < f.n; i++)
      assert_string_equal(f.json[i], "{\"n\":123}");
    frames += f.n;
    frames_free(&f);
  }
  assert_int_equal(frames, NFRAMES);
  assert_int_equal(r.cap, first_cap);
  proto_frame_reader_free(&r);
}

static void test_scan_is_incremental(void **state) {
  /* units are counted as bytes arrive and kept between calls, so a frame fed
   * one byte at a time is scanned once, not once per byte */
  proto_frame_reader_t r;
  const char *json;
  size_t len;
  proto_frame_reader_init(&r, 0);
  assert_int_equal(proto_frame_reader_feed(&r, "96#", 3), 0);
  for (size_t i = 0; i < 50; i++) {
    assert_int_equal(proto_frame_reader_feed(&r, V3_JSON + i, 1), 0);
    assert_int_equal(proto_frame_reader_next(&r, &json, &len), 0);
  }
  size_t units = 0;
  assert_int_equal(proto_utf16_length(V3_JSON, 50, &units), 0);
  assert_int_equal(r.units, units);
  assert_int_equal(r.scan - r.body_start, 50);
  proto_frame_reader_free(&r);
}

static void test_partial(void **state) {
  proto_frame_reader_t r;
  frames_t f = {0};
  proto_frame_reader_init(&r, 0);
  assert_false(proto_frame_reader_partial(&r));
  assert_int_equal(proto_frame_reader_feed(&r, "\r\n", 2), 0);
  drain(&r, &f);
  assert_false(proto_frame_reader_partial(&r)); /* whitespace is not a frame */
  assert_int_equal(proto_frame_reader_feed(&r, "2", 1), 0);
  drain(&r, &f);
  assert_true(proto_frame_reader_partial(&r));
  assert_int_equal(proto_frame_reader_feed(&r, "#{", 2), 0);
  drain(&r, &f);
  assert_true(proto_frame_reader_partial(&r));
  assert_int_equal(proto_frame_reader_feed(&r, "}", 1), 0);
  drain(&r, &f);
  assert_int_equal(f.n, 1);
  assert_false(proto_frame_reader_partial(&r));
  frames_free(&f);
  proto_frame_reader_free(&r);
}

/* --- encoder --------------------------------------------------------------- */

static void test_encode_escapes_non_ascii(void **state) {
  json_t *packet = json_pack("{s:{s:s},s:{s:s},s:s}", "pattern", "cmd", "get_user", "data",
                             "name", "caf\xc3\xa9 \xf0\x9f\x98\x80", "id", "1");
  char *out = NULL;
  size_t len = 0;
  assert_non_null(packet);
  assert_int_equal(proto_frame_encode(packet, &out, &len), 0);
  const char want[] = "80#{\"pattern\":{\"cmd\":\"get_user\"},\"data\":{\"name\":"
                      "\"caf\\u00E9 \\uD83D\\uDE00\"},\"id\":\"1\"}";
  assert_int_equal(len, strlen(want));
  assert_string_equal(out, want);
  for (size_t i = 0; i < len; i++)
    assert_true((unsigned char)out[i] < 0x80);

  /* round trip through the reader and the request decoder */
  proto_frame_reader_t r;
  frames_t f = {0};
  proto_frame_reader_init(&r, 0);
  assert_int_equal(proto_frame_reader_feed(&r, out, len), 0);
  drain(&r, &f);
  assert_int_equal(f.n, 1);
  json_t *back = json_loadb(f.json[0], f.len[0], 0, NULL);
  assert_true(json_equal(back, packet));
  json_decref(back);
  frames_free(&f);
  proto_frame_reader_free(&r);
  free(out);
  json_decref(packet);
}

static void test_encode_keeps_key_order(void **state) {
  json_t *packet = json_object();
  char *out = NULL;
  size_t len;
  json_object_set_new(packet, "z", json_integer(1));
  json_object_set_new(packet, "a", json_integer(2));
  assert_int_equal(proto_frame_encode(packet, &out, &len), 0);
  assert_string_equal(out, "13#{\"z\":1,\"a\":2}");
  free(out);
  json_decref(packet);
}

static void test_encode_invalid(void **state) {
  char *out = (char *)"x";
  size_t len = 7;
  json_t *scalar = json_integer(1);
  assert_int_equal(proto_frame_encode(NULL, &out, &len), PROTO_EINVAL);
  assert_null(out);
  assert_int_equal(len, 0);
  assert_int_equal(proto_frame_encode(scalar, &out, &len), PROTO_EINVAL);
  json_decref(scalar);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors_whole),
      cmocka_unit_test(test_vector_utf16_length_differs_from_bytes),
      cmocka_unit_test(test_one_byte_at_a_time),
      cmocka_unit_test(test_every_split_point),
      cmocka_unit_test(test_split_around_hash),
      cmocka_unit_test(test_coalesced_frames),
      cmocka_unit_test(test_leading_whitespace_skipped),
      cmocka_unit_test(test_ten_digits_with_leading_zeros),
      cmocka_unit_test(test_emoji_counts_two_units),
      cmocka_unit_test(test_non_digit_length),
      cmocka_unit_test(test_no_digits),
      cmocka_unit_test(test_signed_length),
      cmocka_unit_test(test_eleven_digits),
      cmocka_unit_test(test_length_zero),
      cmocka_unit_test(test_oversize_rejected_before_body),
      cmocka_unit_test(test_body_bytes_limited_too),
      cmocka_unit_test(test_emoji_overshoots_length),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_invalid_prefix_detected_early),
      cmocka_unit_test(test_utf16_length),
      cmocka_unit_test(test_broken_json_in_valid_frame),
      cmocka_unit_test(test_sticky_error),
      cmocka_unit_test(test_no_error_no_why),
      cmocka_unit_test(test_reserve_commit),
      cmocka_unit_test(test_buffer_compacts),
      cmocka_unit_test(test_scan_is_incremental),
      cmocka_unit_test(test_partial),
      cmocka_unit_test(test_encode_escapes_non_ascii),
      cmocka_unit_test(test_encode_keeps_key_order),
      cmocka_unit_test(test_encode_invalid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
