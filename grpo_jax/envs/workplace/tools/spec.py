"""How a tool is declared: its Python function, its parameters and whether it writes.

The parameter list is the single source of the JSON schema shown to the model (schemas.py) and
of the documentation; the function's own keyword defaults carry the reference's behaviour for a
missing argument.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

STRING = "string"
INTEGER = "integer"


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a tool as the model sees it."""

    name: str
    description: str
    type: str = STRING
    required: bool = False


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A tool: `function(world, /, **arguments)` returns a JSON-able result."""

    name: str
    function: Callable[..., Any]
    description: str
    params: tuple[Param, ...]
    writes: bool = False

    @property
    def domain(self) -> str:
        """The toolkit the tool belongs to, e.g. "email" for "email_send_email"."""
        for prefix in ("company_directory", "customer_relationship_manager", "project_management"):
            if self.name.startswith(prefix + "_"):
                return prefix
        return self.name.split("_", 1)[0]

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params if param.required)
