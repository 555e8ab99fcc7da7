/* packet.c: the NestJS message envelope (PROTOCOL.md section 2): decoding
 * requests/events as a server sees them and replies as a client sees them,
 * following what NestJS 12.1.1 itself accepts, and building the packets we
 * send, plus our error object (section 5). */
#include "proto/packet.h"
#include "proto/error.h"
#include "proto/pattern.h"

#include <stdlib.h>
#include <string.h>

/* "\u0000" is valid JSON and NestJS accepts it, so a frame holding one is not
 * broken: it is decoded, and the RPC server answers such a request with a 400
 * (proto_json_has_nul) instead of closing the connection. */
#define PACKET_DECODE_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Parse one frame's JSON text. jansson refuses integers beyond 64 bits that
 * JavaScript reads without complaint (as doubles), so on that error alone the
 * text is read again with every number as a double, as JavaScript would. */
static json_t *parse_frame(const char *json, size_t len) {
  json_error_t jerr;
  json_t *root = json_loadb(json, len, PACKET_DECODE_FLAGS, &jerr);
  if (!root && json_error_code(&jerr) == json_error_numeric_overflow)
    root = json_loadb(json, len, PACKET_DECODE_FLAGS | JSON_DECODE_INT_AS_REAL, NULL);
  return root;
}

static void set_why(const char **why, const char *text) {
  if (why)
    *why = text;
}

/* JavaScript truthiness, which is what NestJS's `if (err)` and
 * `if (isDisposed)` test. */
static int js_truthy(const json_t *v) {
  switch (v ? json_typeof(v) : JSON_NULL) {
  case JSON_NULL:
  case JSON_FALSE:
    return 0;
  case JSON_INTEGER:
    return json_integer_value(v) != 0;
  case JSON_REAL:
    return json_real_value(v) != 0.0;
  case JSON_STRING:
    return json_string_length(v) != 0;
  default:
    return 1;
  }
}

/* --- requests and events ------------------------------------------------- */

/* An event is a packet with no "id" key at all. NestJS tests
 * `isUndefined(packet.id)`, so "id":null is a request and its reply carries
 * "id":null (observed against 12.1.1). A missing, null or boolean pattern is
 * a protocol error here, as packet.h says; NestJS instead answers such a
 * request with the no-handler reply (observed) and logs such an event. */
int proto_request_decode(const char *json, size_t len, proto_request_t *out,
                         const char **why) {
  int rc = PROTO_EPROTO;
  memset(out, 0, sizeof(*out));
  out->root = parse_frame(json, len);
  if (!out->root) {
    set_why(why, "packet is not valid JSON");
    goto out;
  }
  if (!json_is_object(out->root)) {
    set_why(why, "packet is not a JSON object");
    goto out;
  }
  out->pattern = json_object_get(out->root, "pattern");
  if (!out->pattern) {
    set_why(why, "packet has no pattern");
    goto out;
  }
  if (!json_is_string(out->pattern) && !json_is_number(out->pattern) &&
      !json_is_object(out->pattern) && !json_is_array(out->pattern)) {
    set_why(why, "pattern is not a string, number or object");
    goto out;
  }
  out->pattern_key = proto_pattern_key(out->pattern);
  if (!out->pattern_key) {
    rc = PROTO_ENOMEM;
    set_why(why, "out of memory");
    goto out;
  }
  out->data = json_object_get(out->root, "data");
  if (!out->data)
    out->data = json_null(); /* a static singleton, never freed */
  out->id = json_object_get(out->root, "id");
  out->metadata = json_object_get(out->root, "metadata");
  if (out->metadata && !json_is_object(out->metadata))
    out->metadata = NULL;
  rc = 0;
out:
  if (rc != 0)
    proto_request_free(out);
  return rc;
}

void proto_request_free(proto_request_t *req) {
  if (!req)
    return;
  json_decref(req->root);
  free(req->pattern_key);
  memset(req, 0, sizeof(*req));
}

const char *proto_request_meta(const proto_request_t *req, const char *key) {
  if (!req || !req->metadata || !key)
    return NULL;
  return json_string_value(json_object_get(req->metadata, key));
}

/* --- replies --------------------------------------------------------------- */

/* NestJS's IncomingResponseDeserializer: a packet has only these keys. */
static int is_envelope_key(const char *key) {
  static const char *const keys[] = {"id", "err", "response", "isDisposed", "status"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcmp(key, keys[i]) == 0)
      return 1;
  return 0;
}

/* Anything but a non-empty object of envelope keys is a foreign payload that
 * NestJS delivers whole, as a final response, to the call named by its "id"
 * (if it has one). */
static int is_whole_response(const json_t *v) {
  const char *key;
  json_t *value;
  if (!json_is_object(v) || json_object_size(v) == 0)
    return 1;
  json_object_foreach((json_t *)v, key, value)
    if (!is_envelope_key(key))
      return 1;
  return 0;
}

int proto_reply_decode(const char *json, size_t len, proto_reply_t *out,
                       const char **why) {
  memset(out, 0, sizeof(*out));
  out->root = parse_frame(json, len);
  if (!out->root) {
    set_why(why, "reply is not valid JSON");
    return PROTO_EPROTO;
  }
  out->id = json_is_object(out->root) ? json_object_get(out->root, "id") : NULL;
  if (is_whole_response(out->root)) {
    out->response = out->root;
    out->is_final = 1;
    return 0;
  }
  out->response = json_object_get(out->root, "response");
  out->err = json_object_get(out->root, "err");
  if (!js_truthy(out->err)) /* NestJS: `if (err)` */
    out->err = NULL;
  out->is_final = out->err != NULL || js_truthy(json_object_get(out->root, "isDisposed"));
  return 0;
}

void proto_reply_free(proto_reply_t *rep) {
  if (!rep)
    return;
  json_decref(rep->root);
  memset(rep, 0, sizeof(*rep));
}

/* --- builders -------------------------------------------------------------- */

/* json_object_set_new() releases its value even when it fails, so after each
 * of the set_new calls below the stolen argument is owned by p or gone. */
json_t *proto_packet_request(const json_t *pattern, json_t *data, json_t *id,
                             json_t *metadata) {
  json_t *p = pattern ? json_object() : NULL;
  if (!p) {
    json_decref(data);
    json_decref(id);
    json_decref(metadata);
    return NULL;
  }
  int bad = json_object_set(p, "pattern", (json_t *)pattern) != 0;
  bad |= json_object_set_new(p, "data", data ? data : json_null()) != 0;
  if (id)
    bad |= json_object_set_new(p, "id", id) != 0;
  if (metadata)
    bad |= json_object_set_new(p, "metadata", metadata) != 0;
  if (bad) {
    json_decref(p);
    return NULL;
  }
  return p;
}

json_t *proto_packet_reply(const json_t *id, json_t *response) {
  json_t *p = id ? json_object() : NULL;
  if (!p) {
    json_decref(response);
    return NULL;
  }
  int bad = json_object_set(p, "id", (json_t *)id) != 0;
  if (response)
    bad |= json_object_set_new(p, "response", response) != 0;
  bad |= json_object_set_new(p, "isDisposed", json_true()) != 0;
  if (bad) {
    json_decref(p);
    return NULL;
  }
  return p;
}

json_t *proto_packet_reply_err(const json_t *id, json_t *err) {
  json_t *p = id && err ? json_object() : NULL;
  if (!p) {
    json_decref(err);
    return NULL;
  }
  if (json_object_set(p, "id", (json_t *)id) != 0 ||
      json_object_set_new(p, "err", err) != 0 ||
      json_object_set_new(p, "isDisposed", json_true()) != 0) {
    json_decref(p);
    return NULL;
  }
  return p;
}

json_t *proto_packet_reply_no_handler(const json_t *id) {
  return id ? json_pack("{s:O,s:s,s:s}", "id", id, "status", "error", "err",
                        PROTO_NO_HANDLER_MESSAGE)
            : NULL;
}

json_t *proto_error_object(int status, const char *code, const char *message,
                           json_t *details) {
  json_t *e = code && message
                  ? json_pack("{s:i,s:s,s:s}", "statusCode", status, "message", message,
                              "code", code)
                  : NULL;
  if (!e) {
    json_decref(details);
    return NULL;
  }
  if (details && json_object_set_new(e, "details", details) != 0) {
    json_decref(e);
    return NULL;
  }
  return e;
}

int proto_json_has_nul(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_STRING:
    return strlen(json_string_value(v)) != json_string_length(v);
  case JSON_ARRAY:
    for (size_t i = 0; i < json_array_size(v); i++)
      if (proto_json_has_nul(json_array_get(v, i)))
        return 1;
    return 0;
  case JSON_OBJECT:
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
      const char *key = json_object_iter_key(it);
      if (strlen(key) != json_object_iter_key_len(it) ||
          proto_json_has_nul(json_object_iter_value(it)))
        return 1;
    }
    return 0;
  default:
    return 0;
  }
}
