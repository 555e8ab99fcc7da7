"""The gateway in front of a real user service: the curl walkthrough,
request ids, every error status it maps (400, 404, 405, 409, 413, 503, 504),
health and readiness, keep-alive, recovery when the user service comes back
on the same port, and the request id reaching the user service's logs.
Every test starts its own daemons on ephemeral ports; cleanup stops them with
SIGTERM and fails on a non-zero exit or a sanitizer report."""

import http.client
import itertools
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from harness import (GATEWAY, USER_SERVICE, DaemonTestCase, Response, SilentServer, binary,
                     http_request, wait_until)

_seq = itertools.count(1)
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
ONE_MIB = 1024 * 1024


def unique_email(prefix="gw"):
    return "%s%d.%d@example.com" % (prefix, os.getpid(), next(_seq))


def user_list(page):
    """The list of users in a get_users response: {"users":[...],"total",...}."""
    if not isinstance(page, dict) or not isinstance(page.get("users"), list):
        raise AssertionError("no \"users\" list in get_users response %r" % (page,))
    return page["users"]


def check_error(tc, r, status):
    """An error response: the status, a JSON body with statusCode and a
    message, and a request id. Returns the body."""
    tc.assertEqual(r.status, status, r)
    tc.assertIn("application/json", r.header("Content-Type") or "", r)
    tc.assertIsInstance(r.json, dict, r)
    tc.assertEqual(r.json.get("statusCode"), status, r)
    tc.assertIsInstance(r.json.get("message"), str, r)
    tc.assertTrue(r.header("X-Request-Id"), r)
    tc.assertEqual(r.json.get("requestId"), r.header("X-Request-Id"), r)
    return r.json


class GatewayCase(DaemonTestCase):
    user_env = {}
    gateway_env = {}

    def setUp(self):
        super().setUp()
        self.user = self.start_user_service(**self.user_env)
        self.gw = self.start_gateway(self.user.port, **self.gateway_env)

    def req(self, method, path, body=None, headers=None, **kw):
        return http_request(self.gw.port, method, path, body=body, headers=headers, **kw)

    def create(self, name="Grace Hopper", email=None, headers=None):
        email = email or unique_email()
        r = self.req("POST", "/users", {"email": email, "name": name}, headers)
        self.assertEqual(r.status, 201, r)
        self.assertIsInstance(r.json, dict, r)
        return r.json

    def assert_error(self, r, status):
        return check_error(self, r, status)


class WalkthroughTest(GatewayCase):

    def test_curl_walkthrough(self):
        email = unique_email("grace")
        r = self.req("POST", "/users", {"email": email, "name": "Grace Hopper"})
        self.assertEqual(r.status, 201, r)
        self.assertIn("application/json", r.header("Content-Type"))
        user = r.json
        self.assertIsInstance(user.get("id"), str, r)
        self.assertEqual(user["email"], email)
        self.assertEqual(user["name"], "Grace Hopper")
        self.assertRegex(user.get("createdAt", ""), ISO_MS)

        r = self.req("GET", "/users/%s" % user["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], user["id"])
        self.assertEqual(r.json["email"], email)

        self.create(name="Second")
        r = self.req("GET", "/users?page=1&limit=10")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json.get("total"), 2, r)
        self.assertEqual(r.json.get("page"), 1, r)
        self.assertEqual(r.json.get("limit"), 10, r)
        self.assertEqual(len(user_list(r.json)), 2, r)

        r = self.req("GET", "/users?page=2&limit=1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(user_list(r.json)), 1, r)
        self.assertEqual(r.json.get("total"), 2, r)

        r = self.req("GET", "/users")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json.get("total"), 2, r)

    def test_non_ascii_through_gateway(self):
        name = "Zoé 😀 漢字"
        user = self.create(name=name)
        self.assertEqual(user["name"], name)
        r = self.req("GET", "/users/%s" % user["id"])
        self.assertEqual(r.json["name"], name)

    def test_health(self):
        r = self.req("GET", "/health")
        self.assertEqual(r.status, 200, r)
        self.assertIsInstance(r.json, dict, r)

    def test_ready(self):
        r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
            self.req("GET", "/ready")), message="/ready 200")
        self.assertEqual(r.json.get("status"), "ok", r)
        self.assertEqual(r.json.get("info", {}).get("user", {}).get("status"), "up", r)

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        self.addCleanup(conn.close)
        r1 = http_request(self.gw.port, "GET", "/health", conn=conn)
        self.assertEqual(r1.status, 200, r1)
        self.assertNotEqual((r1.header("Connection") or "").lower(), "close", r1)
        sock = conn.sock
        self.assertIsNotNone(sock, "the gateway closed the connection after one request")
        user = self.create()
        r2 = http_request(self.gw.port, "GET", "/users/%s" % user["id"], conn=conn)
        self.assertEqual(r2.status, 200, r2)
        self.assertIs(conn.sock, sock, "the second request needed a new connection")
        r3 = http_request(self.gw.port, "POST", "/users",
                          {"email": unique_email(), "name": "KA"}, conn=conn)
        self.assertEqual(r3.status, 201, r3)
        self.assertIs(conn.sock, sock)


class RequestIdTest(GatewayCase):

    def test_sane_request_id_is_echoed(self):
        for rid in ("abc-123_DEF.4", "0123456789abcdef0123456789abcdef"):
            r = self.req("GET", "/health", headers={"X-Request-Id": rid})
            self.assertEqual(r.header("X-Request-Id"), rid, r)

    def test_request_id_generated_when_absent(self):
        r1 = self.req("GET", "/health")
        r2 = self.req("GET", "/health")
        a, b = r1.header("X-Request-Id"), r2.header("X-Request-Id")
        self.assertTrue(a, r1)
        self.assertTrue(b, r2)
        self.assertNotEqual(a, b)
        self.assertRegex(a, r"^[A-Za-z0-9._-]{8,128}$")

    def test_insane_request_id_is_replaced(self):
        for rid in ("has spaces in it", "x" * 1000, "semi;colon", "quote\"d", "<script>"):
            with self.subTest(rid=rid[:20]):
                r = self.req("GET", "/health", headers={"X-Request-Id": rid})
                got = r.header("X-Request-Id")
                self.assertTrue(got, r)
                self.assertNotEqual(got, rid, r)
                self.assertRegex(got, r"^[A-Za-z0-9._-]{8,128}$")

    def test_request_id_reaches_user_service_logs(self):
        rid = "trace-%d-%d" % (os.getpid(), next(_seq))
        r = self.req("POST", "/users", {"email": unique_email(), "name": "Traced"},
                     headers={"X-Request-Id": rid})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("X-Request-Id"), rid)
        self.user.wait_for_log(lambda o: o.get("requestId") == rid,
                               message="a user-service log line with requestId %s" % rid)
        self.gw.wait_for_log(lambda o: o.get("requestId") == rid,
                             message="a gateway log line with requestId %s" % rid)
        # A generated id travels the same way.
        r = self.req("GET", "/users/%s" % r.json["id"])
        gen = r.header("X-Request-Id")
        self.user.wait_for_log(lambda o: o.get("requestId") == gen,
                               message="a user-service log line with requestId %s" % gen)

    def test_error_bodies_carry_request_id(self):
        r = self.req("GET", "/users/nope", headers={"X-Request-Id": "err-rid-1"})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.header("X-Request-Id"), "err-rid-1")


class ErrorStatusTest(GatewayCase):

    def assert_validation(self, r, field):
        """A 400 in the one validation shape, whoever found the fault (the
        gateway or the service): code VALIDATION_FAILED and details naming
        field, NestJS's fields kept."""
        err = self.assert_error(r, 400)
        self.assertEqual(err.get("error"), "Bad Request", err)
        self.assertEqual(err.get("code"), "VALIDATION_FAILED", err)
        details = err.get("details")
        self.assertIsInstance(details, list, err)
        for d in details:
            self.assertEqual(sorted(d), ["field", "message"], err)
        self.assertIn(field, [d["field"] for d in details], err)
        return err

    def test_400_bad_json(self):
        for body in (b'{"email":', b"not json", b'{"a":1}{"b":2}', b"[1]"):
            with self.subTest(body=body):
                r = self.req("POST", "/users", body,
                             headers={"Content-Type": "application/json"})
                self.assert_validation(r, "body")
        r = self.req("POST", "/users", b"", headers={"Content-Type": "application/json"})
        self.assert_validation(r, "email")  # an empty body is {}: the service refuses it

    def test_400_wrong_content_type(self):
        body = json.dumps({"email": unique_email(), "name": "Ada"})
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            with self.subTest(ctype=ctype):
                headers = {"Content-Type": ctype} if ctype else {}
                r = self.req("POST", "/users", body, headers=headers)
                self.assert_validation(r, "Content-Type")
        r = self.req("POST", "/users", body,
                     headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.status, 201, r)

    def test_400_validation_names_field(self):
        for data, field in (({"email": "nope", "name": "Ada"}, "email"),
                            ({"email": unique_email(), "name": ""}, "name"),
                            ({"name": "Ada"}, "email"),
                            ([1, 2], None)):
            with self.subTest(data=data):
                r = self.req("POST", "/users", data)
                err = self.assert_error(r, 400)
                if field:
                    details = [d.get("field") for d in err.get("details") or []
                               if isinstance(d, dict)]
                    self.assertTrue(field in err["message"] or field in details,
                                    "400 does not name %r: %r" % (field, err))

    def test_400_bad_pagination(self):
        # page=0 and limit=-1 are the service's finding, page=abc and
        # page=1.5 the gateway's: the client cannot tell them apart.
        for q, field in (("page=0&limit=10", "page"), ("page=abc", "page"),
                         ("limit=-1", "limit"), ("page=1.5", "page"), ("limit=x", "limit")):
            with self.subTest(q=q):
                self.assert_validation(self.req("GET", "/users?" + q), field)

    def test_409_duplicate_email(self):
        email = unique_email("dup")
        self.create(email=email)
        r = self.req("POST", "/users", {"email": email.upper(), "name": "Again"})
        self.assert_error(r, 409)

    def test_404_missing_user(self):
        err = self.assert_error(self.req("GET", "/users/does-not-exist"), 404)
        self.assertEqual(err.get("code"), "USER_NOT_FOUND", err)

    def test_404_unknown_route(self):
        for path in ("/nope", "/users/a/b", "/", "/userss"):
            with self.subTest(path=path):
                self.assert_error(self.req("GET", path), 404)

    def test_nul_in_path_is_not_another_route(self):
        # /users/%00 decodes to "/users/\0": it must not be served as GET /users.
        r = self.req("GET", "/users/%00")
        self.assertIn(r.status, (400, 404), r)
        self.assertNotIn("users", r.json or {}, r)

    def test_405_wrong_method(self):
        r = self.req("DELETE", "/users")
        self.assert_error(r, 405)
        allow = {m.strip() for m in (r.header("Allow") or "").split(",")}
        self.assertTrue({"GET", "POST"} <= allow, r)
        r = self.req("PUT", "/users/abc", {"name": "x"})
        self.assert_error(r, 405)
        self.assertIn("GET", r.header("Allow") or "", r)
        r = self.req("POST", "/health", {})
        self.assert_error(r, 405)
        self.assertIn("GET", r.header("Allow") or "", r)

    def test_413_body_over_1_mib(self):
        body = json.dumps({"email": unique_email(), "name": "x" * (ONE_MIB + 10)})
        r = self.req("POST", "/users", body, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 413, r)
        # The gateway is still fine afterwards.
        self.assertEqual(self.req("GET", "/health").status, 200)

    def test_large_body_under_limit_is_not_413(self):
        body = json.dumps({"email": unique_email(), "name": "x" * (ONE_MIB - 1000)})
        r = self.req("POST", "/users", body, headers={"Content-Type": "application/json"})
        self.assertNotEqual(r.status, 413, r)
        self.assertLess(r.status, 500, r)


class SmallBodyLimitTest(GatewayCase):
    gateway_env = {"GATEWAY_MAX_BODY_BYTES": "1024"}

    def test_413_over_configured_limit(self):
        r = self.req("POST", "/users", {"email": unique_email(), "name": "x" * 2000})
        self.assert_error(r, 413)
        r = self.create(name="small")
        self.assertEqual(r["name"], "small")


class ChunkedBodyTest(GatewayCase):
    gateway_env = {"GATEWAY_MAX_BODY_BYTES": "1024"}

    def post_chunked(self, body, chunk=100):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        self.addCleanup(conn.close)
        chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        try:
            # An iterable body without Content-Length goes out chunked.
            conn.request("POST", "/users", body=iter(chunks),
                         headers={"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())

    def test_chunked_body_accepted(self):
        body = json.dumps({"email": unique_email(), "name": "Chunky"}).encode()
        r = self.post_chunked(body, chunk=7)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["name"], "Chunky")

    def test_chunked_body_over_limit_is_413(self):
        body = json.dumps({"email": unique_email(), "name": "x" * 3000}).encode()
        r = self.post_chunked(body, chunk=500)
        self.assert_error(r, 413)
        self.assertEqual(self.req("GET", "/health").status, 200)


class UpstreamDownTest(GatewayCase):

    def test_503_then_recovery_on_same_port(self):
        user = self.create()
        port = self.user.port
        data_dir = self.user.data_dir
        self.assertEqual(self.req("GET", "/ready").status, 200)
        self.user.stop()

        r = self.req("GET", "/users/%s" % user["id"])
        self.assert_error(r, 503)
        r = self.req("POST", "/users", {"email": unique_email(), "name": "Down"})
        self.assert_error(r, 503)
        r = self.req("GET", "/ready")
        self.assertEqual(r.status, 503, r)
        # @nestjs/terminus's shape: the failing dependency is named.
        self.assertEqual(r.json.get("status"), "error", r)
        self.assertEqual(r.json.get("error", {}).get("user", {}).get("status"), "down", r)
        self.assertEqual(self.req("GET", "/health").status, 200)
        self.gw.assert_alive(self)

        self.user = self.start_user_service(data_dir=data_dir, port=port)
        self.assertEqual(self.user.port, port)
        r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
            self.req("GET", "/users/%s" % user["id"])), timeout=15,
            message="GET /users/:id 200 after the user service restarted")
        self.assertEqual(r.json["id"], user["id"])
        wait_until(lambda: self.req("GET", "/ready").status == 200, timeout=15,
                   message="/ready 200 after recovery")

    def test_503_fast_while_down(self):
        self.user.stop()
        # Fail fast: while the user service is down, answers come quickly
        # (no waiting for the whole RPC timeout each time).
        for _ in range(3):
            t0 = time.monotonic()
            r = self.req("GET", "/users?page=1&limit=10")
            self.assert_error(r, 503)
            self.assertLess(time.monotonic() - t0, 4.0)


class UpstreamHangsTest(DaemonTestCase):

    def test_504_when_upstream_never_answers(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        gw = self.start_gateway(silent.port, RPC_TIMEOUT_MS=300)
        t0 = time.monotonic()
        try:
            r = http_request(gw.port, "GET", "/users/abc", timeout=5)
        except socket.timeout:
            self.fail("no answer within 5 s with RPC_TIMEOUT_MS=300 (expected 504)\n"
                      + gw.describe())
        elapsed = time.monotonic() - t0
        check_error(self, r, 504)
        self.assertLess(elapsed, 5.0, "took %.1fs with RPC_TIMEOUT_MS=300" % elapsed)
        self.assertGreater(silent.accepted(), 0)
        r = http_request(gw.port, "POST", "/users", {"email": unique_email(), "name": "x"})
        check_error(self, r, 504)
        self.assertEqual(http_request(gw.port, "GET", "/health").status, 200)
        # /ready gives up on a silent upstream within its own deadline.
        t0 = time.monotonic()
        r = http_request(gw.port, "GET", "/ready")
        self.assertEqual(r.status, 503, r)
        self.assertLess(time.monotonic() - t0, 5.0)


class RequestTimeoutHeaderTest(DaemonTestCase):
    """X-Request-Timeout: the caller's own deadline, capped by RPC_TIMEOUT_MS."""

    def test_own_deadline_gives_504_long_before_rpc_timeout(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        gw = self.start_gateway(silent.port, RPC_TIMEOUT_MS=30000)
        t0 = time.monotonic()
        try:
            r = http_request(gw.port, "GET", "/users/abc",
                             headers={"X-Request-Timeout": "200ms"}, timeout=15)
        except socket.timeout:
            self.fail("no answer within 15 s: X-Request-Timeout 200ms was not applied\n"
                      + gw.describe())
        check_error(self, r, 504)
        # Without the header the call would wait RPC_TIMEOUT_MS (30 s).
        self.assertLess(time.monotonic() - t0, 15.0)

    def test_larger_than_rpc_timeout_is_capped(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        gw = self.start_gateway(silent.port, RPC_TIMEOUT_MS=300)
        try:
            r = http_request(gw.port, "GET", "/users/abc",
                             headers={"X-Request-Timeout": "60s"}, timeout=15)
        except socket.timeout:
            self.fail("no answer within 15 s: 60s was not capped at RPC_TIMEOUT_MS=300")
        check_error(self, r, 504)

    def test_bad_value_is_400_naming_the_header(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        gw = self.start_gateway(silent.port, RPC_TIMEOUT_MS=300)
        for bad in ("0", "1.5s", "soon", "-1"):
            r = http_request(gw.port, "GET", "/users/abc", headers={"X-Request-Timeout": bad})
            body = check_error(self, r, 400)
            self.assertEqual(body.get("code"), "VALIDATION_FAILED", r)
            self.assertEqual([d.get("field") for d in body.get("details", [])],
                             ["X-Request-Timeout"], r)


class GatewayShutdownTest(DaemonTestCase):

    def test_sigterm_answers_request_in_flight(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        gw = self.start_gateway(silent.port, RPC_TIMEOUT_MS=20000)
        result = {}

        def client():
            try:
                result["r"] = http_request(gw.port, "GET", "/users/inflight", timeout=20)
            except Exception as e:  # reported below
                result["e"] = e
        t = threading.Thread(target=client, daemon=True)
        t.start()
        wait_until(lambda: b"get_user" in silent.received,
                   message="the request to reach the upstream")
        t0 = time.monotonic()
        gw.stop()  # exit 0 within the deadline, no sanitizer report
        t.join(timeout=20)
        self.assertFalse(t.is_alive(), "the client never got an answer")
        self.assertNotIn("e", result, result)
        r = result["r"]
        check_error(self, r, 503)
        self.assertLess(time.monotonic() - t0, 10.0)


class StartupTest(DaemonTestCase):

    def test_gateway_starts_while_user_service_is_down(self):
        # A port nobody listens on: bind, note it, close.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        gw = self.start_gateway(port)
        self.assertEqual(http_request(gw.port, "GET", "/health").status, 200)
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(
            http_request(gw.port, "GET", "/users/x")), message="503 with no upstream")
        check_error(self, r, 503)
        self.assertEqual(http_request(gw.port, "GET", "/ready").status, 503)

    def test_help_and_version(self):
        for rel in (GATEWAY, USER_SERVICE):
            with self.subTest(binary=rel):
                p = subprocess.run([binary(rel), "--help"], capture_output=True, timeout=10)
                self.assertEqual(p.returncode, 0, p)
                self.assertRegex(p.stdout.decode(), r"PORT")
                p = subprocess.run([binary(rel), "--version"], capture_output=True, timeout=10)
                self.assertEqual(p.returncode, 0, p)
                p = subprocess.run([binary(rel), "--bogus"], capture_output=True, timeout=10)
                self.assertEqual(p.returncode, 2, p)

    def test_bad_config_exits_non_zero(self):
        env = dict(os.environ, GATEWAY_PORT="not-a-port")
        p = subprocess.run([binary(GATEWAY)], env=env, capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0, p)
        self.assertIn("GATEWAY_PORT", (p.stdout + p.stderr).decode(), p)


if __name__ == "__main__":
    unittest.main()
