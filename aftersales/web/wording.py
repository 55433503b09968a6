"""The words pages use for kinds, states, actions and deadlines, written for a first-time buyer.

Plugin states and triggers without an entry here are shown by their name in plain words.
"""
from __future__ import annotations

from typing import Any

from ..i18n import _, lazy_, money_text
from ..services import ORDER_CANCELLED

KIND_LABELS = {
    "refund_only": lazy_("Refund"),
    "return_refund": lazy_("Return and refund"),
    "exchange": lazy_("Exchange"),
    "repair": lazy_("Repair"),
}

#: The quick entries on an order page.
KIND_ENTRIES = {
    "refund_only": lazy_("I want a refund"),
    "return_refund": lazy_("I want to return it"),
    "exchange": lazy_("Exchange"),
    "repair": lazy_("Repair"),
}

STATE_LABELS = {
    "new": lazy_("New request"),
    "requested": lazy_("Waiting for the seller's answer"),
    "offer_pending": lazy_("The seller made an offer"),
    "counter_offered": lazy_("The buyer made a counter-offer"),
    "rejected": lazy_("Rejected by the seller"),
    "receipt_refused": lazy_("The seller refused a refund after receiving the goods"),
    "escalated": lazy_("The platform is deciding"),
    "awaiting_return": lazy_("Approved: waiting for the return to be shipped"),
    "return_shipped": lazy_("Return on its way to the seller"),
    "received": lazy_("Return received by the seller"),
    "replacement_shipped": lazy_("Replacement on its way"),
    "refunding": lazy_("Refund being paid"),
    "completed": lazy_("Completed"),
    "closed": lazy_("Closed without a remedy"),
    "cancelled": lazy_("Withdrawn"),
}

TRIGGER_LABELS = {
    "request": lazy_("Request sent"),
    "approve": lazy_("Approve"),
    "reject": lazy_("Reject"),
    "offer": lazy_("Offer a partial refund"),
    "withdraw": lazy_("Withdraw the request"),
    "revise": lazy_("Revise the request"),
    "escalate": lazy_("Ask the platform to decide"),
    "close": lazy_("Close"),
    "accept_offer": lazy_("Accept the offer"),
    "decline_offer": lazy_("Decline the offer"),
    "counter_offer": lazy_("Make a counter-offer"),
    "accept_counter": lazy_("Accept the counter-offer"),
    "ship_return": lazy_("I have shipped the return"),
    "confirm_receipt": lazy_("Confirm receipt of the return"),
    "refund": lazy_("Refund"),
    "ship_replacement": lazy_("Ship the replacement"),
    "dispute_goods": lazy_("Dispute the returned goods"),
    "ask_about_missing": lazy_("Ask the buyer about the missing units"),
    "answer_about_missing": lazy_("Answer the seller about the missing units"),
    "refuse_after_receipt": lazy_("Close without a refund"),
    "accept_refusal": lazy_("Accept and close the case"),
    "confirm_replacement": lazy_("I received the replacement"),
    "refund_succeeded": lazy_("Refund paid"),
    "decide": lazy_("Decide"),
    "refund_failed": lazy_("Refund failed"),
    "refund_settled": lazy_("Refund paid"),
    "refund_created": lazy_("Refund issued"),
    "express_refund": lazy_("Express refund: refunded on shipment"),
    "refund_retried": lazy_("Refund sent again"),
    "refund_cancelled": lazy_("Refund cancelled"),
    "shipping_fee_refund": lazy_("Shipping fee refunded"),
    "refund_resent": lazy_("Refund sent to the payment provider again"),
    "refund_send_failed": lazy_("The payment provider could not be reached"),
    "rate": lazy_("Rated the outcome"),
    "cancel_order": lazy_("Order cancelled: refund started"),
}

#: What a person reads once their step is done, in a full sentence.
DONE_MESSAGES = {
    "approve": lazy_("You approved the request; the buyer is told what comes next."),
    "reject": lazy_("You rejected the request; the buyer reads your reason."),
    "offer": lazy_("Your offer was sent to the buyer."),
    "withdraw": lazy_("Your request was withdrawn."),
    "revise": lazy_("Your revised request was sent to the seller."),
    "escalate": lazy_("The platform will look at your case."),
    "accept_offer": lazy_("You accepted the offer; the refund is on its way."),
    "decline_offer": lazy_("You declined the offer; the seller answers again."),
    "counter_offer": lazy_("Your counter-offer was sent to the seller."),
    "accept_counter": lazy_("You accepted the buyer's counter-offer; the refund is on its way."),
    "ship_return": lazy_("Thank you: the seller now waits for your parcel."),
    "confirm_receipt": lazy_("You confirmed that the return arrived."),
    "refund": lazy_("The refund was issued."),
    "ship_replacement": lazy_("The replacement is on its way to the buyer."),
    "dispute_goods": lazy_("The platform will look at the returned goods."),
    "ask_about_missing": lazy_("Your question was sent to the buyer."),
    "answer_about_missing": lazy_("Your answer was sent to the seller."),
    "refuse_after_receipt": lazy_("The case is closed without a refund unless the buyer asks the platform to decide."),
    "accept_refusal": lazy_("The case is closed."),
    "confirm_replacement": lazy_("Thank you: the case is finished."),
    "decide": lazy_("Your decision was recorded."),
}

#: The order's own workflow (aftersales/order_workflow.py), as buyers and staff read it.
ORDER_STATE_LABELS = {
    "pending_payment": lazy_("Waiting for payment"),
    "paid": lazy_("Paid: waiting to be picked"),
    "picking": lazy_("Being picked in the warehouse"),
    "packed": lazy_("Packed: waiting for the carrier"),
    "cancelling": lazy_("Cancellation asked: the warehouse is trying to stop it"),
    "shipped": lazy_("Shipped"),
    "delivered": lazy_("Delivered"),
    "cancelled": lazy_("Cancelled"),
}
ORDER_TRIGGER_LABELS = {
    "pay": lazy_("Paid"),
    "cancel": lazy_("Cancel the order"),
    "expire_unpaid": lazy_("Cancelled: not paid in time"),
    "start_picking": lazy_("Start picking"),
    "pack": lazy_("Packed"),
    "ship": lazy_("Shipped"),
    "intercept": lazy_("Stopped: the order is cancelled"),
    "too_late": lazy_("Too late to stop: it ships"),
    "deliver": lazy_("Delivered"),
}
CANCEL_REASON_LABELS = {
    "changed_mind": lazy_("I changed my mind"),
    "too_expensive": lazy_("It is too expensive"),
    "found_better": lazy_("I found a better offer"),
    "ordered_by_mistake": lazy_("I ordered it by mistake"),
    "other": lazy_("Another reason"),
    "unpaid": lazy_("Not paid in time"),
}

ACTOR_LABELS = {
    "buyer": lazy_("Buyer"),
    "seller": lazy_("Seller"),
    "platform": lazy_("Platform"),
    "system": lazy_("Automatic"),
    "warehouse": lazy_("Warehouse"),
}

#: What the system does when a state's deadline passes.
DEADLINE_OUTCOMES = {
    ("requested", "approve"): lazy_("the request is approved automatically"),
    ("rejected", "close"): lazy_("the case closes"),
    ("receipt_refused", "close"): lazy_("the case closes"),
    ("offer_pending", "decline_offer"): lazy_("the offer lapses and the seller answers again"),
    ("counter_offered", "accept_counter"): lazy_("the counter-offer is accepted automatically"),
    ("awaiting_return", "withdraw"): lazy_("the request is withdrawn"),
    ("return_shipped", "confirm_receipt"): lazy_("the return counts as received"),
    ("received", "refund"): lazy_("the refund is paid automatically"),
    ("replacement_shipped", "confirm_replacement"): lazy_("the replacement counts as received"),
}

#: What happens next, for the buyer, by state.
BUYER_NEXT = {
    "requested": lazy_("The seller looks at your request."),
    "offer_pending": lazy_("Accept the seller's offer, answer it with a counter-offer, or decline it and the seller answers again."),
    "counter_offered": lazy_("The seller answers your counter-offer: they accept it, offer again or reject it. "
                             "If they do not answer in time, your counter-offer is accepted."),
    "rejected": lazy_("You can revise your request, ask the platform to decide, or withdraw."),
    "receipt_refused": lazy_("The seller received the goods and refuses a refund; their reason is above. "
                             "Ask the platform to decide, or accept and close the case."),
    "escalated": lazy_("The platform reads both sides and decides."),
    "awaiting_return": lazy_("Send the item to the return address and enter the tracking number here."),
    "return_shipped": lazy_("The seller confirms when the return arrives."),
    "received": lazy_("The seller refunds you or ships the replacement."),
    "replacement_shipped": lazy_("Tell us when the replacement has arrived."),
    "refunding": lazy_("The refund goes back the way you paid."),
    "completed": lazy_("This case is finished."),
    "closed": lazy_("This case ended without a refund or replacement."),
    "cancelled": lazy_("This request was withdrawn."),
}

FIELD_LABELS = {
    "reason": lazy_("Reason"),
    "statement": lazy_("Your statement"),
    "description": lazy_("What is wrong"),
    "note": lazy_("Message"),
    "amount": lazy_("Amount"),
    "carrier": lazy_("Carrier"),
    "tracking_number": lazy_("Tracking number"),
    "received_quantity": lazy_("Units received"),
    "damaged_quantity": lazy_("Of which damaged"),
    "missing": lazy_("The units that did not arrive"),
    "return_address": lazy_("Return address"),
    "payer": lazy_("Who pays"),
    "goods": lazy_("The goods"),
    "evidence": lazy_("Photos"),
}

STAFF_PAYER_LABELS = {
    "buyer": lazy_("The buyer pays"),
    "seller": lazy_("We pay (seller)"),
    "insurer": lazy_("The buyer's shipping insurance pays"),
}

#: Staff's words for a refund: who bears its cost, and where it stands.
REFUND_PAYER_LABELS = {
    "seller": lazy_("paid by the shop"),
    "platform": lazy_("paid by the platform"),
}
REFUND_STATUS_LABELS = {
    "pending": lazy_("waiting to be paid"),
    "succeeded": lazy_("paid"),
    "failed": lazy_("failed"),
    "cancelled": lazy_("cancelled"),
}

PAYER_LABELS = {
    "buyer": lazy_("You pay the return shipping"),
    "seller": lazy_("The seller pays the return shipping"),
    "insurer": lazy_("Your shipping insurance pays the return shipping"),
}


#: Who sent a photo, for its description.
UPLOADER_LABELS = {
    "buyer": lazy_("Photo from the buyer"),
    "seller": lazy_("Photo from the seller"),
    "platform": lazy_("Photo from the platform"),
    "system": lazy_("Photo"),
}

#: What the core conditions of the workflow table check, in words.
CONDITION_LABELS = {
    "nothing_shipped": lazy_("nothing of the order has shipped"),
    "within_window": lazy_("before the deadline"),
    "decision_refunds": lazy_("the decision refunds money"),
    "decision_refunds_nothing": lazy_("the decision refunds nothing"),
    "offers_left": lazy_("the seller has offers left"),
    "counter_offers_left": lazy_("the buyer has counter-offers left"),
    "goods_come_back": lazy_("the buyer sends the goods back first"),
    "goods_stay": lazy_("the buyer keeps the goods (or they are already back)"),
    "damaged_to_dispute": lazy_("units arrived damaged and the shop sends them to the platform"),
    "nothing_to_dispute": lazy_("no damaged units for the platform"),
    "units_missing": lazy_("units announced did not arrive"),
}

#: Names of common categories; plugins name theirs (aftersales_wording "categories"). A
#: category nobody names is shown as the shop wrote it.
CATEGORY_LABELS = {
    "general": lazy_("General goods"),
    "books": lazy_("Books"),
    "clothing": lazy_("Clothing"),
    "shoes": lazy_("Shoes"),
    "beauty": lazy_("Beauty"),
    "food": lazy_("Food"),
    "toys": lazy_("Toys"),
    "home": lazy_("Home"),
    "kitchen": lazy_("Kitchen"),
}


def plain(name: str) -> str:
    return name.replace("_", " ").capitalize()


#: Which plugin wording section extends which table (aftersales_wording).
_PLUGIN_SECTIONS = {id(STATE_LABELS): "states", id(TRIGGER_LABELS): "triggers", id(BUYER_NEXT): "buyer_next",
                    id(ACTOR_LABELS): "actors",
                    id(CONDITION_LABELS): "conditions", id(CATEGORY_LABELS): "categories"}


def label(table: dict[Any, Any], key: Any) -> str:
    """The core's words for ``key``, else a plugin's, else the name in plain words."""
    value = table.get(key)
    if value is None and id(table) in _PLUGIN_SECTIONS:
        value = _plugin_words(_PLUGIN_SECTIONS[id(table)]).get(key)
    return str(value) if value is not None else plain(str(key))


def category_label(category: str) -> str:
    """A category's name for people (core or plugin words); otherwise as the shop wrote it."""
    value = CATEGORY_LABELS.get(category) or _plugin_words("categories").get(category)
    return str(value) if value is not None else category


def plugin_title(name: str) -> str:
    """A plugin's title in the reader's language, else its name in plain words."""
    value = _plugin_words("plugins").get(name)
    return str(value) if value is not None else plain(name)


def event_note(event: Any) -> str:
    """What a timeline entry says: a note a timer wrote is said in the reader's language (it is
    stored as the catalogs' English msgid; older ones in whatever language the timer ran in)."""
    from ..i18n import _
    from ..services import system_note

    if event.actor_type == "system":
        message = system_note(event.trigger)
        if message is not None and event.note:
            return _(message)
    return event.note or ""


def done_message(trigger: str, action_label: str) -> str:
    """The sentence after a step: its own, else "Done: <the button>."."""
    from ..i18n import _

    message = DONE_MESSAGES.get(trigger)
    return str(message) if message is not None else _("Done: %(action)s.", action=action_label)


def deadline_outcome(state: str, trigger: str) -> str:
    """What the system does when the timer of ``state`` fires ``trigger``, in words."""
    value = DEADLINE_OUTCOMES.get((state, trigger)) or _plugin_words("deadline_outcomes").get(trigger)
    if value is None:
        value = lazy_("the system does: %(action)s", action=label(TRIGGER_LABELS, trigger).lower())
    return str(value)


def _plugin_words(section: str) -> dict[str, Any]:
    from ..runtime import current

    return current().wording()[section]


def state_label(case: Any) -> str:
    """The state in words; a completed case says what the remedy was."""
    if case.state == "completed":
        if any(refund.status == "succeeded" for refund in case.refunds):
            return str(lazy_("Refunded"))
        if case.entered_at("replacement_shipped") is not None:
            return str(lazy_("Completed: the replacement arrived"))
    return label(STATE_LABELS, case.state)


def reason_label(case: Any) -> str:
    """The reason as the request form named it (core or plugin reason)."""
    from ..runtime import current

    if case.reason == ORDER_CANCELLED:
        return str(lazy_("The order was cancelled"))
    reason = current().reasons(case.category).get(case.reason)
    return str(reason.label) if reason is not None else plain(case.reason)


def decision_words(case: Any) -> str | None:
    """The platform's decision as the buyer reads it beside the state, or None before one."""
    data = case.data or {}
    if "decided_amount" not in data:
        return None
    amount = int(data["decided_amount"])
    if amount == 0:
        return _("The platform decided that no refund is owed.")
    money = money_text(amount, case.currency)
    if data.get("decided_goods") == "return":
        return _("The platform decided: a refund of %(amount)s once the item is back with the seller. "
                 "Send it back to the address below.", amount=money)
    if data.get("decided_goods") == "keep":
        return _("The platform decided: a refund of %(amount)s, and you keep the item.", amount=money)
    return _("The platform decided: a refund of %(amount)s for the returned item.", amount=money)


def negotiation_rounds(case: Any) -> str | None:
    """How many offers each side has made and may still make, once a negotiation started."""
    from flask import current_app

    data = case.data or {}
    offers, counters = int(data.get("offers", 0) or 0), int(data.get("counter_offers", 0) or 0)
    if not offers:
        return None
    limit = int(current_app.config.get("AFTERSALES_NEGOTIATION_ROUNDS", 3))
    return _("Offers so far: %(offers)d of %(limit)d from the seller, %(counters)d of %(limit)d counter-offers "
             "from the buyer.", offers=offers, counters=counters, limit=limit)
