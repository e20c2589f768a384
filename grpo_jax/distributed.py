"""Multi-host start-up: one JAX process per host, joined through a coordinator.

On a GPU or TPU pod every host runs the same launch command with its own process id; JAX then
sees the devices of all hosts and a mesh spans them. On one host nothing happens.

What keeps several processes in step (each one runs the whole loop):
- every process draws the same tasks, runs the same environment episodes and feeds the same
  numpy arrays to the jitted programs (global values; each process supplies its own shards);
- values that come back to the host (sampled tokens, log-probs, metrics) go through
  `host_array`, which gathers arrays whose shards live on other processes, so every process
  sees the same global value, and makes the same decisions;
- only process 0 writes logs, transcripts, plots and the exported model's files; checkpoints go
  through Orbax, which coordinates the processes itself.
"""
from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(config) -> None:
    """Calls `jax.distributed.initialize` when `config.enabled` (the `distributed` config section)."""
    if not config.enabled:
        return
    jax.distributed.initialize(coordinator_address=config.coordinator_address,
                               num_processes=int(config.num_processes), process_id=int(config.process_id))


# An automatic CPU device count stops here: measured gains are for two devices on two cores, and
# every batch size of the tiny preset divides by 8.
MAX_AUTO_CPU_DEVICES = 8


def cpu_device_count(setting: int) -> int:
    """The XLA device count for a CPU host: `setting` itself, or for -1 one per core this process
    may run on, rounded down to a power of two (batch sizes are) and capped at
    MAX_AUTO_CPU_DEVICES. More devices than cores run slower than one device."""
    if setting != -1:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(1 << (max(cores, 1).bit_length() - 1), MAX_AUTO_CPU_DEVICES)


def set_cpu_devices(setting: int) -> int:
    """Splits the CPU host into `cpu_device_count(setting)` XLA devices; must run before JAX
    starts a backend. With -1, a --xla_force_host_platform_device_count in XLA_FLAGS is taken as
    the user's choice and left alone. Returns the count."""
    forced = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if setting == -1 and forced:
        return int(forced.group(1))
    count = cpu_device_count(setting)
    jax.config.update("jax_num_cpu_devices", count)
    return count


def _leaf_to_host(x: Any) -> Any:
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        # A collective: every process must reach this call, in the same order.
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def host_array(tree: Any) -> Any:
    """`jax.device_get` for a pytree whose arrays may span the devices of several processes.

    Arrays held whole by this process (one process, or replicated) are copied as usual; arrays
    sharded across processes are gathered (a collective, so all processes must call this
    together). Returns numpy arrays with the global shapes.
    """
    leaves = jax.tree.leaves(tree)
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated for x in leaves):
        # One batched device_get: the copies of all leaves overlap (the single-process path).
        return jax.tree.map(np.asarray, jax.device_get(tree))
    return jax.tree.map(_leaf_to_host, tree)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (a collective with several processes),
    e.g. a SIGTERM that reached only some hosts: all of them checkpoint and stop together."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))
