"""A mixed-precision contraction: low-precision operands, float32 result, low-precision backward.

`jnp.einsum(..., preferred_element_type=float32)` on bfloat16 operands gives float32 results (what
the logits and attention scores need), but its autodiff transposes take the float32 cotangent
and promote the other operand to float32, so the backward matmuls run in float32: measured on an
H100 (benchmarks/gpu_h100.py, section train_blocks), the lm_head with token log-probs took
106 ms forward + backward for 8,192 tokens against 18 ms forward. `einsum_f32` rounds the
cotangent to the operands' dtype and differentiates the plain low-precision einsum instead (the
matrix units still accumulate in float32); the operand gradients are in the operands' dtype
either way. With float32 operands it is exactly `jnp.einsum(..., preferred_element_type=f32)`
(the gradients up to summation order).

The backward makes each operand's gradient as a matmul whose result is laid out the way a matmul
writes it (batch dims, then the free dims of its first operand, then those of its second), held
by an optimization barrier, and only then transposed to the operand's layout. Left to itself
XLA:CPU folded that transpose into the matmul by transposing the matmul's large input instead:
for the attention scores it wrote the (B, K, T, G, S) score cotangent transposed to (B, K, S, T·G)
to make the key gradient (B, S, K, D) directly (~27 ms per query chunk and layer at 1 x 1024 in
the CPU benchmark model); now only the small (B, K, D, S) product is transposed
(docs/performance.md).
"""
from __future__ import annotations

import functools
import string

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
    cotangent = cotangent.astype(jnp.promote_types(a.dtype, b.dtype))
    indices = _explicit_indices(subscripts, a.ndim, b.ndim)
    if indices is None or not _plain_contraction(*indices, a.shape, b.shape):
        _, transpose = jax.vjp(lambda a, b: jnp.einsum(subscripts, a, b), a, b)
        return transpose(cotangent)
    in_a, in_b, out = indices
    return (einsum_in_matmul_order(cotangent, out, b, in_b, in_a).astype(a.dtype),
            einsum_in_matmul_order(a, in_a, cotangent, out, in_b).astype(b.dtype))


def _explicit_indices(subscripts: str, ndim_a: int, ndim_b: int) -> tuple[str, str, str] | None:
    """The two operands' and the output's indices, an ellipsis spelled out in unused letters
    (right-aligned, as einsum broadcasts it); None for an implicit output."""
    if "->" not in subscripts:
        return None
    inputs, out = subscripts.replace(" ", "").split("->")
    in_a, in_b = inputs.split(",")
    if "..." not in subscripts:
        return in_a, in_b, out
    widths = [ndim - len(indices) + 3 if "..." in indices else 0
              for indices, ndim in ((in_a, ndim_a), (in_b, ndim_b))]
    letters = "".join([c for c in string.ascii_letters if c not in subscripts][:max(widths)])
    in_a, in_b = (indices.replace("...", letters[len(letters) - width:])
                  for indices, width in zip((in_a, in_b), widths))
    return in_a, in_b, out.replace("...", letters)


def _plain_contraction(in_a: str, in_b: str, out: str, shape_a, shape_b) -> bool:
    """No index repeated within an array, none broadcast (one size per index), and every index of
    each operand also in the other operand or the output: then each gradient is one einsum of the
    other two arrays."""
    sizes = {}
    for indices, shape in ((in_a, shape_a), (in_b, shape_b)):
        for index, size in zip(indices, shape):
            if sizes.setdefault(index, size) != size:
                return False
    return (all(len(set(s)) == len(s) for s in (in_a, in_b, out))
            and set(in_a) <= set(in_b) | set(out) and set(in_b) <= set(in_a) | set(out))


def einsum_in_matmul_order(x, in_x: str, y, in_y: str, target: str, **einsum_kwargs):
    """einsum(x, y) -> target, made in matmul order (batch dims, then x's free dims, then y's),
    held by an optimization barrier, then transposed (see the module docstring)."""
    batch = [i for i in target if i in in_x and i in in_y]
    matmul_order = "".join(batch + [i for i in in_x if i in target and i not in batch]
                           + [i for i in in_y if i in target and i not in batch])
    product = jax.lax.optimization_barrier(
        jnp.einsum(f"{in_x},{in_y}->{matmul_order}", x, y, **einsum_kwargs))
    return jnp.einsum(f"{matmul_order}->{target}", product)


einsum_f32.defvjp(_forward, _backward)
