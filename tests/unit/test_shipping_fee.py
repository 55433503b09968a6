"""The order's shipping fee (aftersales/services.py): refunded once per order, as its own refund,
with the return that makes the order fully returned (or, by setting, with a return the seller's
fault caused); never twice, and freed again when its refund fails or is cancelled."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from aftersales import services
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, Order, Refund
from aftersales.orders import LineInput, OrderProblems, upsert_order
from tests.conftest import NOW, make_app, make_order, photos

FEE = 800


def returned(line_id: int, quantity: int = 1, reason: str = "no_reason") -> int:
    evidence = photos() if reason != "no_reason" else ()
    case_id = services.open_case(line_id, "return_refund", reason, quantity=quantity, evidence=evidence, now=NOW).id
    services.act(case_id, "seller", "approve", now=NOW)
    services.act(case_id, "buyer", "ship_return", carrier="SF", tracking_number="SF1", now=NOW)
    services.act(case_id, "seller", "confirm_receipt", now=NOW)
    services.act(case_id, "seller", "refund", now=NOW)
    return case_id


def ids(order) -> tuple[int, list[int]]:
    return order.id, [line.id for line in order.lines]


def refunds_of(case_id: int) -> list[Refund]:
    db.session.remove()
    return db.session.scalars(select(Refund).where(Refund.case_id == case_id).order_by(Refund.id)).all()


def shipping_refunded(order_id: int) -> int:
    db.session.remove()
    return db.session.get(Order, order_id).shipping_refunded


def test_a_full_return_brings_the_shipping_fee_back_as_its_own_refund(app):
    order_id, (line_id,) = ids(make_order(shipping_fee=FEE))
    case_id = returned(line_id)
    goods, shipping = refunds_of(case_id)
    assert (goods.component, goods.amount) == ("goods", 10000)
    assert (shipping.component, shipping.amount, shipping.status) == ("shipping", FEE, "pending")
    assert shipping_refunded(order_id) == FEE
    assert db.session.get(Case, case_id).line.refund_committed == 10000  # the fee is not the line's money
    events = db.session.scalars(select(CaseEvent.trigger).where(CaseEvent.case_id == case_id)).all()
    assert "shipping_fee_refund" in events
    services.mark_refund_paid(goods.id, 1, now=NOW)
    assert db.session.get(Case, case_id).state == "refunding"  # the fee is still to be paid
    services.mark_refund_paid(shipping.id, 1, now=NOW)
    case = db.session.get(Case, case_id)
    assert case.state == "completed" and case.events[-1].amount == 10000 + FEE


def test_only_the_return_that_completes_the_order_brings_the_fee_and_never_twice(app):
    order_id, (line_id,) = ids(make_order(quantity=2, unit_price=5000, shipping_fee=FEE))
    first = returned(line_id, quantity=1)
    assert [r.component for r in refunds_of(first)] == ["goods"]
    services.mark_refund_paid(refunds_of(first)[0].id, 1, now=NOW)
    second = returned(line_id, quantity=1)
    assert [r.component for r in refunds_of(second)] == ["goods", "shipping"]
    assert shipping_refunded(order_id) == FEE


def test_a_seller_fault_return_brings_the_fee_when_the_shop_says_so(tmp_path):
    app = make_app(tmp_path, AFTERSALES_SHIPPING_FEE_REFUND="seller_fault")
    with app.app_context():
        _order_id, (cup, pot) = ids(make_order(
            lines=[LineInput(1, "Cup", "books", 1, 4000), LineInput(2, "Pot", "books", 1, 6000)], shipping_fee=FEE))
        first = returned(cup, reason="damaged")
        assert [r.component for r in refunds_of(first)] == ["goods", "shipping"]
        # (the pot is its own line: its return may run beside the cup's)
        second = returned(pot, reason="damaged")
        assert [r.component for r in refunds_of(second)] == ["goods"]  # once per order


def test_no_shipping_fee_refund_when_the_shop_never_refunds_it(tmp_path):
    app = make_app(tmp_path, AFTERSALES_SHIPPING_FEE_REFUND="never")
    with app.app_context():
        _order_id, (line_id,) = ids(make_order(shipping_fee=FEE))
        assert [r.component for r in refunds_of(returned(line_id))] == ["goods"]


def test_a_failed_shipping_refund_is_freed_and_sent_again_with_the_retry(app):
    order_id, (line_id,) = ids(make_order(shipping_fee=FEE))
    case_id = returned(line_id)
    goods, shipping = refunds_of(case_id)
    services.mark_refund_paid(goods.id, 1, now=NOW)
    services.settle_refund(shipping.id, "failed", message="card closed", now=NOW)
    assert shipping_refunded(order_id) == 0
    assert db.session.get(Case, case_id).state == "refunding"
    again = services.retry_refund(case_id, now=NOW)
    assert (again.component, again.amount) == ("shipping", FEE)
    assert shipping_refunded(order_id) == FEE
    services.mark_refund_paid(again.id, 1, now=NOW)
    assert db.session.get(Case, case_id).state == "completed"


def test_a_cancelled_shipping_refund_frees_the_fee(app):
    order_id, (line_id,) = ids(make_order(shipping_fee=FEE))
    case_id = returned(line_id)
    _goods, shipping = refunds_of(case_id)
    services.cancel_refund(shipping.id, "Refunded by the carrier's insurance", now=NOW)
    assert shipping_refunded(order_id) == 0


def test_a_refunded_shipping_fee_cannot_be_changed_by_a_new_push(app):
    order_id, (line_id,) = ids(make_order(shipping_fee=FEE))
    returned(line_id)
    db.session.remove()
    order = db.session.get(Order, order_id)
    pushed = {"shop": "shop", "number": order.number, "buyer_email": order.buyer_email, "currency": "CNY",
              "shipping_fee": 1200, "paid_at": order.paid_at.isoformat(),
              "shipped_at": order.shipped_at.isoformat(), "delivered_at": order.delivered_at.isoformat(),
              "lines": [{"position": 1, "title": "Item", "category": "books", "quantity": 1, "unit_price": 10000}]}
    with pytest.raises(OrderProblems, match="shipping fee was refunded and cannot change"):
        upsert_order(pushed)
