"""The outcome verifier: reference semantics and the properties they imply."""
from __future__ import annotations

import json

import pytest

from grpo_jax.envs.base import ToolCall
from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace import verify, verify_with_details
from tests.envs.tiny_sandbox import ALICE, BOB

DELETE = {"name": "email_delete_email", "arguments": {"email_id": "00000000"}}
EVENT = {"name": "calendar_create_event", "arguments": {"event_name": "kickoff", "participant_email": BOB,
                                                        "event_start": "2023-12-04 10:00:00", "duration": "30"}}
TASK = {"name": "project_management_create_task", "arguments": {"task_name": "Write docs", "assigned_to_email": BOB,
                                                               "list_name": "Backlog", "due_date": "2023-12-08",
                                                               "board": "Design"}}
READS = [{"name": "email_search_emails", "arguments": {"query": "budget"}},
         {"name": "company_directory_find_email_address", "arguments": {"name": "bob"}},
         {"name": "calendar_search_events", "arguments": {}}]


def event(**changes):
    return {"name": EVENT["name"], "arguments": {**EVENT["arguments"], **changes}}


def test_ground_truth_and_empty_answers(tiny):
    assert verify(tiny, [DELETE], [DELETE]) == 1.0
    assert verify(tiny, [], [DELETE]) == 0.0
    assert verify(tiny, [], []) == 1.0


def test_read_only_calls_never_change_the_reward(tiny):
    assert verify(tiny, READS + [DELETE] + READS, [DELETE]) == 1.0
    assert verify(tiny, READS, []) == 1.0
    assert verify(tiny, READS, [DELETE]) == 0.0


def test_swapping_two_creates_of_one_table_fails_but_of_two_tables_passes(tiny):
    other = event(event_name="retro")
    assert verify(tiny, [other, EVENT], [EVENT, other]) == 0.0
    assert verify(tiny, [TASK, EVENT], [EVENT, TASK]) == 1.0


def test_order_of_deletes_and_updates_on_different_rows_does_not_matter(tiny):
    second = {"name": "email_delete_email", "arguments": {"email_id": "00000001"}}
    assert verify(tiny, [second, DELETE], [DELETE, second]) == 1.0


def test_labels_matter_a_delete_then_send_is_not_a_send_then_delete(tiny):
    send = {"name": "email_send_email", "arguments": {"recipient": ALICE, "subject": "s", "body": "b"}}
    verdict = verify_with_details(tiny, [send, DELETE], [DELETE, send])
    assert verdict.reward == 0.0 and "labels" in verdict.differences[C.EMAILS]


def test_case_changes_pass_except_in_status_list_name_and_board(tiny):
    assert verify(tiny, [event(event_name="KICKOFF", participant_email=BOB.upper())], [EVENT]) == 1.0
    update = {"name": "customer_relationship_manager_update_customer",
              "arguments": {"customer_id": "00000001", "field": "notes", "new_value": "Called."}}
    upper = {**update, "arguments": {**update["arguments"], "new_value": "CALLED."}}
    assert verify(tiny, [upper], [update]) == 1.0
    add = {"name": "customer_relationship_manager_add_customer",
           "arguments": {"customer_name": "Nia Moss", "assigned_to_email": ALICE, "status": "Lead"}}
    lowered = {**add, "arguments": {**add["arguments"], "status": "lead"}}  # add_customer does not validate
    assert verify(tiny, [lowered], [add]) == 0.0
    task = {"name": "project_management_update_task",
            "arguments": {"task_id": "00000001", "field": "list_name", "new_value": "In Review"}}
    assert verify(tiny, [{**task, "arguments": {**task["arguments"], "new_value": "in review"}}], [task]) == 0.0


def test_an_extra_write_fails(tiny):
    assert verify(tiny, [DELETE, EVENT], [DELETE]) == 0.0
    assert verify(tiny, [DELETE, DELETE], [DELETE]) == 1.0  # the second delete finds nothing
    assert verify(tiny, [EVENT, EVENT], [EVENT]) == 0.0


def test_calls_that_raise_or_fail_are_ignored(tiny):
    raising = [{"name": "no_such_tool", "arguments": {}},
               {"name": "email_delete_email", "arguments": {"email_id": "00000000", "priority": "high"}},
               {"name": "email_delete_email", "arguments": None},
               {"name": "email_delete_email", "arguments": "{not json"},
               {"name": "email_send_email", "arguments": {"recipient": "nobody", "subject": "s", "body": "b"}}]
    assert verify(tiny, raising + [DELETE], [DELETE]) == 1.0
    assert verify(tiny, raising, []) == 1.0


def test_value_types_matter_int_duration_is_not_text(tiny):
    assert verify(tiny, [event(duration=30)], [EVENT]) == 0.0
    assert verify(tiny, [event(duration=30)], [event(duration=30.0)]) == 1.0  # both become NaN


def test_ids_must_match_exactly(tiny):
    assert verify(tiny, [{"name": "email_delete_email", "arguments": {"email_id": "0"}}], [DELETE]) == 0.0


def test_json_string_arguments_and_tool_calls_are_accepted(tiny):
    as_text = {"name": DELETE["name"], "arguments": json.dumps(DELETE["arguments"])}
    assert verify(tiny, [ToolCall(**as_text)], [as_text]) == 1.0


def test_verify_never_mutates_the_sandbox(tiny):
    before = dict(tiny.tables)
    verify(tiny, [DELETE, EVENT, TASK], [DELETE])
    assert tiny.tables == before


def test_diagnostic_names_the_differing_tables(tiny):
    verdict = verify_with_details(tiny, [EVENT], [DELETE])
    assert set(verdict.differing_tables) == {C.EVENTS, C.EMAILS}
    assert "rows instead of" in verdict.differences[C.EMAILS]


@pytest.mark.parametrize("flavor_fixture, reward", [("tiny", 0.0), ("tiny_workbench", 1.0)])
def test_reply_rewritten_as_send_with_the_same_subject(request, flavor_fixture, reward):
    sandbox = request.getfixturevalue(flavor_fixture)
    reply = {"name": "email_reply_email", "arguments": {"email_id": "00000000", "body": "Thanks"}}
    send = {"name": "email_send_email", "arguments": {"recipient": BOB, "subject": "Launch plan", "body": "Thanks"}}
    assert verify(sandbox, [send], [reply]) == reward
