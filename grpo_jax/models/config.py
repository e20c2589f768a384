"""Nemotron-H configuration: the architecture as transformers 5.24 reads it, plus runtime choices.

`NemotronHConfig` is the single source of every size the model, the cache, the checkpoint importer
and the sharding rules use. It reads an HF `config.json` (pattern string or `layers_block_type`
list, legacy `mamba_*` aliases), writes one back that transformers' `NemotronHConfig` accepts, and
carries the runtime fields HF does not have (dtypes, dt clamp rule, rematerialisation, attention
query chunk).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp

# One character per block, as in `hybrid_override_pattern`.
MAMBA, ATTENTION, MLP = "M", "*", "-"
_BLOCK_NAMES = {MAMBA: "mamba", ATTENTION: "attention", MLP: "mlp"}

# transformers 5.24 `layers_block_type` names (and the legacy names it remaps) → pattern character.
_HF_BLOCK_TYPES = {
    "linear_attention": MAMBA,
    "mamba": MAMBA,
    "full_attention": ATTENTION,
    "attention": ATTENTION,
    "mlp": MLP,
}
_UNSUPPORTED_BLOCK_TYPES = {"moe": "mixture-of-experts", "E": "mixture-of-experts"}
_PATTERN_TO_HF = {MAMBA: "linear_attention", ATTENTION: "full_attention", MLP: "mlp"}

# Legacy keys transformers 5.24 `NemotronHConfig.__post_init__` renames; the alias wins over the
# canonical key there, so it wins here too.
_HF_ALIASES = {
    "mamba_n_groups": "n_groups",
    "mamba_d_conv": "conv_kernel",
    "mamba_expand": "expand",
    "mamba_dt_min": "time_step_min",
    "mamba_dt_max": "time_step_max",
    "mamba_dt_init_floor": "time_step_floor",
    "mamba_conv_bias": "use_conv_bias",
    "mamba_chunk_size": "chunk_size",
}
# Names other Mamba-2 configs (Bamba, Zamba2) use. transformers 5.24 IGNORES them for nemotron_h and
# keeps its default, so accepting them silently would build a model HF does not build.
_FOREIGN_ALIASES = {
    "mamba_d_state": "ssm_state_size",
    "n_mamba_heads": "mamba_num_heads",
    "mamba_headdim": "mamba_head_dim",
}
# HF options this port implements only at one value (the value every released Nemotron-H uses).
_FIXED_HF_OPTIONS = {
    "mamba_hidden_act": "silu",
    "mlp_hidden_act": "relu2",
    "use_bias": False,
    "mamba_proj_bias": False,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
}

# transformers 5.24 NemotronHConfig class defaults of the fields this config requires: a config.json
# that omits one gets these in transformers, so it gets them here too.
_HF_DEFAULTS = dict(
    vocab_size=131072, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
    head_dim=128, intermediate_size=21504, mamba_num_heads=128, mamba_head_dim=64,
    ssm_state_size=128, n_groups=8,
)

TIME_STEP_CLAMPS = ("prefill", "always", "never")
# config.remat → the jax.checkpoint policy wrapped around every block; "none" wraps nothing.
REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block in the backward pass
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
_DTYPE_FIELDS = ("param_dtype", "compute_dtype", "ssm_state_dtype", "conv_state_dtype",
                 "ssd_matmul_dtype")
# Kernels of causal self-attention over whole sequences (see `attention_implementation`).
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class NemotronHConfig:
    """Architecture (HF names) and runtime choices of a Nemotron-H model.

    Runtime fields:
      param_dtype: dtype of the stored (master) weights.
      compute_dtype: dtype of matmuls and the residual stream; weights are cast at use.
      ssm_state_dtype / conv_state_dtype: dtypes of the generation cache's recurrent state and raw
        conv columns (float32 keeps decode equal to the full forward).
      ssd_matmul_dtype: operand dtype of the chunked SSD scan's contractions (`ssd.ssd_chunked`;
        float32 accumulation either way); float32 is exact, bfloat16 rounds as the fused Mamba
        kernels do.
      time_step_clamp: where dt >= time_step_min is enforced: "prefill" (transformers 5.24: only
        the chunked path, not the one-token step), "always" or "never".
      remat: rematerialisation wrapped around every block: "none", "full" (save nothing),
        "dots_saveable" or "dots_with_no_batch_dims_saveable" (jax.checkpoint_policies).
      attention_query_chunk: attention over more query positions than this runs query chunk by
        query chunk, so no (B, H, T, S) score tensor is materialised.
      attention_implementation: the kernel of causal self-attention over whole sequences
        (training and log-prob forwards): "xla" (einsums; any device and dtype) or "cudnn"
        (cuDNN's fused flash attention: GPU only, bfloat16 / float16 compute). Prefill into a KV
        buffer and decoding always use the XLA paths.
    """

    vocab_size: int
    hidden_size: int
    layer_pattern: str
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    mamba_num_heads: int
    mamba_head_dim: int
    ssm_state_size: int
    n_groups: int
    conv_kernel: int = 4
    chunk_size: int = 128
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    time_step_min: float = 0.001
    # Initialisation only (dt_bias draw); kept so a written config.json round-trips.
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    initializer_range: float = 0.02
    expand: int = 2
    max_position_embeddings: int = 4096
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 0
    # Runtime.
    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.float32
    ssm_state_dtype: Any = jnp.float32
    conv_state_dtype: Any = jnp.float32
    ssd_matmul_dtype: Any = jnp.float32
    time_step_clamp: str = "prefill"
    remat: str = "none"
    attention_query_chunk: int = 512
    attention_implementation: str = "xla"

    def __post_init__(self):
        for name in _DTYPE_FIELDS:
            value = getattr(self, name)
            try:
                dtype = jnp.dtype(value)
            except TypeError as e:
                raise ValueError(f"{name}={value!r} is not a dtype") from e
            if not jnp.issubdtype(dtype, jnp.floating):
                raise ValueError(f"{name}={value!r}: expected a floating dtype")
            object.__setattr__(self, name, dtype)
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        self._validate()

    def _validate(self):
        positive = ("vocab_size", "hidden_size", "num_attention_heads", "num_key_value_heads",
                    "head_dim", "intermediate_size", "mamba_num_heads", "mamba_head_dim",
                    "ssm_state_size", "n_groups", "conv_kernel", "chunk_size",
                    "attention_query_chunk")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if not self.layer_pattern:
            raise ValueError("layer_pattern is empty: expected at least one block")
        bad = sorted({c for c in self.layer_pattern if c not in _BLOCK_NAMES})
        if bad:
            raise ValueError(f"layer_pattern={self.layer_pattern!r} has unknown layer type(s) "
                             f"{bad}: expected only {MAMBA!r} (Mamba-2), {ATTENTION!r} "
                             f"(attention), {MLP!r} (MLP)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_key_value_heads={self.num_key_value_heads} does not divide "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.mamba_num_heads % self.n_groups:
            raise ValueError(f"mamba_num_heads={self.mamba_num_heads} is not divisible by "
                             f"n_groups={self.n_groups}")
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon={self.layer_norm_epsilon}: expected > 0")
        if self.time_step_min < 0:
            raise ValueError(f"time_step_min={self.time_step_min}: expected >= 0")
        if self.time_step_clamp not in TIME_STEP_CLAMPS:
            raise ValueError(f"time_step_clamp={self.time_step_clamp!r}: expected one of "
                             f"{TIME_STEP_CLAMPS}")
        if self.attention_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention_implementation={self.attention_implementation!r}: "
                             f"expected one of {ATTENTION_IMPLEMENTATIONS}")
        if (self.attention_implementation == "cudnn"
                and self.compute_dtype not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))):
            raise ValueError(f"attention_implementation='cudnn' needs a bfloat16 or float16 "
                             f"compute_dtype (cuDNN's flash attention), got {self.compute_dtype}")
        if self.remat != "none" and self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}: expected one of "
                             f"{('none', *REMAT_POLICIES)}")

    # ---- Derived sizes -------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layer_pattern)

    @property
    def layer_types(self) -> tuple[str, ...]:
        """Per layer "mamba", "attention" or "mlp"."""
        return tuple(_BLOCK_NAMES[c] for c in self.layer_pattern)

    @property
    def mamba_inner_size(self) -> int:
        """Width of z, x and the gated norm: heads · head_dim (not expand · hidden)."""
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def mamba_heads_per_group(self) -> int:
        return self.mamba_num_heads // self.n_groups

    @property
    def conv_dim(self) -> int:
        """Channels of the depthwise conv: x | B | C."""
        return self.mamba_inner_size + 2 * self.n_groups * self.ssm_state_size

    @property
    def q_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def replace(self, **changes) -> NemotronHConfig:
        _check_field_names(changes, "replace")
        return dataclasses.replace(self, **changes)

    # ---- Hugging Face config.json ---------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, hf_config: Mapping[str, Any] | str | os.PathLike,
                       **overrides) -> NemotronHConfig:
        """Reads an HF config dict, a config.json path, or a checkpoint directory.

        `overrides` set any field (runtime fields such as compute_dtype, or architecture fields).
        """
        if not isinstance(hf_config, Mapping):
            hf_config = read_hf_config_json(hf_config)
        hf = dict(hf_config)
        model_type = hf.get("model_type", "nemotron_h")
        if model_type != "nemotron_h":
            raise ValueError(f"model_type={model_type!r}: expected 'nemotron_h'")
        for alias, canonical in _HF_ALIASES.items():
            if alias in hf:
                hf[canonical] = hf.pop(alias)
        for foreign, canonical in _FOREIGN_ALIASES.items():
            if foreign in hf and hf.get(canonical, hf[foreign]) != hf[foreign]:
                raise ValueError(f"config has {foreign}={hf[foreign]} and {canonical}="
                                 f"{hf[canonical]}: transformers ignores {foreign} for nemotron_h")
            if foreign in hf and canonical not in hf:
                raise ValueError(f"config has {foreign}={hf[foreign]} but no {canonical}: "
                                 f"transformers 5.24 ignores {foreign} for nemotron_h; "
                                 f"write {canonical}")
        for key, expected in _FIXED_HF_OPTIONS.items():
            if key in hf and hf[key] != expected:
                raise ValueError(f"{key}={hf[key]!r} is not supported: expected {expected!r}")
        if hf.get("num_nextn_predict_layers", 0):
            raise ValueError(f"num_nextn_predict_layers={hf['num_nextn_predict_layers']}: "
                             "multi-token-prediction layers are not supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {**_HF_DEFAULTS, **{k: v for k, v in hf.items() if k in fields}}
        values["layer_pattern"] = _layer_pattern(hf)
        if values["num_key_value_heads"] is None:  # transformers: None means multi-head
            values["num_key_value_heads"] = values["num_attention_heads"]
        if "mamba_ssm_cache_dtype" in hf:
            values["ssm_state_dtype"] = hf["mamba_ssm_cache_dtype"]
        _check_field_names(overrides, "from_hf_config")
        values.update(overrides)
        return cls(**values)

    def to_hf_config(self, dtype: Any = None) -> dict[str, Any]:
        """A config.json dict transformers' NemotronHConfig / NemotronHForCausalLM accepts.

        `dtype` is the dtype the tensors are written in (default: param_dtype).
        """
        dtype_name = jnp.dtype(dtype if dtype is not None else self.param_dtype).name
        eos = list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id
        hf = {
            "architectures": ["NemotronHForCausalLM"],
            "model_type": "nemotron_h",
            "dtype": dtype_name,
            "torch_dtype": dtype_name,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "layers_block_type": [_PATTERN_TO_HF[c] for c in self.layer_pattern],
            "hybrid_override_pattern": self.layer_pattern,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "mamba_num_heads": self.mamba_num_heads,
            "mamba_head_dim": self.mamba_head_dim,
            "ssm_state_size": self.ssm_state_size,
            "n_groups": self.n_groups,
            "conv_kernel": self.conv_kernel,
            "chunk_size": self.chunk_size,
            "expand": self.expand,
            "use_conv_bias": self.use_conv_bias,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "time_step_min": self.time_step_min,
            "time_step_max": self.time_step_max,
            "time_step_floor": self.time_step_floor,
            "initializer_range": self.initializer_range,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "mamba_ssm_cache_dtype": jnp.dtype(self.ssm_state_dtype).name,
        }
        hf.update(_FIXED_HF_OPTIONS)
        return hf

    # ---- Presets --------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides) -> NemotronHConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
        _check_field_names(overrides, "preset")
        return cls(**{**PRESETS[name], **overrides})


def read_hf_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The dict in `path` (a config.json, or a directory holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no HF config at {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}): truncated or not an HF config") from None


def _layer_pattern(hf: Mapping[str, Any]) -> str:
    """The M/*/- pattern from `layers_block_type` (5.24 list) or `hybrid_override_pattern`."""
    # transformers prefers the list when both are present; so do we.
    block_types = hf.get("layers_block_type", hf.get("layer_types"))
    if block_types is not None:
        if isinstance(block_types, str) or not all(isinstance(b, str) for b in block_types):
            raise ValueError(f"layers_block_type={block_types!r}: expected a list of strings")
        chars = []
        for i, block in enumerate(block_types):
            if block in _UNSUPPORTED_BLOCK_TYPES:
                raise ValueError(f"layers_block_type[{i}]={block!r}: "
                                 f"{_UNSUPPORTED_BLOCK_TYPES[block]} blocks are not supported")
            if block not in _HF_BLOCK_TYPES:
                raise ValueError(f"layers_block_type[{i}]={block!r} is an unknown layer type: "
                                 f"expected one of {sorted(_HF_BLOCK_TYPES)}")
            chars.append(_HF_BLOCK_TYPES[block])
        return "".join(chars)
    pattern = hf.get("hybrid_override_pattern")
    if pattern is None:
        raise ValueError("HF config has neither layers_block_type nor hybrid_override_pattern")
    for i, c in enumerate(pattern):
        if c in _UNSUPPORTED_BLOCK_TYPES:
            raise ValueError(f"hybrid_override_pattern[{i}]={c!r}: "
                             f"{_UNSUPPORTED_BLOCK_TYPES[c]} blocks are not supported")
    return pattern


def _check_field_names(values: Mapping[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(NemotronHConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown NemotronHConfig field(s) {unknown}")


PRESETS: dict[str, dict[str, Any]] = {
    # NVIDIA-Nemotron-Nano-9B-v2 (reference §2); 8,888,227,328 parameters.
    "nemotron-nano-9b-v2": dict(
        vocab_size=131072, hidden_size=4480,
        layer_pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
        num_attention_heads=40, num_key_value_heads=8, head_dim=128, intermediate_size=15680,
        mamba_num_heads=128, mamba_head_dim=80, ssm_state_size=128, n_groups=8, conv_kernel=4,
        chunk_size=128, max_position_embeddings=131072, eos_token_id=12,
    ),
    # Reference §13 tiny config: every block type, chunk 8.
    "tiny-test": dict(
        vocab_size=100, hidden_size=64, layer_pattern="M-M*-M-*M",
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
        mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=16, n_groups=2, conv_kernel=4,
        chunk_size=8,
    ),
    # Every tensor-parallel dimension divides 8 (q/kv heads, Mamba heads/groups, MLP, vocab).
    "tp8-test": dict(
        vocab_size=1024, hidden_size=64, layer_pattern="M-*M-",
        num_attention_heads=8, num_key_value_heads=8, head_dim=8, intermediate_size=512,
        mamba_num_heads=16, mamba_head_dim=8, ssm_state_size=8, n_groups=8, conv_kernel=4,
        chunk_size=8,
    ),
}

