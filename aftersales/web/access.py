"""Who may see which object. Anything not yours is a 404, the same answer as "does not exist"."""
from __future__ import annotations

from typing import Any

from flask import abort, current_app, request, session
from flask_login import current_user

from ..errors import PluginError
from ..extensions import db, login_manager
from ..models import INT32_MAX, Case, Order, StaffUser
from ..orders import revoke_buyer_access
from ..runtime import current

BUYER_ORDERS = "aftersales_buyer_orders"

#: The URL converter for a row id: ids are 32-bit integer columns, so a larger number in a path
#: is a 404 from the router instead of an overflow in the database.
ROW_ID = f"int(max={INT32_MAX})"


def grant_buyer(order: Order) -> None:
    """After a successful lookup the signed session cookie carries access to that order only:
    its id and the order's access generation (see ``Order.buyer_access_generation``)."""
    grants = [pair for pair in _grants() if pair[0] != order.id][-9:]
    session[BUYER_ORDERS] = grants + [[order.id, order.buyer_access_generation or 0]]


def _grants() -> list[list[int]]:
    """The (order id, generation) pairs of the cookie; anything malformed is no grant."""
    raw = session.get(BUYER_ORDERS)
    if not isinstance(raw, list):
        return []
    return [[pair[0], pair[1]] for pair in raw
            if isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)]


def buyer_may_see(order_id: int) -> bool:
    """Whether the cookie grants this order and the grant is still good (not forgotten since)."""
    generation = dict(map(tuple, _grants())).get(order_id)
    if generation is None:
        return False
    order = db.session.get(Order, order_id)
    return order is not None and (order.buyer_access_generation or 0) == generation


def forget_buyer_orders() -> None:
    """"Forget this order": the orders of this cookie are closed to every grant issued so far
    (copies of the cookie, other devices), then dropped from the cookie."""
    revoke_buyer_access([order_id for order_id, _generation in _grants() if buyer_may_see(order_id)])
    session.pop(BUYER_ORDERS, None)


def buyer_order_or_404(order_id: int) -> Order:
    if not buyer_may_see(order_id):
        abort(404)
    order = db.session.get(Order, order_id)
    page_of_shop(order.shop)
    return order


def buyer_case_or_404(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None or not buyer_may_see(case.order_id):
        abort(404)
    page_of_shop(case.shop)
    return case


_NOT_ASKED = object()


def current_staff() -> StaffUser | None:
    """The staff member this request is for, or None: whom the host says
    (``aftersales_current_staff``), else whom the module's own staff login says. Asked once per
    request; an inactive account is nobody."""
    asked = request.environ  # per request (``g`` lives as long as the app context, which may be longer)
    staff = asked.get("aftersales.staff", _NOT_ASKED)
    if staff is _NOT_ASKED:
        staff = current().plugins.call("aftersales_current_staff", request=request)
        if staff is not None and not isinstance(staff, StaffUser):
            raise PluginError("?", "aftersales_current_staff", None,
                              f"aftersales_current_staff must return a StaffUser or None, got {staff!r}")
        asked["aftersales.staff_from_host"] = staff is not None
        if staff is None and module_login_available() and current_user.is_authenticated:
            staff = current_user._get_current_object()
        if staff is not None and not staff.active:
            staff = None
        asked["aftersales.staff"] = staff
    return staff


def staff_from_host() -> bool:
    """Whether the host said who this is (then the host, not the module, logs people in and out)."""
    current_staff()
    return bool(request.environ.get("aftersales.staff_from_host"))


def module_login_available() -> bool:
    """The module's own staff login works only with its own login manager: a host's manager
    loads the host's users from the session, and a module staff id there would name one of them."""
    return getattr(current_app, "login_manager", None) is login_manager


def staff_can_see(case: Case) -> bool:
    staff = current_staff()
    if staff is None:
        return False
    return staff.role == "platform" or staff.shop_id == case.shop_id


def staff_case_or_404(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None or not staff_can_see(case):
        abort(404)
    page_of_shop(case.shop)
    return case


def staff_order_or_404(order_id: int) -> Order:
    """The order, for staff of its shop or of the platform; anyone else reads 404."""
    staff = current_staff()
    order = db.session.get(Order, order_id)
    if order is None or staff is None or (staff.role != "platform" and staff.shop_id != order.shop_id):
        abort(404)
    page_of_shop(order.shop)
    return order


def page_of_shop(shop: Any) -> None:
    """The page shows this shop's order or case, now that the visitor may see it: its default
    language and time zone apply (never before the check, so a refused page says nothing of
    whose it would have been)."""
    from .language import use_shop

    use_shop(shop)
