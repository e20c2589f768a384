"""The task generator: NeMo Gym JSONL rows with ground truth and an expert trajectory.

Families are visited round-robin in a seeded order, so every family appears once n reaches the
number of families; each draw asks for an empty answer with the family's empty share. A draw is
kept only if its key is new, belongs to the requested split, and its expert trajectory passes
the visibility rule with every write changing the state. A family whose draws keep failing (its
parameter space on this sandbox is used up) is dropped; when all are, the generator raises.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from grpo_jax.envs.workplace.environment import ENVIRONMENT_NAME
from grpo_jax.envs.workplace.prompts import system_prompt
from grpo_jax.envs.workplace.sandbox import Sandbox
from grpo_jax.envs.workplace.schemas import responses_tools
from grpo_jax.envs.workplace.tasks.base import Chooser, Family, NoChoice
from grpo_jax.envs.workplace.tasks.expert import check_expert, expert_turns
from grpo_jax.envs.workplace.tasks.facts import Facts, facts_of
from grpo_jax.envs.workplace.tasks.registry import select_families
from grpo_jax.envs.workplace.tasks.split import SPLITS, VALIDATION_FRACTION, split_of, task_key

# Draws per family before it counts as used up on this sandbox.
MAX_DRAWS_PER_TASK = 80
# After this many draws the requested emptiness is no longer insisted on.
DRAWS_BEFORE_ANY_EMPTINESS = 40


def generate_tasks(sandbox: Sandbox, seed: int, n: int, split: str = "train",
                   families: Sequence[str] | None = None, *, validation_fraction: float = VALIDATION_FRACTION,
                   include_tools: bool = True, first_id: int = 0,
                   allow_fewer: bool = False) -> list[dict[str, Any]]:
    """`n` distinct tasks of `split` on `sandbox`, deterministic in (sandbox, seed, n, split, families).

    A sandbox holds finitely many distinct tasks of a family; when every family is used up the
    generator raises, or with `allow_fewer` returns the tasks it has.

    Rows follow NeMo Gym's JSONL format (id, responses_create_params, ground_truth, category,
    environment_name) plus family, split, task_key, params, sandbox (its spec) and expert.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n={n}; expected a count >= 0")
    rng = random.Random(f"{seed}/{split}/{sandbox.fingerprint}")
    facts = facts_of(sandbox)
    active = list(select_families(families))
    tools = responses_tools() if include_tools else []
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    while len(rows) < n:
        if not active:
            if allow_fewer:
                break
            raise ValueError(f"only {len(rows)} distinct {split} tasks could be drawn from this sandbox; "
                             "use more sandboxes (other seeds) for more tasks")
        rng.shuffle(active)
        for family in list(active):
            if len(rows) == n:
                break
            row = _draw(family, facts, rng, split, validation_fraction, seen)
            if row is None:
                active.remove(family)
                continue
            row["id"] = first_id + len(rows)
            row["responses_create_params"]["tools"] = tools
            rows.append(row)
    return rows


def _draw(family: Family, facts: Facts, rng: random.Random, split: str, validation_fraction: float,
          seen: set[str]) -> dict[str, Any] | None:
    sandbox = facts.sandbox
    want_empty = family.empty_share > 0 and rng.random() < family.empty_share
    for attempt in range(MAX_DRAWS_PER_TASK):
        choose = Chooser(rng)
        try:
            solution = family.sample(facts, choose, want_empty if attempt < DRAWS_BEFORE_ANY_EMPTINESS else None)
        except NoChoice:
            continue
        if solution is None or len(solution.writes) > family.max_writes:
            continue
        key = task_key(family.id, sandbox.fingerprint, choose.params)
        if key in seen or split_of(key, validation_fraction) != split:
            continue
        turns = expert_turns(solution)
        if turns is None:
            continue
        query = _capitalized(rng.choice(family.phrasings).format(**solution.fill))
        if check_expert(sandbox, query, solution, turns):
            continue
        seen.add(key)
        return {
            "responses_create_params": {
                "input": [{"role": "system", "content": system_prompt(sandbox.now)},
                          {"role": "user", "content": query}],
                "tools": [], "parallel_tool_calls": False, "temperature": 1.0,
            },
            "ground_truth": [{"name": w["name"], "arguments": json.dumps(w["arguments"])} for w in solution.writes],
            "category": family.category,
            "environment_name": ENVIRONMENT_NAME,
            "family": family.id,
            "split": split,
            "task_key": key,
            "params": choose.params,
            "sandbox": dict(sandbox.spec),
            "expert": turns,
        }
    return None


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]
