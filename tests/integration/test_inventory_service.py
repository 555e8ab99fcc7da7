"""The inventory service over raw NestJS TCP frames: products (create, get,
list, restock), reservations (reserve all-or-nothing, idempotent retry,
release, commit), the TTL sweeper releasing an abandoned reservation, the
settings refused at start, and durability of a reservation across a kill -9
right after its reply. Every test starts its own daemon on an ephemeral port
with its own DATA_DIR; cleanup stops it with SIGTERM and fails on a non-zero
exit or a sanitizer report."""

import subprocess
import unittest

from harness import (INVENTORY_SERVICE, DaemonTestCase, FrameConn, binary, reply_error,
                     reply_response, wait_until)


class InventoryCase(DaemonTestCase):
    extra_env = {}

    def setUp(self):
        super().setUp()
        self.svc = self.start_inventory_service(**self.extra_env)

    def connect(self, svc=None):
        c = FrameConn((svc or self.svc).port)
        self.addCleanup(c.close)
        return c

    def product(self, c, pid):
        return reply_response(c.call("get_product", {"id": pid}))


class ProductTest(InventoryCase):

    def test_health(self):
        h = reply_response(self.connect().call("health", {}))
        self.assertEqual(h, {"status": "ok", "service": "inventory", "db": "ok"})

    def test_create_get_list_restock(self):
        c = self.connect()
        p = reply_response(c.call("create_product",
                                  {"id": "p1", "name": "Keyboard", "price": 1999, "stock": 10}))
        self.assertEqual((p["id"], p["name"], p["price"], p["currency"]),
                         ("p1", "Keyboard", 1999, "USD"), p)
        self.assertEqual((p["stock"], p["reserved"], p["available"]), (10, 0, 10), p)
        got = self.product(c, "p1")
        self.assertEqual(got, p)
        gen = reply_response(c.call("create_product", {"name": "Mouse", "price": 500}))
        self.assertTrue(gen["id"].startswith("prod_"), gen)
        self.assertEqual(gen["stock"], 0, gen)

        err = reply_error(c.call("create_product", {"id": "p1", "name": "Again", "price": 1}))
        self.assertEqual((err["statusCode"], err["code"]), (409, "PRODUCT_EXISTS"), err)
        err = reply_error(c.call("get_product", {"id": "nope"}))
        self.assertEqual((err["statusCode"], err["code"]), (404, "PRODUCT_NOT_FOUND"), err)
        err = reply_error(c.call("create_product", {"name": "X", "price": -1, "colour": 1}))
        self.assertEqual(err["statusCode"], 400, err)
        self.assertEqual({d["field"] for d in err["details"]}, {"price", "colour"}, err)

        page = reply_response(c.call("get_products", {"page": 1, "limit": 1}))
        self.assertEqual((page["total"], page["page"], page["limit"]), (2, 1, 1), page)
        self.assertEqual([x["id"] for x in page["products"]], ["p1"], page)
        page = reply_response(c.call("get_products", None))
        self.assertEqual(len(page["products"]), 2, page)

        r = reply_response(c.call("restock", {"id": "p1", "quantity": 5}))
        self.assertEqual((r["stock"], r["available"]), (15, 15), r)
        err = reply_error(c.call("restock", {"id": "nope", "quantity": 5}))
        self.assertEqual(err["code"], "PRODUCT_NOT_FOUND", err)


class ReservationTest(InventoryCase):

    def setUp(self):
        super().setUp()
        c = self.connect()
        for pid, stock in (("p1", 10), ("p2", 3)):
            reply_response(c.call("create_product",
                                  {"id": pid, "name": pid, "price": 1999, "stock": stock}))

    def test_reserve_commit_is_the_walkthrough(self):
        c = self.connect()
        items = [{"productId": "p1", "quantity": 2, "price": 1}]  # a NestJS item's price
        r = reply_response(c.call("reserve_inventory", {"orderId": "o1", "items": items}))
        self.assertEqual(r["state"], "reserved", r)
        self.assertEqual(r["items"], [{"productId": "p1", "quantity": 2, "price": 1999,
                                       "currency": "USD"}], r)
        p = self.product(c, "p1")
        self.assertEqual((p["stock"], p["reserved"], p["available"]), (10, 2, 8), p)

        again = reply_response(c.call("reserve_inventory", {"orderId": "o1", "items": items}))
        self.assertEqual(again, r)  # the first result, nothing held twice
        self.assertEqual(self.product(c, "p1")["reserved"], 2)

        done = reply_response(c.call("commit_inventory", {"orderId": "o1"}))
        self.assertEqual(done["state"], "committed", done)
        p = self.product(c, "p1")
        self.assertEqual((p["stock"], p["reserved"]), (8, 0), p)
        reply_response(c.call("commit_inventory", {"orderId": "o1"}))  # idempotent
        self.assertEqual(self.product(c, "p1")["stock"], 8)
        err = reply_error(c.call("release_inventory", {"orderId": "o1"}))
        self.assertEqual((err["statusCode"], err["code"]), (409, "RESERVATION_COMMITTED"), err)

    def test_all_or_nothing_and_errors(self):
        c = self.connect()
        err = reply_error(c.call("reserve_inventory", {"orderId": "o2", "items": [
            {"productId": "p1", "quantity": 2}, {"productId": "p2", "quantity": 99}]}))
        self.assertEqual((err["statusCode"], err["code"]), (409, "OUT_OF_STOCK"), err)
        self.assertIn("p2", err["message"])
        self.assertEqual([(d["productId"], d["requested"], d["available"])
                          for d in err["details"]], [("p2", 99, 3)], err)
        self.assertEqual(self.product(c, "p1")["reserved"], 0)  # p1 not held either

        err = reply_error(c.call("reserve_inventory", {"orderId": "o2", "items": [
            {"productId": "p1", "quantity": 1}, {"productId": "ghost", "quantity": 1}]}))
        self.assertEqual((err["statusCode"], err["code"]), (404, "PRODUCT_NOT_FOUND"), err)
        self.assertEqual([d["productId"] for d in err["details"]], ["ghost"], err)

        reply_response(c.call("reserve_inventory", {"orderId": "o2", "items": [
            {"productId": "p1", "quantity": 1}]}))
        err = reply_error(c.call("reserve_inventory", {"orderId": "o2", "items": [
            {"productId": "p1", "quantity": 2}]}))
        self.assertEqual((err["statusCode"], err["code"]), (409, "RESERVATION_MISMATCH"), err)

        err = reply_error(c.call("reserve_inventory", {"orderId": "o3", "items": [
            {"productId": "p1", "quantity": 0}]}))
        self.assertEqual(err["statusCode"], 400, err)
        self.assertEqual(err["details"][0]["field"], "items[0].quantity", err)
        err = reply_error(c.call("commit_inventory", {"orderId": "never"}))
        self.assertEqual((err["statusCode"], err["code"]), (404, "RESERVATION_NOT_FOUND"), err)

    def test_release_is_idempotent_and_final(self):
        c = self.connect()
        reply_response(c.call("reserve_inventory", {"orderId": "o4", "items": [
            {"productId": "p2", "quantity": 3}]}))
        self.assertEqual(self.product(c, "p2")["available"], 0)
        for _ in range(2):
            r = reply_response(c.call("release_inventory", {"orderId": "o4"}))
            self.assertEqual(r["state"], "released", r)
        self.assertEqual(self.product(c, "p2")["available"], 3)
        err = reply_error(c.call("reserve_inventory", {"orderId": "o4", "items": [
            {"productId": "p2", "quantity": 3}]}))
        self.assertEqual(err["code"], "RESERVATION_RELEASED", err)
        err = reply_error(c.call("commit_inventory", {"orderId": "o4"}))
        self.assertEqual(err["code"], "RESERVATION_RELEASED", err)

        # A release that overtakes its reserve: success, and the late reserve holds nothing.
        r = reply_response(c.call("release_inventory", {"orderId": "o5"}))
        self.assertEqual(r, {"orderId": "o5", "state": "released", "items": []})
        err = reply_error(c.call("reserve_inventory", {"orderId": "o5", "items": [
            {"productId": "p2", "quantity": 1}]}))
        self.assertEqual(err["code"], "RESERVATION_RELEASED", err)
        self.assertEqual(self.product(c, "p2")["reserved"], 0)


class SweeperTest(InventoryCase):
    extra_env = {"INVENTORY_RESERVATION_TTL_S": 1, "INVENTORY_SWEEP_INTERVAL_MS": 50}

    def test_abandoned_reservation_is_released(self):
        c = self.connect()
        reply_response(c.call("create_product", {"id": "p1", "name": "K", "price": 1,
                                                 "stock": 5}))
        reply_response(c.call("reserve_inventory", {"orderId": "lost", "items": [
            {"productId": "p1", "quantity": 5}]}))
        self.assertEqual(self.product(c, "p1")["reserved"], 5)
        wait_until(lambda: self.product(c, "p1")["reserved"] == 0, timeout=10,
                   message="the sweeper to release the expired reservation")
        self.svc.wait_for_log(lambda o: o.get("event") == "reservations_expired",
                              message="reservations_expired line")
        err = reply_error(c.call("commit_inventory", {"orderId": "lost"}))
        self.assertEqual(err["code"], "RESERVATION_RELEASED", err)


class SettingsTest(DaemonTestCase):

    def test_bad_ttl_is_refused_at_start(self):
        for bad in ("0", "2592001", "ten"):
            p = subprocess.run([binary(INVENTORY_SERVICE)], capture_output=True, timeout=20,
                               env={"INVENTORY_RESERVATION_TTL_S": bad,
                                    "INVENTORY_SERVICE_PORT": "0",
                                    "DATA_DIR": self.make_data_dir(),
                                    "ASAN_OPTIONS": "detect_leaks=1"})
            self.assertEqual(p.returncode, 1, (bad, p.stdout, p.stderr))
            self.assertIn(b"INVENTORY_RESERVATION_TTL_S", p.stdout)

    def test_help_lists_the_settings(self):
        p = subprocess.run([binary(INVENTORY_SERVICE), "--help"], capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 0, p)
        for name in (b"INVENTORY_SERVICE_PORT", b"INVENTORY_RESERVATION_TTL_S",
                     b"INVENTORY_SWEEP_INTERVAL_MS", b"DATA_DIR"):
            self.assertIn(name, p.stdout)


class DurabilityTest(DaemonTestCase):

    def test_reservation_survives_kill_9(self):
        data_dir = self.make_data_dir()
        svc = self.start_inventory_service(data_dir=data_dir)
        with FrameConn(svc.port) as c:
            reply_response(c.call("create_product", {"id": "p1", "name": "K", "price": 7,
                                                     "stock": 4}))
            first = reply_response(c.call("reserve_inventory", {"orderId": "o1", "items": [
                {"productId": "p1", "quantity": 3}]}))
        svc.kill()  # the reply was sent: the reservation must be on disk
        svc2 = self.start_inventory_service(data_dir=data_dir)
        with FrameConn(svc2.port) as c:
            p = reply_response(c.call("get_product", {"id": "p1"}))
            self.assertEqual((p["stock"], p["reserved"]), (4, 3), p)
            again = reply_response(c.call("reserve_inventory", {"orderId": "o1", "items": [
                {"productId": "p1", "quantity": 3}]}))
            self.assertEqual(again, first)
            reply_response(c.call("commit_inventory", {"orderId": "o1"}))
            p = reply_response(c.call("get_product", {"id": "p1"}))
            self.assertEqual((p["stock"], p["reserved"]), (1, 0), p)


if __name__ == "__main__":
    unittest.main()
