"""The web layer: blueprints that parse a request, call one service function and render."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, render_template
from flask_babel import format_datetime

from ..i18n import _, ngettext
from ..models import utcnow
from ..money import format_money
from . import security, wording

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
STATIC = Path(__file__).resolve().parents[1] / "static"

#: Serves the stylesheet (no inline styles or scripts: the CSP forbids them).
assets = Blueprint("aftersales_assets", __name__, static_folder=str(STATIC), static_url_path="/aftersales-static")


def time_left(due_at: datetime | None, now: datetime | None = None) -> str:
    """"2 days 3 hours left" / "overdue by 5 hours", for queues and case pages."""
    if due_at is None:
        return ""
    seconds = int((due_at - (now or utcnow())).total_seconds())
    overdue, seconds = seconds < 0, abs(seconds)
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        span = ngettext("%(num)d day", "%(num)d days", days) + (" " + ngettext("%(num)d hour", "%(num)d hours", hours) if hours else "")
    elif hours:
        span = ngettext("%(num)d hour", "%(num)d hours", hours)
    else:
        span = ngettext("%(num)d minute", "%(num)d minutes", max(minutes, 1))
    return _("overdue by %(span)s", span=span) if overdue else _("%(span)s left", span=span)


def register_blueprints(app: Flask, url_prefix: str) -> None:
    from .buyer import buyer
    from .evidence import evidence_files
    from .platform import platform
    from .seller import seller
    from .site import site

    prefix = url_prefix or None
    for blueprint in (assets, site, buyer, seller, platform, evidence_files):
        app.register_blueprint(blueprint, url_prefix=prefix)
    security.install(app)
    app.jinja_env.filters.setdefault("money", lambda amount, currency: format_money(int(amount or 0), currency))
    app.jinja_env.filters.setdefault("when", lambda value: format_datetime(value, "yyyy-MM-dd HH:mm zzz") if value else "")
    app.jinja_env.filters.setdefault("time_left", time_left)
    app.jinja_env.globals.setdefault("wording", wording)

    for status in (400, 403, 404, 405, 413, 429, 500):
        app.register_error_handler(status, _error_page)


def _error_page(error: Any) -> Any:
    if getattr(error, "response", None) is not None:  # the error brought its own page (a paused login)
        return error.response
    status = getattr(error, "code", 500) or 500
    messages = {
        400: _("The request could not be understood. Please go back and try again."),
        403: _("You are not allowed to do that."),
        404: _("There is nothing here, or it is not yours to see."),
        405: _("That page cannot be used like this."),
        413: _("The upload is too large."),
        429: _("Too many attempts. Please wait a minute and try again."),
        500: _("Something went wrong on our side. Nothing was changed; please try again."),
    }
    return render_template("error.html", status=status, message=messages.get(status, messages[500])), status
