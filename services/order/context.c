/* context.c: the order service's part of the service context (svc_t): its
 * state (svc->app), the fields its request log lines carry, and the registry
 * of operations in flight, which tells update_order_status and refund_order
 * that an order is busy and the saga resumer that a saga already runs. The
 * owned ones are indexed by order id (a chained hash that doubles), so a
 * lookup costs the same with ten sagas in flight or ten thousand. Below
 * flow.c, saga_run.c and handlers.c: they use it, it uses none of them.
 */
#include "order.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFLIGHT_BUCKETS_MIN 64

/* "orderStatus": the status the reply shows, when it shows an order. */
static void log_fields(json_t *fields, const svc_result_t *r) {
  const json_t *st = json_is_object(r->response) ? json_object_get(r->response, "status") : NULL;
  if (json_is_string(st))
    json_object_set(fields, "orderStatus", (json_t *)st);
}

void order_svc_setup(svc_t *svc, order_app_t *app) {
  order_saga_settings_t keep = app->saga; /* configure() ran before */
  memset(app, 0, sizeof(*app));
  app->saga = keep;
  svc->app = app;
  svc->log_id_key = "orderId";
  svc->log_fields = log_fields;
}

void order_svc_init(svc_t *svc, uv_loop_t *loop, order_store_t *store, store_group_t *group,
                    order_app_t *app) {
  svc_init(svc, loop, "order", store, group);
  order_svc_setup(svc, app);
}

/* FNV-1a: short keys, no adversary can choose which order ids exist. */
static uint32_t hash_id(const char *id, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h;
}

static void bucket_unlink(order_app_t *app, order_inflight_t *e) {
  if (!app->buckets)
    return;
  order_inflight_t **pp = &app->buckets[e->hash & (app->nbuckets - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
  e->hnext = NULL;
}

/* Double the buckets when the chains would grow past one entry on average,
 * rebuilt from the list of every operation (so an entry that missed the
 * index on ENOMEM gets in again). e, being (re)indexed, is left out. */
static int buckets_grow(order_app_t *app, const order_inflight_t *e) {
  size_t n = app->nbuckets ? app->nbuckets * 2 : INFLIGHT_BUCKETS_MIN;
  order_inflight_t **b = calloc(n, sizeof(*b));
  if (!b)
    return -1;
  for (order_inflight_t *x = app->flows; x; x = x->next) {
    if (!x->owned || x == e)
      continue;
    x->hnext = b[x->hash & (n - 1)];
    b[x->hash & (n - 1)] = x;
  }
  free(app->buckets);
  app->buckets = b;
  app->nbuckets = n;
  return 0;
}

int64_t order_wall_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void order_inflight_add(svc_t *svc, order_inflight_t *e) {
  order_app_t *app = svc->app;
  e->order_id[0] = '\0';
  e->id_len = 0;
  e->owned = 0;
  e->kind = ORDER_INFLIGHT_FLOW;
  e->hnext = NULL;
  e->prev = NULL;
  e->next = app->flows;
  if (app->flows)
    app->flows->prev = e;
  app->flows = e;
  app->nflows++;
}

void order_inflight_remove(svc_t *svc, order_inflight_t *e) {
  order_app_t *app = svc->app;
  if (e->owned) {
    bucket_unlink(app, e);
    app->nowned--;
    e->owned = 0;
  }
  if (e->prev)
    e->prev->next = e->next;
  else
    app->flows = e->next;
  if (e->next)
    e->next->prev = e->prev;
  e->prev = e->next = NULL;
  app->nflows--;
}

int order_inflight_own(svc_t *svc, order_inflight_t *e, const char *id) {
  order_app_t *app = svc->app;
  if (e->owned) {
    bucket_unlink(app, e);
    app->nowned--;
  }
  snprintf(e->order_id, sizeof(e->order_id), "%s", id);
  e->id_len = strlen(e->order_id);
  e->hash = hash_id(e->order_id, e->id_len);
  e->owned = 1;
  app->nowned++;
  int rc = 0;
  if (app->nowned > app->nbuckets && buckets_grow(app, e) != 0)
    rc = -1; /* the longer chains still work; only slower */
  if (!app->buckets) {
    e->hnext = NULL;
    return -1; /* found by the scan in order_inflight_find() */
  }
  order_inflight_t **b = &app->buckets[e->hash & (app->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  return rc;
}

order_inflight_t *order_inflight_find(const svc_t *svc, const char *id, size_t id_len) {
  const order_app_t *app = svc->app;
  if (!app->buckets) {
    /* Only when the very first index allocation failed. */
    for (order_inflight_t *e = app->flows; e; e = e->next)
      if (e->owned && e->id_len == id_len && memcmp(e->order_id, id, id_len) == 0)
        return e;
    return NULL;
  }
  uint32_t h = hash_id(id, id_len);
  for (order_inflight_t *e = app->buckets[h & (app->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->id_len == id_len && memcmp(e->order_id, id, id_len) == 0)
      return e;
  return NULL;
}

int order_busy(const svc_t *svc, const char *id, size_t id_len) {
  return order_inflight_find(svc, id, id_len) != NULL;
}

void order_inflight_free(svc_t *svc) {
  order_app_t *app = svc->app;
  if (!app)
    return;
  free(app->buckets);
  app->buckets = NULL;
  app->nbuckets = 0;
}
