"""Tool schemas: the same names, parameters and required lists as NeMo Gym's 27."""
from __future__ import annotations

import datetime as dt

import pytest

from grpo_jax.envs.workplace import TOOL_NAMES, WRITE_TOOL_NAMES, chat_tools, responses_tools, system_prompt


def _shape(tool):
    parameters = tool["parameters"]
    return (tool["name"], {name: spec["type"] for name, spec in parameters["properties"].items()},
            sorted(parameters["required"]), parameters.get("additionalProperties"), tool.get("strict"))


def test_the_27_schemas_match_nemo_gym(nemo_examples):
    ours = [_shape(tool) for tool in responses_tools()]
    for row in nemo_examples:
        assert ours == [_shape(tool) for tool in row["responses_create_params"]["tools"]]
    assert len(TOOL_NAMES) == 27 and len(WRITE_TOOL_NAMES) == 14


def test_chat_tools_subset_and_compact_rendering():
    full = chat_tools()
    assert len(full) == 27 and full[0]["type"] == "function" and "description" in full[0]["function"]
    compact = chat_tools(["email_send_email", "email_search_emails"], style="compact")
    assert [t["function"]["name"] for t in compact] == ["email_search_emails", "email_send_email"]
    parameters = compact[1]["function"]["parameters"]
    text = {"type": "string"}
    assert parameters == {"type": "object", "properties": {"recipient": text, "subject": text, "body": text},
                          "required": ["recipient", "subject", "body"]}
    assert len(str(compact)) < len(str(chat_tools(["email_send_email", "email_search_emails"])))
    with pytest.raises(ValueError, match="unknown tool names"):
        chat_tools(["email_shred_email"])
    minimal = chat_tools(["email_send_email"], style="minimal")
    assert minimal == [{"type": "function", "function": {
        "name": "email_send_email", "parameters": ["recipient", "subject", "body"],
        "required": ["recipient", "subject", "body"]}}]
    assert len(str(minimal)) < len(str(chat_tools(["email_send_email"], style="compact")))
    assert chat_tools(["email_send_email"], style="none") == []
    with pytest.raises(ValueError, match="tool schema style"):
        chat_tools(style="tiny")


def test_system_prompts():
    now = dt.datetime(2023, 11, 30, 23, 59)
    assert system_prompt(now) == (
        "Today's date is Thursday, 2023-11-30 and the current time is 23:59:00. Remember the current date and "
        "time when answering queries. Meetings must not start before 9am or end after 6pm.")
    assert len(system_prompt(now, "short")) < len(system_prompt(now)) / 2
    with pytest.raises(ValueError):
        system_prompt(now, "verbose")


def test_full_prompt_is_the_one_of_nemo_rows(nemo_examples, nemo_sandbox):
    assert nemo_examples[0]["responses_create_params"]["input"][0]["content"] == system_prompt(nemo_sandbox.now)
