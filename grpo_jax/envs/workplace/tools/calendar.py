"""Calendar toolkit: look up, search, create, delete and update events.

NeMo Gym validates IDs, fields, start times and durations; WorkBench stores whatever it is
given (an unknown field even becomes a new column). Search order differs too: NeMo Gym lists
the latest start first in pages, WorkBench returns the first 5 rows in table order.
"""
from __future__ import annotations

from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.sandbox import World
from grpo_jax.envs.workplace.timestamps import parse_timestamp
from grpo_jax.envs.workplace.tools.common import lower, next_padded_id, paginate, regex_matches, set_cells
from grpo_jax.envs.workplace.tools.spec import INTEGER, Param, ToolSpec

_ID, _NAME, _PARTICIPANT, _START, _DURATION = C.EVENT_COLUMNS
_READABLE_FIELDS = C.EVENT_COLUMNS
_UPDATABLE_FIELDS = C.EVENT_COLUMNS[1:]
# pd.concat([events, new_event]) keeps the new one-row frame's own label.
_NEW_EVENT_LABEL = 0


def calendar_get_event_information_by_id(world: World, /, event_id: Any = None, field: Any = None) -> Any:
    if not event_id:
        return "Event ID not provided."
    if not field:
        return "Field not provided."
    if world.flavor is C.Flavor.NEMO:
        if not _is_event_id(event_id):
            return "Invalid event ID format. Expected 8-digit ID."
        if field not in _READABLE_FIELDS:
            return f"Invalid field. Available fields are: {', '.join(_READABLE_FIELDS)}"
    events = world.tables[C.EVENTS]
    position = events.find(_ID, event_id)
    if position is None:
        return "Event not found."
    record = events.record(position)
    return {field: record[field]} if field in record else "Field not found."


def calendar_search_events(world: World, /, query: Any = "", time_min: Any = None, time_max: Any = None,
                           page: Any = C.DEFAULT_PAGE, page_size: Any = C.DEFAULT_PAGE_SIZE) -> Any:
    nemo = world.flavor is C.Flavor.NEMO
    lower_bound = upper_bound = None
    if time_min:
        try:
            lower_bound = parse_timestamp(time_min, world.now)
        except ValueError:
            return "Invalid time_min format. Expected YYYY-MM-DD HH:MM:SS."
    if time_max:
        try:
            upper_bound = parse_timestamp(time_max, world.now)
        except ValueError:
            return "Invalid time_max format. Expected YYYY-MM-DD HH:MM:SS."
    events = world.tables[C.EVENTS]
    by_name = regex_matches(events.column_values(_NAME), query, missing=False)
    by_participant = regex_matches(events.column_values(_PARTICIPANT), query, missing=False)
    matches = events.records([i for i, (a, b) in enumerate(zip(by_name, by_participant)) if a or b])
    if lower_bound is not None:
        matches = [m for m in matches if parse_timestamp(m[_START]) >= lower_bound]
    if upper_bound is not None:
        matches = [m for m in matches if parse_timestamp(m[_START]) <= upper_bound]
    if not matches:
        return "No events found."
    if not nemo:
        return matches[:C.WORKBENCH_RESULT_LIMIT]
    matches.sort(key=lambda m: parse_timestamp(m[_START]), reverse=True)
    shown, pagination = paginate(matches, page, page_size)
    return {"events": shown, "pagination": {"total_events": len(matches), **pagination}}


def calendar_create_event(world: World, /, event_name: Any = None, participant_email: Any = None,
                          event_start: Any = None, duration: Any = None) -> Any:
    if not event_name:
        return "Event name not provided."
    if not participant_email:
        return "Participant email not provided."
    if not event_start:
        return "Event start not provided."
    if not duration:
        return "Event duration not provided."
    if world.flavor is C.Flavor.NEMO:
        problem = _start_problem(event_start) or _duration_problem(duration)
        if problem:
            return problem
    participant_email = lower(participant_email)
    events = world.tables[C.EVENTS]
    event_id = next_padded_id(events, _ID)
    row = (event_id, event_name, participant_email, event_start, duration)
    world.tables[C.EVENTS] = events.appended_with_label(row, _NEW_EVENT_LABEL)
    return event_id


def calendar_delete_event(world: World, /, event_id: Any = None) -> Any:
    if not event_id:
        return "Event ID not provided."
    if world.flavor is C.Flavor.NEMO and not _is_event_id(event_id):
        return "Invalid event ID format. Expected 8-digit ID."
    events = world.tables[C.EVENTS]
    if not events.contains_value(_ID, event_id):
        return "Event not found."
    world.tables[C.EVENTS] = events.without(_ID, event_id)
    return "Event deleted successfully."


def calendar_update_event(world: World, /, event_id: Any = None, field: Any = None, new_value: Any = None) -> Any:
    if not event_id or not field or not new_value:
        return "Event ID, field, or new value not provided."
    if world.flavor is C.Flavor.NEMO:
        if not _is_event_id(event_id):
            return "Invalid event ID format. Expected 8-digit ID."
        if field not in _UPDATABLE_FIELDS:
            return f"Invalid field. Available fields are: {', '.join(_UPDATABLE_FIELDS)}"
        if field == _START and (problem := _start_problem(new_value)):
            return problem
        if field == _DURATION and (problem := _duration_problem(new_value)):
            return problem
    events = world.tables[C.EVENTS]
    if not events.contains_value(_ID, event_id):
        return "Event not found."
    if field == _PARTICIPANT:
        new_value = lower(new_value)
    world.tables[C.EVENTS] = set_cells(events, _ID, event_id, field, new_value)
    return "Event updated successfully."


def _is_event_id(event_id: Any) -> bool:
    return isinstance(event_id, str) and len(event_id) == C.ID_WIDTH and event_id.isdigit()


def _start_problem(event_start: Any) -> str | None:
    try:
        parse_timestamp(event_start)
    except ValueError:
        return "Invalid event_start format. Expected YYYY-MM-DD HH:MM:SS."
    return None


def _duration_problem(duration: Any) -> str | None:
    try:
        if int(duration) <= 0:
            return "Duration must be a positive number of minutes."
    except ValueError:
        return "Invalid duration format. Expected a number of minutes."
    return None


TOOLS = (
    ToolSpec("calendar_get_event_information_by_id", calendar_get_event_information_by_id,
             "Returns one field of the event with the given ID.", (
                 Param("event_id", "8-digit ID of the event", required=True),
                 Param("field", "The field to return: 'event_id', 'event_name', 'participant_email', "
                                "'event_start' or 'duration'", required=True),
             )),
    ToolSpec("calendar_search_events", calendar_search_events,
             "Searches events, latest start first, in pages.", (
                 Param("query", "Text to find in the event name or the participant's email"),
                 Param("time_min", "Earliest event start, inclusive. Format: YYYY-MM-DD HH:MM:SS"),
                 Param("time_max", "Latest event start, inclusive. Format: YYYY-MM-DD HH:MM:SS"),
                 Param("page", "Page of results to return, starting at 1", INTEGER),
                 Param("page_size", "Number of events per page", INTEGER),
             )),
    ToolSpec("calendar_create_event", calendar_create_event,
             "Creates an event and returns its ID.", (
                 Param("event_name", "Name of the event", required=True),
                 Param("participant_email", "Email address of the participant", required=True),
                 Param("event_start", "Start time. Format: YYYY-MM-DD HH:MM:SS", required=True),
                 Param("duration", "Length of the event in minutes, e.g. '30'", required=True),
             ), writes=True),
    ToolSpec("calendar_delete_event", calendar_delete_event, "Deletes the event with the given ID.", (
        Param("event_id", "8-digit ID of the event", required=True),
    ), writes=True),
    ToolSpec("calendar_update_event", calendar_update_event, "Changes one field of an event.", (
        Param("event_id", "8-digit ID of the event", required=True),
        Param("field", "The field to change: 'event_name', 'participant_email', 'event_start' or "
                       "'duration'", required=True),
        Param("new_value", "The new value of the field", required=True),
    ), writes=True),
)
