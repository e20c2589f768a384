"""The update step: scoring only trained positions, and gradient accumulation over micro-batches."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from grpo_jax import grpo, optim, xla_options
from grpo_jax.models import NemotronHConfig
from grpo_jax.models.nemotron_h import create_model
from grpo_jax.train_step import Learner, LossConfig, make_update_batch, scored_positions


def test_scored_positions_lists_each_rows_trained_tokens():
    mask = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1]])
    positions, valid = scored_positions(mask, multiple=4)
    np.testing.assert_array_equal(positions, [[1, 2, 4, 0], [0, 0, 0, 0], [2, 3, 4, 0]])
    np.testing.assert_array_equal(valid, [[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="first position"):
        scored_positions(np.array([[1, 0]]))


@pytest.fixture(scope="module")
def model_and_batch():
    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), time_step_clamp="always")
    graphdef, params = nnx.split(create_model(config, seed=2))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.vocab_size, (4, 24)).astype(np.int32)
    mask = np.zeros((4, 24), np.float32)
    for row, (start, stop) in enumerate([(10, 24), (5, 9), (12, 20), (3, 24)]):
        mask[row, start:stop] = 1.0
    return graphdef, params, tokens, mask


def test_gathered_logprobs_equal_the_full_forward(model_and_batch):
    graphdef, params, tokens, mask = model_and_batch
    learner = Learner(graphdef, optim.make_optimizer(), LossConfig(logprob_chunk=8))
    batch = make_update_batch(tokens, mask, micro_batch_size=2, position_multiple=8)
    logprobs_MbK, _ = learner.logprobs(params, batch["tokens"], batch["positions"])
    full_BT = np.asarray(grpo.token_logprobs(nnx.merge(graphdef, params)(jnp.asarray(tokens)), jnp.asarray(tokens)))
    positions_BK = batch["positions"].reshape(4, -1)
    valid_BK = batch["loss_mask"].reshape(4, -1) > 0
    expected = np.take_along_axis(full_BT, positions_BK, axis=1)
    np.testing.assert_allclose(np.asarray(logprobs_MbK).reshape(4, -1)[valid_BK], expected[valid_BK], atol=2e-6)


@pytest.mark.parametrize("sft", [False, True])
def test_micro_batch_split_does_not_change_the_update(model_and_batch, sft):
    """Each micro-batch divides by the GLOBAL token count, so 4 x 1, 2 x 2 and 1 x 4 give one
    update (on CPU the one-row micro-batches compile with their own XLA options: same numbers)."""
    graphdef, params, tokens, mask = model_and_batch
    results = []
    for micro_batch_size in (1, 2, 4):
        # Plain SGD: the step is linear in the gradient, so it shows the accumulated gradient
        # itself (Adam's first step, lr * g / |g|, amplifies rounding in near-zero entries).
        learner = Learner(graphdef, optax.sgd(1.0), LossConfig(logprob_chunk=8, sft=sft))
        batch = make_update_batch(tokens, mask, micro_batch_size, advantages_B=np.array([1.0, -0.5, 2.0, -1.0]),
                                  position_multiple=8)
        if not sft:
            old, _ = learner.logprobs(params, batch["tokens"], batch["positions"])
            batch["old_logprobs"] = np.asarray(old)
        state, metrics = learner.update(learner.init_state(jax.tree.map(jnp.copy, params)), batch)
        assert learner._update_jits.keys() == {tuple(sorted((xla_options.update_compiler_options(
            jax.default_backend()) or {}).items()))}
        results.append((jax.tree.map(np.asarray, state.params), float(metrics["loss"])))
    (params_a, loss_a), *others = results
    for params_b, loss_b in others:
        assert loss_a == pytest.approx(loss_b, rel=1e-5)
        for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    changed = [not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params))]
    assert any(changed)


def test_explicit_compiler_options_compile_a_program_of_their_own(model_and_batch):
    """`update_function(options)` (the memory plan's way in) compiles with exactly those options
    beside the default program, and computes the same update."""
    graphdef, params, tokens, mask = model_and_batch
    learner = Learner(graphdef, optax.sgd(1.0), LossConfig(logprob_chunk=8, sft=True))
    batch = make_update_batch(tokens, mask, 1, position_multiple=8)
    state = learner.init_state(params)
    explicit = {}   # XLA's defaults: on CPU not the update's own options
    updates = [jax.tree.map(np.asarray, function(jax.tree.map(jnp.copy, state), batch)[0].params)
               for function in (learner.update_function(), learner.update_function(explicit))]
    default = xla_options.update_compiler_options(jax.default_backend()) or {}
    assert learner._update_jits.keys() == {tuple(sorted(default.items())),
                                           tuple(sorted(explicit.items()))}
    for a, b in zip(*map(jax.tree.leaves, updates)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
