"""Parity with transformers 5.24 NemotronHForCausalLM (torch, CPU, float32).

Error measure throughout: relative_error = max |ours - HF| / max |HF| over all logits.
Sequences are longer than chunk_size and not a multiple of it; batches have several rows.
"""
import numpy as np
import pytest

from grpo_jax.models import load_hf_model

from tests.models.helpers import (TINY_HF_CONFIG, Runner, hf_cached_decode_logits, hf_logits,
                                  make_hf_model, relative_error, save_hf_model_dir)

TOLERANCE = 1e-5

# transformers 5.24 list form, MQA (1 kv head), 3 groups, conv kernel 3, no conv bias.
LIST_HF_CONFIG = dict(
    vocab_size=96, hidden_size=48,
    layers_block_type=["linear_attention", "full_attention", "mlp", "linear_attention",
                       "linear_attention", "mlp", "full_attention"],
    num_attention_heads=6, num_key_value_heads=1, head_dim=8, intermediate_size=80,
    mamba_num_heads=12, mamba_head_dim=8, ssm_state_size=8, n_groups=3, conv_kernel=3,
    chunk_size=5, use_conv_bias=False, time_step_min=0.01, initializer_range=0.1,
)
# Legacy alias keys, which transformers renames (and lets win over the canonical keys).
ALIAS_HF_CONFIG = dict(
    vocab_size=50, hidden_size=32, hybrid_override_pattern="MM-*M",
    num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=64,
    mamba_num_heads=8, mamba_head_dim=8, ssm_state_size=12, mamba_n_groups=4, mamba_d_conv=2,
    mamba_chunk_size=4, mamba_expand=3, mamba_dt_min=0.005, initializer_range=0.1,
)


def _input_ids(vocab_size, batch=2, length=27, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, (batch, length))


@pytest.mark.parametrize("hf_config", [TINY_HF_CONFIG, LIST_HF_CONFIG, ALIAS_HF_CONFIG],
                         ids=["pattern", "layers_block_type", "legacy_aliases"])
def test_full_forward_matches_transformers(hf_config, tmp_path):
    hf_model = make_hf_model(hf_config, seed=1)
    model = load_hf_model(save_hf_model_dir(hf_model, tmp_path))
    ids = _input_ids(hf_config["vocab_size"])
    logits = Runner(model).full(ids)
    assert logits.dtype == np.float32
    assert relative_error(logits, hf_logits(hf_model, ids)) <= TOLERANCE


def test_aliases_are_read_as_transformers_reads_them(tmp_path):
    hf_model = make_hf_model(ALIAS_HF_CONFIG)
    config = load_hf_model(save_hf_model_dir(hf_model, tmp_path)).config
    hf = hf_model.config
    assert (config.n_groups, config.conv_kernel, config.chunk_size, config.time_step_min) == (
        hf.n_groups, hf.conv_kernel, hf.chunk_size, hf.time_step_min) == (4, 2, 4, 0.005)


def test_cached_decode_matches_transformers_cached_decode(hf_tiny):
    """time_step_clamp="prefill" reproduces transformers 5.24, whose prefill clamps dt but whose
    one-token step does not, so its cached decode differs from its own full forward."""
    hf_model, path = hf_tiny
    ids = _input_ids(TINY_HF_CONFIG["vocab_size"], batch=3, length=29, seed=2)
    prompt_len = 13
    hf_decoded = hf_cached_decode_logits(hf_model, ids, prompt_len)

    def our_decode(time_step_clamp):
        runner = Runner(load_hf_model(path, time_step_clamp=time_step_clamp))
        cache = runner.model.init_cache(3, 32)
        prefill, cache = runner.extend(ids[:, :prompt_len], cache)
        decoded, cache = runner.decode(cache, ids[:, prompt_len:])
        return np.concatenate([prefill, decoded], axis=1), runner

    ours, runner = our_decode("prefill")
    assert relative_error(ours, hf_decoded) <= TOLERANCE
    # The clamp rule is visible at this scale: clamping in the step too misses HF's decode, and
    # HF's decode is measurably off its own full forward (reference §7: ~5e-5).
    always, _ = our_decode("always")
    clamp_effect = relative_error(always, hf_decoded)
    assert clamp_effect > 10 * relative_error(ours, hf_decoded)
    assert 1e-5 < relative_error(ours, runner.full(ids)) < 1e-3


def test_a_one_token_prompt_is_prefilled_as_transformers_prefills_it(tmp_path):
    """transformers prefills a one-token prompt with its chunked scan (dt clamped) and takes its
    recurrent path (dt not clamped) only on a row with history; "prefill" follows it."""
    hf_config = dict(TINY_HF_CONFIG, time_step_min=0.05)  # a clamp that moves the logits
    hf_model = make_hf_model(hf_config, seed=3)
    runner = Runner(load_hf_model(save_hf_model_dir(hf_model, tmp_path)))
    ids = _input_ids(hf_config["vocab_size"], batch=2, length=6, seed=4)
    cache = runner.model.init_cache(2, 8)
    first, cache = runner.extend(ids[:, :1], cache)
    rest, _ = runner.decode(cache, ids[:, 1:])
    expected = hf_cached_decode_logits(hf_model, ids, prompt_len=1)
    assert relative_error(np.concatenate([first, rest], axis=1), expected) <= TOLERANCE
