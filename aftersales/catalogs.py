"""The module's translation catalogs: where they are, and how they are extracted, updated,
compiled and checked. ``python -m aftersales.catalogs --help``; ``make catalogs`` and
``make translations`` run it.

Every domain has a ``.pot`` template (extracted from the code, committed), one ``.po`` source
per locale (translated by people, committed) and one ``.mo`` compiled from it at install or build
time (``make install``, the wheel's build), never edited and never committed.

* ``aftersales``: the module's own words (``aftersales/**.py``, ``templates/**.html``; ``babel.cfg``),
  in ``aftersales/translations``.
* ``aftersales_<plugin>``: each shipped plugin's words, from its module alone, in
  ``plugins/translations``, so a plugin's catalog travels with it; a third-party plugin ships
  its own the same way (``aftersales.PluginTranslations``).

Needs only Babel, so the build can run it before the package's other requirements exist.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("en", "zh_Hans", "zh_Hant")
KEYWORDS = ("lazy_", "_", "gettext", "ngettext:1,2", "lazy_gettext", "lazy_ngettext:1,2", "_mark", "_mark_plural:1,2", "N_")
COPYRIGHT = "the aftersales authors"


@dataclass(frozen=True)
class CatalogDomain:
    """One gettext domain: its name, the folder of its catalogs and what its messages come from."""

    name: str
    directory: Path
    sources: tuple[Path, ...]  # the checkout (read with the mapping's patterns) or single Python files
    mapping: Path | None = None

    @property
    def template(self) -> Path:
        return self.directory / f"{self.name}.pot"

    def po_file(self, locale: str) -> Path:
        return self.directory / locale / "LC_MESSAGES" / f"{self.name}.po"

    def mo_file(self, locale: str) -> Path:
        return self.po_file(locale).with_suffix(".mo")


def plugin_domain_name(module_name: str) -> str:
    return f"aftersales_{module_name}"


def domains(root: Path = ROOT) -> list[CatalogDomain]:
    """The module's domain and one per shipped plugin (each ``plugins/<name>.py``)."""
    found = [CatalogDomain("aftersales", root / "aftersales" / "translations", (root,), root / "babel.cfg")]
    for plugin in sorted((root / "plugins").glob("*.py")):
        if plugin.name != "__init__.py":
            found.append(CatalogDomain(plugin_domain_name(plugin.stem), root / "plugins" / "translations", (plugin,)))
    return found


def _pybabel(*arguments: str) -> None:
    CommandLineInterface().run(["pybabel", "--quiet", *arguments])


def extract(domain: CatalogDomain, output: Path | None = None, root: Path = ROOT) -> Path:
    """Write the domain's ``.pot`` (or ``output``) from its sources; returns the file written."""
    output = output or domain.template
    output.parent.mkdir(parents=True, exist_ok=True)
    # No source locations and sorted: the files change only when the messages do.
    arguments = ["extract", "--no-wrap", "--no-location", "--sort-output", "--project", "aftersales",
                 "--copyright-holder", COPYRIGHT, "-o", str(output)]
    for keyword in KEYWORDS:
        arguments += ["-k", keyword]
    if domain.mapping is not None:
        arguments += ["-F", str(domain.mapping)]
    # Paths relative to the checkout, so the template does not name the machine it was made on.
    arguments += [str(source.relative_to(root)) for source in domain.sources]
    here = os.getcwd()
    os.chdir(root)
    try:
        _pybabel(*arguments)
    finally:
        os.chdir(here)
    return output


def _messages(template: Path) -> list[str]:
    with template.open("rb") as source:
        return sorted(repr((message.id, message.context or "", sorted(message.flags)))
                      for message in read_po(source) if message.id)


def extract_if_changed(domain: CatalogDomain) -> bool:
    """Extract the domain's messages; replace its ``.pot`` only when they differ from the ones it
    holds (so an unchanged domain's files keep their dates). True when the ``.pot`` changed."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        fresh = extract(domain, Path(scratch) / domain.template.name)
        if domain.template.exists() and _messages(fresh) == _messages(domain.template):
            return False
        domain.template.parent.mkdir(parents=True, exist_ok=True)
        domain.template.write_bytes(fresh.read_bytes())
    return True


def update(domain: CatalogDomain) -> None:
    """Bring every locale's ``.po`` in line with the ``.pot`` (new messages come in empty)."""
    for locale in LOCALES:
        po = domain.po_file(locale)
        if po.exists():
            _pybabel("update", "--no-wrap", "--no-fuzzy-matching", "--ignore-obsolete", "-D", domain.name,
                     "-i", str(domain.template), "-d", str(domain.directory), "-l", locale)
        else:
            _pybabel("init", "--no-wrap", "-D", domain.name, "-i", str(domain.template), "-d", str(domain.directory),
                     "-l", locale)


def fill_source_language(domain: CatalogDomain) -> int:
    """English is the language the messages are written in: its catalog says the same words, so a
    message new to it gets its msgid as translation (an editor may still reword it there).
    Returns how many entries were filled."""
    from babel.messages.pofile import write_po

    po = domain.po_file("en")
    with po.open("rb") as source:
        catalog = read_po(source, locale="en", domain=domain.name)
    filled = 0
    for message in catalog:
        if not message.id:
            continue
        if message.pluralizable:
            if not all(message.string or ()):
                message.string = tuple(message.id[min(index, 1)] for index in range(catalog.num_plurals))
                filled += 1
        elif not message.string:
            message.string = message.id
            filled += 1
    if filled:
        with po.open("wb") as target:
            write_po(target, catalog, width=0, omit_header=False, ignore_obsolete=True, include_previous=False,
                     no_location=True, sort_output=True)
    return filled


def compile_catalogs(domain: CatalogDomain, into: Path | None = None) -> list[Path]:
    """Compile each ``.po`` of the domain to its ``.mo`` (next to it, or under ``into`` keeping the
    layout below the domain's folder). Fuzzy entries are left out, as gettext would."""
    written = []
    for locale in LOCALES:
        po = domain.po_file(locale)
        if not po.exists():
            continue
        mo = domain.mo_file(locale) if into is None else into / po.relative_to(domain.directory).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source:
            catalog = read_po(source, locale=locale, domain=domain.name)
        with mo.open("wb") as target:
            write_mo(target, catalog, use_fuzzy=False)
        written.append(mo)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aftersales.catalogs",
        description="Extract, update and compile the module's and the shipped plugins' translation catalogs.")
    parser.add_argument("command", choices=("extract", "update", "compile"),
                        help="extract: write each domain's .pot from the code; update: extract, then bring every "
                             "locale's .po in line (new messages come in empty, to be translated); compile: write "
                             "each .po's .mo (run by make install and by the wheel's build)")
    arguments = parser.parse_args(argv)
    for domain in domains():
        if arguments.command in ("extract", "update"):
            if not extract_if_changed(domain) and all(domain.po_file(locale).exists() for locale in LOCALES):
                continue  # same messages as before: the files stay as they are (no new dates)
        if arguments.command == "update":
            update(domain)
            fill_source_language(domain)
        if arguments.command == "compile":
            compile_catalogs(domain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
