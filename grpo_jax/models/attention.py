"""Causal grouped-query attention as pure functions: a dense path, a query-chunked path (long
sequences), two one-query paths (decoding) and an optional cuDNN path (training on GPU).

Keys and values are indexed by position: key s sits at position s (a whole sequence in training,
a KV buffer in generation). A query at position `query_pos` sees the keys at positions <= it.
There is no positional encoding: Nemotron-H attention is position-free apart from the causal mask.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import jax.numpy as jnp

from grpo_jax.models.precision import einsum_f32
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


def _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT):
    b, t, h, d = q_BTHD.shape
    s, kv_heads = k_BSKD.shape[1], k_BSKD.shape[2]
    # Query head j uses kv head j // (h / kv_heads): contiguous query heads share a kv head, so the
    # kv heads are never repeated and a head shard holds its own kv heads.
    q_BTKGD = q_BTHD.reshape(b, t, kv_heads, h // kv_heads, d)
    # Scores as (B, K, T, G, S): the (T, G) rows of one kv head are one matmul operand in every
    # product of the forward and the backward, so XLA:CPU transposes no score-sized tensor (with
    # (B, K, G, T, S) it copied two per chunk in the backward). Forward + backward of the CPU
    # benchmark model: 0.85x the time at 1 x 1024 and 0.82x at 1 x 2048 (query chunks of 512),
    # prefill of 2 x 1024 0.76x, unchanged at 2 x 256 (docs/performance.md).
    scores_BKTGS = einsum_f32("btkgd,bskd->bktgs", q_BTKGD, k_BSKD) * d ** -0.5
    visible_BTS = jnp.arange(s)[None, None, :] <= query_pos_BT[:, :, None]
    scores_BKTGS = jnp.where(visible_BTS[:, None, :, None], scores_BKTGS, _MASKED_SCORE)
    probs_BKTGS = jax.nn.softmax(scores_BKTGS, axis=-1).astype(v_BSKD.dtype)
    # Values as (B, K, S, D) and the output in the scores' (B, K, T, G) order, transposed after:
    # contracting straight into (B, T, K, G, D) made XLA:CPU write the probabilities transposed
    # to (K, S, T·G) (~13 ms per query chunk and layer at 1 x 1024). Only the small value and
    # output tensors move now: forward + backward of the CPU benchmark model 1.13x faster at
    # 1 x 1024 (one-row update options), 1.04x at 4 x 512, forwards 1.06x (docs/performance.md).
    out_BKTGD = jnp.einsum("bktgs,bksd->bktgd", probs_BKTGS, jnp.transpose(v_BSKD, (0, 2, 1, 3)))
    return jnp.transpose(out_BKTGD, (0, 2, 1, 3, 4)).reshape(b, t, h, d).astype(q_BTHD.dtype)


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
    are processed chunk by chunk (`lax.map`, rematerialised), so the live score tensor is
    (B, H, query_chunk, S) in both the forward and the backward pass; the result equals the dense
    path since every query row is computed the same way.

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
    if t <= query_chunk:
        return _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
    if not self_attention:
        return _attend_chunked(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, query_chunk)
    num_chunks = -(-t // query_chunk)
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


def _attend_chunked(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, query_chunk: int):
    """The dense path query chunk by query chunk (`lax.map`, each chunk rematerialised)."""
    b, t, h, d = q_BTHD.shape
    if t <= query_chunk:
        return jax.checkpoint(_attend_dense)(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
    num_chunks = -(-t // query_chunk)
    pad = num_chunks * query_chunk - t
    q_CBQHD = jnp.pad(q_BTHD, [(0, 0), (0, pad), (0, 0), (0, 0)]).reshape(
        b, num_chunks, query_chunk, h, d).swapaxes(0, 1)
    pos_CBQ = jnp.pad(query_pos_BT, [(0, 0), (0, pad)]).reshape(
        b, num_chunks, query_chunk).swapaxes(0, 1)

    @jax.checkpoint
    def attend_chunk(chunk):
        q_BQHD, pos_BQ = chunk
        return _attend_dense(q_BQHD, k_BSKD, v_BSKD, pos_BQ)

    out_CBQHD = jax.lax.map(attend_chunk, (q_CBQHD, pos_CBQ))
    return out_CBQHD.swapaxes(0, 1).reshape(b, num_chunks * query_chunk, h, d)[:, :t]
