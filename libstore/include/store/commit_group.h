/* store/commit_group.h: group commit for a service's SQLite database.
 *
 * One durable commit (an fsync with synchronous=FULL) per request caps a
 * service at the disk's fsync rate. A commit group instead applies every
 * write of one loop turn inside one transaction and commits it once, at the
 * end of that turn (a uv_check handle; a uv_idle handle keeps the loop from
 * blocking in poll while a transaction is open). What must not happen before
 * the data is durable -- the reply, the event, the next step of a flow -- is
 * deferred with store_group_defer() and runs right after the COMMIT, in the
 * order it was deferred, with the commit's status.
 *
 * Usage in a handler:
 *   if (store_group_begin(g) != 0) -> 500
 *   ... INSERT/UPDATE on the group's db ...
 *   store_group_defer(g, reply_after_commit, ctx);   // reply there
 *
 * If the COMMIT fails, the transaction is rolled back and every deferred
 * function of that turn gets PROTO_EIO: its writes are gone, so it answers
 * 500. Reads on the same connection see the open transaction's writes.
 * Everything runs on the loop's thread. If store_group_defer() returns an
 * error, fn will not run.
 *
 * For a file database in WAL mode the group also takes checkpoints over:
 * they run in libuv's thread pool on a second connection (PASSIVE, so the
 * writer never waits) once the WAL passes 1000 pages, instead of inside
 * whichever COMMIT crosses that line.
 */
#ifndef STORE_COMMIT_GROUP_H
#define STORE_COMMIT_GROUP_H

#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

typedef struct store_group store_group_t;

/* status: 0 when the turn's transaction committed (or there was none),
 * PROTO_EIO when it failed and was rolled back. */
typedef void (*store_group_fn)(int status, void *arg);

typedef struct store_group_stats {
  uint64_t commits;      /* transactions committed */
  uint64_t failures;     /* commits that failed (rolled back) */
  uint64_t deferred;     /* functions run after a commit */
  uint64_t checkpoints;  /* background checkpoints done */
} store_group_stats_t;

/* A group for db (borrowed: close the group before the database; the group
 * holds prepared statements until store_group_close). NULL on
 * ENOMEM, a libuv failure or a failed prepare (logged). */
store_group_t *store_group_new(uv_loop_t *loop, sqlite3 *db);

/* Open the turn's transaction if none is open (BEGIN IMMEDIATE). Call before
 * the first write. 0 or PROTO_EIO (logged). */
int store_group_begin(store_group_t *g);

/* store_group_begin(), then refuse (PROTO_EIO, logged) when SQLite has
 * rolled the turn's transaction back by itself after an I/O, disk-full or
 * out-of-memory error: a write now would autocommit behind the group's back.
 * What a service calls before each write. */
int store_group_begin_write(store_group_t *g);

/* Run fn(status, arg) after this turn's commit; never inline. 0 or
 * PROTO_ENOMEM / PROTO_ECLOSED. */
int store_group_defer(store_group_t *g, store_group_fn fn, void *arg);

/* Commit at most every delay_ms instead of every loop turn (0, the default:
 * every turn). For writers nobody waits on (an event consumer): fewer, larger
 * commits, at the price of delay_ms more latency for what is deferred. Set it
 * before the first write. */
void store_group_set_delay(store_group_t *g, unsigned delay_ms);

/* Non-zero while a transaction is open. */
int store_group_in_txn(const store_group_t *g);

void store_group_stats(const store_group_t *g, store_group_stats_t *out);

/* Commit what is open, run what is deferred (and what that defers, until
 * nothing is left; a chain still deferring after 64 rounds is cut: begin and
 * defer then return PROTO_ECLOSED, logged once as group_close_cut), close the
 * handles, then free the group. Call once, before closing the database; the loop must run for
 * the handles to close and a checkpoint still in the pool to finish. */
void store_group_close(store_group_t *g);

#endif
