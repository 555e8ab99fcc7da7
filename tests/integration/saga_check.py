"""The order saga's invariants, checked against the real daemons (reusable).

SagaChecker asks each service what it holds, over raw NestJS TCP frames, and
lists every way the suite disagrees with the saga contract instead of
stopping at the first: every order final (confirmed or cancelled, its saga
row finished); confirmed <=> the payment succeeded for the order's total and
its reservation is committed; cancelled => no charge left (no payment, or
declined, refunded, voided) and no stock held (released, or none); per
product nothing reserved and stock == initial - what confirmed orders bought;
on Redis one distinct eventId per (pattern, orderId) with the final order's
events present and the contrary ones absent; and in the notification daemon
exactly one notification per eventId seen. Waits poll inside deadlines.

Usage (in a DaemonTestCase, with a Subscriber on EVENTS since before the
first order):
    checker = SagaChecker(order_port, payment_port, inventory_port,
                          notification_port, sub)
    orders = checker.orders_of_users(user_ids)
    checker.assert_invariants(self, [o["id"] for o in orders], {"p1": 10})
"""

import json
import time

from harness import FrameConn, IO_TIMEOUT_S, POLL_INTERVAL_S, reply_error, reply_response

# Every channel the saga or the payment service publishes on.
EVENTS = ("order_created", "order_completed", "order_failed", "order_status_changed",
          "payment_completed", "payment_failed", "payment_refunded")
# The ones the notification daemon stores (README of notification-service).
NOTIFIED = ("order_created", "order_completed", "order_failed", "order_status_changed",
            "payment_completed", "payment_failed", "payment_refunded")

FINAL_STATUSES = ("confirmed", "cancelled")
NO_CHARGE_STATUSES = ("declined", "refunded", "voided")
FINAL_TIMEOUT_S = 30.0       # "within seconds", generous under ASan on 2 shared cores
EVENT_TIMEOUT_S = 20.0       # outbox relay -> Redis -> subscriber / notification store
PAGE_LIMIT = 100             # the services' largest page
EXAMPLES_MAX = 3             # open orders shown per group in a failure
HISTORY_TAIL = 4             # saga history entries shown per example


class SagaChecker:
    """Reads the order, payment, inventory and notification services and a
    Subscriber's messages; never writes anything."""

    def __init__(self, order_port, payment_port, inventory_port, notification_port, sub):
        self.ports = {"order": order_port, "payment": payment_port,
                      "inventory": inventory_port, "notification": notification_port}
        self.sub = sub
        self.conns = {}

    # -- calls --
    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    def call(self, svc, cmd, data):
        """The reply packet of cmd on svc (one connection per service, opened
        again if the service closed it)."""
        c = self.conns.get(svc)
        if c is None or c.closed:
            c = self.conns[svc] = FrameConn(self.ports[svc])
        return c.call(cmd, data, timeout=IO_TIMEOUT_S)

    def ok(self, svc, cmd, data):
        return reply_response(self.call(svc, cmd, data))

    def maybe(self, svc, cmd, data, not_found_code):
        """The response, or None for a 404 with that code (AssertionError on
        any other error: the checker cannot judge what it cannot read)."""
        r = self.call(svc, cmd, data)
        if r.get("err") is None:
            return reply_response(r)
        err = reply_error(r)
        if err.get("statusCode") == 404 and err.get("code") == not_found_code:
            return None
        raise AssertionError("%s %s %r: %r" % (svc, cmd, data, err))

    def pages(self, svc, cmd, key, data):
        out, page = [], 1
        while True:
            r = self.ok(svc, cmd, dict(data, page=page, limit=PAGE_LIMIT))
            out.extend(r[key])
            if len(out) >= r["total"] or not r[key]:
                return out
            page += 1

    def orders_of_users(self, user_ids):
        """Every order the order service holds for these users."""
        out = []
        for u in user_ids:
            out.extend(self.pages("order", "get_orders", "orders", {"userId": u}))
        return out

    def saga(self, order_id):
        r = self.call("order", "get_order_saga", {"id": order_id})
        return r.get("response") if r.get("err") is None else {"error": r.get("err")}

    # -- waits --
    def wait_final(self, order_ids, timeout=FINAL_TIMEOUT_S):
        """{id: order} once every order is confirmed or cancelled; at the
        deadline an AssertionError naming each order still open, with its
        saga (state, attempts, history)."""
        deadline = time.monotonic() + timeout
        final = {}
        while True:
            for oid in order_ids:
                if oid not in final:
                    o = self.ok("order", "get_order", {"id": oid})
                    if o["status"] in FINAL_STATUSES:
                        final[oid] = o
            open_ids = [oid for oid in order_ids if oid not in final]
            if not open_ids:
                return final
            if time.monotonic() >= deadline:
                raise AssertionError(self.describe_open(open_ids, len(order_ids), timeout))
            time.sleep(POLL_INTERVAL_S * 5)  # polling interval inside a deadline loop

    def describe_open(self, open_ids, total, timeout):
        """Orders still open, counted by (status, saga state, last reason),
        with a few examples and the tail of their saga history."""
        groups = {}
        for oid in open_ids:
            o = self.ok("order", "get_order", {"id": oid})
            saga = self.saga(oid)
            key = (o["status"], saga.get("state"), saga.get("reason"))
            groups.setdefault(key, []).append((oid, saga))
        lines = ["%d of %d orders not final after %.0fs (not confirmed/cancelled):"
                 % (len(open_ids), total, timeout)]
        for (status, state, reason), members in sorted(groups.items(), key=str):
            lines.append("  %d x order %s, saga %s (reason %r), e.g.:"
                         % (len(members), status, state, reason))
            for oid, saga in members[:EXAMPLES_MAX]:
                tail = dict(saga, history=(saga.get("history") or [])[-HISTORY_TAIL:])
                lines.append("    %s %s" % (oid, json.dumps(tail)))
        return "\n".join(lines)

    def events_by_order(self, order_ids):
        """{(pattern, orderId): [eventId, ...]} of the messages so far, in
        arrival order, for these orders; plus the raw messages per key."""
        wanted = set(order_ids)
        ids, msgs = {}, {}
        for ch, payload in self.sub.snapshot():
            try:
                msg = json.loads(payload.decode("utf-8"))
            except ValueError:
                continue
            oid = (msg.get("data") or {}).get("orderId")
            if oid not in wanted:
                continue
            eid = (msg.get("metadata") or {}).get("eventId")
            ids.setdefault((ch, oid), []).append(eid)
            msgs.setdefault((ch, oid), []).append(msg)
        return ids, msgs

    @staticmethod
    def required_events(order):
        if order["status"] == "confirmed":
            return ("order_created", "order_completed", "payment_completed")
        return ("order_failed",)

    @staticmethod
    def forbidden_events(order):
        if order["status"] == "confirmed":
            return ("order_failed", "payment_refunded", "order_status_changed")
        return ("order_completed", "order_status_changed")

    def wait_events(self, orders, timeout=EVENT_TIMEOUT_S):
        """Wait (deadline) until every final order's required events were
        seen; returns the events by order either way (the check reports)."""
        deadline = time.monotonic() + timeout
        while True:
            ids, _ = self.events_by_order(orders)
            missing = [(p, oid) for oid, o in orders.items()
                       for p in self.required_events(o) if (p, oid) not in ids]
            if not missing or time.monotonic() >= deadline:
                return ids
            time.sleep(POLL_INTERVAL_S * 5)  # polling interval inside a deadline loop

    def notifications(self, user_ids):
        out = []
        for u in user_ids:
            out.extend(self.pages("notification", "get_notifications", "notifications",
                                  {"userId": u}))
        return out

    def wait_notifications(self, event_ids, user_ids, timeout=EVENT_TIMEOUT_S):
        """The users' notifications once every eventId has one (or at the
        deadline: the check reports what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            notes = self.notifications(user_ids)
            have = {n.get("eventId") for n in notes}
            if event_ids <= have or time.monotonic() >= deadline:
                return notes
            time.sleep(POLL_INTERVAL_S * 5)  # polling interval inside a deadline loop

    # -- the invariants --
    def violations(self, order_ids, initial_stock, final_timeout=FINAL_TIMEOUT_S):
        """Every violated invariant as one line of text (empty: all hold)."""
        bad = []
        try:
            orders = self.wait_final(order_ids, final_timeout)
        except AssertionError as e:
            bad.append(str(e))
            orders = {}
            for oid in order_ids:
                o = self.ok("order", "get_order", {"id": oid})
                if o["status"] in FINAL_STATUSES:
                    orders[oid] = o
        sold = {pid: 0 for pid in initial_stock}
        for oid, o in sorted(orders.items()):
            bad.extend(self.order_violations(o, sold))
        for pid, initial in sorted(initial_stock.items()):
            p = self.ok("inventory", "get_product", {"id": pid})
            if p["reserved"] != 0:
                bad.append("product %s: reserved %d, want 0 (stock held by no open order)"
                           % (pid, p["reserved"]))
            if p["stock"] != initial - sold[pid]:
                bad.append("product %s: stock %d, want %d - %d sold to confirmed orders = %d"
                           % (pid, p["stock"], initial, sold[pid], initial - sold[pid]))
        bad.extend(self.event_violations(orders))
        return bad

    def order_violations(self, o, sold):
        """One final order against its saga, payment and reservation; adds
        a confirmed order's quantities to sold."""
        bad = []
        oid, status = o["id"], o["status"]
        saga = self.saga(oid)
        want_state = "done" if status == "confirmed" else "cancelled"
        if saga.get("state") != want_state:
            bad.append("order %s %s: saga state %r, want %r (saga %s)"
                       % (oid, status, saga.get("state"), want_state, json.dumps(saga)))
        pay = self.maybe("payment", "get_payment_by_order", {"orderId": oid},
                         "PAYMENT_NOT_FOUND")
        res = self.maybe("inventory", "get_reservation", {"orderId": oid},
                         "RESERVATION_NOT_FOUND")
        pstate = pay["status"] if pay else None
        rstate = res["state"] if res else None
        where = "order %s %s (reason %r): payment %s, reservation %s" % (
            oid, status, o.get("cancelReason"),
            json.dumps(pay) if pay else "none", rstate or "none")
        if status == "confirmed":
            if pstate != "succeeded":
                bad.append(where + ": a confirmed order's payment must have succeeded")
            elif pay["amount"] != o["totalAmount"] or pay["id"] != o.get("paymentId"):
                bad.append(where + ": charged %r as %r, the order says %r as %r"
                           % (pay["amount"], pay["id"], o["totalAmount"], o.get("paymentId")))
            if rstate != "committed":
                bad.append(where + ": a confirmed order's reservation must be committed")
            else:
                want = {}
                for it in o["items"]:
                    want[it["productId"]] = want.get(it["productId"], 0) + it["quantity"]
                got = {it["productId"]: it["quantity"] for it in res["items"]}
                if got != want:
                    bad.append(where + ": reserved %r, ordered %r" % (got, want))
            for it in o["items"]:
                if it["productId"] in sold:
                    sold[it["productId"]] += it["quantity"]
        else:
            if not o.get("cancelReason"):
                bad.append(where + ": a cancelled order needs a cancelReason")
            if pstate is not None and pstate not in NO_CHARGE_STATUSES:
                bad.append(where + ": a cancelled order must leave no charge "
                           "(no payment, declined, refunded or voided)")
            if rstate is not None and rstate != "released":
                bad.append(where + ": a cancelled order must hold no stock "
                           "(reservation released, or none)")
        return bad

    def event_violations(self, orders):
        bad = []
        ids = self.wait_events(orders)
        for oid, o in sorted(orders.items()):
            for p in self.required_events(o):
                if (p, oid) not in ids:
                    bad.append("order %s %s: no %s seen on Redis" % (oid, o["status"], p))
            for p in self.forbidden_events(o):
                if (p, oid) in ids:
                    bad.append("order %s %s: %s published (eventIds %r)"
                               % (oid, o["status"], p, ids[(p, oid)]))
        for (p, oid), eids in sorted(ids.items()):
            distinct = set(eids)
            if None in distinct:
                bad.append("%s for %s without metadata.eventId" % (p, oid))
            if len(distinct) > 1:
                bad.append("%s for %s: %d distinct eventIds %r (one event, duplicates "
                           "must carry the same id)" % (p, oid, len(distinct), sorted(
                               e for e in distinct if e)))
        wire = {e for (p, _), eids in ids.items() if p in NOTIFIED for e in eids if e}
        users = sorted({o["userId"] for o in orders.values()})
        notes = self.wait_notifications(wire, users)
        count = {}
        for n in notes:
            if n.get("orderId") in orders:
                count[n.get("eventId")] = count.get(n.get("eventId"), 0) + 1
        for e in sorted(wire):
            if count.get(e, 0) != 1:
                bad.append("eventId %s: %d notifications stored, want exactly 1"
                           % (e, count.get(e, 0)))
        for e in sorted(set(count) - wire):
            bad.append("notification with eventId %r that no subscriber saw on Redis" % e)
        return bad

    def assert_invariants(self, testcase, order_ids, initial_stock, context=""):
        """Fail testcase with every violation, or return the final orders."""
        bad = self.violations(order_ids, initial_stock)
        if bad:
            testcase.fail("%d saga invariant violation(s) over %d orders%s:\n%s"
                          % (len(bad), len(order_ids), context and " (%s)" % context,
                             "\n".join("- " + b for b in bad)))
        return {oid: self.ok("order", "get_order", {"id": oid}) for oid in order_ids}


__all__ = ["EVENTS", "SagaChecker"]
