"""A counter-offer and an express refund walked through in Chromium (issue 13).

The buyer answers the seller's partial offer with a counter-offer and a message; the seller reads
it beside the state and accepts it; the refund is the counter's amount. Then a buyer with a good
record (here every buyer: ``AFTERSALES_EXPRESS_MIN_COMPLETED_CASES=0``) enters the return's
tracking number and is refunded at once, told why on the case page; the seller sees it too.
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

from .conftest import (
    RETURN_ADDRESS, LiveShop, Screenshots, find_order, line_row, log_in, serving, shop_app, skip_without_browser, state_is,
    walk_screenshots,
)

skip_without_browser()

from PIL import Image  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.conftest import make_order  # noqa: E402

TABLECLOTH = "Linen tablecloth"
VASE = "Glass vase"


@pytest.fixture
def live_shop(tmp_path: Path) -> Iterator[LiveShop]:
    """A shop whose every buyer has the express refund, and an order of two lines delivered yesterday."""
    app = shop_app(tmp_path, "Home & Table", RETURN_ADDRESS, AFTERSALES_EXPRESS_MIN_COMPLETED_CASES=0)
    with app.app_context():
        order = make_order(shop="shop", delivered=utcnow() - timedelta(days=1), lines=[
            LineInput(1, TABLECLOTH, "home", 1, 12000), LineInput(2, VASE, "home", 1, 8800),
        ])
        shop = LiveShop(url="", order_number=order.number, buyer_email=order.buyer_email, item_title=TABLECLOTH)
        db.session.remove()
    with serving(app) as url:
        shop.url = url
        yield shop


@pytest.fixture
def screenshots(request: Any) -> Screenshots:
    return walk_screenshots(request, "negotiation")


def test_a_counter_offer_is_made_read_and_accepted(live_shop, buyer, seller, screenshots, tmp_path):
    b, s = buyer.page, seller.page
    stain = tmp_path / "stain.jpg"
    Image.new("RGB", (640, 480), (200, 180, 150)).save(stain, "JPEG")

    find_order(buyer, live_shop)
    buyer.click(line_row(b, TABLECLOTH).get_by_role("link", name="I want a refund"), "entry: I want a refund")
    form = b.locator("main form")
    form.get_by_label("Why?").select_option(label="Arrived damaged")
    form.get_by_label("Photos (JPEG, PNG or WebP)").set_input_files(str(stain))
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")
    state_is(b, "Waiting for the seller's answer")
    case_id = re.search(r"/cases/(\d+)$", b.url).group(1)

    log_in(seller, live_shop)
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case")
    offer = s.locator("#action-offer")
    offer.get_by_label(re.compile("Amount")).fill("40")
    offer.get_by_label("Message").fill("The stain washes out; we refund a third.")
    seller.click(offer.get_by_role("button", name="Offer a partial refund"), "offer")
    state_is(s, "The seller made an offer")
    screenshots.take(s, "seller-offered")

    b.reload()
    state_is(b, "The seller made an offer")
    expect(b.locator("#offer")).to_contain_text("The seller offers CN¥40.00.")
    expect(b.locator("#last-word")).to_contain_text("The stain washes out; we refund a third.")
    buttons = b.locator("main form.action button[type=submit]")
    expect(buttons.last).to_have_text("Withdraw the request")  # withdrawing comes last
    screenshots.take(b, "buyer-offer")
    counter = b.locator("#action-counter_offer")
    counter.get_by_label(re.compile("Amount")).fill("¥90")
    counter.get_by_label("Message").fill("It did not wash out; see the photo.")
    buyer.click(counter.get_by_role("button", name="Make a counter-offer"), "counter-offer")
    state_is(b, "The buyer made a counter-offer")
    expect(b.locator("#counter-offer")).to_contain_text("You asked for CN¥90.00 instead.")
    screenshots.take(b, "buyer-countered")

    s.reload()
    state_is(s, "The buyer made a counter-offer")
    expect(s.locator("#counter-offer")).to_contain_text("The buyer asks for CN¥90.00 instead.")
    expect(s.locator("#counter-offer")).to_contain_text("It did not wash out; see the photo.")
    screenshots.take(s, "seller-counter")
    seller.click(s.locator("#action-accept_counter").get_by_role("button", name="Accept the counter-offer"), "accept")
    state_is(s, "Refund being paid")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    state_is(s, "Refunded")

    b.reload()
    state_is(b, "Refunded")
    expect(b.locator("main")).to_contain_text("Refund of CN¥90.00: refunded")
    screenshots.take(b, "buyer-refunded")
    for person in (buyer, seller):
        assert person.watch.csp_violations() == [] and person.watch.page_errors == [], person.watch.console


def test_an_express_refund_is_paid_when_the_buyer_enters_the_tracking_number(live_shop, buyer, seller, screenshots):
    b, s = buyer.page, seller.page
    find_order(buyer, live_shop)
    buyer.click(line_row(b, VASE).get_by_role("link", name="I want to return it"), "entry: I want to return it")
    b.locator("main form").get_by_label("Why?").select_option(label="Changed my mind (no reason needed)")
    buyer.click(b.locator("main form").get_by_role("button", name="Send my request"), "send the request")
    case_id = re.search(r"/cases/(\d+)$", b.url).group(1)

    log_in(seller, live_shop)
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case")
    seller.click(s.locator("#action-approve").get_by_role("button", name="Approve"), "approve")

    b.reload()
    ship = b.locator("#action-ship_return")
    ship.get_by_label("Carrier").fill("SF Express")
    ship.get_by_label("Tracking number").fill("SF5550001")
    buyer.submit(ship.get_by_role("button", name="I have shipped the return"), "ship the return")
    state_is(b, "Return on its way to the seller")
    expect(b.locator("#express")).to_contain_text("You were refunded as soon as you entered the tracking number")
    expect(b.locator("main")).to_contain_text("Refund of CN¥88.00")
    screenshots.take(b, "buyer-express")

    s.reload()
    expect(s.locator("#express")).to_contain_text("Express refund: the buyer was refunded when they shipped the return")
    screenshots.take(s, "seller-express")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the express refund paid")
    seller.click(s.locator("#action-confirm_receipt").get_by_role("button", name="Confirm receipt of the return"),
                 "confirm receipt")
    seller.click(s.locator("#action-refund").get_by_role("button", name="Refund"), "refund")
    state_is(s, "Refunded")  # the express refund was the whole refund: nothing more to pay
    b.reload()
    state_is(b, "Refunded")
    expect(b.locator("main")).to_contain_text("Refund of CN¥88.00: refunded")
    for person in (buyer, seller):
        assert person.watch.csp_violations() == [] and person.watch.page_errors == [], person.watch.console
