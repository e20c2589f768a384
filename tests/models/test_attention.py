"""Causal GQA: the dense path against numpy, the query-chunked path against the dense one, and the
backward against autodiff of a plain softmax attention."""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grpo_jax.models.attention import causal_attention

BATCH, QUERIES, KEYS, HEADS, KV_HEADS, HEAD_DIM = 2, 13, 16, 4, 2, 8


def _numpy_attention(q, k, v, query_pos):
    """Query head j reads kv head j // (HEADS / KV_HEADS); keys at positions <= query_pos."""
    group = HEADS // KV_HEADS
    out = np.zeros(q.shape, np.float64)
    for b in range(q.shape[0]):
        for t in range(q.shape[1]):
            for j in range(HEADS):
                keys = k[b, :query_pos[b, t] + 1, j // group]
                scores = keys @ q[b, t, j] / np.sqrt(HEAD_DIM)
                weights = np.exp(scores - scores.max())
                out[b, t, j] = weights @ v[b, :query_pos[b, t] + 1, j // group] / weights.sum()
    return out


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((BATCH, QUERIES, HEADS, HEAD_DIM)).astype(np.float32)
    k = rng.standard_normal((BATCH, KEYS, KV_HEADS, HEAD_DIM)).astype(np.float32)
    v = rng.standard_normal((BATCH, KEYS, KV_HEADS, HEAD_DIM)).astype(np.float32)
    # Row 0 continues after 3 cached tokens; row 1 starts at 0 (a training sequence).
    query_pos = np.stack([3 + np.arange(QUERIES), np.arange(QUERIES)]).astype(np.int32)
    return q, k, v, query_pos


def test_dense_path_matches_numpy(inputs):
    q, k, v, query_pos = inputs
    out = causal_attention(q, k, v, query_pos, query_chunk=QUERIES)
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, query_pos), rtol=1e-5, atol=1e-5)


def test_query_chunked_path_equals_dense_path_and_gradients(inputs, query_chunk=4):
    q, k, v, query_pos = inputs

    def loss(q, k, v, chunk):
        return jnp.sum(jnp.sin(causal_attention(q, k, v, query_pos, query_chunk=chunk)))

    dense_out = causal_attention(q, k, v, query_pos, query_chunk=QUERIES)
    chunked_out = causal_attention(q, k, v, query_pos, query_chunk=query_chunk)
    np.testing.assert_allclose(chunked_out, dense_out, rtol=1e-6, atol=1e-6)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    dense_grads, chunked_grads = grads(q, k, v, QUERIES), grads(q, k, v, query_chunk)
    for chunked, dense in zip(chunked_grads, dense_grads):
        np.testing.assert_allclose(chunked, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t,query_chunk", [(32, 4), (13, 4), (40, 4)],
                         ids=["one_chunk_per_group", "ragged_last_chunk", "ten_chunks_eight_groups"])
def test_self_attention_skips_keys_no_query_of_a_chunk_sees(t, query_chunk):
    """A training forward (query t at position t, S = T): the same outputs and gradients as the
    dense path, with the key-prefix groups' smaller score products (8 chunks in 8 groups: 56% of
    the square, 10 chunks in 8 groups: 57%)."""
    rng = np.random.default_rng(t)
    q = rng.standard_normal((BATCH, t, HEADS, HEAD_DIM)).astype(np.float32)
    k, v = (rng.standard_normal((BATCH, t, KV_HEADS, HEAD_DIM)).astype(np.float32)
            for _ in range(2))
    query_pos = np.broadcast_to(np.arange(t, dtype=np.int32), (BATCH, t))

    def loss(q, k, v, chunk, self_attention):
        out = causal_attention(q, k, v, query_pos, query_chunk=chunk, self_attention=self_attention)
        return jnp.sum(jnp.sin(out))

    out = causal_attention(q, k, v, query_pos, query_chunk=query_chunk, self_attention=True)
    np.testing.assert_allclose(out, _numpy_attention(q, k, v, query_pos), rtol=1e-5, atol=1e-5)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=(3, 4))
    for got, dense in zip(grads(q, k, v, query_chunk, True), grads(q, k, v, t, False)):
        np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5)
    if t % query_chunk == 0:
        def matmul_flops(chunk):
            return _matmul_flops(jax.make_jaxpr(lambda q, k, v: causal_attention(
                q, k, v, query_pos, query_chunk=chunk, self_attention=True))(q, k, v).jaxpr)
        assert matmul_flops(query_chunk) / matmul_flops(t) == pytest.approx(
            {32: 36 / 64, 40: 57 / 100}[t])


def _matmul_flops(jaxpr) -> int:
    """2 x the multiply-adds of every dot_general, loop bodies times their trip count."""
    total = 0
    for eqn, trips in _equations(jaxpr):
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs_shape = eqn.invars[0].aval.shape
            total += trips * 2 * np.prod(eqn.outvars[0].aval.shape) * np.prod(
                [lhs_shape[i] for i in contract])
    return total


def _equations(jaxpr, trips: int = 1):
    """Every equation of a jaxpr and of the jaxprs inside it, with how often it runs (a loop
    body's equations times the loop's trip count)."""
    for eqn in jaxpr.eqns:
        yield eqn, trips
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if isinstance(inner, jax.extend.core.Jaxpr):
                yield from _equations(inner, trips * eqn.params.get("length", 1))


def _plain_attention(q, k, v, query_pos):
    """Float32 softmax attention with jax.nn.softmax and no chunks: what autodiff differentiates."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    q = q.astype(jnp.float32).reshape(b, t, kv_heads, h // kv_heads, d)
    scores = jnp.einsum("btkgd,bskd->btkgs", q, k.astype(jnp.float32)) / np.sqrt(d)
    visible = jnp.arange(k.shape[1])[None, None, :] <= query_pos[:, :, None]
    scores = jnp.where(visible[:, :, None, None], scores, jnp.finfo(jnp.float32).min)
    out = jnp.einsum("btkgs,bskd->btkgd", jax.nn.softmax(scores, axis=-1), v.astype(jnp.float32))
    return out.reshape(b, t, h, d)


@pytest.mark.parametrize("t,query_chunk,self_attention", [(13, 64, False), (13, 4, False),
                                                          (40, 4, True)],
                         ids=["one_chunk", "ragged_chunks", "key_prefix_groups"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gradients_equal_autodiff_of_plain_softmax_attention(t, query_chunk, self_attention,
                                                             dtype):
    """The flash-style backward (softmax statistics kept, probabilities rebuilt, the row term from
    the output) against autodiff of the plain float32 attention. Without self-attention, row 0's
    first queries see no key at all (position -1): their uniform probabilities get no gradient
    through the mask."""
    rng = np.random.default_rng(t + query_chunk)
    q = rng.standard_normal((BATCH, t, HEADS, HEAD_DIM))
    k = 2 * rng.standard_normal((BATCH, t, KV_HEADS, HEAD_DIM))
    v = rng.standard_normal((BATCH, t, KV_HEADS, HEAD_DIM))
    query_pos = np.broadcast_to(np.arange(t, dtype=np.int32), (BATCH, t)).copy()
    if not self_attention:
        query_pos[0, :3] = -1
    weights = rng.standard_normal((BATCH, t, HEADS, HEAD_DIM)).astype(np.float32)

    def loss(attention, q, k, v):
        return jnp.sum(weights * attention(q, k, v, query_pos).astype(jnp.float32))

    ours = jax.jit(jax.grad(functools.partial(loss, functools.partial(
        causal_attention, query_chunk=query_chunk, self_attention=self_attention)),
        argnums=(0, 1, 2)))(*(jnp.asarray(x, dtype) for x in (q, k, v)))
    reference = jax.grad(functools.partial(loss, _plain_attention), argnums=(0, 1, 2))(
        *(jnp.asarray(x, jnp.float32) for x in (q, k, v)))
    tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
    for got, want in zip(ours, reference):
        assert got.dtype == dtype
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tolerance,
                                   atol=tolerance * scale)
    if not self_attention:
        np.testing.assert_array_equal(ours[0][0, :3], 0.0)


def test_backward_reduces_no_score_sized_tensor():
    """The forward reduces each chunk's scores twice (maximum, sum); the backward not at all:
    autodiff of the rematerialised chunk would redo both and add the softmax's row term."""
    b, t, h, kv_heads, d, chunk = 1, 32, 4, 2, 4, 8
    q = jnp.ones((b, t, h, d))
    k = v = jnp.ones((b, t, kv_heads, d))
    query_pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    loss = lambda q, k, v: causal_attention(q, k, v, query_pos, query_chunk=chunk).sum()
    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v).jaxpr
    chunk_scores = b * h * chunk * t
    assert _count_reductions(jaxpr, chunk_scores) == {"reduce_max": t // chunk,
                                                     "reduce_sum": t // chunk}


def _count_reductions(jaxpr, min_size: int) -> dict[str, int]:
    """Max and sum reductions of at least min_size elements, loop bodies times their trip count."""
    counts = collections.Counter()
    for eqn, trips in _equations(jaxpr):
        if (eqn.primitive.name in ("reduce_max", "reduce_sum")
                and np.prod(eqn.invars[0].aval.shape) >= min_size):
            counts[eqn.primitive.name] += trips
    return dict(counts)


def test_query_chunked_path_never_holds_all_scores():
    """Forward and backward of the chunked path need less scratch memory than one (B, H, T, T)
    float32 score tensor; the dense path needs more."""
    b, t, h, d, chunk = 1, 512, 2, 8, 32
    q = jax.ShapeDtypeStruct((b, t, h, d), jnp.float32)
    kv = jax.ShapeDtypeStruct((b, t, 1, d), jnp.float32)
    pos = jax.ShapeDtypeStruct((b, t), jnp.int32)
    all_scores_bytes = b * h * t * t * 4

    def scratch_bytes(query_chunk):
        loss = lambda q, k, v, p: causal_attention(q, k, v, p, query_chunk=query_chunk).sum()
        compiled = jax.jit(jax.grad(loss)).lower(q, kv, kv, pos).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert scratch_bytes(t) > all_scores_bytes
    assert scratch_bytes(chunk) < all_scores_bytes / 4


@pytest.mark.parametrize("formulation", ["reduce", "blockdiag"])
def test_one_query_decode_paths_match_numpy(inputs, formulation):
    """T = 1 (decoding), both one-query formulations; rows sit at different positions."""
    from grpo_jax.models import attention

    q, k, v, _ = inputs
    query_pos = np.asarray([[KEYS - 1], [5]], np.int32)
    with attention.use_decode_formulation(formulation):
        assert attention.decode_formulation(KV_HEADS) == formulation
        out = jax.jit(lambda *a: causal_attention(*a, query_chunk=QUERIES))(
            q[:, :1], k, v, query_pos)
    np.testing.assert_allclose(out, _numpy_attention(q[:, :1], k, v, query_pos), rtol=1e-5,
                               atol=1e-5)


def test_decode_formulation_auto_choice():
    """"auto": block-diagonal unless a mesh splits the kv heads (its one contraction over all kv
    heads would then need an all-reduce)."""
    from grpo_jax import sharding
    from grpo_jax.models import attention

    assert attention.decode_formulation(KV_HEADS) == "blockdiag"
    devices = jax.devices()[:2]
    if len(devices) < 2:
        pytest.skip("needs 2 devices (the suite's fake-device flag gives 8)")
    with jax.set_mesh(sharding.make_mesh(tensor=2, devices=devices)):
        assert attention.decode_formulation(KV_HEADS) == "reduce"
    with jax.set_mesh(sharding.make_mesh(fsdp=2, devices=devices)):
        assert attention.decode_formulation(KV_HEADS) == "blockdiag"
    with pytest.raises(ValueError, match="'blocks'"):
        with attention.use_decode_formulation("blocks"):
            pass


def test_attention_implementation_is_a_validated_config_field_and_cudnn_needs_a_gpu():
    from grpo_jax.models import NemotronHConfig
    from grpo_jax.models.nemotron_h import create_model
    from tests.models.helpers import TINY_HF_CONFIG

    with pytest.raises(ValueError, match="'flash'.*expected one of"):
        NemotronHConfig.from_hf_config(TINY_HF_CONFIG, attention_implementation="flash")
    with pytest.raises(ValueError, match="bfloat16 or float16 compute_dtype.*float32"):
        NemotronHConfig.from_hf_config(TINY_HF_CONFIG, attention_implementation="cudnn")
    config = NemotronHConfig.from_hf_config(TINY_HF_CONFIG, attention_implementation="cudnn",
                                            compute_dtype=jnp.bfloat16)
    model = create_model(config)
    tokens_BT = jnp.asarray(np.arange(1, 7)[None], jnp.int32)
    if jax.default_backend() != "gpu":
        # The training forward is where cuDNN would run: a clear error, not one from XLA.
        with pytest.raises(ValueError, match="needs a GPU.*use 'xla'"):
            model.forward(tokens_BT)
    # Prefill into a KV buffer never uses cuDNN, so it runs anywhere.
    hidden_BTD, _ = model.forward(tokens_BT, cache=model.init_cache(1, 16))
    assert hidden_BTD.shape[:2] == (1, 6)
