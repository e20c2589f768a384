"""The embedded default: the shipped tiny checkpoint runs two GRPO steps of the tiny preset through
the real launcher, offline, and is the warm-started policy (it solves tasks, a random one does not)."""
import json
import pathlib
import subprocess
import sys

import pytest

from configs import workplace
from grpo_jax import distributed
from grpo_jax.models import load_hf_model
from tests.reliability.launching import environment

REPO = pathlib.Path(__file__).resolve().parents[1]
ASSET = REPO / workplace.get_config("tiny").model.path


def test_the_shipped_tiny_checkpoint_fits_the_budget_and_loads():
    files = [p for p in ASSET.rglob("*") if p.is_file()]
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in files}
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    config = json.loads((ASSET / "config.json").read_text())
    assert {"M", "*", "-"} <= set(config["hybrid_override_pattern"])  # all three block types
    assert load_hf_model(ASSET).config.vocab_size == config["vocab_size"]


def test_two_grpo_steps_of_the_tiny_preset_end_to_end(tmp_path):
    workdir = tmp_path / "tiny"
    args = ["--config=configs/workplace.py:tiny", f"--workdir={workdir}",
            "--config.grpo.max_num_steps=2", "--config.grpo.num_prompts_per_step=4",
            "--config.grpo.num_generations_per_prompt=4", "--config.train.micro_batch_size=8",
            "--config.train.logprob_batch_size=16", "--config.grpo.val_at_start=False",
            "--config.validation.num_tasks=16", "--config.validation.batch_size=16",
            "--config.checkpoint.save_period=2", f"--config.compilation.cache_dir={tmp_path / 'xla'}"]
    # The launcher picks its CPU devices as for a user (model.cpu_devices), not the tests' eight.
    result = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=1200, env={**environment(devices=None), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    # One data shard per CPU device, as many devices as the cores allow (model.cpu_devices = -1).
    devices = distributed.cpu_device_count(-1)
    assert f"mesh {{'data': {devices}, 'fsdp': 1, 'tensor': 1}} over {devices} cpu devices" in result.stderr
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert record["train/num_valid_sequences"] > 0 and record["train/gen_tokens_per_sample"] > 0
        assert record["train/parse_errors_per_sample"] < 1.0  # it speaks the tool-call format
    # The warm start is in the checkpoint: it solves some generated tasks (greedy-free, T=1).
    assert max(r["train/reward_mean"] for r in records) > 0 or records[-1]["val/accuracy"] > 0
    assert (workdir / "curves.png").exists() and (workdir / "hf_export" / "model.safetensors").exists()
    assert (workdir / "checkpoints" / "2").is_dir()
    transcripts = (workdir / "transcripts.jsonl").read_text()
    assert "<TOOLCALL>" in transcripts


@pytest.fixture(autouse=True)
def _asset_present():
    if not (ASSET / "config.json").exists():
        pytest.fail(f"the shipped tiny checkpoint is missing from {ASSET}; rebuild it as the README says")
