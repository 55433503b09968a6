"""Errors a person can cause or meet, each with a message that person understands."""
from __future__ import annotations


class AfterSalesError(Exception):
    """Base of every error the module raises on purpose."""


class DomainError(AfterSalesError):
    """A request the rules refuse; the message is shown to the person who made it."""


class NotAllowed(DomainError):
    """The workflow does not let this actor fire this trigger in the case's state."""


class InvalidInput(DomainError):
    """Input is missing or out of range; ``field`` names the form field when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotEligible(DomainError):
    """Eligibility refused the request; ``verdict`` says why, kind by kind."""

    def __init__(self, message: str, verdict: object = None):
        super().__init__(message)
        self.verdict = verdict


class CaseChanged(DomainError):
    """Someone else changed the case first; reload and look before acting again."""

    def __init__(self, case_id: int, message: str | None = None):
        super().__init__(message or f"case {case_id} changed while you were looking at it; reload it")
        self.case_id = case_id


class RefundRefused(DomainError):
    """A refund that would break the ceiling or reuse an idempotency key differently."""


class NotFound(DomainError):
    """The object does not exist, or is not yours to see (the same answer on purpose)."""


class WorkflowError(AfterSalesError):
    """A workflow table is broken; raised at load with the responsible plugin's name."""


class PluginError(AfterSalesError):
    """A plugin failed; the message always names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, original: BaseException | None = None, message: str | None = None):
        text = message or f"plugin {plugin!r} failed in {hook}: {original!r}"
        super().__init__(text)
        self.plugin = plugin
        self.hook = hook
        self.original = original
