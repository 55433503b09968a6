"""The one rule every piece of text a person types goes through before it is kept or looked up.

Text arrives from forms, query strings, the Python API and imports. Some characters in it are
never wanted and some are harmful: NUL is refused by PostgreSQL (a 500 instead of a message),
other control characters are invisible, and the bidirectional overrides (U+202A–U+202E,
U+2066–U+2069) reorder what a reader sees (``gpj.exe`` shown as ``exe.jpg``, an amount shown
backwards). So, everywhere alike:

- line breaks become ``\\n`` (kept in multi-line text, a space in one-line text), tabs are kept in
  multi-line text and become a space in one-line text;
- every other control character (Unicode category Cc), lone surrogates and the bidi embedding,
  override and isolate characters are removed;
- leading and trailing white space is removed.

The form layer applies it to every text field (``web/forms.py``), the service layer again to
every text input (``services``), so the Python API and the pages keep the same text.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Embeddings, overrides and isolates: they change the order in which text is displayed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")


def _kept(char: str, multiline: bool) -> str:
    if char == "\n" or char == "\t":
        return char if multiline else " "
    if char in BIDI_CONTROLS:
        return ""
    category = unicodedata.category(char)
    if category == "Cc" or category == "Cs":
        return ""
    return char


def clean_text(value: Any, *, multiline: bool = False) -> str:
    """``value`` as text a person meant to type (see the module docstring); None is ``""``."""
    if value is None:
        return ""
    text = _LINE_BREAKS.sub("\n", str(value))
    if text.isprintable() and "\t" not in text:  # the usual case: nothing to remove
        return text.strip()
    return "".join(_kept(char, multiline) for char in text).strip()


def clean_line(value: Any) -> str:
    """One-line text: an e-mail, an order number, a tracking number, a query parameter."""
    return clean_text(value, multiline=False)
