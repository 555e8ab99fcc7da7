/* store/db.h: opening a service's SQLite database the one way every service
 * does it: mkdir -p DATA_DIR, open $DATA_DIR/<file> (one NOMUTEX connection
 * for the loop thread), WAL + the chosen synchronous level + a short busy
 * timeout, PRAGMA user_version checked (a newer schema is refused) and the
 * missing migration steps run, each in its own transaction. Plus the small
 * helpers the stores share: exec with logging, one-value pragma queries,
 * cached statement arrays. Every SQLite error is logged here as
 * "storage_error"; functions return 0 or PROTO_EIO (PROTO_EINVAL for a bad
 * sync level).
 */
#ifndef STORE_DB_H
#define STORE_DB_H

#include <sqlite3.h>
#include <stddef.h>

/* Return codes of the services' stores: 0, the two every store shares, and
 * the codes a service adds for its own outcomes (NOT_FOUND, CONFLICT, ...),
 * numbered from STORE_RC_SERVICE downwards. */
enum {
  STORE_OK = 0,
  STORE_EINVAL = -1,     /* a bad argument */
  STORE_ERROR = -2,      /* SQLite or filesystem failure, logged */
  STORE_RC_SERVICE = -16,
};

/* PRAGMA synchronous levels, as SQLite numbers them. */
enum {
  STORE_SYNC_NORMAL = 1,
  STORE_SYNC_FULL = 2,   /* WAL fsync on every commit */
  STORE_SYNC_EXTRA = 3,
};

/* SQLITE_SYNCHRONOUS value (NORMAL|FULL|EXTRA, any case) -> STORE_SYNC_*,
 * -1 for anything else or NULL. */
int store_sync_parse(const char *v);

/* SQLITE_SYNCHRONOUS from the environment (default FULL) into *out. 0, or
 * PROTO_EINVAL with a config_invalid line naming the value and the choices. */
int store_sync_from_env(int *out);

/* One migration step: the DDL that brings the schema from version i to i+1
 * (steps[i]). store_db_open() wraps it as
 * "BEGIN IMMEDIATE;<sql>PRAGMA user_version = i+1;COMMIT;". */
typedef struct store_db_migration {
  const char *sql;
} store_db_migration_t;

/* store_db_open() flags. */
#define STORE_DB_FOREIGN_KEYS 0x1u /* PRAGMA foreign_keys = ON once migrated; each migration
                                    * step must pass PRAGMA foreign_key_check to commit */

/* Open data_dir/file with synchronous = sync (STORE_SYNC_*) and bring its
 * schema to version nsteps. On success *out is the connection and *path_out
 * the file's path (malloc'd, for log lines); free both with
 * store_db_close(). On failure both are NULL and everything is released.
 * Logs "schema_migrated" when steps ran. */
int store_db_open(const char *data_dir, const char *file, int sync, unsigned flags,
                  const store_db_migration_t *steps, int nsteps, sqlite3 **out,
                  char **path_out);

/* Close db (NULL: no-op) and free path; a failed close is logged. Finalize
 * the statements first. */
void store_db_close(sqlite3 *db, char *path);

/* Log a failed SQLite call as storage_error "op: errstr (rc): errmsg".
 * Returns PROTO_EIO. db may be NULL. */
int store_db_fail(sqlite3 *db, const char *op, int rc);

/* Run SQL that returns no rows we need (pragmas, DDL, BEGIN/COMMIT). */
int store_db_exec(sqlite3 *db, const char *sql);

/* One-row, one-column query (a pragma) into an int and/or a text buffer
 * (either may be NULL). */
int store_db_query_one(sqlite3 *db, const char *sql, int *ival, char *tval, size_t tsize);

/* The journal mode and synchronous level in effect. */
int store_db_settings(sqlite3 *db, char *journal_mode, size_t size, int *sync);

/* Log "store_opened" {path, journalMode, synchronous, schemaVersion}. */
int store_db_log_opened(sqlite3 *db, const char *path, int schema_version);

/* Prepare n persistent statements, sql[i] into stmts[i]. On failure the
 * ones prepared are finalized and every stmts[i] is NULL. */
int store_db_prepare(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **stmts);

/* Finalize n statements (NULL entries are fine) and set them to NULL. */
void store_db_finalize(sqlite3_stmt **stmts, int n);

/* Every use of a cached statement ends here, also on error, so the next use
 * starts clean and no read transaction stays open. */
void store_stmt_done(sqlite3_stmt *st);

#endif
