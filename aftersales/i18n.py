"""Translation functions. Every user-facing string goes through these.

The module's words live in their own gettext domain, ``aftersales`` (catalogs in
``aftersales/translations``), so a host marketplace's own catalogs and Babel settings stay as
they are. ``_`` translates now (inside a request in the request's locale, elsewhere it passes the
text through); ``lazy_`` defers translation for module-level constants such as reason labels.

A plugin ships its words in a domain of its own: :class:`PluginTranslations`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from flask_babel import Domain, get_locale

__all__ = ["MODULE_DOMAIN", "N_", "PluginTranslations", "_", "currency_name", "current_locale", "lazy_", "money_text", "ngettext",
           "offered_locales", "shop_time"]

#: The locales the module's own catalogs are written in; the language switcher offers these.
LOCALE_NAMES = {"en": "English", "zh_Hans": "简体中文", "zh_Hant": "繁體中文"}

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"

#: Chinese regions that write Traditional characters.
TRADITIONAL_REGIONS = frozenset({"TW", "HK", "MO"})


def catalog_locale(locale: Any) -> str:
    """The catalog a locale reads: any Chinese (``zh``, ``zh_CN``, ``zh_Hans_CN``, ``zh_TW``,
    ``zh_Hant_HK`` ...) reads ``zh_Hans`` or ``zh_Hant`` by its script, else its region; others
    read their own (``en_GB`` falls back to ``en`` as gettext does)."""
    from babel import Locale, UnknownLocaleError

    try:
        parsed = locale if isinstance(locale, Locale) else Locale.parse(str(locale))
    except (ValueError, UnknownLocaleError):
        return "en"
    if parsed.language == "zh":
        if parsed.script == "Hant" or (not parsed.script and parsed.territory in TRADITIONAL_REGIONS):
            return "zh_Hant"
        return "zh_Hans"
    return str(parsed)


class ModuleDomain(Domain):
    """The module's gettext domain. Its catalog is chosen by :func:`catalog_locale` (a host's
    Babel may well say ``zh_CN`` or ``zh_TW``), and mounted in a host its words fall back to the
    host's own default domain, so a host's layout around the module's pages still translates."""

    def get_translations(self) -> Any:
        from babel import support
        from flask import current_app
        from flask_babel import _get_current_context

        context = _get_current_context()
        if context is None:
            return support.NullTranslations()
        locale = get_locale()
        held = getattr(context, "aftersales_translations", None)
        if held is not None and held[0] is locale:  # this request's (or command's) language, as last time
            return held[1]
        app = current_app._get_current_object()
        cache = app.extensions.setdefault("aftersales_translations", {})
        translations = cache.get(str(locale))
        if translations is None:
            translations = support.Translations.load(str(TRANSLATIONS_DIR), [catalog_locale(locale)], "aftersales")
            runtime = app.extensions.get("aftersales")
            host = app.extensions.get("babel")
            if runtime is not None and not runtime.standalone and host is not None:
                host_domain = app.extensions.setdefault(
                    "aftersales_host_domain",
                    Domain(translation_directories=list(host.translation_directories), domain=host.default_domain))
                translations.add_fallback(host_domain.get_translations())
            cache[str(locale)] = translations
        context.aftersales_translations = (locale, translations)
        return translations


#: The module's own gettext domain: its templates and Python code translate through it.
MODULE_DOMAIN = ModuleDomain(translation_directories=[str(TRANSLATIONS_DIR)], domain="aftersales")


def N_(text: str) -> str:
    """Marks ``text`` for the catalogs without translating it (it is stored or passed on as
    written, and translated where it is shown: ``_(text)``)."""
    return text


def _(text: str, **variables: Any) -> str:
    return MODULE_DOMAIN.gettext(text, **variables)


def lazy_(text: str, **variables: Any) -> Any:
    return MODULE_DOMAIN.lazy_gettext(text, **variables)


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    return MODULE_DOMAIN.ngettext(singular, plural, num, **variables)


class PluginTranslations:
    """A plugin's own catalogs: ``domain`` (e.g. ``aftersales_furniture_installation``) in
    ``directory`` (``<directory>/<locale>/LC_MESSAGES/<domain>.mo``). Use its ``gettext`` as the
    plugin's ``_`` and its ``lazy_gettext`` as ``lazy_``; the request's locale picks the language::

        translations = PluginTranslations("acme_bikes", Path(__file__).parent / "translations")
        _, lazy_ = translations.gettext, translations.lazy_gettext
    """

    def __init__(self, domain: str, directory: str | Path):
        self.domain_name = domain
        self.directory = Path(directory)
        self._domain = Domain(translation_directories=[str(self.directory)], domain=domain)

    def gettext(self, text: str, **variables: Any) -> str:
        return self._domain.gettext(text, **variables)

    def lazy_gettext(self, text: str, **variables: Any) -> Any:
        return self._domain.lazy_gettext(text, **variables)

    def ngettext(self, singular: str, plural: str, num: int, **variables: Any) -> str:
        return self._domain.ngettext(singular, plural, num, **variables)


def offered_locales() -> list[str]:
    """The locales the module has compiled catalogs for (English always), in the switcher's order:
    Flask-Babel's ``list_translations()`` in the standalone app (whose default domain is the
    module's), the module's own catalog folder when mounted in a host with catalogs of its own."""
    from flask import current_app

    try:
        extensions = current_app.extensions
    except RuntimeError:
        return list(_compiled_locales())
    offered = extensions.get("aftersales_locales")
    if offered is None:
        babel = extensions.get("babel")
        if babel is not None and str(TRANSLATIONS_DIR) in babel.translation_directories:
            listed = {str(locale) for locale in babel.instance.list_translations()}
            offered = [code for code in LOCALE_NAMES if code == "en" or code in listed]
        else:
            offered = list(_compiled_locales())
        extensions["aftersales_locales"] = offered
    return offered


@lru_cache(maxsize=1)
def _compiled_locales() -> tuple[str, ...]:
    compiled = {folder.name for folder in TRANSLATIONS_DIR.iterdir()
                if (folder / "LC_MESSAGES" / "aftersales.mo").is_file()} if TRANSLATIONS_DIR.is_dir() else set()
    return tuple(code for code in LOCALE_NAMES if code == "en" or code in compiled)


def current_locale() -> str:
    """The locale of the current request (Flask-Babel's choice), ``en`` outside one."""
    try:
        return str(get_locale() or "en")
    except RuntimeError:  # no app or request context
        return "en"


def shop_time(moment: Any, zone: Any = None) -> str:
    """A moment as the shop lives it: in the shop's time zone (``zone``, a shop's ``zone``; else
    ``BABEL_DEFAULT_TIMEZONE``), with the zone's name in the reader's language ("2026-11-20 20:00
    China Standard Time", "2026-11-20 20:00 中国标准时间"). Stored times are UTC."""
    from babel.dates import format_datetime
    from flask_babel import get_timezone

    if moment is None:
        return ""
    return format_datetime(moment, "yyyy-MM-dd HH:mm zzzz", tzinfo=zone or get_timezone(), locale=current_locale())


def currency_name(currency: str) -> str:
    """The currency's name in the reader's language ("Chinese Yuan", "人民币")."""
    from babel.numbers import get_currency_name

    return get_currency_name(currency, locale=current_locale())


def money_text(amount: int, currency: str) -> str:
    """An amount as the current reader's locale writes money (``CN¥123.45``, ``¥123.45``)."""
    from .money import format_money

    return format_money(int(amount or 0), currency, current_locale())
