"""Test helpers: random transformers Nemotron-H models and shared jitted model functions.

Compilation dominates the run time of the model tests on CPU, so the jitted functions are module
level (cached by graph definition and shapes) and shared by every test module.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Reference §13 tiny config as an HF config.json dict (pattern string form).
TINY_HF_CONFIG = dict(
    vocab_size=100, hidden_size=64, hybrid_override_pattern="M-M*-M-*M",
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
    mamba_num_heads=8, mamba_head_dim=16, ssm_state_size=16, n_groups=2, conv_kernel=4,
    chunk_size=8, initializer_range=0.1,
)


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|: the error on the scale of the output."""
    expected = np.asarray(expected, np.float64)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max())


def make_hf_model(hf_config: dict, seed: int = 0):
    """A float32 NemotronHForCausalLM with every parameter random, including A_log, D, dt_bias and
    all norm weights (left at their HF initial values they would hide layout mistakes)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**hf_config)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("dt_bias"):
                param.normal_(-4.0, 3.0)  # the spread of trained dt_bias: clamps some heads
            elif name.endswith("A_log"):
                param.normal_(0.5, 1.0)
            elif name.endswith(".D"):
                param.normal_(1.0, 0.5)
            elif "norm" in name:
                param.normal_(1.0, 0.3)
    return model


def save_hf_model_dir(model, path) -> str:
    model.save_pretrained(path)
    return str(path)


def hf_logits(model, input_ids) -> np.ndarray:
    """transformers' full forward. use_cache=False: the logits are the same, and transformers 5.24
    cannot build a cache for a model without attention layers."""
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(input_ids)), use_cache=False).logits.numpy()


def safetensors_tensors(directory) -> dict[str, np.ndarray]:
    """Every tensor of the *.safetensors files of a checkpoint directory, by name."""
    import pathlib

    from safetensors.numpy import load_file

    return {name: tensor for file in sorted(pathlib.Path(directory).glob("*.safetensors"))
            for name, tensor in load_file(file).items()}


def hf_cached_decode_logits(model, input_ids, prompt_len: int) -> np.ndarray:
    """transformers' own prefill of `prompt_len` tokens, then one cached step per later token."""
    import torch

    ids = torch.as_tensor(np.asarray(input_ids))
    with torch.no_grad():
        out = model(ids[:, :prompt_len], use_cache=True)
        logits = [out.logits]
        for t in range(prompt_len, ids.shape[1]):
            out = model(ids[:, t:t + 1], cache=out.cache, use_cache=True)
            logits.append(out.logits)
    return torch.cat(logits, dim=1).numpy()


# ---- Shared jitted model functions --------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def _full_logits(graphdef, state, input_ids_BT):
    return nnx.merge(graphdef, state)(input_ids_BT)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=3)
def _extend(graphdef, state, input_ids_BT, cache, num_valid_B):
    model = nnx.merge(graphdef, state)
    hidden_BTD, cache = model.forward(input_ids_BT, cache=cache, num_valid_B=num_valid_B)
    return model.logits(hidden_BTD), cache


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _decode_scan(graphdef, state, cache, tokens_BT, num_valid_BT):
    """One-token steps inside lax.scan with the cache carried, as a sampler runs them."""
    model = nnx.merge(graphdef, state)

    def step(cache, inputs):
        token_B, num_valid_B = inputs
        hidden_B1D, cache = model.forward(token_B[:, None], cache=cache, num_valid_B=num_valid_B)
        return cache, model.logits(hidden_B1D[:, 0])

    cache, logits_TBV = jax.lax.scan(step, cache, (tokens_BT.T, num_valid_BT.T))
    return logits_TBV.swapaxes(0, 1), cache


class Runner:
    """A model split once, with the shared jitted entry points."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.graphdef, self.state = nnx.split(model)

    def full(self, input_ids_BT):
        return np.asarray(_full_logits(self.graphdef, self.state, jnp.asarray(input_ids_BT)))

    def extend(self, input_ids_BT, cache, num_valid_B=None):
        if num_valid_B is None:  # an explicit array, so every call shares one compilation
            num_valid_B = np.full(np.shape(input_ids_BT)[0], np.shape(input_ids_BT)[1])
        num_valid_B = jnp.asarray(num_valid_B, jnp.int32)
        logits, cache = _extend(self.graphdef, self.state, jnp.asarray(input_ids_BT), cache,
                                num_valid_B)
        return np.asarray(logits), cache

    def decode(self, cache, tokens_BT, num_valid_BT=None):
        tokens_BT = jnp.asarray(tokens_BT)
        if num_valid_BT is None:
            num_valid_BT = jnp.ones(tokens_BT.shape, jnp.int32)
        logits, cache = _decode_scan(self.graphdef, self.state, cache, tokens_BT,
                                     jnp.asarray(num_valid_BT, jnp.int32))
        return np.asarray(logits), cache


def to_numpy(tree):
    """A host copy (the jitted entry points donate their cache argument)."""
    return jax.tree.map(np.asarray, tree)
