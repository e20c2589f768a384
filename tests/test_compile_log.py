"""The compilation counter and the persistent compilation cache (`grpo_jax.compile_log`)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

# One process of a program that takes a while to compile, under the persistent cache. JAX decides
# whether to use the cache at a process's first compilation, so each run is a fresh process.
_PROGRAM = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from grpo_jax import compile_log
path = compile_log.use_persistent_cache(sys.argv[1], min_compile_seconds=0.0)
import jax, jax.numpy as jnp, numpy as np

@jax.jit
def program(x_NN):
    for i in range(40):
        x_NN = jnp.tanh(x_NN @ x_NN.T + i)
    return x_NN.sum()

with compile_log.CompileWatch("program[N=32]"):
    value = program(np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32) / 32)
print(json.dumps({"path": path, "value": float(value), "loaded": compile_log.cache_hits()}))
"""


def _run(cache_dir) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-c", _PROGRAM, str(cache_dir)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_a_second_process_loads_the_program_from_the_cache_and_computes_the_same(tmp_path):
    first, first_log = _run(tmp_path / "xla")
    second, second_log = _run(tmp_path / "xla")
    assert first["path"] == str(tmp_path / "xla") and any((tmp_path / "xla").iterdir())
    assert first["loaded"] == 0 and "compiled 1 program(s) in" in first_log
    assert second["loaded"] >= 1 and "loaded 1 from the compilation cache in" in second_log
    assert "compiled" not in second_log
    assert second["value"] == first["value"]


def test_without_a_cache_directory_nothing_is_kept(tmp_path):
    result, log = _run("")
    assert result["path"] is None and result["loaded"] == 0 and "compiled 1 program(s) in" in log


def test_an_unusable_cache_directory_is_a_warning_not_a_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result, log = _run(blocker / "xla")
    assert result["path"] is None and "is unusable" in log and "compiling every program" in log
