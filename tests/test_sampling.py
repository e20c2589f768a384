"""The sampler: greedy parity with transformers, ragged continuation, log-probs, the sampling law,
per-row stopping, no recompilation on new sampling controls, seeding, and a sharded mesh."""
import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grpo_jax import compile_log
from grpo_jax.models import NemotronHConfig, load_hf_model
from grpo_jax.models.nemotron_h import create_model
from grpo_jax.sampling import (FINISH_LENGTH, FINISH_STOP, Sampler, SamplerConfig, argmax_last,
                               draw_uniforms, generate, inverse_cdf, sample_tokens)
from grpo_jax.xla_options import sampler_compiler_options
from tests.models.helpers import TINY_HF_CONFIG, make_hf_model, save_hf_model_dir

PROMPTS = [[5, 17, 3, 44, 9, 21, 30], [8, 2], [61, 7, 7, 12, 90, 33, 14, 27, 50, 11, 3, 19, 4]]


@pytest.fixture(scope="module")
def hf_and_ours(tmp_path_factory):
    hf = make_hf_model(TINY_HF_CONFIG, seed=1)
    path = save_hf_model_dir(hf, tmp_path_factory.mktemp("hf_sampling"))
    # HF's generate clamps dt in its prefill and not in its one-token decode: "prefill" mirrors it.
    ours = load_hf_model(path, time_step_clamp="prefill")
    return hf, ours


@pytest.fixture(scope="module")
def exact_model():
    """A random model whose cached decode is exactly the full forward (dt clamped everywhere)."""
    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), time_step_clamp="always")
    return create_model(config, seed=3)


@pytest.fixture(scope="module")
def sampler(exact_model):
    return Sampler(nnx.split(exact_model)[0], SamplerConfig(decode_chunk=4, min_block_bucket=8, cache_multiple=64))


def _full_logprobs(model, sequence):
    logits = model(jnp.asarray([sequence]))[0]
    return np.asarray(jax.nn.log_softmax(logits, axis=-1))


def test_greedy_matches_transformers_generate(hf_and_ours):
    import torch

    hf, ours = hf_and_ours
    out = generate(ours, PROMPTS, max_new_tokens=12, temperature=0.0)
    for prompt, tokens in zip(PROMPTS, out.tokens):
        with torch.no_grad():
            expected = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                   min_new_tokens=12, eos_token_id=None, pad_token_id=0)
        assert tokens == expected[0, len(prompt):].tolist()
    assert out.finish_reasons == [FINISH_LENGTH] * len(PROMPTS)
    assert out.lengths == [12] * len(PROMPTS)


def test_logprobs_equal_forward_log_softmax(exact_model):
    out = generate(exact_model, PROMPTS, max_new_tokens=10, temperature=1.0, seed=5)
    for prompt, tokens, logprobs in zip(PROMPTS, out.tokens, out.logprobs):
        full = _full_logprobs(exact_model, prompt + tokens)
        expected = [full[len(prompt) + i - 1, token] for i, token in enumerate(tokens)]
        np.testing.assert_allclose(logprobs, expected, atol=1e-5, rtol=0)


def test_extend_then_decode_equals_longer_prefill(exact_model, sampler):
    params = nnx.split(exact_model)[1]
    heads = [[3, 4, 5], [9], [20, 21, 22, 23, 24]]
    tails = [[6, 7, 8, 9, 10, 11], [10, 11], [25]]
    controls = dict(temperature=0.8, top_k=0, top_p=1.0)

    state = sampler.prefill(params, heads, max_len=64, seed=11)
    state = sampler.extend(params, state, tails)
    state, split_run = sampler.decode(params, state, 9, rows=[0, 1, 2], **controls)

    state = sampler.prefill(params, [h + t for h, t in zip(heads, tails)], max_len=64, seed=11)
    state, whole_run = sampler.decode(params, state, 9, rows=[0, 1, 2], **controls)
    assert split_run.tokens[:3] == whole_run.tokens[:3]
    np.testing.assert_allclose(np.array(split_run.logprobs[:3]), np.array(whole_run.logprobs[:3]), atol=1e-5)


def test_extend_attends_only_to_a_bucket_of_the_rows_it_writes(exact_model, caplog):
    """Into a 512-position cache, an extend whose writing rows end by position 16 compiles with a
    16-position attend bucket and gives the logits of attending to the whole buffer; a row that
    holds more than the bucket but appends nothing comes back bit for bit."""
    graphdef, params = nnx.split(exact_model)
    long_row, short_row = list(range(3, 43)), [5, 6, 7, 8, 9]
    block = [11, 12, 13, 14, 15, 16, 17]
    host = lambda state: jax.tree.map(np.asarray, (state.cache, state.next_logits_BV))  # noqa: E731
    states, before = {}, {}
    for bucket in (16, 512):
        sampler = Sampler(graphdef, SamplerConfig(min_block_bucket=8, cache_multiple=512,
                                                  min_attend_bucket=bucket))
        state = sampler.prefill(params, [long_row, short_row], max_len=512, seed=0)
        before[bucket] = host(state)
        with caplog.at_level("INFO", logger="grpo_jax.compile"):
            states[bucket] = host(sampler.extend(params, state, [None, block]))
    assert "sampler.extend[B=2,T=8,attend=16]" in caplog.text
    assert "sampler.extend[B=2,T=8,attend=512]" in caplog.text
    np.testing.assert_allclose(states[16][1], states[512][1], atol=1e-6, rtol=0)
    for leaf_before, leaf_after in zip(jax.tree.leaves(before[16]), jax.tree.leaves(states[16])):
        np.testing.assert_array_equal(leaf_after[0], leaf_before[0])
    assert states[16][0].lengths_B.tolist() == [40, 12]


def test_multi_turn_cache_holds_exactly_the_trajectory(exact_model, sampler):
    """decode → extend (a ragged block on some rows only) → decode: the next-token log-probs equal
    the full forward over prompt + generated + appended tokens."""
    params = nnx.split(exact_model)[1]
    state = sampler.prefill(params, PROMPTS, max_len=128, seed=2)
    state, first = sampler.decode(params, state, [5, 3, 4], rows=[0, 1, 2], temperature=1.0)
    appended = {0: [40, 41, 42], 2: [50]}
    state = sampler.extend(params, state, [appended.get(r) for r in range(3)])
    state, second = sampler.decode(params, state, 6, rows=[0, 2], temperature=1.0)
    lengths = np.asarray(state.lengths_B)
    for row in (0, 2):
        sequence = PROMPTS[row] + first.tokens[row] + appended[row]
        full = _full_logprobs(exact_model, sequence + second.tokens[row])
        expected = [full[len(sequence) + i - 1, t] for i, t in enumerate(second.tokens[row])]
        np.testing.assert_allclose(second.logprobs[row], expected, atol=1e-5)
        assert lengths[row] == len(sequence) + len(second.tokens[row])
    assert second.tokens[1] == [] and second.finish_reasons[1] is None
    assert lengths[1] == len(PROMPTS[1]) + len(first.tokens[1])  # row 1 was left alone


@pytest.mark.parametrize("pattern", ["MM", "M-M", "-"], ids=["mamba", "mamba_mlp", "mlp"])
def test_models_without_attention_layers_sample_within_their_cache_length(pattern):
    """No KV buffers, so the cache's length is its own field: generate runs and the sampler
    still refuses more tokens than it was made for."""
    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), layer_pattern=pattern,
                                 time_step_clamp="always")
    model = create_model(config, seed=5)
    out = generate(model, PROMPTS, max_new_tokens=5, temperature=0.0)
    # Greedy: each new token is the argmax of the forward over what precedes it (one forward of
    # the right-padded sequences; the model is causal).
    sequences = [prompt + tokens for prompt, tokens in zip(PROMPTS, out.tokens)]
    padded = np.zeros((len(sequences), max(map(len, sequences))), np.int32)
    for row, sequence in enumerate(sequences):
        padded[row, :len(sequence)] = sequence
    argmax_BT = np.argmax(np.asarray(model(jnp.asarray(padded))), axis=-1)
    for row, (prompt, tokens) in enumerate(zip(PROMPTS, out.tokens)):
        assert len(tokens) == 5
        assert tokens == argmax_BT[row, len(prompt) - 1:len(prompt) + 4].tolist()
    sampler = Sampler(nnx.split(model)[0], SamplerConfig(decode_chunk=4, cache_multiple=16))
    state = sampler.prefill(nnx.state(model), [[1, 2, 3]], max_len=16)
    assert state.cache.max_len == 16
    with pytest.raises(ValueError, match="3 cached \\+ 14 new tokens exceed the cache length 16"):
        sampler.extend(nnx.state(model), state, [[4] * 14])
    _, result = sampler.decode(nnx.state(model), state, max_new_tokens=100)
    assert result.lengths == [13] and result.finish_reasons == [FINISH_LENGTH]


@pytest.mark.parametrize("controls,message", [
    (dict(temperature=-1.0), r"temperature must be finite and >= 0 \(0 is greedy\), got \[-1.0"),
    (dict(temperature=[0.5, float("nan")]), r"temperature must be .* got \[0.5, nan"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got \[0.0"),
    (dict(top_k=[3, -2]), r"top_k must be >= 0 \(0 keeps every token\), got \[3, -2"),
    (dict(max_new_tokens=-1), r"max_new_tokens must be >= 0, got \[-1"),
], ids=["negative_temperature", "nan_temperature", "top_p_0", "negative_top_k", "negative_budget"])
def test_bad_sampling_controls_raise_naming_the_values(exact_model, sampler, controls, message):
    params = nnx.state(exact_model)
    state = sampler.prefill(params, PROMPTS[:2], max_len=64)
    with pytest.raises(ValueError, match=message):
        sampler.decode(params, state, **{"max_new_tokens": 4, **controls})


@pytest.mark.parametrize("block,message", [
    ([5, 100], r"row 1: token id 100 is outside the vocabulary \[0, 100\)"),
    ([5, -1], r"row 1: token id -1 is outside the vocabulary"),
    ([5, 2.0], r"row 1: expected a flat sequence of int token ids, got \[5, 2.0\]"),
    ([[5, 6]], r"row 1: expected a flat sequence of int token ids"),
], ids=["past_vocab", "negative", "float", "nested"])
def test_bad_token_ids_raise_before_anything_runs(exact_model, sampler, block, message):
    assert exact_model.config.vocab_size == 100
    params = nnx.state(exact_model)
    state = sampler.prefill(params, PROMPTS[:2], max_len=64)
    with pytest.raises(ValueError, match=message):
        sampler.extend(params, state, [None, block])
    with pytest.raises(ValueError, match=message.replace("row 1", "row 0")):
        generate(exact_model, [block], max_new_tokens=2, sampler=sampler)


def test_bad_rows_seeds_and_stop_ids_raise_naming_them(exact_model, sampler):
    params = nnx.state(exact_model)
    state = sampler.prefill(params, PROMPTS[:2], max_len=64)
    for call, message in (
            (lambda: sampler.decode(params, state, 2, rows=[2]),
             r"rows=\[2\]: expected row numbers in \[0, 2\)"),
            (lambda: sampler.decode(params, state, 2, rows=[-1]), r"rows=\[-1\]"),
            (lambda: sampler.gather_rows(state, [0, 7]),
             r"gather_rows index=\[0, 7\]: expected row numbers in \[0, 2\)"),
            (lambda: sampler.decode(params, state, 2, stop_ids=[[1], [2], [3]]),
             r"stop_ids has 3 rows: expected at most 2"),
            (lambda: sampler.decode(params, state, 2, stop_ids=[-3]),
             r"stop_ids of row 0 must be non-negative ints, got \[-3\]"),
            (lambda: sampler.prefill(params, PROMPTS[:2], 64, seed=-1),
             r"seed=-1: expected an int in \[0, 2\*\*32\)")):
        with pytest.raises(ValueError, match=message):
            call()


def test_stop_ids_may_be_an_int_or_arrays(exact_model, sampler):
    free = generate(exact_model, PROMPTS, max_new_tokens=6, sampler=sampler)
    stop = free.tokens[0][2]
    expected = generate(exact_model, PROMPTS, max_new_tokens=6, stop_ids=[stop], sampler=sampler)
    assert expected.tokens[0] == free.tokens[0][:free.tokens[0].index(stop) + 1]
    for stop_ids in (stop, np.array([stop]), [np.array([stop])] * len(PROMPTS)):
        out = generate(exact_model, PROMPTS, max_new_tokens=6, stop_ids=stop_ids, sampler=sampler)
        assert (out.tokens, out.finish_reasons) == (expected.tokens, expected.finish_reasons)


def test_a_prompt_whose_length_bucket_exceeds_the_cache_still_prefills(exact_model, sampler):
    """130 tokens: the extend program's length bucket (256) is wider than the cache (192)."""
    prompt = np.random.default_rng(4).integers(0, 100, 130).tolist()
    out = generate(exact_model, [prompt, prompt[:7]], max_new_tokens=3, sampler=sampler)
    sequence = prompt + out.tokens[0]
    argmax_T = np.argmax(np.asarray(exact_model(jnp.asarray([sequence]))[0]), axis=-1)
    assert out.tokens[0] == argmax_T[129:132].tolist()


def test_rows_stop_independently_and_budgets_hold(exact_model, sampler):
    params = nnx.split(exact_model)[1]
    state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
    # Find, for row 0, the greedy token it emits third, and make it row 0's stop id.
    probe_state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
    _, probe = sampler.decode(params, probe_state, 6, rows=[0, 1, 2], temperature=0.0)
    stop_row0 = probe.tokens[0][2]
    stop_ids = [[stop_row0], [], []]
    state, out = sampler.decode(params, state, [6, 4, 7], rows=[0, 1, 2], temperature=0.0, stop_ids=stop_ids)
    assert out.tokens[0] == probe.tokens[0][:probe.tokens[0].index(stop_row0) + 1]
    assert out.finish_reasons[0] == FINISH_STOP
    assert len(out.tokens[1]) == 4 and out.finish_reasons[1] == FINISH_LENGTH
    assert len(out.tokens[2]) == 7 and out.finish_reasons[2] == FINISH_LENGTH
    # Nothing is written after a stop: each cache holds prompt + emitted tokens, no more.
    np.testing.assert_array_equal(np.asarray(state.lengths_B)[:3],
                                  [len(p) + len(t) for p, t in zip(PROMPTS, out.tokens)])


def test_attend_buckets_smaller_than_the_cache_change_nothing(exact_model, sampler):
    """Decode chunks that attend to a power-of-two prefix of the KV buffer (16, 32, 64 positions
    of 128) give the tokens and log-probs of attending to the whole buffer: a call of several
    chunks stops before its rows outgrow its bucket."""
    params = nnx.split(exact_model)[1]
    bucketed = Sampler(sampler.graphdef, dataclasses.replace(sampler.config, min_attend_bucket=16))
    runs = []
    for s in (sampler, bucketed):
        state = s.prefill(params, PROMPTS, max_len=128, seed=4)
        state, out = s.decode(params, state, 40, rows=[0, 1, 2], temperature=1.0)
        runs.append(out)
    assert bucketed.attend_bucket(13 + 4, 128) == 32 and sampler.attend_bucket(60, 128) == 128
    assert runs[0].tokens == runs[1].tokens
    np.testing.assert_allclose(np.array(runs[0].logprobs[:3]), np.array(runs[1].logprobs[:3]),
                               atol=1e-5)


def test_changing_sampling_controls_compiles_nothing(exact_model, sampler):
    params = nnx.split(exact_model)[1]
    state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
    state, _ = sampler.decode(params, state, 4, rows=[0, 1, 2], temperature=1.0, top_p=1.0, top_k=0)
    before = compile_log.compile_count()
    for temperature, top_p, top_k in [(0.0, 1.0, 0), (0.7, 0.9, 0), (1.3, 1.0, 5), ([0.5, 0.0, 2.0, 1.0], 0.5, 3)]:
        state, _ = sampler.decode(params, state, 4, rows=[0, 1, 2], temperature=temperature, top_p=top_p,
                                  top_k=top_k, stop_ids=[7, 8])
    assert compile_log.compile_count() == before


def test_same_seed_same_output_other_seed_other_samples(exact_model):
    a = generate(exact_model, PROMPTS, 16, temperature=1.0, seed=123)
    b = generate(exact_model, PROMPTS, 16, temperature=1.0, seed=123)
    c = generate(exact_model, PROMPTS, 16, temperature=1.0, seed=124)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    assert a.tokens != c.tokens


def test_draws_follow_the_row_and_draw_number_not_the_decode_chunking(exact_model, sampler):
    """Draw k of a chunk is row b's draw number num_sampled[b] + k, so a different decode_chunk
    (another number of steps per jitted call, and stops landing mid-chunk) samples the same."""
    keys = jax.random.split(jax.random.key(5), 3)
    uniform_KB = draw_uniforms(keys, jnp.array([0, 4, 9]), 6)
    for row, first in enumerate([0, 4, 9]):
        for k in range(6):
            expected = jax.random.uniform(jax.random.fold_in(keys[row], first + k), ())
            assert uniform_KB[k, row] == expected
    params = nnx.split(exact_model)[1]
    others = [dataclasses.replace(sampler.config, decode_chunk=7),
              dataclasses.replace(sampler.config, decode_chunk=3, decode_chunks_per_call=2),
              dataclasses.replace(sampler.config, decode_chunks_per_call=1)]
    results = []
    for chunked in [sampler] + [Sampler(sampler.graphdef, config) for config in others]:
        state = chunked.prefill(params, PROMPTS, max_len=64, seed=2)
        state, first = chunked.decode(params, state, [5, 9, 3], rows=range(3), temperature=1.0)
        state, second = chunked.decode(params, state, 10, rows=range(3), temperature=0.8,
                                       stop_ids=[3, 9])
        results.append((first.tokens, second.tokens, second.finish_reasons,
                        np.asarray(state.lengths_B).tolist(),
                        np.asarray(state.num_sampled_B).tolist()))
    assert all(result == results[0] for result in results[1:])


def test_a_decode_call_returns_after_the_chunk_in_which_every_row_finished(exact_model, sampler):
    """Up to decode_chunks_per_call chunks run on the device in one call, which leaves after the
    chunk in which the last row stopped or spent its budget (and the host calls again only for
    budgets beyond a call)."""
    params = nnx.split(exact_model)[1]
    chunk, per_call = sampler.config.decode_chunk, sampler.config.decode_chunks_per_call
    assert (chunk, per_call) == (4, 8)
    probe_state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
    _, probe = sampler.decode(params, probe_state, 6, rows=[0, 1, 2], temperature=0.0)
    assert probe.num_steps == 8
    # Every row stops by its second token: one chunk runs, not eight.
    state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
    _, out = sampler.decode(params, state, 30, rows=[0, 1, 2], temperature=0.0,
                            stop_ids=[[tokens[1]] for tokens in probe.tokens[:3]])
    assert out.finish_reasons[:3] == [FINISH_STOP] * 3 and max(out.lengths) <= 2
    assert out.num_steps == chunk
    # No stops: 30 new tokens finish in the call's eighth chunk; 40 take a second call of two.
    for budget, steps in ((30, 32), (40, 40)):
        state = sampler.prefill(params, PROMPTS, max_len=128, seed=0)
        _, out = sampler.decode(params, state, budget, rows=[0, 1, 2], temperature=0.0)
        assert out.lengths[:3] == [budget] * 3 and out.num_steps == steps
        assert out.tokens[0][:6] == probe.tokens[0]


def test_deferred_ssm_updates_sample_as_per_step_updates(exact_model, sampler):
    """A sampler that writes the Mamba states once per decode chunk samples the same tokens with
    the same log-probs (within float32 rounding) as one that writes them every step, across
    stops and budgets landing mid-chunk and an extend between two decodes."""
    params = nnx.split(exact_model)[1]
    deferred = Sampler(sampler.graphdef, dataclasses.replace(sampler.config,
                                                             ssm_decode_update="deferred"))
    runs = []
    for s in (sampler, deferred):
        state = s.prefill(params, PROMPTS, max_len=64, seed=6)
        state, first = s.decode(params, state, [5, 9, 3], rows=range(3), temperature=1.0)
        state = s.extend(params, state, [[4, 5, 6], None, [7]])
        state, second = s.decode(params, state, 10, rows=range(3), temperature=0.8,
                                 stop_ids=[3, 9])
        runs.append((first, second, np.asarray(state.lengths_B)))
    for a, b in zip(runs[0][:2], runs[1][:2]):
        assert a.tokens == b.tokens and a.finish_reasons == b.finish_reasons
        for row in range(3):
            np.testing.assert_allclose(a.logprobs[row], b.logprobs[row], atol=1e-5)
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    with pytest.raises(ValueError, match="ssm_decode_update='lazy'"):
        SamplerConfig(ssm_decode_update="lazy")


def test_repeated_prompts_share_a_prefill_and_sample_as_without_it(exact_model, sampler):
    """generate prefills each distinct prompt once and copies its rows; tokens and log-probs are
    those of prefilling every row (the same row keys, so the same draws)."""
    prompts = [PROMPTS[0], PROMPTS[2], PROMPTS[0], PROMPTS[0], PROMPTS[2]]
    params = nnx.split(exact_model)[1]
    extends = []
    original_extend = sampler.extend
    sampler.extend = lambda params, state, blocks: extends.append(len(blocks)) or original_extend(
        params, state, blocks)
    try:
        shared = generate(exact_model, prompts, 12, temperature=1.0, seed=9, sampler=sampler)
    finally:
        sampler.extend = original_extend
    assert extends == [2]
    state = sampler.prefill(params, prompts, max_len=len(PROMPTS[2]) + 12, seed=9)
    _, each = sampler.decode(params, state, 12, rows=range(len(prompts)), temperature=1.0)
    assert shared.tokens == each.tokens[:len(prompts)]
    np.testing.assert_allclose(np.concatenate(shared.logprobs),
                               np.concatenate(each.logprobs[:len(prompts)]), atol=1e-5, rtol=0)
    assert len(set(map(tuple, shared.tokens[2:4]))) == 2     # copies still draw their own samples


def _chi_square_critical(dof: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (Wilson-Hilferty; z = 3.09 for p = 0.001)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_sampling_frequencies_follow_softmax_with_temperature():
    vocab, draws, temperature = 12, 20000, 0.7
    logits_V = jnp.linspace(-2.0, 2.5, vocab) + jnp.sin(jnp.arange(vocab))
    uniforms = draw_uniforms(jax.random.split(jax.random.key(0), draws), jnp.zeros((draws,), jnp.int32), 1)[0]
    tokens = jax.jit(sample_tokens)(jnp.broadcast_to(logits_V, (draws, vocab)), uniforms,
                                    jnp.full((draws,), temperature), jnp.ones((draws,)), jnp.zeros((draws,), jnp.int32))
    counts = np.bincount(np.asarray(tokens), minlength=vocab)
    expected = draws * np.asarray(jax.nn.softmax(logits_V / temperature))
    statistic = float(((counts - expected) ** 2 / expected).sum())
    assert statistic < _chi_square_critical(vocab - 1), (statistic, counts, expected.round())


@pytest.mark.parametrize("vocab", [1, 12, 300, 4096])
def test_inverse_cdf_maps_evenly_spaced_uniforms_to_each_token_in_proportion(vocab):
    """Evenly spaced u_j = (j + 1/2) / n must give token i about n * p_i times (within the one
    draw a boundary can move); zero weights (some, and the padding of the last block) never."""
    draws = 20000
    weights_V = np.array(jax.random.exponential(jax.random.key(vocab), (vocab,)))
    weights_V[::7] = 0.0
    weights_V[-1] = 0.0 if vocab > 1 else 1.0
    weights_V[0] = 0.0 if vocab > 1 else 1.0
    uniform_B = (np.arange(draws) + 0.5) / draws
    tokens = np.asarray(jax.jit(inverse_cdf)(jnp.broadcast_to(jnp.asarray(weights_V), (draws, vocab)),
                                             jnp.asarray(uniform_B, jnp.float32)))
    counts = np.bincount(tokens, minlength=vocab)
    assert counts.shape == (vocab,) and np.all(counts[weights_V == 0] == 0)
    expected = draws * weights_V / weights_V.sum()
    assert np.max(np.abs(counts - expected)) <= 2, np.max(np.abs(counts - expected))


def test_inverse_cdf_never_draws_a_zero_weight_at_the_ends_of_the_unit_interval():
    vocab = 300
    weights_V = np.zeros((vocab,), np.float32)
    weights_V[[37, 38, 200]] = [1e-30, 3.0, 1e30]          # extreme ratios stress the rounding
    uniform_B = np.array([0.0, 1e-38, 0.5, 1 - 2 ** -24, np.nextafter(np.float32(1), 0)], np.float32)
    tokens = np.asarray(inverse_cdf(jnp.broadcast_to(jnp.asarray(weights_V), (5, vocab)),
                                    jnp.asarray(uniform_B)))
    assert set(tokens.tolist()) <= {37, 38, 200} and tokens[-1] == 200


def test_argmax_last_equals_numpy_argmax_with_ties_infinities_and_nans():
    rng = np.random.default_rng(3)
    x_BV = rng.integers(-3, 4, (64, 300)).astype(np.float32)   # many ties of the maximum
    x_BV[1] = -np.inf
    x_BV[2, [5, 250]] = np.inf
    x_BV[3, [7, 100]] = np.nan
    x_BV[4, :] = np.nan
    x_BV[5, -1] = 9.0
    x_BV[6, 0] = 9.0
    x_BV[7, 150] = np.nan
    x_BV[7, 10] = np.inf
    expected = np.argmax(x_BV, axis=-1)
    assert expected[[1, 2, 3, 4, 5, 6, 7]].tolist() == [0, 5, 7, 0, 299, 0, 150]
    # As the decode program compiles it, too (its options change how reductions are emitted).
    compiled = jax.jit(argmax_last, compiler_options=sampler_compiler_options(jax.default_backend()))
    for fn in (argmax_last, compiled):
        got = np.asarray(fn(jnp.asarray(x_BV)))
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("top_p,top_k", [(0.6, 0), (1.0, 3), (0.9, 2)])
def test_top_p_top_k_never_leave_their_set(top_p, top_k):
    vocab, draws = 40, 4000
    logits_BV = jax.random.normal(jax.random.key(7), (draws, vocab)) * 2.0
    uniforms = jax.random.uniform(jax.random.key(1), (draws,))
    tokens = np.asarray(jax.jit(sample_tokens)(logits_BV, uniforms, jnp.ones((draws,)), jnp.full((draws,), top_p),
                                               jnp.full((draws,), top_k, jnp.int32)))
    probs = np.asarray(jax.nn.softmax(logits_BV, axis=-1))
    order = np.argsort(-probs, axis=-1)
    for row in range(draws):
        ranked = probs[row, order[row]]
        keep = np.cumsum(ranked) - ranked < top_p
        if top_k:
            keep &= np.arange(vocab) < top_k
        keep[0] = True
        assert tokens[row] in set(order[row][keep].tolist())


@pytest.mark.parametrize("ssm_update", ["per_step", "deferred"])
def test_sampler_under_a_tensor_and_data_parallel_mesh(ssm_update):
    from grpo_jax import sharding

    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), time_step_clamp="always")
    single = generate(create_model(config, seed=4), PROMPTS, 8, temperature=0.0)
    mesh = sharding.make_mesh(data=4, fsdp=1, tensor=2)
    with jax.set_mesh(mesh):
        model = create_model(config, seed=4, mesh=mesh)
        graphdef = nnx.split(model)[0]
        sampler = Sampler(graphdef, SamplerConfig(batch_multiple=4, ssm_decode_update=ssm_update))
        sharded = generate(model, PROMPTS, 8, temperature=0.0, sampler=sampler)
    assert sharded.tokens == single.tokens


def test_data_parallel_decode_and_extend_need_no_collectives_and_generate_finds_the_mesh():
    """One data shard per device (the CPU host's cores, `model.cpu_devices`): every row's
    prefill, continuation and decoding stay on its device. Before, the KV-cache write all-gathered
    every attention layer's keys, values and positions at every step, and the all-greedy /
    needs-filter flags of the sampling were all-reduced per decode chunk. The one collective
    left is decode's check, once per chunk, that every row has finished: a scalar all-reduce in
    the condition of its loop over chunks."""
    from grpo_jax import sharding

    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), time_step_clamp="always")
    prompts = PROMPTS + [[4 + row, 9, 2 * row + 1] for row in range(5)]  # 8 distinct prompts
    single = generate(create_model(config, seed=4), prompts, 8, temperature=0.0)
    mesh = sharding.make_mesh(data=8)
    model = create_model(config, seed=4, mesh=mesh)
    graphdef, params = nnx.split(model)
    sampler = Sampler(graphdef, SamplerConfig(batch_multiple=8, decode_chunk=4))
    compiled = {}
    for name in ("_extend", "_decode"):
        def spy(*args, _program=getattr(sampler, name), _name=name):
            compiled.setdefault(_name, _program.lower(*args).compile().as_text())
            return _program(*args)
        setattr(sampler, name, spy)
    sharded = generate(model, prompts, 8, temperature=0.0, sampler=sampler)  # no set_mesh here
    assert sharded.tokens == single.tokens
    assert set(compiled) == {"_extend", "_decode"}
    for name, text in compiled.items():
        assert "devices=[8" in text, f"{name} did not run on the mesh"
        collectives = [line.strip() for line in text.splitlines() if re.search(
            r"\b(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)(-start)?\(",
            line)]
        if name == "_decode":
            assert len(collectives) == 1 and re.search(
                r"= pred\[\] all-reduce\(.*op_name=\"[^\"]*/while/cond/reduce_and\"",
                collectives[0]), f"decode holds collectives besides its chunk check: {collectives}"
        else:
            assert not collectives, f"{name} holds collectives {collectives}"
    # The default sampler of a model on a mesh splits its batch over the mesh's data shards.
    assert generate(model, prompts[:3], 4, temperature=0.0).tokens == [t[:4] for t in single.tokens[:3]]


def test_every_sampler_program_returns_its_rows_split_over_the_data_shards():
    """The state each program returns keeps one slice of the rows per data shard. The row gather
    (G copies of each prefilled prompt: `generate`, the rollout engine) returned a replicated
    state before: every device held every row, and the first decode chunk after it compiled a
    program of its own for that placement."""
    from grpo_jax import sharding

    config = dataclasses.replace(NemotronHConfig.preset("tiny-test"), time_step_clamp="always")
    mesh = sharding.make_mesh(data=8)
    graphdef, params = nnx.split(create_model(config, seed=4, mesh=mesh))
    sampler = Sampler(graphdef, SamplerConfig(batch_multiple=8, decode_chunk=4))

    def assert_rows_split(state, step):
        for path, leaf in jax.tree_util.tree_leaves_with_path(state):
            rows = leaf.shape[0]
            assert leaf.sharding.shard_shape(leaf.shape)[0] == rows // 8, (
                f"after {step}: {jax.tree_util.keystr(path)} of shape {leaf.shape} is placed "
                f"{leaf.sharding}, not split over the 8 data shards")

    prompts = [[3 + row, 9, 2 * row + 1][:1 + row % 3] for row in range(8)]
    with jax.set_mesh(mesh):
        state = sampler.prefill(params, prompts, 32)
        assert_rows_split(state, "prefill")
        state = sampler.gather_rows(state, np.repeat(np.arange(8), 2))    # 8 -> 16 rows
        assert_rows_split(state, "gather_rows into a larger batch")
        compiles = compile_log.compile_count()
        state, _ = sampler.decode(params, state, 10, temperature=1.0)     # three chunks
        assert compile_log.compile_count() - compiles == 1, "decode compiled a program per placement"
        assert_rows_split(state, "decode")
        state = sampler.gather_rows(state, np.arange(16)[::-1])           # in place
        assert_rows_split(state, "gather_rows in place")
        state = sampler.extend(params, state, [[1, 2]] * 16)
        assert_rows_split(state, "extend")
        compiles = compile_log.compile_count()
        sampler.decode(params, state, 4, temperature=1.0)
        assert compile_log.compile_count() == compiles
