"""PostgreSQL for tests: a real server (Debian's postgresql-15) in a temporary
folder, on a free port of 127.0.0.1, with a database and a role to hand out.

PgServer.start() runs initdb into a fresh temporary folder, then the
postgres binary itself (not pg_ctl, so its pid is ours to signal) listening on
127.0.0.1:<free port> with its unix socket in that folder, waits with a
deadline until pg_isready says it accepts connections (failing at once with
its output if it exits first; a port taken meanwhile is retried on another),
and creates the role and database through psql over the unix socket. When the
suite runs as root, initdb and postgres run as `nobody` (setpriv): PostgreSQL
refuses to run as root. stop() sends SIGINT (fast shutdown: sessions are
ended, what is committed stays) to that pid and waits; start() again brings
the same cluster back on the same port, so a test can restart the server
under a client. Python 3 standard library only; no sleeps outside
deadline-bounded polling.

From Python tests:
    pg = start_pg(self)                    # stopped and removed at cleanup
    dsn = pg.dsn                           # postgresql://nestc:secret@127.0.0.1:N/nestc
    pg.psql("SELECT 1")
From C tests (or a shell), the CLI mode:
    python3 pg_helper.py serve
prints one line, "dsn <DSN>" once the server is ready or "skip <reason>" when
postgresql-15 is not installed (exit 0), then reads commands on stdin, one
a line, each answered by one line: "stop" -> "stopped", "start" -> "started",
"kill" (SIGKILL, a crash) -> "killed". EOF on stdin (the test ended, or
died) stops the server, removes the folder and exits.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
INITDB = os.path.join(PG_BIN, "initdb")
POSTGRES = os.path.join(PG_BIN, "postgres")
PG_ISREADY = os.path.join(PG_BIN, "pg_isready")
PSQL = os.path.join(PG_BIN, "psql")

START_TIMEOUT_S = 30.0      # initdb + first start, under a loaded 2-core machine
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.02
START_ATTEMPTS = 3          # free-port races: try another port this many times
UNPRIVILEGED_USER = "nobody"

DB_NAME = "nestc"
DB_USER = "nestc"
DB_PASSWORD = "secret"
ADMIN_USER = "postgres"     # initdb's superuser, reachable only over the unix socket


def missing_reason():
    """Why a real server cannot be started here (None when it can)."""
    for exe in (INITDB, POSTGRES, PG_ISREADY, PSQL):
        if not os.access(exe, os.X_OK):
            return ("postgresql-15 is not installed (%s missing): scripts/deps.sh test "
                    "installs it" % exe)
    return None


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class PgServer:
    """One postgres child on its own temporary cluster."""

    def __init__(self, durable=False):
        # fsync off by default: the tests restart and kill clients, not the
        # machine, and a committed row survives a server crash without it
        # (only the OS crashing would lose it). durable=True keeps fsync on.
        self.durable = durable
        self.dir = None
        self.port = None
        self.proc = None
        self.output = ""
        self.initialised = False
        self.user = None  # pwd entry to run as, or None (not root)

    # -- paths and identities --
    @property
    def datadir(self):
        return os.path.join(self.dir, "data")

    @property
    def sockdir(self):
        return os.path.join(self.dir, "sock")

    @property
    def dsn(self):
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (DB_USER, DB_PASSWORD, self.port,
                                                       DB_NAME)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _as_user(self, argv):
        if self.user is None:
            return argv
        return ["setpriv", "--reuid", str(self.user.pw_uid), "--regid",
                str(self.user.pw_gid), "--clear-groups", "--"] + argv

    def _prepare_dir(self):
        reason = missing_reason()
        if reason:
            raise AssertionError(reason)
        self.dir = tempfile.mkdtemp(prefix="nestc-pg-")
        os.mkdir(self.sockdir, 0o700)
        if os.geteuid() == 0:
            self.user = pwd.getpwnam(UNPRIVILEGED_USER)
            for d in (self.dir, self.sockdir):
                os.chown(d, self.user.pw_uid, self.user.pw_gid)

    def _initdb(self):
        argv = self._as_user([INITDB, "-D", self.datadir, "-U", ADMIN_USER,
                              "--auth-local=trust", "--auth-host=scram-sha-256",
                              "-E", "UTF8", "--locale=C", "--no-sync"])
        r = subprocess.run(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=START_TIMEOUT_S)
        if r.returncode != 0:
            raise AssertionError("initdb failed (%d):\n%s" % (
                r.returncode, r.stdout.decode("utf-8", "replace")))
        self.initialised = True

    def _postgres_argv(self):
        argv = [POSTGRES, "-D", self.datadir, "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "unix_socket_directories=" + self.sockdir,
                "-c", "max_connections=100", "-c", "logging_collector=off",
                "-c", "log_min_messages=warning"]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        return self._as_user(argv)

    def _ready(self):
        r = subprocess.run([PG_ISREADY, "-q", "-h", self.sockdir, "-p", str(self.port),
                            "-U", ADMIN_USER, "-d", "postgres", "-t", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT_S)
        return r.returncode == 0

    def _spawn(self, timeout):
        self.proc = subprocess.Popen(self._postgres_argv(), cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if self._ready():
                return True
            time.sleep(POLL_INTERVAL_S)  # polling interval inside a deadline loop
        if self.proc.poll() is None:
            self.kill()
            raise AssertionError("postgres did not accept connections on port %d within "
                                 "%.0fs:\n%s" % (self.port, timeout, self.output))
        self._finish()
        return False

    def start(self, timeout=START_TIMEOUT_S):
        """First call: initdb, start on a free port, create the role and the
        database. Later calls (after stop or kill): the same cluster, the same
        port, back up. Returns once it accepts connections."""
        if self.proc is not None:
            return self
        if self.dir is None:
            self._prepare_dir()
            self._initdb()
            for _ in range(START_ATTEMPTS):
                self.port = free_port()
                if self._spawn(timeout):
                    break
                if "Address already in use" not in self.output:
                    raise AssertionError("postgres exited at start:\n%s" % self.output)
            else:
                raise AssertionError("postgres found no free port:\n%s" % self.output)
            self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (DB_USER, DB_PASSWORD),
                      db="postgres", user=ADMIN_USER)
            self.psql("CREATE DATABASE %s OWNER %s" % (DB_NAME, DB_USER),
                      db="postgres", user=ADMIN_USER)
            return self
        if not self._spawn(timeout):
            raise AssertionError("postgres exited at restart on port %d:\n%s"
                                 % (self.port, self.output))
        return self

    def psql(self, sql, db=DB_NAME, user=DB_USER):
        """Run sql through psql over the unix socket; its output (unaligned,
        tuples only). AssertionError with psql's message on failure."""
        r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sockdir, "-p", str(self.port), "-U", user, "-d", db,
                            "-c", sql], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=STOP_TIMEOUT_S)
        if r.returncode != 0:
            raise AssertionError("psql %r failed: %s" % (sql, r.stderr.decode("utf-8",
                                                                              "replace")))
        return r.stdout.decode("utf-8")

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Fast shutdown by pid (SIGINT); SIGKILL at the deadline."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._finish()

    def kill(self):
        """SIGKILL by pid: a crash. The postmaster's children notice it is
        gone and exit by themselves."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._finish()

    def _finish(self):
        try:
            self.output += self.proc.stdout.read().decode("utf-8", "replace")
            self.proc.stdout.close()
        except (OSError, ValueError):
            pass
        self.proc = None

    def remove(self):
        """Stop, then delete the temporary folder."""
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def start_pg(testcase, durable=False):
    """A started PgServer, stopped and removed at the test's cleanup; the test
    is skipped (with the reason) only when postgresql-15 is not installed."""
    reason = missing_reason()
    if reason:
        testcase.skipTest(reason)
    pg = PgServer(durable=durable)
    testcase.addCleanup(pg.remove)
    pg.start()
    return pg


def serve():
    """CLI mode for C tests: see the module comment."""
    reason = missing_reason()
    if reason:
        print("skip " + reason, flush=True)
        return 0
    pg = PgServer()
    try:
        pg.start()
        print("dsn " + pg.dsn, flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stop":
                pg.stop()
                print("stopped", flush=True)
            elif cmd == "start":
                pg.start()
                print("started", flush=True)
            elif cmd == "kill":
                pg.kill()
                print("killed", flush=True)
            else:
                print("error unknown command %r" % cmd, flush=True)
    except AssertionError as e:
        print("error " + str(e).replace("\n", " | "), flush=True)
        return 1
    finally:
        pg.remove()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.stderr.write("usage: pg_helper.py serve\n")
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # still removes the cluster
    sys.exit(serve())
