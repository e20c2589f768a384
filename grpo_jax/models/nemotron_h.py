"""NemotronH: embedding → hybrid Mamba-2 / attention / MLP blocks → norm_f → untied lm_head.

One forward serves training (no cache), prefill (empty cache), continuation (k tokens appended
per row) and decode (one token):

    logits_BTV = model(input_ids_BT)                                  # float32
    hidden_BTD, cache = model.forward(input_ids_BT, cache=cache, num_valid_B=n_B)
    logits_BTV = model.logits(hidden_BTD)                             # float32
    cache = model.init_cache(batch_size, max_len)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from grpo_jax import sharding
from grpo_jax.models.cache import Cache, has_pending_updates, init_cache
from grpo_jax.models.config import REMAT_POLICIES, NemotronHConfig
from grpo_jax.models.layers import Block, RMSNorm, draw_normal
from grpo_jax.models.precision import einsum_f32
from grpo_jax.sharding import constrain


def _remat_block(block: Block, *args, policy, attend_len=None):
    """Block.__call__ under jax.checkpoint. Blocks never mutate their state, so the state goes in
    as a plain argument (which also works when the model is a closure constant of a jit); the
    static `attend_len` is closed over, never traced."""
    graphdef, state = nnx.split(block)
    return jax.checkpoint(
        lambda state, *args: nnx.merge(graphdef, state)(*args, attend_len=attend_len),
        policy=policy)(state, *args)


class NemotronH(nnx.Module):
    """Nemotron-H causal LM (NemotronHForCausalLM in transformers)."""

    def __init__(self, config: NemotronHConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        embedding, lm_head = draw_normal(rngs, c, embedding=(c.vocab_size, c.hidden_size),
                                         lm_head=(c.hidden_size, c.vocab_size))
        self.embedding = nnx.Param(embedding.astype(c.param_dtype), logical_axes=("vocab", "embed"))
        self.layers = nnx.List([Block(c, layer_type, rngs=rngs) for layer_type in c.layer_types])
        self.norm_f = RMSNorm(c)
        self.lm_head = nnx.Param(lm_head.astype(c.param_dtype), logical_axes=("embed", "vocab"))

    def __call__(self, input_ids_BT) -> jax.Array:
        """Training forward: float32 logits (B, T, V)."""
        hidden_BTD, _ = self.forward(input_ids_BT)
        return self.logits(hidden_BTD)

    def logits(self, hidden_XD) -> jax.Array:
        """float32 lm_head of hidden states that `forward` already passed through norm_f."""
        cdt = self.config.compute_dtype
        logits_XV = einsum_f32("...d,dv->...v", hidden_XD.astype(cdt),
                               self.lm_head[...].astype(cdt))
        batch = ("batch",) if logits_XV.ndim > 1 else ()
        return constrain(logits_XV, batch + (None,) * (logits_XV.ndim - 2) + ("vocab",))

    def init_cache(self, batch_size: int, max_len: int) -> Cache:
        return init_cache(self.config, batch_size, max_len)

    def forward(self, input_ids_BT, cache: Cache | None = None, num_valid_B=None, *,
                attend_len: int | None = None) -> tuple[jax.Array, Cache | None]:
        """Hidden states after norm_f (B, T, D) in compute dtype, and the updated cache.

        Without a cache this is the training forward; `num_valid_B` is not needed there, since the
        model is causal and right padding cannot change earlier positions. With a cache, row b
        appends its first num_valid_B[b] tokens (default: all T) at positions lengths_B[b], ...;
        the remaining tokens are right padding that changes nothing, and rows with 0 valid tokens
        come back bit for bit. T = 1 uses the recurrent one-token update, T > 1 the chunked scan.
        Tokens past the cache's max_len are dropped from the KV buffers; callers size the cache.

        `attend_len` (a static int, with a cache only): attention reads only the first attend_len
        positions of each KV buffer, so a decode step's reads scale with the tokens held rather
        than the buffer size. The caller promises that no row holds more than attend_len tokens
        after this call (the sampler passes a bucket of its longest live row).
        """
        c = self.config
        b, t = self._check_inputs(input_ids_BT, cache, num_valid_B, attend_len)
        if cache is not None:
            num_valid_B = (jnp.full((b,), t, jnp.int32) if num_valid_B is None
                           else jnp.clip(jnp.asarray(num_valid_B, jnp.int32), 0, t))
        lengths_B = None if cache is None else cache.lengths_B

        x_BTD = jnp.take(self.embedding[...], input_ids_BT, axis=0).astype(c.compute_dtype)
        x_BTD = constrain(x_BTD, ("batch", None, "act_embed"))
        if c.remat == "none":
            apply_block = functools.partial(Block.__call__, attend_len=attend_len)
        else:
            apply_block = functools.partial(_remat_block, policy=REMAT_POLICIES[c.remat],
                                            attend_len=attend_len)
        layer_caches = {"mamba": [], "attention": []}
        for block in self.layers:
            layer_cache = None
            if cache is not None and block.layer_type in layer_caches:
                done = layer_caches[block.layer_type]
                layer_cache = getattr(cache, block.layer_type)[len(done)]
            x_BTD, layer_cache = apply_block(block, x_BTD, layer_cache, num_valid_B, lengths_B)
            if cache is not None and block.layer_type in layer_caches:
                layer_caches[block.layer_type].append(layer_cache)
        hidden_BTD = self.norm_f(x_BTD)
        if cache is None:
            return hidden_BTD, None
        return hidden_BTD, cache.replace(lengths_B=cache.lengths_B + num_valid_B,
                                         mamba=tuple(layer_caches["mamba"]),
                                         attention=tuple(layer_caches["attention"]))

    def _check_inputs(self, input_ids_BT, cache, num_valid_B, attend_len=None) -> tuple[int, int]:
        """Static checks, so bad input fails here and not deep inside a trace."""
        shape, dtype = np.shape(input_ids_BT), getattr(input_ids_BT, "dtype", None)
        if len(shape) != 2 or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"input_ids_BT has shape {shape} and dtype {dtype}: expected an "
                             "integer array of shape (batch, time)")
        b, t = shape
        if t == 0:
            raise ValueError("input_ids_BT has no time steps: expected T >= 1")
        if cache is None:
            return b, t
        c = self.config
        if t > 1 and has_pending_updates(cache):
            raise ValueError(f"input_ids_BT has {t} tokens per row, but the cache holds deferred "
                             "Mamba state updates: only one-token steps may run before "
                             "cache.fold_ssm_updates")
        if attend_len is not None and (not isinstance(attend_len, int) or attend_len < 1):
            raise ValueError(f"attend_len={attend_len!r}: expected a positive int (static)")
        counts = (len(cache.mamba), len(cache.attention))
        expected = (c.layer_types.count("mamba"), c.layer_types.count("attention"))
        if counts != expected:
            raise ValueError(f"cache has {counts[0]} Mamba / {counts[1]} attention layers: "
                             f"expected {expected[0]} / {expected[1]} for this config")
        if cache.batch_size != b:
            raise ValueError(f"input_ids_BT has batch {b} but the cache holds {cache.batch_size} "
                             "rows")
        if cache.attention and t > cache.max_len:
            raise ValueError(f"input_ids_BT has {t} tokens per row, more than the cache's "
                             f"max_len={cache.max_len}")
        if num_valid_B is not None and np.shape(num_valid_B) != (b,):
            raise ValueError(f"num_valid_B has shape {np.shape(num_valid_B)}: expected ({b},)")
        return b, t


def create_model(config: NemotronHConfig, *, seed: int = 0, mesh: Mesh | None = None
                 ) -> NemotronH:
    """A randomly initialised NemotronH, initialised in one compiled call.

    With a mesh, every parameter is created directly on its sharding (no device ever holds the
    whole model unless the mesh says so).
    """
    if mesh is not None:
        sharding.validate_model_mesh(config, mesh)
    graphdef, abstract_state = nnx.split(
        nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(seed))))
    out_shardings = (None if mesh is None else
                     sharding.state_shardings(abstract_state, mesh))

    @functools.partial(jax.jit, out_shardings=out_shardings)
    def init():
        return nnx.state(NemotronH(config, rngs=nnx.Rngs(seed)))

    return nnx.merge(graphdef, init())
