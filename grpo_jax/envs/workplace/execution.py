"""Running one tool call on a world, the way NeMo Gym's server and verifier do.

Two call paths differ in one detail, and both are kept:
- the live server (`/{tool_name}` route) drops arguments whose value is null before the call;
- the verifier's replay passes them through (`function(**json.loads(arguments))`).
A call that raises (unknown tool, unexpected or wrongly typed argument) changes nothing: the
server answers "Error executing tool '<name>': <message>" and the verifier skips the call.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from grpo_jax.envs.base import InvalidArguments, ToolCall, parse_arguments
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.tools import TOOLS_BY_NAME


@dataclasses.dataclass(frozen=True)
class CallOutcome:
    """The result of one call: the tool's return value, or the error that made it raise."""

    output: Any = None
    error: str | None = None

    @property
    def raised(self) -> bool:
        return self.error is not None


def run_call(world: World, name: str, arguments: Mapping[str, Any], *, drop_none: bool) -> CallOutcome:
    """Runs `name(**arguments)` on `world`; a raising call leaves the world unchanged."""
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        return CallOutcome(error=repr(name))  # str(KeyError(name)), as the reference reports it
    if drop_none:
        arguments = {key: value for key, value in arguments.items() if value is not None}
    tables_before = dict(world.tables)
    try:
        return CallOutcome(output=tool.function(world, **arguments))
    except Exception as error:  # noqa: BLE001 - any failure of a tool is the model's problem
        world.tables = tables_before
        return CallOutcome(error=str(error))


def respond(world: World, call: ToolCall) -> tuple[str, CallOutcome | None]:
    """Runs a model's call as the live server would; returns the text the model sees.

    The outcome is None when the arguments did not parse (nothing ran).
    """
    try:
        arguments = parse_arguments(call.arguments)
    except InvalidArguments as error:
        return error.message, None
    outcome = run_call(world, call.name, arguments, drop_none=True)
    if outcome.raised:
        return render_output(f"Error executing tool '{call.name}': {outcome.error}"), outcome
    return render_output(outcome.output), outcome


def render_output(value: Any) -> str:
    """The server's response body: `{"output": value}` as compact JSON."""
    return json.dumps({"output": value}, separators=(",", ":"), ensure_ascii=False, default=str)
