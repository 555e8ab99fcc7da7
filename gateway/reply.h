/* reply.h: from RPC results to HTTP statuses and bodies.
 *
 * Error bodies have NestJS's shape, {"statusCode":404,"message":"User not
 * found","error":"Not Found","requestId":"..."}, where "error" is the HTTP
 * reason phrase; errors from our services also carry their "code" and
 * "details". A validation failure has one shape whoever finds it, a service
 * or the gateway (a non-integer ?page=, a body that is not JSON):
 *   {"statusCode":400,"message":"page must be an integer","error":"Bad Request",
 *    "requestId":"...","code":"VALIDATION_FAILED",
 *    "details":[{"field":"page","message":"must be an integer"}]}
 * Mapping (status of the RPC -> HTTP):
 *   PROTO_OK                            success status of the route, body = response
 *   PROTO_EREMOTE, our error object     its statusCode (400-599) and message
 *   PROTO_EREMOTE, anything else        502 (NestJS string / {"status":"error"})
 *   PROTO_EUNAVAIL, ECONNLOST, ECANCELED, ECLOSED, EFULL   503
 *   PROTO_ETIMEDOUT                     504
 *   PROTO_EPROTO, ETOOBIG               502
 *   anything else                       500
 * Pure: unit tested in tests/unit/gateway/test_reply.c.
 */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <stddef.h>
#include <jansson.h>

#include "proto/rpc_client.h"

/* "Not Found" for 404 ...; "Unknown" for a status we do not name. */
const char *gw_reason_phrase(unsigned status);

/* HTTP status for a failed RPC status (not PROTO_EREMOTE, whose status comes
 * from the err value). */
unsigned gw_status_from_proto(int proto_status);

/* {"statusCode","message","error","requestId"}: message NULL means the reason
 * phrase; request_id NULL omits it. New reference, NULL on ENOMEM. */
json_t *gw_error_body(unsigned status, const char *message, const char *request_id);

/* One field at fault in a request the gateway refuses itself. */
#define GW_FIELD_NAME_MAX_BYTES 64
#define GW_FIELD_MESSAGE_MAX_BYTES 192
typedef struct gw_field_error {
  char field[GW_FIELD_NAME_MAX_BYTES];       /* "page", "body", "Content-Type" */
  char message[GW_FIELD_MESSAGE_MAX_BYTES];  /* "must be an integer" */
} gw_field_error_t;

/* The 400 VALIDATION_FAILED body for errs[0, n) (n >= 1), shaped as a
 * service's validation error reaches the client: message "<field>
 * <message>" joined with "; " as libvalid does, details one {field, message}
 * each. New reference, NULL on ENOMEM. */
json_t *gw_validation_error_body(const gw_field_error_t *errs, size_t n,
                                 const char *request_id);

/* The HTTP answer for an RPC result. *body gets a new reference (NULL for a
 * void reply: answer with an empty body). upstream names the service in
 * messages ("user service unavailable"). Returns the HTTP status. */
unsigned gw_reply_from_result(const proto_rpc_result_t *res, unsigned success_status,
                              const char *upstream, const char *request_id,
                              json_t **body);

/* Non-zero when err is our error object: an object whose "statusCode" is an
 * integer from 400 to 599. */
int gw_reply_is_service_error(const json_t *err);

/* One upstream's answer to `health`, for /ready. */
typedef struct gw_ready_item {
  const char *name;   /* upstream name */
  int status;         /* PROTO_OK or a PROTO_E* code */
} gw_ready_item_t;

/* The /ready body, in @nestjs/terminus's shape:
 * {"status":"ok"|"error","info":{up...},"error":{down...},"details":{all...}}
 * with {"status":"up"} or {"status":"down","message":...} per upstream.
 * *status gets 200 when all are up, else 503. */
json_t *gw_ready_body(const gw_ready_item_t *items, size_t n, unsigned *status);

#endif
