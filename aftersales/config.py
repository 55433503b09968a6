"""Default settings. Every number a shop may want to change is here, under its own name.

Settings load in this order, later ones winning: these defaults, the instance file
``aftersales.cfg`` (Python syntax) in the instance folder, ``AFTERSALES_*`` environment
variables, then the mapping given to ``create_app(config)``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

#: Placeholder that marks "no secret key configured"; refused outside debug and testing.
INSECURE_SECRET_KEY = "dev-insecure-secret-key-change-me"


class Defaults:
    SECRET_KEY = INSECURE_SECRET_KEY
    SQLALCHEMY_DATABASE_URI: str | None = None  # filled in from the instance path
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "UTC"

    # Where the module's pages live when mounted into a host app ("" = at the root).
    AFTERSALES_URL_PREFIX = ""
    # Plugins: the folder scanned for plugin modules, and which plugins run.
    AFTERSALES_PLUGINS_DIR: str | None = None  # folders of the operator's own plugins; default: none
    AFTERSALES_PLUGINS = "all"  # "all", or a comma-separated list of plugin names
    AFTERSALES_DISABLED_PLUGINS = ""  # comma-separated plugin names to leave out
    AFTERSALES_LOAD_ENTRY_POINTS = True

    # Domain rules (DESIGN §3). Durations are hours or days, named so.
    AFTERSALES_NO_REASON_DAYS = 7
    AFTERSALES_QUALITY_DAYS = 15
    AFTERSALES_WARRANTY_DAYS = 365
    AFTERSALES_SELLER_RESPONSE_HOURS = 48
    AFTERSALES_BUYER_SHIP_DAYS = 7
    AFTERSALES_SELLER_RECEIPT_DAYS = 10
    AFTERSALES_SELLER_REFUND_DAYS = 7
    AFTERSALES_BUYER_APPEAL_DAYS = 7
    #: A refund asked before anything of the line shipped is granted by the sweeper when the
    #: seller has not answered in this many hours (instead of AFTERSALES_SELLER_RESPONSE_HOURS).
    AFTERSALES_UNSHIPPED_REFUND_HOURS = 24
    #: An order not paid within this many hours is cancelled by the sweeper (a plugin's
    #: aftersales_unpaid_timeout may shorten it for its categories).
    AFTERSALES_UNPAID_TIMEOUT_HOURS = 24
    #: Units a return brings back damaged: "dispute" (the platform decides, from the receipt) or
    #: "refund" (refunded with the rest).
    AFTERSALES_DAMAGED_RETURNS = "dispute"
    #: When the order's shipping fee comes back (once per order, as its own refund): "full_return"
    #: (with the refund that makes every unit of the order returned), "seller_fault" (that, or with
    #: the first refund of a return the seller's fault caused), or "never".
    AFTERSALES_SHIPPING_FEE_REFUND = "full_return"
    AFTERSALES_BUYER_OFFER_DAYS = 7
    # Offers per side in one negotiation: the seller's offers, and the buyer's counter-offers.
    AFTERSALES_NEGOTIATION_ROUNDS = 3
    AFTERSALES_BUYER_CONFIRM_REPLACEMENT_DAYS = 10
    AFTERSALES_MIN_PHOTOS_FOR_FAULTS = 1

    # Express refund (极速退款): refund when the buyer ships the return, for good records.
    AFTERSALES_EXPRESS_REFUND_ENABLED = True
    AFTERSALES_EXPRESS_MIN_COMPLETED_CASES = 2
    AFTERSALES_EXPRESS_QUOTA = 100000  # minor units outstanding per buyer

    # Web: order lookup rate limits (Flask-Limiter syntax) and their storage.
    AFTERSALES_LOOKUP_LIMIT_PER_CLIENT = "10 per minute"
    AFTERSALES_LOOKUP_LIMIT_PER_ORDER = "5 per minute"
    AFTERSALES_RATELIMIT_STORAGE_URI = "memory://"
    # Staff login attempts: per client address, per e-mail from one client, per e-mail from anywhere.
    AFTERSALES_LOGIN_LIMIT_PER_CLIENT = "30 per 15 minutes"
    AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT_AND_CLIENT = "10 per 15 minutes"
    AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT = "50 per 15 minutes"
    # How staff passwords are hashed (werkzeug's method string: "scrypt", "scrypt:n:r:p",
    # "pbkdf2:sha256:<iterations>"). Existing hashes keep their own method and still log in.
    AFTERSALES_PASSWORD_HASH = "scrypt"
    # Set when served over HTTPS: cookies get the Secure flag.
    AFTERSALES_HTTPS = False
    # Behind a reverse proxy (standalone app only): how many proxies in front of the app set
    # X-Forwarded-For / -Proto / -Host. 0 trusts none of them (the app is reached directly).
    AFTERSALES_PROXY_FIX_X_FOR = 0
    AFTERSALES_PROXY_FIX_X_PROTO = 0
    AFTERSALES_PROXY_FIX_X_HOST = 0

    # Logging of the standalone app (aftersales/logs.py): to standard error, this level and format.
    AFTERSALES_LOG_LEVEL = "INFO"
    AFTERSALES_LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"

    # Sweeper: how many due cases one transaction claims.
    AFTERSALES_SWEEP_BATCH = 200
    AFTERSALES_SWEEP_INTERVAL_SECONDS = 30

    # The outbox (notifications, plugin event hooks, payment calls), delivered after each commit
    # and by `flask aftersales deliver` / the sweeper: a failed message is retried after
    # AFTERSALES_OUTBOX_RETRY_SECONDS, doubling at each failure up to ..._RETRY_MAX_SECONDS; after
    # AFTERSALES_OUTBOX_MAX_ATTEMPTS failures it is dead until someone retries it.
    AFTERSALES_OUTBOX_MAX_ATTEMPTS = 10
    AFTERSALES_OUTBOX_RETRY_SECONDS = 60
    AFTERSALES_OUTBOX_RETRY_MAX_SECONDS = 6 * 3600

    # E-mail to buyers and staff (aftersales/mail.py): on when AFTERSALES_MAIL_SERVER is set.
    # AFTERSALES_MAIL_SECURITY: "none", "starttls" (upgrade on the port, usually 587) or "tls"
    # (TLS from the start, usually 465). Links in messages start with AFTERSALES_BASE_URL.
    AFTERSALES_MAIL_SERVER = ""
    AFTERSALES_MAIL_PORT = 25
    AFTERSALES_MAIL_SECURITY = "none"
    AFTERSALES_MAIL_USERNAME = ""
    AFTERSALES_MAIL_PASSWORD = ""
    AFTERSALES_MAIL_SENDER = ""
    AFTERSALES_MAIL_TIMEOUT_SECONDS = 30
    AFTERSALES_BASE_URL = ""
    # A refund staff pay by hand (no payment plugin): the days they have before the case shows as
    # overdue and they are reminded (0: no deadline), and the daily digest of refunds left unpaid.
    AFTERSALES_MANUAL_REFUND_DAYS = 3
    AFTERSALES_REFUND_DIGEST_HOURS = 24
    # Reminders before a deadline lapses, to the side the case waits on (0: none).
    AFTERSALES_BUYER_REMINDER_HOURS = 24
    AFTERSALES_SELLER_REMINDER_HOURS = 6
    # Webhooks (aftersales/webhooks.py): how long an endpoint may take to answer, and how often a
    # process reads the endpoints again (one added elsewhere gets events after at most this).
    AFTERSALES_WEBHOOK_TIMEOUT_SECONDS = 10
    AFTERSALES_WEBHOOK_REFRESH_SECONDS = 10
    # How long the signed link of a buyer's e-mail opens their case.
    AFTERSALES_BUYER_LINK_DAYS = 30

    # Evidence photos (aftersales/evidence.py). Stored outside static/, served only after a check.
    AFTERSALES_UPLOAD_DIR: str | None = None  # default: <instance folder>/uploads
    AFTERSALES_UPLOAD_MAX_BYTES = 8 * 1024 * 1024  # per file, as uploaded
    AFTERSALES_UPLOAD_MAX_PIXELS = 25_000_000  # width x height, read from the header
    AFTERSALES_UPLOAD_MAX_EDGE = 2560  # photos are stored at most this many pixels on their longer side
    AFTERSALES_UPLOAD_MAX_PER_CASE = 10
    # Reconciling the uploads folder with the evidence rows (aftersales/reconcile.py): a file
    # without a row is removed once older than the grace period; the sweeper reconciles every
    # AFTERSALES_UPLOAD_RECONCILE_MINUTES (0: only `flask aftersales uploads --reconcile` does).
    AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES = 60
    AFTERSALES_UPLOAD_RECONCILE_MINUTES = 60


#: Environment variables that are not a plain ``AFTERSALES_<SETTING>`` copy.
ENVIRONMENT_ALIASES = {
    "AFTERSALES_DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
    "AFTERSALES_SECRET_KEY": "SECRET_KEY",
}


def defaults() -> dict[str, Any]:
    return {k: v for k, v in vars(Defaults).items() if k.isupper()}


def _coerce(raw: str, current: Any) -> Any:
    """Turn an environment string into the type of the default it replaces."""
    if isinstance(current, bool):
        if raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"expected a yes/no value, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, (dict, list)):
        return json.loads(raw)
    return raw


def from_environment(environ: Mapping[str, str], current: Mapping[str, Any]) -> dict[str, Any]:
    """Settings taken from ``AFTERSALES_*`` environment variables."""
    found: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("AFTERSALES_") or name in {"AFTERSALES_INSTANCE_PATH"}:
            continue
        key = ENVIRONMENT_ALIASES.get(name, name)
        try:
            found[key] = _coerce(raw, current.get(key))
        except ValueError as error:
            raise RuntimeError(f"environment variable {name}: {error}") from error
    return found


def environment() -> Mapping[str, str]:
    return os.environ
