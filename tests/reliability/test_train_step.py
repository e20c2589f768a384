"""Non-finite loss or gradients at the Learner: the update is skipped and counted, and it leaves
no trace: parameters AND optimizer state (Adam moments, step count) are bitwise what they were,
so a later good batch gives exactly the result it would have given without the bad one.

Would catch: a guard that zeroes the gradient but still steps Adam (moments decay, count moves),
a NaN that leaks into the parameters, a skipped step that is not counted."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grpo_jax import optim
from grpo_jax.models import NemotronHConfig
from grpo_jax.models.nemotron_h import create_model
from grpo_jax.train_step import Learner, LossConfig, make_update_batch
from tests.reliability.bitwise import assert_bitwise as _assert_bitwise, host as _host

B, T = 2, 16  # one micro-batch of two sequences of 16 tokens


@pytest.fixture(scope="module")
def learner_and_params():
    config = NemotronHConfig.preset("tiny-test")
    graphdef, params = nnx.split(create_model(config, seed=0))
    learner = Learner(graphdef, optim.make_optimizer(lr=1e-3, min_lr=1e-4, max_num_steps=10),
                      LossConfig(logprob_chunk=16))
    return learner, params, config.vocab_size


def _batch(learner, params, vocab, **poison):
    rng = np.random.default_rng(0)
    tokens_BT = rng.integers(3, vocab, (B, T)).astype(np.int32)
    mask_BT = np.zeros((B, T), np.float32)
    mask_BT[:, T // 2:] = 1.0  # the "generated" half
    batch = make_update_batch(tokens_BT, mask_BT, micro_batch_size=B, advantages_B=np.array([1.0, -1.0]))
    old, _ = learner.logprobs(params, batch["tokens"], batch["positions"])
    batch["old_logprobs"] = np.asarray(old)
    for name, (index, value) in poison.items():
        assert name != "old_logprobs" or batch["loss_mask"][index] == 1  # a trained token
        batch[name] = batch[name].copy()
        batch[name][index] = value
    return batch


POISONS = {
    "nan_advantage": {"advantages": ((0, 1), np.nan)},
    "inf_advantage": {"advantages": ((0, 0), np.inf)},
    "nan_old_logprob": {"old_logprobs": ((0, 0, 3), np.nan)},
    "minus_inf_old_logprob": {"old_logprobs": ((0, 1, 5), -np.inf)},  # ratio = exp(+inf)
}


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_non_finite_update_is_skipped_counted_and_leaves_no_trace(learner_and_params, poison):
    learner, params, vocab = learner_and_params
    fresh = lambda: learner.init_state(jax.tree.map(jnp.copy, params))  # noqa: E731 - update donates
    good = _batch(learner, params, vocab)
    bad = _batch(learner, params, vocab, **poison)

    # good, bad, good: the bad update comes when Adam's moments and count are non-trivial.
    state, _ = learner.update(fresh(), good)
    before = _host(state)
    state, metrics = learner.update(state, bad)
    metrics = jax.device_get(metrics)
    assert int(metrics["update_skipped"]) == 1
    assert not (np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"]))
    assert int(state.step) == 2 and int(state.skipped_updates) == 1
    _assert_bitwise(_host(state.params), before.params)
    _assert_bitwise(_host(state.opt_state), before.opt_state)

    # Training goes on: the next good batch updates, exactly as if the bad one never came.
    state, metrics = learner.update(state, good)
    assert int(jax.device_get(metrics["update_skipped"])) == 0
    assert int(state.step) == 3 and int(state.skipped_updates) == 1
    with_bad = _host(state)
    without_bad, _ = learner.update(learner.update(fresh(), good)[0], good)
    _assert_bitwise(with_bad.params, _host(without_bad.params))
    _assert_bitwise(with_bad.opt_state, _host(without_bad.opt_state))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(with_bad.params),
                                                         jax.tree.leaves(before.params)))
