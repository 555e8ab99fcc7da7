/* store_priv.h: what store.c and reservation.c share of the inventory
 * database: the statement cache and small binding helpers. Internal to the
 * store: handlers and tests go through inventory.h.
 */
#ifndef INVENTORY_STORE_PRIV_H
#define INVENTORY_STORE_PRIV_H

#include <sqlite3.h>

#include "inventory.h"

enum {
  STMT_P_INSERT,
  STMT_P_GET,
  STMT_P_LIST,
  STMT_P_COUNT,
  STMT_P_RESTOCK,
  STMT_P_EXISTS,
  STMT_P_PING,
  STMT_P_TAKE,
  STMT_P_AVAILABLE,
  STMT_P_GIVE_BACK,
  STMT_P_SELL,
  STMT_R_GET,
  STMT_R_ITEMS,
  STMT_R_INSERT,
  STMT_R_ITEM_INSERT,
  STMT_R_SET_STATE,
  STMT_R_EXPIRED,
  STMT_SP_BEGIN,
  STMT_SP_ROLLBACK,
  STMT_SP_RELEASE,
  STMT_COUNT_ALL_,
};

struct inventory_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[STMT_COUNT_ALL_];
  char *path;                      /* for log lines */
};

/* Log a failed call (store_db_fail) and return STORE_ERROR. */
int inventory__fail(inventory_store_t *s, const char *op, int rc);
/* Bind text / int64 at idx: 0 or STORE_ERROR (logged). */
int inventory__bind_text(inventory_store_t *s, sqlite3_stmt *st, int idx, const char *v,
                         size_t len);
int inventory__bind_i64(inventory_store_t *s, sqlite3_stmt *st, int idx, int64_t v);
/* Step a statement that returns no row we need, then reset it: 0 or
 * STORE_ERROR (logged as op). */
int inventory__exec(inventory_store_t *s, int stmt, const char *op);

/* A SAVEPOINT around a multi-row write: begin; then end with ok != 0 to keep
 * it (RELEASE) or 0 to undo it (ROLLBACK TO, then RELEASE). Inside the
 * group's transaction it nests; in autocommit it is the transaction. */
int inventory__savepoint_begin(inventory_store_t *s);
int inventory__savepoint_end(inventory_store_t *s, int ok);

#endif
