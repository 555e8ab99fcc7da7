/* svc/answer.h: from a result to the wire. Every request gets one log line
 * ("request": pattern, status, outcome, durationUs, the subject's id, the
 * error's client-safe message, the event published) written before the reply
 * (the request id belongs to the call, which the reply consumes).
 *
 * Answering after the commit: while the commit group's transaction is open,
 * any store result of this turn may rest on it -- a new row, and also a 409,
 * a replay or a read that saw another request's uncommitted row. Such a
 * result waits for the COMMIT (the group runs it at the end of the turn, in
 * order); then its event is published and the call answered. A failed COMMIT
 * turns it into 500 STORAGE_ERROR with no event. A 400 touched no data and
 * goes at once; so does everything when no transaction is open.
 *
 * With an outbox (svc->outbox, SVC_OUTBOX) svc_answer() first writes a 200
 * result's event into it, in the turn's transaction, so the event commits
 * with the data or not at all; after the COMMIT the relay (svc/outbox.h)
 * sends it, and the log line names its eventId. If that insert fails
 * (logged "outbox_write_failed") the event takes the path without an outbox.
 */
#ifndef SVC_ANSWER_H
#define SVC_ANSWER_H

#include <stdint.h>

#include "proto/log.h"
#include "proto/rpc_server.h"
#include "svc/result.h"
#include "svc/service.h"

/* What svc_publish_result() did with a result's event, for the log line. */
typedef struct svc_published {
  const char *pattern;             /* NULL: no event */
  int rc;                          /* svc_publish() result */
  char event_id[PROTO_ID_MAX];
} svc_published_t;

/* Publish r's event (r->event_data is consumed). r must be durable. */
void svc_publish_result(svc_t *svc, svc_result_t *r, const char *request_id,
                        svc_published_t *out);

/* Log the request line at level (ERROR for a 5xx, else INFO, when level is
 * negative). subject_id (may be NULL) names the subject when the response
 * has no "id". ev may be NULL. */
void svc_log_request(const svc_t *svc, int level, const char *request_id,
                     const char *event, const char *pattern, const svc_result_t *r,
                     const char *subject_id, const svc_published_t *ev, uint64_t start_ns);

/* Send r as the reply (consumed): response, error object, or 500 when
 * building either ran out of memory. */
void svc_reply(proto_rpc_call_t *call, svc_result_t r);

/* Publish, log and answer r (consumed) now: r is durable, or rests on no
 * write. */
void svc_answer_now(svc_t *svc, proto_rpc_call_t *call, const char *pattern, svc_result_t r,
                    uint64_t start_ns);
/* The same once what r rests on is durable (see above). */
void svc_answer(svc_t *svc, proto_rpc_call_t *call, const char *pattern, svc_result_t r,
                uint64_t start_ns);

/* Run fn(status, arg) after the turn's COMMIT, or at once with 0 when no
 * transaction is open. 0 or PROTO_ENOMEM/PROTO_ECLOSED (fn will not run). */
int svc_after_commit(svc_t *svc, store_group_fn fn, void *arg);

/* An event caused by the turn's writes that is not a request's result (a
 * saga's transition, a timer's work): with an outbox it is written there in
 * the turn's transaction (it commits with the data or not at all, and the
 * relay sends it after the COMMIT); without one it is published after the
 * COMMIT, or dropped if the COMMIT fails. data stolen (NULL: ENOMEM, logged).
 * 0, or -1 (logged): with an outbox the caller should undo its writes. */
int svc_event_stage(svc_t *svc, const char *pattern, json_t *data, const char *request_id);

/* An event handled by the service: log it ("event", or "event_ignored" at
 * WARN for a 4xx and ERROR for a 5xx) and release r. */
void svc_event_done(const svc_t *svc, const char *pattern, const char *request_id,
                    svc_result_t r, uint64_t start_ns);

#endif
