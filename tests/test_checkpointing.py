"""Tests for grpo_jax.checkpointing: bitwise sharded round trip, retention, corruption fallback."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grpo_jax import checkpointing, optim
from grpo_jax.checkpointing import CheckpointState


@pytest.fixture(scope="module")
def mesh():
    devices = np.array(jax.devices())
    assert devices.size == 8, "tests/conftest.py should provide 8 fake CPU devices"
    return Mesh(devices.reshape(4, 2), ("data", "tensor"))


@pytest.fixture(scope="module")
def state_and_tx(mesh):
    """Built once per module: compiling the optimiser over 8 devices dominates the test time."""
    return make_state(mesh)


def make_state(mesh, step=3):
    """Sharded params with int keys and bf16, a non-trivial AdamW state, a typed RNG key."""
    rng = np.random.default_rng(step)
    shardings = {
        "layers": {0: {"mixer": {"A_log": NamedSharding(mesh, P("data")),
                                 "in_proj_x": {"kernel": NamedSharding(mesh, P("data", "tensor"))}}}},
        "embed": NamedSharding(mesh, P(None, "tensor")),
        "lm_head": NamedSharding(mesh, P()),
    }
    params = {
        "layers": {0: {"mixer": {
            "A_log": jnp.asarray(rng.normal(size=(8,)), jnp.float32),
            "in_proj_x": {"kernel": jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)},
        }}},
        "embed": jnp.asarray(rng.normal(size=(5, 4)), jnp.bfloat16),
        "lm_head": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
    }
    params = jax.device_put(params, shardings)
    tx = optim.make_optimizer(max_num_steps=10, warmup_steps=2)
    opt_state = jax.jit(tx.init)(params)
    grads = jax.tree.map(lambda p: jnp.sin(p.astype(jnp.float32)).astype(p.dtype), params)
    _, opt_state = jax.jit(tx.update)(grads, opt_state, params)
    # As a trainer would lay it out: moments like their parameters, scalars (count) replicated.
    replicated = NamedSharding(mesh, P())
    opt_state = jax.tree.map(lambda x: x if x.ndim else jax.device_put(x, replicated), opt_state)
    return CheckpointState(
        params=params,
        opt_state=opt_state,
        step=step,
        rng_key=jax.random.fold_in(jax.random.key(42), step),
        data_position={"epoch": 0, "index": 17 * step},
        metadata={"val_accuracy": 0.25, "note": "x", "bad": float("nan")},
    ), tx


def assert_trees_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
        if isinstance(x, jax.Array) and isinstance(y, jax.Array):
            assert x.sharding.is_equivalent_to(y.sharding, x.ndim)


def abstract_target(state):
    to_abstract = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return CheckpointState(params=jax.tree.map(to_abstract, state.params),
                           opt_state=jax.tree.map(to_abstract, state.opt_state), step=0)


def test_sharded_round_trip_is_bitwise(tmp_path, state_and_tx):
    state, _ = state_and_tx
    with checkpointing.Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(3, state, metrics={"val_accuracy": 0.25})
        ckpt.wait_until_finished()
        assert (ckpt.step_dir(3) / checkpointing.INTEGRITY_FILE).is_file()
        restored = ckpt.restore(target=abstract_target(state))
    assert restored.step == 3
    assert_trees_bitwise_equal(restored.params, state.params)
    assert_trees_bitwise_equal(restored.opt_state, state.opt_state)  # optax namedtuples included
    assert restored.params["layers"][0]["mixer"]["in_proj_x"]["kernel"].sharding == \
        state.params["layers"][0]["mixer"]["in_proj_x"]["kernel"].sharding
    np.testing.assert_array_equal(jax.random.key_data(restored.rng_key),
                                  jax.random.key_data(state.rng_key))
    assert jax.random.key_impl(restored.rng_key) == jax.random.key_impl(state.rng_key)
    assert restored.data_position == {"epoch": 0, "index": 51}
    assert restored.metadata == {"val_accuracy": 0.25, "note": "x", "bad": None}


def test_resume_continues_bitwise(tmp_path, state_and_tx):
    """Saving, restoring into concrete arrays and taking one more step equals not stopping."""
    state, tx = state_and_tx
    grads = jax.tree.map(lambda p: jnp.cos(p.astype(jnp.float32)).astype(p.dtype), state.params)
    update = jax.jit(tx.update)
    updates, _ = update(grads, state.opt_state, state.params)
    with checkpointing.Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        ckpt.save(3, state)
        restored = ckpt.restore(3, target=state)  # concrete arrays as the target work too
    resumed_updates, _ = update(grads, restored.opt_state, restored.params)
    assert_trees_bitwise_equal(resumed_updates, updates)


def test_keep_last_n_and_best_k(tmp_path, state_and_tx):
    state, _ = state_and_tx
    accuracies = {1: 0.1, 2: 0.9, 3: 0.3, 4: 0.8, 5: None, 6: 0.2, 7: 0.05}
    directory = tmp_path / "ckpt"
    with checkpointing.Checkpointer(directory, max_to_keep=2, keep_best=2) as ckpt:
        for step, acc in accuracies.items():
            metrics = None if acc is None else {"val_accuracy": acc}
            ckpt.save(step, CheckpointState(state.params, state.opt_state, step), metrics=metrics)
        ckpt.wait_until_finished()
        # Last 2 = {6, 7}; best 2 by accuracy = {2 (0.9), 4 (0.8)}.
        assert ckpt.all_steps() == [2, 4, 6, 7]
        assert ckpt.best_step() == 2
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) == [2, 4, 6, 7]
    # A fresh process resumes from the latest step.
    with checkpointing.Checkpointer(directory, max_to_keep=2, keep_best=2) as reopened:
        assert reopened.latest_step() == 7
        restored = reopened.restore_latest_good(target=abstract_target(state))
        assert restored.step == 7
        assert reopened.metadata(4)["metrics"] == {"val_accuracy": 0.8}


def test_min_mode_and_recency_only(tmp_path, state_and_tx):
    state, _ = state_and_tx
    with checkpointing.Checkpointer(tmp_path / "a", max_to_keep=1, keep_best=1,
                                    best_metric="val_loss", best_mode="min", async_save=False) as ckpt:
        for step, loss in {1: 0.5, 2: 0.1, 3: 0.7, 4: 0.9}.items():
            ckpt.save(step, CheckpointState(state.params, state.opt_state, step),
                      metrics={"val_loss": loss})
        assert ckpt.all_steps() == [2, 4]
    with checkpointing.Checkpointer(tmp_path / "b", max_to_keep=2, async_save=False) as ckpt:
        for step in range(1, 5):
            ckpt.save(step, CheckpointState(state.params, state.opt_state, step),
                      metrics={"val_accuracy": 1.0})
        assert ckpt.all_steps() == [3, 4]


def _biggest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
    files = [p for p in (step_dir / "params").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    return max(files, key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate", "garble", "garble_meta"])
def test_corrupted_latest_raises_and_falls_back(tmp_path, state_and_tx, damage):
    state, _ = state_and_tx
    ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=3)
    for step in (1, 2, 3):
        ckpt.save(step, CheckpointState(state.params, state.opt_state, step, data_position=step))
    ckpt.wait_until_finished()
    step_dir = ckpt.step_dir(3)
    victim = step_dir / "meta" / "metadata" if damage == "garble_meta" else _biggest_array_file(step_dir)
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))

    with pytest.raises(checkpointing.CheckpointCorruptedError) as excinfo:
        ckpt.restore(target=abstract_target(state))
    assert str(step_dir) in str(excinfo.value)
    restored = ckpt.restore_latest_good(target=abstract_target(state))
    assert restored.step == 2 and restored.data_position == 2
    assert_trees_bitwise_equal(restored.params, state.params)
    # The broken step is moved aside: the run resumes at 2 and can write step 3 again.
    assert ckpt.latest_step() == 2
    assert (tmp_path / "ckpt" / checkpointing.QUARANTINE_DIR / "3").is_dir()
    ckpt.save(3, CheckpointState(state.params, state.opt_state, 3, data_position=33))
    assert ckpt.restore(target=abstract_target(state)).data_position == 33
    ckpt.close()


# Orbax's failed read abandons its other array reads mid-flight; now and then Python reports one of
# them after the test ("coroutine ... was never awaited", or "Event loop is closed" from a late
# callback). Both are Orbax's internals on this deliberately broken checkpoint, not a result.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncation_without_integrity_record_is_still_reported(tmp_path, state_and_tx):
    state, _ = state_and_tx
    with checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=3) as ckpt:
        for step in (1, 2):
            ckpt.save(step, CheckpointState(state.params, state.opt_state, step))
        ckpt.wait_until_finished()
        step_dir = ckpt.step_dir(2)
        (step_dir / checkpointing.INTEGRITY_FILE).unlink()  # as if the process died before it
        for victim in (step_dir / "params").rglob("*"):
            if victim.is_file() and "/d/" in victim.as_posix():
                victim.write_bytes(b"")
        with pytest.raises(checkpointing.CheckpointError, match=str(step_dir)):
            ckpt.restore(2, target=abstract_target(state))
        assert ckpt.restore_latest_good(target=abstract_target(state)).step == 1


def test_empty_directory(tmp_path):
    with checkpointing.Checkpointer(tmp_path / "none") as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.restore_latest_good() is None
        with pytest.raises(FileNotFoundError):
            ckpt.restore()
    with pytest.raises(ValueError, match="max_to_keep"):
        checkpointing.Checkpointer(tmp_path / "bad", max_to_keep=0)


def test_raw_key_and_step_mismatch(tmp_path, state_and_tx):
    state, _ = state_and_tx
    raw = jax.random.PRNGKey(7)  # legacy uint32 key data
    with checkpointing.Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        ckpt.save(1, CheckpointState(state.params, state.opt_state, 1, rng_key=raw))
        restored = ckpt.restore(1, target=abstract_target(state))
        assert restored.rng_key.dtype == jnp.uint32
        np.testing.assert_array_equal(restored.rng_key, raw)
        with pytest.raises(ValueError, match="state.step"):
            ckpt.save(2, CheckpointState(state.params, state.opt_state, 5))


def test_nnx_state_round_trip(tmp_path):
    from flax import nnx

    class Mixer(nnx.Module):
        def __init__(self, rngs):
            self.A_log = nnx.Param(jnp.arange(3.0))
            self.in_proj = nnx.Linear(2, 3, rngs=rngs)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([Mixer(rngs) for _ in range(2)])

    model = Model(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    tx = optim.make_optimizer(max_num_steps=3)
    opt_state = jax.jit(tx.init)(params)
    with checkpointing.Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        ckpt.save(1, CheckpointState(params, opt_state, 1))
        abstract_params = nnx.state(nnx.eval_shape(lambda: Model(nnx.Rngs(1))), nnx.Param)
        target = CheckpointState(abstract_params, jax.eval_shape(tx.init, abstract_params), 0)
        restored = ckpt.restore(target=target)
    assert type(restored.params) is type(params)
    assert_trees_bitwise_equal(restored.params, params)
    assert_trees_bitwise_equal(restored.opt_state, opt_state)
    nnx.update(model, restored.params)


def test_should_save_cadence():
    assert [s for s in range(1, 15) if checkpointing.should_save(s, 6, 14)] == [6, 12, 14]
    with pytest.raises(ValueError, match="save_period"):
        checkpointing.should_save(1, 0, 10)
