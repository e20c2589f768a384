"""Benchmark of the workplace verifier (CPU): latency, a training step's scoring, and agreement
with the held-out labels of WorkBench's and NeMo Gym's own verifiers.

    python benchmarks/bench_verifier.py [--heldout ../shared/heldout] [--skip-heldout]

1. Median / p90 time of `verify` for one rollout (expert calls with reads, 4-7 calls), with the
   ground truth's end state cached (as in training: G rollouts share a task) and uncached.
2. Time to score 1,024 rollouts (64 tasks x 16), the NeMo RL recipe's step: episodes replay
   their calls live, then `finish()` compares with the shared ground-truth state.
3. Agreement with `workbench_verifier_cases.jsonl`: `label_state` on the `workbench` sandbox
   (WorkBench CSVs, now 2023-11-30 00:00:00, WorkBench tool semantics) and on the `nemo_gym`
   sandbox (NeMo Gym CSVs, NeMo semantics); plus NeMo semantics on WorkBench's tables against
   `label_state_nemo_gym`.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections import Counter

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grpo_jax.envs.workplace import (  # noqa: E402
    NEMO_NOW, WORKBENCH_NOW, Sandbox, WorkplaceEnvironment, as_tool_calls, generate_tasks, verify,
)
from grpo_jax.envs.workplace import verifier  # noqa: E402

SHARED = REPO.parent / "shared"
NEMO_CSV = (SHARED / "data" / "nemo_gym_workplace" / "resources_servers" / "workplace_assistant" / "csv_data"
            / "processed")
TASKS_PER_STEP, ROLLOUTS_PER_TASK = 64, 16
LATENCY_TASKS = 300


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, {platform.system()}"


def expert_calls(row: dict) -> list[dict]:
    return [call for turn in row["expert"] for call in turn.get("tool_calls", [])]


def latency(sandbox: Sandbox) -> None:
    rows = generate_tasks(sandbox, seed=0, n=LATENCY_TASKS, include_tools=False)
    cached, cold = [], []
    for row in rows:
        predicted = expert_calls(row)
        verifier._GROUND_TRUTH_CACHES.clear()
        start = time.perf_counter()
        reward = verify(sandbox, predicted, row["ground_truth"])
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify(sandbox, predicted, row["ground_truth"])
        cached.append(time.perf_counter() - start)
        assert reward == 1.0, row["family"]
    calls = statistics.mean(len(expert_calls(r)) for r in rows)
    print(f"verify one rollout ({len(rows)} tasks, {calls:.1f} calls each incl. reads):")
    for name, times in (("ground truth cached", cached), ("ground truth replayed too", cold)):
        times = sorted(times)
        print(f"  {name:<26} median {1e3 * statistics.median(times):.3f} ms   "
              f"p90 {1e3 * times[int(0.9 * len(times))]:.3f} ms")


def training_step(sandbox: Sandbox) -> None:
    rows = generate_tasks(sandbox, seed=1, n=TASKS_PER_STEP, include_tools=False)
    env = WorkplaceEnvironment(sandbox)
    verifier._GROUND_TRUTH_CACHES.clear()
    episodes = []
    start = time.perf_counter()
    for row in rows:
        turns = [as_tool_calls(turn) for turn in row["expert"]]
        for _ in range(ROLLOUTS_PER_TASK):
            episode = env.start(row)
            for turn in turns[:-1]:
                episode.call_tools(turn)
            episodes.append(episode)
    played = time.perf_counter() - start
    start = time.perf_counter()
    rewards = [episode.finish().reward for episode in episodes]
    scored = time.perf_counter() - start
    print(f"score {len(episodes)} rollouts ({TASKS_PER_STEP} tasks x {ROLLOUTS_PER_TASK}): finish() {scored:.3f} s "
          f"({1e3 * scored / len(episodes):.3f} ms each); replaying their tool calls live took {played:.3f} s; "
          f"mean reward {statistics.mean(rewards):.3f}")


def heldout(folder: pathlib.Path) -> None:
    cases_path = folder / "workbench_verifier_cases.jsonl"
    with cases_path.open() as handle:
        cases = [json.loads(line) for line in handle]
    workbench = Sandbox.from_csv_dir(folder / "workbench" / "data" / "processed", now=WORKBENCH_NOW)
    sandboxes = {"workbench": workbench, "nemo_gym": Sandbox.from_csv_dir(NEMO_CSV, now=NEMO_NOW)}
    workbench_as_nemo = Sandbox.from_csv_dir(folder / "workbench" / "data" / "processed", now=WORKBENCH_NOW,
                                             flavor="nemo")
    agree, total, confusion = Counter(), Counter(), Counter()
    nemo_agree = nemo_total = 0
    start = time.perf_counter()
    for case in cases:
        reward = int(verify(sandboxes[case["sandbox"]], case["predicted"], case["ground_truth"]))
        total[case["source"]] += 1
        agree[case["source"]] += reward == case["label_state"]
        confusion[(case["label_state"], reward)] += 1
        if case.get("label_state_nemo_gym") is not None:
            nemo_total += 1
            nemo_agree += int(verify(workbench_as_nemo, case["predicted"], case["ground_truth"])) == \
                case["label_state_nemo_gym"]
    elapsed = time.perf_counter() - start
    print(f"held-out agreement with label_state ({len(cases)} cases, {elapsed:.1f} s):")
    for source in sorted(total):
        print(f"  {source:<24} {agree[source]:>5} / {total[source]:<5} ({100 * agree[source] / total[source]:.2f}%)")
    print(f"  {'all':<24} {sum(agree.values()):>5} / {sum(total.values()):<5}   "
          f"(label 1 -> 1: {confusion[(1, 1)]}, 1 -> 0: {confusion[(1, 0)]}, 0 -> 1: {confusion[(0, 1)]}, "
          f"0 -> 0: {confusion[(0, 0)]})")
    print(f"  NeMo semantics on WorkBench's tables vs label_state_nemo_gym: {nemo_agree} / {nemo_total}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", type=pathlib.Path, default=SHARED / "heldout")
    parser.add_argument("--skip-heldout", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    sandbox = Sandbox.generate(0)
    latency(sandbox)
    training_step(sandbox)
    if not args.skip_heldout and (args.heldout / "workbench_verifier_cases.jsonl").is_file():
        heldout(args.heldout)


if __name__ == "__main__":
    main()
