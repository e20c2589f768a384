"""Expert trajectories: the turns a competent agent takes to solve a task, for warm-starting.

A trajectory is a list of assistant turns, each either {"tool_calls": [{"name", "arguments"}]}
or {"content": "<final answer>"}: the reads (directory look-ups, searches page by page), one turn
with the writes (the ground truth), then a short final answer. It fits NeMo Gym's 6 model calls.

The visibility rule keeps experts honest: every ID a write uses, and every email address, must
appear in the response of an earlier read (addresses may also come from the task text).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpo_jax.envs.base import ToolCall
from grpo_jax.envs.workplace.execution import respond
from grpo_jax.envs.workplace.sandbox import Sandbox, World
from grpo_jax.envs.workplace.tasks.base import MAX_READ_TURNS, Call, Solution, describe_writes

# NeMo Gym's simple agent: at most this many model calls per episode.
MAX_MODEL_CALLS = 6
ID_ARGUMENTS = ("email_id", "event_id", "task_id", "customer_id")
ADDRESS_ARGUMENTS = ("recipient", "participant_email", "assigned_to_email")
ADDRESS_FIELDS = ("participant_email", "assigned_to_email", "customer_email")

Turn = dict[str, Any]


def read_turns(stages: Sequence[Sequence[Sequence[Call]]]) -> list[list[Call]]:
    """Flattens read stages into turns: a search's next page comes one turn after the last."""
    turns = []
    for stage in stages:
        depth = max((len(group) for group in stage), default=0)
        for page in range(depth):
            turns.append([group[page] for group in stage if page < len(group)])
    return turns


def expert_turns(solution: Solution) -> list[Turn] | None:
    """The expert's assistant turns for a solution, or None if they exceed the step budget."""
    reads = read_turns(solution.reads)
    if len(reads) > MAX_READ_TURNS:
        return None
    turns: list[Turn] = [{"tool_calls": calls} for calls in reads]
    if solution.writes:
        turns.append({"tool_calls": list(solution.writes)})
    turns.append({"content": solution.final or describe_writes(solution.writes)})
    return turns if len(turns) <= MAX_MODEL_CALLS else None


def as_tool_calls(turn: Turn) -> list[ToolCall] | str:
    """A stored turn as the rollout engine sees it: ToolCalls, or the final text."""
    if "tool_calls" in turn:
        return [ToolCall(c["name"], c["arguments"]) for c in turn["tool_calls"]]
    return turn["content"]


def must_be_seen(write: Call) -> list[str]:
    """The values of a write that an agent can only know from a read (IDs and addresses)."""
    arguments = write["arguments"]
    values = [arguments[key] for key in ID_ARGUMENTS + ADDRESS_ARGUMENTS if key in arguments]
    if arguments.get("field") in ADDRESS_FIELDS and "new_value" in arguments:
        values.append(arguments["new_value"])
    return [str(value) for value in values]


def visibility_problems(query: str, read_responses: Sequence[str], writes: Sequence[Call]) -> list[str]:
    """What the writes use without having seen it: IDs must be in an earlier read response,
    addresses in a response or the task text."""
    seen = "\n".join(read_responses).lower()
    problems = []
    for write in writes:
        for value in must_be_seen(write):
            in_query = "@" in value and value.lower() in query.lower()
            if value.lower() not in seen and not in_query:
                problems.append(f"{write['name']} uses {value!r}, which no earlier read showed")
    return problems


def run_turns(world: World, turns: Sequence[Turn]) -> list[list[str]]:
    """Plays the expert's tool turns on `world`; returns the response texts per turn."""
    responses = []
    for turn in turns:
        if "tool_calls" in turn:
            responses.append([respond(world, ToolCall(c["name"], c["arguments"]))[0] for c in turn["tool_calls"]])
    return responses


def check_expert(sandbox: Sandbox, query: str, solution: Solution, turns: Sequence[Turn]) -> list[str]:
    """Problems with an expert trajectory: invisible values, or a write that changed nothing."""
    world = sandbox.world()
    read_turn_count = len(turns) - (2 if solution.writes else 1)
    responses = run_turns(world, turns[:read_turn_count])
    problems = visibility_problems(query, [text for turn in responses for text in turn], solution.writes)
    for write in solution.writes:
        before = dict(world.tables)
        text = respond(world, ToolCall(write["name"], write["arguments"]))[0]
        if world.tables == before:
            problems.append(f"{write['name']}({write['arguments']}) changed nothing: {text}")
    return problems
