"""Who hears about a step of a case, and what they read.

A transition that someone should hear about (the rules below: the buyer learns that the seller
agreed, the seller that a return was shipped, ...) becomes one outbox message per channel that
wants it, written in the transition's transaction: a step that rolls back tells no one, and a
channel that is down (the SMTP server, a webhook receiver) gets its message later
(``services.deliver_outbox``). Channels come from the ``aftersales_notification_channels`` hook;
e-mail (``aftersales.mail``) is one of them.

What a message says is decided when it is sent, in the recipient's language, from the facts
recorded with it (the deadline, the amount, the return address as they were at the step).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select

from .extensions import db
from .i18n import catalog_locale, money_text, ngettext, shop_time
from .i18n import _ as gettext
from .models import Case, Shop, StaffUser, utcnow

#: Version of the payload's shape: a receiver (a webhook) reads it to know what it holds.
PAYLOAD_VERSION = 1

BUYER, SELLER = "buyer", "seller"

#: trigger -> what each side hears: the other side of the step, and the buyer's own request
#: confirmed (a buyer who ships the return needs no e-mail saying so; the seller does).
RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "request": ((BUYER, "request_received"), (SELLER, "new_case")),
    "revise": ((BUYER, "request_received"), (SELLER, "new_case")),
    "approve": ((BUYER, "approved"),),
    "reject": ((BUYER, "rejected"),),
    "refuse_after_receipt": ((BUYER, "refused_after_receipt"),),
    "ask_about_missing": ((BUYER, "question_about_missing"),),
    "answer_about_missing": ((SELLER, "answer_about_missing"),),
    "offer": ((BUYER, "offer_made"),),
    "counter_offer": ((SELLER, "counter_offer"),),
    "decline_offer": ((SELLER, "offer_declined"),),
    "ship_return": ((SELLER, "return_shipped"),),
    "ship_replacement": ((BUYER, "replacement_shipped"),),
    "escalate": ((SELLER, "escalated"),),
    "dispute_goods": ((BUYER, "escalated"),),
    "decide": ((BUYER, "platform_decision"), (SELLER, "platform_decision")),
    "refund_succeeded": ((BUYER, "refund_issued"),),
}
#: Every kind a rule can name (what a channel may be asked to carry).
KINDS = ("request_received", "new_case", "approved", "rejected", "refused_after_receipt", "question_about_missing",
         "answer_about_missing", "offer_made", "counter_offer", "offer_declined",
         "return_shipped",
         "replacement_shipped", "escalated", "platform_decision", "refund_issued", "case_ended", "deadline_reminder",
         "refund_overdue", "refunds_digest")
TERMINAL = ("completed", "closed", "cancelled")


@dataclass(frozen=True)
class Notification:
    """One thing one side of a case should hear: ``kind`` (one of :data:`KINDS`) for
    ``audience`` (``buyer`` or ``seller``), with the ``facts`` of the step as they were."""

    kind: str
    audience: str
    case_id: int | None  # None for a message about many cases (the staff's refund digest)
    shop_id: int
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        return {"version": PAYLOAD_VERSION, "kind": self.kind, "audience": self.audience, "case_id": self.case_id,
                "shop_id": self.shop_id, "facts": dict(self.facts)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Notification":
        case_id = payload.get("case_id")
        return cls(payload["kind"], payload["audience"], int(case_id) if case_id is not None else None,
                   int(payload["shop_id"]), dict(payload.get("facts") or {}))

    @property
    def case(self) -> Case:
        case = db.session.get(Case, self.case_id)
        if case is None:
            raise LookupError(f"case {self.case_id} no longer exists")
        return case


def notifications_for(case: Case, actor: str, trigger: str, from_state: str | None, *, note: str = "",
                      amount: int | None = None, now: datetime) -> list[Notification]:
    """What the step ``trigger`` (by ``actor``, from ``from_state``) of ``case`` tells whom.
    The case holds its new state, deadline and inputs."""
    wanted = list(RULES.get(trigger, ()))
    if case.state in TERMINAL and actor != BUYER and not any(audience == BUYER for audience, _kind in wanted):
        wanted.append((BUYER, "case_ended"))  # the outcome (and where to rate it), unless the buyer ended it or hears of it
    if not wanted:
        return []
    if amount is None:
        amount = (case.offer_amount if trigger == "offer" else case.approved_amount if trigger == "approve"
                  else (case.data or {}).get("counter_amount") if trigger == "counter_offer" else None)
    facts = case_facts(case, now, trigger=trigger, actor=actor, from_state=from_state, note=note, amount=amount)
    seen: set[tuple[str, str]] = set()
    return [Notification(kind, audience, case.id, case.shop_id, facts) for audience, kind in wanted
            if (audience, kind) not in seen and not seen.add((audience, kind))]


def case_facts(case: Case, now: datetime, *, trigger: str | None = None, actor: str = "system",
               from_state: str | None = None, note: str = "", amount: int | None = None) -> dict[str, Any]:
    """What a message about ``case`` may say, as it stands at ``now`` (after the step ``trigger``)."""
    return {
        "trigger": trigger, "actor": actor, "from_state": from_state, "state": case.state, "note": note or "",
        "amount": amount, "currency": case.currency, "due_at": case.due_at.isoformat() if case.due_at else None,
        "due_trigger": case.due_trigger, "return_address": case.return_address,
        "shipping_payer": case.decision_payer or case.shipping_payer, "carrier": case.return_carrier,
        "tracking": case.return_tracking, "at": now.isoformat(),
    }


def outdated(notification: Notification) -> bool:
    """A reminder whose deadline moved on (the person acted) or lapsed before it could be sent."""
    if notification.kind not in ("deadline_reminder",):
        return False
    case = notification.case
    recorded = notification.facts.get("due_at")
    return (case.due_at.isoformat() if case.due_at else None) != recorded or case.due_at <= utcnow()


# --- recipients and language ------------------------------------------------------------------
def recipients(notification: Notification) -> list[str]:
    """The e-mail addresses of the side that hears it: the order's buyer, or the shop's active staff."""
    if notification.audience == BUYER:
        order = notification.case.order
        return [order.buyer_email] if order.buyer_email else []
    return list(db.session.scalars(
        select(StaffUser.email).where(StaffUser.shop_id == notification.shop_id, StaffUser.active.is_(True))
        .order_by(StaffUser.id)))


def language(notification: Notification, settings: Mapping[str, Any]) -> str:
    """The language the message is written in: for the buyer, the one they asked in; else (and
    for staff) the shop's, else the app's default."""
    if notification.audience == BUYER and notification.case_id is not None and notification.case.buyer_locale:
        return notification.case.buyer_locale
    shop = db.session.get(Shop, notification.shop_id)
    return catalog_locale((shop.locale if shop is not None else None) or settings.get("BABEL_DEFAULT_LOCALE") or "en")


# --- what it says --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """A notification in words: a subject, paragraphs, and the page where the reader acts."""

    subject: str
    paragraphs: tuple[str, ...]
    action_label: str
    action_url: str


def compose(notification: Notification, action_url: str) -> Message:
    """The message in the current locale (the caller forces the recipient's)."""
    from .web.wording import BUYER_NEXT, KIND_LABELS, PAYER_LABELS, deadline_outcome, label, reason_label, state_label

    if notification.kind == "refunds_digest":
        return _digest(notification, action_url)
    case = notification.case
    facts = notification.facts
    shop = case.shop
    item = case.line.title
    names = {"item": item, "order": case.order.number, "shop": shop.name, "case": case.id}
    due = shop_time(datetime.fromisoformat(facts["due_at"]), shop.zone) if facts.get("due_at") else ""
    amount = money_text(facts["amount"], facts.get("currency") or case.currency) if facts.get("amount") is not None else ""
    note = facts.get("note") or ""
    kind = notification.kind
    to_buyer = notification.audience == BUYER
    paragraphs: list[str] = []
    if kind == "request_received":
        subject = gettext("We received your request for %(item)s", **names)
        paragraphs.append(gettext("Your request (%(kind)s) for %(item)s of order %(order)s was sent to %(shop)s.",
                                  kind=label(KIND_LABELS, case.kind).lower(), **names))
        if due:
            paragraphs.append(gettext("The seller answers by %(due)s. If they do not, the request is approved.", due=due))
    elif kind == "new_case":
        subject = gettext("New after-sales request #%(case)s: %(item)s", **names)
        paragraphs.append(gettext("%(kind)s for %(item)s of order %(order)s. Reason: %(reason)s.",
                                  kind=label(KIND_LABELS, case.kind), reason=reason_label(case), **names))
        if case.description:
            paragraphs.append(gettext("The buyer writes: %(words)s", words=case.description))
        if due:
            paragraphs.append(gettext("Answer by %(due)s. If you do not, the request is approved automatically.", due=due))
    elif kind == "approved":
        subject = gettext("Your request for %(item)s was approved", **names)
        if facts.get("state") == "awaiting_return":
            paragraphs.append(gettext("Send the item to this address: %(address)s", address=facts.get("return_address") or ""))
            paragraphs.append(gettext("%(sentence)s.", sentence=label(PAYER_LABELS, facts.get("shipping_payer") or "buyer")))
            if due:
                paragraphs.append(gettext("Send it by %(due)s and enter the tracking number on your case page; "
                                          "otherwise the request is withdrawn.", due=due))
        else:
            paragraphs.append(str(BUYER_NEXT.get(facts.get("state"), "")) or state_label(case))
    elif kind == "rejected":
        subject = gettext("The seller declined your request for %(item)s", **names)
        if note:
            paragraphs.append(gettext("The seller's reason: %(reason)s", reason=note))
        paragraphs.append(gettext("You can revise your request or ask the platform to decide until %(due)s.", due=due)
                          if due else gettext("You can revise your request or ask the platform to decide."))
    elif kind == "refused_after_receipt":
        subject = gettext("The seller received %(item)s and refuses a refund", **names)
        if note:
            paragraphs.append(gettext("The seller's reason: %(reason)s", reason=note))
        paragraphs.append(gettext("You can ask the platform to decide until %(due)s; after that the case closes.", due=due)
                          if due else gettext("You can ask the platform to decide."))
    elif kind == "question_about_missing":
        subject = gettext("The seller asks about the units of %(item)s that did not arrive", **names)
        if note:
            paragraphs.append(gettext("The seller writes: %(words)s", words=note))
        paragraphs.append(gettext("Answer on your case page, with a photo of the parcel or its label if you have one."))
    elif kind == "answer_about_missing":
        subject = gettext("The buyer answered about the missing units of %(item)s", **names)
        if note:
            paragraphs.append(gettext("The buyer writes: %(words)s", words=note))
    elif kind == "offer_made":
        subject = gettext("The seller offers %(amount)s for %(item)s", amount=amount, **names)
        if note:
            paragraphs.append(gettext("The seller writes: %(words)s", words=note))
        paragraphs.append(gettext("Accept or decline the offer on your case page by %(due)s.", due=due)
                          if due else gettext("Accept or decline the offer on your case page."))
    elif kind == "counter_offer":
        subject = gettext("The buyer asks for %(amount)s instead, for %(item)s", amount=amount, **names)
        if note:
            paragraphs.append(gettext("The buyer writes: %(words)s", words=note))
        paragraphs.append(gettext("Accept it, make another offer or reject the request on the case page by %(due)s; "
                                  "if you do not answer, the counter-offer is accepted.", due=due)
                          if due else gettext("Accept it, make another offer or reject the request on the case page."))
    elif kind == "offer_declined":
        subject = gettext("The buyer declined your offer for %(item)s", **names)
        if facts.get("actor") == "system":
            paragraphs.append(gettext("The buyer did not answer your offer in time."))
        elif note:
            paragraphs.append(gettext("The buyer writes: %(words)s", words=note))
        paragraphs.append(gettext("Answer the request on the case page by %(due)s; if you do not, it is approved.", due=due)
                          if due else gettext("Answer the request on the case page."))
    elif kind == "return_shipped":
        subject = gettext("Case #%(case)s: the buyer shipped the return", **names)
        paragraphs.append(gettext("%(item)s of order %(order)s is on its way back: %(carrier)s, tracking number %(tracking)s.",
                                  carrier=facts.get("carrier") or "", tracking=facts.get("tracking") or "", **names))
        if due:
            paragraphs.append(gettext("Confirm receipt by %(due)s; otherwise the return counts as received.", due=due))
    elif kind == "replacement_shipped":
        subject = gettext("A replacement for %(item)s is on its way", **names)
        paragraphs.append(gettext("Tell us on your case page when it has arrived, by %(due)s.", due=due)
                          if due else gettext("Tell us on your case page when it has arrived."))
    elif kind == "escalated":
        subject = gettext("Case #%(case)s went to the platform", **names)
        paragraphs.append(gettext("The platform reads both sides and decides on %(item)s of order %(order)s.", **names))
    elif kind == "platform_decision":
        subject = gettext("The platform decided on case #%(case)s", **names)
        paragraphs.append(gettext("The decision: %(state)s.", state=label_for_state(facts.get("state"))))
        if note:
            paragraphs.append(gettext("The platform writes: %(words)s", words=note))
    elif kind == "refund_issued":
        subject = gettext("Your refund of %(amount)s for %(item)s was paid", amount=amount, **names)
        paragraphs.append(gettext("It goes back the way you paid for order %(order)s.", **names))
        paragraphs.append(gettext("You can rate how the case was handled on your case page."))
    elif kind == "deadline_reminder":
        outcome = deadline_outcome(facts.get("state") or case.state, facts.get("due_trigger") or "")
        if to_buyer:
            subject = gettext("Reminder: your case for %(item)s needs you by %(due)s", due=due, **names)
            paragraphs.append(str(BUYER_NEXT.get(facts.get("state"), "")))
        else:
            subject = gettext("Reminder: case #%(case)s needs an answer by %(due)s", due=due, **names)
            paragraphs.append(gettext("%(item)s of order %(order)s: %(state)s.", state=label_for_state(facts.get("state")),
                                      **names))
        paragraphs.append(gettext("If nothing is done by %(due)s, %(outcome)s.", due=due, outcome=outcome))
    elif kind == "refund_overdue":
        subject = gettext("Case #%(case)s: the refund is overdue", **names)
        paragraphs.append(gettext("The refund for %(item)s of order %(order)s was due to be paid by %(due)s. "
                                  "Pay it and mark it paid on the case page.", due=due, **names))
    elif kind == "case_ended":
        subject = gettext("Your case for %(item)s has ended", **names)
        paragraphs.append(str(BUYER_NEXT.get(facts.get("state"), "")) or state_label(case))
        if note:
            paragraphs.append(note)
        paragraphs.append(gettext("You can rate how the case was handled on your case page."))
    else:
        raise ValueError(f"unknown notification kind {kind!r}")
    action = gettext("Open your case") if to_buyer else gettext("Open the case")
    return Message(subject, tuple(p for p in paragraphs if p), action, action_url)


def _digest(notification: Notification, action_url: str) -> Message:
    """The staff's daily list of refunds they pay by hand and have not paid yet."""
    shop = db.session.get(Shop, notification.shop_id)
    refunds = notification.facts.get("refunds") or []
    at = datetime.fromisoformat(notification.facts["at"])
    lines = []
    for refund in refunds:
        due = datetime.fromisoformat(refund["due_at"]) if refund.get("due_at") else None
        words = gettext("Case #%(case)s: %(amount)s, waiting since %(since)s", case=refund["case_id"],
                        amount=money_text(refund["amount"], refund["currency"]),
                        since=shop_time(datetime.fromisoformat(refund["since"]), shop.zone))
        if due is not None and due <= at:
            words = gettext("%(refund)s (overdue)", refund=words)
        lines.append(words)
    if notification.facts.get("more"):
        lines.append(gettext("… and more: see the queue."))
    subject = ngettext("%(num)d refund to pay by hand at %(shop)s", "%(num)d refunds to pay by hand at %(shop)s",
                       len(refunds), shop=shop.name)
    return Message(subject, tuple(lines), gettext("Open the refunds to pay"), action_url)


def label_for_state(state: Any) -> str:
    from .web.wording import STATE_LABELS, label

    return label(STATE_LABELS, state).lower() if state else ""
