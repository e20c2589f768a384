"""Nemotron-H (hybrid Mamba-2 / attention) in Flax NNX, with Hugging Face checkpoint I/O.

The checkpoint I/O (`hf_io`: safetensors) is imported on first use, so the model, cache and
sampler import only jax / flax / numpy (e.g. benchmarks/gpu_h100.py runs without safetensors).
"""
from grpo_jax.models.cache import AttentionLayerCache, Cache, MambaLayerCache, init_cache
from grpo_jax.models.config import NemotronHConfig
from grpo_jax.models.nemotron_h import NemotronH, create_model

_HF_IO_NAMES = ("CheckpointError", "load_hf_model", "save_hf_model")

__all__ = [
    "AttentionLayerCache", "Cache", "CheckpointError", "MambaLayerCache", "NemotronH",
    "NemotronHConfig", "create_model", "init_cache", "load_hf_model", "save_hf_model",
]


def __getattr__(name: str):
    if name in _HF_IO_NAMES or name == "hf_io":
        import importlib

        hf_io = importlib.import_module("grpo_jax.models.hf_io")
        return hf_io if name == "hf_io" else getattr(hf_io, name)
    raise AttributeError(f"module 'grpo_jax.models' has no attribute {name!r}")
