"""Device time per XLA op of a region, from a jax.profiler trace read back with
`jax.profiler.ProfileData` (no TensorFlow, TensorBoard or xprof on the machine).

A GPU trace has one plane per device ("/device:GPU:0") whose events are kernels; XLA tags each
with the HLO instruction it runs (stat "hlo_op") and its program ("hlo_module"). On the CPU the
same tags sit on the host plane's thunk events, so `--smoke` runs this path too.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile

import jax

# What an op is, from its HLO instruction and kernel names (first match wins).
CATEGORIES = (
    ("attention kernel (cuDNN)", re.compile(r"cudnn|fmha|flash", re.I)),
    ("matmul", re.compile(r"gemm|cublas|xmma|cutlass|nvjet|wgmma|dot", re.I)),
    ("convolution", re.compile(r"convolution|conv_", re.I)),
    ("collective", re.compile(r"all-reduce|all-gather|reduce-scatter|all-to-all|nccl", re.I)),
    ("reduce", re.compile(r"reduce|argm", re.I)),
    ("dynamic-update-slice / scatter / gather", re.compile(r"dynamic|scatter|gather", re.I)),
    ("copy / transpose", re.compile(r"copy|transpose|concat|pad|slice", re.I)),
    ("other fusion", re.compile(r"fusion", re.I)),
)


def category(hlo_op: str, kernel: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(hlo_op) or pattern.search(kernel):
            return name
    return "other"


# Control-flow instructions: on the CPU their events span their bodies' events (counted already).
_CONTAINERS = re.compile(r"^(while|cond|conditional|call)\b")


def _op_lines(plane):
    """The lines of a plane that hold one event per op run: its "XLA Ops" line where the trace
    has one (TPU; some GPU traces), else its per-stream kernel lines (GPU), else all lines;
    never the module or step lines, whose events span many ops."""
    lines = [line for line in plane.lines
             if line.name not in ("XLA Modules", "Steps", "XLA TraceMe", "Async XLA Ops")]
    return ([line for line in lines if line.name == "XLA Ops"]
            or [line for line in lines if line.name.startswith("Stream")] or lines)


def _device_events(profile):
    """(hlo_module, hlo_op, kernel name, seconds) of every tagged event on the device planes, or
    on the host planes when there are none (CPU), control-flow containers left out."""
    planes = list(profile.planes)
    device = [p for p in planes if p.name.startswith("/device:")]
    if not device and jax.default_backend() != "cpu":
        # Host events of an accelerator's program time kernel launches, not kernels.
        raise RuntimeError(f"the trace has no device plane (planes: {[p.name for p in planes]}); "
                           "is CUPTI missing?")
    for plane in device or [p for p in planes if p.name.startswith("/host:")]:
        for line in _op_lines(plane):
            for event in line.events:
                stats = dict(event.stats)
                if "hlo_op" in stats and not _CONTAINERS.match(str(stats["hlo_op"])):
                    yield (str(stats.get("hlo_module", "?")), str(stats["hlo_op"]), event.name,
                           event.duration_ns * 1e-9)


def profile_ops(run, keep_trace_as: str | None = None) -> dict:
    """Runs `run()` (which must block on its results) under the profiler. Returns per op
    (module, hlo_op): seconds summed over the region, event count, one kernel name, category;
    the region's total device seconds (events on several streams can overlap, so this can
    exceed wall time); and where the trace was kept (`keep_trace_as`, if it is at most 15 MiB)."""
    logdir = tempfile.mkdtemp(prefix="grpo_jax_profile_")
    try:
        with jax.profiler.trace(logdir):
            run()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
        path = max(paths, key=os.path.getmtime)
        ops: dict[tuple[str, str], dict] = {}
        for module, op, kernel, seconds in _device_events(
                jax.profiler.ProfileData.from_file(path)):
            row = ops.setdefault((module, op), dict(seconds=0.0, count=0, kernel=kernel,
                                                    category=category(op, kernel)))
            row["seconds"] += seconds
            row["count"] += 1
        kept = None
        if keep_trace_as and os.path.getsize(path) <= 15 * 2**20:
            os.makedirs(os.path.dirname(keep_trace_as) or ".", exist_ok=True)
            shutil.copyfile(path, keep_trace_as)
            kept = keep_trace_as
        return dict(ops=ops, device_s=sum(r["seconds"] for r in ops.values()), trace=kept,
                    trace_bytes=os.path.getsize(path))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def summarize(profile: dict, per: int, top: int = 15) -> dict:
    """Per-`per` (e.g. per decode step) milliseconds by category and for the `top` ops."""
    ops = profile["ops"]
    by_category: dict[str, float] = {}
    for row in ops.values():
        by_category[row["category"]] = by_category.get(row["category"], 0.0) + row["seconds"]
    ranked = sorted(ops.items(), key=lambda item: -item[1]["seconds"])[:top]
    total = profile["device_s"] or 1.0
    return dict(
        device_ms=profile["device_s"] * 1e3 / per,
        categories={k: dict(ms=v * 1e3 / per, share=v / total)
                    for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        top=[dict(module=module, op=op, kernel=row["kernel"][:80], category=row["category"],
                  ms=row["seconds"] * 1e3 / per, share=row["seconds"] / total,
                  calls=row["count"] / per)
             for (module, op), row in ranked],
        trace=profile["trace"], trace_bytes=profile["trace_bytes"])
