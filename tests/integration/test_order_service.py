"""The order service over raw NestJS TCP frames, with the real user and
payment services and a real redis-server: create_order down every path
(confirmed with an exact total, declined -> cancelled, unknown user 404, user
service stopped 503, payment rejecting the method 400, payment stopped 503,
payment silent 504 leaving the order pending), the status machine (illegal
moves 409, confirmed and pending never settable by request, not even on an
unpaid pending order; legal ones publish order_status_changed with the real
previous status, checked as the exact envelope by a plain RESP subscriber),
refunds (confirmed -> cancelled + payment_refunded, by refund_order or by
update_order_status cancelled; shipped -> 409), health, --help
and --health, and a SIGTERM that drains an order in flight. Every test starts
its own redis-server and daemons on ephemeral ports with their own DATA_DIR;
cleanup stops them and fails on a non-zero exit or a sanitizer report.

"Nothing was published" is checked without sleeping: events from one
publisher arrive in order, so after the action that must not publish, a later
event from the same daemon (the barrier) is awaited."""

import itertools
import json
import os
import subprocess
import threading
import unittest

from harness import (DaemonTestCase, FrameConn, SilentServer, binary, reply_error,
                     reply_response, wait_until)
from redis_helper import start_redis

ORDER_SERVICE = "services/order/order-service"
PAYMENT_SERVICE = "services/payment/payment-service"
ORDER_EVENTS = ("order_created", "order_status_changed")
PAYMENT_EVENTS = ("payment_completed", "payment_failed", "payment_refunded")
ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
ORDER_ID_RE = r"^order_[0-9a-f]{32}$"
PAY_ID_RE = r"^pay_[0-9a-f]{32}$"
EVT_ID_RE = r"^evt_[0-9a-f]{32}$"
ORDER_KEYS = {"id", "userId", "items", "totalAmount", "currency", "status", "paymentMethod",
              "paymentId", "cancelReason", "createdAt", "updatedAt"}
RUN_TIMEOUT_S = 20

_seq = itertools.count(1)


def unique(prefix):
    return "%s%d.%d" % (prefix, os.getpid(), next(_seq))


class OrderCase(DaemonTestCase):
    """redis-server, a subscriber on every order and payment event, the user,
    payment and order services (in that order)."""

    order_env = {}

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        # Subscribed before any daemon exists: pub/sub keeps nothing.
        self.sub = self.redis.subscriber(self, *(ORDER_EVENTS + PAYMENT_EVENTS))
        self.user_svc = self.start_user_service()
        self.payment_svc = self.start_payment_service()
        self.order_svc = self.start_order_service(**self.order_env)
        self.conn = self.connect(self.order_svc)
        self.users = self.connect(self.user_svc)
        self.payments = self.connect(self.payment_svc)

    # -- daemons --
    def redis_env(self):
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis.port)}

    def start_payment_service(self):
        env = {"LISTEN_HOST": "127.0.0.1", "PAYMENT_SERVICE_PORT": "0",
               "DATA_DIR": self.make_data_dir()}
        env.update(self.redis_env())
        return self.start_daemon("payment-service", PAYMENT_SERVICE, env, ("rpc",))

    def start_order_service(self, payment_port=None, data_dir=None, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "ORDER_SERVICE_PORT": "0",
            "DATA_DIR": data_dir or self.make_data_dir(),
            "USER_SERVICE_HOST": "127.0.0.1",
            "USER_SERVICE_PORT": str(self.user_svc.port),
            "PAYMENT_SERVICE_HOST": "127.0.0.1",
            "PAYMENT_SERVICE_PORT": str(payment_port or self.payment_svc.port),
            "RPC_TIMEOUT_MS": "3000",
        }
        env.update(self.redis_env())
        env.update({k: str(v) for k, v in extra_env.items()})
        d = self.start_daemon("order-service", ORDER_SERVICE, env, ("rpc",))
        d.data_dir = env["DATA_DIR"]
        return d

    def connect(self, daemon):
        c = FrameConn(daemon.port)
        self.addCleanup(c.close)
        return c

    # -- requests --
    def create_user(self):
        r = self.users.call("create_user", {"email": unique("buyer") + "@example.com",
                                            "name": "Grace Hopper"})
        return reply_response(r)["id"]

    def create_order(self, user_id, method="tok_visa", items=None, request_id=None, **extra):
        data = {"userId": user_id, "paymentMethod": method,
                "items": items or [{"productId": "prod-1", "quantity": 2, "price": 1999}]}
        data.update(extra)
        meta = {"requestId": request_id} if request_id else None
        return self.conn.call("create_order", data, metadata=meta)

    def confirmed_order(self, user_id=None):
        o = reply_response(self.create_order(user_id or self.create_user()))
        self.assertEqual(o["status"], "confirmed", o)
        return o

    def set_status(self, order_id, status, request_id=None):
        meta = {"requestId": request_id} if request_id else None
        return self.conn.call("update_order_status", {"id": order_id, "status": status},
                              metadata=meta)

    def get_order(self, order_id):
        return reply_response(self.conn.call("get_order", {"id": order_id}))

    # -- events --
    def wait_event(self, pattern, order_id):
        """The parsed message of the first `pattern` event about order_id."""
        def match(ch, payload):
            if ch != pattern:
                return False
            return json.loads(payload.decode("utf-8")).get("data", {}).get("orderId") == order_id
        _, payload = self.sub.wait_for(match, message="%s for %s" % (pattern, order_id))
        return json.loads(payload.decode("utf-8"))

    def events(self, pattern, order_id):
        out = []
        for ch, payload in self.sub.snapshot(pattern):
            msg = json.loads(payload.decode("utf-8"))
            if msg.get("data", {}).get("orderId") == order_id:
                out.append(msg)
        return out

    def barrier(self):
        """Return once every order event published before now has arrived."""
        o = reply_response(self.create_order(self.create_user()))
        self.wait_event("order_created", o["id"])

    def assert_envelope(self, msg, pattern, data, request_id=None):
        self.assertEqual(list(msg), ["pattern", "data", "metadata"], msg)
        self.assertEqual(msg["pattern"], pattern, msg)
        self.assertEqual(msg["data"], data, msg)
        meta = msg["metadata"]
        self.assertEqual(set(meta) - {"requestId"}, {"eventId", "occurredAt"}, msg)
        if request_id is not None:
            self.assertEqual(meta.get("requestId"), request_id, msg)
        self.assertRegex(meta["eventId"], EVT_ID_RE)
        self.assertRegex(meta["occurredAt"], ISO_RE)

    def assert_err(self, reply, status, code):
        err = reply_error(reply)
        self.assertEqual(err.get("statusCode"), status, err)
        self.assertEqual(err.get("code"), code, err)
        return err


class CreateOrderTest(OrderCase):

    def test_visa_confirms_with_exact_total(self):
        user = self.create_user()
        items = [{"productId": "prod-1", "quantity": 3, "price": 1999},
                 {"productId": "prod-\u00e9\U0001F600", "quantity": 10000, "price": 10 ** 9},
                 {"productId": "prod-3", "quantity": 1, "price": 0}]
        total = 3 * 1999 + 10000 * 10 ** 9
        o = reply_response(self.create_order(user, items=items, request_id="req-ord-1"))
        self.assertEqual(set(o), ORDER_KEYS, o)
        self.assertRegex(o["id"], ORDER_ID_RE)
        self.assertEqual((o["userId"], o["status"], o["totalAmount"], o["currency"],
                          o["paymentMethod"], o["cancelReason"]),
                         (user, "confirmed", total, "USD", "tok_visa", None), o)
        self.assertIsInstance(o["totalAmount"], int)
        self.assertEqual(o["items"], items, o)
        self.assertRegex(o["paymentId"], PAY_ID_RE)
        self.assertRegex(o["createdAt"], ISO_RE)
        self.assertRegex(o["updatedAt"], ISO_RE)
        self.assertEqual(self.get_order(o["id"]), o)

        # The payment service charged that exact amount, once, for this order.
        p = reply_response(self.payments.call("get_payment_by_order", {"orderId": o["id"]}))
        self.assertEqual((p["id"], p["amount"], p["currency"], p["status"], p["userId"]),
                         (o["paymentId"], total, "USD", "succeeded", user), p)

        msg = self.wait_event("order_created", o["id"])
        self.assert_envelope(msg, "order_created",
                             {"orderId": o["id"], "userId": user, "totalAmount": total,
                              "currency": "USD", "items": items},
                             request_id="req-ord-1")
        self.wait_event("payment_completed", o["id"])
        # create_order's own pending -> confirmed publishes no status change.
        self.barrier()
        self.assertEqual(self.events("order_status_changed", o["id"]), [])
        self.order_svc.wait_for_log(lambda l: l.get("requestId") == "req-ord-1"
                                    and l.get("pattern") == "create_order"
                                    and l.get("outcome") == "OK",
                                    message="the create_order log line")

    def test_declined_card_cancels(self):
        user = self.create_user()
        o = reply_response(self.create_order(user, method="tok_chargeDeclined",
                                             currency="EUR"))
        self.assertEqual((o["status"], o["cancelReason"], o["paymentId"], o["currency"]),
                         ("cancelled", "card_declined", None, "EUR"), o)
        self.assertEqual(self.get_order(o["id"]), o)
        self.wait_event("payment_failed", o["id"])

    def test_unknown_user_is_404_and_stores_nothing(self):
        err = self.assert_err(self.create_order("user_" + "0" * 32), 404, "USER_NOT_FOUND")
        self.assertEqual(err["message"], "User not found")
        page = reply_response(self.conn.call("get_orders", {"userId": "user_" + "0" * 32}))
        self.assertEqual(page["total"], 0, page)

    def test_user_service_stopped_is_503(self):
        user = self.create_user()
        self.user_svc.stop()
        err = self.assert_err(self.create_order(user), 503, "USER_SERVICE_UNAVAILABLE")
        self.assertIn("unavailable", err["message"])
        page = reply_response(self.conn.call("get_orders", {"userId": user}))
        self.assertEqual(page["total"], 0, page)

    def test_unknown_payment_method_cancels_with_the_payment_400(self):
        user = self.create_user()
        err = self.assert_err(self.create_order(user, method="tok_amex"), 400,
                              "VALIDATION_FAILED")
        self.assertIn("paymentMethod", err["message"])
        page = reply_response(self.conn.call("get_orders", {"userId": user}))
        self.assertEqual(page["total"], 1, page)
        o = page["orders"][0]
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", err["message"]), o)

    def test_payment_service_stopped_cancels_with_503(self):
        user = self.create_user()
        self.payment_svc.stop()
        err = self.assert_err(self.create_order(user), 503, "PAYMENT_SERVICE_UNAVAILABLE")
        page = reply_response(self.conn.call("get_orders", {"userId": user}))
        o = page["orders"][0]
        self.assertIn(o["id"], err["message"])
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "payment_unavailable"))

    def test_validation_names_fields(self):
        user = self.create_user()
        err = self.assert_err(
            self.create_order(user, items=[{"productId": "p", "quantity": 0, "price": 19.99}],
                              giftWrap=True), 400, "VALIDATION_FAILED")
        fields = {d["field"] for d in err["details"]}
        self.assertEqual(fields, {"items[0].quantity", "items[0].price", "giftWrap"}, err)

    def test_get_orders_pages_newest_first(self):
        user = self.create_user()
        ids = [self.confirmed_order(user)["id"] for _ in range(3)]
        page = reply_response(self.conn.call("get_orders",
                                             {"userId": user, "page": 1, "limit": 2}))
        self.assertEqual((page["total"], page["page"], page["limit"]), (3, 1, 2), page)
        self.assertEqual([o["id"] for o in page["orders"]], ids[::-1][:2])
        page = reply_response(self.conn.call("get_orders",
                                             {"userId": user, "page": 2, "limit": 2}))
        self.assertEqual([o["id"] for o in page["orders"]], ids[:1])
        err = self.assert_err(self.conn.call("get_order", {"id": "order_nope"}), 404,
                              "ORDER_NOT_FOUND")
        self.assertEqual(err["message"], "Order not found")


class StatusAndRefundTest(OrderCase):

    def test_illegal_transitions_are_409(self):
        o = self.confirmed_order()
        # confirmed and pending are never a client's to set (only the payment
        # confirms); delivered is a move the table forbids from confirmed.
        for status, code in (("pending", "STATUS_NOT_SETTABLE"),
                             ("confirmed", "STATUS_NOT_SETTABLE"),
                             ("delivered", "ILLEGAL_TRANSITION")):
            with self.subTest(status=status):
                err = self.assert_err(self.set_status(o["id"], status), 409, code)
                self.assertEqual(set(err), {"statusCode", "message", "code"}, err)
                self.assertIn(status, err["message"])
        self.assert_err(self.set_status(o["id"], "lost"), 400, "VALIDATION_FAILED")
        self.assert_err(self.set_status("order_nope", "shipped"), 404, "ORDER_NOT_FOUND")
        self.assertEqual(self.get_order(o["id"])["status"], "confirmed")
        self.barrier()
        self.assertEqual(self.events("order_status_changed", o["id"]), [])

    def test_legal_transitions_publish_the_real_previous_status(self):
        o = self.confirmed_order()
        shipped = reply_response(self.set_status(o["id"], "shipped", request_id="req-ship-1"))
        self.assertEqual(shipped["status"], "shipped")
        msg = self.wait_event("order_status_changed", o["id"])
        self.assert_envelope(msg, "order_status_changed",
                             {"orderId": o["id"], "userId": o["userId"],
                              "previousStatus": "confirmed", "newStatus": "shipped"},
                             request_id="req-ship-1")
        err = self.assert_err(self.set_status(o["id"], "cancelled"), 409, "ILLEGAL_TRANSITION")
        self.assertEqual(err["message"], "Cannot change order status from shipped to cancelled")
        reply_response(self.set_status(o["id"], "delivered", request_id="req-deliver-1"))
        # Byte-level: the raw message on the channel is the compact envelope.
        def delivered(ch, payload):
            d = json.loads(payload.decode("utf-8"))["data"]
            return d.get("orderId") == o["id"] and d.get("newStatus") == "delivered"
        ch, raw = self.sub.wait_for(delivered, message="shipped -> delivered")
        self.assertEqual(ch, "order_status_changed")
        self.assertTrue(raw.startswith(b'{"pattern":"order_status_changed","data":{'), raw)
        msg = json.loads(raw.decode("utf-8"))
        self.assert_envelope(msg, "order_status_changed",
                             {"orderId": o["id"], "userId": o["userId"],
                              "previousStatus": "shipped", "newStatus": "delivered"},
                             request_id="req-deliver-1")
        self.assert_err(self.set_status(o["id"], "cancelled"), 409, "ILLEGAL_TRANSITION")

    def test_refund_of_confirmed_cancels_and_refunds(self):
        o = self.confirmed_order()
        r = reply_response(self.conn.call("refund_order", {"id": o["id"]},
                                          metadata={"requestId": "req-refund-1"}))
        self.assertEqual((r["status"], r["cancelReason"], r["paymentId"]),
                         ("cancelled", "refunded", o["paymentId"]), r)
        msg = self.wait_event("order_status_changed", o["id"])
        self.assert_envelope(msg, "order_status_changed",
                             {"orderId": o["id"], "userId": o["userId"],
                              "previousStatus": "confirmed", "newStatus": "cancelled"},
                             request_id="req-refund-1")
        refunded = self.wait_event("payment_refunded", o["id"])
        self.assertEqual(refunded["data"]["amount"], o["totalAmount"], refunded)
        self.assertEqual(refunded["metadata"].get("requestId"), "req-refund-1", refunded)
        p = reply_response(self.payments.call("get_payment_by_order", {"orderId": o["id"]}))
        self.assertEqual(p["status"], "refunded", p)
        # Not twice.
        self.assert_err(self.conn.call("refund_order", {"id": o["id"]}), 409, "NOT_REFUNDABLE")

    def test_patch_cancelled_on_confirmed_refunds_the_payment(self):
        # A paid order is not cancelled bare: the refund flow runs (refund the
        # payment, cancel, order_status_changed), as POST /orders/:id/refund.
        o = self.confirmed_order()
        r = reply_response(self.set_status(o["id"], "cancelled", request_id="req-cancel-1"))
        self.assertEqual((r["status"], r["cancelReason"], r["paymentId"]),
                         ("cancelled", "refunded", o["paymentId"]), r)
        self.assertEqual(self.get_order(o["id"]), r)
        p = reply_response(self.payments.call("get_payment_by_order", {"orderId": o["id"]}))
        self.assertEqual((p["id"], p["status"]), (o["paymentId"], "refunded"), p)
        refunded = self.wait_event("payment_refunded", o["id"])
        self.assertEqual(refunded["data"]["amount"], o["totalAmount"], refunded)
        self.assertEqual(refunded["metadata"].get("requestId"), "req-cancel-1", refunded)
        msg = self.wait_event("order_status_changed", o["id"])
        self.assert_envelope(msg, "order_status_changed",
                             {"orderId": o["id"], "userId": o["userId"],
                              "previousStatus": "confirmed", "newStatus": "cancelled"},
                             request_id="req-cancel-1")
        self.order_svc.wait_for_log(lambda l: l.get("requestId") == "req-cancel-1"
                                    and l.get("pattern") == "update_order_status"
                                    and l.get("outcome") == "OK",
                                    message="the update_order_status log line")
        # Cancelled is final: no second refund.
        self.assert_err(self.set_status(o["id"], "cancelled"), 409, "ILLEGAL_TRANSITION")
        self.barrier()
        self.assertEqual(len(self.events("order_status_changed", o["id"])), 1)
        self.assertEqual(len(self.events("payment_refunded", o["id"])), 1)

    def test_patch_cancelled_with_payment_stopped_is_503_and_changes_nothing(self):
        o = self.confirmed_order()
        self.payment_svc.stop()
        self.assert_err(self.set_status(o["id"], "cancelled"), 503,
                        "PAYMENT_SERVICE_UNAVAILABLE")
        self.assertEqual(self.get_order(o["id"]), o)

    def test_refund_of_shipped_is_409(self):
        o = self.confirmed_order()
        reply_response(self.set_status(o["id"], "shipped"))
        err = self.assert_err(self.conn.call("refund_order", {"id": o["id"]}), 409,
                              "NOT_REFUNDABLE")
        self.assertIn("shipped", err["message"])
        p = reply_response(self.payments.call("get_payment_by_order", {"orderId": o["id"]}))
        self.assertEqual(p["status"], "succeeded", p)
        self.assertEqual(self.get_order(o["id"])["status"], "shipped")

    def test_refund_with_payment_stopped_is_503_and_changes_nothing(self):
        o = self.confirmed_order()
        self.payment_svc.stop()
        self.assert_err(self.conn.call("refund_order", {"id": o["id"]}), 503,
                        "PAYMENT_SERVICE_UNAVAILABLE")
        self.assertEqual(self.get_order(o["id"]), o)


class HealthAndLifecycleTest(OrderCase):

    def test_health(self):
        # The clients connect to Redis and the upstreams in the background after
        # start-up: wait for all three rather than racing them.
        def healthy():
            h = reply_response(self.conn.call("health", {}))
            up = h.get("upstreams", {})
            return h if h["redis"].get("connected") and all(up.values()) and up else None
        h = wait_until(healthy, message="health with redis and both upstreams connected")
        self.assertEqual((h["status"], h["service"], h["db"]), ("ok", "order", "ok"), h)
        self.assertEqual(h["upstreams"], {"user": True, "payment": True}, h)
        self.assertEqual(set(h), {"status", "service", "db", "redis", "upstreams"}, h)

    def test_help_and_health_probe(self):
        exe = binary(ORDER_SERVICE)
        p = subprocess.run([exe, "--help"], capture_output=True, timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, p)
        text = p.stdout.decode()
        for var in ("LISTEN_HOST", "ORDER_SERVICE_PORT", "DATA_DIR", "SQLITE_SYNCHRONOUS",
                    "USER_SERVICE_HOST", "USER_SERVICE_PORT", "PAYMENT_SERVICE_HOST",
                    "PAYMENT_SERVICE_PORT", "RPC_TIMEOUT_MS", "REDIS_HOST", "REDIS_PORT",
                    "REDIS_PASSWORD", "EVENTS_QUEUE_MAX", "LOG_LEVEL", "RPC_MAX_FRAME_BYTES",
                    "RPC_INCOMPLETE_FRAME_TIMEOUT_MS"):
            self.assertIn(var, text)
        env = dict(os.environ, ORDER_SERVICE_PORT=str(self.order_svc.port))
        p = subprocess.run([exe, "--health"], env=env, capture_output=True,
                           timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, p)
        p = subprocess.run([exe, "--bogus"], capture_output=True, timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 2, p)


class SilentPaymentTest(OrderCase):
    """The payment service accepts and never answers."""

    def setUp(self):
        super().setUp()
        self.silent = SilentServer()
        self.addCleanup(self.silent.close)
        self.slow = self.start_order_service(payment_port=self.silent.port,
                                             RPC_TIMEOUT_MS="1500")
        self.slow_conn = self.connect(self.slow)

    def test_unknown_outcome_is_504_and_stays_pending(self):
        user = self.create_user()
        r = self.slow_conn.call("create_order", {
            "userId": user, "paymentMethod": "tok_visa",
            "items": [{"productId": "p", "quantity": 1, "price": 500}]})
        err = self.assert_err(r, 504, "PAYMENT_TIMEOUT")
        page = reply_response(self.slow_conn.call("get_orders", {"userId": user}))
        o = page["orders"][0]
        self.assertIn(o["id"], err["message"])
        self.assertEqual(o["status"], "pending", o)

    def test_patch_confirmed_on_unpaid_order_is_409_and_changes_nothing(self):
        # Issue 9: PATCH {"status":"confirmed"} used to confirm this order, whose
        # payment never answered (paymentId null; its refund then gave 404).
        user = self.create_user()
        self.assert_err(self.slow_conn.call("create_order", {
            "userId": user, "paymentMethod": "tok_visa",
            "items": [{"productId": "p", "quantity": 1, "price": 500}]}), 504, "PAYMENT_TIMEOUT")
        o = reply_response(self.slow_conn.call("get_orders", {"userId": user}))["orders"][0]
        self.assertEqual((o["status"], o["paymentId"]), ("pending", None), o)
        err = self.assert_err(self.slow_conn.call("update_order_status",
                                                  {"id": o["id"], "status": "confirmed"}),
                              409, "STATUS_NOT_SETTABLE")
        self.assertEqual(set(err), {"statusCode", "message", "code"}, err)
        self.assertIn("confirmed", err["message"])
        self.assertEqual(reply_response(self.slow_conn.call("get_order", {"id": o["id"]})), o)
        # Nothing was charged: the real payment service never saw the order.
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": o["id"]}), 404,
                        "PAYMENT_NOT_FOUND")
        # With no payment, a cancel stays a plain one; its event is also the
        # barrier that shows the refused PATCH published nothing before it.
        c = reply_response(self.slow_conn.call("update_order_status",
                                               {"id": o["id"], "status": "cancelled"}))
        self.assertEqual((c["status"], c["cancelReason"], c["paymentId"]),
                         ("cancelled", "cancelled_by_request", None), c)
        msg = self.wait_event("order_status_changed", o["id"])
        self.assertEqual((msg["data"]["previousStatus"], msg["data"]["newStatus"]),
                         ("pending", "cancelled"), msg)
        self.assertEqual(len(self.events("order_status_changed", o["id"])), 1)

    def test_sigterm_drains_the_order_in_flight(self):
        user = self.create_user()
        req_id = FrameConn.new_id()
        self.slow_conn.send({"pattern": {"cmd": "create_order"}, "id": req_id, "data": {
            "userId": user, "paymentMethod": "tok_visa",
            "items": [{"productId": "p", "quantity": 1, "price": 500}]}})
        wait_until(lambda: b"process_payment" in self.silent.received,
                   message="process_payment reaching the silent payment service")
        # stop() sends SIGTERM and waits for exit status 0; meanwhile the
        # order in flight must still be answered (its payment deadline passes).
        stop_errors = []

        def stop():
            try:
                self.slow.stop()
            except AssertionError as e:
                stop_errors.append(e)
        stopper = threading.Thread(target=stop)
        stopper.start()
        try:
            err = reply_error(self.slow_conn.read_reply(req_id))
        finally:
            stopper.join(timeout=30)
        self.assertFalse(stopper.is_alive(), "stop() did not return")
        if stop_errors:
            raise stop_errors[0]
        self.assertEqual(err.get("statusCode"), 504, err)
        self.slow.wait_for_log(lambda l: l.get("event") == "stopping",
                               message="the stopping line")
        again = self.start_order_service(payment_port=self.silent.port,
                                         data_dir=self.slow.data_dir)
        page = reply_response(self.connect(again).call("get_orders", {"userId": user}))
        self.assertEqual(page["orders"][0]["status"], "pending", page)


if __name__ == "__main__":
    unittest.main()
