"""The buyer portal: find my order, ask for something on a line, follow the case."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import drafts, evidence, order_flow, reconcile, services
from ..eligibility import CaseRequest
from ..errors import DomainError
from ..extensions import db
from ..i18n import _, current_locale, money_text
from ..models import Case, Order, OrderEvent, OrderLine, Shop
from ..orders import orders_for_buyer
from .access import ROW_ID, buyer_case_or_404, buyer_order_or_404, forget_buyer_orders, grant_buyer
from .actions import action_views, perform
from .case_pages import loaded_case, timeline_context
from .forms import CancelOrderForm, LookupForm, RateForm, form_inputs, parsed_amount, request_form_class
from .ratelimit import limiter, lookup_limits, order_number_key
from .wording import KIND_ENTRIES, KIND_LABELS, deadline_outcome, label

buyer = Blueprint("aftersales_buyer", __name__)


@buyer.route("/", methods=["GET", "POST"])
@buyer.route("/s/<shop_slug>/", methods=["GET", "POST"])
@limiter.limit(lambda: lookup_limits()["client"], methods=["POST"])
@limiter.limit(lambda: lookup_limits()["order"], key_func=order_number_key, methods=["POST"])
def lookup(shop_slug: str | None = None):
    """Find my order: number + e-mail, in the shop of the address (``/s/<shop>/``) or in any.
    Not found and wrong e-mail give the same answer; the same number and e-mail in two shops
    lets the buyer choose."""
    shop = None
    if shop_slug is not None:
        shop = db.session.scalar(select(Shop).where(Shop.slug == shop_slug)) or abort(404)
    form = LookupForm()
    if form.validate_on_submit():
        found = orders_for_buyer(form.order_number.data, form.email.data, shop.slug if shop else None)
        for order in found:
            grant_buyer(order)
        if len(found) == 1:
            return redirect(url_for(".order", order_id=found[0].id))
        if found:
            return render_template("aftersales/buyer/choose_order.html", orders=found)
        flash(_("We could not find an order with that number and e-mail address. Check both and try again."), "error")
        return render_template("aftersales/buyer/lookup.html", form=form, shop=shop), 404
    return render_template("aftersales/buyer/lookup.html", form=form, shop=shop), 400 if form.errors else 200


@buyer.get("/link/<token>")
def case_link(token: str):
    """The signed link of a message: the buyer lands on their case, the order granted as by a
    lookup. A link that is expired, altered, or for an order forgotten since, opens nothing:
    the lookup form says so."""
    from ..links import read_buyer_case_token

    read = read_buyer_case_token(token)
    case = db.session.get(Case, read[2]) if read is not None else None
    if case is None or case.order_id != read[0] or (case.order.buyer_access_generation or 0) != read[1]:
        flash(_("This link has expired or no longer opens the case. Look your order up with its number "
                "and your e-mail address instead."), "error")
        return render_template("aftersales/buyer/lookup.html", form=LookupForm(), shop=None), 410
    grant_buyer(case.order)
    return redirect(url_for(".case", case_id=case.id))


@buyer.post("/forget")
def forget():
    forget_buyer_orders()
    return redirect(url_for(".lookup"))


@buyer.get(f"/orders/<{ROW_ID}:order_id>")
def order(order_id: int):
    return _order_page(buyer_order_or_404(order_id))


def _order_page(order: Order, cancel_form: CancelOrderForm | None = None, status: int = 200):
    open_cases = {case.line_id: case for case in db.session.scalars(
        select(Case).where(Case.order_id == order.id, Case.open_line_id.is_not(None)))}
    past_cases = db.session.scalars(
        select(Case).where(Case.order_id == order.id, Case.open_line_id.is_(None)).order_by(Case.id.desc())).all()
    lines = []
    for line in order.lines:
        options = None if line.id in open_cases else services.line_eligibility(line).options
        lines.append((line, open_cases.get(line.id), options))
    may_cancel = "cancel" in order_flow.allowed_order_triggers(order, "buyer")
    if may_cancel and cancel_form is None:
        cancel_form = CancelOrderForm(formdata=None, lines=_cancellable_lines(order))
    return render_template("aftersales/buyer/order.html", order=order, lines=lines, past_cases=past_cases,
                           entries=KIND_ENTRIES, cancel_form=cancel_form if may_cancel else None,
                           cancel_blocked=may_cancel and any(case.reason != services.ORDER_CANCELLED
                                                             for case in open_cases.values()),
                           last_step=_last_order_step(order)), status


def _last_order_step(order: Order) -> OrderEvent | None:
    return db.session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id)
                              .order_by(OrderEvent.id.desc()).limit(1)).first()


def _cancellable_lines(order: Order) -> list[tuple[int, str]]:
    """The items the buyer may cancel one by one (while the order may lose some: before picking),
    by position; none when only the whole order can go."""
    if "cancel_lines" not in order_flow.allowed_order_triggers(order, "buyer"):
        return []
    live = [line for line in order.lines if line.cancelled_at is None]
    if len(live) < 2:
        return []
    return [(line.position, line.title + (f" × {line.quantity}" if line.quantity > 1 else "")) for line in live]


@buyer.post(f"/orders/<{ROW_ID}:order_id>/cancel")
def cancel_order(order_id: int):
    order = buyer_order_or_404(order_id)
    choices = _cancellable_lines(order)
    if "lines" in request.form and not choices:  # a page from before picking began: items no longer go alone
        flash(_("The order has moved on: only the whole order can be cancelled now. Nothing was cancelled."), "error")
        return _order_page(order, status=409)
    form = CancelOrderForm(lines=choices)
    if not form.validate_on_submit():
        return _order_page(order, cancel_form=form, status=400)
    chosen = set(form.lines.data) if choices else set()
    some = bool(chosen) and chosen != {position for position, _title in choices}
    inputs = {"lines": sorted(chosen)} if some else {}
    try:
        order = order_flow.act_on_order(order.id, "buyer", "cancel_lines" if some else "cancel", actor_id=order.buyer_email,
                                        reason=form.reason.data, note=form.note.data or "", **inputs)
    except DomainError as error:
        flash(str(error), "error")
        return _order_page(db.session.get(Order, order_id), cancel_form=form, status=getattr(error, "status", 400))
    db.session.expire_all()  # the warehouse may have answered already (its hook runs after the commit)
    order = db.session.get(Order, order_id)
    if some:
        flash(_("The items you chose are cancelled and refunded; the rest of the order goes on."), "success")
    elif order.state == "cancelled":
        flash(_("Your order is cancelled. What you paid goes back the way you paid; the requests below show "
                "each refund.") if order.paid_at else _("Your order is cancelled."), "success")
    elif order.state == "cancelling":
        flash(_("The warehouse is asked to stop your order; its answer will show on this page."), "success")
    else:
        flash(_("Too late to stop it: your order has left the warehouse. Refuse the delivery, or return it once it "
                "arrives."), "error")
    return redirect(url_for(".order", order_id=order_id))


@buyer.route(f"/orders/<{ROW_ID}:order_id>/lines/<{ROW_ID}:line_id>/request", methods=["GET", "POST"])
def request_case(order_id: int, line_id: int):
    order = buyer_order_or_404(order_id)
    line = db.session.get(OrderLine, line_id)
    if line is None or line.order_id != order.id:
        abort(404)
    eligibility = services.line_eligibility(line)
    kinds = eligibility.allowed_kinds
    if not kinds:
        flash(_("Nothing can be asked for on this item right now."), "error")
        return redirect(url_for(".order", order_id=order.id))
    chosen = request.values.get("kind") if request.values.get("kind") in kinds else kinds[0]
    option = eligibility.options[chosen]
    reasons = services.current().reasons(line.category)
    reason_choices = [(code, label({code: reasons[code].label}, code)) for code in option.reasons]
    reason = request.form.get("reason") if request.form.get("reason") in option.reasons else option.reasons[0]
    free_units = services.judge(line, CaseRequest(chosen, reason, 1)).max_quantity or 1
    # The units asked for: every free unit at first, then what the buyer chose (the page's
    # maximum follows the quantity on every re-render, ``?quantity=`` included).
    units = _chosen_quantity(request.values.get("quantity"), free_units)
    verdict = services.judge(line, CaseRequest(chosen, reason, units))
    plugin_fields = services.form_fields(line.category, chosen, "request")
    # Only a refund without a return asks how much: a return refunds the units sent back.
    needs_amount = chosen == "refund_only"
    form = request_form_class(
        [chosen], reason_choices, plugin_fields, order.currency, free_units, verdict.max_amount,
        needs_amount=needs_amount, unit_amounts=_unit_amounts(line, chosen, reason, free_units),
    )(quantity=units)
    status = 200
    kept_photos: list = []
    photos_lost = False
    if request.method == "POST":
        status = 400
        kept_photos, photos_lost = drafts.kept(request.form.get("kept_photos"), line_id=line.id,
                                               settings=current_app.config, instance_path=current_app.instance_path)
        dropped = set(request.form.getlist("drop_kept"))
        drafts.drop([p for p in kept_photos if p["storage_key"] in dropped],
                    settings=current_app.config, instance_path=current_app.instance_path)
        kept_photos = [p for p in kept_photos if p["storage_key"] not in dropped]
        valid = form.validate_on_submit()
        amount = parsed_amount(form, "amount", order.currency) if "amount" in form else None
        extra = form_inputs(form, order.currency, skip=REQUEST_CORE_FIELDS) if valid else None
        if valid and extra is not None and not ("amount" in form and form.amount.errors):
            response, status, kept_photos = _open_case(form, line, chosen, amount, extra, kept_photos)
            if response is not None:
                return response
        else:
            kept_photos = _keep_uploads(form, kept_photos)
        posted_reason = request.form.get("reason", "")
        if form.reason.errors and posted_reason not in option.reasons:
            # A form from before the rules changed (or a hand-made one): say why in words.
            form.reason.errors = [option.refused.get(posted_reason) or _("Please choose a reason from the list.")]
        if photos_lost:
            form.evidence.errors = [*form.evidence.errors, _(
                "Some photos you added earlier were kept too long and are gone; please add them again.")]
    # Every reason not open to this kind, core or plugin, with its one sentence: the buyer reads
    # why instead of wondering where "Changed my mind" went.
    refused = [(label({code: reasons[code].label}, code), why) for code, why in option.refused.items()
               if code in reasons and why]
    return render_template(
        "aftersales/buyer/request.html", order=order, line=line, form=form, kind=chosen, kinds=kinds, refused=refused,
        kind_labels=KIND_LABELS, photos_needed=verdict.requirement("photos"), units=units,
        max_amount=money_text(verdict.max_amount, order.currency), kept_photos=kept_photos,
        kept_token=drafts.keep(kept_photos, line_id=line.id) if kept_photos else "",
    ), status


def _chosen_quantity(raw: str | None, free_units: int) -> int:
    try:
        chosen = int(raw or "")
    except ValueError:
        return free_units
    return chosen if 1 <= chosen <= free_units else free_units


#: A quantity field lists what each number of units brings back up to this many units.
_LISTED_UNITS = 6


def _unit_amounts(line: OrderLine, kind: str, reason: str, free_units: int) -> list[tuple[int, str]]:
    """(units, the most refundable for them) for the quantity field's hint, refund kinds only."""
    if kind not in ("refund_only", "return_refund") or free_units <= 1:
        return []
    counts = list(range(1, free_units + 1)) if free_units <= _LISTED_UNITS else [1, free_units]
    return [(count, money_text(services.judge(line, CaseRequest(kind, reason, count)).max_amount, line.order.currency))
            for count in counts]


#: Refusals that are about one field of the request form: shown under it, not at the top.
_DENIAL_FIELDS = {"amount_limit": "amount", "quantity": "quantity", "unknown_reason": "reason"}


def _show_refusal(form, refusal: DomainError) -> None:
    """Each sentence of a refused request under the field it is about, the rest at the top."""
    verdict = getattr(refusal, "verdict", None)
    found = [(_DENIAL_FIELDS.get(d.code, ""), d.message) for d in verdict.denials] if verdict is not None else [
        ("evidence" if getattr(refusal, "field", None) == "photos" else getattr(refusal, "field", None) or "", str(refusal))]
    for name, message in dict.fromkeys(found):
        field = getattr(form, name, None) if name else None
        if field is not None and hasattr(field, "errors") and field.name != "csrf_token":
            field.errors = [*field.errors, message]
        else:
            flash(message, "error")


REQUEST_CORE_FIELDS = ("csrf_token", "evidence", "kind", "reason", "quantity", "amount", "description")


def _keep_uploads(form, kept: list) -> list:
    """The photos of a submit that did not go through, stored now and kept for the next one."""
    try:
        return [*kept, *evidence.store_photos(request.files.getlist(form.evidence.name), settings=current_app.config,
                                              instance_path=current_app.instance_path, already=len(kept))]
    except DomainError as error:
        form.evidence.errors = [*form.evidence.errors, str(error)]
        return kept


def _open_case(form, line: OrderLine, kind: str, amount: int | None, extra: dict, kept: list):
    """Store the new photos, open the case with them and the kept ones: (redirect, 302, []) or
    (None, status, photos) with the errors on the form and the photos kept for the next try."""
    refusal, photos = None, kept
    try:
        with reconcile.undone_on_error(current_app.config, current_app.instance_path) as stored:
            stored += evidence.store_photos(request.files.getlist(form.evidence.name), settings=current_app.config,
                                            instance_path=current_app.instance_path, already=len(kept))
            try:
                case = services.open_case(
                    line.id, kind, form.reason.data, quantity=form.quantity.data, amount=amount,
                    description=form.description.data or "", evidence=[*kept, *stored], data=extra,
                    actor_id=line.order.buyer_email, buyer_locale=current_locale(),
                )
            except DomainError as error:  # refused: every photo stays for the next try
                refusal, photos = error, [*kept, *stored]
    except DomainError as error:  # a photo refused: this submit's others were removed with it
        refusal = error
    if refusal is not None:
        _show_refusal(form, refusal)
        return None, getattr(refusal, "status", 400), photos
    flash(_("Your request was sent. The seller answers within the time shown below."), "success")
    return redirect(url_for(".case", case_id=case.id)), 302, []


@buyer.get(f"/cases/<{ROW_ID}:case_id>")
def case(case_id: int):
    case = buyer_case_or_404(case_id)
    return _case_page(case)


def _case_page(case: Case, failed=None, status: int = 200):
    case = loaded_case(case)
    rate_form = RateForm() if case.has_outcome and case.rating is None else None
    return render_template(
        "aftersales/buyer/case.html", case=case, actions=action_views(case, "buyer", failed), notices=services.case_notices(case, "buyer"),
        deadline=_deadline_words(case), rate_form=rate_form, last_word=services.last_word(case, "buyer"),
        **timeline_context(case, ".case"),
    ), status


def _deadline_words(case: Case) -> str | None:
    if case.due_at is None or not case.due_trigger:
        return None
    return deadline_outcome(case.state, case.due_trigger)


@buyer.post(f"/cases/<{ROW_ID}:case_id>/act/<trigger>")
def act(case_id: int, trigger: str):
    case = buyer_case_or_404(case_id)
    result = perform(case, "buyer", case.order.buyer_email, trigger, url_for(".case", case_id=case.id))
    if hasattr(result, "form"):
        return _case_page(case, failed=result, status=result.status)
    return result


@buyer.post(f"/cases/<{ROW_ID}:case_id>/rate")
def rate(case_id: int):
    case = buyer_case_or_404(case_id)
    form = RateForm()
    if not form.validate_on_submit():
        return _case_page(case, status=400)
    try:
        services.rate_case(case.id, int(form.rating.data), form.comment.data or "")
    except DomainError as error:
        flash(str(error), "error")
    else:
        flash(_("Thank you for rating the outcome."), "success")
    return redirect(url_for(".case", case_id=case.id))
