/* inventory.h: the inventory service's internal API, shared by validate.c,
 * store.c, reservation.c, clock.c, sweeper.c, handlers.c, main.c and the unit
 * tests. Nothing here is installed.
 *
 * Layers: validate.c turns request data into typed inputs (pure, no I/O);
 * store.c owns the SQLite database and the products, reservation.c the
 * reservations on it; handlers.c glues both to the RPC server; sweeper.c
 * releases the reservations nobody confirmed or released in time.
 *
 * Stock: `stock` is what is on hand, reserved units included; `reserved` is
 * what open reservations hold; `available` = stock - reserved is what a new
 * reservation may take. Reserving moves units into `reserved`; releasing
 * moves them back; committing (the order is confirmed) takes them out of both
 * (sold). So 10 on hand, an order of 2 reserved: stock 10, reserved 2,
 * available 8; once committed: stock 8, reserved 0, available 8.
 */
#ifndef INVENTORY_H
#define INVENTORY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "store/conn.h"
#include "store/db.h"
#include "svc/service.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define INVENTORY_SERVICE_PORT_DEFAULT 3005
#define INVENTORY_DB_FILE "inventory.db"

#define INVENTORY_ID_MAX_BYTES 128          /* product id, order id */
#define INVENTORY_NAME_MAX_BYTES 200        /* product name, UTF-8 bytes */
#define INVENTORY_PRICE_MAX 1000000000      /* minor units per unit (10^9) */
#define INVENTORY_STOCK_MAX 1000000000      /* units on hand per product (10^9) */
#define INVENTORY_QUANTITY_MAX 10000        /* units of one product per reservation */
#define INVENTORY_ITEMS_MAX 100             /* distinct products per reservation */
#define INVENTORY_CURRENCY_DEFAULT "USD"
#define INVENTORY_PAGE_DEFAULT 1
#define INVENTORY_PAGE_MAX 1000000000       /* keeps (page - 1) * limit far from overflow */
#define INVENTORY_LIMIT_DEFAULT 10
#define INVENTORY_LIMIT_MAX 100             /* larger limits are capped, not rejected */
#define INVENTORY_PRODUCT_ID_PREFIX "prod_"

/* Reservation time to live: INVENTORY_RESERVATION_TTL_S. */
#define INVENTORY_TTL_S_DEFAULT 900u
#define INVENTORY_TTL_S_MAX (86400u * 30u)
/* How often the sweeper looks for expired reservations:
 * INVENTORY_SWEEP_INTERVAL_MS. */
#define INVENTORY_SWEEP_INTERVAL_MS_DEFAULT 5000u
#define INVENTORY_SWEEP_INTERVAL_MS_MIN 10u
#define INVENTORY_SWEEP_INTERVAL_MS_MAX 3600000u
/* Reservations released per sweep (one loop turn, one transaction); a full
 * batch sweeps again on the next turn. */
#define INVENTORY_SWEEP_BATCH_MAX 256

/* --- validation (validate.c) ------------------------------------------------ */

typedef valid_verrs_t inventory_verrs_t;

/* Inputs borrow their strings from the validated json_t: keep it alive. */
typedef struct inventory_product_input {
  const char *id;                  /* NULL: the store makes a prod_ id */
  size_t id_len;
  const char *name;                /* trimmed of ASCII spaces */
  size_t name_len;
  int64_t price;                   /* minor units, 0..INVENTORY_PRICE_MAX */
  char currency[4];                /* ISO 4217 shape, default USD */
  int64_t stock;                   /* 0..INVENTORY_STOCK_MAX, default 0 */
} inventory_product_input_t;

typedef struct inventory_id_input {
  const char *id;                  /* product id or order id */
  size_t id_len;
} inventory_id_input_t;

typedef struct inventory_list_input {
  int64_t page;
  int64_t limit;
} inventory_list_input_t;

typedef struct inventory_restock_input {
  const char *id;
  size_t id_len;
  int64_t quantity;                /* 1..INVENTORY_STOCK_MAX */
} inventory_restock_input_t;

typedef struct inventory_item {
  const char *product_id;
  size_t product_id_len;
  int64_t quantity;                /* 1..INVENTORY_QUANTITY_MAX */
} inventory_item_t;

/* The canonical item set: one entry per product (quantities of repeated
 * products summed), sorted by product id (bytewise), so that a retry with
 * the items in another order is the same reservation. */
typedef struct inventory_reserve_input {
  const char *order_id;
  size_t order_id_len;
  size_t n_items;                  /* 1..INVENTORY_ITEMS_MAX */
  inventory_item_t items[INVENTORY_ITEMS_MAX];
} inventory_reserve_input_t;

/* Each validator returns 0 with *out filled, or -1 with the reasons in *errs
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"), except an
 * item's "price" (a NestJS order's items carry one; the inventory's own price
 * is the one that counts). */
int inventory_validate_product(const json_t *data, inventory_product_input_t *out,
                               inventory_verrs_t *errs);
/* {id}: get_product. */
int inventory_validate_id(const json_t *data, inventory_id_input_t *out, inventory_verrs_t *errs);
/* {orderId}: release_inventory, commit_inventory, get_reservation. */
int inventory_validate_order_id(const json_t *data, inventory_id_input_t *out,
                                inventory_verrs_t *errs);
/* data may also be JSON null (every field is optional). */
int inventory_validate_list(const json_t *data, inventory_list_input_t *out,
                            inventory_verrs_t *errs);
int inventory_validate_restock(const json_t *data, inventory_restock_input_t *out,
                               inventory_verrs_t *errs);
int inventory_validate_reserve(const json_t *data, inventory_reserve_input_t *out,
                               inventory_verrs_t *errs);

/* --- clock (clock.c) -------------------------------------------------------- */

/* Unix milliseconds, wall clock: expiry times outlive the process. */
int64_t inventory_clock_wall_ms(void *arg);
/* unix_ms as 2026-01-01T00:00:00.000Z. */
void inventory_time_iso(int64_t unix_ms, char out[PROTO_ISO_TIME_LEN]);

/* --- storage (store.c, reservation.c) --------------------------------------- */

typedef struct inventory_store inventory_store_t;

/* The store described once (store/conn.h); svc_def_t.store opens it. */
extern const store_schema_t inventory_store_schema;

/* Return codes: STORE_OK, STORE_EINVAL, STORE_ERROR (store/db.h), and: */
enum {
  INVENTORY_STORE_NOT_FOUND = STORE_RC_SERVICE,          /* no such product / reservation */
  INVENTORY_STORE_EXISTS = STORE_RC_SERVICE - 1,         /* product id taken */
  INVENTORY_STORE_STOCK_LIMIT = STORE_RC_SERVICE - 2,    /* restock past INVENTORY_STOCK_MAX */
  INVENTORY_STORE_OUT_OF_STOCK = STORE_RC_SERVICE - 3,   /* reserve: not enough available */
  INVENTORY_STORE_NO_PRODUCT = STORE_RC_SERVICE - 4,     /* reserve: a product is unknown */
  INVENTORY_STORE_REPLAYED = STORE_RC_SERVICE - 5,       /* reserve: the first result again */
  INVENTORY_STORE_MISMATCH = STORE_RC_SERVICE - 6,       /* reserve: same order, other items */
  INVENTORY_STORE_RELEASED = STORE_RC_SERVICE - 7,       /* reserve/commit: released already */
  INVENTORY_STORE_COMMITTED = STORE_RC_SERVICE - 8,      /* release: sold already */
};

/* Create data_dir if missing, open data_dir/inventory.db (WAL, synchronous =
 * sync, a STORE_SYNC_* level), create or migrate the schema and prepare the
 * statements. 0 with *out set, STORE_EINVAL or STORE_ERROR (logged). */
int inventory_store_open(const char *data_dir, int sync, inventory_store_t **out);
/* NULL is a no-op. Close the store's commit group first. */
void inventory_store_close(inventory_store_t *s);
sqlite3 *inventory_store_db(inventory_store_t *s);
/* A cheap read, for health checks. 0 or STORE_ERROR. */
int inventory_store_ping(inventory_store_t *s);

/* Writes join the transaction open on the connection (the service's commit
 * group: svc_write_begin() first), or autocommit when none is open; the
 * multi-row ones (reserve, release, commit, sweep) run in a SAVEPOINT, so
 * they apply whole or not at all either way. now_ms is Unix milliseconds
 * (the tests pass their own clock). Objects returned are the caller's. */

/* Product: {id, name, price, currency, stock, reserved, available, createdAt,
 * updatedAt}. INVENTORY_STORE_EXISTS when in->id is taken. */
int inventory_store_product_create(inventory_store_t *s, const inventory_product_input_t *in,
                                   int64_t now_ms, json_t **product);
int inventory_store_product_get(inventory_store_t *s, const char *id, size_t id_len,
                                json_t **product);
/* One page in creation order; *total counts every product. */
int inventory_store_product_list(inventory_store_t *s, int64_t page, int64_t limit,
                                 json_t **products, int64_t *total);
/* stock += quantity. NOT_FOUND or STOCK_LIMIT. */
int inventory_store_restock(inventory_store_t *s, const char *id, size_t id_len,
                            int64_t quantity, int64_t now_ms, json_t **product);

/* Reservation: {orderId, state, items:[{productId, quantity, price, currency}],
 * expiresAt, createdAt}; price is the unit price when reserved. */

/* All items or none. STORE_OK: reserved, *out the reservation. REPLAYED: the
 * order already holds this reservation, *out the first result (with the
 * current state). MISMATCH: it holds one with other items. RELEASED: it was
 * released (or expired, or released before it was reserved). NO_PRODUCT /
 * OUT_OF_STOCK: nothing changed, *out the details array, one
 * {field, message, productId[, requested, available]} per product. */
int inventory_store_reserve(inventory_store_t *s, const inventory_reserve_input_t *in,
                            int64_t now_ms, int64_t ttl_ms, json_t **out);
/* Give the units back. STORE_OK also for an unknown order (recorded as
 * released, so a reserve that arrives later is refused rather than held
 * until it expires) and for one released already. COMMITTED: sold. *out the
 * reservation. */
int inventory_store_release(inventory_store_t *s, const char *order_id, size_t len,
                            int64_t now_ms, json_t **out);
/* reserved -> sold. STORE_OK also when committed already. NOT_FOUND, or
 * RELEASED (also when it expired and the sweeper has not run yet). */
int inventory_store_commit(inventory_store_t *s, const char *order_id, size_t len,
                           int64_t now_ms, json_t **out);
/* Read only: the order's reservation with its current state (a stored state:
 * an expired one the sweeper has not reached still reads reserved). NOT_FOUND
 * when the order has none (and, unlike a release, records nothing). */
int inventory_store_reservation_get(inventory_store_t *s, const char *order_id, size_t len,
                                    json_t **out);
/* Release at most max reservations whose expiry is <= now_ms, oldest first;
 * *released how many. */
int inventory_store_sweep(inventory_store_t *s, int64_t now_ms, int max, int *released);

/* --- the service (handlers.c, sweeper.c) ------------------------------------ */

/* The service's own state (svc->app). */
typedef struct inventory_app {
  int64_t (*now_ms)(void *arg);    /* Unix ms; inventory_clock_wall_ms in the daemon */
  void *now_arg;
  int64_t ttl_ms;                  /* INVENTORY_RESERVATION_TTL_S * 1000 */
  uint64_t sweep_interval_ms;
  uv_timer_t sweep_timer;
  int sweep_timer_ready;           /* initialised: close it at the stop */
  uint64_t swept;                  /* reservations expired since start */
} inventory_app_t;

/* Register the inventory patterns on srv, with svc as their context
 * (svc->store an inventory_store_t, svc->app an inventory_app_t). 0 or a
 * PROTO_E* code. */
int inventory_handlers_register(proto_rpc_server_t *srv, svc_t *svc);
/* Log keys of the service. */
void inventory_svc_setup(svc_t *svc);
/* A context for tests: svc_init() + setup; app must be filled by the caller
 * (now_ms, ttl_ms). */
void inventory_svc_init(svc_t *svc, uv_loop_t *loop, inventory_store_t *store,
                        store_group_t *group, inventory_app_t *app);

svc_result_t inventory_op_create_product(svc_t *svc, const json_t *data);
svc_result_t inventory_op_get_product(svc_t *svc, const json_t *data);
svc_result_t inventory_op_get_products(svc_t *svc, const json_t *data);
svc_result_t inventory_op_restock(svc_t *svc, const json_t *data);
svc_result_t inventory_op_reserve(svc_t *svc, const json_t *data);
svc_result_t inventory_op_release(svc_t *svc, const json_t *data);
svc_result_t inventory_op_commit(svc_t *svc, const json_t *data);
svc_result_t inventory_op_get_reservation(svc_t *svc, const json_t *data);
svc_result_t inventory_op_health(svc_t *svc);

/* Read INVENTORY_RESERVATION_TTL_S and INVENTORY_SWEEP_INTERVAL_MS into app
 * (validated; a bad value is logged as config_invalid). 0 or -1. */
int inventory_settings_from_env(inventory_app_t *app);
/* One sweep now, in the turn's transaction: releases expired reservations.
 * Returns how many, or -1 (logged). */
int inventory_sweep_once(svc_t *svc);
/* Start the sweep timer on svc->loop (0 or -1, logged); stop and close it
 * (a no-op when not started). */
int inventory_sweeper_start(svc_t *svc);
void inventory_sweeper_stop(svc_t *svc);

#endif
