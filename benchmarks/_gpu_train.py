"""GPU benchmark sections on training: the update step of a 9B-width slice and its MFU, its
profile, the per-block time split, and one GRPO step (`gpu_h100.py` runs them)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from _common import block
from _gpu_common import (SMOKE, TRAIN_LAYERS, TRAIN_PATTERN, Sizes, attention_flops_per_sequence,
                         block_forward_flops, block_loss, matmul_params, model_config,
                         print_profile, random_params, timed, trace_path)
from _profile import profile_ops, summarize
from grpo_jax import grpo, optim
from grpo_jax.models import ssd
from grpo_jax.models.layers import Block
from grpo_jax.models.nemotron_h import NemotronH
from grpo_jax.sampling import Sampler, SamplerConfig
from grpo_jax.train_step import LossConfig, Learner, make_update_batch


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
        measure(name, block_loss(graphdef), (params, x_BTD),
                block_forward_flops(config, params, layer_type, b, t))
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
