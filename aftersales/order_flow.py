"""The order's workflow in the database (its table: ``aftersales.order_workflow``).

* :func:`act_on_order` is the one way a person (or the warehouse) moves an order: the buyer
  cancels, the staff start picking or pack, the warehouse intercepts or says it is too late.
* :func:`follow_fulfilment` moves it as the facts a host pushes say (paid, shipped, delivered),
  as the system, inside the push's transaction (``aftersales.orders``).
* :func:`sweep_orders` fires due timers (an unpaid order expires), for ``deadlines.sweep``.

Every change writes an :class:`OrderEvent` in its transaction. An order cancelled after payment
gives its money back through the refund service: one system refund-only case per line with money
left (reason ``order_cancelled``), claimed against the line's ceiling like any refund, the
shipping fee once with the first, paid by the payment plugin or marked paid by staff. Plugins are
told through the outbox (``aftersales_order_cancelled``: stock, coupons, points), and asked to
stop a picked order (``aftersales_intercept_order``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import bindparam, or_, select

from . import services
from .database import write_transaction
from .errors import AfterSalesError, InvalidInput, NotAllowed, NotFound
from .extensions import db
from .i18n import _, money_text
from .models import Case, Order, OrderEvent, OrderLine, utcnow
from .order_workflow import BEFORE_SHIPMENT, CANCEL_REASONS, shipped_anything
from .runtime import Runtime, current
from .workflow import INITIAL_STATE, CompiledWorkflow, TransitionContext

log = logging.getLogger(__name__)

#: The reason an order cancelled by the sweeper was cancelled for.
UNPAID = "unpaid"
_ORDER_FOR_UPDATE = select(Order).where(Order.id == bindparam("order_id")).with_for_update()
#: A buyer's request still open on the order (the refunds of an earlier partial cancellation are not).
_OPEN_CASE_ON_ORDER = select(Case.id).where(Case.order_id == bindparam("order_id"), Case.open_line_id.is_not(None),
                                            Case.reason != services.ORDER_CANCELLED).limit(1)


def _order_for_update(order_id: int) -> Order:
    """The order, for a transaction that changes it (its row locked on PostgreSQL; SQLite's
    ``BEGIN IMMEDIATE`` lets one writer in at a time)."""
    if db.session.get_bind().dialect.name == "postgresql":
        order = db.session.execute(_ORDER_FOR_UPDATE, {"order_id": order_id},
                                   execution_options={"populate_existing": True}).scalar_one_or_none()
    else:
        order = db.session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise NotFound(_("No such order."))
    return order


def act_on_order(order_id: int, actor: str, trigger: str, *, actor_id: str | None = None,
                 now: datetime | None = None, **data: Any) -> Order:
    """Fire ``trigger`` on the order as ``actor`` (``buyer``, ``seller``, ``warehouse``, ...), if
    its table allows it now; refused with :class:`NotAllowed` or :class:`InvalidInput` otherwise."""
    runtime = current()
    now = now or utcnow()
    with write_transaction():
        order = _order_for_update(order_id)
        transition(runtime, order, actor, actor_id, trigger, data, now)
    services.deliver_new()
    return order


def allowed_order_triggers(order: Order, actor: str, now: datetime | None = None) -> list[str]:
    """What ``actor`` may do on the order now, in table order."""
    runtime = current()
    context = TransitionContext(order, actor, {}, now or utcnow(), runtime.settings)
    return runtime.order_workflow().allowed_triggers(context, order.state)


def transition(runtime: Runtime, order: Order, actor: str, actor_id: str | None, trigger: str,
               data: Mapping[str, Any], now: datetime) -> OrderEvent:
    """Inside the caller's transaction: check and fire one step of the order and write its event."""
    workflow = runtime.order_workflow()
    if workflow.is_terminal(order.state):
        raise NotAllowed(_("This order has ended; nothing more can be done on it."))
    rows = workflow.rows_for(order.state, trigger, actor)
    if not rows:
        raise NotAllowed(_("You cannot do \u201c%(action)s\u201d on this order now.", action=trigger))
    inputs = services._inputs_for(rows, data)
    cancelled_lines: list[OrderLine] = []
    if trigger in ("cancel", "cancel_lines"):
        _check_cancel(order, inputs)
    if trigger == "cancel_lines":
        cancelled_lines = _lines_to_cancel(order, inputs)
    row = workflow.fire(TransitionContext(order, actor, inputs, now, runtime.settings), order.state, trigger)
    if row is None:
        raise NotAllowed(_("The time for \u201c%(action)s\u201d has passed or its conditions are not met.", action=trigger))
    from_state = order.state
    order.state = row.dest
    if trigger in ("cancel", "cancel_lines"):
        order.cancel_reason, order.cancel_note = inputs["reason"], inputs.get("note") or None
    elif trigger == "expire_unpaid":
        order.cancel_reason = UNPAID
    if row.dest != from_state:
        set_order_deadline(runtime, workflow, order)
    if workflow.is_terminal(order.state):
        order.ended_at = now
    event_data: dict[str, Any] = {key: inputs[key] for key in ("reason", "timeout") if key in inputs}
    if order.state == "cancelled" or trigger == "cancel_lines":
        if order.state == "cancelled":  # the whole order: what is left of it (an intercepted one too)
            cancelled_lines = [line for line in order.lines if line.cancelled_at is None]
        given_back = _cancel_lines(runtime, order, cancelled_lines, now, whole=order.state == "cancelled")
        event_data.update(given_back)
        services._write_outbox("order_cancelled", {"order_id": order.id, **given_back})
    elif order.state == "cancelling":
        services._write_outbox("intercept_order", {"order_id": order.id})
    event = OrderEvent(order_id=order.id, actor_type=actor, actor_id=actor_id, trigger=trigger, from_state=from_state,
                       to_state=order.state, note=inputs.get("note") or "", data=event_data, created_at=now)
    db.session.add(event)
    return event


def _check_cancel(order: Order, inputs: Mapping[str, Any]) -> None:
    if inputs.get("reason") not in CANCEL_REASONS:
        raise InvalidInput(_("Please choose why you are cancelling the order."), field="reason")
    if order.id is not None and db.session.execute(_OPEN_CASE_ON_ORDER, {"order_id": order.id}).first():
        raise NotAllowed(_("A request is open on an item of this order: withdraw it, or wait for its answer, "
                           "before cancelling the order."))


def _lines_to_cancel(order: Order, inputs: Mapping[str, Any]) -> list[OrderLine]:
    """The lines a partial cancellation names (``lines``: positions), checked: each is a line of
    the order not cancelled yet, some stay, and no coupon's threshold breaks."""
    wanted = inputs.get("lines")
    if isinstance(wanted, (int, str)):
        wanted = [wanted]
    try:
        positions = {int(position) for position in wanted or ()}
    except (TypeError, ValueError):
        positions = set()
    live = {line.position: line for line in order.lines if line.cancelled_at is None}
    if not positions or not positions <= set(live):
        raise InvalidInput(_("Choose the items to cancel from those of the order not cancelled yet."), field="lines")
    if positions == set(live):
        raise InvalidInput(_("These are all the items left: cancel the whole order instead."), field="lines")
    for coupon in order.coupons:
        if coupon.returned_at is not None:
            continue
        staying = [live[p] for p in coupon.positions if p in live and p not in positions]
        worth = sum(line.unit_price * line.quantity for line in staying)
        if staying and worth < coupon.threshold:
            raise NotAllowed(_("Without these items the order is below the %(threshold)s the coupon %(code)s needs: "
                               "cancel the whole order instead.", threshold=money_text(coupon.threshold, order.currency),
                               code=coupon.code))
    return [live[p] for p in sorted(positions)]


def _cancel_lines(runtime: Runtime, order: Order, lines: list[OrderLine], now: datetime, *, whole: bool) -> dict[str, Any]:
    """The lines are cancelled: their money comes back (the shipping fee too when ``whole``), a
    coupon every line of which is now cancelled is given back, and the lines' points. Returns what
    was given back, for the event and the plugins."""
    for line in lines:
        line.cancelled_at = now
    refunded = _refund_cancelled_lines(runtime, order, lines, now, whole=whole)
    cancelled = {line.position for line in order.lines if line.cancelled_at is not None}
    coupons = []
    for coupon in order.coupons:
        if coupon.returned_at is None and set(coupon.positions) <= cancelled:
            coupon.returned_at = now
            coupons.append(coupon.code)
    points = (order.points_used - order.points_returned) if whole else min(
        sum(line.points_share for line in lines), order.points_used - order.points_returned)
    order.points_returned += points
    return {"refunded": refunded, "lines": [line.position for line in lines], "coupons": coupons, "points": points}


def set_order_deadline(runtime: Runtime, workflow: CompiledWorkflow, order: Order) -> None:
    """The order's timer in its state: an unpaid order expires ``AFTERSALES_UNPAID_TIMEOUT_HOURS``
    after it was placed (shortened by ``aftersales_unpaid_timeout``); other states have none."""
    deadline = workflow.deadline(order.state)
    if deadline is None:
        order.due_at = order.due_trigger = None
        return
    after = deadline.after
    if order.state == "pending_payment":
        after = unpaid_timeout(runtime, order, after)
    order.due_at = (order.placed_at or utcnow()) + after
    order.due_trigger = deadline.trigger


def unpaid_timeout(runtime: Runtime, order: Order, default: timedelta) -> timedelta:
    """The shortest wait for payment the plugins of the order's categories allow (``default`` at most)."""
    shortest = default
    for category in sorted({line.category for line in order.lines}):
        for answer in runtime.plugins.call("aftersales_unpaid_timeout", category, category=category, default=default):
            if answer is None:
                continue
            if not isinstance(answer, timedelta) or answer <= timedelta(0):
                raise TypeError(f"aftersales_unpaid_timeout must return a positive timedelta or None, got {answer!r}")
            shortest = min(shortest, answer)
    return shortest


def _refund_cancelled_lines(runtime: Runtime, order: Order, lines: list[OrderLine], now: datetime, *,
                            whole: bool) -> int:
    """What the buyer paid for ``lines`` comes back: a system refund-only case per line with money
    left, its refund claimed like any other (the line's ceiling, the payment plugin or staff), and,
    when the whole order is cancelled, the shipping fee once, with the first. Returns the money
    claimed (minor units)."""
    if order.paid_at is None:
        return 0
    claimed = 0
    with_money = [line for line in lines if services.refundable(line) > 0]
    if whole and not with_money and lines and order.shipping_fee and not order.shipping_refunded:
        with_money = lines[:1]  # coupons and points paid the goods: the shipping fee still comes back, on a case
    for line in with_money:
        amount = services.refundable(line)
        case = Case(
            shop_id=order.shop_id, order_id=order.id, line_id=line.id, open_line_id=line.id, category=line.category,
            kind="refund_only", reason=services.ORDER_CANCELLED, description="", quantity=line.quantity, amount=amount,
            currency=order.currency, state=INITIAL_STATE, shipping_payer="seller", approved_amount=amount,
            decision_payer="seller", data={} if whole else {"some_lines": True}, created_at=now, updated_at=now,
        )
        case.line = line
        db.session.add(case)
        services._transition(runtime, case, "system", None, "cancel_order", {}, now)
        # What was claimed, after the plugins' adjustments (and the shipping fee, with the first).
        claimed += services.refund_totals(case).committed + services.refund_totals(case, "shipping").committed
    return claimed


class OrderProblem(InvalidInput):
    """A pushed fact the order's state cannot take (a cancelled order cannot ship)."""


def follow_fulfilment(order: Order, now: datetime | None = None, *, newly_paid: bool = False) -> list[OrderEvent]:
    """Inside the push's transaction: move the order as its facts say, as the system (paid ->
    ``pay``; shipped -> ``ship``; delivered -> ``deliver``), one event per step. A new unpaid
    order gets its expiry; a cancelled order refuses to be shipped, and one cancelled before it was
    paid refuses the payment (``newly_paid``: this push brings the first ``paid_at``). Lines the
    buyer cancelled before paying are refunded once the payment is recorded."""
    runtime = current()
    now = now or utcnow()
    workflow = runtime.order_workflow()
    shipped = shipped_anything(order)
    if order.state == "cancelled":
        if shipped:
            raise OrderProblem(_("order %(number)s was cancelled: it cannot be shipped", number=order.number))
        if newly_paid:
            raise OrderProblem(_("order %(number)s was cancelled before it was paid: refund the payment instead "
                                 "of recording it", number=order.number))
        return []
    events = []
    while True:
        if order.state == "pending_payment" and order.paid_at is not None:
            trigger = "pay"
        elif order.state in BEFORE_SHIPMENT and order.state != "pending_payment" and shipped:
            trigger = "ship"
        elif order.state == "shipped" and order.delivered_at is not None:
            trigger = "deliver"
        else:
            break
        events.append(transition(runtime, order, "system", None, trigger, {}, now))
        if trigger == "pay":  # items cancelled while unpaid: the payment covered them, it comes back
            early = [line for line in order.lines if line.cancelled_at is not None and services.refundable(line) > 0]
            if early:
                _refund_cancelled_lines(runtime, order, early, now, whole=False)
    if order.state == "pending_payment":
        if shipped:  # shipped before payment (cash on delivery): nothing to expire
            order.due_at = order.due_trigger = None
        elif order.due_at is None:
            set_order_deadline(runtime, workflow, order)
    return events


@dataclass
class OrderSweepReport:
    applied: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


_DUE_ORDERS = (select(Order).where(Order.due_at.is_not(None), Order.due_at <= bindparam("now"), Order.due_trigger.is_not(None))
               .order_by(Order.due_at, Order.id))


def sweep_orders(now: datetime | None = None, batch_size: int = 200) -> OrderSweepReport:
    """Fire every order timer due at ``now``: a batch per transaction, a savepoint per order (one
    that fails is reported and left as it was; the rest commit). Re-checked at apply time."""
    runtime = current()
    now = now or utcnow()
    report = OrderSweepReport()
    after: tuple[datetime, int] | None = None
    while True:
        with write_transaction():
            query = _DUE_ORDERS
            if after is not None:
                query = query.where(Order.due_at >= after[0], or_(Order.due_at > after[0], Order.id > after[1]))
            query = query.limit(batch_size)
            if db.session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=Order)
            batch = list(db.session.scalars(query, {"now": now}))
            for order in batch:
                after = (order.due_at, order.id)
                try:
                    with db.session.begin_nested():
                        transition(runtime, order, "system", None, order.due_trigger, {"timeout": True}, now)
                    report.applied += 1
                except (AfterSalesError, TypeError) as error:
                    report.failed += 1
                    report.errors.append(f"order {order.id}: {error}")
                    log.warning("order %s: timer %s failed: %s", order.id, order.due_trigger, error)
        services.deliver_new()
        if len(batch) < batch_size:
            return report


def deliver(runtime: Runtime, topic: str, payload: Mapping[str, Any]) -> None:
    """An order's outbox message (``services.deliver_outbox``): tell the plugins of a cancellation,
    or ask them to stop a picked order. No transaction is held while a plugin runs."""
    order = db.session.get(Order, payload["order_id"])
    db.session.commit()
    if order is None:
        return
    if topic == "order_cancelled":
        runtime.plugins.call("aftersales_order_cancelled", order=order, reason=order.cancel_reason or "",
                             refunded=int(payload.get("refunded", 0)), lines=list(payload.get("lines", [])),
                             coupons=list(payload.get("coupons", [])), points=int(payload.get("points", 0)))
        return
    if order.state != "cancelling":
        return  # answered meanwhile (staff, or the parcel shipped)
    answer = runtime.plugins.call("aftersales_intercept_order", order=order, reason=order.cancel_reason or "")
    if answer is None:
        return  # the shop's staff answer on the order page
    try:
        act_on_order(order.id, "warehouse", "intercept" if answer else "too_late", actor_id="plugin")
    except NotAllowed:
        pass  # the order moved on while the warehouse was asked


__all__ = ["act_on_order", "allowed_order_triggers", "follow_fulfilment", "sweep_orders", "UNPAID"]
