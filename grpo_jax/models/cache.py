"""The hybrid generation cache: per-row lengths, Mamba conv/SSM state, attention KV buffers.

All shapes are static (a preallocated KV buffer of `max_len` positions), so the cache can be
donated to and carried through `jax.jit` and `lax.scan`. Row b holds `lengths_B[b]` tokens; buffer
position s of an attention layer holds the key/value of the row's token s.

Mamba state is split like the parameters (x | B | C), so each part shards like the weights that
produce it: x and the SSM state over heads, B and C over groups.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from grpo_jax import sharding
from grpo_jax.models import ssd
from grpo_jax.models.config import NemotronHConfig


@struct.dataclass
class MambaLayerCache:
    """State of one Mamba-2 layer.

    conv_x (B, K-1, H, P), conv_b / conv_c (B, K-1, G, N): the last K-1 raw (pre-conv) x, B and C
      columns, oldest first, zeros before the first token (K = conv_kernel).
    ssm (B, H, P, N): the recurrent state after the row's last token; while `pending` holds
      deferred steps (`defer_ssm_updates`), the state before them.
    """

    conv_x: jax.Array
    conv_b: jax.Array
    conv_c: jax.Array
    ssm: jax.Array
    pending: ssd.PendingUpdates | None = None

    LOGICAL_AXES = dict(
        conv_x=("batch", None, "ssm_heads", None),
        conv_b=("batch", None, "ssm_groups", None),
        conv_c=("batch", None, "ssm_groups", None),
        ssm=("batch", "ssm_heads", None, None),
    )


@struct.dataclass
class AttentionLayerCache:
    """keys / values (B, S, K, D): position s of each row, S = max_len, K kv heads."""

    keys: jax.Array
    values: jax.Array

    LOGICAL_AXES = dict(
        keys=("batch", "seq", "kv_heads", None),
        values=("batch", "seq", "kv_heads", None),
    )


@struct.dataclass
class Cache:
    """lengths_B (B,) int32 tokens held per row; one entry per Mamba / attention layer, in order.

    max_len (static): the tokens a row may hold, the KV buffers' positions. Kept apart from the
    buffers so a model without attention layers (whose state does not grow) has one too.
    """

    lengths_B: jax.Array
    mamba: tuple[MambaLayerCache, ...]
    attention: tuple[AttentionLayerCache, ...]
    max_len: int = struct.field(pytree_node=False, default=0)

    @property
    def batch_size(self) -> int:
        return self.lengths_B.shape[0]


def init_cache(config: NemotronHConfig, batch_size: int, max_len: int) -> Cache:
    """An empty cache: lengths 0, zero state, zero KV buffers of `max_len` positions."""
    if batch_size <= 0 or max_len <= 0:
        raise ValueError(f"init_cache(batch_size={batch_size}, max_len={max_len}): "
                         "expected positive sizes")
    b, w = batch_size, config.conv_kernel - 1
    h, p, g, n = (config.mamba_num_heads, config.mamba_head_dim, config.n_groups,
                  config.ssm_state_size)
    kv = (b, max_len, config.num_key_value_heads, config.head_dim)
    mamba, attention = [], []
    for layer_type in config.layer_types:
        if layer_type == "mamba":
            mamba.append(MambaLayerCache(
                conv_x=jnp.zeros((b, w, h, p), config.conv_state_dtype),
                conv_b=jnp.zeros((b, w, g, n), config.conv_state_dtype),
                conv_c=jnp.zeros((b, w, g, n), config.conv_state_dtype),
                ssm=jnp.zeros((b, h, p, n), config.ssm_state_dtype)))
        elif layer_type == "attention":
            attention.append(AttentionLayerCache(keys=jnp.zeros(kv, config.compute_dtype),
                                                 values=jnp.zeros(kv, config.compute_dtype)))
    return Cache(lengths_B=jnp.zeros((b,), jnp.int32), mamba=tuple(mamba),
                 attention=tuple(attention), max_len=max_len)


def defer_ssm_updates(cache: Cache, num_steps: int) -> Cache:
    """The cache with room for `num_steps` one-token forwards whose Mamba state writes are
    deferred to `fold_ssm_updates` (`ssd.ssd_step_deferred`: a step reads each state once and
    writes none). Only one-token forwards may run before the fold, at most `num_steps`."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"defer_ssm_updates(num_steps={num_steps!r}): expected a positive int")
    if has_pending_updates(cache):
        raise ValueError("the cache already holds deferred Mamba state updates: fold them first")
    return cache.replace(mamba=tuple(
        layer.replace(pending=ssd.no_pending_updates(layer.ssm, layer.conv_b.shape[2], num_steps))
        for layer in cache.mamba))


def fold_ssm_updates(cache: Cache) -> Cache:
    """Writes the deferred steps into the Mamba states (each read and written once)."""
    return cache.replace(mamba=tuple(
        layer if layer.pending is None else constrain_layer_cache(layer.replace(
            ssm=ssd.fold_pending(layer.ssm, layer.pending).astype(layer.ssm.dtype), pending=None))
        for layer in cache.mamba))


def has_pending_updates(cache: Cache) -> bool:
    return any(layer.pending is not None for layer in cache.mamba)


def constrain_layer_cache(layer_cache):
    """Pins a layer cache to its logical sharding (no-op without an active mesh)."""
    return layer_cache.replace(**{
        name: sharding.constrain(getattr(layer_cache, name), axes)
        for name, axes in layer_cache.LOGICAL_AXES.items()})


def constrain_cache(cache: Cache) -> Cache:
    """Pins every array of `cache` to its logical sharding (no-op without an active mesh). A
    program that builds a cache from indexing (a row gather) would otherwise leave its placement
    to the partitioner, which may replicate it, and every later program on it would then run all
    rows on every device."""
    return cache.replace(lengths_B=sharding.constrain(cache.lengths_B, ("batch",)),
                         mamba=tuple(constrain_layer_cache(c) for c in cache.mamba),
                         attention=tuple(constrain_layer_cache(c) for c in cache.attention))


def cache_shardings(cache: Cache, mesh: Mesh) -> Cache:
    """NamedShardings for every array of `cache` (works on jax.eval_shape output too)."""
    mesh_shape = dict(mesh.shape)

    def named(axes, array):
        spec = sharding.logical_to_spec(axes, array.shape, mesh_shape, strict=False)
        return jax.sharding.NamedSharding(mesh, spec)

    def layer(layer_cache):
        return layer_cache.replace(**{name: named(axes, getattr(layer_cache, name))
                                      for name, axes in layer_cache.LOGICAL_AXES.items()})

    return cache.replace(lengths_B=named(("batch",), cache.lengths_B),
                         mamba=tuple(layer(c) for c in cache.mamba),
                         attention=tuple(layer(c) for c in cache.attention))
