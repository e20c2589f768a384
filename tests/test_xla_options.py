"""Which programs get which XLA:CPU options, and the fallback when XLA rejects them."""
import logging

import pytest

from grpo_jax import xla_options


def test_options_by_backend_and_program():
    assert xla_options.sampler_compiler_options("gpu") is None
    assert xla_options.sampler_compiler_options("cpu") == xla_options.CPU_SAMPLER_COMPILER_OPTIONS
    # The update and the memory plan compile with XLA's own fusions on CPU (see the module).
    assert xla_options.update_compiler_options("cpu") == xla_options.CPU_XLA_FUSIONS_ONLY
    assert xla_options.update_compiler_options("gpu") is None
    assert xla_options.update_compiler_options("tpu") is None
    assert xla_options.memory_plan_compiler_options("cpu") == xla_options.CPU_XLA_FUSIONS_ONLY
    assert xla_options.memory_plan_compiler_options("gpu") == {}


@pytest.mark.parametrize("name, call", [
    ("CPU_SAMPLER_COMPILER_OPTIONS", lambda: xla_options.sampler_compiler_options("cpu")),
    ("CPU_XLA_FUSIONS_ONLY", lambda: xla_options.update_compiler_options("cpu")),
])
def test_rejected_options_fall_back_to_the_defaults_with_a_warning(monkeypatch, caplog, name, call):
    bogus = f"xla_no_such_option_{name.lower()}"   # one per case: the check is cached per set
    monkeypatch.setattr(xla_options, name, {bogus: "1"})
    with caplog.at_level(logging.WARNING, logger="grpo_jax.xla_options"):
        assert call() is None
    assert bogus in caplog.text
