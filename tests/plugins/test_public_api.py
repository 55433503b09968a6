"""The shipped plugins use only the public API: names exported by ``aftersales/__init__.py``."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aftersales
from aftersales.plugins import SHIPPED_PLUGINS_DIR

PLUGIN_FILES = sorted(SHIPPED_PLUGINS_DIR.rglob("*.py"))


def aftersales_imports(source: str) -> list[str]:
    """Every import of the aftersales package in a module, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "aftersales"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aftersales":
            found += [f"{node.module}:{alias.name}" for alias in node.names]
    return found


def test_the_checker_sees_a_reach_past_the_public_api():
    source = "from aftersales import hookimpl\nfrom aftersales.services import act\nimport aftersales.models\n"
    assert aftersales_imports(source) == ["aftersales:hookimpl", "aftersales.services:act", "aftersales.models"]


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=[str(p.relative_to(SHIPPED_PLUGINS_DIR)) for p in PLUGIN_FILES])
def test_plugin_imports_only_public_names(path: Path):
    for imported in aftersales_imports(path.read_text(encoding="utf-8")):
        module, _, name = imported.partition(":")
        assert module == "aftersales", f"{path.name} imports from {module}, past the public API"
        assert name in aftersales.__all__, f"{path.name} imports {name}, which aftersales does not export"
