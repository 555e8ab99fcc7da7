/* status.c: the order status machine: names of the statuses and the table of
 * legal transitions. Pure. create_order, update_order_status and refund_order
 * all consult the same table, so no path can make a move the table forbids.
 */
#include "order.h"

#include <string.h>

static const char *const names[ORDER_STATUS_COUNT_] = {
    [ORDER_PENDING] = "pending",     [ORDER_CONFIRMED] = "confirmed",
    [ORDER_SHIPPED] = "shipped",     [ORDER_DELIVERED] = "delivered",
    [ORDER_CANCELLED] = "cancelled",
};

/* allowed[from][to]. pending waits for the payment; a confirmed order can
 * still be cancelled (refund) until it ships; delivered and cancelled are
 * final. A status never moves to itself. */
static const unsigned char allowed[ORDER_STATUS_COUNT_][ORDER_STATUS_COUNT_] = {
    [ORDER_PENDING] = {[ORDER_CONFIRMED] = 1, [ORDER_CANCELLED] = 1},
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

int order_transition_allowed(int from, int to) {
  if (from < 0 || from >= ORDER_STATUS_COUNT_ || to < 0 || to >= ORDER_STATUS_COUNT_)
    return 0;
  return allowed[from][to];
}
