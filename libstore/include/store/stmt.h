/* store/stmt.h: the small statement helpers every service's store used to
 * carry its own copy of: bind with the size check, read a text column as
 * JSON, run a statement that returns no rows, the "exists", count and ping
 * queries, and the loop that turns a SELECT's rows into a JSON array.
 *
 * Every failure is logged as "storage_error" "<op>: <errstr> (<rc>): <errmsg>"
 * (store_db_fail, with the statement's own connection) and returns
 * STORE_ERROR; the op strings are the callers', so the lines stay the ones
 * operators grep for. Functions that step a statement end with
 * store_stmt_done() unless they say otherwise.
 */
#ifndef STORE_STMT_H
#define STORE_STMT_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store/db.h"

/* Log a failed SQLite call on db as op (store_db_fail) and return
 * STORE_ERROR. db may be NULL. */
int store_fail(sqlite3 *db, const char *op, int rc);

/* Bind len bytes of v at idx, SQLITE_STATIC (v must outlive the step);
 * v NULL binds SQL NULL. More than INT_MAX bytes is SQLITE_TOOBIG. 0 or
 * STORE_ERROR (logged as "bind"). */
int store_bind_text(sqlite3_stmt *st, int idx, const char *v, size_t len);
/* The same for a NUL-terminated string (NULL: SQL NULL). */
int store_bind_str(sqlite3_stmt *st, int idx, const char *v);
/* Bind an integer: 0 or STORE_ERROR (logged as "bind"). */
int store_bind_i64(sqlite3_stmt *st, int idx, int64_t v);

/* Column col of the current row as a new JSON string; NULL for SQL NULL, on
 * ENOMEM or text that is not UTF-8 (so json_pack's "o" fails the object). */
json_t *store_column_text(sqlite3_stmt *st, int col);
/* The same, but SQL NULL is JSON null. */
json_t *store_column_json(sqlite3_stmt *st, int col);

/* Step st (bound by the caller) once, expecting SQLITE_DONE: a statement
 * that returns no rows (INSERT, UPDATE, SAVEPOINT ...). Resets it. 0 or
 * STORE_ERROR (logged as op). */
int store_stmt_run(sqlite3_stmt *st, const char *op);

/* Bind key at ?1 and step a "SELECT 1 ... WHERE key = ?1": 0 when a row
 * came back, not_found when none did, STORE_ERROR (logged as op) on
 * failure. Resets it. */
int store_stmt_exists(sqlite3_stmt *st, const char *key, size_t len, int not_found,
                      const char *op);

/* Step st (bound by the caller), which returns one row, and read column 0
 * into *out (a COUNT(*)). No row is an error. Resets it. 0 or STORE_ERROR
 * (logged as op). */
int store_stmt_count(sqlite3_stmt *st, const char *op, int64_t *out);

/* Step a cheap read ("SELECT 1 FROM t LIMIT 1"): 0 when the database
 * answers, a row or none, else STORE_ERROR (logged as "ping"). Resets it. */
int store_stmt_ping(sqlite3_stmt *st);

/* Build the value of the current row (a new reference), or NULL on failure
 * (logged by the function, or by store_stmt_rows when it has a message). */
typedef json_t *(*store_row_fn)(sqlite3_stmt *st, void *arg);

/* Step st (bound by the caller) to the end, appending row(st, arg) for each
 * row to a new array: 0 with *out the array (owned by the caller), or
 * STORE_ERROR with *out NULL. A NULL from row, or an append that fails, is
 * logged as storage_error build_error (NULL: logged by row, or not at all);
 * a step error is logged as op. st is NOT reset: the caller, which bound it,
 * ends it with store_stmt_done(). */
int store_stmt_rows(sqlite3_stmt *st, store_row_fn row, void *arg, const char *op,
                    const char *build_error, json_t **out);

/* Bind key at ?1 and step a "SELECT ... WHERE key = ?1" that returns at most
 * one row: 0 with *out = row(st, arg) (owned by the caller), not_found when
 * no row came back, STORE_ERROR with *out NULL on a step error (logged as
 * op) or a NULL from row (logged as build_error, as store_stmt_rows does).
 * Resets it. */
int store_stmt_get(sqlite3_stmt *st, const char *key, size_t len, int not_found,
                   store_row_fn row, void *arg, const char *op, const char *build_error,
                   json_t **out);

#endif
