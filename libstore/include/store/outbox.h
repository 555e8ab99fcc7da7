/* store/outbox.h: the transactional outbox. The events a request causes are
 * written to the `outbox` table of the service's own database on the same
 * connection, inside the caller's transaction, so they commit with the data
 * or not at all. A relay (svc/outbox.h) later reads the unsent rows in id
 * order, publishes them with their stored eventId and metadata, and marks
 * them sent; sent rows are deleted once past a retention.
 *
 * Schema: a service appends STORE_OUTBOX_MIGRATION to its own migration list
 * (store_schema_t.steps) as one more step, and opens the outbox on the
 * store's connection with store_outbox_open() (its statements are cached
 * there, apart from the service's own). Everything runs on the loop thread;
 * writes run in whatever transaction the caller opened, else autocommit.
 * Return codes: STORE_OK, STORE_EINVAL, STORE_ERROR (logged as
 * "storage_error" with the op string named below).
 */
#ifndef STORE_OUTBOX_H
#define STORE_OUTBOX_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "proto/util.h"
#include "store/db.h"

/* The DDL of the outbox, a migration step of the service's list. id is
 * AUTOINCREMENT so an id is never reused after the newest row was purged: the
 * relay's cursor (the last id handed over) stays valid. event_id is UNIQUE:
 * a row is one event. The partial indexes serve the two scans, the unsent
 * rows in id order and the sent rows by age. */
#define STORE_OUTBOX_MIGRATION_SQL                                                 \
  "CREATE TABLE outbox ("                                                          \
  " id INTEGER PRIMARY KEY AUTOINCREMENT,"                                         \
  " pattern TEXT NOT NULL CHECK (length(pattern) > 0),"                            \
  " data TEXT NOT NULL,"                                                           \
  " metadata TEXT NOT NULL,"                                                       \
  " event_id TEXT NOT NULL UNIQUE,"                                                \
  " created_at TEXT NOT NULL,"                                                     \
  " sent_at TEXT);"                                                                \
  "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;"               \
  "CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;"
#define STORE_OUTBOX_MIGRATION {STORE_OUTBOX_MIGRATION_SQL}

typedef struct store_outbox store_outbox_t;

/* The outbox on db (borrowed: close the outbox before the connection), its
 * statements prepared. db must have the table (STORE_OUTBOX_MIGRATION ran).
 * STORE_OK with *out; STORE_EINVAL; STORE_ERROR (logged as "outbox_prepare").
 * On failure *out is NULL. */
int store_outbox_open(sqlite3 *db, store_outbox_t **out);

/* Finalize the statements and free o. NULL is a no-op. */
void store_outbox_close(store_outbox_t *o);

/* Insert one event: pattern, data (borrowed; NULL is JSON null) as compact
 * JSON text, and metadata {"requestId" (when request_id is not NULL),
 * "eventId" (new: "evt_<32 hex>"), "occurredAt" (now, ISO 8601)}, the keys the
 * publisher would set. event_id_out (may be NULL) receives the eventId.
 * STORE_OK; STORE_EINVAL (empty pattern, text that is not UTF-8, data that
 * cannot be encoded); STORE_ERROR (no random id, ENOMEM, or SQLite: logged as
 * "outbox_insert"). */
int store_outbox_insert(store_outbox_t *o, const char *pattern, const json_t *data,
                        const char *request_id, char event_id_out[PROTO_ID_MAX]);

/* One unsent row, borrowed for the duration of the callback only. */
typedef struct store_outbox_row {
  int64_t id;
  const char *pattern;
  const char *data;                /* JSON text */
  const char *metadata;            /* JSON object text, with eventId and occurredAt */
  const char *event_id;
} store_outbox_row_t;

/* Non-zero stops the scan (the row was not taken). */
typedef int (*store_outbox_row_fn)(const store_outbox_row_t *row, void *arg);

/* Call fn for the unsent rows with id > after_id, in id order, at most limit
 * (> 0) of them, until fn returns non-zero. *n_out (may be NULL) counts the
 * calls that returned 0. The statement is reset before returning (no read
 * transaction stays open); fn must not use the outbox. STORE_OK, STORE_EINVAL,
 * STORE_ERROR (logged as "outbox_unsent"). */
int store_outbox_unsent(store_outbox_t *o, int64_t after_id, int limit, store_outbox_row_fn fn,
                        void *arg, int *n_out);

/* Mark row id sent at sent_at (ISO 8601). A row already marked, or gone,
 * is not an error (a re-send after a crash marks it again). STORE_OK,
 * STORE_EINVAL, STORE_ERROR (logged as "outbox_mark_sent"). */
int store_outbox_mark_sent(store_outbox_t *o, int64_t id, const char *sent_at);

/* Delete at most limit (> 0) rows sent before `before` (ISO 8601, compared as
 * text: same format), oldest first; *deleted (may be NULL) gets the count.
 * STORE_OK, STORE_EINVAL, STORE_ERROR (logged as "outbox_purge"). */
int store_outbox_purge(store_outbox_t *o, const char *before, int limit, int64_t *deleted);

/* The number of unsent rows (health, tests). STORE_OK or STORE_ERROR (logged
 * as "outbox_count"). */
int store_outbox_count_unsent(store_outbox_t *o, int64_t *out);

#endif
