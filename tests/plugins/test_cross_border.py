"""The cross_border plugin (plugins/cross_border.py): every rule of docs/plugins/cross_border.md,
with the plugin on and off, through the services and through the pages.

Service tests run at the fixed NOW of tests/conftest.py. Page tests and the "told before
shipping" notices use the real clock, as the pages do, so their orders are dated from utcnow().
"""
from __future__ import annotations

import html
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Iterator

import pytest
from flask import g

from aftersales import services
from aftersales.eligibility import CaseRequest
from aftersales.errors import InvalidInput, NotEligible
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from aftersales.orders import ensure_shop
from aftersales.plugins import SHIPPED_PLUGINS_DIR
from aftersales.runtime import current
from aftersales.staff import create_staff
from tests.conftest import NOW, make_app, make_order, photos
from tests.web.conftest import PASSWORD, buyer_client, login
from tests.web.test_flows import (
    act_ok, ask, case_row, forms_on, mark_paid, opened_case_id, photo, request_url, state_text,
)

PRICE = 30000  # 300.00 CNY: above the default refund-only threshold (100.00)
CHEAP = 5900  # 59.00 CNY: below it
TAX = 2700  # import tax the buyer paid on top of PRICE (not part of the line's paid amount)
SHOP_ADDRESS = "1 Return Road"
WAREHOUSE = "Bonded warehouse 3, Free Trade Zone, Ningbo 315800"

ON = {"AFTERSALES_PLUGINS_DIR": str(SHIPPED_PLUGINS_DIR), "AFTERSALES_PLUGINS": "cross_border"}
OFF = {**ON, "AFTERSALES_DISABLED_PLUGINS": "cross_border"}


@contextmanager
def running(tmp_path, switch: dict = ON, **settings: Any) -> Iterator[Any]:
    """An app with the shipped cross_border plugin on (or off), inside its app context."""
    app = make_app(tmp_path, **switch, **settings)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def plugin_on(tmp_path):
    with running(tmp_path) as app:
        yield app


def cross_border_line(*, price: int = PRICE, quantity: int = 1, cleared_days_ago: float | None = 5,
                      now: datetime = NOW, **attributes: Any):
    """A cross-border line delivered two days ago, its import tax paid apart from the price
    (``tax_paid``), or inside it when ``tax_included``."""
    tax = attributes.pop("import_tax", TAX)
    if cleared_days_ago is not None:
        attributes.setdefault("customs_released_at", (now - timedelta(days=cleared_days_ago)).isoformat())
    order = make_order(category="cross_border", unit_price=price, quantity=quantity,
                       delivered=now - timedelta(days=2), attributes=attributes,
                       tax_paid=0 if attributes.get("tax_included") else tax)
    return order.lines[0]


def send_back(case_id: int, *, received: datetime = NOW, **receipt: Any) -> Case:
    """Approve, ship and receive a return (received at ``received``)."""
    services.act(case_id, "seller", "approve", now=NOW)
    services.act(case_id, "buyer", "ship_return", carrier="EMS", tracking_number="EE123456789CN", now=NOW)
    return services.act(case_id, "seller", "confirm_receipt", now=received, **receipt)


def refunded(case_id: int, at: datetime) -> Case:
    services.act(case_id, "seller", "refund", now=at)
    return db.session.get(Case, case_id)


def tax_adjustments(case: Case) -> list[Any]:
    """What the plugin answers when the case's refund is claimed."""
    answers = current().plugins.call("aftersales_refund_adjustments", case.category, case=case, amount=case.amount)
    return [adjustment for answer in answers for adjustment in answer or () if adjustment.code == "import_tax"]


def codes(verdict) -> list[str]:
    return [denial.code for denial in verdict.denials]


# === package damage and photos ======================================================================


def test_package_damage_alone_is_not_a_ground_for_return(plugin_on):
    line = cross_border_line()
    for kind in ("refund_only", "return_refund", "exchange"):
        verdict = services.judge(line, CaseRequest(kind, "package_damaged"), NOW)
        assert codes(verdict) == ["package_damaged"], kind
        assert "outer box alone is no reason" in verdict.messages[0]
        assert "Arrived damaged" in verdict.messages[0]  # tells the buyer what to choose instead
    with pytest.raises(NotEligible, match="outer box alone"):
        services.open_case(line.id, "return_refund", "package_damaged", evidence=photos(2), now=NOW)
    assert db.session.query(Case).count() == 0
    offered = services.line_eligibility(line, NOW).options
    assert all("package_damaged" not in option.reasons for option in offered.values())


def test_damaged_goods_need_two_photos_parcel_and_goods(plugin_on):
    line = cross_border_line()
    assert services.judge(line, CaseRequest("return_refund", "damaged"), NOW).requirement("photos") == 2
    with pytest.raises(InvalidInput, match="the parcel as it arrived, and the damaged goods") as error:
        services.open_case(line.id, "return_refund", "damaged", evidence=photos(1), now=NOW)
    assert error.value.field == "photos"
    case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    assert case.state == "requested" and len(case.evidence) == 2
    # Other faults keep the core's one photo.
    assert services.judge(line, CaseRequest("return_refund", "quality"), NOW).requirement("photos") == 1


# === import tax =====================================================================================


def test_import_tax_refunded_with_the_goods_within_the_customs_window(plugin_on):
    line = cross_border_line(cleared_days_ago=5)  # declared on day 5 after customs release
    case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    case = send_back(case.id, received=NOW + timedelta(days=39))  # back on day 44
    [tax] = tax_adjustments(case)
    assert tax.amount == TAX and "customs window" in tax.label
    case = refunded(case.id, NOW + timedelta(days=39))
    assert case.refunds[0].adjustments == [{"code": "import_tax", "amount": TAX, "label": tax.label}]


def test_import_tax_refund_reaches_the_buyer_on_top_of_the_price(plugin_on):
    line = cross_border_line(cleared_days_ago=5)
    case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    send_back(case.id, received=NOW + timedelta(days=10))
    assert refunded(case.id, NOW + timedelta(days=10)).refunds[0].amount == PRICE + TAX


def test_import_tax_refund_is_the_share_of_the_units_that_came_back(plugin_on):
    line = cross_border_line(quantity=3, price=10000, import_tax=900)
    case = services.open_case(line.id, "return_refund", "damaged", quantity=3, evidence=photos(2), now=NOW)
    case = send_back(case.id, received_quantity=2)
    assert [a.amount for a in tax_adjustments(case)] == [600]


def test_import_tax_stays_paid_when_the_return_is_declared_after_30_days(plugin_on):
    line = cross_border_line(cleared_days_ago=31)
    case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    case = send_back(case.id)
    assert tax_adjustments(case) == []
    assert refunded(case.id, NOW).refunds[0].adjustments == []
    [notice] = services.case_notices(case, "buyer")
    assert notice == ("The import tax stays paid and is not refunded: the return was asked for more than "
                      "30 days after the item cleared customs.")


def test_import_tax_stays_paid_when_the_goods_are_back_after_45_days(plugin_on):
    line = cross_border_line(cleared_days_ago=20)
    case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    case = send_back(case.id, received=NOW + timedelta(days=26))  # day 46 after customs release
    assert tax_adjustments(case) == []
    assert "not back at the bonded warehouse within 45 days" in services.case_notices(case, "seller")[0]


def test_customs_window_is_a_setting(tmp_path):
    with running(tmp_path, AFTERSALES_CROSS_BORDER_CUSTOMS_DECLARE_DAYS=60,
                 AFTERSALES_CROSS_BORDER_CUSTOMS_ARRIVAL_DAYS=90):
        line = cross_border_line(cleared_days_ago=50)
        case = services.open_case(line.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
        assert [a.amount for a in tax_adjustments(send_back(case.id))] == [TAX]


def test_import_tax_stays_paid_without_a_return_or_a_known_customs_release(plugin_on):
    kept = cross_border_line(price=CHEAP)
    case = services.open_case(kept.id, "refund_only", "no_reason", now=NOW)
    assert services.case_notices(case, "buyer") == [
        "The import tax stays paid and is not refunded: the goods are not sent back through customs."]
    unknown = cross_border_line(cleared_days_ago=None)
    case = send_back(services.open_case(unknown.id, "return_refund", "damaged", evidence=photos(2), now=NOW).id)
    assert tax_adjustments(case) == []
    assert "cleared customs is not known" in services.case_notices(case, "buyer")[0]
    garbled = cross_border_line(cleared_days_ago=None, customs_released_at="last Tuesday")
    case = services.open_case(garbled.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    assert "cleared customs is not known" in services.case_notices(case, "buyer")[0]


def test_buyer_is_told_before_shipping_whether_the_import_tax_comes_back(plugin_on):
    now = utcnow()
    late = cross_border_line(cleared_days_ago=31, now=now)
    case = services.open_case(late.id, "return_refund", "damaged", evidence=photos(2), now=now)
    case = services.act(case.id, "seller", "approve", now=now)
    assert case.state == "awaiting_return" and "ship_return" in services.allowed_triggers(case, "buyer", now)
    assert services.case_notices(case, "buyer")[0].startswith("The import tax stays paid and is not refunded")

    timely = cross_border_line(cleared_days_ago=5, now=now)
    case = services.open_case(timely.id, "return_refund", "damaged", evidence=photos(2), now=now)
    deadline = f"{now + timedelta(days=40):%Y-%m-%d %H:%M} Coordinated Universal Time"  # the shop is in UTC
    assert services.case_notices(case, "buyer") == [
        f"The import tax is refunded with the goods only if they are back at the bonded warehouse by {deadline}; "
        "after that it stays paid."]


def test_tax_included_price_means_the_merchant_bears_the_import_tax(plugin_on):
    """包税: the price paid (PRICE) contains the tax. The buyer's refund is the core's refund of the
    price paid, tax part included, whether or not customs gives the tax back; nothing is added or
    kept back for tax. A buyer who paid the tax on top, outside the window, gets the price only."""
    included = cross_border_line(cleared_days_ago=40, tax_included=True)  # far outside the window
    case = services.open_case(included.id, "return_refund", "damaged", evidence=photos(2), now=NOW)
    case = send_back(case.id)
    assert tax_adjustments(case) == []
    [buyer_notice], [seller_notice] = services.case_notices(case, "buyer"), services.case_notices(case, "seller")
    assert "the seller bears the tax" in buyer_notice and "stays paid" not in buyer_notice
    assert "the shop bears it" in seller_notice
    case = refunded(case.id, NOW)
    assert [(r.amount, r.adjustments) for r in case.refunds] == [(PRICE, [])]

    on_top = cross_border_line(cleared_days_ago=40)
    case = send_back(services.open_case(on_top.id, "return_refund", "damaged", evidence=photos(2), now=NOW).id)
    assert "stays paid" in services.case_notices(case, "buyer")[0]
    assert [r.amount for r in refunded(case.id, NOW).refunds] == [PRICE]  # the TAX stays paid


# === refund without a return ========================================================================


def test_low_value_line_may_be_refunded_without_a_return(plugin_on):
    cheap, dear = cross_border_line(price=CHEAP), cross_border_line(price=PRICE)
    assert services.judge(cheap, CaseRequest("refund_only", "no_reason"), NOW).allowed
    assert codes(services.judge(dear, CaseRequest("refund_only", "no_reason"), NOW)) == ["needs_return"]
    case = services.open_case(cheap.id, "refund_only", "no_reason", now=NOW)
    case = services.act(case.id, "seller", "approve", now=NOW)  # straight to the money: nothing travels
    assert case.return_address is None and [r.amount for r in case.refunds] == [CHEAP]
    assert [e.to_state for e in case.events] == ["requested", "refunding"]


def test_refund_only_threshold_is_a_setting_and_zero_turns_it_off(tmp_path):
    with running(tmp_path, AFTERSALES_CROSS_BORDER_REFUND_ONLY_BELOW=0):
        cheap = cross_border_line(price=CHEAP)
        assert codes(services.judge(cheap, CaseRequest("refund_only", "no_reason"), NOW)) == ["needs_return"]
    with running(tmp_path / "higher", AFTERSALES_CROSS_BORDER_REFUND_ONLY_BELOW=50000):
        assert services.judge(cross_border_line(price=PRICE), CaseRequest("refund_only", "no_reason"), NOW).allowed


# === deadlines and return address ===================================================================


def test_buyer_has_longer_to_ship_and_seller_longer_to_confirm_receipt(tmp_path):
    with running(tmp_path):
        flow = current().workflow("cross_border", "return_refund")
        assert flow.deadline("awaiting_return").after == timedelta(days=15)
        assert flow.deadline("return_shipped").after == timedelta(days=30)
        case = services.open_case(cross_border_line().id, "return_refund", "no_reason", now=NOW)
        case = services.act(case.id, "seller", "approve", now=NOW)
        assert (case.due_at, case.due_trigger) == (NOW + timedelta(days=15), "withdraw")
        case = services.act(case.id, "buyer", "ship_return", carrier="EMS", tracking_number="E1", now=NOW)
        assert (case.due_at, case.due_trigger) == (NOW + timedelta(days=30), "confirm_receipt")
        assert current().workflow("books", "return_refund").deadline("awaiting_return").after == timedelta(days=7)
    with running(tmp_path / "set", AFTERSALES_CROSS_BORDER_BUYER_SHIP_DAYS=21,
                 AFTERSALES_CROSS_BORDER_SELLER_RECEIPT_DAYS=40):
        flow = current().workflow("cross_border", "exchange")
        assert (flow.deadline("awaiting_return").after, flow.deadline("return_shipped").after) == \
            (timedelta(days=21), timedelta(days=40))


def test_return_address_is_the_bonded_warehouse_or_abroad_as_configured(tmp_path):
    with running(tmp_path):  # not configured: the shop's own return address
        case = services.open_case(cross_border_line().id, "return_refund", "no_reason", now=NOW)
        assert services.act(case.id, "seller", "approve", now=NOW).return_address == SHOP_ADDRESS
    with running(tmp_path / "bonded", AFTERSALES_CROSS_BORDER_RETURN_ADDRESS=WAREHOUSE):
        case = services.open_case(cross_border_line().id, "return_refund", "damaged", evidence=photos(2), now=NOW)
        case = send_back(case.id)
        assert case.return_address == WAREHOUSE and tax_adjustments(case) != []
    abroad = "Returns, 5 Harbour Street, Auckland 1010, New Zealand"
    with running(tmp_path / "abroad", AFTERSALES_CROSS_BORDER_RETURN_TO="abroad",
                 AFTERSALES_CROSS_BORDER_RETURN_ADDRESS=abroad):
        case = services.open_case(cross_border_line().id, "return_refund", "damaged", evidence=photos(2), now=NOW)
        case = send_back(case.id)
        assert case.return_address == abroad
        assert tax_adjustments(case) == []  # the goods never re-enter the bonded warehouse
        assert "returns go back abroad" in services.case_notices(case, "buyer")[0]


# === on and off =====================================================================================


def what_the_plugin_changes(line) -> dict[str, Any]:
    """Eligibility, workflow and notices of one cross-border line, in the app that is running."""
    flow = current().workflow("cross_border", "return_refund")
    seen = {
        "package_damaged": codes(services.judge(line, CaseRequest("return_refund", "package_damaged"), NOW)),
        "damaged_photos": services.judge(line, CaseRequest("return_refund", "damaged"), NOW).requirement("photos"),
        "refund_without_return": codes(services.judge(line, CaseRequest("refund_only", "no_reason"), NOW)),
        "days_to_ship": (flow.deadline("awaiting_return").after.days, flow.deadline("awaiting_return").origin),
        "days_to_confirm_receipt": flow.deadline("return_shipped").after.days,
    }
    case = services.open_case(line.id, "refund_only", "quality", evidence=photos(1), now=NOW)
    return seen | {"notices": len(services.case_notices(case, "buyer"))}


def test_the_same_line_gets_different_eligibility_and_workflow_with_the_plugin_on_and_off(tmp_path):
    seen = {}
    for name, switch in (("on", ON), ("off", OFF)):
        with running(tmp_path / name, switch):
            seen[name] = what_the_plugin_changes(cross_border_line(price=CHEAP))
    assert seen["on"] == {
        "package_damaged": ["package_damaged"], "damaged_photos": 2, "refund_without_return": [],
        "days_to_ship": (15, "cross_border"), "days_to_confirm_receipt": 30, "notices": 1,
    }
    assert seen["off"] == {
        "package_damaged": ["unknown_reason"], "damaged_photos": 1, "refund_without_return": ["needs_return"],
        "days_to_ship": (7, "core"), "days_to_confirm_receipt": 10, "notices": 0,
    }


def test_plugin_is_enabled_by_default_and_settings_turn_it_off(tmp_path):
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=None, AFTERSALES_LOAD_ENTRY_POINTS=True)  # the defaults: the shipped plugins, through their entry points
    with app.app_context():
        infos = {info.name: info for info in current().plugins.describe()}
        assert infos["cross_border"].categories == ("cross_border",)
        assert "package_damaged" in current().reasons("cross_border")
        assert "package_damaged" not in current().reasons("books")
    app = make_app(tmp_path / "off", AFTERSALES_PLUGINS_DIR=None, AFTERSALES_LOAD_ENTRY_POINTS=True, AFTERSALES_DISABLED_PLUGINS="cross_border")
    with app.app_context():
        assert "cross_border" not in {info.name for info in current().plugins.describe()}
        assert "package_damaged" not in current().reasons("cross_border")


def test_workflow_command_shows_the_longer_deadlines(tmp_path):
    def workflow_text(switch: dict) -> str:
        app = make_app(tmp_path / str(len(switch)), **switch)
        result = app.test_cli_runner().invoke(args=["aftersales", "workflow", "--category", "cross_border",
                                                    "--kind", "return_refund"])
        assert result.exit_code == 0, result.output
        return result.output

    assert "awaiting_return: after 15 d the system fires withdraw (cross_border)" in workflow_text(ON)
    assert "return_shipped: after 30 d the system fires confirm_receipt (cross_border)" in workflow_text(ON)
    assert "awaiting_return: after 7 d the system fires withdraw (core)" in workflow_text(OFF)


# === through the pages ==============================================================================


@pytest.fixture
def site(tmp_path):
    """Like tests/web/conftest.py's web_app, with the plugin on and a bonded warehouse configured."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, **ON,
                   AFTERSALES_CROSS_BORDER_RETURN_ADDRESS=WAREHOUSE)

    @app.before_request
    def _own_login_per_request():
        g.pop("_login_user", None)

    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address=SHOP_ADDRESS)
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        yield app
        db.session.remove()


def page_order(**line: Any):
    """A cross-border order as the pages see it now: delivered two days ago by the real clock."""
    order = cross_border_line(now=utcnow(), **line).order
    db.session.commit()
    return order


def test_request_page_wants_two_photos_for_damaged_goods_and_offers_no_package_damage(site):
    order = page_order()
    buyer = buyer_client(site, order)
    form = buyer.get(request_url(order, "return_refund")).text
    assert 'value="damaged"' in form and 'value="package_damaged"' not in form
    why = html.unescape(form)  # not offered, but explained: the buyer is told what to choose instead
    assert "Only the outer package is damaged:</strong> A damaged outer box alone is no reason" in why
    assert "choose \u201cArrived damaged\u201d" in why

    refused = ask(buyer, order, "return_refund", "damaged", description="Cracked bottle", evidence=[photo()])
    assert refused.status_code == 400
    assert "the parcel as it arrived, and the damaged goods" in refused.text
    assert db.session.query(Case).count() == 0

    case_id = opened_case_id(ask(buyer, order, "return_refund", "damaged", description="Cracked bottle",
                                 evidence=[photo("parcel.jpg"), photo("goods.jpg")]))
    assert len(case_row(case_id).evidence) == 2


def test_buyer_page_says_before_shipping_that_the_import_tax_stays_paid(site):
    order = page_order(cleared_days_ago=31)
    buyer = buyer_client(site, order)
    case_id = opened_case_id(ask(buyer, order, "return_refund", "damaged", evidence=[photo(), photo()]))
    seller = login(site, "seller@example.com")
    assert WAREHOUSE in seller.get(f"/seller/cases/{case_id}").text  # pre-filled on the approve form
    act_ok(seller, "seller", case_id, "approve", return_address=WAREHOUSE)

    page = buyer.get(f"/cases/{case_id}").text
    assert "ship_return" in forms_on(page) and WAREHOUSE in page
    notice = page.index("The import tax stays paid and is not refunded")
    assert notice < page.index('id="action-ship_return"')  # read above the shipping form
    assert "in 14 days 23 hours" in page  # the longer time to ship (core: 7 days)
    assert "if nothing happens: the request is withdrawn." in page  # the core's words for its own timer

    act_ok(buyer, "buyer", case_id, "ship_return", carrier="EMS", tracking_number="EE123456789CN")
    page = buyer.get(f"/cases/{case_id}").text
    assert "in 29 days 23 hours" in page and "if nothing happens: the return counts as received." in page
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")
    act_ok(seller, "seller", case_id, "refund")
    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded" and "Refund of CN¥300.00: refunded" in page


def test_cheap_item_is_refunded_without_a_return_through_the_pages(site):
    order = page_order(price=CHEAP)
    buyer = buyer_client(site, order)
    assert f'href="{request_url(order, "refund_only")}"' in buyer.get(f"/orders/{order.id}").text
    form = buyer.get(request_url(order, "refund_only")).text
    assert 'value="no_reason"' in form
    case_id = opened_case_id(ask(buyer, order, "refund_only", "no_reason", amount="59.00"))
    assert "not sent back through customs" in buyer.get(f"/cases/{case_id}").text

    seller = login(site, "seller@example.com")
    seller_page = seller.get(f"/seller/cases/{case_id}").text
    assert "approve" in forms_on(seller_page) and WAREHOUSE not in seller_page  # nothing to send back
    act_ok(seller, "seller", case_id, "approve")
    page = buyer.get(f"/cases/{case_id}").text
    assert "ship_return" not in forms_on(page) and "Refund of CN¥59.00: being paid" in page


def test_seller_page_says_the_shop_bears_the_tax_when_the_price_included_it(site):
    order = page_order(tax_included=True)
    buyer = buyer_client(site, order)
    case_id = opened_case_id(ask(buyer, order, "return_refund", "damaged", evidence=[photo(), photo()]))
    assert "the seller bears the tax" in buyer.get(f"/cases/{case_id}").text
    seller = login(site, "seller@example.com")
    assert "the shop bears it" in seller.get(f"/seller/cases/{case_id}").text


def test_pages_without_the_plugin_offer_no_refund_without_return(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, **OFF)
    with app.app_context():
        order = page_order(price=CHEAP)
        form = buyer_client(app, order).get(request_url(order, "refund_only")).text
        assert 'value="quality"' in form and 'value="no_reason"' not in form
        response = ask(buyer_client(app, order), order, "return_refund", "damaged", evidence=[photo()])
        assert response.status_code == 302  # one photo is enough without the plugin
        db.session.remove()
