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

#define MSG_REQUIRED "is required"
#define MSG_STRING "must be a string"
#define MSG_NOT_ALLOWED "is not allowed"
#define MSG_EMPTY "must not be empty"
#define MSG_CONTROL "must not contain control characters"
#define MSG_ID_LEN "must be at most " STR(PAYMENT_ID_MAX_BYTES) " bytes"
#define MSG_OBJECT "must be an object"
#define MSG_AMOUNT "must be an integer number of minor units from 0 to " \
                   STR(PAYMENT_AMOUNT_MAX)
#define MSG_CURRENCY "must be a 3-letter uppercase currency code (ISO 4217)"
#define MSG_METHOD "must be one of " PAYMENT_METHODS_TEXT

/* --- error list ------------------------------------------------------------- */

static void verr_add(payment_verrs_t *errs, const char *field, size_t field_len,
                     const char *message) {
  if (errs->n >= PAYMENT_VERR_MAX)
    return; /* enough to act on; the rest would only bloat the reply */
  errs->e[errs->n++] = (payment_verr_t){field, field_len, message};
}

static void verr_add_static(payment_verrs_t *errs, const char *field, const char *message) {
  verr_add(errs, field, strlen(field), message);
}

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

/* --- field helpers ------------------------------------------------------------ */

/* Record "is not allowed" for every key of obj not in allowed (NULL-ended). */
static void reject_unknown(const json_t *obj, const char *const *allowed,
                           payment_verrs_t *errs) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (const char *const *a = allowed; *a; a++)
      known = known || strcmp(key, *a) == 0;
    if (known)
      continue;
    /* Echo at most PAYMENT_VERR_FIELD_MAX_BYTES of a hostile key, cut on a
     * character boundary so the reply stays valid UTF-8. */
    size_t klen = strlen(key);
    if (klen > PAYMENT_VERR_FIELD_MAX_BYTES) {
      klen = PAYMENT_VERR_FIELD_MAX_BYTES;
      while (klen > 0 && ((unsigned char)key[klen] & 0xC0) == 0x80)
        klen--;
    }
    verr_add(errs, key, klen, MSG_NOT_ALLOWED);
  }
}

/* A required string field: returns it (and its length) or NULL with an error
 * recorded. */
static const char *req_string(const json_t *obj, const char *field, size_t *len,
                              payment_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    verr_add_static(errs, field, MSG_REQUIRED);
    return NULL;
  }
  if (!json_is_string(v)) {
    verr_add_static(errs, field, MSG_STRING);
    return NULL;
  }
  *len = json_string_length(v);
  return json_string_value(v);
}

/* An id: 1..PAYMENT_ID_MAX_BYTES bytes, no control characters (an embedded
 * NUL from "\u0000" included). */
static bool check_id(const json_t *obj, const char *field, const char **id, size_t *len,
                     payment_verrs_t *errs) {
  const char *s = req_string(obj, field, len, errs);
  if (!s)
    return false;
  const char *why = NULL;
  if (*len == 0)
    why = MSG_EMPTY;
  else if (*len > PAYMENT_ID_MAX_BYTES)
    why = MSG_ID_LEN;
  for (size_t i = 0; !why && i < *len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
      why = MSG_CONTROL;
  if (why) {
    verr_add_static(errs, field, why);
    return false;
  }
  *id = s;
  return true;
}

static bool begin(const json_t *data, payment_verrs_t *errs) {
  errs->n = 0;
  if (!json_is_object(data)) {
    verr_add_static(errs, "data", MSG_OBJECT);
    return false;
  }
  return true;
}

/* --- validators ------------------------------------------------------------- */

int payment_validate_process(const json_t *data, payment_process_input_t *out,
                             payment_verrs_t *errs) {
  static const char *const allowed[] = {"orderId", "userId", "amount", "currency",
                                        "paymentMethod", NULL};
  payment_process_input_t in;
  const char *why;
  memset(&in, 0, sizeof(in));
  if (!begin(data, errs))
    return -1;
  check_id(data, "orderId", &in.order_id, &in.order_id_len, errs);
  check_id(data, "userId", &in.user_id, &in.user_id_len, errs);

  const json_t *amount = json_object_get(data, "amount");
  if (!amount || json_is_null(amount))
    verr_add_static(errs, "amount", MSG_REQUIRED);
  else if ((why = payment_validate_amount(amount, &in.amount)) != NULL)
    verr_add_static(errs, "amount", why);

  /* currency is optional (absent or null: the default). */
  const json_t *cur = json_object_get(data, "currency");
  if (!cur || json_is_null(cur)) {
    memcpy(in.currency, PAYMENT_CURRENCY_DEFAULT, sizeof(in.currency));
  } else if (!json_is_string(cur)) {
    verr_add_static(errs, "currency", MSG_STRING);
  } else if ((why = payment_validate_currency(json_string_value(cur),
                                              json_string_length(cur))) != NULL) {
    verr_add_static(errs, "currency", why);
  } else {
    memcpy(in.currency, json_string_value(cur), PAYMENT_CURRENCY_LEN);
    in.currency[PAYMENT_CURRENCY_LEN] = '\0';
  }

  size_t mlen = 0;
  const char *method = req_string(data, "paymentMethod", &mlen, errs);
  if (method && !payment_method_known(method, mlen))
    verr_add_static(errs, "paymentMethod", MSG_METHOD);
  else if (method) {
    in.method = method;
    in.method_len = mlen;
  }
  reject_unknown(data, allowed, errs);
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
  if (!begin(data, errs))
    return -1;
  check_id(data, field, &v, &len, errs);
  reject_unknown(data, allowed, errs);
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
