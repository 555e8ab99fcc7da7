"""The proto-call tool against our user service: what a user types to poke a
service by hand. Exit codes (0 ok, 1 remote error, 2 usage, 3 unavailable,
4 timeout), the response JSON on stdout, events, request ids, and a clean
stdout (library log lines go to stderr)."""

import json
import socket
import subprocess
import unittest

from harness import (DaemonTestCase, PROTO_CALL, SANITIZER_MARKERS, SilentServer,
                     binary, wait_until)

RUN_TIMEOUT_S = 20


class ProtoCallTest(DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.tool = binary(PROTO_CALL)
        self.svc = self.start_user_service()

    def run_tool(self, *args, port=None):
        argv = [self.tool]
        if port is not False:
            argv += ["--port", str(port or self.svc.port)]
        argv += list(args)
        p = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT_S)
        out, err = p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, err, err)
        return p.returncode, out, err

    def test_health(self):
        code, out, err = self.run_tool("health")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["status"], "ok")
        self.assertEqual(out.count("\n"), 1, out)

    def test_create_get_and_errors(self):
        name = "Zoé 😀"
        code, out, err = self.run_tool("create_user",
                                       json.dumps({"email": "pc@example.com", "name": name}))
        self.assertEqual(code, 0, err)
        user = json.loads(out)
        self.assertEqual(user["name"], name)
        code, out, err = self.run_tool('{"cmd":"get_user"}', json.dumps({"id": user["id"]}))
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["id"], user["id"])
        code, out, err = self.run_tool("get_user", '{"id":"nope"}')
        self.assertEqual(code, 1, (out, err))
        self.assertEqual(json.loads(out)["statusCode"], 404)
        code, out, err = self.run_tool("create_user", '{"email":"PC@example.com","name":"x"}')
        self.assertEqual(code, 1, (out, err))
        self.assertEqual(json.loads(out)["statusCode"], 409)

    def test_unknown_pattern(self):
        code, out, err = self.run_tool("no_such_cmd", "{}")
        self.assertEqual(code, 1, (out, err))
        self.assertEqual(json.loads(out),
                         "There is no matching message handler defined in the remote service.")

    def test_event_and_request_id(self):
        code, out, err = self.run_tool("create_user", '{"email":"ev@example.com","name":"Ev"}')
        user = json.loads(out)
        code, out, err = self.run_tool(
            "--event", "--request-id", "pc-evt-1", "user_logged_in",
            json.dumps({"userId": user["id"], "timestamp": "2026-01-01T00:00:00.000Z"}))
        self.assertEqual((code, out), (0, ""), err)

        def logged_in():
            c, o, _ = self.run_tool("get_user", json.dumps({"id": user["id"]}))
            return c == 0 and json.loads(o).get("lastLoginAt")
        wait_until(logged_in, message="lastLoginAt set by the event")
        code, out, err = self.run_tool("--request-id", "pc-rid-42", "health")
        self.assertEqual(code, 0, err)
        self.svc.wait_for_log(lambda o: o.get("requestId") == "pc-rid-42",
                              message="the request id in the user service's log")

    def test_unavailable(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        code, out, err = self.run_tool("--timeout", "2000", "health", port=port)
        self.assertEqual(code, 3, (out, err))
        self.assertEqual(out, "")
        self.assertTrue(err.strip(), "no diagnostic on stderr")

    def test_timeout(self):
        silent = SilentServer()
        self.addCleanup(silent.close)
        code, out, err = self.run_tool("--timeout", "300", "health", port=silent.port)
        self.assertEqual(code, 4, (out, err))
        self.assertEqual(out, "")

    def test_usage(self):
        for args in ([], ["--port"], ["--port", "0", "health"], ["--nope", "health"],
                     ["health", "{bad json"], ["a", "b", "c"], ["{not json"]):
            with self.subTest(args=args):
                code, out, err = self.run_tool(*args, port=False)
                self.assertEqual(code, 2, (args, out, err))
                self.assertEqual(out, "")
                self.assertIn("proto-call", err)
        code, out, err = self.run_tool("--help", port=False)
        self.assertEqual(code, 0)
        self.assertIn("Usage: proto-call", out)
        for word in ("--host", "--port", "--timeout", "--request-id", "--event", "Exit status"):
            self.assertIn(word, out)


if __name__ == "__main__":
    unittest.main()
