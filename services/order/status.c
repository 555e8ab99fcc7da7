/* status.c: the order status machine: names of the statuses, the table of
 * moves the service itself may make (its flows and update_order_status), and
 * the narrower set of statuses a client may ask update_order_status for.
 * Pure.
 */
#include "order.h"

#include <string.h>

static const char *const names[ORDER_STATUS_COUNT_] = {
    [ORDER_PENDING] = "pending",     [ORDER_CONFIRMED] = "confirmed",
    [ORDER_SHIPPED] = "shipped",     [ORDER_DELIVERED] = "delivered",
    [ORDER_CANCELLED] = "cancelled", [ORDER_COMPENSATING] = "compensating",
};

/* allowed[from][to]: what the service may do. pending is a saga in progress
 * (create_order confirms it, or cancels it, through compensating when a
 * step that happened must be undone); a confirmed order can still be
 * cancelled (refund) until it ships; delivered and cancelled are final. A
 * status never moves to itself. What a client may ask for is narrower:
 * order_status_requestable() below. */
static const unsigned char allowed[ORDER_STATUS_COUNT_][ORDER_STATUS_COUNT_] = {
    [ORDER_PENDING] = {[ORDER_CONFIRMED] = 1, [ORDER_CANCELLED] = 1, [ORDER_COMPENSATING] = 1},
    /* A failed saga undoing its steps (refund, release): it ends cancelled. */
    [ORDER_COMPENSATING] = {[ORDER_CANCELLED] = 1},
    [ORDER_CONFIRMED] = {[ORDER_SHIPPED] = 1, [ORDER_CANCELLED] = 1},
    [ORDER_SHIPPED] = {[ORDER_DELIVERED] = 1},
};

const char *order_status_name(int status) {
  return status >= 0 && status < ORDER_STATUS_COUNT_ ? names[status] : NULL;
}

int order_status_parse(const char *s, size_t len) {
  for (int i = 0; i < ORDER_STATUS_COUNT_; i++)
    if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
      return i;
  return -1;
}

/* What a client may ask update_order_status for: the fulfilment moves and a
 * cancel. confirmed means "paid": only create_order, on the payment's
 * answer, may set it (a client that could would confirm an unpaid order);
 * pending is where a new order starts, never a place to go back to. */
static const unsigned char requestable[ORDER_STATUS_COUNT_] = {
    [ORDER_SHIPPED] = 1,
    [ORDER_DELIVERED] = 1,
    [ORDER_CANCELLED] = 1,
};

int order_status_requestable(int to) {
  return to >= 0 && to < ORDER_STATUS_COUNT_ ? requestable[to] : 0;
}

int order_transition_allowed(int from, int to) {
  if (from < 0 || from >= ORDER_STATUS_COUNT_ || to < 0 || to >= ORDER_STATUS_COUNT_)
    return 0;
  return allowed[from][to];
}
