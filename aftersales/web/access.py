"""Who may see which object. Anything not yours is a 404, the same answer as "does not exist"."""
from __future__ import annotations

from flask import abort, session
from flask_login import current_user

from ..extensions import db
from ..models import Case, Order

BUYER_ORDERS = "aftersales_buyer_orders"

#: The URL converter for a row id: ids are 32-bit integer columns, so a larger number in a path
#: is a 404 from the router instead of an overflow in the database.
MAX_ROW_ID = 2**31 - 1
ROW_ID = f"int(max={MAX_ROW_ID})"


def grant_buyer(order: Order) -> None:
    """After a successful lookup the signed session cookie carries access to that order only."""
    orders = [i for i in session.get(BUYER_ORDERS, []) if i != order.id][-9:]
    session[BUYER_ORDERS] = orders + [order.id]


def buyer_order_ids() -> list[int]:
    return list(session.get(BUYER_ORDERS, []))


def buyer_order_or_404(order_id: int) -> Order:
    if order_id not in buyer_order_ids():
        abort(404)
    order = db.session.get(Order, order_id)
    if order is None:
        abort(404)
    return order


def buyer_case_or_404(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None or case.order_id not in buyer_order_ids():
        abort(404)
    return case


def staff_can_see(case: Case) -> bool:
    if not current_user.is_authenticated:
        return False
    return current_user.role == "platform" or current_user.shop_id == case.shop_id


def staff_case_or_404(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None or not staff_can_see(case):
        abort(404)
    return case
