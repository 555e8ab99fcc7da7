/* log.c: one JSON object per line on stdout. Each write(2) holds whole
 * lines, so concurrent writers (several daemons sharing a terminal or a pipe)
 * never interleave within a line.
 *
 * On a loop (proto_log_buffer_on), lines collect in a buffer written out once
 * per loop turn, just before the loop polls: a busy daemon logging a line per
 * request made one write(2) per line, which cost the gateway half its
 * throughput at LOG_LEVEL=info. Errors, a full buffer, exit and detaching
 * write it out at once. */
#include "proto/log.h"
#include "proto/config.h"
#include "proto/error.h"
#include "proto/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MSG_MAX_BYTES 2048
#define LOG_BUF_BYTES 65536

static char log_buf[LOG_BUF_BYTES];
static size_t log_len;             /* bytes of whole lines waiting in log_buf */
static uv_prepare_t log_prepare;   /* the flush point of each loop turn */
static int log_buffering;          /* log_prepare is started */

static const char *log_service = "unknown";
static proto_log_level_t log_min_level = PROTO_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int proto_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (s && strcmp(s, level_names[i]) == 0)
      return i;
  return -1;
}

int proto_log_init(const char *service) {
  static const char *const choices[] = {"debug", "info", "warn", "error", NULL};
  int level;
  log_service = service;
  /* A level nobody can use stops the daemon (the caller exits): a typo would
   * otherwise hide the debug lines someone asked for. */
  if (proto_config_choice("LOG_LEVEL", choices, PROTO_LOG_INFO, &level) != 0)
    return PROTO_EINVAL;
  log_min_level = (proto_log_level_t)level;
  return 0;
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

/* The last newline in p[0..n), or NULL. */
static const char *last_newline(const char *p, size_t n) {
  while (n > 0)
    if (p[--n] == '\n')
      return p + n;
  return NULL;
}

/* Write out the buffer, in writes of whole lines of at most PIPE_BUF bytes
 * where lines allow: a pipe keeps a write that size in one piece. */
void proto_log_flush(void) {
  size_t off = 0;
  while (off < log_len) {
    size_t n = log_len - off;
    if (n > PIPE_BUF) {
      const char *nl = last_newline(log_buf + off, PIPE_BUF);
      if (!nl) /* one line longer than PIPE_BUF: whole, as unbuffered */
        nl = memchr(log_buf + off + PIPE_BUF, '\n', n - PIPE_BUF);
      n = nl ? (size_t)(nl - (log_buf + off)) + 1 : n;
    }
    write_all(log_buf + off, n);
    off += n;
  }
  log_len = 0;
}

static void on_prepare(uv_prepare_t *h) {
  (void)h;
  proto_log_flush();
}

int proto_log_buffer_on(uv_loop_t *loop) {
  static int flush_at_exit;
  if (log_buffering)
    return 0;
  if (uv_prepare_init(loop, &log_prepare) != 0)
    return PROTO_EIO;
  uv_prepare_start(&log_prepare, on_prepare); /* cannot fail once initialized */
  uv_unref((uv_handle_t *)&log_prepare);      /* logging keeps no loop alive */
  if (!flush_at_exit && atexit(proto_log_flush) == 0)
    flush_at_exit = 1;
  log_buffering = 1;
  return 0;
}

void proto_log_buffer_off(void) {
  proto_log_flush();
  if (!log_buffering)
    return;
  log_buffering = 0;
  if (!uv_is_closing((uv_handle_t *)&log_prepare))
    uv_close((uv_handle_t *)&log_prepare, NULL);
}

/* One finished line (with its newline). */
static void emit(proto_log_level_t level, const char *text, size_t n) {
  /* A loop teardown may have closed the handle under us (uv_walk). */
  if (log_buffering && uv_is_closing((uv_handle_t *)&log_prepare)) {
    log_buffering = 0;
    proto_log_flush();
  }
  if (!log_buffering) {
    write_all(text, n);
    return;
  }
  if (log_len + n > sizeof(log_buf))
    proto_log_flush();
  if (n > sizeof(log_buf)) {
    write_all(text, n);
    return;
  }
  memcpy(log_buf + log_len, text, n);
  log_len += n; /* only now: a flush from a signal handler sees whole lines */
  if (level >= PROTO_LOG_ERROR)
    proto_log_flush(); /* an error may come right before the end */
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

/* Append s to line[*n..cap) as a JSON string. 0, or -1 when it does not fit
 * or s is not plain ASCII (the slow path then lets jansson check and escape
 * it). */
static int put_string(char *line, size_t cap, size_t *n, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t i = *n;
  if (i >= cap)
    return -1;
  line[i++] = '"';
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c >= 0x80 || i + 6 >= cap)
      return -1;
    if (*c == '"' || *c == '\\') {
      line[i++] = '\\';
      line[i++] = (char)*c;
    } else if (*c < 0x20) {
      memcpy(line + i, "\\u00", 4);
      line[i + 4] = hex[*c >> 4];
      line[i + 5] = hex[*c & 15];
      i += 6;
    } else {
      line[i++] = (char)*c;
    }
  }
  if (i + 1 >= cap)
    return -1;
  line[i++] = '"';
  *n = i;
  return 0;
}

static int put_raw(char *line, size_t cap, size_t *n, const char *s) {
  size_t len = strlen(s);
  if (*n + len >= cap)
    return -1;
  memcpy(line + *n, s, len);
  *n += len;
  return 0;
}

#define LOG_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))
#define LOG_LINE_STACK_BYTES 4096

/* The common case, without building a line object: the base keys printed
 * straight into a stack buffer, then the fields' own dump with its "{"
 * turned into ",". -1 when the line does not fit or a field would repeat a
 * base key: the caller then merges through jansson. */
static int write_fast(proto_log_level_t level, const char *now, const char *request_id,
                      const char *event, const json_t *fields) {
  static const char *const base_keys[] = {"time", "level", "service", "event", "requestId"};
  char line[LOG_LINE_STACK_BYTES];
  size_t n = 0, cap = sizeof(line);
  if (fields) {
    if (!json_is_object(fields))
      return -1; /* the merge below ignores it, as it always did */
    for (size_t i = 0; i < sizeof(base_keys) / sizeof(base_keys[0]); i++)
      if (json_object_get(fields, base_keys[i]))
        return -1;
  }
  if (put_raw(line, cap, &n, "{\"time\":\"") != 0 || put_raw(line, cap, &n, now) != 0 ||
      put_raw(line, cap, &n, "\",\"level\":\"") != 0 ||
      put_raw(line, cap, &n, level_names[level]) != 0 ||
      put_raw(line, cap, &n, "\",\"service\":") != 0 ||
      put_string(line, cap, &n, log_service) != 0 || put_raw(line, cap, &n, ",\"event\":") != 0 ||
      put_string(line, cap, &n, event) != 0)
    return -1;
  if (request_id && (put_raw(line, cap, &n, ",\"requestId\":") != 0 ||
                     put_string(line, cap, &n, request_id) != 0))
    return -1;
  size_t fn = fields ? json_dumpb(fields, line + n, cap - n, LOG_FLAGS) : 0;
  if (fields && (fn == 0 || fn >= cap - n)) /* error, or it did not fit */
    return -1;
  if (fn > 2) {
    line[n] = ','; /* the fields' "{": their "}" closes the line */
    n += fn;
  } else {
    line[n++] = '}'; /* no fields, or "{}" */
  }
  if (n >= cap)
    return -1;
  line[n++] = '\n';
  emit(level, line, n);
  return 0;
}

static void log_write(proto_log_level_t level, const char *request_id, const char *event,
                      json_t *fields) {
  char now[PROTO_ISO_TIME_LEN];
  proto_time_iso(now);
  if (!event)
    event = "log";
  if (write_fast(level, now, request_id, event, fields) == 0) {
    json_decref(fields);
    return;
  }
  json_t *line = json_object();
  if (!line) {
    json_decref(fields);
    return;
  }
  json_object_set_new(line, "time", json_string(now));
  json_object_set_new(line, "level", json_string(level_names[level]));
  json_object_set_new(line, "service", json_string(log_service));
  json_object_set_new(line, "event", json_string(event));
  if (request_id)
    json_object_set_new(line, "requestId", json_string(request_id));
  if (fields) {
    json_object_update(line, fields);
    json_decref(fields);
  }
  char *text = json_dumps(line, LOG_FLAGS);
  json_decref(line);
  if (!text)
    return;
  size_t n = strlen(text);
  text[n] = '\n'; /* replaces the NUL: the buffer is exactly n + 1 bytes */
  emit(level, text, n + 1);
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
