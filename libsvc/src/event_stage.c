/* event_stage.c: svc_event_stage(), an event caused by writes that are not
 * a request's result (a saga's transitions, a timer's work). With an outbox
 * it joins the turn's transaction like svc_answer()'s events; without one it
 * is published after the COMMIT, and dropped when the COMMIT fails. */
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "svc/answer.h"
#include "svc/outbox.h"

/* An event waiting for the COMMIT (no outbox). */
typedef struct staged {
  svc_t *svc;
  json_t *data;
  char *pattern;
  char *request_id;                /* NULL: none */
} staged_t;

static void staged_free(staged_t *e) {
  json_decref(e->data);
  free(e->pattern);
  free(e->request_id);
  free(e);
}

static void on_committed_publish(int status, void *arg) {
  staged_t *e = arg;
  if (status == 0) {
    svc_publish(e->svc, e->pattern, e->data, e->request_id, NULL);
    e->data = NULL; /* stolen */
  }
  staged_free(e);
}

static void on_committed_kick(int status, void *arg) {
  svc_t *svc = arg;
  if (status == 0)
    svc_outbox_relay_kick(svc->relay);
}

int svc_event_stage(svc_t *svc, const char *pattern, json_t *data, const char *request_id) {
  if (!data) {
    proto_log(PROTO_LOG_ERROR, request_id, "event_lost", "%s: out of memory building it",
              pattern);
    return -1;
  }
  if (svc->outbox) {
    int rc = svc_write_begin(svc) == STORE_OK
                 ? store_outbox_insert(svc->outbox, pattern, data, request_id, NULL)
                 : STORE_ERROR;
    json_decref(data);
    if (rc != STORE_OK)
      return -1; /* logged by the outbox; the caller undoes its writes */
    /* One kick per commit would do; a kick of an idle relay is cheap. */
    if (svc_after_commit(svc, on_committed_kick, svc) != 0)
      svc_outbox_relay_kick(svc->relay); /* it reads only committed rows */
    return 0;
  }
  staged_t *e = calloc(1, sizeof(*e));
  if (!e || !(e->pattern = strdup(pattern)) ||
      (request_id && !(e->request_id = strdup(request_id)))) {
    if (e)
      staged_free(e);
    json_decref(data);
    proto_log(PROTO_LOG_ERROR, request_id, "event_lost", "%s: out of memory", pattern);
    return -1;
  }
  e->svc = svc;
  e->data = data;
  if (svc_after_commit(svc, on_committed_publish, e) != 0) {
    staged_free(e);
    proto_log(PROTO_LOG_ERROR, request_id, "event_lost", "%s: cannot defer until commit",
              pattern);
    return -1;
  }
  return 0;
}
