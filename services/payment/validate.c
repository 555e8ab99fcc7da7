/* validate.c: turns the data of payment requests into typed inputs, or into a
 * list of field errors. Pure: no I/O, no allocation, no clock. Strings in the
 * results borrow from the validated JSON.
 */
#include "payment.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_ID_LEN "must be at most " STR(PAYMENT_ID_MAX_BYTES) " bytes"
#define MSG_AMOUNT "must be an integer number of minor units from 0 to " \
                   STR(PAYMENT_AMOUNT_MAX)
#define MSG_CURRENCY "must be a 3-letter uppercase currency code (ISO 4217)"
#define MSG_METHOD "must be one of " PAYMENT_METHODS_TEXT
#define MSG_BOOLEAN "must be a boolean"

/* --- building blocks -------------------------------------------------------- */

const char *payment_validate_currency(const char *s, size_t len) {
  if (len != PAYMENT_CURRENCY_LEN)
    return MSG_CURRENCY;
  for (size_t i = 0; i < len; i++)
    if (s[i] < 'A' || s[i] > 'Z')
      return MSG_CURRENCY;
  return NULL;
}

const char *payment_validate_amount(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > PAYMENT_AMOUNT_MAX)
      return MSG_AMOUNT;
    *out = (int64_t)n;
    return NULL;
  }
  if (json_is_real(v)) {
    /* JavaScript has one number type: a peer may send 1999.0 for 1999. Every
     * integer up to PAYMENT_AMOUNT_MAX (< 2^53) is exact in a double. */
    double d = json_real_value(v);
    if (!isfinite(d) || d != floor(d) || d < 0 || d > (double)PAYMENT_AMOUNT_MAX)
      return MSG_AMOUNT;
    *out = (int64_t)d;
    return NULL;
  }
  /* Strings ("19.99") are refused: money crosses the wire as minor units. */
  return MSG_AMOUNT;
}

/* --- validators ------------------------------------------------------------- */

int payment_validate_process(const json_t *data, payment_process_input_t *out,
                             payment_verrs_t *errs) {
  static const char *const allowed[] = {"orderId", "userId", "amount", "currency",
                                        "paymentMethod", NULL};
  payment_process_input_t in;
  const char *why;
  memset(&in, 0, sizeof(in));
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, "orderId", PAYMENT_ID_MAX_BYTES, MSG_ID_LEN, &in.order_id,
                 &in.order_id_len, errs);
  valid_check_id(data, "userId", PAYMENT_ID_MAX_BYTES, MSG_ID_LEN, &in.user_id,
                 &in.user_id_len, errs);

  const json_t *amount = json_object_get(data, "amount");
  if (!amount || json_is_null(amount))
    valid_verr_add_static(errs, "amount", VALID_MSG_REQUIRED);
  else if ((why = payment_validate_amount(amount, &in.amount)) != NULL)
    valid_verr_add_static(errs, "amount", why);

  /* currency is optional (absent or null: the default). */
  const json_t *cur = json_object_get(data, "currency");
  if (!cur || json_is_null(cur)) {
    memcpy(in.currency, PAYMENT_CURRENCY_DEFAULT, sizeof(in.currency));
  } else if (!json_is_string(cur)) {
    valid_verr_add_static(errs, "currency", VALID_MSG_STRING);
  } else if ((why = payment_validate_currency(json_string_value(cur),
                                              json_string_length(cur))) != NULL) {
    valid_verr_add_static(errs, "currency", why);
  } else {
    memcpy(in.currency, json_string_value(cur), PAYMENT_CURRENCY_LEN);
    in.currency[PAYMENT_CURRENCY_LEN] = '\0';
  }

  size_t mlen = 0;
  const char *method = valid_req_string(data, "paymentMethod", &mlen, errs);
  if (method && !payment_method_known(method, mlen))
    valid_verr_add_static(errs, "paymentMethod", MSG_METHOD);
  else if (method) {
    in.method = method;
    in.method_len = mlen;
  }
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = in;
  return 0;
}

static int validate_key(const json_t *data, const char *field, payment_key_input_t *out,
                        payment_verrs_t *errs) {
  const char *const allowed[] = {field, NULL};
  const char *v = NULL;
  size_t len = 0;
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, field, PAYMENT_ID_MAX_BYTES, MSG_ID_LEN, &v, &len, errs);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = (payment_key_input_t){v, len};
  return 0;
}

int payment_validate_get(const json_t *data, payment_key_input_t *out, payment_verrs_t *errs) {
  return validate_key(data, "id", out, errs);
}

int payment_validate_order_key(const json_t *data, payment_key_input_t *out,
                               payment_verrs_t *errs) {
  return validate_key(data, "orderId", out, errs);
}

int payment_validate_refund(const json_t *data, payment_refund_input_t *out,
                            payment_verrs_t *errs) {
  static const char *const allowed[] = {"orderId", "voidIfMissing", NULL};
  payment_refund_input_t in = {NULL, 0, 0};
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, "orderId", PAYMENT_ID_MAX_BYTES, MSG_ID_LEN, &in.order_id,
                 &in.order_id_len, errs);
  /* A boolean only: "true" or 1 from a confused caller must not void an
   * order by accident. null is absent, as for currency. */
  const json_t *v = json_object_get(data, "voidIfMissing");
  if (v && !json_is_null(v)) {
    if (json_is_boolean(v))
      in.void_if_missing = json_is_true(v);
    else
      valid_verr_add_static(errs, "voidIfMissing", MSG_BOOLEAN);
  }
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = in;
  return 0;
}
