"""Negotiation (issue 13): the buyer answers an offer with a counter-offer; each side makes at
most AFTERSALES_NEGOTIATION_ROUNDS offers; the seller's time to answer runs from the request and
only while it is the seller's turn."""
from __future__ import annotations

from datetime import timedelta

import pytest

from aftersales import deadlines, services
from aftersales.errors import InvalidInput, NotAllowed
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, Refund
from tests.conftest import NOW, make_app, photos

HOUR = timedelta(hours=1)


def refund_request(order_factory, amount: int = 10000) -> Case:
    order = order_factory(unit_price=amount)
    return services.open_case(order.lines[0].id, "refund_only", "damaged", amount=amount, evidence=photos(), now=NOW)


def fresh(case_id: int) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case_id)


def test_a_counter_offer_is_accepted_by_the_seller_and_refunds_its_amount(order_factory):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=4000, note="The cover only.", now=NOW + HOUR)
    services.act(case.id, "buyer", "counter_offer", amount=7000, note="The pages are stained too.", now=NOW + 2 * HOUR)
    countered = fresh(case.id)
    assert countered.state == "counter_offered" and countered.data["counter_amount"] == 7000
    assert set(services.allowed_triggers(countered, "seller", NOW + 2 * HOUR)) == {"accept_counter", "offer", "approve", "reject"}
    assert services.allowed_triggers(countered, "buyer", NOW + 2 * HOUR) == ["withdraw"]
    services.act(case.id, "seller", "accept_counter", now=NOW + 3 * HOUR)
    done = fresh(case.id)
    assert done.state == "refunding" and done.approved_amount == 7000
    assert [r.amount for r in db.session.query(Refund).filter_by(case_id=case.id)] == [7000]
    notes = [e.note for e in db.session.query(CaseEvent).filter_by(case_id=case.id).order_by(CaseEvent.id)]
    assert "The pages are stained too." in notes


def test_a_counter_offer_must_lie_between_the_offer_and_the_request(order_factory):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=4000, now=NOW)
    for amount in (4000, 3000, 10000, 12000):
        with pytest.raises(InvalidInput) as refused:
            services.act(case.id, "buyer", "counter_offer", amount=amount, now=NOW)
        assert refused.value.field == "amount"
    assert fresh(case.id).state == "offer_pending"


def test_the_seller_may_offer_again_and_the_buyer_may_decline_with_a_reason(order_factory):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=3000, now=NOW)
    services.act(case.id, "buyer", "counter_offer", amount=8000, now=NOW)
    services.act(case.id, "seller", "offer", amount=5000, note="Meet halfway?", now=NOW)
    assert fresh(case.id).state == "offer_pending" and fresh(case.id).offer_amount == 5000
    services.act(case.id, "buyer", "decline_offer", note="Half is not enough for a ruined book.", now=NOW)
    back = fresh(case.id)
    assert back.state == "requested" and back.offer_amount is None
    last = db.session.query(CaseEvent).filter_by(case_id=case.id).order_by(CaseEvent.id.desc()).first()
    assert (last.trigger, last.note) == ("decline_offer", "Half is not enough for a ruined book.")


def test_each_side_makes_at_most_the_rounds_setting_of_offers(tmp_path):
    app = make_app(tmp_path, AFTERSALES_NEGOTIATION_ROUNDS=2)
    from tests.conftest import make_order

    with app.app_context():
        order = make_order()
        case = services.open_case(order.lines[0].id, "refund_only", "damaged", amount=10000, evidence=photos(), now=NOW)
        for offer, counter in ((2000, 9000), (3000, 8000)):
            services.act(case.id, "seller", "offer", amount=offer, now=NOW)
            services.act(case.id, "buyer", "counter_offer", amount=counter, now=NOW)
        countered = fresh(case.id)
        assert "offer" not in services.allowed_triggers(countered, "seller", NOW)  # two offers made
        with pytest.raises(NotAllowed):
            services.act(case.id, "seller", "offer", amount=4000, now=NOW)
        services.act(case.id, "seller", "reject", reason="Final answer: no.", now=NOW)
        assert fresh(case.id).state == "rejected"
        db.session.remove()


def test_the_buyer_has_no_counter_offer_left_after_the_limit(tmp_path):
    app = make_app(tmp_path, AFTERSALES_NEGOTIATION_ROUNDS=1)
    from tests.conftest import make_order

    with app.app_context():
        order = make_order()
        case = services.open_case(order.lines[0].id, "refund_only", "damaged", amount=10000, evidence=photos(), now=NOW)
        services.act(case.id, "seller", "offer", amount=2000, now=NOW)
        services.act(case.id, "buyer", "counter_offer", amount=9000, now=NOW)
        services.act(case.id, "seller", "reject", reason="No.", now=NOW)
        services.act(case.id, "buyer", "revise", description="Please look again.", now=NOW)
        # No offers left for the seller either: the second negotiation cannot start.
        assert "offer" not in services.allowed_triggers(fresh(case.id), "seller", NOW)
        db.session.remove()


def test_the_sellers_clock_runs_from_the_request_and_pauses_while_the_buyer_answers(order_factory, app):
    response = timedelta(hours=app.config["AFTERSALES_SELLER_RESPONSE_HOURS"])
    case = refund_request(order_factory)
    assert fresh(case.id).due_at == NOW + response
    services.act(case.id, "seller", "offer", amount=4000, now=NOW + 10 * HOUR)  # 38 h were left
    assert fresh(case.id).due_trigger == "decline_offer"
    services.act(case.id, "buyer", "counter_offer", amount=6000, now=NOW + 30 * HOUR)
    countered = fresh(case.id)
    assert (countered.due_at, countered.due_trigger) == (NOW + 30 * HOUR + (response - 10 * HOUR), "accept_counter")
    services.act(case.id, "seller", "offer", amount=5000, now=NOW + 40 * HOUR)  # 28 h left
    services.act(case.id, "buyer", "decline_offer", now=NOW + 41 * HOUR)
    back = fresh(case.id)
    # Never a new 48 h: what was left when the seller last offered (28 h), from the buyer's answer.
    assert (back.due_at, back.due_trigger) == (NOW + 41 * HOUR + (response - 20 * HOUR), "approve")
    assert back.due_at < NOW + 41 * HOUR + response


def test_a_seller_silent_on_a_counter_offer_has_accepted_it(order_factory, app):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=4000, now=NOW + HOUR)
    services.act(case.id, "buyer", "counter_offer", amount=6500, now=NOW + 2 * HOUR)
    due = fresh(case.id).due_at
    assert deadlines.sweep(now=due + HOUR).applied == 1
    done = fresh(case.id)
    assert done.state == "refunding" and done.approved_amount == 6500
    last = db.session.query(CaseEvent).filter_by(case_id=case.id, trigger="accept_counter").one()
    assert last.actor_type == "system"


def test_a_buyer_may_withdraw_while_the_counter_offer_waits(order_factory):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=4000, now=NOW)
    services.act(case.id, "buyer", "counter_offer", amount=6000, now=NOW)
    services.act(case.id, "buyer", "withdraw", now=NOW)
    assert fresh(case.id).state == "cancelled"


def test_offers_and_counters_on_an_exchange_are_bounded_by_what_its_units_are_worth(order_factory):
    """Found in review: an exchange asks for no amount, and a counter could reach the whole line."""
    order = order_factory(quantity=5, unit_price=10000)
    case = services.open_case(order.lines[0].id, "exchange", "damaged", quantity=1, evidence=photos(), now=NOW)
    with pytest.raises(InvalidInput):
        services.act(case.id, "seller", "offer", amount=20000, now=NOW)
    services.act(case.id, "seller", "offer", amount=1000, now=NOW)
    with pytest.raises(InvalidInput) as refused:
        services.act(case.id, "buyer", "counter_offer", amount=49000, now=NOW)
    assert "less than what you asked for (CN¥100.00)" in str(refused.value)
    services.act(case.id, "buyer", "counter_offer", amount=9000, now=NOW)
    services.act(case.id, "seller", "accept_counter", now=NOW)
    assert [r.amount for r in db.session.query(Refund).filter_by(case_id=case.id)] == [9000]


def test_the_time_handed_back_is_used_once(order_factory, app):
    case = refund_request(order_factory)
    services.act(case.id, "seller", "offer", amount=4000, now=NOW + HOUR)
    services.act(case.id, "buyer", "decline_offer", now=NOW + 2 * HOUR)
    assert "seller_time_left" not in (fresh(case.id).data or {})
