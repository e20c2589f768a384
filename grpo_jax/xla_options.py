"""XLA:CPU compiler options for the hot programs whose defaults measured slow, with a fallback.

Every entry names its measurement (docs/performance.md). The options are experimental XLA flags:
an XLA that no longer knows one compiles with its defaults and logs a warning instead of failing.
GPUs and TPUs always get XLA's defaults.
"""
from __future__ import annotations

import functools
import logging

import jax
import numpy as np

logger = logging.getLogger(__name__)

# The sampler's decode and extend programs. Decode (batch 16, hidden 256, CPU sampler benchmark):
# YNNPACK's fused reductions and dots, and the tree-reduction rewrite (which splits every reduction
# over more than 32 elements into a reduce-window and a reduce, so the product feeding it, e.g. the
# SSM readout state * C, is written out instead of fused), cost ~20% of a decode step. Extend
# (prefill and continuations), in one process, alternating, default / with these: the tiny model
# at 64 rows, prompts of 150-250 tokens then three blocks of 20-60, prefill 1.13x, blocks 1.27x;
# the CPU benchmark model at 16 rows 1.14x / 1.10x, at 2 rows of 1,125-1,500 tokens 1.24x / 1.13x
# (docs/performance.md).
CPU_SAMPLER_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_disable_hlo_passes": "tree_reduction_rewriter",
}

# XLA's own fusions only, no YNNPACK library fusions. (1) The trainer's update program, at every
# micro-batch size: YNNPACK's reductions are pathological over a non-minor axis, and the backward
# pass has many (a one-row micro-batch reduces its conv / norm / bias gradients over axis 1 of a
# (1, T, ...) array, ~20-45x slower than without YNNPACK; the SSD's C·B gradient sums a
# (b, G, H, C, Q, Q) product over H: 57 ms per micro-batch of the tiny model at 32 x 512, for
# 34 MB read). `benchmarks/bench_update_cpu.py`, Learner.update with XLA's defaults / with these:
# the tiny model (the one the CPU run trains) 1.12-1.17x at 64 x 512 and 64 x 256 in micro-batches
# of 8 and 32 rows; the CPU benchmark model 1.71x at one row, 0.99-1.07x at 2 to 16 rows
# (docs/performance.md). The no-gradient log-prob forward keeps XLA's defaults (0.66-0.79x slower
# without YNNPACK dots at one row). (2) The compile-only memory plan of the 9B step
# (benchmarks/memory_plan.py), since a GPU compiles XLA fusions too: at XLA:CPU's defaults
# YNNPACK's fusions raised that plan's temporaries (tensor 8, sequence 8192, no remat) from 45.7
# to 83.2 GiB per device.
CPU_XLA_FUSIONS_ONLY = {
    "xla_cpu_experimental_ynn_fusion_type": "",
}


@functools.lru_cache(maxsize=None)
def _supported(options: tuple[tuple[str, str], ...]) -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except Exception as error:  # noqa: BLE001 - any rejection means: compile with the defaults
        logger.warning("this XLA rejects the compiler options %s (%s); compiling with XLA's "
                       "defaults instead", dict(options), error)
        return False
    return True


def _if_supported(options: dict[str, str]) -> dict[str, str] | None:
    return dict(options) if _supported(tuple(sorted(options.items()))) else None


def sampler_compiler_options(backend: str) -> dict[str, str] | None:
    """The options the sampler's decode and extend programs compile with on `backend` (None:
    defaults)."""
    return _if_supported(CPU_SAMPLER_COMPILER_OPTIONS) if backend == "cpu" else None


def update_compiler_options(backend: str) -> dict[str, str] | None:
    """The options the trainer's update program compiles with on `backend` (None: defaults)."""
    return _if_supported(CPU_XLA_FUSIONS_ONLY) if backend == "cpu" else None


def memory_plan_compiler_options(backend: str) -> dict[str, str]:
    """The options of the memory plan's compiles on `backend` ({}: XLA's defaults)."""
    return (_if_supported(CPU_XLA_FUSIONS_ONLY) if backend == "cpu" else None) or {}
