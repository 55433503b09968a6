"""Configuration, the production secret-key guard, and mounting into a host app."""
from __future__ import annotations

import pytest
from flask import Flask

from aftersales import AfterSales, create_app
from aftersales.extensions import db


def base_config(tmp_path, **extra):
    config = {
        "AFTERSALES_INSTANCE_PATH": str(tmp_path / "instance"),
        "AFTERSALES_PLUGINS_DIR": [],
        "AFTERSALES_LOAD_ENTRY_POINTS": False,
    }
    config.update(extra)
    return config


def test_production_refuses_to_start_without_a_secret_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AFTERSALES_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="AFTERSALES_SECRET_KEY"):
        create_app(base_config(tmp_path))
    with pytest.raises(RuntimeError, match="AFTERSALES_SECRET_KEY"):
        create_app(base_config(tmp_path, SECRET_KEY="short"))


def test_secret_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AFTERSALES_SECRET_KEY", "a-real-secret-key-from-env-123")
    app = create_app(base_config(tmp_path))
    assert app.config["SECRET_KEY"] == "a-real-secret-key-from-env-123"


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("AFTERSALES_DATABASE_URL", raising=False)
    app = create_app(base_config(tmp_path, TESTING=True))
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///" + str(tmp_path / "instance" / "aftersales.sqlite3")
    assert app.instance_path == str(tmp_path / "instance")


def test_settings_load_defaults_then_instance_file_then_environment(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "aftersales.cfg").write_text("AFTERSALES_NO_REASON_DAYS = 14\nAFTERSALES_QUALITY_DAYS = 30\n")
    monkeypatch.setenv("AFTERSALES_QUALITY_DAYS", "20")
    monkeypatch.setenv("AFTERSALES_DATABASE_URL", "postgresql://u@127.0.0.1/x")
    app = create_app(base_config(tmp_path, TESTING=True))
    assert app.config["AFTERSALES_NO_REASON_DAYS"] == 14  # instance file
    assert app.config["AFTERSALES_QUALITY_DAYS"] == 20  # environment beats the file, typed as the default
    assert app.config["AFTERSALES_SELLER_RESPONSE_HOURS"] == 48  # default
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@127.0.0.1/x"


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AFTERSALES_QUALITY_DAYS", "fifteen")
    with pytest.raises(RuntimeError, match="AFTERSALES_QUALITY_DAYS"):
        create_app(base_config(tmp_path, TESTING=True))


def test_instance_path_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AFTERSALES_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    app = create_app({"TESTING": True, "AFTERSALES_PLUGINS_DIR": [], "AFTERSALES_LOAD_ENTRY_POINTS": False})
    assert app.instance_path == str(tmp_path / "elsewhere")
    assert "elsewhere" in app.config["SQLALCHEMY_DATABASE_URI"]


def test_host_app_mounts_the_module_under_a_prefix(tmp_path):
    host = Flask("marketplace", instance_path=str(tmp_path / "host"))
    host.config.update(
        TESTING=True, SECRET_KEY="host-secret-key-0123456789",
        SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "host.sqlite3"),
        AFTERSALES_URL_PREFIX="/after-sales", AFTERSALES_PLUGINS_DIR=[], AFTERSALES_LOAD_ENTRY_POINTS=False,
    )

    @host.get("/")
    def home():
        return "marketplace home"

    AfterSales(host)
    with host.app_context():
        db.create_all()
    client = host.test_client()
    assert client.get("/").text == "marketplace home"
    assert client.get("/after-sales/healthz").json == {"status": "ok"}
    assert "aftersales" in host.extensions
    assert "aftersales" in host.cli.commands
    page = client.get("/after-sales/workflow?category=books&kind=exchange")
    assert page.status_code == 200 and "Replacement on its way" in page.text


def test_host_app_pushes_orders_through_the_python_api(tmp_path):
    from datetime import datetime, timezone

    from aftersales.orders import ensure_shop, mark_delivered, mark_shipped, upsert_order

    app = create_app(base_config(tmp_path, TESTING=True, SQLALCHEMY_DATABASE_URI="sqlite:///" + str(tmp_path / "x.db")))
    with app.app_context():
        db.create_all()
        ensure_shop("s", "Shop")
        db.session.commit()
        order = upsert_order({
            "shop": "s", "number": "A1", "buyer_email": "Buyer@Example.com", "currency": "CNY", "discount": 100,
            "lines": [{"title": "Mug", "category": "kitchen", "quantity": 2, "unit_price": 1000},
                      {"title": "Plate", "category": "kitchen", "quantity": 1, "unit_price": 1000}],
        })
        assert [line.paid_amount for line in order.lines] == [1933, 967]  # exact split of the discount
        assert order.buyer_email == "buyer@example.com"
        mark_shipped("s", "A1", datetime(2026, 11, 1, tzinfo=timezone.utc))
        order = mark_delivered("s", "A1", datetime(2026, 11, 3, 8, tzinfo=timezone.utc))
        assert order.delivered_at == datetime(2026, 11, 3, 8, tzinfo=timezone.utc)
        again = upsert_order({
            "shop": "s", "number": "A1", "buyer_email": "buyer@example.com", "currency": "CNY",
            "lines": [{"title": "Mug", "category": "kitchen", "quantity": 2, "unit_price": 1000}],
        })
        assert again.id == order.id and len(again.lines) == 1


def test_behind_a_proxy_the_client_address_comes_from_x_forwarded_for(tmp_path):
    from flask import request

    def remote_addr(app):
        @app.get("/whoami")
        def whoami():
            return request.remote_addr

        return app.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.9"},
                                     environ_base={"REMOTE_ADDR": "127.0.0.1"}).text

    trusting = create_app(base_config(tmp_path / "a", TESTING=True, AFTERSALES_PROXY_FIX_X_FOR=1))
    direct = create_app(base_config(tmp_path / "b", TESTING=True))
    assert remote_addr(trusting) == "203.0.113.9"
    assert remote_addr(direct) == "127.0.0.1"  # nobody trusted: a forged header changes nothing


def test_passwords_are_hashed_with_scrypt_unless_the_setting_says_otherwise(tmp_path):
    from aftersales.staff import authenticate, create_staff
    from tests.conftest import make_app

    app = make_app(tmp_path, AFTERSALES_PASSWORD_HASH="scrypt")  # the default (the suite's own is cheaper)
    with app.app_context():
        first = create_staff(email="first@example.com", password="correct-horse-battery")
        assert first.password_hash.startswith("scrypt:")
        app.config["AFTERSALES_PASSWORD_HASH"] = "pbkdf2:sha256:600000"  # the shop changes the setting
        second = create_staff(email="second@example.com", password="correct-horse-battery")
        assert second.password_hash.startswith("pbkdf2:sha256:600000$")
        # A hash made before the setting changed keeps its own method and still logs in.
        assert authenticate("first@example.com", "correct-horse-battery") is not None
        assert authenticate("first@example.com", "wrong-horse-battery") is None
        db.session.remove()


def test_defaults_hash_passwords_with_scrypt():
    from aftersales.config import defaults

    assert defaults()["AFTERSALES_PASSWORD_HASH"] == "scrypt"


@pytest.mark.parametrize("method", ["md5", "scrypt:1", "pbkdf2:no_such_digest:1000", "pbkdf2:sha256:many", "", 3, "scrypt:3:8:1", "pbkdf2:sha256:0", "pbkdf2:shake_128:1000"])
def test_a_password_hash_method_werkzeug_would_refuse_stops_the_start(tmp_path, method):
    with pytest.raises(RuntimeError, match="AFTERSALES_PASSWORD_HASH"):
        create_app(base_config(tmp_path, SECRET_KEY="a-real-secret-key-0123456789", AFTERSALES_PASSWORD_HASH=method))
