/* handlers.c: the user service's RPC patterns. Each user_op_* validates,
 * calls the store and returns a transport-free result; the thin callbacks at
 * the bottom answer the call and log one line per request or event.
 */
#include "user.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/error.h"
#include "proto/log.h"
#include "proto/packet.h"

/* --- results ----------------------------------------------------------------- */

static user_result_t result_ok(json_t *response) {
  return (user_result_t){200, "OK", response, NULL};
}

static user_result_t result_err(int status, const char *code, const char *message) {
  return (user_result_t){status, code, NULL, proto_error_object(status, code, message, NULL)};
}

static user_result_t storage_error(void) {
  /* The cause is logged by the store; the client gets no internals. */
  return result_err(500, "STORAGE_ERROR", "Storage error");
}

json_t *user_validation_error(const user_verrs_t *errs) {
  return valid_error_object(errs);
}

static user_result_t result_invalid(const user_verrs_t *errs) {
  return (user_result_t){400, "VALIDATION_FAILED", NULL, user_validation_error(errs)};
}

/* --- operations ----------------------------------------------------------------- */

user_result_t user_op_create(user_store_t *s, const json_t *data) {
  user_create_input_t in;
  user_verrs_t errs;
  json_t *user = NULL;
  if (user_validate_create(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (user_store_create(s, in.email, in.email_len, in.name, in.name_len, &user)) {
  case USER_STORE_OK:
    return result_ok(user);
  case USER_STORE_EMAIL_TAKEN:
    return result_err(409, "EMAIL_TAKEN", "A user with this email already exists");
  default:
    return storage_error();
  }
}

user_result_t user_op_get(user_store_t *s, const json_t *data) {
  user_get_input_t in;
  user_verrs_t errs;
  json_t *user = NULL;
  if (user_validate_get(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (user_store_get(s, in.id, in.id_len, &user)) {
  case USER_STORE_OK:
    return result_ok(user);
  case USER_STORE_NOT_FOUND:
    return result_err(404, "USER_NOT_FOUND", "User not found");
  default:
    return storage_error();
  }
}

user_result_t user_op_list(user_store_t *s, const json_t *data) {
  user_list_input_t in;
  user_verrs_t errs;
  json_t *users = NULL;
  int64_t total = 0;
  if (user_validate_list(data, &in, &errs) != 0)
    return result_invalid(&errs);
  if (user_store_list(s, in.page, in.limit, &users, &total) != 0)
    return storage_error();
  /* limit is the effective one (after capping), so clients can page on. */
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "users", users, "total", (json_int_t)total,
                        "page", (json_int_t)in.page, "limit", (json_int_t)in.limit);
  return r ? result_ok(r) : storage_error();
}

user_result_t user_op_health(user_store_t *s) {
  if (user_store_ping(s) != 0)
    return result_err(503, "SERVICE_UNHEALTHY", "User database check failed");
  json_t *r = json_pack("{s:s, s:s, s:s}", "status", "ok", "service", "user", "db", "ok");
  return r ? result_ok(r) : storage_error();
}

user_result_t user_op_login(user_store_t *s, const json_t *data) {
  user_login_input_t in;
  user_verrs_t errs;
  if (user_validate_login(data, &in, &errs) != 0)
    return result_invalid(&errs);
  switch (user_store_record_login(s, in.user_id, in.user_id_len, in.timestamp)) {
  case USER_STORE_OK:
    return result_ok(NULL);
  case USER_STORE_NOT_FOUND:
    return result_err(404, "USER_NOT_FOUND", "User not found");
  default:
    return storage_error();
  }
}

/* --- logging ---------------------------------------------------------------------- */

static void log_outcome(proto_log_level_t level, const char *request_id, const char *event,
                        const char *pattern, const user_result_t *r, uint64_t start_ns) {
  if (!proto_log_enabled(level))
    return;
  json_t *f = json_pack("{s:s, s:i, s:s, s:I}", "pattern", pattern, "status", r->status,
                        "outcome", r->code, "durationUs",
                        (json_int_t)((uv_hrtime() - start_ns) / 1000u));
  const json_t *id = json_is_object(r->response) ? json_object_get(r->response, "id") : NULL;
  if (f && json_is_string(id))
    json_object_set(f, "userId", (json_t *)id);
  if (f && r->err) {
    /* The client-safe message says which field failed; worth keeping. */
    json_t *m = json_object_get(r->err, "message");
    if (m)
      json_object_set(f, "msg", m);
  }
  proto_log_fields(level, request_id, event, f);
}

/* --- RPC glue ------------------------------------------------------------------- */

static void answer_now(proto_rpc_call_t *call, const char *pattern, user_result_t r,
                       uint64_t start_ns) {
  /* Log first: the request id belongs to the call, which the reply consumes. */
  log_outcome(r.status >= 500 ? PROTO_LOG_ERROR : PROTO_LOG_INFO,
              proto_rpc_call_request_id(call), "request", pattern, &r, start_ns);
  if (r.status == 200)
    proto_rpc_call_reply(call, r.response);
  else if (r.err)
    proto_rpc_call_reply_err(call, r.err);
  else
    proto_rpc_call_fail(call, 500, "INTERNAL_ERROR", "Out of memory"); /* ENOMEM */
}

/* A result waiting for the COMMIT of the turn's transaction. */
typedef struct held {
  proto_rpc_call_t *call;
  const char *pattern;             /* static */
  user_result_t r;
  uint64_t start_ns;
} held_t;

static void on_committed(int status, void *arg) {
  held_t *h = arg;
  if (status != 0) {
    /* Rolled back (the group logged why): the user r announces is gone. */
    json_decref(h->r.response);
    json_decref(h->r.err);
    h->r = storage_error();
  }
  answer_now(h->call, h->pattern, h->r, h->start_ns);
  free(h);
}

/* Answer r once it is durable. While the group's transaction is open, any
 * store result of this turn may rest on it: a new user, and also a 409 or a
 * read that saw another request's uncommitted row. Those wait for the COMMIT
 * (the group runs them at the end of the turn, in order). A 400 touched no
 * data and goes at once; so does everything when no transaction is open. */
static void answer(user_store_t *store, proto_rpc_call_t *call, const char *pattern,
                   user_result_t r, uint64_t start_ns) {
  store_group_t *g = user_store_group(store);
  if (g && r.status != 400 && store_group_in_txn(g)) {
    held_t *h = malloc(sizeof(*h));
    if (h) {
      *h = (held_t){call, pattern, r, start_ns};
      if (store_group_defer(g, on_committed, h) == 0)
        return;
      free(h);
    }
    /* We cannot wait for the commit, so we must not announce what it may
     * still lose. */
    json_decref(r.response);
    json_decref(r.err);
    r = storage_error();
  }
  answer_now(call, pattern, r, start_ns);
}

static void on_create_user(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(ctx, call, "create_user", user_op_create(ctx, data), t0);
}

static void on_get_user(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(ctx, call, "get_user", user_op_get(ctx, data), t0);
}

static void on_get_users(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  answer(ctx, call, "get_users", user_op_list(ctx, data), t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  answer_now(call, "health", user_op_health(ctx), t0); /* reads no user */
}

static void on_user_logged_in(const json_t *data, const json_t *metadata, void *ctx) {
  uint64_t t0 = uv_hrtime();
  const char *rid = json_string_value(json_object_get(metadata, "requestId"));
  user_result_t r = user_op_login(ctx, data);
  /* Events get no reply: the log is the only trace of a dropped one. */
  proto_log_level_t level = r.status == 200   ? PROTO_LOG_INFO
                            : r.status >= 500 ? PROTO_LOG_ERROR
                                              : PROTO_LOG_WARN;
  log_outcome(level, rid, r.status == 200 ? "event" : "event_ignored", "user_logged_in", &r,
              t0);
  json_decref(r.response);
  json_decref(r.err);
}

int user_handlers_register(proto_rpc_server_t *srv, user_store_t *store) {
  int rc;
  if ((rc = proto_rpc_server_handle_cmd(srv, "create_user", on_create_user, store)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_user", on_get_user, store)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_users", on_get_users, store)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "health", on_health, store)) != 0 ||
      (rc = proto_rpc_server_on_event(srv, "user_logged_in", on_user_logged_in, store)) != 0)
    return rc;
  return 0;
}
