"""Property: an order cancelled after payment gives back exactly what was paid — every line's
money (after its share of the discount, with its import tax) and the shipping fee, once — whatever
was refunded on it before, and never a minor unit more (aftersales/order_flow.py)."""
from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from aftersales import order_flow, services
from aftersales.extensions import db
from aftersales.models import Case, Order, Refund
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from tests.conftest import NOW, make_app
from tests.support.databases import close_connections

EXAMPLES = int(os.environ.get("AFTERSALES_HYPOTHESIS_EXAMPLES", "25"))

LINES = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 99_999), st.integers(0, 500)), min_size=1, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=LINES, discount_share=st.floats(0, 1), shipping_fee=st.sampled_from([0, 1, 800, 1999]),
       refunded_before=st.lists(st.integers(1, 10_000), max_size=2), pay_by_hand=st.booleans(), data=st.data())
def test_a_cancelled_order_gives_back_exactly_what_was_paid(lines, discount_share, shipping_fee, refunded_before,
                                                              pay_by_hand, data):
    directory = tempfile.mkdtemp(prefix="aftersales-order-money-")
    app = make_app(Path(directory))
    context = app.app_context()
    context.push()
    try:
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        gross = sum(quantity * price for quantity, price, _tax in lines)
        placed = NOW - timedelta(hours=2)
        order = upsert_order(OrderInput(
            shop="shop", number="P-1", buyer_email="buyer@example.com", currency="CNY",
            lines=[LineInput(position, f"Item {position}", "books", quantity, price, tax_paid=tax)
                   for position, (quantity, price, tax) in enumerate(lines, start=1)],
            discount=int(gross * discount_share) if gross > 1 else 0, placed_at=placed, paid_at=placed,
            shipping_fee=shipping_fee))
        order_id = order.id
        paid = sum(line.paid_amount + line.tax_paid for line in order.lines) + shipping_fee
        line_ids = [line.id for line in order.lines]
        # Partial refunds asked and paid before the cancellation (a refund before shipment).
        for amount in refunded_before:
            line_id = data.draw(st.sampled_from(line_ids), label="line refunded before")
            try:
                case = services.open_case(line_id, "refund_only", "no_reason", amount=amount, now=NOW)
            except services.DomainError:
                continue  # more than is left on the line, or nothing left
            services.act(case.id, "seller", "approve", now=NOW)
            refund_id = db.session.scalar(select(Refund.id).where(Refund.case_id == case.id))
            services.mark_refund_paid(refund_id, 1, "BANK")
            event("a refund paid before the cancellation")
        order_flow.act_on_order(order_id, "buyer", "cancel", reason="changed_mind", now=NOW)
        db.session.remove()
        live = db.session.scalars(select(Refund).join(Case, Case.id == Refund.case_id)
                                  .where(Case.order_id == order_id, Refund.status.in_(("pending", "succeeded")))).all()
        assert sum(refund.amount for refund in live) == paid
        assert sum(refund.amount for refund in live if refund.component == "shipping") == shipping_fee
        for line in db.session.get(Order, order_id).lines:
            assert line.refund_committed == line.paid_amount + line.tax_paid  # nothing left, nothing over
        if pay_by_hand:  # staff pay what is pending: every case completes, the money stays the same
            for refund in [r for r in live if r.status == "pending"]:
                services.mark_refund_paid(refund.id, 1, "BANK")
            db.session.remove()
            cases = db.session.scalars(select(Case).where(Case.order_id == order_id)).all()
            assert {case.state for case in cases} == {"completed"}
            succeeded = db.session.scalars(select(Refund.amount).join(Case, Case.id == Refund.case_id)
                                           .where(Case.order_id == order_id, Refund.status == "succeeded")).all()
            assert sum(succeeded) == paid
    finally:
        db.session.remove()
        db.engine.dispose()
        context.pop()
        close_connections()
        shutil.rmtree(directory, ignore_errors=True)
