"""Run logging: canonical metric names, a JSONL + TensorBoard writer, transcripts, progress.

Files under the run's workdir:
  metrics.jsonl      one JSON object per logged step: {"step": int, "time": unix seconds, <key>: value}
  tb/                TensorBoard event files (tensorboardX), one scalar per numeric key
  transcripts.jsonl  one JSON object per transcript: {"step", "split", "index", "reward", "messages", ...}

Metric keys form one flat, '/'-separated namespace; the constants below are the names the trainer,
the plot and the tests share. `val/accuracy/<category>` carries per-category validation accuracy
(`val_category_key(category)`). The pure functions in `grpo_jax.grpo` return un-prefixed keys;
`prefixed('train/', metrics)` puts them under the namespace (e.g. 'train/clip_fraction').
"""
from __future__ import annotations

import json
import math
import pathlib
import sys
import threading
import time
from typing import Any, Iterable, Mapping, TextIO

import numpy as np

# --- train/: one value per GRPO step -------------------------------------------------------
TRAIN_REWARD_MEAN = "train/reward_mean"
TRAIN_REWARD_STD = "train/reward_std"
TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_NUM_VALID_TOKENS = "train/num_valid_tokens"
TRAIN_NUM_VALID_SEQUENCES = "train/num_valid_sequences"
TRAIN_TOKEN_MULT_PROB_ERROR = "train/token_mult_prob_error"
TRAIN_CLIP_FRACTION = "train/clip_fraction"
TRAIN_APPROX_ENTROPY = "train/approx_entropy"
TRAIN_PCT_GROUPS_MIXED = "train/pct_groups_mixed"
# --- val/: at validation steps ---------------------------------------------------------------
VAL_ACCURACY = "val/accuracy"
VAL_CATEGORY_PREFIX = "val/accuracy/"
# --- timing/: seconds per phase of one step --------------------------------------------------
TIMING_ROLLOUT = "timing/rollout_s"
TIMING_LOGPROB = "timing/logprob_s"
TIMING_UPDATE = "timing/update_s"
TIMING_VALIDATION = "timing/validation_s"
TIMING_CHECKPOINT = "timing/checkpoint_s"
TIMING_STEP = "timing/step_s"
# The phases that add up to a step (the plot stacks them in this order).
TIMING_PHASES = (TIMING_ROLLOUT, TIMING_LOGPROB, TIMING_UPDATE, TIMING_VALIDATION, TIMING_CHECKPOINT)

CANONICAL_KEYS = (
    TRAIN_REWARD_MEAN, TRAIN_REWARD_STD, TRAIN_LOSS, TRAIN_LR, TRAIN_GRAD_NORM,
    TRAIN_NUM_VALID_TOKENS, TRAIN_NUM_VALID_SEQUENCES, TRAIN_TOKEN_MULT_PROB_ERROR,
    TRAIN_CLIP_FRACTION, TRAIN_APPROX_ENTROPY, TRAIN_PCT_GROUPS_MIXED,
    VAL_ACCURACY, *TIMING_PHASES, TIMING_STEP,
)

METRICS_FILE = "metrics.jsonl"
TRANSCRIPTS_FILE = "transcripts.jsonl"
TENSORBOARD_DIR = "tb"


def val_category_key(category: str) -> str:
    """'val/accuracy/<category>' (a '/' inside the category is replaced to keep one level)."""
    return VAL_CATEGORY_PREFIX + str(category).replace("/", "_")


def prefixed(prefix: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """{prefix + key: value}, e.g. prefixed('train/', grpo.ratio_metrics(...))."""
    return {prefix + key: value for key, value in metrics.items()}


def json_safe(value: Any) -> Any:
    """Converts a metric value (or nested dict/list of them) to strict-JSON-serialisable data.

    numpy/jax scalars and 0-d arrays → Python int/float/bool; larger arrays → nested lists;
    NaN → None (JSON null); ±inf → the strings "inf" / "-inf"; mapping keys → str.
    """
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return number
    if hasattr(value, "__array__"):  # numpy and jax arrays (device → host here)
        array = np.asarray(value)
        return json_safe(array.item() if array.ndim == 0 else array.tolist())
    return str(value)


def _scalar_or_none(value: Any) -> float | None:
    """A finite-or-not float for TensorBoard, or None when the value is not a single number."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(()))


class MetricsWriter:
    """Appends one JSON line per step to WORKDIR/metrics.jsonl and mirrors scalars to TensorBoard.

    `write(step, metrics)` converts values with `json_safe` (NaN → null) for the JSONL; TensorBoard
    gets every single-number value as a scalar (NaN included, which TensorBoard shows as such).
    Lines are flushed on every write so a crash loses at most the line being written.
    """

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / METRICS_FILE
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # imported lazily: slow, and optional in tools

            self._tb = SummaryWriter(logdir=str(self.workdir / TENSORBOARD_DIR))

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Logs `metrics` for `step`; returns the JSON-safe record that was written."""
        record = {"step": int(step), "time": time.time()}
        record.update(json_safe(dict(metrics)))
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                scalar = _scalar_or_none(value)
                if scalar is not None:
                    self._tb.add_scalar(key, scalar, global_step=int(step))
            self._tb.flush()
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Reads metrics.jsonl (a file or a workdir) into a list of records; skips a torn last line."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write
    return records


class TranscriptWriter:
    """Appends readable rollout transcripts to WORKDIR/transcripts.jsonl (a few per step).

    `write(step, transcripts, split='train')`: each transcript is a mapping such as
    {"messages": [...chat messages...], "reward": 1.0, "task_id": ..., "category": ...}; it is
    stored with its step, split and index, JSON-safe. At most `max_per_step` are written per call.
    """

    def __init__(self, workdir: str | pathlib.Path, *, max_per_step: int = 4):
        self.path = pathlib.Path(workdir) / TRANSCRIPTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_per_step = max_per_step

    def write(self, step: int, transcripts: Iterable[Mapping[str, Any]], *, split: str = "train") -> int:
        """Appends up to `max_per_step` transcripts; returns how many were written."""
        written = 0
        with self.path.open("a", encoding="utf-8") as handle:
            for index, transcript in enumerate(transcripts):
                if written >= self.max_per_step:
                    break
                record = {"step": int(step), "split": split, "index": index}
                record.update(json_safe(dict(transcript)))
                handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
                written += 1
        return written


class ProgressReporter:
    """One console line per step: step/total, elapsed, ETA, live reward and chosen metrics.

    Uses tqdm when `stream` is a terminal (a live bar), plain lines otherwise; `quiet=True` prints
    nothing (tests, non-primary processes). ETA = mean step time so far × steps left.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        start_step: int = 0,
        quiet: bool = False,
        stream: TextIO | None = None,
        keys: tuple[str, ...] = (TRAIN_REWARD_MEAN, VAL_ACCURACY, TRAIN_LOSS, TIMING_STEP),
    ):
        self.total_steps = total_steps
        self.start_step = start_step
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.keys = keys
        self._start_time = time.monotonic()
        self._lock = threading.Lock()
        self._bar = None
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, file=self.stream, dynamic_ncols=True)

    def eta_seconds(self, step: int) -> float | None:
        """Seconds left after finishing `step`, or None before any step finished."""
        done = step - self.start_step
        if done <= 0:
            return None
        per_step = (time.monotonic() - self._start_time) / done
        return per_step * max(self.total_steps - step, 0)

    def _metric_parts(self, metrics: Mapping[str, Any]) -> list[str]:
        parts = []
        for key in self.keys:
            scalar = _scalar_or_none(metrics.get(key))
            if scalar is not None:
                parts.append(f"{key} {scalar:.4g}")
        return parts

    def format(self, step: int, metrics: Mapping[str, Any]) -> str:
        """'step S/TOTAL | elapsed H:MM:SS | eta H:MM:SS | train/reward_mean 0.42 | …'."""
        eta = self.eta_seconds(step)
        parts = [
            f"step {step}/{self.total_steps}",
            f"elapsed {_hms(time.monotonic() - self._start_time)}",
            f"eta {_hms(eta) if eta is not None else '?'}",
        ]
        return " | ".join(parts + self._metric_parts(metrics))

    def update(self, step: int, metrics: Mapping[str, Any]) -> str:
        """Reports the end of `step`; returns the line (also when quiet)."""
        line = self.format(step, metrics)
        if self.quiet:
            return line
        with self._lock:
            if self._bar is not None:  # tqdm shows step, elapsed and ETA itself
                self._bar.n = step
                self._bar.set_postfix_str(" | ".join(self._metric_parts(metrics)), refresh=True)
            else:
                print(line, file=self.stream, flush=True)
        return line

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}"
