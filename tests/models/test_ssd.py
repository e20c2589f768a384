"""The chunked SSD scan and the one-token step against a float64 sequential recurrence."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grpo_jax.models import ssd

ssd_chunked = jax.jit(ssd.ssd_chunked, static_argnums=5)


def _random_inputs(rng, batch=2, length=21, groups=2, heads_per_group=3, head_dim=4, state=5):
    x = rng.standard_normal((batch, length, groups, heads_per_group, head_dim))
    # softplus(N(-4, 3)) spans tiny to large steps, as real dt_bias does.
    dt = np.log1p(np.exp(rng.normal(-4.0, 3.0, (batch, length, groups, heads_per_group))))
    A = -np.exp(rng.normal(0.0, 1.0, (groups, heads_per_group)))
    B = rng.standard_normal((batch, length, groups, state))
    C = rng.standard_normal((batch, length, groups, state))
    h0 = rng.standard_normal((batch, groups, heads_per_group, head_dim, state))
    return x, dt, A, B, C, h0


def _sequential(x, dt, A, B, C, h0):
    """h_t = exp(dt A) h_{t-1} + dt x_t ⊗ B_t; y_t = h_t C_t, in float64, one step at a time."""
    h = h0.copy()
    ys = []
    for t in range(x.shape[1]):
        decay = np.exp(dt[:, t] * A)[..., None, None]
        h = decay * h + (dt[:, t, ..., None] * x[:, t])[..., None] * B[:, t, :, None, None, :]
        ys.append(np.einsum("bghpn,bgn->bghp", h, C[:, t]))
    return np.stack(ys, axis=1), h


@pytest.mark.parametrize("chunk_size", [1, 4, 32])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_chunked_scan_matches_sequential_recurrence(chunk_size, with_initial_state):
    rng = np.random.default_rng(chunk_size)
    x, dt, A, B, C, h0 = _random_inputs(rng)
    if not with_initial_state:
        h0 = np.zeros_like(h0)
    y_ref, h_ref = _sequential(x, dt, A, B, C, h0)
    f32 = lambda v: np.asarray(v, np.float32)
    y, h = ssd_chunked(f32(x), f32(dt), f32(A), f32(B), f32(C), chunk_size,
                       f32(h0) if with_initial_state else None)
    scale_y, scale_h = np.abs(y_ref).max(), np.abs(h_ref).max()
    assert np.abs(np.asarray(y) - y_ref).max() / scale_y < 2e-6
    assert np.abs(np.asarray(h) - h_ref).max() / scale_h < 2e-6


def test_chunked_scan_keeps_its_digits_when_a_chunk_decays_hard_then_softly():
    """Steps of decay e^-1000 and then e^-0.001 in one chunk: the late positions' decays come from
    prefix sums near -16000, where a float32 difference of prefix sums is off by ~1e-3 (the
    scan's own error then ~1e-3); the compensated prefix sums keep the float32 error."""
    rng = np.random.default_rng(3)
    x, dt, A, B, C, h0 = _random_inputs(rng, length=32)
    A = -np.full_like(A, 20.0)
    dt[:, :16] = 50.0
    dt[:, 16:] = 5e-5
    y_ref, h_ref = _sequential(x, dt, A, B, C, h0)
    f32 = lambda v: np.asarray(v, np.float32)
    y, h = ssd_chunked(f32(x), f32(dt), f32(A), f32(B), f32(C), 32, f32(h0))
    assert np.abs(np.asarray(y) - y_ref).max() / np.abs(y_ref).max() < 2e-6
    assert np.abs(np.asarray(h) - h_ref).max() / np.abs(h_ref).max() < 2e-6


def _sequential_scan(x, dt, A, B, C, h0):
    """The recurrence as a float32 `lax.scan`, to differentiate."""
    def step(h, inputs):
        x_t, dt_t, B_t, C_t = inputs
        h = (jnp.exp(dt_t * A)[..., None, None] * h
             + (dt_t[..., None] * x_t)[..., None] * B_t[:, :, None, None, :])
        return h, jnp.einsum("bghpn,bgn->bghp", h, C_t)
    h, y = jax.lax.scan(step, h0, [jnp.moveaxis(v, 1, 0) for v in (x, dt, B, C)])
    return jnp.moveaxis(y, 0, 1), h


@pytest.mark.parametrize("chunk_size", [4, 8])
def test_chunked_scan_gradients_match_the_sequential_recurrence(chunk_size):
    rng = np.random.default_rng(11)
    inputs = [np.float32(v) for v in _random_inputs(rng, length=19)]
    y_weight, h_weight = (np.float32(rng.standard_normal(v.shape)) for v in _sequential(*inputs))

    def loss(scan, *inputs):
        y, h = scan(*inputs)
        return jnp.sum(y * y_weight) + jnp.sum(h * h_weight)

    def chunked(x, dt, A, B, C, h0):
        return ssd.ssd_chunked(x, dt, A, B, C, chunk_size, h0)

    argnums = tuple(range(6))
    got = jax.jit(jax.grad(lambda *v: loss(chunked, *v), argnums=argnums))(*inputs)
    want = jax.jit(jax.grad(lambda *v: loss(_sequential_scan, *v), argnums=argnums))(*inputs)
    for name, g, w in zip(("x", "dt", "A", "B", "C", "h0"), got, want):
        error = np.abs(np.asarray(g) - np.asarray(w)).max() / np.abs(np.asarray(w)).max()
        assert error < 1e-5, (name, error)


def test_bfloat16_contractions_round_like_bfloat16_and_keep_float32_gradients():
    """matmul_dtype=bfloat16 rounds only the contraction operands: outputs and gradients stay
    float32 and near the float32 scan (errors of bfloat16's 8-bit mantissa, not more), and it
    does round (otherwise the option would be a no-op)."""
    rng = np.random.default_rng(7)
    x, dt, A, B, C, h0 = (np.float32(v) for v in _random_inputs(rng, length=37))
    y_ref, h_ref = _sequential(x, dt, A, B, C, h0)
    scan = jax.jit(ssd.ssd_chunked, static_argnums=(5, 7))
    y16, h16 = scan(x, dt, A, B, C, 8, h0, jnp.bfloat16)
    y32, h32 = scan(x, dt, A, B, C, 8, h0, jnp.float32)
    assert y16.dtype == h16.dtype == jnp.float32
    for got16, got32, ref in ((y16, y32, y_ref), (h16, h32, h_ref)):
        error16 = np.abs(np.asarray(got16) - ref).max() / np.abs(ref).max()
        error32 = np.abs(np.asarray(got32) - ref).max() / np.abs(ref).max()
        assert 1e-4 < error16 < 1e-2 and error32 < 2e-6, (error16, error32)

    def loss(x, dt, B, C, matmul_dtype):
        y, h = ssd.ssd_chunked(x, dt, A, B, C, 8, h0, matmul_dtype)
        return jnp.sum(y * np.float32(y_ref)) + jnp.sum(h * np.float32(h_ref))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
    for g16, g32 in zip(grad(x, dt, B, C, jnp.bfloat16), grad(x, dt, B, C, jnp.float32)):
        assert g16.dtype == jnp.float32
        relative = np.abs(np.asarray(g16) - np.asarray(g32)).max() / np.abs(np.asarray(g32)).max()
        assert relative < 1.5e-2, relative


def test_step_matches_sequential_recurrence():
    rng = np.random.default_rng(0)
    x, dt, A, B, C, h0 = _random_inputs(rng, length=6)
    y_ref, h_ref = _sequential(x, dt, A, B, C, h0)
    step = jax.jit(ssd.ssd_step)
    h = np.float32(h0)
    for t in range(x.shape[1]):
        y, h = step(h, np.float32(x[:, t]), np.float32(dt[:, t]), np.float32(A),
                    np.float32(B[:, t]), np.float32(C[:, t]))
        np.testing.assert_allclose(y, y_ref[:, t], rtol=1e-5, atol=1e-5 * np.abs(y_ref).max())
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-5 * np.abs(h_ref).max())


def test_zero_dt_steps_leave_the_state_unchanged():
    """Right padding with dt = 0 must give each row its state at its last real token."""
    rng = np.random.default_rng(1)
    x, dt, A, B, C, h0 = (np.float32(v) for v in _random_inputs(rng, length=13))
    _, h_short = ssd_chunked(x[:, :9], dt[:, :9], A, B[:, :9], C[:, :9], 4, h0)
    dt_padded = dt.copy()
    dt_padded[:, 9:] = 0.0
    _, h_padded = ssd_chunked(x, dt_padded, A, B, C, 4, h0)
    np.testing.assert_allclose(h_padded, h_short, rtol=1e-6, atol=1e-6)


def test_segsum_is_stable_for_large_prefix_sums():
    """A difference of prefix sums loses all digits here; the masked cumsum keeps them."""
    a = np.full((64,), -1e4, np.float32)
    a[-2:] = -1e-3
    out = np.asarray(ssd.segsum(a))
    assert out[-1, -2] == np.float32(-1e-3)
    assert np.isneginf(out[0, 1])
    assert out[5, 5] == 0.0


def test_compensated_cumsum_keeps_the_digits_of_large_prefix_sums():
    a = np.full((64,), -1e4, np.float32)
    a[-2:] = -1e-3
    hi, lo = jax.jit(ssd.compensated_cumsum)(a)
    plain = np.cumsum(a)
    assert plain[-1] - plain[-2] != np.float32(-1e-3)  # the failure it exists for
    assert (hi[-1] - hi[-2]) + (lo[-1] - lo[-2]) == np.float32(-1e-3)
    np.testing.assert_allclose(np.float64(hi) + np.float64(lo), np.cumsum(np.float64(a)),
                               rtol=1e-12)
    weights = np.float32(np.random.default_rng(0).standard_normal(64))
    grad = jax.grad(lambda a: jnp.sum(ssd.compensated_cumsum(a)[0] * weights))(a)
    np.testing.assert_allclose(grad, jax.grad(lambda a: jnp.sum(jnp.cumsum(a) * weights))(a))


def test_step_keeps_rows_without_a_token_bit_for_bit():
    rng = np.random.default_rng(2)
    x, dt, A, B, C, h0 = (np.float32(v) for v in _random_inputs(rng, length=1))
    update = np.arange(x.shape[0]) % 2 == 0
    y, h = jax.jit(ssd.ssd_step)(h0, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], update)
    _, h_all = jax.jit(ssd.ssd_step)(h0, x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])
    np.testing.assert_array_equal(np.asarray(h)[~update], h0[~update])
    np.testing.assert_allclose(np.asarray(h)[update], np.asarray(h_all)[update], rtol=1e-5,
                               atol=1e-6)


def _heads(v):
    """(B, T, G, H, ...) -> (B, T, G*H, ...)."""
    return v.reshape(v.shape[:2] + (-1,) + v.shape[4:])


@pytest.mark.parametrize("steps,slots", [(6, 6), (4, 7)])
def test_deferred_steps_match_sequential_recurrence(steps, slots):
    """K steps that only read h_0 (`ssd_step_deferred`) give the recurrence's outputs, and the fold
    gives its state, also when fewer steps than slots were taken."""
    rng = np.random.default_rng(3)
    x, dt, A, B, C, h0 = _random_inputs(rng, length=steps)
    y_ref, h_ref = _sequential(x, dt, A, B, C, h0)
    b, g, h, p, n = h0.shape
    state = np.float32(h0.reshape(b, g * h, p, n))
    step = jax.jit(ssd.ssd_step_deferred)
    pending = ssd.no_pending_updates(state, g, slots)
    for t in range(steps):
        y, pending = step(state, pending, np.float32(_heads(x)[:, t]), np.float32(_heads(dt)[:, t]),
                          np.float32(A.reshape(-1)), np.float32(B[:, t]), np.float32(C[:, t]))
        np.testing.assert_allclose(y, _heads(y_ref)[:, t], rtol=1e-5,
                                   atol=1e-5 * np.abs(y_ref).max())
    assert int(pending.count) == steps
    folded = jax.jit(ssd.fold_pending)(state, pending)
    np.testing.assert_allclose(folded, h_ref.reshape(b, g * h, p, n), rtol=1e-5,
                               atol=1e-5 * np.abs(h_ref).max())


def test_deferred_zero_dt_rows_fold_back_bit_for_bit():
    """Rows whose every step has dt = 0 (done, or padding) keep their state exactly."""
    rng = np.random.default_rng(4)
    x, dt, A, B, C, h0 = (np.float32(v) for v in _random_inputs(rng, length=3))
    dt[1] = 0.0
    b, g, h, p, n = h0.shape
    state = h0.reshape(b, g * h, p, n)
    pending = ssd.no_pending_updates(state, g, 4)
    for t in range(3):
        _, pending = ssd.ssd_step_deferred(state, pending, _heads(x)[:, t], _heads(dt)[:, t],
                                           A.reshape(-1), B[:, t], C[:, t])
    folded = np.asarray(ssd.fold_pending(state, pending))
    np.testing.assert_array_equal(folded[1], state[1])
    assert not np.allclose(folded[0], state[0])
