"""The only place that changes cases and moves money.

``open_case`` and ``act`` check who may do what (the workflow table), run the transition,
write the event and set the next deadline in one transaction. A transition is a
compare-and-set on the case's version, so of two concurrent actions exactly one wins and the
other gets :class:`CaseChanged`. Refunds are claimed against the line's ceiling with an
atomic conditional UPDATE and handed to the payment hook only after commit.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import and_, bindparam, case as case_when, func, inspect, or_, select, true, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from . import case_writes, express, money, notifications
from .database import write_transaction
from .eligibility import CaseRequest, LineEligibility, LineFacts, Verdict, combine, core_verdict, line_overview
from .errors import (
    CaseChanged,
    DomainError,
    InvalidInput,
    NotAllowed,
    NotEligible,
    NotFound,
    PluginError,
    RefundRefused,
)
from .extensions import db
from .fields import FormField
from .i18n import N_, _, money_text, ngettext
from .models import Case, CaseEvent, Evidence, Note, Order, OrderLine, OutboxMessage, Refund, StaffUser, utcnow
from .runtime import Runtime, current
from .textinput import clean_text
from .workflow import INITIAL_STATE, CompiledWorkflow, Row, TransitionContext

log = logging.getLogger(__name__)

MAX_TEXT = 2000
#: Idempotency keys the system makes for its own refunds; callers of create_refund may not use it.
SYSTEM_KEY_PREFIX = "sys:"
#: The reason of the refund-only case the system opens for each line of an order cancelled after
#: payment (``aftersales.order_flow``); buyers never choose it.
ORDER_CANCELLED = "order_cancelled"
ENDED_STATES = ("cancelled", "closed")  # ended without remedy: their units are free again


# --- reading ------------------------------------------------------------------------------
def get_case(case_id: int) -> Case:
    case = db.session.get(Case, case_id)
    if case is None:
        raise NotFound(_("No such case."))
    return case


_CASE_FOR_UPDATE = select(Case).where(Case.id == bindparam("case_id")).with_for_update()


def _case_for_update(case_id: int) -> Case:
    """The case, for a transaction that changes it, read fresh from the database (one Core
    SELECT, ``case_writes.load_case``). On PostgreSQL its row is locked first, so every writer
    takes the case before the order line (the sweeper, refunds and actions alike) and two of
    them wait for each other instead of deadlocking; SQLite's ``BEGIN IMMEDIATE`` already lets
    one writer in at a time."""
    lock = db.session.get_bind().dialect.name == "postgresql"
    with db.session.no_autoflush:
        case = case_writes.load_case(case_id, lock=lock)
    if case is None and lock:  # not there, or held with pending changes: the ORM loads it
        case = db.session.execute(_CASE_FOR_UPDATE, {"case_id": case_id},
                                  execution_options={"populate_existing": True}).scalar_one_or_none()
    elif case is None:
        case = db.session.get(Case, case_id)
    if case is None:
        raise NotFound(_("No such case."))
    return case


#: What other cases say about a line, built once (a statement rebuilt per call costs more than
#: the query): units covered by cases that hold them, and how many cases are open. Covered
#: means in an open case, or refunded by a completed one; a completed exchange or repair gave the
#: buyer a working unit back, which may need after-sales again (a second repair).
#: ``open_line_id`` is set (to the line) only while a case is open, so counting it counts them.
_LINE_FACTS = select(
    func.coalesce(func.sum(case_when(
        (Case.state.not_in(ENDED_STATES) & ~((Case.state == "completed") & Case.kind.in_(("exchange", "repair"))),
         Case.quantity - func.coalesce(Case.released_quantity, 0)),
        else_=0)), 0),
    func.count(Case.open_line_id),
    func.coalesce(func.sum(case_when(
        (Case.state.not_in(ENDED_STATES) & (Case.reason == "not_received"), Case.quantity), else_=0)), 0),
).where(Case.line_id == bindparam("line_id"))


#: The line a request is about, with its order and shop and what other cases say about it
#: (:data:`_LINE_FACTS`): the rules read all of them, in one query.
_LINE_FACTS_ROW = _LINE_FACTS.subquery()
_LINE_WITH_ORDER_AND_FACTS = (select(OrderLine, _LINE_FACTS_ROW).join(_LINE_FACTS_ROW, true())
                              .options(joinedload(OrderLine.order).joinedload(Order.shop))
                              .where(OrderLine.id == bindparam("line_id")))


def _known_locale(locale: str | None) -> str | None:
    """One of the module's catalogs (``zh_CN`` is ``zh_Hans``), or None for anything else."""
    if not locale:
        return None
    from .i18n import LOCALE_NAMES, catalog_locale

    chosen = catalog_locale(locale)
    if chosen not in LOCALE_NAMES and chosen.split("_")[0] == "en":
        chosen = "en"  # en_GB, en_US ... read the English catalog
    return chosen if chosen in LOCALE_NAMES else None


def line_facts(line: OrderLine) -> LineFacts:
    """What other cases say about the line, in one query."""
    return _facts(line, *db.session.execute(_LINE_FACTS, {"line_id": line.id}).one())


def _facts(line: OrderLine, covered: int, open_cases: int, not_received: int) -> LineFacts:
    """:class:`LineFacts` from a row of :data:`_LINE_FACTS`."""
    return LineFacts(has_open_case=open_cases > 0, units_covered=int(covered), refundable=refundable(line),
                     units_covered_not_received=int(not_received))


def judge(line: OrderLine, request: CaseRequest, now: datetime | None = None, facts: LineFacts | None = None) -> Verdict:
    """The eligibility verdict for one request: core rules combined with the plugins'."""
    runtime = current()
    now = now or utcnow()
    facts = facts or line_facts(line)
    verdict = core_verdict(line, request, now, facts, runtime.reasons(line.category), runtime.settings)
    answers = runtime.plugins.call("aftersales_eligibility", line.category, line=line, request=request, now=now)
    return combine(verdict, answers)


def line_eligibility(line: OrderLine, now: datetime | None = None) -> LineEligibility:
    """What the buyer may ask for on this line right now, kind by kind, with reasons why not."""
    now = now or utcnow()
    facts = line_facts(line)
    codes = list(current().reasons(line.category))
    options = line_overview(lambda request: judge(line, request, now, facts), codes)
    return LineEligibility(line.id, options)


def workflow_for(case: Case) -> CompiledWorkflow:
    return current().workflow(case.category, case.kind)


def last_word(case: Case, reader: str) -> CaseEvent | None:
    """The latest step with words of the other side (the seller's reason for rejecting, an
    offer's note, the platform's decision) for ``reader`` (``buyer``): what the case page shows
    beside the state."""
    others = ("seller", "platform") if reader == "buyer" else ("buyer",)
    return db.session.scalar(
        select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.actor_type.in_(others), CaseEvent.note != "",
                                CaseEvent.trigger.not_in(_NOT_WORDS))
        .order_by(CaseEvent.id.desc()).limit(1))


#: Steps whose note is a record (a payment reference, a tracking number), not words to a person.
_NOT_WORDS = ("refund_created", "refund_settled", "refund_failed", "refund_retried", "express_refund",
              "ship_return", "ship_replacement", "rate")


def allowed_triggers(case: Case, actor: str, now: datetime | None = None) -> list[str]:
    """The triggers ``actor`` may fire on ``case`` now: what the UI offers as buttons."""
    runtime = current()
    context = TransitionContext(case, actor, {}, now or utcnow(), runtime.settings)
    return workflow_for(case).allowed_triggers(context, case.state)


def form_fields(category: str, kind: str, trigger: str) -> list[FormField]:
    """Extra inputs plugins add to the form of ``trigger`` ("request" for the request form)."""
    fields: list[FormField] = []
    for answer in current().plugins.call("aftersales_form_fields", category, category=category, kind=kind, trigger=trigger):
        for form_field in answer or ():
            if not isinstance(form_field, FormField):
                raise TypeError(f"aftersales_form_fields must return FormField values, got {form_field!r}")
            fields.append(form_field)
    return fields


def required_inputs(case: Case, actor: str, trigger: str) -> tuple[str, ...]:
    rows = workflow_for(case).rows_for(case.state, trigger, actor)
    return rows[0].requires if rows else ()


# --- opening and acting ------------------------------------------------------------------
def open_case(
    line_id: int,
    kind: str,
    reason: str,
    *,
    quantity: int = 1,
    amount: int | None = None,
    description: str = "",
    evidence: Sequence[Mapping[str, Any]] = (),
    data: Mapping[str, Any] | None = None,
    actor_id: str | None = None,
    now: datetime | None = None,
    buyer_locale: str | None = None,
) -> Case:
    """A buyer's request on one order line. Refused with :class:`NotEligible` or
    :class:`InvalidInput` and a message the buyer understands. ``buyer_locale``: the language the
    buyer asked in (their messages are written in it; default: the shop's)."""
    runtime = current()
    now = now or utcnow()
    data = {name: clean_text(value, multiline=True) if isinstance(value, str) else value
            for name, value in (data or {}).items()}
    description = _clean_text(description, "description", required=False)
    try:
        with write_transaction():
            found = db.session.execute(_LINE_WITH_ORDER_AND_FACTS, {"line_id": line_id}).one_or_none()
            if found is None:
                raise NotFound(_("No such order line."))
            line, *facts = found
            request = CaseRequest(kind, reason, quantity, amount, photos=len(evidence), data=data)
            verdict = judge(line, request, now, facts=_facts(line, *facts))
            if not verdict.allowed:
                raise NotEligible(" ".join(verdict.messages), verdict)
            unmet = verdict.unmet(len(evidence), data)
            if unmet:
                raise InvalidInput(unmet[0].message, field=unmet[0].code)
            reason_info = runtime.reasons(line.category)[reason]
            default_payer = money.shipping_payer(
                reason, line.order.shipping_insured,
                seller_fault_reasons={reason} if reason_info.seller_fault else frozenset(),
            )
            payer = runtime.plugins.call(
                "aftersales_shipping_payer", line.category, line=line, reason=reason, default=default_payer
            ) or default_payer
            refunds_money = kind in ("refund_only", "return_refund")
            case = Case(
                shop_id=line.order.shop_id, order_id=line.order_id, line_id=line.id, open_line_id=line.id,
                category=line.category, kind=kind, reason=reason, description=description,
                quantity=quantity, amount=(amount if amount is not None else verdict.max_amount) if refunds_money else 0,
                currency=line.order.currency, state=INITIAL_STATE, shipping_payer=payer,
                data={key: value for key, value in data.items() if key != "evidence"},
                created_at=now, updated_at=now, buyer_locale=_known_locale(buyer_locale),
            )
            db.session.add(case)
            _transition(runtime, case, "buyer", actor_id, "request", {"description": description, **data}, now)
            _attach_evidence(case, evidence, "buyer", now)
            db.session.flush()
            committed = case_writes.loaded_columns(case)
    except IntegrityError as error:
        if "open_line_id" in str(error.orig):
            raise NotEligible(_("This item already has an open request; please follow that one.")) from error
        raise
    case_writes.keep_loaded(case, committed)
    deliver_new()
    return case


def act(
    case_id: int,
    actor: str,
    trigger: str,
    *,
    actor_id: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
    **data: Any,
) -> Case:
    """Fire ``trigger`` on a case as ``actor``: the one way every case changes.

    ``expected_version`` is the version the person saw; if the case moved on since,
    :class:`CaseChanged` tells them to reload instead of acting twice.
    """
    runtime = current()
    now = now or utcnow()
    try:
        with write_transaction():
            case = _case_for_update(case_id)
            if expected_version is not None and case.version != expected_version:
                raise CaseChanged(case.id, _("This case changed while you were looking at it; here is what happened."))
            _transition(runtime, case, actor, actor_id, trigger, data, now)
            db.session.flush()
            committed = case_writes.loaded_columns(case)
    except StaleDataError as error:
        raise CaseChanged(case_id, _("Someone else acted on this case at the same moment; reload it.")) from error
    case_writes.keep_loaded(case, committed)
    deliver_new()
    return case


_CASE_UNLESS_LOCKED = select(Case).where(Case.id == bindparam("case_id")).with_for_update(skip_locked=True)


def apply_timeout(case_id: int, now: datetime | None = None) -> bool:
    """Fire one case's due timer as the system, in a transaction of its own. True when applied.

    The sweeper (``deadlines.sweep``) does the same for whole batches; this is the one-case form.
    On PostgreSQL a row another sweeper holds is skipped, not waited for.
    """
    now = now or utcnow()
    try:
        with write_transaction():
            case = db.session.execute(_CASE_UNLESS_LOCKED, {"case_id": case_id}).scalar_one_or_none()
            if case is None or not fire_timeout(case, now):
                return False
    except (StaleDataError, CaseChanged):
        return False
    deliver_new()
    return True


def fire_timeout(case: Case, now: datetime) -> bool:
    """Inside the caller's transaction: fire ``case``'s due timer as the system if it is still due
    at ``now`` (re-checked here, so an action committed first wins). True when it fired.

    Written at once, or with the rest of the batch inside ``case_writes.batched()`` (the sweeper)."""
    if case.due_at is None or case.due_at > now or not case.due_trigger:
        return False
    _transition(current(), case, "system", None, case.due_trigger, {"timeout": True}, now)
    return True


def _transition(
    runtime: Runtime, case: Case, actor: str, actor_id: str | None, trigger: str, data: Mapping[str, Any], now: datetime,
    *, paid: int | None = None, paid_note: str | None = None,
) -> None:
    """Check and fire one transition and write it: the case's compare-and-set UPDATE and its event
    (``aftersales.case_writes``). ``paid``/``paid_note``: the amount and note of a completion by
    payment, recorded on its event."""
    workflow = runtime.workflow(case.category, case.kind)
    if workflow.is_terminal(case.state):
        raise NotAllowed(_("This case has ended; nothing more can be done on it."))
    rows = workflow.rows_for(case.state, trigger, actor)
    if not rows:
        raise NotAllowed(_("You cannot do \u201c%(action)s\u201d on this case now.", action=trigger))
    inputs = _inputs_for(rows, data)
    effect = _EFFECTS.get(trigger)
    if effect is not None:
        effect.check(case, actor, inputs, now)
    refusal = runtime.plugins.call(
        "aftersales_check_action", case.category, case=case, actor=actor, trigger=trigger, data=dict(inputs), now=now
    )
    if refusal:
        raise NotAllowed(str(refusal))
    context = TransitionContext(case, actor, inputs, now, runtime.settings)
    from_state, from_version, from_due = case.state, case.version or 0, case.due_at
    row = workflow.fire(context, from_state, trigger)
    if row is None:
        raise NotAllowed(_("The time for \u201c%(action)s\u201d has passed or its conditions are not met.", action=trigger))
    case.state = row.dest
    note = ""
    if effect is not None:
        note = effect.apply(case, actor, inputs, now) or ""
    elif inputs.get("evidence"):  # photos sent with a plugin's step (e.g. an inspection)
        _attach_evidence(case, inputs["evidence"], actor, now)
    _record_inputs(case, row, inputs)
    if row.dest != from_state:  # a step that stays (a question, an answer) does not restart the clock
        _set_deadline(runtime, workflow, case, now)
    _keep_seller_clock(case, trigger, from_state, from_due, now)
    if workflow.is_terminal(case.state):
        case.open_line_id = None
        case.ended_at = now
    case.updated_at = now
    refund = shipping_refund = None
    entering_refunding = case.state == "refunding" and from_state != "refunding"
    if entering_refunding:
        if case.approved_amount is None or goods_sent_back(case):
            # Reached through a plugin's step, or the platform's decision sent the goods back:
            # refund what came back (the decided amount at most).
            case.approved_amount = returned_goods_refund(case)
        if case.id is None:  # a plugin's workflow may refund straight from the request
            db.session.flush()
        # The version the case moves from (committed, compared-and-set): unique per transition.
        refund = _claim_refund(
            runtime, case, case.approved_amount, case.decision_payer or "seller",
            f"{SYSTEM_KEY_PREFIX}case-{case.id}-{trigger}-v{from_version}", now,
        )
        shipping_refund = _claim_shipping_fee(runtime, case, case.decision_payer or "seller",
                                              f"{SYSTEM_KEY_PREFIX}case-{case.id}-shipping-v{from_version}", now)
    if paid is not None:
        amount, currency = paid, case.currency
    else:
        amount, currency = (refund.amount, refund.currency) if refund is not None else (None, None)
    express_refund = None
    if (trigger == "ship_return" and case.kind == "return_refund" and case.express_state is None
            and not goods_sent_back(case)):  # the platform decided when money moves
        express_refund = _refund_express(runtime, case, now)
    else:
        moved = express.after_step(case, actor, trigger)
        if moved is not None:
            case.express_state = moved
    listened = runtime.plugins.implements("aftersales_case_event", case.category)
    event_id = case_writes.write_transition(case, {
        "actor_type": actor, "actor_id": actor_id, "trigger": trigger,
        "from_state": None if from_state == INITIAL_STATE else from_state, "to_state": case.state,
        "note": note if paid_note is None else paid_note, "data": _event_data(inputs), "created_at": now,
        "amount": amount, "currency": currency,
    }, event_needed=listened)
    if listened and event_id is not None:
        _write_outbox("case_event", {"event_id": event_id})
    if express_refund is not None:
        _money_event(case, actor, actor_id, "express_refund", express_refund, "", now)
    if entering_refunding and shipping_refund is not None:
        _money_event(case, actor, actor_id, "shipping_fee_refund", shipping_refund, "", now)
    _notify(runtime, case, actor, trigger, from_state, note if paid_note is None else paid_note, amount, now)
    if entering_refunding and refund is None and shipping_refund is None:  # everything due was already paid
        _complete_when_paid(runtime, case, now)


def _inputs_for(rows: Sequence[Row], data: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs the rows name (an input none of them names is refused, with its name);
    required ones must be present and not blank. Text goes through the text rule
    (``aftersales.textinput``) first, whoever calls."""
    row = rows[0]
    named = {name for each in rows for name in (*each.requires, *each.accepts)} | {"timeout"}
    # (A request's own inputs, the request form's and its plugin fields, are open_case's to check.)
    unknown = sorted(name for name in data if name not in named) if row.source != INITIAL_STATE else []
    if unknown:  # a misspelt or foreign input is refused, not silently dropped
        raise InvalidInput(ngettext("\u201c%(action)s\u201d takes no input called %(names)s.",
                                    "\u201c%(action)s\u201d takes no inputs called %(names)s.", len(unknown),
                                    action=row.trigger, names=", ".join(unknown)), field=unknown[0])
    data = {name: clean_text(value, multiline=True) if isinstance(value, str) else value for name, value in data.items()}
    inputs: dict[str, Any] = {}
    for name in row.requires:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()) or (name == "evidence" and not value):
            raise InvalidInput(_("Please fill in \u201c%(field)s\u201d.", field=field_name(name)), field=name)
        inputs[name] = value
    for name in dict.fromkeys(name for each in rows for name in each.accepts):  # whichever row fires
        if data.get(name) not in (None, ""):
            inputs[name] = data[name]
    for name in ("timeout",):
        if name in data:
            inputs[name] = data[name]
    return inputs


def _record_inputs(case: Case, row: Row, inputs: Mapping[str, Any]) -> None:
    """Plugin steps' inputs (a grade, a visit date) are kept in ``case.data`` by name."""
    if row.origin == "core":
        return
    kept = dict(case.data or {})
    for name, value in inputs.items():
        if name not in ("evidence", "timeout"):
            kept[name] = value
    case.data = kept


def _event_data(inputs: Mapping[str, Any]) -> dict[str, Any]:
    recorded = {}
    for name, value in inputs.items():
        if name == "evidence":
            recorded["evidence_count"] = len(value)
        elif isinstance(value, float) and not math.isfinite(value):
            recorded[name] = str(value)  # JSON has no NaN or infinity (PostgreSQL refuses them)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            recorded[name] = value
        else:
            recorded[name] = str(value)
    return recorded


def _set_deadline(runtime: Runtime, workflow: CompiledWorkflow, case: Case, now: datetime) -> None:
    deadline = workflow.deadline(case.state)
    if deadline is None and case.state == "refunding" and paid_by_hand(runtime, case):
        # No timer pays a manual refund: staff have days to pay it, then it is overdue and they
        # are reminded (aftersales.reminders); nothing fires by itself (no trigger).
        days = float(runtime.settings["AFTERSALES_MANUAL_REFUND_DAYS"])
        case.due_at, case.due_trigger = (now + timedelta(days=days) if days > 0 else None), None
        return
    if deadline is None or workflow.is_terminal(case.state):
        case.due_at, case.due_trigger = None, None
        return
    default = deadline.after
    if case.state == "requested" and case.kind == "refund_only" and deadline.trigger == "approve" \
            and db.session.get(OrderLine, case.line_id).units_shipped == 0:
        # Nothing has left the warehouse: the seller answers a refund sooner (or it is granted).
        default = min(default, timedelta(hours=float(runtime.settings["AFTERSALES_UNSHIPPED_REFUND_HOURS"])))
    after = runtime.plugins.call("aftersales_deadline", case.category, case=case, state=case.state, after=default)
    if after is not None and not isinstance(after, timedelta):
        raise PluginError("?", "aftersales_deadline", None, f"aftersales_deadline must return a timedelta, got {after!r}")
    case.due_at = now + (after or default)
    case.due_trigger = deadline.trigger


def paid_by_hand(runtime: Runtime, case: Case) -> bool:
    """Whether staff pay this case's refunds themselves (no payment plugin serves its category)."""
    return not runtime.plugins.implements("aftersales_issue_refund", case.category)


def _attach_evidence(case: Case, evidence: Iterable[Mapping[str, Any]], actor: str, now: datetime) -> None:
    for item in evidence:
        try:
            db.session.add(Evidence(
                case=case, uploaded_by=actor, storage_key=str(item["storage_key"]),
                original_name=str(item.get("original_name", ""))[:255], content_type=str(item["content_type"]),
                byte_size=int(item["byte_size"]), width=item.get("width"), height=item.get("height"),
                sha256=str(item["sha256"]), label=str(item.get("label", ""))[:64], created_at=now,
            ))
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInput(_("An uploaded photo could not be recorded."), field="evidence") from error


def field_name(field: str) -> str:
    """An input's name as its form calls it, in the reader's language ("Photos", "照片")."""
    from .web.wording import FIELD_LABELS, label

    return label(FIELD_LABELS, field)


def _clean_text(value: Any, field: str, required: bool = True, limit: int = MAX_TEXT) -> str:
    text = clean_text(value, multiline=True)
    if required and not text:
        raise InvalidInput(_("Please fill in \u201c%(field)s\u201d.", field=field_name(field)), field=field)
    if len(text) > limit:
        raise InvalidInput(_("Please keep \u201c%(field)s\u201d under %(limit)d characters.", field=field_name(field), limit=limit), field=field)
    return text


def _amount(value: Any, field: str = "amount") -> int:
    if isinstance(value, bool):
        raise InvalidInput(_("The amount is not a number."), field=field)
    try:
        amount = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(_("The amount is not a number."), field=field) from None
    if abs(amount) > money.MAX_AMOUNT:
        raise InvalidInput(_("The amount is far too large."), field=field)
    if amount != value and not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        raise InvalidInput(_("Amounts are whole minor units (cents)."), field=field)
    return amount


def refundable(line: OrderLine) -> int:
    """What may still leave the shop for the line: price and tax paid, less committed refunds."""
    return money.refundable_amount(line.refund_ceiling, [line.refund_committed])


# --- what each core trigger checks and records --------------------------------------------
class Effect:
    """The input checks (before the transition) and record keeping (after) of one trigger.

    ``system_message``: the note a timer's firing writes, stored as written here (English, no
    translation on the sweeper's path); the pages say it in the reader's language
    (``web.wording.event_note``)."""

    system_message: Any = None

    def check(self, case: Case, actor: str, inputs: dict[str, Any], now: datetime) -> None:
        return None

    def apply(self, case: Case, actor: str, inputs: dict[str, Any], now: datetime) -> str | None:
        return None


def default_return_address(case: Case) -> str:
    """The shop's return address, unless a plugin sends this return elsewhere."""
    default = case.shop.return_address or ""
    chosen = current().plugins.call("aftersales_return_address", case.category, case=case, default=default)
    return chosen if chosen is not None else default


def case_notices(case: Case, role: str) -> list[str]:
    """Messages plugins want a person to read on the case page."""
    notices: list[str] = []
    for answer in current().plugins.call("aftersales_case_notices", case.category, case=case, role=role):
        notices.extend(str(message) for message in answer or ())
    return notices


class Approve(Effect):
    def check(self, case, actor, inputs, now):
        if case.needs_goods_back:
            address = _clean_text(inputs.get("return_address") or default_return_address(case), "return_address", required=actor != "system")
            inputs["return_address"] = address

    def apply(self, case, actor, inputs, now):
        if case.needs_goods_back:
            case.return_address = inputs["return_address"]
        else:
            case.approved_amount = case.amount
        return self.system_message if actor == "system" else None

    system_message = N_("Approved automatically: the seller did not answer in time.")


class Reject(Effect):
    def check(self, case, actor, inputs, now):
        inputs["reason"] = _clean_text(inputs.get("reason"), "reason")

    def apply(self, case, actor, inputs, now):
        case.data = {**(case.data or {}), "rejection_reason": inputs["reason"]}
        return inputs["reason"]


def units_worth(case: Case) -> int:
    """The most the case's units can bring back: their share of what was paid, within what the line
    still has (an exchange or a repair asks for no amount, so this bounds their offers)."""
    line = case.line
    return min(money.amount_for_units(line.paid_amount, line.quantity, 0, case.quantity), refundable(line))


class Offer(Effect):
    def check(self, case, actor, inputs, now):
        amount = _amount(inputs.get("amount"))
        ceiling = units_worth(case)
        if not 0 < amount <= ceiling:
            raise InvalidInput(_("An offer must be more than zero and at most %(max)s.", max=money_text(ceiling, case.currency)), field="amount")
        if case.amount and amount >= case.amount:
            raise InvalidInput(_("An offer must be less than the amount the buyer asked for; approve the request instead."), field="amount")
        inputs["amount"] = amount
        inputs["note"] = _clean_text(inputs.get("note"), "note", required=False)

    def apply(self, case, actor, inputs, now):
        case.offer_amount = inputs["amount"]
        data = case.data or {}
        case.data = {**data, "offers": int(data.get("offers", 0)) + 1}
        return inputs["note"]


class AcceptOffer(Effect):
    def apply(self, case, actor, inputs, now):
        case.approved_amount = case.offer_amount


class DeclineOffer(Effect):
    def check(self, case, actor, inputs, now):
        inputs["note"] = _clean_text(inputs.get("note"), "note", required=False)

    def apply(self, case, actor, inputs, now):
        case.offer_amount = None
        return self.system_message if actor == "system" else inputs["note"]

    system_message = N_("The offer lapsed: the buyer did not answer in time.")


class CounterOffer(Effect):
    """The buyer answers an offer with an amount of their own: more than the offer, less than
    what they asked for (asking for all of it is declining the offer)."""

    def check(self, case, actor, inputs, now):
        amount = _amount(inputs.get("amount"))
        worth = units_worth(case)
        offered, asked = case.offer_amount or 0, min(case.amount or worth, worth)
        if not offered < amount < asked:
            raise InvalidInput(_("A counter-offer must be more than the offer (%(offer)s) and less than what you asked "
                                 "for (%(asked)s).", offer=money_text(offered, case.currency),
                                 asked=money_text(asked, case.currency)), field="amount")
        inputs["amount"] = amount
        inputs["note"] = _clean_text(inputs.get("note"), "note", required=False)

    def apply(self, case, actor, inputs, now):
        data = case.data or {}
        case.data = {**data, "counter_amount": inputs["amount"],
                     "counter_offers": int(data.get("counter_offers", 0)) + 1}
        return inputs["note"]


class AcceptCounter(Effect):
    def apply(self, case, actor, inputs, now):
        case.approved_amount = int((case.data or {})["counter_amount"])
        case.offer_amount = None
        return self.system_message if actor == "system" else None

    system_message = N_("Counter-offer accepted automatically: the seller did not answer in time.")


#: States where the seller owes an answer to the request. The seller's time to answer is set
#: once, when the request arrives (or is revised), and only runs while it is the seller's turn:
#: an offer stops it with the time that was left, and the buyer's answer (a counter-offer, a
#: decline, or the offer lapsing) hands back that much, never more. Negotiating never buys the
#: seller time, and the buyer's days with an offer are not taken from the seller either (else a
#: buyer who declines late would have the request approved by the timer at once).
SELLER_ANSWER_STATES = ("requested", "counter_offered")
_BACK_TO_THE_SELLER = ("decline_offer", "counter_offer")


def _keep_seller_clock(case: Case, trigger: str, from_state: str, from_due: datetime | None, now: datetime) -> None:
    """After the new state's deadline is set: stop the seller's clock at an offer (keeping the
    time that was left), resume it once when the buyer answers."""
    data = case.data or {}
    if trigger == "offer":
        left = {"seller_time_left": max((from_due - now).total_seconds(), 0.0)} if from_due is not None else {}
        case.data = {**{k: v for k, v in data.items() if k != "seller_time_left"}, **left}
    elif case.state in SELLER_ANSWER_STATES and trigger in _BACK_TO_THE_SELLER and "seller_time_left" in data:
        case.due_at = now + timedelta(seconds=float(data["seller_time_left"]))
        case.data = {k: v for k, v in data.items() if k != "seller_time_left"}


class Revise(Effect):
    def check(self, case, actor, inputs, now):
        inputs["description"] = _clean_text(inputs.get("description"), "description")
        if "amount" in inputs and case.kind not in ("refund_only", "return_refund"):
            del inputs["amount"]  # an exchange or a repair asks for no money: nothing to record
        if "amount" in inputs:
            amount = _amount(inputs["amount"])
            line = case.line
            worth = money.amount_for_units(line.paid_amount, line.quantity, 0, case.quantity)
            if not 0 < amount <= min(refundable(line), worth):
                raise InvalidInput(_("The refund must be more than zero and at most the refundable amount."), field="amount")
            inputs["amount"] = amount

    def apply(self, case, actor, inputs, now):
        case.description = inputs["description"]
        if "amount" in inputs and case.kind in ("refund_only", "return_refund"):
            case.amount = inputs["amount"]
        _attach_evidence(case, inputs.get("evidence") or (), actor, now)
        return inputs["description"]


class Escalate(Effect):
    def check(self, case, actor, inputs, now):
        inputs["statement"] = _clean_text(inputs.get("statement"), "statement")

    def apply(self, case, actor, inputs, now):
        case.data = {**(case.data or {}), "buyer_statement": inputs["statement"]}
        _attach_evidence(case, inputs.get("evidence") or (), actor, now)
        return inputs["statement"]


class Shipment(Effect):
    """ship_return (buyer → seller) and ship_replacement (seller → buyer): carrier + tracking."""

    def check(self, case, actor, inputs, now):
        inputs["carrier"] = _clean_text(inputs.get("carrier"), "carrier", limit=100)
        inputs["tracking_number"] = _clean_text(inputs.get("tracking_number"), "tracking_number", limit=100)

    def apply(self, case, actor, inputs, now):
        if actor == "buyer":
            case.return_carrier, case.return_tracking = inputs["carrier"], inputs["tracking_number"]
        else:
            case.data = {**(case.data or {}), "replacement_carrier": inputs["carrier"], "replacement_tracking": inputs["tracking_number"]}
        return f"{inputs['carrier']} {inputs['tracking_number']}"


class ConfirmReceipt(Effect):
    system_message = N_("Receipt confirmed automatically: the seller did not confirm in time.")

    def check(self, case, actor, inputs, now):
        received = inputs.get("received_quantity", case.quantity)
        try:
            received = int(received)
        except (TypeError, ValueError):
            raise InvalidInput(_("The number of units received is not a number."), field="received_quantity") from None
        if not 1 <= received <= case.quantity:
            raise InvalidInput(_("Between 1 and %(count)d unit(s) can be received; if nothing arrived, dispute the return instead.", count=case.quantity), field="received_quantity")
        inputs["received_quantity"] = received
        damaged = inputs.get("damaged_quantity", 0) or 0
        try:
            damaged = int(damaged)
        except (TypeError, ValueError):
            raise InvalidInput(_("The number of damaged units is not a number."), field="damaged_quantity") from None
        if not 0 <= damaged <= received:
            raise InvalidInput(_("Between 0 and %(count)d of the units received can be damaged.", count=received),
                               field="damaged_quantity")
        inputs["damaged_quantity"] = damaged
        if "reason" in inputs:
            inputs["reason"] = _clean_text(inputs["reason"], "reason", required=False)

    def apply(self, case, actor, inputs, now):
        case.received_quantity = inputs["received_quantity"]
        damaged = inputs.get("damaged_quantity") or 0
        if damaged:
            case.data = {**(case.data or {}), "damaged_quantity": damaged}
        if case.state == "escalated":  # damaged units: the platform decides, reading the receipt
            statement = inputs.get("reason") or _("%(damaged)d of %(received)d unit(s) arrived damaged.",
                                                 damaged=damaged, received=case.received_quantity)
            case.data = {**(case.data or {}), "seller_statement": statement}
            _attach_evidence(case, inputs.get("evidence") or (), actor, now)
            return statement
        if inputs.get("evidence"):
            _attach_evidence(case, inputs["evidence"], actor, now)
        if actor == "system":
            return self.system_message
        notes = []
        if case.received_quantity < case.quantity:
            notes.append(_("Only %(received)d of %(count)d unit(s) arrived: the missing ones stay open on this case "
                           "until the seller refunds them, asks the buyer about them, or disputes.",
                           received=case.received_quantity, count=case.quantity))
        if damaged:
            notes.append(_("%(damaged)d of %(received)d unit(s) arrived damaged and are refunded with the rest (the shop's rule).",
                           damaged=damaged, received=case.received_quantity))
        if inputs.get("reason"):
            notes.append(inputs["reason"])
        return " ".join(str(note) for note in notes) or None


def goods_sent_back(case: Case) -> bool:
    """The platform decided the goods come back before the decided amount is refunded."""
    return (case.data or {}).get("decided_goods") == "return"


def missing_units(case: Case) -> int:
    """Units the buyer sent back that never arrived (0 before the receipt)."""
    if case.received_quantity is None:
        return 0
    return max(case.quantity - case.received_quantity, 0)


def returned_goods_refund(case: Case, *, with_missing: bool = False) -> int:
    """The requested amount (the platform's, when it decided the goods come back first), or less
    when fewer units arrived than were announced (unless the seller refunds the missing ones too)."""
    asked = int((case.data or {}).get("decided_amount", case.amount))
    received = case.received_quantity or case.quantity
    if received >= case.quantity or with_missing:
        return asked
    line = case.line  # short receipt: refund what arrived, never silently more
    return min(asked, money.amount_for_units(line.paid_amount, line.quantity, 0, received))


class RefundReturn(Effect):
    """Refund what came back. Units that never arrived are refunded too when the seller says so
    (``missing``: ``refund``); otherwise they are released: the case no longer covers them, so
    the buyer may ask about them again (never silently counted as settled)."""

    def check(self, case, actor, inputs, now):
        missing = inputs.get("missing") or "release"
        if missing not in ("refund", "release"):
            raise InvalidInput(_("Choose whether the missing units are refunded too."), field="missing")
        inputs["missing"] = missing

    def apply(self, case, actor, inputs, now):
        with_missing = inputs["missing"] == "refund"
        case.approved_amount = returned_goods_refund(case, with_missing=with_missing)
        missing = missing_units(case)
        if missing and not with_missing:
            case.released_quantity = missing
        if actor == "system":
            return self.system_message
        if missing:
            return (_("The %(count)d missing unit(s) are refunded too.", count=missing) if with_missing else
                    _("The %(count)d missing unit(s) are not refunded; the buyer may ask about them again.", count=missing))
        return None

    system_message = N_("Refunded automatically: the seller did not refund in time.")


class Message(Effect):
    """A question or an answer about the case that moves nothing (the state and its deadline stay)."""

    def check(self, case, actor, inputs, now):
        inputs["note"] = _clean_text(inputs.get("note"), "note")

    def apply(self, case, actor, inputs, now):
        _attach_evidence(case, inputs.get("evidence") or (), actor, now)
        return inputs["note"]


class DisputeGoods(Effect):
    def check(self, case, actor, inputs, now):
        inputs["reason"] = _clean_text(inputs.get("reason"), "reason")

    def apply(self, case, actor, inputs, now):
        case.data = {**(case.data or {}), "seller_statement": inputs["reason"]}
        _attach_evidence(case, inputs.get("evidence") or (), actor, now)
        return inputs["reason"]


class Decide(Effect):
    PAYERS = ("seller", "platform")

    def check(self, case, actor, inputs, now):
        amount = _amount(inputs.get("amount"))
        ceiling = refundable(case.line)
        if not 0 <= amount <= ceiling:
            raise InvalidInput(_("The decided refund must be between 0 and %(max)s.", max=money_text(ceiling, case.currency)), field="amount")
        if inputs.get("payer") not in self.PAYERS:
            raise InvalidInput(_("Say who pays: the seller or the platform."), field="payer")
        inputs["amount"] = amount
        inputs["reason"] = _clean_text(inputs.get("reason"), "reason")
        goods = inputs.get("goods") or "keep"
        if goods not in self.GOODS:
            raise InvalidInput(_("Say whether the buyer keeps the goods or sends them back."), field="goods")
        if goods == "return" and case.return_tracking:
            raise InvalidInput(_("The goods are already on their way back or with the seller."), field="goods")
        inputs["goods"] = goods

    GOODS = ("keep", "return")

    def apply(self, case, actor, inputs, now):
        case.approved_amount = inputs["amount"]
        case.decision_payer = inputs["payer"]
        goods_back = case.state == "awaiting_return"  # the row sent the goods back
        case.data = {**(case.data or {}), "decided_amount": inputs["amount"],
                     "decided_goods": "return" if goods_back else ("keep" if not case.return_tracking else "returned")}
        if goods_back and not case.return_address:
            case.return_address = default_return_address(case)
        return inputs["reason"]


class Lapse(Effect):
    """Timers that end or move a case without inputs: a note says the system did it."""

    def __init__(self, message: Any):
        self.system_message = message

    def apply(self, case, actor, inputs, now):
        return self.system_message if actor == "system" else None


_EFFECTS: dict[str, Effect] = {
    "approve": Approve(),
    "reject": Reject(),
    "refuse_after_receipt": Reject(),
    "offer": Offer(),
    "accept_offer": AcceptOffer(),
    "decline_offer": DeclineOffer(),
    "counter_offer": CounterOffer(),
    "accept_counter": AcceptCounter(),
    "revise": Revise(),
    "escalate": Escalate(),
    "ship_return": Shipment(),
    "ship_replacement": Shipment(),
    "confirm_receipt": ConfirmReceipt(),
    "refund": RefundReturn(),
    "ask_about_missing": Message(),
    "answer_about_missing": Message(),
    "dispute_goods": DisputeGoods(),
    "decide": Decide(),
    "withdraw": Lapse(N_("Withdrawn automatically: the return was not shipped in time.")),
    "close": Lapse(N_("Closed automatically: no revision or escalation in time.")),
    "confirm_replacement": Lapse(N_("Confirmed automatically: the buyer did not answer in time.")),
}


def system_note(trigger: str) -> str | None:
    """The note a timer writes when it fires ``trigger`` (its English text, the catalogs' msgid),
    or None."""
    effect = _EFFECTS.get(trigger)
    return effect.system_message if effect is not None else None


# --- money ---------------------------------------------------------------------------------
def _refund_express(runtime: Runtime, case: Case, now: datetime) -> Refund | None:
    """The express refund of a return the buyer has just shipped, if their record allows it
    (``aftersales.express``): the amount asked for, claimed against the line now."""
    if not express.decision(case, runtime.settings).eligible:
        return None
    refund = _claim_refund(runtime, case, case.amount, case.decision_payer or "seller",
                           f"{SYSTEM_KEY_PREFIX}case-{case.id}-express", now)
    if refund is not None:
        case.express_state, case.express_amount = express.REFUNDED, refund.amount
    return refund


#: A case's refunds added up in the database (the refunds this transaction holds aside), in one
#: aggregate instead of loading the collection: (pending count, pending amount, paid amount, count).
_REFUND_TOTALS = select(
    func.count(Refund.id).filter(Refund.status == "pending"),
    func.coalesce(func.sum(Refund.amount).filter(Refund.status == "pending"), 0),
    func.coalesce(func.sum(Refund.amount).filter(Refund.status == "succeeded"), 0),
    func.count(Refund.id),
).where(Refund.case_id == bindparam("case_id"), Refund.component == bindparam("component"),
        Refund.id.not_in(bindparam("held", expanding=True)))
#: The line fresh from the database with the case's refunds added up, in one statement (the
#: claim of a refund reads both).
_REFUND_TOTALS_ROW = _REFUND_TOTALS.subquery()
_LINE_WITH_REFUND_TOTALS = (select(OrderLine, _REFUND_TOTALS_ROW).join(_REFUND_TOTALS_ROW, true())
                            .where(OrderLine.id == bindparam("line_id")))


@dataclass(frozen=True)
class RefundTotals:
    """What a case's refunds come to: ``pending`` refunds (``pending_amount`` of money), ``paid``
    money (succeeded), and ``count`` refunds in all (failed ones included)."""

    pending: int
    pending_amount: int
    paid: int
    count: int

    @property
    def committed(self) -> int:
        """Money out or on its way: what a new claim must leave room for."""
        return self.pending_amount + self.paid


def _held_refunds(case: Case, component: str) -> list[Refund]:
    """The refunds of ``case`` and ``component`` the session holds new or changed."""
    session = db.session()
    return [obj for obj in (*session.new, *session.dirty) if isinstance(obj, Refund)
            and (obj.__dict__.get("component") or "goods") == component
            and (obj.__dict__.get("case") is case or (case.id is not None and obj.__dict__.get("case_id") == case.id))]


def refund_totals(case: Case, component: str = "goods") -> RefundTotals:
    """The case's refunds of ``component`` (``goods``: the line's money; ``shipping``: the order's
    shipping fee) as this transaction sees them, without loading them or flushing: the
    database's rows, except those the session holds new or changed, which count as they are in
    memory (a refund just claimed, or just settled)."""
    held = _held_refunds(case, component)
    stored = (0, 0, 0, 0)
    if case.id is not None:
        session = db.session()
        with session.no_autoflush:
            stored = session.execute(_REFUND_TOTALS, _totals_parameters(case, component, held)).one()
    return _with_held(stored, held)


def _totals_parameters(case: Case, component: str, held: Sequence[Refund]) -> dict[str, Any]:
    return {"case_id": case.id, "component": component, "held": [r.id for r in held if r.id is not None]}


def _with_held(stored: Sequence[int], held: Sequence[Refund]) -> RefundTotals:
    """The database's totals (:data:`_REFUND_TOTALS`, the held refunds left out) with the held
    refunds counted as they are in memory."""
    pending, pending_amount, paid, count = stored
    for refund in held:
        count += 1
        if refund.status == "pending":
            pending, pending_amount = pending + 1, pending_amount + refund.amount
        elif refund.status == "succeeded":
            paid += refund.amount
    return RefundTotals(pending=int(pending), pending_amount=int(pending_amount), paid=int(paid), count=int(count))


def _refund_terms(runtime: Runtime, case: Case, amount: int, *, fresh_line: bool) -> tuple[int, list, int, OrderLine]:
    """What refunding ``amount`` on ``case`` comes to: (the buyer's due after plugin adjustments
    and the line's ceiling, the adjustments, what is already paid or being paid, the line)."""
    adjustments = []
    for answer in runtime.plugins.call("aftersales_refund_adjustments", case.category, case=case, amount=amount):
        for adjustment in answer or ():
            if not isinstance(adjustment, money.Adjustment):
                raise TypeError(f"aftersales_refund_adjustments must return Adjustment values, got {adjustment!r}")
            adjustments.append(adjustment)
    # The line fresh from the database when claiming (another case of the line may have claimed
    # since it was loaded) and the case's refunds; neither depends on the case's pending changes,
    # which the transition writes (with refund_due) instead of these reads flushing them early.
    if fresh_line and case.id is not None:  # both in one statement
        held = _held_refunds(case, "goods")
        with db.session.no_autoflush:
            line, *stored = db.session.execute(
                _LINE_WITH_REFUND_TOTALS, {"line_id": case.line_id, **_totals_parameters(case, "goods", held)},
                execution_options={"populate_existing": True}).one()
        already = _with_held(stored, held).committed
    else:
        with db.session.no_autoflush:
            line = db.session.get(OrderLine, case.line_id, populate_existing=fresh_line)
        already = refund_totals(case).committed
    ceiling = refundable(line) + already
    return money.apply_adjustments(amount, adjustments, ceiling=ceiling), adjustments, already, line


def refund_to_pay(case: Case) -> int:
    """What the seller's "refund" step would pay now (for its button): the returned goods'
    amount after plugin adjustments and the line's ceiling, less what was already refunded."""
    due, _adjustments, already, _line = _refund_terms(current(), case, returned_goods_refund(case), fresh_line=False)
    return max(due - already, 0)


def _claim_refund(runtime: Runtime, case: Case, amount: int, payer: str, key: str, now: datetime) -> Refund | None:
    """Claim the approved amount, after plugin adjustments, against the line's ceiling."""
    final, adjustments, already, line = _refund_terms(runtime, case, amount, fresh_line=True)
    # What the buyer is owed after adjustments: the case completes once this much is paid.
    case.data = {**(case.data or {}), "refund_due": final}
    asked = amount + sum(adjustment.amount for adjustment in adjustments)
    if asked > final:  # say so on the record instead of silently paying less
        adjustments.append(money.Adjustment("ceiling", final - asked, str(_("Limited to what is still refundable"))))
    final -= already
    if final <= 0:
        return None
    return _insert_refund(case, line, final, payer, key, now, adjustments)


#: The atomic claim against the ceiling: committed refunds never exceed price + tax paid,
#: whoever else claims on the line at the same moment.
_CLAIM_UNDER_CEILING = (
    update(OrderLine)
    .where(OrderLine.id == bindparam("line_id"),
           OrderLine.refund_committed + bindparam("amount") <= OrderLine.paid_amount + OrderLine.tax_paid)
    .values(refund_committed=OrderLine.refund_committed + bindparam("amount"))
    .execution_options(synchronize_session=False)
)


def _insert_refund(
    case: Case, line: OrderLine, amount: int, payer: str, key: str, now: datetime,
    adjustments: Sequence[money.Adjustment] = (), component: str = "goods",
) -> Refund:
    if component == "goods":
        with db.session.no_autoflush:  # the case's pending changes are the transition's to write
            claimed = db.session.execute(_CLAIM_UNDER_CEILING, {"line_id": line.id, "amount": amount}).rowcount
        if claimed != 1:
            raise RefundRefused(_("This refund would exceed what was paid for the item."))
        db.session.expire(line, ["refund_committed"])
    if case.id is None:  # a case being opened (not flushed yet): the unit of work writes both
        refund = Refund(
            case=case, line_id=line.id, amount=amount, currency=case.currency, payer=payer, status="pending",
            idempotency_key=key, provider=refund_provider(case.category), adjustments=[a.__dict__ for a in adjustments],
            created_at=now, component=component,
        )
        db.session.add(refund)
    else:  # one Core INSERT (issue 19); the case's refunds are added up in SQL (refund_totals)
        refund = case_writes.insert_loaded(Refund, {
            "case_id": case.id, "line_id": line.id, "amount": amount, "currency": case.currency, "payer": payer,
            "status": "pending", "idempotency_key": key, "provider": refund_provider(case.category),
            "provider_reference": None, "failure_reason": None, "provider_error": None, "component": component,
            "adjustments": [a.__dict__ for a in adjustments], "created_at": now, "settled_at": None,
        })
        set_committed_value(refund, "case", case)
        if "refunds" in inspect(case).dict:
            db.session.expire(case, ["refunds"])  # a loaded collection would not show the new one
    _enqueue("issue_refund", refund=refund)  # flushes (for the refund's id) when a payment plugin listens
    return refund


#: The order's shipping fee, claimed once: only while nothing of it is refunded or on its way.
_CLAIM_SHIPPING_FEE = (
    update(Order).where(Order.id == bindparam("order_id"), Order.shipping_refunded == 0, Order.shipping_fee > 0)
    .values(shipping_refunded=Order.shipping_fee).execution_options(synchronize_session=False)
)
_FREE_SHIPPING_FEE = (update(Order).where(Order.id == bindparam("order_id")).values(shipping_refunded=0)
                      .execution_options(synchronize_session=False))
#: Units of the order's other cases that give money back for goods returned or never received.
_UNITS_REFUNDED_ON_ORDER = select(func.coalesce(func.sum(Case.quantity - func.coalesce(Case.released_quantity, 0)), 0)).where(
    Case.order_id == bindparam("order_id"), Case.id != bindparam("case_id"),
    Case.state.in_(("refunding", "completed")),
    or_(Case.kind == "return_refund", and_(Case.kind == "refund_only", Case.reason == "not_received")),
)
_ORDER_SHIPPING_FEE = select(Order.shipping_fee, Order.shipping_refunded).where(Order.id == bindparam("order_id"))
_ORDER_UNITS = select(func.sum(OrderLine.quantity)).where(OrderLine.order_id == bindparam("order_id"))


def shipping_fee_due(runtime: Runtime, case: Case) -> bool:
    """Whether the refund this case is starting brings the order's shipping fee back with it
    (``AFTERSALES_SHIPPING_FEE_REFUND``): the return that makes every unit of the order
    returned, or (``seller_fault``) also a return the seller's fault caused. Whether the fee is
    still there to refund is the claim's to say (once per order)."""
    rule = runtime.settings["AFTERSALES_SHIPPING_FEE_REFUND"]
    cancelled = case.reason == ORDER_CANCELLED  # nothing shipped: the fee comes back whatever the rule
    if not cancelled and (rule == "never" or case.kind not in ("return_refund", "refund_only")):
        return False
    if case.kind == "refund_only" and case.reason not in ("not_received", ORDER_CANCELLED):
        return False  # money for a fault, the goods kept: not a return
    with db.session.no_autoflush:
        fee, refunded = db.session.execute(_ORDER_SHIPPING_FEE, {"order_id": case.order_id}).one()
    if not fee or refunded:
        return False  # nothing to refund, or it was (or is being) refunded with another case
    if cancelled:
        return not (case.data or {}).get("some_lines")  # the fee comes back with the whole order only
    reason = runtime.reasons(case.category).get(case.reason)
    if rule == "seller_fault" and reason is not None and reason.seller_fault:
        return True
    with db.session.no_autoflush:
        others = db.session.execute(_UNITS_REFUNDED_ON_ORDER, {"order_id": case.order_id, "case_id": case.id}).scalar()
        ordered = db.session.execute(_ORDER_UNITS, {"order_id": case.order_id}).scalar() or 0
    return int(others) + case.quantity - (case.released_quantity or 0) >= ordered


def _claim_shipping_fee(runtime: Runtime, case: Case, payer: str, key: str, now: datetime) -> Refund | None:
    """The order's shipping fee as its own refund of this case, if due and not refunded yet."""
    if not shipping_fee_due(runtime, case):
        return None
    with db.session.no_autoflush:
        if db.session.execute(_CLAIM_SHIPPING_FEE, {"order_id": case.order_id}).rowcount != 1:
            return None  # no fee, or refunded (or being refunded) with another case
        fee = db.session.scalar(select(Order.shipping_fee).where(Order.id == case.order_id))
    case.data = {**(case.data or {}), "shipping_fee_refund": int(fee)}
    return _insert_refund(case, case.line, int(fee), payer, key, now, component="shipping")


def _free_refund(refund: Refund) -> None:
    """A failed or cancelled refund's money is free again: the line's, or the order's shipping fee."""
    if refund.component == "shipping":
        order_id = db.session.scalar(select(OrderLine.order_id).where(OrderLine.id == refund.line_id))
        db.session.execute(_FREE_SHIPPING_FEE, {"order_id": order_id})
        return
    db.session.execute(
        update(OrderLine).where(OrderLine.id == refund.line_id)
        .values(refund_committed=OrderLine.refund_committed - refund.amount)
        .execution_options(synchronize_session=False))


def refund_provider(category: str) -> str:
    """Who pays a refund of ``category`` out: the payment plugin called first, or ``manual``
    (staff pay it outside the system and mark it paid)."""
    implementations = current().plugins.caller("aftersales_issue_refund", category).get_hookimpls()
    return implementations[-1].plugin_name[:64] if implementations else "manual"


def create_refund(
    case_id: int, amount: int, idempotency_key: str, *, payer: str = "seller", actor: str = "seller",
    actor_id: str | None = None, now: datetime | None = None,
) -> Refund:
    """A refund on an open case, claimed against the line's ceiling.

    Replaying the same ``idempotency_key`` returns the first refund (the payment hook is
    called once); the same key with a different amount or case is refused.
    """
    now = now or utcnow()
    amount = _amount(amount)
    if amount <= 0:
        raise RefundRefused(_("A refund must be more than zero."))
    if idempotency_key.startswith(SYSTEM_KEY_PREFIX) or not idempotency_key.strip():
        raise InvalidInput(_("Choose another idempotency key: this one is empty or reserved."), field="idempotency_key")
    existing = _refund_by_key(idempotency_key)
    if existing is not None:
        return _replayed(existing, case_id, amount)
    try:
        with write_transaction():
            case = _case_for_update(case_id)
            if case.is_terminal:
                raise RefundRefused(_("This case has ended; open a new request for another refund."))
            refund = _insert_refund(case, case.line, amount, payer, idempotency_key, now)
            event = CaseEvent(
                case=case, actor_type=actor, actor_id=actor_id, trigger="refund_created",
                from_state=case.state, to_state=case.state, amount=amount, currency=case.currency, created_at=now,
            )
            db.session.add(event)
            case.updated_at = now
            _enqueue("case_event", event=event)
    except IntegrityError:
        existing = _refund_by_key(idempotency_key)
        if existing is None:
            raise
        return _replayed(existing, case_id, amount)
    except StaleDataError as error:
        raise CaseChanged(case_id) from error
    deliver_new()
    return refund


def _refund_by_key(key: str) -> Refund | None:
    return db.session.scalar(select(Refund).where(Refund.idempotency_key == key))


def _replayed(existing: Refund, case_id: int, amount: int) -> Refund:
    if existing.case_id != case_id or existing.amount != amount:
        raise RefundRefused(_("This idempotency key was already used for a different refund."))
    return existing


#: A refund being settled, locked, with its case (which may complete).
_REFUND_FOR_SETTLING = (select(Refund).options(joinedload(Refund.case)).where(Refund.id == bindparam("refund_id"))
                        .with_for_update(of=Refund))


def settle_refund(
    refund_id: int, status: str, *, reference: str | None = None, message: str = "",
    actor: str = "system", actor_id: str | None = None, now: datetime | None = None, deliver: bool = True,
) -> Refund:
    """Record the outcome of a pending refund: ``succeeded`` (the case may complete) or
    ``failed`` (its amount is freed and staff are shown the failure)."""
    if status not in ("succeeded", "failed"):
        raise InvalidInput(_("A refund either succeeded or failed."), field="status")
    reference = _clean_text(reference, "reference", required=False, limit=200) or None
    message = _clean_text(message, "message", required=False)
    runtime = current()
    now = now or utcnow()
    try:
        with write_transaction():
            refund = db.session.execute(_REFUND_FOR_SETTLING, {"refund_id": refund_id}).scalar_one_or_none()
            if refund is None:
                raise NotFound(_("No such refund."))
            if refund.status != "pending":
                if refund.status == status:
                    return refund  # a repeated provider callback
                raise RefundRefused(_("This refund was already settled as %(status)s.", status=refund.status))
            case = _case_for_update(refund.case_id)  # the case before the line, as every writer
            outcome = {"status": status, "settled_at": now, "provider_reference": reference or refund.provider_reference}
            if status == "failed":
                # The provider's own words if it gave any; else the pages say it in the reader's language.
                outcome["failure_reason"] = message or None
            case_writes.update_loaded(refund, outcome)  # one Core UPDATE, no flush (issue 19)
            if status == "failed":
                _free_refund(refund)
                _money_event(case, actor, actor_id, "refund_failed", refund, refund.failure_reason or "", now)
                if not _complete_when_paid(runtime, case, now):
                    case.updated_at = now  # (a completion writes it with the case's new state)
                log.warning("refund %s of case %s (%s %s, %s) failed: %s", refund.id, case.id, refund.amount,
                            refund.currency, refund.provider, refund.failure_reason)
            else:
                # The event's actor says who marked it paid, its trigger that it was paid; the note
                # keeps only the payment's reference (in no one's language).
                note = reference or ""
                if not _complete_when_paid(runtime, case, now, note):
                    _money_event(case, actor, actor_id, "refund_settled", refund, note, now)
                    case.updated_at = now
    except StaleDataError as error:
        raise CaseChanged(refund_id) from error
    if deliver:
        deliver_new()
    return refund


def _record_send_failure(refund_id: int, error: Exception) -> None:
    """The payment plugin raised while sending the refund: the refund stays pending (it may yet be
    paid under its idempotency key), staff read the error on the case page, and the timeline
    says so. Never raises: the outbox's own record of the failure comes next."""
    text = f"{error.__class__.__name__}: {error}"[:2000]
    try:
        db.session.rollback()
        with write_transaction():
            refund = db.session.execute(_REFUND_FOR_SETTLING, {"refund_id": refund_id}).scalar_one_or_none()
            if refund is None or refund.status != "pending":
                return
            case = _case_for_update(refund.case_id)
            case_writes.update_loaded(refund, {"provider_error": text})
            _money_event(case, "system", None, "refund_send_failed", refund, text, utcnow())
    except Exception as failure:  # noqa: BLE001 - the delivery's failure is what matters
        db.session.rollback()
        log.error("recording the failure of refund %s failed: %s", refund_id, failure)


def _complete_when_paid(runtime: Runtime, case: Case, now: datetime, note: str = "") -> bool:
    """A refunding case completes once nothing is pending and what was approved has been paid
    (whichever refund settled last: a success, or the failure of an extra one). True if it did."""
    if case.state != "refunding":
        return False
    totals = refund_totals(case)
    if totals.pending:
        return False
    paid = totals.paid
    due = (case.data or {}).get("refund_due", case.approved_amount or 0)
    if paid < due:
        return False  # a failure left money owed: staff see it and retry
    if (case.data or {}).get("shipping_fee_refund"):
        shipping = refund_totals(case, "shipping")
        if shipping.pending or not shipping.paid:
            return False  # the shipping fee is on its way, or it failed: staff send it again
        paid += shipping.paid
    if paid == 0:
        return False  # nothing paid yet (a case that refunds only the shipping fee waits for it)
    if not runtime.workflow(case.category, case.kind).rows_for(case.state, "refund_succeeded", "system"):
        return False
    _transition(runtime, case, "system", None, "refund_succeeded", {}, now, paid=paid, paid_note=note)
    return True


def mark_refund_paid(refund_id: int, staff_id: int, reference: str = "", now: datetime | None = None) -> Refund:
    """The manual gateway: staff paid the refund outside the system and say so."""
    return settle_refund(refund_id, "succeeded", reference=reference or None, actor="seller", actor_id=str(staff_id), now=now)


def _refund_to_change(refund_id: int) -> tuple[Refund, Case]:
    """The pending refund, locked, with its case (locked first, as every writer takes them)."""
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise NotFound(_("No such refund."))
    case = _case_for_update(refund.case_id)
    refund = db.session.execute(_REFUND_FOR_SETTLING, {"refund_id": refund_id},
                                execution_options={"populate_existing": True}).scalar_one()
    if refund.status != "pending":
        raise RefundRefused(_("This refund was already settled: nothing was changed."))
    return refund, case


def cancel_refund(refund_id: int, reason: str, *, actor: str = "seller", actor_id: str | None = None,
                  now: datetime | None = None) -> Refund:
    """Staff withdraw a manual refund that was not paid yet, saying why: its amount is freed (the
    line may be refunded again) and the case waits for a new refund, which staff send with
    :func:`retry_refund`. A refund a payment plugin is sending cannot be withdrawn here: the
    provider may be paying it."""
    reason = _clean_text(reason, "reason")
    now = now or utcnow()
    with write_transaction():
        refund, case = _refund_to_change(refund_id)
        if refund.provider != "manual":
            raise NotAllowed(_("This refund is with the payment provider; only a refund staff pay by hand can be cancelled."))
        case_writes.update_loaded(refund, {"status": "cancelled", "failure_reason": reason, "settled_at": now})
        _free_refund(refund)
        _money_event(case, actor, actor_id, "refund_cancelled", refund, reason, now)
        case.updated_at = now
    deliver_new()
    return refund


def resend_refund(refund_id: int, *, actor: str = "seller", actor_id: str | None = None,
                  now: datetime | None = None) -> Refund:
    """Send a pending refund to its payment plugin again now, under the same idempotency key (the
    provider pays it once however often it is asked): after the provider could not be reached.
    Attempts still waiting for it in the outbox are replaced by this one."""
    now = now or utcnow()
    with write_transaction():
        refund, case = _refund_to_change(refund_id)
        if refund.provider == "manual":
            raise NotAllowed(_("Staff pay this refund by hand: mark it as paid once it is paid."))
        waiting = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.topic == "issue_refund", OutboxMessage.delivered_at.is_(None)))
        for message in waiting:
            if (message.payload or {}).get("refund_id") == refund.id:
                message.dead_at = message.dead_at or now
                message.last_error = f"replaced: sent again by {actor} at {now.isoformat()}"
        _write_outbox("issue_refund", {"refund_id": refund.id})
        _money_event(case, actor, actor_id, "refund_resent", refund, "", now)
        case.updated_at = now
    deliver_new()
    db.session.refresh(refund)
    return refund


def retry_refund(case_id: int, *, actor: str = "seller", actor_id: str | None = None, now: datetime | None = None) -> Refund:
    """After a failed refund, claim what is still owed under a new idempotency key."""
    runtime = current()
    now = now or utcnow()
    with write_transaction():
        case = _case_for_update(case_id)
        if case.state != "refunding":
            raise NotAllowed(_("Only a case that is being refunded can retry its refund."))
        totals = refund_totals(case)
        if totals.pending:
            raise NotAllowed(_("A refund for this case is still pending."))
        attempt = totals.count + 1
        refund = _claim_refund(runtime, case, case.approved_amount or 0, case.decision_payer or "seller",
                               f"{SYSTEM_KEY_PREFIX}case-{case.id}-retry-{attempt}", now)
        shipping_refund = None
        if (case.data or {}).get("shipping_fee_refund"):  # its shipping fee refund failed or was cancelled
            shipping = refund_totals(case, "shipping")
            if not shipping.pending and not shipping.paid:
                shipping_refund = _claim_shipping_fee(
                    runtime, case, case.decision_payer or "seller",
                    f"{SYSTEM_KEY_PREFIX}case-{case.id}-shipping-retry-{shipping.count + 1}", now)
        if refund is None and shipping_refund is None:
            raise NotAllowed(_("Nothing is left to refund on this case."))
        for sent in (refund, shipping_refund):
            if sent is not None:
                _money_event(case, actor, actor_id, "refund_retried", sent, "", now)
        case.updated_at = now
    deliver_new()
    return refund or shipping_refund  # type: ignore[return-value]


def _money_event(case: Case, actor: str, actor_id: str | None, trigger: str, refund: Refund, note: str, now: datetime) -> CaseEvent:
    event = CaseEvent(
        case=case, actor_type=actor, actor_id=actor_id, trigger=trigger, from_state=case.state,
        to_state=case.state, amount=refund.amount, currency=refund.currency, note=note, created_at=now,
    )
    db.session.add(event)
    _enqueue("case_event", event=event)
    return event


# --- notes and ratings ---------------------------------------------------------------------
def add_note(case_id: int, staff: StaffUser, body: str, now: datetime | None = None) -> Note:
    """An internal note for staff (never shown to the buyer)."""
    body = _clean_text(body, "note")
    with write_transaction():
        case = get_case(case_id)
        note = Note(case=case, author_id=staff.id, body=body, created_at=now or utcnow())
        db.session.add(note)
    return note


def rate_case(case_id: int, rating: int, comment: str = "", now: datetime | None = None) -> Case:
    """The buyer rates the outcome (1–5) once the case has ended."""
    now = now or utcnow()
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput(_("Choose a rating from 1 to 5."), field="rating")
    comment = _clean_text(comment, "comment", required=False)
    with write_transaction():
        case = _case_for_update(case_id)
        if not case.is_terminal:
            raise NotAllowed(_("You can rate the outcome once the case has ended."))
        if not case.has_outcome:
            raise NotAllowed(_("A withdrawn request has no outcome to rate."))
        if case.rating is not None:
            raise NotAllowed(_("You already rated this case."))
        case.rating, case.rating_comment = rating, comment
        event = CaseEvent(case=case, actor_type="buyer", trigger="rate", from_state=case.state,
                          to_state=case.state, note=comment, data={"rating": rating}, created_at=now)
        db.session.add(event)
        _enqueue("case_event", event=event)
    deliver_new()
    return case


# --- outbox: side effects after commit -------------------------------------------------------
_NEW_MESSAGES = "aftersales_new_outbox_messages"


def _enqueue(topic: str, *, event: CaseEvent | None = None, refund: Refund | None = None) -> None:
    """Write a side effect into the outbox, in the transaction of the change that causes it."""
    if event is not None and not current().plugins.implements("aftersales_case_event", event.case.category):
        return  # nobody listens: no message to deliver
    if refund is not None and not current().plugins.implements("aftersales_issue_refund", refund.case.category):
        return  # the manual gateway: staff pay it and mark it paid, nothing to send
    db.session.flush()
    payload = {"event_id": event.id} if event is not None else {"refund_id": refund.id}  # type: ignore[union-attr]
    _write_outbox(topic, payload)


def _notify(runtime: Runtime, case: Case, actor: str, trigger: str, from_state: str, note: str,
            amount: int | None, now: datetime) -> None:
    """The step's notifications, one outbox message per channel that wants each
    (``aftersales.notifications``), in the step's transaction."""
    if not runtime.plugins.implements("aftersales_notification_channels", case.category):
        return
    wanted = notifications.notifications_for(case, actor, trigger, None if from_state == INITIAL_STATE else from_state,
                                             note=note, amount=amount, now=now)
    if not wanted:
        return
    write_notifications(runtime, wanted, case.category)


def write_notifications(runtime: Runtime, wanted: Sequence[notifications.Notification], category: str | None) -> int:
    """One outbox message per channel (serving ``category``) that wants each notification, in
    the caller's transaction; how many were written."""
    channels = [channel for answer in runtime.plugins.call("aftersales_notification_channels", category)
                for channel in answer or ()]
    written = 0
    for notification in wanted:
        for channel in channels:
            if channel.wants(notification):
                _write_outbox(f"notify:{channel.name}", notification.as_payload())
                written += 1
    return written


def _write_outbox(topic: str, payload: dict[str, Any]) -> None:
    """One message for after the commit, in the transaction that causes it."""
    message = OutboxMessage(topic=topic, payload=payload, created_at=utcnow())
    db.session.add(message)
    db.session.info.setdefault(_NEW_MESSAGES, []).append(message)


def deliver_new() -> DeliveryReport | None:
    """After a commit, deliver the messages that transaction wrote (older ones: the sweeper's job).

    Messages written in a savepoint that was rolled back are not persistent and are left out.
    Never raises: the caller's change is committed, and a delivery that fails here (the database
    busy, the connection lost) stays in the outbox for the sweeper."""
    messages = db.session.info.pop(_NEW_MESSAGES, [])
    # Notifications wait for the deliverer (`flask aftersales deliver`, every sweep): a mail
    # server that is slow or down must not hold up the person's request.
    ids = [m.id for m in messages if inspect(m).persistent and not m.topic.startswith("notify:")]
    if not ids:
        return None
    try:
        return deliver_outbox(ids=ids)
    except Exception as error:  # noqa: BLE001 - the change is committed; the sweeper delivers later
        db.session.rollback()
        log.error("delivering side effects %s after the commit failed (the sweeper retries): %s", ids, error)
        return DeliveryReport(failed=len(ids))


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0  # failed this time; retried after a back-off
    dead: int = 0  # failed for the last time allowed: kept, and retried only when someone asks


_PENDING = (OutboxMessage.delivered_at.is_(None), OutboxMessage.dead_at.is_(None))


def _claimable(now: datetime) -> Any:
    return and_(*_PENDING, or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))


def retry_delay(attempts: int, settings: Mapping[str, Any]) -> timedelta:
    """How long a message that failed ``attempts`` times waits before the next try: the first
    delay, doubled at each further failure, at most the longest one."""
    first = int(settings["AFTERSALES_OUTBOX_RETRY_SECONDS"])
    longest = int(settings["AFTERSALES_OUTBOX_RETRY_MAX_SECONDS"])
    return timedelta(seconds=min(first * 2 ** min(max(attempts - 1, 0), 30), longest))


#: How long a claimed message is left to its worker before another may take it (a worker killed
#: mid-delivery): longer than any SMTP or webhook timeout.
CLAIM_SECONDS = 300


class PermanentDeliveryError(Exception):
    """A message that can never be delivered (its case is gone, the address is refused): it is
    dead at once instead of being retried for hours."""


def deliver_outbox(now: datetime | None = None, limit: int = 100, ids: Sequence[int] | None = None,
                   skip: set[int] | None = None) -> DeliveryReport:
    """Deliver pending side effects (notifications, plugin event hooks, payment calls), oldest
    first, at most ``limit`` of them, or the messages ``ids`` (those a commit just wrote);
    ``skip``: ids already tried by this run (each is added to it).

    Each message is claimed just before it is delivered, in a transaction of its own: on
    PostgreSQL the next one is read ``FOR UPDATE SKIP LOCKED`` (another worker's is skipped, not
    waited for); elsewhere it is claimed with a compare-and-set UPDATE. The claim counts an
    attempt and holds the message for ``CLAIM_SECONDS`` from the moment it is taken; the outcome
    is written only while the claim is still this worker's (the attempt count it took), so a
    message is delivered once however slow a worker is. A failure is retried after an
    exponential back-off; after ``AFTERSALES_OUTBOX_MAX_ATTEMPTS`` attempts (a worker killed
    mid-delivery counts) the message is dead, kept with its last error.
    """
    runtime = current()
    report = DeliveryReport()
    now = now or utcnow()
    skip = skip if skip is not None else set()
    if db.session().in_transaction():
        db.session.commit()
    if ids is None:
        candidates = db.session.scalars(select(OutboxMessage.id).where(_claimable(now)).order_by(OutboxMessage.id)
                                        .limit(limit + len(skip))).all()
        db.session.commit()
        ids = [message_id for message_id in candidates if message_id not in skip][:limit]
    for message_id in ids:
        if message_id in skip:
            continue
        skip.add(message_id)
        attempt = _claim(runtime, message_id, now)
        if attempt is not None:
            _deliver_claimed(runtime, message_id, attempt, now, report)
    return report


def _claim(runtime: Runtime, message_id: int, now: datetime) -> int | None:
    """Take ``message_id`` for one attempt; returns the attempt's number, or None if another
    worker has it (or it is delivered, dead, or backing off)."""
    held_until = max(now, utcnow()) + timedelta(seconds=CLAIM_SECONDS)
    with write_transaction():
        if db.session.get_bind().dialect.name == "postgresql":
            locked = db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.id == message_id, _claimable(now))
                                       .with_for_update(skip_locked=True))
            if locked is None:
                return None
        claimed = db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id, _claimable(now))
            .values(claimed_until=held_until, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.attempts).execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if claimed is not None and claimed > int(runtime.settings["AFTERSALES_OUTBOX_MAX_ATTEMPTS"]):
            # Its last allowed attempt never came back (the worker crashed or was killed on it).
            db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                               .values(dead_at=utcnow(), attempts=claimed - 1,
                                       last_error="the deliverer stopped during its last attempt (killed or crashed)")
                               .execution_options(synchronize_session=False))
            log.error("outbox message %s: its last attempt never finished; dead until retried", message_id)
            return None
    return claimed


def deliver_pending(now: datetime | None = None, batch: int = 100) -> DeliveryReport:
    """Deliver every message that is pending and not backing off, ``batch`` at a time, until
    none is left (what ``flask aftersales deliver`` and each sweep run). Each message is tried
    at most once per run, so a slow failing server cannot use up its attempts in one run."""
    total = DeliveryReport()
    tried: set[int] = set()
    while True:
        report = deliver_outbox(now=now, limit=batch, skip=tried)
        total.delivered += report.delivered
        total.failed += report.failed
        total.dead += report.dead
        if report.delivered + report.failed + report.dead == 0:
            return total


def _still_mine(message_id: int, attempt: int) -> Any:
    return and_(OutboxMessage.id == message_id, OutboxMessage.attempts == attempt, *_PENDING)


def _deliver_claimed(runtime: Runtime, message_id: int, attempt: int, now: datetime, report: DeliveryReport) -> None:
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    topic, payload = message.topic, message.payload
    try:
        _deliver(runtime, topic, payload)
    except Exception as error:  # reported, kept, retried: never silently dropped
        db.session.rollback()
        permanent = isinstance(error, PermanentDeliveryError)
        dead = permanent or attempt >= int(runtime.settings["AFTERSALES_OUTBOX_MAX_ATTEMPTS"])
        log.log(logging.ERROR if dead else logging.WARNING, "outbox message %s (%s), attempt %s, failed%s: %s",
                message_id, topic, attempt, " for good: dead until retried" if dead else "", error)
        failed_at = max(now, utcnow())  # the back-off counts from the failure, not from the run's start
        with write_transaction():
            db.session.execute(
                update(OutboxMessage).where(_still_mine(message_id, attempt))
                .values(last_error=f"{error.__class__.__name__}: {error}"[:2000],
                        claimed_until=failed_at + retry_delay(attempt, runtime.settings),
                        dead_at=failed_at if dead else None)
                .execution_options(synchronize_session=False)
            )
        if dead:
            report.dead += 1
        else:
            report.failed += 1
        return
    with write_transaction():
        db.session.execute(
            update(OutboxMessage).where(_still_mine(message_id, attempt))
            .values(delivered_at=utcnow(), last_error=None)
            .execution_options(synchronize_session=False)
        )
    report.delivered += 1


def retry_dead_messages(ids: Sequence[int] | None = None) -> int:
    """Give dead messages (all, or those of ``ids``) a new set of attempts, due now. Returns how
    many were revived. Messages still being retried are left to their back-off."""
    with write_transaction():
        query = (update(OutboxMessage).where(OutboxMessage.delivered_at.is_(None), OutboxMessage.dead_at.is_not(None))
                 .values(dead_at=None, claimed_until=None, attempts=0).execution_options(synchronize_session=False))
        if ids is not None:
            query = query.where(OutboxMessage.id.in_(list(ids)))
        return db.session.execute(query).rowcount


def _deliver(runtime: Runtime, topic: str, payload: Mapping[str, Any]) -> None:
    if topic == "case_event":
        event = db.session.get(CaseEvent, payload["event_id"])
        if event is not None:
            runtime.plugins.call("aftersales_case_event", event.case.category, case=event.case, event=event)
        db.session.commit()
    elif topic == "issue_refund":
        refund = db.session.get(Refund, payload["refund_id"])
        if refund is None or refund.status != "pending":
            db.session.commit()
            return
        case = refund.case
        db.session.commit()  # no transaction (and no lock) is held while the provider is called
        try:
            result = runtime.plugins.call("aftersales_issue_refund", case.category, refund=refund, case=case)
            if result is not None and not isinstance(result, money.RefundResult):
                raise TypeError(f"aftersales_issue_refund must return a RefundResult, got {result!r}")
        except Exception as error:
            _record_send_failure(refund.id, error)
            raise  # the outbox tries again after its back-off
        if result is None:
            return  # the manual gateway: staff mark it paid
        if result.status == "pending":
            with write_transaction():
                db.session.execute(update(Refund).where(Refund.id == refund.id, Refund.status == "pending")
                                   .values(provider_reference=result.reference or Refund.provider_reference,
                                           provider_error=None)
                                   .execution_options(synchronize_session=False))
            return
        settle_refund(refund.id, result.status, reference=result.reference, message=result.message, deliver=False)
    elif topic in ("order_cancelled", "intercept_order"):
        from . import order_flow

        order_flow.deliver(runtime, topic, payload)
    elif topic.startswith("notify:"):
        name = topic.partition(":")[2]
        notification = notifications.Notification.from_payload(payload)
        channels = [channel for answer in runtime.plugins.call("aftersales_notification_channels")
                    for channel in answer or () if channel.name == name]
        if not channels:
            raise PermanentDeliveryError(f"no notification channel {name!r} is loaded (its plugin was removed?)")
        try:
            if notifications.outdated(notification):
                return  # a reminder of a deadline that moved on or passed meanwhile: nothing to say
            channels[0].send(notification)
        except LookupError as error:  # its case is gone
            raise PermanentDeliveryError(str(error)) from error
        db.session.commit()
    else:
        raise ValueError(f"unknown outbox topic {topic!r}")


__all__ = [
    "act",
    "add_note",
    "allowed_triggers",
    "apply_timeout",
    "create_refund",
    "deliver_new",
    "deliver_outbox",
    "deliver_pending",
    "PermanentDeliveryError",
    "retry_dead_messages",
    "fire_timeout",
    "judge",
    "line_eligibility",
    "mark_refund_paid",
    "open_case",
    "rate_case",
    "retry_refund",
    "cancel_refund",
    "resend_refund",
    "refund_provider",
    "settle_refund",
    "DomainError",
]
