/* log.c: one JSON object per line on stdout, written with a single write(2)
 * so concurrent writers (several daemons sharing a terminal) never interleave
 * within a line. */
#include "proto/log.h"
#include "proto/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MSG_MAX_BYTES 2048

static const char *log_service = "unknown";
static proto_log_level_t log_min_level = PROTO_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int proto_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (s && strcmp(s, level_names[i]) == 0)
      return i;
  return -1;
}

void proto_log_init(const char *service) {
  log_service = service;
  const char *lv = getenv("LOG_LEVEL");
  if (lv && *lv) {
    int l = proto_log_level_parse(lv);
    if (l < 0)
      proto_log(PROTO_LOG_WARN, NULL, "config_invalid",
                "LOG_LEVEL=%s: expected debug, info, warn or error; using info", lv);
    else
      log_min_level = (proto_log_level_t)l;
  }
}

void proto_log_set_level(proto_log_level_t level) {
  log_min_level = level;
}

int proto_log_enabled(proto_log_level_t level) {
  return level >= log_min_level;
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return; /* nowhere left to report a failing log */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void log_write(proto_log_level_t level, const char *request_id, const char *event,
                      json_t *fields);

void proto_log_fields(proto_log_level_t level, const char *request_id,
                      const char *event, json_t *fields) {
  if (!proto_log_enabled(level)) {
    json_decref(fields);
    return;
  }
  log_write(level, request_id, event, fields);
}

void proto_log_always(proto_log_level_t level, const char *event, json_t *fields) {
  log_write(level, NULL, event, fields);
}

static void log_write(proto_log_level_t level, const char *request_id, const char *event,
                      json_t *fields) {
  char now[PROTO_ISO_TIME_LEN];
  proto_time_iso(now);
  json_t *line = json_object();
  if (!line) {
    json_decref(fields);
    return;
  }
  json_object_set_new(line, "time", json_string(now));
  json_object_set_new(line, "level", json_string(level_names[level]));
  json_object_set_new(line, "service", json_string(log_service));
  json_object_set_new(line, "event", json_string(event ? event : "log"));
  if (request_id)
    json_object_set_new(line, "requestId", json_string(request_id));
  if (fields) {
    json_object_update(line, fields);
    json_decref(fields);
  }
  char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  json_decref(line);
  if (!text)
    return;
  size_t n = strlen(text);
  text[n] = '\n'; /* replaces the NUL: the buffer is exactly n + 1 bytes */
  write_all(text, n + 1);
  free(text);
}

void proto_log(proto_log_level_t level, const char *request_id, const char *event,
               const char *fmt, ...) {
  if (!proto_log_enabled(level))
    return;
  json_t *fields = NULL;
  if (fmt) {
    char msg[LOG_MSG_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* json_string rejects invalid UTF-8 (e.g. a peer's bytes in a message). */
    json_t *m = json_string(msg);
    if (!m)
      m = json_string("(message not valid UTF-8)");
    fields = json_object();
    if (fields && m)
      json_object_set_new(fields, "msg", m);
    else
      json_decref(m);
  }
  proto_log_fields(level, request_id, event, fields);
}
