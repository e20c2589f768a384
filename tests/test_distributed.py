"""How many XLA devices a CPU host is split into (`model.cpu_devices`). The multi-process runs
are in tests/reliability/test_distributed.py."""
import subprocess
import sys

import pytest

from grpo_jax import distributed
from tests.reliability.launching import REPO, environment


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (64, 8)])
def test_auto_count_is_the_cores_rounded_down_to_a_power_of_two_at_most_eight(monkeypatch, cores, expected):
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert distributed.cpu_device_count(-1) == expected
    assert distributed.cpu_device_count(3) == 3  # an explicit count is taken as it is


def _devices_after(setting: int, forced: int | None) -> tuple[int, int]:
    """(what set_cpu_devices returned, jax.device_count()) in a fresh process."""
    code = ("from grpo_jax import distributed; n = distributed.set_cpu_devices(%d); import jax; "
            "print(n, jax.device_count())" % setting)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment(forced),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    returned, count = map(int, out.split())
    return returned, count


def test_the_count_reaches_jax_and_a_forced_count_in_xla_flags_wins_over_auto_only():
    auto = distributed.cpu_device_count(-1)
    assert _devices_after(-1, forced=None) == (auto, auto)
    assert _devices_after(-1, forced=3) == (3, 3)   # the user's XLA_FLAGS
    assert _devices_after(2, forced=3) == (2, 2)    # an explicit setting
