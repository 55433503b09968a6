"""An order shipped in parcels, through the buyer's pages: the order page shows each parcel and
what of a line has arrived, and the request form asks about delivered units only."""
from __future__ import annotations

from datetime import timedelta

from aftersales.extensions import db
from aftersales.models import Order, utcnow
from aftersales.orders import add_shipment, mark_shipment_delivered, upsert_order
from tests.web.conftest import buyer_client
from tests.web.test_flows import ask, opened_case_id, photo


def partly_delivered_order() -> Order:
    placed = utcnow() - timedelta(days=4)
    upsert_order({"shop": "shop", "number": "PARCEL-1", "buyer_email": "buyer@example.com", "currency": "CNY",
                  "placed_at": placed.isoformat(), "paid_at": placed.isoformat(),
                  "lines": [{"position": 1, "title": "Tea cup", "category": "books", "quantity": 5, "unit_price": 2000}]})
    add_shipment("shop", "PARCEL-1", "SF Express", "SF777", {1: 3}, at=placed + timedelta(hours=5))
    mark_shipment_delivered("shop", "PARCEL-1", "SF777", at=utcnow() - timedelta(days=2))
    add_shipment("shop", "PARCEL-1", "YTO", "YT888", {1: 2}, at=utcnow() - timedelta(days=1))
    db.session.remove()
    return db.session.query(Order).filter_by(number="PARCEL-1").one()


def test_the_order_page_lists_the_parcels_and_what_of_the_line_arrived(web_app):
    order = partly_delivered_order()
    page = buyer_client(web_app, order).get(f"/orders/{order.id}").text
    assert "SF Express SF777: delivered" in page
    assert "YTO YT888: on its way since" in page
    assert "5 of 5 shipped, 3 delivered" in page


def test_an_exchange_asked_through_the_form_is_limited_to_the_delivered_units(web_app):
    order = partly_delivered_order()
    buyer = buyer_client(web_app, order)
    refused = ask(buyer, order, "exchange", "damaged", quantity=4, evidence=[photo()])
    assert refused.status_code == 400
    assert "Choose from 1 to 3 units." in refused.text
    case_id = opened_case_id(ask(buyer, order, "exchange", "damaged", quantity=3, evidence=[photo()]))
    assert buyer.get(f"/cases/{case_id}").status_code == 200
