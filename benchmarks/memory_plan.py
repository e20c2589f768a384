"""Compile-only memory plan of the full 9B train step on 8 fake CPU devices.

    python benchmarks/memory_plan.py [--seqs 8192,32768] [--remats none,full]
                                     [--layouts tensor8,fsdp2xtensor4,fsdp8] [--micro-batch 1]
                                     [--full-model-check]

The step is `Learner.update` (forward, backward, AdamW; fp32 master weights, fp32 Adam moments,
bf16 compute; M = 2 micro-batches of `micro-batch` sequences per data-parallel shard), lowered with
abstract arguments only (jax.ShapeDtypeStruct with NamedShardings, nnx.eval_shape): nothing is
allocated. Per-device bytes come from `compiled.memory_analysis()`.

Compiling the 56-layer model on 2 CPU cores is slow, so the table is built per layer: four
models with the 9B widths and the blocks {M, -, *} once each, plus one extra block of each type,
give a base and a per-block cost of each type (every quantity is linear in the number of blocks
of each type: parameters, optimizer state, saved activations), extrapolated to the 9B's 27
Mamba, 25 MLP and 4 attention blocks. `--full-model-check` also compiles the real 56-layer step
for the first layout / sequence / remat and prints it beside the extrapolation.

The CPU compiler's buffer assignment and fusion are not the GPU's (it may, e.g., keep float32
copies of bf16 operands), so these are estimates of what an 80 GB H100 needs, not measurements.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_line, table  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from grpo_jax import optim, sharding  # noqa: E402
from grpo_jax.models.config import NemotronHConfig  # noqa: E402
from grpo_jax.models.nemotron_h import NemotronH  # noqa: E402
from grpo_jax.train_step import LossConfig, Learner, TrainState  # noqa: E402

NINE_B = "nemotron-nano-9b-v2"
GIB = 2 ** 30
H100_BYTES = 80 * 10 ** 9          # "80GB" as sold; ~79.6e9 usable before the runtime's share
LAYOUTS = {"tensor8": dict(tensor=8), "fsdp2xtensor4": dict(fsdp=2, tensor=4),
           "fsdp8": dict(fsdp=8)}
MICRO_BATCHES = 2
# Base pattern (one block of each type) and one extra block of each type.
PROBES = {"base": "M-*", "mamba": "MM-*", "mlp": "M--*", "attention": "M-**"}


def abstract_step(config: NemotronHConfig, mesh, seq: int, micro_batch: int):
    """(learner, abstract TrainState, abstract batch), every leaf a sharded ShapeDtypeStruct."""
    graphdef, abstract_params = nnx.split(
        nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))
    shardings = sharding.state_shardings(abstract_params, mesh)
    params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract_params, shardings)
    optimizer = optim.make_optimizer(lr=1e-6, max_num_steps=100)
    # The optimizer state takes the shardings its jitted init gives it (moments = parameters).
    init = jax.jit(optimizer.init).lower(params).compile()
    opt_abstract = jax.eval_shape(optimizer.init, params)
    opt_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                             opt_abstract, init.output_shardings)
    replicated = NamedSharding(mesh, PartitionSpec())
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    state = TrainState(step=scalar, params=params, opt_state=opt_state, skipped_updates=scalar)
    data_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    b = micro_batch * data_shards
    batch_spec = NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp")))
    tokens = lambda dtype: jax.ShapeDtypeStruct((MICRO_BATCHES, b, seq), dtype,  # noqa: E731
                                                sharding=batch_spec)
    batch = dict(tokens=tokens(jnp.int32), loss_mask=tokens(jnp.float32),
                 old_logprobs=tokens(jnp.float32),
                 advantages=jax.ShapeDtypeStruct((MICRO_BATCHES, b), jnp.float32,
                                                 sharding=batch_spec))
    return Learner(graphdef, optimizer, LossConfig()), state, batch


def plan(pattern: str, layout: str, seq: int, remat: str, micro_batch: int) -> dict:
    config = NemotronHConfig.preset(NINE_B, layer_pattern=pattern, param_dtype=jnp.float32,
                                    compute_dtype=jnp.bfloat16, remat=remat)
    mesh = sharding.make_mesh(**LAYOUTS[layout])
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        learner, state, batch = abstract_step(config, mesh, seq, micro_batch)
        compiled = learner._update.lower(state, batch).compile()
    m = compiled.memory_analysis()
    return dict(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
                alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes,
                code=m.generated_code_size_in_bytes, compile_s=time.perf_counter() - start)


def peak(m: dict) -> float:
    """Live bytes at the step's peak: inputs + outputs not aliased to donated inputs + scratch."""
    return m["argument"] + m["output"] - m["alias"] + m["temp"] + m["code"]


def extrapolate(probes: dict[str, dict], counts: dict[str, int]) -> dict:
    base = probes["base"]
    out = {}
    for key in ("argument", "output", "alias", "temp", "code"):
        value = base[key]
        for kind, n in counts.items():
            value += (n - 1) * (probes[kind][key] - base[key])
        out[key] = value
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="8192,32768")
    parser.add_argument("--remats", default="none,full")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--micro-batch", type=int, default=1,
                        help="sequences per data-parallel shard per micro-batch")
    parser.add_argument("--full-model-check", action="store_true")
    args = parser.parse_args()
    seqs = [int(s) for s in args.seqs.split(",")]
    remats = args.remats.split(",")
    layouts = args.layouts.split(",")

    full = NemotronHConfig.preset(NINE_B)
    counts = {"mamba": full.layer_pattern.count("M"), "mlp": full.layer_pattern.count("-"),
              "attention": full.layer_pattern.count("*")}
    print(machine_line())
    print(f"9B train step (Learner.update: fwd + bwd + AdamW, fp32 master + moments, bf16 compute),"
          f" {MICRO_BATCHES} micro-batches of {args.micro_batch} sequence(s) per data shard; "
          f"per-device bytes on 8 fake CPU devices, extrapolated per block to {counts}\n")
    rows = []
    total_compile = 0.0
    for layout in layouts:
        for seq in seqs:
            for remat in remats:
                probes = {kind: plan(p, layout, seq, remat, args.micro_batch)
                          for kind, p in PROBES.items()}
                total_compile += sum(p["compile_s"] for p in probes.values())
                m = extrapolate(probes, counts)
                per_block = {k: (probes[k]["temp"] - probes["base"]["temp"]) / GIB
                             for k in ("mamba", "mlp", "attention")}
                rows.append([layout, str(seq), remat, m["argument"] / GIB, m["output"] / GIB,
                             m["alias"] / GIB, m["temp"] / GIB, m["code"] / GIB, peak(m) / GIB,
                             " / ".join(f"{v:.2f}" for v in per_block.values()),
                             "yes" if peak(m) < H100_BYTES else "NO"])
                print(table(["layout", "seq", "remat", "argument GiB", "output GiB", "alias GiB",
                             "temp GiB", "code GiB", "peak GiB", "temp per M/-/* GiB",
                             "fits 80 GB"], rows[-1:]), flush=True)
    print("\n" + table(["layout", "seq", "remat", "argument GiB", "output GiB", "alias GiB",
                        "temp GiB", "code GiB", "peak GiB", "temp per M/-/* GiB", "fits 80 GB"],
                       rows))
    print(f"\npeak = argument + output - alias + temp + code (per device); "
          f"{len(rows) * len(PROBES)} probe compiles took {total_compile:.0f} s")
    if args.full_model_check:
        layout, seq, remat = layouts[0], seqs[0], remats[-1]
        probes = {kind: plan(p, layout, seq, remat, args.micro_batch)
                  for kind, p in PROBES.items()}
        predicted = extrapolate(probes, counts)
        measured = plan(full.layer_pattern, layout, seq, remat, args.micro_batch)
        print(f"\nfull 56-layer check ({layout}, seq {seq}, remat {remat}; compile "
              f"{measured['compile_s']:.0f} s):")
        print(table(["", "argument GiB", "output GiB", "alias GiB", "temp GiB", "peak GiB"], [
            [name, m["argument"] / GIB, m["output"] / GIB, m["alias"] / GIB, m["temp"] / GIB,
             peak(m) / GIB] for name, m in (("extrapolated", predicted), ("compiled", measured))]))


if __name__ == "__main__":
    main()
