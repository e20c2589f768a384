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

# The sampler's decode program (batch 16, hidden 256, CPU sampler benchmark): YNNPACK's fused
# reductions and dots, and the tree-reduction rewrite (which splits every reduction over more than
# 32 elements into a reduce-window and a reduce, so the product feeding it, e.g. the SSM readout
# state * C, is written out instead of fused), cost ~20% of a decode step. Prefill measured the
# same with and without them, so only decode gets them.
CPU_DECODE_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_disable_hlo_passes": "tree_reduction_rewriter",
}

# The trainer's update program when a micro-batch holds ONE row: YNNPACK reductions (XLA's default
# YNN fusions are reductions and individual dots) reduce over axis 1 of a (1, T, ...) array ~20-45x
# slower than of (2, T/2, ...) (sum over T of a (1, 1024, 16, 32) product: 6.1 ms, 0.26 ms
# without YNN), and the backward pass reduces every conv / norm / bias gradient that way.
# Keeping only the individual dots: Learner.update 1.54x faster at 2 micro-batches of 1 x 1024,
# 1.59x at 4 of 1 x 512; at micro-batches of 2 rows 0.95x, and the no-gradient log-prob forward
# 0.66-0.79x at one row, so neither gets it.
CPU_SINGLE_ROW_UPDATE_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


# XLA's own fusions only, no YNNPACK library fusions: what the compile-only memory plan of the 9B
# step (benchmarks/memory_plan.py) compiles with, since a GPU compiles XLA fusions too. At XLA:CPU's
# defaults YNNPACK's fusions raised that plan's temporaries (tensor 8, sequence 8192, no remat)
# from 45.7 to 83.2 GiB per device; the trainer's one-row option set gave 45.5.
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


def decode_compiler_options(backend: str) -> dict[str, str] | None:
    """The options the sampler's decode program compiles with on `backend` (None: defaults)."""
    return _if_supported(CPU_DECODE_COMPILER_OPTIONS) if backend == "cpu" else None


def update_compiler_options(backend: str, micro_batch_size: int) -> dict[str, str] | None:
    """The options the trainer's update program compiles with for micro-batches of
    `micro_batch_size` rows on `backend` (None: defaults)."""
    if backend != "cpu" or micro_batch_size != 1:
        return None
    return _if_supported(CPU_SINGLE_ROW_UPDATE_COMPILER_OPTIONS)


def memory_plan_compiler_options(backend: str) -> dict[str, str]:
    """The options of the memory plan's compiles on `backend` ({}: XLA's defaults)."""
    return (_if_supported(CPU_XLA_FUSIONS_ONLY) if backend == "cpu" else None) or {}
