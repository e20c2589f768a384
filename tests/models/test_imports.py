"""The model, sampler and learner import without the checkpoint I/O stack (safetensors), which
`grpo_jax.models` loads on first use; the GPU benchmark relies on it."""
import subprocess
import sys

from tests.conftest import REPO_ROOT

_HEAVY = ("safetensors", "transformers", "torch", "ml_collections", "orbax", "tensorboardX")


def test_sampler_and_learner_import_without_checkpoint_io():
    code = ("import sys; import grpo_jax.sampling, grpo_jax.train_step, grpo_jax.models; "
            f"print([m for m in {_HEAVY!r} if m in sys.modules]); "
            "from grpo_jax.models import load_hf_model, save_hf_model, CheckpointError; "
            "print('safetensors' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True, env={"JAX_PLATFORMS": "cpu", "PATH": ""})
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout + out.stderr
