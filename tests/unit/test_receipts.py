"""What comes back (aftersales/services.py, aftersales/workflow.py): units received, damaged and
missing on a return, and a seller who refuses a refund after receiving the goods."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from aftersales import services
from aftersales.deadlines import sweep
from aftersales.eligibility import CaseRequest
from aftersales.errors import InvalidInput, NotAllowed
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, OrderLine, Refund
from tests.conftest import NOW, make_app, make_order


def shipped_back(quantity: int = 2, **order) -> int:
    line = make_order(quantity=quantity, unit_price=3000, **order).lines[0]
    case_id = services.open_case(line.id, "return_refund", "no_reason", quantity=quantity, now=NOW).id
    services.act(case_id, "seller", "approve", now=NOW)
    services.act(case_id, "buyer", "ship_return", carrier="SF", tracking_number="SF1", now=NOW)
    return case_id


def fresh(case_id: int) -> Case:
    db.session.remove()
    return db.session.get(Case, case_id)


def refunded(case_id: int) -> int:
    return sum(r.amount for r in db.session.scalars(select(Refund).where(Refund.case_id == case_id)))


def test_a_missing_unit_not_refunded_is_released_for_a_new_request(app):
    case_id = shipped_back()
    services.act(case_id, "seller", "confirm_receipt", received_quantity=1, now=NOW)
    case = fresh(case_id)
    assert services.missing_units(case) == 1
    assert "the missing ones stay open on this case" in case.events[-1].note
    services.act(case_id, "seller", "refund", now=NOW)  # refund what arrived
    case = fresh(case_id)
    assert (case.approved_amount, case.released_quantity) == (3000, 1)
    assert "not refunded; the buyer may ask about them again" in case.events[-1].note
    refund = db.session.scalar(select(Refund).where(Refund.case_id == case_id))
    services.mark_refund_paid(refund.id, 1, now=NOW)
    line = db.session.get(OrderLine, fresh(case_id).line_id)
    facts = services.line_facts(line)
    assert facts.units_covered == 1 and not facts.has_open_case
    verdict = services.judge(line, CaseRequest("return_refund", "no_reason", 1), NOW)
    assert verdict.allowed and verdict.max_quantity == 1  # the missing unit can be asked about again


def test_the_seller_may_refund_the_missing_units_too(app):
    case_id = shipped_back()
    services.act(case_id, "seller", "confirm_receipt", received_quantity=1, now=NOW)
    with pytest.raises(InvalidInput):
        services.act(case_id, "seller", "refund", missing="maybe", now=NOW)
    services.act(case_id, "seller", "refund", missing="refund", now=NOW)
    case = fresh(case_id)
    assert (case.approved_amount, case.released_quantity, refunded(case_id)) == (6000, None, 6000)


def test_the_seller_asks_about_missing_units_and_the_buyer_answers_without_moving_the_clock(app):
    case_id = shipped_back()
    services.act(case_id, "seller", "confirm_receipt", received_quantity=1, now=NOW)
    due = fresh(case_id).due_at
    services.act(case_id, "seller", "ask_about_missing", note="Only one mug was in the box.", now=NOW + timedelta(days=1))
    services.act(case_id, "buyer", "answer_about_missing", note="Both were packed; see the label.", now=NOW + timedelta(days=2))
    case = fresh(case_id)
    assert (case.state, case.due_at) == ("received", due)  # still the seller's refund deadline
    assert [e.trigger for e in case.events][-2:] == ["ask_about_missing", "answer_about_missing"]
    assert case.events[-1].note == "Both were packed; see the label."
    with pytest.raises(InvalidInput):
        services.act(case_id, "seller", "ask_about_missing", note="  ", now=NOW)


def test_nothing_to_ask_when_every_unit_arrived(app):
    case_id = shipped_back()
    services.act(case_id, "seller", "confirm_receipt", received_quantity=2, now=NOW)
    assert "ask_about_missing" not in services.allowed_triggers(fresh(case_id), "seller", now=NOW)
    with pytest.raises(NotAllowed):
        services.act(case_id, "seller", "ask_about_missing", note="?", now=NOW)


def test_damaged_units_go_to_the_platform_by_default(app):
    case_id = shipped_back()
    with pytest.raises(InvalidInput, match="Between 0 and 1"):
        services.act(case_id, "seller", "confirm_receipt", received_quantity=1, damaged_quantity=2, now=NOW)
    services.act(case_id, "seller", "confirm_receipt", received_quantity=2, damaged_quantity=1,
                 reason="The handle of one mug is broken.", now=NOW)
    case = fresh(case_id)
    assert (case.state, case.received_quantity, case.data["damaged_quantity"]) == ("escalated", 2, 1)
    assert case.data["seller_statement"] == "The handle of one mug is broken."
    services.act(case_id, "platform", "decide", amount=3000, payer="seller", reason="One mug was broken by the buyer.",
                 now=NOW)
    assert fresh(case_id).state == "refunding" and refunded(case_id) == 3000


def test_damaged_units_are_refunded_with_the_rest_when_the_shop_says_so(tmp_path):
    app = make_app(tmp_path, AFTERSALES_DAMAGED_RETURNS="refund")
    with app.app_context():
        case_id = shipped_back()
        services.act(case_id, "seller", "confirm_receipt", received_quantity=2, damaged_quantity=1, now=NOW)
        case = fresh(case_id)
        assert case.state == "received" and "arrived damaged and are refunded with the rest" in case.events[-1].note
        services.act(case_id, "seller", "refund", now=NOW)
        assert refunded(case_id) == 6000


def test_a_refusal_after_receipt_is_accepted_escalated_or_closed_by_the_timer(app):
    with pytest.raises(InvalidInput):
        case_id = shipped_back()
        services.act(case_id, "seller", "confirm_receipt", now=NOW)
        services.act(case_id, "seller", "refuse_after_receipt", now=NOW)  # a reason is required
    services.act(case_id, "seller", "refuse_after_receipt", reason="A different, older model came back.", now=NOW)
    case = fresh(case_id)
    assert case.state == "receipt_refused" and case.due_at == NOW + timedelta(days=7)
    assert set(services.allowed_triggers(case, "buyer", now=NOW)) == {"escalate", "accept_refusal"}
    services.act(case_id, "buyer", "escalate", statement="It is the model I bought.", now=NOW + timedelta(days=1))
    assert fresh(case_id).state == "escalated"

    accepted = shipped_back()
    services.act(accepted, "seller", "confirm_receipt", now=NOW)
    services.act(accepted, "seller", "refuse_after_receipt", reason="Not ours.", now=NOW)
    services.act(accepted, "buyer", "accept_refusal", now=NOW)
    assert fresh(accepted).state == "closed" and refunded(accepted) == 0

    lapsed = shipped_back()
    services.act(lapsed, "seller", "confirm_receipt", now=NOW)
    services.act(lapsed, "seller", "refuse_after_receipt", reason="Not ours.", now=NOW)
    sweep(now=NOW + timedelta(days=8))
    case = fresh(lapsed)
    assert case.state == "closed" and case.events[-1].trigger == "close"
    assert db.session.scalars(select(CaseEvent.trigger).where(CaseEvent.case_id == lapsed)).all()[-2:] == [
        "refuse_after_receipt", "close"]
