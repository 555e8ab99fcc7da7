/* message.c: what each subscribed event becomes: validation of the event
 * data (our shapes and the NestJS tutorial's, PROTOCOL.md section 7), the
 * notification type, title and message, money formatted exactly from minor
 * units (fractional ones too), the eventId derived from content when none
 * was sent, and the notification object. Pure apart from the random id and
 * the clock in ntf_notification_new().
 */
#include "notification.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_REQUIRED "is required"
#define MSG_STRING "must be a string"
#define MSG_OBJECT "must be an object"
#define MSG_EMPTY "must not be empty"
#define MSG_CONTROL "must not contain control characters"
#define MSG_ID_LEN "must be at most " STR(NTF_ID_MAX_BYTES) " bytes"
#define MSG_STATUS_LEN "must be at most " STR(NTF_STATUS_MAX_BYTES) " bytes"
#define MSG_AMOUNT "must be a non-negative number of minor units below 2^53"
#define MSG_CURRENCY "must be a 3-letter ISO 4217 code"

/* Used when a payment_failed or order_failed event gives no reason. */
#define NTF_REASON_UNKNOWN "no reason was given"

static const char *const patterns[NTF_EV_COUNT_] = {
    [NTF_EV_ORDER_CREATED] = "order_created",
    [NTF_EV_ORDER_STATUS_CHANGED] = "order_status_changed",
    [NTF_EV_PAYMENT_COMPLETED] = "payment_completed",
    [NTF_EV_PAYMENT_FAILED] = "payment_failed",
    [NTF_EV_PAYMENT_REFUNDED] = "payment_refunded",
    [NTF_EV_ORDER_COMPLETED] = "order_completed",
    [NTF_EV_ORDER_FAILED] = "order_failed",
};

const char *ntf_event_pattern(ntf_event_kind_t kind) {
  return (unsigned)kind < NTF_EV_COUNT_ ? patterns[kind] : NULL;
}

int ntf_event_kind(const char *pattern) {
  if (!pattern)
    return -1;
  for (int i = 0; i < NTF_EV_COUNT_; i++)
    if (strcmp(patterns[i], pattern) == 0)
      return i;
  return -1;
}

/* --- money -------------------------------------------------------------------- */

/* ISO 4217 currencies whose minor unit is not 1/100. Everything else
 * (including codes we do not know) uses 2 decimals. */
static const char *const exp0[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
                                   "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
                                   "XPF", NULL};
static const char *const exp3[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND", NULL};
static const char *const exp4[] = {"CLF", "UYW", NULL};

static bool in_list(const char *const *list, const char *code) {
  for (; *list; list++)
    if (strcasecmp(*list, code) == 0)
      return true;
  return false;
}

int ntf_currency_exponent(const char *currency) {
  if (!currency)
    return 2;
  if (in_list(exp0, currency))
    return 0;
  if (in_list(exp3, currency))
    return 3;
  if (in_list(exp4, currency))
    return 4;
  return 2;
}

int ntf_format_money(int64_t amount, const char *currency, char *out, size_t size) {
  static const uint64_t pow10[] = {1, 10, 100, 1000, 10000};
  int e = ntf_currency_exponent(currency);
  /* Negate in unsigned arithmetic: -INT64_MIN does not fit an int64_t. */
  uint64_t mag = amount < 0 ? 0u - (uint64_t)amount : (uint64_t)amount;
  uint64_t whole = mag / pow10[e], frac = mag % pow10[e];
  int n;
  if (size == 0)
    return -1;
  if (e == 0)
    n = snprintf(out, size, "%s%" PRIu64, amount < 0 ? "-" : "", whole);
  else
    n = snprintf(out, size, "%s%" PRIu64 ".%0*" PRIu64, amount < 0 ? "-" : "", whole, e, frac);
  if (n < 0 || (size_t)n >= size) {
    out[0] = '\0';
    return -1;
  }
  return n;
}

/* Append n bytes of s at *len in out (size bytes, room kept for the NUL). */
static bool put(char *out, size_t size, size_t *len, const char *s, size_t n) {
  if (n >= size - *len)
    return false;
  memcpy(out + *len, s, n);
  *len += n;
  out[*len] = '\0';
  return true;
}

static bool put_zeros(char *out, size_t size, size_t *len, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!put(out, size, len, "0", 1))
      return false;
  return true;
}

int ntf_format_amount(double value, const char *currency, char *out, size_t size) {
  char sci[40], digits[24];
  size_t nd = 0, len = 0;
  if (size == 0)
    return -1;
  out[0] = '\0';
  if (!isfinite(value) || value < 0)
    return -1;
  if (value == floor(value) && value <= (double)NTF_AMOUNT_MAX)
    return ntf_format_money((int64_t)value, currency, out, size);
  /* The shortest "%.*e" that reads back as the same double: the digits a
   * JavaScript peer printed (JSON.stringify), not the binary expansion.
   * 17 significant digits always read back. */
  for (int prec = 0; prec <= 16; prec++) {
    snprintf(sci, sizeof(sci), "%.*e", prec, value);
    if (strtod(sci, NULL) == value)
      break;
  }
  /* sci is "d[.ddd]e[+-]xx": collect the digits, then the exponent. */
  const char *p = sci;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9' && nd < sizeof(digits) - 1)
      digits[nd++] = *p;
  if (*p != 'e' || nd == 0)
    return -1;
  long exp10 = strtol(p + 1, NULL, 10);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--; /* 1.50e+01 -> 15 */
  digits[nd] = '\0';
  /* Digits before the decimal point once minor units become major ones. */
  long pos = exp10 + 1 - ntf_currency_exponent(currency);
  bool ok;
  if (pos <= -NTF_AMOUNT_ZEROS_MAX) {
    char tail[24];
    snprintf(tail, sizeof(tail), "e%ld", pos - 1);
    ok = put(out, size, &len, digits, 1) &&
         (nd == 1 || (put(out, size, &len, ".", 1) && put(out, size, &len, digits + 1, nd - 1))) &&
         put(out, size, &len, tail, strlen(tail));
  } else if (pos <= 0) {
    ok = put(out, size, &len, "0.", 2) && put_zeros(out, size, &len, (size_t)-pos) &&
         put(out, size, &len, digits, nd);
  } else if ((size_t)pos < nd) {
    ok = put(out, size, &len, digits, (size_t)pos) && put(out, size, &len, ".", 1) &&
         put(out, size, &len, digits + pos, nd - (size_t)pos);
  } else {
    /* Not reached (a fraction of minor units stays a fraction), but exact. */
    ok = put(out, size, &len, digits, nd) && put_zeros(out, size, &len, (size_t)pos - nd);
  }
  if (!ok) {
    out[0] = '\0';
    return -1;
  }
  return (int)len;
}

/* --- derived event ids ------------------------------------------------------------ */

static int hash_chunk(const char *buffer, size_t size, void *ctx) {
  ntf_sha256_update(ctx, buffer, size);
  return 0;
}

int ntf_event_id_derive(const char *pattern, const json_t *data,
                        char out[NTF_EVENT_ID_DERIVED_SIZE]) {
  static const char hex[] = "0123456789abcdef";
  ntf_sha256_t h;
  unsigned char d[NTF_SHA256_BYTES];
  if (!pattern || !data)
    return -1;
  ntf_sha256_init(&h);
  /* The NUL ends the pattern: "ab"+"c..." and "a"+"bc..." hash apart. */
  ntf_sha256_update(&h, pattern, strlen(pattern) + 1);
  /* Streamed into the digest: no copy of the event. Sorted keys make the
   * text independent of the publisher's key order. */
  if (json_dump_callback(data, hash_chunk, &h,
                         JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY) !=
      0)
    return -1;
  ntf_sha256_final(&h, d);
  size_t n = sizeof(NTF_EVENT_ID_DERIVED_PREFIX) - 1;
  memcpy(out, NTF_EVENT_ID_DERIVED_PREFIX, n);
  for (size_t i = 0; i < NTF_EVENT_ID_DERIVED_HEX / 2; i++) {
    out[n++] = hex[d[i] >> 4];
    out[n++] = hex[d[i] & 0xF];
  }
  out[n] = '\0';
  return 0;
}

/* --- field checks -------------------------------------------------------------- */

static bool has_control(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
      return true;
  return false;
}

static int invalid(ntf_invalid_t *why, const char *field, const char *message) {
  why->field = field;
  why->message = message;
  return -1;
}

/* A short identifier-like string: 1..max bytes, no control characters. */
static int short_string(const json_t *data, const char *field, size_t max,
                        const char *len_msg, const char **out, ntf_invalid_t *why) {
  const json_t *v = json_object_get(data, field);
  if (!v || json_is_null(v))
    return invalid(why, field, MSG_REQUIRED);
  if (!json_is_string(v))
    return invalid(why, field, MSG_STRING);
  size_t len = json_string_length(v);
  const char *s = json_string_value(v);
  if (len == 0)
    return invalid(why, field, MSG_EMPTY);
  if (len > max)
    return invalid(why, field, len_msg);
  if (has_control(s, len)) /* also catches an embedded NUL */
    return invalid(why, field, MSG_CONTROL);
  *out = s;
  return 0;
}

static int id_field(const json_t *data, const char *field, const char **out,
                    ntf_invalid_t *why) {
  return short_string(data, field, NTF_ID_MAX_BYTES, MSG_ID_LEN, out, why);
}

/* An amount of minor units: ours are integers, a NestJS peer's are
 * JavaScript numbers that may have a fraction (the tutorial's 10.5). */
typedef struct amount {
  bool fractional;                 /* false: minor is the amount */
  int64_t minor;
  double value;                    /* fractional: the number as sent */
} amount_t;

/* Minor units, 0..2^53-1: a JSON integer, an integral number (JavaScript
 * has one number type, so 3998.0 is 3998), or a fractional number, kept as
 * the double the peer sent (rounding it to an integer would lose money). */
static int amount_field(const json_t *data, const char *field, amount_t *out,
                        ntf_invalid_t *why) {
  const json_t *v = json_object_get(data, field);
  if (!v || json_is_null(v))
    return invalid(why, field, MSG_REQUIRED);
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > NTF_AMOUNT_MAX)
      return invalid(why, field, MSG_AMOUNT);
    *out = (amount_t){false, (int64_t)i, 0};
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d) || d < 0 || d > (double)NTF_AMOUNT_MAX)
      return invalid(why, field, MSG_AMOUNT);
    *out = d == floor(d) ? (amount_t){false, (int64_t)d, 0} : (amount_t){true, 0, d};
    return 0;
  }
  return invalid(why, field, MSG_AMOUNT);
}

/* Three ASCII letters, returned upper-cased into out[4]. Absent or null is
 * "USD", as the HTTP API defaults it: the tutorial's events have no
 * currency at all. */
static int currency_field(const json_t *data, const char *field, char out[4],
                          ntf_invalid_t *why) {
  const json_t *v = json_object_get(data, field);
  if (!v || json_is_null(v)) {
    memcpy(out, NTF_CURRENCY_DEFAULT, 4);
    return 0;
  }
  if (!json_is_string(v) || json_string_length(v) != 3)
    return invalid(why, field, MSG_CURRENCY);
  const char *s = json_string_value(v);
  for (int i = 0; i < 3; i++) {
    if (!isalpha((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)
      return invalid(why, field, MSG_CURRENCY);
    out[i] = (char)toupper((unsigned char)s[i]);
  }
  out[3] = '\0';
  return 0;
}

/* "39.98 USD" into out. */
static int money_text(const json_t *data, const char *amount_key, char *out, size_t size,
                      ntf_invalid_t *why) {
  amount_t amount;
  char cur[4], num[48];
  if (amount_field(data, amount_key, &amount, why) != 0 ||
      currency_field(data, "currency", cur, why) != 0)
    return -1;
  int n = amount.fractional ? ntf_format_amount(amount.value, cur, num, sizeof(num))
                            : ntf_format_money(amount.minor, cur, num, sizeof(num));
  if (n < 0)
    return invalid(why, amount_key, MSG_AMOUNT); /* cannot happen below 2^53 */
  snprintf(out, size, "%s %s", num, cur);
  return 0;
}

/* A free-text reason, cut to NTF_REASON_MAX_BYTES on a character boundary,
 * control characters shown as spaces. An absent, empty or non-string reason
 * is "no reason was given": a failure notice is worth sending anyway. */
static void reason_text(const json_t *data, char *out, size_t size) {
  const json_t *v = json_object_get(data, "reason");
  const char *s = json_string_value(v);
  size_t len = s ? json_string_length(v) : 0;
  if (!s || len == 0) {
    snprintf(out, size, "%s", NTF_REASON_UNKNOWN);
    return;
  }
  size_t max = NTF_REASON_MAX_BYTES < size - 4 ? NTF_REASON_MAX_BYTES : size - 4;
  bool cut = len > max;
  if (cut) {
    len = max;
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
      len--; /* do not split a UTF-8 sequence */
  }
  for (size_t i = 0; i < len; i++)
    out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) ? ' ' : s[i];
  memcpy(out + len, cut ? "..." : "", cut ? 4 : 1);
}

/* --- drafts --------------------------------------------------------------------- */

int ntf_build(ntf_event_kind_t kind, const json_t *data, ntf_draft_t *out, ntf_invalid_t *why) {
  char money[64], reason[NTF_REASON_MAX_BYTES + 4];
  const char *status = NULL;
  memset(out, 0, sizeof(*out));
  if (!json_is_object(data))
    return invalid(why, "data", MSG_OBJECT);
  /* userId first: it decides whether there is anyone to notify at all. */
  if (id_field(data, "userId", &out->user_id, why) != 0 ||
      id_field(data, "orderId", &out->order_id, why) != 0)
    return -1;
  switch (kind) {
  case NTF_EV_ORDER_CREATED:
    if (money_text(data, "totalAmount", money, sizeof(money), why) != 0)
      return -1;
    out->type = "order_confirmation";
    snprintf(out->title, sizeof(out->title), "Order received");
    snprintf(out->message, sizeof(out->message), "Your order %s for %s has been received",
             out->order_id, money);
    return 0;
  case NTF_EV_ORDER_STATUS_CHANGED:
    if (short_string(data, "newStatus", NTF_STATUS_MAX_BYTES, MSG_STATUS_LEN, &status, why) !=
        0)
      return -1;
    out->type = "order_status";
    snprintf(out->title, sizeof(out->title), "Order update");
    snprintf(out->message, sizeof(out->message), "Your order %s is now %s", out->order_id,
             status);
    return 0;
  case NTF_EV_PAYMENT_COMPLETED:
    if (money_text(data, "amount", money, sizeof(money), why) != 0)
      return -1;
    out->type = "payment_receipt";
    snprintf(out->title, sizeof(out->title), "Payment received");
    snprintf(out->message, sizeof(out->message),
             "We received your payment of %s for order %s", money, out->order_id);
    return 0;
  case NTF_EV_PAYMENT_FAILED: {
    ntf_invalid_t ignored;
    reason_text(data, reason, sizeof(reason));
    out->type = "payment_failed";
    snprintf(out->title, sizeof(out->title), "Payment failed");
    /* The amount is optional here: mention it only when it is usable. */
    if (money_text(data, "amount", money, sizeof(money), &ignored) == 0)
      snprintf(out->message, sizeof(out->message),
               "Your payment of %s for order %s failed: %s", money, out->order_id, reason);
    else
      snprintf(out->message, sizeof(out->message), "Your payment for order %s failed: %s",
               out->order_id, reason);
    return 0;
  }
  case NTF_EV_PAYMENT_REFUNDED:
    if (money_text(data, "amount", money, sizeof(money), why) != 0)
      return -1;
    out->type = "refund_receipt";
    snprintf(out->title, sizeof(out->title), "Refund issued");
    snprintf(out->message, sizeof(out->message),
             "A refund of %s for your order %s has been issued", money, out->order_id);
    return 0;
  case NTF_EV_ORDER_COMPLETED:
    if (money_text(data, "totalAmount", money, sizeof(money), why) != 0)
      return -1;
    out->type = "order_completed";
    snprintf(out->title, sizeof(out->title), "Order completed");
    snprintf(out->message, sizeof(out->message), "Your order %s for %s is complete",
             out->order_id, money);
    return 0;
  case NTF_EV_ORDER_FAILED:
    /* As payment_failed: the notice is worth sending without a reason. */
    reason_text(data, reason, sizeof(reason));
    out->type = "order_failed";
    snprintf(out->title, sizeof(out->title), "Order failed");
    snprintf(out->message, sizeof(out->message), "Your order %s could not be completed: %s",
             out->order_id, reason);
    return 0;
  default:
    return invalid(why, "pattern", "is not an event this service handles");
  }
}

json_t *ntf_notification_new(const ntf_draft_t *d, const char *event_id,
                             const char *event_pattern, const json_t *data,
                             const char *request_id, const char *delivery_status) {
  char id[PROTO_ID_MAX], now[PROTO_ISO_TIME_LEN];
  if (proto_random_id(NTF_ID_PREFIX, id, sizeof(id)) != 0)
    return NULL;
  proto_time_iso(now);
  /* "O" takes a new reference: data stays the caller's. */
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:O, s:s?, s:s,"
                   " s:{s:s, s:i}}",
                   "id", id, "userId", d->user_id, "type", d->type, "title", d->title,
                   "message", d->message, "eventId", event_id, "eventPattern", event_pattern,
                   "orderId", d->order_id, "data", (json_t *)data, "requestId", request_id,
                   "createdAt", now, "delivery", "status", delivery_status, "attempts", 0);
}
