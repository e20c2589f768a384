"""Scoring stored rollouts: accuracy per category, as NeMo Gym's /verify would give it.

Accepted rows (JSONL):
- NeMo Gym rollouts: the predicted calls are the `function_call` items of `response.output`
  (reads included), the ground truth is the row's `ground_truth` (or the task's, see below);
- simple rows: {"predicted": [calls], "ground_truth": [calls], "category": ...}.
Rows without a ground truth are matched to a task file by their user message when one is given,
otherwise counted as unscored.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from grpo_jax.envs.workplace.sandbox import Sandbox
from grpo_jax.envs.workplace.verifier import verify

UNKNOWN_CATEGORY = "unknown"


@dataclasses.dataclass
class Scoreboard:
    """Rewards by category, and the rows that could not be scored."""

    rewards: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    unscored: int = 0

    def accuracy(self) -> dict[str, float]:
        table = {category: sum(r) / len(r) for category, r in sorted(self.rewards.items())}
        every = [r for rewards in self.rewards.values() for r in rewards]
        if every:
            table["all"] = sum(every) / len(every)
        return table

    def report(self) -> str:
        lines = [f"{'category':<52} {'n':>6} {'accuracy':>9}"]
        for category, value in self.accuracy().items():
            count = sum(len(r) for r in self.rewards.values()) if category == "all" else len(self.rewards[category])
            lines.append(f"{category:<52} {count:>6} {value:>9.3f}")
        if self.unscored:
            lines.append(f"{self.unscored} rows had no ground truth and were not scored")
        return "\n".join(lines)


def predicted_calls(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls a rollout made, in order."""
    if "predicted" in row:
        return list(row["predicted"])
    output = (row.get("response") or {}).get("output") or []
    return [{"name": item.get("name"), "arguments": item.get("arguments")}
            for item in output if item.get("type") == "function_call"]


def user_message(row: Mapping[str, Any]) -> str | None:
    """The task text of a NeMo Gym row (the last user message of its input)."""
    messages = (row.get("responses_create_params") or {}).get("input") or []
    texts = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    return texts[-1] if texts else None


def score_rows(rows: Iterable[Mapping[str, Any]], sandbox: Sandbox | None,
               tasks: Iterable[Mapping[str, Any]] = ()) -> Scoreboard:
    """Verifies every row; a row's own `sandbox` spec wins over `sandbox`."""
    by_query = {user_message(task): task for task in tasks}
    sandboxes: dict[str, Sandbox] = {}
    board = Scoreboard()
    for row in rows:
        task = row if "ground_truth" in row else by_query.get(user_message(row))
        if task is None:
            board.unscored += 1
            continue
        spec = row.get("sandbox") or task.get("sandbox")
        if spec:
            key = json.dumps(spec, sort_keys=True)
            if key not in sandboxes:
                sandboxes[key] = Sandbox.from_spec(spec)
            row_sandbox = sandboxes[key]
        elif sandbox is not None:
            row_sandbox = sandbox
        else:
            raise ValueError("rows name no sandbox; pass --sandbox DIR or --sandbox-seed K")
        category = row.get("category") or task.get("category") or UNKNOWN_CATEGORY
        board.rewards[category].append(verify(row_sandbox, predicted_calls(row), task["ground_truth"]))
    return board
