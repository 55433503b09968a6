"""The seller queue in a real browser: the columns, the search, and a phone's 375 px screen with
no sideways scrolling. Screenshots (desktop and 375 px) go to tests/e2e/artifacts/queue/."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aftersales import services
from aftersales.extensions import db
from aftersales.orders import LineInput
from tests.conftest import make_order, photos
from tests.e2e.conftest import RETURN_ADDRESS, Person, log_in, serving, shop_app, skip_without_browser, walk_screenshots

skip_without_browser()


@pytest.fixture
def busy_shop(tmp_path: Path):
    """A shop with a few open cases: long titles and e-mail addresses, one of each kind of request."""
    app = shop_app(tmp_path, "Teapot & Co.", RETURN_ADDRESS)
    delivered = datetime.now(timezone.utc) - timedelta(days=2)
    numbers = []
    with app.app_context():
        for index, (title, kind, reason) in enumerate([
            ("Hand-thrown stoneware teapot with bamboo handle, 1.2 litres", "return_refund", "no_reason"),
            ("Set of six espresso cups", "refund_only", "quality"),
            ("Cast-iron kettle", "exchange", "damaged"),
        ]):
            order = make_order(shop="shop", delivered=delivered, lines=[LineInput(1, title, "kitchen", 1, 12900 + index)])
            numbers.append(order.number)
            evidence = photos() if reason != "no_reason" else ()
            services.open_case(order.lines[0].id, kind, reason, evidence=evidence,
                               actor_id=order.buyer_email)
        db.session.remove()
    with serving(app) as url:
        yield url, numbers


def test_the_queue_reads_on_a_desktop_and_on_a_phone_and_searches(browser, busy_shop, request):
    url, numbers = busy_shop
    shots = walk_screenshots(request, "queue")
    desktop = Person(browser, "seller", url)
    try:
        log_in(desktop, type("Shop", (), {"seller_email": "seller@example.com", "password": "correct-horse-battery"}))
        page = desktop.page
        for header in ("Order", "Buyer", "Item", "Kind", "State", "Amount asked", "Deadline"):
            assert page.get_by_role("columnheader", name=header, exact=True).count() == 1, header
        assert page.locator("table.queue tbody tr").count() == 3
        shots.take(page, "desktop")
        page.get_by_label("Search").fill(numbers[1].lower())
        desktop.submit(page.get_by_role("button", name="Filter"), "search")
        rows = page.locator("table.queue tbody tr")
        assert rows.count() == 1 and "Set of six espresso cups" in rows.inner_text()
        shots.take(page, "desktop-search")
    finally:
        desktop.close()
    phone = Person(browser, "seller", url)
    try:
        phone.page.set_viewport_size({"width": 375, "height": 800})
        log_in(phone, type("Shop", (), {"seller_email": "seller@example.com", "password": "correct-horse-battery"}))
        page = phone.page
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the queue scrolls sideways by {overflow}px at 375px"
        label = page.evaluate("getComputedStyle(document.querySelector('table.queue td[data-label=\"Amount asked\"]'),"
                              " '::before').content")
        assert "Amount asked" in label  # each value says what it is (the header row is moved off screen)
        shots.take(page, "phone-375")
    finally:
        phone.close()
