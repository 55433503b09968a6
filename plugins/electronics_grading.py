"""Electronics: returns are graded on arrival, faults follow the 三包 windows, cosmetic defects are
claimed within hours of delivery.

The rules in a shop owner's words, and every setting: docs/plugins/electronics_grading.md.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from aftersales import Adjustment, Condition, FormField, PluginTranslations, Reason, deny, hookimpl, setting, waive

#: This plugin's words, in its own catalogs (plugins/translations, domain aftersales_electronics_grading).
TRANSLATIONS = PluginTranslations("aftersales_electronics_grading", Path(__file__).resolve().parent / "translations")
_, lazy_ = TRANSLATIONS.gettext, TRANSLATIONS.lazy_gettext

__version__ = "1.0.0"

#: Percent of the refund kept as a restocking fee, per grade of an intact no-reason return.
#: Chinese law allows none. Grade C is settled by an offer the buyer accepts; D is a fault.
RESTOCKING_RATES = {"A": 0, "B": 0}
#: 三包: a fault is refunded within 7 days of delivery, exchanged within 15, repaired under warranty.
FAULT_RETURN_DAYS = 7
FAULT_EXCHANGE_DAYS = 15
#: After this many repairs of a line, a fault is exchanged even after the exchange window.
FAILED_REPAIRS = 2
#: Cosmetic defects are claimed within these hours of delivery.
COSMETIC_HOURS_PORTABLE = 48
COSMETIC_HOURS_FIXED = 72

GRADES = {
    "A": lazy_("A: sealed"),
    "B": lazy_("B: opened or tested, intact"),
    "C": lazy_("C: cosmetic wear or missing accessory, not intact"),
    "D": lazy_("D: functional fault"),
}
INTACT = ("A", "B")
COSMETIC = "cosmetic_defect"
#: The core reasons that claim a fault in the goods: here they follow the 三包 windows.
FAULTS = ("quality", "not_as_described", "damaged", "wrong_item", "missing_part")
#: What pages call this plugin's states, steps and timers (the core words its own).
WORDING = {
    "plugins": {"electronics_grading": lazy_("Electronics: quality grading of returns")},
    "categories": {"electronics": lazy_("Electronics")},
    "conditions": {
        "grade_c_no_reason": lazy_("worn or incomplete, returned without a fault"),
        "intact_or_seller_fault": lazy_("intact, or the fault is the seller's"),
        "graded": lazy_("the grade is recorded"),
        "not_graded": lazy_("no grade recorded yet"),
    },
    "states": {
        "inspecting": lazy_("Return received: being inspected"),
        "not_intact": lazy_("Inspected: the item came back worn or incomplete"),
    },
    "triggers": {
        "record_grade": lazy_("Record the grade"),
        "send_back": lazy_("Send the item back to the buyer"),
    },
    "buyer_next": {
        "inspecting": lazy_("The seller inspects the item. Sealed items and items opened or tested but intact are "
                            "refunded in full; worn or incomplete ones are not."),
        "not_intact": lazy_("The no-reason refund does not apply. The seller offers a refund with a deduction, "
                            "which you may accept or decline, or sends the item back to you."),
    },
    "deadline_outcomes": {
        "refund": lazy_("the return is refunded in full"),
    },
}


def _setting(name: str, default):
    return setting(f"AFTERSALES_ELECTRONICS_GRADING_{name}", default)


@hookimpl
def aftersales_categories():
    return ["electronics"]


@hookimpl
def aftersales_reasons():
    return [Reason(COSMETIC, lazy_("Scratch, dent or other cosmetic defect"), seller_fault=True, photos=1,
                   window="none")]


@hookimpl
def aftersales_eligibility(line, request, now):
    if request.reason == COSMETIC:
        return _cosmetic_window(line, now)
    if request.reason in FAULTS and request.kind in ("return_refund", "exchange"):
        return [waive("quality_window"), *_fault_windows(line, request.kind, now)]  # 三包 replaces it
    return None


def _cosmetic_window(line, now):
    portable = line.attribute("portable")
    hours = int(_setting("COSMETIC_HOURS_PORTABLE", COSMETIC_HOURS_PORTABLE) if portable
                else _setting("COSMETIC_HOURS_FIXED", COSMETIC_HOURS_FIXED))
    if (line.hours_since_delivery(now) or 0) > hours:
        return deny(_("Cosmetic defects must be reported within %(hours)d hours of delivery.", hours=hours),
                    code="cosmetic_window")
    return None


def _fault_windows(line, kind, now):
    days = line.days_since_delivery(now) or 0
    if kind == "return_refund":
        limit = int(_setting("FAULT_RETURN_DAYS", FAULT_RETURN_DAYS))
        if days > limit:
            return [deny(_("A fault found more than %(days)d days after delivery is exchanged or repaired, "
                           "not refunded.", days=limit), code="fault_return_window")]
    else:
        limit = int(_setting("FAULT_EXCHANGE_DAYS", FAULT_EXCHANGE_DAYS))
        if days > limit and not _repaired_too_often(line, days):
            return [deny(_("A fault found more than %(days)d days after delivery is repaired, not exchanged.",
                           days=limit), code="fault_exchange_window")]
    return []


def _repaired_too_often(line, days):
    """三包: a device whose repairs did not last is exchanged, still within its warranty."""
    repairs = sum(1 for case in line.cases if case.kind == "repair" and case.state == "completed")
    warranty = int(line.attribute("warranty_days", setting("AFTERSALES_WARRANTY_DAYS", 365)))
    return repairs >= int(_setting("FAILED_REPAIRS", FAILED_REPAIRS)) and days <= warranty


def _worn_without_reason(context):
    return context.data.get("grade") == "C" and context.case.reason == "no_reason"


NOT_INTACT = Condition("grade_c_no_reason", _worn_without_reason, uses_input=True)
REFUND_DUE = Condition("intact_or_seller_fault", lambda context: not _worn_without_reason(context),
                       uses_input=True)
GRADED = Condition("graded", lambda context: "grade" in (context.case.data or {}))
NOT_GRADED = Condition("not_graded", lambda context: "grade" not in (context.case.data or {}))


@hookimpl
def aftersales_workflow(flow):
    if flow.kind != "return_refund":
        return
    refund_days = timedelta(days=flow.settings["AFTERSALES_SELLER_REFUND_DAYS"])
    grade = {"trigger": "record_grade", "requires": ["grade"], "accepts": ["inspection_notes", "evidence"]}
    # Confirming receipt puts the return on the inspection bench; a silent shop still refunds in time.
    flow.add_state("inspecting")
    flow.redirect("return_shipped", "confirm_receipt", to="inspecting")
    flow.remove_state("received")
    flow.add("inspecting", actor="seller", next="refunding", conditions=[REFUND_DUE], **grade)
    flow.add("inspecting", actor="seller", next="not_intact", conditions=[NOT_INTACT], **grade)
    flow.add("inspecting", actor="seller", trigger="dispute_goods", next="escalated", requires=["reason", "evidence"])
    flow.add("inspecting", actor="system", trigger="refund", next="refunding")
    flow.set_deadline("inspecting", after=refund_days, trigger="refund")
    # Not intact: a refund with a deduction the buyer accepts, or the item goes back to the buyer.
    flow.add_state("not_intact")
    flow.add("not_intact", actor="seller", trigger="offer", next="offer_pending", requires=["amount"], accepts=["note"])
    flow.add("not_intact", actor="seller", trigger="send_back", next="closed",
             requires=["carrier", "tracking_number"])
    flow.add("not_intact", actor="system", trigger="refund", next="refunding")
    flow.set_deadline("not_intact", after=refund_days, trigger="refund")
    # The shop holds the item once graded: a declined offer goes back to it, the buyer cannot withdraw.
    flow.replace("offer_pending", "decline_offer", conditions=[NOT_GRADED])
    flow.replace("offer_pending", "withdraw", conditions=[NOT_GRADED])
    # A deduction is the grade's, not a bargain: a graded offer is accepted or declined.
    for row in flow.find("offer_pending", "counter_offer"):
        flow.replace("offer_pending", "counter_offer", actor=row.actor, conditions=[*row.conditions, NOT_GRADED])
    flow.add("offer_pending", actor="buyer", trigger="decline_offer", next="not_intact", conditions=[GRADED])
    flow.add("offer_pending", actor="system", trigger="decline_offer", next="not_intact", conditions=[GRADED])


@hookimpl
def aftersales_check_action(trigger, data):
    if trigger == "record_grade" and data.get("grade") not in GRADES:
        return _("Choose a grade: A, B, C or D.")
    return None


@hookimpl
def aftersales_form_fields(trigger):
    if trigger != "record_grade":
        return []
    return [FormField("grade", lazy_("Grade"), "choice", required=True, choices=tuple(GRADES.items())),
            FormField("inspection_notes", lazy_("Inspection notes"), "textarea")]


@hookimpl
def aftersales_refund_adjustments(case, amount):
    grade = (case.data or {}).get("grade")
    if case.reason != "no_reason" or grade not in INTACT:
        return []
    rate = int(_setting("RESTOCKING_RATES", RESTOCKING_RATES).get(grade, 0))
    fee = amount * rate // 100
    if not fee:
        return []
    return [Adjustment("restocking_fee", -fee, _("Restocking fee, grade %(grade)s (%(rate)d%%)",
                                                   grade=grade, rate=rate))]


@hookimpl
def aftersales_wording():
    return WORDING


@hookimpl
def aftersales_case_notices(case):
    """What the case data says: the grade and notes, and where the item went back."""
    data = case.data or {}
    notices = []
    if data.get("grade") in GRADES:
        notes = data.get("inspection_notes")
        notices.append(" ".join(filter(None, [_("Inspection grade %(grade)s.", grade=GRADES[data["grade"]]), notes])))
    if data.get("tracking_number") and case.state == "closed":
        notices.append(_("Sent back to the buyer: %(carrier)s %(tracking)s.", carrier=data.get("carrier", ""),
                         tracking=data["tracking_number"]))
    return notices
