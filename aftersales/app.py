"""The standalone app (``create_app``) and the extension a host marketplace mounts (``AfterSales``)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, request, session
from flask_babel import get_locale

from . import case_writes
from . import config as settings_module
from . import models  # noqa: F401  (registers the tables on db.metadata)
from .database import configure_engine
from .extensions import babel, csrf, db, login_manager, migrate
from .logs import configure_logging
from .plugins import PluginHost
from .runtime import Runtime

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


class AfterSales:
    """Mounts the after-sales module on a Flask app.

    >>> aftersales = AfterSales()
    >>> aftersales.init_app(app)          # pages under AFTERSALES_URL_PREFIX, CLI "flask aftersales"

    The app's own plugin manager, settings and workflow cache end up in
    ``app.extensions["aftersales"]`` (a :class:`Runtime`).
    """

    def __init__(self, app: Flask | None = None, *, plugins: list[Any] | None = None):
        self.extra_plugins = list(plugins or [])
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Runtime:
        for key, value in settings_module.defaults().items():
            app.config.setdefault(key, value)
        if not app.config.get("SQLALCHEMY_DATABASE_URI"):
            os.makedirs(app.instance_path, exist_ok=True)
            app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "aftersales.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = _normalise_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
        _refuse_insecure_secret_key(app)
        # Werkzeug refuses (413) a request body beyond every photo a case may hold, plus the form.
        if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's default is None: no cap at all
            app.config["MAX_CONTENT_LENGTH"] = (
                app.config["AFTERSALES_UPLOAD_MAX_BYTES"] * app.config["AFTERSALES_UPLOAD_MAX_PER_CASE"] + 1024 * 1024
            )

        db.init_app(app)
        with app.app_context():
            configure_engine(db.engine)
        case_writes.install(db.session)
        migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True, compare_type=True)
        csrf.init_app(app)
        login_manager.init_app(app)
        login_manager.login_view = "aftersales_seller.login"
        # A login cookie used from another address or browser than it was issued to is dropped.
        login_manager.session_protection = "strong"
        login_manager._session_identifier_generator = _session_fingerprint  # Flask-Login has no public setter
        babel.init_app(app, locale_selector=_select_locale)
        app.jinja_env.globals.setdefault("get_locale", get_locale)

        plugins = PluginHost()
        for plugin in self.extra_plugins:
            plugins.register(plugin, getattr(plugin, "__name__", None), source="AfterSales(plugins=...)")
        plugins.load(app.config)
        runtime = Runtime(app.config, plugins, app.instance_path)
        app.extensions["aftersales"] = runtime

        from .cli import aftersales_cli
        from .web import register_blueprints

        from .web.ratelimit import limiter

        app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["AFTERSALES_RATELIMIT_STORAGE_URI"])
        app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
        # Redis down must not take the buyers' order lookup down with it: count in this process's
        # memory until the storage answers again (limits still hold, per worker), and log.
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
        app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
        # The limiter is shared by every app in the process and remembers the last app's
        # switch; each app says its own.
        app.config.setdefault("RATELIMIT_ENABLED", True)
        limiter.init_app(app)
        # One limiter object serves every app of the process (its limits decorate our views); an
        # app's storage starts out healthy even if an earlier app's Redis was found down.
        if getattr(limiter, "_storage_dead", False):
            limiter._storage_dead = False
        register_blueprints(app, app.config.get("AFTERSALES_URL_PREFIX") or "")
        app.cli.add_command(aftersales_cli)
        return runtime


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The standalone after-sales app.

    Settings: defaults, then ``aftersales.cfg`` in the instance folder, then ``AFTERSALES_*``
    environment variables, then ``config`` (tests and embedding scripts).
    """
    config = dict(config or {})
    instance_path = config.pop("AFTERSALES_INSTANCE_PATH", None) or os.environ.get("AFTERSALES_INSTANCE_PATH")
    app = Flask(
        "aftersales",
        instance_path=str(Path(instance_path).resolve()) if instance_path else None,
        instance_relative_config=True,
        template_folder=str(TEMPLATES_DIR),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(settings_module.defaults())
    app.config.from_pyfile("aftersales.cfg", silent=True)
    app.config.update(settings_module.from_environment(settings_module.environment(), app.config))
    app.config.update(config)
    configure_logging(app.config)
    AfterSales(app, plugins=config.get("AFTERSALES_EXTRA_PLUGINS"))
    _trust_proxy_headers(app)
    return app


def _trust_proxy_headers(app: Flask) -> None:
    """Behind nginx the client address (and so the lookup rate limit) comes from X-Forwarded-For.

    Only the standalone app does this: a host marketplace handles its own proxies.
    """
    counts = {name: int(app.config.get(f"AFTERSALES_PROXY_FIX_X_{name.upper()}") or 0) for name in ("for", "proto", "host")}
    if any(counts.values()):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=counts["for"], x_proto=counts["proto"], x_host=counts["host"])  # type: ignore[method-assign]


@login_manager.user_loader
def _load_staff(login_id: str) -> Any:
    from .staff import staff_for_login_id

    return staff_for_login_id(login_id)


def _session_fingerprint() -> str | None:
    """What strong session protection compares between the login and every later request.

    The client address as the app sees it (``request.remote_addr``, corrected by ProxyFix from
    the trusted proxies only), not Flask-Login's own reading of ``X-Forwarded-For``, which any
    client can write. A session without a login (a buyer's) keeps what it holds, so it is
    neither "protected" away nor rewritten on every request."""
    if "_user_id" not in session:
        return session.get("_id")
    seen = f"{request.remote_addr}|{request.user_agent.string}"
    return hashlib.sha512(seen.encode("utf-8", "replace")).hexdigest()


def _normalise_database_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver we ship with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _refuse_insecure_secret_key(app: Flask) -> None:
    key = app.config.get("SECRET_KEY") or ""
    if app.debug or app.testing:
        return
    if key == settings_module.INSECURE_SECRET_KEY or len(str(key)) < 16:
        raise RuntimeError(
            "AFTERSALES_SECRET_KEY is not set (or shorter than 16 characters). Set it to a long random "
            "value before running in production, e.g. "
            "AFTERSALES_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _select_locale() -> str | None:
    try:
        return request.accept_languages.best_match(["en", "zh"]) or None
    except RuntimeError:
        return None
