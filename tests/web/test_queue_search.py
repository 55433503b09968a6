"""The queue's search (order number, case reference, buyer e-mail, tracking number: exact, in any
state, only the staff's own shop), its columns, and its filters offered as choices (the loaded
plugins' states and categories included)."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from aftersales import services
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from aftersales.orders import LineInput, OrderInput, add_shipment, upsert_order
from aftersales.plugins import SHIPPED_PLUGINS_DIR
from tests.conftest import make_order, photos
from tests.web.conftest import login, pages_app


RECENT = utcnow() - timedelta(days=2)  # these cases are opened on the real clock


def queue_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/seller/cases/(\d+)"', page)]


def shop_cases():
    """Three cases in "shop" (one ended, one with a return on its way) and one in "other-shop"."""
    first = make_order(delivered=RECENT, lines=[LineInput(1, "Teapot", "books", 1, 4000), LineInput(2, "Cup", "books", 1, 1000)])
    returned = services.open_case(first.lines[0].id, "return_refund", "no_reason").id
    services.act(returned, "seller", "approve")
    services.act(returned, "buyer", "ship_return", carrier="SF", tracking_number="SF777000111")
    withdrawn = services.open_case(first.lines[1].id, "refund_only", "quality", evidence=photos()).id
    services.act(withdrawn, "buyer", "withdraw")
    second = upsert_order(OrderInput(
        shop="shop", number="EL-3001", buyer_email="Zoe@Example.com", currency="CNY",
        lines=[LineInput(1, "Phone", "electronics", 1, 99900)], placed_at=utcnow() - timedelta(days=5),
        paid_at=utcnow() - timedelta(days=5)))
    add_shipment("shop", "EL-3001", "JD", "JD123456", {1: 1}, at=utcnow() - timedelta(days=4),
                 delivered_at=utcnow() - timedelta(days=2))
    phone = services.open_case(second.lines[0].id, "refund_only", "quality", evidence=photos()).id
    theirs = services.open_case(make_order(shop="other-shop", delivered=RECENT).lines[0].id, "refund_only", "quality", evidence=photos()).id
    first_number = first.number
    db.session.remove()
    return {"first_number": first_number, "returned": returned, "withdrawn": withdrawn, "phone": phone, "theirs": theirs}


def test_search_finds_cases_by_each_key_in_any_state(web_app):
    ids = shop_cases()
    seller = login(web_app, "seller@example.com")

    def found(text: str) -> list[int]:
        page = seller.get("/seller/", query_string={"q": text})
        assert page.status_code == 200
        return sorted(queue_ids(page.text))

    both_of_first = sorted([ids["returned"], ids["withdrawn"]])
    assert found(ids["first_number"]) == both_of_first  # the withdrawn one too: search covers ended cases
    assert found(f"  {ids['first_number'].lower()} ") == both_of_first  # typed as buyers type it
    assert found("el-3001") == [ids["phone"]]
    assert found("zoe@example.com") == [ids["phone"]]
    assert found("JD123456") == [ids["phone"]]  # a parcel of the order
    assert found("SF777000111") == [ids["returned"]]  # the buyer's return parcel
    assert found(f"#{ids['phone']}") == [ids["phone"]] and found(str(ids["phone"])) == [ids["phone"]]
    assert found("nothing-like-this") == []
    # Another shop's case is not found, by reference or otherwise.
    assert found(f"#{ids['theirs']}") == []
    assert ids["theirs"] in found_as(web_app, "platform@example.com", f"#{ids['theirs']}")


def found_as(app, email: str, text: str) -> list[int]:
    return queue_ids(login(app, email).get("/seller/", query_string={"q": text}).text)


def test_search_keeps_the_other_filters_and_the_page_says_what_it_shows(web_app):
    ids = shop_cases()
    seller = login(web_app, "seller@example.com")
    page = seller.get("/seller/", query_string={"q": ids["first_number"], "kind": "refund_only"}).text
    assert queue_ids(page) == [ids["withdrawn"]]
    assert "Cases matching" in page and "Clear the search" in page


def test_the_queue_shows_order_buyer_and_amount(web_app):
    ids = shop_cases()
    page = login(web_app, "seller@example.com").get("/seller/").text
    row = re.search(rf'<tr>\s*<td data-label="Case"><a href="/seller/cases/{ids["phone"]}">.*?</tr>', page, re.S).group(0)
    assert "EL-3001" in row and "zoe@example.com" in row and "Phone" in row
    assert "999.00" in row  # the amount asked: the whole line


def test_filters_offer_the_plugins_states_and_the_categories(tmp_path):
    for app in pages_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SHIPPED_PLUGINS_DIR)):  # electronics, furniture, cross-border
        services.open_case(make_order(category="electronics", delivered=RECENT).lines[0].id, "refund_only", "quality",
                           evidence=photos())
        services.open_case(make_order(category="books", delivered=RECENT).lines[0].id, "refund_only", "quality", evidence=photos())
        db.session.remove()
        page = login(app, "seller@example.com").get("/seller/").text
        states = re.findall(r'<option value="([a-z_]+)"', page.split('name="state"')[1].split("</select>")[0])
        assert "inspecting" in states and "visit_scheduled" in states and "requested" in states
        categories = re.findall(r'<option value="([^"]+)"', page.split('name="category"')[1].split("</select>")[0])
        assert "books" in categories and "electronics" in categories
        assert db.session.scalar(select(Case.id)) is not None
