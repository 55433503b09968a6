"""The seller queue: filters, deadline order, pagination with a fixed number of queries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Case, utcnow
from ..runtime import current
from ..workflow import ALL_KINDS, BASE_TABLE

PER_PAGE = 50


@dataclass
class QueueFilters:
    state: str = ""
    kind: str = ""
    category: str = ""
    mine: bool = False  # needs my action
    overdue: bool = False
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> "QueueFilters":
        try:
            page = max(int(args.get("page", 1)), 1)
        except ValueError:
            page = 1
        kind = args.get("kind", "")
        return cls(
            state=(args.get("state") or "")[:64], kind=kind if kind in ALL_KINDS else "",
            category=(args.get("category") or "")[:64], mine=args.get("mine") == "1",
            overdue=args.get("overdue") == "1", page=page,
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        values = {"state": self.state, "kind": self.kind, "category": self.category,
                  "mine": "1" if self.mine else "", "overdue": "1" if self.overdue else "", "page": self.page}
        values.update(changes)
        return {key: value for key, value in values.items() if value not in ("", None, 1) or key == "page" and value != 1}


def seller_action_states(actor: str = "seller") -> set[str]:
    """States in which ``actor`` has something to do, in the base table and every built workflow."""
    states = {row.source for row in BASE_TABLE if row.actor == actor}
    for workflow in current().workflows.built():
        states |= {row.source for row in workflow.rows if row.actor == actor}
    return states


def seller_queue(staff: Any, filters: QueueFilters) -> Any:
    # The lines come in one extra query per page (selectinload), so the count runs on cases alone.
    query = select(Case).options(selectinload(Case.line))
    if staff.role != "platform":
        query = query.where(Case.shop_id == staff.shop_id)
    if filters.state:
        query = query.where(Case.state == filters.state)
    else:
        query = query.where(Case.open_line_id.is_not(None))  # open cases unless a state is asked for
    if filters.kind:
        query = query.where(Case.kind == filters.kind)
    if filters.category:
        query = query.where(Case.category == filters.category)
    if filters.mine:
        query = query.where(Case.state.in_(sorted(seller_action_states())))
    if filters.overdue:
        query = query.where(Case.due_at < utcnow())
    query = query.order_by(Case.due_at.asc().nulls_last(), Case.id.asc())
    return db.paginate(query, page=filters.page, per_page=PER_PAGE, error_out=False)
