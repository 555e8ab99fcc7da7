"""The payment service's transactional outbox with a real redis-server: an
event is written in the payment's own transaction and sent from there, so a
kill -9 after the reply, with Redis away, loses nothing. Deterministic: the
daemon starts while nothing listens on its Redis port, so the event stays in
the outbox (checked in the file); the daemon is killed with SIGKILL, Redis
started on that port, the daemon started again on the same DATA_DIR, and the
event arrives once, with the eventId the first daemon's log line named. With
Redis up, the row is marked sent once Redis has it. "Once" is checked
without sleeping: events from one publisher arrive in order, so a later
event (a fresh payment: the barrier) is awaited first."""

import itertools
import json
import os
import sqlite3
import unittest

from harness import DaemonTestCase, FrameConn, reply_response, wait_until
from redis_helper import RedisServer, free_port

PAYMENT_SERVICE = "services/payment/payment-service"
EVENTS = ("payment_completed", "payment_failed", "payment_refunded")

_seq = itertools.count(1)


def unique(prefix):
    return "%s_%d_%d" % (prefix, os.getpid(), next(_seq))


class OutboxTest(DaemonTestCase):

    def start_payment_service(self, redis_port, data_dir):
        env = {
            "LISTEN_HOST": "127.0.0.1",
            "PAYMENT_SERVICE_PORT": "0",
            "DATA_DIR": data_dir,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_port),
        }
        return self.start_daemon("payment-service", PAYMENT_SERVICE, env, ("rpc",))

    def pay(self, svc, order, request_id):
        with FrameConn(svc.port) as c:
            return reply_response(c.call(
                "process_payment", {"orderId": order, "userId": "user_1", "amount": 3998,
                                    "paymentMethod": "tok_visa"},
                metadata={"requestId": request_id}))

    def outbox_rows(self, data_dir):
        """(event_id, sent_at) per outbox row, read-only (WAL: the daemon may
        be running)."""
        db = sqlite3.connect("file:%s/payment.db?mode=ro" % data_dir, uri=True)
        try:
            return db.execute("SELECT event_id, sent_at FROM outbox ORDER BY id").fetchall()
        finally:
            db.close()

    def all_sent(self, data_dir):
        """The rows when there are some and every one is marked sent, else None."""
        rows = self.outbox_rows(data_dir)
        return rows if rows and all(sent for _, sent in rows) else None

    def request_line(self, svc, request_id):
        return svc.wait_for_log(
            lambda o: o.get("event") == "request" and o.get("requestId") == request_id,
            message="the request line of %s" % request_id)

    def events_for(self, sub, order):
        return [json.loads(m) for ch, m in sub.snapshot("payment_completed")
                if json.loads(m)["data"]["orderId"] == order]

    def test_kill_9_with_redis_away_loses_no_event(self):
        data_dir = self.make_data_dir()
        redis_port = free_port()  # nothing listens there yet
        svc = self.start_payment_service(redis_port, data_dir)
        order, rid = unique("ord_outbox"), unique("req_outbox")
        paid = self.pay(svc, order, rid)
        line = self.request_line(svc, rid)
        self.assertEqual(line.get("published"), "payment_completed", line)
        event_id = line.get("eventId")
        self.assertRegex(event_id or "", r"^evt_[0-9a-f]{32}$", line)
        # The reply came after the COMMIT, and the event committed with the
        # payment: it is in the file, unsent.
        self.assertEqual(self.outbox_rows(data_dir), [(event_id, None)])
        svc.kill()

        redis = RedisServer()
        redis.start(port=redis_port)
        self.addCleanup(redis.stop)
        sub = redis.subscriber(self, *EVENTS)
        svc2 = self.start_payment_service(redis_port, data_dir)
        barrier, brid = unique("ord_barrier"), unique("req_barrier")
        self.pay(svc2, barrier, brid)
        sub.wait_for(lambda ch, m: json.loads(m)["data"]["orderId"] == barrier,
                     message="the barrier event")
        got = self.events_for(sub, order)
        self.assertEqual(len(got), 1, got)
        msg = got[0]
        self.assertEqual(msg["metadata"]["eventId"], event_id, msg)
        self.assertEqual(msg["metadata"]["requestId"], rid, msg)
        self.assertEqual(msg["data"]["paymentId"], paid["id"], msg)
        # Marked sent once Redis acknowledged (the mark commits a turn later).
        rows = wait_until(lambda: self.all_sent(data_dir), message="every row marked sent")
        self.assertEqual(rows[0][0], event_id)

    def test_sent_rows_are_marked_and_stop_resends_nothing(self):
        data_dir = self.make_data_dir()
        redis = RedisServer()
        redis.start()
        self.addCleanup(redis.stop)
        sub = redis.subscriber(self, *EVENTS)
        svc = self.start_payment_service(redis.port, data_dir)
        order, rid = unique("ord_marked"), unique("req_marked")
        self.pay(svc, order, rid)
        event_id = self.request_line(svc, rid).get("eventId")
        msg = json.loads(sub.wait_for(
            lambda ch, m: json.loads(m)["data"]["orderId"] == order,
            message="the event")[1])
        self.assertEqual(msg["metadata"]["eventId"], event_id, msg)
        rows = wait_until(lambda: self.all_sent(data_dir), message="the row marked sent")
        self.assertEqual([e for e, _ in rows], [event_id])
        svc.stop()
        # A restart finds nothing unsent: the event is not sent again.
        svc2 = self.start_payment_service(redis.port, data_dir)
        barrier, brid = unique("ord_barrier"), unique("req_barrier")
        self.pay(svc2, barrier, brid)
        sub.wait_for(lambda ch, m: json.loads(m)["data"]["orderId"] == barrier,
                     message="the barrier event")
        self.assertEqual(len(self.events_for(sub, order)), 1)


if __name__ == "__main__":
    unittest.main()
