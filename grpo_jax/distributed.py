"""Multi-host start-up: one JAX process per host, joined through a coordinator.

On a GPU or TPU pod every host runs the same launch command with its own process id; JAX then
sees the devices of all hosts and a mesh spans them. On one host nothing happens.
"""
from __future__ import annotations

import jax


def initialize(config) -> None:
    """Calls `jax.distributed.initialize` when `config.enabled` (the `distributed` config section)."""
    if not config.enabled:
        return
    jax.distributed.initialize(coordinator_address=config.coordinator_address,
                               num_processes=int(config.num_processes), process_id=int(config.process_id))
