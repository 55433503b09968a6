"""What one app's after-sales module holds: settings, plugins, cached workflows, reasons."""
from __future__ import annotations

import threading
from typing import Any, Mapping

from flask import current_app

from .eligibility import Reason, core_reasons
from .plugins import PluginHost
from .workflow import CompiledWorkflow, WorkflowRegistry



#: The sections an ``aftersales_wording`` answer may have (see the hook's documentation).
WORDING_SECTIONS = ("states", "triggers", "buyer_next", "deadline_outcomes", "conditions", "categories", "actors",
                    "plugins")

class Runtime:
    """Stored in ``app.extensions["aftersales"]``; the service layer reaches it via :func:`current`."""

    def __init__(self, settings: Mapping[str, Any], plugins: PluginHost, instance_path: str, *, standalone: bool = True):
        self.settings = settings
        self.standalone = standalone  # create_app's own app, or mounted in a host
        self.plugins = plugins
        self.instance_path = instance_path  # the app's instance folder (uploads live there by default)
        self.workflows = WorkflowRegistry(settings, plugins.apply_workflow, plugins.category_key)
        self._reasons: dict[str, dict[str, Reason]] = {}
        self._wording: dict[str, dict[str, Any]] | None = None
        self._order_workflow: CompiledWorkflow | None = None
        self._lock = threading.Lock()

    def wording(self) -> dict[str, dict[str, Any]]:
        """Plugins' words for their states, triggers and timers, merged (see aftersales_wording)."""
        if self._wording is None:
            merged: dict[str, dict[str, Any]] = {section: {} for section in WORDING_SECTIONS}
            for answer in self.plugins.call("aftersales_wording"):
                for section, words in (answer or {}).items():
                    if section not in merged:
                        raise TypeError(f"aftersales_wording: unknown section {section!r}")
                    merged[section].update(words)
            self._wording = merged
        return self._wording

    def workflow(self, category: str, kind: str) -> CompiledWorkflow:
        return self.workflows.get(category, kind)

    def order_workflow(self) -> CompiledWorkflow:
        """The order's own table (``aftersales.order_workflow``), built once."""
        if self._order_workflow is None:
            from .order_workflow import build_order_workflow

            self._order_workflow = build_order_workflow(self.settings)
        return self._order_workflow

    def reasons(self, category: str) -> dict[str, Reason]:
        """Core reasons plus the plugins' for this category, by code, in display order.

        Kept per :meth:`PluginHost.category_key`: the categories no plugin declares share one
        entry, asked of the plugins that serve every category as ``"*"``."""
        key = self.plugins.category_key(category)
        cached = self._reasons.get(key)
        if cached is not None:
            return cached
        reasons = {reason.code: reason for reason in core_reasons(self.settings)}
        for answer in self.plugins.call("aftersales_reasons", category, category=key):
            for reason in answer or ():
                if not isinstance(reason, Reason):
                    raise TypeError(f"aftersales_reasons must return Reason values, got {reason!r}")
                reasons[reason.code] = reason
        with self._lock:
            self._reasons[key] = reasons
        return reasons


def current() -> Runtime:
    try:
        return current_app.extensions["aftersales"]
    except KeyError:
        raise RuntimeError("the AfterSales extension is not initialised on this app") from None
