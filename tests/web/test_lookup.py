"""The buyer's lookup in a marketplace (issue 10): order numbers are unique per shop only, the
number is matched as people type it, and "no such order" answers like "wrong e-mail"."""
from __future__ import annotations

from datetime import timedelta

import pytest

from aftersales.orders import LineInput, OrderInput, orders_for_buyer, upsert_order
from tests.conftest import NOW

MESSAGE = "We could not find an order with that number and e-mail address."


def order_in(shop: str, number: str, email: str):
    placed = NOW - timedelta(days=5)
    return upsert_order(OrderInput(
        shop=shop, number=number, buyer_email=email, currency="CNY",
        lines=[LineInput(1, "Book", "books", 1, 5000)], placed_at=placed, paid_at=placed,
        shipped_at=placed + timedelta(hours=5), delivered_at=placed + timedelta(days=2)))


@pytest.fixture
def two_shops(web_app):
    """Order 1001 in both shops (different buyers), BK-4001 in "shop", 7007 in both for one buyer."""
    return {
        "a": order_in("shop", "1001", "ann@example.com"),
        "b": order_in("other-shop", "1001", "bob@example.com"),
        "bk": order_in("shop", "BK-4001", "ann@example.com"),
        "both_a": order_in("shop", "7007", "cy@example.com"),
        "both_b": order_in("other-shop", "7007", "cy@example.com"),
    }


def test_each_buyer_reaches_exactly_their_own_order(two_shops):
    assert [o.id for o in orders_for_buyer("1001", "ann@example.com")] == [two_shops["a"].id]
    assert [o.id for o in orders_for_buyer("1001", "bob@example.com")] == [two_shops["b"].id]
    assert orders_for_buyer("1001", "eve@example.com") == []
    assert orders_for_buyer("9999", "ann@example.com") == []


def test_the_number_is_matched_as_typed(two_shops):
    for typed in (" bk-4001 ", "BK-4001", "bk-4001", "\tBk-4001\n"):
        assert [o.id for o in orders_for_buyer(typed, " Ann@Example.com ")] == [two_shops["bk"].id], typed
    assert orders_for_buyer("bk4001", "ann@example.com") == []
    assert two_shops["bk"].lookup_number == "bk-4001" and two_shops["bk"].number == "BK-4001"


def test_a_shop_from_the_address_narrows_the_lookup(two_shops):
    assert [o.id for o in orders_for_buyer("7007", "cy@example.com", "other-shop")] == [two_shops["both_b"].id]
    assert orders_for_buyer("1001", "ann@example.com", "other-shop") == []
    assert {o.id for o in orders_for_buyer("7007", "cy@example.com")} == {two_shops["both_a"].id, two_shops["both_b"].id}


def test_the_pages_send_each_buyer_to_their_order(web_app, two_shops):
    for key, email in (("a", "ann@example.com"), ("b", "bob@example.com")):
        client = web_app.test_client()
        response = client.post("/", data={"order_number": "1001", "email": email})
        assert response.status_code == 302 and response.location.endswith(f"/orders/{two_shops[key].id}")
        assert client.get(response.location).status_code == 200
    client = web_app.test_client()
    response = client.post("/", data={"order_number": " bk-4001 ", "email": "ann@example.com"})
    assert response.location.endswith(f"/orders/{two_shops['bk'].id}")


def test_wrong_e_mail_and_no_such_order_answer_alike(web_app, two_shops):
    answers = []
    for number, email in (("1001", "eve@example.com"), ("424242", "ann@example.com")):
        response = web_app.test_client().post("/", data={"order_number": number, "email": email})
        answers.append((response.status_code, MESSAGE in response.text))
    assert answers == [(404, True), (404, True)]
    response = web_app.test_client().post("/s/other-shop/", data={"order_number": "BK-4001", "email": "ann@example.com"})
    assert (response.status_code, MESSAGE in response.text) == (404, True)


def test_the_same_buyer_in_two_shops_chooses(web_app, two_shops):
    client = web_app.test_client()
    response = client.post("/", data={"order_number": "7007", "email": "cy@example.com"})
    assert response.status_code == 200 and "Which order?" in response.text
    assert "Test Shop" in response.text and "Other Shop" in response.text
    for key in ("both_a", "both_b"):
        assert f'/orders/{two_shops[key].id}"' in response.text
        assert client.get(f"/orders/{two_shops[key].id}").status_code == 200
    # a shop's own page asks no question
    response = web_app.test_client().post("/s/other-shop/", data={"order_number": "7007", "email": "cy@example.com"})
    assert response.status_code == 302 and response.location.endswith(f"/orders/{two_shops['both_b'].id}")


def test_a_shop_page_names_the_shop_and_an_unknown_shop_is_not_found(web_app, two_shops):
    page = web_app.test_client().get("/s/other-shop/")
    assert page.status_code == 200 and "Other Shop" in page.text and 'action="/s/other-shop/"' in page.text
    assert web_app.test_client().get("/s/no-such-shop/").status_code == 404
