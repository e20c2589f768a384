"""Nemotron-H blocks: RMSNorm, Mamba-2 mixer, attention, squared-ReLU MLP, the residual block.

Weights are stored in `param_dtype` and cast to `compute_dtype` where they are used. Every weight
carries logical axis names (`logical_axes`), and the fused HF projections are stored per component
so each shards over heads or groups:

- Mamba-2: in_proj = z | x | B | C | dt → z_proj, x_proj (D, H, P), b_proj, c_proj (D, G, N),
  dt_proj (D, H); conv1d = x | B | C → conv_x (K, H, P), conv_b, conv_c (K, G, N) (+ biases).
- Attention: q_proj (D, H, Dh), k_proj / v_proj (D, K, Dh), o_proj (H, Dh, D).

Layer calls take and return the layer's cache entry (None in training). With a cache, row b
appends its first num_valid_B[b] tokens; the rest is padding that leaves the cache as it was.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grpo_jax.models import ssd
from grpo_jax.models.attention import causal_attention
from grpo_jax.models.cache import AttentionLayerCache, MambaLayerCache, constrain_layer_cache
from grpo_jax.models.config import NemotronHConfig
from grpo_jax.sharding import constrain

_F32 = jnp.float32


def _param(value, *axes) -> nnx.Param:
    return nnx.Param(value, logical_axes=tuple(axes))


def draw_normal(rngs: nnx.Rngs, config: NemotronHConfig, **shapes) -> list[jax.Array]:
    """N(0, initializer_range²) weights of the given shapes, in order, from ONE RNG call.

    XLA's compile time grows with every RNG call (threefry is unrolled per call site: 13 calls
    compile ~10x slower than one call of the same total size), so a module draws all at once.
    """
    return [config.initializer_range * u for u in _draw(rngs, jax.random.normal, shapes)]


def _draw(rngs: nnx.Rngs, sample, shapes: dict) -> list[jax.Array]:
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = sample(rngs.params(), (sum(sizes),), _F32)
    offsets = np.cumsum([0] + sizes)
    return [flat[lo:hi].reshape(shape)
            for lo, hi, shape in zip(offsets[:-1], offsets[1:], shapes.values())]


def _use(param: nnx.Param, dtype) -> jax.Array:
    return param[...].astype(dtype)


def _value(param: nnx.Param | None):
    return None if param is None else param[...]


def rms_norm(x, weight, eps: float, out_dtype):
    """x / rms(x) · w, all in float32 and cast once at the end (transformers >= 5.18)."""
    x = x.astype(_F32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
    return (weight.astype(_F32) * x).astype(out_dtype)


class RMSNorm(nnx.Module):
    def __init__(self, config: NemotronHConfig):
        self.eps = config.layer_norm_epsilon
        self.out_dtype = config.compute_dtype
        self.weight = _param(jnp.ones((config.hidden_size,), config.param_dtype), "embed")

    def __call__(self, x_BTD):
        return rms_norm(x_BTD, self.weight[...], self.eps, self.out_dtype)


def gated_group_rms_norm(y_BTGHP, z_BTGHP, weight_GHP, eps: float):
    """RMSNorm(y · SiLU(z)) over each group's H·P channels, times the weight; float32 out.

    The gate multiplies before the norm (mamba_ssm `norm_before_gate=False`); a group is the
    contiguous slice of heads that share B and C, which is also what one tensor shard holds.
    """
    gated = y_BTGHP.astype(_F32) * jax.nn.silu(z_BTGHP.astype(_F32))
    variance = jnp.mean(jnp.square(gated), axis=(-2, -1), keepdims=True)
    return gated * jax.lax.rsqrt(variance + eps) * weight_GHP.astype(_F32)


def causal_conv_silu(history_BW_, new_BT_, kernel_K_, bias_):
    """SiLU of the depthwise causal conv of `new`, preceded by the W = K-1 `history` columns.

    out[t] = bias + Σ_k kernel[k] · column[t - (K-1) + k]: kernel[K-1] weighs the current token.
    Returns (out_BT_ float32, window_B(W+T)_ float32: history and new columns, oldest first).
    """
    window = jnp.concatenate([history_BW_.astype(_F32), new_BT_.astype(_F32)], axis=1)
    k, t = kernel_K_.shape[0], new_BT_.shape[1]
    kernel = kernel_K_.astype(_F32)
    out = sum(window[:, i:i + t] * kernel[i] for i in range(k))
    if bias_ is not None:
        out = out + bias_.astype(_F32)
    return jax.nn.silu(out), window


def _last_columns(window_BW_, num_valid_B, width: int):
    """Per row, the `width` window columns ending at the row's last valid token."""
    index_BW = num_valid_B[:, None] + jnp.arange(width)
    index = index_BW.reshape(index_BW.shape + (1,) * (window_BW_.ndim - 2))
    return jnp.take_along_axis(window_BW_, index, axis=1)


def _keep_rows(valid_B, new, old):
    """new where the row appended tokens, else old bit for bit."""
    return jnp.where(valid_B.reshape((-1,) + (1,) * (new.ndim - 1)), new.astype(old.dtype), old)


# How a Mamba mixer applies in_proj, read when a function is traced (see `in_proj_formulation`).
IN_PROJ_FORMULATIONS = ("auto", "split", "fused")
_in_proj_selected = ["auto"]


@contextlib.contextmanager
def use_in_proj_formulation(name: str) -> Iterator[None]:
    """Selects the in_proj formulation for everything TRACED inside the block (like
    `attention.use_decode_formulation`): "split", "fused" or "auto" (the default)."""
    if name not in IN_PROJ_FORMULATIONS:
        raise ValueError(f"in_proj formulation {name!r}: expected one of {IN_PROJ_FORMULATIONS}")
    previous, _in_proj_selected[0] = _in_proj_selected[0], name
    try:
        yield
    finally:
        _in_proj_selected[0] = previous


def in_proj_formulation() -> str:
    """"split": one matmul per stored component (z, x, B, C, dt); "fused": one matmul over the
    components concatenated per group. Both give the same numbers (each output is the same dot
    product). The concatenation is a trace-time copy of the weights; in the sampler's decode scan
    XLA hoists it out of the loop, so it is paid once per decode chunk.

    "auto" is fused on CPU, where five small matmuls cost more than one (a decode step of the CPU
    benchmark model: 5.05 -> 4.84 ms; training and prefill unchanged within noise;
    docs/performance.md), and split elsewhere: on a GPU the per-chunk copy of the in_proj weights
    (about a quarter of the 9B's) is not measured to pay for itself."""
    if _in_proj_selected[0] != "auto":
        return _in_proj_selected[0]
    return "fused" if jax.default_backend() == "cpu" else "split"


class Mamba2Mixer(nnx.Module):
    """Mamba-2 mixer (mamba_ssm Mamba2 with a gated group RMSNorm, no projection biases)."""

    def __init__(self, config: NemotronHConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        d, h, p = c.hidden_size, c.mamba_num_heads, c.mamba_head_dim
        g, n, k = c.n_groups, c.ssm_state_size, c.conv_kernel
        z, x, b, c_, dt, out = draw_normal(rngs, c, z=(d, h, p), x=(d, h, p), b=(d, g, n),
                                           c=(d, g, n), dt=(d, h), out=(h, p, d))
        self.z_proj = _param(z.astype(c.param_dtype), "embed", "ssm_heads", None)
        self.x_proj = _param(x.astype(c.param_dtype), "embed", "ssm_heads", None)
        self.b_proj = _param(b.astype(c.param_dtype), "embed", "ssm_groups", None)
        self.c_proj = _param(c_.astype(c.param_dtype), "embed", "ssm_groups", None)
        self.dt_proj = _param(dt.astype(c.param_dtype), "embed", "ssm_heads")
        self.out_proj = _param(out.astype(c.param_dtype), "ssm_heads", None, "embed")

        # Conv as PyTorch's Conv1d: U(±1/sqrt(fan_in)), fan_in = K for a depthwise conv.
        # dt log-uniform in [time_step_min, time_step_max], floored; dt_bias = softplus⁻¹(dt).
        u = _draw(rngs, jax.random.uniform, dict(
            conv_x=(k, h, p), conv_b=(k, g, n), conv_c=(k, g, n), conv_x_bias=(h, p),
            conv_b_bias=(g, n), conv_c_bias=(g, n), dt=(h,)))
        conv = [((2 * v - 1) / math.sqrt(k)).astype(c.param_dtype) for v in u[:6]]
        self.conv_x = _param(conv[0], None, "ssm_heads", None)
        self.conv_b = _param(conv[1], None, "ssm_groups", None)
        self.conv_c = _param(conv[2], None, "ssm_groups", None)
        if c.use_conv_bias:
            self.conv_x_bias = _param(conv[3], "ssm_heads", None)
            self.conv_b_bias = _param(conv[4], "ssm_groups", None)
            self.conv_c_bias = _param(conv[5], "ssm_groups", None)
        else:
            self.conv_x_bias = self.conv_b_bias = self.conv_c_bias = None
        log_min = math.log(max(c.time_step_min, c.time_step_floor))
        log_max = math.log(c.time_step_max)
        dt = jnp.maximum(jnp.exp(log_min + u[6] * (log_max - log_min)), c.time_step_floor)
        self.dt_bias = _param((dt + jnp.log(-jnp.expm1(-dt))).astype(c.param_dtype), "ssm_heads")
        # S4D-real A = -(1..H).
        self.A_log = _param(jnp.log(jnp.arange(1, h + 1, dtype=_F32)).astype(c.param_dtype),
                            "ssm_heads")
        self.D = _param(jnp.ones((h,), c.param_dtype), "ssm_heads")
        self.norm = _param(jnp.ones((h, p), c.param_dtype), "ssm_heads", None)

    def __call__(self, u_BTD, cache: MambaLayerCache | None, num_valid_B, lengths_B):
        c = self.config
        cdt = c.compute_dtype
        b, t, _ = u_BTD.shape
        g, hg, p = c.n_groups, c.mamba_heads_per_group, c.mamba_head_dim

        z_BTHP, x_BTHP, B_BTGN, C_BTGN, dt_BTH = self._in_proj(u_BTD)
        x_BTHP = constrain(x_BTHP, ("batch", None, "ssm_heads", None))
        B_BTGN = constrain(B_BTGN, ("batch", None, "ssm_groups", None))
        C_BTGN = constrain(C_BTGN, ("batch", None, "ssm_groups", None))

        # Causal conv + SiLU, continuing from the cached raw columns.
        if cache is None:
            history = [jnp.zeros((b, c.conv_kernel - 1) + v.shape[2:], _F32)
                       for v in (x_BTHP, B_BTGN, C_BTGN)]
        else:
            history = [cache.conv_x, cache.conv_b, cache.conv_c]
        x_BTHP, x_window = causal_conv_silu(history[0], x_BTHP, self.conv_x[...],
                                            _value(self.conv_x_bias))
        B_BTGN, b_window = causal_conv_silu(history[1], B_BTGN, self.conv_b[...],
                                            _value(self.conv_b_bias))
        C_BTGN, c_window = causal_conv_silu(history[2], C_BTGN, self.conv_c[...],
                                            _value(self.conv_c_bias))

        # SSM, float32 (the chunked scan's contraction operands in ssd_matmul_dtype): the recurrent
        # step for one cached token, else the chunked scan.
        recurrent = cache is not None and t == 1
        dt_BTH = self._time_step(dt_BTH, recurrent, lengths_B)
        if cache is not None:
            # dt = 0 makes a padding step a no-op, so the state is each row's own final state.
            valid_BT = jnp.arange(t)[None, :] < num_valid_B[:, None]
            dt_BTH = jnp.where(valid_BT[..., None], dt_BTH, 0.0)
        A_GH = -jnp.exp(self.A_log[...].astype(_F32)).reshape(g, hg)
        x_BTGHP = x_BTHP.reshape(b, t, g, hg, p)
        dt_BTGH = dt_BTH.reshape(b, t, g, hg)
        pending = None
        if recurrent and cache.pending is not None:
            # Deferred (`cache.defer_ssm_updates`): the state stays unwritten until the fold.
            y_BHP, pending = ssd.ssd_step_deferred(
                cache.ssm, cache.pending, x_BTHP[:, 0], dt_BTH[:, 0], A_GH.reshape(-1),
                B_BTGN[:, 0], C_BTGN[:, 0])
            y_BTGHP = y_BHP.reshape(b, 1, g, hg, p)
            state_BGHPN = cache.ssm
        elif recurrent:
            # On the cache's own (B, H, P, N) state, with B and C repeated to heads (small), and
            # rows without a token kept inside the step: the state is read and written once, in
            # place (see `ssd_step_heads`).
            y_BHP, state_BHPN = ssd.ssd_step_heads(
                cache.ssm, x_BTHP[:, 0], dt_BTH[:, 0], A_GH.reshape(-1),
                jnp.repeat(B_BTGN[:, 0], hg, axis=1), jnp.repeat(C_BTGN[:, 0], hg, axis=1),
                update_B=num_valid_B > 0)
            y_BTGHP = y_BHP.reshape(b, 1, g, hg, p)
            state_BGHPN = state_BHPN
        else:
            state_BGHPN = None if cache is None else cache.ssm.reshape(b, g, hg, p, -1)
            y_BTGHP, state_BGHPN = ssd.ssd_chunked(x_BTGHP, dt_BTGH, A_GH, B_BTGN, C_BTGN,
                                                   c.chunk_size, state_BGHPN,
                                                   matmul_dtype=c.ssd_matmul_dtype)
        y_BTGHP = y_BTGHP + self.D[...].astype(_F32).reshape(g, hg)[..., None] * x_BTGHP

        # Gated norm and out_proj (row-parallel over heads).
        y_BTGHP = gated_group_rms_norm(y_BTGHP, z_BTHP.reshape(b, t, g, hg, p),
                                       self.norm[...].reshape(g, hg, p), c.layer_norm_epsilon)
        out_BTD = jnp.einsum("btghp,ghpd->btd", y_BTGHP.astype(cdt),
                             _use(self.out_proj, cdt).reshape(g, hg, p, -1))
        if cache is None:
            return out_BTD, None
        return out_BTD, _updated_cache(cache, num_valid_B, state_BGHPN,
                                       (x_window, b_window, c_window),
                                       state_selected=recurrent, pending=pending)

    def _in_proj(self, u_BTD):
        """(z_BTHP, x_BTHP, B_BTGN, C_BTGN, dt_BTH), as `in_proj_formulation` says."""
        c = self.config
        cdt = c.compute_dtype
        weights = [_use(w, cdt) for w in (self.z_proj, self.x_proj, self.b_proj, self.c_proj,
                                          self.dt_proj)]
        if in_proj_formulation() == "split":
            return tuple(jnp.einsum(f"btd,{spec}->bt{spec[1:]}", u_BTD, w)
                         for spec, w in zip(("dhp", "dhp", "dgn", "dgn", "dh"), weights))
        # Concatenated per group, so a tensor shard (whole groups) holds its own columns of all
        # five components.
        b, t, d = u_BTD.shape
        g = c.n_groups
        per_group = [w.reshape(d, g, -1) for w in weights]
        widths = [w.shape[-1] for w in per_group]
        out_BTGX = jnp.einsum("btd,dgx->btgx", u_BTD, jnp.concatenate(per_group, axis=-1))
        splits = np.cumsum(widths)[:-1].tolist()
        return tuple(part.reshape((b, t) + w.shape[1:]) for part, w in
                     zip(jnp.split(out_BTGX, splits, axis=-1), weights))

    def _time_step(self, dt_raw_BTH, recurrent: bool, lengths_B):
        """softplus(dt_raw + dt_bias) in float32, clamped to >= time_step_min where the rule says.

        "prefill" clamps where transformers runs its chunked scan: every forward of more than one
        token, and a one-token forward into an empty row (transformers prefills a one-token prompt
        with the chunked scan too; only a step on a row with history takes its recurrent path).
        (transformers computes the softplus in the model dtype; float32 is at least as exact.)
        """
        dt_BTH = jax.nn.softplus(dt_raw_BTH.astype(_F32) + self.dt_bias[...].astype(_F32))
        clamped_BTH = jnp.maximum(dt_BTH, self.config.time_step_min)
        rule = self.config.time_step_clamp
        if rule == "always" or (rule == "prefill" and not recurrent):
            return clamped_BTH
        if rule == "prefill":
            return jnp.where((lengths_B == 0)[:, None, None], clamped_BTH, dt_BTH)
        return dt_BTH


def _updated_cache(cache: MambaLayerCache, num_valid_B, state_BGHPN, windows,
                   state_selected: bool = False, pending: ssd.PendingUpdates | None = None):
    """Each row's conv columns and SSM state at its last valid token; rows without valid tokens
    keep their cache bit for bit. `state_selected`: the state already kept those rows (with
    `pending`: it is the unwritten state the pending steps apply to)."""
    appended_B = num_valid_B > 0
    width = cache.conv_x.shape[1]
    conv_x, conv_b, conv_c = (
        _keep_rows(appended_B, _new_columns(window, num_valid_B, width), old)
        for window, old in zip(windows, (cache.conv_x, cache.conv_b, cache.conv_c)))
    ssm = state_BGHPN.reshape(cache.ssm.shape).astype(cache.ssm.dtype)
    if not state_selected:
        ssm = _keep_rows(appended_B, ssm, cache.ssm)
    return constrain_layer_cache(MambaLayerCache(conv_x, conv_b, conv_c, ssm, pending))


def _new_columns(window_BW_, num_valid_B, width: int):
    """`_last_columns` for rows that appended tokens. With one new column the answer is the last
    `width` columns, a static slice: no gather (rows without a token are restored by the caller)."""
    if window_BW_.shape[1] == width + 1:
        return window_BW_[:, 1:]
    return _last_columns(window_BW_, num_valid_B, width)


class Attention(nnx.Module):
    """Causal GQA without positional encoding or biases; scale head_dim^-0.5, float32 softmax."""

    def __init__(self, config: NemotronHConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        d, h, kv, dh = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
        q, k, v, o = draw_normal(rngs, c, q=(d, h, dh), k=(d, kv, dh), v=(d, kv, dh), o=(h, dh, d))
        self.q_proj = _param(q.astype(c.param_dtype), "embed", "heads", None)
        self.k_proj = _param(k.astype(c.param_dtype), "embed", "kv_heads", None)
        self.v_proj = _param(v.astype(c.param_dtype), "embed", "kv_heads", None)
        self.o_proj = _param(o.astype(c.param_dtype), "heads", None, "embed")

    def __call__(self, u_BTD, cache: AttentionLayerCache | None, num_valid_B, lengths_B,
                 attend_len: int | None = None):
        """`attend_len` (static): attend to the first attend_len buffer positions only; the
        caller promises every row holds at most that many tokens after this call."""
        cdt = self.config.compute_dtype
        b, t, _ = u_BTD.shape
        q_BTHD = jnp.einsum("btd,dhk->bthk", u_BTD, _use(self.q_proj, cdt))
        k_BTKD = jnp.einsum("btd,dhk->bthk", u_BTD, _use(self.k_proj, cdt))
        v_BTKD = jnp.einsum("btd,dhk->bthk", u_BTD, _use(self.v_proj, cdt))
        q_BTHD = constrain(q_BTHD, ("batch", None, "heads", None))
        if cache is None:
            keys_BSKD, values_BSKD = k_BTKD, v_BTKD
            query_pos_BT = jnp.broadcast_to(jnp.arange(t), (b, t))
            new_cache = None
        else:
            query_pos_BT = lengths_B[:, None] + jnp.arange(t)
            # Padding goes to position S, out of range, and the scatter drops it (as it drops
            # writes past a full buffer); a clamped update would overwrite the last position.
            max_len = cache.keys.shape[1]
            valid_BT = jnp.arange(t)[None, :] < num_valid_B[:, None]
            write_pos_BT = jnp.where(valid_BT, query_pos_BT, max_len)
            # One scatter per row (vmap: the batch is a scatter batch dimension), so a batch
            # sharded over devices writes its own rows; with explicit row indices the SPMD
            # partitioner all-gathered every layer's new keys, values and indices at every step.
            write = jax.vmap(lambda buf_SKD, pos_T, new_TKD: buf_SKD.at[pos_T].set(new_TKD, mode="drop"))
            keys_BSKD = write(cache.keys, write_pos_BT, k_BTKD.astype(cache.keys.dtype))
            values_BSKD = write(cache.values, write_pos_BT, v_BTKD.astype(cache.values.dtype))
            new_cache = constrain_layer_cache(AttentionLayerCache(keys_BSKD, values_BSKD))
            keys_BSKD, values_BSKD = new_cache.keys, new_cache.values
            if attend_len is not None and attend_len < max_len:
                keys_BSKD, values_BSKD = keys_BSKD[:, :attend_len], values_BSKD[:, :attend_len]
            keys_BSKD, values_BSKD = keys_BSKD.astype(cdt), values_BSKD.astype(cdt)
        out_BTHD = causal_attention(q_BTHD, keys_BSKD, values_BSKD, query_pos_BT,
                                    query_chunk=self.config.attention_query_chunk,
                                    self_attention=cache is None,
                                    implementation=self.config.attention_implementation)
        out_BTD = jnp.einsum("bthk,hkd->btd", out_BTHD, _use(self.o_proj, cdt))
        return out_BTD, new_cache


class MLP(nnx.Module):
    """down(relu(up(x))²), no gate, no biases."""

    def __init__(self, config: NemotronHConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        up, down = draw_normal(rngs, c, up=(c.hidden_size, c.intermediate_size),
                               down=(c.intermediate_size, c.hidden_size))
        self.up_proj = _param(up.astype(c.param_dtype), "embed", "mlp")
        self.down_proj = _param(down.astype(c.param_dtype), "mlp", "embed")

    def __call__(self, u_BTD):
        cdt = self.config.compute_dtype
        h_BTF = jnp.einsum("btd,df->btf", u_BTD, _use(self.up_proj, cdt))
        h_BTF = constrain(jnp.square(jax.nn.relu(h_BTF)), ("batch", None, "mlp"))
        return jnp.einsum("btf,fd->btd", h_BTF, _use(self.down_proj, cdt))


class Block(nnx.Module):
    """x + mixer(RMSNorm(x)), the residual stream in compute dtype."""

    MIXERS = {"mamba": Mamba2Mixer, "attention": Attention, "mlp": MLP}

    def __init__(self, config: NemotronHConfig, layer_type: str, *, rngs: nnx.Rngs):
        self.layer_type = layer_type
        self.norm = RMSNorm(config)
        self.mixer = self.MIXERS[layer_type](config, rngs=rngs)

    def __call__(self, x_BTD, layer_cache, num_valid_B, lengths_B, attend_len: int | None = None):
        h_BTD = self.norm(x_BTD)
        if self.layer_type == "mamba":
            h_BTD, layer_cache = self.mixer(h_BTD, layer_cache, num_valid_B, lengths_B)
        elif self.layer_type == "attention":
            h_BTD, layer_cache = self.mixer(h_BTD, layer_cache, num_valid_B, lengths_B, attend_len)
        else:
            h_BTD = self.mixer(h_BTD)
        return constrain(x_BTD + h_BTD, ("batch", None, "act_embed")), layer_cache
