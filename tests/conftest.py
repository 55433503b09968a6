"""Fixtures: an app per test on its own temporary database, and order factories.

The database is a SQLite file per app, or with ``AFTERSALES_TEST_DATABASE=postgres`` a fresh
PostgreSQL schema per app (tests/support/databases.py).
"""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aftersales import create_app
from aftersales.extensions import db
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from tests.support.databases import (
    backend, close_connections, database_settings, drop_everything, postgres_available, postgres_url, track,
)

SAMPLE_PLUGINS = Path(__file__).parent / "plugins" / "sample_plugins"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def app_settings(tmp_path: Path, **config: Any) -> dict[str, Any]:
    """Settings of a test app: its own instance folder and SQLite file, no plugins unless asked."""
    settings = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789",
        "AFTERSALES_INSTANCE_PATH": str(tmp_path / "instance"),
        **database_settings(tmp_path),
        "AFTERSALES_PLUGINS_DIR": [],
        "AFTERSALES_LOAD_ENTRY_POINTS": False,
        # Many tests record photos by metadata alone (photos() below), rows without files on
        # purpose; the sweeper would reconcile them away. tests/unit/test_reconcile.py turns it on.
        "AFTERSALES_UPLOAD_RECONCILE_MINUTES": 0,
        # Passwords hashed cheaply: scrypt's 0.1 s per hash, paid by every staff account and
        # login of the suite, is the cost of the real thing, not what the tests check.
        # tests/unit/test_cli.py checks the default method and the setting.
        "AFTERSALES_PASSWORD_HASH": "pbkdf2:sha256:1000",
    }
    settings.update(config)
    return settings


def make_app(tmp_path: Path, **config: Any):
    """A test app with its tables created (by the models; tests/test_migrations.py covers Alembic)."""
    app = create_app(app_settings(tmp_path, **config))
    with app.app_context():
        track(db.engine)
        db.create_all()
    return app


@pytest.fixture(autouse=True)
def _close_test_databases():
    yield
    close_connections()


def pytest_report_header(config: Any) -> str:
    if backend() == "postgres":
        return f"aftersales test database: PostgreSQL {postgres_url()} (a schema per test app)"
    return "aftersales test database: SQLite (a file per test app)"


def pytest_sessionstart(session: Any) -> None:
    if backend() == "postgres":
        problem = postgres_available()
        if problem:
            raise pytest.UsageError(problem)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """On the PostgreSQL half, skip what the database cannot change (marked
    ``database_independent``): it ran on the SQLite half of the same ``make test``."""
    if backend() != "postgres":
        return
    once = pytest.mark.skip(reason="database-independent: checked once, on the SQLite half")
    for item in items:
        if item.get_closest_marker("database_independent"):
            item.add_marker(once)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    drop_everything()


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def plugin_app(tmp_path):
    """An app with the sample test plugins of tests/plugins/sample_plugins loaded from their folder."""
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SAMPLE_PLUGINS))
    with app.app_context():
        yield app
        db.session.remove()


_numbers = itertools.count(1)


def make_order(
    *,
    category: str = "books",
    quantity: int = 1,
    unit_price: int = 10000,
    delivered: datetime | None = NOW - timedelta(days=2),
    shipped: bool = True,
    attributes: dict | None = None,
    insured: bool = False,
    lines: list[LineInput] | None = None,
    shop: str = "shop",
    tax_paid: int = 0,
    shipping_fee: int = 0,
):
    """An order of one line (or ``lines``), paid, shipped and delivered two days before NOW."""
    ensure_shop(shop, "Test Shop", return_address="1 Return Road")
    placed = (delivered or NOW) - timedelta(days=3)
    order = upsert_order(OrderInput(
        shop=shop, number=f"T-{next(_numbers)}", buyer_email="buyer@example.com", currency="CNY",
        lines=lines or [LineInput(1, "Item", category, quantity, unit_price, attributes=attributes or {}, tax_paid=tax_paid)],
        placed_at=placed, paid_at=placed,
        shipped_at=placed + timedelta(hours=6) if shipped or delivered else None,
        delivered_at=delivered, shipping_insured=insured, shipping_fee=shipping_fee,
    ))
    return order


@pytest.fixture
def order_factory(app):
    return make_order


PHOTO = {"storage_key": "k", "content_type": "image/jpeg", "byte_size": 1000, "sha256": "0" * 64}


def photos(count: int = 1) -> list[dict]:
    return [dict(PHOTO, storage_key=f"photo-{next(_numbers)}") for _ in range(count)]
