"""Cross-border returns in Chromium (plugins/cross_border.py): a damaged serum needs photos of
the parcel and the goods, goes back to the bonded warehouse with the buyer told beforehand
whether the import tax comes back, and a cheap item is refunded without travelling back abroad.

The app runs on a real port with the shipped cross_border plugin on; ``live_shop`` below
replaces the base shop of tests/e2e/conftest.py for this module (the other fixtures are reused).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from aftersales.extensions import db
from aftersales.models import utcnow
from aftersales.orders import LineInput

from .conftest import (
    LiveShop, Screenshots, find_order, line_row, log_in, plugin_shop_app, serving, skip_without_browser, state_is,
    walk_screenshots,
)

skip_without_browser()

from PIL import Image, ImageDraw  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.conftest import make_order  # noqa: E402

WAREHOUSE = "Bonded warehouse 3, 18 Free Trade Road, Ningbo 315800"
SERUM, GUMMIES = "Imported face serum 30 ml", "Imported vitamin gummies"
SELLER_CLICK_BUDGET = 6


@dataclass
class CrossBorderShop(LiveShop):
    tax_deadline: str = ""  # the day the import tax stops coming back: 45 days after customs release


@pytest.fixture
def live_shop(tmp_path: Path) -> Iterator[CrossBorderShop]:
    """A cross-border shop: the plugin on, returns to a bonded warehouse, an order of two
    imported lines delivered two days ago and cleared by customs five days ago."""
    app = plugin_shop_app(tmp_path, "Harbour Imports", "Domestic desk, 1 Shop Street", "cross_border",
                          AFTERSALES_CROSS_BORDER_RETURN_ADDRESS=WAREHOUSE)
    now = utcnow()
    cleared = (now - timedelta(days=5)).isoformat()
    with app.app_context():
        order = make_order(shop="shop", delivered=now - timedelta(days=2), lines=[
            LineInput(1, SERUM, "cross_border", 1, 25900,
                      tax_paid=2331, attributes={"customs_released_at": cleared}),
            LineInput(2, GUMMIES, "cross_border", 1, 8900,
                      tax_paid=801, attributes={"customs_released_at": cleared}),
        ])
        shop = CrossBorderShop(url="", order_number=order.number, buyer_email=order.buyer_email, item_title=SERUM,
                               return_address=WAREHOUSE, tax_deadline=f"{now + timedelta(days=40):%Y-%m-%d}")
        db.session.remove()

    with serving(app) as url:
        shop.url = url
        yield shop


@pytest.fixture
def screenshots(request: Any) -> Screenshots:
    return walk_screenshots(request, "cross_border")


def pictures(folder: Path) -> tuple[Path, Path]:
    """What a phone sends: the parcel as it arrived, and the cracked bottle inside."""
    parcel = Image.new("RGB", (800, 600), (196, 164, 120))
    ImageDraw.Draw(parcel).rectangle((150, 120, 650, 480), outline=(90, 60, 30), width=12)
    goods = Image.new("RGB", (800, 600), (240, 240, 245))
    draw = ImageDraw.Draw(goods)
    draw.rectangle((330, 120, 470, 500), fill=(200, 150, 170))
    draw.line((340, 200, 420, 300, 360, 420), fill=(20, 20, 20), width=6)
    paths = folder / "parcel.jpg", folder / "goods.jpg"
    parcel.save(paths[0], "JPEG", quality=90)
    goods.save(paths[1], "JPEG", quality=90)
    return paths


def test_damaged_import_goes_back_to_the_bonded_warehouse_told_about_the_tax(
        live_shop, buyer, seller, screenshots, tmp_path):
    parcel, goods = pictures(tmp_path)
    b, s = buyer.page, seller.page

    find_order(buyer, live_shop)
    buyer.click(line_row(b, SERUM).get_by_role("link", name="I want to return it"), "entry: I want to return it")
    form = b.locator("main form")
    form.get_by_label("Why?").select_option(label="Arrived damaged")
    assert "package_damaged" not in form.get_by_label("Why?").inner_html()  # refused, so not offered but explained
    expect(b.locator(".why-not")).to_contain_text("Only the outer package is damaged: A damaged outer box alone")
    form.get_by_label("Tell the seller what happened").fill("The bottle arrived cracked inside the box.")
    form.get_by_label("Photos (JPEG, PNG or WebP)").set_input_files(str(goods))
    with b.expect_navigation():  # one photo: refused on the form, nothing opened
        form.get_by_role("button", name="Send my request").click()
    expect(b.locator(".error")).to_contain_text("the parcel as it arrived, and the damaged goods")
    screenshots.take(b, "two-photos-needed")

    form = b.locator("main form")
    # The photo already chosen is kept by the form: only the missing one is added.
    expect(form.locator("#kept-photos")).to_contain_text(f"Remove {goods.name}")
    form.get_by_label("Why?").select_option(label="Arrived damaged")
    form.get_by_label("Photos (JPEG, PNG or WebP)").set_input_files(str(parcel))
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")
    state_is(b, "Waiting for the seller's answer")
    expect(b.locator(".photos img")).to_have_count(2)
    screenshots.take(b, "case-requested")
    case_id = int(re.search(r"/cases/(\d+)$", b.url).group(1))

    log_in(seller, live_shop)
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case")
    approve = s.locator("#action-approve")
    expect(approve.get_by_label("Return address")).to_have_value(WAREHOUSE)
    expect(s.locator(".flash-info").first).to_contain_text(f"bonded warehouse by {live_shop.tax_deadline}")
    seller.click(approve.get_by_role("button", name="Approve"), "approve")
    state_is(s, "Approved: waiting for the return to be shipped")

    # Before shipping, the buyer reads where it goes, by when, and what happens to the import tax.
    b.reload()
    main = b.locator("main")
    expect(main).to_contain_text(WAREHOUSE)
    expect(b.locator(".deadline")).to_contain_text("in 14 days 23 hours")
    expect(b.locator(".deadline")).to_contain_text("if nothing happens: the request is withdrawn.")
    notice = b.locator(".flash-info").filter(has_text="import tax")
    expect(notice).to_contain_text(f"only if they are back at the bonded warehouse by {live_shop.tax_deadline}")
    assert notice.bounding_box()["y"] < b.locator("#action-ship_return").bounding_box()["y"]
    screenshots.take(b, "told-about-the-tax")
    ship = b.locator("#action-ship_return")
    ship.get_by_label("Carrier").fill("EMS")
    ship.get_by_label("Tracking number").fill("EE123456789CN")
    buyer.submit(ship.get_by_role("button", name="I have shipped the return"), "ship the return")
    state_is(b, "Return on its way to the seller")

    s.goto("/seller/")
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case again")
    seller.click(s.locator("#action-confirm_receipt").get_by_role("button", name="Confirm receipt of the return"),
                 "confirm receipt")
    expect(s.locator(".flash-info").filter(has_text="import tax")).to_contain_text("refunded with the goods")
    seller.click(s.locator("#action-refund").get_by_role("button", name="Refund"), "refund")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    state_is(s, "Refunded")
    screenshots.take(s, "seller-refunded")
    assert len(seller.clicks) <= SELLER_CLICK_BUDGET, seller.clicks

    b.reload()
    state_is(b, "Refunded")
    screenshots.take(b, "case-refunded")
    for person in (buyer, seller):
        assert person.watch.page_errors == [] and person.watch.csp_violations() == [], person.watch.console


def test_cheap_import_is_refunded_without_travelling_back(live_shop, buyer, seller, screenshots):
    b, s = buyer.page, seller.page
    find_order(buyer, live_shop)
    buyer.click(line_row(b, GUMMIES).get_by_role("link", name="I want a refund"), "entry: I want a refund")
    form = b.locator("main form")
    form.get_by_label("Why?").select_option(label="Changed my mind (no reason needed)")
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")
    expect(b.locator(".flash-info").filter(has_text="import tax")).to_contain_text("not sent back through customs")
    case_id = int(re.search(r"/cases/(\d+)$", b.url).group(1))
    screenshots.take(b, "refund-without-return")

    log_in(seller, live_shop)
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case")
    expect(s.locator("#action-approve").get_by_label("Return address")).to_have_count(0)
    seller.click(s.locator("#action-approve").get_by_role("button", name="Approve"), "approve")
    state_is(s, "Refund being paid")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")

    b.reload()
    state_is(b, "Refunded")
    expect(b.locator("main")).to_contain_text("Refund of CN¥89.00: refunded")
    expect(b.locator("#action-ship_return")).to_have_count(0)
    assert len(seller.clicks) <= 3, seller.clicks
