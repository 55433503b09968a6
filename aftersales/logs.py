"""Where the standalone app's log goes: standard error, at a level and in a format from settings.

Only the standalone app (``create_app``) calls :func:`configure_logging`; a host marketplace
that mounts the module keeps its own logging, and the module's loggers (``aftersales.*``, plugin
modules under ``aftersales_plugins.*``, Flask-Limiter's ``flask-limiter``) simply propagate to it.

What the operator needs to see lands here: a refund the payment provider refused, a side effect
(outbox message) that failed to deliver, the rate-limit storage (Redis) unreachable and counts
kept in memory meanwhile, staff logins paused after failed attempts, files removed by upload
reconciliation. Under gunicorn or systemd standard error ends up in the journal.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Mapping

#: The loggers the module's own messages come from.
MODULE_LOGGERS = ("aftersales", "aftersales_plugins", "flask-limiter")


class _ModuleHandler(logging.StreamHandler):
    """Marks the handler this module added, so configuring twice (several apps in one
    process, as in tests) replaces it instead of printing every line twice."""


def configure_logging(settings: Mapping[str, Any]) -> logging.Handler:
    """Send the module's loggers to standard error at ``AFTERSALES_LOG_LEVEL`` in
    ``AFTERSALES_LOG_FORMAT``; refuses an unknown level with a message naming the setting."""
    level_name = str(settings.get("AFTERSALES_LOG_LEVEL") or "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        raise RuntimeError(f"AFTERSALES_LOG_LEVEL: {level_name!r} is not a log level "
                           "(DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    handler = _ModuleHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(str(settings.get("AFTERSALES_LOG_FORMAT"))))
    for name in MODULE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _ModuleHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
    return handler
