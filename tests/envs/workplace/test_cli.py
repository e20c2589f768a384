"""The command line: generate tasks, score rollouts."""
from __future__ import annotations

import json

from grpo_jax.envs.workplace.__main__ import main


def test_generate_then_score_the_expert_and_an_idle_agent(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    assert main(["generate", "--seed", "1", "--n", "12", "--out", str(tasks), "--sandbox-seed", "0", "--no-tools"]) == 0
    assert "wrote 12 train tasks" in capsys.readouterr().out
    rows = [json.loads(line) for line in tasks.read_text().splitlines()]
    expert = [{"predicted": [c for t in r["expert"] for c in t.get("tool_calls", [])],
               "ground_truth": r["ground_truth"], "category": r["category"], "sandbox": r["sandbox"]} for r in rows]
    scored = tmp_path / "expert.jsonl"
    scored.write_text("\n".join(json.dumps(r) for r in expert))
    assert main(["score", str(scored)]) == 0
    assert "all" in (report := capsys.readouterr().out) and report.strip().splitlines()[-1].endswith("1.000")
    idle = tmp_path / "idle.jsonl"
    idle.write_text("\n".join(json.dumps({"responses_create_params": r["responses_create_params"],
                                          "response": {"output": []}}) for r in rows))
    assert main(["score", str(idle), "--tasks", str(tasks), "--sandbox-seed", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split()[-1] != "1.000"


def test_score_nemo_gym_rollouts_without_ground_truth_counts_them_unscored(nemo_gym_workplace_dir, capsys):
    sandbox = nemo_gym_workplace_dir / "csv_data" / "processed"
    rollouts = nemo_gym_workplace_dir / "data" / "example_rollouts.jsonl"
    assert main(["score", "--sandbox", str(sandbox), str(rollouts)]) == 0
    assert "5 rows had no ground truth" in capsys.readouterr().out
