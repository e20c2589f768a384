"""GRPO learning math: advantages, per-token log-probs, the clipped surrogate, KL, metrics.

Everything here is a pure `jax.numpy` function (jittable, no model code, no host state) except the
small `DynamicSamplingAccumulator` at the end, which is host-side bookkeeping.

Shape letters (see docs/design.md): P prompts (groups), G generations per prompt, B sequences
(B = P·G once a group batch is flattened), T tokens, V vocabulary, D hidden size, Q tokens per chunk.

**Token alignment convention (used by every per-token array in this module).** A per-token array
`x_BT` is aligned with the token sequence `tokens_BT` the model reads: `logprobs_BT[b, t]` is
`log p(tokens_BT[b, t] | tokens_BT[b, :t])`, computed from the logits the model emits at position
t − 1. Position 0 has no prediction, so its log-prob is defined as 0 and `mask_BT[:, 0]` must be 0
(a prompt always precedes generated tokens). Loss masks, advantages and sampler log-probs are
indexed the same way, so the loss never shifts anything: NeMo RL's `[:, 1:]` slicing of every
per-token tensor is done once, here, in `token_logprobs` / `chunked_token_logprobs`.

**Global normalisation across micro-batches.** `policy_loss` divides by a caller-supplied global
count (valid tokens, or valid sequences in sequence-mean mode) of the WHOLE optimiser batch, not by
the micro-batch's own count. Each micro-batch's loss (and gradient) is then a partial sum, and
summing the micro-batch losses/gradients gives exactly the full-batch token mean (DAPO-style),
whatever the micro-batch split. With `num_valid_tokens=None` the local count is used, which is
right only when the micro-batch is the whole batch.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grpo_jax.models.precision import einsum_f32

Array = jax.Array
ArrayLike = Any  # jax/numpy arrays, nested Python lists, scalars

# Defaults mirroring NeMo RL's ClippedPGLossConfig (reference §1/§3).
DEFAULT_RATIO_CLIP = 0.2
DEFAULT_KL_INPUT_CLAMP = 20.0
DEFAULT_KL_OUTPUT_CLAMP = 10.0
# Both are NeMo RL's literal epsilons: the advantage normaliser and the loss denominator guard.
DEFAULT_ADVANTAGE_EPSILON = 1e-6
DEFAULT_DENOMINATOR_EPSILON = 1e-8

KLType = Literal["k1", "k2", "k3"]
LossAggregation = Literal["token_mean", "sequence_mean"]


def _as_float_array(x: ArrayLike) -> Array:
    """Converts lists/numpy/jax input to a floating jax array (ints and bools become float32)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _sample_mask(values: Array, sample_mask: ArrayLike | None) -> Array:
    """Boolean validity of the same shape as `values` (all valid when None)."""
    if sample_mask is None:
        return jnp.ones(values.shape, dtype=bool)
    valid = jnp.asarray(sample_mask).astype(bool)
    if valid.shape != values.shape:
        raise ValueError(f"sample mask shape {valid.shape} != values shape {values.shape}")
    return valid


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


def compute_advantages(
    rewards_PG: ArrayLike,
    use_leave_one_out_baseline: bool = True,
    normalize_rewards: bool = True,
    epsilon: float = DEFAULT_ADVANTAGE_EPSILON,
    *,
    sample_mask_PG: ArrayLike | None = None,
) -> Array:
    """GRPO advantages per sample, exactly NeMo RL's `calculate_baseline_and_std_per_prompt`.

    Args:
      rewards_PG: rewards, P prompts (groups) × G generations; list, numpy or jax.
      use_leave_one_out_baseline: baseline of sample i from the OTHER valid samples of its group.
      normalize_rewards: divide by the (leave-one-out) std where that std is > 0.
      epsilon: added to the std in the division.
      sample_mask_PG: optional validity (bool/0-1) per sample. Invalid samples are left out of
        every other sample's statistics and get advantage 0. Default: all valid.

    Returns:
      advantages_PG, floating, same shape as `rewards_PG`.

    Formula (reference §2). For a valid sample i in a group with V valid samples, let
    n = V − 1 and sums run over valid j ≠ i (leave-one-out), or n = V and sums over all valid j:
      b_i  = Σ r_j / n                      (baseline)
      m2_i = Σ r_j² / n                     (second moment)
      σ_i  = sqrt((m2_i − b_i²) · n/(n−1)), NaN → 0   (Bessel-corrected std of those n rewards)
      A_i  = r_i − b_i;   if normalize_rewards and σ_i > 0:  A_i ← A_i / (σ_i + epsilon)
    A group with V ≤ 1 gets A = 0 (NeMo sets baseline = reward there). With n ≤ 1 the Bessel
    factor divides by zero and σ = 0 (e.g. G = 2 with leave-one-out: A = r_i − r_j, unscaled).

    Numerics: the moments are taken after subtracting one valid reward of the group (A and σ are
    shift-invariant), which removes the cancellation in m2 − b² for large rewards; and σ_i is set
    to exactly 0 when the n rewards it is computed from are all equal, which is its value in exact
    arithmetic (so uniform groups give A = 0 exactly, and k = 1 / k = G − 1 groups leave the lone
    sample unnormalised as in the reference table, independent of rounding).
    """
    rewards_PG = _as_float_array(rewards_PG)
    if rewards_PG.ndim != 2:
        raise ValueError(
            f"rewards_PG must be 2-D (prompts × generations), got shape {rewards_PG.shape}"
        )
    valid_PG = _sample_mask(rewards_PG, sample_mask_PG)
    return _advantages_core(
        rewards_PG, valid_PG, use_leave_one_out_baseline, normalize_rewards, epsilon
    )


@functools.partial(jax.jit, static_argnums=(2, 3))
def _advantages_core(
    rewards_PG: Array,
    valid_PG: Array,
    use_leave_one_out_baseline: bool,
    normalize_rewards: bool,
    epsilon: float,
) -> Array:
    """`compute_advantages` on validated arrays (compiled once per shape and switch setting)."""
    num_generations = rewards_PG.shape[1]

    # Shift by the first valid reward of each group (any member works; see Numerics above).
    first_valid_P = jnp.argmax(valid_PG, axis=1)
    shift_P = jnp.take_along_axis(rewards_PG, first_valid_P[:, None], axis=1)
    x_PG = jnp.where(valid_PG, rewards_PG - shift_P, 0.0)

    # others_PGG[p, i, j]: does sample j enter sample i's statistics?
    others_PGG = jnp.broadcast_to(valid_PG[:, None, :], valid_PG.shape + (num_generations,))
    if use_leave_one_out_baseline:
        others_PGG = others_PGG & ~jnp.eye(num_generations, dtype=bool)[None]
    n_PG = others_PGG.sum(axis=-1).astype(x_PG.dtype)
    safe_n_PG = jnp.maximum(n_PG, 1.0)
    # Elementwise sums, not a matmul: GPU/TPU matmuls may run fp32 at reduced (TF32/bf16) precision.
    xj_PGG = jnp.where(others_PGG, x_PG[:, None, :], 0.0)
    baseline_PG = xj_PGG.sum(axis=-1) / safe_n_PG
    second_moment_PG = (xj_PGG**2).sum(axis=-1) / safe_n_PG
    bessel_PG = n_PG / jnp.maximum(n_PG - 1.0, 1.0)
    variance_PG = (second_moment_PG - baseline_PG**2) * bessel_PG
    max_PG = jnp.max(jnp.where(others_PGG, x_PG[:, None, :], -jnp.inf), axis=-1)
    min_PG = jnp.min(jnp.where(others_PGG, x_PG[:, None, :], jnp.inf), axis=-1)
    has_spread_PG = (n_PG > 1.0) & (max_PG > min_PG) & (variance_PG > 0.0)
    std_PG = jnp.where(has_spread_PG, jnp.sqrt(jnp.where(has_spread_PG, variance_PG, 1.0)), 0.0)

    advantages_PG = x_PG - baseline_PG
    if normalize_rewards:
        advantages_PG = jnp.where(std_PG > 0.0, advantages_PG / (std_PG + epsilon), advantages_PG)
    group_ok_P = valid_PG.sum(axis=1) > 1
    return jnp.where(valid_PG & group_ok_P[:, None], advantages_PG, 0.0)


# --------------------------------------------------------------------------------------------
# Per-token log-probs
# --------------------------------------------------------------------------------------------


def _shift_targets(targets_BT: Array) -> Array:
    """next_BT[:, t] = targets_BT[:, t + 1]: the token the logits at position t predict (last: 0)."""
    return jnp.pad(targets_BT[:, 1:], ((0, 0), (0, 1)))


def _align_to_tokens(per_position_BT: Array) -> Array:
    """Moves values computed at the predicting position t − 1 onto token position t (t = 0 → 0)."""
    return jnp.pad(per_position_BT[:, :-1], ((0, 0), (1, 0)))


def _gather_logprob_and_entropy(
    logits_BTV: Array, next_BT: Array, temperature: float
) -> tuple[Array, Array]:
    """fp32 log softmax(logits/temperature)[next] and the entropy of that distribution, per position."""
    logits_BTV = logits_BTV.astype(jnp.float32) / temperature
    log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    picked_BT = jnp.take_along_axis(logits_BTV, next_BT[..., None].astype(jnp.int32), axis=-1)[..., 0]
    probs_BTV = jnp.exp(logits_BTV - log_z_BT[..., None])
    # where(): a −inf logit (masked vocabulary entry) has p = 0 and must add 0, not 0·(−inf).
    entropy_BT = log_z_BT - jnp.sum(jnp.where(probs_BTV > 0.0, probs_BTV * logits_BTV, 0.0), axis=-1)
    return picked_BT - log_z_BT, entropy_BT


@functools.partial(jax.jit, static_argnames=("temperature", "return_entropy"))
def token_logprobs(
    logits_BTV: Array,
    targets_BT: Array,
    *,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> Array | tuple[Array, Array]:
    """Per-token log-probs of a sequence under the logits the model produced FOR that sequence.

    Args:
      logits_BTV: model(targets_BT), any float dtype (upcast to fp32); logits at position t
        predict token t + 1.
      targets_BT: the token ids the model read (int). Not pre-shifted: the shift happens here.
      temperature: the sampler's temperature; logits are divided by it so the trainer scores the
        same distribution the sampler drew from (1.0 in the recipe).
      return_entropy: also return the entropy of each predictive distribution.

    Returns:
      logprobs_BT (fp32): logprobs_BT[:, t] = log softmax(logits_BTV[:, t − 1])[targets_BT[:, t]]
      for t ≥ 1 and 0 at t = 0 (module convention); with `return_entropy`, also entropy_BT aligned
      the same way (entropy of the distribution that produced token t; 0 at t = 0).
    """
    next_BT = _shift_targets(jnp.asarray(targets_BT))
    logprobs_BT, entropy_BT = _gather_logprob_and_entropy(logits_BTV, next_BT, temperature)
    logprobs_BT = _align_to_tokens(logprobs_BT)
    if return_entropy:
        return logprobs_BT, _align_to_tokens(entropy_BT)
    return logprobs_BT


def chunked_token_logprobs(
    hidden_BTD: Array,
    lm_head: Array | Callable[[Array], Array],
    targets_BT: Array,
    chunk: int,
    *,
    temperature: float = 1.0,
) -> tuple[Array, Array]:
    """`token_logprobs` from final hidden states without materialising (B, T, V) logits.

    The sequence is cut into ⌈T/chunk⌉ chunks scanned with `lax.scan`; each chunk's logits
    (B, chunk, V) exist only inside its step, and the step is rematerialised (`jax.checkpoint`)
    so the backward pass keeps the hidden chunk, not its logits: peak logits memory is one chunk.

    Args:
      hidden_BTD: final hidden states (after the final norm) for targets_BT.
      lm_head: either the output weight W_DV (logits = hidden @ W, fp32 accumulation) or a
        callable hidden_BQD → logits_BQV (e.g. the model's `logits` method); it is called on
        chunks of shape (B, chunk, D).
      targets_BT: the token ids the model read (int), not pre-shifted.
      chunk: tokens per chunk (Q); T is padded up to a multiple of it internally.
      temperature: see `token_logprobs`.

    Returns:
      (logprobs_BT, entropy_BT), fp32, aligned as in `token_logprobs` (0 at t = 0).
    """
    hidden_BTD = jnp.asarray(hidden_BTD)
    targets_BT = jnp.asarray(targets_BT)
    if targets_BT.shape != hidden_BTD.shape[:2]:
        raise ValueError(
            f"targets_BT shape {targets_BT.shape} != hidden_BTD's (B, T) {hidden_BTD.shape[:2]}"
        )
    logprobs_BT, entropy_BT = next_token_logprobs(
        hidden_BTD, lm_head, _shift_targets(targets_BT), chunk, temperature=temperature
    )
    return _align_to_tokens(logprobs_BT), _align_to_tokens(entropy_BT)


def next_token_logprobs(
    hidden_BKD: Array,
    lm_head: Array | Callable[[Array], Array],
    next_BK: Array,
    chunk: int,
    *,
    temperature: float = 1.0,
) -> tuple[Array, Array]:
    """log softmax(lm_head(hidden_BKD[:, k]))[next_BK[:, k]] and the entropy, K positions at a time.

    The unshifted core of `chunked_token_logprobs`: position k's hidden state predicts next_BK[:, k].
    The trainer uses it on hidden states GATHERED at the positions it trains on (the generated
    tokens), so the lm_head runs over those alone. The K axis is scanned in chunks with
    `jax.checkpoint`, so at most (B, chunk, V) logits exist at a time, forward and backward.

    Args:
      hidden_BKD: final hidden states (after the final norm).
      lm_head: the output weight W_DV (logits = hidden @ W, fp32 accumulation) or a callable
        hidden_BQD → logits_BQV (e.g. the model's `logits` method).
      next_BK: the token each position predicts (int).
      chunk: positions per chunk (Q); K is padded up to a multiple of it internally.
    Returns:
      (logprobs_BK, entropy_BK), fp32, no alignment shift.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of tokens, got {chunk}")
    hidden_BKD = jnp.asarray(hidden_BKD)
    next_BK = jnp.asarray(next_BK)
    batch, length, width = hidden_BKD.shape
    if next_BK.shape != (batch, length):
        raise ValueError(f"next_BK shape {next_BK.shape} != hidden's (B, K) {(batch, length)}")
    if callable(lm_head):
        project = lm_head
    else:
        weight_DV = jnp.asarray(lm_head)

        def project(h_BQD: Array) -> Array:
            return einsum_f32("bqd,dv->bqv", h_BQD, weight_DV)

    chunk = min(chunk, length)
    num_chunks = -(-length // chunk)
    padded = num_chunks * chunk
    hidden_CBQD = jnp.pad(hidden_BKD, ((0, 0), (0, padded - length), (0, 0)))
    hidden_CBQD = hidden_CBQD.reshape(batch, num_chunks, chunk, width).swapaxes(0, 1)
    next_CBQ = jnp.pad(next_BK, ((0, 0), (0, padded - length)))
    next_CBQ = next_CBQ.reshape(batch, num_chunks, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one_chunk(h_BQD: Array, n_BQ: Array) -> tuple[Array, Array]:
        return _gather_logprob_and_entropy(project(h_BQD), n_BQ, temperature)

    def step(carry: None, xs: tuple[Array, Array]) -> tuple[None, tuple[Array, Array]]:
        return carry, one_chunk(*xs)

    _, (logprobs_CBQ, entropy_CBQ) = jax.lax.scan(step, None, (hidden_CBQD, next_CBQ))

    def unchunk(x_CBQ: Array) -> Array:
        return x_CBQ.swapaxes(0, 1).reshape(batch, padded)[:, :length]

    return unchunk(logprobs_CBQ), unchunk(entropy_CBQ)


# --------------------------------------------------------------------------------------------
# KL and the clipped surrogate
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("kl_type", "input_clamp", "output_clamp"))
def kl_penalty(
    logprobs_BT: Array,
    reference_logprobs_BT: Array,
    kl_type: KLType = "k3",
    input_clamp: float | None = DEFAULT_KL_INPUT_CLAMP,
    output_clamp: float | None = DEFAULT_KL_OUTPUT_CLAMP,
) -> Array:
    """Per-token KL(π ‖ π_ref) estimate on tokens sampled from π (NeMo RL `calculate_kl`).

    log r = clamp(lp_ref − lp, ±input_clamp);  k1 = −log r;  k2 = (log r)²/2;
    k3 = exp(log r) − 1 − log r (unbiased, ≥ 0);  result clamped to ±output_clamp. Shape of inputs.
    """
    log_ratio_BT = reference_logprobs_BT - logprobs_BT
    if input_clamp is not None:
        log_ratio_BT = jnp.clip(log_ratio_BT, -input_clamp, input_clamp)
    if kl_type == "k1":
        kl_BT = -log_ratio_BT
    elif kl_type == "k2":
        kl_BT = 0.5 * jnp.square(log_ratio_BT)
    elif kl_type == "k3":
        kl_BT = jnp.expm1(log_ratio_BT) - log_ratio_BT
    else:
        raise ValueError(f"kl_type must be one of 'k1', 'k2', 'k3', got {kl_type!r}")
    if output_clamp is not None:
        kl_BT = jnp.clip(kl_BT, -output_clamp, output_clamp)
    return kl_BT


def _check_shapes(logprobs_BT, prev_logprobs_BT, advantages, mask_BT, reference_logprobs_BT) -> None:
    """Rejects misaligned loss inputs at trace time, naming the shapes."""
    shape = jnp.shape(logprobs_BT)
    if len(shape) != 2:
        raise ValueError(f"logprobs_BT must be (B, T), got shape {shape}")
    for name, value in (("prev_logprobs_BT", prev_logprobs_BT), ("mask_BT", mask_BT),
                        ("reference_logprobs_BT", reference_logprobs_BT)):
        if value is not None and jnp.shape(value) != shape:
            raise ValueError(f"{name} shape {jnp.shape(value)} != logprobs_BT shape {shape}")
    if jnp.shape(advantages) not in (shape[:1], shape):
        raise ValueError(
            f"advantages shape {jnp.shape(advantages)} must be (B,) = {shape[:1]} or (B, T) = {shape}"
        )


def _broadcast_advantages(advantages: Array, mask_BT: Array) -> Array:
    """A per sequence (B,) or per token (B, T) → (B, T) (one scalar for every token of a sample)."""
    advantages = jnp.asarray(advantages, dtype=jnp.float32)
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    return jnp.broadcast_to(advantages, mask_BT.shape)


@functools.partial(jax.jit, static_argnames=("loss_aggregation", "denominator_epsilon"))
def aggregate(
    values_BT: Array,
    mask_BT: Array,
    *,
    loss_aggregation: LossAggregation = "token_mean",
    num_valid_tokens: ArrayLike | None = None,
    num_valid_sequences: ArrayLike | None = None,
    denominator_epsilon: float = DEFAULT_DENOMINATOR_EPSILON,
) -> Array:
    """Reduces a per-token quantity to this micro-batch's share of the global-batch mean.

    token_mean:    Σ_{b,t} v·m / (N_tok + ε),  N_tok = valid tokens in the WHOLE global batch.
    sequence_mean: Σ_b [Σ_t v·m / Σ_t m] / (N_seq + ε),  N_seq = sequences with ≥ 1 valid token
                   in the whole global batch; a sequence without valid tokens contributes 0.
    Counts default to this call's own (correct only when it sees the whole batch). Masked entries
    are removed with `where`, so NaN/inf there cannot leak into the value or the gradient.
    """
    mask_BT = jnp.asarray(mask_BT).astype(bool)
    values_BT = jnp.where(mask_BT, values_BT, 0.0)
    if loss_aggregation == "token_mean":
        count = mask_BT.sum() if num_valid_tokens is None else num_valid_tokens
        return values_BT.sum() / (jnp.asarray(count, jnp.float32) + denominator_epsilon)
    if loss_aggregation == "sequence_mean":
        tokens_B = mask_BT.sum(axis=-1)
        per_sequence_B = values_BT.sum(axis=-1) / jnp.maximum(tokens_B, 1)
        count = (tokens_B > 0).sum() if num_valid_sequences is None else num_valid_sequences
        return per_sequence_B.sum() / (jnp.asarray(count, jnp.float32) + denominator_epsilon)
    raise ValueError(
        f"loss_aggregation must be 'token_mean' or 'sequence_mean', got {loss_aggregation!r}"
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "loss_aggregation", "ratio_clip_low", "ratio_clip_high", "ratio_clip_c", "kl_beta",
        "kl_type", "kl_input_clamp", "kl_output_clamp", "denominator_epsilon",
    ),
)
def policy_loss(
    logprobs_BT: Array,
    prev_logprobs_BT: Array,
    advantages: Array,
    mask_BT: Array,
    *,
    num_valid_tokens: ArrayLike | None = None,
    num_valid_sequences: ArrayLike | None = None,
    loss_aggregation: LossAggregation = "token_mean",
    ratio_clip_low: float = DEFAULT_RATIO_CLIP,
    ratio_clip_high: float = DEFAULT_RATIO_CLIP,
    ratio_clip_c: float | None = None,
    reference_logprobs_BT: Array | None = None,
    kl_beta: float = 0.0,
    kl_type: KLType = "k3",
    kl_input_clamp: float | None = DEFAULT_KL_INPUT_CLAMP,
    kl_output_clamp: float | None = DEFAULT_KL_OUTPUT_CLAMP,
    denominator_epsilon: float = DEFAULT_DENOMINATOR_EPSILON,
) -> tuple[Array, dict[str, Array]]:
    """NeMo RL's ClippedPGLossFn (reference §3): PPO-clip surrogate + optional KL to a reference.

    Args:
      logprobs_BT: current-policy log-probs (the differentiated input), module token alignment.
      prev_logprobs_BT: the training policy's log-probs before this update (constants; a
        stop_gradient is applied). Not the sampler's: NeMo RL recomputes them on the trainer.
      advantages: A per sequence (B,) or per token (B, T); broadcast over the sequence's tokens.
      mask_BT: 1 on trained (generated) tokens; = token mask ⊙ sample mask. 0 elsewhere, including
        padding and position 0. Masked tokens contribute exactly 0 to the value and the gradient.
      num_valid_tokens: GLOBAL Σ mask over the whole optimiser batch (all micro-batches, all
        data-parallel shards). Each micro-batch divides by it; summing micro-batch losses then
        equals the full-batch token mean. None → this call's own count.
      num_valid_sequences: the same for `sequence_mean` (sequences with ≥ 1 valid token).
      loss_aggregation: 'token_mean' (recipe `token_level_loss: true`) or 'sequence_mean'.
      ratio_clip_low / ratio_clip_high: ε_low, ε_high; ρ̄ = clip(ρ, 1 − ε_low, 1 + ε_high).
      ratio_clip_c: dual-clip constant c > 1, or None (off, as in the recipe).
      reference_logprobs_BT: frozen reference log-probs; may be None when kl_beta == 0.
      kl_beta: KL coefficient β (Python float; 0 = no KL term and no reference needed).
      kl_type, kl_input_clamp, kl_output_clamp: see `kl_penalty`.
      denominator_epsilon: NeMo's guard added to the global count.
    The loss hyper-parameters (aggregation, clips, β, KL settings) are Python constants: they are
    static under `jit` (one compilation per setting), and `kl_beta == 0` removes the KL branch.

    Per token, with ρ = exp(lp − sg(lp_prev)):
      L = max(−A·ρ, −A·ρ̄);   dual clip (A < 0): L ← min(L, −c·A)
      loss = agg(L) + β·agg(KL),  agg = `aggregate` with the global counts.
    With ρ ≈ 1 (one optimiser step per batch, as in the recipe) clipping is inactive and the
    objective is the token-mean policy gradient −Σ A·exp(lp − sg(lp_prev)) / N_tokens.

    Returns:
      (loss, aux): scalar loss, and aux = {'actor_loss', 'kl_loss'} aggregated the same way as
      the loss (so they also add up across micro-batches).
    """
    if ratio_clip_c is not None and ratio_clip_c <= 1.0:
        raise ValueError(f"ratio_clip_c (dual clip) must be > 1 or None, got {ratio_clip_c}")
    _check_shapes(logprobs_BT, prev_logprobs_BT, advantages, mask_BT, reference_logprobs_BT)
    mask_BT = jnp.asarray(mask_BT).astype(bool)
    # Zero masked inputs before exp(): a masked inf/NaN would otherwise turn the zero gradient
    # of `where` into NaN.
    logprobs_BT = jnp.where(mask_BT, logprobs_BT, 0.0)
    prev_logprobs_BT = jax.lax.stop_gradient(jnp.where(mask_BT, prev_logprobs_BT, 0.0))
    advantages_BT = jax.lax.stop_gradient(_broadcast_advantages(advantages, mask_BT))

    ratio_BT = jnp.exp(logprobs_BT - prev_logprobs_BT)
    clipped_ratio_BT = jnp.clip(ratio_BT, 1.0 - ratio_clip_low, 1.0 + ratio_clip_high)
    per_token_BT = jnp.maximum(-advantages_BT * ratio_BT, -advantages_BT * clipped_ratio_BT)
    if ratio_clip_c is not None:
        dual_BT = jnp.minimum(per_token_BT, -ratio_clip_c * advantages_BT)
        per_token_BT = jnp.where(advantages_BT < 0.0, dual_BT, per_token_BT)

    reduce_kwargs = dict(
        loss_aggregation=loss_aggregation,
        num_valid_tokens=num_valid_tokens,
        num_valid_sequences=num_valid_sequences,
        denominator_epsilon=denominator_epsilon,
    )
    actor_loss = aggregate(per_token_BT, mask_BT, **reduce_kwargs)
    if kl_beta == 0.0:
        kl_loss = jnp.zeros((), jnp.float32)
    else:
        if reference_logprobs_BT is None:
            raise ValueError(f"kl_beta = {kl_beta} needs reference_logprobs_BT, got None")
        reference_logprobs_BT = jax.lax.stop_gradient(
            jnp.where(mask_BT, reference_logprobs_BT, 0.0)
        )
        kl_BT = kl_penalty(
            logprobs_BT, reference_logprobs_BT, kl_type, kl_input_clamp, kl_output_clamp
        )
        kl_loss = aggregate(kl_BT, mask_BT, **reduce_kwargs)
    loss = actor_loss + kl_beta * kl_loss
    return loss, {"actor_loss": actor_loss, "kl_loss": kl_loss}


# --------------------------------------------------------------------------------------------
# Metrics (pure; each returns a flat dict of scalar jax arrays, keys without a namespace prefix)
# --------------------------------------------------------------------------------------------


def _masked_mean(x: Array, mask: Array) -> Array:
    mask = mask.astype(bool)
    return jnp.where(mask, x, 0.0).sum() / jnp.maximum(mask.sum(), 1)


def _masked_min(x: Array, mask: Array) -> Array:
    """Min over masked entries; 0 when nothing is masked in (keeps logs finite)."""
    mask = mask.astype(bool)
    return jnp.where(mask.any(), jnp.min(jnp.where(mask, x, jnp.inf)), 0.0)


def _masked_max(x: Array, mask: Array) -> Array:
    mask = mask.astype(bool)
    return jnp.where(mask.any(), jnp.max(jnp.where(mask, x, -jnp.inf)), 0.0)


def _masked_std(x: Array, mask: Array) -> Array:
    """Population std over masked entries."""
    mean = _masked_mean(x, mask)
    return jnp.sqrt(_masked_mean(jnp.square(x - mean), mask))


def reward_metrics(rewards_PG: ArrayLike, sample_mask_PG: ArrayLike | None = None) -> dict[str, Array]:
    """Reward level and spread, and how many groups carry no learning signal.

    rewards_PG: P groups × G generations. A group is 'uniform' when all its valid rewards are
    equal (its advantages are all 0); 'all_0' / 'all_1' are uniform groups at 0 / 1 (binary
    rewards); 'mixed' = not uniform. Percentages of groups (0–100, like NeMo's baseline_reward/pct_*).
    Keys: reward_mean, reward_std (population, over valid samples), reward_min, reward_max,
    pct_groups_all_0, pct_groups_all_1, pct_groups_uniform, pct_groups_mixed.
    """
    rewards_PG = _as_float_array(rewards_PG)
    return _reward_metrics_core(rewards_PG, _sample_mask(rewards_PG, sample_mask_PG))


@jax.jit
def _reward_metrics_core(rewards_PG: Array, valid_PG: Array) -> dict[str, Array]:
    mixed_P = _mixed_groups_core(rewards_PG, valid_PG)
    group_max_P = jnp.max(jnp.where(valid_PG, rewards_PG, -jnp.inf), axis=1)
    to_pct = 100.0 / max(rewards_PG.shape[0], 1)
    return {
        "reward_mean": _masked_mean(rewards_PG, valid_PG),
        "reward_std": _masked_std(rewards_PG, valid_PG),
        "reward_min": _masked_min(rewards_PG, valid_PG),
        "reward_max": _masked_max(rewards_PG, valid_PG),
        "pct_groups_all_0": (~mixed_P & (group_max_P == 0.0)).sum() * to_pct,
        "pct_groups_all_1": (~mixed_P & (group_max_P == 1.0)).sum() * to_pct,
        "pct_groups_uniform": (~mixed_P).sum() * to_pct,
        "pct_groups_mixed": mixed_P.sum() * to_pct,
    }


def advantage_metrics(advantages: ArrayLike, sample_mask: ArrayLike | None = None) -> dict[str, Array]:
    """Per-sample advantage statistics (any shape; mask of the same shape, default all valid).

    Keys: advantage_mean, advantage_std, advantage_min, advantage_max, advantage_sum,
    pct_zero_advantage (share of valid samples with A == 0, i.e. no gradient signal).
    """
    advantages = _as_float_array(advantages)
    return _advantage_metrics_core(advantages, _sample_mask(advantages, sample_mask))


@jax.jit
def _advantage_metrics_core(advantages: Array, valid: Array) -> dict[str, Array]:
    return {
        "advantage_mean": _masked_mean(advantages, valid),
        "advantage_std": _masked_std(advantages, valid),
        "advantage_min": _masked_min(advantages, valid),
        "advantage_max": _masked_max(advantages, valid),
        "advantage_sum": jnp.where(valid, advantages, 0.0).sum(),
        "pct_zero_advantage": 100.0 * _masked_mean((advantages == 0.0).astype(jnp.float32), valid),
    }


@functools.partial(jax.jit, static_argnames=("ratio_clip_low", "ratio_clip_high"))
def ratio_metrics(
    logprobs_BT: Array,
    prev_logprobs_BT: Array,
    advantages: Array,
    mask_BT: Array,
    *,
    ratio_clip_low: float = DEFAULT_RATIO_CLIP,
    ratio_clip_high: float = DEFAULT_RATIO_CLIP,
) -> dict[str, Array]:
    """Importance-ratio diagnostics over masked tokens, ρ = exp(lp − lp_prev).

    Keys: ratio_mean / ratio_min / ratio_max; clipped_ratio_mean (ρ̄, NeMo's probs_ratio_clamped);
    clip_fraction = share of tokens whose gradient the clip removes, i.e. (A > 0 and ρ > 1 + ε_high)
    or (A < 0 and ρ < 1 − ε_low); approx_kl = mean(ρ − 1 − log ρ) (k3 estimate of KL(π_prev ‖ π)
    with π_prev-sampled tokens, ≥ 0).
    """
    mask_BT = jnp.asarray(mask_BT).astype(bool)
    log_ratio_BT = jnp.where(mask_BT, logprobs_BT - prev_logprobs_BT, 0.0)
    ratio_BT = jnp.exp(log_ratio_BT)
    advantages_BT = _broadcast_advantages(advantages, mask_BT)
    clipped_BT = ((advantages_BT > 0.0) & (ratio_BT > 1.0 + ratio_clip_high)) | (
        (advantages_BT < 0.0) & (ratio_BT < 1.0 - ratio_clip_low)
    )
    return {
        "ratio_mean": _masked_mean(ratio_BT, mask_BT),
        "ratio_min": _masked_min(ratio_BT, mask_BT),
        "ratio_max": _masked_max(ratio_BT, mask_BT),
        "clipped_ratio_mean": _masked_mean(
            jnp.clip(ratio_BT, 1.0 - ratio_clip_low, 1.0 + ratio_clip_high), mask_BT
        ),
        "clip_fraction": _masked_mean(clipped_BT.astype(jnp.float32), mask_BT),
        "approx_kl": _masked_mean(jnp.expm1(log_ratio_BT) - log_ratio_BT, mask_BT),
    }


@jax.jit
def entropy_metrics(
    logprobs_BT: Array, mask_BT: Array, entropy_BT: Array | None = None
) -> dict[str, Array]:
    """approx_entropy = −mean(lp of the sampled tokens) (Monte-Carlo entropy estimate, on-policy);
    entropy = mean exact per-token entropy when `entropy_BT` (from the log-prob functions) is given."""
    out = {"approx_entropy": -_masked_mean(logprobs_BT, mask_BT)}
    if entropy_BT is not None:
        out["entropy"] = _masked_mean(entropy_BT, mask_BT)
    return out


@jax.jit
def reference_kl_metrics(
    logprobs_BT: Array, reference_logprobs_BT: Array | None, mask_BT: Array
) -> dict[str, Array]:
    """kl_to_reference = mean k3 KL(π ‖ π_ref) over masked tokens (clamped as in the loss);
    empty dict when there is no reference."""
    if reference_logprobs_BT is None:
        return {}
    kl_BT = kl_penalty(logprobs_BT, jnp.where(mask_BT, reference_logprobs_BT, logprobs_BT), "k3")
    return {"kl_to_reference": _masked_mean(kl_BT, mask_BT)}


@jax.jit
def logprob_error_metrics(
    generation_logprobs_BT: Array, prev_logprobs_BT: Array, mask_BT: Array
) -> dict[str, Array]:
    """Sampler-vs-trainer log-prob agreement on the same tokens and weights (masked tokens).

    Δ = lp_prev − lp_gen (trainer minus sampler).
      token_mult_prob_error = mean exp(|Δ|)                 (healthy: ≈ 1.0–1.02)
      gen_kl_error    = mean (e^Δ − 1 − Δ)                  k3 estimate of KL(π_gen ‖ π_train)
      policy_kl_error = mean e^Δ·(e^−Δ − 1 + Δ)             k3 of KL(π_train ‖ π_gen), importance
                                                            weighted since tokens come from π_gen
      max/mean/min_seq_mult_prob_error: per-sequence mean exp(|Δ|), over sequences with tokens.
    """
    mask_BT = jnp.asarray(mask_BT).astype(bool)
    delta_BT = jnp.where(mask_BT, prev_logprobs_BT - generation_logprobs_BT, 0.0)
    mult_BT = jnp.exp(jnp.abs(delta_BT))
    tokens_B = mask_BT.sum(axis=-1)
    seq_mult_B = jnp.where(mask_BT, mult_BT, 0.0).sum(axis=-1) / jnp.maximum(tokens_B, 1)
    has_tokens_B = tokens_B > 0
    return {
        "token_mult_prob_error": _masked_mean(mult_BT, mask_BT),
        "gen_kl_error": _masked_mean(jnp.expm1(delta_BT) - delta_BT, mask_BT),
        "policy_kl_error": _masked_mean(jnp.exp(delta_BT) * (jnp.expm1(-delta_BT) + delta_BT), mask_BT),
        "max_seq_mult_prob_error": _masked_max(seq_mult_B, has_tokens_B),
        "mean_seq_mult_prob_error": _masked_mean(seq_mult_B, has_tokens_B),
        "min_seq_mult_prob_error": _masked_min(seq_mult_B, has_tokens_B),
    }


@jax.jit
def token_count_metrics(mask_BT: Array, attention_mask_BT: Array | None = None) -> dict[str, Array]:
    """Token accounting. mask_BT marks trained tokens; attention_mask_BT (optional) marks all real
    (non-padding) tokens. Keys: num_valid_tokens, num_valid_sequences, mean_trained_tokens_per_sample,
    and with attention_mask_BT: total_num_tokens, mean_total_tokens_per_sample."""
    mask_BT = jnp.asarray(mask_BT).astype(bool)
    tokens_B = mask_BT.sum(axis=-1)
    out = {
        "num_valid_tokens": tokens_B.sum(),
        "num_valid_sequences": (tokens_B > 0).sum(),
        "mean_trained_tokens_per_sample": tokens_B.mean(),
    }
    if attention_mask_BT is not None:
        total_B = jnp.asarray(attention_mask_BT).astype(bool).sum(axis=-1)
        out["total_num_tokens"] = total_B.sum()
        out["mean_total_tokens_per_sample"] = total_B.mean()
    return out


# --------------------------------------------------------------------------------------------
# Dynamic sampling
# --------------------------------------------------------------------------------------------


def select_mixed_groups(rewards_PG: ArrayLike, sample_mask_PG: ArrayLike | None = None) -> Array:
    """keep_P: True for groups whose valid rewards are not all equal (σ ≠ 0, some A ≠ 0).

    Groups with fewer than 2 valid samples are never kept. Use `jnp.flatnonzero(keep_P)` (outside
    jit) for indices.
    """
    rewards_PG = _as_float_array(rewards_PG)
    return _mixed_groups_core(rewards_PG, _sample_mask(rewards_PG, sample_mask_PG))


@jax.jit
def _mixed_groups_core(rewards_PG: Array, valid_PG: Array) -> Array:
    group_max_P = jnp.max(jnp.where(valid_PG, rewards_PG, -jnp.inf), axis=1)
    group_min_P = jnp.min(jnp.where(valid_PG, rewards_PG, jnp.inf), axis=1)
    return (valid_PG.sum(axis=1) > 1) & (group_max_P > group_min_P)


@dataclasses.dataclass
class DynamicSamplingAccumulator:
    """Collects groups with a learning signal across generation batches (DAPO dynamic sampling).

    Usage:
        acc = DynamicSamplingAccumulator(target_groups=P, max_batches=10)
        while not acc.done:
            rewards_PG, groups = generate_batch()      # `groups`: any per-group payload
            acc.add(rewards_PG, groups)
        kept_groups, kept_rewards_PG = acc.take()       # ≤ target_groups groups, in arrival order
    `done` is True once `target_groups` are held or `max_batches` batches were added; after a
    spent budget the caller decides whether a short batch is acceptable (`acc.is_full`).
    """

    target_groups: int
    max_batches: int
    groups: list[Any] = dataclasses.field(default_factory=list)
    rewards: list[np.ndarray] = dataclasses.field(default_factory=list)
    num_batches: int = 0
    num_seen_groups: int = 0

    def __post_init__(self) -> None:
        if self.target_groups <= 0 or self.max_batches <= 0:
            raise ValueError(
                f"target_groups and max_batches must be positive, got {self.target_groups}, "
                f"{self.max_batches}"
            )

    def add(
        self,
        rewards_PG: ArrayLike,
        groups: Sequence[Any],
        sample_mask_PG: ArrayLike | None = None,
    ) -> np.ndarray:
        """Keeps the mixed groups of one generation batch; returns the kept indices (into P)."""
        rewards_PG = np.asarray(rewards_PG, dtype=np.float32)
        if len(groups) != rewards_PG.shape[0]:
            raise ValueError(f"{len(groups)} group payloads for {rewards_PG.shape[0]} reward rows")
        kept_P = np.flatnonzero(np.asarray(select_mixed_groups(rewards_PG, sample_mask_PG)))
        for index in kept_P:
            self.groups.append(groups[index])
            self.rewards.append(rewards_PG[index])
        self.num_batches += 1
        self.num_seen_groups += rewards_PG.shape[0]
        return kept_P

    @property
    def is_full(self) -> bool:
        return len(self.groups) >= self.target_groups

    @property
    def done(self) -> bool:
        return self.is_full or self.num_batches >= self.max_batches

    def take(self) -> tuple[list[Any], np.ndarray]:
        """Returns (groups, rewards_PG) for at most `target_groups` kept groups; clears the rest."""
        groups = self.groups[: self.target_groups]
        rewards_PG = (
            np.stack(self.rewards[: self.target_groups]) if groups else np.zeros((0, 0), np.float32)
        )
        self.groups, self.rewards = [], []
        self.num_batches = self.num_seen_groups = 0
        return groups, rewards_PG
