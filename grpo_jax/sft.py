"""Supervised warm start: masked cross-entropy on the assistant tokens of expert trajectories.

The task generator writes, for every task, the turns a competent agent takes (look names up,
search, act, answer). They are replayed through the same rollout loop as GRPO with a scripted
policy, so an SFT trajectory has exactly the tokens, glue and loss mask a sampled one would have,
and its reward (always 1.0 for a correct expert) checks the whole chain.
"""
from __future__ import annotations

from typing import Sequence

from grpo_jax import chat
from grpo_jax.rollout import RolloutBatch, RolloutEngine, ScriptedPolicy


def expert_turn_texts(task: dict) -> list[str]:
    """The assistant text of each expert turn, end-of-turn token included."""
    turns = task.get("expert")
    if not turns:
        raise ValueError(f"task {task.get('id')!r} carries no expert trajectory")
    return [chat.assistant_generation(turn.get("content"), turn.get("tool_calls")) for turn in turns]


def expert_batch(engine: RolloutEngine, tasks: Sequence[dict]) -> RolloutBatch:
    """The expert trajectories of `tasks`, tokenised and masked exactly as rollouts are."""
    turns = [[chat.encode_piece(engine.tokenizer, text) for text in expert_turn_texts(task)] for task in tasks]
    batch = engine.run(ScriptedPolicy(turns, engine.stop_ids), tasks, num_generations=1, seed=0)
    # An expert that does not score 1 (its calls rejected by the prompt's tool list, a budget that
    # cuts it) would teach error handling instead of the task: stop before training on it.
    for trajectory in batch.trajectories:
        if trajectory.reward != 1.0 or trajectory.num_parse_errors or trajectory.num_tool_errors:
            raise ValueError(
                f"the expert trajectory of task {trajectory.task.get('id')!r} (family "
                f"{trajectory.task.get('family')!r}) scored {trajectory.reward} with "
                f"{trajectory.num_parse_errors} rejected and {trajectory.num_tool_errors} failed calls "
                f"(end: {trajectory.end_reason}); check env.tool_names / env.tool_schema and the "
                f"sequence budget. Last message: {str(trajectory.transcript[-1])[:300]}")
    return batch
