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
from .i18n import _, lazy_
from .money import Adjustment, RefundResult
from .plugins import hookimpl
from .workflow import Condition, TransitionContext, WorkflowBuilder

__version__ = "0.1.0"

__all__ = [
    "AfterSales",
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
    "waive",
]
