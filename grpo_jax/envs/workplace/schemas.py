"""JSON schemas of the tools, for task rows and for prompts.

Two renderings of the same ToolSpecs:
- `responses_tools`: NeMo Gym's Responses-API function tools (the `tools` of a JSONL row):
  {"type": "function", "name", "description", "parameters": {..., "additionalProperties": false},
  "strict": false}.
- `chat_tools`: Chat Completions tools for the chat template, {"type": "function", "function":
  {...}}, in one of four styles: "full" (every description), "compact" (parameter descriptions
  dropped, each tool description cut to its first sentence), "minimal" (names, the parameter
  list and the required list only), so a small model's context can hold the tools, and "none"
  (no tool list in the prompt: the tools stay callable, for a model that was trained on them,
  like the embedded tiny one, whose whole context is a few hundred tokens).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpo_jax.envs.workplace.tools import TOOL_NAMES, TOOLS_BY_NAME
from grpo_jax.envs.workplace.tools.spec import ToolSpec


def select_tools(tool_names: Sequence[str] | None = None) -> tuple[ToolSpec, ...]:
    """The tools to show, in registry order; all 27 when `tool_names` is None or empty."""
    if not tool_names:
        return tuple(TOOLS_BY_NAME[name] for name in TOOL_NAMES)
    unknown = sorted(set(tool_names) - set(TOOL_NAMES))
    if unknown:
        raise ValueError(f"unknown tool names {unknown}; expected names from {list(TOOL_NAMES)}")
    wanted = set(tool_names)
    return tuple(TOOLS_BY_NAME[name] for name in TOOL_NAMES if name in wanted)


def responses_tools(tool_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """NeMo Gym's Responses-API schemas (the format of `responses_create_params.tools`)."""
    return [{"type": "function", "name": tool.name, "description": tool.description,
             "parameters": _parameters(tool, compact=False), "strict": False}
            for tool in select_tools(tool_names)]


SCHEMA_STYLES = ("full", "compact", "minimal", "none")


def chat_tools(tool_names: Sequence[str] | None = None, style: str = "full") -> list[dict[str, Any]]:
    """Chat Completions schemas for the prompt, in one of `SCHEMA_STYLES` (see module doc)."""
    if style not in SCHEMA_STYLES:
        raise ValueError(f"tool schema style {style!r}; expected one of {SCHEMA_STYLES}")
    if style == "none":
        return []
    tools = []
    for tool in select_tools(tool_names):
        if style == "minimal":
            function = {"name": tool.name, "parameters": [param.name for param in tool.params],
                        "required": list(tool.required)}
        else:
            compact = style == "compact"
            description = _first_sentence(tool.description) if compact else tool.description
            function = {"name": tool.name, "description": description, "parameters": _parameters(tool, compact)}
        tools.append({"type": "function", "function": function})
    return tools


def _parameters(tool: ToolSpec, compact: bool) -> dict[str, Any]:
    properties = {}
    for param in tool.params:
        properties[param.name] = {"type": param.type} if compact else {
            "type": param.type, "description": param.description}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(tool.required)}
    if not compact:
        schema["additionalProperties"] = False
    return schema


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + "." if dot else text
