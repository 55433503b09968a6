"""Extra form fields that plugins add to a step (``aftersales_form_fields``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIELD_TYPES = ("text", "textarea", "choice", "date", "number", "checkbox")


@dataclass(frozen=True)
class FormField:
    """One input: ``name`` is the key the value arrives under in the action's inputs."""

    name: str
    label: Any
    type: str = "text"
    required: bool = False
    choices: tuple[tuple[str, Any], ...] = ()
    help: Any = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: type must be one of {', '.join(FIELD_TYPES)}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"field {self.name!r}: a choice field needs choices")
