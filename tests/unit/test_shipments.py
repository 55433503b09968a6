"""Orders shipped in parcels (aftersales/orders.py): per-line shipped and delivered units, what
eligibility makes of them, and pushed fields the module does not know refused by name."""
from __future__ import annotations

from datetime import timedelta

import pytest

from aftersales import services
from aftersales.eligibility import CaseRequest
from aftersales.extensions import db
from aftersales.models import Order, OrderLine
from aftersales.orders import (
    OrderProblems, add_shipment, ensure_shop, mark_delivered, mark_shipment_delivered, mark_shipped, upsert_order,
)
from tests.conftest import NOW

SHIPPED = NOW - timedelta(days=4)
ARRIVED = NOW - timedelta(days=2)


def pushed(**changes):
    order = {
        "shop": "shop", "number": "P-1", "buyer_email": "buyer@example.com", "currency": "CNY",
        "placed_at": (SHIPPED - timedelta(days=1)).isoformat(), "paid_at": (SHIPPED - timedelta(days=1)).isoformat(),
        "lines": [{"position": 1, "title": "Mug", "category": "books", "quantity": 5, "unit_price": 2000},
                  {"position": 2, "title": "Plate", "category": "books", "quantity": 1, "unit_price": 3000}],
        "shipments": [{"carrier": "SF", "tracking_number": "SF1", "shipped_at": SHIPPED.isoformat(),
                       "delivered_at": ARRIVED.isoformat(), "lines": [{"position": 1, "quantity": 3}]}],
    }
    order.update(changes)
    return order


@pytest.fixture
def shop(app):
    ensure_shop("shop", "Test Shop", return_address="1 Return Road")


def line(position: int = 1) -> OrderLine:
    db.session.remove()
    order = db.session.query(Order).filter_by(number="P-1").one()
    return next(line for line in order.lines if line.position == position)


def test_unknown_fields_are_refused_by_name_at_every_level(shop):
    bad = pushed(shiped_at="2026-11-01T00:00:00Z")
    bad["lines"][0]["shipped_quantity"] = 3
    bad["shipments"][0]["trackng"] = "x"
    bad["shipments"][0]["lines"][0]["qty"] = 3
    with pytest.raises(OrderProblems) as refused:
        upsert_order(bad)
    text = " | ".join(refused.value.problems)
    assert "unknown field(s): shiped_at" in text
    assert "order line 1: unknown field(s): shipped_quantity" in text
    assert "parcel 1: unknown field(s): trackng" in text
    assert "parcel 1: unknown field(s): qty" in text
    assert db.session.query(Order).count() == 0  # nothing written


def test_a_line_counts_the_units_its_parcels_carried_and_delivered(shop):
    upsert_order(pushed())
    mug = line(1)
    plate = next(other for other in mug.order.lines if other.position == 2)
    assert (mug.units_shipped, mug.units_delivered, mug.delivered_at) == (3, 3, ARRIVED)
    assert (plate.units_shipped, plate.units_delivered, plate.delivered_at) == (0, 0, None)
    order = mug.order
    assert order.shipped_at == SHIPPED and order.delivered_at is None  # not every unit arrived


def test_an_exchange_is_for_delivered_units_only_and_never_arrived_for_the_others(shop):
    upsert_order(pushed())
    mug_id = line(1).id
    with pytest.raises(services.NotEligible, match="1 to 3 unit"):
        services.open_case(mug_id, "exchange", "damaged", quantity=4, evidence=_photos(), now=NOW)
    services.open_case(mug_id, "exchange", "damaged", quantity=3, evidence=_photos(), now=NOW)
    # The 2 units still on their way: "never arrived" only (once the exchange is done).
    facts = services.line_facts(line(1))
    assert facts.units_covered == 3 and facts.units_covered_not_received == 0


def test_never_arrived_is_open_for_undelivered_units_of_a_partly_delivered_line(shop):
    upsert_order(pushed())
    mug_id = line(1).id
    with pytest.raises(services.NotEligible, match="1 to 2 unit"):
        services.open_case(mug_id, "refund_only", "not_received", quantity=3, now=NOW)
    case = services.open_case(mug_id, "refund_only", "not_received", quantity=2, now=NOW)
    assert case.amount == 2 * 2000
    # The delivered units are not what it covers: a return (once this case is done) is for all 3.
    verdict = services.judge(line(1), CaseRequest("return_refund", "no_reason", 3), NOW)
    assert verdict.max_quantity == 3 and [d.code for d in verdict.denials] == ["open_case"]
    assert case.quantity == 2


def test_a_line_with_no_unit_shipped_is_before_shipment(shop):
    upsert_order(pushed())
    with pytest.raises(services.NotEligible, match="not shipped yet"):
        services.open_case(line(2).id, "return_refund", "no_reason", now=NOW)
    services.open_case(line(2).id, "refund_only", "no_reason", now=NOW)  # a refund before shipment


def test_windows_count_from_the_last_delivery_of_the_line(shop):
    upsert_order(pushed())
    later = ARRIVED + timedelta(days=5)
    add_shipment("shop", "P-1", "SF", "SF2", {1: 2}, at=ARRIVED, delivered_at=later)
    mug = line(1)
    assert (mug.units_delivered, mug.delivered_at) == (5, later)
    assert mug.order.delivered_at is None  # the plate has not arrived
    # Day 9 after the first parcel, day 4 after the second: the 7-day return is still open.
    services.open_case(mug.id, "return_refund", "no_reason", quantity=5, now=later + timedelta(days=4))


def test_parcels_are_added_and_delivered_one_by_one(shop):
    upsert_order(pushed(shipments=[]))
    assert line(1).units_shipped == 0  # paid, nothing shipped: no parcels, no dates
    add_shipment("shop", "P-1", "SF", "SF1", {1: 5, 2: 1}, at=SHIPPED)
    assert (line(1).units_shipped, line(1).units_delivered) == (5, 0)
    mark_shipment_delivered("shop", "P-1", "SF1", at=ARRIVED)
    mug = line(1)
    assert (mug.units_delivered, mug.order.delivered_at) == (5, ARRIVED)
    with pytest.raises(services.NotFound, match="no parcel with tracking number NOPE"):
        mark_shipment_delivered("shop", "P-1", "NOPE", at=ARRIVED)


def test_a_parcel_cannot_carry_more_than_the_line_or_a_line_the_order_lacks(shop):
    upsert_order(pushed())
    with pytest.raises(OrderProblems, match="the parcels carry 6 units, the line has 5"):
        add_shipment("shop", "P-1", "SF", "SF2", {1: 3}, at=ARRIVED)
    with pytest.raises(OrderProblems, match="the order has no line 7"):
        add_shipment("shop", "P-1", "SF", "SF3", {7: 1}, at=ARRIVED)
    with pytest.raises(OrderProblems, match="the parcels carry 6 units, the line has 5"):
        upsert_order(pushed(shipments=[
            {"carrier": "SF", "tracking_number": "A", "lines": [{"position": 1, "quantity": 4}]},
            {"carrier": "SF", "tracking_number": "B", "lines": [{"position": 1, "quantity": 2}]}]))
    assert line(1).units_shipped == 3  # nothing written by the refusals


def test_dates_of_an_order_in_parcels_come_from_the_parcels(shop):
    with pytest.raises(OrderProblems, match="leave out shipped_at and delivered_at"):
        upsert_order(pushed(shipped_at=SHIPPED.isoformat()))
    upsert_order(pushed())
    with pytest.raises(services.InvalidInput, match="ships in parcels"):
        mark_shipped("shop", "P-1", at=SHIPPED)
    mark_delivered("shop", "P-1", at=ARRIVED)  # the parcels on their way arrived
    assert line(1).units_delivered == 3 and line(2).units_delivered == 0  # the plate was never shipped


def test_a_line_in_a_parcel_cannot_be_removed(shop):
    upsert_order(pushed())
    kept = pushed()
    kept["lines"] = kept["lines"][1:]
    kept["shipments"] = []
    with pytest.raises(OrderProblems, match="line 1 is in a parcel"):
        upsert_order(kept)


def test_an_order_without_parcels_follows_its_dates(shop):
    order = pushed(shipments=[], shipped_at=SHIPPED.isoformat(), delivered_at=ARRIVED.isoformat())
    upsert_order(order)
    mug = line(1)
    assert (mug.shipped_quantity, mug.units_shipped, mug.units_delivered, mug.delivered_at) == (None, 5, 5, ARRIVED)


def _photos():
    from tests.conftest import photos

    return photos(1)
