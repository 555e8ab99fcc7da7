/* reservation.c: the reservations' state machine on the inventory database.
 *
 *   (none) --reserve--> reserved --commit--> committed (units sold)
 *      |                   |
 *      |                   +--release / expiry--> released (units back)
 *      +--release------------------------------> released (a tombstone)
 *
 * A reservation is kept for ever under its order id, so every operation is
 * idempotent: a reserve retried returns the first result, a release or
 * commit retried succeeds again. Each multi-row change runs in a SAVEPOINT,
 * so it applies whole or not at all inside the caller's transaction.
 */
#include "store_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "store/db.h"

#define STATE_RESERVED "reserved"
#define STATE_COMMITTED "committed"
#define STATE_RELEASED "released"

/* One reservations row. */
typedef struct row {
  char state[16];
  int64_t expires_at;
  char *result;                    /* malloc'd JSON text of the first reply, or NULL */
} row_t;

static int get_row(inventory_store_t *s, const char *order_id, size_t len, row_t *row) {
  sqlite3_stmt *st = s->c.stmt[STMT_R_GET];
  int ret = STORE_ERROR;
  *row = (row_t){{0}, 0, NULL};
  if (store_bind_text(st, 1, order_id, len) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    ret = INVENTORY_STORE_NOT_FOUND;
    goto out;
  }
  if (rc != SQLITE_ROW) {
    store_fail(s->c.db, "get reservation", rc);
    goto out;
  }
  const char *state = (const char *)sqlite3_column_text(st, 0);
  const char *result = (const char *)sqlite3_column_text(st, 2);
  if (!state || strlen(state) >= sizeof(row->state)) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "reservation with a bad state");
    goto out;
  }
  strcpy(row->state, state);
  row->expires_at = sqlite3_column_int64(st, 1);
  if (result && !(row->result = strdup(result))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory reading a reservation");
    goto out;
  }
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

/* The reply for a reservation: its first result with the current state, or
 * {orderId, state, items: []} for a release that came first. NULL (logged)
 * on ENOMEM or a stored result that does not parse. */
static json_t *reply_of(const char *order_id, size_t len, const row_t *row) {
  json_t *r = NULL;
  if (row->result) {
    r = json_loads(row->result, 0, NULL);
    if (json_is_object(r) && json_object_set_new(r, "state", json_string(row->state)) == 0)
      return r;
  } else {
    r = json_pack("{s:s%, s:s, s:[]}", "orderId", order_id, len, "state", row->state, "items");
    if (r)
      return r;
  }
  json_decref(r);
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "cannot build the reservation reply");
  return NULL;
}

static int set_state(inventory_store_t *s, const char *order_id, size_t len, const char *state,
                     const char *now) {
  sqlite3_stmt *st = s->c.stmt[STMT_R_SET_STATE];
  if (store_bind_text(st, 1, order_id, len) != 0 ||
      store_bind_text(st, 2, state, strlen(state)) != 0 ||
      store_bind_text(st, 3, now, strlen(now)) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return store_stmt_run(s->c.stmt[STMT_R_SET_STATE], "set reservation state");
}

/* End an open reservation: every item's units go back to available (sell ==
 * 0) or out of stock (sell != 0), and the state follows. Inside the caller's
 * savepoint. */
static int finish(inventory_store_t *s, const char *order_id, size_t len, int sell,
                  const char *now) {
  sqlite3_stmt *items = s->c.stmt[STMT_R_ITEMS];
  sqlite3_stmt *up = s->c.stmt[sell ? STMT_P_SELL : STMT_P_GIVE_BACK];
  int rc, ret = STORE_ERROR;
  if (store_bind_text(items, 1, order_id, len) != 0)
    goto out;
  while ((rc = sqlite3_step(items)) == SQLITE_ROW) {
    const char *pid = (const char *)sqlite3_column_text(items, 0);
    int plen = sqlite3_column_bytes(items, 0);
    if (!pid) {
      store_fail(s->c.db, "read reservation items", SQLITE_NOMEM);
      goto out;
    }
    /* pid stays valid while items sits on this row. */
    if (store_bind_text(up, 1, pid, (size_t)plen) != 0 ||
        store_bind_i64(up, 2, sqlite3_column_int64(items, 1)) != 0 ||
        store_bind_text(up, 3, now, strlen(now)) != 0) {
      store_stmt_done(up);
      goto out;
    }
    if (store_stmt_run(s->c.stmt[sell ? STMT_P_SELL : STMT_P_GIVE_BACK], "move reserved units") !=
        0)
      goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "read reservation items", rc);
    goto out;
  }
  store_stmt_done(items);
  return set_state(s, order_id, len, sell ? STATE_COMMITTED : STATE_RELEASED, now);
out:
  store_stmt_done(items);
  return ret;
}

/* finish() in a savepoint of its own. */
static int finish_whole(inventory_store_t *s, const char *order_id, size_t len, int sell,
                        const char *now) {
  if (inventory__savepoint_begin(s) != 0)
    return STORE_ERROR;
  int ok = finish(s, order_id, len, sell, now) == 0;
  return inventory__savepoint_end(s, ok) == 0 && ok ? 0 : STORE_ERROR;
}

/* Whether the stored items are exactly in's (both sorted by product id). */
static int same_items(inventory_store_t *s, const inventory_reserve_input_t *in, int *same) {
  sqlite3_stmt *st = s->c.stmt[STMT_R_ITEMS];
  size_t i = 0;
  int rc, ret = STORE_ERROR;
  *same = 1;
  if (store_bind_text(st, 1, in->order_id, in->order_id_len) != 0)
    goto out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const inventory_item_t *it = i < in->n_items ? &in->items[i] : NULL;
    size_t plen = (size_t)sqlite3_column_bytes(st, 0);
    const void *pid = sqlite3_column_blob(st, 0);
    if (!it || plen != it->product_id_len || (plen && memcmp(pid, it->product_id, plen)) ||
        sqlite3_column_int64(st, 1) != it->quantity)
      *same = 0;
    i++;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "read reservation items", rc);
    goto out;
  }
  if (i != in->n_items)
    *same = 0;
  ret = 0;
out:
  store_stmt_done(st);
  return ret;
}

/* --- reserve -------------------------------------------------------------------- */

/* A reserve for an order that has a row already. */
static int reserve_again(inventory_store_t *s, const inventory_reserve_input_t *in,
                         const row_t *row, int64_t now_ms, json_t **out) {
  char now[PROTO_ISO_TIME_LEN];
  int same;
  if (strcmp(row->state, STATE_RELEASED) == 0)
    return INVENTORY_STORE_RELEASED; /* a late retry must not hold stock again */
  if (same_items(s, in, &same) != 0)
    return STORE_ERROR;
  if (!same)
    return INVENTORY_STORE_MISMATCH;
  if (strcmp(row->state, STATE_RESERVED) == 0 && row->expires_at <= now_ms) {
    /* Expired, the sweeper has not come by yet: expiry is the stored time,
     * not the sweep's, so release it now. */
    inventory_time_iso(now_ms, now);
    return finish_whole(s, in->order_id, in->order_id_len, 0, now) == 0
               ? INVENTORY_STORE_RELEASED
               : STORE_ERROR;
  }
  return (*out = reply_of(in->order_id, in->order_id_len, row)) ? INVENTORY_STORE_REPLAYED
                                                                 : STORE_ERROR;
}

/* Hold it: 0 with *price/currency set, 1 when the product cannot give it
 * (*problem says why: a detail object), STORE_ERROR. */
static int take(inventory_store_t *s, const inventory_item_t *it, const char *now,
                int64_t *price, char currency[4], json_t **problem) {
  sqlite3_stmt *st = s->c.stmt[STMT_P_TAKE];
  int ret = STORE_ERROR;
  *problem = NULL;
  if (store_bind_text(st, 1, it->product_id, it->product_id_len) != 0 ||
      store_bind_i64(st, 2, it->quantity) != 0 ||
      store_bind_text(st, 3, now, strlen(now)) != 0)
    goto out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *cur = (const char *)sqlite3_column_text(st, 1);
    *price = sqlite3_column_int64(st, 0);
    snprintf(currency, 4, "%s", cur ? cur : "");
    ret = 0;
    goto out;
  }
  if (rc != SQLITE_DONE) {
    store_fail(s->c.db, "reserve units", rc);
    goto out;
  }
  store_stmt_done(st);
  /* Nothing taken: an unknown product, or too few available. */
  st = s->c.stmt[STMT_P_AVAILABLE];
  if (store_bind_text(st, 1, it->product_id, it->product_id_len) != 0)
    goto out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    *problem = json_pack("{s:s, s:s%, s:s}", "field", "items", "productId", it->product_id,
                         it->product_id_len, "message", "no such product");
  } else if (rc == SQLITE_ROW) {
    *problem = json_pack("{s:s, s:s%, s:s, s:I, s:I}", "field", "items", "productId",
                         it->product_id, it->product_id_len, "message", "not enough in stock",
                         "requested", (json_int_t)it->quantity, "available",
                         (json_int_t)sqlite3_column_int64(st, 0));
  } else {
    store_fail(s->c.db, "read availability", rc);
    goto out;
  }
  if (!*problem) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building details");
    goto out;
  }
  ret = 1;
out:
  store_stmt_done(st);
  return ret;
}

/* Record the reservation and its items (the savepoint is open). */
static int record(inventory_store_t *s, const inventory_reserve_input_t *in,
                  const int64_t *prices, int64_t expires_at, const char *now,
                  const char *result) {
  sqlite3_stmt *st = s->c.stmt[STMT_R_INSERT];
  if (store_bind_text(st, 1, in->order_id, in->order_id_len) != 0 ||
      store_bind_text(st, 2, STATE_RESERVED, strlen(STATE_RESERVED)) != 0 ||
      store_bind_i64(st, 3, expires_at) != 0 ||
      store_bind_text(st, 4, now, strlen(now)) != 0 ||
      store_bind_text(st, 5, result, strlen(result)) != 0) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  if (store_stmt_run(s->c.stmt[STMT_R_INSERT], "insert reservation") != 0)
    return STORE_ERROR;
  st = s->c.stmt[STMT_R_ITEM_INSERT];
  for (size_t i = 0; i < in->n_items; i++) {
    const inventory_item_t *it = &in->items[i];
    if (store_bind_text(st, 1, in->order_id, in->order_id_len) != 0 ||
        store_bind_text(st, 2, it->product_id, it->product_id_len) != 0 ||
        store_bind_i64(st, 3, it->quantity) != 0 ||
        store_bind_i64(st, 4, prices[i]) != 0) {
      store_stmt_done(st);
      return STORE_ERROR;
    }
    if (store_stmt_run(s->c.stmt[STMT_R_ITEM_INSERT], "insert reservation item") != 0)
      return STORE_ERROR;
  }
  return 0;
}

int inventory_store_reserve(inventory_store_t *s, const inventory_reserve_input_t *in,
                            int64_t now_ms, int64_t ttl_ms, json_t **out) {
  row_t row;
  char now[PROTO_ISO_TIME_LEN], expires[PROTO_ISO_TIME_LEN];
  int64_t prices[INVENTORY_ITEMS_MAX];
  json_t *items = NULL, *missing = NULL, *short_ = NULL, *result = NULL;
  char *text = NULL;
  int ret = STORE_ERROR, in_sp = 0, ok = 0;
  *out = NULL;
  if (in->n_items < 1 || in->n_items > INVENTORY_ITEMS_MAX || ttl_ms < 1)
    return STORE_EINVAL;
  int rc = get_row(s, in->order_id, in->order_id_len, &row);
  if (rc == 0) {
    ret = reserve_again(s, in, &row, now_ms, out);
    free(row.result);
    return ret;
  }
  if (rc != INVENTORY_STORE_NOT_FOUND)
    return STORE_ERROR;

  inventory_time_iso(now_ms, now);
  inventory_time_iso(now_ms + ttl_ms, expires);
  if (!(items = json_array()) || !(missing = json_array()) || !(short_ = json_array())) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory reserving");
    goto out;
  }
  if (inventory__savepoint_begin(s) != 0)
    goto out;
  in_sp = 1;
  /* Try every item, even after one failed, so the reply names every product
   * that is missing or short; the savepoint undoes the holds that worked. */
  for (size_t i = 0; i < in->n_items; i++) {
    const inventory_item_t *it = &in->items[i];
    char currency[4];
    json_t *problem = NULL;
    rc = take(s, it, now, &prices[i], currency, &problem);
    if (rc < 0)
      goto out;
    if (rc == 1) {
      json_t *to = json_object_get(problem, "available") ? short_ : missing;
      if (json_array_append_new(to, problem) != 0)
        goto out;
      continue;
    }
    if (json_array_append_new(items, json_pack("{s:s%, s:I, s:I, s:s}", "productId",
                                               it->product_id, it->product_id_len,
                                               "quantity", (json_int_t)it->quantity, "price",
                                               (json_int_t)prices[i], "currency",
                                               currency)) != 0)
      goto out;
  }
  /* An unknown product is the more basic mistake: report it first. */
  if (json_array_size(missing) || json_array_size(short_)) {
    ret = json_array_size(missing) ? INVENTORY_STORE_NO_PRODUCT : INVENTORY_STORE_OUT_OF_STOCK;
    *out = json_incref(json_array_size(missing) ? missing : short_);
    goto out; /* ok == 0: rolled back */
  }
  result = json_pack("{s:s%, s:O, s:s, s:s}", "orderId", in->order_id, in->order_id_len,
                     "items", items, "expiresAt", expires, "createdAt", now);
  if (!result || !(text = json_dumps(result, JSON_COMPACT | JSON_ENSURE_ASCII))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory building a reservation");
    goto out;
  }
  if (record(s, in, prices, now_ms + ttl_ms, now, text) != 0)
    goto out;
  if (json_object_set_new(result, "state", json_string(STATE_RESERVED)) != 0)
    goto out;
  ok = 1;
  ret = 0;
out:
  if (in_sp && inventory__savepoint_end(s, ok) != 0)
    ret = STORE_ERROR;
  if (ret == 0) {
    *out = result;
    result = NULL;
  } else if (ret == STORE_ERROR) {
    json_decref(*out);
    *out = NULL;
  }
  free(text);
  json_decref(result);
  json_decref(items);
  json_decref(missing);
  json_decref(short_);
  return ret;
}

/* --- release, commit, sweep ------------------------------------------------------ */

/* A release of an order we never saw: record it as released, so that a
 * reserve arriving after its compensation cannot hold stock. */
static int tombstone(inventory_store_t *s, const char *order_id, size_t len, int64_t now_ms) {
  char now[PROTO_ISO_TIME_LEN];
  sqlite3_stmt *st = s->c.stmt[STMT_R_INSERT];
  inventory_time_iso(now_ms, now);
  if (store_bind_text(st, 1, order_id, len) != 0 ||
      store_bind_text(st, 2, STATE_RELEASED, strlen(STATE_RELEASED)) != 0 ||
      store_bind_i64(st, 3, now_ms) != 0 ||
      store_bind_text(st, 4, now, strlen(now)) != 0 ||
      sqlite3_bind_null(st, 5) != SQLITE_OK) {
    store_stmt_done(st);
    return STORE_ERROR;
  }
  return store_stmt_run(s->c.stmt[STMT_R_INSERT], "record release");
}

/* Release (sell == 0) or commit an order's reservation. */
static int end_reservation(inventory_store_t *s, const char *order_id, size_t len, int sell,
                           int64_t now_ms, json_t **out) {
  row_t row;
  char now[PROTO_ISO_TIME_LEN];
  int ret;
  *out = NULL;
  int rc = get_row(s, order_id, len, &row);
  if (rc == INVENTORY_STORE_NOT_FOUND && !sell) {
    if (tombstone(s, order_id, len, now_ms) != 0)
      return STORE_ERROR;
    row = (row_t){STATE_RELEASED, now_ms, NULL};
  } else if (rc != 0) {
    return rc;
  }
  inventory_time_iso(now_ms, now);
  if (strcmp(row.state, STATE_RESERVED) == 0) {
    /* A commit after the expiry releases instead: expiry is the stored time. */
    int expired = sell && row.expires_at <= now_ms;
    if (finish_whole(s, order_id, len, sell && !expired, now) != 0) {
      ret = STORE_ERROR;
      goto out;
    }
    strcpy(row.state, sell && !expired ? STATE_COMMITTED : STATE_RELEASED);
    if (expired) {
      ret = INVENTORY_STORE_RELEASED;
      goto out;
    }
  } else if (strcmp(row.state, sell ? STATE_RELEASED : STATE_COMMITTED) == 0) {
    ret = sell ? INVENTORY_STORE_RELEASED : INVENTORY_STORE_COMMITTED;
    goto out;
  }
  ret = (*out = reply_of(order_id, len, &row)) ? 0 : STORE_ERROR;
out:
  free(row.result);
  return ret;
}

int inventory_store_release(inventory_store_t *s, const char *order_id, size_t len,
                            int64_t now_ms, json_t **out) {
  return end_reservation(s, order_id, len, 0, now_ms, out);
}

int inventory_store_commit(inventory_store_t *s, const char *order_id, size_t len,
                           int64_t now_ms, json_t **out) {
  return end_reservation(s, order_id, len, 1, now_ms, out);
}

int inventory_store_reservation_get(inventory_store_t *s, const char *order_id, size_t len,
                                    json_t **out) {
  row_t row;
  *out = NULL;
  int rc = get_row(s, order_id, len, &row);
  if (rc != 0)
    return rc; /* NOT_FOUND or STORE_ERROR (logged) */
  *out = reply_of(order_id, len, &row);
  free(row.result);
  return *out ? 0 : STORE_ERROR;
}

int inventory_store_sweep(inventory_store_t *s, int64_t now_ms, int max, int *released) {
  sqlite3_stmt *st = s->c.stmt[STMT_R_EXPIRED];
  char now[PROTO_ISO_TIME_LEN];
  char **ids = NULL;
  int n = 0, rc, ret = STORE_ERROR;
  *released = 0;
  if (max < 1)
    return STORE_EINVAL;
  if (!(ids = calloc((size_t)max, sizeof(*ids)))) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory sweeping");
    return STORE_ERROR;
  }
  /* Collect first: finish() updates the rows this scan walks. */
  if (store_bind_i64(st, 1, now_ms) != 0 || store_bind_i64(st, 2, max) != 0)
    goto out;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 0);
    if (!id || !(ids[n] = strdup(id))) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "out of memory sweeping");
      goto out;
    }
    n++;
  }
  if (n < max && rc != SQLITE_DONE) {
    store_fail(s->c.db, "find expired reservations", rc);
    goto out;
  }
  store_stmt_done(st);
  inventory_time_iso(now_ms, now);
  /* One savepoint each: a failure keeps the ones released before it. */
  for (int i = 0; i < n; i++) {
    if (finish_whole(s, ids[i], strlen(ids[i]), 0, now) != 0)
      goto out;
    (*released)++;
  }
  ret = 0;
out:
  store_stmt_done(st);
  for (int i = 0; ids && i < n; i++)
    free(ids[i]);
  free(ids);
  return ret;
}
