"""The translation catalogs are complete and compiled, and templates hold no text outside a
translation call (issue 11). After changing user-facing text: ``make catalogs``, translate the
new entries in each ``.po``, ``make translations``."""
from __future__ import annotations

import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment

from aftersales import catalogs
from aftersales.resources import TEMPLATES_DIR
from tests.support.catalog_check import problems

#: Attributes people read (a screen reader, a tooltip, an empty field).
TEXT_ATTRIBUTES = frozenset({"alt", "title", "placeholder", "aria-label"})
WORD = re.compile(r"[^\W\d_]")  # a letter of any script
PLACEHOLDER = "\x00"


def test_every_catalog_has_every_message_translated():
    """Messages extracted from the code now, against each locale's catalog of each domain: none
    missing, empty or fuzzy, and the placeholders of each translation match the English."""
    found = problems()
    assert not found, "\n".join(found[:40]) + "\n(make catalogs, then translate the new entries)"


def test_the_compiled_catalogs_are_those_of_the_sources():
    """The .mo files the app reads were compiled from the .po files as they are now."""
    with tempfile.TemporaryDirectory() as scratch:
        for domain in catalogs.domains():
            for fresh in catalogs.compile_catalogs(domain, into=Path(scratch) / domain.name):
                installed = domain.directory / fresh.relative_to(Path(scratch) / domain.name)
                assert installed.exists(), f"{installed} is missing: run `make translations`"
                assert installed.read_bytes() == fresh.read_bytes(), f"{installed} is stale: run `make translations`"


def test_each_shipped_plugin_has_its_own_domain():
    names = {domain.name for domain in catalogs.domains()}
    assert {"aftersales", "aftersales_cross_border", "aftersales_electronics_grading",
            "aftersales_furniture_installation"} <= names
    for domain in catalogs.domains():
        for locale in catalogs.LOCALES:
            assert domain.po_file(locale).exists(), domain.po_file(locale)


class _VisibleText(HTMLParser):
    """The text a person sees in a template once every Jinja construct is taken out."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in TEXT_ATTRIBUTES and WORD.search((value or "").replace(PLACEHOLDER, "")):
                self.found.append((self.getpos()[0], f"{name}={value!r}"))

    def handle_data(self, data):
        text = " ".join(data.replace(PLACEHOLDER, " ").split())
        if WORD.search(text):
            self.found.append((self.getpos()[0], text))


def untranslated_text(source: str) -> list[tuple[int, str]]:
    """Text in a template that is not inside a Jinja expression or tag (so not in ``_()``)."""
    environment = Environment(extensions=["jinja2.ext.i18n"])
    kept = []
    for _line, kind, value in environment.lex(source):
        # Jinja's own tokens become a placeholder (keeping line breaks for the line numbers).
        kept.append(value if kind == "data" else PLACEHOLDER + "\n" * value.count("\n"))
    parser = _VisibleText()
    parser.feed("".join(kept))
    parser.close()
    return parser.found


def test_the_checker_finds_text_outside_translation_calls():
    assert untranslated_text('<p>{{ _("Fine") }}</p>') == []
    assert untranslated_text('<a href="{{ url }}">{{ _("Fine") }}</a> · {{ n }}') == []
    assert untranslated_text("<p>Order {{ number }}</p>") == [(1, "Order")]
    assert untranslated_text('<img src="x.png" alt="Photo">') == [(1, "alt='Photo'")]
    assert [text for _line, text in untranslated_text("<p>\n{% if x %}\n售后\n{% endif %}</p>")] == ["售后"]


@pytest.mark.parametrize("template", sorted(str(path.relative_to(TEMPLATES_DIR)) for path in TEMPLATES_DIR.rglob("*.html")))
def test_templates_hold_no_text_outside_translation_calls(template):
    found = untranslated_text((TEMPLATES_DIR / template).read_text(encoding="utf-8"))
    assert not found, f"{template}: text outside _(): {found}"


def test_the_placeholder_check_sees_a_dropped_or_renamed_placeholder():
    from tests.support.catalog_check import _placeholders

    english = "Hello %(name)s, you have %(n)d cases (100%%)"
    assert _placeholders(english) == _placeholders("%(name)s，你有 %(n)d 个售后单（100%%）") == {"name", "n", "%"}
    assert _placeholders("你好") != _placeholders(english)
    assert _placeholders(("%(num)d case", "%(num)d cases")) == {"num"}
