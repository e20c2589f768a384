"""The workplace assistant as an `Environment`: one episode per task row.

An episode owns a private World (a dict of the sandbox's immutable tables), runs the model's
calls on it as NeMo Gym's server would, and at the end compares it with the ground truth's end
state, which is computed once per task and shared by all its episodes.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from grpo_jax.envs.base import EpisodeResult, JsonDict, ToolCall, decode_json
from grpo_jax.envs.workplace.execution import respond
from grpo_jax.envs.workplace.prompts import FULL, PROMPT_VARIANTS, system_prompt
from grpo_jax.envs.workplace.sandbox import Sandbox
from grpo_jax.envs.workplace.schemas import SCHEMA_STYLES, chat_tools, select_tools
from grpo_jax.envs.workplace.verifier import compare_worlds, expected_world, replay

ENVIRONMENT_NAME = "workplace_assistant"


@dataclasses.dataclass(frozen=True)
class WorkplaceOptions:
    """What the model is shown. The tools themselves never change.

    tool_names: the tools in the prompt (all 27 when empty); calls to the others still work.
    tool_schema: how the schemas are written, "full", "compact", "minimal" (small context windows)
        or "none" (not listed at all, for a model trained on these tools).
    system_prompt: "full" (the task's own system message, NeMo Gym's text) or "short".
    """

    tool_names: tuple[str, ...] = ()
    tool_schema: str = "full"
    system_prompt: str = FULL

    def __post_init__(self):
        select_tools(self.tool_names)  # rejects unknown names now rather than at the first episode
        if self.tool_schema not in SCHEMA_STYLES:
            raise ValueError(f"tool_schema={self.tool_schema!r}; expected one of {SCHEMA_STYLES}")
        if self.system_prompt not in PROMPT_VARIANTS:
            raise ValueError(f"system_prompt={self.system_prompt!r}; expected one of {PROMPT_VARIANTS}")


class WorkplaceEnvironment:
    """Starts episodes on the sandbox a task row names (or on the default sandbox)."""

    name = ENVIRONMENT_NAME

    def __init__(self, sandbox: Sandbox | None = None, options: WorkplaceOptions = WorkplaceOptions()):
        self.default_sandbox = sandbox
        self.options = options
        self._tools = chat_tools(options.tool_names, style=options.tool_schema)
        self._sandboxes: dict[str, Sandbox] = {}

    @classmethod
    def from_config(cls, config: Any) -> WorkplaceEnvironment:
        """Builds the environment from the `env` section of configs/workplace.py."""
        if config.sandbox == "csv":
            sandbox = Sandbox.from_csv_dir(config.csv_dir, now=config.now)
        elif config.sandbox == "generated":
            sandbox = Sandbox.generate(int(config.sandbox_seed), now=config.now)
        else:
            raise ValueError(f"env.sandbox={config.sandbox!r}; expected 'generated' or 'csv'")
        tool_names = tuple(name for name in str(config.tool_names).split(",") if name.strip())
        options = WorkplaceOptions(tuple(name.strip() for name in tool_names), str(config.tool_schema),
                                   str(config.system_prompt))
        return cls(sandbox, options)

    def sandbox_for(self, task: Mapping[str, Any]) -> Sandbox:
        """The task's own sandbox (its `sandbox` spec), else the environment's default one."""
        spec = task.get("sandbox")
        if not spec:
            if self.default_sandbox is None:
                raise ValueError("the task names no sandbox and the environment has no default sandbox")
            return self.default_sandbox
        if self.default_sandbox is not None and dict(spec) == dict(self.default_sandbox.spec):
            return self.default_sandbox
        key = json.dumps(spec, sort_keys=True)
        if key not in self._sandboxes:
            self._sandboxes[key] = Sandbox.from_spec(spec)
        return self._sandboxes[key]

    def start(self, task: JsonDict) -> WorkplaceEpisode:
        """Opens an episode for a NeMo Gym JSONL row."""
        sandbox = self.sandbox_for(task)
        messages = [dict(message) for message in task["responses_create_params"]["input"]]
        if self.options.system_prompt != FULL or not messages or messages[0].get("role") != "system":
            messages = [m for m in messages if m.get("role") != "system"]
            messages.insert(0, {"role": "system", "content": system_prompt(sandbox.now, self.options.system_prompt)})
        return WorkplaceEpisode(sandbox, messages, self._tools, task.get("ground_truth") or [], task)


class WorkplaceEpisode:
    """One rollout: the model's calls run in order on the episode's own world."""

    def __init__(self, sandbox: Sandbox, messages: list[JsonDict], tools: list[JsonDict],
                 ground_truth: Sequence[Mapping[str, Any]], task: Mapping[str, Any]):
        self.messages = messages
        self.tools = tools
        self._sandbox = sandbox
        self._world = sandbox.world()
        self._ground_truth = ground_truth
        self._task = task
        self._calls: list[JsonDict] = []
        self._errors = 0
        # The live server drops null arguments, the verifier's replay does not; when a call had
        # one, the reward replays the calls the verifier's way instead of reusing the live state.
        self._needs_verifier_replay = False

    def call_tools(self, calls: list[ToolCall]) -> list[str]:
        """Runs `calls` in order; one response text per call (errors included)."""
        texts = []
        for call in calls:
            text, outcome = respond(self._world, call)
            self._calls.append({"name": call.name, "arguments": call.arguments})
            if outcome is None or outcome.raised:
                self._errors += 1
            if isinstance(call.arguments, (dict, str)) and _has_null_argument(call.arguments):
                self._needs_verifier_replay = True
            texts.append(text)
        return texts

    def finish(self, final_message: str | None = None) -> EpisodeResult:
        """Reward 1.0 when the world equals the ground truth's end state, else 0.0 (the answer's
        text is not scored, as in NeMo Gym and WorkBench)."""
        world = replay(self._sandbox, self._calls) if self._needs_verifier_replay else self._world
        verdict = compare_worlds(world, expected_world(self._sandbox, self._ground_truth))
        info = {
            "differing_tables": list(verdict.differing_tables),
            "differences": dict(verdict.differences),
            "calls": list(self._calls),
            "num_calls": len(self._calls),
            "num_failed_calls": self._errors,
            "category": self._task.get("category"),
            "family": self._task.get("family"),
        }
        return EpisodeResult(verdict.reward, info)


def _has_null_argument(arguments: JsonDict | str) -> bool:
    if isinstance(arguments, str):
        arguments, _ = decode_json(arguments)
    return isinstance(arguments, dict) and any(value is None for value in arguments.values())


__all__ = ["ENVIRONMENT_NAME", "WorkplaceEnvironment", "WorkplaceEpisode", "WorkplaceOptions"]
