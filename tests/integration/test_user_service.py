"""The user service over raw NestJS TCP frames: the request catalogue, the
event, NestJS's exact error shapes, framing edge cases (pipelining, split
frames, UTF-16 lengths), one test per malformed frame, and durability across
a kill -9. Every test starts its own daemon on an ephemeral port with its own
DATA_DIR; cleanup stops it with SIGTERM and fails on a non-zero exit or a
sanitizer report."""

import itertools
import json
import os
import time
import unittest

from harness import (DaemonTestCase, FrameConn, NO_HANDLER_MESSAGE, encode_frame,
                     reply_error, reply_response, utf16_units, wait_until)

_seq = itertools.count(1)


def unique_email(prefix="user"):
    return "%s%d.%d@example.com" % (prefix, os.getpid(), next(_seq))


def user_list(page):
    """The list of users in a get_users response: {"users":[...],"total",...}."""
    if not isinstance(page, dict) or not isinstance(page.get("users"), list):
        raise AssertionError("no \"users\" list in get_users response %r" % (page,))
    return page["users"]


def names_field(err, field):
    """True when the error object names field in its message or details."""
    if field in str(err.get("message", "")):
        return True
    for d in err.get("details") or []:
        if isinstance(d, dict) and d.get("field") == field:
            return True
    return False


class UserServiceCase(DaemonTestCase):
    extra_env = {}

    def setUp(self):
        super().setUp()
        self.svc = self.start_user_service(**self.extra_env)

    def connect(self):
        c = FrameConn(self.svc.port)
        self.addCleanup(c.close)
        return c

    def create_user(self, conn, name="Ada Lovelace", email=None):
        email = email or unique_email()
        r = conn.call("create_user", {"email": email, "name": name})
        user = reply_response(r)
        self.assertIsInstance(user, dict, r)
        self.assertIsInstance(user.get("id"), str, user)
        self.assertTrue(user["id"], user)
        return user

    def assert_serving(self):
        """The daemon is alive and answers health on a fresh connection."""
        self.svc.assert_alive(self)
        with FrameConn(self.svc.port) as c:
            h = reply_response(c.call("health", {}))
            self.assertIsInstance(h, dict, h)


class RequestCatalogueTest(UserServiceCase):

    def test_health(self):
        c = self.connect()
        r = c.call("health", {})
        h = reply_response(r)
        self.assertIsInstance(h, dict)
        self.assertIn(h.get("status"), ("ok", "up"), h)
        self.assertEqual(set(r) - {"id", "response", "isDisposed"}, set(), r)

    def test_create_then_get_user(self):
        c = self.connect()
        email = unique_email("ada")
        user = self.create_user(c, name="Ada Lovelace", email=email)
        self.assertEqual(user["email"], email)
        self.assertEqual(user["name"], "Ada Lovelace")
        self.assertRegex(user.get("createdAt", ""),
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", user)
        self.assertNotIn("password", user)
        got = reply_response(c.call("get_user", {"id": user["id"]}))
        self.assertEqual(got["id"], user["id"])
        self.assertEqual(got["email"], email)
        self.assertEqual(got["name"], "Ada Lovelace")

    def test_get_users_paginates(self):
        c = self.connect()
        ids = [self.create_user(c, name="User %d" % i)["id"] for i in range(3)]
        page = reply_response(c.call("get_users", {"page": 1, "limit": 2}))
        self.assertEqual(page.get("total"), 3, page)
        self.assertEqual(page.get("page"), 1, page)
        self.assertEqual(page.get("limit"), 2, page)
        first = user_list(page)
        self.assertEqual(len(first), 2, page)
        page2 = reply_response(c.call("get_users", {"page": 2, "limit": 2}))
        second = user_list(page2)
        self.assertEqual(len(second), 1, page2)
        seen = {u["id"] for u in first + second}
        self.assertEqual(seen, set(ids))

    def test_request_id_any_json_value_is_echoed(self):
        c = self.connect()
        for req_id in (42, "x", {"k": [1, 2]}):
            r = c.request({"cmd": "health"}, {}, req_id=req_id)
            self.assertEqual(r["id"], req_id)
            reply_response(r)

    def test_user_logged_in_event_sets_last_login(self):
        c = self.connect()
        user = self.create_user(c)
        before = user.get("lastLoginAt")
        stamp = "2026-01-01T00:00:00.000Z"
        c.emit("user_logged_in", {"userId": user["id"], "timestamp": stamp},
               metadata={"requestId": "evt-req-1"})

        def changed():
            u = reply_response(c.call("get_user", {"id": user["id"]}))
            return u if u.get("lastLoginAt") and u.get("lastLoginAt") != before else None

        u = wait_until(changed, message="lastLoginAt to change")
        self.assertRegex(u["lastLoginAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_unknown_event_keeps_connection(self):
        c = self.connect()
        c.emit("no_such_event", {"x": 1})
        c.emit({"cmd": "no_such_event_object"}, {"x": 1})
        reply_response(c.call("health", {}))
        self.assertFalse(c.closed)

    def test_unknown_pattern_reply_is_exact(self):
        c = self.connect()
        r = c.request({"cmd": "no_such_command"}, {}, req_id="abc123")
        self.assertEqual(r, {"id": "abc123", "status": "error", "err": NO_HANDLER_MESSAGE})
        # Extra keys and value types matter: these are unknown patterns too.
        r = c.request({"cmd": "health", "v": 1}, {}, req_id="abc124")
        self.assertEqual(r, {"id": "abc124", "status": "error", "err": NO_HANDLER_MESSAGE})
        r = c.request("health", {}, req_id="abc125")
        self.assertEqual(r, {"id": "abc125", "status": "error", "err": NO_HANDLER_MESSAGE})
        reply_response(c.call("health", {}))

    def test_string_pattern_holding_json_matches(self):
        c = self.connect()
        r = c.request('{"cmd":"health"}', {})
        reply_response(r)
        user = self.create_user(c)
        r = c.request('{ "cmd" : "get_user" }', {"id": user["id"]})
        self.assertEqual(reply_response(r)["id"], user["id"])

    def test_metadata_is_accepted(self):
        c = self.connect()
        r = c.call("health", {}, metadata={"requestId": "req-meta-1", "timeoutMs": "5000"})
        reply_response(r)

    def test_spent_budget_is_answered_504(self):
        c = self.connect()
        r = c.call("get_users", {"page": 1, "limit": 10}, metadata={"timeoutMs": "0"})
        err = reply_error(r)
        self.assertEqual(err.get("statusCode"), 504, r)


class ErrorsTest(UserServiceCase):

    def test_validation_names_the_field(self):
        c = self.connect()
        cases = [
            ({"email": "not-an-email", "name": "Ada"}, "email"),
            ({"name": "Ada"}, "email"),
            ({"email": unique_email(), "name": ""}, "name"),
            ({"email": unique_email()}, "name"),
            ({"email": 12, "name": "Ada"}, "email"),
        ]
        for data, field in cases:
            with self.subTest(data=data):
                r = c.call("create_user", data)
                err = reply_error(r)
                self.assertEqual(err.get("statusCode"), 400, r)
                self.assertIsInstance(err.get("message"), str, r)
                self.assertTrue(names_field(err, field),
                                "error does not name %r: %r" % (field, err))
        r = c.call("create_user", None)
        self.assertEqual(reply_error(r).get("statusCode"), 400, r)
        self.assertEqual(reply_response(c.call("get_users", {"page": 1, "limit": 10}))
                         .get("total"), 0)

    def test_get_user_validation(self):
        c = self.connect()
        for data in ({}, {"id": 5}, None):
            with self.subTest(data=data):
                err = reply_error(c.call("get_user", data))
                self.assertEqual(err.get("statusCode"), 400, err)

    def test_get_users_validation(self):
        c = self.connect()
        for data in ({"page": 0, "limit": 10}, {"page": 1, "limit": 0},
                     {"page": "x", "limit": 10}, {"page": 1.5}, {"bogus": 1}, []):
            with self.subTest(data=data):
                err = reply_error(c.call("get_users", data))
                self.assertEqual(err.get("statusCode"), 400, err)
        # Large limits are capped, not rejected; absent fields take defaults.
        page = reply_response(c.call("get_users", {"page": 1, "limit": 100000}))
        self.assertLessEqual(page.get("limit"), 100, page)
        page = reply_response(c.call("get_users", None))
        self.assertEqual((page.get("page"), page.get("limit")), (1, 10), page)

    def test_unknown_field_is_rejected(self):
        c = self.connect()
        err = reply_error(c.call("create_user", {"email": unique_email(), "name": "A",
                                                 "isAdmin": True}))
        self.assertEqual(err.get("statusCode"), 400, err)
        self.assertTrue(names_field(err, "isAdmin"), err)

    def test_duplicate_email_is_409_case_insensitive(self):
        c = self.connect()
        email = unique_email("dup")
        self.create_user(c, email=email)
        r = c.call("create_user", {"email": email.upper(), "name": "Other"})
        err = reply_error(r)
        self.assertEqual(err.get("statusCode"), 409, r)
        self.assertIsInstance(err.get("message"), str)
        self.assertIsInstance(err.get("code"), str)
        self.assertEqual(r.get("isDisposed"), True, r)

    def test_missing_user_is_404(self):
        c = self.connect()
        r = c.call("get_user", {"id": "no-such-user"})
        err = reply_error(r)
        self.assertEqual(err.get("statusCode"), 404, r)
        self.assertIsInstance(err.get("message"), str)
        self.assertEqual(err.get("code"), "USER_NOT_FOUND", r)
        self.assertEqual(r.get("isDisposed"), True, r)


class FramingTest(UserServiceCase):

    def test_pipelined_requests_in_one_write(self):
        c = self.connect()
        user = self.create_user(c)
        ids = ["p%d" % i for i in range(20)]
        blob = b"".join(
            encode_frame({"pattern": {"cmd": "get_user"} if i % 2 else {"cmd": "health"},
                          "data": {"id": user["id"]} if i % 2 else {}, "id": rid})
            for i, rid in enumerate(ids))
        c.send_bytes(blob)
        for i, rid in enumerate(ids):
            r = c.read_reply(rid)
            resp = reply_response(r)
            if i % 2:
                self.assertEqual(resp["id"], user["id"])

    def test_frame_split_byte_by_byte(self):
        c = self.connect()
        frame = encode_frame({"pattern": {"cmd": "health"}, "data": {}, "id": "split1"})
        frame += encode_frame({"pattern": {"cmd": "health"}, "data": {}, "id": "split2"})
        for b in frame:
            c.send_bytes(bytes([b]))
        reply_response(c.read_reply("split1"))
        reply_response(c.read_reply("split2"))

    def test_whitespace_before_length_is_skipped(self):
        c = self.connect()
        c.send_bytes(b"\r\n  " + encode_frame({"pattern": {"cmd": "health"}, "data": {},
                                               "id": "ws1"}))
        reply_response(c.read_reply("ws1"))

    def test_non_ascii_round_trip(self):
        c = self.connect()
        name = "Zoé 😀 Ünïcödé 漢字"
        # Raw UTF-8 with the length in UTF-16 units, as NestJS sends it.
        user = self.create_user(c, name=name)
        self.assertEqual(user["name"], name)
        got = reply_response(c.call("get_user", {"id": user["id"]}))
        self.assertEqual(got["name"], name)
        # The same through \\u escapes.
        r = c.call("create_user", {"email": unique_email("esc"), "name": name},
                   ensure_ascii=True)
        self.assertEqual(reply_response(r)["name"], name)

    def test_nestjs_vector_units_not_bytes(self):
        # PROTOCOL.md test vector: 96 units, 102 bytes.
        c = self.connect()
        text = '{"pattern":{"cmd":"get_user"},"data":{"id":"é😀","name":"café 😀"},' \
               '"id":"0123456789abcdef01234"}'
        self.assertEqual(utf16_units(text), 96)
        self.assertEqual(len(text.encode("utf-8")), 102)
        c.send_bytes(b"96#" + text.encode("utf-8"))
        r = c.read_reply("0123456789abcdef01234")
        self.assertIn(reply_error(r).get("statusCode"), (400, 404), r)
        reply_response(c.call("health", {}))

    def test_nul_escape_in_a_string_is_valid_json(self):
        # "\u0000" inside a string is valid JSON (NestJS's JSON.parse takes
        # it): the request must be answered (a validation error is fine), not
        # treated as a broken frame that closes the connection.
        c = self.connect()
        text = ('{"pattern":{"cmd":"create_user"},"data":{"email":"%s","name":"a\\u0000b"},'
                '"id":"nul1"}' % unique_email("nul"))
        c.send(text)
        r = c.read_reply("nul1")
        self.assertEqual(reply_error(r).get("statusCode"), 400, r)
        reply_response(c.call("health", {}))

    def test_large_frame_within_limit(self):
        c = self.connect()
        big = "x" * 200000
        r = c.call("health", {"pad": big})
        reply_response(r)


class MalformedFrameTest(UserServiceCase):
    """Each malformed input closes the connection; the requests complete
    before it are answered; the daemon keeps serving."""

    extra_env = {"RPC_MAX_FRAME_BYTES": "4096"}

    def check_closes(self, bad, answered_first=True):
        c = self.connect()
        good = encode_frame({"pattern": {"cmd": "health"}, "data": {}, "id": "before"})
        c.send_bytes((good if answered_first else b"") + bad)
        c.wait_closed()
        if answered_first:
            self.assertTrue(c.pending, "the request before the bad bytes was not answered")
            r = c.read_reply("before", timeout=0.1)
            reply_response(r)
        self.assert_serving()

    def test_non_digit_length(self):
        self.check_closes(b'ab#{"pattern":"x","data":1}')

    def test_letter_after_digits(self):
        self.check_closes(b'12a#{"pattern":"x"}')

    def test_negative_length(self):
        self.check_closes(b'-5#{"a":1}')

    def test_plus_sign(self):
        self.check_closes(b'+9#{"a":1}')

    def test_length_zero(self):
        self.check_closes(b"0#")

    def test_eleven_digits(self):
        self.check_closes(b"12345678901#{}")

    def test_oversize_length_closes_before_body(self):
        # Only the prefix is sent: the limit must be checked before the body.
        self.check_closes(b"5000#")

    def test_oversize_with_body(self):
        body = json.dumps({"pattern": {"cmd": "health"}, "data": "y" * 6000, "id": "big"})
        self.check_closes(("%d#" % len(body)).encode() + body.encode())

    def test_broken_json(self):
        self.check_closes(b'5#{"a":')

    def test_invalid_utf8(self):
        self.check_closes(b'12#{"a":"\xff\xfe\xfd"}')

    def test_overlong_utf8(self):
        self.check_closes(b'10#{"a":"\xc0\xaf"}')

    def test_not_an_object(self):
        for bad in (b"5#[1,2]", b"2#42", b'5#"str"', b"4#null"):
            with self.subTest(bad=bad):
                self.check_closes(bad)

    def test_no_pattern(self):
        self.check_closes(b'8#{"id":1}')

    def test_only_bad_bytes(self):
        self.check_closes(b"x#", answered_first=False)

    def test_many_clients_after_errors(self):
        for _ in range(5):
            self.check_closes(b"zz#")
        conns = [self.connect() for _ in range(10)]
        for i, c in enumerate(conns):
            reply_response(c.call("health", {}, req_id="m%d" % i))


class IncompleteFrameTest(UserServiceCase):
    extra_env = {"RPC_INCOMPLETE_FRAME_TIMEOUT_MS": "300"}

    def test_stalled_partial_frame_is_closed(self):
        c = self.connect()
        reply_response(c.call("health", {}))
        c.send_bytes(b'40#{"pattern":{"cmd":"health"}')
        c.wait_closed(timeout=5)
        self.assert_serving()

    def test_slow_but_progressing_frame_is_not_closed(self):
        c = self.connect()
        frame = encode_frame({"pattern": {"cmd": "health"}, "data": {}, "id": "slow1"})
        step = 0.05  # well below the 300 ms incomplete-frame timeout
        for i in range(0, len(frame), 10):
            c.send_bytes(frame[i:i + 10])
            # Pace the bytes (this is the behaviour under test, not a
            # synchronisation): each gap is shorter than the timeout.
            time.sleep(step)
        reply_response(c.read_reply("slow1"))

    def test_idle_connection_between_frames_is_kept(self):
        c = self.connect()
        reply_response(c.call("health", {}))
        # No partial frame buffered: nothing to time out.
        with self.assertRaises(AssertionError):
            c.wait_closed(timeout=0.8)
        reply_response(c.call("health", {}))


class DurabilityTest(DaemonTestCase):

    def test_user_survives_kill_9(self):
        data_dir = self.make_data_dir()
        svc = self.start_user_service(data_dir=data_dir)
        email = unique_email("durable")
        with FrameConn(svc.port) as c:
            user = reply_response(c.call("create_user", {"email": email, "name": "Durable"}))
        svc.kill()  # the reply was sent: the user must be on disk
        self.assertTrue(os.path.exists(os.path.join(data_dir, "user.db")),
                        os.listdir(data_dir))
        svc2 = self.start_user_service(data_dir=data_dir)
        with FrameConn(svc2.port) as c:
            got = reply_response(c.call("get_user", {"id": user["id"]}))
            self.assertEqual(got["email"], email)
            page = reply_response(c.call("get_users", {"page": 1, "limit": 10}))
            self.assertEqual(page.get("total"), 1, page)
            err = reply_error(c.call("create_user", {"email": email, "name": "Again"}))
            self.assertEqual(err.get("statusCode"), 409, err)

    def test_sigterm_with_open_connections(self):
        svc = self.start_user_service()
        conns = [FrameConn(svc.port) for _ in range(3)]
        try:
            for c in conns:
                reply_response(c.call("health", {}))
            conns[0].send_bytes(b"40#{\"pattern\":")  # a partial frame left behind
            svc.stop()
            for c in conns:
                c.wait_closed()
        finally:
            for c in conns:
                c.close()


if __name__ == "__main__":
    unittest.main()
