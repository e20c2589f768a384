"""Tests for grpo_jax.optim: schedule values, one AdamW step by hand, the decay mask."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grpo_jax import optim


def test_cosine_schedule_first_middle_last():
    # W = 4 warmup steps from 1e-7 to 1e-5, cosine to 1e-6 at S = 14 (10 decay steps).
    sched = optim.lr_schedule(lr=1e-5, min_lr=1e-6, warmup_steps=4, max_num_steps=14,
                              warmup_init_lr=1e-7)
    expected = {
        0: 1e-7,
        2: 1e-7 + (1e-5 - 1e-7) * 2 / 4,
        4: 1e-5,
        9: 1e-6 + (1e-5 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 5 / 10)),  # middle: 5.5e-6
        13: 1e-6 + (1e-5 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 9 / 10)),
        14: 1e-6,
        1000: 1e-6,
    }
    for step, value in expected.items():
        np.testing.assert_allclose(float(sched(step)), value, rtol=1e-5, err_msg=f"step {step}")
    np.testing.assert_allclose(float(sched(9)), 5.5e-6, rtol=1e-5)
    values = np.asarray(jax.vmap(sched)(jnp.arange(4, 200)))
    assert values.min() >= np.float32(1e-6)
    assert np.all(np.diff(values) <= 0)


def test_cosine_without_warmup_starts_at_peak():
    sched = optim.lr_schedule(lr=5e-6, min_lr=5e-7, max_num_steps=10)
    np.testing.assert_allclose(float(sched(0)), 5e-6, rtol=1e-6)
    np.testing.assert_allclose(float(sched(5)), 2.75e-6, rtol=1e-5)
    np.testing.assert_allclose(float(sched(10)), 5e-7, rtol=1e-5)


def test_recipe_constant_schedule():
    sched = optim.schedule_from_config(optim.NEMO_RECIPE)
    # Recipe: step k (1-indexed) trains at 5e-7 + 4.5e-6·min(k−1, 13)/13 → index s = k − 1.
    for s in (0, 1, 6, 12, 13, 14, 500):
        np.testing.assert_allclose(float(sched(s)), 5e-7 + 4.5e-6 * min(s, 13) / 13, rtol=1e-5)


def test_schedule_validation():
    with pytest.raises(ValueError, match="min_lr"):
        optim.lr_schedule(lr=1e-6, min_lr=1e-5, max_num_steps=10)
    with pytest.raises(ValueError, match="schedule"):
        optim.lr_schedule(lr=1e-6, max_num_steps=10, schedule="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.lr_schedule(lr=1e-6, max_num_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="unknown optimizer config keys"):
        optim.make_optimizer(learning_rate=1e-5)


def model_like_params():
    return {
        "layers": {
            0: {
                "mixer": {
                    "A_log": jnp.array([0.5, -0.25]),
                    "D": jnp.array([1.0, 2.0]),
                    "dt_bias": jnp.array([0.1, -0.3]),
                    "conv1d": {"kernel": jnp.array([[0.2, -0.1]]), "bias": jnp.array([0.3, 0.4])},
                    "in_proj_x": {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]])},
                    "norm": {"scale": jnp.array([1.0, 1.5])},
                },
                "input_layernorm": {"weight": jnp.array([0.9, 1.1])},
            }
        },
        "embed": jnp.array([[0.7, -0.7], [0.2, 0.1]]),
        "norm_f": {"scale": jnp.array([1.0, 1.0])},
        "lm_head": jnp.array([[0.3, -0.6], [1.2, 0.8]]),
    }


EXPECTED_DECAY = {
    ("layers", "0", "mixer", "A_log"): False,
    ("layers", "0", "mixer", "D"): False,
    ("layers", "0", "mixer", "dt_bias"): False,
    ("layers", "0", "mixer", "conv1d", "kernel"): True,
    ("layers", "0", "mixer", "conv1d", "bias"): False,
    ("layers", "0", "mixer", "in_proj_x", "kernel"): True,
    ("layers", "0", "mixer", "norm", "scale"): False,
    ("layers", "0", "input_layernorm", "weight"): False,
    ("embed",): True,
    ("norm_f", "scale"): False,
    ("lm_head",): True,
}


def _mask_by_names(mask):
    return {tuple(optim.path_names(p)): bool(v)
            for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}


def test_decay_mask_on_nested_dict():
    assert _mask_by_names(optim.weight_decay_mask(model_like_params())) == EXPECTED_DECAY


def test_decay_mask_on_nnx_state():
    class Mixer(nnx.Module):
        def __init__(self, rngs):
            self.A_log = nnx.Param(jnp.zeros(2))
            self.D = nnx.Param(jnp.ones(2))
            self.dt_bias = nnx.Param(jnp.zeros(2))
            self.in_proj = nnx.Linear(2, 3, rngs=rngs)
            self.norm = nnx.RMSNorm(3, rngs=rngs)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([Mixer(rngs)])
            self.embed = nnx.Embed(5, 2, rngs=rngs)

    state = nnx.state(Model(nnx.Rngs(0)), nnx.Param)
    names = _mask_by_names(optim.weight_decay_mask(state))
    assert names == {
        ("embed", "embedding", "value"): True,
        ("layers", "0", "A_log", "value"): False,
        ("layers", "0", "D", "value"): False,
        ("layers", "0", "dt_bias", "value"): False,
        ("layers", "0", "in_proj", "bias", "value"): False,
        ("layers", "0", "in_proj", "kernel", "value"): True,
        ("layers", "0", "norm", "scale", "value"): False,
    }
    # The chain initialises and updates on an NNX state directly.
    tx = optim.make_optimizer(max_num_steps=3)
    opt_state = jax.jit(tx.init)(state)
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, state), opt_state, state)
    assert jax.tree.structure(updates) == jax.tree.structure(state)


def hand_adamw_step(params, grads, lr, b1, b2, eps, wd, clip):
    """One optax-AdamW step (count 0 → 1) written out with numpy, float64."""
    flat_g = {k: np.asarray(v, np.float64) for k, v in grads.items()}
    norm = math.sqrt(sum(float((g**2).sum()) for g in flat_g.values()))
    scale = min(1.0, clip / norm) if clip else 1.0
    out = {}
    for k, p in params.items():
        g = flat_g[k] * scale
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g**2 / (1 - b2)
        decay = wd * np.asarray(p, np.float64) * EXPECTED_DECAY[k]
        out[k] = np.asarray(p, np.float64) - lr * (m_hat / (np.sqrt(v_hat) + eps) + decay)
    return out, norm


@pytest.mark.parametrize("clip", [100.0, 0.5])
def test_one_adamw_step_by_hand(clip):
    params = model_like_params()
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
    cfg = dict(lr=1e-2, min_lr=1e-3, warmup_steps=2, warmup_init_lr=4e-3, max_num_steps=10,
               adam_beta1=0.8, adam_beta2=0.9, adam_eps=1e-3, weight_decay=0.5, clip_grad=clip)
    tx = optim.make_optimizer(cfg)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    new_params = jax.tree.map(lambda p, u: p + u, params, updates)

    flat = lambda tree: {tuple(optim.path_names(p)): v
                         for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    expected, grad_norm = hand_adamw_step(flat(params), flat(grads), lr=4e-3, b1=0.8, b2=0.9,
                                          eps=1e-3, wd=0.5, clip=clip)
    assert (grad_norm > clip) == (clip == 0.5)  # the second case really clips
    got = flat(new_params)
    for k in expected:
        np.testing.assert_allclose(np.asarray(got[k]), expected[k], rtol=1e-5, atol=1e-7, err_msg=str(k))
    # An undecayed leaf moves by the Adam term alone: −lr·ĝ/(|ĝ| + eps) on the first step.
    a_log_before = np.asarray(params["layers"][0]["mixer"]["A_log"])
    a_log_step = np.asarray(got[("layers", "0", "mixer", "A_log")]) - a_log_before
    g = np.asarray(grads["layers"][0]["mixer"]["A_log"], np.float64) * min(1.0, clip / grad_norm)
    np.testing.assert_allclose(a_log_step, -4e-3 * g / (np.abs(g) + 1e-3), rtol=1e-5)


def test_make_optimizer_accepts_config_forms_and_clip_off():
    params = {"w": jnp.ones((2,))}
    for config in (optim.OptimizerConfig(), {"lr": 1e-5, "max_num_steps": 5}, None):
        tx = optim.make_optimizer(config)
        tx.update({"w": jnp.ones((2,))}, tx.init(params), params)
    on = optim.make_optimizer(clip_grad=1.0).init(params)
    off = optim.make_optimizer(clip_grad=None).init(params)
    assert jax.tree.structure(on) == jax.tree.structure(off)
