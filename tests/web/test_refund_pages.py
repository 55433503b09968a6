"""Refunds that did not go through, on the seller's case page: a payment provider that could
not be reached (its error, sent again with one button) and a manual refund cancelled with a
reason (which the buyer reads)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from aftersales import services
from aftersales.extensions import db
from aftersales.models import Case, Order, Refund
from tests.conftest import NOW, make_order, photos
from tests.plugins.test_hooks import loaded, write_plugin
from tests.unit.test_refund_problems import GATEWAY
from tests.web.conftest import buyer_client, login, pages_app
from tests.web.test_flows import isolate_requests


@pytest.fixture
def gateway_pages(tmp_path):
    folder = write_plugin(tmp_path / "p", "unreliable_gateway", GATEWAY)
    for app in pages_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder)):
        isolate_requests(app)
        yield app


def approved(order) -> tuple[int, int]:
    case_id = services.open_case(order.lines[0].id, "refund_only", "quality", evidence=photos(), now=NOW).id
    services.act(case_id, "seller", "approve", now=NOW)
    db.session.remove()
    return case_id, db.session.scalar(select(Refund.id).where(Refund.case_id == case_id))


def test_a_gateway_error_is_shown_to_staff_who_send_the_refund_again(gateway_pages):
    case_id, refund_id = approved(make_order())
    seller = login(gateway_pages, "seller@example.com")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "Sending it to the payment provider failed" in page and "gateway.example unreachable" in page
    assert "Send it again now" in page
    assert "Mark as paid" not in page  # the provider pays it, not staff
    loaded("unreliable_gateway").down[0] = False
    answer = seller.post(f"/seller/refunds/{refund_id}/resend", follow_redirects=True)
    assert "The refund was sent to the payment provider again." in answer.text
    db.session.remove()
    assert db.session.get(Refund, refund_id).status == "succeeded"
    assert db.session.get(Case, case_id).state == "completed"


def test_a_gateway_still_down_says_so_after_sending_again(gateway_pages):
    case_id, refund_id = approved(make_order())
    seller = login(gateway_pages, "seller@example.com")
    answer = seller.post(f"/seller/refunds/{refund_id}/resend", follow_redirects=True)
    assert "The payment provider still could not be reached" in answer.text
    db.session.remove()
    assert db.session.get(Refund, refund_id).status == "pending"


def test_staff_cancel_a_manual_refund_and_the_buyer_reads_why(web_app):
    order = make_order()
    db.session.commit()
    number = order.number
    case_id, refund_id = approved(order)
    seller = login(web_app, "seller@example.com")
    assert "Cancel this refund" in seller.get(f"/seller/cases/{case_id}").text
    refused = seller.post(f"/seller/refunds/{refund_id}/cancel", data={"reason": ""}, follow_redirects=True)
    assert "This field is required." in refused.text
    answer = seller.post(f"/seller/refunds/{refund_id}/cancel", data={"reason": "Wrong account number"},
                         follow_redirects=True)
    assert "The refund was cancelled and its amount freed" in answer.text
    assert "cancelled by staff: Wrong account number" in answer.text
    assert "Send the refund again" in answer.text
    order = db.session.scalar(select(Order).where(Order.number == number))
    buyer_page = buyer_client(web_app, order).get(f"/cases/{case_id}").text
    assert "cancelled by the seller: Wrong account number" in buyer_page
