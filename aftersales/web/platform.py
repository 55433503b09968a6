"""Platform arbitration: escalated cases, oldest first; both sides' statements; the decision."""
from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import services
from ..extensions import db
from ..models import Case, utcnow
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
    try:
        page_number = min(max(int(request.args.get("page", 1)), 1), MAX_PAGE)
    except ValueError:
        page_number = 1
    query = (select(Case).where(Case.state == "escalated").options(joinedload(Case.line), joinedload(Case.shop))
             .order_by(Case.updated_at.asc(), Case.id.asc()))
    page = db.paginate(query, page=page_number, per_page=50, error_out=False)
    return render_template("aftersales/platform/queue.html", page=page, now=utcnow())


@platform.get(f"/cases/<{ROW_ID}:case_id>")
@staff_required("platform")
def case(case_id: int):
    return _case_page(staff_case_or_404(case_id))


def _case_page(case: Case, failed=None, status: int = 200):
    case = loaded_case(case)
    return render_template(
        "aftersales/platform/case.html", case=case, actions=action_views(case, "platform", failed), notices=services.case_notices(case, "platform"),
        refundable=services.refundable(case.line), **timeline_context(case, ".case"),
    ), status


@platform.post(f"/cases/<{ROW_ID}:case_id>/act/<trigger>")
@staff_required("platform")
def act(case_id: int, trigger: str):
    case = staff_case_or_404(case_id)
    result = perform(case, "platform", str(current_staff().id), trigger, url_for(".case", case_id=case.id))
    if hasattr(result, "form"):
        return _case_page(case, failed=result, status=result.status)
    return result
