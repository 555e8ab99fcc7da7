/* proto-call: send one request (or emit one event) to a NestJS-compatible TCP
 * microservice with our RPC client, and print the response JSON on stdout.
 * Useful by hand ("what does the user service answer?") and as the client
 * half of the NestJS interop tests. Exit status says how the call ended. */
#include "proto/error.h"
#include "proto/log.h"
#include "proto/pattern.h"
#include "proto/rpc_client.h"
#include "proto/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#define PROTO_CALL_DEFAULT_HOST "127.0.0.1"
#define PROTO_CALL_DEFAULT_PORT 3001
#define PROTO_CALL_MAX_TIMEOUT_MS 3600000u
/* How often --event checks whether the connection is up. */
#define PROTO_CALL_CONNECT_POLL_MS 5u
/* Grace after the call's own deadline before the watchdog gives up on the
 * client ever completing the call (it always should). */
#define PROTO_CALL_WATCHDOG_GRACE_MS 2000u

enum {
  EXIT_OK = 0,
  EXIT_REMOTE = 1,
  EXIT_USAGE = 2,
  EXIT_UNAVAILABLE = 3,
  EXIT_TIMEOUT = 4,
};

static const char usage_text[] =
    "Usage: proto-call [OPTIONS] PATTERN [JSON]\n"
    "\n"
    "Send one request to a microservice speaking the NestJS TCP transport and\n"
    "print its response as JSON on stdout, or emit one event with --event.\n"
    "\n"
    "PATTERN  a command name, sent as {\"cmd\":PATTERN} (events: sent as the plain\n"
    "         string), or a JSON pattern when it starts with '{'.\n"
    "JSON     the request data (any JSON value); null when omitted.\n"
    "\n"
    "Options:\n"
    "  --host H          server host (default 127.0.0.1)\n"
    "  --port P          server port (default 3001, the user service)\n"
    "  --timeout MS      deadline for the whole call, connection included\n"
    "                    (default 5000)\n"
    "  --request-id ID   put ID in metadata.requestId\n"
    "  --event           emit an event (no reply is expected): waits for the\n"
    "                    connection, writes the event and exits\n"
    "  -h, --help        show this help and exit\n"
    "\n"
    "Output: the response as one line of JSON on stdout (nothing for a void\n"
    "reply); on a remote error, the error value as JSON on stdout. Diagnostics\n"
    "go to stderr (the library's log lines too; LOG_LEVEL=debug|info|warn|error,\n"
    "default error).\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  the service answered with an error (printed on stdout)\n"
    "  2  usage error\n"
    "  3  service unavailable or connection lost\n"
    "  4  deadline exceeded\n"
    "\n"
    "Examples:\n"
    "  proto-call --port 3001 health\n"
    "  proto-call get_user '{\"id\":\"u_123\"}'\n"
    "  proto-call --event user_logged_in '{\"userId\":\"u_123\",\"timestamp\":\"2026-01-01T00:00:00.000Z\"}'\n";

typedef struct options {
  const char *host;
  int port;
  unsigned timeout_ms;
  const char *request_id;
  int event;
  const char *pattern_arg;
  const char *data_arg;
} options_t;

typedef struct app {
  uv_loop_t loop;
  options_t opt;
  proto_rpc_client_t *cli;
  json_t *pattern;        /* the pattern as JSON (object or string) */
  json_t *data;           /* request data, handed over to the client on send */
  FILE *out;              /* the real stdout: results only */
  uv_timer_t poll_timer;  /* --event: waits for the connection */
  uv_timer_t watchdog;    /* ends the run if nothing else does */
  uv_timer_t finish;      /* closes everything outside any client callback */
  uint64_t started_ms;
  int exit_code;
  int done;
} app_t;

static void usage_error(const char *fmt, const char *arg) {
  fputs("proto-call: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'proto-call --help'.\n", stderr);
}

static int parse_uint(const char *s, unsigned long min, unsigned long max,
                      unsigned long *out) {
  char *end = NULL;
  if (!s || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* "--name value" or "--name=value". Returns 1 and sets *value when argv[*i]
 * is the option (advancing *i past its value), 0 when it is another
 * argument, -1 when the value is missing. */
static int option_value(int argc, char **argv, int *i, const char *name,
                        const char **value) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0)
    return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0')
    return 0;
  if (*i + 1 >= argc)
    return -1;
  *value = argv[++*i];
  return 1;
}

/* 0 ok, 1 help shown, -1 usage error (reported). */
static int parse_args(int argc, char **argv, options_t *o) {
  static const char *const with_value[] = {"--host", "--port", "--timeout",
                                           "--request-id"};
  int positional = 0;
  int only_positional = 0;
  o->host = PROTO_CALL_DEFAULT_HOST;
  o->port = PROTO_CALL_DEFAULT_PORT;
  o->timeout_ms = PROTO_RPC_TIMEOUT_MS_DEFAULT;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_positional && a[0] == '-' && a[1] != '\0') {
      const char *v = NULL;
      unsigned long n;
      if (strcmp(a, "--") == 0) {
        only_positional = 1;
        continue;
      }
      if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        fputs(usage_text, stdout);
        return 1;
      }
      if (strcmp(a, "--event") == 0) {
        o->event = 1;
        continue;
      }
      size_t k;
      int rc = 0;
      for (k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
        if ((rc = option_value(argc, argv, &i, with_value[k], &v)) != 0)
          break;
      if (rc < 0) {
        usage_error("option '%s' needs a value", a);
        return -1;
      }
      if (rc == 0) {
        usage_error("unknown option '%s'", a);
        return -1;
      }
      switch (k) {
      case 0:
        if (*v == '\0') {
          usage_error("--host needs a host name%s", "");
          return -1;
        }
        o->host = v;
        break;
      case 1:
        if (parse_uint(v, 1, 65535, &n) != 0) {
          usage_error("--port '%s': expected 1 to 65535", v);
          return -1;
        }
        o->port = (int)n;
        break;
      case 2:
        if (parse_uint(v, 1, PROTO_CALL_MAX_TIMEOUT_MS, &n) != 0) {
          usage_error("--timeout '%s': expected milliseconds, 1 to 3600000", v);
          return -1;
        }
        o->timeout_ms = (unsigned)n;
        break;
      default:
        o->request_id = v;
        break;
      }
      continue;
    }
    if (positional == 0)
      o->pattern_arg = a;
    else if (positional == 1)
      o->data_arg = a;
    else {
      usage_error("unexpected argument '%s'", a);
      return -1;
    }
    positional++;
  }
  if (!o->pattern_arg || !*o->pattern_arg) {
    usage_error("missing PATTERN%s", "");
    return -1;
  }
  return 0;
}

/* Build app->pattern and app->data from the arguments. 0 or -1 (reported). */
static int build_message(app_t *app) {
  json_error_t jerr;
  const char *p = app->opt.pattern_arg;
  if (p[0] == '{') {
    app->pattern = json_loads(p, JSON_REJECT_DUPLICATES, &jerr);
    if (!app->pattern || !json_is_object(app->pattern)) {
      fprintf(stderr, "proto-call: PATTERN is not a JSON object: %s\n",
              app->pattern ? "not an object" : jerr.text);
      return -1;
    }
  } else {
    app->pattern = app->opt.event ? json_string(p) : proto_pattern_cmd(p);
    if (!app->pattern) {
      fprintf(stderr, "proto-call: PATTERN '%s' is not valid UTF-8\n", p);
      return -1;
    }
  }
  if (app->opt.data_arg) {
    app->data = json_loads(app->opt.data_arg, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                           &jerr);
    if (!app->data) {
      fprintf(stderr, "proto-call: JSON is not valid: %s (line %d, column %d)\n",
              jerr.text, jerr.line, jerr.column);
      return -1;
    }
  } else {
    app->data = json_null();
  }
  return 0;
}

static void print_json(app_t *app, const json_t *v) {
  char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!text) {
    fputs("proto-call: cannot encode the response\n", stderr);
    return;
  }
  fprintf(app->out, "%s\n", text);
  fflush(app->out);
  free(text);
}

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
}

static void on_finish(uv_timer_t *t) {
  app_t *app = t->data;
  uv_timer_stop(&app->poll_timer);
  uv_timer_stop(&app->watchdog);
  if (app->cli) {
    proto_rpc_client_close(app->cli);
    app->cli = NULL;
  }
  uv_close((uv_handle_t *)&app->poll_timer, on_handle_closed);
  uv_close((uv_handle_t *)&app->watchdog, on_handle_closed);
  uv_close((uv_handle_t *)&app->finish, on_handle_closed);
}

/* Record the outcome once; the client is closed from a timer callback, never
 * from inside one of its own callbacks. */
static void finish(app_t *app, int exit_code) {
  if (app->done)
    return;
  app->done = 1;
  app->exit_code = exit_code;
  uv_timer_start(&app->finish, on_finish, 0, 0);
}

static void on_reply(const proto_rpc_result_t *res, void *arg) {
  app_t *app = arg;
  switch (res->status) {
  case PROTO_OK:
    if (res->response)
      print_json(app, res->response);
    finish(app, EXIT_OK);
    break;
  case PROTO_EREMOTE:
    print_json(app, res->err);
    fputs("proto-call: the service answered with an error\n", stderr);
    finish(app, EXIT_REMOTE);
    break;
  case PROTO_ETIMEDOUT:
    fprintf(stderr, "proto-call: no reply from %s:%d within %u ms\n", app->opt.host,
            app->opt.port, app->opt.timeout_ms);
    finish(app, EXIT_TIMEOUT);
    break;
  default:
    fprintf(stderr, "proto-call: %s:%d: %s\n", app->opt.host, app->opt.port,
            proto_strerror(res->status));
    finish(app, EXIT_UNAVAILABLE);
    break;
  }
}

static void on_poll_connected(uv_timer_t *t) {
  app_t *app = t->data;
  if (app->done)
    return;
  if (!proto_rpc_client_connected(app->cli)) {
    if (proto_now_ms() - app->started_ms >= app->opt.timeout_ms) {
      fprintf(stderr, "proto-call: could not connect to %s:%d within %u ms\n",
              app->opt.host, app->opt.port, app->opt.timeout_ms);
      finish(app, EXIT_UNAVAILABLE);
    }
    return;
  }
  uv_timer_stop(&app->poll_timer);
  const char *pattern = NULL;
  char *key = NULL;
  if (json_is_string(app->pattern)) {
    pattern = json_string_value(app->pattern);
  } else {
    /* An object event pattern travels as its normalised string, which is
     * how NestJS matches it. */
    key = proto_pattern_key(app->pattern);
    pattern = key;
  }
  json_t *data = app->data;
  app->data = NULL;
  /* The write is attempted at once on an idle connection, so the event is in
   * the kernel by the time the client closes the socket. */
  int rc = pattern ? proto_rpc_client_emit(app->cli, pattern, data, app->opt.request_id)
                   : (json_decref(data), PROTO_ENOMEM);
  free(key);
  if (rc != 0) {
    fprintf(stderr, "proto-call: emit to %s:%d failed: %s\n", app->opt.host,
            app->opt.port, proto_strerror(rc));
    finish(app, EXIT_UNAVAILABLE);
    return;
  }
  finish(app, EXIT_OK);
}

static void on_watchdog(uv_timer_t *t) {
  app_t *app = t->data;
  fprintf(stderr, "proto-call: gave up after %u ms\n", app->opt.timeout_ms);
  finish(app, EXIT_TIMEOUT);
}

/* Keep stdout for results: the library logs to fd 1, so fd 1 becomes stderr
 * and results go to a duplicate of the original stdout. */
static FILE *take_stdout(void) {
  int fd = dup(STDOUT_FILENO);
  if (fd < 0)
    return NULL;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return NULL;
  }
  fflush(stdout);
  if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    fclose(f);
    return NULL;
  }
  return f;
}

int main(int argc, char **argv) {
  app_t app;
  int rc;
  memset(&app, 0, sizeof(app));
  app.exit_code = EXIT_UNAVAILABLE;

  rc = parse_args(argc, argv, &app.opt);
  if (rc != 0)
    return rc > 0 ? EXIT_OK : EXIT_USAGE;
  if (build_message(&app) != 0) {
    json_decref(app.pattern);
    json_decref(app.data);
    return EXIT_USAGE;
  }

  /* A peer closing while we write must be EPIPE, not a dead process. */
  signal(SIGPIPE, SIG_IGN);
  proto_log_init("proto-call");
  if (!getenv("LOG_LEVEL") || !*getenv("LOG_LEVEL"))
    proto_log_set_level(PROTO_LOG_ERROR);
  app.out = take_stdout();
  if (!app.out) {
    perror("proto-call: stdout");
    json_decref(app.pattern);
    json_decref(app.data);
    return EXIT_UNAVAILABLE;
  }

  if (uv_loop_init(&app.loop) != 0) {
    fputs("proto-call: cannot initialise the event loop\n", stderr);
    goto out_noloop;
  }
  /* uv_timer_init cannot fail on an initialised loop (it only fills fields). */
  (void)uv_timer_init(&app.loop, &app.poll_timer);
  (void)uv_timer_init(&app.loop, &app.watchdog);
  (void)uv_timer_init(&app.loop, &app.finish);
  app.poll_timer.data = app.watchdog.data = app.finish.data = &app;
  app.started_ms = proto_now_ms();

  proto_rpc_client_opts_t copts;
  memset(&copts, 0, sizeof(copts));
  copts.timeout_ms = app.opt.timeout_ms;
  copts.connect_timeout_ms = app.opt.timeout_ms < PROTO_RPC_CONNECT_TIMEOUT_MS_DEFAULT
                                 ? app.opt.timeout_ms
                                 : PROTO_RPC_CONNECT_TIMEOUT_MS_DEFAULT;
  copts.connections = 1;
  app.cli = proto_rpc_client_new(&app.loop, "proto-call", app.opt.host, app.opt.port, &copts);
  if (!app.cli) {
    fprintf(stderr, "proto-call: cannot create a client for %s:%d\n", app.opt.host,
            app.opt.port);
    finish(&app, EXIT_UNAVAILABLE);
    goto run;
  }
  uv_timer_start(&app.watchdog, on_watchdog,
                 (uint64_t)app.opt.timeout_ms + PROTO_CALL_WATCHDOG_GRACE_MS, 0);

  if (app.opt.event) {
    uv_timer_start(&app.poll_timer, on_poll_connected, 0, PROTO_CALL_CONNECT_POLL_MS);
  } else {
    json_t *data = app.data;
    app.data = NULL;
    /* The client queues the call while its first connection attempt is in
     * progress, so there is no need to wait for the connection here. */
    rc = proto_rpc_client_send_pattern(app.cli, app.pattern, data, app.opt.request_id,
                                       app.opt.timeout_ms, on_reply, &app);
    if (rc != 0) {
      fprintf(stderr, "proto-call: %s:%d: %s\n", app.opt.host, app.opt.port,
              proto_strerror(rc));
      finish(&app, rc == PROTO_ETIMEDOUT ? EXIT_TIMEOUT : EXIT_UNAVAILABLE);
    }
  }

run:
  uv_run(&app.loop, UV_RUN_DEFAULT);
  if (!app.done) {
    /* Only reachable if the client dropped a call: never a success. */
    fputs("proto-call: the call never completed\n", stderr);
    app.exit_code = EXIT_UNAVAILABLE;
  }
  if (uv_loop_close(&app.loop) != 0)
    fputs("proto-call: event loop closed with handles still open\n", stderr);
out_noloop:
  json_decref(app.pattern);
  json_decref(app.data);
  fclose(app.out);
  return app.exit_code;
}
