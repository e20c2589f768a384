"""Bitwise comparison of parameter / optimizer trees, shared by the reliability tests."""
import jax
import numpy as np


def host(tree):
    return jax.tree.map(np.asarray, tree)


def assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
