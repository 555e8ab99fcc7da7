/* store/conn.h: a service's store as data. Each store.c describes its
 * database once (file, migrations, cached statements) in a store_schema_t;
 * store_open() does what every store's open did -- check the sync level,
 * store_db_open() with the migrations, prepare the statements, log
 * "store_opened" -- and store_close() undoes it. libsvc opens and closes a
 * service's store through the same schema (svc_def_t.store), so no service
 * writes adapters for it.
 *
 * The service's store struct begins with a store_conn_t and owns nothing
 * else (store_close() frees the block):
 *
 *   struct user_store { store_conn_t c; };
 *   const store_schema_t user_store_schema = {.file = USER_DB_FILE, ...,
 *                                             .size = sizeof(struct user_store)};
 *
 * A pointer to the struct and a pointer to its first member convert to each
 * other (C11 6.7.2.1p15), so store_conn_t * is the struct's address.
 */
#ifndef STORE_CONN_H
#define STORE_CONN_H

#include <sqlite3.h>
#include <stddef.h>

#include "store/db.h"

typedef struct store_schema {
  const char *file;                /* under DATA_DIR: "user.db" */
  unsigned flags;                  /* STORE_DB_* */
  const store_db_migration_t *steps; /* steps[i]: version i -> i+1 */
  int version;                     /* the schema version this code writes: steps' count */
  const char *const *sql;          /* the cached statements, sql[i] -> stmt[i] */
  int n_stmt;
  size_t size;                     /* sizeof the service's store struct (>= store_conn_t) */
} store_schema_t;

typedef struct store_conn {
  sqlite3 *db;                     /* one connection, loop thread only */
  char *path;                      /* the file's path, for log lines */
  sqlite3_stmt **stmt;             /* n_stmt prepared statements, persistent */
  int n_stmt;
} store_conn_t;

/* Open data_dir/schema->file with synchronous = sync (STORE_SYNC_*), migrate
 * it to schema->version, prepare the statements and log "store_opened".
 * *out is a zeroed block of schema->size bytes with its store_conn_t filled
 * in. STORE_OK; STORE_EINVAL for a bad sync level (or schema); STORE_ERROR
 * (logged) otherwise. On failure *out is NULL and nothing is left open. */
int store_open(const char *data_dir, int sync, const store_schema_t *schema, store_conn_t **out);

/* Finalize the statements, close the connection and free the block. NULL is
 * a no-op. */
void store_close(store_conn_t *c);

/* The journal mode and synchronous level in effect: STORE_OK or STORE_ERROR. */
int store_conn_settings(store_conn_t *c, char *journal_mode, size_t size, int *sync);

#endif
