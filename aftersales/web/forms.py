"""Flask-WTF forms. Action forms are built from the workflow row's inputs, so a step's form
always asks exactly what the service layer will require."""
from __future__ import annotations

import re
import unicodedata

from dataclasses import replace
from typing import Any, Iterable, Mapping

from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from ..fields import FormField
from ..i18n import MODULE_DOMAIN, _, current_locale, currency_name, lazy_, ngettext
from ..models import INT32_MAX
from ..money import AmountTooLarge, minor_unit_digits, parse_money, plain_amount
from ..textinput import clean_text
from .wording import FIELD_LABELS


try:  # WTForms 3.3 wants SelectChoice objects; older versions take (value, label) pairs
    from wtforms.fields.choices import SelectChoice as _SelectChoice

    def choices(pairs: Iterable[tuple[str, Any]]) -> list[Any]:
        return [_SelectChoice(str(value), text) for value, text in pairs]
except ImportError:  # pragma: no cover - older WTForms
    def choices(pairs: Iterable[tuple[str, Any]]) -> list[Any]:
        return [(str(value), text) for value, text in pairs]


def _clean_one_line(value: Any) -> Any:
    return clean_text(value, multiline=False) if isinstance(value, str) else value


def _clean_multiline(value: Any) -> Any:
    return clean_text(value, multiline=True) if isinstance(value, str) else value


def _mark(text: str) -> str:
    """Marks a message for the catalogs that is translated elsewhere (by WTForms, through
    :class:`ModuleFormTranslations`)."""
    return text


def _mark_plural(singular: str, plural: str, num: int) -> tuple[str, str]:
    return singular, plural


#: WTForms' own messages that the module's forms can show (its validators and fields ask the
#: form's translations for them), so they are in the module's catalogs, in its words.
WTFORMS_MESSAGES = (
    _mark("This field is required."),
    _mark("Not a valid integer value."),
    _mark("Not a valid date value."),
    _mark("Not a valid choice."),
    _mark("Number must be between %(min)s and %(max)s."),
    _mark("Number must be at least %(min)s."),
    _mark("Number must be at most %(max)s."),
    _mark_plural("Field cannot be longer than %(max)d character.", "Field cannot be longer than %(max)d characters.", 1),
)


class ModuleFormTranslations:
    """WTForms' messages from the module's catalogs, in the request's locale (WTForms' own
    catalogs have no zh_Hant and are not the module's words)."""

    def gettext(self, string: str) -> str:
        return MODULE_DOMAIN.get_translations().ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return MODULE_DOMAIN.get_translations().ungettext(singular, plural, n)


class CleanMeta(FlaskForm.Meta):
    """Every text field of every form gets the text rule of ``aftersales.textinput`` as a filter,
    so a NUL, a control character or a bidi override never reaches a validator, the service
    layer or the database. Passwords are left exactly as typed (only their hash is kept), and so
    are hidden fields: nobody types them, and each is checked against exact values (a version
    number, a kind, a local path for ``next``), so tampering is refused rather than tidied."""

    def bind_field(self, form: Any, unbound_field: Any, options: dict[str, Any]) -> Any:
        field_class = unbound_field.field_class
        if issubclass(field_class, StringField) and not issubclass(field_class, (PasswordField, HiddenField)):
            rule = _clean_multiline if issubclass(field_class, TextAreaField) else _clean_one_line
            options = dict(options, filters=(*unbound_field.kwargs.get("filters", ()), rule))
        return super().bind_field(form, unbound_field, options)

    def get_translations(self, form: Any) -> ModuleFormTranslations:
        return ModuleFormTranslations()


class Form(FlaskForm):
    """The base of the module's forms: CSRF from Flask-WTF, text cleaned by :class:`CleanMeta`."""

    Meta = CleanMeta


def _email_shape(form: Any, field: Any) -> None:
    value = (field.data or "").strip()
    if "@" not in value or value.startswith("@") or value.endswith("@") or " " in value:
        raise ValidationError(_("Enter the e-mail address you ordered with."))


class LookupForm(Form):
    order_number = StringField(lazy_("Order number"), validators=[DataRequired(), Length(max=64)])
    email = StringField(lazy_("E-mail address"), validators=[DataRequired(), Length(max=254), _email_shape])


class LoginForm(Form):
    email = StringField(lazy_("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(lazy_("Password"), validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class NoteForm(Form):
    body = TextAreaField(lazy_("Internal note (staff only)"), validators=[DataRequired(), Length(max=2000)])


class RateForm(Form):
    rating = RadioField(lazy_("How was it? (1 = poor, 5 = excellent)"), choices=choices((str(n), str(n)) for n in range(1, 6)),
                        validators=[InputRequired()])
    comment = TextAreaField(lazy_("Comment (optional)"), validators=[Optional(), Length(max=2000)])


class MarkPaidForm(Form):
    reference = StringField(lazy_("Payment reference (optional)"), validators=[Optional(), Length(max=200)])


class CancelRefundForm(Form):
    reason = TextAreaField(lazy_("Why it is cancelled (the buyer reads it)"), validators=[DataRequired(), Length(max=2000)])


class VersionedForm(Form):
    """Every form that changes a case carries the version the person saw."""

    expected_version = HiddenField(validators=[DataRequired()])


def money_field(label: Any, currency: str, required: bool = True, default: int | None = None) -> StringField:
    validators = [DataRequired()] if required else [Optional()]
    digits = minor_unit_digits(currency)
    text = plain_amount(default, currency) if default is not None else None
    return StringField(_("%(label)s (%(currency)s)", label=label, currency=currency_name(currency)), validators=validators, default=text,
                       render_kw={"inputmode": "decimal" if digits else "numeric"})


def parsed_amount(form: Any, name: str, currency: str) -> int | None:
    """The money field's value in minor units; records a form error and returns None if bad."""
    field = getattr(form, name)
    raw = (field.data or "").strip()
    if not raw:
        return None
    try:
        return parse_money(raw, currency, current_locale())
    except AmountTooLarge:
        field.errors = list(field.errors) + [_("That amount is far too large.")]
        return None
    except ValueError:
        digits = minor_unit_digits(currency)
        if re.fullmatch(r"-?\d+([.,]\d+)?", unicodedata.normalize("NFKC", raw)):
            message = ngettext("Amounts in %(currency)s have at most %(num)d decimal place.",
                               "Amounts in %(currency)s have at most %(num)d decimal places.", digits,
                               currency=currency_name(currency))
        else:
            example = plain_amount(1250 if digits else 12, currency)
            message = _("Write the amount as a number, for example %(example)s.", example=example)
        field.errors = list(field.errors) + [message]
        return None


#: Inputs of the core rows; anything else is a plugin's and asked for as its FormField says.
CORE_INPUTS = frozenset({"reason", "statement", "description", "note", "amount", "carrier", "tracking_number",
                         "received_quantity", "damaged_quantity", "missing", "return_address", "payer", "goods",
                         "evidence"})


#: How each core input is asked for in an action form.
def _core_field(name: str, currency: str, required: bool, defaults: Mapping[str, Any]) -> Any:
    label = FIELD_LABELS.get(name, name.replace("_", " ").capitalize())
    presence = [DataRequired()] if required else [Optional()]
    if name in ("reason", "statement", "description", "note", "return_address"):
        return TextAreaField(label, validators=presence + [Length(max=2000)], default=defaults.get(name))
    if name == "amount":
        return money_field(label, currency, required, defaults.get("amount"))
    if name in ("carrier", "tracking_number"):
        return StringField(label, validators=presence + [Length(max=100)])
    if name == "received_quantity":
        return IntegerField(label, validators=[Optional(), NumberRange(min=1, max=INT32_MAX)], default=defaults.get(name))
    if name == "damaged_quantity":
        return IntegerField(label, validators=[Optional(), NumberRange(min=0, max=INT32_MAX)], default=0)
    if name == "missing":
        return SelectField(label, default="release", choices=choices([
            ("release", lazy_("Refund only what arrived (the buyer may ask about the rest again)")),
            ("refund", lazy_("Refund the missing units too"))]))
    if name == "payer":
        return SelectField(label, choices=choices([("seller", lazy_("The seller")), ("platform", lazy_("The platform"))]))
    if name == "goods":
        return SelectField(label, default="keep", choices=choices([("keep", lazy_("The buyer keeps the goods")),
                                                                   ("return", lazy_("The buyer sends the goods back first"))]))
    if name == "evidence":
        return MultipleFileField(label, render_kw={"accept": "image/jpeg,image/png,image/webp"})
    return StringField(label, validators=presence + [Length(max=500)])


def plugin_field(spec: FormField) -> Any:
    presence = [DataRequired()] if spec.required else [Optional()]
    if spec.type == "textarea":
        return TextAreaField(spec.label, validators=presence + [Length(max=2000)], description=spec.help)
    if spec.type == "choice":
        return SelectField(spec.label, choices=choices(spec.choices),
                           validators=presence, description=spec.help)
    if spec.type == "date":
        return DateField(spec.label, validators=presence, description=spec.help)
    if spec.type == "number":  # within a 32-bit column, whatever the plugin keeps it in
        return IntegerField(spec.label, validators=presence + [NumberRange(min=-INT32_MAX, max=INT32_MAX)],
                            description=spec.help)
    if spec.type == "checkbox":
        return BooleanField(spec.label, description=spec.help)
    return StringField(spec.label, validators=presence + [Length(max=500)], description=spec.help)


def action_form_class(
    trigger: str, requires: Iterable[str], accepts: Iterable[str], plugin_fields: Iterable[FormField],
    currency: str, defaults: Mapping[str, Any] | None = None,
) -> type[VersionedForm]:
    """A form class for one step: the row's required and optional inputs, then plugin fields."""
    defaults = defaults or {}
    specs = {spec.name: spec for spec in plugin_fields}
    attributes: dict[str, Any] = {}
    for name, required in [*((n, True) for n in requires), *((n, False) for n in accepts)]:
        if name in attributes:
            continue
        spec = specs.pop(name, None)
        if spec is not None and name not in CORE_INPUTS:  # the plugin says how to ask for its input
            attributes[name] = plugin_field(replace(spec, required=spec.required or required))
        else:
            attributes[name] = _core_field(name, currency, required, defaults)
    for spec in specs.values():
        attributes.setdefault(spec.name, plugin_field(spec))
    confirmation = CONFIRMATIONS.get(trigger)
    if confirmation is not None:  # a step that cannot be undone is ticked first
        attributes["confirm"] = BooleanField(confirmation, validators=[InputRequired(message=lazy_("Tick the box to confirm."))])
    return type(f"{trigger.title().replace('_', '')}Form", (VersionedForm,), attributes)


#: Steps that cannot be undone, and the box the person ticks to take them.
CONFIRMATIONS = {"withdraw": lazy_("Yes, withdraw my request: it cannot be asked for again in this case.")}


def form_inputs(form: Any, currency: str,
                skip: Iterable[str] = ("csrf_token", "expected_version", "evidence", "confirm")) -> dict[str, Any] | None:
    """The submitted values as service inputs (money parsed); None when a value is invalid."""
    inputs: dict[str, Any] = {}
    for field in form:  # short_name: action forms carry a per-trigger prefix ("ship_return-carrier")
        if field.short_name in skip:
            continue
        if field.short_name == "amount":
            amount = parsed_amount(form, "amount", currency)
            if form.amount.errors:
                return None
            if amount is not None:
                inputs["amount"] = amount
            continue
        value = field.data
        if isinstance(value, str):
            value = value.strip()
        if value not in (None, ""):
            inputs[field.short_name] = value.isoformat() if hasattr(value, "isoformat") else value
    return inputs


def request_form_class(
    kinds: Iterable[str], reasons: Iterable[tuple[str, Any]], plugin_fields: Iterable[FormField],
    currency: str, max_quantity: int, max_amount: int, needs_amount: bool,
    unit_amounts: Iterable[tuple[int, str]] = (),
) -> type[FlaskForm]:
    """The buyer's request form. ``unit_amounts`` (units, the most they bring back) becomes the
    quantity's hint, so the buyer sees the maximum of every choice without sending the form."""
    hint = "; ".join(ngettext("%(num)d unit: up to %(amount)s", "%(num)d units: up to %(amount)s", count, amount=amount)
                     for count, amount in unit_amounts)
    attributes: dict[str, Any] = {
        "kind": HiddenField(default=next(iter(kinds))),
        "reason": SelectField(lazy_("Why?"), choices=choices(reasons)),
        "quantity": IntegerField(lazy_("How many units?"), default=1, description=hint,
                                 validators=[InputRequired(), NumberRange(min=1, max=max(max_quantity, 1), message=(
                                     lazy_("This line has one unit to ask about.") if max_quantity <= 1
                                     else lazy_("Choose from 1 to %(max)d units.")))]),
        "description": TextAreaField(lazy_("Tell the seller what happened"), validators=[Optional(), Length(max=2000)]),
        "evidence": MultipleFileField(lazy_("Photos (JPEG, PNG or WebP)"),
                                      render_kw={"accept": "image/jpeg,image/png,image/webp"}),
    }
    if needs_amount:
        attributes["amount"] = money_field(lazy_("Refund amount"), currency, True, max_amount)
    for spec in plugin_fields:
        attributes.setdefault(spec.name, plugin_field(spec))
    return type("RequestForm", (Form,), attributes)


class CancelOrderForm(Form):
    """The buyer cancels the order, or some of its items (``lines``: offered only while the order
    may lose some, before picking), saying why (``order_workflow.CANCEL_REASONS``)."""

    lines = SelectMultipleField(lazy_("Items to cancel"), coerce=int, widget=ListWidget(prefix_label=False),
                                option_widget=CheckboxInput())
    reason = RadioField(lazy_("Why are you cancelling?"), validators=[InputRequired()])
    note = TextAreaField(lazy_("Anything the shop should know (optional)"), validators=[Optional(), Length(max=2000)])

    def __init__(self, *args: Any, lines: Iterable[tuple[int, str]] = (), **kwargs: Any):
        from ..order_workflow import CANCEL_REASONS
        from .wording import CANCEL_REASON_LABELS

        super().__init__(*args, **kwargs)
        self.reason.choices = [(code, str(CANCEL_REASON_LABELS[code])) for code in CANCEL_REASONS]
        self.lines.choices = list(lines)
        if not self.lines.choices:
            del self.lines  # the whole order only
        elif not self.lines.data:
            self.lines.data = [value for value, _label in self.lines.choices] if not self.is_submitted() else []

    def validate_lines(self, field: Any) -> None:
        if not field.data:
            raise ValidationError(_("Tick the items to cancel."))


class OrderStepForm(Form):
    """A staff step on an order (start picking, packed, stopped, too late): the note is optional."""

    note = TextAreaField(lazy_("Note for the buyer (optional)"), validators=[Optional(), Length(max=2000)])
