"""Episodes: the calls run on a private world, errors become texts, rewards come from the state."""
from __future__ import annotations

import json

import pytest

from grpo_jax.envs.base import Environment, Episode, ToolCall
from grpo_jax.envs.workplace import WorkplaceEnvironment, WorkplaceOptions
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.verifier import expected_world

GROUND_TRUTH = [{"name": "email_delete_email", "arguments": json.dumps({"email_id": "00000000"})}]


def task(ground_truth=GROUND_TRUTH, **extra):
    return {"responses_create_params": {"input": [{"role": "system", "content": "You are at work."},
                                                  {"role": "user", "content": "Delete Bob's email."}]},
            "ground_truth": ground_truth, "category": "workplace_assistant_email", "family": "E1", **extra}


def test_an_episode_runs_calls_in_order_and_scores_the_state(tiny):
    env = WorkplaceEnvironment(tiny)
    assert isinstance(env, Environment)
    episode = env.start(task())
    assert isinstance(episode, Episode)
    assert episode.messages[1]["content"] == "Delete Bob's email." and len(episode.tools) == 27
    texts = episode.call_tools([ToolCall("email_search_emails", {"query": "bob"}),
                                ToolCall("email_delete_email", '{"email_id": "00000000"}')])
    assert json.loads(texts[0])["output"]["emails"][0]["email_id"] == "00000000"
    assert texts[1] == '{"output":"Email deleted successfully."}'
    result = episode.finish()
    assert result.reward == 1.0 and result.info["differing_tables"] == [] and result.info["num_calls"] == 2
    assert result.info["family"] == "E1" and result.info["category"] == "workplace_assistant_email"


def test_malformed_calls_become_texts_and_never_raise(tiny):
    episode = WorkplaceEnvironment(tiny).start(task())
    texts = episode.call_tools([ToolCall("email_shred_email", {}), ToolCall("email_delete_email", None),
                                ToolCall("email_delete_email", "{bad"), ToolCall("email_delete_email", {"id": "1"}),
                                ToolCall("email_delete_email", {"email_id": 123})])
    assert "Error executing tool 'email_shred_email'" in texts[0]
    assert all("Invalid tool call arguments" in t for t in texts[1:3])
    assert "unexpected keyword argument 'id'" in texts[3]
    assert texts[4] == '{"output":"Email not found."}'
    result = episode.finish()
    assert result.reward == 0.0 and result.info["num_failed_calls"] == 4
    assert result.info["differing_tables"] == [C.EMAILS]


def test_episodes_are_independent_and_share_the_cached_ground_truth(tiny):
    env = WorkplaceEnvironment(tiny)
    first, second = env.start(task()), env.start(task())
    first.call_tools([ToolCall("email_delete_email", {"email_id": "00000000"})])
    assert second.finish().reward == 0.0 and first.finish().reward == 1.0
    assert expected_world(tiny, GROUND_TRUTH) is expected_world(tiny, GROUND_TRUTH)


def test_null_arguments_are_scored_the_verifier_way(tiny):
    add = {"customer_name": "Nia Moss", "assigned_to_email": "a@b.co", "status": "Lead"}
    ground_truth = [{"name": "customer_relationship_manager_add_customer", "arguments": json.dumps(add)}]
    episode = WorkplaceEnvironment(tiny).start(task(ground_truth))
    # Live, the null is dropped and notes default to ""; the verifier passes notes=None instead.
    episode.call_tools([ToolCall("customer_relationship_manager_add_customer", {**add, "notes": None})])
    assert episode.finish().reward == 0.0


def test_options_select_tools_compact_schemas_and_the_short_prompt(tiny):
    options = WorkplaceOptions(("email_delete_email", "email_search_emails"), tool_schema="compact", system_prompt="short")
    episode = WorkplaceEnvironment(tiny, options).start(task())
    assert [t["function"]["name"] for t in episode.tools] == ["email_search_emails", "email_delete_email"]
    assert episode.messages[0]["content"].startswith("Now: Thursday, 2023-11-30")
    assert episode.call_tools([ToolCall("company_directory_find_email_address", {"name": "bob"})])[0].startswith(
        '{"output":["bob')  # tools left out of the prompt still work
    with pytest.raises(ValueError, match="unknown tool names"):
        WorkplaceOptions(("email_shred_email",))
    with pytest.raises(ValueError, match="system_prompt"):
        WorkplaceOptions(system_prompt="long")
    with pytest.raises(ValueError, match="tool_schema"):
        WorkplaceOptions(tool_schema="tiny")
    # "none": no tool list in the prompt (a model trained on the tools), every tool still callable.
    unlisted = WorkplaceEnvironment(tiny, WorkplaceOptions(("email_send_email",), tool_schema="none")).start(task())
    assert unlisted.tools == []
    assert unlisted.call_tools([ToolCall("company_directory_find_email_address", {"name": "bob"})])[0].startswith(
        '{"output":["bob')


def test_a_task_names_its_own_sandbox(company):
    env = WorkplaceEnvironment()
    episode = env.start(task([], sandbox=dict(company.spec)))
    assert episode.finish().reward == 1.0
    same = task([], sandbox=dict(company.spec))
    assert env.sandbox_for(same) is env.sandbox_for(dict(same))
    with pytest.raises(ValueError, match="no default sandbox"):
        env.start(task())
