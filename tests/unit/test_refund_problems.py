"""Refunds that do not go through at once (aftersales/services.py): a payment plugin that raises
(the refund stays pending, staff read the error and send it again under the same idempotency
key), and staff cancelling a manual refund not paid yet (its amount is freed)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from aftersales import services
from aftersales.errors import InvalidInput, NotAllowed, RefundRefused
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, OrderLine, OutboxMessage, Refund
from tests.conftest import NOW, make_app, make_order, photos
from tests.plugins.test_hooks import loaded, write_plugin

GATEWAY = """
    from aftersales import RefundResult, hookimpl

    calls = []
    down = [True]

    @hookimpl
    def aftersales_issue_refund(refund, case):
        calls.append(refund.idempotency_key)
        if down[0]:
            raise ConnectionError("gateway.example unreachable")
        return RefundResult("succeeded", reference="GW-1")
"""


@pytest.fixture
def gateway_app(tmp_path):
    folder = write_plugin(tmp_path / "p", "unreliable_gateway", GATEWAY)
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))
    with app.app_context():
        yield app


def approved_refund() -> tuple[int, int]:
    line = make_order().lines[0]
    case_id = services.open_case(line.id, "refund_only", "quality", evidence=photos(), now=NOW).id
    services.act(case_id, "seller", "approve", now=NOW)
    db.session.remove()
    refund_id = db.session.scalar(select(Refund.id).where(Refund.case_id == case_id))
    return case_id, refund_id


def triggers(case_id: int) -> list[str]:
    db.session.remove()
    return [event.trigger for event in db.session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))]


def test_a_raising_gateway_leaves_the_refund_pending_with_its_error_for_staff(gateway_app):
    case_id, refund_id = approved_refund()
    refund = db.session.get(Refund, refund_id)
    assert (refund.status, refund.provider) == ("pending", "unreliable_gateway")
    assert "gateway.example unreachable" in refund.provider_error
    assert "unreliable_gateway" in refund.provider_error  # the plugin is named
    assert triggers(case_id)[-1] == "refund_send_failed"
    assert db.session.get(Case, case_id).state == "refunding"


def test_sending_again_uses_the_same_key_and_completes_the_case(gateway_app):
    case_id, refund_id = approved_refund()
    loaded("unreliable_gateway").down[0] = False
    refund = services.resend_refund(refund_id, actor="seller", actor_id="1")
    assert refund.status == "succeeded" and refund.provider_reference == "GW-1"
    calls = loaded("unreliable_gateway").calls
    assert len(calls) == 2 and len(set(calls)) == 1  # one refund, asked for twice under one key
    assert db.session.get(Case, case_id).state == "completed"
    assert "refund_resent" in triggers(case_id)
    # The attempt waiting in the outbox was replaced, so the provider is not asked a third time.
    waiting = db.session.scalars(select(OutboxMessage).where(OutboxMessage.topic == "issue_refund",
                                                             OutboxMessage.delivered_at.is_(None),
                                                             OutboxMessage.dead_at.is_(None))).all()
    assert waiting == []


def test_a_refund_with_the_provider_cannot_be_cancelled_and_a_manual_one_not_resent(gateway_app, tmp_path):
    _case_id, refund_id = approved_refund()
    with pytest.raises(NotAllowed, match="with the payment provider"):
        services.cancel_refund(refund_id, "changed our mind")
    manual = make_app(tmp_path / "manual")
    with manual.app_context():
        _case_id, manual_refund = approved_refund()
        with pytest.raises(NotAllowed, match="mark it as paid"):
            services.resend_refund(manual_refund)


def test_staff_cancel_a_manual_refund_with_a_reason_and_its_amount_is_freed(app):
    case_id, refund_id = approved_refund()
    line_id = db.session.get(Case, case_id).line_id
    assert db.session.get(OrderLine, line_id).refund_committed == 10000
    with pytest.raises(InvalidInput):
        services.cancel_refund(refund_id, "   ")
    refund = services.cancel_refund(refund_id, "Paid by bank transfer to the wrong account number", actor_id="1", now=NOW)
    assert (refund.status, refund.failure_reason) == ("cancelled", "Paid by bank transfer to the wrong account number")
    db.session.remove()
    assert db.session.get(OrderLine, line_id).refund_committed == 0
    assert db.session.get(Case, case_id).state == "refunding"  # the buyer is still owed the money
    assert triggers(case_id)[-1] == "refund_cancelled"
    with pytest.raises(RefundRefused):
        services.cancel_refund(refund_id, "again")
    with pytest.raises(RefundRefused):
        services.mark_refund_paid(refund_id, 1)
    again = services.retry_refund(case_id, actor_id="1", now=NOW)
    assert (again.status, again.amount) == ("pending", 10000)
    db.session.remove()
    assert db.session.get(OrderLine, line_id).refund_committed == 10000  # never more than was paid
    services.mark_refund_paid(again.id, 1, now=NOW)
    assert db.session.get(Case, case_id).state == "completed"
