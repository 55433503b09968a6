"""Database models: orders and their lines, cases, refunds and the case timeline.

Money is always an integer number of minor units (cents, fen) next to an ISO 4217 currency
code. Times are stored as UTC and come back timezone-aware.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import Base, db
from .textinput import clean_line


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp kept as naive UTC in the database and handed out timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass a timezone-aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def lookup_number(number: Any) -> str:
    """An order number the way people type it: spaces around it and letter case do not matter
    (`` bk-4001 `` is ``BK-4001``). Kept in ``Order.lookup_number`` for the buyer's lookup."""
    return clean_line(number).lower()[:64]  # lower() can lengthen a few letters (İ)


#: The largest value of an Integer column (ids, quantities): a larger number from a URL or a form
#: names nothing and would overflow the query on PostgreSQL.
INT32_MAX = 2**31 - 1

def _counted_up(instance: Any, column: Any) -> Any:
    """``column + 1``: as SQL for a stored row (the database adds, so no increment is lost to a
    concurrent one), as a number for a new one."""
    if inspect(instance).persistent:
        return column + 1
    return (getattr(instance, column.key) or 0) + 1


#: Case states that never change again.
TERMINAL_STATES = frozenset({"completed", "closed", "cancelled"})
#: Case kinds (售后类型).
CASE_KINDS = ("refund_only", "return_refund", "exchange", "repair")


class Shop(Base):
    __tablename__ = "aftersales_shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: The language of the shop's pages for visitors whose browser asks for none the module
    #: speaks (``en``, ``zh_Hans``, ``zh_Hant``); None: English.
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    return_address: Mapped[str] = mapped_column(Text, default="")
    #: When the staff were last sent the digest of refunds they pay by hand and have not paid.
    refund_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "UTC")


class StaffUser(Base):
    """A person who works cases: seller staff of one shop, or a platform operator (no shop)."""

    __tablename__ = "aftersales_staff_users"
    __table_args__ = (CheckConstraint("role IN ('seller', 'platform')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("aftersales_shops.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="seller")
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Part of every login cookie; a new password, deactivation and logout move it on, so every
    #: cookie issued before (a copy included) logs nobody in any more.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    shop: Mapped[Shop | None] = relationship()

    def set_password(self, password: str, method: str = "scrypt") -> None:
        """``method``: werkzeug's hash method (the ``AFTERSALES_PASSWORD_HASH`` setting)."""
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def end_sessions(self) -> None:
        """Every login cookie of this account stops working (logout, on every device).

        Counted up in SQL for a stored account, so two writers at once (a logout and a new
        password) both move it on instead of writing the same number."""
        self.session_generation = _counted_up(self, StaffUser.session_generation)

    @validates("active", "password_hash")
    def _end_sessions_on_change(self, key: str, value: Any) -> Any:
        before = getattr(self, key)  # loads an expired value: a change is always seen
        if before is not None and before != value:
            self.end_sessions()
        return value

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """``<id>.<session generation>``: what the login cookie carries (see :meth:`end_sessions`)."""
        return f"{self.id}.{self.session_generation or 0}"


class Order(Base):
    __tablename__ = "aftersales_orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "number", name="uq_aftersales_orders_shop_number"),
        # A buyer's orders at one shop (their express refund record); on shop_id alone, a one-shop
        # install would read every order.
        Index("ix_aftersales_orders_shop_buyer_email", "shop_id", "buyer_email"),
        # The sweeper's due orders (an unpaid order expires), most overdue first.
        Index("ix_aftersales_orders_due", "due_at", "id",
              sqlite_where=text("due_at IS NOT NULL"), postgresql_where=text("due_at IS NOT NULL")),
        # Orders in one state, of a shop or of every shop (the queue's "Orders to stop": cancelling).
        Index("ix_aftersales_orders_state_shop", "state", "shop_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("aftersales_shops.id"), index=True)
    number: Mapped[str] = mapped_column(String(64))  # unique per shop, not across shops
    #: The number as the buyer's lookup compares it (:func:`lookup_number`), set with ``number``.
    lookup_number: Mapped[str] = mapped_column(String(64), index=True)
    buyer_email: Mapped[str] = mapped_column(String(254), index=True)
    buyer_name: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3))
    shipping_fee: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The shipping fee refunded (pending or paid): 0, or the whole fee, once per order; a
    #: failed or cancelled shipping refund sets it back to 0.
    shipping_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    shipping_insured: Mapped[bool] = mapped_column(Boolean, default=False)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Where the order stands in its own workflow (``aftersales.order_workflow``): pending_payment,
    #: paid, picking, packed, cancelling (the buyer asked, the warehouse answers), shipped,
    #: delivered or cancelled. Pushed facts (paid, shipped, delivered) move it as the system.
    state: Mapped[str] = mapped_column(String(32), default="pending_payment", server_default="pending_payment")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_trigger: Mapped[str | None] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    cancel_note: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Points the buyer paid with (how many, and the money they stood for, taken off the lines'
    #: paid amounts in proportion), and how many were given back by cancellations.
    points_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    points_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points_returned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Part of every buyer's access grant to this order; "forget this order" and a new buyer
    #: e-mail move it on, so grants issued before (copied cookies included) open nothing.
    buyer_access_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    shop: Mapped[Shop] = relationship()
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.position", cascade="all, delete-orphan"
    )
    shipments: Mapped[list["Shipment"]] = relationship(
        back_populates="order", order_by="Shipment.id", cascade="all, delete-orphan"
    )
    coupons: Mapped[list["OrderCoupon"]] = relationship(
        back_populates="order", order_by="OrderCoupon.id", cascade="all, delete-orphan"
    )

    @validates("number")
    def _keep_lookup_number(self, key: str, value: Any) -> Any:
        self.lookup_number = lookup_number(value)
        return value

    @validates("buyer_email")
    def _revoke_access_on_new_email(self, key: str, value: Any) -> Any:
        before = getattr(self, key)
        if before is not None and before != value:
            self.buyer_access_generation = _counted_up(self, Order.buyer_access_generation)
        return value

    @property
    def is_shipped(self) -> bool:
        return self.shipped_at is not None

    @property
    def is_delivered(self) -> bool:
        return self.delivered_at is not None


class OrderCoupon(Base):
    """A coupon the buyer paid with: ``amount`` off the lines it covers (by position, split by
    their value), valid while those lines are worth at least ``threshold``. It comes back to the
    buyer (``returned_at``) only when every line it covers is cancelled."""

    __tablename__ = "aftersales_order_coupons"
    __table_args__ = (UniqueConstraint("order_id", "code", name="uq_aftersales_order_coupons_order_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("aftersales_orders.id"))
    code: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    threshold: Mapped[int] = mapped_column(BigInteger, default=0)
    positions: Mapped[list[int]] = mapped_column(JSON, default=list)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship(back_populates="coupons")


class OrderEvent(Base):
    """Append-only timeline of an order's own workflow: every change of its state."""

    __tablename__ = "aftersales_order_events"
    __table_args__ = (Index("ix_aftersales_order_events_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("aftersales_orders.id"))
    actor_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(254))
    trigger: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderLine(Base):
    """One product on an order: what was bought, how many, and what was actually paid for it."""

    __tablename__ = "aftersales_order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "position", name="uq_aftersales_order_lines_order_position"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("paid_amount >= 0", name="paid_not_negative"),
        CheckConstraint("tax_paid >= 0", name="tax_not_negative"),
        CheckConstraint(
            "refund_committed >= 0 AND refund_committed <= paid_amount + tax_paid", name="refund_ceiling"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("aftersales_orders.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(64), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger)
    # Import tax the buyer paid on top of the price (0 when the price included it, 包税); it can
    # be refunded too, so the ceiling is paid_amount + tax_paid.
    tax_paid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Pending + succeeded refunds, kept by an atomic conditional UPDATE (the ceiling guard).
    refund_committed: Mapped[int] = mapped_column(BigInteger, default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Fulfilment per line, kept by ``aftersales.orders`` from the order's parcels (``Shipment``):
    # units that left the warehouse and units delivered, and when the last of them arrived.
    # NULL while the order has no parcels: the whole line follows the order's shipped_at and
    # delivered_at (an order pushed with dates only).
    shipped_quantity: Mapped[int | None] = mapped_column(Integer)
    delivered_quantity: Mapped[int | None] = mapped_column(Integer)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The points (a count) of the order's points this line was paid with, given back if it is
    #: cancelled; and when the buyer cancelled it before it shipped (its money is refunded).
    points_share: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship(back_populates="lines")
    # Every case ever opened on this line (for plugin rules such as "two failed repairs").
    cases: Mapped[list["Case"]] = relationship(
        primaryjoin="OrderLine.id == Case.line_id", order_by="Case.id", viewonly=True
    )

    @property
    def currency(self) -> str:
        return self.order.currency

    @property
    def refund_ceiling(self) -> int:
        """The most that may ever leave the shop for this line: price and import tax paid."""
        return self.paid_amount + (self.tax_paid or 0)

    @property
    def units_shipped(self) -> int:
        """Units of this line that left the warehouse (by its parcels, else by the order's date)."""
        if self.shipped_quantity is not None:
            return self.shipped_quantity
        return self.quantity if self.order.shipped_at is not None else 0

    @property
    def units_delivered(self) -> int:
        """Units of this line the buyer received (by its parcels, else by the order's date)."""
        if self.delivered_quantity is not None:
            return self.delivered_quantity
        return self.quantity if self.order.delivered_at is not None else 0

    @property
    def delivered_at(self) -> datetime | None:
        """When the last delivered unit of this line arrived (None: none has): the moment the
        after-sales windows count from."""
        if self.delivered_quantity is not None:
            return self.last_delivered_at if self.delivered_quantity else None
        return self.order.delivered_at

    def hours_since_delivery(self, now: datetime) -> float | None:
        """Hours since the delivery moment (for windows counted in hours, e.g. 48 h claims)."""
        delivered = self.delivered_at
        if delivered is None:
            return None
        return (now - delivered).total_seconds() / 3600

    def attribute(self, name: str, default: Any = None) -> Any:
        return (self.attributes or {}).get(name, default)

    def delivered_on(self) -> date | None:
        """The local calendar day of delivery in the shop's timezone."""
        delivered = self.delivered_at
        if delivered is None:
            return None
        return delivered.astimezone(self.order.shop.zone).date()

    def days_since_delivery(self, now: datetime) -> int | None:
        """Whole days since delivery, counted from the day after delivery (day 1)."""
        delivered = self.delivered_on()
        if delivered is None:
            return None
        return (now.astimezone(self.order.shop.zone).date() - delivered).days


class Shipment(Base):
    """A parcel of an order: carrier, tracking number, when it left and when it arrived, and
    which units of which lines it carries (``ShipmentLine``)."""

    __tablename__ = "aftersales_shipments"
    __table_args__ = (
        UniqueConstraint("order_id", "carrier", "tracking_number", name="uq_aftersales_shipments_order_tracking"),
        Index("ix_aftersales_shipments_tracking_number", "tracking_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("aftersales_orders.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(64))
    tracking_number: Mapped[str] = mapped_column(String(64))
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="shipments")
    lines: Mapped[list["ShipmentLine"]] = relationship(
        back_populates="shipment", cascade="all, delete-orphan", order_by="ShipmentLine.id")


class ShipmentLine(Base):
    """So many units of one order line in one parcel."""

    __tablename__ = "aftersales_shipment_lines"
    __table_args__ = (
        UniqueConstraint("shipment_id", "line_id", name="uq_aftersales_shipment_lines_shipment_line"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("aftersales_shipments.id"))
    line_id: Mapped[int] = mapped_column(ForeignKey("aftersales_order_lines.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)

    shipment: Mapped[Shipment] = relationship(back_populates="lines")
    line: Mapped[OrderLine] = relationship()


class Case(Base):
    """An after-sales case (售后单) for one order line."""

    __tablename__ = "aftersales_cases"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        # The seller queue reads its pages in deadline order straight from these (keyset
        # pagination, aftersales/web/queue.py): open cases of a shop, of every shop (platform
        # staff), and cases in one state, of a shop or of every shop.
        Index("ix_aftersales_cases_open_queue", "shop_id", "due_at", "id",
              sqlite_where=text("open_line_id IS NOT NULL"), postgresql_where=text("open_line_id IS NOT NULL")),
        Index("ix_aftersales_cases_open_due", "due_at", "id",
              sqlite_where=text("open_line_id IS NOT NULL"), postgresql_where=text("open_line_id IS NOT NULL")),
        Index("ix_aftersales_cases_shop_state_due", "shop_id", "state", "due_at", "id"),
        Index("ix_aftersales_cases_state_due", "state", "due_at", "id"),
        # The queue's kind and category filters on open cases, of a shop and of every shop.
        *(Index(name, *columns, "due_at", "id", sqlite_where=text("open_line_id IS NOT NULL"),
                postgresql_where=text("open_line_id IS NOT NULL"))
          for name, columns in (("ix_aftersales_cases_open_shop_kind", ("shop_id", "kind")),
                                ("ix_aftersales_cases_open_shop_category", ("shop_id", "category")),
                                ("ix_aftersales_cases_open_kind", ("kind",)), ("ix_aftersales_cases_open_category", ("category",)))),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("aftersales_shops.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("aftersales_orders.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("aftersales_order_lines.id"), index=True)
    # Equal to line_id while the case is open, NULL once it ends: the unique constraint is
    # what makes "one open case per line" hold under concurrent requests.
    open_line_id: Mapped[int | None] = mapped_column(ForeignKey("aftersales_order_lines.id"), unique=True)
    category: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)  # requested refund, 0 for exchange/repair
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    due_trigger: Mapped[str | None] = mapped_column(String(64))
    #: Express refund (``aftersales.express``): None, ``refunded`` (paid when the buyer shipped
    #: the return), ``arrived`` or ``revoked`` (the return never arrived or was disputed); and how much.
    express_state: Mapped[str | None] = mapped_column(String(16))
    express_amount: Mapped[int | None] = mapped_column(BigInteger)
    #: The language the buyer read the pages in when asking (``en``, ``zh_Hans``, ``zh_Hant``): their
    #: messages are written in it. None (a request through the API, an import): the shop's.
    buyer_locale: Mapped[str | None] = mapped_column(String(16))
    #: The deadline (``due_at``) a reminder was sent for: one reminder per deadline, not one per sweep.
    reminded_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipping_payer: Mapped[str] = mapped_column(String(16), default="buyer")
    offer_amount: Mapped[int | None] = mapped_column(BigInteger)
    approved_amount: Mapped[int | None] = mapped_column(BigInteger)
    decision_payer: Mapped[str | None] = mapped_column(String(16))
    return_address: Mapped[str | None] = mapped_column(Text)
    return_carrier: Mapped[str | None] = mapped_column(String(100))
    return_tracking: Mapped[str | None] = mapped_column(String(100), index=True)  # the queue's search
    received_quantity: Mapped[int | None] = mapped_column(Integer)
    #: Units the case no longer covers: announced but never received, and not refunded (the
    #: seller refunded what arrived). The line counts them as free again.
    released_quantity: Mapped[int | None] = mapped_column(Integer)
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # SQLAlchemy adds "AND version = <loaded>" to every UPDATE and raises StaleDataError when
    # another transaction got there first: the compare-and-set behind CaseChanged.
    __mapper_args__ = {"version_id_col": version}

    shop: Mapped[Shop] = relationship()
    order: Mapped[Order] = relationship()
    line: Mapped[OrderLine] = relationship(foreign_keys=[line_id])
    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="save-update, merge, delete, delete-orphan"
    )  # not "refresh-expire": expiring a case (aftersales.case_writes) must not drop its new events
    refunds: Mapped[list[Refund]] = relationship(back_populates="case", order_by="Refund.id")
    notes: Mapped[list[Note]] = relationship(back_populates="case", order_by="Note.id")
    evidence: Mapped[list[Evidence]] = relationship(back_populates="case", order_by="Evidence.id")

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def has_outcome(self) -> bool:
        """Ended with an outcome the buyer can rate (completed, or closed by a decision), not
        withdrawn."""
        return self.state in ("completed", "closed")

    @property
    def needs_goods_back(self) -> bool:
        return self.kind != "refund_only"

    def entered_at(self, state: str) -> datetime | None:
        """When the case first entered ``state`` (its earliest event into it), or None.

        One query on the case's own events, never the whole timeline loaded; events of the
        transaction not yet written count too."""
        session = object_session(self)
        moments = [event.created_at for event in (session.new if session is not None else ())
                   if isinstance(event, CaseEvent) and event.case is self and event.to_state == state]
        if session is not None and self.id is not None:
            with session.no_autoflush:
                moments.append(session.scalar(
                    select(CaseEvent.created_at).where(CaseEvent.case_id == self.id, CaseEvent.to_state == state)
                    .order_by(CaseEvent.id).limit(1)))
        found = [moment for moment in moments if moment is not None]
        return min(found) if found else None


class CaseEvent(Base):
    """Append-only timeline of a case: every state change and every money movement."""

    __tablename__ = "aftersales_case_events"
    # A case's timeline, newest first, a page at a time (aftersales/timeline.py).
    __table_args__ = (Index("ix_aftersales_case_events_case_id_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("aftersales_cases.id"))
    actor_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(254))
    trigger: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(64))
    to_state: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="events")

    @property
    def changes_state(self) -> bool:
        return self.from_state != self.to_state


class Refund(Base):
    """Money leaving the shop for one case: ``pending``, then ``succeeded``, ``failed`` (the
    provider refused it) or ``cancelled`` (staff withdrew a manual refund not paid yet). Its
    amount is never edited; a failed or cancelled refund frees its amount for a new one."""

    __tablename__ = "aftersales_refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("aftersales_cases.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("aftersales_order_lines.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payer: Mapped[str] = mapped_column(String(16), default="seller")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    provider: Mapped[str] = mapped_column(String(64), default="manual")
    provider_reference: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str | None] = mapped_column(Text)  # failed: the provider's words; cancelled: staff's reason
    #: The last error the payment plugin raised while sending this refund (it stays pending and is
    #: sent again, under the same idempotency key); None once sent or never failed.
    provider_error: Mapped[str | None] = mapped_column(Text)
    #: What the money is for: ``goods`` (the line's price and tax, under its ceiling) or
    #: ``shipping`` (the order's shipping fee, once per order; not part of the line's ceiling).
    component: Mapped[str] = mapped_column(String(16), default="goods", server_default="goods")
    adjustments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="refunds")


class Note(Base):
    """An internal note on a case, for staff only (the handover between shifts)."""

    __tablename__ = "aftersales_notes"
    __table_args__ = (Index("ix_aftersales_notes_case_id_id", "case_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("aftersales_cases.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("aftersales_staff_users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="notes")
    author: Mapped[StaffUser] = relationship()


class Evidence(Base):
    """Metadata of an uploaded photo. The file itself lives outside static/ under storage_key."""

    __tablename__ = "aftersales_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("aftersales_cases.id"), index=True)
    uploaded_by: Mapped[str] = mapped_column(String(32))  # actor type
    storage_key: Mapped[str] = mapped_column(String(128), unique=True)
    original_name: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64), default="")  # e.g. "parcel", "goods"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="evidence")


class OutboxMessage(Base):
    """A side effect that leaves the database, written with the change and delivered after commit.

    Pending while neither ``delivered_at`` nor ``dead_at`` is set. ``claimed_until``: no worker
    takes it before then (a delivery in progress, or the back-off after a failed attempt).
    ``dead_at``: it failed ``AFTERSALES_OUTBOX_MAX_ATTEMPTS`` times and waits for someone to
    retry it (the platform's Deliveries page, ``flask aftersales deliver --retry-dead``)."""

    __tablename__ = "aftersales_outbox"
    __table_args__ = (
        # What `deliver` reads: the pending messages, oldest first.
        Index("ix_aftersales_outbox_pending", "id",
              sqlite_where=text("delivered_at IS NULL AND dead_at IS NULL"),
              postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    dead_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookEndpoint(Base):
    """Where a shop wants its cases' events POSTed (``aftersales.webhooks``)."""

    __tablename__ = "aftersales_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("aftersales_shops.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: The key of the HMAC-SHA256 signature of every request (shown once, when the endpoint is made).
    secret: Mapped[str] = mapped_column(String(128))
    #: The event types wanted (notification kinds); empty: every type.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    shop: Mapped[Shop] = relationship()
