"""Start-up order and restarts: the first call after an upstream starts
listening succeeds, whichever came up first. The gateway started before the
user service; the user service restarted under the gateway; the user and the
payment service restarted under the order service; and a dead upstream still
answers 503 fast (no waiting out the RPC deadline).

Each case first waits for the caller's own "upstream_connect_failed" log line,
so the caller is known to have tried and failed before the upstream listens:
the state in which the first call used to get a 503. Daemons run on
ephemeral ports; a port an upstream must come back on is reserved by binding
and closing a socket (as test_gateway.py does)."""

import itertools
import os
import socket
import time
import unittest

from harness import DaemonTestCase, FrameConn, http_request, reply_response
from redis_helper import start_redis

ORDER_SERVICE = "services/order/order-service"
PAYMENT_SERVICE = "services/payment/payment-service"
RPC_TIMEOUT_MS = 5000
# A 503 from a dead upstream is "fast" well under the RPC deadline.
FAST_S = 1.0

_seq = itertools.count(1)


def unique_email():
    return "start%d.%d@example.com" % (os.getpid(), next(_seq))


def free_port():
    """A port nobody listens on: bind, note it, close."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def upstream_log(event, name):
    """Matches the caller's `event` line about its upstream `name`
    (msg "<name> <host>:<port>: <why>")."""
    return lambda o: o.get("event") == event and str(o.get("msg", "")).startswith(name + " ")


class GatewayStartupOrderTest(DaemonTestCase):

    def req(self, gw, method, path, body=None):
        return http_request(gw.port, method, path, body=body)

    def test_gateway_started_before_user_service(self):
        port = free_port()
        gw = self.start_gateway(port, RPC_TIMEOUT_MS=RPC_TIMEOUT_MS)
        gw.wait_for_log(upstream_log("upstream_connect_failed", "user"),
                        message="the gateway's first connect to the user service failing")
        self.start_user_service(port=port)  # returns once the port accepts connections
        r = self.req(gw, "POST", "/users", {"email": unique_email(), "name": "First"})
        self.assertEqual(r.status, 201, r)
        r = self.req(gw, "GET", "/users/%s" % r.json["id"])
        self.assertEqual(r.status, 200, r)

    def test_user_service_restarted_under_gateway(self):
        user = self.start_user_service()
        port, data_dir = user.port, user.data_dir
        gw = self.start_gateway(port, RPC_TIMEOUT_MS=RPC_TIMEOUT_MS)
        r = self.req(gw, "POST", "/users", {"email": unique_email(), "name": "Before"})
        self.assertEqual(r.status, 201, r)
        created = r.json
        user.stop()
        gw.wait_for_log(upstream_log("upstream_connect_failed", "user"),
                        message="the gateway's reconnect to the stopped user service failing")
        self.start_user_service(data_dir=data_dir, port=port)
        r = self.req(gw, "GET", "/users/%s" % created["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], created["id"], r)

    def test_dead_upstream_answers_503_fast(self):
        gw = self.start_gateway(free_port(), RPC_TIMEOUT_MS=RPC_TIMEOUT_MS)
        for i in range(5):
            t0 = time.monotonic()
            r = self.req(gw, "GET", "/users?page=1&limit=10")
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json.get("statusCode"), 503, r)
            self.assertLess(elapsed, FAST_S, "request %d took %.2fs with RPC_TIMEOUT_MS=%d"
                            % (i, elapsed, RPC_TIMEOUT_MS))
        gw.assert_alive(self)


class OrderUpstreamRestartTest(DaemonTestCase):
    """redis-server, the user, inventory, payment and order services; an
    upstream of the order service restarts on its port with its data."""

    def setUp(self):
        super().setUp()
        self.redis = start_redis(self)
        self.user = self.start_user_service()
        self.inventory = self.start_inventory_service()
        # The saga reserves (and prices) the items with the inventory service.
        c = FrameConn(self.inventory.port)
        try:
            reply_response(c.call("create_product", {"id": "prod-1", "name": "Keyboard",
                                                     "price": 1999, "stock": 1000}))
        finally:
            c.close()
        self.payment = self.start_payment()
        self.order = self.start_daemon("order-service", ORDER_SERVICE, {
            "LISTEN_HOST": "127.0.0.1", "ORDER_SERVICE_PORT": "0",
            "DATA_DIR": self.make_data_dir(),
            "USER_SERVICE_HOST": "127.0.0.1", "USER_SERVICE_PORT": str(self.user.port),
            "PAYMENT_SERVICE_HOST": "127.0.0.1",
            "PAYMENT_SERVICE_PORT": str(self.payment.port),
            "INVENTORY_SERVICE_HOST": "127.0.0.1",
            "INVENTORY_SERVICE_PORT": str(self.inventory.port),
            "RPC_TIMEOUT_MS": str(RPC_TIMEOUT_MS),
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis.port)}, ("rpc",))
        self.conn = FrameConn(self.order.port)
        self.addCleanup(self.conn.close)

    def start_payment(self, port=0, data_dir=None):
        d = self.start_daemon("payment-service", PAYMENT_SERVICE, {
            "LISTEN_HOST": "127.0.0.1", "PAYMENT_SERVICE_PORT": str(port),
            "DATA_DIR": data_dir or self.make_data_dir(),
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis.port)}, ("rpc",))
        d.data_dir = d.env["DATA_DIR"]
        return d

    def create_user(self):
        c = FrameConn(self.user.port)
        try:
            r = c.call("create_user", {"email": unique_email(), "name": "Grace Hopper"})
        finally:
            c.close()
        return reply_response(r)["id"]

    def assert_order_confirmed(self, user_id):
        r = self.conn.call("create_order", {
            "userId": user_id, "paymentMethod": "tok_visa",
            "items": [{"productId": "prod-1", "quantity": 2, "price": 1999}]})
        o = reply_response(r)
        self.assertEqual(o["status"], "confirmed", o)

    def test_user_service_restarted(self):
        user_id = self.create_user()
        self.assert_order_confirmed(user_id)
        port, data_dir = self.user.port, self.user.data_dir
        self.user.stop()
        self.order.wait_for_log(upstream_log("upstream_connect_failed", "user"),
                                message="the order service's reconnect to the user service "
                                        "failing")
        self.user = self.start_user_service(data_dir=data_dir, port=port)
        self.assert_order_confirmed(user_id)

    def test_payment_service_restarted(self):
        user_id = self.create_user()
        self.assert_order_confirmed(user_id)
        port, data_dir = self.payment.port, self.payment.data_dir
        self.payment.stop()
        self.order.wait_for_log(upstream_log("upstream_connect_failed", "payment"),
                                message="the order service's reconnect to the payment "
                                        "service failing")
        self.payment = self.start_payment(port, data_dir)
        self.assert_order_confirmed(user_id)

    def test_inventory_service_restarted(self):
        user_id = self.create_user()
        self.assert_order_confirmed(user_id)
        port, data_dir = self.inventory.port, self.inventory.data_dir
        self.inventory.stop()
        self.order.wait_for_log(upstream_log("upstream_connect_failed", "inventory"),
                                message="the order service's reconnect to the inventory "
                                        "service failing")
        self.inventory = self.start_inventory_service(data_dir=data_dir, port=port)
        self.assert_order_confirmed(user_id)


if __name__ == "__main__":
    unittest.main()
