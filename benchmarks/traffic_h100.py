"""Modeled HBM traffic of the 9B's decode loop and train blocks as XLA compiles them for an
H100, without an H100.

    pip install "jax[cuda13]==$(python -c 'import jax; print(jax.__version__)')"  # plugin only
    python benchmarks/traffic_h100.py [--sections decode,blocks] [--batches 16,64,256]
                                      [--updates per_step,deferred] [--chunk 32] [--top 12]
                                      [--tensor 1] [--xla-options K=V,...] [--out traffic.json]

Each program is compiled by XLA:GPU for a compile-only H100 (`_deviceless.h100_devices`) and its
optimized HLO charged op by op (`_hlo_traffic`: operands read once, results written once, slices
and in-place updates at their own size, loop bodies times their trip count).

decode: one decode chunk of the full sampling loop (`sampling._decode_program`, the program
`Sampler.decode` runs: T = 1 sampling over the 131,072 vocabulary, log-probs, cache writes, stop
checks) with the 9B shape, bf16 parameters, float32 Mamba state and a 2,048-position KV buffer
attended over 1,024 positions. Per decode step: the modeled bytes (what runs once per chunk
shared by its steps), the bytes a step must move at least (the roofline numerator of
`gpu_h100.py`: weights, Mamba state read and written, KV read), their ratio (the fraction of the
roofline the program could reach if every kernel ran at the copy bandwidth), and the op groups
that move the most.

blocks: forward + backward of one block of each type at 9B widths on a 2 x 4096 micro-batch (bf16
parameters and compute, no remat), as `gpu_h100.py`'s train_blocks times them, the Mamba block
with float32 and with bf16 SSD contraction operands: modeled bytes, and the milliseconds they
take at the copy bandwidth measured on the 2026-11-27 H100 (`--bandwidth`), beside the block's
matmul FLOPs.

--tensor N compiles the decode for N compile-only H100s with the parameters and cache sharded
tensor-parallel as the trainer's mesh shards them (bytes per device); --xla-options passes XLA
options to the decode program (e.g. xla_gpu_dot_merger_threshold_mb=0).

The in_proj formulation, which depends on the backend, is pinned to what "auto" picks on a GPU
(split), since this process's backend is the CPU. A model of what the compiled programs ask of
memory, not a timing: kernels below the copy bandwidth do not show here, nor collectives'
latency. No autotuning without a device, so XLA's kernel choices (e.g. split-K of the
small-batch matmuls, and the padding it needs) may differ from a real run's.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")   # the host compiles; the target is the H100
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_line, table  # noqa: E402
from _deviceless import h100_devices  # noqa: E402
from _gpu_common import block_forward_flops, block_loss  # noqa: E402
from _gpu_decode import decode_bytes_per_step  # noqa: E402
from _hlo_traffic import TrafficModel  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax import sampling, sharding  # noqa: E402
from grpo_jax.models import layers  # noqa: E402
from grpo_jax.models.cache import cache_shardings  # noqa: E402
from grpo_jax.models.config import NemotronHConfig  # noqa: E402
from grpo_jax.models.layers import Block  # noqa: E402
from grpo_jax.models.nemotron_h import NemotronH  # noqa: E402

NINE_B = "nemotron-nano-9b-v2"
CACHE_LEN, ATTEND, CONTEXT, STOP_COLUMNS = 2048, 1024, 896, 8
TRAIN_BATCH, TRAIN_SEQ = 2, 4096
H100_COPY_BPS = 2.95e12   # device copy bandwidth measured on the H100 of 2026-11-27


def on(sharding, tree):
    """`tree`'s leaves as ShapeDtypeStructs placed by `sharding` (one, or a matching tree)."""
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                            tree)
    return jax.tree.map(lambda s, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        sharding, tree, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


def compile_chunk(graphdef, params, mesh, batch: int, chunk: int, update: str, options: dict):
    """The optimized HLO text of one `chunk`-step decode chunk for `batch` rows on `mesh` (the
    parameters and cache sharded as the trainer's mesh shards them), and the abstract state."""
    replicated = NamedSharding(mesh, PartitionSpec())
    sampler = sampling.Sampler(graphdef, sampling.SamplerConfig(
        decode_chunk=chunk, min_attend_bucket=CONTEXT, ssm_decode_update=update))
    with jax.set_mesh(mesh):
        state = on(replicated, jax.eval_shape(lambda p: sampler.init_state(p, batch, CACHE_LEN),
                                              params))
        state = state.replace(cache=on(cache_shardings(state.cache, mesh), state.cache))
        rows = lambda dtype: jax.ShapeDtypeStruct((batch,), dtype)  # noqa: E731
        flag = jax.ShapeDtypeStruct((), jnp.bool_)  # all greedy, needs top-k / top-p filtering
        controls = on(replicated, (rows(jnp.float32), rows(jnp.float32), rows(jnp.int32),
                                   jax.ShapeDtypeStruct((batch, STOP_COLUMNS), jnp.int32),
                                   rows(jnp.int32), flag, flag))
        program = jax.jit(functools.partial(sampling._decode_program, chunk, 1, update, graphdef),
                          static_argnums=(0,), donate_argnums=(2,), compiler_options=options)
        with layers.use_in_proj_formulation("split"):
            compiled = program.lower(ATTEND, params, state, controls,
                                     on(replicated, rows(jnp.bool_)),
                                     on(replicated, rows(jnp.int32)),
                                     on(replicated, jax.ShapeDtypeStruct((), jnp.int32))).compile()
    return compiled.as_text(), state


def groups(charges, per: int, top: int) -> list[dict]:
    """Charges summed over ops of the same kind, result type and JAX op (e.g. one per layer)."""
    summed = collections.defaultdict(lambda: [0, 0])
    for c in charges:
        op = c.op_name.split("closed_call/")[-1].split("while/body/")[-1]
        key = (c.kind, c.type.split("{")[0] if not c.type.startswith("(") else c.type[:48], op)
        summed[key][0] += c.total / per
        summed[key][1] += 1
    ranked = sorted(summed.items(), key=lambda kv: -kv[1][0])[:top]
    return [dict(kind=k[0], type=k[1], op=k[2][-60:], mb_per_step=v[0] / 1e6, ops=v[1])
            for k, v in ranked]


def section_decode(args, device, results: dict):
    config = NemotronHConfig.preset(NINE_B, param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))
    mesh = sharding.make_mesh(tensor=args.tensor, devices=h100_devices(args.tensor))
    params = on(sharding.state_shardings(abstract, mesh), abstract)
    options = dict(kv.split("=", 1) for kv in args.xla_options.split(",") if kv)
    tag = (f", tensor {args.tensor}" if args.tensor > 1 else "") + "".join(
        f", {k}={v}" for k, v in options.items())
    rows = []
    print(f"decode chunk of {args.chunk} steps, KV buffer {CACHE_LEN}, attend {ATTEND}{tag}; "
          + ("bytes per device; 'needed' is the whole model's / tensor" if args.tensor > 1 else
             "bytes per step"))
    for batch in (int(b) for b in args.batches.split(",")):
        for update in args.updates.split(","):
            start = time.perf_counter()
            hlo, state = compile_chunk(graphdef, params, mesh, batch, args.chunk, update,
                                       options)
            model = TrafficModel(hlo)
            charges = model.charges()
            in_loop = [c for c in charges if c.trips == args.chunk]
            # Once per chunk (e.g. the deferred updates' fold into the states), shared by its steps.
            once = sum(c.total for c in charges if c.trips != args.chunk)
            modeled = (sum(c.total for c in in_loop) + once) / args.chunk
            needed = decode_bytes_per_step(config, abstract, state.cache, batch, ATTEND)
            minimum = sum(v for k, v in needed.items() if k != "kv_full_buffer") / args.tensor
            branches = [(lo / args.chunk, hi / args.chunk) for _, lo, hi in model.conditionals]
            key = f"decode B={batch},{update}{tag}"
            results[key] = dict(
                batch=batch, ssm_decode_update=update, modeled_bytes_per_step=modeled,
                minimum_bytes_per_step=minimum, minimum_over_modeled=minimum / modeled,
                outside_loop_bytes_per_chunk=once, needed=needed, conditionals=branches,
                groups=groups(in_loop, args.chunk, args.top),
                compile_s=time.perf_counter() - start)
            rows.append([key, modeled / 1e9, minimum / 1e9, f"{minimum / modeled:.0%}",
                         once / 1e9, ", ".join(f"{lo / 1e9:.2f}-{hi / 1e9:.2f}"
                                               for lo, hi in branches) or "-"])
            print(f"[{key}] modeled {modeled / 1e9:.2f} GB/step, needed {minimum / 1e9:.2f} "
                  f"GB/step -> at most {minimum / modeled:.0%} of the roofline "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            print_groups(results[key]["groups"], "step")
    print("\n" + table(["decode", "modeled GB/step", "needed GB/step", "needed / modeled",
                        "outside the loop GB/chunk", "conditionals GB/step (cheapest-dearest)"],
                       rows) + "\n")


def section_blocks(args, device, results: dict):
    config = NemotronHConfig.preset(NINE_B, param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
    single = jax.sharding.SingleDeviceSharding(device)
    x = on(single, jax.ShapeDtypeStruct((TRAIN_BATCH, TRAIN_SEQ, config.hidden_size),
                                        jnp.bfloat16))
    rows = []
    print(f"one block, forward + backward, {TRAIN_BATCH} x {TRAIN_SEQ} tokens, no remat")
    for name, layer_type, block_config in (
            ("mamba", "mamba", config),
            ("mamba, bf16 SSD operands", "mamba", config.replace(ssd_matmul_dtype=jnp.bfloat16)),
            ("attention", "attention", config), ("mlp", "mlp", config)):
        graphdef, abstract = nnx.split(nnx.eval_shape(
            lambda c=block_config, t=layer_type: Block(c, t, rngs=nnx.Rngs(0))))
        start = time.perf_counter()
        with layers.use_in_proj_formulation("split"):
            hlo = jax.jit(jax.grad(block_loss(graphdef), argnums=(0, 1))).lower(on(single, abstract), x).compile(
            ).as_text()
        charges = TrafficModel(hlo).charges()
        modeled = sum(c.total for c in charges)
        # Forward + backward: 3x the forward's matmuls.
        flops = 3 * block_forward_flops(config, abstract, layer_type, TRAIN_BATCH, TRAIN_SEQ)
        key = f"block {name}"
        results[key] = dict(modeled_bytes=modeled, ms_at_copy_bandwidth=modeled / args.bandwidth * 1e3,
                            matmul_flops=flops, groups=groups(charges, 1, args.top),
                            compile_s=time.perf_counter() - start)
        rows.append([name, modeled / 1e9, modeled / args.bandwidth * 1e3, flops / 1e12])
        print(f"[{key}] modeled {modeled / 1e9:.2f} GB = {modeled / args.bandwidth * 1e3:.1f} ms "
              f"at {args.bandwidth / 1e12:.2f} TB/s; matmul {flops / 1e12:.2f} TFLOP "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        print_groups(results[key]["groups"], "pass")
    print("\n" + table(["block (forward + backward)", "modeled GB", "ms at copy bandwidth",
                        "matmul TFLOP"], rows) + "\n")


def print_groups(rows: list[dict], per: str):
    for g in rows:
        print(f"    {g['mb_per_step']:9.1f} MB/{per}  {g['ops']:3d} ops  {g['kind']:<36} "
              f"{g['type']:<28} {g['op']}")


SECTIONS = {"decode": section_decode, "blocks": section_blocks}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--batches", default="16,64,256")
    parser.add_argument("--updates", default="per_step,deferred")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--tensor", type=int, default=1,
                        help="decode on this many compile-only H100s, tensor parallel")
    parser.add_argument("--xla-options", default="",
                        help="decode's XLA options, e.g. xla_gpu_dot_merger_threshold_mb=0")
    parser.add_argument("--bandwidth", type=float, default=H100_COPY_BPS,
                        help="bytes/s that turn the blocks' modeled bytes into milliseconds")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}: expected some of {list(SECTIONS)}")
    device = h100_devices(1)[0]
    print(machine_line())
    print(f"target: compile-only {device.device_kind}\n")
    results = {}
    for name in sections:
        SECTIONS[name](args, device, results)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
