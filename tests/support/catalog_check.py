"""Checks of the translation catalogs, shared by the tests and by translators:
``python -m tests.support.catalog_check [locale ...]`` lists every message of the module's and the
shipped plugins' catalogs that is missing, empty, fuzzy or whose placeholders differ from the
English text."""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from babel.messages.pofile import read_po

from aftersales import catalogs


PLACEHOLDER = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%%")


def _placeholders(text: object) -> set[str]:
    """The named placeholders of a message (of every plural form)."""
    forms = text if isinstance(text, (tuple, list)) else (text,)
    return {match.group(1) or "%" for form in forms for match in PLACEHOLDER.finditer(form or "")}


def problems(locales: tuple[str, ...] = catalogs.LOCALES, root: Path = catalogs.ROOT) -> list[str]:
    found: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for domain in catalogs.domains(root):
            template_file = catalogs.extract(domain, Path(scratch) / f"{domain.name}.pot", root=root)
            with template_file.open("rb") as source:
                template = read_po(source)
            for locale in locales:
                po = domain.po_file(locale)
                where = po.relative_to(root)
                if not po.exists():
                    found.append(f"{where}: missing")
                    continue
                with po.open("rb") as source:
                    catalog = read_po(source, locale=locale)
                for message in template:
                    if not message.id:
                        continue
                    entry = catalog.get(message.id)
                    key = message.id if isinstance(message.id, str) else message.id[0]
                    if entry is None:
                        found.append(f"{where}: not in the catalog: {key!r}")
                    elif entry.fuzzy:
                        found.append(f"{where}: fuzzy: {key!r}")
                    elif not (all(entry.string) if isinstance(entry.string, (tuple, list)) else entry.string):
                        found.append(f"{where}: not translated: {key!r}")
                    elif _placeholders(message.id) != _placeholders(entry.string):
                        found.append(f"{where}: placeholders differ from the English: {key!r}")
                for message, errors in catalog.check():
                    for error in errors:
                        found.append(f"{where}: {message.id!r}: {error}")
    return found


if __name__ == "__main__":
    listed = problems(tuple(sys.argv[1:]) or catalogs.LOCALES)
    print("\n".join(listed) or "all catalogs complete")
    sys.exit(1 if listed else 0)
