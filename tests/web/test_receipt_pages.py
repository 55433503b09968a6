"""A return that comes back short or damaged, through the forms: the missing unit stays on the
case pages with what resolves it, a damaged unit goes to the platform, and a seller may close a
received return without a refund (the buyer may escalate)."""
from __future__ import annotations

from tests.web.conftest import login
from tests.web.test_flows import act_ok, case_row, forms_on, mark_paid, open_through_the_page, recent_order


def returned(web_app, quantity: int = 2):
    order = recent_order(quantity=quantity, unit_price=3000)
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason", quantity=quantity)
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "approve", return_address="1 Return Road")
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="SF1")
    return buyer, seller, case_id


def test_a_missing_unit_is_shown_asked_about_and_refunded_later_with_the_rest(web_app):
    buyer, seller, case_id = returned(web_app)
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1", damaged_quantity="0")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "Missing: 1 of the 2 units announced did not arrive." in page
    assert {"refund", "ask_about_missing", "dispute_goods"} <= forms_on(page)
    assert "Refund the missing units too" in page
    assert "The seller received 1 of the 2 units you sent" in buyer.get(f"/cases/{case_id}").text

    act_ok(seller, "seller", case_id, "ask_about_missing", note="Only one mug was in the parcel.")
    buyer_page = buyer.get(f"/cases/{case_id}").text
    assert "Only one mug was in the parcel." in buyer_page and "answer_about_missing" in forms_on(buyer_page)
    act_ok(buyer, "buyer", case_id, "answer_about_missing", note="The other one is in a second box, SF2.")
    assert "The other one is in a second box, SF2." in seller.get(f"/seller/cases/{case_id}").text

    act_ok(seller, "seller", case_id, "refund", missing="refund")
    mark_paid(seller, case_id)
    case = case_row(case_id)
    assert case.state == "completed" and [r.amount for r in case.refunds] == [6000]


def test_a_damaged_unit_on_receipt_goes_to_the_platform(web_app):
    _buyer, seller, case_id = returned(web_app)
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="2", damaged_quantity="1",
           reason="One mug arrived with its handle broken.")
    assert case_row(case_id).state == "escalated"
    platform = login(web_app, "platform@example.com")
    page = platform.get(f"/platform/cases/{case_id}").text
    assert "One mug arrived with its handle broken." in page
    assert "Damaged on arrival: 1 unit(s)." in seller.get(f"/seller/cases/{case_id}").text


def test_a_seller_closes_a_received_return_without_a_refund_and_the_buyer_escalates(web_app):
    buyer, seller, case_id = returned(web_app, quantity=1)
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")
    act_ok(seller, "seller", case_id, "refuse_after_receipt", reason="A different, older model came back.")
    page = buyer.get(f"/cases/{case_id}").text
    assert "A different, older model came back." in page
    assert {"escalate", "accept_refusal"} <= forms_on(page)
    act_ok(buyer, "buyer", case_id, "escalate", statement="It is the model I bought; photos attached.")
    assert case_row(case_id).state == "escalated"
