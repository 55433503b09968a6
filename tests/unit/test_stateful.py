"""Stateful property test: buyers, sellers, the platform, the clock and the sweeper act at
random on a few order lines, and the core invariants are checked after every step.

Refusals (any :class:`aftersales.errors.DomainError`) are expected and mean "refused"; any other
exception is a bug. After every step, with fresh queries:

* per line, pending + succeeded refunds ≤ what was paid (price, plus import tax when some was
  paid), and their sum is ``refund_committed``;
* a case once seen in a terminal state (completed, closed, cancelled) never changes state again;
* the state-changing events of a case form one chain from ``None`` whose last ``to_state`` is the
  case's state, every state we observed lies on that chain in order (one event per change), and
  events that change nothing (money events) are recorded in the state the chain was in;
* at most one open case per line, and ``open_line_id`` is set exactly while a case is open;
* a buyer's requested refund never exceeds the value of the units the case covers;
* a case completed by its refund has nothing pending and had been paid what was due; a case in
  ``refunding`` has a refund pending or something left for ``retry_refund`` (it can finish);
* negotiation: neither side made more offers than ``AFTERSALES_NEGOTIATION_ROUNDS``, a case in
  ``counter_offered`` names a counter amount between the offer and the request;
* express refunds (on here for every buyer, within a small quota): an express-refunded case has
  its ``express_refund`` money event, the buyer's express money out never exceeds the quota, and
  once a return was revoked the buyer gets no express refund again.

Per step: a trigger that worked was one ``allowed_triggers`` offered; replaying an idempotency key
returns the first refund (and a client's key never collides with the system's own); after a
sweep at time T no timeout failed and nothing is due at T.

``AFTERSALES_HYPOTHESIS_EXAMPLES`` raises the number of examples (default 25).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from aftersales import deadlines, order_flow, services
from aftersales.errors import DomainError
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, Order, OrderEvent, OrderLine, Refund
from aftersales.orders import LineInput, OrderInput, upsert_order
from aftersales.workflow import BASE_TABLE, TERMINAL_STATES
from tests.conftest import NOW, make_app, make_order, photos
from tests.support.databases import close_connections

EXAMPLES = int(os.environ.get("AFTERSALES_HYPOTHESIS_EXAMPLES", "25"))

KINDS = ("refund_only", "return_refund", "exchange", "repair")
CORE_REASONS = ("no_reason", "quality", "not_as_described", "damaged", "wrong_item", "missing_part", "not_received")
PHOTO_REASONS = frozenset(CORE_REASONS) - {"no_reason", "not_received"}
#: (kind, reason) pairs the core allows on a delivered line (inside the windows), and before delivery.
DELIVERED_REQUESTS = [
    (kind, reason) for kind in KINDS for reason in CORE_REASONS
    if reason != "not_received" and not (reason == "no_reason" and kind in ("refund_only", "repair"))
]
UNDELIVERED_REQUESTS = [("refund_only", "not_received")]
PEOPLE = ("seller", "buyer", "platform")
PEOPLE_TRIGGERS = tuple(dict.fromkeys(row.trigger for row in BASE_TABLE if row.actor != "system"))

#: The inputs a person fills in for each trigger (the other triggers get none).
FIELDS = {
    "approve": ("return_address",),
    "reject": ("reason",),
    "offer": ("amount", "note"),
    "counter_offer": ("amount", "note"),
    "decline_offer": ("note",),
    "revise": ("description", "amount", "evidence"),
    "escalate": ("statement", "evidence"),
    "ship_return": ("carrier", "tracking_number"),
    "ship_replacement": ("carrier", "tracking_number"),
    "confirm_receipt": ("received_quantity", "damaged_quantity", "reason"),
    "refund": ("missing",),
    "refuse_after_receipt": ("reason",),
    "ask_about_missing": ("note",),
    "answer_about_missing": ("note", "evidence"),
    "dispute_goods": ("reason", "evidence"),
    "decide": ("amount", "payer", "reason", "goods"),
}
#: Express refunds for every buyer from their first case, within a quota small enough to run out.
EXPRESS_QUOTA = 40_000
ROUNDS = 2

MOSTLY = st.sampled_from([True, True, True, False])  # shrinks towards True


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, else ``bad``; shrinks towards ``good``."""
    return st.one_of(good, good, good, bad)


TEXTS = mostly(st.sampled_from(["It arrived broken", "Item was used", "退货, 谢谢", "x"]),
               st.sampled_from(["", "   ", None, "y" * 2001]))
CARRIERS = mostly(st.sampled_from(["SF", "ZTO"]), st.sampled_from(["", "  ", None, "c" * 101]))
TRACKING = mostly(st.sampled_from(["SF123456", "1"]), st.sampled_from(["", None, 12345]))
PAYERS = mostly(st.sampled_from(["seller", "platform"]), st.sampled_from(["insurer", "", None, "buyer"]))
#: Amounts a careless form or API client might send: refused, never a crash.
INVALID_AMOUNTS = st.sampled_from([
    0, -1, -10_000, 2**63, 10**30, "150", " 42 ", "1.5", "abc", "", 1.5, 100.0, None, True, False,
    math.nan, math.inf, -math.inf,
])
DURATIONS = st.one_of(
    st.sampled_from([
        timedelta(hours=1), timedelta(hours=47), timedelta(hours=48), timedelta(hours=48, seconds=1),
        timedelta(days=3), timedelta(days=7), timedelta(days=7, seconds=1), timedelta(days=10, minutes=1),
        timedelta(days=16), timedelta(days=40),
    ]),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=20)),
)


def evidence(count: int) -> list[dict]:
    return photos(count) if count else []


def amounts(low: int, high: int) -> st.SearchStrategy[Any]:
    """Mostly plausible whole amounts in ``low..high``, sometimes nonsense."""
    return mostly(st.integers(min_value=low, max_value=max(low, high)), INVALID_AMOUNTS)


def unit_value_bound(line: OrderLine, units: int) -> int:
    """The most ``units`` units of ``line`` can be worth (largest-remainder shares differ by ≤ 1)."""
    return -(-line.paid_amount // line.quantity) * units


def create_test_app(directory: Path):
    """The app under test on a fresh database of its own: the one place that makes it. The
    database is a SQLite file in ``directory``, or a PostgreSQL schema when the suite runs with
    ``AFTERSALES_TEST_DATABASE=postgres`` (see tests/support/databases.py)."""
    return make_app(directory, AFTERSALES_EXPRESS_MIN_COMPLETED_CASES=0, AFTERSALES_EXPRESS_QUOTA=EXPRESS_QUOTA,
                    AFTERSALES_NEGOTIATION_ROUNDS=ROUNDS)


class CaseLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="aftersales-stateful-")
        self.app = create_test_app(Path(self.directory))
        self.context = self.app.app_context()
        self.context.push()
        self.clock = NOW
        self.line_ids: list[int] = []
        self.case_ids: list[int] = []
        self.terminal: dict[int, str] = {}  # case id -> the terminal state it was first seen in
        self.observed: dict[int, list[str]] = defaultdict(list)  # states seen, without repeats
        self.keys: dict[str, tuple[int, int, int]] = {}  # idempotency key -> (case, amount, refund id)
        self.orders_made = 0  # orders made by cancel_an_order, for their numbers
        self.revoked_by_event: int | None = None  # the last event id when an express refund was first revoked

    def teardown(self) -> None:
        try:
            db.session.remove()
            db.engine.dispose()
        finally:
            self.context.pop()
            close_connections()  # PostgreSQL: drop this example's schema now, not after the test
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------
    def refused(self, kind: str, what: str, error: DomainError) -> None:
        event(f"refused: {kind} ({type(error).__name__})")
        note(f"  refused {what}: {type(error).__name__}: {error}")

    def fresh(self, model: type, ident: int) -> Any:
        db.session.expire_all()
        return db.session.get(model, ident)

    def open_lines(self) -> set[int]:
        return set(db.session.scalars(select(Case.open_line_id).where(Case.open_line_id.is_not(None))))

    def pick_case(self, data) -> int | None:
        """Mostly a case that is still open, else any case."""
        if not self.case_ids:
            return None
        still_open = [case_id for case_id in self.case_ids if case_id not in self.terminal]
        if still_open and data.draw(MOSTLY, label="an open case"):
            return data.draw(st.sampled_from(still_open), label="case")
        return data.draw(st.sampled_from(self.case_ids), label="case")

    def pick_move(self, data) -> tuple[int, str] | None:
        """Mostly an open case and a person who can move it on (withdrawing aside: it is always
        possible and would end most cases early), else any case and any person."""
        if not self.case_ids:
            return None
        db.session.expire_all()
        cases = db.session.scalars(select(Case).where(Case.id.in_(self.case_ids)).order_by(Case.id)).all()
        moves = [
            (case.id, actor) for case in cases if case.state not in TERMINAL_STATES for actor in PEOPLE
            if set(services.allowed_triggers(case, actor, now=self.clock)) - {"withdraw"}
        ]
        if moves and data.draw(MOSTLY, label="someone who can move a case on"):
            return data.draw(st.sampled_from(moves), label="case, actor")
        case_id = data.draw(st.sampled_from(self.case_ids), label="case")
        return case_id, data.draw(st.sampled_from(PEOPLE), label="actor")

    # --- setup -------------------------------------------------------------------------------
    @initialize(
        lines=st.lists(
            st.tuples(st.integers(1, 3), st.integers(1, 20_000), st.integers(0, 99), st.sampled_from([0, 0, 0, 777])),
            min_size=1, max_size=2,
        ),
        insured=st.booleans(),
        undelivered=st.booleans(),
        shipping_fee=st.sampled_from([0, 800]),
        data=st.data(),
    )
    def make_orders(self, lines, insured, undelivered, shipping_fee, data) -> None:
        """A delivered order of 1–2 lines (paid after a discount of 0–99, so unit shares are
        uneven; some with import tax, which raises the ceiling), maybe an order shipped but not
        delivered yet, and a first request."""
        inputs = [
            LineInput(position, f"Item {position}", "books", quantity, unit_price,
                      paid_amount=max(quantity * unit_price - discount, 0), tax_paid=tax)
            for position, (quantity, unit_price, discount, tax) in enumerate(lines, start=1)
        ]
        order = make_order(lines=inputs, insured=insured, shipping_fee=shipping_fee)
        self.line_ids.extend(line.id for line in order.lines)
        if undelivered:
            order = make_order(quantity=2, unit_price=5000, delivered=None, shipped=True, shipping_fee=shipping_fee)
            self.line_ids.extend(line.id for line in order.lines)
        db.session.commit()
        self.request(data, plausible=True)

    # --- buyers open cases -------------------------------------------------------------------
    @rule(data=st.data())
    def open_case(self, data) -> None:
        self.request(data, plausible=data.draw(MOSTLY, label="plausible request"))

    def request(self, data, plausible: bool) -> None:
        """A plausible request: a line without an open case, a kind and reason the core allows
        there, valid quantity and amount, the photos needed. Otherwise anything goes."""
        free = [line_id for line_id in self.line_ids if line_id not in self.open_lines()]
        line_id = data.draw(st.sampled_from(free if plausible and free else self.line_ids), label="line")
        line = self.fresh(OrderLine, line_id)
        if plausible:
            choices = DELIVERED_REQUESTS if line.order.delivered_at else UNDELIVERED_REQUESTS
            kind, reason = data.draw(st.sampled_from(choices), label="kind, reason")
            quantity = data.draw(st.integers(1, line.quantity), label="quantity")
            amount = data.draw(st.none() | st.integers(1, max(line.paid_amount, 1)), label="amount")
            count = 1 if reason in PHOTO_REASONS else 0
        else:
            kind = data.draw(st.sampled_from(KINDS), label="kind")
            reason = data.draw(st.sampled_from(CORE_REASONS), label="reason")
            quantity = data.draw(st.sampled_from([1, 0, -1, line.quantity, line.quantity + 1]), label="quantity")
            amount = data.draw(st.sampled_from([None, 0, -5, 1, line.paid_amount, line.paid_amount + 1, 2**63]), label="amount")
            count = data.draw(st.sampled_from([0, 1, 2]), label="photos")
        try:
            case = services.open_case(line_id, kind, reason, quantity=quantity, amount=amount,
                                      description="opened by the state machine", evidence=evidence(count),
                                      now=self.clock)
        except DomainError as error:
            self.refused("open_case", f"open_case({line_id}, {kind}, {reason}, q={quantity}, amount={amount})", error)
            return
        event(f"opened: {kind}")
        note(f"  opened case {case.id} ({kind}, {reason}, q={quantity}, amount={case.amount}) on line {line_id}")
        self.case_ids.append(case.id)

    # --- people act on cases -----------------------------------------------------------------
    @rule(data=st.data())
    def act(self, data) -> None:
        """The buyer, the seller or the platform fires a trigger with plausible inputs."""
        move = self.pick_move(data)
        if move is None:
            return
        case_id, actor = move
        case = self.fresh(Case, case_id)
        offered = services.allowed_triggers(case, actor, now=self.clock)
        onward = [trigger for trigger in offered if trigger != "withdraw"]
        if onward and data.draw(MOSTLY, label="an offered trigger other than withdraw"):
            trigger = data.draw(st.sampled_from(onward), label="trigger")
        elif offered and data.draw(MOSTLY, label="an offered trigger"):
            trigger = data.draw(st.sampled_from(offered), label="trigger")
        else:
            trigger = data.draw(st.sampled_from(PEOPLE_TRIGGERS), label="trigger")
        line = case.line
        refundable = services.refundable(line)
        if trigger == "decide":
            amount = amounts(0, refundable)
        elif trigger == "offer":
            amount = amounts(1, case.amount - 1)
        elif trigger == "counter_offer":
            amount = amounts((case.offer_amount or 0) + 1, case.amount - 1)
        else:  # revise: up to what the line still has
            amount = amounts(1, refundable)
        strategies = {
            "reason": TEXTS, "statement": TEXTS, "description": TEXTS, "note": TEXTS, "return_address": TEXTS,
            "carrier": CARRIERS, "tracking_number": TRACKING, "payer": PAYERS, "amount": amount,
            "goods": mostly(st.sampled_from(["keep", "return"]), st.sampled_from(["", None, "burn"])),
            "evidence": st.sampled_from([1, 0, 2]).map(evidence),
            "received_quantity": mostly(st.integers(1, case.quantity), st.sampled_from([0, -1, case.quantity + 1, "1", "x", None])),
            "damaged_quantity": mostly(st.sampled_from([0, 0, 1]), st.sampled_from([-1, case.quantity + 1, "x", None])),
            "missing": mostly(st.sampled_from(["release", "refund"]), st.sampled_from(["", None, "maybe"])),
        }
        complete = data.draw(MOSTLY, label="every field filled in")
        fields = [name for name in FIELDS.get(trigger, ()) if name != "goods" or case.kind == "return_refund"]
        inputs = {
            name: data.draw(strategies[name], label=name)
            for name in fields
            if complete or data.draw(MOSTLY, label=f"fill in {name}")
        }
        version = data.draw(mostly(st.none(), st.sampled_from([case.version, case.version - 1])), label="expected_version")
        before = case.state
        try:
            after = services.act(case_id, actor, trigger, expected_version=version, now=self.clock, **inputs)
        except DomainError as error:
            self.refused(f"{actor} {trigger}", f"{actor} {trigger} on case {case_id} in {before}", error)
            return
        event(f"done: {trigger} {before} -> {after.state}")
        if trigger == "ship_return" and after.express_state == "refunded":
            event("express refund on shipment")
        note(f"  {actor} {trigger} on case {case_id}: {before} -> {after.state}")
        assert trigger in offered, f"{actor} fired {trigger!r} in {before!r}, but allowed_triggers offered only {offered}"

    def cases_in(self, *states: str) -> list[Case]:
        db.session.expire_all()
        return db.session.scalars(select(Case).where(Case.id.in_(self.case_ids), Case.state.in_(states))
                                  .order_by(Case.id)).all()

    def attempt(self, case_id: int, actor: str, trigger: str, **inputs: Any) -> None:
        try:
            after = services.act(case_id, actor, trigger, now=self.clock, **inputs)
        except DomainError as error:
            self.refused(f"{actor} {trigger}", f"{actor} {trigger} on case {case_id}", error)
            return
        event(f"negotiated: {trigger} -> {after.state}" if trigger != "ship_return" else "shipped a return")
        if trigger == "ship_return" and after.express_state == "refunded":
            event("express refund on shipment")
        note(f"  {actor} {trigger} on case {case_id} ({inputs}): -> {after.state}")

    @rule(data=st.data())
    def negotiate(self, data) -> None:
        """A step of a negotiation with plausible amounts: the seller offers, the buyer counters,
        the seller answers the counter (the random ``act`` rule rarely gets this far)."""
        cases = self.cases_in("requested", "offer_pending", "counter_offered")
        if not cases:
            return
        case = data.draw(st.sampled_from(cases), label="case in negotiation")
        ceiling = case.amount or services.refundable(case.line)
        if case.state in ("requested", "counter_offered") and (case.state == "requested" or data.draw(st.booleans(), label="offer again")):
            amount = data.draw(st.integers(1, max(ceiling - 1, 1)), label="offer")
            self.attempt(case.id, "seller", "offer", amount=amount, note="Would this do?")
        elif case.state == "offer_pending":
            offered = case.offer_amount or 0
            amount = data.draw(st.integers(offered + 1, max(ceiling - 1, offered + 1)), label="counter-offer")
            self.attempt(case.id, "buyer", "counter_offer", amount=amount, note="Meet me there?")
        else:
            self.attempt(case.id, "seller", data.draw(st.sampled_from(["accept_counter", "reject"]), label="answer"),
                         reason="Not for that price.")

    @rule(data=st.data())
    def ship_a_return(self, data) -> None:
        """The buyer ships an approved return with a tracking number (where express refunds happen)."""
        cases = self.cases_in("awaiting_return")
        if cases:
            case = data.draw(st.sampled_from(cases), label="return to ship")
            self.attempt(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF100200")

    @rule(data=st.data())
    def return_for_a_refund(self, data) -> None:
        """A return and refund on a free delivered line, approved: the buyer's shipment then asks
        for an express refund (the random rules open few returns and ship fewer)."""
        free = [line_id for line_id in self.line_ids if line_id not in self.open_lines()
                and self.fresh(OrderLine, line_id).order.delivered_at is not None]
        if not free:
            return
        line = self.fresh(OrderLine, data.draw(st.sampled_from(free), label="line to return"))
        try:
            case = services.open_case(line.id, "return_refund", data.draw(st.sampled_from(["no_reason", "quality"])),
                                      quantity=data.draw(st.integers(1, line.quantity), label="units"),
                                      description="returned by the state machine", evidence=evidence(1), now=self.clock)
        except DomainError as error:
            self.refused("open_case", f"return on line {line.id}", error)
            return
        self.case_ids.append(case.id)
        self.attempt(case.id, "seller", "approve", return_address="1 Return Road")

    # --- orders cancelled before they ship ---------------------------------------------------
    @rule(lines=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 20_000), st.sampled_from([0, 0, 333])),
                         min_size=1, max_size=2),
          shipping_fee=st.sampled_from([0, 800]), picked=st.booleans(), answer=st.sampled_from(["intercept", "too_late", None]),
          refund_first=st.booleans(), partial=st.booleans(), data=st.data())
    def cancel_an_order(self, lines, shipping_fee, picked, answer, refund_first, partial, data) -> None:
        """A paid order not shipped yet, maybe with a refund asked first (which blocks the
        cancellation while it is open), cancelled by the buyer: at once before picking, through the
        warehouse after. Cancelled, everything paid is claimed back at once, never more."""
        self.orders_made += 1
        placed = self.clock - timedelta(hours=1)
        order = upsert_order(OrderInput(
            shop="shop", number=f"C-{self.orders_made}", buyer_email="buyer@example.com", currency="CNY",
            lines=[LineInput(position, f"Item {position}", "books", quantity, price, tax_paid=tax)
                   for position, (quantity, price, tax) in enumerate(lines, start=1)],
            placed_at=placed, paid_at=placed, shipping_fee=shipping_fee))
        order_id, line_ids = order.id, [line.id for line in order.lines]
        self.line_ids.extend(line_ids)
        if refund_first:
            try:
                case = services.open_case(line_ids[0], "refund_only", "no_reason", amount=1, now=self.clock)
                self.case_ids.append(case.id)
            except DomainError as error:
                self.refused("open_case", f"refund before cancelling order {order_id}", error)
        if partial and len(line_ids) > 1 and not picked:  # the second item first, the rest after
            try:
                order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="other", lines=[2], now=self.clock)
                self.case_ids.extend(db.session.scalars(select(Case.id).where(
                    Case.order_id == order_id, Case.reason == services.ORDER_CANCELLED)))
            except DomainError as error:
                self.refused("cancel_lines", f"order {order_id}", error)
        if picked:
            order_flow.act_on_order(order_id, "seller", "start_picking", now=self.clock)
        try:
            order_flow.act_on_order(order_id, "buyer", "cancel", reason="changed_mind", now=self.clock)
        except DomainError as error:
            self.refused("cancel_order", f"order {order_id}", error)
            return
        if picked and answer:
            order_flow.act_on_order(order_id, "warehouse", answer, now=self.clock)
        order = self.fresh(Order, order_id)
        note(f"  order {order_id} cancelled (picked={picked}, answer={answer}): {order.state}")
        event(f"order cancellation: {order.state}")
        if order.state == "cancelled":
            cases = db.session.scalars(select(Case).where(Case.order_id == order_id, Case.reason == services.ORDER_CANCELLED)).all()
            self.case_ids.extend(case.id for case in cases if case.id not in self.case_ids)
            for case in cases:
                self.observed[case.id].append(case.state)
            live = db.session.scalars(select(Refund.amount).join(Case, Case.id == Refund.case_id).where(
                Case.order_id == order_id, Refund.status.in_(("pending", "succeeded")))).all()
            paid = sum(line.paid_amount + line.tax_paid for line in order.lines) + order.shipping_fee
            assert sum(live) == paid, f"order {order_id}: cancelled, refunds {live} against {paid} paid"

    # --- time passes -------------------------------------------------------------------------
    @rule(duration=DURATIONS)
    def advance_clock(self, duration: timedelta) -> None:
        self.clock += duration
        note(f"  clock is now {self.clock.isoformat()}")

    @rule(duration=st.none() | DURATIONS)
    def run_sweeper(self, duration: timedelta | None) -> None:
        if duration is not None:
            self.clock += duration
        report = deadlines.sweep(now=self.clock)
        note(f"  sweep at {self.clock.isoformat()}: applied={report.applied} skipped={report.skipped} failed={report.failed}")
        event(f"sweep applied {min(report.applied, 2)}{'+' if report.applied > 2 else ''} timeout(s)")
        assert report.failed == 0, f"timeouts failed: {report.errors}"
        db.session.expire_all()
        still_due = db.session.scalars(select(Case.id).where(Case.due_at.is_not(None), Case.due_at <= self.clock,
                                                             Case.due_trigger.is_not(None))).all()  # a manual refund's waits for staff
        assert not still_due, f"cases {still_due} are still due after a sweep at {self.clock}"

    # --- money -------------------------------------------------------------------------------
    def pick_refund(self, data) -> int | None:
        """A refund to act on: mostly a pending one, sometimes any (which must be refused)."""
        db.session.expire_all()
        refunds = db.session.scalars(select(Refund).order_by(Refund.id)).all()
        if not refunds:
            return None
        pending = [r.id for r in refunds if r.status == "pending"]
        if pending and data.draw(MOSTLY, label="a pending refund"):
            return data.draw(st.sampled_from(pending), label="refund")
        return data.draw(st.sampled_from([r.id for r in refunds]), label="refund")

    @rule(data=st.data())
    def settle_refund(self, data) -> None:
        refund_id = self.pick_refund(data)
        if refund_id is None:
            return
        how = data.draw(st.sampled_from(["succeeded", "failed", "paid by staff", "bogus"]), label="outcome")
        before = db.session.get(Refund, refund_id).status
        try:
            if how == "paid by staff":
                refund = services.mark_refund_paid(refund_id, staff_id=1, reference="BANK-1", now=self.clock)
            else:
                refund = services.settle_refund(refund_id, how, reference="REF-1", message="card closed", now=self.clock)
        except DomainError as error:
            self.refused("settle_refund", f"settle refund {refund_id} ({before}) as {how}", error)
            return
        event(f"settled: {before} -> {refund.status}")
        note(f"  refund {refund_id}: {before} -> {refund.status}")

    @rule(data=st.data())
    def cancel_refund(self, data) -> None:
        """Staff withdraw a manual refund not paid yet (its amount is freed; retry_refund sends anew)."""
        refund_id = self.pick_refund(data)
        if refund_id is None:
            return
        before = db.session.get(Refund, refund_id).status
        reason = data.draw(TEXTS, label="reason")
        try:
            refund = services.cancel_refund(refund_id, reason, actor_id="1", now=self.clock)
        except DomainError as error:
            self.refused("cancel_refund", f"cancel refund {refund_id} ({before})", error)
            return
        event(f"cancelled a {before} refund")
        note(f"  refund {refund_id}: {before} -> {refund.status}")

    @rule(data=st.data())
    def retry_refund(self, data) -> None:
        db.session.expire_all()
        waiting = [
            case.id for case in db.session.scalars(select(Case).where(Case.state == "refunding").order_by(Case.id))
            if not any(refund.status == "pending" for refund in case.refunds)
        ]
        if waiting and data.draw(MOSTLY, label="a case whose refund failed"):
            case_id = data.draw(st.sampled_from(waiting), label="case")
        else:
            case_id = self.pick_case(data)
        if case_id is None:
            return
        try:
            refund = services.retry_refund(case_id, now=self.clock)
        except DomainError as error:
            self.refused("retry_refund", f"retry_refund on case {case_id}", error)
            return
        event("retried a refund")
        note(f"  retried the refund of case {case_id}: refund {refund.id} of {refund.amount}")

    @rule(data=st.data())
    def create_refund(self, data) -> None:
        case_id = self.pick_case(data)
        if case_id is None:
            return
        case = self.fresh(Case, case_id)
        refundable = services.refundable(case.line)
        telling = sorted({value for value in (case.amount, case.approved_amount, refundable) if value and value > 0}) or [1]
        amount = data.draw(
            mostly(st.sampled_from(telling) | st.integers(1, refundable + 10), INVALID_AMOUNTS),  # exact sums matter
            label="amount",
        )
        # A client's key may look like the ones the system makes for its own refunds: it must not
        # collide with them. The next one is "case-<id>-<trigger>-<event count>" when the case
        # enters refunding (this refund's own event comes first), "case-<id>-retry-<n>" on a retry.
        entering = {"requested": "approve", "offer_pending": "accept_offer", "received": "refund", "escalated": "decide"}
        events, attempts = len(case.events), len(case.refunds)
        system_shaped = st.one_of(
            st.builds(lambda n: f"case-{case_id}-{entering.get(case.state, 'approve')}-{events + n}", st.sampled_from([2, 1, 3])),
            st.builds(lambda n: f"case-{case_id}-retry-{attempts + n}", st.sampled_from([2, 1, 3])),
        )
        key = data.draw(
            st.one_of(
                st.sampled_from(["key-1", "key-2", "key-3"]),
                st.sampled_from(sorted(self.keys) or ["key-1"]),  # replays
                system_shaped,
            ),
            label="idempotency key",
        )
        payer = data.draw(st.sampled_from(["seller", "platform"]), label="payer")
        previous = self.keys.get(key)
        try:
            refund = services.create_refund(case_id, amount, key, payer=payer, now=self.clock)
        except DomainError as error:
            self.refused("create_refund", f"create_refund({case_id}, {amount!r}, {key!r})", error)
            same = isinstance(amount, int) and not isinstance(amount, bool) and previous is not None
            assert not (same and previous[:2] == (case_id, amount)), (
                f"replaying key {key!r} with the same case and amount was refused: {error}"
            )
            return
        event("created a refund" if previous is None else "replayed a refund")
        note(f"  created refund {refund.id} of {refund.amount} on case {case_id} with key {key!r}")
        if previous is None:
            self.keys[key] = (case_id, refund.amount, refund.id)
        else:
            assert previous[:2] == (case_id, refund.amount), (
                f"key {key!r} was used for case {previous[0]}, amount {previous[1]}; "
                f"now accepted for case {case_id}, amount {refund.amount}"
            )
            assert refund.id == previous[2], f"replaying key {key!r} made a second refund"

    # --- invariants --------------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        db.session.expire_all()
        lines = db.session.scalars(select(OrderLine)).all()
        cases = db.session.scalars(select(Case).order_by(Case.id)).all()
        refunds = db.session.scalars(select(Refund).order_by(Refund.id)).all()
        events = db.session.scalars(select(CaseEvent).order_by(CaseEvent.id)).all()
        lines_by_id = {line.id: line for line in lines}
        events_of: dict[int, list[CaseEvent]] = defaultdict(list)
        for item in events:
            events_of[item.case_id].append(item)
        self.check_refund_ceiling(lines, refunds)
        for case in cases:
            newly_ended = case.state in TERMINAL_STATES and case.id not in self.terminal
            self.check_terminal_is_final(case)
            self.check_event_chain(case, events_of[case.id])
            self.check_requested_amount(case)
            self.check_refunding(case, lines_by_id[case.line_id], events_of[case.id], refunds, newly_ended)
        self.check_one_open_case_per_line(cases)
        self.check_units_covered(lines, cases)
        self.check_negotiation(cases)
        self.check_express(cases, events)
        self.check_order_events()
        db.session.commit()

    def check_order_events(self) -> None:
        """Every change of an order's state has its one event, in a chain from pending_payment."""
        events_of: dict[int, list[OrderEvent]] = defaultdict(list)
        for item in db.session.scalars(select(OrderEvent).order_by(OrderEvent.id)):
            events_of[item.order_id].append(item)
        for order in db.session.scalars(select(Order)):
            current = "pending_payment"
            for item in events_of[order.id]:
                assert item.from_state == current, (
                    f"order {order.id}: event {item.trigger} from {item.from_state!r}, the order was {current!r}")
                current = item.to_state
            assert order.state == current, f"order {order.id} is {order.state!r}, its events end in {current!r}"

    def check_negotiation(self, cases: list[Case]) -> None:
        for case in cases:
            data = case.data or {}
            assert int(data.get("offers", 0)) <= ROUNDS and int(data.get("counter_offers", 0)) <= ROUNDS, (
                f"case {case.id} went past {ROUNDS} rounds: {data}")
            if case.state == "counter_offered":
                # (an exchange or a repair asks for no money: the line's value bounds it instead)
                assert case.offer_amount is not None and case.offer_amount < data["counter_amount"] and (
                    not case.amount or data["counter_amount"] < case.amount), (
                    f"case {case.id}: counter {data.get('counter_amount')} is not between offer {case.offer_amount} "
                    f"and request {case.amount}")

    def check_express(self, cases: list[Case], events: list[CaseEvent]) -> None:
        express_events = {e.case_id: e for e in events if e.trigger == "express_refund"}
        out = 0
        for case in cases:
            assert case.express_state in (None, "refunded", "arrived", "revoked"), case.express_state
            if case.express_state is not None:
                assert case.id in express_events, f"case {case.id} is express {case.express_state} without its money event"
                assert express_events[case.id].amount == case.express_amount
            if case.express_state == "refunded":
                out += case.express_amount or 0
        assert out <= EXPRESS_QUOTA, f"express money out {out} exceeds the quota {EXPRESS_QUOTA}"
        if self.revoked_by_event is not None:
            later = [e.case_id for e in express_events.values() if e.id > self.revoked_by_event]
            assert not later, f"cases {later} were express-refunded after the buyer's privilege was revoked"
        elif any(case.express_state == "revoked" for case in cases):
            self.revoked_by_event = max(e.id for e in events)

    def check_refund_ceiling(self, lines: list[OrderLine], refunds: list[Refund]) -> None:
        """Money never above what was paid: a line's refunds within its price and tax, and the
        order's shipping fee refunded at most once, in full."""
        live: dict[int, list[int]] = defaultdict(list)
        shipping: dict[int, list[int]] = defaultdict(list)
        order_of = {line.id: line.order_id for line in lines}
        for refund in refunds:
            assert refund.amount > 0, f"refund {refund.id} has amount {refund.amount}"
            if refund.status in ("pending", "succeeded"):
                if refund.component == "shipping":
                    shipping[order_of[refund.line_id]].append(refund.amount)
                else:
                    live[refund.line_id].append(refund.amount)
        for order in {line.order for line in lines}:
            assert len(shipping[order.id]) <= 1, f"order {order.id}: its shipping fee is refunded twice {shipping[order.id]}"
            assert sum(shipping[order.id]) in (0, order.shipping_fee) and sum(shipping[order.id]) == order.shipping_refunded, (
                f"order {order.id}: shipping refunds {shipping[order.id]}, fee {order.shipping_fee}, "
                f"recorded as refunded {order.shipping_refunded}")
        for line in lines:
            total = sum(live[line.id])
            assert total <= line.refund_ceiling, (
                f"line {line.id}: refunds {live[line.id]} exceed what was paid ({line.paid_amount} + tax {line.tax_paid})"
            )
            assert total == line.refund_committed, (
                f"line {line.id}: pending + succeeded refunds {live[line.id]} sum to {total}, "
                f"but refund_committed is {line.refund_committed}"
            )

    def check_terminal_is_final(self, case: Case) -> None:
        seen = self.terminal.get(case.id)
        if seen is not None:
            assert case.state == seen, f"case {case.id} left the terminal state {seen!r} for {case.state!r}"
        elif case.state in TERMINAL_STATES:
            self.terminal[case.id] = case.state
        observed = self.observed[case.id]
        if not observed or observed[-1] != case.state:
            observed.append(case.state)

    def check_event_chain(self, case: Case, events: list[CaseEvent]) -> None:
        assert events, f"case {case.id} has no events"
        current: str | None = None
        chain: list[str] = []
        for item in events:
            assert item.from_state == current, (
                f"case {case.id}: event {item.id} ({item.trigger}) starts from {item.from_state!r}, "
                f"but the case was in {current!r}; events: {[(e.trigger, e.from_state, e.to_state) for e in events]}"
            )
            if item.from_state != item.to_state:
                current = item.to_state
                chain.append(current)
        assert case.state == current, f"case {case.id} is {case.state!r}, but its last state change says {current!r}"
        position = 0
        for state in self.observed[case.id]:  # each state we saw has its own event, in order
            while position < len(chain) and chain[position] != state:
                position += 1
            assert position < len(chain), f"case {case.id}: states seen {self.observed[case.id]} are not on its event chain {chain}"
            position += 1

    def check_requested_amount(self, case: Case) -> None:
        if case.kind in ("refund_only", "return_refund"):
            bound = unit_value_bound(case.line, case.quantity)
            if case.reason == services.ORDER_CANCELLED:  # the system's: the whole line, its import tax too
                bound = case.line.paid_amount + case.line.tax_paid
            assert case.amount <= bound, (
                f"case {case.id} asks for {case.amount}, more than its {case.quantity} unit(s) are worth ({bound})"
            )

    def check_refunding(
        self, case: Case, line: OrderLine, events: list[CaseEvent], refunds: list[Refund], newly_ended: bool
    ) -> None:
        """DESIGN §2: refunding → completed once the case's refunds succeeded, and the case never
        claims success after a failure. So a case completed by its refund has nothing pending and,
        when it completed, had been paid what was approved (or all the line still had); and a case
        in refunding can still get there: a refund is pending, or ``retry_refund`` has something
        left to claim."""
        mine = [r for r in refunds if r.case_id == case.id]
        pending = [r.id for r in mine if r.status == "pending"]
        paid = sum(r.amount for r in mine if r.status == "succeeded")
        approved = case.approved_amount or 0
        due = min(approved, (case.data or {}).get("refund_due", approved))  # after adjustments and the ceiling
        line_left = line.refund_ceiling - line.refund_committed
        changes = [e for e in events if e.from_state != e.to_state]
        if case.state == "completed" and changes and changes[-1].trigger == "refund_succeeded":
            assert not pending, f"case {case.id} was completed by its refund while refunds {pending} are pending"
            assert not newly_ended or paid >= due or line_left == 0, (
                f"case {case.id} was completed by its refund, but only {paid} of the {due} due was paid: "
                f"{[(r.id, r.amount, r.status) for r in mine]}"
            )
        shipping_owed = bool((case.data or {}).get("shipping_fee_refund")) and not any(
            r.component == "shipping" and r.status in ("pending", "succeeded") for r in mine)
        mine = [r for r in mine if r.component == "goods"]
        if case.state == "refunding" and not pending and not shipping_owed:
            already = sum(r.amount for r in mine if r.status in ("pending", "succeeded"))
            left = min(approved, line_left + already) - already
            assert left > 0, (
                f"case {case.id} is stuck in refunding: nothing pending and nothing left to retry "
                f"(approved {approved}, refunds {[(r.id, r.amount, r.status) for r in mine]})"
            )

    def check_units_covered(self, lines: list[OrderLine], cases: list[Case]) -> None:
        """No unit is covered twice: the units the cases of a line still hold (open, or refunded
        by a completed return, less the missing ones released) never exceed what was bought."""
        held: dict[int, int] = defaultdict(int)
        for case in cases:
            if case.state in ("cancelled", "closed") or (case.state == "completed" and case.kind in ("exchange", "repair")):
                continue
            assert 0 <= (case.released_quantity or 0) < case.quantity, f"case {case.id} released {case.released_quantity}"
            held[case.line_id] += case.quantity - (case.released_quantity or 0)
        for line in lines:
            assert held[line.id] <= line.quantity, f"line {line.id}: cases hold {held[line.id]} of {line.quantity} units"

    def check_one_open_case_per_line(self, cases: list[Case]) -> None:
        open_cases: dict[int, list[int]] = defaultdict(list)
        for case in cases:
            if case.state in TERMINAL_STATES:
                assert case.open_line_id is None, f"ended case {case.id} still holds line {case.open_line_id}"
                assert case.due_at is None, f"ended case {case.id} still has a deadline"
            else:
                assert case.open_line_id == case.line_id, f"open case {case.id} does not hold its line"
                open_cases[case.line_id].append(case.id)
        for line_id, ids in open_cases.items():
            assert len(ids) <= 1, f"line {line_id} has several open cases: {ids}"


CaseLifecycle.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # the explain phase traces every line of every replay: minutes on a failure, for little
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
TestCaseLifecycle = CaseLifecycle.TestCase
