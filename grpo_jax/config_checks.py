"""Validation of a resolved training config, before anything is loaded or compiled.

Every problem is a `ConfigError` (a ValueError) whose message names the setting, its value and
what was expected. `validate_config` needs only the config and the device count; the checks that
need the model's shapes or a rendered prompt run as soon as those exist, still before compiling.
"""
from __future__ import annotations

import math
import pathlib

import jax

from grpo_jax import sharding
from grpo_jax.envs.workplace.prompts import PROMPT_VARIANTS
from grpo_jax.envs.workplace.schemas import SCHEMA_STYLES
from grpo_jax.models.config import ATTENTION_IMPLEMENTATIONS
from grpo_jax.sampling import SSM_DECODE_UPDATES

DTYPES = ("float32", "bfloat16", "float16")
MODES = ("grpo", "sft")
OLD_LOGPROB_SOURCES = ("recompute", "sampler")
KL_TYPES = ("k1", "k2", "k3")
SCHEDULES = ("cosine", "constant")
SANDBOXES = ("generated", "csv")
REMATS = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
TIME_STEP_CLAMPS = ("prefill", "always", "never")


class ConfigError(ValueError):
    """An invalid setting; the message names it."""


def _fail(setting: str, value, expected: str):
    raise ConfigError(f"config.{setting}={value!r} is invalid: expected {expected}")


def _positive_int(config, setting: str):
    value = _get(config, setting)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(setting, value, "a positive integer")
    return value


def _non_negative(config, setting: str):
    value = _get(config, setting)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        _fail(setting, value, "a finite number >= 0")
    return value


def _choice(config, setting: str, choices):
    value = _get(config, setting)
    if value not in choices:
        _fail(setting, value, f"one of {tuple(choices)}")
    return value


def _get(config, setting: str):
    node = config
    for part in setting.split("."):
        if part not in node:
            raise ConfigError(f"config.{setting} is missing")
        node = node[part]
    return node


def mesh_sizes(config, device_count: int) -> dict[str, int]:
    """The data / fsdp / tensor sizes the config asks for, with -1 resolved (or a ConfigError).

    Without a -1 the mesh may use fewer devices than there are (the first ones), e.g. a one-device
    run on a larger machine."""
    m = config.model
    sizes = {"data": m.data_parallel_size, "fsdp": m.fsdp_parallel_size, "tensor": m.tensor_model_parallel_size}
    names = {"data": "model.data_parallel_size", "fsdp": "model.fsdp_parallel_size",
             "tensor": "model.tensor_model_parallel_size"}
    for axis, size in sizes.items():
        if not isinstance(size, int) or (size < 1 and size != -1):
            _fail(names[axis], size, "a positive integer or -1 (fill the remaining devices)")
    free = [axis for axis, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ConfigError(f"only one mesh axis may be -1, got {[names[a] for a in free]}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    listed = ", ".join(f"{names[a]}={s}" for a, s in sizes.items() if s != -1)
    if free:
        if device_count % fixed:
            raise ConfigError(f"mesh sizes {listed} multiply to {fixed}, which does not divide the "
                              f"{device_count} available devices, so {names[free[0]]}=-1 cannot fill them")
        sizes[free[0]] = device_count // fixed
    elif fixed > device_count:
        raise ConfigError(f"mesh sizes {listed} need {fixed} devices but only {device_count} are available")
    return sizes


def _no_unset_values(config, prefix: str = "") -> None:
    """No setting of the configs is None by default; None (e.g. `--config.optimizer.lr=None`, which
    ml_collections accepts for any field) would otherwise fail later as a TypeError."""
    for key, value in config.items():
        if value is None:
            raise ConfigError(f"config.{prefix}{key}=None is invalid: expected a value of the setting's type")
        if hasattr(value, "items"):
            _no_unset_values(value, f"{prefix}{key}.")


def validate_config(config, device_count: int | None = None) -> None:
    """Static checks of every section (see module doc)."""
    _no_unset_values(config)
    _choice(config, "mode", MODES)
    m = config.model
    path = pathlib.Path(m.path)
    if not (path / "config.json").is_file():
        _fail("model.path", m.path, "a local Hugging Face model directory holding config.json "
                                    "(models are never downloaded)")
    if m.tokenizer_path and not pathlib.Path(m.tokenizer_path).is_dir():
        _fail("model.tokenizer_path", m.tokenizer_path, "an existing directory or ''")
    _choice(config, "model.precision", DTYPES)
    _choice(config, "model.param_dtype", DTYPES)
    _choice(config, "model.ssd_matmul_dtype", DTYPES)
    _choice(config, "model.remat", REMATS)
    _choice(config, "model.time_step_clamp", TIME_STEP_CLAMPS)
    _positive_int(config, "model.max_total_sequence_length")
    _positive_int(config, "model.attention_query_chunk")
    _choice(config, "model.attention_implementation", ATTENTION_IMPLEMENTATIONS)
    if m.attention_implementation == "cudnn":
        if m.precision not in ("bfloat16", "float16"):
            _fail("model.attention_implementation", m.attention_implementation,
                  f"'xla' with model.precision={m.precision!r} (cuDNN's flash attention runs in "
                  f"bfloat16 or float16 only)")
        if jax.default_backend() != "gpu":
            _fail("model.attention_implementation", m.attention_implementation,
                  f"'xla' on this {jax.default_backend()!r} backend ('cudnn' needs a GPU)")
    sizes = mesh_sizes(config, jax.device_count() if device_count is None else device_count)

    g = config.grpo
    _positive_int(config, "grpo.num_prompts_per_step")
    _positive_int(config, "grpo.num_generations_per_prompt")
    _positive_int(config, "grpo.max_num_steps")
    if g.use_leave_one_out_baseline and g.num_generations_per_prompt < 2:
        _fail("grpo.num_generations_per_prompt", g.num_generations_per_prompt,
              ">= 2 with grpo.use_leave_one_out_baseline=True (the baseline averages the other generations)")
    _non_negative(config, "grpo.val_period")
    _positive_int(config, "grpo.dynamic_sampling_max_gen_batches")
    _choice(config, "grpo.old_logprobs", OLD_LOGPROB_SOURCES)

    loss = config.loss
    _non_negative(config, "loss.ratio_clip_min")
    _non_negative(config, "loss.ratio_clip_max")
    if loss.ratio_clip_min >= 1:
        _fail("loss.ratio_clip_min", loss.ratio_clip_min, "a value below 1 (the ratio is clipped at 1 - min)")
    c = _non_negative(config, "loss.ratio_clip_c")
    if c and c <= 1:
        _fail("loss.ratio_clip_c", c, "0 (dual clip off) or a value > 1")
    _non_negative(config, "loss.reference_policy_kl_penalty")
    _choice(config, "loss.reference_policy_kl_type", KL_TYPES)

    o = config.optimizer
    _choice(config, "optimizer.optimizer", ("adam", "adamw"))
    for name in ("lr", "min_lr", "weight_decay", "clip_grad", "adam_eps", "warmup_init_lr"):
        _non_negative(config, f"optimizer.{name}")
    if o.lr <= 0:
        _fail("optimizer.lr", o.lr, "a learning rate > 0")
    if o.min_lr > o.lr:
        raise ConfigError(f"config.optimizer.min_lr={o.min_lr!r} is above config.optimizer.lr={o.lr!r}: "
                          "the cosine decays from lr down to min_lr")
    for name in ("adam_beta1", "adam_beta2"):
        value = _get(config, f"optimizer.{name}")
        if not 0 <= value < 1:
            _fail(f"optimizer.{name}", value, "a value in [0, 1)")
    _choice(config, "optimizer.schedule", SCHEDULES)
    _non_negative(config, "optimizer.warmup_steps")
    if o.warmup_steps > g.max_num_steps:
        _fail("optimizer.warmup_steps", o.warmup_steps, f"at most grpo.max_num_steps={g.max_num_steps}")

    batch = g.num_prompts_per_step * (1 if config.mode == "sft" else g.num_generations_per_prompt)
    for name in ("micro_batch_size", "logprob_batch_size"):
        size = _positive_int(config, f"train.{name}")
        if batch % size:
            _fail(f"train.{name}", size, f"a divisor of the {batch} trajectories per step "
                                         "(grpo.num_prompts_per_step x grpo.num_generations_per_prompt)")
        data_ways = sizes["data"] * sizes["fsdp"]
        if size % data_ways:
            _fail(f"train.{name}", size, f"a multiple of the {data_ways} data-parallel ways (data x fsdp)")
    _positive_int(config, "train.length_bucket")
    _positive_int(config, "train.position_bucket")
    _positive_int(config, "train.logprob_chunk")

    gen = config.generation
    _non_negative(config, "generation.temperature")
    if not 0 < gen.top_p <= 1:
        _fail("generation.top_p", gen.top_p, "a value in (0, 1]")
    _non_negative(config, "generation.top_k")
    for name in ("max_new_tokens_per_turn", "decode_chunk", "decode_chunks_per_call",
                 "prefill_chunk", "min_block_bucket", "cache_multiple", "min_attend_bucket"):
        _positive_int(config, f"generation.{name}")
    _choice(config, "generation.ssm_decode_update", SSM_DECODE_UPDATES)

    env = config.env
    _choice(config, "env.name", ("workplace", "workplace_assistant"))
    _positive_int(config, "env.max_steps")
    _choice(config, "env.sandbox", SANDBOXES)
    _choice(config, "env.tool_schema", SCHEMA_STYLES)
    _choice(config, "env.system_prompt", PROMPT_VARIANTS)
    if env.sandbox == "csv" and not pathlib.Path(env.csv_dir).is_dir():
        _fail("env.csv_dir", env.csv_dir, "an existing directory of sandbox CSVs (with env.sandbox='csv')")
    _positive_int(config, "env.train_sandboxes")
    _positive_int(config, "env.task_block_size")
    _check_names(config, "env.families", _known_families())
    _check_names(config, "env.tool_names", _known_tools())

    _positive_int(config, "validation.num_tasks")
    _positive_int(config, "validation.batch_size")
    _positive_int(config, "validation.sandboxes")
    if env.sandbox == "csv" and config.validation.sandboxes != 1:
        _fail("validation.sandboxes", config.validation.sandboxes,
              "1 with env.sandbox='csv' (there is one CSV sandbox)")
    _non_negative(config, "validation.temperature")
    _positive_int(config, "checkpoint.save_period")
    _positive_int(config, "checkpoint.max_to_keep")
    _non_negative(config, "checkpoint.keep_best")
    validate_distributed(config)


def validate_distributed(config) -> None:
    """What the launcher reads before JAX starts: the `distributed` section, checked before
    joining the coordinator (a wrong process id or count would otherwise wait there, or fail deep
    inside JAX), `model.cpu_devices` and the `compilation` section."""
    cpu_devices = _get(config, "model.cpu_devices")
    if not isinstance(cpu_devices, int) or isinstance(cpu_devices, bool) or (cpu_devices < 1 and cpu_devices != -1):
        _fail("model.cpu_devices", cpu_devices, "a positive integer, or -1 (one per core, a power of two, at most 8)")
    _get(config, "compilation.cache_dir")  # a str (ml_collections keeps the type); "" is off
    _non_negative(config, "compilation.min_compile_seconds")
    _non_negative(config, "compilation.max_gigabytes")
    if not config.distributed.enabled:
        return
    if not config.distributed.coordinator_address:
        _fail("distributed.coordinator_address", config.distributed.coordinator_address,
              "host:port of process 0 when distributed.enabled")
    processes = _positive_int(config, "distributed.num_processes")
    process_id = _get(config, "distributed.process_id")
    if not isinstance(process_id, int) or isinstance(process_id, bool) or not 0 <= process_id < processes:
        _fail("distributed.process_id", process_id,
              f"an integer in [0, distributed.num_processes={processes}), distinct on every process")


def _known_families() -> set[str]:
    from grpo_jax.envs.workplace import FAMILIES_BY_ID
    return set(FAMILIES_BY_ID)


def _known_tools() -> set[str]:
    from grpo_jax.envs.workplace import TOOL_NAMES
    return set(TOOL_NAMES)


def _check_names(config, setting: str, known: set[str]) -> None:
    names = [n.strip() for n in str(_get(config, setting)).split(",") if n.strip()]
    unknown = sorted(set(names) - known)
    if unknown:
        _fail(setting, _get(config, setting), f"comma-separated names from {sorted(known)}; unknown: {unknown}")


def validate_model_mesh(model_config, mesh, config) -> None:
    """The model's head / group / width sizes against the mesh (tensor and fsdp ways)."""
    try:
        sharding.validate_model_mesh(model_config, mesh)
    except ValueError as error:
        raise ConfigError(f"config.model.tensor_model_parallel_size / fsdp_parallel_size: {error}") from None


def validate_validation_set(available_tasks: int, config) -> None:
    """The family mix must hold the validation set asked for on the validation sandboxes."""
    if available_tasks < config.validation.num_tasks:
        sandboxes = config.validation.sandboxes
        where = ("the validation sandbox (more: config.validation.sandboxes)" if sandboxes == 1
                 else f"config.validation.sandboxes={sandboxes} sandboxes")
        _fail("validation.num_tasks", config.validation.num_tasks,
              f"at most {available_tasks}, the distinct validation tasks that "
              f"config.env.families={config.env.families!r} give on {where}")


def validate_prompt_budget(prompt_tokens: int, config) -> None:
    """The sequence budget must leave room to generate after the longest prompt."""
    budget = config.model.max_total_sequence_length
    if prompt_tokens >= budget:
        raise ConfigError(
            f"config.model.max_total_sequence_length={budget} is not longer than the prompt "
            f"({prompt_tokens} tokens with the system prompt and tool schemas): raise it or shorten the "
            "prompt (env.tool_names, env.tool_schema, env.system_prompt)")
