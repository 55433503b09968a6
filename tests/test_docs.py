"""The documentation keeps up with the code (after Datasette's tests/test_docs.py).

Fails when a hook has no docstring or is missing from the generated reference, when
docs/hooks.md is stale, when a ``flask aftersales`` command or option is undocumented, and when
a setting is not described in docs/configuration.md.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest

from aftersales import config, hookspecs
from aftersales.cli import aftersales_cli
from aftersales.hookdoc import render_hook_reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def read(name: str) -> str:
    path = DOCS / name
    assert path.exists(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


# Found independently of aftersales.hookdoc: whatever pluggy treats as a spec.
HOOKS = sorted(
    name for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "aftersales_spec")
)
COMMANDS = sorted(aftersales_cli.commands)
SETTINGS = sorted(name for name in vars(config.Defaults) if name.isupper())


def test_there_is_something_to_check():
    assert len(HOOKS) >= 10 and "aftersales_eligibility" in HOOKS
    assert {"sweep", "import-orders", "workflow"} <= set(COMMANDS)
    assert "AFTERSALES_NO_REASON_DAYS" in SETTINGS


# --- hooks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.split()) >= 10, f"hookspec {hook} needs a docstring: when it is called, what it gets and returns"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_in_the_reference(hook):
    assert re.search(rf"^## `{re.escape(hook)}\(", read("hooks.md"), re.M), (
        f"{hook} is not in docs/hooks.md: run flask aftersales hooks-doc"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docstring_is_in_the_reference(hook):
    doc = inspect.cleandoc(getattr(hookspecs, hook).__doc__ or "")
    assert doc and doc in read("hooks.md"), f"docs/hooks.md has an old docstring of {hook}: run flask aftersales hooks-doc"


def test_reference_lists_no_hook_that_does_not_exist():
    documented = re.findall(r"^## `(\w+)\(", read("hooks.md"), re.M)
    assert sorted(documented) == HOOKS


def test_hook_reference_is_up_to_date():
    assert read("hooks.md") == render_hook_reference(), (
        "docs/hooks.md differs from the hookspecs: run "
        "AFTERSALES_INSTANCE_PATH=/tmp/hookdoc-inst FLASK_DEBUG=1 flask --app wsgi aftersales hooks-doc"
    )


# --- CLI -----------------------------------------------------------------------------------------

def cli_section(name: str) -> str:
    """The text of docs/cli.md under ``## flask aftersales <name>``, up to the next heading."""
    text = read("cli.md")
    match = re.search(rf"^## flask aftersales {re.escape(name)}[ \t]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/cli.md has no '## flask aftersales {name}' section"
    return match.group(1)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_text(name):
    command = aftersales_cli.commands[name]
    assert command.help and len(command.help.split()) >= 4, f"flask aftersales {name} needs a docstring"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"flask aftersales {name}: option {'/'.join(param.opts)} needs help="


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_documented(name):
    section = cli_section(name)
    assert f"flask aftersales {name}" in section, f"docs/cli.md: give an example of flask aftersales {name}"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_options_are_documented(name):
    section = cli_section(name)
    for param in aftersales_cli.commands[name].params:
        if isinstance(param, click.Option):
            for flag in param.opts:
                assert re.search(rf"`{re.escape(flag)}\b", section), f"docs/cli.md: {name} does not document {flag}"
        elif isinstance(param, click.Argument):
            metavar = param.make_metavar(click.Context(aftersales_cli.commands[name]))
            assert metavar in section, f"docs/cli.md: {name} does not document its argument {metavar}"


def test_cli_reference_documents_no_command_that_does_not_exist():
    documented = re.findall(r"^## flask aftersales (\S+)", read("cli.md"), re.M)
    assert sorted(documented) == COMMANDS


# --- settings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", SETTINGS)
def test_setting_is_documented(setting):
    assert re.search(rf"`{re.escape(setting)}`", read("configuration.md")), (
        f"docs/configuration.md does not describe {setting}"
    )


@pytest.mark.parametrize("variable", sorted({*config.ENVIRONMENT_ALIASES, "AFTERSALES_INSTANCE_PATH"}))
def test_special_environment_variable_is_documented(variable):
    assert re.search(rf"`{re.escape(variable)}`", read("configuration.md"))


def test_configuration_documents_no_setting_that_does_not_exist():
    known = set(SETTINGS) | set(config.ENVIRONMENT_ALIASES) | {"AFTERSALES_INSTANCE_PATH", "AFTERSALES_EXTRA_PLUGINS"}
    mentioned = set(re.findall(r"\bAFTERSALES_[A-Z_]+[A-Z]\b", read("configuration.md")))
    assert mentioned <= known, f"docs/configuration.md mentions unknown settings: {sorted(mentioned - known)}"
