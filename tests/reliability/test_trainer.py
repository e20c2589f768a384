"""Faults inside a training run, at the trainer: a non-finite update and a broken latest checkpoint.

One 2-step run (a checkpoint after every step) with NaN advantages injected at step 1 serves
both checks, so the expensive part (compiling the tiny model's programs) is paid once:
- the bad step is skipped, counted, logged and visible in metrics.jsonl; its checkpoint holds
  exactly the initial parameters and optimizer state; step 2 updates again;
- the run's step-2 checkpoint is then truncated on disk (a torn write): a restart reports the
  broken step directory, moves it aside and resumes from step 1 with step 1's exact state. The
  slow variant also trains step 2 again and compares with the uninterrupted run, bitwise.
"""
from __future__ import annotations

import json
import logging
import shutil

import jax
import numpy as np
import pytest

from grpo_jax import checkpointing, grpo, trainer
from grpo_jax.checkpointing import Checkpointer, CheckpointState
from tests.reliability.bitwise import assert_bitwise as _assert_bitwise, host as _host

STEPS = 2
BAD_STEP = 1


class _Warnings(logging.Handler):
    """Collects the package's warnings (the launcher shows them on stderr)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("grpo_jax").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("grpo_jax").removeHandler(self)


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory, small_run_config_factory):
    config = small_run_config_factory()
    config.grpo.max_num_steps = STEPS
    config.grpo.val_period = 0           # no validation, no export: only what these checks need
    config.grpo.val_at_end = False
    config.checkpoint.max_to_keep = STEPS
    config.checkpoint.export_hf = False
    workdir = tmp_path_factory.mktemp("nan_run")
    real = grpo.compute_advantages
    calls = []

    def advantages_with_a_nan_at_the_bad_step(*args, **kwargs):
        calls.append(1)  # the trainer computes advantages once per step
        advantages = np.array(real(*args, **kwargs), np.float32)
        if len(calls) == BAD_STEP:
            advantages[0, 0] = np.nan
        return advantages

    with _Warnings() as warnings, pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpo, "compute_advantages", advantages_with_a_nan_at_the_bad_step)
        run = trainer.Trainer(config, workdir, quiet=True)
        try:
            initial = (_host(run.state.params), _host(run.state.opt_state))
            run.run()
            final = _host(run.state.params)
            target = CheckpointState(params=run.state.params, opt_state=run.state.opt_state, step=0)
            saved = {}
            for step in range(1, STEPS + 1):
                state = run.checkpointer.restore(step, target)
                saved[step] = (_host(state.params), _host(state.opt_state), state.metadata)
        finally:
            run.close()
    assert len(calls) == STEPS
    return {"config": config, "workdir": workdir, "initial": initial, "final": final, "saved": saved,
            "warnings": warnings.messages}


def test_a_non_finite_update_is_skipped_counted_logged_and_training_goes_on(nan_run):
    records = [json.loads(line) for line in (nan_run["workdir"] / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in records}
    assert sorted(by_step) == [1, 2]
    assert [by_step[s]["train/update_skipped"] for s in (1, 2)] == [1, 0]
    assert [by_step[s]["train/skipped_updates_total"] for s in (1, 2)] == [1, 1]
    assert by_step[1]["train/loss"] is None  # NaN, written as JSON null
    assert any(f"step {BAD_STEP}: non-finite loss" in m and "update was skipped" in m
               for m in nan_run["warnings"]), nan_run["warnings"]

    (params_1, opt_1, meta_1), (params_2, _, meta_2) = nan_run["saved"][1], nan_run["saved"][2]
    _assert_bitwise(params_1, nan_run["initial"][0])  # the bad step changed nothing ...
    _assert_bitwise(opt_1, nan_run["initial"][1])     # ... not even Adam's moments or its count
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params_2), jax.tree.leaves(params_1)))
    assert meta_1["skipped_updates"] == meta_2["skipped_updates"] == 1  # the count survives a restart


def _restart_after_truncating_the_latest_step(nan_run, workdir, *, finish: bool):
    shutil.copytree(nan_run["workdir"], workdir)
    step_dir = workdir / "checkpoints" / str(STEPS)
    array_files = [p for p in (step_dir / "params").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    victim = max(array_files, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a torn write

    with _Warnings() as warnings:
        run = trainer.Trainer(nan_run["config"], workdir, quiet=True)
        try:
            assert run.start_step == STEPS - 1
            assert int(run.state.skipped_updates) == 1
            _assert_bitwise(_host(run.state.params), nan_run["saved"][STEPS - 1][0])
            _assert_bitwise(_host(run.state.opt_state), nan_run["saved"][STEPS - 1][1])
            if finish:
                run.run()
                _assert_bitwise(_host(run.state.params), nan_run["final"])
        finally:
            run.close()
    broken = [m for m in warnings.messages if str(step_dir) in m]
    assert any("truncated" in m for m in broken), warnings.messages
    assert (workdir / "checkpoints" / checkpointing.QUARANTINE_DIR / str(STEPS)).is_dir()
    if finish:
        with Checkpointer(workdir / "checkpoints") as reopened:
            assert reopened.latest_step() == STEPS  # step 2 was written again, and is whole
            reopened.verify(STEPS)


def test_a_corrupted_latest_checkpoint_is_reported_and_the_run_resumes_from_the_previous_one(nan_run, tmp_path):
    _restart_after_truncating_the_latest_step(nan_run, tmp_path / "run", finish=False)


@pytest.mark.slow
def test_after_a_corrupted_latest_checkpoint_the_run_finishes_like_an_uninterrupted_one(nan_run, tmp_path):
    _restart_after_truncating_the_latest_step(nan_run, tmp_path / "run", finish=True)
