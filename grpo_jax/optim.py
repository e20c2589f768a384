"""The optimiser: `clip_by_global_norm` → AdamW with a weight-decay mask and an LR schedule.

Megatron (NeMo RL's trainer) clips the raw gradient before Adam, so the clip comes first in the
chain. The schedule is stepped once per optimiser update, i.e. once per GRPO step; optax's step
counter starts at 0, so `lr_schedule(...)(0)` is the rate of the first update.

Schedules (`schedule=`):
  'cosine'   (grpo_jax design): linear warmup from `warmup_init_lr` to `lr` over `warmup_steps`,
             then cosine from `lr` to `min_lr` at `max_num_steps`, then `min_lr` forever.
  'constant' (the NeMo recipe, `lr_decay_style: constant`): the same warmup, then `lr` forever.
             `NEMO_RECIPE` is the recipe's setting: 13 warmup steps from 5e-7 to 5e-6.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp
import optax

PyTree = Any
ScheduleKind = Literal["cosine", "constant"]

# Parameters never decayed (by path component): Mamba's A_log (log decay rate), D (skip gain)
# and dt_bias are not weights in the matrix sense; decaying them pulls the SSM toward A = −1,
# no skip and softplus(0) step sizes.
NO_DECAY_NAMES = frozenset({"A_log", "D", "dt_bias"})
# Any component containing this is a normalisation layer (norm, norm_f, input_layernorm, …).
NORM_PATTERN = re.compile("norm", re.IGNORECASE)
# Biases: 'bias' itself or '*_bias' (conv1d bias, conv_bias, …).
BIAS_PATTERN = re.compile(r"(^|_)bias$")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser hyper-parameters; defaults are the grpo_jax design (reference §1).

    lr: peak learning rate; min_lr: the cosine floor; warmup_steps: linear warmup length (0 = none);
    warmup_init_lr: the rate at step 0 of the warmup; max_num_steps: the step at which the cosine
    reaches min_lr; adam_beta1/adam_beta2/adam_eps: Adam moments; weight_decay: decoupled AdamW
    decay (applied where `weight_decay_mask` says so); clip_grad: global-norm clip (None or 0 = off);
    schedule: 'cosine' or 'constant'.
    """

    lr: float = 5e-6
    min_lr: float = 5e-7
    warmup_steps: int = 0
    warmup_init_lr: float = 0.0
    max_num_steps: int = 10
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.01
    clip_grad: float | None = 1.0
    schedule: ScheduleKind = "cosine"


# The NeMo RL recipe yaml: constant LR after 13 warmup iterations from 5e-7 (reference §1).
NEMO_RECIPE = OptimizerConfig(
    lr=5e-6, min_lr=5e-7, warmup_steps=13, warmup_init_lr=5e-7, schedule="constant"
)


def lr_schedule(
    *,
    lr: float,
    max_num_steps: int,
    min_lr: float = 0.0,
    warmup_steps: int = 0,
    warmup_init_lr: float = 0.0,
    schedule: ScheduleKind = "cosine",
) -> optax.Schedule:
    """Returns step ↦ learning rate (jittable; step = number of updates already applied).

      warmup (s < W):      warmup_init_lr + (lr − warmup_init_lr)·s/W
      'cosine' (W ≤ s):    min_lr + (lr − min_lr)·½(1 + cos(π·min(s − W, S − W)/(S − W)))
                           with S = max_num_steps; = lr at s = W, = min_lr for s ≥ S; never
                           below min_lr after the warmup (floored against rounding).
      'constant' (W ≤ s):  lr
    """
    _validate_schedule(lr, max_num_steps, min_lr, warmup_steps, warmup_init_lr, schedule)
    decay_steps = max(max_num_steps - warmup_steps, 1)

    def rate(step: jax.Array | int) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warm = warmup_init_lr + (lr - warmup_init_lr) * step / max(warmup_steps, 1)
        if schedule == "constant":
            after = jnp.full_like(step, lr)
        else:
            progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
            cosine = min_lr + (lr - min_lr) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
            after = jnp.maximum(cosine, min_lr)
        return jnp.where(step < warmup_steps, warm, after)

    return rate


def _validate_schedule(lr, max_num_steps, min_lr, warmup_steps, warmup_init_lr, schedule) -> None:
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if not lr > 0.0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0.0 <= min_lr <= lr:
        raise ValueError(f"min_lr must be in [0, lr={lr}], got {min_lr}")
    if warmup_init_lr < 0.0:
        raise ValueError(f"warmup_init_lr must be ≥ 0, got {warmup_init_lr}")
    if warmup_steps < 0 or max_num_steps < 1:
        raise ValueError(
            f"need warmup_steps ≥ 0 and max_num_steps ≥ 1, got {warmup_steps}, {max_num_steps}"
        )
    if schedule == "cosine" and warmup_steps > max_num_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} exceeds max_num_steps={max_num_steps}: no room to decay"
        )


def path_names(path: tuple[Any, ...]) -> list[str]:
    """Key path → component names: DictKey/GetAttrKey/SequenceKey/FlattenedIndexKey → str."""
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
        else:
            names.append(str(key))
    return names


def is_decayed(path: tuple[Any, ...]) -> bool:
    """Whether the parameter at `path` (a jax key path) gets weight decay.

    Not decayed: any component containing 'norm' (case-insensitive: norm weights/scales, norm_f,
    layernorms); a component in NO_DECAY_NAMES (A_log, D, dt_bias; matched exactly, so 'Dense' is
    not 'D'); a component 'bias' or ending in '_bias'. Everything else (projection kernels,
    conv weights, embeddings, lm_head) is decayed. NNX states end paths in a 'value' attribute,
    which never matches, so the same rules work on NNX State pytrees and plain nested dicts.
    """
    names = path_names(path)
    return not any(
        NORM_PATTERN.search(name) or name in NO_DECAY_NAMES or BIAS_PATTERN.search(name)
        for name in names
    )


def weight_decay_mask(params: PyTree) -> PyTree:
    """Pytree of bools with the structure of `params`: True where AdamW decays (see `is_decayed`)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_decayed(path), params)


def _config_fields(config: Any) -> dict[str, Any]:
    """An OptimizerConfig, dataclass, Mapping or ml_collections ConfigDict → field dict."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise ValueError(f"config must be a dataclass, Mapping or ConfigDict, got {type(config).__name__}")


def resolve_config(config: Any = None, **overrides: Any) -> OptimizerConfig:
    """Builds an OptimizerConfig from `config` (any supported form) and keyword overrides.

    Unknown keys raise ValueError naming them, so a typo never silently falls back to a default.
    """
    fields = _config_fields(config)
    fields.update(overrides)
    known = {f.name for f in dataclasses.fields(OptimizerConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown optimizer config keys {unknown}; known keys: {sorted(known)}")
    return OptimizerConfig(**fields)


def schedule_from_config(config: Any = None, **overrides: Any) -> optax.Schedule:
    """`lr_schedule` for a config (for logging `train/lr` with the same numbers as the optimiser)."""
    cfg = resolve_config(config, **overrides)
    return lr_schedule(
        lr=cfg.lr,
        max_num_steps=cfg.max_num_steps,
        min_lr=cfg.min_lr,
        warmup_steps=cfg.warmup_steps,
        warmup_init_lr=cfg.warmup_init_lr,
        schedule=cfg.schedule,
    )


def make_optimizer(
    config: Any = None,
    *,
    decay_mask: Callable[[PyTree], PyTree] | PyTree | None = weight_decay_mask,
    **overrides: Any,
) -> optax.GradientTransformation:
    """optax.chain(clip_by_global_norm(clip_grad), adamw(schedule, β1, β2, eps, weight_decay, mask)).

    Args:
      config: OptimizerConfig / dataclass / Mapping / ConfigDict with OptimizerConfig's field
        names (None = defaults); keyword `overrides` replace single fields, e.g.
        `make_optimizer(lr=1e-5, max_num_steps=100)`.
      decay_mask: pytree of bools or a params → mask callable (default `weight_decay_mask`);
        None decays every parameter.

    One update with gradient g, step s, parameters p (optax AdamW, Adam bias correction):
      g ← g·min(1, clip_grad/‖g‖₂);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
      p ← p − lr(s)·( m/(1−β1^(s+1)) / (sqrt(v/(1−β2^(s+1))) + eps) + weight_decay·mask·p )
    """
    cfg = resolve_config(config, **overrides)
    if cfg.clip_grad is not None and cfg.clip_grad < 0:
        raise ValueError(f"clip_grad must be ≥ 0 or None, got {cfg.clip_grad}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {cfg.weight_decay}")
    adamw = optax.adamw(
        learning_rate=schedule_from_config(cfg),
        b1=cfg.adam_beta1,
        b2=cfg.adam_beta2,
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
        mask=decay_mask,
    )
    # identity() keeps the state structure (EmptyState first) the same with the clip on or off.
    clip = optax.clip_by_global_norm(cfg.clip_grad) if cfg.clip_grad else optax.identity()
    return optax.chain(clip, adamw)
