"""Translation functions. Every user-facing string goes through these.

``_`` translates now (inside a request it uses the request's locale, elsewhere it passes the
text through); ``lazy_`` defers translation for module-level constants such as reason labels.
"""
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as lazy_
from flask_babel import ngettext

__all__ = ["_", "current_locale", "lazy_", "money_text", "ngettext"]


def current_locale() -> str:
    """The locale of the current request (Flask-Babel's choice), ``en`` outside one."""
    try:
        return str(get_locale() or "en")
    except RuntimeError:  # no app or request context
        return "en"


def money_text(amount: int, currency: str) -> str:
    """An amount as the current reader's locale writes money (``CN¥123.45``, ``¥123.45``)."""
    from .money import format_money

    return format_money(int(amount or 0), currency, current_locale())
