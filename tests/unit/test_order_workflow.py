"""The order's own workflow (aftersales/order_workflow.py, aftersales/order_flow.py): payment,
picking, packing, the buyer's cancellation (at once before picking, through the warehouse after),
the unpaid timeout, and the money a cancellation gives back through the refund service."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from aftersales import hookimpl, order_flow, services
from aftersales.deadlines import sweep
from aftersales.errors import InvalidInput, NotAllowed
from aftersales.extensions import db
from aftersales.models import Case, Order, OrderEvent, Refund
from aftersales.order_workflow import CANCEL_REASONS, ORDER_TABLE, OrderWorkflowBuilder
from aftersales.orders import LineInput, OrderInput, OrderProblems, add_shipment, mark_delivered, mark_shipped, upsert_order
from aftersales.runtime import current
from tests.conftest import NOW, make_app

FEE = 800


def push(number: str = "O-1", *, paid: bool = True, shipped: bool = False, delivered: bool = False,
         lines: list[LineInput] | None = None, shipping_fee: int = FEE, placed=NOW - timedelta(hours=2)) -> Order:
    from aftersales.orders import ensure_shop

    ensure_shop("shop", "Test Shop", return_address="1 Return Road")
    return upsert_order(OrderInput(
        shop="shop", number=number, buyer_email="buyer@example.com", currency="CNY",
        lines=lines or [LineInput(1, "Book", "books", 2, 5000), LineInput(2, "Pen", "stationery", 1, 1999)],
        placed_at=placed, paid_at=placed + timedelta(minutes=5) if paid else None,
        shipped_at=placed + timedelta(hours=1) if shipped or delivered else None,
        delivered_at=placed + timedelta(hours=30) if delivered else None, shipping_fee=shipping_fee,
    ))


def fresh(order_id: int) -> Order:
    db.session.remove()
    return db.session.get(Order, order_id)


def events(order_id: int) -> list[tuple[str, str, str, str]]:
    return [(e.actor_type, e.trigger, e.from_state, e.to_state) for e in db.session.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id))]


def test_the_table_is_checked_and_every_state_is_reachable(app):
    builder = OrderWorkflowBuilder(current().settings)
    assert builder.problems() == []
    workflow = current().order_workflow()
    assert workflow.initial_state == "pending_payment" and workflow.is_terminal("delivered") and workflow.is_terminal("cancelled")
    assert workflow.deadline("pending_payment").trigger == "expire_unpaid"
    assert workflow.deadline("pending_payment").after == timedelta(hours=24)


def test_the_compiled_table_answers_as_the_machine_does(app):
    workflow = current().order_workflow()
    from aftersales.workflow import TransitionContext

    for row in ORDER_TABLE:
        context = TransitionContext(None, row.actor, {"reason": "other"}, NOW, current().settings)
        assert workflow.fire(context, row.source, row.trigger) == workflow.fire_through_machine(context, row.source, row.trigger)
        assert workflow.allowed_triggers(context, row.source) == workflow.allowed_through_machine(context, row.source)


def test_pushed_facts_move_the_order_as_the_system(app):
    order = push(paid=False)
    assert order.state == "pending_payment" and order.due_trigger == "expire_unpaid"
    assert order.due_at == order.placed_at + timedelta(hours=24)
    push(paid=True)
    assert fresh(order.id).state == "paid" and fresh(order.id).due_at is None
    push(paid=True, delivered=True)
    order = fresh(order.id)
    assert order.state == "delivered" and order.ended_at is not None
    assert events(order.id) == [("system", "pay", "pending_payment", "paid"), ("system", "ship", "paid", "shipped"),
                                ("system", "deliver", "shipped", "delivered")]


def test_parcels_and_the_order_calls_move_it_too(app):
    order = push()
    add_shipment("shop", "O-1", "SF", "SF1", {1: 2})
    assert fresh(order.id).state == "shipped"  # the first parcel left: nothing left to cancel
    order2 = push("O-2")
    mark_shipped("shop", "O-2")
    mark_delivered("shop", "O-2")
    assert fresh(order2.id).state == "delivered"


def test_staff_pick_and_pack_and_the_buyer_cannot(app):
    order = push()
    with pytest.raises(NotAllowed):
        order_flow.act_on_order(order.id, "buyer", "start_picking")
    order_flow.act_on_order(order.id, "seller", "start_picking", actor_id="7")
    order_flow.act_on_order(order.id, "seller", "pack", actor_id="7")
    assert fresh(order.id).state == "packed"
    assert events(order.id)[-2:] == [("seller", "start_picking", "paid", "picking"), ("seller", "pack", "picking", "packed")]


def test_cancel_needs_a_known_reason_and_refuses_unknown_inputs(app):
    order = push()
    with pytest.raises(InvalidInput) as missing:
        order_flow.act_on_order(order.id, "buyer", "cancel")
    assert missing.value.field == "reason"
    with pytest.raises(InvalidInput):
        order_flow.act_on_order(order.id, "buyer", "cancel", reason="bored")
    with pytest.raises(InvalidInput) as unknown:
        order_flow.act_on_order(order.id, "buyer", "cancel", reason="other", colour="red")
    assert "colour" in str(unknown.value)
    assert fresh(order.id).state == "paid"


def _refunds(order_id: int) -> list[Refund]:
    return list(db.session.scalars(select(Refund).join(Case, Case.id == Refund.case_id)
                                   .where(Case.order_id == order_id).order_by(Refund.id)))


def test_cancel_before_picking_refunds_everything_paid_once(app):
    order = push()
    paid = sum(line.paid_amount for line in order.lines) + FEE
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="changed_mind", note="ordered twice")
    order = fresh(order.id)
    assert order.state == "cancelled" and order.cancel_reason == "changed_mind" and order.cancel_note == "ordered twice"
    refunds = _refunds(order.id)
    assert sum(r.amount for r in refunds) == paid  # every line's money and the shipping fee
    assert sorted(r.component for r in refunds) == ["goods", "goods", "shipping"]
    assert order.shipping_refunded == FEE
    cases = db.session.scalars(select(Case).where(Case.order_id == order.id)).all()
    assert {(c.kind, c.reason, c.state) for c in cases} == {("refund_only", "order_cancelled", "refunding")}
    assert events(order.id)[-1] == ("buyer", "cancel", "paid", "cancelled")
    assert db.session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id)).all()[-1].data["refunded"] == paid
    for refund in refunds:  # staff pay them by hand (no payment plugin): the cases complete
        services.mark_refund_paid(refund.id, 1, "BANK")
    order_id = order.id
    db.session.remove()
    assert {c.state for c in db.session.scalars(select(Case).where(Case.order_id == order_id))} == {"completed"}
    # Nothing more to ask: the lines are refunded and the order is cancelled.
    line = fresh(order_id).lines[0]
    assert "cancelled" in " ".join(services.line_eligibility(line, NOW).options["refund_only"].why_not)


def test_an_unpaid_order_cancelled_by_the_buyer_refunds_nothing(app):
    order = push(paid=False)
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="too_expensive")
    order = fresh(order.id)
    assert order.state == "cancelled" and order.due_at is None and _refunds(order.id) == []


def test_after_picking_the_cancel_asks_the_warehouse_and_staff_answer(app):
    order = push()
    order_flow.act_on_order(order.id, "seller", "start_picking")
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="found_better")
    assert fresh(order.id).state == "cancelling" and _refunds(order.id) == []  # no hook answered: staff decide
    with pytest.raises(NotAllowed):
        order_flow.act_on_order(order.id, "buyer", "intercept")
    order_flow.act_on_order(order.id, "warehouse", "intercept", actor_id="7")
    assert fresh(order.id).state == "cancelled"
    assert sum(r.amount for r in _refunds(order.id)) == 5000 * 2 + 1999 + FEE


def test_too_late_ships_the_order_and_refunds_nothing(app):
    order = push()
    order_flow.act_on_order(order.id, "seller", "start_picking")
    order_flow.act_on_order(order.id, "seller", "pack")
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="ordered_by_mistake")
    order_flow.act_on_order(order.id, "warehouse", "too_late", note="already with the carrier")
    order = fresh(order.id)
    assert order.state == "shipped" and _refunds(order.id) == []
    assert events(order.id)[-1] == ("warehouse", "too_late", "cancelling", "shipped")
    push(paid=True, delivered=True)  # the host's later push: delivered
    assert fresh(order.id).state == "delivered"


def test_a_cancelled_order_refuses_to_be_shipped(app):
    order = push()
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")
    with pytest.raises(OrderProblems) as refused:
        push(shipped=True)
    assert "cancelled" in str(refused.value)
    push()  # the same facts again are fine
    assert fresh(order.id).state == "cancelled"


def test_an_open_request_stops_the_cancellation(app):
    order = push()
    services.open_case(order.lines[0].id, "refund_only", "no_reason", now=NOW)
    with pytest.raises(NotAllowed, match="request is open"):
        order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")


def test_the_sweeper_cancels_an_unpaid_order_once(app):
    order_id = push(paid=False, placed=NOW - timedelta(hours=30)).id
    other_id = push("O-2", paid=False, placed=NOW - timedelta(hours=2)).id
    report = sweep(now=NOW)
    assert report.orders_applied == 1
    assert fresh(order_id).state == "cancelled" and fresh(order_id).cancel_reason == "unpaid"
    assert fresh(other_id).state == "pending_payment"
    assert events(order_id) == [("system", "expire_unpaid", "pending_payment", "cancelled")]
    assert sweep(now=NOW).orders_applied == 0
    with pytest.raises(OrderProblems, match="cancelled before it was paid"):
        push(paid=True, placed=NOW - timedelta(hours=30))


class ShortWait:
    @hookimpl
    def aftersales_categories(self):
        return ["fresh"]

    @hookimpl
    def aftersales_unpaid_timeout(self, category, default):
        return timedelta(hours=2)


class Warehouse:
    answer = True
    cancelled: list = []

    @hookimpl
    def aftersales_intercept_order(self, order, reason):
        return self.answer

    @hookimpl
    def aftersales_order_cancelled(self, order, reason, refunded, lines, coupons, points):
        self.cancelled.append((order.number, reason, refunded))


def test_a_plugin_shortens_the_unpaid_wait_for_its_category_only(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        current().plugins.register(ShortWait(), name="short_wait")
        books = push("B-1", paid=False)
        fresh_food = push("F-1", paid=False, lines=[LineInput(1, "Milk", "fresh", 1, 900), LineInput(2, "Book", "books", 1, 100)])
        assert books.due_at - books.placed_at == timedelta(hours=24)
        assert fresh_food.due_at - fresh_food.placed_at == timedelta(hours=2)  # the shortest of its lines'


def test_the_warehouse_hook_intercepts_and_the_cancellation_is_told(tmp_path):
    warehouse = Warehouse()
    warehouse.cancelled = []
    app = make_app(tmp_path)
    with app.app_context():
        current().plugins.register(warehouse, name="warehouse")
        order = push()
        order_flow.act_on_order(order.id, "seller", "start_picking")
        order_flow.act_on_order(order.id, "buyer", "cancel", reason="changed_mind")
        assert fresh(order.id).state == "cancelled"
        assert events(order.id)[-1] == ("warehouse", "intercept", "cancelling", "cancelled")
        assert warehouse.cancelled == [("O-1", "changed_mind", 5000 * 2 + 1999 + FEE)]
        warehouse.answer = False
        second = push("O-2")
        order_flow.act_on_order(second.id, "seller", "start_picking")
        order_flow.act_on_order(second.id, "buyer", "cancel", reason="changed_mind")
        assert fresh(second.id).state == "shipped"


def test_the_reasons_are_the_documented_ones():
    assert CANCEL_REASONS == ("changed_mind", "too_expensive", "found_better", "ordered_by_mistake", "other")


#: How to bring a fresh unpaid order to each state of the table (steps as (actor, trigger)).
_PATHS = {
    "pending_payment": [],
    "paid": [("system", "pay")],
    "picking": [("system", "pay"), ("seller", "start_picking")],
    "packed": [("system", "pay"), ("seller", "start_picking"), ("seller", "pack")],
    "cancelling": [("system", "pay"), ("seller", "start_picking"), ("buyer", "cancel")],
    "shipped": [("system", "pay"), ("system", "ship")],
}


@pytest.mark.parametrize("row", ORDER_TABLE, ids=lambda row: f"{row.source}-{row.actor}-{row.trigger}")
def test_every_row_of_the_order_table_moves_the_order_and_writes_its_event(app, row):
    order_id = push(paid=False).id
    for actor, trigger in _PATHS[row.source]:
        order_flow.act_on_order(order_id, actor, trigger, **({"reason": "other"} if trigger == "cancel" else {}))
    assert fresh(order_id).state == row.source
    before = len(events(order_id))
    inputs = {"reason": "other"} if "reason" in row.requires else {}
    if "lines" in row.requires:
        inputs["lines"] = [1]
    order_flow.act_on_order(order_id, row.actor, row.trigger, actor_id="tester", **inputs)
    order = fresh(order_id)
    assert order.state == row.dest
    assert events(order_id)[before:] == [(row.actor, row.trigger, row.source, row.dest)]
    assert (order.ended_at is not None) == (row.dest in ("delivered", "cancelled"))
    # Nobody else may take that step from there (the table names one actor per row).
    others = {"buyer", "seller", "system", "warehouse", "platform"} - {r.actor for r in ORDER_TABLE
                                                                       if (r.source, r.trigger) == (row.source, row.trigger)}
    reset_id = push(f"O-{row.source}-{row.trigger}-{row.actor}", paid=False).id
    for actor, trigger in _PATHS[row.source]:
        order_flow.act_on_order(reset_id, actor, trigger, **({"reason": "other"} if trigger == "cancel" else {}))
    for actor in others:
        with pytest.raises(NotAllowed):
            order_flow.act_on_order(reset_id, actor, row.trigger, **inputs)


def test_an_ended_order_takes_no_step(app):
    order_id = push(paid=True, delivered=True).id
    with pytest.raises(NotAllowed, match="ended"):
        order_flow.act_on_order(order_id, "buyer", "cancel", reason="other")


# --- coupons, points, cancelling some lines ----------------------------------------------------
def coupon_order(**extra) -> Order:
    from aftersales.orders import ensure_shop, order_from_mapping

    ensure_shop("shop", "Test Shop", return_address="1 Return Road")
    placed = (NOW - timedelta(hours=2)).isoformat()
    return upsert_order(order_from_mapping({
        "shop": "shop", "number": "CP-1", "buyer_email": "buyer@example.com", "currency": "CNY",
        "placed_at": placed, "paid_at": placed, "shipping_fee": FEE,
        "lines": [{"title": "Kettle", "category": "kitchen", "quantity": 1, "unit_price": 20000},
                  {"title": "Mug", "category": "kitchen", "quantity": 2, "unit_price": 3000},
                  {"title": "Book", "category": "books", "quantity": 1, "unit_price": 5001}],
        "coupons": [{"code": "KITCHEN30", "amount": 3000, "threshold": 20000, "lines": [1, 2]}],
        "points_used": 700, "points_amount": 700, **extra}))


def test_coupons_and_points_split_exactly_over_the_lines(app):
    order = coupon_order()
    paid = [line.paid_amount for line in order.lines]
    # 3000 over 20000 : 6000 -> 2308 / 692; then 700 points over 17692 : 5308 : 5001.
    assert 20000 + 6000 + 5001 - sum(paid) == 3000 + 700
    assert [line.points_share for line in order.lines] == [452, 135, 113]
    assert sum(line.points_share for line in order.lines) == 700
    assert [(c.code, c.amount, c.threshold, c.positions) for c in order.coupons] == [("KITCHEN30", 3000, 20000, [1, 2])]


@pytest.mark.parametrize("bad, message", [
    ({"coupons": [{"code": "X", "amount": 1, "lines": [9]}]}, "no line 9"),
    ({"coupons": [{"code": "X", "amount": 99999}]}, "at most the value of its lines"),
    ({"coupons": [{"code": "X", "amount": 1, "threshold": 99999}]}, "worth less than its threshold"),
    ({"coupons": [{"code": "X", "amount": 1, "colour": "red"}]}, "unknown field(s): colour"),
    ({"points_amount": 10, "points_used": 0}, "needs points_used"),
])
def test_a_coupon_or_points_that_cannot_be_is_refused_by_name(app, bad, message):
    with pytest.raises(OrderProblems, match=message.replace("(", r"\(").replace(")", r"\)")):
        coupon_order(**bad)


def test_cancelling_some_lines_refunds_them_and_keeps_the_coupon_until_all_its_lines_go(tmp_path):
    warehouse = Warehouse()
    warehouse.cancelled = []
    app = make_app(tmp_path)
    with app.app_context():
        current().plugins.register(warehouse, name="warehouse")
        order = coupon_order()
        order_id, paid = order.id, {line.position: line.paid_amount for line in order.lines}
        order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="changed_mind", lines=[3])
        order = fresh(order_id)
        assert order.state == "paid" and order.lines[2].cancelled_at is not None
        assert sum(r.amount for r in _refunds(order_id)) == paid[3]  # the book only: no shipping fee
        assert warehouse.cancelled == [("CP-1", "changed_mind", paid[3])]
        assert order.points_returned == 113 and order.coupons[0].returned_at is None
        # The mugs alone would leave the kettle below nothing: fine; the kettle alone would break it.
        with pytest.raises(NotAllowed, match="below the .* the coupon KITCHEN30 needs: cancel the whole order"):
            order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="other", lines=[1])
        with pytest.raises(InvalidInput, match="all the items left"):
            order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="other", lines=[1, 2])
        with pytest.raises(InvalidInput, match="not cancelled yet"):
            order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="other", lines=[3])
        # The rest: the whole order, the coupon and the other points back, the shipping fee once.
        order_flow.act_on_order(order_id, "buyer", "cancel", reason="other")
        order = fresh(order_id)
        assert order.state == "cancelled" and order.coupons[0].returned_at is not None
        assert order.points_returned == 700
        assert sum(r.amount for r in _refunds(order_id)) == sum(paid.values()) + FEE
        line = order.lines[2]
        assert "cancelled" in " ".join(services.line_eligibility(line, NOW).options["refund_only"].why_not)


def test_a_cancelled_line_cannot_ship(app):
    order = coupon_order()
    order_flow.act_on_order(order.id, "buyer", "cancel_lines", reason="changed_mind", lines=[3])
    with pytest.raises(OrderProblems, match="line 3 was cancelled"):
        add_shipment("shop", "CP-1", "SF", "SF9", {3: 1})
    add_shipment("shop", "CP-1", "SF", "SF1", {1: 1, 2: 2})
    assert fresh(order.id).state == "shipped"


# --- found in review: each of these failed before its fix --------------------------------------
def test_an_unpaid_order_already_shipped_cannot_be_cancelled_from_the_page(app):
    order = push(paid=False, shipped=True)  # cash on delivery
    assert order.state == "pending_payment" and order.due_at is None
    assert "cancel" not in order_flow.allowed_order_triggers(order, "buyer")
    with pytest.raises(NotAllowed):
        order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")
    push(paid=True, delivered=True)
    assert fresh(order.id).state == "delivered"


def test_a_payment_recorded_after_the_buyer_cancelled_unpaid_is_refused(app):
    order_id = push(paid=False).id
    order_flow.act_on_order(order_id, "buyer", "cancel", reason="changed_mind")
    with pytest.raises(OrderProblems, match="cancelled before it was paid"):
        push(paid=True)
    assert fresh(order_id).paid_at is None


def test_items_cancelled_while_unpaid_are_refunded_when_the_payment_is_recorded(app):
    order_id = push(paid=False).id
    order_flow.act_on_order(order_id, "buyer", "cancel_lines", reason="other", lines=[2])
    assert _refunds(order_id) == []
    push(paid=True)
    assert [r.amount for r in _refunds(order_id)] == [1999]
    assert fresh(order_id).state == "paid"


def test_no_request_is_opened_while_the_warehouse_is_asked(app):
    order = push()
    order_flow.act_on_order(order.id, "seller", "start_picking")
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")
    from aftersales.errors import NotEligible

    with pytest.raises(NotEligible, match="warehouse answers first"):
        services.open_case(fresh(order.id).lines[0].id, "refund_only", "no_reason", now=NOW)
    order_flow.act_on_order(order.id, "warehouse", "intercept")
    assert fresh(order.id).state == "cancelled"


def test_the_shipping_fee_comes_back_when_points_paid_all_the_goods(app):
    push("seed")  # (the shop)
    order = upsert_order(OrderInput(
        shop="shop", number="PT-1", buyer_email="buyer@example.com", currency="CNY",
        lines=[LineInput(1, "Book", "books", 1, 5000)], placed_at=NOW, paid_at=NOW, shipping_fee=FEE,
        points_used=5000, points_amount=5000))
    order_id = order.id
    assert order.lines[0].paid_amount == 0
    order_flow.act_on_order(order_id, "buyer", "cancel", reason="other")
    refunds = _refunds(order_id)
    assert [(r.component, r.amount) for r in refunds] == [("shipping", FEE)]
    services.mark_refund_paid(refunds[0].id, 1, "BANK")
    db.session.remove()
    assert db.session.scalars(select(Case.state).where(Case.order_id == order_id)).all() == ["completed"]


def test_a_partly_cancelled_order_in_parcels_is_delivered_when_what_shipped_arrives(app):
    from aftersales.orders import mark_shipment_delivered

    order = push()
    order_flow.act_on_order(order.id, "buyer", "cancel_lines", reason="other", lines=[2])
    add_shipment("shop", "O-1", "SF", "SF1", {1: 2}, at=NOW - timedelta(hours=1))
    mark_shipment_delivered("shop", "O-1", "SF1", at=NOW)
    assert fresh(order.id).state == "delivered"


def test_discounts_coupons_and_points_above_a_lines_value_are_refused_not_a_crash(app):
    from aftersales.orders import CouponInput, ensure_shop

    ensure_shop("shop", "Test Shop", return_address="1 Return Road")
    with pytest.raises(OrderProblems, match="more than its value"):
        upsert_order(OrderInput(shop="shop", number="N-1", buyer_email="b@example.com", currency="CNY",
                                lines=[LineInput(1, "A", "books", 1, 5000), LineInput(2, "B", "books", 1, 5000)],
                                discount=5000, coupons=[CouponInput("C", 3000, 0, [1])], placed_at=NOW, paid_at=NOW))
