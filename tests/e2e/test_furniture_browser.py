"""Furniture in Chromium (plugins/furniture_installation.py): a bookshelf our installer assembled
split during installation; the seller books an installer visit, the installer finds it needs a
refund, the shop collects the piece by appointment (free: it was sold with delivery and
installation) and refunds it. The buyer never ships anything.

The app runs on a real port with the shipped furniture_installation plugin on; ``live_shop`` below
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

from .conftest import LiveShop, Screenshots, plugin_shop_app, serving, skip_without_browser, walk_screenshots

skip_without_browser()

from PIL import Image, ImageDraw  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tests.conftest import make_order  # noqa: E402

BOOKSHELF = "Oak bookshelf (assembled on site)"
#: Open the case, book the visit, record it, book the pickup, confirm it, refund, mark paid.
SELLER_CLICK_BUDGET = 7


@pytest.fixture
def live_shop(tmp_path: Path) -> Iterator[LiveShop]:
    """A furniture shop with the plugin on and one bookshelf, delivered and assembled yesterday."""
    app = plugin_shop_app(tmp_path, "Oak & Linen", "Warehouse 2, 5 Timber Lane, Suzhou", "furniture_installation")
    now = utcnow()
    with app.app_context():
        order = make_order(shop="shop", delivered=now - timedelta(days=1), lines=[
            LineInput(1, BOOKSHELF, "furniture", 1, 129900, attributes={
                "installed": True, "installed_at": (now - timedelta(hours=20)).isoformat(),
                "large_item": True, "delivery_and_installation": True}),
        ])
        shop = LiveShop(url="", order_number=order.number, buyer_email=order.buyer_email, item_title=BOOKSHELF)
        db.session.remove()

    with serving(app) as url:
        shop.url = url
        yield shop


@pytest.fixture
def screenshots(request: Any) -> Screenshots:
    return walk_screenshots(request, "furniture")


def split_panel_photo(folder: Path) -> Path:
    image = Image.new("RGB", (800, 600), (222, 196, 150))
    draw = ImageDraw.Draw(image)
    draw.rectangle((200, 60, 600, 560), outline=(120, 80, 40), width=14)
    draw.line((400, 70, 380, 300, 420, 550), fill=(30, 20, 10), width=5)  # the split
    path = folder / "split-panel.jpg"
    image.save(path, "JPEG", quality=90)
    return path


def state_is(page: Any, text: str) -> None:
    expect(page.locator("#state")).to_have_text(re.compile(rf"^\s*{re.escape(text)}"))


def test_installation_damage_is_visited_collected_and_refunded(live_shop, buyer, seller, screenshots, tmp_path):
    b, s = buyer.page, seller.page
    visit_day = f"{utcnow() + timedelta(days=1):%Y-%m-%d}"
    pickup_day = f"{utcnow() + timedelta(days=3):%Y-%m-%d}"

    # The buyer asks from the order page, with a photo, the floor and the lift.
    b.goto("/")
    b.get_by_label("Order number").fill(live_shop.order_number)
    b.get_by_label("E-mail address").fill(live_shop.buyer_email)
    buyer.submit(b.get_by_role("button", name="Find my order"), "find my order")
    buyer.click(b.get_by_role("link", name="I want to return it"), "entry: I want to return it")
    form = b.locator("main form")
    reasons = form.get_by_label("Why?")
    assert "Changed my mind" not in reasons.inner_text()  # assembled in the home: no no-reason return
    reasons.select_option(label="Damaged during installation")
    form.get_by_label("Tell the seller what happened").fill("The side panel split while the installer fixed it.")
    form.get_by_label("Photos (JPEG, PNG or WebP)").set_input_files(str(split_panel_photo(tmp_path)))
    form.get_by_label("Good days and times for a visit or pickup").fill("Weekday evenings")
    form.get_by_label("Floor").fill("6")
    form.get_by_label("There is a lift the piece fits in").check()
    screenshots.take(b, "request-filled")
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")
    state_is(b, "Waiting for the seller's answer")
    expect(b.locator(".deadline")).to_contain_text("23 hours")  # a visit is booked within 24 hours
    case_id = int(re.search(r"/cases/(\d+)$", b.url).group(1))

    # The seller books the installer.
    s.goto("/staff/login")
    s.get_by_label("E-mail").fill(live_shop.seller_email)
    s.get_by_label("Password").fill(live_shop.password)
    seller.submit(s.get_by_role("button", name="Log in"), "log in")
    seller.click(s.get_by_role("link", name=f"#{case_id}", exact=True), "open the case")
    expect(s.locator(".flash-info")).to_contain_text("From the buyer: floor 6, a lift; good times: Weekday evenings.")
    expect(s.locator("#action-approve")).to_have_count(0)  # a large piece is collected, never posted
    visit = s.locator("#action-schedule_visit")
    visit.get_by_label("Visit date").fill(visit_day)
    visit.get_by_label("Installer").fill("Wang Lei")
    screenshots.take(s, "seller-books-the-visit")
    seller.click(visit.get_by_role("button", name="Book an installer visit"), "book the visit")
    state_is(s, "An installer visit is booked")

    b.reload()
    state_is(b, "An installer visit is booked")
    expect(b.locator("main")).to_contain_text("Our installer looks at the piece in your home")
    expect(b.locator(".deadline")).to_contain_text("if nothing happens: the request is approved automatically.")
    expect(b.locator(".flash-info")).to_contain_text(f"Wang Lei, our installer, visits on {visit_day}.")
    expect(b.locator("form.action")).to_have_count(1)  # only withdrawing: the installer's step is the shop's
    screenshots.take(b, "visit-booked")

    # On site, the installer (through the shop's staff page) finds the panel cannot be repaired.
    record = s.locator("#action-record_visit")
    record.get_by_label("What the installer found").select_option(label="Needs a refund")
    record.get_by_label("Installer's report").fill("Panel split along the grain; cannot be glued.")
    seller.click(record.get_by_role("button", name="Record what the installer found"), "record the visit")
    state_is(s, "The installer has visited: waiting for the seller's decision")
    expect(s.locator("main")).to_contain_text("On-site result: Needs a refund.")
    pickup = s.locator("#action-schedule_pickup")
    pickup.get_by_label("Pickup date").fill(pickup_day)
    seller.click(pickup.get_by_role("button", name="Book the pickup"), "book the pickup")
    state_is(s, "Approved: the piece will be collected from your home")

    b.reload()
    state_is(b, "Approved: the piece will be collected from your home")
    expect(b.locator("main")).to_contain_text("The shop collects the piece from your home: you don't ship it.")
    expect(b.locator(".flash-info").filter(has_text="Pickup day")).to_contain_text(f"Pickup day: {pickup_day}.")
    expect(b.locator(".deadline")).to_contain_text("if nothing happens: the piece counts as collected.")
    expect(b.locator("main")).to_contain_text("The seller pays the return shipping")
    expect(b.locator("#action-ship_return")).to_have_count(0)
    screenshots.take(b, "pickup-booked")

    # Collected, then refunded.
    seller.click(s.locator("#action-confirm_receipt").get_by_role("button", name="Confirm receipt of the return"),
                 "confirm the collection")
    seller.click(s.locator("#action-refund").get_by_role("button", name="Refund"), "refund")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    state_is(s, "Refunded")
    screenshots.take(s, "seller-refunded")
    assert len(seller.clicks) <= SELLER_CLICK_BUDGET, seller.clicks

    b.reload()
    state_is(b, "Refunded")
    expect(b.locator("main")).to_contain_text("Refund of CN¥1,299.00: refunded")
    screenshots.take(b, "case-refunded")
    for person in (buyer, seller):
        assert person.watch.page_errors == [] and person.watch.csp_violations() == [], person.watch.console
        assert person.watch.failed_responses == [], person.watch.failed_responses
