"""Compile-only H100s on a machine without a GPU: XLA's deviceless GPU compilation.

With jax's CUDA plugin installed (`pip install "jax[cuda13]==<the installed jax version>"`; no
GPU, driver or CUDA toolkit needed), `jax.experimental.topologies` makes compile-only devices
from a GPU target description, and `jax.jit(f).lower(abstract args).compile()` runs XLA:GPU's
whole pipeline for them: sharding propagation, fusion, buffer assignment, Triton / cuBLAS
choices. What comes back is an executable that cannot run, but its `memory_analysis()` and
optimized HLO are the GPU compiler's own, not XLA:CPU's. Without a device there is no autotuning
(XLA's heuristics pick the kernel tilings), so kernel-level details may differ from a real run.
"""
from __future__ import annotations

import importlib.util

import jax

# The H100 SXM5 80GB as XLA:GPU describes it (its GpuTargetConfig, text format): 132 SMs, compute
# capability 9.0, 50 MiB of L2, 79.1 GiB of device memory; the cuDNN / CUDA versions are those of
# the jax[cuda13] wheels.
H100_TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 28 }
runtime_version { major: 13 minor: 0 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


def cuda_plugin_installed() -> bool:
    if importlib.util.find_spec("jax_plugins") is None:
        return False
    return any(importlib.util.find_spec(f"jax_plugins.xla_cuda{v}") is not None for v in (12, 13))


def h100_devices(count: int) -> list:
    """`count` compile-only H100s of one host (jax.Device objects for a Mesh; never run on)."""
    if not cuda_plugin_installed():
        raise SystemExit(
            "compiling for an H100 without one needs jax's CUDA plugin: "
            f'pip install "jax[cuda13]=={jax.__version__}" (no GPU or driver needed)')
    from jax.experimental import topologies

    topology = topologies.get_topology_desc(platform="cuda", topology_name="",
                                            topology=f"1x1x{count}",
                                            target_config=H100_TARGET_CONFIG)
    return list(topology.devices)
