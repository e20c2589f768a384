"""Compile-only memory plan of the full 9B train step on 8 devices: fake CPUs, or H100s.

    python benchmarks/memory_plan.py [--seqs 8192,32768] [--layouts tensor8,fsdp2xtensor4,fsdp8]
                                     [--micro-batch 1] [--full-model-check] [--target cpu|h100]

The step is `Learner.update` (forward, backward, AdamW; fp32 master weights, fp32 Adam moments,
bf16 compute; M = 2 micro-batches of `micro-batch` sequences per data-parallel shard), with the
trainer's explicit state shardings, lowered with abstract arguments only (jax.ShapeDtypeStruct
with NamedShardings, nnx.eval_shape): nothing is allocated. Per-device bytes come from
`compiled.memory_analysis()`.

--target h100 (needs jax's CUDA plugin, no GPU: `_deviceless.py`): XLA:GPU compiles the whole
56-layer step for 8 compile-only H100s, every row a compiled number (remat included: the GPU
compiler keeps it); 58-75 s per row on 2 CPU cores, ~14 minutes for the 12 rows. Its own
rematerialisation pass may recompute more to fit the device's memory, and says so on stderr when
it cannot. These are the numbers to plan with; the CPU ones are estimates.

--target cpu (default): per block, not the 56-layer model (compiling that on 2 CPU cores is slow;
`--full-model-check` compiles it once to check the extrapolation): models with the 9B widths and
the blocks {M, -, *} once each, plus one extra block of each type, give a base and a per-block
cost of each type, extrapolated to the 9B's 27 Mamba, 25 MLP and 4 attention blocks (parameters,
optimizer state, gradients and saved activations are all linear in the blocks of each type).

remat on the CPU: the XLA CPU compiler undoes rematerialisation (its compiled programs keep no
optimisation barrier, and the recomputation is merged with the forward pass; the run starts by
showing it on a toy stack: the same scratch bytes with and without jax.checkpoint). So "none"
rows are compiled numbers, and "full" rows are ESTIMATES: the compiled sequence-independent part
(the same probes at sequence 256) + every block's saved input (b x T x hidden bf16) + the largest
one-block activation set (a one-block model at T minus the same at 256, forward and backward with
nothing rematerialised).

The CPU compiler's buffer assignment and fusion are not the GPU's (docs/performance.md compares
the two). Every CPU probe compiles with XLA's own fusions only (`xla_options.CPU_XLA_FUSIONS_ONLY`),
whatever the micro-batch size: XLA:CPU's default YNNPACK library fusions, which a GPU never runs,
nearly doubled the temporaries.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_line, table  # noqa: E402
from _deviceless import h100_devices  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from grpo_jax import optim, sharding, xla_options  # noqa: E402
from grpo_jax.models import layers  # noqa: E402
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
    # `shardings` holds a NamedSharding where `abstract_params` holds a Variable.
    params = jax.tree.map(
        lambda s, v: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
        shardings, abstract_params, is_leaf=lambda x: isinstance(x, NamedSharding))
    optimizer = optim.make_optimizer(lr=1e-6, max_num_steps=100)
    # Adam's moments are sharded like their parameters (found by key-path suffix: the moments'
    # paths end with the parameter's path); scalars (step counts) are replicated.
    replicated = NamedSharding(mesh, PartitionSpec())
    by_path = {jax.tree_util.keystr(path): leaf.sharding
               for path, leaf in jax.tree_util.tree_leaves_with_path(params)}

    def moment(path, leaf):
        key = jax.tree_util.keystr(path)
        matches = [s for p, s in by_path.items() if key.endswith(p)]
        if leaf.shape and len(matches) != 1:
            raise ValueError(f"optimizer state {key} matches {len(matches)} parameters")
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                    sharding=matches[0] if leaf.shape else replicated)

    opt_state = jax.tree_util.tree_map_with_path(moment, jax.eval_shape(optimizer.init, params))
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    state = TrainState(step=scalar, params=params, opt_state=opt_state, skipped_updates=scalar)
    data_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    b = micro_batch * data_shards
    batch_spec = NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp")))
    tokens = lambda dtype: jax.ShapeDtypeStruct((MICRO_BATCHES, b, seq), dtype,  # noqa: E731
                                                sharding=batch_spec)
    # Every position trained (K = T): the update's per-token inputs sit at `positions`.
    batch = dict(tokens=tokens(jnp.int32), positions=tokens(jnp.int32),
                 loss_mask=tokens(jnp.float32), old_logprobs=tokens(jnp.float32),
                 advantages=jax.ShapeDtypeStruct((MICRO_BATCHES, b), jnp.float32,
                                                 sharding=batch_spec))
    # Explicit state shardings, as the trainer has them (left to propagation, XLA:GPU returned
    # the state replicated).
    learner = Learner(graphdef, optimizer, LossConfig(), state_shardings=state.shardings())
    return learner, state, batch


@functools.lru_cache(maxsize=None)
def target_devices(target: str) -> tuple | None:
    """The 8 devices of a plan: None (the 8 fake CPU devices) or compile-only H100s."""
    return None if target == "cpu" else tuple(h100_devices(8))


def plan(pattern: str, layout: str, seq: int, micro_batch: int, remat: str = "none",
         target: str = "cpu") -> dict:
    config = NemotronHConfig.preset(NINE_B, layer_pattern=pattern, param_dtype=jnp.float32,
                                    compute_dtype=jnp.bfloat16, remat=remat)
    mesh = sharding.make_mesh(**LAYOUTS[layout], devices=target_devices(target))
    # The in_proj formulation a GPU's "auto" picks (this process's backend is the CPU).
    in_proj = "auto" if target == "cpu" else "split"
    start = time.perf_counter()
    with jax.set_mesh(mesh), layers.use_in_proj_formulation(in_proj):
        learner, state, batch = abstract_step(config, mesh, seq, micro_batch)
        options = (xla_options.memory_plan_compiler_options(jax.default_backend())
                   if target == "cpu" else {})
        compiled = learner.update_function(options).lower(state, batch).compile()
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


def cpu_remat_toy() -> str:
    """Scratch bytes of a toy 2/4/8-layer stack, with and without jax.checkpoint, on this CPU."""
    d, f, t = 256, 1024, 1024

    def layer(w, x):
        h = jnp.tanh(x @ w[0])
        return x + (jnp.sin(h) * jnp.cos(h)) @ w[1]

    def loss(ws, x, remat):
        for w in ws:
            x = (jax.checkpoint(layer) if remat else layer)(w, x)
        return x.sum()

    parts = []
    for n in (2, 4, 8):
        ws = [(jax.ShapeDtypeStruct((d, f), jnp.float32),
               jax.ShapeDtypeStruct((f, d), jnp.float32))] * n
        x = jax.ShapeDtypeStruct((t, d), jnp.float32)
        temps = [jax.jit(jax.grad(lambda ws, x: loss(ws, x, r))).lower(ws, x).compile()
                 .memory_analysis().temp_size_in_bytes / 2**20 for r in (False, True)]
        parts.append(f"{n} layers: {temps[0]:.1f} MiB plain, {temps[1]:.1f} MiB checkpointed")
    return "; ".join(parts)


def plan_h100(full: NemotronHConfig, layouts, seqs, remats, micro_batch: int):
    """Every row compiled by XLA:GPU for 8 compile-only H100s, the whole 56-layer model."""
    print(f"9B train step (Learner.update: fwd + bwd + AdamW, fp32 master + moments, bf16 compute),"
          f" {MICRO_BATCHES} micro-batches of {micro_batch} sequence(s) per data shard; "
          f"per-device bytes compiled by XLA:GPU for 8 x {target_devices('h100')[0].device_kind} "
          "(compile-only), the full model, XLA's default options\n")
    headers = ["layout", "seq", "remat", "argument GiB", "output GiB", "alias GiB", "temp GiB",
               "peak GiB", "fits 80 GB", "compile s"]
    rows = []
    for layout in layouts:
        for seq in seqs:
            for remat in remats:
                m = plan(full.layer_pattern, layout, seq, micro_batch, remat, target="h100")
                rows.append([layout, str(seq), remat, m["argument"] / GIB, m["output"] / GIB,
                             m["alias"] / GIB, m["temp"] / GIB, peak(m) / GIB,
                             "yes" if peak(m) < H100_BYTES else "NO", f"{m['compile_s']:.0f}"])
                print(table(headers, rows[-1:]), flush=True)
    print("\n" + table(headers, rows))
    print("\npeak = argument + output - alias + temp + code, per device")


SHORT_SEQ = 256
SINGLE = {"mamba": "M", "mlp": "-", "attention": "*"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="8192,32768")
    parser.add_argument("--remats", default="none,full")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--micro-batch", type=int, default=1,
                        help="sequences per data-parallel shard per micro-batch")
    parser.add_argument("--full-model-check", action="store_true")
    parser.add_argument("--target", choices=("cpu", "h100"), default="cpu",
                        help="cpu: 8 fake CPU devices, per-block extrapolation; h100: XLA:GPU "
                        "compiles the full model for 8 compile-only H100s")
    args = parser.parse_args()
    seqs = [int(s) for s in args.seqs.split(",")]
    remats = args.remats.split(",")
    layouts = args.layouts.split(",")

    full = NemotronHConfig.preset(NINE_B)
    counts = {"mamba": full.layer_pattern.count("M"), "mlp": full.layer_pattern.count("-"),
              "attention": full.layer_pattern.count("*")}
    print(machine_line())
    if args.target == "h100":
        return plan_h100(full, layouts, seqs, remats, args.micro_batch)
    print(f"9B train step (Learner.update: fwd + bwd + AdamW, fp32 master + moments, bf16 compute),"
          f" {MICRO_BATCHES} micro-batches of {args.micro_batch} sequence(s) per data shard; "
          f"per-device bytes on 8 fake CPU devices, extrapolated per block to {counts}; compiler "
          f"options {xla_options.memory_plan_compiler_options(jax.default_backend())}\n")
    print(f"XLA CPU and remat (toy stack, d=256, f=1024, T=1024): {cpu_remat_toy()}\n")
    headers = ["layout", "seq", "remat", "argument GiB", "output GiB", "alias GiB", "temp GiB",
               "peak GiB", "fits 80 GB", "how"]
    rows = []
    compiles = []
    for layout in layouts:
        short = {kind: plan(p, layout, SHORT_SEQ, args.micro_batch) for kind, p in PROBES.items()}
        short_single = {kind: plan(p, layout, SHORT_SEQ, args.micro_batch)
                        for kind, p in SINGLE.items()}
        compiles += list(short.values()) + list(short_single.values())
        fixed = extrapolate(short, counts)
        for seq in seqs:
            probes = {kind: plan(p, layout, seq, args.micro_batch) for kind, p in PROBES.items()}
            single = {kind: plan(p, layout, seq, args.micro_batch) for kind, p in SINGLE.items()}
            compiles += list(probes.values()) + list(single.values())
            none = extrapolate(probes, counts)
            # remat "full" estimate (see the module doc): fixed part + saved block inputs + the
            # largest one-block activation set.
            saved_inputs = (full.num_layers * args.micro_batch * seq * full.hidden_size
                            * jnp.dtype(jnp.bfloat16).itemsize)
            one_block = {k: single[k]["temp"] - short_single[k]["temp"] for k in SINGLE}
            remat = dict(none, temp=fixed["temp"] + saved_inputs + max(one_block.values()))
            for name, m, how in (("none", none, "compiled, per-block extrapolation"),
                                 ("full", remat, "estimate: fixed + inputs + one block "
                                  f"({max(one_block, key=one_block.get)} "
                                  f"{max(one_block.values()) / GIB:.1f} GiB)")):
                if name not in remats:
                    continue
                rows.append([layout, str(seq), name, m["argument"] / GIB, m["output"] / GIB,
                             m["alias"] / GIB, m["temp"] / GIB, peak(m) / GIB,
                             "yes" if peak(m) < H100_BYTES else "NO", how])
                print(table(headers, rows[-1:]), flush=True)
    print("\n" + table(headers, rows))
    print(f"\npeak = argument + output - alias + temp + code, per device; {len(compiles)} probe "
          f"compiles took {sum(c['compile_s'] for c in compiles):.0f} s")
    if args.full_model_check:
        layout, seq = layouts[0], seqs[0]
        probes = {kind: plan(p, layout, seq, args.micro_batch) for kind, p in PROBES.items()}
        predicted = extrapolate(probes, counts)
        measured = plan(full.layer_pattern, layout, seq, args.micro_batch)
        print(f"\nfull 56-layer check ({layout}, seq {seq}, remat none; compile "
              f"{measured['compile_s']:.0f} s):")
        print(table(["", "argument GiB", "output GiB", "alias GiB", "temp GiB", "peak GiB"], [
            [name, m["argument"] / GIB, m["output"] / GIB, m["alias"] / GIB, m["temp"] / GIB,
             peak(m) / GIB] for name, m in (("extrapolated", predicted), ("compiled", measured))]))


if __name__ == "__main__":
    main()
