/* proto/daemon.h: what every daemon's main() shares: command-line handling,
 * signal-driven graceful shutdown, and the "listening" announcement that
 * supervisors and tests wait for.
 */
#ifndef PROTO_DAEMON_H
#define PROTO_DAEMON_H

#include <stddef.h>
#include <uv.h>

/* A stop that takes longer than this (drain 10 s + event flush 2 s are the
 * longest bounded steps) ends the process: supervisors allow 15 s. */
#define PROTO_DAEMON_STOP_DEADLINE_S 13u

typedef struct proto_daemon {
  uv_loop_t *loop;
  uv_signal_t sigterm;          /* SIGTERM: graceful stop */
  uv_signal_t sigint;           /* SIGINT: graceful stop */
  void (*on_stop)(void *arg);   /* called once, on the first signal */
  void *arg;
  int stopping;                 /* set once on_stop has been called */
} proto_daemon_t;

/* The version of the suite, printed by --version. */
#define PROTO_DAEMON_VERSION "0.1.0"

/* A library a daemon runs on, for --version: {"sqlite", sqlite3_libversion()}. */
typedef struct proto_daemon_lib {
  const char *name;
  const char *version;
} proto_daemon_lib_t;

/* What --version prints, one "name version" per line on stdout:
 *   gateway 0.1.0
 *   libuv 1.44.2        (uv_version_string(): the library loaded at run time)
 *   jansson 2.14
 *   hiredis 0.14.1      (hiredis has no run-time version: the headers')
 *   libmicrohttpd ...   (libs[0..n): the libraries the daemon links beyond
 *                        libproto's, which libproto must not depend on)
 * name is the daemon's name ("user-service"); NULL means the basename of
 * argv[0]. name and libs are borrowed until proto_daemon_args() returns.
 * Call before proto_daemon_args(); without it --version prints argv[0]'s
 * basename and libproto's own libraries. */
void proto_daemon_set_version(const char *name, const proto_daemon_lib_t *libs, size_t n);

/* Handle argv: --help/-h prints usage to stdout and returns 1 (exit 0);
 * --version likewise (see proto_daemon_set_version()); --health returns PROTO_DAEMON_HEALTH_PROBE (the daemon
 * then runs proto_daemon_health_probe() instead of serving); an unknown
 * argument prints usage to stderr and returns -1 (exit 2); otherwise 0. usage
 * is the full help text (options and the environment variables it reads). */
#define PROTO_DAEMON_HEALTH_PROBE 2
int proto_daemon_args(int argc, char **argv, const char *usage);

/* Container health probe: send {"cmd":"health"} to host:port and wait up to
 * timeout_ms. Returns the process exit status: 0 when the reply came and its
 * "status" is "ok", 1 otherwise (the reason on stderr). */
int proto_daemon_health_probe(const char *host, int port, unsigned timeout_ms);

/* Ignore SIGPIPE, watch SIGTERM and SIGINT, buffer log lines per loop turn
 * (proto_log_buffer_on). 0 or PROTO_EIO. */
int proto_daemon_init(proto_daemon_t *d, uv_loop_t *loop,
                      void (*on_stop)(void *arg), void *arg);
/* Write buffered log lines and log unbuffered from now on; close the signal
 * handles (call from on_stop or after the loop ends). */
void proto_daemon_close(proto_daemon_t *d);

/* Log {"event":"listening","name":name,"host":host,"port":port}: the line
 * test harnesses and supervisors wait for. */
void proto_daemon_announce(const char *name, const char *host, int port);

/* Close every handle still open on the loop, run it until they are closed
 * and close the loop. Returns the uv_loop_close() result. */
int proto_daemon_loop_teardown(uv_loop_t *loop);

#endif
