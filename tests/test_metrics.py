"""Tests for grpo_jax.metrics: JSON safety, the JSONL/TensorBoard writer, transcripts, progress."""
import io
import json

import jax.numpy as jnp
import numpy as np

from grpo_jax import metrics


def test_json_safe_values():
    value = {
        "nan": float("nan"), "inf": float("inf"), "ninf": -np.inf, "np32": np.float32(0.5),
        "jax": jnp.asarray(2.5), "jax_nan": jnp.asarray(jnp.nan), "int": np.int64(3),
        "bool": np.bool_(True), "vec": np.array([1.0, np.nan]), "nested": {1: [np.float16(1.5)]},
        "none": None, "text": "ok",
    }
    safe = metrics.json_safe(value)
    assert safe == {
        "nan": None, "inf": "inf", "ninf": "-inf", "np32": 0.5, "jax": 2.5, "jax_nan": None,
        "int": 3, "bool": True, "vec": [1.0, None], "nested": {"1": [1.5]}, "none": None, "text": "ok",
    }
    json.dumps(safe, allow_nan=False)  # strict JSON


def test_metrics_writer_jsonl_and_tensorboard(tmp_path):
    with metrics.MetricsWriter(tmp_path) as writer:
        writer.write(0, {metrics.TRAIN_REWARD_MEAN: np.float32(0.25), metrics.TRAIN_LOSS: float("nan"),
                         metrics.VAL_ACCURACY: jnp.asarray(0.5), "train/note": "text"})
        writer.write(1, {metrics.TRAIN_REWARD_MEAN: 0.5, metrics.TRAIN_GRAD_NORM: float("inf")})
    lines = (tmp_path / metrics.METRICS_FILE).read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["step"] == 0 and first[metrics.TRAIN_REWARD_MEAN] == 0.25
    assert first[metrics.TRAIN_LOSS] is None and first[metrics.VAL_ACCURACY] == 0.5
    assert json.loads(lines[1])[metrics.TRAIN_GRAD_NORM] == "inf"
    assert any((tmp_path / metrics.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    # Appending across writers (a resumed run) and a torn last line are both tolerated.
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(2, {metrics.TRAIN_REWARD_MEAN: 1.0})
    with (tmp_path / metrics.METRICS_FILE).open("a") as handle:
        handle.write('{"step": 3, "train/rew')
    records = metrics.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [0, 1, 2]


def test_transcript_writer_caps_per_step(tmp_path):
    writer = metrics.TranscriptWriter(tmp_path, max_per_step=2)
    transcripts = [{"messages": [{"role": "user", "content": f"q{i}"}], "reward": np.float32(i)}
                   for i in range(5)]
    assert writer.write(7, transcripts, split="val") == 2
    rows = [json.loads(line) for line in (tmp_path / metrics.TRANSCRIPTS_FILE).read_text().splitlines()]
    summary = [(r["step"], r["split"], r["index"], r["reward"]) for r in rows]
    assert summary == [(7, "val", 0, 0.0), (7, "val", 1, 1.0)]
    assert rows[1]["messages"][0]["content"] == "q1"


def test_progress_reporter_line_and_quiet():
    stream = io.StringIO()
    reporter = metrics.ProgressReporter(10, stream=stream)
    line = reporter.update(1, {metrics.TRAIN_REWARD_MEAN: 0.375, metrics.TRAIN_LOSS: float("nan")})
    assert line.startswith("step 1/10") and "eta" in line and "train/reward_mean 0.375" in line
    assert stream.getvalue().strip() == line
    assert reporter.eta_seconds(0) is None and reporter.eta_seconds(1) >= 0.0
    quiet_stream = io.StringIO()
    metrics.ProgressReporter(10, quiet=True, stream=quiet_stream).update(1, {})
    assert quiet_stream.getvalue() == ""


def test_canonical_keys():
    assert metrics.val_category_key("hr/calendar") == "val/accuracy/hr_calendar"
    assert len(set(metrics.CANONICAL_KEYS)) == len(metrics.CANONICAL_KEYS)
    assert all(key.count("/") == 1 for key in metrics.CANONICAL_KEYS)
    assert metrics.prefixed("train/", {"clip_fraction": 0.1}) == {"train/clip_fraction": 0.1}
    assert metrics.json_safe(np.float64(1.0)) == 1.0


def test_grpo_metric_names_land_on_canonical_keys():
    from grpo_jax import grpo

    mask = jnp.asarray([[0, 1, 1]])
    lp = jnp.asarray([[0.0, -1.0, -2.0]])
    logged = {}
    logged.update(metrics.prefixed("train/", grpo.reward_metrics([[0.0, 1.0]])))
    logged.update(metrics.prefixed("train/", grpo.ratio_metrics(lp, lp, jnp.ones(1), mask)))
    logged.update(metrics.prefixed("train/", grpo.entropy_metrics(lp, mask)))
    logged.update(metrics.prefixed("train/", grpo.logprob_error_metrics(lp, lp, mask)))
    logged.update(metrics.prefixed("train/", grpo.token_count_metrics(mask)))
    train_keys = {key for key in metrics.CANONICAL_KEYS if key.startswith("train/")}
    produced_by_grpo = train_keys - {metrics.TRAIN_LOSS, metrics.TRAIN_LR, metrics.TRAIN_GRAD_NORM}
    assert produced_by_grpo <= set(logged)
