"""Expert trajectories: replayed through an Episode they earn reward 1.0, within 6 model calls,
acting only on IDs and addresses an earlier read showed."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import FAMILIES, WorkplaceEnvironment, as_tool_calls, generate_tasks
from grpo_jax.envs.workplace.tasks.expert import MAX_MODEL_CALLS, visibility_problems


@pytest.mark.parametrize("sandbox_fixture", ["company", "nemo_sandbox"])
def test_every_expert_trajectory_earns_full_reward_and_sees_what_it_uses(request, sandbox_fixture):
    rows = generate_tasks(request.getfixturevalue(sandbox_fixture), seed=11, n=2 * len(FAMILIES), include_tools=False)
    env = WorkplaceEnvironment()
    for row in rows:
        turns = [as_tool_calls(turn) for turn in row["expert"]]
        assert 2 <= len(turns) <= MAX_MODEL_CALLS and isinstance(turns[-1], str)
        assert all(isinstance(turn, list) and turn for turn in turns[:-1])
        episode = env.start(row)
        responses, writes = [], []
        for turn in turns[:-1]:
            texts = episode.call_tools(turn)
            calls = [{"name": c.name, "arguments": c.arguments} for c in turn]
            if any(c["name"] in {g["name"] for g in row["ground_truth"]} for c in calls):
                writes = calls
            else:
                responses.extend(texts)
        query = row["responses_create_params"]["input"][1]["content"]
        assert visibility_problems(query, responses, writes) == [], row["family"]
        result = episode.finish()
        assert result.reward == 1.0, (row["family"], result.info["differences"])


def test_visibility_rule_catches_unseen_ids():
    write = {"name": "email_delete_email", "arguments": {"email_id": "00000042"}}
    assert visibility_problems("Delete it", ['{"output":"No emails found."}'], [write])
    assert not visibility_problems("Delete it", ['{"email_id":"00000042"}'], [write])
    send = {"name": "email_send_email", "arguments": {"recipient": "a@b.co", "subject": "s", "body": "b"}}
    assert not visibility_problems("Email a@b.co please", [], [send])
