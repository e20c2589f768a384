"""The outcome verifier of WorkBench / NeMo Gym: reward 1.0 when the predicted calls leave the
same state as the ground-truth calls, else 0.0.

Reference semantics (WorkBench `src/evals/utils.py::is_correct`, NeMo Gym `utils.is_correct`):
1. Replay the predicted calls, in order and reads included, on a fresh copy of the sandbox; a
   call that raises (unparseable arguments, unknown tool, unexpected keyword) is skipped, and a
   call that answers with an error string changes nothing.
2. Replay the ground-truth calls on another fresh copy.
3. Compare the five state tables (calendar, emails, plots, tasks, CRM) with pandas
   `DataFrame.equals` after `.str.lower()` on every column except status, list_name and board:
   same columns, same row labels, same values position by position. `.str.lower()` turns a
   non-string cell (an integer duration, a missing value) into NaN, and NaN equals NaN.

The ground truth's end state depends only on (sandbox, ground truth), so it is cached and shared
by the G episodes of a task; an episode's own world already is the replay of its calls.
"""
from __future__ import annotations

import dataclasses
import json
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grpo_jax.envs.base import ToolCall, decode_json
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.execution import run_call
from grpo_jax.envs.workplace.sandbox import Sandbox, World
from grpo_jax.envs.workplace.table import Row, Table

CallLike = Mapping[str, Any] | ToolCall
GROUND_TRUTH_CACHE_SIZE = 8192


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A reward with the reason: the state tables that differ and how."""

    reward: float
    differences: Mapping[str, str]

    @property
    def differing_tables(self) -> tuple[str, ...]:
        return tuple(self.differences)


def verify(sandbox: Sandbox, predicted: Sequence[CallLike], ground_truth: Sequence[CallLike]) -> float:
    """1.0 if replaying `predicted` leaves the same state as replaying `ground_truth`, else 0.0.

    Each call is {"name": str, "arguments": dict | JSON string | None} (or a ToolCall); None
    arguments mean unparseable and the call is skipped. The sandbox is never modified.
    """
    return verify_with_details(sandbox, predicted, ground_truth).reward


def verify_with_details(sandbox: Sandbox, predicted: Sequence[CallLike],
                        ground_truth: Sequence[CallLike]) -> Verdict:
    """`verify` with a diagnostic of which tables differ."""
    return compare_worlds(replay(sandbox, predicted), expected_world(sandbox, ground_truth))


def replay(sandbox: Sandbox, calls: Iterable[CallLike]) -> World:
    """The world after running `calls` on a fresh copy with the verifier's rules."""
    world = sandbox.world()
    for call in calls:
        name, arguments = normalize_call(call)
        if arguments is not None:
            run_call(world, name, arguments, drop_none=False)
    return world


def expected_world(sandbox: Sandbox, ground_truth: Sequence[CallLike]) -> World:
    """The ground truth's end state, computed once per (sandbox, ground truth) and cached."""
    cache = _GROUND_TRUTH_CACHES.setdefault(sandbox, OrderedDict())
    key = json.dumps([list(normalize_call(call)) for call in ground_truth], sort_keys=True, default=str)
    world = cache.get(key)
    if world is None:
        world = replay(sandbox, ground_truth)
        cache[key] = world
        if len(cache) > GROUND_TRUTH_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return world


def compare_worlds(actual: World, expected: World) -> Verdict:
    """Compares the five state tables; reward 1.0 only when all are equal."""
    differences = {}
    for name in C.STATE_TABLES:
        difference = table_difference(actual.tables[name], expected.tables[name])
        if difference is not None:
            differences[name] = difference
    return Verdict(0.0 if differences else 1.0, differences)


def table_difference(actual: Table, expected: Table) -> str | None:
    """None when the tables are equal under the verifier's rules, else what differs first."""
    if actual is expected or actual.rows is expected.rows and actual.labels == expected.labels:
        return None
    if actual.columns != expected.columns:
        return f"columns {list(actual.columns)} instead of {list(expected.columns)}"
    if len(actual) != len(expected):
        return f"{len(actual)} rows instead of {len(expected)}"
    for position, (got, want) in enumerate(zip(actual.rows, expected.rows)):
        if got is not want and _comparable(got, actual.columns) != _comparable(want, expected.columns):
            return f"row {position} is {dict(zip(actual.columns, got))} instead of {dict(zip(expected.columns, want))}"
    if actual.labels != expected.labels:
        return "the rows are equal but their labels differ (pandas index), e.g. writes in another order"
    return None


def normalize_call(call: CallLike) -> tuple[str, dict[str, Any] | None]:
    """(name, arguments dict) of a call, arguments None when they do not form a JSON object."""
    if isinstance(call, ToolCall):
        name, arguments = call.name, call.arguments
    else:
        name, arguments = call.get("name"), call.get("arguments")
    if isinstance(arguments, str):
        arguments, error = decode_json(arguments)
        if error is not None:
            return str(name), None
    return str(name), arguments if isinstance(arguments, dict) else None


def _comparable(row: Row, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(_case_sensitive(value) if column in C.CASE_SENSITIVE_COLUMNS else _lowered(value)
                 for column, value in zip(columns, row))


def _lowered(value: Any) -> str | None:
    # Series.str.lower(): strings are lower-cased, every other cell becomes NaN (None here).
    return value.lower() if isinstance(value, str) else None


def _case_sensitive(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


_GROUND_TRUTH_CACHES: weakref.WeakKeyDictionary[Sandbox, OrderedDict[str, World]] = weakref.WeakKeyDictionary()
