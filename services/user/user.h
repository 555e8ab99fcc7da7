/* user.h: the user service's internal API, shared by store.c, validate.c,
 * handlers.c, main.c and the unit tests. Nothing here is installed.
 *
 * Layers: validate.c turns request data into typed inputs (pure, no I/O);
 * store.c owns the SQLite database; handlers.c glues both to the RPC server.
 */
#ifndef USER_H
#define USER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "proto/rpc_server.h"
#include "proto/util.h"
#include "store/commit_group.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define USER_SERVICE_PORT_DEFAULT 3001
#define USER_DATA_DIR_DEFAULT "./var"
#define USER_DB_FILE "user.db"

#define USER_EMAIL_MAX_BYTES 254       /* RFC 5321 path limit, in octets */
#define USER_EMAIL_LOCAL_MAX_BYTES 64  /* RFC 5321 local-part limit */
#define USER_EMAIL_LABEL_MAX_BYTES 63  /* one domain label */
#define USER_NAME_MAX_CHARS 100        /* Unicode code points, after trimming */
#define USER_ID_MAX_BYTES 128          /* our ids are 37; leave room for others' */
#define USER_PAGE_DEFAULT 1
#define USER_PAGE_MAX 1000000000       /* keeps (page - 1) * limit far from overflow */
#define USER_LIMIT_DEFAULT 10
#define USER_LIMIT_MAX 100             /* larger limits are capped, not rejected */
#define USER_ID_PREFIX "user_"

/* --- validation (validate.c) ------------------------------------------------ */

/* Field errors: the shared list of libvalid (at most VALID_VERR_MAX; an
 * unknown field's name is cut to VALID_VERR_FIELD_MAX_BYTES). */
#define USER_VERR_MAX VALID_VERR_MAX
#define USER_VERR_FIELD_MAX_BYTES VALID_VERR_FIELD_MAX_BYTES
typedef valid_verr_t user_verr_t;
typedef valid_verrs_t user_verrs_t;

/* Inputs borrow their strings from the validated json_t: keep it alive. */
typedef struct user_create_input {
  const char *email;               /* as given (original case) */
  size_t email_len;
  const char *name;                /* trimmed: points inside the JSON string */
  size_t name_len;
} user_create_input_t;

typedef struct user_get_input {
  const char *id;
  size_t id_len;
} user_get_input_t;

typedef struct user_list_input {
  int64_t page;                    /* 1..USER_PAGE_MAX */
  int64_t limit;                   /* 1..USER_LIMIT_MAX */
} user_list_input_t;

typedef struct user_login_input {
  const char *user_id;
  size_t user_id_len;
  char timestamp[PROTO_ISO_TIME_LEN]; /* normalised to 2026-01-01T00:00:00.000Z */
} user_login_input_t;

/* Each validator returns 0 with *out filled, or -1 with the reasons in *errs
 * (errs->n >= 1). Unknown fields are errors ("is not allowed"), except in
 * events (see user_validate_login). */
int user_validate_create(const json_t *data, user_create_input_t *out, user_verrs_t *errs);
int user_validate_get(const json_t *data, user_get_input_t *out, user_verrs_t *errs);
/* data may also be JSON null (every field is optional). */
int user_validate_list(const json_t *data, user_list_input_t *out, user_verrs_t *errs);
/* The user_logged_in event: extra fields are ignored (tolerant reader). */
int user_validate_login(const json_t *data, user_login_input_t *out, user_verrs_t *errs);

/* Building blocks, exposed for tests. Each returns NULL when valid, else the
 * static reason ("must be an email address"). */
const char *user_validate_email(const char *s, size_t len);
/* On success, *start and *trimmed_len give the trimmed name inside s. */
const char *user_validate_name(const char *s, size_t len, size_t *start, size_t *trimmed_len);
/* Accept YYYY-MM-DDTHH:MM:SS[.sss]Z (UTC only); write the canonical form with
 * milliseconds into out. 0 or -1. */
int user_parse_iso_time(const char *s, size_t len, char out[PROTO_ISO_TIME_LEN]);

/* --- storage (store.c) ------------------------------------------------------ */

typedef struct user_store user_store_t;

typedef enum {
  USER_STORE_OK = 0,
  USER_STORE_NOT_FOUND = -1,       /* no such user */
  USER_STORE_EMAIL_TAKEN = -2,     /* unique email index (case-insensitive) */
  USER_STORE_EINVAL = -3,          /* bad argument (e.g. unknown sync mode) */
  USER_STORE_ERROR = -4,           /* SQLite or filesystem failure, logged */
} user_store_rc_t;

/* PRAGMA synchronous values we allow (SQLite's numbering). */
typedef enum {
  USER_SYNC_NORMAL = 1,
  USER_SYNC_FULL = 2,              /* default: WAL fsync on every commit */
  USER_SYNC_EXTRA = 3,
} user_sync_t;

/* "NORMAL", "FULL", "EXTRA" (any case) -> the mode; -1 when unknown. */
int user_sync_parse(const char *s);

/* Create data_dir if missing, open data_dir/user.db (WAL, the given
 * synchronous mode, busy timeout), create or check the schema and prepare the
 * statements. 0 with *out set, or USER_STORE_ERROR (logged). */
int user_store_open(const char *data_dir, user_sync_t sync, user_store_t **out);
/* Finalize statements and close the database. NULL is a no-op. Close the
 * store's commit group first. */
void user_store_close(user_store_t *s);

/* The store's connection, for a commit group (store/commit_group.h). */
sqlite3 *user_store_db(user_store_t *s);
/* Write through g (borrowed; NULL: autocommit, each write durable on its
 * own): writes join the loop turn's transaction, which g commits once at the
 * end of the turn; the caller answers after that COMMIT. */
void user_store_set_group(user_store_t *s, store_group_t *g);
store_group_t *user_store_group(const user_store_t *s);

/* Insert a user; on success *user is the new user object (caller owns), and
 * the row is committed (durable per the synchronous mode), or, with a commit
 * group, in the turn's transaction. email and name
 * must be validated already. USER_STORE_EMAIL_TAKEN or USER_STORE_ERROR. */
int user_store_create(user_store_t *s, const char *email, size_t email_len,
                      const char *name, size_t name_len, json_t **user);
/* *user = the user object (caller owns). USER_STORE_NOT_FOUND or _ERROR. */
int user_store_get(user_store_t *s, const char *id, size_t id_len, json_t **user);
/* One page in creation order; *users a new array, *total every user. */
int user_store_list(user_store_t *s, int64_t page, int64_t limit, json_t **users,
                    int64_t *total);
/* Set lastLoginAt to at (canonical ISO) unless it already holds a later time
 * (events may arrive out of order). USER_STORE_NOT_FOUND when no such user. */
int user_store_record_login(user_store_t *s, const char *id, size_t id_len,
                            const char *at);
/* A cheap read of the users table, for health checks. 0 or USER_STORE_ERROR. */
int user_store_ping(user_store_t *s);
/* The connection's journal_mode (e.g. "wal", into buf) and synchronous level,
 * read back from SQLite: what is in effect, not what was asked. */
int user_store_settings(user_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- RPC handlers (handlers.c) ---------------------------------------------- */

/* Register create_user, get_user, get_users, health and the user_logged_in
 * event on srv. store is borrowed and must outlive the server. With a commit
 * group on the store, a reply that rests on the turn's open transaction (a
 * new user, a 409 or a read that saw an uncommitted row) waits for its
 * COMMIT, and a failed COMMIT answers 500. 0 or a PROTO_E* code. */
int user_handlers_register(proto_rpc_server_t *srv, user_store_t *store);

/* The outcome of one request, independent of the transport: either response
 * (status 200) or err (an error object, status = its statusCode). */
typedef struct user_result {
  int status;
  const char *code;                /* static: "OK" or the error code */
  json_t *response;                /* owned, or NULL */
  json_t *err;                     /* owned, or NULL */
} user_result_t;

/* The operations behind the handlers, callable without a server (tests). */
user_result_t user_op_create(user_store_t *s, const json_t *data);
user_result_t user_op_get(user_store_t *s, const json_t *data);
user_result_t user_op_list(user_store_t *s, const json_t *data);
user_result_t user_op_health(user_store_t *s);
/* The event: returns a result for logging only (events get no reply). */
user_result_t user_op_login(user_store_t *s, const json_t *data);

/* {"statusCode":400,"code":"VALIDATION_FAILED","message":...,"details":[...]}
 * from errs. NULL on ENOMEM. */
json_t *user_validation_error(const user_verrs_t *errs);

#endif
