/* daemon.c: command line, signals and start-up announcement shared by every
 * daemon's main(). */
#include "proto/daemon.h"
#include "proto/error.h"
#include "proto/log.h"
#include "proto/rpc_client.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What --version prints beyond libproto's own libraries (set once in main,
 * before the arguments are read). */
static const char *version_name;
static const proto_daemon_lib_t *version_libs;
static size_t version_nlibs;

void proto_daemon_set_version(const char *name, const proto_daemon_lib_t *libs, size_t n) {
  version_name = name;
  version_libs = libs;
  version_nlibs = libs ? n : 0;
}

/* The name without its directory: "--version" used to print the binary's
 * full path, which says where it was built, not what it is. */
static const char *base_name(const char *path) {
  const char *slash = path ? strrchr(path, '/') : NULL;
  return slash ? slash + 1 : path ? path : "daemon";
}

static void print_version(const char *argv0) {
  printf("%s %s\n", version_name ? version_name : base_name(argv0), PROTO_DAEMON_VERSION);
  printf("libuv %s\n", uv_version_string());
  printf("jansson %s\n", jansson_version_str());
  printf("hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
  for (size_t i = 0; i < version_nlibs; i++)
    printf("%s %s\n", version_libs[i].name ? version_libs[i].name : "?",
           version_libs[i].version ? version_libs[i].version : "unknown");
}

int proto_daemon_args(int argc, char **argv, const char *usage) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage, stdout);
      return 1;
    }
    if (strcmp(argv[i], "--health") == 0)
      return PROTO_DAEMON_HEALTH_PROBE;
    if (strcmp(argv[i], "--version") == 0) {
      print_version(argv[0]);
      return 1;
    }
    fprintf(stderr, "%s: unknown argument '%s'\n\n", argv[0], argv[i]);
    fputs(usage, stderr);
    return -1;
  }
  return 0;
}

/* Runs in signal context: only async-signal-safe calls. */
static void on_stop_deadline(int signum) {
  static const char line[] =
      "{\"level\":\"error\",\"event\":\"stop_deadline\",\"msg\":\"still waiting for "
      "background work (e.g. a DNS lookup in the thread pool) after the stop deadline: "
      "exiting\"}\n";
  (void)signum;
  proto_log_flush(); /* write(2) only; at worst repeats lines a flush was writing */
  ssize_t rc = write(STDOUT_FILENO, line, sizeof(line) - 1);
  (void)rc;
  _exit(0);
}

static void on_signal(uv_signal_t *h, int signum) {
  proto_daemon_t *d = h->data;
  if (d->stopping) {
    proto_log(PROTO_LOG_WARN, NULL, "signal", "signal %d while stopping: ignored", signum);
    return;
  }
  d->stopping = 1;
  proto_log(PROTO_LOG_INFO, NULL, "stopping", "signal %d: draining and stopping", signum);
  /* Draining is bounded (requests, event flush), but a getaddrinfo stuck in
   * libuv's thread pool (a DNS server that does not answer) keeps the loop
   * alive and cannot be canceled. Everything that matters is answered or
   * committed by then, so a stop never outlasts this: no SIGKILL from the
   * supervisor, no half-written state. */
  signal(SIGALRM, on_stop_deadline);
  alarm(PROTO_DAEMON_STOP_DEADLINE_S);
  d->on_stop(d->arg);
}

int proto_daemon_init(proto_daemon_t *d, uv_loop_t *loop,
                      void (*on_stop)(void *arg), void *arg) {
  memset(d, 0, sizeof(*d));
  d->loop = loop;
  d->on_stop = on_stop;
  d->arg = arg;
  /* A peer closing mid-write must be an EPIPE on that write, not a dead daemon. */
  signal(SIGPIPE, SIG_IGN);
  if (uv_signal_init(loop, &d->sigterm) != 0)
    return PROTO_EIO;
  if (uv_signal_init(loop, &d->sigint) != 0) {
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    return PROTO_EIO;
  }
  d->sigterm.data = d;
  d->sigint.data = d;
  if (uv_signal_start(&d->sigterm, on_signal, SIGTERM) != 0 ||
      uv_signal_start(&d->sigint, on_signal, SIGINT) != 0) {
    proto_daemon_close(d);
    return PROTO_EIO;
  }
  /* Signal handles must not keep the loop alive once everything else is done. */
  uv_unref((uv_handle_t *)&d->sigterm);
  uv_unref((uv_handle_t *)&d->sigint);
  if (proto_log_buffer_on(loop) != 0) /* unbuffered logs still work */
    proto_log(PROTO_LOG_WARN, NULL, "log_unbuffered", "cannot buffer log lines on the loop");
  return 0;
}

void proto_daemon_close(proto_daemon_t *d) {
  proto_log_buffer_off(); /* what is logged from here on goes out at once */
  if (!uv_is_closing((uv_handle_t *)&d->sigterm))
    uv_close((uv_handle_t *)&d->sigterm, NULL);
  if (!uv_is_closing((uv_handle_t *)&d->sigint))
    uv_close((uv_handle_t *)&d->sigint, NULL);
  /* Closing the watchers restores the default action, which would kill a
   * daemon hit by a second SIGTERM while it finishes its teardown. */
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
}

void proto_daemon_announce(const char *name, const char *host, int port) {
  json_t *f = json_pack("{s:s, s:s, s:i}", "name", name, "host", host, "port", port);
  proto_log_always(PROTO_LOG_INFO, "listening", f);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int proto_daemon_loop_teardown(uv_loop_t *loop) {
  uv_walk(loop, close_any, NULL);
  while (uv_run(loop, UV_RUN_DEFAULT) != 0) {
  }
  return uv_loop_close(loop);
}

typedef struct probe {
  int done;
  int exit_status;
} probe_t;

static void on_probe_reply(const proto_rpc_result_t *res, void *arg) {
  probe_t *p = arg;
  const char *status = json_string_value(json_object_get(res->response, "status"));
  p->done = 1;
  if (res->status == PROTO_OK && status && strcmp(status, "ok") == 0) {
    p->exit_status = 0;
    return;
  }
  char *text = res->response ? json_dumps(res->response, JSON_COMPACT)
               : res->err    ? json_dumps(res->err, JSON_COMPACT | JSON_ENCODE_ANY)
                             : NULL;
  fprintf(stderr, "health: %s%s%s\n", proto_strerror(res->status), text ? ": " : "",
          text ? text : "");
  free(text);
  p->exit_status = 1;
}

int proto_daemon_health_probe(const char *host, int port, unsigned timeout_ms) {
  uv_loop_t loop;
  probe_t p = {0, 1};
  if (uv_loop_init(&loop) != 0)
    return 1;
  proto_log_set_level(PROTO_LOG_ERROR); /* stdout stays quiet for the probe */
  proto_rpc_client_opts_t o = {.timeout_ms = timeout_ms, .connect_timeout_ms = timeout_ms};
  proto_rpc_client_t *cli = proto_rpc_client_new(&loop, "health", host, port, &o);
  if (!cli) {
    fprintf(stderr, "health: cannot create a client for %s:%d\n", host, port);
  } else {
    int rc = proto_rpc_client_send(cli, "health", NULL, NULL, timeout_ms, on_probe_reply, &p);
    if (rc != 0)
      fprintf(stderr, "health: %s\n", proto_strerror(rc));
    while (rc == 0 && !p.done)
      uv_run(&loop, UV_RUN_ONCE);
    proto_rpc_client_close(cli);
  }
  proto_daemon_loop_teardown(&loop);
  return p.exit_status;
}
