"""Fixtures of the environment tests: a tiny hand-made sandbox, a generated company, the NeMo Gym
sandbox and its example rows (skipped when ../shared is absent)."""
from __future__ import annotations

import json
import pathlib

import pytest

from grpo_jax.envs.workplace import Sandbox
from grpo_jax.envs.workplace import constants as C
from tests.envs.tiny_sandbox import tiny_sandbox


@pytest.fixture
def tiny() -> Sandbox:
    return tiny_sandbox()


@pytest.fixture
def tiny_workbench() -> Sandbox:
    return tiny_sandbox(C.Flavor.WORKBENCH)


@pytest.fixture(scope="session")
def company() -> Sandbox:
    """Our generated company (seed 0), shared by the whole session."""
    return Sandbox.generate(0)


@pytest.fixture(scope="session")
def nemo_sandbox(nemo_gym_workplace_dir: pathlib.Path) -> Sandbox:
    return Sandbox.from_csv_dir(nemo_gym_workplace_dir / "csv_data" / "processed")


@pytest.fixture(scope="session")
def nemo_examples(nemo_gym_workplace_dir: pathlib.Path) -> list[dict]:
    return _jsonl(nemo_gym_workplace_dir / "data" / "example.jsonl")


@pytest.fixture(scope="session")
def nemo_rollouts(nemo_gym_workplace_dir: pathlib.Path) -> list[dict]:
    return _jsonl(nemo_gym_workplace_dir / "data" / "example_rollouts.jsonl")


def _jsonl(path: pathlib.Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
