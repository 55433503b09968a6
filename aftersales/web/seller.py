"""The seller back office: log in, work the queue, act on cases, leave notes for the next shift."""
from __future__ import annotations

import logging
import time
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, abort, flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from .. import order_flow, services, timeline
from ..errors import DomainError
from ..extensions import db
from ..i18n import _, ngettext
from ..models import Case, Order, OrderEvent, Refund, utcnow
from ..staff import authenticate, end_sessions
from .access import ROW_ID, current_staff, module_login_available, staff_case_or_404, staff_order_or_404
from .actions import action_views, perform
from .case_pages import loaded_case, timeline_context
from .forms import CancelRefundForm, LoginForm, MarkPaidForm, NoteForm, OrderStepForm
from .queue import QueueFilters, category_choices, seller_queue, state_choices
from .ratelimit import limiter, login_account_and_client_key, login_account_key, login_limits
from .security import is_local_path
from .wording import ORDER_TRIGGER_LABELS, label

seller = Blueprint("aftersales_seller", __name__)
log = logging.getLogger(__name__)


def staff_required(*roles: str) -> Callable:
    """Logged-in staff of one of ``roles``; others are sent to log in (or get a 404)."""
    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            staff = current_staff()
            if staff is None:
                if not module_login_available():
                    abort(403)  # the host logs its people in; the module's login is not for this app
                # Come back to the page after logging in; a form post can't be replayed, so
                # those come back to the queue.
                back = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("aftersales_seller.login", next=back))
            if staff.role not in roles:
                abort(404)
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _paused_page(words: Callable[[int], str], limit: Any) -> Response:
    """The answer while a login limit is reached: whoever tries reads that logging in is paused,
    why, and for how long (the account's owner learns that someone tried)."""
    minutes = max(1, round((limit.reset_at - time.time()) / 60))
    log.warning("staff logins paused for %d minutes for %r from %s: more attempts than %s",
                minutes, request.form.get("email", "")[:254], request.remote_addr, limit.limit)
    form = LoginForm(formdata=None, next=request.form.get("next", ""))
    form.email.data = request.form.get("email", "")
    return make_response(render_template("aftersales/seller/login.html", form=form, paused=words(minutes)), 429)


def _account_paused(limit: Any) -> Response:
    return _paused_page(lambda minutes: ngettext(
        "Too many login attempts for this e-mail address: logging in with it is paused for %(num)d minute. "
        "If these attempts were not yours, tell the person who manages your shop's logins.",
        "Too many login attempts for this e-mail address: logging in with it is paused for %(num)d minutes. "
        "If these attempts were not yours, tell the person who manages your shop's logins.", minutes), limit)


def _client_paused(limit: Any) -> Response:
    return _paused_page(lambda minutes: ngettext(
        "Too many login attempts from your network: logging in from here is paused for %(num)d minute.",
        "Too many login attempts from your network: logging in from here is paused for %(num)d minutes.",
        minutes), limit)


# Every attempt counts, and is counted before the password is checked: attempts sent in
# parallel cannot slip through between a check and its count.
@seller.route("/staff/login", methods=["GET", "POST"])
@limiter.limit(lambda: login_limits()["client"], methods=["POST"], on_breach=_client_paused)
@limiter.limit(lambda: login_limits()["account_and_client"], key_func=login_account_and_client_key, methods=["POST"],
               on_breach=_account_paused)
@limiter.limit(lambda: login_limits()["account"], key_func=login_account_key, methods=["POST"],
               on_breach=_account_paused)
def login():
    if not module_login_available():
        abort(404)  # mounted in a host with its own login: its people log in there
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        staff = authenticate(form.email.data, form.password.data)
        if staff is not None:
            login_user(staff)
            target = form.next.data
            if not is_local_path(target):
                target = url_for("aftersales_platform.queue" if staff.role == "platform" else ".queue")
            return redirect(target)
        flash(_("Wrong e-mail or password."), "error")
        return render_template("aftersales/seller/login.html", form=form), 401
    return render_template("aftersales/seller/login.html", form=form), 400 if form.errors else 200


@seller.post("/staff/logout")
def logout():
    if not module_login_available():
        abort(404)
    if current_user.is_authenticated:
        end_sessions(current_user.id)  # copies of the cookie stop working too
    logout_user()
    flash(_("You are logged out."), "success")
    return redirect(url_for(".login"))


@seller.get("/seller/")
@staff_required("seller", "platform")
def queue():
    filters = QueueFilters.from_args(request.args)
    staff = current_staff()
    page = seller_queue(staff, filters)
    session[QUEUE_VIEW] = request.full_path.rstrip("?")  # the case page's way back: same filters, same page
    return render_template("aftersales/seller/queue.html", page=page, filters=filters, now=utcnow(),
                           interceptions=_orders_awaiting_warehouse(staff), states=state_choices(),
                           categories=category_choices(staff))


#: Orders whose buyer asked to cancel after picking, waiting for the warehouse's answer (at most
#: this many listed on the queue, oldest first).
INTERCEPTIONS_LISTED = 20


def _orders_awaiting_warehouse(staff: Any) -> list[Order]:
    query = select(Order).where(Order.state == "cancelling").order_by(Order.updated_at, Order.id).limit(INTERCEPTIONS_LISTED)
    if staff.role != "platform":
        query = query.where(Order.shop_id == staff.shop_id)
    return list(db.session.scalars(query))


@seller.get(f"/seller/cases/<{ROW_ID}:case_id>")
@staff_required("seller", "platform")
def case(case_id: int):
    return _case_page(staff_case_or_404(case_id))


QUEUE_VIEW = "aftersales_queue_view"


def queue_view_url() -> str:
    """The queue as this person last saw it (filters, page), else the queue's first page."""
    queue_url = url_for(".queue")
    last = session.get(QUEUE_VIEW)
    if isinstance(last, str) and last.startswith(queue_url) and "//" not in last and len(last) < 1000:
        return last
    return queue_url


def _case_page(case: Case, failed: Any = None, status: int = 200, note_form: NoteForm | None = None):
    case = loaded_case(case)
    return render_template(
        "aftersales/seller/case.html", case=case, actions=action_views(case, "seller", failed), notices=services.case_notices(case, "seller"),
        note_form=note_form or NoteForm(formdata=None), paid_form=MarkPaidForm(formdata=None),
        cancel_refund_form=CancelRefundForm(formdata=None),
        refundable=services.refundable(case.line), now=utcnow(), back_url=queue_view_url(),
        last_word=services.last_word(case, "seller") if case.state == "counter_offered" else None,
        notes=timeline.case_notes(case.id, timeline.position(request.args.get("notes_before"))),
        **timeline_context(case, ".case"),
    ), status


@seller.post(f"/seller/cases/<{ROW_ID}:case_id>/act/<trigger>")
@staff_required("seller", "platform")
def act(case_id: int, trigger: str):
    case = staff_case_or_404(case_id)
    result = perform(case, "seller", str(current_staff().id), trigger, url_for(".case", case_id=case.id))
    if hasattr(result, "form"):
        return _case_page(case, failed=result, status=result.status)
    return result


@seller.post(f"/seller/cases/<{ROW_ID}:case_id>/notes")
@staff_required("seller", "platform")
def add_note(case_id: int):
    case = staff_case_or_404(case_id)
    form = NoteForm()
    if not form.validate_on_submit():
        return _case_page(case, status=400, note_form=form)
    try:
        services.add_note(case.id, current_staff(), form.body.data)
    except DomainError as error:
        flash(str(error), "error")
    return redirect(url_for(".case", case_id=case.id) + "#notes")


@seller.post(f"/seller/refunds/<{ROW_ID}:refund_id>/paid")
@staff_required("seller", "platform")
def mark_paid(refund_id: int):
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        abort(404)
    case = staff_case_or_404(refund.case_id)
    form = MarkPaidForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash(" ".join(str(error) for error in errors), "error")
        return redirect(url_for(".case", case_id=case.id))
    if refund.status != "pending":  # a second tab, or a provider's answer came first
        flash(_("This refund was already settled: nothing was recorded twice."), "info")
        return redirect(url_for(".case", case_id=case.id))
    try:
        services.mark_refund_paid(refund.id, current_staff().id, (form.reference.data or "").strip())
    except DomainError as error:
        flash(str(error), "error")
    else:
        flash(_("The refund is recorded as paid."), "success")
    return redirect(url_for(".case", case_id=case.id))


def _pending_refund_or_404(refund_id: int) -> tuple[Refund, Case]:
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        abort(404)
    return refund, staff_case_or_404(refund.case_id)


@seller.post(f"/seller/refunds/<{ROW_ID}:refund_id>/cancel")
@staff_required("seller", "platform")
def cancel_refund(refund_id: int):
    refund, case = _pending_refund_or_404(refund_id)
    form = CancelRefundForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            flash(" ".join(str(error) for error in errors), "error")
        return redirect(url_for(".case", case_id=case.id))
    try:
        services.cancel_refund(refund.id, form.reason.data or "", actor="seller", actor_id=str(current_staff().id))
    except DomainError as error:
        flash(str(error), "error")
    else:
        flash(_("The refund was cancelled and its amount freed; send a new refund when you are ready."), "success")
    return redirect(url_for(".case", case_id=case.id))


@seller.post(f"/seller/refunds/<{ROW_ID}:refund_id>/resend")
@staff_required("seller", "platform")
def resend_refund(refund_id: int):
    refund, case = _pending_refund_or_404(refund_id)
    if MarkPaidForm().validate_on_submit():
        try:
            refund = services.resend_refund(refund.id, actor="seller", actor_id=str(current_staff().id))
        except DomainError as error:
            flash(str(error), "error")
        else:
            if refund.status == "pending" and refund.provider_error:
                flash(_("The payment provider still could not be reached: %(error)s", error=refund.provider_error), "error")
            else:
                flash(_("The refund was sent to the payment provider again."), "success")
    return redirect(url_for(".case", case_id=case.id))


@seller.post(f"/seller/cases/<{ROW_ID}:case_id>/retry-refund")
@staff_required("seller", "platform")
def retry_refund(case_id: int):
    case = staff_case_or_404(case_id)
    form = MarkPaidForm()
    if form.validate_on_submit():
        try:
            services.retry_refund(case.id, actor="seller", actor_id=str(current_staff().id))
        except DomainError as error:
            flash(str(error), "error")
        else:
            flash(_("The refund was sent again."), "success")
    return redirect(url_for(".case", case_id=case.id))


#: The staff steps an order page offers, as (actor, trigger): the seller's and the warehouse's.
_ORDER_STEP_ACTORS = ("seller", "warehouse")


@seller.get(f"/seller/orders/<{ROW_ID}:order_id>")
@staff_required("seller", "platform")
def order(order_id: int):
    return _order_page(staff_order_or_404(order_id))


def _order_page(order: Order, status: int = 200, form: OrderStepForm | None = None):
    steps = [(actor, trigger) for actor in _ORDER_STEP_ACTORS for trigger in order_flow.allowed_order_triggers(order, actor)]
    events = db.session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)).all()
    cases = db.session.scalars(select(Case).where(Case.order_id == order.id).order_by(Case.id)).all()
    return render_template("aftersales/seller/order.html", order=order, steps=steps, events=events, cases=cases,
                           form=form or OrderStepForm(formdata=None), back_url=queue_view_url()), status


@seller.post(f"/seller/orders/<{ROW_ID}:order_id>/act/<trigger>")
@staff_required("seller", "platform")
def order_act(order_id: int, trigger: str):
    order = staff_order_or_404(order_id)
    form = OrderStepForm()
    if not form.validate_on_submit():
        return _order_page(order, status=400, form=form)
    allowed = {trigger_name: actor for actor in _ORDER_STEP_ACTORS
               for trigger_name in order_flow.allowed_order_triggers(order, actor)}
    if trigger not in allowed:
        flash(_("You cannot do \u201c%(action)s\u201d on this order now.", action=trigger), "error")
        return redirect(url_for(".order", order_id=order.id))
    inputs = {"note": form.note.data} if trigger == "too_late" and form.note.data else {}
    try:
        order_flow.act_on_order(order.id, allowed[trigger], trigger, actor_id=str(current_staff().id), **inputs)
    except DomainError as error:
        flash(str(error), "error")
    else:
        flash(_("Done: %(action)s.", action=label(ORDER_TRIGGER_LABELS, trigger)), "success")
    return redirect(url_for(".order", order_id=order.id))
