/* test_conformance.c: PROTOCOL.md section 7 as tests. Every event pattern
 * the notification daemon consumes, in every shape a publisher sends -- ours
 * (currency, metadata.eventId), the NestJS tutorial's exactly as its
 * services emit it (no currency, no metadata), and with fractional
 * JavaScript amounts -- becomes one stored notification with the expected
 * text. Without an eventId the id is derived from the content (stable,
 * "dig_", never "evt_") and a redelivery stores nothing new. Also: the
 * SHA-256 behind it (FIPS 180-4 vectors) and ntf_format_amount().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "notification.h"

/* One event as a publisher sends it, and what it must become. */
typedef struct conf_case {
  const char *name;                /* "<pattern>/<variant>" for cmocka's output */
  const char *pattern;
  const char *event_id;            /* metadata.eventId, NULL for a NestJS peer */
  const char *data;                /* the data object, JSON */
  const char *type;                /* the notification type */
  const char *message;             /* the notification text */
} conf_case_t;

#define TUT_ORDER "order_1767225600000_k3j5h2x9a" /* the tutorial's generateId() */
#define TUT_USER "user_1767225600000_a1b2c3d4e"
#define TUT_PAY "payment_1767225600000_z9y8x7w6v"

static const conf_case_t cases[] = {
    /* order_created */
    {"order_created/ours", "order_created", "evt_0000000000000000000000000000c001",
     "{\"orderId\":\"order_1\",\"userId\":\"user_1\",\"totalAmount\":3998,\"currency\":\"USD\","
     "\"items\":[{\"productId\":\"p1\",\"quantity\":2,\"price\":1999}]}",
     "order_confirmation", "Your order order_1 for 39.98 USD has been received"},
    {"order_created/tutorial", "order_created", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"totalAmount\":3998,"
     "\"items\":[{\"productId\":\"p1\",\"quantity\":2,\"price\":1999}]}",
     "order_confirmation", "Your order " TUT_ORDER " for 39.98 USD has been received"},
    /* items without price: the tutorial's notification-side interface. */
    {"order_created/tutorial_items_no_price", "order_created", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"totalAmount\":500,"
     "\"items\":[{\"productId\":\"p1\",\"quantity\":1}]}",
     "order_confirmation", "Your order " TUT_ORDER " for 5.00 USD has been received"},
    /* price 10.5 x 2 + 0.25 x 1: the tutorial's reduce() gives 21.25. */
    {"order_created/fractional", "order_created", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"totalAmount\":21.25,"
     "\"items\":[{\"productId\":\"p1\",\"quantity\":2,\"price\":10.5},"
     "{\"productId\":\"p2\",\"quantity\":1,\"price\":0.25}]}",
     "order_confirmation", "Your order " TUT_ORDER " for 0.2125 USD has been received"},
    /* 0.1 + 0.2 in JavaScript: shown as JavaScript prints it, not rounded. */
    {"order_created/fractional_binary_noise", "order_created", NULL,
     "{\"orderId\":\"o_noise\",\"userId\":\"" TUT_USER "\",\"totalAmount\":0.30000000000000004,"
     "\"items\":[]}",
     "order_confirmation", "Your order o_noise for 0.0030000000000000004 USD has been received"},

    /* order_status_changed: the tutorial's previousStatus equals newStatus
     * (it reads the status after assigning it). */
    {"order_status_changed/ours", "order_status_changed", "evt_0000000000000000000000000000c002",
     "{\"orderId\":\"order_1\",\"userId\":\"user_1\",\"previousStatus\":\"confirmed\","
     "\"newStatus\":\"cancelled\"}",
     "order_status", "Your order order_1 is now cancelled"},
    {"order_status_changed/tutorial", "order_status_changed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"newStatus\":\"shipped\","
     "\"previousStatus\":\"shipped\"}",
     "order_status", "Your order " TUT_ORDER " is now shipped"},

    /* order_completed (the saga's; in the catalogue before anyone publishes it) */
    {"order_completed/ours", "order_completed", "evt_0000000000000000000000000000c003",
     "{\"orderId\":\"order_1\",\"userId\":\"user_1\",\"totalAmount\":500,\"currency\":\"JPY\"}",
     "order_completed", "Your order order_1 for 500 JPY is complete"},
    {"order_completed/tutorial", "order_completed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"totalAmount\":3998}",
     "order_completed", "Your order " TUT_ORDER " for 39.98 USD is complete"},
    {"order_completed/fractional", "order_completed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"totalAmount\":10.5}",
     "order_completed", "Your order " TUT_ORDER " for 0.105 USD is complete"},

    /* order_failed: reason is an error message */
    {"order_failed/ours", "order_failed", "evt_0000000000000000000000000000c004",
     "{\"orderId\":\"order_1\",\"userId\":\"user_1\",\"reason\":\"payment declined\"}",
     "order_failed", "Your order order_1 could not be completed: payment declined"},
    {"order_failed/tutorial", "order_failed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\","
     "\"reason\":\"User not found: " TUT_USER "\"}",
     "order_failed", "Your order " TUT_ORDER " could not be completed: User not found: " TUT_USER},

    /* payment_completed */
    {"payment_completed/ours", "payment_completed", "evt_0000000000000000000000000000c005",
     "{\"paymentId\":\"pay_1\",\"orderId\":\"order_1\",\"userId\":\"user_1\",\"amount\":3998,"
     "\"currency\":\"EUR\"}",
     "payment_receipt", "We received your payment of 39.98 EUR for order order_1"},
    {"payment_completed/tutorial", "payment_completed", NULL,
     "{\"paymentId\":\"" TUT_PAY "\",\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\","
     "\"amount\":3998}",
     "payment_receipt", "We received your payment of 39.98 USD for order " TUT_ORDER},
    {"payment_completed/fractional", "payment_completed", NULL,
     "{\"paymentId\":\"" TUT_PAY "\",\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\","
     "\"amount\":99999.99}",
     "payment_receipt", "We received your payment of 999.9999 USD for order " TUT_ORDER},

    /* payment_failed */
    {"payment_failed/ours", "payment_failed", "evt_0000000000000000000000000000c006",
     "{\"paymentId\":\"pay_1\",\"orderId\":\"order_1\",\"userId\":\"user_1\",\"amount\":3998,"
     "\"currency\":\"USD\",\"reason\":\"card_declined\"}",
     "payment_failed", "Your payment of 39.98 USD for order order_1 failed: card_declined"},
    {"payment_failed/tutorial", "payment_failed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\","
     "\"reason\":\"Amount 150000.5 exceeds limit of 100000\"}",
     "payment_failed",
     "Your payment for order " TUT_ORDER " failed: Amount 150000.5 exceeds limit of 100000"},
    {"payment_failed/fractional", "payment_failed", NULL,
     "{\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\",\"amount\":150000.5,"
     "\"reason\":\"too much\"}",
     "payment_failed", "Your payment of 1500.005 USD for order " TUT_ORDER " failed: too much"},

    /* payment_refunded: ours only (no tutorial service publishes it), but a
     * peer's shape without currency and with a fraction works the same way. */
    {"payment_refunded/ours", "payment_refunded", "evt_0000000000000000000000000000c007",
     "{\"paymentId\":\"pay_1\",\"orderId\":\"order_1\",\"userId\":\"user_1\",\"amount\":3998,"
     "\"currency\":\"USD\"}",
     "refund_receipt", "A refund of 39.98 USD for your order order_1 has been issued"},
    {"payment_refunded/fractional", "payment_refunded", NULL,
     "{\"paymentId\":\"" TUT_PAY "\",\"orderId\":\"" TUT_ORDER "\",\"userId\":\"" TUT_USER "\","
     "\"amount\":1.5}",
     "refund_receipt", "A refund of 0.015 USD for your order " TUT_ORDER " has been issued"},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* --- fixture: a store in a temporary DATA_DIR ------------------------------------- */

typedef struct fixture {
  const conf_case_t *c;
  char root[256];
  char dir[300];
  ntf_store_t *store;
  svc_t svc;                       /* what the handlers see; no loop, no group */
  ntf_app_t app;                   /* svc.app */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  f->c = *state; /* the case, as the initial state */
  snprintf(f->root, sizeof(f->root), "%s/ntf-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    goto fail;
  snprintf(f->dir, sizeof(f->dir), "%s/data", f->root);
  if (ntf_store_open(f->dir, STORE_SYNC_NORMAL, &f->store) != 0)
    goto fail;
  ntf_svc_init(&f->svc, NULL, f->store, NULL, &f->app);
  *state = f;
  return 0;
fail:
  free(f);
  return -1;
}

static int teardown(void **state) {
  static const char *const files[] = {NTF_DB_FILE, NTF_DB_FILE "-wal", NTF_DB_FILE "-shm"};
  fixture_t *f = *state;
  char p[400];
  ntf_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  rmdir(f->root);
  free(f);
  return 0;
}

static json_t *parse(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad test JSON %s: %s", text, e.text);
  return j;
}

static const char *str(const json_t *obj, const char *key) {
  const char *s = json_string_value(json_object_get(obj, key));
  if (!s)
    fail_msg("no string %s", key);
  return s;
}

static json_int_t total_of(fixture_t *f, const char *user_id) {
  json_t *req = json_pack("{s:s, s:i}", "userId", user_id, "limit", 100);
  svc_result_t r = ntf_op_list(&f->svc, req);
  json_decref(req);
  assert_int_equal(r.status, 200);
  json_int_t n = json_integer_value(json_object_get(r.response, "total"));
  json_decref(r.response);
  return n;
}

/* --- one case: stored once, with the right text and id ---------------------------- */

static void run_case(void **state) {
  fixture_t *f = *state;
  const conf_case_t *c = f->c;
  json_t *data = parse(c->data), *ntf = NULL, *again = NULL;
  proto_event_t ev = {.channel = c->pattern, .data = data, .event_id = c->event_id};
  ntf_event_outcome_t o = ntf_handle_event(&f->svc, &ev, &ntf);
  if (o != NTF_EVENT_STORED)
    fail_msg("%s: outcome %d, not stored", c->name, (int)o);
  assert_string_equal(str(ntf, "type"), c->type);
  assert_string_equal(str(ntf, "message"), c->message);
  assert_string_equal(str(ntf, "userId"), str(data, "userId"));
  assert_string_equal(str(ntf, "orderId"), str(data, "orderId"));
  assert_string_equal(str(ntf, "eventPattern"), c->pattern);
  /* The data is kept as sent: a fractional amount is the same number. */
  assert_true(json_equal(json_object_get(ntf, "data"), data));

  const char *eid = str(ntf, "eventId");
  if (c->event_id) {
    assert_string_equal(eid, c->event_id);
  } else {
    char want[NTF_EVENT_ID_DERIVED_SIZE];
    assert_int_equal(ntf_event_id_derive(c->pattern, data, want), 0);
    assert_string_equal(eid, want);
    assert_memory_equal(eid, NTF_EVENT_ID_DERIVED_PREFIX, strlen(NTF_EVENT_ID_DERIVED_PREFIX));
    assert_int_equal(strlen(eid), strlen(NTF_EVENT_ID_DERIVED_PREFIX) + NTF_EVENT_ID_DERIVED_HEX);
    assert_true(strncmp(eid, "evt_", 4) != 0);
  }

  /* What the store returns for the user is the same notification. */
  assert_int_equal(total_of(f, str(data, "userId")), 1);
  json_t *got = NULL;
  assert_int_equal(ntf_store_get(f->store, str(ntf, "id"), &got), STORE_OK);
  assert_string_equal(str(got, "message"), c->message);
  assert_true(json_equal(json_object_get(got, "data"), data));
  json_decref(got);

  /* A redelivery -- the same message again, parsed afresh -- stores nothing. */
  json_t *data2 = parse(c->data);
  proto_event_t ev2 = {.channel = c->pattern, .data = data2, .event_id = c->event_id};
  assert_int_equal(ntf_handle_event(&f->svc, &ev2, &again), NTF_EVENT_DUPLICATE);
  assert_null(again);
  assert_int_equal(total_of(f, str(data, "userId")), 1);
  assert_int_equal(f->app.stored, 1);
  assert_int_equal(f->app.duplicates, 1);
  assert_int_equal(f->app.invalid, 0);
  json_decref(data2);
  json_decref(ntf);
  json_decref(data);
}

/* --- derived ids -------------------------------------------------------------------- */

static void derive(const char *pattern, const char *text, char out[NTF_EVENT_ID_DERIVED_SIZE]) {
  json_t *d = parse(text);
  assert_int_equal(ntf_event_id_derive(pattern, d, out), 0);
  json_decref(d);
}

static void derived_id_is_stable_and_content_bound(void **state) {
  char a[NTF_EVENT_ID_DERIVED_SIZE], b[NTF_EVENT_ID_DERIVED_SIZE];
  (void)state;
  /* Key order is the publisher's choice, not content. */
  derive("order_created", "{\"orderId\":\"o\",\"userId\":\"u\",\"totalAmount\":1}", a);
  derive("order_created", "{\"totalAmount\":1,\"userId\":\"u\",\"orderId\":\"o\"}", b);
  assert_string_equal(a, b);
  /* Nested objects too; a non-ASCII character equals its \u escape. */
  derive("order_created", "{\"items\":[{\"a\":1,\"b\":\"caf\\u00e9\"}],\"x\":1}", a);
  derive("order_created", "{\"x\":1,\"items\":[{\"b\":\"caf\xc3\xa9\",\"a\":1}]}", b);
  assert_string_equal(a, b);
  /* The same double written two ways is the same content. */
  derive("order_created", "{\"totalAmount\":10.5}", a);
  derive("order_created", "{\"totalAmount\":1.05e1}", b);
  assert_string_equal(a, b);
  /* Any change of content, or of pattern, changes the id. */
  derive("order_created", "{\"totalAmount\":10.5}", a);
  derive("order_created", "{\"totalAmount\":10.25}", b);
  assert_string_not_equal(a, b);
  derive("order_completed", "{\"totalAmount\":10.5}", b);
  assert_string_not_equal(a, b);
  derive("order_created", "{\"orderId\":\"o\",\"userId\":\"u\"}", a);
  derive("order_created", "{\"orderId\":\"o\",\"userId\":\"v\"}", b);
  assert_string_not_equal(a, b);
  /* Pinned: the canonical form and the digest must not drift between
   * releases, or a redelivery across an upgrade would store twice.
   * sha256("order_created\0{\"a\":1}")[0:16]. */
  derive("order_created", "{\"a\":1}", a);
  assert_string_equal(a, "dig_20b1872f48642cbd2a6ad04ae2c523fb");
  assert_int_equal(ntf_event_id_derive("x", NULL, a), -1);
}

/* --- SHA-256 ------------------------------------------------------------------------- */

static void sha_hex(const void *msg, size_t n, size_t chunk, char out[65]) {
  ntf_sha256_t s;
  unsigned char d[NTF_SHA256_BYTES];
  const unsigned char *p = msg;
  ntf_sha256_init(&s);
  for (size_t off = 0; off < n; off += chunk)
    ntf_sha256_update(&s, p + off, n - off < chunk ? n - off : chunk);
  ntf_sha256_final(&s, d);
  for (int i = 0; i < NTF_SHA256_BYTES; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha256_fips_vectors(void **state) {
  static const char two_blocks[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  char h[65];
  (void)state;
  sha_hex("", 0, 1, h);
  assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  sha_hex("abc", 3, 3, h);
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  /* 56 bytes: the padding needs a second block. Fed whole and byte by byte. */
  for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
    sha_hex(two_blocks, strlen(two_blocks), chunk, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
  /* One million 'a', in uneven pieces. */
  size_t n = 1000000;
  char *a = malloc(n);
  assert_non_null(a);
  memset(a, 'a', n);
  sha_hex(a, n, 1000 - 7, h);
  assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(a);
}

/* --- fractional amounts ------------------------------------------------------------- */

static void amount(double v, const char *cur, const char *want) {
  char buf[64];
  int n = ntf_format_amount(v, cur, buf, sizeof(buf));
  if (n < 0 || strcmp(buf, want) != 0)
    fail_msg("%.17g %s: got \"%s\" (%d), want \"%s\"", v, cur ? cur : "-", buf, n, want);
  assert_int_equal(n, (int)strlen(want));
}

static void format_amount_exactly(void **state) {
  char small[6];
  (void)state;
  amount(10.5, "USD", "0.105");
  amount(21.25, "USD", "0.2125");
  amount(0.5, "USD", "0.005");
  amount(99999.99, "USD", "999.9999");
  amount(0.1, "USD", "0.001");  /* not 0.0010000000000000000555... */
  amount(0.30000000000000004, "USD", "0.0030000000000000004");
  amount(1999.5, "JPY", "1999.5");
  amount(1999.5, "KWD", "1.9995");
  amount(0.5, "CLF", "0.00005");
  amount(4503599627370495.5, "USD", "45035996273704.955"); /* 2^52 - 0.5: 17 digits */
  /* Integral values go through the minor-unit formatter: same text as ours. */
  amount(3998.0, "USD", "39.98");
  amount(0.0, "USD", "0.00");
  /* Tiny values: plain up to 19 zeros after the point, then scientific. */
  amount(1e-17, "USD", "0.0000000000000000001");  /* 18 zeros */
  amount(1e-18, "USD", "0.00000000000000000001"); /* 19 zeros */
  amount(1e-19, "USD", "1e-21");
  amount(1.25e-19, "USD", "1.25e-21");
  amount(1.5e-300, "USD", "1.5e-302");
  amount(5e-324, "USD", "5e-326");
  /* Refused: what is not an amount, and a buffer too small. */
  assert_int_equal(ntf_format_amount(-0.5, "USD", small, sizeof(small)), -1);
  assert_int_equal(ntf_format_amount(0.123456, "USD", small, sizeof(small)), -1);
  assert_string_equal(small, "");
  assert_int_equal(ntf_format_amount(0.5, "USD", small, 0), -1);
}

int main(void) {
  struct CMUnitTest tests[NCASES + 3];
  for (size_t i = 0; i < NCASES; i++)
    tests[i] = (struct CMUnitTest){cases[i].name, run_case, setup, teardown,
                                   (void *)&cases[i]};
  tests[NCASES] = (struct CMUnitTest)cmocka_unit_test(derived_id_is_stable_and_content_bound);
  tests[NCASES + 1] = (struct CMUnitTest)cmocka_unit_test(sha256_fips_vectors);
  tests[NCASES + 2] = (struct CMUnitTest)cmocka_unit_test(format_amount_exactly);
  return _cmocka_run_group_tests("notification_conformance", tests, NCASES + 3, NULL, NULL);
}
