/* context.c: the order service's part of the service context (svc_t): its
 * state (svc->app), the fields its request log lines carry, and the registry
 * of operations in flight, which tells update_order_status and refund_order
 * that an order is busy. Below flow.c and handlers.c: both use it, it uses
 * neither.
 */
#include "order.h"

#include <stdio.h>
#include <string.h>

/* "orderStatus": the status the reply shows, when it shows an order. */
static void log_fields(json_t *fields, const svc_result_t *r) {
  const json_t *st = json_is_object(r->response) ? json_object_get(r->response, "status") : NULL;
  if (json_is_string(st))
    json_object_set(fields, "orderStatus", (json_t *)st);
}

void order_svc_setup(svc_t *svc, order_app_t *app) {
  memset(app, 0, sizeof(*app));
  svc->app = app;
  svc->log_id_key = "orderId";
  svc->log_fields = log_fields;
}

void order_svc_init(svc_t *svc, uv_loop_t *loop, order_store_t *store, store_group_t *group,
                    order_app_t *app) {
  svc_init(svc, loop, "order", store, group);
  order_svc_setup(svc, app);
}

void order_inflight_add(svc_t *svc, order_inflight_t *e) {
  order_app_t *app = svc->app;
  e->order_id[0] = '\0';
  e->prev = NULL;
  e->next = app->flows;
  if (app->flows)
    app->flows->prev = e;
  app->flows = e;
  app->nflows++;
}

void order_inflight_remove(svc_t *svc, order_inflight_t *e) {
  order_app_t *app = svc->app;
  if (e->prev)
    e->prev->next = e->next;
  else
    app->flows = e->next;
  if (e->next)
    e->next->prev = e->prev;
  e->prev = e->next = NULL;
  app->nflows--;
}

void order_inflight_own(order_inflight_t *e, const char *id) {
  snprintf(e->order_id, sizeof(e->order_id), "%s", id);
}

int order_busy(const svc_t *svc, const char *id, size_t id_len) {
  const order_app_t *app = svc->app;
  for (const order_inflight_t *e = app->flows; e; e = e->next)
    if (strlen(e->order_id) == id_len && memcmp(e->order_id, id, id_len) == 0)
      return 1;
  return 0;
}
