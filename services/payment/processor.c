/* processor.c: the card processor behind process_payment. There is no real
 * acquirer: the payment method is a test token with a documented outcome, as
 * card processors' sandboxes document them (Stripe's tok_visa and friends), so
 * every path of the order saga can be driven on purpose.
 */
#include "payment.h"

#include <string.h>

typedef struct test_method {
  const char *token;
  payment_status_t status;
  const char *reason;                    /* NULL on success */
} test_method_t;

static const test_method_t methods[] = {
    {"tok_visa", PAYMENT_SUCCEEDED, NULL},
    {"tok_chargeDeclined", PAYMENT_DECLINED, "card_declined"},
    {"tok_insufficientFunds", PAYMENT_DECLINED, "insufficient_funds"},
};

static const test_method_t *find(const char *method, size_t len) {
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strlen(methods[i].token) == len && memcmp(methods[i].token, method, len) == 0)
      return &methods[i];
  return NULL;
}

int payment_method_known(const char *method, size_t len) {
  return method && find(method, len) != NULL;
}

payment_charge_t payment_processor_charge(const payment_process_input_t *in, void *arg) {
  (void)arg;
  const test_method_t *m = find(in->method, in->method_len);
  if (!m)
    return (payment_charge_t){PAYMENT_DECLINED, "unsupported_method"};
  return (payment_charge_t){m->status, m->reason};
}

const char *payment_status_name(payment_status_t st) {
  switch (st) {
  case PAYMENT_SUCCEEDED:
    return "succeeded";
  case PAYMENT_DECLINED:
    return "declined";
  case PAYMENT_REFUNDED:
    return "refunded";
  }
  return "unknown";
}
