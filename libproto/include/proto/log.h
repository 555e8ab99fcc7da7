/* proto/log.h: structured logs, one JSON object per line on stdout.
 *
 * Every line has "time" (ISO 8601 UTC), "level", "service", "event" and, when
 * known, "requestId": the id the gateway assigned, carried through every RPC and
 * event so one request can be followed across processes. A write(2) only
 * ever holds whole lines, so lines from different processes never mix.
 */
#ifndef PROTO_LOG_H
#define PROTO_LOG_H

#include <jansson.h>
#include <uv.h>

typedef enum {
  PROTO_LOG_DEBUG = 0,
  PROTO_LOG_INFO = 1,
  PROTO_LOG_WARN = 2,
  PROTO_LOG_ERROR = 3,
} proto_log_level_t;

/* Set the service name; the minimum level comes from LOG_LEVEL
 * (debug|info|warn|error, any case, default info). Call once in main. 0, or
 * PROTO_EINVAL when LOG_LEVEL is none of these (a config_invalid line is
 * logged; the daemon should exit 1). */
int proto_log_init(const char *service);

/* Parse "debug", "info", "warn", "error". -1 when unknown. */
int proto_log_level_parse(const char *s);
void proto_log_set_level(proto_log_level_t level);
int proto_log_enabled(proto_log_level_t level);

/* {"time","level","service","event","requestId"?,"msg"?}. request_id may be
 * NULL; fmt may be NULL (no "msg"). */
void proto_log(proto_log_level_t level, const char *request_id, const char *event,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Like proto_log, with extra fields merged in. fields is stolen (may be NULL). */
void proto_log_fields(proto_log_level_t level, const char *request_id,
                      const char *event, json_t *fields);

/* Log regardless of LOG_LEVEL: for the few lines supervisors and tests rely
 * on (the "listening" announcement). fields is stolen. */
void proto_log_always(proto_log_level_t level, const char *event, json_t *fields);

/* Buffer lines and write them once per turn of loop, right before it polls
 * (a prepare handle that keeps no loop alive), in writes of whole lines of
 * at most PIPE_BUF bytes. Error lines, a full buffer (64 KiB), exit() and
 * proto_log_buffer_off() write at once. A line logged before the loop runs
 * or after it stops waits for one of those: daemons switch buffering off
 * once the loop has ended (proto_daemon_close does). 0 or PROTO_EIO. */
int proto_log_buffer_on(uv_loop_t *loop);

/* Write what is buffered and go back to one write per line. */
void proto_log_buffer_off(void);

/* Write what is buffered now. */
void proto_log_flush(void);

#endif
