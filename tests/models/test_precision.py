"""einsum_f32: float32 results, and a backward in the operands' precision."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grpo_jax.models.precision import einsum_f32


def _inputs(dtype):
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((2, 5, 16)), dtype)
    w = jnp.asarray(rng.standard_normal((16, 24)), dtype)
    return h, w


def _loss(einsum):
    return lambda h, w: jnp.sum(jnp.sin(einsum("btd,dv->btv", h, w)))


def _reference(subscripts, a, b):
    return jnp.einsum(subscripts, a, b, preferred_element_type=jnp.float32)


def test_float32_operands_equal_the_plain_einsum_and_its_gradients():
    h, w = _inputs(jnp.float32)
    np.testing.assert_array_equal(einsum_f32("btd,dv->btv", h, w), _reference("btd,dv->btv", h, w))
    ours = jax.grad(_loss(einsum_f32), argnums=(0, 1))(h, w)
    plain = jax.grad(_loss(_reference), argnums=(0, 1))(h, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_bfloat16_operands_give_float32_results_and_bfloat16_backward_matmuls():
    h, w = _inputs(jnp.bfloat16)
    out = einsum_f32("btd,dv->btv", h, w)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, _reference("btd,dv->btv", h, w))
    grads = jax.jit(jax.grad(_loss(einsum_f32), argnums=(0, 1)))
    assert [g.dtype for g in grads(h, w)] == [jnp.bfloat16, jnp.bfloat16]
    # The backward's matmuls take bfloat16 operands (the plain einsum's take float32 ones).
    hlo = grads.lower(h, w).as_text()
    backward_dots = [line for line in hlo.splitlines() if "dot_general" in line][1:]
    assert len(backward_dots) == 2
    operand_types = [line.split("->")[0].rsplit(":", 1)[-1] for line in backward_dots]
    assert all("bf16" in t and "f32" not in t for t in operand_types), backward_dots
    # And they agree with the float32 gradients to bfloat16 rounding.
    exact = jax.grad(_loss(_reference), argnums=(0, 1))(h.astype(jnp.float32),
                                                        w.astype(jnp.float32))
    for a, b in zip(grads(h, w), exact):
        a, b = np.asarray(a, np.float32), np.asarray(b)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 2e-2


@pytest.mark.parametrize("subscripts,shape_a,shape_b,matmul_order", [
    ("btkgd,bskd->bktgs", (2, 5, 3, 2, 4), (2, 7, 3, 4), True),  # attention scores
    ("...d,dv->...v", (2, 5, 16), (16, 24), True),                 # the lm_head, ellipsis
    ("bclgn,bcsgn->bgcls", (2, 3, 4, 2, 5), (2, 3, 4, 2, 5), True),  # SSD: C against B
    ("bghcls,bcsghp->bclghp", (1, 2, 3, 2, 4, 4), (1, 2, 4, 2, 3, 5), True),
    ("...ij,...jk->...ik", (3, 4, 5), (2, 3, 5, 6), True),         # ellipses of different ranks
    ("...ij,...jk->...ik", (1, 4, 5), (3, 5, 6), False),           # broadcast size 1
    ("ij,jk", (4, 5), (5, 6), False),                               # implicit output
])
def test_gradients_equal_the_plain_einsums_for_any_subscripts(subscripts, shape_a, shape_b,
                                                               matmul_order):
    """Also: which backward ran (the matmul-order one pins its products with barriers; subscripts
    it cannot spell as two einsums take the generic transpose)."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.standard_normal(shape_a), jnp.float32)
    b = jnp.asarray(rng.standard_normal(shape_b), jnp.float32)
    weights = jnp.asarray(rng.standard_normal(_reference(subscripts, a, b).shape), jnp.float32)

    def loss(einsum):
        return lambda a, b: jnp.sum(weights * einsum(subscripts, a, b))

    gradients = jax.grad(loss(einsum_f32), argnums=(0, 1))
    ours = jax.jit(gradients)(a, b)
    assert ("optimization_barrier" in str(jax.make_jaxpr(gradients)(a, b))) == matmul_order
    plain = jax.grad(loss(_reference), argnums=(0, 1))(a, b)
    for mine, theirs in zip(ours, plain):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
