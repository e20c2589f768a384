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
