/* validate.c: turns the data of order requests into typed inputs, or into a
 * list of field errors ("items[2].price must be ..."). Pure: no I/O, no
 * allocation, no clock. Strings in the results borrow from the validated JSON.
 */
#include "order.h"
#include "valid/valid.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_REQUIRED "is required"
#define MSG_STRING "must be a string"
#define MSG_NOT_ALLOWED "is not allowed"
#define MSG_EMPTY "must not be empty"
#define MSG_CONTROL "must not contain control characters"
#define MSG_OBJECT "must be an object"
#define MSG_ID_LEN "must be at most " STR(ORDER_ID_MAX_BYTES) " bytes"
#define MSG_METHOD_LEN "must be at most " STR(ORDER_PAYMENT_METHOD_MAX_BYTES) " bytes"
#define MSG_ITEMS "must be an array of " STR(ORDER_ITEMS_MIN) " to " STR(ORDER_ITEMS_MAX) \
                  " items"
#define MSG_QUANTITY "must be an integer from " STR(ORDER_QUANTITY_MIN) " to " \
                     STR(ORDER_QUANTITY_MAX)
#define MSG_PRICE "must be an integer number of minor units from 0 to " STR(ORDER_PRICE_MAX)
#define MSG_TOTAL "give a total amount above " STR(ORDER_TOTAL_MAX) " minor units"
#define MSG_CURRENCY "must be a three-letter uppercase currency code (ISO 4217)"
#define MSG_STATUS "must be one of pending, confirmed, shipped, delivered, cancelled"
#define MSG_PAGE "must be an integer from 1 to " STR(ORDER_PAGE_MAX)
#define MSG_LIMIT "must be a positive integer (values above " STR(ORDER_LIMIT_MAX) \
                  " are capped)"

/* --- error list ------------------------------------------------------------- */

/* Record prefix + name (name cut to ORDER_VERR_KEY_MAX_BYTES on a UTF-8
 * character boundary, so the reply stays valid UTF-8). */
static void verr_add(order_verrs_t *errs, const char *prefix, const char *name,
                     const char *message) {
  if (errs->n >= ORDER_VERR_MAX)
    return; /* enough to act on; the rest would only bloat the reply */
  size_t nlen = strlen(name);
  if (nlen > ORDER_VERR_KEY_MAX_BYTES) {
    nlen = ORDER_VERR_KEY_MAX_BYTES;
    while (nlen > 0 && ((unsigned char)name[nlen] & 0xC0) == 0x80)
      nlen--;
  }
  order_verr_t *e = &errs->e[errs->n++];
  snprintf(e->field, sizeof(e->field), "%s%.*s", prefix ? prefix : "", (int)nlen, name);
  e->message = message;
}

static bool begin(const json_t *data, order_verrs_t *errs) {
  errs->n = 0;
  if (!json_is_object(data)) {
    verr_add(errs, NULL, "data", MSG_OBJECT);
    return false;
  }
  return true;
}

/* --- field helpers ------------------------------------------------------------ */

/* "is not allowed" for every key of obj not in allowed (NULL-ended). */
static void reject_unknown(const json_t *obj, const char *prefix, const char *const *allowed,
                           order_verrs_t *errs) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (const char *const *a = allowed; *a && !known; a++)
      known = strcmp(key, *a) == 0;
    if (!known)
      verr_add(errs, prefix, key, MSG_NOT_ALLOWED);
  }
}

/* A required string field: the string (and its length) or NULL with an error
 * recorded. */
static const char *req_string(const json_t *obj, const char *prefix, const char *field,
                              size_t *len, order_verrs_t *errs) {
  const json_t *v = json_object_get(obj, field);
  if (!v || json_is_null(v)) {
    verr_add(errs, prefix, field, MSG_REQUIRED);
    return NULL;
  }
  if (!json_is_string(v)) {
    verr_add(errs, prefix, field, MSG_STRING);
    return NULL;
  }
  *len = json_string_length(v);
  return json_string_value(v);
}

/* A non-empty string of at most max bytes with no control characters (C0,
 * DEL; an embedded NUL is C0). */
static const char *req_token(const json_t *obj, const char *prefix, const char *field,
                             size_t max, const char *too_long, size_t *len,
                             order_verrs_t *errs) {
  const char *s = req_string(obj, prefix, field, len, errs);
  if (!s)
    return NULL;
  const char *why = NULL;
  if (*len == 0)
    why = MSG_EMPTY;
  else if (*len > max)
    why = too_long;
  for (size_t i = 0; !why && i < *len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
      why = MSG_CONTROL;
  if (why) {
    verr_add(errs, prefix, field, why);
    return NULL;
  }
  return s;
}

/* A JSON integer, or an integral number (JavaScript has one number type: 2.0
 * is the integer 2), within [min, max]. */
static bool int_in_range(const json_t *v, int64_t min, int64_t max, int64_t *out) {
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
      return false;
    *out = (int64_t)i;
    return true;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max)
      return false;
    *out = (int64_t)d;
    return true;
  }
  return false;
}

int order_total_add(int64_t *acc, int64_t quantity, int64_t price) {
  if (*acc < 0 || quantity < 0 || price < 0)
    return -1;
  /* quantity * price <= ORDER_TOTAL_MAX - *acc, checked by division so the
   * product is only computed when it fits. */
  int64_t room = ORDER_TOTAL_MAX - *acc;
  if (room < 0 || (price != 0 && quantity > room / price))
    return -1;
  *acc += quantity * price;
  return 0;
}

/* --- validators ------------------------------------------------------------- */

static void validate_item(const json_t *item, size_t index, order_item_input_t *out,
                          order_verrs_t *errs) {
  static const char *const allowed[] = {"productId", "quantity", "price", NULL};
  char prefix[32]; /* room for any size_t, though index < ORDER_ITEMS_MAX */
  snprintf(prefix, sizeof(prefix), "items[%zu].", index);
  if (!json_is_object(item)) {
    snprintf(prefix, sizeof(prefix), "items[%zu]", index);
    verr_add(errs, prefix, "", MSG_OBJECT);
    return;
  }
  out->product_id = req_token(item, prefix, "productId", ORDER_ID_MAX_BYTES, MSG_ID_LEN,
                              &out->product_id_len, errs);
  const json_t *q = json_object_get(item, "quantity");
  if (!q || json_is_null(q))
    verr_add(errs, prefix, "quantity", MSG_REQUIRED);
  else if (!int_in_range(q, ORDER_QUANTITY_MIN, ORDER_QUANTITY_MAX, &out->quantity))
    verr_add(errs, prefix, "quantity", MSG_QUANTITY);
  const json_t *p = json_object_get(item, "price");
  if (!p || json_is_null(p))
    verr_add(errs, prefix, "price", MSG_REQUIRED);
  else if (!int_in_range(p, 0, ORDER_PRICE_MAX, &out->price))
    verr_add(errs, prefix, "price", MSG_PRICE);
  reject_unknown(item, prefix, allowed, errs);
}

static bool currency_ok(const char *s, size_t len) {
  if (len != 3)
    return false;
  for (size_t i = 0; i < 3; i++)
    if (s[i] < 'A' || s[i] > 'Z')
      return false;
  return true;
}

int order_validate_create(const json_t *data, order_create_input_t *out,
                          order_verrs_t *errs) {
  static const char *const allowed[] = {"userId", "items", "paymentMethod", "currency", NULL};
  if (!begin(data, errs))
    return -1;
  out->user_id = req_token(data, NULL, "userId", ORDER_ID_MAX_BYTES, MSG_ID_LEN,
                           &out->user_id_len, errs);

  out->n_items = 0;
  out->total = 0;
  const json_t *items = json_object_get(data, "items");
  if (!items || json_is_null(items)) {
    verr_add(errs, NULL, "items", MSG_REQUIRED);
  } else if (!json_is_array(items) || json_array_size(items) < ORDER_ITEMS_MIN ||
             json_array_size(items) > ORDER_ITEMS_MAX) {
    verr_add(errs, NULL, "items", MSG_ITEMS);
  } else {
    size_t before = errs->n;
    out->n_items = json_array_size(items);
    for (size_t i = 0; i < out->n_items; i++)
      validate_item(json_array_get(items, i), i, &out->items[i], errs);
    /* The total only means something when every item is valid. */
    for (size_t i = 0; errs->n == before && i < out->n_items; i++)
      if (order_total_add(&out->total, out->items[i].quantity, out->items[i].price) != 0)
        verr_add(errs, NULL, "items", MSG_TOTAL);
  }

  out->payment_method = req_token(data, NULL, "paymentMethod", ORDER_PAYMENT_METHOD_MAX_BYTES,
                                  MSG_METHOD_LEN, &out->payment_method_len, errs);

  const json_t *cur = json_object_get(data, "currency");
  snprintf(out->currency, sizeof(out->currency), "%s", ORDER_CURRENCY_DEFAULT);
  if (cur && !json_is_null(cur)) {
    if (!json_is_string(cur) || !currency_ok(json_string_value(cur), json_string_length(cur)))
      verr_add(errs, NULL, "currency", MSG_CURRENCY);
    else
      memcpy(out->currency, json_string_value(cur), 4);
  }
  reject_unknown(data, NULL, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_id(const json_t *data, order_id_input_t *out, order_verrs_t *errs) {
  static const char *const allowed[] = {"id", NULL};
  if (!begin(data, errs))
    return -1;
  out->id = req_token(data, NULL, "id", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->id_len, errs);
  reject_unknown(data, NULL, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_list(const json_t *data, order_list_input_t *out, order_verrs_t *errs) {
  static const char *const allowed[] = {"userId", "page", "limit", NULL};
  if (!begin(data, errs))
    return -1;
  out->user_id = req_token(data, NULL, "userId", ORDER_ID_MAX_BYTES, MSG_ID_LEN,
                           &out->user_id_len, errs);
  if (!valid_int_param(data, "page", ORDER_PAGE_DEFAULT, &out->page) || out->page < 1 ||
      out->page > ORDER_PAGE_MAX)
    verr_add(errs, NULL, "page", MSG_PAGE);
  if (!valid_int_param(data, "limit", ORDER_LIMIT_DEFAULT, &out->limit) || out->limit < 1)
    verr_add(errs, NULL, "limit", MSG_LIMIT);
  else if (out->limit > ORDER_LIMIT_MAX)
    out->limit = ORDER_LIMIT_MAX; /* documented: capped, like get_users */
  reject_unknown(data, NULL, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_status(const json_t *data, order_status_input_t *out,
                          order_verrs_t *errs) {
  static const char *const allowed[] = {"id", "status", NULL};
  size_t len = 0;
  if (!begin(data, errs))
    return -1;
  out->id = req_token(data, NULL, "id", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->id_len, errs);
  const char *st = req_string(data, NULL, "status", &len, errs);
  if (st && (out->status = order_status_parse(st, len)) < 0)
    verr_add(errs, NULL, "status", MSG_STATUS);
  reject_unknown(data, NULL, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}
