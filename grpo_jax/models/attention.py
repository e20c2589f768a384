"""Causal grouped-query attention as pure functions: a dense path, a query-chunked path (long
sequences), a one-query path (decoding) and an optional cuDNN path (training on GPU).

Keys and values are indexed by position: key s sits at position s (a whole sequence in training,
a KV buffer in generation). A query at position `query_pos` sees the keys at positions <= it.
There is no positional encoding: Nemotron-H attention is position-free apart from the causal mask.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import jax.numpy as jnp

# Finite, so a fully masked row (padding queries) yields a uniform softmax rather than NaN.
_MASKED_SCORE = jnp.finfo(jnp.float32).min
_F32 = jnp.float32

IMPLEMENTATIONS = ("xla", "cudnn")
_implementation = "xla"


@contextlib.contextmanager
def use_implementation(name: str) -> Iterator[None]:
    """Selects the attention kernel of causal self-attention over whole sequences (training and
    log-prob forwards) for everything TRACED inside the block:

    * "xla" (default): the einsum paths below, any device and dtype;
    * "cudnn": `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN's fused flash
      attention; GPU only, bfloat16/float16 only (it raises otherwise).

    The choice is read when a function is traced, so enter the block before the first call of a
    jitted function (`jax.jit` caches its trace). Cached paths (prefill into a KV buffer, decode)
    always use the XLA paths: their keys are a buffer longer than the queries.
    """
    global _implementation
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {name!r}: expected one of {IMPLEMENTATIONS}")
    previous, _implementation = _implementation, name
    try:
        yield
    finally:
        _implementation = previous


def current_implementation() -> str:
    return _implementation


def _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT):
    b, t, h, d = q_BTHD.shape
    s, kv_heads = k_BSKD.shape[1], k_BSKD.shape[2]
    # Query head j uses kv head j // (h / kv_heads): contiguous query heads share a kv head, so the
    # kv heads are never repeated and a head shard holds its own kv heads.
    q_BTKGD = q_BTHD.reshape(b, t, kv_heads, h // kv_heads, d)
    scores_BKGTS = jnp.einsum("btkgd,bskd->bkgts", q_BTKGD, k_BSKD,
                              preferred_element_type=_F32) * d ** -0.5
    visible_BTS = jnp.arange(s)[None, None, :] <= query_pos_BT[:, :, None]
    scores_BKGTS = jnp.where(visible_BTS[:, None, None], scores_BKGTS, _MASKED_SCORE)
    probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(v_BSKD.dtype)
    out_BTKGD = jnp.einsum("bkgts,bskd->btkgd", probs_BKGTS, v_BSKD)
    return out_BTKGD.reshape(b, t, h, d).astype(q_BTHD.dtype)


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


def _attend_cudnn(q_BTHD, k_BTKD, v_BTKD):
    """cuDNN flash attention, causal over a whole sequence (query t sees keys <= t)."""
    return jax.nn.dot_product_attention(q_BTHD, k_BTKD, v_BTKD, is_causal=True,
                                        implementation="cudnn")


def causal_attention(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, *, query_chunk: int,
                     self_attention: bool = False):
    """softmax(q kᵀ / sqrt(D), keys at positions <= query_pos) v, softmax in float32.

    One query per row uses the multiply-and-reduce decode path. More than `query_chunk` queries
    are processed chunk by chunk (`lax.map`, rematerialised), so the live score tensor is
    (B, H, query_chunk, S) in both the forward and the backward pass; the result equals the dense
    path since every query row is computed the same way.

    `self_attention=True` promises query_pos_BT[b] = arange(T) and S = T (a training forward);
    only then may the cuDNN kernel run (see `use_implementation`).
    """
    b, t, h, d = q_BTHD.shape
    if self_attention and _implementation == "cudnn":
        return _attend_cudnn(q_BTHD, k_BSKD, v_BSKD)
    if t == 1:
        return _attend_one_query(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
    if t <= query_chunk:
        return _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT)
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
