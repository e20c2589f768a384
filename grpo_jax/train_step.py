"""The jitted policy update: micro-batches, gradient accumulation, a guarded optimizer step.

A global batch of P × G trajectories arrives as stacked micro-batches (M, b, T). One jitted call
scans the micro-batches, sums their gradients (each micro-batch loss is already divided by the
GLOBAL valid-token count, so the sum is the full-batch token mean), clips and applies AdamW once.
A non-finite loss or gradient skips the update: parameters and optimizer state come back as they
were, and the step is counted as skipped.

The "old" log-probs of the PPO ratio are recomputed by `logprobs` (same parameters, no gradient)
before the update, as NeMo RL does; the sampler's log-probs are kept for the agreement metrics.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grpo_jax import grpo

PyTree = Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array              # int32 optimizer updates attempted (applied + skipped)
    params: PyTree               # float32 master weights (an nnx.State)
    opt_state: PyTree
    skipped_updates: jax.Array   # int32 updates skipped for a non-finite loss or gradient


@dataclasses.dataclass(frozen=True)
class LossConfig:
    ratio_clip_low: float = 0.2
    ratio_clip_high: float = 0.2
    ratio_clip_c: float | None = None
    token_level_loss: bool = True
    kl_beta: float = 0.0
    kl_type: str = "k3"
    kl_input_clamp: float = 20.0
    kl_output_clamp: float = 10.0
    logprob_chunk: int = 512          # tokens per lm_head chunk (never the full (B, T, V) logits)
    sft: bool = False                 # masked cross-entropy instead of the policy gradient

    @property
    def aggregation(self) -> str:
        return "token_mean" if self.token_level_loss else "sequence_mean"

    @classmethod
    def from_config(cls, config, *, logprob_chunk: int = 512, sft: bool = False) -> "LossConfig":
        """From the `loss` section of configs/workplace.py."""
        return cls(ratio_clip_low=float(config.ratio_clip_min), ratio_clip_high=float(config.ratio_clip_max),
                   ratio_clip_c=float(config.ratio_clip_c) or None, token_level_loss=bool(config.token_level_loss),
                   kl_beta=float(config.reference_policy_kl_penalty), kl_type=str(config.reference_policy_kl_type),
                   kl_input_clamp=float(config.kl_input_clamp_value),
                   kl_output_clamp=float(config.kl_output_clamp_value), logprob_chunk=logprob_chunk, sft=sft)


def stack_micro_batches(arrays: dict[str, np.ndarray], micro_batch_size: int) -> dict[str, np.ndarray]:
    """(B, ...) arrays → (M, b, ...) with b = micro_batch_size; B must be a multiple of b."""
    batch = next(iter(arrays.values())).shape[0]
    if batch % micro_batch_size:
        raise ValueError(f"batch of {batch} trajectories is not a multiple of micro_batch_size={micro_batch_size}")
    return {k: v.reshape((batch // micro_batch_size, micro_batch_size) + v.shape[1:]) for k, v in arrays.items()}


def _model_logprobs(graphdef, params, tokens_bT, chunk: int):
    model = nnx.merge(graphdef, params)
    hidden_bTD, _ = model.forward(tokens_bT)
    return grpo.chunked_token_logprobs(hidden_bTD, model.logits, tokens_bT, min(chunk, tokens_bT.shape[1]))


class Learner:
    """Jitted log-prob and update functions for one model architecture and optimizer."""

    def __init__(self, graphdef, optimizer: optax.GradientTransformation, loss: LossConfig,
                 *, state_shardings: TrainState | None = None, batch_sharding=None):
        self.graphdef, self.optimizer, self.loss = graphdef, optimizer, loss
        in_state = state_shardings if state_shardings is not None else None
        batch_in = batch_sharding
        self._logprobs = jax.jit(
            self._logprobs_program,
            in_shardings=None if in_state is None else (in_state.params, batch_in),
            out_shardings=None if in_state is None else (batch_in, batch_in))
        self._update = jax.jit(
            self._update_program, donate_argnums=(0,),
            in_shardings=None if in_state is None else (in_state, None),
            out_shardings=None if in_state is None else (in_state, None))

    def init_state(self, params) -> TrainState:
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), skipped_updates=jnp.zeros((), jnp.int32))

    # -- no-gradient forward --------------------------------------------------------------

    def _logprobs_program(self, params, tokens_MbT):
        def one(_, tokens_bT):
            return None, _model_logprobs(self.graphdef, params, tokens_bT, self.loss.logprob_chunk)
        _, (logprobs_MbT, entropy_MbT) = jax.lax.scan(one, None, tokens_MbT)
        return logprobs_MbT, entropy_MbT

    def logprobs(self, params, tokens_MbT) -> tuple[jax.Array, jax.Array]:
        """Per-token log-probs and entropies (M, b, T) of stacked micro-batches, no gradient."""
        return self._logprobs(params, tokens_MbT)

    # -- the update -----------------------------------------------------------------------

    def _micro_loss(self, params, micro, num_valid_tokens, num_valid_sequences):
        logprobs_bT, entropy_bT = _model_logprobs(self.graphdef, params, micro["tokens"], self.loss.logprob_chunk)
        mask_bT = micro["loss_mask"]
        if self.loss.sft:
            loss = grpo.aggregate(-logprobs_bT, mask_bT, loss_aggregation=self.loss.aggregation,
                                  num_valid_tokens=num_valid_tokens, num_valid_sequences=num_valid_sequences)
            return loss, (logprobs_bT, entropy_bT)
        loss, _ = grpo.policy_loss(
            logprobs_bT, micro["old_logprobs"], micro["advantages"], mask_bT,
            num_valid_tokens=num_valid_tokens, num_valid_sequences=num_valid_sequences,
            loss_aggregation=self.loss.aggregation, ratio_clip_low=self.loss.ratio_clip_low,
            ratio_clip_high=self.loss.ratio_clip_high, ratio_clip_c=self.loss.ratio_clip_c,
            reference_logprobs_BT=micro.get("reference_logprobs"), kl_beta=self.loss.kl_beta,
            kl_type=self.loss.kl_type, kl_input_clamp=self.loss.kl_input_clamp,
            kl_output_clamp=self.loss.kl_output_clamp)
        return loss, (logprobs_bT, entropy_bT)

    def _update_program(self, state: TrainState, batch):
        mask_MbT = batch["loss_mask"]
        num_valid_tokens = mask_MbT.sum()
        num_valid_sequences = (mask_MbT.sum(axis=-1) > 0).sum()
        grad_fn = jax.value_and_grad(self._micro_loss, has_aux=True)

        def accumulate(grads_sum, micro):
            (loss, (logprobs_bT, entropy_bT)), grads = grad_fn(
                state.params, micro, num_valid_tokens, num_valid_sequences)
            return jax.tree.map(jnp.add, grads_sum, grads), (loss, logprobs_bT, entropy_bT)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (loss_M, logprobs_MbT, entropy_MbT) = jax.lax.scan(accumulate, zeros, batch)
        loss = loss_M.sum()
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def apply(_):
            updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
            return optax.apply_updates(state.params, updates), opt_state

        def keep(_):
            return state.params, state.opt_state

        params, opt_state = jax.lax.cond(finite, apply, keep, None)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                               skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32))
        metrics = {"loss": loss, "grad_norm": grad_norm, "update_skipped": (~finite).astype(jnp.int32),
                   "num_valid_tokens": num_valid_tokens, "num_valid_sequences": num_valid_sequences}
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731 - (M, b, T) → (B, T)
        mask_BT = flat(mask_MbT)
        logprobs_BT = flat(logprobs_MbT)
        metrics.update(grpo.entropy_metrics(logprobs_BT, mask_BT, flat(entropy_MbT)))
        if not self.loss.sft:
            old_BT = flat(batch["old_logprobs"])
            metrics.update(grpo.ratio_metrics(logprobs_BT, old_BT, flat(batch["advantages"]), mask_BT,
                                              ratio_clip_low=self.loss.ratio_clip_low,
                                              ratio_clip_high=self.loss.ratio_clip_high))
            if "sampler_logprobs" in batch:
                metrics.update(grpo.logprob_error_metrics(flat(batch["sampler_logprobs"]), old_BT, mask_BT))
        return new_state, metrics

    def update(self, state: TrainState, batch: dict[str, np.ndarray]) -> tuple[TrainState, dict]:
        """One optimizer step over stacked micro-batches (see module doc); `state` is donated.

        batch: tokens (M, b, T) int32, loss_mask (M, b, T), and for GRPO advantages (M, b),
        old_logprobs (M, b, T), optionally sampler_logprobs and reference_logprobs (M, b, T).
        """
        return self._update(state, batch)
