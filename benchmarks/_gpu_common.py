"""Shared pieces of the GPU benchmark (`gpu_h100.py`): run sizes, the random 9B-shaped
parameters, FLOP and byte counts, timing and profile output. Imported by the script after it has
set the environment JAX reads at import."""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from _common import block
from grpo_jax.models.config import NemotronHConfig
from grpo_jax.models.layers import Block
from grpo_jax.models.nemotron_h import NemotronH


NINE_B = "nemotron-nano-9b-v2"
# 8 consecutive blocks of the 9B pattern (layers 9-16: 4 Mamba, 3 MLP, 1 attention) with the
# embedding and lm_head: 2.24B parameters. fp32 weights + Adam moments are 27 GB, and the update's
# gradients and scratch about as much again (CPU memory plan: ~2.5x the fp32 weights), plus one
# block's activations under remat: ~57 GB planned. 12 blocks (2.8B) plan to ~70 GB, too close to
# the ~75 GB JAX gets; try them with --train-layers 12.
TRAIN_PATTERN = "M-M-M*-M-M-M*-M-M-M-M*"  # layers 9-30; the first --train-layers are used
TRAIN_LAYERS = 8


@dataclasses.dataclass(frozen=True)
class Sizes:
    copy_elements: int            # float32 elements of the bandwidth test (read once, written once)
    matmul: int                   # n of the n x n x n bf16 matmul
    timing_repeats: int           # calls per timed batch of the ceilings
    decode_batches: tuple
    decode_cache: int             # KV buffer positions of the decode tests
    decode_context: int           # synthetic tokens already in the cache
    decode_chunk: int
    decode_steps: int             # timed decode steps (after one warm-up chunk)
    prefill_lengths: tuple
    prefill_piece: int
    train_seq: int
    train_micro_batch: int        # b
    train_micro_batches: int      # M (b x M trajectories per update)
    train_timed_steps: int
    grpo_prompts: int             # P
    grpo_generations: int         # G (P x G = b x M)
    grpo_prompt_len: int          # prompt + generated = train_seq
    model_overrides: dict         # applied to the 9B preset (smoke: tiny widths)


FULL = Sizes(
    copy_elements=1 << 30, matmul=8192, timing_repeats=10,
    decode_batches=(16, 64, 256), decode_cache=2048, decode_context=896, decode_chunk=32,
    decode_steps=96, prefill_lengths=(4096, 16384), prefill_piece=4096,
    train_seq=4096, train_micro_batch=2, train_micro_batches=8, train_timed_steps=2,
    grpo_prompts=4, grpo_generations=4, grpo_prompt_len=256, model_overrides={},
)
SMOKE = Sizes(
    copy_elements=1 << 22, matmul=256, timing_repeats=3,
    decode_batches=(4, 4, 4), decode_cache=256, decode_context=40, decode_chunk=8,
    decode_steps=16, prefill_lengths=(64, 256), prefill_piece=64,
    train_seq=128, train_micro_batch=2, train_micro_batches=2, train_timed_steps=1,
    grpo_prompts=2, grpo_generations=2, grpo_prompt_len=32,
    model_overrides=dict(vocab_size=512, hidden_size=64, layer_pattern="M*-",
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         intermediate_size=128, mamba_num_heads=8, mamba_head_dim=16,
                         ssm_state_size=16, n_groups=2, chunk_size=32),
)


def timed(fn, repeats: int = 1) -> float:
    """Seconds per call of `fn` (which must block on its results), median of `repeats`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def nbytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def model_config(sizes: Sizes, **overrides) -> NemotronHConfig:
    return NemotronHConfig.preset(NINE_B, **{**sizes.model_overrides, **overrides})


def random_params(config: NemotronHConfig, seed: int = 0):
    """(graphdef, params) of a randomly initialised NemotronH, made directly on the device in
    `config.param_dtype` by the model's own initialisers, ONE BLOCK PER COMPILED CALL.

    `create_model` initialises the whole model in one program; for the 9B in bf16 the CPU compiler
    plans 142 GB of scratch for it (every float32 draw live at once, measured with
    memory_analysis), which would not fit an 80 GB H100. Block by block, the scratch is one
    block's draws; the three block types compile once each.
    """
    model = nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(seed)))
    init_block = jax.jit(lambda key, layer_type: nnx.state(
        Block(config, layer_type, rngs=nnx.Rngs(params=key))), static_argnums=1)
    for i, layer in enumerate(model.layers):
        nnx.update(layer, block(init_block(jax.random.key(seed * 1000 + i), layer.layer_type)))
    draw = jax.jit(lambda key, shape: (config.initializer_range * jax.random.normal(
        key, shape, jnp.float32)).astype(config.param_dtype), static_argnums=1)
    model.embedding.value = block(draw(jax.random.key(seed * 1000 + 998), model.embedding.shape))
    model.lm_head.value = block(draw(jax.random.key(seed * 1000 + 999), model.lm_head.shape))
    model.norm_f.weight.value = jnp.ones(model.norm_f.weight.shape, config.param_dtype)
    graphdef, params = nnx.split(model)
    leaves = jax.tree.leaves(params)
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        raise RuntimeError("random_params left an abstract parameter")
    return graphdef, params


def matmul_params(config: NemotronHConfig) -> int:
    """Parameters that take part in matmuls per token: all but the embedding table (a gather)."""
    abstract = nnx.state(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
    return total - config.vocab_size * config.hidden_size


def block_loss(graphdef):
    """loss(params, x): the mean square of one block's output (no cache), a scalar whose gradient
    runs the block's backward."""
    def loss(params, x):
        out, _ = nnx.merge(graphdef, params)(x, None, None, None)
        return jnp.mean(out.astype(jnp.float32) ** 2)
    return loss


def block_forward_flops(config: NemotronHConfig, params, layer_type: str, batch: int,
                        seq: int) -> float:
    """Matmul FLOPs of one block's forward over batch x seq tokens: 2 N T over its projections
    (not the conv, norms or biases), plus attention's score and value products."""
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params)
            if v.ndim >= 2 and min(v.shape) > config.conv_kernel)
    flops = 2 * n * batch * seq
    if layer_type == "attention":
        flops += 4 * batch * seq * seq * config.num_attention_heads * config.head_dim
    return flops


def attention_flops_per_sequence(config: NemotronHConfig, seq: int, train: bool) -> float:
    """QK^T and PV of every attention layer over the full T x T square (the PaLM MFU convention:
    no causal halving); x3 for forward + backward."""
    layers = config.layer_types.count("attention")
    forward = 4 * seq * seq * config.num_attention_heads * config.head_dim * layers
    return forward * (3 if train else 1)


def print_profile(key: str, what: str, summary: dict, wall_ms: float):
    print(f"[{key}] {what}: {wall_ms:.2f} ms wall, {summary['device_ms']:.2f} ms of device "
          "events; by category: " + ", ".join(
              f"{name} {row['ms']:.2f} ms ({row['share']:.0%})"
              for name, row in summary["categories"].items()), flush=True)
    for row in summary["top"][:10]:
        print(f"    {row['ms']:8.3f} ms {row['share']:4.0%}  {row['calls']:6.1f} calls  "
              f"{row['category']:<24} {row['op']:<32} {row['kernel']}", flush=True)


def trace_path(key: str) -> str | None:
    out = os.environ.get("OUT")
    return os.path.join(out, f"{key}.xplane.pb") if out else None
