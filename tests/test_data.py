"""The validation set: fixed, from validation splits only, and drawn from several sandboxes when
one sandbox holds too few tasks of a family mix."""
import ml_collections
import pytest

from configs.workplace import get_config
from grpo_jax.data import TaskStream, validation_tasks


def _env(families: str) -> ml_collections.ConfigDict:
    env = get_config("tiny").env
    env.families = families
    return env


def test_one_sandbox_runs_out_and_several_sandboxes_hold_more():
    env = _env("R2")
    one = validation_tasks(env, num_tasks=10_000, seed=1, allow_fewer=True)
    assert 0 < len(one) < 100
    with pytest.raises(ValueError, match="distinct validation tasks"):
        validation_tasks(env, num_tasks=len(one) + 1, seed=1)

    three = validation_tasks(env, num_tasks=2 * len(one), seed=1, sandboxes=3)
    assert len(three) == 2 * len(one)
    assert [t["id"] for t in three] == list(range(len(three)))
    assert {t["split"] for t in three} == {"validation"}
    assert len({t["task_key"] for t in three}) == len(three)
    assert len({str(t["sandbox"]) for t in three}) == 3
    # Fixed: the same call gives the same tasks.
    again = validation_tasks(env, num_tasks=2 * len(one), seed=1, sandboxes=3)
    assert [t["task_key"] for t in again] == [t["task_key"] for t in three]


def test_validation_tasks_of_every_sandbox_are_never_training_tasks():
    env = _env("R1,R2")
    env.train_sandboxes = 3
    val_keys = {t["task_key"] for t in validation_tasks(env, num_tasks=300, seed=1, sandboxes=3,
                                                         allow_fewer=True)}
    train_keys = {t["task_key"] for t in TaskStream(env, seed=7, block_size=64).take(600)}
    assert len(val_keys) > 200 and len(train_keys) > 100
    assert not val_keys & train_keys


def test_several_sandboxes_need_generated_sandboxes():
    env = _env("R1")
    env.sandbox = "csv"
    with pytest.raises(ValueError, match="generated sandboxes"):
        validation_tasks(env, num_tasks=10, seed=1, sandboxes=2)
