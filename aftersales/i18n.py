"""Translation functions. Every user-facing string goes through these.

``_`` translates now (inside a request it uses the request's locale, elsewhere it passes the
text through); ``lazy_`` defers translation for module-level constants such as reason labels.
"""
from flask_babel import gettext as _
from flask_babel import lazy_gettext as lazy_
from flask_babel import ngettext

__all__ = ["_", "lazy_", "ngettext"]
