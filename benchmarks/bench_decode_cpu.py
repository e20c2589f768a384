"""Decode-step cache traffic at the 9B's state and KV sizes, on CPU: the sampler's decode loop,
and the same loop run by another checkout of grpo_jax (e.g. the commit before a change), side by
side.

    python benchmarks/bench_decode_cpu.py [--baseline-repo DIR] [--batch 16] [--cache 4096]
                                          [--context 1024] [--steps 16] [--runs 3]

    # a baseline checkout, without touching the working tree:
    mkdir -p /tmp/base && git archive 3c4f1ad grpo_jax | tar -x -C /tmp/base
    python benchmarks/bench_decode_cpu.py --baseline-repo /tmp/base

The model has one Mamba block and one attention block with the 9B's state and KV sizes (128
Mamba heads x 80 x 128 state in 8 groups; 40 query / 8 kv heads of 128) but a hidden size of 256
and a 4096-token vocabulary, float32. Its weights are small (~12M parameters), so a step's time is
the cache traffic: at batch 16, 84 MB of SSM state read and written and up to 537 MB of KV buffer
per step, which is what a 9B decode step moves besides its weights (27 and 4 such layers). On the
real 9B widths the CPU is bound by the weight matmuls and hides these differences.

The cache holds a synthetic context of `--context` tokens (lengths set, contents zero: a step's
cost does not depend on the values). Each checkout runs in its own subprocess (jax caches per
process); the two alternate and the minimum per checkout is reported (the machine may be shared).
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

CACHE_SIZED = dict(
    vocab_size=4096, hidden_size=256, layer_pattern="M*",
    num_attention_heads=40, num_key_value_heads=8, head_dim=128, intermediate_size=1024,
    mamba_num_heads=128, mamba_head_dim=80, ssm_state_size=128, n_groups=8, conv_kernel=4,
    chunk_size=128,
)


def worker(args) -> dict:
    """Runs in a subprocess whose sys.path starts with the checkout under test."""
    import time

    import jax
    from flax import nnx

    import grpo_jax
    from grpo_jax.models.config import NemotronHConfig
    from grpo_jax.models.nemotron_h import create_model
    from grpo_jax.sampling import Sampler, SamplerConfig

    config = NemotronHConfig(**CACHE_SIZED)
    model = create_model(config, seed=0)
    graphdef, params = nnx.split(model)
    extra = {"min_attend_bucket": args.cache} if args.worker_full_buffer else {}
    sampler = Sampler(graphdef, SamplerConfig(decode_chunk=args.steps, **extra))
    # A synthetic context: lengths set, contents zero (a prefill of 16 x 1024 tokens at these
    # widths takes minutes on 2 cores, and a step's cost does not depend on the values).
    state = sampler.init_state(params, args.batch, args.cache, seed=0)
    state = state.replace(cache=state.cache.replace(
        lengths_B=jax.numpy.full((args.batch,), args.context, "int32")))
    times = []
    for _ in range(args.runs + 1):  # the first run compiles
        jax.block_until_ready(state)
        start = time.perf_counter()
        state, _ = sampler.decode(params, state, args.steps, temperature=1.0)
        times.append(time.perf_counter() - start)
    return {"package": os.path.dirname(grpo_jax.__file__), "step_ms": min(times[1:]) / args.steps * 1e3}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-repo", default=None,
                        help="a directory holding another grpo_jax package to compare against")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache", type=int, default=4096, help="KV buffer length (max_len)")
    parser.add_argument("--context", type=int, default=1024, help="prompt tokens before decoding")
    parser.add_argument("--steps", type=int, default=16, help="decode steps per timed call (one chunk)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--alternations", type=int, default=2)
    parser.add_argument("--also-full-buffer", action="store_true",
                        help="also run this checkout attending to the whole KV buffer (no buckets)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-full-buffer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        sys.path.insert(0, args.worker)
        print("RESULT " + json.dumps(worker(args)))
        return

    from _common import machine_line

    print(machine_line())
    print(f"Mamba + attention block at the 9B's state/KV sizes, hidden 256, vocab 4096, float32; "
          f"batch {args.batch}, KV buffer "
          f"{args.cache}, synthetic context {args.context}, {args.steps} decode steps per call at "
          f"T=1 (one chunk), min of {args.runs} calls x {args.alternations} alternations\n")
    repos = [("this checkout", REPO_ROOT)]
    if args.also_full_buffer:
        repos.append(("this, no buckets", REPO_ROOT))
    if args.baseline_repo:
        repos.insert(0, ("baseline", os.path.abspath(args.baseline_repo)))
    best: dict[str, float] = {}
    for _ in range(args.alternations):
        for name, repo in repos:
            command = [sys.executable, os.path.abspath(__file__), "--worker", repo] + [
                f"--{k}={v}" for k, v in (("batch", args.batch), ("cache", args.cache),
                                          ("context", args.context), ("steps", args.steps),
                                          ("runs", args.runs))] + (
                ["--worker-full-buffer"] if name == "this, no buckets" else [])
            env = dict(os.environ, JAX_PLATFORMS="cpu")
            out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            result = json.loads(out.stdout.split("RESULT ", 1)[1])
            if not result["package"].startswith(repo):
                raise RuntimeError(f"{name}: imported {result['package']}, expected under {repo}")
            best[name] = min(best.get(name, float("inf")), result["step_ms"])
    for name, _ in repos:
        speed = (f"  ({best['baseline'] / best[name]:.2f}x the baseline's speed)"
                 if args.baseline_repo else "")
        print(f"{name:>16}: {best[name]:8.1f} ms per decode step{speed}")


if __name__ == "__main__":
    main()
