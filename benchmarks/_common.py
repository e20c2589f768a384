"""Shared benchmark helpers: machine description and steady-state timers.

Imports only the standard library, numpy and (lazily) jax, so every benchmark can use it, the
GPU script included (which must not pull in torch or transformers).
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# The small config of the CPU comparisons (hidden 256, 9 layers with all three block types).
# It is an HF config.json dict so transformers can build the same model.
BENCH_HF_CONFIG = dict(
    vocab_size=4096, hidden_size=256, hybrid_override_pattern="M-M*-M-*M",
    num_attention_heads=8, num_key_value_heads=2, head_dim=32, intermediate_size=1024,
    mamba_num_heads=16, mamba_head_dim=32, ssm_state_size=64, n_groups=2, conv_kernel=4,
    chunk_size=64,
)


def cpu_model() -> str:
    """The CPU's name, with its family / model numbers and widest vector extension: virtual
    machines report bare names ("AMD EPYC") for CPUs whose speed differs severalfold (the
    sampler benchmark ran 3.3x faster on one such box than on another)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break   # the first processor is enough
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or "unknown"
    flags = fields.get("flags", "").split()
    vector = next((name for name in ("avx512f", "avx2", "avx", "neon", "asimd") if name in flags),
                  "no avx")
    return (f"{fields['model name']} (family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')}, {vector})")


def machine_line() -> str:
    """CPU, cores, accelerator, package versions and the date: one line for every report."""
    import flax
    import jax
    import optax

    devices = jax.devices()
    accel = f"{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"
    load = " | load average %.1f (1 min)" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{datetime.date.today().isoformat()} | CPU {cpu_model()}, {os.cpu_count()} cores | "
            f"devices {accel} | python {platform.python_version()}, jax {jax.__version__}, "
            f"flax {flax.__version__}, optax {optax.__version__}{load}")


def block(tree):
    """Waits for every array in `tree` (a device sync that does not copy to the host)."""
    import jax

    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
    return tree


def first_and_median(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of `runs` later calls).

    The first call includes compilation; `first - median` is reported as the compile time.
    `fn` must wait for its own results (e.g. `block(...)` or a host copy).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def interleaved_rounds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each function in each of `rounds` rounds, all functions once per round, the
    order reversed every other round.

    On a shared machine whose speed drifts over minutes (the 2-core CPU box moved by +-25%),
    medians taken one function after the other compare different machine states; ratios of the
    calls within one round (`paired_ratios`) compare like with like. Call each function once
    before (warm-up, compilation)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(rounds):
        order = list(fns) if round_index % 2 == 0 else list(reversed(fns))
        for name in order:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two `interleaved_rounds` series."""
    return [a / b for a, b in zip(numerator, denominator)]


def table(headers: list[str], rows: list[list], floatfmt: str = "{:.2f}") -> str:
    """A plain fixed-width text table (also valid Markdown)."""
    cells = [[c if isinstance(c, str) else floatfmt.format(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells])
