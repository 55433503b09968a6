"""The service layer: opening cases, acting on them, refunds and the ceiling, no HTTP."""
from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import select

from aftersales import services
from aftersales.errors import CaseChanged, InvalidInput, NotAllowed, NotEligible, RefundRefused
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, OrderLine, Refund
from tests.conftest import NOW, make_order, photos


def line_of(order) -> OrderLine:
    return order.lines[0]


def open_return(order_factory, **kwargs) -> Case:
    order = order_factory(**kwargs)
    return services.open_case(line_of(order).id, "return_refund", "no_reason", now=NOW)


def states(case: Case) -> list[tuple]:
    return [(e.from_state, e.trigger, e.to_state) for e in db.session.get(Case, case.id).events]


def test_return_refund_walks_from_request_to_completed(order_factory):
    case = open_return(order_factory, unit_price=12345)
    assert case.state == "requested" and case.amount == 12345
    assert case.due_trigger == "approve" and case.due_at == NOW + timedelta(hours=48)
    services.act(case.id, "seller", "approve", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF123", now=NOW)
    services.act(case.id, "seller", "confirm_receipt", now=NOW)
    case = services.act(case.id, "seller", "refund", now=NOW)
    assert case.state == "refunding"
    refund = case.refunds[0]
    assert (refund.amount, refund.status) == (12345, "pending")
    services.mark_refund_paid(refund.id, staff_id=1, reference="BANK-1")
    case = db.session.get(Case, case.id)
    assert case.state == "completed" and case.open_line_id is None and case.due_at is None
    assert states(case) == [
        (None, "request", "requested"),
        ("requested", "approve", "awaiting_return"),
        ("awaiting_return", "ship_return", "return_shipped"),
        ("return_shipped", "confirm_receipt", "received"),
        ("received", "refund", "refunding"),
        ("refunding", "refund_succeeded", "completed"),
    ]
    assert case.return_address == "1 Return Road"
    assert case.events[4].amount == 12345


def test_refund_only_approved_goes_straight_to_refunding(order_factory):
    order = order_factory(unit_price=5000)
    case = services.open_case(line_of(order).id, "refund_only", "damaged", amount=2000, evidence=photos(), now=NOW)
    case = services.act(case.id, "seller", "approve", now=NOW)
    assert case.state == "refunding" and case.refunds[0].amount == 2000


def test_exchange_and_repair_ship_a_replacement(order_factory):
    for kind in ("exchange", "repair"):
        order = order_factory()
        case = services.open_case(line_of(order).id, kind, "quality", evidence=photos(), now=NOW)
        assert case.amount == 0
        for actor, trigger, data in [
            ("seller", "approve", {}), ("buyer", "ship_return", {"carrier": "SF", "tracking_number": "1"}),
            ("seller", "confirm_receipt", {}), ("seller", "ship_replacement", {"carrier": "SF", "tracking_number": "2"}),
            ("buyer", "confirm_replacement", {}),
        ]:
            case = services.act(case.id, actor, trigger, now=NOW, **data)
        assert case.state == "completed" and not case.refunds


def test_stale_version_gets_case_changed(order_factory):
    case = open_return(order_factory)
    seen = case.version
    services.act(case.id, "seller", "approve", now=NOW, expected_version=seen)
    with pytest.raises(CaseChanged):
        services.act(case.id, "buyer", "withdraw", now=NOW, expected_version=seen)
    assert db.session.get(Case, case.id).state == "awaiting_return"


def test_wrong_actor_is_refused_with_a_message(order_factory):
    case = open_return(order_factory)
    with pytest.raises(NotAllowed):
        services.act(case.id, "buyer", "approve", now=NOW)
    with pytest.raises(NotAllowed):
        services.act(case.id, "seller", "withdraw", now=NOW)


def test_reject_needs_a_reason(order_factory):
    case = open_return(order_factory)
    with pytest.raises(InvalidInput) as error:
        services.act(case.id, "seller", "reject", reason="  ", now=NOW)
    assert error.value.field == "reason"
    case = services.act(case.id, "seller", "reject", reason="Item was used", now=NOW)
    assert case.state == "rejected" and case.events[-1].note == "Item was used"


def test_offer_accepted_refunds_the_offer(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", evidence=photos(), now=NOW)
    with pytest.raises(InvalidInput):
        services.act(case.id, "seller", "offer", amount=10000, now=NOW)  # not below the request
    services.act(case.id, "seller", "offer", amount=3000, now=NOW)
    case = services.act(case.id, "buyer", "accept_offer", now=NOW)
    assert case.state == "refunding" and case.refunds[0].amount == 3000


def test_offer_declined_goes_back_to_the_seller(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", evidence=photos(), now=NOW)
    services.act(case.id, "seller", "offer", amount=3000, now=NOW)
    case = services.act(case.id, "buyer", "decline_offer", now=NOW)
    assert case.state == "requested" and case.offer_amount is None and case.due_trigger == "approve"


def test_escalation_and_platform_decision(order_factory):
    case = open_return(order_factory, unit_price=8000)
    services.act(case.id, "seller", "reject", reason="Worn", now=NOW)
    services.act(case.id, "buyer", "escalate", statement="It was new", now=NOW)
    with pytest.raises(InvalidInput):
        services.act(case.id, "platform", "decide", amount=9000, payer="seller", reason="x", now=NOW)
    case = services.act(case.id, "platform", "decide", amount=5000, payer="platform", reason="Half", now=NOW)
    assert case.state == "refunding" and case.refunds[0].amount == 5000 and case.refunds[0].payer == "platform"


def test_platform_decision_of_nothing_closes(order_factory):
    case = open_return(order_factory)
    services.act(case.id, "seller", "reject", reason="Worn", now=NOW)
    services.act(case.id, "buyer", "escalate", statement="It was new", now=NOW)
    case = services.act(case.id, "platform", "decide", amount=0, payer="seller", reason="Seller is right", now=NOW)
    assert case.state == "closed" and not case.refunds


def test_terminal_case_never_changes(order_factory):
    case = open_return(order_factory)
    services.act(case.id, "buyer", "withdraw", now=NOW)
    for actor, trigger in [("seller", "approve"), ("buyer", "withdraw"), ("system", "close")]:
        with pytest.raises(NotAllowed):
            services.act(case.id, actor, trigger, now=NOW)


def test_refund_ceiling_never_exceeds_paid(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", amount=6000, evidence=photos(), now=NOW)
    services.create_refund(case.id, 6000, "k-1")
    with pytest.raises(RefundRefused):
        services.create_refund(case.id, 6000, "k-2")
    assert db.session.get(OrderLine, line_of(order).id).refund_committed == 6000


def test_refund_idempotency_key_replays_and_refuses_a_different_amount(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", evidence=photos(), now=NOW)
    first = services.create_refund(case.id, 1000, "same-key")
    again = services.create_refund(case.id, 1000, "same-key")
    assert first.id == again.id
    assert db.session.query(Refund).count() == 1
    with pytest.raises(RefundRefused):
        services.create_refund(case.id, 2000, "same-key")


def test_failed_refund_frees_its_amount_and_can_be_retried(order_factory):
    case = open_return(order_factory, unit_price=7000)
    services.act(case.id, "seller", "approve", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="1", now=NOW)
    services.act(case.id, "seller", "confirm_receipt", now=NOW)
    case = services.act(case.id, "seller", "refund", now=NOW)
    refund_id = case.refunds[0].id
    services.settle_refund(refund_id, "failed", message="card closed")
    case = db.session.get(Case, case.id)
    assert case.state == "refunding" and case.line.refund_committed == 0
    assert case.events[-1].trigger == "refund_failed" and case.events[-1].amount == 7000
    retry = services.retry_refund(case.id)
    assert retry.amount == 7000 and retry.id != refund_id
    services.settle_refund(retry.id, "succeeded", reference="OK")
    assert db.session.get(Case, case.id).state == "completed"


def test_one_open_case_per_line(order_factory):
    order = order_factory(quantity=2)
    services.open_case(line_of(order).id, "return_refund", "no_reason", now=NOW)
    with pytest.raises(NotEligible):
        services.open_case(line_of(order).id, "return_refund", "no_reason", now=NOW)


def test_units_are_counted_across_cases(order_factory):
    order = order_factory(quantity=2, unit_price=1000)
    line_id = line_of(order).id
    first = services.open_case(line_id, "refund_only", "quality", quantity=1, evidence=photos(), now=NOW)
    services.act(first.id, "seller", "approve", now=NOW)
    services.mark_refund_paid(db.session.get(Case, first.id).refunds[0].id, staff_id=1)
    with pytest.raises(NotEligible):
        services.open_case(line_id, "refund_only", "quality", quantity=2, evidence=photos(), now=NOW)
    second = services.open_case(line_id, "refund_only", "quality", quantity=1, evidence=photos(), now=NOW)
    assert second.amount == 1000


def test_cancelled_case_frees_its_units(order_factory):
    order = order_factory(quantity=1)
    case = services.open_case(line_of(order).id, "return_refund", "no_reason", now=NOW)
    services.act(case.id, "buyer", "withdraw", now=NOW)
    again = services.open_case(line_of(order).id, "return_refund", "no_reason", now=NOW)
    assert again.state == "requested"


def test_short_receipt_refunds_only_what_arrived(order_factory):
    order = order_factory(quantity=3, unit_price=1000)
    case = services.open_case(line_of(order).id, "return_refund", "no_reason", quantity=3, now=NOW)
    services.act(case.id, "seller", "approve", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="1", now=NOW)
    case = services.act(case.id, "seller", "confirm_receipt", received_quantity=2, now=NOW)
    assert "2 of 3" in case.events[-1].note
    case = services.act(case.id, "seller", "refund", now=NOW)
    assert case.refunds[0].amount == 2000


def test_ship_return_needs_carrier_and_tracking_and_changes_nothing_without(order_factory):
    case = open_return(order_factory)
    services.act(case.id, "seller", "approve", now=NOW)
    with pytest.raises(InvalidInput) as error:
        services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="", now=NOW)
    assert error.value.field == "tracking_number"
    assert db.session.query(CaseEvent).filter_by(case_id=case.id).count() == 2
    assert db.session.get(Case, case.id).state == "awaiting_return"


def test_approval_after_everything_was_paid_by_hand_completes_the_case(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", evidence=photos(), now=NOW)
    refund = services.create_refund(case.id, case.amount, "paid-by-hand")
    services.settle_refund(refund.id, "succeeded")
    case = services.act(case.id, "seller", "approve", now=NOW)
    assert db.session.get(Case, case.id).state == "completed"


def test_callers_cannot_use_the_systems_idempotency_keys(order_factory):
    order = order_factory(unit_price=10000)
    case = services.open_case(line_of(order).id, "refund_only", "quality", evidence=photos(), now=NOW)
    with pytest.raises(InvalidInput):
        services.create_refund(case.id, 100, f"sys:case-{case.id}-approve-3")
    case = services.act(case.id, "seller", "approve", now=NOW)
    assert case.state == "refunding" and case.refunds[0].idempotency_key.startswith("sys:")


def test_revising_an_exchange_with_an_amount_records_no_amount_and_a_nan_is_never_stored(order_factory):
    """Found by the stateful test on PostgreSQL: an exchange revised with amount=NaN wrote NaN
    into the event's JSON, which PostgreSQL refuses."""
    from sqlalchemy import select

    order = order_factory()
    case = services.open_case(order.lines[0].id, "exchange", "no_reason", now=NOW)
    services.act(case.id, "seller", "reject", reason="Worn", now=NOW)
    services.act(case.id, "buyer", "revise", description="It arrived broken", amount=float("nan"), now=NOW)

    event = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc())).first()
    assert event.trigger == "revise" and "amount" not in event.data
    assert services.get_case(case.id).amount == 0


def test_refund_totals_count_what_the_transaction_holds_without_loading_the_refunds(order_factory):
    """``services.refund_totals``: the database's refunds of the case, with the ones the session
    holds new or changed counted as they are in memory; the collection itself stays unloaded."""
    from sqlalchemy import inspect, select

    from aftersales.database import write_transaction
    from aftersales.models import Refund

    order = order_factory()
    case = services.open_case(line_of(order).id, "refund_only", "damaged", amount=2000, evidence=photos(), now=NOW)
    services.act(case.id, "seller", "approve", now=NOW)
    db.session.remove()
    with pytest.raises(RuntimeError):
        with write_transaction():
            held = services.get_case(case.id)
            assert services.refund_totals(held) == services.RefundTotals(pending=1, pending_amount=2000, paid=0, count=1)
            first = db.session.scalar(select(Refund).where(Refund.case_id == case.id))
            first.status = "succeeded"  # settled in memory, not written yet
            assert services.refund_totals(held) == services.RefundTotals(pending=0, pending_amount=0, paid=2000, count=1)
            db.session.add(Refund(case=held, line_id=held.line_id, amount=500, currency="CNY", status="pending",
                                  idempotency_key="held-extra", created_at=NOW))
            totals = services.refund_totals(held)
            assert totals == services.RefundTotals(pending=1, pending_amount=500, paid=2000, count=2)
            assert totals.committed == 2500
            assert "refunds" not in inspect(held).dict  # no load of the collection
            raise RuntimeError("roll back")


def test_a_failed_extra_refund_that_completes_the_case_is_on_the_timeline_before_the_completion(order_factory):
    """Found by the stateful test: the failure's money event was written after the completion's
    event, so the timeline read "completed, then a refund failed while refunding"."""
    from aftersales.models import CaseEvent

    order = order_factory(quantity=2, unit_price=5000)
    case = services.open_case(line_of(order).id, "refund_only", "damaged", amount=5000, evidence=photos(), now=NOW)
    services.act(case.id, "seller", "approve", now=NOW)
    extra = services.create_refund(case.id, 5000, "extra-1", now=NOW)
    first = db.session.scalar(select(Refund.id).where(Refund.case_id == case.id, Refund.id != extra.id))
    services.settle_refund(first, "succeeded", now=NOW)
    services.settle_refund(extra.id, "failed", message="card closed", now=NOW)
    db.session.expire_all()
    events = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)).all()
    assert [(e.trigger, e.from_state, e.to_state) for e in events][-2:] == [
        ("refund_failed", "refunding", "refunding"), ("refund_succeeded", "refunding", "completed")]


def test_an_input_the_row_does_not_name_is_refused_with_its_name(order_factory):
    """Issue 14: a misspelt input (``recieved_quantity`` on a receipt) used to be dropped silently."""
    case = open_return(order_factory)
    services.act(case.id, "seller", "approve", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF1", now=NOW)
    with pytest.raises(InvalidInput) as refused:
        services.act(case.id, "seller", "confirm_receipt", recieved_quantity=1, broken_quantity=1, now=NOW)
    assert refused.value.field == "broken_quantity"
    assert "takes no inputs called broken_quantity, recieved_quantity" in str(refused.value)
    db.session.expire_all()
    assert db.session.get(Case, case.id).state == "return_shipped"
    services.act(case.id, "seller", "confirm_receipt", received_quantity=1, now=NOW)


def test_a_refund_asked_before_shipment_is_granted_after_a_day_of_silence(app):
    """Issue 14: nothing left the warehouse, so the seller has AFTERSALES_UNSHIPPED_REFUND_HOURS (24)
    to answer, not 48; the sweeper then grants it."""
    from aftersales.deadlines import sweep

    line = make_order(delivered=None, shipped=False).lines[0]
    case = services.open_case(line.id, "refund_only", "no_reason", now=NOW)
    case_id = case.id
    assert (case.due_at, case.due_trigger) == (NOW + timedelta(hours=24), "approve")
    sweep(now=NOW + timedelta(hours=23))
    db.session.remove()
    assert db.session.get(Case, case_id).state == "requested"
    sweep(now=NOW + timedelta(hours=24, minutes=1))
    db.session.remove()
    assert db.session.get(Case, case_id).state == "refunding"
    shipped = make_order(delivered=None, shipped=True).lines[0]
    later = services.open_case(shipped.id, "refund_only", "not_received", now=NOW)
    assert later.due_at == NOW + timedelta(hours=48)  # shipped: the usual time
