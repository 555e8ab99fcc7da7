"""The notification service against a real redis-server: the five events
published raw, exactly as NestJS's ClientRedis.emit() does, become stored
notifications readable with get_notifications; an eventId published twice
(also across a restart) stores one; a bare JSON message is handled as data;
invalid events are dropped; the daemon picks up events after its own restart
and after Redis restarts on the same port; webhook delivery retries a 500
and records "delivered", and a delivery cut short by SIGTERM is finished by
the next run. Every test starts its own redis-server and daemon on ephemeral
ports with its own DATA_DIR; cleanup stops them and fails on a non-zero exit
or a sanitizer report.
"""

import http.server
import itertools
import json
import os
import subprocess
import threading
import unittest

from harness import (DaemonTestCase, FrameConn, SilentServer, binary, dump_json,
                     reply_error, reply_response, wait_until)
from redis_helper import start_redis

NOTIFICATION_SERVICE = "services/notification/notification-service"
EVENTS = ("order_created", "order_status_changed", "payment_completed", "payment_failed",
          "payment_refunded", "order_completed", "order_failed")

_seq = itertools.count(1)


def uid(prefix):
    return "%s_%d_%d" % (prefix, os.getpid(), next(_seq))


def envelope(pattern, data, event_id=None, request_id=None):
    """The exact message NestJS's ClientRedis.emit() publishes, with our
    metadata (PROTOCOL.md section 4)."""
    msg = {"pattern": pattern, "data": data}
    meta = {}
    if event_id:
        meta["eventId"] = event_id
    if request_id:
        meta["requestId"] = request_id
    if meta:
        meta["occurredAt"] = "2026-01-01T00:00:00.000Z"
        msg["metadata"] = meta
    return dump_json(msg)


class WebhookReceiver:
    """A tiny http.server in a thread: answers the scripted statuses in
    order (the last repeats) and keeps every request."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.requests = []          # (path, headers dict, body bytes)
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with receiver.lock:
                    i = len(receiver.requests)
                    receiver.requests.append((self.path, dict(self.headers.items()), body))
                    status = receiver.statuses[min(i, len(receiver.statuses) - 1)]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class NotificationCase(DaemonTestCase):
    extra_env = {}

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        self.data_dir = self.make_data_dir()
        self.svc = self.start_service()

    # -- daemon --
    def start_service(self, data_dir=None, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "NOTIFICATION_SERVICE_PORT": "0",
            "DATA_DIR": data_dir or self.data_dir,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "LOG_LEVEL": "debug",
        }
        env.update({k: str(v) for k, v in self.extra_env.items()})
        env.update({k: str(v) for k, v in extra_env.items()})
        d = self.start_daemon("notification-service", NOTIFICATION_SERVICE, env, ("rpc",))
        self.wait_subscribed(d)
        return d

    def call(self, cmd, data=None, svc=None, **kw):
        with FrameConn((svc or self.svc).port) as c:
            return c.call(cmd, data, **kw)

    def health(self, svc=None):
        return reply_response(self.call("health", {}, svc))

    def wait_subscribed(self, svc=None, timeout=20.0):
        """Health says every channel is subscribed on the current connection:
        events published from now on are received."""
        svc = svc or self.svc

        def ready():
            svc.assert_alive(self)
            h = self.health(svc)
            return h if (h.get("redis") or {}).get("subscribed") is True else None
        return wait_until(ready, timeout, message="redis.subscribed in health")

    # -- events --
    def publish(self, channel, message, receivers=1):
        """PUBLISH over raw RESP; by default assert one subscriber heard it."""
        c = self.redis.conn()
        try:
            n = c.command("PUBLISH", channel, message)
        finally:
            c.close()
        if receivers is not None:
            self.assertEqual(n, receivers, "PUBLISH %s reached %r subscribers" % (channel, n))
        return n

    def emit(self, pattern, data, event_id="auto", request_id=None):
        if event_id == "auto":
            event_id = "evt_" + uid("t")
        self.publish(pattern, envelope(pattern, data, event_id, request_id))
        return event_id

    def notifications(self, user_id, page=1, limit=100, svc=None):
        r = self.call("get_notifications", {"userId": user_id, "page": page, "limit": limit},
                      svc)
        return reply_response(r)

    def wait_notifications(self, user_id, count, svc=None, timeout=10.0):
        def enough():
            page = self.notifications(user_id, svc=svc)
            return page if page["total"] >= count else None
        page = wait_until(enough, timeout,
                          message="%d notifications for %s" % (count, user_id))
        self.assertEqual(page["total"], count, page)
        return page["notifications"]


class EventsTest(NotificationCase):

    def test_five_events_become_notifications(self):
        user, order = uid("user"), uid("ord")
        rid = uid("req")
        items = [{"productId": "p1", "quantity": 2, "unitPrice": 1999}]
        ids = [
            self.emit("order_created", {"orderId": order, "userId": user, "totalAmount": 3998,
                                        "currency": "USD", "items": items}, request_id=rid),
            self.emit("payment_completed", {"paymentId": "pay_1", "orderId": order,
                                            "userId": user, "amount": 3998,
                                            "currency": "USD"}, request_id=rid),
            self.emit("order_status_changed", {"orderId": order, "userId": user,
                                               "previousStatus": "paid",
                                               "newStatus": "shipped"}),
            self.emit("payment_refunded", {"paymentId": "pay_1", "orderId": order,
                                           "userId": user, "amount": 3998,
                                           "currency": "USD"}),
            self.emit("payment_failed", {"orderId": order, "userId": user,
                                         "reason": "card declined", "amount": 3998,
                                         "currency": "USD"}),
        ]
        got = self.wait_notifications(user, 5)
        # Newest first.
        self.assertEqual([n["eventId"] for n in got], list(reversed(ids)), got)
        by_type = {n["type"]: n for n in got}
        self.assertEqual(set(by_type), {"order_confirmation", "payment_receipt", "order_status",
                                        "refund_receipt", "payment_failed"})
        oc = by_type["order_confirmation"]
        self.assertEqual(oc["message"], "Your order %s for 39.98 USD has been received" % order)
        self.assertEqual(by_type["order_status"]["message"],
                         "Your order %s is now shipped" % order)
        self.assertIn("card declined", by_type["payment_failed"]["message"])
        self.assertIn("39.98 USD", by_type["payment_receipt"]["message"])
        self.assertIn("39.98 USD", by_type["refund_receipt"]["message"])
        self.assertEqual(set(oc), {"id", "userId", "type", "title", "message", "eventId",
                                   "eventPattern", "orderId", "data", "requestId", "createdAt",
                                   "delivery"}, oc)
        self.assertRegex(oc["id"], r"^ntf_[0-9a-f]{32}$")
        self.assertEqual(oc["userId"], user)
        self.assertEqual(oc["orderId"], order)
        self.assertEqual(oc["eventPattern"], "order_created")
        self.assertEqual(oc["requestId"], rid)
        self.assertEqual(oc["data"]["items"], items)
        self.assertRegex(oc["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(oc["delivery"], {"status": "none", "attempts": 0})
        self.assertIsNone(by_type["order_status"]["requestId"])
        # The request can be followed into this service's logs.
        line = self.svc.wait_for_log(lambda o: o.get("event") == "notification_stored"
                                     and o.get("requestId") == rid
                                     and o.get("eventId") == ids[0])
        self.assertEqual(line.get("notificationId"), oc["id"])

    def test_same_event_id_stores_one(self):
        user = uid("user")
        data = {"orderId": uid("ord"), "userId": user, "newStatus": "shipped"}
        eid = "evt_" + uid("dup")
        self.emit("order_status_changed", data, event_id=eid)
        self.emit("order_status_changed", data, event_id=eid)
        # A later, distinct event: once it is stored the duplicate was handled.
        self.emit("order_status_changed", dict(data, newStatus="delivered"))
        got = self.wait_notifications(user, 2)
        self.assertEqual([n["eventId"] for n in got].count(eid), 1, got)

    def test_duplicate_after_restart_stores_nothing(self):
        """The de-duplication that survives a restart is the database's."""
        user = uid("user")
        data = {"orderId": uid("ord"), "userId": user, "newStatus": "shipped"}
        eid = "evt_" + uid("dup")
        self.emit("order_status_changed", data, event_id=eid)
        self.wait_notifications(user, 1)
        self.svc.stop()
        self.svc = self.start_service()
        self.emit("order_status_changed", data, event_id=eid)
        self.emit("order_status_changed", dict(data, newStatus="delivered"))
        got = self.wait_notifications(user, 2)
        self.assertEqual([n["eventId"] for n in got].count(eid), 1, got)
        self.svc.wait_for_log(lambda o: o.get("event") == "event_duplicate"
                              and o.get("eventId") == eid)

    def test_bare_message_is_the_data(self):
        """A message with no envelope (no pattern, no data key) is delivered
        whole as data; without metadata it gets an eventId derived from it."""
        user, order = uid("user"), uid("ord")
        bare = {"orderId": order, "userId": user, "totalAmount": 500, "currency": "JPY"}
        self.publish("order_created", dump_json(bare))
        got = self.wait_notifications(user, 1)
        n = got[0]
        self.assertEqual(n["message"], "Your order %s for 500 JPY has been received" % order)
        self.assertEqual(n["data"], bare)
        self.assertRegex(n["eventId"], r"^dig_[0-9a-f]{32}$")
        self.assertIsNone(n["requestId"])

    def test_plain_nestjs_emit_without_metadata(self):
        user = uid("user")
        data = {"orderId": uid("ord"), "userId": user, "reason": "insufficient funds"}
        self.publish("payment_failed", dump_json({"pattern": "payment_failed", "data": data}))
        got = self.wait_notifications(user, 1)
        self.assertEqual(got[0]["type"], "payment_failed")
        self.assertIn("insufficient funds", got[0]["message"])

    def test_invalid_events_are_dropped(self):
        user = uid("user")
        order = uid("ord")
        bad_id = "evt_" + uid("bad")
        self.emit("order_created", {"orderId": order, "totalAmount": 1, "currency": "USD"},
                  event_id=bad_id)                                        # no userId
        self.emit("order_created", {"orderId": order, "userId": user, "totalAmount": "lots",
                                    "currency": "USD"})                   # bad amount
        self.publish("order_created", "this is not JSON")
        self.publish("payment_completed", "[1, 2, 3]")                    # data not an object
        self.emit("order_status_changed", {"orderId": order, "userId": user,
                                           "newStatus": "shipped"})      # the marker
        got = self.wait_notifications(user, 1)
        self.assertEqual(got[0]["type"], "order_status")
        line = self.svc.wait_for_log(lambda o: o.get("event") == "event_invalid"
                                     and o.get("eventId") == bad_id)
        self.assertEqual(line.get("field"), "userId")
        self.svc.wait_for_log(lambda o: o.get("event") == "event_invalid_json")
        h = self.health()
        self.assertGreaterEqual(h["events"]["invalid"], 3, h)
        self.svc.assert_alive(self)


class RequestsTest(NotificationCase):

    def test_health(self):
        r = self.call("health", {})
        h = reply_response(r)
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["service"], "notification")
        self.assertEqual(h["db"], "ok")
        self.assertIs(h["redis"]["connected"], True)
        self.assertIs(h["redis"]["subscribed"], True)
        self.assertIsNone(h["webhook"])
        # Logged once, when every channel was first confirmed.
        line = self.svc.wait_for_log(lambda o: o.get("event") == "subscribed")
        self.assertEqual(line.get("channels"), len(EVENTS))

    def test_health_probe_command(self):
        env = dict(os.environ, NOTIFICATION_SERVICE_PORT=str(self.svc.port))
        p = subprocess.run([binary(NOTIFICATION_SERVICE), "--health"], env=env,
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p)

    def test_help_lists_environment(self):
        p = subprocess.run([binary(NOTIFICATION_SERVICE), "--help"], capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 0)
        text = p.stdout.decode()
        for var in ("LISTEN_HOST", "NOTIFICATION_SERVICE_PORT", "DATA_DIR", "SQLITE_SYNCHRONOUS",
                    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "NOTIFY_WEBHOOK_URL",
                    "NOTIFY_WEBHOOK_MAX_ATTEMPTS", "NOTIFY_WEBHOOK_TIMEOUT_MS", "LOG_LEVEL",
                    "RPC_MAX_FRAME_BYTES", "RPC_INCOMPLETE_FRAME_TIMEOUT_MS"):
            self.assertIn(var, text)

    def test_get_notifications_validation_and_paging(self):
        err = reply_error(self.call("get_notifications", {"page": 1}))
        self.assertEqual(err["statusCode"], 400, err)
        self.assertEqual(err["code"], "VALIDATION_FAILED", err)
        self.assertIn("userId", err["message"])
        err = reply_error(self.call("get_notifications", None))
        self.assertEqual(err["statusCode"], 400, err)
        user = uid("user")
        for i in range(12):
            self.emit("order_status_changed", {"orderId": "o%02d" % i, "userId": user,
                                               "newStatus": "s%d" % i})
        self.wait_notifications(user, 12)
        page = reply_response(self.call("get_notifications",
                                        {"userId": user, "page": 2, "limit": 5}))
        self.assertEqual((page["total"], page["page"], page["limit"]), (12, 2, 5))
        self.assertEqual([n["orderId"] for n in page["notifications"]],
                         ["o06", "o05", "o04", "o03", "o02"])
        page = reply_response(self.call("get_notifications", {"userId": user, "limit": 1000}))
        self.assertEqual(page["limit"], 100)
        self.assertEqual(len(page["notifications"]), 12)
        page = reply_response(self.call("get_notifications", {"userId": uid("nobody")}))
        self.assertEqual((page["total"], page["notifications"]), (0, []))


class RestartTest(NotificationCase):

    def test_restart_while_idle_picks_up_new_events(self):
        user = uid("user")
        self.emit("order_status_changed", {"orderId": "o1", "userId": user,
                                           "newStatus": "paid"})
        self.wait_notifications(user, 1)
        self.svc.stop()               # SIGTERM: exit 0 checked
        self.svc = self.start_service()
        self.emit("order_status_changed", {"orderId": "o1", "userId": user,
                                           "newStatus": "shipped"})
        got = self.wait_notifications(user, 2)
        self.assertEqual(got[0]["message"], "Your order o1 is now shipped")

    def test_redis_restart_resubscribes(self):
        user = uid("user")
        self.emit("order_status_changed", {"orderId": "o1", "userId": user,
                                           "newStatus": "paid"})
        self.wait_notifications(user, 1)
        port = self.redis.port
        self.redis.stop()

        def disconnected():
            h = self.health()
            return h if h["redis"]["connected"] is False else None
        wait_until(disconnected, message="health redis.connected false")
        # The service keeps serving what it stored while Redis is away.
        self.assertEqual(self.notifications(user)["total"], 1)
        self.redis.start(port=port)
        self.wait_subscribed()
        self.emit("order_status_changed", {"orderId": "o1", "userId": user,
                                           "newStatus": "shipped"})
        got = self.wait_notifications(user, 2)
        self.assertEqual(got[0]["message"], "Your order o1 is now shipped")
        self.svc.assert_alive(self)


class WebhookTest(NotificationCase):
    extra_env = {"NOTIFY_WEBHOOK_BACKOFF_MS": "50"}

    # The daemon NotificationCase.setUp starts has no webhook: each test
    # stops it and starts one against its own receiver.

    def receiver(self, statuses):
        r = WebhookReceiver(statuses)
        self.addCleanup(r.close)
        return r

    def wait_delivery(self, user, status, svc):
        def done():
            got = self.notifications(user, svc=svc)["notifications"]
            return got if got and got[0]["delivery"]["status"] == status else None
        return wait_until(done, message="delivery status %s" % status)[0]

    def test_retry_then_delivered(self):
        hook = self.receiver([500, 200])
        self.svc.stop()
        svc = self.svc = self.start_service(NOTIFY_WEBHOOK_URL=hook.url)
        user, rid = uid("user"), uid("req")
        self.emit("order_created", {"orderId": "o1", "userId": user, "totalAmount": 3998,
                                    "currency": "USD", "items": []}, request_id=rid)
        n = self.wait_delivery(user, "delivered", svc)
        self.assertEqual(n["delivery"]["attempts"], 2, n)
        self.assertEqual(hook.count(), 2)
        path, headers, body = hook.requests[1]
        self.assertEqual(path, "/hook")
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertEqual(headers.get("idempotency-key"), n["id"])
        self.assertEqual(headers.get("x-request-id"), rid)
        sent = json.loads(body)
        self.assertEqual(sent["id"], n["id"])
        self.assertEqual(sent["message"], "Your order o1 for 39.98 USD has been received")
        self.assertNotIn("delivery", sent)
        self.assertEqual(hook.requests[0][2], body)   # the retry sends the same body
        svc.wait_for_log(lambda o: o.get("event") == "notification_delivery_retry"
                         and o.get("requestId") == rid)
        h = self.health(svc)
        self.assertEqual(h["webhook"]["delivered"], 1, h)

    def test_permanent_failure(self):
        hook = self.receiver([400])
        self.svc.stop()
        svc = self.svc = self.start_service(NOTIFY_WEBHOOK_URL=hook.url)
        user = uid("user")
        self.emit("payment_failed", {"orderId": "o1", "userId": user, "reason": "x"})
        n = self.wait_delivery(user, "failed", svc)
        self.assertEqual(n["delivery"]["attempts"], 1, n)
        self.assertEqual(hook.count(), 1)

    def test_interrupted_delivery_is_finished_by_next_run(self):
        silent = SilentServer()          # accepts and never answers
        self.addCleanup(silent.close)
        self.svc.stop()
        svc = self.start_service(NOTIFY_WEBHOOK_URL="http://127.0.0.1:%d/hook" % silent.port,
                                 NOTIFY_WEBHOOK_TIMEOUT_MS=60000)
        user = uid("user")
        self.emit("order_status_changed", {"orderId": "o1", "userId": user,
                                           "newStatus": "shipped"})
        self.wait_notifications(user, 1, svc=svc)
        wait_until(lambda: b"POST /hook" in silent.received, message="the POST to arrive")
        svc.stop()                        # exits within the shutdown deadline, status 0
        svc.wait_for_log(lambda o: o.get("event") == "notification_delivery_interrupted")
        hook = self.receiver([200])
        self.svc = self.start_service(NOTIFY_WEBHOOK_URL=hook.url)
        n = self.wait_delivery(user, "delivered", self.svc)
        self.assertEqual(n["delivery"]["attempts"], 2, n)
        self.assertEqual(hook.count(), 1)


if __name__ == "__main__":
    unittest.main()
