"""Pushing orders in: the small API a host marketplace calls, and the import command uses.

``upsert_order`` creates or updates an order with its lines; ``mark_shipped`` and
``mark_delivered`` record the fulfilment dates the after-sales windows count from. Input is
checked completely before anything is written, and every problem is reported at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import bindparam, select, update

from .database import write_transaction
from .errors import InvalidInput, NotFound
from .extensions import db
from .i18n import _
from .money import is_payable_currency, split_exact
from .models import Order, OrderCoupon, OrderLine, Shipment, ShipmentLine, Shop, lookup_number, utcnow
from .textinput import clean_line


@dataclass
class LineInput:
    position: int
    title: str
    category: str
    quantity: int
    unit_price: int
    paid_amount: int | None = None  # default: unit price × quantity less its share of the discount
    sku: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    tax_paid: int = 0  # import tax paid on top of the price (0 when the price includes it)
    source_line: int | None = None  # the file line it came from, for error messages


def line_label(source_line: int | None, position: int) -> str:
    """How a problem names a line: by its line in the import file, else its place in the order."""
    if source_line:
        return _("line %(n)d: ", n=source_line)
    return _("order line %(n)d: ", n=position)


@dataclass
class ShipmentInput:
    """A parcel: its carrier and tracking number, when it left and arrived, and how many units of
    which lines (by position) it carries."""

    carrier: str
    tracking_number: str
    lines: dict[int, int]  # line position -> units in this parcel
    shipped_at: datetime | None = None  # default: now
    delivered_at: datetime | None = None


@dataclass
class CouponInput:
    """A coupon the order was paid with: ``amount`` off the lines at ``positions`` (default: every
    line), split by their value, for lines worth at least ``threshold`` together."""

    code: str
    amount: int
    threshold: int = 0
    positions: list[int] | None = None


#: The keys an order, a line, a parcel and a parcel's line may carry; any other is refused by
#: name (a misspelt ``shiped_quantity`` must not be read as "nothing shipped").
ORDER_KEYS = frozenset({"shop", "number", "buyer_email", "buyer_name", "currency", "lines", "discount", "shipping_fee",
                        "shipping_insured", "placed_at", "paid_at", "shipped_at", "delivered_at", "shipments",
                        "coupons", "points_used", "points_amount"})
LINE_KEYS = frozenset({"position", "title", "category", "quantity", "unit_price", "paid_amount", "tax_paid", "sku",
                       "attributes", "source_line"})
SHIPMENT_KEYS = frozenset({"carrier", "tracking_number", "shipped_at", "delivered_at", "lines"})
SHIPMENT_LINE_KEYS = frozenset({"position", "quantity"})
COUPON_KEYS = frozenset({"code", "amount", "threshold", "lines"})


def unknown_keys(mapping: Mapping[str, Any], known: frozenset[str], where: str = "") -> list[str]:
    """A problem naming the keys of ``mapping`` that are not in ``known``, or none."""
    unknown = sorted(str(key) for key in mapping if key not in known)
    if not unknown:
        return []
    return [_("%(where)sunknown field(s): %(names)s (known: %(known)s)", where=where, names=", ".join(unknown),
              known=", ".join(sorted(known - {"source_line"})))]


@dataclass
class OrderInput:
    shop: str  # shop slug
    number: str
    buyer_email: str
    currency: str
    lines: list[LineInput]
    buyer_name: str = ""
    discount: int = 0  # order-level discount, split over lines by value
    shipping_fee: int = 0
    shipping_insured: bool = False
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    shipments: list[ShipmentInput] = field(default_factory=list)
    coupons: list[CouponInput] = field(default_factory=list)
    points_used: int = 0  # how many points the buyer paid with
    points_amount: int = 0  # the money they stood for, taken off the lines in proportion


class OrderProblems(InvalidInput):
    """Everything wrong with an order's input, as a list of messages."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(_("%(field)s is not a date and time (use ISO 8601, e.g. 2026-11-20T15:00:00+08:00).", field=name), field=name) from None
    if moment.tzinfo is None:
        raise InvalidInput(_("%(field)s needs a timezone offset (e.g. +08:00 or Z).", field=name), field=name)
    return moment.astimezone(timezone.utc)


def order_from_mapping(data: Mapping[str, Any]) -> OrderInput:
    """Build an :class:`OrderInput` from plain data (JSON, a CSV group, a host app's dict)."""
    problems: list[str] = []

    def need(mapping: Mapping[str, Any], key: str, kind: type, where: str = "", money: bool = False) -> Any:
        """The value, or None after recording why it is missing or wrong."""
        value = mapping.get(key)
        if value in (None, ""):
            problems.append(_("%(where)s%(field)s is missing", where=where, field=key))
            return None
        if kind is int:
            text = value.strip() if isinstance(value, str) else None
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text is not None and text.lstrip("-").isdigit():
                return int(text)
            problems.append(_("%(where)s%(field)s must be a whole number of minor units (e.g. 1999 for 19.99)", where=where, field=key)
                            if money else _("%(where)s%(field)s must be a whole number", where=where, field=key))
            return None
        text = str(value).strip()
        if not text:
            problems.append(_("%(where)s%(field)s is missing", where=where, field=key))
            return None
        return text

    def optional_int(mapping: Mapping[str, Any], key: str, where: str = "", money: bool = False) -> int | None:
        return need(mapping, key, int, where, money) if mapping.get(key) not in (None, "") else None

    problems.extend(unknown_keys(data, ORDER_KEYS))
    times = {}
    for key in ("placed_at", "paid_at", "shipped_at", "delivered_at"):
        try:
            times[key] = parse_time(data.get(key), key)
        except InvalidInput as error:
            problems.append(str(error))
    lines = []
    raw_lines = data.get("lines") or []
    if not isinstance(raw_lines, list) or not raw_lines:
        problems.append(_("an order needs at least one line"))
        raw_lines = []
    for index, raw in enumerate(raw_lines, start=1):
        source_line = raw.get("source_line") if isinstance(raw, Mapping) else None
        where = line_label(source_line, index)
        if not isinstance(raw, Mapping):
            problems.append(where + _("not an object"))
            continue
        problems.extend(unknown_keys(raw, LINE_KEYS, where))
        attributes = raw.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            problems.append(where + _("attributes must be an object"))
            attributes = {}
        lines.append(LineInput(
            position=optional_int(raw, "position", where) or index,
            title=need(raw, "title", str, where),
            category=need(raw, "category", str, where),
            quantity=need(raw, "quantity", int, where),
            unit_price=need(raw, "unit_price", int, where, money=True),
            paid_amount=optional_int(raw, "paid_amount", where, money=True),
            tax_paid=optional_int(raw, "tax_paid", where, money=True) or 0,
            sku=str(raw.get("sku") or ""),
            attributes=dict(attributes),
            source_line=source_line,
        ))
    shipments = []
    raw_shipments = data.get("shipments") or []
    if not isinstance(raw_shipments, list):
        problems.append(_("shipments must be a list of parcels"))
        raw_shipments = []
    for index, raw in enumerate(raw_shipments, start=1):
        where = _("parcel %(n)d: ", n=index)
        if not isinstance(raw, Mapping):
            problems.append(where + _("not an object"))
            continue
        problems.extend(unknown_keys(raw, SHIPMENT_KEYS, where))
        parcel_times = {}
        for key in ("shipped_at", "delivered_at"):
            try:
                parcel_times[key] = parse_time(raw.get(key), key)
            except InvalidInput as error:
                problems.append(where + str(error))
        units: dict[int, int] = {}
        raw_units = raw.get("lines")
        if not isinstance(raw_units, list) or not raw_units:
            problems.append(where + _("a parcel needs its lines, e.g. [{\"position\": 1, \"quantity\": 2}]"))
            raw_units = []
        for raw_unit in raw_units:
            if not isinstance(raw_unit, Mapping):
                problems.append(where + _("not an object"))
                continue
            problems.extend(unknown_keys(raw_unit, SHIPMENT_LINE_KEYS, where))
            position, count = need(raw_unit, "position", int, where), need(raw_unit, "quantity", int, where)
            if position is not None and count is not None:
                if position in units:
                    problems.append(where + _("line %(n)d is listed twice", n=position))
                units[position] = count
        shipments.append(ShipmentInput(
            carrier=need(raw, "carrier", str, where) or "", tracking_number=need(raw, "tracking_number", str, where) or "",
            lines=units, **parcel_times))
    coupons = []
    raw_coupons = data.get("coupons") or []
    if not isinstance(raw_coupons, list):
        problems.append(_("coupons must be a list"))
        raw_coupons = []
    for index, raw in enumerate(raw_coupons, start=1):
        where = _("coupon %(n)d: ", n=index)
        if not isinstance(raw, Mapping):
            problems.append(where + _("not an object"))
            continue
        problems.extend(unknown_keys(raw, COUPON_KEYS, where))
        positions = raw.get("lines")
        if positions is not None and (not isinstance(positions, list) or not all(
                isinstance(p, int) and not isinstance(p, bool) for p in positions)):
            problems.append(where + _("lines must be a list of line positions, e.g. [1, 2]"))
            positions = None
        coupons.append(CouponInput(code=need(raw, "code", str, where) or "", amount=need(raw, "amount", int, where, money=True) or 0,
                                   threshold=optional_int(raw, "threshold", where, money=True) or 0, positions=positions))
    order = OrderInput(
        shop=need(data, "shop", str),
        number=need(data, "number", str),
        buyer_email=need(data, "buyer_email", str),
        currency=(need(data, "currency", str) or "").upper(),
        lines=lines,
        buyer_name=str(data.get("buyer_name") or ""),
        discount=optional_int(data, "discount", money=True) or 0,
        shipping_fee=optional_int(data, "shipping_fee", money=True) or 0,
        shipping_insured=str(data.get("shipping_insured", "")).strip().lower() in ("1", "true", "yes"),
        shipments=shipments,
        coupons=coupons,
        points_used=optional_int(data, "points_used") or 0,
        points_amount=optional_int(data, "points_amount", money=True) or 0,
        **times,
    )
    problems.extend(check_order(order))
    if problems:
        raise OrderProblems(problems)
    return order


def check_order(order: OrderInput) -> list[str]:
    """Problems that don't need the database."""
    problems = []
    if order.currency and (len(order.currency) != 3 or not order.currency.isalpha()):
        problems.append(_("currency must be a 3-letter ISO code"))
    elif order.currency and not is_payable_currency(order.currency):
        problems.append(_("currency %(code)s is not an ISO 4217 currency", code=order.currency))
    if order.buyer_email and "@" not in order.buyer_email:
        problems.append(_("buyer_email is not an e-mail address"))
    positions = [line.position for line in order.lines]
    if len(positions) != len(set(positions)):
        problems.append(_("line positions must be unique"))
    for line in order.lines:
        where = line_label(line.source_line, line.position)
        if line.quantity is not None and line.quantity <= 0:
            problems.append(where + _("quantity must be at least 1"))
        if (line.unit_price or 0) < 0 or (line.paid_amount or 0) < 0 or (line.tax_paid or 0) < 0:
            problems.append(where + _("prices cannot be negative"))
    gross = sum(max(line.unit_price or 0, 0) * max(line.quantity or 0, 0) for line in order.lines)
    if order.discount < 0 or order.discount > gross:
        problems.append(_("discount must be between 0 and the order's value"))
    if order.shipping_fee < 0:
        problems.append(_("shipping_fee cannot be negative"))
    problems.extend(_coupon_problems(order))
    if order.delivered_at and not order.shipped_at:
        problems.append(_("an order cannot be delivered before it was shipped"))
    if order.delivered_at and order.shipped_at and order.delivered_at < order.shipped_at:
        problems.append(_("delivered_at is before shipped_at"))
    problems.extend(_parcel_problems(order))
    return problems


def _coupon_problems(order: OrderInput) -> list[str]:
    problems = []
    values = {line.position: max(line.unit_price or 0, 0) * max(line.quantity or 0, 0) for line in order.lines}
    codes = [coupon.code for coupon in order.coupons]
    if len(codes) != len(set(codes)):
        problems.append(_("coupon codes must be unique in an order"))
    for index, coupon in enumerate(order.coupons, start=1):
        where = _("coupon %(n)d: ", n=index)
        unknown = sorted(set(coupon.positions or ()) - set(values))
        if unknown:
            problems.append(where + _("the order has no line %(n)d", n=unknown[0]))
            continue
        covered = sum(values[p] for p in (coupon.positions or values))
        if coupon.amount <= 0 or coupon.amount > covered:
            problems.append(where + _("amount must be more than 0 and at most the value of its lines"))
        if coupon.threshold < 0 or coupon.threshold > covered:
            problems.append(where + _("its lines are worth less than its threshold"))
    if not problems and all(isinstance(line.quantity, int) and isinstance(line.unit_price, int) for line in order.lines):
        for line, paid in zip(order.lines, paid_amounts(order)):
            if paid < 0:
                problems.append(line_label(line.source_line, line.position)
                                + _("the discount, coupons and points come to more than its value"))
    taken = order.discount + sum(max(coupon.amount, 0) for coupon in order.coupons)
    if order.points_used < 0 or order.points_amount < 0:
        problems.append(_("points cannot be negative"))
    elif order.points_amount > sum(values.values()) - taken:
        problems.append(_("points_amount is more than the order's value after discounts"))
    elif order.points_amount and not order.points_used:
        problems.append(_("points_amount needs points_used (how many points paid it)"))
    return problems


def _parcel_problems(order: OrderInput) -> list[str]:
    if not order.shipments:
        return []
    problems = []
    if order.shipped_at or order.delivered_at:
        problems.append(_("an order with shipments takes its shipped and delivered times from its parcels; "
                          "leave out shipped_at and delivered_at"))
    quantities = {line.position: line.quantity for line in order.lines}
    shipped: dict[int, int] = {}
    seen: set[tuple[str, str]] = set()
    for index, parcel in enumerate(order.shipments, start=1):
        where = _("parcel %(n)d: ", n=index)
        if (parcel.carrier, parcel.tracking_number) in seen:
            problems.append(where + _("the same carrier and tracking number appear twice"))
        seen.add((parcel.carrier, parcel.tracking_number))
        if parcel.delivered_at and parcel.shipped_at and parcel.delivered_at < parcel.shipped_at:
            problems.append(where + _("delivered_at is before shipped_at"))
        for position, count in parcel.lines.items():
            if position not in quantities:
                problems.append(where + _("the order has no line %(n)d", n=position))
            elif count <= 0:
                problems.append(where + _("line %(n)d: quantity must be at least 1", n=position))
            else:
                shipped[position] = shipped.get(position, 0) + count
    for position, count in shipped.items():
        if quantities[position] is not None and count > quantities[position]:
            problems.append(_("line %(n)d: the parcels carry %(shipped)d units, the line has %(quantity)d",
                              n=position, shipped=count, quantity=quantities[position]))
    return problems


def paid_amounts(order: OrderInput) -> list[int]:
    """Each line's paid amount: given, or its value less its exact shares (largest remainder,
    by value) of the order discount, of each coupon covering it and of the points."""
    values = [line.unit_price * line.quantity for line in order.lines]
    left = list(values)
    if order.discount and sum(values):
        left = [value - share for value, share in zip(left, split_exact(order.discount, values))]
    for coupon in order.coupons:
        covered = [value if coupon.positions is None or line.position in coupon.positions else 0
                   for line, value in zip(order.lines, values)]
        if coupon.amount and sum(covered):
            left = [value - share for value, share in zip(left, split_exact(coupon.amount, covered))]
    if order.points_amount and sum(left):
        left = [value - share for value, share in zip(left, split_exact(order.points_amount, [max(v, 0) for v in left]))]
    return [line.paid_amount if line.paid_amount is not None else value for line, value in zip(order.lines, left)]


def points_shares(order: OrderInput) -> list[int]:
    """How many of the order's points each line was paid with (by value, exact)."""
    values = [line.unit_price * line.quantity for line in order.lines]
    if not order.points_used or not sum(values):
        return [0] * len(values)
    return split_exact(order.points_used, values)


def upsert_order(data: OrderInput | Mapping[str, Any], *, commit: bool = True) -> Order:
    """Create the order, or update it (same shop and number). Lines match by position.

    A line already refunded cannot drop below what was refunded, and a line with cases
    cannot be removed.
    """
    order_input = _cleaned(data if isinstance(data, OrderInput) else order_from_mapping(data))
    problems = check_order(order_input)
    if problems:
        raise OrderProblems(problems)
    if commit:
        with write_transaction():
            return _write_order(order_input)
    return _write_order(order_input)


def _cleaned(order: OrderInput) -> OrderInput:
    """The order's texts through the text rule (``aftersales.textinput``): the buyer looks the
    order up by the same number and e-mail the pages clean."""
    lines = [replace(line, title=clean_line(line.title), category=clean_line(line.category), sku=clean_line(line.sku))
             for line in order.lines]
    return replace(order, shop=clean_line(order.shop), number=clean_line(order.number),
                   buyer_email=clean_line(order.buyer_email), buyer_name=clean_line(order.buyer_name), lines=lines)


def _write_order(data: OrderInput) -> Order:
    shop = db.session.scalar(select(Shop).where(Shop.slug == data.shop))
    if shop is None:
        raise OrderProblems([_("no shop %(slug)s", slug=data.shop)])
    # Locked (PostgreSQL; SQLite's BEGIN IMMEDIATE lets one writer in): a buyer's cancellation or
    # the sweeper, which lock the order too, cannot slip between this read and its write.
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == data.number)
                              .with_for_update().execution_options(populate_existing=True))
    newly_paid = data.paid_at is not None and (order is None or order.paid_at is None)
    if order is None:
        order = Order(shop=shop, number=data.number, placed_at=data.placed_at or utcnow())
        db.session.add(order)
    elif order.currency != data.currency:
        raise OrderProblems([_("order %(number)s: the currency cannot change", number=data.number)])
    order.buyer_email = data.buyer_email.strip().lower()
    order.buyer_name = data.buyer_name
    order.currency = data.currency
    if order.shipping_refunded and data.shipping_fee != order.shipping_fee:
        raise OrderProblems([_("order %(number)s: its shipping fee was refunded and cannot change", number=data.number)])
    order.shipping_fee = data.shipping_fee
    order.shipping_insured = data.shipping_insured
    if data.placed_at:
        order.placed_at = data.placed_at
    order.paid_at = data.paid_at or order.paid_at  # unpaid orders have no after-sales yet
    order.shipped_at = data.shipped_at or order.shipped_at
    order.delivered_at = data.delivered_at or order.delivered_at

    order.points_used, order.points_amount = data.points_used, data.points_amount
    existing = {line.position: line for line in order.lines}
    problems = []
    for line_input, paid, points in zip(data.lines, paid_amounts(data), points_shares(data)):
        line = existing.pop(line_input.position, None)
        if line is None:
            line = OrderLine(position=line_input.position, refund_committed=0)
            order.lines.append(line)
        elif paid + line_input.tax_paid < line.refund_committed:
            problems.append(_("line %(n)d: paid amount cannot drop below what was already refunded", n=line_input.position))
        line.sku, line.title, line.category = line_input.sku, line_input.title, line_input.category
        line.quantity, line.unit_price, line.paid_amount = line_input.quantity, line_input.unit_price, paid
        line.tax_paid = line_input.tax_paid
        line.points_share = points
        line.attributes = dict(line_input.attributes)
    for position, line in existing.items():
        if line.id is not None and _has_cases(line):
            problems.append(_("line %(n)d has after-sales cases and cannot be removed", n=position))
        elif any(part.line is line for parcel in order.shipments for part in parcel.lines):
            problems.append(_("line %(n)d is in a parcel and cannot be removed", n=position))
        else:
            order.lines.remove(line)
    _put_coupons(order, data.coupons)
    for parcel in data.shipments:
        _put_parcel(order, parcel)
    problems.extend(_cancelled_line_problems(order))
    problems.extend(_recount_fulfilment(order))
    if problems:
        raise OrderProblems(problems)
    db.session.flush()
    _follow(order, newly_paid=newly_paid)
    return order


def _follow(order: Order, *, newly_paid: bool = False) -> None:
    """The order's workflow takes the pushed facts (``order_flow.follow_fulfilment``); a fact its
    state cannot take is a problem of the push, reported like the others."""
    from .order_flow import OrderProblem, follow_fulfilment

    try:
        follow_fulfilment(order, newly_paid=newly_paid)
    except OrderProblem as problem:
        raise OrderProblems([str(problem)]) from problem


def _put_coupons(order: Order, coupons: list[CouponInput]) -> None:
    """The order's coupons become the ones pushed (matched by code; one already given back stays)."""
    kept = {coupon.code: coupon for coupon in order.coupons}
    for given in coupons:
        coupon = kept.pop(given.code, None)
        if coupon is None:
            coupon = OrderCoupon(code=given.code)
            order.coupons.append(coupon)
        coupon.amount, coupon.threshold = given.amount, given.threshold
        coupon.positions = sorted(given.positions) if given.positions is not None else [line.position for line in order.lines]
    for coupon in kept.values():
        if coupon.returned_at is None:
            order.coupons.remove(coupon)


def _cancelled_line_problems(order: Order) -> list[str]:
    """A cancelled line cannot ship (its money was refunded)."""
    cancelled = {line.position for line in order.lines if line.cancelled_at is not None}
    return [_("line %(n)d was cancelled and cannot ship", n=part.line.position)
            for parcel in order.shipments for part in parcel.lines if part.line.position in cancelled]


def _put_parcel(order: Order, parcel: ShipmentInput) -> Shipment:
    """Add the parcel to the order, or update the one with its carrier and tracking number (its
    lines become the ones given; a delivery time, once known, stays unless a new one is given)."""
    shipment = next((known for known in order.shipments
                     if (known.carrier, known.tracking_number) == (parcel.carrier, parcel.tracking_number)), None)
    if shipment is None:
        shipment = Shipment(carrier=parcel.carrier, tracking_number=parcel.tracking_number,
                            shipped_at=parcel.shipped_at or utcnow())
        order.shipments.append(shipment)
    elif parcel.shipped_at:
        shipment.shipped_at = parcel.shipped_at
    shipment.delivered_at = parcel.delivered_at or shipment.delivered_at
    by_position = {line.position: line for line in order.lines}
    kept = {part.line.position: part for part in shipment.lines}
    for position, count in parcel.lines.items():
        part = kept.pop(position, None)
        if part is None:
            shipment.lines.append(ShipmentLine(line=by_position[position], quantity=count))
        else:
            part.quantity = count
    for part in kept.values():
        shipment.lines.remove(part)
    return shipment


def _recount_fulfilment(order: Order) -> list[str]:
    """Each line's shipped and delivered units from the order's parcels, and the order's own
    shipped_at (the first parcel) and delivered_at (when the last unit arrived; None until every
    unit has). An order without parcels is left as it is. Returns the problems (more units in
    parcels than the line has)."""
    if not order.shipments:
        return []
    problems = []
    for line in order.lines:
        parts = [(parcel, part) for parcel in order.shipments for part in parcel.lines if part.line is line]
        shipped = sum(part.quantity for _parcel, part in parts)
        delivered = [(parcel.delivered_at, part.quantity) for parcel, part in parts if parcel.delivered_at]
        if shipped > line.quantity:
            problems.append(_("line %(n)d: the parcels carry %(shipped)d units, the line has %(quantity)d",
                              n=line.position, shipped=shipped, quantity=line.quantity))
        line.shipped_quantity = shipped
        line.delivered_quantity = sum(count for _at, count in delivered)
        line.last_delivered_at = max((at for at, _count in delivered), default=None)
    order.shipped_at = min(parcel.shipped_at for parcel in order.shipments)
    shipping = [line for line in order.lines if line.cancelled_at is None]  # a cancelled line never ships
    every_unit_arrived = all(line.delivered_quantity == line.quantity for line in shipping)
    order.delivered_at = (max((line.last_delivered_at for line in shipping if line.last_delivered_at), default=None)
                          if every_unit_arrived else None)
    return problems


def add_shipment(shop: str, number: str, carrier: str, tracking_number: str, lines: Mapping[int, int],
                 *, at: datetime | None = None, delivered_at: datetime | None = None) -> Shipment:
    """A parcel of the order left the warehouse, carrying ``lines`` ({line position: units}).
    The same carrier and tracking number again updates that parcel."""
    parcel = ShipmentInput(carrier=clean_line(carrier), tracking_number=clean_line(tracking_number), lines=dict(lines),
                           shipped_at=parse_time(at, "shipped_at"), delivered_at=parse_time(delivered_at, "delivered_at"))
    problems = [] if parcel.carrier and parcel.tracking_number else [_("a parcel needs a carrier and a tracking number")]
    with write_transaction():
        order = _find(shop, number)
        known = {line.position: line.quantity for line in order.lines}
        problems += _parcel_problems(OrderInput(  # the same checks as a pushed order's parcels
            shop=shop, number=number, buyer_email="", currency="", shipments=[parcel],
            lines=[LineInput(position, "", "", quantity, 0) for position, quantity in known.items()]))
        if problems:
            raise OrderProblems(problems)
        shipment = _put_parcel(order, parcel)
        problems = _cancelled_line_problems(order) + _recount_fulfilment(order)
        if problems:
            raise OrderProblems(problems)
        _follow(order)
    return shipment


def mark_shipment_delivered(shop: str, number: str, tracking_number: str, at: datetime | None = None) -> Shipment:
    """The parcel with this tracking number reached the buyer: its units' windows start."""
    at = parse_time(at, "delivered_at") or utcnow()
    with write_transaction():
        order = _find(shop, number)
        shipment = next((parcel for parcel in order.shipments if parcel.tracking_number == tracking_number), None)
        if shipment is None:
            raise NotFound(_("Order %(number)s has no parcel with tracking number %(tracking)s.",
                             number=number, tracking=tracking_number))
        if at < shipment.shipped_at:
            raise InvalidInput(_("Delivery cannot be before shipment."), field="delivered_at")
        shipment.delivered_at = at
        _recount_fulfilment(order)
        _follow(order)
    return shipment


def revoke_buyer_access(order_ids: list[int]) -> None:
    """Every buyer grant to these orders issued so far (cookies, copies of them, other
    devices) opens nothing any more: "Forget this order"."""
    if order_ids:
        with write_transaction():
            db.session.execute(update(Order).where(Order.id.in_(order_ids))
                               .values(buyer_access_generation=Order.buyer_access_generation + 1))


def _has_cases(line: OrderLine) -> bool:
    from .models import Case

    return db.session.scalar(select(Case.id).where(Case.line_id == line.id).limit(1)) is not None


#: The buyer's lookup: the order number as typed, in one shop or in any (``ix_..._lookup_number``).
_ORDERS_BY_NUMBER = (select(Order).join(Shop).where(Order.lookup_number == bindparam("number"))
                     .order_by(Shop.name, Order.id))


def orders_for_buyer(number: Any, email: Any, shop: str | None = None) -> list[Order]:
    """The orders a buyer may open with this number and e-mail address, in the shop ``shop``
    (a slug, from the page's address) or in any shop. Order numbers are unique per shop only,
    so two shops may share one: the e-mail tells them apart, and when it does not (the same
    buyer in both) every match is returned for the buyer to choose. An unknown number and a
    wrong e-mail both give ``[]``: the caller cannot tell them apart, nor can a guesser."""
    wanted_number, wanted_email = lookup_number(number), clean_line(email).lower()
    if not wanted_number or not wanted_email:
        return []
    query = _ORDERS_BY_NUMBER if shop is None else _ORDERS_BY_NUMBER.where(Shop.slug == shop)
    return [order for order in db.session.scalars(query, {"number": wanted_number})
            if order.buyer_email == wanted_email]


def _find(shop: str, number: str) -> Order:
    """The order a fulfilment call changes, locked as ``_write_order`` locks it."""
    order = db.session.scalar(
        select(Order).join(Shop).where(Shop.slug == shop, Order.number == number)
        .with_for_update(of=Order).execution_options(populate_existing=True)
    )
    if order is None:
        raise NotFound(_("No order %(number)s in shop %(shop)s.", number=number, shop=shop))
    return order


def mark_shipped(shop: str, number: str, at: datetime | None = None) -> Order:
    """The order left the warehouse (after-sales kinds beyond a refund open on delivery)."""
    at = parse_time(at, "shipped_at") or utcnow()
    with write_transaction():
        order = _find(shop, number)
        if order.shipments:
            raise InvalidInput(_("Order %(number)s ships in parcels: add each parcel with its lines instead.",
                                 number=number), field="shipped_at")
        order.shipped_at = at
        _follow(order)
    return order


def mark_delivered(shop: str, number: str, at: datetime | None = None) -> Order:
    """The buyer received the order: the no-reason and quality windows count from this day."""
    at = parse_time(at, "delivered_at") or utcnow()
    with write_transaction():
        order = _find(shop, number)
        if order.shipments:  # every parcel still on its way arrived now
            for parcel in order.shipments:
                if parcel.delivered_at is None:
                    if at < parcel.shipped_at:
                        raise InvalidInput(_("Delivery cannot be before shipment."), field="delivered_at")
                    parcel.delivered_at = at
            _recount_fulfilment(order)
            _follow(order)
            return order
        if order.shipped_at is None:
            order.shipped_at = at
        if at < order.shipped_at:
            raise InvalidInput(_("Delivery cannot be before shipment."), field="delivered_at")
        order.delivered_at = at
        _follow(order)
    return order


class ShopProblem(InvalidInput):
    pass


#: The languages a shop's pages can default to (``Shop.locale``).
SHOP_LOCALES = ("en", "zh_Hans", "zh_Hant")


def _refuse_unknown_locale(locale: str | None) -> None:
    """A shop's default language is one the module speaks, or none."""
    if locale is not None and locale not in SHOP_LOCALES:
        raise ShopProblem(_("Unknown language %(locale)s (use one of: %(choices)s).", locale=locale,
                            choices=", ".join(SHOP_LOCALES)), field="locale")


def default_timezone() -> str:
    """The time zone of a shop created without one: the ``BABEL_DEFAULT_TIMEZONE`` setting."""
    from flask import current_app

    return str(current_app.config.get("BABEL_DEFAULT_TIMEZONE") or "UTC")


def create_shop(*, slug: str, name: str, currency: str = "CNY", timezone_name: str | None = None, return_address: str = "",
                locale: str | None = None) -> Shop:
    """A new shop; refuses a taken slug, an unknown currency shape, timezone or language."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    _refuse_unknown_locale(locale)
    timezone_name = timezone_name or default_timezone()
    slug, currency = slug.strip().lower(), currency.strip().upper()
    if not slug or not all(ch.isalnum() or ch in "-_" for ch in slug):
        raise ShopProblem(_("A shop slug uses letters, digits, - and _ only."), field="slug")
    if len(currency) != 3 or not currency.isalpha() or not is_payable_currency(currency):
        raise ShopProblem(_("The currency must be a 3-letter ISO 4217 code such as CNY."), field="currency")
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ShopProblem(_("Unknown timezone %(tz)s (use an IANA name such as Asia/Shanghai).", tz=timezone_name), field="timezone") from None
    with write_transaction():
        if db.session.scalar(select(Shop.id).where(Shop.slug == slug)) is not None:
            raise ShopProblem(_("A shop %(slug)s already exists.", slug=slug), field="slug")
        shop = Shop(slug=slug, name=name.strip() or slug, currency=currency, timezone=timezone_name,
                    return_address=return_address.strip(), locale=locale)
        db.session.add(shop)
    return shop


def set_shop_locale(slug: str, locale: str | None) -> Shop:
    """Set (``en``, ``zh_Hans``, ``zh_Hant``) or clear (None) a shop's default language."""
    _refuse_unknown_locale(locale)
    with write_transaction():
        shop = db.session.scalar(select(Shop).where(Shop.slug == slug.strip().lower()))
        if shop is None:
            raise ShopProblem(_("There is no shop %(slug)s.", slug=slug), field="slug")
        shop.locale = locale
    return shop


def ensure_shop(slug: str, name: str, currency: str = "CNY", timezone_name: str | None = None, return_address: str = "",
                locale: str | None = None) -> Shop:
    """Create a shop if it does not exist yet (used by the demo and by host apps); an existing
    shop without a default language gets ``locale``."""
    _refuse_unknown_locale(locale)
    shop = db.session.scalar(select(Shop).where(Shop.slug == slug))
    if shop is not None and shop.locale is None and locale is not None:
        shop.locale = locale
    if shop is None:
        shop = Shop(slug=slug, name=name, currency=currency, timezone=timezone_name or default_timezone(),
                    return_address=return_address,
                    locale=locale)
        db.session.add(shop)
        db.session.flush()
    return shop


__all__ = ["LineInput", "OrderInput", "OrderProblems", "ShipmentInput", "add_shipment", "ensure_shop", "mark_delivered",
           "mark_shipment_delivered", "mark_shipped", "order_from_mapping", "upsert_order"]



def import_order_records(records: "list[tuple[str, Mapping[str, Any]]]") -> tuple[list[str], int]:
    """Import (where, order mapping) records in one transaction: all of them, or none.

    Returns the problems (each prefixed with where it was found) and the number imported.
    """
    from sqlalchemy.exc import IntegrityError

    problems: list[str] = []
    parsed: list[tuple[str, OrderInput]] = []
    for where, record in records:
        try:
            parsed.append((where, order_from_mapping(record)))
        except OrderProblems as error:
            problems.extend(f"{where}: {problem}" for problem in error.problems)
        except InvalidInput as error:
            problems.append(f"{where}: {error}")
    # The records that parsed still go through the database checks (unknown shop, a refunded
    # line shrinking ...), so one run reports everything; nothing is kept unless all is clean.
    session = db.session()
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"aftersales_immediate": True})
    try:
        for where, order in parsed:
            try:
                with session.begin_nested():
                    _write_order(order)
            except OrderProblems as error:
                problems.extend(f"{where}: {problem}" for problem in error.problems)
            except IntegrityError as error:
                problems.append(f"{where}: {error.orig}")
        if problems:
            session.rollback()
            return problems, 0
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return [], len(parsed)
