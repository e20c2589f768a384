"""A mixed-precision contraction: low-precision operands, float32 result, low-precision backward.

`jnp.einsum(..., preferred_element_type=float32)` on bfloat16 operands gives float32 results (what
the logits and attention scores need), but its autodiff transposes take the float32 cotangent
and promote the other operand to float32, so the backward matmuls run in float32: measured on an
H100 (benchmarks/gpu_h100.py, section train_blocks), the lm_head with token log-probs took
106 ms forward + backward for 8,192 tokens against 18 ms forward. `einsum_f32` rounds the
cotangent to the operands' dtype and differentiates the plain low-precision einsum instead (the
matrix units still accumulate in float32); the operand gradients are in the operands' dtype
either way. With float32 operands it is exactly `jnp.einsum(..., preferred_element_type=f32)`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def einsum_f32(subscripts: str, a, b):
    """jnp.einsum(subscripts, a, b) with a float32 result; see the module docstring."""
    return jnp.einsum(subscripts, a, b, preferred_element_type=jnp.float32)


def _forward(subscripts, a, b):
    return einsum_f32(subscripts, a, b), (a, b)


def _backward(subscripts, residuals, cotangent):
    a, b = residuals
    low = jnp.promote_types(a.dtype, b.dtype)
    _, transpose = jax.vjp(lambda a, b: jnp.einsum(subscripts, a, b), a, b)
    return transpose(cotangent.astype(low))


einsum_f32.defvjp(_forward, _backward)
