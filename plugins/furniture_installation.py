"""Furniture: assembled or made-to-measure pieces have no no-reason return, an installer visits
before anything is carried out of the house, and large pieces are collected, not posted.

The rules in a shop owner's words, and every setting: docs/plugins/furniture_installation.md.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from aftersales import Condition, FormField, PluginTranslations, Reason, deny, hookimpl, setting, waive

#: This plugin's words, in its own catalogs (plugins/translations, domain aftersales_furniture_installation).
TRANSLATIONS = PluginTranslations("aftersales_furniture_installation", Path(__file__).resolve().parent / "translations")
_, lazy_ = TRANSLATIONS.gettext, TRANSLATIONS.lazy_gettext

__version__ = "1.0.0"

#: Scratches, dents and stains must be reported this many hours after delivery.
SURFACE_DAMAGE_HOURS = 48
#: For damage and installation complaints the seller answers (usually: books a visit) this fast;
#: if the seller stays silent, the request is approved automatically.
VISIT_RESPONSE_HOURS = 24
#: A visit or pickup is booked at most this many days ahead; two more days to record how it went.
APPOINTMENT_DAYS = 7

#: Complaints an installer looks at in the buyer's home before anything else happens.
VISIT_REASONS = frozenset({"damaged", "surface_damage", "installation_damage"})
VISIT_RESULTS = (
    ("repaired", lazy_("Repaired on site")),
    ("needs_replacement", lazy_("Needs a replacement")),
    ("needs_refund", lazy_("Needs a refund")),
)

NEEDS_VISIT = Condition("damage_or_installation_complaint", lambda c: c.case.reason in VISIT_REASONS)
LARGE_ITEM = Condition("large_item", lambda c: bool(c.case.line.attribute("large_item")))
SENT_BY_PARCEL = Condition("not_large_item", lambda c: not c.case.line.attribute("large_item"))
REPAIRED = Condition("repaired_on_site", lambda c: c.data.get("visit_result") == "repaired", uses_input=True)
NOT_REPAIRED = Condition("not_repaired_on_site", lambda c: c.data.get("visit_result") != "repaired", uses_input=True)

FORM_FIELDS = {
    "request": [
        FormField("preferred_visit_dates", lazy_("Good days and times for a visit or pickup"),
                  help=lazy_("For example: weekday evenings, or Saturday morning.")),
        FormField("floor", lazy_("Floor"), "number"),
        FormField("lift_access", lazy_("There is a lift the piece fits in"), "checkbox"),
    ],
    "schedule_visit": [
        FormField("visit_date", lazy_("Visit date"), "date", required=True),
        FormField("installer_name", lazy_("Installer"), required=True),
    ],
    "record_visit": [
        FormField("visit_result", lazy_("What the installer found"), "choice", required=True, choices=VISIT_RESULTS),
        FormField("visit_report", lazy_("Installer's report"), "textarea"),
    ],
    "schedule_pickup": [FormField("pickup_date", lazy_("Pickup date"), "date", required=True)],
}

#: What pages call this plugin's states, steps and timers (the core words its own).
WORDING = {
    "plugins": {"furniture_installation": lazy_("Furniture: installer visits and pickups")},
    "categories": {"furniture": lazy_("Furniture")},
    "actors": {"installer": lazy_("Installer")},
    "conditions": {
        "damage_or_installation_complaint": lazy_("the complaint is about damage or the installation"),
        "large_item": lazy_("the piece is large (collected, not posted)"),
        "not_large_item": lazy_("the piece is sent by parcel"),
        "repaired_on_site": lazy_("the installer repaired it on site"),
        "not_repaired_on_site": lazy_("the installer could not repair it on site"),
    },
    "states": {
        "visit_scheduled": lazy_("An installer visit is booked"),
        "inspected_on_site": lazy_("The installer has visited: waiting for the seller's decision"),
        "pickup_scheduled": lazy_("Approved: the piece will be collected from your home"),
    },
    "triggers": {
        "schedule_visit": lazy_("Book an installer visit"),
        "record_visit": lazy_("Record what the installer found"),
        "schedule_pickup": lazy_("Book the pickup"),
    },
    "buyer_next": {
        "visit_scheduled": lazy_("Our installer looks at the piece in your home and repairs it there if possible."),
        "inspected_on_site": lazy_("The seller answers your request now that the installer has seen the piece."),
        "pickup_scheduled": lazy_("The shop collects the piece from your home: you don't ship it."),
    },
    "deadline_outcomes": {
        "approve": lazy_("the request is approved automatically"),
        "confirm_receipt": lazy_("the piece counts as collected"),
    },
}


@hookimpl
def aftersales_categories():
    return ["furniture"]


@hookimpl
def aftersales_reasons():
    photos = max(1, int(setting("AFTERSALES_MIN_PHOTOS_FOR_FAULTS", 1)))
    return [
        Reason("surface_damage", lazy_("Scratches, dents or stains on the surface"), seller_fault=True, photos=photos),
        Reason("installation_damage", lazy_("Damaged during installation"), seller_fault=True, photos=photos),
    ]


@hookimpl
def aftersales_eligibility(line, request, now):
    # Custom-made pieces need nothing here: the core already refuses their no-reason return.
    verdicts = []
    if request.reason == "no_reason" and line.attribute("installed"):
        verdicts.append(deny(_("Furniture assembled in your home has no 7-day no-reason return; installation "
                               "damage and quality faults are still covered."), code="installed"))
    if request.reason == "installation_damage" and not line.attribute("installed"):
        verdicts.append(deny(_("This piece was not assembled by our installer; choose another reason."),
                             code="not_installed"))
    if request.reason == "surface_damage":
        hours = _number("SURFACE_DAMAGE_HOURS", SURFACE_DAMAGE_HOURS)
        if (line.hours_since_delivery(now) or 0) > hours:
            verdicts.append(deny(_("Scratches, dents and stains must be reported within %(hours)d hours of "
                                   "delivery.", hours=hours), code="surface_damage_window"))
    if request.kind == "repair":
        verdicts.extend(_warranty_from_installation(line, now))
    return verdicts


@hookimpl
def aftersales_workflow(flow):
    flow.add_actor("installer", played_by="seller")
    if flow.has_state("awaiting_return"):  # goods come back: large pieces are collected instead
        flow.add_state("pickup_scheduled")
        flow.replace("requested", "approve", conditions=[SENT_BY_PARCEL])
        flow.add("requested", actor="seller", trigger="schedule_pickup", next="pickup_scheduled",
                 conditions=[LARGE_ITEM], requires=["pickup_date"])
        flow.add("requested", actor="system", trigger="approve", next="pickup_scheduled", conditions=[LARGE_ITEM])
        flow.add("pickup_scheduled", actor="seller", trigger="confirm_receipt", next="received",
                 accepts=["received_quantity"])
        flow.add("pickup_scheduled", actor="system", trigger="confirm_receipt", next="received")
        flow.add("pickup_scheduled", actor="buyer", trigger="withdraw", next="cancelled")
        flow.set_deadline("pickup_scheduled", after=_appointment_deadline(), trigger="confirm_receipt")

    flow.add_state("visit_scheduled")
    flow.add_state("inspected_on_site")
    # After the visit the seller has every choice of a fresh request, except booking another visit.
    for row in flow.find("requested"):
        _copy(flow, row, "inspected_on_site")
    flow.add("requested", actor="seller", trigger="schedule_visit", next="visit_scheduled",
             conditions=[NEEDS_VISIT], requires=["visit_date", "installer_name"])
    for result, next_state in ((REPAIRED, "completed"), (NOT_REPAIRED, "inspected_on_site")):
        flow.add("visit_scheduled", actor="installer", trigger="record_visit", next=next_state,
                 conditions=[result], requires=["visit_result"], accepts=["visit_report"])
    flow.add("visit_scheduled", actor="buyer", trigger="withdraw", next="cancelled")
    for row in flow.find("requested", "approve", "system"):  # no result recorded in time
        _copy(flow, row, "visit_scheduled")
    flow.set_deadline("visit_scheduled", after=_appointment_deadline(), trigger="approve")
    flow.set_deadline("inspected_on_site", after=timedelta(hours=int(setting("AFTERSALES_SELLER_RESPONSE_HOURS", 48))),
                      trigger="approve")


@hookimpl
def aftersales_deadline(case, state):
    if state == "requested" and case.reason in VISIT_REASONS:
        return timedelta(hours=_number("VISIT_RESPONSE_HOURS", VISIT_RESPONSE_HOURS))
    return None


@hookimpl
def aftersales_check_action(case, trigger, data, now):
    if trigger == "record_visit" and data.get("visit_result") not in dict(VISIT_RESULTS):
        return _("Say what the installer found: repaired on site, needs a replacement or needs a refund.")
    if trigger in ("schedule_visit", "schedule_pickup"):
        return _appointment_problem(case, data.get("visit_date") or data.get("pickup_date"), now)
    return None


@hookimpl
def aftersales_shipping_payer(line):
    if line.attribute("large_item") and line.attribute("delivery_and_installation"):
        return "seller"  # sold with delivery and installation: collecting it is free for the buyer
    return None


@hookimpl
def aftersales_form_fields(trigger):
    return FORM_FIELDS.get(trigger, [])


@hookimpl
def aftersales_wording():
    return WORDING


@hookimpl
def aftersales_case_notices(case, role):
    """What the case data says (the state's own words come from aftersales_wording)."""
    data, notices = case.data or {}, []
    if case.state == "visit_scheduled":
        notices.append(_("%(installer)s, our installer, visits on %(day)s.", installer=data["installer_name"],
                         day=data["visit_date"]))
    if data.get("visit_result"):
        result = _("On-site result: %(result)s.", result=dict(VISIT_RESULTS)[data["visit_result"]])
        notices.append(f"{result} {data.get('visit_report', '')}".strip())
    if case.state == "pickup_scheduled" and data.get("pickup_date"):
        notices.append(_("Pickup day: %(day)s.", day=data["pickup_date"]))
    if role == "seller" and not case.is_terminal and data.keys() & {f.name for f in FORM_FIELDS["request"]}:
        notices.append(_("From the buyer: floor %(floor)s, %(lift)s; good times: %(times)s.",
                         floor=data.get("floor", "?"), lift=_("a lift") if data.get("lift_access") else _("no lift"),
                         times=data.get("preferred_visit_dates") or "?"))
    return notices


def _copy(flow, row, state):
    """The same row, leaving ``state`` instead."""
    flow.add(state, actor=row.actor, trigger=row.trigger, next=row.dest, conditions=row.conditions,
             requires=row.requires, accepts=row.accepts)


def _number(name, default):
    return int(setting(f"AFTERSALES_FURNITURE_INSTALLATION_{name}", default))


def _appointment_deadline():
    return timedelta(days=_number("APPOINTMENT_DAYS", APPOINTMENT_DAYS) + 2)


def _appointment_problem(case, value, now):
    """A visit or pickup day is today or within APPOINTMENT_DAYS after it, in the shop's calendar."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return _("Give the appointment day as a date, e.g. 2026-11-28.")
    first = now.astimezone(case.shop.zone).date()
    last = first + timedelta(days=_number("APPOINTMENT_DAYS", APPOINTMENT_DAYS))
    if not first <= day <= last:
        return _("Choose an appointment day from %(first)s to %(last)s.", first=first.isoformat(),
                 last=last.isoformat())
    return None


def _warranty_from_installation(line, now):
    """The core counts the warranty from delivery; for an installed piece it runs from installation."""
    try:
        installed = datetime.fromisoformat(str(line.attribute("installed_at")))
    except ValueError:
        return []  # no (readable) installation date: the core's rule stands
    zone = line.order.shop.zone  # calendar days in the shop's time zone, as the core counts delivery
    installed = installed if installed.tzinfo else installed.replace(tzinfo=zone)
    days = (now.astimezone(zone).date() - installed.astimezone(zone).date()).days
    warranty = int(line.attribute("warranty_days", setting("AFTERSALES_WARRANTY_DAYS", 365)))
    verdicts = [waive("warranty_expired")]
    if days > warranty:
        verdicts.append(deny(_("The %(days)d-day warranty, counted from installation, has ended.", days=warranty),
                             code="warranty_expired"))
    return verdicts
