/* answer.c: publish a result's event, log the request line and answer the
 * call, at once or after the commit group's COMMIT. With an outbox the event
 * is written to it in the turn's transaction first, and the relay sends it
 * after the COMMIT. */
#include "svc/answer.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/error.h"
#include "store/db.h"
#include "svc/outbox.h"

void svc_publish_result(svc_t *svc, svc_result_t *r, const char *request_id,
                        svc_published_t *out) {
  *out = (svc_published_t){.pattern = r->event};
  out->event_id[0] = '\0';
  if (!r->event)
    return;
  json_t *data = r->event_data;
  r->event_data = NULL; /* stolen, also on error */
  out->rc = svc_publish(svc, r->event, data, request_id, out->event_id);
}

void svc_log_request(const svc_t *svc, int level, const char *request_id,
                     const char *event, const char *pattern, const svc_result_t *r,
                     const char *subject_id, const svc_published_t *ev, uint64_t start_ns) {
  proto_log_level_t lv = level >= 0           ? (proto_log_level_t)level
                         : r->status >= 500 ? PROTO_LOG_ERROR
                                            : PROTO_LOG_INFO;
  if (!proto_log_enabled(lv))
    return;
  json_t *f = json_pack("{s:s, s:i, s:s, s:I}", "pattern", pattern, "status", r->status,
                        "outcome", r->code, "durationUs",
                        (json_int_t)((uv_hrtime() - start_ns) / 1000u));
  if (!f)
    return;
  if (svc->log_id_key) {
    const json_t *id = json_is_object(r->response) ? json_object_get(r->response, "id") : NULL;
    if (subject_id)
      json_object_set_new(f, svc->log_id_key, json_string(subject_id));
    else if (json_is_string(id))
      json_object_set(f, svc->log_id_key, (json_t *)id);
  }
  if (svc->log_fields)
    svc->log_fields(f, r);
  if (r->replayed)
    json_object_set_new(f, "replayed", json_true());
  if (r->err) {
    /* The client-safe message says which field or upstream failed. */
    json_t *m = json_object_get(r->err, "message");
    if (m)
      json_object_set(f, "msg", m);
  }
  if (ev && ev->pattern) {
    json_object_set_new(f, "published", json_string(ev->pattern));
    if (ev->rc == 0)
      json_object_set_new(f, "eventId", json_string(ev->event_id));
    else
      json_object_set_new(f, "eventError", json_string(proto_err_name(ev->rc)));
  }
  proto_log_fields(lv, request_id, event, f);
}

void svc_reply(proto_rpc_call_t *call, svc_result_t r) {
  json_decref(r.event_data);
  if (r.status == 200)
    proto_rpc_call_reply(call, r.response);
  else if (r.err)
    proto_rpc_call_reply_err(call, r.err);
  else
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory"); /* ENOMEM */
  if (r.status != 200)
    json_decref(r.response);
}

/* Log and reply: ev says what became of r's event. */
static void answer_logged(svc_t *svc, proto_rpc_call_t *call, const char *pattern,
                          svc_result_t r, uint64_t start_ns, const svc_published_t *ev) {
  const char *rid = proto_rpc_call_request_id(call); /* valid until the reply */
  svc_log_request(svc, -1, rid, "request", pattern, &r, NULL, ev, start_ns);
  svc_reply(call, r);
}

void svc_answer_now(svc_t *svc, proto_rpc_call_t *call, const char *pattern, svc_result_t r,
                    uint64_t start_ns) {
  svc_published_t ev;
  svc_publish_result(svc, &r, proto_rpc_call_request_id(call), &ev);
  answer_logged(svc, call, pattern, r, start_ns, &ev);
}

/* Write r's event into the outbox, in the turn's transaction (opened when
 * none is: the event then commits on its own, as the data did). On success
 * r's event is moved into ev (the log line names its eventId) and 0 is
 * returned; otherwise r keeps it and it is published after the commit as
 * without an outbox (a crash in between would lose it, as before). */
static int write_outbox(svc_t *svc, svc_result_t *r, const char *rid, svc_published_t *ev) {
  *ev = (svc_published_t){.pattern = r->event};
  if (!r->event_data)
    return -1; /* ENOMEM building it: svc_publish() logs that */
  if (svc_write_begin(svc) != STORE_OK ||
      store_outbox_insert(svc->outbox, r->event, r->event_data, rid, ev->event_id) != STORE_OK) {
    proto_log(PROTO_LOG_ERROR, rid, "outbox_write_failed",
              "%s: published after the commit instead", r->event);
    *ev = (svc_published_t){0};
    return -1;
  }
  json_decref(r->event_data);
  r->event_data = NULL;
  r->event = NULL; /* in the outbox now: the relay sends it */
  return 0;
}

/* A result waiting for the COMMIT of the turn's transaction. */
typedef struct held {
  svc_t *svc;
  proto_rpc_call_t *call;
  const char *pattern;             /* static */
  svc_result_t r;
  uint64_t start_ns;
  int stored;                      /* r's event is in the outbox, described by ev */
  svc_published_t ev;
} held_t;

static void on_committed(int status, void *arg) {
  held_t *h = arg;
  if (status != 0) {
    /* Rolled back (the group logged why): what r announces is gone, and a
     * replay in r may have read it from the same transaction. 500 and no
     * event (an outbox row went with the rollback); the caller's retry does
     * it again. */
    svc_result_free(&h->r);
    h->r = svc_storage_error();
    h->stored = 0;
  }
  if (h->stored) {
    svc_outbox_relay_kick(h->svc->relay);
    answer_logged(h->svc, h->call, h->pattern, h->r, h->start_ns, &h->ev);
  } else {
    svc_answer_now(h->svc, h->call, h->pattern, h->r, h->start_ns);
  }
  free(h);
}

int svc_after_commit(svc_t *svc, store_group_fn fn, void *arg) {
  if (!svc->group || !store_group_in_txn(svc->group)) {
    fn(0, arg);
    return 0;
  }
  return store_group_defer(svc->group, fn, arg);
}

void svc_answer(svc_t *svc, proto_rpc_call_t *call, const char *pattern, svc_result_t r,
                uint64_t start_ns) {
  const char *rid = proto_rpc_call_request_id(call);
  svc_published_t ev = {0};
  /* Before the commit is deferred: the event joins the data's transaction,
   * so it commits with it or not at all. */
  int stored = svc->outbox && r.event && r.status == 200 && write_outbox(svc, &r, rid, &ev) == 0;
  if (r.status == 400 || !svc->group || !store_group_in_txn(svc->group)) {
    if (stored) {
      svc_outbox_relay_kick(svc->relay); /* autocommitted (no group) */
      answer_logged(svc, call, pattern, r, start_ns, &ev);
    } else {
      svc_answer_now(svc, call, pattern, r, start_ns);
    }
    return;
  }
  held_t *h = malloc(sizeof(*h));
  if (h) {
    *h = (held_t){svc, call, pattern, r, start_ns, stored, ev};
    if (store_group_defer(svc->group, on_committed, h) == 0)
      return;
    free(h);
  }
  /* ENOMEM: we cannot wait for the commit, so we must not announce what it
   * may still lose. The write commits anyway; without an outbox its event is
   * lost (a retry replays without one): say so. An outbox row commits with
   * it and the relay sends it. */
  if (stored)
    svc_outbox_relay_kick(svc->relay);
  if (r.event)
    proto_log(PROTO_LOG_ERROR, rid, "event_lost", "%s: cannot defer until commit", r.event);
  else
    proto_log(PROTO_LOG_ERROR, rid, "defer_failed", "cannot defer until commit");
  svc_result_free(&r);
  svc_answer_now(svc, call, pattern, svc_storage_error(), start_ns);
}

void svc_event_done(const svc_t *svc, const char *pattern, const char *request_id,
                    svc_result_t r, uint64_t start_ns) {
  /* Events get no reply: the log is the only trace of a dropped one. */
  int level = r.status == 200   ? PROTO_LOG_INFO
              : r.status >= 500 ? PROTO_LOG_ERROR
                                : PROTO_LOG_WARN;
  svc_log_request(svc, level, request_id, r.status == 200 ? "event" : "event_ignored", pattern,
                  &r, NULL, NULL, start_ns);
  svc_result_free(&r);
}
