/* reply.c: HTTP status mapping for RPC results and NestJS-shaped error
 * bodies. Pure (no I/O); the table of mappings is in reply.h. */
#include "reply.h"

#include <stdio.h>
#include <string.h>

#include "proto/error.h"

#define GW_VALIDATION_MESSAGE_MAX_BYTES 1024

const char *gw_reason_phrase(unsigned status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 418: return "I'm a teapot";
  case 422: return "Unprocessable Entity";
  case 423: return "Locked";
  case 424: return "Failed Dependency";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

unsigned gw_status_from_proto(int st) {
  switch (st) {
  case PROTO_OK: return 200;
  case PROTO_EUNAVAIL:
  case PROTO_ECONNLOST:
  case PROTO_ECANCELED:
  case PROTO_ECLOSED:
  case PROTO_EFULL: return 503;
  case PROTO_ETIMEDOUT: return 504;
  case PROTO_EREMOTE:
  case PROTO_EPROTO:
  case PROTO_ETOOBIG: return 502;
  default: return 500;
  }
}

json_t *gw_error_body(unsigned status, const char *message, const char *request_id) {
  json_t *b = json_object();
  if (!b)
    return NULL;
  json_object_set_new(b, "statusCode", json_integer(status));
  json_t *m = json_string(message ? message : gw_reason_phrase(status));
  json_object_set_new(b, "message", m ? m : json_string(gw_reason_phrase(status)));
  json_object_set_new(b, "error", json_string(gw_reason_phrase(status)));
  if (request_id)
    json_object_set_new(b, "requestId", json_string(request_id));
  return b;
}

json_t *gw_validation_error_body(const gw_field_error_t *errs, size_t n,
                                 const char *request_id) {
  /* Room for every "<field> <message>; " of the list. */
  char msg[GW_VALIDATION_MESSAGE_MAX_BYTES];
  size_t used = 0;
  json_t *b = NULL, *details = json_array();
  if (!details)
    goto fail;
  msg[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    json_t *d = json_pack("{s:s, s:s}", "field", errs[i].field, "message", errs[i].message);
    if (!d || json_array_append_new(details, d) != 0)
      goto fail;
    int w = snprintf(msg + used, sizeof(msg) - used, "%s%s %s", i ? "; " : "", errs[i].field,
                     errs[i].message);
    if (w > 0)
      used = used + (size_t)w < sizeof(msg) ? used + (size_t)w : sizeof(msg) - 1;
  }
  if (!(b = gw_error_body(400, n ? msg : NULL, request_id)) ||
      json_object_set_new(b, "code", json_string("VALIDATION_FAILED")) != 0)
    goto fail;
  if (json_object_set_new(b, "details", details) != 0) {
    details = NULL; /* set_new consumes it, even when it fails */
    goto fail;
  }
  return b;
fail:
  json_decref(details);
  json_decref(b);
  return NULL;
}

int gw_reply_is_service_error(const json_t *err) {
  const json_t *sc = json_object_get(err, "statusCode");
  if (!json_is_integer(sc))
    return 0;
  json_int_t s = json_integer_value(sc);
  return s >= 400 && s <= 599;
}

/* Our error object, kept end to end: status, message (a string, or an array
 * of strings as NestJS's ValidationPipe sends), code and details. */
static json_t *service_error_body(const json_t *err, unsigned status,
                                  const char *request_id) {
  const json_t *msg = json_object_get(err, "message");
  int msg_ok = json_is_string(msg) || json_is_array(msg);
  json_t *b = gw_error_body(status, NULL, request_id);
  if (!b)
    return NULL;
  if (msg_ok)
    json_object_set(b, "message", (json_t *)msg);
  const json_t *code = json_object_get(err, "code");
  if (json_is_string(code))
    json_object_set(b, "code", (json_t *)code);
  const json_t *details = json_object_get(err, "details");
  if (details && !json_is_null(details))
    json_object_set(b, "details", (json_t *)details);
  return b;
}

unsigned gw_reply_from_result(const proto_rpc_result_t *res, unsigned success_status,
                              const char *upstream, const char *request_id,
                              json_t **body) {
  char msg[128];
  unsigned status;
  const char *name = upstream ? upstream : "upstream";
  *body = NULL;
  switch (res->status) {
  case PROTO_OK:
    if (res->response)
      *body = json_incref((json_t *)res->response);
    return success_status;
  case PROTO_EREMOTE:
    if (gw_reply_is_service_error(res->err)) {
      status = (unsigned)json_integer_value(json_object_get(res->err, "statusCode"));
      *body = service_error_body(res->err, status, request_id);
      return status;
    }
    /* A NestJS-shaped failure (a string, {"status":"error",...}): the upstream
     * failed in a way it did not describe for clients. */
    status = 502;
    snprintf(msg, sizeof(msg), "%s service failed", name);
    break;
  default:
    status = gw_status_from_proto(res->status);
    if (status == 503)
      snprintf(msg, sizeof(msg), "%s service unavailable", name);
    else if (status == 504)
      snprintf(msg, sizeof(msg), "%s service timed out", name);
    else if (status == 502)
      snprintf(msg, sizeof(msg), "%s service sent an invalid reply", name);
    else
      snprintf(msg, sizeof(msg), "%s", gw_reason_phrase(status));
    break;
  }
  *body = gw_error_body(status, msg, request_id);
  return status;
}

json_t *gw_ready_body(const gw_ready_item_t *items, size_t n, unsigned *status) {
  json_t *b = json_object(), *info = json_object(), *error = json_object(),
         *details = json_object();
  int all_up = 1;
  if (!b || !info || !error || !details)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    json_t *one;
    if (items[i].status == PROTO_OK) {
      one = json_pack("{s:s}", "status", "up");
    } else {
      all_up = 0;
      one = json_pack("{s:s, s:s}", "status", "down", "message",
                      proto_strerror(items[i].status));
    }
    if (!one)
      goto fail;
    json_object_set(details, items[i].name, one);
    json_object_set_new(items[i].status == PROTO_OK ? info : error, items[i].name, one);
  }
  *status = all_up ? 200 : 503;
  json_object_set_new(b, "status", json_string(all_up ? "ok" : "error"));
  json_object_set_new(b, "info", info);
  json_object_set_new(b, "error", error);
  json_object_set_new(b, "details", details);
  return b;
fail:
  json_decref(b);
  json_decref(info);
  json_decref(error);
  json_decref(details);
  *status = 500;
  return NULL;
}
