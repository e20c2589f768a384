"""The trainer's update program with its CPU compiler options against XLA:CPU's defaults.

    python benchmarks/bench_update_cpu.py [--shapes 64x512x32,64x512x8,64x256x32] [--rounds 5]
                                          [--model tiny|bench]

`Learner.update` (the GRPO loss, gradient accumulation over micro-batches, AdamW) on the embedded
tiny model (`assets/tiny-workplace`, the model the CPU run trains) or on the CPU benchmark config
(`--model bench`, random weights), for batches of B trajectories of T tokens in micro-batches of
b rows (`--shapes BxTxb`), each with ~3/4 of its tokens trained. Two compiles of the same update:
with `xla_options.update_compiler_options` (what the trainer uses) and with XLA's defaults. After
two warm-up calls of each, `--rounds` rounds call both once, alternating (`_common.interleaved_rounds`);
the ratio is the median of the per-round ratios (defaults / options), with their range.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (BENCH_HF_CONFIG, REPO_ROOT, interleaved_rounds, machine_line,  # noqa: E402
                     paired_ratios, table)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax import optim, xla_options  # noqa: E402
from grpo_jax.models import NemotronHConfig, create_model, load_hf_model  # noqa: E402
from grpo_jax.train_step import Learner, LossConfig, make_update_batch  # noqa: E402


def load_model(name: str):
    if name == "tiny":
        return load_hf_model(os.path.join(REPO_ROOT, "assets", "tiny-workplace"))
    return create_model(NemotronHConfig.from_hf_config(BENCH_HF_CONFIG))


def compare(graphdef, params, vocab: int, batch_size: int, length: int, micro: int,
            rounds: int) -> list:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, (batch_size, length)).astype(np.int32)
    mask = np.zeros((batch_size, length), np.float32)
    for row, end in enumerate(rng.integers(length // 2, length + 1, batch_size)):
        mask[row, length // 8:end] = 1.0
    batch = make_update_batch(tokens, mask, micro, advantages_B=rng.normal(size=batch_size))
    learner = Learner(graphdef, optim.make_optimizer(lr=1e-5, min_lr=1e-6, max_num_steps=100),
                      LossConfig(logprob_chunk=1024))
    batch["old_logprobs"] = np.asarray(learner.logprobs(params, batch["tokens"], batch["positions"])[0])
    options = xla_options.update_compiler_options(jax.default_backend()) or {}
    states = {}

    def path(name, compiler_options):
        update = learner.update_function(compiler_options)
        states[name] = learner.init_state(jax.tree.map(jnp.copy, params))

        def run():
            states[name], metrics = update(states[name], batch)
            jax.block_until_ready(metrics)
        return run

    fns = {"options": path("options", options), "defaults": path("defaults", {})}
    # Two warm-up calls each: the first compiles for the fresh state, the second for the state an
    # update returns (no shardings are pinned here, so its layout may differ).
    for fn in list(fns.values()) * 2:
        fn()
    times = interleaved_rounds(fns, rounds)
    ratios = paired_ratios(times["defaults"], times["options"])
    return [f"{batch_size}x{length}x{micro}", statistics.median(times["options"]) * 1e3,
            statistics.median(times["defaults"]) * 1e3,
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="64x512x32,64x512x8,64x256x32",
                        help="comma-separated BxTxb: trajectories x tokens x micro-batch rows")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", choices=["tiny", "bench"], default="tiny")
    args = parser.parse_args()
    print(machine_line())
    print(f"model {args.model}; update options {xla_options.update_compiler_options(jax.default_backend())}; "
          f"median of {args.rounds} interleaved rounds after two warm-up calls of each\n")
    model = load_model(args.model)
    graphdef, params = nnx.split(model)
    rows = []
    for shape in args.shapes.split(","):
        batch_size, length, micro = (int(v) for v in shape.split("x"))
        rows.append(compare(graphdef, params, model.config.vocab_size, batch_size, length, micro,
                            args.rounds))
        print(f"  {rows[-1][0]} done", flush=True)
    print(table(["B x T x micro", "with the options ms", "XLA defaults ms",
                 "defaults / options (median, range)"], rows))


if __name__ == "__main__":
    main()
