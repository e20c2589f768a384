"""einsum_f32: float32 results, and a backward in the operands' precision."""
import jax
import jax.numpy as jnp
import numpy as np

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
