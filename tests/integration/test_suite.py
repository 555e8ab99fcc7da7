"""The whole suite through the gateway: redis-server, the user, payment,
notification, inventory (with the demo product p1 1999 x 10) and order
services and the gateway, each on an ephemeral port with its own DATA_DIR.
Covers the README walkthrough (user, order of p1 x 2 without prices with
tok_visa -> 201 confirmed 3998 USD at the catalogue's price, stock 8, GET
/orders/:id/saga done, 99 -> 409 OUT_OF_STOCK nothing charged, a decline ->
201 cancelled with the stock back, GET the order, the user's orders, the
user's notifications (order received / completed / failed, payment receipt),
the payment, PATCH shipped, refund of a shipped order -> 409), a refund of a
confirmed order, both decline paths, the error
statuses (404 unknown user, 409 illegal transition, 400 naming the field,
405), paging, path parameters that a body "id" cannot override,
the events as a plain RESP subscriber sees them (the exact NestJS envelope,
compact, carrying the client's X-Request-Id), the request id in the logs of
gateway, order, payment and notification, a Redis restart on the same port
(publishers reconnect, the notification daemon resubscribes), /ready with
the payment service stopped, and 503s with the payment or user service down.

Every wait polls a condition inside a deadline (notifications arrive
asynchronously through Redis). Cleanup stops every daemon with SIGTERM and
fails on a non-zero exit or a sanitizer report."""

import itertools
import json
import os
import unittest

from harness import (GATEWAY, DaemonTestCase, FrameConn, dump_json, http_request,
                     reply_response, wait_until)
from redis_helper import start_redis

ORDER_SERVICE = "services/order/order-service"
PAYMENT_SERVICE = "services/payment/payment-service"
NOTIFICATION_SERVICE = "services/notification/notification-service"
EVENTS = ("order_created", "order_completed", "order_failed", "order_status_changed",
          "payment_completed", "payment_failed", "payment_refunded")
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
ORDER_ID_RE = r"^order_[0-9a-f]{32}$"
PAY_ID_RE = r"^pay_[0-9a-f]{32}$"
EVT_ID_RE = r"^evt_[0-9a-f]{32}$"
NOTIFY_TIMEOUT_S = 15.0     # an event's way through Redis, under ASan
RESTART_TIMEOUT_S = 30.0    # reconnect backoff after a Redis restart
WALKTHROUGH_ITEMS = [{"productId": "p1", "quantity": 2, "price": 1999}]
EMOJI_PRODUCT = "caf\u00e9-\U0001F600"
# The catalogue the saga reserves and prices in, {id: (price, stock)}: p1 as
# `make run` creates it (README walkthrough), and a product with a non-ASCII id.
PRODUCTS = {"p1": (1999, 10), EMOJI_PRODUCT: (1999, 100)}
RETRY_MAX_MS = 500          # ORDER_SAGA_RETRY_MAX_MS: quick retries in tests
# What a confirmed order notifies (order_created, payment_completed and, since
# the saga, order_completed) and what a declined one does (order_created is
# published once priced, before the charge; then payment_failed, order_failed).
CONFIRMED_TYPES = ["order_confirmation", "payment_receipt", "order_completed"]
DECLINED_TYPES = ["order_confirmation", "payment_failed", "order_failed"]

_seq = itertools.count(1)


def unique(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), next(_seq))


def unique_email(prefix="suite"):
    return "%s%d.%d@example.com" % (prefix, os.getpid(), next(_seq))


class SuiteCase(DaemonTestCase):
    """redis-server, a RESP subscriber on every event channel, then user,
    payment, notification, inventory, order and the gateway (dependencies
    first)."""

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        # Subscribed before any daemon exists: pub/sub keeps nothing.
        self.sub = self.redis.subscriber(self, *EVENTS)
        self.user_svc = self.start_user_service(LOG_LEVEL="debug")
        self.payment_svc = self.start_service("payment-service", PAYMENT_SERVICE,
                                              "PAYMENT_SERVICE_PORT")
        self.notification_svc = self.start_service("notification-service",
                                                   NOTIFICATION_SERVICE,
                                                   "NOTIFICATION_SERVICE_PORT")
        # The gateway's inventory upstream (its /products routes and /ready)
        # and the order saga's (it reserves and prices there).
        self.inventory_svc = self.start_inventory_service(LOG_LEVEL="debug")
        self.seed_products(self.inventory_svc, PRODUCTS)
        self.order_svc = self.start_service("order-service", ORDER_SERVICE,
                                            "ORDER_SERVICE_PORT", {
                                                "USER_SERVICE_HOST": "127.0.0.1",
                                                "USER_SERVICE_PORT": self.user_svc.port,
                                                "PAYMENT_SERVICE_HOST": "127.0.0.1",
                                                "PAYMENT_SERVICE_PORT":
                                                    self.payment_svc.port,
                                                "INVENTORY_SERVICE_HOST": "127.0.0.1",
                                                "INVENTORY_SERVICE_PORT":
                                                    self.inventory_svc.port,
                                                "ORDER_SAGA_RETRY_MAX_MS": RETRY_MAX_MS})
        self.gw = self.start_daemon("gateway", GATEWAY, {
            "LISTEN_HOST": "127.0.0.1",
            "GATEWAY_PORT": "0",
            "LOG_LEVEL": "debug",
            "USER_SERVICE_HOST": "127.0.0.1",
            "USER_SERVICE_PORT": str(self.user_svc.port),
            "ORDER_SERVICE_HOST": "127.0.0.1",
            "ORDER_SERVICE_PORT": str(self.order_svc.port),
            "PAYMENT_SERVICE_HOST": "127.0.0.1",
            "PAYMENT_SERVICE_PORT": str(self.payment_svc.port),
            "NOTIFICATION_SERVICE_HOST": "127.0.0.1",
            "NOTIFICATION_SERVICE_PORT": str(self.notification_svc.port),
            "INVENTORY_SERVICE_HOST": "127.0.0.1",
            "INVENTORY_SERVICE_PORT": str(self.inventory_svc.port),
        }, ("http",))
        # Events published before the notification daemon subscribed are lost.
        self.wait_subscribed()

    # -- daemons --
    def start_service(self, name, rel, port_var, extra=None):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            port_var: "0",
            "DATA_DIR": self.make_data_dir(),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "LOG_LEVEL": "debug",
        }
        env.update({k: str(v) for k, v in (extra or {}).items()})
        return self.start_daemon(name, rel, env, ("rpc",))

    def health(self, svc):
        with FrameConn(svc.port) as c:
            return reply_response(c.call("health", {}))

    def wait_subscribed(self, timeout=NOTIFY_TIMEOUT_S):
        """The notification daemon has every channel subscribed: events
        published from now on reach it."""
        def subscribed():
            self.notification_svc.assert_alive(self)
            h = self.health(self.notification_svc)
            return h if (h.get("redis") or {}).get("subscribed") is True else None
        return wait_until(subscribed, timeout, message="notification redis.subscribed")

    def wait_publisher_connected(self, svc, timeout=RESTART_TIMEOUT_S):
        def connected():
            svc.assert_alive(self)
            h = self.health(svc)
            return h if (h.get("redis") or {}).get("connected") is True else None
        return wait_until(connected, timeout, message="%s redis.connected" % svc.name)

    # -- HTTP --
    def req(self, method, path, body=None, request_id=None, **kw):
        headers = {"X-Request-Id": request_id} if request_id else None
        return http_request(self.gw.port, method, path, body=body, headers=headers, **kw)

    def expect(self, r, status):
        self.assertEqual(r.status, status, "%r\n%s" % (r, self.describe_all()
                                                       if r.status >= 500 else ""))
        self.assertTrue(r.header("X-Request-Id"), r)
        return r.json

    def expect_error(self, r, status, code=None):
        body = self.expect(r, status)
        self.assertIsInstance(body, dict, r)
        self.assertEqual(body.get("statusCode"), status, r)
        self.assertIsInstance(body.get("message"), str, r)
        self.assertEqual(body.get("requestId"), r.header("X-Request-Id"), r)
        if code is not None:
            self.assertEqual(body.get("code"), code, r)
        return body

    def assert_names_field(self, err, field):
        fields = [d.get("field") for d in err.get("details") or [] if isinstance(d, dict)]
        self.assertIn(field, fields, err)
        self.assertIn(field, err["message"], err)

    def create_user(self, name="Grace Hopper", request_id=None):
        return self.expect(self.req("POST", "/users", {"email": unique_email(), "name": name},
                                    request_id), 201)

    def post_order(self, user_id, method="tok_visa", items=None, request_id=None, **extra):
        body = {"userId": user_id, "items": items or WALKTHROUGH_ITEMS,
                "paymentMethod": method}
        body.update(extra)
        return self.req("POST", "/orders", body, request_id)

    def create_order(self, user_id, method="tok_visa", request_id=None):
        return self.expect(self.post_order(user_id, method, request_id=request_id), 201)

    def product(self, product_id):
        return self.expect(self.req("GET", "/products/%s" % product_id), 200)

    def assert_stock(self, product_id, stock, reserved=0):
        p = self.product(product_id)
        self.assertEqual((p["stock"], p["reserved"], p["available"]),
                         (stock, reserved, stock - reserved), p)

    # -- notifications --
    def notifications(self, user_id):
        page = self.expect(self.req("GET", "/users/%s/notifications?page=1&limit=100"
                                    % user_id), 200)
        self.assertEqual(set(page), {"notifications", "total", "page", "limit"}, page)
        return page

    def wait_notification_types(self, user_id, types, timeout=NOTIFY_TIMEOUT_S):
        """Poll until the user has (at least) one notification of each type
        in types; return the page."""
        want = sorted(types)

        def arrived():
            page = self.notifications(user_id)
            got = [n["type"] for n in page["notifications"]]
            return page if all(got.count(t) >= want.count(t) for t in set(want)) else None
        try:
            return wait_until(arrived, timeout, interval=0.05,
                              message="notifications %s for %s" % (want, user_id))
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.describe_all())) from None

    def assert_exact_types(self, page, types):
        self.assertEqual(sorted(n["type"] for n in page["notifications"]), sorted(types), page)
        self.assertEqual(page["total"], len(types), page)

    # -- events --
    def wait_event(self, pattern, order_id, timeout=NOTIFY_TIMEOUT_S, pred=None):
        def match(ch, payload):
            if ch != pattern:
                return False
            data = json.loads(payload.decode("utf-8")).get("data") or {}
            return data.get("orderId") == order_id and (pred is None or pred(data))
        return self.sub.wait_for(match, timeout, message="%s for %s" % (pattern, order_id))


class WalkthroughTest(SuiteCase):

    def test_readme_walkthrough(self):
        user = self.create_user()
        self.assertEqual(self.expect(self.req("GET", "/users/%s" % user["id"]), 200)["id"],
                         user["id"])
        self.assert_stock("p1", 10)

        # No prices sent: the catalogue's are taken (README walkthrough).
        o = self.expect(self.post_order(user["id"], items=[{"productId": "p1",
                                                            "quantity": 2}]), 201)
        self.assertRegex(o["id"], ORDER_ID_RE)
        self.assertEqual((o["userId"], o["status"], o["totalAmount"], o["currency"],
                          o["paymentMethod"], o["cancelReason"], o["items"]),
                         (user["id"], "confirmed", 3998, "USD", "tok_visa", None,
                          WALKTHROUGH_ITEMS), o)
        self.assertIsInstance(o["totalAmount"], int)
        self.assertRegex(o["paymentId"], PAY_ID_RE)
        self.assertRegex(o["createdAt"], ISO_MS)
        self.assert_stock("p1", 8)
        saga = self.expect(self.req("GET", "/orders/%s/saga" % o["id"]), 200)
        self.assertEqual((saga["orderId"], saga["state"], saga["finished"]),
                         (o["id"], "done", True), saga)
        self.assertEqual([h["state"] for h in saga["history"]][0], "reserving", saga)

        # 99 is more than there is: 409 OUT_OF_STOCK, nothing charged, stock
        # as it was.
        err = self.expect_error(self.post_order(user["id"], items=[{"productId": "p1",
                                                                    "quantity": 99}]),
                                409, "OUT_OF_STOCK")
        self.assertEqual([(d.get("productId"), d.get("requested"), d.get("available"))
                          for d in err["details"]], [("p1", 99, 8)], err)
        self.assert_stock("p1", 8)
        # A decline: 201 with the order cancelled, its stock back.
        d = self.expect(self.post_order(user["id"], "tok_chargeDeclined",
                                        items=[{"productId": "p1", "quantity": 1}]), 201)
        self.assertEqual((d["status"], d["cancelReason"], d["paymentId"]),
                         ("cancelled", "card_declined", None), d)
        self.assert_stock("p1", 8)

        got = self.expect(self.req("GET", "/orders/%s" % o["id"]), 200)
        self.assertEqual(got, o)

        page = self.expect(self.req("GET", "/users/%s/orders" % user["id"]), 200)
        self.assertEqual((page["total"], page["page"], page["limit"]), (3, 1, 10), page)
        self.assertEqual(page["orders"][2], o, page)  # newest first
        oos = page["orders"][1]
        self.assertIn(oos["id"], err["message"])
        self.assertEqual((oos["status"], oos["cancelReason"], oos["paymentId"]),
                         ("cancelled", "out_of_stock", None), oos)

        # Order received / completed / failed and the payment receipt (and the
        # decline's payment_failed), nothing else: the out-of-stock order was
        # never priced, so it gives only order_failed.
        types = CONFIRMED_TYPES + DECLINED_TYPES + ["order_failed"]
        page = self.wait_notification_types(user["id"], types)
        self.assert_exact_types(page, types)
        mine = [n for n in page["notifications"] if n["orderId"] == o["id"]]
        self.assertEqual(sorted(n["type"] for n in mine), sorted(CONFIRMED_TYPES), page)
        by_type = {n["type"]: n for n in mine}
        self.assertEqual(by_type["order_confirmation"]["message"],
                         "Your order %s for 39.98 USD has been received" % o["id"])
        self.assertEqual(by_type["payment_receipt"]["message"],
                         "We received your payment of 39.98 USD for order %s" % o["id"])
        self.assertEqual(by_type["order_completed"]["message"],
                         "Your order %s for 39.98 USD is complete" % o["id"])
        failed = [n for n in page["notifications"] if n["orderId"] == oos["id"]]
        self.assertEqual([n["type"] for n in failed], ["order_failed"], page)
        self.assertIn("out_of_stock", failed[0]["message"])
        for n in page["notifications"]:
            self.assertEqual(n["userId"], user["id"], n)

        pay = self.expect(self.req("GET", "/payments/%s" % o["paymentId"]), 200)
        self.assertEqual((pay["id"], pay["orderId"], pay["userId"], pay["amount"],
                          pay["currency"], pay["status"], pay["paymentMethod"], pay["reason"]),
                         (o["paymentId"], o["id"], user["id"], 3998, "USD", "succeeded",
                          "tok_visa", None), pay)

        shipped = self.expect(self.req("PATCH", "/orders/%s" % o["id"],
                                       {"status": "shipped"}), 200)
        self.assertEqual((shipped["id"], shipped["status"]), (o["id"], "shipped"), shipped)
        types += ["order_status"]
        page = self.wait_notification_types(user["id"], types)
        # Barrier: order_created and this order_status_changed come from the
        # same publisher in order, so create_order published no status change.
        self.assert_exact_types(page, types)
        status_n = [n for n in page["notifications"] if n["type"] == "order_status"][0]
        self.assertEqual(status_n["message"], "Your order %s is now shipped" % o["id"])
        self.assertEqual(page["notifications"][0]["type"], "order_status", page)  # newest

        err = self.expect_error(self.req("POST", "/orders/%s/refund" % o["id"]), 409,
                                "NOT_REFUNDABLE")
        self.assertIn("shipped", err["message"])
        self.assertEqual(self.expect(self.req("GET", "/orders/%s" % o["id"]), 200)["status"],
                         "shipped")
        self.assertEqual(self.expect(self.req("GET", "/payments/%s" % o["paymentId"]),
                                     200)["status"], "succeeded")

    def test_refund_of_confirmed_order(self):
        user = self.create_user()
        o = self.create_order(user["id"])
        self.wait_notification_types(user["id"], ["order_confirmation", "payment_receipt"])
        r = self.expect(self.req("POST", "/orders/%s/refund" % o["id"]), 201)
        self.assertEqual((r["id"], r["status"], r["cancelReason"], r["paymentId"]),
                         (o["id"], "cancelled", "refunded", o["paymentId"]), r)
        self.assertEqual(self.expect(self.req("GET", "/orders/%s" % o["id"]), 200)["status"],
                         "cancelled")
        pay = self.expect(self.req("GET", "/payments/%s" % o["paymentId"]), 200)
        self.assertEqual(pay["status"], "refunded", pay)
        self.assertRegex(pay["refundedAt"] or "", ISO_MS)
        types = CONFIRMED_TYPES + ["refund_receipt", "order_status"]
        page = self.wait_notification_types(user["id"], types)
        self.assert_exact_types(page, types)
        by_type = {n["type"]: n for n in page["notifications"]}
        self.assertEqual(by_type["refund_receipt"]["message"],
                         "A refund of 39.98 USD for your order %s has been issued" % o["id"])
        self.assertEqual(by_type["order_status"]["message"],
                         "Your order %s is now cancelled" % o["id"])
        # Not twice.
        self.expect_error(self.req("POST", "/orders/%s/refund" % o["id"]), 409,
                          "NOT_REFUNDABLE")

    def test_declines_cancel_and_notify(self):
        for method, reason in (("tok_chargeDeclined", "card_declined"),
                               ("tok_insufficientFunds", "insufficient_funds")):
            with self.subTest(method=method):
                user = self.create_user()
                o = self.create_order(user["id"], method)
                self.assertEqual((o["status"], o["cancelReason"], o["paymentId"],
                                  o["totalAmount"]), ("cancelled", reason, None, 3998), o)
                self.assertEqual(self.expect(self.req("GET", "/orders/%s" % o["id"]), 200), o)
                page = self.wait_notification_types(user["id"], DECLINED_TYPES)
                self.assert_exact_types(page, DECLINED_TYPES)
                for kind in ("payment_failed", "order_failed"):
                    failed = [n for n in page["notifications"] if n["type"] == kind][0]
                    self.assertEqual(failed["orderId"], o["id"], failed)
                    self.assertIn(reason, failed["message"], failed)
                    self.assertIn(o["id"], failed["message"], failed)
                # The saga released the stock it had reserved.
                self.assert_stock("p1", 10)
                # A declined order is not refundable (nothing was paid).
                self.expect_error(self.req("POST", "/orders/%s/refund" % o["id"]), 409,
                                  "NOT_REFUNDABLE")


class ErrorsTest(SuiteCase):

    def test_unknown_user_is_404(self):
        missing = "user_" + "0" * 32
        err = self.expect_error(self.post_order(missing), 404, "USER_NOT_FOUND")
        self.assertEqual(err["message"], "User not found")
        self.assertEqual(err["error"], "Not Found")
        page = self.expect(self.req("GET", "/users/%s/orders" % missing), 200)
        self.assertEqual((page["total"], page["orders"]), (0, []), page)
        self.expect_error(self.req("GET", "/orders/order_" + "0" * 32), 404, "ORDER_NOT_FOUND")
        self.expect_error(self.req("GET", "/payments/pay_" + "0" * 32), 404,
                          "PAYMENT_NOT_FOUND")

    def test_illegal_transition_is_409(self):
        user = self.create_user()
        o = self.create_order(user["id"])
        err = self.expect_error(self.req("PATCH", "/orders/%s" % o["id"],
                                         {"status": "delivered"}), 409, "ILLEGAL_TRANSITION")
        self.assertEqual(err["message"], "Cannot change order status from confirmed to delivered")
        # Only the payment confirms an order, and none goes back to pending.
        for status in ("pending", "confirmed"):
            with self.subTest(status=status):
                err = self.expect_error(self.req("PATCH", "/orders/%s" % o["id"],
                                                 {"status": status}), 409,
                                        "STATUS_NOT_SETTABLE")
                self.assertTrue(err["message"].startswith(
                    "Status %s cannot be set by request" % status), err)
        self.expect(self.req("PATCH", "/orders/%s" % o["id"], {"status": "shipped"}), 200)
        err = self.expect_error(self.req("PATCH", "/orders/%s" % o["id"],
                                         {"status": "cancelled"}), 409, "ILLEGAL_TRANSITION")
        self.assertEqual(err["message"], "Cannot change order status from shipped to cancelled")
        self.assertEqual(self.expect(self.req("GET", "/orders/%s" % o["id"]), 200)["status"],
                         "shipped")

    def test_validation_400_names_the_field(self):
        user = self.create_user()
        uid = user["id"]
        cases = [
            ({"items": WALKTHROUGH_ITEMS, "paymentMethod": "tok_visa"}, "userId"),
            ({"userId": uid, "paymentMethod": "tok_visa"}, "items"),
            ({"userId": uid, "items": WALKTHROUGH_ITEMS}, "paymentMethod"),
            ({"userId": uid, "items": [{"productId": "p1", "quantity": 0, "price": 1999}],
              "paymentMethod": "tok_visa"}, "items[0].quantity"),
            ({"userId": uid, "items": [{"productId": "p1", "quantity": 1, "price": 19.99}],
              "paymentMethod": "tok_visa"}, "items[0].price"),
            ({"userId": uid, "items": WALKTHROUGH_ITEMS, "paymentMethod": "tok_visa",
              "currency": "usd"}, "currency"),
            ({"userId": uid, "items": WALKTHROUGH_ITEMS, "paymentMethod": "tok_visa",
              "giftWrap": True}, "giftWrap"),
        ]
        for body, field in cases:
            with self.subTest(field=field):
                err = self.expect_error(self.req("POST", "/orders", body), 400,
                                        "VALIDATION_FAILED")
                self.assert_names_field(err, field)
        # The payment service's own 400 comes through the order service.
        err = self.expect_error(self.post_order(uid, "tok_amex"), 400, "VALIDATION_FAILED")
        self.assertIn("paymentMethod", err["message"], err)

        o = self.create_order(uid)
        err = self.expect_error(self.req("PATCH", "/orders/%s" % o["id"], {"status": "lost"}),
                                400, "VALIDATION_FAILED")
        self.assert_names_field(err, "status")
        err = self.expect_error(self.req("PATCH", "/orders/%s" % o["id"], {}), 400,
                                "VALIDATION_FAILED")
        self.assert_names_field(err, "status")
        # The gateway's own 400s: bad JSON, a non-integer page.
        self.expect_error(http_request(self.gw.port, "POST", "/orders", b'{"userId":',
                                       headers={"Content-Type": "application/json"}), 400)
        err = self.expect_error(self.req("GET", "/users/%s/orders?page=abc" % uid), 400)
        self.assertIn("page", err["message"], err)
        err = self.expect_error(self.req("GET", "/users/%s/notifications?limit=1.5" % uid), 400)
        self.assertIn("limit", err["message"], err)
        self.assertEqual(self.expect(self.req("GET", "/orders/%s" % o["id"]), 200)["status"],
                         "confirmed")


    def test_paging_methods_and_path_params(self):
        user = self.create_user()
        ids = [self.create_order(user["id"])["id"] for _ in range(3)]
        page = self.expect(self.req("GET", "/users/%s/orders?page=2&limit=1" % user["id"]), 200)
        self.assertEqual((page["total"], page["page"], page["limit"]), (3, 2, 1), page)
        self.assertEqual([o["id"] for o in page["orders"]], [ids[1]], page)  # newest first
        page = self.expect(self.req("GET", "/users/%s/orders?limit=1000" % user["id"]), 200)
        self.assertEqual((page["limit"], len(page["orders"])), (100, 3), page)
        r = self.req("GET", "/orders")
        self.expect_error(r, 405)
        self.assertIn("POST", r.header("Allow") or "", r)
        r = self.req("DELETE", "/orders/%s" % ids[0])
        self.expect_error(r, 405)
        self.assertIn("PATCH", r.header("Allow") or "", r)
        # The path names the order: an "id" in the body does not retarget it.
        r = self.expect(self.req("PATCH", "/orders/%s" % ids[0],
                                 {"status": "shipped", "id": ids[1]}), 200)
        self.assertEqual((r["id"], r["status"]), (ids[0], "shipped"), r)
        r = self.expect(self.req("POST", "/orders/%s/refund" % ids[2], {"id": ids[1]}), 201)
        self.assertEqual((r["id"], r["status"]), (ids[2], "cancelled"), r)
        self.assertEqual(self.expect(self.req("GET", "/orders/%s" % ids[1]), 200)["status"],
                         "confirmed")
        page = self.wait_notification_types(user["id"], CONFIRMED_TYPES * 3
                                            + ["order_status"] * 2
                                            + ["refund_receipt"])
        # 12 since the saga (each confirmed order also notifies order_completed).
        self.assertEqual(page["total"], 12, page)
        page = self.expect(self.req("GET", "/users/%s/notifications?page=3&limit=5"
                                    % user["id"]), 200)
        self.assertEqual((page["total"], page["page"], page["limit"], len(page["notifications"])),
                         (12, 3, 5, 2), page)


class EventsAndTracingTest(SuiteCase):

    def assert_envelope(self, raw, pattern, data, request_id):
        """raw is exactly what NestJS's ClientRedis would publish:
        JSON.stringify({pattern, data, metadata}) (compact, keys in that
        order, non-ASCII as UTF-8), with our metadata."""
        msg = json.loads(raw.decode("utf-8"))
        self.assertEqual(raw, dump_json(msg).encode("utf-8"), raw)
        self.assertEqual(list(msg), ["pattern", "data", "metadata"], msg)
        self.assertEqual(msg["pattern"], pattern, msg)
        self.assertEqual(msg["data"], data, msg)
        meta = msg["metadata"]
        self.assertEqual(set(meta), {"requestId", "eventId", "occurredAt"}, msg)
        self.assertEqual(meta["requestId"], request_id, msg)
        self.assertRegex(meta["eventId"], EVT_ID_RE)
        self.assertRegex(meta["occurredAt"], ISO_MS)
        return msg

    def test_events_are_nestjs_envelopes_carrying_the_request_id(self):
        user = self.create_user()
        rid = unique("suite-trace")
        items = [{"productId": EMOJI_PRODUCT, "quantity": 2, "price": 1999}]
        r = self.post_order(user["id"], items=items, request_id=rid)
        self.assertEqual(r.header("X-Request-Id"), rid, r)
        o = self.expect(r, 201)
        self.assertEqual(o["totalAmount"], 3998, o)

        ch, raw = self.wait_event("order_created", o["id"])
        created = self.assert_envelope(raw, "order_created", {
            "orderId": o["id"], "userId": user["id"], "totalAmount": 3998, "currency": "USD",
            "items": items}, rid)
        ch, raw = self.wait_event("payment_completed", o["id"])
        completed = self.assert_envelope(raw, "payment_completed", {
            "paymentId": o["paymentId"], "orderId": o["id"], "userId": user["id"],
            "amount": 3998, "currency": "USD"}, rid)
        self.assertNotEqual(created["metadata"]["eventId"], completed["metadata"]["eventId"])
        ch, raw = self.wait_event("order_completed", o["id"])
        done = self.assert_envelope(raw, "order_completed", {
            "orderId": o["id"], "userId": user["id"], "totalAmount": 3998,
            "currency": "USD"}, rid)
        self.assertNotIn(done["metadata"]["eventId"], (created["metadata"]["eventId"],
                                                       completed["metadata"]["eventId"]))

        rid2 = unique("suite-ship")
        self.expect(self.req("PATCH", "/orders/%s" % o["id"], {"status": "shipped"},
                             request_id=rid2), 200)
        ch, raw = self.wait_event("order_status_changed", o["id"])
        self.assert_envelope(raw, "order_status_changed", {
            "orderId": o["id"], "userId": user["id"], "previousStatus": "confirmed",
            "newStatus": "shipped"}, rid2)

        # The stored notifications carry the event ids and the request ids.
        page = self.wait_notification_types(user["id"], CONFIRMED_TYPES + ["order_status"])
        by_type = {n["type"]: n for n in page["notifications"]}
        self.assertEqual(by_type["order_completed"]["eventId"], done["metadata"]["eventId"])
        self.assertEqual(by_type["order_completed"]["requestId"], rid)
        self.assertEqual(by_type["order_confirmation"]["eventId"],
                         created["metadata"]["eventId"])
        self.assertEqual(by_type["order_confirmation"]["requestId"], rid)
        self.assertEqual(by_type["order_confirmation"]["data"]["items"], items)
        self.assertEqual(by_type["payment_receipt"]["eventId"], completed["metadata"]["eventId"])
        self.assertEqual(by_type["payment_receipt"]["requestId"], rid)
        self.assertEqual(by_type["order_status"]["requestId"], rid2)

        # A decline's event carries the id too.
        rid3 = unique("suite-decline")
        d = self.expect(self.post_order(user["id"], "tok_insufficientFunds",
                                        request_id=rid3), 201)
        ch, raw = self.wait_event("payment_failed", d["id"])
        failed = json.loads(raw.decode("utf-8"))
        self.assertEqual(raw, dump_json(failed).encode("utf-8"), raw)
        self.assertEqual(list(failed), ["pattern", "data", "metadata"], failed)
        self.assertEqual(failed["metadata"]["requestId"], rid3, failed)
        self.assertRegex(failed["data"].get("paymentId") or "", PAY_ID_RE)
        self.assertEqual(failed["data"], {
            "orderId": d["id"], "userId": user["id"], "reason": "insufficient_funds",
            "paymentId": failed["data"]["paymentId"], "amount": 3998, "currency": "USD"},
            failed)
        self.assertRegex(failed["metadata"]["eventId"], EVT_ID_RE)
        # And the saga's order_failed (the order's reason).
        ch, raw = self.wait_event("order_failed", d["id"])
        self.assert_envelope(raw, "order_failed", {
            "orderId": d["id"], "userId": user["id"], "reason": "insufficient_funds"}, rid3)

    def test_request_id_in_every_log(self):
        user = self.create_user()
        rid = unique("suite-logs")
        o = self.expect(self.post_order(user["id"], request_id=rid), 201)
        self.wait_notification_types(user["id"], CONFIRMED_TYPES)
        has_rid = lambda line: line.get("requestId") == rid  # noqa: E731
        for d in (self.gw, self.order_svc, self.payment_svc, self.notification_svc,
                  self.user_svc, self.inventory_svc):
            with self.subTest(daemon=d.name):
                d.wait_for_log(has_rid, message="a %s log line with requestId %s"
                               % (d.name, rid))
        self.order_svc.wait_for_log(lambda l: has_rid(l) and l.get("pattern") == "create_order",
                                    message="the create_order line")
        self.payment_svc.wait_for_log(
            lambda l: has_rid(l) and l.get("pattern") == "process_payment",
            message="the process_payment line")
        # The saga's steps with the inventory carry the id too.
        for pattern in ("reserve_inventory", "commit_inventory"):
            self.inventory_svc.wait_for_log(
                lambda l: has_rid(l) and l.get("pattern") == pattern,
                message="the %s line" % pattern)
        # The line follows the COMMIT that made the row readable, so a GET can
        # see the row before the line reaches us: wait for the lines too.
        def stored_lines():
            return [l for l in self.notification_svc.json_lines()
                    if has_rid(l) and l.get("event") == "notification_stored"]
        wait_until(lambda: len(stored_lines()) >= len(CONFIRMED_TYPES),
                   message="%d notification_stored lines" % len(CONFIRMED_TYPES))
        stored = stored_lines()
        self.assertEqual(len(stored), len(CONFIRMED_TYPES), stored)
        self.assertTrue(all(l.get("orderId", o["id"]) == o["id"] for l in stored), stored)
        # A generated id travels the same way.
        r = self.req("GET", "/orders/%s" % o["id"])
        gen = r.header("X-Request-Id")
        self.assertTrue(gen and gen != rid, r)
        self.order_svc.wait_for_log(lambda l: l.get("requestId") == gen,
                                    message="an order log line with the generated id")


class RedisRestartTest(SuiteCase):

    def test_publishers_reconnect_and_events_still_arrive(self):
        user = self.create_user()
        o1 = self.create_order(user["id"])
        self.wait_notification_types(user["id"], ["order_confirmation", "payment_receipt"])
        for svc in (self.order_svc, self.payment_svc):
            self.wait_publisher_connected(svc)

        port = self.redis.port
        self.sub.close()
        self.redis.stop()
        wait_until(lambda: self.health(self.notification_svc)["redis"]["connected"] is False,
                   message="notification health redis.connected false")
        # Requests still work while Redis is away (publishing never blocks).
        o2 = self.create_order(user["id"])
        self.assertEqual(o2["status"], "confirmed", o2)
        page = self.notifications(user["id"])
        self.assertGreaterEqual(page["total"], 2, page)

        self.redis.start(port=port)
        self.assertEqual(self.redis.port, port)
        self.wait_subscribed(RESTART_TIMEOUT_S)
        for svc in (self.order_svc, self.payment_svc):
            self.wait_publisher_connected(svc)
        sub = self.redis.subscriber(self, *EVENTS)

        # Later events reach both a plain subscriber and the notification daemon.
        self.expect(self.req("PATCH", "/orders/%s" % o1["id"], {"status": "shipped"}), 200)
        o3 = self.create_order(user["id"])
        sub.wait_for(lambda ch, p: ch == "payment_completed"
                     and json.loads(p)["data"]["orderId"] == o3["id"],
                     timeout=RESTART_TIMEOUT_S, message="payment_completed after the restart")

        def o3_and_ship_notified():
            ns = self.notifications(user["id"])["notifications"]
            mine = {(n["orderId"], n["type"]) for n in ns}
            return ns if {(o3["id"], "order_confirmation"), (o3["id"], "payment_receipt"),
                          (o1["id"], "order_status")} <= mine else None
        wait_until(o3_and_ship_notified, RESTART_TIMEOUT_S, interval=0.05,
                   message="notifications of events published after the Redis restart")
        for d in self.daemons:
            d.assert_alive(self)


class ReadinessAndOutagesTest(SuiteCase):

    def ready(self):
        return self.req("GET", "/ready")

    def test_ready_then_payment_down(self):
        r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(self.ready()),
                       message="/ready 200 with every upstream up")
        self.assertEqual(r.json.get("status"), "ok", r)
        for name in ("user", "order", "payment", "notification", "inventory"):
            self.assertEqual(r.json["info"].get(name), {"status": "up"}, r)
        self.assertEqual(r.json.get("error"), {}, r)

        user = self.create_user()
        self.payment_svc.stop()

        def payment_down():
            x = self.ready()
            return x if x.status == 503 else None
        r = wait_until(payment_down, message="/ready 503 with the payment service stopped")
        self.assertEqual(r.json.get("status"), "error", r)
        self.assertEqual(set(r.json.get("error", {})), {"payment"}, r)
        self.assertEqual(r.json["error"]["payment"].get("status"), "down", r)
        self.assertEqual(set(r.json.get("info", {})),
                         {"user", "order", "notification", "inventory"}, r)

        err = self.expect_error(self.post_order(user["id"]), 503,
                                "PAYMENT_SERVICE_UNAVAILABLE")
        # The order exists, cancelled, and the error names it.
        page = self.expect(self.req("GET", "/users/%s/orders" % user["id"]), 200)
        self.assertEqual(page["total"], 1, page)
        o = page["orders"][0]
        self.assertEqual((o["status"], o["cancelReason"]), ("cancelled", "payment_unavailable"))
        self.assertIn(o["id"], err["message"])
        # GET /payments/:id straight to the stopped service: the gateway's 503.
        err = self.expect_error(self.req("GET", "/payments/pay_" + "0" * 32), 503)
        self.assertIn("payment", err["message"])
        self.assertEqual(self.expect(self.req("GET", "/health"), 200).get("status"), "ok")
        self.gw.assert_alive(self)
        self.order_svc.assert_alive(self)

    def test_user_service_down_is_503(self):
        user = self.create_user()
        self.user_svc.stop()
        err = self.expect_error(self.post_order(user["id"]), 503, "USER_SERVICE_UNAVAILABLE")
        self.assertIn("unavailable", err["message"])
        page = self.expect(self.req("GET", "/users/%s/orders" % user["id"]), 200)
        self.assertEqual(page["total"], 0, page)
        self.expect_error(self.req("GET", "/users/%s" % user["id"]), 503)
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(self.ready()),
                       message="/ready 503 with the user service stopped")
        self.assertEqual(set(r.json.get("error", {})), {"user"}, r)


if __name__ == "__main__":
    unittest.main()
