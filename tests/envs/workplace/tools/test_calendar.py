"""Calendar tools: normal behaviour and every error path (NeMo Gym and WorkBench)."""
from __future__ import annotations

import pytest

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tools.calendar import (
    calendar_create_event, calendar_delete_event, calendar_get_event_information_by_id, calendar_search_events,
    calendar_update_event,
)
from tests.envs.tiny_sandbox import BOB


def ids(result):
    return [event["event_id"] for event in (result["events"] if isinstance(result, dict) else result)]


def test_get_event_information(tiny):
    world = tiny.world()
    assert calendar_get_event_information_by_id(world, "00000001", "duration") == {"duration": "60"}
    assert calendar_get_event_information_by_id(world) == "Event ID not provided."
    assert calendar_get_event_information_by_id(world, "00000001") == "Field not provided."
    assert calendar_get_event_information_by_id(world, "1", "duration") == \
        "Invalid event ID format. Expected 8-digit ID."
    assert calendar_get_event_information_by_id(world, "00000001", "room").startswith("Invalid field.")
    assert calendar_get_event_information_by_id(world, "00000009", "duration") == "Event not found."


def test_search_matches_name_or_participant_latest_first(tiny):
    world = tiny.world()
    assert ids(calendar_search_events(world, query="SYNC")) == ["00000000", "00000002"]
    assert ids(calendar_search_events(world, query="bob.reyes")) == ["00000002"]
    assert ids(calendar_search_events(world, time_min="2023-12-01 10:00:00")) == ["00000000"]
    assert ids(calendar_search_events(world, time_max="2023-11-30")) == ["00000001"]
    assert calendar_search_events(world, query="retro") == "No events found."
    assert calendar_search_events(world, time_min="soon") == "Invalid time_min format. Expected YYYY-MM-DD HH:MM:SS."
    assert calendar_search_events(world, time_max="later") == "Invalid time_max format. Expected YYYY-MM-DD HH:MM:SS."
    result = calendar_search_events(world, page_size=2, page=2)
    assert result["pagination"] == {"total_events": 3, "page": 2, "page_size": 2, "total_pages": 2}
    with pytest.raises(Exception):
        calendar_search_events(world, query="(")  # the query is a regular expression


def test_workbench_search_is_in_table_order(tiny_workbench):
    assert ids(calendar_search_events(tiny_workbench.world(), query="sync")) == ["00000002", "00000000"]


def test_create_event_appends_with_label_zero(tiny):
    world = tiny.world()
    event_id = calendar_create_event(world, "kickoff", "Bob.Reyes@example.com", "2023-12-04 10:00:00", "30")
    assert event_id == "00000003"
    table = world.tables[C.EVENTS]
    assert table.rows[-1] == ("00000003", "kickoff", BOB, "2023-12-04 10:00:00", "30")
    assert table.labels == (0, 1, 2, 0)


@pytest.mark.parametrize("args, message", [
    ((None, BOB, "2023-12-04 10:00:00", "30"), "Event name not provided."),
    (("x", None, "2023-12-04 10:00:00", "30"), "Participant email not provided."),
    (("x", BOB, None, "30"), "Event start not provided."),
    (("x", BOB, "2023-12-04 10:00:00", None), "Event duration not provided."),
    (("x", BOB, "2023-11-31 09:00:00", "30"), "Invalid event_start format. Expected YYYY-MM-DD HH:MM:SS."),
    (("x", BOB, "2023-12-04 10:00:00", "-5"), "Duration must be a positive number of minutes."),
    (("x", BOB, "2023-12-04 10:00:00", "half an hour"), "Invalid duration format. Expected a number of minutes."),
])
def test_create_event_rejects(tiny, args, message):
    world = tiny.world()
    assert calendar_create_event(world, *args) == message
    assert world.tables[C.EVENTS] is tiny.tables[C.EVENTS]


def test_create_event_stores_an_integer_duration_as_given(tiny):
    world = tiny.world()
    calendar_create_event(world, "x", BOB, "2023-12-04 10:00:00", 30)
    assert world.tables[C.EVENTS].rows[-1][-1] == 30


def test_workbench_create_event_does_not_validate(tiny_workbench):
    world = tiny_workbench.world()
    assert calendar_create_event(world, "x", BOB, "2023-11-31 09:00:00", "soon") == "00000003"


def test_delete_event(tiny):
    world = tiny.world()
    assert calendar_delete_event(world, "00000002") == "Event deleted successfully."
    assert world.tables[C.EVENTS].labels == (0, 2)
    assert calendar_delete_event(world, "00000002") == "Event not found."
    assert calendar_delete_event(world) == "Event ID not provided."
    assert calendar_delete_event(world, "2") == "Invalid event ID format. Expected 8-digit ID."


def test_update_event(tiny):
    world = tiny.world()
    assert calendar_update_event(world, "00000002", "participant_email", "CARA.LIND@example.com") == \
        "Event updated successfully."
    assert world.tables[C.EVENTS].record(1)["participant_email"] == "cara.lind@example.com"
    assert world.tables[C.EVENTS].rows[0] is tiny.tables[C.EVENTS].rows[0]  # untouched rows are shared
    assert calendar_update_event(world, "00000002", "event_name") == "Event ID, field, or new value not provided."
    assert calendar_update_event(world, "2", "event_name", "x") == "Invalid event ID format. Expected 8-digit ID."
    assert calendar_update_event(world, "00000002", "room", "x").startswith("Invalid field.")
    assert calendar_update_event(world, "00000002", "event_start", "noon").startswith("Invalid event_start")
    assert calendar_update_event(world, "00000002", "duration", "0") == "Duration must be a positive number of minutes."
    assert calendar_update_event(world, "00000002", "duration", "long").startswith("Invalid duration format")
    assert calendar_update_event(world, "00000009", "event_name", "x") == "Event not found."


def test_workbench_update_of_an_unknown_field_adds_a_column(tiny_workbench):
    world = tiny_workbench.world()
    assert calendar_update_event(world, "00000002", "room", "B2") == "Event updated successfully."
    assert world.tables[C.EVENTS].columns[-1] == "room"
