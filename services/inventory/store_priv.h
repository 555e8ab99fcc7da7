/* store_priv.h: what store.c and reservation.c share of the inventory
 * database: the statement cache and the savepoint helpers (binding and stepping
 * helpers are libstore's store/stmt.h). Internal to the
 * store: handlers and tests go through inventory.h.
 */
#ifndef INVENTORY_STORE_PRIV_H
#define INVENTORY_STORE_PRIV_H

#include <sqlite3.h>

#include "inventory.h"
#include "store/stmt.h"

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
  store_conn_t c;                  /* first: libstore opens and closes it (store/conn.h);
                                    * c.stmt[STMT_*] */
};

/* A SAVEPOINT around a multi-row write: begin; then end with ok != 0 to keep
 * it (RELEASE) or 0 to undo it (ROLLBACK TO, then RELEASE). Inside the
 * group's transaction it nests; in autocommit it is the transaction. */
int inventory__savepoint_begin(inventory_store_t *s);
int inventory__savepoint_end(inventory_store_t *s, int ok);

#endif
