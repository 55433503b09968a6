"""Mounted in a host that has its own Flask-SQLAlchemy (issue 10): the module's tables and the
host's live in one database and one session; a host that forgets ``db=`` is told what to do."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aftersales import AfterSales, hookimpl, services
from aftersales.extensions import db, own_db
from aftersales.models import Case
from aftersales.staff import staff_for_host_user
from tests.conftest import NOW, app_settings, make_order
from tests.support.databases import track


class HostBase(DeclarativeBase):
    pass


class HostOrder(HostBase):
    """The marketplace's own orders table, named as a marketplace names it."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32))


def host_app(tmp_path, **extra):
    settings = app_settings(tmp_path)
    app = Flask("marketplace", instance_path=settings.pop("AFTERSALES_INSTANCE_PATH"))
    app.config.update(settings, **extra)
    host_db = SQLAlchemy(model_class=HostBase)
    host_db.init_app(app)
    return app, host_db


def test_the_host_database_holds_both_and_one_session_serves_both(tmp_path):
    app, host_db = host_app(tmp_path, AFTERSALES_URL_PREFIX="/after-sales")
    AfterSales(app, db=host_db)
    with app.app_context():
        track(host_db.engine)
        host_db.create_all()   # the host's tables
        db.create_all()        # the module's
        assert db.session is host_db.session and db.engine is host_db.engine
        tables = set(inspect(host_db.engine).get_table_names())
        assert {"orders", "aftersales_orders", "aftersales_cases"} <= tables
        host_db.session.add(HostOrder(reference="M-1"))
        host_db.session.commit()
        case = services.open_case(make_order().lines[0].id, "return_refund", "no_reason", now=NOW)
        services.act(case.id, "seller", "approve", now=NOW)
        host_db.session.remove()
        assert host_db.session.scalar(select(HostOrder.reference)) == "M-1"
        assert host_db.session.get(Case, case.id).state == "awaiting_return"
        assert app.extensions["sqlalchemy"] is host_db and own_db not in app.extensions.values()
    assert app.test_client().get("/after-sales/workflow").status_code == 200


def test_a_host_with_its_own_database_must_pass_it(tmp_path):
    app, _host_db = host_app(tmp_path)
    with pytest.raises(RuntimeError, match=r"AfterSales\(app, db=your_db\)"):
        AfterSales(app)


def test_a_host_database_not_yet_initialised_is_initialised_once(tmp_path):
    settings = app_settings(tmp_path)
    app = Flask("marketplace", instance_path=settings.pop("AFTERSALES_INSTANCE_PATH"))
    app.config.update(settings)
    host_db = SQLAlchemy(model_class=HostBase)
    AfterSales(app, db=host_db)
    assert app.extensions["sqlalchemy"] is host_db
    with app.app_context():
        track(host_db.engine)
        db.create_all()
        assert "aftersales_cases" in inspect(db.engine).get_table_names()


def marketplace(tmp_path):
    """A host with its own pages: one with a script, a JSON endpoint, its own 404 page."""
    app, host_db = host_app(tmp_path, AFTERSALES_URL_PREFIX="/after-sales", WTF_CSRF_ENABLED=True)

    @app.get("/")
    def home():
        return '<html><script src="/static/cart.js"></script>marketplace home</html>'

    @app.post("/api/cart")
    def add_to_cart():
        return {"items": 1}

    @app.errorhandler(404)
    def host_not_found(error):
        return "marketplace: no such page", 404

    AfterSales(app, db=host_db)
    with app.app_context():
        track(host_db.engine)
        host_db.create_all()
        db.create_all()
    return app


def test_mounted_the_host_keeps_its_headers_csrf_and_error_pages(tmp_path):
    app = marketplace(tmp_path)
    client = app.test_client()
    home = client.get("/")
    assert home.status_code == 200 and "Content-Security-Policy" not in home.headers
    assert client.post("/api/cart", json={"sku": "X"}).json == {"items": 1}  # no CSRF token needed
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and missing.text == "marketplace: no such page"
    assert "Content-Security-Policy" not in missing.headers
    assert app.config.get("MAX_CONTENT_LENGTH") is None
    assert "csrf" not in app.extensions


def test_mounted_the_module_pages_keep_theirs(tmp_path):
    app = marketplace(tmp_path)
    client = app.test_client()
    page = client.get("/after-sales/")
    assert page.status_code == 200 and "script-src 'none'" in page.headers["Content-Security-Policy"]
    refused = client.post("/after-sales/", data={"order_number": "1", "email": "a@example.com"})
    assert refused.status_code == 400 and "Content-Security-Policy" in refused.headers  # no CSRF token
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    looked_up = client.post("/after-sales/", data={"csrf_token": token, "order_number": "1", "email": "a@example.com"})
    assert looked_up.status_code == 404 and "We could not find an order" in looked_up.text  # the module's own answer
    not_ours = client.get("/after-sales/cases/12345")
    assert not_ours.status_code == 404 and "marketplace" not in not_ours.text
    assert "Content-Security-Policy" in not_ours.headers
    limit = int(app.config["AFTERSALES_UPLOAD_MAX_BYTES"]) * int(app.config["AFTERSALES_UPLOAD_MAX_PER_CASE"]) + 1024 * 1024
    too_big = client.post("/after-sales/", data=b"x" * (limit + 1),
                          content_type="application/x-www-form-urlencoded")
    assert too_big.status_code == 413


class HostUser:
    """A marketplace's own user (Flask-Login), with the shop it sells for."""

    def __init__(self, user_id: str, email: str, shop: str | None, operator: bool = False):
        self.id, self.email, self.shop, self.operator = user_id, email, shop, operator
        self.is_authenticated, self.is_active, self.is_anonymous = True, True, False

    def get_id(self) -> str:
        return self.id


HOST_USERS = {"7": HostUser("7", "hana@market.example", "shop"), "8": HostUser("8", "olu@market.example", None, True)}


class HostIdentity:
    """The host's answer to "who is this?" for the module, through the public hook."""

    @hookimpl
    def aftersales_current_staff(self, request):
        from flask_login import current_user

        if not current_user.is_authenticated:
            return None
        return staff_for_host_user(email=current_user.email, name=f"Host user {current_user.id}",
                                   shop=current_user.shop, platform=current_user.operator)


def market_with_logins(tmp_path):
    from flask_login import LoginManager, login_user

    app, host_db = host_app(tmp_path, AFTERSALES_URL_PREFIX="/after-sales")
    logins = LoginManager(app)
    logins.login_view = "host_login"
    logins.user_loader(HOST_USERS.get)

    @app.get("/login/<user_id>")
    def host_login(user_id="7"):
        login_user(HOST_USERS[user_id])
        return "logged in to the marketplace"

    AfterSales(app, db=host_db, plugins=[HostIdentity()])
    with app.app_context():
        track(host_db.engine)
        db.create_all()
    return app


def test_a_host_user_mapped_to_shop_staff_works_the_queue(tmp_path, monkeypatch):
    app = market_with_logins(tmp_path)
    with app.app_context():
        case = services.open_case(make_order().lines[0].id, "return_refund", "no_reason", now=NOW)
        case_id = case.id
        db.session.remove()
    client = app.test_client()
    assert client.get("/login/7").status_code == 200
    queue = client.get("/after-sales/seller/")
    assert queue.status_code == 200 and "Test Shop" in queue.text and "Host user 7" in queue.text
    assert "Log out" not in queue.text  # the host logs its people out
    page = client.get(f"/after-sales/seller/cases/{case_id}")
    assert page.status_code == 200
    version = re.search(r'name="approve-expected_version"[^>]*value="(\d+)"', page.text).group(1)
    token = re.search(r'name="approve-csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    acted = client.post(f"/after-sales/seller/cases/{case_id}/act/approve",
                        data={"approve-csrf_token": token, "approve-expected_version": version, "approve-return_address": "1 Return Road"})
    assert acted.status_code == 302
    with app.app_context():
        from aftersales.models import CaseEvent, StaffUser

        staff = db.session.scalar(select(StaffUser).where(StaffUser.email == "hana@market.example"))
        approve = db.session.scalar(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.trigger == "approve"))
        assert (staff.role, staff.shop.slug, approve.actor_id) == ("seller", "shop", str(staff.id))
        assert staff.check_password("") is False and staff.check_password("!host") is False
    operator = app.test_client()
    operator.get("/login/8")
    assert operator.get("/after-sales/platform/").status_code == 200
    assert client.get("/after-sales/platform/").status_code == 404  # a seller is no operator


def test_with_a_host_login_the_module_login_stands_aside(tmp_path):
    app = market_with_logins(tmp_path)
    client = app.test_client()
    assert client.get("/after-sales/seller/").status_code == 403  # nobody: log in to the marketplace
    assert client.get("/after-sales/staff/login").status_code == 404
    assert app.login_manager.login_view == "host_login"
    assert "Staff login" not in client.get("/after-sales/").text


def csrf_host(tmp_path, **config):
    from flask_wtf import CSRFProtect

    app, host_db = host_app(tmp_path, AFTERSALES_URL_PREFIX="/after-sales", WTF_CSRF_ENABLED=True, **config)
    CSRFProtect(app)
    AfterSales(app, db=host_db)
    with app.app_context():
        track(host_db.engine)
        db.create_all()
    return app


def test_the_body_cap_holds_before_a_hosts_own_csrf_check_reads_the_form(tmp_path):
    app = csrf_host(tmp_path)
    client = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/after-sales/").text).group(1)
    limit = int(app.config["AFTERSALES_UPLOAD_MAX_BYTES"]) * int(app.config["AFTERSALES_UPLOAD_MAX_PER_CASE"]) + 1024 * 1024
    too_big = client.post("/after-sales/", data={"csrf_token": token, "order_number": "1", "email": "a@example.com",
                                                  "filler": "x" * (limit + 1)})
    assert too_big.status_code == 413


def test_a_host_csrf_that_checks_nothing_by_default_leaves_the_check_to_the_module(tmp_path):
    app = csrf_host(tmp_path, WTF_CSRF_CHECK_DEFAULT=False)
    client = app.test_client()
    client.get("/after-sales/")
    assert client.post("/after-sales/forget").status_code == 400  # no token: refused, not "forgotten"


def test_a_host_user_does_not_take_over_a_module_login(tmp_path):
    from aftersales.orders import ensure_shop
    from aftersales.staff import StaffProblem, create_staff

    app, host_db = host_app(tmp_path)
    AfterSales(app, db=host_db)
    with app.app_context():
        track(host_db.engine)
        db.create_all()
        ensure_shop("shop", "Shop")
        db.session.commit()
        create_staff(email="pat@example.com", password="a-long-password", name="Pat")  # a platform login
        with pytest.raises(StaffProblem, match="already has a staff login"):
            staff_for_host_user(email="Pat@Example.com", shop="shop")
        staff = staff_for_host_user(email="hana@example.com", shop="shop")
        assert staff_for_host_user(email="HANA@example.com", shop="shop").id == staff.id  # addresses ignore case
