"""Express refund (极速退款): a buyer with a good record is refunded when they enter the return's
tracking number, not when the goods arrive; the shop carries the risk.

The buyer's record, per shop and buyer e-mail, is read from their cases: how many completed, the
express refunds whose return has not arrived yet (counted against ``AFTERSALES_EXPRESS_QUOTA``),
and whether an express-refunded return ever failed to arrive. The rule itself is
``money.express_refund_decision``. A case's ``express_state`` says where its express refund
stands: ``refunded`` (paid on shipment, the goods on their way), ``arrived`` (the seller
confirmed receipt), ``revoked`` (the receipt deadline passed without the seller confirming, or
the seller disputed the goods: this buyer gets no more express refunds from this shop).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from . import money
from .extensions import db
from .models import Case, Order

REFUNDED, ARRIVED, REVOKED = "refunded", "arrived", "revoked"


def buyer_record(shop_id: int, buyer_email: str, *, leaving_out: int | None = None) -> money.BuyerRecord:
    """What the shop knows of the buyer: completed cases, revoked privilege, express money out
    (``leaving_out``: the case being decided, which is not part of the record yet). One query."""
    orders = select(Order.id).where(Order.shop_id == shop_id, Order.buyer_email == buyer_email)
    query = select(
        func.count(Case.id).filter(Case.state == "completed"),
        func.count(Case.id).filter(Case.express_state == REVOKED),
        func.coalesce(func.sum(Case.express_amount).filter(Case.express_state == REFUNDED), 0),
    ).where(Case.order_id.in_(orders))
    if leaving_out is not None:
        query = query.where(Case.id != leaving_out)
    completed, revoked, outstanding = db.session.execute(query).one()
    return money.BuyerRecord(completed_cases=int(completed), abused_express=bool(revoked),
                             outstanding_express=int(outstanding))


def decision(case: Case, settings: Any) -> money.ExpressDecision:
    """Whether ``case`` (a return and refund whose buyer is shipping the goods) is refunded now."""
    record = buyer_record(case.shop_id, case.order.buyer_email, leaving_out=case.id)
    return money.express_refund_decision(
        record, case.amount, enabled=bool(settings["AFTERSALES_EXPRESS_REFUND_ENABLED"]),
        min_completed_cases=int(settings["AFTERSALES_EXPRESS_MIN_COMPLETED_CASES"]),
        quota=int(settings["AFTERSALES_EXPRESS_QUOTA"]),
    )


def after_step(case: Case, actor: str, trigger: str) -> str | None:
    """The express state a step of an express-refunded case leads to, or None if unchanged."""
    if trigger == "dispute_goods" and case.express_state in (REFUNDED, ARRIVED):
        return REVOKED  # what came back is not what was refunded
    if trigger == "confirm_receipt" and case.express_state == REFUNDED:
        return ARRIVED if actor != "system" else REVOKED  # the deadline passed without the seller seeing the goods
    return None
