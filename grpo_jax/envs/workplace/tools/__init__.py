"""The 27 workplace tools, in NeMo Gym's order, and their registry."""
from __future__ import annotations

from grpo_jax.envs.workplace.tools import analytics, calendar, crm, directory, email, project_management
from grpo_jax.envs.workplace.tools.spec import Param, ToolSpec

TOOLS: tuple[ToolSpec, ...] = (
    directory.TOOLS + email.TOOLS + calendar.TOOLS + analytics.TOOLS + project_management.TOOLS + crm.TOOLS
)
TOOLS_BY_NAME: dict[str, ToolSpec] = {tool.name: tool for tool in TOOLS}
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS_BY_NAME)
WRITE_TOOL_NAMES: frozenset[str] = frozenset(tool.name for tool in TOOLS if tool.writes)

__all__ = ["TOOLS", "TOOLS_BY_NAME", "TOOL_NAMES", "WRITE_TOOL_NAMES", "Param", "ToolSpec"]
