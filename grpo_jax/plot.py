"""Training curves from a run's metrics.jsonl: `python -m grpo_jax.plot WORKDIR [--out FILE]`.

Four panels: train reward (mean ± std band), validation accuracy (overall and per category),
loss, and step timing (phases stacked, total step time as a line). Missing keys leave a panel
with a 'no data' note; a single logged step is drawn as markers. Uses matplotlib's Agg canvas
directly (no pyplot), so it never needs a display and leaves global matplotlib state alone.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from grpo_jax import metrics as metric_keys

DEFAULT_OUTPUT = "curves.png"
FIGURE_SIZE_INCHES = (12.0, 8.0)
DPI = 110
# Transparency of the ±std band and of per-category lines (secondary to the overall curve).
BAND_ALPHA = 0.2
SECONDARY_ALPHA = 0.6


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / null (NaN) / 'inf' strings / non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the records where it is a finite number."""
    steps, values = [], []
    for record in records:
        value = _number(record.get(key))
        if value is not None and "step" in record:
            steps.append(int(record["step"]))
            values.append(value)
    return steps, values


def _line(ax: Any, steps: list[int], values: list[float], **kwargs: Any) -> bool:
    if not steps:
        return False
    # A marker keeps a single-step run (or a sparse validation series) visible.
    ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, **kwargs)
    return True


def _finish(ax: Any, title: str, ylabel: str, has_data: bool) -> None:
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if not has_data:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _plot_reward(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    steps, mean = series(records, metric_keys.TRAIN_REWARD_MEAN)
    has = _line(ax, steps, mean, label="train reward (mean)")
    std_by_step = dict(zip(*series(records, metric_keys.TRAIN_REWARD_STD)))
    band = [(s, m, std_by_step[s]) for s, m in zip(steps, mean) if s in std_by_step]
    if band:
        ax.fill_between([s for s, _, _ in band], [m - d for _, m, d in band],
                        [m + d for _, m, d in band], alpha=BAND_ALPHA, label="± std")
    _finish(ax, "Reward (train)", "reward", has)


def _plot_validation(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    has = _line(ax, *series(records, metric_keys.VAL_ACCURACY), label="overall", linewidth=2)
    categories = sorted({key for record in records for key in record
                         if key.startswith(metric_keys.VAL_CATEGORY_PREFIX)})
    for key in categories:
        label = key[len(metric_keys.VAL_CATEGORY_PREFIX):]
        has |= _line(ax, *series(records, key), label=label, linewidth=1, alpha=SECONDARY_ALPHA)
    _finish(ax, "Validation accuracy", "accuracy", has)


def _plot_loss(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    has = _line(ax, *series(records, metric_keys.TRAIN_LOSS), label="loss")
    _finish(ax, "Loss", "loss", has)


def timing_layers(records: Sequence[dict[str, Any]]) -> tuple[list, list[str], list[list[float]]]:
    """(steps, phase labels, one layer per phase) of the stacked timing panel: every step that
    logged any phase; a phase a step did not log (validation and checkpoints run on some steps
    only) counts 0 there."""
    phases = [key for key in metric_keys.TIMING_PHASES if series(records, key)[0]]
    per_phase = {key: dict(zip(*series(records, key))) for key in phases}
    steps = sorted(set().union(*(set(v) for v in per_phase.values())))
    labels = [key.split("/", 1)[-1].removesuffix("_s") for key in phases]
    layers = [[per_phase[key].get(s, 0.0) for s in steps] for key in phases]
    return steps, labels, layers


def _plot_timing(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    steps, labels, layers = timing_layers(records)
    if len(steps) == 1:  # an area over one step has no width: stack bars instead
        bottom = 0.0
        for label, (value,) in zip(labels, layers):
            ax.bar(steps, [value], bottom=bottom, label=label, alpha=SECONDARY_ALPHA)
            bottom += value
    elif steps:
        ax.stackplot(steps, layers, labels=labels, alpha=SECONDARY_ALPHA)
    has = bool(steps)
    has |= _line(ax, *series(records, metric_keys.TIMING_STEP), label="step total", color="black")
    _finish(ax, "Time per step", "seconds", has)


def plot_records(
    records: Sequence[dict[str, Any]], out: str | pathlib.Path, *, title: str = ""
) -> pathlib.Path:
    """Draws the four panels for `records` (metrics.jsonl rows) into the PNG `out`."""
    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    _plot_reward(axes[0, 0], records)
    _plot_validation(axes[0, 1], records)
    _plot_loss(axes[1, 0], records)
    _plot_timing(axes[1, 1], records)
    steps = {int(record["step"]) for record in records if "step" in record}
    if len(steps) == 1:  # matplotlib would zoom to ±0.05 around a lone step
        (step,) = steps
        for ax in axes.flat:
            ax.set_xlim(step - 1, step + 1)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out


def plot_workdir(workdir: str | pathlib.Path, out: str | pathlib.Path | None = None) -> pathlib.Path:
    """Reads WORKDIR/metrics.jsonl and writes the PNG (default WORKDIR/curves.png)."""
    workdir = pathlib.Path(workdir)
    metrics_path = workdir / metric_keys.METRICS_FILE
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no {metric_keys.METRICS_FILE} in {workdir}")
    records = metric_keys.read_metrics(metrics_path)
    return plot_records(records, out or workdir / DEFAULT_OUTPUT, title=str(workdir))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_jax.plot", description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="run directory containing metrics.jsonl")
    parser.add_argument("--out", help=f"output PNG (default WORKDIR/{DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    try:
        path = plot_workdir(args.workdir, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
