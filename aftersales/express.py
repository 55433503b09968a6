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

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import aliased

from . import money
from .extensions import db
from .models import Case, Order

REFUNDED, ARRIVED, REVOKED = "refunded", "arrived", "revoked"


_CASE_ORDER = aliased(Order)

#: The record of the buyer of an order at its shop, built once (building it cost more than running it).
_BUYER_RECORD = select(
    func.count(Case.id).filter(Case.state == "completed"),
    func.count(Case.id).filter(Case.express_state == REVOKED),
    func.coalesce(func.sum(Case.express_amount).filter(Case.express_state == REFUNDED), 0),
).where(
    Case.order_id.in_(select(Order.id).where(
        Order.shop_id == bindparam("shop_id"),
        Order.buyer_email == select(_CASE_ORDER.buyer_email).where(_CASE_ORDER.id == bindparam("order_id")).scalar_subquery(),
    )),
    Case.id != bindparam("leaving_out"),
)


def buyer_record(shop_id: int, order_id: int, *, leaving_out: int = 0) -> money.BuyerRecord:
    """What the shop knows of the buyer of ``order_id``: completed cases, revoked privilege,
    express money out (``leaving_out``: the case being decided, which is not part of the record
    yet). One query, from the (shop_id, buyer_email) index. It does not flush: the case being
    decided is left out, so its pending step is the transition's to write (``case_writes``)."""
    with db.session.no_autoflush:
        completed, revoked, outstanding = db.session.execute(
            _BUYER_RECORD, {"shop_id": shop_id, "order_id": order_id, "leaving_out": leaving_out}).one()
    return money.BuyerRecord(completed_cases=int(completed), abused_express=bool(revoked),
                             outstanding_express=int(outstanding))


def decision(case: Case, settings: Any) -> money.ExpressDecision:
    """Whether ``case`` (a return and refund whose buyer is shipping the goods) is refunded now."""
    enabled = bool(settings["AFTERSALES_EXPRESS_REFUND_ENABLED"])
    if enabled:
        record = buyer_record(case.shop_id, case.order_id, leaving_out=case.id)
    else:  # nothing to read: the rule says no whatever the record
        record = money.BuyerRecord(completed_cases=0, abused_express=False, outstanding_express=0)
    return money.express_refund_decision(
        record, case.amount, enabled=enabled,
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
