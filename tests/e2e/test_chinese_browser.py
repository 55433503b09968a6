"""The buyer's and the seller's pages in Chromium in Simplified and Traditional Chinese (issue 11):
the browser's language picks the script, the switcher changes it, and every page is photographed
to tests/e2e/artifacts/chinese/<locale>/ (order page, request form, case page, seller queue and
seller case page)."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

import pytest

from .conftest import ARTIFACTS, CHROMIUM_ARGS, PASSWORD, SELLER_EMAIL, Screenshots, Watch, serving, shop_app, skip_without_browser

skip_without_browser()

from PIL import Image  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from aftersales.extensions import db  # noqa: E402
from aftersales.orders import LineInput  # noqa: E402
from tests.conftest import make_order  # noqa: E402
from tests.web.test_languages import words  # noqa: E402

BROWSER_LANGUAGES = {"zh_Hans": "zh-CN", "zh_Hant": "zh-TW"}


@pytest.fixture
def chinese_shop(tmp_path):
    app = shop_app(tmp_path, "小王茶具店", "上海市浦东新区世纪大道88号 退货部")
    with app.app_context():
        order = make_order(shop="shop", delivered=datetime.now(timezone.utc) - timedelta(days=2),
                           lines=[LineInput(1, "青花瓷茶壶", "kitchen", 1, 12900)])
        number, email = order.number, order.buyer_email
        db.session.remove()
    with serving(app) as url:
        yield url, number, email


def text_of(msgid: str, locale: str, **variables) -> str:
    return html.unescape(words(msgid, locale, **variables))


@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant"])
def test_buyer_and_seller_pages_in_chinese(browser, chinese_shop, locale):
    url, number, email = chinese_shop
    shots = Screenshots(ARTIFACTS / "chinese" / locale)
    tag = locale.replace("_", "-")
    buyer_context = browser.new_context(base_url=url, locale=BROWSER_LANGUAGES[locale], viewport={"width": 1100, "height": 800})
    seller_context = browser.new_context(base_url=url, locale=BROWSER_LANGUAGES[locale], viewport={"width": 1100, "height": 800})
    b, s = buyer_context.new_page(), seller_context.new_page()
    watches = [Watch("buyer"), Watch("seller")]
    watches[0].attach(b)
    watches[1].attach(s)
    try:
        b.goto("/")
        expect(b.locator("html")).to_have_attribute("lang", tag)
        b.locator("#order_number").fill(number)
        b.locator("#email").fill(email)
        b.get_by_role("button", name=text_of("Find my order", locale)).click()
        expect(b.get_by_role("heading", level=1)).to_have_text(text_of("Order %(number)s", locale, number=number))
        shots.take(b, "order")

        b.get_by_role("link", name=text_of("I want to return it", locale)).click()
        expect(b.get_by_role("heading", level=1)).to_contain_text(text_of("Return and refund", locale))
        shots.take(b, "request")
        form = b.locator("main form")
        form.locator("select[name=reason]").select_option("no_reason")
        form.get_by_role("button", name=text_of("Send my request", locale)).click()
        expect(b).to_have_url(re.compile(r"/cases/\d+$"))
        expect(b.locator("#state")).to_contain_text(text_of("Waiting for the seller's answer", locale))
        shots.take(b, "case")
        case_id = int(re.search(r"/cases/(\d+)$", b.url).group(1))

        s.goto("/staff/login")
        expect(s.locator("html")).to_have_attribute("lang", tag)
        s.locator("#email").fill(SELLER_EMAIL)
        s.locator("#password").fill(PASSWORD)
        s.get_by_role("button", name=text_of("Log in", locale)).click()
        expect(s).to_have_url(re.compile(r"/seller/$"))
        expect(s.get_by_role("heading", level=1)).to_contain_text(text_of("Cases", locale))
        shots.take(s, "seller-queue")
        s.get_by_role("link", name=f"#{case_id}", exact=True).click()
        expect(s.get_by_role("heading", level=1)).to_contain_text(text_of("Case #%(id)d", locale, id=case_id))
        shots.take(s, "seller-case")

        # The switcher: the other script, remembered on the next page.
        other = "zh_Hant" if locale == "zh_Hans" else "zh_Hans"
        s.locator(f'nav.languages a[hreflang="{other.replace("_", "-")}"]').click()
        expect(s.locator("html")).to_have_attribute("lang", other.replace("_", "-"))
        expect(s).to_have_url(re.compile(rf"/seller/cases/{case_id}$"))
        s.goto("/seller/")
        expect(s.get_by_role("heading", level=1)).to_contain_text(text_of("Cases", other))
    finally:
        buyer_context.close()
        seller_context.close()
    for watch in watches:
        assert watch.page_errors == [] and watch.failed_responses == [], (watch.who, watch.page_errors, watch.failed_responses)
    assert [path.name for path in shots.taken] == ["01-order.png", "02-request.png", "03-case.png",
                                                    "04-seller-queue.png", "05-seller-case.png"]
    for path in shots.taken:
        with Image.open(path) as image:
            assert image.width == 1100 and image.height >= 300, path
