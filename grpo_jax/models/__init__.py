"""Nemotron-H (hybrid Mamba-2 / attention) in Flax NNX, with Hugging Face checkpoint I/O."""
from grpo_jax.models.cache import AttentionLayerCache, Cache, MambaLayerCache, init_cache
from grpo_jax.models.config import NemotronHConfig
from grpo_jax.models.hf_io import CheckpointError, load_hf_model, save_hf_model
from grpo_jax.models.nemotron_h import NemotronH, create_model

__all__ = [
    "AttentionLayerCache", "Cache", "CheckpointError", "MambaLayerCache", "NemotronH",
    "NemotronHConfig", "create_model", "init_cache", "load_hf_model", "save_hf_model",
]
