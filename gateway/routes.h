/* routes.h: the gateway's route table and how a request becomes RPC data.
 *
 * A route is one row: {method, path template, action, upstream, cmd, success
 * status, how to build data}. Templates are literal segments and ":name"
 * parameters ("/users/:id/orders"); a parameter matches one non-empty
 * segment and becomes the string field "name" of the data. Literal segments
 * compare case-insensitively and one trailing '/' is ignored (Express's
 * defaults, so NestJS clients see the same routing). Matching is pure:
 * no I/O, no allocation, results point into the caller's path.
 *
 * Adding a route is adding a row to the table in routes.c, e.g.
 *   {GW_GET, "/orders/:id", GW_ACTION_RPC, "order", "get_order", 200, GW_DATA_PARAMS},
 */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include <stddef.h>
#include <jansson.h>

#include "reply.h"

#define GW_ROUTE_MAX_PARAMS 4
#define GW_ROUTE_MAX_QUERY 6
#define GW_ROUTE_MAX_SEGMENTS 16
/* Room for the gateway's own error messages ("Cannot GET /x"). */
#define GW_ROUTE_ERR_SIZE 256
/* Fields at fault reported per request (every bad query value is named). */
#define GW_ROUTE_MAX_ERRORS 8

/* HTTP methods as bits, so a route can serve several and 405 can list them. */
typedef enum gw_method {
  GW_METHOD_OTHER = 0,
  GW_GET = 1u << 0,
  GW_HEAD = 1u << 1,
  GW_POST = 1u << 2,
  GW_PUT = 1u << 3,
  GW_PATCH = 1u << 4,
  GW_DELETE = 1u << 5,
  GW_OPTIONS = 1u << 6,
} gw_method_t;

typedef enum gw_action {
  GW_ACTION_RPC = 0,  /* send cmd to upstream, answer with its reply */
  GW_ACTION_HEALTH,   /* 200 {"status":"ok"}, calls nothing */
  GW_ACTION_READY,    /* `health` to every upstream */
} gw_action_t;

/* How the RPC data is built (bits, combined in the order listed: the body is
 * the base object, then query values, then path parameters, so a client
 * cannot override an id taken from the path). */
enum {
  GW_DATA_BODY = 1u << 0,          /* JSON object body (Content-Type checked) */
  GW_DATA_BODY_OPTIONAL = 1u << 1, /* with BODY: an absent body is {} */
  GW_DATA_QUERY = 1u << 2,         /* the route's query parameters, converted */
  GW_DATA_PARAMS = 1u << 3,        /* path parameters as string fields */
};

typedef enum gw_query_type {
  GW_QUERY_STRING = 0,  /* passed as a JSON string */
  GW_QUERY_INT,         /* must be a decimal integer: JSON number, else 400 */
} gw_query_type_t;

typedef struct gw_query_param {
  const char *name;       /* NULL ends the list */
  gw_query_type_t type;
} gw_query_param_t;

typedef struct gw_route {
  unsigned methods;       /* GW_* bits (GET also answers HEAD) */
  const char *path;       /* template, "/users/:id" */
  gw_action_t action;
  const char *upstream;   /* registry name (upstreams.c), GW_ACTION_RPC only */
  const char *cmd;        /* pattern {"cmd":cmd} */
  unsigned status;        /* HTTP status on success */
  unsigned data;          /* GW_DATA_* bits */
  gw_query_param_t query[GW_ROUTE_MAX_QUERY]; /* for GW_DATA_QUERY */
} gw_route_t;

typedef struct gw_param {
  const char *name;       /* points into the template, after ':' */
  size_t name_len;
  const char *value;      /* points into the request path */
  size_t value_len;
} gw_param_t;

typedef struct gw_match {
  const gw_route_t *route;  /* set for GW_MATCH_OK */
  unsigned allow;           /* methods the path answers (for 405's Allow) */
  size_t nparams;
  gw_param_t params[GW_ROUTE_MAX_PARAMS];
} gw_match_t;

typedef enum gw_match_result {
  GW_MATCH_OK = 0,
  GW_MATCH_NOT_FOUND,     /* 404 */
  GW_MATCH_BAD_METHOD,    /* 405, m->allow says what would work */
} gw_match_result_t;

/* The gateway's table. */
const gw_route_t *gw_routes(size_t *count);

/* "GET" -> GW_GET ...; anything else GW_METHOD_OTHER. */
gw_method_t gw_method_parse(const char *method);

/* Match path (no query string; one trailing '/' is ignored) against table.
 * First matching row wins. On GW_MATCH_OK, m->route and m->params are set;
 * on GW_MATCH_BAD_METHOD, m->allow. */
gw_match_result_t gw_route_match(const gw_route_t *table, size_t count,
                                 gw_method_t method, const char *path, gw_match_t *m);

/* The Allow header value for a method mask ("GET, HEAD, POST") into buf. */
void gw_route_allow_header(unsigned allow, char *buf, size_t size);

/* Percent-decode s in place (URL path and query values; MHD's unescape
 * callback) and return the new length. "%00" stays as it is: a NUL would cut
 * the string short and turn "/users/%00" into "/users/". Malformed escapes
 * are kept literally, as MHD does. */
size_t gw_url_unescape(char *s);

/* Non-zero when a Content-Type value is application/json, parameters such as
 * "; charset=utf-8" allowed, case-insensitive. NULL is not. */
int gw_content_type_is_json(const char *content_type);

/* Why a request could not become RPC data. status 400: the request is at
 * fault, errs[0, n) name each field ("page", "body") with a client-safe
 * message, and the answer is a validation error (gw_route_error_body()).
 * status 500: we are (out of memory, a table row the code cannot serve);
 * message says so. */
typedef struct gw_route_err {
  unsigned status;
  size_t n;
  gw_field_error_t errs[GW_ROUTE_MAX_ERRORS];
  char message[GW_ROUTE_ERR_SIZE];
} gw_route_err_t;

/* The error body for err: 400 VALIDATION_FAILED with details (reply.h), or
 * the plain NestJS shape for a 500. New reference, NULL on ENOMEM. */
json_t *gw_route_error_body(const gw_route_err_t *err, const char *request_id);

/* Parse a request body; an empty body is {}. The result must be an object.
 * 0 with *out (new reference), or -1 with err filled (field "body"). */
int gw_route_parse_body(const char *buf, size_t len, json_t **out, gw_route_err_t *err);

/* Look up a query parameter by name (NULL when absent). */
typedef const char *(*gw_query_get_fn)(void *ctx, const char *name);

/* Build the RPC data for a match: body (stolen, may be NULL) is the base
 * object, then the route's query parameters (via get), then path parameters.
 * 0 with *out (new reference), or -1 with err filled: every query value and
 * path parameter at fault is named (?page=abc&limit=x gives two details). */
int gw_route_build_data(const gw_match_t *m, gw_query_get_fn get, void *ctx,
                        json_t *body, json_t **out, gw_route_err_t *err);

#endif
