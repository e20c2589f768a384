"""Fast sampling on the trainer's own parameters: jitted prefill, scan-decode and ragged continuation.

The sampler never owns weights: every call takes the parameter state the trainer holds (cast to
the compute dtype once per step), so there is nothing to synchronise. Three jitted programs do all
the work, each over a donated `SamplerState` that carries the model's hybrid cache:

* `extend` appends a ragged block of tokens per row (prefill is `extend` on an empty cache;
  a tool response plus chat glue is `extend` on a live cache, without recomputing the history);
* `decode` runs `lax.scan` over `decode_chunk` steps, up to `decode_chunks_per_call` such chunks
  in one call (a `lax.while_loop` that leaves after the chunk in which every row finished); a
  Python loop calls it until every row has stopped or spent its budget, so a batch exits early
  instead of running to the maximum;
* `gather_rows` selects / repeats rows (one prefill per prompt, then G copies of its cache).

Extend and decode attend only to a power-of-two bucket of the KV buffer that covers the longest
row they write (at least `min_attend_bucket`), so their work follows the tokens held, not the
buffer size.

Sampling controls (temperature, top-p, top-k, stop ids, budgets) are per-row arrays, so changing
them never recompiles. Shapes come from a small set of buckets (batch, block length, cache length)
so a run compiles a bounded number of programs; `grpo_jax.compile_log` reports each compilation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from grpo_jax import compile_log
from grpo_jax.distributed import host_array
from grpo_jax.models.cache import constrain_cache, defer_ssm_updates, fold_ssm_updates
from grpo_jax.sharding import batch_shards, constrain
from grpo_jax.xla_options import sampler_compiler_options

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


SSM_DECODE_UPDATES = ("per_step", "deferred")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Static sampler settings: everything here is part of a compiled program's shape."""

    decode_chunk: int = 16          # K decode steps between checks that every row has finished
    # Chunks one jitted decode call may run; it returns after the chunk in which every row
    # finished, or after this many. Each return is a round trip through the host (outputs read,
    # the next call dispatched) while the devices wait: on the 2-core CPU box, a chunk boundary
    # through the host cost ~14 ms against ~3 ms per decode step (docs/performance.md).
    decode_chunks_per_call: int = 8
    batch_multiple: int = 1         # batch buckets are multiples of this (the data-parallel size)
    min_block_bucket: int = 16      # smallest length bucket of an extend block
    prefill_chunk: int = 2048       # longer blocks are appended in pieces of this many tokens
    cache_multiple: int = 128       # cache lengths are rounded up to a multiple of this
    max_stop_ids: int = 8           # stop-id slots per row (more are rounded up to a multiple)
    # Decode and extend attend to the first `bucket` KV positions, bucket = the next power of two
    # >= the longest row they write (for decode: live row + decode_chunk), at least this, at most
    # the cache length. Each bucket is one program per shape (logged); at 16 KiB of bf16 KV per
    # token (9B), 1024 positions of a batch of 16 are ~1% of the weight bytes a decode step
    # reads, so smaller buckets would only add programs.
    min_attend_bucket: int = 1024
    # How a decode chunk updates the Mamba states: "per_step" reads and writes every state at
    # every step; "deferred" only reads them during the chunk and writes the chunk's updates once
    # at its end (`cache.defer_ssm_updates`): per step one read of each state plus decode_chunk
    # small slots, instead of a read and a write. Same recurrence, sums in another order (equal
    # within float32 rounding). Measured on CPU: no gain (docs/performance.md); on a GPU, where
    # the 9B's states are a fifth to a half of a decode step's bytes, not measured yet.
    ssm_decode_update: str = "per_step"

    def __post_init__(self):
        for name in ("decode_chunk", "decode_chunks_per_call", "batch_multiple", "min_block_bucket",
                     "prefill_chunk", "cache_multiple", "max_stop_ids", "min_attend_bucket"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SamplerConfig.{name} must be a positive int, got {value!r}")
        if self.ssm_decode_update not in SSM_DECODE_UPDATES:
            raise ValueError(f"SamplerConfig.ssm_decode_update={self.ssm_decode_update!r}: "
                             f"expected one of {SSM_DECODE_UPDATES}")
        if self.prefill_chunk < self.min_block_bucket:
            raise ValueError(
                f"SamplerConfig.prefill_chunk ({self.prefill_chunk}) must be >= min_block_bucket "
                f"({self.min_block_bucket})")


@flax.struct.dataclass
class SamplerState:
    """Everything the device holds for a batch of live sequences."""

    cache: object                 # the model's Cache pytree (batch on axis 0 of every leaf)
    next_logits_BV: jax.Array     # float32 logits of each row's next token
    row_keys_B: jax.Array         # one typed PRNG key per row, folded with num_sampled_B per draw
    num_sampled_B: jax.Array      # int32 tokens sampled so far per row

    @property
    def batch_size(self) -> int:
        return self.next_logits_BV.shape[0]

    @property
    def lengths_B(self) -> jax.Array:
        return self.cache.lengths_B


def _constrain_state(state: SamplerState) -> SamplerState:
    """Every program's output state pinned to its logical sharding, rows over the data axes (see
    `constrain_cache`), so the next program splits its rows over the devices too."""
    return SamplerState(cache=constrain_cache(state.cache),
                        next_logits_BV=constrain(state.next_logits_BV, ("batch", "vocab")),
                        row_keys_B=constrain(state.row_keys_B, ("batch",)),
                        num_sampled_B=constrain(state.num_sampled_B, ("batch",)))


@dataclasses.dataclass
class DecodeResult:
    """Per row: the new tokens (stop token included), their log-probs at temperature 1, why it ended."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    finish_reasons: list[str | None]   # None for rows that were not decoding
    # Decode steps the device ran for the batch (its rows step together): at least the longest
    # row's new tokens, at most a chunk more per call.
    num_steps: int = 0

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.tokens]


# ----------------------------------------------------------------------------- sampling math


def sample_tokens(logits_BV, uniform_B, temperature_B, top_p_B, top_k_B, *, all_greedy=None,
                  needs_filter=None):
    """Draws one token per row from softmax(logits / T) restricted to the top-k / top-p set,
    given one uniform number in [0, 1) per row (`draw_uniforms`).

    `all_greedy` (every temperature is 0) and `needs_filter` (some row has top-p < 1 or
    top-k > 0) are computed from the controls when not given; the decode program passes them in
    from the host, so a batch sharded over devices needs no all-reduce to know them.

    temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off. Filtering sorts the
    vocabulary, which only runs when some row asks for it, and a batch of greedy rows skips the
    draw's arithmetic (`lax.cond`s on device flags, so the choice never recompiles; its uniforms
    were drawn per chunk already). A draw is one uniform
    number per row pushed through the inverse CDF (`inverse_cdf`), in the sorted space when
    filtering, so a token outside the kept set can never be drawn. (Gumbel-max needs a random
    number and two logarithms per vocabulary entry: 1.4 ms per step at 16 x 4,096 on the CPU box,
    against 0.2 ms for this, in a scan of the sampling alone; the decode step is ~6-10 ms.)
    """
    logits_BV = logits_BV.astype(jnp.float32)
    greedy_B = temperature_B <= 0.0
    safe_temperature_B = jnp.where(greedy_B, 1.0, temperature_B)
    scaled_BV = logits_BV / safe_temperature_B[:, None]

    def unfiltered():
        weights_BV = jnp.exp(scaled_BV - jnp.max(scaled_BV, axis=-1, keepdims=True))
        return inverse_cdf(weights_BV, uniform_B)

    def filtered():
        order_BV = jnp.argsort(-scaled_BV, axis=-1)
        sorted_BV = jnp.take_along_axis(scaled_BV, order_BV, axis=-1)
        probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
        mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
        rank_V = jnp.arange(logits_BV.shape[-1], dtype=jnp.int32)
        keep_BV = mass_before_BV < top_p_B[:, None]
        keep_BV &= (top_k_B[:, None] <= 0) | (rank_V[None, :] < top_k_B[:, None])
        keep_BV = keep_BV.at[:, 0].set(True)     # the most likely token always survives
        choice_B = inverse_cdf(jnp.where(keep_BV, probs_BV, 0.0), uniform_B)
        return jnp.take_along_axis(order_BV, choice_B[:, None], axis=-1)[:, 0].astype(jnp.int32)

    if all_greedy is None:
        all_greedy = jnp.all(greedy_B)
    if needs_filter is None:
        needs_filter = jnp.any((top_p_B < 1.0) | (top_k_B > 0))

    def sampled():
        return jax.lax.cond(needs_filter, filtered, unfiltered)

    greedy_tokens_B = argmax_last(logits_BV)
    sampled_B = jax.lax.cond(all_greedy, lambda: greedy_tokens_B, sampled)
    return jnp.where(greedy_B, greedy_tokens_B, sampled_B)


def inverse_cdf(weights_BV, uniform_B):
    """Per row, the index i with W[i-1] <= u * W[V-1] < W[i], W the running sum of the weights
    (>= 0, not necessarily normalised) and u in [0, 1): a draw from weights / sum(weights).

    Two levels, so no running sum over the whole vocabulary is needed: the sums of blocks of
    about sqrt(V) entries pick a block, the running sum inside that block picks the entry. A
    weight of 0 is never drawn, whatever the rounding: such a pick (only possible at the edges of
    float32 rounding) falls back to the row's largest weight.
    """
    b, vocab = weights_BV.shape
    block = _next_power_of_two(math.isqrt(vocab - 1) + 1)
    num_blocks = -(-vocab // block)
    padded_BV = jnp.pad(weights_BV, [(0, 0), (0, num_blocks * block - vocab)])
    weights_BNK = padded_BV.reshape(b, num_blocks, block)
    block_sums_BN = jnp.sum(weights_BNK, axis=-1)
    running_BN = jnp.cumsum(block_sums_BN, axis=-1)
    target_B = uniform_B * running_BN[:, -1]
    # The first block whose running sum passes the target (the last one if rounding lets the
    # target reach the total).
    block_B = jnp.minimum(jnp.sum(running_BN <= target_B[:, None], axis=-1), num_blocks - 1)
    before_B = jnp.where(block_B > 0, jnp.take_along_axis(
        running_BN, jnp.maximum(block_B - 1, 0)[:, None], axis=-1)[:, 0], 0.0)
    inner_BK = jnp.take_along_axis(weights_BNK, block_B[:, None, None], axis=1)[:, 0]
    inner_running_BK = jnp.cumsum(inner_BK, axis=-1)
    offset_B = jnp.minimum(
        jnp.sum(inner_running_BK <= (target_B - before_B)[:, None], axis=-1), block - 1)
    index_B = (block_B * block + offset_B).astype(jnp.int32)
    picked_B = jnp.take_along_axis(padded_BV, index_B[:, None], axis=-1)[:, 0]
    return jnp.where(picked_B > 0, index_B, argmax_last(weights_BV))


def argmax_last(x_BV):
    """jnp.argmax over the last axis (the first index of the maximum, or of the first NaN if there
    is one), as int32, computed as plain reductions: the maximum, then the first index holding it.

    XLA:CPU lowers argmax to a reduction over (value, index) pairs that it does not vectorise:
    146 us per (16, 4,096) argmax on the CPU benchmark box, against 8 us for this form, and a
    decode step takes two of them in ~2 ms (docs/performance.md).
    """
    vocab = x_BV.shape[-1]
    max_B1 = jnp.max(x_BV, axis=-1, keepdims=True)
    index_BV = jax.lax.broadcasted_iota(jnp.int32, x_BV.shape, x_BV.ndim - 1)
    # A NaN entry gets a negative key, so the first NaN wins whatever max made of it (XLA:CPU's
    # vectorised max may return inf from (inf, NaN)); other entries: their index if they hold the
    # maximum, else past the end.
    key_BV = jnp.where(jnp.isnan(x_BV), index_BV - vocab,
                       jnp.where(x_BV == max_B1, index_BV, vocab))
    first_B = jnp.min(key_BV, axis=-1)
    return jnp.where(first_B < 0, first_B + vocab, first_B)


def draw_uniforms(row_keys_B, num_sampled_B, num_steps: int):
    """uniform_KB[k, b]: the uniform of row b's draw number num_sampled_B[b] + k, from
    fold_in(row key, draw number), so a row's draws do not depend on how decoding is chunked.

    One call per decode chunk rather than one per step: the threefry loops of a per-step draw
    were ~0.15 ms of a ~5 ms CPU decode step (batch 16)."""
    def row_draws(key, first):
        return jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(key, first + k), (),
                                                     jnp.float32))(jnp.arange(num_steps))
    return jax.vmap(row_draws, out_axes=1)(row_keys_B, num_sampled_B)


def token_logprobs(logits_BV, token_B):
    """log softmax(logits)[token] per row, as logits[token] - logsumexp(logits): two reductions
    over the vocabulary instead of a (B, V) log-softmax array that is then indexed."""
    logits_BV = logits_BV.astype(jnp.float32)
    picked_B = jnp.take_along_axis(logits_BV, token_B[:, None], axis=-1)[:, 0]
    return picked_B - jax.nn.logsumexp(logits_BV, axis=-1)


def _row_keys(seed, row_ids_B):
    base = jax.random.key(seed)
    return jax.vmap(lambda row: jax.random.fold_in(base, row))(row_ids_B)


# ----------------------------------------------------------------------------- jitted programs


def _extend_program(graphdef, attend_len, params, state: SamplerState, tokens_BT, num_valid_B):
    model = nnx.merge(graphdef, params)
    hidden_BTD, cache = model.forward(tokens_BT, cache=state.cache, num_valid_B=num_valid_B,
                                      attend_len=attend_len)
    last_B = jnp.maximum(num_valid_B - 1, 0)
    hidden_BD = jnp.take_along_axis(hidden_BTD, last_B[:, None, None], axis=1)[:, 0]
    logits_BV = model.logits(hidden_BD).astype(jnp.float32)
    next_logits_BV = jnp.where((num_valid_B > 0)[:, None], logits_BV, state.next_logits_BV)
    return _constrain_state(state.replace(cache=cache, next_logits_BV=next_logits_BV))


def _decode_program(num_steps, num_chunks, ssm_update, graphdef, attend_len, params,
                    state: SamplerState, controls, done_B, num_new_B, chunk_limit):
    """Up to min(num_chunks, chunk_limit) chunks of `num_steps` steps; returns after the chunk in
    which every row finished, with the number of chunks run. Outputs are (num_chunks * num_steps,
    B); rows are inactive in the steps that did not run."""
    model = nnx.merge(graphdef, params)
    temperature_B, top_p_B, top_k_B, stop_ids_BS, budget_B, all_greedy, needs_filter = controls

    def step(carry, uniform_B):
        state, done_B, num_new_B = carry
        token_B = sample_tokens(state.next_logits_BV, uniform_B, temperature_B, top_p_B, top_k_B,
                                all_greedy=all_greedy, needs_filter=needs_filter)
        logprob_B = token_logprobs(state.next_logits_BV, token_B)
        active_B = ~done_B
        num_new_B = num_new_B + active_B
        stopped_B = jnp.any(token_B[:, None] == stop_ids_BS, axis=-1)
        finished_B = active_B & (stopped_B | (num_new_B >= budget_B))
        # Every emitted token (the stop token too) enters the cache, so a later `extend` continues
        # right after it; rows that were already done write nothing.
        hidden_BTD, cache = model.forward(
            token_B[:, None], cache=state.cache, num_valid_B=active_B.astype(jnp.int32),
            attend_len=attend_len)
        logits_BV = model.logits(hidden_BTD[:, 0]).astype(jnp.float32)
        state = state.replace(
            cache=cache,
            next_logits_BV=jnp.where(active_B[:, None], logits_BV, state.next_logits_BV),
            num_sampled_B=state.num_sampled_B + active_B.astype(jnp.int32))
        return (state, done_B | finished_B, num_new_B), (token_B, logprob_B, active_B, stopped_B)

    def chunk(state, done_B, num_new_B):
        if ssm_update == "deferred":
            state = state.replace(cache=defer_ssm_updates(state.cache, num_steps))
        # A row that is still active at step k has sampled num_sampled_B + k tokens (it sampled at
        # every earlier step of the chunk); rows that are done discard their draws.
        uniform_KB = draw_uniforms(state.row_keys_B, state.num_sampled_B, num_steps)
        (state, done_B, num_new_B), outputs = jax.lax.scan(
            step, (state, done_B, num_new_B), uniform_KB)
        if ssm_update == "deferred":
            state = state.replace(cache=fold_ssm_updates(state.cache))
        return _constrain_state(state), done_B, num_new_B, outputs

    if num_chunks == 1:
        return chunk(state, done_B, num_new_B) + (jnp.int32(1),)

    batch = done_B.shape[0]
    outputs = tuple(constrain(jnp.zeros((num_chunks * num_steps, batch), dtype), (None, "batch"))
                    for dtype in (jnp.int32, jnp.float32, jnp.bool_, jnp.bool_))

    def more(carry):
        index, _, done_B, _, _ = carry
        return (index < jnp.minimum(num_chunks, chunk_limit)) & ~jnp.all(done_B)

    def next_chunk(carry):
        index, state, done_B, num_new_B, outputs = carry
        state, done_B, num_new_B, chunk_outputs = chunk(state, done_B, num_new_B)
        outputs = tuple(jax.lax.dynamic_update_slice_in_dim(whole, part, index * num_steps, axis=0)
                        for whole, part in zip(outputs, chunk_outputs))
        return index + 1, state, done_B, num_new_B, outputs

    chunks_run, state, done_B, num_new_B, outputs = jax.lax.while_loop(
        more, next_chunk, (jnp.int32(0), state, done_B, num_new_B, outputs))
    return state, done_B, num_new_B, outputs, chunks_run


def _gather_program(state: SamplerState, index_B, row_ids_B, seed):
    gathered = jax.tree.map(lambda leaf: leaf[index_B], state)
    return _constrain_state(gathered.replace(row_keys_B=_row_keys(seed, row_ids_B)))


# ----------------------------------------------------------------------------- the sampler

def _next_power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def _per_row(value, batch: int, name: str, dtype) -> np.ndarray:
    """A scalar, or one value per row; a shorter list covers the first rows (the rest are padding
    rows of the batch bucket, which get its last value)."""
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full((batch,), array, dtype=dtype)
    if array.ndim != 1 or not 0 < array.shape[0] <= batch:
        raise ValueError(f"{name} must be a scalar or have one value per row (at most {batch}), "
                         f"got shape {array.shape}")
    return np.concatenate([array, np.full((batch - array.shape[0],), array[-1], dtype)])


def _token_ids(block, row: int, vocab: int) -> list[int]:
    """A row's block as a list of ints in [0, vocab), checked on the host (a token id out of range
    would be silently clamped or read as NaN inside the jitted embedding lookup)."""
    if block is None:
        return []
    ids = np.asarray(block)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"row {row}: expected a flat sequence of int token ids, got "
                         f"{str(block)[:80]} (dtype {ids.dtype}, shape {ids.shape})")
    outside = ids[(ids < 0) | (ids >= vocab)]
    if outside.size:
        raise ValueError(f"row {row}: token id {int(outside[0])} is outside the vocabulary "
                         f"[0, {vocab})")
    return ids.tolist()


def _seed(seed) -> np.uint32:
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r}: expected an int in [0, 2**32)")
    return np.uint32(seed)   # a numpy scalar: under a mesh an eager jnp op took ~9 ms


def _row_indices(rows, batch: int, name: str) -> np.ndarray:
    """Row numbers of a state of `batch` rows, checked (numpy would wrap negatives, and a jitted
    gather clamps out-of-range indices)."""
    index = np.asarray(list(rows))
    if index.size and (index.ndim != 1 or not np.issubdtype(index.dtype, np.integer)
                       or index.min() < 0 or index.max() >= batch):
        raise ValueError(f"{name}={index.tolist()}: expected row numbers in [0, {batch})")
    return index.astype(np.int32)


def _check_controls(*, budget, temperature, top_p, top_k):
    """Per-row sampling controls, before anything runs: each error names the values."""
    for name, values, valid, expected in (
            ("max_new_tokens", budget, budget >= 0, ">= 0"),
            ("temperature", temperature, np.isfinite(temperature) & (temperature >= 0),
             "finite and >= 0 (0 is greedy)"),
            ("top_p", top_p, (top_p > 0) & (top_p <= 1), "in (0, 1]"),
            ("top_k", top_k, top_k >= 0, ">= 0 (0 keeps every token)")):
        if not np.all(valid):
            raise ValueError(f"{name} must be {expected}, got {values.tolist()}")


class Sampler:
    """Drives prefill / decode / extend over a batch of rows for one model architecture.

    `graphdef` is the NNX graph definition of the model (`nnx.split(model)[0]`); every method takes
    the parameter state explicitly, so the trainer's current weights are used with no copy.
    """

    def __init__(self, graphdef, config: SamplerConfig = SamplerConfig()):
        self.graphdef = graphdef
        self.config = config
        compile_log.install()
        # Extend and decode: one program per attend bucket (a static argument), cached by jit.
        options = sampler_compiler_options(jax.default_backend())
        self._extend = jax.jit(functools.partial(_extend_program, graphdef), static_argnums=(0,),
                               donate_argnums=(2,), compiler_options=options)
        self._decode = jax.jit(functools.partial(_decode_program, config.decode_chunk,
                                                 config.decode_chunks_per_call,
                                                 config.ssm_decode_update, graphdef),
                               static_argnums=(0,), donate_argnums=(2,), compiler_options=options)
        # Gathering into the same batch size reuses the old buffers; a different size cannot (and
        # donating would only warn), so that case has its own function.
        self._gather_in_place = jax.jit(_gather_program, donate_argnums=(0,))
        self._gather_resize = jax.jit(_gather_program)
        self._init = jax.jit(self._init_program, static_argnums=(1, 2))

    # -- buckets ---------------------------------------------------------------------------

    def batch_bucket(self, batch: int) -> int:
        return _round_up(_next_power_of_two(batch), self.config.batch_multiple)

    def block_bucket(self, length: int) -> int:
        return max(self.config.min_block_bucket, _next_power_of_two(length))

    def cache_bucket(self, length: int) -> int:
        return _round_up(max(length, 1), self.config.cache_multiple)

    def attend_bucket(self, length: int, capacity: int) -> int:
        """KV positions a decode chunk attends to when its rows hold up to `length` tokens."""
        return min(capacity, max(self.config.min_attend_bucket, _next_power_of_two(length)))

    # -- state -----------------------------------------------------------------------------

    def _init_program(self, params, batch: int, max_len: int, seed, row_ids_B):
        model = nnx.merge(self.graphdef, params)
        cache = model.init_cache(batch, max_len)
        vocab = model.config.vocab_size
        return _constrain_state(SamplerState(
            cache=cache,
            next_logits_BV=jnp.zeros((batch, vocab), jnp.float32),
            row_keys_B=_row_keys(seed, row_ids_B),
            num_sampled_B=jnp.zeros((batch,), jnp.int32)))

    def init_state(self, params, batch: int, max_len: int, seed: int = 0,
                   row_ids: Sequence[int] | None = None) -> SamplerState:
        """An empty cache for `batch` rows (rounded up to a bucket) of up to `max_len` tokens."""
        padded = self.batch_bucket(batch)
        row_ids_B = np.arange(padded, dtype=np.int32)
        if row_ids is not None:
            row_ids_B[:batch] = np.asarray(row_ids, dtype=np.int32)
        with compile_log.CompileWatch(f"sampler.init[B={padded},S={self.cache_bucket(max_len)}]"):
            return self._init(params, padded, self.cache_bucket(max_len), _seed(seed), row_ids_B)

    def prefill(self, params, prompts: Sequence[Sequence[int]], max_len: int, seed: int = 0,
                row_ids: Sequence[int] | None = None) -> SamplerState:
        """A new state holding `prompts` (ragged), ready to decode their continuations."""
        if not prompts:
            raise ValueError("prefill needs at least one prompt")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt must hold at least one token")
        state = self.init_state(params, len(prompts), max_len, seed, row_ids)
        return self.extend(params, state, prompts)

    def extend(self, params, state: SamplerState, blocks: Sequence[Sequence[int] | None]) -> SamplerState:
        """Appends blocks[b] to row b's cache; rows given None or [] are left alone."""
        batch = state.batch_size
        if len(blocks) > batch:
            raise ValueError(f"got {len(blocks)} blocks for a state of {batch} rows")
        vocab = state.next_logits_BV.shape[-1]
        blocks = ([_token_ids(b, row, vocab) for row, b in enumerate(blocks)]
                  + [[] for _ in range(batch - len(blocks))])
        lengths = host_array(state.lengths_B)
        capacity = self._capacity(state)
        for row, block in enumerate(blocks):
            if lengths[row] + len(block) > capacity:
                raise ValueError(
                    f"row {row}: {lengths[row]} cached + {len(block)} new tokens exceed the cache "
                    f"length {capacity}")
        offset = 0
        longest_block = max(len(b) for b in blocks)
        while offset < longest_block:
            piece = [b[offset:offset + self.config.prefill_chunk] for b in blocks]
            # At most the cache's length: a block that fits the cache fits its widest program.
            width = min(self.block_bucket(max(len(p) for p in piece)), capacity)
            tokens_BT = np.zeros((batch, width), np.int32)
            num_valid_B = np.zeros((batch,), np.int32)
            for row, p in enumerate(piece):
                tokens_BT[row, :len(p)] = p
                num_valid_B[row] = len(p)
            # Attention reads the KV buffers only up to a bucket of the longest row that appends
            # (rows that append nothing are left alone whatever they hold), as decoding does: a
            # tool response appended to rows of a few thousand tokens does not attend to a 32k
            # buffer.
            lengths = lengths + num_valid_B
            attend = self.attend_bucket(int(np.max(np.where(num_valid_B > 0, lengths, 0))), capacity)
            with compile_log.CompileWatch(f"sampler.extend[B={batch},T={width},attend={attend}]"):
                state = self._extend(attend, params, state, tokens_BT, num_valid_B)
            offset += self.config.prefill_chunk
        return state

    def _capacity(self, state: SamplerState) -> int:
        return int(state.cache.max_len)

    def gather_rows(self, state: SamplerState, index: Sequence[int], seed: int = 0,
                    row_ids: Sequence[int] | None = None) -> SamplerState:
        """A state whose row i is a copy of row index[i] (e.g. G copies of each prefilled prompt).

        The new batch is padded to a bucket with copies of row index[0]; padding rows are never
        decoded or extended by the callers that pass explicit rows.
        """
        index = _row_indices(index, state.batch_size, "gather_rows index")
        if not len(index):
            raise ValueError("gather_rows needs at least one row index")
        padded = self.batch_bucket(len(index))
        index_B = np.concatenate([index, np.full((padded - len(index),), index[0], np.int32)])
        row_ids_B = np.arange(padded, dtype=np.int32)
        if row_ids is not None:
            row_ids_B[:len(index)] = np.asarray(row_ids, dtype=np.int32)
        gather = self._gather_in_place if padded == state.batch_size else self._gather_resize
        with compile_log.CompileWatch(f"sampler.gather[{state.batch_size}->{padded}]"):
            return gather(state, index_B, row_ids_B, _seed(seed))

    def decode(self, params, state: SamplerState, max_new_tokens, *, rows: Sequence[int] | None = None,
               temperature=1.0, top_p=1.0, top_k=0, stop_ids=()) -> tuple[SamplerState, DecodeResult]:
        """Samples continuations for `rows` (default: all) until each stops or spends its budget.

        `max_new_tokens`, `temperature`, `top_p`, `top_k` are scalars or one value per row of the
        state; `stop_ids` is an int, one sequence for all rows, or one per row. A row's budget is
        also capped by the room left in its cache. Bad controls, rows or stop ids raise a
        ValueError naming them before anything runs.
        """
        batch = state.batch_size
        active = np.zeros((batch,), bool)
        active[np.arange(batch) if rows is None else _row_indices(rows, batch, "rows")] = True
        requested_B = _per_row(max_new_tokens, batch, "max_new_tokens", np.int32)
        capacity = self._capacity(state)
        start_lengths_B = host_array(state.lengths_B)
        room_B = capacity - start_lengths_B
        budget_B = np.where(active, np.minimum(requested_B, room_B), 0).astype(np.int32)
        temperature_B = _per_row(temperature, batch, "temperature", np.float32)
        top_p_B = _per_row(top_p, batch, "top_p", np.float32)
        top_k_B = _per_row(top_k, batch, "top_k", np.int32)
        _check_controls(budget=requested_B, temperature=temperature_B, top_p=top_p_B, top_k=top_k_B)
        controls = (temperature_B, top_p_B, top_k_B, self._stop_table(stop_ids, batch), budget_B,
                    np.all(temperature_B <= 0), np.any((top_p_B < 1) | (top_k_B > 0)))
        done_B = budget_B <= 0
        num_new_B = np.zeros((batch,), np.int32)
        tokens = [[] for _ in range(batch)]
        logprobs = [[] for _ in range(batch)]
        finish: list[str | None] = [None] * batch
        num_steps = 0
        for row in np.flatnonzero(active & done_B):
            finish[row] = FINISH_LENGTH
        while not np.all(done_B):
            # Rows still decoding hold at most `longest` tokens now; rows that are done write
            # nothing, and their (discarded) outputs may ignore later positions.
            longest = int(np.max(np.where(done_B, 0, start_lengths_B + num_new_B)))
            chunk = self.config.decode_chunk
            attend = self.attend_bucket(longest + chunk, capacity)
            # The call runs only as many chunks as keep its rows inside that bucket (a row writes
            # at most one token per step; none past the cache, which caps the budgets): a longer
            # call would need a larger bucket, and so more attention work, for all its steps.
            chunk_limit = (self.config.decode_chunks_per_call if attend >= capacity else
                           min(self.config.decode_chunks_per_call, (attend - longest) // chunk))
            with compile_log.CompileWatch(
                    f"sampler.decode[B={batch},S={capacity},attend={attend}]"):
                state, done_dev, num_new_dev, outputs, chunks_run = self._decode(
                    attend, params, state, controls, done_B, num_new_B, np.int32(chunk_limit))
            # host_array: with several processes the rows live on different hosts.
            (token_KB, logprob_KB, active_KB, stopped_KB), done_B, num_new_B, chunks_run = (
                host_array((outputs, done_dev, num_new_dev, chunks_run)))
            num_steps += int(chunks_run) * chunk
            # A row is active for a run of steps that ends at its stop token, if it met one.
            for row in np.flatnonzero(active_KB.any(axis=0)):
                steps_K = active_KB[:, row]
                tokens[row].extend(token_KB[steps_K, row].tolist())
                logprobs[row].extend(logprob_KB[steps_K, row].tolist())
                if stopped_KB[steps_K, row].any():
                    finish[row] = FINISH_STOP
                elif len(tokens[row]) >= budget_B[row]:
                    finish[row] = FINISH_LENGTH
        return state, DecodeResult(tokens=tokens, logprobs=logprobs, finish_reasons=finish,
                                   num_steps=num_steps)

    def _stop_table(self, stop_ids, batch: int) -> np.ndarray:
        """stop_ids: an int, one sequence for every row, or one sequence (or int) per row."""
        if isinstance(stop_ids, (int, np.integer)):
            stop_ids = [stop_ids]
        stop_ids = [np.asarray(ids).tolist() for ids in stop_ids]
        if any(isinstance(ids, list) for ids in stop_ids):   # one entry per row
            per_row = [ids if isinstance(ids, list) else [ids] for ids in stop_ids]
            if len(per_row) > batch:
                raise ValueError(f"stop_ids has {len(per_row)} rows: expected at most {batch}")
            per_row = per_row + [[]] * (batch - len(per_row))
        else:
            per_row = [stop_ids] * batch
        for row, ids in enumerate(per_row):
            if not all(isinstance(i, int) and i >= 0 for i in ids):
                raise ValueError(f"stop_ids of row {row} must be non-negative ints, got {ids}")
        width = _round_up(max([self.config.max_stop_ids] + [len(s) for s in per_row]), self.config.max_stop_ids)
        table = np.full((batch, width), -1, np.int32)
        for row, ids in enumerate(per_row):
            table[row, :len(ids)] = ids
        return table


@functools.lru_cache(maxsize=8)
def _default_sampler(graphdef, batch_multiple: int) -> Sampler:
    """One default Sampler per model architecture and data-parallel size, so repeated `generate`
    calls reuse its compiled programs (a new Sampler would compile everything again)."""
    return Sampler(graphdef, SamplerConfig(batch_multiple=batch_multiple))


def _parameter_mesh(params) -> Mesh | None:
    """The mesh the parameters are placed on, if it has more than one device."""
    for leaf in jax.tree.leaves(params):
        placement = getattr(leaf, "sharding", None)
        if isinstance(placement, NamedSharding) and placement.mesh.size > 1:
            return placement.mesh
    return None


@dataclasses.dataclass
class GenerateOutput:
    tokens: list[list[int]]
    logprobs: list[list[float]]
    lengths: list[int]
    finish_reasons: list[str]


def generate(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature=0.0,
             top_p=1.0, top_k=0, stop_ids=(), seed: int = 0, *, sampler: Sampler | None = None,
             max_len: int | None = None) -> GenerateOutput:
    """Samples a continuation of each prompt with the model's current weights.

    `prompts` is a list of token-id lists (ragged; numpy arrays too), each id in [0, vocab);
    sampling controls are scalars or one value per prompt (see `Sampler.decode`). Returns per
    prompt the new tokens (stop token included), their log-probs under the model at temperature
    1, the lengths and the finish reasons ("stop" or "length"). Identical prompts are prefilled
    once.

    A model whose parameters are placed on a mesh (`load_hf_model(path, mesh=...)`) samples
    under that mesh, rows split over its data-parallel devices (e.g. the cores of a CPU host, see
    `distributed.set_cpu_devices`).
    """
    prompts = [_token_ids(p, row, model.config.vocab_size) for row, p in enumerate(prompts)]
    graphdef, params = nnx.split(model)
    mesh = _parameter_mesh(params)
    sampler = sampler or _default_sampler(graphdef, 1 if mesh is None else batch_shards(mesh))
    with contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh):
        return _generate(sampler, params, prompts, max_new_tokens, temperature, top_p, top_k,
                         stop_ids, seed, max_len)


def _generate(sampler: Sampler, params, prompts, max_new_tokens, temperature, top_p, top_k,
              stop_ids, seed, max_len: int | None) -> GenerateOutput:
    # No prompts: `prefill` says so.
    max_len = max_len or max((len(p) for p in prompts), default=0) + int(np.max(max_new_tokens))
    first_row = {}
    index = [first_row.setdefault(tuple(p), len(first_row)) for p in prompts]
    if len(first_row) < len(prompts):
        # Repeated prompts (G samples per prompt, as in GRPO) share one prefill: the distinct
        # prompts are prefilled and their rows copied. Row keys follow the row, as without it.
        state = sampler.prefill(params, [list(p) for p in first_row], max_len, seed=seed)
        state = sampler.gather_rows(state, index, seed=seed)
    else:
        state = sampler.prefill(params, prompts, max_len, seed=seed)
    state, result = sampler.decode(params, state, max_new_tokens, rows=range(len(prompts)),
                                   temperature=temperature, top_p=top_p, top_k=top_k, stop_ids=stop_ids)
    n = len(prompts)
    return GenerateOutput(tokens=result.tokens[:n], logprobs=result.logprobs[:n],
                          lengths=result.lengths[:n], finish_reasons=result.finish_reasons[:n])
