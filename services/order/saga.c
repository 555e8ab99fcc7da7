/* saga.c: the create-order saga as a pure state machine (order.h, "the
 * create-order saga"): the table of (state, outcome) -> next state, the
 * action that belongs to each state, the resume point of each state and the
 * retry backoff. No I/O, no clock, no randomness of its own: the handlers
 * drive it, write its state durably and perform its actions.
 *
 * Decisions (each is a cell of the table below, and test_saga.c checks them):
 * - The state is the step in progress and is written BEFORE the step is sent,
 *   so after a crash the row names exactly the step to re-send; every remote
 *   step is idempotent per orderId, so re-sending is safe (order_saga_resume).
 * - An UNKNOWN outcome (timeout, connection lost after sending, 5xx) is
 *   resolved, never assumed: on the forward path the same idempotent step is
 *   retried with backoff (process_payment answers a retry with its first
 *   result, charged or declined; reserve_inventory likewise) until it gives a
 *   definite answer or the deadline runs out.
 * - DEADLINE before the pivot (the charge) moves to compensation, of
 *   everything that may have happened: a reserve that timed out may have
 *   held stock (release; the inventory service records a release before
 *   reserve, so a late reserve is refused), a charge that timed out may have
 *   gone through (refund, then release). The refund compensation is done when
 *   the payment service says nothing is charged any more (refunded, 409
 *   declined, 404 no payment): the driver maps those to OK.
 * - After the pivot the saga goes forward: a committed reservation cannot be
 *   released (409 RESERVATION_COMMITTED), so a deadline while committing
 *   keeps retrying the commit, whose answer is definite (committed, or 409
 *   RESERVATION_RELEASED / 404 after the reservation expired, which is FAILED
 *   and compensates: refund, release, cancel). CONFIRMING is a local write:
 *   no remote step is left to hang on, so no deadline applies to it.
 * - A definite failure compensates only the steps that completed, in reverse
 *   order: a refused reserve held nothing (all or none), so it only cancels;
 *   a declined charge charged nothing, so it releases and cancels.
 * - Compensation never gives up and never goes back: any outcome but OK
 *   retries the same step with order_saga_backoff_ms(attempt), and the order
 *   stays visibly compensating (the sagas row) until it succeeds.
 * - The reason of the failure that started compensation (the transition
 *   with failing = 1) is kept by the driver as the cancel reason; a deadline
 *   gives ORDER_REASON_DEADLINE.
 */
#include "order.h"

#include <string.h>

/* One cell's result; the action is derived from the state (action_of). */
typedef struct cell {
  signed char to;
  unsigned char retry, failing;
} cell_t;

#define GO(s) {(signed char)(s), 0, 0}   /* move on */
#define AGAIN(s) {(signed char)(s), 1, 0} /* the same step again, after backoff */
#define FAIL(s) {(signed char)(s), 0, 1}  /* start compensation */

/* table[state][outcome]: OK, FAILED, UNKNOWN, DEADLINE. */
static const cell_t table[ORDER_SAGA_STATE_COUNT_][ORDER_SAGA_OUTCOME_COUNT_] = {
    /* Nothing remote was tried yet: any failure only cancels the order. */
    [ORDER_SAGA_PENDING] = {GO(ORDER_SAGA_RESERVING), FAIL(ORDER_SAGA_CANCELLING),
                            FAIL(ORDER_SAGA_CANCELLING), FAIL(ORDER_SAGA_CANCELLING)},
    [ORDER_SAGA_RESERVING] = {GO(ORDER_SAGA_CHARGING), FAIL(ORDER_SAGA_CANCELLING),
                              AGAIN(ORDER_SAGA_RESERVING),
                              FAIL(ORDER_SAGA_COMPENSATING_RELEASE)},
    [ORDER_SAGA_CHARGING] = {GO(ORDER_SAGA_COMMITTING), FAIL(ORDER_SAGA_COMPENSATING_RELEASE),
                             AGAIN(ORDER_SAGA_CHARGING),
                             FAIL(ORDER_SAGA_COMPENSATING_REFUND)},
    /* Past the pivot: forward unless the reservation is definitely gone. */
    [ORDER_SAGA_COMMITTING] = {GO(ORDER_SAGA_CONFIRMING), FAIL(ORDER_SAGA_COMPENSATING_REFUND),
                               AGAIN(ORDER_SAGA_COMMITTING), AGAIN(ORDER_SAGA_COMMITTING)},
    [ORDER_SAGA_CONFIRMING] = {GO(ORDER_SAGA_DONE), AGAIN(ORDER_SAGA_CONFIRMING),
                               AGAIN(ORDER_SAGA_CONFIRMING), AGAIN(ORDER_SAGA_CONFIRMING)},
    [ORDER_SAGA_DONE] = {GO(ORDER_SAGA_DONE), GO(ORDER_SAGA_DONE), GO(ORDER_SAGA_DONE),
                         GO(ORDER_SAGA_DONE)},
    [ORDER_SAGA_COMPENSATING_REFUND] = {GO(ORDER_SAGA_COMPENSATING_RELEASE),
                                        AGAIN(ORDER_SAGA_COMPENSATING_REFUND),
                                        AGAIN(ORDER_SAGA_COMPENSATING_REFUND),
                                        AGAIN(ORDER_SAGA_COMPENSATING_REFUND)},
    [ORDER_SAGA_COMPENSATING_RELEASE] = {GO(ORDER_SAGA_CANCELLING),
                                         AGAIN(ORDER_SAGA_COMPENSATING_RELEASE),
                                         AGAIN(ORDER_SAGA_COMPENSATING_RELEASE),
                                         AGAIN(ORDER_SAGA_COMPENSATING_RELEASE)},
    [ORDER_SAGA_CANCELLING] = {GO(ORDER_SAGA_CANCELLED), AGAIN(ORDER_SAGA_CANCELLING),
                               AGAIN(ORDER_SAGA_CANCELLING), AGAIN(ORDER_SAGA_CANCELLING)},
    [ORDER_SAGA_CANCELLED] = {GO(ORDER_SAGA_CANCELLED), GO(ORDER_SAGA_CANCELLED),
                              GO(ORDER_SAGA_CANCELLED), GO(ORDER_SAGA_CANCELLED)},
};

/* The step each state performs; PENDING's is RESERVE, sent once RESERVING
 * is written (next(PENDING, OK) or resume(PENDING)). */
static const unsigned char actions[ORDER_SAGA_STATE_COUNT_] = {
    [ORDER_SAGA_PENDING] = ORDER_SAGA_ACT_NONE,
    [ORDER_SAGA_RESERVING] = ORDER_SAGA_ACT_RESERVE,
    [ORDER_SAGA_CHARGING] = ORDER_SAGA_ACT_CHARGE,
    [ORDER_SAGA_COMMITTING] = ORDER_SAGA_ACT_COMMIT,
    [ORDER_SAGA_CONFIRMING] = ORDER_SAGA_ACT_CONFIRM,
    [ORDER_SAGA_DONE] = ORDER_SAGA_ACT_NONE,
    [ORDER_SAGA_COMPENSATING_REFUND] = ORDER_SAGA_ACT_REFUND,
    [ORDER_SAGA_COMPENSATING_RELEASE] = ORDER_SAGA_ACT_RELEASE,
    [ORDER_SAGA_CANCELLING] = ORDER_SAGA_ACT_CANCEL,
    [ORDER_SAGA_CANCELLED] = ORDER_SAGA_ACT_NONE,
};

static const char *const state_names[ORDER_SAGA_STATE_COUNT_] = {
    [ORDER_SAGA_PENDING] = "pending",
    [ORDER_SAGA_RESERVING] = "reserving",
    [ORDER_SAGA_CHARGING] = "charging",
    [ORDER_SAGA_COMMITTING] = "committing",
    [ORDER_SAGA_CONFIRMING] = "confirming",
    [ORDER_SAGA_DONE] = "done",
    [ORDER_SAGA_COMPENSATING_REFUND] = "compensating_refund",
    [ORDER_SAGA_COMPENSATING_RELEASE] = "compensating_release",
    [ORDER_SAGA_CANCELLING] = "cancelling",
    [ORDER_SAGA_CANCELLED] = "cancelled",
};

static const char *const action_names[ORDER_SAGA_ACTION_COUNT_] = {
    [ORDER_SAGA_ACT_NONE] = "none",       [ORDER_SAGA_ACT_RESERVE] = "reserve",
    [ORDER_SAGA_ACT_CHARGE] = "charge",   [ORDER_SAGA_ACT_COMMIT] = "commit",
    [ORDER_SAGA_ACT_CONFIRM] = "confirm", [ORDER_SAGA_ACT_REFUND] = "refund",
    [ORDER_SAGA_ACT_RELEASE] = "release", [ORDER_SAGA_ACT_CANCEL] = "cancel",
};

static int state_ok(int state) {
  return state >= 0 && state < ORDER_SAGA_STATE_COUNT_;
}

int order_saga_action_of(int state) {
  return state_ok(state) ? actions[state] : ORDER_SAGA_ACT_NONE;
}

order_saga_step_t order_saga_next(int state, int outcome) {
  order_saga_step_t s = {-1, ORDER_SAGA_ACT_NONE, 0, 0};
  if (!state_ok(state) || outcome < 0 || outcome >= ORDER_SAGA_OUTCOME_COUNT_)
    return s;
  const cell_t *c = &table[state][outcome];
  s.state = c->to;
  s.action = order_saga_action_of(c->to);
  s.retry = c->retry;
  s.failing = c->failing;
  return s;
}

order_saga_step_t order_saga_resume(int state) {
  order_saga_step_t s = {-1, ORDER_SAGA_ACT_NONE, 0, 0};
  if (!state_ok(state))
    return s;
  /* A PENDING row sent nothing yet: start as a fresh saga would. */
  s.state = state == ORDER_SAGA_PENDING ? ORDER_SAGA_RESERVING : state;
  s.action = order_saga_action_of(s.state);
  return s;
}

int64_t order_saga_backoff_ms(int attempt, uint32_t rnd) {
  int64_t d = ORDER_SAGA_BACKOFF_BASE_MS;
  if (attempt < 0)
    attempt = 0;
  /* Doubling stops at the cap, so a huge attempt cannot overflow. */
  for (int i = 0; i < attempt && d < ORDER_SAGA_BACKOFF_CAP_MS; i++)
    d *= 2;
  if (d > ORDER_SAGA_BACKOFF_CAP_MS)
    d = ORDER_SAGA_BACKOFF_CAP_MS;
  /* Equal jitter: half fixed (never 0, no hot loop), half random (retries
   * of many sagas after one outage spread out). */
  int64_t half = d / 2;
  return half + (int64_t)(rnd % (uint32_t)(d - half + 1));
}

int order_saga_finished(int state) {
  return state == ORDER_SAGA_DONE || state == ORDER_SAGA_CANCELLED;
}

int order_saga_compensating(int state) {
  return state == ORDER_SAGA_COMPENSATING_REFUND || state == ORDER_SAGA_COMPENSATING_RELEASE ||
         state == ORDER_SAGA_CANCELLING;
}

const char *order_saga_state_name(int state) {
  return state_ok(state) ? state_names[state] : NULL;
}

int order_saga_state_parse(const char *s, size_t len) {
  for (int i = 0; i < ORDER_SAGA_STATE_COUNT_; i++)
    if (strlen(state_names[i]) == len && memcmp(state_names[i], s, len) == 0)
      return i;
  return -1;
}

const char *order_saga_action_name(int action) {
  return action >= 0 && action < ORDER_SAGA_ACTION_COUNT_ ? action_names[action] : NULL;
}
