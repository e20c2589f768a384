"""Training checkpoints: a thin wrapper over Orbax's `CheckpointManager` (orbax-checkpoint 0.12).

A checkpoint step directory `<directory>/<step>/` holds the Orbax items
  params/     `StandardSave` of the parameter pytree (sharded jax arrays, OCDBT/zarr)
  opt_state/  `StandardSave` of the optimiser state pytree
  meta/       `JsonSave`: step, data position, RNG key data (exact uint32 ints), user metadata
  metrics/    Orbax's own JSON of the ranking metric (only when it was given)
plus `grpo_integrity.json`, written by this module once the step is committed: the size and CRC32
of every file, so truncation or bit rot is caught before Orbax reads garbage. No pickle anywhere:
only Orbax's array (tensorstore) and JSON handlers.

Retention: the last `max_to_keep` steps AND the `keep_best` best by `best_metric` are kept. With
Orbax 0.12's legacy options, `best_fn` + `max_to_keep` keeps only the best N (recency is dropped),
so this module builds the policy explicitly: AnyPreservationPolicy([LatestN, BestN]).

Typical use:
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=2, keep_best=3, best_metric="val_accuracy")
    ckpt.save(step, CheckpointState(params, opt_state, step, rng_key, data_position, {...}),
              metrics={"val_accuracy": acc})
    ...
    state = ckpt.restore_latest_good(target=CheckpointState(abstract_params, abstract_opt_state, 0))
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import pathlib
import zlib
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as ocp_policies

from grpo_jax.metrics import json_safe

PyTree = Any
log = logging.getLogger(__name__)

PARAMS_ITEM = "params"
OPT_STATE_ITEM = "opt_state"
META_ITEM = "meta"
INTEGRITY_FILE = "grpo_integrity.json"
# Broken steps are moved here; Orbax only lists all-digit directory names as steps.
QUARANTINE_DIR = "quarantine"
FORMAT_VERSION = 1
# Files are hashed in blocks of this many bytes (bounded memory for multi-GB array files).
HASH_BLOCK_BYTES = 1 << 24


class CheckpointError(RuntimeError):
    """A checkpoint step could not be restored; the message names the step directory."""


class CheckpointCorruptedError(CheckpointError):
    """A step directory is incomplete or its files do not match what was written."""


@dataclasses.dataclass
class CheckpointState:
    """What one checkpoint holds.

    params, opt_state: pytrees of jax arrays (possibly sharded; NNX State, optax states and
      nested dicts with int keys all work). On restore, pass a target whose leaves are
      `jax.ShapeDtypeStruct`s with `sharding=` (e.g. from `jax.eval_shape`) or concrete arrays:
      values are placed on those shardings, and the tree takes the target's structure.
    step: the GRPO step the state is AFTER (the next step to run is step + 1, caller's choice).
    rng_key: a typed key (`jax.random.key`) or raw uint32 key data, or None.
    data_position: where the data iterator stands; any JSON value (int, dict, …).
    metadata: a JSON dict (config digest, validation accuracy, …).
    """

    params: PyTree
    opt_state: PyTree
    step: int
    rng_key: jax.Array | None = None
    data_position: Any = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def should_save(step: int, save_period: int, last_step: int) -> bool:
    """The recipe's cadence: every `save_period` steps and at the last step (steps from 1)."""
    if save_period <= 0:
        raise ValueError(f"save_period must be ≥ 1, got {save_period}")
    return step % save_period == 0 or step == last_step


def _key_to_json(rng_key: jax.Array | None) -> dict[str, Any] | None:
    """Key (typed or raw) → {'impl', 'shape', 'dtype', 'data'}; uint32 ints are exact in JSON."""
    if rng_key is None:
        return None
    impl = None
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(rng_key))
        rng_key = jax.random.key_data(rng_key)
    data = np.asarray(jax.device_get(rng_key))
    return {"impl": impl, "shape": list(data.shape), "dtype": str(data.dtype),
            "data": data.reshape(-1).tolist()}


def _key_from_json(record: dict[str, Any] | None) -> jax.Array | None:
    if record is None:
        return None
    data = np.asarray(record["data"], dtype=record["dtype"]).reshape(record["shape"])
    if record["impl"] is None:
        return jnp.asarray(data)
    return jax.random.wrap_key_data(jnp.asarray(data), impl=record["impl"])


def _abstract(target: PyTree) -> PyTree:
    """Concrete arrays → ShapeDtypeStruct with their sharding; ShapeDtypeStructs pass through."""

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, target)


def _file_digest(path: pathlib.Path) -> int:
    crc = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            crc = zlib.crc32(block, crc)
    return crc


def _scan_files(step_dir: pathlib.Path, checksum: bool) -> dict[str, dict[str, int]]:
    files = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and not path.name.startswith(INTEGRITY_FILE):
            entry = {"size": path.stat().st_size}
            if checksum:
                entry["crc32"] = _file_digest(path)
            files[path.relative_to(step_dir).as_posix()] = entry
    return files


class Checkpointer:
    """Saves and restores `CheckpointState`s under one directory (see the module docstring).

    Args:
      directory: root directory; step directories are `<directory>/<step>`.
      max_to_keep: the newest N steps are always kept (≥ 1).
      keep_best: additionally keep the K best steps by `best_metric` (0 = recency only). Only
        steps saved with `metrics[best_metric]` finite take part in the ranking.
      best_metric, best_mode: the metric name and 'max' (higher is better) or 'min'.
      async_save: Orbax async checkpointing (the save returns once arrays are copied off device;
        call `wait_until_finished()` before reading the files or exiting).
      checksum: record a CRC32 of every file after each save (reads the step back once, in a
        background thread); False records sizes only (catches truncation, not bit flips).
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        max_to_keep: int = 2,
        keep_best: int = 0,
        best_metric: str = "val_accuracy",
        best_mode: Literal["max", "min"] = "max",
        async_save: bool = True,
        checksum: bool = True,
    ):
        if max_to_keep < 1:
            raise ValueError(
                f"max_to_keep must be ≥ 1 (the newest step is what resumes), got {max_to_keep}"
            )
        if keep_best < 0:
            raise ValueError(f"keep_best must be ≥ 0, got {keep_best}")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        self.directory = pathlib.Path(directory).absolute()
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.checksum = checksum
        worst = -math.inf if best_mode == "max" else math.inf

        def score(metrics: dict[str, Any]) -> float:
            value = metrics.get(best_metric, worst) if isinstance(metrics, dict) else worst
            return float(value) if value is not None else worst

        policy: Any = ocp_policies.LatestN(n=max_to_keep)
        if keep_best:
            policy = ocp_policies.AnyPreservationPolicy([
                policy,
                ocp_policies.BestN(
                    get_metric_fn=score,
                    reverse=best_mode == "min",  # BestN keeps the LAST n after sorting
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                ),
            ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            # best_fn also makes Orbax write/read the per-step metrics and powers best_step().
            best_fn=score if keep_best else None,
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=(PARAMS_ITEM, OPT_STATE_ITEM, META_ITEM), options=options
        )
        self._integrity_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._integrity_futures: list[concurrent.futures.Future] = []
        self._uncommitted_step: int | None = None

    # ---- paths and listing -------------------------------------------------------------------

    def step_dir(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best kept step by `best_metric` (the latest step when keep_best = 0)."""
        return self._manager.best_step()

    # ---- saving ------------------------------------------------------------------------------

    def save(self, step: int, state: CheckpointState, *, metrics: dict[str, Any] | None = None) -> None:
        """Starts saving `state` as step `step` (async unless async_save=False).

        metrics: {best_metric: value, ...} for retention; they are also stored in meta. A step
        without a finite `best_metric` is kept only while it is among the newest `max_to_keep`.
        """
        if int(step) != int(state.step):
            raise ValueError(f"save(step={step}) does not match state.step={state.step}")
        self._record_integrity_of_committed_step()
        meta = {
            "format_version": FORMAT_VERSION,
            "step": int(step),
            "data_position": json_safe(state.data_position),
            "rng_key": _key_to_json(state.rng_key),
            "metadata": json_safe(state.metadata),
            "metrics": json_safe(metrics or {}),
        }
        ranking = None
        value = (metrics or {}).get(self.best_metric)
        if value is not None and math.isfinite(float(value)):
            ranking = {self.best_metric: float(value)}
        self._manager.save(
            int(step),
            args=ocp.args.Composite(**{
                PARAMS_ITEM: ocp.args.StandardSave(state.params),
                OPT_STATE_ITEM: ocp.args.StandardSave(state.opt_state),
                META_ITEM: ocp.args.JsonSave(meta),
            }),
            metrics=ranking,
            force=True,  # the caller decides the period; Orbax's own interval logic is bypassed
        )
        self._uncommitted_step = int(step)

    def _record_integrity_of_committed_step(self) -> None:
        """Waits for the pending Orbax save, then hashes its files in the background."""
        if self._uncommitted_step is None:
            return
        self._manager.wait_until_finished()
        step, self._uncommitted_step = self._uncommitted_step, None
        if jax.process_index() == 0:
            self._integrity_futures.append(self._integrity_pool.submit(self._write_integrity, step))

    def _write_integrity(self, step: int) -> None:
        step_dir = self.step_dir(step)
        try:
            record = {"step": step, "files": _scan_files(step_dir, self.checksum)}
            # Write-then-rename: a torn record must never condemn a good step.
            tmp = step_dir / (INTEGRITY_FILE + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(step_dir / INTEGRITY_FILE)
        except OSError:
            if step_dir.exists():
                raise
            # Otherwise retention deleted the step while it was being hashed: nothing to record.

    def wait_until_finished(self) -> None:
        """Blocks until every started save is committed and its integrity record written."""
        self._record_integrity_of_committed_step()
        self._manager.wait_until_finished()
        for future in self._integrity_futures:
            future.result()
        self._integrity_futures.clear()

    def close(self) -> None:
        self.wait_until_finished()
        self._manager.close()
        self._integrity_pool.shutdown()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- restoring -----------------------------------------------------------------------------

    def verify(self, step: int) -> None:
        """Raises CheckpointCorruptedError if `step`'s files differ from its integrity record.

        Steps without a record (e.g. the process died between the commit and the record) pass
        here; Orbax's own read errors are then the only check.
        """
        step_dir = self.step_dir(step)
        if not step_dir.is_dir():
            raise CheckpointCorruptedError(f"checkpoint step directory {step_dir} does not exist")
        record_path = step_dir / INTEGRITY_FILE
        if not record_path.exists():
            log.warning("checkpoint %s has no %s; restoring unverified", step_dir, INTEGRITY_FILE)
            return
        try:
            expected = json.loads(record_path.read_text())["files"]
        except (json.JSONDecodeError, KeyError, OSError) as err:
            raise CheckpointCorruptedError(
                f"checkpoint {step_dir}: unreadable integrity record {INTEGRITY_FILE}: {err}"
            ) from err
        for name, entry in expected.items():
            path = step_dir / name
            if not path.is_file():
                raise CheckpointCorruptedError(f"checkpoint {step_dir}: file {name} is missing")
            size = path.stat().st_size
            if size != entry["size"]:
                raise CheckpointCorruptedError(
                    f"checkpoint {step_dir}: file {name} has {size} bytes, {entry['size']} were written"
                    " (truncated or overwritten)"
                )
            if "crc32" in entry and _file_digest(path) != entry["crc32"]:
                raise CheckpointCorruptedError(
                    f"checkpoint {step_dir}: file {name} fails its CRC32 check (corrupted)"
                )

    def restore(self, step: int | None = None, target: CheckpointState | None = None) -> CheckpointState:
        """Restores `step` (default: the latest) exactly as saved.

        target: a CheckpointState whose params/opt_state give the structure, shapes, dtypes and
          shardings to restore onto (ShapeDtypeStruct leaves with `sharding=`, or concrete arrays);
          its other fields are ignored. None restores with the saved shardings and the saved
          (dict) structure, which suits inspection but not resuming an optax state.
        Raises CheckpointError (CheckpointCorruptedError for integrity failures) naming the step
        directory, or FileNotFoundError when there is no checkpoint at all.
        """
        self.wait_until_finished()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint steps in {self.directory}")
        step_dir = self.step_dir(step)
        self.verify(step)
        params_target = None if target is None else _abstract(target.params)
        opt_target = None if target is None else _abstract(target.opt_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(**{
                    PARAMS_ITEM: ocp.args.StandardRestore(params_target),
                    OPT_STATE_ITEM: ocp.args.StandardRestore(opt_target),
                    META_ITEM: ocp.args.JsonRestore(),
                }),
            )
        except Exception as err:  # Orbax/tensorstore raise many types; all mean "unusable"
            raise CheckpointError(
                f"could not restore checkpoint {step_dir}: {type(err).__name__}: {err}"
            ) from err
        meta = restored[META_ITEM]
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointCorruptedError(
                f"checkpoint {step_dir}: meta item missing or of another format"
            )
        return CheckpointState(
            params=restored[PARAMS_ITEM],
            opt_state=restored[OPT_STATE_ITEM],
            step=int(meta["step"]),
            rng_key=_key_from_json(meta["rng_key"]),
            data_position=meta["data_position"],
            metadata=meta["metadata"],
        )

    def restore_latest_good(
        self, target: CheckpointState | None = None, *, quarantine: bool = True
    ) -> CheckpointState | None:
        """Restores the newest step that restores cleanly, walking back past broken ones.

        quarantine: once a good step is found, move the broken newer steps to
          `<directory>/quarantine/<step>` (kept for inspection, invisible to Orbax), so that
          `latest_step()` is the resumed step and the run can save those step numbers again.
        Returns None when there is no checkpoint (a fresh run). If every step fails, raises the
        newest step's error and moves nothing (a wrong `target` fails everywhere, and should say so).
        """
        self.wait_until_finished()
        errors: list[tuple[int, CheckpointError]] = []
        for step in reversed(self.all_steps()):
            try:
                state = self.restore(step, target)
            except CheckpointError as err:
                log.warning("skipping checkpoint step %d: %s", step, err)
                errors.append((step, err))
                continue
            if quarantine and errors:
                self._quarantine([bad_step for bad_step, _ in errors])
            return state
        if errors:
            raise errors[0][1]
        return None

    def _quarantine(self, steps: list[int]) -> None:
        if jax.process_index() == 0:
            quarantine_dir = self.directory / QUARANTINE_DIR
            quarantine_dir.mkdir(exist_ok=True)
            for step in steps:
                destination = quarantine_dir / str(step)
                suffix = 0
                while destination.exists():  # the same step number may break twice
                    suffix += 1
                    destination = quarantine_dir / f"{step}-{suffix}"
                self.step_dir(step).rename(destination)
                log.warning("moved broken checkpoint %s to %s", self.step_dir(step), destination)
        if jax.process_count() > 1:  # the others must not list the steps before they are moved
            multihost_utils.sync_global_devices("grpo_jax.checkpointing.quarantine")
        self._manager.reload()

    def metadata(self, step: int) -> dict[str, Any]:
        """The meta JSON of `step` (step, data position, metadata, metrics) without array reads."""
        args = ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
        restored = self._manager.restore(step, args=args)
        return restored[META_ITEM]
