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
from .i18n import TRANSLATIONS_DIR
from .extensions import EXTENSION_KEY, babel, csrf, login_manager, migrate, own_db
from .logs import configure_logging
from .mail import MailPlugin, check_mail_settings
from .webhooks import WebhookPlugin
from .plugins import PluginHost
from .resources import MIGRATIONS_DIR, TEMPLATES_DIR
from .runtime import Runtime
from .staff import check_password_hash_method



class AfterSales:
    """Mounts the after-sales module on a Flask app.

    >>> aftersales = AfterSales()
    >>> aftersales.init_app(app)          # pages under AFTERSALES_URL_PREFIX, CLI "flask aftersales"

    The app's own plugin manager, settings and workflow cache end up in
    ``app.extensions["aftersales"]`` (a :class:`Runtime`).
    """

    def __init__(self, app: Flask | None = None, *, plugins: list[Any] | None = None, db: Any = None,
                 standalone: bool = False):
        self.extra_plugins = list(plugins or [])
        self.host_db = db
        #: ``create_app`` owns the whole app; a host mounting the module keeps its own app-wide
        #: headers, CSRF, error pages, body cap, login manager and locale selector.
        self.standalone = standalone
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Runtime:
        for key, value in settings_module.defaults().items():
            app.config.setdefault(key, value)
        if not app.config.get("SQLALCHEMY_DATABASE_URI"):
            os.makedirs(app.instance_path, exist_ok=True)
            app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "aftersales.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = _normalise_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
        _refuse_insecure_secret_key(app, "AFTERSALES_SECRET_KEY" if self.standalone else "SECRET_KEY")
        check_password_hash_method(app.config["AFTERSALES_PASSWORD_HASH"])
        check_mail_settings(app.config)

        database = self._database(app)
        with app.app_context():
            configure_engine(database.engine)
        case_writes.install(database.session)
        if "migrate" not in app.extensions:  # a host's own Flask-Migrate keeps its slot
            migrate.init_app(app, database, directory=str(MIGRATIONS_DIR), render_as_batch=True, compare_type=True)
        if self.standalone:
            csrf.init_app(app)  # mounted, the module's pages check their own (web._module_request)
        if self.standalone or getattr(app, "login_manager", None) is None:
            login_manager.init_app(app)
            # A login cookie used from another address or browser than it was issued to is dropped.
            login_manager.session_protection = "strong"
            login_manager._session_identifier_generator = _session_fingerprint  # Flask-Login has no public setter
        if self.standalone:
            login_manager.login_view = "aftersales_seller.login"
        else:  # only the module's staff pages send people to the module's login
            for name in ("aftersales_seller", "aftersales_platform"):
                app.login_manager.blueprint_login_views.setdefault(name, "aftersales_seller.login")  # type: ignore[attr-defined]
        if self.standalone:
            # The standalone app's default domain is the module's: list_translations() offers its languages.
            app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
            app.config.setdefault("BABEL_DOMAIN", "aftersales")
            babel.init_app(app, locale_selector=_select_locale, timezone_selector=_select_timezone)
        elif "babel" not in app.extensions:  # a host's own Babel keeps choosing the locale
            babel.init_app(app, locale_selector=_select_module_locale, timezone_selector=_select_timezone)
        app.jinja_env.globals.setdefault("get_locale", get_locale)

        plugins = PluginHost()
        for plugin in self.extra_plugins:
            plugins.register(plugin, getattr(plugin, "__name__", None), source="AfterSales(plugins=...)")
        plugins.load(app.config)
        # The built-in channels, after the others (AFTERSALES_DISABLED_PLUGINS may name them too).
        if app.config.get("AFTERSALES_MAIL_SERVER"):
            plugins.register(MailPlugin(app.config), "aftersales.email", source="AFTERSALES_MAIL_SERVER")
        plugins.register(WebhookPlugin(app.config), "aftersales.webhooks", source="built in")
        runtime = Runtime(app.config, plugins, app.instance_path, standalone=self.standalone)
        app.extensions["aftersales"] = runtime

        from .cli import aftersales_cli
        from .web import register_blueprints

        from .web.ratelimit import limiter

        # Flask-Limiter reads RATELIMIT_* from the app's config: they are set here unless the host
        # runs a limiter of its own, whose settings then stay as the host made them.
        if self.standalone or "limiter" not in app.extensions:
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
        register_blueprints(app, app.config.get("AFTERSALES_URL_PREFIX") or "", standalone=self.standalone)
        app.cli.add_command(aftersales_cli)
        return runtime


    def _database(self, app: Flask) -> Any:
        """The Flask-SQLAlchemy instance the module's tables and sessions use: the host's when
        it passes ``db=`` (already initialised on ``app``, or initialised here), else the
        module's own. A host that has its own instance on the app must pass it: two cannot
        share one app."""
        host_db = self.host_db
        if host_db is None:
            registered = app.extensions.get("sqlalchemy")
            if registered is not None and registered is not own_db:
                raise RuntimeError("this app has its own Flask-SQLAlchemy instance: mount the module with "
                                   "AfterSales(app, db=your_db) so both use it")
            host_db = own_db
        if app.extensions.get("sqlalchemy") is None:
            host_db.init_app(app)
        elif app.extensions["sqlalchemy"] is not host_db:
            raise RuntimeError("AfterSales(app, db=...) must be the Flask-SQLAlchemy instance initialised on this app")
        app.extensions[EXTENSION_KEY] = host_db
        return host_db


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
    AfterSales(app, plugins=config.get("AFTERSALES_EXTRA_PLUGINS"), standalone=True)
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


def _refuse_insecure_secret_key(app: Flask, setting: str) -> None:
    key = app.config.get("SECRET_KEY") or ""
    if app.debug or app.testing:
        return
    if key == settings_module.INSECURE_SECRET_KEY or len(str(key)) < 16:  # it signs the buyers' access too
        raise RuntimeError(
            f"{setting} is not set (or shorter than 16 characters). Set it to a long random "
            "value before running in production, e.g. "
            f"{setting}=$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _select_locale() -> str | None:
    from .web.language import select_locale

    return select_locale()


def _select_timezone() -> str | None:
    from .web.language import select_timezone

    return select_timezone()


def _select_module_locale() -> str | None:
    """Mounted in a host without Babel: the module's pages choose as the standalone app does,
    the host's keep the default locale."""
    try:
        if not (request.blueprint or "").startswith("aftersales_"):
            return None
    except RuntimeError:
        return None
    return _select_locale()
