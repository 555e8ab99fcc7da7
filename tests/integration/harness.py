"""Integration test harness: real daemons as children on ephemeral ports.

A Daemon is started with its own environment (a temporary DATA_DIR per test),
its stdout and stderr are read by threads and kept whole for failure messages,
and start() waits, with a deadline, for its {"event":"listening"} line, failing
at once with the child's output if it exits first. stop() sends SIGTERM to the
child's pid and fails the test on a non-zero or signalled exit or on a
sanitizer report (the build runs under ASan/UBSan). Helpers speak raw NestJS
TCP frames (`<len>#<json>`, len in UTF-16 units) and HTTP. No sleeps: every
wait polls a condition inside a deadline. Python 3 standard library only.
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

# Deadlines, in seconds. Generous: the daemons run under ASan.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
IO_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
)

NO_HANDLER_MESSAGE = (
    "There is no matching message handler defined in the remote service.")


# --- locating binaries ---------------------------------------------------------

def build_dir():
    d = os.environ.get("NESTC_BUILD_DIR")
    if not d:
        raise AssertionError(
            "NESTC_BUILD_DIR is not set: run through ctest, or export "
            "NESTC_BUILD_DIR=<your build dir> (e.g. /work/main/build-you)")
    return d


def binary(rel):
    """Absolute path of a built executable, or a clear failure."""
    path = os.path.join(build_dir(), rel)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError(
            "missing executable %s (NESTC_BUILD_DIR=%s): build it first with "
            "`cmake --build <build dir>`" % (path, build_dir()))
    return path


USER_SERVICE = "services/user/user-service"
INVENTORY_SERVICE = "services/inventory/inventory-service"
GATEWAY = "gateway/gateway"
PROTO_CALL = "tools/proto-call/proto-call"


# --- waiting -------------------------------------------------------------------

def wait_until(predicate, timeout=IO_TIMEOUT_S, interval=POLL_INTERVAL_S,
               message="condition"):
    """Poll predicate() until it returns a truthy value (returned) or the
    deadline passes (AssertionError naming message and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, message, last))
        time.sleep(interval)  # polling interval inside a deadline loop


# --- daemons -------------------------------------------------------------------

_live = set()  # Daemons started and not yet reaped, for the exit safety net


@atexit.register
def _kill_leftovers():
    """If the test process ends without stopping a daemon (an interrupted
    run), kill it by pid rather than leave it running."""
    for d in list(_live):
        if d.proc is not None and d.proc.poll() is None:
            try:
                os.kill(d.proc.pid, signal.SIGKILL)
            except OSError:
                pass

class Daemon:
    """One child process whose output is captured line by line."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.proc = None
        self.lines = []          # (stream, text) in arrival order
        self.cond = threading.Condition()
        self.readers = []
        self.ports = {}          # listening name -> port
        self.returncode = None

    # -- output --
    def _reader(self, stream, tag):
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append((tag, text))
                self.cond.notify_all()
        stream.close()
        with self.cond:
            self.cond.notify_all()

    def output(self):
        with self.cond:
            return "\n".join("[%s] %s" % (tag, text) for tag, text in self.lines)

    def describe(self):
        return "--- %s (%s) exit=%r output: ---\n%s\n--- end of %s output ---" % (
            self.name, " ".join(self.argv), self.proc.poll() if self.proc else None,
            self.output(), self.name)

    def json_lines(self):
        """Every stdout line that is a JSON object, parsed."""
        out = []
        with self.cond:
            lines = list(self.lines)
        for tag, text in lines:
            if tag != "stdout":
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def wait_for_log(self, predicate, timeout=IO_TIMEOUT_S, message="log line"):
        """Wait for a JSON log line matching predicate; return it."""
        def find():
            for obj in self.json_lines():
                if predicate(obj):
                    return obj
            return None
        try:
            return wait_until(find, timeout, message=message)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.describe())) from None

    def sanitizer_report(self):
        out = self.output()
        for marker in SANITIZER_MARKERS:
            if marker in out:
                return marker
        return None

    # -- lifecycle --
    def start(self, listen_names=("rpc",), timeout=START_TIMEOUT_S):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _live.add(self)
        for stream, tag in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            t = threading.Thread(target=self._reader, args=(stream, tag), daemon=True)
            t.start()
            self.readers.append(t)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for obj in self._listening_lines():
                    self.ports[obj.get("name")] = int(obj["port"])
                if all(n in self.ports for n in listen_names):
                    return self
                if self.proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.1))
        exited = self.proc.poll()
        if exited is None:
            self.kill()
            raise AssertionError("%s did not announce %s within %.0fs\n%s" % (
                self.name, "/".join(listen_names), timeout, self.describe()))
        self.proc.wait()
        self.returncode = exited  # reported here; stop() has nothing to add
        _live.discard(self)
        self._join_readers()
        raise AssertionError("%s exited with status %s before announcing %s\n%s" % (
            self.name, exited, "/".join(listen_names), self.describe()))

    def _listening_lines(self):
        # called with self.cond held
        for tag, text in self.lines:
            if tag != "stdout" or '"listening"' not in text:
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == "listening" and "port" in obj:
                yield obj

    @property
    def port(self):
        """The first announced port (rpc for services, http for the gateway)."""
        for name in ("rpc", "http"):
            if name in self.ports:
                return self.ports[name]
        raise AssertionError("%s announced no port" % self.name)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self, testcase):
        if not self.alive():
            self._join_readers()
            testcase.fail("%s is not running (exit %s)\n%s" % (
                self.name, self.proc.poll(), self.describe()))

    def _join_readers(self):
        for t in self.readers:
            t.join(timeout=5)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM by pid, wait with a deadline; raise AssertionError on a
        hang, a non-zero or signalled exit, or a sanitizer report."""
        if self.proc is None or self.returncode is not None:
            return
        already = self.proc.poll()
        if already is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("%s did not exit within %.0fs of SIGTERM\n%s" % (
                    self.name, timeout, self.describe())) from None
        self.returncode = self.proc.returncode
        _live.discard(self)
        self._join_readers()
        problems = []
        if already is not None:
            problems.append("it had already exited (status %s) before SIGTERM" % already)
        if self.returncode != 0:
            if self.returncode < 0:
                problems.append("killed by signal %d" % -self.returncode)
            else:
                problems.append("exit status %d" % self.returncode)
        marker = self.sanitizer_report()
        if marker:
            problems.append("sanitizer report (%r)" % marker)
        if problems:
            raise AssertionError("%s did not stop cleanly: %s\n%s" % (
                self.name, "; ".join(problems), self.describe()))

    def kill(self):
        """SIGKILL by pid (simulated crash); no exit status check. A sanitizer
        report printed before the kill still fails."""
        if self.proc is None or self.returncode is not None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.returncode = self.proc.returncode
        _live.discard(self)
        self._join_readers()
        marker = self.sanitizer_report()
        if marker:
            raise AssertionError("%s printed a sanitizer report (%r)\n%s" % (
                self.name, marker, self.describe()))


class DaemonTestCase(unittest.TestCase):
    """Starts daemons for one test and stops them (checking their exit) at
    cleanup. A daemon that crashed or leaked fails the test."""

    def setUp(self):
        super().setUp()
        self.daemons = []
        self.addCleanup(self._stop_all)

    def _stop_all(self):
        errors = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n\n".join(errors))

    def make_data_dir(self):
        d = tempfile.mkdtemp(prefix="nestc-data-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_daemon(self, name, rel, env, listen_names):
        d = Daemon(name, [binary(rel)], env)
        self.daemons.append(d)
        d.start(listen_names)
        return d

    def start_user_service(self, data_dir=None, port=0, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "USER_SERVICE_PORT": str(port),
            "DATA_DIR": data_dir or self.make_data_dir(),
        }
        env.update({k: str(v) for k, v in extra_env.items()})
        d = self.start_daemon("user-service", USER_SERVICE, env, ("rpc",))
        d.data_dir = env["DATA_DIR"]
        return d

    def start_inventory_service(self, data_dir=None, port=0, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "INVENTORY_SERVICE_PORT": str(port),
            "DATA_DIR": data_dir or self.make_data_dir(),
        }
        env.update({k: str(v) for k, v in extra_env.items()})
        d = self.start_daemon("inventory-service", INVENTORY_SERVICE, env, ("rpc",))
        d.data_dir = env["DATA_DIR"]
        return d

    def seed_products(self, inventory, products):
        """create_product on the inventory daemon for each {id: (price,
        stock[, currency])}: the order saga reserves and prices there, so an
        order can name only products the catalogue holds. Returns {id:
        product}."""
        out = {}
        with FrameConn(inventory.port) as c:
            for pid, spec in products.items():
                data = {"id": pid, "name": pid, "price": spec[0], "stock": spec[1]}
                if len(spec) > 2:
                    data["currency"] = spec[2]
                out[pid] = reply_response(c.call("create_product", data))
        return out

    def start_gateway(self, user_port, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "GATEWAY_PORT": "0",
            "USER_SERVICE_HOST": "127.0.0.1",
            "USER_SERVICE_PORT": str(user_port),
            # Gateway-only tests exercise the user routes. The other upstreams
            # point at the user service too (it answers `health`), so /ready
            # can be all-up, and never at a default port someone else uses.
            "ORDER_SERVICE_PORT": str(user_port),
            "PAYMENT_SERVICE_PORT": str(user_port),
            "NOTIFICATION_SERVICE_PORT": str(user_port),
            "INVENTORY_SERVICE_PORT": str(user_port),
            "DATA_DIR": self.make_data_dir(),
        }
        env.update({k: str(v) for k, v in extra_env.items()})
        return self.start_daemon("gateway", GATEWAY, env, ("http",))

    def describe_all(self):
        return "\n".join(d.describe() for d in self.daemons)


# --- raw NestJS TCP frames -----------------------------------------------------

def utf16_units(text):
    """JavaScript's string.length of text."""
    return len(text.encode("utf-16-le")) // 2


def dump_json(obj, ensure_ascii=False):
    return json.dumps(obj, ensure_ascii=ensure_ascii, separators=(",", ":"))


def encode_frame(payload, ensure_ascii=False):
    """One frame. payload is a JSON-able object, or a str taken as the JSON
    text. Non-ASCII is sent as raw UTF-8 by default (as NestJS does)."""
    text = payload if isinstance(payload, str) else dump_json(payload, ensure_ascii)
    return ("%d#" % utf16_units(text)).encode("ascii") + text.encode("utf-8")


def _utf8_seq_len(lead):
    if lead < 0x80:
        return 1
    if lead >> 5 == 0x6:
        return 2
    if lead >> 4 == 0xE:
        return 3
    if lead >> 3 == 0x1E:
        return 4
    raise ValueError("invalid UTF-8 lead byte 0x%02x" % lead)


class FrameDecoder:
    """Incremental `<len>#<json>` decoder that counts UTF-16 units."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data

    def next(self):
        """The next frame's JSON text, or None if more bytes are needed."""
        i = self.buf.find(b"#")
        if i < 0:
            if len(self.buf) > 12:
                raise ValueError("no frame length in %r" % self.buf[:40])
            return None
        head = self.buf[:i].strip(b"\r\n ")
        if not head.isdigit():
            raise ValueError("bad frame length %r" % self.buf[:i])
        want = int(head)
        pos = i + 1
        units = 0
        while units < want:
            if pos >= len(self.buf):
                return None
            n = _utf8_seq_len(self.buf[pos])
            if pos + n > len(self.buf):
                return None
            units += 2 if n == 4 else 1
            pos += n
        if units != want:
            raise ValueError("frame length %d splits a surrogate pair" % want)
        text = self.buf[i + 1:pos].decode("utf-8")
        self.buf = self.buf[pos:]
        return text


class FrameConn:
    """A raw TCP connection to a service, speaking frames."""

    _ids = 0

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()
        self.pending = []  # frames read but not yet claimed
        self.closed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def new_id(cls):
        cls._ids += 1
        return "t%020d" % cls._ids

    def send_bytes(self, data):
        self.sock.sendall(data)

    def send(self, payload, ensure_ascii=False):
        self.sock.sendall(encode_frame(payload, ensure_ascii))

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
        return data

    def read_frame(self, timeout=IO_TIMEOUT_S):
        """The next frame as parsed JSON (AssertionError on timeout or close)."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            text = self.decoder.next()
            if text is not None:
                return json.loads(text)
            try:
                data = self._recv(deadline)
            except socket.timeout:
                raise AssertionError("no frame within %.1fs" % timeout) from None
            if not data:
                raise AssertionError("connection closed while waiting for a frame"
                                     " (buffered: %r)" % self.decoder.buf)
            self.decoder.feed(data)

    def read_reply(self, req_id, timeout=IO_TIMEOUT_S):
        """The reply with this id; other frames are kept for later."""
        for i, f in enumerate(self.pending):
            if isinstance(f, dict) and f.get("id") == req_id:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        held = self.pending
        self.pending = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no reply for id %r within %.1fs" % (req_id, timeout))
                f = self.read_frame(left)
                if isinstance(f, dict) and f.get("id") == req_id:
                    return f
                held.append(f)
        finally:
            self.pending = held + self.pending

    def request(self, pattern, data=None, req_id=None, metadata=None,
                timeout=IO_TIMEOUT_S, ensure_ascii=False):
        """Send a request and return its reply packet."""
        req_id = req_id if req_id is not None else self.new_id()
        packet = {"pattern": pattern, "data": data, "id": req_id}
        if metadata is not None:
            packet["metadata"] = metadata
        self.send(packet, ensure_ascii)
        return self.read_reply(req_id, timeout)

    def call(self, cmd, data=None, **kw):
        """request({"cmd": cmd}, data)."""
        return self.request({"cmd": cmd}, data, **kw)

    def emit(self, pattern, data=None, metadata=None):
        packet = {"pattern": pattern, "data": data}
        if metadata is not None:
            packet["metadata"] = metadata
        self.send(packet)

    def wait_closed(self, timeout=IO_TIMEOUT_S):
        """True once the peer closed (recv returned b''); frames that arrive
        meanwhile go to self.pending. AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.decoder.next()
            if text is not None:
                self.pending.append(json.loads(text))
                continue
            if self.closed:
                return True
            try:
                data = self._recv(deadline)
            except socket.timeout:
                raise AssertionError("the server did not close the connection within "
                                     "%.1fs" % timeout) from None
            if data:
                self.decoder.feed(data)


def reply_response(reply):
    """The response of a successful reply packet (AssertionError otherwise)."""
    if not isinstance(reply, dict) or "err" in reply and reply["err"] is not None:
        raise AssertionError("expected a successful reply, got %r" % (reply,))
    if reply.get("isDisposed") is not True:
        raise AssertionError("reply without isDisposed:true: %r" % (reply,))
    return reply.get("response")


def reply_error(reply):
    """The err of an error reply packet (AssertionError otherwise)."""
    if not isinstance(reply, dict) or reply.get("err") is None:
        raise AssertionError("expected an error reply, got %r" % (reply,))
    return reply["err"]


# --- HTTP ----------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # http.client.HTTPMessage (case-insensitive)
        self.body = body
        self.json = None
        ctype = headers.get("Content-Type", "") if headers is not None else ""
        if body and ("json" in ctype or body[:1] in (b"{", b"[")):
            try:
                self.json = json.loads(body.decode("utf-8"))
            except ValueError:
                self.json = None

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        return "<HTTP %s %r %r>" % (self.status, dict(self.headers.items()),
                                    self.body[:500])


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1",
                 timeout=IO_TIMEOUT_S, conn=None):
    """One HTTP request. body: bytes, str, or a JSON-able object (sent with
    Content-Type: application/json unless headers say otherwise). Pass conn
    (an http.client.HTTPConnection) to reuse a keep-alive connection."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = dump_json(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (e.g. 413) and stop reading before the
            # whole body is sent: its response is still readable.
            pass
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.headers, data)
    finally:
        if own:
            conn.close()


# --- fake upstreams ------------------------------------------------------------

class SilentServer:
    """A TCP server that accepts connections, reads and discards everything
    and never answers (an upstream that hangs)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.received = b""
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while not self.stopping:
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    self.conns.append(c)
                    sel.register(c, selectors.EVENT_READ)
                else:
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        with self.lock:
                            self.received += data
                    else:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
        sel.close()

    def accepted(self):
        return len(self.conns)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()
