"""Several hosts: two JAX processes on this machine (one CPU device each, joined through a
localhost coordinator, gloo collectives) train like one process with two devices.

Both runs use the same global batch on a 2-device mesh, the same launcher and the same
work-directory layout; the comparison is bitwise.
- SFT mode on data=2 (data_parallel_size=-1 fills it) gives a non-zero gradient at every step (a
  random tiny model earns no GRPO reward, so GRPO's update is zero): the two processes train 2
  steps, stop, and a second two-process launch resumes from the shared Orbax checkpoint for
  step 3. Exported weights and every logged loss and gradient norm must equal the one-process
  3-step run's.
- GRPO mode with the weights split over the two hosts (fsdp=2) exercises the sampler, the
  multi-turn rollouts, the environment, the recomputed log-probs and the export across
  processes: every non-timing metric and the logged transcripts must equal the one-process run's
  (so both hosts sampled the same tokens and saw the same tool responses).
Only process 0 may write the run's files; both must exit 0. And a SIGTERM that reaches one
process stops both after the same step, with one checkpoint.
"""
from __future__ import annotations

import json
import signal

import pytest
from safetensors.numpy import load_file

from configs import workplace
from tests.reliability.launching import Launch, launch_processes

pytestmark = pytest.mark.slow  # four to six launcher processes compiling the tiny model


def _config(small_run_config, mode: str, steps: int, axis: str = "data"):
    config = small_run_config
    config.mode = mode
    # 2 devices in all (2 processes x 1, or 1 process x 2) on the `axis` of the mesh.
    config.model.data_parallel_size = -1 if axis == "data" else 1
    config.model.fsdp_parallel_size = -1 if axis == "fsdp" else 1
    config.grpo.max_num_steps = steps
    config.grpo.val_period = 0
    config.grpo.val_at_end = False
    config.checkpoint.save_period = 1
    config.checkpoint.export_hf = True
    config.logging.progress_bar = False
    config.optimizer.schedule = "constant"  # so a 2-step launch and its 3-step resumption share the lr
    if mode == "sft":
        config.train.logprob_batch_size = 2  # 2 expert trajectories per step
        # SFT refuses an expert the budget cuts: give it the tiny preset's turn budget back.
        tiny = workplace.get_config("tiny")
        config.generation.max_new_tokens_per_turn = tiny.generation.max_new_tokens_per_turn
        config.env.max_steps = tiny.env.max_steps
    return config


def _run_processes(config, workdir, num_processes=2):
    launches = launch_processes(config, workdir, num_processes)
    statuses = [launch.wait() for launch in launches]
    for launch, status in zip(launches, statuses):
        assert status == 0, launch.stderr[-4000:]
        assert "Traceback" not in launch.stderr
    # The processes really joined: gloo connected them (the message is on stdout or stderr).
    assert "Rank 0 is connected to 1 peer ranks" in launches[0].stdout + launches[0].stderr
    return launches


def _run_single(config, workdir):
    launch = Launch(config, workdir, devices=2)
    assert launch.wait() == 0, launch.stderr[-4000:]
    return launch


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _exported(workdir):
    tensors = {}
    for file in sorted((workdir / "hf_export").glob("*.safetensors")):
        tensors.update(load_file(file))
    assert tensors
    return tensors


def _assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name].tobytes() != b[name].tobytes()]
    assert not different, different


def test_two_processes_train_sft_and_resume_like_one_process_with_two_devices(small_run_config, tmp_path):
    single = tmp_path / "single"
    _run_single(_config(small_run_config.copy_and_resolve_references(), "sft", 3), single)

    multi = tmp_path / "multi"
    _run_processes(_config(small_run_config.copy_and_resolve_references(), "sft", 2), multi)
    assert [r["step"] for r in _records(multi)] == [1, 2]  # one writer: no line twice
    resumed = _run_processes(_config(small_run_config.copy_and_resolve_references(), "sft", 3), multi)
    assert "resumed from step 2" in resumed[0].stderr and "resumed from step 2" in resumed[1].stderr

    ones, twos = _records(single), _records(multi)
    assert [r["step"] for r in twos] == [1, 2, 3]
    for one, two in zip(ones, twos):
        assert one["train/loss"] > 0
        for key in ("train/loss", "train/grad_norm", "train/num_valid_tokens", "train/lr"):
            assert one[key] == two[key], (one["step"], key)
    _assert_same_weights(_exported(single), _exported(multi))


def test_two_processes_roll_out_and_train_grpo_like_one_process_with_two_devices(small_run_config, tmp_path):
    # fsdp: the weights themselves are split across the hosts, so the sampler's and the update's
    # all-gathers, Orbax's sharded save and the export's gather all cross processes.
    single, multi = tmp_path / "single", tmp_path / "multi"
    _run_single(_config(small_run_config.copy_and_resolve_references(), "grpo", 2, axis="fsdp"), single)
    _run_processes(_config(small_run_config.copy_and_resolve_references(), "grpo", 2, axis="fsdp"), multi)

    ones, twos = _records(single), _records(multi)
    assert [r["step"] for r in twos] == [1, 2]
    def facts(record):
        return {k: v for k, v in record.items() if not k.startswith(("timing/", "compile/")) and k != "time"}

    for one, two in zip(ones, twos):
        assert facts(one) == facts(two)
        assert one["train/gen_tokens_per_sample"] > 0
    assert (single / "transcripts.jsonl").read_text() == (multi / "transcripts.jsonl").read_text()
    _assert_same_weights(_exported(single), _exported(multi))
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())


def test_a_sigterm_to_one_process_stops_both_at_the_same_step_with_a_checkpoint(small_run_config, tmp_path):
    # A scheduler may signal the hosts at different moments; if only the signalled one saved (a
    # collective) and stopped, the other would wait forever in its next step.
    config = _config(small_run_config, "sft", 50)
    config.checkpoint.save_period = 1000  # the only checkpoint is the one the signal asks for
    config.checkpoint.export_hf = False
    launches = launch_processes(config, tmp_path / "multi", 2)
    try:
        launches[0].wait_for_step(1)
        launches[1].process.send_signal(signal.SIGTERM)
        statuses = [launch.wait() for launch in launches]
    finally:
        for launch in launches:
            launch.kill()
    last = launches[0].logged_steps()[-1]
    step_dir = tmp_path / "multi" / "checkpoints" / str(last)
    for launch, status in zip(launches, statuses):
        assert status == 1, launch.stderr[-3000:]
        assert f"preempted: stopped by SIGTERM after step {last}; checkpoint {step_dir} written" in launch.stderr
    assert "received signal 15" in launches[1].stderr and "received signal" not in launches[0].stderr
    assert sorted(p.name for p in step_dir.parent.iterdir() if p.name.isdigit()) == [str(last)]
