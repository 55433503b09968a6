"""Electronics returns in Chromium (plugins/electronics_grading.py): a phone returned without a
reason is graded on arrival; grade C (worn, charger missing) is not intact, so the shop offers a
refund with a deduction, the buyer accepts it and is refunded that amount. A grade A return
still fits the seller's click budget of DESIGN §1.

The app runs on a real port with the shipped electronics_grading plugin on; ``live_shop`` below
replaces the base shop of tests/e2e/conftest.py for this module (the other fixtures are reused).
"""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from aftersales.extensions import db
from aftersales.models import utcnow
from aftersales.orders import LineInput

from .conftest import LiveShop, Person, RETURN_ADDRESS, Screenshots, plugin_shop_app, serving, skip_without_browser, walk_screenshots

skip_without_browser()

from playwright.sync_api import expect  # noqa: E402

from tests.conftest import make_order  # noqa: E402

PHONE = "Smartphone X 256 GB"
SELLER_CLICK_BUDGET = 6


@pytest.fixture
def live_shop(tmp_path: Path) -> Iterator[LiveShop]:
    """An electronics shop with the plugin on and a phone delivered a day ago."""
    app = plugin_shop_app(tmp_path, "Volt Electronics", RETURN_ADDRESS, "electronics_grading")
    with app.app_context():
        order = make_order(shop="shop", delivered=utcnow() - timedelta(days=1), lines=[
            LineInput(1, PHONE, "electronics", 1, 499900, attributes={"portable": True, "serial": "SNX-0042"}),
        ])
        shop = LiveShop(url="", order_number=order.number, buyer_email=order.buyer_email, item_title=PHONE)
        db.session.remove()

    with serving(app) as url:
        shop.url = url
        yield shop


@pytest.fixture
def screenshots(request: Any) -> Screenshots:
    return walk_screenshots(request, "electronics")


def state_is(page: Any, text: str) -> None:
    expect(page.locator("#state")).to_have_text(re.compile(rf"^\s*{re.escape(text)}"))


def return_to_the_bench(shop: LiveShop, buyer: Person, seller: Person, screenshots: Screenshots) -> str:
    """The buyer returns the phone without a reason; the seller approves and confirms receipt."""
    b, s = buyer.page, seller.page
    b.goto("/")
    b.get_by_label("Order number").fill(shop.order_number)
    b.get_by_label("E-mail address").fill(shop.buyer_email)
    buyer.submit(b.get_by_role("button", name="Find my order"), "find my order")
    buyer.click(b.get_by_role("link", name="I want to return it"), "entry: I want to return it")
    form = b.locator("main form").first
    form.get_by_label("Why?").select_option(label="Changed my mind (no reason needed)")
    expect(b.locator("#refund-maximum")).to_contain_text("at most CN¥4,999.00 for 1 unit")  # a return: no amount to type
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")
    state_is(b, "Waiting for the seller's answer")
    case_url = re.search(r"/cases/\d+$", b.url).group(0)
    case_id = case_url.rsplit("/", 1)[1]

    s.goto("/staff/login")
    s.get_by_label("E-mail").fill(shop.seller_email)
    s.get_by_label("Password").fill(shop.password)
    seller.submit(s.get_by_role("button", name="Log in"), "log in")
    case_link = s.get_by_role("link", name=f"#{case_id}", exact=True)
    seller.click(case_link, "open the case")
    seller.click(s.locator("#action-approve").get_by_role("button", name="Approve"), "approve")

    b.reload()
    ship = b.locator("#action-ship_return")
    ship.get_by_label("Carrier").fill("SF Express")
    ship.get_by_label("Tracking number").fill("SF1234567890")
    buyer.submit(ship.get_by_role("button", name="I have shipped the return"), "ship the return")

    s.goto("/seller/")
    seller.click(case_link, "open the case again")
    seller.click(s.locator("#action-confirm_receipt").get_by_role("button", name="Confirm receipt of the return"),
                 "confirm receipt")
    state_is(s, "Return received: being inspected")
    expect(s.locator("#action-refund")).to_have_count(0)  # no refund before a grade
    screenshots.take(s, "seller-case-inspecting")
    b.reload()
    state_is(b, "Return received: being inspected")
    expect(b.locator("main")).to_contain_text("The seller inspects the item.")
    expect(b.locator(".deadline")).to_contain_text("if nothing happens: the return is refunded in full.")
    expect(b.locator("form.action")).to_have_count(0)
    screenshots.take(b, "case-inspecting")
    return case_id


def pages_behaved(*people: Person) -> None:
    for person in people:
        assert person.watch.csp_violations() == [], (person.who, person.watch.console)
        assert person.watch.page_errors == [], (person.who, person.watch.page_errors)
        assert person.watch.failed_responses == [], (person.who, person.watch.failed_responses)


def test_no_reason_return_graded_c_deduction_offer_accepted_partial_refund(live_shop, buyer, seller, screenshots):
    b, s = buyer.page, seller.page
    return_to_the_bench(live_shop, buyer, seller, screenshots)

    grading = s.locator("#action-record_grade")
    grading.get_by_label("Grade").select_option("C")
    grading.get_by_label("Inspection notes").fill("Charger missing; scratches on the back.")
    seller.click(grading.get_by_role("button", name="Record the grade"), "record grade C")
    state_is(s, "Inspected: the item came back worn or incomplete")
    expect(s.locator("main")).to_contain_text("Inspection grade C: cosmetic wear or missing accessory, not intact.")
    screenshots.take(s, "seller-case-not-intact")

    b.reload()
    state_is(b, "Inspected: the item came back worn or incomplete")
    expect(b.locator("main")).to_contain_text("The no-reason refund does not apply.")
    expect(b.locator("main")).to_contain_text("Charger missing; scratches on the back.")
    expect(b.locator("form.action")).to_have_count(0)

    offer = s.locator("#action-offer")
    offer.get_by_label(re.compile("Amount")).fill("4200.00")
    offer.get_by_label("Message").fill("79.90 off for the charger, the rest for the scratches.")
    seller.click(offer.get_by_role("button", name="Offer a partial refund"), "offer a deduction")
    state_is(s, "The seller made an offer")
    screenshots.take(s, "seller-case-offer")

    b.reload()
    state_is(b, "The seller made an offer")
    expect(b.locator("main")).to_contain_text("The seller offers CN¥4,200.00.")
    expect(b.locator("#action-withdraw")).to_have_count(0)  # the shop holds the phone: decline, don't withdraw
    screenshots.take(b, "case-offer")
    buyer.submit(b.locator("#action-accept_offer").get_by_role("button", name="Accept the offer"), "accept the offer")
    state_is(b, "Refund being paid")

    s.reload()
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    state_is(s, "Refunded")
    b.reload()
    state_is(b, "Refunded")
    expect(b.locator("main")).to_contain_text("Refund of CN¥4,200.00: refunded")
    screenshots.take(b, "case-refunded")
    pages_behaved(buyer, seller)


def test_grade_a_return_is_refunded_in_full_within_the_click_budget(live_shop, buyer, seller, screenshots):
    b, s = buyer.page, seller.page
    return_to_the_bench(live_shop, buyer, seller, screenshots)
    s.locator("#action-record_grade").get_by_label("Grade").select_option("A")
    seller.click(s.locator("#action-record_grade").get_by_role("button", name="Record the grade"), "record grade A")
    state_is(s, "Refund being paid")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    state_is(s, "Refunded")
    assert len(seller.clicks) <= SELLER_CLICK_BUDGET, seller.clicks
    b.reload()
    expect(b.locator("main")).to_contain_text("Refund of CN¥4,999.00: refunded")
    pages_behaved(buyer, seller)
