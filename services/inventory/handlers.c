/* handlers.c: the inventory service's RPC patterns. Each inventory_op_*
 * validates, calls the store and returns a transport-free result; the thin
 * callbacks at the bottom hand it to libsvc, which answers (after the commit
 * when it rests on the turn's transaction) and logs one line per request.
 */
#include "inventory.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "svc/answer.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* The products an error message names, at most this long. */
#define INVENTORY_MSG_MAX_BYTES 256

static inventory_app_t *app_of(svc_t *svc) {
  return svc->app;
}

static int64_t now_ms(svc_t *svc) {
  inventory_app_t *app = app_of(svc);
  return app->now_ms(app->now_arg);
}

/* "<prefix>: p1, p2": every productId of details, cut (with "...") when long. */
static svc_result_t items_error(int status, const char *code, const char *prefix,
                                json_t *details) {
  char msg[INVENTORY_MSG_MAX_BYTES];
  size_t used = (size_t)snprintf(msg, sizeof(msg), "%s: ", prefix);
  size_t i;
  json_t *d;
  json_array_foreach(details, i, d) {
    const char *pid = json_string_value(json_object_get(d, "productId"));
    size_t plen = pid ? strlen(pid) : 0;
    /* Room for this id, ", " and a final "..." */
    if (used + plen + 2 + 4 > sizeof(msg)) {
      memcpy(msg + used, "...", 4);
      used += 3;
      break;
    }
    used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? ", " : "",
                             pid ? pid : "");
  }
  return svc_err_details(status, code, msg, details);
}

/* --- operations ----------------------------------------------------------------- */

svc_result_t inventory_op_create_product(svc_t *svc, const json_t *data) {
  inventory_product_input_t in;
  inventory_verrs_t errs;
  json_t *p = NULL;
  if (inventory_validate_product(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (inventory_store_product_create(svc->store, &in, now_ms(svc), &p)) {
  case STORE_OK:
    return svc_ok(p);
  case INVENTORY_STORE_EXISTS:
    return svc_err(409, "PRODUCT_EXISTS", "A product with this id already exists");
  default:
    return svc_storage_error();
  }
}

svc_result_t inventory_op_get_product(svc_t *svc, const json_t *data) {
  inventory_id_input_t in;
  inventory_verrs_t errs;
  json_t *p = NULL;
  if (inventory_validate_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  switch (inventory_store_product_get(svc->store, in.id, in.id_len, &p)) {
  case STORE_OK:
    return svc_ok(p);
  case INVENTORY_STORE_NOT_FOUND:
    return svc_err(404, "PRODUCT_NOT_FOUND", "Product not found");
  default:
    return svc_storage_error();
  }
}

svc_result_t inventory_op_get_products(svc_t *svc, const json_t *data) {
  inventory_list_input_t in;
  inventory_verrs_t errs;
  json_t *products = NULL;
  int64_t total = 0;
  if (inventory_validate_list(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (inventory_store_product_list(svc->store, in.page, in.limit, &products, &total) != 0)
    return svc_storage_error();
  /* limit is the effective one (after capping), so clients can page on. */
  json_t *r = json_pack("{s:o, s:I, s:I, s:I}", "products", products, "total",
                        (json_int_t)total, "page", (json_int_t)in.page, "limit",
                        (json_int_t)in.limit);
  return r ? svc_ok(r) : svc_storage_error();
}

svc_result_t inventory_op_restock(svc_t *svc, const json_t *data) {
  inventory_restock_input_t in;
  inventory_verrs_t errs;
  json_t *p = NULL;
  if (inventory_validate_restock(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (inventory_store_restock(svc->store, in.id, in.id_len, in.quantity, now_ms(svc), &p)) {
  case STORE_OK:
    return svc_ok(p);
  case INVENTORY_STORE_NOT_FOUND:
    return svc_err(404, "PRODUCT_NOT_FOUND", "Product not found");
  case INVENTORY_STORE_STOCK_LIMIT:
    return svc_err(409, "STOCK_LIMIT",
                   "Stock would pass " STR(INVENTORY_STOCK_MAX) " units");
  default:
    return svc_storage_error();
  }
}

static svc_result_t released_error(void) {
  return svc_err(409, "RESERVATION_RELEASED",
                 "The order's reservation was released (cancelled or expired)");
}

svc_result_t inventory_op_reserve(svc_t *svc, const json_t *data) {
  inventory_reserve_input_t in;
  inventory_verrs_t errs;
  json_t *out = NULL;
  svc_result_t r;
  if (inventory_validate_reserve(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (inventory_store_reserve(svc->store, &in, now_ms(svc), app_of(svc)->ttl_ms, &out)) {
  case STORE_OK:
    return svc_ok(out);
  case INVENTORY_STORE_REPLAYED:
    r = svc_ok(out);
    r.replayed = 1;
    return r;
  case INVENTORY_STORE_NO_PRODUCT:
    return items_error(404, "PRODUCT_NOT_FOUND", "Product not found", out);
  case INVENTORY_STORE_OUT_OF_STOCK:
    return items_error(409, "OUT_OF_STOCK", "Out of stock", out);
  case INVENTORY_STORE_MISMATCH:
    return svc_err(409, "RESERVATION_MISMATCH",
                   "The order already holds a reservation with other items");
  case INVENTORY_STORE_RELEASED:
    return released_error();
  default:
    return svc_storage_error();
  }
}

svc_result_t inventory_op_release(svc_t *svc, const json_t *data) {
  inventory_id_input_t in;
  inventory_verrs_t errs;
  json_t *out = NULL;
  if (inventory_validate_order_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (inventory_store_release(svc->store, in.id, in.id_len, now_ms(svc), &out)) {
  case STORE_OK:
    return svc_ok(out);
  case INVENTORY_STORE_COMMITTED:
    return svc_err(409, "RESERVATION_COMMITTED",
                   "The order's reservation is committed: its units are sold");
  default:
    return svc_storage_error();
  }
}

svc_result_t inventory_op_commit(svc_t *svc, const json_t *data) {
  inventory_id_input_t in;
  inventory_verrs_t errs;
  json_t *out = NULL;
  if (inventory_validate_order_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  if (svc_write_begin(svc) != 0)
    return svc_storage_error();
  switch (inventory_store_commit(svc->store, in.id, in.id_len, now_ms(svc), &out)) {
  case STORE_OK:
    return svc_ok(out);
  case INVENTORY_STORE_NOT_FOUND:
    return svc_err(404, "RESERVATION_NOT_FOUND", "No reservation for this order");
  case INVENTORY_STORE_RELEASED:
    return released_error();
  default:
    return svc_storage_error();
  }
}

/* Read only (no svc_write_begin): lets a caller, such as the saga's checks,
 * see where an order's reservation stands without touching it. */
svc_result_t inventory_op_get_reservation(svc_t *svc, const json_t *data) {
  inventory_id_input_t in;
  inventory_verrs_t errs;
  json_t *out = NULL;
  if (inventory_validate_order_id(data, &in, &errs) != 0)
    return svc_invalid(&errs);
  switch (inventory_store_reservation_get(svc->store, in.id, in.id_len, &out)) {
  case STORE_OK:
    return svc_ok(out);
  case INVENTORY_STORE_NOT_FOUND:
    return svc_err(404, "RESERVATION_NOT_FOUND", "No reservation for this order");
  default:
    return svc_storage_error();
  }
}

svc_result_t inventory_op_health(svc_t *svc) {
  if (inventory_store_ping(svc->store) != 0)
    return svc_err(503, "SERVICE_UNHEALTHY", "Inventory database check failed");
  json_t *r = json_pack("{s:s, s:s, s:s}", "status", "ok", "service", "inventory", "db", "ok");
  return r ? svc_ok(r) : svc_storage_error();
}

/* --- RPC glue ------------------------------------------------------------------- */

#define INVENTORY_HANDLER(fn, pattern, op)                                    \
  static void fn(proto_rpc_call_t *call, const json_t *data, void *ctx) {     \
    uint64_t t0 = uv_hrtime();                                                \
    svc_answer(ctx, call, pattern, op(ctx, data), t0);                        \
  }

INVENTORY_HANDLER(on_create_product, "create_product", inventory_op_create_product)
INVENTORY_HANDLER(on_get_product, "get_product", inventory_op_get_product)
INVENTORY_HANDLER(on_get_products, "get_products", inventory_op_get_products)
INVENTORY_HANDLER(on_restock, "restock", inventory_op_restock)
INVENTORY_HANDLER(on_reserve, "reserve_inventory", inventory_op_reserve)
INVENTORY_HANDLER(on_release, "release_inventory", inventory_op_release)
INVENTORY_HANDLER(on_commit, "commit_inventory", inventory_op_commit)
/* svc_answer, not _now: the row read may be the turn's uncommitted write. */
INVENTORY_HANDLER(on_get_reservation, "get_reservation", inventory_op_get_reservation)

static void on_health(proto_rpc_call_t *call, const json_t *data, void *ctx) {
  uint64_t t0 = uv_hrtime();
  (void)data;
  svc_answer_now(ctx, call, "health", inventory_op_health(ctx), t0); /* reads nothing written */
}

/* A reservation's order id and state on its request line. */
static void log_fields(json_t *fields, const svc_result_t *r) {
  const json_t *oid = json_object_get(r->response, "orderId");
  const json_t *state = json_object_get(r->response, "state");
  if (json_is_string(oid))
    json_object_set(fields, "orderId", (json_t *)oid);
  if (json_is_string(state))
    json_object_set(fields, "reservationState", (json_t *)state);
}

void inventory_svc_setup(svc_t *svc) {
  svc->log_id_key = "productId";
  svc->log_fields = log_fields;
}

void inventory_svc_init(svc_t *svc, uv_loop_t *loop, inventory_store_t *store,
                        store_group_t *group, inventory_app_t *app) {
  svc_init(svc, loop, "inventory", store, group);
  svc->app = app;
  inventory_svc_setup(svc);
}

int inventory_handlers_register(proto_rpc_server_t *srv, svc_t *svc) {
  static const struct {
    const char *cmd;
    proto_rpc_handler_fn fn;
  } table[] = {
      {"create_product", on_create_product}, {"get_product", on_get_product},
      {"get_products", on_get_products},     {"restock", on_restock},
      {"reserve_inventory", on_reserve},     {"release_inventory", on_release},
      {"commit_inventory", on_commit},       {"get_reservation", on_get_reservation},
      {"health", on_health},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    int rc = proto_rpc_server_handle_cmd(srv, table[i].cmd, table[i].fn, svc);
    if (rc != 0)
      return rc;
  }
  return 0;
}
