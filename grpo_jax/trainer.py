"""The GRPO loop: tasks → rollouts → rewards → advantages → update, with validation and checkpoints.

    run(config, workdir)

Each step draws P tasks, plays G episodes of each with the sampler on the trainer's own parameters,
scores them in the environment, turns rewards into leave-one-out advantages, recomputes the "old"
log-probs and applies one optimizer update over micro-batches. Validation runs every `val_period`
steps on a fixed task set; Orbax checkpoints (parameters, optimizer state, step, data position,
RNG) are saved every `save_period` steps and the run resumes from the latest one in the work
directory; the final policy is exported as a Hugging Face directory.
"""
from __future__ import annotations

import contextlib
import logging
import pathlib
import shutil
import signal
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grpo_jax import chat, compile_log, config_checks, distributed, grpo, metrics as metrics_lib, optim, sft, sharding
from grpo_jax.checkpointing import Checkpointer, CheckpointState
from grpo_jax.data import StreamPosition, TaskStream, validation_tasks
from grpo_jax.distributed import host_array
from grpo_jax.envs import make_environment
from grpo_jax.models import NemotronHConfig, load_hf_model, save_hf_model
from grpo_jax.rollout import END_TRUNCATED, RolloutBatch, RolloutConfig, RolloutEngine
from grpo_jax.sampling import Sampler, SamplerConfig
from grpo_jax.train_step import Learner, LossConfig, TrainState, init_train_state, make_update_batch

logger = logging.getLogger(__name__)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class Preempted(Exception):
    """Raised after a SIGTERM once the state is checkpointed."""


class _StopFlag:
    """Turns SIGTERM into a flag the loop checks between steps (a checkpoint, then a clean exit)."""

    def __init__(self):
        self.raised = False

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, _frame):
            logger.warning("received signal %d: checkpointing after the current step", signum)
            self.raised = True
        try:
            previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: no handler, no flag
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


def _rollout_metrics(batch: RolloutBatch, prefix: str) -> dict[str, float]:
    trajectories = batch.trajectories
    rewards = np.array([t.reward for t in trajectories], np.float64)
    out = {
        f"{prefix}/reward_mean": rewards.mean(), f"{prefix}/reward_std": rewards.std(),
        f"{prefix}/turns_per_sample": np.mean([t.num_turns for t in trajectories]),
        f"{prefix}/tool_calls_per_sample": np.mean([t.num_tool_calls for t in trajectories]),
        f"{prefix}/parse_errors_per_sample": np.mean([t.num_parse_errors for t in trajectories]),
        f"{prefix}/tool_errors_per_sample": np.mean([t.num_tool_errors for t in trajectories]),
        f"{prefix}/truncation_rate": np.mean([t.end_reason == END_TRUNCATED for t in trajectories]),
        f"{prefix}/natural_termination_rate": np.mean([t.end_reason == "answer" for t in trajectories]),
        f"{prefix}/gen_tokens_per_sample": np.mean([t.num_generated_tokens for t in trajectories]),
        f"{prefix}/total_tokens_per_sample": np.mean([t.length for t in trajectories]),
        f"{prefix}/mean_prompt_length": np.mean([t.prompt_length for t in trajectories]),
    }
    return {k: float(v) for k, v in out.items()}


class Trainer:
    """Everything a GRPO (or SFT) run holds; `run()` is the loop."""

    def __init__(self, config, workdir: str | pathlib.Path, *, quiet: bool = False,
                 restore_step: int | None = None):
        config_checks.validate_config(config)
        self.config = config
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.quiet = quiet
        self.primary = jax.process_index() == 0
        compile_log.install()
        if self.primary:  # with several processes, only process 0 writes the run's files
            (self.workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

        m, g = config.model, config.grpo
        sizes = config_checks.mesh_sizes(config, jax.device_count())
        devices = jax.devices()[:sizes["data"] * sizes["fsdp"] * sizes["tensor"]]
        if len(devices) < jax.device_count():
            logger.warning("the mesh uses %d of the %d devices", len(devices), jax.device_count())
        self.mesh = sharding.make_mesh(**sizes, devices=devices)
        logger.info("mesh %s over %d %s devices", dict(self.mesh.shape), len(devices), devices[0].platform)
        compute_dtype = _DTYPES[m.precision]
        # Everything that can be checked without weights is checked before any weight is read or
        # any program compiled: the model's shapes against the mesh, the prompt against the budget.
        config_checks.validate_model_mesh(NemotronHConfig.from_hf_config(m.path), self.mesh, config)
        self.tokenizer_dir = pathlib.Path(m.tokenizer_path or m.path)
        self.tokenizer = chat.load_tokenizer(self.tokenizer_dir)
        self.env = make_environment(config.env)
        self.rollout = RolloutEngine(self.tokenizer, self.env, RolloutConfig(
            max_steps=config.env.max_steps, max_total_sequence_length=m.max_total_sequence_length,
            max_new_tokens_per_turn=config.generation.max_new_tokens_per_turn,
            temperature=config.generation.temperature, top_p=config.generation.top_p,
            top_k=config.generation.top_k, enable_thinking=config.generation.enable_thinking))
        self.val_tasks = validation_tasks(config.env, num_tasks=config.validation.num_tasks,
                                          seed=config.validation.seed, allow_fewer=True,
                                          sandboxes=config.validation.sandboxes)
        config_checks.validate_validation_set(len(self.val_tasks), config)
        longest = max(len(self.rollout.prompt_tokens(self.env.start(t))[0]) for t in self.val_tasks[:8])
        config_checks.validate_prompt_budget(longest, config)
        with jax.set_mesh(self.mesh):
            self.model = load_hf_model(m.path, mesh=self.mesh, param_dtype=_DTYPES[m.param_dtype],
                                       compute_dtype=compute_dtype, remat=m.remat,
                                       time_step_clamp=m.time_step_clamp,
                                       attention_query_chunk=m.attention_query_chunk,
                                       attention_implementation=m.attention_implementation,
                                       ssd_matmul_dtype=_DTYPES[m.ssd_matmul_dtype])

        self.graphdef, params = nnx.split(self.model)
        self.optimizer = optim.make_optimizer(
            lr=config.optimizer.lr, min_lr=config.optimizer.min_lr, warmup_steps=config.optimizer.warmup_steps,
            warmup_init_lr=config.optimizer.warmup_init_lr, max_num_steps=g.max_num_steps,
            adam_beta1=config.optimizer.adam_beta1, adam_beta2=config.optimizer.adam_beta2,
            adam_eps=config.optimizer.adam_eps, weight_decay=config.optimizer.weight_decay,
            clip_grad=config.optimizer.clip_grad, schedule=config.optimizer.schedule)
        self.lr_schedule = optim.schedule_from_config(
            lr=config.optimizer.lr, min_lr=config.optimizer.min_lr, warmup_steps=config.optimizer.warmup_steps,
            warmup_init_lr=config.optimizer.warmup_init_lr, max_num_steps=g.max_num_steps,
            schedule=config.optimizer.schedule)
        self.sft = config.mode == "sft"
        with jax.set_mesh(self.mesh):
            self.state = init_train_state(self.optimizer, params)
        # The update takes and returns the state with the shardings it was made with. Left to
        # XLA's propagation, a compile of the update for 8 H100s returned the parameters and Adam
        # moments replicated: 8x their memory, and the donated buffers unused (docs/performance.md).
        self.learner = Learner(self.graphdef, self.optimizer, LossConfig.from_config(
            config.loss, logprob_chunk=config.train.logprob_chunk, sft=self.sft),
            state_shardings=self.state.shardings())
        self.reference_params = None
        if config.loss.reference_policy_kl_penalty > 0:
            self.reference_params = jax.tree.map(jnp.copy, params)
        self.sampler = Sampler(self.graphdef, SamplerConfig(
            decode_chunk=config.generation.decode_chunk,
            decode_chunks_per_call=config.generation.decode_chunks_per_call,
            batch_multiple=sharding.batch_shards(self.mesh),
            min_block_bucket=config.generation.min_block_bucket, prefill_chunk=config.generation.prefill_chunk,
            cache_multiple=config.generation.cache_multiple,
            min_attend_bucket=config.generation.min_attend_bucket,
            ssm_decode_update=config.generation.ssm_decode_update))
        self._cast = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(compute_dtype), p))
        self.compute_dtype = compute_dtype

        self.checkpointer = Checkpointer(self.workdir / "checkpoints", max_to_keep=config.checkpoint.max_to_keep,
                                         keep_best=config.checkpoint.keep_best, best_metric="val_accuracy")
        self.base_key = jax.random.key(config.seed)
        self.stream = TaskStream(config.env, seed=config.env.task_seed, block_size=config.env.task_block_size)
        self.start_step = 0
        self.best_val = None
        self._restore(restore_step)
        self.writer = metrics_lib.MetricsWriter(self.workdir, tensorboard=config.logging.tensorboard) \
            if self.primary else None
        self.transcripts = metrics_lib.TranscriptWriter(
            self.workdir, max_per_step=config.logging.transcripts_per_step) if self.primary else None

    # -- checkpoints -----------------------------------------------------------------------

    def _restore(self, step: int | None = None) -> None:
        """Resumes from the latest good checkpoint in the work directory (or exactly `step`)."""
        target = CheckpointState(params=self.state.params, opt_state=self.state.opt_state, step=0)
        restored = (self.checkpointer.restore_latest_good(target=target) if step is None
                    else self.checkpointer.restore(step, target=target))
        if restored is None:
            return
        self.state = TrainState(step=jnp.asarray(restored.step, jnp.int32), params=restored.params,
                                opt_state=restored.opt_state,
                                skipped_updates=jnp.asarray(restored.metadata.get("skipped_updates", 0), jnp.int32))
        self.base_key = restored.rng_key if restored.rng_key is not None else self.base_key
        self.stream.position = StreamPosition.from_json(restored.data_position)
        self.start_step = int(restored.step)
        self.best_val = restored.metadata.get("best_val_accuracy")
        logger.info("resumed from step %d (%s)", self.start_step, self.checkpointer.step_dir(self.start_step))

    def save(self, step: int, val_accuracy: float | None = None) -> None:
        metadata = {"skipped_updates": int(self.state.skipped_updates), "best_val_accuracy": self.best_val}
        metrics = {} if val_accuracy is None else {"val_accuracy": val_accuracy}
        self.checkpointer.save(step, CheckpointState(
            params=self.state.params, opt_state=self.state.opt_state, step=step, rng_key=self.base_key,
            data_position=self.stream.position.to_json(), metadata=metadata), metrics=metrics)

    # -- rollouts --------------------------------------------------------------------------

    def sampler_params(self):
        params = self.state.params
        leaves = jax.tree.leaves(params)
        if leaves and leaves[0].dtype == self.compute_dtype:
            return params
        return self._cast(params)

    def _step_seed(self, step: int, purpose: str) -> int:
        key = jax.random.fold_in(jax.random.fold_in(self.base_key, step), hash_purpose(purpose))
        return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))

    def validate(self, step: int) -> dict[str, float]:
        cfg = self.config.validation
        params = self.sampler_params()
        policy = self.rollout.sampler_policy(self.sampler, params, temperature=cfg.temperature)
        trajectories = []
        for start in range(0, len(self.val_tasks), cfg.batch_size):
            chunk = self.val_tasks[start:start + cfg.batch_size]
            batch = self.rollout.run(policy, chunk, 1, seed=self._step_seed(step, f"val{start}"))
            trajectories += batch.trajectories
        rewards = np.array([t.reward for t in trajectories], np.float64)
        out = {metrics_lib.VAL_ACCURACY: float(rewards.mean()),
               "val/accuracy_stderr": float(rewards.std(ddof=1) / np.sqrt(len(rewards))) if len(rewards) > 1 else 0.0,
               "val/num_tasks": float(len(rewards))}
        for key in sorted({t.task.get("category") for t in trajectories} | {t.task.get("family") for t in trajectories}):
            chosen = [t.reward for t in trajectories if key in (t.task.get("category"), t.task.get("family"))]
            out[metrics_lib.val_category_key(str(key))] = float(np.mean(chosen))
        out.update(_rollout_metrics(RolloutBatch(trajectories, len(trajectories), 1), "val"))
        if self.transcripts is not None:
            solved = [t.record() for t in trajectories if t.reward > 0][:1]
            failed = [t.record() for t in trajectories if t.reward == 0][:1]
            self.transcripts.write(step, solved + failed, split="validation")
        return out

    def _draw_batch(self, step: int) -> RolloutBatch:
        g = self.config.grpo
        policy = self.rollout.sampler_policy(self.sampler, self.sampler_params())
        if not g.use_dynamic_sampling:
            tasks = self.stream.take(g.num_prompts_per_step)
            return self.rollout.run(policy, tasks, g.num_generations_per_prompt, seed=self._step_seed(step, "train"))
        accumulator = grpo.DynamicSamplingAccumulator(g.num_prompts_per_step, g.dynamic_sampling_max_gen_batches)
        last = None
        while not accumulator.done:
            tasks = self.stream.take(g.num_prompts_per_step)
            last = self.rollout.run(policy, tasks, g.num_generations_per_prompt,
                                    seed=self._step_seed(step, f"train{accumulator.num_batches}"))
            groups = [last.trajectories[p * last.group_size:(p + 1) * last.group_size] for p in range(last.num_groups)]
            accumulator.add(last.rewards_PG(), groups)
        kept, _ = accumulator.take()
        if len(kept) < g.num_prompts_per_step:  # budget spent: top up with the last batch's groups
            used = {id(group[0]) for group in kept}
            kept += [grp for grp in (last.trajectories[p * last.group_size:(p + 1) * last.group_size]
                                     for p in range(last.num_groups)) if id(grp[0]) not in used]
            kept = kept[:g.num_prompts_per_step]
        trajectories = [t for group in kept for t in group]
        for p, group in enumerate(kept):
            for t in group:
                t.group = p
        return RolloutBatch(trajectories, len(kept), g.num_generations_per_prompt)

    # -- one step --------------------------------------------------------------------------

    def step(self, step: int) -> dict[str, Any]:
        return self._sft_step(step) if self.sft else self._grpo_step(step)

    def _sft_step(self, step: int) -> dict[str, Any]:
        """Masked cross-entropy on expert trajectories, replayed through the rollout loop."""
        start = time.perf_counter()
        batch = sft.expert_batch(self.rollout, self.stream.take(self.config.grpo.num_prompts_per_step))
        arrays = batch.arrays(length_multiple=self.config.train.length_bucket)
        stacked = make_update_batch(arrays["tokens_BT"], arrays["loss_mask_BT"], self.config.train.micro_batch_size,
                                    position_multiple=self.config.train.position_bucket)
        timings = {metrics_lib.TIMING_ROLLOUT: time.perf_counter() - start}
        start = time.perf_counter()
        lr = float(self.lr_schedule(int(self.state.step) - int(self.state.skipped_updates)))
        self.state, update_metrics = self.learner.update(self.state, stacked)
        out = {f"train/{k}": float(v) for k, v in host_array(update_metrics).items()}
        timings[metrics_lib.TIMING_UPDATE] = time.perf_counter() - start
        out.update(_rollout_metrics(batch, "train/expert"))
        out[metrics_lib.TRAIN_LR] = lr
        self._report_skipped(step, out)
        out.update(timings)
        return out

    def _logprobs(self, params, stacked: dict[str, np.ndarray]) -> np.ndarray:
        """Log-probs at the trained positions, in micro-batches of train.logprob_batch_size."""
        shape = stacked["positions"].shape
        size = self.config.train.logprob_batch_size
        regroup = lambda x: x.reshape((-1, size) + x.shape[2:])  # noqa: E731 - (M, b, .) → (M', b', .)
        logprobs, _ = self.learner.logprobs(params, regroup(stacked["tokens"]), regroup(stacked["positions"]))
        return host_array(logprobs).reshape(shape)

    def _grpo_step(self, step: int) -> dict[str, Any]:
        g, t = self.config.grpo, self.config.train
        timings = {}
        start = time.perf_counter()
        batch = self._draw_batch(step)
        timings[metrics_lib.TIMING_ROLLOUT] = time.perf_counter() - start

        rewards_PG = batch.rewards_PG()
        advantages_PG = np.asarray(grpo.compute_advantages(
            rewards_PG, use_leave_one_out_baseline=g.use_leave_one_out_baseline,
            normalize_rewards=g.normalize_rewards))
        arrays = batch.arrays(length_multiple=t.length_bucket)
        stacked = make_update_batch(arrays["tokens_BT"], arrays["loss_mask_BT"], t.micro_batch_size,
                                    advantages_B=advantages_PG.reshape(-1),
                                    sampler_logprobs_BT=arrays["sampler_logprobs_BT"],
                                    position_multiple=t.position_bucket)

        start = time.perf_counter()
        if g.old_logprobs == "sampler":
            stacked["old_logprobs"] = stacked["sampler_logprobs"]
        else:
            stacked["old_logprobs"] = self._logprobs(self.state.params, stacked)
        if self.reference_params is not None:
            stacked["reference_logprobs"] = self._logprobs(self.reference_params, stacked)
        timings[metrics_lib.TIMING_LOGPROB] = time.perf_counter() - start

        start = time.perf_counter()
        lr = float(self.lr_schedule(int(self.state.step) - int(self.state.skipped_updates)))
        self.state, update_metrics = self.learner.update(self.state, stacked)
        update_metrics = {k: float(v) for k, v in host_array(update_metrics).items()}
        timings[metrics_lib.TIMING_UPDATE] = time.perf_counter() - start

        out = {f"train/{k}": v for k, v in update_metrics.items()}
        out.update(_rollout_metrics(batch, "train"))
        out.update({f"train/{k}": float(v) for k, v in grpo.reward_metrics(rewards_PG).items()})
        out.update({f"train/advantages/{k}": float(v) for k, v in grpo.advantage_metrics(advantages_PG).items()})
        out[metrics_lib.TRAIN_LR] = lr
        self._report_skipped(step, out)
        out.update(timings)
        if self.transcripts is not None:
            records = sorted((tr.record() for tr in batch.trajectories), key=lambda r: -r["reward"])
            self.transcripts.write(step, records[:1] + records[-1:], split="train")
        return out

    def _report_skipped(self, step: int, out: dict[str, Any]) -> None:
        """Adds the running count of skipped updates to `out` and warns when this one was skipped."""
        out["train/skipped_updates_total"] = float(self.state.skipped_updates)
        if out.get("train/update_skipped"):
            logger.warning("step %d: non-finite loss (%s) or gradient norm (%s): the update was skipped, "
                           "parameters and optimizer state are unchanged (%d skipped so far)", step,
                           out.get("train/loss"), out.get("train/grad_norm"), int(self.state.skipped_updates))

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> dict[str, Any]:
        """Trains up to grpo.max_num_steps; with `stop_after`, returns after that step with a
        checkpoint written (a time slice: the next run in the same work directory resumes)."""
        g = self.config.grpo
        progress = metrics_lib.ProgressReporter(g.max_num_steps, start_step=self.start_step,
                                                quiet=self.quiet or not self.primary)
        summary: dict[str, Any] = {}
        with _StopFlag().installed() as stop, jax.set_mesh(self.mesh):
            if self.start_step == 0 and g.val_at_start:
                record = self._log(0, self._timed_validation(0))
                summary["val_at_start"] = record.get(metrics_lib.VAL_ACCURACY)
            for step in range(self.start_step + 1, g.max_num_steps + 1):
                step_start = time.perf_counter()
                out = self.step(step)
                val_accuracy = None
                if g.val_period and step % g.val_period == 0 and step != g.max_num_steps:
                    out.update(self._timed_validation(step))
                    val_accuracy = out[metrics_lib.VAL_ACCURACY]
                if step == g.max_num_steps and g.val_at_end:
                    out.update(self._timed_validation(step))
                    val_accuracy = out[metrics_lib.VAL_ACCURACY]
                if val_accuracy is not None and (self.best_val is None or val_accuracy > self.best_val):
                    self.best_val = val_accuracy
                out[metrics_lib.TIMING_STEP] = time.perf_counter() - step_start
                out["compile/count"] = float(compile_log.compile_count())
                out["compile/seconds"] = compile_log.compile_seconds()
                out["compile/cache_hits"] = float(compile_log.cache_hits())
                pausing = stop_after is not None and step >= stop_after and step != g.max_num_steps
                # Processes must agree: one that saves (a collective) while another trains on would hang.
                stopping = distributed.any_process(stop.raised)
                if (step % self.config.checkpoint.save_period == 0 or step == g.max_num_steps or stopping
                        or pausing):
                    start = time.perf_counter()
                    self.save(step, val_accuracy)
                    out[metrics_lib.TIMING_CHECKPOINT] = time.perf_counter() - start
                record = self._log(step, out)
                progress.update(step, record)
                summary.update(record)
                if stopping:
                    self.checkpointer.wait_until_finished()
                    raise Preempted(f"stopped by SIGTERM after step {step}; checkpoint "
                                    f"{self.checkpointer.step_dir(step)} written, rerun to resume")
                if pausing:
                    self.checkpointer.wait_until_finished()
                    return summary
        progress.close()
        self.checkpointer.wait_until_finished()
        if self.config.checkpoint.export_hf:  # every process: gathering sharded weights is collective
            self.export(self.workdir / "hf_export")
        if self.primary:
            from grpo_jax import plot
            plot.plot_workdir(self.workdir, self.workdir / "curves.png")
        return summary

    def _timed_validation(self, step: int) -> dict[str, float]:
        start = time.perf_counter()
        out = self.validate(step)
        out[metrics_lib.TIMING_VALIDATION] = time.perf_counter() - start
        return out

    def _log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.writer is None:
            return dict(metrics)
        return self.writer.write(step, metrics)

    def export(self, out_dir: pathlib.Path) -> pathlib.Path:
        """The current policy as an HF directory (weights in param dtype, plus the tokenizer)."""
        nnx.update(self.model, self.state.params)
        save_hf_model(self.model, out_dir)  # all processes gather, process 0 writes
        for name in TOKENIZER_FILES:
            if self.primary and (self.tokenizer_dir / name).exists():
                shutil.copy(self.tokenizer_dir / name, out_dir / name)
        return out_dir

    def close(self) -> None:
        self.checkpointer.wait_until_finished()
        self.checkpointer.close()
        if self.writer is not None:
            self.writer.close()


def hash_purpose(purpose: str) -> int:
    """A stable 31-bit int for a purpose string (Python's hash() is salted per process)."""
    return zlib.crc32(purpose.encode()) & 0x7FFFFFFF


def run(config, workdir: str | pathlib.Path, *, quiet: bool = False, stop_after: int | None = None
        ) -> dict[str, Any]:
    """Trains as `config` says, in `workdir` (resuming from its latest checkpoint)."""
    trainer = Trainer(config, workdir, quiet=quiet)
    try:
        return trainer.run(stop_after=stop_after)
    finally:
        trainer.close()
