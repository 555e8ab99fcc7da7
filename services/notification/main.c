/* main.c: the notification-service daemon, as libsvc's skeleton runs it
 * (svc/daemon.h), a hybrid on one libuv loop: a Redis subscriber turns order
 * and payment events into stored notifications (optionally POSTed to a
 * webhook), and the RPC server answers get_notifications and health. The
 * store's writes go through the commit group, batched over a few ms.
 */
#include "notification.h"

#include <curl/curl.h>

#include "proto/config.h"
#include "proto/log.h"
#include "svc/daemon.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* How often start-up checks whether every channel is subscribed yet. */
#define NTF_SUBSCRIBED_POLL_MS 10u
#define NTF_COMMIT_DELAY_MS_DEFAULT 10
#define NTF_COMMIT_DELAY_MS_MAX 1000
#define NTF_WEBHOOK_TIMEOUT_MS_MAX 600000

/* The service's own settings, read by configure(). */
typedef struct ntf_config {
  ntf_webhook_opts_t webhook;      /* url NULL: no delivery */
  unsigned commit_delay_ms;        /* NOTIFY_COMMIT_DELAY_MS */
} ntf_config_t;

/* What this daemon owns beyond what svc_main() does. */
typedef struct ntf_daemon {
  ntf_config_t cfg;
  ntf_app_t app;                   /* svc->app */
  proto_events_sub_t *sub;         /* NULL once closed */
  ntf_webhook_t *webhook;          /* NULL once closed, or when not configured */
  uv_timer_t ready_timer;          /* until the first "subscribed" line */
  int ready_timer_open;
  int curl_ready;                  /* curl_global_init() succeeded */
} ntf_daemon_t;

static ntf_daemon_t ntf_daemon;

/* --- settings ------------------------------------------------------------------- */

static int u64_env(const char *name, uint64_t def, uint64_t min, uint64_t max, unsigned *out) {
  uint64_t v;
  if (proto_config_u64(name, def, min, max, &v) != 0)
    return -1;
  *out = (unsigned)v;
  return 0;
}

static int configure(void) {
  ntf_config_t *c = &ntf_daemon.cfg;
  if (proto_config_url("NOTIFY_WEBHOOK_URL", NULL, &c->webhook.url) != 0 ||
      u64_env("NOTIFY_WEBHOOK_MAX_ATTEMPTS", NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT, 1,
              NTF_WEBHOOK_MAX_ATTEMPTS_LIMIT, &c->webhook.max_attempts) != 0 ||
      u64_env("NOTIFY_WEBHOOK_TIMEOUT_MS", NTF_WEBHOOK_TIMEOUT_MS_DEFAULT, 1,
              NTF_WEBHOOK_TIMEOUT_MS_MAX, &c->webhook.timeout_ms) != 0 ||
      u64_env("NOTIFY_WEBHOOK_BACKOFF_MS", NTF_WEBHOOK_BACKOFF_MS_DEFAULT, 1,
              NTF_WEBHOOK_BACKOFF_MAX_MS, &c->webhook.backoff_ms) != 0 ||
      u64_env("NOTIFY_COMMIT_DELAY_MS", NTF_COMMIT_DELAY_MS_DEFAULT, 0, NTF_COMMIT_DELAY_MS_MAX,
              &c->commit_delay_ms) != 0)
    return -1;
  return 0;
}

/* --- the ready line ------------------------------------------------------------------ */

static void on_ready_timer_closed(uv_handle_t *h) {
  ntf_daemon_t *d = h->data;
  d->ready_timer_open = 0;
}

static void close_ready_timer(ntf_daemon_t *d) {
  if (d->ready_timer_open && !uv_is_closing((uv_handle_t *)&d->ready_timer))
    uv_close((uv_handle_t *)&d->ready_timer, on_ready_timer_closed);
}

/* Log {"event":"subscribed"} once, when every channel is first confirmed:
 * from then on published events reach this daemon (supervisors and tests
 * may wait for the line; health shows redis.subscribed at any time). */
static void on_ready_poll(uv_timer_t *t) {
  ntf_daemon_t *d = t->data;
  if (!d->sub || !proto_events_sub_ready(d->sub))
    return;
  proto_log_fields(PROTO_LOG_INFO, NULL, "subscribed",
                   json_pack("{s:i}", "channels", (int)NTF_EV_COUNT_));
  close_ready_timer(d);
}

/* --- start and stop ------------------------------------------------------------------ */

static int startup_failed(const char *what) {
  proto_log(PROTO_LOG_ERROR, NULL, "startup_failed", "cannot %s", what);
  return -1;
}

static int start(svc_t *svc, const svc_config_t *cfg, proto_rpc_server_t *srv) {
  ntf_daemon_t *d = &ntf_daemon;
  (void)srv; /* svc_main() registers the handlers once start() returns */
  ntf_svc_setup(svc, &d->app);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return startup_failed("initialise libcurl");
  d->curl_ready = 1;
  /* Nobody waits on a stored notification, so commits are batched over a
   * few milliseconds: far fewer fsyncs under load, same durability on a
   * clean stop (close commits what is open). */
  store_group_set_delay(svc->group, d->cfg.commit_delay_ms);
  if (d->cfg.webhook.url) {
    if (!(d->webhook = ntf_webhook_new(svc->loop, &d->cfg.webhook, ntf_on_delivery_report, svc)))
      return -1; /* logged */
    d->app.webhook = d->webhook;
  }
  /* The subscriber connects in the background and keeps retrying: the
   * service serves what it stored even while Redis is away. */
  if (!(d->sub = proto_events_sub_new(svc->loop, &cfg->redis)))
    return startup_failed("create the Redis subscriber");
  d->app.sub = d->sub;
  if (ntf_events_register(d->sub, svc) != 0)
    return startup_failed("subscribe to events");
  if (ntf_resume_pending(svc) < 0)
    return -1; /* logged by the store */
  if (uv_timer_init(svc->loop, &d->ready_timer) != 0)
    return startup_failed("create the ready timer");
  d->ready_timer_open = 1;
  d->ready_timer.data = d;
  if (uv_timer_start(&d->ready_timer, on_ready_poll, NTF_SUBSCRIBED_POLL_MS,
                     NTF_SUBSCRIBED_POLL_MS) != 0)
    return startup_failed("start the ready timer");
  return 0;
}

static void on_sub_done(void *arg) {
  ntf_daemon_t *d = arg;
  d->sub = NULL;
}

static void on_webhook_done(void *arg) {
  ntf_daemon_t *d = arg;
  d->webhook = NULL;
}

/* The first signal: no new events, and deliveries in flight may finish
 * briefly (whatever is cut short stays pending for the next start), while
 * the server answers what it has. The commit group stays open until the
 * loop has nothing left: the webhook's final reports write through it. */
static void stopping(svc_t *svc) {
  ntf_daemon_t *d = &ntf_daemon;
  (void)svc;
  close_ready_timer(d);
  d->app.sub = NULL;
  if (d->sub)
    proto_events_sub_close(d->sub, on_sub_done, d);
  d->app.webhook = NULL;
  if (d->webhook)
    ntf_webhook_close(d->webhook, NTF_WEBHOOK_SHUTDOWN_MS, on_webhook_done, d);
}

/* The loop has ended (the webhook is closed) and so has the commit group. */
static void finish(svc_t *svc) {
  (void)svc;
  if (ntf_daemon.curl_ready)
    curl_global_cleanup();
  ntf_daemon.curl_ready = 0;
}

/* --- the table ----------------------------------------------------------------------- */

static const char *curl_version_now(void) {
  return curl_version_info(CURLVERSION_NOW)->version;
}

static const svc_lib_t ntf_libs[] = {{"libcurl", curl_version_now}};

static const svc_def_t ntf_def = {
    .name = "notification",
    .about =
        "The notification service. Subscribes over Redis to order_created,\n"
        "order_status_changed, order_completed, order_failed, payment_completed,\n"
        "payment_failed and payment_refunded, stores one notification per event\n"
        "(de-duplicated by metadata.eventId, or by a digest of the content when a\n"
        "publisher sends none) in SQLite\n"
        "at $DATA_DIR/" NTF_DB_FILE ", optionally POSTs each one to a webhook, and serves\n"
        "get_notifications and health over the NestJS TCP transport. Logs are JSON lines\n"
        "on stdout. SIGTERM or SIGINT stops gracefully with exit status 0.\n",
    .port_env = "NOTIFICATION_SERVICE_PORT",
    .port_default = NTF_SERVICE_PORT_DEFAULT,
    .db_file = NTF_DB_FILE,
    .flags = SVC_REDIS, /* a subscriber of its own; it publishes nothing */
    .redis_name = "notification-events",
    .env_usage =
        "  EVENTS_QUEUE_MAX                 publisher queue bound; validated, unused here\n"
        "  NOTIFY_WEBHOOK_URL               http(s) URL to POST each new notification to\n"
        "                                   as JSON (unset: no delivery)\n"
        "  NOTIFY_WEBHOOK_MAX_ATTEMPTS      attempts per notification, 1-" STR(
            NTF_WEBHOOK_MAX_ATTEMPTS_LIMIT) " (default " STR(NTF_WEBHOOK_MAX_ATTEMPTS_DEFAULT) ")\n"
        "  NOTIFY_WEBHOOK_TIMEOUT_MS        per attempt (default " STR(
            NTF_WEBHOOK_TIMEOUT_MS_DEFAULT) ")\n"
        "  NOTIFY_COMMIT_DELAY_MS           batch stored notifications into one commit\n"
        "                                   over this many ms (default " STR(
            NTF_COMMIT_DELAY_MS_DEFAULT) "; 0 = every\n"
        "                                   loop turn)\n"
        "  NOTIFY_WEBHOOK_BACKOFF_MS        wait before the 2nd attempt, doubling after\n"
        "                                   (default " STR(NTF_WEBHOOK_BACKOFF_MS_DEFAULT)
        ", at most " STR(NTF_WEBHOOK_BACKOFF_MAX_MS) ")\n",
    .libs = ntf_libs,
    .n_libs = sizeof(ntf_libs) / sizeof(ntf_libs[0]),
    .store = &ntf_store_schema,
    .configure = configure,
    .start = start,
    .handlers_register = ntf_handlers_register,
    .stopping = stopping,
    .finish = finish,
};

int main(int argc, char **argv) {
  return svc_main(argc, argv, &ntf_def);
}
