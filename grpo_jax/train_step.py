"""The jitted policy update: micro-batches, gradient accumulation, a guarded optimizer step.

A global batch of P × G trajectories arrives as stacked micro-batches (M, b, T). One jitted call
scans the micro-batches, sums their gradients (each micro-batch loss is already divided by the
GLOBAL valid-token count, so the sum is the full-batch token mean), clips and applies AdamW once.
A non-finite loss or gradient skips the update: parameters and optimizer state come back as they
were, and the step is counted as skipped.

The "old" log-probs of the PPO ratio are recomputed by `logprobs` (same parameters, no gradient)
before the update, as NeMo RL does; the sampler's log-probs are kept for the agreement metrics.

Only the tokens that are trained on are scored: the forward runs over whole sequences, but the
lm_head (a large share of a small model's work, and (B, T, V) logits for a large one) runs over
hidden states gathered at the trained positions, K per row (`scored_positions`). Every per-token
array of an update batch is therefore (M, b, K), aligned with `positions`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grpo_jax import compile_log, grpo, xla_options

PyTree = Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array              # int32 optimizer updates attempted (applied + skipped)
    params: PyTree               # float32 master weights (an nnx.State)
    opt_state: PyTree
    skipped_updates: jax.Array   # int32 updates skipped for a non-finite loss or gradient

    def shardings(self) -> TrainState:
        """The sharding of every leaf (arrays or sharded ShapeDtypeStructs), for `Learner`."""
        return jax.tree.map(lambda x: x.sharding, self)


def init_train_state(optimizer: optax.GradientTransformation, params) -> TrainState:
    """Step 0 of training `params`; under a mesh, the optimizer state is sharded like them."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      skipped_updates=jnp.zeros((), jnp.int32))


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


def scored_positions(loss_mask_BT: np.ndarray, multiple: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """positions_BK (int32) of each row's trained tokens, in order, and valid_BK (float32).

    K is the largest count of a row, rounded up to `multiple` (a small set of compiled shapes);
    padding entries point at position 0 and are invalid. Position 0 is never trained (nothing
    predicts it), so a mask there is an error.
    """
    loss_mask_BT = np.asarray(loss_mask_BT)
    if loss_mask_BT[:, 0].any():
        raise ValueError("loss_mask_BT[:, 0] must be 0: no token predicts the first position")
    counts_B = (loss_mask_BT > 0).sum(axis=1)
    width = max(multiple, -(-int(counts_B.max(initial=0)) // multiple) * multiple)
    positions_BK = np.zeros((loss_mask_BT.shape[0], width), np.int32)
    valid_BK = np.zeros((loss_mask_BT.shape[0], width), np.float32)
    for row in range(loss_mask_BT.shape[0]):
        picked = np.flatnonzero(loss_mask_BT[row] > 0)
        positions_BK[row, :len(picked)] = picked
        valid_BK[row, :len(picked)] = 1.0
    return positions_BK, valid_BK


def make_update_batch(tokens_BT: np.ndarray, loss_mask_BT: np.ndarray, micro_batch_size: int, *,
                      advantages_B: np.ndarray | None = None, sampler_logprobs_BT: np.ndarray | None = None,
                      position_multiple: int = 64) -> dict[str, np.ndarray]:
    """Stacked micro-batches (M, b, ...) for `Learner.update` from right-padded trajectories.

    Per-token inputs are gathered at the trained positions: loss_mask (M, b, K) marks the real
    entries of positions (M, b, K); sampler_logprobs follow the same positions.
    """
    positions_BK, valid_BK = scored_positions(loss_mask_BT, position_multiple)
    arrays = {"tokens": np.asarray(tokens_BT, np.int32), "positions": positions_BK, "loss_mask": valid_BK}
    if advantages_B is not None:
        arrays["advantages"] = np.asarray(advantages_B, np.float32)
    if sampler_logprobs_BT is not None:
        arrays["sampler_logprobs"] = np.take_along_axis(np.asarray(sampler_logprobs_BT, np.float32),
                                                        positions_BK, axis=1)
    return stack_micro_batches(arrays, micro_batch_size)


def stack_micro_batches(arrays: dict[str, np.ndarray], micro_batch_size: int) -> dict[str, np.ndarray]:
    """(B, ...) arrays → (M, b, ...) with b = micro_batch_size; B must be a multiple of b."""
    batch = next(iter(arrays.values())).shape[0]
    if batch % micro_batch_size:
        raise ValueError(f"batch of {batch} trajectories is not a multiple of micro_batch_size={micro_batch_size}")
    return {k: v.reshape((batch // micro_batch_size, micro_batch_size) + v.shape[1:]) for k, v in arrays.items()}


def _shape_label(tokens_MbT, positions_MbK) -> str:
    """The shape a learner program compiles for: micro-batches, rows each, tokens, scored tokens."""
    m, b, t = tokens_MbT.shape
    return f"M={m},b={b},T={t},K={positions_MbK.shape[-1]}"


def _model_logprobs(graphdef, params, tokens_bT, positions_bK, chunk: int):
    """Log-probs and entropies (b, K) of the tokens at positions_bK, each given what precedes it."""
    model = nnx.merge(graphdef, params)
    hidden_bTD, _ = model.forward(tokens_bT)
    before_bK = jnp.maximum(positions_bK - 1, 0)
    hidden_bKD = jnp.take_along_axis(hidden_bTD, before_bK[..., None], axis=1)
    next_bK = jnp.take_along_axis(tokens_bT, positions_bK, axis=1)
    return grpo.next_token_logprobs(hidden_bKD, model.logits, next_bK, chunk)


class Learner:
    """Jitted log-prob and update functions for one model architecture and optimizer."""

    def __init__(self, graphdef, optimizer: optax.GradientTransformation, loss: LossConfig,
                 *, state_shardings: TrainState | None = None):
        """`state_shardings` (`TrainState.shardings()`): the update takes and returns the state
        with exactly these and the log-probs take the parameters with theirs; None leaves them to
        XLA's propagation (fine on one device)."""
        self.graphdef, self.optimizer, self.loss = graphdef, optimizer, loss
        self._logprobs = jax.jit(
            self._logprobs_program,
            in_shardings=None if state_shardings is None else (state_shardings.params, None, None))
        # One jitted update per set of compiler options (`xla_options.update_compiler_options`,
        # or a caller's own through `update_function`), made on first use.
        self._update_jits = {}
        self._update_shardings = dict(
            in_shardings=None if state_shardings is None else (state_shardings, None),
            out_shardings=None if state_shardings is None else (state_shardings, None))

    def init_state(self, params) -> TrainState:
        return init_train_state(self.optimizer, params)

    # -- no-gradient forward --------------------------------------------------------------

    def _logprobs_program(self, params, tokens_MbT, positions_MbK):
        def one(_, micro):
            return None, _model_logprobs(self.graphdef, params, *micro, self.loss.logprob_chunk)
        _, (logprobs_MbK, entropy_MbK) = jax.lax.scan(one, None, (tokens_MbT, positions_MbK))
        return logprobs_MbK, entropy_MbK

    def logprobs(self, params, tokens_MbT, positions_MbK) -> tuple[jax.Array, jax.Array]:
        """Log-probs and entropies (M, b, K) of the tokens at `positions`, no gradient."""
        with compile_log.CompileWatch(f"learner.logprobs[{_shape_label(tokens_MbT, positions_MbK)}]"):
            return self._logprobs(params, tokens_MbT, positions_MbK)

    # -- the update -----------------------------------------------------------------------

    def _micro_loss(self, params, micro, num_valid_tokens, num_valid_sequences):
        logprobs_bK, entropy_bK = _model_logprobs(self.graphdef, params, micro["tokens"], micro["positions"],
                                                  self.loss.logprob_chunk)
        mask_bK = micro["loss_mask"]
        if self.loss.sft:
            loss = grpo.aggregate(-logprobs_bK, mask_bK, loss_aggregation=self.loss.aggregation,
                                  num_valid_tokens=num_valid_tokens, num_valid_sequences=num_valid_sequences)
            return loss, (logprobs_bK, entropy_bK)
        loss, _ = grpo.policy_loss(
            logprobs_bK, micro["old_logprobs"], micro["advantages"], mask_bK,
            num_valid_tokens=num_valid_tokens, num_valid_sequences=num_valid_sequences,
            loss_aggregation=self.loss.aggregation, ratio_clip_low=self.loss.ratio_clip_low,
            ratio_clip_high=self.loss.ratio_clip_high, ratio_clip_c=self.loss.ratio_clip_c,
            reference_logprobs_BT=micro.get("reference_logprobs"), kl_beta=self.loss.kl_beta,
            kl_type=self.loss.kl_type, kl_input_clamp=self.loss.kl_input_clamp,
            kl_output_clamp=self.loss.kl_output_clamp)
        return loss, (logprobs_bK, entropy_bK)

    def _update_program(self, state: TrainState, batch):
        mask_MbK = batch["loss_mask"]
        num_valid_tokens = mask_MbK.sum()
        num_valid_sequences = (mask_MbK.sum(axis=-1) > 0).sum()
        grad_fn = jax.value_and_grad(self._micro_loss, has_aux=True)

        def accumulate(grads_sum, micro):
            (loss, (logprobs_bK, entropy_bK)), grads = grad_fn(
                state.params, micro, num_valid_tokens, num_valid_sequences)
            return jax.tree.map(jnp.add, grads_sum, grads), (loss, logprobs_bK, entropy_bK)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (loss_M, logprobs_MbK, entropy_MbK) = jax.lax.scan(accumulate, zeros, batch)
        loss = loss_M.sum()
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        # A select, not lax.cond: a cond's outputs are buffers of their own (XLA:GPU kept the new
        # parameters, both moments and the gradients as four parameter-sized temporaries, 16.6 GiB
        # per device for the 9B on tensor 8), where the select fuses into the AdamW arithmetic and
        # writes straight into the donated state (docs/performance.md, memory plan).
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        keep_old = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        params = jax.tree.map(keep_old, optax.apply_updates(state.params, updates), state.params)
        opt_state = jax.tree.map(keep_old, opt_state, state.opt_state)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                               skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32))
        metrics = {"loss": loss, "grad_norm": grad_norm, "update_skipped": (~finite).astype(jnp.int32),
                   "num_valid_tokens": num_valid_tokens, "num_valid_sequences": num_valid_sequences}
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731 - (M, b, K) → (B, K)
        mask_BK = flat(mask_MbK)
        logprobs_BK = flat(logprobs_MbK)
        metrics.update(grpo.entropy_metrics(logprobs_BK, mask_BK, flat(entropy_MbK)))
        if not self.loss.sft:
            old_BK = flat(batch["old_logprobs"])
            metrics.update(grpo.ratio_metrics(logprobs_BK, old_BK, flat(batch["advantages"]), mask_BK,
                                              ratio_clip_low=self.loss.ratio_clip_low,
                                              ratio_clip_high=self.loss.ratio_clip_high))
            if "sampler_logprobs" in batch:
                metrics.update(grpo.logprob_error_metrics(flat(batch["sampler_logprobs"]), old_BK, mask_BK))
        return new_state, metrics

    def update(self, state: TrainState, batch: dict[str, np.ndarray]) -> tuple[TrainState, dict]:
        """One optimizer step over stacked micro-batches (see module doc); `state` is donated.

        batch (see `make_update_batch`): tokens (M, b, T) int32, positions (M, b, K) int32 and
        loss_mask (M, b, K); for GRPO also advantages (M, b) and old_logprobs (M, b, K), optionally
        sampler_logprobs and reference_logprobs (M, b, K), all at `positions`.
        """
        with compile_log.CompileWatch(
                f"learner.update[{_shape_label(batch['tokens'], batch['positions'])}]"):
            return self.update_function()(state, batch)

    def update_function(self, compiler_options: dict[str, str] | None = None) -> jax.stages.Wrapped:
        """The jitted update (`update` calls it; `lower` it to inspect the compiled program).
        `compiler_options`: None for the ones measured fastest on this backend (`xla_options`),
        else exactly these ({} for XLA's defaults)."""
        options = compiler_options
        if options is None:
            options = xla_options.update_compiler_options(jax.default_backend())
        key = tuple(sorted(options.items())) if options else ()
        if key not in self._update_jits:
            self._update_jits[key] = jax.jit(self._update_program, donate_argnums=(0,),
                                             compiler_options=options, **self._update_shardings)
        return self._update_jits[key]
