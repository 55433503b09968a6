"""Platform arbitration: escalated cases, oldest first; both sides' statements; the decision."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import services
from ..extensions import db
from ..i18n import _
from ..models import Case, CaseEvent, OutboxMessage, utcnow
from .access import ROW_ID, current_staff, staff_case_or_404
from .actions import action_views, perform
from .case_pages import loaded_case, timeline_context
from .seller import staff_required

platform = Blueprint("aftersales_platform", __name__, url_prefix="/platform")

#: Pages beyond this are empty anyway (50 escalated cases a page); the OFFSET stays a small number.
MAX_PAGE = 100_000


@platform.get("/")
@staff_required("platform")
def queue():
    page_number = _page_number()
    query = (select(Case).where(Case.state == "escalated").options(joinedload(Case.line), joinedload(Case.shop))
             .order_by(Case.updated_at.asc(), Case.id.asc()))
    page = db.paginate(query, page=page_number, per_page=50, error_out=False)
    return render_template("aftersales/platform/queue.html", page=page, now=utcnow())


def _page_number() -> int:
    """``?page=``, from 1 to :data:`MAX_PAGE`; anything else is the first page."""
    try:
        return min(max(int(request.args.get("page", 1)), 1), MAX_PAGE)
    except ValueError:
        return 1


@platform.get(f"/cases/<{ROW_ID}:case_id>")
@staff_required("platform")
def case(case_id: int):
    return _case_page(staff_case_or_404(case_id))


#: The steps of a negotiation, shown together as the offer history of an arbitration.
NEGOTIATION_TRIGGERS = ("offer", "accept_offer", "decline_offer", "counter_offer", "accept_counter")


def _case_page(case: Case, failed=None, status: int = 200):
    """Everything the platform weighs: the original request, both sides' statements, each side's
    photos side by side, the offers made and answered, and the money so far."""
    case = loaded_case(case)
    offers = db.session.scalars(select(CaseEvent).where(
        CaseEvent.case_id == case.id, CaseEvent.trigger.in_(NEGOTIATION_TRIGGERS)).order_by(CaseEvent.id)).all()
    photos_by_side = {side: [item for item in case.evidence if (item.uploaded_by == "buyer") == (side == "buyer")]
                      for side in ("buyer", "seller")}
    return render_template(
        "aftersales/platform/case.html", case=case, actions=action_views(case, "platform", failed), notices=services.case_notices(case, "platform"),
        refundable=services.refundable(case.line), offers=offers, photos_by_side=photos_by_side,
        **timeline_context(case, ".case"),
    ), status


@platform.post(f"/cases/<{ROW_ID}:case_id>/act/<trigger>")
@staff_required("platform")
def act(case_id: int, trigger: str):
    case = staff_case_or_404(case_id)
    result = perform(case, "platform", str(current_staff().id), trigger, url_for(".case", case_id=case.id))
    if hasattr(result, "form"):
        return _case_page(case, failed=result, status=result.status)
    return result


@platform.get("/deliveries")
@staff_required("platform")
def deliveries():
    """Messages that failed: those still being retried (with when), and the dead ones, newest first."""
    page_number = _page_number()
    query = (select(OutboxMessage)
             .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.last_error.is_not(None))
             .order_by(OutboxMessage.id.desc()))
    page = db.paginate(query, page=page_number, per_page=50, error_out=False)
    return render_template("aftersales/platform/deliveries.html", page=page, now=utcnow())


@platform.post(f"/deliveries/<{ROW_ID}:message_id>/retry")
@staff_required("platform")
def retry_delivery(message_id: int):
    """A dead message gets new attempts and is delivered now."""
    revived = services.retry_dead_messages([message_id])
    if revived:
        report = services.deliver_outbox(ids=[message_id])
        if report.delivered:
            flash(_("Delivered."), "success")
        else:
            flash(_("Tried again and failed; it is retried later with back-off."), "error")
    else:
        flash(_("This message is not dead: it is delivered already or still being retried."), "error")
    return redirect(url_for(".deliveries"))
