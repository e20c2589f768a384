"""The model object: dtypes, rematerialisation, the cache layout, input checks, random init."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grpo_jax.models import NemotronHConfig, create_model, load_hf_model
from tests.models.helpers import Runner, make_hf_model, relative_error, save_hf_model_dir

# Three blocks, one of each type: cheap to differentiate.
SMALL_HF_CONFIG = dict(
    vocab_size=64, hidden_size=32, hybrid_override_pattern="M*-",
    num_attention_heads=2, num_key_value_heads=1, head_dim=8, intermediate_size=48,
    mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=8, n_groups=2, conv_kernel=4,
    chunk_size=4, initializer_range=0.1,
)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    return save_hf_model_dir(make_hf_model(SMALL_HF_CONFIG, seed=5),
                             tmp_path_factory.mktemp("small"))


def test_bfloat16_compute_keeps_float32_weights_and_logits(hf_tiny, tiny_runner):
    ids = np.random.default_rng(0).integers(0, 100, (2, 19))
    runner = Runner(load_hf_model(hf_tiny[1], compute_dtype=jnp.bfloat16))
    assert runner.model.layers[0].mixer.x_proj[...].dtype == jnp.float32
    logits = runner.full(ids)
    assert logits.dtype == np.float32
    # bf16 noise on logits of scale ~3 (reference §6: ~1e-2 absolute at scale 0.7).
    assert relative_error(logits, tiny_runner.full(ids)) < 3e-2


def test_bfloat16_ssd_operands_reach_the_scan_and_stay_near_float32(hf_tiny, tiny_runner):
    ids = np.random.default_rng(1).integers(0, 100, (2, 19))
    runner = Runner(load_hf_model(hf_tiny[1], ssd_matmul_dtype=jnp.bfloat16))
    logits, reference = runner.full(ids), tiny_runner.full(ids)
    assert logits.dtype == np.float32
    # Only the SSD's contraction operands are rounded: a small change, but a change.
    assert 0 < relative_error(logits, reference) < 1e-3


@functools.partial(jax.jit, static_argnums=0)
def _grads(graphdef, state, ids):
    def loss(state):
        logits = nnx.merge(graphdef, state)(ids)
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[..., 0])

    return jax.grad(loss)(state)


def test_remat_changes_memory_not_gradients(small_checkpoint):
    ids = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 11)))
    grads = {}
    for remat in ("none", "full"):
        graphdef, state = nnx.split(load_hf_model(small_checkpoint, remat=remat))
        grads[remat] = jax.tree.leaves(_grads(graphdef, state, ids))
    for full, plain in zip(grads["full"], grads["none"]):
        np.testing.assert_allclose(full, plain, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("remat", ["full", "dots_saveable", "dots_with_no_batch_dims_saveable"])
def test_every_block_is_rematerialised(small_checkpoint, remat):
    model = load_hf_model(small_checkpoint, remat=remat)
    jaxpr = str(jax.make_jaxpr(lambda ids: model(ids))(jnp.zeros((1, 5), jnp.int32)))
    assert jaxpr.count("remat2[") == len(model.layers)


def test_cache_layout(small_checkpoint):
    model = load_hf_model(small_checkpoint)
    cache = model.init_cache(batch_size=3, max_len=10)
    (mamba,), (attention,) = cache.mamba, cache.attention
    assert cache.lengths_B.dtype == jnp.int32 and cache.lengths_B.shape == (3,)
    assert mamba.conv_x.shape == (3, 3, 4, 8) and mamba.conv_b.shape == (3, 3, 2, 8)
    assert mamba.ssm.shape == (3, 4, 8, 8) and mamba.ssm.dtype == jnp.float32
    assert attention.keys.shape == (3, 10, 1, 8) and cache.max_len == 10


def test_bad_inputs_raise_before_tracing(small_checkpoint):
    model = load_hf_model(small_checkpoint)
    cache = model.init_cache(2, 8)
    ids = jnp.zeros((2, 4), jnp.int32)
    with pytest.raises(ValueError, match=r"shape \(2, 4\) and dtype float32: expected an integer"):
        model.forward(ids.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        model.forward(ids[0])
    with pytest.raises(ValueError, match="batch 1 but the cache holds 2 rows"):
        model.forward(ids[:1], cache=cache)
    with pytest.raises(ValueError, match="12 tokens per row, more than the cache's max_len=8"):
        model.forward(jnp.zeros((2, 12), jnp.int32), cache=cache)
    with pytest.raises(ValueError, match=r"num_valid_B has shape \(3,\): expected \(2,\)"):
        model.forward(ids, cache=cache, num_valid_B=jnp.ones(3, jnp.int32))
    with pytest.raises(ValueError, match="max_len=0"):
        model.init_cache(2, 0)


def test_create_model_initialises_like_transformers():
    """Random init in one compiled call: A_log = log(1..H), D = 1, dt = softplus(dt_bias) in
    [time_step_min, time_step_max], norms 1, weights with std initializer_range."""
    config = NemotronHConfig.from_hf_config(SMALL_HF_CONFIG, initializer_range=0.02)
    model = create_model(config, seed=0)
    mixer = model.layers[0].mixer
    np.testing.assert_allclose(mixer.A_log[...], np.log(np.arange(1, 5)), rtol=1e-6)
    np.testing.assert_array_equal(mixer.D[...], 1.0)
    dt = jax.nn.softplus(mixer.dt_bias[...])
    assert np.all((dt >= config.time_step_min * 0.999) & (dt <= config.time_step_max * 1.001))
    assert abs(float(jnp.std(model.embedding[...])) - 0.02) < 2e-3
    logits = Runner(model).full(np.zeros((1, 3), np.int32))
    assert logits.shape == (1, 3, 64) and np.isfinite(logits).all()


def test_in_proj_formulations_agree_in_training_prefill_and_decode(small_checkpoint):
    """The fused in_proj (one matmul over the components concatenated per group) is the split
    one regrouped: same outputs, gradients and cache, in every kind of forward."""
    from grpo_jax.models import layers

    graphdef, state = nnx.split(load_hf_model(small_checkpoint))
    ids = jnp.asarray(np.random.default_rng(2).integers(0, 64, (2, 9)))

    def run(state, ids):
        model = nnx.merge(graphdef, state)
        cache = model.init_cache(2, 16)
        _, cache = model.forward(ids[:, :8], cache=cache, num_valid_B=jnp.array([8, 5]))
        hidden, cache = model.forward(ids[:, 8:], cache=cache)
        loss = lambda state: jnp.mean(nnx.merge(graphdef, state)(ids))  # noqa: E731
        return model(ids), model.logits(hidden), cache, jax.grad(loss)(state)

    results = {}
    for name in ("split", "fused"):
        with layers.use_in_proj_formulation(name):
            assert layers.in_proj_formulation() == name
            # A fresh function per formulation: the choice is read when tracing.
            results[name] = jax.jit(lambda state, ids: run(state, ids))(state, ids)
    for fused, split in zip(jax.tree.leaves(results["fused"]), jax.tree.leaves(results["split"])):
        np.testing.assert_allclose(fused, split, rtol=1e-5, atol=1e-6)
    assert layers.in_proj_formulation() == ("fused" if jax.default_backend() == "cpu" else "split")
    with pytest.raises(ValueError, match="'joined'"):
        with layers.use_in_proj_formulation("joined"):
            pass


def test_deferred_ssm_updates_match_per_step_decoding(small_checkpoint):
    """One-token forwards on a cache whose Mamba state writes are deferred give the per-step
    forwards' hidden states, and after the fold the same cache; a row without a token in the
    whole run keeps its cache bit for bit. Only one-token forwards may run on a deferred cache."""
    from grpo_jax.models.cache import defer_ssm_updates, fold_ssm_updates

    model = load_hf_model(small_checkpoint)
    graphdef, state = nnx.split(model)
    ids = jnp.asarray(np.random.default_rng(5).integers(0, 64, (3, 11)))
    # Row 0 steps every time, row 1 stops after two steps, row 2 never steps.
    valid_KB = jnp.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], jnp.int32)

    @functools.partial(jax.jit, static_argnums=2)
    def run(state, ids, deferred):
        model = nnx.merge(graphdef, state)
        _, start = model.forward(ids[:, :6], cache=model.init_cache(3, 16),
                                 num_valid_B=jnp.array([6, 4, 5]))
        cache = defer_ssm_updates(start, 6) if deferred else start  # 6 slots for 5 steps
        hidden = []
        for k in range(5):
            h, cache = model.forward(ids[:, 6 + k:7 + k], cache=cache, num_valid_B=valid_KB[k])
            hidden.append(h)
        unfolded = cache
        if deferred:
            cache = fold_ssm_updates(cache)
        return jnp.concatenate(hidden, axis=1), cache, unfolded, start

    per_step, per_step_cache, _, _ = run(state, ids, False)
    deferred, deferred_cache, unfolded, start = run(state, ids, True)
    np.testing.assert_allclose(deferred[:2], per_step[:2], rtol=1e-5, atol=1e-5)
    assert all(layer.pending is None for layer in deferred_cache.mamba)
    for a, b in zip(jax.tree.leaves(deferred_cache), jax.tree.leaves(per_step_cache)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(deferred_cache), jax.tree.leaves(start)):
        np.testing.assert_array_equal(np.asarray(a)[2], np.asarray(b)[2])
    assert int(unfolded.mamba[0].pending.count) == 5
    with pytest.raises(ValueError, match="deferred Mamba state updates"):
        model.forward(ids[:, :2], cache=unfolded)
    with pytest.raises(ValueError, match="fold them first"):
        defer_ssm_updates(unfolded, 4)
