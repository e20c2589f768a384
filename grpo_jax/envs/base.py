"""The contract between the rollout engine and a tool-use environment.

The rollout engine drives every environment through three calls::

    episode = env.start(task_row)              # its own copy of the world
    texts = episode.call_tools([ToolCall(...)]) # one response text per call, run in order
    result = episode.finish(final_message)     # EpisodeResult(reward, info)

`episode.messages` (system + user) and `episode.tools` (OpenAI function schemas) go into the
prompt. An environment never raises on a malformed call: an unknown tool, bad JSON or a wrong
argument becomes an error string for the model, exactly as a real tool server would answer.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol, runtime_checkable

JsonDict = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One function call as the chat parser read it from the model's output.

    `arguments` is the parsed JSON object, the raw JSON text, or None when the parser could not
    read the arguments at all.
    """

    name: str
    arguments: JsonDict | str | None


@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    """The outcome of one episode: a scalar reward and diagnostics for logs."""

    reward: float
    info: JsonDict = dataclasses.field(default_factory=dict)


@runtime_checkable
class Episode(Protocol):
    """One rollout's private world."""

    messages: list[JsonDict]
    tools: list[JsonDict]

    def call_tools(self, calls: list[ToolCall]) -> list[str]:
        """Runs `calls` in order on this episode's world; returns one response text per call."""
        ...

    def finish(self, final_message: str | None = None) -> EpisodeResult:
        """Scores the episode once the model has stopped calling tools.

        `final_message` is the visible text of the model's last turn (None when the episode was cut
        before an answer): environments scored on the answer read it, state-scored ones ignore it.
        """
        ...


@runtime_checkable
class Environment(Protocol):
    """A factory of episodes from task rows (NeMo Gym JSONL rows)."""

    name: str

    def start(self, task: JsonDict) -> Episode:
        """Opens an episode for `task` on a fresh copy of the world."""
        ...


class InvalidArguments(ValueError):
    """Tool-call arguments that are not a JSON object; `message` is what the model is told."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def parse_arguments(arguments: JsonDict | str | None) -> JsonDict:
    """Returns the arguments of a tool call as a dict or raises InvalidArguments.

    The error text follows NeMo Gym's simple agent, which answers a call whose arguments do not
    parse with `{"error": "Invalid tool call arguments: <repr of the exception>"}`.
    """
    if arguments is None:
        raise InvalidArguments(_invalid_arguments_text("the arguments could not be parsed"))
    if isinstance(arguments, str):
        arguments, error = decode_json(arguments)
        if error is not None:
            raise InvalidArguments(_invalid_arguments_text(error))
    if not isinstance(arguments, dict):
        raise InvalidArguments(
            _invalid_arguments_text(f"expected a JSON object, got {type(arguments).__name__}"))
    return arguments


def decode_json(text: str) -> tuple[Any, str | None]:
    """(value, None) for JSON text, else (None, a description of why it does not decode).

    Model-written text reaches `json.loads` here, so every way it can fail is caught, not only
    JSONDecodeError: an integer literal over Python's 4300-digit limit raises a plain ValueError
    and deep nesting ("[[[[...") raises RecursionError.
    """
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, repr(error)
    except RecursionError:
        return None, "RecursionError('the JSON is nested too deeply')"
    except ValueError as error:
        return None, repr(ValueError(str(error)[:200]))


def _invalid_arguments_text(detail: str) -> str:
    return json.dumps({"error": f"Invalid tool call arguments: {detail}"})
