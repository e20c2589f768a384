"""Mesh construction, the logical-axis rules, and the model on 8 fake CPU devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from grpo_jax import sharding
from grpo_jax.models import NemotronH, NemotronHConfig, load_hf_model
from grpo_jax.models.cache import cache_shardings
from tests.models.helpers import Runner, make_hf_model, relative_error, save_hf_model_dir


def test_make_mesh_fills_one_axis_and_rejects_sizes_that_do_not_divide():
    mesh = sharding.make_mesh(data=2, fsdp=-1, tensor=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(sharding.make_mesh(tensor=-1).shape) == {"data": 1, "fsdp": 1, "tensor": 8}
    with pytest.raises(ValueError, match="data=3 x fsdp=1 x tensor=1 = 3 do not match the 8 dev"):
        sharding.make_mesh(data=3)
    with pytest.raises(ValueError, match="8 devices do not divide by the other axes' product 3"):
        sharding.make_mesh(data=3, tensor=-1)
    with pytest.raises(ValueError, match="at most one axis"):
        sharding.make_mesh(data=-1, tensor=-1)


def test_logical_rules_and_constrain_outside_a_mesh():
    assert sharding.logical_to_spec(("batch", None, "vocab")) == P(("data", "fsdp"), None, "tensor")
    with pytest.raises(ValueError, match="logical axis 'experts' has no rule"):
        sharding.logical_to_spec(("experts",))
    x = jnp.ones((3, 5))
    assert sharding.constrain(x, ("batch", "vocab")) is x


def test_validate_model_mesh_names_the_sizes_that_do_not_divide():
    mesh = sharding.make_mesh(fsdp=-1, tensor=2)
    config = NemotronHConfig.preset("tiny-test", vocab_size=101, hidden_size=66)
    with pytest.raises(ValueError, match=r"tensor=2, fsdp=4 does not divide: vocab_size=101, "
                                         r"n_groups=1, hidden_size=66 \(fsdp=4\)"):
        sharding.validate_model_mesh(config.replace(n_groups=1, mamba_num_heads=8), mesh)


# ---- The 9B preset, abstractly -------------------------------------------------------------------

@pytest.fixture(scope="module")
def abstract_9b_state():
    config = NemotronHConfig.preset("nemotron-nano-9b-v2")
    return nnx.state(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))


def test_9b_preset_has_the_released_parameter_count(abstract_9b_state):
    assert sum(x.size for x in jax.tree.leaves(abstract_9b_state)) == 8_888_227_328


def test_9b_forward_and_decode_trace_without_allocating(abstract_9b_state):
    config = NemotronHConfig.preset("nemotron-nano-9b-v2", compute_dtype=jnp.bfloat16,
                                    remat="full")
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0))))

    def decode(state, cache, token_B1):
        model = nnx.merge(graphdef, state)
        hidden, cache = model.forward(token_B1, cache=cache)
        return model.logits(hidden), cache

    ids = jax.ShapeDtypeStruct((1, 300), jnp.int32)
    logits = jax.eval_shape(lambda state, ids: nnx.merge(graphdef, state)(ids),
                            abstract_9b_state, ids)
    assert (logits.shape, logits.dtype) == ((1, 300, 131072), jnp.float32)
    cache = jax.eval_shape(lambda: nnx.merge(graphdef, abstract_9b_state).init_cache(2, 64))
    assert cache.mamba[0].ssm.shape == (2, 128, 80, 128) and len(cache.attention) == 4
    logits, new_cache = jax.eval_shape(decode, abstract_9b_state, cache,
                                       jax.ShapeDtypeStruct((2, 1), jnp.int32))
    assert logits.shape == (2, 1, 131072)
    assert jax.tree.structure(new_cache) == jax.tree.structure(cache)


# Parameter name → the dimension tensor parallelism splits (None: replicated over tensor).
_TENSOR_SPLIT_DIM = {
    "embedding": 0, "lm_head": 1, "weight": None,  # norms
    "z_proj": 1, "x_proj": 1, "b_proj": 1, "c_proj": 1, "dt_proj": 1,
    "conv_x": 1, "conv_b": 1, "conv_c": 1, "conv_x_bias": 0, "conv_b_bias": 0, "conv_c_bias": 0,
    "A_log": 0, "D": 0, "dt_bias": 0, "norm": 0, "out_proj": 0,
    "q_proj": 1, "k_proj": 1, "v_proj": 1, "o_proj": 0, "up_proj": 1, "down_proj": 0,
}


@pytest.mark.parametrize("fsdp, tensor", [(1, 8), (2, 4)])
def test_9b_parameters_split_over_tensor(abstract_9b_state, fsdp, tensor):
    mesh = sharding.make_mesh(fsdp=fsdp, tensor=tensor)
    shardings = dict(nnx.to_flat_state(sharding.state_shardings(abstract_9b_state, mesh)))
    for path, variable in nnx.to_flat_state(abstract_9b_state):
        shape = variable.shape
        expected = list(shape)
        split = _TENSOR_SPLIT_DIM[path[-1]]
        if split is not None:
            expected[split] //= tensor
        embed_dims = [i for i, name in enumerate(variable.logical_axes) if name == "embed"]
        for i in embed_dims:
            expected[i] //= fsdp
        assert shardings[path].shard_shape(shape) == tuple(expected), path
        if variable.size > 4480 * 128:  # every large matrix is split over tensor
            assert split is not None, path


# ---- Tensor-parallel forward equals the single-device forward ------------------------------------

@pytest.fixture(scope="module")
def tp8_checkpoint(tmp_path_factory):
    config = NemotronHConfig.preset("tp8-test").to_hf_config()
    config["initializer_range"] = 0.1
    hf_model = make_hf_model(config, seed=3)
    return save_hf_model_dir(hf_model, tmp_path_factory.mktemp("tp8"))


@pytest.fixture(scope="module")
def single_device_runs(tp8_checkpoint):
    runner = Runner(load_hf_model(tp8_checkpoint))
    ids = np.random.default_rng(0).integers(0, 1024, (4, 19))
    return ids, runner.full(ids)


@pytest.mark.parametrize("sizes", [dict(tensor=8), dict(data=2, fsdp=2, tensor=2)],
                         ids=["tensor8", "data2_fsdp2_tensor2"])
def test_sharded_forward_equals_single_device_forward(tp8_checkpoint, single_device_runs, sizes):
    ids, full = single_device_runs
    mesh = sharding.make_mesh(**sizes)
    model = load_hf_model(tp8_checkpoint, mesh=mesh)
    x_proj = model.layers[0].mixer.x_proj[...]
    assert x_proj.sharding.spec == P("fsdp", "tensor", None)
    assert x_proj.addressable_shards[0].data.shape[1] == x_proj.shape[1] // sizes["tensor"]
    runner = Runner(model)
    with jax.set_mesh(mesh):
        assert relative_error(runner.full(ids), full) <= 1e-5
        if "data" in sizes:  # the cached path too, with its cache sharded over batch and heads
            abstract_cache = jax.eval_shape(lambda: runner.model.init_cache(4, 24))
            cache = jax.device_put(runner.model.init_cache(4, 24),
                                   cache_shardings(abstract_cache, mesh))
            num_valid = [19, 11, 0, 5]
            prefill, cache = runner.extend(ids, cache, num_valid)
            expected = NamedSharding(mesh, P(("data", "fsdp"), "tensor", None, None))
            assert cache.mamba[0].ssm.sharding.is_equivalent_to(expected, 4)
            for row, valid in enumerate(num_valid):  # prefill of an empty cache = full forward
                if valid:
                    assert relative_error(prefill[row, :valid], full[row, :valid]) <= 1e-5


def test_mesh_is_validated_before_any_tensor_is_read(tp8_checkpoint):
    with pytest.raises(ValueError, match="mesh tensor=8, fsdp=1 does not divide: n_groups=4"):
        load_hf_model(tp8_checkpoint, mesh=sharding.make_mesh(tensor=8), n_groups=4)


def test_create_model_initialises_directly_on_the_mesh():
    from grpo_jax.models import create_model

    mesh = sharding.make_mesh(data=2, tensor=4)
    model = create_model(NemotronHConfig.preset("tp8-test"), mesh=mesh)
    x_proj = model.layers[0].mixer.x_proj[...]
    assert x_proj.sharding.spec == P("fsdp", "tensor", None)
    assert [s.data.shape for s in x_proj.addressable_shards] == [(64, 4, 8)] * 8
