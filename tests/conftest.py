"""Shared test fixtures.

Eight fake CPU devices are configured before JAX is imported anywhere, so every test can build a
mesh over `jax.devices()`; tests that do not ask for a mesh run on device 0 as usual.
"""
import os
import pathlib

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
NEMO_GYM_WORKPLACE_DIR = SHARED_DIR / "data" / "nemo_gym_workplace" / "resources_servers" / "workplace_assistant"


@pytest.fixture(scope="session")
def nemo_gym_workplace_dir() -> pathlib.Path:
    """The public NeMo Gym workplace data beside the repository; tests skip without it."""
    if not NEMO_GYM_WORKPLACE_DIR.is_dir():
        pytest.skip(f"NeMo Gym workplace data not found at {NEMO_GYM_WORKPLACE_DIR} (../shared is absent)")
    return NEMO_GYM_WORKPLACE_DIR


@pytest.fixture(scope="session")
def tiny_env_config():
    """The `env` section of the tiny warm start (no tool list in the prompt, six task families)."""
    from configs import workplace

    return workplace.get_config("tiny_sft").env


@pytest.fixture(scope="session")
def workplace_tokenizer_dir(tmp_path_factory, tiny_env_config):
    """A small tokenizer trained on expert trajectories of the tiny preset's tasks (as the asset's)."""
    from grpo_jax import tiny
    from grpo_jax.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("workplace_tokenizer")
    build_tokenizer(tiny.corpus(tiny_env_config, num_tasks=200, seed=0), 1024, out)
    return out


@pytest.fixture(scope="session")
def workplace_tokenizer(workplace_tokenizer_dir):
    from grpo_jax import chat

    return chat.load_tokenizer(workplace_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory, workplace_tokenizer_dir, workplace_tokenizer):
    """A random tiny-test Nemotron-H with the workplace tokenizer, as a local HF directory."""
    import dataclasses
    import shutil

    from grpo_jax.models import NemotronHConfig, save_hf_model
    from grpo_jax.models.nemotron_h import create_model

    out = tmp_path_factory.mktemp("tiny_hf")
    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), vocab_size=len(workplace_tokenizer))
    save_hf_model(create_model(config, seed=0), out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(workplace_tokenizer_dir / name, out / name)
    return out


@pytest.fixture
def small_run_config(small_run_config_factory):
    """The tiny preset shrunk to seconds per step: 2 tasks x 2 generations, short turns."""
    return small_run_config_factory()


@pytest.fixture(scope="session")
def small_run_config_factory(tiny_hf_dir):
    """`small_run_config` as a function (a fresh config per call), for module-scoped fixtures."""
    return lambda: _small_run_config(tiny_hf_dir)


def _small_run_config(tiny_hf_dir):
    from configs import workplace

    config = workplace.get_config("tiny")
    config.model.path = str(tiny_hf_dir)
    config.model.max_total_sequence_length = 1024
    config.model.data_parallel_size = 1   # device 0 of the 8 fake ones; mesh tests set their own
    config.grpo.num_prompts_per_step = 2
    config.grpo.num_generations_per_prompt = 2
    config.grpo.max_num_steps = 3
    config.grpo.val_period = 2
    config.grpo.val_at_start = False
    config.grpo.val_at_end = True
    config.train.micro_batch_size = 2
    config.train.logprob_batch_size = 4
    config.generation.max_new_tokens_per_turn = 8
    config.generation.decode_chunk = 4
    config.env.max_steps = 2
    config.env.task_block_size = 16
    config.validation.num_tasks = 2
    config.validation.batch_size = 2
    config.checkpoint.save_period = 1
    config.checkpoint.max_to_keep = 2
    config.logging.tensorboard = False
    config.compilation.cache_dir = ""      # launched runs compile everything, as in-process ones
    return config
