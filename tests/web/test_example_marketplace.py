"""The example host (examples/marketplace/): a marketplace with its own users, orders, login and
pages, the after-sales module mounted at /after-sales on the same database (issue 10)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import inspect, select

from aftersales.extensions import db as module_db
from aftersales.models import Case, CaseEvent, StaffUser
from examples.marketplace.app import Order, User, create_marketplace, db, seed_marketplace
from tests.support.databases import database_settings, track


@pytest.fixture
def market(tmp_path):
    app = create_marketplace({
        "TESTING": True, **database_settings(tmp_path),
        "AFTERSALES_PLUGINS_DIR": [], "AFTERSALES_LOAD_ENTRY_POINTS": False, "AFTERSALES_UPLOAD_RECONCILE_MINUTES": 0,
    }, instance_path=str(tmp_path / "instance"))
    with app.app_context():
        track(db.engine)
        seed_marketplace()
        db.session.remove()
    return app


def logged_in(app, email):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": "marketplace"})
    assert response.status_code == 302, response.text
    return client


def field(page, name):
    return re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', page).group(1)


def test_the_host_tables_and_the_module_tables_share_one_database(market):
    with market.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"users", "orders", "carts"} <= tables  # the marketplace's
        assert {"aftersales_orders", "aftersales_cases", "aftersales_alembic_version"} <= tables  # the module's
        assert "alembic_version" not in tables
        assert module_db.session is db.session
        assert db.session.scalar(select(Order.number).where(Order.shop == "tea-house")) == "1001"


def test_the_host_pages_stay_the_hosts(market):
    client = market.test_client()
    home = client.get("/")
    assert home.status_code == 200 and "cart.js" in home.text
    assert "Content-Security-Policy" not in home.headers and "X-Frame-Options" not in home.headers
    assert client.post("/api/cart", json={"sku": "tea-250"}).json == {"items": 1}  # no CSRF token
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "Marketplace: this page does not exist" in missing.text
    assert client.get("/account").location.startswith("/login")  # the host's login_view
    assert market.login_manager.login_view == "login"


def test_the_module_pages_keep_csrf_csp_and_their_error_pages(market):
    client = market.test_client()
    lookup = client.get("/after-sales/")
    assert lookup.status_code == 200 and "script-src 'none'" in lookup.headers["Content-Security-Policy"]
    refused = client.post("/after-sales/", data={"order_number": "1001", "email": "buyer@market.example"})
    assert refused.status_code == 400  # no CSRF token
    found = client.post("/after-sales/", data={"csrf_token": field(lookup.text, "csrf_token"),
                                               "order_number": " 1001 ", "email": "buyer@market.example"})
    assert found.status_code == 302
    order_page = client.get(found.location)
    assert order_page.status_code == 200 and "Clay teapot" in order_page.text
    not_yours = client.get("/after-sales/cases/999999")
    assert not_yours.status_code == 404 and "Marketplace" not in not_yours.text
    assert "Content-Security-Policy" in not_yours.headers


def test_a_marketplace_seller_works_the_after_sales_queue(market):
    buyer = market.test_client()
    lookup = buyer.get("/after-sales/")
    order_url = buyer.post("/after-sales/", data={"csrf_token": field(lookup.text, "csrf_token"),
                                                  "order_number": "1001", "email": "buyer@market.example"}).location
    request_url = re.search(r'href="(/after-sales/orders/\d+/lines/\d+/request\?kind=return_refund)"', buyer.get(order_url).text).group(1)
    request_url = request_url.replace("&amp;", "&")
    form = buyer.get(request_url)
    assert form.status_code == 200
    sent = buyer.post(request_url, data={"csrf_token": field(form.text, "csrf_token"), "kind": "return_refund",
                                         "reason": "no_reason", "quantity": "1", "amount": "128.00", "description": ""})
    assert sent.status_code == 302, sent.text
    with market.app_context():
        case_id = module_db.session.scalar(select(Case.id))

    seller = logged_in(market, "seller@market.example")
    queue = seller.get("/after-sales/seller/")
    assert queue.status_code == 200 and "Tea House" in queue.text and "Sam of Tea House" in queue.text
    page = seller.get(f"/after-sales/seller/cases/{case_id}")
    approved = seller.post(f"/after-sales/seller/cases/{case_id}/act/approve", data={
        "approve-csrf_token": field(page.text, "approve-csrf_token"),
        "approve-expected_version": field(page.text, "approve-expected_version"),
        "approve-return_address": "8 Leaf Lane, Hangzhou"})
    assert approved.status_code == 302
    with market.app_context():
        staff = module_db.session.scalar(select(StaffUser).where(StaffUser.email == "seller@market.example"))
        event = module_db.session.scalar(select(CaseEvent).where(CaseEvent.trigger == "approve"))
        assert (event.actor_type, event.actor_id, staff.shop.slug) == ("seller", str(staff.id), "tea-house")
        assert module_db.session.get(Case, case_id).state == "awaiting_return"
        assert db.session.scalar(select(User.shop).where(User.email == "seller@market.example")) == "tea-house"

    other_shop = logged_in(market, "books@market.example")
    assert other_shop.get(f"/after-sales/seller/cases/{case_id}").status_code == 404  # not their shop's
    assert logged_in(market, "operator@market.example").get("/after-sales/platform/").status_code == 200
    assert market.test_client().get("/after-sales/seller/").status_code == 403  # nobody logged in


def test_the_two_shops_order_1001_each_reach_their_own_buyer(market):
    for email, title in (("buyer@market.example", "Clay teapot"), ("reader@market.example", "A novel")):
        client = market.test_client()
        lookup = client.get("/after-sales/")
        found = client.post("/after-sales/", data={"csrf_token": field(lookup.text, "csrf_token"),
                                                   "order_number": "1001", "email": email})
        assert found.status_code == 302
        assert title in client.get(found.location).text
