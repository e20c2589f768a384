"""Hugging Face checkpoints: import into NemotronH placed on a mesh, and export back.

A checkpoint is a local directory with config.json and safetensors (one file, or shards listed by
model.safetensors.index.json). Tensor names follow the released checkpoints (`backbone.` prefix,
`lm_head.weight`); `model.` (transformers' in-memory prefix) and `backbone.embedding.weight` (old
remote code) are accepted on import.

Import builds the model abstractly and creates each parameter with
`jax.make_array_from_callback`, whose callback reads only the slice one device needs: host memory
holds about one tensor slice at a time and no device holds more than its shards. Export gathers
one tensor at a time and holds one output shard in host memory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors import safe_open
from safetensors.numpy import save_file

from grpo_jax import sharding
from grpo_jax.models.config import NemotronHConfig, read_hf_config_json
from grpo_jax.models.nemotron_h import NemotronH

INDEX_FILE = "model.safetensors.index.json"
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_DEFAULT_MAX_SHARD_BYTES = 5 * 2**30


class CheckpointError(ValueError):
    """A checkpoint directory that does not hold the tensors this config needs."""


@dataclasses.dataclass(frozen=True)
class _Part:
    """One parameter of ours stored in a contiguous row range of an HF tensor.

    The HF tensor is read as a matrix (rows = dim 0, columns = the other dims flattened); the
    parameter's dims are `row_dims + col_dims`, or `col_dims + row_dims` if `transposed` (HF
    Linear weights are (out, in); our kernels are (in, out)).
    """

    path: tuple
    row_dims: tuple[int, ...]
    col_dims: tuple[int, ...] = ()
    transposed: bool = False

    @property
    def rows(self) -> int:
        return math.prod(self.row_dims)

    @property
    def shape(self) -> tuple[int, ...]:
        dims = (self.col_dims, self.row_dims) if self.transposed else (self.row_dims, self.col_dims)
        return dims[0] + dims[1]


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """An HF tensor: its canonical name, shape, and our parameters stacked along its rows."""

    name: str
    shape: tuple[int, ...]
    parts: tuple[_Part, ...]


def _linear(path, out_dims, in_dims) -> _Part:
    return _Part(path, row_dims=tuple(out_dims), col_dims=tuple(in_dims), transposed=True)


def hf_layout(config: NemotronHConfig) -> list[_Tensor]:
    """Every tensor of the HF checkpoint of `config` and the parameters it holds (reference §10)."""
    c = config
    d, v = c.hidden_size, c.vocab_size
    h, p, g, n, k = (c.mamba_num_heads, c.mamba_head_dim, c.n_groups, c.ssm_state_size,
                     c.conv_kernel)
    tensors = [_Tensor("backbone.embeddings.weight", (v, d),
                       (_Part(("embedding",), (v,), (d,)),))]
    for i, layer_type in enumerate(c.layer_types):
        pre, block = f"backbone.layers.{i}.", ("layers", i)
        mixer = block + ("mixer",)
        tensors.append(_Tensor(pre + "norm.weight", (d,),
                               (_Part(block + ("norm", "weight"), (d,)),)))
        if layer_type == "mamba":
            in_parts = (_linear(mixer + ("z_proj",), (h, p), (d,)),
                        _linear(mixer + ("x_proj",), (h, p), (d,)),
                        _linear(mixer + ("b_proj",), (g, n), (d,)),
                        _linear(mixer + ("c_proj",), (g, n), (d,)),
                        _linear(mixer + ("dt_proj",), (h,), (d,)))
            conv_parts = tuple(_Part(mixer + (name,), dims, (k,), transposed=True)
                               for name, dims in (("conv_x", (h, p)), ("conv_b", (g, n)),
                                                  ("conv_c", (g, n))))
            tensors += [
                _Tensor(pre + "mixer.in_proj.weight", (sum(q.rows for q in in_parts), d),
                        in_parts),
                _Tensor(pre + "mixer.conv1d.weight", (c.conv_dim, 1, k), conv_parts),
            ]
            if c.use_conv_bias:
                tensors.append(_Tensor(pre + "mixer.conv1d.bias", (c.conv_dim,), (
                    _Part(mixer + ("conv_x_bias",), (h, p)),
                    _Part(mixer + ("conv_b_bias",), (g, n)),
                    _Part(mixer + ("conv_c_bias",), (g, n)))))
            tensors += [_Tensor(pre + f"mixer.{name}", (h,), (_Part(mixer + (name,), (h,)),))
                        for name in ("A_log", "D", "dt_bias")]
            tensors += [
                _Tensor(pre + "mixer.norm.weight", (h * p,), (_Part(mixer + ("norm",), (h, p)),)),
                _Tensor(pre + "mixer.out_proj.weight", (d, h * p),
                        (_linear(mixer + ("out_proj",), (d,), (h, p)),)),
            ]
        elif layer_type == "attention":
            qh, kv, dh = c.num_attention_heads, c.num_key_value_heads, c.head_dim
            tensors += [
                _Tensor(pre + "mixer.q_proj.weight", (qh * dh, d),
                        (_linear(mixer + ("q_proj",), (qh, dh), (d,)),)),
                _Tensor(pre + "mixer.k_proj.weight", (kv * dh, d),
                        (_linear(mixer + ("k_proj",), (kv, dh), (d,)),)),
                _Tensor(pre + "mixer.v_proj.weight", (kv * dh, d),
                        (_linear(mixer + ("v_proj",), (kv, dh), (d,)),)),
                _Tensor(pre + "mixer.o_proj.weight", (d, qh * dh),
                        (_linear(mixer + ("o_proj",), (d,), (qh, dh)),)),
            ]
        else:
            f = c.intermediate_size
            tensors += [
                _Tensor(pre + "mixer.up_proj.weight", (f, d),
                        (_linear(mixer + ("up_proj",), (f,), (d,)),)),
                _Tensor(pre + "mixer.down_proj.weight", (d, f),
                        (_linear(mixer + ("down_proj",), (d,), (f,)),)),
            ]
    tensors += [
        _Tensor("backbone.norm_f.weight", (d,), (_Part(("norm_f", "weight"), (d,)),)),
        _Tensor("lm_head.weight", (v, d), (_linear(("lm_head",), (v,), (d,)),)),
    ]
    return tensors


def _aliases(name: str) -> list[str]:
    """Names under which a canonical tensor may be stored."""
    if not name.startswith("backbone."):
        return [name]
    names = [name, "model." + name[len("backbone."):]]
    if name == "backbone.embeddings.weight":
        names += ["backbone.embedding.weight", "model.embedding.weight"]
    return names


# ---- Import --------------------------------------------------------------------------------------

def _stored_tensors(path: pathlib.Path) -> dict[str, str]:
    """Stored tensor name → file name, from the shard index or from the safetensors files."""
    index = path / INDEX_FILE
    if index.is_file():
        with open(index, encoding="utf-8") as f:
            try:
                weight_map = json.load(f)
            except json.JSONDecodeError as error:
                raise CheckpointError(f"{index} is not valid JSON ({error})") from None
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no weight_map")
        return dict(weight_map)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors files and no {INDEX_FILE} in {path}")
    stored = {}
    for file in files:
        with _open_safetensors(file) as f:
            stored.update({name: file.name for name in f.keys()})
    return stored


def _open_safetensors(file: pathlib.Path):
    """safe_open, with a damaged file (truncated, garbled header) reported by name."""
    try:
        return safe_open(file, framework="np")
    except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupted?): "
                              f"{type(error).__name__}: {error}") from None


def _resolve(layout: Sequence[_Tensor], stored: dict[str, str], path: pathlib.Path
             ) -> dict[str, str]:
    """Canonical name → stored name; every tensor found once, no tensor left over."""
    found, used = {}, set()
    for tensor in layout:
        present = [alias for alias in _aliases(tensor.name) if alias in stored]
        if not present:
            raise CheckpointError(f"tensor {tensor.name} (shape {tensor.shape}) is missing from "
                                  f"the checkpoint in {path} (looked for {_aliases(tensor.name)})")
        if len(present) > 1:
            raise CheckpointError(f"tensor {tensor.name} is stored twice, as " + " and ".join(
                f"{name} in {stored[name]}" for name in present))
        found[tensor.name] = present[0]
        used.add(present[0])
    unexpected = sorted(set(stored) - used)
    if unexpected:
        listed = ", ".join(f"{name} in {stored[name]}" for name in unexpected[:5])
        raise CheckpointError(f"{len(unexpected)} unexpected tensor(s) for this config in {path}: "
                              f"{listed}")
    return found


def _group_range(bounds: list[tuple[int, int]], dims: tuple[int, ...]) -> tuple[int, int]:
    """The flat HF range holding a slice of dims flattened row-major.

    Shardings split only the leading dim of a group, so the range covers whole inner dims; they
    are sliced after the read.
    """
    if not dims:
        return 0, 1
    inner = math.prod(dims[1:])
    return bounds[0][0] * inner, bounds[0][1] * inner


def _read_part(handle, name: str, row_offset: int, part: _Part, index: tuple, dtype
               ) -> np.ndarray:
    """The slice `index` of parameter `part`, reading only the rows of HF tensor `name` it needs."""
    bounds = [s.indices(size)[:2] for s, size in zip(index, part.shape)]
    split = len(part.col_dims if part.transposed else part.row_dims)
    row_bounds, col_bounds = bounds[:split], bounds[split:]
    if part.transposed:
        row_bounds, col_bounds = col_bounds, row_bounds
    r0, r1 = _group_range(row_bounds, part.row_dims)
    c0, c1 = _group_range(col_bounds, part.col_dims)
    rows = slice(row_offset + r0, row_offset + r1)
    tensor = handle.get_slice(name)
    if len(tensor.get_shape()) == 1:
        block = tensor[rows]
    elif len(tensor.get_shape()) == 2:
        block = tensor[rows, c0:c1]
    else:  # conv1d (C, 1, K): columns are the trailing dims flattened
        block = tensor[rows].reshape(r1 - r0, -1)[:, c0:c1]

    shape, inner = [], []
    for group_bounds, dims in ((row_bounds, part.row_dims), (col_bounds, part.col_dims)):
        if dims:
            shape += [group_bounds[0][1] - group_bounds[0][0], *dims[1:]]
            inner += [slice(None)] + [slice(lo, hi) for lo, hi in group_bounds[1:]]
    block = block.reshape(shape)[tuple(inner)]
    if part.transposed:
        nr = len(part.row_dims)
        block = np.transpose(block, tuple(range(nr, block.ndim)) + tuple(range(nr)))
    return np.ascontiguousarray(block.astype(dtype))


def load_hf_model(path: str | os.PathLike, mesh: Mesh | None = None,
                  param_dtype: Any = jnp.float32, compute_dtype: Any = jnp.float32,
                  **config_overrides) -> NemotronH:
    """NemotronH from a local HF checkpoint directory, each parameter placed on its sharding.

    Without a mesh, parameters go to the default device. `config_overrides` set runtime fields
    (e.g. time_step_clamp, remat) or architecture fields of the NemotronHConfig.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"config.json is missing from the checkpoint in {path}")
    config = NemotronHConfig.from_hf_config(read_hf_config_json(path), param_dtype=param_dtype,
                                            compute_dtype=compute_dtype, **config_overrides)
    if mesh is not None:
        sharding.validate_model_mesh(config, mesh)
    layout = hf_layout(config)
    stored = _stored_tensors(path)
    names = _resolve(layout, stored, path)

    abstract_model = nnx.eval_shape(lambda: NemotronH(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract_model)
    shardings = dict(nnx.to_flat_state(sharding.state_shardings(abstract_state, mesh))
                     ) if mesh is not None else None
    variables = dict(nnx.to_flat_state(abstract_state))
    loaded = {}
    with contextlib.ExitStack() as stack:
        handles = {}  # file name → (open safetensors file, its tensor names)

        def open_file(name: str):
            file_name = stored[name]
            if file_name not in handles:
                file = path / file_name
                if not file.is_file():
                    raise CheckpointError(f"tensor {name} is in {file_name} according to "
                                          f"{INDEX_FILE}, but {file} does not exist")
                handle = stack.enter_context(_open_safetensors(file))
                handles[file_name] = handle, set(handle.keys())
            handle, keys = handles[file_name]
            if name not in keys:
                raise CheckpointError(f"tensor {name} is missing from {file_name}")
            return handle

        for tensor in layout:
            name = names[tensor.name]
            handle = open_file(name)
            _check_stored(handle, name, stored[name], tensor)
            row_offset = 0
            for part in tensor.parts:
                variable = variables[part.path]
                target = (shardings[part.path] if shardings is not None
                          else SingleDeviceSharding(jax.devices()[0]))
                dtype = np.dtype(variable.dtype)

                def read(index, part=part, name=name, handle=handle, row_offset=row_offset,
                         dtype=dtype):
                    return _read_part(handle, name, row_offset, part, index, dtype)

                loaded[part.path] = variable.replace(
                    jax.make_array_from_callback(variable.shape, target, read, dtype=dtype))
                row_offset += part.rows
    missing = sorted(set(variables) - set(loaded))
    assert not missing, f"hf_layout does not cover parameters {missing}"
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def _check_stored(handle, name: str, file_name: str, tensor: _Tensor) -> None:
    stored = handle.get_slice(name)
    shape, dtype = tuple(stored.get_shape()), stored.get_dtype()
    if shape != tensor.shape:
        raise CheckpointError(f"tensor {name} in {file_name} has shape {shape}: expected "
                              f"{tensor.shape} for this config")
    if dtype not in _FLOAT_DTYPES:
        raise CheckpointError(f"tensor {name} in {file_name} has dtype {dtype}: expected one "
                              f"of {sorted(_FLOAT_DTYPES)}")


# ---- Export --------------------------------------------------------------------------------------

def _host_array(array: jax.Array) -> np.ndarray:
    """The whole array on this host, gathered across processes when needed."""
    if not array.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(jax.device_get(array))


def _hf_tensor(tensor: _Tensor, params: dict, dtype) -> np.ndarray:
    blocks = []
    for part in tensor.parts:
        value = _host_array(params[part.path][...])
        if part.transposed:
            nc = len(part.col_dims)
            value = np.transpose(value, tuple(range(nc, value.ndim)) + tuple(range(nc)))
        blocks.append(value.reshape((part.rows,) + tensor.shape[1:]))
    return np.ascontiguousarray(np.concatenate(blocks, axis=0).astype(dtype))


def _plan_shards(layout: Sequence[_Tensor], itemsize: int, max_shard_bytes: int
                 ) -> list[list[_Tensor]]:
    shards, size = [[]], 0
    for tensor in layout:
        nbytes = math.prod(tensor.shape) * itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += nbytes
    return shards


def save_hf_model(model: NemotronH, path: str | os.PathLike,
                  max_shard_bytes: int = _DEFAULT_MAX_SHARD_BYTES, dtype: Any = None) -> None:
    """Writes an HF checkpoint directory NemotronHForCausalLM.from_pretrained loads.

    Tensors are written in `dtype` (default: the model's param_dtype) under the `backbone.`
    prefix, in shards of at most `max_shard_bytes` (a larger single tensor gets its own shard).
    """
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes={max_shard_bytes}: expected > 0")
    config = model.config
    dtype = np.dtype(jnp.dtype(config.param_dtype if dtype is None else dtype))
    path = pathlib.Path(path)
    writer = jax.process_index() == 0
    if writer:
        path.mkdir(parents=True, exist_ok=True)
    params = dict(nnx.to_flat_state(nnx.state(model)))
    shards = _plan_shards(hf_layout(config), dtype.itemsize, max_shard_bytes)
    file_names = (["model.safetensors"] if len(shards) == 1 else
                  [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                   for i in range(len(shards))])
    weight_map, total_size = {}, 0
    for file_name, shard in zip(file_names, shards):
        arrays = {tensor.name: _hf_tensor(tensor, params, dtype) for tensor in shard}
        if writer:
            save_file(arrays, str(path / file_name), metadata={"format": "pt"})
        weight_map.update({name: file_name for name in arrays})
        total_size += sum(a.nbytes for a in arrays.values())
        del arrays
    if not writer:
        return
    if len(shards) > 1:
        with open(path / INDEX_FILE, "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total_size}, "weight_map": weight_map}, f,
                      indent=2, sort_keys=True)
    with open(path / "config.json", "w", encoding="utf-8") as f:
        json.dump(config.to_hf_config(dtype), f, indent=2, sort_keys=True)

