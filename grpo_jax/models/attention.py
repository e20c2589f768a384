"""Causal grouped-query attention as pure functions: a dense path and a query-chunked path.

Keys and values are indexed by position: key s sits at position s (a whole sequence in training,
a KV buffer in generation). A query at position `query_pos` sees the keys at positions <= it.
There is no positional encoding: Nemotron-H attention is position-free apart from the causal mask.
"""
import jax
import jax.numpy as jnp

# Finite, so a fully masked row (padding queries) yields a uniform softmax rather than NaN.
_MASKED_SCORE = jnp.finfo(jnp.float32).min


def _attend_dense(q_BTHD, k_BSKD, v_BSKD, query_pos_BT):
    b, t, h, d = q_BTHD.shape
    s, kv_heads = k_BSKD.shape[1], k_BSKD.shape[2]
    # Query head j uses kv head j // (h / kv_heads): contiguous query heads share a kv head, so the
    # kv heads are never repeated and a head shard holds its own kv heads.
    q_BTKGD = q_BTHD.reshape(b, t, kv_heads, h // kv_heads, d)
    scores_BKGTS = jnp.einsum("btkgd,bskd->bkgts", q_BTKGD, k_BSKD,
                              preferred_element_type=jnp.float32) * d ** -0.5
    visible_BTS = jnp.arange(s)[None, None, :] <= query_pos_BT[:, :, None]
    scores_BKGTS = jnp.where(visible_BTS[:, None, None], scores_BKGTS, _MASKED_SCORE)
    probs_BKGTS = jax.nn.softmax(scores_BKGTS, axis=-1).astype(v_BSKD.dtype)
    out_BTKGD = jnp.einsum("bkgts,bskd->btkgd", probs_BKGTS, v_BSKD)
    return out_BTKGD.reshape(b, t, h, d).astype(q_BTHD.dtype)


def causal_attention(q_BTHD, k_BSKD, v_BSKD, query_pos_BT, *, query_chunk: int):
    """softmax(q kᵀ / sqrt(D), keys at positions <= query_pos) v, softmax in float32.

    More than `query_chunk` queries are processed chunk by chunk (`lax.map`, rematerialised), so
    the live score tensor is (B, H, query_chunk, S) in both the forward and the backward pass; the
    result equals the dense path since every query row is computed the same way.
    """
    b, t, h, d = q_BTHD.shape
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
