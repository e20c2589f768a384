"""HF checkpoint import and export: bit-exact round trips, aliases, shards, clear errors."""
import copy
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from grpo_jax.models import CheckpointError, load_hf_model, save_hf_model
from grpo_jax.models.hf_io import INDEX_FILE
from tests.models.helpers import hf_logits, safetensors_tensors


def _params(model) -> dict:
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))}


def _rewrite(source, target, edit) -> pathlib.Path:
    """A copy of checkpoint `source` in one file whose tensors are edit(tensors)."""
    target = pathlib.Path(target)
    target.mkdir()
    shutil.copy(pathlib.Path(source) / "config.json", target / "config.json")
    save_file(edit(safetensors_tensors(source)), str(target / "model.safetensors"),
              metadata={"format": "pt"})
    return target


@pytest.fixture(scope="module")
def tiny_model(hf_tiny):
    return load_hf_model(hf_tiny[1])


def test_import_then_export_is_bit_exact(hf_tiny, tiny_model, tmp_path):
    save_hf_model(tiny_model, tmp_path)
    original, exported = safetensors_tensors(hf_tiny[1]), safetensors_tensors(tmp_path)
    assert sorted(exported) == sorted(original)
    assert all(name.startswith(("backbone.", "lm_head.")) for name in exported)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype, name
        assert exported[name].tobytes() == tensor.tobytes(), name
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["NemotronHForCausalLM"]
    assert config["model_type"] == "nemotron_h" and config["torch_dtype"] == "float32"


def test_sharded_export_loads_in_transformers_and_back(hf_tiny, tiny_model, tmp_path):
    import transformers

    save_hf_model(tiny_model, tmp_path, max_shard_bytes=40_000)
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) > 2 and (tmp_path / INDEX_FILE).is_file()
    reloaded = transformers.NemotronHForCausalLM.from_pretrained(tmp_path).eval()
    ids = np.random.default_rng(0).integers(0, 100, (2, 11))
    np.testing.assert_array_equal(hf_logits(reloaded, ids), hf_logits(hf_tiny[0], ids))
    ours = _params(load_hf_model(tmp_path))
    for path, value in _params(tiny_model).items():
        np.testing.assert_array_equal(ours[path], value)


def test_bfloat16_checkpoint_round_trips_in_bfloat16(hf_tiny, tmp_path):
    import jax.numpy as jnp
    import torch

    copy.deepcopy(hf_tiny[0]).to(torch.bfloat16).save_pretrained(tmp_path / "in")
    model = load_hf_model(tmp_path / "in", param_dtype=jnp.bfloat16, compute_dtype=jnp.bfloat16)
    assert model.embedding[...].dtype == jnp.bfloat16
    save_hf_model(model, tmp_path / "out")
    original, exported = safetensors_tensors(tmp_path / "in"), safetensors_tensors(tmp_path / "out")
    for name, tensor in original.items():
        assert exported[name].tobytes() == tensor.tobytes(), name


def test_model_prefix_and_embedding_alias_are_accepted(hf_tiny, tiny_model, tmp_path):
    def rename(tensors):
        renamed = {name.replace("backbone.", "model.", 1): t for name, t in tensors.items()}
        renamed["model.embedding.weight"] = renamed.pop("model.embeddings.weight")
        return renamed

    ours = _params(load_hf_model(_rewrite(hf_tiny[1], tmp_path / "alias", rename)))
    for path, value in _params(tiny_model).items():
        np.testing.assert_array_equal(ours[path], value)


def _drop(name):
    return lambda tensors: {k: v for k, v in tensors.items() if k != name}


def _replace(name, value):
    return lambda tensors: {**tensors, name: value}


@pytest.mark.parametrize("edit, message", [
    (_drop("backbone.layers.3.mixer.k_proj.weight"),
     r"backbone.layers.3.mixer.k_proj.weight .*missing"),
    (_replace("backbone.layers.0.mixer.in_proj.weight", np.zeros((5, 64), np.float32)),
     r"backbone.layers.0.mixer.in_proj.weight in model.safetensors has shape \(5, 64\)"),
    (_replace("backbone.norm_f.weight", np.zeros((64,), np.int64)),
     r"backbone.norm_f.weight in model.safetensors has dtype I64"),
    (_replace("backbone.layers.1.mixer.gate_proj.weight", np.zeros((2, 2), np.float32)),
     r"unexpected tensor.*backbone.layers.1.mixer.gate_proj.weight in model.safetensors"),
    (_replace("backbone.embedding.weight", np.zeros((100, 64), np.float32)),
     r"backbone.embeddings.weight is stored twice"),
], ids=["missing", "shape", "dtype", "unexpected", "duplicate"])
def test_bad_tensors_raise_errors_naming_tensor_and_file(hf_tiny, tmp_path, edit, message):
    broken = _rewrite(hf_tiny[1], tmp_path / "broken", edit)
    with pytest.raises(CheckpointError, match=message):
        load_hf_model(broken)


def test_missing_shard_file_names_tensor_and_file(tiny_model, tmp_path):
    save_hf_model(tiny_model, tmp_path, max_shard_bytes=40_000)
    index = json.loads((tmp_path / INDEX_FILE).read_text())["weight_map"]
    lost = index["lm_head.weight"]
    (tmp_path / lost).unlink()
    with pytest.raises(CheckpointError, match=rf"tensor .* is in {lost} .* does not exist"):
        load_hf_model(tmp_path)


def test_missing_checkpoint_parts_raise(hf_tiny, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_hf_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_hf_model(tmp_path)
    shutil.copy(pathlib.Path(hf_tiny[1]) / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"no \*.safetensors"):
        load_hf_model(tmp_path)


def test_import_places_every_parameter_on_the_default_device(tiny_model):
    devices = {d for leaf in jax.tree.leaves(nnx.state(tiny_model)) for d in leaf.devices()}
    assert devices == {jax.devices()[0]}
