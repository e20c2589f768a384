"""NemotronHConfig: HF config.json in both layer-list forms, aliases, presets, validation."""
import json
import pathlib

import jax.numpy as jnp
import pytest

from grpo_jax.models import NemotronHConfig
from tests.models.helpers import TINY_HF_CONFIG


def test_9b_preset_layer_pattern():
    config = NemotronHConfig.preset("nemotron-nano-9b-v2")
    types = config.layer_types
    assert len(types) == 56 and types.count("mamba") == 27 and types.count("mlp") == 25
    assert [i for i, t in enumerate(types) if t == "attention"] == [14, 21, 30, 39]
    assert config.mamba_inner_size == 10240 and config.conv_dim == 12288


def test_pattern_string_and_layers_block_type_list_agree():
    from_pattern = NemotronHConfig.from_hf_config(TINY_HF_CONFIG)
    as_list = {k: v for k, v in TINY_HF_CONFIG.items() if k != "hybrid_override_pattern"}
    as_list["layers_block_type"] = ["linear_attention", "mlp", "mamba", "full_attention", "mlp",
                                    "linear_attention", "mlp", "attention", "linear_attention"]
    assert NemotronHConfig.from_hf_config(as_list) == from_pattern
    assert from_pattern.layer_pattern == "M-M*-M-*M"


def test_config_json_written_by_transformers_is_read(hf_tiny):
    config = NemotronHConfig.from_hf_config(hf_tiny[1])  # a directory; inf encoded as a dict
    assert config == NemotronHConfig.from_hf_config(TINY_HF_CONFIG)


def test_to_hf_config_round_trips_through_transformers():
    import transformers

    config = NemotronHConfig.preset("nemotron-nano-9b-v2")
    hf_dict = config.to_hf_config()
    hf = transformers.NemotronHConfig(**hf_dict)
    assert hf.hybrid_override_pattern == config.layer_pattern
    assert (hf.mamba_num_heads, hf.n_groups, hf.num_key_value_heads, hf.intermediate_size) == (
        128, 8, 8, 15680)
    reread = NemotronHConfig.from_hf_config(json.loads(hf.to_json_string()))
    assert reread == config


def test_legacy_aliases_win_like_in_transformers():
    hf = dict(TINY_HF_CONFIG, mamba_n_groups=4, mamba_d_conv=3, mamba_chunk_size=16,
              mamba_dt_min=0.01, mamba_conv_bias=False, mamba_expand=3)
    config = NemotronHConfig.from_hf_config(hf)
    assert (config.n_groups, config.conv_kernel, config.chunk_size, config.time_step_min,
            config.use_conv_bias, config.expand) == (4, 3, 16, 0.01, False, 3)


@pytest.mark.parametrize("change, message", [
    (dict(layers_block_type=["linear_attention", "moe"]),
     r"layers_block_type\[1\]='moe': mixture-of-experts blocks are not supported"),
    (dict(hybrid_override_pattern="M-E"), r"hybrid_override_pattern\[2\]='E'"),
    (dict(layers_block_type=["linear_attention", "conv"]),
     r"layers_block_type\[1\]='conv' is an unknown layer type"),
    (dict(hybrid_override_pattern="M-X"),
     r"layer_pattern='M-X' has unknown layer type\(s\) \['X'\]"),
    (dict(mamba_d_state=32), r"mamba_d_state=32 .*ssm_state_size=16"),
    (dict(mlp_hidden_act="silu"), r"mlp_hidden_act='silu' is not supported: expected 'relu2'"),
    (dict(tie_word_embeddings=True), r"tie_word_embeddings=True is not supported"),
    (dict(num_nextn_predict_layers=1), r"num_nextn_predict_layers=1"),
    (dict(model_type="llama"), r"model_type='llama': expected 'nemotron_h'"),
])
def test_unsupported_hf_configs_are_rejected_by_name(change, message):
    hf = dict(TINY_HF_CONFIG, **change)
    if "layers_block_type" in change:
        del hf["hybrid_override_pattern"]
    with pytest.raises(ValueError, match=message):
        NemotronHConfig.from_hf_config(hf)


@pytest.mark.parametrize("change, message", [
    (dict(n_groups=3), r"mamba_num_heads=8 is not divisible by n_groups=3"),
    (dict(num_key_value_heads=3), r"num_key_value_heads=3 does not divide num_attention_heads=4"),
    (dict(hidden_size=0), r"hidden_size=0: expected a positive integer"),
    (dict(time_step_clamp="decode"), r"time_step_clamp='decode': expected one of"),
    (dict(remat="some"), r"remat='some': expected one of"),
    (dict(compute_dtype=jnp.int32), r"compute_dtype=.*int32.*: expected a floating"),
    (dict(layer_pattern=""), r"layer_pattern is empty"),
])
def test_invalid_fields_are_rejected_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        NemotronHConfig.preset("tiny-test", **change)


def test_unknown_override_and_preset_names():
    with pytest.raises(ValueError, match=r"unknown NemotronHConfig field\(s\) \['hiden_size'\]"):
        NemotronHConfig.preset("tiny-test", hiden_size=8)
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        NemotronHConfig.preset("tiny")
    with pytest.raises(FileNotFoundError, match="no HF config"):
        NemotronHConfig.from_hf_config(pathlib.Path("/nonexistent"))


def test_runtime_dtypes_are_normalised_and_hashable():
    config = NemotronHConfig.preset("tiny-test", compute_dtype="bfloat16")
    assert config.compute_dtype == jnp.bfloat16 and config.param_dtype == jnp.float32
    assert hash(config) == hash(NemotronHConfig.preset("tiny-test", compute_dtype=jnp.bfloat16))


def test_missing_keys_take_the_transformers_defaults():
    import transformers

    hf = {k: v for k, v in TINY_HF_CONFIG.items() if k not in ("head_dim", "chunk_size")}
    config, reference = NemotronHConfig.from_hf_config(hf), transformers.NemotronHConfig(**hf)
    assert (config.head_dim, config.chunk_size) == (reference.head_dim, reference.chunk_size)
