/* service.c: the service context's shared operations: writes joining the
 * turn's transaction, and publishing events. */
#include "svc/service.h"

#include <string.h>

#include "proto/error.h"
#include "proto/log.h"
#include "store/db.h"

static int publish_to_redis(void *arg, const char *pattern, json_t *data,
                            const char *request_id, char event_id_out[PROTO_ID_MAX]) {
  svc_t *svc = arg;
  if (!svc->pub) {
    json_decref(data);
    return PROTO_ECLOSED; /* running without events (tests, tools) */
  }
  return proto_events_publish_ex(svc->pub, pattern, data, NULL, request_id, event_id_out);
}

void svc_init(svc_t *svc, uv_loop_t *loop, const char *name, void *store,
              store_group_t *group) {
  memset(svc, 0, sizeof(*svc));
  svc->loop = loop;
  svc->name = name;
  svc->store = store;
  svc->group = group;
  svc->publish = publish_to_redis;
  svc->publish_arg = svc;
  svc->rpc_timeout_ms = PROTO_RPC_TIMEOUT_MS_DEFAULT;
}

int svc_write_begin(svc_t *svc) {
  if (!svc->group)
    return STORE_OK;
  return store_group_begin_write(svc->group) == 0 ? STORE_OK : STORE_ERROR; /* logged */
}

int svc_publish(svc_t *svc, const char *pattern, json_t *data, const char *request_id,
                char event_id_out[PROTO_ID_MAX]) {
  if (!data) {
    proto_log(PROTO_LOG_ERROR, request_id, "event_publish_failed", "%s: out of memory",
              pattern);
    return PROTO_ENOMEM;
  }
  int rc = svc->publish(svc->publish_arg, pattern, data, request_id, event_id_out);
  /* PROTO_EFULL is logged and counted by the publisher, and a context with
   * no publisher sends no events on purpose. The data is committed either
   * way: an event problem never fails the request. */
  if (rc != 0 && rc != PROTO_EFULL && !(rc == PROTO_ECLOSED && !svc->pub))
    proto_log(PROTO_LOG_ERROR, request_id, "event_publish_failed", "%s: %s", pattern,
              proto_strerror(rc));
  return rc;
}

int svc_upstream_connected(const svc_t *svc, unsigned i) {
  return i < svc->n_upstreams && svc->upstream[i] &&
         proto_rpc_client_connected(svc->upstream[i]);
}
