"""Preemption of a real `launch.py` process running the tiny model.

- SIGTERM during training: the step in flight finishes, a checkpoint of it is written (the run's
  own save period would write none), the process exits with status 1 and one clear line on
  stderr, and a new Trainer in the same work directory resumes from that step.
- SIGKILL at a random moment (slow): a restart loses at most the steps after the last committed
  checkpoint and then finishes bitwise like a run that was never interrupted (the exported HF
  tensors are compared byte for byte).
"""
from __future__ import annotations

import json
import pathlib
import random
import re
import signal
import time

import pytest
from safetensors.numpy import load_file

from grpo_jax import checkpointing, trainer
from tests.reliability.launching import Launch


def _committed_steps(checkpoints: pathlib.Path) -> list[int]:
    """Step directories Orbax finished (its temporary directories carry a suffix)."""
    if not checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.fixture
def launch_config(small_run_config):
    config = small_run_config
    config.grpo.max_num_steps = 50        # far more than the test waits for
    config.grpo.val_period = 0
    config.grpo.val_at_end = False
    config.checkpoint.save_period = 1000  # so the only checkpoint is the one SIGTERM writes
    config.checkpoint.export_hf = False
    config.logging.progress_bar = False
    return config


def test_sigterm_checkpoints_the_step_in_flight_and_exits_with_a_clear_message(launch_config, tmp_path):
    workdir = tmp_path / "run"
    run = Launch(launch_config, workdir)
    try:
        run.wait_for_step(1)
        run.process.send_signal(signal.SIGTERM)
        status = run.wait()
    finally:
        run.kill()
    stderr = run.stderr
    last = run.logged_steps()[-1]
    step_dir = workdir / "checkpoints" / str(last)
    assert status == 1, stderr[-3000:]
    assert "received signal 15: checkpointing after the current step" in stderr
    assert (f"preempted: stopped by SIGTERM after step {last}; checkpoint {step_dir} written, "
            "rerun to resume") in stderr
    assert "Traceback" not in stderr
    assert _committed_steps(workdir / "checkpoints") == [last]
    assert (step_dir / checkpointing.INTEGRITY_FILE).is_file()  # the save was complete before exit

    resumed = trainer.Trainer(launch_config, workdir, quiet=True)
    try:
        assert resumed.start_step == last
        assert resumed.stream.position.to_json() != {"block": 0, "offset": 0}
    finally:
        resumed.close()


def _exported(workdir: pathlib.Path) -> dict:
    tensors = {}
    for file in sorted((workdir / "hf_export").glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_restart_continues_bitwise(small_run_config, tmp_path):
    config = small_run_config
    config.grpo.max_num_steps = 4
    config.grpo.val_period = 0
    config.grpo.val_at_end = False
    config.checkpoint.save_period = 1
    config.checkpoint.max_to_keep = 2
    config.logging.progress_bar = False
    straight = Launch(config, tmp_path / "straight")
    assert straight.wait() == 0, straight.stderr[-3000:]

    rng = random.Random()
    after_step, delay = rng.randint(1, config.grpo.max_num_steps - 1), rng.uniform(0.0, 2.0)
    where = f"SIGKILL {delay:.2f} s after step {after_step} was logged"
    killed = Launch(config, tmp_path / "killed")
    try:
        killed.wait_for_step(after_step)
        time.sleep(delay)  # anywhere in the next step: rollout, update, or an async save in flight
        killed.process.send_signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL, where
    finally:
        killed.kill()
    committed = _committed_steps(tmp_path / "killed" / "checkpoints")
    logged = killed.logged_steps()

    restarted = Launch(config, tmp_path / "killed")
    assert restarted.wait() == 0, f"{where}\n{restarted.stderr[-3000:]}"
    resumed = re.search(r"resumed from step (\d+)", restarted.stderr)
    # Loses at most the steps after the last committed checkpoint (with save_period 1: the step
    # being saved when the kill came, at most one).
    resumed_step = int(resumed.group(1)) if resumed else 0
    assert resumed_step == (committed[-1] if committed else 0), (where, committed, restarted.stderr[-3000:])
    assert resumed_step >= logged[-1] - 1, (where, committed, logged)
    print(f"\n{where}: steps logged {logged}, committed {committed}, resumed from {resumed_step}")

    a, b = _exported(tmp_path / "straight"), _exported(tmp_path / "killed")
    assert a and sorted(a) == sorted(b)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), (where, name)


def test_a_second_launch_loads_its_programs_from_the_compilation_cache_and_trains_the_same(
        small_run_config, tmp_path):
    config = small_run_config
    config.grpo.max_num_steps = 2
    config.grpo.val_period = 0
    config.grpo.val_at_end = False
    config.checkpoint.export_hf = False
    config.logging.progress_bar = False
    config.compilation.cache_dir = str(tmp_path / "xla")
    config.compilation.min_compile_seconds = 0.0   # every program, however quick to compile
    runs = [Launch(config, tmp_path / "first")]
    assert runs[0].wait() == 0, runs[0].stderr[-3000:]
    runs.append(Launch(config, tmp_path / "second"))
    assert runs[1].wait() == 0, runs[1].stderr[-3000:]
    first, second = ([json.loads(line) for line in (run.workdir / "metrics.jsonl").read_text().splitlines()]
                     for run in runs)
    assert "from the compilation cache" not in runs[0].stderr and first[-1]["compile/cache_hits"] == 0
    # The second run loads every sampler and learner program (each logged by name) and compiles
    # none of them again.
    loaded = re.findall(r"loaded (\d+) from the compilation cache in [\d.]+ s for (\S+)", runs[1].stderr)
    assert {label.split("[")[0] for _, label in loaded} >= {
        "sampler.init", "sampler.extend", "sampler.decode", "sampler.gather", "learner.logprobs", "learner.update"}
    assert not re.search(r"compiled \d+ program\(s\).* for (sampler|learner)\.", runs[1].stderr)
    assert second[-1]["compile/cache_hits"] >= sum(int(n) for n, _ in loaded)
    # Loading an executable changes no number: the same rewards, losses and gradient norms.
    for mine, theirs in zip(first, second, strict=True):
        for key in ("train/reward_mean", "train/loss", "train/grad_norm"):
            assert mine[key] == theirs[key], (key, mine["step"])
