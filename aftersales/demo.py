"""Demo data so a newcomer can try every flow: one shop, staff, buyers and orders of each
category, delivered at dates that put them inside and outside the after-sales windows."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from .database import write_transaction
from .extensions import db
from .i18n import _, ngettext
from .models import StaffUser, utcnow
from .orders import LineInput, OrderInput, _write_order, ensure_shop
from .staff import password_hash_method

DEMO_SHOP = "demo-shop"
DEMO_PASSWORD = "demo-password"
DEMO_STAFF = (
    ("seller@example.com", "Sam Seller", "seller"),
    ("platform@example.com", "Pat Platform", "platform"),
)


def _order(number: str, email: str, name: str, lines: list[LineInput], *, delivered_days_ago: int | None,
           shipped: bool = True, insured: bool = False, discount: int = 0) -> OrderInput:
    now = utcnow()
    placed = now - timedelta(days=(delivered_days_ago or 0) + 4)
    return OrderInput(
        shop=DEMO_SHOP, number=number, buyer_email=email, buyer_name=name, currency="CNY", lines=lines,
        placed_at=placed, paid_at=placed + timedelta(minutes=5),
        shipped_at=placed + timedelta(days=1) if shipped else None,
        delivered_at=now - timedelta(days=delivered_days_ago) if delivered_days_ago is not None else None,
        shipping_insured=insured, discount=discount,
    )


def _days_ago(days: float) -> str:
    return (utcnow() - timedelta(days=days)).isoformat()


def demo_orders() -> list[OrderInput]:
    """One or two orders per category, placed so every flow of its plugin can be tried today."""
    return [
        # furniture_installation: the sofa has no no-reason return and is collected free; the
        # bookshelf gets an installer visit for installation damage; the bedside table is a parcel.
        _order("FUR-1001", "li.wei@example.com", "Li Wei", [
            LineInput(1, "Made-to-measure sofa, grey linen", "furniture", 1, 899900,
                      attributes={"custom_made": True, "large_item": True, "delivery_and_installation": True}),
            LineInput(2, "Oak bookshelf (assembled on site)", "furniture", 1, 129900,
                      attributes={"installed": True, "installed_at": _days_ago(20 / 24),
                                  "large_item": True, "delivery_and_installation": True}),
            LineInput(3, "Flat-pack bedside table", "furniture", 2, 39900),
        ], delivered_days_ago=1),
        # Warranty counted from installation (300 days ago), not delivery (400 days ago).
        _order("FUR-1002", "li.wei@example.com", "Li Wei", [
            LineInput(1, "Walnut wardrobe (assembled on site)", "furniture", 1, 459900,
                      attributes={"installed": True, "installed_at": _days_ago(300),
                                  "large_item": True, "warranty_days": 365}),
        ], delivered_days_ago=400),
        # cross_border: damaged goods need two photos; import tax comes back only within the
        # customs window; cheap lines are refunded without a return; 包税 on the formula.
        _order("XB-2001", "emma.jones@example.com", "Emma Jones", [
            LineInput(1, "Imported face serum 30 ml", "cross_border", 2, 25900, tax_paid=4714,
                      attributes={"customs_released_at": _days_ago(6)}),
            LineInput(2, "Imported vitamin gummies", "cross_border", 1, 8900, tax_paid=810,
                      attributes={"customs_released_at": _days_ago(6)}),
            LineInput(3, "Imported baby formula 800 g (price incl. tax)", "cross_border", 1, 32900,
                      attributes={"tax_included": True, "customs_released_at": _days_ago(6)}),
        ], delivered_days_ago=3, insured=True),
        _order("XB-2002", "emma.jones@example.com", "Emma Jones", [
            LineInput(1, "Imported stand mixer", "cross_border", 1, 129900, tax_paid=11821,
                      attributes={"customs_released_at": _days_ago(32)}),
        ], delivered_days_ago=10),
        # electronics_grading: returns are graded A–D on arrival; cosmetic claims within 48 h for
        # portable devices; the activated tablet has no no-reason return.
        _order("EL-3001", "chen.jing@example.com", "Chen Jing", [
            LineInput(1, "Smartphone X 256 GB", "electronics", 1, 499900,
                      attributes={"serial": "SNX-0042", "portable": True, "warranty_days": 365}),
            LineInput(2, "Wireless earbuds", "electronics", 2, 39900, attributes={"portable": True}),
            LineInput(3, "Tablet Z 11 inch (activated)", "electronics", 1, 329900,
                      attributes={"portable": True, "activated": True, "exemption_confirmed": True}),
        ], delivered_days_ago=1, discount=10000),
        # Past the 7-day fault return: exchange and repair are still offered, with the reason shown.
        _order("EL-3002", "chen.jing@example.com", "Chen Jing", [
            LineInput(1, "Smart TV 55 inch", "electronics", 1, 359900,
                      attributes={"portable": False, "warranty_days": 365}),
        ], delivered_days_ago=10),
        # books: no plugin, the base rules.
        _order("BK-4001", "maria.garcia@example.com", "Maria Garcia", [
            LineInput(1, "The Art of Repair (paperback)", "books", 3, 6800),
        ], delivered_days_ago=1),
        _order("BK-4002", "maria.garcia@example.com", "Maria Garcia", [
            LineInput(1, "Atlas of Tea (hardcover)", "books", 1, 15800),
        ], delivered_days_ago=None, shipped=False),
    ]


def load_demo() -> str:
    """Create (or refresh) the demo shop, its staff and its orders. Returns what to try."""
    with write_transaction():
        ensure_shop(DEMO_SHOP, "Demo Shop", currency="CNY", timezone_name="Asia/Shanghai",
                    return_address="Demo Shop Returns, 88 Century Avenue, Pudong, Shanghai 200120", locale="zh_Hans")
        shop = ensure_shop(DEMO_SHOP, "Demo Shop")
        for email, name, role in DEMO_STAFF:
            if db.session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is None:
                staff = StaffUser(email=email, name=name, role=role, shop=shop if role == "seller" else None)
                staff.set_password(DEMO_PASSWORD, password_hash_method())
                db.session.add(staff)
        orders = demo_orders()
        for order in orders:
            _write_order(order)
    lines = [ngettext("demo shop %(shop)s with %(num)d order", "demo shop %(shop)s with %(num)d orders", len(orders),
                      shop=DEMO_SHOP)]
    lines += [_("  order %(number)s / %(email)s", number=o.number, email=o.buyer_email) for o in orders]
    lines += [_("staff login: %(email)s / %(password)s (%(role)s)", email=email, password=DEMO_PASSWORD,
                role=_("seller") if role == "seller" else _("platform")) for email, _name, role in DEMO_STAFF]
    return "\n".join(lines)
