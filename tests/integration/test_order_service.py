"""The order service over raw NestJS TCP frames, with the real user,
inventory and payment services and a real redis-server. create_order runs the
saga (issue 9): reserve with the inventory (which prices the items), charge,
commit the stock, confirm; compensate on failure. Covered: the README
walkthrough (p1 1999 x 10: an order of 2 without prices confirmed at 3998,
stock 8; 99 -> 409 OUT_OF_STOCK, nothing charged; a decline cancels and gives
the stock back; get_order_saga's history), confirmed with an exact total,
declined -> cancelled, unknown user 404, user service stopped 503, unknown
product 404, a client price that differs 409 PRICE_CHANGED, inventory stopped
503, payment rejecting the method 400, payment stopped 503, a silent payment
(retried, then 504 DEADLINE_EXCEEDED and compensation, which ends once a
payment service answers again), the events order_created, order_completed and
order_failed; the status machine (illegal moves 409, confirmed and pending
never settable by request, a pending order whose saga runs is 409 ORDER_BUSY;
legal ones publish order_status_changed with the real previous status, checked
as the exact envelope by a plain RESP subscriber), refunds (confirmed ->
cancelled + payment_refunded, by refund_order or by update_order_status
cancelled; shipped -> 409), health, --help and --health, and a SIGTERM that
drains an order in flight, whose saga the next start finishes. Every test
starts its own redis-server and daemons on ephemeral ports with their own
DATA_DIR; cleanup stops them and fails on a non-zero exit or a sanitizer
report.

"Nothing was published" is checked without sleeping: events from one
publisher arrive in order (the outbox relays them in order), so after the
action that must not publish, a later event from the same daemon (the
barrier) is awaited."""

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
ORDER_EVENTS = ("order_created", "order_completed", "order_failed", "order_status_changed")
PAYMENT_EVENTS = ("payment_completed", "payment_failed", "payment_refunded")
ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
ORDER_ID_RE = r"^order_[0-9a-f]{32}$"
PAY_ID_RE = r"^pay_[0-9a-f]{32}$"
EVT_ID_RE = r"^evt_[0-9a-f]{32}$"
ORDER_KEYS = {"id", "userId", "items", "totalAmount", "currency", "status", "paymentMethod",
              "paymentId", "cancelReason", "createdAt", "updatedAt"}
RUN_TIMEOUT_S = 20
SAGA_TIMEOUT_S = 30.0         # a saga's end after its upstream is back, under ASan
RETRY_MAX_MS = 500            # ORDER_SAGA_RETRY_MAX_MS: quick retries in tests
# The catalogue every test's inventory holds, {id: (price, stock)}: the saga
# reserves there and takes its prices, so every product a test orders is here.
EMOJI_PRODUCT = "prod-\u00e9\U0001F600"
PRODUCTS = {"prod-1": (1999, 1000000), EMOJI_PRODUCT: (10 ** 9, 1000000),
            "prod-3": (0, 1000), "p": (500, 1000),
            "p1": (1999, 10),  # the README walkthrough's product
            "prod-eur": (1999, 1000, "EUR")}  # an order's currency is its items'


_seq = itertools.count(1)


def unique(prefix):
    return "%s%d.%d" % (prefix, os.getpid(), next(_seq))


class OrderCase(DaemonTestCase):
    """redis-server, a subscriber on every order and payment event, the user,
    inventory (with PRODUCTS), payment and order services (in that order)."""

    order_env = {}

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        # Subscribed before any daemon exists: pub/sub keeps nothing.
        self.sub = self.redis.subscriber(self, *(ORDER_EVENTS + PAYMENT_EVENTS))
        self.user_svc = self.start_user_service()
        self.inventory_svc = self.start_inventory_service()
        self.seed_products(self.inventory_svc, PRODUCTS)
        self.payment_svc = self.start_payment_service()
        self.order_svc = self.start_order_service(**self.order_env)
        self.conn = self.connect(self.order_svc)
        self.users = self.connect(self.user_svc)
        self.payments = self.connect(self.payment_svc)
        self.stock = self.connect(self.inventory_svc)

    # -- daemons --
    def redis_env(self):
        return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis.port)}

    def start_payment_service(self, port=0):
        env = {"LISTEN_HOST": "127.0.0.1", "PAYMENT_SERVICE_PORT": str(port),
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
            # Always set: the default (3005) may be someone else's daemon.
            "INVENTORY_SERVICE_HOST": "127.0.0.1",
            "INVENTORY_SERVICE_PORT": str(self.inventory_svc.port),
            "ORDER_SAGA_RETRY_MAX_MS": str(RETRY_MAX_MS),
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

    def get_order(self, order_id, conn=None):
        return reply_response((conn or self.conn).call("get_order", {"id": order_id}))

    def get_saga(self, order_id, conn=None):
        return reply_response((conn or self.conn).call("get_order_saga", {"id": order_id}))

    def product(self, product_id):
        return reply_response(self.stock.call("get_product", {"id": product_id}))

    def assert_stock(self, product_id, stock, reserved=0):
        p = self.product(product_id)
        self.assertEqual((p["stock"], p["reserved"], p["available"]),
                         (stock, reserved, stock - reserved), p)

    def assert_not_charged(self, order_id, payments=None):
        """No payment took money for the order: none at all, or a declined one
        (a void makes a late charge a decline)."""
        r = (payments or self.payments).call("get_payment_by_order", {"orderId": order_id})
        if r.get("err") is not None:
            self.assertEqual(reply_error(r).get("code"), "PAYMENT_NOT_FOUND", r)
            return None
        p = reply_response(r)
        self.assertNotIn(p.get("status"), ("succeeded", "refunded"), p)
        return p

    def wait_final(self, order_id, conn=None, timeout=SAGA_TIMEOUT_S):
        """The order once its saga ended (confirmed or cancelled)."""
        def final():
            o = self.get_order(order_id, conn)
            return o if o["status"] in ("confirmed", "cancelled") else None
        return wait_until(final, timeout, message="order %s confirmed or cancelled" % order_id)

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

    def barrier(self, conn=None):
        """Return once every order event the order service behind conn
        (default self.conn) published before now has arrived."""
        data = {"userId": self.create_user(), "paymentMethod": "tok_visa",
                "items": [{"productId": "prod-1", "quantity": 1}]}
        o = reply_response((conn or self.conn).call("create_order", data))
        self.wait_event("order_completed", o["id"])

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
        # The client's prices are the catalogue's (a differing one is 409).
        items = [{"productId": "prod-1", "quantity": 3, "price": 1999},
                 {"productId": EMOJI_PRODUCT, "quantity": 10000, "price": 10 ** 9},
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
        msg = self.wait_event("order_completed", o["id"])
        self.assert_envelope(msg, "order_completed",
                             {"orderId": o["id"], "userId": user, "totalAmount": total,
                              "currency": "USD"}, request_id="req-ord-1")
        # The reservation was committed: the units left the stock.
        self.assert_stock(EMOJI_PRODUCT, 1000000 - 10000)
        self.assert_stock("prod-1", 1000000 - 3)
        # create_order's own pending -> confirmed publishes no status change,
        # and no order_failed.
        self.barrier()
        self.assertEqual(self.events("order_status_changed", o["id"]), [])
        self.assertEqual(self.events("order_failed", o["id"]), [])
        self.assertEqual(len(self.events("order_created", o["id"])), 1)
        self.assertEqual(len(self.events("order_completed", o["id"])), 1)
        self.order_svc.wait_for_log(lambda l: l.get("requestId") == "req-ord-1"
                                    and l.get("pattern") == "create_order"
                                    and l.get("outcome") == "OK",
                                    message="the create_order log line")

    def test_declined_card_cancels(self):
        user = self.create_user()
        # EUR: the catalogue's currency must be the order's (saga: 409
        # CURRENCY_MISMATCH otherwise), so the EUR order names a EUR product.
        o = reply_response(self.create_order(user, method="tok_chargeDeclined",
                                             currency="EUR", items=[
                                                 {"productId": "prod-eur", "quantity": 2}]))
        self.assertEqual((o["status"], o["cancelReason"], o["paymentId"], o["currency"]),
                         ("cancelled", "card_declined", None, "EUR"), o)
        self.assertEqual(self.get_order(o["id"]), o)
        self.wait_event("payment_failed", o["id"])
        msg = self.wait_event("order_failed", o["id"])
        self.assert_envelope(msg, "order_failed", {"orderId": o["id"], "userId": user,
                                                   "reason": "card_declined"})
        self.assert_stock("prod-eur", 1000)  # released

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
        # Contract change (saga): the cancel reason of a refusal is the peer's
        # code in lowercase (as out_of_stock), no longer the payment's message.
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "validation_failed"), o)
        self.assert_stock("prod-1", 1000000)

    def test_payment_service_stopped_cancels_with_503(self):
        user = self.create_user()
        self.payment_svc.stop()
        err = self.assert_err(self.create_order(user), 503, "PAYMENT_SERVICE_UNAVAILABLE")
        page = reply_response(self.conn.call("get_orders", {"userId": user}))
        o = page["orders"][0]
        self.assertIn(o["id"], err["message"])
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "payment_unavailable"))
        # The saga released what it had reserved before the charge.
        self.assert_stock("prod-1", 1000000)
        msg = self.wait_event("order_failed", o["id"])
        self.assertEqual(msg["data"]["reason"], "payment_unavailable", msg)

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


class SagaTest(OrderCase):
    """What the saga changed in create_order: the inventory reserves and
    prices, failures compensate, get_order_saga tells the steps."""

    def saga_states(self, order_id):
        return [h["state"] for h in self.get_saga(order_id)["history"]]

    def test_readme_walkthrough(self):
        # Issue 9's walkthrough: p1 costs 1999 and 10 are on hand.
        user = self.create_user()
        self.assert_stock("p1", 10)
        o = reply_response(self.create_order(user, items=[{"productId": "p1", "quantity": 2}],
                                             request_id="req-walk-1"))
        self.assertEqual((o["status"], o["totalAmount"], o["currency"], o["cancelReason"]),
                         ("confirmed", 3998, "USD", None), o)
        # The price came from the catalogue.
        self.assertEqual(o["items"], [{"productId": "p1", "quantity": 2, "price": 1999}], o)
        self.assertRegex(o["paymentId"], PAY_ID_RE)
        self.assert_stock("p1", 8)
        saga = self.get_saga(o["id"])
        self.assertEqual((saga["orderId"], saga["state"], saga["finished"], saga["inFlight"]),
                         (o["id"], "done", True, False), saga)
        self.assertRegex(saga["updatedAt"], ISO_RE)
        states = [h["state"] for h in saga["history"]]
        self.assertEqual(states, ["reserving", "charging", "committing", "done"], saga)
        for h in saga["history"]:
            self.assertRegex(h["at"], ISO_RE)

        # More than there is: 409 OUT_OF_STOCK with the inventory's details,
        # the order cancelled, nothing charged, nothing held.
        err = self.assert_err(self.create_order(user, items=[{"productId": "p1",
                                                               "quantity": 99}]),
                              409, "OUT_OF_STOCK")
        self.assertIn("p1", err["message"])
        self.assertEqual([(d.get("productId"), d.get("requested"), d.get("available"))
                          for d in err["details"]], [("p1", 99, 8)], err)
        oos = [x for x in reply_response(self.conn.call("get_orders", {"userId": user}))
               ["orders"] if x["id"] != o["id"]]
        self.assertEqual(len(oos), 1, oos)
        oos = oos[0]
        self.assertIn(oos["id"], err["message"])
        self.assertEqual((oos["status"], oos["cancelReason"], oos["paymentId"]),
                         ("cancelled", "out_of_stock", None), oos)
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": oos["id"]}),
                        404, "PAYMENT_NOT_FOUND")
        self.assert_stock("p1", 8)
        self.assertEqual(self.saga_states(oos["id"]), ["reserving", "cancelled"])
        self.assertEqual(self.get_saga(oos["id"])["reason"], "out_of_stock")

        # A declined card: 200 with the order cancelled, the stock back.
        d = reply_response(self.create_order(user, method="tok_chargeDeclined",
                                             items=[{"productId": "p1", "quantity": 2}]))
        self.assertEqual((d["status"], d["cancelReason"], d["paymentId"], d["totalAmount"]),
                         ("cancelled", "card_declined", None, 3998), d)
        self.assert_stock("p1", 8)
        self.assertEqual(self.saga_states(d["id"]),
                         ["reserving", "charging", "compensating_release", "cancelled"])

        # The events: confirmed -> order_created + order_completed; out of
        # stock -> order_failed only (never priced); declined -> order_created
        # + order_failed.
        self.assert_envelope(self.wait_event("order_created", o["id"]), "order_created",
                             {"orderId": o["id"], "userId": user, "totalAmount": 3998,
                              "currency": "USD", "items": o["items"]}, request_id="req-walk-1")
        self.assert_envelope(self.wait_event("order_completed", o["id"]), "order_completed",
                             {"orderId": o["id"], "userId": user, "totalAmount": 3998,
                              "currency": "USD"}, request_id="req-walk-1")
        self.assert_envelope(self.wait_event("order_failed", oos["id"]), "order_failed",
                             {"orderId": oos["id"], "userId": user, "reason": "out_of_stock"})
        self.assert_envelope(self.wait_event("order_failed", d["id"]), "order_failed",
                             {"orderId": d["id"], "userId": user, "reason": "card_declined"})
        self.wait_event("order_created", d["id"])
        self.barrier()
        self.assertEqual(self.events("order_created", oos["id"]), [])
        self.assertEqual(self.events("order_completed", d["id"]), [])
        for oid in (o["id"], oos["id"], d["id"]):
            self.assertEqual(self.events("order_status_changed", oid), [])
        for pattern, oid in (("order_created", o["id"]), ("order_completed", o["id"]),
                             ("order_failed", oos["id"]), ("order_created", d["id"]),
                             ("order_failed", d["id"])):
            self.assertEqual(len(self.events(pattern, oid)), 1, (pattern, oid))

    def test_unknown_product_is_404_and_cancels(self):
        user = self.create_user()
        err = self.assert_err(self.create_order(user, items=[
            {"productId": "prod-1", "quantity": 1}, {"productId": "nope", "quantity": 1}]),
            404, "PRODUCT_NOT_FOUND")
        self.assertIn("nope", err["message"])
        o = reply_response(self.conn.call("get_orders", {"userId": user}))["orders"][0]
        self.assertIn(o["id"], err["message"])
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "product_not_found"))
        self.assert_stock("prod-1", 1000000)  # all or nothing: prod-1 not held either
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": o["id"]}),
                        404, "PAYMENT_NOT_FOUND")

    def test_client_price_that_differs_is_409_price_changed(self):
        user = self.create_user()
        err = self.assert_err(self.create_order(user, items=[
            {"productId": "prod-1", "quantity": 1, "price": 1500}]), 409, "PRICE_CHANGED")
        self.assertTrue(err.get("details"), err)
        o = reply_response(self.conn.call("get_orders", {"userId": user}))["orders"][0]
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "price_changed"), o)
        self.assert_stock("prod-1", 1000000)
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": o["id"]}),
                        404, "PAYMENT_NOT_FOUND")

    def test_inventory_service_stopped_cancels_with_503(self):
        user = self.create_user()
        self.inventory_svc.stop()
        err = self.assert_err(self.create_order(user), 503, "INVENTORY_SERVICE_UNAVAILABLE")
        o = reply_response(self.conn.call("get_orders", {"userId": user}))["orders"][0]
        self.assertIn(o["id"], err["message"])
        self.assertEqual((o["status"], o["cancelReason"]),
                         ("cancelled", "inventory_unavailable"), o)
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": o["id"]}),
                        404, "PAYMENT_NOT_FOUND")


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
        h = wait_until(healthy, message="health with redis and the three upstreams connected")
        self.assertEqual((h["status"], h["service"], h["db"]), ("ok", "order", "ok"), h)
        # The saga made the inventory service the third upstream.
        self.assertEqual(h["upstreams"], {"user": True, "payment": True, "inventory": True}, h)
        # The saga added its counters.
        self.assertEqual(set(h), {"status", "service", "db", "redis", "upstreams", "sagas"}, h)
        self.assertEqual(set(h["sagas"]), {"inFlight", "started", "resumed", "done",
                                           "cancelled"}, h)

    def test_help_and_health_probe(self):
        exe = binary(ORDER_SERVICE)
        p = subprocess.run([exe, "--help"], capture_output=True, timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 0, p)
        text = p.stdout.decode()
        for var in ("LISTEN_HOST", "ORDER_SERVICE_PORT", "DATA_DIR", "SQLITE_SYNCHRONOUS",
                    "USER_SERVICE_HOST", "USER_SERVICE_PORT", "PAYMENT_SERVICE_HOST",
                    "PAYMENT_SERVICE_PORT", "INVENTORY_SERVICE_HOST", "INVENTORY_SERVICE_PORT",
                    "ORDER_SAGA_RETRY_MAX_MS", "ORDER_SAGA_RESUME_MAX", "RPC_TIMEOUT_MS", "REDIS_HOST", "REDIS_PORT",
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
    """The payment service accepts and never answers. Before the saga such an
    order stayed pending; now the saga retries the charge until the caller's
    deadline, answers 504 DEADLINE_EXCEEDED and compensates (a refund with
    voidIfMissing, then the release), retrying until a payment service
    answers. The real payment service started on the silent one's port
    lets the compensation end."""

    CALLER_BUDGET_MS = 8000  # metadata timeoutMs: the saga's pending window

    def setUp(self):
        super().setUp()
        self.silent = SilentServer()
        self.addCleanup(self.silent.close)
        self.slow = self.start_order_service(payment_port=self.silent.port,
                                             RPC_TIMEOUT_MS="1500")
        self.slow_conn = self.connect(self.slow)

    def send_order(self, user, metadata=None):
        req_id = FrameConn.new_id()
        packet = {"pattern": {"cmd": "create_order"}, "id": req_id, "data": {
            "userId": user, "paymentMethod": "tok_visa",
            "items": [{"productId": "p", "quantity": 1, "price": 500}]}}
        if metadata:
            packet["metadata"] = metadata
        self.slow_conn.send(packet)
        return req_id

    def payment_back(self):
        """The real payment service where the silent one listened."""
        port = self.silent.port
        self.silent.close()
        return self.start_payment_service(port=port)

    def test_unknown_outcome_is_504_then_compensates(self):
        # Contract change (saga): was 504 PAYMENT_TIMEOUT with the order left
        # pending; now 504 DEADLINE_EXCEEDED and the saga compensates.
        user = self.create_user()
        r = self.slow_conn.call("create_order", {
            "userId": user, "paymentMethod": "tok_visa",
            "items": [{"productId": "p", "quantity": 1, "price": 500}]}, timeout=20)
        err = self.assert_err(r, 504, "DEADLINE_EXCEEDED")
        page = reply_response(self.slow_conn.call("get_orders", {"userId": user}))
        o = page["orders"][0]
        self.assertIn(o["id"], err["message"])
        # The refund (voiding a charge still on its way) cannot reach the
        # silent service: the order waits in compensating, the unit held.
        comp = wait_until(lambda: (lambda x: x if x["status"] == "compensating" else None)(
            self.get_order(o["id"], self.slow_conn)), message="order compensating")
        self.assertEqual(comp["paymentId"], None, comp)
        self.assertEqual(self.get_saga(o["id"], self.slow_conn)["state"], "compensating_refund")
        self.assert_stock("p", 1000, reserved=1)
        # A compensating order is the saga's: no cancel by request.
        self.assert_err(self.slow_conn.call("update_order_status",
                                            {"id": o["id"], "status": "cancelled"}),
                        409, "ORDER_BUSY")

        payments = self.connect(self.payment_back())
        final = self.wait_final(o["id"], self.slow_conn)
        self.assertEqual((final["status"], final["cancelReason"], final["paymentId"]),
                         ("cancelled", "deadline_exceeded", None), final)
        self.assert_stock("p", 1000)
        self.assert_not_charged(o["id"], payments)
        saga = self.get_saga(o["id"], self.slow_conn)
        self.assertEqual((saga["state"], saga["finished"], saga["reason"]),
                         ("cancelled", True, "deadline_exceeded"), saga)
        states = [h["state"] for h in saga["history"]]
        self.assertEqual(states[:2], ["reserving", "charging"], saga)
        self.assertEqual(states[-3:], ["compensating_refund", "compensating_release",
                                       "cancelled"], saga)
        msg = self.wait_event("order_failed", o["id"])
        self.assertEqual(msg["data"], {"orderId": o["id"], "userId": user,
                                       "reason": "deadline_exceeded"}, msg)

    def test_pending_order_of_a_running_saga_is_not_settable_nor_cancellable(self):
        # Issue 9: PATCH {"status":"confirmed"} used to confirm an order whose
        # payment never answered. It is still 409 STATUS_NOT_SETTABLE; and
        # (contract change, saga) its cancel, a plain one before, is now 409
        # ORDER_BUSY while the saga runs: only the saga cancels, through its
        # compensation.
        user = self.create_user()
        req_id = self.send_order(user, {"timeoutMs": str(self.CALLER_BUDGET_MS)})
        wait_until(lambda: b"process_payment" in self.silent.received,
                   message="process_payment reaching the silent payment service")
        o = reply_response(self.slow_conn.call("get_orders", {"userId": user}))["orders"][0]
        self.assertEqual((o["status"], o["paymentId"]), ("pending", None), o)
        err = self.assert_err(self.slow_conn.call("update_order_status",
                                                  {"id": o["id"], "status": "confirmed"}),
                              409, "STATUS_NOT_SETTABLE")
        self.assertEqual(set(err), {"statusCode", "message", "code"}, err)
        self.assertIn("confirmed", err["message"])
        self.assert_err(self.slow_conn.call("update_order_status",
                                            {"id": o["id"], "status": "cancelled"}),
                        409, "ORDER_BUSY")
        self.assertEqual(self.get_order(o["id"], self.slow_conn), o)
        # Nothing was charged: the real payment service never saw the order.
        self.assert_err(self.payments.call("get_payment_by_order", {"orderId": o["id"]}), 404,
                        "PAYMENT_NOT_FOUND")
        err = reply_error(self.slow_conn.read_reply(req_id, timeout=20))
        self.assertEqual((err.get("statusCode"), err.get("code")), (504, "DEADLINE_EXCEEDED"),
                         err)
        self.assertIn(o["id"], err["message"])
        # Neither refused PATCH published anything: the saga's own events
        # (order_failed once it ends) are the only ones for this order.
        self.payment_back()
        final = self.wait_final(o["id"], self.slow_conn)
        self.assertEqual((final["status"], final["cancelReason"]),
                         ("cancelled", "deadline_exceeded"), final)
        self.wait_event("order_failed", o["id"])
        self.barrier(self.slow_conn)  # same publisher: the refused PATCHes are behind us
        self.assertEqual(self.events("order_status_changed", o["id"]), [])

    def test_sigterm_drains_the_order_in_flight(self):
        user = self.create_user()
        req_id = self.send_order(user)
        wait_until(lambda: b"process_payment" in self.silent.received,
                   message="process_payment reaching the silent payment service")
        # stop() sends SIGTERM and waits for exit status 0; meanwhile the
        # order in flight must still be answered (its deadline passes).
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
        self.assertEqual((err.get("statusCode"), err.get("code")), (504, "DEADLINE_EXCEEDED"),
                         err)
        self.slow.wait_for_log(lambda l: l.get("event") == "stopping",
                               message="the stopping line")
        # Contract change (saga): the next start resumes the unfinished saga
        # (it used to find the order pending for ever). With a payment service
        # answering on the old port it ends; either end is the contract's as
        # long as confirmed <=> charged and cancelled => nothing charged, no
        # stock held.
        payments = self.connect(self.payment_back())
        again = self.start_order_service(payment_port=self.silent.port,
                                         data_dir=self.slow.data_dir)
        again_conn = self.connect(again)
        o = reply_response(again_conn.call("get_orders", {"userId": user}))["orders"][0]
        final = self.wait_final(o["id"], again_conn)
        if final["status"] == "confirmed":
            p = reply_response(payments.call("get_payment_by_order", {"orderId": o["id"]}))
            self.assertEqual((p["status"], p["amount"], p["id"]),
                             ("succeeded", 500, final["paymentId"]), p)
            self.assert_stock("p", 999)
        else:
            self.assert_not_charged(o["id"], payments)
            self.assert_stock("p", 1000)
        self.assertTrue(self.get_saga(o["id"], again_conn)["finished"])


if __name__ == "__main__":
    unittest.main()
