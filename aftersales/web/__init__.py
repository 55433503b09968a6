"""The web layer: blueprints that parse a request, call one service function and render."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request
from babel.lists import format_list
from babel.units import format_unit
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError

from ..i18n import MODULE_DOMAIN, _, current_locale, money_text, shop_time
from ..models import utcnow
from ..runtime import current
from . import security, wording

from ..resources import STATIC_DIR as STATIC, TEMPLATES_DIR as TEMPLATES

#: Serves the stylesheet (no inline styles or scripts: the CSP forbids them).
assets = Blueprint("aftersales_assets", __name__, static_folder=str(STATIC), static_url_path="/aftersales-static")


def time_left(due_at: datetime | None, now: datetime | None = None) -> str:
    """"in 2 days 3 hours" / "2天3小时后" / "overdue by 5 hours", for queues and case pages: days,
    hours (and minutes under an hour) in the reader's language, as Babel writes durations."""
    if due_at is None:
        return ""
    seconds = int((due_at - (now or utcnow())).total_seconds())
    overdue, seconds = seconds < 0, abs(seconds)
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        parts = [("duration-day", days)] + ([("duration-hour", hours)] if hours else [])
    elif hours:
        parts = [("duration-hour", hours)]
    else:
        parts = [("duration-minute", max(minutes, 1))]
    locale = current_locale()
    span = format_list([format_unit(value, unit, length="long", locale=locale) for unit, value in parts],
                       style="unit-narrow", locale=locale)
    return _("overdue by %(span)s", span=span) if overdue else _("in %(span)s", span=span)


#: The error pages the module renders itself.
ERROR_STATUSES = (400, 403, 404, 405, 413, 429, 500)


def module_blueprints() -> tuple[Blueprint, ...]:
    from .buyer import buyer
    from .evidence import evidence_files
    from .platform import platform
    from .seller import seller
    from .site import site

    return (assets, site, buyer, seller, platform, evidence_files)


def _scope_to_module_blueprints(blueprints: tuple[Blueprint, ...]) -> None:
    """What every page of the module gets, set on its blueprints (once, before any app registers
    them): the security headers, the error pages, the upload cap and CSRF when no app-wide
    protection runs, ``csrf_token()`` in its templates. Mounted in a host, nothing else gets them."""
    for blueprint in blueprints:
        if getattr(blueprint, "_aftersales_scoped", False):
            continue
        blueprint._aftersales_scoped = True  # type: ignore[attr-defined]
        blueprint.url_value_preprocessor(_cap_module_request_body)  # runs before any before_request, the host's too
        blueprint.before_request(_module_request)
        blueprint.after_request(security.add_security_headers)
        blueprint.context_processor(_module_template_context)
        for status in ERROR_STATUSES:
            blueprint.register_error_handler(status, _error_page)


def _module_template_context() -> dict[str, Any]:
    from .access import current_staff, module_login_available, staff_from_host

    from .language import back_after_switching, module_chooses_locale, switcher_entries

    return {"csrf_token": generate_csrf, "aftersales_staff": current_staff(),
            "aftersales_languages": switcher_entries() if module_chooses_locale() else [],
            "aftersales_language_back": back_after_switching,
            "aftersales_staff_from_host": staff_from_host(), "aftersales_module_login": module_login_available()}


def _cap_module_request_body(endpoint: str | None, values: Any) -> None:
    """Mounted, the module's pages cap the request body themselves (the standalone app sets
    MAX_CONTENT_LENGTH). Flask runs URL value preprocessors before every before_request hook, so
    the cap holds before a host's own hook (its CSRFProtect) reads the form."""
    if not current().standalone:
        request.max_content_length = _body_limit(current_app.config)


def _module_request() -> None:
    """Before each request of the module's pages. The standalone app checks CSRF app-wide;
    mounted, the module checks its own pages' POSTs unless a host's CSRFProtect already does
    (app-wide, ``WTF_CSRF_CHECK_DEFAULT`` on). The page's words come from the module's catalogs
    (its gettext domain), whatever a host's Babel uses for its own pages."""
    MODULE_DOMAIN.as_default()
    if current().standalone:
        return
    host_checks = current_app.extensions.get("csrf") is not None and current_app.config.get("WTF_CSRF_CHECK_DEFAULT", True)
    if not host_checks and current_app.config.get("WTF_CSRF_ENABLED", True):
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            token = (request.form.get("csrf_token")  # the form's own, or a prefixed form's ("approve-csrf_token")
                     or next((value for key, value in request.form.items() if key.endswith("-csrf_token") and value), None)
                     or request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
            try:
                validate_csrf(token)
            except ValidationError as error:
                raise CSRFError(error.args[0]) from None


def _body_limit(config: Any) -> int:
    """Every photo a case may hold, plus the form."""
    return int(config["AFTERSALES_UPLOAD_MAX_BYTES"]) * int(config["AFTERSALES_UPLOAD_MAX_PER_CASE"]) + 1024 * 1024


def register_blueprints(app: Flask, url_prefix: str, *, standalone: bool) -> None:
    blueprints = module_blueprints()
    _scope_to_module_blueprints(blueprints)
    for blueprint in blueprints:
        # The mount point goes before a blueprint's own prefix ("/platform"), not instead of it.
        combined = (url_prefix or "").rstrip("/") + (blueprint.url_prefix or "")
        app.register_blueprint(blueprint, url_prefix=combined or None)
    # Prefixed, so they neither replace a host's own filters nor are shadowed by them.
    app.jinja_env.filters["aftersales_money"] = money_text
    app.jinja_env.filters["aftersales_when"] = shop_time
    app.jinja_env.filters["aftersales_time_left"] = time_left
    app.jinja_env.globals["aftersales_wording"] = wording
    if standalone:  # the whole app is the module's: headers, caps and error pages everywhere
        security.install(app)
        if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's default is None: no cap at all
            app.config["MAX_CONTENT_LENGTH"] = _body_limit(app.config)
        for status in ERROR_STATUSES:
            app.register_error_handler(status, _error_page)


def _error_page(error: Any) -> Any:
    if getattr(error, "response", None) is not None:  # the error brought its own page (a paused login)
        return error.response
    status = getattr(error, "code", 500) or 500
    MODULE_DOMAIN.as_default()
    messages = {
        400: _("The request could not be understood. Please go back and try again."),
        403: _("You are not allowed to do that."),
        404: _("There is nothing here, or it is not yours to see."),
        405: _("That page cannot be used like this."),
        413: _("The upload is too large."),
        429: _("Too many attempts. Please wait a minute and try again."),
        500: _("Something went wrong on our side. Nothing was changed; please try again."),
    }
    return render_template("aftersales/error.html", status=status, message=messages.get(status, messages[500])), status
