"""GPU benchmark sections on the 9B-shaped model's sampler: decode loops against the HBM
roofline, the loop's model-only floor, decode attention formulations, prefill, and the B=64 decode
profile (`gpu_h100.py` runs them)."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from _common import block
from _gpu_common import (SMOKE, Sizes, matmul_params, attention_flops_per_sequence, model_config,
                         nbytes, print_profile, timed, trace_path)
from _profile import profile_ops, summarize
from grpo_jax.models import attention, layers
from grpo_jax.sampling import Sampler, SamplerConfig


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


def section_prefill(sizes: Sizes, results: dict, nine_b: dict):
    config, graphdef, params = nine_b["config"], nine_b["graphdef"], nine_b["params"]
    cache_len = max(sizes.prefill_lengths)
    sampler = Sampler(graphdef, SamplerConfig(prefill_chunk=sizes.prefill_piece,
                                              cache_multiple=sizes.prefill_piece))
    rng = np.random.default_rng(0)
    prompts = {n: rng.integers(3, config.vocab_size, (n,)).tolist() for n in sizes.prefill_lengths}
    # One warm-up call per length: each prefill piece attends to a bucket of the tokens it ends
    # at, so a longer prompt runs programs a shorter one did not compile.
    start = time.perf_counter()
    for prompt in prompts.values():
        block(sampler.prefill(params, [prompt], cache_len).next_logits_BV)
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
