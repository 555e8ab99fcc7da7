/* saga_outcome.c: what an upstream's answer to a saga step means, and the
 * catalogue's prices for an order from its reservation. Pure: no I/O, no
 * clock; the driver (saga_run.c) calls it and feeds the outcome to the state
 * machine (saga.c).
 *
 * The rule behind every verdict: FAILED only when the answer proves the step
 * did not happen and will not (a refusal, a decline, a call never sent on its
 * first try); UNKNOWN whenever money or stock may have moved (a timeout, a
 * lost connection, a 5xx, a reply we cannot read), so the idempotent step is
 * asked again instead of guessed. A compensation step is OK as soon as the
 * answer shows nothing is left to undo (a refund of nothing, a release of an
 * unknown reservation).
 */
#include "order.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "proto/error.h"
#include "proto/packet.h"

/* A peer's error, whatever shape it came in. */
typedef struct remote {
  int status;                      /* statusCode; 0: none given (a NestJS shape) */
  const char *code;                /* may be NULL */
  const char *message;             /* may be NULL */
  const json_t *details;           /* may be NULL */
} remote_t;

static void remote_of(const json_t *err, remote_t *r) {
  *r = (remote_t){0, NULL, NULL, NULL};
  if (json_is_string(err)) {
    r->message = json_string_value(err);
    return;
  }
  const json_t *sc = json_object_get(err, "statusCode");
  if (json_is_integer(sc))
    r->status = (int)json_integer_value(sc);
  r->code = json_string_value(json_object_get(err, "code"));
  r->message = json_string_value(json_object_get(err, "message"));
  if (!r->message) /* the tutorial's {error, statusCode} */
    r->message = json_string_value(json_object_get(err, "error"));
  r->details = json_object_get(err, "details");
}

/* A NestJS service in the tutorial's style answers a failure as a normal
 * response: {error: "...", statusCode: 404}. */
static int is_error_response(const json_t *response) {
  return json_is_object(response) && json_is_string(json_object_get(response, "error")) &&
         json_is_integer(json_object_get(response, "statusCode")) &&
         json_integer_value(json_object_get(response, "statusCode")) >= 400;
}

static int is_no_handler(const remote_t *r) {
  return r->message && strcmp(r->message, PROTO_NO_HANDLER_MESSAGE) == 0;
}

/* Copy s (or fallback) into buf, cut on a UTF-8 character boundary. */
static void set_reason(order_saga_verdict_t *v, const char *s, const char *fallback) {
  if (!s || !*s)
    s = fallback;
  size_t n = strlen(s);
  if (n >= sizeof(v->reason)) {
    n = sizeof(v->reason) - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(v->reason, s, n);
  v->reason[n] = '\0';
}

/* The reason for a refusal: the peer's code in lowercase (OUT_OF_STOCK ->
 * out_of_stock), else its message. */
static void reason_of(order_saga_verdict_t *v, const remote_t *r, const char *fallback) {
  if (r->code && *r->code && strlen(r->code) < sizeof(v->reason)) {
    size_t i = 0;
    for (; r->code[i]; i++)
      v->reason[i] = (char)tolower((unsigned char)r->code[i]);
    v->reason[i] = '\0';
    return;
  }
  set_reason(v, r->message, fallback);
}

static void failed(order_saga_verdict_t *v, int status, const char *code, const char *message,
                   const json_t *details) {
  v->outcome = ORDER_SAGA_FAILED;
  v->status = status;
  v->err = proto_error_object(status, code, message,
                              json_is_array(details) ? json_deep_copy(details) : NULL);
}

/* The caller's error for a peer's refusal: its status, code, message and
 * details as they came (a 4xx is the caller's own problem: an unknown
 * product, a payment method the processor refuses). */
static void refused(order_saga_verdict_t *v, const remote_t *r, const char *default_code,
                    const char *fallback_reason) {
  reason_of(v, r, fallback_reason);
  failed(v, r->status, r->code ? r->code : default_code,
         r->message && *r->message ? r->message : "Refused", r->details);
}

static int is_4xx(const remote_t *r) {
  return r->status >= 400 && r->status < 500;
}

/* The transport's outcomes, alike for every step: a call never sent is
 * definite only on the first try of a forward step (an earlier try may have
 * landed); everything else that is not an answer is UNKNOWN. */
static int transport(order_saga_verdict_t *v, int attempts, int up_status, int forward,
                     const char *code, const char *message, const char *reason) {
  if (up_status == PROTO_EUNAVAIL && forward && attempts == 0) {
    set_reason(v, reason, reason);
    failed(v, 503, code, message, NULL);
    return 1;
  }
  v->outcome = ORDER_SAGA_UNKNOWN;
  return 1;
}

static void judge_reserve(order_saga_verdict_t *v, int attempts, int up_status,
                          const json_t *response, const remote_t *r) {
  if (up_status == PROTO_OK) {
    v->outcome = json_is_object(response) ? ORDER_SAGA_OK : ORDER_SAGA_UNKNOWN;
    return;
  }
  if (up_status != PROTO_EREMOTE) {
    transport(v, attempts, up_status, 1, "INVENTORY_SERVICE_UNAVAILABLE",
              "Inventory service unavailable", ORDER_REASON_INVENTORY_UNAVAILABLE);
    return;
  }
  /* All or nothing: a refused reserve holds nothing. A peer that states no
   * status (NestJS's own shapes) is a failure of the peer, not of the
   * request: asked again. */
  if (is_4xx(r))
    refused(v, r, "RESERVATION_REFUSED", "reservation_refused");
  else
    v->outcome = ORDER_SAGA_UNKNOWN;
}

static void judge_charge(order_saga_verdict_t *v, int attempts, int up_status,
                         const json_t *response, const remote_t *r) {
  if (up_status == PROTO_OK) {
    const char *status = json_string_value(json_object_get(response, "status"));
    const char *pid = json_string_value(json_object_get(response, "id"));
    if (status && strcmp(status, "succeeded") == 0 && pid && strlen(pid) < PROTO_ID_MAX) {
      v->outcome = ORDER_SAGA_OK;
      snprintf(v->payment_id, sizeof(v->payment_id), "%s", pid);
    } else if (status && strcmp(status, "declined") == 0) {
      /* The caller gets the cancelled order, its reason the decline's. */
      v->outcome = ORDER_SAGA_FAILED;
      set_reason(v, json_string_value(json_object_get(response, "reason")), "declined");
    } else if (status && strcmp(status, "refunded") == 0) {
      /* Charged and already refunded (by hand): nothing is held. */
      v->outcome = ORDER_SAGA_FAILED;
      set_reason(v, "payment_refunded", NULL);
    } else {
      v->outcome = ORDER_SAGA_UNKNOWN; /* cannot tell whether money moved */
    }
    return;
  }
  if (up_status != PROTO_EREMOTE) {
    transport(v, attempts, up_status, 1, "PAYMENT_SERVICE_UNAVAILABLE",
              "Payment service unavailable", ORDER_REASON_PAYMENT_UNAVAILABLE);
    return;
  }
  if (is_4xx(r))
    refused(v, r, "PAYMENT_REJECTED", "payment_rejected");
  else
    v->outcome = ORDER_SAGA_UNKNOWN;
}

static void judge_commit(order_saga_verdict_t *v, int up_status, const remote_t *r) {
  if (up_status == PROTO_OK) {
    v->outcome = ORDER_SAGA_OK;
    return;
  }
  if (up_status != PROTO_EREMOTE) {
    v->outcome = ORDER_SAGA_UNKNOWN;
    return;
  }
  /* An inventory without commit (a NestJS one: the protocol's catalogue has
   * only reserve and release) treats reserved units as sold already. */
  if (is_no_handler(r)) {
    v->outcome = ORDER_SAGA_OK;
    return;
  }
  /* The reservation is gone (expired, or released): the units were not
   * sold, so the charge must go back. */
  if (r->status == 404 || (r->status == 409 && r->code &&
                           strcmp(r->code, "RESERVATION_RELEASED") == 0)) {
    set_reason(v, "reservation_expired", NULL);
    failed(v, 409, "RESERVATION_EXPIRED",
           "The stock reservation ran out before the order was confirmed; the payment is "
           "refunded",
           NULL);
    return;
  }
  v->outcome = ORDER_SAGA_UNKNOWN;
}

static void judge_refund(order_saga_verdict_t *v, int up_status, const json_t *response,
                         const remote_t *r) {
  (void)response;
  /* Refunded or voided; or nothing there to refund: a declined payment
   * (409) or none at all (404, from a payment service that cannot void). */
  if (up_status == PROTO_OK ||
      (up_status == PROTO_EREMOTE && (r->status == 404 || r->status == 409)))
    v->outcome = ORDER_SAGA_OK;
  else
    v->outcome = ORDER_SAGA_UNKNOWN;
}

static void judge_release(order_saga_verdict_t *v, int up_status, const remote_t *r) {
  /* A release of nothing is a success (the inventory records it, so a late
   * reserve is refused). RESERVATION_COMMITTED cannot follow from this
   * saga's own steps (commit comes only after the charge, and a failed
   * commit means the reservation is gone); retrying could never succeed, so
   * it counts as done, and the driver logs it loudly. */
  if (up_status == PROTO_OK ||
      (up_status == PROTO_EREMOTE && (r->status == 404 || r->status == 409)))
    v->outcome = ORDER_SAGA_OK;
  else
    v->outcome = ORDER_SAGA_UNKNOWN;
}

void order_saga_judge(int action, int attempts, int up_status, const json_t *response,
                      const json_t *err, order_saga_verdict_t *out) {
  remote_t r;
  memset(out, 0, sizeof(*out));
  out->outcome = ORDER_SAGA_UNKNOWN;
  if (up_status == PROTO_OK && is_error_response(response)) {
    up_status = PROTO_EREMOTE;
    err = response;
    response = NULL;
  }
  remote_of(up_status == PROTO_EREMOTE ? err : NULL, &r);
  switch (action) {
  case ORDER_SAGA_ACT_RESERVE:
    judge_reserve(out, attempts, up_status, response, &r);
    break;
  case ORDER_SAGA_ACT_CHARGE:
    judge_charge(out, attempts, up_status, response, &r);
    break;
  case ORDER_SAGA_ACT_COMMIT:
    judge_commit(out, up_status, &r);
    break;
  case ORDER_SAGA_ACT_REFUND:
    judge_refund(out, up_status, response, &r);
    break;
  case ORDER_SAGA_ACT_RELEASE:
    judge_release(out, up_status, &r);
    break;
  default:
    break; /* local actions get no answer to judge */
  }
}

/* --- prices ------------------------------------------------------------------ */

/* The reservation's entry for productId, or NULL. */
static const json_t *reserved_item(const json_t *items, const char *product_id) {
  size_t i;
  const json_t *it;
  json_array_foreach(items, i, it) {
    const char *pid = json_string_value(json_object_get(it, "productId"));
    if (pid && strcmp(pid, product_id) == 0)
      return it;
  }
  return NULL;
}

static int problem(json_t **out, int status, const char *code, const char *message,
                   json_t *details) {
  *out = proto_error_object(status, code, message, details);
  return -1;
}

int order_saga_price(const json_t *order, const json_t *reservation, int64_t *prices,
                     char currency[4], json_t **out, const char **reason) {
  const json_t *items = json_object_get(order, "items");
  const json_t *held = json_object_get(reservation, "items");
  const char *order_currency = json_string_value(json_object_get(order, "currency"));
  json_t *changed = NULL;
  size_t i;
  const json_t *it;
  *out = NULL;
  *reason = NULL;
  snprintf(currency, 4, "%s", order_currency ? order_currency : ORDER_CURRENCY_DEFAULT);
  if (!json_is_array(items) || !json_is_array(held)) {
    *reason = "inventory_reply_invalid";
    return problem(out, 502, "INVENTORY_SERVICE_ERROR",
                   "The inventory service's reservation lists no items", NULL);
  }
  json_array_foreach(items, i, it) {
    const char *pid = json_string_value(json_object_get(it, "productId"));
    const json_t *r = pid ? reserved_item(held, pid) : NULL;
    const json_t *price = json_object_get(r, "price");
    const char *cur = json_string_value(json_object_get(r, "currency"));
    if (!json_is_integer(price) || json_integer_value(price) < 0 ||
        json_integer_value(price) > ORDER_PRICE_MAX) {
      json_decref(changed);
      *reason = "inventory_reply_invalid";
      return problem(out, 502, "INVENTORY_SERVICE_ERROR",
                     "The inventory service did not price every item", NULL);
    }
    /* A peer without currencies (a NestJS catalogue) prices in the order's. */
    if (cur && strcmp(cur, currency) != 0) {
      json_decref(changed);
      *reason = "currency_mismatch";
      return problem(out, 409, "CURRENCY_MISMATCH",
                     "An item's catalogue currency differs from the order's", NULL);
    }
    prices[i] = (int64_t)json_integer_value(price);
    const json_t *asked = json_object_get(it, "price");
    if (json_is_integer(asked) && json_integer_value(asked) != json_integer_value(price)) {
      if (!changed && !(changed = json_array())) {
        *reason = ORDER_REASON_PRICE_CHANGED;
        return problem(out, 500, "INTERNAL_ERROR", "Out of memory", NULL);
      }
      json_array_append_new(changed,
                            json_pack("{s:s, s:s, s:s, s:O, s:O}", "field", "items", "productId",
                                      pid, "message", "the catalogue's price differs",
                                      "requested", asked, "price", price));
    }
  }
  if (changed) {
    *reason = ORDER_REASON_PRICE_CHANGED;
    return problem(out, 409, "PRICE_CHANGED",
                   "A price changed: the catalogue's prices are in details; nothing was charged",
                   changed);
  }
  return 0;
}
