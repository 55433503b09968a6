"""Who may ask for what on an order line: the core rules of DESIGN §3 plus plugin verdicts.

Everything here is plain Python over an order line, a request and a few facts the service
layer looked up (open cases, units already covered, refundable amount). The answer is a
structured verdict: allowed or not, the reasons why not in words a buyer understands, and
what the request still needs (photos, a field).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from .i18n import _, lazy_, money_text, ngettext
from .money import SELLER_FAULT_REASONS, amount_for_units
from .workflow import ALL_KINDS, GOODS_BACK

KIND_ORDER = ("refund_only", "return_refund", "exchange", "repair")


@dataclass(frozen=True)
class Reason:
    """Why a buyer asks. ``window`` picks the rule that limits it in time."""

    code: str
    label: Any
    seller_fault: bool = False
    photos: int = 0  # minimum photos; 0 = none needed
    window: str = "quality"  # "no_reason", "quality", "none"


def core_reasons(settings: Mapping[str, Any]) -> list[Reason]:
    photos = int(settings.get("AFTERSALES_MIN_PHOTOS_FOR_FAULTS", 1))
    return [
        Reason("no_reason", lazy_("Changed my mind (no reason needed)"), window="no_reason"),
        Reason("quality", lazy_("Quality problem or fault"), True, photos),
        Reason("not_as_described", lazy_("Not as described"), True, photos),
        Reason("damaged", lazy_("Arrived damaged"), True, photos),
        Reason("wrong_item", lazy_("Wrong item sent"), True, photos),
        Reason("missing_part", lazy_("Missing part or accessory"), True, photos),
        Reason("not_received", lazy_("Never arrived"), True, 0, window="none"),
    ]


@dataclass(frozen=True)
class CaseRequest:
    """What a buyer asks for on one line."""

    kind: str
    reason: str
    quantity: int = 1
    amount: int | None = None  # minor units; None = the most allowed
    photos: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Denial:
    code: str
    message: str
    source: str = "core"


@dataclass(frozen=True)
class Requirement:
    """Something the request must carry: ``code`` "photos" counts evidence, any other code
    names an input field that must be filled."""

    code: str
    minimum: int
    message: str
    source: str = "core"


@dataclass(frozen=True)
class Waiver:
    """A plugin lifting the core denials with ``code`` for this request."""

    code: str
    message: str = ""
    source: str = "plugin"


def deny(message: str, code: str = "plugin") -> Denial:
    """A plugin verdict: refuse this request, telling the buyer ``message``."""
    return Denial(code, str(message), "plugin")


def require(code: str, minimum: int, message: str) -> Requirement:
    """A plugin verdict: the request needs ``minimum`` of ``code`` (e.g. 2 photos)."""
    return Requirement(code, minimum, str(message), "plugin")


def waive(code: str, message: str = "") -> Waiver:
    """A plugin verdict: lift the core denial ``code`` (e.g. "needs_return")."""
    return Waiver(code, str(message), "plugin")


@dataclass(frozen=True)
class LineFacts:
    """What the database says about a line right now, gathered by the service layer."""

    has_open_case: bool
    units_covered: int  # units in open or completed cases
    refundable: int  # paid − succeeded − pending refunds
    units_covered_not_received: int = 0  # of those, units in cases for goods that never arrived


@dataclass
class Verdict:
    """The answer for one request."""

    request: CaseRequest
    denials: list[Denial] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    max_quantity: int = 0
    max_amount: int = 0

    @property
    def allowed(self) -> bool:
        return not self.denials

    @property
    def messages(self) -> list[str]:
        return list(dict.fromkeys(d.message for d in self.denials))

    def requirement(self, code: str) -> int:
        return max((r.minimum for r in self.requirements if r.code == code), default=0)

    def unmet(self, photos: int, data: Mapping[str, Any]) -> list[Requirement]:
        """Requirements this request does not meet yet."""
        missing = []
        for requirement in self.requirements:
            if requirement.code == "photos":
                if photos < requirement.minimum:
                    missing.append(requirement)
            elif not data.get(requirement.code):
                missing.append(requirement)
        return missing


@dataclass
class KindOption:
    """One kind as shown on an order page: open to which reasons, or why not.

    ``why_not`` is one sentence when no reason is open (:func:`kind_sentence`); ``refused`` gives
    each reason that is not open its own sentence (:func:`reason_sentence`)."""

    kind: str
    reasons: list[str]
    why_not: list[str]
    refused: dict[str, str] = field(default_factory=dict)  # reason → why it is refused, one sentence

    @property
    def allowed(self) -> bool:
        return bool(self.reasons)


#: Core denials in the order a buyer should read them: what closes the whole line first (nothing
#: else matters while the order is unpaid), then the time rules of the reason, then the denials
#: that only say the reason does not go with this kind, then the form's own limits. A plugin's
#: denial (its category's own rule, more specific than the core's) comes right after the first group.
_LINE_DENIALS = ("unknown_kind", "order_cancelled", "not_paid", "open_case", "not_shipped", "not_delivered", "nothing_left",
                 "nothing_refundable")
_REASON_DENIALS = ("no_reason_exempt", "no_reason_window", "warranty_expired", "quality_window", "delivered",
                   "needs_return", "repair_needs_fault", "unknown_reason", "quantity", "amount_limit")
_PLUGIN_RANK = len(_LINE_DENIALS)
_RANK = {**{code: rank for rank, code in enumerate(_LINE_DENIALS)},
         **{code: _PLUGIN_RANK + 1 + rank for rank, code in enumerate(_REASON_DENIALS)}}
#: Denials that only say a reason does not fit this kind (or this delivery): they explain the
#: reason, never the whole kind.
REASON_FIT_DENIALS = frozenset({"delivered", "needs_return", "repair_needs_fault", "unknown_reason"})


def _rank(denial: Denial) -> int:
    return _PLUGIN_RANK if denial.source != "core" else _RANK.get(denial.code, len(_RANK) + _PLUGIN_RANK)


def reason_sentence(denials: Sequence[Denial]) -> str:
    """The one sentence that says why a reason is refused: its most specific denial."""
    return min(denials, key=_rank).message if denials else ""


def kind_sentence(refused: Mapping[str, Sequence[Denial]]) -> str:
    """The one sentence that says why a kind is refused for every reason (``refused``: each
    reason's denials). A denial every reason shares says it (the order is unpaid, the item is
    already in a request); else the denial that closes the most reasons, leaving out those that
    only say a reason does not fit; ties go to the most specific."""
    if not refused:
        return ""
    keyed = [{(d.source, d.code, d.message): d for d in denials} for denials in refused.values()]
    shared = set(keyed[0]).intersection(*keyed[1:])
    if shared:
        return min((keyed[0][key] for key in shared), key=_rank).message
    counts: dict[tuple[str, str, str], int] = {}
    examples: dict[tuple[str, str, str], Denial] = {}
    for denials in keyed:
        for key, denial in denials.items():
            if denial.code not in REASON_FIT_DENIALS or denial.source != "core":
                counts[key] = counts.get(key, 0) + 1
                examples.setdefault(key, denial)
    if not counts:  # every reason only misfits: say the first reason's
        return reason_sentence(next(iter(refused.values())))
    best = min(counts, key=lambda key: (-counts[key], _rank(examples[key])))
    return examples[best].message


@dataclass
class LineEligibility:
    line_id: int
    options: dict[str, KindOption]

    @property
    def allowed_kinds(self) -> list[str]:
        return [kind for kind, option in self.options.items() if option.allowed]


def core_verdict(
    line: Any,
    request: CaseRequest,
    now: datetime,
    facts: LineFacts,
    reasons: Mapping[str, Reason],
    settings: Mapping[str, Any],
) -> Verdict:
    """The core rules alone, before plugins have their say."""
    verdict = Verdict(request)
    denials = verdict.denials

    def refuse(code: str, message: str) -> None:
        denials.append(Denial(code, message))

    order = line.order
    reason = reasons.get(request.reason)
    if request.kind not in ALL_KINDS:
        refuse("unknown_kind", _("Unknown kind of request."))
    if reason is None:
        refuse("unknown_reason", _("Please choose a reason from the list."))
    if getattr(order, "state", None) == "cancelled" or getattr(line, "cancelled_at", None) is not None:
        refuse("order_cancelled", _("This order was cancelled; what was paid for it is refunded.")
               if order.state == "cancelled" else _("This item was cancelled; what was paid for it is refunded."))
    elif getattr(order, "state", None) == "cancelling":
        refuse("order_cancelled", _("You asked to cancel this order: the warehouse answers first."))
    elif order.paid_at is None:
        refuse("not_paid", _("This order has not been paid."))
    if facts.has_open_case:
        refuse("open_case", _("This item already has an open request; please follow that one."))

    # Before delivery: a refund only (cancel before shipment, or a parcel that never arrived).
    # A line shipped in parcels counts its units: those delivered open every kind, those not
    # delivered (yet) only "never arrived".
    days = line.days_since_delivery(now)
    delivered, undelivered = line.units_delivered, line.quantity - line.units_delivered
    if line.units_shipped == 0:
        if request.kind != "refund_only":
            refuse("not_shipped", _("The order has not shipped yet: ask for a refund instead."))
    elif days is None:
        if request.kind in GOODS_BACK:
            refuse("not_delivered", _("The parcel has not been delivered yet: nothing to send back."))
        elif reason is not None and request.reason != "not_received":
            refuse("not_delivered", _("The parcel has not been delivered yet; if it never arrives, choose \u201cNever arrived\u201d."))
    elif reason is not None and not (request.reason == "not_received" and undelivered > 0):
        _delivered_rules(line, request, reason, days, refuse, settings)

    # Quantities are counted per line, across all its cases; once units are delivered, a
    # request about the goods is for delivered units, "never arrived" for the others.
    available = max(line.quantity - facts.units_covered, 0)
    if line.units_shipped and days is not None:
        not_received = facts.units_covered_not_received
        if request.reason == "not_received":
            if undelivered > 0:  # (all delivered: refused above as delivered)
                available = min(available, max(undelivered - not_received, 0))
        else:
            available = min(available, max(delivered - (facts.units_covered - not_received), 0))
    verdict.max_quantity = available
    if available == 0:
        refuse("nothing_left", _("Every unit of this item is already covered by another request."))
    elif not 1 <= request.quantity <= available:
        refuse("quantity", _("You can ask for 1 to %(count)d unit(s) of this item.", count=available))

    # Amount: the value of the units asked for, never more than what is still refundable.
    units = min(max(request.quantity, 0), available)
    value = amount_for_units(line.paid_amount, line.quantity, min(facts.units_covered, line.quantity), units) if units else 0
    verdict.max_amount = min(value, facts.refundable)
    if request.kind in ("refund_only", "return_refund"):
        if verdict.max_amount <= 0 and 1 <= request.quantity <= available:
            refuse("nothing_refundable", _("Nothing is left to refund on this item."))
        elif request.amount is not None and not 0 < request.amount <= verdict.max_amount:
            refuse("amount_limit", ngettext(
                "The refund must be more than zero and at most %(amount)s for %(num)d unit.",
                "The refund must be more than zero and at most %(amount)s for %(num)d units.",
                units, amount=money_text(verdict.max_amount, order.currency)))

    if reason is not None and reason.photos:
        verdict.requirements.append(
            Requirement("photos", reason.photos, _("Please add at least %(count)d photo(s) of the problem.", count=reason.photos))
        )
    return verdict


def _delivered_rules(
    line: Any, request: CaseRequest, reason: Reason, days: int,
    refuse: Callable[[str, str], None], settings: Mapping[str, Any],
) -> None:
    if request.reason == "not_received":
        refuse("delivered", _("The parcel was delivered; if something is wrong with it, choose another reason."))
        return
    if reason.window == "no_reason":
        window = int(settings["AFTERSALES_NO_REASON_DAYS"])
        exempt = _no_reason_exemption(line)
        if exempt:
            refuse("no_reason_exempt", exempt)
        elif days > window:
            refuse("no_reason_window", _("The %(days)d-day no-reason return ended on day %(days)d after delivery.", days=window))
        if request.kind == "repair":
            refuse("repair_needs_fault", _("A repair is for a fault; choose the problem as the reason."))
        if request.kind == "refund_only":
            refuse("needs_return", _("Without a fault, send the item back to get a refund."))
        return
    if reason.window == "quality":
        if request.kind == "repair":
            warranty = int(line.attribute("warranty_days", settings["AFTERSALES_WARRANTY_DAYS"]))
            if days > warranty:
                refuse("warranty_expired", _("The %(days)d-day warranty has ended.", days=warranty))
        else:
            window = int(settings["AFTERSALES_QUALITY_DAYS"])
            if days > window:
                refuse("quality_window", _("Problems must be reported within %(days)d days of delivery; a repair may still be possible.", days=window))


def _no_reason_exemption(line: Any) -> str | None:
    """Why this line has no 7-day no-reason return, or None."""
    if line.attribute("custom_made"):
        return _("Custom-made goods have no 7-day no-reason return.")
    if line.attribute("perishable"):
        return _("Perishable goods have no 7-day no-reason return.")
    if line.attribute("digital"):
        return _("Downloaded or unsealed digital goods have no 7-day no-reason return.")
    if line.attribute("exemption_confirmed") and (line.attribute("activated") or line.attribute("unsealed")):
        return _("You confirmed at purchase that this item has no no-reason return once activated or unsealed.")
    return None


def combine(verdict: Verdict, plugin_answers: Iterable[Any]) -> Verdict:
    """Fold plugin verdicts into the core verdict: denials add, waivers lift, requirements add."""
    answers: list[Any] = []
    for answer in plugin_answers:
        if answer is None:
            continue
        answers.extend(answer if isinstance(answer, (list, tuple)) else [answer])
    waived = {a.code for a in answers if isinstance(a, Waiver)}
    verdict.denials = [d for d in verdict.denials if not (d.source == "core" and d.code in waived)]
    for answer in answers:
        if isinstance(answer, Denial):
            verdict.denials.append(answer)
        elif isinstance(answer, Requirement):
            verdict.requirements.append(answer)
        elif not isinstance(answer, Waiver):
            raise TypeError(f"an eligibility hook returned {answer!r}; use deny(), require() or waive()")
    return verdict


def line_overview(judge: Callable[[CaseRequest], Verdict], reason_codes: Sequence[str]) -> dict[str, KindOption]:
    """For an order page: each kind, the reasons it is open to, and for each reason that is not
    open one sentence why; a kind open to no reason gets one sentence (:func:`kind_sentence`)."""
    options = {}
    for kind in KIND_ORDER:
        open_to: list[str] = []
        denials: dict[str, list[Denial]] = {}
        for code in reason_codes:
            verdict = judge(CaseRequest(kind=kind, reason=code, quantity=1))
            if verdict.allowed:
                open_to.append(code)
            else:
                denials[code] = verdict.denials
        why_not = [] if open_to else [kind_sentence(denials)]
        options[kind] = KindOption(kind, open_to, why_not, {code: reason_sentence(found) for code, found in denials.items()})
    return options
