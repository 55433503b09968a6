"""Action forms shared by the buyer, seller and platform pages.

The buttons a person sees are exactly ``services.allowed_triggers(case, actor)``, and each
form asks exactly the inputs of that workflow row (plus plugin fields).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, flash, redirect, request
from werkzeug.wrappers import Response

from .. import evidence, reconcile, services
from ..errors import CaseChanged, DomainError, InvalidInput
from ..i18n import _, money_text
from ..models import Case
from .forms import action_form_class, form_inputs
from .wording import TRIGGER_LABELS, done_message, label

#: Inputs a person never types: the service fills them.
HIDDEN_INPUTS = frozenset({"timeout"})


#: Actions that end or turn down something: shown after the step the person most likely needs.
BACKING_OUT = ("decline_offer", "reject", "dispute_goods", "withdraw")


@dataclass
class ActionView:
    trigger: str
    label: str
    form: Any
    uploads: bool  # the form carries photos (multipart)
    status: int = 400  # when shown again with errors (413 for a refused, too large upload)

    @property
    def backs_out(self) -> bool:
        return self.trigger in BACKING_OUT


def _form_class(case: Case, actor: str, trigger: str) -> type:
    rows = services.workflow_for(case).rows_for(case.state, trigger, actor)
    requires = rows[0].requires if rows else ()
    accepts = tuple(a for a in (rows[0].accepts if rows else ()) if a not in HIDDEN_INPUTS
                    and not (a == "missing" and not services.missing_units(case)))  # asked only when units are missing
    defaults: dict[str, Any] = {
        "return_address": services.default_return_address(case),
        "received_quantity": case.quantity,
    }
    if trigger == "decide":
        defaults["amount"] = services.refundable(case.line)
    plugin_fields = services.form_fields(case.category, case.kind, trigger)
    return action_form_class(trigger, requires, accepts, plugin_fields, case.currency, defaults)


def allowed(case: Case, role: str) -> dict[str, str]:
    """trigger → actor, for every trigger a person in ``role`` may fire now (their own or as a
    plugin actor they play, such as an installer)."""
    found: dict[str, str] = {}
    for actor in services.workflow_for(case).actors_for(role):
        for trigger in services.allowed_triggers(case, actor):
            found.setdefault(trigger, actor)
    return found


def action_label(case: Case, trigger: str) -> str:
    """The button's words; the refund says how much it pays."""
    if trigger == "refund":
        amount = services.refund_to_pay(case)
        if amount == 0:
            return _("Refund (already paid in full)")
        return _("Refund %(amount)s", amount=money_text(amount, case.currency))
    return label(TRIGGER_LABELS, trigger)


def action_views(case: Case, role: str, failed: ActionView | None = None) -> list[ActionView]:
    """One form per trigger the person may fire now; a failed submission keeps its errors."""
    views = []
    for trigger, actor in allowed(case, role).items():
        if failed is not None and failed.trigger == trigger:
            views.append(failed)
            continue
        form = _form_class(case, actor, trigger)(prefix=trigger, formdata=None)
        form.expected_version.data = str(case.version)
        views.append(ActionView(trigger, action_label(case, trigger), form, "evidence" in form))
    # Stable: table order otherwise; withdrawing, which cannot be undone, always last.
    return sorted(views, key=lambda view: (view.backs_out, view.trigger == "withdraw"))


def perform(case: Case, role: str, actor_id: str | None, trigger: str, done_url: str) -> Response | ActionView:
    """Run a submitted action form. A redirect when done; the form with its errors when not."""
    seen = request.form.get(f"{trigger}-expected_version", "")
    if seen.isdigit() and int(seen) != case.version:  # acted on an old page: say what happened first
        flash(_("This case changed while you were looking at it — here is what happened. Nothing was done twice."), "warning")
        return redirect(done_url)
    actor = allowed(case, role).get(trigger)
    if actor is None:
        flash(_("This action is no longer available on this case; here is where it stands."), "warning")
        return redirect(done_url)
    form = _form_class(case, actor, trigger)(prefix=trigger)
    view = ActionView(trigger, label(TRIGGER_LABELS, trigger), form, "evidence" in form)
    if not form.validate():
        return view
    inputs = form_inputs(form, case.currency)
    if inputs is None:
        return view
    try:
        expected = int(form.expected_version.data)
    except (TypeError, ValueError):
        expected = -1
    try:
        with reconcile.undone_on_error(current_app.config, current_app.instance_path) as stored:
            if "evidence" in form:
                stored += evidence.store_photos(
                    request.files.getlist(form.evidence.name), settings=current_app.config,
                    instance_path=current_app.instance_path, already=len(case.evidence),
                )
                if stored:
                    inputs["evidence"] = stored
            services.act(case.id, actor, trigger, actor_id=actor_id, expected_version=expected, **inputs)
    except CaseChanged:
        flash(_("This case changed while you were looking at it — here is what happened. Nothing was done twice."), "warning")
        return redirect(done_url)
    except InvalidInput as error:
        view.status = getattr(error, "status", 400)
        target = getattr(form, getattr(error, "field", None) or "", None)
        if target is not None and hasattr(target, "errors"):
            target.errors = list(target.errors) + [str(error)]
        else:
            flash(str(error), "error")
        return view
    except DomainError as error:
        flash(str(error), "error")
        return redirect(done_url)
    flash(done_message(trigger, view.label), "success")
    return redirect(done_url)
