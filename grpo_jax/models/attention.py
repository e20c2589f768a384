"""Causal grouped-query attention as pure functions: a dense path, a query-chunked path (long
sequences), two one-query paths (decoding) and an optional cuDNN path (training on GPU).

Keys and values are indexed by position: key s sits at position s (a whole sequence in training,
a KV buffer in generation). A query at position `query_pos` sees the keys at positions <= it.
There is no positional encoding: Nemotron-H attention is position-free apart from the causal mask.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import jax
import jax.numpy as jnp

from grpo_jax.models.precision import einsum_f32, einsum_in_matmul_order
from grpo_jax.sharding import active_shard_count

# Finite, so a fully masked row (padding queries) yields a uniform softmax rather than NaN.
_MASKED_SCORE = jnp.finfo(jnp.float32).min
_F32 = jnp.float32

# One query per row (decoding): "auto" picks per backend and mesh (see `decode_formulation`).
DECODE_FORMULATIONS = ("auto", "reduce", "blockdiag")
# The choice in force, read when a function is traced (see `use_decode_formulation`).
_selected = {"decode formulation": "auto"}


@contextlib.contextmanager
def _select(kind: str, name: str, choices: tuple[str, ...]) -> Iterator[None]:
    if name not in choices:
        raise ValueError(f"attention {kind} {name!r}: expected one of {choices}")
    previous, _selected[kind] = _selected[kind], name
    try:
        yield
    finally:
        _selected[kind] = previous


def use_decode_formulation(name: str) -> contextlib.AbstractContextManager[None]:
    """Selects how one query per row attends to a KV buffer, for everything TRACED inside the
    block (`jax.jit` caches its trace, so enter it before a function's first call): "reduce"
    (`_attend_one_query`), "blockdiag" (`_attend_one_query_blockdiag`) or "auto" (the default,
    see `decode_formulation`)."""
    return _select("decode formulation", name, DECODE_FORMULATIONS)


def decode_formulation(kv_heads: int) -> str:
    """The one-query path a trace uses. "auto" is block-diagonal, as measured: on an H100
    (benchmarks/gpu_h100.py, one attention layer of the 9B, bf16 buffer of 2,048 positions) its
    matmuls read the buffer at 33-63% of the copy bandwidth, multiply-and-reduce at 16-22%; in the
    CPU sampler benchmark (with the sampler's CPU decode options) whole generate calls took ~8%
    less (docs/performance.md). The block-diagonal query mixes all kv heads in one contraction, so
    under a mesh that splits kv heads it would all-reduce the scores: "auto" keeps "reduce" there."""
    if _selected["decode formulation"] != "auto":
        return _selected["decode formulation"]
    if active_shard_count("kv_heads", kv_heads) > 1:
        return "reduce"
    return "blockdiag"


def _masked_scores(q_BTKGD, k_BSKD, query_pos_BT):
    """Scaled scores as (B, K, T, G, S) in float32, keys after a query's position masked, and the
    (B, T, S) visibility mask."""
    # Scores as (B, K, T, G, S): the (T, G) rows of one kv head are one matmul operand in every
    # product of the forward and the backward, so XLA:CPU transposes no score-sized tensor (with
    # (B, K, G, T, S) it copied two per chunk in the backward). Forward + backward of the CPU
    # benchmark model: 0.85x the time at 1 x 1024 and 0.82x at 1 x 2048 (query chunks of 512),
    # prefill of 2 x 1024 0.76x, unchanged at 2 x 256 (docs/performance.md).
    scores_BKTGS = einsum_f32("btkgd,bskd->bktgs", q_BTKGD, k_BSKD) * q_BTKGD.shape[-1] ** -0.5
    visible_BTS = jnp.arange(k_BSKD.shape[1])[None, None, :] <= query_pos_BT[:, :, None]
    return jnp.where(visible_BTS[:, None, :, None], scores_BKTGS, _MASKED_SCORE), visible_BTS


def _attend_with_stats(q_BTHD, k_BSKD, v_BSKD, query_pos_BT):
    """The dense path's output as (B, K, T, G, D) in float32, with its softmax's row maxima and
    sums (B, K, T, G, 1), from which the backward rebuilds the probabilities."""
    b, t, h, d = q_BTHD.shape
    kv_heads = k_BSKD.shape[2]
    # Query head j uses kv head j // (h / kv_heads): contiguous query heads share a kv head, so the
    # kv heads are never repeated and a head shard holds its own kv heads.
    q_BTKGD = q_BTHD.reshape(b, t, kv_heads, h // kv_heads, d)
    scores_BKTGS, _ = _masked_scores(q_BTKGD, k_BSKD, query_pos_BT)
    # jax.nn.softmax's arithmetic, with the row statistics kept.
    max_BKTG1 = jnp.max(scores_BKTGS, axis=-1, keepdims=True)
    unnormalized_BKTGS = jnp.exp(scores_BKTGS - max_BKTG1)
    sum_BKTG1 = jnp.sum(unnormalized_BKTGS, axis=-1, keepdims=True)
    probs_BKTGS = (unnormalized_BKTGS / sum_BKTG1).astype(v_BSKD.dtype)
    # Values as (B, K, S, D) and the output in the scores' (B, K, T, G) order, transposed after:
    # contracting straight into (B, T, K, G, D) made XLA:CPU write the probabilities transposed
    # to (K, S, T·G) (~13 ms per query chunk and layer at 1 x 1024). Only the small value and
    # output tensors move now: forward + backward of the CPU benchmark model 1.13x faster at
    # 1 x 1024 (one-row update options), 1.04x at 4 x 512, forwards 1.06x (docs/performance.md).
    out_BKTGD = jnp.einsum("bktgs,bksd->bktgd", probs_BKTGS, jnp.transpose(v_BSKD, (0, 2, 1, 3)),
                           preferred_element_type=_F32)
    return out_BKTGD, max_BKTG1, sum_BKTG1


def _to_BTHD(x_BKTGD, dtype):
    b, k, t, g, d = x_BKTGD.shape
    return jnp.transpose(x_BKTGD, (0, 2, 1, 3, 4)).reshape(b, t, k * g, d).astype(dtype)


def _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT):
    return _to_BTHD(_attend_with_stats(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)[0], q_BTHD.dtype)


def _attend_one_query(q_B1HD, k_BSKD, v_BSKD, query_pos_B1):
    """The dense path for ONE query per row (decoding), as multiply-and-reduce.

    Decoding is memory-bound: the whole cost is reading the KV buffer once. As batched matmuls
    (the dense path) the (B, S, K, D) buffer has its batch dims (b, k) split by S, so XLA
    transposes the whole buffer into a matmul layout first (seen in the compiled CPU program:
    three extra passes over the buffer per layer and step). Written as elementwise products
    reduced over D and S, the reads fuse into the reductions and the buffer is read in place,
    also when it is a leading slice `[:, :attend_len]`.
    """
    b, _, h, d = q_B1HD.shape
    kv_heads = k_BSKD.shape[2]
    q_BKGD = q_B1HD[:, 0].reshape(b, kv_heads, h // kv_heads, d).astype(_F32)
    scores_BSKG = jnp.sum(k_BSKD[:, :, :, None, :].astype(_F32) * q_BKGD[:, None], axis=-1)
    scores_BSKG = scores_BSKG * d ** -0.5
    visible_BS = jnp.arange(k_BSKD.shape[1])[None, :] <= query_pos_B1
    scores_BSKG = jnp.where(visible_BS[:, :, None, None], scores_BSKG, _MASKED_SCORE)
    # The dense path rounds the probabilities to the value dtype before the weighted sum; the same
    # rounding here keeps bfloat16 decoding equal to the bfloat16 prefill path.
    probs_BSKG = jax.nn.softmax(scores_BSKG, axis=1).astype(v_BSKD.dtype)
    out_BKGD = jnp.sum(probs_BSKG[..., None].astype(_F32) * v_BSKD[:, :, :, None, :].astype(_F32),
                       axis=1)
    return out_BKGD.reshape(b, 1, h, d).astype(q_B1HD.dtype)


def _attend_one_query_blockdiag(q_B1HD, k_BSKD, v_BSKD, query_pos_B1):
    """The one-query path as two plain batched matmuls (batch dimension B only) over the buffer in
    its own (B, S, K, D) layout, read in place: the kv-head axis joins the contraction through a
    block-diagonal query (K times the flops of the needed products, trivial at one query per row),
    so the buffer needs no transpose into a (B, K)-batched layout.

    The scores come out of the first matmul as (B, S, E) and are transposed (small) so the
    softmax runs over the minor axis: XLA:CPU emitted the softmax over a (B, S, E) array as scalar
    code (E = K*G is 8 in the CPU benchmark model), 6x slower per element than over a minor S, and
    the second matmul is then a plain (E, S) x (S, C) product. A decode step of the CPU benchmark
    model cut to its two attention layers: 1.54 -> 1.22 ms (docs/performance.md)."""
    b, _, h, d = q_B1HD.shape
    s, kv_heads = k_BSKD.shape[1], k_BSKD.shape[2]
    groups = h // kv_heads
    q_BKGD = q_B1HD[:, 0].reshape(b, kv_heads, groups, d)
    eye_KK = jnp.eye(kv_heads, dtype=q_B1HD.dtype)
    # query_BCE[b, k*D + d, j*G + g] = q[b, k, g, d] if j == k else 0 (C = K*D, E = K*G).
    query_BCE = jnp.einsum("bkgd,kj->bkdjg", q_BKGD, eye_KK).reshape(
        b, kv_heads * d, kv_heads * groups)
    scores_BSE = jnp.einsum("bsc,bce->bse", k_BSKD.reshape(b, s, kv_heads * d), query_BCE,
                            preferred_element_type=_F32) * d ** -0.5
    scores_BES = jnp.swapaxes(scores_BSE, 1, 2)
    visible_BS = jnp.arange(s)[None, :] <= query_pos_B1
    scores_BES = jnp.where(visible_BS[:, None, :], scores_BES, _MASKED_SCORE)
    # Rounded to the value dtype before the weighted sum, like the dense path (see above).
    probs_BES = jax.nn.softmax(scores_BES, axis=-1).astype(v_BSKD.dtype)
    out_BEC = jnp.einsum("bes,bsc->bec", probs_BES, v_BSKD.reshape(b, s, kv_heads * d),
                         preferred_element_type=_F32)
    # Keep the diagonal blocks: head (k, g) reads the values of its own kv head k.
    out_BKGJD = out_BEC.reshape(b, kv_heads, groups, kv_heads, d)
    out_BKGD = jnp.einsum("bkgjd,kj->bkgd", out_BKGJD, eye_KK.astype(_F32))
    return out_BKGD.reshape(b, 1, h, d).astype(q_B1HD.dtype)


def _attend_cudnn(q_BTHD, k_BTKD, v_BTKD):
    """cuDNN flash attention, causal over a whole sequence (query t sees keys <= t)."""
    backend = jax.default_backend()
    if backend != "gpu":
        raise ValueError(f"attention_implementation='cudnn' needs a GPU (cuDNN flash attention); "
                         f"this process runs on {backend!r}: use 'xla'")
    return jax.nn.dot_product_attention(q_BTHD, k_BTKD, v_BTKD, is_causal=True,
                                        implementation="cudnn")


def causal_attention(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, *, query_chunk: int,
                     self_attention: bool = False, implementation: str = "xla"):
    """softmax(q kᵀ / sqrt(D), keys at positions <= query_pos) v, softmax in float32.

    One query per row uses a decode path (`decode_formulation`). More than `query_chunk` queries
    are processed chunk by chunk (`lax.map`), so the live score tensor is (B, H, query_chunk, S)
    in both the forward and the backward pass; the result equals the dense path since every query
    row is computed the same way. The backward is flash attention's (`_attend_chunked_backward`):
    it keeps each query's softmax maximum and sum from the forward, not its probabilities.

    `self_attention=True` promises query_pos_BT[b] = arange(T) and S = T (a training forward);
    only then does `implementation="cudnn"` run cuDNN's kernel
    (`NemotronHConfig.attention_implementation`). The XLA path then skips keys no query of a chunk
    can see: the chunks form at most `KEY_PREFIX_GROUPS` consecutive groups, and each group
    attends only to the keys up to its last query (a static prefix), so the scores' work and
    traffic shrink to (groups + 1) / (2 groups) of the full square.
    """
    b, t, h, d = q_BTHD.shape
    if self_attention and implementation == "cudnn":
        return _attend_cudnn(q_BTHD, k_BSKD, v_BSKD)
    if t == 1:
        if decode_formulation(k_BSKD.shape[2]) == "blockdiag":
            return _attend_one_query_blockdiag(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
        return _attend_one_query(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
    if not self_attention or t <= query_chunk:
        return _attend_chunked(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, query_chunk)
    num_chunks, _ = _chunking(t, query_chunk)
    groups = min(num_chunks, KEY_PREFIX_GROUPS)
    outs = []
    for group in range(groups):
        start = group * num_chunks // groups * query_chunk
        end = min((group + 1) * num_chunks // groups * query_chunk, t)
        outs.append(_attend_chunked(q_BTHD[:, start:end], k_BSKD[:, :end], v_BSKD[:, :end],
                                    query_pos_BT[:, start:end], query_chunk))
    return jnp.concatenate(outs, axis=1)


# Key-prefix groups of a chunked self-attention (see `causal_attention`): each is one more static
# shape of the chunk loop, so more groups trade compiled programs (and GPU autotuning) for the
# last few percent (8 groups: 56% of the full square's work; 2: 75%; one per chunk: 50%).
KEY_PREFIX_GROUPS = 8


def _chunking(t: int, query_chunk: int) -> tuple[int, int]:
    """(number of chunks, chunk length) for t queries: one chunk of t when t <= query_chunk."""
    return -(-t // query_chunk), min(t, query_chunk)


def _chunk(x_BT_, num_chunks: int, query_chunk: int):
    """(B, T, ...) -> (C, B, query_chunk, ...), T zero-padded to C chunks."""
    b, t = x_BT_.shape[:2]
    pad = [(0, 0), (0, num_chunks * query_chunk - t)] + [(0, 0)] * (x_BT_.ndim - 2)
    return jnp.pad(x_BT_, pad).reshape(b, num_chunks, query_chunk, *x_BT_.shape[2:]).swapaxes(0, 1)


def _unchunk(x_CBQ_, t: int):
    c, b, q = x_CBQ_.shape[:3]
    return x_CBQ_.swapaxes(0, 1).reshape(b, c * q, *x_CBQ_.shape[3:])[:, :t]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend_chunked(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, query_chunk: int):
    """The dense path query chunk by query chunk (`lax.map`), so the largest live tensor is one
    chunk's scores, with a backward that rebuilds each chunk's probabilities from its softmax
    statistics instead of differentiating the softmax (see `_attend_chunked_backward`). This
    primal runs where nothing is differentiated (prefill, extend, log-probs): it keeps no
    statistics and casts each chunk's output inside the loop; `_attend_chunked_forward` is the
    same loop with the residuals."""
    t = q_BTHD.shape[1]
    num_chunks, query_chunk = _chunking(t, query_chunk)
    if num_chunks == 1:
        return _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
    out_CBQHD = jax.lax.map(
        lambda chunk: _attend_dense(chunk[0], k_BSKD, v_BSKD, chunk[1]),
        (_chunk(q_BTHD, num_chunks, query_chunk), _chunk(query_pos_BT, num_chunks, query_chunk)))
    return _unchunk(out_CBQHD, t)


def _attend_chunked_forward(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, query_chunk: int):
    num_chunks, query_chunk = _chunking(q_BTHD.shape[1], query_chunk)
    out_CBKQGD, max_CBKQG1, sum_CBKQG1 = jax.lax.map(
        lambda chunk: _attend_with_stats(chunk[0], k_BSKD, v_BSKD, chunk[1]),
        (_chunk(q_BTHD, num_chunks, query_chunk), _chunk(query_pos_BT, num_chunks, query_chunk)))
    out_CBQHD = jax.vmap(lambda out_BKQGD: _to_BTHD(out_BKQGD, q_BTHD.dtype))(out_CBKQGD)
    out_BTHD = _unchunk(out_CBQHD, q_BTHD.shape[1])
    return out_BTHD, (q_BTHD, k_BSKD, v_BSKD, query_pos_BT, out_CBKQGD, max_CBKQG1, sum_CBKQG1)


def _attend_chunked_backward(query_chunk: int, residuals, dout_BTHD):
    """Flash attention's backward, chunk by chunk: the probabilities come back from the saved row
    maxima and sums in one elementwise pass over the recomputed scores, and the softmax's
    row term sum_s p·dp is sum_d do·o over the small output instead of a reduction over the
    score-sized p·dp. Autodiff of the rematerialised chunk also redid the forward's two
    reductions over the scores and added that third one: an attention block's forward + backward
    at 2 x 4096, compiled for an H100, went from 38.7 to 30.3 GB of modeled traffic
    (docs/performance.md)."""
    q_BTHD, k_BSKD, v_BSKD, query_pos_BT, out_CBKQGD, max_CBKQG1, sum_CBKQG1 = residuals
    b, t, h, d = q_BTHD.shape
    num_chunks, query_chunk = _chunking(t, query_chunk)
    kv_heads = k_BSKD.shape[2]
    groups = h // kv_heads
    # The backward's matmuls see a chunk's (query, group) rows as one axis E = Q·G: with the
    # two as separate contraction axes XLA:GPU transposed the score-sized operands to (G, Q)
    # order before the key and value gradients.
    k_BKSD, v_BKSD = (jnp.transpose(x, (0, 2, 1, 3)).astype(q_BTHD.dtype) for x in (k_BSKD, v_BSKD))

    def chunk_gradients(carry, chunk):
        dk_BKSD, dv_BKSD = carry
        q_BQHD, pos_BQ, dout_BQHD, out_BKQGD, max_BKQG1, sum_BKQG1 = chunk
        q_BQKGD = q_BQHD.reshape(b, query_chunk, kv_heads, groups, d)
        rows = query_chunk * groups
        q_BKED = jnp.transpose(q_BQKGD, (0, 2, 1, 3, 4)).reshape(b, kv_heads, rows, d)
        dout_BKQGD = jnp.transpose(dout_BQHD.reshape(b, query_chunk, kv_heads, groups, d),
                                   (0, 2, 1, 3, 4)).astype(q_BTHD.dtype)
        scores_BKQGS, visible_BQS = _masked_scores(q_BQKGD, k_BSKD, pos_BQ)
        probs_BKQGS = jnp.exp(scores_BKQGS - max_BKQG1) / sum_BKQG1
        dout_BKED = dout_BKQGD.reshape(b, kv_heads, rows, d)
        probs_BKES = probs_BKQGS.astype(q_BTHD.dtype).reshape(b, kv_heads, rows, -1)
        dv_BKSD = dv_BKSD + einsum_in_matmul_order(dout_BKED, "bked", probs_BKES, "bkes", "bksd",
                                                   preferred_element_type=_F32)
        dprobs_BKQGS = jnp.einsum("bked,bksd->bkes", dout_BKED, v_BKSD,
                                  preferred_element_type=_F32).reshape(probs_BKQGS.shape)
        row_BKQG1 = jnp.sum(dout_BKQGD.astype(_F32) * out_BKQGD, axis=-1, keepdims=True)
        # Masked scores are constants: no gradient reaches them (a fully masked padding row has
        # uniform probabilities, not zeros).
        dscores_BKQGS = jnp.where(visible_BQS[:, None, :, None],
                                  probs_BKQGS * (dprobs_BKQGS - row_BKQG1), 0.0)
        # Rounded to the operands' dtype for the two matmuls, as `einsum_f32`'s backward does.
        dscores_BKES = (dscores_BKQGS * d ** -0.5).astype(q_BTHD.dtype).reshape(probs_BKES.shape)
        dq_BKED = einsum_in_matmul_order(dscores_BKES, "bkes", k_BKSD, "bksd", "bked",
                                         preferred_element_type=_F32)
        dk_BKSD = dk_BKSD + einsum_in_matmul_order(q_BKED, "bked", dscores_BKES, "bkes", "bksd",
                                                   preferred_element_type=_F32)
        dq_BKQGD = dq_BKED.reshape(b, kv_heads, query_chunk, groups, d)
        return (dk_BKSD, dv_BKSD), _to_BTHD(dq_BKQGD, q_BTHD.dtype)

    zeros = (jnp.zeros(k_BKSD.shape, _F32), jnp.zeros(v_BKSD.shape, _F32))
    chunks = tuple(_chunk(x, num_chunks, query_chunk) for x in (q_BTHD, query_pos_BT, dout_BTHD))
    chunks += (out_CBKQGD, max_CBKQG1, sum_CBKQG1)
    if num_chunks == 1:
        (dk_BKSD, dv_BKSD), dq_BQHD = chunk_gradients(zeros, jax.tree.map(lambda x: x[0], chunks))
        dq_BTHD = dq_BQHD[:, :t]
    else:
        (dk_BKSD, dv_BKSD), dq_CBQHD = jax.lax.scan(chunk_gradients, zeros, chunks)
        dq_BTHD = _unchunk(dq_CBQHD, t)
    return (dq_BTHD, jnp.transpose(dk_BKSD, (0, 2, 1, 3)).astype(k_BSKD.dtype),
            jnp.transpose(dv_BKSD, (0, 2, 1, 3)).astype(v_BSKD.dtype), None)


_attend_chunked.defvjp(_attend_chunked_forward, _attend_chunked_backward)
