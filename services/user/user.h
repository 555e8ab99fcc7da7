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
#include "store/conn.h"
#include "store/db.h"
#include "svc/service.h"
#include "valid/valid.h"

/* --- limits ---------------------------------------------------------------- */

#define USER_SERVICE_PORT_DEFAULT 3001
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

/* The store described once (store/conn.h); svc_def_t.store opens it. */
extern const store_schema_t user_store_schema;

/* Return codes: STORE_OK, STORE_EINVAL, STORE_ERROR (store/db.h), and: */
enum {
  USER_STORE_NOT_FOUND = STORE_RC_SERVICE,     /* no such user */
  USER_STORE_EMAIL_TAKEN = STORE_RC_SERVICE - 1, /* unique email index (case-insensitive) */
};

/* Create data_dir if missing, open data_dir/user.db (WAL, synchronous =
 * sync, a STORE_SYNC_* level; busy timeout), create or check the schema and
 * prepare the statements. 0 with *out set, STORE_EINVAL or STORE_ERROR
 * (logged). */
int user_store_open(const char *data_dir, int sync, user_store_t **out);
/* Finalize statements and close the database. NULL is a no-op. Close the
 * store's commit group first. */
void user_store_close(user_store_t *s);

/* The store's connection, for a commit group (store/commit_group.h). */
sqlite3 *user_store_db(user_store_t *s);

/* Writes (create, record_login) join the transaction open on the connection
 * (the service's commit group: svc_write_begin() first), or autocommit, each
 * durable on its own, when none is open. */

/* Insert a user; on success *user is the new user object (caller owns).
 * email and name must be validated already. USER_STORE_EMAIL_TAKEN or
 * STORE_ERROR. */
int user_store_create(user_store_t *s, const char *email, size_t email_len,
                      const char *name, size_t name_len, json_t **user);
/* *user = the user object (caller owns). USER_STORE_NOT_FOUND or STORE_ERROR. */
int user_store_get(user_store_t *s, const char *id, size_t id_len, json_t **user);
/* One page in creation order; *users a new array, *total every user. */
int user_store_list(user_store_t *s, int64_t page, int64_t limit, json_t **users,
                    int64_t *total);
/* Set lastLoginAt to at (canonical ISO) unless it already holds a later time
 * (events may arrive out of order). USER_STORE_NOT_FOUND when no such user. */
int user_store_record_login(user_store_t *s, const char *id, size_t id_len,
                            const char *at);
/* A cheap read of the users table, for health checks. 0 or STORE_ERROR. */
int user_store_ping(user_store_t *s);
/* The connection's journal_mode (e.g. "wal", into buf) and synchronous level,
 * read back from SQLite: what is in effect, not what was asked. */
int user_store_settings(user_store_t *s, char *journal_mode, size_t size, int *sync);

/* --- RPC handlers (handlers.c) ---------------------------------------------- */

/* Register create_user, get_user, get_users, health and the user_logged_in
 * event on srv, with svc as their context (svc->store a user_store_t,
 * borrowed, outliving the server). A reply that rests on the turn's open
 * transaction (a new user, a 409 or a read that saw an uncommitted row) waits
 * for its COMMIT, and a failed COMMIT answers 500. 0 or a PROTO_E* code. */
int user_handlers_register(proto_rpc_server_t *srv, svc_t *svc);

/* What the user service sets on a context svc_main() made: its log keys. */
void user_svc_setup(svc_t *svc);
/* A context around store and group (group may be NULL: autocommit), for
 * tests and tools: svc_init() plus user_svc_setup(). */
void user_svc_init(svc_t *svc, uv_loop_t *loop, user_store_t *store, store_group_t *group);

/* The operations behind the handlers, callable without a server (tests). */
svc_result_t user_op_create(svc_t *svc, const json_t *data);
svc_result_t user_op_get(svc_t *svc, const json_t *data);
svc_result_t user_op_list(svc_t *svc, const json_t *data);
svc_result_t user_op_health(svc_t *svc);
/* The event: returns a result for logging only (events get no reply). */
svc_result_t user_op_login(svc_t *svc, const json_t *data);

#endif
