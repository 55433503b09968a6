"""A standard return walked through in Chromium by a buyer and a seller, clicks counted.

DESIGN §1: a buyer asks for a return in one form from the order page, and a seller takes a
standard return from request to refunded in at most 6 clicks. §6: a real browser against the
app on a real port, with CSRF on, so every form submits the token the page gave it.
"""
from __future__ import annotations

import re
from pathlib import Path


from .conftest import skip_without_browser

skip_without_browser()

from PIL import Image, ImageDraw  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

#: DESIGN §1: open the case, approve, confirm receipt, refund (and mark the manual refund paid).
SELLER_CLICK_BUDGET = 6
#: The entry on the order page, then one form.
BUYER_REQUEST_CLICKS = 2

#: aftersales.css sets ``body { max-width: 64rem }``; the browser's default is ``none``.
STYLED_BODY_MAX_WIDTH = "1024px"


def damaged_teapot_photo(folder: Path) -> Path:
    """A real JPEG, as a phone would send it."""
    image = Image.new("RGB", (800, 600), (236, 230, 218))
    draw = ImageDraw.Draw(image)
    draw.ellipse((220, 160, 580, 480), fill=(70, 110, 160))
    draw.line((360, 200, 420, 330, 380, 420), fill=(20, 20, 20), width=6)  # the crack
    path = folder / "damaged-teapot.jpg"
    image.save(path, "JPEG", quality=90)
    return path


def arrived(page, screenshots, name: str) -> None:
    """Every page visited: styled by aftersales.css (so the CSP let it load), then photographed."""
    expect(page.locator("body")).to_have_css("max-width", STYLED_BODY_MAX_WIDTH)
    screenshots.take(page, name)


def state_is(page, text: str) -> None:
    expect(page.locator("#state")).to_have_text(re.compile(rf"^\s*{re.escape(text)}"))


def test_standard_return_from_request_to_refunded(live_shop, buyer, seller, screenshots, tmp_path):
    photo = damaged_teapot_photo(tmp_path)
    b, s = buyer.page, seller.page

    # The buyer finds the order with its number and e-mail address.
    b.goto("/")
    arrived(b, screenshots, "lookup")
    b.get_by_label("Order number").fill(live_shop.order_number)
    b.get_by_label("E-mail address").fill(live_shop.buyer_email)
    buyer.submit(b.get_by_role("button", name="Find my order"), "find my order")
    expect(b).to_have_url(re.compile(r"/orders/\d+$"))
    expect(b.get_by_role("heading", level=1)).to_have_text(f"Order {live_shop.order_number}")
    arrived(b, screenshots, "order")

    # From the order page: one entry click, then one form.
    buyer.click(b.get_by_role("link", name="I want to return it"), "entry: I want to return it")
    expect(b.get_by_role("heading", level=1)).to_have_text(f"Return and refund: {live_shop.item_title}")
    arrived(b, screenshots, "request")
    request_forms = b.locator("main form")
    expect(request_forms).to_have_count(1)
    form = request_forms.first
    form.get_by_label("Why?").select_option(label="Arrived damaged")
    form.get_by_label("Tell the seller what happened").fill("The spout was chipped when I opened the box.")
    form.get_by_label("Photos (JPEG, PNG or WebP)").set_input_files(str(photo))
    expect(form.get_by_label("How many units?")).to_have_value("1")
    expect(b.locator("#refund-maximum")).to_contain_text("at most CN¥129.00 for 1 unit")  # a return: no amount to type
    screenshots.take(b, "request-filled")
    buyer.click(form.get_by_role("button", name="Send my request"), "send the request")

    expect(b).to_have_url(re.compile(r"/cases/\d+$"))
    state_is(b, "Waiting for the seller's answer")
    expect(b.locator(".flash-success")).to_contain_text("Your request was sent")
    evidence = b.locator(".photos img")
    expect(evidence).to_have_count(1)
    expect(evidence.first).to_be_visible()
    assert evidence.first.evaluate("img => img.complete && img.naturalWidth") == 800, "the photo did not load"
    arrived(b, screenshots, "case-requested")
    case_id = int(re.search(r"/cases/(\d+)$", b.url).group(1))
    assert len(buyer.clicks) == BUYER_REQUEST_CLICKS, buyer.clicks

    # The seller logs in and lands on the queue; clicks are counted from the queue on.
    s.goto("/staff/login")
    arrived(s, screenshots, "seller-login")
    s.get_by_label("E-mail").fill(live_shop.seller_email)
    s.get_by_label("Password").fill(live_shop.password)
    seller.submit(s.get_by_role("button", name="Log in"), "log in")
    expect(s).to_have_url(re.compile(r"/seller/$"))
    arrived(s, screenshots, "seller-queue")
    case_link = s.get_by_role("link", name=f"#{case_id}", exact=True)

    seller.click(case_link, "open the case")
    expect(s).to_have_url(re.compile(rf"/seller/cases/{case_id}$"))
    state_is(s, "Waiting for the seller's answer")
    expect(s.locator(".photos img")).to_have_count(1)
    approve = s.locator("#action-approve")
    expect(approve.get_by_label("Return address")).to_have_value(live_shop.return_address)
    arrived(s, screenshots, "seller-case-requested")
    seller.click(approve.get_by_role("button", name="Approve"), "approve")
    expect(s).to_have_url(re.compile(rf"/seller/cases/{case_id}$"))
    state_is(s, "Approved: waiting for the return to be shipped")
    arrived(s, screenshots, "seller-case-approved")

    # The buyer comes back to the case page, sees where to send it, and ships it.
    b.reload()
    state_is(b, "Approved: waiting for the return to be shipped")
    expect(b.locator("main")).to_contain_text(live_shop.return_address)
    arrived(b, screenshots, "case-approved")
    ship = b.locator("#action-ship_return")
    ship.get_by_label("Carrier").fill("SF Express")
    ship.get_by_label("Tracking number").fill("SF1234567890")
    buyer.submit(ship.get_by_role("button", name="I have shipped the return"), "ship the return")
    state_is(b, "Return on its way to the seller")
    expect(b.locator("main")).to_contain_text("SF Express SF1234567890")
    arrived(b, screenshots, "case-shipped")

    # Another shift: the seller starts from the queue again, so opening the case counts twice.
    s.goto("/seller/")
    expect(s.locator("tbody")).to_contain_text("Return on its way to the seller")
    arrived(s, screenshots, "seller-queue-shipped")
    seller.click(case_link, "open the case again")
    expect(s.locator("main")).to_contain_text("SF Express SF1234567890")
    confirm = s.locator("#action-confirm_receipt")
    expect(confirm.get_by_label("Units received")).to_have_value("1")
    arrived(s, screenshots, "seller-case-shipped")
    seller.click(confirm.get_by_role("button", name="Confirm receipt of the return"), "confirm receipt")
    expect(s).to_have_url(re.compile(rf"/seller/cases/{case_id}$"))
    state_is(s, "Return received by the seller")
    arrived(s, screenshots, "seller-case-received")
    seller.click(s.locator("#action-refund").get_by_role("button", name="Refund"), "refund")
    expect(s).to_have_url(re.compile(rf"/seller/cases/{case_id}$"))
    state_is(s, "Refund being paid")
    arrived(s, screenshots, "seller-case-refunding")
    seller.click(s.get_by_role("button", name="Mark as paid"), "mark the refund paid")
    expect(s.locator(".flash-success")).to_contain_text("The refund is recorded as paid.")
    state_is(s, "Refunded")
    arrived(s, screenshots, "seller-case-refunded")

    assert len(seller.clicks) <= SELLER_CLICK_BUDGET, seller.clicks

    # The buyer sees the money is back.
    b.reload()
    state_is(b, "Refunded")
    arrived(b, screenshots, "case-refunded")

    for person in (buyer, seller):
        assert person.watch.csp_violations() == [], (person.who, person.watch.console)
        assert person.watch.page_errors == [], (person.who, person.watch.page_errors)
        assert person.watch.failed_responses == [], (person.who, person.watch.failed_responses)
        assert person.watch.stylesheets and all(status in (200, 304) for _, status in person.watch.stylesheets), \
            (person.who, person.watch.stylesheets)


def test_the_console_watch_would_see_a_csp_violation(live_shop, buyer):
    """The "no CSP violation" assertions above mean something: a blocked inline style is reported."""
    page = buyer.page
    page.goto("/")
    expect(page.locator("body")).to_have_css("max-width", STYLED_BODY_MAX_WIDTH)
    assert buyer.watch.csp_violations() == []
    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate("""() => {
            const style = document.createElement("style");
            style.textContent = "body { max-width: 10px; }";
            document.head.appendChild(style);
        }""")
    expect(page.locator("body")).to_have_css("max-width", STYLED_BODY_MAX_WIDTH)  # the CSP refused it
    assert buyer.watch.csp_violations(), buyer.watch.console
