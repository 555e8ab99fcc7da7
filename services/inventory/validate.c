/* validate.c: turns the data of inventory requests into typed inputs, or into
 * a list of field errors ("items[2].quantity must be ..."). Pure: no I/O, no
 * allocation, no clock. Strings in the results borrow from the validated JSON.
 */
#include "inventory.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define MSG_ID_LEN "must be at most " STR(INVENTORY_ID_MAX_BYTES) " bytes"
#define MSG_NAME_LEN "must be at most " STR(INVENTORY_NAME_MAX_BYTES) " bytes"
#define MSG_PRICE "must be an integer number of minor units from 0 to " \
                  STR(INVENTORY_PRICE_MAX)
#define MSG_STOCK "must be an integer from 0 to " STR(INVENTORY_STOCK_MAX)
#define MSG_RESTOCK "must be an integer from 1 to " STR(INVENTORY_STOCK_MAX)
#define MSG_QUANTITY "must be an integer from 1 to " STR(INVENTORY_QUANTITY_MAX)
#define MSG_QUANTITY_SUM "add up to more than " STR(INVENTORY_QUANTITY_MAX) \
                         " units of one product"
#define MSG_ITEMS "must be an array of 1 to " STR(INVENTORY_ITEMS_MAX) " items"
#define MSG_CURRENCY "must be a three-letter uppercase currency code (ISO 4217)"
#define MSG_PAGE "must be an integer from 1 to " STR(INVENTORY_PAGE_MAX)
#define MSG_LIMIT "must be a positive integer (values above " STR(INVENTORY_LIMIT_MAX) \
                  " are capped)"

/* --- helpers ------------------------------------------------------------------ */

/* A product name: ASCII spaces trimmed, then 1..INVENTORY_NAME_MAX_BYTES with
 * no control characters (C0, DEL, C1: jansson hands us valid UTF-8, in which
 * C1 is 0xC2 0x80..0x9F). */
static const char *check_name(const char *s, size_t len, size_t *start, size_t *out_len) {
  size_t a = 0, b = len;
  while (a < b && s[a] == ' ')
    a++;
  while (b > a && s[b - 1] == ' ')
    b--;
  if (a == b)
    return VALID_MSG_EMPTY;
  if (b - a > INVENTORY_NAME_MAX_BYTES)
    return MSG_NAME_LEN;
  for (size_t i = a; i < b; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F ||
        (c == 0xC2 && i + 1 < b && (unsigned char)s[i + 1] >= 0x80 &&
         (unsigned char)s[i + 1] <= 0x9F))
      return VALID_MSG_CONTROL;
  }
  *start = a;
  *out_len = b - a;
  return NULL;
}

static int item_cmp(const inventory_item_t *x, const inventory_item_t *y) {
  size_t n = x->product_id_len < y->product_id_len ? x->product_id_len : y->product_id_len;
  int c = memcmp(x->product_id, y->product_id, n);
  if (c != 0)
    return c;
  return x->product_id_len < y->product_id_len ? -1 : x->product_id_len > y->product_id_len;
}

/* Insert it into the sorted set out->items, summing a repeated product.
 * False when the sum passes INVENTORY_QUANTITY_MAX. */
static bool set_add(inventory_reserve_input_t *out, const inventory_item_t *it) {
  size_t i = 0;
  while (i < out->n_items && item_cmp(&out->items[i], it) < 0)
    i++;
  if (i < out->n_items && item_cmp(&out->items[i], it) == 0) {
    out->items[i].quantity += it->quantity; /* both <= 10^4: no overflow */
    return out->items[i].quantity <= INVENTORY_QUANTITY_MAX;
  }
  memmove(&out->items[i + 1], &out->items[i], (out->n_items - i) * sizeof(out->items[0]));
  out->items[i] = *it;
  out->n_items++;
  return true;
}

/* One item, its errors recorded as "items[i].<field>". */
static bool validate_item(const json_t *item, size_t index, inventory_item_t *out,
                          inventory_verrs_t *errs) {
  static const char *const allowed[] = {"productId", "quantity", "price", NULL};
  char prefix[32];
  inventory_verrs_t mine;
  snprintf(prefix, sizeof(prefix), "items[%zu]", index);
  if (!json_is_object(item)) {
    valid_verr_add_prefixed(errs, prefix, "", 0, VALID_MSG_OBJECT);
    return false;
  }
  /* Validate with the flat helpers, then file the errors under the prefix. */
  valid_begin(item, &mine);
  valid_check_id(item, "productId", INVENTORY_ID_MAX_BYTES, MSG_ID_LEN, &out->product_id,
                 &out->product_id_len, &mine);
  valid_req_int(item, "quantity", 1, INVENTORY_QUANTITY_MAX, MSG_QUANTITY, &out->quantity,
                &mine);
  /* "price" is accepted and ignored: the reply carries the inventory's. */
  valid_reject_unknown(item, allowed, &mine);
  snprintf(prefix, sizeof(prefix), "items[%zu].", index);
  valid_verrs_nest(errs, prefix, &mine);
  return mine.n == 0;
}

/* --- validators ------------------------------------------------------------- */

int inventory_validate_product(const json_t *data, inventory_product_input_t *out,
                               inventory_verrs_t *errs) {
  static const char *const allowed[] = {"id", "name", "price", "currency", "stock", NULL};
  size_t nlen = 0, nstart = 0, ntrim = 0;
  const char *why;
  if (!valid_begin(data, errs))
    return -1;
  *out = (inventory_product_input_t){.currency = INVENTORY_CURRENCY_DEFAULT};
  const json_t *id = json_object_get(data, "id");
  if (id && !json_is_null(id))
    valid_check_id(data, "id", INVENTORY_ID_MAX_BYTES, MSG_ID_LEN, &out->id, &out->id_len,
                   errs);
  const char *name = valid_req_string(data, "name", &nlen, errs);
  if (name && (why = check_name(name, nlen, &nstart, &ntrim)) != NULL)
    valid_verr_add_static(errs, "name", why);
  valid_req_int(data, "price", 0, INVENTORY_PRICE_MAX, MSG_PRICE, &out->price, errs);
  valid_opt_currency(data, "currency", MSG_CURRENCY, out->currency, errs);
  valid_opt_int(data, "stock", 0, 0, INVENTORY_STOCK_MAX, MSG_STOCK, &out->stock, errs);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  out->name = name + nstart;
  out->name_len = ntrim;
  return 0;
}

static int validate_one_id(const json_t *data, const char *field, inventory_id_input_t *out,
                           inventory_verrs_t *errs) {
  const char *const allowed[] = {field, NULL};
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, field, INVENTORY_ID_MAX_BYTES, MSG_ID_LEN, &out->id, &out->id_len, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int inventory_validate_id(const json_t *data, inventory_id_input_t *out,
                          inventory_verrs_t *errs) {
  return validate_one_id(data, "id", out, errs);
}

int inventory_validate_order_id(const json_t *data, inventory_id_input_t *out,
                                inventory_verrs_t *errs) {
  return validate_one_id(data, "orderId", out, errs);
}

int inventory_validate_list(const json_t *data, inventory_list_input_t *out,
                            inventory_verrs_t *errs) {
  static const char *const allowed[] = {"page", "limit", NULL};
  int64_t page = INVENTORY_PAGE_DEFAULT, limit = INVENTORY_LIMIT_DEFAULT;
  if (json_is_null(data)) {
    errs->n = 0; /* no query at all: every field has a default */
    *out = (inventory_list_input_t){page, limit};
    return 0;
  }
  if (!valid_begin(data, errs))
    return -1;
  valid_page_limit(data, INVENTORY_PAGE_MAX, MSG_PAGE, INVENTORY_LIMIT_MAX, MSG_LIMIT, &page,
                   &limit, errs);
  valid_reject_unknown(data, allowed, errs);
  if (errs->n > 0)
    return -1;
  *out = (inventory_list_input_t){page, limit};
  return 0;
}

int inventory_validate_restock(const json_t *data, inventory_restock_input_t *out,
                               inventory_verrs_t *errs) {
  static const char *const allowed[] = {"id", "quantity", NULL};
  if (!valid_begin(data, errs))
    return -1;
  valid_check_id(data, "id", INVENTORY_ID_MAX_BYTES, MSG_ID_LEN, &out->id, &out->id_len, errs);
  valid_req_int(data, "quantity", 1, INVENTORY_STOCK_MAX, MSG_RESTOCK, &out->quantity, errs);
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}

int inventory_validate_reserve(const json_t *data, inventory_reserve_input_t *out,
                               inventory_verrs_t *errs) {
  static const char *const allowed[] = {"orderId", "items", NULL};
  if (!valid_begin(data, errs))
    return -1;
  out->n_items = 0;
  valid_check_id(data, "orderId", INVENTORY_ID_MAX_BYTES, MSG_ID_LEN, &out->order_id,
                 &out->order_id_len, errs);
  const json_t *items = json_object_get(data, "items");
  if (!items || json_is_null(items)) {
    valid_verr_add_static(errs, "items", VALID_MSG_REQUIRED);
  } else if (!json_is_array(items) || json_array_size(items) < 1 ||
             json_array_size(items) > INVENTORY_ITEMS_MAX) {
    valid_verr_add_static(errs, "items", MSG_ITEMS);
  } else {
    bool all_ok = true, sum_ok = true;
    for (size_t i = 0; i < json_array_size(items); i++) {
      inventory_item_t it;
      if (!validate_item(json_array_get(items, i), i, &it, errs))
        all_ok = false;
      else if (all_ok && !set_add(out, &it))
        sum_ok = false;
    }
    if (all_ok && !sum_ok)
      valid_verr_add_static(errs, "items", MSG_QUANTITY_SUM);
  }
  valid_reject_unknown(data, allowed, errs);
  return errs->n > 0 ? -1 : 0;
}
