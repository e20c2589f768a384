"""Invalid settings are rejected before anything is compiled (or any weight read), by a
`ConfigError` that names the setting and what was expected.

Table-driven over every check in grpo_jax/config_checks.py; the checks that need the model's
shapes (heads against the mesh) or a rendered prompt (the sequence budget) run in
`Trainer.__init__`, and are shown to run there before the model is loaded. The tiny-test model
has 4 query heads, 2 kv heads, 8 Mamba heads and 2 groups; the process has 8 CPU devices. The
launcher's own handling (unknown keys, unknown presets, exit status) is in tests/test_trainer.py.
"""
from __future__ import annotations

import jax
import pytest

from configs import workplace
from grpo_jax import compile_log, config_checks, trainer
from grpo_jax.config_checks import ConfigError

DELETE = object()

# (overrides, fragment the message must hold). Overrides are "section.key": value (DELETE removes).
INVALID = [
    ({"mode": "rl"}, "config.mode='rl'"),
    ({"model.path": "/nonexistent/model"}, "config.model.path='/nonexistent/model'"),
    ({"model.tokenizer_path": "/nonexistent/tok"}, "config.model.tokenizer_path='/nonexistent/tok'"),
    ({"model.precision": "fp8"}, "config.model.precision='fp8'"),
    ({"model.param_dtype": "int8"}, "config.model.param_dtype='int8'"),
    ({"model.ssd_matmul_dtype": "fp8"}, "config.model.ssd_matmul_dtype='fp8'"),
    ({"model.remat": "some"}, "config.model.remat='some'"),
    ({"model.time_step_clamp": "sometimes"}, "config.model.time_step_clamp='sometimes'"),
    ({"model.max_total_sequence_length": 0}, "config.model.max_total_sequence_length=0"),
    ({"model.attention_query_chunk": -1}, "config.model.attention_query_chunk=-1"),
    ({"model.attention_implementation": "flash"}, "config.model.attention_implementation='flash'"),
    ({"model.attention_implementation": "cudnn", "model.precision": "float32"},
     "config.model.attention_implementation='cudnn' is invalid: expected 'xla' with "
     "model.precision='float32'"),
    # mesh axes that do not fit the 8 devices
    ({"model.data_parallel_size": 0}, "config.model.data_parallel_size=0"),
    ({"model.data_parallel_size": -1, "model.tensor_model_parallel_size": 3},
     "model.tensor_model_parallel_size=3 multiply to 3, which does not divide the 8 available devices"),
    ({"model.tensor_model_parallel_size": 16}, "need 16 devices but only 8 are available"),
    ({"model.data_parallel_size": -1, "model.fsdp_parallel_size": -1}, "only one mesh axis may be -1"),
    ({"grpo.num_prompts_per_step": 0}, "config.grpo.num_prompts_per_step=0"),
    ({"grpo.num_generations_per_prompt": 1},
     "config.grpo.num_generations_per_prompt=1 is invalid: expected >= 2 with grpo.use_leave_one_out_baseline"),
    ({"grpo.max_num_steps": 0}, "config.grpo.max_num_steps=0"),
    ({"grpo.val_period": -1}, "config.grpo.val_period=-1"),
    ({"grpo.dynamic_sampling_max_gen_batches": 0}, "config.grpo.dynamic_sampling_max_gen_batches=0"),
    ({"grpo.old_logprobs": "cached"}, "config.grpo.old_logprobs='cached'"),
    ({"loss.ratio_clip_min": -0.1}, "config.loss.ratio_clip_min=-0.1"),
    ({"loss.ratio_clip_min": 1.0}, "config.loss.ratio_clip_min=1.0 is invalid: expected a value below 1"),
    ({"loss.ratio_clip_max": -1.0}, "config.loss.ratio_clip_max=-1.0"),
    ({"loss.ratio_clip_c": 0.5}, "config.loss.ratio_clip_c=0.5 is invalid: expected 0 (dual clip off) or a value > 1"),
    ({"loss.reference_policy_kl_penalty": -1.0}, "config.loss.reference_policy_kl_penalty=-1.0"),
    ({"loss.reference_policy_kl_type": "k4"}, "config.loss.reference_policy_kl_type='k4'"),
    ({"optimizer.optimizer": "sgd"}, "config.optimizer.optimizer='sgd'"),
    ({"optimizer.lr": 0.0}, "config.optimizer.lr=0.0 is invalid: expected a learning rate > 0"),
    ({"optimizer.lr": float("inf")}, "config.optimizer.lr=inf is invalid: expected a finite number"),
    ({"optimizer.lr": 1.0e-4, "optimizer.min_lr": 1.0}, "config.optimizer.min_lr=1.0 is above config.optimizer.lr=0.0001"),
    ({"optimizer.weight_decay": -0.1}, "config.optimizer.weight_decay=-0.1"),
    ({"optimizer.clip_grad": -1.0}, "config.optimizer.clip_grad=-1.0"),
    ({"optimizer.adam_eps": -1e-8}, "config.optimizer.adam_eps=-1e-08"),
    ({"optimizer.warmup_init_lr": -1.0}, "config.optimizer.warmup_init_lr=-1.0"),
    ({"optimizer.adam_beta1": 1.0}, "config.optimizer.adam_beta1=1.0 is invalid: expected a value in [0, 1)"),
    ({"optimizer.adam_beta2": -0.1}, "config.optimizer.adam_beta2=-0.1"),
    ({"optimizer.schedule": "linear"}, "config.optimizer.schedule='linear'"),
    ({"optimizer.warmup_steps": -1}, "config.optimizer.warmup_steps=-1"),
    ({"optimizer.warmup_steps": 100},
     "config.optimizer.warmup_steps=100 is invalid: expected at most grpo.max_num_steps=3"),
    ({"train.micro_batch_size": 3},
     "config.train.micro_batch_size=3 is invalid: expected a divisor of the 4 trajectories"),
    ({"train.micro_batch_size": 0}, "config.train.micro_batch_size=0"),
    ({"train.logprob_batch_size": 3}, "config.train.logprob_batch_size=3"),
    ({"model.data_parallel_size": -1},  # 8 data-parallel ways, micro-batches of 2
     "config.train.micro_batch_size=2 is invalid: expected a multiple of the 8 data-parallel ways"),
    ({"model.cpu_devices": 0}, "config.model.cpu_devices=0 is invalid: expected a positive integer, or -1"),
    ({"model.cpu_devices": -2}, "config.model.cpu_devices=-2"),
    ({"compilation.min_compile_seconds": -1.0}, "config.compilation.min_compile_seconds=-1.0"),
    ({"compilation.max_gigabytes": float("nan")}, "config.compilation.max_gigabytes=nan"),
    ({"train.length_bucket": 0}, "config.train.length_bucket=0"),
    ({"train.position_bucket": 0}, "config.train.position_bucket=0"),
    ({"train.logprob_chunk": 0}, "config.train.logprob_chunk=0"),
    ({"generation.temperature": -1.0}, "config.generation.temperature=-1.0"),
    ({"generation.top_p": 0.0}, "config.generation.top_p=0.0 is invalid: expected a value in (0, 1]"),
    ({"generation.top_p": 1.5}, "config.generation.top_p=1.5"),
    ({"generation.top_k": -1}, "config.generation.top_k=-1"),
    ({"generation.max_new_tokens_per_turn": 0}, "config.generation.max_new_tokens_per_turn=0"),
    ({"generation.decode_chunk": 0}, "config.generation.decode_chunk=0"),
    ({"generation.decode_chunks_per_call": 0}, "config.generation.decode_chunks_per_call=0"),
    ({"generation.prefill_chunk": 0}, "config.generation.prefill_chunk=0"),
    ({"generation.min_block_bucket": 0}, "config.generation.min_block_bucket=0"),
    ({"generation.cache_multiple": 0}, "config.generation.cache_multiple=0"),
    ({"generation.ssm_decode_update": "lazy"}, "config.generation.ssm_decode_update='lazy'"),
    ({"generation.min_attend_bucket": 0}, "config.generation.min_attend_bucket=0"),
    ({"env.name": "chess"}, "config.env.name='chess'"),
    ({"env.max_steps": 0}, "config.env.max_steps=0"),
    ({"env.sandbox": "cloud"}, "config.env.sandbox='cloud'"),
    ({"env.tool_schema": "huge"}, "config.env.tool_schema='huge'"),
    ({"env.system_prompt": "long"}, "config.env.system_prompt='long'"),
    ({"env.sandbox": "csv", "env.csv_dir": "/nonexistent/csv"}, "config.env.csv_dir='/nonexistent/csv'"),
    ({"env.train_sandboxes": 0}, "config.env.train_sandboxes=0"),
    ({"env.task_block_size": 0}, "config.env.task_block_size=0"),
    ({"env.families": "R1,Z9"}, "unknown: ['Z9']"),
    ({"env.tool_names": "email_send_email,email_explode"}, "unknown: ['email_explode']"),
    ({"validation.num_tasks": 0}, "config.validation.num_tasks=0"),
    ({"validation.batch_size": 0}, "config.validation.batch_size=0"),
    ({"validation.temperature": -1.0}, "config.validation.temperature=-1.0"),
    ({"validation.sandboxes": 0}, "config.validation.sandboxes=0"),
    ({"env.sandbox": "csv", "env.csv_dir": "/", "validation.sandboxes": 2},
     "config.validation.sandboxes=2"),
    ({"checkpoint.save_period": 0}, "config.checkpoint.save_period=0"),
    ({"checkpoint.max_to_keep": 0}, "config.checkpoint.max_to_keep=0"),
    ({"checkpoint.keep_best": -1}, "config.checkpoint.keep_best=-1"),
    ({"distributed.enabled": True}, "config.distributed.coordinator_address=''"),
    ({"distributed.enabled": True, "distributed.coordinator_address": "localhost:1234",
      "distributed.num_processes": 0}, "config.distributed.num_processes=0"),
    ({"distributed.enabled": True, "distributed.coordinator_address": "localhost:1234",
      "distributed.num_processes": 2, "distributed.process_id": 2},
     "config.distributed.process_id=2 is invalid: expected an integer in [0, distributed.num_processes=2)"),
    ({"train.length_bucket": DELETE}, "config.train.length_bucket is missing"),
    ({"optimizer.adam_beta1": None}, "config.optimizer.adam_beta1=None is invalid"),
]


def _apply(config, overrides):
    for key, value in overrides.items():
        section, name = key.rsplit(".", 1) if "." in key else ("", key)
        node = config[section] if section else config
        if value is DELETE:
            del node[name]
        else:
            node[name] = value
    return config


@pytest.mark.parametrize("overrides, fragment", INVALID, ids=[" ".join(o) for o, _ in INVALID])
def test_invalid_setting_is_rejected_by_name_before_compiling(small_run_config, overrides, fragment):
    config = _apply(small_run_config, overrides)
    before = compile_log.compile_count()
    with pytest.raises(ConfigError) as error:
        config_checks.validate_config(config, device_count=8)
    assert fragment in str(error.value)
    assert compile_log.compile_count() == before


def test_cudnn_attention_is_rejected_by_name_on_a_backend_without_cudnn(small_run_config):
    if jax.default_backend() == "gpu":
        pytest.skip("this backend is a GPU: 'cudnn' is valid here")
    config = _apply(small_run_config, {"model.attention_implementation": "cudnn",
                                       "model.precision": "bfloat16"})
    with pytest.raises(ConfigError, match=r"attention_implementation='cudnn' is invalid: expected "
                                          r"'xla' on this 'cpu' backend \('cudnn' needs a GPU\)"):
        config_checks.validate_config(config, device_count=8)


def test_the_tables_base_config_is_valid(small_run_config):
    # Otherwise every row above could pass for the wrong reason.
    config_checks.validate_config(small_run_config, device_count=8)
    # One generation per prompt is fine without the leave-one-out baseline.
    config_checks.validate_config(_apply(small_run_config, {"grpo.num_generations_per_prompt": 1,
                                                            "grpo.use_leave_one_out_baseline": False,
                                                            "train.logprob_batch_size": 2}), 8)


def test_every_setting_set_to_none_is_rejected_by_name(small_run_config):
    # ml_collections lets any field be set to None (e.g. --config.optimizer.lr=None); without a
    # check, many would surface later as a TypeError from deep inside the trainer.
    leaves = []

    def walk(node, prefix):
        for key, value in node.items():
            (walk(value, f"{prefix}{key}.") if hasattr(value, "items") else leaves.append(f"{prefix}{key}"))
    walk(small_run_config, "")
    assert len(leaves) > 80  # every section walked
    for leaf in leaves:
        config = _apply(small_run_config.copy_and_resolve_references(), {leaf: None})
        with pytest.raises(ConfigError, match=f"config.{leaf}=None is invalid"):
            config_checks.validate_config(config, device_count=8)


def test_unknown_preset_and_unknown_key_name_the_culprit():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*expected one of \('default', 'recipe'"):
        workplace.get_config("huge")
    config = workplace.get_config("tiny")
    config.lock()  # as the launcher's config flag does
    with pytest.raises(AttributeError,
                       match=r'"num_prompt_per_step" does not exist.*Did you mean "num_prompts_per_step"'):
        config.grpo.num_prompt_per_step = 8


# --- the checks that need the model's shapes or a prompt, in Trainer.__init__ ----------------------

TRAINER_INVALID = [
    ({"model.data_parallel_size": -1, "model.tensor_model_parallel_size": 4},
     "config.model.tensor_model_parallel_size / fsdp_parallel_size: mesh tensor=4, fsdp=1 does not divide: "
     "num_key_value_heads=2, n_groups=2"),
    ({"model.tensor_model_parallel_size": 8},
     "mesh tensor=8, fsdp=1 does not divide: num_attention_heads=4, num_key_value_heads=2, n_groups=2"),
    ({"model.max_total_sequence_length": 64},
     "config.model.max_total_sequence_length=64 is not longer than the prompt"),
    ({"env.families": "R1", "validation.num_tasks": 10_000},
     "config.validation.num_tasks=10000 is invalid: expected at most"),
]


@pytest.mark.parametrize("overrides, fragment", TRAINER_INVALID,
                         ids=["kv_heads", "q_heads", "prompt_budget", "validation_tasks"])
def test_model_shape_and_prompt_checks_run_before_the_model_is_loaded(small_run_config, overrides, fragment,
                                                                      tmp_path, monkeypatch):
    def load_hf_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the config was checked")

    monkeypatch.setattr(trainer, "load_hf_model", load_hf_model)
    config = _apply(small_run_config, overrides)
    config_checks.validate_config(config)  # what needs no model passes: these are the late checks
    before = compile_log.compile_count()
    with pytest.raises(ConfigError) as error:
        trainer.Trainer(config, tmp_path, quiet=True)
    assert fragment in str(error.value)
    assert compile_log.compile_count() == before
    assert not (tmp_path / "checkpoints").exists()
