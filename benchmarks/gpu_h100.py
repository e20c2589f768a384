"""One-run H100 benchmark of grpo_jax: ceilings, decode, prefill, train step, one GRPO step.

    python benchmarks/gpu_h100.py                 # H100 80GB: ~6 minutes, one process
    python benchmarks/gpu_h100.py --smoke         # tiny sizes on CPU, < 2 minutes: proves the script
    OUT=/some/dir python benchmarks/gpu_h100.py   # also writes $OUT/gpu_h100.json (after every section)

The next lent GPU should time what no GPU has run yet (the rest was measured on 2026-11-27,
docs/performance.md) and profile the two programs that miss their targets, in ~6.5 minutes of
the 450 s budget:

    OUT=$OUT python benchmarks/gpu_h100.py --sections ceilings,decode_16,decode_64,\
        decode_16_deferred,decode_64_deferred,profile_decode_64,train,profile_train,train_cudnn,\
        train_blocks --train-blocks mamba,mamba_bf16_ssd

Imports only jax, flax, optax, numpy and grpo_jax modules built on those (no torch, transformers,
safetensors, orbax). Sections, in order (each prints as it finishes; a table closes the run):

1. ceilings: device copy bandwidth (bytes read + written) and the bf16 matmul rate (8192^3),
   measured here, in this run, as the denominators of everything below;
2. decode_attention: one attention layer's decode step over a bf16 9B-shaped KV buffer in three
   formulations (batched matmuls, multiply-and-reduce, block-diagonal matmuls as "auto" picks),
   whole buffer and an attend bucket: which reads the buffer closest to the copy bandwidth;
3. decode (batch 16, 64, 256): the 9B shape with random bf16 parameters made on device, fp32
   Mamba state, through the FULL sampling loop (`Sampler.decode`: T=1 sampling over the 131,072
   vocabulary, log-probs, cache writes, stop checks, one host round trip per chunk). The cache
   holds a synthetic context of `DECODE_CONTEXT` tokens (lengths set, contents zero: the cost of
   a step does not depend on the values). Reported: ms/step, tokens/s and the fraction of the HBM
   roofline = (weights read + Mamba state read and written + KV read) / measured bandwidth;
   decode_16_deferred / decode_64_deferred: the same loop with the Mamba state writes deferred
   to once per decode chunk (`SamplerConfig(ssm_decode_update="deferred")`: each step reads the
   states and writes none), same roofline denominator; decode_16_fused_in_proj (if time is
   left): the same loop with one in_proj matmul per Mamba block (`layers.in_proj_formulation`);
   decode_model_16: the floor under that loop, a scan of bare one-token forwards at batch 16;
   profile_decode_64: one chunk of the batch-64 loop under jax.profiler: device milliseconds per
   step by op category (matmul, reduce, copy / transpose, ...) and the top ops, read back with
   jax.profiler.ProfileData (benchmarks/_profile.py); the trace goes to $OUT;
4. prefill: one 4k and one 16k prompt (batch 1) through `Sampler.prefill` (4k-token pieces);
5. train: Learner.update (forward, backward, AdamW; fp32 master weights and moments, bf16
   compute, full remat) of an 8-block slice of the 9B (9B widths, real block order, with
   embedding and lm_head) at sequence 4096; MFU = (6 N T + attention) / time / measured matmul rate;
   profile_train: one more update of it under the profiler, summarised like profile_decode_64;
6. grpo: one GRPO step on the same model: rollout (cast to bf16, prefill P prompts, G copies,
   decode), log-prob recomputation (Learner.logprobs), update; synthetic rewards;
7. train_cudnn (only if time is left): the train step with cuDNN flash attention
   (`NemotronHConfig(attention_implementation="cudnn")`);
8. train_blocks (only if time is left): where the train step's time goes, block type by block
   type (forward and forward + backward of one Mamba, attention and MLP block, the lm_head with
   the token log-probs, and the SSD scan alone), with the Mamba block and the SSD scan once more
   with bfloat16 contraction operands (`NemotronHConfig.ssd_matmul_dtype`).

Time guard: `--budget-s` (default 450) is the whole run's budget. A section that would not fit
(its estimate plus what the higher-priority sections after it need) is skipped and listed; an
alarm interrupts a section that overruns its allotment at the next Python statement (not inside
an XLA compile). Results so far are printed and written to $OUT whatever happens.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


# Every section, in the order a run takes them.
SECTIONS = ("ceilings", "decode_attention", "decode_16", "decode_64", "decode_16_deferred",
            "decode_64_deferred", "decode_16_fused_in_proj", "decode_model_16",
            "profile_decode_64", "prefill", "decode_256", "train", "profile_train", "grpo",
            "train_cudnn", "train_blocks")
# Rows of the train_blocks section, by their --train-blocks names.
TRAIN_BLOCK_NAMES = ("mamba", "mamba_bf16_ssd", "attention", "mlp", "lm_head", "ssd", "ssd_bf16")


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU backend: checks the script end to end")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="whole-run budget in seconds (default 450; --smoke: 110)")
    parser.add_argument("--sections", default=None,
                        help="comma-separated subset of: " + ",".join(SECTIONS))
    parser.add_argument("--train-layers", type=int, default=None,
                        help="blocks of the train slice (default 8, at most 22)")
    parser.add_argument("--train-blocks", default=",".join(TRAIN_BLOCK_NAMES),
                        help="rows of the train_blocks section (default all of them)")
    parser.add_argument("--train-remat", default="full",
                        help="remat policy of the train slice (models.config.REMAT_POLICIES or "
                             "'none'; default full)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.train_blocks.split(",")) - set(TRAIN_BLOCK_NAMES))
    if unknown:
        parser.error(f"--train-blocks: unknown rows {unknown}; expected some of "
                     f"{list(TRAIN_BLOCK_NAMES)}")
    return args


if __name__ == "__main__":
    _ARGS = _parse_args()
    if _ARGS.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        # JAX preallocates 75% of the GPU by default; the 9B decode at batch 256 and the train
        # step need more.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.94")

sys.path.insert(0, HERE)
from _common import REPO_ROOT, block, machine_line, table  # noqa: E402,F401
from _profile import profile_ops, summarize  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from grpo_jax import compile_log, grpo, optim  # noqa: E402
from grpo_jax.models import attention, layers, ssd  # noqa: E402
from grpo_jax.models.config import NemotronHConfig  # noqa: E402
from grpo_jax.models.layers import Block  # noqa: E402
from grpo_jax.models.nemotron_h import NemotronH  # noqa: E402
from grpo_jax.sampling import Sampler, SamplerConfig  # noqa: E402
from grpo_jax.train_step import LossConfig, Learner, make_update_batch  # noqa: E402

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

# Seconds each section is expected to take on an H100 (compiles included): ~1.5x what it took on
# the H100 of 2026-11-27 (docs/measurements/h100_2026-11-27/), and whether it may be skipped to
# save the budget for later ones.
ESTIMATE_S = {"ceilings": 10, "decode_attention": 30, "decode_16": 35, "decode_64": 30,
              "decode_16_deferred": 35, "decode_64_deferred": 30, "decode_16_fused_in_proj": 35,
              "decode_model_16": 15, "prefill": 30, "decode_256": 30, "train": 80, "grpo": 40,
              "train_cudnn": 45, "train_blocks": None,  # set in main: rows asked for x per row
              "profile_decode_64": 25, "profile_train": 40}
TRAIN_BLOCK_ROW_S = 35
OPTIONAL = {"decode_16_fused_in_proj", "decode_model_16", "prefill", "decode_256",
            "train_cudnn", "train_blocks", "profile_decode_64", "profile_train"}


class SectionTimeout(Exception):
    pass


class Guard:
    """The run's time budget and per-section alarms."""

    def __init__(self, budget_s: float, scale: float):
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.scale = scale  # estimates are for the H100; the smoke run scales them down
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def fits(self, name: str, later_required: list[str]) -> bool:
        need = (ESTIMATE_S.get(name, 60) + sum(ESTIMATE_S.get(n, 60) for n in later_required))
        return self.remaining() >= need * self.scale

    @contextlib.contextmanager
    def alarm(self, seconds: float):
        """Raises SectionTimeout in the main thread after `seconds` (at a Python statement)."""
        def handler(signum, frame):
            raise SectionTimeout(f"section ran past its {seconds:.0f} s allotment")
        previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- helpers


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


def attention_flops_per_sequence(config: NemotronHConfig, seq: int, train: bool) -> float:
    """QK^T and PV of every attention layer over the full T x T square (the PaLM MFU convention:
    no causal halving); x3 for forward + backward."""
    layers = config.layer_types.count("attention")
    forward = 4 * seq * seq * config.num_attention_heads * config.head_dim * layers
    return forward * (3 if train else 1)


# ----------------------------------------------------------------------------- sections


def section_ceilings(sizes: Sizes, results: dict):
    x = jnp.zeros((sizes.copy_elements,), jnp.float32)
    add = jax.jit(lambda x, c: x + c)
    block(add(x, 1.0))

    def run_copy():
        out = None
        for i in range(sizes.timing_repeats):
            out = add(x, float(i))
        block(out)

    seconds = timed(run_copy, 3) / sizes.timing_repeats
    bandwidth = 2 * x.nbytes / seconds
    del x
    n = sizes.matmul
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda a, b: a @ b)
    block(matmul(a, b))

    def run_matmul():
        out = None
        for _ in range(sizes.timing_repeats):
            out = matmul(a, b)
        block(out)

    seconds_mm = timed(run_matmul, 3) / sizes.timing_repeats
    results["ceilings"] = dict(copy_bytes=2 * sizes.copy_elements * 4, copy_s=seconds,
                               bandwidth_Bps=bandwidth, matmul_n=n,
                               matmul_flops_per_s=2 * n ** 3 / seconds_mm)
    print(f"[ceilings] copy {bandwidth / 1e12:.3f} TB/s (read + write of "
          f"{sizes.copy_elements * 4 / 2**30:.2f} GiB), bf16 matmul {n}^3 "
          f"{2 * n ** 3 / seconds_mm / 1e12:.1f} TFLOP/s", flush=True)


def decode_bytes_per_step(config, params, cache, batch: int, attend: int) -> dict:
    """HBM bytes one decode step must move at least (the roofline's numerator)."""
    weights = nbytes(params) - (config.vocab_size - batch) * config.hidden_size * jnp.dtype(
        config.param_dtype).itemsize  # the embedding table is gathered: B rows
    mamba = nbytes(cache.mamba)
    kv_per_position = sum(
        2 * batch * c.keys.shape[2] * c.keys.shape[3] * jnp.dtype(c.keys.dtype).itemsize
        for c in cache.attention)
    return dict(weights=weights, mamba_read_write=2 * mamba, kv_read=kv_per_position * attend,
                kv_full_buffer=kv_per_position * cache.max_len)


def roofline_seconds(moved: dict, results: dict) -> float:
    """The fewest seconds a decode step can take: its bytes over the measured copy bandwidth."""
    needed = sum(v for k, v in moved.items() if k != "kv_full_buffer")
    return needed / results["ceilings"]["bandwidth_Bps"]


# Decode variants after the per-step rows: (SSM decode update, in_proj formulation) by suffix.
DECODE_VARIANTS = {"": ("per_step", "auto"), "_deferred": ("deferred", "auto"),
                   "_fused_in_proj": ("per_step", "fused")}


def decode_sampler(sizes: Sizes, nine_b: dict, ssm_update: str, in_proj: str) -> Sampler:
    """One Sampler per variant for the whole run: its compiled programs are shared. The in_proj
    formulation is read when a program is traced, so each variant's Sampler is only ever called
    under its own (`section_decode`)."""
    key = f"decode_sampler_{ssm_update}_{in_proj}"
    if key not in nine_b:
        nine_b[key] = Sampler(nine_b["graphdef"], SamplerConfig(
            decode_chunk=sizes.decode_chunk, min_attend_bucket=sizes.decode_context,
            ssm_decode_update=ssm_update))
    return nine_b[key]


def decode_state(sizes: Sizes, sampler: Sampler, params, batch: int):
    """Sampler state of `batch` rows whose caches hold the synthetic `decode_context` tokens."""
    state = sampler.init_state(params, batch, sizes.decode_cache, seed=0)
    return state.replace(cache=state.cache.replace(
        lengths_B=jnp.full((batch,), sizes.decode_context, jnp.int32)))


def section_decode(sizes: Sizes, results: dict, nine_b: dict, batch: int, key: str,
                   ssm_update: str = "per_step", in_proj: str = "auto"):
    config, params = nine_b["config"], nine_b["params"]
    sampler = decode_sampler(sizes, nine_b, ssm_update, in_proj)
    stop_ids = [config.vocab_size]  # a real stop check that never fires: every step runs
    state = decode_state(sizes, sampler, params, batch)
    with layers.use_in_proj_formulation(in_proj):
        variant = f"{ssm_update}, in_proj {layers.in_proj_formulation()}"
        start = time.perf_counter()
        state, _ = sampler.decode(params, state, sizes.decode_chunk, temperature=1.0,
                                  stop_ids=stop_ids)
        first_chunk_s = time.perf_counter() - start
        start = time.perf_counter()
        state, result = sampler.decode(params, state, sizes.decode_steps, temperature=1.0,
                                       stop_ids=stop_ids)
        seconds = time.perf_counter() - start
    longest = sizes.decode_context + sizes.decode_chunk + sizes.decode_steps
    attend = sampler.attend_bucket(longest, state.cache.max_len)
    moved = decode_bytes_per_step(config, params, state.cache, batch, attend)
    step_s = seconds / sizes.decode_steps
    roofline_s = roofline_seconds(moved, results)
    tokens = sum(result.lengths)
    results[key] = dict(
        batch=batch, ms_per_step=step_s * 1e3, tokens_per_s=tokens / seconds,
        attention_formulation=attention.decode_formulation(config.num_key_value_heads),
        ssm_decode_update=ssm_update, variant=variant,
        roofline_ms=roofline_s * 1e3, fraction_of_roofline=roofline_s / step_s,
        bytes_per_step=moved, attend_bucket=attend, cache_len=state.cache.max_len,
        first_chunk_s_incl_compile=first_chunk_s, tokens=tokens)
    print(f"[decode B={batch}, {variant}] {step_s * 1e3:.2f} ms/step, "
          f"{tokens / seconds:,.0f} tok/s, "
          f"roofline {roofline_s * 1e3:.2f} ms -> {roofline_s / step_s:.0%} "
          f"(first chunk incl. compile {first_chunk_s:.1f} s)", flush=True)


def section_decode_model_only(sizes: Sizes, results: dict, nine_b: dict, batch: int,
                              loop_key: str):
    """The floor under the sampling loop on this device: a jitted scan of one-token forwards over
    the same cache and attend bucket as `section_decode`, with no sampling, log-probs or stop
    checks (the cache donated). Full loop / this = what the loop's bookkeeping costs."""
    config, graphdef, params = nine_b["config"], nine_b["graphdef"], nine_b["params"]
    sampler = decode_sampler(sizes, nine_b, "per_step", "auto")
    cache = decode_state(sizes, sampler, params, batch).cache
    longest = sizes.decode_context + sizes.decode_chunk + sizes.decode_steps
    attend = sampler.attend_bucket(longest, cache.max_len)

    @functools.partial(jax.jit, donate_argnums=(1,))
    def model_steps(params, cache, token_B1):
        step_model = nnx.merge(graphdef, params)
        all_rows_B = jnp.ones((batch,), jnp.int32)

        def step(cache, _):
            hidden_B1D, cache = step_model.forward(token_B1, cache=cache, num_valid_B=all_rows_B,
                                                   attend_len=attend)
            # A reduction over the whole vocabulary keeps the full LM head alive.
            return cache, jnp.max(step_model.logits(hidden_B1D[:, 0]), axis=-1)
        return jax.lax.scan(step, cache, None, length=sizes.decode_chunk)

    token_B1 = jnp.full((batch, 1), 7, jnp.int32)
    start = time.perf_counter()
    cache, out = model_steps(params, cache, token_B1)
    block(out)
    first_s = time.perf_counter() - start
    chunks = max(1, sizes.decode_steps // sizes.decode_chunk)
    start = time.perf_counter()
    for _ in range(chunks):
        cache, out = model_steps(params, cache, token_B1)
    block(out)
    step_s = (time.perf_counter() - start) / (chunks * sizes.decode_chunk)
    moved = decode_bytes_per_step(config, params, cache, batch, attend)
    roofline_s = roofline_seconds(moved, results)
    full_loop = results.get(loop_key, {}).get("ms_per_step")
    results[f"decode_model_only_{batch}"] = dict(
        batch=batch, ms_per_step=step_s * 1e3, roofline_ms=roofline_s * 1e3,
        fraction_of_roofline=roofline_s / step_s, attend_bucket=attend,
        first_chunk_s_incl_compile=first_s,
        full_loop_over_model_only=None if full_loop is None else full_loop / (step_s * 1e3))
    print(f"[decode model only B={batch}] {step_s * 1e3:.2f} ms/step, roofline "
          f"{roofline_s * 1e3:.2f} ms -> {roofline_s / step_s:.0%}"
          + ("" if full_loop is None else
             f"; full loop / model only {full_loop / (step_s * 1e3):.2f}")
          + f" (first chunk incl. compile {first_s:.1f} s)", flush=True)


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


def section_profile_decode(sizes: Sizes, results: dict, nine_b: dict, batch: int, key: str,
                           loop_key: str):
    """Where a step of the full decode loop (`section_decode`'s, per-step SSM writes) spends its
    device time at `batch`: one chunk, after a warm-up chunk, under the profiler; milliseconds
    per step by op category and for the top ops (the trace is kept under $OUT)."""
    config, params = nine_b["config"], nine_b["params"]
    sampler = decode_sampler(sizes, nine_b, "per_step", "auto")
    stop_ids = [config.vocab_size]
    state = decode_state(sizes, sampler, params, batch)
    state, _ = sampler.decode(params, state, sizes.decode_chunk, temperature=1.0,
                              stop_ids=stop_ids)
    wall = {}

    def run():
        start = time.perf_counter()
        sampler.decode(params, state, sizes.decode_chunk, temperature=1.0, stop_ids=stop_ids)
        wall["s"] = time.perf_counter() - start

    summary = summarize(profile_ops(run, trace_path(key)), per=sizes.decode_chunk)
    wall_ms = wall["s"] * 1e3 / sizes.decode_chunk
    untraced = results.get(loop_key, {}).get("ms_per_step")
    results[key] = dict(summary, batch=batch, wall_ms_per_step=wall_ms,
                        untraced_ms_per_step=untraced)
    print_profile(key, f"decode B={batch}, per step (untraced: "
                  + ("not run" if untraced is None else f"{untraced:.2f} ms") + ")",
                  summary, wall_ms)


def section_profile_train(sizes: Sizes, results: dict, train: dict, key: str = "profile_train"):
    """Where the train section's update step spends its device time: one more update (same
    state, batch and compiled program) under the profiler, by op category and top ops."""
    learner, batch = train["learner"], train["batch"]
    holder = dict(state=train.pop("state_after"))

    def run():
        start = time.perf_counter()
        holder["state"], metrics = learner.update(holder["state"], batch)
        block(metrics)
        holder["s"] = time.perf_counter() - start

    summary = summarize(profile_ops(run, trace_path(key)), per=1)
    train["state_after"] = holder["state"]
    results[key] = dict(summary, wall_ms_per_step=holder["s"] * 1e3)
    print_profile(key, "one update step", summary, holder["s"] * 1e3)


def section_prefill(sizes: Sizes, results: dict, nine_b: dict):
    config, graphdef, params = nine_b["config"], nine_b["graphdef"], nine_b["params"]
    cache_len = max(sizes.prefill_lengths)
    sampler = Sampler(graphdef, SamplerConfig(prefill_chunk=sizes.prefill_piece,
                                              cache_multiple=sizes.prefill_piece))
    rng = np.random.default_rng(0)
    prompts = {n: rng.integers(3, config.vocab_size, (n,)).tolist() for n in sizes.prefill_lengths}
    shortest = prompts[min(prompts)]
    start = time.perf_counter()
    block(sampler.prefill(params, [shortest], cache_len).next_logits_BV)
    compile_s = time.perf_counter() - start
    rows = {}
    n_matmul = matmul_params(config)
    for n, prompt in prompts.items():
        seconds = timed(lambda: block(sampler.prefill(params, [prompt], cache_len).next_logits_BV),
                        2)
        flops = 2 * n_matmul * n + attention_flops_per_sequence(config, n, train=False)
        rows[n] = dict(seconds=seconds, tokens_per_s=n / seconds,
                       mfu=flops / seconds / results["ceilings"]["matmul_flops_per_s"])
        print(f"[prefill {n}] {seconds * 1e3:.0f} ms, {n / seconds:,.0f} tok/s, "
              f"MFU {rows[n]['mfu']:.0%}", flush=True)
    results["prefill"] = dict(cache_len=cache_len, piece=sizes.prefill_piece,
                              first_call_s_incl_compile=compile_s, lengths=rows)


def train_setup(sizes: Sizes, layers: int | None, remat: str = "full"):
    pattern = TRAIN_PATTERN[:layers or TRAIN_LAYERS]
    if sizes is SMOKE:
        pattern = sizes.model_overrides["layer_pattern"]
    config = model_config(sizes, layer_pattern=pattern, param_dtype=jnp.float32,
                          compute_dtype=jnp.bfloat16, remat=remat)
    graphdef, params = random_params(config, seed=1)
    optimizer = optim.make_optimizer(lr=1e-6, max_num_steps=100)
    return config, graphdef, params, optimizer


def with_attention_implementation(train: dict, implementation: str) -> dict:
    """The train section's model (same parameters) with another attention kernel: a new config
    and graph definition; the parameter state's structure does not depend on the kernel."""
    config = train["config"].replace(attention_implementation=implementation)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))
    return dict(train, config=config, graphdef=graphdef)


def synthetic_advantages(sizes: Sizes, batch: int) -> np.ndarray:
    """A synthetic reward per trajectory, normalised within each group of G (GRPO advantages)."""
    rewards = np.random.default_rng(1).random(batch).astype(np.float32)
    groups = rewards.reshape(-1, sizes.grpo_generations)
    return ((groups - groups.mean(1, keepdims=True)) /
            (groups.std(1, keepdims=True) + 1e-6)).reshape(-1).astype(np.float32)


def update_batch(sizes: Sizes, learner: Learner, params, tokens_BT, sampler_logprobs_BT=None):
    """The Learner's stacked update batch for trajectories of `grpo_prompt_len` prompt tokens and
    generated tokens after them (the trained ones), with old log-probs recomputed by `learner`.
    The train and GRPO sections use the same shapes, so they share compiled programs."""
    mask_BT = np.zeros(tokens_BT.shape, np.float32)
    mask_BT[:, sizes.grpo_prompt_len:] = 1.0
    batch = make_update_batch(tokens_BT, mask_BT, sizes.train_micro_batch,
                              advantages_B=synthetic_advantages(sizes, tokens_BT.shape[0]),
                              sampler_logprobs_BT=sampler_logprobs_BT)
    old, _ = learner.logprobs(params, batch["tokens"], batch["positions"])
    batch["old_logprobs"] = np.asarray(old)
    return batch


def section_train(sizes: Sizes, results: dict, train: dict, key: str = "train"):
    config, graphdef, optimizer = train["config"], train["graphdef"], train["optimizer"]
    # One copy of the master weights at a time (the update donates its state): the initial
    # parameters, or those a previous section left (its optimizer state is dropped first).
    params = train.pop("params") if "params" in train else train.pop("state_after").params
    learner = Learner(graphdef, optimizer, LossConfig())
    b, m, t = sizes.train_micro_batch, sizes.train_micro_batches, sizes.train_seq
    tokens = np.random.default_rng(2).integers(3, config.vocab_size, (b * m, t))
    start = time.perf_counter()
    # Sampler log-probs (here zeros) keep the batch's structure equal to the GRPO section's, so
    # the compiled update is shared.
    batch = update_batch(sizes, learner, params, tokens, np.zeros(tokens.shape, np.float32))
    logprobs_first_s = time.perf_counter() - start
    state = learner.init_state(params)
    del params
    start = time.perf_counter()
    state, metrics = learner.update(state, batch)
    block(metrics)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(sizes.train_timed_steps):
        start = time.perf_counter()
        state, metrics = learner.update(state, batch)
        block(metrics)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    n = matmul_params(config)
    tokens_per_step = b * m * t  # the forward and backward run over all T tokens of every row
    flops = 6 * n * tokens_per_step + b * m * attention_flops_per_sequence(config, t, train=True)
    mfu = flops / seconds / results["ceilings"]["matmul_flops_per_s"]
    results[key] = dict(pattern=config.layer_pattern, remat=config.remat,
                        params=n + config.vocab_size * config.hidden_size, matmul_params=n, seq=t,
                        micro_batch=b,
                        micro_batches=m, step_s=seconds, tokens_per_s=tokens_per_step / seconds,
                        mfu=mfu, first_update_s_incl_compile=first_s,
                        first_logprobs_s_incl_compile=logprobs_first_s,
                        loss=float(metrics["loss"]), update_skipped=int(metrics["update_skipped"]))
    train["learner"], train["state_after"], train["batch"] = learner, state, batch
    print(f"[{key}] {config.num_layers} layers '{config.layer_pattern}', {b}x{m}x{t} tokens: "
          f"{seconds:.2f} s/step, {tokens_per_step / seconds:,.0f} tok/s, MFU {mfu:.0%} "
          f"(first update incl. compile {first_s:.1f} s)", flush=True)


def section_train_blocks(sizes: Sizes, results: dict, wanted: str):
    """Where the train step's time goes: forward and forward + backward of ONE block of each type
    at 9B widths (bf16 parameters and compute, no remat) on the train micro-batch, of the lm_head
    + token log-probs (`grpo.next_token_logprobs`, the trainer's chunked path), and of
    `ssd.ssd_chunked` alone (one Mamba layer's SSM, float32); the Mamba block and the SSD once
    more with bf16 contraction operands (`ssd_matmul_dtype`). MFU counts matmul FLOPs (2 N T
    forward, 6 N T forward + backward, plus attention's score and value products)."""
    b, t = sizes.train_micro_batch, sizes.train_seq
    rate = results["ceilings"]["matmul_flops_per_s"]
    config = model_config(sizes, param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
    x_BTD = jax.random.normal(jax.random.key(0), (b, t, config.hidden_size), jnp.bfloat16)
    rows = {}

    def measure(name, loss_fn, args, matmul_flops_forward):
        forward = jax.jit(loss_fn)
        backward = jax.jit(jax.grad(loss_fn, argnums=tuple(range(len(args)))))
        block(forward(*args))
        block(backward(*args))
        fwd_s = timed(lambda: block(forward(*args)), 5)
        both_s = timed(lambda: block(backward(*args)), 5)
        rows[name] = dict(forward_ms=fwd_s * 1e3, forward_backward_ms=both_s * 1e3,
                          mfu_forward=matmul_flops_forward / fwd_s / rate,
                          mfu_forward_backward=3 * matmul_flops_forward / both_s / rate)
        print(f"[train blocks] {name}: forward {fwd_s * 1e3:.1f} ms (MFU "
              f"{rows[name]['mfu_forward']:.0%}), forward+backward {both_s * 1e3:.1f} ms (MFU "
              f"{rows[name]['mfu_forward_backward']:.0%})", flush=True)

    wanted = set(wanted.split(","))
    bf16_ssd = config.replace(ssd_matmul_dtype=jnp.bfloat16)
    for row, name, layer_type, block_config in (
            ("mamba", "mamba", "mamba", config),
            ("mamba_bf16_ssd", "mamba, bf16 SSD operands", "mamba", bf16_ssd),
            ("attention", "attention", "attention", config),
            ("mlp", "mlp", "mlp", config)):
        if row not in wanted:
            continue
        graphdef, params = nnx.split(Block(block_config, layer_type, rngs=nnx.Rngs(0)))
        n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params) if v.ndim >= 2
                and min(v.shape) > config.conv_kernel)  # projections (not conv, norms, biases)

        def loss(params, x, graphdef=graphdef):
            out, _ = nnx.merge(graphdef, params)(x, None, None, None)
            return jnp.mean(out.astype(jnp.float32) ** 2)

        flops = 2 * n * b * t
        if layer_type == "attention":
            flops += 4 * b * t * t * config.num_attention_heads * config.head_dim
        measure(name, loss, (params, x_BTD), flops)
        del params

    if "lm_head" in wanted:
        head_DV = (config.initializer_range * jax.random.normal(
            jax.random.key(1), (config.hidden_size, config.vocab_size), jnp.float32)).astype(
            jnp.bfloat16)
        next_BT = jax.random.randint(jax.random.key(2), (b, t), 0, config.vocab_size)

        def head_loss(head_DV, x):
            logprobs, _ = grpo.next_token_logprobs(x, head_DV, next_BT, 512)
            return -jnp.mean(logprobs)

        measure("lm_head + log-probs", head_loss, (head_DV, x_BTD),
                2 * config.hidden_size * config.vocab_size * b * t)
        del head_DV

    ssd_dtypes = [dtype for row, dtype in (("ssd", jnp.float32), ("ssd_bf16", jnp.bfloat16))
                  if row in wanted]
    if ssd_dtypes:
        g, h, p, n_state = (config.n_groups, config.mamba_heads_per_group,
                            config.mamba_head_dim, config.ssm_state_size)
        keys = jax.random.split(jax.random.key(3), 4)
        x = jax.random.normal(keys[0], (b, t, g, h, p), jnp.bfloat16)
        dt = jax.nn.softplus(jax.random.normal(keys[1], (b, t, g, h), jnp.float32) - 4)
        B = jax.random.normal(keys[2], (b, t, g, n_state), jnp.bfloat16)
        C = jax.random.normal(keys[3], (b, t, g, n_state), jnp.bfloat16)
        A = -jnp.arange(1, g * h + 1, dtype=jnp.float32).reshape(g, h)

        q = config.chunk_size  # the chunked algorithm's einsums (intra-chunk, states, read-out)
        ssd_flops = 2 * b * t * (q * g * n_state + q * g * h * p + 2 * g * h * p * n_state)
        for dtype in ssd_dtypes:
            def ssd_loss(x, dt, B, C, dtype=dtype):
                y, state = ssd.ssd_chunked(x, dt, A, B, C, config.chunk_size, matmul_dtype=dtype)
                return jnp.mean(y ** 2) + jnp.mean(state ** 2)

            label = "float32" if dtype == jnp.float32 else "bf16 operands"
            measure(f"ssd_chunked alone ({label})", ssd_loss, (x, dt, B, C), ssd_flops)
    results["train_blocks"] = dict(micro_batch=b, seq=t, rows=rows)


def section_grpo(sizes: Sizes, results: dict, train: dict):
    config, graphdef, learner = train["config"], train["graphdef"], train["learner"]
    state = train.pop("state_after")
    p, g, t = sizes.grpo_prompts, sizes.grpo_generations, sizes.train_seq
    new_tokens = t - sizes.grpo_prompt_len
    # One decode program for the whole rollout: attend to the whole (short) cache.
    sampler = Sampler(graphdef, SamplerConfig(decode_chunk=sizes.decode_chunk,
                                              min_attend_bucket=t, cache_multiple=t))
    cast = jax.jit(lambda params: jax.tree.map(lambda x: x.astype(config.compute_dtype), params))
    prompts = np.random.default_rng(3).integers(3, config.vocab_size, (p, sizes.grpo_prompt_len))
    split = {}

    def rollout(budget):
        sampler_params = cast(state.params)
        prefilled = sampler.prefill(sampler_params, prompts.tolist(), t, seed=0)
        rows = sampler.gather_rows(prefilled, np.repeat(np.arange(p), g), seed=0)
        return sampler.decode(sampler_params, rows, budget, temperature=1.0,
                              stop_ids=[config.vocab_size])

    start = time.perf_counter()
    rollout(sizes.decode_chunk)  # compiles the sampler programs (the same shapes as below)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    _, result = rollout(new_tokens)
    split["rollout"] = time.perf_counter() - start
    start = time.perf_counter()
    tokens = np.concatenate([np.repeat(prompts, g, axis=0), np.asarray(result.tokens[:p * g])], 1)
    sampler_logprobs = np.concatenate([np.zeros((p * g, sizes.grpo_prompt_len)),
                                       np.asarray(result.logprobs[:p * g])], 1)
    split["host"] = time.perf_counter() - start
    start = time.perf_counter()
    batch = update_batch(sizes, learner, state.params, tokens, sampler_logprobs)
    split["logprobs"] = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics = learner.update(state, batch)
    block(metrics)
    split["update"] = time.perf_counter() - start
    train["state_after"] = state
    total = sum(split.values())
    agreement = float((np.abs(batch["old_logprobs"] - batch["sampler_logprobs"])
                       * batch["loss_mask"]).sum() / batch["loss_mask"].sum())
    results["grpo"] = dict(prompts=p, generations=g, prompt_len=sizes.grpo_prompt_len,
                           new_tokens=new_tokens, seconds=split, total_s=total,
                           rollout_warmup_s_incl_compile=warm_s,
                           generated_tokens_per_s=p * g * new_tokens / split["rollout"],
                           mean_abs_sampler_vs_learner_logprob=agreement)
    print("[grpo] " + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in split.items())
          + f"; total {total:.2f} s; rollout {p * g * new_tokens / split['rollout']:,.0f} "
          f"generated tok/s; |sampler - learner log-prob| {agreement:.3g}", flush=True)


def section_decode_attention(sizes: Sizes, results: dict):
    """One attention layer's decode step (one query per row over a bf16 KV buffer of the 9B's
    shape) in three formulations: the batched-matmul path (`_attend_dense`, which the model used
    first), the multiply-and-reduce path (`_attend_one_query`, kept for meshes that split kv
    heads) and the block-diagonal matmul path ("auto"); over the whole buffer and over a leading
    slice (an attend bucket). The effective bandwidth is KV bytes read / time: the formulation
    closest to the copy bandwidth should be the model's decode path on this device."""
    config = model_config(sizes)
    k, d, h = config.num_key_value_heads, config.head_dim, config.num_attention_heads
    s = sizes.decode_cache
    rows = {}
    # (The smoke run checks one batch size and one slice: this section is 12 compilations.)
    for batch in sizes.decode_batches[:1 if sizes is SMOKE else 2]:
        keys = jax.random.normal(jax.random.key(0), (batch, s, k, d), jnp.bfloat16)
        values = jax.random.normal(jax.random.key(1), (batch, s, k, d), jnp.bfloat16)
        q = jax.random.normal(jax.random.key(2), (batch, 1, h, d), jnp.bfloat16)
        for attend in (s, s // 2)[:1 if sizes is SMOKE else 2]:
            pos = jnp.full((batch, 1), attend - 1, jnp.int32)
            for name, fn in (("matmul", attention._attend_dense),
                             ("reduce", attention._attend_one_query),
                             ("blockdiag", attention._attend_one_query_blockdiag)):
                run = jax.jit(lambda q, kk, vv, p, fn=fn, a=attend: fn(q, kk[:, :a], vv[:, :a], p))
                block(run(q, keys, values, pos))

                def repeat(run=run):
                    out = None
                    for _ in range(sizes.timing_repeats):
                        out = run(q, keys, values, pos)
                    block(out)

                seconds = timed(repeat, 3) / sizes.timing_repeats
                kv_bytes = 2 * batch * attend * k * d * 2
                rows[f"B={batch},S={s},attend={attend},{name}"] = dict(
                    us=seconds * 1e6, effective_Bps=kv_bytes / seconds)
        del keys, values
    results["decode_attention"] = rows
    bandwidth = results["ceilings"]["bandwidth_Bps"]
    print("[decode attention] " + "; ".join(
        f"{k}: {v['us']:.0f} us ({v['effective_Bps'] / bandwidth:.0%} of copy bandwidth)"
        for k, v in rows.items()), flush=True)


# ----------------------------------------------------------------------------- the run


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    c = results.get("ceilings")
    if c:
        rows.append(["copy bandwidth", f"{c['bandwidth_Bps'] / 1e12:.3f} TB/s", "", "ceiling"])
        rows.append([f"bf16 matmul {c['matmul_n']}^3", f"{c['matmul_flops_per_s'] / 1e12:.1f} "
                     "TFLOP/s", "", "ceiling"])
    targets = {16: ("<= 9.6 ms/step, >= 1,650 tok/s", 0.9), 64: (">= 4,000 tok/s", None)}
    for key, r in results.items():
        if key.startswith("decode_model_only"):
            rows.append([f"decode B={r['batch']} model steps only", f"{r['ms_per_step']:.2f} "
                         "ms/step", f"{r['fraction_of_roofline']:.0%} of {r['roofline_ms']:.2f} "
                         "ms roofline", "floor under the loop"])
        elif key.startswith("decode_") and isinstance(r, dict) and "ms_per_step" in r:
            target = targets.get(r["batch"], ("", None))[0]
            rows.append([f"decode B={r['batch']} (9B, full loop, {r['variant']})",
                         f"{r['ms_per_step']:.2f} ms/step, {r['tokens_per_s']:,.0f} tok/s",
                         f"{r['fraction_of_roofline']:.0%} of {r['roofline_ms']:.2f} ms roofline",
                         target])
    for key in ("profile_decode_64", "profile_train"):
        if key in results:
            r = results[key]
            per = "step" if key == "profile_train" else "decode step"
            top, row = next(iter(r["categories"].items()), ("-", dict(share=0.0)))
            rows.append([f"{key} (traced)", f"{r['device_ms']:.2f} ms of device events per "
                         f"{per}, {r['wall_ms_per_step']:.2f} ms wall",
                         f"largest: {top} {row['share']:.0%}", ""])
    if "prefill" in results:
        for n, r in results["prefill"]["lengths"].items():
            rows.append([f"prefill {n} tokens (9B, B=1)", f"{r['tokens_per_s']:,.0f} tok/s",
                         f"MFU {r['mfu']:.0%}", ""])
    for key in ("train", "train_cudnn"):
        if key in results:
            r = results[key]
            rows.append([f"{key} {len(r['pattern'])} layers, remat {r['remat']}, "
                         f"{r['micro_batch']}x{r['micro_batches']}x{r['seq']}",
                         f"{r['step_s']:.2f} s/step, "
                         f"{r['tokens_per_s']:,.0f} tok/s", f"MFU {r['mfu']:.0%}",
                         "MFU >= 60% (remat)"])
    if "grpo" in results:
        r = results["grpo"]
        rows.append(["GRPO step (rollout / logprobs / update)",
                     " / ".join(f"{r['seconds'][k]:.2f}" for k in ("rollout", "logprobs",
                                                                   "update")) + " s",
                     f"total {r['total_s']:.2f} s", ""])
    return rows


def write_json(results: dict):
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gpu_h100.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)


def main(args) -> dict:
    sizes = SMOKE if args.smoke else FULL
    budget = args.budget_s or (110.0 if args.smoke else 450.0)
    guard = Guard(budget, scale=0.12 if args.smoke else 1.0)
    wanted = list(SECTIONS) if not args.sections else [
        s for s in SECTIONS if s in args.sections.split(",")]
    ESTIMATE_S["train_blocks"] = TRAIN_BLOCK_ROW_S * len(args.train_blocks.split(","))
    compile_log.install()
    results = {"machine": machine_line(), "mode": "smoke" if args.smoke else "full",
               "budget_s": budget, "errors": {}}
    print(results["machine"], flush=True)
    print(f"budget {budget:.0f} s; sections {wanted}", flush=True)
    if not args.smoke and jax.devices()[0].platform != "gpu":
        print("WARNING: no GPU found; use --smoke on CPU", flush=True)
    names_batches = {f"decode_{b_full}": b for b_full, b in zip(FULL.decode_batches,
                                                                 sizes.decode_batches)}
    nine_b: dict = {}
    train: dict = {}

    def ensure_nine_b():
        if not nine_b:
            config = model_config(sizes, param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
            start = time.perf_counter()
            nine_b["config"] = config
            nine_b["graphdef"], nine_b["params"] = random_params(config)
            results["model_9b_init_s"] = time.perf_counter() - start
            print(f"[model] {config.num_layers} layers, {nbytes(nine_b['params']) / 1e9:.2f} GB "
                  f"of {config.param_dtype.name} parameters, made in "
                  f"{results['model_9b_init_s']:.1f} s", flush=True)

    def ensure_train():
        if not train:
            nine_b.clear()  # frees the 9B parameters before the train model needs the memory
            config, graphdef, params, optimizer = train_setup(sizes, args.train_layers, args.train_remat)
            train.update(config=config, graphdef=graphdef, params=params, optimizer=optimizer)

    for i, name in enumerate(wanted):
        later_required = [n for n in wanted[i + 1:] if n not in OPTIONAL]
        if name in OPTIONAL and not guard.fits(name, later_required):
            guard.skipped.append(name)
            print(f"[{name}] skipped: {guard.remaining():.0f} s left of the budget", flush=True)
            continue
        if name != "ceilings" and "ceilings" not in results:
            results["errors"][name] = "needs the ceilings section"
            continue
        allotment = max(guard.remaining() - sum(ESTIMATE_S[n] * guard.scale
                                                for n in later_required), 30.0)
        start = time.perf_counter()
        try:
            with guard.alarm(allotment):
                if name == "ceilings":
                    section_ceilings(sizes, results)
                elif name == "decode_attention":
                    section_decode_attention(sizes, results)
                elif name.startswith("decode_") or name == "prefill":
                    ensure_nine_b()
                    if name == "decode_model_16":
                        section_decode_model_only(sizes, results, nine_b, sizes.decode_batches[0],
                                                  "decode_16")
                    elif name == "prefill":
                        section_prefill(sizes, results, nine_b)
                    else:
                        suffix = next(v for v in sorted(DECODE_VARIANTS, key=len, reverse=True)
                                      if name.endswith(v))
                        ssm_update, in_proj = DECODE_VARIANTS[suffix]
                        section_decode(sizes, results, nine_b,
                                       names_batches[name[:len(name) - len(suffix)]], name,
                                       ssm_update=ssm_update, in_proj=in_proj)
                elif name == "profile_decode_64":
                    ensure_nine_b()
                    section_profile_decode(sizes, results, nine_b, names_batches["decode_64"],
                                           name, "decode_64")
                elif name == "train":
                    ensure_train()
                    section_train(sizes, results, train)
                elif name == "profile_train":
                    ensure_train()
                    if "learner" not in train:
                        section_train(sizes, results, train)
                    section_profile_train(sizes, results, train)
                elif name == "grpo":
                    ensure_train()
                    if "learner" not in train:
                        section_train(sizes, results, train)
                    section_grpo(sizes, results, train)
                elif name == "train_blocks":
                    nine_b.clear()
                    train.clear()
                    section_train_blocks(sizes, results, args.train_blocks)
                elif name == "train_cudnn":
                    ensure_train()
                    # cuDNN needs a GPU: the smoke run takes the same path with the XLA kernel.
                    view = with_attention_implementation(train, "xla" if args.smoke else "cudnn")
                    # The view's run takes over the master weights (its update donates them).
                    train.pop("params", None)
                    train.pop("state_after", None)
                    section_train(sizes, results, view, key="train_cudnn")
                    results["train_cudnn"]["attention_implementation"] = (
                        view["config"].attention_implementation)
                    train.update(learner=view["learner"], state_after=view["state_after"])
        except Exception as e:  # noqa: BLE001 - a failed section must not lose the others
            results["errors"][name] = f"{type(e).__name__}: {e}"
            print(f"[{name}] FAILED after {time.perf_counter() - start:.0f} s: "
                  f"{type(e).__name__}: {str(e)[:500]}", flush=True)
            if not isinstance(e, SectionTimeout):
                traceback.print_exc(limit=4)
        results.setdefault("section_s", {})[name] = time.perf_counter() - start
        results["compilations"] = compile_log.compile_count()
        results["compile_s"] = compile_log.compile_seconds()
        write_json(results)

    results["skipped"] = guard.skipped
    results["total_s"] = guard.elapsed()
    write_json(results)
    print("\n" + table(["measure", "result", "vs ceiling", "target"], summary_rows(results)))
    print(f"\n{results['compilations']} XLA compilations ({results['compile_s']:.0f} s); total "
          f"{results['total_s']:.0f} s; skipped {guard.skipped or 'none'}; errors "
          f"{list(results['errors']) or 'none'}")
    return results


if __name__ == "__main__":
    main(_ARGS)
