"""Running calls as NeMo Gym's server does: error texts, null arguments, rendering."""
from __future__ import annotations

import json

from grpo_jax.envs.base import ToolCall
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.execution import render_output, respond, run_call


def test_results_are_wrapped_as_output_json(tiny):
    text, outcome = respond(tiny.world(), ToolCall("company_directory_find_email_address", {"name": "bob"}))
    assert text == '{"output":["bob.reyes@example.com"]}' and not outcome.raised
    assert render_output({"a": None, "b": True}) == '{"output":{"a":null,"b":true}}'


def test_unknown_tool_and_unexpected_argument_become_error_texts(tiny):
    world = tiny.world()
    text, outcome = respond(world, ToolCall("email_shred_email", {}))
    assert json.loads(text)["output"] == "Error executing tool 'email_shred_email': 'email_shred_email'"
    assert outcome.raised
    text, _ = respond(world, ToolCall("email_delete_email", {"email_id": "00000000", "priority": "high"}))
    assert json.loads(text)["output"].startswith("Error executing tool 'email_delete_email': ")
    assert "unexpected keyword argument 'priority'" in text
    assert world.tables == tiny.world().tables  # nothing ran


def test_bad_json_and_unparsed_arguments(tiny):
    text, outcome = respond(tiny.world(), ToolCall("email_delete_email", '{"email_id": '))
    assert outcome is None and json.loads(text)["error"].startswith("Invalid tool call arguments: JSONDecodeError(")
    text, outcome = respond(tiny.world(), ToolCall("email_delete_email", None))
    assert outcome is None and "Invalid tool call arguments" in text


def test_a_raising_tool_leaves_the_world_as_it_was(tiny):
    world = tiny.world()
    text, outcome = respond(world, ToolCall("calendar_create_event", {"event_name": "x", "participant_email": 5,
                                                                     "event_start": "2023-12-04", "duration": "30"}))
    assert outcome.raised and "'int' object has no attribute 'lower'" in text
    assert world.tables[C.EVENTS] is tiny.tables[C.EVENTS]


def test_null_arguments_are_dropped_live_but_passed_by_the_verifier(tiny):
    arguments = {"customer_name": "Nia Moss", "assigned_to_email": "a@b.co", "status": "Lead", "notes": None}
    live, replayed = tiny.world(), tiny.world()
    run_call(live, "customer_relationship_manager_add_customer", arguments, drop_none=True)
    run_call(replayed, "customer_relationship_manager_add_customer", arguments, drop_none=False)
    assert live.tables[C.CUSTOMERS].record(2)["notes"] == ""  # the tool's default
    assert replayed.tables[C.CUSTOMERS].record(2)["notes"] is None
