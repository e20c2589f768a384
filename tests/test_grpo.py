"""Tests for grpo_jax.grpo: advantages vs a loop reference, log-probs, the loss, metrics."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from grpo_jax import grpo


# ------------------------------------------------------------------------------------------
# Advantages
# ------------------------------------------------------------------------------------------


def reference_advantages(rewards_PG, leave_one_out=True, normalize=True, mask_PG=None, eps=1e-6):
    """The reference §2 formula, one sample at a time, in float64."""
    rewards_PG = np.asarray(rewards_PG, dtype=np.float64)
    mask_PG = np.ones(rewards_PG.shape, bool) if mask_PG is None else np.asarray(mask_PG, bool)
    out = np.zeros_like(rewards_PG)
    for p in range(rewards_PG.shape[0]):
        valid = [g for g in range(rewards_PG.shape[1]) if mask_PG[p, g]]
        if len(valid) <= 1:
            continue
        for i in valid:
            others = [rewards_PG[p, j] for j in valid if not (leave_one_out and j == i)]
            n = len(others)
            b = sum(others) / n
            m2 = sum(r * r for r in others) / n
            with np.errstate(divide="ignore", invalid="ignore"):
                var = np.float64(m2 - b * b) * (np.float64(n) / np.float64(n - 1))
                std = np.nan_to_num(np.sqrt(var), nan=0.0, posinf=0.0)
            if len(set(others)) == 1:  # exact-arithmetic value (rounding aside)
                std = 0.0
            a = rewards_PG[p, i] - b
            if normalize and std > 0:
                a = a / (std + eps)
            out[p, i] = a
    return out


# (G, k, A of a success, A of a failure, sum over the group), printed in the reference table.
WORKED_TABLE = [
    (4, 1, 1.0, -0.5773, -0.732),
    (4, 2, 1.1547, -1.1547, 0.0),
    (4, 3, 0.5773, -1.0, 0.732),
    (16, 1, 1.0, -0.2582, -2.873),
    (16, 2, 3.6148, -0.3789, 1.925),
    (16, 4, 1.9322, -0.5826, 0.738),
    (16, 8, 1.0328, -1.0328, 0.0),
    (16, 14, 0.3789, -3.6148, -1.925),
    (16, 15, 0.2582, -1.0, 2.873),
]


@pytest.mark.parametrize("G,k,a_success,a_failure,group_sum", WORKED_TABLE)
def test_advantages_worked_table(G, k, a_success, a_failure, group_sum):
    rewards = [[1.0] * k + [0.0] * (G - k)]
    adv = np.asarray(grpo.compute_advantages(rewards, True, True))
    assert adv.shape == (1, G)
    # 4 printed decimals → half a unit in the last place (plus float32 slack).
    np.testing.assert_allclose(adv[0, :k], a_success, atol=5e-5 + 1e-6)
    np.testing.assert_allclose(adv[0, k:], a_failure, atol=5e-5 + 1e-6)
    np.testing.assert_allclose(adv.sum(), group_sum, atol=5e-4 + 1e-5)


@pytest.mark.parametrize("G", [2, 16])
def test_uniform_groups_have_zero_advantage(G):
    for value in (0.0, 1.0, 0.1, 37.25):
        for loo in (True, False):
            for norm in (True, False):
                adv = grpo.compute_advantages(np.full((3, G), value), loo, norm)
                assert np.all(np.asarray(adv) == 0.0), (value, loo, norm)


@pytest.mark.parametrize("loo", [True, False])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("G", [2, 3, 16])
def test_advantages_match_loop_reference(loo, norm, G):
    rng = np.random.default_rng(G + 10 * loo + 100 * norm)
    binary = rng.integers(0, 2, size=(8, G)).astype(np.float32)
    continuous = rng.normal(size=(8, G)).astype(np.float32)
    for rewards in (binary, continuous):
        expected = reference_advantages(rewards, loo, norm)
        got = np.asarray(grpo.compute_advantages(rewards, use_leave_one_out_baseline=loo,
                                                 normalize_rewards=norm))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


@settings(max_examples=40, deadline=None)
@given(
    rewards=hnp.arrays(np.float32, (4, 5), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])),
    mask=hnp.arrays(np.bool_, (4, 5)),
    loo=st.booleans(),
    norm=st.booleans(),
)
def test_advantages_property_with_ties_and_masks(rewards, mask, loo, norm):
    # Few distinct values → many ties, all-equal "others" and tiny groups: the σ = 0 edge cases.
    got = np.asarray(grpo.compute_advantages(rewards, loo, norm, sample_mask_PG=mask))
    expected = reference_advantages(rewards, loo, norm, mask_PG=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_both_switches_off_is_reward_minus_group_mean():
    rewards = np.array([[1.0, 0.0, 0.0, 0.0], [3.0, 1.0, 2.0, 6.0]])
    got = np.asarray(grpo.compute_advantages(rewards, False, False))
    np.testing.assert_allclose(got, rewards - rewards.mean(axis=1, keepdims=True), atol=1e-6)


def test_no_leave_one_out_normalised_uses_bessel_std_of_group():
    rewards = np.array([[3.0, 1.0, 2.0, 6.0]])
    got = np.asarray(grpo.compute_advantages(rewards, False, True))
    expected = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_group_of_two_leave_one_out_is_unnormalised_difference():
    got = np.asarray(grpo.compute_advantages([[1.0, 0.0], [0.25, 2.0]]))
    np.testing.assert_allclose(got, [[1.0, -1.0], [-1.75, 1.75]], atol=1e-6)


def test_advantages_with_mask():
    rewards = np.array([[1.0, 0.0, 1.0, 5.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [2.0, 7.0, 1.0, 1.0, 0.0]])
    mask = np.array([[1, 1, 1, 0, 1], [1, 0, 0, 0, 0], [0, 1, 1, 1, 1]])
    got = np.asarray(grpo.compute_advantages(rewards, sample_mask_PG=mask))
    np.testing.assert_allclose(got, reference_advantages(rewards, mask_PG=mask), rtol=2e-5, atol=2e-5)
    assert np.all(got[mask == 0] == 0.0)
    assert np.all(got[1] == 0.0)  # one valid sample: no baseline to compare to
    # The masked-out 5.0 is not part of group 0's statistics: identical to dropping the column.
    dropped = np.asarray(grpo.compute_advantages(rewards[:1, [0, 1, 2, 4]]))
    np.testing.assert_allclose(got[0, [0, 1, 2, 4]], dropped[0], atol=1e-6)


def test_advantages_accept_lists_numpy_jax_and_jit():
    rewards = [[1, 0, 0, 1], [0, 0, 0, 1]]
    from_list = np.asarray(grpo.compute_advantages(rewards))
    from_np = np.asarray(grpo.compute_advantages(np.array(rewards)))
    jitted = jax.jit(grpo.compute_advantages, static_argnums=(1, 2))
    from_jit = np.asarray(jitted(jnp.array(rewards, jnp.float32), True, True))
    np.testing.assert_array_equal(from_list, from_np)
    np.testing.assert_allclose(from_jit, from_list, atol=1e-6)
    assert from_list.shape == (2, 4)


def test_advantages_are_shift_invariant_for_large_rewards():
    rewards = np.array([[1000.0, 1001.0, 1000.0, 1002.0]])
    np.testing.assert_allclose(
        np.asarray(grpo.compute_advantages(rewards)),
        np.asarray(grpo.compute_advantages(rewards - 1000.0)), atol=1e-6)


def test_advantages_reject_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        grpo.compute_advantages([1.0, 0.0])
    with pytest.raises(ValueError, match="sample mask shape"):
        grpo.compute_advantages([[1.0, 0.0]], sample_mask_PG=[[1, 1, 1]])


# ------------------------------------------------------------------------------------------
# Log-probs
# ------------------------------------------------------------------------------------------


def numpy_aligned_logprobs(logits_BTV, tokens_BT, temperature=1.0):
    logits = np.asarray(logits_BTV, np.float64) / temperature
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    B, T = tokens_BT.shape
    out = np.zeros((B, T))
    ent = np.zeros((B, T))
    for b in range(B):
        for t in range(1, T):
            out[b, t] = logp[b, t - 1, tokens_BT[b, t]]
            ent[b, t] = -(np.exp(logp[b, t - 1]) * logp[b, t - 1]).sum()
    return out, ent


def test_token_logprobs_shift_convention():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    tokens = rng.integers(0, 7, size=(2, 5))
    expected, expected_entropy = numpy_aligned_logprobs(logits, tokens, temperature=0.7)
    lp, ent = grpo.token_logprobs(logits, tokens, temperature=0.7, return_entropy=True)
    assert lp.dtype == jnp.float32 and lp.shape == (2, 5) and ent.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(lp), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent), expected_entropy, atol=1e-5)
    assert np.all(np.asarray(lp)[:, 0] == 0.0) and np.all(np.asarray(ent)[:, 0] == 0.0)
    # bf16 logits are scored in fp32.
    logits_bf16 = jnp.asarray(logits, jnp.bfloat16)
    lp_bf16 = grpo.token_logprobs(logits_bf16, tokens, temperature=0.7)
    assert lp_bf16.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(lp_bf16),
        numpy_aligned_logprobs(np.asarray(logits_bf16.astype(jnp.float32)), tokens, 0.7)[0], atol=1e-5)


@pytest.mark.parametrize("chunk", [3, 16])  # a padded tail; one chunk longer than T
def test_chunked_logprobs_match_full(chunk):
    rng = np.random.default_rng(1)
    B, T, D, V = 2, 8, 5, 11
    hidden = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    weight = jnp.asarray(rng.normal(size=(D, V)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, V, size=(B, T)))
    full_lp, full_ent = grpo.token_logprobs(hidden @ weight, tokens, return_entropy=True)
    lp, ent = grpo.chunked_token_logprobs(hidden, weight, tokens, chunk)
    np.testing.assert_allclose(np.asarray(lp), np.asarray(full_lp), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(full_ent), atol=1e-5)
    lp_callable, _ = grpo.chunked_token_logprobs(hidden, lambda h: h @ weight, tokens, chunk)
    np.testing.assert_allclose(np.asarray(lp_callable), np.asarray(full_lp), atol=1e-5)

    def loss_full(h, w):
        return grpo.token_logprobs(h @ w, tokens).sum()

    def loss_chunked(h, w):
        return grpo.chunked_token_logprobs(h, w, tokens, chunk)[0].sum()

    g_full = jax.jit(jax.grad(loss_full, argnums=(0, 1)))(hidden, weight)
    g_chunk = jax.jit(jax.grad(loss_chunked, argnums=(0, 1)))(hidden, weight)
    for a, b in zip(g_full, g_chunk):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4)


def test_chunked_logprobs_reject_bad_chunk():
    with pytest.raises(ValueError, match="chunk"):
        grpo.chunked_token_logprobs(jnp.zeros((1, 2, 3)), jnp.zeros((3, 4)), jnp.zeros((1, 2), int), 0)


# ------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------


def _grad_wrt_logprobs(lp, prev, adv, mask, **kwargs):
    return jax.grad(lambda x: grpo.policy_loss(x, prev, adv, mask, **kwargs)[0])(lp)


def test_masked_tokens_get_exactly_zero_gradient():
    rng = np.random.default_rng(2)
    lp = jnp.asarray(rng.normal(size=(3, 6)) - 2.0, jnp.float32)
    prev = lp + 0.05 * jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    mask = jnp.asarray(rng.integers(0, 2, size=(3, 6)))
    # Garbage on masked positions must not leak (padding often holds -inf or NaN).
    lp = jnp.where(mask == 1, lp, -jnp.inf)
    prev = jnp.where(mask == 1, prev, jnp.nan)
    ref = jnp.where(mask == 1, prev - 0.1, jnp.nan)
    adv = jnp.asarray([1.5, -0.7, 0.3])
    loss, _ = grpo.policy_loss(lp, prev, adv, mask, kl_beta=0.1, reference_logprobs_BT=ref)
    assert np.isfinite(float(loss))
    grad = np.asarray(_grad_wrt_logprobs(lp, prev, adv, mask, kl_beta=0.1, reference_logprobs_BT=ref))
    assert np.all(grad[np.asarray(mask) == 0] == 0.0)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[np.asarray(mask) == 1] != 0.0)


@pytest.mark.parametrize(
    "advantage,ratio,clipped",
    [(1.0, 1.5, True), (1.0, 1.1, False), (1.0, 0.5, False), (1.0, 1.2 + 1e-3, True),
     (-1.0, 0.5, True), (-1.0, 0.9, False), (-1.0, 1.5, False), (-1.0, 0.8 - 1e-3, True)],
)
def test_clipping_engages_only_outside_the_trust_region(advantage, ratio, clipped):
    prev = jnp.full((1, 2), -1.0)
    lp = prev + jnp.log(jnp.asarray([[1.0, ratio]]))
    mask = jnp.asarray([[0, 1]])
    loss, _ = grpo.policy_loss(lp, prev, jnp.asarray([advantage]), mask)
    grad = np.asarray(_grad_wrt_logprobs(lp, prev, jnp.asarray([advantage]), mask))
    clipped_ratio = min(max(ratio, 0.8), 1.2)
    expected = max(-advantage * ratio, -advantage * clipped_ratio)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    if clipped:
        assert grad[0, 1] == 0.0
    else:  # d(−A·ρ)/d lp = −A·ρ, divided by one valid token
        np.testing.assert_allclose(grad[0, 1], -advantage * ratio, rtol=1e-5)
    metrics = grpo.ratio_metrics(lp, prev, jnp.asarray([advantage]), mask)
    assert float(metrics["clip_fraction"]) == float(clipped)


def test_asymmetric_clip_high():
    prev = jnp.zeros((1, 1))
    lp = jnp.log(jnp.full((1, 1), 1.25))
    mask = jnp.ones((1, 1))
    grad_default = _grad_wrt_logprobs(lp, prev, jnp.ones(1), mask)
    grad_higher = _grad_wrt_logprobs(lp, prev, jnp.ones(1), mask, ratio_clip_high=0.28)
    assert float(grad_default[0, 0]) == 0.0
    np.testing.assert_allclose(float(grad_higher[0, 0]), -1.25, rtol=1e-5)


def test_dual_clip_caps_negative_advantage_loss():
    prev = jnp.zeros((1, 1))
    lp = jnp.log(jnp.full((1, 1), 5.0))
    mask = jnp.ones((1, 1))
    adv = jnp.asarray([-2.0])
    loss_off, _ = grpo.policy_loss(lp, prev, adv, mask)
    loss_c3, _ = grpo.policy_loss(lp, prev, adv, mask, ratio_clip_c=3.0)
    loss_c10, _ = grpo.policy_loss(lp, prev, adv, mask, ratio_clip_c=10.0)
    np.testing.assert_allclose([float(loss_off), float(loss_c3), float(loss_c10)], [10.0, 6.0, 10.0],
                               rtol=1e-5)
    assert float(_grad_wrt_logprobs(lp, prev, adv, mask, ratio_clip_c=3.0)[0, 0]) == 0.0
    np.testing.assert_allclose(float(_grad_wrt_logprobs(lp, prev, adv, mask, ratio_clip_c=10.0)[0, 0]),
                               10.0, rtol=1e-5)
    # Positive advantages are untouched by the dual clip.
    loss_pos, _ = grpo.policy_loss(lp, prev, jnp.asarray([2.0]), mask, ratio_clip_c=3.0)
    np.testing.assert_allclose(float(loss_pos), -2.0 * 1.2, rtol=1e-5)
    with pytest.raises(ValueError, match="ratio_clip_c"):
        grpo.policy_loss(lp, prev, adv, mask, ratio_clip_c=1.0)


def test_token_vs_sequence_normalisation():
    # Sequence 0: 1 trained token, A = +1; sequence 1: 3 trained tokens, A = −1; ρ = 1 everywhere,
    # so the per-token loss is −A.
    lp = jnp.zeros((2, 5))
    mask = jnp.asarray([[0, 1, 0, 0, 0], [0, 1, 1, 1, 0]])
    adv = jnp.asarray([1.0, -1.0])
    token_loss, _ = grpo.policy_loss(lp, lp, adv, mask)
    seq_loss, _ = grpo.policy_loss(lp, lp, adv, mask, loss_aggregation="sequence_mean")
    np.testing.assert_allclose(float(token_loss), (-1.0 + 3 * 1.0) / 4, rtol=1e-6)  # 0.5
    np.testing.assert_allclose(float(seq_loss), (-1.0 + 1.0) / 2, atol=1e-7)  # 0.0
    with pytest.raises(ValueError, match="loss_aggregation"):
        grpo.policy_loss(lp, lp, adv, mask, loss_aggregation="bogus")


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
def test_micro_batch_sums_equal_full_batch(aggregation):
    rng = np.random.default_rng(3)
    B, T = 6, 9
    lp = jnp.asarray(rng.normal(size=(B, T)) * 0.3 - 1.0, jnp.float32)
    prev = lp + jnp.asarray(rng.normal(size=(B, T)) * 0.3, jnp.float32)
    ref = lp + jnp.asarray(rng.normal(size=(B, T)) * 0.3, jnp.float32)
    mask = jnp.asarray(rng.integers(0, 2, size=(B, T)))
    mask = mask.at[2].set(0)  # one sequence with nothing to train
    adv = jnp.asarray(rng.normal(size=(B,)), jnp.float32)
    kwargs = dict(loss_aggregation=aggregation, kl_beta=0.05, reference_logprobs_BT=ref, ratio_clip_c=3.0)
    full_loss, full_aux = grpo.policy_loss(lp, prev, adv, mask, **kwargs)
    full_grad = _grad_wrt_logprobs(lp, prev, adv, mask, **kwargs)
    n_tok = mask.sum()
    n_seq = (mask.sum(axis=1) > 0).sum()
    total, grads, actor = 0.0, [], 0.0
    for sl in (slice(0, 2), slice(2, 4), slice(4, 6)):
        kw = dict(kwargs, reference_logprobs_BT=ref[sl], num_valid_tokens=n_tok,
                  num_valid_sequences=n_seq)
        loss, aux = grpo.policy_loss(lp[sl], prev[sl], adv[sl], mask[sl], **kw)
        total += float(loss)
        actor += float(aux["actor_loss"])
        grads.append(_grad_wrt_logprobs(lp[sl], prev[sl], adv[sl], mask[sl], **kw))
    np.testing.assert_allclose(total, float(full_loss), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(actor, float(full_aux["actor_loss"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.concatenate(grads), np.asarray(full_grad), rtol=1e-5, atol=1e-8)


def test_kl_k3_value_and_clamps():
    lp = jnp.zeros((1, 4))
    ref = jnp.asarray([[math.log(2.0), 30.0, -30.0, -0.5]])
    k3 = np.asarray(grpo.kl_penalty(lp, ref, "k3"))
    np.testing.assert_allclose(k3[0, 0], 2.0 - 1.0 - math.log(2.0), rtol=1e-6)
    assert k3[0, 1] == 10.0  # e^20 − 21 → output clamp 10
    assert k3[0, 2] == 10.0  # e^−20 + 19 → output clamp 10
    np.testing.assert_allclose(k3[0, 3], math.exp(-0.5) - 1.0 + 0.5, rtol=1e-6)
    k1 = np.asarray(grpo.kl_penalty(lp, ref, "k1"))
    np.testing.assert_allclose(k1[0], [-math.log(2.0), -10.0, 10.0, 0.5], rtol=1e-6)
    k2 = np.asarray(grpo.kl_penalty(lp, ref, "k2"))
    np.testing.assert_allclose(k2[0], [0.5 * math.log(2.0) ** 2, 10.0, 10.0, 0.125], rtol=1e-6)
    unclamped = np.asarray(grpo.kl_penalty(lp, ref, "k3", input_clamp=None, output_clamp=None))
    np.testing.assert_allclose(unclamped[0, 2], math.exp(-30.0) + 29.0, rtol=1e-6)
    with pytest.raises(ValueError, match="kl_type"):
        grpo.kl_penalty(lp, ref, "k4")

    # In the loss: β·(token mean of k3) is added to the actor loss.
    mask = jnp.asarray([[0, 1, 0, 1]])
    loss, aux = grpo.policy_loss(lp, lp, jnp.zeros(1), mask, kl_beta=0.5, reference_logprobs_BT=ref)
    expected_kl = (10.0 + (math.exp(-0.5) - 0.5)) / 2
    np.testing.assert_allclose(float(aux["kl_loss"]), expected_kl, rtol=1e-6)
    np.testing.assert_allclose(float(loss), 0.5 * expected_kl, rtol=1e-6)


def test_zero_beta_needs_no_reference():
    lp = jnp.zeros((1, 3))
    mask = jnp.ones((1, 3))
    loss, aux = jax.jit(lambda x: grpo.policy_loss(x, x, jnp.ones(1), mask))(lp)
    np.testing.assert_allclose(float(loss), -1.0, rtol=1e-6)
    assert float(aux["kl_loss"]) == 0.0
    with pytest.raises(ValueError, match="reference_logprobs_BT"):
        grpo.policy_loss(lp, lp, jnp.ones(1), mask, kl_beta=0.1)


def test_effective_objective_gradient_on_policy():
    # ρ = 1: gradient of the token mean is −A / N_tokens on every trained token.
    lp = jnp.asarray([[0.0, -1.0, -2.0], [0.0, -0.5, -0.25]])
    mask = jnp.asarray([[0, 1, 1], [0, 1, 0]])
    adv = jnp.asarray([2.0, -1.0])
    grad = np.asarray(_grad_wrt_logprobs(lp, lp, adv, mask))
    np.testing.assert_allclose(grad, [[0.0, -2 / 3, -2 / 3], [0.0, 1 / 3, 0.0]], rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Metrics and dynamic sampling
# ------------------------------------------------------------------------------------------


def test_reward_and_advantage_metrics():
    rewards = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]], np.float32)
    m = {k: float(v) for k, v in grpo.reward_metrics(rewards).items()}
    assert m["pct_groups_all_0"] == 25.0 and m["pct_groups_all_1"] == 25.0
    assert m["pct_groups_uniform"] == 75.0 and m["pct_groups_mixed"] == 25.0
    np.testing.assert_allclose(m["reward_mean"], rewards.mean(), rtol=1e-6)
    np.testing.assert_allclose(m["reward_std"], rewards.std(), rtol=1e-6)
    adv = grpo.compute_advantages(rewards)
    a = {k: float(v) for k, v in grpo.advantage_metrics(adv).items()}
    assert a["pct_zero_advantage"] == 75.0
    np.testing.assert_allclose(a["advantage_max"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(a["advantage_sum"], float(np.asarray(adv).sum()), rtol=1e-5)


def test_logprob_error_and_entropy_metrics():
    gen = jnp.asarray([[0.0, -1.0, -2.0], [0.0, -1.0, -1.0]])
    prev = jnp.asarray([[0.0, -1.1, -2.0], [0.0, -0.9, 5.0]])
    mask = jnp.asarray([[0, 1, 1], [0, 1, 0]])
    m = {k: float(v) for k, v in grpo.logprob_error_metrics(gen, prev, mask).items()}
    np.testing.assert_allclose(m["token_mult_prob_error"], (2 * math.exp(0.1) + 1.0) / 3, rtol=1e-5)
    d = np.array([-0.1, 0.0, 0.1])
    np.testing.assert_allclose(m["gen_kl_error"], np.mean(np.expm1(d) - d), rtol=1e-4)
    assert m["policy_kl_error"] > 0.0
    np.testing.assert_allclose(m["max_seq_mult_prob_error"], math.exp(0.1), rtol=1e-5)
    np.testing.assert_allclose(m["min_seq_mult_prob_error"], (math.exp(0.1) + 1) / 2, rtol=1e-5)
    e = grpo.entropy_metrics(gen, mask, entropy_BT=jnp.ones((2, 3)))
    np.testing.assert_allclose(float(e["approx_entropy"]), 4.0 / 3.0, rtol=1e-6)
    assert float(e["entropy"]) == 1.0
    kl = grpo.reference_kl_metrics(gen, prev, mask)
    assert float(kl["kl_to_reference"]) > 0.0 and grpo.reference_kl_metrics(gen, None, mask) == {}
    counts = grpo.token_count_metrics(mask, attention_mask_BT=jnp.ones((2, 3)))
    assert int(counts["num_valid_tokens"]) == 3 and int(counts["num_valid_sequences"]) == 2
    assert int(counts["total_num_tokens"]) == 6


def test_ratio_metrics_values():
    prev = jnp.zeros((1, 4))
    lp = jnp.log(jnp.asarray([[1.0, 1.5, 0.5, 1.0]]))
    mask = jnp.asarray([[0, 1, 1, 1]])
    m = {k: float(v) for k, v in grpo.ratio_metrics(lp, prev, jnp.ones(1), mask).items()}
    np.testing.assert_allclose([m["ratio_min"], m["ratio_max"], m["ratio_mean"]], [0.5, 1.5, 1.0],
                               rtol=1e-6)
    np.testing.assert_allclose(m["clip_fraction"], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(m["clipped_ratio_mean"], (1.2 + 0.8 + 1.0) / 3, rtol=1e-6)
    assert m["approx_kl"] > 0.0


def test_select_mixed_groups_and_accumulator():
    rewards = np.array([[0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 1, 0]], np.float32)
    keep = np.asarray(grpo.select_mixed_groups(rewards))
    np.testing.assert_array_equal(keep, [False, True, False, True])
    masked = np.asarray(grpo.select_mixed_groups(rewards, [[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 0]]))
    np.testing.assert_array_equal(masked, [False, False, False, True])

    acc = grpo.DynamicSamplingAccumulator(target_groups=3, max_batches=4)
    assert list(acc.add(rewards, ["a", "b", "c", "d"])) == [1, 3]
    assert not acc.done
    acc.add(rewards[::-1], ["d", "c", "b", "a"])
    assert acc.done and acc.is_full
    groups, kept = acc.take()
    assert groups == ["b", "d", "d"] and kept.shape == (3, 3)
    starved = grpo.DynamicSamplingAccumulator(target_groups=2, max_batches=1)
    starved.add(np.zeros((2, 3)), ["x", "y"])
    assert starved.done and not starved.is_full
    with pytest.raises(ValueError):
        grpo.DynamicSamplingAccumulator(target_groups=0, max_batches=1)


def test_policy_loss_rejects_misaligned_inputs():
    lp = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="mask_BT shape"):
        grpo.policy_loss(lp, lp, jnp.ones(2), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="advantages shape"):
        grpo.policy_loss(lp, lp, jnp.ones(3), jnp.ones((2, 3)))
    per_token, _ = grpo.policy_loss(lp, lp, jnp.ones((2, 3)), jnp.ones((2, 3)))
    per_sequence, _ = grpo.policy_loss(lp, lp, jnp.ones(2), jnp.ones((2, 3)))
    assert float(per_token) == float(per_sequence)
