/* svc/result.h: the outcome of one service operation, independent of the
 * transport: a response (status 200) or an error object (status = its
 * statusCode), plus the event the operation caused, to publish once the data
 * behind it is committed. Every service's operations return one; svc/answer.h
 * turns it into a reply, an event and a log line.
 */
#ifndef SVC_RESULT_H
#define SVC_RESULT_H

#include <jansson.h>

#include "valid/valid.h"

typedef struct svc_result {
  int status;
  const char *code;       /* "OK" or the error code: static, or owned by err */
  json_t *response;       /* owned, or NULL (a void reply) */
  json_t *err;            /* owned, or NULL */
  const char *event;      /* static event pattern, or NULL: no event */
  json_t *event_data;     /* owned; NULL when event is NULL */
  int replayed;           /* answered from an earlier outcome (an idempotent retry) */
} svc_result_t;

/* 200 with response (stolen, may be NULL). */
svc_result_t svc_ok(json_t *response);
/* 200 with response that causes event (both stolen). When data is NULL
 * (ENOMEM building it) the result is 500 INTERNAL_ERROR: the write stands,
 * but the caller must not pretend its event went out. */
svc_result_t svc_ok_event(json_t *response, const char *event, json_t *data);
/* An error object {statusCode, message, code}. */
svc_result_t svc_err(int status, const char *code, const char *message);
/* The same with details (stolen, may be NULL). */
svc_result_t svc_err_details(int status, const char *code, const char *message,
                             json_t *details);
/* 400 VALIDATION_FAILED with the field errors as details. */
svc_result_t svc_invalid(const valid_verrs_t *errs);
/* 500 STORAGE_ERROR: the cause was logged by the store; clients get no
 * internals. */
svc_result_t svc_storage_error(void);
/* Release what r owns and leave it empty. */
void svc_result_free(svc_result_t *r);

#endif
