"""Device mesh and the one table that maps logical axis names to mesh axes.

Model code names the axes of every parameter (NNX metadata `logical_axes`, one name or None per
dimension) and of its main activations (`constrain`); it never names a mesh axis. Only
`LOGICAL_AXIS_RULES` below decides where a logical axis lives:

- data: pure data parallelism (batch only);
- fsdp: batch of activations, and the hidden dimension of weights (gathered at use);
- tensor: Megatron-style tensor parallelism over vocab, MLP width, attention heads and Mamba
  heads/groups. Column-parallel projections (in_proj, q/k/v, up, lm_head) are sharded on their
  output; out_proj, o_proj and down_proj on their input (row-parallel, followed by an all-reduce).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:
    from grpo_jax.models.config import NemotronHConfig

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: dict[str, str | tuple[str, ...] | None] = {
    # Parameters.
    "vocab": "tensor",
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "ssm_heads": "tensor",
    "ssm_groups": "tensor",
    # Activations and caches. The hidden dimension of activations stays whole: the batch already
    # uses fsdp, and row-parallel projections all-reduce into a replicated hidden state.
    "batch": ("data", "fsdp"),
    "seq": None,
    "act_embed": None,
}

LogicalAxes = Sequence[str | None]


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh over `devices` (default: all); one size may be -1."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    for name, size in sizes.items():
        if not isinstance(size, int) or (size <= 0 and size != -1):
            raise ValueError(f"mesh axis {name}={size!r}: expected a positive int or -1")
    auto = [name for name, size in sizes.items() if size == -1]
    if len(auto) > 1:
        raise ValueError(f"mesh axes {auto} are all -1: at most one axis may fill the rest")
    known = math.prod(size for size in sizes.values() if size != -1)
    if auto:
        if len(devices) % known:
            raise ValueError(f"mesh axis {auto[0]}=-1 cannot fill the rest: {len(devices)} "
                             f"devices do not divide by the other axes' product {known} ({sizes})")
        sizes[auto[0]] = len(devices) // known
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(f"mesh sizes data={sizes['data']} x fsdp={sizes['fsdp']} x "
                         f"tensor={sizes['tensor']} = {math.prod(sizes.values())} do not match "
                         f"the {len(devices)} devices")
    device_grid = np.asarray(devices, dtype=object).reshape(tuple(sizes.values()))
    return Mesh(device_grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(names: LogicalAxes, shape: Sequence[int] | None = None,
                    mesh_shape: dict[str, int] | None = None, *, strict: bool = True
                    ) -> PartitionSpec:
    """PartitionSpec of an array whose dimensions carry `names`.

    With `shape` and `mesh_shape`, a dimension that does not divide by its mesh axes raises
    (strict) or stays unsharded (not strict: activations such as a decode batch of 1).
    """
    if shape is not None and len(names) != len(shape):
        raise ValueError(f"logical axes {tuple(names)} do not match the rank of shape "
                         f"{tuple(shape)}")
    spec = []
    for dim, name in enumerate(names):
        if name is None:
            spec.append(None)
            continue
        if name not in LOGICAL_AXIS_RULES:
            raise ValueError(f"logical axis {name!r} has no rule: expected one of "
                             f"{sorted(LOGICAL_AXIS_RULES)}")
        axes = LOGICAL_AXIS_RULES[name]
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        if mesh_shape is not None:
            axes = tuple(a for a in axes if a in mesh_shape)
            if shape is not None:
                size = math.prod(mesh_shape[a] for a in axes)
                if shape[dim] % size:
                    if strict:
                        raise ValueError(f"dimension {dim} ({name!r}) of shape {tuple(shape)} "
                                         f"is not divisible by mesh axes {axes} of size {size}")
                    axes = ()
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def logical_sharding(names: LogicalAxes, mesh: Mesh, shape: Sequence[int] | None = None
                     ) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, shape, dict(mesh.shape)))


def constrain(x: jax.Array, names: LogicalAxes) -> jax.Array:
    """Pins the sharding of an activation when a mesh is active (`jax.set_mesh`), else no-op."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_spec(names, x.shape, dict(mesh.shape), strict=False)
    return jax.lax.with_sharding_constraint(x, spec)


def active_shard_count(name: str, size: int) -> int:
    """Into how many shards the active mesh (`jax.set_mesh`) splits a dimension of logical axis
    `name` and length `size`: 1 without a mesh, or when the dimension stays whole there."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    entry = logical_to_spec((name,), (size,), dict(mesh.shape), strict=False)[0]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else entry
    return math.prod(mesh.shape[a] for a in axes)


def batch_shards(mesh: Mesh) -> int:
    """Into how many shards `mesh` splits a batch (the mesh axes of the "batch" rule)."""
    return math.prod(mesh.shape[a] for a in LOGICAL_AXIS_RULES["batch"] if a in mesh.shape)


def _variable_axes(path, variable: nnx.Variable) -> tuple:
    axes = variable.get_metadata().get("logical_axes")
    if axes is None:
        raise ValueError(f"parameter {jax.tree_util.keystr(path)} has no logical_axes metadata")
    return axes


def state_shardings(state: nnx.State, mesh: Mesh) -> Any:
    """The NamedSharding of every Variable of an NNX state (concrete or abstract), same tree."""
    mesh_shape = dict(mesh.shape)

    def sharding(path, variable):
        names = _variable_axes(path, variable)
        try:
            spec = logical_to_spec(names, variable.shape, mesh_shape)
        except ValueError as e:
            raise ValueError(f"parameter {jax.tree_util.keystr(path)}: {e}") from None
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(
        sharding, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh) -> nnx.Module:
    """Moves every parameter of `model` onto its sharding over `mesh`, in place; returns it."""
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, state_shardings(state, mesh)))
    return model


def validate_model_mesh(config: NemotronHConfig, mesh: Mesh) -> None:
    """Rejects a mesh whose tensor or fsdp size does not divide the model dimensions it splits."""
    missing = [a for a in MESH_AXES if a not in mesh.shape]
    if missing:
        raise ValueError(f"mesh axes {tuple(mesh.shape)} lack {missing}: expected {MESH_AXES}")
    tensor, fsdp = mesh.shape["tensor"], mesh.shape["fsdp"]
    layer_types = set(config.layer_types)
    split_by_tensor = {"vocab_size": config.vocab_size}
    if "attention" in layer_types:
        split_by_tensor["num_attention_heads"] = config.num_attention_heads
        split_by_tensor["num_key_value_heads"] = config.num_key_value_heads
    if "mamba" in layer_types:
        split_by_tensor["mamba_num_heads"] = config.mamba_num_heads
        split_by_tensor["n_groups"] = config.n_groups
    if "mlp" in layer_types:
        split_by_tensor["intermediate_size"] = config.intermediate_size
    bad = [f"{name}={size}" for name, size in split_by_tensor.items() if size % tensor]
    if config.hidden_size % fsdp:
        bad.append(f"hidden_size={config.hidden_size} (fsdp={fsdp})")
    if bad:
        raise ValueError(f"mesh tensor={tensor}, fsdp={fsdp} does not divide: {', '.join(bad)}")
