/* db.c: open, configure and migrate a service's SQLite database, and the
 * helpers every store used to carry its own copy of. Log lines are the ones
 * the services wrote before (tests and operators grep for them).
 */
#include "store/db.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "proto/config.h"
#include "proto/error.h"
#include "proto/log.h"

/* How long a statement waits for another connection's lock (a backup tool, a
 * second process by mistake) before failing. We run on the event loop thread,
 * so keep it short: with WAL, readers never wait at all. */
#define STORE_DB_BUSY_TIMEOUT_MS 1000
#define STORE_DATA_DIR_MODE 0750
#define STORE_JOURNAL_MODE_LEN 16

int store_sync_parse(const char *v) {
  if (!v)
    return -1;
  if (strcasecmp(v, "NORMAL") == 0)
    return STORE_SYNC_NORMAL;
  if (strcasecmp(v, "FULL") == 0)
    return STORE_SYNC_FULL;
  if (strcasecmp(v, "EXTRA") == 0)
    return STORE_SYNC_EXTRA;
  return -1;
}

int store_sync_from_env(int *out) {
  const char *v = proto_config_str("SQLITE_SYNCHRONOUS", "FULL");
  int sync = store_sync_parse(v);
  if (sync < 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "config_invalid",
              "SQLITE_SYNCHRONOUS=%s: expected NORMAL, FULL or EXTRA", v);
    return PROTO_EINVAL;
  }
  *out = sync;
  return 0;
}

int store_db_fail(sqlite3 *db, const char *op, int rc) {
  proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s (%d): %s", op, sqlite3_errstr(rc),
            rc, db ? sqlite3_errmsg(db) : "no connection");
  return PROTO_EIO;
}

int store_db_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", sql,
              msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return PROTO_EIO;
  }
  return 0;
}

int store_db_query_one(sqlite3 *db, const char *sql, int *ival, char *tval, size_t tsize) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  int ret = PROTO_EIO;
  if (rc != SQLITE_OK) {
    store_db_fail(db, sql, rc);
    goto out;
  }
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    store_db_fail(db, sql, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
    goto out;
  }
  if (ival)
    *ival = sqlite3_column_int(st, 0);
  if (tval) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(tval, tsize, "%s", t ? (const char *)t : "");
  }
  ret = 0;
out:
  sqlite3_finalize(st);
  return ret;
}

void store_stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st); /* its return repeats the step error already handled */
  sqlite3_clear_bindings(st);
}

int store_db_settings(sqlite3 *db, char *journal_mode, size_t size, int *sync) {
  if (store_db_query_one(db, "PRAGMA journal_mode", NULL, journal_mode, size) != 0 ||
      store_db_query_one(db, "PRAGMA synchronous", sync, NULL, 0) != 0)
    return PROTO_EIO;
  return 0;
}

int store_db_log_opened(sqlite3 *db, const char *path, int schema_version) {
  char mode[STORE_JOURNAL_MODE_LEN];
  int level = -1;
  if (store_db_settings(db, mode, sizeof(mode), &level) != 0)
    return PROTO_EIO;
  json_t *f = json_pack("{s:s, s:s, s:i, s:i}", "path", path, "journalMode", mode,
                        "synchronous", level, "schemaVersion", schema_version);
  proto_log_fields(PROTO_LOG_INFO, NULL, "store_opened", f);
  return 0;
}

int store_db_prepare(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **stmts) {
  for (int i = 0; i < n; i++)
    stmts[i] = NULL;
  for (int i = 0; i < n; i++) {
    int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts[i], NULL);
    if (rc != SQLITE_OK) {
      store_db_fail(db, sql[i], rc);
      store_db_finalize(stmts, n);
      return PROTO_EIO;
    }
  }
  return 0;
}

void store_db_finalize(sqlite3_stmt **stmts, int n) {
  for (int i = 0; i < n; i++) {
    sqlite3_finalize(stmts[i]); /* NULL is a no-op */
    stmts[i] = NULL;
  }
}

/* mkdir -p, so DATA_DIR=/var/lib/nestc/<svc> works on a fresh machine. */
static int make_dirs(const char *dir) {
  char *p = strdup(dir);
  int ret = PROTO_EIO;
  if (!p)
    return PROTO_ENOMEM;
  for (char *c = p + 1;; c++) {
    if (*c != '/' && *c != '\0')
      continue;
    char saved = *c;
    *c = '\0';
    if (mkdir(p, STORE_DATA_DIR_MODE) != 0 && errno != EEXIST) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "mkdir %s: %s", p, strerror(errno));
      goto out;
    }
    *c = saved;
    if (saved == '\0')
      break;
  }
  struct stat stt;
  if (stat(dir, &stt) != 0 || !S_ISDIR(stt.st_mode)) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s is not a directory", dir);
    goto out;
  }
  ret = 0;
out:
  free(p);
  return ret;
}

static int configure(sqlite3 *db, const char *path, int sync, unsigned flags) {
  static const char *const sync_sql[] = {
      [STORE_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
      [STORE_SYNC_FULL] = "PRAGMA synchronous = FULL",
      [STORE_SYNC_EXTRA] = "PRAGMA synchronous = EXTRA",
  };
  char mode[STORE_JOURNAL_MODE_LEN];
  int rc;
  if ((rc = sqlite3_extended_result_codes(db, 1)) != SQLITE_OK ||
      (rc = sqlite3_busy_timeout(db, STORE_DB_BUSY_TIMEOUT_MS)) != SQLITE_OK)
    return store_db_fail(db, "configure", rc);
  /* journal_mode answers with the mode in effect: check it took. */
  if (store_db_query_one(db, "PRAGMA journal_mode = WAL", NULL, mode, sizeof(mode)) != 0)
    return PROTO_EIO;
  if (strcasecmp(mode, "wal") != 0) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: journal_mode is %s, not wal", path,
              mode);
    return PROTO_EIO;
  }
  /* In WAL mode, FULL fsyncs the WAL at every commit, so an autocommit
   * statement that returned SQLITE_DONE survives power loss; NORMAL only
   * syncs at checkpoints (a committed row can be lost, the file stays
   * consistent). */
  if (store_db_exec(db, sync_sql[sync]) != 0)
    return PROTO_EIO;
  (void)flags; /* foreign keys go on after migrating: see migrate() */
  return 0;
}

/* Foreign keys that point nowhere, as PRAGMA foreign_key_check finds them
 * (inside the migration's transaction): 0 when there are none. */
static int check_foreign_keys(sqlite3 *db, const char *path) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL);
  if (rc != SQLITE_OK)
    return store_db_fail(db, "PRAGMA foreign_key_check", rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s: migrating would leave a row of %s with a dangling foreign key", path,
              (const char *)sqlite3_column_text(st, 0));
  else if (rc != SQLITE_DONE)
    store_db_fail(db, "PRAGMA foreign_key_check", rc);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : PROTO_EIO;
}

static int migrate(sqlite3 *db, const char *path, const store_db_migration_t *steps,
                   int nsteps, unsigned flags) {
  int version = 0;
  if (store_db_query_one(db, "PRAGMA user_version", &version, NULL, 0) != 0)
    return PROTO_EIO;
  if (version > nsteps) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "%s has schema version %d; this build knows up to %d: refusing to open", path,
              version, nsteps);
    return PROTO_EIO;
  }
  if (version == nsteps)
    return 0;
  /* One transaction per step: a crash leaves the previous version intact.
   * Foreign keys are still off (SQLite's default), as SQLite's recipe for
   * rebuilding a table asks; with STORE_DB_FOREIGN_KEYS each step is checked
   * before it commits instead. */
  for (int v = version; v < nsteps; v++) {
    char *sql = sqlite3_mprintf("BEGIN IMMEDIATE;%sPRAGMA user_version = %d;", steps[v].sql,
                                v + 1);
    if (!sql) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: out of memory migrating", path);
      return PROTO_ENOMEM;
    }
    int rc = store_db_exec(db, sql);
    sqlite3_free(sql);
    if (rc == 0 && (flags & STORE_DB_FOREIGN_KEYS))
      rc = check_foreign_keys(db, path);
    if (rc == 0)
      rc = store_db_exec(db, "COMMIT");
    if (rc != 0) {
      if (!sqlite3_get_autocommit(db))
        store_db_exec(db, "ROLLBACK");
      return PROTO_EIO;
    }
  }
  proto_log(PROTO_LOG_INFO, NULL, "schema_migrated", "%s: schema version %d -> %d", path,
            version, nsteps);
  return 0;
}

int store_db_open(const char *data_dir, const char *file, int sync, unsigned flags,
                  const store_db_migration_t *steps, int nsteps, sqlite3 **out,
                  char **path_out) {
  sqlite3 *db = NULL;
  char *path = NULL;
  int rc, ret = PROTO_EIO;
  *out = NULL;
  *path_out = NULL;
  if (sync != STORE_SYNC_NORMAL && sync != STORE_SYNC_FULL && sync != STORE_SYNC_EXTRA)
    return PROTO_EINVAL;
  if (make_dirs(data_dir) != 0)
    return PROTO_EIO;
  size_t plen = strlen(data_dir) + 1 + strlen(file) + 1;
  if (!(path = malloc(plen))) {
    ret = PROTO_ENOMEM;
    goto out;
  }
  snprintf(path, plen, "%s/%s", data_dir, file);
  /* NOMUTEX: one connection, used only from the loop thread. */
  rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                       NULL);
  if (rc != SQLITE_OK) {
    store_db_fail(db, path, rc);
    goto out;
  }
  if (configure(db, path, sync, flags) != 0 || migrate(db, path, steps, nsteps, flags) != 0)
    goto out;
  if ((flags & STORE_DB_FOREIGN_KEYS) && store_db_exec(db, "PRAGMA foreign_keys = ON") != 0)
    goto out;
  *out = db;
  *path_out = path;
  db = NULL;
  path = NULL;
  ret = 0;
out:
  store_db_close(db, path);
  return ret;
}

void store_db_close(sqlite3 *db, char *path) {
  if (db) {
    int rc = sqlite3_close(db);
    if (rc != SQLITE_OK)
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "close %s: %s", path ? path : "?",
                sqlite3_errstr(rc));
  }
  free(path);
}
