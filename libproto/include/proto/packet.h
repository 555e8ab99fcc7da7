/* proto/packet.h: the NestJS message envelope (PROTOCOL.md section 2).
 *
 * Decoders take the JSON text of one frame and return a struct whose pointers
 * borrow from `root`; the struct owns root (and pattern_key) until *_free().
 * Builders return new JSON objects (reference owned by the caller); arguments
 * documented as "stolen" are owned by the result afterwards, also on failure.
 */
#ifndef PROTO_PACKET_H
#define PROTO_PACKET_H

#include <stddef.h>
#include <jansson.h>

/* The exact text NestJS sends for a pattern nobody handles. */
#define PROTO_NO_HANDLER_MESSAGE \
  "There is no matching message handler defined in the remote service."

/* A request (id present) or an event (id absent), as a server receives it. */
typedef struct proto_request {
  json_t *root;           /* owned */
  const json_t *pattern;  /* borrowed from root */
  char *pattern_key;      /* normalised pattern, owned */
  const json_t *data;     /* borrowed; a JSON null when absent, never NULL */
  const json_t *id;       /* borrowed; NULL for an event */
  const json_t *metadata; /* borrowed; NULL when absent or not an object */
} proto_request_t;

/* 0, or PROTO_EPROTO with *why set to a static reason (not JSON, not an
 * object, no pattern, unsupported pattern type). */
int proto_request_decode(const char *json, size_t len, proto_request_t *out,
                         const char **why);
void proto_request_free(proto_request_t *req);

/* A metadata string value, or NULL when absent or not a string. */
const char *proto_request_meta(const proto_request_t *req, const char *key);

/* A reply, as a client receives it. */
typedef struct proto_reply {
  json_t *root;            /* owned */
  const json_t *id;        /* borrowed; NULL when the reply carries no id */
  const json_t *response;  /* borrowed; NULL when absent */
  const json_t *err;       /* borrowed; NULL when absent (a JSON null err counts as absent) */
  int is_final;            /* err present, or isDisposed true, or a whole-object response */
} proto_reply_t;

/* 0, or PROTO_EPROTO with *why set. A reply whose keys go beyond
 * id/err/response/isDisposed/status is a whole response (NestJS does so). */
int proto_reply_decode(const char *json, size_t len, proto_reply_t *out,
                       const char **why);
void proto_reply_free(proto_reply_t *rep);

/* {"pattern":pattern,"data":data,"id":id,"metadata":metadata}. pattern is
 * borrowed (its reference count is raised); data, id and metadata are stolen;
 * id NULL makes an event, metadata NULL omits it, data NULL means JSON null. */
json_t *proto_packet_request(const json_t *pattern, json_t *data, json_t *id,
                             json_t *metadata);

/* {"id":id,"response":response,"isDisposed":true}; response stolen, NULL makes
 * a void reply {"id":id,"isDisposed":true}. id borrowed. */
json_t *proto_packet_reply(const json_t *id, json_t *response);
/* {"id":id,"err":err,"isDisposed":true}; err stolen. */
json_t *proto_packet_reply_err(const json_t *id, json_t *err);
/* {"id":id,"status":"error","err":PROTO_NO_HANDLER_MESSAGE}. */
json_t *proto_packet_reply_no_handler(const json_t *id);

/* Non-zero when a string or key anywhere in v holds U+0000. Our handlers use
 * C strings, so the RPC server refuses such requests with a 400 (the frame
 * itself is valid JSON: the connection stays up). */
int proto_json_has_nul(const json_t *v);

/* Our error object: {"statusCode":status,"message":message,"code":code}
 * plus "details" when details (stolen) is non-NULL. */
json_t *proto_error_object(int status, const char *code, const char *message,
                           json_t *details);

#endif
