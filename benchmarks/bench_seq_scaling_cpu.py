"""Our forward time against sequence length (batch 1), Mamba-only against hybrid, on CPU.

    python benchmarks/bench_seq_scaling_cpu.py [--lengths 1024,2048,4096,8192] [--runs 3]

Both configs have the small CPU widths of the other benchmarks (hidden 256, vocab 4096, float32):
"mamba" is 9 Mamba-2 blocks, "hybrid" the 9-block pattern M-M*-M-*M (4 Mamba, 3 MLP, 2
attention). The Mamba path (chunked SSD, chunk 64) is linear in T, so its time per token stays
flat; attention is quadratic (each query chunk of 512 scores against all T keys), so the hybrid's
time per token grows with T. The forward is the training forward to float32 logits.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import BENCH_HF_CONFIG, first_and_median, machine_line, table  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax.models.config import NemotronHConfig  # noqa: E402
from grpo_jax.models.nemotron_h import create_model  # noqa: E402

PATTERNS = {"mamba": "MMMMMMMMM", "hybrid": BENCH_HF_CONFIG["hybrid_override_pattern"]}


def config_for(pattern: str) -> NemotronHConfig:
    fields = {k: v for k, v in BENCH_HF_CONFIG.items() if k != "hybrid_override_pattern"}
    return NemotronHConfig(layer_pattern=pattern, **fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,4096,8192")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]

    print(machine_line())
    print(f"batch 1, float32, widths of {BENCH_HF_CONFIG} ; patterns {PATTERNS}; median of "
          f"{args.runs} runs after a warm-up\n")
    rows = []
    per_token = {}
    for name, pattern in PATTERNS.items():
        model = create_model(config_for(pattern), seed=0)
        graphdef, state = nnx.split(model)
        forward = jax.jit(lambda state, ids: nnx.merge(graphdef, state)(ids))
        for length in lengths:
            ids = np.random.default_rng(0).integers(0, BENCH_HF_CONFIG["vocab_size"], (1, length))
            first, median = first_and_median(
                lambda: forward(state, ids).block_until_ready(), args.runs)
            per_token[name, length] = median / length
            rows.append([name, str(length), median * 1e3, median / length * 1e6,
                         per_token[name, length] / per_token[name, lengths[0]], first - median])
    print(table(["config", "T", "forward ms", "us / token", "per-token vs shortest", "compile s"],
                rows))


if __name__ == "__main__":
    main()
