"""Calendar task families C1-C11.

"Next"/"upcoming"/"future" means starting after now; "first"/"last" on a day is by start time;
the first free slot is the earliest :00/:30 start inside working hours that overlaps nothing.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from grpo_jax.envs.workplace import constants as C
from grpo_jax.envs.workplace.tasks.base import (
    Call, Chooser, Family, Solution, call, lookups, paged_search, stage, want_matches,
)
from grpo_jax.envs.workplace.tasks.facts import Facts, Record
from grpo_jax.envs.workplace.tasks.language import (
    DELAY_WORDS, DURATION_WORDS, WEEKDAYS, first_name, spoken_date, spoken_time,
)
from grpo_jax.envs.workplace.timestamps import format_date, format_timestamp, to_datetime

SEARCH = "calendar_search_events"
UPDATE = "calendar_update_event"
CHECK_IN_NAME = "quick sync"
MAX_LOOKBACK_DAYS = 10
MAX_CANCELLATIONS = 6
MAX_DAY_CANCELLATIONS = 4
MAX_SERIES_CANCELLATIONS = 3
DAYS_AHEAD_TO_BOOK = 14
CUTOFF_HOURS = tuple(range(C.WORKDAY_START_HOUR + 1, C.WORKDAY_END_HOUR))


def _day_bounds(day: dt.date) -> dict[str, str]:
    return {"time_min": f"{format_date(day)} 00:00:00", "time_max": f"{format_date(day)} 23:59:59"}


def _search_for(facts: Facts, targets: list[Record], **arguments: Any) -> list[Call] | None:
    return paged_search(facts, SEARCH, [e["event_id"] for e in targets], **arguments)


def day_reads(facts: Facts, day: dt.date) -> list[Call] | None:
    """The search pages that show every event of `day` (what a free-slot decision needs)."""
    return _search_for(facts, facts.events_on(day), **_day_bounds(day))


def _rename(event: Record, new_name: str) -> Call:
    return call(UPDATE, event_id=event["event_id"], field="event_name", new_value=new_name)


def _future_days(facts: Facts) -> list[str]:
    return sorted({format_date(to_datetime(e["event_start"]).date()) for e in facts.future_events()})


def _with_participant(facts: Facts, events: list[Record], person: str) -> list[Record]:
    return [e for e in events if e["participant_email"] == person]


def cancel_first_on_day(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    day = dt.date.fromisoformat(choose.one("date", _future_days(facts)))
    target = facts.events_on(day)[0]
    reads = _search_for(facts, [target], **_day_bounds(day))
    if reads is None:
        return None
    return Solution({"date": spoken_date(day)}, [call("calendar_delete_event", event_id=target["event_id"])],
                    [stage(reads)])


def rename_last_on_day(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    day = dt.date.fromisoformat(choose.one("date", _future_days(facts)))
    target = facts.events_on(day)[-1]
    new_name = choose.one("new_name", [n for n in facts.event_names if n != target["event_name"]])
    reads = _search_for(facts, [target], **_day_bounds(day))
    if reads is None:
        return None
    return Solution({"date": spoken_date(day), "new_name": new_name},
                    [_rename(target, new_name)],
                    [stage(reads)])


def delay_first_with(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", sorted({e["participant_email"] for e in facts.future_events()} & set(facts.people)))
    days = sorted({e["event_start"][:10] for e in _with_participant(facts, facts.future_events(), person)})
    day = dt.date.fromisoformat(choose.one("date", days))
    target = _with_participant(facts, facts.events_on(day), person)[0]
    start = to_datetime(target["event_start"])
    delay = choose.one("delay", list(DELAY_WORDS))
    closing = dt.datetime.combine(day, dt.time(C.WORKDAY_END_HOUR))
    if start + dt.timedelta(minutes=delay + int(target["duration"])) > closing:
        return None
    reads = _search_for(facts, [target], query=person, **_day_bounds(day))
    if reads is None:
        return None
    new_start = format_timestamp(start + dt.timedelta(minutes=delay))
    return Solution({"name": first_name(person), "date": spoken_date(day), "delay": DELAY_WORDS[delay]},
                    [call(UPDATE, event_id=target["event_id"], field="event_start", new_value=new_start)],
                    [stage(*lookups(person)), stage(reads)])


def _next_named(facts: Facts, choose: Chooser) -> tuple[str, Record, list[Call]] | None:
    name = choose.one("event_name", sorted({e["event_name"] for e in facts.future_events()}))
    target = next(e for e in facts.future_events() if e["event_name"] == name)
    reads = _search_for(facts, [target], query=name, time_min=format_timestamp(facts.now))
    return (name, target, reads) if reads else None


def cancel_next_named(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _next_named(facts, choose)
    if found is None:
        return None
    name, target, reads = found
    return Solution({"event_name": name}, [call("calendar_delete_event", event_id=target["event_id"])],
                    [stage(reads)])


def rename_next_named(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    found = _next_named(facts, choose)
    if found is None:
        return None
    name, target, reads = found
    new_name = choose.one("new_name", [n for n in facts.event_names if n != name])
    return Solution({"event_name": name, "new_name": new_name},
                    [_rename(target, new_name)],
                    [stage(reads)])


def cancel_next_with(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    upcoming = _with_participant(facts, facts.future_events(), person)
    writes = [call("calendar_delete_event", event_id=upcoming[0]["event_id"])] if upcoming else []
    if not want_matches(want_empty, writes):
        return None
    reads = _search_for(facts, upcoming[:1], query=person, time_min=format_timestamp(facts.now))
    if reads is None:
        return None
    return Solution({"name": first_name(person)}, writes, [stage(*lookups(person)), stage(reads)])


def book_check_in_if_no_recent_meeting(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    days = choose.integer("days", 1, MAX_LOOKBACK_DAYS)
    since = facts.now - dt.timedelta(days=days)
    recent = [e for e in _with_participant(facts, facts.events, person)
              if since < to_datetime(e["event_start"]) < facts.now]
    tomorrow = facts.today + dt.timedelta(days=1)
    slot = facts.first_free_slot(tomorrow)
    writes = [] if recent or slot is None else [
        call("calendar_create_event", event_name=CHECK_IN_NAME, participant_email=person,
             event_start=format_timestamp(slot), duration=str(C.SLOT_MINUTES))]
    if not want_matches(want_empty, writes) or (not recent and slot is None):
        return None
    history = _search_for(facts, recent, query=person, time_min=format_timestamp(since),
                          time_max=format_timestamp(facts.now))
    calendar = day_reads(facts, tomorrow) if writes else None
    if history is None or (writes and calendar is None):
        return None
    return Solution({"name": first_name(person), "days": days, "event_name": CHECK_IN_NAME}, writes,
                    [stage(*lookups(person)), stage(history, calendar)])


def cancel_on_weekday_around(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    upcoming = [facts.today + dt.timedelta(days=i) for i in range(1, 8)]
    weekday = choose.one("weekday", [WEEKDAYS[d.weekday()] for d in upcoming if d.weekday() < 5])
    day = next(d for d in upcoming if WEEKDAYS[d.weekday()] == weekday)
    hour = choose.one("hour", CUTOFF_HOURS)
    side = choose.one("side", ["before", "after"])
    cutoff = f"{hour:02d}:00:00"
    todays = facts.events_on(day)
    clock = len("YYYY-MM-DD ")
    targets = [e for e in todays if (e["event_start"][clock:] < cutoff if side == "before"
                                     else e["event_start"][clock:] > cutoff)]
    writes = [call("calendar_delete_event", event_id=e["event_id"]) for e in targets]
    if not want_matches(want_empty, writes):
        return None
    reads = day_reads(facts, day)
    if reads is None:
        return None
    return Solution({"weekday": weekday, "before_or_after": side, "time": spoken_time(cutoff)}, writes,
                    [stage(reads)])


def cancel_all_with(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    targets = _with_participant(facts, facts.future_events(), person)
    if not targets:
        return None
    reads = _search_for(facts, targets, query=person, time_min=format_timestamp(facts.now))
    if reads is None:
        return None
    writes = [call("calendar_delete_event", event_id=e["event_id"]) for e in targets]
    return Solution({"name": first_name(person)}, writes,
                    [stage(*lookups(person)), stage(reads)])


def cancel_series(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    name = choose.one("event_name", facts.event_names)
    targets = [e for e in facts.future_events() if e["event_name"] == name]
    writes = [call("calendar_delete_event", event_id=e["event_id"]) for e in targets]
    if not want_matches(want_empty, writes):
        return None
    reads = _search_for(facts, targets, query=name, time_min=format_timestamp(facts.now))
    if reads is None:
        return None
    return Solution({"event_name": name}, writes, [stage(reads)])


def create_meeting(facts: Facts, choose: Chooser, want_empty: bool | None) -> Solution | None:
    person = choose.one("person", facts.people)
    name = choose.one("event_name", facts.event_names)
    minutes = choose.one("duration", list(DURATION_WORDS))
    days = [facts.today + dt.timedelta(days=i) for i in range(1, DAYS_AHEAD_TO_BOOK + 1)]
    day = dt.date.fromisoformat(choose.one("date", [format_date(d) for d in days if d.weekday() < 5]))
    last_start = (C.WORKDAY_END_HOUR - C.WORKDAY_START_HOUR) * 60 - minutes
    offset = choose.one("start_minutes", list(range(0, last_start + 1, C.SLOT_MINUTES)))
    start = dt.datetime.combine(day, dt.time(C.WORKDAY_START_HOUR)) + dt.timedelta(minutes=offset)
    return Solution({"name": first_name(person), "event_name": name, "duration": DURATION_WORDS[minutes],
                     "date": spoken_date(day), "time": spoken_time(start.time())},
                    [call("calendar_create_event", event_name=name, participant_email=person,
                          event_start=format_timestamp(start), duration=str(minutes))],
                    [stage(*lookups(person))])


FAMILIES = (
    Family("C1", "calendar", "cancel the earliest event on a date", (
        "Cancel my first meeting on {date}.",
        "Delete the earliest event in my calendar on {date}.",
        "Please call off the first thing on my calendar on {date}.",
    ), cancel_first_on_day),
    Family("C2", "calendar", "rename the latest event on a date", (
        "Rename the last event on {date} to {new_name}.",
        "Change the name of my final meeting on {date} to '{new_name}'.",
        "The last event on {date} should be called {new_name}. Please update it.",
    ), rename_last_on_day),
    Family("C3", "calendar", "delay the first meeting with X on a date by a duration", (
        "Push my first meeting with {name} on {date} back by {delay}.",
        "Move my earliest meeting with {name} on {date} {delay} later.",
        "Delay the first meeting I have with {name} on {date} by {delay}.",
    ), delay_first_with),
    Family("C4", "calendar", "cancel the next occurrence of a named event", (
        "Cancel the next {event_name}.",
        "Call off the upcoming '{event_name}' meeting.",
        "Delete the next occurrence of '{event_name}' from my calendar.",
    ), cancel_next_named),
    Family("C5", "calendar", "rename the next occurrence of a named event", (
        "Rename the next {event_name} to {new_name}.",
        "Change the name of the upcoming '{event_name}' meeting to '{new_name}'.",
        "The next {event_name} should be called {new_name} instead.",
    ), rename_next_named),
    Family("C6", "calendar", "cancel the next meeting with X", (
        "Cancel my next meeting with {name}.",
        "{name} is out sick - please cancel my next meeting with them.",
        "Remove the next meeting I have with {name}.",
    ), cancel_next_with, empty_share=0.1),
    Family("C7", "calendar", "no meeting with X in N days: 30-minute meeting at tomorrow's first free slot", (
        "If I haven't had a meeting with {name} in the last {days} days, book a 30-minute '{event_name}' "
        "with them at my first free slot tomorrow.",
        "Check whether I've met {name} in the past {days} days. If not, schedule a 30-minute meeting called "
        "'{event_name}' with them in my earliest free slot tomorrow.",
        "No meeting with {name} in the last {days} days? Then put a 30-minute '{event_name}' with them in the "
        "first gap in my calendar tomorrow.",
    ), book_check_in_if_no_recent_meeting, empty_share=0.5),
    Family("C8", "calendar", "cancel meetings on an upcoming weekday before or after an hour", (
        "Cancel my meetings on {weekday} {before_or_after} {time}.",
        "Clear everything on my calendar on {weekday} that starts {before_or_after} {time}.",
        "Something came up: please delete my {weekday} meetings starting {before_or_after} {time}.",
    ), cancel_on_weekday_around, empty_share=0.2, max_writes=MAX_DAY_CANCELLATIONS),
    Family("C9", "calendar", "delete every upcoming event involving X", (
        "Cancel all my upcoming meetings with {name}.",
        "{name} is leaving the company, so delete every future meeting I have with them.",
        "Clear my calendar of {name}: cancel all of our future meetings.",
    ), cancel_all_with, max_writes=MAX_CANCELLATIONS),
    Family("C10", "calendar", "cancel all future occurrences of a named event", (
        "Cancel all future {event_name} meetings.",
        "We're dropping the {event_name}; delete every upcoming one.",
        "Please remove all upcoming '{event_name}' events from my calendar.",
    ), cancel_series, empty_share=0.3, max_writes=MAX_SERIES_CANCELLATIONS),
    Family("C11", "calendar", "create an event (name, length, date, time, person)", (
        "Schedule a {duration} {event_name} with {name} on {date} at {time}.",
        "Book a {duration} meeting called '{event_name}' with {name} for {date} at {time}.",
        "Put a {duration} '{event_name}' on my calendar with {name}, {date} at {time}.",
    ), create_meeting),
)
