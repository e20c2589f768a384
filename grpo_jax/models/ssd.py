"""Mamba-2 state-space duality (SSD) as pure functions in plain XLA.

The recurrence, per head with state h_t of shape (P, N):

    h_t = exp(dt_t · A) · h_{t-1} + dt_t · x_t ⊗ B_t,        y_t = h_t · C_t

`ssd_chunked` evaluates it for whole sequences with the chunked "minimal SSD" algorithm (einsums
within and between chunks); `ssd_step` is the one-token update used in decoding, and
`ssd_step_deferred` / `fold_pending` the same steps with the state writes of a run of steps
deferred to one at its end. The D skip term is left to the caller. All state math is float32;
the chunks' prefix sums of log-decays carry about twice float32's digits (`compensated_cumsum`).

Heads are kept grouped, (G groups, H heads per group): head g·H + h reads B and C of group g, so
B and C are never expanded to heads, and a tensor-parallel shard that holds whole groups computes
its heads locally.

Shapes: x_BTGHP, dt_BTGH (after softplus and clamp), A_GH (negative), B_BTGN, C_BTGN,
state_BGHPN. Inside a chunked scan C is the number of chunks and Q (also L, S) the chunk length.
"""
import flax.struct
import jax
import jax.numpy as jnp

from grpo_jax.models.precision import einsum_f32

_F32 = jnp.float32


def segsum(a_XQ: jnp.ndarray) -> jnp.ndarray:
    """out[..., i, j] = a[j+1] + ... + a[i] for i >= j, and -inf above the diagonal.

    Computed as a masked cumsum: the difference of two prefix sums, S_i - S_j, cancels
    catastrophically once the prefix sums are large.
    """
    q = a_XQ.shape[-1]
    a_XQQ = jnp.broadcast_to(a_XQ[..., :, None], a_XQ.shape + (q,))  # [..., i, j] = a_i
    strictly_lower = jnp.tril(jnp.ones((q, q), dtype=bool), k=-1)
    sums_XQQ = jnp.cumsum(jnp.where(strictly_lower, a_XQQ, 0.0), axis=-2)
    lower = jnp.tril(jnp.ones((q, q), dtype=bool))
    return jnp.where(lower, sums_XQQ, -jnp.inf)


def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth's TwoSum)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


@jax.custom_jvp
def compensated_cumsum(a_XQ):
    """The cumsum over the last axis as an unevaluated sum hi + lo of two float32 arrays (about
    twice float32's digits): differences hi_i - hi_j of large prefix sums keep their digits once
    lo_i - lo_j is added back. The derivative is the cumsum's, carried by hi.

    hi is the float32 cumsum, summed in whatever order XLA picks; lo is the cumsum of what each
    step of hi missed, a_i - (hi_i - hi_{i-1}), with the step hi_i - hi_{i-1} taken exactly as a
    TwoSum pair. Two cumsums and a few elementwise ops: an associative scan of double-float
    additions, the textbook form, compiled the tiny model's forward 1.5x slower on the CPU.
    """
    hi_XQ = jnp.cumsum(a_XQ, axis=-1)
    previous_XQ = jnp.pad(hi_XQ[..., :-1], [(0, 0)] * (a_XQ.ndim - 1) + [(1, 0)])
    step_XQ, step_error_XQ = _two_sum(hi_XQ, -previous_XQ)
    return hi_XQ, jnp.cumsum((a_XQ - step_XQ) - step_error_XQ, axis=-1)


@compensated_cumsum.defjvp
def _compensated_cumsum_jvp(primals, tangents):
    (a_XQ,), (t_XQ,) = primals, tangents
    return compensated_cumsum(a_XQ), (jnp.cumsum(t_XQ, axis=-1), jnp.zeros_like(t_XQ))


def _by_position(v_BGHCQ):
    """(B, G, H, C, Q) -> (B, C, Q, G, H, 1), to scale a (B, C, Q, G, H, P) tensor per position."""
    return jnp.transpose(v_BGHCQ, (0, 3, 4, 1, 2))[..., None]


def ssd_chunked(x_BTGHP, dt_BTGH, A_GH, B_BTGN, C_BTGN, chunk_size: int,
                initial_state_BGHPN=None, matmul_dtype=_F32):
    """Runs the SSM over whole sequences. Returns (y_BTGHP float32, final_state_BGHPN float32).

    Steps with dt = 0 leave the state unchanged, so right padding with dt = 0 yields each row's
    state at its last real token.

    `matmul_dtype`: the operands of the four contractions over a chunk's positions or state
    (C·B, the decay-weighted C·B against the inputs, the chunk states, the read-out of the
    entering states). bfloat16 rounds them as the fused Mamba kernels do (float32 products,
    accumulation and everything else: decays, the carry between chunks, the states); float32
    (the default) is the exact reference.
    """
    if jnp.dtype(matmul_dtype) == jnp.dtype(_F32):
        contract = jnp.einsum
    else:
        def contract(subscripts, a, b):
            return einsum_f32(subscripts, a.astype(matmul_dtype), b.astype(matmul_dtype))
    b, t, g, h, p = x_BTGHP.shape
    n = B_BTGN.shape[-1]
    q = chunk_size
    c = -(-t // q)
    pad = c * q - t

    dt_BTGH = dt_BTGH.astype(_F32)
    X_BTGHP = x_BTGHP.astype(_F32) * dt_BTGH[..., None]  # discretised input
    a_BTGH = A_GH.astype(_F32) * dt_BTGH                  # log of the per-step decay

    def chunks(v):  # right-pad time with zeros (no-op steps) and split it into chunks
        v = jnp.pad(v, [(0, 0), (0, pad)] + [(0, 0)] * (v.ndim - 2))
        return v.reshape((b, c, q) + v.shape[2:])

    X_BCQGHP = chunks(X_BTGHP)
    B_BCQGN = chunks(B_BTGN.astype(_F32))
    C_BCQGN = chunks(C_BTGN.astype(_F32))
    a_BGHCQ = jnp.transpose(chunks(a_BTGH), (0, 3, 4, 1, 2))
    # The decay from position s to l of a chunk is exp(S_l - S_s) for the prefix sums S. As a
    # float32 difference it would lose its digits once S is large; as `segsum`'s masked cumsum it
    # costs a (Q, Q) scan per head (a quarter of this function's forward + backward on the CPU,
    # and (Q, Q) tensors XLA:GPU writes out). With S = hi + lo (`compensated_cumsum`) the (Q, Q)
    # part is exp(hi_l - hi_s), two broadcasts XLA fuses into the contraction, and the lo parts
    # are per-position factors: exp(-lo_s) on the inputs, exp(lo_l) on the outputs.
    hi_BGHCQ, lo_BGHCQ = compensated_cumsum(a_BGHCQ)
    lower = jnp.tril(jnp.ones((q, q), dtype=bool))
    decay_hi_BGHCLS = jnp.exp(jnp.where(lower, hi_BGHCQ[..., :, None] - hi_BGHCQ[..., None, :],
                                        -jnp.inf))

    # 1. Within each chunk: a causal, decay-weighted "attention" of C against B.
    CB_BGCLS = contract("bclgn,bcsgn->bgcls", C_BCQGN, B_BCQGN)
    y_diag_BCLGHP = contract("bghcls,bcsghp->bclghp", CB_BGCLS[:, :, None] * decay_hi_BGHCLS,
                             X_BCQGHP * _by_position(jnp.exp(-lo_BGHCQ))
                             ) * _by_position(jnp.exp(lo_BGHCQ))

    # 2. The state each chunk produces on its own: inputs decayed to the chunk's end.
    to_end_BGHCQ = (hi_BGHCQ[..., -1:] - hi_BGHCQ) + (lo_BGHCQ[..., -1:] - lo_BGHCQ)
    chunk_states_BCGHPN = contract("bclgn,bclghp->bcghpn", B_BCQGN,
                                   X_BCQGHP * _by_position(jnp.exp(to_end_BGHCQ)))
    a_cumsum_BGHCQ = hi_BGHCQ + lo_BGHCQ

    # 3. Between chunks: carry the states across chunk boundaries, starting from the initial state.
    if initial_state_BGHPN is None:
        initial_state_BGHPN = jnp.zeros((b, g, h, p, n), _F32)
    states_BCGHPN = jnp.concatenate(
        [initial_state_BGHPN.astype(_F32)[:, None], chunk_states_BCGHPN], axis=1)
    chunk_totals_BGHC = jnp.pad(a_cumsum_BGHCQ[..., -1], [(0, 0)] * 3 + [(1, 0)])
    carry_BGHZC = jnp.exp(segsum(chunk_totals_BGHC))
    carried_BZGHPN = jnp.einsum("bghzc,bcghpn->bzghpn", carry_BGHZC, states_BCGHPN)
    entering_BCGHPN, final_state_BGHPN = carried_BZGHPN[:, :-1], carried_BZGHPN[:, -1]

    # 4. Each chunk's entering state read out by C, decayed to the position in the chunk.
    y_off_BCLGHP = (contract("bclgn,bcghpn->bclghp", C_BCQGN, entering_BCGHPN)
                    * _by_position(jnp.exp(a_cumsum_BGHCQ)))

    y_BTGHP = (y_diag_BCLGHP + y_off_BCLGHP).reshape(b, c * q, g, h, p)[:, :t]
    return y_BTGHP, final_state_BGHPN


def ssd_step(state_BGHPN, x_BGHP, dt_BGH, A_GH, B_BGN, C_BGN, update_B=None):
    """One recurrent step. Returns (y_BGHP float32, new_state_BGHPN float32).

    `update_B` (bool, optional): rows where it is False keep their state bit for bit.
    """
    b, g, h, p, n = state_BGHPN.shape
    heads = lambda v: jnp.repeat(v, h, axis=1)  # noqa: E731 - (B, G, N) -> (B, G*H, N)
    y_BHP, state_BHPN = ssd_step_heads(
        state_BGHPN.reshape(b, g * h, p, n), x_BGHP.reshape(b, g * h, p),
        dt_BGH.reshape(b, g * h), A_GH.reshape(g * h), heads(B_BGN), heads(C_BGN), update_B)
    return y_BHP.reshape(b, g, h, p), state_BHPN.reshape(b, g, h, p, n)


def ssd_step_heads(state_BHPN, x_BHP, dt_BH, A_H, B_BHN, C_BHN, update_B=None):
    """`ssd_step` over flat heads, with B and C already given per head (B_BHN, C_BHN).

    Decoding reads and writes the whole state every step (the largest per-step traffic after the
    weights), so the step is written to read it exactly once and update it in place:

    * the state keeps the cache's (B, H, P, N) shape: in the compiled CPU decode loop, updating a
      grouped (B, G, H/G, P, N) view of it made XLA copy every layer's state once per step;
    * the row selection and the readout y = state · C are elementwise / reduce consumers that
      fuse with the update; a matmul readout would read the new state a second time.
    """
    dt_BH = dt_BH.astype(_F32)
    decay_BH = jnp.exp(dt_BH * A_H.astype(_F32))
    input_BHP = dt_BH[..., None] * x_BHP.astype(_F32)
    old_BHPN = state_BHPN.astype(_F32)
    state_BHPN = (old_BHPN * decay_BH[..., None, None]
                  + input_BHP[..., None] * B_BHN.astype(_F32)[:, :, None, :])
    if update_B is not None:
        state_BHPN = jnp.where(update_B[:, None, None, None], state_BHPN, old_BHPN)
    y_BHP = jnp.sum(state_BHPN * C_BHN.astype(_F32)[:, :, None, :], axis=-1)
    return y_BHP, state_BHPN


@flax.struct.dataclass
class PendingUpdates:
    """One-token steps taken since a state h_0 was last written (`ssd_step_deferred`), K slots.

    After k steps the state is h_k = decay_BH · h_0 + sum_j weight_BKH[:, j] · input_BKHP[:, j] ⊗
    B_j, with decay_BH the product of the k decays, weight_BKH[:, j] the product of the decays
    after step j (0 in unused slots), input_BKHP[:, j] = dt_j · x_j, b_BKGN[:, j] = B_j per group,
    and count = k (int32).
    """

    decay_BH: jax.Array
    weight_BKH: jax.Array
    input_BKHP: jax.Array
    b_BKGN: jax.Array
    count: jax.Array

    @property
    def num_slots(self) -> int:
        return self.weight_BKH.shape[1]


def no_pending_updates(state_BHPN, groups: int, num_slots: int) -> PendingUpdates:
    """Room for `num_slots` deferred steps on a (B, H, P, N) state whose heads form `groups`."""
    b, h, p, n = state_BHPN.shape
    return PendingUpdates(decay_BH=jnp.ones((b, h), _F32),
                          weight_BKH=jnp.zeros((b, num_slots, h), _F32),
                          input_BKHP=jnp.zeros((b, num_slots, h, p), _F32),
                          b_BKGN=jnp.zeros((b, num_slots, groups, n), _F32),
                          count=jnp.zeros((), jnp.int32))


def ssd_step_deferred(state_BHPN, pending: PendingUpdates, x_BHP, dt_BH, A_H, B_BGN, C_BGN):
    """`ssd_step` over flat heads (B and C per group) that leaves the state h_0 unwritten and
    records the step in `pending`. Returns (y_BHP float32, pending); `fold_pending` writes the
    state after the run.

    y_t = h_t · C_t = decay · (h_0 · C_t) + sum_j weight_j (B_j · C_t) input_j, so a step reads
    h_0 once and writes nothing, where the per-step update reads and writes the whole state every
    step. The caller folds after at most `pending.num_slots` steps (one more would overwrite the
    last slot). Steps with dt = 0 (padding, rows that are done) have decay exactly 1 and input
    exactly 0, so a row with no real step in the run folds back to h_0 bit for bit.
    """
    heads_per_group = state_BHPN.shape[1] // B_BGN.shape[1]
    dt_BH = dt_BH.astype(_F32)
    decay_BH = jnp.exp(dt_BH * A_H.astype(_F32))
    slot = pending.count
    weight_BKH = jax.lax.dynamic_update_index_in_dim(
        pending.weight_BKH * decay_BH[:, None, :], jnp.ones_like(decay_BH), slot, axis=1)
    input_BKHP = jax.lax.dynamic_update_index_in_dim(
        pending.input_BKHP, dt_BH[..., None] * x_BHP.astype(_F32), slot, axis=1)
    b_BKGN = jax.lax.dynamic_update_index_in_dim(pending.b_BKGN, B_BGN.astype(_F32), slot, axis=1)
    pending = PendingUpdates(decay_BH=pending.decay_BH * decay_BH, weight_BKH=weight_BKH,
                             input_BKHP=input_BKHP, b_BKGN=b_BKGN, count=slot + 1)
    C_BGN = C_BGN.astype(_F32)
    # Elementwise products reduced, not matmuls: the state and the slots are read in place (as
    # batched matmuls over (B, H), XLA:CPU first transposed the slots, every step).
    C_BHN = jnp.repeat(C_BGN, heads_per_group, axis=1)
    y_state_BHP = jnp.sum(state_BHPN.astype(_F32) * C_BHN[:, :, None, :], axis=-1)
    cb_BKH = jnp.repeat(jnp.sum(b_BKGN * C_BGN[:, None], axis=-1), heads_per_group, axis=2)
    y_pending_BHP = jnp.sum((weight_BKH * cb_BKH)[..., None] * input_BKHP, axis=1)
    return pending.decay_BH[..., None] * y_state_BHP + y_pending_BHP, pending


def fold_pending(state_BHPN, pending: PendingUpdates):
    """The state after the pending steps (float32): h_0 read and h_k written once, the slots
    added as one matmul per (row, group) over the K slots."""
    b, h, p, n = state_BHPN.shape
    g, k = pending.b_BKGN.shape[2], pending.num_slots
    weighted_BKGX = (pending.weight_BKH[..., None] * pending.input_BKHP).reshape(b, k, g, -1)
    added_BGXN = jnp.einsum("bkgx,bkgn->bgxn", weighted_BKGX, pending.b_BKGN)
    return (state_BHPN.astype(_F32) * pending.decay_BH[..., None, None]
            + added_BGXN.reshape(b, h, p, n))
