"""Cross-border goods (跨境): a damaged box is not damaged goods, import tax follows the customs
window, cheap items need not travel back abroad, and returns get more time.

The rules in a shop owner's words, and every setting: docs/plugins/cross_border.md.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from aftersales import Adjustment, PluginTranslations, Reason, deny, hookimpl, require, setting, shop_time, waive

#: This plugin's words, in its own catalogs (plugins/translations, domain aftersales_cross_border).
TRANSLATIONS = PluginTranslations("aftersales_cross_border", Path(__file__).resolve().parent / "translations")
_, lazy_ = TRANSLATIONS.gettext, TRANSLATIONS.lazy_gettext

__version__ = "1.0.0"

#: Lines paid less than this (minor units) may be refunded without being sent back; 0 turns it off.
REFUND_ONLY_BELOW = 10000
#: Days the buyer has to ship a return, and the seller to confirm it arrived (core: 7 and 10).
BUYER_SHIP_DAYS = 15
SELLER_RECEIPT_DAYS = 30
#: Customs gives the import tax back only for a return declared within 30 days of customs
#: release and back at the bonded warehouse within 45 days of it.
CUSTOMS_DECLARE_DAYS = 30
CUSTOMS_ARRIVAL_DAYS = 45
#: Where returns go: "bonded_warehouse" (in the buyer's country) or "abroad".
RETURN_TO = "bonded_warehouse"
#: The address returns are sent to; "" keeps the shop's return address.
RETURN_ADDRESS = ""


@hookimpl
def aftersales_categories():
    return ["cross_border"]


@hookimpl
def aftersales_wording():
    return {"plugins": {"cross_border": lazy_("Cross-border goods: customs, import tax and damage")},
            "categories": {"cross_border": lazy_("Cross-border goods")}}


@hookimpl
def aftersales_reasons(category):
    return [Reason("package_damaged", lazy_("Only the outer package is damaged"), window="none")]


@hookimpl
def aftersales_eligibility(line, request):
    if request.reason == "package_damaged":
        return deny(_("A damaged outer box alone is no reason to return cross-border goods: it did its job "
                      "on a long journey. If the goods inside are damaged, choose \u201cArrived damaged\u201d "
                      "and add photos of the parcel and of the goods."), code="package_damaged")
    verdicts = []
    if request.reason == "damaged":
        verdicts.append(require("photos", 2, _("Add at least two photos: the parcel as it arrived, "
                                               "and the damaged goods.")))
    below = int(setting("AFTERSALES_CROSS_BORDER_REFUND_ONLY_BELOW", REFUND_ONLY_BELOW))
    if request.kind == "refund_only" and line.paid_amount < below:
        verdicts.append(waive("needs_return", _("Not worth shipping back abroad: refunded without a return.")))
    return verdicts


@hookimpl
def aftersales_workflow(flow):
    if not flow.has_state("awaiting_return"):  # refund_only: nothing is sent back
        return
    ship_days = int(setting("AFTERSALES_CROSS_BORDER_BUYER_SHIP_DAYS", BUYER_SHIP_DAYS))
    receipt_days = int(setting("AFTERSALES_CROSS_BORDER_SELLER_RECEIPT_DAYS", SELLER_RECEIPT_DAYS))
    flow.set_deadline("awaiting_return", after=timedelta(days=ship_days), trigger="withdraw")
    flow.set_deadline("return_shipped", after=timedelta(days=receipt_days), trigger="confirm_receipt")


@hookimpl
def aftersales_return_address(case, default):
    return setting("AFTERSALES_CROSS_BORDER_RETURN_ADDRESS", RETURN_ADDRESS) or None


@hookimpl
def aftersales_refund_adjustments(case, amount):
    tax, received = _import_tax(case), _received_at(case)
    if tax and received and _why_tax_stays_paid(case, received) is None:
        return [Adjustment("import_tax", tax, _("Import tax: returned within the customs window"))]
    return []


@hookimpl
def aftersales_case_notices(case, role):
    if case.is_terminal or case.kind not in ("refund_only", "return_refund"):
        return None
    if case.line.attribute("tax_included"):
        if role == "buyer":
            return [_("The price you paid included import tax (包税): the seller bears the tax, "
                      "so nothing is kept back from your refund for it.")]
        return [_("The price included import tax (包税): the shop bears it. The buyer's refund is counted "
                  "from the price paid, tax included, whatever customs gives back to the shop.")]
    if not _import_tax(case):
        return None
    why_not = _why_tax_stays_paid(case, datetime.now(timezone.utc))
    if why_not:
        return [_("The import tax stays paid and is not refunded: %(why)s", why=why_not)]
    if _received_at(case):
        return [_("The import tax is refunded with the goods: they were back within the customs window.")]
    by = _customs_release(case) + _arrival_window()
    return [_("The import tax is refunded with the goods only if they are back at the bonded warehouse "
              "by %(when)s; after that it stays paid.", when=shop_time(by, case.shop.zone))]


def _why_tax_stays_paid(case, now: datetime) -> str | None:
    """Why customs keeps the buyer's import tax on this case, or None while it can still come back."""
    if case.kind != "return_refund":
        return _("the goods are not sent back through customs.")
    if setting("AFTERSALES_CROSS_BORDER_RETURN_TO", RETURN_TO) == "abroad":
        return _("returns go back abroad, not to the bonded warehouse.")
    released = _customs_release(case)
    if released is None:
        return _("the date this item cleared customs is not known.")
    declare_days = int(setting("AFTERSALES_CROSS_BORDER_CUSTOMS_DECLARE_DAYS", CUSTOMS_DECLARE_DAYS))
    if case.created_at > released + timedelta(days=declare_days):
        return _("the return was asked for more than %(days)d days after the item cleared customs.", days=declare_days)
    if (_received_at(case) or now) > released + _arrival_window():
        return _("the goods were not back at the bonded warehouse within %(days)d days of clearing customs.",
                 days=_arrival_window().days)
    return None


def _import_tax(case) -> int:
    """The import tax the buyer paid on top of the price for the units of this case (0 for 包税)."""
    line = case.line  # tax_paid is 0 when the price included the tax
    units = case.received_quantity or case.quantity
    return line.tax_paid * units // line.quantity


def _customs_release(case) -> datetime | None:
    try:
        released = datetime.fromisoformat(case.line.attribute("customs_released_at") or "")
    except ValueError:  # missing or not a time: unknown, so the window cannot be shown to be met
        return None
    return released if released.tzinfo else released.replace(tzinfo=timezone.utc)


def _received_at(case) -> datetime | None:
    return case.entered_at("received")


def _arrival_window() -> timedelta:
    return timedelta(days=int(setting("AFTERSALES_CROSS_BORDER_CUSTOMS_ARRIVAL_DAYS", CUSTOMS_ARRIVAL_DAYS)))
