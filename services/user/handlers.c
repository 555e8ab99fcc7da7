/* handlers.c: the user service's RPC patterns. Each user_op_* validates,
 * calls the store and returns a transport-free result; the thin callbacks at
 * the bottom hand it to libsvc, which answers (after the commit when it rests
 * on the turn's transaction) and logs one line per request or event.
 */
#include "user.h"

#include <uv.h>

#include "svc/answer.h"

/* --- operations ----------------------------------------------------------------- */

svc_result_t user_op_create(svc_t *svc, const json_t *data) {
  user_create_input_t in;
  user_verrs_t errs;
  json_t *user = NULL;
  if (user_validate_create(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (user_store_create(svc->store, in.email, in.email_len, in.name, in.name_len, &user)) {
  case STORE_OK:
    return svc_ok(user);
  case USER_STORE_EMAIL_TAKEN:
    return svc_err(409, "EMAIL_TAKEN", "A user with this email already exists");
  default:
    return svc_storage_error();
  }
}

svc_result_t user_op_get(svc_t *svc, const json_t *data) {
  user_get_input_t in;
  user_verrs_t errs;
  json_t *user = NULL;
  if (user_validate_get(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  switch (user_store_get(svc->store, in.id, in.id_len, &user)) {
  case STORE_OK:
    return svc_ok(user);
  case USER_STORE_NOT_FOUND:
    return svc_err(404, "USER_NOT_FOUND", "User not found");
  default:
    return svc_storage_error();
  }
}

svc_result_t user_op_list(svc_t *svc, const json_t *data) {
  user_list_input_t in;
  user_verrs_t errs;
  json_t *users = NULL;
  int64_t total = 0;
  if (user_validate_list(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (user_store_list(svc->store, in.page, in.limit, &users, &total) != 0)
    return svc_storage_error();
  /* limit is the effective one (after capping), so clients can page on. */
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "users", users, "total", (json_int_t)total,
                        "page", (json_int_t)in.page, "limit", (json_int_t)in.limit);
  return r ? svc_ok(r) : svc_storage_error();
}

svc_result_t user_op_health(svc_t *svc) {
  if (user_store_ping(svc->store) != 0)
    return svc_err(503, "SERVICE_UNHEALTHY", "User database check failed");
  json_t *r = json_pack("{s:s, s:s, s:s}", "status", "ok", "service", "user", "db", "ok");
  return r ? svc_ok(r) : svc_storage_error();
}

svc_result_t user_op_login(svc_t *svc, const json_t *data) {
  user_login_input_t in;
  user_verrs_t errs;
  if (user_validate_login(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (user_store_record_login(svc->store, in.user_id, in.user_id_len, in.timestamp)) {
  case STORE_OK:
    return svc_ok(NULL);
  case USER_STORE_NOT_FOUND:
    return svc_err(404, "USER_NOT_FOUND", "User not found");
  default:
    return svc_storage_error();
  }
}

/* --- RPC glue ------------------------------------------------------------------- */

static void on_create_user(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "create_user", user_op_create(ctx, data), t0);
}

static void on_get_user(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_user", user_op_get(ctx, data), t0);
}

static void on_get_users(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  svc_answer(ctx, call, "get_users", user_op_list(ctx, data), t0);
}

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  svc_answer_now(ctx, call, "health", user_op_health(ctx), t0); /* reads no user */
}

static void on_user_logged_in(const json_t *data, const json_t *metadata, void *ctx) {
  uint64_t t0 = uv_hrtime();
  const char *rid = json_string_value(json_object_get(metadata, "requestId"));
  svc_event_done(ctx, "user_logged_in", rid, user_op_login(ctx, data), t0);
}

void user_svc_setup(svc_t *svc) {
  svc->log_id_key = "userId";
}

void user_svc_init(svc_t *svc, uv_loop_t *loop, user_store_t *store, store_group_t *group) {
  svc_init(svc, loop, "user", store, group);
  user_svc_setup(svc);
}

int user_handlers_register(proto_rpc_server_t *srv, svc_t *svc) {
  int rc;
  if ((rc = proto_rpc_server_handle_cmd(srv, "create_user", on_create_user, svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_user", on_get_user, svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "get_users", on_get_users, svc)) != 0 ||
      (rc = proto_rpc_server_handle_cmd(srv, "health", on_health, svc)) != 0 ||
      (rc = proto_rpc_server_on_event(srv, "user_logged_in", on_user_logged_in, svc)) != 0)
    return rc;
  return 0;
}
