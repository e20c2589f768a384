"""Tests for grpo_jax.plot: renders a PNG from synthetic runs, including degenerate ones."""
import json
import subprocess
import sys

import pytest

from grpo_jax import metrics, plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(workdir, records):
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / metrics.METRICS_FILE).open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def synthetic_records(num_steps):
    records = []
    for step in range(num_steps):
        record = {
            "step": step,
            metrics.TRAIN_REWARD_MEAN: 0.2 + 0.05 * step,
            metrics.TRAIN_REWARD_STD: 0.1,
            metrics.TRAIN_LOSS: None if step == 2 else 0.01 * step,  # a NaN that was logged
            metrics.TIMING_ROLLOUT: 30.0,
            metrics.TIMING_LOGPROB: 5.0,
            metrics.TIMING_UPDATE: 10.0,
            metrics.TIMING_STEP: 46.0,
        }
        if step % 2 == 0:
            record[metrics.VAL_ACCURACY] = 0.3 + 0.02 * step
            record[metrics.val_category_key("email")] = 0.5
            record[metrics.val_category_key("calendar")] = "inf"
        records.append(record)
    return records


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("num_steps", [1, 12])
def test_plot_synthetic_run(tmp_path, num_steps):
    write_run(tmp_path, synthetic_records(num_steps))
    assert_png(plot.plot_workdir(tmp_path))
    assert (tmp_path / plot.DEFAULT_OUTPUT).is_file()


def test_timing_stacks_every_step_with_occasional_phases_as_zero():
    records = synthetic_records(4)
    records[3][metrics.TIMING_VALIDATION] = 20.0  # validation ran at the last step only
    steps, labels, layers = plot.timing_layers(records)
    assert steps == [0, 1, 2, 3]
    assert labels == ["rollout", "logprob", "update", "validation"]
    assert layers[labels.index("validation")] == [0.0, 0.0, 0.0, 20.0]
    assert layers[labels.index("rollout")] == [30.0] * 4


def test_plot_missing_keys_and_cli(tmp_path):
    write_run(tmp_path / "run", [{"step": 0, "unrelated": 1.0}, {"step": 1}])
    out = tmp_path / "out" / "fig.png"
    assert plot.main([str(tmp_path / "run"), "--out", str(out)]) == 0
    assert_png(out)
    assert plot.main([str(tmp_path / "missing")]) == 1


def test_plot_module_entry_point(tmp_path):
    write_run(tmp_path, synthetic_records(3))
    out = tmp_path / "cli.png"
    result = subprocess.run([sys.executable, "-m", "grpo_jax.plot", str(tmp_path), "--out", str(out)],
                            capture_output=True, text=True, timeout=120,
                            cwd=str(plot.pathlib.Path(plot.__file__).resolve().parents[1]))
    assert result.returncode == 0, result.stderr
    assert_png(out)
