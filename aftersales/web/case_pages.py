"""What the buyer's, the seller's and the platform's case pages share: the case with the
collections the page shows loaded in one query each, and the timeline a page at a time."""
from __future__ import annotations

from typing import Any

from flask import request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from .. import timeline
from ..extensions import db
from ..models import Case

#: Photos (at most AFTERSALES_UPLOAD_MAX_PER_CASE) and refunds are few per case: each is read in
#: one query of its own. Never joined together: a join multiplies their rows.
_CASE_PAGE = (select(Case).options(joinedload(Case.line), joinedload(Case.order), selectinload(Case.evidence),
                                   selectinload(Case.refunds)))


def loaded_case(case: Case) -> Case:
    """``case`` with what every case page shows loaded (line, order, photos, refunds)."""
    return db.session.scalars(_CASE_PAGE.where(Case.id == case.id)).one()


def timeline_context(case: Case, endpoint: str) -> dict[str, Any]:
    """The template values of the timeline: the page of events the query string asks for, and
    how to link another page (``events_url(before)``)."""
    return {
        "events": timeline.case_events(case.id, timeline.position(request.args.get("events_before"))),
        "events_url": lambda before: url_for(endpoint, case_id=case.id, events_before=before),
    }
