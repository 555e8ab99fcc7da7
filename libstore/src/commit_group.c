/* commit_group.c: one transaction per loop turn, committed in a check
 * handle, then the functions deferred during the turn run with its status.
 * BEGIN/COMMIT/ROLLBACK are prepared once per group: they run on every
 * write turn, so parsing them again each time is wasted work.
 *
 * Checkpoints run in libuv's thread pool on a second connection, started
 * from the WAL hook, instead of SQLite's auto-checkpoint: that one runs
 * inside whichever COMMIT crosses the threshold and stalls the loop for the
 * copy and two more fsyncs. A PASSIVE checkpoint never blocks the writer.
 * (The COMMIT's own fsync stays on the loop thread: handing it to the pool
 * as well measured slower on a busy 2-core machine, where the pool thread
 * must first be scheduled.) */
#include "store/commit_group.h"

#include <stdlib.h>
#include <string.h>

#include "proto/cork.h"
#include "proto/error.h"
#include "proto/log.h"
#include "store/db.h"

/* WAL frames (pages) after which a background checkpoint starts: SQLite's
 * own auto-checkpoint default. */
#define STORE_GROUP_CLOSE_ROUNDS 64 /* drain rounds at close before new deferrals are refused */
#define STORE_GROUP_CKPT_FRAMES 1000

/* The group's cached statements, in txn_sql[] order. */
enum { TXN_BEGIN, TXN_COMMIT, TXN_ROLLBACK, TXN_COUNT_ };

static const char *const txn_sql[TXN_COUNT_] = {
    [TXN_BEGIN] = "BEGIN IMMEDIATE",
    [TXN_COMMIT] = "COMMIT",
    [TXN_ROLLBACK] = "ROLLBACK",
};

typedef struct deferred {
  store_group_fn fn;
  void *arg;
  struct deferred *next;
} deferred_t;

struct store_group {
  uv_check_t check;         /* commit point: after the turn's I/O callbacks */
  uv_idle_t idle;           /* active while work is pending: poll must not block */
  uv_timer_t timer;         /* commit point when a delay is set */
  unsigned delay_ms;        /* 0: commit every loop turn */
  sqlite3 *db;
  sqlite3_stmt *txn[TXN_COUNT_]; /* finalized in store_group_close, before the db closes */
  int in_txn;
  int rolled_back;          /* SQLite aborted the open transaction by itself */
  int closing;
  int refs;                 /* open handles + a checkpoint in the pool; free at 0 */
  deferred_t *head, *tail;  /* deferred this turn, in order */
  uv_loop_t *loop;
  sqlite3 *ckpt_db;         /* NULL: SQLite checkpoints inside commits */
  int ckpt_running;
  int ckpt_rc;              /* the pool's result, read in after_ckpt */
  uv_work_t ckpt_work;
  store_group_stats_t stats;
};

static void unref(store_group_t *g) {
  if (--g->refs > 0)
    return;
  if (g->ckpt_db)
    sqlite3_close(g->ckpt_db); /* it holds no statements */
  free(g);
}

/* Run one of the cached transaction statements; the log line is the one
 * sqlite3_exec's error message gave: "<sql>: <errmsg>". */
static int exec_sql(store_group_t *g, int which) {
  sqlite3_stmt *st = g->txn[which];
  int rc = sqlite3_step(st);
  int ret = 0;
  if (rc != SQLITE_DONE) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", txn_sql[which],
              sqlite3_errmsg(g->db));
    ret = PROTO_EIO;
  }
  sqlite3_reset(st); /* its return repeats the step error logged above */
  return ret;
}

/* Commit the open transaction (if any), then run what was deferred before
 * this point; functions deferred while they run wait for the next turn. */
static void flush(store_group_t *g) {
  int status = 0;
  if (g->in_txn && sqlite3_get_autocommit(g->db))
    g->rolled_back = 1; /* aborted after the last begin: nothing to commit */
  if (g->rolled_back) {
    /* Some of this turn's writes are gone: every continuation reports it. */
    g->rolled_back = 0;
    status = PROTO_EIO;
    g->stats.failures++;
    if (g->in_txn && !sqlite3_get_autocommit(g->db))
      exec_sql(g, TXN_ROLLBACK);
    g->in_txn = 0;
  } else if (g->in_txn) {
    g->in_txn = 0;
    if (exec_sql(g, TXN_COMMIT) == 0) {
      g->stats.commits++;
    } else {
      status = PROTO_EIO;
      g->stats.failures++;
      if (!sqlite3_get_autocommit(g->db))
        exec_sql(g, TXN_ROLLBACK);
    }
  }
  deferred_t *d = g->head;
  g->head = g->tail = NULL;
  proto_cork(); /* the batch's replies and requests leave one write per connection */
  while (d) {
    deferred_t *next = d->next;
    g->stats.deferred++;
    d->fn(status, d->arg);
    free(d);
    d = next;
  }
  proto_uncork();
}

static void on_check(uv_check_t *h) {
  store_group_t *g = h->data;
  flush(g);
  if (!g->in_txn && !g->head) {
    uv_check_stop(&g->check);
    uv_idle_stop(&g->idle);
  }
}

static void on_timer(uv_timer_t *h) {
  store_group_t *g = h->data;
  flush(g);
  if (g->in_txn || g->head)
    uv_timer_start(&g->timer, on_timer, g->delay_ms, 0);
}

static void on_idle(uv_idle_t *h) {
  (void)h; /* its being active is the point: the loop polls without blocking */
}

static void arm(store_group_t *g) {
  if (g->delay_ms) {
    if (!uv_is_active((uv_handle_t *)&g->timer))
      uv_timer_start(&g->timer, on_timer, g->delay_ms, 0);
    return;
  }
  if (!uv_is_active((uv_handle_t *)&g->check)) {
    uv_check_start(&g->check, on_check);
    uv_idle_start(&g->idle, on_idle);
  }
}

/* --- background checkpoints ------------------------------------------------ */

static void ckpt_work(uv_work_t *w) {
  store_group_t *g = w->data;
  int frames = 0, done = 0;
  g->ckpt_rc =
      sqlite3_wal_checkpoint_v2(g->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &done);
}

static void after_ckpt(uv_work_t *w, int uvstatus) {
  store_group_t *g = w->data;
  g->ckpt_running = 0;
  if (uvstatus == 0 && g->ckpt_rc == SQLITE_OK)
    g->stats.checkpoints++;
  else if (uvstatus == 0 && g->ckpt_rc != SQLITE_BUSY) /* BUSY: another checkpointer */
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "checkpoint: %s",
              sqlite3_errstr(g->ckpt_rc));
  unref(g);
}

/* SQLite calls this in the loop thread after each commit, with the WAL's
 * size in frames. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames) {
  store_group_t *g = arg;
  (void)db;
  (void)name;
  if (frames < STORE_GROUP_CKPT_FRAMES || g->ckpt_running || g->closing)
    return SQLITE_OK;
  g->ckpt_work.data = g;
  if (uv_queue_work(g->loop, &g->ckpt_work, ckpt_work, after_ckpt) == 0) {
    g->ckpt_running = 1;
    g->refs++;
  }
  return SQLITE_OK;
}

/* A file database in WAL mode gets a checkpoint connection. Anything else
 * (":memory:", another journal mode, a failure here) keeps SQLite's own
 * checkpoints. */
static void setup_checkpoints(store_group_t *g) {
  const char *file = sqlite3_db_filename(g->db, "main");
  char mode[16];
  sqlite3 *c = NULL;
  if (!file || !*file ||
      store_db_query_one(g->db, "PRAGMA journal_mode", NULL, mode, sizeof(mode)) != 0 ||
      strcmp(mode, "wal") != 0)
    return;
  /* NOMUTEX: only ever used by one pool thread at a time (ckpt_running).
   * Its checkpoints sync the WAL before copying and the database after. */
  if (sqlite3_open_v2(file, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
      sqlite3_exec(c, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK) {
    proto_log(PROTO_LOG_WARN, NULL, "storage_warning",
              "%s: no checkpoint connection (%s): SQLite checkpoints inside commits", file,
              c ? sqlite3_errmsg(c) : "out of memory");
    sqlite3_close(c);
    return;
  }
  g->ckpt_db = c;
  sqlite3_wal_hook(g->db, on_wal_commit, g); /* replaces the auto-checkpoint */
}

/* --- the group ---------------------------------------------------------------- */

store_group_t *store_group_new(uv_loop_t *loop, sqlite3 *db) {
  store_group_t *g = calloc(1, sizeof(*g));
  if (!g)
    return NULL;
  g->db = db;
  g->loop = loop;
  if (uv_check_init(loop, &g->check) != 0) {
    free(g);
    return NULL;
  }
  g->check.data = g;
  g->idle.data = g;
  g->timer.data = g;
  g->refs = 1;
  if (uv_idle_init(loop, &g->idle) != 0) {
    store_group_close(g);
    return NULL;
  }
  g->refs = 2;
  if (uv_timer_init(loop, &g->timer) != 0) {
    store_group_close(g);
    return NULL;
  }
  g->refs = 3;
  for (int i = 0; i < TXN_COUNT_; i++) {
    int rc = sqlite3_prepare_v3(db, txn_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &g->txn[i], NULL);
    if (rc != SQLITE_OK) {
      proto_log(PROTO_LOG_ERROR, NULL, "storage_error", "%s: %s", txn_sql[i],
                sqlite3_errmsg(db));
      store_group_close(g); /* finalizes the ones prepared */
      return NULL;
    }
  }
  setup_checkpoints(g);
  return g;
}

int store_group_begin(store_group_t *g) {
  if (g->closing)
    return PROTO_ECLOSED;
  if (g->in_txn) {
    if (!sqlite3_get_autocommit(g->db))
      return 0;
    /* SQLite rolled the transaction back on an error (SQLITE_FULL, IOERR,
     * NOMEM): the turn has failed; keep later writes in a transaction too. */
    g->rolled_back = 1;
    g->in_txn = 0;
  }
  if (exec_sql(g, TXN_BEGIN) != 0)
    return PROTO_EIO;
  g->in_txn = 1;
  arm(g);
  return 0;
}

int store_group_begin_write(store_group_t *g) {
  if (store_group_begin(g) != 0)
    return PROTO_EIO; /* logged */
  /* An I/O, disk-full or out-of-memory error in an earlier statement of this
   * turn can make SQLite roll the whole transaction back on its own while the
   * group still counts it open. A write now would autocommit behind the
   * group's back, and the COMMIT failing later would answer 500 for a row
   * that is in fact durable. The turn's earlier writes are lost anyway (their
   * COMMIT fails): refuse this one too. */
  if (sqlite3_get_autocommit(g->db)) {
    proto_log(PROTO_LOG_ERROR, NULL, "storage_error",
              "the turn's transaction was rolled back by SQLite; refusing to write");
    return PROTO_EIO;
  }
  return 0;
}

int store_group_defer(store_group_t *g, store_group_fn fn, void *arg) {
  if (g->closing)
    return PROTO_ECLOSED;
  deferred_t *d = malloc(sizeof(*d));
  if (!d)
    return PROTO_ENOMEM;
  d->fn = fn;
  d->arg = arg;
  d->next = NULL;
  if (g->tail)
    g->tail->next = d;
  else
    g->head = d;
  g->tail = d;
  arm(g);
  return 0;
}

int store_group_in_txn(const store_group_t *g) {
  return g->in_txn;
}

void store_group_stats(const store_group_t *g, store_group_stats_t *out) {
  *out = g->stats;
}

static void on_closed(uv_handle_t *h) {
  unref(h->data);
}

void store_group_close(store_group_t *g) {
  if (g->closing)
    return;
  /* Deferred functions may defer more (a flow's next step): drain until
   * nothing is left. A chain that is still deferring after
   * STORE_GROUP_CLOSE_ROUNDS rounds is cut: from then on begin and defer
   * refuse with PROTO_ECLOSED (the caller answers its error), and one last
   * round runs what is queued, which can then add nothing. */
  int rounds = 0;
  while ((g->in_txn || g->head) && rounds < STORE_GROUP_CLOSE_ROUNDS) {
    flush(g);
    rounds++;
  }
  g->closing = 1;
  if (g->in_txn || g->head) {
    proto_log(PROTO_LOG_WARN, NULL, "group_close_cut",
              "still deferring after %d rounds: refusing new work, running the last round",
              rounds);
    flush(g);
  }
  sqlite3_wal_hook(g->db, NULL, NULL); /* a running checkpoint finishes on its own */
  /* The statements go now: the database closes right after the group, and
   * sqlite3_close refuses while any statement is unfinalized. */
  for (int i = 0; i < TXN_COUNT_; i++) {
    sqlite3_finalize(g->txn[i]); /* NULL is a no-op */
    g->txn[i] = NULL;
  }
  int open = g->refs - g->ckpt_running; /* handles initialized */
  uv_close((uv_handle_t *)&g->check, on_closed);
  if (open >= 3)
    uv_close((uv_handle_t *)&g->timer, on_closed);
  if (open >= 2)
    uv_close((uv_handle_t *)&g->idle, on_closed);
}

void store_group_set_delay(store_group_t *g, unsigned delay_ms) {
  g->delay_ms = delay_ms;
}
