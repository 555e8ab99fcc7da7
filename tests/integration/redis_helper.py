"""Redis for integration tests: a real redis-server child on a free port, a
minimal RESP client, and a subscriber that records every message it receives.

RedisServer.start() runs `redis-server --port <free> --save '' --appendonly no`
bound to 127.0.0.1, waits with a deadline until it answers PING (failing at
once with its output if it exits first; a port taken meanwhile is retried on
another port), and stop() sends SIGTERM to its pid and waits with a deadline.
Subscriber speaks raw RESP over a socket: subscribe() returns once Redis has
confirmed every channel, and a reader thread keeps each message as
(channel, payload bytes) for tests to wait on. Only the Python 3 standard
library; no sleeps outside deadline-bounded polling.

Usage in a DaemonTestCase:
    redis = start_redis(self)             # stopped at cleanup
    sub = redis.subscriber(self, "payment_completed")
    ... sub.wait_for(lambda ch, msg: ..., message="...")
"""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import IO_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S, wait_until

REDIS_SERVER = "redis-server"
START_ATTEMPTS = 3          # free-port races: try another port this many times


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --- RESP ----------------------------------------------------------------------

class RespError(Exception):
    """An error reply (-ERR ...)."""


def encode_command(*args):
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse_reply(buf, pos=0):
    """(value, next position) for the reply at buf[pos:], or None when more
    bytes are needed. Errors are returned as RespError instances."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    nxt = end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), nxt
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            return None
        return buf[nxt:nxt + n], nxt + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, nxt
        items = []
        for _ in range(n):
            r = parse_reply(buf, nxt)
            if r is None:
                return None
            item, nxt = r
            items.append(item)
        return items, nxt
    raise ValueError("bad RESP type byte %r in %r" % (kind, buf[pos:pos + 40]))


class RespConn:
    """A blocking request/reply connection (not for subscribing)."""

    def __init__(self, port, host="127.0.0.1", password=None, timeout=IO_TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if password:
            self.command("AUTH", password)

    def command(self, *args, timeout=IO_TIMEOUT_S):
        """Send one command and return its reply (RespError raised)."""
        self.sock.sendall(encode_command(*args))
        deadline = time.monotonic() + timeout
        while True:
            r = parse_reply(self.buf)
            if r is not None:
                value, n = r
                self.buf = self.buf[n:]
                if isinstance(value, RespError):
                    raise value
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no Redis reply to %r within %.1fs" % (args[0], timeout))
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("Redis closed the connection during %r" % (args[0],))
            self.buf += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- subscriber ----------------------------------------------------------------

class Subscriber:
    """SUBSCRIBE on its own connection; a thread records every message."""

    def __init__(self, port, host="127.0.0.1", password=None, timeout=IO_TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.cond = threading.Condition()
        self.messages = []       # (channel str, payload bytes) in arrival order
        self.confirmed = set()   # channels Redis confirmed
        self.replies = []        # other replies (AUTH, ...)
        self.error = None        # why the reader stopped, if it failed
        self.closed = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if password:
            self.sock.sendall(encode_command("AUTH", password))
            self._wait(lambda: self.replies, timeout, "AUTH reply")
            if isinstance(self.replies[0], RespError):
                raise AssertionError("AUTH failed: %s" % self.replies[0])

    def _run(self):
        buf = b""
        self.sock.settimeout(0.2)
        try:
            while not self.stopping:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                buf += data
                while True:
                    r = parse_reply(buf)
                    if r is None:
                        break
                    value, n = r
                    buf = buf[n:]
                    self._dispatch(value)
        except (OSError, ValueError) as e:
            if not self.stopping:
                self.error = e
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _dispatch(self, value):
        with self.cond:
            if isinstance(value, list) and len(value) == 3 and value[0] == b"message":
                self.messages.append((value[1].decode("utf-8"), value[2]))
            elif isinstance(value, list) and len(value) == 3 and value[0] == b"subscribe":
                self.confirmed.add(value[1].decode("utf-8"))
            else:
                self.replies.append(value)
            self.cond.notify_all()

    def _wait(self, predicate, timeout, message):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = predicate()
                if v:
                    return v
                if self.closed:
                    raise AssertionError("subscriber connection closed waiting for %s (%r)"
                                         % (message, self.error))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for %s; received %r"
                                         % (timeout, message, self.messages))
                self.cond.wait(min(left, 0.1))

    def subscribe(self, *channels, timeout=IO_TIMEOUT_S):
        """SUBSCRIBE and wait until Redis confirmed every channel: messages
        published after this returns are received."""
        self.sock.sendall(encode_command("SUBSCRIBE", *channels))
        self._wait(lambda: all(c in self.confirmed for c in channels), timeout,
                   "SUBSCRIBE confirmation of %s" % (channels,))
        return self

    def snapshot(self, channel=None):
        """The messages so far, as (channel, payload bytes), optionally of one channel."""
        with self.cond:
            return [m for m in self.messages if channel is None or m[0] == channel]

    def wait_for(self, predicate, timeout=IO_TIMEOUT_S, message="a message"):
        """Wait for a message with predicate(channel, payload) true; return it."""
        def find():
            for ch, payload in self.messages:
                if predicate(ch, payload):
                    return (ch, payload)
            return None
        return self._wait(find, timeout, message)

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        try:
            self.sock.close()
        except OSError:
            pass


# --- the server ----------------------------------------------------------------

class RedisServer:
    """A redis-server child: no persistence, loopback only, a free port."""

    def __init__(self, password=None):
        self.password = password
        self.port = None
        self.proc = None
        self.output = b""
        self.returncode = None

    def _argv(self, port):
        exe = shutil.which(REDIS_SERVER)
        if not exe:
            raise AssertionError("redis-server is not installed (not on PATH)")
        argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def _answers_ping(self):
        try:
            c = RespConn(self.port, password=self.password, timeout=1.0)
        except OSError:
            return False
        try:
            return c.command("PING", timeout=1.0) == "PONG"
        except (OSError, AssertionError, RespError):
            return False
        finally:
            c.close()

    def start(self, port=None, timeout=START_TIMEOUT_S):
        """Start on port (default: a free one) and wait until it answers PING."""
        last = ""
        for _ in range(1 if port else START_ATTEMPTS):
            self.port = port or free_port()
            self.proc = subprocess.Popen(self._argv(self.port), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._answers_ping():
                    self.returncode = None
                    return self
                time.sleep(0.02)  # polling interval inside a deadline loop
            if self.proc.poll() is None:
                self.kill()
                raise AssertionError("redis-server did not answer PING on port %d within "
                                     "%.0fs" % (self.port, timeout))
            out = self.proc.stdout.read().decode("utf-8", "replace")
            self.proc.stdout.close()
            last = "redis-server exited with %s on port %d:\n%s" % (
                self.proc.returncode, self.port, out)
            self.proc = None
            if "Address already in use" not in out:
                break
        raise AssertionError(last)

    @property
    def pid(self):
        return self.proc.pid

    def conn(self):
        return RespConn(self.port, password=self.password)

    def subscriber(self, testcase, *channels):
        """A confirmed Subscriber on channels, closed at the test's cleanup."""
        s = Subscriber(self.port, password=self.password)
        testcase.addCleanup(s.close)
        if channels:
            s.subscribe(*channels)
        return s

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM by pid and wait; SIGKILL at the deadline."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._finish()

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._finish()

    def _finish(self):
        self.returncode = self.proc.returncode
        try:
            self.output = self.proc.stdout.read()
            self.proc.stdout.close()
        except (OSError, ValueError):
            pass
        self.proc = None


def start_redis(testcase, password=None):
    """A started RedisServer, stopped at the test's cleanup."""
    r = RedisServer(password=password)
    r.start()
    testcase.addCleanup(r.stop)
    return r


__all__ = ["RedisServer", "RespConn", "RespError", "Subscriber", "encode_command",
           "free_port", "parse_reply", "start_redis", "wait_until"]
