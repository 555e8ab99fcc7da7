/* sweeper.c: the inventory's own settings and the reservation sweeper. A
 * reservation that nobody confirmed or released within the TTL (a saga that
 * died half-way) is released by a uv timer, in the commit group's
 * transaction like any other write, so a lost saga never holds stock for
 * ever. Expiry itself is the stored time: commit and reserve treat an
 * expired reservation as released even before the sweeper comes by.
 */
#include "inventory.h"

#include "proto/config.h"
#include "proto/log.h"

int inventory_settings_from_env(inventory_app_t *app) {
  uint64_t ttl_s, interval_ms;
  if (proto_config_u64("INVENTORY_RESERVATION_TTL_S", INVENTORY_TTL_S_DEFAULT, 1,
                       INVENTORY_TTL_S_MAX, &ttl_s) != 0 ||
      proto_config_u64("INVENTORY_SWEEP_INTERVAL_MS", INVENTORY_SWEEP_INTERVAL_MS_DEFAULT,
                       INVENTORY_SWEEP_INTERVAL_MS_MIN, INVENTORY_SWEEP_INTERVAL_MS_MAX,
                       &interval_ms) != 0)
    return -1; /* logged as config_invalid */
  app->ttl_ms = (int64_t)ttl_s * 1000;
  app->sweep_interval_ms = interval_ms;
  return 0;
}

int inventory_sweep_once(svc_t *svc) {
  inventory_app_t *app = svc->app;
  int released = 0;
  if (svc_write_begin(svc) != 0)
    return -1;
  int rc = inventory_store_sweep(svc->store, app->now_ms(app->now_arg),
                                 INVENTORY_SWEEP_BATCH_MAX, &released);
  app->swept += (uint64_t)released;
  if (released > 0)
    proto_log(PROTO_LOG_INFO, NULL, "reservations_expired", "%d released (%llu since start)",
              released, (unsigned long long)app->swept);
  return rc == 0 ? released : -1;
}

static void on_sweep(uv_timer_t *t) {
  svc_t *svc = t->data;
  inventory_app_t *app = svc->app;
  int n = inventory_sweep_once(svc);
  /* A full batch means more are due: go again on the next turn (its own
   * transaction) instead of waiting a whole interval. */
  uint64_t next = n == INVENTORY_SWEEP_BATCH_MAX ? 0 : app->sweep_interval_ms;
  int rc = uv_timer_start(&app->sweep_timer, on_sweep, next, 0);
  if (rc != 0)
    proto_log(PROTO_LOG_ERROR, NULL, "sweeper_stopped", "uv_timer_start: %s",
              uv_strerror(rc));
}

int inventory_sweeper_start(svc_t *svc) {
  inventory_app_t *app = svc->app;
  int rc = uv_timer_init(svc->loop, &app->sweep_timer);
  if (rc != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "uv_timer_init: %s", uv_strerror(rc));
    return -1;
  }
  app->sweep_timer_ready = 1;
  app->sweep_timer.data = svc;
  /* The first sweep right away: reservations may have expired while the
   * service was down. */
  if ((rc = uv_timer_start(&app->sweep_timer, on_sweep, 0, 0)) != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "uv_timer_start: %s", uv_strerror(rc));
    return -1;
  }
  return 0;
}

void inventory_sweeper_stop(svc_t *svc) {
  inventory_app_t *app = svc->app;
  if (!app || !app->sweep_timer_ready || uv_is_closing((uv_handle_t *)&app->sweep_timer))
    return;
  uv_timer_stop(&app->sweep_timer); /* cannot fail */
  uv_close((uv_handle_t *)&app->sweep_timer, NULL); /* app outlives the loop */
}
