"""The seller queue: filters, deadline order, keyset pagination.

Cases come in deadline order (the most urgent first, cases without a deadline last, ties by
number). A page is fetched by its position in that order (``after`` / ``before`` the first or last
case of the neighbouring page), never by OFFSET, so page 1 000 costs what page 1 costs: a shop's
queue reads its 50 rows straight from the index ``ix_aftersales_cases_open_queue`` (or
``ix_aftersales_cases_shop_state_due`` when a state is chosen; platform staff's all-shops queue from
``ix_aftersales_cases_open_due`` or ``ix_aftersales_cases_state_due``). The count above the table stops at :data:`COUNT_CAP`: beyond it the
page says "more than 1,000" instead of counting every row of a large shop on every visit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from sqlalchemy import Select, and_, func, or_, select, union
from sqlalchemy.orm.attributes import set_committed_value
from ..extensions import db
from ..models import INT32_MAX, Case, Order, OrderLine, Shipment, lookup_number, utcnow
from ..runtime import current
from ..textinput import clean_line
from ..workflow import ALL_KINDS, BASE_TABLE

PER_PAGE = 50
#: The queue counts its cases up to this many; a larger queue shows "more than COUNT_CAP".
COUNT_CAP = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class QueuePosition:
    """A case's place in the queue order: its deadline (None: no deadline, sorted last) and id."""

    due_at: datetime | None
    case_id: int

    @classmethod
    def of(cls, case: Case) -> "QueuePosition":
        return cls(case.due_at, case.id)

    def token(self) -> str:
        """For a URL: ``<microseconds since 1970>.<case id>``, or ``-.<case id>`` without a deadline."""
        if self.due_at is None:
            return f"-.{self.case_id}"
        delta = self.due_at - EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.case_id}"

    @classmethod
    def parse(cls, token: str | None) -> "QueuePosition | None":
        """The position a token names; None for a missing or malformed one (the first page)."""
        if not token or len(token) > 40:
            return None
        due, _, case_id = token.partition(".")
        try:
            number = int(case_id)
            if not 1 <= number <= INT32_MAX:  # beyond it: malformed, not an overflow
                return None
            if due == "-":
                return cls(None, number)
            micros = int(due)
            moment = EPOCH + timedelta(microseconds=micros)
        except (ValueError, OverflowError):
            return None
        return cls(moment, number)


@dataclass
class QueueFilters:
    state: str = ""
    kind: str = ""
    category: str = ""
    mine: bool = False  # needs my action
    overdue: bool = False
    q: str = ""  # search: an order number, a case reference (#12), a buyer's e-mail or a tracking number
    after: QueuePosition | None = None
    before: QueuePosition | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> "QueueFilters":
        kind = args.get("kind", "")
        after = QueuePosition.parse(args.get("after"))
        return cls(
            state=clean_line(args.get("state"))[:64], kind=kind if kind in ALL_KINDS else "",
            category=clean_line(args.get("category"))[:64], mine=args.get("mine") == "1",
            overdue=args.get("overdue") == "1", q=clean_line(args.get("q"))[:254], after=after,
            before=None if after is not None else QueuePosition.parse(args.get("before")),
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments of this queue view (filters only, first page), with ``changes``."""
        values = {"q": self.q, "state": self.state, "kind": self.kind, "category": self.category,
                  "mine": "1" if self.mine else "", "overdue": "1" if self.overdue else ""}
        values.update(changes)
        return {key: value for key, value in values.items() if value not in ("", None)}


@dataclass
class QueuePage:
    items: Sequence[Case]
    total: int  # counted up to cap + 1
    cap: int = COUNT_CAP
    next_after: str | None = None  # token of the last case, when a later page exists
    prev_before: str | None = None  # token of the first case, when an earlier page exists
    filters: QueueFilters = field(default_factory=QueueFilters)

    @property
    def total_is_capped(self) -> bool:
        return self.total > self.cap

    @property
    def is_first(self) -> bool:
        """The first page of the queue (else a "First page" link is shown, even on an empty page
        reached by an old link)."""
        return self.prev_before is None and self.filters.after is None


def seller_action_states(actor: str = "seller") -> set[str]:
    """States in which ``actor`` has something to do, in the base table and every built workflow."""
    states = {row.source for row in BASE_TABLE if row.actor == actor}
    for workflow in current().workflows.built():
        states |= {row.source for row in workflow.rows if row.actor == actor}
    return states


#: A search reads at most this many matching cases (an order number or an e-mail names a few).
SEARCH_CAP = 1000


def search_case_ids(staff: Any, text: str) -> list[int]:
    """The cases (of ``staff``'s shop; every shop for platform staff) that ``text`` names exactly:
    a case reference (``12`` or ``#12``), an order number (as the buyer's lookup matches it), a
    buyer's e-mail address, a tracking number (the buyer's return parcel, or one of the order's
    parcels). Each is one indexed query; none scans the cases."""
    text = text.strip()
    if not text:
        return []
    shop = [] if staff.role == "platform" else [Order.shop_id == staff.shop_id]
    own_cases = [] if staff.role == "platform" else [Case.shop_id == staff.shop_id]
    orders = [select(Order.id).where(Order.lookup_number == lookup_number(text), *shop),
              select(Shipment.order_id).join(Order, Order.id == Shipment.order_id)
              .where(Shipment.tracking_number == text, *shop)]
    if "@" in text:
        orders.append(select(Order.id).where(Order.buyer_email == text.lower(), *shop))
    found = set(db.session.scalars(select(Case.id).where(Case.order_id.in_(union(*orders).scalar_subquery()))
                                   .limit(SEARCH_CAP)))
    found |= set(db.session.scalars(select(Case.id).where(Case.return_tracking == text, *own_cases).limit(SEARCH_CAP)))
    reference = text.removeprefix("#")
    if reference.isdigit() and 0 < int(reference) <= INT32_MAX:
        found |= set(db.session.scalars(select(Case.id).where(Case.id == int(reference), *own_cases)))
    return sorted(found)[:SEARCH_CAP]


def _filtered(staff: Any, filters: QueueFilters) -> Select:
    query = select(Case)
    if staff.role != "platform":
        query = query.where(Case.shop_id == staff.shop_id)
    if filters.q:  # a search finds cases in any state, open or ended
        query = query.where(Case.id.in_(search_case_ids(staff, filters.q)))
    if filters.state:
        query = query.where(Case.state == filters.state)
    elif not filters.q:
        query = query.where(Case.open_line_id.is_not(None))  # open cases unless a state is asked for
    if filters.kind:
        query = query.where(Case.kind == filters.kind)
    if filters.category:
        query = query.where(Case.category == filters.category)
    if filters.mine:  # the staff's steps, and the refunds they pay by hand (those have a deadline)
        query = query.where(or_(Case.state.in_(sorted(seller_action_states())),
                                and_(Case.state == "refunding", Case.due_at.is_not(None), Case.due_trigger.is_(None))))
    if filters.overdue:
        query = query.where(Case.due_at < utcnow())
    return query


def _forward(query: Select, after: QueuePosition | None, limit: int) -> list[Case]:
    """Up to ``limit`` cases after ``after`` in queue order: those with a deadline, then the rest."""
    rows: list[Case] = []
    if after is None or after.due_at is not None:
        dated = query.where(Case.due_at.is_not(None))
        if after is not None:
            # "(due_at, id) after the position", spelled so that due_at >= ... starts an index range
            dated = dated.where(Case.due_at >= after.due_at,
                                or_(Case.due_at > after.due_at, Case.id > after.case_id))
        rows = list(db.session.scalars(dated.order_by(Case.due_at, Case.id).limit(limit)))
    if len(rows) < limit:
        undated = query.where(Case.due_at.is_(None))
        if after is not None and after.due_at is None:
            undated = undated.where(Case.id > after.case_id)
        rows += db.session.scalars(undated.order_by(Case.id).limit(limit - len(rows)))
    return rows


def _backward(query: Select, before: QueuePosition, limit: int) -> list[Case]:
    """Up to ``limit`` cases before ``before``, nearest first (the reverse of queue order)."""
    rows: list[Case] = []
    if before.due_at is None:
        rows = list(db.session.scalars(
            query.where(Case.due_at.is_(None), Case.id < before.case_id).order_by(Case.id.desc()).limit(limit)
        ))
    if len(rows) < limit:
        dated = query.where(Case.due_at.is_not(None))
        if before.due_at is not None:
            dated = dated.where(Case.due_at <= before.due_at,
                                or_(Case.due_at < before.due_at, Case.id < before.case_id))
        rows += db.session.scalars(dated.order_by(Case.due_at.desc(), Case.id.desc()).limit(limit - len(rows)))
    return rows


def seller_queue(staff: Any, filters: QueueFilters) -> QueuePage:
    """One page of the queue of ``staff``'s shop (every shop for platform staff)."""
    query = _filtered(staff, filters)
    if filters.before is not None:
        earlier = _backward(query, filters.before, PER_PAGE + 1)
        if len(earlier) > PER_PAGE:
            items = list(reversed(earlier[:PER_PAGE]))
            has_prev, has_next = True, True
        else:  # fewer than a page before it: show the first page
            items = _forward(query, None, PER_PAGE + 1)
            has_prev, has_next = False, len(items) > PER_PAGE
            items = items[:PER_PAGE]
    else:
        items = _forward(query, filters.after, PER_PAGE + 1)
        has_next = len(items) > PER_PAGE
        items = items[:PER_PAGE]
        has_prev = filters.after is not None and bool(items)
    _load_lines(items)
    cap = COUNT_CAP
    total = db.session.scalar(select(func.count()).select_from(query.with_only_columns(Case.id).limit(cap + 1).subquery()))
    return QueuePage(
        items=items, total=int(total or 0), cap=cap, filters=filters,
        next_after=QueuePosition.of(items[-1]).token() if has_next and items else None,
        prev_before=QueuePosition.of(items[0]).token() if has_prev and items else None,
    )


def _load_lines(cases: Sequence[Case]) -> None:
    """The page's order lines and orders (the table shows each case's item, order number and
    buyer) in one query each, set on the cases."""
    if not cases:
        return
    lines = {line.id: line for line in db.session.scalars(
        select(OrderLine).where(OrderLine.id.in_({case.line_id for case in cases})))}
    orders = {order.id: order for order in db.session.scalars(
        select(Order).where(Order.id.in_({case.order_id for case in cases})))}
    for case in cases:
        set_committed_value(case, "line", lines[case.line_id])
        set_committed_value(case, "order", orders[case.order_id])


def state_choices() -> list[str]:
    """Every state a case can be in, in the core table and in every (category, kind) the loaded
    plugins build (an inspection, a visit booked, ...), in table order."""
    runtime = current()
    states = dict.fromkeys(state for row in BASE_TABLE for state in (row.source, row.dest))
    for category in sorted(runtime.plugins.declared_categories()):
        for kind in sorted(ALL_KINDS):
            workflow = runtime.workflow(category, kind)
            states.update(dict.fromkeys(workflow.states))
    states.pop("new", None)
    return list(states)


#: At most this many categories are offered in the queue's filter.
CATEGORY_CHOICES_CAP = 200


def category_choices(staff: Any) -> list[str]:
    """The categories to filter by: those the loaded plugins declare and those of the open cases
    (of the shop: read from the index of open cases by category)."""
    query = select(Case.category).where(Case.open_line_id.is_not(None)).distinct().limit(CATEGORY_CHOICES_CAP)
    if staff.role != "platform":
        query = query.where(Case.shop_id == staff.shop_id)
    return sorted(set(current().plugins.declared_categories()) | set(db.session.scalars(query)))
