"""Products through the real gateway and inventory daemon: the README's
walkthrough (create, get, list, restock), the service's errors passed on
(400 with details, 404, 409), the gateway's own 400/405, /ready naming
inventory, 503 while the inventory daemon is down, and scripts/demo-products.sh
(what `make run` seeds: created, then 409 on a second run is fine, any other
answer fails). Daemons on ephemeral ports; cleanup fails on a non-zero exit
or a sanitizer report."""

import os
import subprocess
import unittest

from harness import DaemonTestCase, http_request, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO_PRODUCTS = os.path.join(ROOT, "scripts", "demo-products.sh")
SCRIPT_TIMEOUT_S = 60
DEMO = {"p1": ("Keyboard", 1999, 10), "p2": ("Mouse", 500, 25), "p3": ("Monitor", 19999, 5)}


class ProductsCase(DaemonTestCase):

    def setUp(self):
        super().setUp()
        self.inv = self.start_inventory_service()
        # The user service answers the other upstreams' `health` (harness).
        self.user = self.start_user_service()
        self.gw = self.start_gateway(self.user.port, INVENTORY_SERVICE_HOST="127.0.0.1",
                                     INVENTORY_SERVICE_PORT=self.inv.port)

    def req(self, method, path, body=None, headers=None):
        return http_request(self.gw.port, method, path, body=body, headers=headers)

    def expect(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertIsInstance(r.json, dict, r)
        return r.json

    def expect_error(self, r, status, code=None):
        body = self.expect(r, status)
        self.assertEqual(body.get("statusCode"), status, r)
        self.assertEqual(body.get("requestId"), r.header("X-Request-Id"), r)
        if code is not None:
            self.assertEqual(body.get("code"), code, r)
        return body

    def ready(self):
        return self.req("GET", "/ready")


class WalkthroughTest(ProductsCase):

    def test_readme_walkthrough(self):
        p = self.expect(self.req("POST", "/products",
                                 {"id": "p1", "name": "Keyboard", "price": 1999, "stock": 10}),
                        201)
        self.assertEqual((p["id"], p["name"], p["price"], p["currency"]),
                         ("p1", "Keyboard", 1999, "USD"), p)
        self.assertEqual((p["stock"], p["reserved"], p["available"]), (10, 0, 10), p)

        got = self.expect(self.req("GET", "/products/p1"), 200)
        self.assertEqual(got, p)

        self.expect(self.req("POST", "/products", {"id": "p2", "name": "Mouse", "price": 500,
                                                   "stock": 25}), 201)
        page = self.expect(self.req("GET", "/products?page=1&limit=1"), 200)
        self.assertEqual((page["total"], page["page"], page["limit"]), (2, 1, 1), page)
        self.assertEqual(len(page["products"]), 1, page)
        page = self.expect(self.req("GET", "/products"), 200)
        self.assertEqual(sorted(x["id"] for x in page["products"]), ["p1", "p2"], page)

        # The id comes from the path: a body "id" does not redirect the restock.
        r = self.expect(self.req("POST", "/products/p1/restock", {"quantity": 5, "id": "p2"}),
                        201)
        self.assertEqual((r["id"], r["stock"], r["reserved"], r["available"]),
                         ("p1", 15, 0, 15), r)
        self.assertEqual(self.expect(self.req("GET", "/products/p2"), 200)["stock"], 25)

    def test_generated_id(self):
        p = self.expect(self.req("POST", "/products", {"name": "Cable", "price": 99}), 201)
        self.assertTrue(p["id"].startswith("prod_"), p)
        self.assertEqual(self.expect(self.req("GET", "/products/" + p["id"]), 200)["id"],
                         p["id"])


class ErrorsTest(ProductsCase):

    def test_service_errors_pass_through(self):
        body = {"id": "p1", "name": "Keyboard", "price": 1999, "stock": 10}
        self.expect(self.req("POST", "/products", body), 201)
        self.expect_error(self.req("POST", "/products", body), 409, "PRODUCT_EXISTS")
        self.expect_error(self.req("GET", "/products/nope"), 404, "PRODUCT_NOT_FOUND")
        self.expect_error(self.req("POST", "/products/nope/restock", {"quantity": 1}), 404,
                          "PRODUCT_NOT_FOUND")
        err = self.expect_error(self.req("POST", "/products",
                                         {"name": "X", "price": -1, "colour": "red"}), 400)
        self.assertEqual({d["field"] for d in err["details"]}, {"price", "colour"}, err)
        err = self.expect_error(self.req("POST", "/products/p1/restock", {}), 400)
        self.assertIn("quantity", {d["field"] for d in err["details"]}, err)
        self.expect_error(self.req("POST", "/products/p1/restock", {"quantity": 10 ** 9}), 409,
                          "STOCK_LIMIT")

    def test_gateway_errors(self):
        err = self.expect_error(self.req("GET", "/products?page=abc&limit=2"), 400,
                                "VALIDATION_FAILED")
        self.assertEqual([d["field"] for d in err["details"]], ["page"], err)
        self.expect_error(self.req("POST", "/products", "{nope",
                                   {"Content-Type": "application/json"}), 400,
                          "VALIDATION_FAILED")
        r = self.req("DELETE", "/products/p1")
        self.expect_error(r, 405)
        self.assertEqual(r.header("Allow"), "GET, HEAD", r)
        r = self.req("GET", "/products/p1/restock")
        self.expect_error(r, 405)
        self.assertEqual(r.header("Allow"), "POST", r)


class ReadinessTest(ProductsCase):

    def test_ready_names_inventory_then_503_while_down(self):
        r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(self.ready()),
                       message="/ready 200 with every upstream up")
        self.assertEqual(r.json["info"].get("inventory"), {"status": "up"}, r)

        self.inv.stop()
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(self.ready()),
                       message="/ready 503 with the inventory service stopped")
        self.assertEqual(set(r.json.get("error", {})), {"inventory"}, r)
        err = self.expect_error(self.req("GET", "/products/p1"), 503)
        self.assertIn("inventory", err["message"], err)
        self.gw.assert_alive(self)


class DemoProductsTest(ProductsCase):

    def run_script(self, port):
        return subprocess.run([DEMO_PRODUCTS, "http://127.0.0.1:%d" % port],
                              capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)

    def test_creates_then_second_run_is_fine(self):
        p = self.run_script(self.gw.port)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stderr.count("created"), 3, p)
        for pid, (name, price, stock) in DEMO.items():
            got = self.expect(self.req("GET", "/products/" + pid), 200)
            self.assertEqual((got["name"], got["price"], got["stock"], got["reserved"]),
                             (name, price, stock, 0), got)
        p = self.run_script(self.gw.port)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stderr.count("exists already"), 3, p)
        self.assertNotIn("ERROR", p.stderr, p)

    def test_other_answers_fail_clearly(self):
        # The inventory daemon stopped: the gateway answers 503 for each product.
        self.inv.stop()
        p = self.run_script(self.gw.port)
        self.assertEqual(p.returncode, 1, p)
        self.assertEqual(p.stderr.count("ERROR"), 3, p)
        self.assertIn("HTTP 503", p.stderr, p)
        self.assertIn("p1", p.stderr, p)

    def test_nothing_listening_fails_clearly(self):
        self.gw.stop()
        p = self.run_script(self.gw.port)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("ERROR: POST http://127.0.0.1:%d/products (p1)" % self.gw.port,
                      p.stderr, p)


if __name__ == "__main__":
    unittest.main()
