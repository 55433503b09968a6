"""The plugin manager: loads plugins, knows which categories each serves, calls their hooks.

Plugins come from the ``aftersales`` entry-point group of installed distributions (the shipped
plugins among them) and from the operator's plugin folders (``AFTERSALES_PLUGINS_DIR``, default:
none). Each app has its own manager in ``app.extensions["aftersales"].plugins``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Iterable, Mapping

import pluggy

from . import hookspecs, resources
from .errors import PluginError, WorkflowError
from .workflow import GENERAL_CATEGORY

log = logging.getLogger(__name__)

PROJECT = "aftersales"
hookimpl = pluggy.HookimplMarker(PROJECT)
#: The folder of the shipped plugins (the source tree's plugins/). They register through the
#: ``aftersales`` entry-point group; tests load them from this folder by name.
SHIPPED_PLUGINS_DIR = resources.SHIPPED_PLUGINS_DIR


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    categories: tuple[str, ...] | None  # None: serves every category
    hooks: tuple[str, ...]
    source: str


class PluginHost:
    """One pluggy manager plus the category each plugin serves."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._categories: dict[str, tuple[str, ...] | None] = {}
        self._sources: dict[str, str] = {}
        self._subset_callers: dict[tuple[str, str], Any] = {}
        self._declared: frozenset[str] | None = None
        self._lock = threading.Lock()

    # --- loading -------------------------------------------------------------------------
    def load(self, settings: Mapping[str, Any]) -> None:
        """Load plugins as the settings say, then refuse any hook name no spec declares."""
        wanted = _name_set(settings.get("AFTERSALES_PLUGINS", "all"))
        for name in _name_set(settings.get("AFTERSALES_DISABLED_PLUGINS", "")) or ():
            self.manager.set_blocked(name)

        def allowed(name: str) -> bool:
            return (wanted is None or name in wanted) and not self.manager.is_blocked(name)

        if settings.get("AFTERSALES_LOAD_ENTRY_POINTS", True):
            for name in self._entry_point_names():
                if allowed(name):
                    self._guarded_load(name, lambda n=name: self.manager.load_setuptools_entrypoints(PROJECT, name=n), "entry point")
        for folder in _folders(settings.get("AFTERSALES_PLUGINS_DIR")):
            for name, path in _plugin_files(folder):
                if allowed(name) and self.manager.get_plugin(name) is None:
                    module = self._guarded_load(name, lambda p=path, n=name: _import_file(n, p), str(path))
                    self.register(module, name, source=str(path))
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            name = self.manager.get_name(error.plugin) or repr(error.plugin)
            raise PluginError(name, "load", error, f"plugin {name!r} is refused: {error}") from error

    def _entry_point_names(self) -> list[str]:
        from importlib.metadata import entry_points

        return [ep.name for ep in entry_points(group=PROJECT)]

    def _guarded_load(self, name: str, load: Any, source: str) -> Any:
        try:
            result = load()
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(name, "load", error, f"plugin {name!r} ({source}) failed to load: {error!r}") from error
        self._sources.setdefault(name, source)
        if source == "entry point" and self.manager.get_plugin(name) is not None:
            self._read_categories(name, self.manager.get_plugin(name))
        return result

    def register(self, plugin: Any, name: str | None = None, source: str = "registered") -> str:
        """Register a plugin object (module, class instance) under ``name``."""
        try:
            registered = self.manager.register(plugin, name=name)
        except ValueError as error:
            raise PluginError(name or repr(plugin), "load", error, f"plugin {name!r} is registered twice") from error
        except pluggy.PluginValidationError as error:
            raise PluginError(name or "?", "load", error, f"plugin {name!r} is refused: {error}") from error
        if registered is None:  # blocked
            return name or ""
        plugin_name = self.manager.get_name(plugin)
        self._sources[plugin_name] = source
        self._read_categories(plugin_name, plugin)
        self._subset_callers.clear()
        return plugin_name

    def _read_categories(self, name: str, plugin: Any) -> None:
        function = getattr(plugin, "aftersales_categories", None)
        if function is None:
            self._categories[name] = None
            self._declared = None
            return
        try:
            categories = function()
        except Exception as error:
            raise PluginError(name, "aftersales_categories", error) from error
        if isinstance(categories, str) or not all(isinstance(c, str) for c in categories or ()):
            raise PluginError(name, "aftersales_categories", None,
                              f"plugin {name!r}: aftersales_categories must return a list of category names")
        self._categories[name] = tuple(categories or ())
        self._declared = None

    # --- who serves what -----------------------------------------------------------------
    def loaded(self) -> list[tuple[str, Any]]:
        """(name, plugin) of every registered plugin; blocked names are left out."""
        return [(name, plugin) for name, plugin in self.manager.list_name_plugin() if plugin is not None]

    def serves(self, name: str, category: str) -> bool:
        categories = self._categories.get(name)
        return categories is None or category in categories

    def declared_categories(self) -> frozenset[str]:
        """Every category some loaded plugin declares it serves."""
        declared = self._declared
        if declared is None:
            declared = self._declared = frozenset(
                c for name, _ in self.loaded() for c in (self._categories.get(name) or ()))
        return declared

    def category_key(self, category: str) -> str:
        """The name a category's cached workflows, reasons and hook callers are kept under:
        itself when a plugin declares it, else :data:`GENERAL_CATEGORY`. There are never more
        keys than declared categories plus one."""
        return category if category in self.declared_categories() else GENERAL_CATEGORY

    def caller(self, hook_name: str, category: str | None = None) -> Any:
        """The hook, without the plugins that don't serve ``category`` (all when None)."""
        hook = getattr(self.manager.hook, hook_name)
        if category is None:
            return hook
        key = (hook_name, self.category_key(category))
        with self._lock:
            caller = self._subset_callers.get(key)
            if caller is None:
                outsiders = [plugin for name, plugin in self.loaded() if not self.serves(name, category)]
                caller = hook if not outsiders else self.manager.subset_hook_caller(hook_name, outsiders)
                self._subset_callers[key] = caller
        return caller

    def implements(self, hook_name: str, category: str | None = None) -> bool:
        """Whether any plugin serving ``category`` implements the hook."""
        return bool(self.caller(hook_name, category).get_hookimpls())

    def call(self, hook_name: str, category: str | None = None, /, **kwargs: Any) -> Any:
        """Call a hook for ``category``; a failing plugin is reported by name."""
        try:
            return self.caller(hook_name, category)(**kwargs)
        except (PluginError, WorkflowError):
            raise
        except Exception as error:
            culprit = self._culprit(hook_name, error.__traceback__)
            raise PluginError(culprit, hook_name, error) from error

    def _culprit(self, hook_name: str, trace: TracebackType | None) -> str:
        codes = {
            impl.function.__code__: impl.plugin_name
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls()
            if hasattr(impl.function, "__code__")
        }
        culprit = "unknown plugin"
        while trace is not None:
            culprit = codes.get(trace.tb_frame.f_code, culprit)
            trace = trace.tb_next
        return culprit

    def apply_workflow(self, flow: Any) -> None:
        """Run each serving plugin's workflow hook in call order, naming it as the author of its rows."""
        hook = self.manager.hook.aftersales_workflow
        for impl in reversed(hook.get_hookimpls()):
            if not self.serves(impl.plugin_name, flow.category):
                continue
            flow.origin = impl.plugin_name
            try:
                impl.function(**{name: flow for name in impl.argnames})
            except WorkflowError:
                raise
            except Exception as error:
                raise PluginError(impl.plugin_name, "aftersales_workflow", error) from error
            finally:
                flow.origin = "core"

    # --- describing ----------------------------------------------------------------------
    def describe(self) -> list[PluginInfo]:
        versions = {
            self.manager.get_name(plugin): dist.version
            for plugin, dist in self.manager.list_plugin_distinfo()
        }
        infos = []
        for name, plugin in self.loaded():
            hooks = sorted(
                hook.name for hook in self.manager.get_hookcallers(plugin) or ()
            )
            infos.append(
                PluginInfo(
                    name=name,
                    version=versions.get(name) or str(getattr(plugin, "__version__", "-")),
                    categories=self._categories.get(name),
                    hooks=tuple(hooks),
                    source=self._sources.get(name, "registered"),
                )
            )
        return sorted(infos, key=lambda info: info.name)


def _name_set(value: Any) -> set[str] | None:
    """``"all"`` → None (no filter); ``"a, b"`` or a list → {"a", "b"}."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        return {part.strip() for part in value.split(",") if part.strip()}
    return {str(part) for part in value}


def _folders(value: Any) -> list[Path]:
    if value is None:  # the shipped plugins come through their entry points
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [p for p in str(value).split(os.pathsep) if p]
    folders = [Path(p) for p in value]
    for folder in folders:
        if not folder.is_dir():
            raise PluginError(str(folder), "load", None, f"plugin folder {str(folder)!r} does not exist")
    return folders


def _plugin_files(folder: Path) -> Iterable[tuple[str, Path]]:
    """Modules ``name.py`` and packages ``name/__init__.py`` in a plugin folder."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.suffix == ".py" and entry.is_file():
            yield entry.stem, entry
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            yield entry.name, entry / "__init__.py"


def _import_file(name: str, path: Path) -> ModuleType:
    module_name = f"aftersales_plugins.{name}"
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    is_package = path.name == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(path.parent)] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    if "aftersales_plugins" not in sys.modules:
        namespace = ModuleType("aftersales_plugins")
        namespace.__path__ = []  # type: ignore[attr-defined]
        sys.modules["aftersales_plugins"] = namespace
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
