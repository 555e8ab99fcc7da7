/* pg_result.c: what a PostgreSQL query ends as: its PGresult mapped to one
 * return code (SQLSTATE 23505 -> STORE_PG_CONFLICT, class 23 ->
 * STORE_PG_CONSTRAINT, a dying connection -> STORE_PG_CONNLOST), the
 * callback run with a borrowed view of it, and the accessors that read rows
 * by column.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pg_internal.h"
#include "proto/log.h"

/* SQLSTATE -> code. Connection-class errors (08xxx) and the server ending
 * the session (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
 * connect now) mean "this connection is going away": CONNLOST, the same as a
 * socket that closes under the query. */
static int rc_of_sqlstate(const char *st) {
  if (st == NULL || strlen(st) != 5)
    return STORE_ERROR;
  if (strcmp(st, "23505") == 0)
    return STORE_PG_CONFLICT;
  if (strncmp(st, "23", 2) == 0)
    return STORE_PG_CONSTRAINT;
  if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P0", 4) == 0)
    return STORE_PG_CONNLOST;
  return STORE_ERROR;
}

static int rc_of_result(const PGresult *res) {
  if (res == NULL)
    return STORE_PG_CONNLOST; /* no answer at all before the sync point */
  switch (PQresultStatus(res)) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK:
    return STORE_OK;
  case PGRES_FATAL_ERROR:
    return rc_of_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
  default: /* PIPELINE_ABORTED, COPY_*, ...: nothing a caller can use */
    return STORE_ERROR;
  }
}

int store__pg_query_finish(store__pg_query_t *q, int rc_override, const char *why) {
  int rc = rc_override != STORE_OK ? rc_override : rc_of_result(q->res);
  store_pg_result_t view = {.res = rc_override != STORE_OK ? NULL : q->res, .message = why};
  if (rc == STORE_ERROR && view.res != NULL) {
    /* An SQL error nobody expects (syntax, missing table, type): logged here
     * once, as the SQLite stores log theirs. */
    const char *st = PQresultErrorField(view.res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(view.res, PG_DIAG_MESSAGE_PRIMARY);
    proto_log_fields(PROTO_LOG_ERROR, NULL, "storage_error",
                     json_pack("{s:s, s:s, s:s, s:s}", "engine", "postgresql", "op",
                               q->prepare ? "prepare" : "query", "sqlstate", st ? st : "",
                               "error", msg ? msg : PQresStatus(PQresultStatus(view.res))));
  }
  if (q->cb != NULL)
    q->cb(rc, &view, q->arg);
  PQclear(q->res);
  free(q);
  return rc;
}

int store_pg_nrows(const store_pg_result_t *res) {
  return res != NULL && res->res != NULL ? PQntuples(res->res) : 0;
}

int store_pg_ncols(const store_pg_result_t *res) {
  return res != NULL && res->res != NULL ? PQnfields(res->res) : 0;
}

static int in_range(const store_pg_result_t *res, int row, int col) {
  return row >= 0 && col >= 0 && row < store_pg_nrows(res) && col < store_pg_ncols(res);
}

int store_pg_isnull(const store_pg_result_t *res, int row, int col) {
  return !in_range(res, row, col) || PQgetisnull(res->res, row, col);
}

const char *store_pg_text(const store_pg_result_t *res, int row, int col) {
  return store_pg_isnull(res, row, col) ? NULL : PQgetvalue(res->res, row, col);
}

int store_pg_int64(const store_pg_result_t *res, int row, int col, int64_t *out) {
  const char *s = store_pg_text(res, row, col);
  char *end = NULL;
  if (s == NULL || *s == '\0' || out == NULL)
    return STORE_EINVAL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return STORE_EINVAL;
  *out = (int64_t)v;
  return STORE_OK;
}

int64_t store_pg_affected(const store_pg_result_t *res) {
  if (res == NULL || res->res == NULL)
    return 0;
  const char *s = PQcmdTuples((PGresult *)res->res); /* libpq's prototype lacks const */
  return s[0] != '\0' ? (int64_t)strtoll(s, NULL, 10) : 0;
}

const char *store_pg_sqlstate(const store_pg_result_t *res) {
  const char *st = res != NULL && res->res != NULL
                       ? PQresultErrorField(res->res, PG_DIAG_SQLSTATE)
                       : NULL;
  return st != NULL ? st : "";
}

const char *store_pg_message(const store_pg_result_t *res) {
  if (res == NULL)
    return "";
  if (res->message != NULL)
    return res->message;
  const char *m = res->res != NULL ? PQresultErrorField(res->res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  return m != NULL ? m : "";
}

const char *store_pg_rc_name(int rc) {
  switch (rc) {
  case STORE_OK: return "STORE_OK";
  case STORE_EINVAL: return "STORE_EINVAL";
  case STORE_ERROR: return "STORE_ERROR";
  case STORE_PG_UNAVAILABLE: return "STORE_PG_UNAVAILABLE";
  case STORE_PG_CONNLOST: return "STORE_PG_CONNLOST";
  case STORE_PG_CONFLICT: return "STORE_PG_CONFLICT";
  case STORE_PG_CONSTRAINT: return "STORE_PG_CONSTRAINT";
  case STORE_PG_CANCELED: return "STORE_PG_CANCELED";
  default: return "unknown";
  }
}
