"""Deadlines: each timeout fires once, as the system, and an action committed first wins."""
from __future__ import annotations

from datetime import timedelta

import pytest

from aftersales import hookimpl, services
from aftersales.deadlines import sweep, sweep_forever
from aftersales.errors import NotAllowed
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent
from aftersales.runtime import current
from tests.conftest import NOW, photos

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def reload(case_id: int) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case_id)


def open_return(order_factory, kind="return_refund", reason="no_reason", **order) -> Case:
    line = order_factory(**order).lines[0]
    evidence = photos() if reason != "no_reason" else ()
    return services.open_case(line.id, kind, reason, evidence=evidence, now=NOW)


def step(case_id, actor, trigger, at, **data):
    return services.act(case_id, actor, trigger, now=at, **data)


def test_silent_seller_has_agreed_after_48_hours(order_factory):
    case = open_return(order_factory)
    assert sweep(now=NOW + 47 * HOUR).applied == 0
    report = sweep(now=NOW + 48 * HOUR)
    case = reload(case.id)
    assert report.applied == 1 and case.state == "awaiting_return"
    event = case.events[-1]
    assert (event.actor_type, event.trigger) == ("system", "approve")
    assert case.return_address == "1 Return Road"
    assert case.due_trigger == "withdraw" and case.due_at == NOW + 48 * HOUR + 7 * DAY


def test_silent_seller_on_refund_only_goes_to_refunding(order_factory):
    case = open_return(order_factory, kind="refund_only", reason="quality")
    sweep(now=NOW + 49 * HOUR)
    case = reload(case.id)
    assert case.state == "refunding" and case.refunds[0].amount == case.amount


def test_buyer_who_does_not_ship_in_7_days_has_withdrawn(order_factory):
    case = open_return(order_factory)
    step(case.id, "seller", "approve", NOW)
    sweep(now=NOW + 7 * DAY - HOUR)
    assert reload(case.id).state == "awaiting_return"
    sweep(now=NOW + 7 * DAY)
    case = reload(case.id)
    assert case.state == "cancelled" and case.open_line_id is None and case.due_at is None


def test_seller_who_does_not_confirm_receipt_in_10_days_has_received(order_factory):
    case = open_return(order_factory)
    step(case.id, "seller", "approve", NOW)
    step(case.id, "buyer", "ship_return", NOW, carrier="SF", tracking_number="1")
    sweep(now=NOW + 10 * DAY)
    case = reload(case.id)
    assert case.state == "received" and case.received_quantity == case.quantity
    assert case.due_trigger == "refund"


def test_seller_who_does_not_refund_in_7_days_has_refunded(order_factory):
    case = open_return(order_factory, unit_price=4200)
    step(case.id, "seller", "approve", NOW)
    step(case.id, "buyer", "ship_return", NOW, carrier="SF", tracking_number="1")
    step(case.id, "seller", "confirm_receipt", NOW)
    sweep(now=NOW + 7 * DAY)
    case = reload(case.id)
    assert case.state == "refunding" and case.refunds[0].amount == 4200


def test_rejected_case_closes_when_the_buyer_is_silent_for_7_days(order_factory):
    case = open_return(order_factory)
    step(case.id, "seller", "reject", NOW, reason="used")
    sweep(now=NOW + 7 * DAY)
    assert reload(case.id).state == "closed"


def test_after_the_appeal_window_the_buyer_can_no_longer_escalate(order_factory):
    case = open_return(order_factory)
    step(case.id, "seller", "reject", NOW, reason="used")
    with pytest.raises(NotAllowed):
        step(case.id, "buyer", "escalate", NOW + 7 * DAY + HOUR, statement="please")


def test_unanswered_offer_lapses_back_to_the_seller(order_factory):
    case = open_return(order_factory, kind="refund_only", reason="quality", unit_price=10000)
    step(case.id, "seller", "offer", NOW, amount=4000)
    sweep(now=NOW + 7 * DAY)
    case = reload(case.id)
    assert case.state == "requested" and case.offer_amount is None


def test_replacement_is_confirmed_when_the_buyer_is_silent(order_factory):
    case = open_return(order_factory, kind="exchange", reason="quality")
    step(case.id, "seller", "approve", NOW)
    step(case.id, "buyer", "ship_return", NOW, carrier="SF", tracking_number="1")
    step(case.id, "seller", "confirm_receipt", NOW)
    step(case.id, "seller", "ship_replacement", NOW, carrier="SF", tracking_number="2")
    sweep(now=NOW + 10 * DAY)
    assert reload(case.id).state == "completed"


def test_sweeping_twice_applies_each_timeout_once(order_factory):
    cases = [open_return(order_factory) for _ in range(5)]
    later = NOW + 48 * HOUR
    first = sweep(now=later)
    second = sweep(now=later)
    assert (first.applied, second.applied) == (5, 0)
    for case in cases:
        approvals = db.session.query(CaseEvent).filter_by(case_id=case.id, trigger="approve").count()
        assert approvals == 1


def test_sweeper_works_in_batches(order_factory):
    for _ in range(7):
        open_return(order_factory)
    assert sweep(now=NOW + 48 * HOUR, batch_size=2).applied == 7


class RefusesOneTimeout:
    """A test plugin that refuses the system's approve of one case (as a buggy or strict plugin might)."""

    def __init__(self, refused_case_id: int):
        self.refused_case_id = refused_case_id

    @hookimpl
    def aftersales_check_action(self, case, actor, trigger, data):
        if actor == "system" and case.id == self.refused_case_id:
            return "not this one"
        return None


def test_a_failing_timeout_is_rolled_back_alone_and_the_rest_of_its_batch_applies(order_factory):
    cases = [open_return(order_factory) for _ in range(5)]
    refused = cases[2]
    current().plugins.register(RefusesOneTimeout(refused.id), name="refuses_one_timeout")
    report = sweep(now=NOW + 48 * HOUR, batch_size=10)
    assert (report.applied, report.failed) == (4, 1)
    assert report.errors == [f"case {refused.id}: not this one"]
    assert reload(refused.id).state == "requested"  # nothing of it was written
    assert [e.trigger for e in reload(refused.id).events] == ["request"]
    for case in cases:
        if case.id != refused.id:
            assert reload(case.id).state == "awaiting_return"
    # It stays due (a person may still act on it) and the next sweep reports it again, once.
    again = sweep(now=NOW + 48 * HOUR, batch_size=2)
    assert (again.applied, again.failed) == (0, 1)


def test_a_timeout_that_makes_its_case_due_again_is_applied_in_the_same_sweep(order_factory):
    # The seller offers when their time has run out; the offer lapses: the request is back with no
    # time left, so the same sweep approves it (found by the stateful test: left due before).
    case = open_return(order_factory, kind="exchange")
    step(case.id, "seller", "offer", NOW + 48 * HOUR, amount=1)
    report = sweep(now=NOW + 48 * HOUR + 7 * DAY)
    assert report.applied == 2 and report.failed == 0
    assert [e.trigger for e in reload(case.id).events] == ["request", "offer", "decline_offer", "approve"]
    assert reload(case.id).state == "awaiting_return"


def test_an_action_committed_first_wins_over_the_timer(order_factory):
    case = open_return(order_factory)
    # The deadline passed, but the seller rejects before the sweeper runs.
    step(case.id, "seller", "reject", NOW + 49 * HOUR, reason="used")
    report = sweep(now=NOW + 49 * HOUR)
    case = reload(case.id)
    assert case.state == "rejected" and report.applied == 0
    assert [e.trigger for e in case.events] == ["request", "reject"]


def test_apply_timeout_rechecks_the_deadline(order_factory):
    case = open_return(order_factory)
    assert services.apply_timeout(case.id, NOW + HOUR) is False
    assert services.apply_timeout(case.id, NOW + 48 * HOUR) is True
    assert services.apply_timeout(case.id, NOW + 48 * HOUR) is False  # now in awaiting_return, not due


def test_sweep_loop_outlives_a_failing_sweep(order_factory):
    """``sweep --loop`` runs as a service: a sweep that fails (here the table is briefly away, as
    in a botched migration or a database restart) is reported and the next sweep goes on."""
    case_id = open_return(order_factory).id
    db.session.commit()
    reports = []
    rounds = iter(range(3))

    def stop() -> bool:
        round_number = next(rounds, None)
        with db.engine.begin() as connection:
            if round_number == 0:
                connection.exec_driver_sql("ALTER TABLE aftersales_cases RENAME TO aftersales_cases_away")
            elif round_number == 1:
                connection.exec_driver_sql("ALTER TABLE aftersales_cases_away RENAME TO aftersales_cases")
        return round_number is None or round_number >= 2

    sweep_forever(0, reports.append, stop=stop, now=NOW + 48 * HOUR)
    assert [report.failed for report in reports] == [1, 0]
    assert reports[0].errors and reports[0].errors[0].startswith("sweep: ")
    assert reports[1].applied == 1
    assert reload(case_id).state == "awaiting_return"
