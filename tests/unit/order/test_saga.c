/* test_saga.c: the create-order saga's state machine (saga.c), table-driven:
 * every (state, outcome) cell of the transition table, every resume point,
 * the action that belongs to each state, names, bad input, and the bounds of
 * the retry backoff (growth, cap, jitter never 0 and never above the cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "order.h"

/* Short names keep the table readable. */
enum {
  PEN = ORDER_SAGA_PENDING,
  RES = ORDER_SAGA_RESERVING,
  CHG = ORDER_SAGA_CHARGING,
  COM = ORDER_SAGA_COMMITTING,
  CNF = ORDER_SAGA_CONFIRMING,
  DON = ORDER_SAGA_DONE,
  REF = ORDER_SAGA_COMPENSATING_REFUND,
  REL = ORDER_SAGA_COMPENSATING_RELEASE,
  CAN = ORDER_SAGA_CANCELLING,
  END = ORDER_SAGA_CANCELLED,
};
enum { OK = ORDER_SAGA_OK, NO = ORDER_SAGA_FAILED, UNK = ORDER_SAGA_UNKNOWN,
       DL = ORDER_SAGA_DEADLINE };
enum {
  A_NONE = ORDER_SAGA_ACT_NONE,
  A_RES = ORDER_SAGA_ACT_RESERVE,
  A_CHG = ORDER_SAGA_ACT_CHARGE,
  A_COM = ORDER_SAGA_ACT_COMMIT,
  A_CNF = ORDER_SAGA_ACT_CONFIRM,
  A_REF = ORDER_SAGA_ACT_REFUND,
  A_REL = ORDER_SAGA_ACT_RELEASE,
  A_CAN = ORDER_SAGA_ACT_CANCEL,
};

typedef struct cell {
  int from, outcome;
  int to, action, retry, failing;
} cell_t;

/* Written from the design, not from saga.c: all 10 x 4 cells. */
static const cell_t cells[] = {
    /* PENDING: the order row is written, nothing sent. */
    {PEN, OK, RES, A_RES, 0, 0},
    {PEN, NO, CAN, A_CAN, 0, 1},
    {PEN, UNK, CAN, A_CAN, 0, 1},   /* nothing remote was tried: nothing to undo */
    {PEN, DL, CAN, A_CAN, 0, 1},
    /* RESERVING: all or none, idempotent; release of an unknown order tombstones it. */
    {RES, OK, CHG, A_CHG, 0, 0},
    {RES, NO, CAN, A_CAN, 0, 1},    /* out of stock: nothing held */
    {RES, UNK, RES, A_RES, 1, 0},   /* resolve by retrying, not by assuming */
    {RES, DL, REL, A_REL, 0, 1},    /* may be held: release */
    /* CHARGING: process_payment, idempotent per orderId. */
    {CHG, OK, COM, A_COM, 0, 0},
    {CHG, NO, REL, A_REL, 0, 1},    /* declined: nothing charged, stock held */
    {CHG, UNK, CHG, A_CHG, 1, 0},   /* timeout: the retry returns the first result */
    {CHG, DL, REF, A_REF, 0, 1},    /* may be charged: refund, then release */
    /* COMMITTING: after the pivot (the charge) the saga goes forward ... */
    {COM, OK, CNF, A_CNF, 0, 0},
    {COM, NO, REF, A_REF, 0, 1},    /* ... unless the reservation is gone (expired) */
    {COM, UNK, COM, A_COM, 1, 0},
    {COM, DL, COM, A_COM, 1, 0},    /* a committed reservation cannot be released */
    /* CONFIRMING: local; nothing remote is left, so no deadline applies. */
    {CNF, OK, DON, A_NONE, 0, 0},
    {CNF, NO, CNF, A_CNF, 1, 0},
    {CNF, UNK, CNF, A_CNF, 1, 0},
    {CNF, DL, CNF, A_CNF, 1, 0},
    /* DONE: final. */
    {DON, OK, DON, A_NONE, 0, 0},
    {DON, NO, DON, A_NONE, 0, 0},
    {DON, UNK, DON, A_NONE, 0, 0},
    {DON, DL, DON, A_NONE, 0, 0},
    /* Compensation: forward only after success, else retried with backoff. */
    {REF, OK, REL, A_REL, 0, 0},
    {REF, NO, REF, A_REF, 1, 0},
    {REF, UNK, REF, A_REF, 1, 0},
    {REF, DL, REF, A_REF, 1, 0},
    {REL, OK, CAN, A_CAN, 0, 0},
    {REL, NO, REL, A_REL, 1, 0},
    {REL, UNK, REL, A_REL, 1, 0},
    {REL, DL, REL, A_REL, 1, 0},
    {CAN, OK, END, A_NONE, 0, 0},
    {CAN, NO, CAN, A_CAN, 1, 0},
    {CAN, UNK, CAN, A_CAN, 1, 0},
    {CAN, DL, CAN, A_CAN, 1, 0},
    /* CANCELLED: final. */
    {END, OK, END, A_NONE, 0, 0},
    {END, NO, END, A_NONE, 0, 0},
    {END, UNK, END, A_NONE, 0, 0},
    {END, DL, END, A_NONE, 0, 0},
};

static void test_every_transition(void **state) {
  (void)state;
  int seen[ORDER_SAGA_STATE_COUNT_][ORDER_SAGA_OUTCOME_COUNT_];
  memset(seen, 0, sizeof(seen));
  for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
    const cell_t *c = &cells[i];
    order_saga_step_t s = order_saga_next(c->from, c->outcome);
    if (s.state != c->to || s.action != c->action || s.retry != c->retry ||
        s.failing != c->failing)
      fail_msg("%s on outcome %d: got {%s, %s, retry %d, failing %d}, want {%s, %s, %d, %d}",
               order_saga_state_name(c->from), c->outcome, order_saga_state_name(s.state),
               order_saga_action_name(s.action), s.retry, s.failing,
               order_saga_state_name(c->to), order_saga_action_name(c->action), c->retry,
               c->failing);
    seen[c->from][c->outcome]++;
  }
  /* The table above is complete: no cell missing, none twice. */
  for (int st = 0; st < ORDER_SAGA_STATE_COUNT_; st++)
    for (int o = 0; o < ORDER_SAGA_OUTCOME_COUNT_; o++)
      if (seen[st][o] != 1)
        fail_msg("cell %s/%d listed %d times", order_saga_state_name(st), o, seen[st][o]);
}

/* Invariants over the whole table, so a new state cannot break them. */
static void test_table_invariants(void **state) {
  (void)state;
  for (int st = 0; st < ORDER_SAGA_STATE_COUNT_; st++)
    for (int o = 0; o < ORDER_SAGA_OUTCOME_COUNT_; o++) {
      order_saga_step_t s = order_saga_next(st, o);
      /* The action always belongs to the state written. */
      assert_int_equal(s.action, order_saga_action_of(s.state));
      /* A retry stays put; failing only leaves the forward path. */
      if (s.retry)
        assert_int_equal(s.state, st);
      if (s.failing) {
        assert_false(order_saga_compensating(st));
        assert_true(order_saga_compensating(s.state));
      }
      /* Compensation never goes back to a forward step, and never gives up. */
      if (order_saga_compensating(st))
        assert_true(order_saga_compensating(s.state) || s.state == END);
      /* Final states stay final. */
      if (order_saga_finished(st))
        assert_int_equal(s.state, st);
    }
}

/* From every state, outcomes OK only reach a final state in bounded steps:
 * the happy path and every compensation path terminate. */
static void test_paths_terminate(void **state) {
  (void)state;
  for (int st = 0; st < ORDER_SAGA_STATE_COUNT_; st++) {
    int cur = st, n = 0;
    while (!order_saga_finished(cur)) {
      cur = order_saga_next(cur, OK).state;
      assert_true(++n <= ORDER_SAGA_STATE_COUNT_);
    }
    if (order_saga_finished(st))
      assert_int_equal(cur, st);
    else
      assert_int_equal(cur, order_saga_compensating(st) ? END : DON);
  }
}

/* A failure at each forward step, then success of every compensation:
 * what is undone is exactly what was done, in reverse order. */
static void test_failure_at_every_step(void **state) {
  (void)state;
  static const struct {
    int at, outcome;
    int path[5]; /* states after the failure, ending with END */
  } runs[] = {
      {PEN, NO, {CAN, END}},
      {RES, NO, {CAN, END}},
      {RES, DL, {REL, CAN, END}},
      {CHG, NO, {REL, CAN, END}},
      {CHG, DL, {REF, REL, CAN, END}},
      {COM, NO, {REF, REL, CAN, END}},
  };
  for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
    order_saga_step_t s = order_saga_next(runs[i].at, runs[i].outcome);
    assert_true(s.failing);
    for (size_t k = 0;; k++) {
      assert_int_equal(s.state, runs[i].path[k]);
      if (s.state == END)
        break;
      s = order_saga_next(s.state, OK);
    }
  }
}

static void test_every_resume_point(void **state) {
  (void)state;
  static const struct {
    int from, to, action;
  } resume[] = {
      {PEN, RES, A_RES}, {RES, RES, A_RES}, {CHG, CHG, A_CHG}, {COM, COM, A_COM},
      {CNF, CNF, A_CNF}, {DON, DON, A_NONE}, {REF, REF, A_REF}, {REL, REL, A_REL},
      {CAN, CAN, A_CAN}, {END, END, A_NONE},
  };
  assert_int_equal(sizeof(resume) / sizeof(resume[0]), ORDER_SAGA_STATE_COUNT_);
  for (size_t i = 0; i < sizeof(resume) / sizeof(resume[0]); i++) {
    order_saga_step_t s = order_saga_resume(resume[i].from);
    assert_int_equal(s.state, resume[i].to);
    assert_int_equal(s.action, resume[i].action);
    assert_int_equal(s.retry, 0);
    assert_int_equal(s.failing, 0);
  }
}

static void test_bad_input(void **state) {
  (void)state;
  static const int bad[][2] = {{-1, OK}, {ORDER_SAGA_STATE_COUNT_, OK}, {RES, -1},
                               {RES, ORDER_SAGA_OUTCOME_COUNT_}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    order_saga_step_t s = order_saga_next(bad[i][0], bad[i][1]);
    assert_int_equal(s.state, -1);
    assert_int_equal(s.action, A_NONE);
  }
  assert_int_equal(order_saga_resume(-1).state, -1);
  assert_int_equal(order_saga_resume(ORDER_SAGA_STATE_COUNT_).action, A_NONE);
  assert_int_equal(order_saga_action_of(-1), A_NONE);
  assert_false(order_saga_finished(-1));
  assert_false(order_saga_compensating(ORDER_SAGA_STATE_COUNT_));
}

static void test_names_round_trip(void **state) {
  (void)state;
  static const char *const expect[] = {
      "pending",    "reserving", "charging",            "committing",           "confirming",
      "done",       "compensating_refund",              "compensating_release", "cancelling",
      "cancelled"};
  assert_int_equal(sizeof(expect) / sizeof(expect[0]), ORDER_SAGA_STATE_COUNT_);
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++) {
    assert_string_equal(order_saga_state_name(i), expect[i]);
    assert_int_equal(order_saga_state_parse(expect[i], strlen(expect[i])), i);
  }
  assert_null(order_saga_state_name(-1));
  assert_null(order_saga_state_name(ORDER_SAGA_STATE_COUNT_));
  assert_int_equal(order_saga_state_parse("done ", 5), -1);
  assert_int_equal(order_saga_state_parse("don", 3), -1);
  assert_int_equal(order_saga_state_parse("Done", 4), -1);
  for (int a = 0; a < ORDER_SAGA_ACTION_COUNT_; a++)
    assert_non_null(order_saga_action_name(a));
  assert_null(order_saga_action_name(ORDER_SAGA_ACTION_COUNT_));
}

static void test_backoff_bounds(void **state) {
  (void)state;
  static const uint32_t rnds[] = {0, 1, 2, 49, 50, 51, 12345, 0x7fffffffu, 0xffffffffu};
  int64_t prev_max = 0;
  for (int attempt = -3; attempt < 200; attempt++) {
    int64_t lo = -1, hi = -1;
    for (size_t r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++) {
      int64_t d = order_saga_backoff_ms(attempt, rnds[r]);
      assert_true(d > 0);
      assert_true(d <= ORDER_SAGA_BACKOFF_CAP_MS);
      if (lo < 0 || d < lo)
        lo = d;
      if (d > hi)
        hi = d;
    }
    /* Equal jitter: never below half of the un-jittered delay. */
    assert_true(lo >= hi / 2);
    /* Non-decreasing ceiling with the attempt. */
    assert_true(hi >= prev_max);
    prev_max = hi;
  }
  /* The first retry: 50..100 ms; far ones: at the cap, half to full. */
  assert_int_equal(order_saga_backoff_ms(0, 0), ORDER_SAGA_BACKOFF_BASE_MS / 2);
  assert_true(order_saga_backoff_ms(0, 0xffffffffu) <= ORDER_SAGA_BACKOFF_BASE_MS);
  assert_int_equal(order_saga_backoff_ms(-5, 7), order_saga_backoff_ms(0, 7));
  assert_int_equal(order_saga_backoff_ms(1, 0), ORDER_SAGA_BACKOFF_BASE_MS);
  assert_int_equal(order_saga_backoff_ms(1000, 0), ORDER_SAGA_BACKOFF_CAP_MS / 2);
  assert_int_equal(order_saga_backoff_ms(1000, ORDER_SAGA_BACKOFF_CAP_MS / 2),
                   ORDER_SAGA_BACKOFF_CAP_MS);
  /* The jitter actually varies. */
  assert_int_not_equal(order_saga_backoff_ms(10, 1), order_saga_backoff_ms(10, 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_transition),   cmocka_unit_test(test_table_invariants),
      cmocka_unit_test(test_paths_terminate),    cmocka_unit_test(test_failure_at_every_step),
      cmocka_unit_test(test_every_resume_point), cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_names_round_trip),   cmocka_unit_test(test_backoff_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
