/* result.c: building and releasing svc_result_t. */
#include "svc/result.h"

#include "proto/packet.h"

svc_result_t svc_ok(json_t *response) {
  return (svc_result_t){.status = 200, .code = "OK", .response = response};
}

svc_result_t svc_ok_event(json_t *response, const char *event, json_t *data) {
  if (!data) {
    json_decref(response);
    return svc_err(500, "INTERNAL_ERROR", "Out of memory");
  }
  svc_result_t r = svc_ok(response);
  r.event = event;
  r.event_data = data;
  return r;
}

svc_result_t svc_err_details(int status, const char *code, const char *message,
                             json_t *details) {
  return (svc_result_t){.status = status,
                        .code = code,
                        .err = proto_error_object(status, code, message, details)};
}

svc_result_t svc_err(int status, const char *code, const char *message) {
  return svc_err_details(status, code, message, NULL);
}

svc_result_t svc_invalid(const valid_verrs_t *errs) {
  return (svc_result_t){
      .status = 400, .code = "VALIDATION_FAILED", .err = valid_error_object(errs)};
}

svc_result_t svc_storage_error(void) {
  return svc_err(500, "STORAGE_ERROR", "Storage error");
}

void svc_result_free(svc_result_t *r) {
  json_decref(r->response);
  json_decref(r->err);
  json_decref(r->event_data);
  r->response = r->err = r->event_data = NULL;
  r->event = NULL;
}
