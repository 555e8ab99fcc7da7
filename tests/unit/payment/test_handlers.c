/* test_handlers.c: the payment operations behind the RPC handlers
 * (handlers.c) on a temporary store: reply objects, the event each operation
 * asks to publish (and that retries ask for none), the error objects the
 * gateway sees (status, code, message, details), storage failures, and
 * refund_payment's voidIfMissing (a void, then the late charge declined
 * order_voided). Also
 * with a commit group, as the daemon runs: operations of one turn share the
 * open transaction (a duplicate sees the first's uncommitted row) and one
 * COMMIT.
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

typedef struct fixture {
  char dir[256];
  payment_store_t *store;
  payment_app_t app;               /* the counting processor */
  svc_t svc;                       /* no loop, no group: writes autocommit */
  int charges;
} fixture_t;

static payment_charge_t counting_charge(const payment_process_input_t *in, void *arg) {
  fixture_t *f = arg;
  f->charges++;
  return payment_processor_charge(in, NULL);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (!f)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/payment-handlers-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir) || payment_store_open(f->dir, STORE_SYNC_FULL, &f->store) != 0)
    return -1;
  f->app = (payment_app_t){counting_charge, f};
  payment_svc_init(&f->svc, NULL, f->store, NULL, &f->app);
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
  free(f);
  return 0;
}

static json_t *parse(const char *text) {
  json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
  assert_non_null(j);
  return j;
}

static void assert_json(const json_t *got, const char *want_text) {
  json_t *want = parse(want_text);
  if (!json_equal(got, want)) {
    char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    fail_msg("got %s, want %s", g ? g : "NULL", want_text);
  }
  json_decref(want);
}

/* r is an error whose object equals want (JSON text) exactly. */
static void assert_error(svc_result_t *r, int status, const char *want) {
  assert_int_equal(r->status, status);
  assert_null(r->response);
  assert_null(r->event);
  assert_null(r->event_data);
  assert_non_null(r->err);
  assert_json(r->err, want);
  svc_result_free(r);
}

static svc_result_t op(svc_result_t (*fn)(svc_t *, const json_t *),
                           fixture_t *f, const char *data_text) {
  json_t *d = parse(data_text);
  svc_result_t r = fn(&f->svc, d);
  json_decref(d);
  return r;
}

static const char *str(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v)
    fail_msg("no string '%s'", key);
  return v;
}

/* {"paymentId":...,<rest>}: the expected event data for payment p. */
static void assert_event(const svc_result_t *r, const char *pattern, const char *rest) {
  char want[512];
  assert_non_null(r->event);
  assert_string_equal(r->event, pattern);
  snprintf(want, sizeof(want), "{\"paymentId\":\"%s\",%s}", str(r->response, "id"), rest);
  assert_json(r->event_data, want);
}

/* --- tests ---------------------------------------------------------------------- */

static void process_succeeds_once(void **state) {
  fixture_t *f = *state;
  svc_result_t r = op(payment_op_process, f,
                          "{\"orderId\":\"ord_1\",\"userId\":\"user_1\",\"amount\":3998,"
                          "\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.code, "OK");
  assert_int_equal(r.replayed, 0);
  assert_string_equal(str(r.response, "status"), "succeeded");
  assert_string_equal(str(r.response, "currency"), "USD");
  assert_event(&r, "payment_completed",
               "\"orderId\":\"ord_1\",\"userId\":\"user_1\",\"amount\":3998,\"currency\":\"USD\"");

  /* The retry: same payment, no event, no charge. */
  svc_result_t again = op(payment_op_process, f,
                              "{\"orderId\":\"ord_1\",\"userId\":\"user_1\",\"amount\":3998,"
                              "\"currency\":\"USD\",\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(again.status, 200);
  assert_int_equal(again.replayed, 1);
  assert_null(again.event);
  assert_null(again.event_data);
  assert_true(json_equal(again.response, r.response));
  assert_int_equal(f->charges, 1);

  /* get and get_by_order answer with the same object. */
  char text[200];
  snprintf(text, sizeof(text), "{\"id\":\"%s\"}", str(r.response, "id"));
  svc_result_t g = op(payment_op_get, f, text);
  assert_int_equal(g.status, 200);
  assert_null(g.event);
  assert_true(json_equal(g.response, r.response));
  svc_result_free(&g);
  g = op(payment_op_get_by_order, f, "{\"orderId\":\"ord_1\"}");
  assert_true(json_equal(g.response, r.response));
  svc_result_free(&g);
  svc_result_free(&again);
  svc_result_free(&r);
}

static void declines_are_answers_with_failed_events(void **state) {
  fixture_t *f = *state;
  static const struct {
    const char *method, *reason;
  } cases[] = {{"tok_chargeDeclined", "card_declined"},
               {"tok_insufficientFunds", "insufficient_funds"}};
  for (size_t i = 0; i < 2; i++) {
    char text[300], rest[300];
    snprintf(text, sizeof(text),
             "{\"orderId\":\"ord_d%zu\",\"userId\":\"user_2\",\"amount\":150,"
             "\"currency\":\"EUR\",\"paymentMethod\":\"%s\"}",
             i, cases[i].method);
    svc_result_t r = op(payment_op_process, f, text);
    assert_int_equal(r.status, 200); /* not an RPC error */
    assert_null(r.err);
    assert_string_equal(str(r.response, "status"), "declined");
    assert_string_equal(str(r.response, "reason"), cases[i].reason);
    snprintf(rest, sizeof(rest),
             "\"orderId\":\"ord_d%zu\",\"userId\":\"user_2\",\"amount\":150,"
             "\"currency\":\"EUR\",\"reason\":\"%s\"",
             i, cases[i].reason);
    assert_event(&r, "payment_failed", rest);
    svc_result_free(&r);

    r = op(payment_op_process, f, text);
    assert_int_equal(r.status, 200);
    assert_null(r.event);
    assert_string_equal(str(r.response, "status"), "declined");
    svc_result_free(&r);
  }
  assert_int_equal(f->charges, 2);
}

static void mismatch_and_validation_errors(void **state) {
  fixture_t *f = *state;
  svc_result_t r = op(payment_op_process, f,
                          "{\"orderId\":\"ord_m\",\"userId\":\"user_1\",\"amount\":100,"
                          "\"paymentMethod\":\"tok_visa\"}");
  svc_result_free(&r);
  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_m\",\"userId\":\"user_1\",\"amount\":101,"
         "\"paymentMethod\":\"tok_visa\"}");
  assert_error(&r, 409,
               "{\"statusCode\":409,\"code\":\"PAYMENT_MISMATCH\","
               "\"message\":\"A payment for this order already exists with a different amount\","
               "\"details\":[{\"field\":\"amount\",\"message\":\"differs from the recorded payment\"}]}");
  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_m\",\"userId\":\"user_9\",\"amount\":100,\"currency\":\"EUR\","
         "\"paymentMethod\":\"tok_visa\"}");
  assert_error(&r, 409,
               "{\"statusCode\":409,\"code\":\"PAYMENT_MISMATCH\","
               "\"message\":\"A payment for this order already exists with a different userId"
               " and currency\","
               "\"details\":[{\"field\":\"userId\",\"message\":\"differs from the recorded payment\"},"
               "{\"field\":\"currency\",\"message\":\"differs from the recorded payment\"}]}");

  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_v\",\"userId\":\"user_1\",\"amount\":1,"
         "\"paymentMethod\":\"tok_amex\"}");
  assert_error(&r, 400,
               "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\","
               "\"message\":\"paymentMethod must be one of tok_visa, tok_chargeDeclined, "
               "tok_insufficientFunds\","
               "\"details\":[{\"field\":\"paymentMethod\",\"message\":\"must be one of tok_visa, "
               "tok_chargeDeclined, tok_insufficientFunds\"}]}");
  r = op(payment_op_process, f, "{\"orderId\":\"o\",\"amount\":-1,\"coupon\":\"x\"}");
  assert_error(&r, 400,
               "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\","
               "\"message\":\"userId is required; amount must be an integer number of minor "
               "units from 0 to 1000000000000000; paymentMethod is required; coupon is not "
               "allowed\","
               "\"details\":[{\"field\":\"userId\",\"message\":\"is required\"},"
               "{\"field\":\"amount\",\"message\":\"must be an integer number of minor units "
               "from 0 to 1000000000000000\"},"
               "{\"field\":\"paymentMethod\",\"message\":\"is required\"},"
               "{\"field\":\"coupon\",\"message\":\"is not allowed\"}]}");
  r = op(payment_op_get, f, "{}");
  assert_int_equal(r.status, 400);
  svc_result_free(&r);
  r = op(payment_op_refund, f, "null");
  assert_int_equal(r.status, 400);
  svc_result_free(&r);
  assert_int_equal(f->charges, 1);
}

static void refund_once(void **state) {
  fixture_t *f = *state;
  svc_result_t paid = op(payment_op_process, f,
                             "{\"orderId\":\"ord_r\",\"userId\":\"user_1\",\"amount\":250,"
                             "\"currency\":\"GBP\",\"paymentMethod\":\"tok_visa\"}");
  svc_result_t r = op(payment_op_refund, f, "{\"orderId\":\"ord_r\"}");
  assert_int_equal(r.status, 200);
  assert_int_equal(r.replayed, 0);
  assert_string_equal(str(r.response, "status"), "refunded");
  assert_string_equal(str(r.response, "id"), str(paid.response, "id"));
  assert_event(&r, "payment_refunded",
               "\"orderId\":\"ord_r\",\"userId\":\"user_1\",\"amount\":250,\"currency\":\"GBP\"");

  svc_result_t again = op(payment_op_refund, f, "{\"orderId\":\"ord_r\"}");
  assert_int_equal(again.status, 200);
  assert_int_equal(again.replayed, 1);
  assert_null(again.event);
  assert_true(json_equal(again.response, r.response));
  svc_result_free(&again);
  svc_result_free(&r);
  svc_result_free(&paid);

  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_dr\",\"userId\":\"user_1\",\"amount\":250,"
         "\"paymentMethod\":\"tok_chargeDeclined\"}");
  svc_result_free(&r);
  r = op(payment_op_refund, f, "{\"orderId\":\"ord_dr\"}");
  assert_error(&r, 409, "{\"statusCode\":409,\"code\":\"PAYMENT_NOT_REFUNDABLE\","
                        "\"message\":\"Payment was declined: there is nothing to refund\"}");
  r = op(payment_op_refund, f, "{\"orderId\":\"ord_none\"}");
  assert_error(&r, 404, "{\"statusCode\":404,\"code\":\"PAYMENT_NOT_FOUND\","
                        "\"message\":\"Payment not found\"}");
}

/* refund_payment {orderId, voidIfMissing:true} with no payment: 200
 * {orderId, status "voided", voidedAt}, no event, idempotent (a replay); the
 * late process_payment is a declined payment with reason order_voided and a
 * payment_failed event, not charged, and its retry replays it. */
static void void_then_late_charge_is_declined(void **state) {
  fixture_t *f = *state;
  const char *void_text = "{\"orderId\":\"ord_v\",\"voidIfMissing\":true}";
  svc_result_t v = op(payment_op_refund, f, void_text);
  assert_int_equal(v.status, 200);
  assert_int_equal(v.replayed, 0);
  assert_null(v.event);
  assert_null(v.event_data);
  assert_int_equal(json_object_size(v.response), 3);
  assert_string_equal(str(v.response, "orderId"), "ord_v");
  assert_string_equal(str(v.response, "status"), "voided");
  assert_int_equal(strlen(str(v.response, "voidedAt")), 24);

  svc_result_t again = op(payment_op_refund, f, void_text);
  assert_int_equal(again.status, 200);
  assert_int_equal(again.replayed, 1);
  assert_null(again.event);
  assert_true(json_equal(again.response, v.response));
  svc_result_free(&again);

  const char *charge = "{\"orderId\":\"ord_v\",\"userId\":\"user_1\",\"amount\":3998,"
                       "\"paymentMethod\":\"tok_visa\"}";
  svc_result_t p = op(payment_op_process, f, charge);
  assert_int_equal(p.status, 200);
  assert_int_equal(p.replayed, 0);
  assert_string_equal(str(p.response, "status"), "declined");
  assert_string_equal(str(p.response, "reason"), "order_voided");
  assert_event(&p, "payment_failed",
               "\"orderId\":\"ord_v\",\"userId\":\"user_1\",\"amount\":3998,"
               "\"currency\":\"USD\",\"reason\":\"order_voided\"");
  assert_int_equal(f->charges, 0);
  svc_result_t p2 = op(payment_op_process, f, charge);
  assert_int_equal(p2.status, 200);
  assert_int_equal(p2.replayed, 1);
  assert_null(p2.event);
  assert_true(json_equal(p2.response, p.response));
  assert_int_equal(f->charges, 0);

  /* Now there is a (declined) payment: the refund answers as for any decline. */
  svc_result_t r = op(payment_op_refund, f, void_text);
  assert_error(&r, 409, "{\"statusCode\":409,\"code\":\"PAYMENT_NOT_REFUNDABLE\","
                        "\"message\":\"Payment was declined: there is nothing to refund\"}");
  svc_result_free(&p2);
  svc_result_free(&p);
  svc_result_free(&v);
}

/* voidIfMissing changes nothing when there is a payment: a succeeded one is
 * refunded (event), then replayed; without it (or false) a missing payment
 * is still 404 and nothing is voided; a non-boolean is a 400. */
static void void_if_missing_keeps_refund_behaviour(void **state) {
  fixture_t *f = *state;
  svc_result_t paid = op(payment_op_process, f,
                         "{\"orderId\":\"ord_p\",\"userId\":\"user_1\",\"amount\":250,"
                         "\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(f->charges, 1);
  svc_result_t r = op(payment_op_refund, f, "{\"orderId\":\"ord_p\",\"voidIfMissing\":true}");
  assert_int_equal(r.status, 200);
  assert_int_equal(r.replayed, 0);
  assert_string_equal(str(r.response, "status"), "refunded");
  assert_string_equal(str(r.response, "id"), str(paid.response, "id"));
  assert_event(&r, "payment_refunded",
               "\"orderId\":\"ord_p\",\"userId\":\"user_1\",\"amount\":250,\"currency\":\"USD\"");
  svc_result_t again = op(payment_op_refund, f, "{\"orderId\":\"ord_p\",\"voidIfMissing\":true}");
  assert_int_equal(again.replayed, 1);
  assert_null(again.event);
  assert_true(json_equal(again.response, r.response));
  svc_result_free(&again);
  svc_result_free(&r);
  svc_result_free(&paid);

  static const char *const missing[] = {
      "{\"orderId\":\"ord_n\"}", "{\"orderId\":\"ord_n\",\"voidIfMissing\":false}",
      "{\"orderId\":\"ord_n\",\"voidIfMissing\":null}"};
  for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
    r = op(payment_op_refund, f, missing[i]);
    assert_error(&r, 404, "{\"statusCode\":404,\"code\":\"PAYMENT_NOT_FOUND\","
                          "\"message\":\"Payment not found\"}");
  }
  /* Nothing was voided by those: the order is charged normally. */
  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_n\",\"userId\":\"user_1\",\"amount\":1,"
         "\"paymentMethod\":\"tok_visa\"}");
  assert_string_equal(str(r.response, "status"), "succeeded");
  assert_int_equal(f->charges, 2);
  svc_result_free(&r);

  r = op(payment_op_refund, f, "{\"orderId\":\"ord_q\",\"voidIfMissing\":\"yes\"}");
  assert_error(&r, 400, "{\"statusCode\":400,\"code\":\"VALIDATION_FAILED\","
                        "\"message\":\"voidIfMissing must be a boolean\","
                        "\"details\":[{\"field\":\"voidIfMissing\","
                        "\"message\":\"must be a boolean\"}]}");
  r = op(payment_op_refund, f, "{\"orderId\":\"ord_q\",\"voidIfMissing\":true,\"x\":1}");
  assert_int_equal(r.status, 400);
  svc_result_free(&r);
  r = op(payment_op_process, f,
         "{\"orderId\":\"ord_q\",\"userId\":\"user_1\",\"amount\":1,"
         "\"paymentMethod\":\"tok_visa\"}");
  assert_string_equal(str(r.response, "status"), "succeeded"); /* the 400s voided nothing */
  svc_result_free(&r);
}

static void not_found(void **state) {
  fixture_t *f = *state;
  svc_result_t r = op(payment_op_get, f, "{\"id\":\"pay_00000000000000000000000000000000\"}");
  assert_error(&r, 404, "{\"statusCode\":404,\"code\":\"PAYMENT_NOT_FOUND\","
                        "\"message\":\"Payment not found\"}");
  r = op(payment_op_get_by_order, f, "{\"orderId\":\"ord_none\"}");
  assert_error(&r, 404, "{\"statusCode\":404,\"code\":\"PAYMENT_NOT_FOUND\","
                        "\"message\":\"Payment not found\"}");
}

static void health(void **state) {
  fixture_t *f = *state;
  svc_result_t r = payment_op_health(&f->svc);
  assert_int_equal(r.status, 200);
  assert_null(r.event);
  assert_json(r.response, "{\"status\":\"ok\",\"service\":\"payment\",\"db\":\"ok\","
                          "\"redis\":null}");
  svc_result_free(&r);

  char path[400];
  sqlite3 *other = NULL;
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "DROP TABLE payments", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  r = payment_op_health(&f->svc);
  assert_error(&r, 503, "{\"statusCode\":503,\"code\":\"SERVICE_UNHEALTHY\","
                        "\"message\":\"Payment database check failed\"}");
}

/* Another process holding the write lock past our busy timeout: processing
 * fails as 500 STORAGE_ERROR with no event (nothing was committed), and the
 * retry after the lock is gone charges and publishes normally. */
static void storage_failure_is_500_without_event(void **state) {
  fixture_t *f = *state;
  char path[400];
  sqlite3 *other = NULL;
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

  const char *text = "{\"orderId\":\"ord_busy\",\"userId\":\"u\",\"amount\":1,"
                     "\"paymentMethod\":\"tok_visa\"}";
  svc_result_t r = op(payment_op_process, f, text);
  assert_error(&r, 500,
               "{\"statusCode\":500,\"code\":\"STORAGE_ERROR\",\"message\":\"Storage error\"}");
  assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);

  r = op(payment_op_process, f, text);
  assert_int_equal(r.status, 200);
  assert_non_null(r.event);
  assert_string_equal(r.event, "payment_completed");
  svc_result_free(&r);
}

static void validation_error_keeps_utf8(void **state) {
  (void)state;
  payment_verrs_t errs = {.n = 1};
  errs.e[0] = (payment_verr_t){"caf\xc3\xa9", 5, "is not allowed"};
  json_t *e = valid_error_object(&errs);
  assert_non_null(e);
  assert_string_equal(json_string_value(json_object_get(e, "message")),
                      "caf\xc3\xa9 is not allowed");
  json_decref(e);
}

/* Committed rows for order_id, seen from another connection (WAL: commits only). */
static int count_committed(fixture_t *f, const char *order_id) {
  char path[400], sql[200];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int n = -1;
  snprintf(path, sizeof(path), "%s/payment.db", f->dir);
  snprintf(sql, sizeof(sql), "SELECT count(*) FROM payments WHERE order_id = '%s'", order_id);
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Two process_payment for one orderId and a refund of another in the same
 * turn: the writes wait in one transaction (invisible to other connections),
 * the duplicate is answered from the first's uncommitted row with no charge
 * and no event, and the end of the turn commits them once. */
static void group_shares_one_transaction_per_turn(void **state) {
  fixture_t *f = *state;
  uv_loop_t loop;
  store_group_stats_t st;
  const char *visa = "{\"orderId\":\"ord_g\",\"userId\":\"user_1\",\"amount\":10,"
                     "\"paymentMethod\":\"tok_visa\"}";
  svc_result_t paid = op(payment_op_process, f,
                             "{\"orderId\":\"ord_gr\",\"userId\":\"user_1\",\"amount\":5,"
                             "\"paymentMethod\":\"tok_visa\"}");
  svc_result_free(&paid); /* committed on its own: no group yet */
  assert_int_equal(uv_loop_init(&loop), 0);
  store_group_t *g = store_group_new(&loop, payment_store_db(f->store));
  assert_non_null(g);
  f->svc.group = g; /* as svc_main() does */

  svc_result_t a = op(payment_op_process, f, visa);
  svc_result_t b = op(payment_op_process, f, visa);
  svc_result_t r = op(payment_op_refund, f, "{\"orderId\":\"ord_gr\"}");
  /* A void and the late charge in the same turn: the charge sees the
   * uncommitted void and is declined. */
  svc_result_t v = op(payment_op_refund, f, "{\"orderId\":\"ord_gv\",\"voidIfMissing\":true}");
  svc_result_t late = op(payment_op_process, f,
                         "{\"orderId\":\"ord_gv\",\"userId\":\"user_1\",\"amount\":3,"
                         "\"paymentMethod\":\"tok_visa\"}");
  assert_int_equal(v.status, 200);
  assert_string_equal(str(v.response, "status"), "voided");
  assert_string_equal(str(late.response, "reason"), "order_voided");
  svc_result_free(&v);
  svc_result_free(&late);
  assert_true(store_group_in_txn(g));
  assert_int_equal(a.status, 200);
  assert_int_equal(a.replayed, 0);
  assert_string_equal(a.event, "payment_completed");
  assert_int_equal(b.status, 200);
  assert_int_equal(b.replayed, 1);
  assert_null(b.event);
  assert_true(json_equal(a.response, b.response));
  assert_int_equal(r.status, 200);
  assert_string_equal(r.event, "payment_refunded");
  assert_int_equal(f->charges, 2);
  assert_int_equal(count_committed(f, "ord_g"), 0); /* not yet durable */

  uv_run(&loop, UV_RUN_NOWAIT); /* the turn ends: one COMMIT */
  assert_false(store_group_in_txn(g));
  store_group_stats(g, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(st.failures, 0);
  assert_int_equal(count_committed(f, "ord_g"), 1);
  assert_int_equal(count_committed(f, "ord_gv"), 1);

  /* A read after the commit returns the object the first reply carried. */
  svc_result_t got = op(payment_op_get_by_order, f, "{\"orderId\":\"ord_g\"}");
  assert_true(json_equal(got.response, a.response));
  assert_false(store_group_in_txn(g)); /* reads open no transaction */
  svc_result_free(&got);
  svc_result_free(&a);
  svc_result_free(&b);
  svc_result_free(&r);

  f->svc.group = NULL;
  store_group_close(g);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(process_succeeds_once, setup, teardown),
      cmocka_unit_test_setup_teardown(declines_are_answers_with_failed_events, setup, teardown),
      cmocka_unit_test_setup_teardown(mismatch_and_validation_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(refund_once, setup, teardown),
      cmocka_unit_test_setup_teardown(void_then_late_charge_is_declined, setup, teardown),
      cmocka_unit_test_setup_teardown(void_if_missing_keeps_refund_behaviour, setup, teardown),
      cmocka_unit_test_setup_teardown(not_found, setup, teardown),
      cmocka_unit_test_setup_teardown(health, setup, teardown),
      cmocka_unit_test_setup_teardown(storage_failure_is_500_without_event, setup, teardown),
      cmocka_unit_test_setup_teardown(group_shares_one_transaction_per_turn, setup, teardown),
      cmocka_unit_test(validation_error_keeps_utf8),
  };
  proto_log_set_level(PROTO_LOG_ERROR); /* the storage tests log errors on purpose */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
