/* test_store.c: the payment store (store.c) on a fresh temporary DATA_DIR per
 * test: schema and settings, idempotent processing (the second process for an
 * orderId returns the same row and never charges), mismatch detection, refund
 * transitions, voids (an order voided before its charge is declined
 * order_voided when the charge lands, never charged), the UNIQUE index as the
 * last guard, and persistence across a reopen.
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
#include <sqlite3.h>

#include "proto/log.h"
#include "payment.h"
#include "../schema_testutil.h"

typedef struct fixture {
  char root[256];      /* mkdtemp directory */
  char dir[300];       /* DATA_DIR: root/data/payment, created by the store */
  payment_store_t *store;
  int charges;         /* calls of counting_charge */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->root, sizeof(f->root), "%s/payment-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->root))
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/data/payment", f->root);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"payment.db", "payment.db-wal", "payment.db-shm"};
  fixture_t *f = *state;
  char p[400];
  payment_store_close(f->store);
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s/%s", f->dir, files[i]);
    unlink(p);
  }
  rmdir(f->dir);
  snprintf(p, sizeof(p), "%s/data", f->root);
  rmdir(p);
  rmdir(f->root);
  free(f);
  return 0;
}

static payment_store_t *open_store(fixture_t *f, int sync) {
  payment_store_close(f->store);
  f->store = NULL;
  assert_int_equal(payment_store_open(f->dir, sync, &f->store), 0);
  assert_non_null(f->store);
  return f->store;
}

/* The real processor, counting its calls in the fixture. */
static payment_charge_t counting_charge(const payment_process_input_t *in, void *arg) {
  fixture_t *f = arg;
  f->charges++;
  return payment_processor_charge(in, NULL);
}

static payment_process_input_t input(const char *order, const char *user, int64_t amount,
                                     const char *currency, const char *method) {
  payment_process_input_t in;
  memset(&in, 0, sizeof(in));
  in.order_id = order;
  in.order_id_len = strlen(order);
  in.user_id = user;
  in.user_id_len = strlen(user);
  in.amount = amount;
  snprintf(in.currency, sizeof(in.currency), "%s", currency);
  in.method = method;
  in.method_len = strlen(method);
  return in;
}

static json_t *process(fixture_t *f, const payment_process_input_t *in, int want_created) {
  json_t *p = NULL;
  int created = -1;
  unsigned mismatch = 99;
  assert_int_equal(
      payment_store_process(f->store, in, counting_charge, f, &p, &created, &mismatch), 0);
  assert_non_null(p);
  assert_int_equal(created, want_created);
  assert_int_equal(mismatch, 0);
  return p;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

static void assert_iso(const char *t) {
  assert_int_equal(strlen(t), 24);
  assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
}

/* --- tests ---------------------------------------------------------------------- */

static void open_creates_dir_with_durable_settings(void **state) {
  fixture_t *f = *state;
  char mode[16];
  int sync = -1;
  payment_store_t *s = open_store(f, STORE_SYNC_FULL);
  assert_int_equal(access(f->dir, W_OK), 0);
  assert_int_equal(payment_store_settings(s, mode, sizeof(mode), &sync), 0);
  assert_string_equal(mode, "wal");
  assert_int_equal(sync, 2); /* FULL: the WAL is fsynced at every commit */
  assert_int_equal(payment_store_ping(s), 0);
  s = open_store(f, STORE_SYNC_NORMAL);
  assert_int_equal(payment_store_settings(s, mode, sizeof(mode), &sync), 0);
  assert_int_equal(sync, 1);

  char path[400];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 4); /* v4: voids */
  sqlite3_finalize(st);
  sqlite3_close(db);

  assert_int_equal(store_sync_parse("full"), STORE_SYNC_FULL);
  assert_int_equal(store_sync_parse("EXTRA"), STORE_SYNC_EXTRA);
  assert_int_equal(store_sync_parse("OFF"), -1);
  assert_int_equal(store_sync_parse(NULL), -1);
}

static void refuses_newer_schema_and_bad_args(void **state) {
  fixture_t *f = *state;
  payment_store_t *s = NULL;
  open_store(f, STORE_SYNC_FULL);
  payment_store_close(f->store);
  f->store = NULL;
  char path[400];
  sqlite3 *db = NULL;
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(payment_store_open(f->dir, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);
  assert_int_equal(payment_store_open(path, STORE_SYNC_FULL, &s), STORE_ERROR);
  assert_null(s);
  assert_int_equal(payment_store_open(f->dir, 0, &s), STORE_EINVAL);
  assert_null(s);
}

static void process_records_outcomes(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  payment_process_input_t in = input("ord_ok", "user_1", 3998, "USD", "tok_visa");
  json_t *p = process(f, &in, 1);
  assert_int_equal(f->charges, 1);
  assert_int_equal(json_object_size(p), 11);
  assert_int_equal(strncmp(str(p, "id"), "pay_", 4), 0);
  assert_int_equal(strlen(str(p, "id")), 36);
  assert_string_equal(str(p, "orderId"), "ord_ok");
  assert_string_equal(str(p, "userId"), "user_1");
  assert_int_equal(json_integer_value(json_object_get(p, "amount")), 3998);
  assert_true(json_is_integer(json_object_get(p, "amount")));
  assert_string_equal(str(p, "currency"), "USD");
  assert_string_equal(str(p, "paymentMethod"), "tok_visa");
  assert_string_equal(str(p, "status"), "succeeded");
  assert_true(json_is_null(json_object_get(p, "reason")));
  assert_true(json_is_null(json_object_get(p, "refundedAt")));
  assert_iso(str(p, "createdAt"));
  assert_string_equal(str(p, "createdAt"), str(p, "updatedAt"));
  json_decref(p);

  in = input("ord_declined", "user_1", 100, "EUR", "tok_chargeDeclined");
  p = process(f, &in, 1);
  assert_string_equal(str(p, "status"), "declined");
  assert_string_equal(str(p, "reason"), "card_declined");
  assert_string_equal(str(p, "currency"), "EUR");
  json_decref(p);
  in = input("ord_poor", "user_1", PAYMENT_AMOUNT_MAX, "USD", "tok_insufficientFunds");
  p = process(f, &in, 1);
  assert_string_equal(str(p, "status"), "declined");
  assert_string_equal(str(p, "reason"), "insufficient_funds");
  assert_int_equal(json_integer_value(json_object_get(p, "amount")), PAYMENT_AMOUNT_MAX);
  json_decref(p);
  assert_int_equal(f->charges, 3);
}

static void second_process_returns_the_same_row(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  payment_process_input_t in = input("ord_1", "user_1", 500, "USD", "tok_visa");
  json_t *first = process(f, &in, 1);
  json_t *again = process(f, &in, 0);
  assert_true(json_equal(first, again));
  /* The first reply is built from the inserted values, the retry's from the
   * row: the same bytes on the wire, key order included. */
  char *first_text = json_dumps(first, JSON_COMPACT);
  char *again_text = json_dumps(again, JSON_COMPACT);
  assert_non_null(first_text);
  assert_non_null(again_text);
  assert_string_equal(first_text, again_text);
  free(first_text);
  free(again_text);
  assert_int_equal(f->charges, 1); /* never charged twice */

  /* The method is not part of the charge's identity: the first answer
   * stands (a declined order stays declined). */
  in = input("ord_2", "user_1", 500, "USD", "tok_chargeDeclined");
  json_t *declined = process(f, &in, 1);
  in.method = "tok_visa";
  in.method_len = 8;
  json_t *retry = process(f, &in, 0);
  assert_true(json_equal(declined, retry));
  first_text = json_dumps(declined, JSON_COMPACT); /* "reason" is text here */
  again_text = json_dumps(retry, JSON_COMPACT);
  assert_non_null(first_text);
  assert_non_null(again_text);
  assert_string_equal(first_text, again_text);
  free(first_text);
  free(again_text);
  assert_string_equal(str(retry, "status"), "declined");
  assert_int_equal(f->charges, 2);

  /* get and get_by_order agree with what process answered. */
  json_t *g = NULL;
  assert_int_equal(payment_store_get(f->store, str(first, "id"), strlen(str(first, "id")), &g),
                   0);
  assert_true(json_equal(g, first));
  json_decref(g);
  assert_int_equal(payment_store_get_by_order(f->store, "ord_2", 5, &g), 0);
  assert_true(json_equal(g, declined));
  json_decref(g);
  assert_int_equal(payment_store_get(f->store, "pay_none", 8, &g), PAYMENT_STORE_NOT_FOUND);
  assert_null(g);
  assert_int_equal(payment_store_get_by_order(f->store, "ord_none", 8, &g),
                   PAYMENT_STORE_NOT_FOUND);
  assert_null(g);
  json_decref(first);
  json_decref(again);
  json_decref(declined);
  json_decref(retry);
}

static void mismatch_is_detected_per_field(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  payment_process_input_t in = input("ord_m", "user_1", 500, "USD", "tok_visa");
  json_decref(process(f, &in, 1));
  static const struct {
    const char *user;
    int64_t amount;
    const char *currency;
    unsigned want;
  } cases[] = {
      {"user_2", 500, "USD", PAYMENT_MISMATCH_USER},
      {"user_1", 501, "USD", PAYMENT_MISMATCH_AMOUNT},
      {"user_1", 500, "EUR", PAYMENT_MISMATCH_CURRENCY},
      {"user_1x", 0, "GBP",
       PAYMENT_MISMATCH_USER | PAYMENT_MISMATCH_AMOUNT | PAYMENT_MISMATCH_CURRENCY},
      {"user_", 500, "USD", PAYMENT_MISMATCH_USER}, /* a prefix is not equal */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    payment_process_input_t other =
        input("ord_m", cases[i].user, cases[i].amount, cases[i].currency, "tok_visa");
    json_t *p = (json_t *)1;
    int created = -1;
    unsigned mismatch = 0;
    assert_int_equal(payment_store_process(f->store, &other, counting_charge, f, &p, &created,
                                           &mismatch),
                     PAYMENT_STORE_MISMATCH);
    assert_null(p);
    assert_int_equal(created, 0);
    assert_int_equal(mismatch, cases[i].want);
  }
  assert_int_equal(f->charges, 1);
  /* The recorded payment is untouched. */
  json_t *p = process(f, &in, 0);
  assert_string_equal(str(p, "status"), "succeeded");
  json_decref(p);
}

static void refund_transitions(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  payment_process_input_t in = input("ord_r", "user_1", 700, "USD", "tok_visa");
  json_t *paid = process(f, &in, 1);
  json_t *p = NULL;
  int changed = -1;

  assert_int_equal(payment_store_refund(f->store, "ord_r", 5, &p, &changed), 0);
  assert_int_equal(changed, 1);
  assert_string_equal(str(p, "status"), "refunded");
  assert_string_equal(str(p, "id"), str(paid, "id"));
  assert_iso(str(p, "refundedAt"));
  assert_string_equal(str(p, "refundedAt"), str(p, "updatedAt"));
  assert_string_equal(str(p, "createdAt"), str(paid, "createdAt"));
  assert_true(json_is_null(json_object_get(p, "reason")));

  /* Twice: the same object, nothing changed. */
  json_t *again = NULL;
  assert_int_equal(payment_store_refund(f->store, "ord_r", 5, &again, &changed), 0);
  assert_int_equal(changed, 0);
  assert_true(json_equal(p, again));
  json_decref(again);

  /* A retry of process after the refund answers with the refunded payment
   * and does not charge again. */
  json_t *r = process(f, &in, 0);
  assert_true(json_equal(r, p));
  assert_int_equal(f->charges, 1);
  json_decref(r);

  /* Declined: not refundable, and left declined. */
  in = input("ord_d", "user_1", 700, "USD", "tok_insufficientFunds");
  json_decref(process(f, &in, 1));
  json_t *none = (json_t *)1;
  assert_int_equal(payment_store_refund(f->store, "ord_d", 5, &none, &changed),
                   PAYMENT_STORE_NOT_REFUNDABLE);
  assert_null(none);
  assert_int_equal(changed, 0);
  assert_int_equal(payment_store_get_by_order(f->store, "ord_d", 5, &none), 0);
  assert_string_equal(str(none, "status"), "declined");
  assert_true(json_is_null(json_object_get(none, "refundedAt")));
  json_decref(none);

  assert_int_equal(payment_store_refund(f->store, "ord_x", 5, &none, &changed),
                   PAYMENT_STORE_NOT_FOUND);
  assert_null(none);
  json_decref(paid);
  json_decref(p);
}

static json_t *void_order(fixture_t *f, const char *order, int want_created) {
  json_t *v = NULL;
  int created = -1;
  assert_int_equal(payment_store_void(f->store, order, strlen(order), &v, &created), 0);
  assert_non_null(v);
  assert_int_equal(created, want_created);
  return v;
}

/* A void recorded for an order with no payment: idempotent (the same object
 * every time), and the late process_payment of that order is recorded as a
 * declined payment with reason order_voided without calling the processor;
 * its retries replay it. Other orders are not affected; it survives a
 * reopen. */
static void void_declines_the_late_charge(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  json_t *v = void_order(f, "ord_v", 1);
  assert_int_equal(json_object_size(v), 3);
  assert_string_equal(str(v, "orderId"), "ord_v");
  assert_string_equal(str(v, "status"), "voided");
  assert_iso(str(v, "voidedAt"));
  json_t *again = void_order(f, "ord_v", 0);
  assert_true(json_equal(again, v));
  json_decref(again);
  /* A void is not a payment. */
  json_t *g = (json_t *)1;
  assert_int_equal(payment_store_get_by_order(f->store, "ord_v", 5, &g), PAYMENT_STORE_NOT_FOUND);

  payment_process_input_t in = input("ord_v", "user_1", 3998, "USD", "tok_visa");
  json_t *p = process(f, &in, 1);
  assert_int_equal(f->charges, 0);
  assert_string_equal(str(p, "status"), "declined");
  assert_string_equal(str(p, "reason"), "order_voided");
  assert_string_equal(str(p, "paymentMethod"), "tok_visa");
  assert_int_equal(json_integer_value(json_object_get(p, "amount")), 3998);
  json_t *r = process(f, &in, 0);
  assert_true(json_equal(r, p));
  json_decref(r);
  assert_int_equal(f->charges, 0);
  assert_int_equal(payment_store_get_by_order(f->store, "ord_v", 5, &g), 0);
  assert_true(json_equal(g, p));
  json_decref(g);
  /* Declined: a refund of it is refused as for any decline. */
  int changed = -1;
  g = (json_t *)1;
  assert_int_equal(payment_store_refund(f->store, "ord_v", 5, &g, &changed),
                   PAYMENT_STORE_NOT_REFUNDABLE);
  assert_null(g);

  /* Another order is charged as ever. */
  payment_process_input_t other = input("ord_v2", "user_1", 1, "USD", "tok_visa");
  json_t *paid = process(f, &other, 1);
  assert_string_equal(str(paid, "status"), "succeeded");
  assert_int_equal(f->charges, 1);

  /* Durable: a void recorded before a reopen still refuses the charge. */
  json_t *w = void_order(f, "ord_w", 1);
  open_store(f, STORE_SYNC_FULL);
  json_t *w2 = void_order(f, "ord_w", 0);
  assert_true(json_equal(w2, w));
  payment_process_input_t late = input("ord_w", "user_2", 5, "EUR", "tok_visa");
  json_t *pw = process(f, &late, 1);
  assert_string_equal(str(pw, "reason"), "order_voided");
  assert_int_equal(f->charges, 1);

  /* No order id: refused before SQLite. */
  g = (json_t *)1;
  assert_int_equal(payment_store_void(f->store, NULL, 0, &g, &changed), STORE_EINVAL);
  assert_null(g);
  json_decref(v);
  json_decref(p);
  json_decref(paid);
  json_decref(w);
  json_decref(w2);
  json_decref(pw);
}

/* A void inside an open transaction is seen by a process of the same turn
 * (same connection) and commits or rolls back with it. */
static void void_joins_the_open_transaction(void **state) {
  fixture_t *f = *state;
  sqlite3 *db = payment_store_db(open_store(f, STORE_SYNC_FULL));
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  json_decref(void_order(f, "ord_t", 1));
  payment_process_input_t in = input("ord_t", "user_1", 7, "USD", "tok_visa");
  json_t *p = process(f, &in, 1);
  assert_string_equal(str(p, "reason"), "order_voided");
  json_decref(p);
  assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  /* Rolled back: neither the void nor the declined payment is there. */
  json_t *g = NULL;
  assert_int_equal(payment_store_get_by_order(f->store, "ord_t", 5, &g), PAYMENT_STORE_NOT_FOUND);
  json_decref(void_order(f, "ord_t", 1));
  assert_int_equal(f->charges, 0);
}

static void persists_across_reopen(void **state) {
  fixture_t *f = *state;
  open_store(f, STORE_SYNC_FULL);
  payment_process_input_t a = input("ord_a", "user_1", 1, "USD", "tok_visa");
  payment_process_input_t b = input("ord_b", "user_2", 2, "JPY", "tok_chargeDeclined");
  json_t *pa = process(f, &a, 1);
  json_t *pb = process(f, &b, 1);
  json_t *ra = NULL;
  int changed = 0;
  assert_int_equal(payment_store_refund(f->store, "ord_a", 5, &ra, &changed), 0);

  open_store(f, STORE_SYNC_FULL); /* closes and reopens */
  json_t *g = NULL;
  assert_int_equal(payment_store_get_by_order(f->store, "ord_a", 5, &g), 0);
  assert_true(json_equal(g, ra));
  json_decref(g);
  assert_int_equal(payment_store_get(f->store, str(pb, "id"), strlen(str(pb, "id")), &g), 0);
  assert_true(json_equal(g, pb));
  json_decref(g);
  /* Idempotency survives the restart: no new charge, same rows. */
  json_t *again = process(f, &b, 0);
  assert_true(json_equal(again, pb));
  json_decref(again);
  again = process(f, &a, 0);
  assert_string_equal(str(again, "status"), "refunded");
  json_decref(again);
  assert_int_equal(f->charges, 2);
  json_decref(pa);
  json_decref(pb);
  json_decref(ra);
}

/* The schema itself refuses a second payment for an order and values the
 * code could not read back, whoever writes. */
static void unique_index_is_the_last_guard(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *db = NULL;
  open_store(f, STORE_SYNC_FULL);
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_not_equal(
      sqlite3_exec(db,
                   "INSERT INTO payments VALUES ('pay_a','o','u',1,'USD','tok_visa',"
                   "'succeeded',NULL,'t','t',NULL);"
                   "INSERT INTO payments VALUES ('pay_b','o','u',1,'USD','tok_visa',"
                   "'succeeded',NULL,'t','t',NULL);",
                   NULL, NULL, NULL),
      SQLITE_OK);
  /* CHECK constraints refuse what we could not read back. */
  assert_int_not_equal(sqlite3_exec(db,
                                    "INSERT INTO payments VALUES ('pay_c','o2','u',-1,'USD',"
                                    "'tok_visa','succeeded',NULL,'t','t',NULL)",
                                    NULL, NULL, NULL),
                       SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db,
                                    "INSERT INTO payments VALUES ('pay_d','o3','u',1,'USD',"
                                    "'tok_visa','pending',NULL,'t','t',NULL)",
                                    NULL, NULL, NULL),
                       SQLITE_OK);
  sqlite3_close(db);
}

static payment_charge_t racing_charge(const payment_process_input_t *in, void *arg) {
  const char *path = arg;
  sqlite3 *db = NULL;
  (void)in;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "INSERT INTO payments VALUES ('pay_other','ord_race','user_1',"
                                "9,'USD','tok_visa','succeeded',NULL,"
                                "'2026-01-01T00:00:00.000Z','2026-01-01T00:00:00.000Z',NULL)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  return (payment_charge_t){PAYMENT_SUCCEEDED, NULL};
}

/* A row for the order inserted behind the store's back (another process)
 * between its read and its insert: the insert fails on the UNIQUE index and
 * the store answers with that row instead of recording a second one. */
static void lost_race_answers_with_the_winner(void **state) {
  fixture_t *f = *state;
  char path[400];
  open_store(f, STORE_SYNC_FULL);
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  payment_process_input_t in = input("ord_race", "user_1", 9, "USD", "tok_visa");
  json_t *p = NULL;
  int created = -1;
  unsigned mismatch = 0;
  assert_int_equal(
      payment_store_process(f->store, &in, racing_charge, path, &p, &created, &mismatch), 0);
  assert_int_equal(created, 0);
  assert_string_equal(str(p, "id"), "pay_other");
  json_decref(p);

  /* The winner differs from us: a mismatch, not a second row. */
  in = input("ord_race", "user_1", 10, "USD", "tok_visa");
  assert_int_equal(
      payment_store_process(f->store, &in, counting_charge, f, &p, &created, &mismatch),
      PAYMENT_STORE_MISMATCH);
  assert_int_equal(mismatch, PAYMENT_MISMATCH_AMOUNT);
}

/* The schema as release 1 wrote it (frozen: it must not follow the code). */
#define PAYMENT_V1_SCHEMA                                                                  \
  "CREATE TABLE payments (id TEXT PRIMARY KEY NOT NULL, order_id TEXT NOT NULL,"           \
  " user_id TEXT NOT NULL,"                                                                \
  " amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount >= 0),"           \
  " currency TEXT NOT NULL CHECK (length(currency) = 3), payment_method TEXT NOT NULL,"    \
  " status TEXT NOT NULL CHECK (status IN ('succeeded', 'declined', 'refunded')),"         \
  " reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, refunded_at TEXT);"   \
  "CREATE UNIQUE INDEX payments_order ON payments (order_id);"                             \
  "PRAGMA user_version = 1;"

static void upgrades_a_v1_database(void **state) {
  fixture_t *f = *state;
  testutil_make_db(f->dir, PAYMENT_DB_FILE,
                   "PRAGMA journal_mode = WAL;" PAYMENT_V1_SCHEMA
                   "INSERT INTO payments VALUES ('pay_old', 'order_1', 'user_a', 3998, 'USD',"
                   " 'tok_visa', 'refunded', NULL, '2026-01-01T00:00:00.000Z',"
                   " '2026-01-02T00:00:00.000Z', '2026-01-02T00:00:00.000Z');");
  payment_store_t *s = open_store(f, STORE_SYNC_FULL);
  sqlite3 *db = payment_store_db(s);
  assert_int_equal(testutil_user_version(db), 4); /* through v3 (outbox), v4 (voids) */
  json_t *p = NULL;
  assert_int_equal(payment_store_get_by_order(s, "order_1", 7, &p), STORE_OK);
  assert_string_equal(str(p, "id"), "pay_old");
  assert_string_equal(str(p, "status"), "refunded");
  assert_int_equal(json_integer_value(json_object_get(p, "amount")), 3998);
  json_decref(p);
  /* Same constraints (the idempotency index too), no ephemeral table per write. */
  assert_int_equal(testutil_exec_rc(db, "UPDATE payments SET status = 'bogus'"),
                   SQLITE_CONSTRAINT_CHECK);
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO payments VALUES ('pay_2', 'order_1', 'u',"
                                        " 1, 'USD', 'tok_visa', 'succeeded', NULL, 'c', 'c',"
                                        " NULL)"),
                   SQLITE_CONSTRAINT_UNIQUE);
  assert_false(testutil_uses_ephemeral(db, "UPDATE payments SET status = 'refunded'"));
  assert_false(testutil_uses_ephemeral(db, "INSERT INTO payments VALUES ('a', 'b', 'c', 1,"
                                           " 'USD', 'd', 'succeeded', NULL, 'e', 'f', NULL)"));
  /* v4 added the voids table, empty; one void per order. */
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO voids VALUES ('order_2', 't')"), SQLITE_OK);
  assert_int_equal(testutil_exec_rc(db, "INSERT INTO voids VALUES ('order_2', 'u')"),
                   SQLITE_CONSTRAINT_PRIMARYKEY);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(upgrades_a_v1_database, setup, teardown),
      cmocka_unit_test_setup_teardown(open_creates_dir_with_durable_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_newer_schema_and_bad_args, setup, teardown),
      cmocka_unit_test_setup_teardown(process_records_outcomes, setup, teardown),
      cmocka_unit_test_setup_teardown(second_process_returns_the_same_row, setup, teardown),
      cmocka_unit_test_setup_teardown(mismatch_is_detected_per_field, setup, teardown),
      cmocka_unit_test_setup_teardown(refund_transitions, setup, teardown),
      cmocka_unit_test_setup_teardown(void_declines_the_late_charge, setup, teardown),
      cmocka_unit_test_setup_teardown(void_joins_the_open_transaction, setup, teardown),
      cmocka_unit_test_setup_teardown(persists_across_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(unique_index_is_the_last_guard, setup, teardown),
      cmocka_unit_test_setup_teardown(lost_race_answers_with_the_winner, setup, teardown),
  };
  proto_log_set_level(PROTO_LOG_ERROR); /* some tests log errors on purpose */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
