"""aftersales: self-hostable e-commerce after-sales service (售后) for Flask.

The public face for host apps and plugin authors. Plugins import only names from here.
"""
from .app import AfterSales, create_app
from .eligibility import CaseRequest, Reason, deny, require, waive
from .errors import (
    AfterSalesError,
    CaseChanged,
    DomainError,
    InvalidInput,
    NotAllowed,
    NotEligible,
    NotFound,
    PluginError,
    RefundRefused,
    WorkflowError,
)
from .fields import FormField
from .i18n import PluginTranslations, _, lazy_, shop_time
from .money import Adjustment, RefundResult
from .plugins import hookimpl
from .workflow import Condition, TransitionContext, WorkflowBuilder


def setting(name: str, default: object = None) -> object:
    """A setting of the running app (``AFTERSALES_*`` and plugin settings), for plugins."""
    from flask import current_app

    return current_app.config.get(name, default)


__version__ = "0.1.0"

__all__ = [
    "AfterSales",
    "PluginTranslations",
    "shop_time",
    "AfterSalesError",
    "Adjustment",
    "CaseChanged",
    "CaseRequest",
    "Condition",
    "DomainError",
    "FormField",
    "InvalidInput",
    "NotAllowed",
    "NotEligible",
    "NotFound",
    "PluginError",
    "Reason",
    "RefundRefused",
    "RefundResult",
    "TransitionContext",
    "WorkflowBuilder",
    "WorkflowError",
    "_",
    "create_app",
    "deny",
    "hookimpl",
    "lazy_",
    "require",
    "setting",
    "waive",
]
