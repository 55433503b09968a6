"""A case's timeline and its staff notes, read a page at a time, newest page first.

A busy case collects thousands of events (every reminder, every refund attempt) and many notes.
A case page shows the latest :data:`EVENTS_PER_PAGE` events and :data:`NOTES_PER_PAGE` notes with a
link to earlier ones, and reads only those rows (indexes ``ix_aftersales_case_events_case_id_id`` and
``ix_aftersales_notes_case_id_id``), so the page costs the same for a case with 5 events as with 5 000.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Sequence, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from .extensions import db
from .models import INT32_MAX, CaseEvent, Note

EVENTS_PER_PAGE = 20
NOTES_PER_PAGE = 20

Item = TypeVar("Item")


@dataclass(frozen=True)
class TimelinePage(Generic[Item]):
    items: Sequence[Item]  # oldest first, as they are read
    earlier_before: int | None  # pass as ``before`` to read the page of earlier ones; None: none left

    @property
    def has_earlier(self) -> bool:
        return self.earlier_before is not None


def position(raw: Any) -> int | None:
    """A ``before`` position from a query string: a positive id, else None (the latest page)."""
    text = str(raw or "")
    return int(text) if text.isdigit() and 0 < int(text) <= INT32_MAX else None


_EVENTS = (select(CaseEvent).where(CaseEvent.case_id == bindparam("case_id"), CaseEvent.id <= bindparam("last"))
           .order_by(CaseEvent.id.desc()).limit(bindparam("limit")))
_NOTES = (select(Note).options(joinedload(Note.author))
          .where(Note.case_id == bindparam("case_id"), Note.id <= bindparam("last"))
          .order_by(Note.id.desc()).limit(bindparam("limit")))


def _page(statement: Any, case_id: int, before: int | None, per_page: int) -> TimelinePage[Any]:
    newest_first = list(db.session.scalars(
        statement, {"case_id": case_id, "last": before - 1 if before else INT32_MAX, "limit": per_page + 1}).unique())
    earlier = newest_first[per_page - 1].id if len(newest_first) > per_page else None
    return TimelinePage(items=list(reversed(newest_first[:per_page])), earlier_before=earlier)


def case_events(case_id: int, before: int | None = None, per_page: int = EVENTS_PER_PAGE) -> TimelinePage[CaseEvent]:
    """The ``per_page`` events of the case before event id ``before`` (default: the latest)."""
    return _page(_EVENTS, case_id, before, per_page)


def case_notes(case_id: int, before: int | None = None, per_page: int = NOTES_PER_PAGE) -> TimelinePage[Note]:
    """The ``per_page`` staff notes of the case before note id ``before`` (default: the latest),
    each with its author."""
    return _page(_NOTES, case_id, before, per_page)
