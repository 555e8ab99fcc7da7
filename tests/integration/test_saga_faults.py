"""The create-order saga under faults, every daemon real (redis-server, the
user, payment, notification, inventory and order services, each on an
ephemeral port with its own DATA_DIR, a RESP subscriber on every event
channel since before the first daemon):

1. ORDER_SAGA_CRASH_AT at each boundary (after_pending, after_reserve,
   after_payment, after_commit with tok_visa; during_compensation with
   tok_chargeDeclined; after_payment declined and after_pending out of
   stock too): create_order makes the order service _exit(86); it
   is started again without the variable on the same port and DATA_DIR, the
   saga resumes, a second order goes through the restarted service, and
   saga_check.py's invariants hold for both.
2. kill -9 of the inventory service, and separately of the payment service,
   while ~100 sagas run at once (tok_visa, tok_chargeDeclined and
   out-of-stock quantities mixed), restarted on the same port and DATA_DIR;
   every order made ends final and the invariants hold. Variants keep the
   victim down until every caller's deadline (timeoutMs 2000) has passed, so
   sagas caught mid-step compensate against a dead upstream first.
3. kill -9 of the order service itself mid-burst, restarted on the same
   port and DATA_DIR: the sagas resume and the invariants hold.
4. The checker itself fails on a refund behind a confirmed order's back and
   on units held for no order.

No sleeps: every wait polls a condition inside a deadline (harness.py).
"""

import itertools
import json
import os
import subprocess
import threading
import time
import unittest

from harness import (DaemonTestCase, FrameConn, IO_TIMEOUT_S, STOP_TIMEOUT_S, _live,
                     reply_response, wait_until)
from redis_helper import start_redis
from saga_check import EVENTS, SagaChecker

ORDER_SERVICE = "services/order/order-service"
PAYMENT_SERVICE = "services/payment/payment-service"
NOTIFICATION_SERVICE = "services/notification/notification-service"
CRASH_EXIT_CODE = 86
RETRY_MAX_MS = 500             # quick retries once a killed upstream is back
CALLER_BUDGET_MS = "30000"     # crash tests: the restart must not outlast the caller
SHORT_BUDGET_MS = 2000        # callers' deadline while an upstream stays down
REPLY_TIMEOUT_S = 60.0         # every create_order of a burst answered
SUBSCRIBE_TIMEOUT_S = 15.0
N_CONCURRENT = 200
N_CONNECTIONS = 4
KILL_AFTER = 10                # the victim's answers before the kill -9: early in the burst

PLENTY, SCARCE = "p_plenty", "p_scarce"
INITIAL_STOCK = {PLENTY: 1000000, SCARCE: 30}
PRICES = {PLENTY: 1999, SCARCE: 500}

_seq = itertools.count(1)


def unique(prefix):
    return "%s%d.%d" % (prefix, os.getpid(), next(_seq))


class SagaFaultCase(DaemonTestCase):
    """redis-server and a subscriber, then user, payment, notification,
    inventory (with the products) and order; the checker over them."""

    order_extra = {}

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        self.sub = self.redis.subscriber(self, *EVENTS)
        self.user_svc = self.start_user_service()
        self.payment_svc = self.start_service("payment-service", PAYMENT_SERVICE,
                                              "PAYMENT_SERVICE_PORT")
        self.notification_svc = self.start_service("notification-service",
                                                   NOTIFICATION_SERVICE,
                                                   "NOTIFICATION_SERVICE_PORT")
        self.inventory_svc = self.start_inventory_service()
        with FrameConn(self.inventory_svc.port) as c:
            for pid, stock in INITIAL_STOCK.items():
                reply_response(c.call("create_product", {"id": pid, "name": pid,
                                                         "price": PRICES[pid],
                                                         "stock": stock}))
        self.order_dir = self.make_data_dir()
        self.order_svc = self.start_order(port=0)
        self.wait_subscribed()
        self.checker = SagaChecker(self.order_svc.port, self.payment_svc.port,
                                   self.inventory_svc.port, self.notification_svc.port,
                                   self.sub)
        self.addCleanup(self.checker.close)

    # -- daemons --
    def start_service(self, name, rel, port_var, port=0, data_dir=None, **extra):
        env = {"LISTEN_HOST": "127.0.0.1", port_var: str(port),
               "DATA_DIR": data_dir or self.make_data_dir(),
               "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis.port)}
        env.update({k: str(v) for k, v in extra.items()})
        d = self.start_daemon(name, rel, env, ("rpc",))
        d.data_dir = env["DATA_DIR"]
        return d

    def start_order(self, port, **extra):
        env = {"USER_SERVICE_HOST": "127.0.0.1", "USER_SERVICE_PORT": self.user_svc.port,
               "PAYMENT_SERVICE_HOST": "127.0.0.1",
               "PAYMENT_SERVICE_PORT": self.payment_svc.port,
               "INVENTORY_SERVICE_HOST": "127.0.0.1",
               "INVENTORY_SERVICE_PORT": self.inventory_svc.port,
               "ORDER_SAGA_RETRY_MAX_MS": RETRY_MAX_MS}
        env.update(self.order_extra)
        env.update(extra)
        return self.start_service("order-service", ORDER_SERVICE, "ORDER_SERVICE_PORT",
                                  port=port, data_dir=self.order_dir, **env)

    def wait_exit(self, d, code, timeout=STOP_TIMEOUT_S):
        """The daemon exits by itself with this status (a sanitizer report
        fails too); afterwards its stop() at cleanup has nothing to do."""
        try:
            d.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("%s did not exit within %.0fs\n%s" % (d.name, timeout, d.describe()))
        d.returncode = d.proc.returncode
        _live.discard(d)
        d._join_readers()
        self.assertIsNone(d.sanitizer_report(), d.describe())
        self.assertEqual(d.returncode, code, d.describe())

    def wait_subscribed(self):
        def subscribed():
            self.notification_svc.assert_alive(self)
            with FrameConn(self.notification_svc.port) as c:
                h = reply_response(c.call("health", {}))
            return (h.get("redis") or {}).get("subscribed") is True
        wait_until(subscribed, SUBSCRIBE_TIMEOUT_S, message="notification redis.subscribed")

    def answered(self, d, pattern):
        """How many `pattern` requests (None: any but health) d has answered
        (its request lines).
        Cheap on purpose (a substring test before parsing): it is polled
        while the burst runs, and a slow poll lets the burst finish first."""
        key = '"%s"' % pattern if pattern else '"request"'
        with d.cond:
            texts = [text for tag, text in d.lines
                     if tag == "stdout" and key in text and '"request"' in text]
        n = 0
        for text in texts:
            try:
                o = json.loads(text)
            except ValueError:
                continue
            if o.get("event") != "request" or o.get("pattern") == "health":
                continue
            n += pattern is None or o.get("pattern") == pattern
        return n

    # -- orders --
    def create_user(self):
        with FrameConn(self.user_svc.port) as c:
            return reply_response(c.call("create_user", {
                "email": unique("saga") + "@example.com", "name": "Ada"}))["id"]

    @staticmethod
    def order_data(user, method, items):
        return {"userId": user, "paymentMethod": method, "items": items}

    def burst(self, specs, metadata=None):
        """Send every create_order of specs [(user, method, items)] at once,
        pipelined over N_CONNECTIONS connections; return the replies (a
        reader thread per connection collects them, with a deadline)."""
        conns = [FrameConn(self.order_svc.port) for _ in range(N_CONNECTIONS)]
        for c in conns:
            self.addCleanup(c.close)
        sent = [[] for _ in conns]
        for i, (user, method, items) in enumerate(specs):
            c = conns[i % len(conns)]
            rid = c.new_id()
            sent[i % len(conns)].append(rid)
            packet = {"pattern": {"cmd": "create_order"},
                      "data": self.order_data(user, method, items), "id": rid}
            if metadata:
                packet["metadata"] = metadata
            c.send(packet)
        replies, errors = [], []

        def collect(c, ids):
            try:
                for rid in ids:
                    replies.append(c.read_reply(rid, timeout=REPLY_TIMEOUT_S))
            except AssertionError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=collect, args=(c, ids), daemon=True)
                   for c, ids in zip(conns, sent)]
        for t in threads:
            t.start()
        return threads, replies, errors

    def mixed_specs(self, users):
        """N_CONCURRENT orders: visa and declined cards, plenty and scarce
        stock, and quantities no stock can give."""
        specs = []
        for i in range(N_CONCURRENT):
            user = users[i % len(users)]
            method = "tok_chargeDeclined" if i % 4 == 3 else "tok_visa"
            if i % 5 == 4:
                items = [{"productId": SCARCE, "quantity": 10000}]        # always short
            elif i % 3 == 0:
                items = [{"productId": SCARCE, "quantity": 2},
                         {"productId": PLENTY, "quantity": 1}]             # scarce runs out
            else:
                items = [{"productId": PLENTY, "quantity": 1 + i % 3}]
            specs.append((user, method, items))
        return specs


class CrashAtTest(SagaFaultCase):
    """The order service dies at each boundary and resumes at restart."""

    def crash_and_resume(self, point, method, want_status, want_reason=None, items=None):
        port = self.order_svc.port
        self.order_svc.stop()
        crashing = self.start_order(port=port, ORDER_SAGA_CRASH_AT=point)
        user = self.create_user()
        first_items = items
        items = [{"productId": PLENTY, "quantity": 2}, {"productId": SCARCE, "quantity": 1}]
        with FrameConn(crashing.port) as c:
            c.send({"pattern": {"cmd": "create_order"},
                    "data": self.order_data(user, method, first_items or items),
                    "id": c.new_id(),
                    "metadata": {"timeoutMs": CALLER_BUDGET_MS}})
            # No reply: the service exits before it answers.
            c.wait_closed(timeout=STOP_TIMEOUT_S)
        self.wait_exit(crashing, CRASH_EXIT_CODE)
        self.order_svc = self.start_order(port=port)
        self.assertEqual(self.order_svc.port, port)

        orders = self.checker.orders_of_users([user])
        self.assertEqual(len(orders), 1, "one order made before the crash: %r" % orders)
        first = orders[0]["id"]
        # A second order through the restarted service.
        with FrameConn(port) as c:
            second = reply_response(c.call(
                "create_order", self.order_data(user, "tok_visa", items),
                metadata={"timeoutMs": CALLER_BUDGET_MS}, timeout=REPLY_TIMEOUT_S))
        self.assertEqual(second["status"], "confirmed", second)
        ids = [o["id"] for o in self.checker.orders_of_users([user])]
        self.assertEqual(sorted(ids), sorted([first, second["id"]]))
        final = self.checker.assert_invariants(self, ids, INITIAL_STOCK, context=point)
        o = final[first]
        self.assertEqual((o["status"], o["cancelReason"]), (want_status, want_reason),
                         "crash at %s: %s\nsaga %s" % (point, json.dumps(o),
                                                       json.dumps(self.checker.saga(first))))

    def test_after_pending(self):
        self.crash_and_resume("after_pending", "tok_visa", "confirmed")

    def test_after_reserve(self):
        self.crash_and_resume("after_reserve", "tok_visa", "confirmed")

    def test_after_payment(self):
        self.crash_and_resume("after_payment", "tok_visa", "confirmed")

    def test_after_commit(self):
        self.crash_and_resume("after_commit", "tok_visa", "confirmed")

    def test_during_compensation(self):
        self.crash_and_resume("during_compensation", "tok_chargeDeclined", "cancelled",
                              "card_declined")

    def test_after_payment_declined(self):
        # The decline was answered, not written: the re-sent charge replays it.
        self.crash_and_resume("after_payment", "tok_chargeDeclined", "cancelled",
                              "card_declined")

    def test_after_pending_out_of_stock(self):
        self.crash_and_resume("after_pending", "tok_visa", "cancelled", "out_of_stock",
                              items=[{"productId": SCARCE, "quantity": 10000}])


class KillOrderTest(SagaFaultCase):
    """kill -9 of the order service itself in the middle of a burst: the
    sagas it held are resumed from its DATA_DIR by the next start."""

    def test_kill_9_order_mid_burst(self):
        users = [self.create_user() for _ in range(10)]
        specs = self.mixed_specs(users)
        threads, replies, errors = self.burst(specs)
        wait_until(lambda: self.answered(self.payment_svc, "process_payment") >= KILL_AFTER
                   or all(not t.is_alive() for t in threads),
                   REPLY_TIMEOUT_S, message="%d charges answered" % KILL_AFTER,
                   interval=0.001)
        port = self.order_svc.port
        self.order_svc.kill()
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.order_svc = self.start_order(port=port)
        orders = self.checker.orders_of_users(users)
        # A request not read before the kill made no order; none made two.
        self.assertLessEqual(len(orders), len(specs))
        self.assertLess(len(replies), len(specs), "the kill came after the burst")
        self.assertTrue(orders, "no order was made before the kill")
        resumed = [o for o in self.order_svc.json_lines() if o.get("event") == "saga_resumed"]
        self.assertTrue(resumed, "the restarted order service resumed no saga\n%s"
                        % self.order_svc.describe())
        self.checker.assert_invariants(
            self, [o["id"] for o in orders], INITIAL_STOCK,
            context="order-service killed with %d of %d replies sent, %d orders made"
            % (len(replies), len(specs), len(orders)))


class CheckerTest(SagaFaultCase):
    """saga_check.py itself can fail: a charge refunded behind a confirmed
    order's back and units held for no order are both reported."""

    def test_checker_reports_violations(self):
        user = self.create_user()
        with FrameConn(self.order_svc.port) as c:
            o = reply_response(c.call("create_order", self.order_data(
                user, "tok_visa", [{"productId": PLENTY, "quantity": 1}])))
        self.assertEqual(o["status"], "confirmed", o)
        self.assertEqual(self.checker.violations([o["id"]], INITIAL_STOCK), [])
        with FrameConn(self.payment_svc.port) as c:
            reply_response(c.call("refund_payment", {"orderId": o["id"]}))
        with FrameConn(self.inventory_svc.port) as c:
            reply_response(c.call("reserve_inventory", {
                "orderId": unique("stray"), "items": [{"productId": SCARCE, "quantity": 1}]}))
        bad = "\n".join(self.checker.violations([o["id"]], INITIAL_STOCK))
        self.assertIn("a confirmed order's payment must have succeeded", bad)
        self.assertIn("payment_refunded published", bad)
        self.assertIn("product %s: reserved 1, want 0" % SCARCE, bad)


class KillUpstreamTest(SagaFaultCase):
    """kill -9 of an upstream in the middle of a burst of sagas."""

    def kill_mid_burst(self, victim_attr, pattern, restart, budget_ms=None):
        """kill -9 the victim once it answered KILL_AFTER `pattern` calls,
        restart it, check. With budget_ms (the callers' timeoutMs) it stays
        down until every caller was answered (their deadlines passed), so
        sagas caught mid-step compensate against a dead upstream first."""
        users = [self.create_user() for _ in range(10)]
        specs = self.mixed_specs(users)
        victim = getattr(self, victim_attr)
        threads, replies, errors = self.burst(
            specs, {"timeoutMs": str(budget_ms)} if budget_ms else None)
        wait_until(lambda: self.answered(victim, pattern) >= KILL_AFTER
                   or all(not t.is_alive() for t in threads),
                   REPLY_TIMEOUT_S, message="%d %s answered" % (KILL_AFTER, pattern),
                   interval=0.001)
        answered_before = self.answered(victim, pattern)
        victim.kill()
        replied_before = len(replies)
        if budget_ms:
            deadline = time.monotonic() + REPLY_TIMEOUT_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
        setattr(self, victim_attr, restart(victim))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.assertEqual(errors, [], "create_order replies missing")
        self.assertEqual(len(replies), len(specs))
        self.assertLess(replied_before, len(specs),
                        "the kill came after the burst: nothing was in flight")

        orders = self.checker.orders_of_users(users)
        self.assertEqual(len(orders), len(specs),
                         "one order per create_order: %d made, %d sent"
                         % (len(orders), len(specs)))
        final = self.checker.assert_invariants(
            self, [o["id"] for o in orders], INITIAL_STOCK,
            context="%s killed after %d %s answers, %d create_order replies"
            % (victim.name, answered_before, pattern, replied_before))
        statuses = {}
        for o in final.values():
            key = (o["status"], o["cancelReason"])
            statuses[key] = statuses.get(key, 0) + 1
        # The kill came mid-burst: the restarted victim served sagas of it
        # (going on, or compensating).
        served_after = self.answered(getattr(self, victim_attr), None)
        self.assertGreater(served_after, 0, "the kill -9 of %s came after the burst: %r"
                           % (victim.name, statuses))
        if budget_ms:
            # Kept down past the deadlines: some sagas were undone against
            # the dead victim: those caught mid-step ran out of time, those
            # that came after the kill found it down at their first try.
            # Which of the two depends on what was in flight at the kill.
            undone = {"deadline_exceeded", "payment_unavailable", "inventory_unavailable"}
            self.assertTrue(any(s == "cancelled" and r in undone for s, r in statuses),
                            statuses)
            return
        # The mix really mixed: some confirmed, some declined, some short.
        # (Not with the victim kept down: most sagas then end before that.)
        self.assertIn(("cancelled", "card_declined"), statuses, statuses)
        self.assertIn(("cancelled", "out_of_stock"), statuses, statuses)
        self.assertTrue(any(s == "confirmed" for s, _ in statuses), statuses)

    def test_kill_9_inventory_mid_burst(self):
        def restart(old):
            return self.start_inventory_service(data_dir=old.data_dir, port=old.port)
        self.kill_mid_burst("inventory_svc", "reserve_inventory", restart)

    def test_kill_9_payment_mid_burst(self):
        def restart(old):
            return self.start_service("payment-service", PAYMENT_SERVICE,
                                      "PAYMENT_SERVICE_PORT", port=old.port,
                                      data_dir=old.data_dir)
        self.kill_mid_burst("payment_svc", "process_payment", restart)

    def restart_payment(self, old):
        return self.start_service("payment-service", PAYMENT_SERVICE, "PAYMENT_SERVICE_PORT",
                                  port=old.port, data_dir=old.data_dir)

    # Found a defect when written: refund_payment refused voidIfMissing (400),
    # the saga retried it for ever and orders stayed `compensating`. Fixed in
    # the payment service (refund_payment voids an order it has not charged).
    def test_kill_9_payment_down_past_the_deadline(self):
        # Charges in flight at the kill, and those sent after it, reach the
        # callers' deadline with the payment service down: those sagas
        # refund (void) and release, and must end cancelled once it is back.
        self.kill_mid_burst("payment_svc", "process_payment", self.restart_payment,
                            budget_ms=SHORT_BUDGET_MS)

    def test_kill_9_inventory_down_past_the_deadline(self):
        def restart(old):
            return self.start_inventory_service(data_dir=old.data_dir, port=old.port)
        self.kill_mid_burst("inventory_svc", "reserve_inventory", restart,
                            budget_ms=SHORT_BUDGET_MS)


if __name__ == "__main__":
    unittest.main()
