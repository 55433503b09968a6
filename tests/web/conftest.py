"""Fixtures for the pages: an app with CSRF off (tests/web/test_security.py turns it on),
rate limits off, and clients logged in as buyer, seller or platform operator."""
from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import g
from flask_babel import refresh

from aftersales.extensions import db
from aftersales.orders import ensure_shop
from aftersales.staff import create_staff
from tests.conftest import make_app

PASSWORD = "correct-horse-battery"


@pytest.fixture
def web_app(tmp_path):
    yield from pages_app(tmp_path)


def pages_app(tmp_path: Any, **config: Any) -> Any:
    """The pages' app (``web_app``) with ``config`` on top, e.g. a plugin folder: a generator
    for a fixture to ``yield from``."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, **config)

    @app.before_request
    def _own_login_per_request():
        # The fixture keeps one app context open for the whole test, so requests share `g`;
        # drop Flask-Login's cached user so each client is judged by its own cookie, and
        # Flask-Babel's cached language so each request chooses its own.
        g.pop("_login_user", None)
        refresh()

    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        ensure_shop("other-shop", "Other Shop", return_address="9 Elsewhere")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        create_staff(email="rival@example.com", password=PASSWORD, shop_slug="other-shop", name="Rita Rival")
        create_staff(email="platform@example.com", password=PASSWORD, name="Pat Platform")
        yield app
        db.session.remove()


def login(app: Any, email: str) -> Any:
    client = app.test_client()
    response = client.post("/staff/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.text
    return client


def buyer_client(app: Any, order: Any) -> Any:
    """A browser that looked the order up (number + e-mail) like a buyer does."""
    client = app.test_client()
    response = client.post("/", data={"order_number": order.number, "email": order.buyer_email})
    assert response.status_code == 302, response.text
    return client


def expected_version(html: str, trigger: str) -> str:
    """The version a case page's form for ``trigger`` carries."""
    match = re.search(rf'id="{trigger}-expected_version"[^>]*value="(\d+)"', html) or \
        re.search(rf'name="{trigger}-expected_version"[^>]*value="(\d+)"', html)
    assert match, f"no form for {trigger} on the page"
    return match.group(1)


def deadline_text(page: str) -> str:
    """The case page's deadline sentence, as a person reads it."""
    match = re.search(r'<p class="deadline">(.*?)</p>', page, re.S)
    assert match, page
    return html.unescape(" ".join(match.group(1).split()))
