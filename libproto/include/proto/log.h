/* proto/log.h: structured logs, one JSON object per line on stdout.
 *
 * Every line has "time" (ISO 8601 UTC), "level", "service", "event" and, when
 * known, "requestId": the id the gateway assigned, carried through every RPC and
 * event so one request can be followed across processes. Each line is written
 * with a single write(2) so lines from one process never interleave.
 */
#ifndef PROTO_LOG_H
#define PROTO_LOG_H

#include <jansson.h>

typedef enum {
  PROTO_LOG_DEBUG = 0,
  PROTO_LOG_INFO = 1,
  PROTO_LOG_WARN = 2,
  PROTO_LOG_ERROR = 3,
} proto_log_level_t;

/* Set the service name; the minimum level comes from LOG_LEVEL
 * (debug|info|warn|error, default info). Call once in main. */
void proto_log_init(const char *service);

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

#endif
