"""A damaged Hugging Face model directory fails with an error naming the file (and the tensor,
when one is at fault), never with a bare library exception or, worse, a model of garbage.

tests/models/test_hf_io.py covers a missing tensor, a wrong shape, an integer dtype, an
unexpected or duplicated tensor and a missing shard file; these add damaged files: truncated or
garbled safetensors (single file and one shard of several), an index that is not JSON, has no
weight map or points at a file without the tensor, a truncated config.json, a byte dtype, and
what happens to a float tensor of another precision (converted, exactly).
"""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from grpo_jax.models import CheckpointError, load_hf_model, save_hf_model
from grpo_jax.models.hf_io import INDEX_FILE

SINGLE = "model.safetensors"


@pytest.fixture
def model_dir(tiny_hf_dir, tmp_path):
    """A private copy of the tiny model directory (one safetensors file)."""
    out = tmp_path / "model"
    shutil.copytree(tiny_hf_dir, out)
    assert (out / SINGLE).is_file() and not (out / INDEX_FILE).exists()
    return out


@pytest.fixture(scope="module")
def sharded_dir(tiny_hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    save_hf_model(load_hf_model(tiny_hf_dir), out, max_shard_bytes=40_000)
    assert len(list(out.glob("*.safetensors"))) > 2
    return out


def _truncate(file: pathlib.Path, fraction: float) -> None:
    data = file.read_bytes()
    file.write_bytes(data[:int(len(data) * fraction)])


def _garble_header(file: pathlib.Path) -> None:
    data = bytearray(file.read_bytes())
    data[10:20] = b"\xff" * 10  # inside the JSON header that follows the 8-byte length
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda f: _truncate(f, 0.5), lambda f: _truncate(f, 0.0001), lambda f: f.write_bytes(b""), _garble_header,
], ids=["truncated_data", "truncated_header", "empty", "garbled_header"])
def test_a_damaged_safetensors_file_is_named(model_dir, damage):
    damage(model_dir / SINGLE)
    with pytest.raises(CheckpointError, match=rf"{model_dir / SINGLE} is not a readable safetensors file"):
        load_hf_model(model_dir)


def test_a_truncated_shard_is_named(sharded_dir, tmp_path):
    broken = tmp_path / "sharded"
    shutil.copytree(sharded_dir, broken)
    shard = json.loads((broken / INDEX_FILE).read_text())["weight_map"]["lm_head.weight"]
    _truncate(broken / shard, 0.5)
    with pytest.raises(CheckpointError, match=rf"{broken / shard} is not a readable safetensors file"):
        load_hf_model(broken)


def test_index_that_is_not_json_or_has_no_weight_map(sharded_dir, tmp_path):
    broken = tmp_path / "sharded"
    shutil.copytree(sharded_dir, broken)
    index = broken / INDEX_FILE
    index.write_text(index.read_text()[:40])  # a torn write
    with pytest.raises(CheckpointError, match=rf"{index} is not valid JSON"):
        load_hf_model(broken)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match=rf"{index} has no weight_map"):
        load_hf_model(broken)


def test_index_pointing_at_a_file_without_the_tensor(sharded_dir, tmp_path):
    broken = tmp_path / "sharded"
    shutil.copytree(sharded_dir, broken)
    index = json.loads((broken / INDEX_FILE).read_text())
    wrong = next(f for f in set(index["weight_map"].values()) if f != index["weight_map"]["lm_head.weight"])
    index["weight_map"]["lm_head.weight"] = wrong
    (broken / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"tensor lm_head.weight is missing from {wrong}"):
        load_hf_model(broken)


def test_truncated_config_json_is_named(model_dir):
    config = model_dir / "config.json"
    config.write_text(config.read_text()[:30])
    with pytest.raises(ValueError, match=rf"{config} is not valid JSON"):
        load_hf_model(model_dir)


def _retyped(model_dir, name, convert):
    tensors = load_file(model_dir / SINGLE)
    tensors[name] = convert(tensors[name])
    save_file(tensors, str(model_dir / SINGLE), metadata={"format": "pt"})
    return tensors[name]


@pytest.mark.parametrize("convert, stored", [
    (lambda t: t.view(np.uint8)[:t.size], "U8"), (lambda t: t > 0, "BOOL"), (lambda t: t.astype(np.int32), "I32"),
], ids=["uint8", "bool", "int32"])
def test_a_tensor_of_a_non_float_dtype_is_named_with_its_file(model_dir, convert, stored):
    _retyped(model_dir, "backbone.norm_f.weight", convert)
    with pytest.raises(CheckpointError, match=rf"tensor backbone.norm_f.weight in {SINGLE} has dtype {stored}: "
                                              r"expected one of \['BF16', 'F16', 'F32', 'F64'\]"):
        load_hf_model(model_dir)


def test_a_float_tensor_of_another_precision_is_converted_exactly(model_dir):
    # Mixed float precisions occur in real checkpoints; they are converted to param_dtype, which
    # is exact for float16 -> float32.
    half = _retyped(model_dir, "backbone.norm_f.weight", lambda t: t.astype(np.float16))
    model = load_hf_model(model_dir)
    np.testing.assert_array_equal(np.asarray(model.norm_f.weight[...]), half.astype(np.float32))
