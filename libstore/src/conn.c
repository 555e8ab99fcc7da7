/* conn.c: open and close a service's store from its schema (store/conn.h):
 * the open sequence every store.c used to repeat.
 */
#include "store/conn.h"

#include <stdlib.h>

static int sync_valid(int sync) {
  return sync == STORE_SYNC_NORMAL || sync == STORE_SYNC_FULL || sync == STORE_SYNC_EXTRA;
}

int store_open(const char *data_dir, int sync, const store_schema_t *schema, store_conn_t **out) {
  store_conn_t *c = NULL;
  int ret = STORE_ERROR;
  *out = NULL;
  if (!sync_valid(sync) || schema->size < sizeof(store_conn_t) || schema->n_stmt < 0)
    return STORE_EINVAL;
  if (!(c = calloc(1, schema->size)) ||
      (schema->n_stmt > 0 && !(c->stmt = calloc((size_t)schema->n_stmt, sizeof(*c->stmt)))))
    goto out;
  c->n_stmt = schema->n_stmt;
  /* WAL, synchronous = sync (FULL: a commit is fsynced before anyone is
   * answered), busy timeout, the schema checked and migrated. */
  if (store_db_open(data_dir, schema->file, sync, schema->flags, schema->steps, schema->version,
                    &c->db, &c->path) != 0 ||
      store_db_prepare(c->db, schema->sql, c->n_stmt, c->stmt) != 0 ||
      store_db_log_opened(c->db, c->path, schema->version) != 0)
    goto out;
  *out = c;
  c = NULL;
  ret = STORE_OK;
out:
  store_close(c);
  return ret;
}

void store_close(store_conn_t *c) {
  if (!c)
    return;
  if (c->stmt)
    store_db_finalize(c->stmt, c->n_stmt);
  free(c->stmt);
  store_db_close(c->db, c->path);
  free(c);
}

int store_conn_settings(store_conn_t *c, char *journal_mode, size_t size, int *sync) {
  return store_db_settings(c->db, journal_mode, size, sync) == 0 ? STORE_OK : STORE_ERROR;
}
