"""Which language a page speaks: the visitor's own choice (the switcher on every page, kept in a
cookie), else the browser's Accept-Language, else the shop's default language, else English.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, redirect, request
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..i18n import LOCALE_NAMES, TRADITIONAL_REGIONS, offered_locales

#: The cookie that remembers a visitor's explicit choice (a year).
LOCALE_COOKIE = "aftersales_locale"
LOCALE_COOKIE_SECONDS = 365 * 24 * 3600



def locale_for_accept_language(accepted: Any) -> str | None:
    """The first language of the browser's list the module speaks, as a Babel locale: ``en``,
    ``zh_Hans`` (zh, zh-CN, zh-SG, zh-Hans-*) or ``zh_Hant`` (zh-TW, zh-HK, zh-MO, zh-Hant-*);
    None when it asks for none of them."""
    for tag, _quality in accepted:  # werkzeug keeps them best first
        parts = tag.replace("_", "-").split("-")
        language = parts[0].lower()
        if language == "en":
            return "en"
        if language != "zh":
            continue
        rest = [part.title() if len(part) == 4 else part.upper() for part in parts[1:]]
        if "Hant" in rest:
            return "zh_Hant"
        if "Hans" in rest:
            return "zh_Hans"
        return "zh_Hant" if TRADITIONAL_REGIONS & set(rest) else "zh_Hans"
    return None


def chosen_locale() -> str | None:
    """The language the visitor picked with the switcher, if it is still one the module offers."""
    value = request.cookies.get(LOCALE_COOKIE)
    return value if value in offered_locales() else None


_NO_SHOP = object()
_SHOP_KEY = "aftersales.shop"


def use_shop(shop: Any) -> None:
    """Called by the views once the visitor may see ``shop``'s order or case: the page then
    speaks the shop's default language (if the visitor and the browser chose none) and shows
    times in its zone. A language already chosen for this request is chosen again."""
    from flask_babel import refresh

    request.environ[_SHOP_KEY] = shop
    refresh()


def request_shop() -> Any:
    """The shop the page belongs to: the one a view has shown the visitor (:func:`use_shop`),
    else the shop of a ``/s/<shop>/`` address, else the logged-in seller's; None for pages of no
    shop. An order's or a case's shop is never read from the URL before the access check."""
    from ..models import Shop

    cached = request.environ.get(_SHOP_KEY, _NO_SHOP)
    if cached is not _NO_SHOP:
        return cached
    shop = None
    try:
        args = request.view_args or {}
        if not (request.blueprint or "").startswith("aftersales_"):
            shop = None
        elif "shop_slug" in args:
            shop = db.session.query(Shop).filter_by(slug=str(args["shop_slug"]).lower()).one_or_none()
        elif not ({"case_id", "order_id", "refund_id"} & args.keys()):
            from .access import current_staff

            staff = current_staff()
            shop = staff.shop if staff is not None else None
    except SQLAlchemyError:  # the database is down: the page (an error page) speaks the default
        shop = None
    request.environ[_SHOP_KEY] = shop
    return shop


def shop_locale() -> str | None:
    """The default language of the page's shop, for a visitor whose browser asks for no
    language the module speaks."""
    shop = request_shop()
    locale = shop.locale if shop is not None else None
    return locale if locale in offered_locales() else None


def select_timezone() -> str | None:
    """Flask-Babel's time zone selector: the page's shop's zone (else ``BABEL_DEFAULT_TIMEZONE``)."""
    try:
        shop = request_shop()
    except RuntimeError:  # no request
        return None
    return shop.timezone if shop is not None and shop.timezone else None


def select_locale() -> str | None:
    """Flask-Babel's locale selector for the module's pages; None leaves ``BABEL_DEFAULT_LOCALE``."""
    try:
        request.accept_languages
    except RuntimeError:  # no request: CLI and timers write in the default locale
        return None
    return chosen_locale() or locale_for_accept_language(request.accept_languages) or shop_locale()


def module_chooses_locale() -> bool:
    """Whether the module's own selector picks the language (the standalone app, or a host without
    Babel of its own); otherwise the host's does, and the module offers no switcher."""
    from ..app import _select_locale, _select_module_locale

    babel = current_app.extensions.get("babel")
    return babel is not None and babel.locale_selector in (_select_locale, _select_module_locale)


def switcher_entries() -> list[dict[str, Any]]:
    """The languages the switcher offers, each with its name in itself and whether it is on."""
    from ..i18n import current_locale

    here = current_locale()
    return [{"code": code, "name": LOCALE_NAMES[code], "tag": code.replace("_", "-"), "current": code == here}
            for code in offered_locales()]


def _module_home() -> str:
    from flask import url_for

    return url_for("aftersales_buyer.lookup")


def back_after_switching() -> str:
    """Where the switcher brings the visitor back to: this page if it can be loaded again (a GET),
    else the page the visitor came from on this site, else the module's front page."""
    from .security import is_local_path

    if request.method == "GET":
        return request.script_root + request.full_path.rstrip("?")
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and is_local_path(referrer.path):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return _module_home()


def switch_language(locale: str) -> Any:
    """Remember ``locale`` for this browser and go back to the page the visitor came from
    (``next``: a path on this site only, else the module's front page)."""
    from flask import abort

    from .security import is_local_path

    if locale not in offered_locales():
        abort(404)
    target = request.args.get("next")
    response = redirect(target if is_local_path(target) else _module_home(), code=303)
    secure = bool(request.is_secure or current_app.config.get("AFTERSALES_HTTPS")
                  or current_app.config.get("SESSION_COOKIE_SECURE"))
    response.set_cookie(LOCALE_COOKIE, locale, max_age=LOCALE_COOKIE_SECONDS, httponly=True, samesite="Lax",
                        secure=secure, path=_module_home())
    return response
