#!/usr/bin/env python3
"""bench.py: throughput, latency and memory of the whole stack on loopback.

Builds nothing: point it at a release build (bench/run.sh does both). Starts
redis-server and every daemon on ephemeral ports with a fresh DATA_DIR, measures
the disk's single-writer fsync rate in that DATA_DIR (the ceiling for one
durable commit per request), then drives each endpoint with wrk for a fixed
time and connection count, and reports requests/s, p99 latency and every
daemon's RSS. For POST /orders it also counts the events: every order must
produce its notifications (none lost between order service and notification
daemon). Bounded: each run lasts BENCH_SECONDS; everything targets 127.0.0.1.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = 2
FSYNC_SECONDS = 2.0
EVENTS_PER_ORDER = 3  # order_created, payment_completed, order_completed


def fsync_rate(directory):
    """Durable single-writer commits per second: append + fsync in a loop."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n = 0
    end = time.monotonic() + FSYNC_SECONDS
    try:
        while time.monotonic() < end:
            os.write(fd, b"x" * 512)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / FSYNC_SECONDS


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse_wrk(out):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "requests": int(total.group(1)) if total else 0,
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def wrk(port, path, script=None, env=None):
    argv = ["wrk", "-t%d" % THREADS, "-c%d" % CONNECTIONS, "-d%ds" % SECONDS,
            "--latency", "--timeout", "10s"]
    if script:
        argv += ["-s", os.path.join(HERE, script)]
    argv.append("http://127.0.0.1:%d%s" % (port, path))
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         env=dict(os.environ, **(env or {}))).stdout
    return parse_wrk(out)


def main():
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    data = tempfile.mkdtemp(prefix="nestc-bench-")
    daemons = []

    def start(name, rel, env, listen=("rpc",)):
        d = harness.Daemon(name, [harness.binary(rel)],
                           env=dict(env, DATA_DIR=data, LOG_LEVEL="warn",
                                    SQLITE_SYNCHRONOUS=os.environ.get("BENCH_SYNC", "FULL")))
        d.start(listen_names=listen)
        daemons.append(d)
        return d

    results = {}
    try:
        results["fsync_per_s"] = fsync_rate(data)
        import redis_helper  # noqa: E402  (tests/integration)
        redis = redis_helper.RedisServer()
        redis.start()
        renv = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port)}
        user = start("user", harness.USER_SERVICE, {"USER_SERVICE_PORT": "0"})
        pay = start("payment", "services/payment/payment-service",
                    dict(renv, PAYMENT_SERVICE_PORT="0"))
        notif = start("notification", "services/notification/notification-service",
                      dict(renv, NOTIFICATION_SERVICE_PORT="0"))
        inv = start("inventory", "services/inventory/inventory-service",
                    {"INVENTORY_SERVICE_PORT": "0"})
        order = start("order", "services/order/order-service",
                      dict(renv, ORDER_SERVICE_PORT="0",
                           USER_SERVICE_PORT=str(user.port),
                           PAYMENT_SERVICE_PORT=str(pay.port),
                           INVENTORY_SERVICE_PORT=str(inv.port)))
        gw = start("gateway", harness.GATEWAY, {
            "GATEWAY_PORT": "0",
            "USER_SERVICE_PORT": str(user.port),
            "ORDER_SERVICE_PORT": str(order.port),
            "PAYMENT_SERVICE_PORT": str(pay.port),
            "NOTIFICATION_SERVICE_PORT": str(notif.port),
            "INVENTORY_SERVICE_PORT": str(inv.port),
        }, listen=("http",))
        port = gw.port
        harness.wait_until(
            lambda: harness.http_request(port, "GET", "/ready").status == 200,
            timeout=20, message="gateway ready")
        r = harness.http_request(port, "POST", "/users",
                                 {"email": "bench@example.com", "name": "Bench"})
        assert r.status == 201, r
        uid = r.json["id"]
        # The order saga reserves and prices with the inventory: the product
        # post_orders.lua orders, at its price, with stock for any run.
        r = harness.http_request(port, "POST", "/products",
                                 {"id": "p1", "name": "Bench", "price": 1999,
                                  "stock": 1000000000})
        assert r.status == 201, r

        results["GET /health"] = wrk(port, "/health")
        results["GET /users/:id"] = wrk(port, "/users/" + uid)
        results["POST /users"] = wrk(port, "/users", "post_users.lua")
        results["POST /orders"] = wrk(port, "/orders", "post_orders.lua",
                                      env={"BENCH_USER_ID": uid})

        # Every confirmed order yields order_created, payment_completed and
        # order_completed (EVENTS_PER_ORDER notifications). Orders
        # still in flight when wrk stopped finish afterwards: count both sides
        # until they agree or stop moving.
        def counts():
            o = harness.http_request(port, "GET", "/users/%s/orders?limit=1" % uid)
            n = harness.http_request(port, "GET", "/users/%s/notifications?limit=1" % uid)
            return (o.json["total"] if o.status == 200 else -1,
                    n.json["total"] if n.status == 200 else -1)
        try:
            harness.wait_until(lambda: (lambda c: c[1] >= EVENTS_PER_ORDER * c[0])(counts()),
                               timeout=30,
                               message="all notifications")
        except AssertionError:
            pass
        n_orders, got = counts()
        expected = EVENTS_PER_ORDER * n_orders
        results["events"] = {"orders": n_orders, "notifications_expected": expected,
                             "notifications_stored": got, "lost": expected - got}
        results["rss_kib"] = {d.name: rss_kib(d.pid) for d in daemons}
        results["rss_kib"]["redis"] = rss_kib(redis.pid)
    finally:
        for d in reversed(daemons):
            try:
                d.stop()
            except Exception as e:  # report, keep stopping the rest
                print("bench: stopping %s: %s" % (d.name, e), file=sys.stderr)
        try:
            redis.stop()
        except Exception:
            pass
        shutil.rmtree(data, ignore_errors=True)

    print(json.dumps(results, indent=2))
    fs = results["fsync_per_s"]
    o = results["POST /orders"]["rps"]
    print("\nendpoint            req/s     p99 ms   non-2xx")
    for k in ("GET /health", "GET /users/:id", "POST /users", "POST /orders"):
        r = results[k]
        print("%-18s %8.0f %9.2f %8d" % (k, r["rps"], r["p99_ms"] or -1, r["errors"]))
    print("fsync/s in DATA_DIR: %.0f; POST /orders = %.0f%% of it (target >= 40%%)"
          % (fs, 100.0 * o / fs if fs else 0))
    print("events: %(orders)d orders, %(notifications_stored)d/%(notifications_expected)d "
          "notifications, lost %(lost)d" % results["events"])
    print("RSS KiB: " + ", ".join("%s %d" % kv for kv in results["rss_kib"].items()))


if __name__ == "__main__":
    main()
