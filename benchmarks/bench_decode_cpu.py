"""Decode-step memory traffic at the 9B layer widths, on CPU: the sampler's decode loop, and the
same loop run by another checkout of grpo_jax (e.g. the commit before a change), side by side.

    python benchmarks/bench_decode_cpu.py [--baseline-repo DIR] [--batch 16] [--cache 4096]
                                          [--context 1024] [--steps 32] [--runs 3]

    # a baseline checkout, without touching the working tree:
    mkdir -p /tmp/base && git archive HEAD grpo_jax | tar -x -C /tmp/base
    python benchmarks/bench_decode_cpu.py --baseline-repo /tmp/base

The model is one block of each type at the real 9B widths (hidden 4480, 128 Mamba heads x 80 x
128 state, 40/8 attention heads x 128, MLP 15680) with a 4096-token vocabulary, float32. A decode
step there reads ~0.3 GB of weights, 84 MB of SSM state (batch 16) and the KV buffer, so extra
passes over the state or the KV buffer (copies, transposes) show up in the step time even on a
CPU, unlike in the tiny configs where per-op overhead dominates.

Each checkout runs in its own subprocess (jax caches per process); the two alternate `--runs`
times and the minimum per checkout is reported (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import REPO_ROOT  # noqa: E402

WIDE_ONE_OF_EACH = dict(
    vocab_size=4096, hidden_size=4480, layer_pattern="M*-",
    num_attention_heads=40, num_key_value_heads=8, head_dim=128, intermediate_size=15680,
    mamba_num_heads=128, mamba_head_dim=80, ssm_state_size=128, n_groups=8, conv_kernel=4,
    chunk_size=128,
)


def worker(args) -> dict:
    """Runs in a subprocess whose sys.path starts with the checkout under test."""
    import time

    import jax
    import numpy as np
    from flax import nnx

    import grpo_jax
    from grpo_jax.models.config import NemotronHConfig
    from grpo_jax.models.nemotron_h import create_model
    from grpo_jax.sampling import Sampler, SamplerConfig

    config = NemotronHConfig(**WIDE_ONE_OF_EACH)
    model = create_model(config, seed=0)
    graphdef, params = nnx.split(model)
    sampler = Sampler(graphdef, SamplerConfig(decode_chunk=args.steps))
    prompts = np.random.default_rng(0).integers(3, config.vocab_size,
                                                (args.batch, args.context)).tolist()
    times = []
    for _ in range(args.runs + 1):  # the first run compiles
        state = sampler.prefill(params, prompts, args.cache, seed=0)
        jax.block_until_ready(state)
        start = time.perf_counter()
        sampler.decode(params, state, args.steps, temperature=1.0)
        times.append(time.perf_counter() - start)
    return {"package": os.path.dirname(grpo_jax.__file__), "step_ms": min(times[1:]) / args.steps * 1e3}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-repo", default=None,
                        help="a directory holding another grpo_jax package to compare against")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache", type=int, default=4096, help="KV buffer length (max_len)")
    parser.add_argument("--context", type=int, default=1024, help="prompt tokens before decoding")
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed (one chunk)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--alternations", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        sys.path.insert(0, args.worker)
        print("RESULT " + json.dumps(worker(args)))
        return

    from _common import machine_line

    print(machine_line())
    print(f"one block of each type at 9B widths, vocab 4096, float32; batch {args.batch}, KV buffer "
          f"{args.cache}, context {args.context}, {args.steps} decode steps at T=1 (one chunk), "
          f"min of {args.runs} runs x {args.alternations} alternations\n")
    repos = [("this checkout", REPO_ROOT)]
    if args.baseline_repo:
        repos.insert(0, ("baseline", os.path.abspath(args.baseline_repo)))
    best: dict[str, float] = {}
    for _ in range(args.alternations):
        for name, repo in repos:
            command = [sys.executable, os.path.abspath(__file__), "--worker", repo] + [
                f"--{k}={v}" for k, v in (("batch", args.batch), ("cache", args.cache),
                                          ("context", args.context), ("steps", args.steps),
                                          ("runs", args.runs))]
            env = dict(os.environ, JAX_PLATFORMS="cpu")
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            result = json.loads(out.stdout.split("RESULT ", 1)[1])
            if not result["package"].startswith(repo):
                raise RuntimeError(f"{name}: imported {result['package']}, expected under {repo}")
            best[name] = min(best.get(name, float("inf")), result["step_ms"])
    for name, _ in repos:
        print(f"{name:>14}: {best[name]:8.1f} ms per decode step")
    if args.baseline_repo:
        print(f"{'speed-up':>14}: {best['baseline'] / best['this checkout']:8.2f}x")


if __name__ == "__main__":
    main()
