/* routes.c: the route table, path matching (404 vs 405), and building an
 * RPC's data from path parameters, query strings and the JSON body. Pure: no
 * I/O, no allocation while matching; unit tested in tests/unit/gateway. */
#include "routes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Routes, first match wins. A ":name" parameter becomes the data field
 * "name"; path parameters override body fields of the same name. POST answers
 * 201 as NestJS controllers do by default. */
static const gw_route_t routes[] = {
    {GW_GET, "/health", GW_ACTION_HEALTH, NULL, NULL, 200, 0, {{NULL, 0}}},
    {GW_GET, "/ready", GW_ACTION_READY, NULL, NULL, 200, 0, {{NULL, 0}}},
    {GW_POST, "/users", GW_ACTION_RPC, "user", "create_user", 201, GW_DATA_BODY, {{NULL, 0}}},
    {GW_GET, "/users", GW_ACTION_RPC, "user", "get_users", 200, GW_DATA_QUERY,
     {{"page", GW_QUERY_INT}, {"limit", GW_QUERY_INT}, {NULL, 0}}},
    {GW_GET, "/users/:id", GW_ACTION_RPC, "user", "get_user", 200, GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_GET, "/users/:userId/orders", GW_ACTION_RPC, "order", "get_orders", 200,
     GW_DATA_PARAMS | GW_DATA_QUERY, {{"page", GW_QUERY_INT}, {"limit", GW_QUERY_INT}, {NULL, 0}}},
    {GW_GET, "/users/:userId/notifications", GW_ACTION_RPC, "notification", "get_notifications",
     200, GW_DATA_PARAMS | GW_DATA_QUERY,
     {{"page", GW_QUERY_INT}, {"limit", GW_QUERY_INT}, {NULL, 0}}},
    {GW_POST, "/orders", GW_ACTION_RPC, "order", "create_order", 201, GW_DATA_BODY, {{NULL, 0}}},
    {GW_GET, "/orders/:id", GW_ACTION_RPC, "order", "get_order", 200, GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_GET, "/orders/:id/saga", GW_ACTION_RPC, "order", "get_order_saga", 200, GW_DATA_PARAMS,
     {{NULL, 0}}},
    {GW_PATCH, "/orders/:id", GW_ACTION_RPC, "order", "update_order_status", 200,
     GW_DATA_BODY | GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_POST, "/orders/:id/refund", GW_ACTION_RPC, "order", "refund_order", 201,
     GW_DATA_BODY | GW_DATA_BODY_OPTIONAL | GW_DATA_PARAMS, {{NULL, 0}}},
    {GW_GET, "/payments/:id", GW_ACTION_RPC, "payment", "get_payment", 200, GW_DATA_PARAMS,
     {{NULL, 0}}},
    {GW_POST, "/products", GW_ACTION_RPC, "inventory", "create_product", 201, GW_DATA_BODY,
     {{NULL, 0}}},
    {GW_GET, "/products", GW_ACTION_RPC, "inventory", "get_products", 200, GW_DATA_QUERY,
     {{"page", GW_QUERY_INT}, {"limit", GW_QUERY_INT}, {NULL, 0}}},
    {GW_GET, "/products/:id", GW_ACTION_RPC, "inventory", "get_product", 200, GW_DATA_PARAMS,
     {{NULL, 0}}},
    {GW_POST, "/products/:id/restock", GW_ACTION_RPC, "inventory", "restock", 201,
     GW_DATA_BODY | GW_DATA_PARAMS, {{NULL, 0}}},
};

const gw_route_t *gw_routes(size_t *count) {
  *count = sizeof(routes) / sizeof(routes[0]);
  return routes;
}

gw_method_t gw_method_parse(const char *m) {
  static const struct {
    const char *name;
    gw_method_t method;
  } names[] = {{"GET", GW_GET},     {"HEAD", GW_HEAD},     {"POST", GW_POST},
               {"PUT", GW_PUT},     {"PATCH", GW_PATCH},   {"DELETE", GW_DELETE},
               {"OPTIONS", GW_OPTIONS}};
  if (!m)
    return GW_METHOD_OTHER;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(m, names[i].name) == 0) /* methods are case-sensitive (RFC 9110) */
      return names[i].method;
  return GW_METHOD_OTHER;
}

/* Methods a row answers: GET implies HEAD, as in Express. */
static unsigned row_methods(const gw_route_t *r) {
  return r->methods & GW_GET ? r->methods | GW_HEAD : r->methods;
}

/* Match one template against path[0, len). Fills params (when m is non-NULL).
 * Returns 1 on a match. */
static int match_template(const char *tpl, const char *path, size_t len, gw_match_t *m) {
  size_t np = 0;
  const char *p = path, *end = path + len;
  while (*tpl == '/') {
    if (p >= end || *p != '/')
      return 0;
    tpl++;
    p++;
    const char *tseg = tpl;
    size_t tlen = strcspn(tseg, "/");
    const char *pseg = p;
    while (p < end && *p != '/')
      p++;
    size_t plen = (size_t)(p - pseg);
    if (tlen > 0 && tseg[0] == ':') {
      if (plen == 0 || np >= GW_ROUTE_MAX_PARAMS)
        return 0;
      if (m) {
        m->params[np].name = tseg + 1;
        m->params[np].name_len = tlen - 1;
        m->params[np].value = pseg;
        m->params[np].value_len = plen;
      }
      np++;
    } else if (tlen != plen || strncasecmp(tseg, pseg, plen) != 0) { /* Express: case-insensitive */
      return 0;
    }
    tpl += tlen;
  }
  if (*tpl != '\0' || p != end)
    return 0;
  if (m)
    m->nparams = np;
  return 1;
}

gw_match_result_t gw_route_match(const gw_route_t *table, size_t count,
                                 gw_method_t method, const char *path, gw_match_t *m) {
  memset(m, 0, sizeof(*m));
  if (!path || path[0] != '/')
    return GW_MATCH_NOT_FOUND;
  size_t len = strlen(path);
  if (len > 1 && path[len - 1] == '/') /* "/users/" is "/users", as Express */
    len--;
  gw_method_t want = method == GW_HEAD ? GW_GET : method;
  for (size_t i = 0; i < count; i++) {
    const gw_route_t *r = &table[i];
    int wanted = !m->route && method != GW_METHOD_OTHER && (r->methods & want);
    if (!match_template(r->path, path, len, wanted ? m : NULL))
      continue;
    m->allow |= row_methods(r);
    if (wanted)
      m->route = r;
  }
  if (m->route)
    return GW_MATCH_OK;
  return m->allow ? GW_MATCH_BAD_METHOD : GW_MATCH_NOT_FOUND;
}

void gw_route_allow_header(unsigned allow, char *buf, size_t size) {
  static const struct {
    gw_method_t method;
    const char *name;
  } order[] = {{GW_GET, "GET"},     {GW_HEAD, "HEAD"},     {GW_POST, "POST"},
               {GW_PUT, "PUT"},     {GW_PATCH, "PATCH"},   {GW_DELETE, "DELETE"},
               {GW_OPTIONS, "OPTIONS"}};
  size_t off = 0;
  if (size == 0)
    return;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
    if (!(allow & order[i].method))
      continue;
    int n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", order[i].name);
    if (n < 0 || (size_t)n >= size - off) {
      buf[off] = '\0'; /* no room: keep the whole names written so far */
      return;
    }
    off += (size_t)n;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

size_t gw_url_unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    int hi, lo;
    if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 &&
        (hi | lo) != 0) {
      *w++ = (char)(hi * 16 + lo);
      r += 2;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
  return (size_t)(w - s);
}

int gw_content_type_is_json(const char *ct) {
  static const char want[] = "application/json";
  const size_t n = sizeof(want) - 1;
  if (!ct)
    return 0;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  if (strncasecmp(ct, want, n) != 0)
    return 0;
  ct += n;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  return *ct == '\0' || *ct == ';';
}

/* --- errors ---------------------------------------------------------------- */

static void err_reset(gw_route_err_t *err) {
  err->status = 0;
  err->n = 0;
  err->message[0] = '\0';
}

/* Record a field at fault (400); beyond GW_ROUTE_MAX_ERRORS they are dropped. */
static void err_field(gw_route_err_t *err, const char *field, size_t field_len,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void err_field(gw_route_err_t *err, const char *field, size_t field_len,
                      const char *fmt, ...) {
  va_list ap;
  if (err->status == 0)
    err->status = 400;
  if (err->n >= GW_ROUTE_MAX_ERRORS)
    return;
  gw_field_error_t *e = &err->errs[err->n++];
  if (field_len >= sizeof(e->field))
    field_len = sizeof(e->field) - 1;
  memcpy(e->field, field, field_len);
  e->field[field_len] = '\0';
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
}

/* Our failure, not the request's: 500 (it wins over field errors). */
static void err_internal(gw_route_err_t *err, const char *message) {
  err->status = 500;
  snprintf(err->message, sizeof(err->message), "%s", message);
}

json_t *gw_route_error_body(const gw_route_err_t *err, const char *request_id) {
  if (err->status == 400 && err->n > 0)
    return gw_validation_error_body(err->errs, err->n, request_id);
  return gw_error_body(err->status ? err->status : 500,
                       err->message[0] ? err->message : NULL, request_id);
}

/* --- bodies ------------------------------------------------------------------- */

#define MSG_BODY_OBJECT "must be a JSON object"

int gw_route_parse_body(const char *buf, size_t len, json_t **out, gw_route_err_t *err) {
  json_error_t jerr;
  *out = NULL;
  err_reset(err);
  size_t i = 0;
  while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
    i++;
  if (i == len) { /* empty body: {} as Express's json parser gives */
    *out = json_object();
    if (!*out) {
      err_internal(err, "Out of memory");
      return -1;
    }
    return 0;
  }
  json_t *v = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
  if (!v) {
    err_field(err, "body", 4, "must be valid JSON (%s at position %d)", jerr.text,
              jerr.position);
    return -1;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    err_field(err, "body", 4, MSG_BODY_OBJECT);
    return -1;
  }
  *out = v;
  return 0;
}

/* JavaScript's Number.MAX_SAFE_INTEGER: larger integers lose precision in a
 * NestJS peer. */
#define GW_QUERY_INT_MAX 9007199254740991LL

static int parse_int(const char *s, json_int_t *out) {
  const char *p = s;
  if (*p == '-')
    p++;
  if (*p < '0' || *p > '9')
    return -1;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9')
      return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > GW_QUERY_INT_MAX || v < -GW_QUERY_INT_MAX)
    return -1;
  *out = (json_int_t)v;
  return 0;
}

/* Every bad value is recorded (the client learns them all at once); -1
 * when any was, or on ENOMEM. */
static int add_query(const gw_route_t *r, gw_query_get_fn get, void *ctx, json_t *data,
                     gw_route_err_t *err) {
  for (size_t i = 0; i < GW_ROUTE_MAX_QUERY && r->query[i].name; i++) {
    const gw_query_param_t *q = &r->query[i];
    const char *s = get ? get(ctx, q->name) : NULL;
    json_t *v = NULL;
    if (!s)
      continue;
    if (q->type == GW_QUERY_INT) {
      json_int_t n;
      if (parse_int(s, &n) != 0) {
        err_field(err, q->name, strlen(q->name), "must be an integer");
        continue;
      }
      v = json_integer(n);
    } else if (!(v = json_string(s))) {
      err_field(err, q->name, strlen(q->name), "must be valid UTF-8");
      continue;
    }
    if (json_object_set_new(data, q->name, v) != 0) {
      err_internal(err, "Out of memory");
      return -1;
    }
  }
  return err->status ? -1 : 0;
}

static int add_params(const gw_match_t *m, json_t *data, gw_route_err_t *err) {
  for (size_t i = 0; i < m->nparams; i++) {
    const gw_param_t *p = &m->params[i];
    char key[GW_FIELD_NAME_MAX_BYTES];
    if (p->name_len >= sizeof(key)) {
      err_internal(err, "Route parameter name too long"); /* a table row, not the client */
      return -1;
    }
    memcpy(key, p->name, p->name_len);
    key[p->name_len] = '\0';
    json_t *v = json_stringn(p->value, p->value_len);
    if (!v) {
      err_field(err, key, p->name_len, "must be valid UTF-8");
      continue;
    }
    if (json_object_set_new(data, key, v) != 0) {
      err_internal(err, "Out of memory");
      return -1;
    }
  }
  return err->status ? -1 : 0;
}

int gw_route_build_data(const gw_match_t *m, gw_query_get_fn get, void *ctx,
                        json_t *body, json_t **out, gw_route_err_t *err) {
  const gw_route_t *r = m->route;
  json_t *data = body;
  *out = NULL;
  err_reset(err);
  if (data && !json_is_object(data)) {
    json_decref(data);
    err_field(err, "body", 4, MSG_BODY_OBJECT);
    return -1;
  }
  if (!data && !(data = json_object())) {
    err_internal(err, "Out of memory");
    return -1;
  }
  /* Both run, so a bad query value and a bad path parameter are both named. */
  if (r->data & GW_DATA_QUERY)
    add_query(r, get, ctx, data, err);
  if ((r->data & GW_DATA_PARAMS) && err->status != 500)
    add_params(m, data, err);
  if (err->status != 0)
    goto fail;
  *out = data;
  return 0;
fail:
  json_decref(data);
  return -1;
}
