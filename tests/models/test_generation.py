"""Generation through the cache: prefill, continuation, decode and right padding all reproduce the
training forward (time_step_clamp="always", so the one-token step clamps dt as the scan does).

Shapes are shared by every test (batch 3, 29 tokens, prompt block 13, continuation blocks of 4,
16 decode steps, max_len 32) so each path compiles once.
"""
import jax
import numpy as np
import pytest

from tests.models.helpers import relative_error, to_numpy

BATCH, LENGTH, PROMPT, BLOCK, MAX_LEN = 3, 29, 13, 4, 32
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def input_ids():
    return np.random.default_rng(2).integers(0, 100, (BATCH, LENGTH))


@pytest.fixture(scope="module")
def full_logits(tiny_runner, input_ids):
    return tiny_runner.full(input_ids)


def test_prefill_then_decode_equals_full_forward(tiny_runner, input_ids, full_logits):
    cache = tiny_runner.model.init_cache(BATCH, MAX_LEN)
    prefill, cache = tiny_runner.extend(input_ids[:, :PROMPT], cache)
    decoded, cache = tiny_runner.decode(cache, input_ids[:, PROMPT:])
    assert decoded.shape[1] >= 16
    assert relative_error(np.concatenate([prefill, decoded], 1), full_logits) <= TOLERANCE
    np.testing.assert_array_equal(cache.lengths_B, [LENGTH] * BATCH)


def test_continuation_in_blocks_equals_full_forward(tiny_runner, input_ids, full_logits):
    cache = tiny_runner.model.init_cache(BATCH, MAX_LEN)
    logits, cache = tiny_runner.extend(input_ids[:, :PROMPT], cache)
    pieces = [logits]
    for start in range(PROMPT, LENGTH, BLOCK):
        logits, cache = tiny_runner.extend(input_ids[:, start:start + BLOCK], cache)
        pieces.append(logits)
    assert relative_error(np.concatenate(pieces, 1), full_logits) <= TOLERANCE


def _ragged_blocks(input_ids, widths, valid_per_block, rng):
    """Per block, a (BATCH, width) array holding each row's next tokens, then random padding."""
    position = np.zeros(BATCH, int)
    for width, valid in zip(widths, valid_per_block):
        block = rng.integers(0, 100, (BATCH, width))
        for row in range(BATCH):
            block[row, :valid[row]] = input_ids[row, position[row]:position[row] + valid[row]]
        yield block, np.asarray(valid), position.copy()
        position += valid


def test_right_padded_batch_equals_each_row_alone(tiny_runner, input_ids, full_logits):
    """Rows advance by different amounts per call; every valid output equals the row's own
    unpadded forward, and the final cache equals feeding each row one token at a time."""
    rng = np.random.default_rng(3)
    widths = [PROMPT, BLOCK, BLOCK]
    valid_per_block = [[10, 6, 9], [4, 3, 0], [2, 2, 4]]
    cache = tiny_runner.model.init_cache(BATCH, MAX_LEN)
    for block, valid, start in _ragged_blocks(input_ids, widths, valid_per_block, rng):
        logits, cache = tiny_runner.extend(block, cache, valid)
        for row in range(BATCH):
            expected = full_logits[row, start[row]:start[row] + valid[row]]
            if valid[row]:
                assert relative_error(logits[row, :valid[row]], expected) <= TOLERANCE
    totals = np.sum(valid_per_block, axis=0)
    padded_cache = to_numpy(cache)

    # The same tokens one at a time: 16 steps, row r valid for its first totals[r] steps.
    steps = LENGTH - PROMPT
    num_valid_BT = (np.arange(steps)[None, :] < totals[:, None]).astype(np.int32)
    tokens = np.where(num_valid_BT == 1, input_ids[:, :steps], rng.integers(0, 100, (BATCH, steps)))
    _, stepped = tiny_runner.decode(tiny_runner.model.init_cache(BATCH, MAX_LEN), tokens,
                                    num_valid_BT)
    stepped_cache = to_numpy(stepped)
    np.testing.assert_array_equal(padded_cache.lengths_B, totals)
    np.testing.assert_array_equal(stepped_cache.lengths_B, totals)
    for padded, step in zip(padded_cache.mamba, stepped_cache.mamba):
        for name in ("conv_x", "conv_b", "conv_c", "ssm"):
            assert relative_error(getattr(padded, name), getattr(step, name)) <= TOLERANCE
    for padded, step in zip(padded_cache.attention, stepped_cache.attention):
        for name in ("keys", "values"):
            assert relative_error(getattr(padded, name), getattr(step, name)) <= TOLERANCE
            for row in range(BATCH):  # nothing written past each row's tokens
                assert not getattr(padded, name)[row, totals[row]:].any()


@pytest.mark.parametrize("width", [1, BLOCK], ids=["decode", "continuation"])
def test_rows_without_valid_tokens_come_back_bitwise(tiny_runner, input_ids, width):
    cache = tiny_runner.model.init_cache(BATCH, MAX_LEN)
    _, cache = tiny_runner.extend(input_ids[:, :PROMPT], cache, [PROMPT, 7, 11])
    before = to_numpy(cache)
    block = input_ids[:, PROMPT:PROMPT + width]
    _, cache = tiny_runner.extend(block, cache, [0, width, 0])
    after = to_numpy(cache)
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[2], old[2])
    np.testing.assert_array_equal(after.lengths_B, [PROMPT, 7 + width, 11])


def test_padding_content_never_reaches_the_cache(tiny_runner, input_ids):
    caches = []
    for seed in (4, 5):
        block = input_ids[:, :PROMPT].copy()
        block[:, 5:] = np.random.default_rng(seed).integers(0, 100, (BATCH, PROMPT - 5))
        _, cache = tiny_runner.extend(block, tiny_runner.model.init_cache(BATCH, MAX_LEN),
                                      [5, 5, 5])
        caches.append(to_numpy(cache))
    for a, b in zip(jax.tree.leaves(caches[0]), jax.tree.leaves(caches[1])):
        np.testing.assert_array_equal(a, b)


def test_kv_writes_past_max_len_are_dropped(tiny_runner, input_ids):
    """A full buffer keeps every earlier position; a clamped update_slice would shift the write
    back over position MAX_LEN - BLOCK."""
    cache = tiny_runner.model.init_cache(BATCH, MAX_LEN)
    _, cache = tiny_runner.extend(input_ids[:, :PROMPT], cache)
    for start in range(PROMPT, LENGTH, BLOCK):
        _, cache = tiny_runner.extend(input_ids[:, start:start + BLOCK], cache)
    before = to_numpy(cache)  # 29 tokens held; 3 positions free
    _, cache = tiny_runner.extend(input_ids[:, :BLOCK], cache)
    after = to_numpy(cache)
    for old, new in zip(before.attention, after.attention):
        np.testing.assert_array_equal(new.keys[:, :LENGTH], old.keys[:, :LENGTH])
        np.testing.assert_array_equal(new.values[:, :LENGTH], old.values[:, :LENGTH])
        assert np.all(np.abs(new.keys[:, LENGTH:] - old.keys[:, LENGTH:]).max(axis=(2, 3)) > 0)
