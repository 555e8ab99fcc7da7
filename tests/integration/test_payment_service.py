"""The payment service over raw NestJS TCP frames with a real redis-server:
each test payment method and the event it publishes (checked byte-level by a
plain RESP subscriber: the exact envelope {"pattern","data","metadata"}),
idempotent processing and refunds (one charge, one event), voids
(refund_payment {orderId, voidIfMissing:true} before the charge: the late
process_payment is declined order_voided, charged never), the error codes,
health with Redis up and down, --help/--health, and durability across a
kill -9. Every test starts its own redis-server and daemon on ephemeral ports
with its own DATA_DIR; cleanup stops them and fails on a non-zero exit or a
sanitizer report.

"No second event" is checked without sleeping: events from one publisher
arrive in order, so after the action that must not publish, a later event
(a fresh payment: the barrier) is awaited; anything the action had published
would have arrived before it."""

import itertools
import json
import os
import subprocess
import unittest

from harness import DaemonTestCase, FrameConn, binary, reply_error, reply_response, wait_until
from redis_helper import free_port, start_redis

PAYMENT_SERVICE = "services/payment/payment-service"
EVENTS = ("payment_completed", "payment_failed", "payment_refunded")
ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
PAY_ID_RE = r"^pay_[0-9a-f]{32}$"
EVT_ID_RE = r"^evt_[0-9a-f]{32}$"
RUN_TIMEOUT_S = 20

_seq = itertools.count(1)


def unique(prefix):
    return "%s_%d_%d" % (prefix, os.getpid(), next(_seq))


class PaymentCase(DaemonTestCase):

    def start_payment_service(self, redis_port, data_dir=None, **extra_env):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "PAYMENT_SERVICE_PORT": "0",
            "DATA_DIR": data_dir or self.make_data_dir(),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_port),
        }
        env.update({k: str(v) for k, v in extra_env.items()})
        d = self.start_daemon("payment-service", PAYMENT_SERVICE, env, ("rpc",))
        d.data_dir = env["DATA_DIR"]
        return d

    def connect(self, svc=None):
        c = FrameConn((svc or self.svc).port)
        self.addCleanup(c.close)
        return c

    def process(self, conn, order_id, method="tok_visa", amount=3998, user_id="user_1",
                currency=None, request_id=None):
        data = {"orderId": order_id, "userId": user_id, "amount": amount,
                "paymentMethod": method}
        if currency is not None:
            data["currency"] = currency
        meta = {"requestId": request_id} if request_id else None
        return conn.call("process_payment", data, metadata=meta)


class WithRedis(PaymentCase):
    """A redis-server, a subscriber on every payment event, the daemon."""

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        # Subscribed (and confirmed) before the daemon exists: pub/sub keeps
        # nothing, so a subscriber that came late would miss events.
        self.sub = self.redis.subscriber(self, *EVENTS)
        self.svc = self.start_payment_service(self.redis.port)
        self.conn = self.connect()

    def events(self, pattern=None, order_id=None):
        """Every received event as (channel, parsed message), filtered."""
        out = []
        for ch, payload in self.sub.snapshot():
            msg = json.loads(payload.decode("utf-8"))
            if pattern and ch != pattern:
                continue
            if order_id and msg.get("data", {}).get("orderId") != order_id:
                continue
            out.append((ch, msg))
        return out

    def wait_event(self, pattern, order_id):
        """The message of the first `pattern` event for order_id (waits)."""
        def match(ch, payload):
            if ch != pattern:
                return False
            return json.loads(payload.decode("utf-8")).get("data", {}).get("orderId") == order_id
        _, payload = self.sub.wait_for(match, message="%s for %s" % (pattern, order_id))
        return json.loads(payload.decode("utf-8"))

    def barrier(self):
        """Return once every event published before now has been received."""
        order = unique("ord_barrier")
        reply_response(self.process(self.conn, order))
        self.wait_event("payment_completed", order)

    def assert_envelope(self, msg, pattern, data, request_id=None):
        self.assertEqual(set(msg), {"pattern", "data", "metadata"}, msg)
        self.assertEqual(msg["pattern"], pattern, msg)
        self.assertEqual(msg["data"], data, msg)
        meta = msg["metadata"]
        self.assertEqual(set(meta) - {"requestId"}, {"eventId", "occurredAt"}, msg)
        if request_id is not None:
            self.assertEqual(meta.get("requestId"), request_id, msg)
        self.assertRegex(meta["eventId"], EVT_ID_RE)
        self.assertRegex(meta["occurredAt"], ISO_RE)

    def assert_payment(self, p, order_id, status, reason=None, amount=3998, currency="USD",
                       method="tok_visa", user_id="user_1"):
        self.assertEqual(set(p), {"id", "orderId", "userId", "amount", "currency",
                                  "paymentMethod", "status", "reason", "createdAt",
                                  "updatedAt", "refundedAt"}, p)
        self.assertRegex(p["id"], PAY_ID_RE)
        self.assertEqual((p["orderId"], p["userId"], p["amount"], p["currency"],
                          p["paymentMethod"], p["status"], p["reason"]),
                         (order_id, user_id, amount, currency, method, status, reason), p)
        self.assertRegex(p["createdAt"], ISO_RE)
        self.assertRegex(p["updatedAt"], ISO_RE)


class ProcessTest(WithRedis):

    def test_visa_succeeds_and_publishes_payment_completed(self):
        order = unique("ord_visa")
        p = reply_response(self.process(self.conn, order, request_id="req-pay-visa-1"))
        self.assert_payment(p, order, "succeeded")
        self.assertIsNone(p["refundedAt"])
        msg = self.wait_event("payment_completed", order)
        self.assert_envelope(msg, "payment_completed",
                             {"paymentId": p["id"], "orderId": order, "userId": "user_1",
                              "amount": 3998, "currency": "USD"},
                             request_id="req-pay-visa-1")
        # Byte level: compact JSON, envelope keys in NestJS's order, exactly
        # what ClientRedis.emit() would publish.
        raw = [m for ch, m in self.sub.snapshot("payment_completed")
               if json.loads(m)["data"]["orderId"] == order]
        self.assertEqual(len(raw), 1, raw)
        self.assertTrue(raw[0].startswith(b'{"pattern":"payment_completed","data":{'), raw)
        self.assertEqual(raw[0], json.dumps(msg, separators=(",", ":"),
                                            ensure_ascii=False).encode("utf-8"))
        # The request is logged with its id, pattern and outcome.
        self.svc.wait_for_log(lambda o: o.get("requestId") == "req-pay-visa-1"
                              and o.get("pattern") == "process_payment"
                              and o.get("outcome") == "OK",
                              message="the process_payment log line")
        # The payment is readable both ways.
        self.assertEqual(reply_response(self.conn.call("get_payment", {"id": p["id"]})), p)
        self.assertEqual(reply_response(self.conn.call("get_payment_by_order",
                                                       {"orderId": order})), p)

    def test_declines_publish_payment_failed(self):
        for method, reason in (("tok_chargeDeclined", "card_declined"),
                               ("tok_insufficientFunds", "insufficient_funds")):
            with self.subTest(method=method):
                order = unique("ord_decl")
                r = self.process(self.conn, order, method=method, amount=150, currency="EUR",
                                 request_id="req-" + order)
                p = reply_response(r)  # a decline is not an RPC error
                self.assert_payment(p, order, "declined", reason=reason, amount=150,
                                    currency="EUR", method=method)
                msg = self.wait_event("payment_failed", order)
                self.assert_envelope(msg, "payment_failed",
                                     {"orderId": order, "userId": "user_1", "reason": reason,
                                      "paymentId": p["id"], "amount": 150, "currency": "EUR"},
                                     request_id="req-" + order)
        self.barrier()
        self.assertEqual(self.events("payment_completed", order), [])

    def test_unknown_method_is_400_and_publishes_nothing(self):
        order = unique("ord_unknown")
        err = reply_error(self.process(self.conn, order, method="tok_amex"))
        self.assertEqual(err.get("statusCode"), 400, err)
        self.assertEqual(err.get("code"), "VALIDATION_FAILED", err)
        self.assertIn("paymentMethod", err.get("message", ""), err)
        self.assertEqual([d["field"] for d in err.get("details", [])], ["paymentMethod"], err)
        err = reply_error(self.conn.call("get_payment_by_order", {"orderId": order}))
        self.assertEqual(err.get("statusCode"), 404, err)
        self.barrier()
        self.assertEqual(self.events(order_id=order), [])

    def test_validation_names_the_field(self):
        cases = [
            ({"userId": "u", "amount": 1, "paymentMethod": "tok_visa"}, "orderId"),
            ({"orderId": "o", "amount": 1, "paymentMethod": "tok_visa"}, "userId"),
            ({"orderId": "o", "userId": "u", "amount": -1, "paymentMethod": "tok_visa"},
             "amount"),
            ({"orderId": "o", "userId": "u", "amount": 19.99, "paymentMethod": "tok_visa"},
             "amount"),
            ({"orderId": "o", "userId": "u", "amount": 10 ** 15 + 1,
              "paymentMethod": "tok_visa"}, "amount"),
            ({"orderId": "o", "userId": "u", "amount": 1, "currency": "usd",
              "paymentMethod": "tok_visa"}, "currency"),
            ({"orderId": "o", "userId": "u", "amount": 1, "paymentMethod": "tok_visa",
              "isTest": True}, "isTest"),
        ]
        for data, field in cases:
            with self.subTest(field=field, data=data):
                err = reply_error(self.conn.call("process_payment", data))
                self.assertEqual(err.get("statusCode"), 400, err)
                self.assertEqual(err.get("code"), "VALIDATION_FAILED", err)
                self.assertIn(field, [d.get("field") for d in err.get("details", [])], err)
                self.assertIn(field, err.get("message", ""), err)
        # The documented maximum is accepted; no currency means USD.
        order = unique("ord_max")
        p = reply_response(self.process(self.conn, order, amount=10 ** 15))
        self.assertEqual((p["amount"], p["currency"]), (10 ** 15, "USD"), p)

    def test_duplicate_process_charges_once(self):
        order = unique("ord_dup")
        first = reply_response(self.process(self.conn, order, request_id="req-dup-1"))
        second = reply_response(self.process(self.conn, order, currency="USD",
                                             request_id="req-dup-2"))
        self.assertEqual(second, first)  # same paymentId, same status, same times
        # Concurrent duplicates on other connections, pipelined: still one.
        others = [self.connect() for _ in range(3)]
        for i, c in enumerate(others):
            c.send({"pattern": {"cmd": "process_payment"},
                    "data": {"orderId": order, "userId": "user_1", "amount": 3998,
                             "paymentMethod": "tok_visa"}, "id": "dup-%d" % i})
        for i, c in enumerate(others):
            self.assertEqual(reply_response(c.read_reply("dup-%d" % i)), first)
        # A retry that asks for another charge is refused.
        err = reply_error(self.process(self.conn, order, amount=3999))
        self.assertEqual((err.get("statusCode"), err.get("code")), (409, "PAYMENT_MISMATCH"),
                         err)
        err = reply_error(self.process(self.conn, order, user_id="user_2"))
        self.assertEqual(err.get("code"), "PAYMENT_MISMATCH", err)
        self.barrier()
        evs = self.events("payment_completed", order)
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0][1]["metadata"].get("requestId"), "req-dup-1", evs)
        self.assertEqual(reply_response(self.conn.call("get_payment_by_order",
                                                       {"orderId": order})), first)


class RefundTest(WithRedis):

    def test_refund_twice_publishes_once(self):
        order = unique("ord_refund")
        paid = reply_response(self.process(self.conn, order, amount=2500, currency="GBP"))
        r1 = reply_response(self.conn.call("refund_payment", {"orderId": order},
                                           metadata={"requestId": "req-refund-1"}))
        self.assert_payment(r1, order, "refunded", amount=2500, currency="GBP")
        self.assertEqual(r1["id"], paid["id"])
        self.assertRegex(r1["refundedAt"], ISO_RE)
        self.assertEqual(r1["createdAt"], paid["createdAt"])
        r2 = reply_response(self.conn.call("refund_payment", {"orderId": order},
                                           metadata={"requestId": "req-refund-2"}))
        self.assertEqual(r2, r1)
        msg = self.wait_event("payment_refunded", order)
        self.assert_envelope(msg, "payment_refunded",
                             {"paymentId": paid["id"], "orderId": order, "userId": "user_1",
                              "amount": 2500, "currency": "GBP"},
                             request_id="req-refund-1")
        # A retried process_payment after the refund answers with the refund.
        self.assertEqual(reply_response(self.process(self.conn, order, amount=2500,
                                                     currency="GBP")), r1)
        self.barrier()
        self.assertEqual(len(self.events("payment_refunded", order)), 1)
        self.assertEqual(len(self.events("payment_completed", order)), 1)

    def test_refund_errors(self):
        order = unique("ord_declined")
        reply_response(self.process(self.conn, order, method="tok_chargeDeclined"))
        err = reply_error(self.conn.call("refund_payment", {"orderId": order}))
        self.assertEqual((err.get("statusCode"), err.get("code")),
                         (409, "PAYMENT_NOT_REFUNDABLE"), err)
        err = reply_error(self.conn.call("refund_payment", {"orderId": unique("ord_none")}))
        self.assertEqual(err, {"statusCode": 404, "code": "PAYMENT_NOT_FOUND",
                               "message": "Payment not found"})
        err = reply_error(self.conn.call("refund_payment", {}))
        self.assertEqual(err.get("statusCode"), 400, err)
        self.barrier()
        self.assertEqual(self.events("payment_refunded"), [])


class VoidTest(WithRedis):
    """refund_payment {orderId, voidIfMissing: true}: the saga's compensation
    of a charge whose outcome it does not know."""

    def void(self, order, conn=None, request_id=None):
        meta = {"requestId": request_id} if request_id else None
        return (conn or self.conn).call("refund_payment",
                                        {"orderId": order, "voidIfMissing": True},
                                        metadata=meta)

    def test_void_then_late_charge_is_declined_order_voided(self):
        order = unique("ord_void")
        v1 = reply_response(self.void(order, request_id="req-void-1"))
        self.assertEqual(set(v1), {"orderId", "status", "voidedAt"}, v1)
        self.assertEqual((v1["orderId"], v1["status"]), (order, "voided"), v1)
        self.assertRegex(v1["voidedAt"], ISO_RE)
        # Idempotent: the same answer, from another connection too.
        self.assertEqual(reply_response(self.void(order)), v1)
        self.assertEqual(reply_response(self.void(order, conn=self.connect())), v1)
        # A void is not a payment.
        err = reply_error(self.conn.call("get_payment_by_order", {"orderId": order}))
        self.assertEqual(err.get("statusCode"), 404, err)
        # The charge that was on its way lands: recorded as declined, not charged.
        p1 = reply_response(self.process(self.conn, order, request_id="req-late-1"))
        self.assert_payment(p1, order, "declined", reason="order_voided")
        p2 = reply_response(self.process(self.conn, order, request_id="req-late-2"))
        self.assertEqual(p2, p1)
        msg = self.wait_event("payment_failed", order)
        self.assert_envelope(msg, "payment_failed",
                             {"orderId": order, "userId": "user_1", "reason": "order_voided",
                              "paymentId": p1["id"], "amount": 3998, "currency": "USD"},
                             request_id="req-late-1")
        self.assertEqual(reply_response(self.conn.call("get_payment_by_order",
                                                       {"orderId": order})), p1)
        # A compensation retried after the late charge: a declined payment, 409.
        err = reply_error(self.void(order))
        self.assertEqual((err.get("statusCode"), err.get("code")),
                         (409, "PAYMENT_NOT_REFUNDABLE"), err)
        self.barrier()
        self.assertEqual(len(self.events("payment_failed", order)), 1)
        self.assertEqual(self.events("payment_completed", order), [])
        self.assertEqual(self.events("payment_refunded", order), [])

    def test_void_if_missing_refunds_a_succeeded_payment(self):
        order = unique("ord_vpaid")
        paid = reply_response(self.process(self.conn, order, amount=700))
        r1 = reply_response(self.void(order, request_id="req-vref-1"))
        self.assert_payment(r1, order, "refunded", amount=700)
        self.assertEqual(r1["id"], paid["id"])
        self.assertEqual(reply_response(self.void(order)), r1)
        msg = self.wait_event("payment_refunded", order)
        self.assertEqual(msg["data"]["paymentId"], paid["id"], msg)
        self.barrier()
        self.assertEqual(len(self.events("payment_refunded", order)), 1)

    def test_without_void_if_missing_404_and_validation(self):
        order = unique("ord_novoid")
        for data in ({"orderId": order}, {"orderId": order, "voidIfMissing": False}):
            with self.subTest(data=data):
                err = reply_error(self.conn.call("refund_payment", data))
                self.assertEqual(err, {"statusCode": 404, "code": "PAYMENT_NOT_FOUND",
                                       "message": "Payment not found"})
        for bad in ("true", 1, {}):
            with self.subTest(voidIfMissing=bad):
                err = reply_error(self.conn.call("refund_payment",
                                                 {"orderId": order, "voidIfMissing": bad}))
                self.assertEqual(err.get("statusCode"), 400, err)
                self.assertEqual([d["field"] for d in err["details"]], ["voidIfMissing"], err)
        err = reply_error(self.conn.call("refund_payment", {"orderId": order,
                                                            "voidIfMissing": True, "x": 1}))
        self.assertEqual([d["field"] for d in err["details"]], ["x"], err)
        # Nothing above voided the order: it is charged as usual.
        p = reply_response(self.process(self.conn, order))
        self.assertEqual(p["status"], "succeeded", p)


class LookupAndHealthTest(WithRedis):

    def test_get_404s(self):
        err = reply_error(self.conn.call("get_payment",
                                         {"id": "pay_00000000000000000000000000000000"}))
        self.assertEqual(err, {"statusCode": 404, "code": "PAYMENT_NOT_FOUND",
                               "message": "Payment not found"})
        err = reply_error(self.conn.call("get_payment_by_order", {"orderId": "ord_nope"}))
        self.assertEqual(err, {"statusCode": 404, "code": "PAYMENT_NOT_FOUND",
                               "message": "Payment not found"})
        for cmd, data in (("get_payment", {}), ("get_payment", {"id": 1}),
                          ("get_payment_by_order", None), ("get_payment", {"orderId": "x"})):
            with self.subTest(cmd=cmd, data=data):
                self.assertEqual(reply_error(self.conn.call(cmd, data)).get("statusCode"), 400)

    def test_health_shows_redis(self):
        def connected():
            h = reply_response(self.conn.call("health", {}))
            return h if h["redis"]["connected"] else None
        h = wait_until(connected, message="health to show redis connected")
        self.assertEqual((h["status"], h["service"], h["db"]), ("ok", "payment", "ok"), h)

    def test_health_probe_and_help(self):
        exe = binary(PAYMENT_SERVICE)
        env = dict(os.environ, PAYMENT_SERVICE_PORT=str(self.svc.port))
        p = subprocess.run([exe, "--health"], env=env, capture_output=True,
                           timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, p)
        p = subprocess.run([exe, "--help"], capture_output=True, timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, p)
        text = p.stdout.decode("utf-8")
        for var in ("LISTEN_HOST", "PAYMENT_SERVICE_PORT", "DATA_DIR", "SQLITE_SYNCHRONOUS",
                    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "EVENTS_QUEUE_MAX",
                    "LOG_LEVEL", "RPC_MAX_FRAME_BYTES", "RPC_INCOMPLETE_FRAME_TIMEOUT_MS"):
            self.assertIn(var, text)


class RedisDownTest(PaymentCase):

    def test_health_ok_and_payments_work_while_redis_is_down(self):
        self.svc = self.start_payment_service(free_port())  # nobody listens there
        c = self.connect()
        h = reply_response(c.call("health", {}))
        self.assertEqual(h["status"], "ok", h)
        self.assertIs(h["redis"]["connected"], False, h)
        order = unique("ord_noredis")
        p = reply_response(self.process(c, order))
        self.assertEqual(p["status"], "succeeded", p)
        h = reply_response(c.call("health", {}))
        self.assertEqual(h["status"], "ok", h)
        self.assertEqual(h["redis"]["queued"], 1, h)  # the event waits for Redis


class DurabilityTest(PaymentCase):

    def test_payment_survives_kill_9_and_is_not_charged_again(self):
        redis = start_redis(self)
        sub = redis.subscriber(self, *EVENTS)
        data_dir = self.make_data_dir()
        svc = self.start_payment_service(redis.port, data_dir=data_dir)
        order = unique("ord_durable")
        with FrameConn(svc.port) as c:
            paid = reply_response(self.process(c, order))
        sub.wait_for(lambda ch, m: ch == "payment_completed", message="payment_completed")
        svc.kill()  # the reply was sent: the payment must be on disk
        svc2 = self.start_payment_service(redis.port, data_dir=data_dir)
        with FrameConn(svc2.port) as c:
            self.assertEqual(reply_response(c.call("get_payment", {"id": paid["id"]})), paid)
            self.assertEqual(reply_response(self.process(c, order)), paid)
            barrier = unique("ord_barrier")
            reply_response(self.process(c, barrier))
        sub.wait_for(lambda ch, m: json.loads(m)["data"]["orderId"] == barrier,
                     message="the barrier event")
        completed = [m for ch, m in sub.snapshot("payment_completed")
                     if json.loads(m)["data"]["orderId"] == order]
        self.assertEqual(len(completed), 1, completed)

    def test_void_survives_kill_9(self):
        redis = start_redis(self)
        data_dir = self.make_data_dir()
        svc = self.start_payment_service(redis.port, data_dir=data_dir)
        order = unique("ord_voidkill")
        with FrameConn(svc.port) as c:
            v = reply_response(c.call("refund_payment", {"orderId": order,
                                                         "voidIfMissing": True}))
        svc.kill()  # the reply was sent: the void must be on disk
        svc2 = self.start_payment_service(redis.port, data_dir=data_dir)
        with FrameConn(svc2.port) as c:
            self.assertEqual(reply_response(c.call("refund_payment",
                                                   {"orderId": order, "voidIfMissing": True})),
                             v)
            p = reply_response(self.process(c, order))
        self.assertEqual((p["status"], p["reason"]), ("declined", "order_voided"), p)


if __name__ == "__main__":
    unittest.main()
