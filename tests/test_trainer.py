"""The training loop: exact resume, what a run writes, and the launcher's config handling."""
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from grpo_jax import export, trainer
from grpo_jax.models import load_hf_model
from grpo_jax.train_step import make_update_batch

REPO = pathlib.Path(__file__).resolve().parents[1]


def _params(workdir, config):
    run = trainer.Trainer(config, workdir, quiet=True)
    try:
        return jax.tree.map(np.asarray, run.state.params), run.start_step
    finally:
        run.close()


def test_resume_continues_bitwise_like_an_uninterrupted_run(small_run_config, tmp_path):
    trainer.run(small_run_config, tmp_path / "straight", quiet=True)
    trainer.run(small_run_config, tmp_path / "split", quiet=True, stop_after=1)
    assert _params(tmp_path / "split", small_run_config)[1] == 1  # a fresh Trainer resumes at step 1
    trainer.run(small_run_config, tmp_path / "split", quiet=True)

    straight, step_a = _params(tmp_path / "straight", small_run_config)
    split, step_b = _params(tmp_path / "split", small_run_config)
    assert step_a == step_b == small_run_config.grpo.max_num_steps
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(split)):
        np.testing.assert_array_equal(a, b)

    # What a run leaves behind: metrics, transcripts, the plot, the config and an HF export that
    # loads with the trained weights.
    workdir = tmp_path / "straight"
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert "train/reward_mean" in records[0] and "val/accuracy" in records[1] and "val/accuracy" in records[2]
    assert {"timing/rollout_s", "timing/logprob_s", "timing/update_s"} <= set(records[0])
    assert (workdir / "transcripts.jsonl").read_text().count('"transcript"') >= 3
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((workdir / "config.json").read_text())["grpo"]["max_num_steps"] == 3
    exported = load_hf_model(workdir / "hf_export")
    from flax import nnx
    for a, b in zip(jax.tree.leaves(nnx.state(exported)), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert (workdir / "hf_export" / "tokenizer.json").exists()

    # Any kept checkpoint exports the same way (the CLI's function); the last one is the policy.
    from safetensors.numpy import load_file
    out = export.export_checkpoint(workdir, tmp_path / "exported", step=3)
    final, again = load_file(workdir / "hf_export" / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(final) == sorted(again) and all(np.array_equal(final[k], again[k]) for k in final)
    with pytest.raises(ValueError, match="work directory"):
        export.export_checkpoint(tmp_path / "nowhere", tmp_path / "x")


def test_the_update_returns_the_state_sharded_as_it_was_made(small_run_config, tmp_path):
    """The trainer's update has explicit state shardings: left to XLA's propagation, a compile of
    it for 8 H100s returned the parameters and Adam moments replicated, 8x their memory, with the
    donated buffers unused (docs/performance.md). Here, on tensor 2 x fsdp 2, every leaf comes back
    with exactly the sharding it went in with, and the output reuses the donated input."""
    config = small_run_config
    config.model.tensor_model_parallel_size = 2
    config.model.fsdp_parallel_size = 2
    config.model.data_parallel_size = 1
    run = trainer.Trainer(config, tmp_path, quiet=True)
    try:
        specs = lambda tree: [s.spec for s in jax.tree.leaves(tree)]  # noqa: E731
        before = specs(run.state.shardings())
        assert {("tensor", "fsdp"), ("fsdp", "tensor", None)} & {tuple(s) for s in before}
        rng = np.random.default_rng(0)
        tokens_BT = rng.integers(3, 50, (4, 48)).astype(np.int32)
        mask_BT = np.zeros((4, 48), np.float32)
        mask_BT[:, 16:] = 1
        stacked = make_update_batch(tokens_BT, mask_BT, 2, advantages_B=np.array([1, -1, 1, -1], np.float32),
                                    sampler_logprobs_BT=np.full((4, 48), -2.0, np.float32))
        stacked["old_logprobs"] = stacked["sampler_logprobs"]
        state_bytes = sum(x.nbytes for x in jax.tree.leaves(run.state))
        with jax.set_mesh(run.mesh):
            compiled = run.learner.update_function().lower(run.state, stacked).compile()
            run.state, _ = run.learner.update(run.state, stacked)
        assert specs(compiled.output_shardings[0]) == before
        assert specs(run.state.shardings()) == before
        assert compiled.memory_analysis().alias_size_in_bytes * 4 >= state_bytes  # per device: 1/4 of it
    finally:
        run.close()


def _launch(*args, timeout=300):
    # No compilation cache: a test leaves nothing in the home directory.
    return subprocess.run([sys.executable, "launch.py", *args, "--config.compilation.cache_dir="], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_the_length_and_position_buckets_shape_the_update_batch(small_run_config, tmp_path):
    config = small_run_config
    config.train.length_bucket = 96
    config.train.position_bucket = 48
    run = trainer.Trainer(config, tmp_path, quiet=True)
    batches = []
    update = run.learner.update

    def spy(state, batch):
        batches.append(batch)
        return update(state, batch)
    run.learner.update = spy
    try:
        with jax.set_mesh(run.mesh):
            run.step(1)
    finally:
        run.close()
    (batch,) = batches
    assert batch["tokens"].shape[-1] % 96 == 0
    # The trained tokens of the longest row, rounded up to the position bucket (at least one).
    most = int(batch["loss_mask"].sum(axis=-1).max())
    assert batch["positions"].shape[-1] == max(48, -(-most // 48) * 48)


def test_launcher_overrides_reach_the_config_and_bad_settings_fail_early(tmp_path, tiny_hf_dir):
    # An override reaches the config: the run stops at validation, naming the overridden value.
    result = _launch("--config=configs/workplace.py:tiny", "--config.model.path=/nonexistent/model",
                     f"--workdir={tmp_path}")
    assert result.returncode != 0
    assert "config.model.path='/nonexistent/model'" in result.stderr
    # An invalid value: rejected by name before anything compiles.
    result = _launch("--config=configs/workplace.py:tiny", f"--config.model.path={tiny_hf_dir}",
                     "--config.optimizer.min_lr=1.0", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "config.optimizer.min_lr=1.0" in result.stderr
    assert "compiled" not in result.stderr
    # A setting only the task generator can judge: the same one-line message, no traceback.
    result = _launch("--config=configs/workplace.py:tiny", f"--config.model.path={tiny_hf_dir}",
                     "--config.env.families=R1", "--config.validation.num_tasks=10000", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "invalid config: config.validation.num_tasks=10000 is invalid" in result.stderr
    # An unknown key and an unknown preset.
    result = _launch("--config=configs/workplace.py:tiny", "--config.grpo.num_prompt_per_step=8")
    assert result.returncode != 0 and "num_prompt_per_step" in result.stderr
    result = _launch("--config=configs/workplace.py:huge")
    assert result.returncode != 0 and "unknown preset 'huge'" in result.stderr
