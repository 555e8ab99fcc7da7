/* validate.c: turns the data of order requests into typed inputs, or into a
 * list of field errors ("items[2].price must be ..."), on libvalid's readers
 * (valid/valid.h); an item's errors are found with the same readers and
 * named by their path (valid_verrs_nest). Pure: no I/O, no allocation, no
 * clock. Strings in the results (and the error list) borrow from the
 * validated JSON.
 */
#include "order.h"
#include "valid/valid.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

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

/* One item, its errors named "items[<index>].<field>" in errs. */
static void validate_item(const json_t *item, size_t index, order_item_input_t *out,
                          valid_verrs_t *errs) {
  static const char *const allowed[] = {"productId", "quantity", "price", NULL};
  char prefix[32]; /* room for any size_t, though index < ORDER_ITEMS_MAX */
  valid_verrs_t item_errs = {.n = 0};
  out->product_id = NULL;
  if (!json_is_object(item)) {
    /* The element itself: "items[2] must be an object". */
    snprintf(prefix, sizeof(prefix), "items[%zu]", index);
    valid_verr_add(&item_errs, "", 0, VALID_MSG_OBJECT);
    valid_verrs_nest(errs, prefix, &item_errs);
    return;
  }
  snprintf(prefix, sizeof(prefix), "items[%zu].", index);
  valid_check_id(item, "productId", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->product_id,
                 &out->product_id_len, &item_errs);
  valid_req_int(item, "quantity", ORDER_QUANTITY_MIN, ORDER_QUANTITY_MAX, MSG_QUANTITY,
                &out->quantity, &item_errs);
  /* Optional: the catalogue prices the order. A client that sends one (a
   * NestJS order carries it) must match the catalogue (409 PRICE_CHANGED). */
  out->price = ORDER_PRICE_UNSET;
  if (json_object_get(item, "price") && !json_is_null(json_object_get(item, "price")))
    valid_req_int(item, "price", 0, ORDER_PRICE_MAX, MSG_PRICE, &out->price, &item_errs);
  valid_reject_unknown(item, allowed, &item_errs);
  valid_verrs_nest(errs, prefix, &item_errs);
}

int order_validate_create(const json_t *data, order_create_input_t *out,
                          valid_verrs_t *errs) {
  static const char *const allowed[] = {"userId", "items", "paymentMethod", "currency", NULL};
  if (!valid_begin(data, errs))
    return -1;
  out->user_id = NULL;
  valid_check_id(data, "userId", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->user_id,
                 &out->user_id_len, errs);

  out->n_items = 0;
  out->total = 0;
  const json_t *items = json_object_get(data, "items");
  if (!items || json_is_null(items)) {
    valid_verr_add_static(errs, "items", VALID_MSG_REQUIRED);
  } else if (!json_is_array(items) || json_array_size(items) < ORDER_ITEMS_MIN ||
             json_array_size(items) > ORDER_ITEMS_MAX) {
    valid_verr_add_static(errs, "items", MSG_ITEMS);
  } else {
    size_t before = errs->n;
    out->n_items = json_array_size(items);
    for (size_t i = 0; i < out->n_items; i++)
      validate_item(json_array_get(items, i), i, &out->items[i], errs);
    /* The total only means something when every item is valid. */
    for (size_t i = 0; errs->n == before && i < out->n_items; i++)
      if (out->items[i].price != ORDER_PRICE_UNSET &&
          order_total_add(&out->total, out->items[i].quantity, out->items[i].price) != 0)
        valid_verr_add_static(errs, "items", MSG_TOTAL);
  }

  out->payment_method = NULL;
  valid_check_id(data, "paymentMethod", ORDER_PAYMENT_METHOD_MAX_BYTES, MSG_METHOD_LEN,
                 &out->payment_method, &out->payment_method_len, errs);

  snprintf(out->currency, sizeof(out->currency), "%s", ORDER_CURRENCY_DEFAULT);
  valid_opt_currency(data, "currency", MSG_CURRENCY, out->currency, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_id(const json_t *data, order_id_input_t *out, valid_verrs_t *errs) {
  static const char *const allowed[] = {"id", NULL};
  if (!valid_begin(data, errs))
    return -1;
  out->id = NULL;
  valid_check_id(data, "id", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->id, &out->id_len, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_list(const json_t *data, order_list_input_t *out, valid_verrs_t *errs) {
  static const char *const allowed[] = {"userId", "page", "limit", NULL};
  if (!valid_begin(data, errs))
    return -1;
  out->user_id = NULL;
  valid_check_id(data, "userId", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->user_id,
                 &out->user_id_len, errs);
  /* limit is capped at ORDER_LIMIT_MAX (documented), like get_users. */
  out->page = ORDER_PAGE_DEFAULT;
  out->limit = ORDER_LIMIT_DEFAULT;
  valid_page_limit(data, ORDER_PAGE_MAX, MSG_PAGE, ORDER_LIMIT_MAX, MSG_LIMIT, &out->page,
                   &out->limit, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int order_validate_status(const json_t *data, order_status_input_t *out,
                          valid_verrs_t *errs) {
  static const char *const allowed[] = {"id", "status", NULL};
  size_t len = 0;
  if (!valid_begin(data, errs))
    return -1;
  out->id = NULL;
  valid_check_id(data, "id", ORDER_ID_MAX_BYTES, MSG_ID_LEN, &out->id, &out->id_len, errs);
  const char *st = valid_req_string(data, "status", &len, errs);
  if (st && (out->status = order_status_parse(st, len)) < 0)
    valid_verr_add_static(errs, "status", MSG_STATUS);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}
